//! Configuration: the schema, validation with positioned diagnostics, layering
//! (defaults ← profile ← file ← environment ← flags) and the resolved [`Config`].

pub mod schema;
mod validate;
mod watchdog;

pub use schema::BUILTIN_PLAYBOOKS;
pub use validate::{FileKind, is_dns_name, is_name, parse_bytes, parse_duration, parse_resolver, parse_size};
pub use watchdog::{
    Action, DEFAULT_RATE_LIMIT, DEFAULT_WEBHOOK_TIMEOUT, HealthVerdict, MAX_RUNS, NamespacedName, ObjectRef, Playbook, RateLimit,
    SloSeverity, Trigger, Watchdog, builtin_playbooks,
};

use crate::diag::{Diagnostic, Origin};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use validate::Checker;

/// Where one key's value came from, for precise errors about combinations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetAt {
    /// The input.
    pub origin: Origin,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

/// The validated values one input sets, keyed by `section.key`.
#[derive(Debug, Clone, PartialEq)]
pub struct Layer {
    origin: Origin,
    values: BTreeMap<String, (Value, SetAt)>,
}

impl Layer {
    /// An empty layer for `origin`.
    pub fn new(origin: Origin) -> Self {
        Layer { origin, values: BTreeMap::new() }
    }

    fn set(&mut self, path: &str, value: Value, (line, column): (usize, usize)) {
        let at = SetAt { origin: self.origin.clone(), line, column };
        self.values.insert(path.to_owned(), (value, at));
    }

    /// Sets a value from a command-line flag.
    pub fn set_flag(&mut self, path: &str, value: Value) {
        self.set(path, value, (1, 1));
    }

    /// The value this layer sets for `section.key`, if any.
    pub fn get(&self, path: &str) -> Option<&Value> {
        self.values.get(path).map(|(v, _)| v)
    }

    /// Whether this layer sets nothing.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// A profile file after validation.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedProfile {
    /// The values it sets.
    pub layer: Layer,
    /// Its `[profile] description`.
    pub description: Option<String>,
}

/// One or more problems with the configuration inputs.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct ConfigError {
    /// Every problem found, in input order.
    pub diagnostics: Vec<Diagnostic>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// Parses and validates a configuration or profile file. `components` are the names
/// that `[versions]` may override.
pub fn parse_file(text: &str, name: &str, kind: FileKind, components: &[&str]) -> Result<ParsedProfile, ConfigError> {
    let mut checker = Checker::new(text, Origin::File(name.to_owned()), components);
    let mut description = None;
    let layer = checker.document(kind, &mut description);
    if checker.diags.is_empty() { Ok(ParsedProfile { layer, description }) } else { Err(ConfigError { diagnostics: checker.diags }) }
}

/// Builds the layer of `IDP_LAB_<SECTION>_<KEY>` overrides from environment variables.
pub fn env_layer<I, K, V>(vars: I, components: &[&str]) -> Result<Layer, ConfigError>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    let mut layer = Layer::new(Origin::Env("IDP_LAB_*".into()));
    let mut diagnostics = Vec::new();
    let mut vars: Vec<(String, String)> = vars.into_iter().map(|(k, v)| (k.as_ref().to_owned(), v.as_ref().to_owned())).collect();
    vars.sort();
    for (var, raw) in vars {
        if !var.starts_with("IDP_LAB_") || schema::is_reserved_env(&var) {
            continue;
        }
        let mut checker = Checker::new(&raw, Origin::Env(var.clone()), components);
        let mut one = Layer::new(Origin::Env(var.clone()));
        validate::env_value(&mut checker, &var, &raw, &mut one);
        diagnostics.extend(checker.diags);
        layer.values.extend(one.values);
    }
    if diagnostics.is_empty() { Ok(layer) } else { Err(ConfigError { diagnostics }) }
}

/// The built-in defaults of every key, from the schema.
pub fn defaults() -> Layer {
    let mut text = String::new();
    for (section, _) in schema::SECTIONS {
        text.push_str(&format!("[{section}]\n"));
        for spec in schema::section_keys(section).filter(|k| k.key != "*") {
            text.push_str(&format!("{} = {}\n", spec.key, spec.default));
        }
    }
    let mut checker = Checker::new(&text, Origin::File("<built-in defaults>".into()), &[]);
    let layer = checker.document(FileKind::Config, &mut None);
    debug_assert!(checker.diags.is_empty(), "built-in defaults are invalid: {:?}", checker.diags);
    layer
}

/// The resolved configuration: every key has a value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[lab]`
    pub lab: Lab,
    /// `[cluster]`
    pub cluster: Cluster,
    /// `[network]`
    pub network: Network,
    /// `[stacks]`
    pub stacks: Stacks,
    /// `[versions]`: chart version overrides by component.
    pub versions: BTreeMap<String, String>,
    /// `[registry]`
    pub registry: Registry,
    /// `[timeouts]`, in seconds.
    pub timeouts: Timeouts,
    /// `[watchdog]`
    pub watchdog: Watchdog,
}

/// `[lab]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lab {
    /// Name of the lab.
    pub name: String,
    /// The profile it was resolved from.
    pub profile: String,
}

/// How the cluster is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Flavor {
    /// k3s nodes in Docker, the way k3d makes them.
    K3s,
    /// kubeadm nodes in Docker, the way kind makes them.
    Kind,
    /// A cluster that already exists.
    Existing,
}

/// How node containers get their privileges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// `--privileged`, like k3d and kind.
    Privileged,
    /// An explicit capability set.
    Capabilities,
}

/// A node pool: labels and taints for one agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    /// Pool name.
    pub name: String,
    /// Kubernetes node labels.
    pub labels: BTreeMap<String, String>,
    /// Taints, `key=value:Effect`.
    pub taints: Vec<String>,
}

/// `[cluster]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    /// How the cluster is made.
    pub flavor: Flavor,
    /// Node image (`auto`: the flavor's pinned image).
    pub image: String,
    /// Control-plane nodes.
    pub servers: u32,
    /// Worker nodes.
    pub agents: u32,
    /// Node privileges.
    pub security: Security,
    /// Memory limit per node, e.g. `4g`.
    pub memory: String,
    /// Node pools, by agent index.
    pub pools: Vec<Pool>,
    /// Taints of every server, `key=value:Effect`.
    pub server_taints: Vec<String>,
    /// Extra k3s server arguments.
    pub k3s_args: Vec<String>,
    /// Kubelet arguments.
    pub kubelet_args: Vec<String>,
    /// Context for flavor `existing`.
    pub context: String,
}

/// The pinned k3s node image.
pub const K3S_IMAGE: &str = "rancher/k3s:v1.33.4-k3s1";
/// The pinned kind node image.
pub const KIND_IMAGE: &str = "kindest/node:v1.33.4";

impl Cluster {
    /// The node image after resolving `auto`.
    pub fn node_image(&self) -> &str {
        match (self.image.as_str(), self.flavor) {
            ("auto", Flavor::Kind) => KIND_IMAGE,
            ("auto", _) => K3S_IMAGE,
            (image, _) => image,
        }
    }

    /// The memory limit in bytes (0: none).
    pub fn memory_bytes(&self) -> u64 {
        parse_size(&self.memory).unwrap_or(0)
    }
}

/// A port that is either chosen at `up` or fixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortSetting {
    /// Chosen at `up`.
    Auto,
    /// This port.
    Fixed(u16),
}

impl Serialize for PortSetting {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            PortSetting::Auto => s.serialize_str("auto"),
            PortSetting::Fixed(p) => s.serialize_u16(*p),
        }
    }
}

impl<'de> Deserialize<'de> for PortSetting {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) if s == "auto" => Ok(PortSetting::Auto),
            Value::Number(n) => n
                .as_u64()
                .and_then(|n| u16::try_from(n).ok())
                .filter(|&p| p > 0)
                .map(PortSetting::Fixed)
                .ok_or_else(|| serde::de::Error::custom("port out of range")),
            other => Err(serde::de::Error::custom(format!("expected \"auto\" or a port, found {other}"))),
        }
    }
}

/// `[network]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// Host address to listen on.
    pub bind_address: IpAddr,
    /// Host HTTP port.
    pub http_port: PortSetting,
    /// Host HTTPS port.
    pub https_port: PortSetting,
    /// Host API port.
    pub api_port: PortSetting,
    /// NodePort of the Gateway's HTTP listener.
    pub http_nodeport: u16,
    /// NodePort of the Gateway's HTTPS listener.
    pub https_nodeport: u16,
    /// LAN address (`auto` or an IP).
    pub lan_ip: String,
    /// DNS suffix (`auto` or a name).
    pub dns_suffix: String,
    /// Host port of the DNS answer.
    pub dns_port: PortSetting,
    /// Resolvers for names outside the lab's zones, `ip` or `ip:port` (validated).
    pub dns_forward: Vec<String>,
}

impl Network {
    /// The DNS suffix after resolving `auto`: `127-0-0-1.nip.io` when bound to loopback,
    /// else the LAN address (configured, or `detected_lan_ip`) dashed under nip.io.
    pub fn resolved_dns_suffix(&self, detected_lan_ip: Option<IpAddr>) -> String {
        if self.dns_suffix != "auto" {
            return self.dns_suffix.clone();
        }
        let ip = if self.bind_address.is_loopback() {
            self.bind_address
        } else if self.bind_address.is_unspecified() {
            self.lan_ip.parse().ok().or(detected_lan_ip).unwrap_or(self.bind_address)
        } else {
            self.bind_address
        };
        let dashed = ip.to_string().replace(['.', ':'], "-");
        format!("{dashed}.nip.io")
    }

    /// Whether resolving the DNS suffix needs the LAN address detected on the host.
    pub fn needs_lan_ip(&self) -> bool {
        self.dns_suffix == "auto" && self.bind_address.is_unspecified() && self.lan_ip == "auto"
    }
}

/// `[stacks]`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stacks {
    /// Vault and External Secrets.
    pub secrets: bool,
    /// Kyverno and Policy Reporter.
    pub policies: bool,
    /// Prometheus, Grafana, Loki, Fluent Bit, Pyrra.
    pub observability: bool,
    /// Argo Workflows, SonarQube.
    pub cicd: bool,
    /// Trivy Operator.
    pub security: bool,
    /// Backstage, Dex.
    pub backstage: bool,
    /// Argo Events and playbooks.
    pub events: bool,
    /// The HA dial.
    pub prod: bool,
}

/// `[registry]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registry {
    /// Never reach a registry.
    pub offline: bool,
    /// Bundle path (empty: default).
    pub bundle: String,
    /// Registry mirrors.
    pub mirrors: BTreeMap<String, Vec<String>>,
    /// Serve the bundle read-only on the LAN (workshop mode).
    pub serve_lan: bool,
}

/// `[timeouts]`, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    /// Nodes ready.
    pub cluster: u64,
    /// One component ready.
    pub component: u64,
    /// All of `up`.
    pub total: u64,
}

/// Merges layers in order (later wins, per key) and checks the combination.
pub fn resolve(layers: &[&Layer]) -> Result<Config, ConfigError> {
    let mut merged: BTreeMap<String, (Value, SetAt)> = BTreeMap::new();
    for layer in layers {
        for (k, v) in &layer.values {
            merged.insert(k.clone(), v.clone());
        }
    }
    let mut root = serde_json::Map::new();
    for (section, _) in schema::SECTIONS {
        root.insert((*section).to_owned(), Value::Object(serde_json::Map::new()));
    }
    for (path, (value, _)) in &merged {
        let Some((section, key)) = path.split_once('.') else {
            continue;
        };
        if let Some(Value::Object(table)) = root.get_mut(section) {
            table.insert(key.to_owned(), value.clone());
        }
    }
    let config: Config = serde_json::from_value(Value::Object(root)).map_err(|e| ConfigError {
        diagnostics: vec![Diagnostic {
            origin: Origin::File("<resolved configuration>".into()),
            line: 1,
            column: 1,
            path: String::new(),
            message: format!("internal error: the merged configuration does not fit the schema: {e}"),
            hint: Some("please report this as a bug".into()),
        }],
    })?;
    let at = |path: &str| merged.get(path).map(|(_, at)| at.clone());
    let mut diagnostics = Vec::new();
    let mut combo = |path: &str, message: String, hint: &str| {
        if let Some(at) = at(path) {
            diagnostics.push(Diagnostic {
                origin: at.origin,
                line: at.line,
                column: at.column,
                path: path.to_owned(),
                message,
                hint: Some(hint.to_owned()),
            });
        }
    };
    if config.cluster.pools.len() > config.cluster.agents as usize {
        combo(
            "cluster.pools",
            format!("{} pools but only {} agents: each pool needs its own agent", config.cluster.pools.len(), config.cluster.agents),
            "raise cluster.agents or remove pools",
        );
    }
    let n = &config.network;
    let ports = [("http_port", n.http_port), ("https_port", n.https_port), ("api_port", n.api_port), ("dns_port", n.dns_port)];
    for (i, (a, pa)) in ports.iter().enumerate() {
        for (b, pb) in &ports[i + 1..] {
            if let (PortSetting::Fixed(x), PortSetting::Fixed(y)) = (pa, pb)
                && x == y
            {
                combo(&format!("network.{a}"), format!("port {x} is also network.{b}"), "give each port its own number, or \"auto\"");
            }
        }
    }
    if config.cluster.flavor == Flavor::Existing && config.cluster.servers != 1 {
        combo(
            "cluster.servers",
            "with flavor \"existing\" idp-lab creates no nodes".into(),
            "remove cluster.servers, or choose flavor \"k3s\" or \"kind\"",
        );
    }
    if parse_bytes(&config.watchdog.history_size) == Some(0) {
        combo("watchdog.history_size", "the history must be bounded by size: \"0\" is no limit".into(), "give a size such as \"32m\"");
    }
    if let Some(problem) = watchdog::prometheus_url_problem(config.watchdog.prometheus.trim()) {
        combo("watchdog.prometheus", problem, "give http://host:port, or leave it empty for the lab's own Prometheus");
    }
    if diagnostics.is_empty() { Ok(config) } else { Err(ConfigError { diagnostics }) }
}

#[cfg(test)]
mod tests;
