//! The offline supply chain's network side: an OCI distribution client (pull only,
//! anonymous, bearer tokens, blobs verified while they stream), a Helm HTTP repository
//! client, and `lock update`, which resolves `embedded/lock.yaml` on a connected machine;
//! and the bundle: [`create()`] pulls locked artifacts into a tarred OCI image layout,
//! [`verify()`] re-hashes one, [`inspect()`] lists one, [`read_file`] reads an upstream
//! file out of one (docs/bundle.md); and [`publish`], which pushes what Argo CD delivers
//! (stack artifacts, OCI Helm charts) to the lab registry.
//!
//! TLS is rustls with the ring provider and Mozilla's roots (`webpki-roots`): no OpenSSL,
//! no aws-lc. Plain HTTP only to loopback hosts, and to a registry [`publish`] is given by
//! an `http://` URL.

pub mod bundle;
pub mod chart;
pub mod client;
pub mod create;
pub mod docker_archive;
pub mod error;
pub mod helm;
pub mod http;
pub mod inspect;
pub mod layout;
pub mod publish;
pub mod read;
pub mod update;
pub mod verify;

pub use bundle::{ArchiveError, BundleError, Kind};
pub use client::Client;
pub use create::{CreateOptions, Created, Event, Item, create};
pub use docker_archive::{ArchiveSummary, ArchivedImage, docker_archive};
pub use error::ClientError;
pub use inspect::{Inspection, inspect};
pub use publish::{Published, copy_chart_into_local, publish_chart, publish_chart_from_repository, publish_stack};
pub use read::read_file;
pub use update::update;
pub use verify::{Problem, Verification, verify};
