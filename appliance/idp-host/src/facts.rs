//! Host facts for `doctor`: CPUs, memory, cgroups, inotify limits, free disk and the
//! proxy variables, and the limits kind and k3d nodes are known to need.

use std::ffi::OsString;
use std::path::Path;

/// The `fs.inotify.max_user_watches` kind documents as the minimum for its nodes
/// (its "Pod errors due to too many open files" known issue); k3d nodes need the same.
pub const MIN_INOTIFY_MAX_USER_WATCHES: u64 = 524_288;
/// The `fs.inotify.max_user_instances` kind documents as the minimum for its nodes.
pub const MIN_INOTIFY_MAX_USER_INSTANCES: u64 = 512;

/// What the host offers a lab, read from `/proc` and `/sys/fs/cgroup`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFacts {
    /// The CPUs this process may use (affinity and cgroup quota counted); 0 if unknown.
    pub cpus: usize,
    /// `MemTotal` of `/proc/meminfo`, in bytes; 0 if unknown.
    pub mem_total_bytes: u64,
    /// `MemAvailable` of `/proc/meminfo`, in bytes; 0 if unknown.
    pub mem_available_bytes: u64,
    /// The cgroup hierarchy mounted at `/sys/fs/cgroup`.
    pub cgroup_version: CgroupVersion,
    /// `fs.inotify.max_user_instances`, if readable.
    pub inotify_max_user_instances: Option<u64>,
    /// `fs.inotify.max_user_watches`, if readable.
    pub inotify_max_user_watches: Option<u64>,
}

/// The cgroup hierarchy of the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    /// cgroup v1 (or the hybrid layout, whose controllers are v1).
    V1,
    /// The unified cgroup v2 hierarchy.
    V2,
    /// Nothing recognisable is mounted at `/sys/fs/cgroup`.
    Unknown,
}

impl HostFacts {
    /// Reads the facts of this host.
    pub fn read() -> HostFacts {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let sysctl = |name: &str| std::fs::read_to_string(Path::new("/proc/sys/fs/inotify").join(name)).ok().and_then(|t| parse_u64(&t));
        HostFacts {
            cpus: std::thread::available_parallelism().map_or(0, usize::from),
            mem_total_bytes: meminfo_bytes(&meminfo, "MemTotal").unwrap_or(0),
            mem_available_bytes: meminfo_bytes(&meminfo, "MemAvailable").unwrap_or(0),
            cgroup_version: cgroup_version(Path::new("/sys/fs/cgroup")),
            inotify_max_user_instances: sysctl("max_user_instances"),
            inotify_max_user_watches: sysctl("max_user_watches"),
        }
    }
}

/// The value of `key` in `/proc/meminfo` text, in bytes (the file says `kB`, meaning KiB).
fn meminfo_bytes(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (name, rest) = line.split_once(':')?;
        if name != key {
            return None;
        }
        let mut words = rest.split_whitespace();
        let value: u64 = words.next()?.parse().ok()?;
        match words.next() {
            None => Some(value),
            Some("kB") => value.checked_mul(1024),
            Some(_) => None,
        }
    })
}

/// A number in a `/proc/sys` file.
fn parse_u64(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// The cgroup hierarchy mounted at `root`: v2 when it has `cgroup.controllers`, v1 when
/// it has anything else (the controllers' directories), unknown when empty or missing.
fn cgroup_version(root: &Path) -> CgroupVersion {
    if root.join("cgroup.controllers").exists() {
        return CgroupVersion::V2;
    }
    if std::fs::read_dir(root).is_ok_and(|mut entries| entries.next().is_some()) { CgroupVersion::V1 } else { CgroupVersion::Unknown }
}

/// The bytes an unprivileged user can still write on the file system holding `path`
/// (statvfs: available blocks times the fragment size); `None` if it cannot be asked.
#[allow(clippy::useless_conversion, reason = "both are u64 on 64-bit targets only")]
pub fn free_disk_bytes(path: &Path) -> Option<u64> {
    let stat = nix::sys::statvfs::statvfs(path).ok()?;
    u64::from(stat.blocks_available()).checked_mul(u64::from(stat.fragment_size()))
}

/// The proxy variables of this process (`HTTP_PROXY`, `HTTPS_PROXY`, `NO_PROXY`, in any
/// case, e.g. `http_proxy`), as set, sorted by name. A variable that is not UTF-8 is
/// skipped.
pub fn proxy_env() -> Vec<(String, String)> {
    proxy_vars(std::env::vars_os())
}

fn proxy_vars(vars: impl IntoIterator<Item = (OsString, OsString)>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = vars
        .into_iter()
        .filter_map(|(name, value)| Some((name.into_string().ok()?, value.into_string().ok()?)))
        .filter(|(name, _)| ["HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"].iter().any(|p| name.eq_ignore_ascii_case(p)))
        .collect();
    out.sort();
    out
}

/// What stops kind or k3d nodes on this host's inotify limits, one message per limit
/// below the documented minimum, each with the `sysctl` that fixes it. A limit that could
/// not be read is not reported.
pub fn inotify_problems(facts: &HostFacts) -> Vec<String> {
    [
        ("max_user_instances", facts.inotify_max_user_instances, MIN_INOTIFY_MAX_USER_INSTANCES),
        ("max_user_watches", facts.inotify_max_user_watches, MIN_INOTIFY_MAX_USER_WATCHES),
    ]
    .into_iter()
    .filter_map(|(name, value, min)| {
        let value = value.filter(|v| *v < min)?;
        Some(format!(
            "fs.inotify.{name} is {value}, below the {min} kind and k3d nodes need (pods fail with \"too many open files\"); \
             raise it with `sudo sysctl fs.inotify.{name}={min}`, and add `fs.inotify.{name} = {min}` to /etc/sysctl.d/99-idp-lab.conf to keep it"
        ))
    })
    .collect()
}

#[cfg(test)]
mod tests;
