//! OCI content, as the bundle and the registry see it: digests, repository names, tags
//! and references (each parsed strictly, so nothing odd ever reaches a file path), the
//! media types idp-lab handles, the serde types of an image layout (`oci-layout`,
//! `index.json`), of image manifests and indexes, and [`walk`], which lists every blob
//! a root descriptor reaches.
//!
//! Pure: bytes come in through the caller's closures, values and errors come out.
//!
//! ```
//! use idp_core::oci::{Digest, ImageName, Reference, validate_repository};
//!
//! let digest = Digest::of(b"{}");
//! assert_eq!(digest.to_string(), "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a");
//! assert!(Digest::parse("sha512:00").is_err());
//! assert!(validate_repository("library/nginx").is_ok());
//! assert!(validate_repository("../etc").is_err());
//! assert!(matches!(Reference::parse("1.27"), Ok(Reference::Tag(_))));
//!
//! // `index.json` names images by full reference; the short forms normalise like Docker's.
//! let name = ImageName::parse("nginx:1.27").expect("a reference");
//! assert_eq!((name.registry.as_str(), name.repository.as_str()), ("docker.io", "library/nginx"));
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

#[cfg(test)]
mod tests;

/// The media type of an OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// The media type of an OCI image manifest (also the manifest of an OCI artifact).
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// The media type of an OCI image configuration.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// The media type of a gzip-compressed OCI layer.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// The media type of an uncompressed OCI layer.
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// The media type of the empty JSON blob `{}`: the configuration of an artifact that has
/// none (OCI image spec 1.1).
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
/// The digest of the empty JSON blob `{}` (2 bytes).
pub const OCI_EMPTY_DIGEST: &str = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
/// The media type of a Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// The media type of a Docker manifest list (the multi-platform form).
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// The media type of a Docker image configuration.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// The media type of a gzip-compressed Docker layer.
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// The configuration media type of a Helm chart stored as an OCI artifact.
pub const HELM_CONFIG: &str = "application/vnd.cncf.helm.config.v1+json";
/// The layer media type of a Helm chart's packaged content (the `.tgz`).
pub const HELM_CHART_CONTENT: &str = "application/vnd.cncf.helm.chart.content.v1.tar+gzip";
/// The media type of a generic artifact's content: a file stored as one layer of an OCI
/// manifest whose configuration is [`OCI_EMPTY`] and whose `artifactType` says what it is.
pub const GENERIC_CONTENT: &str = "application/octet-stream";
/// The annotation of an `index.json` descriptor naming its image, e.g.
/// `docker.io/library/nginx:1.27`.
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";
/// The `imageLayoutVersion` this module writes and reads.
pub const IMAGE_LAYOUT_VERSION: &str = "1.0.0";
/// The longest repository name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 255;
/// The longest tag accepted, in bytes.
pub const MAX_TAG_LEN: usize = 128;
/// How deep indexes may nest below the root before [`walk`] gives up.
pub const MAX_DEPTH: usize = 8;
/// The longest offending value an error keeps (the rest is cut), so an error never
/// echoes a megabyte of input.
const MAX_ECHO: usize = 256;

/// Whether `media_type` is an index: an OCI image index or a Docker manifest list.
pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
}

/// Whether `media_type` is an image manifest: OCI (images and artifacts) or Docker
/// schema 2.
pub fn is_manifest(media_type: &str) -> bool {
    media_type == OCI_MANIFEST || media_type == DOCKER_MANIFEST
}

/// A value this module refused, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OciError {
    /// Not a `sha256:<64 lowercase hex>` digest.
    #[error("invalid digest {value:?}: {reason}")]
    InvalidDigest {
        /// The value (cut at 256 bytes).
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Not a repository name of the distribution spec's grammar.
    #[error("invalid repository name {value:?}: {reason}")]
    InvalidName {
        /// The value (cut at 256 bytes).
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Not a tag (`[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`).
    #[error("invalid tag {value:?}: {reason}")]
    InvalidTag {
        /// The value (cut at 256 bytes).
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Not an image reference (`[registry/]repository[:tag][@digest]`).
    #[error("invalid image reference {value:?}: {reason}")]
    InvalidReference {
        /// The value (cut at 256 bytes).
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

fn echo(value: &str) -> String {
    if value.len() <= MAX_ECHO {
        return value.to_owned();
    }
    let mut end = MAX_ECHO;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &value[..end])
}

/// A content digest. Only `sha256` is accepted, in its canonical form: the algorithm,
/// a colon and 64 lowercase hex digits. Anything else (another algorithm, upper case, a
/// wrong length, `..`, `/`, percent-encoding) is refused, so [`Digest::hex`] is always
/// safe to put in a file path.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

impl Digest {
    /// The algorithm prefix, with its colon.
    pub const PREFIX: &'static str = "sha256:";

    /// Parses `sha256:<64 lowercase hex>`.
    pub fn parse(s: &str) -> Result<Digest, OciError> {
        let fail = |reason| Err(OciError::InvalidDigest { value: echo(s), reason });
        let Some((algorithm, hex)) = s.split_once(':') else {
            return fail("expected <algorithm>:<hex>");
        };
        if algorithm != "sha256" {
            return fail("only sha256 is supported");
        }
        if hex.len() != 64 {
            return fail("a sha256 digest has 64 hex digits");
        }
        if hex.bytes().any(|b| b.is_ascii_uppercase()) {
            return fail("hex digits must be lower case");
        }
        if !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return fail("not a hex digit");
        }
        Ok(Digest { hex: hex.to_owned() })
    }

    /// The sha256 digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest::from_sha256(&Sha256::digest(bytes).into())
    }

    /// The digest of a finished sha256 hash (e.g. from a streaming hasher).
    pub fn from_sha256(hash: &[u8; 32]) -> Digest {
        let mut hex = String::with_capacity(64);
        for b in hash {
            hex.push(char::from(HEX[usize::from(b >> 4)]));
            hex.push(char::from(HEX[usize::from(b & 0xf)]));
        }
        Digest { hex }
    }

    /// The 64 lowercase hex digits, without the algorithm.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The algorithm, `sha256`.
    pub fn algorithm(&self) -> &'static str {
        "sha256"
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest(sha256:{})", self.hex)
    }
}

impl FromStr for Digest {
    type Err = OciError;
    fn from_str(s: &str) -> Result<Digest, OciError> {
        Digest::parse(s)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Digest, D::Error> {
        let s = String::deserialize(deserializer)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Checks a repository name against the distribution spec's grammar,
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`, at most
/// [`MAX_NAME_LEN`] bytes. So `..`, a leading or trailing `/`, an empty component, upper
/// case and percent-encoding are all refused.
pub fn validate_repository(name: &str) -> Result<(), OciError> {
    let fail = |reason| Err(OciError::InvalidName { value: echo(name), reason });
    if name.is_empty() {
        return fail("empty");
    }
    if name.len() > MAX_NAME_LEN {
        return fail("longer than 255 bytes");
    }
    for component in name.split('/') {
        if let Err(reason) = check_component(component) {
            return fail(reason);
        }
    }
    Ok(())
}

/// One path component: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn check_component(component: &str) -> Result<(), &'static str> {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else {
        return Err("empty path component");
    };
    if !alnum(first) || !alnum(last) {
        return Err("a path component must start and end with a lowercase letter or digit");
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        match &bytes[start..i] {
            b"." | b"_" | b"__" => {}
            run if run.iter().all(|&b| b == b'-') => {}
            run if run.iter().all(|&b| matches!(b, b'.' | b'_' | b'-')) => {
                return Err("separators are one '.', one or two '_', or dashes");
            }
            _ => return Err("only lowercase letters, digits, '.', '_', '-' and '/' are allowed"),
        }
    }
    Ok(())
}

/// Checks a tag: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
pub fn validate_tag(tag: &str) -> Result<(), OciError> {
    let fail = |reason| Err(OciError::InvalidTag { value: echo(tag), reason });
    let Some(&first) = tag.as_bytes().first() else {
        return fail("empty");
    };
    if tag.len() > MAX_TAG_LEN {
        return fail("longer than 128 bytes");
    }
    if !(first.is_ascii_alphanumeric() || first == b'_') {
        return fail("must start with a letter, a digit or '_'");
    }
    if !tag.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
        return fail("only letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}

/// What a manifest request names: a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Reference {
    /// A tag, valid per [`validate_tag`].
    Tag(String),
    /// A digest.
    Digest(Digest),
}

impl Reference {
    /// A digest when `s` holds a `:` (tags cannot), a tag otherwise; each validated.
    pub fn parse(s: &str) -> Result<Reference, OciError> {
        if s.contains(':') {
            return Digest::parse(s).map(Reference::Digest);
        }
        validate_tag(s)?;
        Ok(Reference::Tag(s.to_owned()))
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(tag) => f.write_str(tag),
            Reference::Digest(digest) => digest.fmt(f),
        }
    }
}

/// The registry Docker assumes when a reference names none.
pub const DOCKER_HUB: &str = "docker.io";

/// A full image reference, normalised the way Docker and containerd normalise one:
/// `nginx:1.27` is `docker.io/library/nginx:1.27`; `index.docker.io` and
/// `registry-1.docker.io` are `docker.io`. The first path component is a registry when
/// it holds a `.` or a `:` or is `localhost`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageName {
    /// The registry host, with its port when it has one, e.g. `docker.io`, `ghcr.io`,
    /// `localhost:5000`.
    pub registry: String,
    /// The repository path on that registry, e.g. `library/nginx`.
    pub repository: String,
    /// The tag, when the reference has one.
    pub tag: Option<String>,
    /// The digest, when the reference has one.
    pub digest: Option<Digest>,
}

impl ImageName {
    /// Parses `[registry/]repository[:tag][@digest]`; the repository must meet
    /// [`validate_repository`], the tag [`validate_tag`].
    pub fn parse(s: &str) -> Result<ImageName, OciError> {
        let fail = |reason| Err(OciError::InvalidReference { value: echo(s), reason });
        let (rest, digest) = match s.split_once('@') {
            Some((rest, digest)) => match Digest::parse(digest) {
                Ok(digest) => (rest, Some(digest)),
                Err(_) => return fail("the part after '@' is not a sha256 digest"),
            },
            None => (s, None),
        };
        let slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (path, tag) = match rest[slash..].rfind(':') {
            Some(i) => (&rest[..slash + i], Some(&rest[slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(tag) = tag
            && validate_tag(tag).is_err()
        {
            return fail("the part after the last ':' is not a tag");
        }
        let (registry, repository) = match path.split_once('/') {
            Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => (first, rest.to_owned()),
            _ => (DOCKER_HUB, path.to_owned()),
        };
        if !valid_host(registry) {
            return fail("the registry is not a host name with an optional port");
        }
        let registry = canonical_registry(registry);
        let repository = if registry == DOCKER_HUB && !repository.contains('/') { format!("library/{repository}") } else { repository };
        if validate_repository(&repository).is_err() {
            return fail("the repository path breaks the distribution spec's grammar");
        }
        Ok(ImageName { registry, repository, tag: tag.map(str::to_owned), digest })
    }
}

impl fmt::Display for ImageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// A registry host name as clients name it, lower-cased, with Docker Hub's aliases
/// (`index.docker.io`, `registry-1.docker.io`) folded into [`DOCKER_HUB`].
pub fn canonical_registry(host: &str) -> String {
    let host = host.to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_owned(),
        _ => host,
    }
}

/// `host[:port]`: DNS-ish labels of letters, digits and `-`, separated by dots, and an
/// optional decimal port.
fn valid_host(s: &str) -> bool {
    let (host, port) = match s.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (s, None),
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    let labels_ok = !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    port_ok && labels_ok
}

/// The `oci-layout` file of an image layout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OciLayout {
    /// The layout version, [`IMAGE_LAYOUT_VERSION`].
    #[serde(rename = "imageLayoutVersion")]
    pub image_layout_version: String,
}

impl Default for OciLayout {
    fn default() -> OciLayout {
        OciLayout { image_layout_version: IMAGE_LAYOUT_VERSION.to_owned() }
    }
}

/// The platform an image of an index runs on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    /// The CPU architecture, e.g. `amd64`, `arm64`.
    pub architecture: String,
    /// The operating system, e.g. `linux`.
    pub os: String,
    /// The operating system version.
    #[serde(rename = "os.version", default, skip_serializing_if = "Option::is_none")]
    pub os_version: Option<String>,
    /// Operating system features.
    #[serde(rename = "os.features", default, skip_serializing_if = "Option::is_none")]
    pub os_features: Option<Vec<String>>,
    /// The CPU variant, e.g. `v8`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// A content descriptor: what a manifest, an index or `index.json` says about a blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// The media type of the content.
    pub media_type: String,
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// Other places the content may be fetched from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    /// Annotations, e.g. [`REF_NAME_ANNOTATION`] in `index.json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// The platform, for a manifest in an index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// The artifact type, for an artifact manifest in an index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
}

impl Descriptor {
    /// A descriptor with only the required fields.
    pub fn new(media_type: &str, digest: Digest, size: u64) -> Descriptor {
        Descriptor { media_type: media_type.to_owned(), digest, size, urls: None, annotations: None, platform: None, artifact_type: None }
    }

    /// The value of annotation `key`, if any.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.as_ref()?.get(key).map(String::as_str)
    }

    /// The [`REF_NAME_ANNOTATION`], if any.
    pub fn ref_name(&self) -> Option<&str> {
        self.annotation(REF_NAME_ANNOTATION)
    }
}

/// An image index (also the shape of a Docker manifest list and of `index.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageIndex {
    /// Always 2.
    pub schema_version: u32,
    /// [`OCI_INDEX`] or [`DOCKER_MANIFEST_LIST`]; optional in older OCI indexes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The artifact type, for an artifact index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The manifests.
    pub manifests: Vec<Descriptor>,
    /// The manifest this one refers to (referrers), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

impl ImageIndex {
    /// An empty OCI index, as a new layout's `index.json`.
    pub fn empty() -> ImageIndex {
        ImageIndex {
            schema_version: 2,
            media_type: Some(OCI_INDEX.to_owned()),
            artifact_type: None,
            manifests: Vec::new(),
            subject: None,
            annotations: None,
        }
    }
}

/// An image manifest: OCI (images and artifacts) or Docker schema 2.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    /// Always 2.
    pub schema_version: u32,
    /// [`OCI_MANIFEST`] or [`DOCKER_MANIFEST`]; optional in older OCI manifests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The artifact type, for an artifact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The configuration blob.
    pub config: Descriptor,
    /// The layers, in order.
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    /// The manifest this one refers to (referrers), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// One blob a root reaches, as [`walk`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes, as its descriptor says and the source confirmed.
    pub size: u64,
    /// The media type its (first) descriptor gives.
    pub media_type: String,
}

impl Blob {
    /// Whether it is a manifest or an index (served under `/manifests/`).
    pub fn is_manifest(&self) -> bool {
        is_index(&self.media_type) || is_manifest(&self.media_type)
    }
}

/// Why [`walk`] stopped. `E` is the error of the caller's closures.
#[derive(Debug, thiserror::Error)]
pub enum WalkError<E: std::error::Error + 'static> {
    /// A descriptor names a blob the source does not have.
    #[error("blob {digest} is missing (referenced by {parent})")]
    Missing {
        /// The missing blob.
        digest: Digest,
        /// What references it: a digest, or `the root`.
        parent: String,
    },
    /// A blob's size differs from its descriptor's.
    #[error("blob {digest} has {actual} bytes, its descriptor says {expected}")]
    SizeMismatch {
        /// The blob.
        digest: Digest,
        /// The descriptor's size.
        expected: u64,
        /// The size found.
        actual: u64,
    },
    /// A manifest's bytes do not hash to its digest.
    #[error("manifest {digest} does not match its digest (its bytes hash to {actual})")]
    DigestMismatch {
        /// The digest asked for.
        digest: Digest,
        /// The digest of the bytes found.
        actual: Digest,
    },
    /// A manifest or index is not valid JSON of its media type.
    #[error("manifest {digest} ({media_type}) cannot be read")]
    Parse {
        /// The manifest.
        digest: Digest,
        /// Its media type.
        media_type: String,
        /// What the JSON parser said.
        #[source]
        source: serde_json::Error,
    },
    /// Indexes nest deeper than [`MAX_DEPTH`].
    #[error("indexes nest deeper than {MAX_DEPTH} levels at {digest}")]
    TooDeep {
        /// The index that went too deep.
        digest: Digest,
    },
    /// The caller's closure failed.
    #[error("failed to read blob {digest}")]
    Source {
        /// The blob being read.
        digest: Digest,
        /// The closure's error.
        #[source]
        source: E,
    },
}

/// Lists every blob `root` reaches, the root included: an index's manifests (and
/// nested indexes), each manifest's configuration and layers. Each blob appears once, in
/// depth-first order (root first, then children in document order).
///
/// `read` returns the bytes of a manifest or index (called only for descriptors whose
/// media type [`is_index`] or [`is_manifest`], so never for a layer); `size` returns the
/// size of any other blob. Both return `Ok(None)` for a blob that does not exist.
/// Manifest bytes must hash to their digest and every size must match its descriptor;
/// a blob reached twice must be described with the same size both times.
pub fn walk<E>(
    root: &Descriptor,
    mut read: impl FnMut(&Digest) -> Result<Option<Vec<u8>>, E>,
    mut size: impl FnMut(&Digest) -> Result<Option<u64>, E>,
) -> Result<Vec<Blob>, WalkError<E>>
where
    E: std::error::Error + 'static,
{
    let mut seen: HashMap<Digest, u64> = HashMap::new();
    let mut out = Vec::new();
    // (descriptor, parent, depth); popped from the end, so children go in reversed.
    let mut stack: Vec<(Descriptor, String, usize)> = vec![(root.clone(), "the root".to_owned(), 0)];
    while let Some((desc, parent, depth)) = stack.pop() {
        if let Some(&known) = seen.get(&desc.digest) {
            if known != desc.size {
                return Err(WalkError::SizeMismatch { digest: desc.digest, expected: desc.size, actual: known });
            }
            continue;
        }
        let children = if is_index(&desc.media_type) || is_manifest(&desc.media_type) {
            let bytes = read(&desc.digest).map_err(|source| WalkError::Source { digest: desc.digest.clone(), source })?;
            let Some(bytes) = bytes else {
                return Err(WalkError::Missing { digest: desc.digest, parent });
            };
            check_manifest_bytes(&desc, &bytes)?;
            children_of(&desc, &bytes, depth)?
        } else {
            let found = size(&desc.digest).map_err(|source| WalkError::Source { digest: desc.digest.clone(), source })?;
            let Some(found) = found else {
                return Err(WalkError::Missing { digest: desc.digest, parent });
            };
            if found != desc.size {
                return Err(WalkError::SizeMismatch { digest: desc.digest, expected: desc.size, actual: found });
            }
            Vec::new()
        };
        seen.insert(desc.digest.clone(), desc.size);
        let parent = desc.digest.to_string();
        stack.extend(children.into_iter().rev().map(|child| (child, parent.clone(), depth + 1)));
        out.push(Blob { digest: desc.digest, size: desc.size, media_type: desc.media_type });
    }
    Ok(out)
}

fn check_manifest_bytes<E: std::error::Error + 'static>(desc: &Descriptor, bytes: &[u8]) -> Result<(), WalkError<E>> {
    let actual = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    if actual != desc.size {
        return Err(WalkError::SizeMismatch { digest: desc.digest.clone(), expected: desc.size, actual });
    }
    let hashed = Digest::of(bytes);
    if hashed != desc.digest {
        return Err(WalkError::DigestMismatch { digest: desc.digest.clone(), actual: hashed });
    }
    Ok(())
}

fn children_of<E: std::error::Error + 'static>(desc: &Descriptor, bytes: &[u8], depth: usize) -> Result<Vec<Descriptor>, WalkError<E>> {
    let parse_error = |source| WalkError::Parse { digest: desc.digest.clone(), media_type: desc.media_type.clone(), source };
    if is_index(&desc.media_type) {
        if depth >= MAX_DEPTH {
            return Err(WalkError::TooDeep { digest: desc.digest.clone() });
        }
        let index: ImageIndex = serde_json::from_slice(bytes).map_err(parse_error)?;
        return Ok(index.manifests);
    }
    let manifest: ImageManifest = serde_json::from_slice(bytes).map_err(parse_error)?;
    let mut children = Vec::with_capacity(manifest.layers.len() + 1);
    children.push(manifest.config);
    children.extend(manifest.layers);
    Ok(children)
}

/// The name of the KEP-1755 ConfigMap that advertises a cluster's local registry.
pub const LOCAL_REGISTRY_HOSTING_NAME: &str = "local-registry-hosting";
/// Its namespace.
pub const LOCAL_REGISTRY_HOSTING_NAMESPACE: &str = "kube-public";
/// Its data key, whose value is a YAML document.
pub const LOCAL_REGISTRY_HOSTING_KEY: &str = "localRegistryHosting.v1";

/// What the KEP-1755 `localRegistryHosting.v1` document says: where tools push images so
/// that the cluster can pull them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalRegistryHosting {
    /// The address on the host, for `docker push` (e.g. `127.0.0.1:5001`).
    pub host: String,
    /// The address container runtimes on the nodes pull from, when it differs.
    pub host_from_container_runtime: Option<String>,
    /// The address pods reach the registry at, when it differs.
    pub host_from_cluster_network: Option<String>,
    /// A URL that documents the registry.
    pub help: String,
}

impl LocalRegistryHosting {
    /// The `localRegistryHosting.v1` document, as YAML text.
    pub fn document(&self) -> String {
        let mut doc = serde_json::Map::new();
        doc.insert("host".into(), self.host.clone().into());
        if let Some(runtime) = &self.host_from_container_runtime {
            doc.insert("hostFromContainerRuntime".into(), runtime.clone().into());
        }
        if let Some(network) = &self.host_from_cluster_network {
            doc.insert("hostFromClusterNetwork".into(), network.clone().into());
        }
        doc.insert("help".into(), self.help.clone().into());
        crate::yaml::to_yaml(&serde_json::Value::Object(doc))
    }

    /// The ConfigMap `kube-public/local-registry-hosting` holding [`Self::document`].
    pub fn config_map(&self) -> serde_json::Value {
        serde_json::json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": { "name": LOCAL_REGISTRY_HOSTING_NAME, "namespace": LOCAL_REGISTRY_HOSTING_NAMESPACE },
            "data": { LOCAL_REGISTRY_HOSTING_KEY: self.document() },
        })
    }
}
