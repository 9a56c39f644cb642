//! `bundle inspect`: the artifacts of a bundle with their kind, platforms and sizes,
//! read in one pass through the tar without re-hashing (that is `bundle verify`).

use crate::bundle::{
    BundleError, FILE_ARTIFACT_TYPE, KIND_ANNOTATION, Kind, OWNERS_ANNOTATION, PLATFORMS_ANNOTATION, UNVERIFIED_ANNOTATION, platform_key,
};
use crate::layout::{Scan, scan};
use idp_core::oci::{Descriptor, Digest, HELM_CONFIG, ImageIndex, ImageManifest, Platform, is_index};
use serde::Serialize;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// One artifact of a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Listed {
    /// Its reference name.
    pub name: String,
    /// What it is.
    pub kind: Kind,
    /// The digest of its root (what `index.json` names).
    pub digest: Digest,
    /// The root's media type.
    pub media_type: String,
    /// Its platforms (`os/arch`): for an image, those bundled; empty for charts and files.
    pub platforms: Vec<String>,
    /// The bytes of every blob it reaches (shared blobs counted for each artifact).
    pub size: u64,
    /// How many blobs it reaches.
    pub blobs: usize,
    /// Who needs it.
    pub owners: Vec<String>,
    /// The lock's reason, when bundled unverified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unverified: Option<String>,
    /// Why its blobs could not be listed (a damaged or incomplete bundle: run `verify`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What `bundle inspect` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Inspection {
    /// The bundle file.
    pub path: PathBuf,
    /// Its size.
    pub file_size: u64,
    /// The artifacts, in `index.json` order.
    pub artifacts: Vec<Listed>,
    /// How many blobs the bundle holds (each once).
    pub blobs: usize,
    /// Their bytes.
    pub bytes: u64,
}

/// Lists the artifacts of the bundle at `path`.
pub fn inspect(path: &Path) -> Result<Inspection, BundleError> {
    let scanned = scan(path, false)?;
    let file_size = std::fs::metadata(path).map_err(BundleError::io("read", path))?.len();
    let manifests = scanned.index.as_ref().map(|i| i.manifests.as_slice()).unwrap_or_default();
    let artifacts = manifests.iter().map(|desc| listed(&scanned, desc)).collect();
    Ok(Inspection {
        path: path.to_owned(),
        file_size,
        artifacts,
        blobs: scanned.blobs.len(),
        bytes: scanned.blobs.values().map(|b| b.size).sum(),
    })
}

fn listed(scanned: &Scan, desc: &Descriptor) -> Listed {
    let manifest: Option<ImageManifest> =
        scanned.small.get(&desc.digest).filter(|_| !is_index(&desc.media_type)).and_then(|b| serde_json::from_slice(b).ok());
    let kind = desc.annotation(KIND_ANNOTATION).and_then(Kind::parse).unwrap_or_else(|| match &manifest {
        Some(m) if m.config.media_type == HELM_CONFIG => Kind::Chart,
        Some(m) if m.artifact_type.as_deref() == Some(FILE_ARTIFACT_TYPE) => Kind::File,
        _ => Kind::Image,
    });
    let platforms = match (kind, desc.annotation(PLATFORMS_ANNOTATION)) {
        (Kind::Image, Some(p)) => p.split(',').map(str::to_owned).collect(),
        (Kind::Image, None) if is_index(&desc.media_type) => {
            let index: Option<ImageIndex> = scanned.small.get(&desc.digest).and_then(|b| serde_json::from_slice(b).ok());
            let keys: BTreeSet<String> =
                index.iter().flat_map(|i| i.manifests.iter().filter_map(|m| m.platform.as_ref().map(platform_key))).collect();
            keys.into_iter().collect()
        }
        (Kind::Image, None) => manifest
            .as_ref()
            .and_then(|m| scanned.small.get(&m.config.digest))
            .and_then(|b| serde_json::from_slice::<Platform>(b).ok())
            .map(|p| vec![platform_key(&p)])
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    let (size, blobs, error) = match scanned.reach(desc) {
        Ok(blobs) => (blobs.iter().map(|b| b.size).sum(), blobs.len(), None),
        Err(e) => (0, 0, Some(crate::bundle::chain(&e))),
    };
    Listed {
        name: desc.ref_name().unwrap_or_default().to_owned(),
        kind,
        digest: desc.digest.clone(),
        media_type: desc.media_type.clone(),
        platforms,
        size,
        blobs,
        owners: desc.annotation(OWNERS_ANNOTATION).map(|o| o.split(',').map(str::to_owned).collect()).unwrap_or_default(),
        unverified: desc.annotation(UNVERIFIED_ANNOTATION).map(str::to_owned),
        error,
    }
}
