//! The lab-network services on a stand-in gateway address (127.0.0.1, recorded the way
//! `up` records the real one): they start only once the network is recorded, serve with
//! the real `dig` and curl, and a port held by another program is a warning, not a
//! failure of the other service. The registry's LAN listener (workshop mode) is tested
//! on a non-loopback address of this machine when it has one (127.0.0.1 otherwise, said
//! on stderr), with curl.

use super::*;
use idp_core::names::Zones;
use std::net::Ipv4Addr;
use std::process::Command;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

fn services(dir: &Path, registry_port: u16, dns_port: u16) -> LabRegistry {
    let zones = Zones::new(None, IpAddr::V4(Ipv4Addr::LOCALHOST));
    LabRegistry::new(
        dir.to_path_buf(),
        Some(RegistryPlan { port: registry_port, layout: None, local_dir: dir.join("registry"), lan: None }),
        Some((NodeDnsPlan { port: dns_port, forward: Vec::new() }, zones)),
        CancellationToken::new(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn they_start_once_the_network_is_recorded_and_serve() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (registry_port, dns_port) = (free_port(), free_port());
    let lab = services(dir.path(), registry_port, dns_port);
    assert!(lab.ensure_started().await.is_empty());
    assert!(lab.listeners().await.is_empty(), "nothing before the network exists");
    write_network(dir.path(), IpAddr::V4(Ipv4Addr::LOCALHOST)).expect("record");
    assert_eq!(lab.ensure_started().await, Vec::<String>::new());
    let names: Vec<String> = lab.listeners().await.into_iter().map(|l| l.name).collect();
    assert_eq!(names, ["node-dns", "registry"]);
    let dig = Command::new("dig").args(["@127.0.0.1", "-p", &dns_port.to_string(), "+short", "+time=5", "a.10-0-0-7.nip.io"]).output();
    assert_eq!(String::from_utf8_lossy(&dig.expect("dig").stdout).trim(), "10.0.0.7");
    let v2 = Command::new("curl").args(["-sS", "--max-time", "5", &format!("http://127.0.0.1:{registry_port}/v2/")]).output();
    assert_eq!(String::from_utf8_lossy(&v2.expect("curl").stdout).trim(), "{}");
    // A second call keeps what runs.
    assert!(lab.ensure_started().await.is_empty());
    assert_eq!(lab.listeners().await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_port_is_a_warning_and_the_other_service_still_starts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let held = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let dns_port = held.local_addr().expect("addr").port();
    let lab = services(dir.path(), free_port(), dns_port);
    write_network(dir.path(), IpAddr::V4(Ipv4Addr::LOCALHOST)).expect("record");
    let warnings = lab.ensure_started().await;
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains(&format!("127.0.0.1:{dns_port}")), "{warnings:?}");
    let names: Vec<String> = lab.listeners().await.into_iter().map(|l| l.name).collect();
    assert_eq!(names, ["registry"]);
}

/// A non-loopback IPv4 address of this machine (`ip -4 -o addr`), else 127.0.0.1 (and
/// says so: the LAN listener is then tested on loopback).
fn lan_address() -> IpAddr {
    let out = Command::new("ip").args(["-4", "-o", "addr", "show"]).output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    let found = out.unwrap_or_default().lines().find_map(|line| {
        let cidr = line.split_whitespace().skip_while(|w| *w != "inet").nth(1)?;
        let ip: Ipv4Addr = cidr.split('/').next()?.parse().ok()?;
        // A bridge of this machine's Docker is no LAN, but any non-loopback address
        // tells a listener bound to it from one bound to loopback.
        (!ip.is_loopback()).then_some(IpAddr::V4(ip))
    });
    found.unwrap_or_else(|| {
        eprintln!("network tests: this machine has no non-loopback IPv4 address; the LAN listener is tested on 127.0.0.1");
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    })
}

/// `curl` of `url` with `args`: the status code and the body.
fn curl(args: &[&str], url: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "5", "-o", "-", "-w", "\n%{http_code}"])
        .args(args)
        .arg(url)
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", ""));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

fn error_code(body: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    value["errors"][0]["code"].as_str().unwrap_or_default().to_owned()
}

fn digest_of(bytes: &[u8]) -> String {
    idp_core::oci::Digest::of(bytes).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lan_listener_serves_the_registry_read_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lan_ip = lan_address();
    let (registry_port, lan_port) = (free_port(), free_port());
    let lan = SocketAddr::new(lan_ip, lan_port);
    let plan = RegistryPlan { port: registry_port, layout: None, local_dir: dir.path().join("registry"), lan: Some(lan) };
    let lab = LabRegistry::new(dir.path().to_path_buf(), Some(plan), None, CancellationToken::new());
    // The LAN listener needs no lab network: it serves from the start.
    assert_eq!(lab.ensure_started().await, Vec::<String>::new());
    let listeners: Vec<(String, String)> = lab.listeners().await.into_iter().map(|l| (l.name, l.address)).collect();
    assert_eq!(listeners, [("registry-lan".to_owned(), lan.to_string())]);
    write_network(dir.path(), IpAddr::V4(Ipv4Addr::LOCALHOST)).expect("record");
    assert_eq!(lab.ensure_started().await, Vec::<String>::new());
    let names: Vec<String> = lab.listeners().await.into_iter().map(|l| l.name).collect();
    assert_eq!(names, ["registry", "registry-lan"]);

    let full = format!("http://127.0.0.1:{registry_port}");
    let on_lan = format!("http://{lan}");
    // GET /v2/ works on both.
    assert_eq!(curl(&[], &format!("{on_lan}/v2/")), (200, "{}".to_owned()));
    assert_eq!(curl(&[], &format!("{full}/v2/")), (200, "{}".to_owned()));
    // A monolithic blob push: refused on the LAN, done on the gateway's listener.
    let content = b"pushed from a laptop";
    let push = |base: &str| {
        curl(
            &["-X", "POST", "-H", "Content-Type: application/octet-stream", "--data-binary", std::str::from_utf8(content).unwrap_or("")],
            &format!("{base}/v2/local/app/blobs/uploads/?digest={}", digest_of(content)),
        )
    };
    let (status, body) = push(&on_lan);
    assert_eq!((status, error_code(&body).as_str()), (403, "DENIED"), "{body}");
    let (status, body) = curl(&["-X", "POST"], &format!("{on_lan}/v2/library/x/blobs/uploads/"));
    assert_eq!((status, error_code(&body).as_str()), (403, "DENIED"), "{body}");
    let (status, body) = curl(
        &["-X", "PUT", "-H", "Content-Type: application/vnd.oci.image.manifest.v1+json", "--data", "{}"],
        &format!("{on_lan}/v2/local/app/manifests/v1"),
    );
    assert_eq!((status, error_code(&body).as_str()), (403, "DENIED"), "{body}");
    assert_eq!(push(&full).0, 201, "the gateway's listener takes pushes");
    // local/ names are not reachable on the LAN, though the blob is there.
    let blob = format!("/v2/local/app/blobs/{}", digest_of(content));
    let (status, body) = curl(&[], &format!("{full}{blob}"));
    assert_eq!((status, body.as_bytes()), (200, &content[..]));
    let (status, body) = curl(&[], &format!("{on_lan}{blob}"));
    assert_eq!((status, error_code(&body).as_str()), (404, "NAME_UNKNOWN"), "{body}");
    let (status, body) = curl(&[], &format!("{on_lan}/v2/_catalog"));
    assert_eq!((status, body.as_str()), (200, r#"{"repositories":[]}"#));
    // The LAN listener is bound to the LAN address only: not to loopback (unless that is
    // the stand-in).
    if !lan_ip.is_loopback() {
        let (status, _) = curl(&[], &format!("http://127.0.0.1:{lan_port}/v2/"));
        assert_eq!(status, 0, "nothing answers on 127.0.0.1:{lan_port}");
    }
    // A reload keeps both.
    assert!(lab.ensure_started().await.is_empty());
    assert_eq!(lab.listeners().await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lan_address_that_cannot_be_bound_is_a_warning() {
    let dir = tempfile::tempdir().expect("tempdir");
    let held = std::net::TcpListener::bind((lan_address(), 0)).expect("bind");
    let taken = held.local_addr().expect("addr");
    // And an address this machine does not have (TEST-NET-3).
    for lan in [taken, SocketAddr::from(([203, 0, 113, 77], free_port()))] {
        let plan = RegistryPlan { port: free_port(), layout: None, local_dir: dir.path().join("registry"), lan: Some(lan) };
        let lab = LabRegistry::new(dir.path().to_path_buf(), Some(plan), None, CancellationToken::new());
        write_network(dir.path(), IpAddr::V4(Ipv4Addr::LOCALHOST)).expect("record");
        let warnings = lab.ensure_started().await;
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains(&lan.to_string()) && warnings[0].contains("lan"), "{warnings:?}");
        let names: Vec<String> = lab.listeners().await.into_iter().map(|l| l.name).collect();
        assert_eq!(names, ["registry"], "the gateway's listener still serves");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_that_does_not_open_says_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bundle = dir.path().join("bundle.tar");
    std::fs::write(&bundle, vec![0u8; 700]).expect("a cut tar");
    let plan = RegistryPlan { port: free_port(), layout: Some(bundle.clone()), local_dir: dir.path().join("registry"), lan: None };
    let lab = LabRegistry::new(dir.path().to_path_buf(), Some(plan), None, CancellationToken::new());
    write_network(dir.path(), IpAddr::V4(Ipv4Addr::LOCALHOST)).expect("record");
    let warnings = lab.ensure_started().await;
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("did not open") && warnings[0].contains(&bundle.display().to_string()), "{warnings:?}");
    assert!(lab.listeners().await.is_empty());
}
