//! The Docker engine, through bollard: observing a lab, creating its network and node
//! containers, readiness from the node logs, and the lifecycle around them.

use crate::error::{docker_status, is_not_found};
use crate::files::{archive, file_from_tar};
use crate::{HostInputs, Progress, Provider, ProvisionError};
use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, EndpointIpamConfig, EndpointSettings, HostConfig, HostConfigCgroupnsModeEnum, Ipam, IpamConfig, Mount, MountType,
    NetworkCreateRequest, NetworkingConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum, VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, DownloadFromContainerOptionsBuilder, ImportImageOptionsBuilder,
    InspectContainerOptions, ListContainersOptionsBuilder, ListNetworksOptionsBuilder, ListVolumesOptionsBuilder, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder, RemoveVolumeOptionsBuilder, StopContainerOptionsBuilder, UploadToContainerOptionsBuilder,
};
use futures::StreamExt as _;
use idp_core::cluster::{
    self, Action, CAPABILITIES, ClusterPlan, FileContent, LAB_LABEL, NodeSpec, Observed, ObservedNode, ROLE_LABEL, SPEC_LABEL, Subnet,
};
use idp_core::config::Security;
use idp_core::settings::NodeRole;
use serde::Serialize;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How many times a node's log stream is reopened after it ends (the container
/// restarted) while waiting for its readiness line; k3d does the same.
const LOG_REOPENS: u32 = 10;
/// How long `stop` gives k3s to shut down before Docker kills it.
const STOP_GRACE_SECS: i32 = 30;

/// A negotiated connection to the Docker engine.
#[derive(Debug, Clone)]
pub struct Engine {
    docker: Docker,
    endpoint: String,
}

/// What the engine says about itself.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct EngineInfo {
    /// The engine's version, e.g. `20.10.24`.
    pub version: String,
    /// The API version both sides speak after negotiation.
    pub api_version: String,
    /// `1` or `2`, when the engine says.
    pub cgroup_version: Option<String>,
    /// The cgroup driver (`cgroupfs`, `systemd`).
    pub cgroup_driver: Option<String>,
    /// The engine's data directory (its free space matters to the nodes).
    pub root_dir: Option<String>,
    /// CPUs the engine sees.
    pub cpus: Option<i64>,
    /// Memory the engine sees, in bytes.
    pub memory_bytes: Option<i64>,
    /// The engine's security options (`name=rootless`, `name=userns`, ...).
    pub security_options: Vec<String>,
    /// The MTU of the default bridge, when set.
    pub bridge_mtu: Option<u32>,
    /// Where the client connected.
    pub endpoint: String,
}

/// The outcome of a throwaway privileged (or capabilities) container.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PrivilegeProbe {
    /// Whether it started.
    pub allowed: bool,
    /// Docker's message when it did not.
    pub message: Option<String>,
}

/// What `delete` removed.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Removed {
    /// Container names.
    pub containers: Vec<String>,
    /// Volume names.
    pub volumes: Vec<String>,
    /// Network names.
    pub networks: Vec<String>,
}

fn lab_filter(lab: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([("label".to_owned(), vec![format!("{LAB_LABEL}={lab}")])])
}

/// What a person needs of a node's log: its fatal and error lines first (k3s buries an
/// unknown flag's error under its whole help text), then the last `lines` lines.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    let last = &all[all.len().saturating_sub(lines)..];
    let important: Vec<&str> = all
        .iter()
        .copied()
        .filter(|l| l.contains("level=fatal") || l.contains("level=error") || l.starts_with("Incorrect Usage"))
        .filter(|l| !last.contains(l))
        .collect();
    let important = &important[important.len().saturating_sub(5)..];
    let mut out: Vec<String> = important.iter().map(|l| format!("    {l}")).collect();
    if !out.is_empty() {
        out.push("    ...".into());
    }
    out.extend(last.iter().map(|l| format!("    {l}")));
    out.join("\n")
}

impl Engine {
    /// Connects to the engine `DOCKER_HOST` names (else the local socket), negotiates
    /// the API version down to what the engine speaks (Docker 20.10 speaks 1.41) and
    /// pings it.
    pub async fn connect() -> Result<Engine, ProvisionError> {
        let endpoint = std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "unix:///var/run/docker.sock".into());
        let unreachable = |source| ProvisionError::Unreachable { endpoint: endpoint.clone(), source };
        let docker = Docker::connect_with_defaults().map_err(unreachable)?;
        let connecting = async {
            let docker = docker.negotiate_version().await?;
            docker.ping().await?;
            Ok::<_, bollard::errors::Error>(docker)
        };
        let docker = match tokio::time::timeout(Duration::from_secs(10), connecting).await {
            Ok(result) => result.map_err(unreachable)?,
            Err(_) => return Err(unreachable(bollard::errors::Error::RequestTimeoutError)),
        };
        Ok(Engine { docker, endpoint })
    }

    /// The engine's version, limits and defaults.
    pub async fn info(&self) -> Result<EngineInfo, ProvisionError> {
        let version = self.docker.version().await.map_err(ProvisionError::api("report its version"))?;
        let info = self.docker.info().await.map_err(ProvisionError::api("report its configuration"))?;
        let bridge_mtu = self
            .docker
            .inspect_network("bridge", None)
            .await
            .ok()
            .and_then(|n| n.options)
            .and_then(|o| o.get("com.docker.network.driver.mtu").and_then(|m| m.parse().ok()));
        Ok(EngineInfo {
            version: version.version.unwrap_or_default(),
            api_version: self.docker.client_version().to_string(),
            cgroup_version: info.cgroup_version.map(|v| v.to_string()),
            cgroup_driver: info.cgroup_driver.map(|d| d.to_string()),
            root_dir: info.docker_root_dir,
            cpus: info.ncpu,
            memory_bytes: info.mem_total,
            security_options: info.security_options.unwrap_or_default(),
            bridge_mtu,
            endpoint: self.endpoint.clone(),
        })
    }

    /// The subnets every Docker network uses (so a new lab takes another).
    pub async fn subnets_in_use(&self) -> Result<Vec<Subnet>, ProvisionError> {
        let networks = self
            .docker
            .list_networks(None::<bollard::query_parameters::ListNetworksOptions>)
            .await
            .map_err(ProvisionError::api("list networks"))?;
        Ok(networks
            .into_iter()
            .flat_map(|n| n.ipam.and_then(|i| i.config).unwrap_or_default())
            .filter_map(|c| c.subnet.and_then(|s| Subnet::parse(&s)))
            .collect())
    }

    /// Whether Docker has `image`; when it has not and `offline` is false, pulls it.
    pub async fn ensure_image(&self, image: &str, offline: bool) -> Result<(), ProvisionError> {
        match self.docker.inspect_image(image).await {
            Ok(_) => return Ok(()),
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(ProvisionError::api(format!("inspect image {image}"))(e)),
        }
        if offline {
            return Err(ProvisionError::ImageMissing { image: image.to_owned(), offline: true });
        }
        let options = CreateImageOptionsBuilder::default().from_image(image).build();
        let mut pull = self.docker.create_image(Some(options), None, None);
        while let Some(step) = pull.next().await {
            step.map_err(|source| ProvisionError::Api { what: format!("pull {image} (no copy was found locally)"), source })?;
        }
        Ok(())
    }

    /// Loads a docker-archive (the `docker save` format; `idp_bundle::docker_archive`
    /// writes one from a bundle) into Docker's image store: `POST /images/load`, what
    /// `docker load` does. The archive streams from `archive`, so it is never held in
    /// memory whole. Returns what was loaded, in Docker's order: each tagged image by its
    /// tag (`rancher/k3s:v1.33.1-k3s1`), each untagged one by its ID (`sha256:...`).
    ///
    /// Docker answers a load with HTTP 200 and reports failures inside its JSON stream
    /// (`errorDetail`): those, a refusal, and an archive from which Docker loaded no image
    /// are [`ProvisionError::LoadFailed`]. To abort a load whose archive turns out to be
    /// bad while it streams (a damaged blob), end `archive` with an `Err`: the upload is
    /// cut, Docker keeps nothing of it, and the error is [`ProvisionError::LoadCut`]
    /// naming that `Err`'s message. Ending the stream cleanly instead sends a truncated
    /// tar, which Docker refuses too, less clearly.
    pub async fn load_image<S>(&self, archive: S) -> Result<Vec<String>, ProvisionError>
    where
        S: futures::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + 'static,
    {
        let options = ImportImageOptionsBuilder::default().quiet(true).build();
        let mut answer = self.docker.import_image_stream(options, archive, None);
        let mut loaded = Vec::new();
        while let Some(step) = answer.next().await {
            let info = step.map_err(|e| match e {
                bollard::errors::Error::DockerStreamError { error } => ProvisionError::LoadFailed { message: error },
                bollard::errors::Error::DockerResponseServerError { message, .. } => ProvisionError::LoadFailed { message },
                source => ProvisionError::LoadCut { cause: innermost(&source), source },
            })?;
            for line in info.stream.iter().flat_map(|s| s.lines()) {
                if let Some(name) = line.strip_prefix("Loaded image: ").or_else(|| line.strip_prefix("Loaded image ID: ")) {
                    loaded.push(name.trim().to_owned());
                }
            }
        }
        if loaded.is_empty() {
            return Err(ProvisionError::LoadFailed {
                message: "it loaded no image from it (no manifest.json entry, or an empty archive)".into(),
            });
        }
        Ok(loaded)
    }

    /// Starts a throwaway container of `image` with the privileges of `security` and
    /// removes it again, to learn whether this engine allows them.
    pub async fn probe_privileges(&self, image: &str, security: Security, lab: &str) -> Result<PrivilegeProbe, ProvisionError> {
        let name = format!("{lab}-probe-{}", std::process::id());
        let body = ContainerCreateBody {
            image: Some(image.to_owned()),
            entrypoint: Some(vec!["/bin/k3s".into()]),
            cmd: Some(vec!["--version".into()]),
            labels: Some(cluster::labels(lab, "probe").into_iter().collect()),
            host_config: Some(HostConfig { network_mode: Some("none".into()), ..security_config(security) }),
            ..Default::default()
        };
        let options = CreateContainerOptionsBuilder::default().name(&name).build();
        self.docker
            .create_container(Some(options), body)
            .await
            .map_err(ProvisionError::api(format!("create the probe container {name}")))?;
        let started = self.docker.start_container(&name, None::<bollard::query_parameters::StartContainerOptions>).await;
        let remove = RemoveContainerOptionsBuilder::default().force(true).v(true).build();
        let removed = self.docker.remove_container(&name, Some(remove)).await;
        let probe = match started {
            Ok(()) => PrivilegeProbe { allowed: true, message: None },
            Err(e) => match docker_status(&e) {
                Some((_, message)) => PrivilegeProbe { allowed: false, message: Some(message.to_owned()) },
                None => return Err(ProvisionError::api(format!("start the probe container {name}"))(e)),
            },
        };
        removed.map_err(ProvisionError::api(format!("remove the probe container {name}")))?;
        Ok(probe)
    }

    async fn observe(&self, lab: &str, network: &str) -> Result<Observed, ProvisionError> {
        let network_subnet = match self.docker.inspect_network(network, None).await {
            Ok(n) => {
                let ours = n.labels.as_ref().and_then(|l| l.get(LAB_LABEL)).is_some_and(|v| v == lab);
                if !ours {
                    return Err(ProvisionError::Foreign { kind: "network", name: network.to_owned(), lab: lab.to_owned() });
                }
                n.ipam.and_then(|i| i.config).unwrap_or_default().into_iter().find_map(|c| c.subnet.and_then(|s| Subnet::parse(&s)))
            }
            Err(e) if is_not_found(&e) => None,
            Err(e) => return Err(ProvisionError::api(format!("inspect network {network}"))(e)),
        };
        let options = ListContainersOptionsBuilder::default().all(true).filters(&lab_filter(lab)).build();
        let listed = self.docker.list_containers(Some(options)).await.map_err(ProvisionError::api("list containers"))?;
        let mut nodes = Vec::new();
        for c in listed {
            let labels = c.labels.unwrap_or_default();
            if !matches!(labels.get(ROLE_LABEL).map(String::as_str), Some("server" | "agent")) {
                continue;
            }
            let Some(id) = c.id else { continue };
            let inspect = self
                .docker
                .inspect_container(&id, None::<InspectContainerOptions>)
                .await
                .map_err(ProvisionError::api("inspect a node container"))?;
            let state = inspect.state.unwrap_or_default();
            let ip = inspect
                .network_settings
                .and_then(|s| s.networks)
                .and_then(|n| n.get(network).cloned())
                .and_then(|e| e.ip_address)
                .and_then(|ip| ip.parse().ok());
            nodes.push(ObservedNode {
                name: inspect.name.unwrap_or_default().trim_start_matches('/').to_owned(),
                id,
                running: state.running.unwrap_or(false),
                state: state.status.map(|s| s.to_string()).unwrap_or_else(|| "unknown".into()),
                spec_hash: labels.get(SPEC_LABEL).cloned(),
                ip,
                image: c.image.unwrap_or_default(),
                started_at: state.started_at.filter(|s| !s.starts_with("0001-")),
            });
        }
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Observed { network: network_subnet, nodes })
    }

    /// The lab's node containers as Docker shows them, without a plan (for `status`,
    /// `list`, `logs`).
    pub async fn nodes_of(&self, lab: &str) -> Result<Vec<ObservedNode>, ProvisionError> {
        Ok(self.observe(lab, lab).await?.nodes)
    }

    /// The names of every lab Docker holds objects of.
    pub async fn labs(&self) -> Result<Vec<String>, ProvisionError> {
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&HashMap::from([("label".to_owned(), vec![LAB_LABEL.to_owned()])]))
            .build();
        let listed = self.docker.list_containers(Some(options)).await.map_err(ProvisionError::api("list containers"))?;
        let mut labs: Vec<String> = listed.into_iter().filter_map(|c| c.labels.and_then(|l| l.get(LAB_LABEL).cloned())).collect();
        labs.sort();
        labs.dedup();
        Ok(labs)
    }

    async fn create_network(&self, plan: &ClusterPlan) -> Result<(), ProvisionError> {
        let n = &plan.network;
        let mut options = HashMap::from([("com.docker.network.bridge.enable_ip_masquerade".to_owned(), "true".to_owned())]);
        if let Some(mtu) = n.mtu {
            options.insert("com.docker.network.driver.mtu".into(), mtu.to_string());
        }
        let request = NetworkCreateRequest {
            name: n.name.clone(),
            driver: Some("bridge".into()),
            labels: Some(n.labels.clone().into_iter().collect()),
            options: Some(options),
            ipam: Some(Ipam {
                driver: Some("default".into()),
                config: Some(vec![IpamConfig {
                    subnet: Some(n.subnet.to_string()),
                    gateway: Some(n.gateway.to_string()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        match self.docker.create_network(request).await {
            Ok(_) => Ok(()),
            Err(e) if docker_status(&e).is_some_and(|(_, m)| m.contains("overlaps")) => {
                Err(ProvisionError::SubnetTaken { subnet: n.subnet.to_string() })
            }
            Err(e) => Err(ProvisionError::Api { what: format!("create network {} ({})", n.name, n.subnet), source: e }),
        }
    }

    async fn create_node(&self, plan: &ClusterPlan, node: &NodeSpec, host: &HostInputs) -> Result<(), ProvisionError> {
        for v in &node.volumes {
            match self.docker.inspect_volume(&v.name).await {
                Ok(existing) if existing.labels.get(LAB_LABEL) == Some(&plan.lab) => continue,
                Ok(_) => return Err(ProvisionError::Foreign { kind: "volume", name: v.name.clone(), lab: plan.lab.clone() }),
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(ProvisionError::api(format!("inspect volume {}", v.name))(e)),
            }
            let mut labels = cluster::labels(&plan.lab, "volume");
            labels.insert("dev.idp-lab.node".into(), node.name.clone());
            let request =
                VolumeCreateRequest { name: Some(v.name.clone()), labels: Some(labels.into_iter().collect()), ..Default::default() };
            self.docker.create_volume(request).await.map_err(ProvisionError::api(format!("create volume {}", v.name)))?;
        }
        let mut mounts: Vec<Mount> = node
            .volumes
            .iter()
            .map(|v| Mount {
                typ: Some(MountType::VOLUME),
                source: Some(v.name.clone()),
                target: Some(v.path.clone()),
                ..Default::default()
            })
            .collect();
        if let Some(bytes) = node.memory {
            let dir = host.state_dir.join("nodes").join(&node.name);
            let path = dir.join("meminfo");
            let io = |what, source| ProvisionError::Io { what, path: path.display().to_string(), source };
            std::fs::create_dir_all(&dir).map_err(|e| io("create the folder of", e))?;
            std::fs::write(&path, cluster::fake_meminfo(bytes)).map_err(|e| io("write", e))?;
            mounts.push(Mount {
                typ: Some(MountType::BIND),
                source: Some(path.display().to_string()),
                target: Some("/proc/meminfo".into()),
                read_only: Some(true),
                ..Default::default()
            });
        }
        if node.airgap_images {
            // k3s imports every archive in its images directory at boot.
            let path = host.state_dir.join(cluster::AIRGAP_HOST_FILE);
            if !path.is_file() {
                let source = std::io::Error::new(std::io::ErrorKind::NotFound, "offline `up` writes it from the bundle");
                return Err(ProvisionError::Io { what: "find the air-gap images archive", path: path.display().to_string(), source });
            }
            mounts.push(Mount {
                typ: Some(MountType::BIND),
                source: Some(path.display().to_string()),
                target: Some(format!("{}/{}", cluster::IMAGES_DIR, cluster::AIRGAP_FILE)),
                read_only: Some(true),
                ..Default::default()
            });
        }
        let port_bindings: HashMap<String, Option<Vec<PortBinding>>> = node
            .ports
            .iter()
            .map(|p| {
                let binding = PortBinding { host_ip: Some(p.host_ip.to_string()), host_port: Some(p.host_port.to_string()) };
                (format!("{}/tcp", p.container_port), Some(vec![binding]))
            })
            .collect();
        let mut env = node.env.clone();
        env.extend(cluster::proxy_env(&host.proxy_env, plan.network.subnet));
        let host_config = HostConfig {
            network_mode: Some(plan.network.name.clone()),
            cgroupns_mode: Some(HostConfigCgroupnsModeEnum::PRIVATE),
            userns_mode: Some("host".into()),
            init: Some(false),
            tmpfs: Some(node.tmpfs.iter().map(|t| (t.clone(), String::new())).collect()),
            mounts: Some(mounts),
            memory: node.memory.and_then(|m| i64::try_from(m).ok()),
            memory_swap: node.memory.and_then(|m| i64::try_from(m).ok()),
            port_bindings: Some(port_bindings),
            restart_policy: Some(RestartPolicy { name: Some(RestartPolicyNameEnum::UNLESS_STOPPED), maximum_retry_count: None }),
            extra_hosts: Some(node.extra_hosts.clone()),
            ..security_config(node.security)
        };
        let body = ContainerCreateBody {
            image: Some(node.image.clone()),
            hostname: Some(node.name.clone()),
            entrypoint: Some(node.entrypoint.clone()),
            cmd: Some(node.args.clone()),
            env: Some(env),
            labels: Some(node.container_labels().into_iter().collect()),
            exposed_ports: Some(node.ports.iter().map(|p| format!("{}/tcp", p.container_port)).collect()),
            host_config: Some(host_config),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(
                    plan.network.name.clone(),
                    EndpointSettings {
                        ipam_config: Some(EndpointIpamConfig { ipv4_address: Some(node.ip.to_string()), ..Default::default() }),
                        aliases: Some(vec![node.name.clone()]),
                        ..Default::default()
                    },
                )])),
            }),
            ..Default::default()
        };
        let options = CreateContainerOptionsBuilder::default().name(&node.name).build();
        self.docker.create_container(Some(options), body).await.map_err(|e| match &e {
            e2 if is_not_found(e2) => ProvisionError::ImageMissing { image: node.image.clone(), offline: false },
            _ => ProvisionError::Api { what: format!("create node {}", node.name), source: e },
        })?;
        let files: Vec<(String, u32, Vec<u8>)> = node
            .files
            .iter()
            .map(|f| {
                let content = match &f.content {
                    FileContent::Text(t) => t.clone().into_bytes(),
                    FileContent::Token => format!("{}\n", host.token).into_bytes(),
                    FileContent::ResolvConf => cluster::resolv_conf(&host.nameservers, plan.network.gateway).into_bytes(),
                };
                (f.path.clone(), f.mode, content)
            })
            .collect();
        self.upload(&node.name, "/", archive(&files)?).await
    }

    async fn upload(&self, container: &str, path: &str, tarball: Vec<u8>) -> Result<(), ProvisionError> {
        let options = UploadToContainerOptionsBuilder::default().path(path).build();
        self.docker
            .upload_to_container(container, Some(options), bollard::body_full(tarball.into()))
            .await
            .map_err(ProvisionError::api(format!("upload files into {container}:{path}")))
    }

    /// Downloads one file from a node (created, running or stopped) through the archive API.
    pub async fn download(&self, node: &str, path: &str) -> Result<Vec<u8>, ProvisionError> {
        let options = DownloadFromContainerOptionsBuilder::default().path(path).build();
        let mut stream = self.docker.download_from_container(node, Some(options));
        let mut tarball = Vec::new();
        while let Some(chunk) = stream.next().await {
            tarball.extend_from_slice(&chunk.map_err(ProvisionError::api(format!("download {path} from {node}")))?);
        }
        file_from_tar(&tarball, path)
    }

    /// The admin kubeconfig k3s wrote in the first server, as it wrote it.
    pub async fn kubeconfig(&self, plan: &ClusterPlan) -> Result<String, ProvisionError> {
        let server = plan.first_server().ok_or_else(|| ProvisionError::Archive("the plan has no server".into()))?;
        let bytes = self.download(&server.name, cluster::KUBECONFIG_OUTPUT).await?;
        String::from_utf8(bytes)
            .map_err(|_| ProvisionError::Archive(format!("{} in {} is not UTF-8", cluster::KUBECONFIG_OUTPUT, server.name)))
    }

    async fn start_node(&self, node: &NodeSpec) -> Result<(), ProvisionError> {
        match self.docker.start_container(&node.name, None::<bollard::query_parameters::StartContainerOptions>).await {
            Ok(()) => Ok(()),
            // Started a moment ago by someone else (the lab daemon's `start-node` playbook).
            Err(e) if docker_status(&e).is_some_and(|(code, _)| code == 304) => Ok(()),
            Err(e) => {
                let message = docker_status(&e).map(|(_, m)| m.to_owned()).unwrap_or_default();
                if message.contains("port is already allocated") || message.contains("address already in use") {
                    let port = node
                        .ports
                        .iter()
                        .map(|p| p.host_port)
                        .find(|p| message.contains(&format!(":{p} ")))
                        .or_else(|| node.ports.first().map(|p| p.host_port));
                    return Err(ProvisionError::PortAllocated { node: node.name.clone(), port: port.unwrap_or(0) });
                }
                if message.contains("operation not permitted") && (message.contains("caps") || message.contains("privileged")) {
                    let mode = match node.security {
                        Security::Privileged => "privileged".to_owned(),
                        Security::Capabilities => "with the capability list of cluster.security = \"capabilities\"".to_owned(),
                    };
                    return Err(ProvisionError::PrivilegesRefused { mode, message });
                }
                Err(ProvisionError::Api { what: format!("start node {}", node.name), source: e })
            }
        }
    }

    /// Follows a node's log from its last start until `line` appears, reopening the
    /// stream when the container restarts; fails with the last lines when it stops for
    /// good or `timeout` passes.
    pub async fn wait_for_line(&self, node: &str, line: &str, timeout: Duration) -> Result<Duration, ProvisionError> {
        let started = Instant::now();
        let mut seen = String::new();
        let mut reopens = 0;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let state = self.state(node).await?;
            let since = state.started_at.as_deref().and_then(parse_rfc3339_secs).and_then(|s| i32::try_from(s).ok()).unwrap_or(0);
            let options = LogsOptionsBuilder::default().follow(true).stdout(true).stderr(true).since(since).build();
            let mut logs = self.docker.logs(node, Some(options));
            seen.clear();
            let following = async {
                while let Some(chunk) = logs.next().await {
                    match chunk {
                        Ok(chunk) => {
                            seen.push_str(&chunk.to_string());
                            if seen.contains(line) {
                                return true;
                            }
                        }
                        Err(_) => return false,
                    }
                }
                false
            };
            match tokio::time::timeout_at(deadline, following).await {
                Ok(true) => return Ok(started.elapsed()),
                Err(_) => {
                    return Err(ProvisionError::NotReady {
                        node: node.to_owned(),
                        line: line.to_owned(),
                        after: timeout,
                        tail: tail(&seen, 15),
                    });
                }
                Ok(false) => {}
            }
            // The stream ended: the container stopped or restarted. k3s that ends on a
            // fatal line twice will not get better by itself: say so at once.
            let state = self.state(node).await?;
            let restarting = state.restarting.unwrap_or(false) || state.running.unwrap_or(false);
            reopens += 1;
            // Enough lines to reach the error above k3s' help text, which follows it.
            let log = self.log(node, 500).await.unwrap_or_else(|_| seen.clone());
            let fatal = log.contains("level=fatal");
            if !restarting || reopens > LOG_REOPENS || (fatal && reopens >= 2) {
                return Err(ProvisionError::Exited { node: node.to_owned(), code: state.exit_code.unwrap_or(-1), tail: tail(&log, 15) });
            }
            if tokio::time::Instant::now() + Duration::from_millis(500) >= deadline {
                return Err(ProvisionError::NotReady {
                    node: node.to_owned(),
                    line: line.to_owned(),
                    after: timeout,
                    tail: tail(&log, 15),
                });
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// A node container's state (running, restarting, exit code, start time).
    async fn state(&self, node: &str) -> Result<bollard::models::ContainerState, ProvisionError> {
        let inspect = self
            .docker
            .inspect_container(node, None::<InspectContainerOptions>)
            .await
            .map_err(ProvisionError::api(format!("inspect node {node}")))?;
        Ok(inspect.state.unwrap_or_default())
    }

    /// The last `lines` lines of a node's log (stdout and stderr).
    pub async fn log(&self, node: &str, lines: usize) -> Result<String, ProvisionError> {
        let options = LogsOptionsBuilder::default().stdout(true).stderr(true).tail(&lines.to_string()).build();
        let mut logs = self.docker.logs(node, Some(options));
        let mut out = String::new();
        while let Some(chunk) = logs.next().await {
            out.push_str(&chunk.map_err(ProvisionError::api(format!("read the log of {node}")))?.to_string());
        }
        Ok(out)
    }

    /// Writes a node's whole log to `out`, following it with `follow`.
    pub async fn stream_log(&self, node: &str, follow: bool, out: &mut (dyn std::io::Write + Send)) -> Result<(), ProvisionError> {
        let options = LogsOptionsBuilder::default().follow(follow).stdout(true).stderr(true).build();
        let mut logs = self.docker.logs(node, Some(options));
        while let Some(chunk) = logs.next().await {
            let chunk = chunk.map_err(|e| {
                if is_not_found(&e) {
                    ProvisionError::Archive(format!("no node container {node}"))
                } else {
                    ProvisionError::Api { what: format!("read the log of {node}"), source: e }
                }
            })?;
            let io = |source| ProvisionError::Io { what: "write", path: "stdout".into(), source };
            match out.write_all(&chunk.into_bytes()).and_then(|()| out.flush()) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
                Err(e) => return Err(io(e)),
            }
        }
        Ok(())
    }

    /// Copies images into every node's k3s images directory, which k3s imports at
    /// start and, since v1.32, whenever a file appears there. Each source is an image
    /// in the host's Docker (saved whole, every layer of the local platform, so the
    /// "content digest not found" of partial multi-platform exports cannot happen) or a
    /// tarball on the host. Returns the file names written.
    pub async fn import_images(
        &self,
        nodes: &[String],
        images: &[String],
        tarballs: &[std::path::PathBuf],
    ) -> Result<Vec<String>, ProvisionError> {
        let mut files: Vec<(String, Vec<u8>)> = Vec::new();
        for image in images {
            self.docker.inspect_image(image).await.map_err(|e| {
                if is_not_found(&e) {
                    ProvisionError::ImageMissing { image: image.clone(), offline: false }
                } else {
                    ProvisionError::api(format!("inspect image {image}"))(e)
                }
            })?;
            let mut stream = self.docker.export_image(image);
            let mut bytes = Vec::new();
            while let Some(chunk) = stream.next().await {
                bytes.extend_from_slice(&chunk.map_err(ProvisionError::api(format!("save image {image}")))?);
            }
            files.push((format!("idp-lab-{}.tar", sanitize(image)), bytes));
        }
        for path in tarballs {
            let bytes =
                std::fs::read(path).map_err(|source| ProvisionError::Io { what: "read", path: path.display().to_string(), source })?;
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "image.tar".into());
            files.push((format!("idp-lab-{}", sanitize(&name)), bytes));
        }
        let entries: Vec<(String, u32, Vec<u8>)> =
            files.iter().map(|(name, bytes)| (format!("{}/{name}", cluster::IMAGES_DIR), 0o644, bytes.clone())).collect();
        let tarball = archive(&entries)?;
        for node in nodes {
            self.upload(node, "/", tarball.clone()).await?;
        }
        Ok(files.into_iter().map(|(name, _)| name).collect())
    }
}

/// The message of the deepest source of `e` (what actually went wrong, under the
/// client's wrappers).
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last = e;
    while let Some(next) = last.source() {
        last = next;
    }
    last.to_string()
}

/// A file-name-safe form of an image reference or file name.
fn sanitize(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '_' }).collect()
}

/// Seconds since the epoch of an RFC 3339 time as Docker writes it
/// (`2026-12-01T09:14:02.123456789Z`); `None` when it is not one.
fn parse_rfc3339_secs(s: &str) -> Option<i64> {
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let time = time.trim_end_matches('Z');
    let time = time.split(['+', '.']).next()?;
    let mut t = time.split(':').map(|p| p.parse::<i64>().ok());
    let (h, min, sec) = (t.next()??, t.next()??, t.next()??);
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + min * 60 + sec)
}

/// The host config of a security mode: privileged, or an explicit capability list with
/// seccomp and AppArmor unconfined (what k3s, containerd and Cilium need).
fn security_config(security: Security) -> HostConfig {
    match security {
        Security::Privileged => HostConfig { privileged: Some(true), ..Default::default() },
        Security::Capabilities => HostConfig {
            privileged: Some(false),
            cap_add: Some(CAPABILITIES.iter().map(|c| (*c).to_owned()).collect()),
            security_opt: Some(vec!["seccomp=unconfined".into(), "apparmor=unconfined".into()]),
            ..Default::default()
        },
    }
}

impl Provider for Engine {
    async fn inspect(&self, plan: &ClusterPlan) -> Result<Observed, ProvisionError> {
        self.observe(&plan.lab, &plan.network.name).await
    }

    async fn create(
        &self,
        plan: &ClusterPlan,
        actions: &[Action],
        host: &HostInputs,
        timeout: Duration,
        release: &mut (dyn FnMut(&[u16]) + Send),
        progress: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<(), ProvisionError> {
        let mut to_start: Vec<&NodeSpec> = Vec::new();
        for action in actions {
            match action {
                Action::CreateNetwork { reason } => {
                    tracing::info!(network = %plan.network.name, subnet = %plan.network.subnet, %reason, "creating the lab network");
                    self.create_network(plan).await?;
                    progress(Progress::NetworkCreated { name: plan.network.name.clone() });
                }
                Action::Remove { node, .. } => {
                    self.remove_node(node).await?;
                    progress(Progress::NodeRemoved { node: node.clone() });
                }
                Action::Create { node, reason } | Action::Recreate { node, reason } => {
                    tracing::info!(%node, action = action.verb(), %reason, "node");
                    let spec = plan.node(node).ok_or_else(|| ProvisionError::NoSuchNode {
                        lab: plan.lab.clone(),
                        node: node.clone(),
                        known: Vec::new(),
                    })?;
                    if matches!(action, Action::Recreate { .. }) {
                        self.remove_node(node).await?;
                    }
                    self.create_node(plan, spec, host).await?;
                    progress(Progress::NodeCreated { node: node.clone() });
                    to_start.push(spec);
                }
                Action::Start { node, .. } => {
                    if let Some(spec) = plan.node(node) {
                        to_start.push(spec);
                    }
                }
                Action::Keep { .. } => {}
            }
        }
        self.start_and_wait(&to_start, timeout, release, progress).await
    }

    async fn start(
        &self,
        plan: &ClusterPlan,
        timeout: Duration,
        progress: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<(), ProvisionError> {
        let observed = self.inspect(plan).await?;
        let stopped: Vec<&NodeSpec> = plan.nodes.iter().filter(|n| observed.nodes.iter().any(|o| o.name == n.name && !o.running)).collect();
        self.start_and_wait(&stopped, timeout, &mut |_| {}, progress).await
    }

    async fn stop(&self, plan: &ClusterPlan) -> Result<Vec<String>, ProvisionError> {
        let observed = self.inspect(plan).await?;
        let mut stopped = Vec::new();
        // Agents first, servers last: the reverse of the start order.
        for node in plan.nodes.iter().rev() {
            if observed.nodes.iter().any(|o| o.name == node.name && o.running) {
                let options = StopContainerOptionsBuilder::default().t(STOP_GRACE_SECS).build();
                self.docker
                    .stop_container(&node.name, Some(options))
                    .await
                    .map_err(ProvisionError::api(format!("stop node {}", node.name)))?;
                stopped.push(node.name.clone());
            }
        }
        Ok(stopped)
    }

    async fn delete(&self, lab: &str) -> Result<Removed, ProvisionError> {
        let mut removed = Removed::default();
        let filter = lab_filter(lab);
        let options = ListContainersOptionsBuilder::default().all(true).filters(&filter).build();
        for c in self.docker.list_containers(Some(options)).await.map_err(ProvisionError::api("list containers"))? {
            let name = c.names.and_then(|n| n.into_iter().next()).map(|n| n.trim_start_matches('/').to_owned()).unwrap_or_default();
            if let Some(id) = c.id {
                let options = RemoveContainerOptionsBuilder::default().force(true).v(true).build();
                self.docker.remove_container(&id, Some(options)).await.map_err(ProvisionError::api(format!("remove container {name}")))?;
                removed.containers.push(name);
            }
        }
        let options = ListNetworksOptionsBuilder::default().filters(&filter).build();
        for n in self.docker.list_networks(Some(options)).await.map_err(ProvisionError::api("list networks"))? {
            if let Some(name) = n.name {
                self.docker.remove_network(&name).await.map_err(ProvisionError::api(format!("remove network {name}")))?;
                removed.networks.push(name);
            }
        }
        let options = ListVolumesOptionsBuilder::default().filters(&filter).build();
        let volumes = self.docker.list_volumes(Some(options)).await.map_err(ProvisionError::api("list volumes"))?;
        for v in volumes.volumes.unwrap_or_default() {
            let options = RemoveVolumeOptionsBuilder::default().force(true).build();
            self.docker.remove_volume(&v.name, Some(options)).await.map_err(ProvisionError::api(format!("remove volume {}", v.name)))?;
            removed.volumes.push(v.name);
        }
        removed.containers.sort();
        removed.volumes.sort();
        Ok(removed)
    }
}

impl Engine {
    async fn remove_node(&self, node: &str) -> Result<(), ProvisionError> {
        let options = RemoveContainerOptionsBuilder::default().force(true).v(true).build();
        match self.docker.remove_container(node, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(ProvisionError::api(format!("remove node {node}"))(e)),
        }
    }

    /// Starts the servers one after the other, each waited for, then the agents all at
    /// once, waited for together (k3d's order).
    async fn start_and_wait(
        &self,
        nodes: &[&NodeSpec],
        timeout: Duration,
        release: &mut (dyn FnMut(&[u16]) + Send),
        progress: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<(), ProvisionError> {
        let started = Instant::now();
        let left = |started: Instant| timeout.saturating_sub(started.elapsed());
        for server in nodes.iter().filter(|n| n.role == NodeRole::Server) {
            release(&server.ports.iter().map(|p| p.host_port).collect::<Vec<_>>());
            self.start_node(server).await?;
            progress(Progress::NodeStarted { node: server.name.clone() });
            let after = self.wait_for_line(&server.name, &server.ready_line, left(started)).await?;
            progress(Progress::NodeReady { node: server.name.clone(), after });
        }
        let agents: Vec<&&NodeSpec> = nodes.iter().filter(|n| n.role == NodeRole::Agent).collect();
        for agent in &agents {
            release(&agent.ports.iter().map(|p| p.host_port).collect::<Vec<_>>());
            self.start_node(agent).await?;
            progress(Progress::NodeStarted { node: agent.name.clone() });
        }
        let waits = agents.iter().map(|a| async move { (a.name.clone(), self.wait_for_line(&a.name, &a.ready_line, left(started)).await) });
        for (name, result) in futures::future::join_all(waits).await {
            progress(Progress::NodeReady { node: name, after: result? });
        }
        Ok(())
    }

    /// The node containers of `lab` by name, for commands that act on one node.
    pub async fn node_names(&self, lab: &str) -> Result<Vec<String>, ProvisionError> {
        Ok(self.nodes_of(lab).await?.into_iter().map(|n| n.name).collect())
    }

    /// Starts node `node` of `lab` when it is not running (the watchdog's `start-node`
    /// action); whether it was started (false: it ran already). A container that is not
    /// one of the lab's nodes is [`ProvisionError::NoSuchNode`]; it is never touched.
    pub async fn start_stopped_node(&self, lab: &str, node: &str) -> Result<bool, ProvisionError> {
        let nodes = self.nodes_of(lab).await?;
        let Some(found) = nodes.iter().find(|n| n.name == node) else {
            return Err(ProvisionError::NoSuchNode {
                lab: lab.to_owned(),
                node: node.to_owned(),
                known: nodes.into_iter().map(|n| n.name).collect(),
            });
        };
        if found.running {
            return Ok(false);
        }
        match self.docker.start_container(node, None::<bollard::query_parameters::StartContainerOptions>).await {
            Ok(()) => Ok(true),
            // Started a moment ago by someone else (`up`, `start`).
            Err(e) if docker_status(&e).is_some_and(|(code, _)| code == 304) => Ok(false),
            Err(source) => Err(ProvisionError::Api { what: format!("start node {node}"), source }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_times_parse() {
        assert_eq!(parse_rfc3339_secs("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339_secs("2026-12-01T09:14:02.123456789Z"), Some(1_796_116_442));
        assert_eq!(parse_rfc3339_secs("2000-03-01T00:00:01+00:00"), Some(951_868_801));
        assert_eq!(parse_rfc3339_secs("garbage"), None);
    }

    #[test]
    fn log_tails_lead_with_the_errors() {
        let mut log = String::from("time=\"t\" level=info msg=\"Starting k3s\"\nIncorrect Usage: flag provided but not defined: -x\n");
        log.push_str("time=\"t\" level=fatal msg=\"Error: flag provided but not defined: -x\"\n");
        for i in 0..40 {
            log.push_str(&format!("   --flag-{i} value\n"));
        }
        let shown = tail(&log, 15);
        let lines: Vec<&str> = shown.lines().collect();
        assert!(lines[0].contains("Incorrect Usage") && lines[1].contains("level=fatal"), "{shown}");
        assert_eq!(lines[2].trim(), "...");
        assert_eq!(lines.len(), 3 + 15);
        assert!(lines.last().is_some_and(|l| l.contains("--flag-39")));
        assert!(!shown.contains("Starting k3s"));
        assert_eq!(tail("a\nb\n", 15), "    a\n    b", "a short log is shown whole, nothing doubled");
    }

    #[test]
    fn names_are_made_file_safe() {
        assert_eq!(sanitize("docker.io/library/nginx:1.25"), "docker.io_library_nginx_1.25");
    }

    #[test]
    fn capabilities_mode_is_explicit() {
        let c = security_config(Security::Capabilities);
        assert_eq!(c.privileged, Some(false));
        assert!(c.cap_add.as_ref().is_some_and(|caps| caps.iter().any(|c| c == "SYS_ADMIN")));
        assert!(c.security_opt.as_ref().is_some_and(|o| o.contains(&"apparmor=unconfined".to_owned())));
        assert_eq!(security_config(Security::Privileged).privileged, Some(true));
    }
}
