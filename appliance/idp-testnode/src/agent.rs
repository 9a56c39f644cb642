//! `k3s agent`: authenticates to the server with the cluster token,
//! retrieves the cluster's agent configuration (the server's flannel
//! backend), registers its `Node` and keeps it fresh. A rejected token is
//! fatal at once; an unreachable or starting server is retried for a while.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use crate::api;
use crate::cli::{Role, Settings};
use crate::cni::{self, Network};
use crate::host;
use crate::node::NodeIdentity;

/// How long an unreachable or not yet ready server is retried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(300);

/// A token the server refused.
#[derive(Debug, thiserror::Error)]
#[error(
    "Failed to validate connection to cluster at {url}: token is not valid: the server answered {code} ({message}); check K3S_TOKEN/--token"
)]
pub struct TokenRejected {
    url: String,
    code: u16,
    message: String,
}

/// Runs the agent until an error.
pub async fn run(settings: &Settings) -> Result<Infallible> {
    debug_assert_eq!(settings.role, Role::Agent);
    let url = settings.server_url.as_deref().context("--server is required: set K3S_URL or --server to the server's https URL")?;
    let token = settings.token.as_deref().context("--token is required: set K3S_TOKEN or --token to the cluster token")?;
    let client = api::client(url, None, token)?;

    // Wait for the server's agent configuration; a refused token ends the agent.
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    let mut last_log: Option<Instant> = None;
    let agent_config = loop {
        match api::agent_config(&client).await {
            Ok(c) => break c,
            Err(e) => {
                let e = match e {
                    kube::Error::Api(s) if s.code == 404 => {
                        anyhow::anyhow!("the server has not published the agent configuration yet (it is still starting)")
                    }
                    other => {
                        if let Some((code, message)) = api::is_auth_error(&other) {
                            return Err(TokenRejected { url: url.to_string(), code, message }.into());
                        }
                        anyhow::anyhow!(api::chain(&other))
                    }
                };
                if Instant::now() >= deadline {
                    bail!("Failed to connect to the server at {url} within {}s: {e}", CONNECT_TIMEOUT.as_secs());
                }
                if last_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                    info!("Waiting to retrieve agent configuration; server is not ready: {e}");
                    last_log = Some(Instant::now());
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    };
    let backend = agent_config.get("flannel-backend").map_or("vxlan", String::as_str);
    info!("Retrieved agent configuration from the server at {url} (flannel backend {backend})");
    let network = Network::for_backend(backend);
    crate::server::prepare_cni_dir(&network)?;

    info!("containerd is now running (idp-testnode stand-in: no container runtime is started)");
    let mut id = NodeIdentity::new(settings, &host::hostname(), &host::addresses(), false, network);
    let mut attempt = 0;
    loop {
        match id.register(&client).await {
            Ok(()) => break,
            Err(e) => {
                if let Some((code, message)) = api::is_auth_error(&e) {
                    return Err(TokenRejected { url: url.to_string(), code, message }.into());
                }
                attempt += 1;
                if attempt > 30 {
                    return Err(e).with_context(|| format!("registering node {}", id.name));
                }
                warn!("Failed to register node {} (attempt {attempt}): {}", id.name, api::chain(&e));
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }
    info!("Successfully registered node {}", id.name);
    if !id.is_ready() {
        info!("Node {} is NotReady until a CNI config appears in {} (flannel backend none)", id.name, cni::CONF_DIR);
    }
    Ok(id.heartbeat(client).await)
}
