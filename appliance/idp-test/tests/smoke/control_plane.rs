//! The throwaway control plane: CRD fixtures, controllers, namespace lifecycle, kubectl.

use std::time::{Duration, Instant};

use idp_test::crds::{FIELD_MANAGER, control_plane_with_crd_fixtures};
use idp_test::poll::{Attempt, poll_until};
use idp_test::{ControlPlane, Need, require};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams};
use kube::discovery::{Scope, pinned_kind};
use serde_json::{Value, json};

use crate::support::{assert_subset, took};

/// One custom resource per platform component whose CRDs the fixtures hold.
fn custom_resources() -> Vec<Value> {
    vec![
        json!({
            "apiVersion": "helm.cattle.io/v1", "kind": "HelmChart",
            "metadata": {"name": "traefik", "namespace": "default"},
            "spec": {"chart": "traefik", "repo": "https://traefik.github.io/charts",
                     "version": "30.0.0", "targetNamespace": "traefik", "valuesContent": "ports:\n  web: 8000\n"}
        }),
        json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": "edge", "namespace": "default"},
            "spec": {"gatewayClassName": "idp-lab",
                     "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}
        }),
        json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
            "metadata": {"name": "apps", "namespace": "default"},
            "spec": {"project": "default",
                     "source": {"repoURL": "https://example.invalid/platform.git", "path": "apps", "targetRevision": "HEAD"},
                     "destination": {"server": "https://kubernetes.default.svc", "namespace": "apps"}}
        }),
        json!({
            "apiVersion": "kyverno.io/v1", "kind": "ClusterPolicy",
            "metadata": {"name": "require-team-label"},
            "spec": {"background": true, "rules": [{
                "name": "require-team-label",
                "match": {"any": [{"resources": {"kinds": ["Pod"]}}]},
                "validate": {"message": "pods need a team label",
                             "pattern": {"metadata": {"labels": {"team": "?*"}}}}
            }]}
        }),
        json!({
            "apiVersion": "pyrra.dev/v1alpha1", "kind": "ServiceLevelObjective",
            "metadata": {"name": "api-errors", "namespace": "default"},
            "spec": {"target": "99.5", "window": "28d", "description": "API availability",
                     "indicator": {"ratio": {
                         "errors": {"metric": "http_requests_total{code=~\"5..\"}"},
                         "total": {"metric": "http_requests_total"}}}}
        }),
    ]
}

#[tokio::test]
async fn crd_fixtures_are_accepted_and_custom_resources_round_trip() {
    let _testbed = require!(Need::KubeBinaries, Need::SharedFixtures, Need::PythonYaml);
    let start = Instant::now();
    let (cp, installed) = control_plane_with_crd_fixtures().await.expect("a control plane with the CRD fixtures");
    took(&format!("control plane ready, {} CRDs applied, established and discoverable", installed.names.len()), start);
    assert!(installed.names.len() >= 40, "expected the full fixture set, got {:?}", installed.names);
    for crd in [
        "helmcharts.helm.cattle.io",
        "gateways.gateway.networking.k8s.io",
        "applications.argoproj.io",
        "clusterpolicies.kyverno.io",
        "servicelevelobjectives.pyrra.dev",
    ] {
        assert!(installed.names.contains(crd), "{crd} was not installed: {:?}", installed.names);
    }

    let step = Instant::now();
    let client = cp.client();
    let apply = PatchParams::apply(FIELD_MANAGER).force();
    for wanted in custom_resources() {
        let object: DynamicObject = serde_json::from_value(wanted.clone()).expect("a well-formed object");
        let types = object.types.clone().expect("apiVersion and kind are set");
        let gvk = GroupVersionKind::try_from(&types).expect("a group/version apiVersion");
        let (resource, caps): (ApiResource, _) =
            pinned_kind(&client, &gvk).await.unwrap_or_else(|e| panic!("discovery does not know {gvk:?}: {e}"));
        let name = object.metadata.name.clone().expect("a name");
        let api: Api<DynamicObject> = match caps.scope {
            Scope::Namespaced => Api::namespaced_with(client.clone(), "default", &resource),
            Scope::Cluster => Api::all_with(client.clone(), &resource),
        };
        api.patch(&name, &apply, &Patch::Apply(&object))
            .await
            .unwrap_or_else(|e| panic!("server-side apply of {} {name} failed: {e}", gvk.kind));
        let read = api.get(&name).await.unwrap_or_else(|e| panic!("{} {name} cannot be read back: {e}", gvk.kind));
        let read = serde_json::to_value(&read).expect("serializable");
        assert_subset(&wanted["spec"], &read["spec"], &format!("{}.spec", gvk.kind));
        let managers = read["metadata"]["managedFields"].as_array().cloned().unwrap_or_default();
        assert!(
            managers.iter().any(|m| m["manager"] == FIELD_MANAGER && m["operation"] == "Apply"),
            "{} {name} is not managed by {FIELD_MANAGER}: {managers:?}",
            gvk.kind
        );
    }
    took("5 custom resources applied and read back", step);
}

#[tokio::test]
async fn a_deployment_gets_its_replica_set_from_the_controller_manager() {
    let _testbed = require!(Need::KubeBinaries);
    let start = Instant::now();
    let cp = ControlPlane::start().await.expect("the control plane starts");
    took("control plane ready", start);

    let deployments: Api<Deployment> = Api::namespaced(cp.client(), "default");
    let deployment: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}
    }))
    .expect("a valid Deployment");
    let created = deployments
        .patch("web", &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&deployment))
        .await
        .expect("the Deployment is applied");
    let uid = created.metadata.uid.expect("the API server assigns a uid");

    let step = Instant::now();
    let replica_sets: Api<ReplicaSet> = Api::namespaced(cp.client(), "default");
    let (cp_ref, rs_api, uid_ref) = (&cp, &replica_sets, &uid);
    let owned = poll_until("a ReplicaSet owned by Deployment web", Duration::from_secs(90), || async move {
        cp_ref.ensure_running()?;
        let list = rs_api.list(&ListParams::default().labels("app=web")).await?;
        let owned: Vec<ReplicaSet> = list
            .items
            .into_iter()
            .filter(|rs| rs.metadata.owner_references.iter().flatten().any(|o| o.kind == "Deployment" && &o.uid == uid_ref))
            .collect();
        Ok(if owned.is_empty() { Attempt::Retry("no owned ReplicaSet yet".into()) } else { Attempt::Done(owned) })
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", cp.log_tails(15)));
    took("ReplicaSet created by the deployment controller", step);
    assert_eq!(owned.len(), 1, "exactly one ReplicaSet for one template");
    assert_eq!(owned[0].spec.as_ref().and_then(|s| s.replicas), Some(2));
}

#[tokio::test]
async fn a_namespace_deletion_completes() {
    let _testbed = require!(Need::KubeBinaries);
    let start = Instant::now();
    let cp = ControlPlane::start().await.expect("the control plane starts");
    took("control plane ready", start);

    let apply = PatchParams::apply(FIELD_MANAGER).force();
    let namespaces: Api<Namespace> = Api::all(cp.client());
    let ns: Namespace = serde_json::from_value(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "doomed"}}))
        .expect("a valid Namespace");
    namespaces.patch("doomed", &apply, &Patch::Apply(&ns)).await.expect("the namespace is created");
    let config_maps: Api<ConfigMap> = Api::namespaced(cp.client(), "doomed");
    let cm: ConfigMap = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "content"}, "data": {"k": "v"}
    }))
    .expect("a valid ConfigMap");
    config_maps.patch("content", &apply, &Patch::Apply(&cm)).await.expect("the namespace gets content");

    let step = Instant::now();
    namespaces.delete("doomed", &DeleteParams::default()).await.expect("the deletion is accepted");
    let (cp_ref, ns_api) = (&cp, &namespaces);
    poll_until("namespace doomed to disappear", Duration::from_secs(120), || async move {
        cp_ref.ensure_running()?;
        Ok(match ns_api.get_opt("doomed").await? {
            None => Attempt::Done(()),
            Some(ns) => Attempt::Retry(format!("phase {:?}", ns.status.and_then(|s| s.phase))),
        })
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", cp.log_tails(15)));
    took("namespace deletion completed", step);
}

#[tokio::test]
async fn the_version_matched_kubectl_talks_to_it() {
    let _testbed = require!(Need::KubeBinaries);
    let start = Instant::now();
    let cp = ControlPlane::start_without_controller_manager().await.expect("the control plane starts");
    took("control plane ready", start);
    let version = cp.client().apiserver_version().await.expect("/version answers");
    assert_eq!((version.major.as_str(), version.minor.as_str()), ("1", "20"), "{version:?}");

    let out = tokio::process::Command::from(cp.kubectl()).args(["get", "namespaces", "-o", "name"]).output().await.expect("kubectl runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "kubectl failed: {}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.lines().any(|l| l == "namespace/default"), "{stdout}");

    let step = Instant::now();
    drop(cp);
    took("control plane stopped", step);
}
