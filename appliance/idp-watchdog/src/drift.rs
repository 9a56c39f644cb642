//! Drift: the watchdog keeps what idp-lab applied the way idp-lab applied it.
//!
//! [`Drift::start`] takes the managed components, each with its desired objects, the
//! [`ApplyOptions`] it is applied with, a [`Policy`] (`report` or `heal`) and
//! [`IgnoreRule`]s, and runs one actor task that owns all state:
//!
//! * **Watches.** One kube-runtime `watcher` per kind and namespace of the components'
//!   objects (per cluster-scoped kind: everywhere): the kinds and namespaces an apply
//!   set's parent lists after `idp-lab apply --prune`. A watch event on a managed object
//!   re-diffs **that object alone**; other objects' events are dropped at once.
//! * **The diff is the apply engine's** ([`idp_kube::watch_diff`]): an event whose object's
//!   input hash and `resourceVersion` are what the last apply (or heal, or in-sync diff)
//!   left is known in sync from the [`ApplyCache`] and costs nothing; any other is sent as
//!   a server-side-apply dry-run and compared by Flux's rule ([`idp_core::drift`]). Status,
//!   server defaults, server-owned metadata and the labels and annotations other managers
//!   add are therefore never drift (the reference's §7a): the dry-run has them on both
//!   sides.
//! * **A full resync** every [`DriftOptions::resync`] (10 min by default), and on
//!   [`DriftHandle::resync`]: one LIST per kind and namespace, each object through the
//!   same path, so a missed event is caught.
//! * **Managers.** Each drifted field names the field manager that changed it, from the
//!   live object's `managedFields` ([`managers`]).
//! * **Heal** (policy `heal`): the object is re-applied as `apply` does (server-side apply,
//!   field manager `idp-lab`, force), at once the first time, then with exponential
//!   backoff, at most [`DriftOptions::heal_limit`] times per [`DriftOptions::heal_window`]
//!   ([`ledger`]).
//! * **Contested.** A field that another manager sets back after [`DriftOptions::contested_after`]
//!   heals within [`DriftOptions::contested_window`] is reported `contested`, naming the
//!   manager, and the object is no longer healed (a heal re-applies the whole object, so
//!   it cannot leave one field out) until its desired object changes
//!   ([`DriftHandle::update`]).
//! * **Ignore rules** by kind, field path and manager ([`rules`]).
//!
//! The handle gives the events ([`DriftHandle::subscribe`]), the drift now
//! ([`DriftHandle::snapshot`]) and counters ([`DriftHandle::stats`]). Every type the
//! handle gives is serde-serialisable ([`report`]).
//!
//! Known limits: a heal re-applies the whole object, so an ignored field changed together
//! with a healed one is restored too (as Argo CD does without `RespectIgnoreDifferences`);
//! objects whose kind is not served when the engine starts are refused, not waited for.

mod engine;
pub mod ledger;
pub mod managers;
pub mod report;
pub mod rules;

use std::sync::Arc;
use std::time::Duration;

use idp_core::objects::Object;
use idp_kube::{ApplyCache, ApplyOptions, Cluster, KubeError};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

pub use managers::{Attribution, Evidence};
pub use report::{Contest, DriftEvent, DriftField, DriftState, DriftStats, ObjectDrift, ResyncReport};
pub use rules::{IgnoreRule, Policy, RuleError};

use engine::{Command, Prepared};

/// One managed component: what idp-lab applied, how, and what to do about its drift.
#[derive(Debug, Clone)]
pub struct Component {
    /// The component's name (what `idp-lab.dev/component` says).
    pub name: String,
    /// Its desired objects, as given to [`Cluster::apply`].
    pub objects: Vec<Object>,
    /// The options it is applied with (lab, component label, namespace, apply set).
    pub options: ApplyOptions,
    /// Report only, or heal too.
    pub policy: Policy,
    /// Drift that is not reported (or not healed).
    pub ignore: Vec<IgnoreRule>,
}

impl Component {
    /// A component named `name` with policy `heal` and no ignore rules.
    pub fn new(name: &str, objects: Vec<Object>, options: ApplyOptions) -> Component {
        Component { name: name.to_owned(), objects, options, policy: Policy::Heal, ignore: Vec::new() }
    }
}

/// How the engine runs.
#[derive(Debug, Clone)]
pub struct DriftOptions {
    /// The period of the full resync.
    pub resync: Duration,
    /// Dry-runs and heals in flight at once (at least 1).
    pub concurrency: usize,
    /// The wait after the first heal of an object in the window; it doubles per heal.
    pub heal_backoff: Duration,
    /// The longest wait between two heals of an object.
    pub heal_backoff_max: Duration,
    /// Heals per object per [`DriftOptions::heal_window`].
    pub heal_limit: usize,
    /// The window of the rate cap.
    pub heal_window: Duration,
    /// How many heals another manager must set a field back within
    /// [`DriftOptions::contested_window`] for it to be contested.
    pub contested_after: usize,
    /// The window reverts are counted in.
    pub contested_window: Duration,
    /// The apply cache to start from (the one `Cluster::apply` left, so that a start after
    /// an apply sends no dry-run); [`DriftHandle::stop`] gives it back.
    pub cache: ApplyCache,
    /// Events buffered for a slow subscriber before it misses some.
    pub event_buffer: usize,
}

impl Default for DriftOptions {
    /// A resync every 10 min, 4 requests in flight, heals backing off from 1 s to 5 min,
    /// at most 5 per object per 10 min, contested after 3 reverts in 10 min.
    fn default() -> DriftOptions {
        DriftOptions {
            resync: Duration::from_secs(600),
            concurrency: 4,
            heal_backoff: Duration::from_secs(1),
            heal_backoff_max: Duration::from_secs(300),
            heal_limit: 5,
            heal_window: Duration::from_secs(600),
            contested_after: 3,
            contested_window: Duration::from_secs(600),
            cache: ApplyCache::default(),
            event_buffer: 1024,
        }
    }
}

impl DriftOptions {
    fn limits(&self) -> ledger::Limits {
        ledger::Limits {
            backoff: self.heal_backoff,
            backoff_max: self.heal_backoff_max,
            heal_limit: self.heal_limit,
            heal_window: self.heal_window,
            contested_after: self.contested_after,
            contested_window: self.contested_window,
        }
    }
}

/// What went wrong starting or driving the engine.
#[derive(Debug, thiserror::Error)]
pub enum DriftError {
    /// An ignore rule of a component does not make sense.
    #[error("ignore rule {index} of component {component} is invalid")]
    Rule {
        /// The component.
        component: String,
        /// The rule's index among the component's rules, from 0.
        index: usize,
        /// What is wrong with it.
        #[source]
        source: RuleError,
    },
    /// A component's objects could not be prepared (input problems, kinds not served, the
    /// API server unreachable).
    #[error("failed to prepare component {component} for watching")]
    Prepare {
        /// The component.
        component: String,
        /// Why.
        #[source]
        source: KubeError,
    },
    /// The apply cache could not be bound to the cluster.
    #[error("failed to read the cluster's identity for the apply cache")]
    Cache(#[source] KubeError),
    /// Two components are given the same name.
    #[error("component {0} is given twice")]
    DuplicateComponent(String),
    /// One object belongs to two components.
    #[error("{object} belongs to component {first} and to component {second}; an object is healed by one component only")]
    Overlap {
        /// The object.
        object: String,
        /// The component that has it.
        first: String,
        /// The component that was to have it too.
        second: String,
    },
    /// The engine did not list and compare every object in time.
    #[error("the drift engine was not ready after {} s (its watches have not all listed their objects; see stats)", waited.as_secs())]
    NotReady {
        /// How long it was waited.
        waited: Duration,
    },
    /// The engine has stopped.
    #[error("the drift engine has stopped")]
    Stopped,
}

/// The drift engine; [`Drift::start`] runs it.
#[derive(Debug)]
pub struct Drift;

/// A running drift engine. Dropping it (and every clone of its senders, that is: it) stops
/// the engine; [`DriftHandle::stop`] does too, and gives back the apply cache.
#[derive(Debug)]
pub struct DriftHandle {
    cluster: Cluster,
    commands: mpsc::Sender<Command>,
    events: broadcast::Sender<DriftEvent>,
    drifts: watch::Receiver<Arc<Vec<ObjectDrift>>>,
    stats: watch::Receiver<DriftStats>,
}

impl Drift {
    /// Starts watching `components` on `cluster`; see the module docs. Returns once every
    /// component is prepared and its watches are started (not yet listed: see
    /// [`DriftHandle::ready`]).
    ///
    /// Errors: [`DriftError::Rule`], [`DriftError::DuplicateComponent`] and
    /// [`DriftError::Overlap`] for what the components get wrong, [`DriftError::Prepare`]
    /// and [`DriftError::Cache`] when the cluster cannot be asked.
    pub async fn start(cluster: Cluster, components: Vec<Component>, options: DriftOptions) -> Result<DriftHandle, DriftError> {
        let mut names = std::collections::BTreeSet::new();
        for component in &components {
            if !names.insert(component.name.clone()) {
                return Err(DriftError::DuplicateComponent(component.name.clone()));
            }
        }
        let prepared = futures::future::join_all(components.into_iter().map(|c| prepare(&cluster, c))).await;
        let prepared = prepared.into_iter().collect::<Result<Vec<_>, _>>()?;
        let mut cache = options.cache.clone();
        cluster.bind_cache(&mut cache).await.map_err(DriftError::Cache)?;
        let (commands, receiver) = mpsc::channel(64);
        let (events, _) = broadcast::channel(options.event_buffer.max(16));
        let (drifts_tx, drifts) = watch::channel(Arc::new(Vec::new()));
        let (stats_tx, stats) = watch::channel(DriftStats::default());
        let channels = engine::Channels { commands: receiver, events: events.clone(), drifts: drifts_tx, stats: stats_tx };
        engine::spawn(cluster.clone(), prepared, &options, cache, channels)?;
        Ok(DriftHandle { cluster, commands, events, drifts, stats })
    }
}

/// Checks a component's rules and prepares its objects.
async fn prepare(cluster: &Cluster, component: Component) -> Result<Prepared, DriftError> {
    let rules = component
        .ignore
        .iter()
        .enumerate()
        .map(|(index, rule)| rule.compile().map_err(|source| DriftError::Rule { component: component.name.clone(), index, source }))
        .collect::<Result<Vec<_>, _>>()?;
    let watched = cluster
        .watched(component.objects, &component.options)
        .await
        .map_err(|source| DriftError::Prepare { component: component.name.clone(), source })?;
    Ok(Prepared { name: component.name, policy: component.policy, rules, watched: Arc::new(watched) })
}

impl DriftHandle {
    /// Every event from now on. A subscriber that falls more than
    /// [`DriftOptions::event_buffer`] events behind misses the oldest (the receiver says
    /// how many); [`DriftHandle::snapshot`] always has the current drift.
    pub fn subscribe(&self) -> broadcast::Receiver<DriftEvent> {
        self.events.subscribe()
    }

    /// The objects drifted now, in component and apply order (contested and rate-limited
    /// ones included).
    pub fn snapshot(&self) -> Vec<ObjectDrift> {
        self.drifts.borrow().as_ref().clone()
    }

    /// The counters now.
    pub fn stats(&self) -> DriftStats {
        self.stats.borrow().clone()
    }

    /// Waits until every watch has listed its objects and each was compared (the initial
    /// full check), for at most `timeout`.
    pub async fn ready(&self, timeout: Duration) -> Result<(), DriftError> {
        let mut stats = self.stats.clone();
        match tokio::time::timeout(timeout, stats.wait_for(|s| s.ready)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(DriftError::Stopped),
            Err(_) => Err(DriftError::NotReady { waited: timeout }),
        }
    }

    /// Resolves once the initial full check is done ([`DriftHandle::ready`] without a
    /// timeout, owning what it waits on, so a task can wait while the handle is used);
    /// false when the engine stopped first.
    pub fn when_ready(&self) -> impl std::future::Future<Output = bool> + Send + 'static {
        let mut stats = self.stats.clone();
        async move { stats.wait_for(|s| s.ready).await.is_ok() }
    }

    /// Runs a full resync now and returns what it found, once every object is compared.
    /// With `uncached`, the cache is passed over: every object that exists is dry-run.
    pub async fn resync(&self, uncached: bool) -> Result<ResyncReport, DriftError> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(Command::Resync { uncached, reply }).await.map_err(|_| DriftError::Stopped)?;
        answer.await.map_err(|_| DriftError::Stopped)
    }

    /// Replaces the desired objects, policy and rules of the component of that name (or
    /// adds it). Objects whose desired object changed start afresh: their heal history
    /// goes, and with it a contested state. Watches follow the new kinds and namespaces;
    /// the component's objects are compared again.
    pub async fn update(&self, component: Component) -> Result<(), DriftError> {
        let prepared = prepare(&self.cluster, component).await?;
        let (reply, answer) = oneshot::channel();
        self.commands.send(Command::Update { component: prepared, reply }).await.map_err(|_| DriftError::Stopped)?;
        answer.await.map_err(|_| DriftError::Stopped)?
    }

    /// Stops the engine (its watches, and the requests in flight) and gives back the apply
    /// cache as it learnt it. [`DriftError::Stopped`] when it had stopped already.
    pub async fn stop(&self) -> Result<ApplyCache, DriftError> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(Command::Stop { reply }).await.map_err(|_| DriftError::Stopped)?;
        answer.await.map_err(|_| DriftError::Stopped)
    }
}
