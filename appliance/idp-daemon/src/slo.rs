//! The watchdog's SLO loop: every `watchdog.slo_interval` (default 60 s) it lists the lab's
//! Pyrra `ServiceLevelObjective`s ([`idp_watchdog::slos::list`]), evaluates each at that
//! time through the Prometheus HTTP API ([`idp_watchdog::evaluate_with`]; `watchdog.prometheus`,
//! or the lab's own through the API server's service proxy) and records in the history:
//!
//! * an [`EventKind::SloSample`](idp_watchdog::EventKind::SloSample) per SLO and tick,
//!   subject `slo <namespace>/<name>`, body a [`SampleBody`] (typed in
//!   [`idp_watchdog::slos`], for whoever reads the history):
//!   `{"slo": "<ns>/<name>", "objective": 99.5, "window": "28d",
//!     "burn": {"<long>/<short>": {"long": 15.0, "short": 14.9, "factor": 14.4,
//!     "severity": "page", "fires": true, "low_traffic": false}, ...},
//!     "budget_remaining": 0.82, "firing": ["1h/5m"], "events": {"total": .., "bad": ..}}`
//!   (burn rates per row of the multi-window table, keyed by its windows as Prometheus
//!   writes durations; `null` for a window without events; the budget left over the SLO's
//!   window, below 0 when overspent; the rows that fire, in table order; the events over
//!   the SLO's window);
//! * an [`EventKind::Verdict`](idp_watchdog::EventKind::Verdict) when the set of firing
//!   rows of an SLO changes, same subject, body a [`VerdictBody`]:
//!   `{"slo", "firing", "was", "started", "stopped", "severity"}`
//!   (`severity`: the most urgent one firing now, `page`, `ticket` or `null`).
//!
//! A severity that starts firing (no row of it fired, one does now) is handed to the
//! playbook engine as [`Cause::Slo`], so a playbook with an `slo` trigger runs once per
//! incident of that severity, not again for every further row of it (a playbook whose
//! trigger takes `any` severity sees each severity that starts). The firing rows are
//! read back from the history's last verdict of each SLO when the loop starts, so neither
//! a reload nor a daemon restart records a verdict (or runs a playbook) for an SLO that
//! was already firing.
//!
//! Nothing stops the loop: an SLO list that does not read, an object that does not parse
//! (named, logged when the set of them changes) or a Prometheus that does not answer is
//! logged, kept in the tick's [`TickReport`], and the next tick tries again. An SLO whose
//! evaluation fails keeps its firing state (no verdict from a failed query).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use idp_core::config::SloSeverity;
use idp_core::slo::{Severity, Slo, format_duration};
use idp_kube::Cluster;
use idp_watchdog::slos::{self, SampleBody, VerdictBody, row_key, slo_id};
use idp_watchdog::{Cause, Event, History, Prometheus};

use crate::executor::LabEngine;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::network::chain;

/// The shortest interval the loop runs at (a `watchdog.slo_interval` below it is raised).
pub(crate) const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// Where the loop finds its SLOs.
#[derive(Clone, Debug)]
pub(crate) enum Source {
    /// Every `ServiceLevelObjective` of the lab's cluster, listed at each tick.
    Cluster(Cluster),
    /// A list given directly.
    #[cfg_attr(not(test), allow(dead_code))]
    Fixed(Vec<Slo>),
}

/// The clock the loop evaluates at.
pub(crate) type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// What one tick did; every failure in it was logged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TickReport {
    /// When it evaluated.
    pub at: Option<SystemTime>,
    /// The SLOs evaluated and recorded.
    pub evaluated: Vec<String>,
    /// The objects that do not parse, each with why.
    pub invalid: Vec<String>,
    /// The SLOs whose evaluation failed, with the error and its causes.
    pub failed: Vec<(String, String)>,
    /// Why the SLOs could not be listed, when they could not.
    pub list_error: Option<String>,
    /// The SLOs whose verdict changed.
    pub verdicts: Vec<String>,
    /// The playbook runs the changes started (recorded by the engine).
    pub runs: usize,
}

/// The loop's state: what it evaluates against, records into, and remembers.
pub(crate) struct SloLoop {
    source: Source,
    prometheus: Prometheus,
    history: Option<Arc<History>>,
    engine: Option<Arc<LabEngine>>,
    /// The firing rows of each SLO; `None` until read back from the history.
    firing: Option<BTreeMap<String, Vec<String>>>,
    /// The last error per SLO (logged once until it changes).
    errors: BTreeMap<String, String>,
    /// The last set of invalid objects (logged when it changes).
    invalid: Vec<String>,
    /// The last list error (logged once until it changes).
    list_error: Option<String>,
    /// The last tick, for status surfaces.
    last: Arc<std::sync::Mutex<Option<TickReport>>>,
}

impl SloLoop {
    /// A loop over `source` against `prometheus`, recording into `history` (none: the
    /// samples are only logged) and handing verdict changes to `engine`.
    pub(crate) fn new(source: Source, prometheus: Prometheus, history: Option<Arc<History>>, engine: Option<Arc<LabEngine>>) -> SloLoop {
        SloLoop {
            source,
            prometheus,
            history,
            engine,
            firing: None,
            errors: BTreeMap::new(),
            invalid: Vec::new(),
            list_error: None,
            last: Arc::default(),
        }
    }

    /// Where the last tick's report is kept (shared, for status surfaces).
    pub(crate) fn last_report(&self) -> Arc<std::sync::Mutex<Option<TickReport>>> {
        self.last.clone()
    }

    /// Runs a tick at once, then one every `interval` (at least [`MIN_INTERVAL`]; a tick
    /// that overruns delays the next) at the time `clock` tells, until `shutdown`.
    pub(crate) fn spawn(mut self, interval: Duration, clock: Clock, shutdown: CancellationToken) -> JoinHandle<()> {
        let interval = interval.max(MIN_INTERVAL);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tracing::info!(interval = %format_duration(interval), prometheus = self.prometheus.base(), "watchdog: evaluating the lab's SLOs");
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    _ = ticks.tick() => {}
                }
                let at = clock();
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    _ = self.tick(at) => {}
                }
            }
        })
    }

    /// Lists the SLOs, evaluates each at `at`, records samples and verdict changes and
    /// runs the playbooks the changes trigger.
    pub(crate) async fn tick(&mut self, at: SystemTime) -> TickReport {
        let mut report = TickReport { at: Some(at), ..TickReport::default() };
        if self.firing.is_none() {
            self.firing = Some(self.restore(at).await);
        }
        let slos = match self.list().await {
            Ok(slos) => slos,
            Err(e) => {
                if self.list_error.as_ref() != Some(&e) {
                    tracing::error!(error = %e, "watchdog: the lab's SLOs could not be listed (tried again every interval)");
                }
                self.list_error = Some(e.clone());
                report.list_error = Some(e);
                self.keep(&report);
                return report;
            }
        };
        if self.list_error.take().is_some() {
            tracing::info!("watchdog: the lab's SLOs are listed again");
        }
        report.invalid = slos.invalid.iter().map(ToString::to_string).collect();
        if report.invalid != self.invalid {
            for invalid in &report.invalid {
                tracing::warn!("watchdog: {invalid}");
            }
            self.invalid = report.invalid.clone();
        }
        let ids: BTreeSet<String> = slos.slos.iter().map(slo_id).collect();
        self.errors.retain(|id, _| ids.contains(id));
        if let Some(firing) = &mut self.firing {
            firing.retain(|id, _| ids.contains(id));
        }
        for slo in &slos.slos {
            let id = slo_id(slo);
            let evaluation = match idp_watchdog::evaluate_with(&self.prometheus, slo, at).await {
                Ok(evaluation) => evaluation,
                Err(e) => {
                    let text = chain(&e);
                    if self.errors.get(&id) != Some(&text) {
                        tracing::error!(slo = %id, error = %text, "watchdog: the SLO could not be evaluated (tried again every interval)");
                    } else {
                        tracing::debug!(slo = %id, error = %text, "watchdog: the SLO could not be evaluated");
                    }
                    self.errors.insert(id.clone(), text.clone());
                    report.failed.push((id, text));
                    continue;
                }
            };
            if self.errors.remove(&id).is_some() {
                tracing::info!(slo = %id, "watchdog: the SLO is evaluated again");
            }
            let sample = SampleBody::of(slo, &evaluation);
            self.record(sample.event(at)).await;
            report.evaluated.push(id.clone());
            let was = self.firing.as_ref().and_then(|f| f.get(&id)).cloned().unwrap_or_default();
            if was == sample.firing {
                continue;
            }
            let severity_of = |rows: &[String]| -> BTreeSet<Severity> {
                evaluation.rows.iter().filter(|r| rows.contains(&row_key(r.row.long, r.row.short))).map(|r| r.row.severity).collect()
            };
            let (before, now) = (severity_of(&was), severity_of(&sample.firing));
            let verdict = VerdictBody {
                slo: id.clone(),
                started: sample.firing.iter().filter(|r| !was.contains(r)).cloned().collect(),
                stopped: was.iter().filter(|r| !sample.firing.contains(r)).cloned().collect(),
                firing: sample.firing.clone(),
                was,
                severity: now.first().map(ToString::to_string),
            };
            tracing::info!(slo = %id, firing = ?verdict.firing, was = ?verdict.was, "watchdog: an SLO verdict changed");
            self.record(verdict.event(at)).await;
            if let Some(firing) = &mut self.firing {
                firing.insert(id.clone(), sample.firing.clone());
            }
            report.verdicts.push(id.clone());
            if let Some(engine) = &self.engine {
                for severity in now.difference(&before) {
                    let severity = match severity {
                        Severity::Page => SloSeverity::Page,
                        Severity::Ticket => SloSeverity::Ticket,
                    };
                    report.runs += engine.handle(&Cause::Slo { slo: id.clone(), severity }).await.len();
                }
            }
        }
        self.keep(&report);
        report
    }

    fn keep(&self, report: &TickReport) {
        *self.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(report.clone());
    }

    async fn list(&self) -> Result<slos::SloList, String> {
        match &self.source {
            Source::Cluster(cluster) => slos::list(cluster).await.map_err(|e| chain(&e)),
            Source::Fixed(list) => Ok(slos::SloList { slos: list.clone(), invalid: Vec::new() }),
        }
    }

    /// Each SLO's firing rows as its last verdict in the history says.
    async fn restore(&self, now: SystemTime) -> BTreeMap<String, Vec<String>> {
        let Some(history) = self.history.clone() else { return BTreeMap::new() };
        let read = tokio::task::spawn_blocking(move || history.since(SystemTime::UNIX_EPOCH)).await;
        let events = match read {
            Ok(Ok(events)) => events,
            Ok(Err(e)) => {
                tracing::warn!(error = %chain(&e), "watchdog: the SLO verdicts could not be read back; every firing SLO is a change");
                return BTreeMap::new();
            }
            Err(e) => {
                tracing::warn!(error = %e, "watchdog: the SLO verdicts could not be read back; every firing SLO is a change");
                return BTreeMap::new();
            }
        };
        let mut firing = BTreeMap::new();
        for verdict in events.iter().filter(|e| e.at <= now).filter_map(VerdictBody::from_event) {
            firing.insert(verdict.slo, verdict.firing);
        }
        firing
    }

    async fn record(&self, event: Event) {
        let Some(history) = self.history.clone() else { return };
        let (kind, subject) = (event.kind, event.subject.clone());
        match tokio::task::spawn_blocking(move || history.record(&event)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(event = %kind, subject = %subject, error = %chain(&e), "watchdog: an SLO event was not recorded"),
            Err(e) => tracing::warn!(event = %kind, subject = %subject, error = %e, "watchdog: an SLO event was not recorded"),
        }
    }
}

/// The Prometheus of `settings`: `watchdog.prometheus`, or the lab's own through the API
/// server's service proxy of `cluster`.
pub(crate) fn prometheus_for(
    settings: &idp_core::settings::WatchdogSettings,
    cluster: &Cluster,
) -> Result<Prometheus, idp_watchdog::WatchdogError> {
    match &settings.prometheus {
        Some(url) => Prometheus::new(url),
        None => Ok(Prometheus::lab(cluster)),
    }
}

#[cfg(test)]
mod tests {
    //! The loop against a real Prometheus (Debian's `prometheus` 2.42, series backfilled with
    //! its `promtool tsdb create-blocks-from openmetrics`, as the watchdog's own tests do),
    //! with the SLOs given directly: a clean one and a fast burn, both 1-day SLOs (the table
    //! scales by 1/30: 2m/10s, 12m/1m, 48m/4m, 2h24m/12m), evaluated at the time of the
    //! last sample so that every window holds whole 10 s steps and `increase()` is the plain
    //! difference of the generated counters. The expected burn rates are computed here from
    //! those counters, without `idp_core::slo`.
    //!
    //! Without `prometheus`/`promtool` the tests are skipped loudly; with `CI=true` they fail.

    use super::*;
    use idp_core::config::{self, FileKind, Playbook, RateLimit, Trigger};
    use idp_watchdog::{EventKind, Retention, RunStatus};
    use std::fmt::Write as _;
    use std::io::Write as _;
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::time::UNIX_EPOCH;

    const STEP: u64 = 10;
    /// 1 d + 1 h of steps.
    const STEPS: usize = ((86_400 + 3600) / STEP) as usize;
    /// Requests per step.
    const RATE: u64 = 40;
    const PERCENT: f64 = 99.5;

    /// Per-step increments of (total, errors); index 0 is the first sample (0, 0).
    fn scenario(name: &str) -> (Vec<u64>, Vec<u64>) {
        (0..=STEPS)
            .map(|i| match i {
                0 => (0, 0),
                // Fast: the last 5 minutes at 7.5 % errors (burn 15), else 1 in 1000 (burn 0.2).
                _ if name == "fast" && i > STEPS - 30 => (RATE, 3),
                _ => (RATE, u64::from(i.is_multiple_of(25))),
            })
            .unzip()
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

    fn slo(scenario: &str) -> Slo {
        let object = serde_json::json!({
            "apiVersion": "pyrra.dev/v1alpha1", "kind": "ServiceLevelObjective",
            "metadata": {"name": format!("demo-{scenario}"), "namespace": "monitoring"},
            "spec": {"target": "99.5", "window": "1d", "indicator": {"ratio": {
                "errors": {"metric": format!("demo_errors_total{{scenario=\"{scenario}\"}}")},
                "total": {"metric": format!("demo_requests_total{{scenario=\"{scenario}\"}}")}}}}
        });
        Slo::from_pyrra(&object).expect("a valid SLO")
    }

    fn in_ci() -> bool {
        std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true"))
    }

    /// A loud line on stderr and one in `IDP_LAB_SKIP_LOG`, as the test bed's skip rule.
    fn skip(test: &str, reason: &str) {
        assert!(!in_ci(), "CI=true and {reason}");
        let _ = std::io::stderr().lock().write_all(format!("\nSKIPPED: {test}: {reason}\n").as_bytes());
        if let Some(path) = std::env::var_os("IDP_LAB_SKIP_LOG").filter(|p| !p.is_empty()) {
            let line = format!("{test}\t{reason}\n");
            let written = std::fs::OpenOptions::new().create(true).append(true).open(&path).and_then(|mut f| f.write_all(line.as_bytes()));
            assert!(written.is_ok(), "cannot append to IDP_LAB_SKIP_LOG={}", path.display());
        }
    }

    fn find(tool: &str) -> Option<PathBuf> {
        std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join(tool)).find(|p| p.is_file())
    }

    /// The generated series backfilled into a TSDB, and a Prometheus over it.
    struct Fixture {
        dir: tempfile::TempDir,
        binary: PathBuf,
        /// The last sample's time.
        at: SystemTime,
        port: u16,
        process: Option<Child>,
    }

    impl Fixture {
        fn new(test: &str) -> Option<Fixture> {
            let (Some(binary), Some(promtool)) = (find("prometheus"), find("promtool")) else {
                skip(test, "prometheus/promtool not on PATH (apt-get install prometheus)");
                return None;
            };
            let dir = tempfile::tempdir().expect("a temporary folder");
            let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_secs();
            let end = now / 3600 * 3600 - 3600;
            let start = end - STEPS as u64 * STEP;
            let mut text = String::new();
            for (family, errors) in [("demo_requests", false), ("demo_errors", true)] {
                let _ = writeln!(text, "# HELP {family} Demo {family}.\n# TYPE {family} counter");
                for name in ["clean", "fast"] {
                    let (total, bad) = scenario(name);
                    for (i, c) in cumulative(if errors { &bad } else { &total }).iter().enumerate() {
                        let _ = writeln!(text, "{family}_total{{scenario=\"{name}\"}} {c} {}", start + i as u64 * STEP);
                    }
                }
            }
            text.push_str("# EOF\n");
            let input = dir.path().join("series.om");
            std::fs::write(&input, text).expect("write the series");
            let out = Command::new(promtool)
                .args(["tsdb", "create-blocks-from", "openmetrics", "-q"])
                .arg(&input)
                .arg(dir.path().join("tsdb"))
                .output()
                .expect("promtool runs");
            assert!(out.status.success(), "promtool failed: {}", String::from_utf8_lossy(&out.stderr));
            std::fs::write(dir.path().join("prometheus.yml"), "global:\n  scrape_interval: 1h\n").expect("config");
            let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port");
            Some(Fixture { dir, binary, at: UNIX_EPOCH + Duration::from_secs(end), port, process: None })
        }

        fn base(&self) -> String {
            format!("http://127.0.0.1:{}", self.port)
        }

        /// Starts Prometheus on the fixture's port and waits until it answers.
        async fn start(&mut self) {
            let dir = self.dir.path();
            let log = std::fs::File::create(dir.join("prometheus.log")).expect("log");
            let child = Command::new(&self.binary)
                .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
                .arg(format!("--storage.tsdb.path={}", dir.join("tsdb").display()))
                .arg(format!("--web.listen-address=127.0.0.1:{}", self.port))
                .arg("--storage.tsdb.retention.time=60d")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("prometheus starts");
            self.process = Some(child);
            let client = Prometheus::new(&self.base()).expect("a client");
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while client.instant_number("vector(1)", self.at).await.is_err() {
                let log = std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default();
                assert!(std::time::Instant::now() < deadline, "Prometheus did not become ready:\n{log}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }

        fn stop(&mut self) {
            if let Some(mut child) = self.process.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            self.stop();
        }
    }

    /// The burn rates of a row, computed from the generated counters.
    fn expected(scenario_name: &str, long: Duration, short: Duration) -> (f64, f64) {
        let (total, bad) = scenario(scenario_name);
        let (total, bad) = (cumulative(&total), cumulative(&bad));
        let budget = (100.0 - PERCENT) / 100.0;
        let burn = |w: Duration| {
            let k = usize::try_from(w.as_secs() / STEP).expect("small");
            assert!(w.as_millis().is_multiple_of(u128::from(STEP * 1000)), "{w:?} is not whole steps");
            let (t, b) = ((total[STEPS] - total[STEPS - k]) as f64, (bad[STEPS] - bad[STEPS - k]) as f64);
            (b / t) / budget
        };
        (burn(long), burn(short))
    }

    fn close(got: f64, want: f64) -> bool {
        if want == 0.0 { got.abs() < 1e-12 } else { ((got - want) / want).abs() <= 1e-6 }
    }

    fn open_history(dir: &Path) -> Arc<History> {
        Arc::new(History::open(&dir.join("watchdog.sled"), Retention::default()).expect("the history opens"))
    }

    fn engine(history: &Arc<History>) -> Arc<LabEngine> {
        let playbook = Playbook {
            name: "page-on-fast-burn".into(),
            triggers: vec![Trigger::Slo { slo: "demo-fast".into(), severity: SloSeverity::Page }],
            actions: vec![idp_core::config::Action::Webhook { url: "http://127.0.0.1:9/hook".into(), timeout: 1 }],
            rate_limit: RateLimit { runs: 5, per: 600 },
            cooldown: 0,
            dry_run: true,
        };
        // A dry run: the executor is never asked.
        let executor = crate::executor::LabExecutor::new(Path::new("/nonexistent"), "demo");
        Arc::new(idp_watchdog::Engine::new(vec![playbook], history.clone(), executor))
    }

    fn events(history: &History, kind: EventKind) -> Vec<Event> {
        history.since(UNIX_EPOCH).expect("the history reads").into_iter().filter(|e| e.kind == kind).collect()
    }

    /// One tick records a sample per SLO with the burn rates computed independently, a
    /// verdict for the fast burn only, and runs the playbook its page severity triggers (a
    /// dry run); a second tick with the same verdicts records samples and no verdict; a new
    /// loop over the same history (a restart) records no verdict for what already fired.
    /// Prometheus gone: each SLO's error is reported (and logged), nothing is recorded, and
    /// the next tick after Prometheus is back works again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_tick_records_samples_and_verdicts_and_survives_prometheus_going_away() {
        let Some(mut fixture) = Fixture::new("a_tick_records_samples_and_verdicts_and_survives_prometheus_going_away") else { return };
        fixture.start().await;
        let state = tempfile::tempdir().expect("state");
        let history = open_history(state.path());
        let prometheus = Prometheus::new(&fixture.base()).expect("a client");
        let source = Source::Fixed(vec![slo("clean"), slo("fast")]);
        let mut slo_loop = SloLoop::new(source.clone(), prometheus.clone(), Some(history.clone()), Some(engine(&history)));
        let at = fixture.at;

        let report = slo_loop.tick(at).await;
        assert_eq!(report.evaluated, ["monitoring/demo-clean", "monitoring/demo-fast"], "{report:?}");
        assert!(report.failed.is_empty() && report.list_error.is_none(), "{report:?}");
        assert_eq!(report.verdicts, ["monitoring/demo-fast"]);
        assert_eq!(report.runs, 1, "the page severity started: one playbook run");

        let samples = events(&history, EventKind::SloSample);
        assert_eq!(samples.len(), 2, "{samples:#?}");
        for event in &samples {
            assert_eq!(event.at, at);
            let body = SampleBody::from_event(event).expect("a sample body");
            let name = body.slo.trim_start_matches("monitoring/demo-").to_owned();
            assert_eq!(event.subject, format!("slo {}", body.slo));
            assert_eq!((body.objective, body.window.as_str()), (99.5, "1d"));
            let rows: Vec<&str> = body.burn.keys().map(String::as_str).collect();
            assert_eq!(rows, ["12m/1m", "2h24m/12m", "2m/10s", "48m/4m"], "every row of the scaled table");
            for (key, burn) in &body.burn {
                let (long, short) = key.split_once('/').expect("long/short");
                let parse = |d: &str| idp_core::slo::parse_duration(d).expect("a duration");
                let (want_long, want_short) = expected(&name, parse(long), parse(short));
                let (Some(got_long), Some(got_short)) = (burn.long, burn.short) else { panic!("{key}: no burn rate: {burn:?}") };
                assert!(close(got_long, want_long), "{name} {key}: long burn {got_long} want {want_long}");
                assert!(close(got_short, want_short), "{name} {key}: short burn {got_short} want {want_short}");
                assert_eq!(burn.fires, body.firing.contains(key));
            }
            let (total, bad) = scenario(&name);
            let (t, b) =
                (cumulative(&total)[STEPS] - cumulative(&total)[STEPS - 8640], cumulative(&bad)[STEPS] - cumulative(&bad)[STEPS - 8640]);
            assert_eq!((body.events.total, body.events.bad), (t as f64, b as f64), "{name}: events over the day");
            let want_budget = 1.0 - b as f64 / ((100.0 - PERCENT) / 100.0 * t as f64);
            assert!(close(body.budget_remaining, want_budget), "{name}: budget {} want {want_budget}", body.budget_remaining);
            let want_firing: &[&str] = if name == "fast" { &["2m/10s", "12m/1m"] } else { &[] };
            assert_eq!(body.firing, want_firing, "{name}: the fast rows fire for the fast burn only");
            eprintln!("{}", serde_json::to_string(&event.body).unwrap_or_default());
        }
        let verdicts = events(&history, EventKind::Verdict);
        assert_eq!(verdicts.len(), 1, "{verdicts:#?}");
        let verdict = VerdictBody::from_event(&verdicts[0]).expect("a verdict body");
        assert_eq!(verdicts[0].subject, "slo monitoring/demo-fast");
        assert_eq!(
            verdict,
            VerdictBody {
                slo: "monitoring/demo-fast".into(),
                firing: vec!["2m/10s".into(), "12m/1m".into()],
                was: vec![],
                started: vec!["2m/10s".into(), "12m/1m".into()],
                stopped: vec![],
                severity: Some("page".into()),
            }
        );
        let runs = events(&history, EventKind::PlaybookRun);
        assert_eq!(runs.len(), 1, "{runs:#?}");
        let run: idp_watchdog::Run = serde_json::from_value(runs[0].body.clone()).expect("a run");
        assert_eq!((run.playbook.as_str(), run.status), ("page-on-fast-burn", RunStatus::DryRun));
        assert_eq!(run.trigger, Cause::Slo { slo: "monitoring/demo-fast".into(), severity: SloSeverity::Page });

        // Same verdicts: samples, no verdict, no run.
        let report = slo_loop.tick(at).await;
        assert!(report.verdicts.is_empty() && report.runs == 0, "{report:?}");
        assert_eq!(events(&history, EventKind::SloSample).len(), 4);
        assert_eq!(events(&history, EventKind::Verdict).len(), 1);

        // A restart: the firing rows are read back, so nothing is a change.
        let mut restarted = SloLoop::new(source.clone(), prometheus.clone(), Some(history.clone()), Some(engine(&history)));
        let report = restarted.tick(at).await;
        assert!(report.verdicts.is_empty() && report.runs == 0, "after a restart: {report:?}");
        assert_eq!(events(&history, EventKind::PlaybookRun).len(), 1);

        // Prometheus goes away: a clear error per SLO, nothing recorded, no panic.
        fixture.stop();
        let report = slo_loop.tick(at).await;
        assert!(report.evaluated.is_empty() && report.verdicts.is_empty(), "{report:?}");
        assert_eq!(report.failed.len(), 2, "{report:?}");
        for (slo, error) in &report.failed {
            eprintln!("{slo}: {error}");
            assert!(error.contains(&format!("failed to query {}/api/v1/query?", fixture.base())), "{slo}: {error}");
            assert!(error.to_lowercase().contains("connect"), "{slo}: the cause is named: {error}");
        }
        assert_eq!(events(&history, EventKind::SloSample).len(), 6);

        // It is back: the next tick works, and the verdicts held across the failure.
        fixture.start().await;
        let report = slo_loop.tick(at).await;
        assert_eq!(report.evaluated.len(), 2, "{report:?}");
        assert!(report.failed.is_empty() && report.verdicts.is_empty(), "{report:?}");
        assert_eq!(events(&history, EventKind::SloSample).len(), 8);

        // An hour earlier, before the burn (any time will do for the loop): the verdict clears.
        let earlier = at - Duration::from_secs(3600);
        let report = slo_loop.tick(earlier).await;
        assert_eq!(report.verdicts, ["monitoring/demo-fast"], "{report:?}");
        let verdicts = events(&history, EventKind::Verdict);
        assert_eq!(verdicts.len(), 2, "{verdicts:#?}");
        let Some(cleared) = verdicts.iter().find(|v| v.at == earlier) else { panic!("no verdict at {earlier:?}: {verdicts:#?}") };
        let cleared = VerdictBody::from_event(cleared).expect("a verdict body");
        assert_eq!((cleared.firing.len(), cleared.stopped.len(), cleared.severity.as_deref()), (0, 2, None), "{cleared:?}");
        assert_eq!(report.runs, 0, "a verdict that clears runs nothing");
    }

    /// The spawned loop: it starts while Prometheus is not there (each tick fails, logged),
    /// keeps going, and records samples once Prometheus starts; it ends on shutdown.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_loop_goes_on_until_prometheus_is_there_and_stops_on_shutdown() {
        let Some(mut fixture) = Fixture::new("the_loop_goes_on_until_prometheus_is_there_and_stops_on_shutdown") else { return };
        let state = tempfile::tempdir().expect("state");
        let history = open_history(state.path());
        let prometheus = Prometheus::new(&fixture.base()).expect("a client");
        let slo_loop = SloLoop::new(Source::Fixed(vec![slo("fast")]), prometheus, Some(history.clone()), None);
        let last = slo_loop.last_report();
        let at = fixture.at;
        let shutdown = CancellationToken::new();
        let task = slo_loop.spawn(Duration::from_millis(100), Arc::new(move || at), shutdown.clone());

        let failed = |last: &Arc<std::sync::Mutex<Option<TickReport>>>| {
            last.lock().ok().and_then(|l| l.as_ref().map(|r| r.failed.len())).unwrap_or(0)
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while failed(&last) == 0 {
            assert!(std::time::Instant::now() < deadline, "no failed tick while Prometheus is not there");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(!task.is_finished(), "the loop goes on after a failure");
        assert!(events(&history, EventKind::SloSample).is_empty());

        fixture.start().await;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while events(&history, EventKind::SloSample).is_empty() {
            assert!(std::time::Instant::now() < deadline, "no sample after Prometheus started");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(events(&history, EventKind::Verdict).len(), 1, "the fast burn's verdict, once");
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), task).await.expect("the loop ends on shutdown").expect("no panic");
    }

    /// `watchdog.slo_interval` and `watchdog.prometheus` reach the settings; a Prometheus
    /// URL that is not plain HTTP is refused where it is written.
    #[test]
    fn the_keys_reach_the_settings_and_a_bad_url_is_refused() {
        let settings = |text: &str| {
            let file = config::parse_file(text, "idp-lab.toml", FileKind::Config, &[]).map_err(|e| format!("{e:?}"))?;
            let c = config::resolve(&[&config::defaults(), &file.layer]).map_err(|e| e.to_string())?;
            idp_core::settings::WatchdogSettings::from_config(&c.watchdog).map_err(|e| e.to_string())
        };
        let defaults = settings("").expect("the defaults");
        assert_eq!((defaults.slo_interval, defaults.prometheus.as_deref()), (Duration::from_secs(60), None));
        let set = settings("[watchdog]\nslo_interval = \"15s\"\nprometheus = \"http://127.0.0.1:9090/prom\"\n").expect("valid");
        assert_eq!((set.slo_interval, set.prometheus.as_deref()), (Duration::from_secs(15), Some("http://127.0.0.1:9090/prom")));
        for bad in ["https://prometheus:9090", "prometheus:9090", "http://:9090", "http://127.0.0.1:9090/?a=b"] {
            let e = settings(&format!("[watchdog]\nprometheus = \"{bad}\"\n")).expect_err(bad);
            assert!(e.contains("idp-lab.toml:2:") && e.contains("watchdog.prometheus") && e.contains(bad), "{bad}: {e}");
        }
    }
}
