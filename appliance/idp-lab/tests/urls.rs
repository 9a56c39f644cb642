//! `idp-lab urls` and `idp-lab open --print` against the test bed's API server with the
//! Gateway API CRDs (downlevelled from the shared fixtures): the routes, their URLs on the
//! lab's HTTPS port, and their health from the API.

use idp_test::{ControlPlane, IsolatedEnv};
use serde_json::Value;
use std::process::Output;

fn run(env: &IsolatedEnv, args: &[&str]) -> Output {
    let mut cmd = env.command(env!("CARGO_BIN_EXE_idp-lab"));
    cmd.current_dir(env.root()).env("NO_COLOR", "1").env("IDP_LAB_NETWORK_HTTPS_PORT", "8443").args(args);
    cmd.output().expect("idp-lab runs")
}

fn ok(env: &IsolatedEnv, args: &[&str]) -> String {
    let out = run(env, args);
    assert!(out.status.success(), "idp-lab {args:?} failed ({}):\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8")
}

const ROUTES: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: apps}
---
apiVersion: v1
kind: Service
metadata: {name: argocd, namespace: apps}
spec: {ports: [{port: 80, protocol: TCP}]}
---
apiVersion: v1
kind: Endpoints
metadata: {name: argocd, namespace: apps}
subsets: [{addresses: [{ip: 10.42.0.9}], ports: [{port: 8080, protocol: TCP}]}]
---
apiVersion: v1
kind: Service
metadata: {name: grafana, namespace: apps}
spec: {ports: [{port: 80, protocol: TCP}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: argocd, namespace: apps}
spec:
  hostnames: [argocd.127-0-0-1.nip.io]
  rules: [{backendRefs: [{name: argocd, port: 80}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: grafana, namespace: apps}
spec:
  hostnames: [grafana.127-0-0-1.nip.io, "*.grafana.127-0-0-1.nip.io"]
  rules: [{backendRefs: [{name: grafana, port: 80}]}]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn urls_lists_the_routes_with_their_health_and_open_prints_the_url() {
    let testbed = idp_test::testbed();
    let (script, fixtures) = (testbed.script("downlevel-crds.py"), testbed.crd_fixtures_dir().join("gateway-api"));
    let (cp, crds) = tokio::join!(ControlPlane::start_without_controller_manager(), idp_test::crds::downlevel_crds(&script, &fixtures));
    let cp = cp.expect("control plane");
    idp_test::crds::apply_crds(&cp.client(), &crds.expect("CRDs")).await.expect("CRDs installed");
    let env = IsolatedEnv::new().expect("env");
    let kubeconfig = cp.kubeconfig_path().display().to_string();
    let file = env.root().join("routes.yaml");
    std::fs::write(&file, ROUTES).expect("write");
    ok(&env, &["apply", "--kubeconfig", &kubeconfig, "-f", &file.display().to_string()]);

    let urls: Value = serde_json::from_str(&ok(&env, &["urls", "--kubeconfig", &kubeconfig, "-o", "json"])).expect("json");
    let rows = urls.as_array().expect("rows");
    assert_eq!(rows.len(), 3, "{urls}");
    assert_eq!(rows[0]["url"], "https://argocd.127-0-0-1.nip.io:8443/");
    assert_eq!((rows[0]["route"].as_str(), rows[0]["ready"].as_bool()), (Some("apps/argocd"), Some(true)));
    assert_eq!(rows[1]["url"], "https://grafana.127-0-0-1.nip.io:8443/");
    assert_eq!(rows[1]["reason"], "Service apps/grafana has no endpoints");
    assert_eq!(rows[2]["url"], Value::Null, "a wildcard has no URL to open");
    let text = ok(&env, &["urls", "--kubeconfig", &kubeconfig]);
    assert!(text.starts_with("URL "), "{text}");
    assert!(text.contains("not ready: Service apps/grafana has no endpoints"), "{text}");

    // Without a cluster: the lab that was never made is named, with how to make it.
    let none = run(&env, &["urls", "--name", "nolab"]);
    assert_eq!(none.status.code(), Some(11), "{}", String::from_utf8_lossy(&none.stderr));
    assert!(String::from_utf8_lossy(&none.stderr).contains("idp-lab up --name nolab"));

    assert_eq!(ok(&env, &["open", "--print", "grafana"]), "https://grafana.127-0-0-1.nip.io:8443/\n");
    assert_eq!(ok(&env, &["open", "--print"]), "https://127-0-0-1.nip.io:8443/\n");
    let bad = run(&env, &["open", "--print", "no/such"]);
    assert_eq!(bad.status.code(), Some(2), "{}", String::from_utf8_lossy(&bad.stderr));
}
