//! Port reservations, and who holds a port that is taken.
//!
//! idp-lab chooses its host ports long before Docker publishes them (the whole cluster
//! plan comes in between). A [`PortReservation`] holds each chosen port with a listening
//! socket meanwhile, so nothing else takes it, and lets it go just before the container
//! that publishes it is created.
//!
//! The sockets are made with `SO_REUSEADDR`, as `std`'s `TcpListener::bind` and Docker's
//! proxy make theirs. A listening socket still makes every other listener on its
//! address fail, so the hold is no weaker; without the option, a port whose earlier
//! connections linger in `TIME_WAIT` (a lab's API port after `down`, for a minute)
//! could not be held although Docker could publish it.

use std::collections::BTreeSet;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};

use crate::net::proc_ipv4;

/// The TCP socket tables of the host's network namespace.
const TCP_TABLES: [&str; 2] = ["/proc/net/tcp", "/proc/net/tcp6"];
/// `TCP_LISTEN` in the `st` column of the tables.
const LISTEN: &str = "0A";

/// Host ports held by idp-lab until Docker publishes them. Dropping it releases all.
#[derive(Debug)]
pub struct PortReservation {
    held: Vec<(SocketAddr, TcpListener)>,
}

/// Reserves every `(address, port)`, or none: the first that cannot be held is the
/// error, and what was held until then is released. An unspecified address (`0.0.0.0`
/// or `::`) is held as `0.0.0.0`, which also covers every IPv4 address on that port.
///
/// Below `net.ipv4.ip_unprivileged_port_start` (usually 1024) only root may bind. Docker
/// binds as root, so an unprivileged idp-lab cannot hold such a port, yet it is not
/// taken: it is then only checked that no socket listens on it, and it is not held
/// (see [`PortReservation::ports`]).
pub fn reserve(ports: &[(IpAddr, u16)]) -> Result<PortReservation, PortBusy> {
    let mut held = Vec::new();
    for addr in bind_set(ports) {
        match hold(addr) {
            Ok(listener) => held.push((addr, listener)),
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied && listeners(addr.ip(), addr.port()).is_empty() => {}
            Err(e) => {
                let source = if e.kind() == io::ErrorKind::PermissionDenied { io::Error::from(io::ErrorKind::AddrInUse) } else { e };
                return Err(PortBusy {
                    addr: addr.ip(),
                    port: addr.port(),
                    holder: port_holder(addr.ip(), addr.port()),
                    setting: None,
                    source,
                });
            }
        }
    }
    Ok(PortReservation { held })
}

/// The sockets to bind for `ports`: unspecified addresses as `0.0.0.0`, without repeats,
/// and without an IPv4 address whose port `0.0.0.0` already covers (binding both would
/// fail against the reservation itself).
fn bind_set(ports: &[(IpAddr, u16)]) -> BTreeSet<SocketAddr> {
    let all: BTreeSet<SocketAddr> = ports
        .iter()
        .map(|&(ip, port)| SocketAddr::new(if ip.is_unspecified() { IpAddr::V4(Ipv4Addr::UNSPECIFIED) } else { ip }, port))
        .collect();
    let covered =
        |a: &SocketAddr| a.is_ipv4() && !a.ip().is_unspecified() && all.contains(&SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), a.port()));
    all.iter().filter(|a| !covered(a)).copied().collect()
}

/// A listening socket on `addr`, with `SO_REUSEADDR` (see the module docs).
fn hold(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr)
}

impl PortReservation {
    /// Releases `port` on every address it is held on, just before the container that
    /// publishes it is created. A port that is not held is ignored.
    pub fn release(&mut self, port: u16) {
        self.held.retain(|(addr, _)| addr.port() != port);
    }

    /// The ports held now.
    pub fn ports(&self) -> BTreeSet<u16> {
        self.held.iter().map(|(addr, _)| addr.port()).collect()
    }
}

/// A port that could not be reserved.
#[derive(Debug, thiserror::Error)]
#[error("port {port} on {addr} {}", explain(self))]
pub struct PortBusy {
    /// The address it was to be held on.
    pub addr: IpAddr,
    /// The port.
    pub port: u16,
    /// The process listening on it, when it can be found (another user's processes
    /// cannot be seen without root).
    pub holder: Option<PortHolder>,
    /// The configuration key that sets the port, for the hint (e.g.
    /// `network.https_port`); [`reserve`] leaves it to the caller, which knows it.
    pub setting: Option<&'static str>,
    /// Why the bind failed.
    #[source]
    pub source: io::Error,
}

fn explain(e: &PortBusy) -> String {
    let hint = match e.setting {
        Some(key) => format!("set {key}"),
        None => "choose another port".to_owned(),
    };
    match (&e.holder, e.source.kind()) {
        (Some(h), _) => format!("is taken by {} (pid {}); stop it or {hint}", h.command, h.pid),
        (None, io::ErrorKind::AddrInUse) => format!("is taken by another process; stop it or {hint}"),
        (None, _) => format!("cannot be reserved: {}; {hint}", e.source),
    }
}

/// A process listening on a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortHolder {
    /// Its process id.
    pub pid: u32,
    /// Its command name, from `/proc/<pid>/comm` (at most 15 bytes), e.g. `nginx`.
    pub command: String,
}

/// The process listening on TCP `port` in a way that stops a bind on `addr`: a listener
/// on `addr` itself or on a wildcard address, or on any address when `addr` is the
/// wildcard. Found through the socket's inode in `/proc/net/tcp{,6}` and the
/// `socket:[inode]` links in `/proc/<pid>/fd`; `None` when nothing listens or the
/// process is not visible (another user's, without root).
pub fn port_holder(addr: IpAddr, port: u16) -> Option<PortHolder> {
    listeners(addr, port).into_iter().find_map(socket_owner)
}

/// The inodes of the listening sockets that stop a bind on `addr:port`.
fn listeners(addr: IpAddr, port: u16) -> Vec<u64> {
    let wanted = addr.to_canonical();
    TCP_TABLES
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .flat_map(|text| parse_tcp_listeners(&text))
        .filter(|l| l.port == port && (wanted.is_unspecified() || l.addr.is_unspecified() || l.addr.to_canonical() == wanted))
        .map(|l| l.inode)
        .collect()
}

/// A listening socket of `/proc/net/tcp{,6}`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TcpListen {
    addr: IpAddr,
    port: u16,
    inode: u64,
}

/// The listening sockets (state `0A`) of `/proc/net/tcp` or `/proc/net/tcp6` text.
/// Columns: `sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode`.
fn parse_tcp_listeners(text: &str) -> Vec<TcpListen> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.get(3) != Some(&LISTEN) {
                return None;
            }
            let (addr, port) = fields.get(1)?.split_once(':')?;
            let addr = match addr.len() {
                8 => IpAddr::V4(proc_ipv4(addr)?),
                _ => IpAddr::V6(proc_ipv6(addr)?),
            };
            Some(TcpListen { addr, port: u16::from_str_radix(port, 16).ok()?, inode: fields.get(9)?.parse().ok()? })
        })
        .collect()
}

/// An IPv6 address as `/proc/net/tcp6` prints it: four native-endian words of the
/// address's bytes in memory order, eight hex digits each.
fn proc_ipv6(hex: &str) -> Option<Ipv6Addr> {
    if hex.len() != 32 || !hex.is_ascii() {
        return None;
    }
    let mut bytes = [0u8; 16];
    for (i, chunk) in bytes.chunks_exact_mut(4).enumerate() {
        let word = u32::from_str_radix(&hex[i * 8..i * 8 + 8], 16).ok()?;
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
    Some(Ipv6Addr::from(bytes))
}

/// A process with a descriptor on socket `inode`: the first `/proc` lists, which is
/// the lowest pid (a forking server's parent).
fn socket_owner(inode: u64) -> Option<PortHolder> {
    let target = format!("socket:[{inode}]");
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let has_socket = std::fs::read_dir(entry.path().join("fd"))
            .ok()?
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == target.as_str()));
        if !has_socket {
            return None;
        }
        let command = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default().trim_end().to_owned();
        Some(PortHolder { pid, command })
    })
}

#[cfg(test)]
mod tests;
