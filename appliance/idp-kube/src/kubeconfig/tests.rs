use super::*;
use std::sync::{Arc, Barrier};

/// What k3s writes to /output/kubeconfig.yaml (certificates shortened).
const K3S: &str = "apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: Q0EK
    server: https://127.0.0.1:6443
  name: default
contexts:
- context:
    cluster: default
    user: default
  name: default
current-context: default
kind: Config
preferences: {}
users:
- name: default
  user:
    client-certificate-data: Q0VSVAo=
    client-key-data: S0VZCg==
";

/// A kubeconfig a developer already has: another cluster, preferences and extensions.
const EXISTING: &str = "apiVersion: v1
kind: Config
clusters:
- name: work
  cluster:
    server: https://work.example:443
    certificate-authority-data: V09SSwo=
    extensions:
    - name: client.authentication.k8s.io/exec
      extension:
        audience: work
contexts:
- name: work
  context:
    cluster: work
    user: me
    namespace: team-a
users:
- name: me
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1
      command: work-login
      args: [\"--quiet\", \"yes\"]
      interactiveMode: Never
current-context: work
preferences:
  colors: true
extensions:
- name: my-tool
  extension:
    answer: 42
";

fn lab(name: &str, server: &str) -> String {
    lab_kubeconfig(K3S, name, server).expect("lab kubeconfig")
}

fn value(text: &str) -> Value {
    idp_core::yaml::parse_document(text).expect("YAML")
}

fn file_value(path: &Path) -> Value {
    value(&std::fs::read_to_string(path).expect("readable"))
}

fn names(doc: &Value, section: &str) -> Vec<String> {
    doc[section].as_array().map(|l| l.iter().filter_map(|e| e["name"].as_str().map(str::to_owned)).collect()).unwrap_or_default()
}

/// `doc` without anything named `idp-lab-*`.
fn without_labs(doc: &Value) -> Value {
    let mut doc = doc.clone();
    for (section, _) in SECTIONS {
        if let Some(list) = doc.get_mut(section).and_then(Value::as_array_mut) {
            list.retain(|e| !e["name"].as_str().is_some_and(|n| n.starts_with("idp-lab-")));
        }
    }
    doc
}

fn existing_file(dir: &Path) -> PathBuf {
    let path = dir.join("config");
    std::fs::write(&path, EXISTING).expect("write");
    path
}

#[test]
fn lab_kubeconfig_renames_everything_and_points_at_the_server() {
    let text = lab("demo", "https://127.0.0.1:49153");
    let kc = kube::config::Kubeconfig::from_yaml(&text).expect("a kubeconfig kube reads");
    assert_eq!(kc.current_context.as_deref(), Some("idp-lab-demo"));
    assert_eq!(kc.clusters.len(), 1);
    assert_eq!(kc.clusters[0].name, "idp-lab-demo");
    let cluster = kc.clusters[0].cluster.as_ref().expect("cluster settings");
    assert_eq!(cluster.server.as_deref(), Some("https://127.0.0.1:49153"));
    assert_eq!(cluster.certificate_authority_data.as_deref(), Some("Q0EK"));
    assert_eq!(kc.auth_infos.len(), 1);
    assert_eq!(kc.auth_infos[0].name, "idp-lab-demo");
    let v = value(&text);
    assert_eq!(v["users"][0]["user"]["client-key-data"], "S0VZCg==");
    assert_eq!(v["contexts"][0], json!({"name": "idp-lab-demo", "context": {"cluster": "idp-lab-demo", "user": "idp-lab-demo"}}));
}

#[test]
fn lab_kubeconfig_refuses_anything_but_one_cluster_user_and_context() {
    let none = lab_kubeconfig("apiVersion: v1\nkind: Config\nclusters: []\n", "demo", "https://127.0.0.1:6443").expect_err("no cluster");
    assert!(none.to_string().contains("no cluster"), "{none}");
    let two = K3S
        .replace("  name: default\ncontexts:", "  name: default\n- cluster:\n    server: https://10.0.0.1:6443\n  name: other\ncontexts:");
    let err = lab_kubeconfig(&two, "demo", "https://127.0.0.1:6443").expect_err("two clusters");
    assert!(err.to_string().contains("2 clusters (default, other)"), "{err}");
    let no_user = K3S.split("users:").next().unwrap_or_default().to_owned();
    assert!(lab_kubeconfig(&no_user, "demo", "https://127.0.0.1:6443").expect_err("no user").to_string().contains("no user"));
    let garbage = lab_kubeconfig("clusters: [unclosed", "demo", "https://127.0.0.1:6443").expect_err("not YAML");
    assert!(garbage.to_string().contains("the k3s admin kubeconfig"), "{garbage}");
}

#[test]
fn lab_kubeconfig_checks_its_arguments() {
    assert!(lab_kubeconfig(K3S, "Demo Lab", "https://127.0.0.1:6443").expect_err("bad lab").to_string().contains("lab name"));
    assert!(lab_kubeconfig(K3S, "demo", "127.0.0.1:6443").expect_err("no scheme").to_string().contains("server"));
    assert!(lab_kubeconfig(K3S, "demo", "").is_err());
}

#[test]
fn default_path_is_the_first_of_kubeconfig_then_home() {
    let p = |k: Option<&str>, h: Option<&str>| default_path_from(k.map(Into::into), h.map(Into::into));
    assert_eq!(p(Some("/a/one:/b/two"), Some("/home/me")), Some(PathBuf::from("/a/one")));
    assert_eq!(p(Some(":/b/two"), Some("/home/me")), Some(PathBuf::from("/b/two")));
    assert_eq!(p(Some(""), Some("/home/me")), Some(PathBuf::from("/home/me/.kube/config")));
    assert_eq!(p(None, Some("/home/me")), Some(PathBuf::from("/home/me/.kube/config")));
    assert_eq!(p(None, None), None);
}

#[test]
fn merge_into_a_missing_file_creates_it_private() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("home/.kube/config");
    merge(&path, &lab("demo", "https://127.0.0.1:6443"), "demo", false).expect("merge");
    assert_eq!(file_value(&path), value(&lab("demo", "https://127.0.0.1:6443")));
    let mode = |p: &Path| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&dir.path().join("home/.kube")), 0o700);
    assert!(contains(&path, "demo").expect("contains"));
    assert!(!contains(&path, "other").expect("contains"));
    // Nothing left next to it: no lock file, no temporary file.
    let left: Vec<_> = std::fs::read_dir(path.parent().expect("parent")).expect("list").map(|e| e.expect("entry").file_name()).collect();
    assert_eq!(left, ["config"]);
}

#[test]
fn merge_keeps_everything_else_and_the_current_context() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = existing_file(dir.path());
    merge(&path, &lab("demo", "https://127.0.0.1:6443"), "demo", false).expect("merge");
    let after = file_value(&path);
    assert_eq!(without_labs(&after), value(EXISTING), "everything idp-lab does not own has the same content");
    assert_eq!(after["current-context"], "work");
    assert_eq!(names(&after, "clusters"), ["work", "idp-lab-demo"]);
    assert_eq!(names(&after, "users"), ["me", "idp-lab-demo"]);
    assert_eq!(names(&after, "contexts"), ["work", "idp-lab-demo"]);
    kube::config::Kubeconfig::from_yaml(&std::fs::read_to_string(&path).expect("read")).expect("kube still reads it");
}

#[test]
fn merge_switches_the_context_when_asked() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = existing_file(dir.path());
    merge(&path, &lab("demo", "https://127.0.0.1:6443"), "demo", true).expect("merge");
    assert_eq!(file_value(&path)["current-context"], "idp-lab-demo");
}

#[test]
fn merge_sets_the_context_of_a_file_that_has_none() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("config");
    // What `kubectl config set-context` leaves in a new file.
    std::fs::write(
        &path,
        "apiVersion: v1\nclusters: null\ncontexts:\n- context:\n    cluster: x\n    user: \"\"\n  name: foo\ncurrent-context: \"\"\nkind: Config\npreferences: {}\nusers: null\n",
    )
    .expect("write");
    merge(&path, &lab("demo", "https://127.0.0.1:6443"), "demo", false).expect("merge");
    let after = file_value(&path);
    assert_eq!(after["current-context"], "idp-lab-demo");
    assert_eq!(names(&after, "contexts"), ["foo", "idp-lab-demo"]);
    assert_eq!(names(&after, "clusters"), ["idp-lab-demo"]);
}

#[test]
fn merging_again_replaces_in_place() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = existing_file(dir.path());
    merge(&path, &lab("demo", "https://127.0.0.1:6443"), "demo", false).expect("merge");
    merge(&path, &lab("other", "https://127.0.0.1:6444"), "other", false).expect("merge other");
    merge(&path, &lab("demo", "https://127.0.0.1:7443"), "demo", false).expect("merge again");
    let after = file_value(&path);
    for section in ["clusters", "users", "contexts"] {
        assert_eq!(names(&after, section)[1..], ["idp-lab-demo", "idp-lab-other"], "{section}");
    }
    assert_eq!(after["clusters"][1]["cluster"]["server"], "https://127.0.0.1:7443");
    assert_eq!(after["clusters"][2]["cluster"]["server"], "https://127.0.0.1:6444");
}

#[test]
fn merge_refuses_a_kubeconfig_not_made_for_the_lab() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("config");
    let err = merge(&path, &lab("demo", "https://127.0.0.1:6443"), "other", false).expect_err("wrong lab");
    assert!(err.to_string().contains("idp-lab-other"), "{err}");
    assert!(!path.exists());
}

#[test]
fn remove_takes_out_the_lab_and_nothing_else() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = existing_file(dir.path());
    merge(&path, &lab("demo", "https://127.0.0.1:6443"), "demo", true).expect("merge");
    merge(&path, &lab("other", "https://127.0.0.1:6444"), "other", false).expect("merge other");
    assert!(remove(&path, "demo").expect("remove"));
    let after = file_value(&path);
    assert!(after.get("current-context").is_none(), "the context it pointed at is gone: {after}");
    assert_eq!(names(&after, "contexts"), ["work", "idp-lab-other"]);
    assert!(!contains(&path, "demo").expect("contains"));
    assert!(contains(&path, "other").expect("contains"));
    let mut expected = value(EXISTING);
    expected.as_object_mut().expect("map").remove("current-context");
    assert_eq!(without_labs(&after), expected);
    assert!(!remove(&path, "demo").expect("second remove"), "nothing left to remove");
}

#[test]
fn remove_keeps_a_file_left_empty_and_a_missing_file_is_no_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("config");
    assert!(!remove(&path, "demo").expect("missing file"));
    assert!(!contains(&path, "demo").expect("missing file"));
    assert!(!path.exists(), "remove creates nothing");
    merge(&path, &lab("demo", "https://127.0.0.1:6443"), "demo", false).expect("merge");
    assert!(remove(&path, "demo").expect("remove"));
    let after = file_value(&path);
    for section in ["clusters", "users", "contexts"] {
        assert_eq!(after[section], json!([]), "{section}");
    }
}

#[test]
fn concurrent_merges_of_different_labs_all_survive() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = Arc::new(existing_file(dir.path()));
    let labs: Vec<String> = (0..8).map(|i| format!("lab{i}")).collect();
    let barrier = Arc::new(Barrier::new(labs.len()));
    let threads: Vec<_> = labs
        .iter()
        .map(|name| {
            let (path, barrier, name) = (Arc::clone(&path), Arc::clone(&barrier), name.clone());
            std::thread::spawn(move || {
                let text = lab(&name, "https://127.0.0.1:6443");
                barrier.wait();
                merge(&path, &text, &name, false)
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread").expect("merge");
    }
    let after = file_value(&path);
    for name in &labs {
        assert!(names(&after, "contexts").contains(&format!("idp-lab-{name}")), "{name} lost: {after}");
    }
    assert_eq!(names(&after, "clusters").len(), labs.len() + 1);
    assert_eq!(after["current-context"], "work");
}

#[test]
fn a_corrupt_file_is_an_error_naming_it_and_stays_as_it_was() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("config");
    for corrupt in ["clusters: [\n  - name: x\n    cluster: {server: ", "clusters: 5\n", "- just\n- a list\n", "\u{0}\u{ff}binary"] {
        std::fs::write(&path, corrupt).expect("write");
        let err = merge(&path, &lab("demo", "https://127.0.0.1:6443"), "demo", false).expect_err("corrupt");
        assert!(err.to_string().contains(&path.display().to_string()), "{err}");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), corrupt, "not overwritten");
        assert!(remove(&path, "demo").is_err());
        assert!(contains(&path, "demo").is_err());
        assert!(!crate::lock::lock_path(&path).exists(), "the lock is released");
    }
    let invalid_utf8 = [0xff, 0xfe, b'x'];
    std::fs::write(&path, invalid_utf8).expect("write");
    let err = merge(&path, &lab("demo", "https://127.0.0.1:6443"), "demo", false).expect_err("not UTF-8");
    assert!(err.to_string().contains(&path.display().to_string()), "{err}");
    assert_eq!(std::fs::read(&path).expect("read"), invalid_utf8);
}

#[test]
fn a_symlinked_kubeconfig_is_written_through_the_link() {
    let dir = tempfile::tempdir().expect("temp dir");
    let real = existing_file(dir.path());
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&real, &link).expect("symlink");
    merge(&link, &lab("demo", "https://127.0.0.1:6443"), "demo", false).expect("merge");
    assert!(std::fs::symlink_metadata(&link).expect("link").file_type().is_symlink(), "the link stays a link");
    assert!(contains(&real, "demo").expect("contains"));
}
