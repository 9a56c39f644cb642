//! Logging with tracing-subscriber: human lines on a terminal, JSON on request;
//! `RUST_LOG` wins over -v/-q; always on stderr; colour only on a terminal without NO_COLOR.

use crate::cli::{Global, LogFormat};
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `daemon` is `Some(detached)` for `idp-lab serve`: a
/// server logs at info (its access log included) by default, without hickory's line per
/// query, and a detached one always logs JSON.
pub fn init(global: &Global, daemon: Option<bool>) {
    let level = match (global.quiet, global.verbose, daemon.is_some()) {
        (true, _, _) => "error",
        (false, 0, false) => "warn",
        (false, 0, true) | (false, 1, _) => "info",
        (false, 2, _) => "debug",
        (false, _, _) => "trace",
    };
    let directives = if daemon.is_some() { format!("{level},hickory_server=warn,hickory_proto=warn") } else { level.to_owned() };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(directives));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let format = if daemon == Some(true) { LogFormat::Json } else { global.log_format };
    let result = match format {
        LogFormat::Json => builder.json().with_current_span(false).try_init(),
        LogFormat::Text => {
            let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
            builder.with_ansi(colour).with_target(false).try_init()
        }
    };
    // A second init (only possible in tests) keeps the first subscriber.
    drop(result);
}
