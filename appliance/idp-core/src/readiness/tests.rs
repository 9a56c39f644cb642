use super::*;
use serde_json::{Value, json};

fn cond(type_: &str, status: &str, reason: &str, message: &str) -> Value {
    json!({"type": type_, "status": status, "reason": reason, "message": message})
}

fn obj(api_version: &str, kind: &str, spec: Value, status: Value) -> Value {
    json!({"apiVersion": api_version, "kind": kind, "metadata": {"name": "x", "namespace": "ns", "generation": 2}, "spec": spec, "status": status})
}

fn in_progress_with(v: &Verdict, needle: &str) -> bool {
    matches!(v, Verdict::InProgress { reason } if reason.contains(needle))
}

fn failed_with(v: &Verdict, needle: &str) -> bool {
    matches!(v, Verdict::Failed { reason } if reason.contains(needle))
}

#[track_caller]
fn assert_in_progress(v: Verdict, needle: &str) {
    assert!(in_progress_with(&v, needle), "expected InProgress containing {needle:?}, got {v:?}");
}

#[track_caller]
fn assert_failed(v: Verdict, needle: &str) {
    assert!(failed_with(&v, needle), "expected Failed containing {needle:?}, got {v:?}");
}

// --- prelude

#[test]
fn prelude_terminating_unobserved_stalled_reconciling() {
    let mut o = obj("v1", "ConfigMap", json!({}), json!({}));
    assert_eq!(verdict(&o), Verdict::Ready);
    o["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
    assert_in_progress(verdict(&o), "terminating");

    let o = obj("example.com/v1", "Widget", json!({}), json!({"observedGeneration": 1}));
    assert_in_progress(verdict(&o), "generation 2 not yet observed");

    let o = obj(
        "example.com/v1",
        "Widget",
        json!({}),
        json!({"observedGeneration": 2, "conditions": [cond("Stalled", "True", "BadSpec", "no such thing")]}),
    );
    assert_eq!(verdict(&o), Verdict::Failed { reason: "BadSpec: no such thing".into() });

    let o = obj("example.com/v1", "Widget", json!({}), json!({"conditions": [cond("Reconciling", "True", "", "working")]}));
    assert_eq!(verdict(&o), Verdict::InProgress { reason: "working".into() });
}

// --- generic

#[test]
fn generic_kinds_use_ready_or_exist() {
    let o = obj("example.com/v1", "Widget", json!({}), json!({"observedGeneration": 2}));
    assert_eq!(verdict(&o), Verdict::Ready, "no conditions at all: ready");
    let o = obj("example.com/v1", "Widget", json!({}), json!({"conditions": [cond("Ready", "True", "", "")]}));
    assert_eq!(verdict(&o), Verdict::Ready);
    let o = obj("example.com/v1", "Widget", json!({}), json!({"conditions": [cond("Ready", "False", "Waiting", "for the database")]}));
    assert_eq!(verdict(&o), Verdict::InProgress { reason: "Waiting: for the database".into() });
    let o = obj("example.com/v1", "Widget", json!({}), json!({"conditions": [cond("Ready", "Unknown", "", "")]}));
    assert_eq!(verdict(&o), Verdict::InProgress { reason: "Ready is Unknown".into() });
    let o = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}});
    assert_eq!(verdict(&o), Verdict::Ready);
}

// --- Deployment

fn deployment(replicas: i64, status: Value) -> Value {
    obj("apps/v1", "Deployment", json!({"replicas": replicas}), status)
}

#[test]
fn deployment_ready_when_updated_and_available() {
    let d =
        deployment(2, json!({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "readyReplicas": 2, "availableReplicas": 2}));
    assert_eq!(verdict(&d), Verdict::Ready);
    // spec.replicas defaults to 1
    let d = obj("apps/v1", "Deployment", json!({}), json!({"replicas": 1, "updatedReplicas": 1, "availableReplicas": 1}));
    assert_eq!(verdict(&d), Verdict::Ready);
}

#[test]
fn deployment_in_progress_cases() {
    let d = deployment(1, json!({"observedGeneration": 2, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 0}));
    assert_eq!(verdict(&d), Verdict::InProgress { reason: "0/1 available".into() });
    let d = deployment(3, json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 1, "availableReplicas": 3}));
    assert_eq!(verdict(&d), Verdict::InProgress { reason: "1/3 updated".into() });
    let d = deployment(2, json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 2, "availableReplicas": 2}));
    assert_in_progress(verdict(&d), "1 old replicas pending termination");
    let d = deployment(1, json!({"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1}));
    assert_in_progress(verdict(&d), "not yet observed");
    let d = deployment(1, json!({}));
    assert_in_progress(verdict(&d), "0/1 updated");
    let mut d = deployment(1, json!({"replicas": 1, "updatedReplicas": 1, "availableReplicas": 1}));
    d["spec"]["paused"] = json!(true);
    assert_in_progress(verdict(&d), "paused");
}

#[test]
fn deployment_progress_deadline_exceeded_fails_with_that_reason() {
    let d = deployment(
        1,
        json!({"observedGeneration": 2, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 0, "conditions": [
            cond("Available", "False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability."),
            cond("Progressing", "False", "ProgressDeadlineExceeded", "ReplicaSet \"web-5d\" has timed out progressing."),
        ]}),
    );
    assert_eq!(
        verdict(&d),
        Verdict::Failed { reason: "ProgressDeadlineExceeded: ReplicaSet \"web-5d\" has timed out progressing.".into() }
    );
    // Progressing for another reason is not a failure.
    let d = deployment(
        1,
        json!({"replicas": 1, "updatedReplicas": 1, "availableReplicas": 0, "conditions": [cond("Progressing", "True", "ReplicaSetUpdated", "")]}),
    );
    assert_in_progress(verdict(&d), "0/1 available");
}

// --- StatefulSet

#[test]
fn stateful_set_rules() {
    let ready = json!({"observedGeneration": 2, "replicas": 3, "readyReplicas": 3, "updatedReplicas": 3, "currentRevision": "r1", "updateRevision": "r1"});
    assert_eq!(verdict(&obj("apps/v1", "StatefulSet", json!({"replicas": 3}), ready.clone())), Verdict::Ready);

    let mut s = obj("apps/v1", "StatefulSet", json!({"replicas": 3}), ready.clone());
    s["status"]["readyReplicas"] = json!(1);
    assert_eq!(verdict(&s), Verdict::InProgress { reason: "1/3 ready".into() });

    let mut s = obj("apps/v1", "StatefulSet", json!({"replicas": 3}), ready.clone());
    s["status"]["updateRevision"] = json!("r2");
    assert_in_progress(verdict(&s), "rolling update to revision r2");

    let mut s = obj("apps/v1", "StatefulSet", json!({"replicas": 3}), ready.clone());
    s["status"].as_object_mut().map(|m| m.remove("observedGeneration"));
    assert_in_progress(verdict(&s), "not yet observed");

    // Partition: 3 - 1 = 2 must be updated; revisions may differ.
    let spec = json!({"replicas": 3, "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 1}}});
    let mut s = obj("apps/v1", "StatefulSet", spec.clone(), ready.clone());
    s["status"]["updateRevision"] = json!("r2");
    s["status"]["updatedReplicas"] = json!(2);
    assert_eq!(verdict(&s), Verdict::Ready);
    s["status"]["updatedReplicas"] = json!(1);
    assert_in_progress(verdict(&s), "1/2 updated (partition 1)");

    // OnDelete: ready once enough pods are ready.
    let mut s = obj("apps/v1", "StatefulSet", json!({"replicas": 3, "updateStrategy": {"type": "OnDelete"}}), ready);
    s["status"]["updateRevision"] = json!("r2");
    assert_eq!(verdict(&s), Verdict::Ready);
}

// --- DaemonSet

#[test]
fn daemon_set_rules() {
    let status =
        json!({"observedGeneration": 2, "desiredNumberScheduled": 3, "updatedNumberScheduled": 3, "numberAvailable": 3, "numberReady": 3});
    assert_eq!(verdict(&obj("apps/v1", "DaemonSet", json!({}), status.clone())), Verdict::Ready);
    let mut d = obj("apps/v1", "DaemonSet", json!({}), status.clone());
    d["status"]["numberAvailable"] = json!(2);
    assert_eq!(verdict(&d), Verdict::InProgress { reason: "2/3 available".into() });
    let mut d = obj("apps/v1", "DaemonSet", json!({}), status.clone());
    d["status"]["updatedNumberScheduled"] = json!(0);
    assert_in_progress(verdict(&d), "0/3 updated");
    // OnDelete does not wait for updates.
    d["spec"]["updateStrategy"] = json!({"type": "OnDelete"});
    assert_eq!(verdict(&d), Verdict::Ready);
    let d = obj("apps/v1", "DaemonSet", json!({}), json!({"observedGeneration": 2}));
    assert_in_progress(verdict(&d), "desiredNumberScheduled");
    let d = obj("apps/v1", "DaemonSet", json!({}), json!({}));
    assert_in_progress(verdict(&d), "not yet observed");
}

// --- ReplicaSet

#[test]
fn replica_set_rules() {
    let rs = obj("apps/v1", "ReplicaSet", json!({"replicas": 2}), json!({"replicas": 2, "availableReplicas": 2, "readyReplicas": 2}));
    assert_eq!(verdict(&rs), Verdict::Ready);
    let rs = obj("apps/v1", "ReplicaSet", json!({"replicas": 2}), json!({"replicas": 2, "availableReplicas": 1, "readyReplicas": 2}));
    assert_eq!(verdict(&rs), Verdict::InProgress { reason: "1/2 available".into() });
    let rs = obj("apps/v1", "ReplicaSet", json!({"replicas": 2}), json!({"replicas": 3, "availableReplicas": 2, "readyReplicas": 2}));
    assert_in_progress(verdict(&rs), "1 extra pods");
    let rs = obj(
        "apps/v1",
        "ReplicaSet",
        json!({"replicas": 2}),
        json!({"conditions": [cond("ReplicaFailure", "True", "FailedCreate", "pods \"web-\" is forbidden: exceeded quota")]}),
    );
    assert_failed(verdict(&rs), "FailedCreate: pods \"web-\" is forbidden: exceeded quota");
}

// --- Pod

fn pod(restart: Option<&str>, status: Value) -> Value {
    let spec = match restart {
        Some(r) => json!({"restartPolicy": r}),
        None => json!({}),
    };
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "ns"}, "spec": spec, "status": status})
}

#[test]
fn pod_running_and_ready_is_ready() {
    let p = pod(None, json!({"phase": "Running", "conditions": [cond("Ready", "True", "", "")]}));
    assert_eq!(verdict(&p), Verdict::Ready);
    let p = pod(
        None,
        json!({"phase": "Running", "conditions": [cond("Ready", "False", "ContainersNotReady", "containers with unready status: [web]")]}),
    );
    assert_eq!(verdict(&p), Verdict::InProgress { reason: "ContainersNotReady: containers with unready status: [web]".into() });
}

#[test]
fn pod_image_pull_back_off_fails_with_reason_and_image() {
    let p = pod(
        None,
        json!({"phase": "Pending", "containerStatuses": [
            {"name": "sidecar", "image": "busybox:1.36", "state": {"running": {}}},
            {"name": "web", "image": "nginx:does-not-exist", "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"nginx:does-not-exist\""}}},
        ]}),
    );
    assert_eq!(
        verdict(&p),
        Verdict::Failed {
            reason: "container web: ImagePullBackOff (image nginx:does-not-exist): Back-off pulling image \"nginx:does-not-exist\"".into()
        }
    );
    for reason in ["ErrImagePull", "CrashLoopBackOff", "CreateContainerConfigError", "InvalidImageName"] {
        let p = pod(
            None,
            json!({"phase": "Pending", "initContainerStatuses": [{"name": "init", "image": "i:1", "state": {"waiting": {"reason": reason}}}]}),
        );
        assert_eq!(verdict(&p), Verdict::Failed { reason: format!("container init: {reason} (image i:1)") });
    }
    // ContainerCreating is not a failure.
    let p = pod(
        None,
        json!({"phase": "Pending", "containerStatuses": [{"name": "web", "state": {"waiting": {"reason": "ContainerCreating"}}}]}),
    );
    assert_eq!(verdict(&p), Verdict::InProgress { reason: "phase Pending".into() });
}

#[test]
fn pod_phases() {
    assert_eq!(verdict(&pod(Some("Never"), json!({"phase": "Succeeded"}))), Verdict::Ready);
    assert_eq!(
        verdict(&pod(Some("Never"), json!({"phase": "Failed", "reason": "Evicted", "message": "low on memory"}))),
        Verdict::Failed { reason: "phase Failed: Evicted: low on memory".into() }
    );
    assert_in_progress(
        verdict(&pod(Some("OnFailure"), json!({"phase": "Running", "conditions": [cond("Ready", "True", "", "")]}))),
        "running",
    );
    let p =
        pod(None, json!({"phase": "Pending", "conditions": [cond("PodScheduled", "False", "Unschedulable", "0/3 nodes are available")]}));
    assert_eq!(verdict(&p), Verdict::InProgress { reason: "Unschedulable: 0/3 nodes are available".into() });
    assert_in_progress(verdict(&pod(None, json!({}))), "no phase yet");
}

// --- Job

#[test]
fn job_rules() {
    let j = obj("batch/v1", "Job", json!({}), json!({"succeeded": 1, "conditions": [cond("Complete", "True", "", "")]}));
    assert_eq!(verdict(&j), Verdict::Ready);
    let j = obj(
        "batch/v1",
        "Job",
        json!({}),
        json!({"failed": 6, "conditions": [cond("Failed", "True", "BackoffLimitExceeded", "Job has reached the specified backoff limit")]}),
    );
    assert_eq!(verdict(&j), Verdict::Failed { reason: "BackoffLimitExceeded: Job has reached the specified backoff limit".into() });
    let j = obj("batch/v1", "Job", json!({}), json!({"active": 1, "startTime": "2024-01-01T00:00:00Z"}));
    assert_eq!(verdict(&j), Verdict::InProgress { reason: "running: 1 active, 0 succeeded, 0 failed".into() });
    let j = obj("batch/v1", "Job", json!({"suspend": true}), json!({}));
    assert_in_progress(verdict(&j), "suspended");
}

// --- Service

#[test]
fn service_rules() {
    assert_eq!(verdict(&obj("v1", "Service", json!({"type": "ClusterIP"}), json!({}))), Verdict::Ready);
    assert_eq!(verdict(&obj("v1", "Service", json!({}), json!({}))), Verdict::Ready);
    assert_eq!(verdict(&obj("v1", "Service", json!({"type": "NodePort"}), json!({}))), Verdict::Ready);
    let lb = obj("v1", "Service", json!({"type": "LoadBalancer"}), json!({"loadBalancer": {}}));
    assert_in_progress(verdict(&lb), "load-balancer address");
    let lb = obj("v1", "Service", json!({"type": "LoadBalancer"}), json!({"loadBalancer": {"ingress": [{"ip": "172.18.0.10"}]}}));
    assert_eq!(verdict(&lb), Verdict::Ready);
}

// --- PVC

fn pvc(class: Option<&str>, phase: &str) -> Value {
    let spec = match class {
        Some(c) => json!({"storageClassName": c}),
        None => json!({}),
    };
    json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data", "namespace": "ns"}, "spec": spec, "status": {"phase": phase}})
}

fn class(name: &str, mode: &str, default: bool) -> Value {
    let mut c = json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": name}, "volumeBindingMode": mode});
    if default {
        c["metadata"]["annotations"] = json!({"storageclass.kubernetes.io/is-default-class": "true"});
    }
    c
}

#[test]
fn pvc_rules() {
    assert_eq!(verdict(&pvc(None, "Bound")), Verdict::Ready);
    assert_failed(verdict(&pvc(None, "Lost")), "Lost");
    assert_eq!(
        verdict(&pvc(Some("local-path"), "Pending")),
        Verdict::InProgress { reason: "Pending".into() },
        "without classes: not ready"
    );

    let classes = [class("local-path", "WaitForFirstConsumer", true), class("fast", "Immediate", false)];
    let related = Related { storage_classes: &classes, ..Related::default() };
    assert_eq!(verdict_with(&pvc(Some("local-path"), "Pending"), &related), Verdict::Ready, "WFFC: waiting for consumer");
    assert_eq!(verdict_with(&pvc(None, "Pending"), &related), Verdict::Ready, "the default class is WFFC");
    assert_eq!(verdict_with(&pvc(Some("fast"), "Pending"), &related), Verdict::InProgress { reason: "Pending".into() });
    assert_eq!(verdict_with(&pvc(Some("other"), "Pending"), &related), Verdict::InProgress { reason: "Pending".into() });

    let mut selected = pvc(Some("local-path"), "Pending");
    selected["metadata"]["annotations"] = json!({"volume.kubernetes.io/selected-node": "agent-0"});
    assert_in_progress(verdict_with(&selected, &related), "selected node");
}

// --- CRD

fn crd(conditions: Value) -> Value {
    json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": "widgets.example.com"}, "status": {"conditions": conditions}})
}

#[test]
fn crd_rules() {
    assert_eq!(
        verdict(&crd(json!([cond("NamesAccepted", "True", "NoConflicts", ""), cond("Established", "True", "InitialNamesAccepted", "")]))),
        Verdict::Ready
    );
    assert_in_progress(
        verdict(&crd(json!([
            cond("NamesAccepted", "True", "", ""),
            cond("Established", "False", "Installing", "the initial names have been accepted")
        ]))),
        "Installing",
    );
    assert_in_progress(verdict(&crd(json!([]))), "not yet established");
    assert_failed(
        verdict(&crd(json!([cond("NamesAccepted", "False", "MultipleGroupsPlural", "plural conflicts")]))),
        "MultipleGroupsPlural",
    );
    assert_failed(
        verdict(&crd(json!([
            cond("Established", "True", "", ""),
            cond("NonStructuralSchema", "True", "Violations", "spec.x: type missing")
        ]))),
        "Violations",
    );
    assert_failed(verdict(&crd(json!([cond("Established", "False", "NotAccepted", "not all names are accepted")]))), "NotAccepted");
}

// --- APIService, Namespace

#[test]
fn api_service_rules() {
    let a = |c: Value| json!({"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService", "metadata": {"name": "v1beta1.metrics.k8s.io"}, "status": {"conditions": c}});
    assert_eq!(verdict(&a(json!([cond("Available", "True", "Passed", "")]))), Verdict::Ready);
    assert_eq!(
        verdict(&a(json!([cond("Available", "False", "FailedDiscoveryCheck", "no response")]))),
        Verdict::InProgress { reason: "FailedDiscoveryCheck: no response".into() }
    );
    assert_in_progress(verdict(&a(json!([]))), "not available");
}

#[test]
fn namespace_rules() {
    let n = |phase: &str| json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "argocd"}, "status": {"phase": phase}});
    assert_eq!(verdict(&n("Active")), Verdict::Ready);
    assert_in_progress(verdict(&n("Terminating")), "terminating");
}

// --- cert-manager, ESO

#[test]
fn cert_manager_rules() {
    for kind in ["Certificate", "Issuer", "ClusterIssuer"] {
        let c = |conds: Value| obj("cert-manager.io/v1", kind, json!({}), json!({"conditions": conds}));
        assert_eq!(verdict(&c(json!([cond("Ready", "True", "Ready", "")]))), Verdict::Ready, "{kind}");
        assert_in_progress(
            verdict(&c(json!([cond("Ready", "False", "DoesNotExist", "Issuer lab-ca not found")]))),
            "Issuer lab-ca not found",
        );
        assert_in_progress(verdict(&c(json!([]))), "no Ready condition");
    }
    let c = obj(
        "cert-manager.io/v1",
        "Certificate",
        json!({}),
        json!({"conditions": [cond("Ready", "True", "", ""), cond("Issuing", "True", "Renewing", "renewing")]}),
    );
    assert_in_progress(verdict(&c), "Renewing");
}

#[test]
fn external_secrets_rules() {
    for kind in ["ExternalSecret", "SecretStore", "ClusterSecretStore"] {
        let e = |conds: Value| obj("external-secrets.io/v1beta1", kind, json!({}), json!({"conditions": conds}));
        assert_eq!(verdict(&e(json!([cond("Ready", "True", "SecretSynced", "")]))), Verdict::Ready, "{kind}");
        assert_failed(
            verdict(&e(json!([cond("Ready", "False", "SecretSyncedError", "could not get secret data from provider")]))),
            "could not get secret",
        );
        assert_in_progress(verdict(&e(json!([]))), "no Ready condition");
    }
}

// --- Gateway API

fn gateway(conditions: Value, listeners: Value) -> Value {
    obj("gateway.networking.k8s.io/v1", "Gateway", json!({}), json!({"conditions": conditions, "listeners": listeners}))
}

#[test]
fn gateway_rules() {
    let ok = json!([cond("Accepted", "True", "", ""), cond("Programmed", "True", "", "")]);
    let listener_ok = json!([{"name": "https", "conditions": [cond("Programmed", "True", "", ""), cond("ResolvedRefs", "True", "", "")]}]);
    assert_eq!(verdict(&gateway(ok.clone(), listener_ok.clone())), Verdict::Ready);
    assert_in_progress(
        verdict(&gateway(
            json!([cond("Accepted", "True", "", ""), cond("Programmed", "False", "Pending", "waiting for address")]),
            listener_ok.clone(),
        )),
        "gateway: Pending: waiting for address",
    );
    assert_in_progress(verdict(&gateway(json!([cond("Accepted", "True", "", "")]), listener_ok)), "not yet programmed");
    assert_failed(
        verdict(&gateway(json!([cond("Accepted", "False", "InvalidParameters", "no GatewayClass")]), json!([]))),
        "InvalidParameters",
    );
    let bad_listener =
        json!([{"name": "https", "conditions": [cond("ResolvedRefs", "False", "InvalidCertificateRef", "secret lab-tls not found")]}]);
    assert_failed(verdict(&gateway(ok.clone(), bad_listener)), "listener https: InvalidCertificateRef");
    let unprogrammed = json!([{"name": "http", "conditions": [cond("Programmed", "Unknown", "", "")]}]);
    assert_in_progress(verdict(&gateway(ok.clone(), unprogrammed)), "listener http");
    // A condition of an older generation does not count.
    let stale = json!([{"type": "Accepted", "status": "True", "observedGeneration": 1}, {"type": "Programmed", "status": "True", "observedGeneration": 1}]);
    assert_in_progress(verdict(&gateway(stale, json!([]))), "not yet observed");
}

fn route(parents: Value) -> Value {
    obj("gateway.networking.k8s.io/v1", "HTTPRoute", json!({}), json!({"parents": parents}))
}

fn parent(name: &str, conditions: Value) -> Value {
    json!({"parentRef": {"name": name, "namespace": "edge"}, "controllerName": "io.cilium/gateway-controller", "conditions": conditions})
}

#[test]
fn http_route_rules() {
    let ok = json!([cond("Accepted", "True", "", ""), cond("ResolvedRefs", "True", "", "")]);
    assert_eq!(verdict(&route(json!([parent("lab", ok.clone()), parent("other", ok.clone())]))), Verdict::Ready);
    assert_in_progress(verdict(&route(json!([]))), "no parent");
    let refs_false = json!([cond("Accepted", "True", "", ""), cond("ResolvedRefs", "False", "BackendNotFound", "service web not found")]);
    assert_eq!(
        verdict(&route(json!([parent("lab", ok.clone()), parent("other", refs_false)]))),
        Verdict::Failed { reason: "parent edge/other: BackendNotFound: service web not found".into() }
    );
    let accepted_only = json!([cond("Accepted", "True", "", "")]);
    assert_in_progress(verdict(&route(json!([parent("lab", accepted_only)]))), "parent edge/lab: no ResolvedRefs condition");
    let stale = json!([{"type": "Accepted", "status": "True", "observedGeneration": 1}, {"type": "ResolvedRefs", "status": "True", "observedGeneration": 1}]);
    assert_in_progress(verdict(&route(json!([parent("lab", stale)]))), "generation not yet observed");
}

// --- Argo CD Application

fn app(health: &str, sync: &str, phase: Option<&str>) -> Value {
    let mut status = json!({"health": {"status": health}, "sync": {"status": sync}});
    if let Some(phase) = phase {
        status["operationState"] = json!({"phase": phase, "message": "one or more objects failed to apply"});
    }
    obj("argoproj.io/v1alpha1", "Application", json!({}), status)
}

#[test]
fn application_rules() {
    assert_eq!(verdict(&app("Healthy", "Synced", Some("Succeeded"))), Verdict::Ready);
    assert_eq!(verdict(&app("Healthy", "Synced", None)), Verdict::Ready);
    assert_eq!(verdict(&app("Progressing", "Synced", None)), Verdict::InProgress { reason: "health Progressing, sync Synced".into() });
    assert_in_progress(verdict(&app("Healthy", "OutOfSync", None)), "sync OutOfSync");
    assert_in_progress(verdict(&app("Healthy", "Synced", Some("Running"))), "a sync operation is running");
    assert_in_progress(verdict(&app("", "", None)), "health Unknown, sync Unknown");
    let mut degraded = app("Degraded", "Synced", None);
    degraded["status"]["health"]["message"] = json!("Deployment web: ProgressDeadlineExceeded");
    assert_eq!(verdict(&degraded), Verdict::Failed { reason: "health Degraded: Deployment web: ProgressDeadlineExceeded".into() });
    assert_failed(verdict(&app("Progressing", "OutOfSync", Some("Failed"))), "sync operation Failed: one or more objects");
}

// --- k3s HelmChart

fn helm_chart(status: Value) -> Value {
    json!({"apiVersion": "helm.cattle.io/v1", "kind": "HelmChart", "metadata": {"name": "cilium", "namespace": "kube-system"}, "spec": {"chart": "cilium"}, "status": status})
}

fn install_job(conditions: Value) -> Value {
    json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "helm-install-cilium", "namespace": "kube-system"}, "status": {"conditions": conditions}})
}

#[test]
fn helm_chart_rules() {
    let chart = helm_chart(json!({}));
    assert_eq!(helm_chart_job(&chart), None);
    assert_in_progress(verdict(&chart), "status.jobName");

    let chart = helm_chart(json!({"jobName": "helm-install-cilium"}));
    assert_eq!(helm_chart_job(&chart), Some(("kube-system".into(), "helm-install-cilium".into())));
    assert_in_progress(verdict(&chart), "install job kube-system/helm-install-cilium not seen yet");

    let done = [install_job(json!([cond("Complete", "True", "", "")]))];
    assert_eq!(verdict_with(&chart, &Related { jobs: &done, ..Related::default() }), Verdict::Ready);
    let failing = [install_job(json!([cond("Failed", "True", "BackoffLimitExceeded", "")]))];
    assert_eq!(
        verdict_with(&chart, &Related { jobs: &failing, ..Related::default() }),
        Verdict::Failed { reason: "install job kube-system/helm-install-cilium: BackoffLimitExceeded".into() }
    );
    let running = [install_job(json!([]))];
    assert_in_progress(
        verdict_with(&chart, &Related { jobs: &running, ..Related::default() }),
        "install job kube-system/helm-install-cilium: running",
    );
    // A job of the same name elsewhere is not this chart's.
    let mut elsewhere = install_job(json!([cond("Complete", "True", "", "")]));
    elsewhere["metadata"]["namespace"] = json!("default");
    assert_in_progress(verdict_with(&chart, &Related { jobs: &[elsewhere], ..Related::default() }), "not seen yet");

    let chart = helm_chart(json!({"jobName": "helm-install-cilium", "conditions": [cond("Failed", "True", "Error", "chart not found")]}));
    assert_failed(verdict_with(&chart, &Related { jobs: &done, ..Related::default() }), "Error: chart not found");
}

// --- explain

#[test]
fn explain_names_every_object_not_ready() {
    let web = deployment(1, json!({"replicas": 1, "updatedReplicas": 1, "availableReplicas": 0}));
    let crd = crd(json!([]));
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "ns"}});
    let p = pod(
        None,
        json!({"containerStatuses": [{"name": "web", "image": "nginx:nope", "state": {"waiting": {"reason": "ImagePullBackOff"}}}]}),
    );
    let items = [(&web, verdict(&web)), (&cm, verdict(&cm)), (&crd, verdict(&crd)), (&p, verdict(&p))];
    assert_eq!(
        explain(&items),
        "Deployment ns/x: 0/1 available\n\
         CustomResourceDefinition widgets.example.com: not yet established\n\
         Pod ns/p: container web: ImagePullBackOff (image nginx:nope)"
    );
    assert_eq!(explain(&[(&cm, Verdict::Ready)]), "");
}

#[test]
fn verdict_helpers_and_display() {
    assert!(Verdict::Ready.is_ready());
    assert!(!Verdict::Ready.is_failed());
    assert_eq!(Verdict::Ready.reason(), "");
    assert_eq!(Verdict::InProgress { reason: "r".into() }.to_string(), "in progress: r");
    assert_eq!(Verdict::Failed { reason: "r".into() }.to_string(), "failed: r");
    assert!(Verdict::Failed { reason: "r".into() }.is_failed());
}

#[test]
fn verdicts_map_to_health_with_their_reason() {
    use crate::health::Health;
    let failed = Verdict::Failed { reason: "container web: ImagePullBackOff".into() };
    let c = failed.child("Pod a/web");
    assert_eq!((c.subject.as_str(), c.health, c.reason.as_str()), ("Pod a/web", Health::Degraded, "container web: ImagePullBackOff"));
    assert_eq!(Verdict::Ready.health(), Health::Healthy);
    assert_eq!(Verdict::InProgress { reason: "x".into() }.health(), Health::Progressing);
    assert_eq!(Verdict::Ready.child("ConfigMap a/c").reason, "");
}

#[test]
fn static_kinds_are_built_in_ones_without_a_status_to_judge() {
    for (api_version, kind) in [
        ("v1", "ConfigMap"),
        ("v1", "Secret"),
        ("v1", "ServiceAccount"),
        ("rbac.authorization.k8s.io/v1", "ClusterRole"),
        ("scheduling.k8s.io/v1", "PriorityClass"),
    ] {
        assert!(is_static(api_version, kind), "{api_version} {kind}");
    }
    for (api_version, kind) in [
        ("apps/v1", "Deployment"),
        ("v1", "Service"),
        ("v1", "PersistentVolumeClaim"),
        ("v1", "Namespace"),
        ("example.com/v1", "ConfigMap"),
        ("kyverno.io/v1", "ClusterPolicy"),
        ("argoproj.io/v1alpha1", "Application"),
    ] {
        assert!(!is_static(api_version, kind), "{api_version} {kind} has a status to judge");
    }
}
