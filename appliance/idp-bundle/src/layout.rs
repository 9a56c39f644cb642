//! The bundle's OCI image layout on disk and in its tar: [`WorkDir`] is the layout
//! `bundle create` fills (`FILE.partial/`, kept between runs so an interrupted run
//! resumes), [`write_tar`] tars it in a stable order, [`scan`] reads a tar back in one
//! streaming pass, and [`artifact_blobs`] lists what one `index.json` entry reaches (a
//! partial index, [`PLATFORMS_ANNOTATION`], reaches only its bundled platforms).
//!
//! Blobs are streamed: a blob is never held in memory whole, except manifests, indexes
//! and configurations (JSON of at most [`crate::client::MANIFEST_LIMIT`] bytes).

use crate::bundle::{BundleError, ORIGINAL_ANNOTATION, PLATFORMS_ANNOTATION, platform_key};
use crate::client::MANIFEST_LIMIT;
use idp_core::oci::{Blob, Descriptor, Digest, ImageIndex, OciLayout, WalkError, is_index, is_manifest, walk};
use sha2::{Digest as _, Sha256};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// The most bytes an `index.json` may have.
pub const INDEX_JSON_LIMIT: u64 = 64 * 1024 * 1024;
/// Blobs up to this size are kept by [`scan`] whatever they hold; larger ones only when
/// they look like JSON (up to [`MANIFEST_LIMIT`]).
const SMALL: u64 = 64 * 1024;
/// Read and hash buffers.
const CHUNK: usize = 256 * 1024;

/// An OCI image layout being filled: `oci-layout`, `blobs/sha256/<hex>` (each written
/// under `tmp/` first and renamed only once its digest is verified), and `index.json`
/// once every artifact is in.
#[derive(Debug, Clone)]
pub struct WorkDir {
    root: PathBuf,
}

impl WorkDir {
    /// Opens (or creates) the layout at `root`; leftovers of an interrupted download in
    /// `tmp/` are removed, finished blobs are kept.
    pub fn open(root: &Path) -> Result<WorkDir, BundleError> {
        let dir = WorkDir { root: root.to_owned() };
        let tmp = dir.root.join("tmp");
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(BundleError::io("remove", &tmp))?;
        }
        for d in [dir.root.join("blobs/sha256"), tmp] {
            std::fs::create_dir_all(&d).map_err(BundleError::io("create", &d))?;
        }
        let layout = serde_json::to_vec(&OciLayout::default()).unwrap_or_default();
        let path = dir.root.join("oci-layout");
        std::fs::write(&path, layout).map_err(BundleError::io("write", &path))?;
        Ok(dir)
    }

    /// The layout's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where a finished blob lives.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    /// Where a blob is downloaded to before it is verified.
    pub fn tmp_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("tmp").join(format!("{}.part", digest.hex()))
    }

    /// Whether the blob is present with the right digest (and `size`, when given): it is
    /// re-hashed. A present blob with other bytes is removed, so it is fetched again.
    pub fn has_blob(&self, digest: &Digest, size: Option<u64>) -> Result<bool, BundleError> {
        let path = self.blob_path(digest);
        let (actual, actual_size) = match hash_file(&path) {
            Ok(found) => found,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(source) => return Err(BundleError::Io { action: "read", path, source }),
        };
        if actual == *digest && size.is_none_or(|s| s == actual_size) {
            return Ok(true);
        }
        std::fs::remove_file(&path).map_err(BundleError::io("remove", &path))?;
        Ok(false)
    }

    /// Moves a verified download from `tmp/` into `blobs/sha256/`.
    pub fn commit(&self, digest: &Digest) -> Result<(), BundleError> {
        let from = self.tmp_path(digest);
        std::fs::rename(&from, self.blob_path(digest)).map_err(BundleError::io("rename", &from))
    }

    /// Stores small bytes (a manifest, a configuration) as a blob; returns its digest.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<Digest, BundleError> {
        let digest = Digest::of(bytes);
        let tmp = self.tmp_path(&digest);
        std::fs::write(&tmp, bytes).map_err(BundleError::io("write", &tmp))?;
        self.commit(&digest)?;
        Ok(digest)
    }

    /// The bytes of a small blob, if present (manifests are read back on a resumed run).
    pub fn read_small(&self, digest: &Digest) -> Result<Option<Vec<u8>>, BundleError> {
        let path = self.blob_path(digest);
        match std::fs::metadata(&path) {
            Ok(m) if m.len() > MANIFEST_LIMIT => return Ok(None),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(BundleError::Io { action: "read", path, source }),
        }
        std::fs::read(&path).map(Some).map_err(BundleError::io("read", &path))
    }

    /// The size of a present blob.
    pub fn blob_size(&self, digest: &Digest) -> Result<Option<u64>, std::io::Error> {
        match std::fs::metadata(self.blob_path(digest)) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Lists what one `index.json` entry reaches in this layout (see [`artifact_blobs`]).
    pub fn reach(&self, desc: &Descriptor) -> Result<Vec<Blob>, WalkError<std::io::Error>> {
        let read = |d: &Digest| match std::fs::read(self.blob_path(d)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        };
        artifact_blobs(desc, read, |d: &Digest| self.blob_size(d))
    }

    /// Writes `index.json`.
    pub fn write_index(&self, index: &ImageIndex) -> Result<(), BundleError> {
        let path = self.root.join("index.json");
        let bytes = serde_json::to_vec_pretty(index).unwrap_or_default();
        std::fs::write(&path, bytes).map_err(BundleError::io("write", &path))
    }
}

/// The sha256 and size of a file, read in chunks.
pub fn hash_file(path: &Path) -> std::io::Result<(Digest, u64)> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((Digest::from_sha256(&hasher.finalize().into()), size))
}

/// Lists every blob an `index.json` entry reaches, the root first (as [`walk`] does).
/// An index annotated with [`PLATFORMS_ANNOTATION`] is a partial index: its bytes are
/// the original index (so its digest is the one the lock pins), and only its manifests
/// of those platforms are in the bundle, so only they are walked.
pub fn artifact_blobs<E>(
    desc: &Descriptor,
    mut read: impl FnMut(&Digest) -> Result<Option<Vec<u8>>, E>,
    mut size: impl FnMut(&Digest) -> Result<Option<u64>, E>,
) -> Result<Vec<Blob>, WalkError<E>>
where
    E: std::error::Error + 'static,
{
    let Some(platforms) = desc.annotation(PLATFORMS_ANNOTATION).filter(|_| is_index(&desc.media_type)) else {
        return walk(desc, read, size);
    };
    let wanted: HashSet<&str> = platforms.split(',').map(str::trim).filter(|p| !p.is_empty()).collect();
    let bytes = read(&desc.digest).map_err(|source| WalkError::Source { digest: desc.digest.clone(), source })?;
    let Some(bytes) = bytes else {
        return Err(WalkError::Missing { digest: desc.digest.clone(), parent: "the root".into() });
    };
    let actual = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    if actual != desc.size {
        return Err(WalkError::SizeMismatch { digest: desc.digest.clone(), expected: desc.size, actual });
    }
    let hashed = Digest::of(&bytes);
    if hashed != desc.digest {
        return Err(WalkError::DigestMismatch { digest: desc.digest.clone(), actual: hashed });
    }
    let index: ImageIndex = serde_json::from_slice(&bytes).map_err(|source| WalkError::Parse {
        digest: desc.digest.clone(),
        media_type: desc.media_type.clone(),
        source,
    })?;
    let mut out = vec![Blob { digest: desc.digest.clone(), size: desc.size, media_type: desc.media_type.clone() }];
    let mut seen: HashSet<Digest> = HashSet::from([desc.digest.clone()]);
    for original in index.manifests.iter().filter(|m| m.annotation(ORIGINAL_ANNOTATION).is_some()) {
        // A wrapped original manifest list: present and intact, not walked (its other
        // platforms are not in the bundle).
        let bytes = read(&original.digest).map_err(|source| WalkError::Source { digest: original.digest.clone(), source })?;
        let Some(bytes) = bytes else {
            return Err(WalkError::Missing { digest: original.digest.clone(), parent: desc.digest.to_string() });
        };
        let actual = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        if actual != original.size {
            return Err(WalkError::SizeMismatch { digest: original.digest.clone(), expected: original.size, actual });
        }
        let hashed = Digest::of(&bytes);
        if hashed != original.digest {
            return Err(WalkError::DigestMismatch { digest: original.digest.clone(), actual: hashed });
        }
        if seen.insert(original.digest.clone()) {
            out.push(Blob { digest: original.digest.clone(), size: original.size, media_type: original.media_type.clone() });
        }
    }
    for child in index.manifests.iter().filter(|m| m.platform.as_ref().is_some_and(|p| wanted.contains(platform_key(p).as_str()))) {
        for blob in walk(child, &mut read, &mut size)? {
            if seen.insert(blob.digest.clone()) {
                out.push(blob);
            }
        }
    }
    Ok(out)
}

/// Tars the layout at `dir` into `out`: `oci-layout`, `index.json`, then `blobs` in the
/// given order (each manifest before what it references, as [`artifact_blobs`] lists
/// them). Headers are deterministic (mtime 0, uid/gid 0, modes 0644/0755). Written to
/// `out` + `.tmp` and renamed, so `out` is either the old file or the complete new one.
pub fn write_tar(dir: &Path, blobs: &[Digest], out: &Path) -> Result<u64, BundleError> {
    let tmp = with_suffix(out, ".tmp");
    let file = File::create(&tmp).map_err(BundleError::io("create", &tmp))?;
    let mut builder = tar::Builder::new(BufWriter::with_capacity(CHUNK, file));
    let fail = BundleError::io("write", &tmp);
    let result = (|| -> std::io::Result<()> {
        for name in ["oci-layout", "index.json"] {
            append_file(&mut builder, &dir.join(name), name)?;
        }
        for d in ["blobs/", "blobs/sha256/"] {
            let mut header = tar::Header::new_ustar();
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(0o755);
            header.set_mtime(0);
            header.set_uid(0);
            header.set_gid(0);
            header.set_size(0);
            builder.append_data(&mut header, d, std::io::empty())?;
        }
        for digest in blobs {
            append_file(&mut builder, &dir.join("blobs/sha256").join(digest.hex()), &format!("blobs/sha256/{}", digest.hex()))?;
        }
        let mut writer = builder.into_inner()?;
        writer.flush()?;
        writer.get_ref().sync_all()
    })();
    if let Err(source) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(fail(source));
    }
    std::fs::rename(&tmp, out).map_err(BundleError::io("rename", &tmp))?;
    std::fs::metadata(out).map(|m| m.len()).map_err(BundleError::io("read", out))
}

fn append_file<W: Write>(builder: &mut tar::Builder<W>, path: &Path, name: &str) -> std::io::Result<()> {
    let file = File::open(path)?;
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header.set_size(file.metadata()?.len());
    builder.append_data(&mut header, name, file)
}

/// `path` with `suffix` appended to its file name (`b.tar` -> `b.tar.partial`).
pub fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// One blob of a bundle's tar, as [`scan`] read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scanned {
    /// Its size in the tar.
    pub size: u64,
    /// What its bytes hash to (`None` when the scan did not hash).
    pub actual: Option<Digest>,
    /// Where its bytes start in the tar file.
    pub offset: u64,
}

/// A bundle's tar read in one pass.
#[derive(Debug, Default)]
pub struct Scan {
    /// `index.json`, parsed.
    pub index: Option<ImageIndex>,
    /// Whether `oci-layout` is present with a version this build reads.
    pub layout_ok: bool,
    /// Every `blobs/sha256/<hex>` entry, by the digest its name claims.
    pub blobs: BTreeMap<Digest, Scanned>,
    /// The bytes of every small blob, and of larger ones up to [`MANIFEST_LIMIT`] that
    /// look like JSON (manifests, indexes, configurations).
    pub small: HashMap<Digest, Vec<u8>>,
    /// Entries that are neither the layout's files nor valid blob names.
    pub strays: Vec<String>,
}

impl Scan {
    /// What one `index.json` entry reaches, from the scanned bytes and sizes.
    pub fn reach(&self, desc: &Descriptor) -> Result<Vec<Blob>, WalkError<std::convert::Infallible>> {
        artifact_blobs(desc, |d: &Digest| Ok(self.small.get(d).cloned()), |d: &Digest| Ok(self.blobs.get(d).map(|b| b.size)))
    }
}

/// Reads a bundle's tar in one pass; with `hash`, every blob is re-hashed (without, the
/// data of large blobs is skipped by seeking).
/// Only `index.json` and small JSON blobs are kept in memory.
pub fn scan(path: &Path, hash: bool) -> Result<Scan, BundleError> {
    let file = File::open(path).map_err(BundleError::io("open", path))?;
    let mut archive = tar::Archive::new(std::io::BufReader::with_capacity(CHUNK, file));
    let fail = BundleError::io("read", path);
    let not_a_bundle = |reason: String| BundleError::NotABundle { path: path.to_owned(), reason };
    let mut out = Scan::default();
    let result = (|| -> Result<(), BundleError> {
        // Without hashing, the data of blobs that are not kept is seeked over, not read:
        // `inspect` and offline `up`'s check cost a pass over the headers, not over GBs.
        let entries = if hash { archive.entries() } else { archive.entries_with_seek() };
        let entries = entries.map_err(BundleError::io("read", path))?;
        for entry in entries {
            let mut entry = entry.map_err(BundleError::io("read", path))?;
            if entry.header().entry_type().is_dir() {
                continue;
            }
            let name = entry.path().map_err(BundleError::io("read", path))?.to_string_lossy().into_owned();
            let name = name.strip_prefix("./").unwrap_or(&name).to_owned();
            let offset = entry.raw_file_position();
            let size = entry.size();
            match name.as_str() {
                "oci-layout" => {
                    let bytes = read_limited(&mut entry, 4096).map_err(BundleError::io("read", path))?;
                    out.layout_ok = serde_json::from_slice::<OciLayout>(&bytes)
                        .is_ok_and(|l| l.image_layout_version == idp_core::oci::IMAGE_LAYOUT_VERSION);
                }
                "index.json" => {
                    let bytes = read_limited(&mut entry, INDEX_JSON_LIMIT).map_err(BundleError::io("read", path))?;
                    let index = serde_json::from_slice(&bytes).map_err(|e| not_a_bundle(format!("index.json does not parse: {e}")))?;
                    out.index = Some(index);
                }
                _ => {
                    let digest = name.strip_prefix("blobs/sha256/").and_then(|hex| Digest::parse(&format!("sha256:{hex}")).ok());
                    let Some(digest) = digest else {
                        out.strays.push(name);
                        continue;
                    };
                    let (actual, kept) = read_blob(&mut entry, size, hash).map_err(BundleError::io("read", path))?;
                    if let Some(bytes) = kept {
                        out.small.insert(digest.clone(), bytes);
                    }
                    out.blobs.insert(digest, Scanned { size, actual, offset });
                }
            }
        }
        Ok(())
    })();
    match result {
        Err(BundleError::Io { source, .. }) => return Err(fail(source)),
        Err(e) => return Err(e),
        Ok(()) => {}
    }
    if !out.layout_ok {
        return Err(not_a_bundle("no oci-layout of version 1.0.0".into()));
    }
    if out.index.is_none() {
        return Err(not_a_bundle("no index.json".into()));
    }
    Ok(out)
}

fn read_limited(r: &mut impl Read, limit: u64) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    r.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("more than {limit} bytes")));
    }
    Ok(bytes)
}

/// Streams one blob: hashes it (with `hash`) and keeps it when it is small JSON.
fn read_blob(r: &mut impl Read, size: u64, hash: bool) -> std::io::Result<(Option<Digest>, Option<Vec<u8>>)> {
    let mut hasher = Sha256::new();
    let mut kept: Option<Vec<u8>> = (size <= MANIFEST_LIMIT).then(Vec::new);
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        if hash {
            hasher.update(&buf[..n]);
        }
        if let Some(k) = kept.as_mut() {
            if k.is_empty() && size > SMALL && !matches!(buf[0], b'{' | b' ' | b'\t' | b'\r' | b'\n') {
                kept = None;
            } else {
                k.extend_from_slice(&buf[..n]);
            }
        }
        if !hash && kept.is_none() {
            // Nothing more to learn: let tar skip the rest.
            break;
        }
    }
    Ok((hash.then(|| Digest::from_sha256(&hasher.finalize().into())), kept.filter(|k| !k.is_empty())))
}

/// Whether a media type is one [`artifact_blobs`] reads (a manifest or an index).
pub fn is_manifest_like(media_type: &str) -> bool {
    is_index(media_type) || is_manifest(media_type)
}
