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

/// Polls `GET /readyz` until it answers `ok` or `timeout` passes.
pub async fn wait_ready(client: &Client, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let req = http::Request::get("/readyz").body(Vec::new())?;
        let last = match client.request_text(req).await {
            Ok(body) if body.trim() == "ok" => return Ok(()),
            Ok(body) => body.trim().to_string(),
            Err(e) => chain(&e),
        };
        if Instant::now() >= deadline {
            bail!("API server did not become ready within {}s: {last}", timeout.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
