//! The Alertmanager webhook receiver against a real Alertmanager (Debian's
//! `prometheus-alertmanager` 0.25).
//!
//! The test plays the daemon: it binds the receiver on a free loopback port and serves it
//! with hyper, runs a tiny HTTP sink for the playbook's `webhook` action, and starts
//! Alertmanager with a route whose `webhook_configs` URL is the receiver. Alerts are posted
//! to Alertmanager's own API (`POST /api/v2/alerts`); Alertmanager groups them (by
//! `instance`, so each alert is its own notification) and delivers them.
//!
//! The playbook (alert `slo=externalsecrets-sync-success`, rate limit 1 per 10 minutes)
//! runs once: a refresh through the test's executor, which records the call, and a POST to
//! the sink. A second alert within the window is rate-limited: recorded, nothing done.
//! Both are in the history with their trigger and results, and Alertmanager's own metrics
//! show its webhook deliveries succeeded.
//!
//! Without `prometheus-alertmanager` the test is skipped loudly; with `CI=true` it fails.

use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use idp_core::config::{Action, NamespacedName, Playbook, RateLimit, Trigger};
use idp_watchdog::history::{EventKind, History, Retention};
use idp_watchdog::playbook::{ActionError, ActionResult, Cause, Engine, Executor, Run, RunStatus};
use idp_watchdog::router;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

use idp_test::testbed::{in_ci, report_skip};

fn find(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(tool)).find(|p| p.is_file())
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The test's executor: records every action it is asked to do.
#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<String>>,
}

impl Executor for Recorder {
    async fn execute(&self, action: &Action, _cause: &Cause) -> Result<String, ActionError> {
        self.calls.lock().map_err(|e| e.to_string())?.push(action.describe());
        Ok(format!("did {}", action.describe()))
    }
}

/// What the webhook sink received.
type Posts = Arc<Mutex<Vec<Value>>>;

/// Serves `service` on `listener` until the test ends.
fn serve<S>(listener: TcpListener, service: S)
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<Full<Bytes>>, Error = std::convert::Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let service = service.clone();
            tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service));
        }
    });
}

/// A sink that records each POSTed JSON body and answers 200.
async fn sink() -> anyhow::Result<(String, Posts)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hooks/idp-lab", listener.local_addr()?);
    let posts: Posts = Arc::default();
    let recorded = posts.clone();
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let recorded = recorded.clone();
        async move {
            let body = request.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            recorded.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(value);
            Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
        }
    });
    serve(listener, service);
    Ok((url, posts))
}

async fn http(method: Method, url: &str, body: &str) -> anyhow::Result<(StatusCode, String)> {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let request = Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_owned())))?;
    let response = tokio::time::timeout(Duration::from_secs(10), client.request(request)).await??;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn runs(history: &History) -> anyhow::Result<Vec<Run>> {
    let events = history.latest(1000)?;
    let mut out = Vec::new();
    for e in events.iter().filter(|e| e.kind == EventKind::PlaybookRun) {
        anyhow::ensure!(e.subject.starts_with("playbook "), "{e:?}");
        out.push(serde_json::from_value(e.body.clone())?);
    }
    Ok(out)
}

async fn wait_for<T>(what: &str, log: &Path, mut probe: impl FnMut() -> anyhow::Result<Option<T>>) -> anyhow::Result<T> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(found) = probe()? {
            return Ok(found);
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            anyhow::bail!("{what} did not happen within 30 s; Alertmanager's log:\n{log}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn playbooks(sink: &str) -> Vec<Playbook> {
    let alert = |slo: &str| Trigger::Alert { labels: [("slo".to_owned(), slo.to_owned())].into() };
    vec![
        Playbook {
            name: "externalsecrets-resync".into(),
            triggers: vec![alert("externalsecrets-sync-success")],
            actions: vec![
                Action::RefreshExternalSecret {
                    external_secret: NamespacedName { namespace: "apps".into(), name: "db-credentials".into() },
                },
                Action::Webhook { url: sink.to_owned(), timeout: 5 },
            ],
            rate_limit: RateLimit { runs: 1, per: 600 },
            cooldown: 0,
            dry_run: false,
        },
        // Matches no alert of this test: it must never run.
        Playbook {
            name: "other-slo".into(),
            triggers: vec![alert("api-latency")],
            actions: vec![Action::UnsealVault],
            rate_limit: RateLimit { runs: 5, per: 600 },
            cooldown: 0,
            dry_run: false,
        },
    ]
}

fn alert_json(instance: &str) -> String {
    json!([{
        "labels": {"alertname": "ExternalSecretsSyncFailing", "slo": "externalsecrets-sync-success", "severity": "critical", "instance": instance},
        "annotations": {"summary": "ExternalSecrets are failing to sync"},
    }])
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_alertmanager_runs_the_matching_playbook_once() -> anyhow::Result<()> {
    let Some(alertmanager) = find("prometheus-alertmanager").or_else(|| find("alertmanager")) else {
        let reason = "prometheus-alertmanager not on PATH (apt-get install prometheus-alertmanager)";
        assert!(!in_ci(), "CI=true and {reason}");
        report_skip("a_real_alertmanager_runs_the_matching_playbook_once", reason);
        return Ok(());
    };
    let dir = tempfile::tempdir()?;

    // The daemon's part: history, engine, receiver on a free loopback port.
    let (sink_url, posts) = sink().await?;
    let history = Arc::new(History::open(&dir.path().join("watchdog.sled"), Retention::default())?);
    let engine = Arc::new(Engine::new(playbooks(&sink_url), history.clone(), Recorder::default()));
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let receiver_url = format!("http://{}/alerts", listener.local_addr()?);
    serve(listener, router(engine.clone()));

    // Bad JSON is a 400 with the reason, and runs nothing.
    let (status, body) = http(Method::POST, &receiver_url, "{\"alerts\": [").await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("not Alertmanager's webhook JSON"), "{body}");

    // A real Alertmanager, routing every alert to the receiver with short group timers.
    let config = dir.path().join("alertmanager.yml");
    std::fs::write(
        &config,
        format!(
            "route:\n  receiver: idp-lab\n  group_by: [alertname, instance]\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\n\
             receivers:\n  - name: idp-lab\n    webhook_configs:\n      - url: {receiver_url}\n        send_resolved: true\n"
        ),
    )?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let am = format!("http://127.0.0.1:{port}");
    let log_path = dir.path().join("alertmanager.log");
    let _alertmanager = Killed(
        Command::new(&alertmanager)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", dir.path().join("am-data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path)?)
            .spawn()?,
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !matches!(http(Method::GET, &format!("{am}/-/ready"), "").await, Ok((StatusCode::OK, _))) {
        anyhow::ensure!(Instant::now() < deadline, "Alertmanager did not become ready: {}", std::fs::read_to_string(&log_path)?);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The test alert: the playbook runs once, both of its actions.
    let (status, body) = http(Method::POST, &format!("{am}/api/v2/alerts"), &alert_json("a")).await?;
    anyhow::ensure!(status == StatusCode::OK, "Alertmanager refused the alert: {status} {body}");
    let first =
        wait_for("the playbook run", &log_path, || Ok(runs(&history)?.into_iter().find(|r| r.status != RunStatus::RateLimited))).await?;
    assert_eq!(first.playbook, "externalsecrets-resync");
    assert_eq!(first.status, RunStatus::Ok, "{first:#?}");
    let Cause::Alert(alert) = &first.trigger else { anyhow::bail!("the trigger is not the alert: {first:#?}") };
    assert_eq!(alert.labels.get("slo").map(String::as_str), Some("externalsecrets-sync-success"));
    assert_eq!(alert.labels.get("instance").map(String::as_str), Some("a"));
    assert_eq!(alert.annotations.get("summary").map(String::as_str), Some("ExternalSecrets are failing to sync"));
    assert!(alert.firing() && !alert.fingerprint.is_empty() && !alert.starts_at.is_empty(), "{alert:?}");
    assert_eq!(
        first.actions.iter().map(|a| (a.action.as_str(), a.result)).collect::<Vec<_>>(),
        [("refresh-external-secret", ActionResult::Ok), ("webhook", ActionResult::Ok)]
    );
    assert_eq!(first.actions[1].detail, format!("POST {sink_url}: HTTP 200"));
    assert_eq!(engine.executor().calls.lock().map_err(|e| anyhow::anyhow!("{e}"))?.clone(), ["refresh ExternalSecret apps/db-credentials"]);
    {
        let posted = posts.lock().map_err(|e| anyhow::anyhow!("{e}"))?;
        assert_eq!(posted.len(), 1, "{posted:?}");
        assert_eq!(posted[0]["playbook"], "externalsecrets-resync");
        assert_eq!(posted[0]["trigger"]["on"], "alert");
        assert_eq!(posted[0]["trigger"]["labels"]["slo"], "externalsecrets-sync-success");
        assert_eq!(posted[0]["trigger"]["fingerprint"], alert.fingerprint.as_str());
    }

    // A repeat within the rate limit (another instance: its own notification) is recorded
    // as rate-limited and does nothing. The first alert posted again is the same alert to
    // Alertmanager, which does not notify again before repeat_interval.
    for instance in ["b", "a"] {
        let (status, body) = http(Method::POST, &format!("{am}/api/v2/alerts"), &alert_json(instance)).await?;
        anyhow::ensure!(status == StatusCode::OK, "Alertmanager refused the alert: {status} {body}");
    }
    let limited =
        wait_for("the rate-limited repeat", &log_path, || Ok(runs(&history)?.into_iter().find(|r| r.status == RunStatus::RateLimited)))
            .await?;
    assert_eq!(limited.playbook, "externalsecrets-resync");
    assert!(limited.actions.is_empty());
    let Cause::Alert(repeat) = &limited.trigger else { anyhow::bail!("the trigger is not the alert: {limited:#?}") };
    assert_eq!(repeat.labels.get("instance").map(String::as_str), Some("b"));
    // Let Alertmanager's group timers go round a few times: still one run.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let all = runs(&history)?;
    let summary: Vec<(&str, RunStatus)> = all.iter().map(|r| (r.playbook.as_str(), r.status)).collect();
    assert_eq!(summary, [("externalsecrets-resync", RunStatus::Ok), ("externalsecrets-resync", RunStatus::RateLimited)], "{all:#?}");
    assert_eq!(posts.lock().map_err(|e| anyhow::anyhow!("{e}"))?.len(), 1, "the webhook ran once");
    assert_eq!(engine.executor().calls.lock().map_err(|e| anyhow::anyhow!("{e}"))?.len(), 1, "the executor ran once");

    // Alertmanager itself saw its webhook deliveries succeed.
    let (_, metrics) = http(Method::GET, &format!("{am}/metrics"), "").await?;
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name) && l.contains("integration=\"webhook\""))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(-1.0)
    };
    let (sent, failed) = (value("alertmanager_notifications_total"), value("alertmanager_notifications_failed_total"));
    assert!(sent >= 2.0 && failed == 0.0, "Alertmanager's webhook notifications: {sent} sent, {failed} failed");
    eprintln!("Alertmanager delivered {sent} notifications, {failed} failed; history: {summary:?}");
    Ok(())
}
