//! Resolved settings: the configuration with every `auto` decided and every string
//! parsed into the type it stands for. A pure stage: what the host knows (its LAN
//! address, which ports are busy, what an earlier `up` pinned) comes in as [`Probes`].
//!
//! `render` and `up` both start from [`resolve`], so they agree on every value. Ports
//! set to `auto` are chosen once, at the first `up`, and pinned in the lab's state; from
//! then on [`Probes::pinned`] wins over whatever is listening on the host.

use crate::config::{Config, Flavor, PortSetting, Security};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// Where an `auto` HTTP port is looked for: 80, then this range.
pub const HTTP_FALLBACK: (u16, u16) = (8080, 8179);
/// Where an `auto` HTTPS port is looked for: 443, then this range.
pub const HTTPS_FALLBACK: (u16, u16) = (8443, 8542);
/// Where an `auto` API port is looked for: 6443, then this range.
pub const API_FALLBACK: (u16, u16) = (6444, 6543);
/// Where an `auto` DNS port is looked for: 53, then this range (clear of the other
/// ranges; 1053 is the customary unprivileged DNS port).
pub const DNS_FALLBACK: (u16, u16) = (1053, 1152);
/// Where the loopback ports publishing the Gateway's node ports are looked for: below
/// every system's ephemeral range (Linux 32768-60999, macOS and Windows 49152-65535), so
/// an outgoing connection of any program (the lab daemon's own, to the API server) cannot
/// take one between the reservation and Docker's bind.
pub const GATEWAY_RANGE: (u16, u16) = (28000, 28999);

/// A number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// The size in bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
        match UNITS.iter().find(|(size, _)| self.0 >= *size) {
            Some((size, unit)) if self.0.is_multiple_of(*size) => write!(f, "{} {unit}", self.0 / size),
            Some((size, unit)) => write!(f, "{:.1} {unit}", self.0 as f64 / *size as f64),
            None => write!(f, "{} B", self.0),
        }
    }
}

/// The effect of a taint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TaintEffect {
    /// New pods are not scheduled.
    NoSchedule,
    /// The scheduler avoids the node.
    PreferNoSchedule,
    /// Running pods are evicted too.
    NoExecute,
}

impl TaintEffect {
    /// The name Kubernetes uses.
    pub fn as_str(self) -> &'static str {
        match self {
            TaintEffect::NoSchedule => "NoSchedule",
            TaintEffect::PreferNoSchedule => "PreferNoSchedule",
            TaintEffect::NoExecute => "NoExecute",
        }
    }
}

/// A node taint.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Taint {
    /// The key, e.g. `node-role.kubernetes.io/control-plane`.
    pub key: String,
    /// The value; `None` for `key:Effect`.
    pub value: Option<String>,
    /// The effect.
    pub effect: TaintEffect,
}

impl Taint {
    /// Parses `key=value:Effect` or `key:Effect` (the config check has validated the
    /// key and value already; this only splits).
    pub fn parse(s: &str) -> Option<Taint> {
        let (kv, effect) = s.rsplit_once(':')?;
        let effect = match effect {
            "NoSchedule" => TaintEffect::NoSchedule,
            "PreferNoSchedule" => TaintEffect::PreferNoSchedule,
            "NoExecute" => TaintEffect::NoExecute,
            _ => return None,
        };
        let (key, value) = match kv.split_once('=') {
            Some((k, v)) => (k, Some(v.to_owned())),
            None => (kv, None),
        };
        (!key.is_empty()).then(|| Taint { key: key.to_owned(), value, effect })
    }
}

impl fmt::Display for Taint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(v) => write!(f, "{}={v}:{}", self.key, self.effect.as_str()),
            None => write!(f, "{}:{}", self.key, self.effect.as_str()),
        }
    }
}

/// An image reference: `[registry/]repository[:tag][@digest]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ImageRef {
    /// The registry host (with port), when the reference names one.
    pub registry: Option<String>,
    /// The repository path, e.g. `rancher/k3s`.
    pub repository: String,
    /// The tag, when given.
    pub tag: Option<String>,
    /// The digest (`sha256:...`), when given.
    pub digest: Option<String>,
}

impl ImageRef {
    /// Parses a reference; `None` when it is not one.
    pub fn parse(s: &str) -> Option<ImageRef> {
        if s.is_empty() || s.chars().any(char::is_whitespace) {
            return None;
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                let hex = d.strip_prefix("sha256:")?;
                (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(())?;
                (r, Some(d.to_owned()))
            }
            None => (s, None),
        };
        // A tag follows the last ':' that comes after the last '/' (or the start).
        let slash = rest.rfind('/').unwrap_or(0);
        let (name, tag) = match rest[slash..].rfind(':') {
            Some(i) => (&rest[..slash + i], Some(rest[slash + i + 1..].to_owned())),
            None => (rest, None),
        };
        if tag
            .as_deref()
            .is_some_and(|t| t.is_empty() || t.len() > 128 || !t.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b)))
        {
            return None;
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, path)) if first.contains(['.', ':']) || first == "localhost" => (Some(first.to_owned()), path),
            _ => (None, name),
        };
        let component_ok = |c: &str| {
            !c.is_empty()
                && c.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
                && c.starts_with(|ch: char| ch.is_ascii_alphanumeric())
        };
        repository.split('/').all(component_ok).then(|| ImageRef { registry, repository: repository.to_owned(), tag, digest })
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(r) = &self.registry {
            write!(f, "{r}/")?;
        }
        f.write_str(&self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// The loopback ports that publish one node's Gateway node ports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayPorts {
    /// The node (container) name.
    pub node: String,
    /// Host port of the HTTP node port.
    pub http: u16,
    /// Host port of the HTTPS node port.
    pub https: u16,
}

/// Every host port a lab uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ports {
    /// The HTTP entry (on the bind address).
    pub http: u16,
    /// The HTTPS entry (on the bind address).
    pub https: u16,
    /// The Kubernetes API (on the bind address).
    pub api: u16,
    /// The loopback ports of each Gateway node, in node order.
    pub gateway: Vec<GatewayPorts>,
    /// The DNS answer, UDP and TCP (on the bind address). `None` only in a record
    /// pinned before `network.dns_port` existed: [`resolve`] always chooses one, and the
    /// next `up` pins it.
    #[serde(default)]
    pub dns: Option<u16>,
}

impl Ports {
    /// Every host port, for clash checks: HTTP, HTTPS and API (on the bind address), the
    /// Gateway's loopback ports, then the DNS port (on the bind address) when there is one.
    pub fn all(&self) -> Vec<u16> {
        let mut all = vec![self.http, self.https, self.api];
        all.extend(self.gateway.iter().flat_map(|g| [g.http, g.https]));
        all.extend(self.dns);
        all
    }
}

/// What the host knows, as data: the only input of [`resolve`] besides the config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Probes {
    /// The host's LAN address, when one was detected.
    pub lan_ip: Option<IpAddr>,
    /// The ports this lab's first `up` pinned, if it ran.
    pub pinned: Option<Ports>,
    /// Ports found busy among [`port_candidates`].
    pub busy: BTreeSet<u16>,
    /// Ports pinned by other labs: never chosen for this one, even while those labs are
    /// stopped.
    pub reserved: BTreeSet<u16>,
}

/// One node pool as it applies to one agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolSettings {
    /// The pool's name.
    pub name: String,
    /// Kubernetes node labels.
    pub labels: BTreeMap<String, String>,
    /// Node taints.
    pub taints: Vec<Taint>,
}

/// The cluster, typed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterSettings {
    /// How the cluster is made.
    pub flavor: Flavor,
    /// The node image.
    pub image: ImageRef,
    /// Control-plane nodes.
    pub servers: u32,
    /// Worker nodes.
    pub agents: u32,
    /// How node containers get their privileges.
    pub security: Security,
    /// Memory cap per node; `None`: no cap.
    pub memory: Option<ByteSize>,
    /// Taints of every server.
    pub server_taints: Vec<Taint>,
    /// The pool of each agent, by agent index (agents past the pools have none).
    pub pools: Vec<PoolSettings>,
    /// Extra k3s server arguments.
    pub k3s_args: Vec<String>,
    /// Kubelet arguments (`key=value`).
    pub kubelet_args: Vec<String>,
    /// The kubeconfig context, for flavor `existing` (`None`: the current one).
    pub context: Option<String>,
}

/// The network, typed and resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkSettings {
    /// The host address the lab listens on.
    pub bind_address: IpAddr,
    /// The address clients use to reach the bind address (loopback for `0.0.0.0`).
    pub connect_address: IpAddr,
    /// The host's LAN address, when known.
    pub lan_ip: Option<IpAddr>,
    /// The suffix the lab's hostnames live under.
    pub dns_suffix: String,
    /// The resolvers the DNS answer forwards names outside the lab's zones to (port 53
    /// when the configuration named none); empty: it refuses them.
    pub dns_forward: Vec<SocketAddr>,
    /// Every host port.
    pub ports: Ports,
    /// The Gateway's HTTP node port.
    pub http_nodeport: u16,
    /// The Gateway's HTTPS node port.
    pub https_nodeport: u16,
}

/// Image sources, typed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrySettings {
    /// Never reach a registry.
    pub offline: bool,
    /// The bundle, when one is named.
    pub bundle: Option<PathBuf>,
    /// Registry mirrors.
    pub mirrors: BTreeMap<String, Vec<String>>,
    /// Whether the lab daemon also serves the bundle read-only on the LAN (workshop
    /// mode: `registry.serve_lan`), for other machines' `registry.mirrors`.
    pub serve_lan: bool,
}

/// How long each phase may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeoutSettings {
    /// Nodes ready.
    pub cluster: Duration,
    /// One component ready.
    pub component: Duration,
    /// All of `up`.
    pub total: Duration,
}

/// The watchdog, typed: what the daemon runs it with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchdogSettings {
    /// Whether the daemon runs it.
    pub enabled: bool,
    /// The full resync period.
    pub resync: Duration,
    /// How often the SLOs are evaluated.
    pub slo_interval: Duration,
    /// The Prometheus the SLOs are evaluated against (`http://host:port[/prefix]`); `None`:
    /// the lab's own, through the API server's service proxy.
    pub prometheus: Option<String>,
    /// The Alertmanager receiver's port (`auto`: the daemon chooses).
    pub receiver_port: PortSetting,
    /// The dashboard's port on loopback (`auto`: the daemon chooses).
    pub dashboard_port: PortSetting,
    /// How long history is kept.
    pub history_age: Duration,
    /// How many bytes of events the history keeps.
    pub history_bytes: ByteSize,
    /// The playbooks: the built-in ones that are on (unless a user playbook of the same
    /// name replaces one), then the user's, in their order.
    pub playbooks: Vec<crate::config::Playbook>,
}

impl WatchdogSettings {
    /// The watchdog's settings from `[watchdog]`.
    pub fn from_config(w: &crate::config::Watchdog) -> Result<WatchdogSettings, SettingsError> {
        let history_bytes = match crate::config::parse_bytes(&w.history_size) {
            Some(bytes) if bytes > 0 => ByteSize(bytes),
            _ => return Err(SettingsError::Unparsed { key: "watchdog.history_size", value: w.history_size.clone() }),
        };
        let mut playbooks: Vec<crate::config::Playbook> = crate::config::builtin_playbooks()
            .into_iter()
            .filter(|b| w.builtin_playbooks.contains(&b.name) && !w.playbooks.iter().any(|p| p.name == b.name))
            .collect();
        playbooks.extend(w.playbooks.iter().cloned());
        Ok(WatchdogSettings {
            enabled: w.enabled,
            resync: Duration::from_secs(w.resync),
            slo_interval: Duration::from_secs(w.slo_interval),
            prometheus: Some(w.prometheus.trim().to_owned()).filter(|p| !p.is_empty()),
            receiver_port: w.receiver_port,
            dashboard_port: w.dashboard_port,
            history_age: Duration::from_secs(w.history_age),
            history_bytes,
            playbooks,
        })
    }
}

/// The resolved settings of a lab: typed values only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// The lab's name.
    pub lab: String,
    /// The profile it was resolved from.
    pub profile: String,
    /// The cluster.
    pub cluster: ClusterSettings,
    /// The network.
    pub network: NetworkSettings,
    /// Image sources.
    pub registry: RegistrySettings,
    /// Timeouts.
    pub timeouts: TimeoutSettings,
    /// The watchdog.
    pub watchdog: WatchdogSettings,
}

impl Settings {
    /// The names of the nodes that publish the Gateway's node ports: every agent, or the
    /// first server when there are none.
    pub fn gateway_nodes(lab: &str, agents: u32) -> Vec<String> {
        if agents == 0 {
            vec![node_name(lab, NodeRole::Server, 0)]
        } else {
            (0..agents).map(|i| node_name(lab, NodeRole::Agent, i)).collect()
        }
    }
}

/// The role of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeRole {
    /// A k3s server (control plane).
    Server,
    /// A k3s agent (worker).
    Agent,
}

impl NodeRole {
    /// `server` or `agent`.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeRole::Server => "server",
            NodeRole::Agent => "agent",
        }
    }
}

/// A node's container name (and hostname, and Kubernetes node name): `<lab>-server-N`
/// or `<lab>-agent-N`.
pub fn node_name(lab: &str, role: NodeRole, index: u32) -> String {
    format!("{lab}-{}-{index}", role.as_str())
}

/// Why the settings cannot be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// No free port among the candidates of an `auto` port.
    #[error("no free port for network.{key} on {bind}: {tried}; free one, or set network.{key} to a free port")]
    NoFreePort {
        /// The key.
        key: &'static str,
        /// The address.
        bind: IpAddr,
        /// The ports tried, as text.
        tried: String,
    },
    /// The LAN address was needed and none was found.
    #[error("network.lan_ip is \"auto\" but no LAN address was found (no default route); set network.lan_ip or network.dns_suffix")]
    NoLanIp,
    /// The node image is not an image reference.
    #[error("cluster.image {0:?} is not an image reference such as \"rancher/k3s:v1.33.4-k3s1\"")]
    BadImage(String),
    /// A value the config check passed does not parse (a defect).
    #[error("internal error: {key} = {value:?} passed the configuration check but does not parse")]
    Unparsed {
        /// The key.
        key: &'static str,
        /// The value.
        value: String,
    },
}

/// The host address a port setting is probed on.
fn probe_address(bind: IpAddr) -> IpAddr {
    if bind.is_unspecified() { IpAddr::V4(Ipv4Addr::UNSPECIFIED) } else { bind }
}

/// Every `(address, port)` [`resolve`] may choose for an `auto` port: the host probes
/// these and passes the busy ones in [`Probes::busy`]. Once ports are pinned, only what
/// a new Gateway node or a record older than `network.dns_port` still needs.
pub fn port_candidates(config: &Config, pinned: Option<&Ports>) -> Vec<(IpAddr, u16)> {
    let gateway_range = || (GATEWAY_RANGE.0..=GATEWAY_RANGE.1).map(|p| (IpAddr::V4(Ipv4Addr::LOCALHOST), p));
    let n = &config.network;
    let bind = probe_address(n.bind_address);
    let auto = |setting: PortSetting, preferred: u16, (from, to): (u16, u16)| {
        let ports = if setting == PortSetting::Auto { std::iter::once(preferred).chain(from..=to).collect() } else { Vec::new() };
        ports.into_iter().map(move |p| (bind, p))
    };
    if let Some(pinned) = pinned {
        // Only a node that has no pinned gateway ports yet (an agent added with
        // `--recreate`) needs new ones, and a DNS port only when the record is older
        // than `network.dns_port`.
        let nodes = Settings::gateway_nodes(&config.lab.name, config.cluster.agents);
        let complete = nodes.iter().all(|n| pinned.gateway.iter().any(|g| &g.node == n));
        let mut out: Vec<(IpAddr, u16)> = if pinned.dns.is_none() { auto(n.dns_port, 53, DNS_FALLBACK).collect() } else { Vec::new() };
        if !complete {
            out.extend(gateway_range());
        }
        return out;
    }
    let mut out: Vec<(IpAddr, u16)> = auto(n.http_port, 80, HTTP_FALLBACK).collect();
    out.extend(auto(n.https_port, 443, HTTPS_FALLBACK));
    out.extend(auto(n.api_port, 6443, API_FALLBACK));
    out.extend(auto(n.dns_port, 53, DNS_FALLBACK));
    out.extend(gateway_range());
    out
}

/// Resolves the configuration with what the host knows.
pub fn resolve(config: &Config, probes: &Probes) -> Result<Settings, SettingsError> {
    let n = &config.network;
    let c = &config.cluster;
    let lan_ip = n.lan_ip.parse().ok().or(probes.lan_ip);
    if n.needs_lan_ip() && lan_ip.is_none() {
        return Err(SettingsError::NoLanIp);
    }
    let ports = match &probes.pinned {
        Some(pinned) => fit_gateway_ports(config, fit_dns_port(config, pinned.clone(), probes)?, probes)?,
        None => pick_ports(config, probes)?,
    };
    let dns_forward = n
        .dns_forward
        .iter()
        .map(|r| crate::config::parse_resolver(r).ok_or_else(|| SettingsError::Unparsed { key: "network.dns_forward", value: r.clone() }))
        .collect::<Result<Vec<_>, _>>()?;
    let image = ImageRef::parse(c.node_image()).ok_or_else(|| SettingsError::BadImage(c.node_image().to_owned()))?;
    let taints = |key: &'static str, list: &[String]| -> Result<Vec<Taint>, SettingsError> {
        list.iter().map(|t| Taint::parse(t).ok_or_else(|| SettingsError::Unparsed { key, value: t.clone() })).collect()
    };
    let pools = c
        .pools
        .iter()
        .map(|p| Ok(PoolSettings { name: p.name.clone(), labels: p.labels.clone(), taints: taints("cluster.pools", &p.taints)? }))
        .collect::<Result<Vec<_>, SettingsError>>()?;
    let memory = match crate::config::parse_size(&c.memory) {
        Some(0) => None,
        Some(bytes) => Some(ByteSize(bytes)),
        None => return Err(SettingsError::Unparsed { key: "cluster.memory", value: c.memory.clone() }),
    };
    let connect_address = if n.bind_address.is_unspecified() { IpAddr::V4(Ipv4Addr::LOCALHOST) } else { n.bind_address };
    Ok(Settings {
        lab: config.lab.name.clone(),
        profile: config.lab.profile.clone(),
        cluster: ClusterSettings {
            flavor: c.flavor,
            image,
            servers: c.servers,
            agents: c.agents,
            security: c.security,
            memory,
            server_taints: taints("cluster.server_taints", &c.server_taints)?,
            pools,
            k3s_args: c.k3s_args.clone(),
            kubelet_args: c.kubelet_args.clone(),
            context: (!c.context.is_empty()).then(|| c.context.clone()),
        },
        network: NetworkSettings {
            bind_address: n.bind_address,
            connect_address,
            lan_ip,
            dns_suffix: n.resolved_dns_suffix(lan_ip),
            dns_forward,
            ports,
            http_nodeport: n.http_nodeport,
            https_nodeport: n.https_nodeport,
        },
        registry: RegistrySettings {
            offline: config.registry.offline,
            bundle: (!config.registry.bundle.is_empty()).then(|| PathBuf::from(&config.registry.bundle)),
            mirrors: config.registry.mirrors.clone(),
            serve_lan: config.registry.serve_lan,
        },
        timeouts: TimeoutSettings {
            cluster: Duration::from_secs(config.timeouts.cluster),
            component: Duration::from_secs(config.timeouts.component),
            total: Duration::from_secs(config.timeouts.total),
        },
        watchdog: WatchdogSettings::from_config(&config.watchdog)?,
    })
}

/// Decides one port setting: a fixed port as given, an `auto` one as `preferred` or the
/// first port of its range that is neither busy, reserved nor `chosen` (which it joins).
fn pick_port(
    config: &Config,
    probes: &Probes,
    key: &'static str,
    setting: PortSetting,
    preferred: u16,
    (from, to): (u16, u16),
    chosen: &mut BTreeSet<u16>,
) -> Result<u16, SettingsError> {
    if let PortSetting::Fixed(p) = setting {
        return Ok(p);
    }
    let usable = |p: &u16| !probes.busy.contains(p) && !probes.reserved.contains(p) && !chosen.contains(p);
    let port = std::iter::once(preferred).chain(from..=to).find(usable).ok_or(SettingsError::NoFreePort {
        key,
        bind: probe_address(config.network.bind_address),
        tried: format!("{preferred} and {from}-{to}"),
    })?;
    chosen.insert(port);
    Ok(port)
}

/// Chooses every port of a lab that has none pinned yet.
fn pick_ports(config: &Config, probes: &Probes) -> Result<Ports, SettingsError> {
    let n = &config.network;
    let mut chosen: BTreeSet<u16> = [n.http_port, n.https_port, n.api_port, n.dns_port]
        .into_iter()
        .filter_map(|s| match s {
            PortSetting::Fixed(p) => Some(p),
            PortSetting::Auto => None,
        })
        .collect();
    let http = pick_port(config, probes, "http_port", n.http_port, 80, HTTP_FALLBACK, &mut chosen)?;
    let https = pick_port(config, probes, "https_port", n.https_port, 443, HTTPS_FALLBACK, &mut chosen)?;
    let api = pick_port(config, probes, "api_port", n.api_port, 6443, API_FALLBACK, &mut chosen)?;
    let dns = pick_port(config, probes, "dns_port", n.dns_port, 53, DNS_FALLBACK, &mut chosen)?;
    fit_gateway_ports(config, Ports { http, https, api, gateway: Vec::new(), dns: Some(dns) }, probes)
}

/// Gives a pinned lab whose record is older than `network.dns_port` its DNS port, clear
/// of every port it already has; a record with one keeps it.
fn fit_dns_port(config: &Config, mut ports: Ports, probes: &Probes) -> Result<Ports, SettingsError> {
    if ports.dns.is_none() {
        let mut in_use: BTreeSet<u16> = ports.all().into_iter().collect();
        ports.dns = Some(pick_port(config, probes, "dns_port", config.network.dns_port, 53, DNS_FALLBACK, &mut in_use)?);
    }
    Ok(ports)
}

/// Gives every Gateway node of the lab its pair of loopback ports: the pairs `ports`
/// already has are kept for nodes that still publish the Gateway (a pinned lab's), the
/// others dropped, and a new node (an agent added with `--recreate`) gets a free pair.
fn fit_gateway_ports(config: &Config, mut ports: Ports, probes: &Probes) -> Result<Ports, SettingsError> {
    let nodes = Settings::gateway_nodes(&config.lab.name, config.cluster.agents);
    ports.gateway.retain(|g| nodes.contains(&g.node));
    let in_use: BTreeSet<u16> = ports.all().into_iter().collect();
    let mut free =
        (GATEWAY_RANGE.0..=GATEWAY_RANGE.1).filter(|p| !probes.busy.contains(p) && !probes.reserved.contains(p) && !in_use.contains(p));
    let mut next = || {
        free.next().ok_or_else(|| SettingsError::NoFreePort {
            key: "gateway loopback ports",
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            tried: format!("{}-{}", GATEWAY_RANGE.0, GATEWAY_RANGE.1),
        })
    };
    for node in nodes {
        if !ports.gateway.iter().any(|g| g.node == node) {
            let (http, https) = (next()?, next()?);
            ports.gateway.push(GatewayPorts { node, http, https });
        }
    }
    Ok(ports)
}

/// Replaces one `auto` port that Docker found taken after all ("port is already
/// allocated") with the next usable one of its range; `false` when `port` is not an
/// `auto` port of this lab or no other is free. `busy` grows by the taken port.
pub fn replace_taken_port(config: &Config, ports: &mut Ports, port: u16, busy: &mut BTreeSet<u16>, reserved: &BTreeSet<u16>) -> bool {
    busy.insert(port);
    let n = &config.network;
    let in_use: BTreeSet<u16> = ports.all().into_iter().collect();
    let next = |(from, to): (u16, u16)| (from..=to).find(|p| !busy.contains(p) && !reserved.contains(p) && !in_use.contains(p));
    let (slot, range) = if ports.http == port && n.http_port == PortSetting::Auto {
        (&mut ports.http, HTTP_FALLBACK)
    } else if ports.https == port && n.https_port == PortSetting::Auto {
        (&mut ports.https, HTTPS_FALLBACK)
    } else if ports.api == port && n.api_port == PortSetting::Auto {
        (&mut ports.api, API_FALLBACK)
    } else if let Some(dns) = ports.dns.as_mut().filter(|p| **p == port) {
        if n.dns_port != PortSetting::Auto {
            return false;
        }
        (dns, DNS_FALLBACK)
    } else {
        match ports.gateway.iter_mut().flat_map(|g| [&mut g.http, &mut g.https]).find(|p| **p == port) {
            Some(slot) => (slot, GATEWAY_RANGE),
            None => return false,
        }
    };
    match next(range) {
        Some(p) => {
            *slot = p;
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests;
