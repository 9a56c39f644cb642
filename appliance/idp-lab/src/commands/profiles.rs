//! `idp-lab profiles list|show`.

use crate::cli::{Global, ProfilesCommand};
use crate::context::Context;
use crate::exit::{Failure, INPUT};
use crate::printer::{Printer, table};
use idp_core::catalogue::Catalogue;
use idp_core::diag::did_you_mean;
use idp_core::profiles;
use serde::Serialize;

#[derive(Serialize)]
struct Listed {
    name: String,
    description: String,
    default: bool,
}

pub fn run(global: &Global, printer: Printer, cmd: ProfilesCommand) -> Result<(), Failure> {
    match cmd {
        ProfilesCommand::List => {
            let catalogue = Catalogue::load()?;
            let components = catalogue.chart_components();
            let mut listed = Vec::new();
            for name in profiles::names() {
                let profile = profiles::load(&name, &components)
                    .map_err(|e| Failure::new(crate::exit::INTERNAL, format!("embedded profile is invalid:\n{e}")))?
                    .ok_or_else(|| Failure::new(crate::exit::INTERNAL, format!("embedded profile {name} vanished")))?;
                listed.push(Listed { default: name == profiles::DEFAULT_PROFILE, name, description: profile.description });
            }
            let rows: Vec<Vec<String>> = listed
                .iter()
                .map(|p| vec![if p.default { format!("{} (default)", p.name) } else { p.name.clone() }, p.description.clone()])
                .collect();
            printer.result(|| table(&["NAME", "DESCRIPTION"], &rows), &listed)
        }
        ProfilesCommand::Show { name } => {
            let all = profiles::names();
            if !all.contains(&name) {
                let hint =
                    did_you_mean(&name, all.iter().map(String::as_str)).map(|n| format!(" (did you mean \"{n}\"?)")).unwrap_or_default();
                return Err(Failure::new(INPUT, format!("no profile named \"{name}\"{hint}; profiles are {}", all.join(", "))));
            }
            let ctx = Context::load(global, Some(&name))?;
            printer.result(|| toml::to_string(&ctx.config).unwrap_or_else(|e| format!("# cannot show as TOML: {e}\n")), &ctx.config)
        }
    }
}
