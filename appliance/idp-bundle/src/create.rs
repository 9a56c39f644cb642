//! `bundle create`: what to bundle ([`Item`]s, from the lock and `--image`), and
//! [`create`], which pulls every item into a [`WorkDir`] next to the output
//! (`FILE.partial/`) and tars it into an OCI image layout.
//!
//! - Images come through the [`Client`] (digests verified while streaming). An index
//!   keeps its original bytes (the digest the lock pins); only the requested platforms'
//!   manifests and their blobs are fetched, and `index.json` says which
//!   ([`PLATFORMS_ANNOTATION`]).
//! - Charts come from their Helm HTTP repository and are stored as OCI Helm artifacts;
//!   charts of an OCI registry (`oci://`) are already such artifacts and are copied like a
//!   single-manifest image, under their own reference; upstream files are stored as OCI
//!   artifacts with one layer.
//! - Blobs are stored once per digest, whichever artifacts share them. A blob already in
//!   the work directory with the right digest is not fetched again (a killed run resumes).

use crate::bundle::{
    BundleError, DIGEST_ANNOTATION, FILE_ARTIFACT_TYPE, KIND_ANNOTATION, Kind, ORIGINAL_ANNOTATION, OWNERS_ANNOTATION,
    PLATFORMS_ANNOTATION, SOURCE_ANNOTATION, TITLE_ANNOTATION, UNVERIFIED_ANNOTATION, digest, platform_key,
};
use crate::client::Client;
use crate::error::ClientError;
use crate::layout::{WorkDir, with_suffix, write_tar};
use idp_core::lock::{Artifact, Entry, PLATFORMS};
use idp_core::oci::{
    DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, Descriptor, Digest, GENERIC_CONTENT, HELM_CHART_CONTENT, HELM_CONFIG, ImageIndex, ImageManifest,
    ImageName, OCI_EMPTY, OCI_INDEX, OCI_MANIFEST, Platform, REF_NAME_ANNOTATION, is_index,
};
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;

/// Where an item comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// An image; pulled by digest when the name carries one, by tag otherwise.
    Image {
        /// The reference.
        name: ImageName,
        /// The lock's per-platform manifest digests (checked when the index is read).
        platforms: BTreeMap<String, String>,
    },
    /// A chart of an OCI registry (`oci://`): an OCI Helm artifact, copied as it is (its
    /// manifest, its Helm config and its one layer); pulled by digest when the name
    /// carries one (the lock's manifest digest), by tag otherwise.
    OciChart {
        /// The chart's reference (`ghcr.io/org/charts/<name>:<version>`).
        name: ImageName,
    },
    /// A chart of a Helm HTTP repository.
    Chart {
        /// The repository URL.
        repository: String,
        /// The chart name.
        name: String,
        /// The version.
        version: String,
        /// The lock's digest of the package (`sha256:<hex>`).
        digest: Option<String>,
    },
    /// An upstream file.
    File {
        /// The URL.
        url: String,
        /// The lock's sha256 (`sha256:<hex>`).
        sha256: Option<String>,
    },
}

/// One artifact to bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// Its name in `index.json` ([`REF_NAME_ANNOTATION`]).
    pub ref_name: String,
    /// What it is.
    pub kind: Kind,
    /// Where it comes from.
    pub source: Source,
    /// Who needs it (lock owners; `--image`).
    pub owners: Vec<String>,
    /// The lock's reason when its entry is not verified.
    pub unverified: Option<String>,
}

fn invalid(artifact: &str, what: &'static str) -> impl FnOnce(idp_core::oci::OciError) -> BundleError {
    let artifact = artifact.to_owned();
    move |source| BundleError::Invalid { artifact, what, source }
}

/// An image item; a reference without tag or digest means `:latest`, as Docker reads it.
pub fn image_item(reference: &str, owner: &str) -> Result<Item, BundleError> {
    let mut name = ImageName::parse(reference).map_err(invalid(reference, "image reference"))?;
    if name.tag.is_none() && name.digest.is_none() {
        name.tag = Some("latest".into());
    }
    let ref_name = match &name.tag {
        Some(tag) => format!("{}/{}:{tag}", name.registry, name.repository),
        None => name.to_string(),
    };
    Ok(Item {
        ref_name,
        kind: Kind::Image,
        source: Source::Image { name, platforms: BTreeMap::new() },
        owners: vec![owner.to_owned()],
        unverified: None,
    })
}

/// `host[:port]/path` of an http(s) URL, lower-cased, without query or fragment.
fn url_path(url: &str) -> &str {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://")).unwrap_or(url);
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    rest[..end].trim_end_matches('/')
}

/// The name of a chart in a bundle: `<repository host and path>/<name>:<version>`, e.g.
/// `charts.jetstack.io/cert-manager:v1.19.0`; a `+` in the version is `_` (as Helm does
/// for OCI tags). For an `oci://` repository this is the chart's own OCI reference
/// ([`idp_core::lock::oci_chart_reference`]), so a client asking the lab registry for
/// `ghcr.io/org/charts/<name>:<version>` finds it.
pub fn chart_ref_name(repository: &str, name: &str, version: &str) -> Result<String, BundleError> {
    let text = match idp_core::lock::oci_chart_reference(repository, name, version) {
        Some(reference) => reference,
        None => format!("{}/{name}:{}", url_path(repository).to_ascii_lowercase(), version.replace('+', "_")),
    };
    let parsed = ImageName::parse(&text).map_err(invalid(&text, "chart name"))?;
    Ok(parsed.to_string())
}

/// The name of an upstream file in a bundle: `<host>/<path>:sha256-<hex>` (or `:latest`
/// when unpinned), characters outside the repository grammar made `-`.
pub fn file_ref_name(url: &str, sha256: Option<&str>) -> Result<String, BundleError> {
    let path: String = url_path(url)
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-' | '/' | ':') { c } else { '-' })
        .collect();
    let tag = sha256.and_then(|s| s.strip_prefix("sha256:")).map_or_else(|| "latest".to_owned(), |h| format!("sha256-{h}"));
    let text = format!("{path}:{tag}");
    let parsed = ImageName::parse(&text).map_err(invalid(url, "file name"))?;
    Ok(parsed.to_string())
}

/// The items of lock entries (each artifact once, with all its owners), in lock order.
pub fn items_from_lock(entries: &[Entry<'_>]) -> Result<Vec<Item>, BundleError> {
    let mut items: Vec<Item> = Vec::new();
    for entry in entries {
        let owner = entry.owner.to_string();
        let item = match entry.artifact {
            Artifact::Image(image) => {
                let mut item = image_item(&image.reference, &owner)?;
                if let (Some(d), Source::Image { name, platforms }) = (&image.digest, &mut item.source) {
                    name.digest = Some(digest(&item.ref_name, d)?);
                    platforms.clone_from(&image.platforms);
                }
                item
            }
            Artifact::Chart(chart) if chart.is_oci() => {
                let ref_name = chart_ref_name(&chart.repository, &chart.name, &chart.version)?;
                let mut name = ImageName::parse(&ref_name).map_err(invalid(&ref_name, "chart reference"))?;
                if let Some(d) = &chart.digest {
                    name.digest = Some(digest(&ref_name, d)?);
                }
                Item { ref_name, kind: Kind::Chart, source: Source::OciChart { name }, owners: vec![owner.clone()], unverified: None }
            }
            Artifact::Chart(chart) => Item {
                ref_name: chart_ref_name(&chart.repository, &chart.name, &chart.version)?,
                kind: Kind::Chart,
                source: Source::Chart {
                    repository: chart.repository.clone(),
                    name: chart.name.clone(),
                    version: chart.version.clone(),
                    digest: chart.digest.clone(),
                },
                owners: vec![owner.clone()],
                unverified: None,
            },
            Artifact::File(file) => {
                let sha256 = file.sha256.as_ref().map(|h| format!("sha256:{h}"));
                Item {
                    ref_name: file_ref_name(&file.url, sha256.as_deref())?,
                    kind: Kind::File,
                    source: Source::File { url: file.url.clone(), sha256 },
                    owners: vec![owner.clone()],
                    unverified: None,
                }
            }
        };
        let item = Item { unverified: entry.unverified().map(str::to_owned), ..item };
        merge(&mut items, item);
    }
    Ok(items)
}

/// Adds `item`, or its owners to an item of the same name.
pub fn merge(items: &mut Vec<Item>, item: Item) {
    match items.iter_mut().find(|i| i.ref_name == item.ref_name) {
        Some(existing) => {
            for owner in item.owners {
                if !existing.owners.contains(&owner) {
                    existing.owners.push(owner);
                }
            }
        }
        None => items.push(item),
    }
}

/// How `bundle create` runs.
#[derive(Debug, Clone)]
pub struct CreateOptions {
    /// The bundle file; the work directory is this path plus `.partial`.
    pub out: PathBuf,
    /// The platforms to keep from indexes (each of [`PLATFORMS`]).
    pub platforms: Vec<String>,
    /// Bundle unverified lock entries as they resolve now, instead of refusing.
    pub allow_unverified: bool,
}

/// What [`create`] reports as it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Work on an artifact begins (`index` counts from 1).
    Artifact {
        /// Its position.
        index: usize,
        /// How many there are.
        total: usize,
        /// Its name.
        name: String,
    },
    /// A blob is in the work directory: fetched now, or already there (`reused`).
    Blob {
        /// Its digest.
        digest: Digest,
        /// Its size.
        size: u64,
        /// Whether it was already present (not fetched).
        reused: bool,
    },
    /// Bytes arrived (cumulative for the run).
    Bytes(u64),
    /// Something the user should know (a missing platform, an unverified entry).
    Warning(String),
    /// Every artifact is in; the tar is being written.
    Writing(PathBuf),
}

/// One artifact of a created bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bundled {
    /// Its name.
    pub name: String,
    /// What it is.
    pub kind: Kind,
    /// The digest of its root (the index or manifest `index.json` names).
    pub digest: Digest,
    /// The platforms bundled (empty for charts and files, and single-manifest images).
    pub platforms: Vec<String>,
    /// The bytes of every blob it reaches.
    pub size: u64,
}

/// What [`create`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Created {
    /// The bundle file.
    pub path: PathBuf,
    /// Its size.
    pub size: u64,
    /// The artifacts, by name.
    pub artifacts: Vec<Bundled>,
    /// Blobs fetched by this run.
    pub fetched: usize,
    /// Blobs a previous run had fetched.
    pub reused: usize,
    /// Bytes fetched by this run.
    pub bytes_fetched: u64,
    /// The warnings, as [`Event::Warning`] reported them.
    pub warnings: Vec<String>,
}

/// Checks `--platform` values against [`PLATFORMS`].
pub fn check_platforms(platforms: &[String]) -> Result<(), BundleError> {
    for p in platforms {
        if !PLATFORMS.contains(&p.as_str()) {
            return Err(BundleError::Platform { value: p.clone(), expected: PLATFORMS.join(", ") });
        }
    }
    if platforms.is_empty() {
        return Err(BundleError::Platform { value: String::new(), expected: PLATFORMS.join(", ") });
    }
    Ok(())
}

struct Run<'a> {
    client: &'a Client,
    work: WorkDir,
    platforms: &'a [String],
    progress: &'a mut dyn FnMut(Event),
    fetched: usize,
    reused: usize,
    bytes: u64,
    warnings: Vec<String>,
}

/// Pulls every item into `options.out` + `.partial/`, then tars it to `options.out` and
/// removes the work directory. Unverified items are refused unless
/// `options.allow_unverified`. A failed run leaves the work directory for the next run.
pub async fn create(
    client: &Client,
    items: &[Item],
    options: &CreateOptions,
    progress: &mut dyn FnMut(Event),
) -> Result<Created, BundleError> {
    check_platforms(&options.platforms)?;
    let unverified: Vec<String> = items.iter().filter(|i| i.unverified.is_some()).map(|i| i.ref_name.clone()).collect();
    if !unverified.is_empty() && !options.allow_unverified {
        return Err(BundleError::Unverified { entries: unverified });
    }
    let work_path = with_suffix(&options.out, ".partial");
    let work = WorkDir::open(&work_path)?;
    let mut run = Run { client, work, platforms: &options.platforms, progress, fetched: 0, reused: 0, bytes: 0, warnings: Vec::new() };
    let mut descriptors = Vec::new();
    for (i, item) in items.iter().enumerate() {
        (run.progress)(Event::Artifact { index: i + 1, total: items.len(), name: item.ref_name.clone() });
        if let Some(reason) = &item.unverified {
            run.warn(format!("{} is not verified in the lock ({reason}); bundled as it resolves now", item.ref_name));
        }
        let mut desc = match &item.source {
            Source::Image { name, platforms } => run.image(item, name, platforms).await?,
            Source::OciChart { name } => run.oci_chart(item, name).await?,
            Source::Chart { repository, name, version, digest } => run.chart(item, repository, name, version, digest.as_deref()).await?,
            Source::File { url, sha256 } => run.file(item, url, sha256.as_deref()).await?,
        };
        let annotations = desc.annotations.get_or_insert_with(BTreeMap::new);
        annotations.insert(REF_NAME_ANNOTATION.into(), item.ref_name.clone());
        annotations.insert(KIND_ANNOTATION.into(), item.kind.as_str().into());
        annotations.insert(OWNERS_ANNOTATION.into(), item.owners.join(","));
        if let Some(reason) = &item.unverified {
            annotations.insert(UNVERIFIED_ANNOTATION.into(), reason.clone());
        }
        descriptors.push((desc, item));
    }
    descriptors.sort_by(|a, b| a.1.ref_name.cmp(&b.1.ref_name));
    let mut order = Vec::new();
    let mut seen = HashSet::new();
    let mut artifacts = Vec::new();
    for (desc, item) in &descriptors {
        let blobs = run.work.reach(desc).map_err(|e| BundleError::Walk { artifact: item.ref_name.clone(), source: Box::new(e) })?;
        let platforms = desc.annotation(PLATFORMS_ANNOTATION).map(|p| p.split(',').map(str::to_owned).collect()).unwrap_or_default();
        artifacts.push(Bundled {
            name: item.ref_name.clone(),
            kind: item.kind,
            digest: desc.digest.clone(),
            platforms,
            size: blobs.iter().map(|b| b.size).sum(),
        });
        order.extend(blobs.into_iter().map(|b| b.digest).filter(|d| seen.insert(d.clone())));
    }
    let index = ImageIndex { manifests: descriptors.into_iter().map(|(d, _)| d).collect(), ..ImageIndex::empty() };
    run.work.write_index(&index)?;
    (run.progress)(Event::Writing(options.out.clone()));
    let out = options.out.clone();
    let root = run.work.root().to_owned();
    let size = tokio::task::spawn_blocking(move || write_tar(&root, &order, &out))
        .await
        .map_err(|e| BundleError::io("write", &options.out)(std::io::Error::other(e)))??;
    std::fs::remove_dir_all(&work_path).map_err(BundleError::io("remove", &work_path))?;
    Ok(Created {
        path: options.out.clone(),
        size,
        artifacts,
        fetched: run.fetched,
        reused: run.reused,
        bytes_fetched: run.bytes,
        warnings: run.warnings,
    })
}

impl Run<'_> {
    fn warn(&mut self, text: String) {
        (self.progress)(Event::Warning(text.clone()));
        self.warnings.push(text);
    }

    fn fetch_error(item: &Item) -> impl FnOnce(crate::error::ClientError) -> BundleError {
        let artifact = item.ref_name.clone();
        move |source| BundleError::Fetch { artifact, source: Box::new(source) }
    }

    /// A manifest by digest: from the work directory when a previous run stored it, else
    /// from the registry (verified against the digest); stored either way.
    async fn manifest(&mut self, item: &Item, repo: &str, desc: &Descriptor) -> Result<Vec<u8>, BundleError> {
        if self.work.has_blob(&desc.digest, Some(desc.size))?
            && let Some(bytes) = self.work.read_small(&desc.digest)?
        {
            self.reused += 1;
            (self.progress)(Event::Blob { digest: desc.digest.clone(), size: desc.size, reused: true });
            return Ok(bytes);
        }
        let m = self.client.manifest(&format!("{repo}@{}", desc.digest)).await.map_err(Self::fetch_error(item))?;
        self.store_manifest(item, &m.bytes, desc)?;
        Ok(m.bytes)
    }

    fn store_manifest(&mut self, item: &Item, bytes: &[u8], desc: &Descriptor) -> Result<(), BundleError> {
        let stored = self.work.put_bytes(bytes)?;
        if stored != desc.digest || bytes.len() as u64 != desc.size {
            return Err(BundleError::LockMismatch {
                artifact: item.ref_name.clone(),
                reason: format!("manifest {} has {} bytes hashing to {stored}", desc.digest, bytes.len()),
            });
        }
        self.fetched += 1;
        self.bytes += desc.size;
        (self.progress)(Event::Blob { digest: desc.digest.clone(), size: desc.size, reused: false });
        (self.progress)(Event::Bytes(self.bytes));
        Ok(())
    }

    /// A blob of `repo` into the work directory, unless it is there already.
    async fn blob(&mut self, item: &Item, repo: &str, desc: &Descriptor) -> Result<(), BundleError> {
        if self.work.has_blob(&desc.digest, Some(desc.size))? {
            self.reused += 1;
            (self.progress)(Event::Blob { digest: desc.digest.clone(), size: desc.size, reused: true });
            return Ok(());
        }
        let tmp = self.work.tmp_path(&desc.digest);
        let file = tokio::fs::File::create(&tmp).await.map_err(BundleError::io("create", &tmp))?;
        let base = self.bytes;
        let mut sink =
            Counting { inner: tokio::io::BufWriter::with_capacity(256 * 1024, file), base, written: 0, progress: &mut *self.progress };
        let fetched = self.client.blob(&format!("{repo}@{}", desc.digest), &desc.digest.to_string(), &mut sink).await;
        let written = sink.written;
        drop(sink);
        let fetched = match fetched {
            Ok(f) => f,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(Self::fetch_error(item)(e));
            }
        };
        self.bytes = base + written;
        if fetched.size != desc.size {
            let _ = std::fs::remove_file(&tmp);
            return Err(BundleError::LockMismatch {
                artifact: item.ref_name.clone(),
                reason: format!("blob {} has {} bytes, its descriptor says {}", desc.digest, fetched.size, desc.size),
            });
        }
        self.work.commit(&desc.digest)?;
        self.fetched += 1;
        (self.progress)(Event::Blob { digest: desc.digest.clone(), size: desc.size, reused: false });
        Ok(())
    }

    /// A manifest's configuration and layers.
    async fn manifest_content(&mut self, item: &Item, repo: &str, desc: &Descriptor, bytes: &[u8]) -> Result<(), BundleError> {
        if is_index(&desc.media_type) {
            // A nested index (rare): all of it.
            let index: ImageIndex = parse(item, desc, bytes)?;
            for child in &index.manifests {
                let child_bytes = self.manifest(item, repo, child).await?;
                Box::pin(self.manifest_content(item, repo, child, &child_bytes)).await?;
            }
            return Ok(());
        }
        let manifest: ImageManifest = parse(item, desc, bytes)?;
        self.blob(item, repo, &manifest.config).await?;
        for layer in &manifest.layers {
            self.blob(item, repo, layer).await?;
        }
        Ok(())
    }

    /// The root manifest or index of `name`: by digest (from the work directory when a
    /// previous run stored it) or by tag; stored, and checked against a pinned digest.
    /// Its descriptor carries the source and digest annotations.
    async fn root(&mut self, item: &Item, name: &ImageName) -> Result<(Descriptor, Vec<u8>), BundleError> {
        let (bytes, media_type) = match &name.digest {
            Some(d) if self.work.has_blob(d, None)? => {
                let bytes = self.work.read_small(d)?.unwrap_or_default();
                let media_type = media_type_of(&bytes);
                self.reused += 1;
                (self.progress)(Event::Blob { digest: d.clone(), size: bytes.len() as u64, reused: true });
                (bytes, media_type)
            }
            _ => {
                let m = self.client.manifest(&name.to_string()).await.map_err(Self::fetch_error(item))?;
                let desc = Descriptor::new(&m.media_type, digest(&item.ref_name, &m.digest)?, m.bytes.len() as u64);
                self.store_manifest(item, &m.bytes, &desc)?;
                (m.bytes, m.media_type)
            }
        };
        let mut root = Descriptor::new(&media_type, Digest::of(&bytes), bytes.len() as u64);
        if let Some(pinned) = &name.digest
            && *pinned != root.digest
        {
            return Err(BundleError::LockMismatch { artifact: item.ref_name.clone(), reason: format!("{pinned} holds {}", root.digest) });
        }
        root.annotations = Some(BTreeMap::from([
            (SOURCE_ANNOTATION.to_owned(), name.to_string()),
            (DIGEST_ANNOTATION.to_owned(), root.digest.to_string()),
        ]));
        Ok((root, bytes))
    }

    async fn image(&mut self, item: &Item, name: &ImageName, locked: &BTreeMap<String, String>) -> Result<Descriptor, BundleError> {
        let repo = format!("{}/{}", name.registry, name.repository);
        let (mut root, bytes) = self.root(item, name).await?;
        let media_type = root.media_type.clone();
        if !is_index(&media_type) {
            self.manifest_content(item, &repo, &root, &bytes).await?;
            if media_type != DOCKER_MANIFEST {
                return Ok(root);
            }
            // skopeo (containers/image) finds only OCI-typed descriptors in index.json: a
            // Docker manifest is named through an OCI index holding it, unchanged.
            let manifest: ImageManifest = parse(item, &root, &bytes)?;
            let platform = self.work.read_small(&manifest.config.digest)?.and_then(|b| serde_json::from_slice::<Platform>(&b).ok());
            let child = Descriptor { platform, annotations: None, ..root.clone() };
            return self.wrap(&root, vec![child], None);
        }
        let index: ImageIndex = parse(item, &root, &bytes)?;
        let mut chosen: Vec<(String, &Descriptor)> = Vec::new();
        for m in &index.manifests {
            let Some(key) = m.platform.as_ref().map(platform_key) else { continue };
            if self.platforms.contains(&key) && !chosen.iter().any(|(k, _)| *k == key) {
                chosen.push((key, m));
            }
        }
        if chosen.is_empty() {
            let offered: Vec<String> = index.manifests.iter().filter_map(|m| m.platform.as_ref().map(platform_key)).collect();
            return Err(BundleError::NoPlatform {
                artifact: item.ref_name.clone(),
                wanted: self.platforms.join(","),
                offered: offered.join(","),
            });
        }
        for wanted in self.platforms {
            if !chosen.iter().any(|(k, _)| k == wanted) {
                self.warn(format!("{} has no {wanted} image; bundled without it", item.ref_name));
            }
        }
        for (key, m) in &chosen {
            if let Some(expected) = locked.get(key)
                && *expected != m.digest.to_string()
            {
                return Err(BundleError::LockMismatch {
                    artifact: item.ref_name.clone(),
                    reason: format!("its {key} manifest is {}, the lock pins {expected}", m.digest),
                });
            }
            let child = self.manifest(item, &repo, m).await?;
            self.manifest_content(item, &repo, m, &child).await?;
        }
        let keys: Vec<&str> = chosen.iter().map(|(k, _)| k.as_str()).collect();
        let keys = keys.join(",");
        if media_type == DOCKER_MANIFEST_LIST {
            // As for a Docker manifest: an OCI index names the bundled platforms' manifests
            // (so skopeo can pick one) and holds the original list, unchanged.
            let mut children: Vec<Descriptor> = chosen.iter().map(|(_, m)| (*m).clone()).collect();
            let mut original = Descriptor::new(&root.media_type, root.digest.clone(), root.size);
            original.annotations = Some(BTreeMap::from([(ORIGINAL_ANNOTATION.to_owned(), "true".to_owned())]));
            children.push(original);
            return self.wrap(&root, children, Some(keys));
        }
        root.annotations.get_or_insert_with(BTreeMap::new).insert(PLATFORMS_ANNOTATION.into(), keys);
        Ok(root)
    }

    /// A chart of an OCI registry: its manifest (which must be an OCI manifest with Helm's
    /// config media type), then its config and layers, as they are. No platform applies: a
    /// chart is never an index, and its config is not an image config.
    async fn oci_chart(&mut self, item: &Item, name: &ImageName) -> Result<Descriptor, BundleError> {
        let repo = format!("{}/{}", name.registry, name.repository);
        let (root, bytes) = match self.root(item, name).await {
            Ok(found) => found,
            Err(e) => return Err(self.pinned_but_absent(item, name, e).await),
        };
        let not_a_chart = |what: String| BundleError::LockMismatch {
            artifact: item.ref_name.clone(),
            reason: format!("the lock names a Helm chart, but {} is {what}", root.digest),
        };
        if root.media_type != OCI_MANIFEST {
            return Err(not_a_chart(format!("a {}", root.media_type)));
        }
        let manifest: ImageManifest = parse(item, &root, &bytes)?;
        if manifest.config.media_type != HELM_CONFIG {
            return Err(not_a_chart(format!("a manifest whose config is {} (a chart's is {HELM_CONFIG})", manifest.config.media_type)));
        }
        if !manifest.layers.iter().any(|l| l.media_type == HELM_CHART_CONTENT) {
            return Err(not_a_chart(format!("a Helm manifest without a {HELM_CHART_CONTENT} layer")));
        }
        self.manifest_content(item, &repo, &root, &bytes).await?;
        Ok(root)
    }

    /// `error` from fetching `name` by its pinned digest; or, when its tag names another
    /// manifest now, [`BundleError::LockMismatch`] with both digests and the registry's
    /// answer. (A registry that lacks the digest answers 404; docker-registry answers 500
    /// for the digest of a blob that is not a manifest, such as the chart's package.) Bytes
    /// that did not match the digest stay a fetch error: that is the registry's fault.
    async fn pinned_but_absent(&mut self, item: &Item, name: &ImageName, error: BundleError) -> BundleError {
        let BundleError::Fetch { source, .. } = &error else { return error };
        let (Some(pinned), false) = (&name.digest, matches!(**source, ClientError::DigestMismatch { .. })) else { return error };
        let tag = ImageName { digest: None, ..name.clone() };
        match self.client.head_digest(&tag.to_string()).await {
            Ok(now) if now != pinned.to_string() => BundleError::LockMismatch {
                artifact: item.ref_name.clone(),
                reason: format!(
                    "the lock pins {pinned}, but the tag names {now} (asked for {pinned}: {})",
                    crate::bundle::chain(source.as_ref())
                ),
            },
            _ => error,
        }
    }

    /// An OCI index over `children`, stored; its descriptor carries `root`'s annotations.
    fn wrap(&mut self, root: &Descriptor, children: Vec<Descriptor>, platforms: Option<String>) -> Result<Descriptor, BundleError> {
        let wrapper = ImageIndex {
            manifests: children,
            annotations: Some(BTreeMap::from([(DIGEST_ANNOTATION.to_owned(), root.digest.to_string())])),
            ..ImageIndex::empty()
        };
        let bytes = serde_json::to_vec(&wrapper).unwrap_or_default();
        let digest = self.work.put_bytes(&bytes)?;
        let mut desc = Descriptor::new(OCI_INDEX, digest, bytes.len() as u64);
        desc.annotations = root.annotations.clone();
        if let Some(platforms) = platforms {
            desc.annotations.get_or_insert_with(BTreeMap::new).insert(PLATFORMS_ANNOTATION.into(), platforms);
        }
        Ok(desc)
    }

    /// Downloads into `tmp/` with `download`, then commits; `expected` lets a previous
    /// run's blob stand.
    async fn content<F, Fut>(&mut self, item: &Item, expected: Option<&str>, download: F) -> Result<Descriptor, BundleError>
    where
        F: FnOnce(PathBuf) -> Fut,
        Fut: std::future::Future<Output = Result<crate::http::Fetched, crate::error::ClientError>>,
    {
        if let Some(expected) = expected {
            let d = digest(&item.ref_name, expected)?;
            if self.work.has_blob(&d, None)? {
                let size = self.work.blob_size(&d).map_err(BundleError::io("read", &self.work.blob_path(&d)))?.unwrap_or(0);
                self.reused += 1;
                (self.progress)(Event::Blob { digest: d.clone(), size, reused: true });
                return Ok(Descriptor::new(GENERIC_CONTENT, d, size));
            }
        }
        let tmp = self.work.root().join("tmp").join("download.part");
        let fetched = match download(tmp.clone()).await {
            Ok(f) => f,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(Self::fetch_error(item)(e));
            }
        };
        let d = digest(&item.ref_name, &fetched.digest)?;
        std::fs::rename(&tmp, self.work.blob_path(&d)).map_err(BundleError::io("rename", &tmp))?;
        self.fetched += 1;
        self.bytes += fetched.size;
        (self.progress)(Event::Blob { digest: d.clone(), size: fetched.size, reused: false });
        (self.progress)(Event::Bytes(self.bytes));
        Ok(Descriptor::new(GENERIC_CONTENT, d, fetched.size))
    }

    /// Stores an artifact manifest over `config` and one `layer`; returns its descriptor.
    fn artifact(&mut self, manifest: &ImageManifest) -> Result<Descriptor, BundleError> {
        let bytes = serde_json::to_vec(manifest).unwrap_or_default();
        let d = self.work.put_bytes(&bytes)?;
        Ok(Descriptor::new(OCI_MANIFEST, d, bytes.len() as u64))
    }

    async fn chart(
        &mut self,
        item: &Item,
        repository: &str,
        name: &str,
        version: &str,
        locked: Option<&str>,
    ) -> Result<Descriptor, BundleError> {
        let client = self.client;
        let content = self
            .content(item, locked, |tmp| async move {
                let chart = client.find_chart(repository, name, version).await?;
                let file = tokio::fs::File::create(&tmp)
                    .await
                    .map_err(|source| crate::error::ClientError::Write { url: chart.url.clone(), source })?;
                let mut sink = tokio::io::BufWriter::new(file);
                client.download_chart(&chart, locked, &mut sink).await
            })
            .await?;
        // Stored as `helm push` would push it (crate::chart): the config is the package's
        // Chart.yaml, read from the blob just stored.
        let path = self.work.blob_path(&content.digest);
        let package = std::fs::File::open(&path).map_err(BundleError::io("read", &path))?;
        let chart = crate::chart::chart_artifact(name, version, std::io::BufReader::new(package), content.digest, content.size)?;
        self.work.put_bytes(&chart.config)?;
        let digest = self.work.put_bytes(&chart.manifest)?;
        let mut desc = Descriptor::new(OCI_MANIFEST, digest, chart.manifest.len() as u64);
        desc.annotations = Some(BTreeMap::from([(SOURCE_ANNOTATION.to_owned(), format!("{repository} {name} {version}"))]));
        Ok(desc)
    }

    async fn file(&mut self, item: &Item, url: &str, locked: Option<&str>) -> Result<Descriptor, BundleError> {
        let client = self.client;
        let content = self
            .content(item, locked, |tmp| async move {
                let file = tokio::fs::File::create(&tmp)
                    .await
                    .map_err(|source| crate::error::ClientError::Write { url: url.to_owned(), source })?;
                let mut sink = tokio::io::BufWriter::new(file);
                client.fetch(url, locked, &mut sink).await
            })
            .await?;
        let empty = self.work.put_bytes(b"{}")?;
        let title = url_path(url).rsplit('/').next().unwrap_or("file").to_owned();
        let mut layer = Descriptor::new(GENERIC_CONTENT, content.digest, content.size);
        layer.annotations = Some(BTreeMap::from([(TITLE_ANNOTATION.to_owned(), title)]));
        let manifest = ImageManifest {
            schema_version: 2,
            media_type: Some(OCI_MANIFEST.into()),
            artifact_type: Some(FILE_ARTIFACT_TYPE.into()),
            config: Descriptor::new(OCI_EMPTY, empty, 2),
            layers: vec![layer],
            subject: None,
            annotations: Some(BTreeMap::from([(SOURCE_ANNOTATION.to_owned(), url.to_owned())])),
        };
        let mut desc = self.artifact(&manifest)?;
        desc.artifact_type = Some(FILE_ARTIFACT_TYPE.into());
        desc.annotations = Some(BTreeMap::from([(SOURCE_ANNOTATION.to_owned(), url.to_owned())]));
        Ok(desc)
    }
}

fn parse<T: serde::de::DeserializeOwned>(item: &Item, desc: &Descriptor, bytes: &[u8]) -> Result<T, BundleError> {
    serde_json::from_slice(bytes).map_err(|source| BundleError::Manifest {
        artifact: item.ref_name.clone(),
        digest: desc.digest.to_string(),
        media_type: desc.media_type.clone(),
        source,
    })
}

/// The `mediaType` a stored manifest declares (what its registry served it as).
fn media_type_of(bytes: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Typed {
        #[serde(default)]
        media_type: Option<String>,
        #[serde(default)]
        manifests: Option<serde_json::Value>,
    }
    match serde_json::from_slice::<Typed>(bytes) {
        Ok(Typed { media_type: Some(m), .. }) => m,
        Ok(Typed { manifests: Some(_), .. }) => idp_core::oci::OCI_INDEX.to_owned(),
        _ => OCI_MANIFEST.to_owned(),
    }
}

/// A sink that counts what passes and reports the run's cumulative bytes.
struct Counting<'a, W> {
    inner: W,
    base: u64,
    written: u64,
    progress: &'a mut dyn FnMut(Event),
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Counting<'_, W> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &poll {
            this.written += *n as u64;
            (this.progress)(Event::Bytes(this.base + this.written));
        }
        poll
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Whether `path` looks like a work directory of an interrupted run of `out`.
pub fn has_partial(out: &Path) -> bool {
    with_suffix(out, ".partial").join("oci-layout").is_file()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_full_references() {
        let i = image_item("nginx:1.27", "web").expect("parses");
        assert_eq!(i.ref_name, "docker.io/library/nginx:1.27");
        assert_eq!(image_item("127.0.0.1:5000/a/b", "x").expect("latest").ref_name, "127.0.0.1:5000/a/b:latest");
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(image_item(&format!("ghcr.io/a/b@{d}"), "x").expect("digest").ref_name, format!("ghcr.io/a/b@{d}"));
        assert!(matches!(image_item("../etc/passwd", "x"), Err(BundleError::Invalid { .. })));
        assert_eq!(
            chart_ref_name("https://charts.jetstack.io/", "cert-manager", "v1.19.0").expect("chart"),
            "charts.jetstack.io/cert-manager:v1.19.0"
        );
        assert_eq!(chart_ref_name("http://127.0.0.1:8080", "demo", "1.0.0+build.1").expect("plus"), "127.0.0.1:8080/demo:1.0.0_build.1");
        assert!(chart_ref_name("https://x.example", "Demo!", "1").is_err());
        // A chart of an OCI registry is named by its own reference.
        assert_eq!(chart_ref_name("oci://ghcr.io/org/charts/", "demo", "1.0.0+b.1").expect("oci"), "ghcr.io/org/charts/demo:1.0.0_b.1");
        assert_eq!(chart_ref_name("oci://127.0.0.1:5000", "demo", "1").expect("no path"), "127.0.0.1:5000/demo:1");
        assert!(chart_ref_name("oci://ghcr.io/Org", "demo", "1").is_err());
        assert_eq!(
            file_ref_name("https://github.com/k/gateway-api/releases/download/v1.2.1/standard-install.yaml?x=1", Some(&d)).expect("file"),
            format!("github.com/k/gateway-api/releases/download/v1.2.1/standard-install.yaml:sha256-{}", "a".repeat(64))
        );
        assert!(file_ref_name("https://x.example/a/../b", None).is_err());
    }

    #[test]
    fn platforms_are_checked() {
        assert!(check_platforms(&["linux/amd64".into()]).is_ok());
        assert!(matches!(check_platforms(&["linux/s390x".into()]), Err(BundleError::Platform { .. })));
        assert!(check_platforms(&[]).is_err());
    }

    #[test]
    fn duplicates_merge_their_owners() {
        let mut items = Vec::new();
        merge(&mut items, image_item("nginx:1", "a").expect("ok"));
        merge(&mut items, image_item("docker.io/library/nginx:1", "b").expect("ok"));
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].owners, ["a", "b"]);
    }
}
