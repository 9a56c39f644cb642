//! The one definition of every configuration key: its section, type, default and
//! documentation. Validation, environment overrides and `docs/configuration.md` are
//! all derived from [`KEYS`].

/// The type of a configuration value, with its constraints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An RFC 1123 label of at most 32 characters (it names Docker objects).
    Name,
    /// Any non-empty string.
    Text,
    /// Any string, empty meaning "not set".
    OptText,
    /// One of a fixed set of words.
    Choice(&'static [&'static str]),
    /// An integer within bounds.
    Int {
        /// Smallest allowed value.
        min: i64,
        /// Largest allowed value.
        max: i64,
    },
    /// `true` or `false`.
    Bool,
    /// `"auto"` or a TCP port 1–65535.
    Port,
    /// An IP address.
    Ip,
    /// `"auto"` or an IP address.
    AutoIp,
    /// `"auto"` or a DNS name (the suffix under which the lab's hostnames live).
    Suffix,
    /// A memory size such as `"4g"`, `"512m"`, or `"0"` for no limit.
    Size,
    /// A number of bytes such as `"32m"` or `"1g"`, with no floor (not a Docker limit).
    Bytes,
    /// A duration such as `"300s"`, `"5m"`, `"1h"`, or an integer number of seconds.
    Duration,
    /// An array of strings.
    List,
    /// An array of taints, `key=value:Effect` or `key:Effect`.
    Taints,
    /// An array of node pools: `{ name, labels = { k = "v" }, taints = ["k=v:Effect"] }`.
    Pools,
    /// A table from registry host to an array of mirror endpoint URLs.
    Mirrors,
    /// An array of DNS resolver addresses, `ip` or `ip:port` (`[v6]:port`).
    Resolvers,
    /// A chart version override for the component named by the key.
    Version,
    /// An array of some of a fixed set of words.
    Subset(&'static [&'static str]),
    /// An array of watchdog playbooks (`[[watchdog.playbooks]]`).
    Playbooks,
}

impl Kind {
    /// A short human description of what a value of this kind looks like.
    pub fn expected(&self) -> String {
        match self {
            Kind::Name => "a lowercase name of letters, digits and '-' (at most 32 characters, starting with a letter)".into(),
            Kind::Text => "a non-empty string".into(),
            Kind::OptText => "a string".into(),
            Kind::Choice(words) => format!("one of {}", words.iter().map(|w| format!("\"{w}\"")).collect::<Vec<_>>().join(", ")),
            Kind::Int { min, max } => format!("an integer from {min} to {max}"),
            Kind::Bool => "true or false".into(),
            Kind::Port => "\"auto\" or a port number from 1 to 65535".into(),
            Kind::Ip => "an IP address such as \"127.0.0.1\"".into(),
            Kind::AutoIp => "\"auto\" or an IP address".into(),
            Kind::Suffix => "\"auto\" or a DNS name such as \"10-0-0-5.nip.io\"".into(),
            Kind::Size => "a size such as \"4g\", \"512m\" or \"0\" (no limit)".into(),
            Kind::Bytes => "a size such as \"32m\", \"512k\" or \"1g\"".into(),
            Kind::Duration => "a duration such as \"300s\", \"5m\", \"1h\" or a number of seconds".into(),
            Kind::List => "an array of strings".into(),
            Kind::Taints => "an array of taints such as [\"node-role.kubernetes.io/control-plane:NoSchedule\"]".into(),
            Kind::Pools => {
                "an array of tables { name = \"infra\", labels = { role = \"infra\" }, taints = [\"key=value:NoSchedule\"] }".into()
            }
            Kind::Mirrors => "a table of registry = [\"http://mirror:5000\", ...]".into(),
            Kind::Resolvers => "an array of resolver addresses such as [\"1.1.1.1\", \"10.0.0.2:5353\", \"[2606:4700::1111]:53\"]".into(),
            Kind::Version => "a version string such as \"1.18.2\"".into(),
            Kind::Subset(words) => {
                format!("an array of some of {}", words.iter().map(|w| format!("\"{w}\"")).collect::<Vec<_>>().join(", "))
            }
            Kind::Playbooks => PLAYBOOKS_EXPECTED.into(),
        }
    }

    /// The type name shown in the reference documentation.
    pub fn type_name(&self) -> &'static str {
        match self {
            Kind::Name => "name",
            Kind::Text | Kind::OptText => "string",
            Kind::Choice(_) => "choice",
            Kind::Int { .. } => "integer",
            Kind::Bool => "boolean",
            Kind::Port => "port",
            Kind::Ip => "IP address",
            Kind::AutoIp => "IP address or auto",
            Kind::Suffix => "DNS name or auto",
            Kind::Size | Kind::Bytes => "size",
            Kind::Duration => "duration",
            Kind::List => "array of strings",
            Kind::Taints => "array of taints",
            Kind::Pools => "array of pools",
            Kind::Mirrors => "table",
            Kind::Resolvers => "array of addresses",
            Kind::Version => "string",
            Kind::Subset(_) => "array of choices",
            Kind::Playbooks => "array of playbooks",
        }
    }
}

/// One configuration key.
#[derive(Debug, Clone, Copy)]
pub struct KeySpec {
    /// The section (a single word), e.g. `network`.
    pub section: &'static str,
    /// The key inside the section; `*` means any key (checked by the kind).
    pub key: &'static str,
    /// The value's type.
    pub kind: Kind,
    /// The built-in default, as a TOML value literal.
    pub default: &'static str,
    /// One or two sentences for the reference documentation.
    pub doc: &'static str,
}

impl KeySpec {
    /// The environment variable that overrides this key (`IDP_LAB_<SECTION>_<KEY>`).
    pub fn env_var(&self) -> String {
        let key = if self.key == "*" { "<COMPONENT>" } else { self.key };
        format!("IDP_LAB_{}_{}", self.section.to_uppercase(), key.to_uppercase())
    }
}

/// Sections with a one-line description each, in documentation order.
pub const SECTIONS: &[(&str, &str)] = &[
    ("lab", "The lab as a whole."),
    ("cluster", "The Kubernetes cluster: how it is made and its nodes."),
    ("network", "Host addresses, ports and hostnames."),
    ("stacks", "Platform stacks to install, and the HA dial."),
    ("versions", "Chart version overrides, one key per component (`cilium = \"1.18.3\"`); the embedded catalogue pins the defaults."),
    ("registry", "Image sources: offline mode, the bundle, registry mirrors, and serving the bundle on the LAN."),
    ("timeouts", "How long to wait for each phase."),
    (
        "watchdog",
        "The watchdog in the lab daemon: its resync, its history, the Alertmanager webhook receiver and the playbooks (their format is below the table).",
    ),
];

const FLAVORS: &[&str] = &["k3s", "kind", "existing"];
const SECURITY: &[&str] = &["privileged", "capabilities"];

/// Every configuration key.
pub const KEYS: &[KeySpec] = &[
    KeySpec {
        section: "lab",
        key: "name",
        kind: Kind::Name,
        default: "\"idp-lab\"",
        doc: "Name of the lab; prefixes every Docker object and names the kubeconfig context.",
    },
    KeySpec {
        section: "lab",
        key: "profile",
        kind: Kind::Name,
        default: "\"standard\"",
        doc: "Embedded profile the configuration starts from (`idp-lab profiles list`). `--profile` overrides it.",
    },
    KeySpec {
        section: "cluster",
        key: "flavor",
        kind: Kind::Choice(FLAVORS),
        default: "\"k3s\"",
        doc: "`k3s` makes k3s nodes the way k3d does, `kind` makes kubeadm nodes the way kind does, `existing` installs onto the cluster of the current kubeconfig context.",
    },
    KeySpec {
        section: "cluster",
        key: "image",
        kind: Kind::Text,
        default: "\"auto\"",
        doc: "Node image; `auto` picks the pinned image of the flavor (`rancher/k3s:v1.33.4-k3s1` or `kindest/node:v1.33.4`).",
    },
    KeySpec { section: "cluster", key: "servers", kind: Kind::Int { min: 1, max: 7 }, default: "1", doc: "Number of control-plane nodes." },
    KeySpec { section: "cluster", key: "agents", kind: Kind::Int { min: 0, max: 16 }, default: "2", doc: "Number of worker nodes." },
    KeySpec {
        section: "cluster",
        key: "security",
        kind: Kind::Choice(SECURITY),
        default: "\"privileged\"",
        doc: "`privileged` runs nodes privileged like k3d and kind; `capabilities` grants an explicit capability set instead, for Docker hosts that refuse privileged containers.",
    },
    KeySpec { section: "cluster", key: "memory", kind: Kind::Size, default: "\"4g\"", doc: "Memory limit per node container." },
    KeySpec {
        section: "cluster",
        key: "pools",
        kind: Kind::Pools,
        default: "[{ name = \"infra\", labels = { role = \"infra\" } }, { name = \"apps\", labels = { role = \"apps\" } }]",
        doc: "Node pools, assigned to agents in order (agent 0 gets the first pool); at most one pool per agent.",
    },
    KeySpec {
        section: "cluster",
        key: "server_taints",
        kind: Kind::Taints,
        default: "[\"node-role.kubernetes.io/control-plane:NoSchedule\"]",
        doc: "Taints of every server node (`key=value:Effect`); the default keeps workloads off the control plane, as the original does. `[]` lets servers run workloads.",
    },
    KeySpec {
        section: "cluster",
        key: "k3s_args",
        kind: Kind::List,
        default: "[]",
        doc: "Extra arguments for every k3s server, after the ones idp-lab sets.",
    },
    KeySpec {
        section: "cluster",
        key: "kubelet_args",
        kind: Kind::List,
        default: "[\"image-gc-high-threshold=90\", \"image-gc-low-threshold=85\", \"eviction-hard=nodefs.available<5%,imagefs.available<5%\"]",
        doc: "Kubelet arguments for every node (`key=value`, without leading dashes).",
    },
    KeySpec {
        section: "cluster",
        key: "context",
        kind: Kind::OptText,
        default: "\"\"",
        doc: "With flavor `existing`: the kubeconfig context to install into (empty: the current context).",
    },
    KeySpec {
        section: "network",
        key: "bind_address",
        kind: Kind::Ip,
        default: "\"127.0.0.1\"",
        doc: "Host address the HTTPS entry, DNS answer and API port listen on. Bind the LAN address to share the lab.",
    },
    KeySpec {
        section: "network",
        key: "http_port",
        kind: Kind::Port,
        default: "\"auto\"",
        doc: "Host HTTP port (redirects to HTTPS). `auto`: 80 when free, else the first free port from 8080.",
    },
    KeySpec {
        section: "network",
        key: "https_port",
        kind: Kind::Port,
        default: "\"auto\"",
        doc: "Host HTTPS port. `auto`: 443 when free, else the first free port from 8443. An explicit port must be free or `up` stops.",
    },
    KeySpec {
        section: "network",
        key: "api_port",
        kind: Kind::Port,
        default: "\"auto\"",
        doc: "Host port of the Kubernetes API. `auto`: a free port chosen at `up`.",
    },
    KeySpec {
        section: "network",
        key: "http_nodeport",
        kind: Kind::Int { min: 30000, max: 32767 },
        default: "30080",
        doc: "NodePort of the Gateway's HTTP listener on every node; published on a loopback port of the host for the HTTPS entry.",
    },
    KeySpec {
        section: "network",
        key: "https_nodeport",
        kind: Kind::Int { min: 30000, max: 32767 },
        default: "30443",
        doc: "NodePort of the Gateway's HTTPS listener on every node; published on a loopback port of the host for the HTTPS entry.",
    },
    KeySpec {
        section: "network",
        key: "lan_ip",
        kind: Kind::AutoIp,
        default: "\"auto\"",
        doc: "The host's LAN address; `auto` detects it on every `up` from the default route.",
    },
    KeySpec {
        section: "network",
        key: "dns_suffix",
        kind: Kind::Suffix,
        default: "\"auto\"",
        doc: "Domain the lab's hostnames live under. `auto`: `127-0-0-1.nip.io` on loopback, `<lan-ip-dashed>.nip.io` when bound to the LAN; `sslip.io` names or a custom domain work too.",
    },
    KeySpec {
        section: "network",
        key: "dns_port",
        kind: Kind::Port,
        default: "\"auto\"",
        doc: "Host port of the DNS answer (UDP and TCP, on the bind address), which serves the lab's names. `auto`: 53 when it can be bound, else the first free port from 1053 to 1152; chosen at the first `up` and pinned. The free-port probe binds TCP only: a port some other program holds only over UDP is not seen.",
    },
    KeySpec {
        section: "network",
        key: "dns_forward",
        kind: Kind::Resolvers,
        default: "[]",
        doc: "Resolvers the DNS answer forwards names outside the lab's zones to (`ip` or `ip:port`, `[v6]:port`; port 53 when omitted); empty: it refuses them (no open resolver).",
    },
    KeySpec { section: "stacks", key: "secrets", kind: Kind::Bool, default: "true", doc: "Vault and External Secrets." },
    KeySpec { section: "stacks", key: "policies", kind: Kind::Bool, default: "true", doc: "Kyverno and Policy Reporter." },
    KeySpec {
        section: "stacks",
        key: "observability",
        kind: Kind::Bool,
        default: "true",
        doc: "Prometheus, Grafana, Loki, Fluent Bit and Pyrra SLOs.",
    },
    KeySpec { section: "stacks", key: "cicd", kind: Kind::Bool, default: "true", doc: "Argo Workflows and SonarQube." },
    KeySpec { section: "stacks", key: "security", kind: Kind::Bool, default: "true", doc: "Trivy Operator." },
    KeySpec { section: "stacks", key: "backstage", kind: Kind::Bool, default: "true", doc: "Backstage and Dex." },
    KeySpec { section: "stacks", key: "events", kind: Kind::Bool, default: "true", doc: "Argo Events and the remediation playbooks." },
    KeySpec {
        section: "stacks",
        key: "prod",
        kind: Kind::Bool,
        default: "false",
        doc: "The HA dial: real high-availability settings for the components that have them.",
    },
    KeySpec {
        section: "versions",
        key: "*",
        kind: Kind::Version,
        default: "\"\"",
        doc: "Overrides the pinned chart version of the named component.",
    },
    KeySpec {
        section: "registry",
        key: "offline",
        kind: Kind::Bool,
        default: "false",
        doc: "Never reach a registry or chart repository: every image and chart comes from the bundle.",
    },
    KeySpec {
        section: "registry",
        key: "bundle",
        kind: Kind::OptText,
        default: "\"\"",
        doc: "Path of the offline bundle (empty: the default bundle location under the idp-lab home).",
    },
    KeySpec {
        section: "registry",
        key: "mirrors",
        kind: Kind::Mirrors,
        default: "{}",
        doc: "Registry mirrors written to every node's `registries.yaml`, e.g. `{ \"docker.io\" = [\"http://10.0.0.2:5000\"] }`.",
    },
    KeySpec {
        section: "registry",
        key: "serve_lan",
        kind: Kind::Bool,
        default: "false",
        doc: "Workshop mode: the lab daemon also serves the bundle's images on the LAN, read-only (pulls only: every push is denied and the `local/` images are not served), at `http://<network.lan_ip>:5000`, for other machines' `registry.mirrors` (e.g. `{ \"docker.io\" = [\"http://192.168.1.10:5000\"] }`). Off by default.",
    },
    KeySpec {
        section: "timeouts",
        key: "cluster",
        kind: Kind::Duration,
        default: "\"300s\"",
        doc: "How long nodes may take to become ready.",
    },
    KeySpec {
        section: "timeouts",
        key: "component",
        kind: Kind::Duration,
        default: "\"300s\"",
        doc: "How long one component may take to become ready.",
    },
    KeySpec { section: "timeouts", key: "total", kind: Kind::Duration, default: "\"30m\"", doc: "How long `up` may take as a whole." },
    KeySpec {
        section: "watchdog",
        key: "enabled",
        kind: Kind::Bool,
        default: "true",
        doc: "Whether the lab daemon runs the watchdog (drift, health, SLOs, playbooks, history).",
    },
    KeySpec {
        section: "watchdog",
        key: "resync",
        kind: Kind::Duration,
        default: "\"10m\"",
        doc: "How often the watchdog re-diffs every managed object in full, beside the watch events that re-diff one object at a time.",
    },
    KeySpec {
        section: "watchdog",
        key: "slo_interval",
        kind: Kind::Duration,
        default: "\"60s\"",
        doc: "How often the watchdog lists the lab's Pyrra ServiceLevelObjectives and evaluates each through the Prometheus HTTP API (burn rates of every window, the verdicts, the budget left), recording a sample in its history; Pyrra and Alertmanager need not run.",
    },
    KeySpec {
        section: "watchdog",
        key: "prometheus",
        kind: Kind::OptText,
        default: "\"\"",
        doc: "The Prometheus the SLOs are evaluated against, `http://host:port[/prefix]`. Empty: the lab's own (the `kube-prometheus-stack` component's Service `observability/prometheus-kube-prometheus-prometheus:9090`), reached through the API server's service proxy with the lab's kubeconfig, so the host needs no route to the pods.",
    },
    KeySpec {
        section: "watchdog",
        key: "receiver_port",
        kind: Kind::Port,
        default: "\"auto\"",
        doc: "Port of the Alertmanager webhook receiver (`POST /alerts`, Alertmanager's webhook JSON) on the lab network's gateway address, where the in-cluster Alertmanager reaches it. `auto`: the daemon chooses a free port. It serves only the playbooks with an `alert` trigger.",
    },
    KeySpec {
        section: "watchdog",
        key: "dashboard_port",
        kind: Kind::Port,
        default: "\"auto\"",
        doc: "Port of the watchdog's dashboard, its JSON API (`/api/v1/...`, with the token in `<state>/watchdog-token`) and `/metrics`, on loopback (`127.0.0.1`). `auto`: 9096, or, when another program (another lab's daemon) holds it, the first free port of 9097–9195, kept for the lab once chosen.",
    },
    KeySpec {
        section: "watchdog",
        key: "history_age",
        kind: Kind::Duration,
        default: "\"168h\"",
        doc: "How long the watchdog's history (drift events, verdict changes, SLO samples, playbook runs) is kept: 7 days by default.",
    },
    KeySpec {
        section: "watchdog",
        key: "history_size",
        kind: Kind::Bytes,
        default: "\"32m\"",
        doc: "How many bytes of events the history keeps, the oldest dropped first; its sled files take up to about three times as much. `0` is refused: the history is always bounded.",
    },
    KeySpec {
        section: "watchdog",
        key: "builtin_playbooks",
        kind: Kind::Subset(BUILTIN_PLAYBOOKS),
        default: "[\"unseal-vault\", \"heal-drift\", \"start-node\"]",
        doc: "The built-in playbooks that are on: `unseal-vault` (Vault reports itself sealed: unseal it; 6 runs per hour, 1 minute apart), `heal-drift` (an object idp-lab applied drifted: re-apply it; 30 per 10 minutes), `start-node` (a node container stopped: start it; 3 per 10 minutes, 1 minute apart). A playbook of `playbooks` with the same name replaces the built-in one. SLO alerts are not among them: they stay with the platform's Alertmanager → Argo Events chain.",
    },
    KeySpec {
        section: "watchdog",
        key: "playbooks",
        kind: Kind::Playbooks,
        default: "[]",
        doc: "The lab's own playbooks, besides the built-in ones: `[[watchdog.playbooks]]` tables, described below.",
    },
];

/// Who reads an environment variable that is not a configuration key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvOwner {
    /// idp-lab itself.
    Product,
    /// The test bed (`e2e/test.sh` and the test harness); idp-lab ignores it.
    TestBed,
    /// The real-image suite (`e2e/real/run.sh`); idp-lab ignores it.
    RealSuite,
}

/// An `IDP_LAB_*` variable that is not a configuration key.
#[derive(Debug, Clone, Copy)]
pub struct EnvVar {
    /// The variable.
    pub name: &'static str,
    /// Who reads it.
    pub owner: EnvOwner,
    /// What it does.
    pub doc: &'static str,
}

/// Every `IDP_LAB_*` variable that is not `IDP_LAB_<SECTION>_<KEY>`: the one registry
/// the configuration reader skips and `docs/configuration.md` lists.
pub const ENV_VARS: &[EnvVar] = &[
    EnvVar { name: "IDP_LAB_HOME", owner: EnvOwner::Product, doc: "Where labs keep their state (default `~/.local/share/idp-lab`)." },
    EnvVar {
        name: "IDP_LAB_TESTBED",
        owner: EnvOwner::TestBed,
        doc: "The test bed's cache of built binaries (default `~/.cache/idp-lab-testbed`).",
    },
    EnvVar {
        name: "IDP_LAB_SHARED",
        owner: EnvOwner::TestBed,
        doc: "The shared fixtures, exported by `e2e/test.sh` from its own location.",
    },
    EnvVar { name: "IDP_LAB_SKIP_LOG", owner: EnvOwner::TestBed, doc: "A file collecting one line per skipped test." },
    EnvVar { name: "IDP_LAB_TESTNODE_IMAGE", owner: EnvOwner::TestBed, doc: "The stand-in node image built once per test run." },
    EnvVar {
        name: "IDP_LAB_ARTIFACTS",
        owner: EnvOwner::TestBed,
        doc: "Where tests save what a person may look at, such as the landing page's screenshot (default `~/.cache/idp-lab/artifacts`).",
    },
    EnvVar {
        name: "IDP_LAB_REAL_K3S_IMAGE",
        owner: EnvOwner::RealSuite,
        doc: "The rancher/k3s image the real-image suite runs (default: the pinned one).",
    },
];

/// Whether `name` is a registered variable that is not configuration.
pub fn is_reserved_env(name: &str) -> bool {
    ENV_VARS.iter().any(|v| v.name == name)
}

/// Looks up the spec of `section.key` (wildcard sections match any key).
pub fn lookup(section: &str, key: &str) -> Option<&'static KeySpec> {
    KEYS.iter().find(|k| k.section == section && (k.key == key || k.key == "*"))
}

/// The keys of one section.
pub fn section_keys(section: &str) -> impl Iterator<Item = &'static KeySpec> + '_ {
    KEYS.iter().filter(move |k| k.section == section)
}

/// The reference documentation of every key, in Markdown (`docs/configuration.md`).
pub fn reference_markdown() -> String {
    let mut out = String::from(
        "# Configuration reference\n\n\
         <!-- Generated from appliance/idp-core/src/config/schema.rs by `UPDATE_DOCS=1 cargo test -p idp-core docs`. Do not edit. -->\n\n\
         `idp-lab.toml` is optional: every key has a built-in default, and a profile (`idp-lab profiles list`) sets a few of them.\n\
         Values are layered, later wins: **built-in defaults ← profile ← `idp-lab.toml` (or `--config FILE`) ← `IDP_LAB_<SECTION>_<KEY>` variables ← flags**.\n\
         `idp-lab profiles show NAME` prints the fully resolved result; `idp-lab config check FILE` validates a file and reports every problem with its line and column.\n\n\
         Environment variables take TOML values (`8443`, `true`, `[\"a\", \"b\"]`); anything that is not a TOML value is read as a bare string (`auto`, `127.0.0.1`).\n",
    );
    out.push_str("\n## Other variables\n\nThese `IDP_LAB_*` variables are not configuration keys; idp-lab reads only its own and ignores the rest.\n\n| variable | read by | meaning |\n|---|---|---|\n");
    for v in ENV_VARS {
        let owner = match v.owner {
            EnvOwner::Product => "idp-lab",
            EnvOwner::TestBed => "the test bed",
            EnvOwner::RealSuite => "the real-image suite",
        };
        out.push_str(&format!("| `{}` | {owner} | {} |\n", v.name, v.doc));
    }
    for (section, about) in SECTIONS {
        out.push_str(&format!(
            "\n## `[{section}]`\n\n{about}\n\n| key | type | default | environment | meaning |\n|---|---|---|---|---|\n"
        ));
        for k in section_keys(section) {
            let (key, default) = if k.key == "*" {
                ("<component>".to_owned(), "the catalogue's pin".to_owned())
            } else {
                (k.key.to_owned(), format!("`{}`", k.default))
            };
            let kind = match k.kind {
                Kind::Choice(words) => words.join(" \\| "),
                Kind::Subset(words) => format!("array of {}", words.join(" \\| ")),
                Kind::Int { min, max } => format!("integer {min}–{max}"),
                other => other.type_name().to_owned(),
            };
            out.push_str(&format!(
                "| `{key}` | {kind} | {} | `{}` | {} |\n",
                default.replace('|', "\\|"),
                k.env_var(),
                k.doc.replace('|', "\\|")
            ));
        }
        if *section == "watchdog" {
            out.push_str(PLAYBOOK_REFERENCE);
        }
    }
    out
}

/// The names of the built-in playbooks, in order (see [`builtin_playbooks`]).
pub const BUILTIN_PLAYBOOKS: &[&str] = &["unseal-vault", "heal-drift", "start-node"];

/// The format of `[[watchdog.playbooks]]`, for `docs/configuration.md`.
pub const PLAYBOOK_REFERENCE: &str = r#"
### Playbooks

A playbook runs its actions, in order, when any one of its triggers fires. Every run is recorded in the
watchdog's history with its trigger, its actions and each result; so is a run held back by the rate
limit or the cool-down. A failed action does not stop the ones after it; the run is then `failed`.

```toml
[[watchdog.playbooks]]
name = "externalsecrets-resync"          # a lowercase name, unique
triggers = [{ on = "alert", labels = { slo = "externalsecrets-sync-success" } }]
actions = [
  { do = "refresh-external-secret", external_secret = "apps/db-credentials" },
  { do = "webhook", url = "http://127.0.0.1:9000/hooks/idp-lab", timeout = "5s" },
]
rate_limit = "1/10m"                     # at most 1 run per 10 minutes (default "5/10m")
cooldown = "5m"                          # quiet for 5 minutes after a run (default "0s")
dry_run = false                          # true: record what would be done, do nothing
```

| trigger | keys | fires when |
|---|---|---|
| `alert` | `labels = { name = "value", ... }` (required) | Alertmanager posts a firing alert whose labels include all of these to the daemon's receiver (`receiver_port`). An alert that keeps firing (same fingerprint, same start) runs a playbook at most once. |
| `drift` | `component` (default `"*"`) | an object idp-lab applied drifts |
| `health` | `component` (default `"*"`), `verdict`: `degraded` (default), `progressing` or `unknown` | a component's health verdict becomes this one |
| `slo` | `slo` (default `"*"`), `severity`: `page`, `ticket` or `any` (default) | the watchdog's own evaluation of an SLO fires a row of that severity |
| `vault-sealed` | | Vault reports itself sealed |
| `node-stopped` | `node` (default `"*"`) | a node container of the lab is not running |

| action | keys | what it does |
|---|---|---|
| `webhook` | `url` (`http://host[:port]/path`, required), `timeout` (default `"10s"`) | POSTs the run as JSON (`playbook`, `dry_run`, `trigger`, `at_ms`); any 2xx is success. Plain HTTP only |
| `reapply` | `object` (`"Kind/namespace/name"`; default: the drifted object) | re-applies the object as idp-lab applied it |
| `rollout-restart` | `object` (`"Deployment/ns/name"`, `StatefulSet` or `DaemonSet`, required) | restarts its pods, as `kubectl rollout restart` does |
| `sync-application` | `application` (`"namespace/name"`, or a name in `argocd`) | syncs the Argo CD Application |
| `refresh-external-secret` | `external_secret` (`"namespace/name"`) | forces the ExternalSecret to refresh |
| `unseal-vault` | | unseals Vault with the keys idp-lab keeps |
| `submit-workflow` | `template` (`"namespace/name"`), `parameters = { name = "value" }` | submits the Argo Workflows WorkflowTemplate |
| `start-node` | `node` (default: the stopped node) | starts the node container |

`rate_limit` counts the runs that started within the last window, dry runs included; a run it holds back
is recorded as `rate-limited`, one the cool-down holds back as `cooldown`. The counts survive a restart of
the daemon: they are read back from the history.

Status: the lab daemon runs the playbook engine, the Alertmanager receiver (on the lab network's
gateway address) and the history, tested against a real Alertmanager; the actions other than `webhook`
wait for the daemon's executor (each run records that it could not do them).
"#;

/// What one playbook table looks like, for messages.
pub(crate) const PLAYBOOKS_EXPECTED: &str =
    "an array of playbook tables [[watchdog.playbooks]] with name, triggers, actions and optionally rate_limit, cooldown, dry_run";

#[cfg(test)]
mod tests {
    /// docs/configuration.md is generated from the schema (`UPDATE_DOCS=1` rewrites it).
    #[test]
    fn docs_are_current() {
        let doc = super::reference_markdown();
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md");
        if std::env::var_os("UPDATE_DOCS").is_some() {
            std::fs::write(&path, &doc).expect("write docs/configuration.md");
        }
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(current == doc, "docs/configuration.md is stale: run `UPDATE_DOCS=1 cargo test -p idp-core docs`");
    }
}
