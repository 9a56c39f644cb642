use super::*;
use serde_json::json;

fn key(k: &str) -> Segment {
    Segment::Key(k.to_owned())
}

/// A ConfigMap idp-lab applied, whose `data.mode` a `kubectl patch --field-manager=intruder`
/// changed and to which `kubectl label` added a label, as a 1.20 API server records it.
fn configmap() -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {
            "name": "settings", "namespace": "shop",
            "labels": {"app.kubernetes.io/managed-by": "idp-lab", "team": "payments"},
            "managedFields": [
                {"manager": "idp-lab", "operation": "Apply", "apiVersion": "v1", "time": "2026-01-01T10:00:00Z",
                 "fieldsType": "FieldsV1", "fieldsV1": {
                    "f:data": {"f:level": {}},
                    "f:metadata": {"f:labels": {"f:app.kubernetes.io/managed-by": {}}}}},
                {"manager": "intruder", "operation": "Update", "apiVersion": "v1", "time": "2026-01-01T10:05:00Z",
                 "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:mode": {}}}},
                {"manager": "kubectl-label", "operation": "Update", "apiVersion": "v1", "time": "2026-01-01T10:03:00Z",
                 "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:labels": {"f:team": {}}}}}
            ]
        },
        "data": {"mode": "slow", "level": "3"}
    })
}

/// A Deployment whose containers list is keyed by name: idp-lab owns `web`, a `fighter`
/// owns the image of `sidecar`, and the ports are keyed by port and protocol.
fn deployment() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {
            "name": "web", "namespace": "shop",
            "finalizers": ["example.com/keep", "example.com/other"],
            "managedFields": [
                {"manager": "idp-lab", "operation": "Apply", "time": "2026-01-01T10:00:00Z", "fieldsType": "FieldsV1",
                 "fieldsV1": {"f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {
                    "k:{\"name\":\"web\"}": {".": {}, "f:name": {}, "f:image": {}, "f:args": {},
                        "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}}}}}}}}},
                {"manager": "fighter", "operation": "Update", "time": "2026-01-01T10:01:00Z", "fieldsType": "FieldsV1",
                 "fieldsV1": {
                    "f:metadata": {"f:finalizers": {"v:\"example.com/other\"": {}}},
                    "f:spec": {"f:template": {"f:spec": {"f:containers": {
                        "k:{\"name\":\"sidecar\"}": {".": {}, "f:name": {}, "f:image": {}}}}}}}},
                {"manager": "kube-controller-manager", "operation": "Update", "time": "2026-01-01T10:09:00Z",
                 "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {"f:replicas": {}}}},
                {"manager": "kubelet", "operation": "Update", "time": "2026-01-01T10:10:00Z", "subresource": "status",
                 "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}}}}
            ]
        },
        "spec": {"replicas": 2, "template": {"spec": {"containers": [
            {"name": "web", "image": "nginx:1.25", "args": ["-g", "daemon off;"], "ports": [{"containerPort": 80, "protocol": "TCP"}]},
            {"name": "sidecar", "image": "busybox:2"}
        ]}}},
        "status": {"replicas": 2}
    })
}

fn owner(live: &Value, path: &str) -> Option<(String, Evidence)> {
    attribute(live, path, "idp-lab").map(|a| (a.manager, a.evidence))
}

#[test]
fn paths_read_back_as_drift_names_them() {
    assert_eq!(parse_path(""), Ok(vec![]));
    assert_eq!(parse_path("spec.replicas"), Ok(vec![key("spec"), key("replicas")]));
    assert_eq!(parse_path("metadata.labels[\"idp-lab.dev/lab\"]"), Ok(vec![key("metadata"), key("labels"), key("idp-lab.dev/lab")]));
    assert_eq!(parse_path("data[\"app.properties\"]"), Ok(vec![key("data"), key("app.properties")]));
    assert_eq!(
        parse_path("spec.template.spec.containers[10].image"),
        Ok(vec![key("spec"), key("template"), key("spec"), key("containers"), Segment::Index(10), key("image")])
    );
    assert_eq!(parse_path("[\"a \\\"quoted\\\" key\"].x_y-z"), Ok(vec![key("a \"quoted\" key"), key("x_y-z")]));
    assert_eq!(parse_path("[\"a]b\"][0][1]"), Ok(vec![key("a]b"), Segment::Index(0), Segment::Index(1)]));
}

#[test]
fn every_path_drift_makes_reads_back() {
    let desired = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"labels": {"idp-lab.dev/lab": "a", "plain": "b"}, "annotations": {"x.io/y": "1"}},
        "data": {"app.properties": "a=1", "mode": "fast", "with space": "x"},
        "spec": {"list": [1, {"deep": {"k-ey": [true]}}]}});
    let live = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"labels": {"idp-lab.dev/lab": "b", "plain": "c"}, "annotations": {"x.io/y": "2"}},
        "data": {"app.properties": "a=2", "mode": "slow", "with space": "y"},
        "spec": {"list": [2, {"deep": {"k-ey": [false]}}]}});
    let fields = idp_core::drift::drift(&desired, &live, &[]);
    assert_eq!(fields.len(), 8, "{fields:?}");
    for field in fields {
        let segments = parse_path(&field.path).unwrap_or_else(|e| panic!("{e}"));
        assert!(!segments.is_empty(), "{}", field.path);
    }
}

#[test]
fn paths_that_do_not_read_are_errors() {
    for (path, at) in [(".a", 0), ("a..b", 2), ("a[x]", 2), ("a[\"x\"", 5), ("a[", 1), ("a]", 1), ("a[-1]", 2), ("1a", 0), ("a.*", 2)] {
        let e = parse_path(path).expect_err(path);
        assert_eq!((e.path.as_str(), e.at), (path, at), "{path}: {e}");
    }
    assert!(parse_path("a[*]").is_err(), "wildcards are for patterns");
    assert!(parse_pattern("a[").is_err());
    assert!(parse_pattern("a.**").is_err());
}

#[test]
fn patterns_take_wildcards_and_cover_what_is_below() {
    let pattern = parse_pattern("spec.template.spec.containers[*].image").expect("reads");
    assert_eq!(pattern[4], Segment::AnyIndex);
    let path = |p: &str| parse_path(p).expect("reads");
    assert!(covers(&pattern, &path("spec.template.spec.containers[3].image")));
    assert!(covers(&pattern, &path("spec.template.spec.containers[0].image.x")), "below the pattern");
    assert!(!covers(&pattern, &path("spec.template.spec.containers[0].name")));
    assert!(!covers(&pattern, &path("spec.template.spec.containers")), "above the pattern");
    assert!(!covers(&pattern, &path("spec.template.spec.containers.web.image")), "a key is not an index");
    let any_key = parse_pattern("metadata.annotations.*").expect("reads");
    assert_eq!(any_key[2], Segment::AnyKey);
    assert!(covers(&any_key, &path("metadata.annotations[\"a.io/b\"]")));
    assert!(!covers(&any_key, &path("metadata.labels.a")));
    assert!(covers(&parse_pattern("*").expect("reads"), &path("data.x")));
    assert!(covers(&[], &path("data.x")), "the empty pattern covers all");
}

#[test]
fn the_manager_that_owns_a_changed_value_is_named() {
    let cm = configmap();
    assert_eq!(owner(&cm, "data.mode"), Some(("intruder".into(), Evidence::Owner)));
    assert_eq!(owner(&cm, "metadata.labels.team"), Some(("kubectl-label".into(), Evidence::Owner)));
}

#[test]
fn fields_only_idp_lab_owns_fall_back_to_the_last_writer() {
    let cm = configmap();
    // idp-lab owns data.level and its label; nobody owns a removed key: the last writer
    // other than idp-lab (intruder, at 10:05) is the guess.
    for path in ["data.level", "metadata.labels[\"app.kubernetes.io/managed-by\"]", "data.removed", ""] {
        assert_eq!(owner(&cm, path), Some(("intruder".into(), Evidence::LastWriter)), "{path}");
    }
    assert_eq!(owner(&cm, "not a path"), Some(("intruder".into(), Evidence::LastWriter)));
    let mut only_ours = cm.clone();
    if let Some(list) = only_ours.pointer_mut("/metadata/managedFields").and_then(Value::as_array_mut) {
        list.truncate(1);
    }
    assert_eq!(owner(&only_ours, "data.mode"), None, "nobody else ever wrote it");
    assert_eq!(owner(&json!({"metadata": {}}), "data.mode"), None, "no managedFields at all");
}

#[test]
fn list_items_are_matched_by_their_keys() {
    let d = deployment();
    assert_eq!(owner(&d, "spec.template.spec.containers[1].image"), Some(("fighter".into(), Evidence::Owner)));
    let entries = entries(&d);
    let ours = &entries[0];
    let path = |p: &str| parse_path(p).expect("reads");
    assert!(ours.owns(&d, &path("spec.template.spec.containers[0].image")));
    assert!(!ours.owns(&d, &path("spec.template.spec.containers[1].image")), "sidecar is not idp-lab's");
    assert!(!ours.owns(&d, &path("spec.template.spec.containers[2].image")), "no such item");
    assert!(ours.owns(&d, &path("spec.template.spec.containers[0].ports[0].containerPort")), "a key of two fields");
    assert!(!ours.owns(&d, &path("spec.template.spec.containers[0].ports[0].hostPort")), "a field it does not set");

    // The same port with another protocol is another item.
    let mut udp = d.clone();
    udp["spec"]["template"]["spec"]["containers"][0]["ports"][0]["protocol"] = json!("UDP");
    assert!(!ours.owns(&udp, &path("spec.template.spec.containers[0].ports[0].containerPort")));
    // The items swapped: the index follows the live object.
    let mut swapped = d.clone();
    if let Some(list) = swapped.pointer_mut("/spec/template/spec/containers").and_then(Value::as_array_mut) {
        list.swap(0, 1);
    }
    assert!(ours.owns(&swapped, &path("spec.template.spec.containers[1].image")));
    assert!(!ours.owns(&swapped, &path("spec.template.spec.containers[0].image")));
}

#[test]
fn set_items_are_matched_by_value() {
    let d = deployment();
    let fighter = &entries(&d)[1];
    let path = |p: &str| parse_path(p).expect("reads");
    assert!(fighter.owns(&d, &path("metadata.finalizers[1]")));
    assert!(!fighter.owns(&d, &path("metadata.finalizers[0]")));
    assert!(!fighter.owns(&d, &path("metadata.finalizers[5]")));
    assert_eq!(owner(&d, "metadata.finalizers[1]"), Some(("fighter".into(), Evidence::Owner)));
}

#[test]
fn a_leaf_above_the_path_owns_it_whole_but_a_dot_does_not() {
    let d = deployment();
    let ours = &entries(&d)[0];
    let path = |p: &str| parse_path(p).expect("reads");
    // `f:args: {}`: an atomic list, owned whole.
    assert!(ours.owns(&d, &path("spec.template.spec.containers[0].args[1]")));
    assert!(ours.owns(&d, &path("spec.template.spec.containers[0].args[7]")), "even an item live lacks");
    // `k:{"name":"web"}: {".": {}, ...}` owns the item and the fields it lists, not others.
    assert!(ours.owns(&d, &path("spec.template.spec.containers[0]")));
    assert!(!ours.owns(&d, &path("spec.template.spec.containers[0].resources")));
    // A granular map: `.` is the map's existence, not its keys.
    let labels = json!({"f:metadata": {"f:labels": {".": {}, "f:a": {}}}});
    let live = json!({"metadata": {"labels": {"a": "1", "b": "2"}}});
    assert!(owns(&labels, Some(&live), &path("metadata.labels.a")));
    assert!(!owns(&labels, Some(&live), &path("metadata.labels.b")));
    assert!(owns(&labels, Some(&live), &path("metadata.labels")));
    assert!(owns(&labels, Some(&live), &[]), "the root of any trie");
    assert!(!owns(&json!(null), Some(&live), &path("metadata")), "no trie");
    assert!(!owns(&json!({"i:0": {}}), Some(&json!(["a"])), &[Segment::AnyIndex]), "patterns are not owned");
}

#[test]
fn positional_keys_and_malformed_keys() {
    let path = [Segment::Index(1)];
    let list = json!(["a", "b"]);
    assert!(owns(&json!({"i:1": {}}), Some(&list), &path));
    assert!(!owns(&json!({"i:0": {}}), Some(&list), &path));
    assert!(!owns(&json!({"k:not json": {}}), Some(&json!([{}, {"a": 1}])), &path));
    assert!(!owns(&json!({"k:{}": {}}), Some(&json!([{}, {"a": 1}])), &path), "an empty key matches nothing");
    assert!(!owns(&json!({"v:": {}}), Some(&list), &path));
    assert!(!owns(&json!({"f:1": {}}), Some(&list), &path), "a field is not an item");
    assert!(owns(&json!({"k:{\"port\":80.0}": {}}), Some(&json!([{}, {"port": 80}])), &path), "numbers by value");
}

#[test]
fn status_writes_and_subresources_are_never_the_culprit() {
    let d = deployment();
    // The kubelet's status-subresource entry claims spec.replicas here (it never would):
    // subresource entries are not counted, and kube-controller-manager's status-only write
    // is not a last writer. So the fallback is fighter, not the later writers.
    assert_eq!(owner(&d, "spec.replicas"), Some(("fighter".into(), Evidence::LastWriter)));
}

#[test]
fn entries_skip_what_is_not_fields_v1() {
    let live = json!({"metadata": {"managedFields": [
        {"manager": "a", "operation": "Apply", "fieldsType": "FieldsV2", "fieldsV1": {}},
        {"operation": "Apply", "fieldsType": "FieldsV1", "fieldsV1": {}},
        {"manager": "c", "fieldsV1": {"f:data": {}}, "subresource": ""},
        "not an entry"
    ]}});
    let found = entries(&live);
    assert_eq!(found.len(), 1);
    assert_eq!((found[0].manager.as_str(), found[0].operation.as_str(), found[0].subresource.as_ref()), ("c", "", None));
    assert!(entries(&json!({"metadata": {"managedFields": "x"}})).is_empty());
}

#[test]
fn the_latest_of_several_owners_wins() {
    let live = json!({"metadata": {"managedFields": [
        {"manager": "late", "operation": "Update", "time": "2026-01-01T10:09:00Z", "fieldsV1": {"f:data": {"f:a": {}}}},
        {"manager": "early", "operation": "Apply", "time": "2026-01-01T10:01:00Z", "fieldsV1": {"f:data": {"f:a": {}}}},
        {"manager": "untimed", "operation": "Update", "fieldsV1": {"f:data": {"f:a": {}}}}
    ]}, "data": {"a": "x"}});
    assert_eq!(owner(&live, "data.a"), Some(("late".into(), Evidence::Owner)));
}
