//! Playbooks: what the watchdog does about what it sees. A [`Cause`] (an Alertmanager
//! alert, drift, a health verdict, an SLO verdict, a sealed Vault, a stopped node) is
//! matched against every playbook's triggers (`[[watchdog.playbooks]]` in `idp-lab.toml`,
//! typed by [`idp_core::config::Playbook`]); each match is decided at once, under one
//! lock: run it, or hold it back by its rate limit or cool-down, or skip an alert that
//! is still firing and already ran it. Runs then execute their actions in order: the
//! `webhook` action is posted here, every other one goes to the caller's [`Executor`]
//! (the daemon's, with its Kubernetes and Docker clients). A dry run records what it
//! would do and does nothing.
//!
//! Every run is recorded in the [`History`] as a [`EventKind::PlaybookRun`] event whose
//! body is the [`Run`]: the trigger, each action and its result; so is each run held
//! back by the rate limit or the cool-down. The rate limits survive a daemon restart:
//! [`Engine::new`] reads the runs of their windows back from the history.
//!
//! This is the reference's §6 (Argo Events) emulated in the daemon: triggers are the
//! dependencies (any one of them), the actions the triggers of a sensor, the rate limit
//! Argo Events' `rateLimit`, and the fingerprint of a firing alert its de-duplication.

use crate::history::{Event, EventKind, History};
use http::{Request, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use idp_core::config::{Action, HealthVerdict, Playbook, SloSeverity, Trigger};
use idp_core::health::Health;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// An alert as Alertmanager's webhook (version 4) sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    /// `firing` or `resolved`.
    pub status: String,
    /// Its labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Its annotations.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// When it started firing (RFC 3339).
    #[serde(default)]
    pub starts_at: String,
    /// When it ended (RFC 3339; `0001-01-01T00:00:00Z` while firing).
    #[serde(default)]
    pub ends_at: String,
    /// The URL of what raised it.
    #[serde(default, rename = "generatorURL")]
    pub generator_url: String,
    /// Alertmanager's fingerprint of its labels.
    #[serde(default)]
    pub fingerprint: String,
}

impl Alert {
    /// Whether it is firing.
    pub fn firing(&self) -> bool {
        self.status == "firing"
    }
}

/// Something that happened that a playbook may answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "on", rename_all = "kebab-case")]
pub enum Cause {
    /// An alert Alertmanager posted to the daemon's receiver.
    Alert(Alert),
    /// An object idp-lab applied drifted.
    Drift {
        /// Its component.
        component: String,
        /// The object, `Kind/namespace/name`.
        object: String,
        /// The fields that drifted.
        fields: Vec<String>,
    },
    /// A component's health verdict changed to one that is not Healthy.
    Health {
        /// The component.
        component: String,
        /// The verdict.
        verdict: HealthVerdict,
        /// Why.
        reason: String,
    },
    /// The watchdog's evaluation of an SLO fired a row.
    Slo {
        /// The SLO, `namespace/name`.
        slo: String,
        /// The row's severity (`page` or `ticket`).
        severity: SloSeverity,
    },
    /// Vault reports itself sealed.
    VaultSealed,
    /// A node container is not running.
    NodeStopped {
        /// The node.
        node: String,
    },
}

impl Cause {
    /// A health cause for a verdict, or none for Healthy (which no playbook answers).
    pub fn health(component: impl Into<String>, health: Health, reason: impl Into<String>) -> Option<Cause> {
        let verdict = match health {
            Health::Healthy => return None,
            Health::Progressing => HealthVerdict::Progressing,
            Health::Degraded => HealthVerdict::Degraded,
            Health::Unknown => HealthVerdict::Unknown,
        };
        Some(Cause::Health { component: component.into(), verdict, reason: reason.into() })
    }

    /// Whether `trigger` fires for this cause.
    pub fn matches(&self, trigger: &Trigger) -> bool {
        let any = |want: &str, got: &str| want == "*" || want == got;
        match (trigger, self) {
            (Trigger::Alert { labels }, Cause::Alert(alert)) => {
                alert.firing() && labels.iter().all(|(k, v)| alert.labels.get(k) == Some(v))
            }
            (Trigger::Drift { component }, Cause::Drift { component: c, .. }) => any(component, c),
            (Trigger::Health { component, verdict }, Cause::Health { component: c, verdict: v, .. }) => any(component, c) && verdict == v,
            (Trigger::Slo { slo, severity }, Cause::Slo { slo: s, severity: got }) => {
                // A bare SLO name matches it in any namespace.
                let named = any(slo, s) || s.rsplit_once('/').is_some_and(|(_, name)| name == slo);
                named && (*severity == SloSeverity::Any || severity == got)
            }
            (Trigger::VaultSealed, Cause::VaultSealed) => true,
            (Trigger::NodeStopped { node }, Cause::NodeStopped { node: n }) => any(node, n),
            _ => false,
        }
    }
}

/// Why an action failed, as the executor says it.
pub type ActionError = Box<dyn std::error::Error + Send + Sync>;

/// Does the actions the watchdog does not do itself (every one but `webhook`): the daemon
/// implements it with its clients (server-side apply, the Docker Engine API, Vault's API).
pub trait Executor: Send + Sync + 'static {
    /// Does `action` for a run that `cause` set off; the text says what was done.
    fn execute(&self, action: &Action, cause: &Cause) -> impl Future<Output = Result<String, ActionError>> + Send;
}

/// An executor that can do nothing: every action but `webhook` fails, saying so.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unavailable;

impl Executor for Unavailable {
    async fn execute(&self, action: &Action, _cause: &Cause) -> Result<String, ActionError> {
        Err(format!("the lab daemon cannot {} yet", action.describe()).into())
    }
}

/// What became of a playbook that matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// It runs.
    Run,
    /// It runs as a dry run.
    DryRun,
    /// Held back: its rate limit's runs are spent for this window.
    RateLimited,
    /// Held back: its cool-down has not passed since the last run.
    Cooldown,
    /// Skipped, not recorded: the alert is still firing (same fingerprint, same start)
    /// and already ran it.
    Duplicate,
}

/// A playbook that matched a cause, and what becomes of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The playbook.
    pub playbook: Playbook,
    /// What becomes of it.
    pub verdict: Verdict,
    /// What set it off.
    pub cause: Cause,
    /// When it was decided.
    pub at: SystemTime,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunStatus {
    /// Every action succeeded.
    Ok,
    /// An action failed (the others still ran).
    Failed,
    /// A dry run: nothing was done.
    DryRun,
    /// Held back by the rate limit.
    RateLimited,
    /// Held back by the cool-down.
    Cooldown,
}

/// What one action did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionRun {
    /// Its `do` word, e.g. `webhook`.
    pub action: String,
    /// What it does, e.g. `POST http://127.0.0.1:9000/hook`.
    pub target: String,
    /// `ok`, `failed` or `dry-run` (would have run).
    pub result: ActionResult,
    /// What was done, or why it failed.
    pub detail: String,
    /// How long it took.
    pub duration_ms: u64,
}

/// The result of one action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActionResult {
    /// It succeeded.
    Ok,
    /// It failed.
    Failed,
    /// A dry run: it would have run.
    DryRun,
}

/// One run of a playbook, or one held back: the body of its history event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    /// The playbook.
    pub playbook: String,
    /// How it ended.
    pub status: RunStatus,
    /// What set it off.
    pub trigger: Cause,
    /// Each action, in order (none when held back).
    pub actions: Vec<ActionRun>,
    /// When it was decided, in Unix milliseconds.
    pub at_ms: u64,
    /// How long its actions took.
    pub duration_ms: u64,
}

impl Run {
    /// The history event of this run.
    pub fn event(&self) -> Event {
        let body = serde_json::to_value(self).unwrap_or_default();
        Event::new(UNIX_EPOCH + Duration::from_millis(self.at_ms), EventKind::PlaybookRun, format!("playbook {}", self.playbook), body)
    }
}

/// What the engine remembers of one playbook.
#[derive(Debug, Default)]
struct Book {
    /// When its runs in the current window started.
    runs: VecDeque<SystemTime>,
    /// When it last ran.
    last: Option<SystemTime>,
    /// The firing alerts it ran for: fingerprint to the alert's start and when it ran.
    firing: BTreeMap<String, (String, SystemTime)>,
}

/// How long a firing alert that ran a playbook is remembered without a resolve (when
/// Alertmanager's `send_resolved` is off, or the resolve was lost).
const FIRING_MEMORY: Duration = Duration::from_secs(7 * 86_400);

/// The playbooks of a lab, their state, and what runs them.
pub struct Engine<E> {
    playbooks: Vec<Playbook>,
    history: Arc<History>,
    executor: E,
    client: Client<HttpConnector, Full<Bytes>>,
    books: Mutex<BTreeMap<String, Book>>,
}

impl<E> std::fmt::Debug for Engine<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("playbooks", &self.playbooks.iter().map(|p| &p.name).collect::<Vec<_>>()).finish_non_exhaustive()
    }
}

const USER_AGENT: &str = concat!("idp-lab-watchdog/", env!("CARGO_PKG_VERSION"));

impl<E: Executor> Engine<E> {
    /// An engine for `playbooks` (the settings' `watchdog.playbooks`), recording in
    /// `history` and doing the non-webhook actions through `executor`. The runs of every
    /// rate-limit window and the last runs for the cool-downs are read back from the
    /// history, so a restarted daemon keeps to the limits.
    pub fn new(playbooks: Vec<Playbook>, history: Arc<History>, executor: E) -> Engine<E> {
        let client = Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build_http();
        let engine = Engine { playbooks, history, executor, client, books: Mutex::new(BTreeMap::new()) };
        engine.restore(SystemTime::now());
        engine
    }

    /// The playbooks.
    pub fn playbooks(&self) -> &[Playbook] {
        &self.playbooks
    }

    /// The history it records in.
    pub fn history(&self) -> &Arc<History> {
        &self.history
    }

    /// The executor.
    pub fn executor(&self) -> &E {
        &self.executor
    }

    fn restore(&self, now: SystemTime) {
        let longest = self.playbooks.iter().map(|p| p.rate_limit.window().max(p.cooldown())).max().unwrap_or_default();
        let Ok(events) = self.history.since(now.checked_sub(longest).unwrap_or(UNIX_EPOCH)) else { return };
        let mut books = self.lock();
        for event in events.iter().filter(|e| e.kind == EventKind::PlaybookRun) {
            let Ok(run) = serde_json::from_value::<Run>(event.body.clone()) else { continue };
            if !matches!(run.status, RunStatus::Ok | RunStatus::Failed | RunStatus::DryRun) {
                continue;
            }
            let Some(playbook) = self.playbooks.iter().find(|p| p.name == run.playbook) else { continue };
            let at = UNIX_EPOCH + Duration::from_millis(run.at_ms);
            let book = books.entry(playbook.name.clone()).or_default();
            if now.duration_since(at).is_ok_and(|age| age < playbook.rate_limit.window()) {
                book.runs.push_back(at);
            }
            book.last = Some(book.last.map_or(at, |l| l.max(at)));
            if let Cause::Alert(alert) = &run.trigger {
                book.firing.insert(alert.fingerprint.clone(), (alert.starts_at.clone(), at));
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Book>> {
        self.books.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// [`Engine::decide_at`] now.
    pub fn decide(&self, cause: &Cause) -> Vec<Decision> {
        self.decide_at(cause, SystemTime::now())
    }

    /// Decides every playbook that `cause` triggers, as of `now`, and counts the runs
    /// against their rate limits. Runs held back are recorded here; runs are recorded
    /// once [`Engine::execute`] has done them. A resolved alert triggers nothing and
    /// clears its fingerprint, so the next time it fires it runs again.
    pub fn decide_at(&self, cause: &Cause, now: SystemTime) -> Vec<Decision> {
        let mut books = self.lock();
        if let Cause::Alert(alert) = cause
            && !alert.firing()
        {
            for book in books.values_mut() {
                book.firing.remove(&alert.fingerprint);
            }
            return Vec::new();
        }
        // An alert is the same while it keeps firing: same fingerprint, same start.
        let firing = match cause {
            Cause::Alert(alert) if !alert.fingerprint.is_empty() => Some((alert.fingerprint.clone(), alert.starts_at.clone())),
            _ => None,
        };
        let mut decisions = Vec::new();
        for playbook in self.playbooks.iter().filter(|p| p.triggers.iter().any(|t| cause.matches(t))) {
            let book = books.entry(playbook.name.clone()).or_default();
            book.firing.retain(|_, (_, ran)| now.duration_since(*ran).map_or(true, |age| age < FIRING_MEMORY));
            let window = playbook.rate_limit.window();
            while book.runs.front().is_some_and(|t| now.duration_since(*t).is_ok_and(|age| age >= window)) {
                book.runs.pop_front();
            }
            let verdict = if firing.as_ref().is_some_and(|(f, start)| book.firing.get(f).is_some_and(|(s, _)| s == start)) {
                Verdict::Duplicate
            } else if book.last.is_some_and(|last| match now.duration_since(last) {
                Ok(since) => since < playbook.cooldown(),
                // The clock went back past the last run: wait for it, unless there is no cool-down.
                Err(_) => !playbook.cooldown().is_zero(),
            }) {
                Verdict::Cooldown
            } else if book.runs.len() >= playbook.rate_limit.runs as usize {
                Verdict::RateLimited
            } else {
                book.runs.push_back(now);
                book.last = Some(now);
                if let Some((f, start)) = &firing {
                    book.firing.insert(f.clone(), (start.clone(), now));
                }
                if playbook.dry_run { Verdict::DryRun } else { Verdict::Run }
            };
            decisions.push(Decision { playbook: playbook.clone(), verdict, cause: cause.clone(), at: now });
        }
        drop(books);
        for d in &decisions {
            let status = match d.verdict {
                Verdict::RateLimited => RunStatus::RateLimited,
                Verdict::Cooldown => RunStatus::Cooldown,
                _ => continue,
            };
            let run = Run {
                playbook: d.playbook.name.clone(),
                status,
                trigger: d.cause.clone(),
                actions: Vec::new(),
                at_ms: unix_ms(d.at),
                duration_ms: 0,
            };
            if let Err(e) = self.history.record(&run.event()) {
                tracing::warn!(playbook = %d.playbook.name, error = %e, "failed to record a playbook run held back");
            }
        }
        decisions
    }

    /// Runs a decision to run (a dry run records what each action would do) and records
    /// it; `None` for one held back or skipped.
    pub async fn execute(&self, decision: &Decision) -> Option<Run> {
        let dry = match decision.verdict {
            Verdict::Run => false,
            Verdict::DryRun => true,
            _ => return None,
        };
        let started = Instant::now();
        let mut actions = Vec::new();
        for action in &decision.playbook.actions {
            let t = Instant::now();
            let (result, detail) = if dry {
                (ActionResult::DryRun, format!("dry run: would {}", action.describe()))
            } else {
                match self.act(action, decision).await {
                    Ok(detail) => (ActionResult::Ok, detail),
                    Err(e) => (ActionResult::Failed, chain(&*e)),
                }
            };
            actions.push(ActionRun {
                action: action.verb().to_owned(),
                target: action.describe(),
                result,
                detail,
                duration_ms: ms(t.elapsed()),
            });
        }
        let status = if dry {
            RunStatus::DryRun
        } else if actions.iter().any(|a| a.result == ActionResult::Failed) {
            RunStatus::Failed
        } else {
            RunStatus::Ok
        };
        let run = Run {
            playbook: decision.playbook.name.clone(),
            status,
            trigger: decision.cause.clone(),
            actions,
            at_ms: unix_ms(decision.at),
            duration_ms: ms(started.elapsed()),
        };
        if let Err(e) = self.history.record(&run.event()) {
            tracing::warn!(playbook = %run.playbook, error = %e, "failed to record a playbook run");
        }
        Some(run)
    }

    /// Decides and runs every playbook `cause` triggers (the daemon's drift, health and SLO
    /// events); the runs, in playbook order.
    pub async fn handle(&self, cause: &Cause) -> Vec<Run> {
        let mut runs = Vec::new();
        for decision in self.decide(cause) {
            runs.extend(self.execute(&decision).await);
        }
        runs
    }

    async fn act(&self, action: &Action, decision: &Decision) -> Result<String, ActionError> {
        match action {
            Action::Webhook { url, timeout } => self.webhook(url, Duration::from_secs(*timeout), decision).await,
            other => self.executor.execute(other, &decision.cause).await,
        }
    }

    /// POSTs `{"playbook", "dry_run", "trigger", "at_ms"}` to `url`; any 2xx is success.
    async fn webhook(&self, url: &str, timeout: Duration, decision: &Decision) -> Result<String, ActionError> {
        let body = serde_json::json!({
            "playbook": decision.playbook.name,
            "dry_run": decision.playbook.dry_run,
            "trigger": decision.cause,
            "at_ms": unix_ms(decision.at),
        });
        let uri: Uri = url.parse().map_err(|e| format!("{url:?} is not a URL: {e}"))?;
        let request = Request::post(uri)
            .header(header::USER_AGENT, USER_AGENT)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.to_string())))?;
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| format!("POST {url} failed: {}", chain(&e)))?;
            let status = response.status();
            let body = response.into_body().collect().await.map_err(|e| format!("POST {url}: the answer broke off: {e}"))?.to_bytes();
            Ok::<_, String>((status, body))
        };
        let (status, body) = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| format!("POST {url}: no answer within {} s", timeout.as_secs()))??;
        if status.is_success() {
            return Ok(format!("POST {url}: HTTP {}", status.as_u16()));
        }
        let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
        Err(format!("POST {url}: HTTP {}{}", status.as_u16(), if text.is_empty() { String::new() } else { format!(": {text}") }).into())
    }
}

use idp_core::diag::chain;

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(ms).unwrap_or(0)
}

#[cfg(test)]
mod tests;
