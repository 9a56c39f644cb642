//! Host network probes: the LAN address and free ports. Nothing here sends a packet.

use idp_core::config::PortSetting;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};

/// Errors of the host network probes.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// No free port in the fallback range.
    #[error("no free port on {bind} from {from} to {to}; free one, or set the port explicitly")]
    NoFreePort {
        /// Address probed.
        bind: IpAddr,
        /// First port tried.
        from: u16,
        /// Last port tried.
        to: u16,
    },
}

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

/// Resolves a port setting: a fixed port as is; `auto` as `preferred` when it is free,
/// else the first free port from `fallback_from` (100 tried).
pub fn pick_port(bind: IpAddr, setting: PortSetting, preferred: u16, fallback_from: u16) -> Result<u16, NetError> {
    if let PortSetting::Fixed(p) = setting {
        return Ok(p);
    }
    // An unspecified bind address is probed as such: the port must be free on every interface.
    let bind = if bind.is_unspecified() { IpAddr::V4(Ipv4Addr::UNSPECIFIED) } else { bind };
    if port_is_free(bind, preferred) {
        return Ok(preferred);
    }
    let to = fallback_from.saturating_add(99);
    (fallback_from..=to).find(|&p| port_is_free(bind, p)).ok_or(NetError::NoFreePort { bind, from: fallback_from, to })
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
    fn auto_ports_skip_taken_ones() {
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let taken = TcpListener::bind((lo, 0)).expect("bind");
        let port = taken.local_addr().expect("addr").port();
        let picked = pick_port(lo, PortSetting::Auto, port, port.saturating_add(1).max(1024)).expect("a free port");
        assert_ne!(picked, port);
        assert_eq!(pick_port(lo, PortSetting::Fixed(port), 1, 1).expect("fixed"), port, "fixed ports are not probed");
    }
}
