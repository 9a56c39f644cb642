//! SLO evaluation against a real Prometheus (Debian's `prometheus` 2.42 with `promtool`).
//!
//! Counter pairs (requests, errors) are generated for 7 d + 2 h at a 10 s step, backfilled with
//! `promtool tsdb create-blocks-from openmetrics`, and a 7-day SLO (so the table scales by 7/30:
//! 14m/1m10s, 1h24m/7m, 5h36m/28m, 16h48m/1h24m) is evaluated at the time of the last sample.
//!
//! `increase()` extrapolation: every window is a multiple of the 10 s step and the evaluation
//! time is a sample's timestamp, so Prometheus 2.x (whose range selectors include both ends)
//! sees a sample exactly at each end of every window. Then `extrapolatedRate` has nothing to
//! extrapolate (durationToStart = durationToEnd = 0, the sampled interval equals the range) and
//! `increase()` is exactly last − first; the counters never reset. The expected values are
//! therefore the plain differences of the generated cumulative counts, computed here without
//! `idp_core::slo`.
//!
//! The same series answer range queries (`evaluate_range` equals the instant evaluation at
//! every step) and, on the test bed's API server, the SLOs the watchdog lists from Pyrra
//! objects, evaluated through the API server's service proxy.
//!
//! Without `prometheus`/`promtool` the tests are skipped loudly; with `CI=true` they fail
//! (the cluster test also needs the test bed: see `idp_test::require!`).

use idp_core::slo::{DEFAULT_MIN_EVENTS, LowTrafficGuard, Slo};
use idp_kube::Cluster;
use idp_test::crds::{apply_crds, downlevel_crd_fixtures};
use idp_test::{ControlPlane, Need, require};
use idp_watchdog::slos;
use idp_watchdog::{Evaluation, Prometheus, WatchdogError, evaluate, evaluate_with};
use kube::Api;
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const STEP: u64 = 10;
/// 7 d + 2 h of steps.
const STEPS: usize = ((7 * 86_400 + 7200) / STEP) as usize;
const TARGET: &str = "99.5";
const PERCENT: f64 = 99.5;
/// Requests per step.
const RATE: u64 = 40;

/// Per-step increments of (total, errors) for a scenario; index 0 is the first sample (0, 0).
struct Scenario {
    name: &'static str,
    total: Vec<u64>,
    errors: Vec<u64>,
    fires_default: Vec<usize>,
    fires_unguarded: Vec<usize>,
}

fn background(i: usize) -> u64 {
    u64::from(i.is_multiple_of(25)) // 1 error per 1000 requests: burn 0.2
}

fn scenarios() -> Vec<Scenario> {
    let n = STEPS;
    let step = |f: &dyn Fn(usize) -> (u64, u64)| -> (Vec<u64>, Vec<u64>) { (0..=n).map(|i| if i == 0 { (0, 0) } else { f(i) }).unzip() };
    let (total, errors) = step(&|i| (RATE, background(i)));
    let clean = Scenario { name: "clean", total, errors, fires_default: vec![], fires_unguarded: vec![] };
    // Fast burn: the last 3000 s at 7.5 % errors (burn 15): the two page rows only.
    let (total, errors) = step(&|i| (RATE, if i > n - 300 { 3 } else { background(i) }));
    let fast = Scenario { name: "fast", total, errors, fires_default: vec![0, 1], fires_unguarded: vec![0, 1] };
    // Slow burn: the last 2 days at 2 % errors (burn 4): the two ticket rows only.
    let (total, errors) = step(&|i| (RATE, if i > n - 17_280 { u64::from(!i.is_multiple_of(5)) } else { background(i) }));
    let slow = Scenario { name: "slow", total, errors, fires_default: vec![2, 3], fires_unguarded: vec![2, 3] };
    // Sparse: one request per 20 minutes, the last one failed. Every row burns, but no long
    // window sees 100 events (the 16h48m one sees 51), so nothing fires under the guard.
    let (total, errors) = step(&|i| (u64::from(i.is_multiple_of(120)), u64::from(i == n)));
    let sparse = Scenario { name: "sparse", total, errors, fires_default: vec![], fires_unguarded: vec![0, 1, 2, 3] };
    vec![clean, fast, slow, sparse]
}

fn cumulative(increments: &[u64]) -> Vec<u64> {
    increments
        .iter()
        .scan(0u64, |sum, x| {
            *sum += x;
            Some(*sum)
        })
        .collect()
}

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

fn write_openmetrics(path: &Path, start: u64, all: &[Scenario]) -> anyhow::Result<()> {
    let mut text = String::new();
    for (family, pick) in [("demo_requests", 0), ("demo_errors", 1)] {
        writeln!(text, "# HELP {family} Demo {family}.")?;
        writeln!(text, "# TYPE {family} counter")?;
        for s in all {
            let counts = cumulative(if pick == 0 { &s.total } else { &s.errors });
            for (i, c) in counts.iter().enumerate() {
                writeln!(text, "{family}_total{{scenario=\"{}\"}} {c} {}", s.name, start + i as u64 * STEP)?;
            }
        }
    }
    text.push_str("# EOF\n");
    std::fs::File::create(path)?.write_all(text.as_bytes())?;
    Ok(())
}

fn slo_for(scenario: &str) -> anyhow::Result<Slo> {
    Ok(Slo::from_pyrra(&json!({
        "apiVersion": "pyrra.dev/v1alpha1",
        "kind": "ServiceLevelObjective",
        "metadata": {"name": format!("demo-{scenario}"), "namespace": "monitoring"},
        "spec": {
            "target": TARGET,
            "window": "7d",
            "indicator": {"ratio": {
                "errors": {"metric": format!("demo_errors_total{{scenario=\"{scenario}\"}}")},
                "total": {"metric": format!("demo_requests_total{{scenario=\"{scenario}\"}}")}
            }}
        }
    }))?)
}

fn close(got: f64, want: f64) -> bool {
    if want == 0.0 { got.abs() < 1e-12 } else { ((got - want) / want).abs() <= 1e-6 }
}

/// Checks an evaluation against the generated counts; returns the rows that fire.
fn check(s: &Scenario, slo: &Slo, e: &Evaluation, min_events: f64) -> anyhow::Result<Vec<usize>> {
    check_at(s, slo, e, min_events, STEPS)
}

/// [`check`] for an evaluation at the time of sample `at`.
fn check_at(s: &Scenario, slo: &Slo, e: &Evaluation, min_events: f64, at: usize) -> anyhow::Result<Vec<usize>> {
    let total = cumulative(&s.total);
    let errors = cumulative(&s.errors);
    let budget = (100.0 - PERCENT) / 100.0;
    let over = |w: Duration| -> anyhow::Result<(f64, f64)> {
        let k = usize::try_from(w.as_secs() / STEP)?;
        anyhow::ensure!(w.as_millis().is_multiple_of(u128::from(STEP * 1000)), "window {w:?} is not a multiple of the step");
        anyhow::ensure!(k <= at, "window {w:?} reaches before the first sample");
        Ok(((total[at] - total[at - k]) as f64, (errors[at] - errors[at - k]) as f64))
    };
    let (wt, wb) = over(slo.window)?;
    let want_budget = 1.0 - wb / (budget * wt);
    anyhow::ensure!(close(e.budget_remaining, want_budget), "{}: budget {} want {want_budget}", s.name, e.budget_remaining);
    anyhow::ensure!(e.window.total() == wt && e.window.bad() == wb, "{}: window counts {:?} want {wt}/{wb}", s.name, e.window);
    let mut fired = Vec::new();
    for (i, row) in e.rows.iter().enumerate() {
        let (lt, lb) = over(row.row.long)?;
        let (st, sb) = over(row.row.short)?;
        // No events in a window (only before the last sample): no burn rate.
        let burn = |bad: f64, total: f64| (total > 0.0).then(|| (bad / total) / budget);
        let (want_long, want_short) = (burn(lb, lt), burn(sb, st));
        let agrees = |got: Option<f64>, want: Option<f64>| match (got, want) {
            (Some(g), Some(w)) => close(g, w),
            (g, w) => g.is_none() && w.is_none(),
        };
        if want_long.is_some() && want_short.is_some() {
            anyhow::ensure!(row.long_burn.is_some() && row.short_burn.is_some(), "{}: row {i} has no burn rate: {row:?}", s.name);
        }
        anyhow::ensure!(agrees(row.long_burn, want_long), "{}: row {i} long burn {:?} want {want_long:?}", s.name, row.long_burn);
        anyhow::ensure!(agrees(row.short_burn, want_short), "{}: row {i} short burn {:?} want {want_short:?}", s.name, row.short_burn);
        let above = |b: Option<f64>| b.is_some_and(|b| b > row.row.factor);
        let want_fire = lt >= min_events && above(want_long) && above(want_short);
        anyhow::ensure!(row.fires == want_fire, "{}: row {i} fires={} want {want_fire}: {row:?}", s.name, row.fires);
        if row.fires {
            fired.push(i);
        }
    }
    Ok(fired)
}

/// The generated series backfilled into a TSDB of a temporary folder.
struct Fixture {
    dir: tempfile::TempDir,
    tsdb: PathBuf,
    /// The time of the last sample, in Unix seconds (a whole hour, an hour ago or more).
    end: u64,
    all: Vec<Scenario>,
}

impl Fixture {
    /// The time of the last sample.
    fn at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.end)
    }

    /// The time of sample `i`.
    fn time_of(&self, i: usize) -> SystemTime {
        self.at() - Duration::from_secs((STEPS - i) as u64 * STEP)
    }
}

/// Generates the scenarios' series and backfills them with `promtool`.
fn backfill(promtool: &Path) -> anyhow::Result<Fixture> {
    let dir = tempfile::tempdir()?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let end = now / 3600 * 3600 - 3600;
    let start = end - STEPS as u64 * STEP;
    let all = scenarios();
    let input = dir.path().join("series.om");
    write_openmetrics(&input, start, &all)?;
    let tsdb = dir.path().join("tsdb");
    let out = Command::new(promtool).args(["tsdb", "create-blocks-from", "openmetrics", "-q"]).arg(&input).arg(&tsdb).output()?;
    anyhow::ensure!(out.status.success(), "promtool failed: {}", String::from_utf8_lossy(&out.stderr));
    Ok(Fixture { dir, tsdb, end, all })
}

/// A Prometheus serving a [`Fixture`]'s TSDB, killed on drop.
struct Server {
    _process: Killed,
    base: String,
    client: Prometheus,
}

/// Starts Prometheus on a free port of `ip` over the fixture's TSDB and waits until it answers.
async fn serve(prometheus_bin: &Path, fixture: &Fixture, ip: IpAddr) -> anyhow::Result<Server> {
    let dir = fixture.dir.path();
    let config = dir.join("prometheus.yml");
    std::fs::write(&config, "global:\n  scrape_interval: 1h\n  evaluation_interval: 1h\n")?;
    let port = TcpListener::bind((ip, 0))?.local_addr()?.port();
    let listen = SocketAddr::new(ip, port);
    let log = std::fs::File::create(dir.join("prometheus.log"))?;
    let process = Killed(
        Command::new(prometheus_bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", fixture.tsdb.display()))
            .arg(format!("--web.listen-address={listen}"))
            .arg("--storage.tsdb.retention.time=60d")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?,
    );
    let base = format!("http://{listen}");
    let client = Prometheus::new(&base)?;
    if let Err(e) = wait_ready(&client, fixture.at()).await {
        let log = std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default();
        anyhow::bail!("{e}\n{log}");
    }
    Ok(Server { _process: process, base, client })
}

/// `prometheus` and `promtool`, or a loud skip (a failure with `CI=true`).
fn tools(test: &str) -> Option<(PathBuf, PathBuf)> {
    let (Some(prometheus_bin), Some(promtool)) = (find("prometheus"), find("promtool")) else {
        let reason = "prometheus/promtool not on PATH (apt-get install prometheus)";
        assert!(!in_ci(), "CI=true and {reason}");
        report_skip(test, reason);
        return None;
    };
    Some((prometheus_bin, promtool))
}

async fn wait_ready(prometheus: &Prometheus, at: SystemTime) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        match prometheus.instant_number("vector(1)", at).await {
            Ok(_) => return Ok(()),
            Err(e) if std::time::Instant::now() > deadline => anyhow::bail!("Prometheus did not become ready: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slo_burn_rates_against_real_prometheus() -> anyhow::Result<()> {
    let Some((prometheus_bin, promtool)) = tools("slo_burn_rates_against_real_prometheus") else { return Ok(()) };
    let fixture = backfill(&promtool)?;
    let server = serve(&prometheus_bin, &fixture, IpAddr::V4(Ipv4Addr::LOCALHOST)).await?;
    let (base, client, all) = (server.base.clone(), server.client.clone(), &fixture.all);
    let at = fixture.at();

    for s in all {
        let mut slo = slo_for(s.name)?;
        assert_eq!(slo.guard.min_events, DEFAULT_MIN_EVENTS);
        let e = evaluate(&base, &slo, at).await?;
        let fired = check(s, &slo, &e, DEFAULT_MIN_EVENTS)?;
        let burns: Vec<_> = e.rows.iter().map(|r| (r.long_burn, r.short_burn, r.long.total(), r.fires)).collect();
        eprintln!("{}: budget remaining {:.6}, rows (long burn, short burn, long events, fires) {burns:?}", s.name, e.budget_remaining);
        assert_eq!(fired, s.fires_default, "{}: rows fired under the default guard", s.name);
        if s.name == "sparse" {
            assert!(e.rows.iter().all(|r| r.low_traffic), "sparse: every long window is under the guard: {:?}", e.rows);
        }
        slo.guard = LowTrafficGuard { min_events: 0.0 };
        let e = evaluate_with(&client, &slo, at).await?;
        let fired = check(s, &slo, &e, 0.0)?;
        assert_eq!(fired, s.fires_unguarded, "{}: rows fired without the guard", s.name);
    }

    // Fast burn: off by one step the windows are no longer aligned; the answer must still be a
    // number close to the aligned one (extrapolation), which guards against a time-unit mix-up.
    let fast = slo_for("fast")?;
    let shifted = evaluate(&base, &fast, at - Duration::from_secs(5)).await?;
    let burn = shifted.rows[0].long_burn.unwrap_or_default();
    assert!((burn - 15.0).abs() < 1.0, "fast burn 5 s earlier: {burn}");
    Ok(())
}

/// Whether two evaluations agree within 1e-6 relative, field by field.
fn same(what: &str, got: &Evaluation, want: &Evaluation) -> anyhow::Result<()> {
    let near = |label: &str, g: f64, w: f64| -> anyhow::Result<()> {
        anyhow::ensure!(close(g, w), "{what}: {label} {g} want {w}");
        Ok(())
    };
    let burn = |label: &str, g: Option<f64>, w: Option<f64>| -> anyhow::Result<()> {
        match (g, w) {
            (Some(g), Some(w)) => near(label, g, w),
            (None, None) => Ok(()),
            _ => anyhow::bail!("{what}: {label} {g:?} want {w:?}"),
        }
    };
    near("budget remaining", got.budget_remaining, want.budget_remaining)?;
    near("window total", got.window.total(), want.window.total())?;
    near("window bad", got.window.bad(), want.window.bad())?;
    anyhow::ensure!(got.rows.len() == want.rows.len(), "{what}: {} rows want {}", got.rows.len(), want.rows.len());
    for (i, (g, w)) in got.rows.iter().zip(&want.rows).enumerate() {
        near(&format!("row {i} long total"), g.long.total(), w.long.total())?;
        near(&format!("row {i} long bad"), g.long.bad(), w.long.bad())?;
        near(&format!("row {i} short total"), g.short.total(), w.short.total())?;
        near(&format!("row {i} short bad"), g.short.bad(), w.short.bad())?;
        burn(&format!("row {i} long burn"), g.long_burn, w.long_burn)?;
        burn(&format!("row {i} short burn"), g.short_burn, w.short_burn)?;
        anyhow::ensure!((g.fires, g.low_traffic) == (w.fires, w.low_traffic), "{what}: row {i} {g:?} want {w:?}");
    }
    Ok(())
}

/// Range evaluation: at every step it equals the instant evaluation at that time, for steps
/// aligned to the samples (then also equal to the independently computed values) and for
/// steps that are not; the burn starts within the range, so the steps differ. Ranges
/// Prometheus refuses come back as its error, and `evaluate_range` refuses its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_evaluation_equals_instant_evaluation_at_every_step() -> anyhow::Result<()> {
    let Some((prometheus_bin, promtool)) = tools("range_evaluation_equals_instant_evaluation_at_every_step") else { return Ok(()) };
    let fixture = backfill(&promtool)?;
    let server = serve(&prometheus_bin, &fixture, IpAddr::V4(Ipv4Addr::LOCALHOST)).await?;
    let client = &server.client;
    let end = fixture.at();

    // Aligned: the last 2 h every 10 min (the fast burn covers the last 3000 s).
    let aligned_step = 60;
    for s in &fixture.all {
        let slo = slo_for(s.name)?;
        let first = STEPS - 12 * aligned_step;
        let range = client.evaluate_range(&slo, fixture.time_of(first), end, Duration::from_secs(aligned_step as u64 * STEP)).await?;
        anyhow::ensure!(range.len() == 13, "{}: {} steps, want 13", s.name, range.len());
        let mut fired = Vec::new();
        for (k, (at, evaluation)) in range.iter().enumerate() {
            let index = first + k * aligned_step;
            anyhow::ensure!(*at == fixture.time_of(index), "{}: step {k} at {at:?}", s.name);
            let instant = evaluate_with(client, &slo, *at).await?;
            same(&format!("{} step {k}", s.name), evaluation, &instant)?;
            fired.push(check_at(s, &slo, evaluation, DEFAULT_MIN_EVENTS, index)?);
        }
        let last = fired.last().cloned().unwrap_or_default();
        assert_eq!(last, s.fires_default, "{}: the last step is the instant test's evaluation", s.name);
        if s.name == "fast" {
            assert_eq!(fired.first(), Some(&Vec::new()), "fast: nothing fires 2 h ago");
        }
        eprintln!("{}: rows firing per step {fired:?}", s.name);
    }

    // Not aligned: 5 s off the samples, an odd step; Prometheus extrapolates, the same way
    // for both.
    let fast = slo_for("fast")?;
    let start = end - Duration::from_secs(7200 - 5);
    let step = Duration::from_millis(7 * 60_000 + 13_250);
    let range = client.evaluate_range(&fast, start, end, step).await?;
    anyhow::ensure!(range.len() == 17, "{} steps, want 17", range.len());
    for (k, (at, evaluation)) in range.iter().enumerate() {
        anyhow::ensure!(*at == start + step * u32::try_from(k)?, "step {k} at {at:?}");
        same(&format!("fast unaligned step {k}"), evaluation, &evaluate_with(client, &fast, *at).await?)?;
    }
    let burns: Vec<Option<f64>> = range.iter().map(|(_, e)| e.rows[0].long_burn).collect();
    eprintln!("fast, unaligned: the first row's long burn per step {burns:?}");

    // The raw range query: a matrix of one series, at the steps asked for.
    let total = &fast.queries(fast.rows[0].long).total;
    let series = client.query_range(total, start, end, step).await?;
    assert_eq!(series.len(), 1, "{series:?}");
    assert_eq!(series[0].points.len(), 17);
    assert!(series[0].points.iter().all(|(_, v)| (*v - 14.0 * 6.0 * 40.0).abs() < 100.0), "{series:?}");

    // What Prometheus refuses is its answer, named.
    let refused = |e: Result<Vec<idp_watchdog::Series>, WatchdogError>, needle: &str| match e {
        Err(WatchdogError::Query { status: 400, ref error_type, ref error, .. }) if error_type == "bad_data" && error.contains(needle) => {
            eprintln!("refused as expected: {}", e.err().map(|e| e.to_string()).unwrap_or_default());
        }
        other => panic!("expected Prometheus to refuse ({needle}): {other:?}"),
    };
    refused(client.query_range(total, start, end, Duration::ZERO).await, "zero or negative query resolution step");
    refused(client.query_range(total, end, start, step).await, "end timestamp must not be before start time");
    refused(client.query_range(total, end - Duration::from_secs(86_400), end, Duration::from_secs(1)).await, "11,000 points");
    // evaluate_range refuses before asking.
    for (start, end, step, needle) in [
        (start, end, Duration::ZERO, "under 1 ms"),
        (end, start, step, "before the start"),
        (end - Duration::from_secs(86_400), end, Duration::from_secs(1), "11000"),
    ] {
        match client.evaluate_range(&fast, start, end, step).await {
            Err(WatchdogError::Range { reason }) if reason.contains(needle) => {}
            other => panic!("expected a range error ({needle}): {other:?}"),
        }
    }
    // A Prometheus that is not there: the URL in the error.
    let gone = Prometheus::new(&format!("http://127.0.0.1:{}", TcpListener::bind("127.0.0.1:0")?.local_addr()?.port()))?;
    let e = gone.evaluate_range(&fast, start, end, step).await;
    assert!(matches!(&e, Err(WatchdogError::Request { url, .. }) if url.contains("/api/v1/query_range?")), "{e:?}");
    Ok(())
}

/// The host's first global IPv4 address: the API server refuses to proxy to loopback, so
/// the Prometheus it reaches listens there.
fn host_address() -> Option<IpAddr> {
    let out = Command::new("ip").args(["-4", "-o", "addr", "show", "scope", "global"]).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().find_map(|line| {
        let mut words = line.split_whitespace().skip_while(|w| *w != "inet").skip(1);
        words.next()?.split('/').next()?.parse().ok()
    })
}

/// Server-side applies `value` (as the test's field manager) with the test bed's client.
async fn apply(client: &kube::Client, value: Value) -> anyhow::Result<()> {
    let text = |pointer: &str| value.pointer(pointer).and_then(Value::as_str).map(str::to_owned);
    let (Some(api_version), Some(kind), Some(name)) = (text("/apiVersion"), text("/kind"), text("/metadata/name")) else {
        anyhow::bail!("not an object: {value}");
    };
    let (group, version) = api_version.split_once('/').unwrap_or(("", &api_version));
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, &kind));
    let api: Api<DynamicObject> = match text("/metadata/namespace") {
        Some(ns) => Api::namespaced_with(client.clone(), &ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    let params = PatchParams::apply("idp-watchdog-test").force();
    api.patch(&name, &params, &Patch::Apply(&value)).await.map_err(|e| anyhow::anyhow!("apply {kind} {name}: {e}"))?;
    if let Some(status) = value.get("status") {
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&json!({ "status": status })))
            .await
            .map_err(|e| anyhow::anyhow!("status of {kind} {name}: {e}"))?;
    }
    Ok(())
}

fn pyrra_object(name: &str, target: &str, scenario: &str) -> Value {
    json!({
        "apiVersion": "pyrra.dev/v1alpha1",
        "kind": "ServiceLevelObjective",
        "metadata": {"name": name, "namespace": "monitoring"},
        "spec": {
            "target": target,
            "window": "7d",
            "indicator": {"ratio": {
                "errors": {"metric": format!("demo_errors_total{{scenario=\"{scenario}\"}}")},
                "total": {"metric": format!("demo_requests_total{{scenario=\"{scenario}\"}}")}
            }}
        }
    })
}

/// The SLOs as the lab has them: Pyrra `ServiceLevelObjective`s on the test bed's API
/// server (kube-apiserver 1.20 with Pyrra's CRD from the shared fixtures), listed by the
/// watchdog, and evaluated against a real Prometheus reached the way the daemon reaches
/// the lab's: through the API server's service proxy, at the Service the
/// kube-prometheus-stack component makes. The API server dials the Prometheus on this
/// host's global address (it refuses loopback), named by Endpoints and a pod whose status
/// the test writes as a kubelet would (there is none).
///
/// Before the CRD exists the list is empty and no error; a malformed object is reported by
/// name and the others are still evaluated; the evaluations through the proxy equal the
/// direct ones and the independently computed values; a Service that is not there is a
/// clear error naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slos_listed_from_the_cluster_are_evaluated_through_the_service_proxy() {
    const TEST: &str = "slos_listed_from_the_cluster_are_evaluated_through_the_service_proxy";
    let Some((prometheus_bin, promtool)) = tools(TEST) else { return };
    let _testbed = require!(Need::KubeBinaries, Need::SharedFixtures, Need::PythonYaml);
    let Some(ip) = host_address() else {
        let reason = "no global IPv4 address (`ip -4 addr show scope global`) for a Prometheus the API server may proxy to";
        assert!(!in_ci(), "CI=true and {reason}");
        report_skip(TEST, reason);
        return;
    };
    if let Err(e) = cluster_slos(&prometheus_bin, &promtool, ip).await {
        panic!("{e:#}");
    }
}

async fn cluster_slos(prometheus_bin: &Path, promtool: &Path, ip: IpAddr) -> anyhow::Result<()> {
    let fixture = backfill(promtool)?;
    let (cp, crds, server) =
        tokio::join!(ControlPlane::start_without_controller_manager(), downlevel_crd_fixtures(), serve(prometheus_bin, &fixture, ip));
    let (cp, crds, server) = (cp?, crds?, server?);
    let cluster = Cluster::from_kubeconfig(cp.kubeconfig(), None).await?;
    let client = cp.client();

    // No CRD yet: no SLOs, and no error.
    let none = slos::list(&cluster).await?;
    anyhow::ensure!(none.slos.is_empty() && none.invalid.is_empty(), "before the CRD: {none:?}");

    let pyrra: Vec<Value> = crds.into_iter().filter(|c| c.pointer("/spec/group").and_then(Value::as_str) == Some(slos::GROUP)).collect();
    anyhow::ensure!(pyrra.len() == 1, "one Pyrra CRD among the fixtures, found {}", pyrra.len());
    apply_crds(&client, &pyrra).await?;
    apply(&client, json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "monitoring"}})).await?;
    apply(&client, pyrra_object("demo-fast", TARGET, "fast")).await?;
    apply(&client, pyrra_object("demo-slow", TARGET, "slow")).await?;
    // Valid for the CRD's schema (a string), not as a percentage.
    apply(&client, pyrra_object("demo-broken", "150", "clean")).await?;

    let list = slos::list(&cluster).await?;
    assert_eq!(list.slos, vec![slo_for("fast")?, slo_for("slow")?], "the valid ones, parsed as from_pyrra parses them");
    assert_eq!(list.invalid.len(), 1, "{:?}", list.invalid);
    let broken = &list.invalid[0];
    assert_eq!(broken.object, "monitoring/demo-broken");
    assert!(matches!(broken.error, idp_core::slo::SloError::Target { .. }), "{broken}");
    eprintln!("reported: {broken}");

    // The lab's Prometheus Service, its Endpoints naming this host's Prometheus, and the
    // pod the Endpoints point at.
    let port = server.base.rsplit(':').next().and_then(|p| p.parse::<u16>().ok()).ok_or_else(|| anyhow::anyhow!("no port"))?;
    let ns = idp_watchdog::prometheus::LAB_NAMESPACE;
    let service = idp_watchdog::prometheus::LAB_SERVICE;
    let lab_port: u16 = idp_watchdog::prometheus::LAB_PORT.parse()?;
    apply(&client, json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})).await?;
    // The ServiceAccount admission wants the pod's account (no controller manager makes `default`).
    apply(&client, json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "prometheus", "namespace": ns}})).await?;
    apply(
        &client,
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "prometheus-0", "namespace": ns},
            "spec": {"nodeName": "stand-in-node", "serviceAccountName": "prometheus", "automountServiceAccountToken": false,
                "containers": [{"name": "prometheus", "image": "quay.io/prometheus/prometheus"}]},
            "status": {"phase": "Running", "podIP": ip.to_string(), "podIPs": [{"ip": ip.to_string()}],
                "conditions": [{"type": "Ready", "status": "True"}]}}),
    )
    .await?;
    apply(
        &client,
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": service, "namespace": ns},
            "spec": {"ports": [{"name": "http-web", "protocol": "TCP", "port": lab_port, "targetPort": port}]}}),
    )
    .await?;
    apply(
        &client,
        json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": service, "namespace": ns},
            "subsets": [{"addresses": [{"ip": ip.to_string(), "targetRef": {"kind": "Pod", "namespace": ns, "name": "prometheus-0"}}],
                "ports": [{"name": "http-web", "protocol": "TCP", "port": port}]}]}),
    )
    .await?;

    let lab = Prometheus::lab(&cluster);
    assert!(lab.base().starts_with(&format!("service {ns}/{service}:{lab_port} through https://")), "{}", lab.base());
    let at = fixture.at();
    for (slo, scenario) in list.slos.iter().zip(["fast", "slow"]) {
        let Some(s) = fixture.all.iter().find(|s| s.name == scenario) else { anyhow::bail!("no scenario {scenario}") };
        let proxied = evaluate_with(&lab, slo, at).await.map_err(|e| anyhow::anyhow!("{}\n{}", chain(&e), cp.log_tails(20)))?;
        same(&format!("{scenario} through the proxy"), &proxied, &evaluate_with(&server.client, slo, at).await?)?;
        assert_eq!(check(s, slo, &proxied, DEFAULT_MIN_EVENTS)?, s.fires_default, "{scenario}: rows fired");
        let start = at - Duration::from_secs(3600);
        let step = Duration::from_secs(600);
        let (through, direct) =
            (lab.evaluate_range(slo, start, at, step).await?, server.client.evaluate_range(slo, start, at, step).await?);
        anyhow::ensure!(through.len() == 7 && direct.len() == 7, "{} and {} steps", through.len(), direct.len());
        for ((t, a), (u, b)) in through.iter().zip(&direct) {
            anyhow::ensure!(t == u, "steps at {t:?} and {u:?}");
            same(&format!("{scenario} range through the proxy"), a, b)?;
        }
    }

    // A Service that is not there: the API server's refusal, naming it.
    let nowhere = Prometheus::in_cluster(&cluster, ns, "nowhere", "9090");
    let Err(e) = evaluate_with(&nowhere, &list.slos[0], at).await else { anyhow::bail!("a Service that does not exist answered") };
    let text = chain(&e);
    eprintln!("refused as expected: {text}");
    assert!(matches!(e, WatchdogError::Proxy { .. }) && text.contains("service observability/nowhere:9090"), "{text}");
    Ok(())
}

/// An error and its sources, `a: b: c`.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
