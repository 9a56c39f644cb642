//! `idp-lab list`: every lab, from the state directory and from Docker's labels.

use crate::cli::Global;
use crate::context::home;
use crate::exit::Failure;
use crate::lab::{self, provision_failure};
use crate::printer::{Printer, table};
use idp_state::{LAB_RECORD, LabRecord, StateStore};
use serde::Serialize;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Listed {
    name: String,
    profile: Option<String>,
    nodes: usize,
    running: usize,
    api_port: Option<u16>,
    https_port: Option<u16>,
}

pub fn run(_global: &Global, printer: Printer) -> Result<(), Failure> {
    let home = home()?;
    lab::runtime()?.block_on(async {
        let engine = lab::engine().await?;
        let mut names = idp_state::lab_names(&home);
        names.extend(engine.labs().await.map_err(provision_failure)?);
        names.sort();
        names.dedup();
        let mut labs = Vec::new();
        for name in names {
            let record = StateStore::for_lab(&home, &name).get::<LabRecord>(LAB_RECORD).ok().flatten();
            let nodes = engine.nodes_of(&name).await.map_err(provision_failure)?;
            // A state directory that only keeps a CA is no lab any more.
            if record.is_none() && nodes.is_empty() {
                continue;
            }
            labs.push(Listed {
                profile: record.as_ref().map(|r| r.profile.clone()),
                nodes: nodes.len(),
                running: nodes.iter().filter(|n| n.running).count(),
                api_port: record.as_ref().and_then(|r| r.ports.as_ref()).map(|p| p.api),
                https_port: record.as_ref().and_then(|r| r.ports.as_ref()).map(|p| p.https),
                name,
            });
        }
        let rows: Vec<Vec<String>> = labs
            .iter()
            .map(|l| {
                vec![
                    l.name.clone(),
                    l.profile.clone().unwrap_or_else(|| "-".into()),
                    format!("{}/{}", l.running, l.nodes),
                    l.api_port.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                    l.https_port.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                ]
            })
            .collect();
        printer.result(
            || {
                if labs.is_empty() {
                    "No labs. `idp-lab up --no-platform` makes one.\n".into()
                } else {
                    table(&["LAB", "PROFILE", "RUNNING", "API", "HTTPS"], &rows)
                }
            },
            &labs,
        )
    })
}
