use super::watchdog::*;
use super::*;
use proptest::prelude::*;

const COMPONENTS: &[&str] = &["cilium", "argocd"];

fn parse(text: &str) -> Result<Config, ConfigError> {
    let file = parse_file(text, "idp-lab.toml", FileKind::Config, COMPONENTS)?;
    resolve(&[&defaults(), &file.layer])
}

#[test]
fn defaults_are_the_original_platform() {
    let c = parse("").expect("defaults resolve");
    assert_eq!(c.lab.name, "idp-lab");
    assert_eq!(c.cluster.flavor, Flavor::K3s);
    assert_eq!(c.cluster.node_image(), K3S_IMAGE);
    assert_eq!((c.cluster.servers, c.cluster.agents), (1, 2));
    assert_eq!(c.cluster.memory_bytes(), 4 << 30);
    assert_eq!(c.cluster.pools.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["infra", "apps"]);
    assert_eq!(c.cluster.pools[0].labels.get("role").map(String::as_str), Some("infra"));
    assert_eq!(c.network.bind_address.to_string(), "127.0.0.1");
    assert_eq!(c.network.https_port, PortSetting::Auto);
    assert_eq!(c.network.resolved_dns_suffix(None), "127-0-0-1.nip.io");
    assert!(c.stacks.secrets && c.stacks.events && !c.stacks.prod);
    assert_eq!(c.timeouts.cluster, 300);
    assert_eq!(c.timeouts.total, 1800);
}

#[test]
fn three_errors_with_positions() {
    let text = "[cluster]\nimagee = \"x\"\nagents = \"two\"\n\n[network]\nhttps_port = 70000\n";
    let err = parse(text).expect_err("three problems");
    let shown: Vec<String> = err.diagnostics.iter().map(ToString::to_string).collect();
    assert_eq!(err.diagnostics.len(), 3, "{shown:#?}");
    insta::assert_snapshot!(err.to_string(), @r#"
    idp-lab.toml:2:1: cluster.imagee: unknown key
      help: did you mean `image`?
    idp-lab.toml:3:10: cluster.agents: expected an integer from 0 to 16, found a string ("two")
    idp-lab.toml:6:14: network.https_port: expected "auto" or a port number from 1 to 65535, found 70000
    "#);
}

#[test]
fn unknown_sections_and_choices_suggest_fixes() {
    let err = parse("[netwrok]\nx = 1\n[cluster]\nflavor = \"k3d\"\n").expect_err("two problems");
    insta::assert_snapshot!(err.to_string(), @r#"
    idp-lab.toml:1:2: netwrok: unknown section
      help: did you mean [network]?
    idp-lab.toml:4:10: cluster.flavor: expected one of "k3s", "kind", "existing", found "k3d"
      help: did you mean "k3s"?
    "#);
}

#[test]
fn syntax_errors_have_positions() {
    let err = parse("[lab]\nname = \"unterminated\n").expect_err("syntax");
    let d = &err.diagnostics[0];
    assert_eq!((d.line, d.origin.clone()), (2, Origin::File("idp-lab.toml".into())));
    assert!(d.message.starts_with("invalid TOML"), "{}", d.message);
}

#[test]
fn pools_are_checked_in_depth() {
    let err = parse("[cluster]\nagents = 1\npools = [{ name = \"a\", labels = { role = \"x y\" } }, { name = \"b\", taints = [\"k=v:Sometimes\"], colour = 1 }]\n")
        .expect_err("bad pools");
    let paths: Vec<&str> = err.diagnostics.iter().map(|d| d.path.as_str()).collect();
    assert_eq!(paths, ["cluster.pools[0].labels.role", "cluster.pools[1].taints[0]", "cluster.pools[1].colour"]);
    let err = parse("[cluster]\nagents = 1\n").expect_err("two default pools, one agent");
    assert_eq!(err.diagnostics[0].path, "cluster.pools");
    assert!(err.diagnostics[0].to_string().contains("2 pools but only 1 agents"));
}

#[test]
fn array_of_tables_pools_work() {
    let c =
        parse("[cluster]\nagents = 3\n[[cluster.pools]]\nname = \"gpu\"\ntaints = [\"nvidia.com/gpu=true:NoSchedule\"]\n").expect("valid");
    assert_eq!(c.cluster.pools.len(), 1);
    assert_eq!(c.cluster.pools[0].taints, ["nvidia.com/gpu=true:NoSchedule"]);
}

#[test]
fn versions_only_name_chart_components() {
    let c = parse("[versions]\ncilium = \"1.18.3\"\n").expect("valid");
    assert_eq!(c.versions.get("cilium").map(String::as_str), Some("1.18.3"));
    let err = parse("[versions]\ncillium = \"1.18.3\"\n").expect_err("typo");
    assert_eq!(err.diagnostics[0].hint.as_deref(), Some("did you mean `cilium`?"));
}

#[test]
fn env_overrides_win_and_are_typed() {
    let file = parse_file("[network]\nhttps_port = 9443\n", "idp-lab.toml", FileKind::Config, COMPONENTS).expect("valid");
    let env = env_layer(
        [
            ("IDP_LAB_NETWORK_HTTPS_PORT", "8443"),
            ("IDP_LAB_CLUSTER_IMAGE", "rancher/k3s:v1.33.5-k3s1"),
            ("IDP_LAB_HOME", "/x"),
            ("PATH", "/bin"),
        ],
        COMPONENTS,
    )
    .expect("valid env");
    let c = resolve(&[&defaults(), &file.layer, &env]).expect("resolves");
    assert_eq!(c.network.https_port, PortSetting::Fixed(8443));
    assert_eq!(c.cluster.image, "rancher/k3s:v1.33.5-k3s1");
}

#[test]
fn env_errors_name_the_variable() {
    let err = env_layer([("IDP_LAB_NETWORK_HTTPS_PORT", "0"), ("IDP_LAB_CLUSTR_IMAGE", "x")], COMPONENTS).expect_err("two problems");
    insta::assert_snapshot!(err.to_string(), @r#"
    environment variable IDP_LAB_CLUSTR_IMAGE:1:1: clustr.image: no such configuration key
      help: did you mean IDP_LAB_CLUSTER_IMAGE?
    environment variable IDP_LAB_NETWORK_HTTPS_PORT:1:1: network.https_port: expected "auto" or a port number from 1 to 65535, found 0
      help: use "auto" to let idp-lab pick a free port
    "#);
}

#[test]
fn port_clashes_and_lan_suffixes() {
    let err = parse("[network]\nhttp_port = 8443\nhttps_port = 8443\n").expect_err("clash");
    assert_eq!(err.diagnostics[0].path, "network.http_port");
    let c = parse("[network]\nbind_address = \"0.0.0.0\"\nlan_ip = \"192.168.1.20\"\n").expect("valid");
    assert_eq!(c.network.resolved_dns_suffix(None), "192-168-1-20.nip.io");
    let c = parse("[network]\nbind_address = \"0.0.0.0\"\n").expect("valid");
    assert!(c.network.needs_lan_ip());
    assert_eq!(c.network.resolved_dns_suffix("10.0.0.5".parse().ok()), "10-0-0-5.nip.io");
    let c = parse("[network]\ndns_suffix = \"lab.example.com\"\n").expect("valid");
    assert_eq!(c.network.resolved_dns_suffix(None), "lab.example.com");
}

#[test]
fn sizes_and_durations() {
    assert_eq!(parse_size("4g"), Some(4 << 30));
    assert_eq!(parse_size("512Mi"), Some(512 << 20));
    assert_eq!(parse_size("0"), Some(0));
    assert_eq!(parse_size("1k"), None, "below Docker's minimum");
    assert_eq!(parse_bytes("1k"), Some(1 << 10), "no floor for byte counts");
    assert_eq!(parse_bytes("1m"), Some(1 << 20));
    assert_eq!(parse_bytes("1 m"), None);
    assert_eq!(parse_size("4 g"), None);
    assert_eq!(parse_duration("5m"), Some(300));
    assert_eq!(parse_duration("0s"), None);
    assert_eq!(parse_duration("1d"), None);
}

/// A valid config touching every kind of key, for mutation.
const SAMPLE: &str = r#"[lab]
name = "demo"
[cluster]
flavor = "k3s"
servers = 1
agents = 2
memory = "4g"
pools = [{ name = "infra", labels = { role = "infra" } }]
k3s_args = ["--disable=metrics-server"]
[network]
bind_address = "127.0.0.1"
https_port = 8443
dns_suffix = "auto"
[stacks]
prod = false
[versions]
cilium = "1.18.2"
[registry]
mirrors = { "docker.io" = ["http://10.0.0.2:5000"] }
[timeouts]
cluster = "300s"
"#;

#[test]
fn the_sample_is_valid() {
    parse(SAMPLE).expect("valid sample");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Mutated configs never panic, and every error has a position inside the file.
    #[test]
    fn mutated_configs_fail_with_positions(pos in 0usize..SAMPLE.len(), cut in 0usize..8, insert in "[\\[\\]{}=\"a-z0-9 .,\n_-]{0,6}") {
        let mut text = SAMPLE.to_owned();
        let start = (0..=pos).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
        let end = (start..=(start + cut).min(text.len())).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(start);
        text.replace_range(start..end, &insert);
        if let Err(e) = parse(&text) {
            prop_assert!(!e.diagnostics.is_empty());
            let lines = text.lines().count().max(1) + 1;
            for d in &e.diagnostics {
                prop_assert!(d.line >= 1 && d.line <= lines && d.column >= 1, "{} out of range in:\n{}", d, text);
                prop_assert!(d.origin == Origin::File("idp-lab.toml".into()));
            }
        }
    }

    /// Arbitrary environment values never panic.
    #[test]
    fn arbitrary_env_values_never_panic(key in prop::sample::select(schema::KEYS.iter().map(|k| k.env_var()).collect::<Vec<_>>()), value in ".{0,12}") {
        let _ = env_layer([(key, value)], COMPONENTS);
    }
}

#[test]
fn registered_non_config_variables_are_ignored_and_only_those() {
    for var in schema::ENV_VARS {
        let layer = env_layer([(var.name, "anything")], COMPONENTS).unwrap_or_else(|e| panic!("{}: {e}", var.name));
        assert!(layer.is_empty(), "{} is not configuration", var.name);
    }
    assert!(schema::is_reserved_env("IDP_LAB_REAL_K3S_IMAGE"), "the real-image suite exports it");
    let err = env_layer([("IDP_LAB_REAL_K3S_IMAGEX", "x")], COMPONENTS).expect_err("not registered");
    assert_eq!(err.diagnostics.len(), 1);
    assert!(err.diagnostics[0].hint.as_deref().is_some_and(|h| h.contains("IDP_LAB_REAL_K3S_IMAGE")), "{err}");
    // Configuration keys still read alongside.
    let layer = env_layer([("IDP_LAB_REAL_K3S_IMAGE", "rancher/k3s:x"), ("IDP_LAB_CLUSTER_AGENTS", "3")], COMPONENTS).expect("valid");
    assert_eq!(layer.get("cluster.agents"), Some(&serde_json::json!(3)));
}

#[test]
fn server_taints_and_node_ports_are_checked() {
    let c = parse("[cluster]\nserver_taints = []\n[network]\nhttp_nodeport = 30000\nhttps_nodeport = 32767\n").expect("valid");
    assert!(c.cluster.server_taints.is_empty());
    assert_eq!((c.network.http_nodeport, c.network.https_nodeport), (30000, 32767));
    assert_eq!(parse("").expect("defaults").cluster.server_taints, ["node-role.kubernetes.io/control-plane:NoSchedule"]);
    let err =
        parse("[cluster]\nserver_taints = [\"ok:NoSchedule\", \"bad\"]\n[network]\nhttps_nodeport = 443\n").expect_err("two problems");
    let shown = err.to_string();
    assert!(shown.contains("cluster.server_taints[1]: expected a taint"), "{shown}");
    assert!(shown.contains("network.https_nodeport: expected an integer from 30000 to 32767"), "{shown}");
    assert_eq!(err.diagnostics.len(), 2, "{shown}");
    assert_eq!(err.diagnostics[0].line, 2);
}

#[test]
fn layers_know_whether_they_set_anything() {
    assert!(Layer::new(Origin::Env("x".into())).is_empty());
    let layer = env_layer([("IDP_LAB_CLUSTER_AGENTS", "3")], COMPONENTS).expect("valid");
    assert!(!layer.is_empty());
    let mut flags = Layer::new(Origin::Env("--profile".into()));
    flags.set_flag("lab.profile", serde_json::json!("full"));
    assert_eq!(flags.get("lab.profile"), Some(&serde_json::json!("full")));
    assert!(!flags.is_empty());
}

#[test]
fn the_profile_flag_names_the_resolved_profile() {
    let inputs = crate::profiles::Inputs { profile_flag: Some("workshop"), ..Default::default() };
    let c = crate::profiles::resolve(&inputs, COMPONENTS).expect("resolves");
    assert_eq!(c.lab.profile, "workshop");
}

#[test]
fn errors_print_one_per_line_without_a_leading_blank() {
    let one = parse("[cluster]\nagents = \"x\"\n").expect_err("one problem").to_string();
    assert!(!one.starts_with('\n') && !one.contains("\n\n"), "{one:?}");
    let two = parse("[cluster]\nagents = \"x\"\nservers = 0\n").expect_err("two problems").to_string();
    assert_eq!(two.lines().filter(|l| l.starts_with("idp-lab.toml:")).count(), 2, "{two}");
    assert!(!two.starts_with('\n'), "{two:?}");
}

#[test]
fn port_settings_read_auto_and_ports_only() {
    let read = |v: serde_json::Value| serde_json::from_value::<PortSetting>(v);
    assert_eq!(read(serde_json::json!("auto")).expect("auto"), PortSetting::Auto);
    assert_eq!(read(serde_json::json!(8443)).expect("port"), PortSetting::Fixed(8443));
    for bad in [serde_json::json!("automatic"), serde_json::json!(0), serde_json::json!(70000), serde_json::json!(true)] {
        assert!(read(bad.clone()).is_err(), "{bad}");
    }
    assert_eq!(serde_json::to_value(PortSetting::Auto).expect("json"), serde_json::json!("auto"));
    assert_eq!(serde_json::to_value(PortSetting::Fixed(80)).expect("json"), serde_json::json!(80));
}

#[test]
fn the_existing_flavor_takes_no_server_count() {
    let c = parse("[cluster]\nflavor = \"existing\"\n").expect("one server is the default");
    assert_eq!(c.cluster.flavor, Flavor::Existing);
    let err = parse("[cluster]\nflavor = \"existing\"\nservers = 3\n").expect_err("servers with existing");
    assert_eq!(err.diagnostics.len(), 1);
    assert_eq!((err.diagnostics[0].path.as_str(), err.diagnostics[0].line), ("cluster.servers", 3));
    assert!(parse("[cluster]\nservers = 3\n").is_ok(), "k3s takes several servers");
}

#[test]
fn combination_errors_point_at_where_the_value_was_set() {
    let text = "[cluster]\nagents = 1\npools = [{ name = \"a\", labels = {} }, { name = \"b\", labels = {} }]\n";
    let err = parse(text).expect_err("two pools, one agent");
    let d = &err.diagnostics[0];
    assert_eq!((d.path.as_str(), d.line, d.column), ("cluster.pools", 3, 9), "{err}");
    let err = parse("[network]\nhttp_port = 8080\n\nhttps_port = 8080\n").expect_err("same port");
    let d = &err.diagnostics[0];
    assert_eq!((d.line, d.column), (2, 13), "{err}");
}

#[test]
fn profile_files_have_a_described_profile_table() {
    let parsed =
        parse_file("[profile]\ndescription = \"small\"\n[cluster]\nagents = 0\npools = []\n", "p.toml", FileKind::Profile, COMPONENTS)
            .expect("valid profile");
    assert_eq!(parsed.description.as_deref(), Some("small"));
    assert_eq!(parsed.layer.get("cluster.agents"), Some(&serde_json::json!(0)));
    let err =
        parse_file("[profile]\ndescription = 3\nsummary = \"x\"\n", "p.toml", FileKind::Profile, COMPONENTS).expect_err("two problems");
    let shown = err.to_string();
    assert_eq!(err.diagnostics.len(), 2, "{shown}");
    assert!(shown.contains("p.toml:2:15: profile.description: expected a string, found an integer (3)"), "{shown}");
    assert!(shown.contains("p.toml:3:1: profile.summary: unknown key"), "{shown}");
    let err = parse_file("profile = 1\n", "p.toml", FileKind::Profile, COMPONENTS).expect_err("not a table");
    assert!(err.to_string().contains("expected a table [profile]"), "{err}");
    // Only profile files know a [profile] section.
    let in_profile = parse_file("[profil]\n", "p.toml", FileKind::Profile, COMPONENTS).expect_err("typo").to_string();
    assert!(in_profile.contains("did you mean [profile]?"), "{in_profile}");
    let in_config = parse("[profil]\n").expect_err("typo").to_string();
    assert!(!in_config.contains("[profile]"), "{in_config}");
    let in_config = parse("[profile]\ndescription = \"x\"\n").expect_err("no profile table in a config file").to_string();
    assert!(in_config.contains("unknown section"), "{in_config}");
}

#[test]
fn port_and_duration_values_say_what_they_found() {
    let err = parse("[network]\nhttps_port = \"eighty\"\n").expect_err("a word");
    assert!(err.to_string().contains("found \"eighty\""), "{err}");
    assert!(!err.to_string().contains("a string ("), "{err}");
    let err = parse("[network]\nhttps_port = true\n").expect_err("a bool");
    assert!(err.to_string().contains("found a boolean (true)"), "{err}");
    assert_eq!(parse("[timeouts]\ncluster = 90\n").expect("seconds").timeouts.cluster, 90);
    assert_eq!(parse("[timeouts]\ncluster = 1\n").expect("one second").timeouts.cluster, 1);
    for bad in ["0", "-5", "true", "1.5"] {
        let err = parse(&format!("[timeouts]\ncluster = {bad}\n")).expect_err(bad);
        assert!(err.to_string().contains("timeouts.cluster: expected a duration"), "{bad}: {err}");
    }
}

#[test]
fn chart_versions_are_single_words() {
    assert_eq!(parse("[versions]\ncilium = \"1.18.3\"\n").expect("valid").versions.get("cilium").map(String::as_str), Some("1.18.3"));
    for bad in ["\"1.18 .3\"", "\"\"", "\" \""] {
        let err = parse(&format!("[versions]\ncilium = {bad}\n")).expect_err(bad);
        assert!(err.to_string().contains("versions.cilium: expected a version string"), "{bad}: {err}");
    }
}

#[test]
fn names_dns_names_and_label_keys() {
    for good in ["a", "demo", "lab-2", "a0", &"a".repeat(32)] {
        assert!(is_name(good), "{good}");
    }
    for bad in ["", "2lab", "-lab", "lab-", "Lab", "la_b", "la.b", &"a".repeat(33)] {
        assert!(!is_name(bad), "{bad:?}");
    }
    for good in ["127-0-0-1.nip.io", "a.b", "lab.example.com", &format!("{}.io", "a".repeat(63))] {
        assert!(is_dns_name(good), "{good}");
    }
    let long = format!("{}.io", vec!["a".repeat(60); 5].join("."));
    for bad in ["nip", "a..b", "-a.b", "a-.b", "A.b", "a_b.c", ".a.b", "a.b.", &format!("{}.io", "a".repeat(64)), &long] {
        assert!(!is_dns_name(bad), "{bad:?}");
    }
    let pools = |labels: &str| parse(&format!("[cluster]\npools = [{{ name = \"p\", labels = {{ {labels} }} }}]\n"));
    for good in ["role = \"infra\"", "\"example.com/role\" = \"x\"", "k = \"\""] {
        assert!(pools(good).is_ok(), "{good}");
    }
    for bad in [
        "\"Bad Key\" = \"x\"",
        "\"-k\" = \"x\"",
        "\"bad_prefix_/k\" = \"x\"",
        "\"example.com/\" = \"x\"",
        "k = \"bad value\"",
        "k = \"-x\"",
    ] {
        assert!(pools(bad).is_err(), "{bad}");
    }
}

#[test]
fn pool_names_are_names_and_unique() {
    let pools = |names: &[&str]| {
        let tables: Vec<String> = names.iter().map(|n| format!("{{ name = \"{n}\" }}")).collect();
        parse(&format!("[cluster]\nagents = 4\npools = [{}]\n", tables.join(", ")))
    };
    assert!(pools(&["a", "b"]).is_ok());
    let err = pools(&["a", "a"]).expect_err("twice");
    assert!(err.to_string().contains("pool name \"a\" is used twice"), "{err}");
    let err = pools(&["Bad"]).expect_err("not a name");
    assert!(err.to_string().contains("cluster.pools[0].name: expected a lowercase name"), "{err}");
    assert!(!err.to_string().contains("used twice"), "{err}");
}

#[test]
fn mirrors_are_http_or_https_urls() {
    let mirrors = |e: &str| parse(&format!("[registry]\nmirrors = {{ \"docker.io\" = [\"{e}\"] }}\n"));
    for good in ["http://10.0.0.2:5000", "https://mirror.local"] {
        assert!(mirrors(good).is_ok(), "{good}");
    }
    for bad in ["10.0.0.2:5000", "ftp://x", "https://", "http://", "httpx://mirror"] {
        assert!(mirrors(bad).is_err(), "{bad}");
    }
}

#[test]
fn sizes_and_durations_take_their_units() {
    assert_eq!(parse_size("6144k"), Some(6144 << 10));
    assert_eq!(parse_size("8192KiB"), Some(8192 << 10));
    assert_eq!(parse_size("512m"), Some(512 << 20));
    assert_eq!(parse_size("4Gi"), Some(4 << 30));
    assert_eq!(parse_size("0"), Some(0));
    assert_eq!(parse_size("1k"), None, "below Docker's 6 MiB minimum");
    assert_eq!(parse_size("4t"), None);
    assert_eq!(parse_duration("1h"), Some(3600));
    assert_eq!(parse_duration("5m"), Some(300));
    assert_eq!(parse_duration("90"), Some(90));
    assert_eq!(parse_duration("2d"), None);
    assert_eq!(parse_duration("0s"), None);
}

#[test]
fn dns_keys_default_to_auto_and_no_forwarding() {
    let c = parse("").expect("defaults");
    assert_eq!(c.network.dns_port, PortSetting::Auto);
    assert!(c.network.dns_forward.is_empty());
    let c =
        parse("[network]\ndns_port = 5300\ndns_forward = [\"1.1.1.1\", \"10.0.0.2:5353\", \"[2606:4700::1111]:53\", \"2001:db8::1\"]\n")
            .expect("valid");
    assert_eq!(c.network.dns_port, PortSetting::Fixed(5300));
    assert_eq!(c.network.dns_forward, ["1.1.1.1", "10.0.0.2:5353", "[2606:4700::1111]:53", "2001:db8::1"]);
}

#[test]
fn a_bad_dns_forward_entry_is_a_positioned_error() {
    let text = "[network]\ndns_forward = [\n  \"1.1.1.1\",\n  \"dns.google\",\n  \"10.0.0.2:0\",\n  \"2001:db8::1:53x\",\n  3,\n]\n";
    let err = parse(text).expect_err("a number among the strings");
    insta::assert_snapshot!(err.to_string(), @r#"idp-lab.toml:7:3: network.dns_forward[4]: expected a string, found an integer (3)"#);
    let text =
        "[network]\ndns_forward = [\n  \"1.1.1.1\",\n  \"dns.google\",\n  \"10.0.0.2:0\",\n  \"0.0.0.0\",\n  \"2001:db8::1:53x\",\n]\n";
    let err = parse(text).expect_err("four bad entries");
    insta::assert_snapshot!(err.to_string(), @r#"
    idp-lab.toml:4:3: network.dns_forward[1]: expected a resolver address "ip" or "ip:port" ("[ip]:port" for IPv6), found "dns.google"
      help: a resolver is named by its IP address, not a hostname (which it would itself have to resolve)
    idp-lab.toml:5:3: network.dns_forward[2]: expected a resolver address "ip" or "ip:port" ("[ip]:port" for IPv6), found "10.0.0.2:0"
      help: port 0 is no port: omit it for 53
    idp-lab.toml:6:3: network.dns_forward[3]: expected a resolver address "ip" or "ip:port" ("[ip]:port" for IPv6), found "0.0.0.0"
      help: 0.0.0.0 is no resolver: give the address of one
    idp-lab.toml:7:3: network.dns_forward[4]: expected a resolver address "ip" or "ip:port" ("[ip]:port" for IPv6), found "2001:db8::1:53x"
    "#);
    let d = &err.diagnostics[0];
    assert_eq!(
        (d.origin.clone(), d.line, d.column, d.path.as_str()),
        (Origin::File("idp-lab.toml".into()), 4, 3, "network.dns_forward[1]")
    );
    assert!(d.message.contains("expected a resolver address"), "{}", d.message);
    let err = parse("[network]\ndns_forward = \"1.1.1.1\"\n").expect_err("not an array");
    insta::assert_snapshot!(err.to_string(), @r#"
    idp-lab.toml:2:15: network.dns_forward: expected an array of resolver addresses such as ["1.1.1.1", "10.0.0.2:5353", "[2606:4700::1111]:53"], found "1.1.1.1"
      help: write an array, e.g. ["1.1.1.1"]
    "#);
    let err = parse("[network]\ndns_forward = [\"fe80::1:53\", \"2001:db8::zz:53\"]\n").expect_err("one bad");
    assert_eq!(err.diagnostics.len(), 1, "{err}");
    assert_eq!(err.diagnostics[0].path, "network.dns_forward[1]");
}

#[test]
fn dns_keys_read_from_the_environment() {
    let env = env_layer(
        [("IDP_LAB_NETWORK_DNS_PORT", "5353"), ("IDP_LAB_NETWORK_DNS_FORWARD", "[\"9.9.9.9\", \"[2620:fe::fe]:53\"]")],
        COMPONENTS,
    )
    .expect("valid env");
    let c = resolve(&[&defaults(), &env]).expect("resolves");
    assert_eq!(c.network.dns_port, PortSetting::Fixed(5353));
    assert_eq!(c.network.dns_forward, ["9.9.9.9", "[2620:fe::fe]:53"]);
    let env = env_layer([("IDP_LAB_NETWORK_DNS_PORT", "auto"), ("IDP_LAB_NETWORK_DNS_FORWARD", "[]")], COMPONENTS).expect("valid env");
    let c = resolve(&[&defaults(), &env]).expect("resolves");
    assert_eq!((c.network.dns_port, c.network.dns_forward.len()), (PortSetting::Auto, 0));
    let err =
        env_layer([("IDP_LAB_NETWORK_DNS_FORWARD", "1.1.1.1"), ("IDP_LAB_NETWORK_DNS_PORT", "0")], COMPONENTS).expect_err("two problems");
    insta::assert_snapshot!(err.to_string(), @r#"
    environment variable IDP_LAB_NETWORK_DNS_FORWARD:1:1: network.dns_forward: expected an array of resolver addresses such as ["1.1.1.1", "10.0.0.2:5353", "[2606:4700::1111]:53"], found "1.1.1.1"
      help: write an array, e.g. ["1.1.1.1"]
    environment variable IDP_LAB_NETWORK_DNS_PORT:1:1: network.dns_port: expected "auto" or a port number from 1 to 65535, found 0
      help: use "auto" to let idp-lab pick a free port
    "#);
    let err = env_layer([("IDP_LAB_NETWORK_DNS_FORWARD", "[\"1.1.1.1\", \"resolver.lan\"]")], COMPONENTS).expect_err("a hostname");
    assert_eq!(err.diagnostics[0].path, "network.dns_forward[1]");
}

#[test]
fn the_dns_port_clashes_with_the_other_fixed_ports() {
    let err = parse("[network]\nhttps_port = 5353\ndns_port = 5353\n").expect_err("clash");
    let d = &err.diagnostics[0];
    assert_eq!((d.path.as_str(), d.line), ("network.https_port", 2), "{err}");
    assert!(d.message.contains("also network.dns_port"), "{err}");
}

#[test]
fn resolvers_parse_with_port_53_by_default() {
    let addr = |s: &str| parse_resolver(s).map(|a| a.to_string());
    assert_eq!(addr("1.1.1.1").as_deref(), Some("1.1.1.1:53"));
    assert_eq!(addr("10.0.0.2:5353").as_deref(), Some("10.0.0.2:5353"));
    assert_eq!(addr("2001:db8::1").as_deref(), Some("[2001:db8::1]:53"));
    assert_eq!(addr("[2001:db8::1]:5300").as_deref(), Some("[2001:db8::1]:5300"));
    for bad in ["", "dns.google", "1.1.1.1:0", "1.1.1.1:70000", "0.0.0.0", "[::]:53", "224.0.0.251", "1.1.1.1:", " 1.1.1.1", "1.1.1"] {
        assert_eq!(parse_resolver(bad), None, "{bad:?}");
    }
}

#[test]
fn serve_lan_is_off_by_default_and_a_bool_from_file_or_environment() {
    let c = parse("").expect("defaults");
    assert!(!c.registry.serve_lan);
    let settings = crate::settings::resolve(&c, &crate::settings::Probes::default()).expect("settings");
    assert!(!settings.registry.serve_lan);
    let c = parse("[registry]\nserve_lan = true\n").expect("valid");
    assert!(c.registry.serve_lan);
    let settings = crate::settings::resolve(&c, &crate::settings::Probes::default()).expect("settings");
    assert!(settings.registry.serve_lan, "the settings carry it");
    let env = env_layer([("IDP_LAB_REGISTRY_SERVE_LAN", "true")], COMPONENTS).expect("valid env");
    assert!(resolve(&[&defaults(), &env]).expect("resolves").registry.serve_lan);
    let file = parse_file("[registry]\nserve_lan = true\n", "idp-lab.toml", FileKind::Config, COMPONENTS).expect("valid");
    let env = env_layer([("IDP_LAB_REGISTRY_SERVE_LAN", "false")], COMPONENTS).expect("valid env");
    assert!(!resolve(&[&defaults(), &file.layer, &env]).expect("resolves").registry.serve_lan, "the environment wins");
    let err = parse("[registry]\nserve_lan = \"yes\"\n").expect_err("not a bool");
    insta::assert_snapshot!(err.to_string(), @r#"idp-lab.toml:2:13: registry.serve_lan: expected true or false, found a string ("yes")"#);
    let err = env_layer([("IDP_LAB_REGISTRY_SERVE_LAN", "1")], COMPONENTS).expect_err("not a bool");
    assert_eq!(err.diagnostics[0].path, "registry.serve_lan", "{err}");
    let spec = schema::KEYS.iter().find(|k| k.section == "registry" && k.key == "serve_lan").expect("in the schema");
    assert_eq!((spec.kind, spec.default, spec.env_var().as_str()), (schema::Kind::Bool, "false", "IDP_LAB_REGISTRY_SERVE_LAN"));
}

/// A lab's own playbook next to the built-in ones, in the documented form.
const PLAYBOOKS: &str = r#"[watchdog]
resync = "5m"
receiver_port = 9097

[[watchdog.playbooks]]
name = "externalsecrets-resync"
triggers = [{ on = "alert", labels = { slo = "externalsecrets-sync-success" } }]
actions = [
  { do = "refresh-external-secret", external_secret = "apps/db-credentials" },
  { do = "webhook", url = "http://127.0.0.1:9000/hooks/idp-lab", timeout = "5s" },
]
rate_limit = "1/10m"
cooldown = "5m"
dry_run = true

[[watchdog.playbooks]]
name = "unseal-vault"
triggers = [{ on = "vault-sealed" }, { on = "health", component = "vault" }]
actions = [{ do = "unseal-vault" }, { do = "rollout-restart", object = "StatefulSet/vault-system/vault" }]

[[watchdog.playbooks]]
name = "every-kind"

[[watchdog.playbooks.triggers]]
on = "slo"
slo = "monitoring/api-latency"
severity = "page"

[[watchdog.playbooks.triggers]]
on = "drift"
component = "argocd"

[[watchdog.playbooks.triggers]]
on = "node-stopped"

[[watchdog.playbooks.actions]]
do = "sync-application"
application = "platform"

[[watchdog.playbooks.actions]]
do = "submit-workflow"
template = "cicd/heal"
parameters = { reason = "drift" }

[[watchdog.playbooks.actions]]
do = "reapply"
object = "ConfigMap/apps/settings"

[[watchdog.playbooks.actions]]
do = "start-node"
"#;

#[test]
fn the_watchdog_defaults_are_documented_ones() {
    let c = parse("").expect("defaults");
    let w = &c.watchdog;
    assert!(w.enabled);
    assert_eq!((w.resync, w.history_age, w.history_size.as_str()), (600, 7 * 86_400, "32m"));
    assert_eq!(w.receiver_port, PortSetting::Auto);
    assert_eq!(w.builtin_playbooks, BUILTIN_PLAYBOOKS);
    assert!(w.playbooks.is_empty(), "the receiver only serves routes a user adds");
    let s = crate::settings::resolve(&c, &crate::settings::Probes::default()).expect("settings");
    assert_eq!(s.watchdog.playbooks, builtin_playbooks());
    assert_eq!(s.watchdog.history_bytes.bytes(), 32 << 20);
    assert_eq!(s.watchdog.resync, std::time::Duration::from_secs(600));
    assert!(
        s.watchdog.playbooks.iter().all(|p| p.triggers.iter().all(|t| !matches!(t, Trigger::Alert { .. }))),
        "no built-in playbook takes Alertmanager's alerts: SLO alerts stay with the in-cluster chain"
    );
}

#[test]
fn a_playbook_table_parses_into_typed_playbooks() {
    let c = parse(PLAYBOOKS).expect("valid playbooks");
    assert_eq!((c.watchdog.resync, c.watchdog.receiver_port), (300, PortSetting::Fixed(9097)));
    let p = &c.watchdog.playbooks;
    assert_eq!(p.len(), 3);
    assert_eq!(p[0].name, "externalsecrets-resync");
    assert_eq!(p[0].triggers, [Trigger::Alert { labels: [("slo".to_owned(), "externalsecrets-sync-success".to_owned())].into() }]);
    assert_eq!(
        p[0].actions,
        [
            Action::RefreshExternalSecret { external_secret: NamespacedName { namespace: "apps".into(), name: "db-credentials".into() } },
            Action::Webhook { url: "http://127.0.0.1:9000/hooks/idp-lab".into(), timeout: 5 },
        ]
    );
    assert_eq!((p[0].rate_limit, p[0].cooldown, p[0].dry_run), (RateLimit { runs: 1, per: 600 }, 300, true));
    // Defaults of what a table leaves out.
    assert_eq!((p[1].rate_limit, p[1].cooldown, p[1].dry_run), (DEFAULT_RATE_LIMIT, 0, false));
    assert_eq!(p[1].triggers[1], Trigger::Health { component: "vault".into(), verdict: HealthVerdict::Degraded });
    // Nested [[watchdog.playbooks.triggers]] tables work too.
    assert_eq!(
        p[2].triggers,
        [
            Trigger::Slo { slo: "monitoring/api-latency".into(), severity: SloSeverity::Page },
            Trigger::Drift { component: "argocd".into() },
            Trigger::NodeStopped { node: "*".into() },
        ]
    );
    assert_eq!(
        p[2].actions[0],
        Action::SyncApplication { application: NamespacedName { namespace: "argocd".into(), name: "platform".into() } }
    );
    assert_eq!(p[2].actions[2].describe(), "reapply ConfigMap/apps/settings");
    assert_eq!(p[2].actions[3], Action::StartNode { node: None });
    // The user's unseal-vault replaces the built-in one; the other built-ins stay, first.
    let s = crate::settings::resolve(&c, &crate::settings::Probes::default()).expect("settings");
    let names: Vec<&str> = s.watchdog.playbooks.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["heal-drift", "start-node", "externalsecrets-resync", "unseal-vault", "every-kind"]);
    // builtin_playbooks = [] turns the built-in ones off.
    let c = parse("[watchdog]\nbuiltin_playbooks = [\"start-node\"]\n").expect("valid");
    let s = crate::settings::resolve(&c, &crate::settings::Probes::default()).expect("settings");
    assert_eq!(s.watchdog.playbooks.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["start-node"]);
    let c = parse("[watchdog]\nbuiltin_playbooks = []\nenabled = false\n").expect("valid");
    assert!(!c.watchdog.enabled && crate::settings::WatchdogSettings::from_config(&c.watchdog).expect("settings").playbooks.is_empty());
}

#[test]
fn the_resolved_watchdog_section_reads_back_from_its_own_toml() {
    // What `profiles show` prints must be a configuration file that resolves the same.
    let c = parse(PLAYBOOKS).expect("valid");
    let text = toml_edit::ser::to_string_pretty(&c).expect("as TOML");
    let again = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(again, c, "{text}");
    let json = serde_json::to_value(&c.watchdog).expect("json");
    assert_eq!(json["playbooks"][0]["rate_limit"], "1/600s");
    assert_eq!(json["playbooks"][1]["triggers"][0], serde_json::json!({"on": "vault-sealed"}));
}

#[test]
fn bad_playbooks_are_positioned_errors_with_a_fix() {
    let text = r#"[watchdog]
playbooks = [
  { name = "a", triggers = [{ on = "alert", labels = { slo = "x" } }], actions = [{ do = "page-someone" }] },
  { name = "b", triggers = [{ on = "alert", labels = { slo = "x" } }], actions = [{ do = "unseal-vault" }], rate_limit = "often" },
  { name = "c", triggers = [{ on = "alert", labels = { slo = "x" } }], actions = [{ do = "unseal-vault" }], cooldwn = "5m" },
  { name = "d", triggers = [{ on = "alerts", labels = { slo = "x" } }], actions = [{ do = "webhook", url = "https://hooks.example.com/x" }] },
  { name = "a", triggers = [{ on = "alert", label = { slo = "x" } }], actions = [{ do = "rollout-restart", object = "ConfigMap/apps/x" }] },
  { triggers = [{ on = "vault-sealed" }], actions = [{ do = "unseal-vault" }] },
  { name = "e", triggers = [], actions = [{ do = "webhook", url = "http://x/", timeout = "soon" }] },
]
"#;
    let err = parse(text).expect_err("bad playbooks");
    insta::assert_snapshot!(err.to_string(), @r#"
    idp-lab.toml:3:90: watchdog.playbooks[0].actions[0].do: unknown action "page-someone": expected one of "webhook", "reapply", "rollout-restart", "sync-application", "refresh-external-secret", "unseal-vault", "submit-workflow", "start-node"
      help: what each action does is in docs/configuration.md, under Playbooks
    idp-lab.toml:4:122: watchdog.playbooks[1].rate_limit: expected a rate limit "N/<duration>", found a string ("often")
      help: N runs per window, N from 1 to 1000, e.g. "1/10m", "30/1h"
    idp-lab.toml:5:119: watchdog.playbooks[2].cooldwn: unknown key
      help: did you mean `cooldown`?
    idp-lab.toml:6:36: watchdog.playbooks[3].triggers[0].on: unknown trigger "alerts": expected one of "alert", "drift", "health", "slo", "vault-sealed", "node-stopped"
      help: did you mean "alert"?
    idp-lab.toml:6:108: watchdog.playbooks[3].actions[0].url: expected a URL http://host[:port]/path, found "https://hooks.example.com/x"
      help: the webhook action speaks plain HTTP (to a loopback or in-lab receiver); relay to an HTTPS endpoint from there
    idp-lab.toml:7:12: watchdog.playbooks[4].name: playbook name "a" is used twice
      help: give each playbook its own name
    idp-lab.toml:7:45: watchdog.playbooks[4].triggers[0].label: unknown key
      help: did you mean `labels`?
    idp-lab.toml:7:117: watchdog.playbooks[4].actions[0].object: expected an object "Kind/namespace/name" of kind Deployment, StatefulSet, DaemonSet, found "ConfigMap/apps/x"
      help: only workloads restart; `reapply` re-applies any other object
    idp-lab.toml:8:3: watchdog.playbooks[5]: a playbook needs `name`
      help: an array of playbook tables [[watchdog.playbooks]] with name, triggers, actions and optionally rate_limit, cooldown, dry_run
    idp-lab.toml:9:28: watchdog.playbooks[6].triggers: a playbook needs at least one trigger
      help: an array of trigger tables such as [{ on = "alert", labels = { slo = "x" } }]
    idp-lab.toml:9:90: watchdog.playbooks[6].actions[0].timeout: expected a duration such as "300s", "5m", "1h" or a number of seconds, found a string ("soon")
    "#);
}

#[test]
fn playbook_tables_report_at_their_own_lines() {
    let text = "[watchdog]\n\n[[watchdog.playbooks]]\nname = \"x\"\ntriggers = [{ on = \"drift\" }]\n\n[[watchdog.playbooks]]\nname = \"y\"\nactions = [{ do = \"unseal-vault\" }]\ntriggers = [{ on = \"slo\", severity = \"urgent\" }, { on = \"vault-sealed\", node = \"a\" }]\n";
    let err = parse(text).expect_err("two bad tables");
    insta::assert_snapshot!(err.to_string(), @r#"
    idp-lab.toml:3:1: watchdog.playbooks[0]: a playbook needs `actions`
      help: an array of playbook tables [[watchdog.playbooks]] with name, triggers, actions and optionally rate_limit, cooldown, dry_run
    idp-lab.toml:10:38: watchdog.playbooks[1].triggers[0].severity: expected one of "page", "ticket", "any", found a string ("urgent")
    idp-lab.toml:10:73: watchdog.playbooks[1].triggers[1].node: unknown key
      help: on = "vault-sealed" takes no other key
    "#);
    let err = parse("[watchdog]\nplaybooks = \"none\"\nbuiltin_playbooks = [\"unseal-vault\", \"heal-drfit\"]\nhistory_size = \"0\"\n")
        .expect_err("two problems");
    insta::assert_snapshot!(err.to_string(), @r#"
    idp-lab.toml:2:13: watchdog.playbooks: expected an array of playbook tables [[watchdog.playbooks]] with name, triggers, actions and optionally rate_limit, cooldown, dry_run, found "none"
    idp-lab.toml:3:38: watchdog.builtin_playbooks[1]: expected one of "unseal-vault", "heal-drift", "start-node", found "heal-drfit"
      help: did you mean "heal-drift"?
    "#);
    let err = parse("[watchdog]\nhistory_size = \"0\"\n").expect_err("unbounded");
    insta::assert_snapshot!(err.to_string(), @r#"
    idp-lab.toml:2:16: watchdog.history_size: the history must be bounded by size: "0" is no limit
      help: give a size such as "32m"
    "#);
}

#[test]
fn playbooks_and_watchdog_keys_read_from_the_environment() {
    let env = env_layer(
        [
            ("IDP_LAB_WATCHDOG_PLAYBOOKS", r#"[{ name = "hook", triggers = [{ on = "alert", labels = { team = "apps" } }], actions = [{ do = "webhook", url = "http://10.0.0.2:9000/" }] }]"#),
            ("IDP_LAB_WATCHDOG_RECEIVER_PORT", "9097"),
            ("IDP_LAB_WATCHDOG_BUILTIN_PLAYBOOKS", "[]"),
            ("IDP_LAB_WATCHDOG_RESYNC", "2m"),
        ],
        COMPONENTS,
    )
    .expect("valid env");
    let c = resolve(&[&defaults(), &env]).expect("resolves");
    assert_eq!(c.watchdog.playbooks.len(), 1);
    assert_eq!(
        c.watchdog.playbooks[0].actions,
        [Action::Webhook { url: "http://10.0.0.2:9000/".into(), timeout: DEFAULT_WEBHOOK_TIMEOUT }]
    );
    assert_eq!((c.watchdog.receiver_port, c.watchdog.resync), (PortSetting::Fixed(9097), 120));
    assert!(c.watchdog.builtin_playbooks.is_empty());
    let err = env_layer(
        [("IDP_LAB_WATCHDOG_PLAYBOOKS", r#"[{ name = "x", triggers = [{ on = "drift" }], actions = [{ do = "reboot" }] }]"#)],
        COMPONENTS,
    )
    .expect_err("unknown action");
    assert_eq!(err.diagnostics[0].path, "watchdog.playbooks[0].actions[0].do", "{err}");
    let spec = schema::lookup("watchdog", "playbooks").expect("in the schema");
    assert_eq!((spec.kind, spec.default, spec.env_var().as_str()), (schema::Kind::Playbooks, "[]", "IDP_LAB_WATCHDOG_PLAYBOOKS"));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Mutated playbook tables never panic, and every error has a position inside the file.
    #[test]
    fn mutated_playbooks_fail_with_positions(pos in 0usize..PLAYBOOKS.len(), cut in 0usize..8, insert in "[\\[\\]{}=\"a-z0-9 .,/\n_-]{0,6}") {
        let mut text = PLAYBOOKS.to_owned();
        let start = (0..=pos).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
        let end = (start..=(start + cut).min(text.len())).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(start);
        text.replace_range(start..end, &insert);
        if let Err(e) = parse(&text) {
            prop_assert!(!e.diagnostics.is_empty());
            let lines = text.lines().count().max(1) + 1;
            for d in &e.diagnostics {
                prop_assert!(d.line >= 1 && d.line <= lines && d.column >= 1, "{} out of range in:\n{}", d, text);
                prop_assert!(d.path.is_empty() || d.line > 1 || !d.path.starts_with("watchdog.playbooks["), "{} has no position in:\n{}", d, text);
            }
        }
    }
}
