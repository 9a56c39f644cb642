//! `idp-lab status`: the lab, its nodes (role, address, state, image), its ports and
//! the API's health, as text or one JSON document (its shape: `docs/status.md`). Later
//! planes add their sections to the same document.

use crate::cli::{Global, LabArgs};
use crate::exit::Failure;
use crate::lab::{self, Lab, provision_failure};
use crate::printer::{Printer, table};
use idp_core::cluster::{KubeNode, Subnet};
use idp_core::health::{self, Child, Health, Rollup};
use idp_core::settings::Ports;
use serde::Serialize;
use std::time::Duration;

/// The `status -o json` document.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    lab: String,
    profile: Option<String>,
    state: &'static str,
    network: Option<Network>,
    ports: Option<Ports>,
    api: Api,
    nodes: Vec<NodeStatus>,
    kubeconfig: Option<String>,
    daemon: Daemon,
    health: HealthSection,
    /// The objects drifted now, as the lab daemon's watchdog sees them.
    drift: Vec<idp_daemon::ObjectDrift>,
}

/// The health rollup (`idp_core::health`): the lab's verdict and each component's.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct HealthSection {
    /// The lab: the worst of its components.
    lab: Rollup,
    /// `cluster` (the node containers and the API's nodes) and `daemon` (its servers),
    /// then what the daemon's health loop judged: `vault`, each component idp-lab applied,
    /// `applications` (Argo CD) and `helm-charts` (k3s).
    components: Vec<Rollup>,
    /// When the daemon's health loop last judged the components it adds (Unix ms); none
    /// when it has not (daemon stopped, watchdog off, no tick yet).
    judged_at_ms: Option<u64>,
}

/// The lab daemon's section.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Daemon {
    /// `running` or `stopped`.
    state: &'static str,
    pid: Option<u32>,
    uptime_seconds: Option<u64>,
    listeners: Vec<idp_daemon::Listener>,
    /// Why its control socket did not answer, when it runs but does not.
    error: Option<String>,
}

async fn daemon(dir: &std::path::Path) -> Daemon {
    match idp_daemon::status(dir) {
        idp_daemon::DaemonState::Stopped => {
            Daemon { state: "stopped", pid: None, uptime_seconds: None, listeners: Vec::new(), error: None }
        }
        idp_daemon::DaemonState::Running { pid, info } => {
            let (info, error) = match tokio::time::timeout(Duration::from_secs(2), idp_daemon::health(dir)).await {
                Ok(Ok(live)) => (Some(live), None),
                Ok(Err(e)) => (info, Some(e.to_string())),
                Err(_) => (info, Some("its control socket did not answer within 2s".to_owned())),
            };
            Daemon {
                state: "running",
                pid: Some(pid),
                uptime_seconds: info.as_ref().map(|i| i.uptime().as_secs()),
                listeners: info.map(|i| i.listeners).unwrap_or_default(),
                error,
            }
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Network {
    name: String,
    subnet: Subnet,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Api {
    url: Option<String>,
    healthy: bool,
    error: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct NodeStatus {
    name: String,
    role: String,
    ip: Option<String>,
    state: String,
    image: Option<String>,
    started_at: Option<String>,
    registered: bool,
    ready: bool,
    not_ready_because: Option<String>,
}

pub fn run(global: &Global, printer: Printer, args: LabArgs) -> Result<(), Failure> {
    let lab = Lab::load(global, &args)?;
    let status = lab::runtime()?.block_on(status(&lab))?;
    printer.result(|| text(&status), &status)
}

async fn status(lab: &Lab) -> Result<Status, Failure> {
    let engine = lab::engine().await?;
    let containers = engine.nodes_of(&lab.name).await.map_err(provision_failure)?;
    let plan = lab.record.as_ref().and_then(|r| r.plan.as_ref());
    let kubeconfig_path = lab::kubeconfig_path(&lab.dir());
    let kubeconfig = std::fs::read_to_string(&kubeconfig_path).ok();
    let api_url = lab.record.as_ref().and_then(|r| r.ports.as_ref()).map(|p| {
        let connect = lab.ctx.config.network.bind_address;
        let connect = if connect.is_unspecified() { std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST) } else { connect };
        format!("https://{connect}:{}", p.api)
    });
    let running = containers.iter().any(|c| c.running);
    let (api, kube_nodes) = match (&kubeconfig, running) {
        (Some(text), true) => match api_health(text).await {
            Ok(nodes) => (Api { url: api_url, healthy: true, error: None }, nodes),
            Err(e) => (Api { url: api_url, healthy: false, error: Some(e) }, Vec::new()),
        },
        (None, true) => (
            Api { url: api_url, healthy: false, error: Some("no kubeconfig in the lab's state; `idp-lab up` writes it".into()) },
            Vec::new(),
        ),
        (_, false) => (Api { url: api_url, healthy: false, error: Some("no node runs".into()) }, Vec::new()),
    };
    let mut names: Vec<String> = plan.map(|p| p.nodes.iter().map(|n| n.name.clone()).collect()).unwrap_or_default();
    for c in &containers {
        if !names.contains(&c.name) {
            names.push(c.name.clone());
        }
    }
    let nodes = names
        .iter()
        .map(|name| {
            let container = containers.iter().find(|c| &c.name == name);
            let spec = plan.and_then(|p| p.node(name));
            let kube = kube_nodes.iter().find(|k| &k.name == name);
            NodeStatus {
                name: name.clone(),
                role: spec
                    .map(|s| s.role.as_str().to_owned())
                    .unwrap_or_else(|| if name.contains("-server-") { "server".into() } else { "agent".into() }),
                ip: container.and_then(|c| c.ip).or(spec.map(|s| s.ip)).map(|ip| ip.to_string()),
                state: container.map(|c| c.state.clone()).unwrap_or_else(|| "missing".into()),
                image: container.map(|c| c.image.clone()).or(spec.map(|s| s.image.clone())),
                started_at: container.and_then(|c| c.started_at.clone()),
                registered: kube.is_some(),
                ready: kube.is_some_and(|k| k.ready),
                not_ready_because: kube.and_then(|k| k.not_ready_because.clone()),
            }
        })
        .collect::<Vec<_>>();
    let state = match (plan.is_some() || !containers.is_empty(), running, nodes.iter().all(|n| n.state == "running")) {
        (false, _, _) => "absent",
        (true, false, _) => "stopped",
        (true, true, true) => "running",
        (true, true, false) => "degraded",
    };
    let daemon = daemon(&lab.dir()).await;
    let answers = daemon.state == "running" && daemon.error.is_none();
    let watched = match answers {
        true => tokio::time::timeout(Duration::from_secs(2), idp_daemon::lab_health(&lab.dir())).await.ok().and_then(Result::ok).flatten(),
        false => None,
    };
    let health = health_section(&nodes, &api, &daemon, watched);
    let drift = if answers {
        match tokio::time::timeout(Duration::from_secs(2), idp_daemon::drift(&lab.dir())).await {
            Ok(Ok(drift)) => drift,
            _ => Vec::new(),
        }
    } else {
        Vec::new()
    };
    Ok(Status {
        lab: lab.name.clone(),
        profile: lab.record.as_ref().map(|r| r.profile.clone()),
        state,
        network: plan.map(|p| Network { name: p.network.name.clone(), subnet: p.network.subnet }),
        ports: lab.record.as_ref().and_then(|r| r.ports.clone()),
        api,
        nodes,
        kubeconfig: kubeconfig.is_some().then(|| kubeconfig_path.display().to_string()),
        daemon,
        health,
        drift,
    })
}

/// The cluster's health from its node containers and the API's nodes, the daemon's from
/// its state and listeners, then the components the daemon's health loop judged (its
/// `cluster` is judged here, now), and the lab's from all.
fn health_section(nodes: &[NodeStatus], api: &Api, daemon: &Daemon, watched: Option<idp_daemon::health::HealthSnapshot>) -> HealthSection {
    let mut cluster = Vec::new();
    for n in nodes {
        let state = (n.state != "missing").then_some(n.state.as_str());
        cluster.push(health::container(&n.name, state));
        let subject = format!("Node {}", n.name);
        cluster.push(match (api.healthy, n.registered, n.ready) {
            (false, _, _) => Child::unknown(subject, api.error.clone().unwrap_or_else(|| "the API did not answer".into())),
            (true, false, _) => Child { subject, health: Health::Progressing, reason: "not registered with the API yet".into() },
            (true, true, true) => Child { subject, health: Health::Healthy, reason: String::new() },
            (true, true, false) => {
                Child { subject, health: Health::Progressing, reason: n.not_ready_because.clone().unwrap_or_else(|| "NotReady".into()) }
            }
        });
    }
    let daemon_children = match (daemon.state, &daemon.error) {
        ("running", None) => daemon
            .listeners
            .iter()
            .map(|l| Child { subject: format!("listener {} {}", l.name, l.address), health: Health::Healthy, reason: String::new() })
            .collect(),
        ("running", Some(e)) => vec![Child::unknown("lab daemon", e.clone())],
        _ => vec![Child {
            subject: "lab daemon".into(),
            health: Health::Degraded,
            reason: "stopped: no HTTPS entry, DNS answer or registry (`idp-lab up` starts it)".into(),
        }],
    };
    let mut components = vec![health::rollup("cluster", &cluster), health::rollup("daemon", &daemon_children)];
    let judged_at_ms = watched.as_ref().map(|w| w.at_ms);
    components.extend(watched.into_iter().flat_map(|w| w.components).filter(|c| c.name != "cluster"));
    HealthSection { lab: health::lab(&components), components, judged_at_ms }
}

async fn api_health(kubeconfig: &str) -> Result<Vec<KubeNode>, String> {
    let check = async {
        let cluster = idp_kube::Cluster::from_kubeconfig(kubeconfig, None).await.map_err(|e| e.to_string())?;
        cluster.readyz().await.map_err(|e| e.to_string())?;
        cluster.nodes().await.map_err(|e| e.to_string())
    };
    tokio::time::timeout(Duration::from_secs(5), check).await.unwrap_or_else(|_| Err("the API did not answer within 5s".into()))
}

fn text(s: &Status) -> String {
    let mut out = format!("Lab \"{}\": {}", s.lab, s.state);
    if let Some(p) = &s.profile {
        out.push_str(&format!(" (profile {p})"));
    }
    out.push('\n');
    if s.state == "absent" {
        out.push_str(&format!("  `idp-lab up --name {}` makes it.\n", s.lab));
        return out;
    }
    if let Some(n) = &s.network {
        out.push_str(&format!("  network {} ({})\n", n.name, n.subnet));
    }
    match (&s.api.url, s.api.healthy, &s.api.error) {
        (Some(url), true, _) => out.push_str(&format!("  API {url}: healthy\n")),
        (Some(url), false, Some(e)) => out.push_str(&format!("  API {url}: not answering ({e})\n")),
        _ => {}
    }
    if let Some(p) = &s.ports {
        let gateway: Vec<String> = p.gateway.iter().map(|g| format!("{} http {} https {}", g.node, g.http, g.https)).collect();
        let dns = p.dns.map(|d| format!(", dns {d}")).unwrap_or_default();
        out.push_str(&format!(
            "  ports: http {}, https {}, api {}{dns}; gateway (loopback): {}\n",
            p.http,
            p.https,
            p.api,
            gateway.join("; ")
        ));
    }
    let d = &s.daemon;
    match (d.pid, &d.error) {
        (None, _) => out.push_str(&format!("  lab daemon: stopped (`idp-lab up --name {}` starts it)\n", s.lab)),
        (Some(pid), error) => {
            let listeners: Vec<String> =
                d.listeners.iter().filter(|l| l.name != "control").map(|l| format!("{} {}", l.name, l.address)).collect();
            let uptime = d.uptime_seconds.map(|u| format!(", up {}", crate::progress::seconds(Duration::from_secs(u)))).unwrap_or_default();
            out.push_str(&format!("  lab daemon: running (pid {pid}{uptime}): {}\n", listeners.join(", ")));
            if let Some(e) = error {
                out.push_str(&format!("    not answering: {e}\n"));
            }
        }
    }
    let h = &s.health;
    out.push_str(&format!("  health: {}\n", h.lab.health));
    for c in &h.components {
        out.push_str(&format!("    {}: {}\n", c.name, c.health));
        for r in c.reasons.iter().take(5) {
            out.push_str(&format!("      {r}\n"));
        }
        if c.reasons.len() > 5 {
            out.push_str(&format!("      ... and {} more (`-o json` lists them)\n", c.reasons.len() - 5));
        }
    }
    if !s.drift.is_empty() {
        out.push_str(&format!("  drift: {} object(s)\n", s.drift.len()));
        for d in s.drift.iter().take(10) {
            let fields: Vec<&str> = d.fields.iter().map(|f| f.path.as_str()).collect();
            let by = d.manager.as_deref().map(|m| format!(" by {m}")).unwrap_or_default();
            let state = serde_json::to_value(d.state).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
            out.push_str(&format!("    {} ({}): {}{by}, {state}\n", d.object, d.component, fields.join(", ")));
        }
    }
    let rows: Vec<Vec<String>> = s
        .nodes
        .iter()
        .map(|n| {
            let kube = match (n.registered, n.ready) {
                (true, true) => "Ready".to_owned(),
                (true, false) => "NotReady".to_owned(),
                (false, _) => "-".to_owned(),
            };
            vec![
                n.name.clone(),
                n.role.clone(),
                n.ip.clone().unwrap_or_default(),
                n.state.clone(),
                kube,
                n.image.clone().unwrap_or_default(),
            ]
        })
        .collect();
    out.push_str(&table(&["NODE", "ROLE", "IP", "STATE", "KUBERNETES", "IMAGE"], &rows));
    if let Some(k) = &s.kubeconfig {
        out.push_str(&format!("  kubeconfig: {k}\n"));
    }
    out
}
