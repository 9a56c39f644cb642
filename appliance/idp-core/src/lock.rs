//! The lock (`embedded/lock.yaml`): every artifact the catalogue needs, pinned by digest.
//!
//! Per component (its chart, its upstream files, its images) and per cluster flavor (the
//! node image and k3s' air-gap images). A profile's set is computed, never written down:
//! [`Lock::select`] walks the components the configuration enables and the flavor it runs.
//! An entry that nobody could resolve yet is `unverified`, with the reason; `idp-lab lock
//! update` resolves what it can reach on a connected machine.
//!
//! Pure: parsing (with positioned diagnostics), selection, coverage, and the canonical
//! YAML form that `lock update` writes.

use crate::assets::{self, Embedded};
use crate::catalogue::{Catalogue, Component};
use crate::config::{Config, Flavor};
use crate::diag::{Diagnostic, Origin, did_you_mean};
use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// The lock's path inside `embedded/`.
pub const LOCK_PATH: &str = "lock.yaml";

/// The lock format this build reads and writes.
pub const LOCK_VERSION: u32 = 1;

/// The platforms a bundle may carry; `lock update` records a manifest digest for each one
/// an image provides.
pub const PLATFORMS: [&str; 2] = ["linux/amd64", "linux/arm64"];

/// The lock: what every profile may need, per component and per cluster flavor.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Lock {
    /// Per cluster flavor (`k3s`): the node image and the images k3s needs before any
    /// registry is reachable.
    pub cluster: BTreeMap<String, ClusterLock>,
    /// Per catalogue component.
    pub components: BTreeMap<String, ComponentLock>,
}

/// The images a cluster flavor needs itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterLock {
    /// The node image (`rancher/k3s`).
    pub node: ImageLock,
    /// Images the nodes import from their images directory at boot (pause, CoreDNS,
    /// local-path-provisioner, metrics-server, klipper-helm, ...).
    pub airgap: Vec<ImageLock>,
}

/// The artifacts of one catalogue component.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ComponentLock {
    /// Its chart.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chart: Option<ChartLock>,
    /// Its upstream files, in the catalogue's order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileLock>,
    /// Its images, in `images/<component>.txt` order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<ImageLock>,
}

impl ComponentLock {
    /// Whether it locks nothing (such a component is left out of the file).
    pub fn is_empty(&self) -> bool {
        self.chart.is_none() && self.files.is_empty() && self.images.is_empty()
    }
}

/// A pinned image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageLock {
    /// `registry/repository:tag`, fully qualified.
    pub reference: String,
    /// `sha256:<hex>` of what the reference resolves to: an index for multi-platform
    /// images, else the one manifest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The manifest digest of each platform in [`PLATFORMS`] the image provides.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub platforms: BTreeMap<String, String>,
    /// Where the digests came from, when not from `lock update`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Why the entry is not fully resolved; `None` means verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unverified: Option<String>,
}

/// A pinned Helm chart: from a Helm HTTP repository (`index.yaml` and a `.tgz`), or from
/// an OCI registry (`repository: oci://<registry>[/<path>]`, as Helm 3.8+ and Argo CD
/// name one), where the chart is the OCI artifact [`ChartLock::oci_reference`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChartLock {
    /// The repository: an http(s) URL (where `index.yaml` is), or
    /// `oci://<registry>[/<path>]`.
    pub repository: String,
    /// The chart name.
    pub name: String,
    /// The chart version.
    pub version: String,
    /// The package's URL as the repository's index gives it. HTTP repositories only: an
    /// OCI chart has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// `sha256:<hex>`. For an HTTP repository, of the packaged chart (`.tgz`). For an OCI
    /// repository, of the chart's **manifest** (what its tag resolves to; the `.tgz` is
    /// that manifest's one layer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Where the digest came from, when not from `lock update`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Why the entry is not resolved; `None` means verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unverified: Option<String>,
}

/// The scheme of a chart repository that is an OCI registry.
pub const OCI_SCHEME: &str = "oci://";

impl ChartLock {
    /// Whether the chart comes from an OCI registry (`repository: oci://...`).
    pub fn is_oci(&self) -> bool {
        self.repository.starts_with(OCI_SCHEME)
    }

    /// The chart's OCI reference, `<registry>/<path>/<name>:<tag>` (see
    /// [`oci_chart_reference`]); `None` for a chart of an HTTP repository. `lock update`,
    /// `bundle create` and the bundle's `index.json` all name the chart by it.
    pub fn oci_reference(&self) -> Option<String> {
        oci_chart_reference(&self.repository, &self.name, &self.version)
    }
}

/// The OCI reference of chart `name` `version` in `repository` = `oci://<registry>[/<path>]`:
/// `<registry>/<path>/<name>:<tag>`, the tag being the version with `+` written `_` (as
/// Helm pushes it), in [`crate::oci::ImageName`]'s form (Docker Hub's aliases folded into
/// `docker.io`). `None` when `repository` is not `oci://`. [`Lock::parse`] checks that a
/// lock's charts have one that parses; for other input, the text is returned as is when it
/// does not parse.
///
/// ```
/// use idp_core::lock::oci_chart_reference;
///
/// let r = oci_chart_reference("oci://ghcr.io/org/charts", "demo", "1.0.0+build.1");
/// assert_eq!(r.as_deref(), Some("ghcr.io/org/charts/demo:1.0.0_build.1"));
/// assert_eq!(oci_chart_reference("https://charts.example.org", "demo", "1.0.0"), None);
/// ```
pub fn oci_chart_reference(repository: &str, name: &str, version: &str) -> Option<String> {
    let rest = repository.strip_prefix(OCI_SCHEME)?.trim_end_matches('/');
    let text = format!("{rest}/{name}:{}", version.replace('+', "_"));
    Some(crate::oci::ImageName::parse(&text).map_or(text, |n| n.to_string()))
}

/// A pinned upstream file (a CRD manifest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileLock {
    /// Where it is fetched from.
    pub url: String,
    /// Its sha256, lowercase hex (as in `component.yaml`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Where the digest came from, when not from `lock update`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Why the entry is not resolved; `None` means verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unverified: Option<String>,
}

/// Who needs an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(tag = "kind", content = "name", rename_all = "lowercase")]
pub enum Owner<'a> {
    /// A cluster flavor's node image.
    Node(&'a str),
    /// A cluster flavor's air-gap images.
    Airgap(&'a str),
    /// A catalogue component.
    Component(&'a str),
}

impl fmt::Display for Owner<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Owner::Node(flavor) => write!(f, "{flavor} node"),
            Owner::Airgap(flavor) => write!(f, "{flavor} air-gap"),
            Owner::Component(name) => f.write_str(name),
        }
    }
}

/// One locked artifact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "type", content = "lock", rename_all = "lowercase")]
pub enum Artifact<'a> {
    /// An image.
    Image(&'a ImageLock),
    /// A Helm chart.
    Chart(&'a ChartLock),
    /// An upstream file.
    File(&'a FileLock),
}

/// A lock entry with its owner: what [`Lock::entries`] and [`Lock::select`] return.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Entry<'a> {
    /// Who needs it.
    pub owner: Owner<'a>,
    /// What it is.
    pub artifact: Artifact<'a>,
}

impl<'a> Entry<'a> {
    /// Why the entry is not verified; `None` when it is.
    pub fn unverified(&self) -> Option<&'a str> {
        match self.artifact {
            Artifact::Image(i) => i.unverified.as_deref(),
            Artifact::Chart(c) => c.unverified.as_deref(),
            Artifact::File(f) => f.unverified.as_deref(),
        }
    }

    /// `image`, `chart` or `file`.
    pub fn kind(&self) -> &'static str {
        match self.artifact {
            Artifact::Image(_) => "image",
            Artifact::Chart(_) => "chart",
            Artifact::File(_) => "file",
        }
    }

    /// What the entry pins, in one string: the image reference, `repository name version`,
    /// or the file URL.
    pub fn name(&self) -> String {
        match self.artifact {
            Artifact::Image(i) => i.reference.clone(),
            Artifact::Chart(c) => format!("{} {} {}", c.repository, c.name, c.version),
            Artifact::File(f) => f.url.clone(),
        }
    }

    /// The pinned digest (`sha256:<hex>`), when there is one.
    pub fn digest(&self) -> Option<String> {
        match self.artifact {
            Artifact::Image(i) => i.digest.clone(),
            Artifact::Chart(c) => c.digest.clone(),
            Artifact::File(f) => f.sha256.as_ref().map(|h| format!("sha256:{h}")),
        }
    }
}

/// Something a configuration needs from the lock.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Need {
    /// An image, by fully qualified reference.
    Image {
        /// The reference.
        reference: String,
    },
    /// A chart at pinned coordinates (after `[versions]` overrides).
    Chart {
        /// The repository URL.
        repository: String,
        /// The chart name.
        name: String,
        /// The version.
        version: String,
    },
    /// An upstream file; `sha256` is what the catalogue pins (`None`: `unverified` there).
    File {
        /// The URL.
        url: String,
        /// The catalogue's sha256.
        sha256: Option<String>,
    },
    /// The air-gap image set of a cluster flavor.
    Airgap {
        /// The flavor.
        flavor: String,
    },
}

impl fmt::Display for Need {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Need::Image { reference } => write!(f, "image {reference}"),
            Need::Chart { repository, name, version } => write!(f, "chart {name} {version} from {repository}"),
            Need::File { url, .. } => write!(f, "file {url}"),
            Need::Airgap { flavor } => write!(f, "the {flavor} air-gap images"),
        }
    }
}

/// A need with the owner it is for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Requirement {
    /// `node:<flavor>`, `airgap:<flavor>` or the component name.
    pub owner: String,
    /// What is needed.
    pub need: Need,
}

/// A requirement the lock does not satisfy, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Missing {
    /// The requirement.
    pub requirement: Requirement,
    /// Why it is not satisfied (absent, or pinned differently), with what to do.
    pub why: String,
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.requirement.owner, self.requirement.need, self.why)
    }
}

/// The lock entries one configuration needs, and what the lock lacks for it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Selection<'a> {
    /// The entries, in lock order (cluster first, then components by name).
    pub entries: Vec<Entry<'a>>,
    /// Requirements without a matching entry.
    pub missing: Vec<Missing>,
}

/// A broken lock file: every problem found, each with file, line, column, field and a fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .diagnostics.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct LockError {
    /// The problems, in file order.
    pub diagnostics: Vec<Diagnostic>,
}

impl Lock {
    /// Loads the embedded `embedded/lock.yaml`.
    pub fn embedded() -> Result<Lock, LockError> {
        let name = format!("embedded/{LOCK_PATH}");
        let Some(text) = assets::text::<Embedded>(LOCK_PATH) else {
            let diagnostic = Diagnostic {
                origin: Origin::File(name),
                line: 1,
                column: 1,
                path: String::new(),
                message: "missing or not UTF-8".into(),
                hint: Some("the build embeds embedded/lock.yaml; restore it from version control".into()),
            };
            return Err(LockError { diagnostics: vec![diagnostic] });
        };
        Lock::parse(&text, &name)
    }

    /// Parses and checks a lock file; `file` is the name shown in diagnostics.
    pub fn parse(text: &str, file: &str) -> Result<Lock, LockError> {
        let raw: RawLock = match serde_saphyr::from_str(text) {
            Ok(raw) => raw,
            Err(e) => return Err(LockError { diagnostics: vec![syntax_diagnostic(text, file, &e)] }),
        };
        let mut checker = Checker { file, diagnostics: Vec::new() };
        let lock = checker.lock(raw);
        if checker.diagnostics.is_empty() { Ok(lock) } else { Err(LockError { diagnostics: checker.diagnostics }) }
    }

    /// Every entry, in lock order: per flavor the node then the air-gap images, then per
    /// component (by name) the chart, the files and the images.
    pub fn entries(&self) -> Vec<Entry<'_>> {
        let mut out = Vec::new();
        for (flavor, cluster) in &self.cluster {
            out.push(Entry { owner: Owner::Node(flavor), artifact: Artifact::Image(&cluster.node) });
            out.extend(cluster.airgap.iter().map(|i| Entry { owner: Owner::Airgap(flavor), artifact: Artifact::Image(i) }));
        }
        for (name, c) in &self.components {
            let owner = Owner::Component(name);
            out.extend(c.chart.iter().map(|ch| Entry { owner, artifact: Artifact::Chart(ch) }));
            out.extend(c.files.iter().map(|f| Entry { owner, artifact: Artifact::File(f) }));
            out.extend(c.images.iter().map(|i| Entry { owner, artifact: Artifact::Image(i) }));
        }
        out
    }

    /// The entries one configuration needs (see [`Lock::select`]).
    pub fn for_profile(&self, config: &Config, catalogue: &Catalogue) -> Vec<Entry<'_>> {
        self.select(config, catalogue).entries
    }

    /// What one configuration needs from the lock: the node image and air-gap images of its
    /// flavor, and the chart, upstream files and images of every component it enables; with
    /// every requirement the lock does not satisfy.
    pub fn select(&self, config: &Config, catalogue: &Catalogue) -> Selection<'_> {
        let mut chosen: Vec<Entry<'_>> = Vec::new();
        let mut missing = Vec::new();
        for requirement in requirements(config, catalogue) {
            match self.satisfy(&requirement) {
                Ok(entries) => chosen.extend(entries),
                Err(why) => missing.push(Missing { requirement, why }),
            }
        }
        // Lock order, each entry once.
        let entries = self.entries().into_iter().filter(|e| chosen.iter().any(|c| same_entry(c, e))).collect();
        Selection { entries, missing }
    }

    /// Entries that none of `configs` needs (stale: left over from a removed image, chart
    /// version or component).
    pub fn stale<'a>(&'a self, configs: &[Config], catalogue: &Catalogue) -> Vec<Entry<'a>> {
        let needed: Vec<Entry<'a>> = configs.iter().flat_map(|c| self.for_profile(c, catalogue)).collect();
        self.entries().into_iter().filter(|e| !needed.iter().any(|n| same_entry(n, e))).collect()
    }

    fn satisfy(&self, requirement: &Requirement) -> Result<Vec<Entry<'_>>, String> {
        let owner = requirement.owner.as_str();
        match &requirement.need {
            Need::Image { reference } => {
                if let Some(flavor) = owner.strip_prefix("node:") {
                    let (flavor, cluster) = self
                        .cluster
                        .get_key_value(flavor)
                        .ok_or_else(|| format!("the lock has no `cluster.{flavor}`; add it with its node image"))?;
                    if normalize_reference(&cluster.node.reference) != *reference {
                        return Err(format!(
                            "the lock's {flavor} node image is {}; lock this one too, or use the pinned image",
                            cluster.node.reference
                        ));
                    }
                    return Ok(vec![Entry { owner: Owner::Node(flavor), artifact: Artifact::Image(&cluster.node) }]);
                }
                let (name, c) = self.component(owner)?;
                c.images
                    .iter()
                    .find(|i| normalize_reference(&i.reference) == *reference)
                    .map(|i| vec![Entry { owner: Owner::Component(name), artifact: Artifact::Image(i) }])
                    .ok_or_else(|| format!("not in the lock; add it under `components.{owner}.images`"))
            }
            Need::Chart { repository, name: chart, version } => {
                let (name, c) = self.component(owner)?;
                match &c.chart {
                    Some(ch) if same_repository(&ch.repository, repository) && ch.name == *chart && ch.version == *version => {
                        Ok(vec![Entry { owner: Owner::Component(name), artifact: Artifact::Chart(ch) }])
                    }
                    Some(ch) => Err(format!(
                        "the lock pins {} {} from {}; lock this version (`idp-lab lock update` after editing `components.{owner}.chart`)",
                        ch.name, ch.version, ch.repository
                    )),
                    None => Err(format!("not in the lock; add `components.{owner}.chart`")),
                }
            }
            Need::File { url, sha256 } => {
                let (name, c) = self.component(owner)?;
                let Some(f) = c.files.iter().find(|f| f.url == *url) else {
                    return Err(format!("not in the lock; add it under `components.{owner}.files`"));
                };
                if f.sha256 != *sha256 {
                    let show = |s: &Option<String>| s.clone().unwrap_or_else(|| "unverified".into());
                    return Err(format!(
                        "the lock says sha256 {} but component.yaml says {}; make them agree (the lock is what `lock update` measured)",
                        show(&f.sha256),
                        show(sha256)
                    ));
                }
                Ok(vec![Entry { owner: Owner::Component(name), artifact: Artifact::File(f) }])
            }
            Need::Airgap { flavor } => {
                let (flavor, cluster) =
                    self.cluster.get_key_value(flavor.as_str()).ok_or_else(|| format!("the lock has no `cluster.{flavor}`"))?;
                Ok(cluster.airgap.iter().map(|i| Entry { owner: Owner::Airgap(flavor), artifact: Artifact::Image(i) }).collect())
            }
        }
    }

    fn component(&self, name: &str) -> Result<(&str, &ComponentLock), String> {
        self.components
            .get_key_value(name)
            .map(|(k, v)| (k.as_str(), v))
            .ok_or_else(|| format!("the lock has no `components.{name}`; add it"))
    }

    /// The canonical YAML form: what `lock update` writes and what `embedded/lock.yaml`
    /// Every registry host the lock's images come from (`docker.io`, `quay.io`, ...), as
    /// [`crate::oci::ImageName`] names them: the registries a lab's nodes mirror.
    pub fn registries(&self) -> BTreeSet<String> {
        self.entries()
            .iter()
            .filter_map(|e| match e.artifact {
                Artifact::Image(i) => crate::oci::ImageName::parse(&i.reference).ok().map(|n| n.registry),
                _ => None,
            })
            .collect()
    }

    /// The images the nodes of `config` need before any component installs: the node
    /// image and its flavor's air-gap images, each with what the lock pins. A node image
    /// the lock does not hold (a custom `cluster.image`) is needed unpinned, and then no
    /// air-gap image is known for it beyond the flavor's.
    pub fn cluster_images(&self, config: &Config) -> Vec<Pinned> {
        let Some(flavor) = flavor_key(config.cluster.flavor) else { return Vec::new() };
        let reference = normalize_reference(config.cluster.node_image());
        let cluster = self.cluster.get(flavor);
        let pinned = |owner: String, i: &ImageLock| Pinned {
            owner,
            reference: normalize_reference(&i.reference),
            digest: if i.unverified.is_some() { None } else { i.digest.clone() },
        };
        let mut out = vec![match cluster.filter(|c| normalize_reference(&c.node.reference) == reference) {
            Some(c) => pinned(format!("{flavor} node"), &c.node),
            None => Pinned { owner: format!("{flavor} node"), reference, digest: None },
        }];
        if config.cluster.flavor == Flavor::K3s {
            out.extend(cluster.iter().flat_map(|c| &c.airgap).map(|i| pinned(format!("{flavor} air-gap"), i)));
        }
        out
    }

    /// holds (a test keeps the file in this form).
    pub fn to_yaml(&self) -> String {
        let mut out = String::from(HEADER);
        out.push_str(&format!("version: {LOCK_VERSION}\n"));
        if !self.cluster.is_empty() {
            out.push_str("cluster:\n");
            for (flavor, cluster) in &self.cluster {
                out.push_str(&format!("  {flavor}:\n    node:\n"));
                write_image(&mut out, &cluster.node, "      ", "      ");
                out.push_str("    airgap:\n");
                for image in &cluster.airgap {
                    write_image(&mut out, image, "      - ", "        ");
                }
            }
        }
        if !self.components.is_empty() {
            out.push_str("components:\n");
            for (name, c) in self.components.iter().filter(|(_, c)| !c.is_empty()) {
                out.push_str(&format!("  {name}:\n"));
                if let Some(chart) = &c.chart {
                    out.push_str("    chart:\n");
                    write_chart(&mut out, chart, "      ");
                }
                if !c.files.is_empty() {
                    out.push_str("    files:\n");
                    for f in &c.files {
                        write_file(&mut out, f, "      - ", "        ");
                    }
                }
                if !c.images.is_empty() {
                    out.push_str("    images:\n");
                    for i in &c.images {
                        write_image(&mut out, i, "      - ", "        ");
                    }
                }
            }
        }
        out
    }
}

/// An image an offline `up` needs from the bundle, with the digest the lock pins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pinned {
    /// Who needs it (`k3s node`, `k3s air-gap`, a component).
    pub owner: String,
    /// The reference, fully qualified (`docker.io/rancher/k3s:v1.33.4-k3s1`).
    pub reference: String,
    /// What the lock pins it to; `None` for an unverified entry, or a node image the lock
    /// does not hold (a custom `cluster.image`): then any bundled copy of it is taken.
    pub digest: Option<String>,
}

/// A needed image the bundle does not hold as pinned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Absent {
    /// The image.
    pub image: Pinned,
    /// The digest the bundle holds under that reference, when it holds another one.
    pub bundled: Option<String>,
}

impl fmt::Display for Absent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Pinned { owner, reference, digest } = &self.image;
        match (&self.bundled, digest) {
            (Some(bundled), Some(pinned)) => {
                write!(f, "{reference} ({owner}): the bundle holds {bundled}, the lock pins {pinned}")
            }
            _ => write!(f, "{reference} ({owner}): not in the bundle"),
        }
    }
}

/// Which of `needed` the bundle lacks, given what it holds: `(reference, digest)` of each
/// image artifact, references in any form [`crate::oci::ImageName`] reads.
pub fn absent_from(needed: &[Pinned], bundled: &[(String, String)]) -> Vec<Absent> {
    let held: BTreeMap<String, &str> = bundled
        .iter()
        .filter_map(|(reference, digest)| crate::oci::ImageName::parse(reference).ok().map(|n| (n.to_string(), digest.as_str())))
        .collect();
    needed
        .iter()
        .filter_map(|image| {
            let key = crate::oci::ImageName::parse(&image.reference).map(|n| n.to_string()).unwrap_or_else(|_| image.reference.clone());
            match (held.get(&key), &image.digest) {
                (None, _) => Some(Absent { image: image.clone(), bundled: None }),
                (Some(have), Some(pinned)) if have != pinned => Some(Absent { image: image.clone(), bundled: Some((*have).to_owned()) }),
                _ => None,
            }
        })
        .collect()
}

/// What `config` needs, derived from the catalogue: per enabled component its chart (with
/// the `[versions]` override), upstream files and images; per flavor its node image and,
/// for k3s, the air-gap images.
pub fn requirements(config: &Config, catalogue: &Catalogue) -> Vec<Requirement> {
    let mut out = Vec::new();
    if let Some(flavor) = flavor_key(config.cluster.flavor) {
        let reference = normalize_reference(config.cluster.node_image());
        out.push(Requirement { owner: format!("node:{flavor}"), need: Need::Image { reference } });
        if config.cluster.flavor == Flavor::K3s {
            out.push(Requirement { owner: format!("airgap:{flavor}"), need: Need::Airgap { flavor: flavor.into() } });
        }
    }
    for c in catalogue.enabled(&config.stacks) {
        out.extend(component_requirements(config, c));
    }
    out
}

fn component_requirements(config: &Config, c: &Component) -> Vec<Requirement> {
    let owner = || c.name.clone();
    let mut out = Vec::new();
    if let Some(chart) = &c.chart {
        let version = config.versions.get(&c.name).unwrap_or(&chart.version).clone();
        out.push(Requirement { owner: owner(), need: Need::Chart { repository: chart.repo.clone(), name: chart.name.clone(), version } });
    }
    for up in &c.upstream {
        let sha256 = (up.sha256 != "unverified").then(|| up.sha256.clone());
        out.push(Requirement { owner: owner(), need: Need::File { url: up.url.clone(), sha256 } });
    }
    for image in &c.images {
        out.push(Requirement { owner: owner(), need: Need::Image { reference: normalize_reference(&image.reference) } });
    }
    out
}

/// The lock's key for a flavor; `None` for `existing`, which makes no nodes.
fn flavor_key(flavor: Flavor) -> Option<&'static str> {
    match flavor {
        Flavor::K3s => Some("k3s"),
        Flavor::Kind => Some("kind"),
        Flavor::Existing => None,
    }
}

fn same_entry(a: &Entry<'_>, b: &Entry<'_>) -> bool {
    a.owner == b.owner
        && match (a.artifact, b.artifact) {
            (Artifact::Image(x), Artifact::Image(y)) => std::ptr::eq(x, y),
            (Artifact::Chart(x), Artifact::Chart(y)) => std::ptr::eq(x, y),
            (Artifact::File(x), Artifact::File(y)) => std::ptr::eq(x, y),
            _ => false,
        }
}

fn same_repository(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// A reference with Docker's defaults made explicit: `nginx:1` is
/// `docker.io/library/nginx:1`, `rancher/k3s:v1` is `docker.io/rancher/k3s:v1`.
///
/// A small private stand-in until the OCI name types land; it only qualifies names.
pub fn normalize_reference(reference: &str) -> String {
    let (first, rest) = match reference.split_once('/') {
        Some((first, rest)) => (first, Some(rest)),
        None => (reference, None),
    };
    let is_registry = |s: &str| s.contains('.') || s.contains(':') || s == "localhost";
    match rest {
        None => format!("docker.io/library/{reference}"),
        Some(rest) if !is_registry(first) => format!("docker.io/{first}/{rest}"),
        Some(rest) if first == "docker.io" || first == "index.docker.io" || first == "registry-1.docker.io" => {
            if rest.contains('/') {
                format!("docker.io/{rest}")
            } else {
                format!("docker.io/library/{rest}")
            }
        }
        Some(_) => reference.to_owned(),
    }
}

/// Whether `s` is `sha256:` and 64 lowercase hex digits.
pub fn is_digest(s: &str) -> bool {
    s.strip_prefix("sha256:").is_some_and(is_sha256_hex)
}

/// Whether `s` is 64 lowercase hex digits.
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

const HEADER: &str = "\
# The lock: every artifact the catalogue needs, pinned by digest (docs/catalogue.md).
# Per cluster flavor: the node image and the images k3s imports at boot; per component:
# its chart, upstream files and images. A profile's set is computed from the components
# it enables (`idp-lab lock show`). An entry with `unverified` could not be resolved yet;
# `idp-lab lock update` resolves what it can reach and writes this file back in this form.
";

fn quoted(s: &str) -> String {
    // A JSON string is a valid YAML double-quoted scalar.
    serde_json::Value::String(s.to_owned()).to_string()
}

fn field(out: &mut String, indent: &str, key: &str, value: &str) {
    out.push_str(&format!("{indent}{key}: {}\n", quoted(value)));
}

fn write_image(out: &mut String, i: &ImageLock, first: &str, rest: &str) {
    field(out, first, "reference", &i.reference);
    if let Some(d) = &i.digest {
        field(out, rest, "digest", d);
    }
    if !i.platforms.is_empty() {
        out.push_str(&format!("{rest}platforms:\n"));
        for (platform, digest) in &i.platforms {
            out.push_str(&format!("{rest}  {}: {}\n", quoted(platform), quoted(digest)));
        }
    }
    if let Some(s) = &i.source {
        field(out, rest, "source", s);
    }
    if let Some(u) = &i.unverified {
        field(out, rest, "unverified", u);
    }
}

fn write_chart(out: &mut String, c: &ChartLock, indent: &str) {
    field(out, indent, "repository", &c.repository);
    field(out, indent, "name", &c.name);
    field(out, indent, "version", &c.version);
    if let Some(u) = &c.url {
        field(out, indent, "url", u);
    }
    if let Some(d) = &c.digest {
        field(out, indent, "digest", d);
    }
    if let Some(s) = &c.source {
        field(out, indent, "source", s);
    }
    if let Some(u) = &c.unverified {
        field(out, indent, "unverified", u);
    }
}

fn write_file(out: &mut String, f: &FileLock, first: &str, rest: &str) {
    field(out, first, "url", &f.url);
    if let Some(h) = &f.sha256 {
        field(out, rest, "sha256", h);
    }
    if let Some(s) = &f.source {
        field(out, rest, "source", s);
    }
    if let Some(u) = &f.unverified {
        field(out, rest, "unverified", u);
    }
}

// ---- parsing ------------------------------------------------------------------------

type S<T> = Spanned<T>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLock {
    version: S<u32>,
    #[serde(default)]
    cluster: BTreeMap<String, RawCluster>,
    #[serde(default)]
    components: BTreeMap<String, RawComponent>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    node: RawImage,
    #[serde(default)]
    airgap: Vec<RawImage>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawComponent {
    #[serde(default)]
    chart: Option<RawChart>,
    #[serde(default)]
    files: Vec<RawFile>,
    #[serde(default)]
    images: Vec<RawImage>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawImage {
    reference: S<String>,
    #[serde(default)]
    digest: Option<S<String>>,
    #[serde(default)]
    platforms: BTreeMap<String, S<String>>,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    unverified: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChart {
    repository: S<String>,
    name: S<String>,
    version: S<String>,
    #[serde(default)]
    url: Option<S<String>>,
    #[serde(default)]
    digest: Option<S<String>>,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    unverified: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    url: S<String>,
    #[serde(default)]
    sha256: Option<S<String>>,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    unverified: Option<S<String>>,
}

struct Checker<'f> {
    file: &'f str,
    diagnostics: Vec<Diagnostic>,
}

const UNVERIFIED_HINT: &str = "run `idp-lab lock update` on a connected machine, or mark the entry `unverified: <why>`";

impl Checker<'_> {
    fn report<T>(&mut self, at: &S<T>, path: &str, message: impl Into<String>, hint: impl Into<String>) {
        self.diagnostics.push(Diagnostic {
            origin: Origin::File(self.file.to_owned()),
            line: usize::try_from(at.referenced.line()).unwrap_or(usize::MAX).max(1),
            column: usize::try_from(at.referenced.column()).unwrap_or(usize::MAX).max(1),
            path: path.to_owned(),
            message: message.into(),
            hint: Some(hint.into()),
        });
    }

    fn lock(&mut self, raw: RawLock) -> Lock {
        if raw.version.value != LOCK_VERSION {
            let message = format!("lock format {} is not the one this build reads ({LOCK_VERSION})", raw.version.value);
            self.report(
                &raw.version,
                "version",
                message,
                "use an idp-lab that matches the lock, or regenerate it with `idp-lab lock update`",
            );
        }
        let cluster = raw
            .cluster
            .into_iter()
            .map(|(flavor, c)| {
                let path = format!("cluster.{flavor}");
                let node = self.image(c.node, &format!("{path}.node"));
                let airgap = c.airgap.into_iter().enumerate().map(|(i, img)| self.image(img, &format!("{path}.airgap[{i}]"))).collect();
                (flavor, ClusterLock { node, airgap })
            })
            .collect();
        let components = raw
            .components
            .into_iter()
            .map(|(name, c)| {
                let path = format!("components.{name}");
                let chart = c.chart.map(|ch| self.chart(ch, &format!("{path}.chart")));
                let files = c.files.into_iter().enumerate().map(|(i, f)| self.file(f, &format!("{path}.files[{i}]"))).collect();
                let images = c.images.into_iter().enumerate().map(|(i, img)| self.image(img, &format!("{path}.images[{i}]"))).collect();
                (name, ComponentLock { chart, files, images })
            })
            .collect();
        Lock { cluster, components }
    }

    fn reason(&mut self, unverified: &Option<S<String>>, path: &str) -> Option<String> {
        let u = unverified.as_ref()?;
        if u.value.trim().is_empty() {
            self.report(
                u,
                &format!("{path}.unverified"),
                "an unverified entry needs a reason",
                "say why it is not resolved, e.g. \"no registry access when written\"",
            );
        }
        Some(u.value.clone())
    }

    fn digest(&mut self, d: &Option<S<String>>, path: &str) -> Option<String> {
        let d = d.as_ref()?;
        if !is_digest(&d.value) {
            self.report(d, path, format!("{:?} is not a sha256 digest", d.value), "write `sha256:` followed by 64 lowercase hex digits");
        }
        Some(d.value.clone())
    }

    fn image(&mut self, raw: RawImage, path: &str) -> ImageLock {
        let reference = raw.reference.value.clone();
        let qualified = normalize_reference(&reference);
        if !crate::catalogue::is_pinned_reference(&reference) || qualified != reference {
            let hint = if crate::catalogue::is_pinned_reference(&qualified) {
                format!("write it fully qualified: {qualified:?}")
            } else {
                "write registry/repository:tag with a version tag (not latest)".to_owned()
            };
            self.report(
                &raw.reference,
                &format!("{path}.reference"),
                format!("{reference:?} is not a fully qualified, pinned reference"),
                hint,
            );
        }
        let digest = self.digest(&raw.digest, &format!("{path}.digest"));
        let mut platforms = BTreeMap::new();
        for (platform, d) in raw.platforms {
            let at = format!("{path}.platforms.{platform}");
            if !is_platform(&platform) {
                self.report(
                    &d,
                    &at,
                    format!("{platform:?} is not a platform"),
                    format!("use os/architecture, one of {}", PLATFORMS.join(", ")),
                );
            }
            platforms.insert(platform, self.digest(&Some(d), &at).unwrap_or_default());
        }
        let unverified = self.reason(&raw.unverified, path);
        if unverified.is_none() && (digest.is_none() || platforms.is_empty()) {
            self.report(&raw.reference, path, "a verified image needs `digest` and `platforms`", UNVERIFIED_HINT);
        }
        ImageLock { reference, digest, platforms, source: raw.source, unverified }
    }

    fn chart(&mut self, raw: RawChart, path: &str) -> ChartLock {
        let oci = raw.repository.value.starts_with(OCI_SCHEME);
        let mut repository_ok = true;
        if oci {
            repository_ok = self.oci_repository(&raw.repository, path);
        } else if !is_url(&raw.repository.value) {
            self.report(
                &raw.repository,
                &format!("{path}.repository"),
                format!("{:?} is not an http(s) URL or an oci:// registry", raw.repository.value),
                REPOSITORY_HINT,
            );
        }
        let mut coordinates_ok = true;
        for (v, key) in [(&raw.name, "name"), (&raw.version, "version")] {
            if v.value.trim().is_empty() || v.value.contains(char::is_whitespace) {
                coordinates_ok = false;
                let hint = if oci {
                    format!("write the chart's {key} as in its Chart.yaml")
                } else {
                    format!("write the chart's {key} as in the repository's index.yaml")
                };
                self.report(v, &format!("{path}.{key}"), format!("{key} {:?} is empty or has spaces", v.value), hint);
            }
        }
        if oci && repository_ok && coordinates_ok {
            self.oci_coordinates(&raw, path);
        }
        match &raw.url {
            Some(u) if oci => {
                let hint = match oci_chart_reference(&raw.repository.value, &raw.name.value, &raw.version.value) {
                    Some(reference) if repository_ok && coordinates_ok => {
                        format!("remove `url`: the chart is the OCI artifact {reference}")
                    }
                    _ => "remove `url`: a chart of an OCI registry is pulled from the registry".to_owned(),
                };
                self.report(u, &format!("{path}.url"), "a chart of an OCI registry has no package URL", hint);
            }
            Some(u) if !is_url(&u.value) => {
                self.report(u, &format!("{path}.url"), format!("{:?} is not an http(s) URL", u.value), URL_HINT);
            }
            _ => {}
        }
        let digest = self.digest(&raw.digest, &format!("{path}.digest"));
        let unverified = self.reason(&raw.unverified, path);
        if unverified.is_none() && digest.is_none() {
            self.report(&raw.name, path, "a verified chart needs `digest`", UNVERIFIED_HINT);
        }
        ChartLock {
            repository: raw.repository.value,
            name: raw.name.value,
            version: raw.version.value,
            url: raw.url.map(|u| u.value),
            digest,
            source: raw.source,
            unverified,
        }
    }

    /// Checks `oci://<registry>[/<path>]`: the registry named explicitly and in lower case
    /// (as Helm reads the first component, always a host), and the reference of a chart in
    /// it parsing as an [`crate::oci::ImageName`]. Whether it is sound.
    fn oci_repository(&mut self, repository: &S<String>, path: &str) -> bool {
        let at = format!("{path}.repository");
        let rest = repository.value.strip_prefix(OCI_SCHEME).unwrap_or_default().trim_end_matches('/');
        let host = rest.split('/').next().unwrap_or_default();
        let problem = if host.is_empty() {
            Some("names no registry".to_owned())
        } else if host.bytes().any(|b| b.is_ascii_uppercase()) {
            Some(format!("has the registry {host:?} in upper case"))
        } else if !(host.contains(['.', ':']) || host == "localhost") {
            Some(format!(
                "starts with {host:?}, which image references do not read as a registry (it needs a '.' or a ':port', or is localhost)"
            ))
        } else {
            // The repository alone, with a stand-in chart: what fails here is the repository's.
            let probe = format!("{rest}/chart:0");
            match crate::oci::ImageName::parse(&probe) {
                Err(crate::oci::OciError::InvalidReference { reason, .. }) => Some(reason.to_owned()),
                Err(e) => Some(e.to_string()),
                Ok(_) => None,
            }
        };
        let Some(problem) = problem else { return true };
        self.report(repository, &at, format!("{:?} is not an OCI registry path: {problem}", repository.value), OCI_HINT);
        false
    }

    /// Checks that an OCI chart's name and version make an OCI reference (the name a
    /// repository path component, the version, with `+` written `_`, a tag); reports the
    /// field at fault.
    fn oci_coordinates(&mut self, raw: &RawChart, path: &str) {
        let Some(reference) = oci_chart_reference(&raw.repository.value, &raw.name.value, &raw.version.value) else { return };
        if crate::oci::ImageName::parse(&reference).is_ok() {
            return;
        }
        let tag = raw.version.value.replace('+', "_");
        if crate::oci::validate_tag(&tag).is_err() {
            self.report(
                &raw.version,
                &format!("{path}.version"),
                format!("version {:?} is not an OCI tag, even with `+` written `_`", raw.version.value),
                "an OCI chart's version is its tag: at most 128 letters, digits, '.', '_', '-' or '+', starting with a letter, a digit or '_'",
            );
        } else {
            self.report(
                &raw.name,
                &format!("{path}.name"),
                format!("chart name {:?} does not make an OCI reference ({reference:?})", raw.name.value),
                "an OCI chart's name is a repository path component: lowercase letters and digits, separated by '.', '_' or '-'",
            );
        }
    }

    fn file(&mut self, raw: RawFile, path: &str) -> FileLock {
        if !is_url(&raw.url.value) {
            self.report(&raw.url, &format!("{path}.url"), format!("{:?} is not an http(s) URL", raw.url.value), URL_HINT);
        }
        let sha256 = raw.sha256.as_ref().map(|h| {
            if !is_sha256_hex(&h.value) {
                self.report(
                    h,
                    &format!("{path}.sha256"),
                    format!("{:?} is not a sha256", h.value),
                    "write 64 lowercase hex digits (no `sha256:` prefix, as in component.yaml)",
                );
            }
            h.value.clone()
        });
        let unverified = self.reason(&raw.unverified, path);
        if unverified.is_none() && sha256.is_none() {
            self.report(&raw.url, path, "a verified file needs `sha256`", UNVERIFIED_HINT);
        }
        FileLock { url: raw.url.value, sha256, source: raw.source, unverified }
    }
}

const URL_HINT: &str = "write an https:// URL (plain http:// only for 127.0.0.1 or localhost)";

const REPOSITORY_HINT: &str =
    "write an https:// URL (plain http:// only for 127.0.0.1 or localhost), or oci://<registry>[/<path>] for a chart in an OCI registry";

const OCI_HINT: &str = "write oci://<registry>[/<path>] in lower case, e.g. oci://ghcr.io/org/charts: the chart is then the OCI artifact <registry>/<path>/<name>:<version>";

/// `https://...`, or `http://` to a loopback host (test repositories).
fn is_url(s: &str) -> bool {
    if let Some(rest) = s.strip_prefix("https://") {
        return !rest.is_empty() && !rest.contains(char::is_whitespace);
    }
    let Some(rest) = s.strip_prefix("http://") else { return false };
    let host = rest.split('/').next().unwrap_or_default();
    let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
    matches!(host, "127.0.0.1" | "localhost" | "[::1]") && !rest.contains(char::is_whitespace)
}

fn is_platform(s: &str) -> bool {
    let parts: Vec<&str> = s.split('/').collect();
    (2..=3).contains(&parts.len()) && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
}

const FIELDS: &[&str] = &[
    "version",
    "cluster",
    "components",
    "node",
    "airgap",
    "chart",
    "files",
    "images",
    "reference",
    "digest",
    "platforms",
    "source",
    "unverified",
    "repository",
    "name",
    "url",
    "sha256",
];

fn syntax_diagnostic(text: &str, file: &str, e: &serde_saphyr::Error) -> Diagnostic {
    let (line, column) =
        e.location().map_or((1, 1), |l| (usize::try_from(l.line()).unwrap_or(1).max(1), usize::try_from(l.column()).unwrap_or(1).max(1)));
    let message = e.without_snippet().to_string();
    // serde_saphyr appends the position; the diagnostic shows it in front.
    let message = message.split(" at line ").next().unwrap_or(&message).trim().to_owned();
    let hint = unknown_field(&message)
        .map(|word| match did_you_mean(word, FIELDS.iter().copied()) {
            Some(close) => format!("did you mean `{close}`? (docs/catalogue.md lists the lock's fields)"),
            None => "remove it; docs/catalogue.md lists the lock's fields".to_owned(),
        })
        .unwrap_or_else(|| "fix the YAML here; docs/catalogue.md shows the lock's format".to_owned());
    Diagnostic { origin: Origin::File(file.to_owned()), line, column, path: key_path_at(text, line), message, hint: Some(hint) }
}

fn unknown_field(message: &str) -> Option<&str> {
    let rest = message.split("unknown field `").nth(1)?;
    rest.split('`').next()
}

/// The dotted key path (`components.cilium.images[2].digest`) at a 1-based line of a
/// block-style YAML text, from indentation alone.
pub fn key_path_at(text: &str, line: usize) -> String {
    // (indent, segment, is an item)
    let mut stack: Vec<(usize, String, bool)> = Vec::new();
    for raw in text.lines().take(line) {
        let trimmed = raw.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with("---") {
            continue;
        }
        let mut indent = raw.len() - trimmed.len();
        let mut rest = trimmed;
        while rest == "-" || rest.starts_with("- ") {
            let mut index = 0;
            while let Some(&(i, ref segment, item)) = stack.last() {
                if i < indent || (i == indent && !item) {
                    break;
                }
                if i == indent && item {
                    index = segment.trim_start_matches('[').trim_end_matches(']').parse::<usize>().map_or(0, |n| n + 1);
                }
                stack.pop();
            }
            stack.push((indent, format!("[{index}]"), true));
            let after = rest.get(1..).unwrap_or_default();
            let skipped = after.len() - after.trim_start().len();
            indent += 1 + skipped;
            rest = after.trim_start();
        }
        let Some(key) = rest.split_once(':').map(|(k, _)| k.trim().trim_matches('"')) else { continue };
        if key.is_empty() || key.starts_with(['{', '[', '"', '\'']) {
            continue;
        }
        while stack.last().is_some_and(|&(i, _, item)| i > indent || (i == indent && !item)) {
            stack.pop();
        }
        stack.push((indent, key.to_owned(), false));
    }
    let mut path = String::new();
    for (_, segment, item) in &stack {
        if !item && !path.is_empty() {
            path.push('.');
        }
        path.push_str(segment);
    }
    path
}

#[cfg(test)]
mod tests;
