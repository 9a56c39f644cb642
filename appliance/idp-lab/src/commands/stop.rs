//! `idp-lab stop`: stop a lab's nodes; data, addresses and ports stay.

use crate::cli::{Global, LabArgs};
use crate::exit::Failure;
use crate::lab::{self, Lab, provision_failure};
use crate::printer::Printer;
use idp_provision::Provider as _;

pub fn run(global: &Global, printer: Printer, args: LabArgs) -> Result<(), Failure> {
    let lab = Lab::load(global, &args)?;
    let plan = lab.plan()?.clone();
    lab::runtime()?.block_on(async {
        let engine = lab::engine().await?;
        // The daemon first: its watchdog starts a stopped node container (the built-in
        // `start-node` playbook), so it must not see the nodes stop. `start` (or `up`)
        // starts it again.
        let daemon = idp_daemon::stop(&lab.dir(), crate::daemon::STOP_TIMEOUT).map_err(crate::daemon::failure)?;
        let stopped = engine.stop(&plan).await.map_err(provision_failure)?;
        printer.result(
            || {
                if stopped.is_empty() {
                    format!("Lab \"{}\" was already stopped.\n", lab.name)
                } else {
                    format!("Lab \"{}\" stopped: {}. `idp-lab start --name {}` brings it back.\n", lab.name, stopped.join(", "), lab.name)
                }
            },
            &serde_json::json!({ "lab": lab.name, "stopped": stopped, "daemonStopped": daemon }),
        )
    })
}
