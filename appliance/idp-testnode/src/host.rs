//! Facts about the container the node runs in: hostname, IP addresses and the
//! numbers a kubelet would report. All best effort, read from `/proc`.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, UdpSocket};

/// The UTS hostname (Docker sets it to the container id or `--hostname`).
pub fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .find(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// Non-loopback addresses of this network namespace; the address of the
/// default route comes first, IPv4 before IPv6.
pub fn addresses() -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::new();
    let mut push = |ip: IpAddr| {
        if !ip.is_loopback() && !ip.is_unspecified() && !out.contains(&ip) {
            out.push(ip);
        }
    };
    // Connecting a UDP socket sends nothing but selects the source address
    // of the default route.
    if let Some(ip) = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
        .and_then(|s| s.connect((Ipv4Addr::new(10, 255, 255, 254), 9)).map(|()| s))
        .and_then(|s| s.local_addr())
        .ok()
        .map(|a| a.ip())
    {
        push(ip);
    }
    if let Ok(text) = std::fs::read_to_string("/proc/net/fib_trie") {
        for ip in parse_fib_trie(&text) {
            push(IpAddr::V4(ip));
        }
    }
    if let Ok(text) = std::fs::read_to_string("/proc/net/if_inet6") {
        for ip in parse_if_inet6(&text) {
            push(IpAddr::V6(ip));
        }
    }
    out
}

/// Local host addresses (`/32 host LOCAL`) from `/proc/net/fib_trie`.
fn parse_fib_trie(text: &str) -> Vec<Ipv4Addr> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    let mut last: Option<Ipv4Addr> = None;
    for line in text.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("|-- ") {
            last = rest.trim().parse().ok();
        } else if t.starts_with("/32 host LOCAL")
            && let Some(ip) = last
            && seen.insert(ip)
        {
            out.push(ip);
        }
    }
    out
}

/// Global-scope addresses from `/proc/net/if_inet6`.
fn parse_if_inet6(text: &str) -> Vec<Ipv6Addr> {
    text.lines()
        .filter_map(|line| {
            let mut cols = line.split_whitespace();
            let hex = cols.next()?;
            let scope = cols.nth(2)?;
            if scope != "00" || hex.len() != 32 {
                return None;
            }
            let bits = u128::from_str_radix(hex, 16).ok()?;
            Some(Ipv6Addr::from(bits))
        })
        .collect()
}

/// The architecture as Kubernetes names it.
pub fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "s390x" => "s390x",
        "powerpc64" => "ppc64le",
        "riscv64" => "riscv64",
        other => other,
    }
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// Kernel release (`uname -r`).
pub fn kernel_version() -> String {
    read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_default()
}

/// Boot id of the (shared) kernel.
pub fn boot_id() -> String {
    read_trimmed("/proc/sys/kernel/random/boot_id").unwrap_or_default()
}

/// `/etc/machine-id` when the image has one.
pub fn machine_id() -> String {
    read_trimmed("/etc/machine-id").unwrap_or_default()
}

/// Usable CPUs.
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// `MemTotal` in KiB.
pub fn memory_kib() -> u64 {
    read_trimmed("/proc/meminfo")
        .and_then(|m| m.lines().find_map(|l| l.strip_prefix("MemTotal:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fib_trie_local_addresses() {
        let text = "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 0.0.0.0\n        /0 universe UNICAST\n     +-- 127.0.0.0/8 2 0 2\n           |-- 127.0.0.1\n              /32 host LOCAL\n     |-- 172.18.0.2\n        /32 host LOCAL\n     |-- 172.18.255.255\n        /32 link BROADCAST\nLocal:\n     |-- 172.18.0.2\n        /32 host LOCAL\n";
        assert_eq!(parse_fib_trie(text), [Ipv4Addr::new(127, 0, 0, 1), Ipv4Addr::new(172, 18, 0, 2)]);
    }

    #[test]
    fn if_inet6_global_only() {
        let text = "fe800000000000000042acfffe120002 2c 40 20 80     eth0\n20010db8000000000000000000000002 2c 40 00 80     eth0\n00000000000000000000000000000001 01 80 10 80       lo\n";
        assert_eq!(parse_if_inet6(text), ["2001:db8::2".parse::<Ipv6Addr>().expect("ip")]);
    }
}
