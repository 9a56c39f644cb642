//! The readiness wait: its plan and bookkeeping on their own, and the wait itself against
//! a real API server (no kubelet, no controllers: each test writes the status it needs
//! through the status subresource).

use super::*;
use std::sync::Mutex;

use idp_test::poll::{Attempt, poll_until};
use idp_test::{ControlPlane, Need, require};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, PersistentVolumeClaim};
use kube::Resource;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;

// ---------------------------------------------------------------------------------------
// Helpers.

/// A target of a kind whose resource is `resource`.
fn target_in(resource: ApiResource, namespaced: bool, namespace: &str, name: &str) -> Target {
    let identity =
        Identity { group: resource.group.clone(), kind: resource.kind.clone(), namespace: namespace.to_owned(), name: name.to_owned() };
    Target { kind: Kind { resource, namespaced }, namespace: namespace.to_owned(), name: name.to_owned(), identity }
}

/// A target of a built-in kind.
fn target<K: Resource<DynamicType = ()>>(namespaced: bool, namespace: &str, name: &str) -> Target {
    target_in(ApiResource::erase::<K>(&()), namespaced, namespace, name)
}

/// The k3s HelmChart, as discovery would resolve it.
fn helm_chart_resource() -> ApiResource {
    ApiResource {
        group: "helm.cattle.io".into(),
        version: "v1".into(),
        api_version: "helm.cattle.io/v1".into(),
        kind: "HelmChart".into(),
        plural: "helmcharts".into(),
    }
}

/// The `on_change` calls of a wait.
#[derive(Default)]
struct Progress(Mutex<Vec<(usize, usize)>>);

impl Progress {
    fn record(&self, ready: usize, total: usize) {
        self.0.lock().expect("progress lock").push((ready, total));
    }

    fn calls(&self) -> Vec<(usize, usize)> {
        self.0.lock().expect("progress lock").clone()
    }
}

/// Creates `obj` (JSON with apiVersion, kind and metadata) as `resource`.
async fn create(client: &kube::Client, resource: &ApiResource, obj: Value) -> DynamicObject {
    let obj: DynamicObject = serde_json::from_value(obj).expect("an object");
    let api: Api<DynamicObject> = match obj.metadata.namespace.as_deref() {
        Some(namespace) => Api::namespaced_with(client.clone(), namespace, resource),
        None => Api::all_with(client.clone(), resource),
    };
    api.create(&PostParams::default(), &obj).await.unwrap_or_else(|e| panic!("create {:?}: {e}", obj.metadata.name))
}

/// Merges `status` into the status of `namespace/name` through the status subresource.
async fn patch_status(client: &kube::Client, resource: &ApiResource, namespace: &str, name: &str, status: Value) {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, resource);
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(json!({ "status": status })))
        .await
        .unwrap_or_else(|e| panic!("patch the status of {namespace}/{name}: {e}"));
}

/// Runs [`until_ready`] while `meanwhile` changes the cluster, and returns the wait's
/// result, when it ended, and when `meanwhile` began its last change (the instant it
/// returns): a wait that the change makes ready must not end before that.
async fn wait_while(
    client: &kube::Client,
    server: &str,
    targets: &[Target],
    timeout: Duration,
    progress: &Progress,
    meanwhile: impl std::future::Future<Output = Instant>,
) -> (Result<(), KubeError>, Instant, Instant) {
    let record = |ready, total| progress.record(ready, total);
    let wait = async {
        let result = until_ready(client, server, targets, timeout, &record).await;
        (result, Instant::now())
    };
    let ((result, ended), last_change) = tokio::join!(wait, meanwhile);
    (result, ended, last_change)
}

async fn create_namespace(client: &kube::Client, name: &str) {
    create(client, &ApiResource::erase::<Namespace>(&()), json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}))
        .await;
}

fn deployment(namespace: &str, name: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]},
            },
        },
    })
}

/// The status a deployment controller writes once one replica of generation
/// `generation` is available.
fn available_status(generation: i64) -> Value {
    json!({
        "observedGeneration": generation,
        "replicas": 1,
        "updatedReplicas": 1,
        "readyReplicas": 1,
        "availableReplicas": 1,
        "conditions": [{
            "type": "Available",
            "status": "True",
            "reason": "MinimumReplicasAvailable",
            "message": "Deployment has minimum availability.",
        }],
    })
}

fn config_map(namespace: &str, name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace}, "data": {"a": "b"}})
}

fn claim(namespace: &str, name: &str, class: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": class, "resources": {"requests": {"storage": "1Gi"}}},
    })
}

fn storage_class(name: &str, binding: &str) -> Value {
    json!({
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": name},
        "provisioner": "example.com/none",
        "volumeBindingMode": binding,
    })
}

// ---------------------------------------------------------------------------------------
// The plan, the bookkeeping and the reasons, without a cluster.

#[test]
fn plan_watches_each_kind_and_namespace_once_narrowed_to_a_single_name() {
    let targets = [
        target::<Deployment>(true, "a", "web"),
        target::<Deployment>(true, "a", "api"),
        target::<Deployment>(true, "b", "db"),
        target::<ConfigMap>(true, "a", "settings"),
        target::<ConfigMap>(true, "a", "settings"),
        target::<Namespace>(false, "", "a"),
    ];
    let plan = plan(&targets);
    let watches: Vec<(String, Option<&str>, Option<&str>)> =
        plan.watches.iter().map(|w| (w.resource.plural.clone(), w.namespace.as_deref(), w.field_selector.as_deref())).collect();
    assert_eq!(
        watches,
        [
            ("deployments".to_owned(), Some("a"), None),
            ("deployments".to_owned(), Some("b"), Some("metadata.name=db")),
            ("configmaps".to_owned(), Some("a"), Some("metadata.name=settings")),
            ("namespaces".to_owned(), None, Some("metadata.name=a")),
        ]
    );
    assert_eq!(plan.target_watch, [0, 0, 1, 2, 2, 3]);
    assert_eq!(plan.storage_classes, None);
    assert!(plan.jobs.is_empty());
    assert_eq!(plan.watches[0].describe(), "deployments.apps in namespace a");
    assert_eq!(plan.watches[3].describe(), "namespaces (metadata.name=a)");
}

#[test]
fn plan_adds_storage_classes_for_claims_and_jobs_for_helm_charts() {
    let targets = [
        target::<PersistentVolumeClaim>(true, "a", "data"),
        target::<PersistentVolumeClaim>(true, "b", "data"),
        target_in(helm_chart_resource(), true, "kube-system", "traefik"),
        target_in(helm_chart_resource(), true, "kube-system", "coredns"),
        target_in(helm_chart_resource(), true, "other", "x"),
    ];
    let plan = plan(&targets);
    let sc = plan.storage_classes.expect("a StorageClass watch");
    assert_eq!(plan.watches[sc].resource.api_version, "storage.k8s.io/v1");
    assert_eq!((plan.watches[sc].namespace.as_deref(), plan.watches[sc].field_selector.as_deref()), (None, None));
    let jobs: Vec<(&str, Option<&str>, Option<&str>)> = plan
        .jobs
        .iter()
        .map(|&j| {
            (plan.watches[j].resource.api_version.as_str(), plan.watches[j].namespace.as_deref(), plan.watches[j].field_selector.as_deref())
        })
        .collect();
    assert_eq!(jobs, [("batch/v1", Some("kube-system"), None), ("batch/v1", Some("other"), None)]);
    assert_eq!(plan.depends_on(0, &targets[0]), [plan.target_watch[0], sc]);
    assert_eq!(plan.depends_on(2, &targets[2]), [plan.target_watch[2], plan.jobs[0]]);
    assert_eq!(plan.depends_on(4, &targets[4]), [plan.target_watch[4], plan.jobs[1]]);
}

#[test]
fn a_relist_replaces_what_was_seen() {
    let resource = ApiResource::erase::<ConfigMap>(&());
    let watch = Watch { resource: resource.clone(), namespace: Some("a".into()), field_selector: None };
    let cm = |name: &str| DynamicObject::new(name, &resource).within("a");
    let mut seen = Seen::default();
    seen.record(Ok(Event::Init), &watch);
    seen.record(Ok(Event::InitApply(cm("one"))), &watch);
    assert!(!seen.listed && seen.objects.is_empty(), "a list in progress is not yet what is seen");
    seen.record(Ok(Event::InitDone), &watch);
    seen.record(Ok(Event::Apply(cm("two"))), &watch);
    let mut names: Vec<&str> = seen.objects.keys().map(|(_, n)| n.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["one", "two"]);
    // A relist after a desync: what it does not list is gone.
    seen.record(Ok(Event::Init), &watch);
    seen.record(Ok(Event::InitApply(cm("two"))), &watch);
    seen.record(Ok(Event::InitDone), &watch);
    assert_eq!(seen.objects.keys().cloned().collect::<Vec<_>>(), [("a".to_owned(), "two".to_owned())]);
    seen.record(Ok(Event::Delete(cm("two"))), &watch);
    assert!(seen.objects.is_empty());
    assert!(seen.listed);
}

#[test]
fn objects_get_api_version_and_kind_from_the_watched_resource() {
    let resource = ApiResource::erase::<Deployment>(&());
    let mut obj = DynamicObject::new("web", &resource).within("a").data(json!({"spec": {"replicas": 2}}));
    obj.types = None;
    let (key, value) = to_value(obj, &resource).expect("a JSON object");
    assert_eq!(key, ("a".to_owned(), "web".to_owned()));
    assert_eq!(value["apiVersion"], "apps/v1");
    assert_eq!(value["kind"], "Deployment");
    assert_eq!(value["spec"]["replicas"], 2);
    assert_eq!(value["metadata"]["name"], "web");
}

#[test]
fn unseen_targets_say_whether_they_were_listed_and_the_watch_error() {
    let targets = [target::<ConfigMap>(true, "a", "one"), target::<Namespace>(false, "", "b")];
    let plan = plan(&targets);
    let mut seen: Vec<Seen> = plan.watches.iter().map(|_| Seen::default()).collect();
    seen[0].listed = true;
    seen[1].last_error = Some("list failed: 403 Forbidden: no".into());
    let verdicts = evaluate(&targets, &plan, &seen);
    let pairs: Vec<(&Value, Verdict)> = verdicts.iter().map(|(o, v)| (o, v.clone())).collect();
    assert_eq!(
        explain(&pairs),
        "ConfigMap a/one: not found\n\
         Namespace b: not listed yet (last error watching namespaces (metadata.name=b): list failed: 403 Forbidden: no)"
    );
}

#[test]
fn api_statuses_read_as_one_line() {
    let status =
        kube::core::Status { code: 404, reason: "NotFound".into(), message: "the server could not find it".into(), ..Default::default() };
    assert_eq!(status_line(&status), "404 NotFound: the server could not find it");
    assert_eq!(
        watch_error(&watcher::Error::InitialListFailed(kube::Error::Api(Box::new(status)))),
        "list failed: 404 NotFound: the server could not find it"
    );
    assert_eq!(status_line(&kube::core::Status::default()), "an error without a message");
    // What kube makes of a 404 that is not a Status (an API group that is not served).
    let unparsed = kube::core::Status::failure("404 page not found", "Failed to parse error data").with_code(404);
    assert_eq!(status_line(&unparsed), "404 page not found");
}

// ---------------------------------------------------------------------------------------
// The wait, against a real API server.

#[tokio::test]
async fn deployments_become_ready_when_their_status_is_written() {
    let _testbed = require!(Need::KubeBinaries);
    let cp = ControlPlane::start_without_controller_manager().await.expect("control plane starts");
    let client = cp.client();
    let resource = ApiResource::erase::<Deployment>(&());
    for namespace in ["wait-ready-a", "wait-ready-b"] {
        create_namespace(&client, namespace).await;
    }
    // Two in one namespace (a namespace watch), one alone (a watch of its name).
    let names = [("wait-ready-a", "web"), ("wait-ready-a", "api"), ("wait-ready-b", "db")];
    let mut generations = Vec::new();
    for (namespace, name) in names {
        let created = create(&client, &resource, deployment(namespace, name)).await;
        generations.push(created.metadata.generation.expect("a generation"));
    }
    let targets: Vec<Target> = names.iter().map(|(ns, name)| target::<Deployment>(true, ns, name)).collect();
    let progress = Progress::default();
    let started = Instant::now();

    let write = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut last = Instant::now();
        for ((namespace, name), generation) in names.iter().zip(&generations) {
            last = Instant::now();
            patch_status(&client, &resource, namespace, name, available_status(*generation)).await;
        }
        last
    };
    let (waited, ended, last_change) = wait_while(&client, cp.server(), &targets, Duration::from_secs(30), &progress, write).await;
    let elapsed = ended - started;

    waited.expect("ready once the status says so");
    assert!(ended >= last_change, "ready only after the last status was written, not {:?} before", last_change - ended);
    assert!(elapsed < Duration::from_secs(10), "the watch saw the status change at once, not after {elapsed:?}");
    let calls = progress.calls();
    assert_eq!(calls.first(), Some(&(0, 3)), "{calls:?}");
    assert_eq!(calls.last(), Some(&(3, 3)), "{calls:?}");
    assert!(calls.windows(2).all(|w| w[0].0 < w[1].0), "called only when the count changes: {calls:?}");
}

#[tokio::test]
async fn a_deployment_past_its_progress_deadline_fails_at_once() {
    let _testbed = require!(Need::KubeBinaries);
    let cp = ControlPlane::start_without_controller_manager().await.expect("control plane starts");
    let client = cp.client();
    let resource = ApiResource::erase::<Deployment>(&());
    create_namespace(&client, "wait-failed").await;
    let created = create(&client, &resource, deployment("wait-failed", "web")).await;
    let status = json!({
        "observedGeneration": created.metadata.generation,
        "conditions": [{
            "type": "Progressing",
            "status": "False",
            "reason": "ProgressDeadlineExceeded",
            "message": "ReplicaSet \"web-5d9\" has timed out progressing.",
        }],
    });
    patch_status(&client, &resource, "wait-failed", "web", status).await;
    let targets = [target::<Deployment>(true, "wait-failed", "web"), target::<ConfigMap>(true, "wait-failed", "not-there")];
    let progress = Progress::default();

    let started = Instant::now();
    let err = until_ready(&client, cp.server(), &targets, Duration::from_secs(60), &|r, t| progress.record(r, t))
        .await
        .expect_err("a deployment past its deadline fails");
    let elapsed = started.elapsed();

    assert!(matches!(err, KubeError::Failed { .. }), "{err}");
    assert!(elapsed < Duration::from_secs(10), "failed at once, not after {elapsed:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "failed on {}, waiting will not make it ready:\n  Deployment wait-failed/web: ProgressDeadlineExceeded: ReplicaSet \"web-5d9\" has timed out progressing.",
            cp.server()
        )
    );
    assert_eq!(progress.calls().first(), Some(&(0, 2)));
}

#[tokio::test]
async fn a_timeout_names_every_object_not_ready_and_why() {
    let _testbed = require!(Need::KubeBinaries);
    let cp = ControlPlane::start_without_controller_manager().await.expect("control plane starts");
    let client = cp.client();
    create_namespace(&client, "wait-timeout").await;
    create(&client, &ApiResource::erase::<Deployment>(&()), deployment("wait-timeout", "web")).await;
    create(&client, &ApiResource::erase::<ConfigMap>(&()), config_map("wait-timeout", "present")).await;
    let targets = [
        target::<Deployment>(true, "wait-timeout", "web"),
        target::<ConfigMap>(true, "wait-timeout", "missing"),
        target::<ConfigMap>(true, "wait-timeout", "present"),
    ];
    let progress = Progress::default();

    let started = Instant::now();
    let err = until_ready(&client, cp.server(), &targets, Duration::from_secs(3), &|r, t| progress.record(r, t))
        .await
        .expect_err("two are never ready");
    let elapsed = started.elapsed();

    let KubeError::NotReadyInTime { not_ready, total, ref explain, .. } = err else { panic!("expected NotReadyInTime, got {err}") };
    assert_eq!((not_ready, total), (2, 3), "{err}");
    assert_eq!(explain, "Deployment wait-timeout/web: 0/1 updated\nConfigMap wait-timeout/missing: not found");
    assert_eq!(
        err.to_string(),
        format!(
            "timed out after 3s waiting for 2 of 3 objects on {} to become ready:\n  Deployment wait-timeout/web: 0/1 updated\n  ConfigMap wait-timeout/missing: not found",
            cp.server()
        )
    );
    assert!((Duration::from_secs(3)..Duration::from_secs(10)).contains(&elapsed), "waited {elapsed:?}");
    assert_eq!(progress.calls(), [(0, 3), (1, 3)]);
}

#[tokio::test]
async fn objects_without_status_are_ready_once_they_exist() {
    let _testbed = require!(Need::KubeBinaries);
    let cp = ControlPlane::start_without_controller_manager().await.expect("control plane starts");
    let client = cp.client();
    let config_maps = ApiResource::erase::<ConfigMap>(&());
    create_namespace(&client, "wait-exists").await;
    create(&client, &config_maps, config_map("wait-exists", "there")).await;
    let targets = [
        target::<ConfigMap>(true, "wait-exists", "there"),
        target::<ConfigMap>(true, "wait-exists", "later"),
        // Cluster-scoped, alone: a cluster-wide watch of its name.
        target::<Namespace>(false, "", "wait-exists-later"),
    ];
    let progress = Progress::default();
    let started = Instant::now();

    let create_later = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        create(&client, &config_maps, config_map("wait-exists", "later")).await;
        let last = Instant::now();
        create_namespace(&client, "wait-exists-later").await;
        last
    };
    let (waited, ended, last_change) = wait_while(&client, cp.server(), &targets, Duration::from_secs(30), &progress, create_later).await;
    let elapsed = ended - started;

    waited.expect("ready once they exist");
    assert!(ended >= last_change, "ready only once the last was created, not {:?} before", last_change - ended);
    assert!(elapsed < Duration::from_secs(10), "waited {elapsed:?}");
    let calls = progress.calls();
    assert_eq!(calls.first(), Some(&(0, 3)), "{calls:?}");
    assert!(calls.contains(&(1, 3)), "the existing one was ready before the others were created: {calls:?}");
    assert_eq!(calls.last(), Some(&(3, 3)), "{calls:?}");
}

#[tokio::test]
async fn a_pending_claim_is_ready_when_its_class_waits_for_the_first_consumer() {
    let _testbed = require!(Need::KubeBinaries);
    let cp = ControlPlane::start_without_controller_manager().await.expect("control plane starts");
    let client = cp.client();
    let claims = ApiResource::erase::<PersistentVolumeClaim>(&());
    let classes = ApiResource::erase::<StorageClass>(&());
    create_namespace(&client, "wait-claims").await;
    create(&client, &claims, claim("wait-claims", "data", "wffc")).await;
    create(&client, &claims, claim("wait-claims", "eager", "immediate")).await;
    create(&client, &classes, storage_class("immediate", "Immediate")).await;

    // The class of `data` appears during the wait: the StorageClass watch sees it.
    let targets = [target::<PersistentVolumeClaim>(true, "wait-claims", "data")];
    let progress = Progress::default();
    let started = Instant::now();
    let create_class = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let last = Instant::now();
        create(&client, &classes, storage_class("wffc", "WaitForFirstConsumer")).await;
        last
    };
    let (waited, ended, last_change) = wait_while(&client, cp.server(), &targets, Duration::from_secs(30), &progress, create_class).await;
    waited.expect("a Pending claim of a WaitForFirstConsumer class is ready");
    assert!(ended >= last_change, "ready only once its class exists, not {:?} before", last_change - ended);
    assert!(ended - started < Duration::from_secs(10), "waited {:?}", ended - started);
    assert_eq!(progress.calls(), [(0, 1), (1, 1)]);

    // A Pending claim of an Immediate class waits to be bound.
    let targets = [target::<PersistentVolumeClaim>(true, "wait-claims", "eager")];
    let err = until_ready(&client, cp.server(), &targets, Duration::from_secs(2), &|_, _| {}).await.expect_err("never bound");
    let KubeError::NotReadyInTime { explain, .. } = &err else { panic!("expected NotReadyInTime, got {err}") };
    assert_eq!(explain, "PersistentVolumeClaim wait-claims/eager: Pending");
}

#[tokio::test]
async fn a_helm_chart_is_ready_when_its_install_job_completes() {
    let _testbed = require!(Need::KubeBinaries);
    let cp = ControlPlane::start_without_controller_manager().await.expect("control plane starts");
    let client = cp.client();
    let crds = ApiResource::erase::<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>(&());
    create(
        &client,
        &crds,
        json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "helmcharts.helm.cattle.io"},
            "spec": {
                "group": "helm.cattle.io",
                "names": {"kind": "HelmChart", "plural": "helmcharts", "singular": "helmchart", "listKind": "HelmChartList"},
                "scope": "Namespaced",
                "versions": [{
                    "name": "v1",
                    "served": true,
                    "storage": true,
                    "subresources": {"status": {}},
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
                }],
            },
        }),
    )
    .await;
    create_namespace(&client, "wait-helm").await;
    let charts = helm_chart_resource();
    let chart = json!({
        "apiVersion": "helm.cattle.io/v1",
        "kind": "HelmChart",
        "metadata": {"name": "traefik", "namespace": "wait-helm"},
        "spec": {"chart": "traefik"},
    });
    // The 1.20 API server answers 404 for a while after the CRD is established.
    poll_until("the HelmChart to be created", Duration::from_secs(60), || {
        let chart: Result<DynamicObject, _> = serde_json::from_value(chart.clone());
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "wait-helm", &charts);
        async move {
            Ok(match api.create(&PostParams::default(), &chart?).await {
                Ok(_) => Attempt::Done(()),
                Err(e) => Attempt::Retry(e.to_string()),
            })
        }
    })
    .await
    .expect("the HelmChart kind is served");

    let jobs = ApiResource::erase::<Job>(&());
    let targets = [target_in(charts.clone(), true, "wait-helm", "traefik")];
    let progress = Progress::default();
    let started = Instant::now();
    let install = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        patch_status(&client, &charts, "wait-helm", "traefik", json!({"jobName": "helm-install-traefik"})).await;
        create(
            &client,
            &jobs,
            json!({
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": {"name": "helm-install-traefik", "namespace": "wait-helm"},
                "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "helm", "image": "rancher/klipper-helm"}]}}},
            }),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let last = Instant::now();
        patch_status(
            &client,
            &jobs,
            "wait-helm",
            "helm-install-traefik",
            json!({
                "succeeded": 1,
                "startTime": "2026-01-01T00:00:00Z",
                "completionTime": "2026-01-01T00:00:05Z",
                "conditions": [{"type": "Complete", "status": "True"}],
            }),
        )
        .await;
        last
    };
    let (waited, ended, last_change) = wait_while(&client, cp.server(), &targets, Duration::from_secs(30), &progress, install).await;
    waited.expect("ready once its install job completed");
    assert!(ended >= last_change, "ready only once the job completed, not {:?} before", last_change - ended);
    assert!(ended - started < Duration::from_secs(10), "waited {:?}", ended - started);
    assert_eq!(progress.calls(), [(0, 1), (1, 1)]);
}

#[tokio::test]
async fn a_kind_that_is_not_served_times_out_with_the_watch_error() {
    let _testbed = require!(Need::KubeBinaries);
    let cp = ControlPlane::start_without_controller_manager().await.expect("control plane starts");
    let client = cp.client();
    let widgets = ApiResource {
        group: "example.com".into(),
        version: "v1".into(),
        api_version: "example.com/v1".into(),
        kind: "Widget".into(),
        plural: "widgets".into(),
    };
    let targets = [target_in(widgets, true, "default", "w1"), target::<ConfigMap>(true, "default", "kube-root-ca.crt-not")];

    let err = until_ready(&client, cp.server(), &targets, Duration::from_secs(3), &|_, _| {}).await.expect_err("nothing serves widgets");

    let KubeError::NotReadyInTime { explain, .. } = &err else { panic!("expected NotReadyInTime, got {err}") };
    assert_eq!(
        explain,
        "Widget default/w1: not listed yet (last error watching widgets.example.com in namespace default (metadata.name=w1): \
         list failed: 404 page not found)\n\
         ConfigMap default/kube-root-ca.crt-not: not found",
        "{err}"
    );
}
