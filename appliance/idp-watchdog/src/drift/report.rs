//! What the drift engine tells: the drift of each object and field with the manager
//! behind it, and the events as it detects, heals, or gives up on drift. Every type is
//! serde-serialisable, with times as RFC 3339 text, so the daemon can record the events in
//! its history and serve them as JSON.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::managers::Evidence;
use super::rules::Policy;

/// One drifted field of an object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftField {
    /// Where, as `idp-lab diff` names it (`data.mode`, `metadata.labels["a.b/c"]`,
    /// `spec.template.spec.containers[0].image`); empty for the whole object (missing).
    pub path: String,
    /// The live value; absent when the live object lacks the field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live: Option<Value>,
    /// The value idp-lab sets; absent when it would not have the field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired: Option<Value>,
    /// The field manager that made the change, from the live object's managedFields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manager: Option<String>,
    /// How the manager was found: it owns the field, or it wrote the object last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Evidence>,
    /// An ignore rule says: report, never heal for this field.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub report_only: bool,
}

/// Where an object's drift stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftState {
    /// Reported only: the component's policy is `report`.
    Reported,
    /// A heal is due (now, or after a backoff).
    Healing,
    /// Re-applied: the live object is what idp-lab sets again.
    Healed,
    /// Not healed for now: the object was healed as often as the rate cap allows.
    RateLimited,
    /// Not healed: another manager keeps setting a field back (see `contested`).
    Contested,
    /// Not healed: a drifted field is report-only by an ignore rule.
    Held,
    /// Back in sync without a heal (someone set it back), or no longer managed.
    Resolved,
}

/// A field another manager keeps setting back after heals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contest {
    /// The drift path.
    pub path: String,
    /// The manager that sets it back.
    pub manager: String,
    /// How many heals it reverted in the window.
    pub reverts: usize,
}

/// One object's drift.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectDrift {
    /// The component it belongs to.
    pub component: String,
    /// `Kind.group namespace/name`, as `idp-lab apply` and `diff` name it.
    pub object: String,
    /// The `apiVersion` idp-lab applies it with.
    pub api_version: String,
    /// The kind.
    pub kind: String,
    /// The namespace; empty for a cluster-scoped object.
    pub namespace: String,
    /// The name.
    pub name: String,
    /// Whether it exists live (else it was deleted, and a heal creates it).
    pub exists: bool,
    /// The drifted fields, labels and annotations first, then by path.
    pub fields: Vec<DriftField>,
    /// The manager behind the drift: that of the first field that names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manager: Option<String>,
    /// When this drift was detected (the observation this report comes from).
    #[serde(with = "rfc3339")]
    pub detected_at: SystemTime,
    /// When the object last went out of sync (the first detection of this episode).
    #[serde(with = "rfc3339")]
    pub since: SystemTime,
    /// Where it stands.
    pub state: DriftState,
    /// The component's policy.
    pub policy: Policy,
    /// Heal attempts in the rate-cap window.
    pub heals: usize,
    /// The contested fields; empty unless `state` is `contested`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contested: Vec<Contest>,
}

/// What a full resync found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResyncReport {
    /// When it started.
    #[serde(with = "rfc3339")]
    pub at: SystemTime,
    /// Whether the cache was passed over (every object dry-run).
    pub uncached: bool,
    /// Objects compared.
    pub compared: usize,
    /// Of them, known in sync from the cache (no dry-run sent).
    pub cached: usize,
    /// Objects drifted when it ended (every component's, also those found before).
    pub drifted: usize,
    /// How long it took, in milliseconds.
    pub took_ms: u64,
    /// Components whose objects could not be listed, with the error.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// A change the engine reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum DriftEvent {
    /// An object drifted, or its drift changed (other fields, values or managers).
    Detected(ObjectDrift),
    /// An object was re-applied; its state is `healed`.
    Healed(ObjectDrift),
    /// A heal failed; its state says what comes next (`healing` after a backoff,
    /// `rate_limited`).
    HealFailed {
        /// The drift that was to be healed.
        drift: ObjectDrift,
        /// Why it failed.
        error: String,
    },
    /// Another manager keeps setting a field back: healing stopped; the state is
    /// `contested`, `contested` names the field and the manager.
    Contested(ObjectDrift),
    /// An object is back in sync without a heal, or no longer managed; the last drift
    /// reported, with state `resolved`.
    Resolved(ObjectDrift),
    /// An object could not be diffed (the dry-run was refused, the server unreachable).
    Failed {
        /// The component.
        component: String,
        /// `Kind.group namespace/name`.
        object: String,
        /// Why.
        error: String,
        /// When.
        #[serde(with = "rfc3339")]
        at: SystemTime,
    },
    /// A full resync ended.
    Resynced(ResyncReport),
}

impl DriftEvent {
    /// The object's drift, for the events about one object's drift.
    pub fn drift(&self) -> Option<&ObjectDrift> {
        match self {
            DriftEvent::Detected(d) | DriftEvent::Healed(d) | DriftEvent::Contested(d) | DriftEvent::Resolved(d) => Some(d),
            DriftEvent::HealFailed { drift, .. } => Some(drift),
            DriftEvent::Failed { .. } | DriftEvent::Resynced(_) => None,
        }
    }

    /// The object the event is about (`Kind.group namespace/name`); `None` for a resync.
    pub fn object(&self) -> Option<&str> {
        match self {
            DriftEvent::Failed { object, .. } => Some(object),
            other => other.drift().map(|d| d.object.as_str()),
        }
    }
}

/// Counters since the engine started, for the dashboard and `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriftStats {
    /// Objects managed.
    pub objects: usize,
    /// Watches running.
    pub watches: usize,
    /// Whether every watch has listed its objects once and each was compared.
    pub ready: bool,
    /// Objects with a dry-run or heal in flight.
    pub in_flight: usize,
    /// Watch events received for managed objects.
    pub watch_events: u64,
    /// Watch errors (each retried with backoff).
    pub watch_errors: u64,
    /// The last watch error: the watch and what failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_watch_error: Option<String>,
    /// Observations the cache showed in sync (no dry-run).
    pub cache_hits: u64,
    /// Server-side-apply dry-runs sent.
    pub dry_runs: u64,
    /// Drifts detected (each [`DriftEvent::Detected`]).
    pub detected: u64,
    /// Heals that succeeded.
    pub heals: u64,
    /// Heals that failed.
    pub heal_failures: u64,
    /// Objects that became contested.
    pub contested: u64,
    /// Diffs that failed.
    pub failures: u64,
    /// Full resyncs done.
    pub resyncs: u64,
    /// The watch lag of the last change event: from the write the API server recorded
    /// (the newest `managedFields` time, whole seconds, so up to 1 s high) to the event's
    /// arrival here; none before the first change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watch_lag_ms: Option<u64>,
    /// The largest watch lag seen.
    #[serde(default)]
    pub watch_lag_max_ms: u64,
}

/// How far behind the API server a watch event arrives: now minus the newest write time
/// in the object's `managedFields` (`None` when it records none, or one in the future).
pub(crate) fn watch_lag(live: &Value, now: std::time::SystemTime) -> Option<std::time::Duration> {
    let newest = live
        .pointer("/metadata/managedFields")?
        .as_array()?
        .iter()
        .filter_map(|f| f.get("time")?.as_str())
        .filter_map(|t| time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok())
        .map(std::time::SystemTime::from)
        .max()?;
    now.duration_since(newest).ok()
}

/// RFC 3339 times (`2026-01-01T10:00:00.123Z`) for serde.
pub mod rfc3339 {
    use std::time::SystemTime;

    use serde::{Deserialize as _, Deserializer, Serializer};
    use time::OffsetDateTime;
    use time::format_description::well_known::Rfc3339;

    /// `time` as RFC 3339 in UTC.
    pub fn format(time: SystemTime) -> String {
        OffsetDateTime::from(time).format(&Rfc3339).unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
    }

    /// Writes a time as RFC 3339.
    pub fn serialize<S: Serializer>(time: &SystemTime, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format(*time))
    }

    /// Reads an RFC 3339 time.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SystemTime, D::Error> {
        let text = String::deserialize(deserializer)?;
        OffsetDateTime::parse(&text, &Rfc3339).map(SystemTime::from).map_err(serde::de::Error::custom)
    }
}

/// Whether a drifted field's values are hidden: a Secret's data.
pub(crate) fn hidden(kind: &str, path: &str) -> bool {
    kind == "Secret"
        && ["data", "stringData", "binaryData"]
            .iter()
            .any(|p| path == *p || path.starts_with(&format!("{p}.")) || path.starts_with(&format!("{p}[")))
}

/// Drift with a Secret's values hidden: what every event, snapshot, history record and
/// API answer carries (healing re-applies the desired object, never these values).
pub(crate) fn redacted(mut drift: Vec<ObjectDrift>) -> Vec<ObjectDrift> {
    for object in &mut drift {
        let kind = object.kind.clone();
        redact_fields(&kind, &mut object.fields);
    }
    drift
}

/// One object's fields with a Secret's values hidden (see [`redacted`]).
pub(crate) fn redact_fields(kind: &str, fields: &mut [DriftField]) {
    for field in fields {
        if hidden(kind, &field.path) {
            field.live = field.live.as_ref().map(|_| Value::String("(hidden)".to_owned()));
            field.desired = field.desired.as_ref().map(|_| Value::String("(hidden)".to_owned()));
        }
    }
}

#[cfg(test)]
mod lag_tests {
    use super::watch_lag;
    use serde_json::json;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    #[test]
    fn the_lag_runs_from_the_newest_write_the_api_server_recorded() {
        let at = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
        // 2026-12-01T20:00:00Z and 20:00:05Z.
        let live = json!({"metadata": {"managedFields": [
            {"manager": "idp-lab", "time": "2026-12-01T20:00:00Z"},
            {"manager": "kubectl-edit", "time": "2026-12-01T20:00:05Z"},
            {"manager": "no-time"}
        ]}});
        let newest = 1_796_155_205;
        assert_eq!(watch_lag(&live, at(newest) + Duration::from_millis(250)), Some(Duration::from_millis(250)));
        assert_eq!(watch_lag(&live, at(newest - 1)), None, "a write in the future is no lag");
        assert_eq!(watch_lag(&json!({"metadata": {}}), SystemTime::now()), None, "no managedFields: unknown");
        assert_eq!(watch_lag(&json!({"metadata": {"managedFields": [{"time": "not a time"}]}}), SystemTime::now()), None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::{Duration, UNIX_EPOCH};

    fn drift() -> ObjectDrift {
        ObjectDrift {
            component: "shop".into(),
            object: "ConfigMap shop/settings".into(),
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            namespace: "shop".into(),
            name: "settings".into(),
            exists: true,
            fields: vec![DriftField {
                path: "data.mode".into(),
                live: Some(json!("slow")),
                desired: Some(json!("fast")),
                manager: Some("intruder".into()),
                evidence: Some(Evidence::Owner),
                report_only: false,
            }],
            manager: Some("intruder".into()),
            detected_at: UNIX_EPOCH + Duration::from_millis(1_767_261_600_250),
            since: UNIX_EPOCH + Duration::from_secs(1_767_261_600),
            state: DriftState::Contested,
            policy: Policy::Heal,
            heals: 3,
            contested: vec![Contest { path: "data.mode".into(), manager: "intruder".into(), reverts: 3 }],
        }
    }

    #[test]
    fn events_are_json_with_rfc3339_times_and_read_back() {
        let event = DriftEvent::Contested(drift());
        let value = serde_json::to_value(&event).expect("serialises");
        assert_eq!(value["event"], "contested");
        assert_eq!(value["detected_at"], "2026-01-01T10:00:00.25Z");
        assert_eq!(value["since"], "2026-01-01T10:00:00Z");
        assert_eq!(value["state"], "contested");
        assert_eq!(value["policy"], "heal");
        assert_eq!(
            value["fields"][0],
            json!({"path": "data.mode", "live": "slow", "desired": "fast", "manager": "intruder", "evidence": "owner"})
        );
        assert_eq!(value["contested"][0]["manager"], "intruder");
        let back: DriftEvent = serde_json::from_value(value).expect("reads back");
        assert_eq!(back, event);
        assert_eq!(back.object(), Some("ConfigMap shop/settings"));

        let failed = DriftEvent::HealFailed { drift: drift(), error: "refused".into() };
        let back: DriftEvent = serde_json::from_str(&serde_json::to_string(&failed).expect("serialises")).expect("reads back");
        assert_eq!(back, failed);
        let resync = DriftEvent::Resynced(ResyncReport {
            at: UNIX_EPOCH,
            uncached: true,
            compared: 3,
            cached: 0,
            drifted: 0,
            took_ms: 12,
            errors: Vec::new(),
        });
        let text = serde_json::to_string(&resync).expect("serialises");
        assert!(text.starts_with(r#"{"event":"resynced","at":"1970-01-01T00:00:00Z""#), "{text}");
        assert_eq!(resync.object(), None);
        assert!(serde_json::from_str::<DriftEvent>(&text.replace("1970-01-01T00:00:00Z", "yesterday")).is_err());
    }
}
