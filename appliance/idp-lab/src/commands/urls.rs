//! `idp-lab urls`: every route of the lab, from the cluster's HTTPRoutes, with the URL
//! the HTTPS entry answers it on and its health (decided from the API, as the entry does).

use crate::cli::{Global, LabArgs};
use crate::exit::{Failure, NOT_FOUND};
use crate::lab::{self, Lab, kube_failure};
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

pub fn run(global: &Global, printer: Printer, args: LabArgs) -> Result<(), Failure> {
    let lab = Lab::load(global, &args)?;
    let settings = lab.ctx.settings()?;
    let path = lab::kubeconfig_path(&lab.dir());
    let kubeconfig = std::fs::read_to_string(&path).map_err(|_| {
        Failure::new(
            NOT_FOUND,
            format!("lab {:?} has no cluster to ask (no {}); `idp-lab up --name {}` makes it", lab.name, path.display(), lab.name),
        )
    })?;
    let routes = lab::runtime()?.block_on(async {
        let cluster = idp_kube::Cluster::from_kubeconfig(&kubeconfig, None).await.map_err(kube_failure)?;
        cluster.routes().await.map_err(kube_failure)
    })?;
    let port = settings.network.ports.https;
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
