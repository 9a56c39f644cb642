//! Every object `idp-lab render` produces, for every profile, passes a server-side dry-run
//! against the real control plane with the platform's CRD fixtures installed.

use std::time::Instant;

use idp_test::crds::control_plane_with_crd_fixtures;
use idp_test::{Need, require};
use kube::api::{Api, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::discovery::{Scope, pinned_kind};
use serde_json::Value;

use crate::support::took;

#[tokio::test]
async fn every_rendered_object_passes_a_server_side_dry_run() {
    let _testbed = require!(Need::KubeBinaries, Need::SharedFixtures, Need::PythonYaml);
    let start = Instant::now();
    let (cp, _) = control_plane_with_crd_fixtures().await.expect("a control plane with the CRD fixtures");
    took("control plane with CRD fixtures", start);

    let client = cp.client();
    let apply = PatchParams::apply("idp-lab").force();
    let dry_run = PatchParams::apply("idp-lab").force().dry_run();
    let mut failures = Vec::new();
    let mut checked = 0;
    for (profile, rendered) in idp_test::render::every_profile().expect("every profile renders") {
        // Namespaced objects need their namespace to exist, even for a dry run: apply the
        // rendered Namespaces for real first (this cluster is thrown away).
        let mut objects: Vec<&Value> = rendered.objects().map(|(_, o)| o).collect();
        objects.sort_by_key(|o| o["kind"] != "Namespace");
        for object in objects {
            let is_namespace = object["kind"] == "Namespace";
            let what =
                format!("{profile}: {} {}", object["kind"].as_str().unwrap_or("?"), object["metadata"]["name"].as_str().unwrap_or("?"));
            let dynamic: DynamicObject = match serde_json::from_value(object.clone()) {
                Ok(d) => d,
                Err(e) => {
                    failures.push(format!("{what}: not an object: {e}"));
                    continue;
                }
            };
            let Some(gvk) = dynamic.types.as_ref().and_then(|t| GroupVersionKind::try_from(t).ok()) else {
                failures.push(format!("{what}: no apiVersion/kind"));
                continue;
            };
            let (resource, caps) = match pinned_kind(&client, &gvk).await {
                Ok(found) => found,
                Err(e) => {
                    failures.push(format!("{what}: the API server does not serve {}/{}: {e}", gvk.group, gvk.kind));
                    continue;
                }
            };
            let name = dynamic.metadata.name.clone().unwrap_or_default();
            let api: Api<DynamicObject> = match (caps.scope, dynamic.metadata.namespace.as_deref()) {
                (Scope::Namespaced, Some(ns)) => Api::namespaced_with(client.clone(), ns, &resource),
                (Scope::Namespaced, None) => {
                    failures.push(format!("{what}: namespaced kind without metadata.namespace"));
                    continue;
                }
                (Scope::Cluster, _) => Api::all_with(client.clone(), &resource),
            };
            let params = if is_namespace { &apply } else { &dry_run };
            match api.patch(&name, params, &Patch::Apply(&dynamic)).await {
                Ok(_) => checked += 1,
                Err(e) => failures.push(format!("{what}: {e}")),
            }
        }
    }
    took(&format!("{checked} rendered objects dry-run"), start);
    assert!(failures.is_empty(), "{} rendered objects fail a server-side dry-run:\n{}", failures.len(), failures.join("\n"));
    assert!(checked > 200, "only {checked} objects were checked");
}
