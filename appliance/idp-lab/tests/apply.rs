//! `idp-lab apply` and `idp-lab diff` as a user runs them, against the test bed's real
//! control plane: exit codes, what they print, input errors found before anything is
//! sent, and prune that survives a lost state store.

use idp_test::{ControlPlane, IsolatedEnv, Need, require};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;

struct Run {
    env: IsolatedEnv,
    kubeconfig: PathBuf,
}

impl Run {
    fn new(cp: &ControlPlane) -> Run {
        Run { env: IsolatedEnv::new().expect("isolated env"), kubeconfig: cp.kubeconfig_path().to_path_buf() }
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut cmd = self.env.command(env!("CARGO_BIN_EXE_idp-lab"));
        cmd.current_dir(self.env.root()).env("NO_COLOR", "1").args(args).arg("--kubeconfig").arg(&self.kubeconfig);
        cmd.output().expect("idp-lab runs")
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.extend(["-o", "json"]);
        let out = self.run(&args);
        assert!(out.status.success(), "idp-lab {args:?} failed ({}):\n{}", out.status, String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("JSON on stdout")
    }

    fn write(&self, name: &str, text: &str) -> String {
        let path = self.env.root().join(name);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("mkdir");
        }
        std::fs::write(&path, text).expect("write");
        path.display().to_string()
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn names(report: &Value, action: &str) -> Vec<String> {
    report["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .filter(|o| o["action"] == action)
        .map(|o| o["object"].as_str().unwrap_or("?").to_owned())
        .collect()
}

fn configmap(name: &str, value: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  key: {value:?}\n---\n")
}

fn kubectl(cp: &ControlPlane, args: &[&str]) -> String {
    let out = cp.kubectl().args(args).output().expect("kubectl runs");
    assert!(out.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn exists(path: &Path) -> bool {
    path.exists()
}

/// `diff` exits 0 without drift and 1 with it (printing a unified diff), `apply`
/// repairs it, and prune still finds the set's members after the state store is gone.
#[tokio::test]
async fn apply_diff_and_prune_from_the_command_line() {
    let _testbed = require!(Need::KubeBinaries);
    let cp = ControlPlane::start_without_controller_manager().await.expect("control plane");
    let run = Run::new(&cp);
    kubectl(&cp, &["create", "namespace", "cli"]);
    let dir = run.write("app/a.yaml", &format!("{}{}", configmap("one", "1"), configmap("two", "2")));
    let dir = Path::new(&dir).parent().expect("dir").display().to_string();
    run.write("app/nested/b.yml", &configmap("three", "3"));
    run.write("app/notes.txt", "not a manifest");
    let set = ["-f", dir.as_str(), "-n", "cli", "--inventory", "app"];

    let first = run.json(&[&["apply"], &set[..]].concat());
    assert_eq!(names(&first, "created"), ["ConfigMap cli/one", "ConfigMap cli/three", "ConfigMap cli/two"]);
    let out = run.run(&[&["diff"], &set[..]].concat());
    assert_eq!(out.status.code(), Some(0), "no drift right after apply: {}", stderr(&out));
    assert!(out.stdout.is_empty());

    kubectl(&cp, &["patch", "-n", "cli", "configmap/two", "--type=merge", "-p", r#"{"data":{"key":"changed"}}"#]);
    let out = run.run(&[&["diff"], &set[..]].concat());
    assert_eq!(out.status.code(), Some(1), "drift exits 1: {}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("# ConfigMap cli/two differs") && text.contains("-  key: changed\n+  key: \"2\""), "{text}");
    let json = run.run(&[&["diff", "-o", "json"], &set[..]].concat());
    let json: Value = serde_json::from_slice(&json.stdout).expect("diff JSON");
    assert_eq!(json["drifted"][0]["fields"][0]["path"], "data.key");
    let again = run.json(&[&["apply"], &set[..]].concat());
    assert_eq!(names(&again, "configured"), ["ConfigMap cli/two"]);
    assert_eq!(run.run(&[&["diff"], &set[..]].concat()).status.code(), Some(0));

    // The state store (and its apply cache) is lost; the inventory is in the cluster.
    let home = run.env.idp_lab_home();
    assert!(exists(&home.join("cache/apply")), "the apply cache was kept");
    std::fs::remove_dir_all(&home).expect("remove the state");
    std::fs::remove_file(Path::new(&dir).join("nested/b.yml")).expect("remove three");
    let pruned = run.json(&[&["apply", "--prune"], &set[..]].concat());
    assert_eq!(pruned["pruned"], serde_json::json!(["ConfigMap cli/three"]));
    let left = kubectl(&cp, &["get", "configmaps", "-n", "cli", "-o", "name"]);
    assert!(!left.contains("three") && left.contains("one") && left.contains("two"), "{left}");

    // --prune without a set is a usage error.
    let out = run.run(&["apply", "--prune", "-f", dir.as_str()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

/// Input errors are found before anything is sent, all at once, with file and
/// document: a document without a kind, a namespace on a cluster-scoped kind. `--wait`
/// times out naming the object, with exit 8.
#[tokio::test]
async fn input_errors_and_wait_timeouts() {
    let _testbed = require!(Need::KubeBinaries);
    let cp = ControlPlane::start_without_controller_manager().await.expect("control plane");
    let run = Run::new(&cp);
    let bad = run.write("bad.yaml", "apiVersion: v1\nmetadata: {name: x}\n---\napiVersion: v1\nkind: ConfigMap\n");
    let out = run.run(&["apply", "-f", &bad]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("bad.yaml: document 1: missing kind") && err.contains("bad.yaml: document 2: missing metadata.name"), "{err}");

    let scoped = run.write(
        "scoped.yaml",
        &format!(
            "{}apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {{name: r, namespace: default}}\nrules: []\n",
            configmap("fine", "1")
        ),
    );
    let out = run.run(&["apply", "-f", &scoped]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("scoped.yaml: document 2: ClusterRole r is cluster-scoped"), "{err}");
    let listed = kubectl(&cp, &["get", "configmaps", "-n", "default", "-o", "name"]);
    assert!(!listed.contains("fine"), "nothing was applied: {listed}");

    // The same object twice once the default namespace is filled in.
    let twice = run.write(
        "twice.yaml",
        &format!("{}{}", configmap("dup", "1"), configmap("dup", "2").replace("name: dup", "name: dup\n  namespace: default")),
    );
    let out = run.run(&["apply", "-f", &twice]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("twice.yaml: document 2: ConfigMap default/dup is given twice, first at"), "{}", stderr(&out));

    let unknown = run.write("unknown.yaml", "apiVersion: example.dev/v1\nkind: Gadget\nmetadata: {name: g}\n");
    let out = run.run(&["apply", "-f", &unknown, "--timeout", "2s"]);
    assert_eq!(out.status.code(), Some(8), "{}", stderr(&out));
    assert!(stderr(&out).contains("does not serve Gadget example.dev/v1"), "{}", stderr(&out));

    let deployment = run.write(
        "web.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: web, image: nginx:1.25}]}\n",
    );
    let out = run.run(&["apply", "-f", &deployment, "--wait", "--timeout", "3s"]);
    assert_eq!(out.status.code(), Some(8), "{}", stderr(&out));
    assert!(stderr(&out).contains("default/web"), "{}", stderr(&out));

    // An immutable field: explained, with the field and the way out.
    let moved = run.write("moved.yaml", &std::fs::read_to_string(&deployment).expect("read").replace("app: web", "app: moved"));
    let out = run.run(&["apply", "-f", &moved]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("spec.selector") && err.contains("kubectl delete deployment -n default web"), "{err}");
}

/// `--dry-run` changes nothing, also when the input's own Namespace does not exist yet,
/// and says what would happen.
#[tokio::test]
async fn a_dry_run_changes_nothing() {
    let _testbed = require!(Need::KubeBinaries);
    let cp = ControlPlane::start_without_controller_manager().await.expect("control plane");
    let run = Run::new(&cp);
    let input = run.write(
        "ns.yaml",
        &format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: fresh}}\n---\n{}",
            configmap("c", "1").replace("name: c", "name: c\n  namespace: fresh")
        ),
    );
    let report = run.json(&["apply", "--dry-run", "-f", &input, "--inventory", "dry", "-n", "fresh"]);
    assert_eq!(report["dry_run"], true);
    assert_eq!(names(&report, "created"), ["Namespace fresh", "ConfigMap fresh/c"]);
    let out = cp.kubectl().args(["get", "namespace", "fresh"]).output().expect("kubectl");
    assert!(!out.status.success(), "the namespace was not created");
    let text = run.run(&["apply", "--dry-run", "-f", &input, "--inventory", "dry", "-n", "fresh"]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("ConfigMap fresh/c would be created"));
}

/// A CRD of the test's own and objects of its kinds, in one input.
fn gadgets(scope: &str, gadget_namespace: Option<&str>) -> String {
    let ns = gadget_namespace.map(|n| format!("\n  namespace: {n}")).unwrap_or_default();
    format!(
        "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {{name: gadgets.example.dev}}
spec:
  group: example.dev
  scope: {scope}
  names: {{plural: gadgets, singular: gadget, kind: Gadget, listKind: GadgetList}}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {{type: object, properties: {{size: {{type: integer}}}}}}
---
apiVersion: example.dev/v1
kind: Gadget
metadata:
  name: g1{ns}
spec: {{size: 3}}
"
    )
}

/// A dry run of a CRD with objects of its kind reports them as to be created (it cannot
/// create the CRD to check them); a real apply creates both. A cluster-scoped kind that
/// only comes to be served during the run is still checked for a namespace.
#[tokio::test]
async fn crds_with_their_objects_in_a_dry_run_and_late_namespace_checks() {
    let _testbed = require!(Need::KubeBinaries);
    let cp = ControlPlane::start_without_controller_manager().await.expect("control plane");
    let run = Run::new(&cp);
    let input = run.write("gadgets.yaml", &gadgets("Namespaced", None));
    let report = run.json(&["apply", "--dry-run", "-f", &input]);
    assert_eq!(names(&report, "created"), ["CustomResourceDefinition.apiextensions.k8s.io gadgets.example.dev", "Gadget.example.dev g1"]);
    let out = cp.kubectl().args(["get", "crd", "gadgets.example.dev"]).output().expect("kubectl");
    assert!(!out.status.success(), "a dry run created nothing");
    let report = run.json(&["apply", "-f", &input]);
    assert_eq!(
        names(&report, "created"),
        ["CustomResourceDefinition.apiextensions.k8s.io gadgets.example.dev", "Gadget.example.dev default/g1"]
    );

    let cluster_scoped = run.write(
        "clustered.yaml",
        &gadgets("Cluster", Some("default"))
            .replace("gadgets.example.dev", "widgets.example.org")
            .replace("example.dev", "example.org")
            .replace("gadget", "widget")
            .replace("Gadget", "Widget"),
    );
    let out = run.run(&["apply", "-f", &cluster_scoped]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("clustered.yaml: document 2: Widget g1 is cluster-scoped"), "{}", stderr(&out));
}
