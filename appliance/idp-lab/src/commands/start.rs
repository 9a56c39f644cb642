//! `idp-lab start`: start a stopped lab's nodes (servers first) and wait until the API
//! lists them again. Addresses and ports are the pinned ones, so the kubeconfig works.

use crate::cli::{Global, StartArgs};
use crate::exit::{Failure, TIMEOUT};
use crate::lab::{self, Lab, kube_failure, provision_failure};
use crate::printer::Printer;
use crate::progress::Steps;
use idp_provision::{Progress, Provider as _};
use std::time::Duration;

pub fn run(global: &Global, printer: Printer, args: StartArgs) -> Result<(), Failure> {
    let lab = Lab::load(global, &args.lab)?;
    let plan = lab.plan()?.clone();
    let timeout = lab::timeout(args.timeout.as_deref(), Duration::from_secs(lab.ctx.config.timeouts.cluster))?;
    let mut steps = Steps::new(global.quiet || printer.output != crate::cli::Output::Text);
    lab::runtime()?.block_on(async {
        let engine = lab::engine().await?;
        steps.start("nodes");
        let mut started = Vec::new();
        let mut progress = |p: Progress| {
            if let Progress::NodeReady { node, .. } = p {
                started.push(node);
            }
        };
        if let Err(e) = engine.start(&plan, timeout, &mut progress).await {
            steps.failed("nodes");
            return Err(provision_failure(e));
        }
        steps.done(&format!(
            "nodes started: {}",
            if started.is_empty() { "none (all were running)".to_owned() } else { started.join(", ") }
        ));
        steps.start("API");
        let kubeconfig = std::fs::read_to_string(lab::kubeconfig_path(&lab.dir())).map_err(|e| {
            Failure::new(crate::exit::IO, format!("failed to read the lab's kubeconfig: {e}; `idp-lab up` writes it again"))
        })?;
        let cluster = idp_kube::Cluster::from_kubeconfig(&kubeconfig, None).await.map_err(kube_failure)?;
        let nodes = cluster.wait_for_nodes(&plan.nodes, timeout).await.map_err(|e| Failure::new(TIMEOUT, e.to_string()))?;
        steps.done(&format!("API answers, {} nodes registered", nodes.len()));
        steps.start("lab daemon");
        let daemon = crate::daemon::ensure_running(global, &lab).await.inspect_err(|_| steps.failed("lab daemon"))?;
        steps.done(&format!("lab daemon: {} (pid {})", crate::daemon::listeners_line(&daemon), daemon.pid));
        printer.result(
            || format!("Lab \"{}\" is running.\n", lab.name),
            &serde_json::json!({ "lab": lab.name, "started": started, "nodes": nodes, "daemon": daemon }),
        )
    })
}
