//! The platform's four Kyverno ClusterPolicies (`embedded/components/kyverno/policies.yaml`,
//! digest §5.1 and §5.4), as Argo CD delivers them, tested for their intent.
//!
//! **No Kyverno engine runs on this machine.** Kyverno is Go only: there is no `kyverno`
//! CLI on `PATH`, Debian (bookworm) packages none (`apt-cache policy kyverno`: no
//! candidate), PyPI has none (`pip download kyverno`: no distribution), npm only a
//! Backstage plugin, the Go module proxy cannot be reached (and Debian's Go 1.19 could not
//! build Kyverno 1.15 anyway), and release binaries cannot be downloaded. So the policies
//! are tested as data: [`evaluate`] implements Kyverno's semantics for exactly the subset
//! the four policies use (following `pkg/engine/utils/match.go`) and panics on anything
//! else, so a policy that starts to use more cannot pass unnoticed:
//! - `match` / `exclude` with `any`, `all` or a bare `resources`; a resource description of
//!   `kinds` (plain kinds), `names` and `namespaces` (wildcards `*` and `?`; for a Namespace,
//!   `namespaces` is matched against its own name) and `selector` (`matchLabels`,
//!   `matchExpressions`); AND across fields, OR within a list; an exclude `any` excludes on
//!   one filter, an exclude `all` only when every filter matches;
//! - `validate.pattern` of nested maps whose leaves are wildcard strings such as `"?*"` (the
//!   field present and non-empty), no anchors and no operators;
//! - `validate.deny.conditions` (`any`/`all`, operator `Equals`) over `context` entries that
//!   are API calls `/api/v1/namespaces/{{request.object.metadata.name}}/<limitranges or
//!   resourcequotas>` with the JMESPath `items | length(@)`, answered from a given set of
//!   objects (the cluster as a background scan sees it);
//! - the failure action of each rule (`validate.failureAction`), and the switch the
//!   bootstrap makes once the platform is up (`idp-lab.dev/failure-action-after-install`).
//!
//! That the four policies are accepted by the real API server with Kyverno's CRDs is the
//! smoke test's `render::every_rendered_and_delivered_object_passes_a_server_side_dry_run`,
//! which dry-runs every delivered object and names these four.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};

use idp_core::render::Rendered;
use serde_json::{Map, Value, json};

/// The annotation that names the failure action a policy's rules get once the platform is up.
const AFTER_INSTALL: &str = "idp-lab.dev/failure-action-after-install";

const NAMESPACE_LABELS: &str = "enforce-namespace-labels";
const COMPONENT_LABELS: &str = "require-component-labels";
const BUSINESS_LABELS: &str = "audit-business-labels";
const GOVERNANCE: &str = "audit-namespace-resource-governance";

/// The contract labels of a platform namespace (digest §5.1).
const CONTRACT: [(&str, &str); 4] =
    [("app.kubernetes.io/part-of", "idp"), ("owner", "platform-team"), ("business-unit", "infrastructure"), ("environment", "demo")];

/// The labels a workload should carry (digest §5.1).
const COMPONENT: [(&str, &str); 4] = [
    ("app.kubernetes.io/name", "web"),
    ("app.kubernetes.io/instance", "web-1"),
    ("app.kubernetes.io/version", "1.0.0"),
    ("app.kubernetes.io/component", "frontend"),
];

/// The business labels (digest §5.4, policy 3).
const BUSINESS: [(&str, &str); 3] = [("owner", "shop-team"), ("business-unit", "retail"), ("environment", "demo")];

/// What one rule says of one object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// The rule does not apply (not matched, or excluded).
    Skip,
    /// The object satisfies the rule.
    Pass,
    /// The object violates the rule.
    Fail,
}

/// One rule's verdict, with the failure action it has.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Verdict {
    rule: String,
    outcome: Outcome,
    action: String,
}

// ---------------------------------------------------------------------------------------
// The evaluator: exactly the subset of Kyverno the four policies use; anything else panics.

fn unsupported(what: impl std::fmt::Display) -> ! {
    panic!("not implemented by this test's Kyverno subset: {what}")
}

fn only_keys(v: &Value, allowed: &[&str], what: &str) {
    let Some(map) = v.as_object() else { unsupported(format!("{what} is not a mapping: {v}")) };
    if let Some(key) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
        unsupported(format!("{what}.{key}"));
    }
}

fn strings<'a>(v: &'a Value, what: &str) -> Vec<&'a str> {
    let Some(list) = v.as_array() else { unsupported(format!("{what} is not a list: {v}")) };
    list.iter().map(|s| s.as_str().unwrap_or_else(|| unsupported(format!("{what} holds a non-string: {s}")))).collect()
}

/// Kyverno's `wildcard.Match`: `*` any run of characters, `?` exactly one.
fn wildcard(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    // matches[j]: whether p[..i] matches t[..j], row by row.
    let mut matches = vec![false; t.len() + 1];
    matches[0] = true;
    for &c in &p {
        let mut next = vec![false; t.len() + 1];
        for j in 0..=t.len() {
            next[j] = match c {
                '*' => matches[j] || (j > 0 && next[j - 1]),
                '?' => j > 0 && matches[j - 1],
                _ => j > 0 && matches[j - 1] && t[j - 1] == c,
            };
        }
        matches = next;
    }
    matches[t.len()]
}

fn labels(object: &Value) -> Map<String, Value> {
    object.pointer("/metadata/labels").and_then(Value::as_object).cloned().unwrap_or_default()
}

/// A label selector (`matchLabels`, `matchExpressions` with In, NotIn, Exists,
/// DoesNotExist), without Kyverno's wildcard extension.
fn selector_matches(selector: &Value, labels: &Map<String, Value>) -> bool {
    only_keys(selector, &["matchLabels", "matchExpressions"], "selector");
    let label = |k: &str| labels.get(k).and_then(Value::as_str);
    let plain = |s: &str| {
        if s.contains(['*', '?']) {
            unsupported(format!("a wildcard in a selector: {s}"));
        }
    };
    let by_labels = selector["matchLabels"].as_object().into_iter().flatten().all(|(k, v)| {
        plain(k);
        let v = v.as_str().unwrap_or_else(|| unsupported(format!("matchLabels value {v}")));
        plain(v);
        label(k) == Some(v)
    });
    let by_expressions = selector["matchExpressions"].as_array().into_iter().flatten().all(|e| {
        only_keys(e, &["key", "operator", "values"], "matchExpressions[]");
        let key = e["key"].as_str().unwrap_or_else(|| unsupported("matchExpressions[].key"));
        plain(key);
        let values = || strings(&e["values"], "matchExpressions[].values");
        match e["operator"].as_str() {
            Some("In") => label(key).is_some_and(|v| values().contains(&v)),
            Some("NotIn") => !label(key).is_some_and(|v| values().contains(&v)),
            Some("Exists") => label(key).is_some(),
            Some("DoesNotExist") => label(key).is_none(),
            other => unsupported(format!("selector operator {other:?}")),
        }
    });
    by_labels && by_expressions
}

/// Whether `object` matches one resource description (AND across fields, OR within one).
fn description_matches(description: &Value, object: &Value) -> bool {
    only_keys(description, &["kinds", "names", "namespaces", "selector"], "resources");
    let kind = object["kind"].as_str().unwrap_or_default();
    let name = object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    // For a Namespace, `namespaces` is matched against its own name (checkNameSpace).
    let namespace =
        if kind == "Namespace" { name } else { object.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or_default() };
    let kinds_ok = description.get("kinds").is_none_or(|kinds| {
        strings(kinds, "kinds").iter().any(|k| {
            if k.contains(['/', '*', '?']) {
                unsupported(format!("kind {k} (only plain kinds)"));
            }
            *k == kind
        })
    });
    let names_ok = description.get("names").is_none_or(|names| strings(names, "names").iter().any(|n| wildcard(n, name)));
    let namespaces_ok = description.get("namespaces").is_none_or(|nss| strings(nss, "namespaces").iter().any(|n| wildcard(n, namespace)));
    let selector_ok = description.get("selector").is_none_or(|s| selector_matches(s, &labels(object)));
    kinds_ok && names_ok && namespaces_ok && selector_ok
}

/// Whether `object` matches one filter (`{resources: ...}`); an empty filter matches nothing.
fn filter_matches(filter: &Value, object: &Value) -> bool {
    only_keys(filter, &["resources"], "a match/exclude filter");
    match filter.get("resources") {
        Some(d) if d.as_object().is_some_and(|m| !m.is_empty()) => description_matches(d, object),
        _ => false,
    }
}

/// Whether `object` is selected by a `match` (`exclude: false`) or excluded by an `exclude`.
fn block_selects(block: &Value, object: &Value, exclude: bool) -> bool {
    only_keys(block, &["any", "all", "resources"], if exclude { "exclude" } else { "match" });
    let list = |k: &str| block.get(k).and_then(Value::as_array).filter(|l| !l.is_empty());
    if let Some(any) = list("any") {
        any.iter().any(|f| filter_matches(f, object))
    } else if let Some(all) = list("all") {
        all.iter().all(|f| filter_matches(f, object))
    } else {
        filter_matches(&json!({"resources": block.get("resources").cloned().unwrap_or(Value::Null)}), object)
    }
}

/// Whether `value` (the object's field, if present) satisfies `pattern`.
fn pattern_holds(pattern: &Value, value: Option<&Value>, path: &str) -> bool {
    match pattern {
        Value::Object(fields) => fields.iter().all(|(key, sub)| {
            if key.contains(['(', ')', '^', '=', '+', '<', '>']) {
                unsupported(format!("the anchor {key} at {path}"));
            }
            pattern_holds(sub, value.and_then(|v| v.get(key)), &format!("{path}.{key}"))
        }),
        Value::String(p) => {
            if !p.chars().all(|c| c.is_ascii_alphanumeric() || "?*._/".contains(c)) {
                unsupported(format!("the pattern value {p:?} at {path} (operators, ranges, alternatives)"));
            }
            match value {
                None | Some(Value::Null) => false,
                Some(Value::String(s)) => wildcard(p, s),
                Some(other) => unsupported(format!("a wildcard against the non-string {other} at {path}")),
            }
        }
        other => unsupported(format!("the pattern {other} at {path}")),
    }
}

/// The value of a `context` entry: an API call counting a namespace's LimitRanges or
/// ResourceQuotas among `cluster`.
fn context_value(entry: &Value, object: &Value, cluster: &[Value]) -> Value {
    only_keys(entry, &["name", "apiCall"], "context[]");
    let call = entry.get("apiCall").unwrap_or_else(|| unsupported(format!("a context entry without apiCall: {entry}")));
    only_keys(call, &["urlPath", "jmesPath"], "context[].apiCall");
    let name = object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    let url = call["urlPath"]
        .as_str()
        .unwrap_or_else(|| unsupported("apiCall without urlPath"))
        .replace("{{request.object.metadata.name}}", name);
    if url.contains("{{") {
        unsupported(format!("the variable in urlPath {url}"));
    }
    if call["jmesPath"] != "items | length(@)" {
        unsupported(format!("the JMESPath {}", call["jmesPath"]));
    }
    let parts: Vec<&str> = url.split('/').collect();
    let ["", "api", "v1", "namespaces", namespace, plural] = parts[..] else { unsupported(format!("the urlPath {url}")) };
    let kind = match plural {
        "limitranges" => "LimitRange",
        "resourcequotas" => "ResourceQuota",
        other => unsupported(format!("listing {other}")),
    };
    let count =
        cluster.iter().filter(|o| o["kind"] == kind && o.pointer("/metadata/namespace").and_then(Value::as_str) == Some(namespace)).count();
    json!(count)
}

/// Whether a `deny` block denies: its conditions hold.
fn denies(deny: &Value, vars: &BTreeMap<String, Value>) -> bool {
    only_keys(deny, &["conditions"], "deny");
    let conditions = &deny["conditions"];
    only_keys(conditions, &["any", "all"], "deny.conditions");
    let holds = |c: &Value| {
        only_keys(c, &["key", "operator", "value"], "deny.conditions[]");
        if c["operator"] != "Equals" {
            unsupported(format!("the operator {}", c["operator"]));
        }
        let key = c["key"].as_str().unwrap_or_else(|| unsupported(format!("the key {}", c["key"])));
        let var = key.strip_prefix("{{").and_then(|k| k.strip_suffix("}}")).unwrap_or_else(|| unsupported(format!("the key {key}")));
        let value = vars.get(var.trim()).unwrap_or_else(|| panic!("the key {key} names no context entry"));
        match (value.as_f64(), c["value"].as_f64()) {
            (Some(a), Some(b)) => a == b,
            _ => *value == c["value"],
        }
    };
    let list = |k: &str| conditions.get(k).and_then(Value::as_array);
    match (list("any"), list("all")) {
        (Some(any), None) => any.iter().any(holds),
        (None, Some(all)) => all.iter().all(holds),
        _ => unsupported("deny.conditions with both or neither of any/all"),
    }
}

/// One rule's verdict on `object`, with `cluster` answering its API calls.
fn evaluate_rule(rule: &Value, object: &Value, cluster: &[Value]) -> Verdict {
    only_keys(rule, &["name", "match", "exclude", "context", "validate", "skipBackgroundRequests"], "rule");
    let name = rule["name"].as_str().unwrap_or_default().to_owned();
    let validate = rule.get("validate").unwrap_or_else(|| unsupported(format!("rule {name} without validate")));
    only_keys(validate, &["failureAction", "allowExistingViolations", "message", "pattern", "deny"], "validate");
    let action = validate["failureAction"].as_str().unwrap_or_else(|| unsupported("a rule without validate.failureAction")).to_owned();
    if !["Audit", "Enforce"].contains(&action.as_str()) {
        unsupported(format!("the failure action {action}"));
    }
    let selected = block_selects(rule.get("match").unwrap_or_else(|| unsupported("a rule without match")), object, false);
    let excluded = rule.get("exclude").is_some_and(|b| block_selects(b, object, true));
    if !selected || excluded {
        return Verdict { rule: name, outcome: Outcome::Skip, action };
    }
    let vars: BTreeMap<String, Value> = rule["context"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| (e["name"].as_str().unwrap_or_default().to_owned(), context_value(e, object, cluster)))
        .collect();
    let ok = match (validate.get("pattern"), validate.get("deny")) {
        (Some(p), None) => pattern_holds(p, Some(object), ""),
        (None, Some(d)) => !denies(d, &vars),
        _ => unsupported(format!("rule {name}: validate with both or neither of pattern/deny")),
    };
    Verdict { rule: name, outcome: if ok { Outcome::Pass } else { Outcome::Fail }, action }
}

/// Every rule's verdict on `object`.
fn evaluate(policy: &Value, object: &Value, cluster: &[Value]) -> Vec<Verdict> {
    only_keys(&policy["spec"], &["admission", "background", "rules"], "spec");
    policy["spec"]["rules"].as_array().expect("rules").iter().map(|r| evaluate_rule(r, object, cluster)).collect()
}

/// Whether admission lets `object` be created: no failing rule enforces.
fn admitted(policy: &Value, object: &Value) -> bool {
    !evaluate(policy, object, &[]).iter().any(|v| v.outcome == Outcome::Fail && v.action == "Enforce")
}

/// The one outcome of a single-rule policy (or of every rule, when they agree).
fn outcome(policy: &Value, object: &Value, cluster: &[Value]) -> Outcome {
    let verdicts = evaluate(policy, object, cluster);
    let first = verdicts[0].outcome;
    assert!(verdicts.iter().all(|v| v.outcome == first), "the rules disagree on {}: {verdicts:?}", object["metadata"]["name"]);
    first
}

/// The policy as the bootstrap leaves it once the platform is up: every rule of a policy
/// annotated [`AFTER_INSTALL`] gets that failure action.
fn after_install(policy: &Value) -> Value {
    let mut policy = policy.clone();
    if let Some(action) = policy.pointer(&format!("/metadata/annotations/{}", AFTER_INSTALL.replace('/', "~1"))).cloned() {
        for rule in policy["spec"]["rules"].as_array_mut().expect("rules") {
            rule["validate"]["failureAction"] = action.clone();
        }
    }
    policy
}

// ---------------------------------------------------------------------------------------
// Fixtures.

fn with_labels(pairs: &[(&str, &str)]) -> Value {
    Value::Object(pairs.iter().map(|(k, v)| ((*k).to_owned(), json!(v))).collect())
}

fn namespace(name: &str, labels: &[(&str, &str)]) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": with_labels(labels)}})
}

fn object(kind: &str, namespace: &str, name: &str, labels: &[(&str, &str)]) -> Value {
    json!({"kind": kind, "metadata": {"name": name, "namespace": namespace, "labels": with_labels(labels)}})
}

/// `pairs` without the one named `key`, and with it empty.
fn missing_and_empty(pairs: &[(&'static str, &'static str)], key: &str) -> [Vec<(&'static str, &'static str)>; 2] {
    let without: Vec<_> = pairs.iter().filter(|(k, _)| *k != key).copied().collect();
    let empty: Vec<_> = pairs.iter().map(|(k, v)| if *k == key { (*k, "") } else { (*k, *v) }).collect();
    [without, empty]
}

fn renders() -> Vec<(String, Rendered)> {
    idp_test::render::every_profile().expect("every profile renders")
}

/// The ClusterPolicies Argo CD delivers in profile `full`, by name.
fn policies() -> BTreeMap<String, Value> {
    let (_, full) = renders().into_iter().find(|(p, _)| p == "full").expect("profile full");
    delivered_policies(&full)
}

fn delivered_policies(rendered: &Rendered) -> BTreeMap<String, Value> {
    rendered
        .components
        .iter()
        .flat_map(|c| &c.delivered)
        .filter(|o| o["kind"] == "ClusterPolicy")
        .map(|o| (o["metadata"]["name"].as_str().expect("a name").to_owned(), o.clone()))
        .collect()
}

fn failure_actions(policy: &Value) -> Vec<&str> {
    policy["spec"]["rules"].as_array().expect("rules").iter().map(|r| r["validate"]["failureAction"].as_str().unwrap_or("?")).collect()
}

// ---------------------------------------------------------------------------------------
// The policies' intent.

/// The four ship with every profile that has Kyverno, all rules in Audit at install; only
/// the namespace-label policy carries the after-install switch, to Enforce, through its
/// one rule (the JSON patch the manifest documents names `/spec/rules/0`); the three
/// audit policies stay Audit.
#[test]
fn the_four_policies_install_in_audit_and_only_the_namespace_label_policy_enforces_later() {
    let mut profiles_with_kyverno = 0;
    let mut reference: Option<BTreeMap<String, Value>> = None;
    for (profile, rendered) in renders() {
        let found = delivered_policies(&rendered);
        if !rendered.components.iter().any(|c| c.name == "kyverno") {
            assert!(found.is_empty(), "{profile}: ClusterPolicies without Kyverno");
            continue;
        }
        profiles_with_kyverno += 1;
        let names: Vec<&str> = found.keys().map(String::as_str).collect();
        assert_eq!(names, [BUSINESS_LABELS, GOVERNANCE, NAMESPACE_LABELS, COMPONENT_LABELS], "{profile}");
        let specs: BTreeMap<String, Value> = found.iter().map(|(n, p)| (n.clone(), p["spec"].clone())).collect();
        match &reference {
            Some(r) => assert_eq!(&specs, r, "{profile}: the policies differ between profiles"),
            None => reference = Some(specs),
        }
    }
    assert!(profiles_with_kyverno >= 3, "only {profiles_with_kyverno} profiles have Kyverno");

    let policies = policies();
    for (name, policy) in &policies {
        assert!(failure_actions(policy).iter().all(|a| *a == "Audit"), "{name} at install: {:?}", failure_actions(policy));
        assert!(policy["spec"].get("validationFailureAction").is_none(), "{name}: the deprecated spec-level action");
        assert_eq!((&policy["spec"]["admission"], &policy["spec"]["background"]), (&json!(true), &json!(true)), "{name}");
        for rule in policy["spec"]["rules"].as_array().expect("rules") {
            assert_eq!(rule["skipBackgroundRequests"], true, "{name}");
            assert_eq!(rule["validate"]["allowExistingViolations"], true, "{name}");
        }
        let later = after_install(policy);
        let expected = if name == NAMESPACE_LABELS { "Enforce" } else { "Audit" };
        assert!(failure_actions(&later).iter().all(|a| *a == expected), "{name} after install: {:?}", failure_actions(&later));
    }
    let labels_policy = &policies[NAMESPACE_LABELS];
    assert_eq!(labels_policy["spec"]["rules"].as_array().map(Vec::len), Some(1), "the documented patch names rule 0 only");
    assert_eq!(labels_policy.pointer("/spec/rules/0/validate/failureAction"), Some(&json!("Audit")));
    assert_eq!(policies[GOVERNANCE]["spec"]["rules"].as_array().map(Vec::len), Some(2));
}

/// Once the platform is up, a new user namespace without the contract labels is denied; a
/// labelled one is admitted; one missing or emptying any one label is a violation. The
/// namespaces Kubernetes creates itself are exempt; everything else, kyverno-system
/// included, is matched. At install the same violations are only audited.
#[test]
fn the_namespace_label_policy_denies_an_unlabelled_user_namespace_once_enforced() {
    let installed = policies()[NAMESPACE_LABELS].clone();
    let enforced = after_install(&installed);
    let unlabelled = namespace("team-a", &[]);
    assert_eq!(outcome(&enforced, &unlabelled, &[]), Outcome::Fail);
    assert!(!admitted(&enforced, &unlabelled), "an unlabelled user namespace is denied once enforced");
    assert!(admitted(&installed, &unlabelled), "at install it is only audited");
    assert_eq!(outcome(&installed, &unlabelled, &[]), Outcome::Fail, "and still reported");

    let labelled = namespace("team-a", &CONTRACT);
    assert_eq!(outcome(&enforced, &labelled, &[]), Outcome::Pass);
    assert!(admitted(&enforced, &labelled));
    for (key, _) in CONTRACT {
        for labels in missing_and_empty(&CONTRACT, key) {
            let ns = namespace("team-a", &labels);
            assert_eq!(outcome(&enforced, &ns, &[]), Outcome::Fail, "{key}: {labels:?}");
            assert!(!admitted(&enforced, &ns), "{key}: {labels:?}");
        }
    }
    // Other labels do not stand in for the contract, and any non-empty value does.
    let other = namespace("team-a", &[("app.kubernetes.io/name", "x"), ("team", "a")]);
    assert_eq!(outcome(&enforced, &other, &[]), Outcome::Fail);
    let any_values =
        namespace("team-a", &[("app.kubernetes.io/part-of", "x"), ("owner", "y"), ("business-unit", "z"), ("environment", "w")]);
    assert_eq!(outcome(&enforced, &any_values, &[]), Outcome::Pass);

    for exempt in ["kube-system", "kube-public", "kube-node-lease", "default"] {
        assert_eq!(outcome(&enforced, &namespace(exempt, &[]), &[]), Outcome::Skip, "{exempt} is exempt");
        assert!(admitted(&enforced, &namespace(exempt, &[])), "{exempt}");
    }
    for matched in ["kyverno-system", "argocd", "kube-systemx", "defaults"] {
        assert_eq!(outcome(&enforced, &namespace(matched, &[]), &[]), Outcome::Fail, "{matched} must be labelled");
    }
    // Only Namespaces: a ConfigMap without labels is not this policy's business.
    assert_eq!(outcome(&enforced, &object("ConfigMap", "team-a", "c", &[]), &[]), Outcome::Skip);
}

/// Every Namespace the platform renders, in every profile, carries the contract labels:
/// nothing the platform creates is in violation once the policy enforces.
#[test]
fn every_rendered_namespace_satisfies_the_namespace_label_policy() {
    let enforced = after_install(&policies()[NAMESPACE_LABELS]);
    let mut checked = 0;
    for (profile, rendered) in renders() {
        for (component, ns) in rendered.objects().filter(|(_, o)| o["kind"] == "Namespace") {
            assert_eq!(outcome(&enforced, ns, &[]), Outcome::Pass, "{profile}: {component}: Namespace {}", ns["metadata"]["name"]);
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} rendered Namespaces");
}

/// The workload label policy audits Deployments, StatefulSets and DaemonSets outside the
/// platform's system namespaces: a fully labelled one passes, one missing or emptying any
/// label fails; other kinds are not matched.
#[test]
fn the_component_label_policy_audits_workloads_outside_the_system_namespaces() {
    let policy = after_install(&policies()[COMPONENT_LABELS]);
    assert_eq!(failure_actions(&policy), ["Audit"], "audit only, also after install");
    for kind in ["Deployment", "StatefulSet", "DaemonSet"] {
        assert_eq!(outcome(&policy, &object(kind, "shop", "web", &COMPONENT), &[]), Outcome::Pass, "{kind}");
        assert_eq!(outcome(&policy, &object(kind, "shop", "web", &[]), &[]), Outcome::Fail, "{kind}");
        for (key, _) in COMPONENT {
            for labels in missing_and_empty(&COMPONENT, key) {
                assert_eq!(outcome(&policy, &object(kind, "shop", "web", &labels), &[]), Outcome::Fail, "{kind} {labels:?}");
            }
        }
        for exempt in ["kube-system", "kube-public", "kube-node-lease", "kyverno-system"] {
            assert_eq!(outcome(&policy, &object(kind, exempt, "web", &[]), &[]), Outcome::Skip, "{kind} in {exempt}");
        }
        assert_eq!(outcome(&policy, &object(kind, "kyverno", "web", &[]), &[]), Outcome::Fail, "`kyverno` is not the namespace");
        assert!(admitted(&policy, &object(kind, "shop", "web", &[])), "audited, never denied");
    }
    for kind in ["Pod", "ReplicaSet", "Job", "Namespace"] {
        assert_eq!(outcome(&policy, &object(kind, "shop", "web", &[]), &[]), Outcome::Skip, "{kind}");
    }
}

/// The business label policy audits its eight kinds outside the system namespaces for
/// owner, business-unit and environment.
#[test]
fn the_business_label_policy_audits_its_kinds_for_owner_business_unit_and_environment() {
    let policy = after_install(&policies()[BUSINESS_LABELS]);
    assert_eq!(failure_actions(&policy), ["Audit"], "audit only, also after install");
    for kind in ["Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Service", "Ingress", "ConfigMap"] {
        assert_eq!(outcome(&policy, &object(kind, "shop", "x", &BUSINESS), &[]), Outcome::Pass, "{kind}");
        assert_eq!(outcome(&policy, &object(kind, "shop", "x", &[]), &[]), Outcome::Fail, "{kind}");
        for (key, _) in BUSINESS {
            for labels in missing_and_empty(&BUSINESS, key) {
                assert_eq!(outcome(&policy, &object(kind, "shop", "x", &labels), &[]), Outcome::Fail, "{kind} {labels:?}");
            }
        }
        for exempt in ["kube-system", "kube-public", "kube-node-lease", "kyverno-system"] {
            assert_eq!(outcome(&policy, &object(kind, exempt, "x", &[]), &[]), Outcome::Skip, "{kind} in {exempt}");
        }
        assert!(admitted(&policy, &object(kind, "shop", "x", &[])), "audited, never denied");
    }
    for kind in ["Pod", "Secret", "Namespace", "ServiceAccount"] {
        assert_eq!(outcome(&policy, &object(kind, "shop", "x", &[]), &[]), Outcome::Skip, "{kind}");
    }
}

/// The governance policy audits, in a background scan, every namespace without a
/// LimitRange (one rule) or a ResourceQuota (the other), except the bootstrap namespaces
/// and kyverno-system, in both rules: the digest's typo (`kyverno` in the ResourceQuota
/// rule) is fixed, so `kyverno` itself is not exempt.
#[test]
fn the_governance_policy_audits_namespaces_without_a_limitrange_or_a_resourcequota() {
    let policy = after_install(&policies()[GOVERNANCE]);
    assert_eq!(failure_actions(&policy), ["Audit", "Audit"], "audit only, also after install");
    let shop = namespace("shop", &CONTRACT);
    let limits = object("LimitRange", "shop", "limits", &[]);
    let quota = object("ResourceQuota", "shop", "quota", &[]);
    let elsewhere = [object("LimitRange", "other", "limits", &[]), object("ResourceQuota", "other", "quota", &[])];
    let by_rule = |cluster: &[Value]| -> Vec<(String, Outcome)> {
        evaluate(&policy, &shop, cluster).into_iter().map(|v| (v.rule, v.outcome)).collect()
    };
    let both = |lr: Outcome, rq: Outcome| vec![("require-limitrange".to_owned(), lr), ("require-resourcequota".to_owned(), rq)];
    assert_eq!(by_rule(&[]), both(Outcome::Fail, Outcome::Fail));
    assert_eq!(by_rule(&elsewhere), both(Outcome::Fail, Outcome::Fail), "another namespace's objects do not count");
    assert_eq!(by_rule(std::slice::from_ref(&limits)), both(Outcome::Pass, Outcome::Fail));
    assert_eq!(by_rule(std::slice::from_ref(&quota)), both(Outcome::Fail, Outcome::Pass));
    assert_eq!(by_rule(&[limits, quota]), both(Outcome::Pass, Outcome::Pass));
    assert!(admitted(&policy, &shop), "audited, never denied");

    for exempt in [
        "kube-system",
        "kube-public",
        "kube-node-lease",
        "kube-anything",
        "argocd",
        "cert-manager",
        "external-secrets-system",
        "vault-system",
        "kyverno-system",
    ] {
        assert_eq!(outcome(&policy, &namespace(exempt, &CONTRACT), &[]), Outcome::Skip, "{exempt} is exempt from both rules");
    }
    for matched in ["kyverno", "kubernetes", "default", "cicd"] {
        assert_eq!(outcome(&policy, &namespace(matched, &CONTRACT), &[]), Outcome::Fail, "{matched} is not exempt");
    }
    assert_eq!(outcome(&policy, &object("ConfigMap", "shop", "c", &[]), &[]), Outcome::Skip);
}

/// A background scan of the platform as rendered finds no violation of the governance
/// policy: every rendered namespace it does not exempt gets a rendered LimitRange and
/// ResourceQuota, in every profile.
#[test]
fn every_rendered_namespace_satisfies_the_governance_policy() {
    let policy = policies()[GOVERNANCE].clone();
    let mut governed = 0;
    for (profile, rendered) in renders() {
        let cluster: Vec<Value> = rendered.objects().map(|(_, o)| o.clone()).collect();
        for ns in cluster.iter().filter(|o| o["kind"] == "Namespace") {
            let verdicts = evaluate(&policy, ns, &cluster);
            assert!(verdicts.iter().all(|v| v.outcome != Outcome::Fail), "{profile}: Namespace {}: {verdicts:?}", ns["metadata"]["name"]);
            governed += usize::from(verdicts.iter().all(|v| v.outcome == Outcome::Pass));
        }
    }
    assert!(governed >= 10, "only {governed} rendered namespaces were governed (not exempt)");
}

// ---------------------------------------------------------------------------------------
// The evaluator itself.

/// Wildcards, selectors and the any/all forms behave as Kyverno's do.
#[test]
fn the_evaluator_matches_like_kyverno() {
    assert!(wildcard("?*", "a") && wildcard("?*", "abc") && !wildcard("?*", ""));
    assert!(wildcard("kube-*", "kube-system") && wildcard("kube-*", "kube-") && !wildcard("kube-*", "kubeflow"));
    assert!(wildcard("a?c", "abc") && !wildcard("a?c", "ac") && wildcard("*", "") && !wildcard("abc", "abcd"));

    let cm = object("ConfigMap", "shop", "settings", &[("tier", "web"), ("team", "a")]);
    let d = |v: Value| description_matches(&v, &cm);
    assert!(d(json!({"kinds": ["Secret", "ConfigMap"], "namespaces": ["sh*"], "names": ["set?ings"]})));
    assert!(!d(json!({"kinds": ["ConfigMap"], "namespaces": ["other"]})), "AND across fields");
    assert!(d(json!({"selector": {"matchLabels": {"tier": "web"}}})));
    assert!(!d(json!({"selector": {"matchLabels": {"tier": "db"}}})));
    assert!(d(json!({"selector": {"matchExpressions": [{"key": "team", "operator": "In", "values": ["a", "b"]}]}})));
    assert!(!d(json!({"selector": {"matchExpressions": [{"key": "team", "operator": "NotIn", "values": ["a"]}]}})));
    assert!(d(json!({"selector": {"matchExpressions": [{"key": "gone", "operator": "DoesNotExist"}]}})));
    assert!(!d(json!({"selector": {"matchExpressions": [{"key": "gone", "operator": "Exists"}]}})));
    // For a Namespace, `namespaces` names the namespace itself.
    assert!(description_matches(&json!({"namespaces": ["shop"]}), &namespace("shop", &[])));

    let kinds = |k: &str| json!({"resources": {"kinds": [k]}});
    let select = |block: Value, exclude: bool| block_selects(&block, &cm, exclude);
    assert!(select(json!({"any": [kinds("Secret"), kinds("ConfigMap")]}), false));
    assert!(!select(json!({"all": [kinds("Secret"), kinds("ConfigMap")]}), false));
    assert!(select(json!({"all": [kinds("ConfigMap"), {"resources": {"namespaces": ["shop"]}}]}), false));
    assert!(select(json!({"resources": {"kinds": ["ConfigMap"]}}), false), "the bare form");
    assert!(!select(json!({"any": [{"resources": {}}]}), false), "an empty filter matches nothing");
    assert!(select(json!({"any": [kinds("Secret"), kinds("ConfigMap")]}), true), "exclude any: one filter excludes");
    assert!(!select(json!({"all": [kinds("Secret"), kinds("ConfigMap")]}), true), "exclude all: only all filters exclude");

    let pattern = json!({"metadata": {"labels": {"tier": "?*", "team": "a"}}});
    assert!(pattern_holds(&pattern, Some(&cm), ""));
    assert!(!pattern_holds(&json!({"metadata": {"labels": {"team": "b"}}}), Some(&cm), ""));
    assert!(!pattern_holds(&json!({"spec": {"x": "?*"}}), Some(&cm), ""), "a missing field fails");
}

/// Anything beyond the subset panics instead of passing: anchors, operators, ranges and
/// alternatives in patterns; user-info filters, kinds with groups, other selectors'
/// wildcards; other context sources, JMESPath and operators; other failure actions.
#[test]
fn the_evaluator_fails_loudly_on_what_it_does_not_implement() {
    let cm = object("ConfigMap", "shop", "c", &[("n", "5")]);
    for p in [">1", "!x", "a|b", "1-10", "<5", "a&b"] {
        refuses(p, || pattern_holds(&json!({"metadata": {"labels": {"n": p}}}), Some(&cm), ""));
    }
    for key in ["(name)", "=(name)", "^(list)", "+(name)", "X(name)", "<(name)"] {
        refuses(key, || pattern_holds(&json!({"metadata": {key: "?*"}}), Some(&cm), ""));
    }
    refuses("a numeric pattern", || pattern_holds(&json!({"metadata": {"generation": 1}}), Some(&cm), ""));
    let filter = |f: Value| json!({"any": [f]});
    refuses("subjects", || block_selects(&filter(json!({"subjects": [{"kind": "User", "name": "a"}]})), &cm, false));
    refuses("a grouped kind", || block_selects(&filter(json!({"resources": {"kinds": ["apps/v1/Deployment"]}})), &cm, false));
    refuses("namespaceSelector", || block_selects(&filter(json!({"resources": {"namespaceSelector": {}}})), &cm, false));
    refuses("a selector wildcard", || selector_matches(&json!({"matchLabels": {"n": "*"}}), &labels(&cm)));

    let configmaps = filter(json!({"resources": {"kinds": ["ConfigMap"]}}));
    let rule = |validate: Value, context: Value| json!({"name": "r", "match": configmaps, "context": context, "validate": validate});
    let deny = |operator: &str| {
        let condition = json!({"key": "{{n}}", "operator": operator, "value": 0});
        json!({"failureAction": "Audit", "deny": {"conditions": {"any": [condition]}}})
    };
    let call = |path: &str, jmes: &str| json!([{"name": "n", "apiCall": {"urlPath": path, "jmesPath": jmes}}]);
    let limitranges = "/api/v1/namespaces/{{request.object.metadata.name}}/limitranges";
    let count = "items | length(@)";
    assert_eq!(evaluate_rule(&rule(deny("Equals"), call(limitranges, count)), &cm, &[]).outcome, Outcome::Fail, "the subset itself");
    refuses("another operator", || evaluate_rule(&rule(deny("GreaterThan"), call(limitranges, count)), &cm, &[]));
    refuses("another JMESPath", || evaluate_rule(&rule(deny("Equals"), call(limitranges, "items[0]")), &cm, &[]));
    refuses("listing secrets", || evaluate_rule(&rule(deny("Equals"), call("/api/v1/namespaces/shop/secrets", count)), &cm, &[]));
    refuses("another variable", || evaluate_rule(&rule(deny("Equals"), call("/api/v1/namespaces/{{x}}/limitranges", count)), &cm, &[]));
    let configmap = json!([{"name": "n", "configMap": {"name": "x", "namespace": "y"}}]);
    refuses("a configMap context", || evaluate_rule(&rule(deny("Equals"), configmap.clone()), &cm, &[]));
    refuses("Warn", || evaluate_rule(&rule(json!({"failureAction": "Warn", "pattern": {}}), json!([])), &cm, &[]));
    refuses("anyPattern", || evaluate_rule(&rule(json!({"failureAction": "Audit", "anyPattern": []}), json!([])), &cm, &[]));
    let mut with_preconditions = rule(json!({"failureAction": "Audit", "pattern": {}}), json!([]));
    with_preconditions["preconditions"] = json!({});
    refuses("preconditions", || evaluate_rule(&with_preconditions, &cm, &[]));
    refuses("a spec-level action", || evaluate(&json!({"spec": {"validationFailureAction": "Enforce", "rules": []}}), &cm, &[]));
}

/// Asserts that `f` panics as the evaluator does on a feature it does not implement.
fn refuses<T: std::fmt::Debug>(what: &str, f: impl FnOnce() -> T) {
    let message = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(value) => panic!("{what} was evaluated: {value:?}"),
        Err(e) => e.downcast_ref::<String>().cloned().unwrap_or_default(),
    };
    assert!(message.contains("not implemented by this test's Kyverno subset"), "{what}: {message}");
}
