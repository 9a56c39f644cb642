//! The health loop and the executor on the test bed's real API server (with the real CRD
//! fixtures: Argo CD's `Application`, k3s' `HelmChart`) and real Docker: a lab whose node
//! container stopped gets it started by the built-in `start-node` playbook; each
//! component's verdict, with its reasons, lands in the snapshot and the history; a verdict
//! that turns bad runs the playbook that waits for it; and the executor re-applies one
//! recorded object and refuses what idp-lab did not apply.

use super::*;
use crate::components::{WatchedComponent, record_component};
use bollard::models::ContainerCreateBody;
use idp_core::config::{Action, HealthVerdict, Playbook, RateLimit, Trigger};
use idp_test::{Need, require};
use idp_watchdog::playbook::Executor as _;
use idp_watchdog::{Retention, RunStatus};
use serde_json::{Value, json};
use std::time::UNIX_EPOCH;

fn kubectl(cp: &idp_test::ControlPlane, args: &[&str], stdin: Option<&str>) -> String {
    use std::io::Write as _;
    let mut command = cp.kubectl();
    command.args(args).stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let mut child = command.spawn().expect("kubectl runs");
    if let Some(text) = stdin {
        child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write");
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().expect("kubectl ends");
    assert!(out.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn component(namespace: &str) -> WatchedComponent {
    WatchedComponent {
        component: "web".into(),
        namespace: namespace.into(),
        inventory: Some(("web".into(), namespace.into())),
        objects: vec![
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": namespace}, "data": {"mode": "fast"}}),
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": namespace},
                "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx:1.25"}]}}}}),
        ],
        heal: true,
    }
}

fn playbook(name: &str, trigger: Trigger, action: Action, dry_run: bool) -> Playbook {
    Playbook {
        name: name.into(),
        triggers: vec![trigger],
        actions: vec![action],
        rate_limit: RateLimit { runs: 3, per: 600 },
        cooldown: 0,
        dry_run,
    }
}

async fn wait_until<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let began = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(began.elapsed() < Duration::from_secs(60), "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lab_is_judged_a_stopped_node_is_started_and_bad_verdicts_run_their_playbooks() {
    require!(Need::KubeBinaries, Need::SharedFixtures, Need::PythonYaml, Need::TestnodeImage);
    let (cp, _crds) = idp_test::crds::control_plane_with_crd_fixtures().await.expect("control plane with the CRD fixtures");
    let cluster = Cluster::from_kubeconfig(cp.kubeconfig(), None).await.expect("cluster");
    let scope = idp_test::docker::DockerScope::new().await.expect("docker");
    let lab = scope.lab_name();
    let dir = tempfile::tempdir().expect("tempdir");

    // A node container of the lab, stopped (a long sleep in the stand-in image).
    let image = idp_test::testnode_image().await.expect("stand-in image");
    let labels = idp_core::cluster::labels(&lab, "server");
    let body = ContainerCreateBody {
        image: Some(image),
        entrypoint: Some(vec!["sleep".into()]),
        cmd: Some(vec!["600".into()]),
        labels: Some(labels.into_iter().collect()),
        ..Default::default()
    };
    let node = scope.create_container("server-0", body).await.expect("node container");
    scope.docker().start_container(&node, None::<bollard::query_parameters::StartContainerOptions>).await.expect("start");
    scope.docker().stop_container(&node, None::<bollard::query_parameters::StopContainerOptions>).await.expect("stop");

    // The recorded component, applied as `apply` applies it.
    let namespace = "web";
    kubectl(&cp, &["create", "namespace", namespace], None);
    let recorded = component(namespace);
    record_component(dir.path(), &recorded).expect("record");
    let components = crate::components::recorded_components(dir.path(), &lab);
    let c = &components[0];
    cluster.apply(c.objects.clone(), &c.options, &mut idp_kube::ApplyCache::default(), &|_| {}).await.expect("apply");

    // An Application Argo CD judged Degraded, and a HelmChart whose install Job does not exist yet.
    kubectl(&cp, &["create", "namespace", "argocd"], None);
    let app = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": "grafana", "namespace": "argocd"},
        "spec": {"project": "default", "destination": {"server": "https://kubernetes.default.svc", "namespace": "observability"},
            "source": {"repoURL": "oci://registry/stacks/observability", "targetRevision": "1.0.0", "path": "."}},
        "status": {"health": {"status": "Degraded", "message": "Deployment grafana: 0/1 available"}, "sync": {"status": "Synced"}}});
    kubectl(&cp, &["apply", "-f", "-"], Some(&app.to_string()));
    let chart = json!({"apiVersion": "helm.cattle.io/v1", "kind": "HelmChart", "metadata": {"name": "vault", "namespace": "kube-system"},
        "spec": {"chart": "vault", "repo": "https://helm.releases.hashicorp.com", "version": "0.31.0"}});
    kubectl(&cp, &["apply", "-f", "-"], Some(&chart.to_string()));

    let history = Arc::new(History::open(&dir.path().join("watchdog.sled"), Retention::default()).expect("history"));
    let executor = LabExecutor::new(dir.path(), &lab);
    executor.set_cluster(cluster.clone());
    let mut playbooks: Vec<Playbook> = idp_core::config::builtin_playbooks().into_iter().filter(|p| p.name == "start-node").collect();
    playbooks.push(playbook(
        "tell-argo",
        Trigger::Health { component: "applications".into(), verdict: HealthVerdict::Degraded },
        Action::SyncApplication { application: "argocd/grafana".to_owned().try_into().expect("valid") },
        true,
    ));
    let engine = Arc::new(Engine::new(playbooks, history.clone(), executor.clone()));
    let shared = Shared::default();
    let health = HealthLoop {
        lab: lab.clone(),
        cluster: cluster.clone(),
        components,
        history: Some(history.clone()),
        engine: Some(engine),
        shared: shared.clone(),
    };
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(health.run(shutdown.child_token()));

    // The first tick: every component, with its reasons.
    let snapshot = wait_until("the first judgement", async || last(&shared)).await;
    let by_name =
        |name: &str| snapshot.components.iter().find(|c| c.name == name).cloned().unwrap_or_else(|| panic!("no {name} in {snapshot:#?}"));
    let names: Vec<&str> = snapshot.components.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        ["cluster", "web", "applications", "helm-charts"],
        "no vault: the lab has no Service vault-system/vault: {snapshot:#?}"
    );
    let cluster_rollup = by_name("cluster");
    assert_eq!(cluster_rollup.health, Health::Degraded, "{cluster_rollup:#?}");
    assert!(
        cluster_rollup.reasons.iter().any(|r| r.subject == format!("node {node}") && r.reason == "the container is exited"),
        "{cluster_rollup:#?}"
    );
    let web = by_name("web");
    assert_eq!(
        (web.health, web.children),
        (Health::Progressing, 1),
        "only the Deployment has a status to judge (none: no controller): {web:#?}"
    );
    assert_eq!(web.reasons.len(), 1, "{web:#?}");
    assert!(web.reasons[0].subject.starts_with("Deployment.apps web/web"), "{web:#?}");
    let apps = by_name("applications");
    assert_eq!(apps.health, Health::Degraded, "{apps:#?}");
    assert_eq!(apps.reasons[0].subject, "Application argocd/grafana");
    assert!(apps.reasons[0].reason.contains("0/1 available"), "Argo CD's message is the reason: {apps:#?}");
    assert_eq!(by_name("helm-charts").health, Health::Progressing);
    assert_eq!(snapshot.lab.health, Health::Degraded);

    // The built-in start-node playbook started the node container.
    wait_until("the node container to run", async || {
        let inspect = scope.docker().inspect_container(&node, None).await.ok()?;
        inspect.state.and_then(|s| s.running).filter(|r| *r)
    })
    .await;
    let runs = wait_until("two playbook runs", async || {
        let runs: Vec<idp_watchdog::Run> = history
            .since(UNIX_EPOCH)
            .ok()?
            .into_iter()
            .filter(|e| e.kind == EventKind::PlaybookRun)
            .filter_map(|e| serde_json::from_value(e.body).ok())
            .collect();
        (runs.len() >= 2).then_some(runs)
    })
    .await;
    let start = runs.iter().find(|r| r.playbook == "start-node").expect("start-node ran");
    assert_eq!(start.status, RunStatus::Ok, "{start:#?}");
    assert_eq!(start.actions[0].detail, format!("started node {node}"));
    let tell = runs.iter().find(|r| r.playbook == "tell-argo").expect("the Degraded verdict ran its playbook");
    assert_eq!(tell.status, RunStatus::DryRun, "{tell:#?}");
    assert!(
        !runs.iter().any(|r| r.playbook == "tell-argo" && r.trigger != tell.trigger),
        "only the applications' verdict triggers it: {runs:#?}"
    );

    // Each verdict is in the history once, with its reasons.
    let verdicts: Vec<HealthChange> = history
        .since(UNIX_EPOCH)
        .expect("history")
        .into_iter()
        .filter(|e| e.kind == EventKind::Verdict && e.subject.starts_with("health "))
        .filter_map(|e| serde_json::from_value(e.body).ok())
        .collect();
    let of = |name: &str| verdicts.iter().filter(|v| v.component == name).collect::<Vec<_>>();
    assert_eq!(of("applications").len(), 1, "{verdicts:#?}");
    assert_eq!(of("applications")[0].health, "Degraded");
    assert_eq!(of("applications")[0].from, None);
    assert!(of("lab")[0].reasons.iter().any(|r| r.starts_with("applications")), "{verdicts:#?}");

    // The next tick sees the node running again: the cluster turns Progressing at worst.
    // (Its Node never registers: a sleep is no kubelet, and the test bed's API has none.)
    shutdown.cancel();
    let _ = task.await;

    // The executor re-applies one recorded object, as `apply` sent it, and nothing else.
    kubectl(&cp, &["-n", namespace, "patch", "configmap", "settings", "--type=merge", "-p", r#"{"data":{"mode":"slow"}}"#], None);
    let object = "ConfigMap/web/settings".to_owned().try_into().expect("valid");
    let done = executor.execute(&Action::Reapply { object: Some(object) }, &Cause::VaultSealed).await.expect("reapplied");
    assert_eq!(done, "re-applied ConfigMap web/settings of component web");
    let live: Value =
        serde_json::from_str(&kubectl(&cp, &["-n", namespace, "get", "configmap", "settings", "-o", "json"], None)).expect("json");
    assert_eq!(live["data"]["mode"], "fast");
    let foreign = "ConfigMap/kube-system/extension-apiserver-authentication".to_owned().try_into().expect("valid");
    let e = executor.execute(&Action::Reapply { object: Some(foreign) }, &Cause::VaultSealed).await.expect_err("not idp-lab's");
    assert!(e.to_string().contains("only what idp-lab applied can be re-applied"), "{e}");
    // And the drifted object a drift names.
    kubectl(&cp, &["-n", namespace, "patch", "configmap", "settings", "--type=merge", "-p", r#"{"data":{"mode":"slow"}}"#], None);
    let drift = Cause::Drift { component: "web".into(), object: "ConfigMap web/settings".into(), fields: vec!["data.mode".into()] };
    executor.execute(&Action::Reapply { object: None }, &drift).await.expect("reapplied the drifted object");
    let live: Value =
        serde_json::from_str(&kubectl(&cp, &["-n", namespace, "get", "configmap", "settings", "-o", "json"], None)).expect("json");
    assert_eq!(live["data"]["mode"], "fast");
    // A node of another lab is never touched.
    let e = executor.execute(&Action::StartNode { node: Some("not-a-node".into()) }, &Cause::VaultSealed).await.expect_err("no such node");
    assert!(e.to_string().contains("has no node not-a-node"), "{e}");

    scope.cleanup().await.expect("cleanup");
}
