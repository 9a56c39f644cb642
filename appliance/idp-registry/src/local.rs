//! The local namespace: a writable OCI image layout of the developer's own images.
//!
//! ```text
//! <dir>/oci-layout
//! <dir>/index.json         one descriptor per tag, ref name `local/app:v1`
//! <dir>/blobs/sha256/<hex> every blob and manifest pushed
//! <dir>/uploads/<id>       uploads in progress (emptied at open)
//! ```
//!
//! So the directory is itself an OCI image layout. Its descriptors keep each manifest's
//! own media type: what Docker pushes is typed as a Docker manifest, which tools that
//! read only OCI-typed entries (skopeo 1.9's `oci:` transport) pass over.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{self, Read as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use hyper::body::Bytes;
use idp_core::oci::{self, Descriptor, Digest, ImageIndex, OciLayout, REF_NAME_ANNOTATION};
use sha2::Sha256;

use crate::layout::read_manifest;
use crate::{MAX_MANIFEST_SIZE, RegistryError};

/// An upload in progress.
#[derive(Debug)]
pub(crate) struct Upload {
    /// The repository it was started for.
    pub repo: String,
    /// The file the bytes go to.
    pub path: PathBuf,
    /// How many bytes it holds.
    pub size: u64,
    /// The hash of those bytes.
    pub hasher: Sha256,
}

#[derive(Debug, Default)]
struct State {
    /// Repository -> tag -> the manifest's descriptor.
    tags: BTreeMap<String, BTreeMap<String, Descriptor>>,
    /// Manifests known by digest: media type and bytes.
    manifests: HashMap<Digest, (String, Bytes)>,
}

/// The local namespace's store.
#[derive(Debug)]
pub(crate) struct Local {
    root: PathBuf,
    state: RwLock<State>,
    /// Serialises writers of `index.json`.
    index_write: tokio::sync::Mutex<()>,
    uploads: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Upload>>>>,
    counter: AtomicU64,
}

fn io_error<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> RegistryError + 'a {
    move |source| RegistryError::Io { action, path: path.to_owned(), source }
}

impl Local {
    /// Opens (creating when missing) the store at `root`.
    pub fn open(root: PathBuf) -> Result<Local, RegistryError> {
        let blobs = root.join("blobs/sha256");
        fs::create_dir_all(&blobs).map_err(io_error("create", &blobs))?;
        let uploads = root.join("uploads");
        if uploads.exists() {
            fs::remove_dir_all(&uploads).map_err(io_error("remove", &uploads))?;
        }
        fs::create_dir_all(&uploads).map_err(io_error("create", &uploads))?;
        let layout_file = root.join("oci-layout");
        if !layout_file.exists() {
            let text =
                serde_json::to_vec(&OciLayout::default()).map_err(|source| RegistryError::Json { path: layout_file.clone(), source })?;
            fs::write(&layout_file, text).map_err(io_error("write", &layout_file))?;
        }
        let index_file = root.join("index.json");
        let index: ImageIndex = match fs::read(&index_file) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| RegistryError::Json { path: index_file.clone(), source })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => ImageIndex::empty(),
            Err(source) => return Err(RegistryError::Io { action: "read", path: index_file, source }),
        };
        let local = Local {
            root,
            state: RwLock::new(State::default()),
            index_write: tokio::sync::Mutex::new(()),
            uploads: Mutex::new(HashMap::new()),
            counter: AtomicU64::new(0),
        };
        let mut state = State::default();
        for desc in index.manifests {
            let Some((repo, tag)) = desc.ref_name().and_then(split_ref_name) else {
                tracing::warn!(dir = %local.root.display(), digest = %desc.digest, "registry: local index.json entry without a local/<name>:<tag> ref name; ignored");
                continue;
            };
            match local.walk(&desc, &mut state.manifests) {
                Ok(()) => {
                    state.tags.entry(repo).or_default().insert(tag, desc);
                }
                Err(e) => {
                    tracing::warn!(dir = %local.root.display(), %repo, %tag, error = %e, "registry: local image is incomplete; its tag is not served");
                }
            }
        }
        *local.state.write().unwrap_or_else(PoisonError::into_inner) = state;
        Ok(local)
    }

    fn walk(&self, root: &Descriptor, manifests: &mut HashMap<Digest, (String, Bytes)>) -> Result<(), oci::WalkError<io::Error>> {
        let mut found: Vec<(Digest, Vec<u8>)> = Vec::new();
        let blobs = oci::walk(
            root,
            |d| {
                let bytes = read_manifest(&self.blob_path(d))?;
                if let Some(bytes) = &bytes {
                    found.push((d.clone(), bytes.clone()));
                }
                Ok(bytes)
            },
            |d| match fs::metadata(self.blob_path(d)) {
                Ok(meta) => Ok(Some(meta.len())),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            },
        )?;
        let types: HashMap<&Digest, &str> = blobs.iter().map(|b| (&b.digest, b.media_type.as_str())).collect();
        for (digest, bytes) in found {
            if let Some(media_type) = types.get(&digest) {
                manifests.insert(digest.clone(), ((*media_type).to_owned(), Bytes::from(bytes)));
            }
        }
        Ok(())
    }

    /// Where a blob is (or would be).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    /// The size of a blob, `None` when it is not here.
    pub async fn blob_size(&self, digest: &Digest) -> io::Result<Option<u64>> {
        match tokio::fs::metadata(self.blob_path(digest)).await {
            Ok(meta) if meta.is_file() => Ok(Some(meta.len())),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The repositories with at least one tag.
    pub fn repositories(&self) -> Vec<String> {
        self.state.read().unwrap_or_else(PoisonError::into_inner).tags.keys().cloned().collect()
    }

    /// The tags of `repo`, sorted; `None` when it has none.
    pub fn tags(&self, repo: &str) -> Option<Vec<String>> {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        state.tags.get(repo).map(|tags| tags.keys().cloned().collect())
    }

    /// The descriptor `repo:tag` points at: `Err(true)` when the repository exists but
    /// not the tag, `Err(false)` when the repository does not exist.
    pub fn tag(&self, repo: &str, tag: &str) -> Result<Descriptor, bool> {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        let tags = state.tags.get(repo).ok_or(false)?;
        tags.get(tag).cloned().ok_or(true)
    }

    /// A manifest by digest: its media type and bytes. A blob that is no manifest (too
    /// big, not JSON, no manifest media type) is `None`.
    pub async fn manifest(&self, digest: &Digest) -> io::Result<Option<(String, Bytes)>> {
        if let Some(found) = self.state.read().unwrap_or_else(PoisonError::into_inner).manifests.get(digest) {
            return Ok(Some(found.clone()));
        }
        let path = self.blob_path(digest);
        let read = tokio::task::spawn_blocking(move || match fs::metadata(&path) {
            // A blob over the manifest limit is no manifest: not read.
            Ok(meta) if meta.len() > MAX_MANIFEST_SIZE => Ok(None),
            Ok(_) => read_manifest(&path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        });
        let Some(bytes) = read.await.map_err(io::Error::other)?? else {
            return Ok(None);
        };
        let Some(media_type) = sniff_media_type(&bytes) else { return Ok(None) };
        let bytes = Bytes::from(bytes);
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        state.manifests.insert(digest.clone(), (media_type.clone(), bytes.clone()));
        Ok(Some((media_type, bytes)))
    }

    /// Starts an upload for `repo`: an empty file under `uploads/`, and its id.
    pub async fn start_upload(&self, repo: &str) -> io::Result<String> {
        let id = self.new_id();
        let path = self.root.join("uploads").join(&id);
        tokio::fs::File::create(&path).await?;
        let upload = Upload { repo: repo.to_owned(), path, size: 0, hasher: <Sha256 as sha2::Digest>::new() };
        self.uploads.lock().unwrap_or_else(PoisonError::into_inner).insert(id.clone(), Arc::new(tokio::sync::Mutex::new(upload)));
        Ok(id)
    }

    /// The upload `id`, when it exists.
    pub fn upload(&self, id: &str) -> Option<Arc<tokio::sync::Mutex<Upload>>> {
        self.uploads.lock().unwrap_or_else(PoisonError::into_inner).get(id).cloned()
    }

    /// Forgets the upload `id` and removes its file.
    pub async fn end_upload(&self, id: &str) {
        let removed = self.uploads.lock().unwrap_or_else(PoisonError::into_inner).remove(id);
        if let Some(upload) = removed {
            let path = upload.lock().await.path.clone();
            let _ = tokio::fs::remove_file(path).await;
        }
    }

    /// A fresh path under `uploads/` for a one-shot write.
    pub fn temp_path(&self) -> PathBuf {
        self.root.join("uploads").join(format!("tmp-{}", self.new_id()))
    }

    /// Moves a finished, verified file into `blobs/` as `digest` (or drops it when the
    /// blob is already there).
    pub async fn commit_blob(&self, temp: &Path, digest: &Digest) -> io::Result<()> {
        let target = self.blob_path(digest);
        if tokio::fs::metadata(&target).await.is_ok() {
            let _ = tokio::fs::remove_file(temp).await;
            return Ok(());
        }
        tokio::fs::rename(temp, &target).await
    }

    /// Stores a manifest (already validated) and, with a tag, points `repo:tag` at it
    /// in `index.json`.
    pub async fn put_manifest(&self, repo: &str, tag: Option<&str>, desc: Descriptor, bytes: Bytes) -> io::Result<()> {
        let target = self.blob_path(&desc.digest);
        if tokio::fs::metadata(&target).await.is_err() {
            let temp = self.temp_path();
            tokio::fs::write(&temp, &bytes).await?;
            self.commit_blob(&temp, &desc.digest).await?;
        }
        let Some(tag) = tag else {
            let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
            state.manifests.insert(desc.digest.clone(), (desc.media_type.clone(), bytes));
            return Ok(());
        };
        let _writer = self.index_write.lock().await;
        let mut tags = self.state.read().unwrap_or_else(PoisonError::into_inner).tags.clone();
        tags.entry(repo.to_owned()).or_default().insert(tag.to_owned(), desc.clone());
        let mut index = ImageIndex::empty();
        for (repo, repo_tags) in &tags {
            for (tag, desc) in repo_tags {
                let mut entry = Descriptor::new(&desc.media_type, desc.digest.clone(), desc.size);
                entry.artifact_type.clone_from(&desc.artifact_type);
                entry.annotations = Some(BTreeMap::from([(REF_NAME_ANNOTATION.to_owned(), format!("{repo}:{tag}"))]));
                index.manifests.push(entry);
            }
        }
        let text = serde_json::to_vec_pretty(&index).map_err(io::Error::other)?;
        let temp = self.temp_path();
        tokio::fs::write(&temp, text).await?;
        tokio::fs::rename(&temp, self.root.join("index.json")).await?;
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        state.tags = tags;
        state.manifests.insert(desc.digest.clone(), (desc.media_type, bytes));
        Ok(())
    }

    /// A new id: 32 hex digits, random where `/dev/urandom` exists.
    fn new_id(&self) -> String {
        let mut random = [0u8; 16];
        let from_os = fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut random));
        if from_os.is_err() {
            let count = self.counter.fetch_add(1, Ordering::Relaxed);
            let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
            let seed = format!("{}-{count}-{nanos}", std::process::id());
            random.copy_from_slice(&Digest::of(seed.as_bytes()).hex().as_bytes()[..16]);
        }
        random.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// `local/app:v1` -> (`local/app`, `v1`), each valid.
fn split_ref_name(ref_name: &str) -> Option<(String, String)> {
    let slash = ref_name.rfind('/')?;
    let colon = slash + ref_name[slash..].rfind(':')?;
    let (repo, tag) = (&ref_name[..colon], &ref_name[colon + 1..]);
    let first = repo.split('/').next()?;
    (first == crate::LOCAL_PREFIX && oci::validate_repository(repo).is_ok() && oci::validate_tag(tag).is_ok())
        .then(|| (repo.to_owned(), tag.to_owned()))
}

/// The media type of a manifest's bytes: its `mediaType` when it names a manifest or
/// index, else the OCI type its shape says (`manifests` -> index, `config` ->
/// manifest); `None` when the bytes are no manifest.
pub(crate) fn sniff_media_type(bytes: &[u8]) -> Option<String> {
    if u64::try_from(bytes.len()).ok()? > MAX_MANIFEST_SIZE {
        return None;
    }
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let object = value.as_object()?;
    if object.get("schemaVersion").and_then(serde_json::Value::as_u64) != Some(2) {
        return None;
    }
    match object.get("mediaType").and_then(serde_json::Value::as_str) {
        Some(t) if oci::is_index(t) || oci::is_manifest(t) => Some(t.to_owned()),
        Some(_) => None,
        None if object.contains_key("manifests") => Some(oci::OCI_INDEX.to_owned()),
        None if object.contains_key("config") => Some(oci::OCI_MANIFEST.to_owned()),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ref_names_of_the_local_index() {
        assert_eq!(split_ref_name("local/app:v1"), Some(("local/app".into(), "v1".into())));
        assert_eq!(split_ref_name("local/team/api:1.0"), Some(("local/team/api".into(), "1.0".into())));
        assert_eq!(split_ref_name("other/app:v1"), None);
        assert_eq!(split_ref_name("local/app"), None);
        assert_eq!(split_ref_name("local/../x:v1"), None);
        assert_eq!(split_ref_name("v1"), None);
    }

    #[test]
    fn media_types_are_sniffed_from_the_bytes() {
        assert_eq!(
            sniff_media_type(br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{}}"#)
                .as_deref(),
            Some(oci::DOCKER_MANIFEST)
        );
        assert_eq!(sniff_media_type(br#"{"schemaVersion":2,"manifests":[]}"#).as_deref(), Some(oci::OCI_INDEX));
        assert_eq!(sniff_media_type(br#"{"schemaVersion":2,"config":{},"layers":[]}"#).as_deref(), Some(oci::OCI_MANIFEST));
        assert_eq!(sniff_media_type(br#"{"schemaVersion":1,"config":{}}"#), None);
        assert_eq!(sniff_media_type(br#"{"schemaVersion":2,"mediaType":"text/plain"}"#), None);
        assert_eq!(sniff_media_type(b"\x1f\x8b binary layer"), None);
    }
}
