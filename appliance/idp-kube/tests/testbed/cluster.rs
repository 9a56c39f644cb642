//! `Cluster`: readiness of the API server, the nodes, and waiting for the nodes a plan
//! expects.

use std::time::{Duration, Instant};

use idp_core::cluster::parse_memory_quantity;
use idp_kube::{Cluster, KubeError};
use idp_test::{ControlPlane, Need, require};
use serde_json::json;

use crate::support::{register, spec};

/// The taint the API server puts on every new node until it is Ready.
const NOT_READY: &str = "node.kubernetes.io/not-ready:NoSchedule";

#[tokio::test]
async fn readyz_answers_ok_and_contexts_are_chosen() {
    let _testbed = require!(Need::KubeBinaries);
    let cp = ControlPlane::start_without_controller_manager().await.expect("control plane starts");

    let cluster = Cluster::from_kubeconfig(cp.kubeconfig(), None).await.expect("current context");
    assert_eq!(cluster.server(), cp.server());
    cluster.readyz().await.expect("/readyz is ok");

    let named = Cluster::from_kubeconfig(cp.kubeconfig(), Some("idp-test")).await.expect("named context");
    named.readyz().await.expect("/readyz is ok");

    let err = Cluster::from_kubeconfig(cp.kubeconfig(), Some("nope")).await.expect_err("no such context");
    assert!(matches!(err, KubeError::Invalid { .. }), "{err}");
    assert!(err.to_string().contains(r#"no context "nope" (it has: idp-test)"#), "{err}");

    let err = Cluster::from_kubeconfig("clusters: [", None).await.expect_err("not YAML");
    assert!(matches!(err, KubeError::Parse { .. }), "{err}");
    let err = Cluster::from_kubeconfig("apiVersion: v1\nkind: Config\n", None).await.expect_err("no context at all");
    assert!(matches!(err, KubeError::Client { .. }), "{err}");
}

#[tokio::test]
async fn readyz_names_the_failing_check() {
    let _testbed = require!(Need::KubeBinaries);
    let cp = ControlPlane::start_without_controller_manager().await.expect("control plane starts");
    let cluster = Cluster::from_kubeconfig(cp.kubeconfig(), None).await.expect("cluster");
    cluster.readyz().await.expect("/readyz is ok");

    // Take etcd away (the first process of this test's own control plane): the API server
    // keeps answering, but /readyz fails its etcd check.
    let etcd = cp.pids()[0];
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(i32::try_from(etcd).expect("pid")), nix::sys::signal::Signal::SIGKILL)
        .expect("etcd killed");
    let started = Instant::now();
    let err = loop {
        match cluster.readyz().await {
            Err(e) => break e,
            Ok(()) if started.elapsed() < Duration::from_secs(60) => tokio::time::sleep(Duration::from_millis(200)).await,
            Ok(()) => panic!("/readyz stayed ok for a minute without etcd"),
        }
    };
    let KubeError::NotReady { status, body, .. } = &err else { panic!("expected NotReady, got {err}") };
    assert_eq!(*status, 500, "{err}");
    assert!(body.starts_with("[-]etcd failed"), "only the failing checks: {err}");
    assert!(!body.contains("[+]"), "only the failing checks: {err}");
    assert!(err.to_string().contains(cp.server()), "{err}");
}

#[tokio::test]
async fn an_unreachable_server_is_an_api_error_and_a_timeout_names_it() {
    // No test bed needed: nothing listens on the port.
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: gone\n  cluster:\n    server: https://127.0.0.1:{port}\n    insecure-skip-tls-verify: true\nusers:\n- name: gone\n  user:\n    token: abc\ncontexts:\n- name: gone\n  context:\n    cluster: gone\n    user: gone\ncurrent-context: gone\n"
    );
    let cluster = Cluster::from_kubeconfig(&kubeconfig, None).await.expect("a client is made without a request");
    let err = cluster.readyz().await.expect_err("nothing listens");
    assert!(matches!(err, KubeError::Api { .. }), "{err}");
    assert!(err.to_string().contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(err.to_string().to_lowercase().contains("connection refused"), "the cause is named: {err}");

    let started = Instant::now();
    let err = cluster.wait_for_nodes(&[spec("lab-server-0", &[], &[])], Duration::from_secs(2)).await.expect_err("times out");
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    let msg = err.to_string();
    assert!(msg.contains("/readyz"), "{msg}");
    assert!(msg.contains("last API error"), "{msg}");
    assert!(std::error::Error::source(&err).is_some(), "the last error is the source");
}

#[tokio::test]
async fn nodes_are_mapped_and_waited_for() {
    let _testbed = require!(Need::KubeBinaries);
    let cp = ControlPlane::start_without_controller_manager().await.expect("control plane starts");
    let cluster = Cluster::from_kubeconfig(cp.kubeconfig(), None).await.expect("cluster");
    assert_eq!(cluster.nodes().await.expect("list"), Vec::new());

    register(
        cp.client(),
        "lab-server-0",
        &[],
        json!([{ "key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule" }]),
        "172.30.0.2",
        "4194304Ki",
    )
    .await
    .expect("server node");
    register(
        cp.client(),
        "lab-agent-0",
        &[("role", "apps"), ("tier", "web")],
        json!([{ "key": "dedicated", "value": "apps", "effect": "NoSchedule" }]),
        "172.30.0.16",
        "4030524Ki",
    )
    .await
    .expect("agent node");

    let nodes = cluster.nodes().await.expect("list");
    let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["lab-agent-0", "lab-server-0"]);
    let agent = &nodes[0];
    assert_eq!(agent.labels.get("role").map(String::as_str), Some("apps"));
    assert_eq!(agent.labels.get("tier").map(String::as_str), Some("web"));
    // The API server's TaintNodesByCondition admission adds the not-ready taint, as on a
    // real node before its CNI runs; the spec's taints need only be among them.
    assert_eq!(agent.taints, ["dedicated=apps:NoSchedule", NOT_READY]);
    assert!(!agent.ready);
    assert_eq!(
        agent.not_ready_because.as_deref(),
        Some("KubeletNotReady: container runtime network not ready: cni plugin not initialized")
    );
    assert_eq!(agent.memory_capacity.as_deref(), Some("4030524Ki"));
    assert_eq!(agent.internal_ip.as_deref(), Some("172.30.0.16"));
    assert_eq!(nodes[1].taints, ["node-role.kubernetes.io/control-plane:NoSchedule", NOT_READY]);
    assert_eq!(nodes[1].internal_ip.as_deref(), Some("172.30.0.2"));
    // The API server writes a quantity in its canonical form: 4194304Ki comes back as 4Gi.
    assert_eq!(nodes[1].memory_capacity.as_deref(), Some("4Gi"));
    assert_eq!(nodes[1].memory_capacity.as_deref().and_then(parse_memory_quantity), Some(4 << 30));

    // Both match their specs: done at once, NotReady as they are, in the order asked.
    let expected = [
        spec("lab-server-0", &[], &["node-role.kubernetes.io/control-plane:NoSchedule"]),
        spec("lab-agent-0", &[("role", "apps")], &["dedicated=apps:NoSchedule"]),
    ];
    let started = Instant::now();
    let found = cluster.wait_for_nodes(&expected, Duration::from_secs(30)).await.expect("nodes match");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    assert_eq!(found.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), ["lab-server-0", "lab-agent-0"]);
    assert!(found.iter().all(|n| !n.ready));

    // A missing taint, a wrong label and a node that never registers: a timeout naming each.
    let wanting = [
        spec("lab-server-0", &[], &["node-role.kubernetes.io/control-plane:NoSchedule"]),
        spec("lab-agent-0", &[("role", "db")], &["dedicated=apps:NoSchedule", "gpu=true:NoExecute"]),
        spec("lab-agent-1", &[], &[]),
    ];
    let started = Instant::now();
    let err = cluster.wait_for_nodes(&wanting, Duration::from_secs(3)).await.expect_err("never matches");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(3) && waited < Duration::from_secs(8), "waited {waited:?}");
    let KubeError::NodesTimeout { problems, last_error, .. } = &err else { panic!("expected NodesTimeout, got {err}") };
    assert_eq!(
        problems,
        &["node lab-agent-0: label role=apps, expected role=db, taint gpu=true:NoExecute missing", "node lab-agent-1 is not registered"],
        "{err}"
    );
    assert!(last_error.is_none(), "the last list worked: {err}");
    let msg = err.to_string();
    assert!(msg.contains("timed out after 3s") && msg.contains("gpu=true:NoExecute missing") && msg.contains("lab-agent-1"), "{msg}");

    // A node that registers while waiting is seen on a later poll.
    let client = cp.client();
    let late = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        register(client, "lab-agent-1", &[("role", "batch")], json!([]), "172.30.0.17", "2Gi").await
    });
    let expected = [spec("lab-agent-0", &[("role", "apps")], &[]), spec("lab-agent-1", &[("role", "batch")], &[])];
    let started = Instant::now();
    let found = cluster.wait_for_nodes(&expected, Duration::from_secs(30)).await.expect("the late node registers");
    late.await.expect("task").expect("late node");
    assert!(started.elapsed() >= Duration::from_millis(1500), "returned before the node existed");
    assert_eq!(found[1].name, "lab-agent-1");
    assert_eq!(found[1].taints, [NOT_READY]);
}
