//! `idp-lab down`: remove a lab (or every lab) and everything idp-lab made for it:
//! containers with their volumes, the network, the kubeconfig entries and the state.
//! Only objects carrying the lab's label are touched. The lab CA stays unless `--purge`.
//! `--all` means every lab of this idp-lab home (`$IDP_LAB_HOME`), never another home's.

use crate::cli::{DownArgs, Global, LabArgs};
use crate::context::home;
use crate::exit::{Failure, INPUT, IO};
use crate::lab::{self, Lab, kube_failure, provision_failure};
use crate::printer::Printer;
use idp_provision::{Provider as _, Removed};
use serde::Serialize;
use std::io::{BufRead as _, IsTerminal as _, Write as _};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Down {
    lab: String,
    removed: Removed,
    kubeconfig_entries: bool,
    ca_kept: bool,
    /// The pid of the lab daemon it stopped.
    daemon_stopped: Option<u32>,
    /// What it undid of `dns setup`.
    dns: Option<String>,
}

pub fn run(global: &Global, printer: Printer, args: DownArgs) -> Result<(), Failure> {
    lab::runtime()?.block_on(async {
        let engine = lab::engine().await?;
        let labs: Vec<String> = if args.all {
            // Every lab of this idp-lab home. Another home's labs on the same engine are not
            // this one's to remove; a lab whose state is lost goes with `down --name LAB`.
            let all = idp_state::lab_names(&home()?);
            if !confirm(&format!("Remove every lab ({})?", if all.is_empty() { "none".to_owned() } else { all.join(", ") }), args.yes)? {
                return Err(Failure::new(INPUT, "not confirmed: nothing was removed (pass --yes to remove without asking)"));
            }
            all
        } else {
            vec![Lab::load(global, &args.lab)?.name]
        };
        let mut results = Vec::new();
        for name in labs {
            let lab = Lab::load(global, &LabArgs { name: Some(name.clone()) })?;
            // The daemon first: it serves the lab's names, and its files are in the state.
            let daemon_stopped = idp_daemon::stop(&lab.dir(), crate::daemon::STOP_TIMEOUT).map_err(crate::daemon::failure)?;
            let dns = super::dns::teardown_if_set_up(&name)?;
            let removed = engine.delete(&name).await.map_err(provision_failure)?;
            let kubeconfig_entries = match idp_kube::kubeconfig::default_path() {
                Some(path) => idp_kube::kubeconfig::remove(&path, &name).map_err(kube_failure)?,
                None => false,
            };
            let ca_kept = remove_state(&lab.dir(), args.purge)?;
            results.push(Down { lab: name, removed, kubeconfig_entries, ca_kept, daemon_stopped, dns });
        }
        printer.result(
            || {
                results
                    .iter()
                    .map(|d| {
                        let mut line = format!(
                            "Lab \"{}\" removed: {}, {}, {}{}",
                            d.lab,
                            count(d.removed.containers.len(), "container"),
                            count(d.removed.volumes.len(), "volume"),
                            count(d.removed.networks.len(), "network"),
                            if d.kubeconfig_entries { ", its kubeconfig context" } else { "" }
                        );
                        if let Some(pid) = d.daemon_stopped {
                            line.push_str(&format!(", its daemon (pid {pid})"));
                        }
                        if let Some(dns) = &d.dns {
                            line.push_str(&format!("; {dns}"));
                        }
                        if d.ca_kept {
                            line.push_str(" (the lab CA is kept; `idp-lab down --purge` removes it)");
                        }
                        line.push('\n');
                        line
                    })
                    .collect::<String>()
            },
            &results,
        )
    })
}

fn count(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

/// Removes the lab's state directory, keeping only `ca/` unless `purge`; returns
/// whether a CA was kept.
fn remove_state(dir: &std::path::Path, purge: bool) -> Result<bool, Failure> {
    let io = |e: std::io::Error, p: &std::path::Path| Failure::new(IO, format!("failed to remove {}: {e}", p.display()));
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io(e, dir)),
    };
    let mut kept = false;
    for entry in entries {
        let path = entry.map_err(|e| io(e, dir))?.path();
        if !purge && path.file_name().is_some_and(|n| n == "ca") {
            kept = true;
            continue;
        }
        let removed = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
        removed.map_err(|e| io(e, &path))?;
    }
    if !kept {
        std::fs::remove_dir(dir).map_err(|e| io(e, dir))?;
    }
    Ok(kept)
}

/// Asks on a terminal; without one, only `--yes` confirms.
fn confirm(question: &str, yes: bool) -> Result<bool, Failure> {
    if yes {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        return Ok(false);
    }
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer).map_err(|e| Failure::new(IO, format!("failed to read the answer: {e}")))?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}
