//! The cluster as data: what each node container must look like ([`ClusterPlan`]),
//! what Docker shows ([`Observed`]), and the pure decision of what to do about the
//! difference ([`plan`]). The provisioning plane only carries [`Action`]s out.
//!
//! Nothing here is secret: the join token is a [`FileContent::Token`] placeholder that
//! the executor fills in from the lab's state, so a plan can be printed, hashed and
//! stored.

use crate::config::Security;
use crate::settings::{NodeRole, Settings, node_name};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

/// Docker label naming the lab an object belongs to.
pub const LAB_LABEL: &str = "dev.idp-lab.lab";
/// Docker label naming an object's role (`server`, `agent`, `network`, `volume`, ...).
pub const ROLE_LABEL: &str = "dev.idp-lab.role";
/// Docker label with the hash of a node's spec, to see whether it changed.
pub const SPEC_LABEL: &str = "dev.idp-lab.spec";
/// Docker label with the node's index within its role.
pub const INDEX_LABEL: &str = "dev.idp-lab.index";
/// Where k3s writes the admin kubeconfig inside the server container.
pub const KUBECONFIG_OUTPUT: &str = "/output/kubeconfig.yaml";
/// The API server's port inside the server container.
pub const API_CONTAINER_PORT: u16 = 6443;
/// The entrypoint idp-lab uploads: makes `/` rshared, then becomes k3s.
pub const ENTRYPOINT: &str = "/bin/idp-lab-entrypoint.sh";
/// Where the join token is uploaded inside every node.
pub const TOKEN_PATH: &str = "/etc/rancher/k3s/token";
/// Where the k3s configuration file lives.
pub const CONFIG_PATH: &str = "/etc/rancher/k3s/config.yaml";
/// Where the registries file lives.
pub const REGISTRIES_PATH: &str = "/etc/rancher/k3s/registries.yaml";
/// The port of the lab's registry on the lab network's gateway address (the lab daemon
/// serves it there; k3d's and kind's usual port).
pub const REGISTRY_PORT: u16 = 5000;
/// The resolv.conf k3s hands to pods (`--resolv-conf`).
pub const RESOLV_PATH: &str = "/etc/rancher/k3s/resolv.conf";
/// k3s' auto-deploy manifests directory (servers).
pub const MANIFESTS_DIR: &str = "/var/lib/rancher/k3s/server/manifests";
/// k3s' air-gap images directory, imported at start and on change.
pub const IMAGES_DIR: &str = "/var/lib/rancher/k3s/agent/images";
/// Where k3s looks for CNI configuration; nodes stay NotReady until one exists.
pub const CNI_CONF_DIR: &str = "/var/lib/rancher/k3s/agent/etc/cni/net.d";
/// The name the host running Docker has inside every node.
pub const HOST_ALIAS: &str = "host.idp-lab.internal";
/// The log line of a ready k3s server.
pub const SERVER_READY_LINE: &str = "k3s is up and running";
/// The log line of an agent whose node registered.
pub const AGENT_READY_LINE: &str = "Successfully registered node";
/// The pod network k3s assigns (Cilium's cluster pool uses the same).
pub const CLUSTER_CIDR: &str = "10.42.0.0/16";
/// The service network.
pub const SERVICE_CIDR: &str = "10.43.0.0/16";

/// The directories rancher/k3s declares as `VOLUME`s; each node gets a named volume for
/// each, so nothing anonymous is left behind and data survives a recreate of the
/// container only when asked.
pub const NODE_VOLUMES: &[(&str, &str)] =
    &[("kubelet", "/var/lib/kubelet"), ("k3s", "/var/lib/rancher/k3s"), ("cni", "/var/lib/cni"), ("log", "/var/log")];

/// The capabilities of `cluster.security = "capabilities"`, on top of Docker's default
/// set: what k3s, containerd, the kubelet and Cilium use. `SYS_RESOURCE` is left out on
/// purpose: engines that refuse `--privileged` commonly lack it (this is what they
/// refuse), and k3s runs without it. `BPF` and `PERFMON` are not asked for: Docker 20.10
/// does not know them ("unknown capability"), and `SYS_ADMIN` covers what they split off.
pub const CAPABILITIES: &[&str] =
    &["SYS_ADMIN", "NET_ADMIN", "NET_RAW", "SYS_PTRACE", "SYS_MODULE", "SYS_NICE", "SYS_TIME", "DAC_READ_SEARCH", "IPC_LOCK", "SYSLOG"];

/// An IPv4 subnet; written as `a.b.c.d/n` in JSON and state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Subnet {
    /// The network address.
    pub addr: Ipv4Addr,
    /// The prefix length.
    pub prefix: u8,
}

impl Subnet {
    /// Parses `a.b.c.d/n`.
    pub fn parse(s: &str) -> Option<Subnet> {
        let (addr, prefix) = s.split_once('/')?;
        let addr: Ipv4Addr = addr.parse().ok()?;
        let prefix: u8 = prefix.parse().ok().filter(|p| *p <= 32)?;
        Some(Subnet { addr: Ipv4Addr::from(u32::from(addr) & Subnet::mask(prefix)), prefix })
    }

    fn mask(prefix: u8) -> u32 {
        if prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(prefix)) }
    }

    /// The `n`-th address in the subnet.
    pub fn host(&self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) + n)
    }

    /// Whether two subnets share any address.
    pub fn overlaps(&self, other: &Subnet) -> bool {
        let common = Subnet::mask(self.prefix.min(other.prefix));
        u32::from(self.addr) & common == u32::from(other.addr) & common
    }

    /// Whether `ip` is inside.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & Subnet::mask(self.prefix) == u32::from(self.addr)
    }
}

impl From<Subnet> for String {
    fn from(s: Subnet) -> String {
        s.to_string()
    }
}

impl TryFrom<String> for Subnet {
    type Error = String;
    fn try_from(s: String) -> Result<Subnet, String> {
        Subnet::parse(&s).ok_or_else(|| format!("{s:?} is not a subnet such as \"172.30.0.0/24\""))
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The first `/24` of `172.30.0.0/16` .. `172.31.255.0/24` that overlaps none of the
/// host's routes and none of the subnets other Docker networks use. Later labs take
/// later subnets, so labs never share one.
pub fn choose_subnet(host_routes: &[Subnet], taken: &[Subnet]) -> Option<Subnet> {
    (0u32..512).map(|i| Subnet { addr: Ipv4Addr::from(u32::from(Ipv4Addr::new(172, 30, 0, 0)) + (i << 8)), prefix: 24 }).find(|candidate| {
        // The default route (0.0.0.0/0) overlaps everything and says nothing.
        !host_routes.iter().filter(|r| r.prefix > 0).any(|r| r.overlaps(candidate)) && !taken.iter().any(|t| t.overlaps(candidate))
    })
}

/// The lab's bridge network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkSpec {
    /// The network's name (the lab's name).
    pub name: String,
    /// Its subnet.
    pub subnet: Subnet,
    /// Its gateway: the host, as the nodes see it.
    pub gateway: Ipv4Addr,
    /// The MTU, copied from Docker's default bridge (`None`: Docker's default).
    pub mtu: Option<u32>,
    /// Docker labels.
    pub labels: BTreeMap<String, String>,
}

/// A host port Docker publishes for a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortPublish {
    /// The host address.
    pub host_ip: IpAddr,
    /// The host port.
    pub host_port: u16,
    /// The container port (TCP).
    pub container_port: u16,
    /// What it is for, e.g. `api` or `gateway-https`.
    pub purpose: String,
}

/// What a file holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FileContent {
    /// This text.
    Text(String),
    /// The lab's join token, filled in by the executor from the state directory.
    Token,
    /// The resolv.conf for pods, made by the executor from the host's resolvers with
    /// [`resolv_conf`].
    ResolvConf,
}

/// A file uploaded into a node before its first start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeFile {
    /// The absolute path in the container.
    pub path: String,
    /// The file mode.
    pub mode: u32,
    /// The content.
    pub content: FileContent,
}

/// A named volume mounted into a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeMount {
    /// The volume's name.
    pub name: String,
    /// Where it is mounted.
    pub path: String,
}

/// Everything about one node container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSpec {
    /// The container name, hostname and Kubernetes node name.
    pub name: String,
    /// Server or agent.
    pub role: NodeRole,
    /// The index within its role.
    pub index: u32,
    /// The image reference.
    pub image: String,
    /// The static address on the lab network.
    pub ip: Ipv4Addr,
    /// The container entrypoint.
    pub entrypoint: Vec<String>,
    /// The k3s command line (`server ...` or `agent ...`).
    pub args: Vec<String>,
    /// Environment variables (`NAME=value`); no secrets.
    pub env: Vec<String>,
    /// Docker labels (without [`SPEC_LABEL`], which is the hash of the rest).
    pub labels: BTreeMap<String, String>,
    /// The memory cap in bytes (also the node's capacity, through a fake /proc/meminfo).
    pub memory: Option<u64>,
    /// Privileged, or the [`CAPABILITIES`] list.
    pub security: Security,
    /// tmpfs mounts.
    pub tmpfs: Vec<String>,
    /// Named volumes.
    pub volumes: Vec<VolumeMount>,
    /// Published ports.
    pub ports: Vec<PortPublish>,
    /// Files uploaded before the first start.
    pub files: Vec<NodeFile>,
    /// Docker's restart policy.
    pub restart: String,
    /// Extra `/etc/hosts` entries (`name:address`; `host-gateway` is the host).
    pub extra_hosts: Vec<String>,
    /// The log line that says the node is ready.
    pub ready_line: String,
    /// Kubernetes labels the node must carry once registered.
    pub node_labels: BTreeMap<String, String>,
    /// Kubernetes taints the node must carry once registered (`key=value:Effect`).
    pub node_taints: Vec<String>,
    /// Whether the lab's air-gap images archive ([`AIRGAP_HOST_FILE`] in the lab's state
    /// directory) is mounted read-only into [`IMAGES_DIR`] as [`AIRGAP_FILE`], for k3s to
    /// import at boot (offline labs). Absent from the spec hash when false, so labs made
    /// before it keep their hash.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub airgap_images: bool,
}

impl NodeSpec {
    /// A stable hash of the spec, stored as [`SPEC_LABEL`] on the container.
    pub fn hash(&self) -> String {
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        let digest = Sha256::digest(&bytes);
        digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
    }

    /// The Docker labels to create the container with, the spec hash included.
    pub fn container_labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.labels.clone();
        labels.insert(SPEC_LABEL.to_owned(), self.hash());
        labels
    }
}

/// The whole cluster a lab wants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterPlan {
    /// The lab.
    pub lab: String,
    /// The network.
    pub network: NetworkSpec,
    /// Servers first, then agents; the order nodes start in.
    pub nodes: Vec<NodeSpec>,
}

impl ClusterPlan {
    /// The first server: where the API and the kubeconfig come from.
    pub fn first_server(&self) -> Option<&NodeSpec> {
        self.nodes.iter().find(|n| n.role == NodeRole::Server)
    }

    /// The node named `name`.
    pub fn node(&self, name: &str) -> Option<&NodeSpec> {
        self.nodes.iter().find(|n| n.name == name)
    }
}

/// The Docker labels of every object of `lab` with `role`.
pub fn labels(lab: &str, role: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(LAB_LABEL.to_owned(), lab.to_owned()), (ROLE_LABEL.to_owned(), role.to_owned())])
}

/// The address of node `index` of `role` in `subnet`: servers from `.2`, agents from `.16`.
pub fn node_ip(subnet: Subnet, role: NodeRole, index: u32) -> Ipv4Addr {
    match role {
        NodeRole::Server => subnet.host(2 + index),
        NodeRole::Agent => subnet.host(16 + index),
    }
}

/// The server URL agents join (the first server, by name on the lab network).
pub fn join_url(lab: &str) -> String {
    format!("https://{}:{API_CONTAINER_PORT}", node_name(lab, NodeRole::Server, 0))
}

/// The k3s arguments idp-lab sets on every server, before `cluster.k3s_args`: Cilium
/// replaces flannel, the network policy controller and kube-proxy, and the platform
/// brings its own Gateway and load balancing.
pub const SERVER_ARGS: &[&str] =
    &["--flannel-backend=none", "--disable-network-policy", "--disable-kube-proxy", "--disable=traefik,servicelb"];

/// Builds the plan of a k3s cluster from the settings, on `subnet`, with the MTU of
/// Docker's default bridge.
pub fn cluster_plan(settings: &Settings, subnet: Subnet, mtu: Option<u32>) -> ClusterPlan {
    let lab = &settings.lab;
    let c = &settings.cluster;
    let n = &settings.network;
    let network = NetworkSpec { name: lab.clone(), subnet, gateway: subnet.host(1), mtu, labels: labels(lab, "network") };
    let gateway_nodes = Settings::gateway_nodes(lab, c.agents);
    let mut nodes = Vec::new();
    let roles = (0..c.servers).map(|i| (NodeRole::Server, i)).chain((0..c.agents).map(|i| (NodeRole::Agent, i)));
    for (role, index) in roles {
        let name = node_name(lab, role, index);
        let ip = node_ip(subnet, role, index);
        let mut args = vec![
            role.as_str().to_owned(),
            format!("--node-name={name}"),
            format!("--node-ip={ip}"),
            format!("--resolv-conf={RESOLV_PATH}"),
        ];
        let (mut node_labels, taints) = match role {
            NodeRole::Server => (BTreeMap::new(), c.server_taints.clone()),
            NodeRole::Agent => match c.pools.get(index as usize) {
                Some(pool) => (pool.labels.clone(), pool.taints.clone()),
                None => (BTreeMap::new(), Vec::new()),
            },
        };
        if role == NodeRole::Server {
            args.extend(SERVER_ARGS.iter().map(|a| (*a).to_owned()));
            let mut sans = vec!["127.0.0.1".to_owned(), "localhost".to_owned(), name.clone(), n.connect_address.to_string()];
            if !n.bind_address.is_unspecified() {
                sans.push(n.bind_address.to_string());
            }
            if let Some(lan) = n.lan_ip.filter(|_| !n.bind_address.is_loopback()) {
                sans.push(lan.to_string());
            }
            sans.push(HOST_ALIAS.to_owned());
            sans.dedup();
            let mut seen = std::collections::BTreeSet::new();
            args.extend(sans.into_iter().filter(|s| seen.insert(s.clone())).map(|s| format!("--tls-san={s}")));
            if c.servers > 1 && index == 0 {
                args.push("--cluster-init".to_owned());
            }
        }
        args.extend(node_labels.iter().map(|(k, v)| format!("--node-label={k}={v}")));
        args.extend(taints.iter().map(|t| format!("--node-taint={t}")));
        if role == NodeRole::Server {
            args.extend(c.k3s_args.iter().cloned());
        }
        args.extend(c.kubelet_args.iter().map(|a| format!("--kubelet-arg={}", a.trim_start_matches('-'))));
        if settings.registry.offline {
            // Only the mirrors of `registries.yaml`: containerd never falls back upstream.
            args.push("--disable-default-registry-endpoint".to_owned());
        }
        let mut config_yaml = format!("token-file: {TOKEN_PATH}\n");
        if role == NodeRole::Agent || index > 0 {
            config_yaml.push_str(&format!("server: {}\n", join_url(lab)));
        }
        let mut files = vec![
            NodeFile { path: ENTRYPOINT.to_owned(), mode: 0o755, content: FileContent::Text(entrypoint_script()) },
            NodeFile { path: TOKEN_PATH.to_owned(), mode: 0o600, content: FileContent::Token },
            NodeFile { path: CONFIG_PATH.to_owned(), mode: 0o600, content: FileContent::Text(config_yaml) },
            NodeFile { path: RESOLV_PATH.to_owned(), mode: 0o644, content: FileContent::ResolvConf },
        ];
        files.push(NodeFile {
            path: REGISTRIES_PATH.to_owned(),
            mode: 0o644,
            content: FileContent::Text(registries_yaml(&node_mirrors(settings, network.gateway))),
        });
        let mut ports = Vec::new();
        if role == NodeRole::Server && index == 0 {
            ports.push(PortPublish {
                host_ip: n.bind_address,
                host_port: n.ports.api,
                container_port: API_CONTAINER_PORT,
                purpose: "api".into(),
            });
        }
        if let Some(g) = n.ports.gateway.iter().find(|g| g.node == name).filter(|_| gateway_nodes.contains(&name)) {
            let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
            ports.push(PortPublish { host_ip: lo, host_port: g.http, container_port: n.http_nodeport, purpose: "gateway-http".into() });
            ports.push(PortPublish { host_ip: lo, host_port: g.https, container_port: n.https_nodeport, purpose: "gateway-https".into() });
        }
        let mut docker_labels = labels(lab, role.as_str());
        docker_labels.insert(INDEX_LABEL.to_owned(), index.to_string());
        if role == NodeRole::Server {
            node_labels.insert("node-role.kubernetes.io/control-plane".into(), "true".into());
        }
        nodes.push(NodeSpec {
            name: name.clone(),
            role,
            index,
            image: c.image.to_string(),
            ip,
            entrypoint: vec![ENTRYPOINT.to_owned()],
            args,
            env: vec![format!("K3S_KUBECONFIG_OUTPUT={KUBECONFIG_OUTPUT}")],
            labels: docker_labels,
            memory: c.memory.map(|m| m.bytes()),
            security: c.security,
            tmpfs: vec!["/run".into(), "/var/run".into()],
            volumes: NODE_VOLUMES
                .iter()
                .map(|(suffix, path)| VolumeMount { name: format!("{name}-{suffix}"), path: (*path).to_owned() })
                .collect(),
            ports,
            files,
            restart: "unless-stopped".into(),
            extra_hosts: vec![format!("{HOST_ALIAS}:host-gateway")],
            ready_line: match role {
                NodeRole::Server => SERVER_READY_LINE.to_owned(),
                NodeRole::Agent => AGENT_READY_LINE.to_owned(),
            },
            node_labels,
            node_taints: taints.iter().map(ToString::to_string).collect(),
            airgap_images: settings.registry.offline,
        });
    }
    ClusterPlan { lab: lab.clone(), network, nodes }
}

/// The entrypoint every node runs: make `/` a shared mount (Cilium and CSI node plugins
/// need bidirectional propagation, k3d's K3D_FIX_MOUNTS), then become k3s as PID 1 so
/// it does its own cgroup v2 evacuation.
pub fn entrypoint_script() -> String {
    "#!/bin/sh\n# Written by idp-lab before the node's first start.\nset -e\nmount --make-rshared /\nexec /bin/k3s \"$@\"\n".to_owned()
}

/// The registries every lab's nodes mirror to the lab's own registry, beside those the
/// lock's images come from ([`crate::lock::Lock::registries`]).
pub const MIRRORED_REGISTRIES: [&str; 4] = ["docker.io", "quay.io", "ghcr.io", "registry.k8s.io"];

/// The mirrors of a node's `registries.yaml`: every registry of [`MIRRORED_REGISTRIES`]
/// and of the lock, and every one `registry.mirrors` names, goes first to the lab's own
/// registry (the daemon's, plain HTTP on the lab network's gateway, which serves the
/// bundle and answers 404 for what it lacks), then to the configured mirrors, then (unless
/// offline: `--disable-default-registry-endpoint`) upstream. The lab registry's own
/// address is mirrored to itself over HTTP, as KEP-1755's local registry is reached.
pub fn node_mirrors(settings: &Settings, gateway: Ipv4Addr) -> BTreeMap<String, Vec<String>> {
    let lab_registry = format!("{gateway}:{REGISTRY_PORT}");
    let own = format!("http://{lab_registry}");
    let mut registries: std::collections::BTreeSet<String> = MIRRORED_REGISTRIES.iter().map(|r| (*r).to_owned()).collect();
    registries.extend(crate::lock::Lock::embedded().map(|l| l.registries()).unwrap_or_default());
    registries.extend(settings.registry.mirrors.keys().cloned());
    let mut mirrors = BTreeMap::new();
    for registry in registries {
        let mut endpoints = vec![own.clone()];
        if registry != lab_registry {
            endpoints.extend(settings.registry.mirrors.get(&registry).into_iter().flatten().filter(|e| **e != own).cloned());
        }
        mirrors.insert(registry, endpoints);
    }
    mirrors.entry(lab_registry).or_insert_with(|| vec![own]);
    mirrors
}

/// KEP-1755's `local-registry-hosting` for a lab whose network gateway is `gateway`: the
/// lab registry is at the same address from the host (on Linux, where the host has the
/// gateway address), from the nodes' containerd and from pods, so only `host` is given.
/// Its writable namespace is `local/...`; Docker pushes to it only when the address is in
/// its `insecure-registries` (it is plain HTTP and not loopback).
pub fn local_registry_hosting(gateway: Ipv4Addr) -> crate::oci::LocalRegistryHosting {
    let at = format!("{gateway}:{REGISTRY_PORT}");
    crate::oci::LocalRegistryHosting {
        host: at.clone(),
        host_from_container_runtime: None,
        host_from_cluster_network: None,
        help: format!(
            "idp-lab's lab registry (plain HTTP): push to {at}/local/NAME:TAG (skopeo copy --dest-tls-verify=false, or Docker with {at} in insecure-registries); it also mirrors the lab's bundle"
        ),
    }
}

/// The air-gap images archive in a lab's state directory (a docker-archive of the k3s
/// air-gap images, written by offline `up` from the bundle).
pub const AIRGAP_HOST_FILE: &str = "airgap-images.tar";

/// Its name in each node's [`IMAGES_DIR`].
pub const AIRGAP_FILE: &str = "idp-lab-airgap.tar";

/// k3s' `registries.yaml` for the configured mirrors.
pub fn registries_yaml(mirrors: &BTreeMap<String, Vec<String>>) -> String {
    let mirrors: serde_json::Map<String, serde_json::Value> =
        mirrors.iter().map(|(registry, endpoints)| (registry.clone(), serde_json::json!({ "endpoint": endpoints }))).collect();
    crate::yaml::to_yaml(&serde_json::json!({ "mirrors": mirrors }))
}

/// The resolv.conf pods get: the host's own upstream resolvers (never a loopback one,
/// which pods cannot reach, and never Docker's embedded 127.0.0.11); when the host has
/// none, the lab network's gateway, where the lab daemon answers.
pub fn resolv_conf(host_nameservers: &[IpAddr], gateway: Ipv4Addr) -> String {
    let usable: Vec<&IpAddr> = host_nameservers.iter().filter(|ip| !ip.is_loopback() && !ip.is_unspecified()).take(3).collect();
    let mut out = String::from("# Written by idp-lab: pods resolve through these, not Docker's embedded resolver.\n");
    if usable.is_empty() {
        out.push_str(&format!("nameserver {gateway}\n"));
    }
    for ip in usable {
        out.push_str(&format!("nameserver {ip}\n"));
    }
    out
}

/// A `/proc/meminfo` that shows `bytes` of memory, bind-mounted over the real one so
/// the kubelet reports the node's cap as its capacity (k3d does the same).
pub fn fake_meminfo(bytes: u64) -> String {
    let kib = bytes / 1024;
    format!(
        "MemTotal:       {kib:>8} kB\nMemFree:        {kib:>8} kB\nMemAvailable:   {kib:>8} kB\nBuffers:               0 kB\nCached:                0 kB\nSwapCached:            0 kB\nSwapTotal:             0 kB\nSwapFree:              0 kB\n"
    )
}

/// The proxy variables of the host, passed on to nodes (kind does the same), with the
/// lab's own networks added to `NO_PROXY` so in-cluster traffic never goes through
/// the proxy.
pub fn proxy_env(host: &[(String, String)], subnet: Subnet) -> Vec<String> {
    let get = |name: &str| host.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone()).filter(|v| !v.is_empty());
    let (http, https) = (get("HTTP_PROXY"), get("HTTPS_PROXY"));
    if http.is_none() && https.is_none() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (name, value) in [("HTTP_PROXY", http), ("HTTPS_PROXY", https)] {
        if let Some(v) = value {
            out.push(format!("{name}={v}"));
            out.push(format!("{}={v}", name.to_ascii_lowercase()));
        }
    }
    let mut no_proxy: Vec<String> = get("NO_PROXY").map(|v| v.split(',').map(str::to_owned).collect()).unwrap_or_default();
    for extra in ["localhost", "127.0.0.1", CLUSTER_CIDR, SERVICE_CIDR, ".svc", ".cluster.local", HOST_ALIAS] {
        no_proxy.push(extra.to_owned());
    }
    no_proxy.push(subnet.to_string());
    let mut seen = std::collections::BTreeSet::new();
    no_proxy.retain(|v| !v.is_empty() && seen.insert(v.clone()));
    out.push(format!("NO_PROXY={}", no_proxy.join(",")));
    out.push(format!("no_proxy={}", no_proxy.join(",")));
    out
}

/// A node container as Docker shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObservedNode {
    /// The container name.
    pub name: String,
    /// The container id.
    pub id: String,
    /// Whether it runs.
    pub running: bool,
    /// Docker's state word (`running`, `exited`, `created`, ...).
    pub state: String,
    /// The spec hash label it was created with.
    pub spec_hash: Option<String>,
    /// Its address on the lab network.
    pub ip: Option<Ipv4Addr>,
    /// The image it runs.
    pub image: String,
    /// When it last started (RFC 3339), if ever.
    pub started_at: Option<String>,
}

/// What Docker holds of a lab.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observed {
    /// The lab network's subnet, when the network exists.
    pub network: Option<Subnet>,
    /// The lab's node containers.
    pub nodes: Vec<ObservedNode>,
}

/// One step of bringing a cluster to its plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "camelCase")]
pub enum Action {
    /// Create the lab network.
    CreateNetwork {
        /// Why.
        reason: String,
    },
    /// Create (and then start) a node.
    Create {
        /// The node.
        node: String,
        /// Why.
        reason: String,
    },
    /// Remove a node and create it again.
    Recreate {
        /// The node.
        node: String,
        /// Why.
        reason: String,
    },
    /// Start a stopped node.
    Start {
        /// The node.
        node: String,
        /// Why.
        reason: String,
    },
    /// Nothing to do.
    Keep {
        /// The node (or `network`).
        node: String,
        /// Why.
        reason: String,
    },
    /// Remove a node the plan no longer has.
    Remove {
        /// The node.
        node: String,
        /// Why.
        reason: String,
    },
}

impl Action {
    /// The node (or `network`) the action is about.
    pub fn target(&self) -> &str {
        match self {
            Action::CreateNetwork { .. } => "network",
            Action::Create { node, .. }
            | Action::Recreate { node, .. }
            | Action::Start { node, .. }
            | Action::Keep { node, .. }
            | Action::Remove { node, .. } => node,
        }
    }

    /// Why.
    pub fn reason(&self) -> &str {
        match self {
            Action::CreateNetwork { reason }
            | Action::Create { reason, .. }
            | Action::Recreate { reason, .. }
            | Action::Start { reason, .. }
            | Action::Keep { reason, .. }
            | Action::Remove { reason, .. } => reason,
        }
    }

    /// The action's verb, for people.
    pub fn verb(&self) -> &'static str {
        match self {
            Action::CreateNetwork { .. } => "create network",
            Action::Create { .. } => "create",
            Action::Recreate { .. } => "recreate",
            Action::Start { .. } => "start",
            Action::Keep { .. } => "keep",
            Action::Remove { .. } => "remove",
        }
    }

    /// Whether the action changes anything.
    pub fn changes(&self) -> bool {
        !matches!(self, Action::Keep { .. })
    }
}

/// The plan needs nodes made anew, and `--recreate` was not given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the configuration changed in a way that needs new nodes:\n{}", .differences.iter().map(|d| format!("  {d}")).collect::<Vec<_>>().join("\n"))]
pub struct NeedsRecreate {
    /// One line per difference.
    pub differences: Vec<String>,
}

/// Decides what to do to bring `observed` to `desired`. `previous` is the plan the lab
/// was last brought up with (from its state), to name what changed; without it, a
/// changed node is named by its hash alone. With `recreate`, changed nodes are
/// recreated; without, the plan refuses and lists the differences.
pub fn plan(
    desired: &ClusterPlan,
    observed: &Observed,
    previous: Option<&ClusterPlan>,
    recreate: bool,
) -> Result<Vec<Action>, NeedsRecreate> {
    let mut actions = Vec::new();
    let mut differences = Vec::new();
    match observed.network {
        None => actions.push(Action::CreateNetwork {
            reason: format!("network {} ({}) does not exist", desired.network.name, desired.network.subnet),
        }),
        Some(subnet) if subnet != desired.network.subnet => {
            differences.push(format!("network {}: subnet {subnet} → {}", desired.network.name, desired.network.subnet));
        }
        Some(_) => actions.push(Action::Keep { node: "network".into(), reason: format!("network {} exists", desired.network.name) }),
    }
    for node in &desired.nodes {
        let Some(seen) = observed.nodes.iter().find(|o| o.name == node.name) else {
            actions.push(Action::Create { node: node.name.clone(), reason: "no such container".into() });
            continue;
        };
        let hash = node.hash();
        if seen.spec_hash.as_deref() != Some(hash.as_str()) {
            let changed = match previous.and_then(|p| p.node(&node.name)) {
                Some(old) => describe_changes(old, node),
                None => vec![format!("spec {} → {hash}", seen.spec_hash.as_deref().unwrap_or("(none)"))],
            };
            if recreate {
                actions.push(Action::Recreate { node: node.name.clone(), reason: format!("changed: {}", changed.join("; ")) });
            } else {
                differences.extend(changed.into_iter().map(|c| format!("{}: {c}", node.name)));
            }
            continue;
        }
        if seen.running {
            actions.push(Action::Keep { node: node.name.clone(), reason: "running, unchanged".into() });
        } else {
            actions.push(Action::Start { node: node.name.clone(), reason: format!("container is {}", seen.state) });
        }
    }
    for seen in &observed.nodes {
        if desired.node(&seen.name).is_none() {
            if recreate {
                actions.push(Action::Remove { node: seen.name.clone(), reason: "not in the configuration any more".into() });
            } else {
                differences.push(format!("{}: not in the configuration any more", seen.name));
            }
        }
    }
    if differences.is_empty() { Ok(actions) } else { Err(NeedsRecreate { differences }) }
}

/// What differs between two specs of the same node, one phrase per field.
pub fn describe_changes(old: &NodeSpec, new: &NodeSpec) -> Vec<String> {
    let mut out = Vec::new();
    let field = |out: &mut Vec<String>, name: &str, a: String, b: String| {
        if a != b {
            out.push(format!("{name} {a} → {b}"));
        }
    };
    field(&mut out, "image", old.image.clone(), new.image.clone());
    field(&mut out, "ip", old.ip.to_string(), new.ip.to_string());
    field(&mut out, "memory", format!("{:?}", old.memory), format!("{:?}", new.memory));
    field(&mut out, "security", format!("{:?}", old.security).to_lowercase(), format!("{:?}", new.security).to_lowercase());
    let added: Vec<&String> = new.args.iter().filter(|a| !old.args.contains(a)).collect();
    let removed: Vec<&String> = old.args.iter().filter(|a| !new.args.contains(a)).collect();
    if !added.is_empty() || !removed.is_empty() {
        let mut parts = Vec::new();
        if !removed.is_empty() {
            parts.push(format!("-{}", removed.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" -")));
        }
        if !added.is_empty() {
            parts.push(format!("+{}", added.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" +")));
        }
        out.push(format!("k3s arguments {}", parts.join(" ")));
    }
    let ports =
        |n: &NodeSpec| n.ports.iter().map(|p| format!("{}:{}->{}", p.host_ip, p.host_port, p.container_port)).collect::<Vec<_>>().join(",");
    field(&mut out, "ports", ports(old), ports(new));
    if out.is_empty() && old != new {
        out.push("container settings".into());
    }
    out
}

#[cfg(test)]
mod tests;

/// A Kubernetes Node as the API shows it, reduced to what provisioning checks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KubeNode {
    /// The node name.
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its taints, `key=value:Effect` or `key:Effect`.
    pub taints: Vec<String>,
    /// Whether its `Ready` condition is `True`.
    pub ready: bool,
    /// The `Ready` condition's reason and message, when it is not `True`.
    pub not_ready_because: Option<String>,
    /// Its memory capacity, as the API writes it (e.g. `4194304Ki`).
    pub memory_capacity: Option<String>,
    /// Its `InternalIP`.
    pub internal_ip: Option<String>,
}

/// What is missing from a registered node compared with its spec: labels and taints
/// the node must carry. Empty when it matches.
pub fn node_mismatches(spec: &NodeSpec, node: &KubeNode) -> Vec<String> {
    let mut out = Vec::new();
    for (k, v) in &spec.node_labels {
        match node.labels.get(k) {
            Some(have) if have == v => {}
            Some(have) => out.push(format!("label {k}={have}, expected {k}={v}")),
            None => out.push(format!("label {k}={v} missing")),
        }
    }
    for t in &spec.node_taints {
        if !node.taints.contains(t) {
            out.push(format!("taint {t} missing"));
        }
    }
    out
}

/// Parses a Kubernetes memory quantity (`4194304Ki`, `4Gi`, `4096Mi`, plain bytes) into
/// bytes; `None` for anything else.
pub fn parse_memory_quantity(q: &str) -> Option<u64> {
    let split = q.find(|c: char| !c.is_ascii_digit()).unwrap_or(q.len());
    let (digits, unit) = q.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let mult: u64 = match unit {
        "" => 1,
        "k" => 1000,
        "Ki" => 1 << 10,
        "M" => 1_000_000,
        "Mi" => 1 << 20,
        "G" => 1_000_000_000,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        _ => return None,
    };
    n.checked_mul(mult)
}
