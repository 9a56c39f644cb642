//! The HTTPS entry with its routes from a real API server (the test bed's kube-apiserver
//! 1.20 with the Gateway API CRDs of the shared fixtures, downlevelled): the landing page
//! lists the HTTPRoutes with the statuses the test wrote, a route added while the entry
//! runs appears without a restart (also after the API server restarted), and headless Chromium, trusting the lab CA through
//! its NSS database, loads the page without a certificate error.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use common::*;
use idp_kube::{Cluster, RouteSnapshot};
use idp_test::ControlPlane;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::discovery::ApiResource;
use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use tokio::sync::watch;

fn resource(api_version: &str, kind: &str, plural: &str) -> ApiResource {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    ApiResource { group: group.into(), version: version.into(), api_version: api_version.into(), kind: kind.into(), plural: plural.into() }
}

async fn apply(cp: &ControlPlane, ar: &ApiResource, object: Value) {
    let name = object["metadata"]["name"].as_str().unwrap().to_owned();
    let api: Api<DynamicObject> = match object["metadata"]["namespace"].as_str() {
        Some(ns) => Api::namespaced_with(cp.client(), ns, ar),
        None => Api::all_with(cp.client(), ar),
    };
    api.patch(&name, &PatchParams::apply("idp-test").force(), &Patch::Apply(&object)).await.unwrap();
}

async fn set_route_status(cp: &ControlPlane, name: &str, accepted: bool, reason: &str, message: &str) {
    let ar = resource("gateway.networking.k8s.io/v1", "HTTPRoute", "httproutes");
    let api: Api<DynamicObject> = Api::namespaced_with(cp.client(), "apps", &ar);
    let status = json!({"status": {"parents": [{
        "parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "idp-gateway", "namespace": "kube-system"},
        "controllerName": "io.cilium/gateway-controller",
        "conditions": [{"type": "Accepted", "status": if accepted { "True" } else { "False" }, "reason": reason, "message": message,
                        "lastTransitionTime": "2026-12-01T00:00:00Z", "observedGeneration": 1}],
    }]}});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status)).await.unwrap();
}

fn service(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"namespace": "apps", "name": name},
           "spec": {"ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]}})
}

fn endpoints(name: &str, ready: bool) -> Value {
    let addresses = if ready { "addresses" } else { "notReadyAddresses" };
    json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"namespace": "apps", "name": name},
           "subsets": [{addresses: [{"ip": "10.42.0.7"}], "ports": [{"port": 8080, "protocol": "TCP"}]}]})
}

fn httproute(name: &str) -> Value {
    json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"namespace": "apps", "name": name},
           "spec": {"parentRefs": [{"name": "idp-gateway", "namespace": "kube-system"}],
                    "hostnames": [format!("{name}.{SUFFIX}")],
                    "rules": [{"backendRefs": [{"name": name, "port": 80}]}]}})
}

async fn wait_for(receiver: &mut watch::Receiver<RouteSnapshot>, what: &str, done: impl Fn(&RouteSnapshot) -> bool) {
    let result = tokio::time::timeout(Duration::from_secs(30), receiver.wait_for(|s| done(s))).await.map(|r| r.map(drop));
    assert!(result.is_ok(), "timed out waiting for {what}; last snapshot: {:?}", *receiver.borrow());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_landing_page_lists_the_api_servers_routes_and_follows_them_live() {
    let testbed = idp_test::testbed();
    let (script, fixtures) = (testbed.script("downlevel-crds.py"), testbed.crd_fixtures_dir().join("gateway-api"));
    let (cp, crds) = tokio::join!(ControlPlane::start_without_controller_manager(), idp_test::crds::downlevel_crds(&script, &fixtures));
    let cp = cp.unwrap();
    idp_test::crds::apply_crds(&cp.client(), &crds.unwrap()).await.unwrap();
    let ns = resource("v1", "Namespace", "namespaces");
    apply(&cp, &ns, json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "apps"}})).await;
    let svc = resource("v1", "Service", "services");
    let ep = resource("v1", "Endpoints", "endpoints");
    let route = resource("gateway.networking.k8s.io/v1", "HTTPRoute", "httproutes");
    for (name, ready) in [("argocd", true), ("grafana", false), ("sonarqube", true)] {
        apply(&cp, &svc, service(name)).await;
        apply(&cp, &ep, endpoints(name, ready)).await;
        apply(&cp, &route, httproute(name)).await;
    }
    set_route_status(&cp, "argocd", true, "Accepted", "Route is accepted").await;
    set_route_status(&cp, "sonarqube", false, "NotAllowedByListeners", "no listener allows routes from namespace apps").await;

    let cluster = Cluster::from_kubeconfig(cp.kubeconfig(), None).await.unwrap();
    let (sender, mut receiver) = watch::channel(RouteSnapshot::default());
    let watch = tokio::spawn({
        let sender = sender.clone();
        let cluster = cluster.clone();
        async move { cluster.watch_routes(sender).await }
    });
    wait_for(&mut receiver, "three routes", |s| s.synced && s.routes.len() == 3).await;

    // The one-shot list (`idp-lab urls`) agrees with the watch.
    assert_eq!(cluster.routes().await.unwrap(), receiver.borrow().routes);

    let dir = tempfile::tempdir().unwrap();
    let ca = lab_ca(dir.path());
    let entry = Running::with_routes(&ca, vec![dead_port().await], sender, receiver.clone()).await;
    let curl = Curl::new(&ca, entry.https_port);
    let landing = curl.get(&[], "", "/").await;
    assert_eq!(landing.code, 200, "{landing:?}");
    for needle in [
        "argocd.127-0-0-1.nip.io",
        "1 of 3 routes ready",
        "Service apps/grafana has no ready endpoint",
        "not accepted by idp-gateway: NotAllowedByListeners: no listener allows routes from namespace apps",
    ] {
        assert!(landing.body.contains(needle), "the landing page lacks {needle:?}:\n{}", landing.body);
    }
    let grafana = curl.get(&[], "grafana", "/").await;
    assert_eq!(grafana.code, 503, "{grafana:?}");

    // A route added while the entry runs appears, and a backend that becomes ready turns
    // its 503 into a pass-through (here to a dead Gateway port: the page says so).
    apply(&cp, &svc, service("backstage")).await;
    apply(&cp, &ep, endpoints("backstage", true)).await;
    apply(&cp, &route, httproute("backstage")).await;
    apply(&cp, &ep, endpoints("grafana", true)).await;
    wait_for(&mut receiver, "backstage, and grafana ready", |s| {
        s.routes.len() == 4 && s.routes.iter().find(|r| r.name == "grafana").is_some_and(|r| r.health.is_ready())
    })
    .await;
    let landing = curl.get(&[], "", "/").await;
    assert!(landing.body.contains("backstage.127-0-0-1.nip.io") && landing.body.contains("3 of 4 routes ready"), "{}", landing.body);
    let grafana = curl.get(&[], "grafana", "/").await;
    assert!(grafana.code == 503 && grafana.body.contains("the Gateway is not reachable"), "{grafana:?}");
    let gone = curl.get(&[], "nope", "/").await;
    assert!(gone.code == 404 && gone.body.contains("backstage.127-0-0-1.nip.io"), "{gone:?}");

    // The watch survives an API server restart: a route made after it still appears.
    cp.restart_apiserver().await.unwrap();
    apply(&cp, &svc, service("dex")).await;
    apply(&cp, &ep, endpoints("dex", true)).await;
    apply(&cp, &route, httproute("dex")).await;
    // Both watches must have come back: the route, and its Endpoints (ready).
    wait_for(&mut receiver, "dex, ready, after the API server restarted", |s| {
        s.routes.iter().any(|r| r.name == "dex" && r.health.is_ready())
    })
    .await;
    let landing = curl.get(&[], "", "/").await;
    assert!(landing.body.contains("dex.127-0-0-1.nip.io") && landing.body.contains("4 of 5 routes ready"), "{}", landing.body);

    chromium_loads_the_landing_page(dir.path(), &ca, entry.https_port);

    entry.stop().await;
    watch.abort();
}

/// Headless Chromium with the lab CA in its NSS database (`$HOME/.pki/nssdb`, as
/// `idp-lab trust install` writes it) loads the landing page; without the CA it gets
/// the certificate interstitial instead. The screenshot is saved as a test artifact.
fn chromium_loads_the_landing_page(dir: &Path, ca: &idp_edge::LabCa, port: u16) {
    let chromium = tool("chromium", "chromium");
    let certutil = tool("certutil", "libnss3-tools");
    let url = format!("https://{SUFFIX}:{port}/");
    let run = |home: &Path, extra: &[&str]| {
        let output = Command::new(&chromium)
            .env("HOME", home)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--window-size=1200,800",
                &format!("--user-data-dir={}", home.join("profile").display()),
                &format!("--host-resolver-rules=MAP *.{SUFFIX} 127.0.0.1, MAP {SUFFIX} 127.0.0.1"),
            ])
            .args(extra)
            .arg(&url)
            .output()
            .unwrap();
        (String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
    };
    let trusting = dir.join("trusting");
    let nssdb = trusting.join(".pki/nssdb");
    std::fs::create_dir_all(&nssdb).unwrap();
    let db = format!("sql:{}", nssdb.display());
    assert!(Command::new(&certutil).args(["-N", "--empty-password", "-d", &db]).status().unwrap().success());
    let added = Command::new(&certutil).args(["-A", "-t", "C,,", "-n", "idp-lab-test", "-d", &db, "-i"]).arg(ca.cert_path()).status();
    assert!(added.unwrap().success());
    let began = Instant::now();
    let (dom, stderr) = run(&trusting, &["--dump-dom"]);
    assert!(dom.contains("routes ready"), "Chromium did not load the landing page ({:?}):\n{dom}\n{stderr}", began.elapsed());

    let untrusting = dir.join("untrusting");
    std::fs::create_dir_all(&untrusting).unwrap();
    let (dom, _) = run(&untrusting, &["--dump-dom"]);
    assert!(!dom.contains("routes ready"), "Chromium loaded the page without trusting the lab CA:\n{dom}");

    let artifacts = std::env::var_os("IDP_LAB_ARTIFACTS").map(std::path::PathBuf::from).unwrap_or_else(|| dir.join("artifacts"));
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("landing-page.png");
    let _ = run(&trusting, &[&format!("--screenshot={}", shot.display())]);
    let png = std::fs::read(&shot).unwrap_or_default();
    assert!(png.starts_with(b"\x89PNG"), "no screenshot at {}", shot.display());
    eprintln!("artifact: {}", shot.display());
}
