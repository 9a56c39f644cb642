//! `idp-lab trust`: the lab CA, which the lab's HTTPS entry and (with the platform)
//! cert-manager issue from; its certificate, and the host's trust in it.

use crate::cli::{Global, LabArgs, TrustCommand};
use crate::exit::{Failure, INPUT, IO};
use crate::lab::{self, Lab};
use crate::printer::{Printer, table, write_stdout};
use idp_host::trust::{self, Change, State, TrustError};
use serde::Serialize;

/// One store and what happened there, or how it stands.
#[derive(Serialize)]
struct Row {
    store: String,
    state: String,
}

pub fn run(global: &Global, printer: Printer, cmd: TrustCommand) -> Result<(), Failure> {
    match cmd {
        TrustCommand::Export(args) => write_stdout(load(global, &args)?.1.cert_pem()),
        TrustCommand::Install(args) => {
            let (name, ca) = load(global, &args.lab)?;
            let done = trust::install(&args.root, &name, ca.cert_pem()).map_err(failure)?;
            let rows = done.stores.iter().map(|o| Row { store: o.store.to_string(), state: change(&o.change) }).collect();
            print(printer, rows)
        }
        TrustCommand::Uninstall(args) => {
            let (name, _) = load(global, &args.lab)?;
            let done = trust::uninstall(&args.root, &name).map_err(failure)?;
            let rows = done.stores.iter().map(|o| Row { store: o.store.to_string(), state: change(&o.change) }).collect();
            print(printer, rows)
        }
        TrustCommand::Status(args) => {
            let (name, ca) = load(global, &args.lab)?;
            let status = trust::status(&args.root, &name, ca.cert_pem());
            let rows = status.stores.iter().map(|s| Row { store: s.store.to_string(), state: state(&s.state) }).collect();
            print(printer, rows)
        }
    }
}

/// The trust-store name of the lab's CA (`idp-lab-<lab>`) and the CA.
fn load(global: &Global, args: &LabArgs) -> Result<(String, idp_edge::LabCa), Failure> {
    let lab = Lab::load(global, args)?;
    let settings = lab.ctx.settings()?;
    let ca = lab::lab_ca(&lab.name, &lab.dir(), &settings.network.dns_suffix, false)?;
    Ok((format!("idp-lab-{}", lab.name), ca))
}

fn print(printer: Printer, rows: Vec<Row>) -> Result<(), Failure> {
    printer.result(|| table(&["STORE", "STATE"], &rows.iter().map(|r| vec![r.store.clone(), r.state.clone()]).collect::<Vec<_>>()), &rows)
}

fn change(change: &Change) -> String {
    match change {
        Change::Added => "added".into(),
        Change::Replaced => "replaced (another certificate had the name)".into(),
        Change::Removed => "removed".into(),
        Change::AlreadyDone => "already so".into(),
        Change::Absent => "no such store here".into(),
        Change::ToolMissing { tool } => format!("skipped: {tool} is not installed"),
    }
}

fn state(state: &State) -> String {
    match state {
        State::Trusted => "trusted".into(),
        State::NotTrusted => "not trusted".into(),
        State::Absent => "no such store here".into(),
        State::ToolMissing { tool } => format!("unknown: {tool} is not installed"),
        State::Unknown { reason } => format!("unknown: {reason}"),
    }
}

fn failure(e: TrustError) -> Failure {
    match e {
        TrustError::Io { .. } => Failure::new(IO, e.to_string()),
        _ => Failure::new(INPUT, e.to_string()),
    }
}
