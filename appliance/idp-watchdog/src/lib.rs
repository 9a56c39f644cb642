//! The lab watchdog. Today: SLOs evaluated in the appliance. For each Pyrra
//! `ServiceLevelObjective` (parsed by [`idp_core::slo::Slo::from_pyrra`]) the watchdog asks
//! Prometheus for the events over every window of the burn-rate table at one evaluation time
//! and lets [`idp_core::slo::evaluate`] compute the burn rates, verdicts and error budget, so
//! an SLO is judged even when Pyrra or Alertmanager is down.
//!
//! The evaluation time is always given by the caller (no clock here), so a test can evaluate at
//! a time aligned to backfilled samples.

pub mod dashboard;
pub mod drift;
pub mod health;
pub mod history;
pub mod playbook;
pub mod prometheus;
pub mod receiver;
pub mod slos;

pub use dashboard::{Dashboard, SloSample, Snapshot, TokenError, load_or_create_token};
pub use drift::{Component, Drift, DriftError, DriftEvent, DriftHandle, DriftOptions, DriftState, ObjectDrift, Policy};
pub use history::{Event, EventKind, History, HistoryError, Retention};
pub use idp_core::slo::{Evaluation, RowVerdict, Slo};
pub use playbook::{Alert, Cause, Engine, Executor, Run, RunStatus, Unavailable};
pub use prometheus::{Prometheus, Sample, Series};
pub use receiver::{Receiver, router};
pub use slos::{InvalidSlo, SloList, SlosError};

use idp_core::slo::{self, Counts, SloError};
use std::collections::BTreeMap;
use std::time::SystemTime;

/// What went wrong asking Prometheus or evaluating an SLO.
#[derive(Debug, thiserror::Error)]
pub enum WatchdogError {
    /// The Prometheus URL is not `http://host:port[/prefix]`.
    #[error("invalid Prometheus URL {url:?}: {reason}")]
    Url {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The request failed (connection refused, reset, ...).
    #[error("failed to query {url}")]
    Request {
        /// The URL.
        url: String,
        /// The transport error.
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    /// The response body broke off.
    #[error("failed to read the answer of {url}")]
    Body {
        /// The URL.
        url: String,
        /// The transport error.
        #[source]
        source: hyper::Error,
    },
    /// No complete answer in time.
    #[error("no answer from {url} within {seconds} s")]
    Timeout {
        /// The URL.
        url: String,
        /// The timeout.
        seconds: u64,
    },
    /// The answer is not JSON (a proxy's error page, or not Prometheus at all).
    #[error("the answer to {query:?} (HTTP {status}) is not JSON: {body:?}")]
    Json {
        /// The query.
        query: String,
        /// The HTTP status.
        status: u16,
        /// The start of the body.
        body: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// Prometheus refused or failed the query.
    #[error("Prometheus answered {query:?} with HTTP {status}, {error_type}: {error}")]
    Query {
        /// The query.
        query: String,
        /// The HTTP status.
        status: u16,
        /// Prometheus' `errorType`.
        error_type: String,
        /// Prometheus' `error`.
        error: String,
    },
    /// The answer has an unexpected shape.
    #[error("unexpected answer to {query:?}: {reason}")]
    Shape {
        /// The query.
        query: String,
        /// What was wrong.
        reason: String,
    },
    /// The evaluation time is before 1970.
    #[error("the evaluation time is before the Unix epoch")]
    Time,
    /// The request through the API server's service proxy got no answer from Prometheus
    /// (the API server refused it, the Service has no endpoints, no connection, ...).
    #[error("failed to query the Prometheus at {endpoint}")]
    Proxy {
        /// Where: `service <namespace>/<name>:<port> through <API server>`.
        endpoint: String,
        /// What the API server or its client said.
        #[source]
        source: idp_kube::KubeError,
    },
    /// A range [`Prometheus::evaluate_range`] does not ask for (a step under 1 ms, the end
    /// before the start, too many steps).
    #[error("invalid query range: {reason}")]
    Range {
        /// What is wrong with it.
        reason: String,
    },
    /// The counts do not make an evaluation.
    #[error("failed to evaluate SLO {slo}")]
    Slo {
        /// The SLO's name.
        slo: String,
        /// Why.
        #[source]
        source: SloError,
    },
}

/// Evaluates `slo` at `at` against the Prometheus at `prometheus` (`http://host:port`).
///
/// Runs `sum(increase(..[w]))` for the bad and total events of every window of
/// [`Slo::windows`] as instant queries at `at`, then [`slo::evaluate`]. An empty answer counts
/// as 0 events; a latency SLI's errors (total − success) below 0, which `increase()`'s
/// extrapolation can produce, count as 0.
pub async fn evaluate(prometheus: &str, slo: &Slo, at: SystemTime) -> Result<Evaluation, WatchdogError> {
    evaluate_with(&Prometheus::new(prometheus)?, slo, at).await
}

/// [`evaluate`] with a client that is kept between evaluations.
pub async fn evaluate_with(prometheus: &Prometheus, slo: &Slo, at: SystemTime) -> Result<Evaluation, WatchdogError> {
    let counts = window_counts(prometheus, slo, at).await?;
    slo::evaluate(slo, &counts).map_err(|source| WatchdogError::Slo { slo: slo.name.clone(), source })
}

/// The event counts per window at `at`, as [`slo::evaluate`] takes them.
pub async fn window_counts(
    prometheus: &Prometheus,
    slo: &Slo,
    at: SystemTime,
) -> Result<BTreeMap<std::time::Duration, Counts>, WatchdogError> {
    let mut counts = BTreeMap::new();
    for window in slo.windows() {
        let queries = slo.queries(window);
        let (total, errors) =
            tokio::try_join!(prometheus.instant_number(&queries.total, at), prometheus.instant_number(&queries.errors, at))?;
        let errors = if errors < 0.0 { 0.0 } else { errors };
        let c = Counts::new(total, errors).map_err(|source| WatchdogError::Slo { slo: slo.name.clone(), source })?;
        counts.insert(window, c);
    }
    Ok(counts)
}
