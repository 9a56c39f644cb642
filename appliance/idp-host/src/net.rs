//! Host network probes: the LAN address, the routing table, the resolvers and free
//! ports. Nothing here sends a packet.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};

use idp_core::cluster::Subnet;

/// The resolver file, and the one systemd-resolved writes with the real upstreams.
const RESOLV_CONF: &str = "/etc/resolv.conf";
const RESOLVED_RESOLV_CONF: &str = "/run/systemd/resolve/resolv.conf";

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

/// Every IPv4 route of the host as destination/prefix, read from `/proc/net/route`, in
/// table order; the default route shows as `0.0.0.0/0` (callers that look for a free
/// subnet skip it). Empty when the table cannot be read.
pub fn routes() -> Vec<Subnet> {
    std::fs::read_to_string("/proc/net/route").map(|text| parse_routes(&text)).unwrap_or_default()
}

/// The route destinations of `/proc/net/route` text. The columns are found by the header
/// (`Destination`, `Mask`); a line whose fields do not parse, or whose mask is not a
/// prefix, is skipped.
pub fn parse_routes(text: &str) -> Vec<Subnet> {
    let mut lines = text.lines();
    let Some(header) = lines.next() else { return Vec::new() };
    let column = |name: &str| header.split_whitespace().position(|h| h == name);
    let (Some(dest_col), Some(mask_col)) = (column("Destination"), column("Mask")) else { return Vec::new() };
    lines
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let dest = u32::from(proc_ipv4(fields.get(dest_col)?)?);
            let mask = u32::from(proc_ipv4(fields.get(mask_col)?)?);
            let prefix = mask.leading_ones();
            // A prefix mask is all ones, then all zeros.
            (mask.count_ones() == prefix).then(|| Subnet { addr: Ipv4Addr::from(dest & mask), prefix: prefix as u8 })
        })
        .collect()
}

/// An IPv4 address as the kernel prints it in `/proc/net/*`: the address's four bytes,
/// in memory order, read as one native-endian (little-endian on x86-64 and arm64) word
/// and printed as eight hex digits.
pub(crate) fn proc_ipv4(hex: &str) -> Option<Ipv4Addr> {
    if hex.len() != 8 {
        return None;
    }
    u32::from_str_radix(hex, 16).ok().map(|word| Ipv4Addr::from(word.to_ne_bytes()))
}

/// The host's DNS resolvers, from `/etc/resolv.conf`. When that lists only loopback
/// resolvers (systemd-resolved's stub `127.0.0.53`), which mean nothing inside a
/// container, the upstreams in `/run/systemd/resolve/resolv.conf` are used instead when
/// that file exists and names any.
pub fn nameservers() -> Vec<IpAddr> {
    let etc = std::fs::read_to_string(RESOLV_CONF).unwrap_or_default();
    choose_nameservers(&etc, || std::fs::read_to_string(RESOLVED_RESOLV_CONF).ok())
}

/// The resolvers of `etc` (the text of `/etc/resolv.conf`), or those of the
/// systemd-resolved file when `etc` has only loopback ones and that file names any.
fn choose_nameservers(etc: &str, resolved: impl FnOnce() -> Option<String>) -> Vec<IpAddr> {
    let listed = parse_resolv_conf(etc);
    if listed.iter().all(IpAddr::is_loopback)
        && let Some(upstream) = resolved().map(|text| parse_resolv_conf(&text)).filter(|u| !u.is_empty())
    {
        return upstream;
    }
    listed
}

/// The `nameserver` addresses of `resolv.conf` text, in order and without repeats.
/// Comments (`#`, `;`) are skipped, and so is an address that does not parse, such as a
/// link-local IPv6 address with a zone (`fe80::1%eth0`), which is of no use elsewhere.
pub fn parse_resolv_conf(text: &str) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("nameserver") {
            continue;
        }
        if let Some(ip) = words.next().and_then(|w| w.parse().ok())
            && !out.contains(&ip)
        {
            out.push(ip);
        }
    }
    out
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
mod tests;
