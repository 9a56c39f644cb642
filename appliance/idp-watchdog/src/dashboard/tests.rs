use super::*;
use crate::drift::{DriftField, DriftState, Policy};
use crate::history::Retention;
use idp_core::slo::Counts;

fn drift(kind: &str, path: &str) -> ObjectDrift {
    ObjectDrift {
        component: "shop".into(),
        object: format!("{kind} shop/settings"),
        api_version: "v1".into(),
        kind: kind.into(),
        namespace: "shop".into(),
        name: "settings".into(),
        exists: true,
        fields: vec![DriftField {
            path: path.into(),
            live: Some(json!("slow")),
            desired: Some(json!("fast")),
            manager: Some("intruder".into()),
            evidence: None,
            report_only: false,
        }],
        manager: Some("intruder".into()),
        detected_at: UNIX_EPOCH,
        since: UNIX_EPOCH,
        state: DriftState::Healing,
        policy: Policy::Heal,
        heals: 0,
        contested: Vec::new(),
    }
}

fn bearer(token: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(header::AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {token}")).expect("header"));
    headers
}

async fn body(response: Response<Full<Bytes>>) -> (StatusCode, String) {
    use http_body_util::BodyExt as _;
    let status = response.status();
    let bytes = response.into_body().collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[test]
fn the_token_is_0600_and_stable() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let lab = dir.path().join("labs/demo");
    let first = load_or_create_token(&lab)?;
    assert_eq!(first.len(), 64, "{first}");
    assert!(first.bytes().all(|b| b.is_ascii_hexdigit()));
    let path = lab.join(TOKEN_FILE);
    assert_eq!(std::fs::metadata(&path)?.permissions().mode() & 0o777, 0o600);
    assert_eq!(load_or_create_token(&lab)?, first, "the same token on every call");
    // Widened by hand: restricted again, and still the same token.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
    assert_eq!(load_or_create_token(&lab)?, first);
    assert_eq!(std::fs::metadata(&path)?.permissions().mode() & 0o777, 0o600);
    // Another lab has another token.
    assert_ne!(load_or_create_token(&dir.path().join("labs/other"))?, first);
    // No temporary file is left behind.
    let names: Vec<_> = std::fs::read_dir(&lab)?.filter_map(|e| e.ok().map(|e| e.file_name())).collect();
    assert_eq!(names, vec![std::ffi::OsString::from(TOKEN_FILE)]);
    Ok(())
}

#[test]
fn callers_at_once_get_one_token() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().to_path_buf();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn({
                let p = path.clone();
                move || load_or_create_token(&p)
            })
        })
        .collect();
    let tokens: Vec<String> =
        threads.into_iter().map(|t| t.join().map_err(|_| "panicked")?.map_err(|e| e.to_string())).collect::<Result<_, _>>()?;
    assert!(tokens.windows(2).all(|w| w[0] == w[1]), "{tokens:?}");
    Ok(())
}

#[test]
fn a_token_file_that_holds_no_token_is_named() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join(TOKEN_FILE), "not a token\n")?;
    let e = load_or_create_token(dir.path()).err().ok_or("a bad token file was taken")?;
    assert!(matches!(e, TokenError::Invalid { .. }), "{e:?}");
    assert!(e.to_string().contains("remove it and the daemon makes a new one"), "{e}");
    Ok(())
}

#[test]
fn tokens_compare_whole() {
    let token = b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    assert!(tokens_match(token, token));
    assert!(!tokens_match(b"", token), "empty");
    assert!(!tokens_match(&token[..63], token), "a prefix");
    assert!(!tokens_match(b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0", token), "longer");
    let mut first = *token;
    first[0] = b'1';
    assert!(!tokens_match(&first, token), "the first byte differs");
    let mut last = *token;
    last[63] = b'e';
    assert!(!tokens_match(&last, token), "the last byte differs");
    assert!(!tokens_match(&token.to_ascii_uppercase(), b"ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789"));
}

#[tokio::test]
async fn the_api_needs_the_token() {
    let source = Arc::new(Snapshot { drift: vec![drift("ConfigMap", "data.mode")], ..Snapshot::default() });
    let dashboard = router(source, "s3cret-token-s3cret-token-s3cret-token");
    let get = |target: &'static str, headers: HeaderMap| {
        let d = dashboard.clone();
        async move { body(d.answer(&Method::GET, target, &headers).await).await }
    };
    let (status, text) = get("/api/v1/drift", HeaderMap::new()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(text.contains("needs the watchdog's token"), "{text}");
    assert!(!text.contains("settings"), "no data without the token: {text}");
    let (status, text) = get("/api/v1/drift", bearer("s3cret-token-s3cret-token-s3cret-toke")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a wrong token");
    assert!(text.contains("refused"), "{text}");
    let mut basic = HeaderMap::new();
    basic.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic s3cret-token-s3cret-token-s3cret-token"));
    assert_eq!(get("/api/v1/drift", basic).await.0, StatusCode::UNAUTHORIZED, "another scheme");
    assert_eq!(get("/api/v1/nothing", HeaderMap::new()).await.0, StatusCode::UNAUTHORIZED, "every /api/ path");
    let (status, text) = get("/api/v1/drift", bearer("s3cret-token-s3cret-token-s3cret-token")).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let json: Value = serde_json::from_str(&text).unwrap_or_default();
    assert_eq!(json["objects"][0]["object"], "ConfigMap shop/settings");
    assert_eq!(json["stats"], Value::Null);
    let mut lower = HeaderMap::new();
    lower.insert(header::AUTHORIZATION, HeaderValue::from_static("bearer  s3cret-token-s3cret-token-s3cret-token "));
    assert_eq!(get("/api/v1/drift", lower).await.0, StatusCode::OK, "the scheme in any case, spaces around the token");
    let (status, text) = get("/api/v1/history", bearer("s3cret-token-s3cret-token-s3cret-token")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "no history: {text}");
    assert_eq!(get("/api/v1/nothing", bearer("s3cret-token-s3cret-token-s3cret-token")).await.0, StatusCode::NOT_FOUND);
    let posted = dashboard.answer(&Method::POST, "/api/v1/drift", &HeaderMap::new()).await;
    assert_eq!(posted.status(), StatusCode::UNAUTHORIZED, "the token before anything else");
    let posted = dashboard.answer(&Method::POST, "/api/v1/drift", &bearer("s3cret-token-s3cret-token-s3cret-token")).await;
    assert_eq!(posted.status(), StatusCode::METHOD_NOT_ALLOWED);
    // The page and /metrics need none.
    let page = dashboard.answer(&Method::GET, "/", &HeaderMap::new()).await;
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.headers().get(header::CONTENT_SECURITY_POLICY).is_some());
    let (status, page) = body(page).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("src=\"/dashboard.js\"") && !page.contains("https://") && !page.contains("=\"http"), "no external resource");
    assert_eq!(get("/metrics", HeaderMap::new()).await.0, StatusCode::OK);
    assert_eq!(get("/elsewhere", HeaderMap::new()).await.0, StatusCode::NOT_FOUND);
}

#[test]
fn the_assets_load_nothing_from_elsewhere() {
    for (name, text) in [("index.html", INDEX_HTML), ("dashboard.css", DASHBOARD_CSS), ("dashboard.js", DASHBOARD_JS)] {
        for bad in ["https://", "http://", "@import", "url(", "cdn", "googleapis"] {
            let found =
                text.lines().filter(|l| l.contains(bad) && !l.contains("http://www.w3.org/2000/svg") && !l.contains("http://127.0.0.1"));
            assert_eq!(found.count(), 0, "{name} has {bad}");
        }
    }
}

#[test]
fn a_secrets_values_are_hidden() {
    use crate::drift::report::hidden;
    let shown = redacted(vec![drift("Secret", "data.password"), drift("Secret", "metadata.labels.a"), drift("ConfigMap", "data.mode")]);
    assert_eq!(shown[0].fields[0].live, Some(json!("(hidden)")));
    assert_eq!(shown[0].fields[0].desired, Some(json!("(hidden)")));
    assert_eq!(shown[1].fields[0].live, Some(json!("slow")), "a Secret's labels are no secret");
    assert_eq!(shown[2].fields[0].live, Some(json!("slow")));
    assert!(hidden("Secret", "stringData[\"a.b\"]") && hidden("Secret", "data") && !hidden("Secret", "database"));
}

#[test]
fn since_reads_seconds_milliseconds_and_durations() {
    let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
    let default = UNIX_EPOCH + Duration::from_secs(5);
    assert_eq!(since("", now, default), Ok(default));
    assert_eq!(since("since=100", now, default), Ok(UNIX_EPOCH + Duration::from_secs(100)));
    assert_eq!(since("kind=drift&since_ms=1500", now, default), Ok(UNIX_EPOCH + Duration::from_millis(1500)));
    assert_eq!(since("since=30m", now, default), Ok(now - Duration::from_secs(1800)));
    assert_eq!(since("since=2d", now, default), Ok(now - Duration::from_secs(172_800)));
    assert_eq!(since("since=99999d", now, default), Ok(UNIX_EPOCH), "before the epoch: everything");
    for bad in ["since=", "since=1w", "since=-5", "since=5&since_ms=5", "since_ms=x", "since=99999999999999999999"] {
        assert!(since(bad, now, default).is_err(), "{bad}");
    }
}

#[test]
fn slo_samples_come_from_evaluations() -> Result<(), Box<dyn std::error::Error>> {
    let slo = Slo::from_pyrra(&json!({
        "apiVersion": "pyrra.dev/v1alpha1",
        "kind": "ServiceLevelObjective",
        "metadata": {"name": "api-errors", "namespace": "monitoring"},
        "spec": {"target": "99.5", "window": "30d", "indicator": {"ratio": {
            "errors": {"metric": "http_requests_total{code=~\"5..\"}"},
            "total": {"metric": "http_requests_total"}
        }}}
    }))?;
    // 10 % errors up to 1 h (burn 20), 0.25 % over the longer windows (burn 0.5).
    let counts = slo
        .windows()
        .into_iter()
        .map(|w| {
            let bad = if w <= Duration::from_secs(3600) { 100.0 } else { 2.5 };
            Counts::new(1000.0, bad).map(|c| (w, c))
        })
        .collect::<Result<BTreeMap<_, _>, _>>()?;
    let evaluation = idp_core::slo::evaluate(&slo, &counts)?;
    let sample = SloSample::of(&slo, &evaluation);
    assert_eq!(sample.slo, "monitoring/api-errors");
    assert_eq!(sample.burn.keys().cloned().collect::<Vec<_>>(), ["1d", "1h", "2h", "30m", "3d", "5m", "6h"]);
    let five = sample.burn["5m"].ok_or("no 5m burn")?;
    assert!((five - 20.0).abs() < 1e-9, "0.1 / 0.005 = {five}");
    assert_eq!(sample.firing, ["1h/5m"], "the 1h/5m row only: its long window burns 20 > 14.4");
    assert_eq!(sample.objective, Some(99.5));
    let event = sample.event(UNIX_EPOCH + Duration::from_secs(7));
    assert_eq!((event.kind, event.subject.as_str()), (EventKind::SloSample, "slo monitoring/api-errors"));
    assert_eq!(SloSample::from_event(&event), Some(sample));
    // A body without its name takes the subject's; one that is not a sample is none.
    let bare = Event::new(UNIX_EPOCH, EventKind::SloSample, "slo x", json!({"burn": {"1h": 1.0}, "budget_remaining": 0.5}));
    assert_eq!(SloSample::from_event(&bare).map(|s| s.slo), Some("x".to_owned()));
    assert_eq!(SloSample::from_event(&Event::new(UNIX_EPOCH, EventKind::SloSample, "slo y", json!({"pad": 1}))), None);
    // Burn rates by row, as the daemon's SLO loop records them: each row's two windows.
    let rows = Event::new(
        UNIX_EPOCH,
        EventKind::SloSample,
        "slo monitoring/api",
        json!({"slo": "monitoring/api", "objective": 99.5, "window": "28d", "budget_remaining": 0.82, "firing": ["1h/5m"],
               "burn": {"1h/5m": {"long": 15.0, "short": 14.9, "factor": 14.4, "severity": "page", "fires": true, "low_traffic": false},
                        "6h/30m": {"long": null, "short": 0.5, "factor": 6.0, "severity": "page", "fires": false, "low_traffic": true}},
               "events": {"total": 10.0, "bad": 1.0}}),
    );
    let read = SloSample::from_event(&rows).ok_or("a sample by rows")?;
    assert_eq!(
        read.burn,
        BTreeMap::from([("1h".into(), Some(15.0)), ("5m".into(), Some(14.9)), ("6h".into(), None), ("30m".into(), Some(0.5))])
    );
    assert_eq!((read.budget_remaining, read.firing), (Some(0.82), vec!["1h/5m".to_owned()]));
    Ok(())
}

#[test]
fn the_index_counts_no_run_twice() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let history = History::open(&dir.path().join("h.sled"), Retention::default())?;
    let now = SystemTime::now();
    let run = |playbook: &str, status: &str, ago: u64| {
        let at = unix_ms(now) - ago * 1000;
        Event::new(
            UNIX_EPOCH + Duration::from_millis(at),
            EventKind::PlaybookRun,
            format!("playbook {playbook}"),
            json!({"playbook": playbook, "status": status, "trigger": {"on": "vault-sealed"}, "actions": [], "at_ms": at, "duration_ms": 0}),
        )
    };
    history.record(&run("a", "ok", 30))?;
    history.record(&run("a", "failed", 20))?;
    let mut index = Index::default();
    index.refresh(&history, now)?;
    index.refresh(&history, now)?;
    assert_eq!(index.playbooks["a"].runs, BTreeMap::from([("failed".to_owned(), 1), ("ok".to_owned(), 1)]));
    // A run recorded late, dated before the last read (its actions took a while), counts.
    history.record(&run("a", "ok", 40))?;
    history.record(&run("b", "rate-limited", 1))?;
    index.refresh(&history, now)?;
    assert_eq!(index.playbooks["a"].runs["ok"], 2);
    assert_eq!(index.playbooks["b"].runs["rate-limited"], 1);
    let view = IndexView::of(&index);
    let statuses: Vec<String> = view.playbooks["a"].recent.iter().map(|(_, r)| format!("{:?}", r.status)).collect();
    assert_eq!(statuses, ["Failed", "Ok", "Ok"], "newest first");
    Ok(())
}

#[test]
fn metrics_are_prometheus_text_or_openmetrics() {
    let om = "# HELP x_runs Runs.\n# TYPE x_runs counter\nx_runs_total{a=\"b\"} 2\n# HELP x_g A gauge.\n# TYPE x_g gauge\nx_g 0.5\n# HELP x_u Unknown.\n# TYPE x_u unknown\nx_u 1\n# EOF\n";
    assert_eq!(
        prometheus_text(om),
        "# HELP x_runs_total Runs.\n# TYPE x_runs_total counter\nx_runs_total{a=\"b\"} 2\n# HELP x_g A gauge.\n# TYPE x_g gauge\nx_g 0.5\n# HELP x_u Unknown.\n# TYPE x_u untyped\nx_u 1\n"
    );
    let view = IndexView::default();
    let components = vec![health::rollup("daemon", &[])];
    let drifted = [drift("ConfigMap", "data.mode"), drift("ConfigMap", "data.other")];
    let text = metrics_text(&Metrics {
        drift: &drifted,
        stats: None,
        components: &components,
        index: &view,
        history: None,
        now: SystemTime::now(),
    });
    assert!(text.contains("idp_watchdog_drift_objects{component=\"shop\",state=\"healing\"} 2"), "{text}");
    assert!(text.contains("idp_watchdog_health{component=\"daemon\",health=\"Healthy\"} 1"), "{text}");
    assert!(text.contains("idp_watchdog_health{component=\"lab\",health=\"Degraded\"} 0"), "{text}");
    assert!(text.contains("idp_watchdog_drift_engine_running 0"), "{text}");
    assert!(text.ends_with("# EOF\n"));
}
