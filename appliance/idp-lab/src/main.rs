//! The idp-lab binary: parse, set up logging, run, map the outcome to an exit code.

mod cli;
mod commands;
mod context;
mod daemon;
mod exit;
mod lab;
mod logging;
mod manifests;
mod offline;
mod platform;
mod printer;
mod progress;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    // One crypto provider for every TLS user in the process (kube, the proxy, ...).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = cli::Cli::parse();
    logging::init(
        &cli.global,
        match &cli.command {
            cli::Command::Serve(args) => Some(args.detach),
            _ => None,
        },
    );
    match commands::run(cli) {
        Ok(()) => ExitCode::from(exit::OK),
        Err(failure) => {
            if let Some(details) = &failure.details {
                eprintln!("{details}");
            }
            if !failure.message.is_empty() {
                eprintln!("error: {failure}");
            }
            ExitCode::from(failure.code)
        }
    }
}
