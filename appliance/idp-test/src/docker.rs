//! Docker on the test bed: a negotiated connection, the stand-in node image, and a
//! [`DockerScope`] that labels what a test creates and removes it again, also on panic.

use std::collections::HashMap;
use std::io::Read as _;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, anyhow, bail, ensure};
use bollard::Docker;
use bollard::models::{ContainerCreateBody, NetworkCreateRequest, VolumeCreateRequest};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, DownloadFromContainerOptionsBuilder, ListContainersOptionsBuilder, ListNetworksOptionsBuilder,
    ListVolumesOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder, RemoveVolumeOptionsBuilder,
};
use futures::{StreamExt as _, TryStreamExt as _};

use crate::poll::{Attempt, poll_until};

/// The label every object a [`DockerScope`] creates carries; its value is the scope's run id.
pub const TEST_LABEL: &str = "idp-lab.test";
/// How long connecting and negotiating with the daemon may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to the local Docker daemon (`DOCKER_HOST` or `/var/run/docker.sock`), negotiates
/// the API version down to what the daemon speaks (20.10 speaks 1.41; bollard would send 1.53
/// and have container endpoints rejected) and pings it.
pub async fn connect() -> anyhow::Result<Docker> {
    let connecting = async {
        let docker = Docker::connect_with_local_defaults().context("failed to set up the Docker client")?;
        let docker = docker.negotiate_version().await.context("failed to negotiate the Docker API version (is dockerd running?)")?;
        docker.ping().await.context("Docker did not answer /_ping")?;
        anyhow::Ok(docker)
    };
    tokio::time::timeout(CONNECT_TIMEOUT, connecting).await.map_err(|_| anyhow!("Docker did not answer within {CONNECT_TIMEOUT:?}"))?
}

/// Labels and names the Docker objects of one test, and removes them all again.
///
/// Everything created through the scope carries `idp-lab.test=<run id>`. [`DockerScope::cleanup`]
/// removes containers (forced, with their anonymous volumes), then networks and volumes with
/// that label, and fails if any remain. If a test never gets there (it panicked), `Drop` does
/// the same from a helper thread with its own runtime and reports problems on stderr.
pub struct DockerScope {
    docker: Docker,
    run_id: String,
    cleaned: bool,
    labs: std::sync::Mutex<Vec<String>>,
}

impl std::fmt::Debug for DockerScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerScope").field("run_id", &self.run_id).finish_non_exhaustive()
    }
}

/// Docker objects that still carry a scope's label.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Leftovers {
    /// Container names (or ids).
    pub containers: Vec<String>,
    /// Network names.
    pub networks: Vec<String>,
    /// Volume names.
    pub volumes: Vec<String>,
}

impl Leftovers {
    /// Whether nothing is left.
    pub fn is_empty(&self) -> bool {
        self.containers.is_empty() && self.networks.is_empty() && self.volumes.is_empty()
    }
}

impl DockerScope {
    /// Connects (see [`connect`]) and picks a unique run id.
    pub async fn new() -> anyhow::Result<Self> {
        Ok(Self { docker: connect().await?, run_id: unique_run_id(), cleaned: false, labs: std::sync::Mutex::new(Vec::new()) })
    }

    /// The negotiated client, for everything the scope has no helper for.
    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// The unique value of [`TEST_LABEL`] on this scope's objects.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The labels to put on an object so that the scope owns it.
    pub fn labels(&self) -> HashMap<String, String> {
        HashMap::from([(TEST_LABEL.to_string(), self.run_id.clone())])
    }

    /// A Docker filter matching this scope's objects.
    pub fn label_filter(&self) -> HashMap<String, Vec<String>> {
        label_filter(&self.run_id)
    }

    /// A unique object name for `role`: `idp-test-<run id>-<role>`.
    pub fn name(&self, role: &str) -> String {
        format!("idp-test-{}-{role}", self.run_id)
    }

    /// Creates a labelled bridge network named [`Self::name`]`(role)`; returns the name.
    pub async fn create_network(&self, role: &str) -> anyhow::Result<String> {
        let name = self.name(role);
        let request =
            NetworkCreateRequest { name: name.clone(), driver: Some("bridge".into()), labels: Some(self.labels()), ..Default::default() };
        self.docker.create_network(request).await.with_context(|| format!("failed to create network {name}"))?;
        Ok(name)
    }

    /// Creates a labelled volume named [`Self::name`]`(role)`; returns the name.
    pub async fn create_volume(&self, role: &str) -> anyhow::Result<String> {
        let name = self.name(role);
        let request = VolumeCreateRequest { name: Some(name.clone()), labels: Some(self.labels()), ..Default::default() };
        self.docker.create_volume(request).await.with_context(|| format!("failed to create volume {name}"))?;
        Ok(name)
    }

    /// Creates (does not start) a container named [`Self::name`]`(role)` from `body`, with the
    /// scope's label added to the body's labels; returns the name.
    pub async fn create_container(&self, role: &str, mut body: ContainerCreateBody) -> anyhow::Result<String> {
        let name = self.name(role);
        body.labels.get_or_insert_with(HashMap::new).extend(self.labels());
        let options = CreateContainerOptionsBuilder::default().name(&name).build();
        self.docker.create_container(Some(options), body).await.with_context(|| format!("failed to create container {name}"))?;
        Ok(name)
    }

    /// A new idp-lab lab name unique on this machine (`t<counter><pid>`, short enough for
    /// node names). Everything Docker holds with `dev.idp-lab.lab=<name>` is removed by
    /// [`Self::cleanup`] or on drop, so a panicking test cannot leak a lab.
    pub fn lab_name(&self) -> String {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let name = format!("t{}x{}", COUNTER.fetch_add(1, Ordering::Relaxed), std::process::id());
        self.labs.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(name.clone());
        name
    }

    fn filters(&self) -> Vec<HashMap<String, Vec<String>>> {
        let labs = self.labs.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        std::iter::once(self.label_filter()).chain(labs.iter().map(|lab| lab_filter(lab))).collect()
    }

    /// Lists what still carries this scope's label or the label of one of its labs.
    pub async fn leftovers(&self) -> anyhow::Result<Leftovers> {
        let mut all = Leftovers::default();
        for filter in self.filters() {
            let found = leftovers(&self.docker, &filter).await?;
            all.containers.extend(found.containers);
            all.networks.extend(found.networks);
            all.volumes.extend(found.volumes);
        }
        Ok(all)
    }

    /// Removes everything carrying this scope's label (or one of its labs' labels) and
    /// checks that nothing remains.
    pub async fn cleanup(mut self) -> anyhow::Result<()> {
        self.cleaned = true;
        for filter in self.filters() {
            remove_labelled(&self.docker, &filter).await?;
        }
        Ok(())
    }
}

impl Drop for DockerScope {
    fn drop(&mut self) {
        if self.cleaned {
            return;
        }
        let filters = self.filters();
        let run_id = self.run_id.clone();
        // Drop cannot await, and may run inside a runtime (which must not block_on): clean up
        // from a thread with its own runtime and wait for it.
        let outcome = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("failed to build a runtime for the Docker cleanup")?;
            runtime.block_on(async {
                let docker = connect().await?;
                for filter in &filters {
                    remove_labelled(&docker, filter).await?;
                }
                anyhow::Ok(())
            })
        })
        .join();
        let problem = match outcome {
            Ok(Ok(())) => return,
            Ok(Err(e)) => format!("{e:#}"),
            Err(_) => "the cleanup thread panicked".to_string(),
        };
        // Never panic here: this may run while the test is already panicking.
        let _ = std::io::Write::write_all(
            &mut std::io::stderr().lock(),
            format!("\nWARNING: Docker cleanup of {TEST_LABEL}={run_id} failed: {problem}\n").as_bytes(),
        );
    }
}

pub use idp_core::cluster::LAB_LABEL;

/// A Docker filter matching the objects of lab `lab`.
pub fn lab_filter(lab: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([("label".to_string(), vec![format!("{LAB_LABEL}={lab}")])])
}

/// A Docker filter matching objects labelled `idp-lab.test=<run_id>`.
pub fn label_filter(run_id: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([("label".to_string(), vec![format!("{TEST_LABEL}={run_id}")])])
}

/// Lists what still carries `idp-lab.test=<run_id>`, e.g. to check a scope's cleanup after the
/// scope is gone.
pub async fn leftovers_of(docker: &Docker, run_id: &str) -> anyhow::Result<Leftovers> {
    leftovers(docker, &label_filter(run_id)).await
}

async fn leftovers(docker: &Docker, filter: &HashMap<String, Vec<String>>) -> anyhow::Result<Leftovers> {
    let containers = docker
        .list_containers(Some(ListContainersOptionsBuilder::default().all(true).filters(filter).build()))
        .await
        .context("failed to list containers")?
        .into_iter()
        .map(|c| c.names.and_then(|n| n.into_iter().next()).map(|n| n.trim_start_matches('/').to_string()).or(c.id).unwrap_or_default())
        .collect();
    let networks = docker
        .list_networks(Some(ListNetworksOptionsBuilder::default().filters(filter).build()))
        .await
        .context("failed to list networks")?
        .into_iter()
        .filter_map(|n| n.name.or(n.id))
        .collect();
    let volumes = docker
        .list_volumes(Some(ListVolumesOptionsBuilder::default().filters(filter).build()))
        .await
        .context("failed to list volumes")?
        .volumes
        .unwrap_or_default()
        .into_iter()
        .map(|v| v.name)
        .collect();
    Ok(Leftovers { containers, networks, volumes })
}

/// Removes labelled containers (forced, with volumes), then networks, then volumes, and fails
/// when anything is left afterwards.
async fn remove_labelled(docker: &Docker, filter: &HashMap<String, Vec<String>>) -> anyhow::Result<()> {
    let mut errors = Vec::new();
    let found = leftovers(docker, filter).await?;
    let remove = RemoveContainerOptionsBuilder::default().force(true).v(true).build();
    for name in &found.containers {
        if let Err(e) = docker.remove_container(name, Some(remove.clone())).await {
            errors.push(format!("container {name}: {e}"));
        }
    }
    for name in &found.networks {
        if let Err(e) = docker.remove_network(name).await {
            errors.push(format!("network {name}: {e}"));
        }
    }
    let remove = RemoveVolumeOptionsBuilder::default().force(true).build();
    for name in &found.volumes {
        if let Err(e) = docker.remove_volume(name, Some(remove.clone())).await {
            errors.push(format!("volume {name}: {e}"));
        }
    }
    let left = leftovers(docker, filter).await?;
    ensure!(errors.is_empty() && left.is_empty(), "cleanup incomplete; errors: [{}]; left: {left:?}", errors.join("; "));
    Ok(())
}

/// Follows a container's logs (stdout and stderr) until a line contains `needle`, and returns
/// the log up to there. Fails with the log so far when the container stops first or `timeout`
/// passes.
pub async fn wait_for_log(docker: &Docker, container: &str, needle: &str, timeout: Duration) -> anyhow::Result<String> {
    let options = LogsOptionsBuilder::default().follow(true).stdout(true).stderr(true).build();
    let mut logs = docker.logs(container, Some(options));
    let mut seen = String::new();
    let following = async {
        while let Some(chunk) = logs.next().await {
            let chunk = chunk.with_context(|| format!("failed to read the logs of {container}"))?;
            seen.push_str(&chunk.to_string());
            if seen.contains(needle) {
                return Ok(true);
            }
        }
        anyhow::Ok(false)
    };
    match tokio::time::timeout(timeout, following).await {
        Ok(Ok(true)) => Ok(seen),
        Ok(Ok(false)) => bail!("{container} stopped before logging {needle:?}; its log:\n{}", tail(&seen, 40)),
        Ok(Err(e)) => Err(e.context(format!("log so far:\n{}", tail(&seen, 40)))),
        Err(_) => bail!("{container} did not log {needle:?} within {timeout:?}; its log:\n{}", tail(&seen, 40)),
    }
}

/// The whole log (stdout and stderr) of a container, running or not.
pub async fn container_log(docker: &Docker, container: &str) -> anyhow::Result<String> {
    let options = LogsOptionsBuilder::default().stdout(true).stderr(true).build();
    let chunks: Vec<_> =
        docker.logs(container, Some(options)).try_collect().await.with_context(|| format!("failed to read the logs of {container}"))?;
    Ok(chunks.iter().map(ToString::to_string).collect())
}

/// Polls until a container has stopped and returns its exit code.
pub async fn wait_for_exit(docker: &Docker, container: &str, timeout: Duration) -> anyhow::Result<i64> {
    poll_until(&format!("{container} to exit"), timeout, || async move {
        let inspect = docker.inspect_container(container, None).await.with_context(|| format!("failed to inspect {container}"))?;
        let state = inspect.state.unwrap_or_default();
        Ok(match (state.running, state.exit_code) {
            (Some(false), Some(code)) => Attempt::Done(code),
            _ => Attempt::Retry(format!("state {:?}", state.status)),
        })
    })
    .await
}

/// Downloads one file from a container with the archive API and unpacks it from the tar
/// stream. Works on created, running and stopped containers.
pub async fn download_file(docker: &Docker, container: &str, path: &str) -> anyhow::Result<Vec<u8>> {
    let options = DownloadFromContainerOptionsBuilder::default().path(path).build();
    let chunks: Vec<_> = docker
        .download_from_container(container, Some(options))
        .try_collect()
        .await
        .with_context(|| format!("failed to download {path} from {container}"))?;
    let tarball: Vec<u8> = chunks.concat();
    file_from_tar(&tarball, path).with_context(|| format!("failed to unpack {path} from {container}'s archive"))
}

/// The content of the regular file named like the last component of `path` in a tar archive.
pub fn file_from_tar(tarball: &[u8], path: &str) -> anyhow::Result<Vec<u8>> {
    let wanted = path.rsplit('/').next().unwrap_or(path);
    let mut archive = tar::Archive::new(tarball);
    for entry in archive.entries().context("not a tar archive")? {
        let mut entry = entry.context("a broken tar entry")?;
        let is_it = entry.header().entry_type().is_file() && entry.path().is_ok_and(|p| p.file_name().is_some_and(|n| n == wanted));
        if is_it {
            let mut content = Vec::new();
            entry.read_to_end(&mut content).context("failed to read the tar entry")?;
            return Ok(content);
        }
    }
    bail!("the archive holds no file named {wanted}")
}

/// The host port that Docker published for `container_port` (e.g. `6443/tcp`), polled because
/// the binding appears only once the container runs.
pub async fn published_port(docker: &Docker, container: &str, container_port: &str) -> anyhow::Result<u16> {
    poll_until(&format!("{container} to publish {container_port}"), Duration::from_secs(30), || async move {
        let inspect = docker.inspect_container(container, None).await.with_context(|| format!("failed to inspect {container}"))?;
        let port = inspect
            .network_settings
            .and_then(|n| n.ports)
            .and_then(|ports| ports.get(container_port).cloned().flatten())
            .and_then(|bindings| bindings.into_iter().find_map(|b| b.host_port))
            .and_then(|p| p.parse::<u16>().ok())
            .filter(|p| *p != 0);
        Ok(match port {
            Some(port) => Attempt::Done(port),
            None => Attempt::Retry("no host port yet".into()),
        })
    })
    .await
}

/// A run id unique on this machine: process id, time and a counter.
fn unique_run_id() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    format!("{}-{:x}{:08x}-{}", std::process::id(), secs % 0x10_0000, nanos, COUNTER.fetch_add(1, Ordering::Relaxed))
}

pub(crate) fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_with(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, content) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(content.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append_data(&mut header, path, *content).expect("append to an in-memory tar");
        }
        builder.into_inner().expect("finish the in-memory tar")
    }

    #[test]
    fn finds_the_file_in_a_tar_stream() {
        let tarball = tar_with(&[("other.txt", b"no"), ("kubeconfig.yaml", b"apiVersion: v1\n")]);
        let content = file_from_tar(&tarball, "/output/kubeconfig.yaml").expect("the file is there");
        assert_eq!(content, b"apiVersion: v1\n");
        let err = file_from_tar(&tarball, "/output/missing.yaml").expect_err("absent file");
        assert!(err.to_string().contains("missing.yaml"), "{err}");
    }

    #[test]
    fn run_ids_differ_and_fit_in_names() {
        let (a, b) = (unique_run_id(), unique_run_id());
        assert_ne!(a, b);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'), "{a}");
    }
}
