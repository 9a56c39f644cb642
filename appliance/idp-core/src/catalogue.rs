//! The platform catalogue: every component described once in
//! `embedded/components/<name>/component.yaml`, with its files and pinned images.

use crate::assets::{self, Embedded, Images};
use crate::config::Stacks;
use serde::{Deserialize, Serialize};

/// A problem with the embedded catalogue (a defect of the build, found by tests).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {message}")]
pub struct CatalogueError {
    /// The embedded file.
    pub file: String,
    /// What is wrong.
    pub message: String,
}

fn err(file: impl Into<String>, message: impl Into<String>) -> CatalogueError {
    CatalogueError { file: file.into(), message: message.into() }
}

/// The stack a component belongs to; `bootstrap` is always installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stack {
    /// Always installed.
    Bootstrap,
    /// Vault and External Secrets.
    Secrets,
    /// Kyverno and Policy Reporter.
    Policies,
    /// Metrics, logs, dashboards, SLOs.
    Observability,
    /// Workflows and code quality.
    Cicd,
    /// Vulnerability scanning.
    Security,
    /// Event-driven remediation.
    Events,
    /// The developer portal.
    Backstage,
}

impl Stack {
    /// Whether the stack is switched on.
    pub fn enabled(self, stacks: &Stacks) -> bool {
        match self {
            Stack::Bootstrap => true,
            Stack::Secrets => stacks.secrets,
            Stack::Policies => stacks.policies,
            Stack::Observability => stacks.observability,
            Stack::Cicd => stacks.cicd,
            Stack::Security => stacks.security,
            Stack::Events => stacks.events,
            Stack::Backstage => stacks.backstage,
        }
    }

    /// The stack's name as written in the catalogue and configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Stack::Bootstrap => "bootstrap",
            Stack::Secrets => "secrets",
            Stack::Policies => "policies",
            Stack::Observability => "observability",
            Stack::Cicd => "cicd",
            Stack::Security => "security",
            Stack::Events => "events",
            Stack::Backstage => "backstage",
        }
    }
}

/// How a component's workload gets into the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Delivery {
    /// Applied by idp-lab; charts become k3s `HelmChart` resources.
    #[default]
    HelmController,
    /// Delivered by Argo CD from the lab's Git source (its Applications come with the
    /// stacks); only its routes and governance are applied directly.
    Gitops,
}

/// An upstream Helm chart at pinned coordinates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Chart {
    /// Chart repository URL.
    pub repo: String,
    /// Chart name.
    pub name: String,
    /// Pinned chart version.
    pub version: String,
    /// Values file in the component folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<String>,
    /// Values merged over `values` when the HA dial is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prod_values: Option<String>,
    /// `HelmChart.spec.bootstrap`: install before the cluster has a CNI.
    #[serde(default)]
    pub bootstrap: bool,
}

/// An upstream manifest file, fetched at `up` or bundle time and checked by digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    /// Where it is fetched from.
    pub url: String,
    /// Its sha256 (hex), or `unverified` while nobody could read it.
    pub sha256: String,
    /// The upstream version it belongs to.
    pub version: String,
}

/// A UI exposed through the Gateway as `<host>.<dns suffix>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// First label of the hostname.
    pub host: String,
    /// Backend Service (in the component namespace).
    pub service: String,
    /// Backend Service port.
    pub port: u16,
}

/// One readiness check of a component.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Readiness {
    /// Object kind.
    pub kind: String,
    /// Object apiVersion, when the kind alone is ambiguous.
    #[serde(default, rename = "apiVersion", skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Object name.
    pub name: String,
    /// Namespace (default: the component's; none for cluster-scoped objects).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Condition type that must be `True`; none means the object must exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
}

/// A pinned image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    /// `registry/repository:tag` (or `@sha256:` digest).
    pub reference: String,
    /// Whether the tag was written down without being checked against the chart.
    pub unverified: bool,
}

/// One platform component.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Component {
    /// Name, equal to its folder name.
    pub name: String,
    /// One sentence.
    pub description: String,
    /// Stack it belongs to.
    pub stack: Stack,
    /// Namespace of its workload.
    pub namespace: String,
    /// Apply order, lower first.
    pub wave: i32,
    /// How it is delivered.
    #[serde(default)]
    pub delivery: Delivery,
    /// Upstream chart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chart: Option<Chart>,
    /// Upstream manifest files, applied in this order before the chart.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upstream: Vec<Upstream>,
    /// Project-authored manifest files, in apply order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub manifests: Vec<String>,
    /// UIs exposed through the Gateway.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    /// What ready means.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub readiness: Vec<Readiness>,
    /// Pinned images, from `images/<name>.txt`.
    #[serde(default, skip_deserializing)]
    pub images: Vec<Image>,
}

impl Component {
    /// The path of one of its files inside `embedded/`.
    pub fn file_path(&self, file: &str) -> String {
        format!("components/{}/{file}", self.name)
    }

    /// The text of one of its files.
    pub fn file(&self, file: &str) -> Result<String, CatalogueError> {
        let path = self.file_path(file);
        assets::text::<Embedded>(&path).ok_or_else(|| err(format!("embedded/{path}"), "missing or not UTF-8"))
    }
}

/// All components, in apply order (wave, then name).
#[derive(Debug, Clone, PartialEq)]
pub struct Catalogue {
    /// The components.
    pub components: Vec<Component>,
}

impl Catalogue {
    /// Loads and checks the embedded catalogue.
    pub fn load() -> Result<Catalogue, CatalogueError> {
        let mut components = Vec::new();
        for path in assets::paths::<Embedded>() {
            let Some(dir) = path.strip_prefix("components/").and_then(|p| p.strip_suffix("/component.yaml")) else {
                continue;
            };
            let file = format!("embedded/{path}");
            let text = assets::text::<Embedded>(&path).ok_or_else(|| err(&file, "not UTF-8"))?;
            let mut component: Component = serde_saphyr::from_str(&text).map_err(|e| err(&file, e.to_string()))?;
            check(&component, dir, &file)?;
            component.images = images_of(&component.name)?;
            components.push(component);
        }
        components.sort_by(|a, b| (a.wave, &a.name).cmp(&(b.wave, &b.name)));
        Ok(Catalogue { components })
    }

    /// A component by name.
    pub fn get(&self, name: &str) -> Option<&Component> {
        self.components.iter().find(|c| c.name == name)
    }

    /// Names of components with a chart (what `[versions]` may override).
    pub fn chart_components(&self) -> Vec<&str> {
        self.components.iter().filter(|c| c.chart.is_some()).map(|c| c.name.as_str()).collect()
    }

    /// The components switched on by `stacks`, in apply order.
    pub fn enabled<'a>(&'a self, stacks: &'a Stacks) -> impl Iterator<Item = &'a Component> + 'a {
        self.components.iter().filter(move |c| c.stack.enabled(stacks))
    }
}

fn check(c: &Component, dir: &str, file: &str) -> Result<(), CatalogueError> {
    if c.name != dir || !crate::config::is_name(&c.name) {
        return Err(err(file, format!("name \"{}\" must equal its folder \"{dir}\" and be a lowercase RFC 1123 label", c.name)));
    }
    if c.chart.is_none() && c.upstream.is_empty() && c.manifests.is_empty() {
        return Err(err(file, "a component needs at least one of chart, upstream, manifests"));
    }
    for up in &c.upstream {
        let hex = up.sha256.len() == 64 && up.sha256.chars().all(|ch| ch.is_ascii_hexdigit() && !ch.is_ascii_uppercase());
        if !(hex || up.sha256 == "unverified") || !up.url.starts_with("https://") {
            return Err(err(file, "upstream needs an https:// url and a lowercase hex sha256 (or \"unverified\")"));
        }
    }
    let mut urls: Vec<&str> = c.upstream.iter().map(|u| u.url.as_str()).collect();
    urls.sort_unstable();
    if let Some(w) = urls.windows(2).find(|w| w[0] == w[1]) {
        return Err(err(file, format!("upstream lists {} twice", w[0])));
    }
    let mut files: Vec<&str> = c.manifests.iter().map(String::as_str).collect();
    if let Some(chart) = &c.chart {
        files.extend(chart.values.as_deref());
        files.extend(chart.prod_values.as_deref());
    }
    for f in files {
        c.file(f).map_err(|_| err(file, format!("names \"{f}\", which is not in its folder")))?;
    }
    Ok(())
}

/// Reads `images/<component>.txt` (absent: no images).
fn images_of(component: &str) -> Result<Vec<Image>, CatalogueError> {
    let path = format!("{component}.txt");
    let Some(text) = assets::text::<Images>(&path) else {
        return Ok(Vec::new());
    };
    parse_image_list(&text).map_err(|(line, message)| err(format!("images/{path}:{line}"), message))
}

/// Parses an image list: one pinned reference per line, `#` comments; a comment that
/// says `unverified` marks the line's tag as not yet checked.
pub fn parse_image_list(text: &str) -> Result<Vec<Image>, (usize, String)> {
    let mut images = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let (reference, comment) = line.split_once('#').unwrap_or((line, ""));
        let reference = reference.trim();
        if reference.is_empty() {
            continue;
        }
        if !is_pinned_reference(reference) {
            return Err((i + 1, format!("\"{reference}\" is not a pinned image reference (registry/repository:tag, no :latest)")));
        }
        images.push(Image { reference: reference.to_owned(), unverified: comment.contains("unverified") });
    }
    Ok(images)
}

/// A fully qualified reference with a tag other than `latest`, or a digest.
pub fn is_pinned_reference(r: &str) -> bool {
    if r.contains(char::is_whitespace) || !r.contains('/') {
        return false;
    }
    if r.contains("@sha256:") {
        return true;
    }
    let last = r.rsplit('/').next().unwrap_or(r);
    match last.split_once(':') {
        Some((name, tag)) => !name.is_empty() && !tag.is_empty() && tag != "latest",
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_references() {
        assert!(is_pinned_reference("quay.io/cilium/cilium:v1.18.2"));
        assert!(is_pinned_reference("docker.io/library/registry:2"));
        assert!(is_pinned_reference("ghcr.io/x/y@sha256:abc"));
        assert!(!is_pinned_reference("docker.io/roucru/idp-blueprint-dev-portal:latest"));
        assert!(!is_pinned_reference("nginx:1.27"));
        assert!(!is_pinned_reference("localhost:5000/app"));
    }

    #[test]
    fn image_lists_mark_unverified_tags() {
        let list = "# header\nquay.io/a/b:v1 # unverified: resolve at bundle time\n\nquay.io/a/c:v2\n";
        let images = parse_image_list(list).expect("valid list");
        assert_eq!(images.len(), 2);
        assert!(images[0].unverified && !images[1].unverified);
        assert_eq!(parse_image_list("x/y:latest").map_err(|e| e.0), Err(1));
    }
}
