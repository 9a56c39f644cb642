//! `[watchdog]`: the playbooks the lab daemon runs, what sets them off, what they do, and
//! how often they may. Validated here with positioned diagnostics, like every key.
//!
//! ```toml
//! [[watchdog.playbooks]]
//! name = "externalsecrets-resync"
//! triggers = [{ on = "alert", labels = { slo = "externalsecrets-sync-success" } }]
//! actions = [
//!   { do = "refresh-external-secret", external_secret = "apps/db-credentials" },
//!   { do = "webhook", url = "http://127.0.0.1:9000/hooks/idp-lab", timeout = "5s" },
//! ]
//! rate_limit = "1/10m"
//! cooldown = "5m"
//! dry_run = false
//! ```

use super::schema::PLAYBOOKS_EXPECTED;
use super::validate::{Checker, describe, describe_value, is_dns_name, is_name, parse_duration};
use crate::diag::did_you_mean;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::time::Duration;
use toml_edit::{Item, TableLike};

/// `[watchdog]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Watchdog {
    /// Whether the lab daemon runs the watchdog.
    pub enabled: bool,
    /// The full resync period, in seconds.
    pub resync: u64,
    /// How often the SLOs are evaluated, in seconds.
    pub slo_interval: u64,
    /// The Prometheus the SLOs are evaluated against; empty: the lab's, through the API
    /// server's service proxy.
    pub prometheus: String,
    /// The port of the Alertmanager webhook receiver.
    pub receiver_port: super::PortSetting,
    /// The port of the dashboard, its JSON API and `/metrics`, on loopback.
    pub dashboard_port: super::PortSetting,
    /// How long history is kept, in seconds.
    pub history_age: u64,
    /// How many bytes of history are kept, e.g. `32m`.
    pub history_size: String,
    /// The built-in playbooks that are on, by name.
    pub builtin_playbooks: Vec<String>,
    /// The user's playbooks.
    pub playbooks: Vec<Playbook>,
}

/// One playbook: when it runs, what it does, and how often it may.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Playbook {
    /// Its name (a lowercase name, unique among the lab's playbooks).
    pub name: String,
    /// What sets it off: any one of them.
    pub triggers: Vec<Trigger>,
    /// What it does, in order.
    pub actions: Vec<Action>,
    /// How many runs it may start per window.
    pub rate_limit: RateLimit,
    /// How long after a run it stays quiet, in seconds (0: not at all).
    pub cooldown: u64,
    /// Record what it would do, and do nothing.
    pub dry_run: bool,
}

impl Playbook {
    /// The cool-down as a duration.
    pub fn cooldown(&self) -> Duration {
        Duration::from_secs(self.cooldown)
    }
}

/// What sets a playbook off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "on", rename_all = "kebab-case")]
pub enum Trigger {
    /// A firing Alertmanager alert (through the daemon's receiver) whose labels include
    /// all of these.
    Alert {
        /// Label name to the value it must have.
        labels: BTreeMap<String, String>,
    },
    /// Drift of an object idp-lab applied.
    Drift {
        /// The component it belongs to, or `*` for any.
        component: String,
    },
    /// A component's health verdict became this one.
    Health {
        /// The component, or `*` for any.
        component: String,
        /// The verdict.
        verdict: HealthVerdict,
    },
    /// An SLO's burn-rate verdict fired, as the watchdog evaluates it.
    Slo {
        /// The SLO (`namespace/name` or `name`), or `*` for any.
        slo: String,
        /// The severity it must have.
        severity: SloSeverity,
    },
    /// Vault reports itself sealed.
    VaultSealed,
    /// A node container of the lab is not running.
    NodeStopped {
        /// The node, or `*` for any.
        node: String,
    },
}

/// The verdicts a health trigger can wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthVerdict {
    /// Progressing.
    Progressing,
    /// Degraded.
    Degraded,
    /// Unknown.
    Unknown,
}

impl HealthVerdict {
    /// The health this verdict names.
    pub fn health(self) -> crate::health::Health {
        match self {
            HealthVerdict::Progressing => crate::health::Health::Progressing,
            HealthVerdict::Degraded => crate::health::Health::Degraded,
            HealthVerdict::Unknown => crate::health::Health::Unknown,
        }
    }
}

/// The severities an SLO trigger can wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SloSeverity {
    /// A page row (the two fast windows).
    Page,
    /// A ticket row (the two slow windows).
    Ticket,
    /// Either.
    Any,
}

/// What a playbook does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "do", rename_all = "kebab-case")]
pub enum Action {
    /// POST the run as JSON to a URL.
    Webhook {
        /// `http://host[:port]/path`.
        url: String,
        /// How long the request may take, in seconds.
        timeout: u64,
    },
    /// Re-apply an object as idp-lab applied it (server-side apply).
    Reapply {
        /// The object; none: the object the trigger names (a drifted one).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        object: Option<ObjectRef>,
    },
    /// Restart a workload's pods (the pod template's `kubectl.kubernetes.io/restartedAt`).
    RolloutRestart {
        /// A Deployment, StatefulSet or DaemonSet.
        object: ObjectRef,
    },
    /// Sync an Argo CD Application (its `operation` field).
    SyncApplication {
        /// The Application.
        application: NamespacedName,
    },
    /// Force-refresh an ExternalSecret (its `force-sync` annotation).
    RefreshExternalSecret {
        /// The ExternalSecret.
        external_secret: NamespacedName,
    },
    /// Unseal Vault with the keys idp-lab keeps.
    UnsealVault,
    /// Submit an Argo Workflows WorkflowTemplate.
    SubmitWorkflow {
        /// The WorkflowTemplate.
        template: NamespacedName,
        /// Its parameters.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        parameters: BTreeMap<String, String>,
    },
    /// Start a node container.
    StartNode {
        /// The node; none: the node the trigger names.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        node: Option<String>,
    },
}

impl Action {
    /// The action's `do` word, e.g. `rollout-restart`.
    pub fn verb(&self) -> &'static str {
        match self {
            Action::Webhook { .. } => "webhook",
            Action::Reapply { .. } => "reapply",
            Action::RolloutRestart { .. } => "rollout-restart",
            Action::SyncApplication { .. } => "sync-application",
            Action::RefreshExternalSecret { .. } => "refresh-external-secret",
            Action::UnsealVault => "unseal-vault",
            Action::SubmitWorkflow { .. } => "submit-workflow",
            Action::StartNode { .. } => "start-node",
        }
    }

    /// What it does, in words: `POST http://x/hook`, `rollout-restart Deployment apps/web`.
    pub fn describe(&self) -> String {
        match self {
            Action::Webhook { url, .. } => format!("POST {url}"),
            Action::Reapply { object: Some(o) } => format!("reapply {o}"),
            Action::Reapply { object: None } => "reapply the object the trigger names".to_owned(),
            Action::RolloutRestart { object } => format!("rollout-restart {object}"),
            Action::SyncApplication { application } => format!("sync Application {application}"),
            Action::RefreshExternalSecret { external_secret } => format!("refresh ExternalSecret {external_secret}"),
            Action::UnsealVault => "unseal Vault".to_owned(),
            Action::SubmitWorkflow { template, .. } => format!("submit WorkflowTemplate {template}"),
            Action::StartNode { node: Some(n) } => format!("start node {n}"),
            Action::StartNode { node: None } => "start the node the trigger names".to_owned(),
        }
    }
}

/// An object: `Kind/namespace/name`, or `Kind/name` for a cluster-scoped one.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ObjectRef {
    /// Its kind, e.g. `Deployment`.
    pub kind: String,
    /// Its namespace; none for a cluster-scoped object.
    pub namespace: Option<String>,
    /// Its name.
    pub name: String,
}

impl ObjectRef {
    /// Parses `Kind/namespace/name` or `Kind/name`.
    pub fn parse(s: &str) -> Option<ObjectRef> {
        let parts: Vec<&str> = s.split('/').collect();
        let (kind, namespace, name) = match parts.as_slice() {
            [kind, name] => (*kind, None, *name),
            [kind, namespace, name] => (*kind, Some(*namespace), *name),
            _ => return None,
        };
        let kind_ok = kind.starts_with(|c: char| c.is_ascii_uppercase()) && kind.chars().all(|c| c.is_ascii_alphanumeric());
        (kind_ok && namespace.is_none_or(is_label_name) && is_object_name(name)).then(|| ObjectRef {
            kind: kind.to_owned(),
            namespace: namespace.map(str::to_owned),
            name: name.to_owned(),
        })
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{}/{ns}/{}", self.kind, self.name),
            None => write!(f, "{}/{}", self.kind, self.name),
        }
    }
}

impl From<ObjectRef> for String {
    fn from(o: ObjectRef) -> String {
        o.to_string()
    }
}

impl TryFrom<String> for ObjectRef {
    type Error = String;
    fn try_from(s: String) -> Result<ObjectRef, String> {
        ObjectRef::parse(&s).ok_or_else(|| format!("{s:?} is not Kind/namespace/name"))
    }
}

/// A namespaced object of a known kind: `namespace/name`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NamespacedName {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

impl NamespacedName {
    /// Parses `namespace/name`, or a bare `name` in `default_namespace` when one is given.
    pub fn parse(s: &str, default_namespace: Option<&str>) -> Option<NamespacedName> {
        let (namespace, name) = match (s.split_once('/'), default_namespace) {
            (Some((ns, name)), _) => (ns, name),
            (None, Some(ns)) => (ns, s),
            (None, None) => return None,
        };
        (is_label_name(namespace) && is_object_name(name))
            .then(|| NamespacedName { namespace: namespace.to_owned(), name: name.to_owned() })
    }
}

impl fmt::Display for NamespacedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl From<NamespacedName> for String {
    fn from(n: NamespacedName) -> String {
        n.to_string()
    }
}

impl TryFrom<String> for NamespacedName {
    type Error = String;
    fn try_from(s: String) -> Result<NamespacedName, String> {
        NamespacedName::parse(&s, None).ok_or_else(|| format!("{s:?} is not namespace/name"))
    }
}

/// At most `runs` runs per `per` seconds, written `"1/10m"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RateLimit {
    /// How many runs.
    pub runs: u32,
    /// In how many seconds.
    pub per: u64,
}

/// The most runs a rate limit may allow per window.
pub const MAX_RUNS: u32 = 1000;

impl RateLimit {
    /// Parses `N/<duration>` (`"1/10m"`, `"30/1h"`, `"5/90s"`), N from 1 to [`MAX_RUNS`].
    pub fn parse(s: &str) -> Option<RateLimit> {
        let (runs, per) = s.split_once('/')?;
        let runs: u32 = runs.parse().ok().filter(|n| (1..=MAX_RUNS).contains(n))?;
        Some(RateLimit { runs, per: parse_duration(per)? })
    }

    /// The window as a duration.
    pub fn window(&self) -> Duration {
        Duration::from_secs(self.per)
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}s", self.runs, self.per)
    }
}

impl From<RateLimit> for String {
    fn from(r: RateLimit) -> String {
        r.to_string()
    }
}

impl TryFrom<String> for RateLimit {
    type Error = String;
    fn try_from(s: String) -> Result<RateLimit, String> {
        RateLimit::parse(&s).ok_or_else(|| format!("{s:?} is not a rate limit such as \"1/10m\""))
    }
}

/// A user playbook's rate limit when it sets none.
pub const DEFAULT_RATE_LIMIT: RateLimit = RateLimit { runs: 5, per: 600 };
/// A webhook's timeout when it sets none, in seconds.
pub const DEFAULT_WEBHOOK_TIMEOUT: u64 = 10;

/// The built-in playbooks, by name: what the in-cluster chain cannot do for itself.
/// SLO alerts are not among them: they stay with the platform's Alertmanager → Argo
/// Events chain, so every alert has one owner.
pub fn builtin_playbooks() -> Vec<Playbook> {
    vec![
        Playbook {
            name: "unseal-vault".into(),
            triggers: vec![Trigger::VaultSealed],
            actions: vec![Action::UnsealVault],
            rate_limit: RateLimit { runs: 6, per: 3600 },
            cooldown: 60,
            dry_run: false,
        },
        Playbook {
            name: "heal-drift".into(),
            triggers: vec![Trigger::Drift { component: "*".into() }],
            actions: vec![Action::Reapply { object: None }],
            rate_limit: RateLimit { runs: 30, per: 600 },
            cooldown: 0,
            dry_run: false,
        },
        Playbook {
            name: "start-node".into(),
            triggers: vec![Trigger::NodeStopped { node: "*".into() }],
            actions: vec![Action::StartNode { node: None }],
            rate_limit: RateLimit { runs: 3, per: 600 },
            cooldown: 60,
            dry_run: false,
        },
    ]
}

const PLAYBOOK_KEYS: &[&str] = &["name", "triggers", "actions", "rate_limit", "cooldown", "dry_run"];
const TRIGGERS: &[&str] = &["alert", "drift", "health", "slo", "vault-sealed", "node-stopped"];
const ACTIONS: &[&str] = &[
    "webhook",
    "reapply",
    "rollout-restart",
    "sync-application",
    "refresh-external-secret",
    "unseal-vault",
    "submit-workflow",
    "start-node",
];
const VERDICTS: &[&str] = &["progressing", "degraded", "unknown"];
const SEVERITIES: &[&str] = &["page", "ticket", "any"];
const WORKLOADS: &[&str] = &["Deployment", "StatefulSet", "DaemonSet"];

/// The keys each trigger takes besides `on`.
fn trigger_keys(on: &str) -> &'static [&'static str] {
    match on {
        "alert" => &["labels"],
        "drift" => &["component"],
        "health" => &["component", "verdict"],
        "slo" => &["slo", "severity"],
        "node-stopped" => &["node"],
        _ => &[],
    }
}

/// The keys each action takes besides `do`.
fn action_keys(verb: &str) -> &'static [&'static str] {
    match verb {
        "webhook" => &["url", "timeout"],
        "reapply" | "rollout-restart" => &["object"],
        "sync-application" => &["application"],
        "refresh-external-secret" => &["external_secret"],
        "submit-workflow" => &["template", "parameters"],
        "start-node" => &["node"],
        _ => &[],
    }
}

/// A Prometheus label name.
fn is_prometheus_label(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// An RFC 1123 label (a namespace).
fn is_label_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// An object name: an RFC 1123 subdomain (one label or more).
fn is_object_name(s: &str) -> bool {
    is_label_name(s) || (s.len() <= 253 && is_dns_name(s))
}

/// Whether `url` is `http://host[:port][/path]`: the webhook speaks plain HTTP to a
/// loopback or in-lab receiver.
fn webhook_url_problem(url: &str) -> Option<(String, Option<String>)> {
    let expected = format!("expected a URL http://host[:port]/path, found \"{url}\"");
    if url.starts_with("https://") {
        let hint =
            "the webhook action speaks plain HTTP (to a loopback or in-lab receiver); relay to an HTTPS endpoint from there".to_owned();
        return Some((expected, Some(hint)));
    }
    let Some(rest) = url.strip_prefix("http://") else {
        return Some((expected, None));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit_once(':').map_or(authority, |(h, port)| if port.parse::<u16>().is_ok_and(|p| p > 0) { h } else { "" });
    if host.is_empty() || url.contains(char::is_whitespace) || authority.contains('@') {
        return Some((expected, None));
    }
    None
}

/// Why `url` is not a `watchdog.prometheus` value, if it is not: empty (the lab's own) or
/// `http://host[:port][/prefix]` without a query.
pub(super) fn prometheus_url_problem(url: &str) -> Option<String> {
    if url.is_empty() {
        return None;
    }
    let expected = format!("expected a URL http://host:port[/prefix] without a query, found \"{url}\"");
    if url.starts_with("https://") {
        return Some(format!("{expected}: the watchdog speaks plain HTTP to Prometheus"));
    }
    (webhook_url_problem(url).is_some() || url.contains(['?', '#'])).then_some(expected)
}

/// A table of the configuration: its position and its keys.
type Tables<'t> = Vec<(Option<Range<usize>>, &'t dyn TableLike)>;

impl Checker<'_> {
    /// `watchdog.playbooks`: an array of playbook tables (`[[watchdog.playbooks]]` or
    /// inline), every problem reported at its own position.
    pub(super) fn playbooks(&mut self, path: &str, item: &Item) -> Option<Value> {
        let tables = self.tables(path, item, "playbook", PLAYBOOKS_EXPECTED)?;
        let mut playbooks = Vec::new();
        let mut names: Vec<String> = Vec::new();
        let mut ok = true;
        for (i, (span, table)) in tables.into_iter().enumerate() {
            let here = format!("{path}[{i}]");
            match self.playbook(&here, span, table, &mut names) {
                Some(p) => playbooks.push(p),
                None => ok = false,
            }
        }
        if !ok {
            return None;
        }
        serde_json::to_value(playbooks).ok()
    }

    /// `watchdog.builtin_playbooks`: some of the built-in playbooks' names.
    pub(super) fn builtin_names(&mut self, path: &str, item: &Item, words: &[&str]) -> Option<Value> {
        let entries = self.strings_of(path, item)?;
        let mut ok = true;
        for (i, (span, word)) in entries.iter().enumerate() {
            if !words.contains(&word.as_str()) {
                let hint = did_you_mean(word, words.iter().copied()).map(|w| format!("did you mean \"{w}\"?"));
                let list = words.iter().map(|w| format!("\"{w}\"")).collect::<Vec<_>>().join(", ");
                self.report(
                    span.clone().or_else(|| item.span()),
                    &format!("{path}[{i}]"),
                    format!("expected one of {list}, found \"{word}\""),
                    hint,
                );
                ok = false;
            }
        }
        ok.then(|| Value::Array(entries.into_iter().map(|(_, w)| Value::String(w)).collect()))
    }

    /// The strings of an array, with their positions.
    fn strings_of(&mut self, path: &str, item: &Item) -> Option<Vec<(Option<Range<usize>>, String)>> {
        let Some(array) = item.as_array() else {
            self.report(item.span(), path, format!("expected an array of strings, found {}", describe(item)), None);
            return None;
        };
        let mut out = Vec::new();
        let mut ok = true;
        for (i, v) in array.iter().enumerate() {
            match v.as_str() {
                Some(s) => out.push((v.span(), s.to_owned())),
                None => {
                    self.report(v.span(), &format!("{path}[{i}]"), format!("expected a string, found {}", describe_value(v)), None);
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    /// An array of tables (`[[a.b]]` or `[{ ... }, ...]`), each with its position.
    fn tables<'t>(&mut self, path: &str, item: &'t Item, what: &str, expected: &str) -> Option<Tables<'t>> {
        if let Some(aot) = item.as_array_of_tables() {
            return Some(aot.iter().map(|t| (t.span().or_else(|| first_key_span(t)), t as &dyn TableLike)).collect());
        }
        let Some(array) = item.as_array() else {
            self.report(item.span(), path, format!("expected {expected}, found {}", describe(item)), None);
            return None;
        };
        let mut out = Vec::new();
        let mut ok = true;
        for (i, v) in array.iter().enumerate() {
            match v.as_inline_table() {
                Some(t) => out.push((v.span(), t as &dyn TableLike)),
                None => {
                    let found = describe_value(v);
                    self.report(
                        v.span(),
                        &format!("{path}[{i}]"),
                        format!("expected a {what} table, found {found}"),
                        Some(expected.to_owned()),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    /// One playbook table; `taken` collects the names seen so far, valid playbook or not.
    fn playbook(&mut self, here: &str, span: Option<Range<usize>>, table: &dyn TableLike, taken: &mut Vec<String>) -> Option<Playbook> {
        let mut ok = true;
        let (mut name, mut triggers, mut actions) = (None, None, None);
        let (mut rate_limit, mut cooldown, mut dry_run) = (DEFAULT_RATE_LIMIT, 0, false);
        for (key, value) in table.iter() {
            let kpath = format!("{here}.{key}");
            let vspan = value.span().or_else(|| key_span(table, key)).or_else(|| span.clone());
            match key {
                "name" => match value.as_str() {
                    Some(n) if is_name(n) && !taken.iter().any(|t| t == n) => {
                        taken.push(n.to_owned());
                        name = Some(n.to_owned());
                    }
                    Some(n) if is_name(n) => {
                        self.report(
                            vspan,
                            &kpath,
                            format!("playbook name \"{n}\" is used twice"),
                            Some("give each playbook its own name".into()),
                        );
                        ok = false;
                    }
                    _ => {
                        self.report(
                            vspan,
                            &kpath,
                            format!("expected {}, found {}", super::schema::Kind::Name.expected(), describe(value)),
                            None,
                        );
                        ok = false;
                    }
                },
                "triggers" => match self.triggers(&kpath, value) {
                    Some(t) => triggers = Some(t),
                    None => ok = false,
                },
                "actions" => match self.actions(&kpath, value) {
                    Some(a) => actions = Some(a),
                    None => ok = false,
                },
                "rate_limit" => match value.as_str().and_then(RateLimit::parse) {
                    Some(r) => rate_limit = r,
                    None => {
                        let hint = format!("N runs per window, N from 1 to {MAX_RUNS}, e.g. \"1/10m\", \"30/1h\"");
                        self.report(
                            vspan,
                            &kpath,
                            format!("expected a rate limit \"N/<duration>\", found {}", describe(value)),
                            Some(hint),
                        );
                        ok = false;
                    }
                },
                "cooldown" => match duration_or_zero(value) {
                    Some(secs) => cooldown = secs,
                    None => {
                        let hint = Some("\"0s\" for none".to_owned());
                        self.report(
                            vspan,
                            &kpath,
                            format!("expected {}, found {}", super::schema::Kind::Duration.expected(), describe(value)),
                            hint,
                        );
                        ok = false;
                    }
                },
                "dry_run" => match value.as_bool() {
                    Some(b) => dry_run = b,
                    None => {
                        self.report(vspan, &kpath, format!("expected true or false, found {}", describe(value)), None);
                        ok = false;
                    }
                },
                other => {
                    self.unknown_key(vspan, &kpath, other, PLAYBOOK_KEYS, "a playbook");
                    ok = false;
                }
            }
        }
        for (field, missing) in [("name", name.is_none()), ("triggers", triggers.is_none()), ("actions", actions.is_none())] {
            if missing && ok && table.get(field).is_none() {
                self.report(span.clone(), here, format!("a playbook needs `{field}`"), Some(PLAYBOOKS_EXPECTED.to_owned()));
                ok = false;
            }
        }
        if !ok {
            return None;
        }
        Some(Playbook { name: name?, triggers: triggers?, actions: actions?, rate_limit, cooldown, dry_run })
    }

    fn triggers(&mut self, path: &str, item: &Item) -> Option<Vec<Trigger>> {
        let expected = "an array of trigger tables such as [{ on = \"alert\", labels = { slo = \"x\" } }]";
        self.non_empty(path, item, "trigger", expected, Self::trigger)
    }

    /// A non-empty array of `what` tables at `path`, each read by `one` (every problem of
    /// every table reported).
    fn non_empty<T>(
        &mut self,
        path: &str,
        item: &Item,
        what: &str,
        expected: &str,
        mut one: impl FnMut(&mut Self, &str, Option<Range<usize>>, &dyn TableLike) -> Option<T>,
    ) -> Option<Vec<T>> {
        let tables = self.tables(path, item, what, expected)?;
        if tables.is_empty() {
            self.report(item.span(), path, format!("a playbook needs at least one {what}"), Some(expected.to_owned()));
            return None;
        }
        let mut out = Vec::new();
        for (i, (span, table)) in tables.into_iter().enumerate() {
            out.push(one(self, &format!("{path}[{i}]"), span, table));
        }
        out.into_iter().collect()
    }

    fn trigger(&mut self, here: &str, span: Option<Range<usize>>, table: &dyn TableLike) -> Option<Trigger> {
        let on = self.tag(here, span.clone(), table, "on", TRIGGERS, "trigger")?;
        if !self.only_keys(here, span.clone(), table, "on", &on, trigger_keys(&on)) {
            return None;
        }
        let mut ok = true;
        let mut text = |this: &mut Self, key: &str, default: &str| -> String {
            match this.optional_str(here, span.clone(), table, key) {
                Ok(v) => v.unwrap_or_else(|| default.to_owned()),
                Err(()) => {
                    ok = false;
                    String::new()
                }
            }
        };
        let trigger = match on.as_str() {
            "alert" => {
                let labels = match table.get("labels") {
                    Some(item) => self.alert_labels(&format!("{here}.labels"), item),
                    None => {
                        let hint = "e.g. { on = \"alert\", labels = { slo = \"externalsecrets-sync-success\" } }".to_owned();
                        self.report(span.clone(), here, "an alert trigger needs `labels`".into(), Some(hint));
                        None
                    }
                };
                labels.map(|labels| Trigger::Alert { labels })
            }
            "drift" => Some(Trigger::Drift { component: text(self, "component", "*") }),
            "health" => {
                let component = text(self, "component", "*");
                let verdict = match self.choice(here, span.clone(), table, "verdict", VERDICTS)?.as_deref() {
                    Some("progressing") => HealthVerdict::Progressing,
                    Some("unknown") => HealthVerdict::Unknown,
                    _ => HealthVerdict::Degraded,
                };
                Some(Trigger::Health { component, verdict })
            }
            "slo" => {
                let slo = text(self, "slo", "*");
                let severity = match self.choice(here, span.clone(), table, "severity", SEVERITIES)?.as_deref() {
                    Some("page") => SloSeverity::Page,
                    Some("ticket") => SloSeverity::Ticket,
                    _ => SloSeverity::Any,
                };
                Some(Trigger::Slo { slo, severity })
            }
            "vault-sealed" => Some(Trigger::VaultSealed),
            _ => Some(Trigger::NodeStopped { node: text(self, "node", "*") }),
        };
        if ok { trigger } else { None }
    }

    fn alert_labels(&mut self, path: &str, item: &Item) -> Option<BTreeMap<String, String>> {
        let Some(table) = item.as_table_like() else {
            self.report(item.span(), path, format!("expected a table of label = \"value\", found {}", describe(item)), None);
            return None;
        };
        let mut out = BTreeMap::new();
        let mut ok = true;
        for (k, v) in table.iter() {
            let kpath = format!("{path}.{k}");
            match v.as_str() {
                Some(s) if is_prometheus_label(k) => {
                    out.insert(k.to_owned(), s.to_owned());
                }
                Some(_) => {
                    let span = key_span(table, k).or_else(|| v.span());
                    self.report(
                        span,
                        &kpath,
                        format!("\"{k}\" is not a label name (letters, digits and '_', not starting with a digit)"),
                        None,
                    );
                    ok = false;
                }
                None => {
                    self.report(v.span(), &kpath, format!("expected a string, found {}", describe(v)), None);
                    ok = false;
                }
            }
        }
        if ok && out.is_empty() {
            self.report(
                item.span(),
                path,
                "an alert trigger needs at least one label to match".into(),
                Some("e.g. labels = { alertname = \"X\" }".into()),
            );
            return None;
        }
        ok.then_some(out)
    }

    fn actions(&mut self, path: &str, item: &Item) -> Option<Vec<Action>> {
        let expected = "an array of action tables such as [{ do = \"webhook\", url = \"http://127.0.0.1:9000/hook\" }]";
        self.non_empty(path, item, "action", expected, Self::action)
    }

    fn action(&mut self, here: &str, span: Option<Range<usize>>, table: &dyn TableLike) -> Option<Action> {
        let verb = self.tag(here, span.clone(), table, "do", ACTIONS, "action")?;
        if !self.only_keys(here, span.clone(), table, "do", &verb, action_keys(&verb)) {
            return None;
        }
        let action = match verb.as_str() {
            "webhook" => {
                let url = self.required(here, span.clone(), table, "url", "a URL such as \"http://127.0.0.1:9000/hook\"", |u| {
                    webhook_url_problem(u)
                })?;
                let timeout = match table.get("timeout") {
                    None => DEFAULT_WEBHOOK_TIMEOUT,
                    Some(v) => match duration_or_zero(v).filter(|&s| s > 0) {
                        Some(s) => s,
                        None => {
                            let path = format!("{here}.timeout");
                            self.report(
                                v.span(),
                                &path,
                                format!("expected {}, found {}", super::schema::Kind::Duration.expected(), describe(v)),
                                None,
                            );
                            return None;
                        }
                    },
                };
                Action::Webhook { url, timeout }
            }
            "reapply" => {
                let object = match table.get("object") {
                    None => None,
                    Some(_) => Some(self.object(here, span.clone(), table, None)?),
                };
                Action::Reapply { object }
            }
            "rollout-restart" => Action::RolloutRestart { object: self.object(here, span.clone(), table, Some(WORKLOADS))? },
            "sync-application" => {
                let application = self.named(here, span.clone(), table, "application", Some("argocd"))?;
                Action::SyncApplication { application }
            }
            "refresh-external-secret" => {
                Action::RefreshExternalSecret { external_secret: self.named(here, span.clone(), table, "external_secret", None)? }
            }
            "unseal-vault" => Action::UnsealVault,
            "submit-workflow" => {
                let template = self.named(here, span.clone(), table, "template", None)?;
                let parameters = match table.get("parameters") {
                    None => BTreeMap::new(),
                    Some(item) => self.string_map(&format!("{here}.parameters"), item)?,
                };
                Action::SubmitWorkflow { template, parameters }
            }
            _ => match self.optional_str(here, span.clone(), table, "node") {
                Ok(node) => Action::StartNode { node },
                Err(()) => return None,
            },
        };
        Some(action)
    }

    /// The tag of a trigger or action (`on`, `do`): required, one of `words`.
    fn tag(
        &mut self,
        here: &str,
        span: Option<Range<usize>>,
        table: &dyn TableLike,
        key: &str,
        words: &[&str],
        what: &str,
    ) -> Option<String> {
        let list = words.iter().map(|w| format!("\"{w}\"")).collect::<Vec<_>>().join(", ");
        let Some(value) = table.get(key) else {
            self.report(span, here, format!("a {what} needs `{key}`, one of {list}"), None);
            return None;
        };
        let path = format!("{here}.{key}");
        match value.as_str() {
            Some(w) if words.contains(&w) => Some(w.to_owned()),
            Some(w) => {
                let hint = did_you_mean(w, words.iter().copied())
                    .map(|s| format!("did you mean \"{s}\"?"))
                    .unwrap_or_else(|| format!("what each {what} does is in docs/configuration.md, under Playbooks"));
                self.report(value.span(), &path, format!("unknown {what} \"{w}\": expected one of {list}"), Some(hint));
                None
            }
            None => {
                self.report(value.span(), &path, format!("expected one of {list}, found {}", describe(value)), None);
                None
            }
        }
    }

    /// Reports every key of `table` that a `tag = word` table does not take.
    fn only_keys(
        &mut self,
        here: &str,
        span: Option<Range<usize>>,
        table: &dyn TableLike,
        tag: &str,
        word: &str,
        allowed: &[&str],
    ) -> bool {
        let mut ok = true;
        for (key, value) in table.iter() {
            if key == tag || allowed.contains(&key) {
                continue;
            }
            let vspan = key_span(table, key).or_else(|| value.span()).or_else(|| span.clone());
            let takes = if allowed.is_empty() {
                format!("{tag} = \"{word}\" takes no other key")
            } else {
                format!("{tag} = \"{word}\" takes {}", allowed.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", "))
            };
            let hint = did_you_mean(key, allowed.iter().copied()).map(|k| format!("did you mean `{k}`?")).unwrap_or(takes);
            self.report(vspan, &format!("{here}.{key}"), "unknown key".into(), Some(hint));
            ok = false;
        }
        ok
    }

    fn unknown_key(&mut self, span: Option<Range<usize>>, path: &str, key: &str, known: &[&str], what: &str) {
        let hint = did_you_mean(key, known.iter().copied())
            .map(|k| format!("did you mean `{k}`?"))
            .unwrap_or_else(|| format!("{what} has {}", known.join(", ")));
        self.report(span, path, "unknown key".into(), Some(hint));
    }

    /// An optional string key; `Err` after reporting one that is not a string.
    fn optional_str(&mut self, here: &str, span: Option<Range<usize>>, table: &dyn TableLike, key: &str) -> Result<Option<String>, ()> {
        let Some(value) = table.get(key) else { return Ok(None) };
        match value.as_str() {
            Some(s) if !s.trim().is_empty() => Ok(Some(s.to_owned())),
            _ => {
                let vspan = value.span().or(span);
                self.report(vspan, &format!("{here}.{key}"), format!("expected a non-empty string, found {}", describe(value)), None);
                Err(())
            }
        }
    }

    /// An optional key that is one of `words`.
    fn choice(
        &mut self,
        here: &str,
        span: Option<Range<usize>>,
        table: &dyn TableLike,
        key: &str,
        words: &[&str],
    ) -> Option<Option<String>> {
        let Some(value) = table.get(key) else { return Some(None) };
        let list = words.iter().map(|w| format!("\"{w}\"")).collect::<Vec<_>>().join(", ");
        match value.as_str() {
            Some(w) if words.contains(&w) => Some(Some(w.to_owned())),
            _ => {
                let hint = value.as_str().and_then(|w| did_you_mean(w, words.iter().copied())).map(|s| format!("did you mean \"{s}\"?"));
                self.report(
                    value.span().or(span),
                    &format!("{here}.{key}"),
                    format!("expected one of {list}, found {}", describe(value)),
                    hint,
                );
                None
            }
        }
    }

    /// A required string key that `problem` accepts.
    fn required(
        &mut self,
        here: &str,
        span: Option<Range<usize>>,
        table: &dyn TableLike,
        key: &str,
        expected: &str,
        problem: impl Fn(&str) -> Option<(String, Option<String>)>,
    ) -> Option<String> {
        let path = format!("{here}.{key}");
        let Some(value) = table.get(key) else {
            self.report(span, here, format!("this action needs `{key}`, {expected}"), None);
            return None;
        };
        let Some(text) = value.as_str() else {
            self.report(value.span(), &path, format!("expected {expected}, found {}", describe(value)), None);
            return None;
        };
        if let Some((message, hint)) = problem(text) {
            self.report(value.span(), &path, message, hint);
            return None;
        }
        Some(text.to_owned())
    }

    /// `object = "Kind/namespace/name"`, of one of `kinds` (namespaced) when given.
    fn object(&mut self, here: &str, span: Option<Range<usize>>, table: &dyn TableLike, kinds: Option<&[&str]>) -> Option<ObjectRef> {
        let expected = match kinds {
            Some(kinds) => format!("an object \"Kind/namespace/name\" of kind {}", kinds.join(", ")),
            None => "an object \"Kind/namespace/name\" (or \"Kind/name\" when cluster-scoped)".to_owned(),
        };
        let text = self.required(here, span, table, "object", &expected, |s| {
            let found = format!("expected {expected}, found \"{s}\"");
            match (ObjectRef::parse(s), kinds) {
                (None, _) => Some((found, Some("e.g. \"Deployment/apps/web\"".to_owned()))),
                (Some(o), Some(kinds)) if !kinds.contains(&o.kind.as_str()) || o.namespace.is_none() => {
                    let hint = did_you_mean(&o.kind, kinds.iter().copied())
                        .filter(|k| *k != o.kind)
                        .map(|k| format!("did you mean {k}?"))
                        .unwrap_or_else(|| "only workloads restart; `reapply` re-applies any other object".to_owned());
                    Some((found, Some(hint)))
                }
                _ => None,
            }
        })?;
        ObjectRef::parse(&text)
    }

    /// `key = "namespace/name"` (or a bare name in `default_namespace`).
    fn named(
        &mut self,
        here: &str,
        span: Option<Range<usize>>,
        table: &dyn TableLike,
        key: &str,
        default_namespace: Option<&str>,
    ) -> Option<NamespacedName> {
        let expected = match default_namespace {
            Some(ns) => format!("\"namespace/name\" (or a name in {ns})"),
            None => "\"namespace/name\"".to_owned(),
        };
        let text = self.required(here, span, table, key, &expected, |s| {
            NamespacedName::parse(s, default_namespace).is_none().then(|| (format!("expected {expected}, found \"{s}\""), None))
        })?;
        NamespacedName::parse(&text, default_namespace)
    }

    fn string_map(&mut self, path: &str, item: &Item) -> Option<BTreeMap<String, String>> {
        let Some(table) = item.as_table_like() else {
            self.report(item.span(), path, format!("expected a table of name = \"value\", found {}", describe(item)), None);
            return None;
        };
        let mut out = BTreeMap::new();
        let mut ok = true;
        for (k, v) in table.iter() {
            match v.as_str() {
                Some(s) => {
                    out.insert(k.to_owned(), s.to_owned());
                }
                None => {
                    self.report(v.span(), &format!("{path}.{k}"), format!("expected a string, found {}", describe(v)), None);
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }
}

/// A duration (`"5m"`, `90`) or zero (`"0s"`, `"0"`, `0`), in seconds.
fn duration_or_zero(item: &Item) -> Option<u64> {
    match (item.as_integer(), item.as_str()) {
        (Some(n), _) => u64::try_from(n).ok(),
        (_, Some("0" | "0s" | "0m" | "0h")) => Some(0),
        (_, Some(s)) => parse_duration(s),
        _ => None,
    }
}

fn key_span(table: &dyn TableLike, key: &str) -> Option<Range<usize>> {
    table.key(key).and_then(|k| k.span())
}

fn first_key_span(table: &toml_edit::Table) -> Option<Range<usize>> {
    table.iter().next().and_then(|(k, _)| table.key(k)).and_then(|k| k.span())
}

#[cfg(test)]
mod tests {
    use super::super::schema::{BUILTIN_PLAYBOOKS, PLAYBOOK_REFERENCE};
    use super::*;

    #[test]
    fn rate_limits_and_references_parse() {
        assert_eq!(RateLimit::parse("1/10m"), Some(RateLimit { runs: 1, per: 600 }));
        assert_eq!(RateLimit::parse("30/1h").map(|r| r.to_string()).as_deref(), Some("30/3600s"));
        for bad in ["", "1", "0/10m", "1/0s", "x/10m", "1/10d", "1001/1h", "1/ 10m", "-1/10m"] {
            assert_eq!(RateLimit::parse(bad), None, "{bad:?}");
        }
        let o = ObjectRef::parse("Deployment/apps/web").expect("namespaced");
        assert_eq!((o.kind.as_str(), o.namespace.as_deref(), o.name.as_str()), ("Deployment", Some("apps"), "web"));
        assert_eq!(ObjectRef::parse("ClusterRole/edit.x").map(|o| o.to_string()).as_deref(), Some("ClusterRole/edit.x"));
        for bad in ["deployment/apps/web", "Deployment", "Deployment/Apps/web", "Deployment/a/b/c", "Deploy-ment/a/b", "Deployment//web"] {
            assert_eq!(ObjectRef::parse(bad), None, "{bad:?}");
        }
        assert_eq!(NamespacedName::parse("platform", Some("argocd")).map(|n| n.to_string()).as_deref(), Some("argocd/platform"));
        assert_eq!(NamespacedName::parse("platform", None), None);
        assert_eq!(NamespacedName::parse("apps/db", None).map(|n| n.name), Some("db".into()));
    }

    #[test]
    fn webhook_urls_are_plain_http() {
        for good in ["http://127.0.0.1:9000/hook", "http://receiver.lab/x?y=1", "http://[::1]:80/"] {
            assert_eq!(webhook_url_problem(good), None, "{good}");
        }
        for bad in ["https://hooks.example.com/x", "ftp://x", "http://", "http://:80/x", "http://a b/", "http://u@host/", "http://h:0/"] {
            assert!(webhook_url_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn the_reference_names_every_trigger_and_action() {
        for word in TRIGGERS.iter().chain(ACTIONS) {
            assert!(PLAYBOOK_REFERENCE.contains(&format!("| `{word}` |")), "{word} is not documented");
        }
    }

    #[test]
    fn the_builtin_playbooks_are_the_named_ones_and_round_trip() -> Result<(), serde_json::Error> {
        let builtin = builtin_playbooks();
        assert_eq!(builtin.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), BUILTIN_PLAYBOOKS);
        for p in &builtin {
            let json = serde_json::to_value(p)?;
            assert_eq!(&serde_json::from_value::<Playbook>(json)?, p);
        }
        let json = serde_json::to_value(&builtin[0])?;
        assert_eq!(json["triggers"], serde_json::json!([{"on": "vault-sealed"}]));
        assert_eq!(json["rate_limit"], "6/3600s");
        Ok(())
    }
}
