//! The watchdog in the daemon: its history, held open here for the daemon's life (the
//! state store's short-open rule is for the CLI's records), and its playbooks, with the
//! Alertmanager webhook receiver on the lab network's gateway address, where an
//! in-cluster Alertmanager reaches it (`POST /alerts`).
//!
//! The receiver starts once `up` recorded the lab network (as the registry does, see
//! [`crate::network`]) and at every reload; a port held by another program is a warning.
//! History answers the control socket's `GET /history?since=SECONDS`.
//!
//! A history that does not open (damaged, or locked by a second process) does not stop
//! the daemon: the rest of the lab works; the error is logged, kept, and shown in every
//! `history` answer with how to recover.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hyper_util::rt::TokioIo;
use idp_core::settings::WatchdogSettings;
use idp_watchdog::{Engine, Event, History, Retention, Unavailable};
use tokio::net::TcpListener;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::{DaemonError, Listener};

/// The history's sled database in the lab's state directory.
pub const HISTORY_DIR: &str = "watchdog.sled";

/// The receiver's port on the gateway address when `watchdog.receiver_port` is `auto`
/// (each lab has its own gateway address, so labs never share it).
pub const RECEIVER_PORT: u16 = 9095;

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
    plan: WatchdogPlan,
    history: Result<Arc<History>, String>,
    engine: Option<Arc<Engine<Unavailable>>>,
    receiver: Mutex<Option<(SocketAddr, JoinHandle<()>)>>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

impl LabWatchdog {
    /// Opens the history (on the blocking pool) and makes the playbook engine.
    pub(crate) async fn open(dir: &Path, plan: WatchdogPlan, shutdown: CancellationToken) -> LabWatchdog {
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
        let engine = history.as_ref().ok().map(|h| Arc::new(Engine::new(plan.settings.playbooks.clone(), h.clone(), Unavailable)));
        let watchdog =
            LabWatchdog { dir: dir.to_owned(), plan, history, engine, receiver: Mutex::new(None), tasks: TaskTracker::new(), shutdown };
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

    async fn ensure_receiver(&self, engine: Arc<Engine<Unavailable>>, gateway: IpAddr) -> Result<(), DaemonError> {
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
        self.tasks.close();
        self.tasks.wait().await;
        if let Ok(history) = &self.history
            && let Err(e) = history.flush()
        {
            tracing::warn!(error = %e, "watchdog: flushing the history failed");
        }
    }
}

/// Serves the receiver on `listener` until `shutdown`; connections in flight finish.
async fn serve_receiver(listener: TcpListener, engine: Arc<Engine<Unavailable>>, shutdown: CancellationToken) {
    let connections = TaskTracker::new();
    loop {
        let stream = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "watchdog: accepting a receiver connection failed");
                    continue;
                }
            },
        };
        let service = idp_watchdog::router(engine.clone());
        let token = shutdown.clone();
        connections.spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "watchdog: a receiver connection failed");
                    }
                }
                () = token.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
    connections.close();
    connections.wait().await;
}

#[cfg(test)]
mod tests;
