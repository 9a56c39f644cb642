//! Progress of long work on stderr: one line per step with its elapsed time. On a
//! terminal the running step shows first and its line is replaced by the result; off
//! a terminal, with `--quiet` or `-o json`, lines are plain (and `--quiet` prints none).
//! `NO_COLOR` is honoured.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Writes step lines to stderr.
#[derive(Debug)]
pub struct Steps {
    terminal: bool,
    quiet: bool,
    colour: bool,
    running: Option<(String, Instant)>,
}

impl Steps {
    /// Steps for a command run with `quiet`.
    pub fn new(quiet: bool) -> Steps {
        let terminal = std::io::stderr().is_terminal();
        let colour = terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        Steps { terminal, quiet, colour, running: None }
    }

    fn write(&self, line: &str) {
        if self.quiet {
            return;
        }
        let mut err = std::io::stderr().lock();
        // Progress is best effort: a closed stderr must not fail the command.
        let _ = err.write_all(line.as_bytes()).and_then(|()| err.flush());
    }

    /// A heading line (the lab, the profile, the image).
    pub fn note(&mut self, text: &str) {
        self.write(&format!("{text}\n"));
    }

    /// A step begins.
    pub fn start(&mut self, text: &str) {
        if self.terminal {
            self.write(&format!("  … {text}"));
        }
        self.running = Some((text.to_owned(), Instant::now()));
    }

    fn finish(&mut self, mark: &str, colour: &str, text: &str) {
        let elapsed = self.running.take().map(|(_, t)| t.elapsed()).unwrap_or_default();
        let clear = if self.terminal { "\r\x1b[2K" } else { "" };
        let mark = if self.colour { format!("\x1b[{colour}m{mark}\x1b[0m") } else { mark.to_owned() };
        self.write(&format!("{clear}{mark} {text:<76} {}\n", seconds(elapsed)));
    }

    /// The running step (or a step that took no time) succeeded, with `text` as its result.
    pub fn done(&mut self, text: &str) {
        self.finish("✓", "32", text);
    }

    /// The running step failed.
    pub fn failed(&mut self, text: &str) {
        self.finish("✗", "31", text);
    }

    /// Replaces the running step's text (a count going up); only on a terminal, where
    /// the line is rewritten in place.
    pub fn update(&mut self, text: &str) {
        if let Some((step, _)) = self.running.as_mut() {
            text.clone_into(step);
            if self.terminal {
                self.write(&format!("\r\x1b[2K  … {text}"));
            }
        }
    }

    /// A sub-step line under the current step.
    pub fn detail(&mut self, text: &str) {
        let clear = if self.terminal && self.running.is_some() { "\r\x1b[2K" } else { "" };
        self.write(&format!("{clear}    {text}\n"));
        if let (true, Some((step, _))) = (self.terminal, &self.running) {
            self.write(&format!("  … {step}"));
        }
    }
}

/// Elapsed time the way the steps show it: `0.4s`, `41s`, `2m41s`.
pub fn seconds(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 10.0 {
        format!("{secs:.1}s")
    } else if secs < 60.0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}m{:02}s", d.as_secs() / 60, d.as_secs() % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elapsed_times_read_like_the_design() {
        assert_eq!(seconds(Duration::from_millis(400)), "0.4s");
        assert_eq!(seconds(Duration::from_secs(41)), "41s");
        assert_eq!(seconds(Duration::from_secs(161)), "2m41s");
    }
}
