//! The embedded OCI registry: the distribution API v2 over two namespaces.
//!
//! - **The mirror** (read-only): an OCI image layout (the bundle), served as the mirror
//!   of every registry its images come from. Manifests by tag and digest, blobs with
//!   `Range`, `tags/list` and `_catalog`. The layout is a directory, or a tar of one (what
//!   `idp-lab bundle create` writes) served in place: see [Bundle tars](#bundle-tars).
//! - **The local namespace** (writable): every repository whose first path component is
//!   [`LOCAL_PREFIX`] (`local/app`, `local/team/api`), stored in a directory of its own
//!   (itself an OCI image layout). Monolithic and chunked blob uploads and manifest
//!   `PUT`: what `docker push 127.0.0.1:PORT/local/app:v1` needs. It shadows any
//!   upstream repository under `local/`.
//!
//! # How names map to the layout
//!
//! Each `index.json` descriptor names its image in the
//! `org.opencontainers.image.ref.name` annotation by full reference, normalised the way
//! Docker and containerd normalise one ([`idp_core::oci::ImageName`]):
//! `docker.io/library/nginx:1.27`, `nginx:1.27` and `index.docker.io/library/nginx:1.27`
//! are all registry `docker.io`, repository `library/nginx`, tag `1.27`. A ref name
//! without a tag or digest (a bare tag such as `v1`, as `skopeo copy ... oci:DIR:v1`
//! writes) names no repository and is skipped with a warning.
//!
//! A request names a repository path and, when it comes from containerd using this
//! registry as a mirror, the upstream registry in the `ns` query parameter
//! (`GET /v2/library/nginx/manifests/1.27?ns=docker.io`; containerd adds it to every
//! request to a mirror, manifests and blobs alike). So the same path in two registries
//! (`ghcr.io/org/app` and `docker.io/org/app`) stays apart:
//!
//! | request path                     | `ns`              | served from                      |
//! | -------------------------------- | ----------------- | -------------------------------- |
//! | `local/...`                      | any or none       | the local namespace              |
//! | `library/nginx`                  | `docker.io`       | `docker.io/library/nginx`        |
//! | `nginx`                          | `docker.io`       | `docker.io/library/nginx`        |
//! | `org/app`                        | `ghcr.io`         | `ghcr.io/org/app`                |
//! | `pause`                          | `registry.k8s.io` | `registry.k8s.io/pause`          |
//! | `ghcr.io/org/app` (first component holds a `.` or is `localhost`) | none | `ghcr.io/org/app` |
//! | `library/nginx`, `nginx`, `org/app` | none           | `docker.io/...`, as Docker would |
//!
//! `ns` is folded like a reference's registry (`index.docker.io` is `docker.io`).
//! Without `ns`, images of a registry with a port (`localhost:5000/app`) cannot be
//! named, since `:` is not allowed in a repository path; `_catalog` lists every other
//! image by the name that reaches it without `ns` (`library/nginx`, `ghcr.io/org/app`),
//! and the local repositories.
//!
//! A repository serves only what its own images reach ([`idp_core::oci::walk`] at
//! [`Registry::open`]): a digest of another image of the bundle is `BLOB_UNKNOWN` or
//! `MANIFEST_UNKNOWN` here. In the local namespace, content is shared: every blob and
//! manifest pushed is visible under every `local/` name (a cross-repository mount is
//! therefore always a hit).
//!
//! # Safety of names and digests
//!
//! Paths and digests are checked against the distribution grammar before anything else
//! ([`idp_core::oci::validate_repository`], [`idp_core::oci::Digest::parse`]): `..`,
//! percent-encoded forms, empty components, other algorithms and names over 255 bytes
//! are refused with `NAME_INVALID` or `DIGEST_INVALID`. No request string ever becomes a
//! file path: files are named only by validated digests' hex and by upload ids this
//! registry made.
//!
//! # Bundle tars
//!
//! [`Registry::open`] takes a directory as a layout directory and a file as a tar of one
//! (plain, not compressed). It makes one pass over the tar's headers, seeking over the
//! data: `oci-layout` and `index.json` are read as they go by, every
//! `blobs/sha256/<hex>` entry is kept as (offset, size), and then the manifests the
//! images reach are read by offset and held in memory, as for a directory. A blob is
//! then served from its span of the tar, which stays open (a new tar renamed over it
//! changes nothing until the next open). Names may start with `./` (GNU tar's
//! `tar -C dir -cf x.tar .`); directories and stray files are passed over.
//!
//! Refused at open, as [`RegistryError::Tar`] naming the entry and its byte: a header
//! that does not parse (a gzip-compressed bundle is named as such), data running past
//! the end of the file, a file that ends before the end-of-archive marker, a layout
//! entry that is not a regular file (a link, a sparse file), and a name that appears
//! twice. A blob an image reaches that is not in the tar is
//! [`RegistryError::Incomplete`], as for a directory.
//!
//! # Serving
//!
//! [`handle`] answers one request without a socket (tests call it directly); [`serve`]
//! runs it on a listener the caller bound, until a cancellation token fires. Blobs are
//! streamed from disk in 1 MiB chunks read ahead on the blocking pool ([`Body`]);
//! manifests of the mirror are held in memory.
//!
//! [`handle_with`] and [`serve_with`] take an [`Access`]: [`Access::MirrorOnly`] is the
//! read-only view for a listener other machines reach (a workshop's LAN): only `GET`
//! and `HEAD` are answered, every other request is `403 DENIED` before its path is even
//! read, the upload endpoints are `DENIED` too, `local/` names are `NAME_UNKNOWN` and
//! `_catalog` lists the mirror alone. One [`Registry`] can serve both views at once.
//!
//! What it leaves out, on purpose:
//!
//! - `Accept` is not negotiated: a manifest is served as stored, with its own media
//!   type (distribution refuses an OCI index to a client that does not accept one;
//!   every client of a lab does).
//! - No authentication, no deletes (`405 UNSUPPORTED`), no referrers API.
//! - Uploads a client abandons stay until the next [`Registry::open`], which empties
//!   `uploads/`.

mod api;
mod archive;
mod body;
mod layout;
mod local;
mod route;
mod serve;

use std::path::PathBuf;

pub use api::{handle, handle_with};
pub use body::Body;
pub use serve::{DRAIN_TIMEOUT, serve, serve_with};

/// The first path component of the writable namespace's repositories.
pub const LOCAL_PREFIX: &str = "local";
/// The largest manifest accepted or served, as distribution's default (4 MiB).
pub const MAX_MANIFEST_SIZE: u64 = 4 * 1024 * 1024;
/// The header every response carries.
pub const API_VERSION_HEADER: &str = "docker-distribution-api-version";
/// Its value.
pub const API_VERSION: &str = "registry/2.0";

/// What a listener of the registry lets its clients do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Access {
    /// Everything: the mirror (read-only) and the local namespace (read-write).
    #[default]
    Full,
    /// The mirror alone, read-only: `GET` and `HEAD` only (anything else is
    /// `403 DENIED`), no upload endpoints, no `local/` names, `_catalog` without them.
    MirrorOnly,
}

/// Why the registry could not be opened or served.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A file or directory operation failed.
    #[error("failed to {action} {}", path.display())]
    Io {
        /// What was being done, e.g. `read`.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A JSON file of a layout cannot be read.
    #[error("failed to parse {}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        #[source]
        source: serde_json::Error,
    },
    /// The directory is not an OCI image layout this registry can serve.
    #[error("{} is not an OCI image layout: {reason}", path.display())]
    NotALayout {
        /// The directory.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A tar of a layout is truncated or malformed, or holds a name twice.
    #[error("{} cannot be served as a bundle tar: {entry} (header at byte {offset}): {reason}", path.display())]
    Tar {
        /// The tar.
        path: PathBuf,
        /// The entry's name, or which header (`the header after blobs/sha256/...`).
        entry: String,
        /// The byte of the file where that entry's header is (or would be).
        offset: u64,
        /// What is wrong.
        reason: String,
        /// The reader's error, when one said it.
        #[source]
        source: Option<std::io::Error>,
    },
    /// An image of the layout lacks content or has content that does not match.
    #[error("image {name} in {} is incomplete (run `idp-lab bundle verify`)", layout.display())]
    Incomplete {
        /// The image's reference.
        name: String,
        /// The layout.
        layout: PathBuf,
        /// What the walk found.
        #[source]
        source: idp_core::oci::WalkError<std::io::Error>,
    },
}

/// The registry: the read-only mirror over a layout, and the local namespace.
///
/// Cheap to share behind an `Arc`; every request handler takes `&Registry`.
#[derive(Debug)]
pub struct Registry {
    mirror: Option<layout::Mirror>,
    local: local::Local,
}

impl Registry {
    /// Opens the registry: the OCI image layout at `read_only_layout` (the bundle,
    /// never written: a layout directory, or a tar of one served in place) as the
    /// mirror, when given, and `writable_dir` for the local namespace (created as an
    /// empty OCI image layout when missing; unfinished uploads of a previous run are
    /// removed).
    ///
    /// A tar is checked whole first ([`RegistryError::Tar`]; see the crate docs). Every
    /// image of the layout is walked: a missing blob or a size or digest mismatch is
    /// [`RegistryError::Incomplete`]. Blocking (it reads every manifest and stats every
    /// blob, or reads every tar header); call it from `spawn_blocking` in async code.
    pub fn open(read_only_layout: Option<PathBuf>, writable_dir: PathBuf) -> Result<Registry, RegistryError> {
        let mirror = read_only_layout.map(layout::Mirror::open).transpose()?;
        let local = local::Local::open(writable_dir)?;
        Ok(Registry { mirror, local })
    }

    /// The registries the mirror holds images of (e.g. `docker.io`, `ghcr.io`), sorted:
    /// what each node's `registries.yaml` should mirror to this registry.
    pub fn mirrored_registries(&self) -> Vec<String> {
        self.mirror.as_ref().map(layout::Mirror::registries).unwrap_or_default()
    }

    /// Every repository `_catalog` lists, sorted (see the crate docs for the names).
    pub fn catalog(&self) -> Vec<String> {
        let mut names = self.mirror.as_ref().map(layout::Mirror::catalog).unwrap_or_default();
        names.extend(self.local.repositories());
        names.sort();
        names.dedup();
        names
    }
}
