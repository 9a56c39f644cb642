use super::*;
use serde_json::{Value, json};

const OWNED: [&str; 3] = ["app.kubernetes.io/managed-by", "idp-lab.dev/lab", "idp-lab.dev/component"];

/// A Deployment as an SSA dry-run returns it: defaulted, with server metadata and status.
fn deployment() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web", "namespace": "apps", "uid": "u-1", "resourceVersion": "42", "generation": 3,
            "creationTimestamp": "2024-01-01T00:00:00Z",
            "managedFields": [{"manager": "idp-lab", "operation": "Apply"}],
            "labels": {"app.kubernetes.io/managed-by": "idp-lab", "idp-lab.dev/lab": "demo", "idp-lab.dev/component": "web"},
            "annotations": {"deployment.kubernetes.io/revision": "3", "idp-lab.dev/note": "hello"}
        },
        "spec": {
            "replicas": 2,
            "revisionHistoryLimit": 10,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 80, "protocol": "TCP"}]}], "securityContext": {}}
            }
        },
        "status": {"observedGeneration": 3, "replicas": 2, "availableReplicas": 2}
    })
}

fn paths(diffs: &[FieldDiff]) -> Vec<&str> {
    diffs.iter().map(|d| d.path.as_str()).collect()
}

#[test]
fn identical_objects_do_not_drift() {
    assert_eq!(drift(&deployment(), &deployment(), &OWNED), vec![]);
    assert_eq!(unified(&deployment(), &deployment()), "");
}

#[test]
fn kubectl_scale_is_exactly_spec_replicas() {
    let mut live = deployment();
    live["spec"]["replicas"] = json!(5);
    live["status"]["replicas"] = json!(5);
    live["metadata"]["resourceVersion"] = json!("43");
    assert_eq!(
        drift(&deployment(), &live, &OWNED),
        vec![FieldDiff { path: "spec.replicas".into(), desired: Some(json!(2)), live: Some(json!(5)) }]
    );
}

#[test]
fn a_changed_idp_lab_label_is_exactly_that_label() {
    let mut live = deployment();
    live["metadata"]["labels"]["idp-lab.dev/lab"] = json!("other");
    let diffs = drift(&deployment(), &live, &OWNED);
    assert_eq!(
        diffs,
        vec![FieldDiff { path: r#"metadata.labels["idp-lab.dev/lab"]"#.into(), desired: Some(json!("demo")), live: Some(json!("other")) }]
    );
    assert_eq!(diffs[0].to_string(), r#"metadata.labels["idp-lab.dev/lab"]: live "other", desired "demo""#);
}

#[test]
fn a_removed_owned_label_is_drift_even_if_the_desired_side_lacks_it() {
    let mut live = deployment();
    live["metadata"]["labels"].as_object_mut().map(|l| l.remove("idp-lab.dev/component"));
    assert_eq!(paths(&drift(&deployment(), &live, &OWNED)), [r#"metadata.labels["idp-lab.dev/component"]"#]);
    // An owned label on neither side is not drift; one only live has is reported.
    let mut desired = deployment();
    desired["metadata"]["labels"].as_object_mut().map(|l| l.remove("idp-lab.dev/component"));
    assert_eq!(drift(&desired, &live, &OWNED), vec![]);
    let diffs = drift(&desired, &deployment(), &OWNED);
    assert_eq!(
        diffs,
        vec![FieldDiff { path: r#"metadata.labels["idp-lab.dev/component"]"#.into(), desired: None, live: Some(json!("web")) }]
    );
}

#[test]
fn a_foreign_label_or_annotation_is_not_drift() {
    let mut live = deployment();
    live["metadata"]["labels"]["team"] = json!("payments");
    live["metadata"]["annotations"]["example.com/owner"] = json!("alice");
    assert_eq!(drift(&deployment(), &live, &OWNED), vec![], "SSA leaves keys idp-lab does not set alone");
}

#[test]
fn a_changed_annotation_idp_lab_sets_is_drift_tool_annotations_are_not() {
    let mut live = deployment();
    live["metadata"]["annotations"]["idp-lab.dev/note"] = json!("edited");
    live["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = json!("4");
    live["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] = json!("{}");
    assert_eq!(
        drift(&deployment(), &live, &OWNED),
        vec![FieldDiff {
            path: r#"metadata.annotations["idp-lab.dev/note"]"#.into(),
            desired: Some(json!("hello")),
            live: Some(json!("edited"))
        }]
    );
}

#[test]
fn status_and_server_metadata_are_ignored() {
    let mut live = deployment();
    live["status"] = json!({"observedGeneration": 9, "replicas": 1, "conditions": [{"type": "Available", "status": "False"}]});
    live["metadata"]["resourceVersion"] = json!("999");
    live["metadata"]["generation"] = json!(9);
    live["metadata"]["managedFields"] = json!([{"manager": "kubectl", "operation": "Update"}]);
    live["metadata"]["finalizers"] = json!(["example.com/keep"]);
    assert_eq!(drift(&deployment(), &live, &OWNED), vec![]);
    // The rendering shows what differs in the views, drift or not: here a finalizer
    // only live has (a real dry-run carries it too, so it would not show).
    assert_eq!(
        unified(&deployment(), &live),
        "--- live\n+++ desired\n@@ -3,8 +3,6 @@\n metadata:\n   annotations:\n     idp-lab.dev/note: hello\n-  finalizers:\n-    - example.com/keep\n   labels:\n     app.kubernetes.io/managed-by: idp-lab\n     idp-lab.dev/component: web\n"
    );
}

#[test]
fn a_config_map_value_change_is_that_key() {
    let cm = |value: &str| {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": "apps", "labels": {"idp-lab.dev/lab": "demo"}},
            "data": {"LOG_LEVEL": "info", "app.properties": value}})
    };
    let diffs = drift(&cm("a=1\n"), &cm("a=2\n"), &OWNED);
    assert_eq!(
        diffs,
        vec![FieldDiff { path: r#"data["app.properties"]"#.into(), desired: Some(json!("a=1\n")), live: Some(json!("a=2\n")) }]
    );
    let mut live = cm("a=1\n");
    live["data"]["LOG_LEVEL"] = json!("debug");
    live["data"]["EXTRA"] = json!("x");
    let diffs = drift(&cm("a=1\n"), &live, &OWNED);
    assert_eq!(
        diffs,
        vec![
            FieldDiff { path: "data.EXTRA".into(), desired: None, live: Some(json!("x")) },
            FieldDiff { path: "data.LOG_LEVEL".into(), desired: Some(json!("info")), live: Some(json!("debug")) },
        ]
    );
}

#[test]
fn nested_list_paths_and_order() {
    let mut live = deployment();
    live["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:latest");
    live["spec"]["replicas"] = json!(1);
    live["metadata"]["labels"]["idp-lab.dev/lab"] = json!("x");
    assert_eq!(
        paths(&drift(&deployment(), &live, &OWNED)),
        [r#"metadata.labels["idp-lab.dev/lab"]"#, "spec.replicas", "spec.template.spec.containers[0].image"]
    );
    let mut live = deployment();
    if let Some(containers) = live["spec"]["template"]["spec"]["containers"].as_array_mut() {
        containers.push(json!({"name": "debug", "image": "busybox"}));
    }
    let diffs = drift(&deployment(), &live, &OWNED);
    assert_eq!(
        diffs,
        vec![FieldDiff {
            path: "spec.template.spec.containers[1]".into(),
            desired: None,
            live: Some(json!({"name": "debug", "image": "busybox"}))
        }]
    );
}

#[test]
fn normalisation_empty_collections_numbers_and_hpa_metrics() {
    let role =
        |rules: Value| json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "r"}, "rules": rules});
    assert_eq!(drift(&role(json!([])), &role(Value::Null), &[]), vec![]);
    let mut without = role(json!([]));
    without.as_object_mut().map(|o| o.remove("rules"));
    assert_eq!(drift(&role(json!([])), &without, &[]), vec![]);
    assert_eq!(drift(&json!({"kind": "X", "spec": {"a": {}}}), &json!({"kind": "X", "spec": {"a": null, "b": {"c": []}}}), &[]), vec![]);
    assert_eq!(drift(&json!({"kind": "X", "spec": {"n": 1}}), &json!({"kind": "X", "spec": {"n": 1.0}}), &[]), vec![]);

    let metric = json!({"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}});
    let hpa = |metrics: Value| json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "h"}, "spec": {"maxReplicas": 3, "metrics": metrics}});
    assert_eq!(drift(&hpa(json!([metric.clone(), metric.clone(), {}])), &hpa(json!([metric.clone()])), &[]), vec![]);
    // Not for other kinds: a duplicated list entry is a difference there.
    let other = |items: Value| json!({"apiVersion": "example.com/v1", "kind": "Widget", "spec": {"metrics": items}});
    assert_eq!(paths(&drift(&other(json!([1, 1])), &other(json!([1])), &[])), ["spec.metrics[1]"]);
}

#[test]
fn an_absent_live_object_is_one_difference() {
    let diffs = drift(&deployment(), &Value::Null, &OWNED);
    assert_eq!(diffs.len(), 1);
    assert_eq!((diffs[0].path.as_str(), diffs[0].live.as_ref()), ("", None));
    assert_eq!(diffs[0].to_string().split(':').next(), Some("(object)"));
    let text = unified(&deployment(), &Value::Null);
    assert!(text.starts_with("--- live\n+++ desired\n@@ -0,0 +1,"), "{text}");
    assert!(text.lines().skip(3).all(|l| l.starts_with('+')), "{text}");
}

#[test]
fn unified_shows_the_change_with_context() {
    let mut live = deployment();
    live["spec"]["replicas"] = json!(5);
    let text = unified(&deployment(), &live);
    assert_eq!(
        text,
        "--- live\n+++ desired\n@@ -10,7 +10,7 @@\n   name: web\n   namespace: apps\n spec:\n-  replicas: 5\n+  replicas: 2\n   revisionHistoryLimit: 10\n   selector:\n     matchLabels:\n"
    );
}

#[test]
fn unified_separates_distant_changes_into_hunks() {
    let many = |changed: &[usize]| {
        let data: serde_json::Map<String, Value> =
            (0..30).map(|i| (format!("k{i:02}"), json!(if changed.contains(&i) { "new" } else { "old" }))).collect();
        json!({"apiVersion": "v1", "kind": "ConfigMap", "data": data})
    };
    let text = unified(&many(&[2, 25]), &many(&[]));
    assert_eq!(text.matches("\n@@ ").count() + usize::from(text.starts_with("@@")), 2, "{text}");
    assert!(text.contains("-  k02: old\n+  k02: new\n"), "{text}");
    assert!(text.contains("-  k25: old\n+  k25: new\n"), "{text}");
    // Two changes close together are one hunk.
    let text = unified(&many(&[10, 14]), &many(&[]));
    assert_eq!(text.matches("@@ -").count(), 1, "{text}");
    // As `diff -u` does: 6 unchanged lines between (3 of context each) still join, 7 do not.
    let text = unified(&many(&[10, 17]), &many(&[]));
    assert_eq!(text.matches("@@ -").count(), 1, "6 lines apart: {text}");
    let text = unified(&many(&[10, 18]), &many(&[]));
    assert_eq!(text.matches("@@ -").count(), 2, "7 lines apart: {text}");
}

#[test]
fn line_diff_aligns_insertions_and_deletions() {
    let old = ["a", "b", "c", "d"];
    let new = ["a", "x", "c", "d", "e"];
    assert_eq!(line_diff(&old, &new), vec![Op::Same(0, 0), Op::Removed(1), Op::Added(1), Op::Same(2, 2), Op::Same(3, 3), Op::Added(4)]);
    assert_eq!(line_diff(&[], &["a"]), vec![Op::Added(0)]);
    assert_eq!(line_diff(&["a"], &[]), vec![Op::Removed(0)]);
    assert_eq!(line_diff(&["x", "a", "y"], &["a"]), vec![Op::Removed(0), Op::Same(1, 0), Op::Removed(2)]);
}

/// The LCS length of two line lists, the plain way, to check `line_diff` against.
fn lcs_len(a: &[&str], b: &[&str]) -> usize {
    let mut t = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in 0..a.len() {
        for j in 0..b.len() {
            t[i + 1][j + 1] = if a[i] == b[j] { t[i][j] + 1 } else { t[i][j + 1].max(t[i + 1][j]) };
        }
    }
    t[a.len()][b.len()]
}

proptest::proptest! {
    /// Whatever the lines, the diff rebuilds both sides in order, keeps as many lines as a
    /// longest common subsequence has (no needless removals and additions), and puts a
    /// change's removals before its additions.
    #[test]
    fn line_diffs_rebuild_both_sides_and_are_minimal(
        old in proptest::collection::vec(proptest::sample::select(vec!["a", "b", "c", "d"]), 0..12),
        new in proptest::collection::vec(proptest::sample::select(vec!["a", "b", "c", "d"]), 0..12),
    ) {
        let ops = line_diff(&old, &new);
        let (mut rebuilt_old, mut rebuilt_new, mut same) = (Vec::new(), Vec::new(), 0);
        let (mut next_old, mut next_new) = (0, 0);
        for op in &ops {
            match *op {
                Op::Same(o, n) => {
                    proptest::prop_assert_eq!((o, n), (next_old, next_new));
                    proptest::prop_assert_eq!(old[o], new[n]);
                    rebuilt_old.push(old[o]);
                    rebuilt_new.push(new[n]);
                    next_old += 1;
                    next_new += 1;
                    same += 1;
                }
                Op::Removed(o) => {
                    proptest::prop_assert_eq!(o, next_old);
                    rebuilt_old.push(old[o]);
                    next_old += 1;
                }
                Op::Added(n) => {
                    proptest::prop_assert_eq!(n, next_new);
                    rebuilt_new.push(new[n]);
                    next_new += 1;
                }
            }
        }
        proptest::prop_assert_eq!(&rebuilt_old, &old);
        proptest::prop_assert_eq!(&rebuilt_new, &new);
        proptest::prop_assert_eq!(same, lcs_len(&old, &new));
        for pair in ops.windows(2) {
            proptest::prop_assert!(!matches!(pair, [Op::Added(_), Op::Removed(_)]), "an addition before a removal: {:?}", ops);
        }
    }
}

#[test]
fn only_an_autoscaling_hpa_loses_duplicate_and_empty_metrics() {
    let metric = json!({"type": "Resource", "resource": {"name": "cpu"}});
    let with = |api_version: &str, kind: &str| json!({"apiVersion": api_version, "kind": kind, "spec": {"metrics": [metric.clone(), metric.clone(), {}]}});
    assert_eq!(normalized(&with("autoscaling/v2", "HorizontalPodAutoscaler"))["spec"]["metrics"], json!([metric.clone()]));
    // The same kind name in another group, or another kind of the group: untouched.
    let untouched = json!([metric.clone(), metric.clone(), null]);
    assert_eq!(normalized(&with("example.com/v1", "HorizontalPodAutoscaler"))["spec"]["metrics"], untouched);
    assert_eq!(normalized(&with("autoscaling/v1", "Scale"))["spec"]["metrics"], untouched);
}

#[test]
fn keys_that_are_not_plain_words_are_quoted_in_paths() {
    let cm = |key: &str, value: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {key: value}});
    for (key, path) in [("9lives", "data[\"9lives\"]"), ("_x", "data._x"), ("a-b_c1", "data.a-b_c1"), ("a.b", "data[\"a.b\"]")] {
        assert_eq!(paths(&drift(&cm(key, "1"), &cm(key, "2"), &[])), [path], "{key}");
    }
}

#[test]
fn a_change_too_large_to_align_is_shown_removed_then_added() {
    // 2 100 changed lines a side are more cells than `unified` aligns: the region is shown
    // whole, every old line removed and then every new line added, even the lines both
    // sides share (which an alignment would keep as context).
    let cm = |odd: &str| {
        let data: serde_json::Map<String, Value> =
            (0..2101).map(|i| (format!("k{i:04}"), json!(if i % 2 == 1 { format!("{odd}{i}") } else { format!("same{i}") }))).collect();
        json!({"apiVersion": "v1", "kind": "ConfigMap", "data": data})
    };
    let text = unified(&cm("new"), &cm("old"));
    let removed: Vec<&str> = text.lines().filter(|l| l.starts_with('-') && !l.starts_with("---")).collect();
    let added: Vec<&str> = text.lines().filter(|l| l.starts_with('+') && !l.starts_with("+++")).collect();
    assert_eq!((removed.len(), added.len()), (2099, 2099), "shared lines inside the region are not aligned");
    assert_eq!((removed[0], removed[1], removed[2098]), ("-  k0001: old1", "-  k0002: same2", "-  k2099: old2099"));
    assert_eq!((added[0], added[2098]), ("+  k0001: new1", "+  k2099: new2099"));
    let first_added = text.lines().position(|l| l == added[0]).expect("added");
    let last_removed = text.lines().position(|l| l == removed[2098]).expect("removed");
    assert!(last_removed < first_added, "all removed before all added");
}
