//! Helpers: node specs as provisioning makes them, and Node objects as a kubelet would
//! register them.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use idp_core::cluster::NodeSpec;
use idp_core::config::Security;
use idp_core::settings::NodeRole;
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;

/// A node spec with `labels` and `taints` (`key=value:Effect`); the container fields
/// are what `wait_for_nodes` ignores.
pub fn spec(name: &str, labels: &[(&str, &str)], taints: &[&str]) -> NodeSpec {
    NodeSpec {
        name: name.to_owned(),
        role: NodeRole::Agent,
        index: 0,
        image: "rancher/k3s:v1.33.5-k3s1".to_owned(),
        ip: Ipv4Addr::new(172, 30, 0, 16),
        entrypoint: Vec::new(),
        args: Vec::new(),
        env: Vec::new(),
        labels: BTreeMap::new(),
        memory: None,
        security: Security::Capabilities,
        tmpfs: Vec::new(),
        volumes: Vec::new(),
        ports: Vec::new(),
        files: Vec::new(),
        restart: "unless-stopped".to_owned(),
        extra_hosts: Vec::new(),
        ready_line: String::new(),
        node_labels: labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        node_taints: taints.iter().map(|t| (*t).to_owned()).collect(),
        airgap_images: false,
    }
}

/// Registers a Node the way a kubelet without a CNI leaves it: labels, taints, then a
/// status (through the status subresource) with memory capacity, an InternalIP and
/// `Ready=False`. `memory` is the capacity quantity, e.g. `4030524Ki`.
pub async fn register(
    client: kube::Client,
    name: &str,
    labels: &[(&str, &str)],
    taints: serde_json::Value,
    ip: &str,
    memory: &str,
) -> anyhow::Result<()> {
    let api: Api<Node> = Api::all(client);
    let labels: BTreeMap<&str, &str> = labels.iter().copied().collect();
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": { "name": name, "labels": labels },
        "spec": { "taints": taints },
    }))?;
    api.create(&PostParams::default(), &node).await?;
    let status = json!({
        "status": {
            "capacity": { "cpu": "2", "memory": memory, "pods": "110" },
            "addresses": [
                { "type": "InternalIP", "address": ip },
                { "type": "Hostname", "address": name },
            ],
            "conditions": [{
                "type": "Ready",
                "status": "False",
                "reason": "KubeletNotReady",
                "message": "container runtime network not ready: cni plugin not initialized",
                "lastHeartbeatTime": "2024-01-01T00:00:00Z",
                "lastTransitionTime": "2024-01-01T00:00:00Z",
            }],
        }
    });
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status)).await?;
    Ok(())
}
