//! What the commands share about the lab daemon: its plan from the lab's settings,
//! starting it detached (`up`), and stopping it (`down`).

use crate::cli::Global;
use crate::exit::{CONFLICT, Failure, IO, PORT, TIMEOUT};
use crate::lab::{self, Lab};
use idp_core::names::Zones;
use idp_core::settings::Settings;
use idp_daemon::{DaemonError, DaemonInfo, DaemonState, LOG_FILE, NodeDnsPlan, Plan, RegistryPlan};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The registry's port on the lab network's gateway address (k3d's and kind's usual one).
pub use idp_core::cluster::REGISTRY_PORT;

/// How long a detached daemon has to answer on its control socket.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long `down` waits for the daemon to stop after SIGTERM.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// The daemon's plan for `lab` with `settings`; `gateway`, when not empty, replaces the
/// Gateway's loopback ports (to put the entry in front of another server).
pub fn plan(lab: &Lab, settings: &Settings, gateway: &[SocketAddr]) -> Plan {
    let n = &settings.network;
    let answer = custom_answer(n.bind_address, n.lan_ip);
    let host_nameservers = idp_host::net::nameservers();
    let gateway = if gateway.is_empty() {
        n.ports.gateway.iter().map(|g| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), g.https)).collect()
    } else {
        gateway.to_vec()
    };
    Plan {
        lab: lab.name.clone(),
        dir: lab.dir(),
        ca_dir: lab::ca_dir(&lab.dir()),
        bind: n.bind_address,
        http_port: n.ports.http,
        https_port: n.ports.https,
        dns_port: n.ports.dns,
        suffix: n.dns_suffix.clone(),
        zones: Zones::new(Some(&n.dns_suffix), answer),
        dns_forward: n.dns_forward.clone(),
        gateway,
        // On the lab network's gateway address, once `up` made the network (NETWORK_FILE).
        // The bundle, when there is one, as the mirror of every registry it holds images of.
        registry: Some(RegistryPlan {
            port: REGISTRY_PORT,
            layout: crate::offline::bundle_path(settings).ok().filter(|p| p.is_file()),
            local_dir: lab.dir().join("registry"),
            // Workshop mode: the bundle, read-only, on this machine's LAN address.
            lan: lan_registry(settings),
        }),
        // History, playbooks and the Alertmanager receiver (on the gateway address).
        watchdog: settings.watchdog.enabled.then(|| idp_daemon::WatchdogPlan {
            settings: settings.watchdog.clone(),
            receiver_port: match settings.watchdog.receiver_port {
                idp_core::config::PortSetting::Fixed(port) => port,
                idp_core::config::PortSetting::Auto => idp_daemon::RECEIVER_PORT,
            },
        }),
        // Not when the lab's own DNS answer already listens there (bound to all on 53).
        node_dns: node_dns_needed(&host_nameservers, n.bind_address, n.ports.dns)
            .then(|| NodeDnsPlan { port: 53, forward: node_dns_forward(&n.dns_forward, &host_nameservers) }),
    }
}

/// Where workshop mode (`registry.serve_lan`) serves the bundle read-only: port 5000 of
/// the LAN address (`network.lan_ip`, else the detected one); none without one.
fn lan_registry(settings: &Settings) -> Option<SocketAddr> {
    if !settings.registry.serve_lan {
        return None;
    }
    match settings.network.lan_ip {
        Some(ip) => Some(SocketAddr::new(ip, REGISTRY_PORT)),
        None => {
            tracing::warn!("registry.serve_lan is set but this machine has no LAN address (no default route); set network.lan_ip");
            None
        }
    }
}

/// Whether the nodes need the daemon's DNS answer on the gateway: only when their
/// `resolv.conf` names it, i.e. the host has no resolver the nodes can reach (only
/// loopback ones, see `idp_core::cluster::resolv_conf`), and the lab's own DNS answer
/// does not listen there already (bound to all addresses on 53).
fn node_dns_needed(host: &[IpAddr], bind: IpAddr, dns_port: Option<u16>) -> bool {
    let reachable = host.iter().any(|ip| !ip.is_loopback() && !ip.is_unspecified());
    let already_there = bind.is_unspecified() && dns_port == Some(53);
    !(reachable || already_there)
}

/// Where the nodes' DNS answer sends names that are not the lab's: `network.dns_forward`,
/// else the host's own resolvers on port 53.
fn node_dns_forward(configured: &[SocketAddr], host: &[IpAddr]) -> Vec<SocketAddr> {
    if configured.is_empty() { host.iter().map(|ip| SocketAddr::new(*ip, 53)).collect() } else { configured.to_vec() }
}

/// What a custom DNS suffix answers: the bind address, or the LAN address when bound to
/// every address (loopback when there is none).
fn custom_answer(bind: IpAddr, lan_ip: Option<IpAddr>) -> IpAddr {
    if bind.is_unspecified() { lan_ip.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)) } else { bind }
}

/// A daemon error as a failure with its exit code.
pub fn failure(e: DaemonError) -> Failure {
    let code = match &e {
        DaemonError::AlreadyRunning { .. } => CONFLICT,
        DaemonError::Bind { .. } => PORT,
        DaemonError::StopTimeout { .. } => TIMEOUT,
        DaemonError::Io { .. } | DaemonError::Edge { .. } | DaemonError::Kube { .. } | DaemonError::Control { .. } => IO,
    };
    Failure::new(code, e.to_string())
}

/// Makes sure the lab's daemon runs: a running one reloads (re-reads the kubeconfig),
/// else one is started detached (`idp-lab serve --detach`, its log in the lab's
/// state directory) and waited for. What it serves.
pub async fn ensure_running(global: &Global, lab: &Lab) -> Result<DaemonInfo, Failure> {
    let dir = lab.dir();
    if let DaemonState::Running { .. } = idp_daemon::status(&dir) {
        idp_daemon::reload(&dir).await.map_err(failure)?;
        return idp_daemon::health(&dir).await.map_err(failure);
    }
    let log_path = dir.join(LOG_FILE);
    let open_log = || {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| Failure::new(IO, format!("failed to open {}: {e}", log_path.display())))
    };
    let exe = std::env::current_exe().map_err(|e| Failure::new(IO, format!("cannot find idp-lab's own executable: {e}")))?;
    let mut command = Command::new(exe);
    if let Some(config) = &global.config {
        command.arg("--config").arg(config);
    }
    if let Some(profile) = &global.profile {
        command.arg("--profile").arg(profile);
    }
    command
        .args(["serve", "--detach", "--name", &lab.name])
        .stdin(Stdio::null())
        .stdout(open_log()?)
        .stderr(open_log()?)
        .env_remove("RUST_LOG");
    let mut child = command.spawn().map_err(|e| Failure::new(IO, format!("failed to start the lab daemon: {e}")))?;
    let began = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            // Its exit code says why (a taken port is PORT, another daemon CONFLICT).
            let code = status.code().and_then(|c| u8::try_from(c).ok()).filter(|c| *c != 0).unwrap_or(IO);
            return Err(Failure::new(code, format!("the lab daemon exited at once ({status})")).with_details(log_tail(&log_path, 15)));
        }
        if let Ok(info) = idp_daemon::health(&dir).await {
            // Reaped by nobody once detached: it runs in its own session.
            drop(child);
            return Ok(info);
        }
        if began.elapsed() > START_TIMEOUT {
            let _ = child.kill();
            return Err(Failure::new(TIMEOUT, format!("the lab daemon did not answer within {} s", START_TIMEOUT.as_secs()))
                .with_details(log_tail(&log_path, 15)));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The last `lines` lines of the daemon's log, indented, for an error's details.
fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    let mut out = format!("  The daemon's log ({}):\n", path.display());
    for line in &all[start..] {
        out.push_str("    ");
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The listeners of `info` as one short line: `https 127.0.0.1:443, dns udp+tcp ...`.
pub fn listeners_line(info: &DaemonInfo) -> String {
    info.listeners.iter().filter(|l| l.name != "control").map(|l| format!("{} {}", l.name, l.address)).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_custom_suffix_answers_the_bind_address_or_the_lan_address_when_bound_to_all() {
        let lan_ip = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 20));
        let lan = Some(lan_ip);
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        assert_eq!(custom_answer(lo, lan), lo);
        assert_eq!(custom_answer(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5)), lan), IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5)));
        assert_eq!(custom_answer(IpAddr::V4(Ipv4Addr::UNSPECIFIED), lan), lan_ip);
        assert_eq!(custom_answer(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED), None), lo);
    }

    #[test]
    fn the_nodes_dns_runs_only_when_their_resolv_conf_names_the_gateway() {
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        // systemd-resolved's local listener: a host whose resolv.conf has only it.
        let loopback_only = [IpAddr::V4(Ipv4Addr::new(127, 0, 0, 53))];
        let upstream = [IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))];
        assert!(node_dns_needed(&loopback_only, lo, Some(53)));
        assert!(node_dns_needed(&[], lo, Some(1053)));
        assert!(!node_dns_needed(&upstream, lo, Some(53)), "the nodes use the host's upstream resolvers");
        assert!(!node_dns_needed(&loopback_only, IpAddr::V4(Ipv4Addr::UNSPECIFIED), Some(53)), "the lab's own answer is there");
        assert!(node_dns_needed(&loopback_only, IpAddr::V4(Ipv4Addr::UNSPECIFIED), Some(1053)));
    }

    #[test]
    fn the_nodes_dns_forwards_to_the_configured_resolvers_else_the_hosts() {
        let host = [IpAddr::V4(Ipv4Addr::new(127, 0, 0, 53)), IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))];
        let configured: SocketAddr = "9.9.9.9:53".parse().expect("addr");
        assert_eq!(node_dns_forward(&[configured], &host), [configured]);
        assert_eq!(node_dns_forward(&[], &host), ["127.0.0.53:53".parse::<SocketAddr>().expect("a"), "10.0.0.1:53".parse().expect("b")]);
    }
}
