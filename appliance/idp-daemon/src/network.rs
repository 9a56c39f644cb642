//! What the daemon serves to the lab's nodes, on the lab network's gateway address (the
//! host's side of the lab's Docker bridge, e.g. `172.30.0.1`): the registry on port
//! 5000, and the DNS answer on port 53 for nodes whose host has only loopback resolvers
//! (their `resolv.conf` then names the gateway; see `idp_core::cluster::resolv_conf`).
//!
//! That address is reached by every node, stays the same across daemon restarts and
//! host reboots (the lab's subnet is pinned), and is never on the LAN, so the DNS answer
//! there may forward other names to the host's resolvers without being an open resolver.
//! It exists only once `up` made the network, and the daemon starts before that (and a
//! concurrent `up` may have planned the same subnet and made it first): so the address is
//! read from [`NETWORK_FILE`], which `up` writes once Docker made *this* lab's network,
//! at each [`LabRegistry::ensure_started`] (the daemon's start, and every reload). A
//! changed address restarts both. Docker Desktop, where the host
//! cannot reach container networks, is not supported by this choice (unverified there).
//!
//! Workshop mode ([`RegistryPlan::lan`], from `registry.serve_lan`): the same registry is
//! also served on an address of the LAN, read-only ([`idp_registry::Access::MirrorOnly`]:
//! the bundle's images to pull, every write `403 DENIED`, no `local/` names), so other
//! machines can name it in their `registry.mirrors`. That listener does not depend on
//! the lab network: it starts with the daemon, and a failure to bind it is a warning,
//! tried again on the next reload, like the others here.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use idp_registry::{Access, Registry};
use tokio::net::TcpListener;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{DaemonError, Listener};

/// The file in the lab's state directory naming the lab network's gateway address, once
/// `up` made the network ([`write_network`]).
pub const NETWORK_FILE: &str = "network.json";

/// Records that the lab's network exists with `gateway` as the host's address on it.
pub fn write_network(dir: &Path, gateway: IpAddr) -> Result<(), DaemonError> {
    crate::pidfile::write_json(dir, NETWORK_FILE, &serde_json::json!({ "gateway": gateway }))
}

/// The gateway address [`write_network`] recorded, if any.
pub(crate) fn read_network(dir: &Path) -> Option<IpAddr> {
    let text = std::fs::read_to_string(dir.join(NETWORK_FILE)).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    value.get("gateway")?.as_str()?.parse().ok()
}

/// What the daemon's registry serves, and on which port of the lab network's gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryPlan {
    /// Its port.
    pub port: u16,
    /// The bundle's OCI image layout, served read-only as the mirror of every registry
    /// its images come from; `None` serves the writable namespace alone.
    pub layout: Option<PathBuf>,
    /// The writable namespace (`local/...`) for the developer's own images.
    pub local_dir: PathBuf,
    /// Workshop mode (`registry.serve_lan`): where the registry is also served to the
    /// LAN, read-only (the mirror alone); `None` serves it on the gateway only.
    ///
    /// A specific address (the host's LAN address): on Linux, a wildcard such as
    /// `0.0.0.0` on [`RegistryPlan::port`] clashes with the gateway's listener (the bind
    /// fails, a warning), and would serve every other interface too.
    pub lan: Option<SocketAddr>,
}

/// The DNS answer for the lab's nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeDnsPlan {
    /// Its port, UDP and TCP (53: what a `resolv.conf` names).
    pub port: u16,
    /// Where names that are not the lab's go: `network.dns_forward`, else the host's own
    /// resolvers (loopback ones included: the daemon runs on the host).
    pub forward: Vec<SocketAddr>,
}

/// A listener's address and its server task.
type Running = Mutex<Option<(SocketAddr, JoinHandle<()>)>>;

/// The registry and the nodes' DNS answer of a running daemon: not yet started, or
/// serving.
pub(crate) struct LabRegistry {
    dir: PathBuf,
    plan: Option<RegistryPlan>,
    dns: Option<(NodeDnsPlan, idp_core::names::Zones)>,
    /// The registry, opened once (at the first listener that needs it) and shared by the
    /// gateway's listener and the LAN's.
    opened: Mutex<Option<Arc<Registry>>>,
    running: Running,
    lan_running: Running,
    dns_running: Running,
    shutdown: CancellationToken,
}

pub(crate) use idp_core::diag::chain;

impl LabRegistry {
    pub(crate) fn new(
        dir: PathBuf,
        plan: Option<RegistryPlan>,
        dns: Option<(NodeDnsPlan, idp_core::names::Zones)>,
        shutdown: CancellationToken,
    ) -> LabRegistry {
        LabRegistry {
            dir,
            plan,
            dns,
            opened: Mutex::new(None),
            running: Mutex::new(None),
            lan_running: Mutex::new(None),
            dns_running: Mutex::new(None),
            shutdown,
        }
    }

    /// Starts the registry's LAN listener, the nodes' DNS answer and the registry when
    /// they are planned, not running, and their address can be bound now; a missing
    /// gateway address (the lab network is not made yet) is not an error.
    ///
    /// A failure (the address's port is held by another program bound to all addresses,
    /// the LAN address is gone, say) is not the daemon's failure: the rest of the lab
    /// works without these. Each is logged, returned as a warning, and tried again on
    /// the next reload.
    pub(crate) async fn ensure_started(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if let Err(e) = self.ensure_lan().await {
            tracing::warn!(error = %e, "not serving the registry on the LAN (tried again on the next reload)");
            warnings.push(e.to_string());
        }
        let Some(gateway) = read_network(&self.dir) else {
            tracing::info!("registry and the nodes' dns: the lab network does not exist yet; they start on a reload");
            return warnings;
        };
        for result in [self.ensure_dns(gateway).await, self.ensure_registry(gateway).await] {
            if let Err(e) = result {
                tracing::warn!(error = %e, "not serving the lab's nodes (tried again on the next reload)");
                warnings.push(e.to_string());
            }
        }
        warnings
    }

    /// The registry, opened at the first call (blocking work, on the blocking pool); a
    /// failure is tried again at the next.
    async fn registry(&self, plan: &RegistryPlan) -> Result<Arc<Registry>, DaemonError> {
        let mut opened = self.opened.lock().await;
        if let Some(registry) = opened.as_ref() {
            return Ok(registry.clone());
        }
        let (layout, local) = (plan.layout.clone(), plan.local_dir.clone());
        let registry = tokio::task::spawn_blocking(move || Registry::open(layout, local))
            .await
            .map_err(|e| DaemonError::Edge { reason: format!("the registry did not open: {e}") })?
            .map_err(|e| DaemonError::Edge { reason: format!("the registry did not open: {}", chain(&e)) })?;
        let registry = Arc::new(registry);
        *opened = Some(registry.clone());
        Ok(registry)
    }

    async fn ensure_registry(&self, gateway: IpAddr) -> Result<(), DaemonError> {
        let Some(plan) = &self.plan else { return Ok(()) };
        let listen = SocketAddr::new(gateway, plan.port);
        let mut running = self.running.lock().await;
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
            Err(e) if e.kind() == std::io::ErrorKind::AddrNotAvailable => {
                tracing::info!(address = %listen, "registry: the lab network is gone; it starts on the next reload");
                return Ok(());
            }
            Err(source) => return Err(DaemonError::Bind { what: "registry", address: listen, source }),
        };
        let registry = self.registry(plan).await?;
        *running = Some((listen, self.spawn_registry(listener, registry, Access::Full)));
        tracing::info!(address = %listen, "registry: serving");
        Ok(())
    }

    /// The registry on the LAN, read-only, when the plan asks for it.
    async fn ensure_lan(&self) -> Result<(), DaemonError> {
        let Some(plan) = &self.plan else { return Ok(()) };
        let Some(listen) = plan.lan else { return Ok(()) };
        let mut running = self.lan_running.lock().await;
        if let Some((_, task)) = running.as_ref()
            && !task.is_finished()
        {
            return Ok(());
        }
        // Unlike the gateway's, a LAN address that is not there is worth a warning: the
        // workshop's machines are waiting for it.
        let listener = TcpListener::bind(listen).await.map_err(|source| DaemonError::Bind {
            what: "the registry (lan, read-only)",
            address: listen,
            source,
        })?;
        let registry = self.registry(plan).await?;
        *running = Some((listen, self.spawn_registry(listener, registry, Access::MirrorOnly)));
        tracing::info!(address = %listen, "registry: serving the mirror read-only on the LAN");
        Ok(())
    }

    fn spawn_registry(&self, listener: TcpListener, registry: Arc<Registry>, access: Access) -> JoinHandle<()> {
        let token = self.shutdown.child_token();
        tokio::spawn(async move {
            if let Err(e) = idp_registry::serve_with(listener, registry, access, token).await {
                tracing::error!(error = %e, ?access, "registry: stopped");
            }
        })
    }

    async fn ensure_dns(&self, gateway: IpAddr) -> Result<(), DaemonError> {
        let Some((plan, zones)) = &self.dns else { return Ok(()) };
        let listen = SocketAddr::new(gateway, plan.port);
        let mut running = self.dns_running.lock().await;
        if let Some((at, task)) = running.as_ref()
            && !task.is_finished()
        {
            if *at == listen {
                return Ok(());
            }
            task.abort();
        }
        let udp = match tokio::net::UdpSocket::bind(listen).await {
            Ok(udp) => udp,
            Err(e) if e.kind() == std::io::ErrorKind::AddrNotAvailable => return Ok(()),
            Err(source) => return Err(DaemonError::Bind { what: "the nodes' dns (udp)", address: listen, source }),
        };
        let tcp = TcpListener::bind(listen).await.map_err(|source| DaemonError::Bind {
            what: "the nodes' dns (tcp)",
            address: listen,
            source,
        })?;
        let answers = idp_edge::Answers::new(zones.clone()).with_forward(plan.forward.clone());
        let token = self.shutdown.child_token();
        let task = tokio::spawn(async move {
            if let Err(e) = idp_edge::serve_dns(udp, tcp, answers, token.cancelled_owned()).await {
                tracing::error!(error = %e, address = %listen, "the nodes' dns: stopped");
            }
        });
        *running = Some((listen, task));
        tracing::info!(address = %listen, forward = ?plan.forward, "the nodes' dns: serving");
        Ok(())
    }

    /// Their listeners, while they serve.
    pub(crate) async fn listeners(&self) -> Vec<Listener> {
        let mut out = Vec::new();
        if let Some((address, task)) = self.dns_running.lock().await.as_ref()
            && !task.is_finished()
        {
            out.push(Listener { name: "node-dns".into(), address: format!("udp+tcp {address}") });
        }
        for (name, running) in [("registry", &self.running), ("registry-lan", &self.lan_running)] {
            if let Some((address, task)) = running.lock().await.as_ref()
                && !task.is_finished()
            {
                out.push(Listener { name: name.into(), address: address.to_string() });
            }
        }
        out
    }

    /// Waits for them to finish after the shutdown token was cancelled.
    pub(crate) async fn stopped(&self) {
        if let Some((_, task)) = self.dns_running.lock().await.take() {
            let _ = task.await;
        }
        for running in [&self.running, &self.lan_running] {
            if let Some((_, task)) = running.lock().await.take() {
                let _ = task.await;
            }
        }
    }
}

#[cfg(test)]
mod tests;
