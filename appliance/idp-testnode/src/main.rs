//! `k3s`: a stand-in for the rancher/k3s entrypoint in idp-lab's test-bed
//! node image (`idp-lab/testnode`).
//!
//! It honours the part of the k3s contract that tools driving k3s through
//! the Docker API rely on: the `server`/`agent` command line, `K3S_*`
//! environment, `/etc/rancher/k3s/config.yaml` and `registries.yaml`,
//! auto-deploy manifests, node labels and taints, the admin kubeconfig at
//! `K3S_KUBECONFIG_OUTPUT`, and logrus-style log lines such as
//! `k3s is up and running`. Behind it runs a real etcd, kube-apiserver and
//! kube-controller-manager (Kubernetes 1.20.2), but no kubelet, container
//! runtime or CNI: nodes are registered `Ready` and pods stay `Pending`.
//! It needs no privileges. See `e2e/README.md` for the full list of what it
//! does and does not reproduce.
//!
//! The parsed invocation is recorded at
//! `/var/lib/rancher/k3s/idp-testnode/invocation.json` for tests to read.

#[macro_use]
mod logrus;
mod agent;
mod api;
mod cli;
mod config;
mod files;
mod host;
mod manifests;
mod node;
mod pki;
mod server;
mod supervisor;

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use serde_json::json;
use tokio::signal::unix::{SignalKind, signal};

use crate::cli::{Flags, Role, Settings};
use crate::config::ConfigFiles;
use crate::supervisor::Supervisor;

/// The version reported by `--version`, in logs and as the kubelet version.
pub const VERSION: &str = node::KUBELET_VERSION;

fn main() -> ExitCode {
    // Before any TLS: rustls needs one process-wide crypto provider.
    let _ = rustls::crypto::ring::default_provider().install_default();

    let argv: Vec<String> = std::env::args_os().map(|a| a.to_string_lossy().into_owned()).collect();
    let program = argv.first().and_then(|a| Path::new(a).file_name()).map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let rest = argv.get(2..).map(<[String]>::to_vec).unwrap_or_default();

    // Multi-call like the k3s binary: /bin/kubectl is a link to /bin/k3s.
    if program == "kubectl" {
        return exec_kubectl(argv.get(1..).unwrap_or_default());
    }
    match argv.get(1).map(String::as_str) {
        Some("server") => run(Role::Server, rest),
        Some("agent") => run(Role::Agent, rest),
        Some("kubectl") => exec_kubectl(&rest),
        Some("--version" | "-v" | "version") => {
            println!("k3s version {VERSION} (idp-testnode)");
            println!("go version none (idp-testnode is a Rust stand-in for k3s)");
            ExitCode::SUCCESS
        }
        None | Some("--help" | "-h" | "help") => {
            println!(
                "usage: k3s server|agent [flags]\n       k3s kubectl [args]\n\nidp-testnode: a stand-in for k3s {VERSION} without kubelet or container runtime"
            );
            ExitCode::SUCCESS
        }
        Some(other) => {
            fatal!("idp-testnode stand-in: unsupported command {other:?}; only server, agent and kubectl are implemented");
            ExitCode::FAILURE
        }
    }
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

fn run(role: Role, args: Vec<String>) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build();
    match runtime {
        Ok(rt) => ExitCode::from(rt.block_on(run_role(role, args))),
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

async fn run_role(role: Role, args: Vec<String>) -> u8 {
    info!("Starting k3s {VERSION} (idp-testnode stand-in, {} mode)", role_name(role));
    let settings = match prepare(role, &args) {
        Ok(s) => s,
        Err(e) => {
            fatal!("{e:#}");
            return 1;
        }
    };

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

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Server => "server",
        Role::Agent => "agent",
    }
}

/// Merges config files, command line and environment, records the result in
/// `invocation.json` (also when something is invalid, with an `error`), and
/// returns the settings.
fn prepare(role: Role, args: &[String]) -> Result<Settings> {
    let env = |k: &str| std::env::var(k).ok();
    let hostname = host::hostname();
    let cli_flags = Flags::parse(args);
    let config_path = cli_flags
        .last("config")
        .map(PathBuf::from)
        .or_else(|| env("K3S_CONFIG_FILE").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(config::DEFAULT_CONFIG));

    let mut errors: Vec<String> = Vec::new();
    let config = ConfigFiles::load(&config_path).unwrap_or_else(|e| {
        errors.push(e.to_string());
        ConfigFiles::default()
    });
    let mut effective = config.to_args();
    effective.extend(args.iter().cloned());
    let flags = Flags::parse(&effective);

    let registries_path = PathBuf::from(flags.last("private-registry").unwrap_or(config::DEFAULT_REGISTRIES));
    let registries = match config::load_registries(&registries_path) {
        Ok(r) => json!({ "path": registries_path, "present": r.is_some(), "content": r }),
        Err(e) => {
            errors.push(e.to_string());
            json!({ "path": registries_path, "present": true, "error": e.to_string() })
        }
    };

    let settings = Settings::resolve(role, &flags, &effective, &env, &hostname);
    if let Err(e) = &settings {
        errors.push(e.to_string());
    }

    let relevant_env: BTreeMap<String, String> = std::env::vars()
        .filter(|(k, _)| {
            k.starts_with("K3S_")
                || matches!(
                    k.to_ascii_uppercase().as_str(),
                    "HTTP_PROXY" | "HTTPS_PROXY" | "NO_PROXY" | "CONTAINERD_HTTP_PROXY" | "CONTAINERD_HTTPS_PROXY" | "CONTAINERD_NO_PROXY"
                )
        })
        .collect();
    let record = json!({
        "stand_in": "idp-testnode",
        "version": VERSION,
        "subcommand": role,
        "args": args,
        "config_files": config.files,
        "config": config.to_json(),
        "effective_args": effective,
        "flags": flags.grouped(),
        "positionals": flags.positionals(),
        "env": relevant_env,
        "registries": registries,
        "node_name": settings.as_ref().ok().map(|s| s.node_name.clone()),
        "resolved": settings.as_ref().ok().map(Settings::to_json),
        "hostname": hostname,
        "addresses": host::addresses(),
        "pid": std::process::id(),
        "started_at": k8s_openapi::jiff::Timestamp::now().to_string(),
        "error": (!errors.is_empty()).then(|| errors.join("; ")),
    });
    let text = serde_json::to_string_pretty(&record)? + "\n";
    files::write_atomic(Path::new(files::INVOCATION), text.as_bytes(), 0o600)?;

    if let Some(p) = flags.last("data-dir") {
        warn!("--data-dir {p} is recorded but ignored: the stand-in always uses {}", files::DATA_DIR);
    }
    if !errors.is_empty() {
        anyhow::bail!(errors.join("; "));
    }
    Ok(settings?)
}
