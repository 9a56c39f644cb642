//! All results go through the printer: text for people, JSON or YAML for machines, on
//! stdout. Logs and hints go to stderr through tracing.

use crate::cli::Output;
use crate::exit::{Failure, IO};
use serde::Serialize;
use std::io::Write;

/// Writes results in the chosen format.
#[derive(Debug, Clone, Copy)]
pub struct Printer {
    /// The format.
    pub output: Output,
}

impl Printer {
    /// Prints `text` when the format is text, else `value` as JSON or YAML.
    pub fn result<T: Serialize>(&self, text: impl FnOnce() -> String, value: &T) -> Result<(), Failure> {
        let rendered = match self.output {
            Output::Text => text(),
            Output::Json => {
                let mut s = serde_json::to_string_pretty(value).map_err(|e| Failure::new(crate::exit::INTERNAL, e.to_string()))?;
                s.push('\n');
                s
            }
            Output::Yaml => {
                let v = serde_json::to_value(value).map_err(|e| Failure::new(crate::exit::INTERNAL, e.to_string()))?;
                idp_core::yaml::to_yaml(&v)
            }
        };
        write_stdout(&rendered)
    }
}

/// Writes to stdout; a closed pipe (`idp-lab render | head`) is not an error.
pub fn write_stdout(text: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Failure::new(IO, format!("failed to write to stdout: {e}"))),
    }
}

/// Raw output that streams to stdout as it comes (`logs -f`); a closed pipe ends it
/// quietly, like [`write_stdout`].
pub fn raw_stdout() -> impl Write + Send {
    std::io::stdout()
}

/// Formats rows as aligned columns.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let last = cells.len().saturating_sub(1);
        for (i, cell) in cells.iter().enumerate() {
            out.push_str(cell);
            if i < last {
                out.extend(std::iter::repeat_n(' ', widths[i] - cell.chars().count() + 2));
            }
        }
        out.push('\n');
    };
    line(header.to_vec(), &mut out);
    for row in rows {
        line(row.iter().map(String::as_str).collect(), &mut out);
    }
    out
}
