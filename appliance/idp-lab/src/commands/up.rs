//! `idp-lab up`: make the lab's cluster, or bring an existing lab back to its
//! configuration: a pure plan from the settings and what Docker shows, then the
//! provisioning plane carries it out, then the API confirms the nodes.

use crate::cli::{Global, UpArgs};
use crate::exit::{CONFLICT, Failure, INPUT, PORT, PREFLIGHT, TIMEOUT};
use crate::lab::{self, Lab, kube_failure, provision_failure};
use crate::printer::Printer;
use crate::progress::Steps;
use idp_core::cluster::{self, Action, ClusterPlan, KubeNode};
use idp_core::config::{Flavor, Security};
use idp_core::settings::{self, Settings};
use idp_provision::{Engine, HostInputs, Progress, Provider as _, ProvisionError};
use idp_state::LabRecord;
use serde::Serialize;
use std::collections::BTreeSet;
use std::time::Instant;

/// How often a port (or subnet) taken by a concurrent `up` is replaced before `up`
/// gives up.
const PORT_RETRIES: usize = 5;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UpResult<'a> {
    lab: &'a str,
    dry_run: bool,
    actions: &'a [Action],
    api: String,
    kubeconfig: Option<String>,
    /// The loopback ports publishing each Gateway node's node ports (the lab daemon
    /// forwards the HTTPS entry to them).
    gateway: &'a [settings::GatewayPorts],
    /// The plan, with `--dry-run`.
    plan: Option<&'a ClusterPlan>,
    /// The lab daemon serving the HTTPS entry and the DNS answer.
    daemon: Option<idp_daemon::DaemonInfo>,
    /// Offline (`registry.offline`): what came from the bundle.
    offline: Option<OfflineResult>,
    /// The platform's bootstrap, phase by phase (none with `--no-platform`).
    platform: Option<crate::platform::InstallResult>,
    nodes: Vec<KubeNode>,
    seconds: f64,
}

/// What an offline `up` took from the bundle.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OfflineResult {
    /// The bundle.
    bundle: String,
    /// Whether this run loaded the node image into Docker from it.
    loaded_node_image: bool,
    /// The k3s air-gap images every node mounts.
    airgap_images: Vec<String>,
}

pub fn run(global: &Global, printer: Printer, args: UpArgs) -> Result<(), Failure> {
    let mut lab = Lab::load(global, &args.lab)?;
    match lab.ctx.config.cluster.flavor {
        Flavor::K3s => {}
        Flavor::Kind => {
            return Err(Failure::new(
                INPUT,
                "cluster.flavor = \"kind\" is not available yet: kind-style nodes come with their own work; use \"k3s\"",
            ));
        }
        Flavor::Existing => {
            return Err(Failure::new(
                INPUT,
                "cluster.flavor = \"existing\" is not available yet: installing onto an existing cluster comes with the platform; use \"k3s\"",
            ));
        }
    }
    let timeout = lab::timeout(args.timeout.as_deref(), std::time::Duration::from_secs(lab.ctx.config.timeouts.cluster))?;
    lab::runtime()?.block_on(up(&mut lab, &args, timeout, global, printer))
}

async fn up(lab: &mut Lab, args: &UpArgs, timeout: std::time::Duration, global: &Global, printer: Printer) -> Result<(), Failure> {
    let began = Instant::now();
    let mut settings = lab.ctx.settings()?;
    let mut steps = Steps::new(global.quiet || printer.output != crate::cli::Output::Text);
    steps.note(&format!(
        "idp-lab {} · lab \"{}\" · profile {} · {}",
        env!("CARGO_PKG_VERSION"),
        lab.name,
        settings.profile,
        settings.cluster.image
    ));

    // Preflight: Docker, the image, the privileges, the subnet.
    steps.start("preflight");
    let engine = lab::engine().await?;
    let info = engine.info().await.map_err(provision_failure)?;
    let image = settings.cluster.image.to_string();
    // Offline: the bundle must hold what the nodes need, before anything is made.
    let mut loaded_node_image = false;
    let offline = if settings.registry.offline {
        let offline = crate::offline::check(&lab.ctx, &settings, args.no_platform).inspect_err(|_| steps.failed("preflight"))?;
        if !args.dry_run && crate::offline::ensure_node_image(&engine, &offline, &image).await.inspect_err(|_| steps.failed("preflight"))? {
            steps.detail(&format!("{image} loaded into Docker from {}", offline.bundle.display()));
            loaded_node_image = true;
        }
        Some(offline)
    } else {
        engine.ensure_image(&image, false).await.map_err(provision_failure)?;
        None
    };
    let mut subnet = match lab.record.as_ref().and_then(|r| r.plan.as_ref()) {
        Some(previous) => previous.network.subnet,
        None => {
            let taken = engine.subnets_in_use().await.map_err(provision_failure)?;
            cluster::choose_subnet(&idp_host::net::routes(), &taken).ok_or_else(|| {
                Failure::new(
                    PREFLIGHT,
                    "no free /24 in 172.30.0.0/15 for the lab network: every one overlaps a host route or another Docker network",
                )
            })?
        }
    };
    let mut plan = cluster::cluster_plan(&settings, subnet, info.bridge_mtu);
    let observed = engine.inspect(&plan).await.map_err(provision_failure)?;
    let previous = lab.record.as_ref().and_then(|r| r.plan.clone());
    let actions = cluster::plan(&plan, &observed, previous.as_ref(), args.recreate).map_err(|e| {
        Failure::new(
            CONFLICT,
            "the configuration changed in a way that needs new nodes; `idp-lab up --recreate` replaces them (their data is lost)",
        )
        .with_details(e.to_string())
    })?;
    let changing: Vec<Action> = actions.iter().filter(|a| a.changes()).cloned().collect();
    if !args.dry_run && changing.iter().any(|a| matches!(a, Action::Create { .. } | Action::Recreate { .. } | Action::Start { .. })) {
        let probe = engine.probe_privileges(&image, settings.cluster.security, &lab.name).await.map_err(provision_failure)?;
        if !probe.allowed {
            let mode = match settings.cluster.security {
                Security::Privileged => "privileged".to_owned(),
                Security::Capabilities => "with the capability list of cluster.security = \"capabilities\"".to_owned(),
            };
            steps.failed("preflight");
            return Err(provision_failure(ProvisionError::PrivilegesRefused { mode, message: probe.message.unwrap_or_default() }));
        }
    }
    // Every host port of a node that will start must be free now, before anything is made;
    // they stay reserved until Docker publishes them. A new lab's ports are chosen again
    // when another process took one between the probe and the reservation.
    let mut reservation = None;
    let mut wanted = Vec::new();
    for attempt in 0..=PORT_RETRIES {
        // A node being recreated holds its own ports until it is removed: not checked.
        let starting: BTreeSet<&str> =
            changing.iter().filter(|a| matches!(a, Action::Create { .. } | Action::Start { .. })).map(|a| a.target()).collect();
        wanted = plan
            .nodes
            .iter()
            .filter(|n| starting.contains(n.name.as_str()))
            .flat_map(|n| n.ports.iter().map(|p| (p.host_ip, p.host_port)))
            .collect();
        // A new lab also holds its HTTP, HTTPS and DNS ports until its record pins them,
        // so a lab made at the same time chooses others (the lab daemon binds them later).
        if lab.record.as_ref().and_then(|r| r.ports.as_ref()).is_none() {
            let bind = settings.network.bind_address;
            wanted.extend([(bind, settings.network.ports.http), (bind, settings.network.ports.https)]);
            wanted.extend(settings.network.ports.dns.map(|dns| (bind, dns)));
        }
        if args.dry_run {
            break;
        }
        match idp_host::ports::reserve(&wanted) {
            Ok(r) => {
                reservation = Some(r);
                break;
            }
            Err(_) if attempt < PORT_RETRIES && lab.record.as_ref().and_then(|r| r.ports.as_ref()).is_none() => {
                settings = lab.ctx.settings()?;
                plan = cluster::cluster_plan(&settings, subnet, info.bridge_mtu);
            }
            Err(mut e) => {
                steps.failed("preflight");
                let ports = &settings.network.ports;
                // The other published ports are the Gateway's loopback ports, chosen by idp-lab.
                e.setting = (e.port == ports.api).then_some("network.api_port");
                return Err(Failure::new(PORT, e.to_string()));
            }
        }
    }
    let ports = if wanted.is_empty() {
        "no port to publish".to_owned()
    } else {
        let list = wanted.iter().map(|(_, p)| p.to_string()).collect::<Vec<_>>().join(" ");
        // Reserved above; a dry run only looks.
        let busy = if args.dry_run { idp_host::net::busy_ports(&wanted) } else { BTreeSet::new() };
        if busy.is_empty() {
            format!("ports {list} free")
        } else {
            format!("ports {list}; taken now: {}", busy.iter().map(u16::to_string).collect::<Vec<_>>().join(" "))
        }
    };
    steps.done(&format!(
        "preflight: docker {} (API {}), {} CPU, subnet {subnet}, {ports}",
        info.version,
        info.api_version,
        info.cpus.unwrap_or(0)
    ));

    if args.dry_run {
        return print_plan(printer, &lab.name, &actions, &plan, began);
    }

    // Remember the ports and the plan before anything is created: a failed `up` continues
    // from here, and `down` knows what to remove.
    let save = |lab: &mut Lab, settings: &Settings, plan: &ClusterPlan| {
        lab.save(LabRecord {
            profile: settings.profile.clone(),
            config: serde_json::to_value(&lab.ctx.config).unwrap_or_default(),
            written_by: env!("CARGO_PKG_VERSION").to_owned(),
            ports: Some(settings.network.ports.clone()),
            plan: Some(plan.clone()),
        })
    };
    let new_ports = lab.record.as_ref().and_then(|r| r.ports.as_ref()).is_none();
    save(lab, &settings, &plan)?;
    // The air-gap images every offline node mounts into its images directory.
    if let Some(offline) = &offline {
        let (path, written) = crate::offline::write_airgap(offline, &lab.dir())?;
        if written {
            steps.detail(&format!("{} k3s air-gap images written to {}", offline.airgap.len(), path.display()));
        }
    }
    // The lab CA: stable across `down` and `up`, new with `--new-ca`.
    let ca = lab::lab_ca(&lab.name, &lab.dir(), &settings.network.dns_suffix, args.new_ca)?;
    if ca.is_new() {
        steps.done(&format!(
            "lab CA for *.{} made ({}); `idp-lab trust install` trusts it",
            settings.network.dns_suffix,
            ca.cert_path().display()
        ));
    }
    // The lab daemon takes the HTTP, HTTPS and DNS ports now that the record pins them,
    // straight from the reservation, so no other program (or lab of another home) takes
    // one in between; it waits for the cluster's kubeconfig and is reloaded below.
    if let Some(r) = reservation.as_mut() {
        let n = &settings.network.ports;
        for port in [n.http, n.https].into_iter().chain(n.dns) {
            r.release(port);
        }
    }
    // A new lab's port can still be taken in the instant between the release and the
    // daemon's bind (by a lab of another idp-lab home, which cannot see this one's
    // record): it is chosen again, as for the nodes' ports.
    let mut attempt = 0;
    loop {
        match crate::daemon::ensure_running(global, lab).await {
            Ok(_) => break,
            Err(e) if e.code == PORT && new_ports && attempt < PORT_RETRIES => {
                attempt += 1;
                let bind = settings.network.bind_address;
                let n = &settings.network.ports;
                let wanted: Vec<(std::net::IpAddr, u16)> = [n.http, n.https].into_iter().chain(n.dns).map(|p| (bind, p)).collect();
                let mut busy = idp_host::net::busy_ports(&wanted);
                for port in busy.clone() {
                    if settings::replace_taken_port(&lab.ctx.config, &mut settings.network.ports, port, &mut busy, &BTreeSet::new()) {
                        steps.detail(&format!("port {port} was taken meanwhile; chose another"));
                    }
                }
                save(lab, &settings, &plan)?;
            }
            Err(e) => {
                steps.failed("lab daemon");
                return Err(daemon_failed(e, &lab.name));
            }
        }
    }
    // What the daemon was started with: a port or the subnet chosen again below restarts it.
    let daemon_started_with = (settings.network.ports.clone(), subnet);
    let host = HostInputs {
        token: lab::token(&lab.dir())?,
        nameservers: idp_host::net::nameservers(),
        proxy_env: idp_host::facts::proxy_env(),
        state_dir: lab.dir(),
    };

    if !changing.is_empty() {
        steps.start("nodes");
        let mut actions = actions.clone();
        let mut busy = BTreeSet::new();
        let reserved = BTreeSet::new();
        let mut refused = Vec::new();
        let mut attempt = 0;
        loop {
            let mut lines = Vec::new();
            let result = {
                let res = &mut reservation;
                let mut release = |ports: &[u16]| {
                    if let Some(r) = res.as_mut() {
                        for p in ports {
                            r.release(*p);
                        }
                    }
                };
                let mut progress = |p: Progress| lines.push(p);
                engine.create(&plan, &actions, &host, timeout, &mut release, &mut progress).await
            };
            for line in &lines {
                if let Progress::NodeReady { node, after } = line {
                    steps.detail(&format!("{node} ready after {}", crate::progress::seconds(*after)));
                }
            }
            match result {
                Ok(()) => break,
                Err(ProvisionError::PortAllocated { node, port })
                    if attempt < PORT_RETRIES && {
                        // What the host has bound now, so the replacement is not taken too.
                        busy.extend(idp_host::net::busy_ports(&settings::port_candidates(&lab.ctx.config, None)));
                        settings::replace_taken_port(&lab.ctx.config, &mut settings.network.ports, port, &mut busy, &reserved)
                    } =>
                {
                    attempt += 1;
                    steps.detail(&format!("port {port} of {node} was taken meanwhile; chose another"));
                    plan = cluster::cluster_plan(&settings, subnet, info.bridge_mtu);
                    save(lab, &settings, &plan)?;
                    let observed = engine.inspect(&plan).await.map_err(provision_failure)?;
                    actions = cluster::plan(&plan, &observed, None, true).map_err(|e| Failure::new(CONFLICT, e.to_string()))?;
                }
                Err(ProvisionError::SubnetTaken { .. }) if attempt < PORT_RETRIES => {
                    // Docker holds a new network's pool before it lists the network: skip the
                    // subnet that failed, and give the other creator a moment.
                    attempt += 1;
                    refused.push(subnet);
                    tokio::time::sleep(std::time::Duration::from_millis(300 * attempt as u64)).await;
                    let mut taken = engine.subnets_in_use().await.map_err(provision_failure)?;
                    taken.extend(refused.iter().copied());
                    subnet = cluster::choose_subnet(&idp_host::net::routes(), &taken)
                        .ok_or_else(|| Failure::new(PREFLIGHT, "no free /24 in 172.30.0.0/15 for the lab network"))?;
                    steps.detail(&format!("the subnet was taken meanwhile; chose {subnet}"));
                    plan = cluster::cluster_plan(&settings, subnet, info.bridge_mtu);
                    save(lab, &settings, &plan)?;
                }
                Err(e) => {
                    steps.failed("nodes");
                    return Err(failed(&engine, &plan, lab, provision_failure(e)).await);
                }
            }
        }
        let summary: Vec<String> = plan
            .nodes
            .iter()
            .map(|n| match n.node_labels.get("role") {
                Some(role) => format!("{} (role={role})", n.name),
                None => n.name.clone(),
            })
            .collect();
        steps.done(&format!("nodes: {}", summary.join(", ")));
    } else {
        steps.done("nodes: all running and unchanged");
    }
    drop(reservation);
    // The network exists now: the daemon may serve the nodes on its gateway address.
    idp_daemon::write_network(&lab.dir(), std::net::IpAddr::V4(plan.network.gateway)).map_err(crate::daemon::failure)?;

    // The kubeconfig, then the API's word on the nodes.
    steps.start("API");
    let api = format!("https://{}:{}", settings.network.connect_address, settings.network.ports.api);
    let raw = engine.kubeconfig(&plan).await.map_err(provision_failure)?;
    let kubeconfig = idp_kube::kubeconfig::lab_kubeconfig(&raw, &lab.name, &api).map_err(kube_failure)?;
    lab::write_private(&lab::kubeconfig_path(&lab.dir()), kubeconfig.as_bytes())?;
    let merged = idp_kube::kubeconfig::default_path();
    if let Some(path) = &merged {
        idp_kube::kubeconfig::merge(path, &kubeconfig, &lab.name, args.switch_context).map_err(kube_failure)?;
    }
    let nodes =
        match wait_for_nodes(&kubeconfig, &plan, timeout.saturating_sub(began.elapsed()).max(std::time::Duration::from_secs(30))).await {
            Ok(nodes) => nodes,
            Err(e) => {
                steps.failed("API");
                return Err(failed(&engine, &plan, lab, e).await);
            }
        };
    let waiting = nodes.iter().filter(|n| !n.ready).count();
    // KEP-1755: tools find the lab registry in kube-public/local-registry-hosting.
    if let Err(e) = advertise_registry(&kubeconfig, &lab.name, plan.network.gateway, timeout).await {
        steps.failed("API");
        return Err(failed(&engine, &plan, lab, e).await);
    }
    steps.done(&format!("API ready at {api}, {} nodes registered", nodes.len()));
    if waiting > 0 {
        steps.detail(&format!("{waiting} of {} nodes wait for a CNI (NotReady until the platform's Cilium runs)", nodes.len()));
    }
    // The lab daemon: started, or told to re-read the kubeconfig (a reboot left the nodes
    // to Docker's restart policy and the daemon gone: this brings it back).
    steps.start("lab daemon");
    if (settings.network.ports.clone(), subnet) != daemon_started_with {
        // A Gateway port or the subnet was replaced while the nodes were made: the daemon,
        // which serves on the lab network's address, starts anew.
        idp_daemon::stop(&lab.dir(), crate::daemon::STOP_TIMEOUT).map_err(crate::daemon::failure)?;
    }
    let daemon = match crate::daemon::ensure_running(global, lab).await {
        Ok(info) => info,
        Err(e) => {
            steps.failed("lab daemon");
            return Err(daemon_failed(e, &lab.name));
        }
    };
    steps.done(&format!("lab daemon: {} (pid {})", crate::daemon::listeners_line(&daemon), daemon.pid));
    // The platform: its charts and stacks pushed to the lab registry, then the bootstrap.
    let platform = if args.no_platform {
        None
    } else {
        let installed = crate::platform::up(lab, &settings, &plan, &kubeconfig, offline.as_ref(), &mut steps).await;
        // What was applied is watched for drift from now on, even after a failure.
        if let Err(e) = idp_daemon::reload(&lab.dir()).await {
            steps.detail(&format!("the lab daemon was not reloaded ({e}); `idp-lab up` again reloads it"));
        }
        match installed {
            Ok(result) => Some(result),
            Err(e) => return Err(failed(&engine, &plan, lab, e).await),
        }
    };
    let result = UpResult {
        lab: &lab.name,
        dry_run: false,
        actions: &actions,
        api: api.clone(),
        kubeconfig: merged.as_ref().map(|p| p.display().to_string()),
        gateway: &settings.network.ports.gateway,
        plan: None,
        daemon: Some(daemon),
        offline: offline.as_ref().map(|o| OfflineResult {
            bundle: o.bundle.display().to_string(),
            loaded_node_image,
            airgap_images: o.airgap.iter().map(|p| p.reference.clone()).collect(),
        }),
        nodes,
        platform,
        seconds: began.elapsed().as_secs_f64(),
    };
    printer.result(
        || {
            let context = format!("idp-lab-{}", lab.name);
            let what = if result.platform.is_some() {
                format!("platform: profile {}", settings.profile)
            } else {
                "cluster only: --no-platform".to_owned()
            };
            let mut out = format!("Lab \"{}\" is up in {} ({what}).\n", lab.name, crate::progress::seconds(began.elapsed()));
            out.push_str(&format!("  API:        {api}\n"));
            let gateway: Vec<String> =
                result.gateway.iter().map(|g| format!("{} http 127.0.0.1:{} https 127.0.0.1:{}", g.node, g.http, g.https)).collect();
            out.push_str(&format!(
                "  Gateway:    {} (node ports {}/{})\n",
                gateway.join(", "),
                settings.network.http_nodeport,
                settings.network.https_nodeport,
            ));
            let https = settings.network.ports.https;
            let port = if https == 443 { String::new() } else { format!(":{https}") };
            if let Some(daemon) = &result.daemon {
                out.push_str(&format!(
                    "  Entry:      https://{}{port}/ (lab daemon pid {}: {})\n",
                    settings.network.dns_suffix,
                    daemon.pid,
                    crate::daemon::listeners_line(daemon)
                ));
            }
            match &result.kubeconfig {
                Some(path) => out.push_str(&format!(
                    "  Kubeconfig: context {context} in {path}{}\n",
                    if args.switch_context { " (current)" } else { "" }
                )),
                None => out.push_str(&format!("  Kubeconfig: {}\n", lab::kubeconfig_path(&lab.dir()).display())),
            }
            if result.platform.is_some() {
                out.push_str(&format!(
                    "  URLs: idp-lab urls --name {}      Logins: idp-lab creds --name {}      Checks: idp-lab verify --name {}\n",
                    lab.name, lab.name, lab.name
                ));
            }
            out.push_str(&format!(
                "  Status: idp-lab status --name {}      Stop: idp-lab stop --name {}      Remove: idp-lab down --name {}\n",
                lab.name, lab.name, lab.name
            ));
            out
        },
        &result,
    )
}

/// A daemon that did not start: how to see why, and how to go on.
fn daemon_failed(e: Failure, lab: &str) -> Failure {
    let message = format!(
        "{}\n  `idp-lab serve --name {lab}` runs the lab daemon in the foreground to see why; `idp-lab up --name {lab}` retries",
        e.message
    );
    let failure = Failure::new(e.code, message);
    match e.details {
        Some(details) => failure.with_details(details),
        None => failure,
    }
}

/// Waits until the API lists every node of the plan with its labels and taints.
async fn wait_for_nodes(kubeconfig: &str, plan: &ClusterPlan, timeout: std::time::Duration) -> Result<Vec<KubeNode>, Failure> {
    let cluster = idp_kube::Cluster::from_kubeconfig(kubeconfig, None).await.map_err(kube_failure)?;
    cluster.wait_for_nodes(&plan.nodes, timeout).await.map_err(|e| Failure::new(TIMEOUT, e.to_string()))
}

/// Applies KEP-1755's `kube-public/local-registry-hosting`, naming the lab registry.
async fn advertise_registry(kubeconfig: &str, lab: &str, gateway: std::net::Ipv4Addr, timeout: std::time::Duration) -> Result<(), Failure> {
    let cluster = idp_kube::Cluster::from_kubeconfig(kubeconfig, None).await.map_err(kube_failure)?;
    let object = idp_core::objects::Object {
        value: cluster::local_registry_hosting(gateway).config_map(),
        place: idp_core::objects::Place { source: "the lab registry (KEP-1755)".into(), document: 1, item: None },
        wave: None,
    };
    let mut options = idp_kube::ApplyOptions::new(lab, "local-registry-hosting");
    options.timeout = timeout.min(std::time::Duration::from_secs(60));
    let mut cache = idp_kube::ApplyCache::default();
    cluster.apply(vec![object], &options, &mut cache, &|_| {}).await.map_err(kube_failure)?;
    Ok(())
}

/// A failed `up`: the node logs are saved, and the failure says how to go on.
async fn failed(engine: &Engine, plan: &ClusterPlan, lab: &Lab, failure: Failure) -> Failure {
    let logs = lab::save_logs(engine, plan, &lab.dir()).await;
    let mut details = failure.details.clone().unwrap_or_default();
    if let Some(dir) = logs {
        if !details.is_empty() {
            details.push('\n');
        }
        details.push_str(&format!("  Node logs were saved to {}/", dir.display()));
    }
    let message = format!(
        "{}\n  run `idp-lab up --name {}` again to continue from here, or `idp-lab down --name {}` to remove what was made",
        failure.message, lab.name, lab.name
    );
    let failure = Failure::new(failure.code, message);
    if details.is_empty() { failure } else { failure.with_details(details) }
}

fn print_plan(printer: Printer, lab: &str, actions: &[Action], plan: &ClusterPlan, began: Instant) -> Result<(), Failure> {
    let result = UpResult {
        lab,
        dry_run: true,
        actions,
        api: String::new(),
        kubeconfig: None,
        gateway: &[],
        plan: Some(plan),
        daemon: None,
        offline: None,
        nodes: Vec::new(),
        platform: None,
        seconds: began.elapsed().as_secs_f64(),
    };
    printer.result(
        || {
            let rows: Vec<Vec<String>> =
                actions.iter().map(|a| vec![a.verb().to_owned(), a.target().to_owned(), a.reason().to_owned()]).collect();
            let mut out = format!(
                "Plan for lab \"{lab}\" (--dry-run: nothing was changed):\n{}",
                crate::printer::table(&["ACTION", "TARGET", "WHY"], &rows)
            );
            out.push_str(&format!("Network {} ({}), nodes:\n", plan.network.name, plan.network.subnet));
            for n in &plan.nodes {
                let ports: Vec<String> = n.ports.iter().map(|p| format!("{}:{}->{}", p.host_ip, p.host_port, p.container_port)).collect();
                out.push_str(&format!("  {} {} {} {}\n    k3s {}\n", n.name, n.ip, n.image, ports.join(" "), n.args.join(" ")));
            }
            out
        },
        &result,
    )
}
