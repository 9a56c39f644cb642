//! The bootstrap on the test bed's real API server (with the real CRD fixtures), statuses
//! written by the test (there is no kubelet and no controller): phases in order, the lab
//! CA Secret written before the PKI, a phase whose object never gets ready fails naming
//! it and its phase, and a rerun after that continues and changes nothing that was done.

use super::*;
use idp_test::{Need, require};
use serde_json::{Value, json};

fn kubectl(cp: &idp_test::ControlPlane, args: &[&str], stdin: Option<&str>) -> (bool, String) {
    use std::io::Write as _;
    let mut command = cp.kubectl();
    command.args(args).stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let mut child = command.spawn().expect("kubectl runs");
    if let Some(text) = stdin {
        child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write");
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().expect("kubectl ends");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

fn component(name: &str, wave: i32, items: Vec<Value>) -> RenderedComponent {
    RenderedComponent { name: name.into(), wave, items: items.into_iter().map(Item::Object).collect(), delivered: Vec::new() }
}

fn catalogue() -> Catalogue {
    let c = |name: &str, namespace: &str, wave: i32, readiness: Value| -> idp_core::catalogue::Component {
        serde_json::from_value(json!({
            "name": name, "description": "test", "stack": "bootstrap", "namespace": namespace, "wave": wave,
            "manifests": ["x.yaml"], "readiness": readiness,
        }))
        .expect("component")
    };
    Catalogue {
        components: vec![
            c("base", "demo", 0, json!([])),
            c(
                "pki",
                "cert-manager",
                31,
                json!([{"kind": "ClusterIssuer", "apiVersion": "cert-manager.io/v1", "name": "ca-issuer", "condition": "Ready"}]),
            ),
            c("web", "demo", 100, json!([])),
        ],
    }
}

fn rendered(lab: &str) -> Rendered {
    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "demo"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx:1.25"}]}}}});
    Rendered {
        components: vec![
            component(
                "base",
                0,
                vec![
                    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "demo"}}),
                    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "cert-manager"}}),
                    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": "demo"}, "data": {"mode": "fast"}}),
                ],
            ),
            component(
                "pki",
                31,
                vec![json!({"apiVersion": "cert-manager.io/v1", "kind": "ClusterIssuer", "metadata": {"name": "ca-issuer"},
                "spec": {"ca": {"secretName": format!("{lab}-ca-secret")}}})],
            ),
            component("web", 100, vec![deployment]),
        ],
    }
}

/// Marks ClusterIssuer ca-issuer Ready whenever it exists and is not (cert-manager's job).
async fn issuer_ready_writer(cp: &idp_test::ControlPlane, stop: tokio_util::sync::CancellationToken) {
    while !stop.is_cancelled() {
        let (ok, text) = kubectl(cp, &["get", "clusterissuer", "ca-issuer", "-o", "json"], None);
        if ok
            && let Ok(mut issuer) = serde_json::from_str::<Value>(&text)
            && issuer["status"]["conditions"][0]["status"] != "True"
        {
            issuer["status"] = json!({"conditions": [{"type": "Ready", "status": "True", "reason": "KeyPairVerified", "message": "Signing CA verified",
                "observedGeneration": issuer["metadata"]["generation"]}]});
            kubectl(
                cp,
                &["replace", "--raw", "/apis/cert-manager.io/v1/clusterissuers/ca-issuer/status", "-f", "-"],
                Some(&issuer.to_string()),
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phases_run_in_order_a_stuck_one_names_its_object_and_a_rerun_continues() {
    require!(Need::KubeBinaries, Need::SharedFixtures, Need::PythonYaml);
    let (cp, _crds) = idp_test::crds::control_plane_with_crd_fixtures().await.expect("control plane with the CRD fixtures");
    let cluster = Cluster::from_kubeconfig(cp.kubeconfig(), None).await.expect("cluster");
    let dir = tempfile::tempdir().expect("tempdir");
    let lab = "boot";
    let ca = idp_edge::LabCa::load_or_create(lab, &dir.path().join("ca"), &["127-0-0-1.nip.io".to_owned()], false).expect("lab CA");
    let catalogue = catalogue();
    let rendered = rendered(lab);
    let plan = Install {
        lab,
        dir: dir.path().to_owned(),
        store: idp_state::StateStore::in_lab_dir(dir.path()),
        ca: Some(&ca),
        catalogue: &catalogue,
        rendered: &rendered,
        upstream: Upstream::Online,
        phase_timeout: Duration::from_secs(8),
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let writer = {
        let stop = stop.clone();
        let cp = &cp;
        async move { issuer_ready_writer(cp, stop).await }
    };
    let run = async {
        let mut steps = Steps::new(true);
        let first = install(&cluster, &plan, &mut steps).await;
        stop.cancel();
        first
    };
    let (first, ()) = tokio::join!(run, writer);

    // The Deployment never gets a status: its phase fails, naming it.
    let e = first.expect_err("the stacks phase cannot get ready");
    assert_eq!(e.code, TIMEOUT, "{}", e.message);
    assert!(e.message.contains("stacks"), "names the phase: {}", e.message);
    assert!(e.message.contains("web"), "names the object: {}", e.message);
    // The phases before it were done: the CA Secret (before the PKI), the issuer Ready.
    let (ok, text) = kubectl(&cp, &["-n", "cert-manager", "get", "secret", "boot-ca-secret", "-o", "json"], None);
    assert!(ok, "{text}");
    let secret: Value = serde_json::from_str(&text).expect("json");
    let decode = |key: &str| {
        let b64 = secret["data"][key].as_str().unwrap_or_else(|| panic!("no {key}"));
        let out =
            std::process::Command::new("base64").arg("-d").stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).spawn();
        let mut child = out.expect("base64");
        use std::io::Write as _;
        child.stdin.take().expect("stdin").write_all(b64.as_bytes()).expect("write");
        String::from_utf8(child.wait_with_output().expect("base64 ends").stdout).expect("text")
    };
    assert_eq!(decode("tls.crt"), ca.cert_pem(), "the lab CA the host trusts");
    assert!(decode("tls.key").contains("PRIVATE KEY"));
    let components = dir.path().join(idp_daemon::COMPONENTS_DIR);
    assert!(components.join("base.json").is_file() && components.join("pki.json").is_file(), "done components are watched");
    assert!(!components.join("web.json").exists(), "the stuck one is not recorded yet");

    // The Deployment gets ready (as its controller would say); the rerun continues.
    let (ok, text) = kubectl(&cp, &["-n", "demo", "get", "deployment", "web", "-o", "json"], None);
    assert!(ok, "{text}");
    let mut deployment: Value = serde_json::from_str(&text).expect("json");
    deployment["status"] = json!({"observedGeneration": deployment["metadata"]["generation"], "replicas": 1, "updatedReplicas": 1,
        "readyReplicas": 1, "availableReplicas": 1,
        "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
            {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}]});
    let (ok, text) = kubectl(
        &cp,
        &["replace", "--raw", "/apis/apps/v1/namespaces/demo/deployments/web/status", "-f", "-"],
        Some(&deployment.to_string()),
    );
    assert!(ok, "{text}");
    let mut steps = Steps::new(true);
    let second = install(&cluster, &plan, &mut steps).await.unwrap_or_else(|e| panic!("the rerun: {}", e.message));
    let phases: Vec<(&str, usize)> = second.phases.iter().map(|p| (p.name.as_str(), p.changed)).collect();
    assert_eq!(phases, [("crds", 0), ("certificates", 0), ("stacks", 0)], "in order, and nothing done is done again");
    assert!(components.join("web.json").is_file());
    assert!(!second.vault_initialised);
}
