//! `bundle verify`: re-hashes every blob of a bundle while streaming through its tar, and
//! checks that each artifact of `index.json` reaches only blobs that are present, with
//! the sizes their descriptors give and the bytes their digests name. Every problem is
//! reported by artifact (its reference name) and blob digest.

use crate::bundle::BundleError;
use crate::layout::scan;
use idp_core::oci::{Digest, WalkError};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The name problems of blobs no artifact reaches are reported under.
pub const UNREFERENCED: &str = "(not referenced by index.json)";

/// One thing wrong with a bundle.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Problem {
    /// The artifact (its `org.opencontainers.image.ref.name`, or [`UNREFERENCED`]).
    pub artifact: String,
    /// The blob, when the problem is one blob's.
    pub digest: Option<Digest>,
    /// What is wrong.
    pub reason: String,
}

/// What `bundle verify` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verification {
    /// The bundle file.
    pub path: PathBuf,
    /// How many artifacts `index.json` names.
    pub artifacts: usize,
    /// How many blobs the tar holds.
    pub blobs: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Every problem, sorted by artifact and digest; empty when the bundle is sound.
    pub problems: Vec<Problem>,
    /// Tar entries that are neither layout files nor blobs (not an error).
    pub strays: Vec<String>,
}

impl Verification {
    /// Whether no problem was found.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

fn walk_digest<E: std::error::Error + 'static>(e: &WalkError<E>) -> &Digest {
    match e {
        WalkError::Missing { digest, .. }
        | WalkError::SizeMismatch { digest, .. }
        | WalkError::DigestMismatch { digest, .. }
        | WalkError::Parse { digest, .. }
        | WalkError::TooDeep { digest }
        | WalkError::Source { digest, .. } => digest,
    }
}

/// Verifies the bundle at `path`. `Err` only when it cannot be read as a bundle at all;
/// damage is in [`Verification::problems`].
pub fn verify(path: &Path) -> Result<Verification, BundleError> {
    let scanned = scan(path, true)?;
    // Blobs whose bytes do not hash to their name, with what they hash to.
    let corrupt: BTreeMap<&Digest, &Digest> =
        scanned.blobs.iter().filter_map(|(d, b)| b.actual.as_ref().filter(|a| *a != d).map(|a| (d, a))).collect();
    let damaged = |d: &Digest| corrupt.get(d).map(|a| format!("its bytes hash to {a}"));
    let mut problems = BTreeSet::new();
    let mut reached = BTreeSet::new();
    let manifests = scanned.index.as_ref().map(|i| i.manifests.as_slice()).unwrap_or_default();
    for desc in manifests {
        let artifact = desc.ref_name().map_or_else(|| format!("(unnamed {})", desc.digest), str::to_owned);
        match scanned.reach(desc) {
            Ok(blobs) => {
                for blob in blobs {
                    if let Some(reason) = damaged(&blob.digest) {
                        problems.insert(Problem { artifact: artifact.clone(), digest: Some(blob.digest.clone()), reason });
                    }
                    reached.insert(blob.digest);
                }
            }
            Err(e) => {
                let digest = walk_digest(&e).clone();
                let reason = damaged(&digest).unwrap_or_else(|| crate::bundle::chain(&e));
                reached.insert(digest.clone());
                problems.insert(Problem { artifact, digest: Some(digest), reason });
            }
        }
    }
    for d in corrupt.keys() {
        if !reached.contains(*d)
            && let Some(reason) = damaged(d)
        {
            problems.insert(Problem { artifact: UNREFERENCED.into(), digest: Some((*d).clone()), reason });
        }
    }
    Ok(Verification {
        path: path.to_owned(),
        artifacts: manifests.len(),
        blobs: scanned.blobs.len(),
        bytes: scanned.blobs.values().map(|b| b.size).sum(),
        problems: problems.into_iter().collect(),
        strays: scanned.strays,
    })
}
