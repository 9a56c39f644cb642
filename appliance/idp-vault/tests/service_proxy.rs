//! The secrets plane through the API server's service proxy, as the lab reaches its
//! Vault: OpenBao (standing in for Vault; its HTTP API is Vault's) runs in a Docker
//! container on a test network, behind a Service, Endpoints and a pod `vault-0` on the
//! test bed's Kubernetes 1.20 API server, which dials the container's address.
//!
//! The API server refuses to proxy to loopback (Endpoints may not name 127.0.0.0/8), so
//! OpenBao cannot simply run on the host here. The API server runs on the host, and on
//! Linux the host routes to the addresses of Docker's bridge networks. There is no
//! kubelet: the test writes the pod's status as one would (its IP, its container
//! running, a restart), which is what the auto-unseal trigger watches.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context as _;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{CreateImageOptionsBuilder, InspectContainerOptions, RestartContainerOptions, StartContainerOptions};
use common::{namespace, read_seeded, service_account};
use futures::{StreamExt as _, TryStreamExt as _};
use idp_core::secrets::{ESO_ROLES, KEYS_SECRET, SEEDS, VAULT_CONTAINER, VAULT_NAMESPACE, VAULT_POD, VAULT_PORT, VAULT_SERVICE};
use idp_kube::Cluster;
use idp_test::{ControlPlane, DockerScope, Need, Testbed, require};
use idp_vault::{
    AutoUnseal, KubernetesAuth, ProxyTransport, Unseal, Vault, VaultError, auto_unseal, configure_kubernetes_auth, init_and_unseal, seed,
    unseal_with_kept_keys,
};
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;

/// The image's repository; its tag names OpenBao's version and the recipe.
const IMAGE_REPO: &str = "idp-lab/openbao-test";
/// The image's recipe; bump it when the tarball below changes.
const RECIPE: &str = "r1";
/// OpenBao's configuration inside the container: raft on `/data`, plain HTTP on 8200.
const CONFIG: &str = r#"storage "raft" {
  path    = "/data"
  node_id = "vault-0"
}
listener "tcp" {
  address         = "0.0.0.0:8200"
  cluster_address = "0.0.0.0:8201"
  tls_disable     = true
}
api_addr     = "http://127.0.0.1:8200"
cluster_addr = "http://127.0.0.1:8201"
ui           = false
"#;
/// How long one auto-unseal round may take (Vault restarting, the trigger, the unseal).
const ROUND: Duration = Duration::from_secs(120);

/// `idp-lab/openbao-test:<version>-<recipe>`, made with `docker import` of a tarball that
/// holds the static `bao` binary, its configuration and its data directory, unless
/// Docker has it already.
async fn openbao_image(scope: &DockerScope, testbed: &Testbed) -> anyhow::Result<String> {
    let bin = std::fs::canonicalize(testbed.bin("bao")).context("resolve bin/bao")?;
    let version = std::process::Command::new(&bin).arg("version").output().context("bao version")?;
    let version = String::from_utf8_lossy(&version.stdout);
    // `OpenBao v2.7.2 (9e0a0d3c...), committed ...`: the version and the commit name it.
    let mut words = version.split_whitespace().skip(1);
    let clean = |word: Option<&str>, len: usize| -> String {
        word.unwrap_or("unknown").chars().filter(|c| c.is_ascii_alphanumeric() || *c == '.').take(len).collect()
    };
    let (release, commit) = (clean(words.next(), 40), clean(words.next(), 12));
    let image = format!("{IMAGE_REPO}:{release}-{commit}-{RECIPE}");
    let docker = scope.docker();
    if docker.inspect_image(&image).await.is_ok() {
        return Ok(image);
    }
    let mut tarball = tar::Builder::new(Vec::new());
    let dir = |path: &str, mode: u32| {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(mode);
        header.set_size(0);
        header.set_mtime(0);
        (header, path.to_owned())
    };
    for (mut header, path) in [dir("bin/", 0o755), dir("etc/", 0o755), dir("etc/bao/", 0o755), dir("data/", 0o700), dir("tmp/", 0o1777)] {
        header.set_cksum();
        tarball.append_data(&mut header, path, std::io::empty())?;
    }
    let binary = std::fs::read(&bin).with_context(|| format!("read {}", bin.display()))?;
    for (path, bytes, mode) in [("bin/bao", binary.as_slice(), 0o755), ("etc/bao/config.hcl", CONFIG.as_bytes(), 0o644)] {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(mode);
        header.set_mtime(0);
        header.set_cksum();
        tarball.append_data(&mut header, path, bytes)?;
    }
    let tarball = tarball.into_inner()?;
    let (repo, tag) = image.split_once(':').context("image reference")?;
    let options = CreateImageOptionsBuilder::default().from_src("-").repo(repo).tag(tag).build();
    docker
        .create_image(Some(options), Some(bollard::body_full(tarball.into())), None)
        .try_collect::<Vec<_>>()
        .await
        .with_context(|| format!("docker import {image}"))?;
    // Older tags (another OpenBao, another recipe) are of no further use.
    let listed = docker.list_images(None::<bollard::query_parameters::ListImagesOptions>).await.context("list images")?;
    for old in listed.iter().flat_map(|i| i.repo_tags.iter()).filter(|t| t.starts_with(&format!("{IMAGE_REPO}:")) && **t != image) {
        // Best effort: one that a container still uses stays.
        let _ = docker.remove_image(old, None::<bollard::query_parameters::RemoveImageOptions>, None).await;
    }
    Ok(image)
}

/// The container's address on `network`.
async fn address(scope: &DockerScope, container: &str, network: &str) -> anyhow::Result<String> {
    let inspect = scope.docker().inspect_container(container, None::<InspectContainerOptions>).await?;
    inspect
        .network_settings
        .and_then(|s| s.networks)
        .and_then(|n| n.get(network).and_then(|e| e.ip_address.clone()))
        .filter(|ip| !ip.is_empty())
        .with_context(|| format!("{container} has no address on {network}"))
}

/// Writes pod `vault-0`'s status as a kubelet would: running at `ip`, the Vault
/// container started at `since` after `restarts` restarts.
async fn report_pod(pods: &Api<Pod>, ip: &str, restarts: i32, since: &str) -> anyhow::Result<()> {
    let status = json!({
        "status": {
            "phase": "Running",
            "podIP": ip,
            "podIPs": [{ "ip": ip }],
            "conditions": [{ "type": "Ready", "status": "True" }],
            "containerStatuses": [{
                "name": VAULT_CONTAINER,
                "image": "idp-lab/openbao-test",
                "imageID": "",
                "ready": true,
                "restartCount": restarts,
                "started": true,
                "state": { "running": { "startedAt": since } },
            }],
        }
    });
    pods.patch_status(VAULT_POD, &PatchParams::default(), &Patch::Merge(&status)).await.context("write the pod's status")?;
    Ok(())
}

/// Points Endpoints `vault` at `ip`, with pod `vault-0` as the target the API server checks.
async fn point_endpoints(endpoints: &Api<Endpoints>, ip: &str) -> anyhow::Result<()> {
    let body = json!({
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": { "name": VAULT_SERVICE, "namespace": VAULT_NAMESPACE },
        "subsets": [{
            "addresses": [{ "ip": ip, "targetRef": { "kind": "Pod", "namespace": VAULT_NAMESPACE, "name": VAULT_POD } }],
            "ports": [{ "name": "http", "port": VAULT_PORT }],
        }],
    });
    endpoints
        .patch(VAULT_SERVICE, &PatchParams::apply("idp-vault-test").force(), &Patch::Apply(&body))
        .await
        .context("write the Endpoints")?;
    Ok(())
}

#[tokio::test]
async fn the_lab_reaches_vault_through_the_api_server_and_auto_unseal_follows_a_restart() {
    let testbed = require!(Need::OpenBao, Need::Docker, Need::KubeBinaries);
    let scope = DockerScope::new().await.expect("docker");
    let image = openbao_image(&scope, &testbed).await.expect("the OpenBao image");
    let network = scope.create_network("vault").await.expect("network");
    let body = ContainerCreateBody {
        image: Some(image.clone()),
        entrypoint: Some(vec!["/bin/bao".into(), "server".into(), "-config=/etc/bao/config.hcl".into()]),
        host_config: Some(HostConfig { network_mode: Some(network.clone()), ..HostConfig::default() }),
        ..ContainerCreateBody::default()
    };
    let container = scope.create_container("openbao", body).await.expect("container");
    scope.docker().start_container(&container, None::<StartContainerOptions>).await.expect("start");
    let ip = address(&scope, &container, &network).await.expect("address");

    let cp = ControlPlane::start_without_controller_manager().await.expect("control plane starts");
    let client = cp.client();
    namespace(&client, VAULT_NAMESPACE).await.expect("namespace");
    // The ServiceAccount admission wants the pod's account to exist (there is no
    // controller manager to make `default`).
    service_account(&client, VAULT_NAMESPACE, "vault").await.expect("account");
    let pods: Api<Pod> = Api::namespaced(client.clone(), VAULT_NAMESPACE);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": { "name": VAULT_POD, "labels": { "app.kubernetes.io/name": "vault" } },
        "spec": {
            "nodeName": "stand-in-node",
            "serviceAccountName": "vault",
            "automountServiceAccountToken": false,
            "containers": [{ "name": VAULT_CONTAINER, "image": image }],
        },
    }))
    .expect("pod");
    pods.create(&PostParams::default(), &pod).await.expect("create vault-0");
    report_pod(&pods, &ip, 0, "2026-01-01T00:00:00Z").await.expect("status");
    let services: Api<Service> = Api::namespaced(client.clone(), VAULT_NAMESPACE);
    let service: Service = serde_json::from_value(json!({
        "metadata": { "name": VAULT_SERVICE },
        "spec": { "ports": [{ "name": "http", "port": VAULT_PORT, "targetPort": VAULT_PORT }] },
    }))
    .expect("service");
    services.create(&PostParams::default(), &service).await.expect("create the Service");
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), VAULT_NAMESPACE);
    point_endpoints(&endpoints, &ip).await.expect("endpoints");

    // Why the container: the API server refuses Endpoints on loopback.
    let loopback: Endpoints = serde_json::from_value(json!({
        "metadata": { "name": "loopback" },
        "subsets": [{ "addresses": [{ "ip": "127.0.0.1" }], "ports": [{ "port": VAULT_PORT }] }],
    }))
    .expect("endpoints");
    let err = endpoints.create(&PostParams::default(), &loopback).await.expect_err("loopback is refused");
    assert!(err.to_string().contains("loopback"), "{err}");

    let cluster = Cluster::from_kubeconfig(cp.kubeconfig(), None).await.expect("cluster");
    let vault = Vault::in_lab(&cluster);
    assert!(vault.endpoint().starts_with("service vault-system/vault:8200 through https://127.0.0.1:"), "{}", vault.endpoint());
    let health = vault.health().await.unwrap_or_else(|e| panic!("{e}\n{}", cp.log_tails(20)));
    assert!(!health.initialized, "a fresh OpenBao, seen through the service proxy: {health:?}");

    // Init, unseal and seeding, every request through the API server.
    let first = init_and_unseal(&vault, Some(&cluster), None).await.expect("init and unseal through the proxy");
    assert!(first.initialised && first.unsealed && first.stored_in_cluster);
    assert!(cluster.secret_data(VAULT_NAMESPACE, KEYS_SECRET).await.expect("read").is_some());
    let root = vault.with_token(&first.keys.root_token);
    let report = seed(&root, SEEDS, &BTreeMap::new()).await.expect("seed through the proxy");
    assert_eq!(report.written(), SEEDS.len());
    let before = read_seeded(&root).await.expect("read back through the proxy");
    // In a pod, Vault reads its service account's CA and token from the files the
    // kubelet mounts (KubernetesAuth::in_cluster); this container has none, so the
    // config names the test bed's CA and a reviewer token. (Logins are tested in
    // kubernetes_auth.rs: this API server listens on loopback, out of the container's
    // reach.)
    service_account(&client, VAULT_NAMESPACE, "reviewer").await.expect("reviewer account");
    let auth = KubernetesAuth {
        host: cp.server().to_owned(),
        ca_pem: Some(common::control_plane_ca(cp.kubeconfig()).expect("CA")),
        token_reviewer_jwt: Some(common::token(&client, VAULT_NAMESPACE, "reviewer", None).await.expect("token")),
    };
    let changed = configure_kubernetes_auth(&root, &auth, ESO_ROLES).await.expect("Kubernetes auth through the proxy");
    assert_eq!(changed.len(), 2 + 2 * ESO_ROLES.len(), "{changed:#?}");

    // The rerun through the proxy changes nothing.
    let again = init_and_unseal(&vault, Some(&cluster), Some(&first.keys)).await.expect("rerun");
    assert!(!again.initialised && !again.unsealed && !again.stored_in_cluster, "{again:?}");
    assert!(seed(&root, SEEDS, &BTreeMap::new()).await.expect("seed again").is_noop());
    assert_eq!(configure_kubernetes_auth(&root, &auth, ESO_ROLES).await.expect("again"), Vec::<String>::new());

    // The pod proxy reaches the same server.
    let by_pod = Vault::new(ProxyTransport::pod(&cluster, VAULT_NAMESPACE, VAULT_POD, VAULT_PORT));
    assert!(by_pod.health().await.expect("health through the pod proxy").is_ready());

    // Auto-unseal: the trigger fires for the running container (already unsealed:
    // nothing to do), then for the restart, which came back sealed.
    let mut rounds = auto_unseal(&cluster, Vault::in_lab(&cluster), first.keys.unseal_key.clone());
    let round = tokio::time::timeout(ROUND, rounds.next()).await.expect("a first round").expect("the stream goes on");
    let AutoUnseal::Started { start, outcome } = round else { panic!("expected a start, got {round:?}") };
    assert_eq!((start.restart_count, outcome.expect("nothing to unseal")), (0, Unseal::AlreadyUnsealed));

    scope.docker().restart_container(&container, None::<RestartContainerOptions>).await.expect("restart the container");
    let ip = address(&scope, &container, &network).await.expect("address after the restart");
    point_endpoints(&endpoints, &ip).await.expect("endpoints after the restart");
    let sealed = idp_test::poll::poll_until("OpenBao to answer again, sealed", ROUND, || {
        let vault = vault.clone();
        async move {
            Ok(match vault.health().await {
                Ok(health) if health.sealed => idp_test::poll::Attempt::Done(health),
                Ok(health) => idp_test::poll::Attempt::Retry(format!("{health:?}")),
                Err(e) => idp_test::poll::Attempt::Retry(e.to_string()),
            })
        }
    })
    .await
    .expect("sealed after the restart");
    assert!(sealed.initialized && !sealed.is_ready());

    report_pod(&pods, &ip, 1, "2026-01-01T01:00:00Z").await.expect("status after the restart");
    let round = tokio::time::timeout(ROUND, rounds.next()).await.expect("a round for the restart").expect("the stream goes on");
    let AutoUnseal::Started { start, outcome } = round else { panic!("expected a start, got {round:?}") };
    assert_eq!(start.restart_count, 1);
    assert_eq!(outcome.expect("unsealed"), Unseal::Unsealed);
    assert!(vault.health().await.expect("health").is_ready(), "ready again, through the service proxy");
    assert_eq!(read_seeded(&root).await.expect("read after the restart"), before, "nothing was lost or regenerated");

    // The watchdog's unseal action: after another restart, the keys come from the
    // cluster's Secret (the lab's state has none here), through the service proxy.
    scope.docker().restart_container(&container, None::<RestartContainerOptions>).await.expect("restart again");
    let ip = address(&scope, &container, &network).await.expect("address after the second restart");
    point_endpoints(&endpoints, &ip).await.expect("endpoints after the second restart");
    let differ = idp_core::secrets::VaultKeys { unseal_key: "00".into(), root_token: first.keys.root_token.clone() };
    let err = unseal_with_kept_keys(&vault, Some(&cluster), Some(&differ)).await.expect_err("the state and the Secret disagree");
    assert!(matches!(err, VaultError::KeysDiffer { .. }), "{err}");
    assert!(vault.health().await.expect("health").sealed, "nothing was unsealed with keys that disagree");
    assert_eq!(unseal_with_kept_keys(&vault, Some(&cluster), None).await.expect("unsealed with the Secret's key"), Unseal::Unsealed);
    assert!(vault.health().await.expect("health").is_ready());
    assert_eq!(unseal_with_kept_keys(&vault, Some(&cluster), Some(&first.keys)).await.expect("nothing to do"), Unseal::AlreadyUnsealed);

    // A Service without endpoints (what the endpoints controller writes while no pod is
    // ready): the API server's refusal, named.
    let nowhere: Service = serde_json::from_value(json!({
        "metadata": { "name": "nowhere" },
        "spec": { "ports": [{ "name": "http", "port": VAULT_PORT }] },
    }))
    .expect("service");
    services.create(&PostParams::default(), &nowhere).await.expect("create");
    let empty: Endpoints = serde_json::from_value(json!({ "metadata": { "name": "nowhere" }, "subsets": [] })).expect("endpoints");
    endpoints.create(&PostParams::default(), &empty).await.expect("create");
    let err = Vault::through_service(&cluster, VAULT_NAMESPACE, "nowhere", VAULT_PORT).health().await.expect_err("no endpoints");
    assert!(err.is_transport(), "{err}");
    assert!(err.to_string().contains("no endpoints available for service"), "{err}");

    drop(rounds);
    scope.cleanup().await.expect("Docker cleanup");
}
