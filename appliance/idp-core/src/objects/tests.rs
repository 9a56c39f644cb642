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
