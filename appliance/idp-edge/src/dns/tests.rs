//! The DNS answer against the real `dig` (Debian package `bind9-dnsutils`, or
//! `dnsutils`) and, as an upstream to forward to, the real `dnsmasq` (package
//! `dnsmasq-base`), on real sockets on 127.0.0.1.

#![allow(clippy::unwrap_used)]

use super::*;
use std::net::Ipv4Addr;
use std::process::{Child, Command, Stdio};
use std::time::Instant;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running server on free ports, stopped when dropped.
struct Running {
    port: u16,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), EdgeError>>>,
}

impl Running {
    async fn start(answers: Answers) -> Running {
        let (udp, tcp) = bind_pair().await;
        let port = udp.local_addr().unwrap().port();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(udp, tcp, answers, async move {
            let _ = stopped.await;
        }));
        Running { port, stop: Some(stop), task: Some(task) }
    }

    /// `dig` with `args`, its whole output.
    async fn dig(&self, args: &[&str]) -> String {
        dig(self.port, args).await
    }

    async fn stop(mut self) -> Result<Result<(), EdgeError>, tokio::time::error::Elapsed> {
        let _ = self.stop.take().unwrap().send(());
        let task = self.task.take().unwrap();
        tokio::time::timeout(Duration::from_secs(1), async { task.await.unwrap() }).await
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A UDP socket and a TCP listener on the same free port of 127.0.0.1.
async fn bind_pair() -> (UdpSocket, TcpListener) {
    for _ in 0..50 {
        let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let port = udp.local_addr().unwrap().port();
        if let Ok(tcp) = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).await {
            return (udp, tcp);
        }
    }
    panic!("no free port for both UDP and TCP on 127.0.0.1");
}

fn tool(name: &str, package: &str) -> String {
    let found = Command::new("sh").arg("-c").arg(format!("command -v {name}")).output().unwrap();
    let path = String::from_utf8_lossy(&found.stdout).trim().to_owned();
    assert!(found.status.success() && !path.is_empty(), "`{name}` is not installed; these tests need it: apt-get install -y {package}");
    path
}

async fn dig(port: u16, args: &[&str]) -> String {
    let dig = tool("dig", "bind9-dnsutils (or dnsutils)");
    let mut command = Command::new(dig);
    command.args(["@127.0.0.1", "-p", &port.to_string(), "+time=5", "+tries=1"]).args(args);
    let output = tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The `status:` of a full `dig` output.
fn status(output: &str) -> &str {
    let Some(start) = output.find("status: ") else {
        panic!("no status in dig's output:\n{output}");
    };
    let rest = &output[start + "status: ".len()..];
    &rest[..rest.find(',').unwrap_or(rest.len())]
}

/// The ANSWER count of a full `dig` output.
fn answer_count(output: &str) -> u32 {
    let Some(start) = output.find("ANSWER: ") else {
        panic!("no answer count in dig's output:\n{output}");
    };
    let rest = &output[start + "ANSWER: ".len()..];
    rest[..rest.find(',').unwrap()].parse().unwrap()
}

fn lab_answers() -> Answers {
    Answers::new(Zones::new(Some("lab.internal"), IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3))))
}

#[tokio::test(flavor = "multi_thread")]
async fn dns_answers_the_address_of_our_names_over_udp_and_tcp() {
    let server = Running::start(lab_answers()).await;
    let cases: &[(&str, &str, &str)] = &[
        ("argocd.127-0-0-1.nip.io", "A", "127.0.0.1"),
        ("ArgoCD.127-0-0-1.NIP.io", "A", "127.0.0.1"),
        ("argocd.127.0.0.1.nip.io", "A", "127.0.0.1"),
        ("7f000001.nip.io", "A", "127.0.0.1"),
        ("app-0a000001.nip.io", "A", "10.0.0.1"),
        ("argocd.10-0-0-1.sslip.io", "A", "10.0.0.1"),
        ("192.168.1.2.sslip.io", "A", "192.168.1.2"),
        ("lab.internal", "A", "10.1.2.3"),
        ("grafana.lab.internal", "A", "10.1.2.3"),
        ("--1.sslip.io", "AAAA", "::1"),
        ("2001-db8--1.sslip.io", "AAAA", "2001:db8::1"),
    ];
    for transport in ["+notcp", "+tcp"] {
        for (name, qtype, expected) in cases {
            let output = server.dig(&["-q", name, "-t", qtype, "+short", transport]).await;
            assert_eq!(output.trim(), *expected, "dig {name} {qtype} {transport}");
        }
    }
    // The TTL, the AA flag and the name as asked (case kept).
    let output = server.dig(&["ArgoCD.127-0-0-1.nip.io", "A", "+noall", "+answer", "+comments"]).await;
    assert!(output.contains("flags: qr aa rd;"), "{output}");
    assert!(output.contains("ArgoCD.127-0-0-1.nip.io. 300\tIN\tA\t127.0.0.1"), "{output}");
    server.stop().await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn dns_status_of_every_kind_of_question() {
    let server = Running::start(lab_answers()).await;
    // (name, type, status, answers)
    let cases: &[(&str, &str, &str, u32)] = &[
        ("example.com", "A", "REFUSED", 0),
        ("nip.io.example.com", "A", "REFUSED", 0),
        ("example.com", "ANY", "REFUSED", 0),
        // The wrong family: NODATA.
        ("argocd.127-0-0-1.nip.io", "AAAA", "NOERROR", 0),
        ("--1.sslip.io", "A", "NOERROR", 0),
        ("lab.internal", "AAAA", "NOERROR", 0),
        // Other types: NODATA; ANY: NOTIMP.
        ("argocd.127-0-0-1.nip.io", "TXT", "NOERROR", 0),
        ("nip.io", "SOA", "NOERROR", 0),
        ("lab.internal", "NS", "NOERROR", 0),
        ("argocd.127-0-0-1.nip.io", "ANY", "NOTIMP", 0),
        ("www.nip.io", "ANY", "NOTIMP", 0),
        // No address: NODATA at the apex and above dotted names, NXDOMAIN elsewhere.
        ("nip.io", "A", "NOERROR", 0),
        ("sslip.io", "AAAA", "NOERROR", 0),
        ("0.0.1.nip.io", "A", "NOERROR", 0),
        ("1.nip.io", "A", "NOERROR", 0),
        ("www.nip.io", "A", "NXDOMAIN", 0),
        ("256-0-0-1.nip.io", "A", "NXDOMAIN", 0),
        ("a.www.nip.io", "AAAA", "NXDOMAIN", 0),
        ("2001-db8--1.nip.io", "AAAA", "NXDOMAIN", 0),
        ("argocd.127-0-0-1.nip.io", "A", "NOERROR", 1),
    ];
    for (name, qtype, expected, answers) in cases {
        let output = server.dig(&["-q", name, "-t", qtype]).await;
        assert_eq!(status(&output), *expected, "dig {name} {qtype}:\n{output}");
        assert_eq!(answer_count(&output), *answers, "dig {name} {qtype}:\n{output}");
    }
    // Another class is refused, even for our names.
    let output = server.dig(&["-c", "CH", "argocd.127-0-0-1.nip.io", "A"]).await;
    assert_eq!(status(&output), "REFUSED", "{output}");
    // A newer EDNS version is BADVERS.
    let output = server.dig(&["+edns=1", "+noednsneg", "argocd.127-0-0-1.nip.io", "A"]).await;
    assert_eq!(status(&output), "BADVERS", "{output}");
    server.stop().await.unwrap().unwrap();
}

/// A query for `name` type `qtype` (a code), id 0x1234, with RD set.
fn query(name: &str, qtype: u16) -> Vec<u8> {
    let mut packet = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        packet.push(u8::try_from(label.len()).unwrap());
        packet.extend_from_slice(label.as_bytes());
    }
    packet.extend_from_slice(&[0, (qtype >> 8) as u8, qtype as u8, 0, 1]);
    packet
}

#[tokio::test(flavor = "multi_thread")]
async fn dns_survives_malformed_packets_and_never_amplifies() {
    let server = Running::start(lab_answers()).await;
    let socket = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    socket.connect((Ipv4Addr::LOCALHOST, server.port)).unwrap();

    let mut packets: Vec<Vec<u8>> = vec![
        vec![],
        vec![0x12],
        vec![0x12, 0x34, 0x01, 0x00, 0, 1],
        // A whole header announcing a question that is not there.
        vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0],
        // A header announcing many records.
        vec![0x12, 0x34, 0x01, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        // A response (QR set): never answered.
        vec![0x12, 0x34, 0x81, 0x80, 0, 0, 0, 0, 0, 0, 0, 0],
        // No question at all, and two questions.
        vec![0x12, 0x34, 0x01, 0x00, 0, 0, 0, 0, 0, 0, 0, 0],
    ];
    let mut two = query("a.nip.io", 1);
    two[5] = 2;
    two.extend_from_slice(&query("b.nip.io", 1)[12..]);
    packets.push(two);
    // A query cut in the middle of its name, and one with a label pointer loop.
    let whole = query("argocd.127-0-0-1.nip.io", 1);
    packets.push(whole[..20].to_vec());
    let mut looped = whole[..12].to_vec();
    looped.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
    packets.push(looped);
    // Random bytes, of many lengths, from a fixed xorshift seed.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for len in [3, 12, 13, 17, 40, 100, 300, 512, 1200] {
        for _ in 0..20 {
            let packet = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (state >> 24) as u8
                })
                .collect();
            packets.push(packet);
        }
    }

    let mut answered = 0;
    for packet in &packets {
        socket.send(packet).unwrap();
        let mut buffer = [0u8; 65535];
        if let Ok(len) = socket.recv(&mut buffer) {
            answered += 1;
            assert!(len <= packet.len() + 12, "a {}-byte packet got a {len}-byte answer: {packet:02x?}", packet.len());
        }
    }
    eprintln!("{answered} of {} malformed packets were answered, none larger than the packet + 12 bytes", packets.len());
    assert!(answered > 0, "not one of {} packets got an answer (FORMERR expected for some)", packets.len());

    // Still up, on both transports.
    for transport in ["+notcp", "+tcp"] {
        let output = server.dig(&["argocd.127-0-0-1.nip.io", "A", "+short", transport]).await;
        assert_eq!(output.trim(), "127.0.0.1", "{transport}");
    }
    server.stop().await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn dns_serve_returns_promptly_on_shutdown() {
    let server = Running::start(lab_answers()).await;
    assert_eq!(server.dig(&["7f000001.nip.io", "+short"]).await.trim(), "127.0.0.1");
    // An idle TCP connection does not hold the shutdown up.
    let _idle = TcpStream::connect((Ipv4Addr::LOCALHOST, server.port)).await.unwrap();
    let port = server.port;
    let started = Instant::now();
    let result = server.stop().await;
    assert!(result.is_ok(), "serve did not return within 1 s of the shutdown");
    result.unwrap().unwrap();
    assert!(started.elapsed() < Duration::from_secs(1));
    // The sockets are gone with the server.
    let output = dig(port, &["7f000001.nip.io", "+short", "+time=1"]).await;
    assert!(!output.lines().any(|line| line.trim() == "127.0.0.1"), "answered after the shutdown: {output}");
}

/// A `dnsmasq` on a free port of 127.0.0.1 answering 192.0.2.7 for example.com, killed
/// when dropped.
struct Dnsmasq {
    child: Child,
    port: u16,
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn dnsmasq() -> Dnsmasq {
    let binary = tool("dnsmasq", "dnsmasq-base");
    for _ in 0..10 {
        let port = {
            let (udp, tcp) = bind_pair().await;
            let port = udp.local_addr().unwrap().port();
            drop((udp, tcp));
            port
        };
        let child = Command::new(&binary)
            .args(["--no-daemon", "--conf-file=/dev/null", "--no-hosts", "--no-resolv", "--bind-interfaces", "--listen-address=127.0.0.1"])
            .arg("--pid-file=")
            .arg(format!("--port={port}"))
            .arg("--address=/example.com/192.0.2.7")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut upstream = Dnsmasq { child, port };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if upstream.child.try_wait().unwrap().is_some() {
                break;
            }
            if dig(port, &["example.com", "A", "+short", "+time=1"]).await.trim() == "192.0.2.7" {
                return upstream;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    panic!("dnsmasq did not start answering on 127.0.0.1");
}

#[tokio::test(flavor = "multi_thread")]
async fn dns_forwards_other_names_only_when_told() {
    let upstream = dnsmasq().await;
    let resolver = SocketAddr::from((Ipv4Addr::LOCALHOST, upstream.port));
    let server = Running::start(lab_answers().with_forward(vec![resolver])).await;
    for transport in ["+notcp", "+tcp"] {
        let output = server.dig(&["example.com", "A", "+short", transport]).await;
        assert_eq!(output.trim(), "192.0.2.7", "{transport}");
        let output = server.dig(&["www.example.com", "A", "+short", transport]).await;
        assert_eq!(output.trim(), "192.0.2.7", "{transport}");
    }
    // Our names are still answered here, not forwarded.
    let output = server.dig(&["www.nip.io", "A"]).await;
    assert_eq!(status(&output), "NXDOMAIN", "{output}");
    assert_eq!(server.dig(&["argocd.127-0-0-1.nip.io", "+short"]).await.trim(), "127.0.0.1");
    server.stop().await.unwrap().unwrap();

    // A dead upstream first, then the live one: the live one answers.
    let dead = {
        let socket = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        socket.local_addr().unwrap()
    };
    let server = Running::start(lab_answers().with_forward(vec![dead, resolver])).await;
    assert_eq!(server.dig(&["example.com", "+short", "+time=8"]).await.trim(), "192.0.2.7");
    server.stop().await.unwrap().unwrap();

    // Only dead upstreams: SERVFAIL, after the timeout.
    let server = Running::start(lab_answers().with_forward(vec![dead])).await;
    let output = server.dig(&["example.com", "+time=8"]).await;
    assert_eq!(status(&output), "SERVFAIL", "{output}");
    server.stop().await.unwrap().unwrap();
}

#[test]
fn dns_local_answers() {
    let zones = Zones::new(Some("lab.internal"), IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)));
    let v4 = IpAddr::V4(Ipv4Addr::LOCALHOST);
    assert_eq!(local(&zones, "x.127-0-0-1.nip.io", RecordType::A), Local::Record(v4));
    assert_eq!(local(&zones, "x.127-0-0-1.nip.io", RecordType::AAAA), Local::NoData);
    assert_eq!(local(&zones, "nip.io", RecordType::A), Local::NoData);
    assert_eq!(local(&zones, "3.4.nip.io", RecordType::A), Local::NoData);
    assert_eq!(local(&zones, "b.1.2.3.nip.io", RecordType::A), Local::NxDomain);
    assert_eq!(local(&zones, "www.sslip.io", RecordType::A), Local::NxDomain);
    assert_eq!(local(&zones, "example.com", RecordType::A), Local::NotOurs);
    let dotted = Name::from_labels([&b"a.b"[..], b"nip", b"io"]).unwrap();
    assert_eq!(presentation(&dotted), None);
    assert_eq!(presentation(&Name::from_ascii("X.nip.io.").unwrap()).as_deref(), Some("X.nip.io"));
}
