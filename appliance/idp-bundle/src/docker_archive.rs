//! A docker-archive out of a bundle: the `docker save` format that Docker 20.10 loads
//! (`POST /images/load`, `docker load -i`), that containerd imports (`ctr images import`,
//! k3s' air-gap `images/` directory) and that skopeo reads (`docker-archive:FILE:REF`).
//!
//! The archive is a tar holding:
//!
//! - `<config hex>.json`: each image's configuration, byte for byte (so Docker's image ID
//!   is the configuration's digest);
//! - `<blob hex>/layer.tar`: each layer, byte for byte as the bundle stores it, so
//!   compressed when it was pulled compressed. Docker's loader and containerd's importer
//!   detect the compression and decompress; skopeo does too. Only gzip and uncompressed
//!   layers are accepted: Docker 20.10 cannot read zstd layers (`unexpected EOF`), so
//!   they are refused up front. A layer two images share is written once;
//! - `manifest.json`, last: `[{"Config":"<hex>.json","RepoTags":["name:tag"],"Layers":[...]}]`,
//!   one entry per distinct image.
//!
//! [`docker_archive`] finds every image in `index.json` and resolves it to one platform's
//! manifest before it writes anything, so a missing image or platform costs nothing. Then
//! it streams: each blob is read from the bundle's tar at its offset (as
//! [`scan`] found it) through a 256 KiB buffer, and hashed while it
//! is copied. A blob whose bytes do not hash to its digest stops the archive **before
//! its last chunk is written**: the output then ends inside that entry, with no
//! `manifest.json` and no end-of-archive blocks, so Docker, containerd and skopeo all
//! refuse it. Whoever receives the output must still discard it on error (delete the
//! file, or abort the upload to Docker with an error rather than ending it cleanly).

use crate::bundle::{ArchiveError, BundleError, KIND_ANNOTATION, Kind, ORIGINAL_ANNOTATION, platform_key};
use crate::client::MANIFEST_LIMIT;
use crate::layout::{Scan, scan};
use idp_core::oci::{
    DOCKER_CONFIG, DOCKER_LAYER_GZIP, Descriptor, Digest, ImageIndex, ImageManifest, ImageName, MAX_DEPTH, OCI_CONFIG, OCI_LAYER_GZIP,
    OCI_LAYER_TAR, Platform, is_index, is_manifest,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::collections::HashSet;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

/// The read buffer for blobs: the most memory a blob copy takes, whatever its size.
const CHUNK: usize = 256 * 1024;
/// The tar block size.
const BLOCK: u64 = 512;

/// The layer media types a docker-archive may carry: what Docker 20.10's `docker load`
/// decompresses (gzip) or reads as is (tar), including their non-distributable forms.
const LAYER_TYPES: [&str; 6] = [
    OCI_LAYER_TAR,
    OCI_LAYER_GZIP,
    DOCKER_LAYER_GZIP,
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
];

/// One image written into the archive, as it was asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchivedImage {
    /// The reference as given to [`docker_archive`].
    pub reference: String,
    /// The name `index.json` gives it (its `org.opencontainers.image.ref.name`).
    pub bundled_as: String,
    /// The tag Docker will show for it ([`repo_tag`]); `None` for a digest-only reference.
    pub repo_tag: Option<String>,
    /// The platform of the manifest written (`linux/amd64`, `linux/arm64`).
    pub platform: String,
    /// The digest of that platform's manifest.
    pub manifest: Digest,
    /// The digest of its configuration: the image ID Docker gives the loaded image.
    pub config: Digest,
    /// Its layers, in order, by the digest they are stored under (compressed or not).
    pub layers: Vec<Digest>,
}

/// What [`docker_archive`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchiveSummary {
    /// Each image asked for, in the order given.
    pub images: Vec<ArchivedImage>,
    /// The `manifest.json` entries: one per distinct image (two references to the same
    /// image share one entry, with both tags).
    pub entries: usize,
    /// The blobs written (configurations and layers), each once however many images use it.
    pub blobs: usize,
    /// The bytes written, the tar's headers and padding included.
    pub bytes: u64,
}

/// The tag Docker shows for an image loaded under `name` (`docker images`,
/// `RepoTags`): Docker Hub's `library/` and `docker.io/` are dropped
/// (`docker.io/library/nginx:1` is `nginx:1`, `docker.io/rancher/k3s:v1` is
/// `rancher/k3s:v1`), other registries keep their host (`ghcr.io/me/app:2`). A
/// reference with both a tag and a digest gets its tag (Docker refuses a digest in a
/// tag). A digest-only reference gets `None`: Docker loads the image untagged, and the
/// caller addresses it by its image ID ([`ArchivedImage::config`]).
pub fn repo_tag(name: &ImageName) -> Option<String> {
    let tag = name.tag.as_deref()?;
    if name.registry == idp_core::oci::DOCKER_HUB {
        let repository = match name.repository.strip_prefix("library/") {
            Some(short) if !short.contains('/') => short,
            _ => name.repository.as_str(),
        };
        return Some(format!("{repository}:{tag}"));
    }
    Some(format!("{}/{}:{tag}", name.registry, name.repository))
}

/// A platform asked for: `os/arch[/variant]`, normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Wanted {
    os: String,
    architecture: String,
    variant: String,
}

impl Wanted {
    fn parse(s: &str) -> Result<Wanted, BundleError> {
        let invalid =
            || BundleError::Platform { value: s.to_owned(), expected: "os/arch[/variant], e.g. linux/amd64 or linux/arm64".into() };
        let parts: Vec<&str> = s.split('/').collect();
        let ok = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
        let (os, arch, variant) = match parts.as_slice() {
            [os, arch] if ok(os) && ok(arch) => (*os, *arch, None),
            [os, arch, variant] if ok(os) && ok(arch) && ok(variant) => (*os, *arch, Some(*variant)),
            _ => return Err(invalid()),
        };
        Ok(Wanted::normalised(os, arch, variant))
    }

    /// containerd's normalisation (`platforms.Normalize`): `aarch64` is `arm64`, whose
    /// variant `v8` is the same as none; `x86_64` is `amd64`, whose `v1` is none; `arm`
    /// without a variant is `arm/v7`.
    fn normalised(os: &str, arch: &str, variant: Option<&str>) -> Wanted {
        let os = os.to_ascii_lowercase();
        let arch = arch.to_ascii_lowercase();
        let variant = variant.unwrap_or("").to_ascii_lowercase();
        let (architecture, variant) = match (arch.as_str(), variant.as_str()) {
            ("x86_64" | "x86-64" | "amd64", "v1") => ("amd64".to_owned(), String::new()),
            ("x86_64" | "x86-64" | "amd64", v) => ("amd64".to_owned(), v.to_owned()),
            ("aarch64" | "arm64", "8" | "v8" | "v8.0") => ("arm64".to_owned(), String::new()),
            ("aarch64" | "arm64", v) => ("arm64".to_owned(), v.to_owned()),
            ("armhf", _) => ("arm".to_owned(), "v7".to_owned()),
            ("armel", _) => ("arm".to_owned(), "v6".to_owned()),
            ("arm", "") => ("arm".to_owned(), "v7".to_owned()),
            ("arm", v) if v.bytes().all(|b| b.is_ascii_digit()) => ("arm".to_owned(), format!("v{v}")),
            ("i386" | "386", v) => ("386".to_owned(), v.to_owned()),
            (a, v) => (a.to_owned(), v.to_owned()),
        };
        Wanted { os, architecture, variant }
    }

    /// Whether `platform` is this one once both are normalised (no fallback to other
    /// variants or to 32-bit: a node must run the native architecture).
    fn matches(&self, platform: &Platform) -> bool {
        Wanted::normalised(&platform.os, &platform.architecture, platform.variant.as_deref()) == *self
    }
}

/// The platform fields of an image configuration.
#[derive(Debug, Default, Deserialize)]
struct ConfigPlatform {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
    #[serde(default)]
    variant: Option<String>,
    #[serde(default)]
    rootfs: Option<RootFs>,
}

#[derive(Debug, Default, Deserialize)]
struct RootFs {
    #[serde(default)]
    diff_ids: Vec<serde_json::Value>,
}

/// One `manifest.json` entry of a docker-archive.
#[derive(Debug, Serialize)]
struct ManifestEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags")]
    repo_tags: Vec<String>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

/// An image resolved to its platform's manifest, its configuration verified.
struct Resolved {
    image: ArchivedImage,
    config: Descriptor,
    config_bytes: Vec<u8>,
    layers: Vec<Descriptor>,
}

/// Writes a docker-archive of `images` from the bundle at `bundle` to `out`, each
/// image as its `platform` manifest (`linux/amd64`, `linux/arm64`, `linux/arm64/v8`).
///
/// - Each image is found by reference in `index.json`. References are normalised
///   ([`ImageName`]): `rancher/k3s:v1` is `docker.io/rancher/k3s:v1`; no tag means
///   `:latest`; a reference with a digest matches the entry pinned to that digest (the
///   root's, or the one `dev.idp-lab.bundle.digest` records).
/// - An index is resolved to the manifest of `platform`, matched like containerd's
///   matcher: `arm64` is `arm64/v8`, `amd64/v1` is `amd64`, no fallback to other
///   architectures. A single manifest's configuration must name that platform when it
///   names one.
/// - A missing image or platform is an error naming the image, what the bundle holds,
///   and the `idp-lab bundle create` that fixes it. Every image is resolved before
///   anything is written.
/// - `RepoTags` are the requested references in Docker's form ([`repo_tag`]); a
///   digest-only reference is loaded untagged.
/// - Blobs are streamed from the bundle and verified while they are copied. On any error
///   the output is incomplete and must be discarded (see the module documentation).
///
/// `out` gets many small writes (tar headers): give it a buffered writer or a pipe. It is
/// flushed at the end.
pub fn docker_archive(bundle: &Path, images: &[String], platform: &str, out: impl Write) -> Result<ArchiveSummary, BundleError> {
    let wanted = Wanted::parse(platform)?;
    let mut requests = Vec::with_capacity(images.len());
    for image in images {
        let mut name =
            ImageName::parse(image).map_err(|source| BundleError::Invalid { artifact: image.clone(), what: "image reference", source })?;
        if name.tag.is_none() && name.digest.is_none() {
            name.tag = Some("latest".into());
        }
        requests.push((image.clone(), name));
    }
    let scanned = scan(bundle, false)?;
    let file = File::open(bundle).map_err(BundleError::io("open", bundle))?;
    let mut reader = Reader { path: bundle, scan: &scanned, file, buf: vec![0u8; CHUNK] };
    let mut resolved = Vec::with_capacity(requests.len());
    for (reference, name) in &requests {
        resolved.push(reader.resolve(reference, name, platform, &wanted)?);
    }

    let mut tar = TarOut { out, bytes: 0 };
    let mut written: HashSet<Digest> = HashSet::new();
    let mut entries: Vec<(Digest, Vec<Digest>, ManifestEntry)> = Vec::new();
    for r in &resolved {
        if written.insert(r.config.digest.clone()) {
            tar.file(&format!("{}.json", r.config.digest.hex()), &r.config_bytes)?;
        }
        for layer in &r.layers {
            if written.insert(layer.digest.clone()) {
                tar.dir(&format!("{}/", layer.digest.hex()))?;
                tar.header(&format!("{}/layer.tar", layer.digest.hex()), layer.size)?;
                reader.copy(&r.image.bundled_as, layer, &mut tar)?;
                tar.pad(layer.size)?;
            }
        }
        let layer_digests: Vec<Digest> = r.layers.iter().map(|l| l.digest.clone()).collect();
        let tags = r.image.repo_tag.iter().cloned();
        match entries.iter_mut().find(|(config, layers, _)| *config == r.config.digest && *layers == layer_digests) {
            Some((_, _, entry)) => {
                for tag in tags {
                    if !entry.repo_tags.contains(&tag) {
                        entry.repo_tags.push(tag);
                    }
                }
            }
            None => {
                let entry = ManifestEntry {
                    config: format!("{}.json", r.config.digest.hex()),
                    repo_tags: tags.collect(),
                    layers: r.layers.iter().map(|l| format!("{}/layer.tar", l.digest.hex())).collect(),
                };
                entries.push((r.config.digest.clone(), layer_digests, entry));
            }
        }
    }
    let manifest: Vec<&ManifestEntry> = entries.iter().map(|(_, _, e)| e).collect();
    let manifest = serde_json::to_vec(&manifest).map_err(|e| ArchiveError::Write { source: std::io::Error::other(e) })?;
    tar.file("manifest.json", &manifest)?;
    let bytes = tar.finish()?;
    Ok(ArchiveSummary { entries: entries.len(), blobs: written.len(), bytes, images: resolved.into_iter().map(|r| r.image).collect() })
}

/// The bundle's tar, read at the offsets [`scan`] found.
struct Reader<'a> {
    path: &'a Path,
    scan: &'a Scan,
    file: File,
    buf: Vec<u8>,
}

impl Reader<'_> {
    fn resolve(&mut self, reference: &str, name: &ImageName, platform: &str, wanted: &Wanted) -> Result<Resolved, BundleError> {
        let index = self
            .scan
            .index
            .as_ref()
            .ok_or_else(|| BundleError::NotABundle { path: self.path.to_owned(), reason: "no index.json".into() })?;
        let root = index
            .manifests
            .iter()
            .find(|d| d.ref_name().and_then(|n| ImageName::parse(n).ok()).is_some_and(|have| same_image(name, &have, d)));
        let Some(root) = root else {
            return Err(self.no_image(name, platform).into());
        };
        let image = root.ref_name().unwrap_or(reference).to_owned();
        if let Some(kind) = root.annotation(KIND_ANNOTATION).and_then(Kind::parse).filter(|k| *k != Kind::Image) {
            return Err(ArchiveError::NotAnImage { image, reason: format!("it is a {kind}, not a container image") }.into());
        }
        let (manifest_desc, listed) = self.pick(&image, root, platform, wanted, 0)?;
        let bytes = self.json(&image, &manifest_desc)?;
        let manifest: ImageManifest = serde_json::from_slice(&bytes).map_err(|source| BundleError::Manifest {
            artifact: image.clone(),
            digest: manifest_desc.digest.to_string(),
            media_type: manifest_desc.media_type.clone(),
            source,
        })?;
        let not_an_image = |reason: String| ArchiveError::NotAnImage { image: image.clone(), reason };
        if manifest.config.media_type != OCI_CONFIG && manifest.config.media_type != DOCKER_CONFIG {
            let what = manifest.artifact_type.as_deref().unwrap_or(&manifest.config.media_type);
            return Err(not_an_image(format!("its manifest {} is a {what} artifact, not a container image", manifest_desc.digest)).into());
        }
        let config_bytes = self.json(&image, &manifest.config)?;
        let config: ConfigPlatform = serde_json::from_slice(&config_bytes).map_err(|source| BundleError::Manifest {
            artifact: image.clone(),
            digest: manifest.config.digest.to_string(),
            media_type: manifest.config.media_type.clone(),
            source,
        })?;
        let diff_ids = config.rootfs.as_ref().map_or(0, |r| r.diff_ids.len());
        if diff_ids != manifest.layers.len() {
            return Err(not_an_image(format!(
                "its configuration {} lists {diff_ids} layer diff IDs for {} layers",
                manifest.config.digest,
                manifest.layers.len()
            ))
            .into());
        }
        let from_config = (!config.os.is_empty() && !config.architecture.is_empty()).then(|| Platform {
            architecture: config.architecture.clone(),
            os: config.os.clone(),
            os_version: None,
            os_features: None,
            variant: config.variant.clone(),
        });
        if let Some(p) = &from_config
            && !wanted.matches(p)
        {
            return Err(ArchiveError::NoPlatform {
                image,
                bundle: self.path.to_owned(),
                platform: platform.to_owned(),
                offered: vec![platform_key(p)],
                left_out: false,
            }
            .into());
        }
        let platform_name = from_config.as_ref().or(listed.as_ref()).map_or_else(|| platform.to_owned(), platform_key);
        for layer in &manifest.layers {
            if layer.media_type.ends_with("+zstd") {
                return Err(not_an_image(format!(
                    "layer {} is zstd-compressed ({}), which Docker 20.10 cannot load; bundle a gzip-compressed build of the image",
                    layer.digest, layer.media_type
                ))
                .into());
            }
            if !LAYER_TYPES.contains(&layer.media_type.as_str()) {
                return Err(not_an_image(format!("layer {} is {}, not an image layer", layer.digest, layer.media_type)).into());
            }
            self.present(&image, layer)?;
        }
        let repo_tag = repo_tag(name);
        Ok(Resolved {
            image: ArchivedImage {
                reference: reference.to_owned(),
                bundled_as: image,
                repo_tag,
                platform: platform_name,
                manifest: manifest_desc.digest.clone(),
                config: manifest.config.digest.clone(),
                layers: manifest.layers.iter().map(|l| l.digest.clone()).collect(),
            },
            config: manifest.config,
            config_bytes,
            layers: manifest.layers,
        })
    }

    /// The manifest of `wanted` that `desc` leads to, and the platform its index lists
    /// it under (none for a single manifest).
    fn pick(
        &mut self,
        image: &str,
        desc: &Descriptor,
        platform: &str,
        wanted: &Wanted,
        depth: usize,
    ) -> Result<(Descriptor, Option<Platform>), BundleError> {
        if is_manifest(&desc.media_type) {
            return Ok((desc.clone(), None));
        }
        if !is_index(&desc.media_type) {
            return Err(ArchiveError::NotAnImage {
                image: image.to_owned(),
                reason: format!("its root is {}, not a manifest or an index", desc.media_type),
            }
            .into());
        }
        if depth >= MAX_DEPTH {
            return Err(ArchiveError::NotAnImage {
                image: image.to_owned(),
                reason: format!("indexes nest deeper than {MAX_DEPTH} levels"),
            }
            .into());
        }
        let bytes = self.json(image, desc)?;
        let index: ImageIndex = serde_json::from_slice(&bytes).map_err(|source| BundleError::Manifest {
            artifact: image.to_owned(),
            digest: desc.digest.to_string(),
            media_type: desc.media_type.clone(),
            source,
        })?;
        // The wrapped original Docker manifest list is not walked: its other platforms are
        // not in the bundle. Attestations (`unknown/unknown`) are no platform.
        let entries: Vec<&Descriptor> = index.manifests.iter().filter(|m| m.annotation(ORIGINAL_ANNOTATION).is_none()).collect();
        let mut left_out = false;
        for entry in entries.iter().filter(|m| m.platform.as_ref().is_some_and(|p| wanted.matches(p))) {
            if !self.scan.blobs.contains_key(&entry.digest) {
                left_out = true;
                continue;
            }
            if is_index(&entry.media_type) {
                return self.pick(image, entry, platform, wanted, depth + 1);
            }
            return Ok(((*entry).clone(), entry.platform.clone()));
        }
        let mut offered: Vec<String> = Vec::new();
        for entry in &entries {
            if let Some(p) = entry.platform.as_ref().filter(|p| p.os != "unknown" && self.scan.blobs.contains_key(&entry.digest)) {
                let key = platform_key(p);
                if !offered.contains(&key) {
                    offered.push(key);
                }
            }
        }
        Err(ArchiveError::NoPlatform {
            image: image.to_owned(),
            bundle: self.path.to_owned(),
            platform: platform.to_owned(),
            offered,
            left_out,
        }
        .into())
    }

    fn no_image(&self, name: &ImageName, platform: &str) -> ArchiveError {
        let mut same = Vec::new();
        let mut other = Vec::new();
        for desc in self.scan.index.iter().flat_map(|i| &i.manifests) {
            let Some(ref_name) = desc.ref_name() else { continue };
            if desc.annotation(KIND_ANNOTATION).and_then(Kind::parse).is_some_and(|k| k != Kind::Image) {
                continue;
            }
            match ImageName::parse(ref_name) {
                Ok(have) if have.registry == name.registry && have.repository == name.repository => same.push(ref_name.to_owned()),
                _ => other.push(ref_name.to_owned()),
            }
        }
        same.extend(other);
        ArchiveError::NoImage { image: name.to_string(), bundle: self.path.to_owned(), platform: platform.to_owned(), held: same }
    }

    /// Checks that a blob is in the bundle with its descriptor's size.
    fn present(&self, image: &str, desc: &Descriptor) -> Result<u64, ArchiveError> {
        let Some(blob) = self.scan.blobs.get(&desc.digest) else {
            return Err(ArchiveError::Missing { image: image.to_owned(), digest: desc.digest.clone(), bundle: self.path.to_owned() });
        };
        if blob.size != desc.size {
            return Err(self.damaged(image, &desc.digest, format!("it has {} bytes, its descriptor says {}", blob.size, desc.size)));
        }
        Ok(blob.offset)
    }

    fn damaged(&self, image: &str, digest: &Digest, reason: String) -> ArchiveError {
        ArchiveError::Damaged { image: image.to_owned(), digest: digest.clone(), reason, bundle: self.path.to_owned() }
    }

    /// The bytes of a manifest, an index or a configuration, checked against `desc`.
    fn json(&mut self, image: &str, desc: &Descriptor) -> Result<Vec<u8>, BundleError> {
        let offset = self.present(image, desc)?;
        if desc.size > MANIFEST_LIMIT {
            return Err(ArchiveError::NotAnImage {
                image: image.to_owned(),
                reason: format!(
                    "{} ({}) has {} bytes, more than the {MANIFEST_LIMIT} a manifest or configuration may",
                    desc.digest, desc.media_type, desc.size
                ),
            }
            .into());
        }
        let bytes = match self.scan.small.get(&desc.digest) {
            Some(bytes) => bytes.clone(),
            None => {
                // Not kept by the scan (it did not look like JSON): read it at its offset.
                let mut bytes = vec![0u8; usize::try_from(desc.size).unwrap_or(usize::MAX)];
                self.file
                    .seek(SeekFrom::Start(offset))
                    .and_then(|_| self.file.read_exact(&mut bytes))
                    .map_err(BundleError::io("read", self.path))?;
                bytes
            }
        };
        let actual = Digest::of(&bytes);
        if actual != desc.digest {
            return Err(self.damaged(image, &desc.digest, format!("its bytes hash to {actual}")).into());
        }
        Ok(bytes)
    }

    /// Copies a blob to `tar` through the buffer, hashing it; its last chunk is written
    /// only once the whole blob has its digest.
    fn copy<W: Write>(&mut self, image: &str, desc: &Descriptor, tar: &mut TarOut<W>) -> Result<(), BundleError> {
        let offset = self.present(image, desc)?;
        self.file.seek(SeekFrom::Start(offset)).map_err(BundleError::io("read", self.path))?;
        let mut hasher = Sha256::new();
        let mut left = desc.size;
        while left > 0 {
            let n = usize::try_from(left.min(CHUNK as u64)).unwrap_or(CHUNK);
            let chunk = &mut self.buf[..n];
            self.file.read_exact(chunk).map_err(BundleError::io("read", self.path))?;
            hasher.update(&*chunk);
            left -= n as u64;
            if left == 0 {
                let actual = Digest::from_sha256(&hasher.clone().finalize().into());
                if actual != desc.digest {
                    return Err(self.damaged(image, &desc.digest, format!("its bytes hash to {actual}")).into());
                }
            }
            tar.data(&self.buf[..n])?;
        }
        Ok(())
    }
}

/// Whether the bundle's entry `have` (its descriptor `desc`) is the image `want` names.
fn same_image(want: &ImageName, have: &ImageName, desc: &Descriptor) -> bool {
    if want.registry != have.registry || want.repository != have.repository {
        return false;
    }
    match (&want.digest, &want.tag) {
        (Some(digest), _) => {
            have.digest.as_ref() == Some(digest)
                || desc.digest == *digest
                || desc.annotation(crate::bundle::DIGEST_ANNOTATION).is_some_and(|d| d == digest.to_string())
        }
        (None, Some(tag)) => have.tag.as_ref() == Some(tag),
        (None, None) => false,
    }
}

/// A tar written by hand, so that nothing (no `Drop`) completes an archive that failed:
/// the end-of-archive blocks are written only by [`TarOut::finish`].
struct TarOut<W: Write> {
    out: W,
    bytes: u64,
}

impl<W: Write> TarOut<W> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), ArchiveError> {
        self.out.write_all(bytes).map_err(|source| ArchiveError::Write { source })?;
        self.bytes += bytes.len() as u64;
        Ok(())
    }

    fn entry_header(&mut self, name: &str, size: u64, kind: tar::EntryType, mode: u32) -> Result<(), ArchiveError> {
        let mut header = tar::Header::new_ustar();
        header.set_path(name).map_err(|source| ArchiveError::Write { source })?;
        header.set_entry_type(kind);
        header.set_size(size);
        header.set_mode(mode);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        header.set_cksum();
        self.write(header.as_bytes())
    }

    fn header(&mut self, name: &str, size: u64) -> Result<(), ArchiveError> {
        self.entry_header(name, size, tar::EntryType::Regular, 0o644)
    }

    fn dir(&mut self, name: &str) -> Result<(), ArchiveError> {
        self.entry_header(name, 0, tar::EntryType::Directory, 0o755)
    }

    fn data(&mut self, bytes: &[u8]) -> Result<(), ArchiveError> {
        self.write(bytes)
    }

    fn pad(&mut self, size: u64) -> Result<(), ArchiveError> {
        let rest = (BLOCK - size % BLOCK) % BLOCK;
        self.write(&[0u8; BLOCK as usize][..usize::try_from(rest).unwrap_or(0)])
    }

    fn file(&mut self, name: &str, bytes: &[u8]) -> Result<(), ArchiveError> {
        self.header(name, bytes.len() as u64)?;
        self.data(bytes)?;
        self.pad(bytes.len() as u64)
    }

    /// The end-of-archive blocks, and a flush; the bytes written in all.
    fn finish(mut self) -> Result<u64, ArchiveError> {
        self.write(&[0u8; 2 * BLOCK as usize])?;
        self.out.flush().map_err(|source| ArchiveError::Write { source })?;
        Ok(self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> ImageName {
        ImageName::parse(s).expect("a reference")
    }

    #[test]
    fn repo_tags_are_dockers_short_form() {
        assert_eq!(repo_tag(&name("docker.io/library/nginx:1")).as_deref(), Some("nginx:1"));
        assert_eq!(repo_tag(&name("nginx:1")).as_deref(), Some("nginx:1"));
        assert_eq!(repo_tag(&name("docker.io/rancher/k3s:v1")).as_deref(), Some("rancher/k3s:v1"));
        assert_eq!(repo_tag(&name("index.docker.io/rancher/k3s:v1")).as_deref(), Some("rancher/k3s:v1"));
        assert_eq!(repo_tag(&name("ghcr.io/me/app:2")).as_deref(), Some("ghcr.io/me/app:2"));
        assert_eq!(repo_tag(&name("localhost:5000/library/app:2")).as_deref(), Some("localhost:5000/library/app:2"));
        assert_eq!(repo_tag(&name("docker.io/library/a/b:1")).as_deref(), Some("library/a/b:1"));
        let digest = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
        assert_eq!(repo_tag(&name(&format!("nginx@{digest}"))), None, "digest-only: untagged");
        assert_eq!(repo_tag(&name(&format!("nginx:1@{digest}"))).as_deref(), Some("nginx:1"), "the tag, without the digest");
    }

    #[test]
    fn references_match_the_bundles_names_once_normalised() {
        let digest = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
        let mut desc = Descriptor::new(idp_core::oci::OCI_INDEX, Digest::parse(digest).expect("a digest"), 2);
        let k3s = name("docker.io/rancher/k3s:v1");
        assert!(same_image(&name("rancher/k3s:v1"), &k3s, &desc));
        assert!(same_image(&name("index.docker.io/rancher/k3s:v1"), &k3s, &desc));
        assert!(!same_image(&name("rancher/k3s:v2"), &k3s, &desc));
        assert!(!same_image(&name("ghcr.io/rancher/k3s:v1"), &k3s, &desc));
        assert!(same_image(&name("nginx:1"), &name("docker.io/library/nginx:1"), &desc));
        // By digest: the root's, the one the name carries, or the wrapped original's.
        assert!(same_image(&name(&format!("rancher/k3s@{digest}")), &k3s, &desc));
        assert!(same_image(&name(&format!("rancher/k3s:other@{digest}")), &k3s, &desc), "the digest decides");
        let other = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
        assert!(!same_image(&name(&format!("rancher/k3s@{other}")), &k3s, &desc));
        desc.annotations = Some([(crate::bundle::DIGEST_ANNOTATION.to_owned(), other.to_owned())].into());
        assert!(same_image(&name(&format!("rancher/k3s@{other}")), &k3s, &desc));
        assert!(same_image(&name(&format!("rancher/k3s@{other}")), &name(&format!("rancher/k3s@{other}")), &desc));
    }

    fn platform(os: &str, arch: &str, variant: Option<&str>) -> Platform {
        Platform { architecture: arch.into(), os: os.into(), os_version: None, os_features: None, variant: variant.map(Into::into) }
    }

    #[test]
    fn platforms_match_like_containerd() {
        let arm64 = Wanted::parse("linux/arm64").expect("parses");
        assert!(arm64.matches(&platform("linux", "arm64", Some("v8"))));
        assert!(arm64.matches(&platform("linux", "arm64", None)));
        assert!(arm64.matches(&platform("linux", "aarch64", None)));
        assert!(!arm64.matches(&platform("linux", "arm", Some("v7"))), "no 32-bit fallback");
        assert!(!arm64.matches(&platform("linux", "arm64", Some("v9"))));
        assert_eq!(Wanted::parse("linux/arm64/v8").expect("parses"), arm64);
        let amd64 = Wanted::parse("linux/amd64").expect("parses");
        assert!(amd64.matches(&platform("linux", "amd64", None)));
        assert!(amd64.matches(&platform("linux", "x86_64", Some("v1"))));
        assert!(!amd64.matches(&platform("windows", "amd64", None)));
        assert!(!amd64.matches(&platform("unknown", "unknown", None)));
        assert!(Wanted::parse("linux/arm/v7").expect("parses").matches(&platform("linux", "arm", None)));
        for bad in ["", "linux", "linux/", "/amd64", "linux/amd64/v8/x", "linux/am d64"] {
            assert!(matches!(Wanted::parse(bad), Err(BundleError::Platform { .. })), "{bad:?}");
        }
    }

    #[test]
    fn a_tar_is_completed_only_by_finish() {
        let mut out = Vec::new();
        {
            // Given up after a header, as a damaged blob makes it: nothing ends the tar.
            let mut tar = TarOut { out: &mut out, bytes: 0 };
            tar.file("a.json", b"{}").expect("writes");
            tar.header("b/layer.tar", 3).expect("writes");
        }
        // Header, data and padding of a.json, then only b's header: no end blocks.
        assert_eq!(out.len(), 3 * 512);
        let mut archive = tar::Archive::new(&out[..]);
        let read: Result<Vec<_>, _> =
            archive.entries().expect("entries").map(|e| e.and_then(|mut e| std::io::copy(&mut e, &mut std::io::sink()))).collect();
        assert!(read.is_err(), "a cut archive does not read");

        let mut out = Vec::new();
        let mut tar = TarOut { out: &mut out, bytes: 0 };
        tar.file("manifest.json", b"[]").expect("writes");
        assert_eq!(tar.finish().expect("finishes"), 4 * 512);
        let mut archive = tar::Archive::new(&out[..]);
        let names: Vec<String> =
            archive.entries().expect("entries").map(|e| e.expect("entry").path().expect("path").display().to_string()).collect();
        assert_eq!(names, ["manifest.json"]);
    }

    #[test]
    fn errors_say_what_the_bundle_holds_and_how_to_fix_it() {
        let e = ArchiveError::NoPlatform {
            image: "docker.io/rancher/k3s:v1".into(),
            bundle: "b.tar".into(),
            platform: "linux/arm64".into(),
            offered: vec!["linux/amd64".into()],
            left_out: true,
        };
        let text = e.to_string();
        assert!(text.contains("has no linux/arm64 manifest (it has linux/amd64; its index lists the platform"), "{text}");
        assert!(text.contains("`idp-lab bundle create --image docker.io/rancher/k3s:v1 --platform linux/arm64 --out FILE`"), "{text}");
        let e = ArchiveError::NoImage {
            image: "docker.io/library/x:1".into(),
            bundle: "b.tar".into(),
            platform: "linux/amd64".into(),
            held: (0..7).map(|i| format!("i{i}")).collect(),
        };
        assert!(e.to_string().contains("(it holds i0, i1, i2, i3, i4 and 2 more)"), "{e}");
    }
}
