//! What the bundle modules share: the annotations idp-lab writes into a bundle's
//! `index.json`, the kinds of artifact, platform keys, and [`BundleError`].
//!
//! A bundle is a tarred OCI image layout (docs/bundle.md): `oci-layout`, `index.json`
//! with one descriptor per artifact (named by [`REF_NAME_ANNOTATION`]), and
//! `blobs/sha256/<hex>`.
//!
//! [`REF_NAME_ANNOTATION`]: idp_core::oci::REF_NAME_ANNOTATION

use crate::error::ClientError;
use idp_core::oci::{Digest, OciError, Platform, WalkError};
use serde::Serialize;
use std::fmt;
use std::path::{Path, PathBuf};

/// The `index.json` annotation saying what an artifact is: `image`, `chart` or `file`.
pub const KIND_ANNOTATION: &str = "dev.idp-lab.bundle.kind";
/// The `index.json` annotation listing the platforms bundled from an index
/// (`linux/amd64,linux/arm64`); the index's other manifests are not in the bundle.
pub const PLATFORMS_ANNOTATION: &str = "dev.idp-lab.bundle.platforms";
/// The `index.json` annotation naming where an artifact came from (the image reference
/// as pulled, the chart's repository and name, the file's URL).
pub const SOURCE_ANNOTATION: &str = "dev.idp-lab.bundle.source";
/// The `index.json` annotation naming who needs the artifact (lock owners, comma-separated;
/// `--image` for the developer's own images).
pub const OWNERS_ANNOTATION: &str = "dev.idp-lab.bundle.owners";
/// The `index.json` annotation of an artifact bundled although its lock entry was
/// unverified (`--allow-unverified`): the lock's reason.
pub const UNVERIFIED_ANNOTATION: &str = "dev.idp-lab.bundle.unverified";
/// The `index.json` annotation of an image giving the digest its reference resolved to
/// (the lock's): the root itself for OCI content, the Docker manifest or manifest list
/// an OCI index wraps otherwise.
pub const DIGEST_ANNOTATION: &str = "dev.idp-lab.bundle.digest";
/// The annotation, in a wrapping OCI index, of the entry that is the original Docker
/// manifest list (kept byte for byte, so its digest is the lock's).
pub const ORIGINAL_ANNOTATION: &str = "dev.idp-lab.bundle.original";
/// The artifact type of an upstream file stored as an OCI artifact.
pub const FILE_ARTIFACT_TYPE: &str = "application/vnd.idp-lab.file.v1";
/// The annotation of a layer naming its file (ORAS writes the file under this name).
pub const TITLE_ANNOTATION: &str = "org.opencontainers.image.title";
/// The annotation of a manifest naming its version (a chart's version).
pub const VERSION_ANNOTATION: &str = "org.opencontainers.image.version";

/// What an artifact of a bundle is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A container image (one manifest, or an index of per-platform manifests).
    Image,
    /// A Helm chart stored as an OCI Helm artifact.
    Chart,
    /// An upstream file stored as an OCI artifact with one layer.
    File,
}

impl Kind {
    /// `image`, `chart` or `file`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Image => "image",
            Kind::Chart => "chart",
            Kind::File => "file",
        }
    }

    /// The kind an [`KIND_ANNOTATION`] value names.
    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "image" => Some(Kind::Image),
            "chart" => Some(Kind::Chart),
            "file" => Some(Kind::File),
            _ => None,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A platform as the lock and `--platform` name it: `os/arch`, with the variant only
/// where it changes what runs (`arm64/v8` is `arm64`), as `lock update` records it.
pub fn platform_key(platform: &Platform) -> String {
    match platform.variant.as_deref() {
        None | Some("") => format!("{}/{}", platform.os, platform.architecture),
        Some("v8") if platform.architecture == "arm64" => format!("{}/{}", platform.os, platform.architecture),
        Some(v) => format!("{}/{}/{v}", platform.os, platform.architecture),
    }
}

/// Why creating, verifying or inspecting a bundle failed.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// Reading or writing a file of the bundle or its work directory failed.
    #[error("failed to {action} {}", path.display())]
    Io {
        /// What was being done (`create`, `read`, `rename`, ...).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// Fetching an artifact failed (registry, Helm repository or file server).
    #[error("failed to fetch {artifact}")]
    Fetch {
        /// The artifact (its reference name in the bundle).
        artifact: String,
        /// What the client said.
        #[source]
        source: Box<ClientError>,
    },
    /// A reference, digest or name that cannot be used.
    #[error("invalid {what} for {artifact}")]
    Invalid {
        /// The artifact.
        artifact: String,
        /// What is invalid (`image reference`, `digest`, `chart name`).
        what: &'static str,
        /// Why.
        #[source]
        source: OciError,
    },
    /// A manifest or index that cannot be read as its media type says.
    #[error("{artifact}: manifest {digest} cannot be read as {media_type}")]
    Manifest {
        /// The artifact.
        artifact: String,
        /// The manifest.
        digest: String,
        /// Its media type.
        media_type: String,
        /// What the JSON parser said.
        #[source]
        source: serde_json::Error,
    },
    /// The content disagrees with the lock (a platform's manifest digest, a chart digest).
    #[error("{artifact}: {reason}")]
    LockMismatch {
        /// The artifact.
        artifact: String,
        /// What differs.
        reason: String,
    },
    /// An index offers none of the requested platforms.
    #[error("{artifact} has none of the platforms {wanted} (it has {offered})")]
    NoPlatform {
        /// The artifact.
        artifact: String,
        /// The requested platforms.
        wanted: String,
        /// What the index offers.
        offered: String,
    },
    /// Lock entries that are not verified, refused without `--allow-unverified`.
    // (The message names the first few: a whole lock's worth is not a readable line.)
    #[error(
        "{} lock entr{} not verified: {}; `idp-lab lock show` lists them; run `idp-lab lock update` on a connected machine, or pass --allow-unverified to bundle them as they resolve now",
        .entries.len(),
        if .entries.len() == 1 { "y is" } else { "ies are" },
        first_few(.entries)
    )]
    Unverified {
        /// The unverified entries, by name.
        entries: Vec<String>,
    },
    /// A platform outside what bundles may carry.
    #[error("unknown platform {value:?} (expected one of {expected})")]
    Platform {
        /// The value given.
        value: String,
        /// The supported platforms.
        expected: String,
    },
    /// The file is not a bundle: no `oci-layout` or `index.json`, or they do not parse.
    #[error("{} is not a bundle: {reason}", path.display())]
    NotABundle {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The walk over an artifact's manifests failed while writing its layout.
    #[error("{artifact}: the layout is inconsistent")]
    Walk {
        /// The artifact.
        artifact: String,
        /// What the walk found.
        #[source]
        source: Box<WalkError<std::io::Error>>,
    },
    /// Writing a docker-archive of the bundle's images failed
    /// ([`crate::docker_archive::docker_archive`]).
    #[error(transparent)]
    DockerArchive(Box<ArchiveError>),
    /// Pushing an artifact to a registry failed or was refused ([`crate::publish`]).
    #[error("failed to publish {repository}:{tag} to {registry}")]
    Publish {
        /// The registry's URL (`http://host:port`).
        registry: String,
        /// The repository (`local/charts/<chart>`, `local/stacks/<component>`).
        repository: String,
        /// The tag.
        tag: String,
        /// What the registry or the transport said.
        #[source]
        source: Box<ClientError>,
    },
    /// A chart package that is not a Helm chart package of the chart and version it is
    /// published as.
    #[error("the package of chart {chart} {version} {reason}")]
    Package {
        /// The chart's name.
        chart: String,
        /// Its version.
        version: String,
        /// What is wrong (`is not gzip-compressed`, `has no <chart>/Chart.yaml`, ...).
        reason: String,
        /// The reader's or parser's error, when one said it.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// An artifact that should be a Helm chart is not one.
    #[error("{artifact} is not a Helm chart: {reason}")]
    NotAChart {
        /// The artifact's reference.
        artifact: String,
        /// What it is instead.
        reason: String,
    },
    /// The bundle holds no upstream file for the URL ([`crate::read_file`]).
    #[error(
        "the bundle {} holds no upstream file {url} ({}); upstream files come from the lock: make the bundle again on a connected machine with the profile that needs it, `idp-lab bundle create --profile <profile> --out {}`",
        bundle.display(),
        match .held { 0 => "it holds no upstream file".to_owned(), 1 => "it holds 1 other".to_owned(), n => format!("it holds {n} others") },
        bundle.display()
    )]
    NoFile {
        /// The URL asked for.
        url: String,
        /// The bundle.
        bundle: PathBuf,
        /// How many upstream files it does hold.
        held: usize,
    },
    /// An upstream file of the bundle whose bytes are not those expected (the bundle was
    /// made from another lock, or by hand).
    #[error(
        "{url} in the bundle {} has {actual}, but {expected} is expected; make the bundle again from this lock on a connected machine (`idp-lab bundle create`)",
        bundle.display()
    )]
    FileMismatch {
        /// The file's URL.
        url: String,
        /// The bundle.
        bundle: PathBuf,
        /// The sha256 expected (the lock's), `sha256:<hex>`.
        expected: String,
        /// The sha256 of the bytes the bundle holds, `sha256:<hex>`.
        actual: String,
    },
    /// A blob of the bundle is missing, or does not have its descriptor's digest or size.
    #[error("the bundle {} is damaged: {reason}; `idp-lab bundle verify {}` lists every problem", bundle.display(), bundle.display())]
    Damaged {
        /// The bundle.
        bundle: PathBuf,
        /// What is wrong, naming the blob.
        reason: String,
    },
}

impl BundleError {
    /// An [`BundleError::Io`] for `path`.
    pub fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BundleError + use<> {
        let path = path.to_owned();
        move |source| BundleError::Io { action, path, source }
    }
}

/// A digest from a client string (`sha256:<hex>`), as an [`OciError`] for `artifact`.
pub(crate) fn digest(artifact: &str, s: &str) -> Result<Digest, BundleError> {
    Digest::parse(s).map_err(|source| BundleError::Invalid { artifact: artifact.to_owned(), what: "digest", source })
}

/// An error and its causes on one line ([`idp_core::diag::chain`]).
pub use idp_core::diag::chain;

/// The first five of `names`, and how many more there are.
fn first_few(names: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut out = names.iter().take(SHOWN).cloned().collect::<Vec<_>>().join(", ");
    if names.len() > SHOWN {
        out.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_keys_match_the_lock() {
        let p = |os: &str, arch: &str, variant: Option<&str>| Platform {
            architecture: arch.into(),
            os: os.into(),
            os_version: None,
            os_features: None,
            variant: variant.map(Into::into),
        };
        assert_eq!(platform_key(&p("linux", "amd64", None)), "linux/amd64");
        assert_eq!(platform_key(&p("linux", "arm64", Some("v8"))), "linux/arm64");
        assert_eq!(platform_key(&p("linux", "arm", Some("v7"))), "linux/arm/v7");
        assert_eq!(platform_key(&p("unknown", "unknown", Some(""))), "unknown/unknown");
    }

    #[test]
    fn kinds_round_trip_and_reject_others() {
        for k in [Kind::Image, Kind::Chart, Kind::File] {
            assert_eq!(Kind::parse(k.as_str()), Some(k));
        }
        assert_eq!(Kind::parse("Image"), None);
        let e = BundleError::Unverified { entries: vec!["a".into(), "b".into()] };
        assert!(e.to_string().starts_with("2 lock entries are not verified: a, b;"), "{e}");
        let many = BundleError::Unverified { entries: (0..8).map(|i| format!("e{i}")).collect() };
        assert!(many.to_string().starts_with("8 lock entries are not verified: e0, e1, e2, e3, e4 and 3 more;"), "{many}");
    }
}

/// Why a bundle's image could not be written as a docker-archive. Reading the bundle
/// itself fails with [`BundleError::Io`] or [`BundleError::NotABundle`]; everything
/// else reaches the caller as [`BundleError::DockerArchive`].
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// `index.json` names no such image.
    #[error(
        "{image} is not in the bundle {}{}; make a bundle that has it: `idp-lab bundle create --image {image} --platform {platform} --out FILE` (with --profile or --lock for the lab's own images)",
        bundle.display(),
        held_list(.held)
    )]
    NoImage {
        /// The image asked for, normalised (`docker.io/rancher/k3s:v1`).
        image: String,
        /// The bundle.
        bundle: PathBuf,
        /// The platform asked for.
        platform: String,
        /// The images the bundle holds, those of the same repository first.
        held: Vec<String>,
    },
    /// The image is in the bundle, but not for the platform asked for.
    #[error(
        "{image} in the bundle {} has no {platform} manifest ({}); make a bundle with that platform: `idp-lab bundle create --image {image} --platform {platform} --out FILE`",
        bundle.display(),
        offered_list(.offered, *.left_out)
    )]
    NoPlatform {
        /// The image, as the bundle names it.
        image: String,
        /// The bundle.
        bundle: PathBuf,
        /// The platform asked for.
        platform: String,
        /// The platforms the bundle holds of it.
        offered: Vec<String>,
        /// Whether the image's index lists the platform but the bundle left it out
        /// (`bundle create --platform` chose others).
        left_out: bool,
    },
    /// The artifact is not a container image Docker can load (a chart, a file, a zstd
    /// layer, a configuration that does not match its layers).
    #[error("{image} cannot be written as a docker-archive: {reason}")]
    NotAnImage {
        /// The image, as the bundle names it.
        image: String,
        /// Why.
        reason: String,
    },
    /// A blob the image needs is not in the bundle.
    #[error("{image}: blob {digest} is missing from the bundle {}; the bundle is damaged: `idp-lab bundle verify {}` lists what else is", bundle.display(), bundle.display())]
    Missing {
        /// The image, as the bundle names it.
        image: String,
        /// The missing blob.
        digest: Digest,
        /// The bundle.
        bundle: PathBuf,
    },
    /// A blob's bytes are not the ones its digest names (or not as many as its
    /// descriptor says). What was written so far is unusable: discard it.
    #[error(
        "{image}: blob {digest} in the bundle {} is damaged ({reason}); the docker-archive written so far is unusable and must be discarded; `idp-lab bundle verify {}` lists every damaged blob, make the bundle again on a connected machine",
        bundle.display(),
        bundle.display()
    )]
    Damaged {
        /// The image, as the bundle names it.
        image: String,
        /// The blob.
        digest: Digest,
        /// What is wrong: what the bytes hash to, or how many there are.
        reason: String,
        /// The bundle.
        bundle: PathBuf,
    },
    /// Writing the archive failed (a full disk, Docker closing the upload).
    #[error("failed to write the docker-archive; what was written so far is unusable and must be discarded")]
    Write {
        /// What the writer said.
        #[source]
        source: std::io::Error,
    },
}

impl From<ArchiveError> for BundleError {
    fn from(e: ArchiveError) -> BundleError {
        BundleError::DockerArchive(Box::new(e))
    }
}

/// How many names an archive error lists before it says how many more there are.
const LISTED: usize = 5;

fn held_list(held: &[String]) -> String {
    if held.is_empty() {
        return " (it holds no image)".into();
    }
    let mut out = format!(" (it holds {}", held.iter().take(LISTED).cloned().collect::<Vec<_>>().join(", "));
    if held.len() > LISTED {
        out.push_str(&format!(" and {} more", held.len() - LISTED));
    }
    out.push(')');
    out
}

fn offered_list(offered: &[String], left_out: bool) -> String {
    let has =
        if offered.is_empty() { "the bundle holds none of its platforms".to_owned() } else { format!("it has {}", offered.join(", ")) };
    if left_out { format!("{has}; its index lists the platform, but the bundle was made without it") } else { has }
}
