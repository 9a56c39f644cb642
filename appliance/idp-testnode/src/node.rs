//! The `Node` object a kubelet would register: labels, taints, addresses and
//! a `Ready=True` status, kept fresh by a heartbeat. There is no kubelet
//! behind it, so pods bound to it never start.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus, NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};

use crate::cli::Settings;
use crate::host;

/// A node taint as parsed from `--node-taint`.
pub type Taint = k8s_openapi::api::core::v1::Taint;

/// The kubelet version the stand-in reports.
pub const KUBELET_VERSION: &str = "v1.20.2+idp-testnode";

/// How often the node's status is refreshed.
const HEARTBEAT: Duration = Duration::from_secs(30);

/// True for a lowercase RFC 1123 subdomain (node names, AddOn names).
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|part| {
            !part.is_empty()
                && part.len() <= 63
                && part.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        })
}

/// A label name or value segment: alphanumerics with `-_.` inside, ≤ 63.
fn is_label_segment(s: &str) -> bool {
    s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && s.bytes().next().is_none_or(|b| b.is_ascii_alphanumeric())
        && s.bytes().last().is_none_or(|b| b.is_ascii_alphanumeric())
}

/// A qualified key: `[prefix/]name`, prefix a DNS subdomain.
fn is_qualified_key(k: &str) -> bool {
    let (prefix, name) = match k.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    !name.is_empty() && is_label_segment(name) && prefix.is_none_or(is_dns_subdomain)
}

/// Parses `key=value` (`key=` allowed) as given to `--node-label`.
pub fn parse_label(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or_else(|| "a node label must be key=value".to_string())?;
    if !is_qualified_key(k) {
        return Err(format!("{k:?} is not a valid label key"));
    }
    if !is_label_segment(v) {
        return Err(format!("{v:?} is not a valid label value"));
    }
    Ok((k.to_string(), v.to_string()))
}

/// Parses `key[=value]:Effect` as given to `--node-taint`.
pub fn parse_taint(s: &str) -> Result<Taint, String> {
    let (kv, effect) = s.rsplit_once(':').ok_or_else(|| "a node taint must be key=value:Effect".to_string())?;
    if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
        return Err(format!("unknown taint effect {effect:?} (NoSchedule, PreferNoSchedule or NoExecute)"));
    }
    let (key, value) = match kv.split_once('=') {
        Some((k, v)) => (k, Some(v)),
        None => (kv, None),
    };
    if !is_qualified_key(key) {
        return Err(format!("{key:?} is not a valid taint key"));
    }
    if let Some(v) = value
        && !is_label_segment(v)
    {
        return Err(format!("{v:?} is not a valid taint value"));
    }
    Ok(Taint { key: key.to_string(), value: value.map(str::to_string), effect: effect.to_string(), time_added: None })
}

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
}

impl NodeIdentity {
    /// Builds the identity k3s would give this node.
    pub fn new(settings: &Settings, hostname: &str, detected: &[IpAddr], control_plane: bool) -> NodeIdentity {
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
        }
    }

    fn node(&self) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                labels: Some(self.labels.clone()),
                annotations: Some(self.annotations.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(NodeSpec { taints: (!self.taints.is_empty()).then(|| self.taints.clone()), ..NodeSpec::default() }),
            status: None,
        }
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
                condition("Ready", "True", "KubeletReady", "kubelet is posting ready status (idp-testnode stand-in: no kubelet runs)"),
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
        api.patch_status(&self.name, &PatchParams::default(), &Patch::Merge(&body)).await.map(drop)
    }

    /// Creates or updates the node (server-side apply, field manager `k3s`)
    /// and writes its status through the status subresource.
    pub async fn register(&self, client: &Client) -> Result<(), kube::Error> {
        let api: Api<Node> = Api::all(client.clone());
        api.patch(&self.name, &PatchParams::apply("k3s").force(), &Patch::Apply(&self.node())).await?;
        self.patch_status(&api).await
    }

    /// Refreshes the status every 30 s; re-registers a deleted node.
    pub async fn heartbeat(self, client: Client) -> std::convert::Infallible {
        let api: Api<Node> = Api::all(client.clone());
        loop {
            tokio::time::sleep(HEARTBEAT).await;
            match self.patch_status(&api).await {
                Ok(()) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => match self.register(&client).await {
                    Ok(()) => info!("Re-registered deleted node {}", self.name),
                    Err(e) => warn!("Failed to re-register node {}: {e}", self.name),
                },
                Err(e) => warn!("Failed to update status of node {}: {}", self.name, crate::api::chain(&e)),
            }
        }
    }
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
