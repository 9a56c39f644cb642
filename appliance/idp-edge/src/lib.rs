//! The host-edge plane: what idp-lab runs on the host in front of the cluster.
//!
//! Today this is the lab CA ([`LabCa`]): a name-constrained certificate authority kept
//! in the lab's state directory, which issues the TLS certificates for the lab's
//! `*.nip.io` names ([`Leaf`]). The DNS responder and the HTTPS proxy come later.

mod ca;
mod error;

pub use ca::{CERT_FILE, KEY_FILE, LabCa, Leaf};
pub use error::EdgeError;
