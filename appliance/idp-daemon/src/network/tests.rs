//! The lab-network services on a stand-in gateway address (127.0.0.1, recorded the way
//! `up` records the real one): they start only once the network is recorded, serve with
//! the real `dig` and curl, and a port held by another program is a warning, not a
//! failure of the other service.

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
        Some(RegistryPlan { port: registry_port, layout: None, local_dir: dir.join("registry") }),
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
