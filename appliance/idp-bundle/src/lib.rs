//! The offline supply chain's network side: an OCI distribution client (pull only,
//! anonymous, bearer tokens, blobs verified while they stream), a Helm HTTP repository
//! client, and `lock update`, which resolves `embedded/lock.yaml` on a connected machine;
//! and the bundle: [`create()`] pulls locked artifacts into a tarred OCI image layout,
//! [`verify()`] re-hashes one, [`inspect()`] lists one (docs/bundle.md).
//!
//! TLS is rustls with the ring provider and Mozilla's roots (`webpki-roots`): no OpenSSL,
//! no aws-lc. Plain HTTP only to loopback hosts.

pub mod bundle;
pub mod client;
pub mod create;
pub mod docker_archive;
pub mod error;
pub mod helm;
pub mod http;
pub mod inspect;
pub mod layout;
pub mod update;
pub mod verify;

pub use bundle::{ArchiveError, BundleError, Kind};
pub use client::Client;
pub use create::{CreateOptions, Created, Event, Item, create};
pub use docker_archive::{ArchiveSummary, ArchivedImage, docker_archive};
pub use error::ClientError;
pub use inspect::{Inspection, inspect};
pub use update::update;
pub use verify::{Problem, Verification, verify};
