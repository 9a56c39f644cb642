//! The playbook actions against the test bed's real control plane (kube-apiserver 1.20.2
//! with etcd; no kubelet and no controllers, so nothing rolls out or syncs: the tests read
//! back exactly what each action wrote). Argo CD's Application and ESO's ExternalSecret
//! come from the shared CRD fixtures; Argo Workflows' CRDs are not among them (its chart
//! holds them only as templates), so its two kinds come from upstream's "minimal" CRDs
//! (schemaless `spec` and `status`), `idp_test::crds::argo_workflows_minimal_crds`.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use idp_core::config::{NamespacedName, ObjectRef};
use idp_kube::actions::{FORCE_SYNC_ANNOTATION, RESTARTED_AT_ANNOTATION};
use idp_kube::{Cluster, KubeError};
use idp_test::crds::{apply_crds, argo_workflows_minimal_crds, downlevel_crds};
use idp_test::poll::{Attempt, poll_until};
use idp_test::{ControlPlane, Need, require, testbed};
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

async fn connect(cp: &ControlPlane) -> Cluster {
    Cluster::from_kubeconfig(cp.kubeconfig(), None).await.expect("a client for the control plane")
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

/// `kubectl apply -f -` of `yaml`.
fn kubectl_apply(cp: &ControlPlane, yaml: &str) {
    let mut command: Command = cp.kubectl();
    let mut child = command
        .args(["apply", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    child.stdin.take().expect("kubectl's stdin").write_all(yaml.as_bytes()).expect("kubectl reads the YAML");
    let out = child.wait_with_output().expect("kubectl ends");
    assert!(out.status.success(), "kubectl apply: {}", String::from_utf8_lossy(&out.stderr));
}

fn object(s: &str) -> ObjectRef {
    ObjectRef::parse(s).expect("a valid Kind/namespace/name")
}

fn named(s: &str) -> NamespacedName {
    NamespacedName::parse(s, None).expect("a valid namespace/name")
}

/// Whether field manager `idp-lab` owns a field whose path holds `field` (e.g.
/// `f:kubectl.kubernetes.io/restartedAt`), as an `Update` (a patch or a create).
fn idp_lab_manages(live: &Value, field: &str) -> bool {
    live.pointer("/metadata/managedFields").and_then(Value::as_array).is_some_and(|entries| {
        entries
            .iter()
            .any(|e| e["manager"] == "idp-lab" && e["operation"] == "Update" && e["fieldsV1"].to_string().contains(&format!("\"{field}\"")))
    })
}

/// Waits until the next whole second, so that a second write of a time differs from the
/// first (both are written to the second).
async fn next_second() {
    let now = Timestamp::now();
    let rest = 1_000_000_000 - i64::from(now.subsec_nanosecond());
    tokio::time::sleep(Duration::from_nanos(u64::try_from(rest).unwrap_or(0) + 10_000_000)).await;
}

/// A control plane with `fixtures` (files under the shared CRD fixtures, downlevelled for
/// 1.20) and `extra` CRDs installed, each established and discoverable.
async fn control_plane_with(fixtures: &[&str], extra: Vec<Value>) -> ControlPlane {
    let testbed = testbed();
    let script = testbed.script("downlevel-crds.py");
    let paths: Vec<_> = fixtures.iter().map(|f| testbed.crd_fixtures_dir().join(f)).collect();
    let (cp, downlevelled) = tokio::join!(
        ControlPlane::start_without_controller_manager(),
        futures::future::join_all(paths.iter().map(|p| downlevel_crds(&script, p)))
    );
    let cp = cp.expect("control plane");
    let mut crds = extra;
    for one in downlevelled {
        crds.extend(one.expect("downlevelled CRDs"));
    }
    if !crds.is_empty() {
        apply_crds(&cp.client(), &crds).await.expect("the CRDs are installed");
    }
    cp
}

const WORKLOADS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}, annotations: {team: payments}}
    spec: {containers: [{name: web, image: "nginx:1.25"}]}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: shop}
spec:
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec: {containers: [{name: db, image: "postgres:16"}]}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent, namespace: shop}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec: {containers: [{name: agent, image: "fluent/fluent-bit:4.0"}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: frozen, namespace: shop}
spec:
  paused: true
  selector: {matchLabels: {app: frozen}}
  template:
    metadata: {labels: {app: frozen}}
    spec: {containers: [{name: frozen, image: "nginx:1.25"}]}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: shop}
data: {mode: fast}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: home, namespace: default}
spec:
  selector: {matchLabels: {app: home}}
  template:
    metadata: {labels: {app: home}}
    spec: {containers: [{name: home, image: "nginx:1.25"}]}
"#;

/// `rollout_restart` sets the pod template's `restartedAt` on each of the three workload
/// kinds (RFC 3339, between before and after the call, as idp-lab's change), keeps the
/// template's other annotations, bumps the generation, and sets a newer time when asked
/// again; an object without a namespace is the context's default namespace's.
#[tokio::test]
async fn rollout_restart_stamps_the_pod_template_of_each_workload_kind() {
    let _testbed = require!(Need::KubeBinaries);
    let cp = control_plane_with(&[], Vec::new()).await;
    kubectl_apply(&cp, WORKLOADS);
    let cluster = connect(&cp).await;

    for (kind, name, resource) in
        [("Deployment", "web", "deployment"), ("StatefulSet", "db", "statefulset"), ("DaemonSet", "agent", "daemonset")]
    {
        let before = Timestamp::now().as_second();
        let said = cluster.rollout_restart(&object(&format!("{kind}/shop/{name}"))).await.expect("the restart");
        let after = Timestamp::now().as_second();
        let live = kubectl_json(&cp, &["get", "-n", "shop", resource, name]);
        let at = live["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT_ANNOTATION].as_str().expect("restartedAt is set");
        let parsed: Timestamp = at.parse().expect("restartedAt is RFC 3339");
        assert!((before..=after).contains(&parsed.as_second()), "{kind}: {at} is not between {before} and {after}");
        assert_eq!(said, format!("restarted {kind} shop/{name} ({RESTARTED_AT_ANNOTATION}={at})"));
        assert_eq!(live["metadata"]["generation"], 2, "{kind}: the template changed once");
        assert!(idp_lab_manages(&live, &format!("f:{RESTARTED_AT_ANNOTATION}")), "{kind}: {}", live["metadata"]["managedFields"]);
    }
    let web = kubectl_json(&cp, &["get", "-n", "shop", "deployment", "web"]);
    assert_eq!(web["spec"]["template"]["metadata"]["annotations"]["team"], "payments", "other annotations stay");

    // Again, a second later: a newer time, another rollout.
    let first = web["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT_ANNOTATION].clone();
    next_second().await;
    cluster.rollout_restart(&object("Deployment/shop/web")).await.expect("the second restart");
    let web = kubectl_json(&cp, &["get", "-n", "shop", "deployment", "web"]);
    let second = &web["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT_ANNOTATION];
    let (first, second): (Timestamp, Timestamp) =
        (first.as_str().expect("a string").parse().expect("RFC 3339"), second.as_str().expect("a string").parse().expect("RFC 3339"));
    assert!(second > first, "{second} is after {first}");
    assert_eq!(web["metadata"]["generation"], 3);

    // No namespace: the kubeconfig context's (the test bed's names none: `default`).
    let said = cluster.rollout_restart(&object("Deployment/home")).await.expect("the restart in the default namespace");
    assert!(said.starts_with("restarted Deployment default/home ("), "{said}");
    let home = kubectl_json(&cp, &["get", "-n", "default", "deployment", "home"]);
    assert!(home["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT_ANNOTATION].is_string());
}

/// `rollout_restart` refuses any other kind (naming the three it takes) and a paused
/// Deployment, and names an object that does not exist; none of them is changed.
#[tokio::test]
async fn rollout_restart_refuses_other_kinds_paused_and_missing_workloads() {
    let _testbed = require!(Need::KubeBinaries);
    let cp = control_plane_with(&[], Vec::new()).await;
    kubectl_apply(&cp, WORKLOADS);
    let cluster = connect(&cp).await;

    let settings = kubectl_json(&cp, &["get", "-n", "shop", "configmap", "settings"]);
    let error = cluster.rollout_restart(&object("ConfigMap/shop/settings")).await.expect_err("a ConfigMap cannot be restarted");
    assert!(matches!(error, KubeError::Cannot { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        "cannot rollout restart ConfigMap/shop/settings: only a Deployment, StatefulSet or DaemonSet (apps/v1) can be restarted, not a ConfigMap"
    );
    let after = kubectl_json(&cp, &["get", "-n", "shop", "configmap", "settings"]);
    assert_eq!(after["metadata"]["resourceVersion"], settings["metadata"]["resourceVersion"], "the ConfigMap is untouched");

    let error = cluster.rollout_restart(&object("Deployment/shop/nope")).await.expect_err("no such Deployment");
    assert!(matches!(error, KubeError::NotFound { .. }), "{error:?}");
    assert_eq!(error.to_string(), format!("Deployment shop/nope does not exist on {}", cluster.server()));
    let error = cluster.rollout_restart(&object("StatefulSet/elsewhere/db")).await.expect_err("no StatefulSet db in namespace elsewhere");
    assert_eq!(error.to_string(), format!("StatefulSet elsewhere/db does not exist on {}", cluster.server()));

    let error = cluster.rollout_restart(&object("Deployment/shop/frozen")).await.expect_err("a paused Deployment");
    assert!(matches!(error, KubeError::Cannot { .. }), "{error:?}");
    assert!(error.to_string().contains("it is paused; resume it first"), "{error}");
    let frozen = kubectl_json(&cp, &["get", "-n", "shop", "deployment", "frozen"]);
    assert!(frozen.pointer("/spec/template/metadata/annotations").is_none(), "{}", frozen["spec"]["template"]);
    assert_eq!(frozen["metadata"]["generation"], 1);
}

/// On a cluster without Argo CD, ESO or Argo Workflows, their actions say which kind is
/// not served instead of failing on a 404.
#[tokio::test]
async fn actions_on_kinds_the_cluster_does_not_serve_name_the_kind() {
    let _testbed = require!(Need::KubeBinaries);
    let cp = control_plane_with(&[], Vec::new()).await;
    let cluster = connect(&cp).await;
    let server = cluster.server().to_owned();

    let error = cluster.sync_application(&named("argocd/guestbook")).await.expect_err("no Application CRD");
    assert!(matches!(&error, KubeError::NotServed { kinds, .. } if kinds == &["Application argoproj.io/v1alpha1"]), "{error:?}");
    assert!(error.to_string().starts_with(&format!("{server} does not serve Application argoproj.io/v1alpha1")), "{error}");

    let error = cluster.refresh_external_secret(&named("grafana/admin")).await.expect_err("no ExternalSecret CRD");
    assert!(
        matches!(&error, KubeError::NotServed { kinds, .. } if kinds == &["ExternalSecret external-secrets.io/v1 or v1beta1"]),
        "{error:?}"
    );

    let error = cluster.submit_workflow(&named("cicd/remediate"), &BTreeMap::new()).await.expect_err("no WorkflowTemplate CRD");
    assert!(matches!(&error, KubeError::NotServed { kinds, .. } if kinds == &["WorkflowTemplate argoproj.io/v1alpha1"]), "{error:?}");
}

const APPLICATIONS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: argocd}
---
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: guestbook, namespace: argocd}
spec:
  project: default
  destination: {server: "https://kubernetes.default.svc", namespace: guestbook}
  source: {repoURL: "https://github.com/argoproj/argocd-example-apps.git", path: guestbook, targetRevision: v1.2.3}
  syncPolicy:
    syncOptions: [CreateNamespace=true, ServerSideApply=true]
    retry: {limit: 3, backoff: {duration: 5s, factor: 2, maxDuration: 1m}}
status:
  operationState:
    operation: {sync: {revision: 0123abc}}
    phase: Succeeded
    message: successfully synced (all tasks run)
    startedAt: "2026-01-01T00:00:00Z"
    finishedAt: "2026-01-01T00:00:10Z"
---
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: bare, namespace: argocd}
spec:
  project: default
  destination: {server: "https://kubernetes.default.svc", namespace: bare}
  source: {repoURL: "https://github.com/argoproj/argocd-example-apps.git", path: guestbook}
---
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: busy, namespace: argocd}
spec:
  project: default
  destination: {server: "https://kubernetes.default.svc", namespace: busy}
  source: {repoURL: "https://github.com/argoproj/argocd-example-apps.git", path: guestbook, targetRevision: main}
operation:
  initiatedBy: {username: admin}
  sync: {revision: main, prune: true}
status:
  operationState:
    operation: {sync: {revision: main, prune: true}, initiatedBy: {username: admin}}
    phase: Running
    message: one or more tasks are running
    startedAt: "2026-01-01T00:00:00Z"
---
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: leaving, namespace: argocd, finalizers: [resources-finalizer.argocd.argoproj.io]}
spec:
  project: default
  destination: {server: "https://kubernetes.default.svc", namespace: leaving}
  source: {repoURL: "https://github.com/argoproj/argocd-example-apps.git", path: guestbook}
"#;

/// `sync_application` writes the operation `argocd app sync` writes (initiator, the
/// source's target revision, the policy's sync options and retry) and clears the last
/// operation's state, leaving the spec alone. An Application with an operation already
/// (its own, or someone else's running sync) is left exactly as it was, with Argo CD's
/// "another operation is already in progress"; a missing one and one being deleted are
/// refused.
#[tokio::test]
async fn sync_application_sets_the_operation_argocd_app_sync_sets() {
    let _testbed = require!(Need::KubeBinaries, Need::SharedFixtures, Need::PythonYaml);
    let cp = control_plane_with(&["argo-cd/application-crd.yaml"], Vec::new()).await;
    kubectl_apply(&cp, APPLICATIONS);
    let cluster = connect(&cp).await;
    let get = |name: &str| kubectl_json(&cp, &["get", "-n", "argocd", "applications.argoproj.io", name]);

    let before = get("guestbook");
    assert_eq!(before["status"]["operationState"]["phase"], "Succeeded", "the fixture has a finished sync");
    let said = cluster.sync_application(&named("argocd/guestbook")).await.expect("the sync");
    assert_eq!(said, "started a sync of Application argocd/guestbook to v1.2.3");
    let live = get("guestbook");
    assert_eq!(
        live["operation"],
        json!({
            "initiatedBy": {"username": "idp-lab"},
            "sync": {"revision": "v1.2.3", "syncOptions": ["CreateNamespace=true", "ServerSideApply=true"]},
            "retry": {"limit": 3, "backoff": {"duration": "5s", "factor": 2, "maxDuration": "1m"}},
        })
    );
    assert!(live.pointer("/status/operationState").is_none(), "the last operation's state is cleared: {}", live["status"]);
    assert_eq!(live["spec"], before["spec"], "the spec is not touched");
    assert!(idp_lab_manages(&live, "f:operation"), "{}", live["metadata"]["managedFields"]);

    // Asked again while its own sync waits for the controller: refused, nothing written.
    let error = cluster.sync_application(&named("argocd/guestbook")).await.expect_err("a sync is in progress");
    assert!(matches!(error, KubeError::OperationInProgress { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        "cannot sync Application argocd/guestbook: another operation is already in progress (a sync started by idp-lab, \
         not picked up by the controller yet); wait until it ends, or terminate it"
    );
    let again = get("guestbook");
    assert_eq!(again["metadata"]["resourceVersion"], live["metadata"]["resourceVersion"], "nothing was written");

    // Someone else's running sync: left exactly as it is.
    let busy = get("busy");
    let error = cluster.sync_application(&named("argocd/busy")).await.expect_err("admin's sync is running");
    assert!(error.to_string().contains("another operation is already in progress (a sync started by admin, Running)"), "{error}");
    assert_eq!(get("busy"), busy, "the busy Application is untouched");

    // No target revision, no sync policy: a bare sync (Argo CD omits the empty revision).
    let said = cluster.sync_application(&named("argocd/bare")).await.expect("the bare sync");
    assert_eq!(said, "started a sync of Application argocd/bare to its target revision");
    assert_eq!(get("bare")["operation"], json!({"initiatedBy": {"username": "idp-lab"}, "sync": {}}));

    let error = cluster.sync_application(&named("argocd/nope")).await.expect_err("no such Application");
    assert!(matches!(error, KubeError::NotFound { .. }), "{error:?}");
    assert_eq!(error.to_string(), format!("Application argocd/nope does not exist on {}", cluster.server()));

    // Being deleted (its finalizer holds it): refused, as Argo CD refuses it.
    kubectl(&cp, &["delete", "-n", "argocd", "applications.argoproj.io", "leaving", "--wait=false"]);
    let error = cluster.sync_application(&named("argocd/leaving")).await.expect_err("the Application is being deleted");
    assert_eq!(error.to_string(), "cannot sync Application argocd/leaving: it is being deleted");
    assert!(get("leaving").get("operation").is_none());
}

const EXTERNAL_SECRET: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: grafana}
---
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {name: admin, namespace: grafana, annotations: {team: observability}}
spec:
  refreshInterval: 1h
  secretStoreRef: {kind: ClusterSecretStore, name: vault}
  target: {name: grafana-admin}
  data: [{secretKey: password, remoteRef: {key: grafana/admin, property: password}}]
"#;

/// The ExternalSecrets CRD serves `versions`, as far as discovery tells.
async fn serve_external_secrets(cp: &ControlPlane, v1: bool, v1beta1: bool) {
    let patch = json!([
        {"op": "test", "path": "/spec/versions/0/name", "value": "v1"},
        {"op": "replace", "path": "/spec/versions/0/served", "value": v1},
        {"op": "test", "path": "/spec/versions/1/name", "value": "v1beta1"},
        {"op": "replace", "path": "/spec/versions/1/served", "value": v1beta1},
    ]);
    kubectl(cp, &["patch", "crd", "externalsecrets.external-secrets.io", "--type=json", "-p", &patch.to_string()]);
    let client = cp.client();
    poll_until("discovery of the ExternalSecret versions", Duration::from_secs(60), || {
        let client = client.clone();
        async move {
            let mut seen = Vec::new();
            for (version, wanted) in [("v1", v1), ("v1beta1", v1beta1)] {
                let served = client
                    .list_api_group_resources(&format!("external-secrets.io/{version}"))
                    .await
                    .is_ok_and(|list| list.resources.iter().any(|r| r.name == "externalsecrets"));
                if served != wanted {
                    seen.push(format!("{version} served: {served}"));
                }
            }
            Ok(if seen.is_empty() { Attempt::Done(()) } else { Attempt::Retry(seen.join(", ")) })
        }
    })
    .await
    .expect("discovery follows the CRD");
}

/// `refresh_external_secret` sets `force-sync` to the Unix time (overwriting it when
/// asked again), keeps the other annotations, names a missing ExternalSecret, and takes
/// the version discovery finds: `v1` while it is served (also beside `v1beta1`), else
/// `v1beta1`.
#[tokio::test]
async fn refresh_external_secret_annotates_force_sync_at_the_served_version() {
    let _testbed = require!(Need::KubeBinaries, Need::SharedFixtures, Need::PythonYaml);
    let cp = control_plane_with(&["external-secrets/external-secrets.io_externalsecrets.yaml"], Vec::new()).await;
    kubectl_apply(&cp, EXTERNAL_SECRET);
    let cluster = connect(&cp).await;
    let get =
        |version: &str| kubectl_json(&cp, &["get", "-n", "grafana", &format!("externalsecrets.{version}.external-secrets.io"), "admin"]);
    let force_sync = |live: &Value| -> i64 {
        live["metadata"]["annotations"][FORCE_SYNC_ANNOTATION].as_str().expect("force-sync is set").parse().expect("Unix seconds")
    };

    let before = Timestamp::now().as_second();
    let said = cluster.refresh_external_secret(&named("grafana/admin")).await.expect("the refresh");
    let after = Timestamp::now().as_second();
    let live = get("v1");
    let first = force_sync(&live);
    assert!((before..=after).contains(&first), "{first} is not between {before} and {after}");
    assert_eq!(said, format!("asked ExternalSecret grafana/admin (external-secrets.io/v1) to sync now (force-sync={first})"));
    assert_eq!(live["metadata"]["annotations"]["team"], "observability", "other annotations stay");
    assert!(idp_lab_manages(&live, &format!("f:{FORCE_SYNC_ANNOTATION}")), "{}", live["metadata"]["managedFields"]);

    next_second().await;
    cluster.refresh_external_secret(&named("grafana/admin")).await.expect("the second refresh");
    let second = force_sync(&get("v1"));
    assert!(second > first, "overwritten: {second} after {first}");

    let error = cluster.refresh_external_secret(&named("grafana/nope")).await.expect_err("no such ExternalSecret");
    assert!(matches!(error, KubeError::NotFound { .. }), "{error:?}");
    assert_eq!(error.to_string(), format!("ExternalSecret grafana/nope does not exist on {}", cluster.server()));

    // ESO 0.20 serves v1 and v1beta1: v1 is taken.
    serve_external_secrets(&cp, true, true).await;
    let said = cluster.refresh_external_secret(&named("grafana/admin")).await.expect("the refresh with both versions served");
    assert!(said.contains("(external-secrets.io/v1)"), "{said}");

    // Only v1beta1 served (an older ESO): v1beta1 is taken, and the annotation lands.
    serve_external_secrets(&cp, false, true).await;
    next_second().await;
    let said = cluster.refresh_external_secret(&named("grafana/admin")).await.expect("the refresh at v1beta1");
    let live = get("v1beta1");
    let third = force_sync(&live);
    assert_eq!(said, format!("asked ExternalSecret grafana/admin (external-secrets.io/v1beta1) to sync now (force-sync={third})"));
    assert!(third > second, "{third} after {second}");
}

const WORKFLOW_TEMPLATE: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: cicd}
---
apiVersion: argoproj.io/v1alpha1
kind: WorkflowTemplate
metadata: {name: remediate, namespace: cicd}
spec:
  entrypoint: main
  arguments:
    parameters: [{name: reason}, {name: service, value: unknown}]
  templates:
  - name: main
    container: {image: "alpine:3.20", command: [echo, "{{workflow.parameters.reason}} {{workflow.parameters.service}}"]}
"#;

/// `submit_workflow` creates the Workflow `argo submit --from workflowtemplate/NAME -p
/// k=v` creates (generated name, template label, `workflowTemplateRef`, the parameters in
/// name order; no arguments without parameters) and returns its name; a WorkflowTemplate
/// that does not exist (also: in another namespace) is named and nothing is created.
#[tokio::test]
async fn submit_workflow_creates_a_workflow_from_the_template() {
    let _testbed = require!(Need::KubeBinaries);
    let cp = control_plane_with(&[], argo_workflows_minimal_crds()).await;
    kubectl_apply(&cp, WORKFLOW_TEMPLATE);
    let cluster = connect(&cp).await;
    let template = named("cicd/remediate");

    let parameters = BTreeMap::from([("service".to_owned(), "web".to_owned()), ("reason".to_owned(), "slo-burn".to_owned())]);
    let name = cluster.submit_workflow(&template, &parameters).await.expect("the submission");
    assert!(name.starts_with("remediate-") && name.len() > "remediate-".len(), "{name}");
    let live = kubectl_json(&cp, &["get", "-n", "cicd", "workflows.argoproj.io", &name]);
    assert_eq!(live["metadata"]["generateName"], "remediate-");
    assert_eq!(live["metadata"]["labels"], json!({"workflows.argoproj.io/workflow-template": "remediate"}));
    assert_eq!(
        live["spec"],
        json!({
            "workflowTemplateRef": {"name": "remediate"},
            "arguments": {"parameters": [{"name": "reason", "value": "slo-burn"}, {"name": "service", "value": "web"}]},
        })
    );
    assert!(idp_lab_manages(&live, "f:workflowTemplateRef"), "{}", live["metadata"]["managedFields"]);

    let bare = cluster.submit_workflow(&template, &BTreeMap::new()).await.expect("the submission without parameters");
    assert_ne!(bare, name, "each submission is a new Workflow");
    let live = kubectl_json(&cp, &["get", "-n", "cicd", "workflows.argoproj.io", &bare]);
    assert_eq!(live["spec"], json!({"workflowTemplateRef": {"name": "remediate"}}));

    for (missing, namespace) in [("cicd/nope", "cicd"), ("default/remediate", "default")] {
        let error = cluster.submit_workflow(&named(missing), &parameters).await.expect_err("no such WorkflowTemplate");
        assert!(matches!(error, KubeError::NotFound { .. }), "{error:?}");
        let (ns, n) = missing.split_once('/').expect("namespace/name");
        assert_eq!(error.to_string(), format!("WorkflowTemplate {ns}/{n} does not exist on {}", cluster.server()));
        let list = kubectl_json(&cp, &["get", "-n", namespace, "workflows.argoproj.io"]);
        let count = list["items"].as_array().map(Vec::len);
        assert_eq!(count, Some(if namespace == "cicd" { 2 } else { 0 }), "nothing was created in {namespace}");
    }
}
