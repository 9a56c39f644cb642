//! What the lifecycle commands share: the lab they act on, the Docker engine, the
//! lab's private files, and how plane errors become exit codes.

use crate::cli::{Global, LabArgs};
use crate::context::{Context, lab_record, state_failure, store};
use crate::exit::{CONFLICT, DOCKER, Failure, INPUT, IO, NOT_FOUND, PORT, PREFLIGHT, TIMEOUT};
use idp_core::cluster::ClusterPlan;
use idp_provision::{Engine, ProvisionError};
use idp_state::{LabRecord, StateStore};
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A lab as the lifecycle commands see it.
pub struct Lab {
    /// The loaded configuration (with `--name` applied).
    pub ctx: Context,
    /// The lab's name.
    pub name: String,
    /// Its state store.
    pub store: StateStore,
    /// What its last `up` recorded, if it ran.
    pub record: Option<LabRecord>,
}

impl Lab {
    /// Loads the configuration and the lab named by `--name` (else `lab.name`).
    pub fn load(global: &Global, args: &LabArgs) -> Result<Lab, Failure> {
        let mut ctx = Context::load(global, None)?;
        if let Some(name) = &args.name {
            if !idp_core::config::is_name(name) {
                return Err(Failure::new(INPUT, format!("--name {name:?}: expected {}", idp_core::config::schema::Kind::Name.expected())));
            }
            ctx.config.lab.name = name.clone();
        }
        let name = ctx.config.lab.name.clone();
        let record = lab_record(&name)?;
        Ok(Lab { store: store(&name)?, ctx, name, record })
    }

    /// The lab's state directory.
    pub fn dir(&self) -> PathBuf {
        self.store.lab_dir().to_path_buf()
    }

    /// The plan of the lab's last `up`; an error naming the lab when it never ran.
    pub fn plan(&self) -> Result<&ClusterPlan, Failure> {
        self.record.as_ref().and_then(|r| r.plan.as_ref()).ok_or_else(|| {
            Failure::new(
                NOT_FOUND,
                format!("there is no lab {:?} (`idp-lab list` shows the labs; `idp-lab up --name {}` makes it)", self.name, self.name),
            )
        })
    }

    /// Writes the record.
    pub fn save(&mut self, record: LabRecord) -> Result<(), Failure> {
        self.store.put(idp_state::LAB_RECORD, &record).map_err(state_failure)?;
        self.record = Some(record);
        Ok(())
    }
}

/// A runtime for the async planes.
pub fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::new(crate::exit::INTERNAL, format!("failed to start the async runtime: {e}")))
}

/// Connects to Docker.
pub async fn engine() -> Result<Engine, Failure> {
    Engine::connect().await.map_err(provision_failure)
}

/// A provisioning error as a failure with its exit code.
pub fn provision_failure(e: ProvisionError) -> Failure {
    let code = match &e {
        ProvisionError::Unreachable { .. }
        | ProvisionError::Api { .. }
        | ProvisionError::Archive(_)
        | ProvisionError::LoadFailed { .. }
        | ProvisionError::LoadCut { .. } => DOCKER,
        ProvisionError::PrivilegesRefused { .. } | ProvisionError::ImageMissing { .. } => PREFLIGHT,
        ProvisionError::PortAllocated { .. } => PORT,
        ProvisionError::SubnetTaken { .. } => CONFLICT,
        ProvisionError::Foreign { .. } => CONFLICT,
        ProvisionError::NotReady { .. } | ProvisionError::Exited { .. } => TIMEOUT,
        ProvisionError::NoSuchNode { .. } => NOT_FOUND,
        ProvisionError::Io { .. } => IO,
    };
    Failure::new(code, e.to_string())
}

/// A Kubernetes-plane error as a failure.
pub fn kube_failure(e: impl std::fmt::Display) -> Failure {
    Failure::new(crate::exit::KUBE, e.to_string())
}

/// Writes `content` to `path` with mode 0600, through a temporary file and a rename.
pub fn write_private(path: &Path, content: &[u8]) -> Result<(), Failure> {
    let io = |e: std::io::Error| Failure::new(IO, format!("failed to write {}: {e}", path.display()));
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    let tmp = dir.join(format!(".{}.tmp-{}", path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default(), std::process::id()));
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp).map_err(io)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    f.write_all(content).and_then(|()| f.sync_all()).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// The lab's join token: read from `<state>/token`, or made (128 random bits) and
/// written there with mode 0600. It never goes into a label or the environment.
pub fn token(lab_dir: &Path) -> Result<String, Failure> {
    let path = lab_dir.join("token");
    match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => return Ok(t.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Failure::new(IO, format!("failed to read {}: {e}", path.display()))),
    }
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .map_err(|e| Failure::new(IO, format!("failed to read /dev/urandom for the join token: {e}")))?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    write_private(&path, token.as_bytes())?;
    Ok(token)
}

/// Parses `--timeout`, defaulting to `default`.
pub fn timeout(flag: Option<&str>, default: Duration) -> Result<Duration, Failure> {
    match flag {
        None => Ok(default),
        Some(text) => idp_core::config::parse_duration(text).map(Duration::from_secs).ok_or_else(|| {
            Failure::new(INPUT, format!("--timeout {text:?}: expected {}", idp_core::config::schema::Kind::Duration.expected()))
        }),
    }
}

/// Saves the last lines of every node's log under `<state>/logs/<time>/`, and returns
/// the folder (best effort: a node without a container is skipped).
pub async fn save_logs(engine: &Engine, plan: &ClusterPlan, lab_dir: &Path) -> Option<PathBuf> {
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let dir = lab_dir.join("logs").join(stamp.to_string());
    std::fs::create_dir_all(&dir).ok()?;
    for node in &plan.nodes {
        if let Ok(log) = engine.log(&node.name, 2000).await {
            let _ = std::fs::write(dir.join(format!("{}.log", node.name)), log);
        }
    }
    Some(dir)
}

/// The full node name for `given` (`agent-0` or `demo-agent-0`) among the lab's nodes.
pub fn node_name(lab: &str, given: &str, nodes: &[String]) -> Result<String, Failure> {
    let full = if nodes.iter().any(|n| n == given) { given.to_owned() } else { format!("{lab}-{given}") };
    if nodes.contains(&full) {
        return Ok(full);
    }
    Err(provision_failure(ProvisionError::NoSuchNode { lab: lab.to_owned(), node: given.to_owned(), known: nodes.to_vec() }))
}

/// The lab's kubeconfig file in its state directory.
pub fn kubeconfig_path(lab_dir: &Path) -> PathBuf {
    lab_dir.join("kubeconfig")
}

/// The lab CA's folder in the lab's state directory (kept by `down`, removed by
/// `down --purge`).
pub fn ca_dir(lab_dir: &Path) -> PathBuf {
    lab_dir.join("ca")
}

/// The lab CA for `suffix`: loaded, or made when there is none (or `renew`).
pub fn lab_ca(lab: &str, lab_dir: &Path, suffix: &str, renew: bool) -> Result<idp_edge::LabCa, Failure> {
    idp_edge::LabCa::load_or_create(lab, &ca_dir(lab_dir), &[suffix.to_owned()], renew).map_err(|e| match e {
        idp_edge::EdgeError::Io { .. } => Failure::new(IO, e.to_string()),
        _ => Failure::new(INPUT, e.to_string()),
    })
}
