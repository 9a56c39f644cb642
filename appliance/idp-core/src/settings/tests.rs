use super::*;
use crate::config::{self, FileKind};
use proptest::prelude::*;

fn config(text: &str) -> Config {
    let file = config::parse_file(text, "idp-lab.toml", FileKind::Config, &[]).expect("valid test config");
    config::resolve(&[&config::defaults(), &file.layer]).expect("resolves")
}

fn probes() -> Probes {
    Probes::default()
}

#[test]
fn defaults_resolve_to_typed_values() {
    let s = resolve(&config(""), &probes()).expect("resolves");
    assert_eq!(s.lab, "idp-lab");
    assert_eq!(s.cluster.image.to_string(), "rancher/k3s:v1.33.4-k3s1");
    assert_eq!(s.cluster.image.repository, "rancher/k3s");
    assert_eq!(s.cluster.memory, Some(ByteSize(4 << 30)));
    assert_eq!(
        s.cluster.server_taints,
        vec![Taint { key: "node-role.kubernetes.io/control-plane".into(), value: None, effect: TaintEffect::NoSchedule }]
    );
    assert_eq!(s.cluster.pools.len(), 2);
    assert_eq!(s.network.dns_suffix, "127-0-0-1.nip.io");
    assert_eq!(s.network.connect_address, IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert_eq!((s.network.ports.http, s.network.ports.https, s.network.ports.api, s.network.ports.dns), (80, 443, 6443, Some(53)));
    assert!(s.network.dns_forward.is_empty());
    assert_eq!((s.network.http_nodeport, s.network.https_nodeport), (30080, 30443));
    assert_eq!(s.timeouts.cluster, Duration::from_secs(300));
    assert_eq!(s.cluster.context, None);
    assert_eq!(s.registry.bundle, None);
    // One pair of loopback ports per agent, all distinct.
    let g = &s.network.ports.gateway;
    assert_eq!(g.iter().map(|g| g.node.as_str()).collect::<Vec<_>>(), ["idp-lab-agent-0", "idp-lab-agent-1"]);
    assert_eq!((g[0].http, g[0].https, g[1].http, g[1].https), (28000, 28001, 28002, 28003));
}

#[test]
fn busy_and_reserved_ports_are_skipped() {
    let mut p = probes();
    p.busy = [80, 8080, 443, 6443, 28000].into();
    p.reserved = [8081, 8443, 28001].into();
    let s = resolve(&config(""), &p).expect("resolves");
    let ports = &s.network.ports;
    assert_eq!((ports.http, ports.https, ports.api), (8082, 8444, 6444));
    assert_eq!((ports.gateway[0].http, ports.gateway[0].https), (28002, 28003));
}

#[test]
fn pinned_ports_win_over_the_host() {
    let gateway = vec![
        GatewayPorts { node: "idp-lab-agent-0".into(), http: 1, https: 2 },
        GatewayPorts { node: "idp-lab-agent-1".into(), http: 3, https: 4 },
    ];
    let pinned = Ports { http: 8080, https: 8443, api: 7000, gateway, dns: Some(1053) };
    let mut p = probes();
    p.pinned = Some(pinned.clone());
    p.busy = [8080, 8443, 7000, 1053].into();
    assert_eq!(resolve(&config(""), &p).expect("resolves").network.ports, pinned);
    assert!(port_candidates(&config(""), Some(&pinned)).is_empty(), "nothing to probe once pinned");
}

#[test]
fn fixed_ports_are_taken_as_given_and_never_chosen_for_auto_ones() {
    let s = resolve(&config("[network]\nhttp_port = 443\nhttps_port = 8443\n"), &probes()).expect("resolves");
    assert_eq!((s.network.ports.http, s.network.ports.https), (443, 8443));
    let s = resolve(
        &config("[network]\napi_port = 6443\nhttps_port = \"auto\"\nhttp_port = 8080\n"),
        &Probes { busy: [443].into(), ..probes() },
    )
    .expect("resolves");
    assert_eq!(s.network.ports.https, 8443);
    let s = resolve(&config("[network]\nhttps_port = 80\n"), &probes()).expect("resolves");
    assert_eq!((s.network.ports.http, s.network.ports.https), (8080, 80), "auto http skips the fixed https port");
}

#[test]
fn no_free_port_is_an_error_naming_the_key() {
    let mut p = probes();
    p.busy = std::iter::once(443).chain(HTTPS_FALLBACK.0..=HTTPS_FALLBACK.1).collect();
    let err = resolve(&config(""), &p).expect_err("no https port");
    assert!(matches!(err, SettingsError::NoFreePort { key: "https_port", .. }), "{err}");
    assert!(err.to_string().contains("network.https_port"), "{err}");
    let mut p = probes();
    p.busy = (GATEWAY_RANGE.0..=GATEWAY_RANGE.1).collect();
    assert!(matches!(resolve(&config(""), &p), Err(SettingsError::NoFreePort { key: "gateway loopback ports", .. })));
}

#[test]
fn candidates_cover_every_auto_port() {
    let c = config("");
    let cands = port_candidates(&c, None);
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    for p in [80, 8080, 8179, 443, 8443, 8542, 6443, 6444, 6543, 53, 1053, 1152] {
        assert!(cands.contains(&(lo, p)), "{p}");
    }
    assert!(cands.contains(&(lo, GATEWAY_RANGE.0)) && cands.contains(&(lo, GATEWAY_RANGE.1)));
    assert!(!cands.contains(&(lo, 8180)));
    let fixed = port_candidates(&config("[network]\nhttp_port = 80\nhttps_port = 443\napi_port = 6443\ndns_port = 53\n"), None);
    assert_eq!(fixed.len(), usize::from(GATEWAY_RANGE.1 - GATEWAY_RANGE.0) + 1, "only the gateway range is probed");
    let any = port_candidates(&config("[network]\nbind_address = \"0.0.0.0\"\n"), None);
    assert!(any.contains(&(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 443)));
}

#[test]
fn lan_bind_needs_a_lan_address() {
    let c = config("[network]\nbind_address = \"0.0.0.0\"\n");
    assert_eq!(resolve(&c, &probes()), Err(SettingsError::NoLanIp));
    let s = resolve(&c, &Probes { lan_ip: Some("10.1.2.3".parse().expect("ip")), ..probes() }).expect("resolves");
    assert_eq!(s.network.dns_suffix, "10-1-2-3.nip.io");
    assert_eq!(s.network.connect_address, IpAddr::V4(Ipv4Addr::LOCALHOST));
    let s = resolve(&config("[network]\nbind_address = \"0.0.0.0\"\nlan_ip = \"10.9.9.9\"\n"), &probes()).expect("configured lan ip");
    assert_eq!(s.network.lan_ip, Some("10.9.9.9".parse().expect("ip")));
}

#[test]
fn memory_zero_means_no_cap_and_agentless_labs_publish_on_the_server() {
    let s = resolve(&config("[cluster]\nmemory = \"0\"\nagents = 0\npools = []\n"), &probes()).expect("resolves");
    assert_eq!(s.cluster.memory, None);
    assert_eq!(s.network.ports.gateway.iter().map(|g| g.node.as_str()).collect::<Vec<_>>(), ["idp-lab-server-0"]);
    let s = resolve(&config("[cluster]\nmemory = \"512m\"\ncontext = \"kind-x\"\n[registry]\nbundle = \"/b.tar\"\n"), &probes())
        .expect("resolves");
    assert_eq!(s.cluster.memory, Some(ByteSize(512 << 20)));
    assert_eq!(s.cluster.context.as_deref(), Some("kind-x"));
    assert_eq!(s.registry.bundle, Some(PathBuf::from("/b.tar")));
}

#[test]
fn a_bad_image_is_an_error() {
    let err = resolve(&config("[cluster]\nimage = \"Not An Image\"\n"), &probes()).expect_err("bad image");
    assert_eq!(err, SettingsError::BadImage("Not An Image".into()));
}

#[test]
fn taints_parse_and_print() {
    let t = Taint::parse("dedicated=infra:NoExecute").expect("taint");
    assert_eq!((t.key.as_str(), t.value.as_deref(), t.effect), ("dedicated", Some("infra"), TaintEffect::NoExecute));
    assert_eq!(t.to_string(), "dedicated=infra:NoExecute");
    assert_eq!(Taint::parse("k:PreferNoSchedule").expect("taint").to_string(), "k:PreferNoSchedule");
    assert_eq!(Taint::parse("k=:NoSchedule").expect("taint").value.as_deref(), Some(""));
    for bad in ["k=v", "k=v:Sometimes", ":NoSchedule", ""] {
        assert_eq!(Taint::parse(bad), None, "{bad}");
    }
}

#[test]
fn image_references_parse() {
    let r = ImageRef::parse("registry.local:5000/team/app:1.2@sha256:".to_owned().as_str());
    assert_eq!(r, None, "a digest must be 64 hex digits");
    let digest = format!("sha256:{}", "a".repeat(64));
    let r = ImageRef::parse(&format!("registry.local:5000/team/app:1.2@{digest}")).expect("ref");
    assert_eq!(r.registry.as_deref(), Some("registry.local:5000"));
    assert_eq!(r.repository, "team/app");
    assert_eq!(r.tag.as_deref(), Some("1.2"));
    assert_eq!(r.digest.as_deref(), Some(digest.as_str()));
    assert_eq!(r.to_string(), format!("registry.local:5000/team/app:1.2@{digest}"));
    let r = ImageRef::parse("localhost/x").expect("ref");
    assert_eq!((r.registry.as_deref(), r.repository.as_str(), r.tag.as_deref()), (Some("localhost"), "x", None));
    let r = ImageRef::parse("idp-lab/testnode:v1.20.2-abc").expect("ref");
    assert_eq!((r.registry, r.repository.as_str()), (None, "idp-lab/testnode"));
    for bad in ["", "UPPER/case", "a b", "x:", "x:bad tag", "/x", "x//y", "x@md5:00"] {
        assert_eq!(ImageRef::parse(bad), None, "{bad:?}");
    }
}

#[test]
fn byte_sizes_print_for_people() {
    assert_eq!(ByteSize(4 << 30).to_string(), "4 GiB");
    assert_eq!(ByteSize(512 << 20).to_string(), "512 MiB");
    assert_eq!(ByteSize(3 << 10).to_string(), "3 KiB");
    assert_eq!(ByteSize((1 << 30) + (1 << 29)).to_string(), "1.5 GiB");
    assert_eq!(ByteSize(24_684_092 << 10).to_string(), "23.5 GiB");
    assert_eq!(ByteSize((1 << 30) + (1 << 29) + 1).to_string(), "1.5 GiB");
    assert_eq!(ByteSize(10).to_string(), "10 B");
    assert_eq!(ByteSize(5000).bytes(), 5000);
}

#[test]
fn a_taken_auto_port_is_replaced_within_its_range() {
    let c = config("");
    let mut ports = resolve(&c, &probes()).expect("resolves").network.ports;
    let mut busy = BTreeSet::new();
    let reserved: BTreeSet<u16> = [8443].into();
    assert!(replace_taken_port(&c, &mut ports, 443, &mut busy, &reserved));
    assert_eq!(ports.https, 8444, "the next usable fallback port");
    assert!(busy.contains(&443));
    assert!(replace_taken_port(&c, &mut ports, 28001, &mut busy, &reserved));
    assert_eq!(ports.gateway[0].https, 28004, "skips the other gateway ports in use");
    assert!(replace_taken_port(&c, &mut ports, 6443, &mut busy, &reserved));
    assert_eq!(ports.api, 6444);
    assert!(replace_taken_port(&c, &mut ports, 80, &mut busy, &reserved));
    assert_eq!(ports.http, 8080);
    assert!(!replace_taken_port(&c, &mut ports, 12345, &mut busy, &reserved), "not a port of this lab");
    let fixed = config("[network]\nhttps_port = 443\n");
    let mut ports = resolve(&fixed, &probes()).expect("resolves").network.ports;
    assert!(!replace_taken_port(&fixed, &mut ports, 443, &mut BTreeSet::new(), &reserved), "a fixed port is never moved");
    assert_eq!(ports.https, 443);
}

#[test]
fn node_names_follow_the_lab() {
    assert_eq!(node_name("demo", NodeRole::Server, 0), "demo-server-0");
    assert_eq!(node_name("demo", NodeRole::Agent, 3), "demo-agent-3");
    assert_eq!(Settings::gateway_nodes("demo", 2), ["demo-agent-0", "demo-agent-1"]);
}

proptest! {
    /// Whatever the host has busy, chosen ports are distinct, never busy or reserved, and
    /// within their ranges.
    #[test]
    fn chosen_ports_are_usable(busy in proptest::collection::btree_set(prop_oneof![Just(80u16), Just(443u16), Just(6443u16), Just(53u16), 1050u16..1160, 8080u16..8200, 8440u16..8560, 6440u16..6560, 28000u16..28020], 0..60), agents in 0u32..6) {
        let c = config(&format!("[cluster]\nagents = {agents}\npools = []\n"));
        let p = Probes { busy: busy.clone(), ..Probes::default() };
        let s = resolve(&c, &p).expect("enough free ports");
        let all = s.network.ports.all();
        let unique: BTreeSet<u16> = all.iter().copied().collect();
        prop_assert_eq!(unique.len(), all.len());
        for port in &all {
            prop_assert!(!busy.contains(port));
        }
        prop_assert_eq!(s.network.ports.gateway.len(), agents.max(1) as usize);
    }
}

#[test]
fn image_references_are_checked_in_every_part() {
    let long_tag = "t".repeat(128);
    assert!(ImageRef::parse(&format!("x:{long_tag}")).is_some(), "a 128-character tag is fine");
    assert_eq!(ImageRef::parse(&format!("x:{long_tag}t")), None, "129 characters are not");
    for bad in ["my reg.io/x", "x:bad$tag", "reg.io/x:", "\tx"] {
        assert_eq!(ImageRef::parse(bad), None, "{bad:?}");
    }
    assert_eq!(ImageRef::parse("reg.io/x:1").expect("ref").registry.as_deref(), Some("reg.io"));
}

#[test]
fn pinned_ports_follow_the_gateway_nodes() {
    let c = config("");
    let pinned = resolve(&c, &probes()).expect("resolves").network.ports;
    assert!(port_candidates(&c, Some(&pinned)).is_empty(), "complete: nothing to probe");
    // A third agent (after `--recreate`) gets a free pair; the pinned ones stay.
    let more = config("[cluster]\nagents = 3\n");
    assert_eq!(port_candidates(&more, Some(&pinned)).len(), usize::from(GATEWAY_RANGE.1 - GATEWAY_RANGE.0) + 1);
    let p = Probes { pinned: Some(pinned.clone()), busy: [28004].into(), ..probes() };
    let ports = resolve(&more, &p).expect("resolves").network.ports;
    assert_eq!(&ports.gateway[..2], &pinned.gateway[..]);
    assert_eq!((ports.gateway[2].node.as_str(), ports.gateway[2].http, ports.gateway[2].https), ("idp-lab-agent-2", 28005, 28006));
    assert_eq!((ports.http, ports.https, ports.api), (pinned.http, pinned.https, pinned.api));
    // Down to one agent: the other pair goes.
    let fewer = config("[cluster]\nagents = 1\npools = []\n");
    let p = Probes { pinned: Some(pinned.clone()), ..probes() };
    assert_eq!(resolve(&fewer, &p).expect("resolves").network.ports.gateway, pinned.gateway[..1].to_vec());
}

#[test]
fn auto_dns_port_is_53_when_free_else_the_range() {
    let c = config("");
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let cands = port_candidates(&c, None);
    for p in [53, DNS_FALLBACK.0, DNS_FALLBACK.1] {
        assert!(cands.contains(&(lo, p)), "{p} is probed");
    }
    assert!(!cands.contains(&(lo, DNS_FALLBACK.1 + 1)));
    assert_eq!(resolve(&c, &probes()).expect("resolves").network.ports.dns, Some(53));
    // 53 held (or not bindable without privileges), the first range port reserved by another lab.
    let p = Probes { busy: [53].into(), reserved: [DNS_FALLBACK.0].into(), ..probes() };
    assert_eq!(resolve(&c, &p).expect("resolves").network.ports.dns, Some(DNS_FALLBACK.0 + 1));
    // An auto port never takes a fixed one.
    let fixed = config(&format!("[network]\napi_port = {}\n", DNS_FALLBACK.0));
    let p = Probes { busy: [53].into(), ..probes() };
    assert_eq!(resolve(&fixed, &p).expect("resolves").network.ports.dns, Some(DNS_FALLBACK.0 + 1));
    // A fixed DNS port is taken as given and not probed.
    let fixed = config("[network]\ndns_port = 5300\n");
    assert_eq!(resolve(&fixed, &Probes { busy: [5300].into(), ..probes() }).expect("resolves").network.ports.dns, Some(5300));
    assert!(!port_candidates(&fixed, None).contains(&(lo, 53)));
    // Nothing free: the error names the key and the range.
    let p = Probes { busy: std::iter::once(53).chain(DNS_FALLBACK.0..=DNS_FALLBACK.1).collect(), ..probes() };
    let err = resolve(&c, &p).expect_err("no free DNS port");
    assert!(matches!(err, SettingsError::NoFreePort { key: "dns_port", .. }), "{err}");
    assert!(err.to_string().contains("53 and 1053-1152"), "{err}");
    assert!(resolve(&c, &probes()).expect("resolves").network.ports.all().contains(&53), "clash checks see it");
}

#[test]
fn a_pinned_dns_port_wins_and_an_old_record_gets_one() {
    let c = config("");
    let pinned = Ports { dns: Some(1060), ..resolve(&c, &probes()).expect("resolves").network.ports };
    let p = Probes { pinned: Some(pinned.clone()), busy: [1060].into(), ..probes() };
    assert_eq!(resolve(&c, &p).expect("resolves").network.ports.dns, Some(1060), "pinned wins over the host");
    assert!(port_candidates(&c, Some(&pinned)).is_empty());
    // Pinned before network.dns_port existed: only the DNS candidates are probed, and the
    // port chosen is clear of the pinned ones and those of other labs.
    let old = Ports { dns: None, http: 53, ..pinned.clone() };
    let cands = port_candidates(&c, Some(&old));
    assert_eq!(cands.len(), usize::from(DNS_FALLBACK.1 - DNS_FALLBACK.0) + 2);
    let p = Probes { pinned: Some(old.clone()), reserved: [1053].into(), ..probes() };
    let ports = resolve(&c, &p).expect("resolves").network.ports;
    assert_eq!(ports.dns, Some(1054));
    assert_eq!(Ports { dns: None, ..ports }, old, "the pinned ports stay");
    let fixed = config("[network]\ndns_port = 5300\n");
    assert!(port_candidates(&fixed, Some(&old)).is_empty());
    assert_eq!(resolve(&fixed, &Probes { pinned: Some(old), ..probes() }).expect("resolves").network.ports.dns, Some(5300));
}

#[test]
fn ports_without_a_dns_field_still_read() {
    let old =
        serde_json::json!({"http": 80, "https": 443, "api": 6443, "gateway": [{"node": "idp-lab-agent-0", "http": 28000, "https": 28001}]});
    let ports: Ports = serde_json::from_value(old).expect("a schema-2 record's ports read");
    assert_eq!(ports.dns, None);
    assert_eq!(ports.all(), [80, 443, 6443, 28000, 28001]);
    let new = Ports { dns: Some(53), ..ports };
    let back: Ports = serde_json::from_value(serde_json::to_value(&new).expect("json")).expect("round trip");
    assert_eq!(back, new);
    assert_eq!(new.all().last(), Some(&53));
}

#[test]
fn a_taken_auto_dns_port_moves_within_its_range() {
    let c = config("");
    let mut ports = resolve(&c, &probes()).expect("resolves").network.ports;
    let mut busy = BTreeSet::new();
    assert!(replace_taken_port(&c, &mut ports, 53, &mut busy, &[1053].into()));
    assert_eq!(ports.dns, Some(1054));
    let fixed = config("[network]\ndns_port = 53\n");
    let mut ports = resolve(&fixed, &probes()).expect("resolves").network.ports;
    assert!(!replace_taken_port(&fixed, &mut ports, 53, &mut BTreeSet::new(), &BTreeSet::new()), "a fixed port is never moved");
}

#[test]
fn dns_forward_resolves_to_socket_addresses() {
    assert!(resolve(&config(""), &probes()).expect("resolves").network.dns_forward.is_empty(), "no open resolver by default");
    let c = config("[network]\ndns_forward = [\"1.1.1.1\", \"10.0.0.2:5353\", \"2001:db8::1\", \"[2001:db8::2]:5300\"]\n");
    let forward = resolve(&c, &probes()).expect("resolves").network.dns_forward;
    let want: Vec<SocketAddr> =
        ["1.1.1.1:53", "10.0.0.2:5353", "[2001:db8::1]:53", "[2001:db8::2]:5300"].iter().map(|s| s.parse().expect("addr")).collect();
    assert_eq!(forward, want);
}

#[test]
fn no_chosen_range_is_in_an_ephemeral_port_range() {
    // Linux's default 32768-60999 and the IANA 49152-65535 of macOS and Windows: a port
    // there can be any program's outgoing connection between our probe and Docker's bind.
    for (from, to) in [HTTP_FALLBACK, HTTPS_FALLBACK, API_FALLBACK, DNS_FALLBACK, GATEWAY_RANGE] {
        assert!(from <= to && to < 32768, "{from}-{to}");
    }
}
