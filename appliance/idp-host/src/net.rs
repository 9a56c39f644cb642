//! Host network probes: the LAN address and free ports. Nothing here sends a packet.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr, TcpListener};

/// The host's LAN address: the IPv4 address of the interface that carries the default
/// route (read from `/proc/net/route` and the interface list; no traffic is sent).
pub fn detect_lan_ip() -> Option<IpAddr> {
    let routes = std::fs::read_to_string("/proc/net/route").ok()?;
    let iface = default_route_interface(&routes)?;
    let addrs = nix::ifaddrs::getifaddrs().ok()?;
    for ifa in addrs {
        if ifa.interface_name != iface {
            continue;
        }
        if let Some(sin) = ifa.address.as_ref().and_then(|a| a.as_sockaddr_in()) {
            return Some(IpAddr::V4(sin.ip()));
        }
    }
    None
}

/// The interface of the default route in `/proc/net/route` text.
pub fn default_route_interface(routes: &str) -> Option<String> {
    routes.lines().skip(1).find_map(|line| {
        let mut fields = line.split_whitespace();
        let iface = fields.next()?;
        (fields.next()? == "00000000").then(|| iface.to_owned())
    })
}

/// Whether a TCP port can be bound on `bind` right now.
pub fn port_is_free(bind: IpAddr, port: u16) -> bool {
    TcpListener::bind(SocketAddr::new(bind, port)).is_ok()
}

/// The ports among `candidates` that cannot be bound right now.
pub fn busy_ports(candidates: &[(IpAddr, u16)]) -> BTreeSet<u16> {
    candidates.iter().filter(|(ip, port)| !port_is_free(*ip, *port)).map(|(_, port)| *port).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_default_route_interface() {
        let routes = "Iface\tDestination\tGateway\tFlags\nbr0\t0000A8C0\t00000000\t0001\neth0\t00000000\t0100A8C0\t0003\n";
        assert_eq!(default_route_interface(routes).as_deref(), Some("eth0"));
        assert_eq!(default_route_interface("Iface\tDestination\n"), None);
    }

    #[test]
    fn busy_ports_are_the_bound_ones() {
        let lo = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
        let taken = TcpListener::bind((lo, 0)).expect("bind");
        let port = taken.local_addr().expect("addr").port();
        let free = TcpListener::bind((lo, 0)).expect("bind").local_addr().expect("addr").port();
        assert_eq!(busy_ports(&[(lo, port), (lo, free)]), BTreeSet::from([port]));
    }
}
