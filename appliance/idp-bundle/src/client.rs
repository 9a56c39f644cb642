//! An OCI distribution client, pull only and anonymous: resolves a reference to its
//! digest and the per-platform manifest digests (HEAD/GET `/v2/<name>/manifests/<ref>`
//! with the index and manifest media types), answers the registry's bearer challenge
//! (the distribution token spec: `WWW-Authenticate: Bearer realm=...,service=...,scope=...`,
//! Docker Hub included), and streams blobs through a sha256 check.
//!
//! Plain HTTP for registries on 127.0.0.1, `[::1]` and localhost; HTTPS otherwise.
//! Also downloads plain files and Helm packages ([`Client::fetch`], [`crate::helm`]).

use crate::error::ClientError;
use crate::http::{Fetched, Http, Response, invalid, is_loopback_host, sha256_digest};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use idp_core::lock::PLATFORMS;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use tokio::io::AsyncWrite;

/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Docker manifest list (schema 2).
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image manifest (schema 2).
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// The `Accept` header of a manifest request: indexes first, then single manifests.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// The most bytes a manifest, an index or an image config may have (containerd's limit).
pub const MANIFEST_LIMIT: u64 = 4 * 1024 * 1024;

/// A manifest as the registry serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Its bytes, exactly as served (the digest is over these).
    pub bytes: Vec<u8>,
    /// Its media type (`Content-Type`, or `mediaType` in the document).
    pub media_type: String,
    /// `sha256:<hex>` of the bytes, checked against `Docker-Content-Digest` when sent.
    pub digest: String,
}

impl Manifest {
    /// Whether it is an index (OCI index or Docker manifest list).
    pub fn is_index(&self) -> bool {
        self.media_type == OCI_INDEX || self.media_type == DOCKER_LIST
    }
}

/// A reference resolved against its registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// `sha256:<hex>` of what the reference names: the index, or the one manifest.
    pub digest: String,
    /// Its media type.
    pub media_type: String,
    /// For each platform of [`PLATFORMS`] the image provides, its manifest digest (for a
    /// single-manifest image: the manifest's own digest under its config's platform).
    pub platforms: BTreeMap<String, String>,
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Challenge {
    /// `Bearer` or `Basic` (as sent).
    pub scheme: String,
    /// Its parameters (`realm`, `service`, `scope`, `error`), keys lowercased.
    pub params: BTreeMap<String, String>,
}

/// Parses a `WWW-Authenticate` value such as
/// `Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull"`.
/// Quoted values may hold commas and `\"` escapes; unquoted tokens are accepted too.
pub fn parse_challenge(value: &str) -> Option<Challenge> {
    let value = value.trim();
    let (scheme, mut rest) = match value.split_once(char::is_whitespace) {
        Some((s, r)) => (s, r.trim_start()),
        None => (value, ""),
    };
    if scheme.is_empty() || !scheme.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return None;
    }
    let mut params = BTreeMap::new();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let key = key.trim().trim_start_matches(',').trim();
        if key.is_empty() || key.contains(char::is_whitespace) {
            return None;
        }
        let after = after.trim_start();
        let (val, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            let mut val = String::new();
            let mut chars = quoted.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => val.extend(chars.next().map(|(_, c)| c)),
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    c => val.push(c),
                }
            }
            (val, &quoted[end?..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_owned(), &after[end..])
        };
        params.insert(key.to_ascii_lowercase(), val);
        rest = remaining.trim_start().trim_start_matches(',').trim_start();
    }
    Some(Challenge { scheme: scheme.to_owned(), params })
}

/// An image name split for the distribution API (a small private stand-in until the shared
/// OCI name types land).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Name {
    /// As written in references (`docker.io`, `127.0.0.1:5000`).
    registry: String,
    repository: String,
    /// A tag or `sha256:` digest.
    reference: String,
    /// The digest when the reference carries one (`name:tag@sha256:...` or `name@sha256:...`).
    digest: Option<String>,
}

impl Name {
    fn parse(reference: &str) -> Result<Name, ClientError> {
        let bad = |reason: &str| invalid("image reference", reference, reason);
        let qualified = idp_core::lock::normalize_reference(reference);
        let (name, digest) = match qualified.split_once('@') {
            Some((n, d)) if idp_core::lock::is_digest(d) => (n.to_owned(), Some(d.to_owned())),
            Some(_) => return Err(bad("the part after @ is not a sha256 digest")),
            None => (qualified.clone(), None),
        };
        let (registry, path) = name.split_once('/').ok_or_else(|| bad("no repository"))?;
        let (repository, tag) = match path.rsplit_once(':') {
            Some((repo, tag)) if !tag.contains('/') => (repo, Some(tag)),
            _ => (path, None),
        };
        let valid_repo = !repository.is_empty()
            && repository
                .split('/')
                .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b)));
        if !valid_repo {
            return Err(bad("the repository must be lowercase path components"));
        }
        let tag_ok = |t: &str| {
            !t.is_empty()
                && t.len() <= 128
                && t.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
                && !t.starts_with(['.', '-'])
        };
        if let Some(t) = tag
            && !tag_ok(t)
        {
            return Err(bad("invalid tag"));
        }
        let reference = match (&digest, tag) {
            (Some(d), _) => d.clone(),
            (None, Some(t)) => t.to_owned(),
            (None, None) => return Err(bad("no tag or digest")),
        };
        Ok(Name { registry: registry.to_owned(), repository: repository.to_owned(), reference, digest })
    }

    /// The registry's API base URL: Docker Hub's API host for `docker.io`, plain HTTP for
    /// loopback registries.
    fn base(&self) -> String {
        let host = if self.registry == "docker.io" { "registry-1.docker.io" } else { &self.registry };
        let scheme = if is_loopback_host(host) { "http" } else { "https" };
        format!("{scheme}://{host}")
    }

    fn manifest_url(&self, reference: &str) -> String {
        format!("{}/v2/{}/manifests/{reference}", self.base(), self.repository)
    }

    fn blob_url(&self, digest: &str) -> String {
        format!("{}/v2/{}/blobs/{digest}", self.base(), self.repository)
    }

    /// Where a request for `rest` (`manifests/<ref>`, `blobs/<digest>`) goes: through
    /// each mirror of this name's registry in order (`<mirror>/v2/<repository>/<rest>?ns=
    /// <registry>`, as containerd asks a mirror), then to the registry itself.
    fn urls(&self, rest: &str, mirrors: &BTreeMap<String, Vec<String>>) -> (Vec<String>, String) {
        let through = mirrors
            .get(&self.registry)
            .into_iter()
            .flatten()
            .map(|m| format!("{}/v2/{}/{rest}?ns={}", m.trim_end_matches('/'), self.repository, encode(&self.registry)))
            .collect();
        (through, format!("{}/v2/{}/{rest}", self.base(), self.repository))
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Document {
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Vec<IndexEntry>,
    #[serde(default)]
    config: Option<ConfigDescriptor>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct IndexEntry {
    digest: String,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Deserialize)]
struct ConfigDescriptor {
    digest: String,
}

#[derive(Deserialize)]
struct Platform {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    variant: Option<String>,
}

impl Platform {
    /// `os/arch`, with the variant only where it changes what runs (`arm64/v8` is `arm64`).
    fn key(&self) -> String {
        match self.variant.as_deref() {
            None | Some("") => format!("{}/{}", self.os, self.architecture),
            Some("v8") if self.architecture == "arm64" => format!("{}/{}", self.os, self.architecture),
            Some(v) => format!("{}/{}/{v}", self.os, self.architecture),
        }
    }
}

/// The OCI distribution client (also used for plain file downloads). Cheap to share:
/// one connection pool, bearer tokens cached per registry and scope.
pub struct Client {
    pub(crate) http: Http,
    tokens: Mutex<HashMap<String, HeaderValue>>,
    /// Registry host -> mirror base URLs, tried in order before the registry itself.
    mirrors: BTreeMap<String, Vec<String>>,
}

impl Client {
    /// A client with Mozilla's root certificates and the ring provider.
    pub fn new() -> Result<Client, ClientError> {
        Ok(Client { http: Http::new()?, tokens: Mutex::new(HashMap::new()), mirrors: BTreeMap::new() })
    }

    /// Pulls images through mirrors (`registry.mirrors`: registry host -> base URLs such
    /// as `https://mirror.example` or `http://127.0.0.1:5000`), as a node's containerd
    /// does: each mirror of an image's registry in order, with `?ns=<registry>`, then
    /// the registry itself. A mirror that cannot be reached, or answers other than 200, is
    /// passed over; a digest it serves is verified like any other. Plain HTTP is allowed to
    /// loopback mirrors only.
    pub fn with_mirrors(mut self, mirrors: &BTreeMap<String, Vec<String>>) -> Client {
        self.mirrors = mirrors.iter().map(|(r, m)| (idp_core::oci::canonical_registry(r), m.clone())).collect();
        self
    }

    /// The digest a reference names now, from `HEAD /v2/<name>/manifests/<ref>`
    /// (`Docker-Content-Digest`); falls back to a GET when a registry leaves it out.
    pub async fn head_digest(&self, reference: &str) -> Result<String, ClientError> {
        let name = Name::parse(reference)?;
        let (response, _) =
            self.registry_request(Method::HEAD, &name, &format!("manifests/{}", name.reference), Some(MANIFEST_ACCEPT)).await?;
        if response.status != StatusCode::OK {
            return Err(Http::status_error(response).await);
        }
        match response.header("docker-content-digest") {
            Some(d) if idp_core::lock::is_digest(d) => Ok(d.to_owned()),
            _ => Ok(self.manifest(reference).await?.digest),
        }
    }

    /// `GET /v2/<name>/manifests/<ref>`: the bytes, their media type and digest. A digest
    /// in the reference, and the registry's `Docker-Content-Digest`, must both match.
    pub async fn manifest(&self, reference: &str) -> Result<Manifest, ClientError> {
        let name = Name::parse(reference)?;
        self.manifest_of(&name, &name.reference).await
    }

    async fn manifest_of(&self, name: &Name, reference: &str) -> Result<Manifest, ClientError> {
        let (response, url) = self.registry_request(Method::GET, name, &format!("manifests/{reference}"), Some(MANIFEST_ACCEPT)).await?;
        if response.status != StatusCode::OK {
            return Err(Http::status_error(response).await);
        }
        let header_digest = response.header("docker-content-digest").map(str::to_owned);
        let content_type = response.header("content-type").map(|c| c.split(';').next().unwrap_or(c).trim().to_owned());
        let bytes = Http::read_limited(response, MANIFEST_LIMIT).await?;
        let digest = sha256_digest(&bytes);
        let expected = if idp_core::lock::is_digest(reference) { Some(reference.to_owned()) } else { header_digest };
        if let Some(expected) = expected
            && expected.starts_with("sha256:")
            && expected != digest
        {
            return Err(ClientError::DigestMismatch { what: "manifest", url, expected, actual: digest });
        }
        let document: Document = serde_json::from_slice(&bytes).map_err(|source| ClientError::Json { url: url.clone(), source })?;
        let media_type = match (content_type, document.media_type) {
            (Some(c), _) if c != "application/json" && c != "application/octet-stream" && !c.is_empty() => c,
            (_, Some(m)) => m,
            (Some(c), None) => c,
            (None, None) => return Err(ClientError::Protocol { url, reason: "a manifest without a media type".into() }),
        };
        Ok(Manifest { bytes, media_type, digest })
    }

    /// Resolves a reference: the digest it names and, for [`PLATFORMS`], the manifest
    /// digest of each platform it provides. An index is read from its entries; a single
    /// manifest's platform comes from its config blob. A reference with a digest resolves
    /// by that digest (content cannot move); a tag resolves to whatever it points at now.
    pub async fn resolve(&self, reference: &str) -> Result<Resolved, ClientError> {
        let name = Name::parse(reference)?;
        let manifest = self.manifest_of(&name, &name.reference).await?;
        let url = name.manifest_url(&name.reference);
        let document: Document =
            serde_json::from_slice(&manifest.bytes).map_err(|source| ClientError::Json { url: url.clone(), source })?;
        let mut platforms = BTreeMap::new();
        if manifest.is_index() {
            for entry in document.manifests {
                let Some(platform) = entry.platform else { continue };
                let key = platform.key();
                if PLATFORMS.contains(&key.as_str()) && idp_core::lock::is_digest(&entry.digest) {
                    platforms.entry(key).or_insert(entry.digest);
                }
            }
        } else {
            let config = document
                .config
                .ok_or_else(|| ClientError::Protocol { url: url.clone(), reason: "an image manifest without a config".into() })?;
            let mut bytes = Vec::new();
            self.blob_of(&name, &config.digest, &mut bytes, MANIFEST_LIMIT).await?;
            let platform: Platform =
                serde_json::from_slice(&bytes).map_err(|source| ClientError::Json { url: name.blob_url(&config.digest), source })?;
            let key = platform.key();
            if PLATFORMS.contains(&key.as_str()) {
                platforms.insert(key, manifest.digest.clone());
            }
        }
        Ok(Resolved { digest: manifest.digest, media_type: manifest.media_type, platforms })
    }

    /// Streams a blob of the reference's repository into `sink`, verifying its sha256
    /// while it streams; a mismatch is [`ClientError::DigestMismatch`] after the last byte
    /// (so write to a temporary file, and keep it only on success).
    pub async fn blob<W: AsyncWrite + Unpin>(&self, reference: &str, digest: &str, sink: &mut W) -> Result<Fetched, ClientError> {
        let name = Name::parse(reference)?;
        self.blob_of(&name, digest, sink, u64::MAX).await
    }

    async fn blob_of<W: AsyncWrite + Unpin>(&self, name: &Name, digest: &str, sink: &mut W, limit: u64) -> Result<Fetched, ClientError> {
        if !idp_core::lock::is_digest(digest) {
            return Err(invalid("digest", digest, "not sha256:<64 lowercase hex>"));
        }
        let (response, url) = self.registry_request(Method::GET, name, &format!("blobs/{digest}"), None).await?;
        if response.status != StatusCode::OK {
            return Err(Http::status_error(response).await);
        }
        if let Some(length) = response.header("content-length").and_then(|l| l.parse::<u64>().ok())
            && length > limit
        {
            return Err(ClientError::TooLarge { url, limit });
        }
        Http::stream_verified(response, "blob", Some(digest), sink).await
    }

    /// Downloads a plain URL (an upstream file) into `sink`, hashing while it streams;
    /// `expected` (`sha256:<hex>`) makes a different digest an error.
    pub async fn fetch<W: AsyncWrite + Unpin>(&self, url: &str, expected: Option<&str>, sink: &mut W) -> Result<Fetched, ClientError> {
        let response = self.http.send_following(Method::GET, url, &HeaderMap::new(), None).await?;
        if response.status != StatusCode::OK {
            return Err(Http::status_error(response).await);
        }
        Http::stream_verified(response, "file", expected, sink).await
    }

    /// A registry request for `rest` (`manifests/<ref>`, `blobs/<digest>`) through the
    /// registry's mirrors, then the registry ([`Name::urls`]): the first answer of 200, or
    /// the registry's own answer; with the URL that gave it.
    async fn registry_request(
        &self,
        method: Method,
        name: &Name,
        rest: &str,
        accept: Option<&str>,
    ) -> Result<(Response, String), ClientError> {
        let (mirrors, upstream) = name.urls(rest, &self.mirrors);
        for url in mirrors {
            match self.request_at(method.clone(), name, &url, accept).await {
                Ok(response) if response.status == StatusCode::OK => return Ok((response, url)),
                Ok(response) => tracing::debug!(%url, status = %response.status, "mirror passed over"),
                Err(error) => tracing::debug!(%url, error = %crate::bundle::chain(&error), "mirror passed over"),
            }
        }
        Ok((self.request_at(method, name, &upstream, accept).await?, upstream))
    }

    /// A request to one URL with the cached token of its host and scope; on a bearer
    /// challenge, a token from the challenge's realm and one retry. Redirects (blobs to a
    /// CDN) are followed without the token.
    async fn request_at(&self, method: Method, name: &Name, url: &str, accept: Option<&str>) -> Result<Response, ClientError> {
        let mut headers = HeaderMap::new();
        if let Some(accept) = accept {
            headers.insert(header::ACCEPT, HeaderValue::from_str(accept).map_err(|e| invalid("header", accept, e.to_string()))?);
        }
        let host = url.split('/').nth(2).unwrap_or_default();
        let key = format!("{host}/{}/{}", name.registry, name.repository);
        let cached = self.tokens.lock().ok().and_then(|t| t.get(&key).cloned());
        let response = self.http.send_following(method.clone(), url, &headers, cached.as_ref()).await?;
        if response.status != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        let challenge_text = response.header("www-authenticate").unwrap_or_default().to_owned();
        let challenge = parse_challenge(&challenge_text).filter(|c| c.scheme.eq_ignore_ascii_case("bearer"));
        let Some(challenge) = challenge else {
            return Err(ClientError::AuthRequired { url: url.to_owned(), challenge: challenge_text });
        };
        let token = self.token(&challenge, name, url).await?;
        if let Ok(mut tokens) = self.tokens.lock() {
            tokens.insert(key, token.clone());
        }
        let response = self.http.send_following(method, url, &headers, Some(&token)).await?;
        if response.status == StatusCode::UNAUTHORIZED {
            let challenge = response.header("www-authenticate").unwrap_or_default().to_owned();
            return Err(ClientError::AuthRequired { url: url.to_owned(), challenge });
        }
        Ok(response)
    }

    /// An anonymous token from the challenge's realm (`GET realm?service=...&scope=...`).
    async fn token(&self, challenge: &Challenge, name: &Name, url: &str) -> Result<HeaderValue, ClientError> {
        let realm = challenge
            .params
            .get("realm")
            .ok_or_else(|| ClientError::Protocol { url: url.to_owned(), reason: "a bearer challenge without a realm".into() })?;
        let mut query = Vec::new();
        if let Some(service) = challenge.params.get("service") {
            query.push(format!("service={}", encode(service)));
        }
        let scope = challenge.params.get("scope").cloned().unwrap_or_else(|| format!("repository:{}:pull", name.repository));
        query.push(format!("scope={}", encode(&scope)));
        let separator = if realm.contains('?') { '&' } else { '?' };
        let token_url = format!("{realm}{separator}{}", query.join("&"));
        let response = self.http.send_following(Method::GET, &token_url, &HeaderMap::new(), None).await?;
        if response.status != StatusCode::OK {
            return Err(Http::status_error(response).await);
        }
        let bytes = Http::read_limited(response, 1024 * 1024).await?;
        let body: TokenResponse = serde_json::from_slice(&bytes).map_err(|source| ClientError::Json { url: realm.clone(), source })?;
        let token = body
            .token
            .or(body.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ClientError::Protocol { url: realm.clone(), reason: "the token response has no token".into() })?;
        HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| ClientError::Protocol { url: realm.clone(), reason: "the token is not a header value".into() })
    }
}

/// Percent-encodes a query value (RFC 3986 unreserved characters stay).
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-._~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

#[cfg(test)]
mod tests;
