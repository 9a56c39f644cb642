//! Exit codes, in one place (documented in `docs/exit-codes.md`), and the error type
//! that carries them to `main`.

use std::fmt;

/// Success.
pub const OK: u8 = 0;
/// A comparison found a difference (`diff`).
pub const DIFFERENCE: u8 = 1;
/// Usage or input error: bad flags, an invalid configuration, an unknown profile.
pub const INPUT: u8 = 2;
/// Docker is absent, does not answer, or refused a request.
pub const DOCKER: u8 = 3;
/// A required port is taken.
pub const PORT: u8 = 4;
/// The state store is locked, damaged or from a newer idp-lab.
pub const STATE: u8 = 5;
/// Reading or writing a file failed.
pub const IO: u8 = 6;
/// A preflight check refused: the engine or the host cannot run the lab as configured.
pub const PREFLIGHT: u8 = 7;
/// Something did not become ready in time.
pub const TIMEOUT: u8 = 8;
/// The Kubernetes API failed or refused a request.
pub const KUBE: u8 = 9;
/// The configuration changed in a way that needs new nodes (`up --recreate`).
pub const CONFLICT: u8 = 10;
/// No such lab or node.
pub const NOT_FOUND: u8 = 11;
/// `creds` could read no login at all.
pub const NO_LOGIN: u8 = 12;
/// `verify`: a smoke check failed.
pub const CHECK_FAILED: u8 = 13;
/// A defect of idp-lab itself (for example a broken embedded catalogue).
pub const INTERNAL: u8 = 70;

/// Every exit code with its meaning, for documentation and its test.
#[cfg_attr(not(test), allow(dead_code))]
pub const ALL: &[(u8, &str, &str)] = &[
    (OK, "OK", "success"),
    (DIFFERENCE, "DIFFERENCE", "`diff` found a difference (as `kubectl diff`); no other command exits with 1"),
    (INPUT, "INPUT", "usage or input error: bad flags, an invalid configuration file or variable, an unknown profile"),
    (DOCKER, "DOCKER", "Docker is absent, does not answer, or refused a request"),
    (PORT, "PORT", "a required host port is taken"),
    (STATE, "STATE", "the state store is locked, damaged or was written by a newer idp-lab"),
    (IO, "IO", "reading or writing a file failed, a registry or chart repository could not be reached, or the lab daemon did not start"),
    (
        PREFLIGHT,
        "PREFLIGHT",
        "a preflight check refused: the Docker engine or the host cannot run the lab as configured (`idp-lab doctor` says why)",
    ),
    (
        TIMEOUT,
        "TIMEOUT",
        "a node, the API or an applied object did not become ready in time (or a kind was still not served); node logs are saved in the lab's state directory",
    ),
    (KUBE, "KUBE", "the Kubernetes API failed or refused a request"),
    (
        CONFLICT,
        "CONFLICT",
        "the configuration changed in a way that needs new nodes (`idp-lab up --recreate` replaces them), or the lab's daemon already runs (`idp-lab serve`)",
    ),
    (NOT_FOUND, "NOT_FOUND", "no such lab or node, or no browser to open"),
    (
        NO_LOGIN,
        "NO_LOGIN",
        "`creds` could read no login at all (the lab's API does not answer, Vault is sealed, ...); each entry says why and what to do",
    ),
    (CHECK_FAILED, "CHECK_FAILED", "`verify`: at least one smoke check failed; each failing check says why"),
    (INTERNAL, "INTERNAL", "a defect of idp-lab itself; please report it"),
];

/// An error that ends the command with a documented exit code.
#[derive(Debug)]
pub struct Failure {
    /// The exit code.
    pub code: u8,
    /// The one-line summary, printed after `error: `.
    pub message: String,
    /// Lines printed before the summary (e.g. every diagnostic), if any.
    pub details: Option<String>,
}

impl Failure {
    /// A failure with `code` and `message`.
    pub fn new(code: u8, message: impl Into<String>) -> Failure {
        Failure { code, message: message.into(), details: None }
    }

    /// A failure that prints nothing: the exit code says it all (`diff`'s 1).
    pub fn silent(code: u8) -> Failure {
        Failure { code, message: String::new(), details: None }
    }

    /// The same failure with `details` printed before its summary.
    pub fn with_details(mut self, details: impl Into<String>) -> Failure {
        self.details = Some(details.into());
        self
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
        let n = e.diagnostics.len();
        Failure::new(INPUT, format!("invalid configuration ({n} problem{})", if n == 1 { "" } else { "s" })).with_details(e.to_string())
    }
}

impl From<idp_core::catalogue::CatalogueError> for Failure {
    fn from(e: idp_core::catalogue::CatalogueError) -> Failure {
        Failure::new(INTERNAL, format!("the embedded catalogue is broken: {e}"))
    }
}

impl From<idp_core::render::RenderError> for Failure {
    fn from(e: idp_core::render::RenderError) -> Failure {
        Failure::new(INTERNAL, format!("failed to render the embedded platform: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/exit-codes.md lists exactly these codes (`UPDATE_DOCS=1` rewrites it).
    #[test]
    fn exit_codes_doc_is_current() {
        let mut doc = String::from(
            "# Exit codes\n\nEvery `idp-lab` command ends with one of these codes (defined once, in `appliance/idp-lab/src/exit.rs`).\n\n| code | name | meaning |\n|---|---|---|\n",
        );
        for (code, name, meaning) in ALL {
            doc.push_str(&format!("| {code} | `{name}` | {meaning} |\n"));
        }
        doc.push_str("\nUsage errors reported by the argument parser (an unknown flag or command) also exit with 2.\n");
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/exit-codes.md");
        if std::env::var_os("UPDATE_DOCS").is_some() {
            std::fs::write(&path, &doc).expect("write docs/exit-codes.md");
        }
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(current == doc, "docs/exit-codes.md is stale: run `UPDATE_DOCS=1 cargo test -p idp-lab exit_codes_doc`");
    }
}
