//! Reaching what runs inside the cluster through the API server, and the few core objects
//! the secrets plane keeps there.
//!
//! * [`Cluster::service_proxy`] and [`Cluster::pod_proxy`]: one HTTP request through the
//!   API server's proxy subresource (`/api/v1/namespaces/{ns}/services/{name}:{port}/proxy/{path}`,
//!   and `pods/{name}:{port}/proxy`), answered with the upstream's status and body. The
//!   host needs no network path to the cluster's pods: the API server dials them. Its own
//!   refusals (no endpoints, the upstream unreachable, RBAC) are errors, told apart from
//!   the upstream's answers by their `Status` body. The answer carries the upstream's
//!   headers (a login's `Set-Cookie`: the API server keeps `Authorization` for itself, so
//!   a session cookie is how an upstream's own login gets through).
//! * [`Cluster::secret_data`] and [`Cluster::apply_secret`]: one Secret's data, read and
//!   written (server-side apply as [`FIELD_MANAGER`](crate::FIELD_MANAGER)).
//! * [`Cluster::watch_pod`]: one pod's state as a stream, for triggers on restarts.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt as _;
use futures::stream::BoxStream;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, ObjectMeta, Patch, PatchParams};
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher::{self, Event};

use crate::{Cluster, KubeError};

/// How long one proxied request may take, headers and body, before it is given up.
pub const PROXY_TIMEOUT: Duration = Duration::from_secs(60);

/// One HTTP request for an upstream behind the API server's proxy. `Debug` shows header
/// names only, never their values (they carry tokens).
#[derive(Clone)]
pub struct ProxyRequest {
    /// The method.
    pub method: http::Method,
    /// The upstream's path and query without a leading `/`, e.g.
    /// `v1/sys/health?standbyok=true`.
    pub path: String,
    /// Headers to send to the upstream, e.g. `("X-Vault-Token", token)`. The API server
    /// consumes `Authorization` itself, so it never reaches the upstream.
    pub headers: Vec<(String, String)>,
    /// The body; empty for none.
    pub body: Vec<u8>,
}

impl std::fmt::Debug for ProxyRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("ProxyRequest")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("headers", &names)
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// The upstream's answer, whatever its status. `Debug` shows header names only, never
/// their values (a `Set-Cookie` carries a session).
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyResponse {
    /// The HTTP status code.
    pub status: u16,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// Every header as the API server passed it on (names lower-case), in order; a
    /// header sent twice (`Set-Cookie`) is here twice.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl ProxyResponse {
    /// The values of header `name` (any case), in order.
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

impl std::fmt::Debug for ProxyResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("ProxyResponse")
            .field("status", &self.status)
            .field("content_type", &self.content_type)
            .field("headers", &names)
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// One pod as a restart trigger sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodState {
    /// The pod's UID: a new one means the pod was recreated.
    pub uid: String,
    /// `status.phase` (`Pending`, `Running`, ...); empty before the kubelet reports one.
    pub phase: String,
    /// `status.podIP`, once assigned.
    pub pod_ip: Option<String>,
    /// The containers' statuses, in the order the kubelet reports them.
    pub containers: Vec<ContainerState>,
}

/// One container of a [`PodState`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerState {
    /// The container's name.
    pub name: String,
    /// How often the kubelet restarted it.
    pub restart_count: i32,
    /// When it started running (RFC 3339), while it runs; `None` while it waits or after
    /// it terminated.
    pub running_since: Option<String>,
    /// Whether its readiness probe passes.
    pub ready: bool,
}

/// What the API server says when it refuses to proxy, or why the request never got an
/// answer; the source of a [`KubeError::Api`].
#[derive(Debug, thiserror::Error)]
enum ProxyProblem {
    #[error("{target}: the API server answered {status}: {message}")]
    Refused { target: String, status: u16, message: String },
    #[error("{target}: {source}")]
    Send {
        target: String,
        #[source]
        source: kube::Error,
    },
    #[error("{target}: no answer within {}s", PROXY_TIMEOUT.as_secs())]
    TimedOut { target: String },
}

/// Whether `name` is a DNS-1123 subdomain (namespaces, Services and pods are named so).
fn is_dns_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !name.is_empty()
        && name.len() <= 253
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.'))
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
}

/// Whether `port` is a port number or a port name (`[a-z0-9-]`, at most 15 characters).
fn is_port(port: &str) -> bool {
    !port.is_empty() && port.len() <= 15 && port.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Why `path` cannot be appended to a proxy URL, if it cannot: it must stay below the
/// proxy subresource (no leading `/`, no `.` or `..` segment) and be plain URI text.
fn path_problem(path: &str) -> Option<&'static str> {
    let (path_part, _query) = path.split_once('?').unwrap_or((path, ""));
    if path.starts_with('/') {
        return Some("the path must not start with '/'");
    }
    if path_part.split('/').any(|segment| segment == "." || segment == "..") {
        return Some("the path must not have '.' or '..' segments");
    }
    if path.bytes().any(|b| b.is_ascii_control() || b == b' ' || b == b'#' || !b.is_ascii()) {
        return Some("the path must be URI text without spaces, control characters or '#'");
    }
    None
}

/// The API server's own error, if `body` is one (a `Status` object): its message.
fn api_server_status(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    if value.get("kind")?.as_str()? != "Status" || value.get("apiVersion")?.as_str()? != "v1" {
        return None;
    }
    let message = value.get("message").and_then(serde_json::Value::as_str).unwrap_or_default();
    let reason = value.get("reason").and_then(serde_json::Value::as_str).unwrap_or_default();
    Some(match (reason.is_empty(), message.is_empty()) {
        (_, false) => message.to_owned(),
        (false, true) => reason.to_owned(),
        (true, true) => "no message".to_owned(),
    })
}

impl Cluster {
    /// Sends `request` to port `port` (number or name) of Service `service` in
    /// `namespace` through the API server's service proxy, and returns the upstream's
    /// answer whatever its status.
    ///
    /// The API server picks one of the Service's endpoints and dials it; it refuses
    /// endpoints on loopback or link-local addresses, and endpoints without a pod whose IP
    /// they name. Its refusals (`no endpoints available`, `error trying to reach
    /// service`, a 403) are [`KubeError::Api`], as are a failed connection to the API
    /// server and no answer within [`PROXY_TIMEOUT`]. Names that are not DNS names, or a
    /// path that would leave the proxy subresource, are [`KubeError::Invalid`] and
    /// nothing is sent.
    pub async fn service_proxy(
        &self,
        namespace: &str,
        service: &str,
        port: &str,
        request: ProxyRequest,
    ) -> Result<ProxyResponse, KubeError> {
        self.proxy("services", namespace, service, port, request).await
    }

    /// Like [`Cluster::service_proxy`], to port `port` of pod `pod` in `namespace`
    /// (`pods/{pod}:{port}/proxy`): the API server dials the pod's IP.
    pub async fn pod_proxy(&self, namespace: &str, pod: &str, port: &str, request: ProxyRequest) -> Result<ProxyResponse, KubeError> {
        self.proxy("pods", namespace, pod, port, request).await
    }

    async fn proxy(
        &self,
        resource: &'static str,
        namespace: &str,
        name: &str,
        port: &str,
        request: ProxyRequest,
    ) -> Result<ProxyResponse, KubeError> {
        let kind = if resource == "pods" { "pod" } else { "service" };
        let target = format!("{kind} {namespace}/{name}:{port}");
        let invalid = |problem: String| KubeError::Invalid { what: target.clone(), problem };
        if !is_dns_name(namespace) || !is_dns_name(name) {
            return Err(invalid("the namespace and name must be DNS names (lower-case letters, digits, '-' and '.')".into()));
        }
        if !is_port(port) {
            return Err(invalid(format!("{port:?} is neither a port number nor a port name")));
        }
        if let Some(problem) = path_problem(&request.path) {
            return Err(invalid(format!("cannot proxy {:?}: {problem}", request.path)));
        }
        let uri = format!("/api/v1/namespaces/{namespace}/{resource}/{name}:{port}/proxy/{}", request.path);
        let mut builder = http::Request::builder().method(request.method.clone()).uri(&uri);
        for (header, value) in &request.headers {
            builder = builder.header(header.as_str(), value.as_str());
        }
        let http_request =
            builder.body(kube::client::Body::from(request.body)).map_err(|e| invalid(format!("cannot build the request: {e}")))?;
        let action = "send a request through the API server's proxy";
        let exchange = async {
            let response = self.client().send(http_request).await?;
            let status = response.status().as_u16();
            let content_type = response.headers().get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
            let headers = response
                .headers()
                .iter()
                .filter_map(|(name, value)| Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned())))
                .collect();
            let body = response.into_body().collect_bytes().await?.to_vec();
            Ok::<_, kube::Error>(ProxyResponse { status, content_type, headers, body })
        };
        let response = match tokio::time::timeout(PROXY_TIMEOUT, exchange).await {
            Err(_) => return Err(KubeError::api(action, self.server(), ProxyProblem::TimedOut { target })),
            Ok(Err(source)) => return Err(KubeError::api(action, self.server(), ProxyProblem::Send { target, source })),
            Ok(Ok(response)) => response,
        };
        if response.status >= 400
            && let Some(message) = api_server_status(&response.body)
        {
            return Err(KubeError::api(action, self.server(), ProxyProblem::Refused { target, status: response.status, message }));
        }
        tracing::debug!(%target, method = %request.method, path = %request.path, status = response.status, "proxied");
        Ok(response)
    }

    /// Whether Service `name` exists in `namespace` (a proxy to a missing one is refused
    /// with 404, which says nothing about the program behind it).
    pub async fn service_exists(&self, namespace: &str, name: &str) -> Result<bool, KubeError> {
        let api: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(self.client().clone(), namespace);
        Ok(api.get_opt(name).await.map_err(|e| KubeError::api("read a Service", self.server(), e))?.is_some())
    }

    /// The data of Secret `name` in `namespace`, or `None` when there is no such Secret.
    pub async fn secret_data(&self, namespace: &str, name: &str) -> Result<Option<BTreeMap<String, Vec<u8>>>, KubeError> {
        let api: Api<Secret> = Api::namespaced(self.client().clone(), namespace);
        let secret = api.get_opt(name).await.map_err(|e| KubeError::api("read a Secret", self.server(), e))?;
        Ok(secret.map(|s| s.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect()))
    }

    /// Makes Secret `name` in `namespace` (type `Opaque`) hold exactly `data`, with
    /// `labels`, by server-side apply as [`FIELD_MANAGER`](crate::FIELD_MANAGER). The
    /// namespace must exist.
    pub async fn apply_secret(
        &self,
        namespace: &str,
        name: &str,
        labels: &BTreeMap<String, String>,
        data: &BTreeMap<String, Vec<u8>>,
    ) -> Result<(), KubeError> {
        let api: Api<Secret> = Api::namespaced(self.client().clone(), namespace);
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some(namespace.to_owned()),
                labels: (!labels.is_empty()).then(|| labels.clone()),
                ..ObjectMeta::default()
            },
            type_: Some("Opaque".to_owned()),
            data: Some(data.iter().map(|(k, v)| (k.clone(), ByteString(v.clone()))).collect()),
            ..Secret::default()
        };
        // Server-side apply wants apiVersion and kind in the body; the typed struct
        // leaves them out.
        let mut body = serde_json::to_value(&secret).map_err(|e| KubeError::api("write a Secret", self.server(), e))?;
        if let Some(object) = body.as_object_mut() {
            object.insert("apiVersion".into(), "v1".into());
            object.insert("kind".into(), "Secret".into());
        }
        let params = PatchParams::apply(crate::FIELD_MANAGER).force();
        api.patch(name, &params, &Patch::Apply(&body)).await.map_err(|e| KubeError::api("write a Secret", self.server(), e))?;
        Ok(())
    }

    /// Watches pod `name` in `namespace`: an item whenever the watch sees it change
    /// (`Some` with its state) or go (`None`), and `None` once at the start when it does
    /// not exist. A relist after a dropped watch repeats the current state, so consumers
    /// compare with what they saw. A failing watch yields its error and is retried with
    /// kube's default backoff; the stream never ends on its own.
    pub fn watch_pod(&self, namespace: &str, name: &str) -> BoxStream<'static, Result<Option<PodState>, KubeError>> {
        let api: Api<Pod> = Api::namespaced(self.client().clone(), namespace);
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let server = self.server().to_owned();
        watcher::watcher(api, config)
            .default_backoff()
            .scan(false, move |seen_in_list, event| {
                let item = match event {
                    Err(e) => Some(Err(KubeError::api("watch a pod", &server, e))),
                    Ok(Event::Init) => {
                        *seen_in_list = false;
                        None
                    }
                    Ok(Event::InitApply(pod)) => {
                        *seen_in_list = true;
                        Some(Ok(Some(pod_state(&pod))))
                    }
                    Ok(Event::InitDone) => (!*seen_in_list).then_some(Ok(None)),
                    Ok(Event::Apply(pod)) => Some(Ok(Some(pod_state(&pod)))),
                    Ok(Event::Delete(_)) => Some(Ok(None)),
                };
                std::future::ready(Some(item))
            })
            .filter_map(std::future::ready)
            .boxed()
    }
}

/// A Pod reduced to what a restart trigger needs.
fn pod_state(pod: &Pod) -> PodState {
    let status = pod.status.as_ref();
    let containers = status
        .and_then(|s| s.container_statuses.as_ref())
        .map(|statuses| {
            statuses
                .iter()
                .map(|c| ContainerState {
                    name: c.name.clone(),
                    restart_count: c.restart_count,
                    running_since: c
                        .state
                        .as_ref()
                        .and_then(|s| s.running.as_ref())
                        .map(|r| r.started_at.as_ref().map(|t| t.0.to_string()).unwrap_or_default()),
                    ready: c.ready,
                })
                .collect()
        })
        .unwrap_or_default();
    PodState {
        uid: pod.metadata.uid.clone().unwrap_or_default(),
        phase: status.and_then(|s| s.phase.clone()).unwrap_or_default(),
        pod_ip: status.and_then(|s| s.pod_ip.clone()),
        containers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_ports_and_paths_are_checked_before_anything_is_sent() {
        assert!(is_dns_name("vault-system") && is_dns_name("vault-0") && is_dns_name("a.b"));
        for bad in ["", "Vault", "-a", "a-", "a/b", "a:b", "a b"] {
            assert!(!is_dns_name(bad), "{bad:?}");
        }
        assert!(is_port("8200") && is_port("http"));
        for bad in ["", "8200/x", "HTTP", "a-very-long-port-name"] {
            assert!(!is_port(bad), "{bad:?}");
        }
        assert_eq!(path_problem("v1/sys/health?standbyok=true&x=../y"), None);
        assert_eq!(path_problem(""), None);
        assert!(path_problem("/v1/sys/health").is_some());
        assert!(path_problem("v1/../../secrets").is_some());
        assert!(path_problem("v1/./x").is_some());
        assert!(path_problem("v1/a b").is_some());
        assert!(path_problem("v1/a#b").is_some());
    }

    #[test]
    fn the_api_servers_own_refusals_are_told_apart() {
        let status = br#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"no endpoints available for service \"vault\"","reason":"ServiceUnavailable","code":503}"#;
        assert_eq!(api_server_status(status).as_deref(), Some("no endpoints available for service \"vault\""));
        let reason_only = br#"{"kind":"Status","apiVersion":"v1","reason":"Forbidden"}"#;
        assert_eq!(api_server_status(reason_only).as_deref(), Some("Forbidden"));
        assert_eq!(api_server_status(br#"{"errors":["permission denied"]}"#), None);
        assert_eq!(api_server_status(br#"{"initialized":true,"sealed":true}"#), None);
        assert_eq!(api_server_status(b"not json"), None);
    }

    #[test]
    fn a_request_never_shows_its_header_values() {
        let request = ProxyRequest {
            method: http::Method::GET,
            path: "v1/sys/health".into(),
            headers: vec![("X-Vault-Token".into(), "s.secret".into())],
            body: Vec::new(),
        };
        let shown = format!("{request:?}");
        assert!(shown.contains("X-Vault-Token") && !shown.contains("s.secret"), "{shown}");
        let response = ProxyResponse {
            status: 200,
            content_type: None,
            headers: vec![("set-cookie".into(), "grafana_session=s3cr3t; Path=/".into()), ("Set-Cookie".into(), "b=2".into())],
            body: Vec::new(),
        };
        let shown = format!("{response:?}");
        assert!(shown.contains("set-cookie") && !shown.contains("s3cr3t"), "{shown}");
        assert_eq!(response.header_values("SET-COOKIE").collect::<Vec<_>>(), ["grafana_session=s3cr3t; Path=/", "b=2"]);
    }
}
