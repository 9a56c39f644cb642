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
    /// Create the lab, or bring an existing one back to its configuration.
    Up(UpArgs),
    /// Remove a lab: its containers, volumes, network, kubeconfig entries and state.
    Down(DownArgs),
    /// Stop a lab's nodes, keeping their data, addresses and ports.
    Stop(LabArgs),
    /// Start a stopped lab's nodes and wait for them.
    Start(StartArgs),
    /// List every lab.
    List,
    /// Show a lab: its nodes, ports and API health.
    Status(LabArgs),
    /// Print a lab's kubeconfig.
    Kubeconfig(LabArgs),
    /// Print a node's log.
    Logs(LogsArgs),
    /// Check that this machine can run a lab, without creating one.
    Doctor,
    /// List or show the embedded profiles.
    #[command(subcommand)]
    Profiles(ProfilesCommand),
    /// Apply manifests (files, directories, `-` for stdin) with server-side apply, in stages and waves.
    Apply(ApplyArgs),
    /// Show what `apply` would change; exit 0 when nothing, 1 when something, 2 and up on errors.
    Diff(DiffArgs),
    /// Print every object the lab would apply, in apply order.
    Render(RenderArgs),
    /// Work with the pinned image lists.
    #[command(subcommand)]
    Images(ImagesCommand),
    /// The lock of every artifact the platform needs: show it, or resolve it (connected).
    #[command(subcommand)]
    Lock(LockCommand),
    /// Offline bundles (tarred OCI layouts): pull the locked artifacts, verify, inspect.
    #[command(subcommand)]
    Bundle(BundleCommand),
    /// The lab CA: print it, or add it to and remove it from the host's trust stores.
    #[command(subcommand)]
    Trust(TrustCommand),
    /// Run the lab daemon (HTTPS entry, HTTP redirect, DNS answer) in the foreground.
    Serve(ServeArgs),
    /// Make the host's resolver ask the lab's DNS answer for the lab's names, or stop.
    #[command(subcommand)]
    Dns(DnsCommand),
    /// List every route of the lab (HTTPRoutes) with its URL and health.
    Urls(TargetArgs),
    /// Print the logins of Argo CD, Grafana, SonarQube, Vault and Dex/Backstage (passwords!).
    ///
    /// Each login is read where the platform keeps it: Vault's KV paths (through the API
    /// server's service proxy, with the root token kept in the lab's state), else the
    /// Secrets External Secrets wrote from them; Vault's own login is its root token. Each
    /// says where it was read from. One that cannot be read says why and what to do; the
    /// others are still printed. Exit 12 when none could be read.
    ///
    /// This is the only command that prints passwords; nothing logs them. Scripts parse
    /// `-o json` (docs/creds-verify.md).
    Creds(LabArgs),
    /// Run the platform's smoke checks; exit 13 when one fails.
    ///
    /// Nodes Ready, Argo CD Applications Synced and Healthy, Gateways Programmed,
    /// ExternalSecrets Ready (each judged as `up` and the watchdog judge it), Grafana's
    /// datasources (through the API server's service proxy, with the admin login), and
    /// every route's URL answering 2xx or 3xx over TLS through the lab's HTTPS entry,
    /// verified against the lab CA. Each check passes or fails with its reason; progress
    /// goes to stderr (docs/creds-verify.md).
    Verify(LabArgs),
    /// List what the lab's watchdog recorded: drift, verdict changes, SLO samples, playbook runs.
    History(HistoryArgs),
    /// Follow what the lab's watchdog records, live, until interrupted (JSON: one event per line).
    Watch(WatchArgs),
    /// Open a service of the lab (or its landing page) in the browser.
    Open(OpenArgs),
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
    /// Render each upstream manifest (CRDs) as its objects, read from this bundle (a
    /// `bundle create` tar, or its OCI layout as a directory) and checked against their
    /// pinned sha256, instead of as references.
    #[arg(long, value_name = "FILE")]
    pub bundle: Option<PathBuf>,
}

/// `images` subcommands.
#[derive(Debug, Subcommand)]
pub enum ImagesCommand {
    /// List every image the profile needs, per component.
    List,
    /// Copy images from the host's Docker, or image tarballs, into every node.
    Import(ImportArgs),
}

/// `lock` subcommands.
#[derive(Debug, Subcommand)]
pub enum LockCommand {
    /// List the lock's entries, verified or not, with the profiles that need them; with
    /// --profile or --config, the entries of that configuration and what the lock lacks.
    Show(LockShowArgs),
    /// Resolve every entry it can reach (registries, chart repositories, files); the rest
    /// stays `unverified` with the reason.
    Update(LockUpdateArgs),
}

/// `lock show` options.
#[derive(Debug, Args)]
pub struct LockShowArgs {
    /// A lock file instead of the embedded one.
    #[arg(long, value_name = "FILE")]
    pub lock: Option<PathBuf>,
}

/// `lock update` options.
#[derive(Debug, Args)]
pub struct LockUpdateArgs {
    /// The lock to resolve (default: the embedded one).
    #[arg(long, value_name = "FILE")]
    pub lock: Option<PathBuf>,
    /// Where to write the result (default: the --lock file; without either, stdout).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// `bundle` subcommands.
#[derive(Debug, Subcommand)]
pub enum BundleCommand {
    /// Pull every artifact the profile's lock entries name (plus --image) into FILE, a
    /// tarred OCI image layout; an interrupted run resumes from FILE.partial/.
    Create(BundleCreateArgs),
    /// Re-hash every blob and check that every artifact reaches only present blobs; exit 2
    /// on any mismatch, naming the artifact and the blob.
    Verify(BundleFileArgs),
    /// List the artifacts of a bundle with their kind, platforms and sizes.
    Inspect(BundleFileArgs),
}

/// `bundle create` options.
#[derive(Debug, Args)]
pub struct BundleCreateArgs {
    /// The bundle file to write.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// The platforms to keep from multi-platform images (comma-separated).
    #[arg(long, value_name = "LIST", value_delimiter = ',', default_value = "linux/amd64,linux/arm64")]
    pub platform: Vec<String>,
    /// An image to add beyond the lock (repeatable).
    #[arg(long, value_name = "REF")]
    pub image: Vec<String>,
    /// Bundle only the --image references, nothing from the lock.
    #[arg(long, conflicts_with = "lock")]
    pub no_lock: bool,
    /// A lock file instead of the embedded one; without --profile or --config, all its entries.
    #[arg(long, value_name = "FILE")]
    pub lock: Option<PathBuf>,
    /// Bundle unverified lock entries as they resolve now (by tag), with a warning each.
    #[arg(long)]
    pub allow_unverified: bool,
}

/// A bundle file.
#[derive(Debug, Args)]
pub struct BundleFileArgs {
    /// The bundle.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

/// Which lab a command acts on.
#[derive(Debug, Args)]
pub struct LabArgs {
    /// The lab (default: lab.name of the configuration).
    #[arg(long, short = 'n', value_name = "LAB")]
    pub name: Option<String>,
}

/// `history` options.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    #[command(flatten)]
    pub lab: LabArgs,
    /// Only events of the last DURATION (`90s`, `30m`, `12h`, `7d`; default: all that is kept).
    #[arg(long, value_name = "DURATION")]
    pub since: Option<String>,
}

/// `watch` options.
#[derive(Debug, Args)]
pub struct WatchArgs {
    #[command(flatten)]
    pub lab: LabArgs,
    /// Start with the events of the last DURATION (`30m`, `12h`, `7d`; default: only new ones).
    #[arg(long, value_name = "DURATION")]
    pub since: Option<String>,
}

/// `up` options.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// The lab.
    #[command(flatten)]
    pub lab: LabArgs,
    /// Stop once the cluster is up, before the platform (like `k3d cluster create`).
    #[arg(long)]
    pub no_platform: bool,
    /// Print what would be done, and do nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Replace nodes whose configuration changed (their data is lost).
    #[arg(long)]
    pub recreate: bool,
    /// Make a new lab CA instead of keeping the existing one (it must then be trusted again).
    #[arg(long)]
    pub new_ca: bool,
    /// Make the lab's context the current one in the merged kubeconfig.
    #[arg(long)]
    pub switch_context: bool,
    /// How long the nodes may take (default: timeouts.cluster), e.g. `300s`, `5m`.
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,
}

/// `down` options.
#[derive(Debug, Args)]
pub struct DownArgs {
    /// The lab.
    #[command(flatten)]
    pub lab: LabArgs,
    /// Also remove the lab's CA (browsers that trust it stop trusting it).
    #[arg(long)]
    pub purge: bool,
    /// Remove every lab of this idp-lab home.
    #[arg(long, conflicts_with = "name")]
    pub all: bool,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

/// `start` options.
#[derive(Debug, Args)]
pub struct StartArgs {
    /// The lab.
    #[command(flatten)]
    pub lab: LabArgs,
    /// How long the nodes may take (default: timeouts.cluster).
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,
}

/// `logs` options.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The lab.
    #[command(flatten)]
    pub lab: LabArgs,
    /// The node (default: the first server), e.g. `idp-lab-agent-0` or `agent-0`.
    pub node: Option<String>,
    /// Keep following the log.
    #[arg(long, short = 'f')]
    pub follow: bool,
}

/// `images import` options.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The lab.
    #[command(flatten)]
    pub lab: LabArgs,
    /// Images in the host's Docker (`nginx:1.25`) or image tarballs (`./app.tar`).
    #[arg(required = true, value_name = "IMAGE|TARBALL")]
    pub sources: Vec<String>,
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

/// Which cluster `apply` and `diff` talk to.
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// The kubeconfig file (default: $KUBECONFIG, else ~/.kube/config).
    #[arg(long, value_name = "FILE", conflicts_with = "name")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context (default: its current context).
    #[arg(long, value_name = "CONTEXT")]
    pub context: Option<String>,
    /// A lab made by `idp-lab up`: its own kubeconfig, and its name on the labels.
    #[arg(long, value_name = "LAB")]
    pub name: Option<String>,
}

/// What `apply` and `diff` read.
#[derive(Debug, Args)]
pub struct InputArgs {
    /// A manifest file, a directory of them (`*.yaml`, `*.yml`, `*.json`, recursively) or `-` for stdin.
    #[arg(long = "filename", short = 'f', value_name = "PATH", required = true)]
    pub files: Vec<PathBuf>,
    /// The namespace of namespaced objects that name none.
    #[arg(long, short = 'n', value_name = "NAMESPACE", default_value = "default")]
    pub namespace: String,
    /// The apply set: its members are recorded in the cluster (Secret NAME in the namespace, kubectl's ApplySet) for `--prune`.
    #[arg(long, value_name = "NAME")]
    pub inventory: Option<String>,
    /// Requests in flight at once.
    #[arg(long, value_name = "N", default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,
}

/// `apply` options.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The input.
    #[command(flatten)]
    pub input: InputArgs,
    /// The cluster.
    #[command(flatten)]
    pub target: TargetArgs,
    /// Delete the set's earlier members that the input no longer has (needs --inventory).
    #[arg(long, requires = "inventory")]
    pub prune: bool,
    /// Wait for each wave to be ready before the next, and for the last before exiting.
    #[arg(long)]
    pub wait: bool,
    /// The deadline of the whole apply, e.g. `90s`, `5m` (default 5m).
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,
    /// Ask the server what it would do (dryRun=All); change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `diff` options.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The input.
    #[command(flatten)]
    pub input: InputArgs,
    /// The cluster.
    #[command(flatten)]
    pub target: TargetArgs,
}

/// `trust` subcommands.
#[derive(Debug, Subcommand)]
pub enum TrustCommand {
    /// Print the lab CA's certificate (PEM).
    Export(LabArgs),
    /// Trust the lab CA: the system store (update-ca-certificates, update-ca-trust, macOS keychain) and the NSS databases of Chromium and Firefox.
    Install(TrustArgs),
    /// Stop trusting the lab CA, in every store `install` uses.
    Uninstall(TrustArgs),
    /// Where the lab CA is trusted.
    Status(TrustArgs),
}

/// `serve` options.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The lab.
    #[command(flatten)]
    pub lab: LabArgs,
    /// Pass the HTTPS entry through to these addresses instead of the Gateway's loopback ports (repeatable; for debugging and benchmarks).
    #[arg(long, value_name = "ADDR:PORT")]
    pub gateway: Vec<std::net::SocketAddr>,
    /// Run in a new session with JSON logs, as `up` starts it (its output goes to the lab's daemon.log).
    #[arg(long, hide = true)]
    pub detach: bool,
}

/// `dns` subcommands.
#[derive(Debug, Subcommand)]
pub enum DnsCommand {
    /// Send the lab's suffix (only) to the lab's DNS answer: systemd-resolved, NetworkManager's dnsmasq, or macOS /etc/resolver.
    Setup(DnsArgs),
    /// Remove what `dns setup` wrote for the lab (`down` does this too).
    Teardown(DnsArgs),
    /// Where the host's resolvers send the lab's suffix.
    Status(DnsArgs),
}

/// `dns setup|teardown|status` options.
#[derive(Debug, Args)]
pub struct DnsArgs {
    /// The lab.
    #[command(flatten)]
    pub lab: LabArgs,
    /// The file-system root the resolver configuration lives under (tests use a temporary one; nothing is reloaded then).
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
}

/// `open` options.
#[derive(Debug, Args)]
pub struct OpenArgs {
    /// The lab.
    #[command(flatten)]
    pub lab: LabArgs,
    /// The service, the first label of its hostname (`argocd`); none opens the landing page.
    pub service: Option<String>,
    /// Print the URL instead of starting a browser.
    #[arg(long)]
    pub print: bool,
}

/// `trust install|uninstall|status` options.
#[derive(Debug, Args)]
pub struct TrustArgs {
    /// The lab.
    #[command(flatten)]
    pub lab: LabArgs,
    /// The file-system root the trust stores live under (tests use a temporary one).
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
}
