//! The apply engine against the test bed's real control plane (kube-apiserver 1.20.2
//! with etcd; no kubelet, so tests write `status` themselves): ordering through the CRD
//! race, no-op re-applies from the cache, drift and its repair, prune by the in-cluster
//! inventory, readiness, and every profile's render.

use std::time::{Duration, Instant};

use idp_core::objects::{self, Object};
use idp_core::render::Item;
use idp_kube::{Action, ApplyCache, ApplyOptions, ApplyReport, Cluster, Inventory, KubeError, Progress};
use idp_test::crds::{control_plane_with_crd_fixtures, downlevel_crd_fixtures};
use idp_test::{ControlPlane, Need, require};
use serde_json::{Value, json};

fn load(yaml: &str) -> Vec<Object> {
    objects::load(yaml, "test.yaml").expect("the test's YAML loads")
}

async fn connect(cp: &ControlPlane) -> Cluster {
    Cluster::from_kubeconfig(cp.kubeconfig(), None).await.expect("a client for the control plane")
}

fn quiet(_: Progress) {}

fn options(namespace: &str, set: Option<&str>) -> ApplyOptions {
    let mut options = ApplyOptions::new("test", set.unwrap_or("apply"));
    options.namespace = namespace.into();
    options.timeout = Duration::from_secs(120);
    options.inventory = set.map(|name| Inventory { name: name.into(), namespace: namespace.into() });
    options
}

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

fn actions(report: &ApplyReport) -> Vec<(String, Action)> {
    report.objects.iter().map(|o| (o.object.clone(), o.action)).collect()
}

const APP: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop, labels: {tier: front}}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: nginx:1.25
        ports: [{containerPort: 80}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: shop}
data: {mode: fast, level: "3"}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  selector: {app: web}
  ports: [{port: 80}]
"#;

/// The CRD fixtures and one custom resource of each, in one call and in the worst
/// order (every custom resource before every CRD): no "no matches for kind", a second
/// apply changes nothing and sends nothing, and `diff` finds no drift.
#[tokio::test]
async fn crds_and_their_resources_apply_in_one_call() {
    let _testbed = require!(Need::KubeBinaries, Need::SharedFixtures, Need::PythonYaml);
    let (cp, crds) = tokio::join!(ControlPlane::start_without_controller_manager(), downlevel_crd_fixtures());
    let cp = cp.expect("control plane");
    let crds = crds.expect("downlevelled CRDs");
    let samples = idp_test::samples::sample_custom_resources(&crds, "samples").expect("one sample per CRD");
    assert_eq!(samples.len(), crds.len());
    let mut input: Vec<Object> = Vec::new();
    let mut push = |value: Value, source: &str| {
        let document = input.len() + 1;
        input.push(Object { value, place: objects::Place { source: source.into(), document, item: None }, wave: None });
    };
    for sample in samples {
        push(sample, "samples.yaml");
    }
    push(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "samples"}}), "samples.yaml");
    for crd in crds.iter().cloned() {
        push(crd, "crds.yaml");
    }
    let cluster = connect(&cp).await;
    let mut cache = ApplyCache::default();
    let opts = options("samples", Some("fixtures"));
    let started = Instant::now();
    let first = cluster.apply(input.clone(), &opts, &mut cache, &quiet).await.expect("the first apply");
    let took = started.elapsed();
    assert!(first.objects.iter().all(|o| o.action == Action::Created), "{:?}", actions(&first));
    assert_eq!(first.objects.len(), 2 * crds.len() + 1);
    // Apply order: every CRD and the Namespace (stage 0) before any custom resource.
    let last_crd = first.objects.iter().rposition(|o| o.kind == "CustomResourceDefinition").expect("CRDs applied");
    let first_cr = first.objects.iter().position(|o| o.stage == 2).expect("custom resources applied");
    assert!(last_crd < first_cr, "CRDs come first");
    eprintln!("first apply of {} objects: {took:?}", first.objects.len());

    let second = cluster.apply(input.clone(), &opts, &mut cache, &quiet).await.expect("the second apply");
    assert_eq!(second.changed(), 0, "a second apply changes nothing: {:?}", actions(&second));
    let sent: Vec<&str> = second.objects.iter().filter(|o| !o.cached).map(|o| o.object.as_str()).collect();
    assert!(sent.is_empty(), "a second apply sends nothing: it sent {sent:?}");

    let diff = cluster.diff(input, &opts, &mut cache).await.expect("diff");
    assert!(diff.drifted.is_empty(), "no drift right after apply: {:#?}", diff.drifted);
    assert_eq!(diff.compared, 2 * crds.len() + 1);
}

/// A live change of what idp-lab set is drift with exactly that field, and re-apply
/// restores it: `kubectl scale`, one of idp-lab's label values, a ConfigMap value. A
/// label someone else adds is theirs and stays.
#[tokio::test]
async fn live_changes_are_drift_and_a_reapply_restores_them() {
    let _testbed = require!(Need::KubeBinaries);
    let cp = ControlPlane::start_without_controller_manager().await.expect("control plane");
    let cluster = connect(&cp).await;
    let mut cache = ApplyCache::default();
    let opts = options("shop", Some("shop"));
    let first = cluster.apply(load(APP), &opts, &mut cache, &quiet).await.expect("apply");
    assert_eq!(first.changed(), 4);
    assert!(cluster.diff(load(APP), &opts, &mut cache).await.expect("diff").drifted.is_empty());

    kubectl(&cp, &["scale", "-n", "shop", "deployment/web", "--replicas=5"]);
    kubectl(&cp, &["label", "-n", "shop", "--overwrite", "configmap/settings", "idp-lab.dev/component=someone-else"]);
    kubectl(&cp, &["patch", "-n", "shop", "configmap/settings", "--type=merge", "-p", r#"{"data":{"mode":"slow"}}"#]);
    kubectl(&cp, &["label", "-n", "shop", "service/web", "team=payments"]);

    let diff = cluster.diff(load(APP), &opts, &mut ApplyCache::default()).await.expect("diff");
    let found: Vec<(String, Vec<String>)> =
        diff.drifted.iter().map(|d| (d.object.clone(), d.fields.iter().map(|f| f.path.clone()).collect())).collect();
    assert_eq!(
        found,
        vec![
            ("ConfigMap shop/settings".to_owned(), vec!["metadata.labels[\"idp-lab.dev/component\"]".to_owned(), "data.mode".to_owned()]),
            ("Deployment.apps shop/web".to_owned(), vec!["spec.replicas".to_owned()]),
        ],
        "exactly the three changed fields, and not the foreign label"
    );
    let replicas = &diff.drifted[1].fields[0];
    assert_eq!((replicas.live.clone(), replicas.desired.clone()), (Some(json!(5)), Some(json!(2))));
    assert!(diff.drifted[1].unified.contains("-  replicas: 5\n+  replicas: 2\n"), "{}", diff.drifted[1].unified);

    // The same with the cache of the first apply: the changed objects are not taken
    // for unchanged (their resourceVersion moved).
    let cached = cluster.diff(load(APP), &opts, &mut cache).await.expect("diff with the cache");
    assert_eq!(cached.drifted.len(), 2);

    let again = cluster.apply(load(APP), &opts, &mut cache, &quiet).await.expect("re-apply");
    let changed: Vec<(String, Action)> = actions(&again).into_iter().filter(|(_, a)| *a != Action::Unchanged).collect();
    assert_eq!(
        changed,
        vec![("ConfigMap shop/settings".to_owned(), Action::Configured), ("Deployment.apps shop/web".to_owned(), Action::Configured)]
    );
    assert!(cluster.diff(load(APP), &opts, &mut cache).await.expect("diff").drifted.is_empty(), "re-apply restored all");
    let deployment = kubectl_json(&cp, &["get", "-n", "shop", "deployment/web"]);
    assert_eq!(deployment["spec"]["replicas"], 2);
    let configmap = kubectl_json(&cp, &["get", "-n", "shop", "configmap/settings"]);
    assert_eq!(configmap["data"]["mode"], "fast");
    assert_eq!(configmap["metadata"]["labels"]["idp-lab.dev/component"], "shop");
    let service = kubectl_json(&cp, &["get", "-n", "shop", "service/web"]);
    assert_eq!(service["metadata"]["labels"]["team"], "payments", "a foreign label is left alone");
}

/// Prune deletes what left the input, only in its own set, never an object without the
/// set's label or annotated `idp-lab.dev/prune: disabled`, and needs no local state.
#[tokio::test]
async fn prune_deletes_what_left_the_set_and_nothing_else() {
    let _testbed = require!(Need::KubeBinaries);
    let cp = ControlPlane::start_without_controller_manager().await.expect("control plane");
    let cluster = connect(&cp).await;
    kubectl(&cp, &["create", "namespace", "p"]);
    let cm = |name: &str, extra: &str| format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n{extra}data: {{k: v}}\n---\n");
    kubectl(&cp, &["create", "namespace", "q"]);
    let set_a = format!(
        "{}{}{}{}{}",
        cm("a1", ""),
        cm("a4", "  namespace: q\n"),
        cm("a2", ""),
        cm("a3", "  annotations: {idp-lab.dev/prune: disabled}\n"),
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: p-a-reader}\nrules: []\n"
    );
    let set_b = cm("b1", "");
    let a = options("p", Some("set-a"));
    let b = options("p", Some("set-b"));
    cluster.apply(load(&set_a), &a, &mut ApplyCache::default(), &quiet).await.expect("apply set A");
    cluster.apply(load(&set_b), &b, &mut ApplyCache::default(), &quiet).await.expect("apply set B");
    kubectl(&cp, &["create", "configmap", "-n", "p", "foreign", "--from-literal=k=v"]);
    // kubectl's ApplySet convention: the parent lists the members' kinds.
    let parent = kubectl_json(&cp, &["get", "secret", "-n", "p", "set-a"]);
    assert_eq!(
        parent["metadata"]["annotations"]["applyset.kubernetes.io/contains-group-kinds"],
        "ClusterRole.rbac.authorization.k8s.io,ConfigMap"
    );
    assert_eq!(parent["metadata"]["labels"]["applyset.kubernetes.io/id"], Inventory { name: "set-a".into(), namespace: "p".into() }.id());
    assert_eq!(parent["metadata"]["annotations"]["applyset.kubernetes.io/additional-namespaces"], "q", "the members' other namespaces");
    assert_eq!(parent["metadata"]["annotations"]["applyset.kubernetes.io/tooling"], format!("idp-lab/{}", env!("CARGO_PKG_VERSION")));

    // Set A without a2, a3 and the ClusterRole; a fresh cache is a lost state store.
    let mut pruning = a.clone();
    pruning.prune = true;
    let report = cluster.apply(load(&cm("a1", "")), &pruning, &mut ApplyCache::default(), &quiet).await.expect("apply with prune");
    assert_eq!(
        report.pruned,
        vec!["ConfigMap q/a4".to_owned(), "ConfigMap p/a2".to_owned(), "ClusterRole.rbac.authorization.k8s.io p-a-reader".to_owned()],
        "reverse apply order: stage, kind, namespace and name all reversed"
    );
    assert_eq!(report.kept, vec!["ConfigMap p/a3".to_owned()]);
    let left = kubectl(&cp, &["get", "configmaps", "-n", "p", "-o", "name"]);
    let mut left: Vec<&str> = left.lines().collect();
    left.sort_unstable();
    assert_eq!(left, ["configmap/a1", "configmap/a3", "configmap/b1", "configmap/foreign"]);
    let parent = kubectl_json(&cp, &["get", "secret", "-n", "p", "set-a"]);
    assert_eq!(parent["metadata"]["annotations"]["applyset.kubernetes.io/contains-group-kinds"], "ConfigMap", "narrowed after prune");
    assert_eq!(parent["metadata"]["annotations"]["applyset.kubernetes.io/additional-namespaces"], "", "narrowed after prune");

    // Set B pruned with an empty input of its own prunes only b1.
    let mut pruning_b = b.clone();
    pruning_b.prune = true;
    let report = cluster.apply(load(&cm("b2", "")), &pruning_b, &mut ApplyCache::default(), &quiet).await.expect("set B");
    assert_eq!(report.pruned, vec!["ConfigMap p/b1".to_owned()]);

    // A Secret of the parent's name that is not a parent is not taken over.
    kubectl(&cp, &["create", "secret", "generic", "-n", "p", "taken", "--from-literal=k=v"]);
    let err =
        cluster.apply(load(&cm("c", "")), &options("p", Some("taken")), &mut ApplyCache::default(), &quiet).await.expect_err("refused");
    assert!(matches!(err, KubeError::NotOurs { .. }), "{err}");
}

/// Waves wait for readiness with `wait`: a Deployment whose status the test writes
/// becomes ready, `ProgressDeadlineExceeded` fails with that reason, and a timeout
/// names the object.
#[tokio::test]
async fn waiting_for_readiness() {
    let _testbed = require!(Need::KubeBinaries);
    let cp = ControlPlane::start_without_controller_manager().await.expect("control plane");
    let cluster = connect(&cp).await;
    let deployment = |name: &str| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  replicas: 1\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec: {{containers: [{{name: c, image: nginx:1.25}}]}}\n"
        )
    };
    kubectl(&cp, &["create", "namespace", "w"]);
    let mut opts = options("w", None);
    opts.wait = true;
    opts.timeout = Duration::from_secs(20);

    // Ready: the status is written into the Deployment while the wait runs.
    let client = cp.client();
    let writer = tokio::spawn(async move {
        let api: kube::Api<k8s_openapi::api::apps::v1::Deployment> = kube::Api::namespaced(client, "w");
        let status = json!({"status": {
            "observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "readyReplicas": 1, "availableReplicas": 1,
            "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable", "message": "ok"},
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable", "message": "ok"},
            ],
        }});
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let patch = kube::api::Patch::Merge(&status);
            if api.patch_status("ready", &kube::api::PatchParams::default(), &patch).await.is_ok() {
                return Instant::now();
            }
        }
        panic!("the test could not write the Deployment's status");
    });
    let result = cluster.apply(load(&deployment("ready")), &opts, &mut ApplyCache::default(), &quiet).await;
    let done = Instant::now();
    let written = writer.await.expect("the status writer");
    result.expect("the Deployment becomes ready");
    assert!(done >= written, "ready only once its status says so");
    assert!(done - written < Duration::from_secs(5), "ready soon after its status says so (a watch), not at the timeout");

    // ProgressDeadlineExceeded: failed at once, with the reason.
    cluster.apply(load(&deployment("stuck")), &options("w", None), &mut ApplyCache::default(), &quiet).await.expect("apply");
    let api: kube::Api<k8s_openapi::api::apps::v1::Deployment> = kube::Api::namespaced(cp.client(), "w");
    let stuck = json!({"status": {
        "observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "unavailableReplicas": 1,
        "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                        "message": "ReplicaSet \"stuck-1\" has timed out progressing."}],
    }});
    api.patch_status("stuck", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&stuck)).await.expect("status written");
    let started = Instant::now();
    let err = cluster.apply(load(&deployment("stuck")), &opts, &mut ApplyCache::default(), &quiet).await.expect_err("fails");
    assert!(started.elapsed() < Duration::from_secs(10), "failed at once, not at the timeout: {:?}", started.elapsed());
    let text = err.to_string();
    assert!(text.contains("ProgressDeadlineExceeded") && text.contains("stuck"), "{text}");

    // A timeout names each object that is not ready, and why.
    let mut short = opts.clone();
    short.timeout = Duration::from_secs(3);
    let two = format!("{}---\n{}", deployment("slow-a"), deployment("slow-b"));
    let err = cluster.apply(load(&two), &short, &mut ApplyCache::default(), &quiet).await.expect_err("times out");
    let text = err.to_string();
    assert!(text.contains("w/slow-a") && text.contains("w/slow-b"), "{text}");
}

/// Every profile's render applies, component by component, to a control plane with the
/// CRD fixtures; upstream-file references are counted, not applied (the bundle brings
/// their bytes).
#[tokio::test]
async fn every_profile_renders_and_applies() {
    let _testbed = require!(Need::KubeBinaries, Need::SharedFixtures, Need::PythonYaml);
    let (cp, _) = control_plane_with_crd_fixtures().await.expect("a control plane with the CRD fixtures");
    let cluster = connect(&cp).await;
    let (mut applied, mut references) = (0, 0);
    for (profile, rendered) in idp_test::render::every_profile().expect("every profile renders") {
        references += rendered.components.iter().flat_map(|c| &c.items).filter(|i| matches!(i, Item::Reference { .. })).count();
        let objects = Object::from_rendered(&rendered);
        let mut by_component: Vec<(String, Vec<Object>)> = Vec::new();
        for object in objects {
            let component = object.place.source.trim_start_matches("component ").to_owned();
            match by_component.iter_mut().find(|(c, _)| *c == component) {
                Some((_, list)) => list.push(object),
                None => by_component.push((component, vec![object])),
            }
        }
        by_component.sort_by_key(|(_, list)| list.iter().map(|o| o.wave.unwrap_or(0)).min());
        for (component, objects) in by_component {
            let mut opts = ApplyOptions::new(&format!("lab-{profile}"), &component);
            opts.timeout = Duration::from_secs(120);
            let n = objects.len();
            let report = cluster
                .apply(objects, &opts, &mut ApplyCache::default(), &quiet)
                .await
                .unwrap_or_else(|e| panic!("profile {profile}, component {component}: {e}"));
            assert_eq!(report.objects.len(), n);
            applied += n;
        }
    }
    eprintln!("applied {applied} rendered objects; {references} upstream-file references skipped until the bundle brings them");
    assert!(applied > 200, "only {applied} objects");
}
