use super::*;
use serde_json::{Value, json};

fn place(source: &str, document: usize, item: Option<usize>) -> Place {
    Place { source: source.into(), document, item }
}

fn problems(result: Result<Vec<Object>, LoadError>) -> Vec<Problem> {
    match result {
        Err(LoadError::Documents { problems }) => problems,
        other => panic!("expected document problems, got {other:?}"),
    }
}

const TWO: &str = "\
apiVersion: v1
kind: ConfigMap
metadata: {name: a, namespace: ns}
---
# only a comment: skipped
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: b
";

#[test]
fn loads_documents_with_their_places() {
    let objects = load(TWO, "app.yaml").expect("loads");
    assert_eq!(objects.len(), 2);
    assert_eq!(objects[0].place, place("app.yaml", 1, None));
    assert_eq!((objects[0].kind(), objects[0].name(), objects[0].namespace()), ("ConfigMap", "a", "ns"));
    assert_eq!(objects[1].place, place("app.yaml", 2, None));
    assert_eq!((objects[1].api_version(), objects[1].kind(), objects[1].namespace()), ("apps/v1", "Deployment", ""));
    assert_eq!(objects[1].identity().to_string(), "Deployment.apps b");
    assert_eq!(objects[0].identity().to_string(), "ConfigMap ns/a");
}

#[test]
fn empty_input_is_no_objects() {
    assert_eq!(load("", "empty.yaml").expect("loads"), vec![]);
    assert_eq!(load("---\n---\n# nothing\n", "empty.yaml").expect("loads"), vec![]);
}

#[test]
fn a_missing_kind_is_refused_with_its_document_index() {
    let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nmetadata: {name: b}\n";
    let problems = problems(load(text, "in.yaml"));
    assert_eq!(problems, vec![Problem::Missing { place: place("in.yaml", 2, None), fields: vec!["kind"] }]);
    assert_eq!(problems[0].to_string(), "in.yaml: document 2: missing kind");
}

#[test]
fn every_problem_of_a_file_is_reported() {
    let text = "\
kind: ConfigMap
metadata: {name: a}
---
- just
- a list
---
apiVersion: v1
kind: ConfigMap
metadata: {name: fine}
---
apiVersion: v1
kind: ConfigMap
---
hello
---
apiVersion: v1
kind: Secret
metadata: {name: s, namespace: 3}
---
apiVersion: v1
kind: ''
metadata: {name: 7}
";
    let err = load(text, "bad.yaml").expect_err("refused");
    let LoadError::Documents { problems } = &err else { panic!("{err:?}") };
    assert_eq!(
        problems,
        &vec![
            Problem::Missing { place: place("bad.yaml", 1, None), fields: vec!["apiVersion"] },
            Problem::NotAMapping { place: place("bad.yaml", 2, None), found: "a sequence" },
            Problem::Missing { place: place("bad.yaml", 4, None), fields: vec!["metadata.name"] },
            Problem::NotAMapping { place: place("bad.yaml", 5, None), found: "a string" },
            Problem::WrongType { place: place("bad.yaml", 6, None), field: "metadata.namespace", expected: "a string", found: "a number" },
            Problem::Missing { place: place("bad.yaml", 7, None), fields: vec!["kind", "metadata.name"] },
        ]
    );
    let message = err.to_string();
    assert_eq!(message.lines().count(), 6, "{message}");
    assert!(
        message.starts_with("bad.yaml: document 1: missing apiVersion\nbad.yaml: document 2: not a mapping but a sequence\n"),
        "{message}"
    );
}

#[test]
fn metadata_that_is_not_a_mapping_is_named() {
    let problems = problems(load("apiVersion: v1\nkind: ConfigMap\nmetadata: a\n", "m.yaml"));
    assert_eq!(
        problems,
        vec![
            Problem::Missing { place: place("m.yaml", 1, None), fields: vec!["metadata.name"] },
            Problem::WrongType { place: place("m.yaml", 1, None), field: "metadata", expected: "a mapping", found: "a string" },
        ]
    );
}

#[test]
fn a_syntax_error_names_the_source_and_position() {
    let err = load("apiVersion: v1\nkind: [\n", "broken.yaml").expect_err("refused");
    let LoadError::Syntax { input, message } = &err else { panic!("{err:?}") };
    assert_eq!(input, "broken.yaml");
    assert!(message.contains("line 2"), "{message}");
    assert!(err.to_string().starts_with("broken.yaml: "));
}

#[test]
fn a_list_is_expanded_with_item_places() {
    let text = "\
apiVersion: v1
kind: ConfigMap
metadata: {name: first}
---
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: ConfigMap, metadata: {name: a}}
- {apiVersion: v1, kind: Secret, metadata: {name: b}}
";
    let objects = load(text, "list.yaml").expect("loads");
    let got: Vec<_> = objects.iter().map(|o| (o.kind(), o.name(), o.place.clone())).collect();
    assert_eq!(
        got,
        vec![
            ("ConfigMap", "first", place("list.yaml", 1, None)),
            ("ConfigMap", "a", place("list.yaml", 2, Some(1))),
            ("Secret", "b", place("list.yaml", 2, Some(2))),
        ]
    );
    assert_eq!(objects[2].place.to_string(), "list.yaml: document 2, item 2");
}

#[test]
fn an_empty_list_is_no_objects_and_bad_items_are_named() {
    assert_eq!(load("apiVersion: v1\nkind: List\nitems: []\n", "l.yaml").expect("loads"), vec![]);
    assert_eq!(load("apiVersion: v1\nkind: List\n", "l.yaml").expect("loads"), vec![]);
    let found = problems(load("apiVersion: v1\nkind: List\nitems:\n- 3\n- {apiVersion: v1, metadata: {name: x}}\n", "l.yaml"));
    assert_eq!(
        found,
        vec![
            Problem::NotAMapping { place: place("l.yaml", 1, Some(1)), found: "a number" },
            Problem::Missing { place: place("l.yaml", 1, Some(2)), fields: vec!["kind"] },
        ]
    );
    let found = problems(load("apiVersion: v1\nkind: List\nitems: {a: 1}\n", "l.yaml"));
    assert_eq!(
        found,
        vec![Problem::WrongType { place: place("l.yaml", 1, None), field: "items", expected: "a sequence", found: "a mapping" }]
    );
}

#[test]
fn a_typed_list_gives_its_items_kind_and_api_version() {
    let text =
        "apiVersion: v1\nkind: ConfigMapList\nitems:\n- metadata: {name: a}\n- {apiVersion: v1, kind: Secret, metadata: {name: b}}\n";
    let objects = load(text, "t.yaml").expect("loads");
    assert_eq!(objects[0].value, json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}}));
    assert_eq!(objects[1].kind(), "Secret");
}

#[test]
fn a_kind_ending_in_list_without_items_is_an_object() {
    let objects = load("apiVersion: x.io/v1\nkind: AllowList\nmetadata: {name: a}\nspec: {}\n", "a.yaml").expect("loads");
    assert_eq!(objects.len(), 1);
    assert_eq!(objects[0].kind(), "AllowList");
}

#[test]
fn a_duplicate_is_named_with_both_places() {
    let a = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: shop}\n";
    // Another version of the same group is the same object; another namespace is not.
    let b = "\
apiVersion: v1
kind: ConfigMap
metadata: {name: web, namespace: shop}
---
apiVersion: apps/v1beta2
kind: Deployment
metadata: {name: web, namespace: shop}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: other}
";
    let err = load_all([("a.yaml", a), ("b.yaml", b)]).expect_err("a duplicate");
    let LoadError::Duplicates { duplicates } = &err else { panic!("{err:?}") };
    assert_eq!(duplicates.len(), 1);
    assert_eq!(duplicates[0].first, place("a.yaml", 1, None));
    assert_eq!(duplicates[0].again, place("b.yaml", 2, None));
    assert_eq!(err.to_string(), "b.yaml: document 2: Deployment.apps shop/web is given twice, first at a.yaml: document 1");
}

#[test]
fn duplicates_inside_one_list_and_core_group() {
    let text = "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: a}}\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: a}}\n";
    let objects = load(text, "l.yaml").expect("loads");
    let d = duplicates(&objects);
    assert_eq!(d.len(), 1);
    assert_eq!((d[0].first.item, d[0].again.item), (Some(1), Some(2)));
    assert_eq!(d[0].identity, Identity { group: String::new(), kind: "ConfigMap".into(), namespace: String::new(), name: "a".into() });
    assert!(duplicates(&objects[..1]).is_empty());
}

#[test]
fn load_all_reports_every_failing_source() {
    let err = load_all([("a.yaml", "kind: X\n"), ("ok.yaml", TWO), ("b.yaml", "a: [\n")]).expect_err("refused");
    let errors = err.errors();
    assert_eq!(errors.len(), 2, "{err}");
    assert!(matches!(errors[0], LoadError::Documents { .. }));
    assert!(matches!(errors[1], LoadError::Syntax { input, .. } if input == "b.yaml"));
    assert!(err.to_string().starts_with("a.yaml: document 1: missing apiVersion, metadata.name\nb.yaml: "), "{err}");
    assert_eq!(load_all([("ok.yaml", TWO)]).expect("loads").len(), 2);
}

#[test]
fn api_groups() {
    assert_eq!(api_group("v1"), "");
    assert_eq!(api_group("apps/v1"), "apps");
    assert_eq!(api_group("gateway.networking.k8s.io/v1beta1"), "gateway.networking.k8s.io");
}

/// The render of a profile, as the YAML stream `idp-lab render` prints.
fn rendered_stream(profile: &str) -> (crate::render::Rendered, String) {
    use crate::render::{self, Rendered, Vars};
    let catalogue = crate::catalogue::Catalogue::load().expect("the embedded catalogue loads");
    let inputs = crate::profiles::Inputs { profile_flag: Some(profile), ..Default::default() };
    let config = crate::profiles::resolve(&inputs, &catalogue.chart_components()).expect("the profile resolves");
    let settings = crate::settings::resolve(&config, &crate::settings::Probes::default()).expect("settings");
    let vars = Vars::new(&config, &settings.network);
    let rendered = render::render(&config, &catalogue, &vars).expect("renders");
    let stream = Rendered::to_yaml_stream(&rendered.components);
    (rendered, stream)
}

#[test]
fn the_rendered_catalogue_loads_without_duplicates() {
    for profile in ["standard", "full"] {
        let (rendered, stream) = rendered_stream(profile);
        let objects = load_all([("render", stream.as_str())]).unwrap_or_else(|e| panic!("{profile}: {e}"));
        // Every rendered object, in the same order, and nothing else.
        let expected: Vec<&Value> = rendered.objects().map(|(_, o)| o).collect();
        assert!(expected.len() > 20, "{profile}: only {} objects", expected.len());
        assert_eq!(objects.iter().map(|o| &o.value).collect::<Vec<_>>(), expected, "{profile}");
        assert!(duplicates(&objects).is_empty());
        // Document indices count the objects (comment-only reference blocks are skipped).
        assert_eq!(objects.last().map(|o| o.place.document), Some(expected.len()));
    }
}

#[test]
fn base64_matches_the_rfc_vectors() {
    let vectors =
        [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("fooba", "Zm9vYmE="), ("foobar", "Zm9vYmFy")];
    for (plain, encoded) in vectors {
        assert_eq!(base64(plain.as_bytes()), encoded, "{plain:?}");
    }
    // The last two characters of the alphabet, and bytes above 127.
    assert_eq!(base64(&[0xfb, 0xff, 0xbf]), "+/+/");
    assert_eq!(base64(&[0xff, 0xfe, 0xfd, 0x00]), "//79AA==");
    assert_eq!(base64("pässwörd\n".as_bytes()), "cMOkc3N3w7ZyZAo=");
}

/// A test-only decoder, to check the encoder on arbitrary bytes.
fn decode64(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for c in text.bytes().filter(|&c| c != b'=') {
        let v = ALPHABET.iter().position(|&a| a == c).expect("a base64 character") as u32;
        bits = (bits << 6) | v;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
        }
    }
    out
}

proptest::proptest! {
    #[test]
    fn base64_round_trips(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
        let encoded = base64(&bytes);
        proptest::prop_assert_eq!(encoded.len(), bytes.len().div_ceil(3) * 4);
        proptest::prop_assert_eq!(decode64(&encoded), bytes);
    }
}

#[test]
fn service_ports_get_tcp_but_a_set_protocol_is_kept() {
    let mut svc = json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
        "spec": {"ports": [{"port": 80}, {"port": 53, "protocol": "UDP"}, {"port": 81, "protocol": null}]},
    });
    normalize(&mut svc);
    assert_eq!(
        svc["spec"]["ports"],
        json!([{"port": 80, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}, {"port": 81, "protocol": "TCP"}])
    );
}

#[test]
fn container_ports_get_tcp_in_pods_and_every_pod_template() {
    let spec = || {
        json!({"containers": [{"name": "a", "ports": [{"containerPort": 80}, {"containerPort": 53, "protocol": "SCTP"}]}],
                         "initContainers": [{"name": "i", "ports": [{"containerPort": 9}]}]})
    };
    let want = json!({"containers": [{"name": "a", "ports": [{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 53, "protocol": "SCTP"}]}],
                      "initContainers": [{"name": "i", "ports": [{"containerPort": 9, "protocol": "TCP"}]}]});
    let cases = [
        ("v1", "Pod", "/spec"),
        ("v1", "PodTemplate", "/template/spec"),
        ("v1", "ReplicationController", "/spec/template/spec"),
        ("apps/v1", "Deployment", "/spec/template/spec"),
        ("apps/v1", "StatefulSet", "/spec/template/spec"),
        ("apps/v1", "DaemonSet", "/spec/template/spec"),
        ("apps/v1", "ReplicaSet", "/spec/template/spec"),
        ("batch/v1", "Job", "/spec/template/spec"),
        ("batch/v1", "CronJob", "/spec/jobTemplate/spec/template/spec"),
    ];
    for (api_version, kind, pointer) in cases {
        let mut object = json!({"apiVersion": api_version, "kind": kind, "metadata": {"name": "x"}});
        let mut at = &mut object;
        for key in pointer.trim_start_matches('/').split('/') {
            at = &mut at[key];
        }
        *at = spec();
        normalize(&mut object);
        assert_eq!(object.pointer(pointer), Some(&want), "{kind}");
    }
}

#[test]
fn other_groups_and_kinds_keep_their_ports() {
    // A custom resource that happens to be called Deployment, and a ConfigMap.
    let mut custom = json!({"apiVersion": "example.com/v1", "kind": "Deployment", "metadata": {"name": "x"},
                            "spec": {"template": {"spec": {"containers": [{"ports": [{"containerPort": 1}]}]}}}});
    let before = custom.clone();
    normalize(&mut custom);
    assert_eq!(custom, before);
    let mut custom_svc =
        json!({"apiVersion": "example.com/v1", "kind": "Service", "metadata": {"name": "x"}, "spec": {"ports": [{"port": 1}]}});
    let before = custom_svc.clone();
    normalize(&mut custom_svc);
    assert_eq!(custom_svc, before);
}

#[test]
fn secret_string_data_becomes_exactly_the_base64_data() {
    let mut secret = json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
        "data": {"kept": "a2VwdA==", "both": "b2xk"},
        "stringData": {"user": "admin", "both": "new", "empty": ""},
    });
    normalize(&mut secret);
    assert_eq!(
        secret,
        json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
            "data": {"kept": "a2VwdA==", "both": "bmV3", "user": "YWRtaW4=", "empty": ""},
        })
    );
}

#[test]
fn secret_string_data_without_data_and_odd_values() {
    let mut secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"a": "b", "port": 5432}});
    normalize(&mut secret);
    // The number is not a string: it stays for the server to refuse.
    assert_eq!(secret["data"], json!({"a": "Yg=="}));
    assert_eq!(secret["stringData"], json!({"port": 5432}));
    let mut null = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": null, "data": null});
    normalize(&mut null);
    assert_eq!(null, json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": null}));
    let mut bad = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"a": "b"}, "data": "oops"});
    let before = bad.clone();
    normalize(&mut bad);
    assert_eq!(bad, before);
    // Not a core Secret: untouched.
    let mut custom = json!({"apiVersion": "x.io/v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"a": "b"}});
    let before = custom.clone();
    normalize(&mut custom);
    assert_eq!(custom, before);
}

#[test]
fn server_owned_metadata_and_status_are_stripped() {
    let mut object = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {
            "name": "c", "namespace": "n", "labels": {"a": "b"},
            "resourceVersion": "12", "uid": "u-1", "creationTimestamp": "2024-01-01T00:00:00Z", "generation": 3,
            "managedFields": [{"manager": "kubectl"}], "selfLink": "/api/v1/x", "deletionTimestamp": "t", "deletionGracePeriodSeconds": 30,
            "annotations": {LAST_APPLIED_ANNOTATION: "{}", "keep": "me"},
        },
        "data": {"status": "a key, not the status"},
        "status": {"phase": "x"},
    });
    normalize(&mut object);
    assert_eq!(
        object,
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": "n", "labels": {"a": "b"}, "annotations": {"keep": "me"}},
            "data": {"status": "a key, not the status"},
        })
    );
    // Annotations that held only the last-applied configuration go; empty ones the user wrote stay.
    let mut only =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "annotations": {LAST_APPLIED_ANNOTATION: "{}"}}});
    normalize(&mut only);
    assert_eq!(only["metadata"], json!({"name": "c"}));
    let mut empty = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "annotations": {}}});
    normalize(&mut empty);
    assert_eq!(empty["metadata"], json!({"name": "c", "annotations": {}}));
}

#[test]
fn normalize_is_idempotent_and_safe_on_odd_values() {
    let mut svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"ports": [{"port": 80}, 3]}});
    normalize(&mut svc);
    let once = svc.clone();
    normalize(&mut svc);
    assert_eq!(svc, once);
    assert_eq!(svc["spec"]["ports"][1], json!(3));
    for mut odd in [json!(null), json!("x"), json!([1]), json!({"kind": "Pod", "apiVersion": "v1", "spec": "x", "metadata": 1})] {
        let before = odd.clone();
        normalize(&mut odd);
        assert_eq!(odd, before);
    }
}

#[test]
fn own_adds_the_three_labels_and_keeps_others() {
    let mut object = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": {"app": "x", LAB_LABEL: "old"}}});
    own(&mut object, "demo", "vault");
    assert_eq!(
        object["metadata"]["labels"],
        json!({"app": "x", "app.kubernetes.io/managed-by": "idp-lab", "idp-lab.dev/lab": "demo", "idp-lab.dev/component": "vault"})
    );
    let mut bare = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": null}});
    own(&mut bare, "demo", "apply");
    assert_eq!(bare["metadata"]["labels"].as_object().map(Map::len), Some(3));
    let mut no_metadata = json!({"apiVersion": "v1", "kind": "ConfigMap"});
    own(&mut no_metadata, "demo", "apply");
    assert_eq!(no_metadata["metadata"]["labels"][COMPONENT_LABEL], "apply");
}

#[test]
fn owned_labels_agree_with_the_render() {
    // Every rendered object already carries what `own` sets for its component.
    let (rendered, _) = rendered_stream("standard");
    for (component, object) in rendered.objects() {
        let mut owned = object.clone();
        own(&mut owned, "idp-lab", component);
        assert_eq!(&owned, object, "{component}");
    }
}

fn obj(api_version: &str, kind: &str, namespace: Option<&str>, name: &str) -> Value {
    let mut metadata = json!({"name": name});
    if let Some(ns) = namespace {
        metadata["namespace"] = json!(ns);
    }
    json!({"apiVersion": api_version, "kind": kind, "metadata": metadata})
}

fn with_wave(mut value: Value, wave: Value) -> Value {
    value["metadata"]["annotations"] = json!({SYNC_WAVE_ANNOTATION: wave});
    value
}

fn objects_of(values: Vec<Value>) -> Vec<Object> {
    values.into_iter().enumerate().map(|(i, value)| Object { value, place: place("t.yaml", i + 1, None), wave: None }).collect()
}

fn names(objects: &[Object]) -> Vec<String> {
    objects.iter().map(|o| format!("{}/{}", o.kind(), o.name())).collect()
}

#[test]
fn stages() {
    for kind in ["CustomResourceDefinition", "Namespace", "ClusterRole", "ClusterRoleBinding"] {
        assert_eq!(stage_of(kind), 0, "{kind}");
    }
    for kind in ["PriorityClass", "StorageClass", "GatewayClass", "IngressClass", "RuntimeClass", "VolumeSnapshotClass"] {
        assert_eq!(stage_of(kind), 1, "{kind}");
    }
    for kind in ["Role", "RoleBinding", "Deployment", "ClassicThing", "Gateway", "HelmChart", ""] {
        assert_eq!(stage_of(kind), 2, "{kind}");
    }
    assert!(needs_established("CustomResourceDefinition"));
    assert!(!needs_established("Namespace"));
}

#[test]
fn the_kind_order_is_the_reference_list() {
    assert_eq!(kind_rank("Namespace"), 0);
    assert_eq!(kind_rank("APIService"), 29);
    assert!(kind_rank("ServiceAccount") < kind_rank("Secret"));
    assert!(kind_rank("Secret") < kind_rank("ConfigMap"));
    assert!(kind_rank("PersistentVolumeClaim") < kind_rank("CustomResourceDefinition"));
    assert!(kind_rank("Service") < kind_rank("Deployment"));
    assert!(kind_rank("Deployment") < kind_rank("StatefulSet"));
    assert_eq!(kind_rank("HelmChart"), KIND_ORDER.len());
    // No kind twice.
    let mut kinds = KIND_ORDER.to_vec();
    kinds.sort();
    kinds.dedup();
    assert_eq!(kinds.len(), KIND_ORDER.len());
}

#[test]
fn one_key_orders_stage_wave_kind_namespace_name() {
    let mut objects = objects_of(vec![
        obj("apps/v1", "Deployment", Some("b"), "web"),
        obj("v1", "Service", Some("b"), "web"),
        with_wave(obj("v1", "ConfigMap", Some("a"), "late"), json!("5")),
        with_wave(obj("v1", "ConfigMap", Some("a"), "early"), json!("-1")),
        obj("scheduling.k8s.io/v1", "PriorityClass", None, "high"),
        obj("example.com/v1", "Zebra", Some("a"), "z"),
        obj("example.com/v1", "Aardvark", Some("a"), "a"),
        obj("v1", "ConfigMap", Some("b"), "cm"),
        obj("v1", "ConfigMap", Some("a"), "cm"),
        obj("rbac.authorization.k8s.io/v1", "ClusterRole", None, "reader"),
        with_wave(obj("apiextensions.k8s.io/v1", "CustomResourceDefinition", None, "zebras.example.com"), json!("3")),
        obj("v1", "Namespace", None, "b"),
        obj("v1", "Namespace", None, "a"),
        obj("networking.k8s.io/v1", "IngressClass", None, "nginx"),
    ]);
    order(&mut objects).expect("orders");
    assert_eq!(
        names(&objects),
        [
            // Stage 0, wave 0: by kind order, then name; the CRD's wave 3 puts it last in stage 0.
            "Namespace/a",
            "Namespace/b",
            "ClusterRole/reader",
            "CustomResourceDefinition/zebras.example.com",
            // Stage 1: Classes, by kind order (IngressClass is listed, PriorityClass is not).
            "IngressClass/nginx",
            "PriorityClass/high",
            // Stage 2: wave -1 first, wave 5 last.
            "ConfigMap/early",
            "ConfigMap/cm",
            "ConfigMap/cm",
            "Service/web",
            "Deployment/web",
            "Aardvark/a",
            "Zebra/z",
            "ConfigMap/late",
        ]
    );
    // Same kind and name: the namespace decides.
    assert_eq!((objects[7].namespace(), objects[8].namespace()), ("a", "b"));
}

#[test]
fn the_catalogue_wave_wins_over_the_annotation() {
    let value = with_wave(obj("v1", "ConfigMap", Some("a"), "c"), json!("7"));
    assert_eq!(sort_key(&value, Some(-3)).expect("key").wave, -3);
    assert_eq!(sort_key(&value, None).expect("key").wave, 7);
    assert_eq!(sort_key(&obj("v1", "ConfigMap", None, "c"), None).expect("key").wave, 0);
    // With a catalogue wave, a bad annotation is not read.
    let bad = with_wave(obj("v1", "ConfigMap", None, "c"), json!("soon"));
    assert_eq!(sort_key(&bad, Some(2)).expect("key").wave, 2);
    // Signs are accepted, as Argo CD's strconv.Atoi does.
    assert_eq!(wave_of(&with_wave(obj("v1", "ConfigMap", None, "c"), json!("+4")), None), Ok(4));
    assert_eq!(wave_of(&with_wave(obj("v1", "ConfigMap", None, "c"), json!("-10")), None), Ok(-10));
}

#[test]
fn a_bad_sync_wave_is_an_error_not_zero() {
    for bad in ["", "one", " 1", "1.5", "99999999999"] {
        let value = with_wave(obj("v1", "ConfigMap", None, "c"), json!(bad));
        assert_eq!(sort_key(&value, None), Err(WaveError::NotAnInteger { found: bad.into() }), "{bad:?}");
    }
    let number = with_wave(obj("v1", "ConfigMap", None, "c"), json!(1));
    assert_eq!(wave_of(&number, None), Err(WaveError::NotAString { found: "1".into() }));
}

#[test]
fn order_reports_every_bad_wave_and_leaves_the_input() {
    let mut objects = objects_of(vec![
        with_wave(obj("v1", "ConfigMap", None, "a"), json!("x")),
        obj("v1", "Namespace", None, "n"),
        with_wave(obj("v1", "ConfigMap", None, "b"), json!(2)),
    ]);
    let before = objects.clone();
    let err = order(&mut objects).expect_err("bad waves");
    let OrderError::Waves { waves } = &err;
    assert_eq!(waves.iter().map(|(p, _)| p.document).collect::<Vec<_>>(), [1, 3]);
    assert_eq!(objects, before);
    let message = err.to_string();
    assert_eq!(
        message,
        "t.yaml: document 1: annotation argocd.argoproj.io/sync-wave: expected an integer such as \"-1\" or \"5\", found \"x\"\n\
         t.yaml: document 3: annotation argocd.argoproj.io/sync-wave: expected a string holding an integer, found 2 (quote it)"
    );
}

#[test]
fn order_is_stable_for_equal_keys() {
    let mut first = obj("v1", "ConfigMap", None, "same");
    first["data"] = json!({"n": "1"});
    let mut second = obj("v1", "ConfigMap", None, "same");
    second["data"] = json!({"n": "2"});
    let mut objects = objects_of(vec![obj("v1", "Service", None, "s"), first, obj("v1", "Namespace", None, "n"), second]);
    order(&mut objects).expect("orders");
    assert_eq!(objects.iter().map(|o| o.place.document).collect::<Vec<_>>(), [3, 2, 4, 1]);
}

#[test]
fn the_rendered_catalogue_orders_definitions_first() {
    let (rendered, stream) = rendered_stream("standard");
    let mut loaded = load(&stream, "render").expect("loads");
    // A CRD, as a chart's would be, given last.
    loaded.push(Object {
        value: obj("apiextensions.k8s.io/v1", "CustomResourceDefinition", None, "things.example.com"),
        place: place("extra.yaml", 1, None),
        wave: None,
    });
    order(&mut loaded).expect("orders");
    let stages: Vec<u8> = loaded.iter().map(|o| stage_of(o.kind())).collect();
    assert!(stages.is_sorted(), "{stages:?}");
    let namespaces = loaded.iter().filter(|o| o.kind() == "Namespace").count();
    assert!(namespaces > 0);
    let first: Vec<&str> = loaded[..=namespaces].iter().map(Object::kind).collect();
    assert!(first.iter().all(|k| *k == "Namespace" || *k == "CustomResourceDefinition"), "{first:?}");
    assert_eq!(first.last(), Some(&"CustomResourceDefinition"));

    // With the catalogue's waves: stages first, then waves within each stage.
    let mut objects = Object::from_rendered(&rendered);
    assert_eq!(objects.len(), rendered.objects().count());
    // Documents count from 1 within each component.
    let first = &objects[0];
    let same_component: Vec<usize> = objects.iter().filter(|o| o.place.source == first.place.source).map(|o| o.place.document).collect();
    assert_eq!(same_component, (1..=same_component.len()).collect::<Vec<_>>(), "{}", first.place.source);
    order(&mut objects).expect("orders");
    let keys: Vec<SortKey> = objects.iter().map(|o| sort_key(&o.value, o.wave).expect("key")).collect();
    assert!(keys.is_sorted());
    assert!(objects.iter().take(namespaces).all(|o| o.kind() == "Namespace"));
    assert!(objects.iter().all(|o| o.wave.is_some() && o.place.source.starts_with("component ")));
    assert!(duplicates(&objects).is_empty());
}

#[test]
fn the_rendered_catalogue_normalises_to_what_strict_servers_take() {
    for profile in ["standard", "full"] {
        let (rendered, _) = rendered_stream(profile);
        for mut object in Object::from_rendered(&rendered) {
            normalize(&mut object.value);
            if object.kind() == "Service" {
                for port in object.value["spec"]["ports"].as_array().into_iter().flatten() {
                    assert!(port["protocol"].is_string(), "{}: {port}", object.place);
                }
            }
            assert!(object.value.get("status").is_none());
            assert!(object.value.get("stringData").is_none() || object.kind() != "Secret", "{}", object.place);
        }
    }
}
