//! The Alertmanager webhook receiver: Alertmanager's `webhook_configs` POST their
//! notifications (version 4 JSON) here, and the alerts run the playbooks whose `alert`
//! triggers match them. A constructor only: the daemon binds the socket (on the lab
//! network's gateway address, `watchdog.receiver_port`) and serves connections with
//! hyper, as it does every server.
//!
//! | request          | answer                                                        |
//! | ---------------- | ------------------------------------------------------------- |
//! | `POST /alerts`   | 200 at once, with what was decided for each matching playbook (the runs go on in the background); 400 with the reason for a body that is not Alertmanager's webhook JSON; 413 for one over 4 MiB |
//! | `GET /healthz`   | 200 and the playbooks that take alerts                        |
//! | anything else    | 404 (405 for a known path with another method)               |
//!
//! The answer does not wait for the actions: Alertmanager times a webhook out (and
//! retries it) while a playbook may take minutes. A retried notification is harmless:
//! an alert still firing runs a playbook once.

use crate::playbook::{Alert, Cause, Engine, Executor, Verdict};
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::{Body, Bytes};
use idp_core::config::Trigger;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// The largest notification accepted.
pub const MAX_BODY: usize = 4 << 20;

/// The path Alertmanager's `webhook_configs[].url` names.
pub const ALERTS_PATH: &str = "/alerts";

/// A notification of Alertmanager's webhook (`version: "4"`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    /// The webhook format's version: `4`.
    pub version: String,
    /// The key of the alert group.
    #[serde(default)]
    pub group_key: String,
    /// How many alerts were left out (`max_alerts`).
    #[serde(default)]
    pub truncated_alerts: u64,
    /// `firing` when any alert of the group fires, else `resolved`.
    pub status: String,
    /// The receiver's name in Alertmanager's configuration.
    #[serde(default)]
    pub receiver: String,
    /// The labels the group is made by.
    #[serde(default)]
    pub group_labels: BTreeMap<String, String>,
    /// The labels all its alerts share.
    #[serde(default)]
    pub common_labels: BTreeMap<String, String>,
    /// The annotations all its alerts share.
    #[serde(default)]
    pub common_annotations: BTreeMap<String, String>,
    /// Alertmanager's own URL.
    #[serde(default, rename = "externalURL")]
    pub external_url: String,
    /// The alerts.
    pub alerts: Vec<Alert>,
}

impl Notification {
    /// Parses a notification; the error says where and what is wrong.
    pub fn parse(body: &[u8]) -> Result<Notification, String> {
        // serde_json's message ends with the line and column.
        let n: Notification = serde_json::from_slice(body).map_err(|e| format!("the body is not Alertmanager's webhook JSON: {e}"))?;
        if n.version != "4" {
            return Err(format!("webhook version {:?} is not supported: Alertmanager 0.16 and later send version \"4\"", n.version));
        }
        Ok(n)
    }
}

/// The receiver's service: cheap to clone, one per connection.
pub struct Receiver<E> {
    engine: Arc<Engine<E>>,
}

impl<E> Clone for Receiver<E> {
    fn clone(&self) -> Self {
        Receiver { engine: self.engine.clone() }
    }
}

impl<E> std::fmt::Debug for Receiver<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver").field("engine", &self.engine).finish()
    }
}

/// The receiver for `engine`'s playbooks: a hyper service for the daemon to serve on the
/// socket it binds (`hyper::server::conn::http1::Builder::serve_connection`).
pub fn router<E: Executor>(engine: Arc<Engine<E>>) -> Receiver<E> {
    Receiver { engine }
}

impl<E: Executor> Receiver<E> {
    /// The answer to one request (the receiver's whole behaviour, testable without a
    /// socket). The runs of a notification are spawned on the tokio runtime.
    pub fn answer(&self, method: &Method, path: &str, body: &[u8]) -> (StatusCode, String) {
        match (method, path) {
            (&Method::POST, ALERTS_PATH) => self.alerts(body),
            (&Method::GET, "/healthz") => {
                let names: Vec<&str> = self
                    .engine
                    .playbooks()
                    .iter()
                    .filter(|p| p.triggers.iter().any(|t| matches!(t, Trigger::Alert { .. })))
                    .map(|p| p.name.as_str())
                    .collect();
                (StatusCode::OK, serde_json::json!({ "playbooks": names }).to_string())
            }
            (_, ALERTS_PATH | "/healthz") => (StatusCode::METHOD_NOT_ALLOWED, error("method not allowed")),
            _ => (StatusCode::NOT_FOUND, error(&format!("not found: Alertmanager posts to {ALERTS_PATH}"))),
        }
    }

    fn alerts(&self, body: &[u8]) -> (StatusCode, String) {
        let notification = match Notification::parse(body) {
            Ok(n) => n,
            Err(message) => return (StatusCode::BAD_REQUEST, error(&message)),
        };
        let mut decided = Vec::new();
        let mut runs = Vec::new();
        for alert in notification.alerts {
            let fingerprint = alert.fingerprint.clone();
            for d in self.engine.decide(&Cause::Alert(alert)) {
                decided.push(serde_json::json!({ "fingerprint": fingerprint, "playbook": d.playbook.name, "verdict": d.verdict }));
                if matches!(d.verdict, Verdict::Run | Verdict::DryRun) {
                    runs.push(d);
                }
            }
        }
        if !runs.is_empty() {
            let engine = self.engine.clone();
            tokio::spawn(async move {
                for d in runs {
                    engine.execute(&d).await;
                }
            });
        }
        (StatusCode::OK, serde_json::json!({ "decided": decided }).to_string())
    }
}

fn error(message: &str) -> String {
    serde_json::json!({ "error": message }).to_string()
}

impl<E, B> hyper::service::Service<Request<B>> for Receiver<E>
where
    E: Executor,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, request: Request<B>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let (status, text) = match Limited::new(body, MAX_BODY).collect().await {
                Ok(collected) => this.answer(&parts.method, parts.uri.path(), &collected.to_bytes()),
                Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
                    (StatusCode::PAYLOAD_TOO_LARGE, error(&format!("a notification may have at most {MAX_BODY} bytes")))
                }
                Err(e) => (StatusCode::BAD_REQUEST, error(&format!("the body broke off: {e}"))),
            };
            let mut response = Response::new(Full::new(Bytes::from(text)));
            *response.status_mut() = status;
            response.headers_mut().insert(header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{History, Retention};
    use crate::playbook::Unavailable;
    use idp_core::config::{Action, Playbook, RateLimit};

    fn receiver() -> (tempfile::TempDir, Receiver<Unavailable>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let history = Arc::new(History::open(&dir.path().join("h.sled"), Retention::default()).expect("history"));
        let playbook = Playbook {
            name: "es".into(),
            triggers: vec![Trigger::Alert { labels: [("slo".to_owned(), "x".to_owned())].into() }],
            actions: vec![Action::UnsealVault],
            rate_limit: RateLimit { runs: 1, per: 600 },
            cooldown: 0,
            dry_run: true,
        };
        let heal = idp_core::config::builtin_playbooks().remove(1);
        (dir, router(Arc::new(Engine::new(vec![playbook, heal], history, Unavailable))))
    }

    #[tokio::test]
    async fn bad_bodies_get_400_with_the_reason() {
        let (_dir, r) = receiver();
        let (status, body) = r.answer(&Method::POST, "/alerts", b"{\"version\":\"4\",");
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body.contains("not Alertmanager's webhook JSON: EOF while parsing a value at line 1 column 15"), "{body}");
        let (status, body) = r.answer(&Method::POST, "/alerts", br#"{"version":"3","status":"firing","alerts":[]}"#);
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body.contains("version \\\"3\\\" is not supported"), "{body}");
        let (status, body) = r.answer(&Method::POST, "/alerts", br#"{"version":"4","status":"firing","alerts":[{"labels":{}}]}"#);
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body.contains("missing field `status`"), "{body}");
        assert_eq!(r.answer(&Method::GET, "/alerts", b"").0, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.answer(&Method::POST, "/", b"").0, StatusCode::NOT_FOUND);
        let (status, body) = r.answer(&Method::GET, "/healthz", b"");
        assert_eq!((status, body.as_str()), (StatusCode::OK, r#"{"playbooks":["es"]}"#), "only playbooks that take alerts");
    }

    #[tokio::test]
    async fn alerts_are_decided_at_once() {
        let (_dir, r) = receiver();
        let body = br#"{"version":"4","status":"firing","receiver":"idp-lab","alerts":[
            {"status":"firing","labels":{"slo":"x","alertname":"A"},"fingerprint":"f1"},
            {"status":"firing","labels":{"slo":"y"},"fingerprint":"f2"},
            {"status":"firing","labels":{"slo":"x","alertname":"B"},"fingerprint":"f3"}]}"#;
        let (status, text) = r.answer(&Method::POST, "/alerts", body);
        assert_eq!(status, StatusCode::OK, "{text}");
        let json: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(
            json["decided"],
            serde_json::json!([
                {"fingerprint": "f1", "playbook": "es", "verdict": "dry-run"},
                {"fingerprint": "f3", "playbook": "es", "verdict": "rate-limited"}
            ])
        );
        let (_, text) = r.answer(&Method::POST, "/alerts", body);
        assert!(text.contains(r#""verdict":"duplicate""#), "{text}");
    }
}
