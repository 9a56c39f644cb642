//! `idp-lab config check FILE`.

use crate::cli::{ConfigCommand, Global};
use crate::context::env;
use crate::exit::{Failure, INPUT, IO};
use crate::printer::Printer;
use idp_core::catalogue::Catalogue;
use idp_core::profiles::{self, Inputs};
use serde::Serialize;

#[derive(Serialize)]
struct Problem {
    file: String,
    line: usize,
    column: usize,
    path: String,
    message: String,
    hint: Option<String>,
}

#[derive(Serialize)]
struct Report {
    file: String,
    ok: bool,
    problems: Vec<Problem>,
}

pub fn run(global: &Global, printer: Printer, cmd: ConfigCommand) -> Result<(), Failure> {
    let ConfigCommand::Check { file } = cmd;
    let name = file.display().to_string();
    let text = std::fs::read_to_string(&file).map_err(|e| {
        let code = if e.kind() == std::io::ErrorKind::NotFound { INPUT } else { IO };
        Failure::new(code, format!("failed to read {name}: {e}"))
    })?;
    let catalogue = Catalogue::load()?;
    let inputs = Inputs { profile_flag: global.profile.as_deref(), file: Some((&name, &text)), env: env() };
    let result = profiles::resolve(&inputs, &catalogue.chart_components());
    let problems: Vec<Problem> = match &result {
        Ok(_) => Vec::new(),
        Err(e) => e
            .diagnostics
            .iter()
            .map(|d| Problem {
                file: d.origin.to_string(),
                line: d.line,
                column: d.column,
                path: d.path.clone(),
                message: d.message.clone(),
                hint: d.hint.clone(),
            })
            .collect(),
    };
    let report = Report { file: name.clone(), ok: problems.is_empty(), problems };
    match result {
        Ok(_) => printer.result(|| format!("{name}: ok\n"), &report),
        Err(e) => {
            // Problems are the result: JSON/YAML readers get them on stdout; people on stderr.
            if printer.output != crate::cli::Output::Text {
                printer.result(String::new, &report)?;
            }
            let count = e.diagnostics.len();
            let summary = format!("{name}: {count} problem{}", if count == 1 { "" } else { "s" });
            Err(Failure::new(INPUT, summary).with_details(e.to_string()))
        }
    }
}
