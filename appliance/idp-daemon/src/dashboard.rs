//! The watchdog's dashboard, JSON API and `/metrics` ([`idp_watchdog::dashboard`]) in the
//! daemon, on loopback only (`127.0.0.1`), port `watchdog.dashboard_port`:
//!
//! - `auto`: the port this lab chose before (`<state>/watchdog-dashboard.port`), else
//!   [`DASHBOARD_PORT`] (9096), else the first free one of 9097–9195 (another lab's daemon
//!   holds 9096); the choice is kept in that file, so the lab keeps its port;
//! - a fixed port that another program holds is a warning: the daemon serves the rest.
//!
//! The socket is bound with the daemon's others, before `daemon.json` is written, so its
//! listener (`dashboard`) is in [`crate::DaemonInfo`]. The API's token is
//! `<state>/watchdog-token` ([`idp_watchdog::load_or_create_token`], mode 0600).
//!
//! What it shows comes from the daemon's watchdog: the drift snapshot and counters, the
//! history (SLO samples, playbook runs), the playbooks, and a health rollup of what the
//! daemon itself knows: its listeners (`daemon`) and the watchdog's own parts (`watchdog`:
//! the history, the drift engine).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use idp_core::config::{Playbook, PortSetting};
use idp_core::health::{self, Child, Health, Rollup};
use idp_watchdog::dashboard::Source;
use idp_watchdog::drift::DriftStats;
use idp_watchdog::{History, ObjectDrift};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::network::LabRegistry;
use crate::watchdog::{LabWatchdog, WatchdogPlan};
use crate::{DaemonError, DaemonInfo, Listener};

/// The dashboard's port on loopback when `watchdog.dashboard_port` is `auto` and no other
/// program holds it.
pub const DASHBOARD_PORT: u16 = 9096;

/// Where `auto` looks next when [`DASHBOARD_PORT`] is held (another lab's daemon).
const AUTO_FALLBACK: std::ops::RangeInclusive<u16> = 9097..=9195;

/// The file, in the lab's state directory, of the port `auto` chose for the lab.
pub const DASHBOARD_PORT_FILE: &str = "watchdog-dashboard.port";

/// The dashboard's socket, bound, and the API's token.
pub(crate) struct Bound {
    listener: TcpListener,
    address: SocketAddr,
    token: String,
}

impl Bound {
    /// Its listener, as `status` and `/healthz` show it.
    pub(crate) fn listener(&self) -> Listener {
        Listener { name: "dashboard".into(), address: self.address.to_string() }
    }
}

/// Binds the dashboard of the lab in `dir` on loopback and reads (or makes) its token;
/// `None` when the watchdog is off, and (with a warning) when no port could be bound or
/// the token could not be had.
pub(crate) async fn bind(dir: &Path, plan: Option<&WatchdogPlan>) -> Option<Bound> {
    let plan = plan?;
    let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let bound = match plan.settings.dashboard_port {
        PortSetting::Fixed(port) => TcpListener::bind((loopback, port)).await.map_err(|source| DaemonError::Bind {
            what: "the watchdog's dashboard",
            address: SocketAddr::new(loopback, port),
            source,
        }),
        PortSetting::Auto => bind_auto(dir, loopback, &auto_candidates(dir)).await,
    };
    let listener = match bound {
        Ok(listener) => listener,
        Err(e) => {
            tracing::warn!(error = %crate::network::chain(&e), "watchdog: no dashboard (the rest of the lab works)");
            return None;
        }
    };
    let address = listener.local_addr().ok()?;
    let dir = dir.to_owned();
    let token = match tokio::task::spawn_blocking(move || idp_watchdog::load_or_create_token(&dir)).await {
        Ok(Ok(token)) => token,
        Ok(Err(e)) => {
            tracing::warn!(error = %crate::network::chain(&e), "watchdog: no dashboard, its token is not there");
            return None;
        }
        Err(e) => {
            tracing::warn!(error = %e, "watchdog: no dashboard, its token is not there");
            return None;
        }
    };
    Some(Bound { listener, address, token })
}

/// The ports `auto` tries, in order: the lab's earlier choice, [`DASHBOARD_PORT`], the
/// fallback range.
fn auto_candidates(dir: &Path) -> Vec<u16> {
    let pinned = std::fs::read_to_string(dir.join(DASHBOARD_PORT_FILE)).ok().and_then(|t| t.trim().parse::<u16>().ok()).filter(|p| *p > 0);
    let mut ports: Vec<u16> = pinned.into_iter().chain([DASHBOARD_PORT]).chain(AUTO_FALLBACK).collect();
    let mut seen = std::collections::BTreeSet::new();
    ports.retain(|p| seen.insert(*p));
    ports
}

/// Binds the first of `candidates` that is free and keeps it as the lab's choice.
async fn bind_auto(dir: &Path, ip: IpAddr, candidates: &[u16]) -> Result<TcpListener, DaemonError> {
    let mut last = None;
    for &port in candidates {
        match TcpListener::bind((ip, port)).await {
            Ok(listener) => {
                let pin = dir.join(DASHBOARD_PORT_FILE);
                if std::fs::read_to_string(&pin).ok().map(|t| t.trim().to_owned()) != Some(port.to_string())
                    && let Err(e) = std::fs::write(&pin, format!("{port}\n"))
                {
                    tracing::warn!(file = %pin.display(), error = %e, "watchdog: the dashboard's port is not kept for the next start");
                }
                return Ok(listener);
            }
            Err(e) => last = Some((port, e)),
        }
    }
    let (port, source) = last.unwrap_or_else(|| (DASHBOARD_PORT, std::io::Error::other("no port to try")));
    Err(DaemonError::Bind { what: "the watchdog's dashboard (every port of 9096-9195)", address: SocketAddr::new(ip, port), source })
}

/// What the daemon's dashboard shows: its watchdog, and its listeners for the health rollup.
pub(crate) struct Lab {
    watchdog: Arc<LabWatchdog>,
    registry: Arc<LabRegistry>,
    info: DaemonInfo,
}

impl Lab {
    /// The source of the daemon whose watchdog, registry and info these are.
    pub(crate) fn new(watchdog: Arc<LabWatchdog>, registry: Arc<LabRegistry>, info: DaemonInfo) -> Lab {
        Lab { watchdog, registry, info }
    }
}

/// How long the dashboard waits for the drift engine: it is busy while it (re)starts (a
/// reload), and the page and a scrape answer without it meanwhile.
const DRIFT_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

impl Source for Lab {
    async fn drift(&self) -> Vec<ObjectDrift> {
        tokio::time::timeout(DRIFT_WAIT, self.watchdog.drift()).await.unwrap_or_default()
    }

    async fn drift_stats(&self) -> Option<DriftStats> {
        tokio::time::timeout(DRIFT_WAIT, self.watchdog.drift_stats()).await.ok().flatten()
    }

    async fn health(&self) -> Vec<Rollup> {
        let mut listeners = self.info.listeners.clone();
        listeners.extend(self.registry.listeners().await);
        listeners.extend(self.watchdog.listeners().await);
        let healthy = |subject: String| Child { subject, health: Health::Healthy, reason: String::new() };
        let daemon: Vec<Child> = listeners.iter().map(|l| healthy(format!("listener {} {}", l.name, l.address))).collect();
        let mut watchdog = vec![match self.watchdog.history() {
            Ok(history) => healthy(format!("history {}", history.path().display())),
            Err(e) => Child::unknown("history", e),
        }];
        if let Some(stats) = self.drift_stats().await {
            watchdog.push(match stats.ready {
                true => healthy(format!("drift engine ({} objects, {} watches)", stats.objects, stats.watches)),
                false => Child {
                    subject: "drift engine".into(),
                    health: Health::Progressing,
                    reason: format!("listing: {} objects over {} watches", stats.objects, stats.watches),
                },
            });
        }
        let mut components = self.watchdog.health().map(|h| h.components).unwrap_or_default();
        components.extend([health::rollup("daemon", &daemon), health::rollup("watchdog", &watchdog)]);
        components
    }

    fn history(&self) -> Result<Arc<History>, String> {
        self.watchdog.history()
    }

    fn playbooks(&self) -> Vec<Playbook> {
        self.watchdog.plan().settings.playbooks.clone()
    }
}

/// Serves the dashboard on `bound` until `shutdown`; connections in flight finish (at most
/// 2 s).
pub(crate) async fn serve(bound: Bound, source: Lab, shutdown: CancellationToken) -> (&'static str, Result<(), DaemonError>) {
    tracing::info!(address = %bound.address, "watchdog: the dashboard is serving");
    let service = idp_watchdog::dashboard::router(Arc::new(source), &bound.token);
    crate::serve::serve_http("dashboard", bound.listener, service, shutdown).await;
    ("dashboard", Ok(()))
}

#[cfg(test)]
mod tests;
