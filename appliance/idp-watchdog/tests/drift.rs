//! The drift engine against the test bed's real control plane: kube-apiserver 1.20.2 with
//! etcd (and, for the big component, kube-controller-manager writing Deployment and
//! ServiceAccount state), changed behind idp-lab's back by the test bed's real kubectl
//! with its own field managers. No mocks.
//!
//! Timing targets (a change reported within 1 s) are printed, never asserted: the bounds
//! asserted are generous, for a loaded machine.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use idp_core::objects::{Object, Place};
use idp_kube::{ApplyCache, ApplyOptions, Cluster, Inventory, Progress};
use idp_test::crds::downlevel_crd_fixtures;
use idp_test::samples::{sample_custom_resources, storage_version};
use idp_test::{ControlPlane, Need, require};
use idp_watchdog::drift::{Component, Drift, DriftEvent, DriftHandle, DriftOptions, DriftState, Evidence, IgnoreRule, Policy};
use kube::Api;
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::discovery::ApiResource;
use serde_json::{Value, json};
use tokio::sync::broadcast;

/// The generous bound on anything the engine should do within about a second.
const SOON: Duration = Duration::from_secs(10);

fn quiet(_: Progress) {}

fn object(value: Value, source: &str, document: usize) -> Object {
    Object { value, place: Place { source: source.into(), document, item: None }, wave: None }
}

fn options(component: &str, namespace: &str) -> ApplyOptions {
    let mut options = ApplyOptions::new("drift-test", component);
    options.namespace = namespace.into();
    options.timeout = Duration::from_secs(180);
    options.concurrency = 8;
    options.inventory = Some(Inventory { name: component.into(), namespace: namespace.into() });
    options
}

/// Runs the test bed's kubectl against `cp`; its stdout.
fn kubectl(cp: &ControlPlane, args: &[&str]) -> String {
    let out = cp.kubectl().args(args).output().expect("kubectl runs");
    assert!(out.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn kubectl_json(cp: &ControlPlane, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.extend(["-o", "json"]);
    serde_json::from_str(&kubectl(cp, &args)).expect("kubectl prints JSON")
}

/// The generated part of the big component: a Namespace and 148 objects of seven kinds.
fn generated(namespace: &str) -> Vec<Value> {
    let mut out = vec![json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})];
    for i in 0..40 {
        out.push(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("cm-{i:02}"), "namespace": namespace},
            "data": {"mode": "fast", "index": i.to_string(), "ignored": "as applied"}}));
    }
    for i in 0..25 {
        out.push(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": format!("svc-{i:02}"), "namespace": namespace},
            "spec": {"selector": {"app": format!("web-{i:02}")}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}));
        out.push(json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": format!("sa-{i:02}"), "namespace": namespace}}));
    }
    for i in 0..20 {
        out.push(json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": format!("web-{i:02}"), "namespace": namespace, "labels": {"tier": "front"}},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": format!("web-{i:02}")}},
                "template": {"metadata": {"labels": {"app": format!("web-{i:02}")}},
                    "spec": {"serviceAccountName": format!("sa-{i:02}"), "containers": [{"name": "web", "image": "nginx:1.25",
                        "args": ["-g", "daemon off;"], "ports": [{"containerPort": 8080}],
                        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]}}}}));
    }
    for i in 0..15 {
        out.push(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": format!("reader-{i:02}"), "namespace": namespace},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]}]}));
        out.push(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": format!("reader-{i:02}"), "namespace": namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": format!("reader-{i:02}")},
            "subjects": [{"kind": "ServiceAccount", "name": format!("sa-{i:02}"), "namespace": namespace}]}));
    }
    for i in 0..5 {
        out.push(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": format!("secret-{i}"), "namespace": namespace},
            "type": "Opaque", "stringData": {"password": format!("s3cret-{i}")}}));
    }
    for i in 0..3 {
        out.push(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": format!("{namespace}-viewer-{i}")},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}));
    }
    out
}

/// Waits for the first event `pick` accepts, for at most `timeout`; the events passed over
/// go to `seen`.
async fn wait_for(
    events: &mut broadcast::Receiver<DriftEvent>,
    timeout: Duration,
    seen: &mut Vec<DriftEvent>,
    what: &str,
    pick: impl Fn(&DriftEvent) -> bool,
) -> DriftEvent {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Ok(event)) if pick(&event) => return event,
            Ok(Ok(event)) => seen.push(event),
            Ok(Err(broadcast::error::RecvError::Lagged(n))) => panic!("the test fell {n} events behind"),
            Ok(Err(broadcast::error::RecvError::Closed)) => panic!("the engine stopped while waiting for {what}"),
            Err(_) => panic!("no {what} within {timeout:?}; other events: {seen:#?}"),
        }
    }
}

/// The events waiting now.
fn drain(events: &mut broadcast::Receiver<DriftEvent>) -> Vec<DriftEvent> {
    let mut out = Vec::new();
    while let Ok(event) = events.try_recv() {
        out.push(event);
    }
    out
}

/// The events about object drift (not resyncs) among `events`.
fn about_drift(events: &[DriftEvent]) -> Vec<&DriftEvent> {
    events.iter().filter(|e| !matches!(e, DriftEvent::Resynced(_))).collect()
}

fn is(event: &DriftEvent, kind: &str, object: &str) -> bool {
    let matches_kind = matches!(
        (kind, event),
        ("detected", DriftEvent::Detected(_))
            | ("healed", DriftEvent::Healed(_))
            | ("contested", DriftEvent::Contested(_))
            | ("resolved", DriftEvent::Resolved(_))
    );
    matches_kind && event.object() == Some(object)
}

/// A status for a custom resource of `crd`, from the status schema of its storage version:
/// a `Ready` condition with the fields the condition schema has, and `observedGeneration`
/// where there is one; `None` when the CRD has no status subresource or no such fields.
fn status_for(crd: &Value) -> Option<Value> {
    let version = storage_version(crd)?;
    version.pointer("/subresources/status")?;
    let schema = version.pointer("/schema/openAPIV3Schema/properties/status/properties")?;
    let mut status = serde_json::Map::new();
    if let Some(props) = schema.pointer("/conditions/items/properties").and_then(Value::as_object) {
        let mut condition = serde_json::Map::new();
        for (key, value) in [
            ("type", json!("Ready")),
            ("status", json!("True")),
            ("reason", json!("DriftTest")),
            ("message", json!("written by the drift test through the status subresource")),
            ("lastTransitionTime", json!("2026-01-01T00:00:00Z")),
            ("observedGeneration", json!(1)),
        ] {
            if props.contains_key(key) {
                condition.insert(key.into(), value);
            }
        }
        status.insert("conditions".into(), json!([condition]));
    }
    if schema.get("observedGeneration").is_some() {
        status.insert("observedGeneration".into(), json!(1));
    }
    (!status.is_empty()).then(|| json!({ "status": status }))
}

/// Writes a status to every sample custom resource whose CRD allows one; how many kept it.
async fn write_statuses(cp: &ControlPlane, crds: &[Value], samples: &[Value]) -> usize {
    let client = cp.client();
    let mut kept = 0;
    let text = |v: &Value, pointer: &str| v.pointer(pointer).and_then(Value::as_str).unwrap_or_default().to_owned();
    let by_kind: std::collections::HashMap<(String, String), &Value> =
        crds.iter().map(|crd| ((text(crd, "/spec/group"), text(crd, "/spec/names/kind")), crd)).collect();
    for sample in samples {
        let group = text(sample, "/apiVersion").rsplit_once('/').map(|(g, _)| g.to_owned()).unwrap_or_default();
        let Some(crd) = by_kind.get(&(group, text(sample, "/kind"))) else { continue };
        let Some(status) = status_for(crd) else { continue };
        let group = crd.pointer("/spec/group").and_then(Value::as_str).unwrap_or_default();
        let api_version = sample["apiVersion"].as_str().unwrap_or_default();
        let resource = ApiResource {
            group: group.into(),
            version: api_version.rsplit('/').next().unwrap_or_default().into(),
            api_version: api_version.into(),
            kind: sample["kind"].as_str().unwrap_or_default().into(),
            plural: crd.pointer("/spec/names/plural").and_then(Value::as_str).unwrap_or_default().into(),
        };
        let name = sample.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
        let api: Api<DynamicObject> = match sample.pointer("/metadata/namespace").and_then(Value::as_str) {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
            None => Api::all_with(client.clone(), &resource),
        };
        let params = PatchParams { field_manager: Some("status-writer".into()), ..PatchParams::default() };
        match api.patch_status(name, &params, &Patch::Merge(&status)).await {
            Ok(written) if written.data.get("status").is_some_and(|s| s.as_object().is_some_and(|m| !m.is_empty())) => kept += 1,
            Ok(_) => {}
            Err(e) => eprintln!("status of {} {name} not written: {e}", resource.kind),
        }
    }
    kept
}

/// Polls `check` every 50 ms for at most `timeout`.
async fn eventually(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "{what} did not happen within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until nothing is in flight and a cached resync has seen the cluster as it is now,
/// so that every change made before is compared (by its watch event or by the resync).
async fn settle(handle: &DriftHandle) {
    eventually("the engine to be idle", SOON, || handle.stats().in_flight == 0).await;
    handle.resync(false).await.expect("a resync");
    eventually("the engine to be idle after the resync", SOON, || handle.stats().in_flight == 0).await;
}

/// A component of 200+ objects (ConfigMaps, Services, ServiceAccounts, Deployments, Roles,
/// RoleBindings, Secrets, ClusterRoles, the downlevelled CRD fixtures and one custom
/// resource of each) applied through `Cluster::apply` and watched with policy `heal`,
/// beside a small component with policy `report`:
///
/// * 0 false drifts right after the apply and after status writes (the controller
///   manager's and the test's, through the status subresource) and labels and annotations
///   other managers add, each proven by a full resync that passes over the cache;
/// * a `kubectl patch` of a value idp-lab set is reported naming its field manager, and
///   healed; a deleted object is reported missing and made again;
/// * policy `report` reports and never heals; ignore rules by path and by manager
///   suppress drift.
#[tokio::test]
async fn a_component_of_200_objects_drifts_only_when_someone_changes_what_idp_lab_set() {
    let _testbed = require!(Need::KubeBinaries, Need::SharedFixtures, Need::PythonYaml);
    let (cp, crds) = tokio::join!(ControlPlane::start(), downlevel_crd_fixtures());
    let cp = cp.expect("control plane");
    let crds = crds.expect("downlevelled CRDs");
    let ns = "drift-big";
    let samples = sample_custom_resources(&crds, ns).expect("one sample per CRD");
    let mut values = generated(ns);
    values.extend(crds.iter().cloned());
    values.extend(samples.iter().cloned());
    let platform_objects: Vec<Object> = values.into_iter().enumerate().map(|(i, v)| object(v, "platform.yaml", i + 1)).collect();
    let total = platform_objects.len();
    assert!(total >= 200, "the component has {total} objects");
    let reports_objects: Vec<Object> = [
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "drift-reports"}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "watched", "namespace": "drift-reports"}, "data": {"mode": "fast"}}),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, v)| object(v, "reports.yaml", i + 1))
    .collect();

    let cluster = Cluster::from_kubeconfig(cp.kubeconfig(), None).await.expect("a client");
    let mut cache = ApplyCache::default();
    let platform_options = options("platform", ns);
    let reports_options = options("reports", "drift-reports");
    let started = Instant::now();
    cluster.apply(platform_objects.clone(), &platform_options, &mut cache, &quiet).await.expect("the platform applies");
    cluster.apply(reports_objects.clone(), &reports_options, &mut cache, &quiet).await.expect("the reports apply");
    eprintln!("applied {} objects in {:?}", total + reports_objects.len(), started.elapsed());

    let mut platform = Component::new("platform", platform_objects, platform_options);
    platform.ignore = vec![
        IgnoreRule { kind: Some("ConfigMap".into()), path: Some("data.ignored".into()), ..IgnoreRule::default() },
        IgnoreRule { manager: Some("tolerated".into()), ..IgnoreRule::default() },
    ];
    let mut reports = Component::new("reports", reports_objects, reports_options);
    reports.policy = Policy::Report;
    let started = Instant::now();
    let handle =
        Drift::start(cluster, vec![platform, reports], DriftOptions { cache, ..DriftOptions::default() }).await.expect("the engine starts");
    let mut events = handle.subscribe();
    handle.ready(Duration::from_secs(120)).await.expect("every watch lists its objects");
    let stats = handle.stats();
    eprintln!(
        "engine ready in {:?}: {} objects, {} watches, {} dry-runs at start, {} known in sync from the cache",
        started.elapsed(),
        stats.objects,
        stats.watches,
        stats.dry_runs,
        stats.cache_hits
    );
    assert_eq!(stats.objects, total + 2);
    assert!(handle.snapshot().is_empty(), "no drift right after the apply: {:#?}", handle.snapshot());

    // 0 false drifts right after the apply: every object dry-run, none drifted.
    let resync = handle.resync(true).await.expect("an uncached resync");
    eprintln!("uncached resync: {} objects compared in {} ms", resync.compared, resync.took_ms);
    assert_eq!((resync.compared, resync.cached, resync.drifted), (total + 2, 0, 0), "{resync:?}");
    assert!(resync.errors.is_empty(), "{:?}", resync.errors);

    // Status through the status subresource, and labels and annotations of other managers.
    let before = handle.stats().dry_runs;
    let statuses = write_statuses(&cp, &crds, &samples).await;
    eprintln!("status written to {statuses} custom resources");
    assert!(statuses >= 10, "only {statuses} custom resources took a status");
    kubectl(&cp, &["label", "-n", ns, "configmap/cm-01", "team=payments"]);
    kubectl(&cp, &["annotate", "-n", ns, "service/svc-02", "example.com/owner=someone-else"]);
    kubectl(&cp, &["label", "-n", ns, "deployment/web-03", "extra=1"]);
    kubectl(&cp, &["annotate", "customresourcedefinitions", "certificates.cert-manager.io", "example.com/seen=yes"]);
    // Each write is a watch event, and each is compared by a dry-run (its version moved,
    // so the cache cannot vouch for it); then the cache knows the new versions in sync.
    let writes = u64::try_from(statuses + 4).unwrap_or(u64::MAX);
    eventually("a dry-run per write", SOON, || handle.stats().dry_runs >= before + writes && handle.stats().in_flight == 0).await;
    eprintln!("{} dry-runs for {writes} status and label writes, 0 drifts", handle.stats().dry_runs - before);
    let cached = handle.resync(false).await.expect("a cached resync");
    eprintln!("cached resync after them: {} of {} in sync from the cache", cached.cached, cached.compared);
    assert_eq!(cached.drifted, 0, "{cached:?}");
    let resync = handle.resync(true).await.expect("an uncached resync");
    assert_eq!((resync.compared, resync.drifted), (total + 2, 0), "{resync:?}");
    let noise = drain(&mut events);
    assert!(about_drift(&noise).is_empty(), "status and foreign labels are not drift: {:#?}", about_drift(&noise));
    assert_eq!(handle.stats().detected, 0);
    let cm = kubectl_json(&cp, &["get", "-n", ns, "configmap/cm-01"]);
    assert_eq!(cm["metadata"]["labels"]["team"], "payments", "the foreign label stays");

    // A kubectl patch of a value idp-lab set: reported naming the manager, and healed.
    let object = format!("ConfigMap {ns}/cm-05");
    let mut seen = Vec::new();
    let t0 = Instant::now();
    kubectl(&cp, &["patch", "-n", ns, "configmap/cm-05", "--field-manager=intruder", "--type=merge", "-p", r#"{"data":{"mode":"slow"}}"#]);
    let t1 = Instant::now();
    let detected = wait_for(&mut events, SOON, &mut seen, "the patch's drift", |e| is(e, "detected", &object)).await;
    let latency = (t1.elapsed(), t0.elapsed());
    eprintln!(
        "detection latency: {:.0} ms after kubectl returned ({:.0} ms including kubectl)",
        latency.0.as_secs_f64() * 1000.0,
        latency.1.as_secs_f64() * 1000.0
    );
    // The watch lag is measured from the write the API server recorded (whole seconds).
    let stats = handle.stats();
    let lag = stats.watch_lag_ms.expect("a change event has a lag");
    assert!(lag < 2000 + u64::try_from(t0.elapsed().as_millis()).unwrap_or(0), "lag {lag} ms: {stats:?}");
    assert!(stats.watch_lag_max_ms >= lag);
    let drift = detected.drift().expect("a drift");
    assert_eq!(drift.manager.as_deref(), Some("intruder"));
    assert_eq!(drift.fields.len(), 1, "{:#?}", drift.fields);
    let field = &drift.fields[0];
    assert_eq!((field.path.as_str(), field.live.clone(), field.desired.clone()), ("data.mode", Some(json!("slow")), Some(json!("fast"))));
    assert_eq!(field.evidence, Some(Evidence::Owner));
    assert_eq!((drift.state, drift.policy), (DriftState::Healing, Policy::Heal));
    let healed = wait_for(&mut events, SOON, &mut seen, "the heal", |e| is(e, "healed", &object)).await;
    assert_eq!(healed.drift().map(|d| (d.state, d.heals)), Some((DriftState::Healed, 1)));
    eprintln!("healed {:.0} ms after kubectl returned", t1.elapsed().as_secs_f64() * 1000.0);
    assert_eq!(kubectl_json(&cp, &["get", "-n", ns, "configmap/cm-05"])["data"]["mode"], "fast", "the live value is back");
    assert!(handle.snapshot().is_empty(), "{:#?}", handle.snapshot());

    // A deleted object is drift as a whole, and is made again.
    let object = format!("ServiceAccount {ns}/sa-06");
    kubectl(&cp, &["delete", "-n", ns, "serviceaccount/sa-06"]);
    let detected = wait_for(&mut events, SOON, &mut seen, "the deletion's drift", |e| is(e, "detected", &object)).await;
    assert_eq!(detected.drift().map(|d| (d.exists, d.fields.len(), d.fields[0].path.is_empty())), Some((false, 1, true)));
    wait_for(&mut events, SOON, &mut seen, "the re-creation", |e| is(e, "healed", &object)).await;
    let sa = kubectl_json(&cp, &["get", "-n", ns, "serviceaccount/sa-06"]);
    assert_eq!(sa["metadata"]["labels"]["idp-lab.dev/component"], "platform");

    // A Secret's drift names the field and the manager, never the values (either side).
    let object = format!("Secret {ns}/secret-1");
    kubectl(
        &cp,
        &["patch", "-n", ns, "secret/secret-1", "--field-manager=intruder", "--type=merge", "-p", r#"{"data":{"password":"bGVha2Vk"}}"#],
    );
    let detected = wait_for(&mut events, SOON, &mut seen, "the Secret's drift", |e| is(e, "detected", &object)).await;
    let text = serde_json::to_string(&detected).expect("json");
    assert!(!text.contains("bGVha2Vk") && !text.contains("czNjcmV0LTE") && !text.contains("s3cret-1"), "a value shows: {text}");
    let drift = detected.drift().expect("a drift");
    assert!(drift.fields.iter().any(|f| f.path.starts_with("data") && f.live == Some(json!("(hidden)"))), "{text}");
    assert_eq!(drift.manager.as_deref(), Some("intruder"));
    wait_for(&mut events, SOON, &mut seen, "the Secret's heal", |e| is(e, "healed", &object)).await;
    assert_eq!(kubectl_json(&cp, &["get", "-n", ns, "secret/secret-1"])["data"]["password"], "czNjcmV0LTE=", "healed to the applied value");
    assert!(!serde_json::to_string(&handle.snapshot()).expect("json").contains("bGVha2Vk"));

    // Policy report: reported, never healed.
    let object = "ConfigMap drift-reports/watched".to_owned();
    kubectl(
        &cp,
        &[
            "patch",
            "-n",
            "drift-reports",
            "configmap/watched",
            "--field-manager=operator",
            "--type=merge",
            "-p",
            r#"{"data":{"mode":"manual"}}"#,
        ],
    );
    let detected = wait_for(&mut events, SOON, &mut seen, "the report", |e| is(e, "detected", &object)).await;
    let drift = detected.drift().expect("a drift");
    assert_eq!(
        (drift.state, drift.policy, drift.manager.as_deref(), drift.heals),
        (DriftState::Reported, Policy::Report, Some("operator"), 0)
    );
    let heals = handle.stats().heals;
    tokio::time::sleep(Duration::from_secs(3)).await;
    settle(&handle).await;
    assert_eq!(kubectl_json(&cp, &["get", "-n", "drift-reports", "configmap/watched"])["data"]["mode"], "manual", "not healed");
    assert_eq!(handle.stats().heals, heals);
    let snapshot = handle.snapshot();
    assert_eq!(snapshot.iter().map(|d| (d.object.as_str(), d.state)).collect::<Vec<_>>(), [(object.as_str(), DriftState::Reported)]);
    assert!(!drain(&mut events).iter().any(|e| matches!(e, DriftEvent::Healed(_))));

    // Ignore rules: a field by path, a manager.
    let before = handle.stats();
    kubectl(
        &cp,
        &["patch", "-n", ns, "configmap/cm-07", "--field-manager=intruder", "--type=merge", "-p", r#"{"data":{"ignored":"changed"}}"#],
    );
    kubectl(
        &cp,
        &["patch", "-n", ns, "configmap/cm-08", "--field-manager=tolerated", "--type=merge", "-p", r#"{"data":{"mode":"tolerated"}}"#],
    );
    settle(&handle).await;
    let after = handle.stats();
    assert!(after.dry_runs >= before.dry_runs + 2, "both changes were compared: {before:?} -> {after:?}");
    let ignored = drain(&mut events);
    assert!(about_drift(&ignored).is_empty(), "ignored drift is not reported: {:#?}", about_drift(&ignored));
    assert_eq!(after.detected, before.detected);
    assert_eq!(kubectl_json(&cp, &["get", "-n", ns, "configmap/cm-08"])["data"]["mode"], "tolerated", "nor healed");

    let stats = handle.stats();
    eprintln!("final counters: {}", serde_json::to_string(&stats).expect("JSON"));
    let cache = handle.stop().await.expect("stops");
    assert!(cache.len() >= total, "the cache comes back: {} entries", cache.len());
    assert!(handle.stop().await.is_err(), "stopped once");
}

/// A second manager that keeps setting a field back is reported `contested`, naming it,
/// after three heals; healing stops (the heal count no longer grows while it goes on);
/// a change of the desired object ends it.
#[tokio::test]
async fn a_field_another_manager_keeps_setting_back_is_contested_and_left_alone() {
    let _testbed = require!(Need::KubeBinaries);
    let cp = ControlPlane::start_without_controller_manager().await.expect("control plane");
    let ns = "drift-fight";
    let manifest = |mode: &str| -> Vec<Object> {
        let mut values = vec![json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})];
        for i in 0..3 {
            values.push(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("fight-{i}"), "namespace": ns},
                "data": {"mode": if i == 0 { mode } else { "calm" }}}));
        }
        values.into_iter().enumerate().map(|(i, v)| object(v, "fight.yaml", i + 1)).collect()
    };
    let cluster = Cluster::from_kubeconfig(cp.kubeconfig(), None).await.expect("a client");
    let opts = options("fight", ns);
    let mut cache = ApplyCache::default();
    cluster.apply(manifest("calm"), &opts, &mut cache, &quiet).await.expect("applies");
    let drift_options = DriftOptions { cache, heal_backoff: Duration::from_millis(500), ..DriftOptions::default() };
    let handle = Drift::start(cluster, vec![Component::new("fight", manifest("calm"), opts.clone())], drift_options)
        .await
        .expect("the engine starts");
    let mut events = handle.subscribe();
    handle.ready(Duration::from_secs(60)).await.expect("ready");
    assert_eq!(handle.stats().dry_runs, 0, "a start right after the apply sends nothing");

    // The fighter sets data.mode back every 200 ms, with its own field manager.
    let stop = Arc::new(AtomicBool::new(false));
    let rounds = Arc::new(AtomicUsize::new(0));
    let fighter = {
        let (stop, rounds) = (stop.clone(), rounds.clone());
        let mut command = cp.kubectl();
        command.args([
            "patch",
            "-n",
            ns,
            "configmap/fight-0",
            "--field-manager=fighter",
            "--type=merge",
            "-p",
            r#"{"data":{"mode":"angry"}}"#,
        ]);
        let program = command.get_program().to_owned();
        let args: Vec<_> = command.get_args().map(ToOwned::to_owned).collect();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let _ = Command::new(&program).env_remove("KUBECONFIG").args(&args).output();
                rounds.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    let object = format!("ConfigMap {ns}/fight-0");
    let mut seen = Vec::new();
    let contested = wait_for(&mut events, Duration::from_secs(60), &mut seen, "contested", |e| is(e, "contested", &object)).await;
    let drift = contested.drift().expect("a drift");
    eprintln!("contested after {} fighter rounds: {}", rounds.load(Ordering::Relaxed), serde_json::to_string(&contested).expect("JSON"));
    assert_eq!(drift.state, DriftState::Contested);
    assert_eq!(drift.contested.len(), 1);
    assert_eq!(
        (drift.contested[0].path.as_str(), drift.contested[0].manager.as_str(), drift.contested[0].reverts),
        ("data.mode", "fighter", 3)
    );
    assert_eq!(drift.manager.as_deref(), Some("fighter"));
    assert_eq!(drift.heals, 3, "three heals, each set back");
    let healed = seen.iter().filter(|e| is(e, "healed", &object)).count();
    assert_eq!(healed, 3, "{seen:#?}");

    // Healing stops while the fighter goes on.
    let heals = handle.stats().heals;
    let rounds_then = rounds.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(rounds.load(Ordering::Relaxed) > rounds_then + 5, "the fighter kept going");
    assert_eq!(handle.stats().heals, heals, "no more heals");
    let snapshot = handle.snapshot();
    assert_eq!(
        snapshot.iter().map(|d| (d.object.as_str(), d.state, d.heals)).collect::<Vec<_>>(),
        [(object.as_str(), DriftState::Contested, 3)]
    );
    assert_eq!(kubectl_json(&cp, &["get", "-n", ns, "configmap/fight-0"])["data"]["mode"], "angry", "left to the fighter");
    stop.store(true, Ordering::Relaxed);
    fighter.join().expect("the fighter ends");

    // A new desired object starts afresh: it is healed to the new value.
    handle.update(Component::new("fight", manifest("agreed"), opts)).await.expect("the update");
    wait_for(&mut events, SOON, &mut seen, "the heal to the new desired object", |e| is(e, "healed", &object)).await;
    assert_eq!(kubectl_json(&cp, &["get", "-n", ns, "configmap/fight-0"])["data"]["mode"], "agreed");
    eventually("the snapshot to clear", SOON, || handle.snapshot().is_empty()).await;
    let resync = handle.resync(true).await.expect("a resync");
    assert_eq!((resync.compared, resync.drifted), (4, 0), "{resync:?}");
    handle.stop().await.expect("stops");
}
