//! One module per command; each returns a [`Failure`] with its exit code on error.

mod apply;
mod bundle;
mod config;
mod creds;
mod diff;
mod dns;
mod doctor;
mod down;
mod history;
mod images;
mod kubeconfig;
mod list;
mod lock;
mod logs;
mod open;
mod profiles;
mod render;
mod serve;
mod start;
mod status;
mod stop;
mod trust;
mod up;
mod urls;
mod verify;
mod version;

use crate::cli::{Cli, Command};
use crate::exit::Failure;
use crate::printer::Printer;

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<(), Failure> {
    let printer = Printer { output: cli.global.output };
    match cli.command {
        Command::Up(args) => up::run(&cli.global, printer, args),
        Command::Down(args) => down::run(&cli.global, printer, args),
        Command::Stop(args) => stop::run(&cli.global, printer, args),
        Command::Start(args) => start::run(&cli.global, printer, args),
        Command::List => list::run(&cli.global, printer),
        Command::Status(args) => status::run(&cli.global, printer, args),
        Command::Kubeconfig(args) => kubeconfig::run(&cli.global, printer, args),
        Command::Logs(args) => logs::run(&cli.global, printer, args),
        Command::Doctor => doctor::run(&cli.global, printer),
        Command::Profiles(cmd) => profiles::run(&cli.global, printer, cmd),
        Command::Apply(args) => apply::run(&cli.global, printer, args),
        Command::Diff(args) => diff::run(&cli.global, printer, args),
        Command::Render(args) => render::run(&cli.global, printer, args),
        Command::Images(cmd) => images::run(&cli.global, printer, cmd),
        Command::Lock(cmd) => lock::run(&cli.global, printer, cmd),
        Command::Bundle(cmd) => bundle::run(&cli.global, printer, cmd),
        Command::Trust(cmd) => trust::run(&cli.global, printer, cmd),
        Command::Serve(args) => serve::run(&cli.global, printer, args),
        Command::Dns(cmd) => dns::run(&cli.global, printer, cmd),
        Command::Urls(args) => urls::run(&cli.global, printer, args),
        Command::Creds(args) => creds::run(&cli.global, printer, args),
        Command::Verify(args) => verify::run(&cli.global, printer, args),
        Command::History(args) => history::run(&cli.global, printer, args),
        Command::Watch(args) => history::watch(&cli.global, printer, args),
        Command::Open(args) => open::run(&cli.global, printer, args),
        Command::Config(cmd) => config::run(&cli.global, printer, cmd),
        Command::Version => version::run(printer),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut cmd, "idp-lab", &mut out);
            crate::printer::write_stdout(&String::from_utf8_lossy(&out))
        }
    }
}
