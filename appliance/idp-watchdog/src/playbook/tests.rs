use super::*;
use crate::history::Retention;
use idp_core::config::{NamespacedName, ObjectRef, RateLimit};

/// Records every call, and fails the ones on objects named `broken`.
#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<String>>,
}

impl Executor for Recorder {
    async fn execute(&self, action: &Action, cause: &Cause) -> Result<String, ActionError> {
        let on = serde_json::to_value(cause).ok().and_then(|v| v["on"].as_str().map(str::to_owned)).unwrap_or_default();
        self.calls.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(format!("{} ({on})", action.describe()));
        if action.describe().contains("broken") {
            return Err("the API server refused it".into());
        }
        Ok(format!("did {}", action.describe()))
    }
}

impl Recorder {
    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

fn t(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
}

fn alert(fingerprint: &str, status: &str, labels: &[(&str, &str)]) -> Cause {
    Cause::Alert(Alert {
        status: status.to_owned(),
        labels: labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        annotations: BTreeMap::new(),
        starts_at: String::new(),
        ends_at: String::new(),
        generator_url: String::new(),
        fingerprint: fingerprint.to_owned(),
    })
}

fn playbook(name: &str, triggers: Vec<Trigger>, actions: Vec<Action>, rate: (u32, u64), cooldown: u64) -> Playbook {
    Playbook { name: name.into(), triggers, actions, rate_limit: RateLimit { runs: rate.0, per: rate.1 }, cooldown, dry_run: false }
}

fn es_playbook() -> Playbook {
    playbook(
        "es-resync",
        vec![Trigger::Alert { labels: [("slo".to_owned(), "externalsecrets-sync-success".to_owned())].into() }],
        vec![Action::RefreshExternalSecret { external_secret: NamespacedName { namespace: "apps".into(), name: "db".into() } }],
        (1, 600),
        0,
    )
}

fn engine(playbooks: Vec<Playbook>) -> (tempfile::TempDir, Engine<Recorder>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let history = History::open(&dir.path().join("watchdog.sled"), Retention::default()).expect("history");
    (dir, Engine::new(playbooks, Arc::new(history), Recorder::default()))
}

fn verdicts(decisions: &[Decision]) -> Vec<(&str, Verdict)> {
    decisions.iter().map(|d| (d.playbook.name.as_str(), d.verdict)).collect()
}

fn runs(engine: &Engine<Recorder>) -> Vec<Run> {
    let events = engine.history().latest(1000).expect("history");
    events.iter().filter(|e| e.kind == EventKind::PlaybookRun).map(|e| serde_json::from_value(e.body.clone()).expect("a run")).collect()
}

#[test]
fn triggers_match_their_causes_only() {
    let slo = Trigger::Alert { labels: [("slo".to_owned(), "x".to_owned())].into() };
    assert!(alert("a", "firing", &[("slo", "x"), ("severity", "page")]).matches(&slo));
    assert!(!alert("a", "resolved", &[("slo", "x")]).matches(&slo), "only firing alerts");
    assert!(!alert("a", "firing", &[("slo", "y")]).matches(&slo));
    assert!(!alert("a", "firing", &[]).matches(&slo));
    let drift = Cause::Drift { component: "argocd".into(), object: "ConfigMap/argocd/argocd-cm".into(), fields: vec!["data.x".into()] };
    assert!(drift.matches(&Trigger::Drift { component: "*".into() }));
    assert!(drift.matches(&Trigger::Drift { component: "argocd".into() }));
    assert!(!drift.matches(&Trigger::Drift { component: "vault".into() }));
    assert!(!drift.matches(&slo));
    let degraded = Cause::health("vault", Health::Degraded, "Vault is sealed").expect("not healthy");
    assert!(degraded.matches(&Trigger::Health { component: "*".into(), verdict: HealthVerdict::Degraded }));
    assert!(!degraded.matches(&Trigger::Health { component: "*".into(), verdict: HealthVerdict::Unknown }));
    assert_eq!(Cause::health("vault", Health::Healthy, ""), None);
    let page = Cause::Slo { slo: "monitoring/api".into(), severity: SloSeverity::Page };
    assert!(page.matches(&Trigger::Slo { slo: "api".into(), severity: SloSeverity::Any }), "a bare name in any namespace");
    assert!(page.matches(&Trigger::Slo { slo: "monitoring/api".into(), severity: SloSeverity::Page }));
    assert!(!page.matches(&Trigger::Slo { slo: "*".into(), severity: SloSeverity::Ticket }));
    assert!(Cause::VaultSealed.matches(&Trigger::VaultSealed));
    assert!(Cause::NodeStopped { node: "lab-agent-0".into() }.matches(&Trigger::NodeStopped { node: "*".into() }));
    assert!(!Cause::NodeStopped { node: "lab-agent-0".into() }.matches(&Trigger::NodeStopped { node: "lab-agent-1".into() }));
}

#[tokio::test]
async fn a_run_executes_its_actions_in_order_and_is_recorded() {
    let broken = ObjectRef { kind: "Deployment".into(), namespace: Some("apps".into()), name: "broken".into() };
    let fine = ObjectRef { kind: "Deployment".into(), namespace: Some("apps".into()), name: "web".into() };
    let p = playbook(
        "heal",
        vec![Trigger::Drift { component: "*".into() }],
        vec![
            Action::Reapply { object: None },
            Action::RolloutRestart { object: broken },
            Action::RolloutRestart { object: fine },
            Action::Webhook { url: "http://127.0.0.1:1/hook".into(), timeout: 2 },
        ],
        (5, 600),
        0,
    );
    let (_dir, engine) = engine(vec![p]);
    let cause = Cause::Drift { component: "apps".into(), object: "Deployment/apps/web".into(), fields: vec!["spec.replicas".into()] };
    let runs_now = engine.handle(&cause).await;
    assert_eq!(runs_now.len(), 1);
    let run = &runs_now[0];
    assert_eq!(run.status, RunStatus::Failed, "{run:?}");
    assert_eq!(
        run.actions.iter().map(|a| (a.action.as_str(), a.result)).collect::<Vec<_>>(),
        [
            ("reapply", ActionResult::Ok),
            ("rollout-restart", ActionResult::Failed),
            ("rollout-restart", ActionResult::Ok),
            ("webhook", ActionResult::Failed)
        ],
        "a failed action does not stop the others"
    );
    assert!(run.actions[1].detail.contains("refused"), "{:?}", run.actions[1]);
    assert!(run.actions[3].detail.contains("POST http://127.0.0.1:1/hook failed"), "{:?}", run.actions[3]);
    assert_eq!(
        engine.executor().calls(),
        [
            "reapply the object the trigger names (drift)",
            "rollout-restart Deployment/apps/broken (drift)",
            "rollout-restart Deployment/apps/web (drift)"
        ],
        "the webhook is the engine's own"
    );
    assert_eq!(runs(&engine), runs_now, "recorded as returned");
    let event = &engine.history().latest(1).expect("history")[0];
    assert_eq!((event.kind, event.subject.as_str()), (EventKind::PlaybookRun, "playbook heal"));
    assert_eq!(event.body["trigger"]["on"], "drift");
    assert_eq!(event.body["trigger"]["object"], "Deployment/apps/web");
}

#[tokio::test]
async fn dry_runs_record_what_would_be_done_and_do_nothing() {
    let mut p = es_playbook();
    p.dry_run = true;
    p.actions.push(Action::Webhook { url: "http://127.0.0.1:1/never".into(), timeout: 1 });
    let (_dir, engine) = engine(vec![p]);
    let runs_now = engine.handle(&alert("f1", "firing", &[("slo", "externalsecrets-sync-success")])).await;
    assert_eq!(runs_now[0].status, RunStatus::DryRun);
    assert!(runs_now[0].actions.iter().all(|a| a.result == ActionResult::DryRun));
    assert_eq!(runs_now[0].actions[0].detail, "dry run: would refresh ExternalSecret apps/db");
    assert_eq!(runs_now[0].actions[1].detail, "dry run: would POST http://127.0.0.1:1/never");
    assert!(engine.executor().calls().is_empty(), "nothing was done");
    assert_eq!(runs(&engine), runs_now);
}

#[tokio::test]
async fn rate_limits_cooldowns_and_firing_alerts_hold_runs_back() {
    let mut cooled = playbook("cooled", vec![Trigger::VaultSealed], vec![Action::UnsealVault], (10, 3600), 60);
    cooled.dry_run = false;
    let (_dir, engine) = engine(vec![es_playbook(), cooled]);
    let es = |f: &str| alert(f, "firing", &[("slo", "externalsecrets-sync-success")]);
    // Runs once; the same alert still firing is a duplicate (not recorded); another alert
    // within the window is rate-limited (recorded).
    assert_eq!(verdicts(&engine.decide_at(&es("a"), t(0))), [("es-resync", Verdict::Run)]);
    assert_eq!(verdicts(&engine.decide_at(&es("a"), t(10))), [("es-resync", Verdict::Duplicate)]);
    assert_eq!(verdicts(&engine.decide_at(&es("b"), t(20))), [("es-resync", Verdict::RateLimited)]);
    // Resolving clears the fingerprint; firing again within the window is rate-limited.
    assert!(engine.decide_at(&alert("a", "resolved", &[("slo", "externalsecrets-sync-success")]), t(30)).is_empty());
    assert_eq!(verdicts(&engine.decide_at(&es("a"), t(40))), [("es-resync", Verdict::RateLimited)]);
    // After the window (600 s), it runs again.
    assert_eq!(verdicts(&engine.decide_at(&es("b"), t(601))), [("es-resync", Verdict::Run)]);
    // The same labels firing again after a resolve Alertmanager never sent (a new start)
    // are a new alert.
    let Cause::Alert(mut again) = es("b") else { unreachable!() };
    again.starts_at = "2026-01-01T00:00:00Z".into();
    assert_eq!(verdicts(&engine.decide_at(&Cause::Alert(again), t(1300))), [("es-resync", Verdict::Run)]);
    // The cool-down holds a second run back for 60 s although the rate limit allows 10.
    assert_eq!(verdicts(&engine.decide_at(&Cause::VaultSealed, t(0))), [("cooled", Verdict::Run)]);
    assert_eq!(verdicts(&engine.decide_at(&Cause::VaultSealed, t(59))), [("cooled", Verdict::Cooldown)]);
    assert_eq!(verdicts(&engine.decide_at(&Cause::VaultSealed, t(60))), [("cooled", Verdict::Run)]);
    // What matches nothing decides nothing.
    assert!(engine.decide_at(&alert("c", "firing", &[("slo", "other")]), t(0)).is_empty());
    let held: Vec<(String, RunStatus)> = runs(&engine).into_iter().map(|r| (r.playbook, r.status)).collect();
    assert_eq!(
        held,
        [
            ("es-resync".to_owned(), RunStatus::RateLimited),
            ("es-resync".to_owned(), RunStatus::RateLimited),
            ("cooled".to_owned(), RunStatus::Cooldown)
        ],
        "held-back runs are recorded at once, runs once executed"
    );
}

#[tokio::test]
async fn rate_limits_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("watchdog.sled");
    let es = alert("a", "firing", &[("slo", "externalsecrets-sync-success")]);
    {
        let history = Arc::new(History::open(&path, Retention::default()).expect("history"));
        let engine = Engine::new(vec![es_playbook()], history, Recorder::default());
        assert_eq!(engine.handle(&es).await.len(), 1);
    }
    let history = Arc::new(History::open(&path, Retention::default()).expect("reopened"));
    let engine = Engine::new(vec![es_playbook()], history, Recorder::default());
    assert_eq!(verdicts(&engine.decide(&es)), [("es-resync", Verdict::Duplicate)], "the alert already ran it");
    let other = alert("b", "firing", &[("slo", "externalsecrets-sync-success")]);
    assert_eq!(verdicts(&engine.decide(&other)), [("es-resync", Verdict::RateLimited)], "the window's run was read back");
}
