//! The watchdog in the daemon: its history, held open here for the daemon's life (the
//! state store's short-open rule is for the CLI's records), and its playbooks, with the
//! Alertmanager webhook receiver on the lab network's gateway address, where an
//! in-cluster Alertmanager reaches it (`POST /alerts`).
//!
//! The receiver starts once `up` recorded the lab network (as the registry does, see
//! [`crate::network`]) and at every reload; a port held by another program is a warning.
//! History answers the control socket's `GET /history?since=SECONDS`.
//! Drift detection and the SLO loop ([`crate::slo`]) restart with the lab's kubeconfig at
//! the daemon's start and every reload.
//!
//! A history that does not open (damaged, or locked by a second process) does not stop
//! the daemon: the rest of the lab works; the error is logged, kept, and shown in every
//! `history` answer with how to recover.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use idp_core::config::{Action, Playbook, Trigger};
use idp_core::settings::WatchdogSettings;
use idp_kube::Cluster;
use idp_watchdog::{
    Cause, Drift, DriftEvent, DriftHandle, DriftOptions, Engine, Event, EventKind, History, ObjectDrift, Policy, Retention,
};

use crate::executor::{LabEngine, LabExecutor};
use tokio::net::TcpListener;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::components::recorded_components;
use crate::{DaemonError, Listener};

/// The history's sled database in the lab's state directory.
pub const HISTORY_DIR: &str = "watchdog.sled";

/// The receiver's port on the gateway address when `watchdog.receiver_port` is `auto`
/// (each lab has its own gateway address, so labs never share it).
pub const RECEIVER_PORT: u16 = 9095;

/// Where the SLO loop keeps its last tick's report.
type SloReport = Arc<std::sync::Mutex<Option<crate::slo::TickReport>>>;

/// How often the history's retention is enforced besides on writes.
const COMPACT_EVERY: Duration = Duration::from_secs(300);

/// What the daemon runs the watchdog with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchdogPlan {
    /// `[watchdog]`, typed.
    pub settings: WatchdogSettings,
    /// The receiver's port on the gateway address.
    pub receiver_port: u16,
}

/// The watchdog of a running daemon.
pub(crate) struct LabWatchdog {
    dir: PathBuf,
    lab: String,
    plan: WatchdogPlan,
    drift: Mutex<Option<(DriftHandle, JoinHandle<()>)>>,
    /// The SLO loop ([`crate::slo`]) and where it keeps its last tick's report.
    slos: Mutex<Option<(JoinHandle<()>, SloReport)>>,
    /// The health loop ([`crate::health`]) and what it remembers across restarts.
    health: Mutex<Option<JoinHandle<()>>>,
    health_memory: crate::health::Shared,
    history: Result<Arc<History>, String>,
    /// The playbooks but the drift engine's `heal-drift` ([`split_heal_drift`]).
    engine: Option<Arc<LabEngine>>,
    executor: LabExecutor,
    /// The `heal-drift` playbook, which the drift engine runs.
    heal_drift: Option<Playbook>,
    receiver: Mutex<Option<(SocketAddr, JoinHandle<()>)>>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

impl LabWatchdog {
    /// Opens the history (on the blocking pool) and makes the playbook engine.
    pub(crate) async fn open(dir: &Path, lab: &str, plan: WatchdogPlan, shutdown: CancellationToken) -> LabWatchdog {
        let path = dir.join(HISTORY_DIR);
        let retention = Retention::of(&plan.settings);
        let opened = tokio::task::spawn_blocking(move || History::open(&path, retention)).await;
        let history = match opened {
            Ok(Ok(history)) => Ok(Arc::new(history)),
            Ok(Err(e)) => Err(crate::network::chain(&e)),
            Err(e) => Err(format!("the history did not open: {e}")),
        };
        if let Err(e) = &history {
            tracing::error!(error = %e, "watchdog: no history (the rest of the lab works)");
        }
        let executor = LabExecutor::new(dir, lab);
        let (heal_drift, playbooks) = split_heal_drift(plan.settings.playbooks.clone());
        let engine = history.as_ref().ok().map(|h| Arc::new(Engine::new(playbooks, h.clone(), executor.clone())));
        let watchdog = LabWatchdog {
            dir: dir.to_owned(),
            lab: lab.to_owned(),
            plan,
            drift: Mutex::new(None),
            slos: Mutex::new(None),
            health: Mutex::new(None),
            health_memory: crate::health::Shared::default(),
            history,
            engine,
            executor,
            heal_drift,
            receiver: Mutex::new(None),
            tasks: TaskTracker::new(),
            shutdown,
        };
        if let Ok(history) = &watchdog.history {
            let history = history.clone();
            let token = watchdog.shutdown.child_token();
            watchdog.tasks.spawn(async move {
                loop {
                    tokio::select! {
                        () = token.cancelled() => break,
                        () = tokio::time::sleep(COMPACT_EVERY) => {}
                    }
                    let h = history.clone();
                    match tokio::task::spawn_blocking(move || h.compact()).await {
                        Ok(Err(e)) => tracing::warn!(error = %e, "watchdog: compacting the history failed"),
                        Err(e) => tracing::warn!(error = %e, "watchdog: compacting the history failed"),
                        Ok(Ok(_)) => {}
                    }
                }
            });
        }
        watchdog
    }

    /// Starts the Alertmanager receiver on the gateway address when it is known and the
    /// receiver is not serving; a warning when the port cannot be bound.
    pub(crate) async fn ensure_started(&self) -> Vec<String> {
        let (Some(engine), Some(gateway)) = (&self.engine, crate::network::read_network(&self.dir)) else { return Vec::new() };
        match self.ensure_receiver(engine.clone(), gateway).await {
            Ok(()) => Vec::new(),
            Err(e) => {
                tracing::warn!(error = %e, "watchdog: no Alertmanager receiver (tried again on the next reload)");
                vec![e.to_string()]
            }
        }
    }

    async fn ensure_receiver(&self, engine: Arc<LabEngine>, gateway: IpAddr) -> Result<(), DaemonError> {
        let listen = SocketAddr::new(gateway, self.plan.receiver_port);
        let mut running = self.receiver.lock().await;
        if let Some((at, task)) = running.as_ref()
            && !task.is_finished()
        {
            if *at == listen {
                return Ok(());
            }
            task.abort();
        }
        let listener = match TcpListener::bind(listen).await {
            Ok(listener) => listener,
            Err(e) if e.kind() == std::io::ErrorKind::AddrNotAvailable => return Ok(()),
            Err(source) => return Err(DaemonError::Bind { what: "the Alertmanager receiver", address: listen, source }),
        };
        let token = self.shutdown.child_token();
        let task = tokio::spawn(serve_receiver(listener, engine, token));
        *running = Some((listen, task));
        tracing::info!(address = %listen, "watchdog: the Alertmanager receiver is serving");
        Ok(())
    }

    /// (Re)starts drift detection over the recorded components on `cluster` (the daemon's
    /// start and every reload, with a fresh kubeconfig); every event is recorded in the
    /// history. No component recorded: nothing runs.
    pub(crate) async fn restart_drift(&self, cluster: Cluster) -> Result<usize, DaemonError> {
        let mut running = self.drift.lock().await;
        let mut cache = idp_kube::ApplyCache::default();
        if let Some((handle, recorder)) = running.take() {
            cache = handle.stop().await.unwrap_or_default();
            recorder.abort();
        }
        let mut components = recorded_components(&self.dir, &self.lab);
        if components.is_empty() {
            return Ok(0);
        }
        for component in &mut components {
            if !heals(self.heal_drift.as_ref(), &component.name) {
                component.policy = Policy::Report;
            }
        }
        let count = components.len();
        let objects: usize = components.iter().map(|c| c.objects.len()).sum();
        let options = DriftOptions { resync: self.plan.settings.resync, cache, ..DriftOptions::default() };
        let handle = Drift::start(cluster, components, options)
            .await
            .map_err(|e| DaemonError::Kube { reason: format!("drift detection did not start: {}", crate::network::chain(&e)) })?;
        let mut events = handle.subscribe();
        let history = self.history.clone().ok();
        let engine = self.engine.clone();
        let heal_drift = self.heal_drift.clone();
        let token = self.shutdown.child_token();
        let ready = handle.when_ready();
        let started = std::time::Instant::now();
        self.tasks.spawn(async move {
            if ready.await {
                tracing::info!(objects, took_ms = started.elapsed().as_millis() as u64, "watchdog: first comparison done");
            }
        });
        let recorder = tokio::spawn(async move {
            loop {
                let event = tokio::select! {
                    () = token.cancelled() => break,
                    received = events.recv() => match received {
                        Ok(event) => event,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                            tracing::warn!(missed = n, "watchdog: drift events were missed by the history");
                            continue;
                        }
                        Err(_) => break,
                    },
                };
                if matches!(event, DriftEvent::Resynced(_)) {
                    continue;
                }
                let subject = event.object().unwrap_or("drift").to_owned();
                let body = serde_json::to_value(&event).unwrap_or_default();
                tracing::info!(object = %subject, event = %body["event"], "watchdog: drift");
                let mut records = vec![Event::new(SystemTime::now(), EventKind::Drift, subject, body)];
                records.extend(heal_drift.as_ref().and_then(|p| heal_run(p, &event)).map(|run| run.event()));
                if let Some(history) = &history {
                    let history = history.clone();
                    let _ = tokio::task::spawn_blocking(move || records.iter().try_for_each(|r| history.record(r))).await;
                }
                // Drift is a cause for the playbooks a user adds (`heal-drift` is the drift engine's).
                if let (Some(engine), DriftEvent::Detected(drift) | DriftEvent::Contested(drift)) = (&engine, &event) {
                    let engine = engine.clone();
                    let cause = Cause::Drift {
                        component: drift.component.clone(),
                        object: drift.object.clone(),
                        fields: drift.fields.iter().map(|f| f.path.clone()).collect(),
                    };
                    tokio::spawn(async move { engine.handle(&cause).await });
                }
            }
        });
        *running = Some((handle, recorder));
        tracing::info!(components = count, "watchdog: watching for drift");
        Ok(count)
    }

    /// (Re)starts the health loop on `cluster` ([`crate::health`]; the daemon's start and
    /// every reload), and gives the playbooks' executor the cluster.
    pub(crate) async fn restart_health(&self, cluster: Cluster) {
        self.executor.set_cluster(cluster.clone());
        let mut running = self.health.lock().await;
        if let Some(task) = running.take() {
            task.abort();
        }
        let health = crate::health::HealthLoop {
            lab: self.lab.clone(),
            cluster,
            components: recorded_components(&self.dir, &self.lab),
            history: self.history.clone().ok(),
            engine: self.engine.clone(),
            shared: self.health_memory.clone(),
        };
        *running = Some(tokio::spawn(health.run(self.shutdown.child_token())));
    }

    /// The health loop's last judgement, once it made one.
    pub(crate) fn health(&self) -> Option<crate::health::HealthSnapshot> {
        crate::health::last(&self.health_memory)
    }

    /// (Re)starts the SLO loop on `cluster` (the daemon's start and every reload, with a
    /// fresh kubeconfig): every `watchdog.slo_interval` it lists the lab's SLOs, evaluates
    /// them against `watchdog.prometheus` (or the lab's own, through the API server) and
    /// records samples and verdict changes, which run the SLO playbooks ([`crate::slo`]).
    /// Without a history there is nothing to record into and nothing runs. Whether it runs.
    pub(crate) async fn restart_slos(&self, cluster: Cluster) -> bool {
        let mut running = self.slos.lock().await;
        if let Some((task, _)) = running.take() {
            task.abort();
        }
        let Ok(history) = &self.history else { return false };
        let prometheus = match crate::slo::prometheus_for(&self.plan.settings, &cluster) {
            Ok(prometheus) => prometheus,
            Err(e) => {
                tracing::error!(error = %crate::network::chain(&e), "watchdog: watchdog.prometheus is not usable; the SLOs are not evaluated");
                return false;
            }
        };
        let slo_loop =
            crate::slo::SloLoop::new(crate::slo::Source::Cluster(cluster), prometheus, Some(history.clone()), self.engine.clone());
        let report = slo_loop.last_report();
        let task = slo_loop.spawn(self.plan.settings.slo_interval, Arc::new(SystemTime::now), self.shutdown.child_token());
        *running = Some((task, report));
        true
    }

    /// The SLO loop's last tick, while it runs.
    #[allow(dead_code)] // For the status surfaces (the dashboard, `status`).
    pub(crate) async fn slo_report(&self) -> Option<crate::slo::TickReport> {
        let running = self.slos.lock().await;
        let (_, report) = running.as_ref()?;
        report.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// The objects drifted now (empty when nothing is watched).
    pub(crate) async fn drift(&self) -> Vec<ObjectDrift> {
        self.drift.lock().await.as_ref().map(|(h, _)| h.snapshot()).unwrap_or_default()
    }

    /// The drift engine's counters, while it runs (the dashboard's `/metrics`).
    pub(crate) async fn drift_stats(&self) -> Option<idp_watchdog::drift::DriftStats> {
        self.drift.lock().await.as_ref().map(|(h, _)| h.stats())
    }

    /// The history, or why there is none (the dashboard reads it).
    pub(crate) fn history(&self) -> Result<Arc<History>, String> {
        self.history.clone()
    }

    /// What it runs with: its settings and ports (the dashboard's port and playbooks).
    pub(crate) fn plan(&self) -> &WatchdogPlan {
        &self.plan
    }

    /// The receiver's listener, while it serves.
    pub(crate) async fn listeners(&self) -> Vec<Listener> {
        match self.receiver.lock().await.as_ref() {
            Some((address, task)) if !task.is_finished() => vec![Listener { name: "alerts".into(), address: address.to_string() }],
            _ => Vec::new(),
        }
    }

    /// The history since `since`, or why there is none.
    pub(crate) async fn since(&self, since: SystemTime) -> Result<Vec<Event>, String> {
        let history = self.history.clone()?;
        tokio::task::spawn_blocking(move || history.since(since)).await.map_err(|e| e.to_string())?.map_err(|e| crate::network::chain(&e))
    }

    /// Waits for its tasks after the shutdown token was cancelled, then closes the history.
    pub(crate) async fn stopped(&self) {
        if let Some((_, task)) = self.receiver.lock().await.take() {
            let _ = task.await;
        }
        if let Some((handle, recorder)) = self.drift.lock().await.take() {
            let _ = handle.stop().await;
            let _ = recorder.await;
        }
        if let Some((task, _)) = self.slos.lock().await.take() {
            let _ = task.await;
        }
        if let Some(task) = self.health.lock().await.take() {
            let _ = task.await;
        }
        self.tasks.close();
        self.tasks.wait().await;
        if let Ok(history) = &self.history
            && let Err(e) = history.flush()
        {
            tracing::warn!(error = %e, "watchdog: flushing the history failed");
        }
    }
}

/// The built-in `heal-drift` playbook is the drift engine's own healing (its backoff,
/// per-object rate cap and contested rule: docs/watchdog.md), so it is taken out of the
/// playbooks the engine runs: (`heal-drift` as configured, when it is the drift engine's;
/// the rest). A playbook named `heal-drift` that does anything but re-apply what drifted
/// is an ordinary playbook.
fn split_heal_drift(playbooks: Vec<Playbook>) -> (Option<Playbook>, Vec<Playbook>) {
    let is_drift_engines = |p: &Playbook| {
        p.name == "heal-drift"
            && p.actions == [Action::Reapply { object: None }]
            && !p.triggers.is_empty()
            && p.triggers.iter().all(|t| matches!(t, Trigger::Drift { .. }))
    };
    let (heal, rest): (Vec<Playbook>, Vec<Playbook>) = playbooks.into_iter().partition(is_drift_engines);
    (heal.into_iter().next(), rest)
}

/// Whether the drift engine heals `component`: its `heal-drift` playbook is configured,
/// not a dry run, and a trigger names the component (or `*`); else drift is reported only.
fn heals(heal_drift: Option<&Playbook>, component: &str) -> bool {
    heal_drift.is_some_and(|p| {
        !p.dry_run && p.triggers.iter().any(|t| matches!(t, Trigger::Drift { component: c } if c == "*" || c == component))
    })
}

/// A heal of the drift engine as a run of its `heal-drift` playbook, for the history's
/// playbook runs (the dashboard, `history`); none for other events.
fn heal_run(playbook: &Playbook, event: &DriftEvent) -> Option<idp_watchdog::Run> {
    use idp_watchdog::playbook::{ActionResult, ActionRun};
    let (drift, result, detail) = match event {
        DriftEvent::Healed(d) => (d, ActionResult::Ok, format!("re-applied {} ({} heals in the window)", d.object, d.heals)),
        DriftEvent::HealFailed { drift, error } => (drift, ActionResult::Failed, error.clone()),
        _ => return None,
    };
    let at_ms = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    Some(idp_watchdog::Run {
        playbook: playbook.name.clone(),
        status: if result == ActionResult::Ok { idp_watchdog::RunStatus::Ok } else { idp_watchdog::RunStatus::Failed },
        trigger: Cause::Drift {
            component: drift.component.clone(),
            object: drift.object.clone(),
            fields: drift.fields.iter().map(|f| f.path.clone()).collect(),
        },
        actions: vec![ActionRun { action: "reapply".into(), target: drift.object.clone(), result, detail, duration_ms: 0 }],
        at_ms,
        duration_ms: 0,
    })
}

/// Serves the receiver on `listener` until `shutdown`; connections in flight finish.
async fn serve_receiver(listener: TcpListener, engine: Arc<LabEngine>, shutdown: CancellationToken) {
    crate::serve::serve_http("the Alertmanager receiver", listener, idp_watchdog::router(engine), shutdown).await;
}

#[cfg(test)]
mod tests;
