//! The kubeconfig functions against the real kubectl: it reads what idp-lab merged, can
//! still write the file afterwards (no lock left behind), and the merged context reaches
//! the cluster.

use std::path::Path;
use std::process::Command;

use idp_kube::{Cluster, kubeconfig};
use idp_test::{ControlPlane, Need, require};

fn kubectl(bin: &Path, file: &Path, args: &[&str]) -> String {
    let out = Command::new(bin).env_remove("KUBECONFIG").arg("--kubeconfig").arg(file).args(args).output().expect("kubectl runs");
    assert!(out.status.success(), "kubectl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn kubectl_uses_and_edits_a_merged_kubeconfig() {
    let testbed = require!(Need::KubeBinaries);
    let cp = ControlPlane::start_without_controller_manager().await.expect("control plane starts");
    let bin = testbed.bin("kubectl");
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join(".kube/config");
    std::fs::create_dir_all(dir.path().join(".kube")).expect("dir");

    // A file kubectl made, with a context of its own.
    kubectl(&bin, &file, &["config", "set-cluster", "work", "--server=https://work.example:443"]);
    kubectl(&bin, &file, &["config", "set-context", "work", "--cluster=work", "--user=me", "--namespace=team-a"]);
    kubectl(&bin, &file, &["config", "use-context", "work"]);

    // The control plane's admin kubeconfig has one cluster, user and context, like k3s'.
    let lab = kubeconfig::lab_kubeconfig(cp.kubeconfig(), "demo", cp.server()).expect("lab kubeconfig");
    kubeconfig::merge(&file, &lab, "demo", false).expect("merge");
    assert_eq!(kubectl(&bin, &file, &["config", "current-context"]).trim(), "work");
    let contexts = kubectl(&bin, &file, &["config", "get-contexts", "-o", "name"]);
    assert_eq!(contexts.lines().collect::<Vec<_>>(), ["idp-lab-demo", "work"]);

    // The merged context reaches the API, through kubectl and through Cluster.
    let raw = kubectl(&bin, &file, &["--context", "idp-lab-demo", "get", "--raw", "/readyz"]);
    assert_eq!(raw.trim(), "ok");
    let text = std::fs::read_to_string(&file).expect("read");
    Cluster::from_kubeconfig(&text, Some("idp-lab-demo")).await.expect("cluster").readyz().await.expect("ready");

    // kubectl can still write (it fails on a leftover config.lock), and idp-lab keeps its edits.
    kubectl(&bin, &file, &["config", "use-context", "idp-lab-demo"]);
    kubectl(&bin, &file, &["config", "set-context", "work", "--namespace=team-b"]);
    assert!(kubeconfig::remove(&file, "demo").expect("remove"));
    assert_eq!(kubectl(&bin, &file, &["config", "get-contexts", "-o", "name"]).trim(), "work");
    let view = kubectl(&bin, &file, &["config", "view", "-o", "jsonpath={.contexts[0].context.namespace}"]);
    assert_eq!(view, "team-b");
    assert!(!kubeconfig::contains(&file, "demo").expect("contains"));
    let left: Vec<_> = std::fs::read_dir(dir.path().join(".kube")).expect("list").map(|e| e.expect("entry").file_name()).collect();
    assert_eq!(left, ["config"], "no lock or temporary file left");
}
