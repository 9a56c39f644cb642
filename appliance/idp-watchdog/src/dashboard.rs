//! The watchdog's dashboard, its JSON API and `/metrics`. A constructor only, like the
//! receiver ([`crate::receiver`]): the daemon binds the socket (loopback,
//! `watchdog.dashboard_port`) and serves connections with hyper; [`router`] makes the
//! service from a [`Source`] the daemon fills and the API's token.
//!
//! | request                          | answer |
//! | -------------------------------- | ------ |
//! | `GET /`                          | the dashboard: HTML, CSS and JS embedded in the binary (no CDN, no external font: it works offline). Its JS takes `?token=` once, keeps it in `sessionStorage`, removes it from the address bar and sends it as `Authorization: Bearer`; without it the page says it needs the token and shows no data |
//! | `GET /dashboard.css`, `/dashboard.js` | its assets |
//! | `GET /api/v1/health`             | `{"lab": Rollup, "components": [Rollup]}` ([`idp_core::health::Rollup`]) |
//! | `GET /api/v1/drift`              | `{"objects": [ObjectDrift], "stats": DriftStats or null}`; the values of a Secret's `data` and `stringData` fields are hidden |
//! | `GET /api/v1/history?since=`     | `{"events": [Event]}` since then (see below; default: all kept, at most [`crate::history::SINCE_LIMIT`], the newest), oldest first; `&kind=drift` (`verdict`, `slo-sample`, `playbook-run`) keeps one kind |
//! | `GET /api/v1/slos?since=`        | `{"slos": [{"slo", "latest", "samples": [...]}]}`: each SLO's samples ([`SloSample`] with its time, `at`, in Unix ms) since then (default: 24 h), at most [`MAX_POINTS`] each, for its chart |
//! | `GET /api/v1/playbooks`          | `{"playbooks": [...]}`: each configured playbook (and each that ran and is no longer configured) with its runs by status, its last run and its 20 latest ([`crate::Run`]) |
//! | `GET /metrics`                   | the Prometheus text exposition (version 0.0.4), or OpenMetrics 1.0 when `Accept` asks for it; **no token** (so the lab's Prometheus scrapes it) and no secrets: names and numbers only |
//! | anything else                    | 404 (405 for a known path with another method) |
//!
//! **The token.** Every `/api/` request needs `Authorization: Bearer <token>`, the
//! contents of `<state>/watchdog-token` ([`load_or_create_token`], mode 0600); without
//! it, or with another, the answer is 401 with a JSON error. Tokens are compared in
//! constant time ([`tokens_match`]).
//!
//! **`since`:** whole seconds since the Unix epoch (`since=1767261600`), milliseconds
//! (`since_ms=1767261600000`), or a duration before now (`since=30m`, `12h`, `7d`).
//!
//! **SLO samples** are [`crate::EventKind::SloSample`] events whose body is a
//! [`SloSample`]: `{"slo": "monitoring/api", "burn": {"1h": 2.5, "5m": 14.9, ...},
//! "budget_remaining": 0.82, "firing": ["1h/5m"], "objective": 99.5}` (the burn rate per
//! window, `null` for a window without events; the fraction of the error budget left over
//! the SLO's window, below 0 when it is spent). [`SloSample::of`] makes one from an
//! evaluation and [`SloSample::event`] its event. Burn rates keyed by row instead
//! (`"1h/5m": {"long": 15.0, "short": 14.9, ...}`) are read as the rates of its two windows.
//! A body that does not read as a sample is left out.
//!
//! **`/metrics`** (prefix `idp_watchdog_`): `drift_objects{component,state}`,
//! `health{component,health}` (1 for the verdict, 0 for the others; `component="lab"` is
//! the lab's), `slo_burn_rate{slo,window}` and `slo_budget_remaining{slo}` (from each SLO's
//! latest sample of the last hour), `playbook_runs_total{playbook,status}`,
//! `playbook_last_run_timestamp_seconds{playbook}`, the drift engine's state and counters
//! (`drift_engine_running`, `drift_ready`, `drift_managed_objects`, `drift_watches`,
//! `drift_in_flight`, `drift_watch_events_total`, `drift_watch_errors_total`,
//! `drift_dry_runs_total`, `drift_cache_hits_total`, `drift_detected_total`,
//! `drift_heals_total`, `drift_heal_failures_total`, `drift_contested_total`,
//! `drift_failures_total`, `drift_resyncs_total`, and the watch lag:
//! `drift_watch_lag_seconds`, `drift_watch_lag_max_seconds`) and the history's size
//! (`history_up`, `history_events`, `history_bytes`).
//!
//! Playbook runs and the latest SLO samples are read from the history incrementally: the
//! first scrape (or `/api/v1/playbooks`) reads the newest [`INDEX_FIRST_READ`] events,
//! each later one only the last hour again (a run is recorded when its actions are done,
//! dated when it was decided), counting no event twice.

use crate::drift::{DriftStats, ObjectDrift};
use crate::history::{Event, EventKind, History, SINCE_LIMIT};
use crate::playbook::Run;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::{Body, Bytes};
use idp_core::config::Playbook;
use idp_core::health::{self, Health, Rollup};
use idp_core::slo::{Evaluation, Slo, format_duration};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::convert::Infallible;
use std::future::Future;
use std::io::{Read as _, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The token's file in the lab's state directory.
pub const TOKEN_FILE: &str = "watchdog-token";

/// The most samples per SLO `/api/v1/slos` returns (evenly thinned, the newest kept).
pub const MAX_POINTS: usize = 480;

/// How many events the playbook and SLO index reads from the history at first.
pub const INDEX_FIRST_READ: usize = 50_000;

/// How far back each later read of the index goes again.
const INDEX_OVERLAP: Duration = Duration::from_secs(3600);

/// The newest runs of each playbook kept for `/api/v1/playbooks`.
const RECENT_RUNS: usize = 20;

/// How old an SLO's latest sample may be for `/metrics` to give its burn rates.
const METRICS_SLO_FRESH: Duration = Duration::from_secs(3600);

/// How far back `/api/v1/slos` goes without `since`.
const SLOS_DEFAULT_SINCE: Duration = Duration::from_secs(86_400);

/// The events `/api/v1/slos` reads at most (every kind: the SLO samples are among them).
const SLOS_READ_LIMIT: usize = 50_000;

const INDEX_HTML: &str = include_str!("dashboard/index.html");
const DASHBOARD_CSS: &str = include_str!("dashboard/dashboard.css");
const DASHBOARD_JS: &str = include_str!("dashboard/dashboard.js");

/// The page may load only itself: no CDN, no inline script, no frame around it.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
const JSON: &str = "application/json";

/// Why the token could not be read or made.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// A file or folder could not be read or written.
    #[error("failed to {action} {}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The token file holds something that is not a token.
    #[error("{} does not hold a watchdog token ({reason}); remove it and the daemon makes a new one", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// The API's token of the lab whose state directory is `dir`: the contents of
/// `<dir>/watchdog-token`, made on first use from 32 random bytes of `/dev/urandom` (64 hex
/// digits) with mode 0600. The same token on every call; a file readable by others is
/// restricted to 0600 again. Two callers at once get the same token (the file is
/// written under a temporary name and linked into place only if it is not there).
pub fn load_or_create_token(dir: &Path) -> Result<String, TokenError> {
    let path = dir.join(TOKEN_FILE);
    fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> TokenError + 'a {
        move |source| TokenError::Io { action, path: path.to_path_buf(), source }
    }
    match read_token(&path) {
        Ok(token) => return Ok(token),
        Err(TokenError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::create_dir_all(dir).map_err(io("create", dir))?;
    let mut random = [0u8; 32];
    let urandom = Path::new("/dev/urandom");
    std::fs::File::open(urandom).and_then(|mut f| f.read_exact(&mut random)).map_err(io("read", urandom))?;
    let token: String = random.iter().map(|b| format!("{b:02x}")).collect();
    // A name of its own per call (the token's first digits): callers at once never share it.
    let tmp = dir.join(format!(".{TOKEN_FILE}.{}.{}", std::process::id(), &token[..16]));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(format!("{token}\n").as_bytes()).and_then(|()| f.sync_all()));
    written.map_err(io("write", &tmp))?;
    let linked = std::fs::hard_link(&tmp, &path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(token),
        // Another caller placed its token first: that one is the lab's.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read_token(&path),
        Err(source) => Err(TokenError::Io { action: "place", path, source }),
    }
}

fn read_token(path: &Path) -> Result<String, TokenError> {
    let io = |action| move |source| TokenError::Io { action, path: path.to_path_buf(), source };
    let text = std::fs::read_to_string(path).map_err(io("read"))?;
    let token = text.trim();
    if token.len() < 32 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(TokenError::Invalid { path: path.to_path_buf(), reason: "expected at least 32 hex digits".to_owned() });
    }
    let mode = std::fs::metadata(path).map_err(io("inspect"))?.permissions().mode();
    if mode & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io("restrict"))?;
    }
    Ok(token.to_owned())
}

/// Whether `given` equals `expected`, in a time that depends only on their lengths (the
/// token's length is no secret: always 64 hex digits).
pub fn tokens_match(given: &[u8], expected: &[u8]) -> bool {
    if given.len() != expected.len() {
        return false;
    }
    let difference = given.iter().zip(expected).fold(0u8, |acc, (a, b)| acc | (a ^ b));
    std::hint::black_box(difference) == 0
}

/// What the dashboard shows, as the daemon has it now.
pub trait Source: Send + Sync + 'static {
    /// The objects drifted now ([`crate::DriftHandle::snapshot`]; empty when nothing is
    /// watched).
    fn drift(&self) -> impl Future<Output = Vec<ObjectDrift>> + Send;
    /// The drift engine's counters ([`crate::DriftHandle::stats`]); `None` while no engine
    /// runs.
    fn drift_stats(&self) -> impl Future<Output = Option<DriftStats>> + Send;
    /// Each component's health; the lab's is rolled up from them ([`health::lab`]).
    fn health(&self) -> impl Future<Output = Vec<Rollup>> + Send;
    /// The history, or why there is none.
    fn history(&self) -> Result<Arc<History>, String>;
    /// The playbooks configured.
    fn playbooks(&self) -> Vec<Playbook>;
}

/// A [`Source`] of fixed values: for a daemon that has nothing live to show, and for tests.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The objects drifted.
    pub drift: Vec<ObjectDrift>,
    /// The drift engine's counters.
    pub stats: Option<DriftStats>,
    /// Each component's health.
    pub health: Vec<Rollup>,
    /// The playbooks configured.
    pub playbooks: Vec<Playbook>,
    /// The history.
    pub history: Option<Arc<History>>,
}

impl Source for Snapshot {
    async fn drift(&self) -> Vec<ObjectDrift> {
        self.drift.clone()
    }

    async fn drift_stats(&self) -> Option<DriftStats> {
        self.stats.clone()
    }

    async fn health(&self) -> Vec<Rollup> {
        self.health.clone()
    }

    fn history(&self) -> Result<Arc<History>, String> {
        self.history.clone().ok_or_else(|| "the watchdog has no history".to_owned())
    }

    fn playbooks(&self) -> Vec<Playbook> {
        self.playbooks.clone()
    }
}

/// One evaluation of an SLO, as the body of an [`EventKind::SloSample`] event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SloSample {
    /// The SLO: `namespace/name`, or `name`.
    pub slo: String,
    /// The burn rate per window (`5m`, `1h`, ...: Prometheus durations); `None` (`null`)
    /// for a window without events.
    pub burn: BTreeMap<String, Option<f64>>,
    /// The fraction of the error budget left over the SLO's window (below 0 when spent;
    /// `null` when unknown).
    #[serde(default)]
    pub budget_remaining: Option<f64>,
    /// The rows that fire, as `long/short` (`1h/5m`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub firing: Vec<String>,
    /// The objective, in percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objective: Option<f64>,
}

impl SloSample {
    /// The sample of `slo`'s `evaluation`: each row's long and short burn rates by window.
    pub fn of(slo: &Slo, evaluation: &Evaluation) -> SloSample {
        let mut burn = BTreeMap::new();
        let mut firing = Vec::new();
        for row in &evaluation.rows {
            let (long, short) = (format_duration(row.row.long), format_duration(row.row.short));
            if row.fires {
                firing.push(format!("{long}/{short}"));
            }
            burn.insert(long, row.long_burn.filter(|b| b.is_finite()));
            burn.insert(short, row.short_burn.filter(|b| b.is_finite()));
        }
        let name = match &slo.namespace {
            Some(namespace) => format!("{namespace}/{}", slo.name),
            None => slo.name.clone(),
        };
        SloSample {
            slo: name,
            burn,
            budget_remaining: Some(evaluation.budget_remaining).filter(|b| b.is_finite()),
            firing,
            objective: Some(slo.objective.percent()),
        }
    }

    /// Its history event at `at`, with subject `slo <name>`.
    pub fn event(&self, at: SystemTime) -> Event {
        Event::new(at, EventKind::SloSample, format!("slo {}", self.slo), serde_json::to_value(self).unwrap_or_default())
    }

    /// The sample an event carries: its body, with the event's subject as the name when the
    /// body has none. Burn rates keyed by row (`"1h/5m": {"long": 15.0, "short": 14.9, ...}`,
    /// as the daemon's SLO loop writes them) are read as the rates of those two windows.
    pub fn from_event(event: &Event) -> Option<SloSample> {
        if event.kind != EventKind::SloSample {
            return None;
        }
        let mut body = event.body.clone();
        let map = body.as_object_mut()?;
        if !map.contains_key("slo") {
            let name = event.subject.strip_prefix("slo ").unwrap_or(&event.subject);
            map.insert("slo".to_owned(), Value::String(name.to_owned()));
        }
        if let Some(Value::Object(burn)) = map.get_mut("burn") {
            let mut windows = serde_json::Map::new();
            for (key, value) in std::mem::take(burn) {
                match (key.split_once('/'), value) {
                    (Some((long, short)), Value::Object(row)) => {
                        for (window, side) in [(long, "long"), (short, "short")] {
                            let rate = row.get(side).cloned().unwrap_or(Value::Null);
                            if !windows.get(window).is_some_and(Value::is_number) {
                                windows.insert(window.to_owned(), rate);
                            }
                        }
                    }
                    (_, value) => {
                        windows.insert(key, value);
                    }
                }
            }
            *burn = windows;
        }
        serde_json::from_value(body).ok()
    }
}

/// What one playbook's runs add up to.
#[derive(Debug, Default)]
struct PlaybookTally {
    /// Runs by status (`ok`, `failed`, `dry-run`, `rate-limited`, `cooldown`).
    runs: BTreeMap<String, u64>,
    /// The newest runs, oldest first: (Unix ms, run).
    recent: VecDeque<(u64, Run)>,
}

/// Playbook runs and SLO samples read from the history so far.
#[derive(Debug, Default)]
struct Index {
    /// Whether the first read was done.
    started: bool,
    /// The next read starts here (Unix ms).
    from_ms: u64,
    /// The events read at or after `from_ms`, as (Unix ms, hash): none is counted twice.
    seen: BTreeSet<(u64, u64)>,
    playbooks: BTreeMap<String, PlaybookTally>,
    /// Each SLO's latest sample: (Unix ms, sample).
    slos: BTreeMap<String, (u64, SloSample)>,
}

impl Index {
    /// Reads what the history recorded since the last read.
    fn refresh(&mut self, history: &History, now: SystemTime) -> Result<(), String> {
        let (from, limit) = match self.started {
            false => (UNIX_EPOCH, INDEX_FIRST_READ),
            true => (UNIX_EPOCH + Duration::from_millis(self.from_ms), SINCE_LIMIT * 5),
        };
        let events = history.since_limit(from, limit).map_err(|e| chain(&e))?;
        for event in &events {
            let at = unix_ms(event.at);
            let hash = event_hash(event);
            if !self.seen.insert((at, hash)) {
                continue;
            }
            match event.kind {
                EventKind::PlaybookRun => {
                    let Ok(run) = serde_json::from_value::<Run>(event.body.clone()) else { continue };
                    let status = event.body["status"].as_str().unwrap_or("unknown").to_owned();
                    let tally = self.playbooks.entry(run.playbook.clone()).or_default();
                    *tally.runs.entry(status).or_default() += 1;
                    let place = tally.recent.partition_point(|(t, _)| *t <= at);
                    tally.recent.insert(place, (at, run));
                    while tally.recent.len() > RECENT_RUNS {
                        tally.recent.pop_front();
                    }
                }
                EventKind::SloSample => {
                    let Some(sample) = SloSample::from_event(event) else { continue };
                    let newer = self.slos.get(&sample.slo).is_none_or(|(t, _)| *t <= at);
                    if newer {
                        self.slos.insert(sample.slo.clone(), (at, sample));
                    }
                }
                EventKind::Drift | EventKind::Verdict => {}
            }
        }
        self.started = true;
        let overlap = u64::try_from(INDEX_OVERLAP.as_millis()).unwrap_or(u64::MAX);
        self.from_ms = self.from_ms.max(unix_ms(now).saturating_sub(overlap));
        self.seen = self.seen.split_off(&(self.from_ms, 0));
        Ok(())
    }
}

fn event_hash(event: &Event) -> u64 {
    use std::hash::{Hash as _, Hasher as _};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    event.kind.hash(&mut hasher);
    event.subject.hash(&mut hasher);
    event.body.to_string().hash(&mut hasher);
    hasher.finish()
}

use idp_core::diag::chain;

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).ok().and_then(|d| u64::try_from(d.as_millis()).ok()).unwrap_or(0)
}

/// The dashboard's service: cheap to clone, one per connection.
pub struct Dashboard<S> {
    source: Arc<S>,
    token: Arc<str>,
    index: Arc<Mutex<Index>>,
}

impl<S> Clone for Dashboard<S> {
    fn clone(&self) -> Self {
        Dashboard { source: self.source.clone(), token: self.token.clone(), index: self.index.clone() }
    }
}

impl<S> std::fmt::Debug for Dashboard<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dashboard").field("token", &"<hidden>").finish_non_exhaustive()
    }
}

/// The dashboard of `source`, its API guarded by `token` ([`load_or_create_token`]): a
/// hyper service for the daemon to serve on the socket it binds
/// (`hyper::server::conn::http1::Builder::serve_connection`).
pub fn router<S: Source>(source: Arc<S>, token: &str) -> Dashboard<S> {
    Dashboard { source, token: Arc::from(token), index: Arc::new(Mutex::new(Index::default())) }
}

/// A JSON error body.
fn error(message: &str) -> Value {
    json!({ "error": message })
}

/// A parameter of a query string (the first one of that name).
fn param<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query.split('&').find_map(|kv| kv.split_once('=').filter(|(k, _)| *k == name).map(|(_, v)| v))
}

/// The time `since`/`since_ms` name, `default` without either, or why they do not read.
fn since(query: &str, now: SystemTime, default: SystemTime) -> Result<SystemTime, String> {
    let bad = || {
        "since is whole seconds since the Unix epoch, or a duration before now (90s, 30m, 12h, 7d); since_ms is milliseconds since the Unix epoch".to_owned()
    };
    match (param(query, "since"), param(query, "since_ms")) {
        (None, None) => Ok(default),
        (Some(_), Some(_)) => Err(bad()),
        (None, Some(ms)) => ms.parse::<u64>().map(|ms| UNIX_EPOCH + Duration::from_millis(ms)).map_err(|_| bad()),
        (Some(text), None) if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) => {
            text.parse::<u64>().map(|s| UNIX_EPOCH + Duration::from_secs(s)).map_err(|_| bad())
        }
        (Some(text), None) => {
            let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
            let (digits, unit) = text.split_at(split);
            let n: u64 = digits.parse().map_err(|_| bad())?;
            let unit = match unit {
                "s" => 1,
                "m" => 60,
                "h" => 3600,
                "d" => 86_400,
                _ => return Err(bad()),
            };
            let ago = n.checked_mul(unit).ok_or_else(bad)?;
            Ok(now.checked_sub(Duration::from_secs(ago)).filter(|t| *t >= UNIX_EPOCH).unwrap_or(UNIX_EPOCH))
        }
    }
}

use crate::drift::report::redacted;

/// Keeps at most `max` of `points`, evenly spread, the first and the newest among them.
fn thin<T: Clone>(points: &[T], max: usize) -> Vec<T> {
    if points.len() <= max || max < 2 {
        return points.to_vec();
    }
    let last = points.len() - 1;
    (0..max).filter_map(|i| points.get(i * last / (max - 1)).cloned()).collect()
}

struct Reply {
    status: StatusCode,
    content_type: &'static str,
    body: Bytes,
}

impl Reply {
    fn json(status: StatusCode, value: &Value) -> Reply {
        Reply { status, content_type: JSON, body: Bytes::from(value.to_string()) }
    }
}

impl<S: Source> Dashboard<S> {
    /// The answer to one request: `target` is the path with its query; `headers` give the
    /// token (`Authorization`) and the format of `/metrics` (`Accept`). The dashboard's
    /// whole behaviour, testable without a socket.
    pub async fn answer(&self, method: &Method, target: &str, headers: &HeaderMap) -> Response<Full<Bytes>> {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let reply = match (method, path) {
            (&Method::GET, "/" | "/index.html") => asset(INDEX_HTML, "text/html; charset=utf-8"),
            (&Method::GET, "/dashboard.css") => asset(DASHBOARD_CSS, "text/css; charset=utf-8"),
            (&Method::GET, "/dashboard.js") => asset(DASHBOARD_JS, "text/javascript; charset=utf-8"),
            (&Method::GET, "/metrics") => self.metrics(headers).await,
            (&Method::GET, api) if api.starts_with("/api/") => match self.authorized(headers) {
                Err(reply) => reply,
                Ok(()) => self.api(api, query).await,
            },
            (_, "/" | "/index.html" | "/dashboard.css" | "/dashboard.js" | "/metrics") => {
                Reply::json(StatusCode::METHOD_NOT_ALLOWED, &error("method not allowed"))
            }
            (_, api) if api.starts_with("/api/") => match self.authorized(headers) {
                Err(reply) => reply,
                Ok(()) => Reply::json(StatusCode::METHOD_NOT_ALLOWED, &error("method not allowed: the API is read-only (GET)")),
            },
            _ => {
                Reply::json(StatusCode::NOT_FOUND, &error("not found: the dashboard is at /, its API under /api/v1/, metrics at /metrics"))
            }
        };
        respond(reply, path)
    }

    /// 401 unless the request carries the token.
    fn authorized(&self, headers: &HeaderMap) -> Result<(), Reply> {
        let given = headers.get(header::AUTHORIZATION).map(HeaderValue::as_bytes);
        let token = given.and_then(|v| {
            let (scheme, rest) = v.split_at(v.iter().position(|b| *b == b' ').unwrap_or(v.len()));
            scheme.eq_ignore_ascii_case(b"bearer").then(|| rest.trim_ascii())
        });
        match token {
            Some(token) if tokens_match(token, self.token.as_bytes()) => Ok(()),
            Some(_) => Err(Reply::json(
                StatusCode::UNAUTHORIZED,
                &error("the token was refused: the API takes the contents of <lab state>/watchdog-token as Authorization: Bearer <token>"),
            )),
            None => Err(Reply::json(
                StatusCode::UNAUTHORIZED,
                &error("this API needs the watchdog's token: Authorization: Bearer <the contents of <lab state>/watchdog-token>"),
            )),
        }
    }

    async fn api(&self, path: &str, query: &str) -> Reply {
        let now = SystemTime::now();
        match path {
            "/api/v1/health" => {
                let components = self.source.health().await;
                Reply::json(StatusCode::OK, &json!({ "lab": health::lab(&components), "components": components }))
            }
            "/api/v1/drift" => {
                let (objects, stats) = tokio::join!(self.source.drift(), self.source.drift_stats());
                Reply::json(StatusCode::OK, &json!({ "objects": redacted(objects), "stats": stats }))
            }
            "/api/v1/history" => {
                let since = match since(query, now, UNIX_EPOCH) {
                    Ok(t) => t,
                    Err(e) => return Reply::json(StatusCode::BAD_REQUEST, &error(&e)),
                };
                let kind = match param(query, "kind") {
                    None => None,
                    Some(k) => match [EventKind::Drift, EventKind::Verdict, EventKind::SloSample, EventKind::PlaybookRun]
                        .into_iter()
                        .find(|x| x.as_str() == k)
                    {
                        Some(kind) => Some(kind),
                        None => {
                            return Reply::json(StatusCode::BAD_REQUEST, &error("kind is one of drift, verdict, slo-sample, playbook-run"));
                        }
                    },
                };
                match self.read(move |h| h.since(since).map_err(|e| chain(&e))).await {
                    Ok(mut events) => {
                        if let Some(kind) = kind {
                            events.retain(|e| e.kind == kind);
                        }
                        Reply::json(StatusCode::OK, &json!({ "events": events }))
                    }
                    Err(e) => Reply::json(StatusCode::SERVICE_UNAVAILABLE, &error(&e)),
                }
            }
            "/api/v1/slos" => {
                let default = now.checked_sub(SLOS_DEFAULT_SINCE).unwrap_or(UNIX_EPOCH);
                let since = match since(query, now, default) {
                    Ok(t) => t,
                    Err(e) => return Reply::json(StatusCode::BAD_REQUEST, &error(&e)),
                };
                match self.read(move |h| h.since_limit(since, SLOS_READ_LIMIT).map_err(|e| chain(&e))).await {
                    Ok(events) => Reply::json(StatusCode::OK, &slos(&events, since)),
                    Err(e) => Reply::json(StatusCode::SERVICE_UNAVAILABLE, &error(&e)),
                }
            }
            "/api/v1/playbooks" => {
                let playbooks = self.source.playbooks();
                let index = self.refreshed(now).await;
                Reply::json(StatusCode::OK, &playbooks_view(&playbooks, &index))
            }
            _ => Reply::json(
                StatusCode::NOT_FOUND,
                &error("not found: the API has /api/v1/health, /api/v1/drift, /api/v1/history, /api/v1/slos and /api/v1/playbooks"),
            ),
        }
    }

    /// Runs `f` on the history, on the blocking pool.
    async fn read<T: Send + 'static>(&self, f: impl FnOnce(&History) -> Result<T, String> + Send + 'static) -> Result<T, String> {
        let history = self.source.history()?;
        tokio::task::spawn_blocking(move || f(&history)).await.map_err(|e| format!("reading the history failed: {e}"))?
    }

    /// The index, brought up to date with the history (as it was when the history is not
    /// there: its error is in the answer of `/api/v1/history`).
    async fn refreshed(&self, now: SystemTime) -> IndexView {
        let index = self.index.clone();
        let read = self
            .read(move |h| {
                let mut index = index.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                index.refresh(h, now)?;
                Ok(IndexView::of(&index))
            })
            .await;
        match read {
            Ok(view) => view,
            Err(e) => {
                tracing::debug!(error = %e, "dashboard: the history did not read");
                IndexView::of(&self.index.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
            }
        }
    }

    async fn metrics(&self, headers: &HeaderMap) -> Reply {
        let now = SystemTime::now();
        let (drift, stats, components) = tokio::join!(self.source.drift(), self.source.drift_stats(), self.source.health());
        let index = self.refreshed(now).await;
        let history = self.source.history().ok().map(|h| (h.len(), h.bytes()));
        let text = metrics_text(&Metrics { drift: &drift, stats: stats.as_ref(), components: &components, index: &index, history, now });
        let openmetrics =
            headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|accept| accept.contains("application/openmetrics-text"));
        match openmetrics {
            true => Reply { status: StatusCode::OK, content_type: OPENMETRICS, body: Bytes::from(text) },
            false => Reply { status: StatusCode::OK, content_type: PROMETHEUS_TEXT, body: Bytes::from(prometheus_text(&text)) },
        }
    }
}

fn asset(text: &'static str, content_type: &'static str) -> Reply {
    Reply { status: StatusCode::OK, content_type, body: Bytes::from_static(text.as_bytes()) }
}

fn respond(reply: Reply, path: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(reply.body));
    *response.status_mut() = reply.status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(reply.content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if reply.status == StatusCode::UNAUTHORIZED {
        headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"idp-lab watchdog\""));
    }
    if path == "/" || path == "/index.html" {
        headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    response
}

/// What the index gives the answers: copied out under its lock.
#[derive(Debug, Default)]
struct IndexView {
    /// Each playbook that ran.
    playbooks: BTreeMap<String, RunsView>,
    /// Each SLO's latest sample: (Unix ms, sample).
    slos: BTreeMap<String, (u64, SloSample)>,
}

/// One playbook's runs, as the answers show them.
#[derive(Debug, Clone, Default)]
struct RunsView {
    /// Runs by status.
    runs: BTreeMap<String, u64>,
    /// The newest runs, newest first: (Unix ms, run).
    recent: Vec<(u64, Run)>,
}

impl IndexView {
    fn of(index: &Index) -> IndexView {
        let playbooks = index
            .playbooks
            .iter()
            .map(|(name, tally)| {
                (name.clone(), RunsView { runs: tally.runs.clone(), recent: tally.recent.iter().rev().cloned().collect() })
            })
            .collect();
        IndexView { playbooks, slos: index.slos.clone() }
    }
}

/// `/api/v1/slos`: each SLO's samples since `since`, oldest first, thinned.
fn slos(events: &[Event], since: SystemTime) -> Value {
    let mut series: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for event in events {
        let Some(sample) = SloSample::from_event(event) else { continue };
        let mut point = serde_json::to_value(&sample).unwrap_or_default();
        if let Some(map) = point.as_object_mut() {
            map.remove("slo");
            map.insert("at".to_owned(), json!(unix_ms(event.at)));
        }
        series.entry(sample.slo).or_default().push(point);
    }
    let slos: Vec<Value> = series
        .into_iter()
        .map(|(slo, points)| {
            let latest = points.last().cloned().unwrap_or(Value::Null);
            json!({ "slo": slo, "latest": latest, "samples": thin(&points, MAX_POINTS) })
        })
        .collect();
    json!({ "since": unix_ms(since), "slos": slos })
}

/// `/api/v1/playbooks`: the configured playbooks, then those that ran and are not.
fn playbooks_view(playbooks: &[Playbook], index: &IndexView) -> Value {
    let view = |name: &str, configured: Option<&Playbook>| {
        let RunsView { runs, recent } = index.playbooks.get(name).cloned().unwrap_or_default();
        let recent: Vec<&Run> = recent.iter().map(|(_, r)| r).collect();
        json!({
            "name": name,
            "configured": configured.is_some(),
            "dry_run": configured.map(|p| p.dry_run),
            "rate_limit": configured.map(|p| p.rate_limit.to_string()),
            "cooldown_s": configured.map(|p| p.cooldown),
            "triggers": configured.map(|p| serde_json::to_value(&p.triggers).unwrap_or_default()),
            "actions": configured.map(|p| p.actions.iter().map(idp_core::config::Action::describe).collect::<Vec<_>>()),
            "runs": runs,
            "last_run": recent.first(),
            "recent": recent,
        })
    };
    let mut out: Vec<Value> = playbooks.iter().map(|p| view(&p.name, Some(p))).collect();
    for name in index.playbooks.keys() {
        if !playbooks.iter().any(|p| &p.name == name) {
            out.push(view(name, None));
        }
    }
    json!({ "playbooks": out })
}

/// What `/metrics` is made from.
struct Metrics<'a> {
    drift: &'a [ObjectDrift],
    stats: Option<&'a DriftStats>,
    components: &'a [Rollup],
    index: &'a IndexView,
    /// The history's events and bytes, when it is open.
    history: Option<(u64, u64)>,
    now: SystemTime,
}

type Labels = Vec<(String, String)>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

fn gauge_family(registry: &mut Registry, name: &str, help: &str) -> Family<Labels, Gauge<f64, std::sync::atomic::AtomicU64>> {
    let family = Family::<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    registry.register(name, help, family.clone());
    family
}

fn gauge(registry: &mut Registry, name: &str, help: &str, value: f64) {
    let g = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
    g.set(value);
    registry.register(name, help, g);
}

fn counter(registry: &mut Registry, name: &str, help: &str, value: u64) {
    let c: Counter = Counter::default();
    c.inc_by(value);
    registry.register(name, help, c);
}

/// The metrics in OpenMetrics text (what prometheus-client writes).
fn metrics_text(m: &Metrics<'_>) -> String {
    let mut registry = Registry::with_prefix("idp_watchdog");

    let drift = gauge_family(&mut registry, "drift_objects", "Objects drifted from what idp-lab applied, by component and state");
    let mut counts: BTreeMap<(&str, String), f64> = BTreeMap::new();
    for d in m.drift {
        let state = serde_json::to_value(d.state).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        *counts.entry((d.component.as_str(), state)).or_default() += 1.0;
    }
    for ((component, state), n) in &counts {
        drift.get_or_create(&labels(&[("component", component), ("state", state)])).set(*n);
    }

    let verdicts = gauge_family(
        &mut registry,
        "health",
        "Health verdict of each component and of the lab (component=lab): 1 for the verdict, 0 for the others",
    );
    let lab = health::lab(m.components);
    for rollup in m.components.iter().chain([&lab]) {
        for h in [Health::Healthy, Health::Progressing, Health::Degraded, Health::Unknown] {
            let value = if rollup.health == h { 1.0 } else { 0.0 };
            verdicts.get_or_create(&labels(&[("component", &rollup.name), ("health", h.as_str())])).set(value);
        }
    }

    let burn = gauge_family(&mut registry, "slo_burn_rate", "Burn rate of each SLO per window, from its latest sample of the last hour");
    let budget = gauge_family(
        &mut registry,
        "slo_budget_remaining",
        "Fraction of each SLO's error budget left over its window (below 0: spent), from its latest sample of the last hour",
    );
    let sampled =
        gauge_family(&mut registry, "slo_sample_timestamp_seconds", "When each SLO was last evaluated, in seconds since the Unix epoch");
    let fresh = unix_ms(m.now).saturating_sub(u64::try_from(METRICS_SLO_FRESH.as_millis()).unwrap_or(u64::MAX));
    for (slo, (at, sample)) in &m.index.slos {
        sampled.get_or_create(&labels(&[("slo", slo)])).set(*at as f64 / 1000.0);
        if *at < fresh {
            continue;
        }
        for (window, value) in &sample.burn {
            if let Some(v) = value {
                burn.get_or_create(&labels(&[("slo", slo), ("window", window)])).set(*v);
            }
        }
        if let Some(b) = sample.budget_remaining {
            budget.get_or_create(&labels(&[("slo", slo)])).set(b);
        }
    }

    let runs = Family::<Labels, Counter>::default();
    registry.register("playbook_runs", "Playbook runs recorded in the history, by playbook and status (held back ones too)", runs.clone());
    let last = gauge_family(
        &mut registry,
        "playbook_last_run_timestamp_seconds",
        "When each playbook last ran or was held back, in seconds since the Unix epoch",
    );
    for (playbook, RunsView { runs: by_status, recent }) in &m.index.playbooks {
        for (status, n) in by_status {
            runs.get_or_create(&labels(&[("playbook", playbook), ("status", status)])).inc_by(*n);
        }
        if let Some((at, _)) = recent.first() {
            last.get_or_create(&labels(&[("playbook", playbook)])).set(*at as f64 / 1000.0);
        }
    }

    gauge(&mut registry, "drift_engine_running", "Whether the drift engine runs (1) or not (0)", if m.stats.is_some() { 1.0 } else { 0.0 });
    let s = m.stats.cloned().unwrap_or_default();
    gauge(
        &mut registry,
        "drift_ready",
        "Whether every watch listed its objects and each was compared (1) or not yet (0)",
        if s.ready { 1.0 } else { 0.0 },
    );
    gauge(&mut registry, "drift_managed_objects", "Objects the drift engine manages", s.objects as f64);
    gauge(&mut registry, "drift_watches", "Watches the drift engine runs", s.watches as f64);
    gauge(&mut registry, "drift_in_flight", "Objects with a dry-run or heal in flight (the drift engine's backlog)", s.in_flight as f64);
    counter(&mut registry, "drift_watch_events", "Watch events received for managed objects", s.watch_events);
    counter(&mut registry, "drift_watch_errors", "Watch errors (each retried with backoff)", s.watch_errors);
    counter(&mut registry, "drift_dry_runs", "Server-side-apply dry-runs sent", s.dry_runs);
    counter(&mut registry, "drift_cache_hits", "Observations the apply cache showed in sync (no dry-run)", s.cache_hits);
    counter(&mut registry, "drift_detected", "Drifts detected", s.detected);
    counter(&mut registry, "drift_heals", "Heals that succeeded", s.heals);
    counter(&mut registry, "drift_heal_failures", "Heals that failed", s.heal_failures);
    counter(&mut registry, "drift_contested", "Objects that became contested", s.contested);
    counter(&mut registry, "drift_failures", "Diffs that failed", s.failures);
    counter(&mut registry, "drift_resyncs", "Full resyncs done", s.resyncs);
    if let Some(lag) = s.watch_lag_ms {
        gauge(
            &mut registry,
            "drift_watch_lag_seconds",
            "How far behind the API server the last change event arrived (from the newest managedFields time, whole seconds: up to 1 s high)",
            lag as f64 / 1000.0,
        );
    }
    gauge(
        &mut registry,
        "drift_watch_lag_max_seconds",
        "The largest watch lag seen since the drift engine started",
        s.watch_lag_max_ms as f64 / 1000.0,
    );

    gauge(
        &mut registry,
        "history_up",
        "Whether the watchdog's history is open (1) or not (0)",
        if m.history.is_some() { 1.0 } else { 0.0 },
    );
    let (events, bytes) = m.history.unwrap_or_default();
    gauge(&mut registry, "history_events", "Events the history holds", events as f64);
    gauge(&mut registry, "history_bytes", "Bytes of keys and values the history holds", bytes as f64);

    let mut text = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &registry) {
        tracing::warn!(error = %e, "dashboard: the metrics did not encode");
    }
    text
}

/// OpenMetrics text as the Prometheus text format (0.0.4): a counter's `# HELP` and
/// `# TYPE` name its `_total` samples, `unknown` is `untyped`, no `# UNIT` or `# EOF`.
fn prometheus_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut help: Option<&str> = None;
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            if let Some(h) = help.take() {
                out.push_str(h);
                out.push('\n');
            }
            help = Some(rest);
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let (name, kind) = match kind {
                "counter" => (format!("{name}_total"), "counter"),
                "unknown" => (name.to_owned(), "untyped"),
                other => (name.to_owned(), other),
            };
            if let Some(h) = help.take() {
                let text = h.split_once(' ').map_or("", |(_, t)| t);
                out.push_str(&format!("# HELP {name} {text}\n"));
            }
            out.push_str(&format!("# TYPE {name} {kind}\n"));
            continue;
        }
        if let Some(h) = help.take() {
            out.push_str(&format!("# HELP {h}\n"));
        }
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    if let Some(h) = help {
        out.push_str(&format!("# HELP {h}\n"));
    }
    out
}

impl<S, B> hyper::service::Service<Request<B>> for Dashboard<S>
where
    S: Source,
    B: Body + Send + 'static,
{
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, request: Request<B>) -> Self::Future {
        let this = self.clone();
        // The dashboard takes no body: only GET is answered, and the body is never read.
        let (parts, _body) = request.into_parts();
        Box::pin(async move {
            let target = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
            Ok(this.answer(&parts.method, &target, &parts.headers).await)
        })
    }
}

#[cfg(test)]
mod tests;
