use std::net::TcpStream;

use super::*;
use crate::child;

const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const LO6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);
const ANY: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
const ANY6: IpAddr = IpAddr::V6(Ipv6Addr::UNSPECIFIED);

/// A port nothing listens on right now, on every address.
fn free_port() -> u16 {
    TcpListener::bind((ANY, 0)).expect("bind").local_addr().expect("addr").port()
}

/// Whether `std` (which sets `SO_REUSEADDR`, as Docker's Go runtime does) can bind.
fn can_bind(ip: IpAddr, port: u16) -> bool {
    TcpListener::bind((ip, port)).is_ok()
}

fn own_comm() -> String {
    std::fs::read_to_string("/proc/self/comm").expect("comm").trim_end().to_owned()
}

fn me() -> PortHolder {
    PortHolder { pid: std::process::id(), command: own_comm() }
}

#[test]
fn a_reservation_holds_the_port_until_it_is_released() {
    let port = free_port();
    let mut reservation = reserve(&[(LO, port)]).expect("reserve");
    assert_eq!(reservation.ports(), BTreeSet::from([port]));
    assert!(!can_bind(LO, port), "held on 127.0.0.1");
    assert!(!can_bind(ANY, port), "a wildcard bind would take it too");

    reservation.release(port);
    assert_eq!(reservation.ports(), BTreeSet::new());
    assert!(can_bind(LO, port), "free at once after release");
}

#[test]
fn release_lets_go_of_that_port_only() {
    let (a, b) = (free_port(), free_port());
    let mut reservation = reserve(&[(LO, a), (LO, b)]).expect("reserve");
    reservation.release(a);
    reservation.release(free_port());
    assert_eq!(reservation.ports(), BTreeSet::from([b]));
    assert!(can_bind(LO, a));
    assert!(!can_bind(LO, b));
}

#[test]
fn dropping_the_reservation_releases_everything() {
    let (a, b) = (free_port(), free_port());
    let reservation = reserve(&[(LO, a), (ANY, b)]).expect("reserve");
    assert!(!can_bind(LO, a) && !can_bind(LO, b));
    drop(reservation);
    assert!(can_bind(LO, a) && can_bind(ANY, b));
}

#[test]
fn an_unspecified_address_is_held_as_the_ipv4_wildcard() {
    let port = free_port();
    let reservation = reserve(&[(ANY6, port), (LO, port)]).expect("reserve");
    assert_eq!(reservation.held.iter().map(|(a, _)| *a).collect::<Vec<_>>(), vec![SocketAddr::new(ANY, port)]);
    assert!(!can_bind(LO, port));
    assert!(!can_bind(ANY, port));
}

#[test]
fn the_bind_set_drops_repeats_and_covered_addresses() {
    let sa = |ip: IpAddr, port: u16| SocketAddr::new(ip, port);
    let other = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    assert_eq!(
        bind_set(&[(LO, 80), (LO, 80), (ANY6, 443), (LO, 443), (other, 443), (LO6, 443), (LO, 6443)]),
        BTreeSet::from([sa(LO, 80), sa(ANY, 443), sa(LO6, 443), sa(LO, 6443)])
    );
    assert_eq!(bind_set(&[(ANY, 80), (LO, 81)]), BTreeSet::from([sa(ANY, 80), sa(LO, 81)]), "0.0.0.0 covers its own port only");
    assert_eq!(bind_set(&[]), BTreeSet::new());
}

/// Whether a socket in `TIME_WAIT` (state `06`) has local port `port`.
fn in_time_wait(port: u16) -> bool {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    table.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.get(3) == Some(&"06")
            && fields.get(1).and_then(|a| a.split_once(':')).is_some_and(|(_, p)| u16::from_str_radix(p, 16) == Ok(port))
    })
}

#[test]
fn a_port_with_connections_in_time_wait_can_be_reserved() {
    // A server that closed a connection first keeps it in TIME_WAIT for a minute, as
    // Docker's proxy does with a lab's API port after `down`.
    let listener = TcpListener::bind((LO, 0)).expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let mut client = TcpStream::connect((LO, port)).expect("connect");
    let (server, _) = listener.accept().expect("accept");
    drop(server);
    let mut buf = [0u8; 1];
    assert_eq!(std::io::Read::read(&mut client, &mut buf).expect("read the close"), 0);
    drop(client);
    drop(listener);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !in_time_wait(port) {
        assert!(std::time::Instant::now() < deadline, "no TIME_WAIT on port {port}");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }

    let mut reservation = reserve(&[(LO, port)]).expect("TIME_WAIT does not stop SO_REUSEADDR");
    assert!(!can_bind(LO, port), "and the port is held all the same");
    reservation.release(port);
    assert!(can_bind(LO, port));
}

#[test]
fn ipv6_addresses_are_held_as_ipv6() {
    let port = free_port();
    let Ok(probe) = TcpListener::bind((LO6, port)) else {
        eprintln!("SKIP: no IPv6 loopback on this host");
        return;
    };
    drop(probe);
    let reservation = reserve(&[(LO6, port)]).expect("reserve");
    assert!(!can_bind(LO6, port));
    assert!(can_bind(LO, port), "an IPv6 address does not hold the IPv4 one");
    drop(reservation);
}

#[test]
fn a_taken_port_fails_the_whole_reservation_and_names_the_holder() {
    let free = free_port();
    let taken = TcpListener::bind((LO, 0)).expect("bind");
    let port = taken.local_addr().expect("addr").port();

    let err = reserve(&[(LO, free), (LO, port)]).expect_err("taken");
    assert_eq!((err.addr, err.port), (LO, port));
    assert_eq!(err.holder, Some(me()));
    assert_eq!(err.source.kind(), io::ErrorKind::AddrInUse);
    assert_eq!(
        err.to_string(),
        format!("port {port} on 127.0.0.1 is taken by {} (pid {}); stop it or choose another port", own_comm(), std::process::id())
    );
    assert!(can_bind(LO, free), "nothing stays held after a failure");
}

#[test]
fn an_address_of_no_interface_cannot_be_reserved() {
    let nowhere = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 77));
    let err = reserve(&[(nowhere, free_port())]).expect_err("not a local address");
    assert_eq!(err.addr, nowhere);
    assert_eq!(err.holder, None);
    assert_eq!(err.source.kind(), io::ErrorKind::AddrNotAvailable);
    assert!(err.to_string().starts_with(&format!("port {} on 203.0.113.77 cannot be reserved: ", err.port)), "{err}");
}

#[test]
fn the_message_names_the_holder_and_the_setting() {
    let busy = |holder: Option<PortHolder>, setting, kind: io::ErrorKind| PortBusy {
        addr: LO,
        port: 443,
        holder,
        setting,
        source: io::Error::from(kind),
    };
    let nginx = Some(PortHolder { pid: 1234, command: "nginx".into() });
    assert_eq!(
        busy(nginx.clone(), Some("network.https_port"), io::ErrorKind::AddrInUse).to_string(),
        "port 443 on 127.0.0.1 is taken by nginx (pid 1234); stop it or set network.https_port"
    );
    assert_eq!(
        busy(nginx, None, io::ErrorKind::AddrInUse).to_string(),
        "port 443 on 127.0.0.1 is taken by nginx (pid 1234); stop it or choose another port"
    );
    assert_eq!(
        busy(None, Some("network.https_port"), io::ErrorKind::AddrInUse).to_string(),
        "port 443 on 127.0.0.1 is taken by another process; stop it or set network.https_port"
    );
    let other = busy(None, None, io::ErrorKind::AddrNotAvailable);
    assert_eq!(
        other.to_string(),
        format!("port 443 on 127.0.0.1 cannot be reserved: {}; choose another port", io::Error::from(io::ErrorKind::AddrNotAvailable))
    );
    assert!(std::error::Error::source(&other).is_some());
}

/// A privileged port (below `ip_unprivileged_port_start`) that is free, if there is one.
fn free_privileged_port() -> Option<u16> {
    let start: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start").ok()?.trim().parse().ok()?;
    (start.saturating_sub(200).max(1)..start).rev().find(|p| can_bind(ANY, *p) && listeners(ANY, *p).is_empty())
}

#[test]
fn an_unprivileged_user_checks_privileged_ports_without_holding_them() {
    if !nix::unistd::getuid().is_root() {
        eprintln!("SKIP: needs root to start a child as nobody");
        return;
    }
    let Some(free) = free_privileged_port() else {
        eprintln!("SKIP: every port may be bound by anyone here (ip_unprivileged_port_start is 0)");
        return;
    };
    let taken = TcpListener::bind((LO, 0)).expect("bind");
    let taken_port = taken.local_addr().expect("addr").port();
    let busy_listener = (1..free).rev().find_map(|p| TcpListener::bind((ANY, p)).ok()).expect("another privileged port");
    let busy = busy_listener.local_addr().expect("addr").port();
    let out = child::run(
        "ports::tests::as_nobody",
        &[("FREE_PORT", &free.to_string()), ("BUSY_PORT", &busy.to_string()), ("TAKEN_PORT", &taken_port.to_string())],
    );
    assert!(out.contains(&format!("busy: port {busy} on 127.0.0.1 is taken by another process; stop it or choose another port")), "{out}");
    assert!(
        out.contains(&format!("taken: port {taken_port} on 127.0.0.1 is taken by another process; stop it or choose another port")),
        "{out}"
    );
}

#[test]
#[ignore = "run as nobody by an_unprivileged_user_checks_privileged_ports_without_holding_them"]
fn as_nobody() {
    if !child::is_child() {
        return;
    }
    let port = |name: &str| std::env::var(name).expect(name).parse::<u16>().expect("port");
    nix::unistd::setuid(nix::unistd::Uid::from_raw(65534)).expect("setuid nobody");

    let reservation = reserve(&[(LO, port("FREE_PORT"))]).expect("a free privileged port is no error");
    assert_eq!(reservation.ports(), BTreeSet::new(), "but it cannot be held");

    // Root's listener: the bind says "permission denied", the socket table says taken;
    // root's descriptors cannot be read, so the holder stays unknown.
    let err = reserve(&[(LO, port("BUSY_PORT"))]).expect_err("someone listens");
    assert_eq!(err.source.kind(), io::ErrorKind::AddrInUse);
    assert_eq!(err.holder, None);
    println!("busy: {err}");

    let err = reserve(&[(LO, port("TAKEN_PORT"))]).expect_err("an unprivileged port taken by root");
    println!("taken: {err}");
}

#[test]
fn the_holder_of_a_listening_port_is_found() {
    let listener = TcpListener::bind((LO, 0)).expect("bind");
    let port = listener.local_addr().expect("addr").port();
    assert_eq!(port_holder(LO, port), Some(me()));
    assert_eq!(port_holder(ANY, port), Some(me()), "a wildcard bind is stopped by any listener");
    assert_eq!(port_holder(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), port), None, "127.0.0.2 is still free");
    drop(listener);
    assert_eq!(port_holder(LO, port), None, "nothing listens any more");
}

#[test]
fn a_wildcard_listener_holds_every_address() {
    let listener = TcpListener::bind((ANY, 0)).expect("bind");
    let port = listener.local_addr().expect("addr").port();
    assert_eq!(port_holder(LO, port), Some(me()));
    assert_eq!(port_holder(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), port), Some(me()));
}

#[test]
fn a_connected_socket_is_not_a_listener() {
    let listener = TcpListener::bind((LO, 0)).expect("bind");
    let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    let (_server, _) = listener.accept().expect("accept");
    let client_port = client.local_addr().expect("addr").port();
    assert_eq!(port_holder(LO, client_port), None);
}

#[test]
fn an_ipv6_listener_is_found_in_tcp6() {
    let Ok(listener) = TcpListener::bind((LO6, 0)) else {
        eprintln!("SKIP: no IPv6 loopback on this host");
        return;
    };
    let port = listener.local_addr().expect("addr").port();
    assert_eq!(port_holder(LO6, port), Some(me()));
    assert_eq!(port_holder(LO, port), None, "[::1] does not stop a bind on 127.0.0.1");
}

const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:0035 00000000:0000 0A 00000000:00000000 00:00000000 00000000   101        0 20123 1 0000000000000000 100 0 0 10 0
   1: 00000000:01BB 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 31337 1 0000000000000000 100 0 0 10 0
   2: 0100007F:0035 0100007F:A2C4 01 00000000:00000000 00:00000000 00000000   101        0 40000 1 0000000000000000 20 4 30 10 -1
   3: 0100007F:ZZZZ 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 50000 1
   4: 0100007F:0050 00000000:0000 0A
   5: 0100007F 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 50001 1
";

const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 777 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:0277 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 778 1 0000000000000000 100 0 0 10 0
   2: 0000000000000000FFFF00000100007F:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 779 1 0000000000000000 100 0 0 10 0
   3: 0000000000000000FFFF00000100007:0051 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 780 1 0000000000000000 100 0 0 10 0
";

#[test]
fn parses_the_listeners_of_the_tcp_tables() {
    let l = |addr: &str, port, inode| TcpListen { addr: addr.parse().expect("ip"), port, inode };
    assert_eq!(
        parse_tcp_listeners(TCP),
        vec![l("127.0.0.1", 53, 20123), l("0.0.0.0", 443, 31337)],
        "the connection, the bad port, the short line and the port-less address are skipped"
    );
    assert_eq!(parse_tcp_listeners(TCP6), vec![l("::", 8080, 777), l("::1", 631, 778), l("::ffff:127.0.0.1", 80, 779)]);
    assert_eq!(parse_tcp_listeners(""), vec![]);
}

#[test]
fn proc_ipv6_reads_four_kernel_words() {
    assert_eq!(proc_ipv6("B80D0120000000000000000001000000"), Some("2001:db8::1".parse().expect("ip")));
    assert_eq!(proc_ipv6("B80D012000000000000000000100000"), None, "31 digits");
    assert_eq!(proc_ipv6("B80D01200000000000000000010000000"), None, "33 digits");
    assert_eq!(proc_ipv6("B80D012000000000000000000100000G"), None);
    assert_eq!(proc_ipv6("B80D012é00000000000000000100000"), None, "not ASCII, and not cut inside a character");
}
