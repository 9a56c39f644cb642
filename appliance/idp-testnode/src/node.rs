//! The `Node` object a kubelet would register: labels, taints, addresses and
//! a `Ready` condition, kept fresh by a heartbeat. There is no kubelet
//! behind it, so pods bound to it never start.
//!
//! `Ready` follows the pod network ([`Network`]): with flannel at once; with
//! `--flannel-backend=none` only once a CNI config exists. While the node is
//! not ready it carries `node.kubernetes.io/not-ready:NoSchedule`, added and
//! removed the way the node lifecycle controller does it (read, change that
//! one taint, write back with the resourceVersion), so taints others put on
//! the node are kept.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus, NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};

use crate::cli::Settings;
use crate::cni::{self, Network};
use crate::host;
use crate::labels::Taint;
#[cfg(test)]
use crate::labels::{is_dns_subdomain, parse_label, parse_taint};

/// The kubelet version the stand-in reports.
pub const KUBELET_VERSION: &str = "v1.20.2+idp-testnode";

/// How often the node's status is refreshed.
const HEARTBEAT: Duration = Duration::from_secs(30);

/// How often the CNI config directory is looked at while it matters.
const CNI_POLL: Duration = Duration::from_secs(2);

/// The field manager of everything the stand-in writes to its Node, as the
/// kubelet inside k3s is named in `managedFields`.
const FIELD_MANAGER: &str = "k3s";

/// The taint a node carries while it is not ready.
pub const NOT_READY_TAINT: &str = "node.kubernetes.io/not-ready";

/// Everything needed to (re-)register one node.
#[derive(Clone, Debug)]
pub struct NodeIdentity {
    /// Node name.
    pub name: String,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    taints: Vec<Taint>,
    addresses: Vec<NodeAddress>,
    since: Timestamp,
    network: Network,
    /// The readiness last published, and since when.
    ready: bool,
    ready_since: Timestamp,
}

impl NodeIdentity {
    /// Builds the identity k3s would give this node.
    pub fn new(settings: &Settings, hostname: &str, detected: &[IpAddr], control_plane: bool, network: Network) -> NodeIdentity {
        let arch = host::arch();
        let mut labels: BTreeMap<String, String> = [
            ("beta.kubernetes.io/arch", arch),
            ("beta.kubernetes.io/os", "linux"),
            ("beta.kubernetes.io/instance-type", "k3s"),
            ("kubernetes.io/arch", arch),
            ("kubernetes.io/os", "linux"),
            ("kubernetes.io/hostname", settings.node_name.as_str()),
            ("node.kubernetes.io/instance-type", "k3s"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        if control_plane {
            labels.insert("node-role.kubernetes.io/control-plane".into(), "true".into());
            labels.insert("node-role.kubernetes.io/master".into(), "true".into());
            if settings.cluster_init {
                labels.insert("node-role.kubernetes.io/etcd".into(), "true".into());
            }
        }
        labels.extend(settings.node_labels.iter().cloned());

        let internal: Vec<IpAddr> = if settings.node_ips.is_empty() {
            detected.iter().find(|ip| ip.is_ipv4()).or_else(|| detected.first()).copied().into_iter().collect()
        } else {
            settings.node_ips.clone()
        };
        let mut addresses: Vec<NodeAddress> =
            internal.iter().map(|ip| NodeAddress { type_: "InternalIP".into(), address: ip.to_string() }).collect();
        addresses.extend(settings.node_external_ips.iter().map(|ip| NodeAddress { type_: "ExternalIP".into(), address: ip.to_string() }));
        addresses.push(NodeAddress { type_: "Hostname".into(), address: settings.node_name.clone() });

        let mut annotations = BTreeMap::new();
        annotations.insert("k3s.io/hostname".to_string(), hostname.to_string());
        if let Some(ip) = internal.first() {
            annotations.insert("k3s.io/internal-ip".to_string(), ip.to_string());
        }
        annotations.insert("k3s.io/node-args".to_string(), serde_json::to_string(&settings.node_args).unwrap_or_default());
        annotations.insert("idp-lab.dev/stand-in".to_string(), "idp-testnode".to_string());

        NodeIdentity {
            name: settings.node_name.clone(),
            labels,
            annotations,
            taints: settings.node_taints.clone(),
            addresses,
            since: Timestamp::now(),
            ready: network.ready(),
            network,
            ready_since: Timestamp::now(),
        }
    }

    fn metadata(&self) -> ObjectMeta {
        ObjectMeta {
            name: Some(self.name.clone()),
            labels: Some(self.labels.clone()),
            annotations: Some(self.annotations.clone()),
            ..ObjectMeta::default()
        }
    }

    /// The node as first created: with its `--node-taint`s, and the
    /// not-ready taint when it is not ready yet.
    fn new_node(&self) -> Node {
        let mut taints = self.taints.clone();
        if !self.ready {
            taints.push(not_ready_taint());
        }
        Node {
            metadata: self.metadata(),
            spec: Some(NodeSpec { taints: (!taints.is_empty()).then_some(taints), ..NodeSpec::default() }),
            status: None,
        }
    }

    /// Labels and annotations only: taints are never in an apply body, so
    /// the stand-in's applies can neither drop nor fight over taints that
    /// others (or the not-ready bookkeeping) own.
    fn applied_node(&self) -> Node {
        Node { metadata: self.metadata(), spec: None, status: None }
    }

    /// Whether the network is ready; logs a change.
    fn observe_network(&mut self) -> bool {
        let now = self.network.ready();
        if now != self.ready {
            self.ready = now;
            self.ready_since = Timestamp::now();
            match (&self.network, now) {
                (Network::External { dir }, true) => {
                    let found = cni::find_config(dir).map(|p| p.display().to_string()).unwrap_or_default();
                    info!("Found CNI config {found}: node {} is Ready", self.name);
                }
                (Network::External { dir }, false) => {
                    warn!("No CNI config left in {}: node {} is NotReady", dir.display(), self.name);
                }
                (Network::Flannel, _) => {}
            }
        }
        now
    }

    fn status(&self) -> NodeStatus {
        let now = Time(Timestamp::now());
        let since = Time(self.since);
        let condition = |type_: &str, status: &str, reason: &str, message: &str| NodeCondition {
            type_: type_.into(),
            status: status.into(),
            reason: Some(reason.into()),
            message: Some(message.into()),
            last_heartbeat_time: Some(now.clone()),
            last_transition_time: Some(since.clone()),
        };
        let resources: BTreeMap<String, Quantity> =
            [("cpu", host::cpus().to_string()), ("memory", format!("{}Ki", host::memory_kib())), ("pods", "110".to_string())]
                .into_iter()
                .map(|(k, v)| (k.to_string(), Quantity(v)))
                .collect();
        NodeStatus {
            addresses: Some(self.addresses.clone()),
            allocatable: Some(resources.clone()),
            capacity: Some(resources),
            conditions: Some(vec![
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                if self.ready {
                    NodeCondition {
                        last_transition_time: Some(Time(self.ready_since)),
                        ..condition(
                            "Ready",
                            "True",
                            "KubeletReady",
                            "kubelet is posting ready status (idp-testnode stand-in: no kubelet runs)",
                        )
                    }
                } else {
                    NodeCondition {
                        last_transition_time: Some(Time(self.ready_since)),
                        ..condition("Ready", "False", "KubeletNotReady", cni::NOT_READY_MESSAGE)
                    }
                },
            ]),
            daemon_endpoints: Some(NodeDaemonEndpoints { kubelet_endpoint: Some(DaemonEndpoint { port: 10250 }) }),
            node_info: Some(NodeSystemInfo {
                architecture: host::arch().into(),
                boot_id: host::boot_id(),
                container_runtime_version: "none://idp-testnode".into(),
                kernel_version: host::kernel_version(),
                kube_proxy_version: KUBELET_VERSION.into(),
                kubelet_version: KUBELET_VERSION.into(),
                machine_id: host::machine_id(),
                operating_system: "linux".into(),
                os_image: "idp-testnode (k3s stand-in)".into(),
                system_uuid: String::new(),
                ..NodeSystemInfo::default()
            }),
            ..NodeStatus::default()
        }
    }

    async fn patch_status(&self, api: &Api<Node>) -> Result<(), kube::Error> {
        let body = serde_json::json!({ "status": self.status() });
        let params = PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..PatchParams::default() };
        api.patch_status(&self.name, &params, &Patch::Merge(&body)).await.map(drop)
    }

    /// Adds or removes the not-ready taint to match the published readiness,
    /// keeping every other taint: read the node, change that one taint and
    /// write the list back guarded by the resourceVersion (a conflict is
    /// retried), as Kubernetes' node lifecycle controller does.
    async fn sync_not_ready_taint(&self, api: &Api<Node>) -> Result<(), kube::Error> {
        let want = !self.ready;
        for _ in 0..5 {
            let node = api.get(&self.name).await?;
            let taints = node.spec.and_then(|s| s.taints).unwrap_or_default();
            if taints.iter().any(is_not_ready_taint) == want {
                return Ok(());
            }
            let mut new: Vec<Taint> = taints.into_iter().filter(|t| !is_not_ready_taint(t)).collect();
            if want {
                new.push(not_ready_taint());
            }
            let body = serde_json::json!({
                "metadata": { "resourceVersion": node.metadata.resource_version },
                "spec": { "taints": if new.is_empty() { serde_json::Value::Null } else { serde_json::json!(new) } },
            });
            let params = PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..PatchParams::default() };
            match api.patch(&self.name, &params, &Patch::Merge(&body)).await {
                Ok(_) => return Ok(()),
                Err(kube::Error::Api(s)) if s.code == 409 => continue,
                Err(e) => return Err(e),
            }
        }
        // Still racing someone: the next heartbeat tries again.
        Ok(())
    }

    /// Registers the node as a kubelet does: creates it (with its
    /// `--node-taint`s and, while not ready, the not-ready taint) when it
    /// does not exist, applies labels and annotations (server-side apply,
    /// field manager `k3s`), writes the status through the status
    /// subresource and puts the not-ready taint in line with it.
    pub async fn register(&mut self, client: &Client) -> Result<(), kube::Error> {
        let api: Api<Node> = Api::all(client.clone());
        self.observe_network();
        if api.get_opt(&self.name).await?.is_none() {
            let params = PostParams { field_manager: Some(FIELD_MANAGER.into()), ..PostParams::default() };
            match api.create(&params, &self.new_node()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => return Err(e),
            }
        }
        api.patch(&self.name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&self.applied_node())).await?;
        self.patch_status(&api).await?;
        self.sync_not_ready_taint(&api).await
    }

    /// Keeps the node fresh: the status every 30 s, the CNI config
    /// directory every 2 s while readiness depends on it (a change is
    /// published at once), the not-ready taint with every update, and a
    /// deleted node is registered again.
    pub async fn heartbeat(mut self, client: Client) -> std::convert::Infallible {
        let api: Api<Node> = Api::all(client.clone());
        let tick = if self.network.watched() { CNI_POLL } else { HEARTBEAT };
        let mut last_beat = Instant::now();
        let mut dirty = false;
        loop {
            tokio::time::sleep(tick).await;
            let before = self.ready;
            let changed = self.observe_network() != before;
            if !changed && !dirty && last_beat.elapsed() < HEARTBEAT {
                continue;
            }
            last_beat = Instant::now();
            let result = match self.patch_status(&api).await {
                Ok(()) => self.sync_not_ready_taint(&api).await,
                Err(e) => Err(e),
            };
            dirty = match result {
                Ok(()) => false,
                Err(kube::Error::Api(s)) if s.code == 404 => match self.register(&client).await {
                    Ok(()) => {
                        info!("Re-registered deleted node {}", self.name);
                        false
                    }
                    Err(e) => {
                        warn!("Failed to re-register node {}: {e}", self.name);
                        true
                    }
                },
                Err(e) => {
                    warn!("Failed to update node {}: {}", self.name, crate::api::chain(&e));
                    true
                }
            };
        }
    }

    /// Whether the node is ready now (as last published).
    pub fn is_ready(&self) -> bool {
        self.ready
    }
}

fn not_ready_taint() -> Taint {
    Taint { key: NOT_READY_TAINT.into(), value: None, effect: "NoSchedule".into(), time_added: None }
}

fn is_not_ready_taint(t: &Taint) -> bool {
    t.key == NOT_READY_TAINT && t.effect == "NoSchedule"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        assert_eq!(parse_label("role=infra"), Ok(("role".into(), "infra".into())));
        assert_eq!(parse_label("example.com/x="), Ok(("example.com/x".into(), String::new())));
        assert!(parse_label("novalue").is_err());
        assert!(parse_label("bad key=x").is_err());
        assert!(parse_label("k=bad value").is_err());
    }

    #[test]
    fn taints() {
        let t = parse_taint("node-role.kubernetes.io/control-plane=true:NoSchedule").expect("valid");
        assert_eq!(t.key, "node-role.kubernetes.io/control-plane");
        assert_eq!(t.value.as_deref(), Some("true"));
        assert_eq!(t.effect, "NoSchedule");
        let t = parse_taint("dedicated:NoExecute").expect("valid");
        assert_eq!(t.value, None);
        assert!(parse_taint("k=v").is_err());
        assert!(parse_taint("k=v:Sometimes").is_err());
    }

    #[test]
    fn subdomains() {
        assert!(is_dns_subdomain("k3d-x-server-0"));
        assert!(is_dns_subdomain("a.b"));
        assert!(!is_dns_subdomain("Upper"));
        assert!(!is_dns_subdomain("under_score"));
        assert!(!is_dns_subdomain("-x"));
    }
}
