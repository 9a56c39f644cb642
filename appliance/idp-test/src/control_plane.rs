//! A real, throwaway Kubernetes control plane on loopback: etcd, kube-apiserver and (optionally)
//! kube-controller-manager, started by the harness itself (a port of
//! `e2e/testbed/control-plane.sh`). There is no kubelet, so Pods stay Pending.

use std::fmt::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use kube::Client;
use tempfile::TempDir;

use crate::poll::{Attempt, poll_until_with};
use crate::process::{DEFAULT_GRACE, Supervised, stop_all};
use crate::testbed::{Testbed, testbed};

/// How long the API server may take to answer `/readyz` (about 2 s is usual; on CI's two
/// cores, with several control planes and a build starting at once, one was seen not to
/// listen within 90 s).
const READY_TIMEOUT: Duration = Duration::from_secs(180);
/// The longest pause between readiness checks: they are cheap, and every test waits for them.
const READY_INTERVAL: Duration = Duration::from_millis(100);
/// Start attempts: a free port found by binding port 0 can be taken by someone else before
/// etcd or the API server binds it, so a bind failure retries with fresh ports.
const START_ATTEMPTS: usize = 3;
/// The controllers of `control-plane.sh`: everything except those that need nodes or clouds.
const CONTROLLERS: &str = "*,-nodeipam,-nodelifecycle,-ttl,-attachdetach,-persistentvolume-binder,-cloud-node-lifecycle";

/// What to start besides etcd and kube-apiserver.
#[derive(Clone, Copy, Debug)]
pub struct ControlPlaneOptions {
    /// Start kube-controller-manager (Deployments get ReplicaSets, namespaces finish deleting).
    /// Off saves a process and CPU for tests that only talk to the API.
    pub controller_manager: bool,
}

impl Default for ControlPlaneOptions {
    fn default() -> Self {
        Self { controller_manager: true }
    }
}

/// A running control plane. Dropping it stops the processes (SIGTERM, then SIGKILL) and removes
/// its temporary directory, also while a test panics; see [`crate::process`] for why no process
/// outlives a killed test either.
pub struct ControlPlane {
    client: Client,
    kubeconfig: String,
    kubeconfig_path: PathBuf,
    server: String,
    bin_dir: PathBuf,
    processes: Mutex<Vec<Supervised>>,
    apiserver: ApiServerCommand,
    // Declared last: removed after the processes are gone.
    dir: TempDir,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane").field("server", &self.server).field("dir", &self.dir.path()).finish_non_exhaustive()
    }
}

impl ControlPlane {
    /// Starts etcd, kube-apiserver and kube-controller-manager from the test bed's binaries.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(&testbed(), ControlPlaneOptions::default()).await
    }

    /// Starts etcd and kube-apiserver only: faster, for tests that need no controllers.
    pub async fn start_without_controller_manager() -> anyhow::Result<Self> {
        Self::start_with(&testbed(), ControlPlaneOptions { controller_manager: false }).await
    }

    /// Starts a control plane from `testbed`'s binaries with `options`.
    ///
    /// Returns once `/readyz` answers `ok`. The controller manager, when asked for, is started
    /// after that and is not waited for: poll for what it does.
    pub async fn start_with(testbed: &Testbed, options: ControlPlaneOptions) -> anyhow::Result<Self> {
        let bin_dir = testbed.bin_dir();
        let dir = tempfile::Builder::new().prefix("idp-test-cp-").tempdir().context("failed to create the control plane's temp dir")?;
        let token = random_hex(16)?;
        let sa_key = dir.path().join("sa.key");
        generate_rsa_key(&sa_key).await?;
        let tokens = dir.path().join("tokens.csv");
        std::fs::write(&tokens, format!("{token},admin,admin,system:masters\n")).context("failed to write tokens.csv")?;

        let mut last_error = None;
        for attempt in 1..=START_ATTEMPTS {
            let attempt_dir = dir.path().join(format!("attempt-{attempt}"));
            match start_core(&bin_dir, &attempt_dir, &sa_key, &tokens, &token).await {
                Ok(core) => {
                    let kubeconfig_path = dir.path().join("kubeconfig");
                    // From here on, an early return drops `cp`, which stops what runs in order.
                    let cp = Self {
                        client: core.client,
                        kubeconfig: core.kubeconfig,
                        kubeconfig_path,
                        server: core.server,
                        bin_dir,
                        processes: Mutex::new(core.processes),
                        apiserver: core.apiserver,
                        dir,
                    };
                    std::fs::write(&cp.kubeconfig_path, &cp.kubeconfig).context("failed to write the kubeconfig")?;
                    if options.controller_manager {
                        let kcm_dir = make_dir(&attempt_dir.join("kube-controller-manager"))?;
                        let kcm = Supervised::spawn(
                            "kube-controller-manager",
                            &cp.bin_dir.join("kube-controller-manager"),
                            controller_manager_args(&cp.kubeconfig_path, &sa_key),
                            &kcm_dir,
                        )?;
                        cp.processes().push(kcm);
                    }
                    return Ok(cp);
                }
                Err(StartError::PortTaken(e)) => last_error = Some(e),
                Err(StartError::Other(e)) => return Err(e),
            }
        }
        Err(last_error
            .unwrap_or_else(|| anyhow::anyhow!("no start attempt was made"))
            .context(format!("the control plane did not start in {START_ATTEMPTS} attempts")))
    }

    /// A client authenticated as a `system:masters` admin.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The admin kubeconfig as YAML (the CA is referenced by path inside [`Self::dir`]).
    pub fn kubeconfig(&self) -> &str {
        &self.kubeconfig
    }

    /// Where the admin kubeconfig is written.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig_path
    }

    /// The API server URL, `https://127.0.0.1:<port>`.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The directory with the version-matched binaries (kubectl among them).
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// The control plane's temporary directory (logs, certificates, etcd data).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A `kubectl` command of the matching version, pointed at this control plane with
    /// `--kubeconfig` and with any inherited `KUBECONFIG` removed.
    pub fn kubectl(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new(self.bin_dir.join("kubectl"));
        cmd.env_remove("KUBECONFIG").arg("--kubeconfig").arg(&self.kubeconfig_path);
        cmd
    }

    /// The process ids of etcd, kube-apiserver and (if started) kube-controller-manager.
    pub fn pids(&self) -> Vec<u32> {
        self.processes().iter().map(Supervised::pid).collect()
    }

    /// Stops the API server (SIGTERM, as a node's restart would) and starts it again with
    /// the same port, certificates and etcd, returning once `/readyz` says ok: for tests of
    /// clients that must survive an API server restart.
    pub async fn restart_apiserver(&self) -> anyhow::Result<()> {
        let api = self.apiserver.clone();
        {
            let mut processes = self.processes();
            let index = processes.iter().position(|p| p.name() == "kube-apiserver").context("no kube-apiserver process")?;
            stop_all(std::slice::from_mut(&mut processes[index]), DEFAULT_GRACE);
            processes[index] = Supervised::spawn("kube-apiserver", &api.program, &api.args, &api.dir)?;
        }
        let mut fresh = Vec::new();
        // `wait_ready` checks the processes it is given; the restarted one is watched
        // through `ensure_running` by the poll below instead.
        let _ = wait_ready(&mut fresh, &self.kubeconfig, &api.ca).await?;
        self.ensure_running()
    }

    /// Fails, quoting its log, when any of the processes has exited. Call it from poll loops so
    /// that a crashed controller manager reads as such, not as a timeout.
    pub fn ensure_running(&self) -> anyhow::Result<()> {
        self.processes().iter_mut().try_for_each(Supervised::ensure_running)
    }

    /// The last `lines` lines of each process's log, for failure messages.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut out = String::new();
        for p in self.processes().iter() {
            let _ = writeln!(out, "--- {} ({}):\n{}", p.name(), p.log_path().display(), p.log_tail(lines));
        }
        out
    }

    fn processes(&self) -> MutexGuard<'_, Vec<Supervised>> {
        // A poisoned lock only means a panic elsewhere; the processes still need stopping.
        self.processes.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let processes = self.processes.get_mut().unwrap_or_else(PoisonError::into_inner);
        stop_in_order(processes);
    }
}

/// Stops `[etcd, kube-apiserver, kube-controller-manager?]`: the API clients first, etcd once
/// they are gone (an API server that loses etcd first stalls its shutdown on retries).
fn stop_in_order(processes: &mut [Supervised]) {
    if let Some((etcd, clients)) = processes.split_first_mut() {
        stop_all(clients, DEFAULT_GRACE);
        stop_all(std::slice::from_mut(etcd), DEFAULT_GRACE);
    }
}

struct Core {
    client: Client,
    kubeconfig: String,
    server: String,
    processes: Vec<Supervised>,
    apiserver: ApiServerCommand,
}

/// How the API server was started, to start it again the same way.
#[derive(Clone)]
struct ApiServerCommand {
    program: PathBuf,
    args: Vec<String>,
    dir: PathBuf,
    ca: PathBuf,
}

enum StartError {
    /// A port was taken between finding it free and binding it: worth another attempt.
    PortTaken(anyhow::Error),
    Other(anyhow::Error),
}

impl From<anyhow::Error> for StartError {
    fn from(e: anyhow::Error) -> Self {
        StartError::Other(e)
    }
}

/// Starts etcd and kube-apiserver on fresh ports and waits for `/readyz`.
async fn start_core(bin_dir: &Path, dir: &Path, sa_key: &Path, tokens: &Path, token: &str) -> Result<Core, StartError> {
    let [etcd_client, etcd_peer, api_port] = free_ports()?;
    let etcd_dir = make_dir(&dir.join("etcd"))?;
    let api_dir = make_dir(&dir.join("kube-apiserver"))?;
    let etcd_url = format!("http://127.0.0.1:{etcd_client}");
    let peer_url = format!("http://127.0.0.1:{etcd_peer}");
    let mut processes = vec![Supervised::spawn(
        "etcd",
        &bin_dir.join("etcd"),
        [
            "--name=default".to_string(),
            format!("--data-dir={}", etcd_dir.join("data").display()),
            format!("--listen-client-urls={etcd_url}"),
            format!("--advertise-client-urls={etcd_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster=default={peer_url}"),
        ],
        &etcd_dir,
    )?];
    let cert_dir = api_dir.join("certs");
    let apiserver_args = vec![
        format!("--etcd-servers={etcd_url}"),
        "--bind-address=127.0.0.1".to_string(),
        format!("--secure-port={api_port}"),
        "--insecure-port=0".to_string(),
        format!("--cert-dir={}", cert_dir.display()),
        format!("--token-auth-file={}", tokens.display()),
        "--authorization-mode=RBAC".to_string(),
        "--service-account-issuer=https://kubernetes.default.svc".to_string(),
        format!("--service-account-key-file={}", sa_key.display()),
        format!("--service-account-signing-key-file={}", sa_key.display()),
        "--service-cluster-ip-range=10.96.0.0/12".to_string(),
        "--allow-privileged=true".to_string(),
    ];
    let apiserver = ApiServerCommand {
        program: bin_dir.join("kube-apiserver"),
        args: apiserver_args,
        dir: api_dir.clone(),
        ca: cert_dir.join("apiserver.crt"),
    };
    processes.push(Supervised::spawn("kube-apiserver", &apiserver.program, &apiserver.args, &apiserver.dir)?);

    let server = format!("https://127.0.0.1:{api_port}");
    let ca = cert_dir.join("apiserver.crt");
    let kubeconfig = kubeconfig_yaml(&server, &ca, token);
    let waited = wait_ready(&mut processes, &kubeconfig, &ca).await;
    match waited {
        Ok(client) => Ok(Core { client, kubeconfig, server, processes, apiserver }),
        Err(e) => {
            let port_taken = processes.iter().any(|p| p.log_tail(200).contains("address already in use"));
            stop_in_order(&mut processes);
            let mut logs = String::new();
            for p in &processes {
                let _ = writeln!(logs, "--- {} ({}):\n{}", p.name(), p.log_path().display(), p.log_tail(20));
            }
            let e = e.context(format!("the control plane in {} did not become ready\n{logs}", dir.display()));
            Err(if port_taken { StartError::PortTaken(e) } else { StartError::Other(e) })
        }
    }
}

/// Waits for the serving certificate, builds the client and waits for `/readyz` to say `ok`,
/// failing at once when a process dies.
async fn wait_ready(processes: &mut [Supervised], kubeconfig: &str, ca: &Path) -> anyhow::Result<Client> {
    let processes = Mutex::new(processes);
    let alive = || -> anyhow::Result<()> {
        let mut guard = processes.lock().unwrap_or_else(PoisonError::into_inner);
        guard.iter_mut().try_for_each(|p| p.ensure_running())
    };
    let alive = &alive;
    let client = poll_until_with("the API server's serving certificate", READY_TIMEOUT, READY_INTERVAL, || async move {
        alive()?;
        // The file can be half-written; building the client parses it, so retry on failure.
        if !ca.is_file() {
            return Ok(Attempt::Retry(format!("{} does not exist yet", ca.display())));
        }
        match crate::kubeconfig::client_from_yaml(kubeconfig).await {
            Ok(client) => Ok(Attempt::Done(client)),
            Err(e) => Ok(Attempt::Retry(format!("{e:#}"))),
        }
    })
    .await?;
    let client_ref = &client;
    poll_until_with("the API server's /readyz", READY_TIMEOUT, READY_INTERVAL, || async move {
        alive()?;
        let request = http::Request::get("/readyz").body(Vec::new()).context("failed to build GET /readyz")?;
        Ok(match client_ref.request_text(request).await {
            Ok(body) if body.trim() == "ok" => Attempt::Done(()),
            Ok(body) => Attempt::Retry(body),
            Err(e) => Attempt::Retry(e.to_string()),
        })
    })
    .await?;
    // `/readyz` can say ok a moment before the API server's bootstrap controller has made
    // the `default` namespace (seen on 1.20 on a loaded machine): tests that apply into it
    // must not race it.
    poll_until_with("the default namespace", READY_TIMEOUT, READY_INTERVAL, || async move {
        alive()?;
        let request =
            http::Request::get("/api/v1/namespaces/default").body(Vec::new()).context("failed to build GET namespaces/default")?;
        Ok(match client_ref.request_text(request).await {
            Ok(_) => Attempt::Done(()),
            Err(e) => Attempt::Retry(e.to_string()),
        })
    })
    .await?;
    Ok(client)
}

fn kubeconfig_yaml(server: &str, ca: &Path, token: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: idp-test
  cluster:
    server: \"{server}\"
    certificate-authority: \"{ca}\"
users:
- name: admin
  user:
    token: \"{token}\"
contexts:
- name: idp-test
  context:
    cluster: idp-test
    user: admin
current-context: idp-test
",
        ca = ca.display()
    )
}

fn controller_manager_args(kubeconfig: &Path, sa_key: &Path) -> Vec<String> {
    vec![
        format!("--kubeconfig={}", kubeconfig.display()),
        "--bind-address=127.0.0.1".to_string(),
        "--secure-port=0".to_string(),
        "--port=0".to_string(),
        "--leader-elect=false".to_string(),
        "--use-service-account-credentials=false".to_string(),
        format!("--service-account-private-key-file={}", sa_key.display()),
        format!("--controllers={CONTROLLERS}"),
    ]
}

/// Three distinct free loopback ports (etcd client, etcd peer, API server), found by binding
/// port 0 with all three listeners open at once.
fn free_ports() -> anyhow::Result<[u16; 3]> {
    let listeners = [(); 3].map(|()| TcpListener::bind("127.0.0.1:0"));
    let mut ports = [0u16; 3];
    for (port, listener) in ports.iter_mut().zip(listeners) {
        *port = listener.and_then(|l| l.local_addr()).context("failed to find a free loopback port")?.port();
    }
    Ok(ports)
}

fn make_dir(path: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(path).with_context(|| format!("failed to create {}", path.display()))?;
    Ok(path.to_path_buf())
}

async fn generate_rsa_key(path: &Path) -> anyhow::Result<()> {
    let out = tokio::process::Command::new("openssl")
        .arg("genrsa")
        .arg("-out")
        .arg(path)
        .arg("2048")
        .kill_on_drop(true)
        .output()
        .await
        .context("failed to run `openssl genrsa` (is openssl installed?)")?;
    ensure!(out.status.success(), "`openssl genrsa` failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
    Ok(())
}

/// `bytes` random bytes from the kernel, hex-encoded.
pub(crate) fn random_hex(bytes: usize) -> anyhow::Result<String> {
    use std::io::Read as _;
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut buf)).context("failed to read /dev/urandom")?;
    let mut hex = String::with_capacity(bytes * 2);
    for b in buf {
        let _ = write!(hex, "{b:02x}");
    }
    if hex.len() != bytes * 2 {
        bail!("hex encoding produced {} characters", hex.len());
    }
    Ok(hex)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::config::Kubeconfig;

    #[test]
    fn free_ports_are_distinct() {
        let [a, b, c] = free_ports().expect("loopback ports");
        assert!(a != b && b != c && a != c, "{a} {b} {c}");
    }

    #[test]
    fn random_hex_has_the_requested_length() {
        let token = random_hex(16).expect("urandom");
        assert_eq!(token.len(), 32);
        assert!(token.chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn kubeconfig_parses_and_points_at_the_server() {
        let yaml = kubeconfig_yaml("https://127.0.0.1:1234", Path::new("/tmp/ca.crt"), "abc");
        let kc = Kubeconfig::from_yaml(&yaml).expect("valid kubeconfig");
        let cluster = kc.clusters[0].cluster.as_ref().expect("cluster entry");
        assert_eq!(cluster.server.as_deref(), Some("https://127.0.0.1:1234"));
        assert_eq!(cluster.certificate_authority.as_deref(), Some("/tmp/ca.crt"));
        assert_eq!(kc.current_context.as_deref(), Some("idp-test"));
    }
}
