//! A handle on one cluster's API: readiness of the API server and of its nodes.

use std::time::{Duration, Instant};

use idp_core::cluster::{KubeNode, NodeSpec, node_mismatches};
use k8s_openapi::api::core::v1::{Node, Taint};
use kube::Api;
use kube::api::ListParams;
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::KubeError;

/// How often [`Cluster::wait_for_nodes`] looks again.
const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// How long making a TCP connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The client for `config`: kube's own stack (base URI, authentication, extra headers,
/// rustls with ring) over a connector with `TCP_NODELAY`. kube's default connector leaves
/// Nagle's algorithm on, and each new connection's first request then waits ~40 ms for
/// the server's delayed ACK, which is most of what a no-op apply costs. A kubeconfig
/// with a `proxy-url` gets kube's default client, which knows proxies.
fn client(config: kube::Config) -> Result<kube::Client, KubeError> {
    use kube::client::ConfigExt as _;
    if config.proxy_url.is_some() {
        return kube::Client::try_from(config).map_err(KubeError::client);
    }
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    let https = config.rustls_https_connector_with_connector(http).map_err(KubeError::client)?;
    let hyper = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(https);
    let service = tower::ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer().map_err(KubeError::client)?)
        .layer(config.extra_headers_layer().map_err(KubeError::client)?)
        .map_err(|e: hyper_util::client::legacy::Error| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
        .service(hyper);
    Ok(kube::Client::new(service, config.default_namespace))
}

/// A connection to one cluster's API server, made from a kubeconfig. Cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    client: kube::Client,
    server: String,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("server", &self.server).finish_non_exhaustive()
    }
}

impl Cluster {
    /// Connects with the kubeconfig `text`, through `context` or, when `None`, its
    /// `current-context`. Nothing is sent yet: [`Cluster::readyz`] is the first request.
    ///
    /// Certificates and keys referenced by path are read now; relative paths are relative
    /// to the working directory.
    pub async fn from_kubeconfig(text: &str, context: Option<&str>) -> Result<Cluster, KubeError> {
        let kubeconfig =
            Kubeconfig::from_yaml(text).map_err(|e| KubeError::Parse { what: "the kubeconfig".into(), source: Box::new(e) })?;
        if let Some(wanted) = context
            && !kubeconfig.contexts.iter().any(|c| c.name == wanted)
        {
            let have: Vec<&str> = kubeconfig.contexts.iter().map(|c| c.name.as_str()).collect();
            return Err(KubeError::Invalid {
                what: "the kubeconfig".into(),
                problem: format!(
                    "it has no context {wanted:?} (it has: {})",
                    if have.is_empty() { "none".into() } else { have.join(", ") }
                ),
            });
        }
        let options = KubeConfigOptions { context: context.map(str::to_owned), ..KubeConfigOptions::default() };
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options).await.map_err(KubeError::client)?;
        let server = config.cluster_url.to_string().trim_end_matches('/').to_owned();
        let client = client(config)?;
        Ok(Cluster { client, server })
    }

    /// The API server's URL, as the kubeconfig names it.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The client, for the rest of this crate.
    pub(crate) fn client(&self) -> &kube::Client {
        &self.client
    }

    /// Asks the API server whether it is ready (`GET /readyz`); an answer other than
    /// `ok` is [`KubeError::NotReady`] with the status and the failing checks.
    pub async fn readyz(&self) -> Result<(), KubeError> {
        let request = http::Request::get("/readyz").body(Vec::new()).map_err(|e| self.api_error("ask /readyz", e))?;
        match self.client.request_text(request).await {
            Ok(body) if body.trim() == "ok" => Ok(()),
            Ok(body) => Err(KubeError::NotReady { server: self.server.clone(), status: 200, body: failing_checks(&body) }),
            Err(kube::Error::Api(status)) if status.code != 0 => {
                Err(KubeError::NotReady { server: self.server.clone(), status: status.code, body: failing_checks(&status.message) })
            }
            Err(e) => Err(self.api_error("ask /readyz", e)),
        }
    }

    /// The cluster's nodes, sorted by name.
    pub async fn nodes(&self) -> Result<Vec<KubeNode>, KubeError> {
        let api: Api<Node> = Api::all(self.client.clone());
        let list = api.list(&ListParams::default()).await.map_err(|e| self.api_error("list nodes", e))?;
        let mut nodes: Vec<KubeNode> = list.items.iter().map(kube_node).collect();
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(nodes)
    }

    /// Waits until every node of `expected` is registered and carries its labels and
    /// taints ([`node_mismatches`] is empty), and returns them in the order of
    /// `expected`. It does not wait for nodes to be `Ready`: without a CNI (k3s with
    /// `--flannel-backend=none`, before Cilium runs) they stay `NotReady`.
    ///
    /// It first waits for `/readyz`, then lists the nodes every second. On timeout the
    /// error names each node that is missing or does not match, and the last attempt's
    /// error if it failed.
    pub async fn wait_for_nodes(&self, expected: &[NodeSpec], timeout: Duration) -> Result<Vec<KubeNode>, KubeError> {
        let started = Instant::now();
        let deadline = started + timeout;
        let mut problems = vec!["the API server has not answered /readyz with ok yet".to_owned()];
        let mut last_error: Option<KubeError> = None;
        let mut api_ready = false;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if !api_ready {
                last_error = match tokio::time::timeout(remaining, self.readyz()).await {
                    Ok(Ok(())) => {
                        api_ready = true;
                        problems = vec!["the nodes have not been listed yet".to_owned()];
                        None
                    }
                    Ok(Err(e)) => Some(e),
                    // Cut off by the deadline: the attempt before it says why.
                    Err(_) => last_error.take(),
                };
            }
            if api_ready {
                let remaining = deadline.saturating_duration_since(Instant::now());
                last_error = match tokio::time::timeout(remaining, self.nodes()).await {
                    Ok(Ok(nodes)) => {
                        let (found, now) = match_nodes(expected, &nodes);
                        if now.is_empty() {
                            tracing::debug!(server = %self.server, nodes = found.len(), waited = ?started.elapsed(), "every node registered");
                            return Ok(found);
                        }
                        tracing::debug!(server = %self.server, problems = ?now, "nodes not there yet");
                        problems = now;
                        None
                    }
                    Ok(Err(e)) => Some(e),
                    Err(_) => last_error.take(),
                };
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(KubeError::NodesTimeout {
                    server: self.server.clone(),
                    waited: started.elapsed(),
                    problems,
                    last_error: last_error.map(Box::new),
                });
            }
            tokio::time::sleep(POLL_INTERVAL.min(remaining)).await;
        }
    }

    fn api_error(&self, action: &'static str, e: impl std::error::Error + Send + Sync + 'static) -> KubeError {
        KubeError::api(action, &self.server, e)
    }
}

/// The failing checks of a `/readyz` answer (`[-]etcd failed: reason withheld`), joined
/// on one line; the whole answer on one line when it lists none.
fn failing_checks(body: &str) -> String {
    let failing: Vec<&str> = body.lines().map(str::trim).filter(|l| l.starts_with("[-]")).collect();
    if failing.is_empty() { body.split_whitespace().collect::<Vec<_>>().join(" ") } else { failing.join("; ") }
}

/// The expected nodes as found (in the order of `expected`), and one line per node that
/// is missing or does not match. Done when the second is empty.
fn match_nodes(expected: &[NodeSpec], nodes: &[KubeNode]) -> (Vec<KubeNode>, Vec<String>) {
    let mut found = Vec::new();
    let mut problems = Vec::new();
    for spec in expected {
        let Some(node) = nodes.iter().find(|n| n.name == spec.name) else {
            problems.push(format!("node {} is not registered", spec.name));
            continue;
        };
        let mismatches = node_mismatches(spec, node);
        if mismatches.is_empty() {
            found.push(node.clone());
        } else {
            problems.push(format!("node {}: {}", spec.name, mismatches.join(", ")));
        }
    }
    (found, problems)
}

/// A Node object reduced to what provisioning checks.
fn kube_node(node: &Node) -> KubeNode {
    let status = node.status.as_ref();
    let ready = status.and_then(|s| s.conditions.as_ref()).and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"));
    let is_ready = ready.is_some_and(|c| c.status == "True");
    let not_ready_because = (!is_ready).then(|| match ready {
        None => "no Ready condition yet".to_owned(),
        Some(c) => {
            let parts: Vec<&str> = [c.reason.as_deref(), c.message.as_deref()].into_iter().flatten().filter(|s| !s.is_empty()).collect();
            if parts.is_empty() { format!("Ready is {}", c.status) } else { parts.join(": ") }
        }
    });
    KubeNode {
        name: node.metadata.name.clone().unwrap_or_default(),
        labels: node.metadata.labels.clone().unwrap_or_default(),
        taints: node.spec.as_ref().and_then(|s| s.taints.as_ref()).map(|ts| ts.iter().map(taint_string).collect()).unwrap_or_default(),
        ready: is_ready,
        not_ready_because,
        memory_capacity: status.and_then(|s| s.capacity.as_ref()).and_then(|c| c.get("memory")).map(|q| q.0.clone()),
        internal_ip: status
            .and_then(|s| s.addresses.as_ref())
            .and_then(|a| a.iter().find(|a| a.type_ == "InternalIP"))
            .map(|a| a.address.clone()),
    }
}

/// `key=value:Effect`, or `key:Effect` without a value (as k3s' `--node-taint` takes them).
fn taint_string(t: &Taint) -> String {
    match t.value.as_deref() {
        Some(value) if !value.is_empty() => format!("{}={value}:{}", t.key, t.effect),
        _ => format!("{}:{}", t.key, t.effect),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeAddress, NodeCondition, NodeSpec as CoreNodeSpec, NodeStatus};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use kube::api::ObjectMeta;
    use std::collections::BTreeMap;

    fn node(ready: Option<(&str, Option<&str>, Option<&str>)>) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some("lab-agent-0".into()),
                labels: Some(BTreeMap::from([("role".to_owned(), "apps".to_owned())])),
                ..ObjectMeta::default()
            },
            spec: Some(CoreNodeSpec {
                taints: Some(vec![
                    Taint { key: "dedicated".into(), value: Some("apps".into()), effect: "NoSchedule".into(), ..Taint::default() },
                    Taint { key: "gpu".into(), value: None, effect: "NoExecute".into(), ..Taint::default() },
                    Taint { key: "empty".into(), value: Some(String::new()), effect: "PreferNoSchedule".into(), ..Taint::default() },
                ]),
                ..CoreNodeSpec::default()
            }),
            status: Some(NodeStatus {
                capacity: Some(BTreeMap::from([("memory".to_owned(), Quantity("4194304Ki".into()))])),
                addresses: Some(vec![
                    NodeAddress { type_: "Hostname".into(), address: "lab-agent-0".into() },
                    NodeAddress { type_: "InternalIP".into(), address: "172.30.0.16".into() },
                ]),
                conditions: ready.map(|(status, reason, message)| {
                    vec![NodeCondition {
                        type_: "Ready".into(),
                        status: status.into(),
                        reason: reason.map(str::to_owned),
                        message: message.map(str::to_owned),
                        ..NodeCondition::default()
                    }]
                }),
                ..NodeStatus::default()
            }),
        }
    }

    #[test]
    fn readyz_answers_are_reduced_to_their_failing_checks() {
        let body = "[+]ping ok\n[+]log ok\n[-]etcd failed: reason withheld\n[+]poststarthook/start-kube-aggregator-informers ok\n[-]poststarthook/crd-informer-synced failed: reason withheld\nreadyz check failed\n";
        assert_eq!(failing_checks(body), "[-]etcd failed: reason withheld; [-]poststarthook/crd-informer-synced failed: reason withheld");
        assert_eq!(failing_checks("  service\n unavailable\n"), "service unavailable");
    }

    #[test]
    fn maps_a_node_that_is_not_ready() {
        let n = kube_node(&node(Some(("False", Some("KubeletNotReady"), Some("cni plugin not initialized")))));
        assert_eq!(n.name, "lab-agent-0");
        assert_eq!(n.labels.get("role").map(String::as_str), Some("apps"));
        assert_eq!(n.taints, ["dedicated=apps:NoSchedule", "gpu:NoExecute", "empty:PreferNoSchedule"]);
        assert!(!n.ready);
        assert_eq!(n.not_ready_because.as_deref(), Some("KubeletNotReady: cni plugin not initialized"));
        assert_eq!(n.memory_capacity.as_deref(), Some("4194304Ki"));
        assert_eq!(n.internal_ip.as_deref(), Some("172.30.0.16"));
    }

    #[test]
    fn says_why_a_node_is_not_ready_without_reason_or_condition() {
        assert_eq!(kube_node(&node(Some(("Unknown", None, None)))).not_ready_because.as_deref(), Some("Ready is Unknown"));
        assert_eq!(kube_node(&node(None)).not_ready_because.as_deref(), Some("no Ready condition yet"));
        let ready = kube_node(&node(Some(("True", Some("KubeletReady"), None))));
        assert!(ready.ready);
        assert_eq!(ready.not_ready_because, None);
    }

    #[test]
    fn a_node_without_spec_or_status_maps_to_empty_fields() {
        let n = kube_node(&Node { metadata: ObjectMeta { name: Some("bare".into()), ..ObjectMeta::default() }, ..Node::default() });
        assert_eq!(n, KubeNode { name: "bare".into(), not_ready_because: Some("no Ready condition yet".into()), ..KubeNode::default() });
    }
}
