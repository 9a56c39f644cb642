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

/// Where the memory a node reports comes from: the `/proc/meminfo` the
/// container sees. k3d (and idp-lab) cap a node's memory by bind-mounting
/// a file with a smaller `MemTotal` read-only over it, and the kubelet's
/// cAdvisor reports exactly that number, so the stand-in reads it too (not
/// sysinfo(2), not the cgroup limit).
pub const MEMINFO: &str = "/proc/meminfo";

/// `MemTotal` of [`MEMINFO`] in KiB (0 when unreadable).
pub fn memory_kib() -> u64 {
    std::fs::read_to_string(MEMINFO).ok().and_then(|text| parse_meminfo_total_kib(&text)).unwrap_or(0)
}

/// The `MemTotal:` line of a meminfo text in KiB (`MemTotal:  2048000 kB`).
/// A value without unit is taken as KiB; other units are converted.
pub fn parse_meminfo_total_kib(text: &str) -> Option<u64> {
    let rest = text.lines().find_map(|l| l.trim_start().strip_prefix("MemTotal:"))?;
    let mut words = rest.split_whitespace();
    let value: u64 = words.next()?.parse().ok()?;
    match words.next().map(str::to_ascii_lowercase).as_deref() {
        None | Some("kb" | "kib") => Some(value),
        Some("b") => Some(value / 1024),
        Some("mb" | "mib") => value.checked_mul(1024),
        Some("gb" | "gib") => value.checked_mul(1024 * 1024),
        Some(_) => None,
    }
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
    fn meminfo_total() {
        let real = "MemTotal:       16314128 kB\nMemFree:         1234567 kB\nMemAvailable:    9876543 kB\n";
        assert_eq!(parse_meminfo_total_kib(real), Some(16_314_128));
        // What k3d writes for `--agents-memory 2g`: MemTotal first, MemFree and MemAvailable equal.
        let capped = "MemTotal: 2097152 kB\nMemFree: 2097152 kB\nMemAvailable: 2097152 kB\n";
        assert_eq!(parse_meminfo_total_kib(capped), Some(2_097_152));
        // MemTotal need not come first; only MemTotal counts.
        assert_eq!(parse_meminfo_total_kib("MemFree: 10 kB\nMemTotal: 20 kB\n"), Some(20));
        assert_eq!(parse_meminfo_total_kib("MemTotal: 3 MB\n"), Some(3072));
        assert_eq!(parse_meminfo_total_kib("MemTotal: 4096\n"), Some(4096));
        assert_eq!(parse_meminfo_total_kib("MemFree: 10 kB\n"), None);
        assert_eq!(parse_meminfo_total_kib("MemTotal: lots kB\n"), None);
        assert_eq!(parse_meminfo_total_kib(""), None);
    }

    #[test]
    fn if_inet6_global_only() {
        let text = "fe800000000000000042acfffe120002 2c 40 20 80     eth0\n20010db8000000000000000000000002 2c 40 00 80     eth0\n00000000000000000000000000000001 01 80 10 80       lo\n";
        assert_eq!(parse_if_inet6(text), ["2001:db8::2".parse::<Ipv6Addr>().expect("ip")]);
    }
}
