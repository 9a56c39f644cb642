//! The errors of the host-edge plane.

use std::path::PathBuf;

/// Errors of the host-edge plane.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    /// A file or folder could not be read, written or created.
    #[error("failed to {action} {path}: {source}")]
    Io {
        /// What was being done ("read", "write", "create", ...).
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The lab CA was asked to vouch for no DNS suffix at all.
    #[error("the lab CA needs at least one DNS suffix to be constrained to")]
    NoSuffixes,
    /// A suffix or a certificate name is not a DNS name.
    #[error("{name:?} is not a valid DNS name: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// One of the two CA files exists without the other.
    #[error(
        "the lab CA in {} is incomplete: {present} exists but {missing} does not; rerun with --new-ca to make a new CA (and trust the new one)",
        dir.display()
    )]
    Incomplete {
        /// The CA folder.
        dir: PathBuf,
        /// The file that exists.
        present: &'static str,
        /// The file that is missing.
        missing: &'static str,
    },
    /// The CA key file does not hold a usable key.
    #[error(
        "the lab CA key {} is damaged: {source}; rerun with --new-ca to make a new CA (and trust the new one)",
        path.display()
    )]
    BadKey {
        /// The key file.
        path: PathBuf,
        /// What rcgen said.
        #[source]
        source: rcgen::Error,
    },
    /// The CA key is not an ECDSA P-256 key.
    #[error(
        "the lab CA key {} is not an ECDSA P-256 key; rerun with --new-ca to make a new CA (and trust the new one)",
        path.display()
    )]
    WrongKeyType {
        /// The key file.
        path: PathBuf,
    },
    /// The CA key file can be read by other users.
    #[error(
        "the lab CA key {} can be read by other users (mode {mode:o}); run `chmod 600` on it, or rerun with --new-ca if it may have leaked",
        path.display()
    )]
    KeyPermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The CA certificate file does not hold a lab CA certificate.
    #[error(
        "the lab CA certificate {} is damaged: {reason}; rerun with --new-ca to make a new CA (and trust the new one)",
        path.display()
    )]
    BadCertificate {
        /// The certificate file.
        path: PathBuf,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The CA key does not belong to the CA certificate.
    #[error(
        "the lab CA key {} does not belong to the certificate {}; rerun with --new-ca to make a new CA (and trust the new one)",
        key.display(),
        cert.display()
    )]
    KeyMismatch {
        /// The key file.
        key: PathBuf,
        /// The certificate file.
        cert: PathBuf,
    },
    /// The CA certificate has expired, or expires within a day.
    #[error(
        "the lab CA certificate {} expires at {not_after}; rerun with --new-ca to make a new CA (and trust the new one)",
        path.display()
    )]
    Expired {
        /// The certificate file.
        path: PathBuf,
        /// Its end of validity.
        not_after: time::OffsetDateTime,
    },
    /// The existing CA's name constraints do not cover a suffix the lab now uses.
    #[error(
        "the lab CA in {} only vouches for names under {}, not for {suffix}; rerun with --new-ca to make a CA for the lab's current names (and trust the new one)",
        dir.display(),
        permitted.join(", ")
    )]
    NotCovered {
        /// The CA folder.
        dir: PathBuf,
        /// The suffix not covered.
        suffix: String,
        /// The DNS subtrees the CA is constrained to.
        permitted: Vec<String>,
    },
    /// A certificate was asked for a name outside the CA's name constraints.
    #[error(
        "cannot issue a certificate for {name}: the lab CA only vouches for names under {}",
        permitted.join(", ")
    )]
    OutsideConstraints {
        /// The name asked for.
        name: String,
        /// The DNS subtrees the CA is constrained to.
        permitted: Vec<String>,
    },
    /// A certificate was asked for no name at all.
    #[error("cannot issue a certificate without a name")]
    NoNames,
    /// rcgen failed to make a key or a certificate.
    #[error("failed to make the {what}: {source}")]
    Generate {
        /// What was being made.
        what: &'static str,
        /// What rcgen said.
        #[source]
        source: rcgen::Error,
    },
    /// The DNS server stopped on its own: a socket failed.
    #[error("the DNS server failed: {reason}")]
    Dns {
        /// What hickory said.
        reason: String,
    },
    /// The entry's TLS setup failed (a certificate or key rustls refuses).
    #[error("failed to set up TLS: {what}: {reason}")]
    Tls {
        /// What was being set up.
        what: &'static str,
        /// What rustls said.
        reason: String,
    },
}
