//! The offline supply chain's network side: an OCI distribution client (pull only,
//! anonymous, bearer tokens, blobs verified while they stream), a Helm HTTP repository
//! client, and `lock update`, which resolves `embedded/lock.yaml` on a connected machine.
//!
//! TLS is rustls with the ring provider and Mozilla's roots (`webpki-roots`): no OpenSSL,
//! no aws-lc. Plain HTTP only to loopback hosts.

pub mod client;
pub mod error;
pub mod helm;
pub mod http;
pub mod update;

pub use client::Client;
pub use error::ClientError;
pub use update::update;
