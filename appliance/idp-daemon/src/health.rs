//! The daemon's health loop: every [`HEALTH_EVERY`] it judges the whole lab
//! ([`idp_core::health`]) and answers what it sees with the playbooks.
//!
//! Components judged, each a [`Rollup`]:
//! - `cluster`: the node containers as Docker shows them and the API's nodes;
//! - `vault`: Vault's `sys/health` through the API server's service proxy (absent while
//!   the lab has no Service `vault-system/vault`);
//! - every component idp-lab applied and recorded, by its objects' readiness;
//! - `applications` (Argo CD `Application`s) and `helm-charts` (k3s `HelmChart`s), when
//!   the cluster serves those kinds.
//!
//! Each verdict change (of a component or the lab) is an
//! [`EventKind::Verdict`] in the history, subject `health <name>`, body a
//! [`HealthChange`]; a change to a verdict that is not Healthy is a `health` cause. A node
//! container that is not running is a `node-stopped` cause, and a sealed Vault a
//! `vault-sealed` cause, when first seen and again every [`RETRIGGER`] while it lasts (the
//! playbooks' rate limits and cool-downs decide whether they run). Besides the tick, a
//! watch on pod `vault-0` notices each start of Vault's container at once: once it answers,
//! a sealed Vault is a `vault-sealed` cause (the auto-unseal of the original's crash loop).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt as _;
use idp_core::health::{self, Child, Health, Rollup};
use idp_kube::Cluster;
use idp_watchdog::health::ComponentHealth;
use idp_watchdog::{Cause, Component, Engine, Event, EventKind, History};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::executor::LabExecutor;

/// How often the lab is judged.
pub(crate) const HEALTH_EVERY: Duration = Duration::from_secs(15);

/// How often a stopped node or a sealed Vault is a cause again while it lasts.
pub(crate) const RETRIGGER: Duration = Duration::from_secs(60);

/// The lab's health at one tick: what `status` and the dashboard show.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthSnapshot {
    /// When it was judged, Unix milliseconds.
    pub at_ms: u64,
    /// The lab's verdict.
    pub lab: Rollup,
    /// Each component's.
    pub components: Vec<Rollup>,
}

/// The body of a health [`EventKind::Verdict`] event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthChange {
    /// The component, or `lab`.
    pub component: String,
    /// The verdict before; none at the daemon's first judgement.
    pub from: Option<String>,
    /// The verdict now.
    pub health: String,
    /// Why, when not Healthy: the worst reasons, `subject: Health (reason)`.
    pub reasons: Vec<String>,
}

/// What the loop keeps between ticks and across restarts (a reload restarts the loop; the
/// verdicts seen stay, so a reload is no change).
#[derive(Debug, Default)]
pub(crate) struct Memory {
    verdicts: HashMap<String, Health>,
    stopped: HashMap<String, Instant>,
    sealed: Option<Instant>,
    last: Option<HealthSnapshot>,
}

/// Where the loop keeps its memory and its last snapshot.
pub(crate) type Shared = Arc<std::sync::Mutex<Memory>>;

/// The last snapshot, if a tick ran.
pub(crate) fn last(shared: &Shared) -> Option<HealthSnapshot> {
    shared.lock().unwrap_or_else(std::sync::PoisonError::into_inner).last.clone()
}

/// The health loop of one lab on one cluster (the daemon's start or a reload).
pub(crate) struct HealthLoop {
    pub(crate) lab: String,
    pub(crate) cluster: Cluster,
    pub(crate) components: Vec<Component>,
    pub(crate) history: Option<Arc<History>>,
    pub(crate) engine: Option<Arc<Engine<LabExecutor>>>,
    pub(crate) shared: Shared,
}

impl HealthLoop {
    /// Runs until `shutdown`: a tick at once, then every [`HEALTH_EVERY`], and a check of
    /// Vault's seal at each start of its container.
    pub(crate) async fn run(self, shutdown: CancellationToken) {
        let mut judged = Vec::new();
        for component in &self.components {
            judged.push(ComponentHealth::new(&self.cluster, component).await);
        }
        use idp_core::secrets::{VAULT_CONTAINER, VAULT_NAMESPACE, VAULT_POD};
        let mut starts = idp_vault::vault_starts(&self.cluster, VAULT_NAMESPACE, VAULT_POD, VAULT_CONTAINER);
        let mut ticks = tokio::time::interval(HEALTH_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // One Docker client for the loop's life (connected again after a failure).
        let mut docker: Option<idp_provision::Engine> = None;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = ticks.tick() => {
                    let snapshot = self.tick(&judged, &mut docker).await;
                    self.judge(snapshot);
                }
                Some(start) = starts.next() => {
                    if let Ok(start) = start {
                        tracing::info!(restarts = start.restart_count, "watchdog: Vault's container started; checking its seal");
                        self.after_vault_start().await;
                    }
                }
            }
        }
    }

    /// Judges every component once.
    async fn tick(&self, judged: &[ComponentHealth], docker: &mut Option<idp_provision::Engine>) -> HealthSnapshot {
        let mut components = vec![self.cluster_rollup(docker).await];
        use idp_core::secrets::{VAULT_NAMESPACE, VAULT_SERVICE};
        // Without Service vault-system/vault the lab has no Vault (yet): nothing to judge.
        match self.cluster.service_exists(VAULT_NAMESPACE, VAULT_SERVICE).await {
            Ok(false) => {}
            Ok(true) => match idp_vault::Vault::in_lab(&self.cluster).health().await {
                Ok(h) => components.push(health::rollup("vault", &[h.child()])),
                Err(e) => components.push(health::rollup("vault", &[Child::unknown("Vault", idp_core::diag::chain(&e))])),
            },
            Err(e) => components.push(health::rollup("vault", &[Child::unknown("Vault", idp_core::diag::chain(&e))])),
        }
        for component in judged {
            components.push(component.judge(&self.cluster).await);
        }
        components.extend(idp_watchdog::health::applications(&self.cluster).await);
        components.extend(idp_watchdog::health::helm_charts(&self.cluster).await);
        HealthSnapshot { at_ms: unix_ms(SystemTime::now()), lab: health::lab(&components), components }
    }

    async fn cluster_rollup(&self, docker: &mut Option<idp_provision::Engine>) -> Rollup {
        let mut children = Vec::new();
        if docker.is_none() {
            match idp_provision::Engine::connect().await {
                Ok(engine) => *docker = Some(engine),
                Err(e) => children.push(Child::unknown("Docker", idp_core::diag::chain(&e))),
            }
        }
        if let Some(engine) = docker.as_ref() {
            match engine.nodes_of(&self.lab).await {
                Ok(nodes) => children.extend(nodes.iter().map(|n| health::container(&n.name, Some(&n.state)))),
                Err(e) => {
                    children.push(Child::unknown("node containers", idp_core::diag::chain(&e)));
                    *docker = None;
                }
            }
        }
        match self.cluster.nodes().await {
            Ok(nodes) => children.extend(idp_watchdog::health::nodes(&nodes)),
            Err(e) => children.push(Child::unknown("the API", idp_core::diag::chain(&e))),
        }
        health::rollup("cluster", &children)
    }

    /// Records the verdict changes of `snapshot` and raises the causes it shows.
    fn judge(&self, snapshot: HealthSnapshot) {
        let now = Instant::now();
        let mut causes = Vec::new();
        let mut events = Vec::new();
        {
            let mut memory = self.shared.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            for rollup in std::iter::once(&snapshot.lab).chain(&snapshot.components) {
                let before = memory.verdicts.insert(rollup.name.clone(), rollup.health);
                if before == Some(rollup.health) {
                    continue;
                }
                let reasons: Vec<String> = rollup.reasons.iter().map(ToString::to_string).collect();
                tracing::info!(component = %rollup.name, health = %rollup.health, reason = reasons.first().map(String::as_str).unwrap_or(""), "watchdog: health changed");
                let change = HealthChange {
                    component: rollup.name.clone(),
                    from: before.map(|h| h.to_string()),
                    health: rollup.health.to_string(),
                    reasons: reasons.clone(),
                };
                let body = serde_json::to_value(&change).unwrap_or_default();
                events.push(Event::new(SystemTime::now(), EventKind::Verdict, format!("health {}", rollup.name), body));
                if rollup.name != "lab" {
                    causes.extend(Cause::health(&rollup.name, rollup.health, reasons.first().cloned().unwrap_or_default()));
                }
            }
            let stopped: Vec<String> = snapshot
                .components
                .iter()
                .filter(|c| c.name == "cluster")
                .flat_map(|c| &c.reasons)
                .filter(|r| r.health == Health::Degraded)
                .filter_map(|r| r.subject.strip_prefix("node ").map(str::to_owned))
                .collect();
            memory.stopped.retain(|node, _| stopped.contains(node));
            for node in stopped {
                let due = memory.stopped.get(&node).is_none_or(|at| now.duration_since(*at) >= RETRIGGER);
                if due {
                    memory.stopped.insert(node.clone(), now);
                    causes.push(Cause::NodeStopped { node });
                }
            }
            let sealed = snapshot.components.iter().any(|c| c.name == "vault" && c.reasons.iter().any(|r| r.reason == "Vault is sealed"));
            match (sealed, memory.sealed) {
                (false, _) => memory.sealed = None,
                (true, Some(at)) if now.duration_since(at) < RETRIGGER => {}
                (true, _) => {
                    memory.sealed = Some(now);
                    causes.push(Cause::VaultSealed);
                }
            }
            memory.last = Some(snapshot);
        }
        self.record(events);
        self.raise(causes);
    }

    /// After Vault's container started: waits until Vault answers (at most
    /// `idp_vault::START_GRACE`), and raises `vault-sealed` when it is sealed.
    async fn after_vault_start(&self) {
        let vault = idp_vault::Vault::in_lab(&self.cluster);
        let started = Instant::now();
        loop {
            match vault.seal_status().await {
                Ok(status) if status.initialized && status.sealed => {
                    self.shared.lock().unwrap_or_else(std::sync::PoisonError::into_inner).sealed = Some(Instant::now());
                    self.raise(vec![Cause::VaultSealed]);
                    return;
                }
                Ok(_) => return,
                Err(e) if e.is_transport() && started.elapsed() < idp_vault::START_GRACE => {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => {
                    tracing::warn!(error = %idp_core::diag::chain(&e), "watchdog: Vault's seal could not be read after its start");
                    return;
                }
            }
        }
    }

    fn record(&self, events: Vec<Event>) {
        let Some(history) = self.history.clone() else { return };
        if events.is_empty() {
            return;
        }
        tokio::task::spawn_blocking(move || {
            for event in events {
                if let Err(e) = history.record(&event) {
                    tracing::warn!(error = %e, "watchdog: a health verdict was not recorded");
                }
            }
        });
    }

    /// Runs the playbooks of `causes` in the background (an action may take long).
    fn raise(&self, causes: Vec<Cause>) {
        let Some(engine) = self.engine.clone() else { return };
        for cause in causes {
            let engine = engine.clone();
            tokio::spawn(async move {
                for run in engine.handle(&cause).await {
                    tracing::info!(playbook = %run.playbook, status = ?run.status, "watchdog: playbook ran");
                }
            });
        }
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)).unwrap_or(0)
}

#[cfg(test)]
mod tests;
