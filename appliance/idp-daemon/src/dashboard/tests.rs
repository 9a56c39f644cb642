//! The daemon's dashboard on loopback with its watchdog's real history: the token file,
//! the API behind it (curl), the health of what the daemon serves, and `auto`'s port.

use super::*;
use idp_core::config::{self, FileKind};
use idp_core::settings::WatchdogSettings;
use idp_watchdog::{Event, EventKind};
use std::os::unix::fs::PermissionsExt as _;
use std::process::Command;
use std::time::{Duration, SystemTime};

fn plan(dashboard_port: PortSetting) -> WatchdogPlan {
    let c = config::resolve(&[&config::defaults()]).expect("resolves");
    let mut settings = WatchdogSettings::from_config(&c.watchdog).expect("settings");
    assert_eq!(settings.dashboard_port, PortSetting::Auto, "auto by default");
    settings.dashboard_port = dashboard_port;
    WatchdogPlan { settings, receiver_port: 0 }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

/// GETs `url` with curl, with `headers`: the status and the body.
fn get(url: &str, headers: &[&str]) -> (u16, String) {
    let mut command = Command::new("curl");
    command.args(["-sS", "--max-time", "5", "-w", "\n%{http_code}"]);
    for h in headers {
        command.args(["-H", h]);
    }
    let out = command.arg(url).output().expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

#[test]
fn a_fixed_port_is_taken_from_the_settings() -> Result<(), Box<dyn std::error::Error>> {
    let c = config::resolve(&[
        &config::defaults(),
        &config::parse_file("[watchdog]\ndashboard_port = 9300\n", "idp-lab.toml", FileKind::Config, &[])?.layer,
    ])?;
    assert_eq!(WatchdogSettings::from_config(&c.watchdog)?.dashboard_port, PortSetting::Fixed(9300));
    let bad = config::parse_file("[watchdog]\ndashboard_port = \"high\"\n", "idp-lab.toml", FileKind::Config, &[]);
    assert!(bad.is_err(), "not a port");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_serves_the_watchdog_behind_its_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let plan = plan(PortSetting::Fixed(port));
    let shutdown = CancellationToken::new();
    let watchdog = Arc::new(LabWatchdog::open(dir.path(), "lab", plan.clone(), shutdown.child_token()).await);
    let history = watchdog.history().expect("history");
    let sample = idp_watchdog::SloSample {
        slo: "monitoring/api".into(),
        burn: [("5m".to_owned(), Some(2.0)), ("1h".to_owned(), Some(1.5))].into(),
        budget_remaining: Some(0.9),
        firing: Vec::new(),
        objective: Some(99.0),
    };
    history.record(&sample.event(SystemTime::now() - Duration::from_secs(30))).expect("record");
    history
        .record(&Event::new(SystemTime::now(), EventKind::Drift, "ConfigMap a/b", serde_json::json!({"event": "detected"})))
        .expect("record");

    assert!(bind(dir.path(), None).await.is_none(), "no dashboard with the watchdog off");
    let bound = bind(dir.path(), Some(&plan)).await.expect("bound");
    let listener = bound.listener();
    assert_eq!((listener.name.as_str(), listener.address.clone()), ("dashboard", format!("127.0.0.1:{port}")));
    let token_file = dir.path().join(idp_watchdog::dashboard::TOKEN_FILE);
    assert_eq!(std::fs::metadata(&token_file).expect("token file").permissions().mode() & 0o777, 0o600);
    let token = std::fs::read_to_string(&token_file).expect("token").trim().to_owned();
    // The same port again: held (by this daemon), a warning and no second dashboard.
    assert!(bind(dir.path(), Some(&plan)).await.is_none());

    let registry = Arc::new(LabRegistry::new(dir.path().to_path_buf(), None, None, shutdown.child_token()));
    let info = DaemonInfo { lab: "lab".into(), pid: 1, version: "0".into(), started: 0, listeners: vec![listener.clone()] };
    let server = tokio::spawn(serve(bound, Lab::new(watchdog.clone(), registry, info), shutdown.child_token()));

    let base = format!("http://127.0.0.1:{port}");
    let auth = format!("Authorization: Bearer {token}");
    let answers = tokio::task::spawn_blocking(move || {
        let health = get(&format!("{base}/api/v1/health"), &[]);
        let wrong = get(&format!("{base}/api/v1/health"), &["Authorization: Bearer nope"]);
        let right = get(&format!("{base}/api/v1/health"), &[&auth]);
        let slos = get(&format!("{base}/api/v1/slos"), &[&auth]);
        let playbooks = get(&format!("{base}/api/v1/playbooks"), &[&auth]);
        let drift = get(&format!("{base}/api/v1/drift"), &[&auth]);
        let metrics = get(&format!("{base}/metrics"), &[]);
        let page = get(&format!("{base}/"), &[]);
        (health, wrong, right, slos, playbooks, drift, metrics, page)
    })
    .await
    .expect("curl");
    let (health, wrong, right, slos, playbooks, drift, metrics, page) = answers;
    assert_eq!(health.0, 401, "{}", health.1);
    assert_eq!(wrong.0, 401, "{}", wrong.1);
    assert_eq!(right.0, 200, "{}", right.1);
    let h: serde_json::Value = serde_json::from_str(&right.1).expect("json");
    assert_eq!(h["lab"]["health"], "Healthy", "{h}");
    assert_eq!(h["components"][0]["name"], "daemon");
    assert_eq!(h["components"][0]["children"], 1, "its listener: {h}");
    assert_eq!(h["components"][1]["name"], "watchdog");
    assert_eq!(slos.0, 200, "{}", slos.1);
    assert!(slos.1.contains("monitoring/api"), "{}", slos.1);
    assert_eq!(playbooks.0, 200);
    for builtin in ["unseal-vault", "heal-drift", "start-node"] {
        assert!(playbooks.1.contains(builtin), "{}", playbooks.1);
    }
    assert_eq!((drift.0, drift.1.as_str()), (200, r#"{"objects":[],"stats":null}"#), "nothing watched");
    assert_eq!(metrics.0, 200);
    assert!(
        metrics.1.contains("idp_watchdog_history_up 1")
            && metrics.1.contains("idp_watchdog_slo_burn_rate{slo=\"monitoring/api\",window=\"5m\"} 2"),
        "{}",
        metrics.1
    );
    assert!(metrics.1.contains("idp_watchdog_health{component=\"watchdog\",health=\"Healthy\"} 1"), "{}", metrics.1);
    assert_eq!(page.0, 200);
    assert!(page.1.contains("idp-lab watchdog"));

    shutdown.cancel();
    let (name, result) = tokio::time::timeout(Duration::from_secs(5), server).await.expect("stops").expect("joins");
    assert_eq!(name, "dashboard");
    assert!(result.is_ok());
    watchdog.stopped().await;
}

#[tokio::test]
async fn auto_takes_the_next_free_port_and_keeps_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let held = std::net::TcpListener::bind("127.0.0.1:0").expect("hold a port");
    let taken = held.local_addr().expect("addr").port();
    let free = free_port();
    let listener = bind_auto(dir.path(), loopback, &[taken, free]).await.expect("binds the free one");
    assert_eq!(listener.local_addr().expect("addr").port(), free);
    assert_eq!(std::fs::read_to_string(dir.path().join(DASHBOARD_PORT_FILE)).expect("kept").trim(), free.to_string());
    // Next start: the kept port first.
    assert_eq!(auto_candidates(dir.path()).first(), Some(&free));
    assert_eq!(auto_candidates(dir.path()).iter().filter(|p| **p == free).count(), 1, "once");
    drop(listener);
    let all_held = bind_auto(dir.path(), loopback, &[taken]).await.expect_err("nothing free");
    assert!(all_held.to_string().contains("cannot listen for the watchdog's dashboard"), "{all_held}");
    // Without a kept port: 9096, then 9097-9195.
    let fresh = tempfile::tempdir().expect("tempdir");
    let candidates = auto_candidates(fresh.path());
    assert_eq!((candidates.first(), candidates.get(1), candidates.last(), candidates.len()), (Some(&9096), Some(&9097), Some(&9195), 100));
    std::fs::write(fresh.path().join(DASHBOARD_PORT_FILE), "not a port\n").expect("write");
    assert_eq!(auto_candidates(fresh.path()).first(), Some(&9096), "a file that does not read is passed over");
}
