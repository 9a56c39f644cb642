//! A Helm HTTP repository client: reads `index.yaml`, finds a chart version, and
//! downloads its package (`.tgz`) through a sha256 check against the index's `digest`.

use crate::client::Client;
use crate::error::ClientError;
use crate::http::{Fetched, Http, join_url};
use http::{HeaderMap, Method, StatusCode};
use serde::Deserialize;
use std::collections::BTreeMap;
use tokio::io::AsyncWrite;

/// The most bytes an `index.yaml` may have (the big public indexes are tens of MB).
pub const INDEX_LIMIT: u64 = 256 * 1024 * 1024;

/// A chart version as a repository's index lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChartRef {
    /// The repository URL.
    pub repository: String,
    /// The chart name.
    pub name: String,
    /// The version.
    pub version: String,
    /// The package URL, made absolute against the repository.
    pub url: String,
    /// `sha256:<hex>` from the index's `digest`, when it has one.
    pub digest: Option<String>,
}

#[derive(Deserialize)]
struct Index {
    #[serde(default)]
    entries: BTreeMap<String, Vec<IndexEntry>>,
}

#[derive(Deserialize)]
struct IndexEntry {
    #[serde(default)]
    version: String,
    #[serde(default)]
    urls: Vec<String>,
    #[serde(default)]
    digest: Option<String>,
}

/// The URL of a repository's index.
pub fn index_url(repository: &str) -> String {
    format!("{}/index.yaml", repository.trim_end_matches('/'))
}

/// Finds `name` `version` in an index's text; `repository` makes relative URLs absolute.
pub fn find_in_index(text: &str, repository: &str, name: &str, version: &str) -> Result<ChartRef, ClientError> {
    let url = index_url(repository);
    let mut options = serde_saphyr::Options::default();
    // Public indexes hold thousands of versions: more nodes than the default budget, but
    // still bounded (the download is capped at INDEX_LIMIT).
    if let Some(budget) = options.budget.as_mut() {
        budget.max_events = 100_000_000;
        budget.max_nodes = 50_000_000;
        budget.max_total_scalar_bytes = INDEX_LIMIT as usize;
    }
    let index: Index =
        serde_saphyr::from_str_with_options(text, options).map_err(|e| ClientError::Index { url: url.clone(), source: Box::new(e) })?;
    let versions = index.entries.get(name).map(Vec::as_slice).unwrap_or_default();
    let not_found = || ClientError::ChartNotFound {
        repository: repository.to_owned(),
        name: name.to_owned(),
        version: version.to_owned(),
        versions: versions.iter().take(10).map(|v| v.version.clone()).collect(),
    };
    // Helm strips a leading `v` when it compares versions; so does the lookup.
    let plain = |v: &str| v.trim_start_matches('v').to_owned();
    let entry = versions.iter().find(|v| v.version == version).or_else(|| versions.iter().find(|v| plain(&v.version) == plain(version)));
    let entry = entry.ok_or_else(not_found)?;
    let first =
        entry.urls.first().ok_or_else(|| ClientError::Protocol { url: url.clone(), reason: format!("{name} {version} has no urls") })?;
    let package = join_url(&format!("{}/", repository.trim_end_matches('/')), first)?;
    let digest = match entry.digest.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(d) => {
            let hex = d.strip_prefix("sha256:").unwrap_or(d);
            if !idp_core::lock::is_sha256_hex(hex) {
                return Err(ClientError::Protocol { url, reason: format!("{name} {version} has digest {d:?}, not a sha256") });
            }
            Some(format!("sha256:{hex}"))
        }
    };
    Ok(ChartRef { repository: repository.to_owned(), name: name.to_owned(), version: entry.version.clone(), url: package, digest })
}

impl Client {
    /// Reads the repository's `index.yaml` and finds the chart version.
    pub async fn find_chart(&self, repository: &str, name: &str, version: &str) -> Result<ChartRef, ClientError> {
        let url = index_url(repository);
        let response = self.http.send_following(Method::GET, &url, &HeaderMap::new(), None).await?;
        if response.status != StatusCode::OK {
            return Err(Http::status_error(response).await);
        }
        let bytes = Http::read_limited(response, INDEX_LIMIT).await?;
        let text =
            String::from_utf8(bytes).map_err(|_| ClientError::Protocol { url: url.clone(), reason: "index.yaml is not UTF-8".into() })?;
        find_in_index(&text, repository, name, version)
    }

    /// Streams the chart's package into `sink`, verified against `expected` (the lock's
    /// digest) or else the index's digest; both must agree when both are known.
    pub async fn download_chart<W: AsyncWrite + Unpin>(
        &self,
        chart: &ChartRef,
        expected: Option<&str>,
        sink: &mut W,
    ) -> Result<Fetched, ClientError> {
        if let (Some(lock), Some(index)) = (expected, chart.digest.as_deref())
            && lock != index
        {
            return Err(ClientError::DigestMismatch {
                what: "chart",
                url: index_url(&chart.repository),
                expected: lock.to_owned(),
                actual: index.to_owned(),
            });
        }
        let expected = expected.or(chart.digest.as_deref());
        let response = self.http.send_following(Method::GET, &chart.url, &HeaderMap::new(), None).await?;
        if response.status != StatusCode::OK {
            return Err(Http::status_error(response).await);
        }
        Http::stream_verified(response, "chart", expected, sink).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INDEX: &str = "apiVersion: v1\nentries:\n  demo:\n    - version: 1.2.0\n      urls: [charts/demo-1.2.0.tgz]\n      digest: 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n    - version: v1.1.0\n      urls: [https://cdn.example.net/demo-1.1.0.tgz]\n  other:\n    - version: 0.1.0\n      urls: []\ngenerated: \"2026-01-01T00:00:00Z\"\n";

    #[test]
    fn finds_a_version_with_its_absolute_url_and_digest() {
        let c = find_in_index(INDEX, "https://charts.example.org/stable/", "demo", "1.2.0").expect("found");
        assert_eq!(c.url, "https://charts.example.org/stable/charts/demo-1.2.0.tgz");
        assert_eq!(c.digest.as_deref(), Some("sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"));
        let c = find_in_index(INDEX, "https://charts.example.org/stable", "demo", "1.1.0").expect("v prefix");
        assert_eq!((c.url.as_str(), c.digest, c.version.as_str()), ("https://cdn.example.net/demo-1.1.0.tgz", None, "v1.1.0"));
    }

    #[test]
    fn a_missing_version_names_what_exists() {
        let e = find_in_index(INDEX, "https://x.example", "demo", "9.9.9").expect_err("absent");
        assert_eq!(e.to_string(), "https://x.example has no chart demo 9.9.9 (it has 1.2.0, v1.1.0)");
        assert!(matches!(find_in_index(INDEX, "https://x.example", "other", "0.1.0"), Err(ClientError::Protocol { .. })));
        assert!(matches!(find_in_index("entries: [", "https://x.example", "demo", "1"), Err(ClientError::Index { .. })));
        let bad = INDEX.replace("0123456789abcdef0123", "zz");
        assert!(matches!(find_in_index(&bad, "https://x.example", "demo", "1.2.0"), Err(ClientError::Protocol { .. })));
    }
}
