//! Exit codes, in one place (documented in `docs/exit-codes.md`), and the error type
//! that carries them to `main`.

use std::fmt;

/// Success.
pub const OK: u8 = 0;
/// A comparison found a difference (reserved for `diff`-like commands).
pub const DIFFERENCE: u8 = 1;
/// Usage or input error: bad flags, an invalid configuration, an unknown profile.
pub const INPUT: u8 = 2;
/// Docker is absent or does not answer.
pub const DOCKER: u8 = 3;
/// A required port is taken.
pub const PORT: u8 = 4;
/// The state store is locked, damaged or from a newer idp-lab.
pub const STATE: u8 = 5;
/// Reading or writing a file failed.
pub const IO: u8 = 6;
/// A defect of idp-lab itself (for example a broken embedded catalogue).
pub const INTERNAL: u8 = 70;

/// Every exit code with its meaning, for documentation and its test.
pub const ALL: &[(u8, &str, &str)] = &[
    (OK, "OK", "success"),
    (
        DIFFERENCE,
        "DIFFERENCE",
        "a comparison found a difference (diff-like commands only)",
    ),
    (
        INPUT,
        "INPUT",
        "usage or input error: bad flags, an invalid configuration file or variable, an unknown profile",
    ),
    (DOCKER, "DOCKER", "Docker is absent or does not answer"),
    (PORT, "PORT", "a required host port is taken"),
    (
        STATE,
        "STATE",
        "the state store is locked, damaged or was written by a newer idp-lab",
    ),
    (IO, "IO", "reading or writing a file failed"),
    (
        INTERNAL,
        "INTERNAL",
        "a defect of idp-lab itself; please report it",
    ),
];

/// An error that ends the command with a documented exit code.
#[derive(Debug)]
pub struct Failure {
    /// The exit code.
    pub code: u8,
    /// What to print (already formatted, may span lines).
    pub message: String,
}

impl Failure {
    /// A failure with `code` and `message`.
    pub fn new(code: u8, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

impl From<idp_core::config::ConfigError> for Failure {
    fn from(e: idp_core::config::ConfigError) -> Failure {
        Failure::new(INPUT, e.to_string())
    }
}

impl From<idp_core::catalogue::CatalogueError> for Failure {
    fn from(e: idp_core::catalogue::CatalogueError) -> Failure {
        Failure::new(INTERNAL, format!("the embedded catalogue is broken: {e}"))
    }
}

impl From<idp_core::render::RenderError> for Failure {
    fn from(e: idp_core::render::RenderError) -> Failure {
        Failure::new(
            INTERNAL,
            format!("failed to render the embedded platform: {e}"),
        )
    }
}
