//! Readiness over watches: one reflector per kind and namespace that a wait names, the
//! verdicts of [`idp_core::readiness`] on what they see, and a timeout that names every
//! object not ready and why.
//!
//! [`until_ready`] plans its watches first ([`plan`]): the targets are grouped by kind
//! and namespace (cluster-wide for a cluster-scoped kind), and each group gets one
//! `watcher` on `Api<DynamicObject>`, narrowed to `metadata.name=X` when the group is
//! a single object. Some verdicts need other objects ([`Related`]): a
//! PersistentVolumeClaim adds a watch of the StorageClasses, a k3s HelmChart one of the
//! Jobs in its namespace. Nothing is polled: every verdict is recomputed from what the
//! watches last delivered, after each event.
//!
//! A target that does not exist is InProgress (`not found`): something else may still
//! make it. A watch that fails (the CRD of its kind went away, the connection dropped)
//! is retried by kube's watcher with its default backoff; its last error is added to
//! the reasons of the targets that depend on it until it delivers again, so that a
//! timeout says why nothing was seen.

use std::collections::HashMap;
use std::pin::pin;
use std::time::Duration;

use futures::StreamExt as _;
use futures::stream::{self, BoxStream};
use idp_core::objects::Identity;
use idp_core::readiness::{Related, Verdict, explain, verdict_with};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, DynamicObject};
use kube::discovery::ApiResource;
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher::{self, Event};
use serde_json::Value;
use tokio::time::Instant;

use crate::KubeError;
use crate::discovery::Kind;

/// One object to wait for.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// Its kind, resolved.
    pub kind: Kind,
    /// Its namespace; empty for a cluster-scoped kind.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its identity, for messages.
    pub identity: Identity,
}

/// Waits until every target is ready; see the module docs.
///
/// `on_change(ready, total)` is called once at the start and again whenever the number
/// of ready targets changes. Returns as soon as all are ready. A target whose verdict is
/// Failed ends the wait at once with [`KubeError::Failed`], naming it and why; when
/// `timeout` runs out first, [`KubeError::NotReadyInTime`] names every target not ready
/// and why (with a watch's last error where it has one).
pub(crate) async fn until_ready(
    client: &kube::Client,
    server: &str,
    targets: &[Target],
    timeout: Duration,
    on_change: &(dyn Fn(usize, usize) + Sync),
) -> Result<(), KubeError> {
    let started = Instant::now();
    let deadline = started + timeout;
    let plan = plan(targets);
    let mut seen: Vec<Seen> = plan.watches.iter().map(|_| Seen::default()).collect();
    let streams: Vec<BoxStream<'static, (usize, watcher::Result<Event<DynamicObject>>)>> =
        plan.watches.iter().enumerate().map(|(index, watch)| watch.stream(client).map(move |event| (index, event)).boxed()).collect();
    let mut events = stream::select_all(streams);
    let mut sleep = pin!(tokio::time::sleep_until(deadline));
    let mut last_ready = None;
    let mut last_verdicts: Vec<Option<Verdict>> = vec![None; targets.len()];
    loop {
        let verdicts = evaluate(targets, &plan, &seen);
        for ((target, (_, verdict)), last) in targets.iter().zip(&verdicts).zip(&mut last_verdicts) {
            if last.as_ref() != Some(verdict) {
                tracing::debug!(object = %target.identity, %verdict, "readiness");
                *last = Some(verdict.clone());
            }
        }
        let ready = verdicts.iter().filter(|(_, v)| v.is_ready()).count();
        if last_ready != Some(ready) {
            tracing::debug!(server, ready, total = targets.len(), waited = ?started.elapsed(), "ready objects");
            on_change(ready, targets.len());
            last_ready = Some(ready);
        }
        if verdicts.iter().any(|(_, v)| v.is_failed()) {
            let failed: Vec<(&Value, Verdict)> = verdicts.iter().filter(|(_, v)| v.is_failed()).map(|(o, v)| (o, v.clone())).collect();
            return Err(KubeError::Failed { server: server.to_owned(), explain: explain(&failed) });
        }
        if ready == targets.len() {
            return Ok(());
        }
        let next = tokio::select! {
            next = events.next() => next,
            () = &mut sleep => return Err(timed_out(server, started, targets, &verdicts)),
        };
        match next {
            Some((index, event)) => {
                if let (Some(state), Some(watch)) = (seen.get_mut(index), plan.watches.get(index)) {
                    state.record(event, watch);
                }
            }
            // The watchers never end; should they, only the deadline is left.
            None => {
                sleep.as_mut().await;
                return Err(timed_out(server, started, targets, &verdicts));
            }
        }
    }
}

/// The error of a wait whose time ran out, from the last verdicts.
fn timed_out(server: &str, started: Instant, targets: &[Target], verdicts: &[(Value, Verdict)]) -> KubeError {
    let pairs: Vec<(&Value, Verdict)> = verdicts.iter().map(|(o, v)| (o, v.clone())).collect();
    KubeError::NotReadyInTime {
        server: server.to_owned(),
        waited: started.elapsed(),
        not_ready: verdicts.iter().filter(|(_, v)| !v.is_ready()).count(),
        total: targets.len(),
        explain: explain(&pairs),
    }
}

/// One watch: a kind, in a namespace or cluster-wide, perhaps narrowed to one name.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Watch {
    /// The kind's resource.
    resource: ApiResource,
    /// The namespace, or `None` for all of them (a cluster-scoped kind).
    namespace: Option<String>,
    /// `metadata.name=X` when the watch is for a single object.
    field_selector: Option<String>,
}

impl Watch {
    /// The watcher's event stream, retried with kube's default backoff.
    fn stream(&self, client: &kube::Client) -> BoxStream<'static, watcher::Result<Event<DynamicObject>>> {
        let api: Api<DynamicObject> = match &self.namespace {
            Some(namespace) => Api::namespaced_with(client.clone(), namespace, &self.resource),
            None => Api::all_with(client.clone(), &self.resource),
        };
        let mut config = watcher::Config::default();
        if let Some(selector) = &self.field_selector {
            config = config.fields(selector);
        }
        watcher::watcher(api, config).default_backoff().boxed()
    }

    /// What is watched, for messages: `deployments.apps in namespace web`.
    fn describe(&self) -> String {
        let mut out = self.resource.plural.clone();
        if !self.resource.group.is_empty() {
            out.push('.');
            out.push_str(&self.resource.group);
        }
        if let Some(namespace) = &self.namespace {
            out.push_str(" in namespace ");
            out.push_str(namespace);
        }
        if let Some(selector) = &self.field_selector {
            out.push_str(&format!(" ({selector})"));
        }
        out
    }
}

/// The watches of a wait, and which of them each target depends on.
#[derive(Debug, Default)]
struct Plan {
    /// Every watch, once.
    watches: Vec<Watch>,
    /// Per target (in order), the index of the watch that sees it.
    target_watch: Vec<usize>,
    /// The watch of the StorageClasses, when a target is a PersistentVolumeClaim.
    storage_classes: Option<usize>,
    /// The watches of Jobs, one per namespace of a k3s HelmChart target.
    jobs: Vec<usize>,
}

impl Plan {
    /// The index of `watch`, added unless an equal one is there.
    fn add(&mut self, watch: Watch) -> usize {
        if let Some(index) = self.watches.iter().position(|w| *w == watch) {
            return index;
        }
        self.watches.push(watch);
        self.watches.len() - 1
    }

    /// The watches a target's verdict depends on: its own, and the related ones its kind needs.
    fn depends_on(&self, target_index: usize, target: &Target) -> Vec<usize> {
        let mut out: Vec<usize> = self.target_watch.get(target_index).copied().into_iter().collect();
        if is_pvc(&target.kind.resource) {
            out.extend(self.storage_classes);
        }
        if is_helm_chart(&target.kind.resource) {
            let namespace = Some(target.namespace.as_str());
            out.extend(self.jobs.iter().copied().filter(|&j| self.watches.get(j).is_some_and(|w| w.namespace.as_deref() == namespace)));
        }
        out
    }
}

/// Whether a resource is the core PersistentVolumeClaim.
fn is_pvc(resource: &ApiResource) -> bool {
    resource.group.is_empty() && resource.kind == "PersistentVolumeClaim"
}

/// Whether a resource is the k3s HelmChart.
fn is_helm_chart(resource: &ApiResource) -> bool {
    resource.group == "helm.cattle.io" && resource.kind == "HelmChart"
}

/// The namespace a target is watched in: `None` for a cluster-scoped kind.
fn scope_of(target: &Target) -> Option<String> {
    (target.kind.namespaced && !target.namespace.is_empty()).then(|| target.namespace.clone())
}

/// What the targets of one watch share: `apiVersion`, kind and namespace (`None` when
/// cluster-scoped).
type GroupKey = (String, String, Option<String>);

/// The watches for `targets`: one per kind and namespace, narrowed to the name when the
/// group is one object, and the related watches (StorageClasses for a
/// PersistentVolumeClaim, Jobs in the namespace of a HelmChart).
fn plan(targets: &[Target]) -> Plan {
    // The targets of each group, in order of appearance.
    let mut groups: Vec<(GroupKey, Vec<usize>)> = Vec::new();
    for (index, target) in targets.iter().enumerate() {
        let key = (target.kind.resource.api_version.clone(), target.kind.resource.kind.clone(), scope_of(target));
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, members)) => members.push(index),
            None => groups.push((key, vec![index])),
        }
    }
    let mut plan = Plan { target_watch: vec![0; targets.len()], ..Plan::default() };
    for ((_, _, namespace), members) in groups {
        let Some(first) = members.first().and_then(|&i| targets.get(i)) else { continue };
        let distinct_names = {
            let mut names: Vec<&str> = members.iter().filter_map(|&i| targets.get(i)).map(|t| t.name.as_str()).collect();
            names.sort_unstable();
            names.dedup();
            names.len()
        };
        let field_selector = (distinct_names == 1).then(|| format!("metadata.name={}", first.name));
        let index = plan.add(Watch { resource: first.kind.resource.clone(), namespace, field_selector });
        for member in members {
            if let Some(slot) = plan.target_watch.get_mut(member) {
                *slot = index;
            }
        }
    }
    for target in targets {
        if is_pvc(&target.kind.resource) && plan.storage_classes.is_none() {
            let watch = Watch { resource: ApiResource::erase::<StorageClass>(&()), namespace: None, field_selector: None };
            plan.storage_classes = Some(plan.add(watch));
        }
        if is_helm_chart(&target.kind.resource) {
            let watch = Watch { resource: ApiResource::erase::<Job>(&()), namespace: scope_of(target), field_selector: None };
            let index = plan.add(watch);
            if !plan.jobs.contains(&index) {
                plan.jobs.push(index);
            }
        }
    }
    plan
}

/// What one watch has delivered so far.
#[derive(Debug, Default)]
struct Seen {
    /// The objects, by (namespace, name), as JSON with `apiVersion` and `kind` set.
    objects: HashMap<(String, String), Value>,
    /// The objects of a (re)list in progress, which replace [`Seen::objects`] when it is done.
    listing: Option<HashMap<(String, String), Value>>,
    /// Whether a first list has completed.
    listed: bool,
    /// The last error, until the watch delivers again.
    last_error: Option<String>,
}

impl Seen {
    /// Takes in one event of `watch`'s stream.
    fn record(&mut self, event: watcher::Result<Event<DynamicObject>>, watch: &Watch) {
        let event = match event {
            Ok(event) => event,
            Err(e) => {
                let text = watch_error(&e);
                tracing::debug!(watch = %watch.describe(), error = %text, "watch failed; retrying");
                self.last_error = Some(text);
                return;
            }
        };
        self.last_error = None;
        match event {
            Event::Init => self.listing = Some(HashMap::new()),
            Event::InitApply(obj) => {
                if let Some((key, value)) = to_value(obj, &watch.resource) {
                    self.listing.get_or_insert_with(HashMap::new).insert(key, value);
                }
            }
            Event::InitDone => {
                self.objects = self.listing.take().unwrap_or_default();
                self.listed = true;
            }
            Event::Apply(obj) => {
                if let Some((key, value)) = to_value(obj, &watch.resource) {
                    self.objects.insert(key, value);
                }
            }
            Event::Delete(obj) => {
                let key = (obj.metadata.namespace.unwrap_or_default(), obj.metadata.name.unwrap_or_default());
                self.objects.remove(&key);
            }
        }
    }
}

/// An object as the verdicts read it, keyed by (namespace, name). Watch events and list
/// items need not carry `apiVersion` and `kind`; the verdicts dispatch on them, so they
/// are set from the watched resource.
fn to_value(obj: DynamicObject, resource: &ApiResource) -> Option<((String, String), Value)> {
    let key = (obj.metadata.namespace.clone().unwrap_or_default(), obj.metadata.name.clone().unwrap_or_default());
    let Some(value) = crate::discovery::object_value(&obj, resource) else {
        tracing::debug!(object = ?key, "object not representable as a JSON mapping; ignored");
        return None;
    };
    Some((key, value))
}

/// Each target's object (or a stand-in with its kind and name when it was not seen) and
/// its verdict, in order.
fn evaluate(targets: &[Target], plan: &Plan, seen: &[Seen]) -> Vec<(Value, Verdict)> {
    let values_of = |index: Option<usize>| -> Vec<Value> {
        index.and_then(|i| seen.get(i)).map(|s| s.objects.values().cloned().collect()).unwrap_or_default()
    };
    let storage_classes = values_of(plan.storage_classes);
    let jobs: Vec<Value> = plan.jobs.iter().flat_map(|&j| values_of(Some(j))).collect();
    let related = Related { storage_classes: &storage_classes, jobs: &jobs };
    let mut out = Vec::with_capacity(targets.len());
    for (index, target) in targets.iter().enumerate() {
        let own = plan.target_watch.get(index).and_then(|&i| seen.get(i));
        let key = (scope_of(target).unwrap_or_default(), target.name.clone());
        let (value, mut verdict) = match own.and_then(|s| s.objects.get(&key)) {
            Some(obj) => (obj.clone(), verdict_with(obj, &related)),
            None => {
                let listed = own.is_some_and(|s| s.listed);
                let reason = if listed { "not found" } else { "not listed yet" };
                (stand_in(target), Verdict::InProgress { reason: reason.to_owned() })
            }
        };
        if !verdict.is_ready() {
            let errors: Vec<String> = plan
                .depends_on(index, target)
                .into_iter()
                .filter_map(|i| Some((plan.watches.get(i)?, seen.get(i)?.last_error.as_ref()?)))
                .map(|(watch, error)| format!("last error watching {}: {error}", watch.describe()))
                .collect();
            if !errors.is_empty() {
                let reason = format!("{} ({})", verdict.reason(), errors.join("; "));
                verdict = match verdict {
                    Verdict::Failed { .. } => Verdict::Failed { reason },
                    _ => Verdict::InProgress { reason },
                };
            }
        }
        out.push((value, verdict));
    }
    out
}

/// A target that was not seen, as [`explain`] reads it: kind, namespace and name.
fn stand_in(target: &Target) -> Value {
    let mut metadata = serde_json::Map::new();
    metadata.insert("name".to_owned(), Value::String(target.name.clone()));
    if let Some(namespace) = scope_of(target) {
        metadata.insert("namespace".to_owned(), Value::String(namespace));
    }
    let mut obj = serde_json::Map::new();
    obj.insert("apiVersion".to_owned(), Value::String(target.kind.resource.api_version.clone()));
    obj.insert("kind".to_owned(), Value::String(target.kind.resource.kind.clone()));
    obj.insert("metadata".to_owned(), Value::Object(metadata));
    Value::Object(obj)
}

/// A watcher error on one line: what failed and the API server's answer (`list failed:
/// 404 NotFound: the server could not find the requested resource`).
pub(crate) fn watch_error(e: &watcher::Error) -> String {
    let (what, cause) = match e {
        watcher::Error::InitialListFailed(cause) => ("list", cause),
        watcher::Error::WatchStartFailed(cause) => ("watch", cause),
        watcher::Error::WatchFailed(cause) => ("watch", cause),
        watcher::Error::WatchError(status) => return format!("the watch answered {}", status_line(status)),
        other => return crate::error::chain(other),
    };
    match cause {
        kube::Error::Api(status) => format!("{what} failed: {}", status_line(status)),
        other => format!("{what} failed: {}", crate::error::chain(other)),
    }
}

/// An API status as `code reason: message`, leaving out what is empty or says nothing
/// more: a reason that is not a machine word (kube's `Failed to parse error data` for a
/// body that was not a Status), a code the message starts with (`404 page not found`).
fn status_line(status: &kube::core::Status) -> String {
    let message = status.message.trim();
    let code = status.code.to_string();
    let head: Vec<&str> = [
        (status.code != 0 && !message.starts_with(&code)).then_some(code.as_str()),
        (!status.reason.is_empty() && !status.reason.contains(char::is_whitespace)).then_some(status.reason.as_str()),
    ]
    .into_iter()
    .flatten()
    .collect();
    match (head.join(" "), message) {
        (head, "") if head.is_empty() => "an error without a message".to_owned(),
        (head, "") => head,
        (head, message) if head.is_empty() => message.to_owned(),
        (head, message) => format!("{head}: {message}"),
    }
}

#[cfg(test)]
mod tests;

/// How often a kind not served yet (its CRD comes with a chart being installed) is asked
/// for again while waiting on a component's readiness entries.
const UNSERVED_RETRY: Duration = Duration::from_secs(1);

/// The `apiVersion` of a readiness entry that names none: the built-in kinds' own.
fn default_api_version(kind: &str) -> Option<&'static str> {
    match kind {
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" => Some("apps/v1"),
        "Job" => Some("batch/v1"),
        "Namespace"
        | "Service"
        | "ConfigMap"
        | "Secret"
        | "ServiceAccount"
        | "PersistentVolumeClaim"
        | "LimitRange"
        | "ResourceQuota"
        | "Pod" => Some("v1"),
        _ => None,
    }
}

impl crate::Cluster {
    /// Waits until every object a component's `readiness` entries name is ready (the
    /// verdicts of [`idp_core::readiness`]), for at most `timeout`: objects the component's
    /// charts make, which the apply engine did not apply itself. A namespaced entry without
    /// a namespace is in `namespace`. A kind the API server does not serve yet (its CRD
    /// comes with the chart) is asked for again until it is, within the same deadline.
    ///
    /// Errors: [`KubeError::NotReadyInTime`] naming every object not ready and why,
    /// [`KubeError::Failed`] for one that will not get ready, [`KubeError::NotServed`]
    /// for a kind still not served at the deadline, [`KubeError::Input`] for an entry
    /// of a kind without `apiVersion` that is not built in.
    pub async fn wait_for_readiness(
        &self,
        entries: &[idp_core::catalogue::Readiness],
        namespace: &str,
        timeout: Duration,
        on_change: &(dyn Fn(usize, usize) + Sync),
    ) -> Result<(), KubeError> {
        let started = Instant::now();
        let deadline = started + timeout;
        let discovery = crate::discovery::Discovery::new(self.client().clone(), self.server());
        let mut problems = Vec::new();
        let mut wanted = Vec::new();
        for entry in entries {
            match entry.api_version.as_deref().or_else(|| default_api_version(&entry.kind)) {
                Some(api_version) => wanted.push((entry, api_version.to_owned())),
                None => {
                    problems.push(format!("readiness entry {} {} names no apiVersion and its kind is not built in", entry.kind, entry.name))
                }
            }
        }
        if !problems.is_empty() {
            return Err(KubeError::Input { problems });
        }
        let mut targets = Vec::with_capacity(wanted.len());
        for (entry, api_version) in wanted {
            let kind = loop {
                discovery.forget(&api_version);
                if let Some(kind) = discovery.resolve(&api_version, &entry.kind).await? {
                    break kind;
                }
                if Instant::now() + UNSERVED_RETRY > deadline {
                    return Err(KubeError::NotServed {
                        server: self.server().to_owned(),
                        kinds: vec![format!("{} {api_version}", entry.kind)],
                        dry_run: false,
                    });
                }
                tokio::time::sleep(UNSERVED_RETRY).await;
            };
            let namespace = if kind.namespaced { entry.namespace.clone().unwrap_or_else(|| namespace.to_owned()) } else { String::new() };
            let identity = Identity {
                group: idp_core::objects::api_group(&api_version).to_owned(),
                kind: entry.kind.clone(),
                namespace: namespace.clone(),
                name: entry.name.clone(),
            };
            targets.push(Target { kind, namespace, name: entry.name.clone(), identity });
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        until_ready(self.client(), self.server(), &targets, remaining, on_change).await
    }
}
