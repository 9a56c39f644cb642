//! Kubernetes API clients of the stand-in (bearer token auth) and the checks
//! made with them.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use kube::{Client, Config};

/// A client for `url` authenticating with `token`. With `ca_der` the server
/// is verified against that CA; without it verification is skipped (agents:
/// real k3s checks the CA hash embedded in a `K10...` token instead).
pub fn client(url: &str, ca_der: Option<Vec<u8>>, token: &str) -> Result<Client> {
    let mut config = Config::new(url.parse().with_context(|| format!("invalid server URL {url:?}"))?);
    config.accept_invalid_certs = ca_der.is_none();
    // An explicit (possibly empty) root store keeps rustls off the platform
    // trust store, which the image does not have.
    config.root_cert = Some(ca_der.into_iter().collect());
    config.auth_info.token = Some(token.to_string().into());
    config.connect_timeout = Some(Duration::from_secs(5));
    config.read_timeout = Some(Duration::from_secs(30));
    config.default_retry = false;
    Client::try_from(config).context("building the Kubernetes client")
}

/// An error and its sources, `outer: inner: root`, so a log line names the
/// real cause (DNS failure, connection refused, ...).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// True when the server answered that the credentials are not accepted.
pub fn is_auth_error(e: &kube::Error) -> Option<(u16, String)> {
    match e {
        kube::Error::Api(s) if s.code == 401 || s.code == 403 => Some((s.code, s.message.clone())),
        _ => None,
    }
}

/// Polls `GET /readyz` until it answers `ok` or `timeout` passes, logging
/// k3s' `Polling for API server readiness: GET /readyz failed: ...` at most
/// every 2 s (k3s polls every 2 s; the stand-in polls faster but logs as
/// often).
pub async fn wait_ready(client: &Client, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let mut last_log: Option<Instant> = None;
    loop {
        let req = http::Request::get("/readyz").body(Vec::new())?;
        let last = match client.request_text(req).await {
            Ok(body) if body.trim() == "ok" => return Ok(()),
            Ok(body) => format!("API server not ready: {}", failed_checks(&body)),
            Err(kube::Error::Api(s)) if s.message.contains("[-]") => format!("API server not ready: {}", failed_checks(&s.message)),
            Err(e) => chain(&e),
        };
        if Instant::now() >= deadline {
            bail!("API server did not become ready within {}s: {last}", timeout.as_secs());
        }
        if last_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(2)) {
            info!("Polling for API server readiness: GET /readyz failed: {last}");
            last_log = Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The failing checks of a verbose `/readyz` answer (`[-]name failed: ...`),
/// comma-separated; the whole text when it lists none.
fn failed_checks(body: &str) -> String {
    let failed: Vec<&str> = body.lines().filter_map(|l| l.trim().strip_prefix("[-]")).collect();
    if failed.is_empty() { body.trim().to_string() } else { failed.join(", ") }
}

/// Namespace of the ConfigMap that stands in for k3s' supervisor endpoint
/// `/v1-k3s/config`, from which real agents learn the cluster's settings.
pub const AGENT_CONFIG_NAMESPACE: &str = "kube-system";
/// Name of that ConfigMap.
pub const AGENT_CONFIG_NAME: &str = "idp-testnode-agent-config";

/// Publishes what agents need to know about the cluster (server side).
pub async fn publish_agent_config(client: &Client, data: std::collections::BTreeMap<String, String>) -> Result<(), kube::Error> {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Api, Patch, PatchParams};
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), AGENT_CONFIG_NAMESPACE);
    let cm = ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some(AGENT_CONFIG_NAME.to_string()),
            labels: Some([("app.kubernetes.io/managed-by".to_string(), "idp-testnode".to_string())].into()),
            ..Default::default()
        },
        data: Some(data),
        ..Default::default()
    };
    api.patch(AGENT_CONFIG_NAME, &PatchParams::apply("k3s").force(), &Patch::Apply(&cm)).await.map(drop)
}

/// Reads the agent configuration the server published (agent side); an
/// `Api` error with code 404 means the server is not ready yet.
pub async fn agent_config(client: &Client) -> Result<std::collections::BTreeMap<String, String>, kube::Error> {
    use k8s_openapi::api::core::v1::ConfigMap;
    let api: kube::Api<ConfigMap> = kube::Api::namespaced(client.clone(), AGENT_CONFIG_NAMESPACE);
    Ok(api.get(AGENT_CONFIG_NAME).await?.data.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readyz_failures_name_the_failing_checks() {
        let body = "[+]ping ok\n[+]etcd ok\n[-]informer-sync failed: reason withheld\n[-]poststarthook/rbac failed: reason withheld\nreadyz check failed";
        assert_eq!(failed_checks(body), "informer-sync failed: reason withheld, poststarthook/rbac failed: reason withheld");
        assert_eq!(failed_checks("nope"), "nope");
    }
}
