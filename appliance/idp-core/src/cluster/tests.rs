use super::*;
use crate::config::{self, FileKind};
use crate::settings::{self, Probes};

fn settings(text: &str) -> Settings {
    let file = config::parse_file(text, "idp-lab.toml", FileKind::Config, &[]).expect("valid test config");
    let c = config::resolve(&[&config::defaults(), &file.layer]).expect("resolves");
    settings::resolve(&c, &Probes::default()).expect("settings")
}

fn subnet() -> Subnet {
    Subnet::parse("172.30.0.0/24").expect("subnet")
}

fn standard() -> ClusterPlan {
    cluster_plan(&settings(""), subnet(), Some(1500))
}

#[test]
fn subnets_parse_overlap_and_print() {
    let s = Subnet::parse("10.1.2.3/16").expect("subnet");
    assert_eq!(s.to_string(), "10.1.0.0/16");
    assert!(s.contains(Ipv4Addr::new(10, 1, 200, 1)) && !s.contains(Ipv4Addr::new(10, 2, 0, 1)));
    assert!(s.overlaps(&Subnet::parse("10.1.5.0/24").expect("subnet")));
    assert!(Subnet::parse("10.1.5.0/24").expect("subnet").overlaps(&s));
    assert!(!s.overlaps(&Subnet::parse("10.2.0.0/24").expect("subnet")));
    assert_eq!(Subnet::parse("0.0.0.0/0").expect("default").to_string(), "0.0.0.0/0");
    for bad in ["10.0.0.0", "10.0.0.0/33", "x/8", "10.0.0/8"] {
        assert_eq!(Subnet::parse(bad), None, "{bad}");
    }
    assert_eq!(subnet().host(2), Ipv4Addr::new(172, 30, 0, 2));
    assert_eq!(serde_json::to_value(subnet()).expect("json"), serde_json::json!("172.30.0.0/24"));
    assert_eq!(serde_json::from_value::<Subnet>(serde_json::json!("172.30.1.0/24")).expect("parses").addr, Ipv4Addr::new(172, 30, 1, 0));
    assert!(serde_json::from_value::<Subnet>(serde_json::json!("nope")).is_err());
}

#[test]
fn subnet_choice_avoids_routes_and_other_networks() {
    let p = |s: &str| Subnet::parse(s).expect("subnet");
    assert_eq!(choose_subnet(&[p("0.0.0.0/0"), p("172.17.0.0/16")], &[]), Some(p("172.30.0.0/24")));
    assert_eq!(choose_subnet(&[p("172.30.0.0/23")], &[p("172.30.2.0/24")]), Some(p("172.30.3.0/24")));
    assert_eq!(choose_subnet(&[p("172.30.0.0/15")], &[]), None, "everything is routed elsewhere");
}

#[test]
fn the_standard_plan_has_one_server_and_two_agents() {
    let plan = standard();
    let names: Vec<&str> = plan.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["idp-lab-server-0", "idp-lab-agent-0", "idp-lab-agent-1"]);
    assert_eq!(plan.network.gateway, Ipv4Addr::new(172, 30, 0, 1));
    assert_eq!(plan.network.labels.get(LAB_LABEL).map(String::as_str), Some("idp-lab"));
    let ips: Vec<String> = plan.nodes.iter().map(|n| n.ip.to_string()).collect();
    assert_eq!(ips, ["172.30.0.2", "172.30.0.16", "172.30.0.17"]);
    let server = plan.first_server().expect("a server");
    for flag in SERVER_ARGS {
        assert!(server.args.contains(&(*flag).to_owned()), "{flag}");
    }
    assert_eq!(server.args[0], "server");
    assert!(server.args.contains(&"--node-taint=node-role.kubernetes.io/control-plane:NoSchedule".to_owned()));
    assert!(server.args.contains(&"--tls-san=127.0.0.1".to_owned()) && server.args.contains(&"--tls-san=idp-lab-server-0".to_owned()));
    assert!(server.args.contains(&format!("--resolv-conf={RESOLV_PATH}")));
    assert!(server.args.iter().any(|a| a.starts_with("--kubelet-arg=image-gc-high-threshold=90")));
    assert_eq!(server.ports.iter().map(|p| (p.host_port, p.container_port)).collect::<Vec<_>>(), [(6443, 6443)]);
    let agent = plan.node("idp-lab-agent-1").expect("agent 1");
    assert_eq!(agent.args[0], "agent");
    for server_only in ["--tls-san", "--disable", "--flannel-backend", "--cluster-init", "--disable-kube-proxy", "--disable-network-policy"]
    {
        assert!(!agent.args.iter().any(|a| a.starts_with(server_only)), "{server_only} on an agent");
    }
    assert!(agent.args.contains(&"--node-label=role=apps".to_owned()));
    assert_eq!(agent.node_labels.get("role").map(String::as_str), Some("apps"));
    assert_eq!(agent.ports.iter().map(|p| p.container_port).collect::<Vec<_>>(), [30080, 30443]);
    assert!(agent.ports.iter().all(|p| p.host_ip.is_loopback()));
    let config = agent.files.iter().find(|f| f.path == CONFIG_PATH).expect("config.yaml");
    assert_eq!(config.content, FileContent::Text(format!("token-file: {TOKEN_PATH}\nserver: https://idp-lab-server-0:6443\n")));
    let token = agent.files.iter().find(|f| f.path == TOKEN_PATH).expect("token file");
    assert_eq!((token.mode, &token.content), (0o600, &FileContent::Token));
    assert_eq!(agent.volumes.len(), NODE_VOLUMES.len());
    assert_eq!(agent.volumes[0].name, "idp-lab-agent-1-kubelet");
    assert_eq!(agent.memory, Some(4 << 30));
    assert_eq!(agent.restart, "unless-stopped");
    assert!(agent.env.iter().all(|e| !e.contains("TOKEN=")), "no token in the environment");
    assert!(!agent.labels.values().any(|v| v.len() > 40), "no secret-looking label");
}

#[test]
fn several_servers_join_the_first() {
    let plan = cluster_plan(&settings("[cluster]\nservers = 3\nagents = 0\npools = []\n"), subnet(), None);
    let servers: Vec<&NodeSpec> = plan.nodes.iter().collect();
    assert!(servers[0].args.contains(&"--cluster-init".to_owned()));
    assert!(!servers[1].args.contains(&"--cluster-init".to_owned()));
    let has_server = |n: &NodeSpec| {
        n.files.iter().any(|f| matches!(&f.content, FileContent::Text(t) if t.contains("server: https://idp-lab-server-0:6443")))
    };
    assert!(!has_server(servers[0]) && has_server(servers[1]));
    assert_eq!(servers[0].ports.iter().map(|p| p.purpose.as_str()).collect::<Vec<_>>(), ["api", "gateway-http", "gateway-https"]);
    assert!(servers[1].ports.is_empty());
}

#[test]
fn hashes_change_with_the_spec() {
    let a = standard();
    let b = cluster_plan(&settings("[cluster]\nmemory = \"2g\"\n"), subnet(), Some(1500));
    assert_eq!(a.nodes[0].hash(), standard().nodes[0].hash(), "stable");
    assert_ne!(a.nodes[0].hash(), b.nodes[0].hash());
    assert_eq!(a.nodes[0].container_labels().get(SPEC_LABEL), Some(&a.nodes[0].hash()));
    assert_eq!(describe_changes(&a.nodes[0], &b.nodes[0]), [format!("memory {:?} → {:?}", Some(4u64 << 30), Some(2u64 << 30))]);
}

fn observed_as(plan: &ClusterPlan, running: bool) -> Observed {
    Observed {
        network: Some(plan.network.subnet),
        nodes: plan
            .nodes
            .iter()
            .map(|n| ObservedNode {
                name: n.name.clone(),
                id: format!("id-{}", n.name),
                running,
                state: if running { "running".into() } else { "exited".into() },
                spec_hash: Some(n.hash()),
                ip: Some(n.ip),
                image: n.image.clone(),
                started_at: None,
            })
            .collect(),
    }
}

#[test]
fn plans_create_everything_for_a_new_lab() {
    let p = standard();
    let actions = plan(&p, &Observed::default(), None, false).expect("plan");
    assert_eq!(actions.iter().map(Action::verb).collect::<Vec<_>>(), ["create network", "create", "create", "create"]);
    assert!(actions.iter().all(Action::changes));
    assert_eq!(actions[1].target(), "idp-lab-server-0");
    assert_eq!(actions[1].reason(), "no such container");
}

#[test]
fn a_healthy_lab_is_left_alone_and_stopped_nodes_are_started() {
    let p = standard();
    let actions = plan(&p, &observed_as(&p, true), Some(&p), false).expect("plan");
    assert!(actions.iter().all(|a| !a.changes()), "{actions:?}");
    let mut observed = observed_as(&p, true);
    observed.nodes[2].running = false;
    observed.nodes[2].state = "exited".into();
    observed.nodes.remove(1);
    let actions = plan(&p, &observed, Some(&p), false).expect("plan");
    let changes: Vec<(&str, &str)> = actions.iter().filter(|a| a.changes()).map(|a| (a.verb(), a.target())).collect();
    assert_eq!(changes, [("create", "idp-lab-agent-0"), ("start", "idp-lab-agent-1")]);
}

#[test]
fn a_changed_config_refuses_without_recreate() {
    let old = standard();
    let new = cluster_plan(&settings("[cluster]\nmemory = \"2g\"\nagents = 1\npools = []\n"), subnet(), Some(1500));
    let err = plan(&new, &observed_as(&old, true), Some(&old), false).expect_err("needs recreate");
    assert!(err.differences.iter().any(|d| d.starts_with("idp-lab-server-0: memory")), "{err}");
    assert!(err.differences.iter().any(|d| d == "idp-lab-agent-1: not in the configuration any more"), "{err}");
    assert!(err.to_string().contains("needs new nodes"));
    let actions = plan(&new, &observed_as(&old, true), Some(&old), true).expect("recreate");
    let changes: Vec<(&str, &str)> = actions.iter().filter(|a| a.changes()).map(|a| (a.verb(), a.target())).collect();
    assert_eq!(changes, [("recreate", "idp-lab-server-0"), ("recreate", "idp-lab-agent-0"), ("remove", "idp-lab-agent-1")]);
    // Without the previous plan the difference is named by its hash.
    let err = plan(&new, &observed_as(&old, true), None, false).expect_err("needs recreate");
    assert!(err.differences[0].contains("spec "), "{err}");
    // A moved subnet is a difference too.
    let mut observed = observed_as(&old, true);
    observed.network = Subnet::parse("172.30.9.0/24");
    assert!(plan(&old, &observed, Some(&old), false).expect_err("subnet").differences[0].contains("subnet"));
}

#[test]
fn files_for_nodes() {
    assert!(entrypoint_script().contains("mount --make-rshared /\nexec /bin/k3s \"$@\""));
    let lo: IpAddr = "127.0.0.53".parse().expect("ip");
    let up: IpAddr = "10.0.0.1".parse().expect("ip");
    assert_eq!(resolv_conf(&[lo], Ipv4Addr::new(172, 30, 0, 1)).lines().last(), Some("nameserver 172.30.0.1"));
    assert!(resolv_conf(&[lo, up], Ipv4Addr::new(172, 30, 0, 1)).ends_with("nameserver 10.0.0.1\n"));
    assert!(fake_meminfo(4 << 30).starts_with("MemTotal:        4194304 kB\n"));
    let yaml = registries_yaml(&BTreeMap::from([("docker.io".to_owned(), vec!["http://10.0.0.2:5000".to_owned()])]));
    assert!(yaml.contains("docker.io") && yaml.contains("http://10.0.0.2:5000"), "{yaml}");
    let with_mirrors = cluster_plan(&settings("[registry]\nmirrors = { \"docker.io\" = [\"http://m:5000\"] }\n"), subnet(), None);
    let registries = |plan: &ClusterPlan| -> String {
        match plan.nodes[0].files.iter().find(|f| f.path == REGISTRIES_PATH).map(|f| &f.content) {
            Some(FileContent::Text(text)) => text.clone(),
            other => panic!("no registries.yaml: {other:?}"),
        }
    };
    let gateway = format!("{}:{REGISTRY_PORT}", standard().network.gateway);
    let both = registries(&with_mirrors);
    assert!(both.contains("http://m:5000") && both.contains(&format!("http://{gateway}")), "{both}");
    // Every lab's nodes reach the lab's own registry, over plain HTTP on the lab network,
    // as its own address and as the first mirror of every registry the lock names.
    let own = registries(&standard());
    assert!(own.contains(&format!("\"{gateway}\":")) && own.contains(&format!("http://{gateway}")), "{own}");
    let mirrors = node_mirrors(&settings(""), standard().network.gateway);
    for registry in MIRRORED_REGISTRIES.iter().copied().chain(["docker.io", "quay.io", "ghcr.io"]) {
        assert_eq!(mirrors.get(registry), Some(&vec![format!("http://{gateway}")]), "{registry}: {mirrors:?}");
    }
    assert_eq!(mirrors.get(&gateway), Some(&vec![format!("http://{gateway}")]));
    // Configured mirrors come after the lab's, for their registry only; a new registry
    // named there is mirrored too.
    let configured = node_mirrors(
        &settings("[registry]\nmirrors = { \"docker.io\" = [\"http://m:5000\"], \"registry.example\" = [\"http://n:5000\"] }\n"),
        standard().network.gateway,
    );
    assert_eq!(configured["docker.io"], [format!("http://{gateway}"), "http://m:5000".to_owned()]);
    assert_eq!(configured["registry.example"], [format!("http://{gateway}"), "http://n:5000".to_owned()]);
    assert_eq!(configured["quay.io"], [format!("http://{gateway}")]);
    let written =
        registries(&cluster_plan(&settings("[registry]\nmirrors = { \"registry.example\" = [\"http://n:5000\"] }\n"), subnet(), None));
    assert!(written.contains("registry.example") && written.contains("http://n:5000"), "the plan writes node_mirrors: {written}");
}

#[test]
fn offline_nodes_never_fall_back_upstream_and_get_the_air_gap_images() {
    let online = standard();
    assert!(online.nodes.iter().all(|n| !n.airgap_images && !n.args.iter().any(|a| a == "--disable-default-registry-endpoint")));
    let offline = cluster_plan(&settings("[registry]\noffline = true\n"), subnet(), None);
    assert!(offline.nodes.len() > 1, "a server and agents");
    for node in &offline.nodes {
        assert!(node.airgap_images, "{}", node.name);
        assert_eq!(node.args.iter().filter(|a| *a == "--disable-default-registry-endpoint").count(), 1, "{:?}", node.args);
    }
    // The flag is part of the spec (a lab going offline is a changed node); absent, it is
    // not serialised, so labs made before it keep their hash.
    let json = serde_json::to_value(&online.nodes[0]).expect("json");
    assert!(json.get("airgap_images").is_none(), "{json}");
    let mut with = online.nodes[0].clone();
    with.airgap_images = true;
    assert_ne!(with.hash(), online.nodes[0].hash());
}

#[test]
fn proxies_pass_through_with_the_lab_networks_excluded() {
    assert!(proxy_env(&[], subnet()).is_empty());
    let env = proxy_env(&[("https_proxy".into(), "http://proxy:3128".into()), ("NO_PROXY".into(), "corp.local".into())], subnet());
    assert!(env.contains(&"HTTPS_PROXY=http://proxy:3128".to_owned()) && env.contains(&"https_proxy=http://proxy:3128".to_owned()));
    let no_proxy = env.iter().find(|e| e.starts_with("NO_PROXY=")).expect("NO_PROXY");
    for part in ["corp.local", "10.42.0.0/16", "10.43.0.0/16", "172.30.0.0/24", ".svc"] {
        assert!(no_proxy.contains(part), "{no_proxy}");
    }
}

#[test]
fn the_local_registry_is_advertised_at_the_gateway() {
    let hosting = local_registry_hosting(Ipv4Addr::new(172, 30, 0, 1));
    let map = hosting.config_map();
    assert_eq!(
        (map["metadata"]["namespace"].as_str(), map["metadata"]["name"].as_str()),
        (Some("kube-public"), Some("local-registry-hosting"))
    );
    let doc = map["data"]["localRegistryHosting.v1"].as_str().expect("the document");
    assert!(doc.contains("host: \"172.30.0.1:5000\"\n"), "{doc}");
    assert!(!doc.contains("hostFrom"), "the same address everywhere is given once: {doc}");
}
