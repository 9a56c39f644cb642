//! `idp-lab serve`: the lab daemon in the foreground (for debugging, or under a service
//! manager); `up` starts the same with `--detach`. SIGTERM and SIGINT drain it.

use crate::cli::{Global, ServeArgs};
use crate::daemon;
use crate::exit::{Failure, INTERNAL, NOT_FOUND};
use crate::lab::{self, Lab};
use crate::printer::Printer;
use serde::Serialize;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

#[derive(Serialize)]
struct Served {
    lab: String,
    stopped: bool,
}

pub fn run(global: &Global, printer: Printer, args: ServeArgs) -> Result<(), Failure> {
    if args.detach {
        // Its own session: no terminal's hangup or Ctrl-C reaches it; `down` stops it.
        let _ = nix::unistd::setsid();
    }
    let lab = Lab::load(global, &args.lab)?;
    if lab.record.is_none() && args.gateway.is_empty() {
        return Err(Failure::new(
            NOT_FOUND,
            format!("there is no lab {:?} to serve (`idp-lab up --name {}` makes it)", lab.name, lab.name),
        ));
    }
    let settings = lab.ctx.settings()?;
    let plan = daemon::plan(&lab, &settings, &args.gateway);
    let name = lab.name.clone();
    // The state store is closed while the daemon runs: the other commands open it.
    drop(lab);
    lab::runtime()?.block_on(async move {
        let shutdown = CancellationToken::new();
        let mut terminate = signal(SignalKind::terminate()).map_err(|e| Failure::new(INTERNAL, format!("cannot handle SIGTERM: {e}")))?;
        let mut interrupt = signal(SignalKind::interrupt()).map_err(|e| Failure::new(INTERNAL, format!("cannot handle SIGINT: {e}")))?;
        let token = shutdown.clone();
        tokio::spawn(async move {
            let which = tokio::select! {
                _ = terminate.recv() => "SIGTERM",
                _ = interrupt.recv() => "SIGINT",
            };
            tracing::info!(signal = which, "stopping the lab daemon");
            token.cancel();
        });
        idp_daemon::run(plan, shutdown).await.map_err(daemon::failure)
    })?;
    printer.result(|| format!("Lab daemon of \"{name}\" stopped.\n"), &Served { lab: name.clone(), stopped: true })
}
