//! `lock update`: resolves every lock entry it can reach and leaves the others
//! `unverified`, with the reason.
//!
//! Rules: a tag resolves to what it points at now; an entry that already pins a digest is
//! resolved by that digest, and a tag (or a repository index, or a file) that now names
//! other bytes does not replace it: the entry keeps its digest and becomes `unverified`
//! with both digests in the reason, for a person to decide. An unreachable entry keeps
//! what it had: a verified one stays verified, an unverified one gets the new reason.

use crate::client::Client;
use crate::error::ClientError;
use futures::StreamExt as _;
use idp_core::lock::{ChartLock, FileLock, ImageLock, Lock, LockError, PLATFORMS};

/// How many entries are resolved at once.
pub const CONCURRENCY: usize = 4;

/// `lock update` could not produce a lock it can read back (a defect, never a network
/// failure: those become `unverified` reasons).
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// The updated lock does not parse from its own canonical form.
    #[error("the updated lock does not read back")]
    Invalid(#[source] LockError),
}

enum Job<'a> {
    Image(&'a ImageLock),
    Chart(&'a ChartLock),
    File(&'a FileLock),
}

enum Done {
    Image(ImageLock),
    Chart(ChartLock),
    File(FileLock),
}

/// Resolves every entry of `lock` (images against their registries, charts against their
/// repositories' `index.yaml` and packages or, for `oci://` charts, by the manifest digest
/// their registry gives the tag; files by downloading them) and returns the new lock. Nothing here fails on the network: what cannot be reached stays as it was,
/// or `unverified` with the error as the reason.
pub async fn update(lock: &Lock, client: &Client) -> Result<Lock, UpdateError> {
    let mut jobs: Vec<Job<'_>> = Vec::new();
    for cluster in lock.cluster.values() {
        jobs.push(Job::Image(&cluster.node));
        jobs.extend(cluster.airgap.iter().map(Job::Image));
    }
    for c in lock.components.values() {
        jobs.extend(c.chart.iter().map(Job::Chart));
        jobs.extend(c.files.iter().map(Job::File));
        jobs.extend(c.images.iter().map(Job::Image));
    }
    let done: Vec<Done> = futures::stream::iter(jobs)
        .map(|job| async move {
            match job {
                Job::Image(i) => Done::Image(update_image(client, i).await),
                Job::Chart(c) => Done::Chart(update_chart(client, c).await),
                Job::File(f) => Done::File(update_file(client, f).await),
            }
        })
        .buffered(CONCURRENCY)
        .collect()
        .await;
    // Put the results back in the same walk order.
    let mut done = done.into_iter();
    let mut out = lock.clone();
    for cluster in out.cluster.values_mut() {
        for image in std::iter::once(&mut cluster.node).chain(cluster.airgap.iter_mut()) {
            if let Some(Done::Image(new)) = done.next() {
                *image = new;
            }
        }
    }
    for c in out.components.values_mut() {
        if let Some(chart) = c.chart.as_mut()
            && let Some(Done::Chart(new)) = done.next()
        {
            *chart = new;
        }
        for f in &mut c.files {
            if let Some(Done::File(new)) = done.next() {
                *f = new;
            }
        }
        for i in &mut c.images {
            if let Some(Done::Image(new)) = done.next() {
                *i = new;
            }
        }
    }
    // Never hand back a lock that does not read back.
    Lock::parse(&out.to_yaml(), "the updated lock").map_err(UpdateError::Invalid)
}

/// Keeps an unreachable entry: verified stays verified, unverified gets the new reason.
fn unreachable(was: &Option<String>, error: &ClientError) -> Option<String> {
    was.as_ref().map(|_| format!("not resolved: {}", chain(error)))
}

/// An error and its causes on one line ([`idp_core::diag::chain`]).
pub use idp_core::diag::chain;

async fn update_image(client: &Client, old: &ImageLock) -> ImageLock {
    let mut new = old.clone();
    let by = match &old.digest {
        Some(d) => format!("{}@{d}", old.reference.split('@').next().unwrap_or(&old.reference)),
        None => old.reference.clone(),
    };
    let resolved = match client.resolve(&by).await {
        Ok(r) => r,
        Err(e) => {
            new.unverified = unreachable(&old.unverified, &e);
            return new;
        }
    };
    new.digest = Some(resolved.digest.clone());
    new.platforms = resolved.platforms;
    new.source = None;
    new.unverified = None;
    if old.digest.is_some() {
        // The pinned digest resolved; does the tag still point at it?
        match client.head_digest(&old.reference).await {
            Ok(now) if now == resolved.digest => {}
            Ok(now) => {
                new.unverified = Some(format!(
                    "the tag now points to {now}; the lock keeps {} (check the change, then edit the digest by hand)",
                    resolved.digest
                ));
            }
            Err(e) => new.unverified = Some(format!("the pinned digest resolves, but the tag does not: {}", chain(&e))),
        }
    }
    if new.platforms.is_empty() && new.unverified.is_none() {
        new.unverified = Some(format!("provides none of {}", PLATFORMS.join(", ")));
    }
    new
}

async fn update_chart(client: &Client, old: &ChartLock) -> ChartLock {
    if let Some(reference) = old.oci_reference() {
        return update_oci_chart(client, old, &reference).await;
    }
    let mut new = old.clone();
    let found = match client.find_chart(&old.repository, &old.name, &old.version).await {
        Ok(found) => found,
        Err(e) => {
            new.unverified = unreachable(&old.unverified, &e);
            return new;
        }
    };
    new.url = Some(found.url.clone());
    match client.download_chart(&found, old.digest.as_deref(), &mut tokio::io::sink()).await {
        Ok(fetched) => {
            new.digest = Some(fetched.digest);
            new.source =
                if found.digest.is_none() { Some("measured by lock update; the repository index has no digest".into()) } else { None };
            new.unverified = None;
        }
        Err(e @ ClientError::DigestMismatch { .. }) => {
            new.unverified = Some(format!("{}; the lock keeps its digest (check the change, then edit it by hand)", chain(&e)));
        }
        Err(e) => new.unverified = unreachable(&old.unverified, &e),
    }
    new
}

/// A chart of an OCI registry: the manifest digest its tag names now
/// ([`Client::head_digest`]). A pinned digest the tag no longer names is kept, and the
/// entry becomes `unverified` with both digests, as for an image.
async fn update_oci_chart(client: &Client, old: &ChartLock, reference: &str) -> ChartLock {
    let mut new = old.clone();
    let now = match client.head_digest(reference).await {
        Ok(now) => now,
        Err(e) => {
            new.unverified = unreachable(&old.unverified, &e);
            return new;
        }
    };
    match &old.digest {
        Some(pinned) if *pinned != now => {
            new.unverified = Some(format!(
                "the tag {reference} now points to {now}; the lock keeps {pinned} (check the change, then edit the digest by hand)"
            ));
        }
        _ => {
            new.digest = Some(now);
            new.source = None;
            new.unverified = None;
        }
    }
    new
}

async fn update_file(client: &Client, old: &FileLock) -> FileLock {
    let mut new = old.clone();
    let expected = old.sha256.as_ref().map(|h| format!("sha256:{h}"));
    match client.fetch(&old.url, expected.as_deref(), &mut tokio::io::sink()).await {
        Ok(fetched) => {
            new.sha256 = fetched.digest.strip_prefix("sha256:").map(str::to_owned);
            new.source = None;
            new.unverified = None;
        }
        Err(e @ ClientError::DigestMismatch { .. }) => {
            new.unverified = Some(format!("{}; the lock keeps its sha256 (check the change, then edit it by hand)", chain(&e)));
        }
        Err(e) => new.unverified = unreachable(&old.unverified, &e),
    }
    new
}
