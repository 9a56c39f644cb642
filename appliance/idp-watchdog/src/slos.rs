//! The lab's SLOs, read from the cluster: every Pyrra `ServiceLevelObjective`
//! (`pyrra.dev/v1alpha1`) in every namespace, in one LIST through the lab's [`Cluster`],
//! each parsed with [`Slo::from_pyrra`]. Pyrra itself need not run: the watchdog reads the
//! objects and evaluates them against Prometheus on its own.
//!
//! A cluster without Pyrra's CRD (not installed yet) has no SLOs: that is an empty
//! [`SloList`], not an error. An object that does not parse is reported by name in
//! [`SloList::invalid`] with its [`SloError`]; the others are evaluated.
//!
//! What the daemon's SLO loop records in the history about them is typed here, so that
//! whoever reads the history (the dashboard, `idp-lab history`) reads the same thing:
//! [`SampleBody`], the body of an [`EventKind::SloSample`] event (one evaluation), and
//! [`VerdictBody`], the body of an [`EventKind::Verdict`] event whose subject is
//! `slo <namespace>/<name>` (its firing rows changed).

use crate::history::{Event, EventKind};
use idp_core::slo::{Evaluation, Slo, SloError, format_duration};
use idp_kube::Cluster;
use kube::api::ListParams;
use kube::discovery::ApiResource;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

/// Pyrra's API group.
pub const GROUP: &str = "pyrra.dev";
/// The version idp-lab reads.
pub const VERSION: &str = "v1alpha1";
/// The kind.
pub const KIND: &str = "ServiceLevelObjective";
/// The resource's plural name.
pub const PLURAL: &str = "servicelevelobjectives";

/// The resource of Pyrra's `ServiceLevelObjective`s.
pub fn api_resource() -> ApiResource {
    ApiResource {
        group: GROUP.to_owned(),
        version: VERSION.to_owned(),
        api_version: format!("{GROUP}/{VERSION}"),
        kind: KIND.to_owned(),
        plural: PLURAL.to_owned(),
    }
}

/// A `ServiceLevelObjective` that does not parse.
#[derive(Debug)]
pub struct InvalidSlo {
    /// The object, `namespace/name` (`?` for a part it lacks).
    pub object: String,
    /// Why it does not parse.
    pub error: SloError,
}

impl std::fmt::Display for InvalidSlo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ServiceLevelObjective {} is not evaluated: {}", self.object, self.error)
    }
}

/// The SLOs of a cluster: those that parse, in namespace and name order, and those that do
/// not.
#[derive(Debug, Default)]
pub struct SloList {
    /// The SLOs, sorted by namespace and name.
    pub slos: Vec<Slo>,
    /// The objects that do not parse, sorted by `namespace/name`.
    pub invalid: Vec<InvalidSlo>,
}

/// Listing the SLOs failed.
#[derive(Debug, thiserror::Error)]
pub enum SlosError {
    /// The API server refused the LIST or did not answer.
    #[error("failed to list the Pyrra ServiceLevelObjectives on {server}")]
    List {
        /// The API server.
        server: String,
        /// What the client said.
        #[source]
        source: kube::Error,
    },
    /// A listed object does not serialise back to JSON (it always should).
    #[error("a listed ServiceLevelObjective does not serialise")]
    Encode {
        /// The encoding error.
        #[source]
        source: serde_json::Error,
    },
}

/// `namespace/name` of an SLO, or its name without a namespace.
pub fn slo_id(slo: &Slo) -> String {
    match &slo.namespace {
        Some(ns) => format!("{ns}/{}", slo.name),
        None => slo.name.clone(),
    }
}

/// Parses Pyrra objects (as JSON) into an [`SloList`].
pub fn parse(objects: impl IntoIterator<Item = Value>) -> SloList {
    let mut list = SloList::default();
    for object in objects {
        match Slo::from_pyrra(&object) {
            Ok(slo) => list.slos.push(slo),
            Err(error) => {
                let part = |pointer: &str| object.pointer(pointer).and_then(Value::as_str).unwrap_or("?").to_owned();
                list.invalid.push(InvalidSlo { object: format!("{}/{}", part("/metadata/namespace"), part("/metadata/name")), error });
            }
        }
    }
    list.slos.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    list.invalid.sort_by(|a, b| a.object.cmp(&b.object));
    list
}

/// Lists every `ServiceLevelObjective` of `cluster` and parses each. A cluster that does
/// not serve the kind (Pyrra's CRD not installed yet: the API server answers 404) has none.
pub async fn list(cluster: &Cluster) -> Result<SloList, SlosError> {
    let api = cluster.dynamic_api(&api_resource(), None);
    let objects = match api.list(&ListParams::default()).await {
        Ok(objects) => objects,
        Err(kube::Error::Api(status)) if status.code == 404 => return Ok(SloList::default()),
        Err(source) => return Err(SlosError::List { server: cluster.server().to_owned(), source }),
    };
    let values = objects
        .items
        .iter()
        .map(|o| serde_json::to_value(o).map_err(|source| SlosError::Encode { source }))
        .collect::<Result<Vec<Value>, SlosError>>()?;
    Ok(parse(values))
}

/// One row's burn rates in a [`SampleBody`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RowBurn {
    /// The burn rate over the long window; `None` without events.
    pub long: Option<f64>,
    /// The burn rate over the short window; `None` without events.
    pub short: Option<f64>,
    /// The factor both must exceed.
    pub factor: f64,
    /// `page` or `ticket`.
    pub severity: String,
    /// Whether the row fires.
    pub fires: bool,
    /// Whether the low-traffic guard held it back.
    pub low_traffic: bool,
}

/// Events over the SLO's window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowEvents {
    /// All events.
    pub total: f64,
    /// Bad events.
    pub bad: f64,
}

/// The body of an [`EventKind::SloSample`] event: one evaluation of an SLO.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleBody {
    /// `namespace/name`.
    pub slo: String,
    /// The objective, in percent (`99.5`).
    pub objective: f64,
    /// The SLO's window, as Prometheus writes durations (`28d`).
    pub window: String,
    /// Each row of the table by `<long>/<short>` (`1h/5m`).
    pub burn: BTreeMap<String, RowBurn>,
    /// The fraction of the error budget left over the window (below 0: overspent).
    pub budget_remaining: f64,
    /// The rows that fire, `<long>/<short>`, in table order.
    pub firing: Vec<String>,
    /// Events over the window.
    pub events: WindowEvents,
}

/// The body of an [`EventKind::Verdict`] event of an SLO: its firing rows changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerdictBody {
    /// `namespace/name`.
    pub slo: String,
    /// The rows firing now, `<long>/<short>`, in table order.
    pub firing: Vec<String>,
    /// The rows that fired before.
    pub was: Vec<String>,
    /// The rows that started firing.
    pub started: Vec<String>,
    /// The rows that stopped firing.
    pub stopped: Vec<String>,
    /// The most urgent severity firing now: `page`, `ticket` or `None`.
    pub severity: Option<String>,
}

/// `<long>/<short>` of a row, as Prometheus writes durations (`1h/5m`).
pub fn row_key(long: Duration, short: Duration) -> String {
    format!("{}/{}", format_duration(long), format_duration(short))
}

impl SampleBody {
    /// The sample of `slo`'s `evaluation`.
    pub fn of(slo: &Slo, evaluation: &Evaluation) -> SampleBody {
        let mut burn = BTreeMap::new();
        let mut firing = Vec::new();
        for row in &evaluation.rows {
            let key = row_key(row.row.long, row.row.short);
            if row.fires {
                firing.push(key.clone());
            }
            let finite = |b: Option<f64>| b.filter(|b| b.is_finite());
            burn.insert(
                key,
                RowBurn {
                    long: finite(row.long_burn),
                    short: finite(row.short_burn),
                    factor: row.row.factor,
                    severity: row.row.severity.to_string(),
                    fires: row.fires,
                    low_traffic: row.low_traffic,
                },
            );
        }
        SampleBody {
            slo: slo_id(slo),
            objective: slo.objective.percent(),
            window: format_duration(slo.window),
            burn,
            budget_remaining: evaluation.budget_remaining,
            firing,
            events: WindowEvents { total: evaluation.window.total(), bad: evaluation.window.bad() },
        }
    }

    /// Its history event at `at`, subject `slo <namespace>/<name>`.
    pub fn event(&self, at: SystemTime) -> Event {
        Event::new(at, EventKind::SloSample, format!("slo {}", self.slo), serde_json::to_value(self).unwrap_or_default())
    }

    /// The sample an event carries, if it is an SLO sample with this body.
    pub fn from_event(event: &Event) -> Option<SampleBody> {
        (event.kind == EventKind::SloSample).then(|| serde_json::from_value(event.body.clone()).ok()).flatten()
    }

    /// The burn rate per window (`5m`, `1h`, ...; `None` without events): each row's long
    /// and short windows, for a chart of one line per window. Rows that share a window
    /// share its burn rate (the same query), so nothing is lost.
    pub fn burn_by_window(&self) -> BTreeMap<String, Option<f64>> {
        let mut out = BTreeMap::new();
        for (key, row) in &self.burn {
            if let Some((long, short)) = key.split_once('/') {
                out.insert(long.to_owned(), row.long);
                out.insert(short.to_owned(), row.short);
            }
        }
        out
    }
}

impl VerdictBody {
    /// Its history event at `at`, subject `slo <namespace>/<name>`.
    pub fn event(&self, at: SystemTime) -> Event {
        Event::new(at, EventKind::Verdict, format!("slo {}", self.slo), serde_json::to_value(self).unwrap_or_default())
    }

    /// The verdict an event carries, if it is an SLO's verdict.
    pub fn from_event(event: &Event) -> Option<VerdictBody> {
        (event.kind == EventKind::Verdict && event.subject.starts_with("slo "))
            .then(|| serde_json::from_value(event.body.clone()).ok())
            .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(namespace: &str, name: &str, target: &str) -> Value {
        json!({
            "apiVersion": "pyrra.dev/v1alpha1", "kind": "ServiceLevelObjective",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"target": target, "window": "28d", "indicator": {"ratio": {
                "errors": {"metric": "http_requests_total{code=~\"5..\"}"}, "total": {"metric": "http_requests_total"}}}}
        })
    }

    #[test]
    fn sorts_and_names_the_invalid_ones() {
        let list = parse([
            object("b", "api", "99"),
            object("a", "web", "99.9"),
            object("a", "broken", "101"),
            json!({"metadata": {"namespace": "c"}, "spec": {}}),
        ]);
        let ids: Vec<String> = list.slos.iter().map(slo_id).collect();
        assert_eq!(ids, ["a/web", "b/api"]);
        let invalid: Vec<String> = list.invalid.iter().map(ToString::to_string).collect();
        assert_eq!(invalid.len(), 2, "{invalid:?}");
        assert!(invalid[0].starts_with("ServiceLevelObjective a/broken is not evaluated: ") && invalid[0].contains("101"), "{invalid:?}");
        assert!(invalid[1].starts_with("ServiceLevelObjective c/? ") && invalid[1].contains("metadata.name"), "{invalid:?}");
    }

    #[test]
    fn a_sample_body_reads_back_and_by_window() -> Result<(), SloError> {
        let slo = Slo::from_pyrra(&object("a", "web", "99"))?;
        // 2 % errors everywhere (burn 2), the shortest window at 20 % (burn 20).
        let counts = slo
            .windows()
            .into_iter()
            .map(|w| Ok((w, idp_core::slo::Counts::new(1000.0, if w == slo.windows()[0] { 200.0 } else { 20.0 })?)))
            .collect::<Result<BTreeMap<_, _>, SloError>>()?;
        let evaluation = idp_core::slo::evaluate(&slo, &counts)?;
        let body = SampleBody::of(&slo, &evaluation);
        assert_eq!((body.slo.as_str(), body.objective, body.window.as_str()), ("a/web", 99.0, "28d"));
        assert_eq!(body.burn.len(), 4);
        let first = row_key(slo.rows[0].long, slo.rows[0].short);
        assert!(body.burn[&first].short.is_some_and(|b| (b - 20.0).abs() < 1e-9), "{body:?}");
        let last = row_key(slo.rows[3].long, slo.rows[3].short);
        assert_eq!(body.firing, [last], "the long windows burn 2: above the last row's factor 1 only");
        let by_window = body.burn_by_window();
        assert_eq!(by_window.len(), slo.windows().len() - 1, "every window but the SLO's own: {by_window:?}");
        let at = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let event = body.event(at);
        assert_eq!((event.kind, event.subject.as_str()), (EventKind::SloSample, "slo a/web"));
        assert_eq!(SampleBody::from_event(&event).as_ref(), Some(&body));
        let verdict = VerdictBody {
            slo: "a/web".into(),
            firing: vec![first.clone()],
            was: vec![],
            started: vec![first],
            stopped: vec![],
            severity: Some("page".into()),
        };
        let event = verdict.event(at);
        assert_eq!(VerdictBody::from_event(&event), Some(verdict.clone()));
        assert_eq!(SampleBody::from_event(&event), None, "a verdict is not a sample");
        let health = Event::new(at, EventKind::Verdict, "component vault", serde_json::to_value(&verdict).unwrap_or_default());
        assert_eq!(VerdictBody::from_event(&health), None, "only an SLO's verdicts");
        Ok(())
    }

    #[test]
    fn the_resource_is_pyrras() {
        let r = api_resource();
        assert_eq!((r.api_version.as_str(), r.plural.as_str()), ("pyrra.dev/v1alpha1", "servicelevelobjectives"));
    }
}
