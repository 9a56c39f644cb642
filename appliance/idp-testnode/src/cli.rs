//! The k3s command line: `k3s server|agent [flags]`, merged with
//! `/etc/rancher/k3s/config.yaml` and the `K3S_*` environment the way k3s
//! merges them, and resolved into the [`Settings`] the stand-in acts on.
//!
//! Like k3s (urfave/cli), flags may be written `--flag=value`, `--flag value`
//! or with a single dash; unknown flags are accepted and recorded, because
//! callers pass many flags that only matter to a real k3s. Config-file keys
//! become flags placed *before* the command line, so for single-valued flags
//! the command line wins and repeatable flags accumulate.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use serde::Serialize;

use crate::node::{self, Taint};

/// Which k3s subcommand runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// `k3s server`: control plane plus the server's own node.
    Server,
    /// `k3s agent`: joins a server and registers a node.
    Agent,
}

/// Flags that never take a separate value (`--cluster-init other` must not
/// swallow `other`).
const BOOL_FLAGS: &[&str] = &[
    "cluster-init",
    "cluster-reset",
    "debug",
    "disable-agent",
    "disable-apiserver",
    "disable-cloud-controller",
    "disable-controller-manager",
    "disable-default-registry-endpoint",
    "disable-etcd",
    "disable-helm-controller",
    "disable-kube-proxy",
    "disable-network-policy",
    "disable-scheduler",
    "docker",
    "embedded-registry",
    "enable-pprof",
    "etcd-disable-snapshots",
    "etcd-expose-metrics",
    "etcd-s3",
    "flannel-external-ip",
    "flannel-ipv6-masq",
    "prefer-bundled-bin",
    "protect-kernel-defaults",
    "rootless",
    "secrets-encryption",
    "selinux",
    "supervisor-metrics",
    "with-node-id",
];

/// Flags whose values may list several items separated by commas
/// (urfave/cli string slices split them).
const COMMA_LISTS: &[&str] = &["tls-san", "disable", "node-label", "node-taint"];

/// Single-letter aliases k3s defines.
fn canonical(name: &str) -> &str {
    match name {
        "t" => "token",
        "s" => "server",
        "c" => "config",
        "o" => "write-kubeconfig",
        "d" => "data-dir",
        other => other,
    }
}

/// Parsed flags in the order given; boolean flags carry the value `"true"`.
#[derive(Clone, Debug, Default)]
pub struct Flags {
    entries: Vec<(String, String)>,
    positionals: Vec<String>,
}

impl Flags {
    /// Parses `args` (everything after the subcommand). Never fails: anything
    /// that is not a flag is kept as a positional argument.
    pub fn parse(args: &[String]) -> Flags {
        let mut flags = Flags::default();
        let mut i = 0;
        while i < args.len() {
            let arg = &args[i];
            i += 1;
            if arg == "--" {
                flags.positionals.extend(args[i..].iter().cloned());
                break;
            }
            let stripped = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')).filter(|s| !s.is_empty());
            let Some(stripped) = stripped else {
                flags.positionals.push(arg.clone());
                continue;
            };
            let (name, inline) = match stripped.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (stripped, None),
            };
            let name = canonical(name).to_string();
            let value = match inline {
                Some(v) => v,
                None if BOOL_FLAGS.contains(&name.as_str()) => "true".to_string(),
                None => match args.get(i) {
                    Some(next) if !next.starts_with('-') => {
                        i += 1;
                        next.clone()
                    }
                    _ => "true".to_string(),
                },
            };
            flags.entries.push((name, value));
        }
        flags
    }

    /// The last value of a single-valued flag.
    pub fn last(&self, name: &str) -> Option<&str> {
        self.entries.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Every value of a repeatable flag, comma lists split, empties dropped.
    pub fn all(&self, name: &str) -> Vec<String> {
        let split = COMMA_LISTS.contains(&name);
        self.entries
            .iter()
            .filter(|(n, _)| n == name)
            .flat_map(|(_, v)| if split { v.split(',').map(|s| s.trim().to_string()).collect() } else { vec![v.clone()] })
            .filter(|v| !v.is_empty())
            .collect()
    }

    /// A boolean flag: set and not `false`.
    pub fn enabled(&self, name: &str) -> bool {
        self.last(name).is_some_and(|v| !matches!(v, "false" | "0" | "no"))
    }

    /// Flags grouped by name, values in order, for `invocation.json`.
    pub fn grouped(&self) -> BTreeMap<String, Vec<String>> {
        let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (n, v) in &self.entries {
            map.entry(n.clone()).or_default().push(v.clone());
        }
        map
    }

    /// Arguments that are not flags (k3s takes none; kept for the record).
    pub fn positionals(&self) -> &[String] {
        &self.positionals
    }
}

/// An invalid value for a flag the stand-in acts on.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// A flag value could not be parsed.
    #[error("invalid value {value:?} for --{flag}: {reason}")]
    Invalid {
        /// Flag name without dashes.
        flag: &'static str,
        /// The value given.
        value: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A file named by a flag could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

fn invalid(flag: &'static str, value: &str, reason: impl ToString) -> SettingsError {
    SettingsError::Invalid { flag, value: value.to_string(), reason: reason.to_string() }
}

/// What the stand-in does, resolved from flags and environment.
#[derive(Clone, Debug)]
pub struct Settings {
    /// server or agent.
    pub role: Role,
    /// Node name (`--node-name`, `K3S_NODE_NAME`, else the hostname).
    pub node_name: String,
    /// Join/cluster token (`--token`, `K3S_TOKEN`, `--token-file`, `K3S_TOKEN_FILE`).
    pub token: Option<String>,
    /// Server URL (`--server`, `K3S_URL`).
    pub server_url: Option<String>,
    /// Extra serving-certificate SANs (`--tls-san`).
    pub tls_sans: Vec<String>,
    /// `--node-label` pairs, validated.
    pub node_labels: Vec<(String, String)>,
    /// `--node-taint`s, validated.
    pub node_taints: Vec<Taint>,
    /// Supervisor/apiserver port (`--https-listen-port`, default 6443).
    pub https_port: u16,
    /// `--bind-address` for the apiserver (default `0.0.0.0`).
    pub bind_address: String,
    /// `--advertise-address`, else the node IP.
    pub advertise_address: Option<String>,
    /// Admin kubeconfig copy (`--write-kubeconfig`, `K3S_KUBECONFIG_OUTPUT`).
    pub kubeconfig_output: Option<PathBuf>,
    /// Mode of the written kubeconfigs (`--write-kubeconfig-mode`, default 0600).
    pub kubeconfig_mode: u32,
    /// `--disable` components (recorded; the stand-in packages none).
    pub disable: Vec<String>,
    /// `--cluster-init`: adds the etcd role label like k3s' embedded etcd.
    pub cluster_init: bool,
    /// `--disable-agent`: the server registers no node of its own.
    pub disable_agent: bool,
    /// Service CIDR (`--service-cidr`, default `10.43.0.0/16`).
    pub service_cidr: String,
    /// Cluster domain (`--cluster-domain`, default `cluster.local`).
    pub cluster_domain: String,
    /// `--node-ip` overrides of the detected InternalIP.
    pub node_ips: Vec<IpAddr>,
    /// `--node-external-ip` addresses.
    pub node_external_ips: Vec<IpAddr>,
    /// `--kube-apiserver-arg` values (`key=value`).
    pub apiserver_args: Vec<String>,
    /// `--kube-controller-manager-arg` values.
    pub controller_manager_args: Vec<String>,
    /// `--etcd-arg` values.
    pub etcd_args: Vec<String>,
    /// `--kubelet-arg` values (recorded; there is no kubelet).
    pub kubelet_args: Vec<String>,
    /// The full effective argument list with the token masked, for the
    /// `k3s.io/node-args` annotation.
    pub node_args: Vec<String>,
}

impl Settings {
    /// Resolves settings from merged flags and the environment.
    pub fn resolve(
        role: Role,
        flags: &Flags,
        effective_args: &[String],
        env: &dyn Fn(&str) -> Option<String>,
        hostname: &str,
    ) -> Result<Settings, SettingsError> {
        let node_name = flags
            .last("node-name")
            .map(str::to_string)
            .or_else(|| env("K3S_NODE_NAME"))
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| hostname.to_lowercase());
        if !node::is_dns_subdomain(&node_name) {
            return Err(invalid("node-name", &node_name, "a node name must be a lowercase RFC 1123 subdomain"));
        }

        let token = match flags.last("token").map(str::to_string).or_else(|| env("K3S_TOKEN")) {
            Some(t) if !t.trim().is_empty() => Some(t.trim().to_string()),
            _ => match flags.last("token-file").map(str::to_string).or_else(|| env("K3S_TOKEN_FILE")) {
                Some(path) => {
                    let text = std::fs::read_to_string(&path).map_err(|source| SettingsError::Read { path, source })?;
                    Some(text.trim().to_string()).filter(|t| !t.is_empty())
                }
                None => None,
            },
        };
        if let Some(t) = &token
            && t.contains(['\n', '\r'])
        {
            return Err(invalid("token", "<redacted>", "a token must be a single line"));
        }

        let server_url = flags.last("server").map(str::to_string).or_else(|| env("K3S_URL")).filter(|u| !u.is_empty());
        if let Some(u) = &server_url
            && !u.starts_with("https://")
        {
            return Err(invalid("server", u, "the server URL must start with https://"));
        }

        let https_port = match flags.last("https-listen-port") {
            Some(p) => p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| invalid("https-listen-port", p, "not a TCP port"))?,
            None => 6443,
        };

        let node_labels = flags
            .all("node-label")
            .iter()
            .map(|l| node::parse_label(l).map_err(|e| invalid("node-label", l, e)))
            .collect::<Result<Vec<_>, _>>()?;
        let node_taints = flags
            .all("node-taint")
            .iter()
            .map(|t| node::parse_taint(t).map_err(|e| invalid("node-taint", t, e)))
            .collect::<Result<Vec<_>, _>>()?;

        let parse_ips = |flag: &'static str| -> Result<Vec<IpAddr>, SettingsError> {
            flags
                .all(flag)
                .iter()
                .flat_map(|v| v.split(',').map(str::trim).map(str::to_string).collect::<Vec<_>>())
                .filter(|v| !v.is_empty())
                .map(|v| v.parse::<IpAddr>().map_err(|e| invalid(flag, &v, e)))
                .collect()
        };

        let kubeconfig_mode = match flags.last("write-kubeconfig-mode").map(str::to_string).or_else(|| env("K3S_KUBECONFIG_MODE")) {
            Some(m) => u32::from_str_radix(m.trim_start_matches("0o"), 8)
                .ok()
                .filter(|m| *m <= 0o777)
                .ok_or_else(|| invalid("write-kubeconfig-mode", &m, "not an octal file mode"))?,
            None => 0o600,
        };

        let node_args = mask_token_args(effective_args);

        Ok(Settings {
            role,
            node_name,
            token,
            server_url,
            tls_sans: flags.all("tls-san"),
            node_labels,
            node_taints,
            https_port,
            bind_address: flags.last("bind-address").unwrap_or("0.0.0.0").to_string(),
            advertise_address: flags.last("advertise-address").map(str::to_string),
            kubeconfig_output: flags
                .last("write-kubeconfig")
                .map(str::to_string)
                .or_else(|| env("K3S_KUBECONFIG_OUTPUT"))
                .filter(|p| !p.is_empty())
                .map(PathBuf::from),
            kubeconfig_mode,
            disable: flags.all("disable"),
            cluster_init: flags.enabled("cluster-init"),
            disable_agent: flags.enabled("disable-agent"),
            service_cidr: flags
                .all("service-cidr")
                .first()
                .map(|s| s.split(',').next().unwrap_or(s).to_string())
                .unwrap_or_else(|| "10.43.0.0/16".to_string()),
            cluster_domain: flags.last("cluster-domain").unwrap_or("cluster.local").to_string(),
            node_ips: parse_ips("node-ip")?,
            node_external_ips: parse_ips("node-external-ip")?,
            apiserver_args: flags.all("kube-apiserver-arg"),
            controller_manager_args: flags.all("kube-controller-manager-arg"),
            etcd_args: flags.all("etcd-arg"),
            kubelet_args: flags.all("kubelet-arg"),
            node_args,
        })
    }
}

impl Settings {
    /// The resolved settings for `invocation.json` (the token only as a flag
    /// whether one was given).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "role": self.role,
            "node_name": self.node_name,
            "token_set": self.token.is_some(),
            "server_url": self.server_url,
            "tls_sans": self.tls_sans,
            "node_labels": self.node_labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
            "node_taints": self.node_taints,
            "disable": self.disable,
            "https_listen_port": self.https_port,
            "kubeconfig_output": self.kubeconfig_output,
            "kubeconfig_mode": format!("{:04o}", self.kubeconfig_mode),
            "cluster_init": self.cluster_init,
            "disable_agent": self.disable_agent,
            "service_cidr": self.service_cidr,
            "cluster_domain": self.cluster_domain,
            "node_ips": self.node_ips,
            "node_external_ips": self.node_external_ips,
            "kube_apiserver_args": self.apiserver_args,
            "kube_controller_manager_args": self.controller_manager_args,
            "kubelet_args": self.kubelet_args,
            "etcd_args": self.etcd_args,
        })
    }
}

/// The argument list with token values replaced by `********`, as k3s does in
/// the `k3s.io/node-args` annotation.
fn mask_token_args(args: &[String]) -> Vec<String> {
    let secret = |a: &str| {
        let name = a.trim_start_matches('-');
        let name = name.split_once('=').map_or(name, |(n, _)| n);
        matches!(canonical(name), "token" | "agent-token")
    };
    let mut out = Vec::with_capacity(args.len());
    let mut mask_next = false;
    for a in args {
        if mask_next {
            out.push("********".to_string());
            mask_next = false;
        } else if a.starts_with('-') && secret(a) {
            match a.split_once('=') {
                Some((n, _)) => out.push(format!("{n}=********")),
                None => {
                    out.push(a.clone());
                    mask_next = true;
                }
            }
        } else {
            out.push(a.clone());
        }
    }
    out
}

/// Merges k3s-style component args (`key=value`, as given to
/// `--kube-apiserver-arg`) over defaults: a user key replaces the default of
/// the same name, and the result is a `--key=value` list.
pub fn merge_component_args(defaults: &[(&str, String)], user: &[String]) -> Vec<String> {
    let user_keys: Vec<&str> = user
        .iter()
        .map(|u| {
            let u = u.trim_start_matches('-');
            u.split_once('=').map_or(u, |(k, _)| k)
        })
        .collect();
    let mut out: Vec<String> = defaults.iter().filter(|(k, _)| !user_keys.contains(k)).map(|(k, v)| format!("--{k}={v}")).collect();
    out.extend(user.iter().map(|u| format!("--{}", u.trim_start_matches('-'))));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Vec<String> {
        s.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn both_flag_forms_and_unknown_flags() {
        let f = Flags::parse(&args(&[
            "--tls-san",
            "a",
            "--tls-san=b,c",
            "--cluster-init",
            "--frobnicate",
            "--node-label",
            "x=y",
            "-t",
            "tok",
            "--unknown-bool",
            "--disable=traefik,servicelb",
        ]));
        assert_eq!(f.all("tls-san"), ["a", "b", "c"]);
        assert!(f.enabled("cluster-init"));
        assert_eq!(f.last("token"), Some("tok"));
        assert_eq!(f.all("disable"), ["traefik", "servicelb"]);
        assert_eq!(f.last("unknown-bool"), Some("true"));
        // An unknown flag followed by another flag is a boolean ...
        assert_eq!(f.last("frobnicate"), Some("true"));
        // ... and followed by a value it takes the value.
        assert_eq!(Flags::parse(&args(&["--foo", "bar"])).last("foo"), Some("bar"));
        assert_eq!(f.all("node-label"), ["x=y"]);
    }

    #[test]
    fn last_value_wins_and_lists_accumulate() {
        let f = Flags::parse(&args(&["--token=cfg", "--node-label=a=1", "--token", "cli", "--node-label", "b=2"]));
        assert_eq!(f.last("token"), Some("cli"));
        assert_eq!(f.all("node-label"), ["a=1", "b=2"]);
    }

    #[test]
    fn settings_from_env_and_flags() {
        let f = Flags::parse(&args(&["--node-taint", "k=v:NoSchedule", "--https-listen-port=7443"]));
        let env = |k: &str| match k {
            "K3S_TOKEN" => Some("abc".to_string()),
            "K3S_URL" => Some("https://srv:6443".to_string()),
            _ => None,
        };
        let s = Settings::resolve(Role::Agent, &f, &[], &env, "Host-1").expect("valid");
        assert_eq!(s.node_name, "host-1");
        assert_eq!(s.token.as_deref(), Some("abc"));
        assert_eq!(s.server_url.as_deref(), Some("https://srv:6443"));
        assert_eq!(s.https_port, 7443);
        assert_eq!(s.node_taints.len(), 1);
        assert_eq!(s.kubeconfig_mode, 0o600);
    }

    #[test]
    fn bad_values_are_errors() {
        let env = |_: &str| None;
        for bad in [&["--node-taint", "k=v"][..], &["--https-listen-port", "x"], &["--server", "http://x"]] {
            assert!(Settings::resolve(Role::Server, &Flags::parse(&args(bad)), &[], &env, "h").is_err());
        }
    }

    #[test]
    fn component_args_override_defaults() {
        let merged = merge_component_args(&[("secure-port", "6443".into()), ("v", "0".into())], &args(&["v=4", "feature-gates=A=true"]));
        assert_eq!(merged, ["--secure-port=6443", "--v=4", "--feature-gates=A=true"]);
    }

    #[test]
    fn tokens_are_masked() {
        assert_eq!(
            mask_token_args(&args(&["--token=abc", "-t", "x", "--node-label", "a=b"])),
            ["--token=********", "-t", "********", "--node-label", "a=b"]
        );
    }
}
