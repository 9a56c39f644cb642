//! `idp-lab history [--since D]`: what the lab's watchdog recorded (drift, verdict
//! changes, SLO samples, playbook runs), oldest first, from the lab daemon, which holds
//! the history open; `idp-lab watch`: the same, followed live.

use crate::cli::{Global, HistoryArgs, WatchArgs};
use crate::exit::{Failure, INPUT, NOT_FOUND};
use crate::lab::{self, Lab};
use crate::printer::{Printer, table};
use idp_daemon::WatchdogEvent;
use std::time::{Duration, SystemTime};

pub fn run(global: &Global, printer: Printer, args: HistoryArgs) -> Result<(), Failure> {
    let lab = Lab::load(global, &args.lab)?;
    let since = args.since.as_deref().map(since).transpose()?;
    running(&lab)?;
    let events = lab::runtime()?.block_on(idp_daemon::history(&lab.dir(), since)).map_err(crate::daemon::failure)?;
    printer.result(|| text(&events), &events)
}

/// How often `watch` asks the daemon for new events.
const POLL: Duration = Duration::from_millis(500);

/// Follows the history: each new event as a line (text, or one JSON object per line),
/// until interrupted or the daemon stops.
pub fn watch(global: &Global, printer: Printer, args: WatchArgs) -> Result<(), Failure> {
    let lab = Lab::load(global, &args.lab)?;
    let mut from = match args.since.as_deref() {
        Some(text) => since(text)?,
        None => SystemTime::now(),
    };
    running(&lab)?;
    if printer.output == crate::cli::Output::Text && !global.quiet {
        eprintln!("Watching lab \"{}\" (Ctrl-C stops).", lab.name);
    }
    lab::runtime()?.block_on(async {
        // Events of the same millisecond as the last one shown are told apart by content.
        let mut shown_at_edge: Vec<String> = Vec::new();
        loop {
            let events = match idp_daemon::history(&lab.dir(), Some(from)).await {
                Ok(events) => events,
                Err(e) if matches!(idp_daemon::status(&lab.dir()), idp_daemon::DaemonState::Stopped) => {
                    return Err(Failure::new(
                        NOT_FOUND,
                        format!("the lab daemon stopped; `idp-lab up --name {}` starts it ({e})", lab.name),
                    ));
                }
                Err(e) => return Err(crate::daemon::failure(e)),
            };
            for event in events {
                let key = serde_json::to_string(&event).unwrap_or_default();
                if event.at == from && shown_at_edge.contains(&key) {
                    continue;
                }
                if event.at > from {
                    from = event.at;
                    shown_at_edge.clear();
                }
                shown_at_edge.push(key.clone());
                let line = match printer.output {
                    crate::cli::Output::Text => text(std::slice::from_ref(&event)).lines().nth(1).unwrap_or_default().trim_end().to_owned(),
                    crate::cli::Output::Json | crate::cli::Output::Yaml => key,
                };
                crate::printer::write_stdout(&format!("{line}\n"))?;
            }
            tokio::select! {
                () = tokio::time::sleep(POLL) => {}
                _ = tokio::signal::ctrl_c() => return Ok(()),
            }
        }
    })
}

/// Fails when the lab daemon, which holds the history, does not run.
fn running(lab: &Lab) -> Result<(), Failure> {
    if matches!(idp_daemon::status(&lab.dir()), idp_daemon::DaemonState::Stopped) {
        return Err(Failure::new(
            NOT_FOUND,
            format!(
                "the lab daemon of \"{}\" is not running, and it holds the history; `idp-lab up --name {}` starts it",
                lab.name, lab.name
            ),
        ));
    }
    Ok(())
}

/// The time `--since` names: now minus a duration.
fn since(text: &str) -> Result<SystemTime, Failure> {
    let secs = match text.strip_suffix('d') {
        Some(days) => days.parse::<u64>().ok().and_then(|d| d.checked_mul(86_400)).filter(|s| *s > 0),
        None => idp_core::config::parse_duration(text),
    };
    let secs = secs.ok_or_else(|| Failure::new(INPUT, format!("--since {text:?}: expected a duration such as 90s, 30m, 12h or 7d")))?;
    Ok(SystemTime::now().checked_sub(Duration::from_secs(secs)).unwrap_or(SystemTime::UNIX_EPOCH))
}

fn text(events: &[WatchdogEvent]) -> String {
    if events.is_empty() {
        return "No events: the watchdog recorded nothing in that time.\n".to_owned();
    }
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            let summary = e.body.get("summary").and_then(|s| s.as_str()).map(str::to_owned).unwrap_or_else(|| {
                let body = e.body.to_string();
                if body.len() <= 80 {
                    return body;
                }
                let mut end = 80;
                while !body.is_char_boundary(end) {
                    end -= 1;
                }
                format!("{}…", &body[..end])
            });
            vec![rfc3339(e.at), format!("{:?}", e.kind).to_lowercase(), e.subject.clone(), summary]
        })
        .collect();
    table(&["TIME", "KIND", "SUBJECT", "WHAT"], &rows)
}

/// `2026-12-01T17:42:41Z`.
fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_print_as_rfc3339() {
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_146_961)), "2026-12-01T17:42:41Z");
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400)), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn since_takes_seconds_to_days_and_refuses_the_rest() {
        let now = SystemTime::now();
        let day = since("1d").expect("1d");
        let elapsed = now.duration_since(day).expect("in the past").as_secs();
        assert!((86_399..=86_401).contains(&elapsed), "{elapsed}");
        assert!(since("30m").is_ok() && since("90").is_ok());
        for bad in ["", "0d", "1w", "-1h", "h"] {
            assert!(since(bad).is_err(), "{bad}");
        }
    }
}
