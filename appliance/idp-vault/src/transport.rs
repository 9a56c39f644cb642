//! How requests reach Vault: the [`Transport`] trait and its two implementations.
//!
//! * [`HttpTransport`]: plain `http://` to a loopback address: an OpenBao or Vault on
//!   this machine (tests), or a port-forward to the cluster's Vault.
//! * [`ProxyTransport`]: through the API server's service (or pod) proxy with the lab's
//!   kubeconfig; the host needs no network path to the pod. This is how the lab reaches
//!   its Vault.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use idp_kube::Cluster;
use idp_kube::proxy::ProxyRequest;

use crate::error::{Cause, VaultError};

/// A boxed future, as [`Transport::send`] returns it.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How long a direct request may take, connection, headers and body.
const DIRECT_TIMEOUT: Duration = Duration::from_secs(30);

/// The header Vault reads its token from. (`Authorization: Bearer` would be consumed by
/// the API server's proxy.)
pub const TOKEN_HEADER: &str = "X-Vault-Token";

/// One request to Vault's API. `Debug` shows neither the token nor the body.
#[derive(Clone)]
pub struct Request {
    /// The method.
    pub method: http::Method,
    /// The path under `/v1/`, with its query, e.g. `sys/health?standbyok=true`.
    pub path: String,
    /// The token sent as [`TOKEN_HEADER`], if any.
    pub token: Option<String>,
    /// The body's content type, when there is a body.
    pub content_type: Option<&'static str>,
    /// The body (JSON); empty for none.
    pub body: Vec<u8>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// Vault's answer, whatever its status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The HTTP status.
    pub status: u16,
    /// The body.
    pub body: Vec<u8>,
}

/// Something that carries requests to one Vault and brings back its answers.
///
/// An answer with any status is `Ok`; `Err` means Vault did not answer (no connection,
/// the API server refused to proxy, a timeout).
pub trait Transport: Send + Sync {
    /// Sends one request.
    fn send(&self, request: Request) -> BoxFuture<'_, Result<Response, Cause>>;

    /// Where requests go, for messages: `http://127.0.0.1:8200`, or
    /// `service vault-system/vault:8200 through https://127.0.0.1:6443`.
    fn endpoint(&self) -> &str;
}

/// Plain HTTP to a loopback address (see the [module docs](self)).
#[derive(Clone)]
pub struct HttpTransport {
    base: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl std::fmt::Debug for HttpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpTransport").field("base", &self.base).finish_non_exhaustive()
    }
}

impl HttpTransport {
    /// A transport to `url`, `http://<loopback address or localhost>:<port>` with no
    /// path. Anything else (HTTPS, another host, credentials in the URL) is
    /// [`VaultError::Invalid`]: secrets do not cross a network in the clear.
    pub fn new(url: &str) -> Result<HttpTransport, VaultError> {
        let invalid = |problem: &str| VaultError::Invalid { what: format!("the Vault address {url:?}"), problem: problem.to_owned() };
        let uri: http::Uri = url.parse().map_err(|_| invalid("it is not a URL"))?;
        if uri.scheme_str() != Some("http") {
            return Err(invalid("only http:// is supported (to a loopback address, e.g. a port-forward)"));
        }
        let authority = uri.authority().ok_or_else(|| invalid("it has no host"))?;
        if authority.as_str().contains('@') {
            return Err(invalid("it must not hold credentials"));
        }
        let host = authority.host().trim_start_matches('[').trim_end_matches(']');
        let loopback = host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
        if !loopback {
            return Err(invalid("the host must be a loopback address (127.0.0.1, ::1 or localhost)"));
        }
        if authority.port_u16().is_none() {
            return Err(invalid("it has no port"));
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(invalid("it must not have a path or query"));
        }
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(DIRECT_TIMEOUT));
        let client = Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build(connector);
        Ok(HttpTransport { base: format!("http://{authority}"), client })
    }

    async fn exchange(&self, request: Request) -> Result<Response, Cause> {
        let uri = format!("{}/v1/{}", self.base, request.path);
        let mut builder = http::Request::builder().method(request.method).uri(uri);
        if let Some(token) = &request.token {
            builder = builder.header(TOKEN_HEADER, token);
        }
        if let Some(content_type) = request.content_type {
            builder = builder.header(http::header::CONTENT_TYPE, content_type);
        }
        let http_request = builder.body(Full::new(Bytes::from(request.body)))?;
        let exchange = async {
            let response = self.client.request(http_request).await?;
            let status = response.status().as_u16();
            let body = response.into_body().collect().await?.to_bytes().to_vec();
            Ok::<_, Cause>(Response { status, body })
        };
        tokio::time::timeout(DIRECT_TIMEOUT, exchange)
            .await
            .map_err(|_| -> Cause { format!("no answer within {}s", DIRECT_TIMEOUT.as_secs()).into() })?
    }
}

impl Transport for HttpTransport {
    fn send(&self, request: Request) -> BoxFuture<'_, Result<Response, Cause>> {
        Box::pin(self.exchange(request))
    }

    fn endpoint(&self) -> &str {
        &self.base
    }
}

/// What a [`ProxyTransport`] proxies to.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Target {
    Service,
    Pod,
}

/// Through the API server's service or pod proxy (see the [module docs](self)).
#[derive(Clone)]
pub struct ProxyTransport {
    cluster: Cluster,
    target: Target,
    namespace: String,
    name: String,
    port: String,
    endpoint: String,
}

impl std::fmt::Debug for ProxyTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyTransport").field("endpoint", &self.endpoint).finish_non_exhaustive()
    }
}

impl ProxyTransport {
    /// To port `port` of Service `service` in `namespace`.
    pub fn service(cluster: &Cluster, namespace: &str, service: &str, port: u16) -> ProxyTransport {
        ProxyTransport::new(cluster, Target::Service, namespace, service, port)
    }

    /// To port `port` of pod `pod` in `namespace` (the API server dials the pod's IP).
    pub fn pod(cluster: &Cluster, namespace: &str, pod: &str, port: u16) -> ProxyTransport {
        ProxyTransport::new(cluster, Target::Pod, namespace, pod, port)
    }

    fn new(cluster: &Cluster, target: Target, namespace: &str, name: &str, port: u16) -> ProxyTransport {
        let kind = match target {
            Target::Service => "service",
            Target::Pod => "pod",
        };
        ProxyTransport {
            cluster: cluster.clone(),
            endpoint: format!("{kind} {namespace}/{name}:{port} through {}", cluster.server()),
            target,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            port: port.to_string(),
        }
    }

    async fn exchange(&self, request: Request) -> Result<Response, Cause> {
        let mut headers = Vec::new();
        if let Some(token) = request.token {
            headers.push((TOKEN_HEADER.to_owned(), token));
        }
        if let Some(content_type) = request.content_type {
            headers.push((http::header::CONTENT_TYPE.as_str().to_owned(), content_type.to_owned()));
        }
        let proxied = ProxyRequest { method: request.method, path: format!("v1/{}", request.path), headers, body: request.body };
        let response = match self.target {
            Target::Service => self.cluster.service_proxy(&self.namespace, &self.name, &self.port, proxied).await?,
            Target::Pod => self.cluster.pod_proxy(&self.namespace, &self.name, &self.port, proxied).await?,
        };
        Ok(Response { status: response.status, body: response.body })
    }
}

impl Transport for ProxyTransport {
    fn send(&self, request: Request) -> BoxFuture<'_, Result<Response, Cause>> {
        Box::pin(self.exchange(request))
    }

    fn endpoint(&self) -> &str {
        &self.endpoint
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_addresses_must_be_plain_http_to_loopback() {
        for good in ["http://127.0.0.1:8200", "http://127.0.0.1:8200/", "http://localhost:1", "http://[::1]:8200"] {
            let transport = HttpTransport::new(good).unwrap_or_else(|e| panic!("{good}: {e}"));
            assert!(transport.endpoint().starts_with("http://"), "{}", transport.endpoint());
        }
        for (bad, says) in [
            ("https://127.0.0.1:8200", "only http://"),
            ("http://10.0.0.1:8200", "loopback"),
            ("http://vault.example:8200", "loopback"),
            ("http://127.0.0.1", "no port"),
            ("http://127.0.0.1:8200/v1", "path"),
            ("http://user:pw@127.0.0.1:8200", "credentials"),
            ("not a url", "not a URL"),
        ] {
            let err = HttpTransport::new(bad).err().unwrap_or_else(|| panic!("{bad} was accepted"));
            assert!(err.to_string().contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn requests_never_show_their_token_or_body() {
        let request = Request {
            method: http::Method::POST,
            path: "sys/unseal".into(),
            token: Some("s.root".into()),
            content_type: Some("application/json"),
            body: br#"{"key":"deadbeef"}"#.to_vec(),
        };
        let shown = format!("{request:?}");
        assert!(!shown.contains("s.root") && !shown.contains("deadbeef"), "{shown}");
    }
}
