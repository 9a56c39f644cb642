//! The HTTP transport the clients share: HTTP/1.1 over rustls with the ring provider and
//! Mozilla's roots (no OpenSSL, no system certificate probing), plain HTTP only to loopback
//! hosts (and to a registry the caller named as `http://`, see [`crate::publish`]), redirects
//! followed by hand (credentials never leave the host they were for), and bodies streamed
//! through a sha256 while they are written.

use crate::error::ClientError;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use sha2::{Digest as _, Sha256};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// How long a connection, or the response headers, may take.
pub(crate) const HEADERS_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a body may stall between two chunks.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Redirects followed per request (registries send blobs to a CDN; GitHub to its object store).
pub(crate) const MAX_REDIRECTS: usize = 5;

const USER_AGENT: &str = concat!("idp-lab/", env!("CARGO_PKG_VERSION"));

/// A response whose headers arrived; the body is still on the wire.
pub(crate) struct Response {
    pub(crate) url: String,
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Incoming,
}

impl Response {
    /// A header as text.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// What a streamed download wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// `sha256:<hex>` of the bytes.
    pub digest: String,
    /// How many bytes.
    pub size: u64,
}

/// The shared HTTP client (cheap to clone: one connection pool).
#[derive(Clone)]
pub(crate) struct Http {
    client: HyperClient<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl Http {
    pub(crate) fn new() -> Result<Http, ClientError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(ClientError::Tls)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(HEADERS_TIMEOUT));
        let connector = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http().enable_http1().wrap_connector(http);
        let client = HyperClient::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build(connector);
        Ok(Http { client })
    }

    /// One request, no redirects followed. `headers` go out as given.
    pub(crate) async fn send(&self, method: Method, url: &str, headers: &HeaderMap) -> Result<Response, ClientError> {
        let uri = checked_uri(url)?;
        self.send_uri(method, url, uri, headers, Bytes::new()).await
    }

    /// One request with a body (`Content-Length` from its size), no redirects followed.
    /// `plain_http` allows `http://` to any host: for a registry the caller named by an
    /// `http://` URL (the lab registry on the lab network's gateway, which is not loopback).
    pub(crate) async fn send_body(
        &self,
        method: Method,
        url: &str,
        headers: &HeaderMap,
        body: Bytes,
        plain_http: bool,
    ) -> Result<Response, ClientError> {
        let uri = if plain_http { any_http_uri(url)? } else { checked_uri(url)? };
        self.send_uri(method, url, uri, headers, body).await
    }

    async fn send_uri(&self, method: Method, url: &str, uri: Uri, headers: &HeaderMap, body: Bytes) -> Result<Response, ClientError> {
        let mut request = Request::builder().method(method.clone()).uri(uri);
        if let Some(h) = request.headers_mut() {
            h.extend(headers.iter().map(|(k, v)| (k.clone(), v.clone())));
            h.insert(header::USER_AGENT, HeaderValue::from_static(USER_AGENT));
        }
        let request = request.body(Full::new(body)).map_err(|e| invalid("URL", url, e.to_string()))?;
        let response = tokio::time::timeout(HEADERS_TIMEOUT, self.client.request(request))
            .await
            .map_err(|_| ClientError::Timeout { url: url.to_owned(), seconds: HEADERS_TIMEOUT.as_secs() })?
            .map_err(|source| ClientError::Request { method: method.to_string(), url: url.to_owned(), source })?;
        let (parts, body) = response.into_parts();
        Ok(Response { url: url.to_owned(), status: parts.status, headers: parts.headers, body })
    }

    /// A request that follows redirects; `auth` (an `Authorization` value) is sent only to
    /// the host of `url`, never to where it redirects.
    pub(crate) async fn send_following(
        &self,
        method: Method,
        url: &str,
        headers: &HeaderMap,
        auth: Option<&HeaderValue>,
    ) -> Result<Response, ClientError> {
        let origin = authority(url);
        let mut current = url.to_owned();
        for _ in 0..=MAX_REDIRECTS {
            let mut h = headers.clone();
            if let Some(auth) = auth
                && authority(&current) == origin
            {
                h.insert(header::AUTHORIZATION, auth.clone());
            }
            let response = self.send(method.clone(), &current, &h).await?;
            if !response.status.is_redirection() || response.status == StatusCode::NOT_MODIFIED {
                return Ok(response);
            }
            let location = response
                .header("location")
                .ok_or_else(|| ClientError::Protocol { url: current.clone(), reason: format!("{} without a Location", response.status) })?;
            current = join_url(&current, location)?;
        }
        Err(ClientError::Redirects { url: url.to_owned(), limit: MAX_REDIRECTS })
    }

    /// The whole body, at most `limit` bytes.
    pub(crate) async fn read_limited(response: Response, limit: u64) -> Result<Vec<u8>, ClientError> {
        let url = response.url.clone();
        let mut out = Vec::new();
        stream_body(response, |chunk| {
            if out.len() as u64 + chunk.len() as u64 > limit {
                return Err(ClientError::TooLarge { url: url.clone(), limit });
            }
            out.extend_from_slice(chunk);
            Ok(())
        })
        .await?;
        Ok(out)
    }

    /// Streams the body into `sink`, hashing as it goes; when `expected` (`sha256:<hex>`)
    /// is given, a different digest is an error once the last byte arrived. The sink has
    /// then seen the bytes: write to a temporary file and keep it only on success.
    pub(crate) async fn stream_verified<W: AsyncWrite + Unpin>(
        response: Response,
        what: &'static str,
        expected: Option<&str>,
        sink: &mut W,
    ) -> Result<Fetched, ClientError> {
        let url = response.url.clone();
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut body = response.body;
        loop {
            let frame = tokio::time::timeout(IDLE_TIMEOUT, body.frame())
                .await
                .map_err(|_| ClientError::Timeout { url: url.clone(), seconds: IDLE_TIMEOUT.as_secs() })?;
            let Some(frame) = frame else { break };
            let frame = frame.map_err(|source| ClientError::Body { url: url.clone(), source })?;
            let Ok(chunk) = frame.into_data() else { continue };
            hasher.update(&chunk);
            size += chunk.len() as u64;
            sink.write_all(&chunk).await.map_err(|source| ClientError::Write { url: url.clone(), source })?;
        }
        sink.flush().await.map_err(|source| ClientError::Write { url: url.clone(), source })?;
        let digest = format!("sha256:{}", hex(&hasher.finalize()));
        if let Some(expected) = expected
            && expected != digest
        {
            return Err(ClientError::DigestMismatch { what, url, expected: expected.to_owned(), actual: digest });
        }
        Ok(Fetched { digest, size })
    }

    /// Reads a body that explains an error status (at most 1 KiB of it, best effort).
    pub(crate) async fn status_error(response: Response) -> ClientError {
        let url = response.url.clone();
        let status = response.status.as_u16();
        let mut detail = Vec::new();
        let _ = stream_body(response, |chunk| {
            let room = 1024usize.saturating_sub(detail.len());
            detail.extend_from_slice(&chunk[..chunk.len().min(room)]);
            Ok(())
        })
        .await;
        let mut detail = String::from_utf8_lossy(&detail).split_whitespace().collect::<Vec<_>>().join(" ");
        // An HTML error page says nothing the status does not; JSON errors are kept, short.
        if detail.starts_with('<') {
            detail.clear();
        }
        if detail.chars().count() > 300 {
            detail = detail.chars().take(300).chain("...".chars()).collect();
        }
        ClientError::Status { url, status, detail }
    }
}

async fn stream_body(response: Response, mut each: impl FnMut(&[u8]) -> Result<(), ClientError>) -> Result<(), ClientError> {
    let url = response.url;
    let mut body = response.body;
    loop {
        let frame = tokio::time::timeout(IDLE_TIMEOUT, body.frame())
            .await
            .map_err(|_| ClientError::Timeout { url: url.clone(), seconds: IDLE_TIMEOUT.as_secs() })?;
        let Some(frame) = frame else { return Ok(()) };
        let frame = frame.map_err(|source| ClientError::Body { url: url.clone(), source })?;
        if let Ok(chunk) = frame.into_data() {
            each(&chunk)?;
        }
    }
}

/// Lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `sha256:<hex>` of some bytes.
pub(crate) fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

pub(crate) fn invalid(what: &'static str, value: &str, reason: impl Into<String>) -> ClientError {
    ClientError::Invalid { what, value: value.to_owned(), reason: reason.into() }
}

/// Whether a host (with or without port) is a loopback name, where plain HTTP is allowed.
pub fn is_loopback_host(authority: &str) -> bool {
    let host = match authority.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The URL as a URI, if its scheme is allowed: https anywhere, http to loopback only.
fn checked_uri(url: &str) -> Result<Uri, ClientError> {
    let uri: Uri = url.parse().map_err(|e: http::uri::InvalidUri| invalid("URL", url, e.to_string()))?;
    let host = uri.authority().map(|a| a.as_str()).unwrap_or_default();
    match uri.scheme_str() {
        Some("https") if !host.is_empty() => Ok(uri),
        Some("http") if is_loopback_host(host) => Ok(uri),
        Some("http") => Err(invalid("URL", url, "plain http is only used for 127.0.0.1 and localhost; use https")),
        _ => Err(invalid("URL", url, "not an http(s) URL")),
    }
}

/// The URL as a URI if it is http(s) with a host, whatever the host.
fn any_http_uri(url: &str) -> Result<Uri, ClientError> {
    let uri: Uri = url.parse().map_err(|e: http::uri::InvalidUri| invalid("URL", url, e.to_string()))?;
    let host = uri.authority().map(|a| a.as_str()).unwrap_or_default();
    match uri.scheme_str() {
        Some("https" | "http") if !host.is_empty() => Ok(uri),
        _ => Err(invalid("URL", url, "not an http(s) URL")),
    }
}

pub(crate) fn authority(url: &str) -> String {
    url.parse::<Uri>().ok().and_then(|u| u.authority().map(|a| a.as_str().to_ascii_lowercase())).unwrap_or_default()
}

/// Resolves a `Location` (absolute, scheme-relative, absolute-path or relative) against
/// the URL it came from.
pub(crate) fn join_url(base: &str, location: &str) -> Result<String, ClientError> {
    if location.starts_with("https://") || location.starts_with("http://") {
        return Ok(location.to_owned());
    }
    let uri: Uri = base.parse().map_err(|e: http::uri::InvalidUri| invalid("URL", base, e.to_string()))?;
    let scheme = uri.scheme_str().unwrap_or("https");
    let authority = uri.authority().map(|a| a.as_str()).unwrap_or_default();
    if let Some(rest) = location.strip_prefix("//") {
        return Ok(format!("{scheme}://{rest}"));
    }
    if location.starts_with('/') {
        return Ok(format!("{scheme}://{authority}{location}"));
    }
    let path = uri.path();
    let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
    Ok(format!("{scheme}://{authority}{dir}/{location}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_is_for_loopback_only() {
        assert!(checked_uri("http://127.0.0.1:5000/v2/").is_ok());
        assert!(checked_uri("http://localhost:8080/index.yaml").is_ok());
        assert!(checked_uri("http://[::1]:5000/v2/").is_ok());
        assert!(checked_uri("https://quay.io/v2/").is_ok());
        assert!(checked_uri("http://quay.io/v2/").is_err());
        assert!(checked_uri("http://127.0.0.1.nip.io/v2/").is_err());
        assert!(checked_uri("ftp://127.0.0.1/x").is_err());
        // A registry named by an http:// URL may be anywhere (the lab network's gateway).
        assert!(any_http_uri("http://172.30.0.1:5000/v2/").is_ok());
        assert!(any_http_uri("ftp://172.30.0.1/x").is_err());
        assert!(any_http_uri("http:///v2/").is_err());
    }

    #[test]
    fn redirects_resolve_against_their_origin() {
        let base = "https://charts.example.org/stable/index.yaml";
        assert_eq!(join_url(base, "https://cdn.example.net/x.tgz").ok().as_deref(), Some("https://cdn.example.net/x.tgz"));
        assert_eq!(join_url(base, "/other/x.tgz").ok().as_deref(), Some("https://charts.example.org/other/x.tgz"));
        assert_eq!(join_url(base, "x-1.0.0.tgz").ok().as_deref(), Some("https://charts.example.org/stable/x-1.0.0.tgz"));
        assert_eq!(join_url(base, "//cdn.example.net/y").ok().as_deref(), Some("https://cdn.example.net/y"));
    }
}
