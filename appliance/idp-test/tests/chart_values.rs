//! Our chart values against the pinned charts' own `values.yaml` and `values.schema.json`
//! (`<shared>/fixtures/charts/<chart>-<version>/`), so a mistyped key cannot land.
//!
//! For every catalogue component with a chart, whatever its delivery (a k3s HelmChart or
//! Argo CD), with every profile's variables and with and without the `prod` dial (its
//! `values` with `prod_values` merged over them, as the render merges them):
//! - **keys**: every key our values set exists in the chart's defaults (its subcharts'
//!   defaults folded in under their keys, as Helm does), or is declared by its schema, or
//!   sits in a map the chart leaves open (a default of `{}` or null, or a Kubernetes
//!   resource list such as `resources.limits`, whose names are Kubernetes'), or is a dotted
//!   setting in a ConfigMap-data map (like Argo CD's `configs.cm`), or lies in a config
//!   file's content (a key named like `grafana.ini`), or is one the chart documents only
//!   in a comment (`# key: ...` in its `values.yaml`); lists are values, not descended into;
//! - **schema**: where the chart ships one, the values Helm would use (the defaults
//!   coalesced with ours: maps merged, everything else replaced, null deleting) validate
//!   against it with Python's `jsonschema`, the reference implementation.
//!
//! The render's HelmCharts and Argo CD Applications (their chart sources'
//! `helm.valuesObject`) are checked to carry exactly these values, so what is checked here
//! is what the lab sends. A chart whose fixture is missing is reported as not
//! applicable, never as a pass; so are keys under a subchart the fixture lacks.

use idp_core::catalogue::Catalogue;
use idp_test::{Need, require};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// A chart's defaults (subcharts folded in), schema, the raw text of its values files, and
/// the keys of the subcharts the fixture lacks.
struct Fixture {
    defaults: Value,
    schema: Option<Value>,
    text: String,
    missing_subcharts: Vec<String>,
}

fn parse_yaml(path: &Path, text: &str) -> Value {
    serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The fixture of the chart in `dir`. Each dependency of its `Chart.yaml` found under
/// `charts/<name>/` has its defaults coalesced under its key (alias, else name) with the
/// parent's values for that key winning, and its `global` under the parent's, as Helm
/// does; its `values.yaml` text joins the text searched for documented keys.
fn fixture(dir: &Path) -> Option<Fixture> {
    let path = dir.join("values.yaml");
    let mut text = std::fs::read_to_string(&path).ok()?;
    let mut defaults = parse_yaml(&path, &text);
    let schema = std::fs::read_to_string(dir.join("values.schema.json"))
        .ok()
        .map(|s| serde_json::from_str(&s).unwrap_or_else(|e| panic!("{}/values.schema.json: {e}", dir.display())));
    let mut missing_subcharts = Vec::new();
    let chart_path = dir.join("Chart.yaml");
    let chart = std::fs::read_to_string(&chart_path).map(|t| parse_yaml(&chart_path, &t)).unwrap_or(Value::Null);
    for dep in chart["dependencies"].as_array().into_iter().flatten() {
        let Some(name) = dep["name"].as_str() else { continue };
        let key = dep["alias"].as_str().unwrap_or(name);
        let sub_path = dir.join("charts").join(name).join("values.yaml");
        let Ok(sub_text) = std::fs::read_to_string(&sub_path) else {
            missing_subcharts.push(key.to_owned());
            continue;
        };
        let Value::Object(mut sub) = parse_yaml(&sub_path, &sub_text) else { continue };
        text.push('\n');
        text.push_str(&sub_text);
        let Value::Object(parent) = &mut defaults else { continue };
        if let Some(global) = sub.remove("global") {
            let merged = parent.get("global").map_or_else(|| global.clone(), |g| coalesce(&global, g));
            parent.insert("global".into(), merged);
        }
        let sub = Value::Object(sub);
        let merged = parent.get(key).filter(|v| !v.is_null()).map_or_else(|| sub.clone(), |p| coalesce(&sub, p));
        parent.insert(key.to_owned(), merged);
    }
    Some(Fixture { defaults, schema, text, missing_subcharts })
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

/// Whether `key` names a configuration file (`grafana.ini`, `config.yaml`): the chart
/// writes the map below it out as that file, so its keys are the program's, not the chart's.
fn names_a_file(key: &str) -> bool {
    key.rsplit_once('.').is_some_and(|(stem, ext)| !stem.is_empty() && ["ini", "yaml", "yml", "json", "conf", "toml"].contains(&ext))
}

/// Every key of `ours` the chart does not have, as dotted paths.
fn unknown_keys(ours: &Value, defaults: Option<&Value>, schema: Option<(&Value, &Value)>, text: &str, path: &str, out: &mut Vec<String>) {
    let Value::Object(map) = ours else { return };
    // A map the chart leaves open: empty or null by default; or a Kubernetes resource
    // list (`resources.requests`, `resources.limits`), which takes any resource name
    // whatever the chart's default names (Kyverno's limits name only memory).
    let resource_list = [".resources.requests", ".resources.limits"].iter().any(|s| format!(".{path}").ends_with(s));
    let open = resource_list
        || match defaults {
            Some(Value::Object(m)) => m.is_empty(),
            Some(Value::Null) | None => true,
            _ => false,
        };
    // A ConfigMap's data: its default keys are dotted settings (Argo CD's `configs.cm`),
    // so it takes any other dotted setting; its plain keys are still the chart's.
    let data = matches!(defaults, Some(Value::Object(m)) if m.keys().any(|k| k.contains('.')));
    for (key, value) in map {
        let here = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
        let default = defaults.and_then(|d| d.get(key));
        let child_schema = schema.and_then(|(root, s)| schema_child(root, s, key).map(|c| (root, c)));
        let known = default.is_some() || child_schema.is_some() || documented_in_comment(text, key) || (data && key.contains('.'));
        if !known && !open {
            out.push(here);
            continue;
        }
        // Below an open map, a key known only from a comment, or a configuration file's
        // content, the chart says nothing more; nor below a default that is not a map (a
        // map given where the chart has a YAML string, like Vault's `affinity`, is a value:
        // the schema judges its type).
        let described = default.is_some_and(Value::is_object) || child_schema.is_some_and(|(_, s)| s.get("properties").is_some());
        if described && !names_a_file(key) {
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

/// A component's chart values as the lab uses them: `values` with the lab's variables
/// substituted, and `prod_values` merged over them when the HA dial is on (the render's
/// own merge); `{}` without a values file.
fn component_values(c: &idp_core::catalogue::Component, vars: &idp_core::render::Vars, prod: bool) -> Value {
    let chart = c.chart.as_ref().expect("a chart component");
    let load = |file: &str| -> Value {
        let text = c.file(file).unwrap_or_else(|e| panic!("{e}"));
        let text = vars.substitute(&text).unwrap_or_else(|e| panic!("{}: {e}", c.file_path(file)));
        match idp_core::yaml::parse_document(&text).unwrap_or_else(|e| panic!("{}: {e}", c.file_path(file))) {
            Value::Null => Value::Object(Map::new()),
            v @ Value::Object(_) => v,
            _ => panic!("{}: values must be a mapping", c.file_path(file)),
        }
    };
    let mut values = chart.values.as_deref().map_or_else(|| Value::Object(Map::new()), load);
    if prod && let Some(f) = &chart.prod_values {
        idp_core::render::merge(&mut values, load(f));
    }
    values
}

/// Every catalogue component with a chart, whatever its delivery and whether the profile
/// enables it, under every profile's variables and `[versions]`, with and without the HA
/// dial: (chart, version) -> the distinct values, each with where it came from. Each
/// HelmChart and each Argo CD Application of each render is checked to carry exactly its
/// component's values ([`sent_values`]).
fn charts_and_values() -> BTreeMap<(String, String), Vec<(String, Value)>> {
    let catalogue = Catalogue::load().expect("catalogue");
    let mut out: BTreeMap<(String, String), Vec<(String, Value)>> = BTreeMap::new();
    let (mut helm_charts, mut applications) = (0, 0);
    for profile in idp_core::profiles::names() {
        for prod in [false, true] {
            let inputs = idp_core::profiles::Inputs { profile_flag: Some(&profile), ..Default::default() };
            let mut config = idp_core::profiles::resolve(&inputs, &catalogue.chart_components()).expect("profile");
            config.stacks.prod = prod;
            let settings = idp_core::settings::resolve(&config, &idp_core::settings::Probes::default()).expect("settings");
            let vars = idp_core::render::Vars::new(&config, &settings.network);
            let from = |name: &str| format!("{name} (profile {profile}{})", if prod { ", prod" } else { "" });
            let mut by_component = BTreeMap::new();
            for c in &catalogue.components {
                let Some(chart) = &c.chart else { continue };
                let values = component_values(c, &vars, prod);
                let version = config.versions.get(&c.name).unwrap_or(&chart.version).clone();
                let list = out.entry((chart.name.clone(), version)).or_default();
                if !list.iter().any(|(_, v)| *v == values) {
                    list.push((from(&c.name), values.clone()));
                }
                by_component.insert(c.name.clone(), values);
            }
            let rendered = idp_core::render::render(&config, &catalogue, &vars).expect("render");
            for component in &rendered.components {
                for item in &component.items {
                    let idp_core::render::Item::Object(obj) = item else { continue };
                    let kind = obj["kind"].as_str().unwrap_or_default();
                    let sent = sent_values(obj);
                    match kind {
                        "HelmChart" => helm_charts += sent.len(),
                        "Application" => applications += sent.len(),
                        _ => continue,
                    }
                    let has_chart = catalogue.components.iter().any(|c| c.name == component.name && c.chart.is_some());
                    assert_eq!(
                        sent.len(),
                        usize::from(has_chart),
                        "{}: the {kind} has {} chart sources",
                        from(&component.name),
                        sent.len()
                    );
                    for values in &sent {
                        assert_eq!(
                            Some(values),
                            by_component.get(&component.name),
                            "{}: the {kind} sends other values",
                            from(&component.name)
                        );
                    }
                }
            }
        }
    }
    assert!(helm_charts > 0, "no HelmChart was rendered");
    assert!(applications > 0, "no Application with a chart was rendered");
    out
}

/// The chart values `obj` sends, one per chart it installs: a k3s HelmChart's
/// `spec.valuesContent` (YAML text); each chart source of an Argo CD Application (a
/// `repoURL` under the lab registry's charts) its `helm.valuesObject`. Absent values are
/// `{}`; other kinds and an Application's stack artifact source send none.
fn sent_values(obj: &Value) -> Vec<Value> {
    let empty = || Value::Object(Map::new());
    match obj["kind"].as_str() {
        Some("HelmChart") => vec![match obj["spec"]["valuesContent"].as_str() {
            Some(text) => idp_core::yaml::parse_document(text).expect("valuesContent parses"),
            None => empty(),
        }],
        Some("Application") => {
            let charts = format!("/{}/", idp_core::delivery::CHARTS_PREFIX);
            let sources = obj["spec"]["sources"].as_array().map(Vec::as_slice).unwrap_or_default();
            sources
                .iter()
                .filter(|s| s["repoURL"].as_str().is_some_and(|url| url.contains(&charts)))
                .map(|s| s.pointer("/helm/valuesObject").cloned().unwrap_or_else(empty))
                .collect()
        }
        _ => Vec::new(),
    }
}

/// The problems of one value set against its chart's fixture, and the keys that cannot be
/// checked: unknown to the parent but under a subchart the fixture lacks.
fn check(fx: &Fixture, chart: &str, version: &str, from: &str, ours: &Value, scratch: &Path) -> (Vec<String>, Vec<String>) {
    let mut unknown = Vec::new();
    let schema = fx.schema.as_ref().map(|s| (s, s));
    unknown_keys(ours, Some(&fx.defaults), schema, &fx.text, "", &mut unknown);
    let (unchecked, unknown): (Vec<String>, Vec<String>) = unknown
        .into_iter()
        .partition(|k| fx.missing_subcharts.iter().any(|sub| k.strip_prefix(sub.as_str()).is_some_and(|rest| rest.starts_with('.'))));
    let mut problems: Vec<String> = unknown.iter().map(|k| format!("{from}: chart {chart} {version} has no key `{k}`")).collect();
    if let Some(schema) = &fx.schema {
        let merged = coalesce(&fx.defaults, ours);
        problems.extend(violations(schema, &merged, scratch).iter().map(|v| format!("{from}: {chart} {version} schema: {v}")));
    }
    let unchecked = unchecked.iter().map(|k| format!("{from}: `{k}` ({chart} {version}): its subchart is not in the fixture")).collect();
    (problems, unchecked)
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
            let (found, unchecked) = check(&fx, &chart, &version, from, ours, scratch.path());
            problems.extend(found);
            not_applicable.extend(unchecked);
        }
        checked.push(format!("{chart} {version} ({} value sets{})", values.len(), if fx.schema.is_some() { ", schema" } else { "" }));
    }
    eprintln!("checked: {}", checked.join("; "));
    for line in &not_applicable {
        eprintln!("not applicable: {line}");
    }
    assert!(checked.len() >= 5, "the catalogue's charts were found: {checked:?}");
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

/// Subcharts are read (kube-prometheus-stack's grafana), a typo under one is caught, a
/// configuration file's content (`grafana.ini`) is the program's, a resource list takes
/// any resource name, a ConfigMap-data map takes dotted settings but not a mistyped
/// plain key, and a subchart the fixture lacks is named.
#[tokio::test]
async fn the_checks_read_subcharts_config_files_and_data_maps() {
    let testbed = require!(Need::SharedFixtures, Need::PythonJsonschema);
    let charts = testbed.shared_dir().join("fixtures/charts");
    let fx = fixture(&charts.join("kube-prometheus-stack-77.14.0")).expect("the kube-prometheus-stack fixture");
    let keys = |fx: &Fixture, ours: Value| {
        let mut unknown = Vec::new();
        unknown_keys(&ours, Some(&fx.defaults), None, &fx.text, "", &mut unknown);
        unknown
    };
    // Only the subchart's values.yaml has grafana.persistence (the parent merely comments it).
    assert!(keys(&fx, serde_json::json!({ "grafana": { "persistence": { "enabled": true, "size": "1Gi" } } })).is_empty());
    assert!(keys(&fx, serde_json::json!({ "kube-state-metrics": { "collectors": ["pods"] } })).is_empty());
    assert_eq!(keys(&fx, serde_json::json!({ "grafana": { "persistance": { "enabled": true } } })), ["grafana.persistance"]);
    assert_eq!(
        keys(&fx, serde_json::json!({ "grafana": { "sidecar": { "dashboards": { "lable": "x" } } } })),
        ["grafana.sidecar.dashboards.lable"]
    );
    // The parent's values win over the subchart's defaults (as in Helm).
    assert_eq!(fx.defaults["grafana"]["sidecar"]["dashboards"]["enabled"], true);
    // grafana.ini is Grafana's own configuration file.
    assert!(keys(&fx, serde_json::json!({ "grafana": { "grafana.ini": { "analytics": { "reporting_enabled": false } } } })).is_empty());
    assert!(fx.missing_subcharts.contains(&"prometheus-windows-exporter".to_owned()), "{:?}", fx.missing_subcharts);
    assert!(names_a_file("grafana.ini") && names_a_file("custom.conf") && !names_a_file("server.insecure") && !names_a_file(".ini"));
    // A resource list takes any resource name; the level above is still the chart's.
    let kyverno = fixture(&charts.join("kyverno-3.5.2")).expect("the kyverno fixture");
    assert!(keys(&kyverno, serde_json::json!({ "reportsController": { "resources": { "limits": { "cpu": "250m" } } } })).is_empty());
    assert_eq!(
        keys(&kyverno, serde_json::json!({ "reportsController": { "resources": { "limts": { "cpu": "250m" } } } })),
        ["reportsController.resources.limts"]
    );
    assert_eq!(keys(&kyverno, serde_json::json!({ "reportsController": { "resource": {} } })), ["reportsController.resource"]);
    let argocd = fixture(&charts.join("argo-cd-8.6.0")).expect("the argo-cd fixture");
    assert!(keys(&argocd, serde_json::json!({ "configs": { "cm": { "any.dotted.setting": "x" } } })).is_empty());
    assert_eq!(keys(&argocd, serde_json::json!({ "configs": { "cm": { "craete": true } } })), ["configs.cm.craete"]);
    // Under a subchart the fixture lacks (argo-cd's redis-ha), what the parent knows is
    // still checked and what it does not is set apart as not applicable, not passed.
    let scratch = tempfile::tempdir().expect("tempdir");
    let ours = serde_json::json!({ "redis-ha": { "enabled": true, "sentinel": { "quorum": 2 } }, "redis": { "enabeld": true } });
    let (problems, unchecked) = check(&argocd, "argo-cd", "8.6.0", "test", &ours, scratch.path());
    assert_eq!(problems, ["test: chart argo-cd 8.6.0 has no key `redis.enabeld`"]);
    assert_eq!(unchecked.len(), 1, "{unchecked:?}");
    assert!(unchecked[0].contains("`redis-ha.sentinel`"), "{unchecked:?}");
}

/// What an Application sends is read from its chart source only: `helm.valuesObject`, `{}`
/// when absent; its stack artifact source and other kinds send none; a HelmChart's
/// `valuesContent` is parsed.
#[test]
fn sent_values_reads_chart_sources_only() {
    let chart = |helm: Value| serde_json::json!({"repoURL": "oci://r:5000/local/charts/loki", "targetRevision": "1", "helm": helm});
    let stack = serde_json::json!({"repoURL": "oci://r:5000/local/stacks/loki", "targetRevision": "sha-0"});
    let app = |sources: Vec<Value>| serde_json::json!({"kind": "Application", "spec": {"sources": sources}});
    let values = serde_json::json!({"loki": {"auth_enabled": false}});
    let with_values = chart(serde_json::json!({"releaseName": "loki", "valuesObject": values}));
    assert_eq!(sent_values(&app(vec![with_values, stack.clone()])), std::slice::from_ref(&values));
    assert_eq!(sent_values(&app(vec![chart(serde_json::json!({"releaseName": "loki"}))])), [serde_json::json!({})]);
    assert!(sent_values(&app(vec![stack])).is_empty());
    assert!(sent_values(&serde_json::json!({"kind": "ConfigMap"})).is_empty());
    let helm_chart = serde_json::json!({"kind": "HelmChart", "spec": {"valuesContent": "loki:\n  auth_enabled: false\n"}});
    assert_eq!(sent_values(&helm_chart), [values]);
    assert_eq!(sent_values(&serde_json::json!({"kind": "HelmChart", "spec": {}})), [serde_json::json!({})]);
}
