//! Polling with a deadline: the harness never sleeps a fixed time waiting for something.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::bail;

/// The outcome of one polling attempt.
#[derive(Debug)]
pub enum Attempt<T> {
    /// The condition holds; stop polling and return the value.
    Done(T),
    /// Not yet; the string says what was seen, and ends up in the timeout message.
    Retry(String),
}

/// Calls `attempt` until it returns [`Attempt::Done`] or `timeout` has passed.
///
/// The interval starts at 50 ms and doubles up to 1 s. An `Err` from `attempt` is fatal and is
/// returned at once (use it for "the process died", not for "not ready yet"). On timeout the
/// error names `what`, the time waited and the last [`Attempt::Retry`] reason.
///
/// ```no_run
/// # async fn demo() -> anyhow::Result<()> {
/// use idp_test::poll::{poll_until, Attempt};
/// use std::time::Duration;
/// let path = std::path::Path::new("/tmp/ready");
/// poll_until("the marker file", Duration::from_secs(5), || async {
///     Ok(if path.exists() { Attempt::Done(()) } else { Attempt::Retry("absent".into()) })
/// })
/// .await?;
/// # Ok(()) }
/// ```
pub async fn poll_until<T, F, Fut>(what: &str, timeout: Duration, attempt: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Attempt<T>>>,
{
    poll_until_with(what, timeout, Duration::from_secs(1), attempt).await
}

/// [`poll_until`] with the interval capped at `max_interval` instead of 1 s: for cheap checks
/// where reacting quickly matters (a server's readiness endpoint).
pub async fn poll_until_with<T, F, Fut>(what: &str, timeout: Duration, max_interval: Duration, mut attempt: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Attempt<T>>>,
{
    let start = Instant::now();
    let mut interval = Duration::from_millis(50);
    loop {
        let last = match attempt().await? {
            Attempt::Done(value) => return Ok(value),
            Attempt::Retry(reason) => reason,
        };
        let elapsed = start.elapsed();
        if elapsed >= timeout {
            bail!("timed out after {elapsed:.1?} waiting for {what}; last seen: {last}");
        }
        tokio::time::sleep(interval.min(timeout.saturating_sub(elapsed))).await;
        interval = (interval * 2).min(max_interval);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_the_value_once_done() {
        let mut calls = 0;
        let value = poll_until("three calls", Duration::from_secs(5), || {
            calls += 1;
            let n = calls;
            async move { Ok(if n >= 3 { Attempt::Done(n) } else { Attempt::Retry(format!("call {n}")) }) }
        })
        .await
        .expect("the condition holds on the third call");
        assert_eq!(value, 3);
    }

    #[tokio::test]
    async fn times_out_with_the_last_reason() {
        let err = poll_until::<(), _, _>("never", Duration::from_millis(120), || async { Ok(Attempt::Retry("still not".into())) })
            .await
            .expect_err("the condition never holds");
        let msg = err.to_string();
        assert!(msg.contains("waiting for never") && msg.contains("still not"), "{msg}");
    }

    #[tokio::test]
    async fn a_fatal_error_stops_at_once() {
        let err = poll_until::<(), _, _>("fatal", Duration::from_secs(30), || async { anyhow::bail!("process died") })
            .await
            .expect_err("errors are fatal");
        assert_eq!(err.to_string(), "process died");
    }
}
