//! Log lines in the text format of logrus, the logger k3s uses:
//! `time="2006-01-02T15:04:05Z" level=info msg="k3s is up and running"`.
//!
//! Readiness checks written for real k3s (k3d, the project's harness) match
//! substrings of these lines, and k3d treats a last line containing
//! `level=fatal` as a crashed node, so the format is part of the contract.

use std::io::Write as _;

/// Severity of a log line, spelled as logrus spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// `level=info`
    Info,
    /// `level=warning` (logrus' spelling)
    Warn,
    /// `level=error`
    Error,
    /// `level=fatal`: the process exits right after.
    Fatal,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Warn => "warning",
            Level::Error => "error",
            Level::Fatal => "fatal",
        }
    }
}

/// Writes one log line to stderr.
pub fn emit(level: Level, msg: &str) {
    let ts = k8s_openapi::jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ");
    let line = format_line(level, &ts.to_string(), msg);
    let mut err = std::io::stderr().lock();
    // Nothing sensible is left to do when stderr is gone.
    let _ = writeln!(err, "{line}");
    let _ = err.flush();
}

/// Formats one line; split out of [`emit`] for tests.
pub fn format_line(level: Level, ts: &str, msg: &str) -> String {
    format!("time=\"{ts}\" level={} msg={}", level.as_str(), quote(msg))
}

/// Quotes like Go's `%q`, which logrus uses for values with spaces or quotes.
fn quote(s: &str) -> String {
    crate::flags::go_quote(s)
}

/// `info!("...", args)`: a `level=info` line.
macro_rules! info {
    ($($arg:tt)*) => { $crate::logrus::emit($crate::logrus::Level::Info, &format!($($arg)*)) };
}

/// `warn!("...", args)`: a `level=warning` line.
macro_rules! warn {
    ($($arg:tt)*) => { $crate::logrus::emit($crate::logrus::Level::Warn, &format!($($arg)*)) };
}

/// `error!("...", args)`: a `level=error` line.
macro_rules! error {
    ($($arg:tt)*) => { $crate::logrus::emit($crate::logrus::Level::Error, &format!($($arg)*)) };
}

/// `fatal!("...", args)`: a `level=fatal` line; the caller exits afterwards.
macro_rules! fatal {
    ($($arg:tt)*) => { $crate::logrus::emit($crate::logrus::Level::Fatal, &format!($($arg)*)) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_look_like_logrus() {
        assert_eq!(
            format_line(Level::Info, "2024-01-02T03:04:05Z", "k3s is up and running"),
            r#"time="2024-01-02T03:04:05Z" level=info msg="k3s is up and running""#
        );
        assert_eq!(format_line(Level::Fatal, "t", "bad \"token\"\nnext"), r#"time="t" level=fatal msg="bad \"token\"\nnext""#);
    }
}
