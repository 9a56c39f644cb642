//! The apply engine: objects in, a cluster that holds them out.
//!
//! 1. **Prepare.** Each object is normalised ([`objects::normalize`]), given the
//!    ownership labels ([`objects::own`]) and, in an apply set, the member label, and
//!    put in apply order ([`objects::order`]: stage, wave, kind order, namespace, name).
//! 2. **Resolve.** Every kind is resolved through discovery of its exact group version.
//!    A namespaced kind without a namespace gets the default one; a cluster-scoped kind
//!    with one is refused, with every such object named at once.
//! 3. **Waves**, one after the other. A wave whose kinds are not served yet (their CRD
//!    was applied in an earlier wave, or comes from a chart) asks discovery again every
//!    second until the deadline. Its objects are applied with server-side apply (field
//!    manager `idp-lab`, force, `fieldValidation=Strict`), `concurrency` at a time, and
//!    retried with backoff on 409, 429, 5xx and dropped connections. CRDs are waited on
//!    until `Established` before the next wave; with `wait`, every wave is waited on
//!    until ready.
//! 4. **The cache.** One metadata LIST per kind and namespace gives each live object's
//!    `resourceVersion`; an object whose input and version match the [`ApplyCache`] is
//!    already what applying it would leave, and is not sent.
//! 5. **Prune**, in an apply set and when asked: the set's previous members (found by
//!    its label, in the kinds and namespaces its parent lists) that the input no longer
//!    has are deleted, in reverse apply order, unless annotated `idp-lab.dev/prune:
//!    disabled`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use futures::{StreamExt as _, stream};
use idp_core::objects::{self, Identity, Object, SortKey};
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PropagationPolicy, ValidationDirective};
use serde::Serialize;
use serde_json::Value;

use crate::cache::{self, ApplyCache};
use crate::discovery::Discovery;
use crate::inventory::{self, Inventory, Listed, PART_OF_LABEL, PRUNE_ANNOTATION, PRUNE_DISABLED};
use crate::item::{Item, duplicates, prepare, resolve};
use crate::wait::{self, Target};
use crate::{Cluster, KubeError};

/// The field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "idp-lab";
/// The default number of requests in flight.
pub const DEFAULT_CONCURRENCY: usize = 32;
/// Attempts of one request before its error stands (409, 429, 5xx, connection errors).
const ATTEMPTS: u32 = 6;
/// The first backoff; it doubles after each attempt.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// How often discovery is asked again for kinds not served yet.
const DISCOVERY_RETRY: Duration = Duration::from_secs(1);

/// How to apply.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// The namespace of namespaced objects that name none.
    pub namespace: String,
    /// The lab, for the `idp-lab.dev/lab` label.
    pub lab: String,
    /// The component, for the `idp-lab.dev/component` label.
    pub component: String,
    /// The apply set the objects belong to; `None` for none (then nothing is pruned).
    pub inventory: Option<Inventory>,
    /// Delete the set's previous members that the input no longer has.
    pub prune: bool,
    /// Wait for each wave to be ready before the next.
    pub wait: bool,
    /// The deadline of the whole run, from its start.
    pub timeout: Duration,
    /// Ask the server what it would do (`dryRun=All`), change nothing.
    pub dry_run: bool,
    /// Requests in flight at once (at least 1).
    pub concurrency: usize,
}

impl ApplyOptions {
    /// Options for `lab`'s `component`, in namespace `default`, no set, no wait, 5 min.
    pub fn new(lab: &str, component: &str) -> ApplyOptions {
        ApplyOptions {
            namespace: "default".into(),
            lab: lab.into(),
            component: component.into(),
            inventory: None,
            prune: false,
            wait: false,
            timeout: Duration::from_secs(300),
            dry_run: false,
            concurrency: DEFAULT_CONCURRENCY,
        }
    }

    /// The labels idp-lab sets on every object, as keys.
    pub fn owned_labels(&self) -> Vec<&'static str> {
        let mut labels = vec![objects::MANAGED_BY_LABEL, idp_core::render::LAB_LABEL, idp_core::render::COMPONENT_LABEL];
        if self.inventory.is_some() {
            labels.push(PART_OF_LABEL);
        }
        labels
    }
}

/// Progress of a run, for a progress line.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    /// A wave begins.
    Wave {
        /// Its stage.
        stage: u8,
        /// Its wave.
        wave: i32,
        /// How many objects it has.
        objects: usize,
    },
    /// Kinds of the wave are not served yet; discovery is asked again.
    WaitingForKinds {
        /// `Kind apiVersion`, sorted.
        kinds: Vec<String>,
    },
    /// Objects of the wave sent (or skipped as unchanged).
    Applied {
        /// Done so far.
        done: usize,
        /// Of.
        total: usize,
    },
    /// Objects of the wave ready.
    Ready {
        /// Ready so far.
        ready: usize,
        /// Of.
        total: usize,
    },
    /// An object was pruned.
    Pruned {
        /// It, as displayed.
        object: String,
    },
}

/// What happened to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// It did not exist.
    Created,
    /// It changed.
    Configured,
    /// Nothing changed (sent and left as it was, or not sent: see `cached`).
    Unchanged,
}

/// One applied object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Applied {
    /// `Kind.group namespace/name`.
    pub object: String,
    /// `apiVersion`.
    pub api_version: String,
    /// `kind`.
    pub kind: String,
    /// The namespace; empty for a cluster-scoped object.
    pub namespace: String,
    /// The name.
    pub name: String,
    /// Its stage.
    pub stage: u8,
    /// Its wave.
    pub wave: i32,
    /// What happened.
    pub action: Action,
    /// Whether the cache showed it unchanged, so nothing was sent.
    pub cached: bool,
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ApplyReport {
    /// Whether it was a dry run.
    pub dry_run: bool,
    /// Every object of the input, in apply order.
    pub objects: Vec<Applied>,
    /// Objects pruned (or that a dry run would prune), in the order deleted.
    pub pruned: Vec<String>,
    /// Objects prune left because they are annotated `idp-lab.dev/prune: disabled`.
    pub kept: Vec<String>,
}

impl ApplyReport {
    /// Objects created or configured.
    pub fn changed(&self) -> usize {
        self.objects.iter().filter(|o| o.action != Action::Unchanged).count()
    }
}

impl Cluster {
    /// Applies `objects`; see the module docs. The `cache` is read and updated (keep it
    /// for the next run, also after an error); `progress` hears about each step.
    ///
    /// Errors: [`KubeError::Input`] for objects the input gets wrong (all of them),
    /// [`KubeError::NotServed`] for kinds still not served at the deadline,
    /// [`KubeError::Refused`] for objects the server refused (every one of the wave),
    /// the readiness errors of a wait, and [`KubeError::Api`] when the server cannot be
    /// reached.
    pub async fn apply(
        &self,
        objects: Vec<Object>,
        options: &ApplyOptions,
        cache: &mut ApplyCache,
        progress: &(dyn Fn(Progress) + Sync),
    ) -> Result<ApplyReport, KubeError> {
        let started = Instant::now();
        let deadline = started + options.timeout;
        let client = self.client();
        let server = self.server();
        let set_id = options.inventory.as_ref().map(Inventory::id);
        let mut items = prepare(objects, &options.lab, &options.component, set_id.as_deref())?;
        let discovery = Discovery::new(client.clone(), server);
        // The cluster's uid, its discovery and the set's parent, all at once.
        let (uid, (), parent) = tokio::join!(self.cluster_uid(), discovery.prefetch(items.iter().map(Item::api_version)), async {
            match &options.inventory {
                Some(set) => Some(ParentState::new(set, client, server).await).transpose(),
                None => Ok(None),
            }
        });
        cache.bind(&uid?);
        let mut parent = parent?;

        let mut problems = Vec::new();
        resolve(&discovery, &mut items, &options.namespace, &mut problems).await?;
        problems.extend(duplicates(&items));
        if !problems.is_empty() {
            return Err(KubeError::Input { problems });
        }

        // The kinds the input's own CRDs define: a dry run cannot create them, so their
        // objects are reported as to be created instead of failing.
        let to_come: BTreeSet<(String, String)> = items
            .iter()
            .filter(|i| objects::needs_established(i.kind_name()))
            .filter_map(|i| {
                let group = i.value.pointer("/spec/group")?.as_str()?;
                let kind = i.value.pointer("/spec/names/kind")?.as_str()?;
                Some((group.to_owned(), kind.to_owned()))
            })
            .collect();
        let mut report = ApplyReport { dry_run: options.dry_run, ..ApplyReport::default() };
        let mut start = 0;
        while start < items.len() {
            let (stage, wave) = (items[start].key.stage, items[start].key.wave);
            let end = start + items[start..].iter().take_while(|i| i.key.stage == stage && i.key.wave == wave).count();
            progress(Progress::Wave { stage, wave, objects: end - start });
            let mut problems = Vec::new();
            let serving = Serving { namespace: &options.namespace, deadline, dry_run: options.dry_run, to_come: &to_come };
            self.serve(&discovery, &mut items[start..end], &serving, &mut problems, progress).await?;
            problems.extend(duplicates(&items));
            if !problems.is_empty() {
                return Err(KubeError::Input { problems });
            }
            let listed = match parent.as_mut() {
                Some(parent) => parent.widen(client, server, &items[start..end], options.dry_run).await?,
                None => true,
            };
            let (applied, settled) = self.apply_wave(&items[start..end], options, cache, deadline, progress).await?;
            report.objects.extend(applied);
            if let (false, Some(parent)) = (listed, parent.as_mut())
                && !parent.widen(client, server, &items[start..end], options.dry_run).await?
                && !options.dry_run
            {
                return Err(KubeError::Input {
                    problems: vec![format!(
                        "namespace {:?} of the apply set's parent was applied but does not exist",
                        parent.set.namespace
                    )],
                });
            }
            let crds: Vec<Target> =
                items[start..end].iter().filter(|i| objects::needs_established(i.kind_name())).filter_map(Item::target).collect();
            if !options.dry_run && !crds.is_empty() {
                let remaining = deadline.saturating_duration_since(Instant::now());
                wait::until_ready(client, server, &crds, remaining, &|_, _| {}).await?;
            }
            if options.wait && !options.dry_run {
                let targets: Vec<Target> = items[start..end].iter().filter_map(Item::target).collect();
                let remaining = deadline.saturating_duration_since(Instant::now());
                wait::until_ready(client, server, &targets, remaining, &|ready, total| progress(Progress::Ready { ready, total })).await?;
            }
            if !options.dry_run && (options.wait || !crds.is_empty()) {
                self.settle(&items[start..end], &settled, cache).await?;
            }
            start = end;
        }

        if let Some(parent) = parent.as_mut()
            && options.prune
        {
            let (pruned, kept) = self.prune(&discovery, parent, &items, options, cache, progress).await?;
            report.pruned = pruned;
            report.kept = kept;
            parent.narrow(client, server, &items, options.dry_run).await?;
        }
        tracing::debug!(objects = report.objects.len(), changed = report.changed(), took = ?started.elapsed(), "applied");
        Ok(report)
    }

    /// The uid of `kube-system`, which names the cluster for the cache.
    pub(crate) async fn cluster_uid(&self) -> Result<String, KubeError> {
        let api: Api<Namespace> = Api::all(self.client().clone());
        let ns = api.get("kube-system").await.map_err(|e| KubeError::api("read namespace kube-system", self.server(), e))?;
        Ok(ns.metadata.uid.unwrap_or_default())
    }

    /// Waits until every item's kind is served, asking discovery again every second, and
    /// sets or checks each namespace (problems go to `problems`). A dry run does not
    /// wait: it leaves unresolved the objects whose CRD the input brings, and fails on
    /// any other kind not served.
    async fn serve(
        &self,
        discovery: &Discovery,
        items: &mut [Item],
        serving: &Serving<'_>,
        problems: &mut Vec<String>,
        progress: &(dyn Fn(Progress) + Sync),
    ) -> Result<(), KubeError> {
        let mut told = BTreeSet::new();
        loop {
            let unserved = resolve(discovery, items, serving.namespace, problems).await?;
            if unserved.is_empty() {
                return Ok(());
            }
            if serving.dry_run
                && unserved.iter().all(|&i| {
                    let group = objects::api_group(items[i].api_version()).to_owned();
                    serving.to_come.contains(&(group, items[i].kind_name().to_owned()))
                })
            {
                return Ok(());
            }
            let kinds: BTreeSet<String> =
                unserved.iter().map(|&i| format!("{} {}", items[i].kind_name(), items[i].api_version())).collect();
            if serving.dry_run || Instant::now() + DISCOVERY_RETRY > serving.deadline {
                return Err(KubeError::NotServed {
                    server: self.server().to_owned(),
                    kinds: kinds.into_iter().collect(),
                    dry_run: serving.dry_run,
                });
            }
            if kinds != told {
                progress(Progress::WaitingForKinds { kinds: kinds.iter().cloned().collect() });
                told = kinds;
            }
            tokio::time::sleep(DISCOVERY_RETRY).await;
            for &i in &unserved {
                discovery.forget(items[i].api_version());
            }
        }
    }

    /// Applies one wave's items, `concurrency` at a time.
    async fn apply_wave(
        &self,
        items: &[Item],
        options: &ApplyOptions,
        cache: &mut ApplyCache,
        deadline: Instant,
        progress: &(dyn Fn(Progress) + Sync),
    ) -> Result<(Vec<Applied>, Settled), KubeError> {
        let client = self.client();
        let live = self.live_versions(items).await?;
        let total = items.len();
        progress(Progress::Applied { done: 0, total });
        let hashes: Vec<String> = items.iter().map(|i| cache::hash(&i.value)).collect();
        let plans: Vec<(&Item, &String, Option<String>, bool)> = items
            .iter()
            .zip(&hashes)
            .map(|(item, hash)| {
                let before = live.get(&item.identity()).cloned();
                let skip = !options.dry_run && before.as_deref().is_some_and(|rv| cache.fresh(&item.display(), hash, rv));
                (item, hash, before, skip)
            })
            .collect();
        let work = plans.into_iter().map(|(item, hash, before, skip)| {
            async move {
                if skip {
                    return (item, hash, before, Ok(Outcome::Cached));
                }
                let Some(api) = item.api(client) else {
                    // Only a dry run leaves an item unresolved: its CRD is in the input.
                    return (item, hash, before, Ok(Outcome::ToCome));
                };
                let result = match send(&api, item, options.dry_run, deadline).await {
                    Ok(after) => Ok(Outcome::Sent(Box::new(after))),
                    // A dry run does not create the namespaces of earlier waves.
                    Err(kube::Error::Api(s))
                        if options.dry_run && s.code == 404 && s.details.as_ref().is_some_and(|d| d.kind == "namespaces") =>
                    {
                        Ok(Outcome::ToCome)
                    }
                    Err(e) => Err(explain(item, &e)),
                };
                (item, hash, before, result)
            }
        });
        let mut results = stream::iter(work).buffer_unordered(options.concurrency.max(1));
        let mut done = 0;
        let mut applied = BTreeMap::new();
        let mut settled = Settled::new();
        let mut refused = Vec::new();
        while let Some((item, hash, before, result)) = results.next().await {
            done += 1;
            progress(Progress::Applied { done, total });
            let display = item.display();
            let (action, cached) = match result {
                Ok(Outcome::Cached) => (Action::Unchanged, true),
                Ok(Outcome::ToCome) => (Action::Created, false),
                Ok(Outcome::Sent(after)) => {
                    let after = *after;
                    let after_rv = after.metadata.resource_version.clone().unwrap_or_default();
                    if !options.dry_run {
                        cache.record(&display, hash, &after_rv);
                        settled.insert(display.clone(), (hash.clone(), crate::live::as_value(after, item)));
                    }
                    let action = match before {
                        None => Action::Created,
                        Some(rv) if rv == after_rv => Action::Unchanged,
                        Some(_) => Action::Configured,
                    };
                    (action, false)
                }
                Err(message) => {
                    cache.forget(&display);
                    refused.push(message);
                    continue;
                }
            };
            applied.insert(
                display.clone(),
                Applied {
                    object: display,
                    api_version: item.api_version().to_owned(),
                    kind: item.kind_name().to_owned(),
                    namespace: item.namespace().to_owned(),
                    name: item.name().to_owned(),
                    stage: item.key.stage,
                    wave: item.key.wave,
                    action,
                    cached,
                },
            );
        }
        if !refused.is_empty() {
            refused.sort();
            return Err(KubeError::Refused { server: self.server().to_owned(), applied: applied.len(), failures: refused });
        }
        // Report in apply order, not completion order.
        Ok((items.iter().filter_map(|i| applied.remove(&i.display())).collect(), settled))
    }

    /// After a wait: objects whose controllers wrote only their status since the apply
    /// (a CRD's conditions, a Deployment's replicas) are still exactly what the apply
    /// left, so their new `resourceVersion` goes into the cache. One LIST per kind and
    /// namespace of the wave.
    async fn settle(&self, items: &[Item], settled: &Settled, cache: &mut ApplyCache) -> Result<(), KubeError> {
        if settled.is_empty() {
            return Ok(());
        }
        let live = self.live_objects(items).await?;
        for item in items {
            let display = item.display();
            let (Some((hash, after)), Some(now)) = (settled.get(&display), live.get(&item.identity())) else { continue };
            if without_status(after) == without_status(now) {
                cache.record(&display, hash, crate::live::resource_version(now));
            }
        }
        Ok(())
    }

    /// Deletes the set's previous members the input no longer has.
    async fn prune(
        &self,
        discovery: &Discovery,
        parent: &ParentState,
        items: &[Item],
        options: &ApplyOptions,
        cache: &mut ApplyCache,
        progress: &(dyn Fn(Progress) + Sync),
    ) -> Result<(Vec<String>, Vec<String>), KubeError> {
        let client = self.client();
        let server = self.server();
        let current: BTreeSet<Identity> = items.iter().map(Item::identity).collect();
        let selector = format!("{PART_OF_LABEL}={}", parent.set.id());
        let mut candidates: Vec<(SortKey, Identity, Api<DynamicObject>, bool)> = Vec::new();
        for group_kind in &parent.listed.group_kinds {
            let (group, kind) = inventory::split_group_kind(group_kind);
            let Some(resolved) = discovery.resolve_group_kind(group, kind).await? else {
                tracing::debug!(group_kind, "a listed kind is not served any more: nothing of it to prune");
                continue;
            };
            let apis: Vec<Api<DynamicObject>> = if resolved.namespaced {
                parent.listed.namespaces.iter().map(|ns| Api::namespaced_with(client.clone(), ns, &resolved.resource)).collect()
            } else {
                vec![Api::all_with(client.clone(), &resolved.resource)]
            };
            for api in apis {
                let list = api
                    .list_metadata(&ListParams::default().labels(&selector))
                    .await
                    .map_err(|e| KubeError::api("list the apply set's members", server, e))?;
                for meta in list.items {
                    let identity = Identity {
                        group: group.to_owned(),
                        kind: kind.to_owned(),
                        namespace: meta.metadata.namespace.clone().unwrap_or_default(),
                        name: meta.metadata.name.clone().unwrap_or_default(),
                    };
                    if current.contains(&identity) || meta.metadata.deletion_timestamp.is_some() {
                        continue;
                    }
                    let disabled = meta.metadata.annotations.as_ref().and_then(|a| a.get(PRUNE_ANNOTATION)).map(String::as_str)
                        == Some(PRUNE_DISABLED);
                    let key = prune_key(kind, &identity, meta.metadata.annotations.as_ref());
                    candidates.push((key, identity, api.clone(), disabled));
                }
            }
        }
        candidates.sort_by(|a, b| b.0.cmp(&a.0));
        let (mut pruned, mut kept) = (Vec::new(), Vec::new());
        let mut params = DeleteParams { propagation_policy: Some(PropagationPolicy::Background), ..DeleteParams::default() };
        params.dry_run = options.dry_run;
        for (_, identity, api, disabled) in candidates {
            let display = identity.to_string();
            if disabled {
                kept.push(display);
                continue;
            }
            match api.delete(&identity.name, &params).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(e) => return Err(KubeError::api("prune a member of the apply set", server, e)),
            }
            if !options.dry_run {
                cache.forget(&display);
            }
            progress(Progress::Pruned { object: display.clone() });
            pruned.push(display);
        }
        Ok((pruned, kept))
    }
}

/// How a wave's kinds are waited for.
struct Serving<'a> {
    /// The default namespace.
    namespace: &'a str,
    /// The run's deadline.
    deadline: Instant,
    /// Whether the run is a dry run.
    dry_run: bool,
    /// (group, kind) of every CRD in the input.
    to_come: &'a BTreeSet<(String, String)>,
}

/// What became of one object of a wave.
enum Outcome {
    /// The cache showed it unchanged; nothing was sent.
    Cached,
    /// Sent; the server's answer.
    Sent(Box<DynamicObject>),
    /// A dry run whose namespace or CRD the input brings: it would be created.
    ToCome,
}

/// What the server answered to each applied object of a wave: identity → (hash of the
/// input, the object as the apply left it).
type Settled = HashMap<String, (String, Value)>;

/// An object without what controllers write after an apply without changing it: its
/// status, and the metadata that moves with every write.
fn without_status(value: &Value) -> Value {
    let mut value = value.clone();
    if let Some(object) = value.as_object_mut() {
        object.remove("status");
        if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            metadata.remove("resourceVersion");
            metadata.remove("managedFields");
        }
    }
    value
}

/// The apply order of a member found by prune: its kind, its sync-wave annotation (0
/// when it has none or one that is not a wave), its namespace and name.
fn prune_key(kind: &str, identity: &Identity, annotations: Option<&BTreeMap<String, String>>) -> SortKey {
    let wave = annotations.and_then(|a| a.get(objects::SYNC_WAVE_ANNOTATION)).and_then(|w| w.parse().ok()).unwrap_or(0);
    SortKey {
        stage: objects::stage_of(kind),
        wave,
        kind_rank: objects::kind_rank(kind),
        kind: kind.to_owned(),
        namespace: identity.namespace.clone(),
        name: identity.name.clone(),
    }
}

/// Sends one server-side apply, retrying what can pass on a second try.
pub(crate) async fn send(api: &Api<DynamicObject>, item: &Item, dry_run: bool, deadline: Instant) -> Result<DynamicObject, kube::Error> {
    let mut params = PatchParams::apply(FIELD_MANAGER).force().validation(ValidationDirective::Strict);
    params.dry_run = dry_run;
    let mut backoff = FIRST_BACKOFF;
    let mut attempt = 1;
    loop {
        match api.patch(item.name(), &params, &Patch::Apply(&item.value)).await {
            Err(e) if attempt < ATTEMPTS && retryable(&e) && Instant::now() + backoff < deadline => {
                tracing::debug!(object = %item.display(), attempt, error = %e, "retrying");
                tokio::time::sleep(backoff).await;
                backoff *= 2;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Whether an error may pass on a second try: 409, 429, 5xx, or no answer at all.
pub(crate) fn retryable(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(status) => matches!(status.code, 409 | 429 | 500..=599),
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}

/// One line on why the server refused an item, with the way out where there is one.
pub(crate) fn explain(item: &Item, e: &kube::Error) -> String {
    let object = format!("{} ({})", item.display(), item.place);
    let kube::Error::Api(status) = e else { return format!("{object}: {e}") };
    let immutable: Vec<&str> = status
        .details
        .iter()
        .flat_map(|d| d.causes.iter())
        .filter(|c| c.message.contains("immutable"))
        .map(|c| c.field.as_str())
        .filter(|f| !f.is_empty())
        .collect();
    if !immutable.is_empty() || status.message.contains("field is immutable") {
        let fields = if immutable.is_empty() { "a field".to_owned() } else { immutable.join(", ") };
        let ns = if item.namespace().is_empty() { String::new() } else { format!(" -n {}", item.namespace()) };
        return format!(
            "{object}: {fields} cannot be changed once the object exists (the server says: {}); keep the old value, \
             or delete the object and apply again (`kubectl delete {}{ns} {}`; what it holds goes with it), or give it a new name",
            status.message,
            item.kind_name().to_lowercase(),
            item.name()
        );
    }
    if status.code == 404 && status.details.as_ref().is_some_and(|d| d.kind == "namespaces") {
        return format!(
            "{object}: namespace {:?} does not exist; add a Namespace object to the input, or create it first",
            item.namespace()
        );
    }
    format!("{object}: {} ({}, HTTP {})", status.message, status.reason, status.code)
}

/// The parent of an apply set during a run: what it listed before, and what it lists
/// now.
pub(crate) struct ParentState {
    set: Inventory,
    /// What it lists now (before the run: what it listed; during: the union).
    listed: Listed,
    /// Whether it exists as `listed` says (read, or written in this run).
    written: bool,
}

impl ParentState {
    /// Reads the parent (an error if the Secret is not this set's).
    async fn new(set: &Inventory, client: &kube::Client, server: &str) -> Result<ParentState, KubeError> {
        let listed = set.read(client, server).await?;
        // A parent that exists needs no write while the run adds nothing to it.
        let written = listed.is_some();
        Ok(ParentState { set: set.clone(), listed: listed.unwrap_or_default(), written })
    }

    /// Lists `items` too, before they are applied. Returns `false` when the parent's
    /// namespace does not exist yet but is one of `items` (a Namespace of the input):
    /// call it again once they are applied.
    async fn widen(&mut self, client: &kube::Client, server: &str, items: &[Item], dry_run: bool) -> Result<bool, KubeError> {
        let mut wider = self.listed.clone();
        wider.namespaces.insert(self.set.namespace.clone());
        for item in items {
            wider.group_kinds.insert(inventory::group_kind(objects::api_group(item.api_version()), item.kind_name()));
            if !item.namespace().is_empty() {
                wider.namespaces.insert(item.namespace().to_owned());
            }
        }
        if wider == self.listed && self.written {
            return Ok(true);
        }
        match self.set.write(client, &wider, dry_run).await {
            Ok(()) => {
                self.listed = wider;
                self.written = true;
                Ok(true)
            }
            Err(kube::Error::Api(status)) if status.code == 404 => {
                if items.iter().any(|i| i.kind_name() == "Namespace" && i.name() == self.set.namespace) {
                    return Ok(false);
                }
                if dry_run && !self.written {
                    // A dry run does not create the namespace an earlier wave would.
                    self.listed = wider;
                    return Ok(true);
                }
                Err(KubeError::Input {
                    problems: vec![format!(
                        "the apply set's parent Secret {}/{} cannot be written: namespace {:?} does not exist; create it \
                         first, add it to the input, or give the set another namespace (-n)",
                        self.set.namespace, self.set.name, self.set.namespace
                    )],
                })
            }
            Err(e) => Err(KubeError::api("write the apply set's parent", server, e)),
        }
    }

    /// After a prune: lists exactly `items`.
    async fn narrow(&mut self, client: &kube::Client, server: &str, items: &[Item], dry_run: bool) -> Result<(), KubeError> {
        let mut listed = Listed::default();
        listed.namespaces.insert(self.set.namespace.clone());
        for item in items {
            listed.group_kinds.insert(inventory::group_kind(objects::api_group(item.api_version()), item.kind_name()));
            if !item.namespace().is_empty() {
                listed.namespaces.insert(item.namespace().to_owned());
            }
        }
        match self.set.write(client, &listed, dry_run).await {
            Ok(()) => {}
            Err(kube::Error::Api(status)) if dry_run && status.code == 404 => {}
            Err(e) => return Err(KubeError::api("write the apply set's parent", server, e)),
        }
        self.listed = listed;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16) -> kube::Error {
        kube::Error::Api(Box::new(kube::core::Status::failure("x", "Reason").with_code(code)))
    }

    #[test]
    fn what_is_retried() {
        for code in [409, 429, 500, 503, 599] {
            assert!(retryable(&status(code)), "{code}");
        }
        for code in [400, 403, 404, 422] {
            assert!(!retryable(&status(code)), "{code}");
        }
    }

    #[test]
    fn status_writes_are_not_changes() {
        let after =
            serde_json::json!({"kind": "X", "metadata": {"name": "a", "resourceVersion": "1", "managedFields": [1]}, "spec": {"a": 1}});
        let mut now = after.clone();
        now["metadata"]["resourceVersion"] = "2".into();
        now["metadata"]["managedFields"] = serde_json::json!([1, 2]);
        now["status"] = serde_json::json!({"ready": true});
        assert_eq!(without_status(&after), without_status(&now));
        now["spec"]["a"] = 2.into();
        assert_ne!(without_status(&after), without_status(&now), "a spec change is a change");
        let mut labelled = after.clone();
        labelled["metadata"]["labels"] = serde_json::json!({"x": "y"});
        assert_ne!(without_status(&after), without_status(&labelled), "a label is a change");
    }

    #[test]
    fn prune_order_reads_the_wave() {
        let identity = Identity { group: String::new(), kind: "ConfigMap".into(), namespace: "n".into(), name: "a".into() };
        let mut annotations = BTreeMap::new();
        annotations.insert(objects::SYNC_WAVE_ANNOTATION.to_owned(), "5".to_owned());
        assert_eq!(prune_key("ConfigMap", &identity, Some(&annotations)).wave, 5);
        annotations.insert(objects::SYNC_WAVE_ANNOTATION.to_owned(), "five".to_owned());
        assert_eq!(prune_key("ConfigMap", &identity, Some(&annotations)).wave, 0);
        let key = prune_key("ClusterRole", &identity, None);
        assert_eq!((key.stage, key.wave, key.namespace.as_str(), key.name.as_str()), (0, 0, "n", "a"));
    }
}
