//! The drift engine's actor: one task that owns every object's state, the apply cache and
//! the watches, and selects over commands from the handle, messages from its workers
//! (watches, dry-runs, heals, timers, resync LISTs) and the resync tick. Requests run in
//! worker tasks, at most `concurrency` at once; one object has at most one request in
//! flight, and the newest observation that arrives meanwhile waits for it.
//!
//! **Observations.** A watch event, a resync LIST or a GET says what an object is now. An
//! observation whose `resourceVersion` is older than one already seen (etcd's versions are
//! increasing integers; others are never taken for older) is dropped, and so is a watch
//! event with the version already seen (the event of idp-lab's own heal). The rest: known
//! in sync from the cache, or diffed.
//!
//! **Batches.** A watch's initial list and a resync are batches: each observation they
//! start carries the batch's tag until its diff is done, so the engine knows when the
//! initial check is complete (ready) and when a resync can report.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use futures::StreamExt as _;
use idp_core::objects::Identity;
use idp_kube::watch_diff::{self, MemberDiff, Scope, Watched};
use idp_kube::{ApplyCache, Cluster, FIELD_MANAGER, KubeError};
use kube::api::DynamicObject;
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher::{self, Event};
use serde_json::Value;
use tokio::sync::{Semaphore, broadcast, mpsc, oneshot, watch};
use tokio::task::{AbortHandle, JoinSet};

use super::ledger::{Ledger, Limits, Next};
use super::managers;
use super::report::{DriftEvent, DriftField, DriftState, DriftStats, ObjectDrift, ResyncReport};
use super::rules::{self, Compiled, Policy, Verdict};
use super::{DriftError, DriftOptions};

/// A component ready to be watched.
#[derive(Debug)]
pub(crate) struct Prepared {
    /// Its name.
    pub name: String,
    /// Its policy.
    pub policy: Policy,
    /// Its ignore rules, checked.
    pub rules: Vec<Compiled>,
    /// Its objects, prepared and resolved.
    pub watched: Arc<Watched>,
}

/// What the handle asks.
pub(crate) enum Command {
    /// A full resync now.
    Resync { uncached: bool, reply: oneshot::Sender<ResyncReport> },
    /// Replace or add a component.
    Update { component: Prepared, reply: oneshot::Sender<Result<(), DriftError>> },
    /// Stop, giving back the cache.
    Stop { reply: oneshot::Sender<ApplyCache> },
}

/// The channels between the handle and the actor.
pub(crate) struct Channels {
    pub commands: mpsc::Receiver<Command>,
    pub events: broadcast::Sender<DriftEvent>,
    pub drifts: watch::Sender<Arc<Vec<ObjectDrift>>>,
    pub stats: watch::Sender<DriftStats>,
}

/// An object's place: (component index, member index).
type Key = (usize, usize);

/// What a worker reports.
enum Msg {
    /// A watch's event (or error), from the watch with that id.
    Watch { scope: u64, event: Box<Result<Event<DynamicObject>, String>> },
    /// A diff ended.
    Diffed { key: Key, epoch: u64, live: Option<Box<Value>>, result: Result<MemberDiff, KubeError>, tags: Vec<u64> },
    /// A heal ended; the object as the server left it.
    Applied { key: Key, epoch: u64, result: Result<Box<Value>, KubeError> },
    /// A GET (of an object a resync LIST lacked) ended.
    Got { key: Key, epoch: u64, result: Result<Option<Box<Value>>, KubeError>, tags: Vec<u64> },
    /// A heal's backoff is over.
    HealDue { key: Key, epoch: u64, timer: u64 },
    /// A resync's LIST of one component ended.
    Listed { batch: u64, component: usize, generation: u64, result: Result<HashMap<Identity, Value>, KubeError> },
}

/// One observation waiting for the object's request in flight.
struct Pending {
    live: Option<Value>,
    version: Option<String>,
    tags: Vec<u64>,
}

/// One object's state.
struct ObjectState {
    /// Changes when the state is made anew (a component update): results of requests
    /// started before are dropped.
    epoch: u64,
    /// The newest `resourceVersion` seen.
    version: Option<String>,
    /// A request (diff or heal) is in flight.
    busy: bool,
    /// The newest observation that arrived while busy.
    pending: Option<Pending>,
    /// The current drift; `None` in sync.
    drift: Option<ObjectDrift>,
    /// Heal history.
    ledger: Ledger,
    /// The heal timer that counts; older ones are ignored.
    timer: u64,
}

/// One component's state.
struct ComponentState {
    name: String,
    policy: Policy,
    rules: Vec<Compiled>,
    watched: Arc<Watched>,
    /// Changes with each update, for LISTs started before.
    generation: u64,
    objects: Vec<ObjectState>,
}

/// One watch.
struct ScopeState {
    id: u64,
    scope: Scope,
    abort: AbortHandle,
    /// The objects it covers.
    members: Vec<Key>,
    /// During a (re)list: its batch and the objects seen.
    init: Option<(u64, HashSet<Key>)>,
    /// It has listed once and each object was compared.
    ready: bool,
}

/// What a batch is.
enum BatchKind {
    /// A watch's initial list.
    Init { scope: String },
    /// A resync.
    Resync {
        uncached: bool,
        started: Instant,
        at: SystemTime,
        compared: usize,
        cached: usize,
        errors: Vec<String>,
        reply: Option<oneshot::Sender<ResyncReport>>,
    },
}

struct Batch {
    outstanding: usize,
    kind: BatchKind,
}

/// The actor.
struct Engine {
    cluster: Cluster,
    limits: Limits,
    resync_period: std::time::Duration,
    components: Vec<ComponentState>,
    index: HashMap<Identity, Key>,
    scopes: BTreeMap<String, ScopeState>,
    scope_ids: HashMap<u64, String>,
    batches: HashMap<u64, Batch>,
    cache: ApplyCache,
    next_id: u64,
    tx: mpsc::Sender<Msg>,
    rx: mpsc::Receiver<Msg>,
    channels: Channels,
    semaphore: Arc<Semaphore>,
    tasks: JoinSet<()>,
    stats: DriftStats,
    drift_changed: bool,
}

/// Starts the actor.
pub(crate) fn spawn(
    cluster: Cluster,
    components: Vec<Prepared>,
    options: &DriftOptions,
    cache: ApplyCache,
    channels: Channels,
) -> Result<(), DriftError> {
    let (tx, rx) = mpsc::channel(1024);
    let mut engine = Engine {
        cluster,
        limits: options.limits(),
        resync_period: options.resync.max(std::time::Duration::from_secs(1)),
        components: Vec::new(),
        index: HashMap::new(),
        scopes: BTreeMap::new(),
        scope_ids: HashMap::new(),
        batches: HashMap::new(),
        cache,
        next_id: 1,
        tx,
        rx,
        channels,
        semaphore: Arc::new(Semaphore::new(options.concurrency.max(1))),
        tasks: JoinSet::new(),
        stats: DriftStats::default(),
        drift_changed: false,
    };
    for component in components {
        let generation = engine.id();
        let objects = (0..component.watched.members().len()).map(|_| engine.fresh_state()).collect();
        engine.components.push(ComponentState {
            name: component.name,
            policy: component.policy,
            rules: component.rules,
            watched: component.watched,
            generation,
            objects,
        });
    }
    engine.reindex()?;
    engine.rescope();
    engine.publish();
    tokio::spawn(engine.run());
    Ok(())
}

impl Engine {
    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn fresh_state(&mut self) -> ObjectState {
        ObjectState { epoch: self.id(), version: None, busy: false, pending: None, drift: None, ledger: Ledger::default(), timer: 0 }
    }

    async fn run(mut self) {
        let start = tokio::time::Instant::now() + self.resync_period;
        let mut tick = tokio::time::interval_at(start, self.resync_period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                command = self.channels.commands.recv() => match command {
                    None => break,
                    Some(Command::Stop { reply }) => {
                        let _ = reply.send(self.cache.clone());
                        break;
                    }
                    Some(command) => self.command(command),
                },
                Some(msg) = self.rx.recv() => self.message(msg),
                _ = tick.tick() => {
                    let running = self.batches.values().any(|b| matches!(b.kind, BatchKind::Resync { .. }));
                    if !running {
                        self.start_resync(false, None, None);
                    }
                }
                Some(joined) = self.tasks.join_next(), if !self.tasks.is_empty() => {
                    if let Err(e) = joined && e.is_panic() {
                        tracing::error!(error = %e, "a drift worker panicked");
                    }
                }
            }
            self.publish();
        }
        self.tasks.abort_all();
        tracing::debug!("the drift engine stopped");
    }

    /// Publishes the counters, and the drift when it changed.
    fn publish(&mut self) {
        self.stats.objects = self.components.iter().map(|c| c.objects.len()).sum();
        self.stats.watches = self.scopes.len();
        self.stats.ready =
            (!self.scopes.is_empty() && self.scopes.values().all(|s| s.ready)) || self.components.iter().all(|c| c.objects.is_empty());
        self.stats.in_flight = self.components.iter().flat_map(|c| &c.objects).filter(|o| o.busy).count();
        if self.drift_changed {
            self.drift_changed = false;
            let drifts: Vec<ObjectDrift> = self.components.iter().flat_map(|c| c.objects.iter().filter_map(|o| o.drift.clone())).collect();
            self.channels.drifts.send_replace(Arc::new(drifts));
        }
        if *self.channels.stats.borrow() != self.stats {
            self.channels.stats.send_replace(self.stats.clone());
        }
    }

    fn emit(&self, event: DriftEvent) {
        // No subscriber is not an error: the snapshot still has it.
        let _ = self.channels.events.send(event);
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Resync { uncached, reply } => self.start_resync(uncached, Some(reply), None),
            Command::Update { component, reply } => {
                let _ = reply.send(self.update(component));
            }
            Command::Stop { .. } => {}
        }
    }

    fn message(&mut self, msg: Msg) {
        match msg {
            Msg::Watch { scope, event } => self.watch_event(scope, *event),
            Msg::Diffed { key, epoch, live, result, tags } => self.diffed(key, epoch, live.map(|l| *l), result, tags),
            Msg::Applied { key, epoch, result } => self.applied(key, epoch, result.map(|v| *v)),
            Msg::Got { key, epoch, result, tags } => match result {
                Ok(live) if self.current(key, epoch) => {
                    let live = live.map(|l| *l);
                    let version = live.as_ref().map(|l| resource_version(l).to_owned());
                    self.observe(key, live, version, tags);
                }
                Ok(_) => self.complete(&tags),
                Err(e) => {
                    self.failed(key, &e);
                    self.complete(&tags);
                }
            },
            Msg::HealDue { key, epoch, timer } => self.heal_due(key, epoch, timer),
            Msg::Listed { batch, component, generation, result } => self.listed(batch, component, generation, result),
        }
    }

    // --- components, index and watches -------------------------------------------------

    /// Rebuilds the identity index; an object in two components is an error.
    fn reindex(&mut self) -> Result<(), DriftError> {
        let mut index: HashMap<Identity, Key> = HashMap::new();
        for (c, component) in self.components.iter().enumerate() {
            for (m, member) in component.watched.members().iter().enumerate() {
                if let Some(&(first, _)) = index.get(&member.identity) {
                    return Err(DriftError::Overlap {
                        object: member.object.clone(),
                        first: self.components[first].name.clone(),
                        second: component.name.clone(),
                    });
                }
                index.insert(member.identity.clone(), (c, m));
            }
        }
        self.index = index;
        Ok(())
    }

    /// Starts the watches the components need and stops those they no longer do.
    fn rescope(&mut self) {
        let mut wanted: BTreeMap<String, (Scope, Vec<Key>)> = BTreeMap::new();
        for (c, component) in self.components.iter().enumerate() {
            for (m, member) in component.watched.members().iter().enumerate() {
                let scope =
                    Scope { resource: member.resource.clone(), namespace: member.namespaced.then(|| member.identity.namespace.clone()) };
                wanted.entry(scope.key()).or_insert_with(|| (scope, Vec::new())).1.push((c, m));
            }
        }
        let gone: Vec<String> = self.scopes.keys().filter(|k| !wanted.contains_key(*k)).cloned().collect();
        for key in gone {
            if let Some(state) = self.scopes.remove(&key) {
                state.abort.abort();
                self.scope_ids.remove(&state.id);
                if let Some((batch, _)) = state.init {
                    self.batches.remove(&batch);
                }
            }
        }
        for (key, (scope, members)) in wanted {
            if let Some(state) = self.scopes.get_mut(&key) {
                state.members = members;
                continue;
            }
            let id = self.id();
            let abort = self.spawn_watch(id, &scope);
            self.scope_ids.insert(id, key.clone());
            self.scopes.insert(key, ScopeState { id, scope, abort, members, init: None, ready: false });
        }
    }

    fn spawn_watch(&mut self, id: u64, scope: &Scope) -> AbortHandle {
        let api = scope.api(&self.cluster);
        let tx = self.tx.clone();
        let what = scope.key();
        self.tasks.spawn(async move {
            let mut events = watcher::watcher(api, watcher::Config::default()).default_backoff().boxed();
            while let Some(event) = events.next().await {
                let event = event.map_err(|e| {
                    let text = watch_diff::watch_error(&e);
                    tracing::warn!(watch = %what, error = %text, "drift watch failed; retrying with backoff");
                    text
                });
                if tx.send(Msg::Watch { scope: id, event: Box::new(event) }).await.is_err() {
                    break;
                }
            }
        })
    }

    /// Replaces (or adds) a component; objects whose desired hash is unchanged keep their
    /// state.
    fn update(&mut self, prepared: Prepared) -> Result<(), DriftError> {
        let position = self.components.iter().position(|c| c.name == prepared.name);
        let mut seen = HashSet::new();
        for member in prepared.watched.members() {
            if !seen.insert(&member.identity) {
                return Err(DriftError::Overlap {
                    object: member.object.clone(),
                    first: prepared.name.clone(),
                    second: prepared.name.clone(),
                });
            }
            if let Some(&(c, _)) = self.index.get(&member.identity)
                && Some(c) != position
            {
                return Err(DriftError::Overlap {
                    object: member.object.clone(),
                    first: self.components[c].name.clone(),
                    second: prepared.name.clone(),
                });
            }
        }
        let mut keep: HashMap<Identity, (String, ObjectState)> = HashMap::new();
        let mut removed = Vec::new();
        if let Some(p) = position {
            let old = &mut self.components[p];
            let members = old.watched.members().to_vec();
            for (m, state) in std::mem::take(&mut old.objects).into_iter().enumerate() {
                let hash = old.watched.hash(m).to_owned();
                keep.insert(members[m].identity.clone(), (hash, state));
            }
        }
        let generation = self.id();
        let mut objects = Vec::with_capacity(prepared.watched.members().len());
        for (m, member) in prepared.watched.members().iter().enumerate() {
            let mut state = match keep.remove(&member.identity) {
                Some((hash, state)) if hash == prepared.watched.hash(m) => state,
                Some((_, state)) => {
                    removed.extend(state.drift);
                    self.fresh_state()
                }
                None => self.fresh_state(),
            };
            state.epoch = self.id();
            state.busy = false;
            state.pending = None;
            if let Some(drift) = state.drift.as_mut() {
                drift.policy = prepared.policy;
            }
            objects.push(state);
        }
        removed.extend(keep.into_values().filter_map(|(_, s)| s.drift));
        let component = ComponentState {
            name: prepared.name,
            policy: prepared.policy,
            rules: prepared.rules,
            watched: prepared.watched,
            generation,
            objects,
        };
        match position {
            Some(p) => self.components[p] = component,
            None => self.components.push(component),
        }
        self.reindex()?;
        for mut drift in removed {
            drift.state = DriftState::Resolved;
            self.emit(DriftEvent::Resolved(drift));
        }
        self.drift_changed = true;
        self.rescope();
        let c = position.unwrap_or(self.components.len() - 1);
        self.start_resync(false, None, Some(c));
        Ok(())
    }

    fn current(&self, key: Key, epoch: u64) -> bool {
        self.state(key).is_some_and(|s| s.epoch == epoch)
    }

    fn state(&self, key: Key) -> Option<&ObjectState> {
        self.components.get(key.0)?.objects.get(key.1)
    }

    fn state_mut(&mut self, key: Key) -> Option<&mut ObjectState> {
        self.components.get_mut(key.0)?.objects.get_mut(key.1)
    }

    // --- batches ------------------------------------------------------------------------

    fn add_to(&mut self, tags: &[u64]) {
        for tag in tags {
            if let Some(batch) = self.batches.get_mut(tag) {
                batch.outstanding += 1;
            }
        }
    }

    fn complete(&mut self, tags: &[u64]) {
        for tag in tags {
            let Some(batch) = self.batches.get_mut(tag) else { continue };
            batch.outstanding = batch.outstanding.saturating_sub(1);
            if batch.outstanding == 0
                && let Some(batch) = self.batches.remove(tag)
            {
                self.finish(batch);
            }
        }
    }

    fn finish(&mut self, batch: Batch) {
        match batch.kind {
            BatchKind::Init { scope } => {
                if let Some(state) = self.scopes.get_mut(&scope) {
                    state.ready = true;
                }
            }
            BatchKind::Resync { uncached, started, at, compared, cached, errors, reply } => {
                self.stats.resyncs += 1;
                let report = ResyncReport {
                    at,
                    uncached,
                    compared,
                    cached,
                    drifted: self.components.iter().flat_map(|c| &c.objects).filter(|o| o.drift.is_some()).count(),
                    took_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                    errors,
                };
                tracing::debug!(compared, cached, drifted = report.drifted, took_ms = report.took_ms, "drift resync done");
                self.emit(DriftEvent::Resynced(report.clone()));
                if let Some(reply) = reply {
                    let _ = reply.send(report);
                }
            }
        }
    }

    fn uncached(&self, tags: &[u64]) -> bool {
        tags.iter().any(|t| self.batches.get(t).is_some_and(|b| matches!(b.kind, BatchKind::Resync { uncached: true, .. })))
    }

    // --- watches ------------------------------------------------------------------------

    fn watch_event(&mut self, id: u64, event: Result<Event<DynamicObject>, String>) {
        let Some(scope_key) = self.scope_ids.get(&id).cloned() else { return };
        match event {
            Err(e) => {
                self.stats.watch_errors += 1;
                self.stats.last_watch_error = Some(format!("{scope_key}: {e}"));
            }
            Ok(Event::Init) => {
                let batch = self.id();
                self.batches.insert(batch, Batch { outstanding: 1, kind: BatchKind::Init { scope: scope_key.clone() } });
                if let Some(state) = self.scopes.get_mut(&scope_key)
                    && let Some((old, _)) = state.init.replace((batch, HashSet::new()))
                {
                    self.batches.remove(&old);
                }
            }
            Ok(Event::InitApply(object)) => {
                let Some((key, live)) = self.member_of(&scope_key, &object) else { return };
                let Some(batch) = self.scopes.get_mut(&scope_key).and_then(|s| s.init.as_mut()).map(|(batch, seen)| {
                    seen.insert(key);
                    *batch
                }) else {
                    return;
                };
                self.stats.watch_events += 1;
                let version = Some(resource_version(&live).to_owned());
                self.add_to(&[batch]);
                self.observe(key, Some(live), version, vec![batch]);
            }
            Ok(Event::InitDone) => {
                let Some(state) = self.scopes.get_mut(&scope_key) else { return };
                let Some((batch, seen)) = state.init.take() else { return };
                let missing: Vec<Key> = state.members.iter().copied().filter(|k| !seen.contains(k)).collect();
                for key in missing {
                    self.add_to(&[batch]);
                    self.observe(key, None, None, vec![batch]);
                }
                self.complete(&[batch]);
            }
            Ok(Event::Apply(object)) => {
                let Some((key, live)) = self.member_of(&scope_key, &object) else { return };
                self.stats.watch_events += 1;
                if let Some(lag) = super::report::watch_lag(&live, std::time::SystemTime::now()) {
                    let ms = u64::try_from(lag.as_millis()).unwrap_or(u64::MAX);
                    self.stats.watch_lag_ms = Some(ms);
                    self.stats.watch_lag_max_ms = self.stats.watch_lag_max_ms.max(ms);
                }
                let version = Some(resource_version(&live).to_owned());
                self.observe(key, Some(live), version, Vec::new());
            }
            Ok(Event::Delete(object)) => {
                let Some((key, live)) = self.member_of(&scope_key, &object) else { return };
                self.stats.watch_events += 1;
                let version = Some(resource_version(&live).to_owned());
                self.observe(key, None, version, Vec::new());
            }
        }
    }

    /// The key and JSON of a watched object that is a member; `None` for others.
    fn member_of(&self, scope_key: &str, object: &DynamicObject) -> Option<(Key, Value)> {
        let scope = &self.scopes.get(scope_key)?.scope;
        let key = *self.index.get(&scope.identity(object))?;
        Some((key, scope.value(object)?))
    }

    // --- observing and diffing ----------------------------------------------------------

    /// One observation of an object: `live` (`None`: it does not exist) at `version` (of
    /// the object, or of its deletion).
    fn observe(&mut self, key: Key, live: Option<Value>, version: Option<String>, tags: Vec<u64>) {
        self.observe_as(key, live, version, tags, false);
    }

    /// [`Engine::observe`]; `resumed` for an observation that waited for a request in
    /// flight (its version was recorded when it came, so it is no duplicate).
    fn observe_as(&mut self, key: Key, live: Option<Value>, version: Option<String>, tags: Vec<u64>, resumed: bool) {
        let uncached = self.uncached(&tags);
        let Some(component) = self.components.get(key.0) else { return self.complete(&tags) };
        let fresh = !uncached && live.as_ref().is_some_and(|l| component.watched.fresh(key.1, l, &self.cache));
        let Some(state) = self.state_mut(key) else { return self.complete(&tags) };
        if let (Some(new), Some(seen)) = (version.as_deref(), state.version.as_deref())
            && (older(new, seen) || (new == seen && tags.is_empty() && !resumed))
        {
            return self.complete(&tags);
        }
        if version.is_some() {
            state.version.clone_from(&version);
        }
        if live.as_ref().is_some_and(|l| l.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null())) {
            // Being deleted: its deletion event will say it is gone.
            return self.complete(&tags);
        }
        if state.busy {
            let mut merged = state.pending.take().map(|p| p.tags).unwrap_or_default();
            merged.extend(tags);
            state.pending = Some(Pending { live, version, tags: merged });
            return;
        }
        if fresh {
            self.stats.cache_hits += 1;
            for tag in &tags {
                if let Some(Batch { kind: BatchKind::Resync { cached, .. }, .. }) = self.batches.get_mut(tag) {
                    *cached += 1;
                }
            }
            self.in_sync(key);
            return self.complete(&tags);
        }
        self.start_diff(key, live, tags);
    }

    fn start_diff(&mut self, key: Key, live: Option<Value>, tags: Vec<u64>) {
        let Some(component) = self.components.get(key.0) else { return self.complete(&tags) };
        let watched = component.watched.clone();
        let Some(state) = self.state_mut(key) else { return self.complete(&tags) };
        state.busy = true;
        let epoch = state.epoch;
        if live.is_some() {
            self.stats.dry_runs += 1;
        }
        let (cluster, tx, semaphore) = (self.cluster.clone(), self.tx.clone(), self.semaphore.clone());
        self.tasks.spawn(async move {
            let Ok(_permit) = semaphore.acquire_owned().await else { return };
            let result = watched.diff_member(&cluster, key.1, live.as_ref()).await;
            let _ = tx.send(Msg::Diffed { key, epoch, live: live.map(Box::new), result, tags }).await;
        });
    }

    fn diffed(&mut self, key: Key, epoch: u64, live: Option<Value>, result: Result<MemberDiff, KubeError>, tags: Vec<u64>) {
        if !self.current(key, epoch) {
            return self.complete(&tags);
        }
        if let Some(state) = self.state_mut(key) {
            state.busy = false;
        }
        match result {
            Ok(diff) if diff.fields.is_empty() => {
                if diff.cacheable
                    && let Some(live) = &live
                {
                    let watched = self.components[key.0].watched.clone();
                    watched.record(key.1, resource_version(live), &mut self.cache);
                }
                self.in_sync(key);
            }
            Ok(diff) => {
                let fields = self.judge(key, &diff, live.as_ref());
                if fields.is_empty() {
                    self.in_sync(key);
                } else {
                    self.drifted(key, fields, diff.exists);
                }
            }
            Err(e) => self.failed(key, &e),
        }
        self.complete(&tags);
        self.resume(key);
    }

    /// Runs the observation that waited for the request in flight, if any.
    fn resume(&mut self, key: Key) {
        let Some(state) = self.state_mut(key) else { return };
        if state.busy {
            return;
        }
        if let Some(pending) = state.pending.take() {
            self.observe_as(key, pending.live, pending.version, pending.tags, true);
        }
    }

    fn failed(&mut self, key: Key, e: &KubeError) {
        self.stats.failures += 1;
        let Some(component) = self.components.get(key.0) else { return };
        let object = component.watched.members().get(key.1).map(|m| m.object.clone()).unwrap_or_default();
        let error = error_chain(e);
        tracing::warn!(component = %component.name, %object, %error, "failed to diff a managed object");
        self.emit(DriftEvent::Failed { component: component.name.clone(), object, error, at: SystemTime::now() });
    }

    /// The drifted fields with their managers, by the component's rules.
    fn judge(&self, key: Key, diff: &MemberDiff, live: Option<&Value>) -> Vec<DriftField> {
        let component = &self.components[key.0];
        let Some(member) = component.watched.members().get(key.1) else { return Vec::new() };
        let mut fields: Vec<DriftField> = diff
            .fields
            .iter()
            .filter_map(|field| {
                let attribution = live.and_then(|l| managers::attribute(l, &field.path, FIELD_MANAGER));
                let manager = attribution.as_ref().map(|a| a.manager.as_str());
                let report_only = match rules::verdict(&component.rules, &member.identity, &field.path, manager) {
                    Verdict::Ignored => return None,
                    Verdict::ReportOnly => true,
                    Verdict::Drift => false,
                };
                Some(DriftField {
                    path: field.path.clone(),
                    live: field.live.clone(),
                    desired: field.desired.clone(),
                    manager: attribution.as_ref().map(|a| a.manager.clone()),
                    evidence: attribution.map(|a| a.evidence),
                    report_only,
                })
            })
            .collect();
        // A Secret's values never reach an event, the history or an API answer.
        if member.api_version == "v1" {
            let kind = member.object.split(' ').next().unwrap_or_default();
            super::report::redact_fields(kind, &mut fields);
        }
        fields
    }

    fn in_sync(&mut self, key: Key) {
        let Some(state) = self.state_mut(key) else { return };
        state.timer += 1;
        if let Some(mut drift) = state.drift.take() {
            drift.state = DriftState::Resolved;
            drift.detected_at = SystemTime::now();
            self.drift_changed = true;
            tracing::debug!(object = %drift.object, "drift resolved");
            self.emit(DriftEvent::Resolved(drift));
        }
    }

    fn drifted(&mut self, key: Key, fields: Vec<DriftField>, exists: bool) {
        let now = Instant::now();
        let wall = SystemTime::now();
        let limits = self.limits;
        let component = &self.components[key.0];
        let policy = component.policy;
        let name = component.name.clone();
        let Some(member) = component.watched.members().get(key.1).cloned() else { return };
        let Some(state) = self.state_mut(key) else { return };
        let reverters = fields.iter().map(|f| (f.path.as_str(), f.manager.as_deref()));
        let became = state.ledger.drift_seen(now, reverters, FIELD_MANAGER, &limits);
        let next = state.ledger.next(now, &limits);
        let (drift_state, heal_at) = match (policy, next) {
            (Policy::Report, _) => (DriftState::Reported, None),
            (_, Next::Contested) => (DriftState::Contested, None),
            _ if fields.iter().any(|f| f.report_only) => (DriftState::Held, None),
            (_, Next::Now) => (DriftState::Healing, Some(now)),
            (_, Next::At(at)) => (DriftState::Healing, Some(at)),
            (_, Next::Capped(at)) => (DriftState::RateLimited, Some(at)),
        };
        let previous = state.drift.take();
        let changed = previous.as_ref().is_none_or(|p| p.fields != fields || p.exists != exists);
        let drift = ObjectDrift {
            component: name,
            object: member.object.clone(),
            api_version: member.api_version.clone(),
            kind: member.identity.kind.clone(),
            namespace: member.identity.namespace.clone(),
            name: member.identity.name.clone(),
            exists,
            manager: fields.iter().find_map(|f| f.manager.clone()),
            fields,
            detected_at: if changed { wall } else { previous.as_ref().map_or(wall, |p| p.detected_at) },
            since: previous.as_ref().map_or(wall, |p| p.since),
            state: drift_state,
            policy,
            heals: state.ledger.heals(now, &limits),
            contested: if drift_state == DriftState::Contested { state.ledger.contests() } else { Vec::new() },
        };
        state.drift = Some(drift.clone());
        state.timer += 1;
        let timer = state.timer;
        let (epoch, busy) = (state.epoch, state.busy);
        self.drift_changed = true;
        if became {
            self.stats.contested += 1;
            tracing::info!(object = %drift.object, contested = ?drift.contested, "drift contested: healing stops");
            self.emit(DriftEvent::Contested(drift));
        } else if changed {
            self.stats.detected += 1;
            tracing::info!(object = %drift.object, manager = ?drift.manager, fields = drift.fields.len(), state = ?drift.state, "drift detected");
            self.emit(DriftEvent::Detected(drift));
        }
        match heal_at {
            Some(at) if at <= now && !busy => self.start_heal(key),
            Some(at) => {
                let tx = self.tx.clone();
                self.tasks.spawn(async move {
                    tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
                    let _ = tx.send(Msg::HealDue { key, epoch, timer }).await;
                });
            }
            None => {}
        }
    }

    // --- healing ------------------------------------------------------------------------

    fn heal_due(&mut self, key: Key, epoch: u64, timer: u64) {
        let limits = self.limits;
        let Some(state) = self.state_mut(key) else { return };
        if state.epoch != epoch || state.timer != timer || state.busy || state.drift.is_none() {
            return;
        }
        match state.ledger.next(Instant::now(), &limits) {
            Next::Now => self.start_heal(key),
            _ => {
                // Early by a hair: decide again.
                if let Some((fields, exists)) = state.drift.as_ref().map(|d| (d.fields.clone(), d.exists)) {
                    self.drifted(key, fields, exists);
                }
            }
        }
    }

    fn start_heal(&mut self, key: Key) {
        let Some(component) = self.components.get(key.0) else { return };
        let watched = component.watched.clone();
        let Some(state) = self.state_mut(key) else { return };
        state.busy = true;
        let epoch = state.epoch;
        let (cluster, tx, semaphore) = (self.cluster.clone(), self.tx.clone(), self.semaphore.clone());
        self.tasks.spawn(async move {
            let Ok(_permit) = semaphore.acquire_owned().await else { return };
            let result = watched.apply_member(&cluster, key.1).await.map(Box::new);
            let _ = tx.send(Msg::Applied { key, epoch, result }).await;
        });
    }

    fn applied(&mut self, key: Key, epoch: u64, result: Result<Value, KubeError>) {
        if !self.current(key, epoch) {
            return;
        }
        let now = Instant::now();
        let limits = self.limits;
        let watched = self.components[key.0].watched.clone();
        match result {
            Ok(answer) => {
                let version = resource_version(&answer).to_owned();
                watched.record(key.1, &version, &mut self.cache);
                self.stats.heals += 1;
                let Some(state) = self.state_mut(key) else { return };
                state.busy = false;
                state.ledger.attempted(now, true, &limits);
                state.version = Some(version);
                state.timer += 1;
                let heals = state.ledger.heals(now, &limits);
                if let Some(mut drift) = state.drift.take() {
                    drift.state = DriftState::Healed;
                    drift.heals = heals;
                    drift.detected_at = SystemTime::now();
                    self.drift_changed = true;
                    tracing::info!(object = %drift.object, heals, "drift healed");
                    self.emit(DriftEvent::Healed(drift));
                }
            }
            Err(e) => {
                watched.forget(key.1, &mut self.cache);
                self.stats.heal_failures += 1;
                let error = error_chain(&e);
                let Some(state) = self.state_mut(key) else { return };
                state.busy = false;
                state.ledger.attempted(now, false, &limits);
                if let Some((fields, exists)) = state.drift.as_ref().map(|d| (d.fields.clone(), d.exists)) {
                    // Decide the next attempt, then tell with the state that came of it.
                    self.drifted(key, fields, exists);
                    if let Some(drift) = self.state(key).and_then(|s| s.drift.clone()) {
                        tracing::warn!(object = %drift.object, %error, "heal failed");
                        self.emit(DriftEvent::HealFailed { drift, error });
                    }
                }
            }
        }
        self.resume(key);
    }

    // --- resync -------------------------------------------------------------------------

    /// Starts a resync of every component (or only of `only`).
    fn start_resync(&mut self, uncached: bool, reply: Option<oneshot::Sender<ResyncReport>>, only: Option<usize>) {
        let batch = self.id();
        let targets: Vec<usize> = match only {
            Some(c) => vec![c],
            None => (0..self.components.len()).collect(),
        };
        let kind = BatchKind::Resync {
            uncached,
            started: Instant::now(),
            at: SystemTime::now(),
            compared: 0,
            cached: 0,
            errors: Vec::new(),
            reply,
        };
        self.batches.insert(batch, Batch { outstanding: targets.len() + 1, kind });
        for c in targets {
            let component = &self.components[c];
            let (watched, generation) = (component.watched.clone(), component.generation);
            let (cluster, tx) = (self.cluster.clone(), self.tx.clone());
            self.tasks.spawn(async move {
                let result = watched.live(&cluster).await;
                let _ = tx.send(Msg::Listed { batch, component: c, generation, result }).await;
            });
        }
        self.complete(&[batch]);
    }

    fn listed(&mut self, batch: u64, c: usize, generation: u64, result: Result<HashMap<Identity, Value>, KubeError>) {
        let Some(component) = self.components.get(c).filter(|comp| comp.generation == generation) else { return self.complete(&[batch]) };
        let name = component.name.clone();
        let watched = component.watched.clone();
        match result {
            Err(e) => {
                if let Some(Batch { kind: BatchKind::Resync { errors, .. }, .. }) = self.batches.get_mut(&batch) {
                    errors.push(format!("component {name}: {}", error_chain(&e)));
                }
            }
            Ok(mut live) => {
                for (m, member) in watched.members().iter().enumerate() {
                    if let Some(Batch { kind: BatchKind::Resync { compared, .. }, .. }) = self.batches.get_mut(&batch) {
                        *compared += 1;
                    }
                    let key = (c, m);
                    let Some(epoch) = self.state(key).map(|s| s.epoch) else { continue };
                    self.add_to(&[batch]);
                    match live.remove(&member.identity) {
                        Some(value) => {
                            let version = Some(resource_version(&value).to_owned());
                            self.observe(key, Some(value), version, vec![batch]);
                        }
                        None => {
                            // The LIST may be older than what the watch saw: ask before
                            // calling it missing.
                            let (cluster, tx, semaphore, watched) =
                                (self.cluster.clone(), self.tx.clone(), self.semaphore.clone(), watched.clone());
                            self.tasks.spawn(async move {
                                let Ok(_permit) = semaphore.acquire_owned().await else { return };
                                let result = watched.get(&cluster, m).await.map(|o| o.map(Box::new));
                                let _ = tx.send(Msg::Got { key, epoch, result, tags: vec![batch] }).await;
                            });
                        }
                    }
                }
            }
        }
        self.complete(&[batch]);
    }
}

/// The `resourceVersion` of an object as JSON; empty when it has none.
fn resource_version(value: &Value) -> &str {
    value.pointer("/metadata/resourceVersion").and_then(Value::as_str).unwrap_or_default()
}

/// Whether version `a` is older than `b`: only when both are integers (etcd's are).
fn older(a: &str, b: &str) -> bool {
    matches!((a.parse::<u64>(), b.parse::<u64>()), (Ok(a), Ok(b)) if a < b)
}

use idp_core::diag::chain as error_chain;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_integer_versions_are_ordered() {
        assert!(older("9", "10"));
        assert!(!older("10", "9"));
        assert!(!older("10", "10"));
        assert!(!older("a", "b"), "opaque versions are never older");
        assert!(!older("", "5"));
    }

    #[test]
    fn error_chains_leave_out_what_is_quoted() {
        #[derive(Debug, thiserror::Error)]
        #[error("{0}")]
        struct E(&'static str, #[source] Option<Box<E>>);
        let e = E("outer: inner", Some(Box::new(E("inner", Some(Box::new(E("root", None)))))));
        assert_eq!(error_chain(&e), "outer: inner: root");
    }
}
