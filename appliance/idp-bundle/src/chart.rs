//! A chart package (`.tgz`) as the OCI artifact `helm push` makes of it, byte for byte
//! (Helm 3's `pkg/registry`: `Client.Push`, `generateOCIAnnotations`): what `bundle create`
//! stores for a chart of an HTTP repository and what [`crate::publish::publish_chart`]
//! pushes to the lab registry, so both give one chart one manifest digest.
//!
//! - The config (`application/vnd.cncf.helm.config.v1+json`) is the package's
//!   `<chart>/Chart.yaml` as JSON the way Go marshals Helm's `chart.Metadata`: its
//!   fields in Helm's order, empty ones left out, strings sanitised as Helm's
//!   `Validate` does (whitespace made a space, control characters dropped), `<`, `>`
//!   and `&` written `\u003c`, `\u003e`, `\u0026`.
//! - One layer, `application/vnd.cncf.helm.chart.content.v1.tar+gzip`: the package.
//! - The manifest has no `mediaType` field (Helm 3 leaves it out; the registry is told
//!   by `Content-Type`) and Helm's annotations: `org.opencontainers.image.title`
//!   (name), `.version`, `.description`, `.url` (home), `.source` (the first source),
//!   `.authors` (`Name (email), ...`), `.created`, then the chart's own annotations
//!   except title and version. `helm push` takes `created` from the package file's
//!   modification time; a package held in memory has none, so it is the time its
//!   `Chart.yaml` entry was written into the package (RFC 3339, UTC), which keeps the
//!   digest the same for the same package.

use crate::bundle::{BundleError, TITLE_ANNOTATION, VERSION_ANNOTATION};
use idp_core::oci::{Descriptor, Digest, HELM_CHART_CONTENT, HELM_CONFIG, ImageManifest};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Read;

/// The most bytes a package may unpack to while its `Chart.yaml` is looked for (Helm's
/// own limit for a chart archive is 100 MiB).
pub const MAX_UNPACKED: u64 = 100 * 1024 * 1024;
/// The most bytes a `Chart.yaml` may have.
pub const MAX_CHART_YAML: u64 = 1024 * 1024;

/// The OCI annotation of a manifest's description.
const DESCRIPTION_ANNOTATION: &str = "org.opencontainers.image.description";
/// The OCI annotation of a manifest's home page.
const URL_ANNOTATION: &str = "org.opencontainers.image.url";
/// The OCI annotation of a manifest's source.
const SOURCE_URL_ANNOTATION: &str = "org.opencontainers.image.source";
/// The OCI annotation of a manifest's authors.
const AUTHORS_ANNOTATION: &str = "org.opencontainers.image.authors";
/// The OCI annotation of a manifest's creation time.
const CREATED_ANNOTATION: &str = "org.opencontainers.image.created";

/// A chart package as Helm's OCI artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChartArtifact {
    /// The config blob: `Chart.yaml`'s metadata as JSON.
    pub config: Vec<u8>,
    /// The layer: the package, by digest and size.
    pub layer: Descriptor,
    /// The manifest, as Helm marshals it.
    pub manifest: Vec<u8>,
}

impl ChartArtifact {
    /// The manifest's digest.
    pub fn digest(&self) -> Digest {
        Digest::of(&self.manifest)
    }

    /// The config's descriptor.
    pub fn config_descriptor(&self) -> Descriptor {
        Descriptor::new(HELM_CONFIG, Digest::of(&self.config), self.config.len() as u64)
    }
}

/// The artifact of chart `chart` `version` whose package reads from `package` and has
/// `package_digest` and `package_size`. The package must be gzip-compressed, hold
/// `<chart>/Chart.yaml`, and that file must name this chart and version (a leading `v`
/// aside) and have an `apiVersion`.
pub fn chart_artifact<R: Read>(
    chart: &str,
    version: &str,
    package: R,
    package_digest: Digest,
    package_size: u64,
) -> Result<ChartArtifact, BundleError> {
    let (text, mtime) = read_chart_yaml(chart, version, package)?;
    let bad = |reason: String, source: Option<Box<dyn std::error::Error + Send + Sync>>| BundleError::Package {
        chart: chart.to_owned(),
        version: version.to_owned(),
        reason,
        source,
    };
    let raw: RawMetadata =
        serde_saphyr::from_str(&text).map_err(|e| bad(format!("has a {chart}/Chart.yaml that does not parse"), Some(Box::new(e))))?;
    let metadata = Metadata::from(raw);
    if metadata.name != chart {
        return Err(bad(format!("is chart {:?} ({chart}/Chart.yaml names it so)", metadata.name), None));
    }
    // Helm ignores a leading `v` when it matches versions; so does the lookup in an index.
    if metadata.version.trim_start_matches('v') != version.trim_start_matches('v') {
        return Err(bad(format!("is version {:?} ({chart}/Chart.yaml says so)", metadata.version), None));
    }
    if metadata.api_version.is_empty() {
        return Err(bad(format!("has a {chart}/Chart.yaml without apiVersion"), None));
    }
    let config = go_json(&metadata);
    let layer = Descriptor::new(HELM_CHART_CONTENT, package_digest, package_size);
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: None,
        artifact_type: None,
        config: Descriptor::new(HELM_CONFIG, Digest::of(&config), config.len() as u64),
        layers: vec![layer.clone()],
        subject: None,
        annotations: Some(annotations(&metadata, &rfc3339(mtime))),
    };
    Ok(ChartArtifact { config, layer, manifest: go_json(&manifest) })
}

/// Helm's manifest annotations for `metadata` (`generateOCIAnnotations`).
fn annotations(metadata: &Metadata, created: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut add = |key: &str, value: &str| {
        if !value.trim().is_empty() {
            out.insert(key.to_owned(), value.to_owned());
        }
    };
    add(DESCRIPTION_ANNOTATION, &metadata.description);
    add(TITLE_ANNOTATION, &metadata.name);
    add(VERSION_ANNOTATION, &metadata.version);
    add(URL_ANNOTATION, &metadata.home);
    add(CREATED_ANNOTATION, created);
    if let Some(source) = metadata.sources.first() {
        add(SOURCE_URL_ANNOTATION, source);
    }
    if !metadata.maintainers.is_empty() {
        let authors: Vec<String> = metadata
            .maintainers
            .iter()
            .map(|m| if m.email.is_empty() { m.name.clone() } else { format!("{} ({})", m.name, m.email) })
            .collect();
        add(AUTHORS_ANNOTATION, &authors.join(", "));
    }
    for (key, value) in &metadata.annotations {
        if key != TITLE_ANNOTATION && key != VERSION_ANNOTATION {
            out.insert(key.clone(), value.clone());
        }
    }
    out
}

/// Reads `<chart>/Chart.yaml` out of a package: its text and its entry's mtime.
fn read_chart_yaml<R: Read>(chart: &str, version: &str, mut package: R) -> Result<(String, u64), BundleError> {
    let bad = |reason: String, source: Option<std::io::Error>| BundleError::Package {
        chart: chart.to_owned(),
        version: version.to_owned(),
        reason,
        source: source.map(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>),
    };
    let mut magic = [0u8; 2];
    let mut got = 0;
    while got < magic.len() {
        match package.read(&mut magic[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(bad("cannot be read".into(), Some(e))),
        }
    }
    if magic[..got] != [0x1f, 0x8b] {
        let start: String = magic[..got].iter().map(|b| format!("{b:02x}")).collect();
        return Err(bad(format!("is not gzip-compressed (a .tgz starts with 1f8b; this starts with {start:?})"), None));
    }
    let gz = flate2::read::GzDecoder::new(std::io::Cursor::new(magic).chain(package));
    let mut archive = tar::Archive::new(Limited { inner: gz, left: MAX_UNPACKED });
    let wanted = format!("{chart}/Chart.yaml");
    let unreadable = |e: std::io::Error| bad("is not a readable gzip-compressed tar".into(), Some(e));
    for entry in archive.entries().map_err(unreadable)? {
        let mut entry = entry.map_err(unreadable)?;
        let is_it = entry.path().map_err(unreadable)?.to_str().is_some_and(|p| p.trim_start_matches("./") == wanted);
        if !is_it || !entry.header().entry_type().is_file() {
            continue;
        }
        if entry.size() > MAX_CHART_YAML {
            return Err(bad(format!("has a {wanted} of {} bytes (at most {MAX_CHART_YAML})", entry.size()), None));
        }
        let mtime = entry.header().mtime().unwrap_or(0);
        let mut text = String::new();
        entry.read_to_string(&mut text).map_err(|e| bad(format!("has a {wanted} that is not UTF-8 text"), Some(e)))?;
        return Ok((text, mtime));
    }
    Err(bad(format!("has no {wanted}"), None))
}

/// A reader that fails once more than `left` bytes came through.
struct Limited<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Limited<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.left = self
            .left
            .checked_sub(n as u64)
            .ok_or_else(|| std::io::Error::other(format!("it unpacks to more than {MAX_UNPACKED} bytes")))?;
        Ok(n)
    }
}

/// A string field of `Chart.yaml`: Helm reads a number or boolean there as its text
/// (sigs.k8s.io/yaml converts scalars for string targets).
#[derive(Debug, Clone, Default, PartialEq)]
struct Text(String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Text, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Text;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Text, E> {
                Ok(Text(v.to_owned()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Text, E> {
                Ok(Text::default())
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// `Chart.yaml` as read (unknown keys ignored, as Go's decoder does).
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct RawMetadata {
    name: Text,
    home: Text,
    sources: Option<Vec<Text>>,
    version: Text,
    description: Text,
    keywords: Option<Vec<Text>>,
    maintainers: Option<Vec<RawMaintainer>>,
    icon: Text,
    api_version: Text,
    condition: Text,
    tags: Text,
    app_version: Text,
    deprecated: Option<bool>,
    annotations: Option<BTreeMap<String, Text>>,
    kube_version: Text,
    dependencies: Option<Vec<RawDependency>>,
    #[serde(rename = "type")]
    kind: Text,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawMaintainer {
    name: Text,
    email: Text,
    url: Text,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawDependency {
    name: Text,
    version: Text,
    repository: Text,
    condition: Text,
    tags: Option<Vec<Text>>,
    enabled: Option<bool>,
    #[serde(rename = "import-values")]
    import_values: Option<Vec<serde_json::Value>>,
    #[serde(rename = "export-values")]
    export_values: Option<Vec<serde_json::Value>>,
    alias: Text,
}

/// Helm's `chart.Metadata`, in its field order, as `encoding/json` writes it.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
struct Metadata {
    #[serde(skip_serializing_if = "String::is_empty")]
    name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    home: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    sources: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    description: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    keywords: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    maintainers: Vec<Maintainer>,
    #[serde(skip_serializing_if = "String::is_empty")]
    icon: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    api_version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    condition: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    tags: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    app_version: String,
    #[serde(skip_serializing_if = "is_false")]
    deprecated: bool,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    kube_version: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    dependencies: Vec<Dependency>,
    #[serde(rename = "type", skip_serializing_if = "String::is_empty")]
    kind: String,
}

/// Helm's `chart.Maintainer`.
#[derive(Debug, Default, Serialize)]
struct Maintainer {
    #[serde(skip_serializing_if = "String::is_empty")]
    name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    email: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    url: String,
}

/// Helm's `chart.Dependency` (`name` and `repository` are always written).
#[derive(Debug, Default, Serialize)]
struct Dependency {
    name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    version: String,
    repository: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    condition: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tags: Vec<String>,
    #[serde(skip_serializing_if = "is_false")]
    enabled: bool,
    #[serde(rename = "import-values", skip_serializing_if = "Vec::is_empty")]
    import_values: Vec<serde_json::Value>,
    #[serde(rename = "export-values", skip_serializing_if = "Vec::is_empty")]
    export_values: Vec<serde_json::Value>,
    #[serde(skip_serializing_if = "String::is_empty")]
    alias: String,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Helm's `sanitizeString`: whitespace becomes a space, control characters go.
fn sanitize(Text(s): Text) -> String {
    s.chars()
        .filter_map(|c| {
            if c.is_whitespace() {
                Some(' ')
            } else if c.is_control() {
                None
            } else {
                Some(c)
            }
        })
        .collect()
}

fn sanitize_all(list: Option<Vec<Text>>) -> Vec<String> {
    list.unwrap_or_default().into_iter().map(sanitize).collect()
}

impl From<RawMetadata> for Metadata {
    fn from(raw: RawMetadata) -> Metadata {
        Metadata {
            name: sanitize(raw.name),
            home: sanitize(raw.home),
            sources: sanitize_all(raw.sources),
            // Helm validates the version as semver and does not sanitise it.
            version: raw.version.0,
            description: sanitize(raw.description),
            keywords: sanitize_all(raw.keywords),
            maintainers: raw
                .maintainers
                .unwrap_or_default()
                .into_iter()
                .map(|m| Maintainer { name: sanitize(m.name), email: sanitize(m.email), url: sanitize(m.url) })
                .collect(),
            icon: sanitize(raw.icon),
            api_version: raw.api_version.0,
            condition: sanitize(raw.condition),
            tags: sanitize(raw.tags),
            app_version: sanitize(raw.app_version),
            deprecated: raw.deprecated.unwrap_or(false),
            annotations: raw.annotations.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect(),
            kube_version: sanitize(raw.kube_version),
            dependencies: raw
                .dependencies
                .unwrap_or_default()
                .into_iter()
                .map(|d| Dependency {
                    name: sanitize(d.name),
                    version: sanitize(d.version),
                    repository: sanitize(d.repository),
                    condition: sanitize(d.condition),
                    tags: sanitize_all(d.tags),
                    enabled: d.enabled.unwrap_or(false),
                    import_values: d.import_values.unwrap_or_default(),
                    export_values: d.export_values.unwrap_or_default(),
                    alias: d.alias.0,
                })
                .collect(),
            kind: raw.kind.0,
        }
    }
}

/// JSON as Go's `encoding/json` writes it: compact, with `<`, `>`, `&`, U+2028 and
/// U+2029 escaped (they only ever occur inside strings, so a plain replacement is exact).
fn go_json<T: Serialize>(value: &T) -> Vec<u8> {
    let text = serde_json::to_string(value).unwrap_or_default();
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out.into_bytes()
}

/// Seconds since the epoch as RFC 3339 in UTC (`1970-01-01T00:00:00Z`), as Go's
/// `time.RFC3339` writes a UTC time.
fn rfc3339(seconds: u64) -> String {
    let days = seconds / 86_400;
    let rest = seconds % 86_400;
    // Howard Hinnant's civil_from_days, for days since 1970-01-01.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rest / 3600, rest % 3600 / 60, rest % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `.tgz` holding `files` (path, content, mtime), written by the tar crate and flate2.
    fn package(files: &[(&str, &str, u64)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, content, mtime) in files {
            let mut header = tar::Header::new_ustar();
            header.set_size(content.len() as u64);
            header.set_mode(0o644);
            header.set_mtime(*mtime);
            builder.append_data(&mut header, path, content.as_bytes()).expect("append");
        }
        let tar = builder.into_inner().expect("tar");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, &tar).expect("gzip");
        gz.finish().expect("gzip")
    }

    fn artifact(chart: &str, version: &str, bytes: &[u8]) -> Result<ChartArtifact, BundleError> {
        chart_artifact(chart, version, bytes, Digest::of(bytes), bytes.len() as u64)
    }

    const CHART_YAML: &str = "apiVersion: v2\nname: demo\nversion: 1.2.0+b.1\ndescription: >\n  A demo <chart> & more\nhome: https://example.org\nsources: [https://src.example.org/demo, https://other.example.org]\nmaintainers:\n  - name: Ann\n    email: ann@example.org\n  - name: Bob\nkeywords: [a, b]\nappVersion: 1.10\ntype: application\nannotations:\n  org.opencontainers.image.title: ignored\n  example.org/extra: \"yes\"\ndependencies:\n  - name: sub\n    version: ~1.0\n    repository: \"\"\n    import-values: [{child: a, parent: b}]\nunknownKey: whatever\n";

    #[test]
    fn config_and_manifest_are_what_helm_push_writes() {
        let bytes = package(&[("demo/Chart.yaml", CHART_YAML, 1_700_000_000), ("demo/values.yaml", "x: 1\n", 0)]);
        let a = artifact("demo", "1.2.0+b.1", &bytes).expect("a chart");
        // Go's field order, omitempty, sanitised description, HTML-escaped.
        assert_eq!(
            String::from_utf8_lossy(&a.config),
            r#"{"name":"demo","home":"https://example.org","sources":["https://src.example.org/demo","https://other.example.org"],"version":"1.2.0+b.1","description":"A demo \u003cchart\u003e \u0026 more ","keywords":["a","b"],"maintainers":[{"name":"Ann","email":"ann@example.org"},{"name":"Bob"}],"apiVersion":"v2","appVersion":"1.1","annotations":{"example.org/extra":"yes","org.opencontainers.image.title":"ignored"},"dependencies":[{"name":"sub","version":"~1.0","repository":"","import-values":[{"child":"a","parent":"b"}]}],"type":"application"}"#
        );
        let config_digest = Digest::of(&a.config);
        assert_eq!(
            String::from_utf8_lossy(&a.manifest),
            format!(
                r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.cncf.helm.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[{{"mediaType":"application/vnd.cncf.helm.chart.content.v1.tar+gzip","digest":"{}","size":{}}}],"annotations":{{"example.org/extra":"yes","org.opencontainers.image.authors":"Ann (ann@example.org), Bob","org.opencontainers.image.created":"2023-11-14T22:13:20Z","org.opencontainers.image.description":"A demo \u003cchart\u003e \u0026 more ","org.opencontainers.image.source":"https://src.example.org/demo","org.opencontainers.image.title":"demo","org.opencontainers.image.url":"https://example.org","org.opencontainers.image.version":"1.2.0+b.1"}}}}"#,
                a.config.len(),
                Digest::of(&bytes),
                bytes.len()
            )
        );
        assert_eq!(a.layer, Descriptor::new(HELM_CHART_CONTENT, Digest::of(&bytes), bytes.len() as u64));
        assert_eq!(a.digest(), Digest::of(&a.manifest));
        assert_eq!(a, artifact("demo", "1.2.0+b.1", &bytes).expect("again"), "deterministic");
    }

    #[test]
    fn packages_that_are_not_this_chart_are_refused_precisely() {
        let message = |r: Result<ChartArtifact, BundleError>| r.map(|_| ()).map_err(|e| idp_core::diag::chain(&e)).expect_err("refused");
        assert_eq!(
            message(artifact("demo", "1.0.0", b"PK\x03\x04 a zip")),
            "the package of chart demo 1.0.0 is not gzip-compressed (a .tgz starts with 1f8b; this starts with \"504b\")"
        );
        assert!(message(artifact("demo", "1.0.0", b"")).contains("is not gzip-compressed"));
        let other = package(&[("other/Chart.yaml", "apiVersion: v2\nname: other\nversion: 1.0.0\n", 0)]);
        assert_eq!(message(artifact("demo", "1.0.0", &other)), "the package of chart demo 1.0.0 has no demo/Chart.yaml");
        let renamed = package(&[("demo/Chart.yaml", "apiVersion: v2\nname: other\nversion: 1.0.0\n", 0)]);
        assert_eq!(
            message(artifact("demo", "1.0.0", &renamed)),
            "the package of chart demo 1.0.0 is chart \"other\" (demo/Chart.yaml names it so)"
        );
        let newer = package(&[("demo/Chart.yaml", "apiVersion: v2\nname: demo\nversion: 1.0.1\n", 0)]);
        assert_eq!(
            message(artifact("demo", "1.0.0", &newer)),
            "the package of chart demo 1.0.0 is version \"1.0.1\" (demo/Chart.yaml says so)"
        );
        let broken = package(&[("demo/Chart.yaml", "name: [demo\n", 0)]);
        assert!(
            message(artifact("demo", "1.0.0", &broken))
                .starts_with("the package of chart demo 1.0.0 has a demo/Chart.yaml that does not parse: ")
        );
        let mut truncated = package(&[("demo/values.yaml", &"x".repeat(4096), 0), ("demo/Chart.yaml", "name: demo\n", 0)]);
        truncated.truncate(40);
        assert!(
            message(artifact("demo", "1.0.0", &truncated))
                .starts_with("the package of chart demo 1.0.0 is not a readable gzip-compressed tar")
        );
    }

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(4_102_444_799), "2099-12-31T23:59:59Z");
    }
}
