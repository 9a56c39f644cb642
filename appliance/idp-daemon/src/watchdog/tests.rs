//! The daemon's watchdog on a stand-in gateway address (127.0.0.1, recorded as `up`
//! records the real one): the receiver starts once the network is recorded, an alert
//! posted in Alertmanager's webhook JSON (curl) runs the matching playbook, the run is in
//! the history `/history` reads, the history survives a restart, and a second process
//! on the same store gets a clear error instead of the daemon failing.

use super::*;
use idp_core::config::{self, FileKind};
use std::net::Ipv4Addr;
use std::process::Command;

const CONFIG: &str = r#"
[watchdog]
history_size = "1m"

[[watchdog.playbooks]]
name = "note-it"
triggers = [{ on = "alert", labels = { slo = "externalsecrets-sync-success" } }]
actions = [{ do = "refresh-external-secret", external_secret = "apps/db" }]
dry_run = true
"#;

fn plan(port: u16) -> WatchdogPlan {
    let file = config::parse_file(CONFIG, "idp-lab.toml", FileKind::Config, &[]).expect("valid config");
    let c = config::resolve(&[&config::defaults(), &file.layer]).expect("resolves");
    WatchdogPlan { settings: WatchdogSettings::from_config(&c.watchdog).expect("settings"), receiver_port: port }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

/// POSTs `body` to the receiver with curl: the status and the answer.
fn post(port: u16, body: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "5", "-o", "-", "-w", "\n%{http_code}", "-H", "Content-Type: application/json", "--data-binary", body])
        .arg(format!("http://127.0.0.1:{port}/alerts"))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (answer, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), answer.to_owned())
}

const ALERT: &str = r#"{"version":"4","groupKey":"{}:{}","status":"firing","receiver":"idp-lab","groupLabels":{},"commonLabels":{},"commonAnnotations":{},"externalURL":"http://alertmanager","alerts":[{"status":"firing","labels":{"alertname":"SLOBurn","slo":"externalsecrets-sync-success"},"annotations":{},"startsAt":"2026-12-01T17:00:00Z","endsAt":"0001-01-01T00:00:00Z","generatorURL":"","fingerprint":"0123456789abcdef"}]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_runs_its_playbook_into_the_history_which_survives_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let shutdown = CancellationToken::new();
    let watchdog = LabWatchdog::open(dir.path(), "lab", plan(port), shutdown.child_token()).await;
    assert!(watchdog.history.is_ok(), "{:?}", watchdog.history.as_ref().err());
    assert!(watchdog.ensure_started().await.is_empty());
    assert!(watchdog.listeners().await.is_empty(), "nothing before the network exists");
    crate::write_network(dir.path(), IpAddr::V4(Ipv4Addr::LOCALHOST)).expect("record");
    assert!(watchdog.ensure_started().await.is_empty());
    let listeners = watchdog.listeners().await;
    assert_eq!(
        listeners.iter().map(|l| (l.name.as_str(), l.address.clone())).collect::<Vec<_>>(),
        [("alerts", format!("127.0.0.1:{port}"))]
    );

    let (status, answer) = tokio::task::spawn_blocking(move || post(port, ALERT)).await.expect("curl");
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = tokio::task::spawn_blocking(move || post(port, "{not json")).await.expect("curl");
    assert_eq!(status, 400, "bad JSON is refused: {answer}");

    // The run is recorded (asynchronously, after the answer).
    let began = std::time::Instant::now();
    let runs = loop {
        let events = watchdog.since(SystemTime::UNIX_EPOCH).await.expect("history");
        let runs: Vec<Event> = events.into_iter().filter(|e| e.kind == idp_watchdog::EventKind::PlaybookRun).collect();
        if !runs.is_empty() || began.elapsed() > Duration::from_secs(10) {
            break runs;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert!(runs[0].subject.contains("note-it"), "{:?}", runs[0]);
    let body = runs[0].body.to_string();
    assert!(body.contains("externalsecrets-sync-success") && body.contains("dry"), "{body}");
    // Nothing later than now.
    let later = SystemTime::now() + Duration::from_secs(60);
    assert!(watchdog.since(later).await.expect("history").is_empty());

    // A second process on the same store: a clear error, not a failed daemon.
    let second = LabWatchdog::open(dir.path(), "lab", plan(free_port()), CancellationToken::new()).await;
    let error = second.since(SystemTime::UNIX_EPOCH).await.expect_err("the store is held");
    assert!(error.contains(HISTORY_DIR), "names the store: {error}");
    assert!(second.ensure_started().await.is_empty() && second.listeners().await.is_empty(), "no receiver without a history");
    drop(second);

    shutdown.cancel();
    watchdog.stopped().await;
    drop(watchdog);
    let reopened = LabWatchdog::open(dir.path(), "lab", plan(free_port()), CancellationToken::new()).await;
    let events = reopened.since(SystemTime::UNIX_EPOCH).await.expect("history after a restart");
    assert_eq!(events.iter().filter(|e| e.kind == idp_watchdog::EventKind::PlaybookRun).count(), 1, "{events:?}");
}
