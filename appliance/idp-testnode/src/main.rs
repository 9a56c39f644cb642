//! `k3s`: a stand-in for the rancher/k3s entrypoint in idp-lab's test-bed
//! node image (`idp-lab/testnode`).
//!
//! It honours the part of the k3s contract that tools driving k3s through
//! the Docker API rely on: the `server`/`agent` command line, `K3S_*`
//! environment, `/etc/rancher/k3s/config.yaml` and `registries.yaml`,
//! auto-deploy manifests, node labels and taints, the admin kubeconfig at
//! `K3S_KUBECONFIG_OUTPUT`, and logrus-style log lines such as
//! `k3s is up and running`. It is as strict as k3s v1.33 where that matters
//! to a caller: unknown flags (and server-only flags on an agent) are
//! refused with k3s' texts and exit code, the kubeconfig is written before
//! the API server is ready, and with `--flannel-backend=none` nodes stay
//! `NotReady` until a CNI config appears. Behind it runs a real etcd,
//! kube-apiserver and kube-controller-manager (Kubernetes 1.20.2), but no
//! kubelet, container runtime or CNI: pods stay `Pending`. It needs no
//! privileges. See `e2e/README.md` for the full list of what it does and
//! does not reproduce.
//!
//! The parsed invocation is recorded at
//! `/var/lib/rancher/k3s/idp-testnode/invocation.json` for tests to read.

#[macro_use]
mod logrus;
mod agent;
mod api;
mod cli;
mod cni;
mod config;
mod files;
mod flags;
mod host;
mod labels;
mod manifests;
mod node;
mod pki;
mod server;
mod supervisor;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::{Value, json};
use tokio::signal::unix::{SignalKind, signal};

use crate::cli::{Role, Settings};
use crate::config::ConfigFiles;
use crate::flags::{Command, Flags, UsageError};
use crate::supervisor::Supervisor;

/// The version reported by `--version`, in logs and as the kubelet version.
pub const VERSION: &str = node::KUBELET_VERSION;

/// k3s subcommands the stand-in does not implement.
const OTHER_K3S_COMMANDS: &[&str] =
    &["crictl", "ctr", "check-config", "token", "etcd-snapshot", "secrets-encrypt", "certificate", "completion"];

fn main() -> ExitCode {
    // Before any TLS: rustls needs one process-wide crypto provider.
    let _ = rustls::crypto::ring::default_provider().install_default();

    let argv: Vec<String> = std::env::args_os().map(|a| a.to_string_lossy().into_owned()).collect();
    let program = argv.first().and_then(|a| Path::new(a).file_name()).map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();

    // Multi-call like the k3s binary: /bin/kubectl is a link to /bin/k3s.
    if program == "kubectl" {
        return exec_kubectl(argv.get(1..).unwrap_or_default());
    }

    // Flags before the subcommand (`k3s --debug server`), as urfave/cli parses them.
    let env = |k: &str| std::env::var(k).ok();
    let root = match flags::parse(Command::Root, argv.get(1..).unwrap_or_default(), &env) {
        Ok(r) => r,
        Err(e) => {
            let mut rec = Record::new(&argv, None, argv.get(1..).unwrap_or_default());
            rec.fail("usage", &e);
            rec.write_best_effort();
            return usage_failure(Command::Root, &e);
        }
    };
    if root.version() {
        println!("k3s version {VERSION} (idp-testnode)");
        println!("go version none (idp-testnode is a Rust stand-in for k3s)");
        return ExitCode::SUCCESS;
    }
    let sub = root.positionals().first().map(String::as_str);
    if root.help() || sub.is_none() {
        print!("{}", flags::help(Command::Root));
        return ExitCode::SUCCESS;
    }
    let rest = root.positionals().get(1..).unwrap_or_default();
    match sub.unwrap_or_default() {
        "server" => run(Role::Server, &argv, &root, rest),
        "agent" => run(Role::Agent, &argv, &root, rest),
        "kubectl" => exec_kubectl(rest),
        "help" | "h" => match rest.first().map(String::as_str) {
            None => {
                print!("{}", flags::help(Command::Root));
                ExitCode::SUCCESS
            }
            Some("server") => {
                print!("{}", flags::help(Command::Server));
                ExitCode::SUCCESS
            }
            Some("agent") => {
                print!("{}", flags::help(Command::Agent));
                ExitCode::SUCCESS
            }
            Some(other) => no_help_topic(other),
        },
        other if OTHER_K3S_COMMANDS.contains(&other) => {
            fatal!("idp-testnode stand-in: `k3s {other}` is not implemented; only server, agent and kubectl are");
            ExitCode::FAILURE
        }
        other => no_help_topic(other),
    }
}

/// urfave/cli's answer to an unknown subcommand: exit status 3, no log line.
fn no_help_topic(name: &str) -> ExitCode {
    eprintln!("No help topic for '{name}'");
    ExitCode::from(3)
}

/// What k3s does with a command line it refuses: `Incorrect Usage: ...`, a
/// blank line and the help on stdout, a logrus fatal `Error: ...` on stderr,
/// exit status 1.
fn usage_failure(cmd: Command, e: &UsageError) -> ExitCode {
    {
        let mut out = std::io::stdout().lock();
        let _ = write!(out, "Incorrect Usage: {e}\n\n{}", flags::help(cmd));
        let _ = out.flush();
    }
    fatal!("Error: {e}");
    ExitCode::FAILURE
}

/// Runs the bundled kubectl with the admin kubeconfig, like `k3s kubectl`.
fn exec_kubectl(args: &[String]) -> ExitCode {
    let kubectl = files::bin_dir().join("kubectl");
    let mut cmd = std::process::Command::new(&kubectl);
    cmd.args(args);
    let explicit = args.iter().any(|a| a.starts_with("--kubeconfig"));
    if std::env::var_os("KUBECONFIG").is_none() && !explicit && Path::new(files::K3S_YAML).exists() {
        cmd.env("KUBECONFIG", files::K3S_YAML);
    }
    let err = cmd.exec();
    eprintln!("k3s kubectl: running {}: {err}", kubectl.display());
    ExitCode::FAILURE
}

fn run(role: Role, argv: &[String], root: &Flags, args: &[String]) -> ExitCode {
    let settings = match prepare(role, argv, root, args) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build();
    match runtime {
        Ok(rt) => ExitCode::from(rt.block_on(run_role(role, settings))),
        Err(e) => {
            fatal!("starting the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

/// How the role ended.
enum Outcome {
    Fatal(String),
    Signal(&'static str),
}

async fn run_role(role: Role, settings: Settings) -> u8 {
    match role {
        Role::Server => info!("Starting k3s {VERSION} (idp-testnode stand-in)"),
        Role::Agent => info!("Starting k3s agent {VERSION} (idp-testnode stand-in)"),
    }

    let (sup, mut exits) = Supervisor::new();
    let (mut sigterm, mut sigint) = match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(t), Ok(i)) => (t, i),
        (Err(e), _) | (_, Err(e)) => {
            fatal!("installing signal handlers: {e}");
            return 1;
        }
    };
    let work = async {
        match role {
            Role::Server => server::run(&settings, sup.clone()).await,
            Role::Agent => agent::run(&settings).await,
        }
    };
    let outcome = tokio::select! {
        res = work => {
            let Err(e) = res;
            Outcome::Fatal(format!("{e:#}"))
        }
        Some(exit) = exits.recv() => {
            let status = match &exit.status {
                Ok(s) => s.to_string(),
                Err(e) => e.to_string(),
            };
            Outcome::Fatal(format!(
                "{} exited unexpectedly ({status}); see {}/{}.log",
                exit.name,
                files::LOG_DIR,
                exit.name
            ))
        }
        _ = sigterm.recv() => Outcome::Signal("SIGTERM"),
        _ = sigint.recv() => Outcome::Signal("SIGINT"),
    };
    match outcome {
        Outcome::Signal(sig) => {
            info!("Received {sig}, shutting down");
            sup.shutdown(&mut exits).await;
            info!("Shutdown complete");
            0
        }
        Outcome::Fatal(msg) => {
            sup.shutdown(&mut exits).await;
            fatal!("{msg}");
            1
        }
    }
}

/// The record at `invocation.json`, filled as the invocation is understood
/// and written at every start, also when something is refused (then with
/// `error`), so tests can read it from a stopped container.
struct Record(serde_json::Map<String, Value>);

impl Record {
    fn new(argv: &[String], role: Option<Role>, args: &[String]) -> Record {
        let relevant_env: BTreeMap<String, String> = std::env::vars()
            .filter(|(k, _)| {
                k.starts_with("K3S_")
                    || matches!(
                        k.to_ascii_uppercase().as_str(),
                        "HTTP_PROXY"
                            | "HTTPS_PROXY"
                            | "NO_PROXY"
                            | "CONTAINERD_HTTP_PROXY"
                            | "CONTAINERD_HTTPS_PROXY"
                            | "CONTAINERD_NO_PROXY"
                    )
            })
            .collect();
        let base = json!({
            "stand_in": "idp-testnode",
            "version": VERSION,
            "argv": argv,
            "subcommand": role,
            "args": args,
            "env": relevant_env,
            "hostname": host::hostname(),
            "addresses": host::addresses(),
            "pid": std::process::id(),
            "started_at": k8s_openapi::jiff::Timestamp::now().to_string(),
            "error": null,
            "error_kind": null,
        });
        match base {
            Value::Object(map) => Record(map),
            _ => Record(serde_json::Map::new()),
        }
    }

    fn set(&mut self, key: &str, value: impl serde::Serialize) {
        self.0.insert(key.to_string(), serde_json::to_value(value).unwrap_or(Value::Null));
    }

    fn config(&mut self, config: &ConfigFiles) {
        self.set("config_files", &config.files);
        self.set("config", config.to_json());
        self.set("config_text", config.texts_json());
    }

    /// Notes a refusal: `kind` is `usage` (flags), `config` (a config or
    /// registries file) or `settings` (a value k3s refuses at start).
    fn fail(&mut self, kind: &str, e: &dyn std::fmt::Display) {
        let text = e.to_string();
        let joined = match self.0.get("error").and_then(Value::as_str) {
            Some(prev) => format!("{prev}; {text}"),
            None => text,
        };
        self.set("error", joined);
        if self.0.get("error_kind").is_none_or(Value::is_null) {
            self.set("error_kind", kind);
        }
    }

    fn failed(&self) -> Option<String> {
        self.0.get("error").and_then(Value::as_str).map(str::to_string)
    }

    fn write(&self) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(&Value::Object(self.0.clone()))? + "\n";
        files::write_atomic(Path::new(files::INVOCATION), text.as_bytes(), 0o600)
    }

    /// On the way out after a refusal the record is a courtesy: failing to
    /// write it must not change what the caller sees.
    fn write_best_effort(&self) {
        let _ = self.write();
    }
}

/// Parses the command line (strictly, as the k3s multicall binary does),
/// merges the config files (as the inner k3s binary does: a server drops
/// unknown keys with a warning, an agent drops nothing), resolves the
/// settings and records the result. `Err` carries the exit code after a
/// refusal, or after `--help`.
fn prepare(role: Role, argv: &[String], root: &Flags, args: &[String]) -> Result<Settings, ExitCode> {
    let env = |k: &str| std::env::var(k).ok();
    let cmd = role.command();
    let hostname = host::hostname();
    let mut rec = Record::new(argv, Some(role), args);
    rec.set("root_flags", root.grouped());

    // Stage 1: the command line alone.
    let cli_flags = match flags::parse(cmd, args, &env) {
        Ok(f) => f,
        Err(e) => {
            let path = config::find_config_arg(args).or_else(|| env("K3S_CONFIG_FILE")).unwrap_or_else(|| config::DEFAULT_CONFIG.into());
            if let Ok(c) = ConfigFiles::load(Path::new(&path)) {
                rec.config(&c);
            }
            rec.fail("usage", &e);
            rec.write_best_effort();
            return Err(usage_failure(cmd, &e));
        }
    };
    if cli_flags.help() || cli_flags.positionals().first().is_some_and(|p| p == "help") {
        print!("{}", flags::help(cmd));
        return Err(ExitCode::SUCCESS);
    }

    // Stage 2: config-file keys as flags before the command line.
    let config_path = cli_flags
        .last("config")
        .map(PathBuf::from)
        .or_else(|| env("K3S_CONFIG_FILE").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(config::DEFAULT_CONFIG));
    let mut config = match ConfigFiles::load(&config_path) {
        Ok(c) => c,
        Err(e) => {
            rec.fail("config", &e);
            rec.write_best_effort();
            fatal!("{e}");
            return Err(ExitCode::FAILURE);
        }
    };
    rec.config(&config);
    // k3s checks the keys only when the second argv word is `server`, so
    // `k3s --debug server` strips nothing.
    let strip = role == Role::Server && argv.get(1).is_some_and(|a| a == "server");
    let (dropped, effective) = cli::merge_config(&mut config, strip, args);
    for key in &dropped {
        warn!("{}", cli::unknown_key_warning(key));
    }
    rec.set("config_skipped", &dropped);
    rec.set("effective_args", &effective);
    let flags = match flags::parse(cmd, &effective, &env) {
        Ok(f) => f,
        Err(e) => {
            rec.fail("usage", &e);
            rec.write_best_effort();
            return Err(usage_failure(cmd, &e));
        }
    };
    if flags.help() {
        print!("{}", flags::help(cmd));
        return Err(ExitCode::SUCCESS);
    }
    rec.set("flags", flags.grouped());
    rec.set("positionals", flags.positionals());

    let registries_path = PathBuf::from(flags.last("private-registry").unwrap_or(config::DEFAULT_REGISTRIES));
    let registries = match config::load_registries(&registries_path) {
        Ok(r) => json!({ "path": registries_path, "present": r.is_some(), "content": r }),
        Err(e) => {
            rec.fail("config", &e);
            json!({ "path": registries_path, "present": true, "error": e.to_string() })
        }
    };
    rec.set("registries", registries);

    let settings = Settings::resolve(role, &flags, &effective, &env, &hostname);
    match &settings {
        Ok(s) => {
            rec.set("node_name", &s.node_name);
            rec.set("resolved", s.to_json());
        }
        Err(e) => rec.fail("settings", e),
    }
    if let Err(e) = rec.write() {
        fatal!("recording the invocation: {e:#}");
        return Err(ExitCode::FAILURE);
    }
    if let Some(error) = rec.failed() {
        fatal!("{error}");
        return Err(ExitCode::FAILURE);
    }

    for p in root.last("data-dir").into_iter().chain(flags.last("data-dir")) {
        warn!("--data-dir {p} is recorded but ignored: the stand-in always uses {}", files::DATA_DIR);
    }
    settings.map_err(|_| ExitCode::FAILURE)
}
