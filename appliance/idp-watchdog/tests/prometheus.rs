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
//! Without `prometheus`/`promtool` the test is skipped loudly; with `CI=true` it fails.

use idp_core::slo::{DEFAULT_MIN_EVENTS, LowTrafficGuard, Slo};
use idp_watchdog::{Evaluation, Prometheus, evaluate, evaluate_with};
use serde_json::json;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::TcpListener;
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

/// `idp_test::testbed::in_ci`, repeated so this crate does not build the test bed's kube stack.
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true"))
}

/// `idp_test::testbed::report_skip`: a loud line on stderr and a line in `IDP_LAB_SKIP_LOG`.
fn report_skip(test: &str, reason: &str) {
    let _ = std::io::stderr().lock().write_all(format!("\nSKIPPED: {test}: {reason}\n").as_bytes());
    let Some(path) = std::env::var_os("IDP_LAB_SKIP_LOG").filter(|p| !p.is_empty()) else { return };
    let record = format!("{test}\t{reason}\n");
    let written = std::fs::OpenOptions::new().create(true).append(true).open(&path).and_then(|mut f| f.write_all(record.as_bytes()));
    if let Err(e) = written {
        panic!("cannot append the skip of {test} to IDP_LAB_SKIP_LOG={}: {e}", path.display());
    }
}

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
    let total = cumulative(&s.total);
    let errors = cumulative(&s.errors);
    let budget = (100.0 - PERCENT) / 100.0;
    let over = |w: Duration| -> anyhow::Result<(f64, f64)> {
        let k = usize::try_from(w.as_secs() / STEP)?;
        anyhow::ensure!(w.as_millis().is_multiple_of(u128::from(STEP * 1000)), "window {w:?} is not a multiple of the step");
        Ok(((total[STEPS] - total[STEPS - k]) as f64, (errors[STEPS] - errors[STEPS - k]) as f64))
    };
    let (wt, wb) = over(slo.window)?;
    let want_budget = 1.0 - wb / (budget * wt);
    anyhow::ensure!(close(e.budget_remaining, want_budget), "{}: budget {} want {want_budget}", s.name, e.budget_remaining);
    anyhow::ensure!(e.window.total() == wt && e.window.bad() == wb, "{}: window counts {:?} want {wt}/{wb}", s.name, e.window);
    let mut fired = Vec::new();
    for (i, row) in e.rows.iter().enumerate() {
        let (lt, lb) = over(row.row.long)?;
        let (st, sb) = over(row.row.short)?;
        let (want_long, want_short) = ((lb / lt) / budget, (sb / st) / budget);
        let (Some(long), Some(short)) = (row.long_burn, row.short_burn) else {
            anyhow::bail!("{}: row {i} has no burn rate: {row:?}", s.name);
        };
        anyhow::ensure!(close(long, want_long), "{}: row {i} long burn {long} want {want_long}", s.name);
        anyhow::ensure!(close(short, want_short), "{}: row {i} short burn {short} want {want_short}", s.name);
        let want_fire = lt >= min_events && want_long > row.row.factor && want_short > row.row.factor;
        anyhow::ensure!(row.fires == want_fire, "{}: row {i} fires={} want {want_fire}: {row:?}", s.name, row.fires);
        if row.fires {
            fired.push(i);
        }
    }
    Ok(fired)
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
    let (Some(prometheus_bin), Some(promtool)) = (find("prometheus"), find("promtool")) else {
        let reason = "prometheus/promtool not on PATH (apt-get install prometheus)";
        assert!(!in_ci(), "CI=true and {reason}");
        report_skip("slo_burn_rates_against_real_prometheus", reason);
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let end = now / 3600 * 3600 - 3600;
    let start = end - STEPS as u64 * STEP;
    let all = scenarios();
    let input = dir.path().join("series.om");
    write_openmetrics(&input, start, &all)?;
    let tsdb = dir.path().join("tsdb");
    let out = Command::new(&promtool).args(["tsdb", "create-blocks-from", "openmetrics", "-q"]).arg(&input).arg(&tsdb).output()?;
    anyhow::ensure!(out.status.success(), "promtool failed: {}", String::from_utf8_lossy(&out.stderr));

    let config = dir.path().join("prometheus.yml");
    std::fs::write(&config, "global:\n  scrape_interval: 1h\n  evaluation_interval: 1h\n")?;
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let log = std::fs::File::create(dir.path().join("prometheus.log"))?;
    let _server = Killed(
        Command::new(&prometheus_bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", tsdb.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--storage.tsdb.retention.time=60d")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?,
    );
    let base = format!("http://127.0.0.1:{port}");
    let client = Prometheus::new(&base)?;
    let at = UNIX_EPOCH + Duration::from_secs(end);
    if let Err(e) = wait_ready(&client, at).await {
        let log = std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default();
        anyhow::bail!("{e}\n{log}");
    }

    for s in &all {
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
