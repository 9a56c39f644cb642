//! SLO burn-rate maths: the multi-window, multi-burn-rate table of the reference (§7c),
//! scaled to each SLO's window, the error budget remaining, a low-traffic guard, and the
//! parser of Pyrra `ServiceLevelObjective` objects into an [`Slo`] with the PromQL it needs.
//!
//! Pure: no clock and no I/O. The watchdog (`idp-watchdog`) runs the queries of
//! [`Slo::queries`] against Prometheus at one evaluation time and hands the event counts
//! per window to [`evaluate`].
//!
//! The formulas (B = 1 − objective, E(w) = bad(w) / total(w)):
//! - burn(w) = E(w) / B ([`burn_rate`]);
//! - a row fires iff burn(long) > factor and burn(short) > factor, and the long window saw at
//!   least the guard's minimum number of events ([`verdict`]);
//! - remaining = 1 − bad(W) / (B · total(W)) over the SLO's own window W ([`budget_remaining`]).
//!
//! The table is defined for a 30-day window; for another window W each long and short window
//! is multiplied by W / 30 d and the factors stay (§7c: factor = f·T/L, so a budget fraction f
//! spent in a window that scales with T keeps the same factor).

use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// The SLO window the reference table is written for: 30 days.
pub const REFERENCE_WINDOW: Duration = Duration::from_secs(30 * 24 * 3600);

/// The default minimum number of events in a row's long window below which the row never
/// fires: 100, so that at 1 h (the shortest long window of a 30-day SLO) a single bad event
/// among fewer than 100 cannot page (the workbook's "Low-traffic services").
pub const DEFAULT_MIN_EVENTS: f64 = 100.0;

const MINUTE: u64 = 60;
const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;

/// The reference table for a 30-day window (§7c): long, short, factor, severity.
pub const REFERENCE_ROWS: [AlertRow; 4] = [
    AlertRow { long: Duration::from_secs(HOUR), short: Duration::from_secs(5 * MINUTE), factor: 14.4, severity: Severity::Page },
    AlertRow { long: Duration::from_secs(6 * HOUR), short: Duration::from_secs(30 * MINUTE), factor: 6.0, severity: Severity::Page },
    AlertRow { long: Duration::from_secs(DAY), short: Duration::from_secs(2 * HOUR), factor: 3.0, severity: Severity::Ticket },
    AlertRow { long: Duration::from_secs(3 * DAY), short: Duration::from_secs(6 * HOUR), factor: 1.0, severity: Severity::Ticket },
];

/// What went wrong reading an SLO or evaluating it.
#[derive(Debug, thiserror::Error)]
pub enum SloError {
    /// A field of the object is missing or has the wrong type.
    #[error("SLO {slo}: {field} is missing or not {expected}")]
    Field {
        /// The SLO (`namespace/name`, or `?` before the name is known).
        slo: String,
        /// The JSON path of the field.
        field: String,
        /// What was expected there.
        expected: &'static str,
    },
    /// `spec.target` is not a percentage strictly between 0 and 100.
    #[error("SLO {slo}: target {target:?} is not a percentage strictly between 0 and 100")]
    Target {
        /// The SLO.
        slo: String,
        /// The target as written.
        target: String,
    },
    /// A duration does not parse as a Prometheus duration.
    #[error("SLO {slo}: {field} {value:?} is not a Prometheus duration (like 30d, 4w or 1h30m)")]
    Duration {
        /// The SLO.
        slo: String,
        /// The field.
        field: String,
        /// The value as written.
        value: String,
        /// Why.
        #[source]
        source: DurationError,
    },
    /// The window is so short that a scaled alert window rounds down to zero (pyrra#1028).
    #[error("SLO window {window} is too short: its alert windows round down to 0 ms")]
    WindowTooShort {
        /// The window, formatted.
        window: String,
    },
    /// An indicator kind idp-lab does not evaluate (`latencyNative`, `bool_gauge`), or none.
    #[error("SLO {slo}: indicator {kind} is not supported (ratio and latency are)")]
    Indicator {
        /// The SLO.
        slo: String,
        /// The indicator kind found.
        kind: String,
    },
    /// Event counts that are negative or not finite.
    #[error("event counts total={total} bad={bad} are not finite non-negative numbers")]
    Counts {
        /// The total.
        total: f64,
        /// The bad events.
        bad: f64,
    },
    /// [`evaluate`] was not given the counts of a window it needs.
    #[error("no event counts for the window {window}")]
    MissingWindow {
        /// The window, formatted.
        window: String,
    },
}

/// A Prometheus duration that does not parse.
#[derive(Debug, thiserror::Error)]
pub enum DurationError {
    /// Empty text.
    #[error("empty duration")]
    Empty,
    /// A unit that is not `ms`, `s`, `m`, `h`, `d`, `w` or `y`, or a number without one.
    #[error("unknown or missing unit at {at:?}")]
    Unit {
        /// The rest of the text where parsing stopped.
        at: String,
    },
    /// Units out of order or repeated (`1m1h`), as Prometheus rejects them.
    #[error("units must go from largest to smallest, each once")]
    Order,
    /// A number that does not fit.
    #[error("duration overflows")]
    Overflow,
}

/// How urgent a row is: the workbook's page and ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    /// Wake someone up (the two fast rows).
    Page,
    /// Look at it in working hours (the two slow rows).
    Ticket,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Page => "page",
            Severity::Ticket => "ticket",
        })
    }
}

/// One row of the multi-window, multi-burn-rate table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AlertRow {
    /// The long window.
    pub long: Duration,
    /// The short window, which makes the alert reset quickly once the burn stops.
    pub short: Duration,
    /// The burn rate both windows must exceed.
    pub factor: f64,
    /// Page or ticket.
    pub severity: Severity,
}

/// The reference rows scaled to an SLO window: each long and short window times
/// `window / 30 d`, rounded down to whole milliseconds; the factors stay.
///
/// ```
/// use idp_core::slo::{alert_rows, format_duration};
/// use std::time::Duration;
/// let rows = alert_rows(Duration::from_secs(7 * 86_400)).unwrap();
/// assert_eq!(format_duration(rows[0].long), "14m");
/// assert_eq!(rows[0].factor, 14.4);
/// ```
pub fn alert_rows(window: Duration) -> Result<Vec<AlertRow>, SloError> {
    let reference = REFERENCE_WINDOW.as_millis();
    let scale = |d: Duration| -> Result<Duration, SloError> {
        let ms = d.as_millis().saturating_mul(window.as_millis()) / reference;
        let ms = u64::try_from(ms).map_err(|_| SloError::WindowTooShort { window: format_duration(window) })?;
        if ms == 0 {
            return Err(SloError::WindowTooShort { window: format_duration(window) });
        }
        Ok(Duration::from_millis(ms))
    };
    REFERENCE_ROWS.iter().map(|row| Ok(AlertRow { long: scale(row.long)?, short: scale(row.short)?, ..*row })).collect()
}

/// An objective, kept as the percentage it was written as ("99.5").
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Objective {
    percent: f64,
}

impl Objective {
    /// An objective from a percentage strictly between 0 and 100; `None` otherwise.
    pub fn from_percent(percent: f64) -> Option<Objective> {
        (percent.is_finite() && percent > 0.0 && percent < 100.0).then_some(Objective { percent })
    }

    /// The percentage.
    pub fn percent(self) -> f64 {
        self.percent
    }

    /// The objective as a ratio (`percent / 100`).
    pub fn ratio(self) -> f64 {
        self.percent / 100.0
    }

    /// The error budget B as a ratio, computed as `(100 − percent) / 100` (the reference's
    /// §4.5: one formula everywhere, so tests compute the same float).
    pub fn budget(self) -> f64 {
        (100.0 - self.percent) / 100.0
    }
}

/// Total and bad events over one window (from `increase()`, so not always integers).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Counts {
    total: f64,
    bad: f64,
}

impl Counts {
    /// Counts, if both are finite and non-negative.
    pub fn new(total: f64, bad: f64) -> Result<Counts, SloError> {
        if !(total.is_finite() && bad.is_finite() && total >= 0.0 && bad >= 0.0) {
            return Err(SloError::Counts { total, bad });
        }
        Ok(Counts { total, bad })
    }

    /// All events.
    pub fn total(self) -> f64 {
        self.total
    }

    /// Bad events.
    pub fn bad(self) -> f64 {
        self.bad
    }

    /// E = bad / total; `None` without events.
    pub fn error_ratio(self) -> Option<f64> {
        (self.total > 0.0).then(|| self.bad / self.total)
    }
}

/// burn = error ratio / (1 − objective).
pub fn burn_rate(error_ratio: f64, objective: Objective) -> f64 {
    error_ratio / objective.budget()
}

/// 1 − bad / (B · total) over the SLO's window: 1 with no errors, 0 with the budget spent,
/// negative when overspent, and 1 without events (nothing was spent).
pub fn budget_remaining(window: Counts, objective: Objective) -> f64 {
    let allowed = objective.budget() * window.total;
    if allowed <= 0.0 {
        return 1.0;
    }
    1.0 - window.bad / allowed
}

/// Below how many events in a row's long window the row never fires.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LowTrafficGuard {
    /// The minimum number of events in the long window ([`DEFAULT_MIN_EVENTS`] by default).
    pub min_events: f64,
}

impl Default for LowTrafficGuard {
    fn default() -> Self {
        LowTrafficGuard { min_events: DEFAULT_MIN_EVENTS }
    }
}

/// One row's verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct RowVerdict {
    /// The (scaled) row.
    pub row: AlertRow,
    /// Counts over the long window.
    pub long: Counts,
    /// Counts over the short window.
    pub short: Counts,
    /// Burn rate over the long window; `None` without events.
    pub long_burn: Option<f64>,
    /// Burn rate over the short window; `None` without events.
    pub short_burn: Option<f64>,
    /// The guard held the row back: the long window saw fewer events than its minimum.
    pub low_traffic: bool,
    /// Both windows exceed the factor and the guard let it through.
    pub fires: bool,
}

/// A row's verdict from the counts over its long and short windows.
pub fn verdict(row: AlertRow, objective: Objective, long: Counts, short: Counts, guard: LowTrafficGuard) -> RowVerdict {
    let long_burn = long.error_ratio().map(|e| burn_rate(e, objective));
    let short_burn = short.error_ratio().map(|e| burn_rate(e, objective));
    let low_traffic = long.total < guard.min_events;
    let exceeds = |b: Option<f64>| b.is_some_and(|b| b > row.factor);
    let fires = !low_traffic && exceeds(long_burn) && exceeds(short_burn);
    RowVerdict { row, long, short, long_burn, short_burn, low_traffic, fires }
}

/// What the SLI counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Indicator {
    /// `spec.indicator.ratio`: a counter of errors and a counter of all events.
    Ratio {
        /// The errors selector (`errors.metric`).
        errors: String,
        /// The total selector (`total.metric`).
        total: String,
    },
    /// `spec.indicator.latency`: a histogram bucket (`le`) of fast-enough events and the count
    /// of all events; errors = total − success.
    Latency {
        /// The success selector (a `_bucket` with `le`).
        success: String,
        /// The total selector (a `_count`).
        total: String,
    },
}

/// The two PromQL queries for one window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowQueries {
    /// The window.
    pub window: Duration,
    /// Bad events over the window.
    pub errors: String,
    /// All events over the window.
    pub total: String,
}

/// An SLO as the watchdog evaluates it.
#[derive(Debug, Clone, PartialEq)]
pub struct Slo {
    /// `metadata.namespace`, if any.
    pub namespace: Option<String>,
    /// `metadata.name`.
    pub name: String,
    /// `spec.target`.
    pub objective: Objective,
    /// `spec.window`.
    pub window: Duration,
    /// `spec.indicator`.
    pub indicator: Indicator,
    /// The reference rows scaled to the window.
    pub rows: Vec<AlertRow>,
    /// The low-traffic guard ([`LowTrafficGuard::default`] from the parser).
    pub guard: LowTrafficGuard,
}

impl Slo {
    /// An SLO from its parts; the rows are scaled to `window`.
    pub fn new(name: &str, objective: Objective, window: Duration, indicator: Indicator) -> Result<Slo, SloError> {
        Ok(Slo {
            namespace: None,
            name: name.to_owned(),
            objective,
            window,
            indicator,
            rows: alert_rows(window)?,
            guard: LowTrafficGuard::default(),
        })
    }

    /// A Pyrra `pyrra.dev/v1alpha1` `ServiceLevelObjective` (as JSON) into an [`Slo`].
    ///
    /// Reads `metadata.{name,namespace}`, `spec.target` (a percentage string, a number is also
    /// accepted), `spec.window` (Pyrra's default `28d` when absent) and one of
    /// `spec.indicator.ratio.{errors,total}.metric` or
    /// `spec.indicator.latency.{success,total}.metric`. `grouping` is not applied: the SLO is
    /// evaluated summed over all series.
    pub fn from_pyrra(object: &Value) -> Result<Slo, SloError> {
        let name = object.pointer("/metadata/name").and_then(Value::as_str).ok_or_else(|| SloError::Field {
            slo: "?".to_owned(),
            field: "metadata.name".to_owned(),
            expected: "a string",
        })?;
        let namespace = object.pointer("/metadata/namespace").and_then(Value::as_str).map(str::to_owned);
        let id = match &namespace {
            Some(ns) => format!("{ns}/{name}"),
            None => name.to_owned(),
        };
        let field = |field: &str, expected: &'static str| SloError::Field { slo: id.clone(), field: field.to_owned(), expected };
        let target_text = match object.pointer("/spec/target") {
            Some(Value::String(s)) => s.trim().to_owned(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return Err(field("spec.target", "a percentage string")),
        };
        let objective = target_text
            .parse::<f64>()
            .ok()
            .and_then(Objective::from_percent)
            .ok_or_else(|| SloError::Target { slo: id.clone(), target: target_text.clone() })?;
        let window_text = match object.pointer("/spec/window") {
            None | Some(Value::Null) => "28d",
            Some(Value::String(s)) => s.as_str(),
            Some(_) => return Err(field("spec.window", "a duration string")),
        };
        let window = parse_duration(window_text).map_err(|source| SloError::Duration {
            slo: id.clone(),
            field: "spec.window".to_owned(),
            value: window_text.to_owned(),
            source,
        })?;
        let indicator = object.pointer("/spec/indicator").ok_or_else(|| field("spec.indicator", "an object"))?;
        let selector = |path: &str| -> Result<String, SloError> {
            indicator
                .pointer(path)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .ok_or_else(|| field(&format!("spec.indicator{}", path.replace('/', ".")), "a PromQL selector"))
        };
        let indicator = if indicator.get("ratio").is_some_and(|v| !v.is_null()) {
            Indicator::Ratio { errors: selector("/ratio/errors/metric")?, total: selector("/ratio/total/metric")? }
        } else if indicator.get("latency").is_some_and(|v| !v.is_null()) {
            Indicator::Latency { success: selector("/latency/success/metric")?, total: selector("/latency/total/metric")? }
        } else {
            let kind = indicator.as_object().and_then(|o| o.keys().next().cloned()).unwrap_or_else(|| "none".to_owned());
            return Err(SloError::Indicator { slo: id, kind });
        };
        let mut slo = Slo::new(name, objective, window, indicator)?;
        slo.namespace = namespace;
        Ok(slo)
    }

    /// Every distinct window [`evaluate`] needs counts for: the SLO window and each row's
    /// long and short windows, shortest first.
    pub fn windows(&self) -> Vec<Duration> {
        let mut windows: Vec<Duration> = self.rows.iter().flat_map(|r| [r.long, r.short]).chain([self.window]).collect();
        windows.sort();
        windows.dedup();
        windows
    }

    /// The PromQL for one window: `sum(increase(<errors>[w]))` and `sum(increase(<total>[w]))`;
    /// for a latency SLI the errors are `sum(increase(<total>[w])) - sum(increase(<success>[w]))`.
    pub fn queries(&self, window: Duration) -> WindowQueries {
        let w = format_duration(window);
        let increase = |selector: &str| format!("sum(increase({selector}[{w}]))");
        let (errors, total) = match &self.indicator {
            Indicator::Ratio { errors, total } => (increase(errors), increase(total)),
            Indicator::Latency { success, total } => (format!("{} - {}", increase(total), increase(success)), increase(total)),
        };
        WindowQueries { window, errors, total }
    }
}

/// An SLO's state at one evaluation time.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// One verdict per row, in table order.
    pub rows: Vec<RowVerdict>,
    /// Counts over the SLO's window.
    pub window: Counts,
    /// [`budget_remaining`] over the SLO's window.
    pub budget_remaining: f64,
}

impl Evaluation {
    /// Whether any row fires.
    pub fn firing(&self) -> bool {
        self.rows.iter().any(|r| r.fires)
    }
}

/// Evaluates an SLO from event counts per window (every window of [`Slo::windows`]).
pub fn evaluate(slo: &Slo, counts: &BTreeMap<Duration, Counts>) -> Result<Evaluation, SloError> {
    let get = |w: Duration| counts.get(&w).copied().ok_or_else(|| SloError::MissingWindow { window: format_duration(w) });
    let rows = slo
        .rows
        .iter()
        .map(|row| Ok(verdict(*row, slo.objective, get(row.long)?, get(row.short)?, slo.guard)))
        .collect::<Result<Vec<_>, SloError>>()?;
    let window = get(slo.window)?;
    Ok(Evaluation { rows, window, budget_remaining: budget_remaining(window, slo.objective) })
}

const UNITS: [(&str, u64); 7] =
    [("y", 365 * DAY * 1000), ("w", 7 * DAY * 1000), ("d", DAY * 1000), ("h", HOUR * 1000), ("m", MINUTE * 1000), ("s", 1000), ("ms", 1)];

/// Parses a Prometheus duration (`30d`, `4w`, `1h30m`, `500ms`; units largest first, each once).
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(DurationError::Empty);
    }
    let mut rest = text;
    let mut total: u64 = 0;
    let mut last_unit = None;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(DurationError::Unit { at: rest.to_owned() });
        }
        let number: u64 = rest[..digits].parse().map_err(|_| DurationError::Overflow)?;
        rest = &rest[digits..];
        // "ms" before "m", so a longest match wins.
        let (index, (unit, ms)) = UNITS
            .iter()
            .enumerate()
            .filter(|(_, (u, _))| rest.starts_with(u))
            .max_by_key(|(_, (u, _))| u.len())
            .ok_or_else(|| DurationError::Unit { at: rest.to_owned() })?;
        if last_unit.is_some_and(|l| index <= l) {
            return Err(DurationError::Order);
        }
        last_unit = Some(index);
        rest = &rest[unit.len()..];
        total = number.checked_mul(*ms).and_then(|v| total.checked_add(v)).ok_or(DurationError::Overflow)?;
    }
    Ok(Duration::from_millis(total))
}

/// Formats a duration as Prometheus does: `1h4m`, `14m`, `70ms`, `0s` (days, not weeks).
pub fn format_duration(d: Duration) -> String {
    let mut ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    if ms == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    for (unit, size) in UNITS.iter().filter(|(u, _)| !matches!(*u, "y" | "w")) {
        if ms >= *size {
            out.push_str(&format!("{}{unit}", ms / size));
            ms %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests;
