//! The k3s command line: `k3s server|agent [flags]`, merged with
//! `/etc/rancher/k3s/config.yaml` and the `K3S_*` environment the way k3s
//! merges them, and resolved into the [`Settings`] the stand-in acts on.
//!
//! Parsing is strict and lives in [`crate::flags`]: unknown flags and
//! server-only flags on an agent are refused as k3s refuses them. Config-file
//! keys become flags placed *before* the command line, so for single-valued
//! flags the command line wins and repeatable flags accumulate.

use std::net::IpAddr;
use std::path::PathBuf;

use serde::Serialize;

use crate::config::ConfigFiles;
pub use crate::flags::Flags;
use crate::flags::{self, Command};
use crate::labels::{self, Taint};

/// Which k3s subcommand runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// `k3s server`: control plane plus the server's own node.
    Server,
    /// `k3s agent`: joins a server and registers a node.
    Agent,
}

impl Role {
    /// The parser's view of the subcommand.
    pub fn command(self) -> Command {
        match self {
            Role::Server => Command::Server,
            Role::Agent => Command::Agent,
        }
    }
}

/// Flags whose values may list several items separated by commas. The
/// parser keeps each value whole (urfave/cli's `DisableSliceFlagSeparator`);
/// k3s splits these itself later (or hands them joined to the kubelet).
const COMMA_LISTS: &[&str] = &["tls-san", "disable", "node-label", "node-taint", "node-ip", "node-external-ip", "service-cidr"];

/// Every value of a repeatable flag, comma lists split, empties dropped.
fn list(flags: &Flags, name: &str) -> Vec<String> {
    let split = COMMA_LISTS.contains(&name);
    flags
        .values(name)
        .into_iter()
        .flat_map(|v| if split { v.split(',').map(|s| s.trim().to_string()).collect() } else { vec![v] })
        .filter(|v| !v.is_empty())
        .collect()
}

/// Flannel backends k3s v1.33 knows (`none` means: bring your own CNI).
const FLANNEL_BACKENDS: &[&str] = &["none", "vxlan", "host-gw", "wireguard-native"];

/// The inner k3s binary's view of the config files: their keys become
/// `--key=value` arguments placed before the command line's. With
/// `strip_unknown` (a `k3s server` whose second argv word is `server`) keys
/// that are not server flags are dropped and returned, each to be warned
/// about with [`unknown_key_warning`]; an agent drops nothing, so an
/// unknown or server-only key fails the parse like a command-line flag.
/// Returns the dropped keys and the effective arguments.
pub fn merge_config(config: &mut ConfigFiles, strip_unknown: bool, args: &[String]) -> (Vec<String>, Vec<String>) {
    let dropped = if strip_unknown { config.drop_unknown(|k| flags::defined(Command::Server, k)) } else { Vec::new() };
    let mut effective = config.to_args();
    effective.extend(args.iter().cloned());
    (dropped, effective)
}

/// k3s' warning for a config key `k3s server` does not know.
pub fn unknown_key_warning(key: &str) -> String {
    let dashes = if key.chars().count() == 1 { "-" } else { "--" };
    format!("Unknown flag {dashes}{key} found in config.yaml, skipping")
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
    /// A combination or value k3s refuses at start, with k3s' message.
    #[error("{0}")]
    Fatal(String),
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
    /// `--flannel-backend` of a server (default `vxlan`); `none` means the
    /// nodes stay NotReady until a CNI config appears. Agents learn the
    /// server's value when they retrieve their configuration.
    pub flannel_backend: String,
    /// `--resolv-conf` (recorded; there is no kubelet to hand it to).
    pub resolv_conf: Option<String>,
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
        if !labels::is_dns_subdomain(&node_name) {
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

        let flannel_backend = flags.last("flannel-backend").unwrap_or("vxlan").to_string();
        if !FLANNEL_BACKENDS.contains(&flannel_backend.as_str()) {
            return Err(SettingsError::Fatal(format!("Cannot configure unknown flannel backend '{flannel_backend}'")));
        }

        let node_labels = list(flags, "node-label")
            .iter()
            .map(|l| labels::parse_label(l).map_err(|e| invalid("node-label", l, e)))
            .collect::<Result<Vec<_>, _>>()?;
        let node_taints = list(flags, "node-taint")
            .iter()
            .map(|t| labels::parse_taint(t).map_err(|e| invalid("node-taint", t, e)))
            .collect::<Result<Vec<_>, _>>()?;

        let parse_ips = |flag: &'static str| -> Result<Vec<IpAddr>, SettingsError> {
            list(flags, flag).into_iter().map(|v| v.parse::<IpAddr>().map_err(|e| invalid(flag, &v, e))).collect()
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
            tls_sans: list(flags, "tls-san"),
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
            disable: list(flags, "disable"),
            flannel_backend,
            resolv_conf: flags.last("resolv-conf").map(str::to_string).or_else(|| env("K3S_RESOLV_CONF")).filter(|p| !p.is_empty()),
            cluster_init: flags.enabled("cluster-init"),
            disable_agent: flags.enabled("disable-agent"),
            service_cidr: list(flags, "service-cidr").into_iter().next().unwrap_or_else(|| "10.43.0.0/16".to_string()),
            cluster_domain: flags.last("cluster-domain").unwrap_or("cluster.local").to_string(),
            node_ips: parse_ips("node-ip")?,
            node_external_ips: parse_ips("node-external-ip")?,
            apiserver_args: list(flags, "kube-apiserver-arg"),
            controller_manager_args: list(flags, "kube-controller-manager-arg"),
            etcd_args: list(flags, "etcd-arg"),
            kubelet_args: list(flags, "kubelet-arg"),
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
            // An agent learns the backend from the server, not from its flags.
            "flannel_backend": (self.role == Role::Server).then_some(&self.flannel_backend),
            "resolv_conf": self.resolv_conf,
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
        // Any command's table: the list may come from either subcommand.
        let known = flags::lookup(Command::Server, name).or_else(|| flags::lookup(Command::Agent, name));
        matches!(known.map(|d| d.name), Some("token" | "agent-token"))
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

    fn parse(role: Role, a: &[&str]) -> Flags {
        flags::parse(role.command(), &args(a), &|_| None).expect("valid flags")
    }

    #[test]
    fn comma_lists_are_split_and_lists_accumulate() {
        let f = parse(Role::Server, &["--tls-san", "a", "--tls-san=b,c", "--disable=traefik,servicelb", "--node-label", "x=y"]);
        assert_eq!(list(&f, "tls-san"), ["a", "b", "c"]);
        assert_eq!(list(&f, "disable"), ["traefik", "servicelb"]);
        assert_eq!(list(&f, "node-label"), ["x=y"]);
        let f = parse(Role::Agent, &["--token=cfg", "--node-label=a=1", "--token", "cli", "--node-label", "b=2"]);
        assert_eq!(f.last("token"), Some("cli"));
        assert_eq!(list(&f, "node-label"), ["a=1", "b=2"]);
    }

    fn config(pairs: &[(&str, serde_json::Value)]) -> ConfigFiles {
        ConfigFiles { merged: pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(), ..ConfigFiles::default() }
    }

    #[test]
    fn a_server_warns_about_and_drops_unknown_config_keys() {
        let mut c = config(&[
            ("foo", serde_json::json!("bar")),
            ("disable-apiserver-lb", serde_json::json!(true)),
            ("tls-san", serde_json::json!(["a", "b"])),
            ("flannel-backend", serde_json::json!("none")),
            ("token-file", serde_json::json!("/etc/rancher/k3s/token")),
        ]);
        let (dropped, effective) = merge_config(&mut c, true, &args(&["--node-name=s"]));
        // An agent-only key is as unknown to a server as a made-up one.
        assert_eq!(dropped, ["foo", "disable-apiserver-lb"]);
        assert_eq!(unknown_key_warning(&dropped[0]), "Unknown flag --foo found in config.yaml, skipping");
        assert_eq!(
            effective,
            ["--tls-san=a", "--tls-san=b", "--flannel-backend=none", "--token-file=/etc/rancher/k3s/token", "--node-name=s"]
        );
        let f = flags::parse(Command::Server, &effective, &|_| None).expect("the rest parses");
        assert_eq!(f.values("tls-san"), ["a", "b"]);
    }

    #[test]
    fn an_agent_fails_on_unknown_and_server_only_config_keys() {
        for (key, value) in [
            ("foo", serde_json::json!("bar")),
            ("kube-apiserver-arg", serde_json::json!(["v=2"])),
            ("cluster-init", serde_json::json!(true)),
        ] {
            let mut c = config(&[("server", serde_json::json!("https://s:6443")), (key, value)]);
            let (dropped, effective) = merge_config(&mut c, false, &[]);
            assert!(dropped.is_empty(), "an agent drops nothing");
            let e = flags::parse(Command::Agent, &effective, &|_| None).expect_err("refused");
            assert_eq!(e.to_string(), format!("flag provided but not defined: -{key}"));
        }
        // What idp-lab writes for an agent is fine.
        let mut c = config(&[("token-file", serde_json::json!("/t")), ("server", serde_json::json!("https://s:6443"))]);
        let (_, effective) = merge_config(&mut c, false, &args(&["--node-label=role=apps"]));
        assert!(flags::parse(Command::Agent, &effective, &|_| None).is_ok());
        // A bad value in a known key fails the same way (with Go's text).
        let mut c = config(&[("https-listen-port", serde_json::json!("abc"))]);
        let (_, effective) = merge_config(&mut c, true, &[]);
        assert_eq!(
            flags::parse(Command::Server, &effective, &|_| None).expect_err("bad int").to_string(),
            r#"invalid value "abc" for flag -https-listen-port: parse error"#
        );
    }

    #[test]
    fn flannel_backend_is_checked_and_recorded() {
        let env = |_: &str| None;
        let s = Settings::resolve(Role::Server, &parse(Role::Server, &["--flannel-backend=none"]), &[], &env, "h").expect("valid");
        assert_eq!(s.flannel_backend, "none");
        let s = Settings::resolve(Role::Server, &parse(Role::Server, &[]), &[], &env, "h").expect("valid");
        assert_eq!(s.flannel_backend, "vxlan");
        let e = Settings::resolve(Role::Server, &parse(Role::Server, &["--flannel-backend=ipsec"]), &[], &env, "h").expect_err("unknown");
        assert_eq!(e.to_string(), "Cannot configure unknown flannel backend 'ipsec'");
    }

    #[test]
    fn settings_from_env_and_flags() {
        let f = parse(Role::Agent, &["--node-taint", "k=v:NoSchedule"]);
        let env = |k: &str| match k {
            "K3S_TOKEN" => Some("abc".to_string()),
            "K3S_URL" => Some("https://srv:6443".to_string()),
            _ => None,
        };
        let s = Settings::resolve(Role::Agent, &f, &[], &env, "Host-1").expect("valid");
        assert_eq!(s.node_name, "host-1");
        assert_eq!(s.token.as_deref(), Some("abc"));
        assert_eq!(s.server_url.as_deref(), Some("https://srv:6443"));
        assert_eq!(s.https_port, 6443);
        assert_eq!(s.node_taints.len(), 1);
        assert_eq!(s.kubeconfig_mode, 0o600);
    }

    #[test]
    fn bad_values_are_errors() {
        let env = |_: &str| None;
        for bad in [&["--node-taint", "k=v"][..], &["--https-listen-port", "0"], &["--server", "http://x"]] {
            assert!(Settings::resolve(Role::Server, &parse(Role::Server, bad), &[], &env, "h").is_err());
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
