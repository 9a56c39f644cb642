//! Our chart values against the pinned charts' own `values.yaml` and `values.schema.json`
//! (`<shared>/fixtures/charts/<chart>-<version>/`), so a mistyped key cannot land.
//!
//! For every HelmChart of every profile's render (with and without the `prod` dial):
//! - **keys**: every key our values set exists in the chart's defaults, or is declared by
//!   its schema, or sits in a map the chart leaves open (a default of `{}` or null), or is
//!   one the chart documents only in a comment (`# key: ...` in its `values.yaml`);
//!   lists are values, not descended into;
//! - **schema**: where the chart ships one, the values Helm would use (the defaults
//!   coalesced with ours: maps merged, everything else replaced, null deleting) validate
//!   against it with Python's `jsonschema`, the reference implementation.
//!
//! A chart whose fixture is missing is reported as not applicable, never as a pass.

use idp_test::{Need, require};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// A chart's defaults, schema and the raw text of its `values.yaml`.
struct Fixture {
    defaults: Value,
    schema: Option<Value>,
    text: String,
}

fn fixture(dir: &Path) -> Option<Fixture> {
    let text = std::fs::read_to_string(dir.join("values.yaml")).ok()?;
    let defaults: Value = serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let schema = std::fs::read_to_string(dir.join("values.schema.json"))
        .ok()
        .map(|s| serde_json::from_str(&s).unwrap_or_else(|e| panic!("{}/values.schema.json: {e}", dir.display())));
    Some(Fixture { defaults, schema, text })
}

/// The schema of the property `key` of `schema` (following local `#/...` references).
fn schema_child<'a>(root: &'a Value, schema: &'a Value, key: &str) -> Option<&'a Value> {
    let schema = resolve(root, schema);
    schema
        .get("properties")
        .and_then(|p| p.get(key))
        .or_else(|| schema.get("additionalProperties").filter(|a| a.is_object()))
        .map(|s| resolve(root, s))
}

fn resolve<'a>(root: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix('#')) {
        Some(pointer) => root.pointer(pointer).unwrap_or(schema),
        None => schema,
    }
}

/// Whether `key` is named in a comment of the chart's `values.yaml` (`# key:` or
/// `#   key: value`): keys the chart documents without a default.
fn documented_in_comment(text: &str, key: &str) -> bool {
    text.lines().any(|line| {
        let t = line.trim_start();
        t.starts_with('#') && t.trim_start_matches('#').trim_start().trim_start_matches("- ").starts_with(&format!("{key}:"))
    })
}

/// Every key of `ours` the chart does not have, as dotted paths.
fn unknown_keys(ours: &Value, defaults: Option<&Value>, schema: Option<(&Value, &Value)>, text: &str, path: &str, out: &mut Vec<String>) {
    let Value::Object(map) = ours else { return };
    for (key, value) in map {
        let here = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
        let default = defaults.and_then(|d| d.get(key));
        let child_schema = schema.and_then(|(root, s)| schema_child(root, s, key).map(|c| (root, c)));
        // A map the chart leaves open: empty or null by default, or a ConfigMap's data
        // (its default keys are dotted settings, like Argo CD's `configs.cm`).
        let open = match defaults {
            Some(Value::Object(m)) => m.is_empty() || m.keys().any(|k| k.contains('.')),
            Some(Value::Null) | None => true,
            _ => false,
        };
        let known = default.is_some() || child_schema.is_some() || documented_in_comment(text, key);
        if !known && !open {
            out.push(here);
            continue;
        }
        // Below an open map or a key known only from a comment, the chart says nothing
        // more; nor below a default that is not a map (a map given where the chart has a
        // YAML string, like Vault's `affinity`, is a value: the schema judges its type).
        let described = default.is_some_and(Value::is_object) || child_schema.is_some_and(|(_, s)| s.get("properties").is_some());
        if described {
            unknown_keys(value, default, child_schema, text, &here, out);
        }
    }
}

/// Helm's coalesce: maps merged key by key, anything else replaced, null deleting.
fn coalesce(defaults: &Value, ours: &Value) -> Value {
    match (defaults, ours) {
        (Value::Object(d), Value::Object(o)) => {
            let mut out: Map<String, Value> = d.clone();
            for (k, v) in o {
                if v.is_null() {
                    out.remove(k);
                } else {
                    let merged = match d.get(k) {
                        Some(dv) => coalesce(dv, v),
                        None => v.clone(),
                    };
                    out.insert(k.clone(), merged);
                }
            }
            Value::Object(out)
        }
        (_, o) => o.clone(),
    }
}

const VALIDATE: &str = r#"
import json, sys, jsonschema
schema = json.load(open(sys.argv[1]))
instance = json.load(open(sys.argv[2]))
cls = jsonschema.validators.validator_for(schema)
errors = sorted(cls(schema).iter_errors(instance), key=lambda e: list(map(str, e.absolute_path)))
for e in errors:
    print("/".join(map(str, e.absolute_path)) or "(root)", ":", e.message[:300])
sys.exit(1 if errors else 0)
"#;

/// The schema violations of `values`, as Python's jsonschema words them.
fn violations(schema: &Value, values: &Value, scratch: &Path) -> Vec<String> {
    let s = scratch.join("schema.json");
    let v = scratch.join("values.json");
    std::fs::write(&s, serde_json::to_vec(schema).expect("json")).expect("write");
    std::fs::write(&v, serde_json::to_vec(values).expect("json")).expect("write");
    let out = std::process::Command::new("python3").args(["-c", VALIDATE]).arg(&s).arg(&v).output().expect("python3");
    match out.status.code() {
        Some(0) => Vec::new(),
        Some(1) => String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect(),
        _ => panic!("the validator failed: {}", String::from_utf8_lossy(&out.stderr)),
    }
}

/// Every HelmChart of every profile, with and without the HA dial: (chart, version) ->
/// the distinct values sent, each with where it came from.
fn charts_and_values() -> BTreeMap<(String, String), Vec<(String, Value)>> {
    let catalogue = idp_core::catalogue::Catalogue::load().expect("catalogue");
    let mut out: BTreeMap<(String, String), Vec<(String, Value)>> = BTreeMap::new();
    for profile in idp_core::profiles::names() {
        for prod in [false, true] {
            let inputs = idp_core::profiles::Inputs { profile_flag: Some(&profile), ..Default::default() };
            let mut config = idp_core::profiles::resolve(&inputs, &catalogue.chart_components()).expect("profile");
            config.stacks.prod = prod;
            let settings = idp_core::settings::resolve(&config, &idp_core::settings::Probes::default()).expect("settings");
            let vars = idp_core::render::Vars::new(&config, &settings.network);
            let rendered = idp_core::render::render(&config, &catalogue, &vars).expect("render");
            for component in &rendered.components {
                for item in &component.items {
                    let idp_core::render::Item::Object(obj) = item else { continue };
                    if obj["kind"] != "HelmChart" {
                        continue;
                    }
                    let spec = &obj["spec"];
                    let key =
                        (spec["chart"].as_str().unwrap_or_default().to_owned(), spec["version"].as_str().unwrap_or_default().to_owned());
                    let values: Value = match spec["valuesContent"].as_str() {
                        Some(text) => serde_saphyr::from_str(text).expect("valuesContent parses"),
                        None => Value::Object(Map::new()),
                    };
                    let from = format!("{} (profile {profile}{})", component.name, if prod { ", prod" } else { "" });
                    let list = out.entry(key).or_default();
                    if !list.iter().any(|(_, v)| *v == values) {
                        list.push((from, values));
                    }
                }
            }
        }
    }
    out
}

#[tokio::test]
async fn every_charts_values_have_only_the_charts_keys_and_pass_its_schema() {
    let testbed = require!(Need::SharedFixtures, Need::PythonJsonschema);
    let charts_dir = testbed.shared_dir().join("fixtures/charts");
    let scratch = tempfile::tempdir().expect("tempdir");
    let mut problems = Vec::new();
    let mut checked = Vec::new();
    let mut not_applicable = Vec::new();
    for ((chart, version), values) in charts_and_values() {
        let dir = charts_dir.join(format!("{chart}-{version}"));
        let Some(fx) = fixture(&dir) else {
            not_applicable.push(format!("{chart} {version}: no fixture at {}", dir.display()));
            continue;
        };
        for (from, ours) in &values {
            let mut unknown = Vec::new();
            let schema = fx.schema.as_ref().map(|s| (s, s));
            unknown_keys(ours, Some(&fx.defaults), schema, &fx.text, "", &mut unknown);
            problems.extend(unknown.iter().map(|k| format!("{from}: chart {chart} {version} has no key `{k}`")));
            if let Some(schema) = &fx.schema {
                let merged = coalesce(&fx.defaults, ours);
                problems
                    .extend(violations(schema, &merged, scratch.path()).iter().map(|v| format!("{from}: {chart} {version} schema: {v}")));
            }
        }
        checked.push(format!("{chart} {version} ({} value sets{})", values.len(), if fx.schema.is_some() { ", schema" } else { "" }));
    }
    eprintln!("checked: {}", checked.join("; "));
    for line in &not_applicable {
        eprintln!("not applicable: {line}");
    }
    assert!(checked.len() >= 5, "the render's charts were found: {checked:?}");
    assert!(problems.is_empty(), "{} problem(s):\n  {}", problems.len(), problems.join("\n  "));
}

/// The checks can fail: a typo, a key under a closed map and a schema violation are each
/// caught, and open maps, schema-declared and comment-documented keys pass.
#[tokio::test]
async fn the_checks_catch_a_typo_and_a_schema_violation() {
    let testbed = require!(Need::SharedFixtures, Need::PythonJsonschema);
    let dir = testbed.shared_dir().join("fixtures/charts/vault-0.31.0");
    let fx = fixture(&dir).expect("the vault fixture");
    let schema = fx.schema.as_ref().expect("vault ships a schema");
    let check = |ours: Value| {
        let mut unknown = Vec::new();
        unknown_keys(&ours, Some(&fx.defaults), Some((schema, schema)), &fx.text, "", &mut unknown);
        unknown
    };
    // The original's kind of typo.
    assert_eq!(check(serde_json::json!({ "server": { "standalone": { "enabeld": true } } })), ["server.standalone.enabeld"]);
    assert_eq!(check(serde_json::json!({ "serverr": {} })), ["serverr"]);
    assert!(check(serde_json::json!({ "server": { "standalone": { "enabled": true } } })).is_empty());
    // An open map takes any key.
    assert!(check(serde_json::json!({ "server": { "extraLabels": { "anything": "goes" } } })).is_empty());
    // A map where the chart has a string is a value (Vault's affinity template).
    assert!(check(serde_json::json!({ "server": { "affinity": { "podAntiAffinity": {} } } })).is_empty());
    let scratch = tempfile::tempdir().expect("tempdir");
    let bad = coalesce(&fx.defaults, &serde_json::json!({ "server": { "enabled": { "not": "a bool" } } }));
    let found = violations(schema, &bad, scratch.path());
    assert!(!found.is_empty(), "a map where the schema wants a boolean or string is caught");
    assert!(violations(schema, &fx.defaults, scratch.path()).is_empty(), "the chart's own defaults pass");
    // Coalescing: null deletes, maps merge, lists replace.
    let merged =
        coalesce(&serde_json::json!({ "a": { "b": 1, "c": [1, 2] }, "d": 1 }), &serde_json::json!({ "a": { "c": [3] }, "d": null }));
    assert_eq!(merged, serde_json::json!({ "a": { "b": 1, "c": [3] } }));
    assert!(documented_in_comment("# extraArgs: []\n", "extraArgs") && !documented_in_comment("extraArgs: []\n", "nope"));
}
