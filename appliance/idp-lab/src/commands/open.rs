//! `idp-lab open [SERVICE]`: the browser at `https://<service>.<suffix>`, or at the lab's
//! landing page.

use crate::cli::{Global, OpenArgs};
use crate::exit::{Failure, INPUT, NOT_FOUND};
use crate::lab::Lab;
use crate::printer::Printer;
use serde::Serialize;
use std::process::{Command, Stdio};

#[derive(Serialize)]
struct Opened {
    url: String,
    browser: Option<String>,
}

pub fn run(global: &Global, printer: Printer, args: OpenArgs) -> Result<(), Failure> {
    let lab = Lab::load(global, &args.lab)?;
    let settings = lab.ctx.settings()?;
    let suffix = &settings.network.dns_suffix;
    let host = match &args.service {
        None => suffix.clone(),
        Some(service) if idp_core::config::is_name(service) => format!("{service}.{suffix}"),
        Some(service) => {
            return Err(Failure::new(
                INPUT,
                format!("{service:?} is not a service name: expected the first label of a hostname, like `argocd`"),
            ));
        }
    };
    let port = settings.network.ports.https;
    let url = if port == 443 { format!("https://{host}/") } else { format!("https://{host}:{port}/") };
    if args.print {
        return printer.result(|| format!("{url}\n"), &Opened { url: url.clone(), browser: None });
    }
    let opener = if cfg!(target_os = "macos") { "open" } else { "xdg-open" };
    let started = Command::new(opener).arg(&url).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn();
    match started {
        Ok(_) => printer.result(|| format!("Opening {url}\n"), &Opened { url: url.clone(), browser: Some(opener.to_owned()) }),
        Err(e) => Err(Failure::new(NOT_FOUND, format!("cannot start a browser ({opener}: {e}); open {url} yourself"))),
    }
}
