use super::*;
use proptest::prelude::*;
use serde_json::json;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn counts(total: f64, bad: f64) -> Counts {
    match Counts::new(total, bad) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    }
}

fn objective(percent: f64) -> Objective {
    match Objective::from_percent(percent) {
        Some(o) => o,
        None => panic!("bad objective {percent}"),
    }
}

fn ratio_slo(window: &str) -> Value {
    json!({
        "apiVersion": "pyrra.dev/v1alpha1",
        "kind": "ServiceLevelObjective",
        "metadata": {"name": "api-errors", "namespace": "monitoring"},
        "spec": {
            "target": "99.5",
            "window": window,
            "indicator": {"ratio": {
                "errors": {"metric": "http_requests_total{job=\"api\",code=~\"5..\"}"},
                "total": {"metric": "http_requests_total{job=\"api\"}"}
            }}
        }
    })
}

#[test]
fn reference_window_keeps_the_table() -> Result<(), SloError> {
    let rows = alert_rows(REFERENCE_WINDOW)?;
    assert_eq!(rows, REFERENCE_ROWS.to_vec());
    let shown: Vec<_> = rows.iter().map(|r| (format_duration(r.long), format_duration(r.short), r.factor, r.severity)).collect();
    assert_eq!(
        shown,
        vec![
            ("1h".to_owned(), "5m".to_owned(), 14.4, Severity::Page),
            ("6h".to_owned(), "30m".to_owned(), 6.0, Severity::Page),
            ("1d".to_owned(), "2h".to_owned(), 3.0, Severity::Ticket),
            ("3d".to_owned(), "6h".to_owned(), 1.0, Severity::Ticket),
        ]
    );
    Ok(())
}

#[test]
fn seven_days_scales_by_seven_thirtieths() -> Result<(), SloError> {
    let rows = alert_rows(secs(7 * 86_400))?;
    let windows: Vec<_> = rows.iter().map(|r| (r.long.as_secs(), r.short.as_secs(), r.factor)).collect();
    assert_eq!(windows, vec![(840, 70, 14.4), (5040, 420, 6.0), (20_160, 1680, 3.0), (60_480, 5040, 1.0)]);
    assert_eq!(format_duration(rows[1].long), "1h24m");
    assert_eq!(format_duration(rows[0].short), "1m10s");
    Ok(())
}

#[test]
fn a_tiny_window_is_refused() {
    assert!(matches!(alert_rows(Duration::from_millis(10)), Err(SloError::WindowTooShort { .. })));
}

#[test]
fn durations_parse_like_prometheus() {
    let ok = |t: &str| parse_duration(t).map_err(|e| format!("{t}: {e}"));
    assert_eq!(ok("4w"), Ok(secs(28 * 86_400)));
    assert_eq!(ok("30d"), Ok(secs(30 * 86_400)));
    assert_eq!(ok("1h30m"), Ok(secs(5400)));
    assert_eq!(ok("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(ok("1m5s10ms"), Ok(Duration::from_millis(65_010)));
    assert_eq!(ok("1y"), Ok(secs(365 * 86_400)));
    assert!(matches!(parse_duration(""), Err(DurationError::Empty)));
    assert!(matches!(parse_duration("5"), Err(DurationError::Unit { .. })));
    assert!(matches!(parse_duration("5x"), Err(DurationError::Unit { .. })));
    assert!(matches!(parse_duration("1m1h"), Err(DurationError::Order)));
    assert!(matches!(parse_duration("1h1h"), Err(DurationError::Order)));
    assert!(matches!(parse_duration("99999999999999999999d"), Err(DurationError::Overflow)));
}

#[test]
fn formats_round_trip() {
    for d in [secs(60), secs(3360), secs(7 * 86_400), Duration::from_millis(61_001), Duration::from_millis(7)] {
        assert_eq!(parse_duration(&format_duration(d)).ok(), Some(d), "{}", format_duration(d));
    }
    assert_eq!(format_duration(Duration::ZERO), "0s");
}

#[test]
fn objective_budget() {
    assert!(Objective::from_percent(100.0).is_none());
    assert!(Objective::from_percent(0.0).is_none());
    assert!(Objective::from_percent(f64::NAN).is_none());
    let o = objective(99.9);
    assert_eq!(o.budget(), (100.0 - 99.9) / 100.0);
    assert!((o.ratio() - 0.999).abs() < 1e-12);
}

#[test]
fn counts_refuse_negative_and_nan() {
    assert!(Counts::new(-1.0, 0.0).is_err());
    assert!(Counts::new(1.0, -0.5).is_err());
    assert!(Counts::new(f64::NAN, 0.0).is_err());
    assert!(Counts::new(f64::INFINITY, 0.0).is_err());
    assert_eq!(counts(0.0, 0.0).error_ratio(), None);
    assert_eq!(counts(200.0, 1.0).error_ratio(), Some(0.005));
}

#[test]
fn burn_and_budget_examples() {
    let o = objective(99.0);
    // 0.144 is the reference's threshold on E for 99 % at 14.4.
    assert!((burn_rate(0.144, o) - 14.4).abs() < 1e-9);
    assert_eq!(budget_remaining(counts(1000.0, 0.0), o), 1.0);
    assert!((budget_remaining(counts(1000.0, 5.0), o) - 0.5).abs() < 1e-12);
    assert!((budget_remaining(counts(1000.0, 20.0), o) + 1.0).abs() < 1e-12);
    assert_eq!(budget_remaining(counts(0.0, 0.0), o), 1.0);
}

#[test]
fn a_row_needs_both_windows() {
    let o = objective(99.0);
    let row = REFERENCE_ROWS[0];
    let guard = LowTrafficGuard::default();
    let hot = counts(10_000.0, 2_000.0); // burn 20
    let cold = counts(10_000.0, 100.0); // burn 1
    assert!(verdict(row, o, hot, hot, guard).fires);
    assert!(!verdict(row, o, hot, cold, guard).fires);
    assert!(!verdict(row, o, cold, hot, guard).fires);
    // Exactly at the factor is not above it.
    let at = counts(1000.0, 144.0);
    let v = verdict(row, o, at, at, guard);
    assert!(!v.fires, "{v:?}");
    // A handful of requests cannot page.
    let few = counts(10.0, 10.0);
    let v = verdict(row, o, few, few, guard);
    assert!(v.low_traffic && !v.fires);
    assert!(verdict(row, o, few, few, LowTrafficGuard { min_events: 0.0 }).fires);
}

#[test]
fn parses_a_pyrra_ratio_slo() -> Result<(), SloError> {
    let slo = Slo::from_pyrra(&ratio_slo("7d"))?;
    assert_eq!(slo.name, "api-errors");
    assert_eq!(slo.namespace.as_deref(), Some("monitoring"));
    assert_eq!(slo.objective.percent(), 99.5);
    assert_eq!(slo.window, secs(7 * 86_400));
    assert_eq!(slo.guard.min_events, DEFAULT_MIN_EVENTS);
    let q = slo.queries(secs(840));
    assert_eq!(q.errors, "sum(increase(http_requests_total{job=\"api\",code=~\"5..\"}[14m]))");
    assert_eq!(q.total, "sum(increase(http_requests_total{job=\"api\"}[14m]))");
    assert_eq!(slo.windows().len(), 8, "{:?}", slo.windows()); // 6h appears twice in the table; plus 7d
    assert_eq!(slo.windows().last(), Some(&secs(7 * 86_400)));
    Ok(())
}

#[test]
fn parses_a_pyrra_latency_slo_and_default_window() -> Result<(), SloError> {
    let object = json!({
        "metadata": {"name": "api-latency"},
        "spec": {"target": "99", "indicator": {"latency": {
            "success": {"metric": "http_request_duration_seconds_bucket{job=\"api\",le=\"0.5\"}"},
            "total": {"metric": "http_request_duration_seconds_count{job=\"api\"}"}
        }}}
    });
    let slo = Slo::from_pyrra(&object)?;
    assert_eq!(slo.window, secs(28 * 86_400));
    let q = slo.queries(secs(3360));
    assert_eq!(
        q.errors,
        "sum(increase(http_request_duration_seconds_count{job=\"api\"}[56m])) - sum(increase(http_request_duration_seconds_bucket{job=\"api\",le=\"0.5\"}[56m]))"
    );
    assert_eq!(q.total, "sum(increase(http_request_duration_seconds_count{job=\"api\"}[56m]))");
    Ok(())
}

#[test]
fn parser_errors_name_the_field() {
    let mut o = ratio_slo("7d");
    o["spec"]["target"] = json!("100");
    assert!(matches!(Slo::from_pyrra(&o), Err(SloError::Target { .. })));
    o["spec"]["target"] = json!("ninety");
    assert!(matches!(Slo::from_pyrra(&o), Err(SloError::Target { .. })));
    let o = ratio_slo("7 days");
    let err = Slo::from_pyrra(&o).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("spec.window") && err.contains("monitoring/api-errors"), "{err}");
    let mut o = ratio_slo("7d");
    o["spec"]["indicator"]["ratio"]["errors"] = json!({});
    let err = Slo::from_pyrra(&o).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("spec.indicator.ratio.errors.metric"), "{err}");
    let mut o = ratio_slo("7d");
    o["spec"]["indicator"] = json!({"bool_gauge": {"metric": "up"}});
    assert!(matches!(Slo::from_pyrra(&o), Err(SloError::Indicator { kind, .. }) if kind == "bool_gauge"));
    assert!(matches!(Slo::from_pyrra(&json!({"spec": {}})), Err(SloError::Field { .. })));
}

#[test]
fn the_boundaries_are_exact() {
    // A burn of exactly the factor (1.0: 1 bad in 100 at 99 %) does not fire; one more
    // bad event does. Checked to be exactly the factor, so the boundary is really tested.
    let o = objective(99.0);
    let row = REFERENCE_ROWS[3];
    let at = counts(100.0, 1.0);
    assert_eq!(burn_rate(at.error_ratio().unwrap_or_default(), o), row.factor);
    let guard = LowTrafficGuard { min_events: 100.0 };
    let v = verdict(row, o, at, at, guard);
    assert!(!v.fires && !v.low_traffic, "exactly the minimum of events is enough traffic: {v:?}");
    assert!(verdict(row, o, counts(100.0, 2.0), counts(100.0, 2.0), guard).fires);
    assert!(verdict(row, o, counts(99.0, 2.0), counts(99.0, 2.0), guard).low_traffic);
    let two = counts(100.0, 2.0);
    assert_eq!((two.total(), two.bad()), (100.0, 2.0));
    assert_eq!((Severity::Page.to_string(), Severity::Ticket.to_string()), ("page".to_owned(), "ticket".to_owned()));
}

#[test]
fn a_numeric_target_is_read_like_a_string_one() -> Result<(), SloError> {
    let mut slo = ratio_slo("30d");
    slo["spec"]["target"] = json!(99.5);
    assert_eq!(Slo::from_pyrra(&slo)?, Slo::from_pyrra(&ratio_slo("30d"))?);
    Ok(())
}

#[test]
fn an_evaluation_fires_when_a_row_does() -> Result<(), SloError> {
    let slo = Slo::from_pyrra(&ratio_slo("30d"))?;
    let hot: BTreeMap<Duration, Counts> = slo.windows().into_iter().map(|w| (w, counts(1e6, 1e5))).collect();
    assert!(evaluate(&slo, &hot)?.firing());
    Ok(())
}

#[test]
fn evaluate_needs_every_window() -> Result<(), SloError> {
    let slo = Slo::from_pyrra(&ratio_slo("30d"))?;
    let mut map: BTreeMap<Duration, Counts> = slo.windows().into_iter().map(|w| (w, counts(1e6, 10.0))).collect();
    let e = evaluate(&slo, &map)?;
    assert_eq!(e.rows.len(), 4);
    assert!(!e.firing());
    assert!((e.budget_remaining - (1.0 - 10.0 / (0.005 * 1e6))).abs() < 1e-12);
    map.remove(&secs(300));
    assert!(matches!(evaluate(&slo, &map), Err(SloError::MissingWindow { window }) if window == "5m"));
    Ok(())
}

proptest! {
    #[test]
    fn burn_rate_is_monotone_in_errors(total in 1.0f64..1e9, a in 0.0f64..1.0, b in 0.0f64..1.0, pct in 50.0f64..99.999) {
        let o = objective(pct);
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        let lo = counts(total, total * lo).error_ratio().map(|e| burn_rate(e, o));
        let hi = counts(total, total * hi).error_ratio().map(|e| burn_rate(e, o));
        prop_assert!(lo <= hi, "{lo:?} > {hi:?}");
    }

    #[test]
    fn budget_is_at_most_one(total in 0.0f64..1e9, bad in 0.0f64..1e9, pct in 0.001f64..99.999) {
        let r = budget_remaining(counts(total, bad), objective(pct));
        prop_assert!(r <= 1.0, "{r}");
    }

    #[test]
    fn budget_is_antitone_in_errors(total in 1.0f64..1e9, a in 0.0f64..1e9, b in 0.0f64..1e9, pct in 50.0f64..99.999) {
        let o = objective(pct);
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        prop_assert!(budget_remaining(counts(total, lo), o) >= budget_remaining(counts(total, hi), o));
    }

    #[test]
    fn no_row_fires_under_the_guard(
        min in 1.0f64..1e6,
        frac in 0.0f64..1.0,
        bad_long in 0.0f64..1.0,
        bad_short in 0.0f64..1.0,
        row in 0usize..4,
        pct in 50.0f64..99.999,
    ) {
        let total = min * frac; // strictly below min
        prop_assume!(total < min);
        let guard = LowTrafficGuard { min_events: min };
        let v = verdict(REFERENCE_ROWS[row], objective(pct), counts(total, total * bad_long), counts(total, total * bad_short), guard);
        prop_assert!(!v.fires);
        prop_assert!(v.low_traffic);
    }

    #[test]
    fn scaling_preserves_ratios(window_s in 3_600u64..(400 * 86_400)) {
        let window = secs(window_s);
        let rows = alert_rows(window).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let w = window.as_secs_f64();
        let reference = REFERENCE_WINDOW.as_secs_f64();
        for (scaled, base) in rows.iter().zip(REFERENCE_ROWS.iter()) {
            prop_assert_eq!(scaled.factor, base.factor);
            prop_assert_eq!(scaled.severity, base.severity);
            // Each window is W·(base/30d), rounded down to a millisecond.
            for (s, b) in [(scaled.long, base.long), (scaled.short, base.short)] {
                let exact = b.as_secs_f64() * w / reference;
                let got = s.as_secs_f64();
                prop_assert!(got <= exact + 1e-9 && exact - got < 0.001 + 1e-9, "{got} vs {exact}");
            }
            // So long/short and window/long keep the reference's ratios (within the rounding).
            let ratio = scaled.long.as_secs_f64() / scaled.short.as_secs_f64();
            let base_ratio = base.long.as_secs_f64() / base.short.as_secs_f64();
            // Rounding each window down by < 1 ms moves a ratio by < 1 ms / the window.
            let tolerance = 0.002 / scaled.short.as_secs_f64();
            prop_assert!((ratio - base_ratio).abs() / base_ratio < tolerance, "{ratio} vs {base_ratio}");
            let wl = w / scaled.long.as_secs_f64();
            let base_wl = reference / base.long.as_secs_f64();
            prop_assert!((wl - base_wl).abs() / base_wl < tolerance, "{wl} vs {base_wl}");
        }
    }
}
