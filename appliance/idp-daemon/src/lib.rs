//! The lab daemon (`idp-lab serve`): the long-running process of one lab. It binds the
//! sockets of the host edge (the HTTPS entry and its HTTP redirect, the DNS answer) and
//! runs them, with the route watch that feeds the entry, under one cancellation tree;
//! later also the registry and the watchdog.
//!
//! Its files, all in the lab's state directory:
//!
//! | file          | what                                                                 |
//! | ------------- | -------------------------------------------------------------------- |
//! | `daemon.pid`  | the pid, under an exclusive `flock` held while it runs: a second daemon of the lab fails to take it and names the first |
//! | `daemon.json` | what it serves ([`DaemonInfo`]), written once its sockets are bound  |
//! | `daemon.sock` | the control endpoint, a unix socket with mode 0600 ([`control`])    |
//! | `daemon.log`  | its log (JSON lines), when `idp-lab up` started it detached          |
//!
//! The public API: [`run`] runs the daemon until its token is cancelled; [`status`],
//! [`health`] and [`stop`] are for the other commands.

mod components;
pub mod control;
mod dashboard;
mod error;
mod executor;
pub mod health;
mod network;
mod pidfile;
mod serve;
mod slo;
mod watchdog;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use idp_core::names::Zones;
use idp_edge::{Answers, Entry, LabCa};
use idp_kube::{Cluster, RouteSnapshot};
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{Mutex, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use components::{COMPONENTS_DIR, WatchedComponent, record_component};
pub use dashboard::{DASHBOARD_PORT, DASHBOARD_PORT_FILE};
pub use error::DaemonError;
pub use idp_watchdog::{Event as WatchdogEvent, EventKind as WatchdogEventKind, ObjectDrift};
pub use network::{NETWORK_FILE, NodeDnsPlan, RegistryPlan, write_network};
pub use pidfile::{DaemonState, status, stop};
pub use watchdog::{HISTORY_DIR, RECEIVER_PORT, WatchdogPlan};

/// The pid file, locked while the daemon runs.
pub const PID_FILE: &str = "daemon.pid";
/// What the daemon serves, as JSON.
pub const INFO_FILE: &str = "daemon.json";
/// The control socket.
pub const SOCKET_FILE: &str = "daemon.sock";
/// The log of a detached daemon.
pub const LOG_FILE: &str = "daemon.log";
/// The lab's kubeconfig in its state directory, for the route watch.
pub const KUBECONFIG_FILE: &str = "kubeconfig";
/// How long [`run`] lets its servers drain after cancellation before it gives up on
/// them (the servers' own drain bound, plus a margin).
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(7);

/// What the daemon runs for one lab; made by the CLI from the lab's settings.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The lab's name.
    pub lab: String,
    /// The lab's state directory.
    pub dir: PathBuf,
    /// The lab CA's folder.
    pub ca_dir: PathBuf,
    /// The address the entry and the DNS answer listen on (`network.bind_address`).
    pub bind: IpAddr,
    /// The HTTP port (308 to HTTPS).
    pub http_port: u16,
    /// The HTTPS port (the entry).
    pub https_port: u16,
    /// The DNS port, UDP and TCP; `None` runs no DNS answer.
    pub dns_port: Option<u16>,
    /// The lab's DNS suffix.
    pub suffix: String,
    /// The zones the DNS answer serves.
    pub zones: Zones,
    /// The resolvers other names are forwarded to (`network.dns_forward`).
    pub dns_forward: Vec<SocketAddr>,
    /// The Gateway's HTTPS ports on loopback, in failover order.
    pub gateway: Vec<SocketAddr>,
    /// The lab's registry, when it has a network to serve it on.
    pub registry: Option<RegistryPlan>,
    /// The DNS answer for the lab's nodes, when it has a network to serve it on.
    pub node_dns: Option<NodeDnsPlan>,
    /// The watchdog: its history, playbooks and Alertmanager receiver; `None`: off.
    pub watchdog: Option<WatchdogPlan>,
}

/// What a running daemon serves, as `daemon.json` and the control endpoint's
/// `/healthz` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DaemonInfo {
    /// The lab.
    pub lab: String,
    /// Its process id.
    pub pid: u32,
    /// The idp-lab version it runs.
    pub version: String,
    /// When it started, in seconds since the Unix epoch.
    pub started: u64,
    /// Its listeners.
    pub listeners: Vec<Listener>,
}

/// One socket the daemon listens on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listener {
    /// What it serves: `https`, `http`, `dns`, `node-dns`, `registry`, `registry-lan`
    /// (the registry's read-only LAN listener, workshop mode) or `control`.
    pub name: String,
    /// Where: `127.0.0.1:443`, `udp+tcp 127.0.0.1:53`, or the socket's path.
    pub address: String,
}

impl DaemonInfo {
    /// How long it has been running, by the clock now.
    pub fn uptime(&self) -> Duration {
        Duration::from_secs(now_secs().saturating_sub(self.started))
    }
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The route watch: restarted with a fresh kubeconfig on `reload`.
pub(crate) struct Routes {
    dir: PathBuf,
    sender: watch::Sender<RouteSnapshot>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    shutdown: CancellationToken,
    /// The watchdog, whose drift detection restarts with the same kubeconfig.
    watchdog: Option<Arc<watchdog::LabWatchdog>>,
}

impl Routes {
    /// (Re)starts the watch from the lab's kubeconfig; without one, the routes are
    /// unknown (the entry passes everything through) and say why.
    pub(crate) async fn restart(&self) -> Result<(), DaemonError> {
        let mut task = self.task.lock().await;
        if let Some(old) = task.take() {
            old.abort();
        }
        let path = self.dir.join(KUBECONFIG_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.sender.send_replace(RouteSnapshot {
                    routes: Vec::new(),
                    synced: false,
                    error: Some(format!("the lab has no kubeconfig at {}: no routes to watch", path.display())),
                });
                return Ok(());
            }
            Err(source) => return Err(DaemonError::Io { action: "read", path, source }),
        };
        let cluster = Cluster::from_kubeconfig(&text, None).await.map_err(|e| DaemonError::Kube { reason: e.to_string() })?;
        if let Some(watchdog) = &self.watchdog
            && let Err(e) = watchdog.restart_drift(cluster.clone()).await
        {
            // The routes still serve; the next reload tries again.
            tracing::warn!(error = %e, "watchdog: no drift detection");
        }
        if let Some(watchdog) = &self.watchdog {
            // Its failures are logged; the next reload tries again.
            watchdog.restart_slos(cluster.clone()).await;
            watchdog.restart_health(cluster.clone()).await;
        }
        let sender = self.sender.clone();
        let shutdown = self.shutdown.clone();
        tracing::info!(server = cluster.server(), "watching the lab's routes");
        *task = Some(tokio::spawn(async move {
            tokio::select! {
                () = cluster.watch_routes(sender) => {}
                () = shutdown.cancelled() => {}
            }
        }));
        Ok(())
    }
}

/// Runs the daemon of `plan` until `shutdown` is cancelled, then drains every server
/// (at most [`SHUTDOWN_TIMEOUT`]) and removes its socket and info file.
///
/// Fails at once, before binding anything, when another daemon of the lab runs
/// ([`DaemonError::AlreadyRunning`]); and when a socket cannot be bound, naming it.
pub async fn run(plan: Plan, shutdown: CancellationToken) -> Result<(), DaemonError> {
    let lock = pidfile::acquire(&plan.dir)?;
    let started = now_secs();

    // Every socket first, so that a port taken fails the start, not a server later.
    let https = bind_tcp("https", plan.bind, plan.https_port).await?;
    let http = bind_tcp("http", plan.bind, plan.http_port).await?;
    let dns = match plan.dns_port {
        Some(port) => {
            let udp = UdpSocket::bind((plan.bind, port)).await.map_err(|source| DaemonError::Bind {
                what: "dns (udp)",
                address: SocketAddr::new(plan.bind, port),
                source,
            })?;
            Some((udp, bind_tcp("dns (tcp)", plan.bind, port).await?))
        }
        None => None,
    };
    let socket_path = plan.dir.join(SOCKET_FILE);
    let control_listener = control::bind(&socket_path)?;

    let ca = LabCa::load_or_create(&plan.lab, &plan.ca_dir, std::slice::from_ref(&plan.suffix), false)
        .map_err(|e| DaemonError::Edge { reason: e.to_string() })?;
    let leaf = ca.issue(&[plan.suffix.clone(), format!("*.{}", plan.suffix)]).map_err(|e| DaemonError::Edge { reason: e.to_string() })?;
    let (sender, receiver) = watch::channel(RouteSnapshot::default());
    let entry = Arc::new(
        Entry::new(&plan.suffix, plan.https_port, plan.gateway.clone(), &leaf, receiver.clone())
            .map_err(|e| DaemonError::Edge { reason: e.to_string() })?,
    );

    let mut listeners = vec![
        Listener { name: "https".into(), address: SocketAddr::new(plan.bind, plan.https_port).to_string() },
        Listener { name: "http".into(), address: SocketAddr::new(plan.bind, plan.http_port).to_string() },
    ];
    if let Some(port) = plan.dns_port {
        listeners.push(Listener { name: "dns".into(), address: format!("udp+tcp {}", SocketAddr::new(plan.bind, port)) });
    }
    // The watchdog's dashboard on loopback (a port held elsewhere is a warning, not a failure).
    let dashboard = dashboard::bind(&plan.dir, plan.watchdog.as_ref()).await;
    listeners.extend(dashboard.as_ref().map(dashboard::Bound::listener));
    listeners.push(Listener { name: "control".into(), address: socket_path.display().to_string() });
    let info = DaemonInfo { lab: plan.lab.clone(), pid: std::process::id(), version: env!("CARGO_PKG_VERSION").into(), started, listeners };

    let watchdog = match plan.watchdog.clone() {
        Some(w) => Some(Arc::new(watchdog::LabWatchdog::open(&plan.dir, &plan.lab, w, shutdown.child_token()).await)),
        None => None,
    };
    let routes = Arc::new(Routes {
        dir: plan.dir.clone(),
        sender,
        task: Mutex::new(None),
        shutdown: shutdown.child_token(),
        watchdog: watchdog.clone(),
    });
    let node_dns = plan.node_dns.clone().map(|d| (d, plan.zones.clone()));
    let registry = Arc::new(network::LabRegistry::new(plan.dir.clone(), plan.registry.clone(), node_dns, shutdown.child_token()));
    // Failures are warnings (logged): the rest still serves, and `reload` tries again.
    let _ = registry.ensure_started().await;
    if let Some(w) = &watchdog {
        let _ = w.ensure_started().await;
    }
    if let Err(e) = routes.restart().await {
        // The entry still serves (everything passes through); `reload` tries again.
        tracing::warn!(error = %e, "the route watch did not start");
    }

    let mut servers: JoinSet<(&'static str, Result<(), DaemonError>)> = JoinSet::new();
    let edge = |e: idp_edge::EdgeError| DaemonError::Edge { reason: e.to_string() };
    servers.spawn({
        let token = shutdown.child_token();
        async move { ("https", idp_edge::serve_https(https, entry, token).await.map_err(edge)) }
    });
    servers.spawn({
        let token = shutdown.child_token();
        let suffix = plan.suffix.clone();
        let port = plan.https_port;
        async move { ("http", idp_edge::serve_redirect(http, &suffix, port, token).await.map_err(edge)) }
    });
    if let Some((udp, tcp)) = dns {
        let token = shutdown.child_token();
        let answers = Answers::new(plan.zones.clone()).with_forward(plan.dns_forward.clone());
        servers.spawn(async move { ("dns", idp_edge::serve_dns(udp, tcp, answers, token.cancelled_owned()).await.map_err(edge)) });
    }
    let state = Arc::new(control::State {
        info: info.clone(),
        routes: routes.clone(),
        registry: registry.clone(),
        snapshot: receiver,
        watchdog: watchdog.clone(),
    });
    servers.spawn({
        let token = shutdown.child_token();
        async move { ("control", control::serve(control_listener, state, token).await) }
    });
    if let (Some(bound), Some(w)) = (dashboard, &watchdog) {
        servers.spawn(dashboard::serve(bound, dashboard::Lab::new(w.clone(), registry.clone(), info.clone()), shutdown.child_token()));
    }
    pidfile::write_info(&plan.dir, &info)?;
    tracing::info!(lab = %plan.lab, pid = info.pid, listeners = ?info.listeners.iter().map(|l| format!("{} {}", l.name, l.address)).collect::<Vec<_>>(), "lab daemon started");

    // A server that ends on its own is a failure of the whole daemon: cancel the rest.
    let mut failure = None;
    tokio::select! {
        () = shutdown.cancelled() => {}
        Some(done) = servers.join_next() => {
            if let Ok((name, Err(e))) = done {
                tracing::error!(server = name, error = %e, "a server failed; stopping the daemon");
                failure = Some(e);
            }
            shutdown.cancel();
        }
    }
    let drained = tokio::time::timeout(SHUTDOWN_TIMEOUT, async {
        while let Some(done) = servers.join_next().await {
            if let Ok((name, Err(e))) = done {
                tracing::warn!(server = name, error = %e, "a server failed while stopping");
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!("servers still running after the shutdown timeout are stopped");
        servers.abort_all();
    }
    let _ = tokio::time::timeout(SHUTDOWN_TIMEOUT, registry.stopped()).await;
    if let Some(w) = &watchdog {
        let _ = tokio::time::timeout(SHUTDOWN_TIMEOUT, w.stopped()).await;
    }
    let _ = std::fs::remove_file(&socket_path);
    pidfile::release(&plan.dir, lock);
    tracing::info!(lab = %plan.lab, "lab daemon stopped");
    failure.map_or(Ok(()), Err)
}

async fn bind_tcp(what: &'static str, ip: IpAddr, port: u16) -> Result<TcpListener, DaemonError> {
    let address = SocketAddr::new(ip, port);
    TcpListener::bind(address).await.map_err(|source| DaemonError::Bind { what, address, source })
}

/// Asks the running daemon of the lab in `dir` for its [`DaemonInfo`] over the control
/// socket.
pub async fn health(dir: &Path) -> Result<DaemonInfo, DaemonError> {
    let body = control::request(&dir.join(SOCKET_FILE), http::Method::GET, "/healthz").await?;
    serde_json::from_slice(&body).map_err(|e| DaemonError::Control { reason: format!("bad /healthz answer: {e}") })
}

/// Asks the running daemon of the lab in `dir` for the watchdog's events since `since`
/// (all it keeps, with `None`), oldest first.
pub async fn history(dir: &Path, since: Option<SystemTime>) -> Result<Vec<idp_watchdog::Event>, DaemonError> {
    let query =
        since.map(|t| format!("?since_ms={}", t.duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0))).unwrap_or_default();
    let body = control::request(&dir.join(SOCKET_FILE), http::Method::GET, &format!("/history{query}")).await?;
    #[derive(Deserialize)]
    struct Answer {
        events: Vec<idp_watchdog::Event>,
    }
    let answer: Answer = serde_json::from_slice(&body).map_err(|e| DaemonError::Control { reason: format!("bad /history answer: {e}") })?;
    Ok(answer.events)
}

/// Asks the running daemon of the lab in `dir` for the objects drifted now (what the
/// watchdog watches: the components recorded with [`record_component`]).
pub async fn drift(dir: &Path) -> Result<Vec<idp_watchdog::ObjectDrift>, DaemonError> {
    let body = control::request(&dir.join(SOCKET_FILE), http::Method::GET, "/drift").await?;
    serde_json::from_slice(&body).map_err(|e| DaemonError::Control { reason: format!("bad /drift answer: {e}") })
}

/// Asks the running daemon of the lab in `dir` for its health loop's last judgement of the
/// lab ([`health::HealthSnapshot`]); `None` before its first tick or with the watchdog off.
pub async fn lab_health(dir: &Path) -> Result<Option<health::HealthSnapshot>, DaemonError> {
    let body = control::request(&dir.join(SOCKET_FILE), http::Method::GET, "/health").await?;
    serde_json::from_slice(&body).map_err(|e| DaemonError::Control { reason: format!("bad /health answer: {e}") })
}

/// Asks the running daemon of the lab in `dir` to reload: re-read the kubeconfig and
/// restart the route watch (after `up` made a new cluster).
pub async fn reload(dir: &Path) -> Result<(), DaemonError> {
    control::request(&dir.join(SOCKET_FILE), http::Method::POST, "/reload").await.map(drop)
}
