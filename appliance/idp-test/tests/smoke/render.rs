//! Every object `idp-lab render` produces, for every profile, passes a server-side dry-run
//! against the real control plane with the platform's CRD fixtures installed: what idp-lab
//! applies (each component's `items`, the Argo CD Applications and the AppProjects among
//! them) and what Argo CD delivers from each stack artifact (`delivered`: ClusterPolicies,
//! RBAC, EventBus/EventSources/Sensors, ExternalSecrets, SLOs, ...).
//!
//! Argo Workflows' CRDs are not among the fixtures, so its WorkflowTemplates are dry-run
//! against upstream's minimal CRDs ([`argo_workflows_minimal_crds`]): schemaless below
//! `spec`, they show the kind is served and namespaced, not that its fields are right.
//!
//! The server's answer must keep every field sent: the 1.20 server ignores
//! `fieldValidation=Strict`, so a misspelled field would otherwise be pruned silently.
//!
//! Argo CD creates no namespaces (no `CreateNamespace=true`), so every namespace an
//! Application or a delivered object lands in must be one the profile renders.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use idp_core::render::Item;
use idp_test::crds::{apply_crds, argo_workflows_minimal_crds, control_plane_with_crd_fixtures};
use idp_test::{Need, require};
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::discovery::{Scope, pinned_kind};
use serde_json::{Value, json};

use crate::support::took;

/// Namespaces every cluster has before anything is applied.
const BUILT_IN_NAMESPACES: [&str; 4] = ["default", "kube-system", "kube-public", "kube-node-lease"];

/// The four governance ClusterPolicies of `embedded/components/kyverno/policies.yaml`.
const CLUSTER_POLICIES: [&str; 4] =
    ["enforce-namespace-labels", "require-component-labels", "audit-business-labels", "audit-namespace-resource-governance"];

/// Server-side apply of objects, dry-run or for real, with the served resource of each
/// kind looked up once.
struct Applier {
    client: Client,
    resources: BTreeMap<(String, String, String), (ApiResource, Scope)>,
}

impl Applier {
    /// Applies `object` (force, field manager `idp-lab`), as a dry run unless `for_real`.
    async fn apply(&mut self, object: &Value, for_real: bool) -> Result<(), String> {
        let dynamic: DynamicObject = serde_json::from_value(object.clone()).map_err(|e| format!("not an object: {e}"))?;
        let gvk = dynamic.types.as_ref().and_then(|t| GroupVersionKind::try_from(t).ok()).ok_or("no apiVersion/kind")?;
        let key = (gvk.group.clone(), gvk.version.clone(), gvk.kind.clone());
        if !self.resources.contains_key(&key) {
            let (resource, caps) = pinned_kind(&self.client, &gvk)
                .await
                .map_err(|e| format!("the API server does not serve {}/{} {}: {e}", gvk.group, gvk.version, gvk.kind))?;
            self.resources.insert(key.clone(), (resource, caps.scope));
        }
        let (resource, scope) = &self.resources[&key];
        let api: Api<DynamicObject> = match (scope, dynamic.metadata.namespace.as_deref()) {
            (Scope::Namespaced, Some(ns)) => Api::namespaced_with(self.client.clone(), ns, resource),
            (Scope::Namespaced, None) => return Err("namespaced kind without metadata.namespace".into()),
            (Scope::Cluster, Some(ns)) => return Err(format!("cluster-scoped kind with metadata.namespace {ns}")),
            (Scope::Cluster, None) => Api::all_with(self.client.clone(), resource),
        };
        let params = if for_real { PatchParams::apply("idp-lab").force() } else { PatchParams::apply("idp-lab").force().dry_run() };
        let name = dynamic.metadata.name.clone().unwrap_or_default();
        let back = api.patch(&name, &params, &Patch::Apply(&dynamic)).await.map_err(|e| e.to_string())?;
        let back = serde_json::to_value(&back).map_err(|e| e.to_string())?;
        let mut lost = Vec::new();
        dropped(object, &back, "", &mut lost);
        // The server writes a Secret's stringData into its data.
        lost.retain(|path| !(object["kind"] == "Secret" && path == ".stringData"));
        if lost.is_empty() { Ok(()) } else { Err(format!("the server drops what it does not know: {}", lost.join(", "))) }
    }
}

/// The fields of `sent` that `back` (the server's answer) lacks, as paths: what the
/// server silently pruned or ignored (the 1.20 server has no `fieldValidation=Strict`, so
/// a misspelled field would otherwise pass). Values the server rewrote (quantities such as
/// `4000m` as `4`) are not compared, and a field sent as its zero value (`false`, `0`,
/// `""`, empty) may be left out, as the server's `omitempty` does.
fn dropped(sent: &Value, back: &Value, path: &str, out: &mut Vec<String>) {
    match (sent, back) {
        (Value::Object(s), Value::Object(b)) => {
            for (k, v) in s {
                let here = format!("{path}.{k}");
                match b.get(k) {
                    Some(bv) => dropped(v, bv, &here, out),
                    None if is_zero(v) => {}
                    None => out.push(here),
                }
            }
        }
        (Value::Array(s), Value::Array(b)) if s.len() == b.len() => {
            for (i, (x, y)) in s.iter().zip(b).enumerate() {
                dropped(x, y, &format!("{path}[{i}]"), out);
            }
        }
        (Value::Array(s), Value::Array(b)) => out.push(format!("{path} ({} items sent, {} kept)", s.len(), b.len())),
        _ => {}
    }
}

fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
    }
}

/// Every (component, namespace, what) where an Application's destination or a delivered
/// object lands in a namespace that `rendered` neither renders nor finds built in.
fn unrendered_landings(rendered: &idp_core::render::Rendered) -> BTreeSet<(String, String, &'static str)> {
    let items: Vec<(&str, &Value)> = rendered.objects().collect();
    let rendered_namespaces: BTreeSet<&str> =
        items.iter().filter(|(_, o)| o["kind"] == "Namespace").filter_map(|(_, o)| o["metadata"]["name"].as_str()).collect();
    let destinations = items
        .iter()
        .filter(|(_, o)| o["kind"] == "Application")
        .filter_map(|(c, o)| Some((*c, o.pointer("/spec/destination/namespace")?.as_str()?, "an Application's destination")));
    let landings = rendered
        .components
        .iter()
        .flat_map(|c| c.delivered.iter().map(move |o| (c.name.as_str(), o)))
        .filter_map(|(c, o)| Some((c, o.pointer("/metadata/namespace")?.as_str()?, "a delivered object")));
    destinations
        .chain(landings)
        .filter(|(_, ns, _)| !rendered_namespaces.contains(ns) && !BUILT_IN_NAMESPACES.contains(ns))
        .map(|(c, ns, what)| (c.to_owned(), ns.to_owned(), what))
        .collect()
}

fn describe(object: &Value) -> String {
    let at = |p: &str| object.pointer(p).and_then(Value::as_str).unwrap_or("?");
    match object.pointer("/metadata/namespace").and_then(Value::as_str) {
        Some(ns) => format!("{} {ns}/{}", at("/kind"), at("/metadata/name")),
        None => format!("{} {}", at("/kind"), at("/metadata/name")),
    }
}

#[tokio::test]
async fn every_rendered_and_delivered_object_passes_a_server_side_dry_run() {
    let _testbed = require!(Need::KubeBinaries, Need::SharedFixtures, Need::PythonYaml);
    let start = Instant::now();
    let (cp, _) = control_plane_with_crd_fixtures().await.expect("a control plane with the CRD fixtures");
    apply_crds(&cp.client(), &argo_workflows_minimal_crds()).await.expect("Argo Workflows' minimal CRDs");
    took("control plane with CRD fixtures", start);

    let mut applier = Applier { client: cp.client(), resources: BTreeMap::new() };
    let mut failures = Vec::new();
    let (mut applied, mut delivered) = (0, 0);
    // (profile, kind, name) of every object that passed, and of every Application and AppProject rendered.
    let mut passed: BTreeSet<(String, String, String)> = BTreeSet::new();
    let mut argo: BTreeSet<(String, String, String)> = BTreeSet::new();
    let mut created_namespaces: BTreeSet<String> = BTreeSet::new();
    for (profile, rendered) in idp_test::render::every_profile().expect("every profile renders") {
        let items: Vec<(&str, &Value)> = rendered.objects().collect();
        let shipped: Vec<(&str, &Value)> =
            rendered.components.iter().flat_map(|c| c.delivered.iter().map(move |o| (c.name.as_str(), o))).collect();
        let key = |o: &Value| {
            let s = |p: &str| o.pointer(p).and_then(Value::as_str).unwrap_or("?").to_owned();
            (profile.clone(), s("/kind"), s("/metadata/name"))
        };
        argo.extend(items.iter().filter(|(_, o)| o["kind"] == "Application" || o["kind"] == "AppProject").map(|(_, o)| key(o)));

        // Namespaced objects need their namespace to exist, even for a dry run: apply the
        // rendered Namespaces for real first (this cluster is thrown away). Argo CD creates
        // none, so a namespace an Application or a delivered object lands in must be
        // rendered; it is created anyway, so that its objects are still checked.
        for (component, namespace) in items.iter().filter(|(_, o)| o["kind"] == "Namespace") {
            match applier.apply(namespace, true).await {
                Ok(()) => created_namespaces.extend(namespace["metadata"]["name"].as_str().map(str::to_owned)),
                Err(e) => failures.push(format!("{profile}: {component}: {}: {e}", describe(namespace))),
            }
        }
        for (component, namespace, what) in unrendered_landings(&rendered) {
            failures.push(format!("{profile}: {component}: {what} lands in namespace {namespace}, which the profile does not render"));
            if created_namespaces.insert(namespace.clone()) {
                let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}});
                applier.apply(&ns, true).await.unwrap_or_else(|e| panic!("namespace {namespace}: {e}"));
            }
        }

        for (component, object) in items.iter().filter(|(_, o)| o["kind"] != "Namespace") {
            match applier.apply(object, false).await {
                Ok(()) => {
                    applied += 1;
                    passed.insert(key(object));
                }
                Err(e) => failures.push(format!("{profile}: {component}: {}: {e}", describe(object))),
            }
        }
        for (component, object) in &shipped {
            match applier.apply(object, false).await {
                Ok(()) => {
                    delivered += 1;
                    passed.insert(key(object));
                }
                Err(e) => failures.push(format!("{profile}: {component} (delivered): {}: {e}", describe(object))),
            }
        }
    }
    took(&format!("{applied} applied and {delivered} delivered objects dry-run"), start);
    assert!(failures.is_empty(), "{} problems with rendered and delivered objects:\n{}", failures.len(), failures.join("\n"));
    assert!(applied > 200, "only {applied} applied objects were checked");
    assert!(delivered > 150, "only {delivered} delivered objects were checked");
    let missing: Vec<_> = argo.difference(&passed).collect();
    assert!(!argo.is_empty() && missing.is_empty(), "Applications and AppProjects not checked: {missing:?}");
    for policy in CLUSTER_POLICIES {
        let k = ("full".to_owned(), "ClusterPolicy".to_owned(), policy.to_owned());
        assert!(passed.contains(&k), "ClusterPolicy {policy} of profile full was not dry-run");
    }
    for kind in ["WorkflowTemplate", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Sensor", "ServiceLevelObjective"] {
        assert!(passed.iter().any(|(p, k, _)| p == "full" && k == kind), "no {kind} of profile full was dry-run");
    }

    // The check can fail: broken copies of delivered objects are refused, by the server
    // (a wrong type, a missing required field) or by the comparison (a misspelled field
    // the server prunes).
    let full = idp_test::render::every_profile().expect("every profile renders").into_iter().find(|(p, _)| p == "full").expect("full");
    let find = |kind: &str| {
        full.1.components.iter().flat_map(|c| &c.delivered).find(|o| o["kind"] == kind).cloned().unwrap_or_else(|| panic!("a {kind}"))
    };
    let mut policy = find("ClusterPolicy");
    policy["spec"]["rules"] = json!("not a list");
    let mut typo = find("ClusterPolicy");
    typo["spec"]["backgroud"] = json!(true);
    let mut template = find("WorkflowTemplate");
    template.as_object_mut().expect("an object").remove("spec");
    let mut role = find("Role");
    role["rules"] = json!([{"apiGroups": [""], "resources": ["pods"]}]);
    let mut slo = find("ServiceLevelObjective");
    slo["spec"]["target"] = json!({"not": "a string"});
    let mut route = items_of(&full.1, "HTTPRoute");
    route["spec"]["hostnamez"] = json!(["x.example"]);
    let cases = [
        (policy, "spec.rules"),
        (typo, ".spec.backgroud"),
        (template, "spec"),
        (role, "verbs"),
        (slo, "spec.target"),
        (route, ".spec.hostnamez"),
    ];
    for (broken, expected) in cases {
        match applier.apply(&broken, false).await {
            Ok(()) => panic!("a broken {} passes the dry-run", describe(&broken)),
            Err(e) => assert!(e.contains(expected), "{}: refused for another reason than {expected}: {e}", describe(&broken)),
        }
    }
    // Without its Namespace, what lands in `cicd` (Argo Workflows' and SonarQube's
    // Applications and Argo Workflows' delivered objects) is named.
    let mut without_cicd = full.1.clone();
    for c in &mut without_cicd.components {
        c.items.retain(|i| !matches!(i, Item::Object(o) if o["kind"] == "Namespace" && o["metadata"]["name"] == "cicd"));
    }
    let outside = unrendered_landings(&without_cicd);
    assert!(outside.contains(&("argo-workflows".into(), "cicd".into(), "an Application's destination")), "{outside:?}");
    assert!(outside.contains(&("argo-workflows".into(), "cicd".into(), "a delivered object")), "{outside:?}");
    assert!(outside.iter().all(|(_, ns, _)| ns == "cicd"), "{outside:?}");
}

/// The first object of `kind` idp-lab applies in `rendered`.
fn items_of(rendered: &idp_core::render::Rendered, kind: &str) -> Value {
    rendered.objects().map(|(_, o)| o).find(|o| o["kind"] == kind).cloned().unwrap_or_else(|| panic!("a {kind}"))
}
