//! The mirror: an OCI image layout (a directory, or a tar of one served in place), read
//! once at open, served read-only.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{self, Read as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hyper::body::Bytes;
use idp_core::oci::{self, Blob, DOCKER_HUB, Descriptor, Digest, ImageIndex, ImageName, OciLayout};

use crate::archive::{self, BlobSource, Span};
use crate::{MAX_MANIFEST_SIZE, RegistryError};

/// A repository of the mirror: its tags and everything its images reach.
#[derive(Debug, Default)]
pub(crate) struct Repo {
    /// Tag -> the root descriptor `index.json` gives.
    pub tags: BTreeMap<String, Descriptor>,
    /// Every blob the repository's images reach, manifests included.
    pub blobs: HashMap<Digest, Blob>,
}

/// Where the layout's blobs are.
#[derive(Debug)]
enum Store {
    /// A directory: `blobs/sha256/<hex>` files.
    Dir,
    /// A tar: spans of the one open file.
    Tar { file: Arc<File>, blobs: HashMap<Digest, Span> },
}

/// The read-only layout.
#[derive(Debug)]
pub(crate) struct Mirror {
    /// The directory or the tar.
    root: PathBuf,
    store: Store,
    /// `(registry, repository)` -> the repository.
    repos: HashMap<(String, String), Repo>,
    /// The bytes of every manifest and index, shared by the repositories.
    manifests: HashMap<Digest, Bytes>,
}

impl Mirror {
    /// Reads `oci-layout` and `index.json` and walks every named image, of the layout
    /// directory at `root`, or of the tar of one that `root` is.
    pub fn open(root: PathBuf) -> Result<Mirror, RegistryError> {
        let meta = fs::metadata(&root).map_err(|source| RegistryError::Io { action: "stat", path: root.clone(), source })?;
        let (layout, index, store) = if meta.is_dir() {
            let layout: OciLayout = read_json(&root.join("oci-layout"))?;
            let index: ImageIndex = read_json(&root.join("index.json"))?;
            (layout, index, Store::Dir)
        } else if meta.is_file() {
            let tar = archive::scan(&root)?;
            let layout: OciLayout = parse_entry(&root, "oci-layout", tar.oci_layout)?;
            let index: ImageIndex = parse_entry(&root, "index.json", tar.index)?;
            (layout, index, Store::Tar { file: tar.file, blobs: tar.blobs })
        } else {
            return Err(RegistryError::NotALayout { path: root, reason: "neither a directory nor a tar file".into() });
        };
        if !layout.image_layout_version.starts_with("1.") {
            let reason = format!("imageLayoutVersion {:?} is not 1.x", layout.image_layout_version);
            return Err(RegistryError::NotALayout { path: root, reason });
        }
        let mut mirror = Mirror { root, store, repos: HashMap::new(), manifests: HashMap::new() };
        let mut sizes: HashMap<Digest, Option<u64>> = HashMap::new();
        for desc in &index.manifests {
            let Some(ref_name) = desc.ref_name() else {
                tracing::warn!(layout = %mirror.root.display(), digest = %desc.digest, "registry: an index.json entry has no ref name; not served");
                continue;
            };
            let name = match ImageName::parse(ref_name) {
                Ok(name) if name.tag.is_some() || name.digest.is_some() => name,
                Ok(_) => {
                    tracing::warn!(layout = %mirror.root.display(), ref_name, "registry: a ref name without a tag or digest names no repository; not served");
                    continue;
                }
                Err(e) => {
                    tracing::warn!(layout = %mirror.root.display(), ref_name, error = %e, "registry: not an image reference; not served");
                    continue;
                }
            };
            if let Some(pinned) = &name.digest
                && *pinned != desc.digest
            {
                let reason = format!("{ref_name} is pinned to {pinned} but its descriptor is {}", desc.digest);
                return Err(RegistryError::NotALayout { path: mirror.root.clone(), reason });
            }
            let blobs = mirror.walk(desc, &mut sizes).map_err(|source| RegistryError::Incomplete {
                name: ref_name.to_owned(),
                layout: mirror.root.clone(),
                source,
            })?;
            let repo = mirror.repos.entry((name.registry.clone(), name.repository.clone())).or_default();
            if let Some(tag) = &name.tag
                && let Some(earlier) = repo.tags.insert(tag.clone(), desc.clone())
                && earlier.digest != desc.digest
            {
                tracing::warn!(layout = %mirror.root.display(), image = %name, "registry: index.json names this image twice; the later entry wins");
            }
            repo.blobs.extend(blobs.into_iter().map(|b| (b.digest.clone(), b)));
        }
        Ok(mirror)
    }

    fn walk(&mut self, root: &Descriptor, sizes: &mut HashMap<Digest, Option<u64>>) -> Result<Vec<Blob>, oci::WalkError<io::Error>> {
        let blobs_dir = self.root.join("blobs/sha256");
        let (manifests, store, tar) = (&mut self.manifests, &self.store, &self.root);
        oci::walk(
            root,
            |digest| {
                if let Some(bytes) = manifests.get(digest) {
                    return Ok(Some(bytes.to_vec()));
                }
                let bytes = match store {
                    Store::Dir => read_manifest(&blobs_dir.join(digest.hex()))?,
                    Store::Tar { file, blobs } => match blobs.get(digest) {
                        Some(span) => Some(read_span(file, *span, tar, digest)?),
                        None => None,
                    },
                };
                let Some(bytes) = bytes else { return Ok(None) };
                manifests.insert(digest.clone(), Bytes::from(bytes.clone()));
                Ok(Some(bytes))
            },
            |digest| {
                if let Some(size) = sizes.get(digest) {
                    return Ok(*size);
                }
                let size = match store {
                    Store::Tar { blobs, .. } => blobs.get(digest).map(|span| span.size),
                    Store::Dir => match fs::metadata(blobs_dir.join(digest.hex())) {
                        Ok(meta) if meta.is_file() => Some(meta.len()),
                        Ok(_) => None,
                        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                        Err(e) => return Err(e),
                    },
                };
                sizes.insert(digest.clone(), size);
                Ok(size)
            },
        )
    }

    /// The repository `(registry, repository)`.
    pub fn repo(&self, registry: &str, repository: &str) -> Option<&Repo> {
        self.repos.get(&(registry.to_owned(), repository.to_owned()))
    }

    /// The bytes of a manifest or index of the layout.
    pub fn manifest(&self, digest: &Digest) -> Option<&Bytes> {
        self.manifests.get(digest)
    }

    /// Where a blob of the layout is; `None` for a tar without it (a directory's blob is
    /// looked for when it is served).
    pub fn blob(&self, digest: &Digest) -> Option<BlobSource> {
        match &self.store {
            Store::Dir => Some(BlobSource::File(self.root.join("blobs/sha256").join(digest.hex()))),
            Store::Tar { file, blobs } => {
                blobs.get(digest).map(|span| BlobSource::InTar { file: file.clone(), path: self.root.clone(), offset: span.offset })
            }
        }
    }

    /// The registries with at least one repository, sorted.
    pub fn registries(&self) -> Vec<String> {
        let mut out: Vec<String> = self.repos.keys().map(|(registry, _)| registry.clone()).collect();
        out.sort();
        out.dedup();
        out
    }

    /// The names `_catalog` lists: Docker Hub's repositories by their path, the others
    /// as `<registry>/<path>`; registries with a port are left out (no path reaches
    /// them without `ns`).
    pub fn catalog(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .repos
            .keys()
            .filter_map(|(registry, repository)| match registry.as_str() {
                DOCKER_HUB => Some(repository.clone()),
                r if r.contains(':') => None,
                r => Some(format!("{r}/{repository}")),
            })
            .collect();
        out.sort();
        out
    }
}

/// The bytes of a manifest inside a tar; one over [`MAX_MANIFEST_SIZE`] is an error, and
/// is not read.
fn read_span(file: &File, span: Span, tar: &Path, digest: &Digest) -> io::Result<Vec<u8>> {
    if span.size > MAX_MANIFEST_SIZE {
        return Err(io::Error::other(format!(
            "blobs/sha256/{} in {} has {} bytes, more than a manifest may",
            digest.hex(),
            tar.display(),
            span.size
        )));
    }
    let mut bytes = vec![0u8; usize::try_from(span.size).map_err(io::Error::other)?];
    let got = archive::read_full_at(file, &mut bytes, span.offset)?;
    if got < bytes.len() {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("{} ended inside blobs/sha256/{}", tar.display(), digest.hex())));
    }
    Ok(bytes)
}

/// Parses a JSON entry of the tar at `tar`.
fn parse_entry<T: serde::de::DeserializeOwned>(tar: &Path, name: &str, bytes: Option<Vec<u8>>) -> Result<T, RegistryError> {
    let Some(bytes) = bytes else {
        return Err(RegistryError::NotALayout { path: tar.to_owned(), reason: format!("the tar has no {name} entry") });
    };
    serde_json::from_slice(&bytes).map_err(|source| RegistryError::Json { path: tar.join(name), source })
}

/// Reads and parses a JSON file.
fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, RegistryError> {
    let bytes = fs::read(path).map_err(|source| RegistryError::Io { action: "read", path: path.to_owned(), source })?;
    serde_json::from_slice(&bytes).map_err(|source| RegistryError::Json { path: path.to_owned(), source })
}

/// The bytes of a manifest file, `None` when there is none; a file over
/// [`MAX_MANIFEST_SIZE`] is an error, and is not read.
pub(crate) fn read_manifest(path: &Path) -> io::Result<Option<Vec<u8>>> {
    let file = match fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    if len > MAX_MANIFEST_SIZE {
        return Err(io::Error::other(format!("{} has {len} bytes, more than a manifest may", path.display())));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(MAX_MANIFEST_SIZE + 1).read_to_end(&mut bytes)?;
    Ok(Some(bytes))
}
