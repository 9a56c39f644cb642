//! The generated sample custom resources against the real 1.20 API server: every sample of the
//! CRD fixtures is accepted as it is, and taking a required field away gets it refused, so
//! the server really validates and the generator's choices matter.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use idp_test::crds::{FIELD_MANAGER, apply_crds, downlevel_crd_fixtures};
use idp_test::samples::{sample_custom_resources, sample_string, storage_version};
use idp_test::{ControlPlane, Need, require};
use k8s_openapi::api::core::v1::Namespace;
use kube::Client;
use kube::api::{Api, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::discovery::{Scope, pinned_kind};
use serde_json::{Value, json};

/// The namespace the namespaced samples go to.
const NAMESPACE: &str = "samples";

fn took(step: &str, since: Instant) {
    eprintln!("  {step}: {:.1?}", since.elapsed());
}

/// `kind/name` of a sample, for messages.
fn label(sample: &Value) -> String {
    format!("{}/{} ({})", sample["kind"].as_str().unwrap_or("?"), sample["metadata"]["name"].as_str().unwrap_or("?"), sample["apiVersion"])
}

/// Starts a control plane with the CRD fixtures and a namespace for the samples; returns the
/// downlevelled CRDs too.
///
/// Does what [`control_plane_with_crd_fixtures`](idp_test::crds::control_plane_with_crd_fixtures)
/// does, from its public halves, to keep the CRDs it installs: downlevelling the fixtures a
/// second time costs seconds of CPU that two control planes starting side by side lack.
async fn cluster_with_fixtures() -> (ControlPlane, Vec<Value>) {
    let start = Instant::now();
    let (cp, crds) = tokio::join!(ControlPlane::start_without_controller_manager(), downlevel_crd_fixtures());
    let cp = cp.expect("the control plane starts");
    let crds = crds.expect("the CRD fixtures downlevel");
    let installed = apply_crds(&cp.client(), &crds).await.expect("the CRD fixtures are installed");
    took(&format!("control plane ready, {} CRDs established and discoverable", installed.names.len()), start);
    let names: BTreeSet<String> = crds.iter().filter_map(|c| c["metadata"]["name"].as_str().map(str::to_string)).collect();
    assert_eq!(names, installed.names, "the CRDs sampled are the CRDs installed");

    let namespaces: Api<Namespace> = Api::all(cp.client());
    let ns: Namespace = serde_json::from_value(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}))
        .expect("a valid Namespace");
    namespaces.patch(NAMESPACE, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&ns)).await.expect("the namespace is created");
    (cp, crds)
}

/// Applies `object` with server-side apply, resolving its resource through discovery. `Err`
/// holds the server's message (or what else went wrong).
async fn apply(client: &Client, object: &Value) -> Result<Value, String> {
    let dynamic: DynamicObject = serde_json::from_value(object.clone()).map_err(|e| format!("not an object: {e}"))?;
    let types = dynamic.types.clone().ok_or("no apiVersion and kind")?;
    let gvk = GroupVersionKind::try_from(&types).map_err(|e| format!("bad apiVersion: {e}"))?;
    let (resource, caps) = pinned_kind(client, &gvk).await.map_err(|e| format!("discovery does not know {gvk:?}: {e}"))?;
    let name = dynamic.metadata.name.clone().ok_or("no metadata.name")?;
    let api: Api<DynamicObject> = match caps.scope {
        Scope::Namespaced => {
            let ns = dynamic.metadata.namespace.clone().ok_or("a namespaced kind without metadata.namespace")?;
            Api::namespaced_with(client.clone(), &ns, &resource)
        }
        Scope::Cluster => Api::all_with(client.clone(), &resource),
    };
    match api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&dynamic)).await {
        Ok(applied) => serde_json::to_value(&applied).map_err(|e| format!("the answer does not serialize: {e}")),
        Err(kube::Error::Api(status)) => Err(format!("{} {}: {}", status.code, status.reason, status.message)),
        Err(e) => Err(e.to_string()),
    }
}

/// Where `actual` lacks or changes a field of `expected` (objects may hold more in `actual`):
/// a pruned or rewritten field means the server did not take the sample as it was.
fn not_kept(expected: &Value, actual: &Value, path: &str) -> Option<String> {
    match (expected, actual) {
        (Value::Object(want), Value::Object(have)) => want.iter().find_map(|(key, value)| match have.get(key) {
            Some(found) => not_kept(value, found, &format!("{path}.{key}")),
            None => Some(format!("{path}.{key} was dropped")),
        }),
        (Value::Array(want), Value::Array(have)) if want.len() == have.len() => {
            want.iter().zip(have).enumerate().find_map(|(i, (w, h))| not_kept(w, h, &format!("{path}[{i}]")))
        }
        _ if expected == actual => None,
        _ => Some(format!("{path} is {actual}, sent {expected}")),
    }
}

#[tokio::test]
async fn every_sample_is_accepted_by_the_api_server() {
    let _testbed = require!(Need::KubeBinaries, Need::SharedFixtures, Need::PythonYaml);
    let (cp, crds) = cluster_with_fixtures().await;
    let samples = sample_custom_resources(&crds, NAMESPACE).expect("a sample per CRD");
    assert_eq!(samples.len(), crds.len(), "one sample per CRD");

    let step = Instant::now();
    let client = cp.client();
    let mut failures = Vec::new();
    for sample in &samples {
        match apply(&client, sample).await {
            Ok(applied) => {
                let mut sent = sample.clone();
                if let Some(sent) = sent.as_object_mut() {
                    sent.remove("metadata");
                }
                if let Some(why) = not_kept(&sent, &applied, "") {
                    failures.push(format!("{}: accepted, but {why}", label(sample)));
                }
            }
            Err(message) => failures.push(format!("{}: refused: {message}\n    sample: {sample}", label(sample))),
        }
    }
    took(&format!("{} samples applied", samples.len()), step);
    assert!(failures.is_empty(), "{} of {} samples were not taken as they are:\n{}", failures.len(), samples.len(), failures.join("\n"));
    eprintln!("  all {} samples accepted", samples.len());
}

/// The first required `spec` field of the CRD's storage schema that has no default (the
/// server would fill a defaulted one in instead of refusing).
fn required_spec_field(crd: &Value) -> Option<String> {
    let spec = storage_version(crd)?.pointer("/schema/openAPIV3Schema/properties/spec")?;
    spec.get("required")?
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .find(|field| spec["properties"][field].get("default").is_none())
        .map(str::to_string)
}

#[tokio::test]
async fn a_sample_without_a_required_field_is_refused() {
    let _testbed = require!(Need::KubeBinaries, Need::SharedFixtures, Need::PythonYaml);
    let (cp, crds) = cluster_with_fixtures().await;

    let step = Instant::now();
    let client = cp.client();
    let mut cases = 0;
    let mut failures = Vec::new();
    for crd in &crds {
        let Some(field) = required_spec_field(crd) else { continue };
        let mut sample = sample_custom_resources(std::slice::from_ref(crd), NAMESPACE).expect("a sample").remove(0);
        let removed = sample["spec"].as_object_mut().and_then(|spec| spec.remove(&field));
        assert!(removed.is_some(), "{} has no spec.{field} to remove", label(&sample));
        cases += 1;
        match apply(&client, &sample).await {
            Ok(_) => failures.push(format!("{} without spec.{field}: accepted", label(&sample))),
            Err(message) if message.starts_with("422 ") && message.contains(&format!("spec.{field}")) => {
                if sample["kind"] == "Gateway" {
                    eprintln!("  e.g. {} without spec.{field}: {message}", label(&sample));
                }
            }
            Err(message) => failures.push(format!("{} without spec.{field}: refused for another reason: {message}", label(&sample))),
        }
    }
    took(&format!("{cases} incomplete samples applied"), step);
    assert!(cases >= 20, "expected most fixture CRDs to require a spec field, found {cases}");
    assert!(failures.is_empty(), "{} of {cases} incomplete samples were not refused as expected:\n{}", failures.len(), failures.join("\n"));
    eprintln!("  all {cases} incomplete samples refused");
}

/// DNS-1123 subdomain (the rule for custom resource names).
fn is_dns_subdomain(name: &str) -> bool {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    name.len() <= 253 && name.split('.').all(label_ok)
}

#[tokio::test]
async fn samples_of_the_fixtures_are_deterministic_and_scoped() {
    let _testbed = require!(Need::SharedFixtures, Need::PythonYaml);
    let crds = downlevel_crd_fixtures().await.expect("the CRD fixtures downlevel");
    let samples = sample_custom_resources(&crds, NAMESPACE).expect("a sample per CRD");
    let bytes = serde_json::to_vec(&samples).expect("serializable");
    let mut reversed = crds.clone();
    reversed.reverse();
    let again = serde_json::to_vec(&sample_custom_resources(&reversed, NAMESPACE).expect("a sample per CRD")).expect("serializable");
    assert!(bytes == again, "the same CRDs, in another order, gave other samples");

    assert_eq!(samples.len(), crds.len());
    let mut seen = BTreeSet::new();
    let mut cluster_scoped = 0;
    for crd in &crds {
        let group = crd["spec"]["group"].as_str().expect("a group");
        let kind = &crd["spec"]["names"]["kind"];
        let sample = samples
            .iter()
            .find(|s| &s["kind"] == kind && s["apiVersion"].as_str().is_some_and(|v| v.starts_with(&format!("{group}/"))))
            .unwrap_or_else(|| panic!("no sample of {kind} in {group}"));
        let version = storage_version(crd).expect("a storage version")["name"].as_str().expect("a version name");
        assert_eq!(sample["apiVersion"], format!("{group}/{version}"), "{}", label(sample));
        let name = sample["metadata"]["name"].as_str().expect("a name");
        assert!(is_dns_subdomain(name), "{name:?} is not a DNS-1123 name");
        assert!(seen.insert((group.to_string(), name.to_string())), "{name} twice in {group}");
        assert!(sample.get("status").is_none(), "{} sets status", label(sample));
        match crd["spec"]["scope"].as_str() {
            Some("Cluster") => {
                cluster_scoped += 1;
                assert!(sample["metadata"].get("namespace").is_none(), "cluster-scoped {} has a namespace", label(sample));
            }
            _ => assert_eq!(sample["metadata"]["namespace"], NAMESPACE, "{}", label(sample)),
        }
        let has_spec = storage_version(crd).and_then(|v| v.pointer("/schema/openAPIV3Schema/properties/spec")).is_some();
        assert_eq!(sample.get("spec").is_some(), has_spec, "{}: spec iff the schema has one", label(sample));
    }
    assert!(cluster_scoped > 0, "the fixtures hold cluster-scoped CRDs");
    let order: Vec<(String, String)> = samples
        .iter()
        .map(|s| {
            let group = s["apiVersion"].as_str().and_then(|v| v.rsplit_once('/')).map(|(g, _)| g.to_string()).unwrap_or_default();
            (group, s["kind"].as_str().unwrap_or_default().to_string())
        })
        .collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted, "samples are sorted by (group, kind)");
    eprintln!("  {} samples, {cluster_scoped} cluster-scoped, {} bytes", samples.len(), bytes.len());
}

/// The string schemas with a `pattern` under `schema`, with their paths.
fn patterned<'a>(schema: &'a Value, path: String, out: &mut Vec<(String, &'a Value)>) {
    match schema {
        Value::Object(map) => {
            if map.get("pattern").is_some_and(Value::is_string) {
                out.push((path.clone(), schema));
            }
            for (key, value) in map {
                patterned(value, format!("{path}/{key}"), out);
            }
        }
        Value::Array(items) => items.iter().enumerate().for_each(|(i, item)| patterned(item, format!("{path}/{i}"), out)),
        _ => {}
    }
}

#[tokio::test]
async fn every_pattern_of_the_fixtures_has_a_candidate() {
    let _testbed = require!(Need::SharedFixtures, Need::PythonYaml);
    let crds = downlevel_crd_fixtures().await.expect("the CRD fixtures downlevel");
    // Every version's schema, required or not: a field a sample leaves out today may be required
    // tomorrow, and a served version may become the stored one.
    let mut chosen: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut failures = BTreeSet::new();
    for crd in &crds {
        let name = crd["metadata"]["name"].as_str().unwrap_or("?");
        let mut found = Vec::new();
        patterned(&crd["spec"]["versions"], "spec/versions".into(), &mut found);
        for (path, schema) in found {
            let pattern = schema["pattern"].as_str().unwrap_or_default().to_string();
            match sample_string(schema) {
                Ok(value) => {
                    chosen.entry(value).or_default().insert(pattern);
                }
                Err(e) => {
                    failures.insert(format!("{name} {path}: {e:#}"));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} fixture patterns without a candidate:\n{}",
        failures.len(),
        failures.into_iter().collect::<Vec<_>>().join("\n")
    );
    let distinct: BTreeSet<&String> = chosen.values().flatten().collect();
    assert!(distinct.len() >= 10, "expected the fixtures to hold patterns, found {}", distinct.len());
    eprintln!("  {} distinct patterns, by the candidate each gets:", distinct.len());
    for (value, patterns) in &chosen {
        eprintln!("    {value:?}: {}", patterns.len());
    }
}
