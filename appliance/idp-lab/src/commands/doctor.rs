//! `idp-lab doctor`: everything `up`'s preflight checks, without making a lab: Docker
//! and its API version, the node image, whether privileged containers (and the
//! capability list) are allowed, cgroups, inotify limits, free ports, memory and disk
//! against the profile's needs. Exit 7 (PREFLIGHT) when a check fails.

use crate::cli::Global;
use crate::context::Context;
use crate::exit::{Failure, PREFLIGHT};
use crate::lab;
use crate::printer::{Printer, table};
use idp_core::config::Security;
use idp_core::settings::ByteSize;
use serde::Serialize;

/// Free disk below this, where Docker keeps its data, is a warning (the kubelet evicts
/// pods when its disk runs low).
const MIN_DISK: u64 = 10 << 30;

#[derive(Serialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Verdict {
    Ok,
    Warn,
    Fail,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Check {
    check: &'static str,
    verdict: Verdict,
    detail: String,
}

pub fn run(global: &Global, printer: Printer) -> Result<(), Failure> {
    let ctx = Context::load(global, None)?;
    let settings = ctx.settings()?;
    let checks = lab::runtime()?.block_on(checks(&ctx, &settings));
    let failed: Vec<&str> = checks.iter().filter(|c| c.verdict == Verdict::Fail).map(|c| c.check).collect();
    let rows: Vec<Vec<String>> = checks
        .iter()
        .map(|c| {
            let mark = match c.verdict {
                Verdict::Ok => "ok",
                Verdict::Warn => "warn",
                Verdict::Fail => "FAIL",
            };
            vec![mark.to_owned(), c.check.to_owned(), c.detail.clone()]
        })
        .collect();
    printer.result(|| table(&["", "CHECK", "DETAIL"], &rows), &checks)?;
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Failure::new(
            PREFLIGHT,
            format!("{} check{} failed: {}", failed.len(), if failed.len() == 1 { "" } else { "s" }, failed.join(", ")),
        ))
    }
}

async fn checks(ctx: &Context, settings: &idp_core::settings::Settings) -> Vec<Check> {
    let mut out = Vec::new();
    let mut push = |check, verdict, detail: String| out.push(Check { check, verdict, detail });
    let facts = idp_host::facts::HostFacts::read();
    let engine = match lab::engine().await {
        Ok(engine) => Some(engine),
        Err(e) => {
            push("docker", Verdict::Fail, e.message);
            None
        }
    };
    let mut root_dir = None;
    if let Some(engine) = &engine {
        match engine.info().await {
            Ok(info) => {
                push("docker", Verdict::Ok, format!("engine {} (API {}) at {}", info.version, info.api_version, info.endpoint));
                let cgroup = info.cgroup_version.clone().unwrap_or_else(|| "?".into());
                push(
                    "cgroups",
                    Verdict::Ok,
                    format!("cgroup v{cgroup}, driver {}", info.cgroup_driver.clone().unwrap_or_else(|| "?".into())),
                );
                if info.security_options.iter().any(|o| o.contains("rootless")) {
                    push(
                        "rootless",
                        Verdict::Warn,
                        "the engine runs rootless: privileged nodes may be refused; cluster.security = \"capabilities\" may help".into(),
                    );
                }
                root_dir = info.root_dir.clone();
            }
            Err(e) => push("docker", Verdict::Fail, e.to_string()),
        }
        let image = settings.cluster.image.to_string();
        match engine.ensure_image(&image, true).await {
            Ok(()) => {
                push("node image", Verdict::Ok, format!("{image} is present"));
                for (security, name) in [(Security::Privileged, "privileged"), (Security::Capabilities, "capabilities")] {
                    let wanted = settings.cluster.security == security;
                    match engine.probe_privileges(&image, security, &settings.lab).await {
                        Ok(p) if p.allowed => push(
                            if wanted { "node security" } else { "other security mode" },
                            Verdict::Ok,
                            format!("{name} containers are allowed"),
                        ),
                        Ok(p) => push(
                            if wanted { "node security" } else { "other security mode" },
                            if wanted { Verdict::Fail } else { Verdict::Warn },
                            format!(
                                "{name} containers are refused: {}{}",
                                p.message.unwrap_or_default().lines().next().unwrap_or_default(),
                                if wanted && security == Security::Privileged { "; set cluster.security = \"capabilities\"" } else { "" }
                            ),
                        ),
                        Err(e) => push("node security", Verdict::Fail, e.to_string()),
                    }
                }
            }
            Err(e) => push(
                "node image",
                if settings.registry.offline { Verdict::Fail } else { Verdict::Warn },
                format!("{e}; `up` pulls it unless registry.offline"),
            ),
        }
    }
    for problem in idp_host::facts::inotify_problems(&facts) {
        push("inotify", Verdict::Warn, problem);
    }
    if idp_host::facts::inotify_problems(&facts).is_empty() {
        push(
            "inotify",
            Verdict::Ok,
            format!(
                "max_user_instances {}, max_user_watches {}",
                facts.inotify_max_user_instances.unwrap_or(0),
                facts.inotify_max_user_watches.unwrap_or(0)
            ),
        );
    }
    let ports = &settings.network.ports;
    let pinned = crate::context::lab_record(&settings.lab).ok().flatten().and_then(|r| r.ports).is_some();
    // HTTP, HTTPS, the API and DNS listen on the bind address; the Gateway's node ports
    // are published on loopback.
    let bind = settings.network.bind_address;
    let loopback = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    let mut wanted: Vec<(std::net::IpAddr, u16)> = vec![(bind, ports.http), (bind, ports.https), (bind, ports.api)];
    wanted.extend(ports.gateway.iter().flat_map(|g| [(loopback, g.http), (loopback, g.https)]));
    wanted.extend(ports.dns.map(|dns| (bind, dns)));
    let busy = idp_host::net::busy_ports(&wanted);
    if busy.is_empty() {
        push("ports", Verdict::Ok, format!("{} free", ports.all().iter().map(u16::to_string).collect::<Vec<_>>().join(" ")));
    } else {
        let held: Vec<String> = busy
            .iter()
            .map(|p| match idp_host::ports::port_holder(settings.network.bind_address, *p) {
                Some(h) => format!("{p} (held by {} pid {})", h.command, h.pid),
                None => p.to_string(),
            })
            .collect();
        let verdict = if pinned { Verdict::Warn } else { Verdict::Fail };
        push(
            "ports",
            verdict,
            format!("taken: {}{}", held.join(", "), if pinned { " (the lab pinned them; fine while it runs)" } else { "" }),
        );
    }
    let nodes = u64::from(settings.cluster.servers + settings.cluster.agents);
    match settings.cluster.memory {
        Some(per_node) => {
            let need = per_node.bytes() * nodes;
            let verdict = if facts.mem_total_bytes < need { Verdict::Warn } else { Verdict::Ok };
            push(
                "memory",
                verdict,
                format!("{nodes} nodes × {per_node} = {} of {} total", ByteSize(need), ByteSize(facts.mem_total_bytes)),
            );
        }
        None => push("memory", Verdict::Ok, format!("no cap per node; {} total", ByteSize(facts.mem_total_bytes))),
    }
    let disk_path = root_dir.unwrap_or_else(|| "/var/lib/docker".into());
    match idp_host::facts::free_disk_bytes(std::path::Path::new(&disk_path)) {
        Some(free) if free < MIN_DISK => {
            push("disk", Verdict::Warn, format!("{} free at {disk_path}; at least {} advised", ByteSize(free), ByteSize(MIN_DISK)))
        }
        Some(free) => push("disk", Verdict::Ok, format!("{} free at {disk_path}", ByteSize(free))),
        None => push("disk", Verdict::Warn, format!("free space at {disk_path} unknown (a remote engine?)")),
    }
    let _ = ctx;
    out
}
