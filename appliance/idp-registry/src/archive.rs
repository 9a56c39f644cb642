//! A bundle tar served in place: one pass over its headers at open (the data of every
//! blob is seeked over, never read), then each blob is a span of the one open file.
//!
//! The pass keeps `oci-layout` and `index.json` (small JSON, read as they go by) and the
//! span of every `blobs/sha256/<hex>` entry. It refuses, naming the entry and its byte:
//! a header that does not parse, data that runs past the end of the file, a file that
//! ends before the end-of-archive marker (so a tar cut at an entry boundary is caught
//! too), a layout entry that is not a regular file (a link, a device, a sparse file),
//! and any name that appears twice (`./x` and `x` are one name). Other entries
//! (directories, stray files) are passed over, as a layout directory's are.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read as _};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use idp_core::oci::Digest;

use crate::RegistryError;

/// The size of a tar block; headers and data are aligned to it.
const BLOCK: u64 = 512;
/// The largest `oci-layout` read.
const MAX_OCI_LAYOUT_SIZE: u64 = 64 * 1024;
/// The largest `index.json` read (a bundle of every profile's images has well under
/// 1 MiB).
pub(crate) const MAX_INDEX_SIZE: u64 = 64 * 1024 * 1024;

/// Where a blob's bytes are in the tar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    /// The offset of its first byte in the file.
    pub offset: u64,
    /// Its size.
    pub size: u64,
}

/// What the pass over a tar found.
#[derive(Debug)]
pub(crate) struct TarLayout {
    /// The tar, open for positioned reads.
    pub file: Arc<File>,
    /// The bytes of `oci-layout`, when there is one.
    pub oci_layout: Option<Vec<u8>>,
    /// The bytes of `index.json`, when there is one.
    pub index: Option<Vec<u8>>,
    /// Every blob entry, by the digest its name gives.
    pub blobs: HashMap<Digest, Span>,
}

/// What a tar entry is to the layout.
enum Role {
    OciLayout,
    Index,
    Blob(Digest),
    Other,
}

fn role(name: &str) -> Role {
    match name {
        "oci-layout" => Role::OciLayout,
        "index.json" => Role::Index,
        _ => match name.strip_prefix("blobs/sha256/").map(|hex| Digest::parse(&format!("sha256:{hex}"))) {
            Some(Ok(digest)) => Role::Blob(digest),
            _ => Role::Other,
        },
    }
}

/// A refusal naming the entry and its byte.
fn refuse(path: &Path, entry: impl Into<String>, offset: u64, reason: impl Into<String>) -> RegistryError {
    RegistryError::Tar { path: path.to_owned(), entry: entry.into(), offset, reason: reason.into(), source: None }
}

/// `n` rounded up to a whole number of blocks.
fn blocks(n: u64) -> Option<u64> {
    n.checked_add(BLOCK - 1).map(|n| n & !(BLOCK - 1))
}

/// Makes the one pass over the tar at `path`. Blocking.
pub(crate) fn scan(path: &Path) -> Result<TarLayout, RegistryError> {
    let io_error = |action: &'static str| move |source| RegistryError::Io { action, path: path.to_owned(), source };
    let file = File::open(path).map_err(io_error("open"))?;
    let len = file.metadata().map_err(io_error("stat"))?.len();
    let mut magic = [0u8; 2];
    if file.read_at(&mut magic, 0).map_err(io_error("read"))? == 2 && magic == [0x1f, 0x8b] {
        return Err(refuse(path, "the first header", 0, "the file is gzip-compressed; serve the uncompressed tar (gunzip it)"));
    }
    let mut out = TarLayout { file: Arc::new(file), oci_layout: None, index: None, blobs: HashMap::new() };
    // Each name once: its header's byte.
    let mut seen: HashMap<String, u64> = HashMap::new();
    // Where the next header is: the end of the last entry's data, rounded up.
    let mut end = 0u64;
    let mut last: Option<String> = None;
    let header_after = |last: &Option<String>| match last {
        Some(name) => format!("the header after {name}"),
        None => "the first header".to_owned(),
    };
    let mut archive = tar::Archive::new(&*out.file);
    let entries = archive.entries_with_seek().map_err(io_error("read"))?;
    for entry in entries {
        let mut entry = entry.map_err(|source| RegistryError::Tar {
            path: path.to_owned(),
            entry: header_after(&last),
            offset: end,
            reason: "a header cannot be read (a damaged or truncated tar, or not a tar)".into(),
            source: Some(source),
        })?;
        let header_at = entry.raw_header_position();
        let offset = entry.raw_file_position();
        let size = entry.size();
        let raw_name = entry.path().map_err(|source| RegistryError::Tar {
            path: path.to_owned(),
            entry: header_after(&last),
            offset: header_at,
            reason: "its name cannot be read".into(),
            source: Some(source),
        })?;
        let raw_name = raw_name.to_string_lossy().into_owned();
        let name = raw_name.strip_prefix("./").unwrap_or(&raw_name).trim_end_matches('/').to_owned();
        let data_end =
            offset.checked_add(size).ok_or_else(|| refuse(path, &name, header_at, format!("a size of {size} bytes overflows")))?;
        if data_end > len {
            return Err(refuse(
                path,
                &name,
                header_at,
                format!(
                    "its data ({size} bytes from byte {offset}) runs past the end of the file at byte {len}: the tar is truncated ({} bytes missing)",
                    data_end - len
                ),
            ));
        }
        end = blocks(data_end).ok_or_else(|| refuse(path, &name, header_at, format!("a size of {size} bytes overflows")))?;
        let kind = entry.header().entry_type();
        if kind.is_dir() || kind.is_pax_global_extensions() {
            last = Some(name);
            continue;
        }
        if let Some(first) = seen.insert(name.clone(), header_at) {
            return Err(refuse(path, &name, header_at, format!("the name appears twice (the first entry's header is at byte {first})")));
        }
        let role = role(&name);
        let regular = kind.is_file() || kind.is_contiguous();
        if !regular && !matches!(role, Role::Other) {
            return Err(refuse(path, &name, header_at, format!("a layout file stored as {kind:?}, not as a regular file")));
        }
        match role {
            Role::OciLayout => out.oci_layout = Some(read_small(path, &mut entry, &name, header_at, size, MAX_OCI_LAYOUT_SIZE)?),
            Role::Index => out.index = Some(read_small(path, &mut entry, &name, header_at, size, MAX_INDEX_SIZE)?),
            Role::Blob(digest) => {
                out.blobs.insert(digest, Span { offset, size });
            }
            Role::Other => tracing::debug!(tar = %path.display(), entry = name, "registry: not a file of an OCI image layout; passed over"),
        }
        last = Some(name);
    }
    // The tar crate ends at the first zero block and at the end of the file alike: the
    // end-of-archive marker (two zero blocks) tells a whole tar from a cut one.
    let mut marker = [0u8; 2 * BLOCK as usize];
    let what = match &last {
        Some(name) => format!("the end of the archive, after {name}"),
        None => "the end of the archive".to_owned(),
    };
    let got = read_full_at(&out.file, &mut marker, end).map_err(io_error("read"))?;
    if got < marker.len() {
        let reason = if len == 0 {
            "the file is empty".to_owned()
        } else {
            format!("the file ends at byte {len}, before the end-of-archive marker (two zero blocks): the tar is truncated")
        };
        return Err(refuse(path, what, end, reason));
    }
    if marker.iter().any(|b| *b != 0) {
        return Err(refuse(path, what, end, "a lone zero block instead of the end-of-archive marker (two zero blocks)"));
    }
    Ok(out)
}

/// Reads the data of a small entry whole.
fn read_small(path: &Path, entry: &mut impl io::Read, name: &str, header_at: u64, size: u64, limit: u64) -> Result<Vec<u8>, RegistryError> {
    if size > limit {
        return Err(refuse(path, name, header_at, format!("{size} bytes, more than the {limit} this registry reads")));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    entry.take(limit).read_to_end(&mut bytes).map_err(|source| RegistryError::Tar {
        path: path.to_owned(),
        entry: name.to_owned(),
        offset: header_at,
        reason: "its data cannot be read".into(),
        source: Some(source),
    })?;
    Ok(bytes)
}

/// Fills `buf` from `offset` as far as the file goes; how many bytes it got.
pub(crate) fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Where a blob's bytes are, for the server.
#[derive(Debug, Clone)]
pub(crate) enum BlobSource {
    /// A file of its own (a layout directory, the local namespace), all of it.
    File(PathBuf),
    /// A span of an open tar.
    InTar {
        /// The tar.
        file: Arc<File>,
        /// Its path, for messages.
        path: PathBuf,
        /// Where the blob's first byte is.
        offset: u64,
    },
}
