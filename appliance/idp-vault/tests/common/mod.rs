//! Helpers for the secrets plane's tests: a real OpenBao server on loopback (OpenBao
//! stands in for Vault: its HTTP API is Vault's), and the few Kubernetes objects the
//! tests make on the test bed's API server.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use idp_core::secrets::{SEEDS, seed_paths};
use idp_test::Testbed;
use idp_test::poll::{Attempt, poll_until};
use idp_test::process::Supervised;
use idp_vault::Vault;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::Api;
use kube::api::PostParams;
use serde_json::json;

/// How long OpenBao may take to answer after it is started.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A `bao server` on loopback with raft storage in a temporary directory, TLS off.
/// Dropping it stops the server and removes its data.
pub struct Bao {
    bin: PathBuf,
    port: u16,
    process: Option<Supervised>,
    // Declared last: removed after the process is gone.
    dir: tempfile::TempDir,
}

/// Two distinct free loopback ports (API and cluster), found with both listeners open.
fn free_ports() -> anyhow::Result<(u16, u16)> {
    let a = TcpListener::bind("127.0.0.1:0").context("bind a free port")?;
    let b = TcpListener::bind("127.0.0.1:0").context("bind a free port")?;
    Ok((a.local_addr()?.port(), b.local_addr()?.port()))
}

impl Bao {
    /// Starts OpenBao from the test bed's `bin/bao` and waits until it answers.
    pub async fn start(testbed: &Testbed) -> anyhow::Result<Bao> {
        let dir = tempfile::Builder::new().prefix("idp-test-bao-").tempdir().context("temp dir")?;
        let (port, cluster_port) = free_ports()?;
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data)?;
        let config = format!(
            r#"storage "raft" {{
  path    = "{data}"
  node_id = "vault-0"
}}
listener "tcp" {{
  address         = "127.0.0.1:{port}"
  cluster_address = "127.0.0.1:{cluster_port}"
  tls_disable     = true
}}
api_addr     = "http://127.0.0.1:{port}"
cluster_addr = "http://127.0.0.1:{cluster_port}"
ui           = false
"#,
            data = data.display()
        );
        std::fs::write(dir.path().join("config.hcl"), config)?;
        let mut bao = Bao { bin: testbed.bin("bao"), port, process: None, dir };
        bao.spawn().await?;
        Ok(bao)
    }

    async fn spawn(&mut self) -> anyhow::Result<()> {
        let config = self.dir.path().join("config.hcl");
        let process = Supervised::spawn("bao", &self.bin, ["server".to_owned(), format!("-config={}", config.display())], self.dir.path())?;
        self.process = Some(process);
        let vault = self.vault();
        let process = &mut self.process;
        poll_until("OpenBao to answer sys/seal-status", START_TIMEOUT, || {
            let vault = vault.clone();
            let running = process.as_mut().map_or(Ok(()), Supervised::ensure_running);
            async move {
                running?;
                Ok(match vault.seal_status().await {
                    Ok(_) => Attempt::Done(()),
                    Err(e) => Attempt::Retry(e.to_string()),
                })
            }
        })
        .await
    }

    /// Stops the server (SIGTERM) and starts it again on the same port and data: it
    /// comes back sealed, as a restarted Vault pod does.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        drop(self.process.take());
        self.spawn().await
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A client without a token over the direct transport.
    pub fn vault(&self) -> Vault {
        match Vault::direct(&self.url()) {
            Ok(vault) => vault,
            Err(e) => panic!("the loopback URL {} is refused: {e}", self.url()),
        }
    }

    /// The end of the server's log, for failure messages.
    pub fn log_tail(&self) -> String {
        self.process.as_ref().map(|p| p.log_tail(40)).unwrap_or_default()
    }
}

/// Every seeded path's values, read with `root`.
pub async fn read_seeded(root: &Vault) -> anyhow::Result<BTreeMap<&'static str, BTreeMap<String, String>>> {
    let mut all = BTreeMap::new();
    for path in seed_paths(SEEDS) {
        let values = root.kv_get(path).await?.with_context(|| format!("secret/{path} is missing"))?;
        all.insert(path, values);
    }
    Ok(all)
}

/// Creates namespace `name`.
pub async fn namespace(client: &kube::Client, name: &str) -> anyhow::Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({ "metadata": { "name": name } }))?;
    api.create(&PostParams::default(), &ns).await.with_context(|| format!("create namespace {name}"))?;
    Ok(())
}

/// Creates service account `name` in `namespace`.
pub async fn service_account(client: &kube::Client, namespace: &str, name: &str) -> anyhow::Result<()> {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let sa: ServiceAccount = serde_json::from_value(json!({ "metadata": { "name": name } }))?;
    api.create(&PostParams::default(), &sa).await.with_context(|| format!("create service account {namespace}/{name}"))?;
    Ok(())
}

/// Binds service account `namespace/name` to ClusterRole `system:auth-delegator`
/// (TokenReviews), as the Vault chart does for Vault's own account.
pub async fn auth_delegator(client: &kube::Client, namespace: &str, name: &str) -> anyhow::Result<()> {
    let api: Api<ClusterRoleBinding> = Api::all(client.clone());
    let binding: ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": { "name": format!("{name}-auth-delegator") },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:auth-delegator" },
        "subjects": [{ "kind": "ServiceAccount", "name": name, "namespace": namespace }],
    }))?;
    api.create(&PostParams::default(), &binding).await.context("create the auth-delegator binding")?;
    Ok(())
}

/// A token of service account `namespace/name` from the TokenRequest API, for
/// `audience` (`None`: the API server's own).
pub async fn token(client: &kube::Client, namespace: &str, name: &str, audience: Option<&str>) -> anyhow::Result<String> {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: audience.map(|a| vec![a.to_owned()]).unwrap_or_default(),
            expiration_seconds: Some(3600),
            ..TokenRequestSpec::default()
        },
        ..TokenRequest::default()
    };
    let answer = api
        .create_token_request(name, &PostParams::default(), &request)
        .await
        .with_context(|| format!("TokenRequest for {namespace}/{name}"))?;
    match answer.status {
        Some(status) if !status.token.is_empty() => Ok(status.token),
        _ => bail!("the TokenRequest for {namespace}/{name} returned no token"),
    }
}

/// The CA the control plane's kubeconfig trusts, as PEM.
pub fn control_plane_ca(kubeconfig: &str) -> anyhow::Result<String> {
    let config = kube::config::Kubeconfig::from_yaml(kubeconfig)?;
    let cluster = config.clusters.first().and_then(|c| c.cluster.as_ref()).context("the kubeconfig has no cluster")?;
    let path = cluster.certificate_authority.as_ref().context("the kubeconfig names no CA file")?;
    std::fs::read_to_string(path).with_context(|| format!("read {path}"))
}
