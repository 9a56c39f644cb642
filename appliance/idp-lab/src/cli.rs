//! The command line, defined once: help, completions and the reference all come from here.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// A complete Internal Developer Platform on one machine, from one binary.
#[derive(Debug, Parser)]
#[command(name = "idp-lab", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Options every command takes.
    #[command(flatten)]
    pub global: Global,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct Global {
    /// Configuration file (default: ./idp-lab.toml when it exists).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Profile to start from (see `idp-lab profiles list`).
    #[arg(long, global = true, value_name = "NAME")]
    pub profile: Option<String>,
    /// Format of results on stdout.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// Format of logs on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// More logs (repeat for more).
    #[arg(long, short = 'v', global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Only errors on stderr.
    #[arg(long, short = 'q', global = true)]
    pub quiet: bool,
}

/// Result formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// For people.
    Text,
    /// JSON.
    Json,
    /// YAML.
    Yaml,
}

/// Log formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List or show the embedded profiles.
    #[command(subcommand)]
    Profiles(ProfilesCommand),
    /// Print every object the lab would apply, in apply order.
    Render(RenderArgs),
    /// Work with the pinned image lists.
    #[command(subcommand)]
    Images(ImagesCommand),
    /// Check configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print the version and what it pins.
    Version,
    /// Print a shell completion script.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// `profiles` subcommands.
#[derive(Debug, Subcommand)]
pub enum ProfilesCommand {
    /// List the embedded profiles.
    List,
    /// Print a profile's fully resolved configuration (with --config and IDP_LAB_* applied).
    Show {
        /// Profile name.
        name: String,
    },
}

/// `render` options.
#[derive(Debug, Args)]
pub struct RenderArgs {
    /// Write one YAML file per wave into this folder instead of printing.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// `images` subcommands.
#[derive(Debug, Subcommand)]
pub enum ImagesCommand {
    /// List every image the profile needs, per component.
    List,
}

/// `config` subcommands.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a configuration file (and IDP_LAB_* variables); exit 2 on problems.
    Check {
        /// The file.
        file: PathBuf,
    },
}
