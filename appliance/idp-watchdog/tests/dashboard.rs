//! The dashboard, its JSON API and `/metrics` on a real socket, with a real history (sled)
//! holding recorded drift events, SLO samples and playbook runs, and a drift snapshot with a
//! drifted ConfigMap. The test plays the daemon: it binds a free loopback port and serves
//! [`idp_watchdog::dashboard::router`] with hyper. Then, with real clients:
//!
//! - `curl`: `/api/v1/drift` without the token and with a wrong one is 401, with the right
//!   one 200 with the object; every API path answers;
//! - Debian's `promtool check metrics` passes `/metrics` (the Prometheus text format), which
//!   has the drift gauge; a real Prometheus (Debian's 2.42) scrapes it (OpenMetrics, as it
//!   asks) and answers the drift gauge and a burn rate from its own API;
//! - headless Chromium loads `/?token=...`: the rendered DOM has the drifted object and an
//!   SVG chart per SLO; the screenshot is kept as `watchdog-dashboard.png` in
//!   `$IDP_LAB_ARTIFACTS` (default `~/.cache/idp-lab/artifacts`). Without the token (and with
//!   a wrong one) the page says it needs one and shows no data.
//!
//! Without `curl`, `promtool`/`prometheus` or `chromium` the test is skipped loudly; with
//! `CI=true` it fails.

use hyper_util::rt::TokioIo;
use idp_core::health::{self, Child, Health};
use idp_watchdog::dashboard::{Snapshot, router};
use idp_watchdog::drift::{DriftEvent, DriftField, DriftState, DriftStats, ObjectDrift, Policy};
use idp_watchdog::history::{Event, EventKind, History, Retention};
use idp_watchdog::playbook::{Cause, Run, RunStatus};
use idp_watchdog::{Prometheus, SloSample, load_or_create_token};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child as Process, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;

use idp_test::testbed::{in_ci, report_skip};

fn find(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(tool)).find(|p| p.is_file())
}

struct Killed(Process);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const OBJECT: &str = "ConfigMap shop/settings";

fn drifted(now: SystemTime) -> ObjectDrift {
    ObjectDrift {
        component: "shop".into(),
        object: OBJECT.into(),
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        namespace: "shop".into(),
        name: "settings".into(),
        exists: true,
        fields: vec![DriftField {
            path: "data.mode".into(),
            live: Some(json!("slow")),
            desired: Some(json!("fast")),
            manager: Some("kubectl-edit".into()),
            evidence: None,
            report_only: false,
        }],
        manager: Some("kubectl-edit".into()),
        detected_at: now,
        since: now - Duration::from_secs(40),
        state: DriftState::Contested,
        policy: Policy::Heal,
        heals: 3,
        contested: vec![idp_watchdog::drift::Contest { path: "data.mode".into(), manager: "kubectl-edit".into(), reverts: 3 }],
    }
}

/// A history with an hour of SLO samples (a clean SLO and a fast burn), drift events and
/// playbook runs, the newest a minute ago.
fn record(history: &History, now: SystemTime) -> anyhow::Result<()> {
    for i in 0..60u32 {
        let at = now - Duration::from_secs(u64::from(60 - i) * 60);
        let f = f64::from(i);
        let clean = SloSample {
            slo: "monitoring/api-availability".into(),
            burn: [("5m", 0.2 + 0.01 * f), ("1h", 0.3), ("30m", 0.25), ("6h", 0.3)]
                .iter()
                .map(|(w, b)| ((*w).to_owned(), Some(*b)))
                .collect(),
            budget_remaining: Some(0.95 - 0.0001 * f),
            firing: Vec::new(),
            objective: Some(99.9),
        };
        history.record(&clean.event(at))?;
        // The fast burn starts 20 minutes before the end.
        let burning = i >= 40;
        let fast = SloSample {
            slo: "monitoring/externalsecrets-sync-success".into(),
            burn: [
                ("5m", if burning { 16.0 + f / 10.0 } else { 0.5 }),
                ("1h", if burning { 4.0 + (f - 40.0) * 0.6 } else { 0.4 }),
                ("30m", if burning { 9.0 } else { 0.4 }),
                ("6h", if burning { 2.0 } else { 0.4 }),
            ]
            .iter()
            .map(|(w, b)| ((*w).to_owned(), Some(*b)))
            .chain([("3d".to_owned(), None)])
            .collect(),
            budget_remaining: Some(if burning { 0.8 - (f - 40.0) * 0.02 } else { 0.8 }),
            firing: if i >= 55 { vec!["1h/5m".into()] } else { Vec::new() },
            objective: Some(99.5),
        };
        history.record(&fast.event(at))?;
    }
    let detected = DriftEvent::Detected(drifted(now - Duration::from_secs(40)));
    history.record(&Event::new(now - Duration::from_secs(40), EventKind::Drift, OBJECT, serde_json::to_value(&detected)?))?;
    for (ago, status) in [(600, RunStatus::Ok), (300, RunStatus::Ok), (120, RunStatus::RateLimited)] {
        let at_ms = u64::try_from((now - Duration::from_secs(ago)).duration_since(UNIX_EPOCH)?.as_millis())?;
        let run = Run {
            playbook: "heal-drift".into(),
            status,
            trigger: Cause::Drift { component: "shop".into(), object: "ConfigMap/shop/settings".into(), fields: vec!["data.mode".into()] },
            actions: Vec::new(),
            at_ms,
            duration_ms: 12,
        };
        history.record(&run.event())?;
    }
    Ok(())
}

/// Serves `service` on `listener` as the daemon does, until the test ends.
fn serve(listener: TcpListener, service: idp_watchdog::Dashboard<Snapshot>) {
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let service = service.clone();
            tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service));
        }
    });
}

/// `curl` of `url` with `headers`: the status and the body.
fn curl(curl: &Path, url: &str, headers: &[&str]) -> anyhow::Result<(u16, String)> {
    let mut command = Command::new(curl);
    command.args(["-sS", "--max-time", "10", "-w", "\n%{http_code}"]);
    for h in headers {
        command.args(["-H", h]);
    }
    let out = command.arg(url).output()?;
    anyhow::ensure!(out.status.success(), "curl {url} failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout)?;
    let (body, code) = text.rsplit_once('\n').ok_or_else(|| anyhow::anyhow!("curl printed no status: {text}"))?;
    Ok((code.parse()?, body.to_owned()))
}

struct Tools {
    curl: PathBuf,
    promtool: PathBuf,
    prometheus: PathBuf,
    chromium: PathBuf,
}

fn tools(test: &str) -> Option<Tools> {
    let found = (find("curl"), find("promtool"), find("prometheus"), find("chromium"));
    let (Some(curl), Some(promtool), Some(prometheus), Some(chromium)) = found else {
        let reason = "curl, promtool/prometheus or chromium not on PATH (apt-get install curl prometheus chromium)";
        assert!(!in_ci(), "CI=true and {reason}");
        report_skip(test, reason);
        return None;
    };
    Some(Tools { curl, promtool, prometheus, chromium })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_api_and_metrics_with_real_clients() -> anyhow::Result<()> {
    let Some(tools) = tools("the_dashboard_api_and_metrics_with_real_clients") else { return Ok(()) };
    let dir = tempfile::tempdir()?;
    let now = SystemTime::now();
    let history = Arc::new(History::open(&dir.path().join("watchdog.sled"), Retention::default())?);
    record(&history, now)?;
    let token = load_or_create_token(dir.path())?;
    let shop = health::rollup(
        "shop",
        &[
            Child { subject: "Deployment shop/web".into(), health: Health::Degraded, reason: "0/1 available: ImagePullBackOff".into() },
            Child { subject: OBJECT.into(), health: Health::Healthy, reason: String::new() },
        ],
    );
    let daemon = health::rollup(
        "daemon",
        &[Child { subject: "listener https 127.0.0.1:443".into(), health: Health::Healthy, reason: String::new() }],
    );
    let stats = DriftStats {
        objects: 214,
        watches: 9,
        ready: true,
        watch_events: 31,
        dry_runs: 7,
        detected: 4,
        heals: 3,
        contested: 1,
        ..DriftStats::default()
    };
    let source = Snapshot {
        drift: vec![drifted(now)],
        stats: Some(stats),
        health: vec![daemon, shop],
        playbooks: idp_core::config::builtin_playbooks(),
        history: Some(history.clone()),
    };
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    serve(listener, router(Arc::new(source), &token));

    // The API: 401 without the token or with a wrong one, 200 with it.
    let drift_url = format!("{base}/api/v1/drift");
    let (status, body) = curl(&tools.curl, &drift_url, &[])?;
    assert_eq!(status, 401, "{body}");
    let error: Value = serde_json::from_str(&body)?;
    assert!(error["error"].as_str().is_some_and(|e| e.contains("token")), "{body}");
    assert!(!body.contains("settings"));
    let wrong = format!("Authorization: Bearer {}", "0".repeat(64));
    let (status, body) = curl(&tools.curl, &drift_url, &[&wrong])?;
    assert_eq!(status, 401, "a wrong token: {body}");
    let (status, body) = curl(&tools.curl, &format!("{drift_url}?token={token}"), &[])?;
    assert_eq!(status, 401, "the API takes the token as a header only: {body}");
    let auth = format!("Authorization: Bearer {token}");
    let (status, body) = curl(&tools.curl, &drift_url, &[&auth])?;
    assert_eq!(status, 200, "{body}");
    let drift: Value = serde_json::from_str(&body)?;
    assert_eq!(drift["objects"][0]["object"], OBJECT);
    assert_eq!(drift["objects"][0]["fields"][0]["manager"], "kubectl-edit");
    assert_eq!(drift["stats"]["objects"], 214);

    let (status, body) = curl(&tools.curl, &format!("{base}/api/v1/health"), &[&auth])?;
    assert_eq!(status, 200, "{body}");
    let h: Value = serde_json::from_str(&body)?;
    assert_eq!(h["lab"]["health"], "Degraded");
    assert_eq!(h["components"][1]["reasons"][0]["reason"], "0/1 available: ImagePullBackOff");

    let (status, body) = curl(&tools.curl, &format!("{base}/api/v1/history?since=30m&kind=drift"), &[&auth])?;
    assert_eq!(status, 200, "{body}");
    let events: Value = serde_json::from_str(&body)?;
    assert_eq!(events["events"].as_array().map(Vec::len), Some(1), "{body}");
    assert_eq!(events["events"][0]["body"]["event"], "detected");
    let (status, _) = curl(&tools.curl, &format!("{base}/api/v1/history?since=yesterday"), &[&auth])?;
    assert_eq!(status, 400);

    let (status, body) = curl(&tools.curl, &format!("{base}/api/v1/slos?since=2h"), &[&auth])?;
    assert_eq!(status, 200, "{body}");
    let slos: Value = serde_json::from_str(&body)?;
    let fast = slos["slos"].as_array().and_then(|s| s.iter().find(|s| s["slo"] == "monitoring/externalsecrets-sync-success")).cloned();
    let fast = fast.ok_or_else(|| anyhow::anyhow!("no fast-burn SLO in {body}"))?;
    assert_eq!(fast["samples"].as_array().map(Vec::len), Some(60));
    assert_eq!(fast["latest"]["firing"], json!(["1h/5m"]));
    assert_eq!(fast["latest"]["burn"]["3d"], Value::Null);

    let (status, body) = curl(&tools.curl, &format!("{base}/api/v1/playbooks"), &[&auth])?;
    assert_eq!(status, 200, "{body}");
    let playbooks: Value = serde_json::from_str(&body)?;
    let heal = playbooks["playbooks"].as_array().and_then(|p| p.iter().find(|p| p["name"] == "heal-drift")).cloned().unwrap_or_default();
    assert_eq!(heal["runs"], json!({"ok": 2, "rate-limited": 1}), "{body}");
    assert_eq!(heal["last_run"]["status"], "rate-limited");
    assert_eq!(heal["configured"], true);

    // /metrics: no token, the Prometheus text format, which promtool passes.
    let (status, metrics) = curl(&tools.curl, &format!("{base}/metrics"), &[])?;
    assert_eq!(status, 200, "{metrics}");
    let file = dir.path().join("metrics.txt");
    std::fs::write(&file, &metrics)?;
    let checked = Command::new(&tools.promtool).args(["check", "metrics"]).stdin(std::fs::File::open(&file)?).output()?;
    assert!(
        checked.status.success(),
        "promtool check metrics: {}{}\n{metrics}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    for want in [
        "# TYPE idp_watchdog_drift_objects gauge",
        "idp_watchdog_drift_objects{component=\"shop\",state=\"contested\"} 1",
        "idp_watchdog_health{component=\"lab\",health=\"Degraded\"} 1",
        "idp_watchdog_health{component=\"shop\",health=\"Healthy\"} 0",
        "idp_watchdog_playbook_runs_total{playbook=\"heal-drift\",status=\"ok\"} 2",
        "idp_watchdog_slo_budget_remaining{slo=\"monitoring/externalsecrets-sync-success\"} 0.42",
        "idp_watchdog_drift_watch_events_total 31",
        "idp_watchdog_history_up 1",
    ] {
        assert!(metrics.contains(want), "/metrics lacks {want:?}:\n{metrics}");
    }
    assert!(!metrics.contains(&token) && !metrics.contains("slow") && !metrics.contains("# EOF"));
    let (_, openmetrics) = curl(&tools.curl, &format!("{base}/metrics"), &["Accept: application/openmetrics-text; version=1.0.0"])?;
    assert!(openmetrics.ends_with("# EOF\n"), "OpenMetrics when asked for:\n{openmetrics}");

    // A real Prometheus scrapes it, and answers what it scraped.
    scraped_by_prometheus(&tools.prometheus, dir.path(), &base).await?;

    // Headless Chromium: the dashboard with the token, then without it.
    chromium_renders_the_dashboard(&tools.chromium, dir.path(), &base, &token)?;
    Ok(())
}

async fn scraped_by_prometheus(prometheus: &Path, dir: &Path, base: &str) -> anyhow::Result<()> {
    let target = base.trim_start_matches("http://");
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: idp-watchdog\n    static_configs:\n      - targets: [\"{target}\"]\n"
        ),
    )?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let listen = format!("127.0.0.1:{port}");
    let log = std::fs::File::create(dir.join("prometheus.log"))?;
    let _process = Killed(
        Command::new(prometheus)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("tsdb").display()))
            .arg(format!("--web.listen-address={listen}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?,
    );
    let client = Prometheus::new(&format!("http://{listen}"))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let query = "idp_watchdog_drift_objects{job=\"idp-watchdog\",component=\"shop\",state=\"contested\"}";
    loop {
        let answer = client.instant(query, SystemTime::now()).await;
        if let Ok(samples) = &answer
            && let Some(sample) = samples.first()
        {
            assert_eq!(sample.value, 1.0, "{samples:?}");
            break;
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default();
            anyhow::bail!("Prometheus did not scrape the drift gauge within 60 s ({answer:?}):\n{log}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let burn = client
        .instant("idp_watchdog_slo_burn_rate{slo=\"monitoring/externalsecrets-sync-success\",window=\"5m\"}", SystemTime::now())
        .await?;
    assert_eq!(burn.first().map(|s| s.value), Some(16.0 + 59.0 / 10.0), "{burn:?}");
    let up = client.instant("up{job=\"idp-watchdog\"}", SystemTime::now()).await?;
    assert_eq!(up.first().map(|s| s.value), Some(1.0), "{up:?}");
    Ok(())
}

/// Runs headless Chromium on `url` with its own profile in `home`: stdout, stderr.
fn chromium(chromium: &Path, home: &Path, url: &str, extra: &[&str]) -> anyhow::Result<(String, String)> {
    std::fs::create_dir_all(home)?;
    let output = Command::new(chromium)
        .env("HOME", home)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
            "--window-size=1280,1700",
            // The page fetches its data after it loads: let virtual time run until it is drawn.
            "--virtual-time-budget=8000",
            &format!("--user-data-dir={}", home.join("profile").display()),
        ])
        .args(extra)
        .arg(url)
        .output()?;
    Ok((String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned()))
}

fn chromium_renders_the_dashboard(bin: &Path, dir: &Path, base: &str, token: &str) -> anyhow::Result<()> {
    let with_token = format!("{base}/?token={token}");
    let began = Instant::now();
    let (dom, stderr) = chromium(bin, &dir.join("chromium-token"), &with_token, &["--dump-dom"])?;
    let took = began.elapsed();
    assert!(dom.contains(OBJECT), "the drifted object is not in the rendered DOM ({took:?}):\n{dom}\n{stderr}");
    assert!(dom.contains("kubectl-edit") && dom.contains("data.mode"), "its field and manager:\n{dom}");
    assert!(dom.contains("state-contested"), "its state:\n{dom}");
    let charts = dom.matches("<svg class=\"slo-chart\"").count();
    assert_eq!(charts, 2, "one SVG chart per SLO:\n{dom}");
    assert!(dom.contains("data-window=\"5m\"") && dom.contains("class=\"budget\""), "burn rate and budget lines:\n{dom}");
    assert!(dom.contains("heal-drift") && dom.contains("run-rate-limited"), "the playbook and its last run:\n{dom}");
    assert!(dom.contains("lab: Degraded"), "the lab's verdict:\n{dom}");
    assert!(dom.contains("<section id=\"need-token\" class=\"panel\" hidden=\"\">"), "no token prompt with the token:\n{dom}");

    let artifacts = std::env::var_os("IDP_LAB_ARTIFACTS")
        .filter(|a| !a.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/idp-lab/artifacts"));
    std::fs::create_dir_all(&artifacts)?;
    let shot = artifacts.join("watchdog-dashboard.png");
    let _ = std::fs::remove_file(&shot);
    let (_, stderr) = chromium(bin, &dir.join("chromium-shot"), &with_token, &[&format!("--screenshot={}", shot.display())])?;
    let png = std::fs::read(&shot).unwrap_or_default();
    assert!(png.starts_with(b"\x89PNG"), "no screenshot at {}: {stderr}", shot.display());
    eprintln!("artifact: {} ({} bytes)", shot.display(), png.len());

    // Without the token, and with a wrong one: the prompt, and no data.
    for (name, url, reason) in
        [("no token", format!("{base}/"), "No token was given."), ("wrong token", format!("{base}/?token={}", "f".repeat(64)), "refused")]
    {
        let (dom, stderr) = chromium(bin, &dir.join(format!("chromium-{}", name.replace(' ', "-"))), &url, &["--dump-dom"])?;
        assert!(dom.contains("This dashboard needs its token"), "{name}:\n{dom}\n{stderr}");
        assert!(dom.contains("<section id=\"need-token\" class=\"panel\">"), "{name}: the prompt is shown:\n{dom}");
        assert!(dom.contains(reason), "{name}: says why:\n{dom}");
        assert!(dom.contains("<main id=\"app\" hidden=\"\">"), "{name}: the data is hidden:\n{dom}");
        assert!(!dom.contains(OBJECT) && !dom.contains("<svg") && !dom.contains("heal-drift"), "{name}: no data:\n{dom}");
    }
    let shot = artifacts.join("watchdog-dashboard-no-token.png");
    let _ = chromium(bin, &dir.join("chromium-shot-none"), &format!("{base}/"), &[&format!("--screenshot={}", shot.display())])?;
    Ok(())
}
