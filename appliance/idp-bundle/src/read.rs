//! Reading an upstream file back out of a bundle: [`read_file`] finds the file artifact
//! `bundle create` stored for a URL (named [`file_ref_name`], docs/bundle.md), reads its
//! one layer and checks it against the layer's digest and the sha256 the caller expects.
//!
//! The bundle is an OCI image layout: a directory (`oci-layout`, `index.json`,
//! `blobs/sha256/<hex>`) or a tar of one, as `bundle create` writes it. A tar is read in
//! one pass over its headers ([`scan`], which seeks over large blobs), then the file's
//! blob is read at its offset: a bundle of many GB costs a pass over its headers, not over
//! its bytes.

use crate::bundle::{BundleError, FILE_ARTIFACT_TYPE, KIND_ANNOTATION, Kind};
use crate::client::MANIFEST_LIMIT;
use crate::create::file_ref_name;
use crate::layout::{INDEX_JSON_LIMIT, Scanned, scan};
use idp_core::oci::{Descriptor, Digest, ImageIndex, ImageManifest, OciLayout};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// The bytes of the upstream file `url` as the bundle at `bundle` holds it.
///
/// `bundle` is a tarred OCI image layout or the layout as a directory. The file is the
/// artifact `bundle create` stored for `url` and `sha256`: named
/// [`file_ref_name`]`(url, sha256)`, else (a bundle made from another lock, or with the
/// entry unverified) the file artifact of the same URL under another tag. `sha256` is
/// the expected hash, lowercase hex with or without `sha256:`; `None` (an unverified
/// entry) takes whatever the bundle holds for the URL.
///
/// The bytes are always checked against the blob's digest and size, and against `sha256`
/// when given.
///
/// # Errors
///
/// - [`BundleError::NoFile`]: the bundle holds no file for `url`;
/// - [`BundleError::FileMismatch`]: its bytes hash to something else than `sha256`;
/// - [`BundleError::Damaged`]: a blob is missing, or does not have its digest or size;
/// - [`BundleError::NotABundle`] and [`BundleError::Manifest`]: not an OCI layout, or a
///   file artifact whose manifest does not parse;
/// - [`BundleError::Invalid`]: `sha256` is not a sha256, or `url` cannot name a file;
/// - [`BundleError::Io`]: the bundle cannot be read.
///
/// ```no_run
/// let url = "https://raw.githubusercontent.com/kubernetes-sigs/gateway-api/v1.2.1/config/crd/standard/gateway.networking.k8s.io_gateways.yaml";
/// let sha256 = "9aea7ae080dfe9c25a814d3d14eed28f335d28de3cbdc00a0351e0e99cb3bf06";
/// let bytes = idp_bundle::read_file("airgap.tar".as_ref(), url, Some(sha256))?;
/// # Ok::<(), idp_bundle::BundleError>(())
/// ```
pub fn read_file(bundle: &Path, url: &str, sha256: Option<&str>) -> Result<Vec<u8>, BundleError> {
    let expected = sha256.map(|s| expected_digest(url, s)).transpose()?;
    let wanted = file_ref_name(url, expected.as_ref().map(ToString::to_string).as_deref())?;
    let mut layout = Layout::open(bundle)?;
    let desc = find(&layout.index, &wanted).ok_or_else(|| BundleError::NoFile {
        url: url.to_owned(),
        bundle: bundle.to_owned(),
        held: layout.index.manifests.iter().filter(|d| is_file(d)).count(),
    })?;
    let damaged = |reason: String| BundleError::Damaged { bundle: bundle.to_owned(), reason };

    let manifest_bytes = layout.blob(&desc.digest, desc.size.min(MANIFEST_LIMIT))?;
    let manifest_bytes = checked(manifest_bytes, &desc, &format!("the manifest of {url}")).map_err(damaged)?;
    let manifest: ImageManifest = serde_json::from_slice(&manifest_bytes).map_err(|source| BundleError::Manifest {
        artifact: desc.ref_name().unwrap_or(&wanted).to_owned(),
        digest: desc.digest.to_string(),
        media_type: desc.media_type.clone(),
        source,
    })?;
    let [layer] = manifest.layers.as_slice() else {
        return Err(damaged(format!(
            "the file artifact {} of {url} has {} layers, a file artifact has one",
            desc.digest,
            manifest.layers.len()
        )));
    };
    let bytes = layout.blob(&layer.digest, layer.size)?;
    let bytes = checked(bytes, layer, &format!("the content of {url}")).map_err(damaged)?;
    if let Some(expected) = expected
        && layer.digest != expected
    {
        return Err(BundleError::FileMismatch {
            url: url.to_owned(),
            bundle: bundle.to_owned(),
            expected: expected.to_string(),
            actual: layer.digest.to_string(),
        });
    }
    Ok(bytes)
}

/// `sha256:<hex>` from `<hex>` or `sha256:<hex>`.
fn expected_digest(url: &str, sha256: &str) -> Result<Digest, BundleError> {
    let hex = sha256.strip_prefix("sha256:").unwrap_or(sha256);
    Digest::parse(&format!("sha256:{hex}")).map_err(|source| BundleError::Invalid { artifact: url.to_owned(), what: "sha256", source })
}

/// Whether an `index.json` entry is an upstream file.
fn is_file(desc: &Descriptor) -> bool {
    match desc.annotation(KIND_ANNOTATION) {
        Some(kind) => Kind::parse(kind) == Some(Kind::File),
        None => desc.artifact_type.as_deref() == Some(FILE_ARTIFACT_TYPE),
    }
}

/// A reference name without its tag (`host/path`), when it has one.
fn untagged(name: &str) -> &str {
    match name.rsplit_once(':') {
        Some((repository, tag)) if !tag.contains('/') => repository,
        _ => name,
    }
}

/// The file artifact named `wanted`, else one of the same URL under another tag.
fn find(index: &ImageIndex, wanted: &str) -> Option<Descriptor> {
    let files = || index.manifests.iter().filter(|d| is_file(d));
    files()
        .find(|d| d.ref_name() == Some(wanted))
        .or_else(|| files().find(|d| d.ref_name().is_some_and(|n| untagged(n) == untagged(wanted))))
        .cloned()
}

/// `bytes` if they have `desc`'s size and digest; else why not.
fn checked(bytes: Option<Vec<u8>>, desc: &Descriptor, what: &str) -> Result<Vec<u8>, String> {
    let Some(bytes) = bytes else {
        return Err(format!("{what} (blob {}) is missing", desc.digest));
    };
    let size = bytes.len() as u64;
    if size != desc.size {
        return Err(format!("{what} (blob {}) has {size} bytes, its descriptor says {}", desc.digest, desc.size));
    }
    let actual = Digest::of(&bytes);
    if actual != desc.digest {
        return Err(format!("{what} (blob {}) hashes to {actual}", desc.digest));
    }
    Ok(bytes)
}

/// A bundle opened for reading blobs: its `index.json` and where its blobs are.
struct Layout {
    index: ImageIndex,
    store: Store,
}

/// Where a layout's blobs are.
enum Store {
    /// `blobs/sha256/` of the layout as a directory.
    Dir(PathBuf),
    /// A tar of the layout, at the offsets one pass over its headers found.
    Tar { path: PathBuf, file: File, blobs: BTreeMap<Digest, Scanned> },
}

impl Layout {
    fn open(path: &Path) -> Result<Layout, BundleError> {
        let meta = std::fs::metadata(path).map_err(BundleError::io("open", path))?;
        let not_a_bundle = |reason: String| BundleError::NotABundle { path: path.to_owned(), reason };
        if !meta.is_dir() {
            let scanned = scan(path, false)?;
            let index = scanned.index.ok_or_else(|| not_a_bundle("no index.json".into()))?;
            let file = File::open(path).map_err(BundleError::io("open", path))?;
            return Ok(Layout { index, store: Store::Tar { path: path.to_owned(), file, blobs: scanned.blobs } });
        }
        let layout = read_limited(&path.join("oci-layout"), 4096)?.ok_or_else(|| not_a_bundle("no oci-layout".into()))?;
        let layout_ok =
            serde_json::from_slice::<OciLayout>(&layout).is_ok_and(|l| l.image_layout_version == idp_core::oci::IMAGE_LAYOUT_VERSION);
        if !layout_ok {
            return Err(not_a_bundle("no oci-layout of version 1.0.0".into()));
        }
        let index = read_limited(&path.join("index.json"), INDEX_JSON_LIMIT)?.ok_or_else(|| not_a_bundle("no index.json".into()))?;
        let index = serde_json::from_slice(&index).map_err(|e| not_a_bundle(format!("index.json does not parse: {e}")))?;
        Ok(Layout { index, store: Store::Dir(path.join("blobs/sha256")) })
    }

    /// The bytes of a blob, at most `size` + 1 of them (so a larger blob shows as the
    /// wrong size without being read whole); `None` when the bundle lacks it.
    fn blob(&mut self, digest: &Digest, size: u64) -> Result<Option<Vec<u8>>, BundleError> {
        let limit = size.saturating_add(1);
        match &mut self.store {
            Store::Dir(blobs) => read_prefix(&blobs.join(digest.hex()), limit),
            Store::Tar { path, file, blobs } => {
                let Some(entry) = blobs.get(digest) else { return Ok(None) };
                file.seek(SeekFrom::Start(entry.offset)).map_err(BundleError::io("read", path))?;
                let mut bytes = Vec::new();
                (&mut *file).take(entry.size.min(limit)).read_to_end(&mut bytes).map_err(BundleError::io("read", path))?;
                Ok(Some(bytes))
            }
        }
    }
}

/// A file of at most `limit` bytes; `None` when it does not exist; more is an error.
fn read_limited(path: &Path, limit: u64) -> Result<Option<Vec<u8>>, BundleError> {
    let bytes = read_prefix(path, limit.saturating_add(1))?;
    match bytes {
        Some(b) if b.len() as u64 > limit => Err(BundleError::NotABundle {
            path: path.parent().unwrap_or(path).to_owned(),
            reason: format!("{} has more than {limit} bytes", path.file_name().unwrap_or_default().to_string_lossy()),
        }),
        other => Ok(other),
    }
}

/// The first `limit` bytes of a file; `None` when it does not exist.
fn read_prefix(path: &Path, limit: u64) -> Result<Option<Vec<u8>>, BundleError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(BundleError::Io { action: "open", path: path.to_owned(), source }),
    };
    let mut bytes = Vec::new();
    file.take(limit).read_to_end(&mut bytes).map_err(BundleError::io("read", path))?;
    Ok(Some(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_desc(name: &str) -> Descriptor {
        let mut d = Descriptor::new(idp_core::oci::OCI_MANIFEST, Digest::of(name.as_bytes()), 1);
        d.annotations = Some(BTreeMap::from([
            (idp_core::oci::REF_NAME_ANNOTATION.to_owned(), name.to_owned()),
            (KIND_ANNOTATION.to_owned(), "file".to_owned()),
        ]));
        d
    }

    #[test]
    fn a_file_is_found_by_its_name_then_by_its_url() {
        let a = format!("x.example/a.yaml:sha256-{}", "a".repeat(64));
        let b = format!("x.example/a.yaml:sha256-{}", "b".repeat(64));
        let other = "127.0.0.1:8080/a.yaml:latest";
        let mut image = file_desc("x.example/a.yaml:latest");
        image.annotations.as_mut().map(|a| a.insert(KIND_ANNOTATION.into(), "image".into()));
        let index = ImageIndex { manifests: vec![image, file_desc(&a), file_desc(&b), file_desc(other)], ..ImageIndex::empty() };
        assert_eq!(find(&index, &b).and_then(|d| d.ref_name().map(str::to_owned)).as_deref(), Some(b.as_str()));
        // Unpinned: the file of the same URL (an image of that name is no file).
        assert_eq!(find(&index, "x.example/a.yaml:latest").and_then(|d| d.ref_name().map(str::to_owned)), Some(a.clone()));
        // A port is part of the name, not a tag.
        assert_eq!(untagged(other), "127.0.0.1:8080/a.yaml");
        assert_eq!(untagged("127.0.0.1:8080/a.yaml"), "127.0.0.1:8080/a.yaml");
        assert!(find(&index, "127.0.0.1:8081/a.yaml:latest").is_none());
        assert!(find(&index, "x.example/b.yaml:latest").is_none());
    }

    #[test]
    fn expected_hashes_take_either_form_and_nothing_else() {
        let hex = "9aea7ae080dfe9c25a814d3d14eed28f335d28de3cbdc00a0351e0e99cb3bf06";
        let d = expected_digest("u", hex).expect("bare hex");
        assert_eq!(d, expected_digest("u", &format!("sha256:{hex}")).expect("prefixed"));
        assert_eq!(d.to_string(), format!("sha256:{hex}"));
        assert!(matches!(expected_digest("u", "unverified"), Err(BundleError::Invalid { what: "sha256", .. })));
        assert!(expected_digest("u", &hex.to_uppercase()).is_err());
    }
}
