//! [`Vault`]: the HTTP API calls the plane makes, over any [`Transport`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use idp_core::health::{self, Child};
use idp_core::secrets::{Encoding, VaultKeys};
use idp_kube::Cluster;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{VaultError, chain};
use crate::transport::{HttpTransport, ProxyTransport, Request, Response, Transport};

const JSON: &str = "application/json";
const MERGE_PATCH: &str = "application/merge-patch+json";

/// A client for one Vault, over a [`Transport`], with or without a token. Cheap to clone.
#[derive(Clone)]
pub struct Vault {
    transport: Arc<dyn Transport>,
    token: Option<String>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault").field("endpoint", &self.endpoint()).field("token", &self.token.as_ref().map(|_| "<redacted>")).finish()
    }
}

/// Vault's health as `sys/health` reports it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Health {
    /// Whether Vault has been initialised.
    pub initialized: bool,
    /// Whether it is sealed.
    pub sealed: bool,
    /// Whether it is a standby (of an HA cluster).
    #[serde(default)]
    pub standby: bool,
    /// The server's version, e.g. `1.20.4` (OpenBao: `2.7.2`).
    #[serde(default)]
    pub version: String,
}

impl Health {
    /// Whether Vault serves secrets: initialised, unsealed and active, what `sys/health`
    /// answers 200 for. Running is not enough: a sealed Vault's pod runs (and, with the
    /// lab's probes, is even Ready) while every read fails. Nor is unsealed alone: right
    /// after unsealing, a raft node is a standby until it has elected itself, and
    /// refuses requests ("local node not active").
    pub fn is_ready(&self) -> bool {
        self.initialized && !self.sealed && !self.standby
    }

    /// Its verdict for the health rollup ([`idp_core::health::vault`]).
    pub fn child(&self) -> Child {
        health::vault(Some(self.initialized), Some(self.sealed))
    }

    fn describe(&self) -> &'static str {
        match (self.initialized, self.sealed) {
            (false, _) => "not initialised",
            (true, true) => "sealed",
            (true, false) if self.standby => "unsealed but standby (not active yet)",
            (true, false) => "unsealed and active",
        }
    }
}

/// Vault's seal as `sys/seal-status` reports it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct SealStatus {
    /// Whether Vault has been initialised.
    pub initialized: bool,
    /// Whether it is sealed.
    pub sealed: bool,
    /// Key shares needed to unseal.
    #[serde(rename = "t", default)]
    pub threshold: u64,
    /// Key shares in all.
    #[serde(rename = "n", default)]
    pub shares: u64,
    /// Key shares given so far towards unsealing.
    #[serde(default)]
    pub progress: u64,
}

/// One KV v2 secret as read: its data and current version.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct KvSecret {
    pub(crate) data: BTreeMap<String, String>,
    pub(crate) version: u64,
}

/// Vault's `{"errors": [...]}`.
#[derive(Deserialize)]
struct Errors {
    #[serde(default)]
    errors: Vec<String>,
}

impl Vault {
    /// A client over `transport`, without a token.
    pub fn new(transport: impl Transport + 'static) -> Vault {
        Vault { transport: Arc::new(transport), token: None }
    }

    /// A client for the Vault at `url` over [`HttpTransport`] (plain HTTP to loopback).
    pub fn direct(url: &str) -> Result<Vault, VaultError> {
        Ok(Vault::new(HttpTransport::new(url)?))
    }

    /// A client for port `port` of Service `service` in `namespace`, through the API
    /// server's service proxy ([`ProxyTransport::service`]).
    pub fn through_service(cluster: &Cluster, namespace: &str, service: &str, port: u16) -> Vault {
        Vault::new(ProxyTransport::service(cluster, namespace, service, port))
    }

    /// The lab's Vault: Service `vault-system/vault`, port 8200, through the API server.
    pub fn in_lab(cluster: &Cluster) -> Vault {
        use idp_core::secrets::{VAULT_NAMESPACE, VAULT_PORT, VAULT_SERVICE};
        Vault::through_service(cluster, VAULT_NAMESPACE, VAULT_SERVICE, VAULT_PORT)
    }

    /// The same Vault, sending `token` with every request.
    pub fn with_token(&self, token: &str) -> Vault {
        Vault { transport: Arc::clone(&self.transport), token: Some(token.to_owned()) }
    }

    /// Where requests go ([`Transport::endpoint`]).
    pub fn endpoint(&self) -> &str {
        self.transport.endpoint()
    }

    /// `sys/health`. Its status codes (501 not initialised, 503 sealed, 429 standby)
    /// carry the same JSON as 200, so any of them is an answer.
    pub async fn health(&self) -> Result<Health, VaultError> {
        let action = "read the health";
        let response = self.send(action, http::Method::GET, "sys/health", None, None).await?;
        if matches!(response.status, 200 | 429 | 472 | 473 | 501 | 503) {
            return self.decode(action, &response.body);
        }
        Err(self.api_error(action, &response))
    }

    /// Polls [`Vault::health`] every 200 ms until Vault is ready ([`Health::is_ready`]),
    /// for at most `timeout`. Errors that may pass (no answer yet) are retried; the
    /// timeout says what was seen last.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<Health, VaultError> {
        let started = Instant::now();
        loop {
            let last = match self.health().await {
                Ok(health) if health.is_ready() => return Ok(health),
                Ok(health) => health.describe().to_owned(),
                Err(e) if e.is_transport() => chain(&e),
                Err(e) => return Err(e),
            };
            if started.elapsed() >= timeout {
                return Err(VaultError::NotReady { endpoint: self.endpoint().to_owned(), waited: started.elapsed(), last });
            }
            tokio::time::sleep(Duration::from_millis(200).min(timeout.saturating_sub(started.elapsed()))).await;
        }
    }

    /// `sys/seal-status`.
    pub async fn seal_status(&self) -> Result<SealStatus, VaultError> {
        let value = self.call("read the seal status", http::Method::GET, "sys/seal-status", None).await?;
        self.decode_value("read the seal status", value)
    }

    /// `sys/init` with `shares` key shares, `threshold` of them needed to unseal.
    pub(crate) async fn init(&self, shares: u8, threshold: u8) -> Result<VaultKeys, VaultError> {
        #[derive(Deserialize)]
        struct Init {
            keys: Vec<String>,
            root_token: String,
        }
        let action = "initialise";
        let body = json!({ "secret_shares": shares, "secret_threshold": threshold });
        let value = self.call(action, http::Method::POST, "sys/init", Some(body)).await?;
        let init: Init = self.decode_value(action, value)?;
        let unseal_key = init.keys.into_iter().next().ok_or_else(|| VaultError::Invalid {
            what: format!("Vault's answer to {action} at {}", self.endpoint()),
            problem: "it holds no key".into(),
        })?;
        Ok(VaultKeys { unseal_key, root_token: init.root_token })
    }

    /// `sys/unseal` with `key`; Vault's seal status afterwards. A refused key is
    /// [`VaultError::KeyRefused`].
    pub(crate) async fn unseal(&self, key: &str) -> Result<SealStatus, VaultError> {
        let action = "unseal";
        let response = self.send(action, http::Method::POST, "sys/unseal", Some(json!({ "key": key })), Some(JSON)).await?;
        match response.status {
            200 => self.decode(action, &response.body),
            400 => Err(VaultError::KeyRefused { endpoint: self.endpoint().to_owned(), reason: errors_of(&response.body).join("; ") }),
            _ => Err(self.api_error(action, &response)),
        }
    }

    /// `sys/tools/random/<bytes>`: random bytes from Vault, encoded.
    pub(crate) async fn random(&self, bytes: u8, encoding: Encoding) -> Result<String, VaultError> {
        let action = "generate random bytes";
        let value = self
            .call(action, http::Method::POST, &format!("sys/tools/random/{bytes}"), Some(json!({ "format": encoding.as_str() })))
            .await?;
        value.pointer("/data/random_bytes").and_then(Value::as_str).map(str::to_owned).ok_or_else(|| VaultError::Invalid {
            what: format!("Vault's answer to {action} at {}", self.endpoint()),
            problem: "it holds no data.random_bytes".into(),
        })
    }

    /// `GET <path>`, `None` on 404.
    pub(crate) async fn read(&self, action: &str, path: &str) -> Result<Option<Value>, VaultError> {
        let response = self.send(action, http::Method::GET, path, None, None).await?;
        match response.status {
            404 => Ok(None),
            200..=299 => Ok(Some(self.decode(action, &response.body)?)),
            _ => Err(self.api_error(action, &response)),
        }
    }

    /// `POST <path>` with `body`; the answer's JSON (`Null` for 204).
    pub(crate) async fn write(&self, action: &str, path: &str, body: Value) -> Result<Value, VaultError> {
        self.call(action, http::Method::POST, path, Some(body)).await
    }

    /// The KV v2 secret at `path` of mount `mount`, `None` when there is none (or its
    /// latest version is deleted).
    pub(crate) async fn kv_read(&self, mount: &str, path: &str) -> Result<Option<KvSecret>, VaultError> {
        #[derive(Deserialize)]
        struct Metadata {
            version: u64,
        }
        #[derive(Deserialize)]
        struct Data {
            data: Option<BTreeMap<String, Value>>,
            metadata: Metadata,
        }
        #[derive(Deserialize)]
        struct Read {
            data: Data,
        }
        let action = format!("read {mount}/{path}");
        let Some(value) = self.read(&action, &format!("{mount}/data/{path}")).await? else { return Ok(None) };
        let read: Read = self.decode_value(&action, value)?;
        let Some(data) = read.data.data else { return Ok(None) };
        // Seeded values are strings; a value of another type (written by hand) is kept
        // as its JSON text so that it is seen as existing and never overwritten.
        let data = data.into_iter().map(|(k, v)| (k, v.as_str().map_or_else(|| v.to_string(), str::to_owned))).collect();
        Ok(Some(KvSecret { data, version: read.data.metadata.version }))
    }

    /// Writes the KV v2 secret at `path` of mount `mount` with check-and-set: a new
    /// secret (`cas` 0) holds exactly `data`; an existing one at version `cas` gets
    /// `data` merged in (`PATCH`, as `vault kv patch`). A concurrent writer makes the
    /// write fail instead of being overwritten.
    pub(crate) async fn kv_write(&self, mount: &str, path: &str, data: &BTreeMap<String, String>, cas: u64) -> Result<(), VaultError> {
        let body = json!({ "data": data, "options": { "cas": cas } });
        let api_path = format!("{mount}/data/{path}");
        let (action, method, content_type) = if cas == 0 {
            (format!("create {mount}/{path}"), http::Method::POST, JSON)
        } else {
            (format!("patch {mount}/{path}"), http::Method::PATCH, MERGE_PATCH)
        };
        let response = self.send(&action, method, &api_path, Some(body), Some(content_type)).await?;
        if (200..=299).contains(&response.status) { Ok(()) } else { Err(self.api_error(&action, &response)) }
    }

    /// The KV v2 secret at `path` of the `secret/` mount, as strings; `None` when there
    /// is none. Needs a token that may read it.
    pub async fn kv_get(&self, path: &str) -> Result<Option<BTreeMap<String, String>>, VaultError> {
        if !idp_core::secrets::is_plain_path(path) {
            return Err(VaultError::Invalid { what: format!("the KV path {path:?}"), problem: "it is not a plain Vault path".into() });
        }
        Ok(self.kv_read(idp_core::secrets::KV_MOUNT, path).await?.map(|s| s.data))
    }

    /// Logs in at `auth/kubernetes/login` with `role` and a service-account token
    /// `jwt`; the Vault token it hands out. A refused login is [`VaultError::Api`]
    /// (403 with Vault's reason).
    pub async fn kubernetes_login(&self, role: &str, jwt: &str) -> Result<String, VaultError> {
        let action = format!("log in with role {role}");
        let path = format!("auth/{}/login", idp_core::secrets::KUBERNETES_AUTH_MOUNT);
        let value = self.call(&action, http::Method::POST, &path, Some(json!({ "role": role, "jwt": jwt }))).await?;
        value.pointer("/auth/client_token").and_then(Value::as_str).map(str::to_owned).ok_or_else(|| VaultError::Invalid {
            what: format!("Vault's answer to {action} at {}", self.endpoint()),
            problem: "it holds no auth.client_token".into(),
        })
    }

    /// One request whose answer must be 2xx; its JSON (`Null` when empty).
    async fn call(&self, action: &str, method: http::Method, path: &str, body: Option<Value>) -> Result<Value, VaultError> {
        let content_type = body.as_ref().map(|_| JSON);
        let response = self.send(action, method, path, body, content_type).await?;
        if !(200..=299).contains(&response.status) {
            return Err(self.api_error(action, &response));
        }
        if response.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        self.decode(action, &response.body)
    }

    async fn send(
        &self,
        action: &str,
        method: http::Method,
        path: &str,
        body: Option<Value>,
        content_type: Option<&'static str>,
    ) -> Result<Response, VaultError> {
        let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let request = Request { method, path: path.to_owned(), token: self.token.clone(), content_type, body };
        self.transport.send(request).await.map_err(|source| VaultError::Transport {
            action: action.to_owned(),
            endpoint: self.endpoint().to_owned(),
            detail: chain(source.as_ref()),
            source,
        })
    }

    fn decode<T: serde::de::DeserializeOwned>(&self, action: &str, body: &[u8]) -> Result<T, VaultError> {
        serde_json::from_slice(body).map_err(|source| VaultError::Decode {
            action: action.to_owned(),
            endpoint: self.endpoint().to_owned(),
            source,
        })
    }

    fn decode_value<T: serde::de::DeserializeOwned>(&self, action: &str, value: Value) -> Result<T, VaultError> {
        serde_json::from_value(value).map_err(|source| VaultError::Decode {
            action: action.to_owned(),
            endpoint: self.endpoint().to_owned(),
            source,
        })
    }

    fn api_error(&self, action: &str, response: &Response) -> VaultError {
        VaultError::Api {
            action: action.to_owned(),
            endpoint: self.endpoint().to_owned(),
            status: response.status,
            errors: errors_of(&response.body),
        }
    }
}

/// Vault's `errors` of an error answer; the body itself (shortened) when it has none.
fn errors_of(body: &[u8]) -> Vec<String> {
    if let Ok(errors) = serde_json::from_slice::<Errors>(body)
        && !errors.errors.is_empty()
    {
        return errors.errors;
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() || text.starts_with('{') {
        return Vec::new();
    }
    vec![text.chars().take(200).collect()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_vaults_own_words() {
        assert_eq!(errors_of(br#"{"errors":["permission denied"]}"#), ["permission denied"]);
        assert_eq!(errors_of(br#"{"errors":[]}"#), Vec::<String>::new());
        assert_eq!(errors_of(b"upstream connect error\n"), ["upstream connect error"]);
        assert_eq!(errors_of(b""), Vec::<String>::new());
    }

    #[test]
    fn ready_means_initialised_and_unsealed() {
        let health = |initialized, sealed| Health { initialized, sealed, standby: false, version: String::new() };
        assert!(health(true, false).is_ready());
        assert!(!health(true, true).is_ready());
        assert!(!health(false, true).is_ready());
        assert_eq!(health(true, true).child().reason, "Vault is sealed");
        assert_eq!(health(true, true).describe(), "sealed");
    }
}
