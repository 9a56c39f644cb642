//! `idp-lab urls`: every route of the lab, from the cluster's HTTPRoutes, with the URL
//! the HTTPS entry answers it on and its health (decided from the API, as the entry does).

use crate::cli::{Global, LabArgs, TargetArgs};
use crate::context::Context;
use crate::exit::Failure;
use crate::lab::{self, kube_failure};
use crate::printer::{Printer, table};
use idp_core::routes::{Health, Route};
use serde::Serialize;

#[derive(Serialize)]
struct Url {
    url: Option<String>,
    host: String,
    route: String,
    backends: Vec<String>,
    ready: bool,
    reason: Option<String>,
}

/// The lab's routes (`--name`, default `lab.name`), or a cluster's (`--kubeconfig`).
pub fn run(global: &Global, printer: Printer, mut args: TargetArgs) -> Result<(), Failure> {
    let ctx = Context::load(global, None)?;
    if args.kubeconfig.is_none() && args.name.is_none() {
        args.name = Some(ctx.config.lab.name.clone());
    }
    let routes = lab::runtime()?.block_on(async {
        let (cluster, _) = crate::manifests::connect(global, &args).await?;
        cluster.routes().await.map_err(kube_failure)
    })?;
    // The URLs carry the lab's HTTPS port, as its entry serves them.
    let port = match &args.name {
        Some(name) => lab::Lab::load(global, &LabArgs { name: Some(name.clone()) })?.ctx.settings()?.network.ports.https,
        None => ctx.settings()?.network.ports.https,
    };
    let urls = rows(&routes, port);
    printer.result(
        || {
            if urls.is_empty() {
                return "No routes: nothing in the cluster has an HTTPRoute with a backend yet.\n".to_owned();
            }
            table(
                &["URL", "ROUTE", "BACKEND", "HEALTH"],
                &urls
                    .iter()
                    .map(|u| {
                        vec![
                            u.url.clone().unwrap_or_else(|| u.host.clone()),
                            u.route.clone(),
                            u.backends.join(", "),
                            match &u.reason {
                                None => "ready".to_owned(),
                                Some(reason) => format!("not ready: {reason}"),
                            },
                        ]
                    })
                    .collect::<Vec<_>>(),
            )
        },
        &urls,
    )
}

/// One row per hostname of each route (a wildcard has no URL to open).
fn rows(routes: &[Route], port: u16) -> Vec<Url> {
    let port = if port == 443 { String::new() } else { format!(":{port}") };
    let mut out = Vec::new();
    for route in routes {
        let hosts = if route.hostnames.is_empty() { vec!["*".to_owned()] } else { route.hostnames.clone() };
        for host in hosts {
            out.push(Url {
                url: (!host.contains('*')).then(|| format!("https://{host}{port}/")),
                host,
                route: format!("{}/{}", route.namespace, route.name),
                backends: route.backends.iter().map(ToString::to_string).collect(),
                ready: route.health.is_ready(),
                reason: match &route.health {
                    Health::Ready => None,
                    Health::NotReady { reason } => Some(reason.clone()),
                },
            });
        }
    }
    out
}
