//! The host-edge plane: what idp-lab runs on the host in front of the cluster.
//!
//! Today this is the lab CA ([`LabCa`]): a name-constrained certificate authority kept
//! in the lab's state directory, which issues the TLS certificates for the lab's
//! `*.nip.io` names ([`Leaf`]); and the lab's DNS answer ([`dns`]), a server for those
//! names on sockets the daemon binds; and the HTTPS entry ([`https`]), which routes
//! `https://<service>.<suffix>` by SNI to the cluster's Gateway and answers the landing
//! and error pages itself.

mod ca;
pub mod dns;
mod error;
pub mod https;

pub use ca::{CERT_FILE, KEY_FILE, LabCa, Leaf};
pub use dns::{Answers, serve as serve_dns};
pub use error::EdgeError;
pub use https::{Entry, serve_https, serve_redirect};
