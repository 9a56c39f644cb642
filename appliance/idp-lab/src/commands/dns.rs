//! `idp-lab dns setup|teardown|status`: the host's resolver sends the lab's suffix, and
//! nothing else, to the lab's DNS answer.

use crate::cli::{DnsArgs, DnsCommand, Global};
use crate::exit::{Failure, INPUT, IO, NOT_FOUND};
use crate::lab::Lab;
use crate::printer::{Printer, table};
use idp_host::resolver::{self, Change, Outcome, Reload, ResolverError, Target};
use serde::Serialize;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

/// One resolver and what happened there, or how it stands.
#[derive(Serialize)]
struct Row {
    resolver: &'static str,
    state: String,
    files: Vec<String>,
    notes: Vec<String>,
}

pub fn run(global: &Global, printer: Printer, cmd: DnsCommand) -> Result<(), Failure> {
    match cmd {
        DnsCommand::Setup(args) => {
            let (name, target) = target(global, &args)?;
            let done = resolver::setup(&args.root, &name, &target).map_err(failure)?;
            print(printer, done.resolvers.iter().map(outcome).collect())
        }
        DnsCommand::Teardown(args) => {
            let lab = Lab::load(global, &args.lab)?;
            let done = resolver::teardown(&args.root, &lab.name).map_err(failure)?;
            print(printer, done.resolvers.iter().map(outcome).collect())
        }
        DnsCommand::Status(args) => {
            let lab = Lab::load(global, &args.lab)?;
            let rows = resolver::status(&args.root, &lab.name)
                .into_iter()
                .map(|p| Row {
                    resolver: p.resolver.key(),
                    state: match (&p.target, p.detected) {
                        (Some(t), _) => format!("sends {} to {}", t.suffix, t.server()),
                        (None, true) => "in use here, not set up".into(),
                        (None, false) => "not in use here".into(),
                    },
                    files: p.files.iter().map(|f| f.display().to_string()).collect(),
                    notes: Vec::new(),
                })
                .collect();
            print(printer, rows)
        }
    }
}

/// The lab's name and where its DNS answer listens.
fn target(global: &Global, args: &DnsArgs) -> Result<(String, Target), Failure> {
    let lab = Lab::load(global, &args.lab)?;
    let Some(port) = lab.record.as_ref().and_then(|r| r.ports.as_ref()).and_then(|p| p.dns) else {
        return Err(Failure::new(
            NOT_FOUND,
            format!("lab {:?} has no DNS port yet: `idp-lab up --name {}` chooses it", lab.name, lab.name),
        ));
    };
    let settings = lab.ctx.settings()?;
    let bind = settings.network.bind_address;
    let address = if bind.is_unspecified() { IpAddr::V4(Ipv4Addr::LOCALHOST) } else { bind };
    Ok((lab.name.clone(), Target { suffix: settings.network.dns_suffix.clone(), address, port }))
}

/// Tears down what `dns setup` wrote for `lab` under `/`, when it wrote anything (for
/// `down`); a line saying what was removed.
pub fn teardown_if_set_up(lab: &str) -> Result<Option<String>, Failure> {
    let root = Path::new("/");
    if resolver::status(root, lab).iter().all(|p| p.files.is_empty()) {
        return Ok(None);
    }
    let done = resolver::teardown(root, lab).map_err(failure)?;
    let removed: Vec<String> = done.resolvers.iter().filter(|o| o.changed()).map(|o| o.resolver.to_string()).collect();
    Ok(Some(format!("host resolvers no longer send the lab's names to it ({})", removed.join(", "))))
}

fn outcome(o: &Outcome) -> Row {
    let files: Vec<String> = o.files.iter().map(|f| f.path.display().to_string()).collect();
    let changes: Vec<&str> = o
        .files
        .iter()
        .map(|f| match f.change {
            Change::Created => "written",
            Change::Replaced => "rewritten",
            Change::Removed => "removed",
            Change::Unchanged => "already so",
        })
        .collect();
    let mut state = if changes.is_empty() { "nothing to do".to_owned() } else { changes.join(", ") };
    match &o.reload {
        Reload::Done { command } => state.push_str(&format!("; reloaded ({command})")),
        Reload::Skipped { command } => state.push_str(&format!("; not reloaded under --root: run `{command}` on that machine")),
        Reload::NotRunning => state.push_str("; not running here"),
        Reload::NotNeeded => {}
    }
    Row { resolver: o.resolver.key(), state, files, notes: o.notes.clone() }
}

fn print(printer: Printer, rows: Vec<Row>) -> Result<(), Failure> {
    printer.result(
        || {
            let mut out = table(
                &["RESOLVER", "STATE", "FILES"],
                &rows.iter().map(|r| vec![r.resolver.to_owned(), r.state.clone(), r.files.join(" ")]).collect::<Vec<_>>(),
            );
            for note in rows.iter().flat_map(|r| &r.notes) {
                out.push_str(&format!("note: {note}\n"));
            }
            out
        },
        &rows,
    )
}

fn failure(e: ResolverError) -> Failure {
    match e {
        ResolverError::Io { .. } | ResolverError::Failed { .. } | ResolverError::ToolMissing { .. } | ResolverError::Spawn { .. } => {
            Failure::new(IO, e.to_string())
        }
        _ => Failure::new(INPUT, e.to_string()),
    }
}
