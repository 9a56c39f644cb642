//! The flags of `k3s server` and `k3s agent` (k3s v1.33.4, urfave/cli v2),
//! as data, and a parser that accepts and rejects exactly what k3s does.
//!
//! The table follows `shared/reference/k3s-flags.md` §2 row by row (the order
//! is `ServerFlags`' order, which is also the order of `k3s server --help`).
//! The parser copies Go's `flag` package as urfave/cli drives it (§4): one or
//! two dashes, `--name=value` or `--name value`, a bool takes a value only
//! through `=`, every other kind takes the next argument even when it starts
//! with `-`, parsing stops at the first positional argument or `--`, and an
//! unknown name is `flag provided but not defined: -name`.

use std::fmt::Write as _;

/// Which subcommand accepts a flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// `k3s server` and `k3s agent`.
    Both,
    /// `k3s server` only.
    Server,
    /// `k3s agent` only.
    Agent,
}

/// The urfave/cli flag type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `BoolFlag`: no separate value; `--name=false` to turn off.
    Bool,
    /// `StringFlag`.
    String,
    /// `IntFlag` (Go `strconv.ParseInt` with base 0).
    Int,
    /// `DurationFlag` (Go `time.ParseDuration`).
    Duration,
    /// `StringSliceFlag`: repeatable, not split at commas by the parser.
    Slice,
}

/// Where a parse runs: before the subcommand, or in one of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// The flags before the subcommand (`k3s --debug server`).
    Root,
    /// `k3s server`.
    Server,
    /// `k3s agent`.
    Agent,
}

impl Command {
    /// The subcommand word (`""` at root level).
    pub fn word(self) -> &'static str {
        match self {
            Command::Root => "",
            Command::Server => "server",
            Command::Agent => "agent",
        }
    }
}

/// One flag definition.
#[derive(Clone, Copy, Debug)]
pub struct FlagDef {
    /// Primary name, without dashes.
    pub name: &'static str,
    /// Other names for the same flag (`-t` for `--token`).
    pub aliases: &'static [&'static str],
    /// Which subcommands accept it.
    pub scope: Scope,
    /// Value type.
    pub kind: Kind,
    /// Environment variable urfave/cli reads for it.
    pub env: Option<&'static str>,
    /// The flag's own default, as help shows it.
    pub default: Option<&'static str>,
    /// The bracketed usage tag (`listener`, `agent/node`, ...).
    pub group: &'static str,
    /// Parsed normally but left out of `--help`.
    pub hidden: bool,
    /// A legacy spelling that fills the same setting as this other flag.
    pub same_as: Option<&'static str>,
}

const fn flag(name: &'static str, scope: Scope, kind: Kind, group: &'static str) -> FlagDef {
    FlagDef { name, aliases: &[], scope, kind, env: None, default: None, group, hidden: false, same_as: None }
}

impl FlagDef {
    const fn alias(mut self, aliases: &'static [&'static str]) -> FlagDef {
        self.aliases = aliases;
        self
    }
    const fn env(mut self, env: &'static str) -> FlagDef {
        self.env = Some(env);
        self
    }
    const fn default(mut self, default: &'static str) -> FlagDef {
        self.default = Some(default);
        self
    }
    const fn hidden(mut self) -> FlagDef {
        self.hidden = true;
        self
    }
    const fn same_as(mut self, target: &'static str) -> FlagDef {
        self.same_as = Some(target);
        self
    }

    /// The name values are stored under: the primary name, or the flag a
    /// legacy spelling stands for.
    pub fn key(&self) -> &'static str {
        self.same_as.unwrap_or(self.name)
    }

    /// True when `name` is this flag's name or one of its aliases.
    pub fn is_named(&self, name: &str) -> bool {
        self.name == name || self.aliases.contains(&name)
    }

    fn accepted_by(&self, cmd: Command) -> bool {
        match (self.scope, cmd) {
            (_, Command::Root) => false,
            (Scope::Both, _) => true,
            (Scope::Server, Command::Server) | (Scope::Agent, Command::Agent) => true,
            (Scope::Server, Command::Agent) | (Scope::Agent, Command::Server) => false,
        }
    }
}

use Kind::{Bool, Duration, Int, Slice, String as Str};
use Scope::{Agent, Both, Server};

/// Every flag of `k3s server` and `k3s agent` at k3s v1.33.4
/// (`e7dd3b7e`), in `ServerFlags` order; the agent-only flag last.
pub const FLAGS: &[FlagDef] = &[
    flag("config", Both, Str, "config").alias(&["c"]).env("K3S_CONFIG_FILE").default("/etc/rancher/k3s/config.yaml"),
    flag("debug", Both, Bool, "logging").env("K3S_DEBUG"),
    flag("v", Both, Int, "logging"),
    flag("vmodule", Both, Str, "logging"),
    flag("log", Both, Str, "logging").alias(&["l"]),
    flag("alsologtostderr", Both, Bool, "logging"),
    flag("bind-address", Both, Str, "listener"),
    flag("https-listen-port", Server, Int, "listener").default("6443"),
    flag("supervisor-port", Server, Int, "experimental").env("K3S_SUPERVISOR_PORT").hidden(),
    flag("apiserver-port", Server, Int, "experimental").env("K3S_APISERVER_PORT").hidden(),
    flag("apiserver-bind-address", Server, Str, "experimental").env("K3S_APISERVER_BIND_ADDRESS").hidden(),
    flag("advertise-address", Server, Str, "listener"),
    flag("advertise-port", Server, Int, "listener"),
    flag("tls-san", Server, Slice, "listener"),
    flag("tls-san-security", Server, Bool, "listener").default("true"),
    flag("data-dir", Both, Str, "data").alias(&["d"]).env("K3S_DATA_DIR"),
    flag("cluster-cidr", Server, Slice, "networking"),
    flag("service-cidr", Server, Slice, "networking"),
    flag("service-node-port-range", Server, Str, "networking").default("30000-32767"),
    flag("cluster-dns", Server, Slice, "networking"),
    flag("cluster-domain", Server, Str, "networking").default("cluster.local"),
    flag("flannel-backend", Server, Str, "networking").default("vxlan"),
    flag("flannel-ipv6-masq", Server, Bool, "networking"),
    flag("flannel-external-ip", Server, Bool, "networking"),
    flag("egress-selector-mode", Server, Str, "networking").default("agent"),
    flag("servicelb-namespace", Server, Str, "networking").default("kube-system"),
    flag("write-kubeconfig", Server, Str, "client").alias(&["o"]).env("K3S_KUBECONFIG_OUTPUT"),
    flag("write-kubeconfig-mode", Server, Str, "client").env("K3S_KUBECONFIG_MODE"),
    flag("write-kubeconfig-group", Server, Str, "client").env("K3S_KUBECONFIG_GROUP"),
    flag("helm-job-image", Server, Str, "helm"),
    flag("token", Both, Str, "cluster").alias(&["t"]).env("K3S_TOKEN"),
    flag("token-file", Both, Str, "cluster").env("K3S_TOKEN_FILE"),
    flag("agent-token", Server, Str, "cluster").env("K3S_AGENT_TOKEN"),
    flag("agent-token-file", Server, Str, "cluster").env("K3S_AGENT_TOKEN_FILE"),
    flag("server", Both, Str, "cluster").alias(&["s"]).env("K3S_URL"),
    flag("cluster-init", Server, Bool, "cluster").env("K3S_CLUSTER_INIT"),
    flag("cluster-reset", Server, Bool, "cluster").env("K3S_CLUSTER_RESET"),
    flag("cluster-reset-restore-path", Server, Str, "db"),
    flag("kube-apiserver-arg", Server, Slice, "flags"),
    flag("etcd-arg", Server, Slice, "flags"),
    flag("kube-controller-manager-arg", Server, Slice, "flags"),
    flag("kube-scheduler-arg", Server, Slice, "flags"),
    flag("kube-cloud-controller-manager-arg", Server, Slice, "flags"),
    flag("kine-tls", Server, Bool, "experimental/db").hidden(),
    flag("datastore-endpoint", Server, Str, "db").env("K3S_DATASTORE_ENDPOINT"),
    flag("datastore-cafile", Server, Str, "db").env("K3S_DATASTORE_CAFILE"),
    flag("datastore-certfile", Server, Str, "db").env("K3S_DATASTORE_CERTFILE"),
    flag("datastore-keyfile", Server, Str, "db").env("K3S_DATASTORE_KEYFILE"),
    flag("etcd-expose-metrics", Server, Bool, "db"),
    flag("etcd-disable-snapshots", Server, Bool, "db"),
    flag("etcd-snapshot-name", Server, Str, "db").default("etcd-snapshot"),
    flag("etcd-snapshot-schedule-cron", Server, Str, "db").default("0 */12 * * *"),
    flag("etcd-snapshot-reconcile-interval", Server, Duration, "db").default("10m"),
    flag("etcd-snapshot-retention", Server, Int, "db").default("5"),
    flag("etcd-snapshot-dir", Server, Str, "db"),
    flag("etcd-snapshot-compress", Server, Bool, "db"),
    flag("etcd-s3", Server, Bool, "db"),
    flag("etcd-s3-endpoint", Server, Str, "db").default("s3.amazonaws.com"),
    flag("etcd-s3-endpoint-ca", Server, Str, "db"),
    flag("etcd-s3-skip-ssl-verify", Server, Bool, "db"),
    flag("etcd-s3-access-key", Server, Str, "db").env("AWS_ACCESS_KEY_ID"),
    flag("etcd-s3-secret-key", Server, Str, "db").env("AWS_SECRET_ACCESS_KEY"),
    flag("etcd-s3-session-token", Server, Str, "db").env("AWS_SESSION_TOKEN"),
    flag("etcd-s3-bucket", Server, Str, "db"),
    flag("etcd-s3-bucket-lookup-type", Server, Str, "db"),
    flag("etcd-s3-region", Server, Str, "db").default("us-east-1"),
    flag("etcd-s3-folder", Server, Str, "db"),
    flag("etcd-s3-retention", Server, Int, "db").default("5"),
    flag("etcd-s3-proxy", Server, Str, "db"),
    flag("etcd-s3-config-secret", Server, Str, "db"),
    flag("etcd-s3-insecure", Server, Bool, "db"),
    flag("etcd-s3-timeout", Server, Duration, "db").default("5m"),
    flag("default-local-storage-path", Server, Str, "storage"),
    flag("disable", Server, Slice, "components"),
    flag("disable-scheduler", Server, Bool, "components"),
    flag("disable-cloud-controller", Server, Bool, "components"),
    flag("disable-kube-proxy", Server, Bool, "components"),
    flag("disable-network-policy", Server, Bool, "components"),
    flag("disable-helm-controller", Server, Bool, "components"),
    flag("disable-apiserver", Server, Bool, "experimental/components").hidden(),
    flag("disable-controller-manager", Server, Bool, "experimental/components").hidden(),
    flag("disable-etcd", Server, Bool, "experimental/components").hidden(),
    flag("embedded-registry", Server, Bool, "components"),
    flag("supervisor-metrics", Server, Bool, "experimental/components"),
    flag("node-name", Both, Str, "agent/node").env("K3S_NODE_NAME"),
    flag("with-node-id", Both, Bool, "agent/node"),
    flag("node-label", Both, Slice, "agent/node"),
    flag("node-taint", Both, Slice, "agent/node"),
    flag("image-credential-provider-bin-dir", Both, Str, "agent/node").default("/var/lib/rancher/credentialprovider/bin"),
    flag("image-credential-provider-config", Both, Str, "agent/node").default("/var/lib/rancher/credentialprovider/config.yaml"),
    flag("docker", Both, Bool, "agent/runtime"),
    flag("container-runtime-endpoint", Both, Str, "agent/runtime"),
    flag("default-runtime", Both, Str, "agent/runtime"),
    flag("image-service-endpoint", Both, Str, "agent/runtime"),
    flag("disable-default-registry-endpoint", Both, Bool, "agent/containerd"),
    flag("nonroot-devices", Both, Bool, "agent/containerd"),
    flag("pause-image", Both, Str, "agent/runtime").default("rancher/mirrored-pause:3.6"),
    flag("snapshotter", Both, Str, "agent/runtime").default("overlayfs"),
    flag("private-registry", Both, Str, "agent/runtime").default("/etc/rancher/k3s/registries.yaml"),
    flag("system-default-registry", Server, Str, "agent/runtime").env("K3S_SYSTEM_DEFAULT_REGISTRY"),
    flag("airgap-extra-registry", Both, Slice, "agent/runtime").hidden(),
    flag("node-ip", Both, Slice, "agent/networking").alias(&["i"]),
    flag("node-external-ip", Both, Slice, "agent/networking"),
    flag("node-internal-dns", Both, Slice, "agent/networking"),
    flag("node-external-dns", Both, Slice, "agent/networking"),
    flag("resolv-conf", Both, Str, "agent/networking").env("K3S_RESOLV_CONF"),
    flag("flannel-iface", Both, Str, "agent/networking"),
    flag("flannel-conf", Both, Str, "agent/networking"),
    flag("flannel-cni-conf", Both, Str, "agent/networking"),
    flag("vpn-auth", Both, Str, "agent/networking").env("K3S_VPN_AUTH"),
    flag("vpn-auth-file", Both, Str, "agent/networking").env("K3S_VPN_AUTH_FILE"),
    flag("kubelet-arg", Both, Slice, "agent/flags"),
    flag("kube-proxy-arg", Both, Slice, "agent/flags"),
    flag("protect-kernel-defaults", Both, Bool, "agent/node"),
    flag("secrets-encryption", Server, Bool, ""),
    flag("enable-pprof", Both, Bool, "experimental"),
    flag("rootless", Both, Bool, "experimental"),
    flag("secrets-encryption-provider", Server, Str, "experimental").default("aescbc"),
    flag("prefer-bundled-bin", Both, Bool, "experimental"),
    flag("selinux", Both, Bool, "agent/node").env("K3S_SELINUX"),
    flag("lb-server-port", Both, Int, "agent/node").env("K3S_LB_SERVER_PORT").default("6444"),
    flag("disable-agent", Server, Bool, "").hidden(),
    flag("kube-controller-arg", Server, Slice, "flags").hidden().same_as("kube-controller-manager-arg"),
    flag("kube-cloud-controller-arg", Server, Slice, "flags").hidden().same_as("kube-cloud-controller-manager-arg"),
    flag("disable-apiserver-lb", Agent, Bool, "agent/networking"),
];

/// `--help`/`-h`, which urfave/cli adds to every command.
const HELP: FlagDef = flag("help", Both, Bool, "").alias(&["h"]);

/// The flags of the root app (before the subcommand).
const ROOT_FLAGS: &[FlagDef] = &[
    flag("debug", Both, Bool, "logging").env("K3S_DEBUG"),
    flag("data-dir", Both, Str, "data").alias(&["d"]).env("K3S_DATA_DIR"),
    flag("help", Both, Bool, "").alias(&["h"]),
    flag("version", Both, Bool, "").alias(&["v"]),
];

/// The definition `name` (a name or alias) has in `cmd`, if any.
pub fn lookup(cmd: Command, name: &str) -> Option<&'static FlagDef> {
    if cmd == Command::Root {
        return ROOT_FLAGS.iter().find(|d| d.is_named(name));
    }
    if HELP.is_named(name) {
        return Some(&HELP);
    }
    FLAGS.iter().find(|d| d.accepted_by(cmd) && d.is_named(name))
}

/// True when `cmd` defines `name` itself (urfave/cli's `--help` aside): the
/// check `k3s server` applies to config-file keys.
pub fn defined(cmd: Command, name: &str) -> bool {
    accepted(cmd).any(|d| d.is_named(name))
}

/// The flags `cmd` accepts, in help order (without `--help`).
pub fn accepted(cmd: Command) -> impl Iterator<Item = &'static FlagDef> {
    let table: &'static [FlagDef] = if cmd == Command::Root { ROOT_FLAGS } else { FLAGS };
    table.iter().filter(move |d| cmd == Command::Root || d.accepted_by(cmd))
}

/// A command line k3s refuses: the text after `Incorrect Usage: `.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Parsed flags in the order given, stored under [`FlagDef::key`]. Bool
/// values are `true`/`false`, ints in decimal, the rest as given.
#[derive(Clone, Debug, Default)]
pub struct Flags {
    entries: Vec<(String, String)>,
    positionals: Vec<String>,
    help: bool,
    version: bool,
}

impl Flags {
    /// The last value of a flag.
    pub fn last(&self, name: &str) -> Option<&str> {
        self.entries.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Every value of a flag, in order.
    pub fn values(&self, name: &str) -> Vec<String> {
        self.entries.iter().filter(|(n, _)| n == name).map(|(_, v)| v.clone()).collect()
    }

    /// A bool flag's value (`false` when not given).
    pub fn enabled(&self, name: &str) -> bool {
        self.last(name) == Some("true")
    }

    /// Flag values grouped by name, in order, for `invocation.json`.
    pub fn grouped(&self) -> std::collections::BTreeMap<String, Vec<String>> {
        let mut map: std::collections::BTreeMap<String, Vec<String>> = std::collections::BTreeMap::new();
        for (n, v) in &self.entries {
            map.entry(n.clone()).or_default().push(v.clone());
        }
        map
    }

    /// The arguments from the first non-flag on (at root level: the
    /// subcommand and everything after it).
    pub fn positionals(&self) -> &[String] {
        &self.positionals
    }

    /// `--help`/`-h` was given.
    pub fn help(&self) -> bool {
        self.help
    }

    /// `--version`/`-v` was given (root level only).
    pub fn version(&self) -> bool {
        self.version
    }
}

/// Parses `args` (the words after the subcommand, or after the program name
/// for [`Command::Root`]) as urfave/cli v2 and Go's `flag` do. Environment
/// variables of int and bool flags are checked first, as urfave/cli checks
/// them while it builds the flag set.
pub fn parse(cmd: Command, args: &[String], env: &dyn Fn(&str) -> Option<String>) -> Result<Flags, UsageError> {
    check_env(cmd, env)?;
    let mut flags = Flags::default();
    let mut i = 0;
    while i < args.len() {
        let s = &args[i];
        if s.len() < 2 || !s.starts_with('-') {
            break;
        }
        i += 1;
        let dashes = if s.starts_with("--") { 2 } else { 1 };
        if s == "--" {
            break;
        }
        let body = &s[dashes..];
        if body.is_empty() || body.starts_with('-') || body.starts_with('=') {
            return Err(UsageError(format!("bad flag syntax: {s}")));
        }
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };
        let Some(def) = lookup(cmd, name) else {
            return Err(UsageError(format!("flag provided but not defined: -{name}")));
        };
        let value = if def.kind == Kind::Bool {
            match inline {
                Some(v) => match parse_bool(v) {
                    Some(b) => b.to_string(),
                    None => return Err(UsageError(format!("invalid boolean value {} for -{name}: parse error", go_quote(v)))),
                },
                None => "true".to_string(),
            }
        } else {
            let raw = match inline {
                Some(v) => v.to_string(),
                None => match args.get(i) {
                    Some(next) => {
                        i += 1;
                        next.clone()
                    }
                    None => return Err(UsageError(format!("flag needs an argument: -{name}"))),
                },
            };
            let invalid = |why: &str| UsageError(format!("invalid value {} for flag -{name}: {why}", go_quote(&raw)));
            match def.kind {
                Kind::Int => parse_int(&raw).map_err(|e| invalid(e.as_str()))?.to_string(),
                Kind::Duration => {
                    if !is_duration(&raw) {
                        return Err(invalid("parse error"));
                    }
                    raw
                }
                Kind::Bool | Kind::String | Kind::Slice => raw,
            }
        };
        match def.name {
            "help" => flags.help = value == "true",
            "version" if cmd == Command::Root => flags.version = value == "true",
            _ => flags.entries.push((def.key().to_string(), value)),
        }
    }
    flags.positionals = args[i..].to_vec();
    Ok(flags)
}

/// urfave/cli parses the environment variable of an int or bool flag while
/// building the flag set, so a bad value fails even when the flag is given.
fn check_env(cmd: Command, env: &dyn Fn(&str) -> Option<String>) -> Result<(), UsageError> {
    for def in accepted(cmd) {
        let Some(var) = def.env else { continue };
        let Some(val) = env(var).filter(|v| !v.is_empty()) else { continue };
        let err = match def.kind {
            Kind::Bool if parse_bool(&val).is_none() => format!("strconv.ParseBool: parsing {}: invalid syntax", go_quote(&val)),
            Kind::Int => match parse_int(&val) {
                Ok(_) => continue,
                Err(e) => {
                    let why = if e == IntError::Range { "value out of range" } else { "invalid syntax" };
                    format!("strconv.ParseInt: parsing {}: {why}", go_quote(&val))
                }
            },
            _ => continue,
        };
        let what = if def.kind == Kind::Bool { "bool" } else { "int" };
        return Err(UsageError(format!(
            "could not parse {} as {what} value from environment variable {} for flag {}: {err}",
            go_quote(&val),
            go_quote(var),
            def.name
        )));
    }
    Ok(())
}

/// Go's `strconv.ParseBool`.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Why an int did not parse (Go `flag`'s two messages).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum IntError {
    /// `parse error`
    Syntax,
    /// `value out of range`
    Range,
}

impl IntError {
    fn as_str(self) -> &'static str {
        match self {
            IntError::Syntax => "parse error",
            IntError::Range => "value out of range",
        }
    }
}

/// Go's `strconv.ParseInt(s, 0, 64)`: optional sign, `0x`/`0o`/`0b` or a
/// leading `0` (octal) prefix, `_` between digits.
fn parse_int(s: &str) -> Result<i64, IntError> {
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let lower = body.to_ascii_lowercase();
    let (radix, digits, prefixed) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d, true)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d, true)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d, true)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, &lower[1..], true)
    } else {
        (10, lower.as_str(), false)
    };
    // Underscores only between digits (or right after a prefix).
    let bytes = digits.as_bytes();
    for (k, b) in bytes.iter().enumerate() {
        if *b == b'_' {
            let before_ok = if k == 0 { prefixed } else { bytes[k - 1] != b'_' };
            let after_ok = bytes.get(k + 1).is_some_and(|n| *n != b'_');
            if !before_ok || !after_ok {
                return Err(IntError::Syntax);
            }
        }
    }
    let clean: String = digits.chars().filter(|c| *c != '_').collect();
    if clean.is_empty() || !clean.chars().all(|c| c.is_digit(radix)) {
        return Err(IntError::Syntax);
    }
    let magnitude = u128::from_str_radix(&clean, radix).map_err(|_| IntError::Range)?;
    let limit = if neg { 1u128 << 63 } else { (1u128 << 63) - 1 };
    if magnitude > limit {
        return Err(IntError::Range);
    }
    let v = magnitude as i128;
    i64::try_from(if neg { -v } else { v }).map_err(|_| IntError::Range)
}

/// Go's `time.ParseDuration` syntax: `[-+]` then one or more
/// `<number><unit>` (units ns, us, µs, ms, s, m, h), or a bare `0`.
fn is_duration(s: &str) -> bool {
    let s = s.strip_prefix(['-', '+']).unwrap_or(s);
    if s == "0" {
        return true;
    }
    if s.is_empty() {
        return false;
    }
    let mut rest = s;
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let num = &rest[..num_len];
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return false;
        }
        rest = &rest[num_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let nanos: f64 = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return false,
        };
        rest = &rest[unit_len..];
        total += num.parse::<f64>().unwrap_or(f64::INFINITY) * nanos;
        if total > i64::MAX as f64 {
            return false;
        }
    }
    true
}

/// Go's `%q` for the values quoted in error messages.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x80 && c.is_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The help text urfave/cli prints for `cmd` (also after `Incorrect Usage`).
/// It lists every visible flag with its aliases, usage tag, default and
/// environment variable; k3s' prose descriptions are not reproduced.
pub fn help(cmd: Command) -> String {
    let mut out = String::new();
    match cmd {
        Command::Root => {
            out.push_str("NAME:\n   k3s - Kubernetes, stood in for by idp-testnode\n\n");
            out.push_str("USAGE:\n   k3s [global options] command [command options] [arguments...]\n\n");
            let _ = write!(out, "VERSION:\n   {} (idp-testnode)\n\n", crate::VERSION);
            out.push_str("COMMANDS:\n");
            for (name, what) in [
                ("server", "Run management server"),
                ("agent", "Run node agent"),
                ("kubectl", "Run kubectl"),
                ("crictl", "Run crictl (not in the stand-in)"),
                ("ctr", "Run ctr (not in the stand-in)"),
                ("check-config", "Run config check (not in the stand-in)"),
                ("token", "Manage tokens (not in the stand-in)"),
                ("etcd-snapshot", "Manage etcd snapshots (not in the stand-in)"),
                ("secrets-encrypt", "Control secrets encryption (not in the stand-in)"),
                ("certificate", "Manage K3s certificates (not in the stand-in)"),
                ("completion", "Install shell completion script (not in the stand-in)"),
                ("help, h", "Shows a list of commands or help for one command"),
            ] {
                let _ = writeln!(out, "   {name:<17}{what}");
            }
            out.push_str("\nGLOBAL OPTIONS:\n");
        }
        Command::Server | Command::Agent => {
            let what = if cmd == Command::Server { "Run management server" } else { "Run node agent" };
            let word = cmd.word();
            let _ = write!(out, "NAME:\n   k3s {word} - {what}\n\nUSAGE:\n   k3s {word} [OPTIONS]\n\nOPTIONS:\n");
        }
    }
    let mut rows: Vec<(String, String)> = accepted(cmd).filter(|d| !d.hidden).map(help_row).collect();
    if cmd != Command::Root {
        rows.push(("--help, -h".to_string(), "show help".to_string()));
    }
    let width = rows.iter().map(|(l, _)| l.chars().count()).max().unwrap_or(0) + 2;
    for (left, right) in rows {
        let _ = writeln!(out, "   {left:<width$}{right}");
    }
    out
}

fn help_row(def: &FlagDef) -> (String, String) {
    let names = std::iter::once(def.name).chain(def.aliases.iter().copied());
    let left = names
        .map(|n| {
            let dashes = if n.len() > 1 { "--" } else { "-" };
            if def.kind == Kind::Bool { format!("{dashes}{n}") } else { format!("{dashes}{n} value") }
        })
        .collect::<Vec<_>>()
        .join(", ");
    let mut right = if def.group.is_empty() { String::new() } else { format!("({})", def.group) };
    match (def.name, def.kind, def.default) {
        ("help", _, _) => right.push_str(" show help"),
        ("version", _, _) => right.push_str(" print the version"),
        (_, Kind::String, Some(d)) => {
            let _ = write!(right, " (default: {})", go_quote(d));
        }
        (_, _, Some(d)) => {
            let _ = write!(right, " (default: {d})");
        }
        (_, Kind::Bool, None) => right.push_str(" (default: false)"),
        _ => {}
    }
    if let Some(e) = def.env {
        let _ = write!(right, " [${e}]");
    }
    (left, right.trim_start().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Vec<String> {
        s.iter().map(|a| a.to_string()).collect()
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn server(a: &[&str]) -> Result<Flags, UsageError> {
        parse(Command::Server, &args(a), &no_env)
    }

    fn agent(a: &[&str]) -> Result<Flags, UsageError> {
        parse(Command::Agent, &args(a), &no_env)
    }

    fn err(r: Result<Flags, UsageError>) -> String {
        r.expect_err("must be refused").0
    }

    #[test]
    fn the_table_has_the_counts_of_k3s_v1_33_4() {
        let mut names: Vec<&str> = FLAGS.iter().map(|d| d.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 125, "distinct names");
        assert_eq!(names.len(), FLAGS.len(), "no duplicate rows");
        assert_eq!(accepted(Command::Server).count(), 124);
        assert_eq!(accepted(Command::Agent).count(), 46);
        assert_eq!(FLAGS.iter().filter(|d| d.scope == Scope::Both).count(), 45);
        // Every alias resolves to exactly one flag per command.
        for cmd in [Command::Server, Command::Agent] {
            for def in accepted(cmd) {
                for a in def.aliases {
                    assert_eq!(lookup(cmd, a).map(|d| d.name), Some(def.name));
                }
            }
        }
    }

    #[test]
    fn an_unknown_flag_is_refused_with_one_dash_and_no_value() {
        for form in [&["--foo"][..], &["-foo"], &["--foo=bar"], &["--foo", "bar"]] {
            assert_eq!(err(server(form)), "flag provided but not defined: -foo");
            assert_eq!(err(agent(form)), "flag provided but not defined: -foo");
        }
        // Flags removed before v1.33 are unknown too.
        assert_eq!(err(server(&["--no-deploy", "traefik"])), "flag provided but not defined: -no-deploy");
        // `--version` is a root flag only.
        assert_eq!(err(server(&["--version"])), "flag provided but not defined: -version");
    }

    #[test]
    fn server_only_flags_are_unknown_to_the_agent() {
        assert_eq!(err(agent(&["--disable=traefik"])), "flag provided but not defined: -disable");
        assert_eq!(err(agent(&["--tls-san", "x"])), "flag provided but not defined: -tls-san");
        assert_eq!(err(agent(&["--flannel-backend=none"])), "flag provided but not defined: -flannel-backend");
        assert_eq!(err(agent(&["-o", "/x"])), "flag provided but not defined: -o");
        assert_eq!(err(server(&["--disable-apiserver-lb"])), "flag provided but not defined: -disable-apiserver-lb");
        // What idp-lab gives agents is accepted.
        let f = agent(&[
            "--token-file=/t",
            "--server",
            "https://s:6443",
            "--node-label=a=b",
            "--node-taint",
            "k=v:NoSchedule",
            "--kubelet-arg=eviction-hard=x",
            "--resolv-conf",
            "/r",
            "--node-ip=10.0.0.2",
            "--disable-apiserver-lb",
        ])
        .expect("valid agent flags");
        assert_eq!(f.last("server"), Some("https://s:6443"));
        assert!(f.enabled("disable-apiserver-lb"));
    }

    #[test]
    fn a_bool_takes_a_value_only_through_equals() {
        // `--cluster-init false`: `false` is a positional and ends parsing.
        let f = server(&["--cluster-init", "false", "--bogus"]).expect("stops at the positional");
        assert!(f.enabled("cluster-init"));
        assert_eq!(f.positionals(), ["false", "--bogus"]);
        let f = server(&["--cluster-init=false"]).expect("valid");
        assert!(!f.enabled("cluster-init"));
        assert_eq!(f.last("cluster-init"), Some("false"));
        assert_eq!(err(server(&["--cluster-init=maybe"])), r#"invalid boolean value "maybe" for -cluster-init: parse error"#);
        assert!(server(&["--disable-network-policy=T", "--disable-kube-proxy=0"]).is_ok());
    }

    #[test]
    fn values_may_start_with_a_dash_and_aliases_are_one_flag() {
        let f = server(&["--token", "--cluster-init"]).expect("valid");
        assert_eq!(f.last("token"), Some("--cluster-init"));
        assert!(!f.enabled("cluster-init"));
        let f =
            server(&["-token=a", "--t", "b", "-t=c", "--kube-controller-arg=v=2", "--kube-controller-manager-arg", "x=y"]).expect("valid");
        assert_eq!(f.values("token"), ["a", "b", "c"]);
        assert_eq!(f.values("kube-controller-manager-arg"), ["v=2", "x=y"]);
        // Slices are not split at commas by the parser.
        assert_eq!(server(&["--disable=traefik,servicelb"]).expect("valid").values("disable"), ["traefik,servicelb"]);
    }

    #[test]
    fn parse_errors_use_go_flag_texts() {
        assert_eq!(err(server(&["--token"])), "flag needs an argument: -token");
        assert_eq!(err(agent(&["-t"])), "flag needs an argument: -t");
        assert_eq!(err(server(&["-v"])), "flag needs an argument: -v");
        assert_eq!(err(server(&["--https-listen-port", "abc"])), r#"invalid value "abc" for flag -https-listen-port: parse error"#);
        assert_eq!(
            err(server(&["--https-listen-port=99999999999999999999"])),
            r#"invalid value "99999999999999999999" for flag -https-listen-port: value out of range"#
        );
        assert_eq!(err(server(&["---x"])), "bad flag syntax: ---x");
        assert_eq!(err(server(&["-=x"])), "bad flag syntax: -=x");
        assert_eq!(err(server(&["--etcd-s3-timeout=5"])), r#"invalid value "5" for flag -etcd-s3-timeout: parse error"#);
        assert!(server(&["--etcd-s3-timeout=1h2m3.5s", "--etcd-snapshot-reconcile-interval", "0"]).is_ok());
        // Go's base prefixes.
        assert_eq!(server(&["--https-listen-port=0x1A0B"]).expect("hex").last("https-listen-port"), Some("6667"));
        assert_eq!(server(&["--https-listen-port=010"]).expect("octal").last("https-listen-port"), Some("8"));
    }

    #[test]
    fn parsing_stops_at_a_positional_or_double_dash() {
        let f = server(&["extra", "--bogus"]).expect("not checked after a positional");
        assert_eq!(f.positionals(), ["extra", "--bogus"]);
        let f = server(&["--debug", "--", "--bogus"]).expect("not checked after --");
        assert_eq!(f.positionals(), ["--bogus"]);
        // A lone dash is a positional; short options do not combine.
        assert_eq!(server(&["-"]).expect("positional").positionals(), ["-"]);
        assert_eq!(err(server(&["-abc"])), "flag provided but not defined: -abc");
    }

    #[test]
    fn help_and_root_flags() {
        assert!(server(&["--help"]).expect("help").help());
        assert!(agent(&["-h"]).expect("help").help());
        let root = parse(Command::Root, &args(&["--debug", "-d", "/data", "server", "--bogus"]), &no_env).expect("root");
        assert_eq!(root.positionals(), ["server", "--bogus"]);
        assert_eq!(root.last("data-dir"), Some("/data"));
        assert!(parse(Command::Root, &args(&["-v"]), &no_env).expect("version").version());
        assert_eq!(
            parse(Command::Root, &args(&["--foo", "server"]), &no_env).expect_err("unknown").0,
            "flag provided but not defined: -foo"
        );
        let text = help(Command::Agent);
        assert!(text.starts_with("NAME:\n   k3s agent - Run node agent\n"));
        assert!(text.contains("--token value, -t value") && text.contains("[$K3S_TOKEN]"));
        assert!(!text.contains("--tls-san") && !text.contains("--disable-agent"));
        assert!(help(Command::Server).contains("--tls-san value"));
        assert!(!help(Command::Server).contains("--kine-tls"), "hidden flags stay out of help");
    }

    #[test]
    fn bad_environment_values_of_int_and_bool_flags() {
        let env = |k: &str| (k == "K3S_LB_SERVER_PORT").then(|| "abc".to_string());
        assert_eq!(
            parse(Command::Agent, &[], &env).expect_err("bad env").0,
            r#"could not parse "abc" as int value from environment variable "K3S_LB_SERVER_PORT" for flag lb-server-port: strconv.ParseInt: parsing "abc": invalid syntax"#
        );
        let env = |k: &str| (k == "K3S_CLUSTER_INIT").then(|| "maybe".to_string());
        assert!(parse(Command::Server, &[], &env).expect_err("bad env").0.contains("as bool value"));
        // Server-only variables do not matter to the agent.
        assert!(parse(Command::Agent, &[], &env).is_ok());
    }

    #[test]
    fn go_quoting() {
        assert_eq!(go_quote("a\"b\\c\n\u{1}"), r#""a\"b\\c\n\x01""#);
    }
}
