use std::os::unix::ffi::OsStringExt;
use std::process::Command;

use super::*;
use crate::child;

const MEMINFO: &str = "\
MemTotal:       16318412 kB
MemFree:         1200000 kB
MemAvailable:    9000000 kB
MemTotalish:           1 kB
HugePages_Total:       7
Weird:                 5 MB
";

#[test]
fn meminfo_values_are_bytes() {
    assert_eq!(meminfo_bytes(MEMINFO, "MemTotal"), Some(16_318_412 * 1024));
    assert_eq!(meminfo_bytes(MEMINFO, "MemAvailable"), Some(9_000_000 * 1024));
    assert_eq!(meminfo_bytes(MEMINFO, "HugePages_Total"), Some(7), "a count has no unit");
    assert_eq!(meminfo_bytes(MEMINFO, "Weird"), None, "an unknown unit");
    assert_eq!(meminfo_bytes(MEMINFO, "SwapTotal"), None);
    assert_eq!(meminfo_bytes("MemTotal: lots kB\n", "MemTotal"), None);
    assert_eq!(meminfo_bytes("MemTotal:\n", "MemTotal"), None);
    assert_eq!(meminfo_bytes(&format!("MemTotal: {} kB\n", u64::MAX), "MemTotal"), None, "overflow");
}

#[test]
fn sysctl_numbers_are_trimmed() {
    assert_eq!(parse_u64("128\n"), Some(128));
    assert_eq!(parse_u64(" 524288 "), Some(524_288));
    assert_eq!(parse_u64("many\n"), None);
    assert_eq!(parse_u64(""), None);
}

#[test]
fn the_cgroup_version_follows_what_is_mounted() {
    let root = tempfile::tempdir().expect("tempdir");
    assert_eq!(cgroup_version(&root.path().join("missing")), CgroupVersion::Unknown);
    assert_eq!(cgroup_version(root.path()), CgroupVersion::Unknown, "nothing mounted");
    std::fs::create_dir(root.path().join("memory")).expect("mkdir");
    assert_eq!(cgroup_version(root.path()), CgroupVersion::V1);
    std::fs::write(root.path().join("cgroup.controllers"), "cpu memory pids\n").expect("write");
    assert_eq!(cgroup_version(root.path()), CgroupVersion::V2);
}

#[test]
fn the_live_cgroup_version_is_the_mounted_file_system() {
    let out = Command::new("stat").args(["-fc", "%T", "/sys/fs/cgroup"]).output().expect("stat");
    let expected = match String::from_utf8_lossy(&out.stdout).trim() {
        "cgroup2fs" => CgroupVersion::V2,
        "tmpfs" => CgroupVersion::V1,
        _ => CgroupVersion::Unknown,
    };
    assert_eq!(HostFacts::read().cgroup_version, expected);
}

#[test]
fn the_live_facts_are_the_hosts() {
    let facts = HostFacts::read();
    let nproc: usize = String::from_utf8_lossy(&Command::new("nproc").output().expect("nproc").stdout).trim().parse().expect("a count");
    assert!((1..=nproc).contains(&facts.cpus), "{} CPUs, nproc says {nproc}", facts.cpus);
    let meminfo = std::fs::read_to_string("/proc/meminfo").expect("meminfo");
    assert_eq!(Some(facts.mem_total_bytes), meminfo_bytes(&meminfo, "MemTotal"));
    assert!(facts.mem_available_bytes > 0 && facts.mem_available_bytes <= facts.mem_total_bytes, "{facts:?}");
    let sysctl = |name: &str| std::fs::read_to_string(format!("/proc/sys/fs/inotify/{name}")).ok().and_then(|t| t.trim().parse().ok());
    assert_eq!(facts.inotify_max_user_instances, sysctl("max_user_instances"));
    assert_eq!(facts.inotify_max_user_watches, sysctl("max_user_watches"));
    assert!(facts.inotify_max_user_instances.is_some() && facts.inotify_max_user_watches.is_some(), "{facts:?}");
}

#[test]
fn free_disk_space_is_what_df_says() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new("df").args(["-B1", "--output=avail"]).arg(dir.path()).output().expect("df");
    let df: u64 = String::from_utf8_lossy(&out.stdout).lines().nth(1).expect("a value").trim().parse().expect("bytes");
    let ours = free_disk_bytes(dir.path()).expect("statvfs");
    // Other builds write meanwhile: allow 256 MiB of drift.
    assert!(ours.abs_diff(df) < 256 << 20, "statvfs says {ours}, df says {df}");
    assert!(ours > 1 << 20, "more than a MiB free here: {ours}");
    assert_eq!(free_disk_bytes(&dir.path().join("missing")), None);
}

#[test]
fn proxy_variables_are_picked_in_any_case_and_sorted() {
    let var = |k: &str, v: &str| (OsString::from(k), OsString::from(v));
    let vars = vec![
        var("PATH", "/usr/bin"),
        var("https_proxy", "http://proxy.test:3128"),
        var("HTTP_PROXY", "http://proxy.test:3128"),
        var("No_Proxy", "localhost,.test"),
        var("ALL_PROXY", "socks5://proxy.test"),
        var("HTTP_PROXY_USER", "me"),
        var("http_proxy", ""),
        (OsString::from("NO_PROXY"), OsString::from_vec(vec![0xff, 0xfe])),
    ];
    let s = |k: &str, v: &str| (k.to_owned(), v.to_owned());
    assert_eq!(
        proxy_vars(vars),
        vec![
            s("HTTP_PROXY", "http://proxy.test:3128"),
            s("No_Proxy", "localhost,.test"),
            s("http_proxy", ""),
            s("https_proxy", "http://proxy.test:3128"),
        ]
    );
}

#[test]
fn the_live_proxy_env_is_the_processs() {
    let out = child::run(
        "facts::tests::print_proxy_env",
        &[("http_proxy", "http://p.test:3128"), ("NO_PROXY", "localhost"), ("HOME", "/nowhere")],
    );
    let expected = vec![("NO_PROXY".to_owned(), "localhost".to_owned()), ("http_proxy".to_owned(), "http://p.test:3128".to_owned())];
    assert!(out.contains(&format!("proxy_env: {expected:?}\n")), "{out}");
}

#[test]
#[ignore = "run in a child process by the_live_proxy_env_is_the_processs"]
fn print_proxy_env() {
    if child::is_child() {
        println!("proxy_env: {:?}", proxy_env());
    }
}

fn facts(instances: Option<u64>, watches: Option<u64>) -> HostFacts {
    HostFacts {
        cpus: 4,
        mem_total_bytes: 1 << 34,
        mem_available_bytes: 1 << 33,
        cgroup_version: CgroupVersion::V2,
        inotify_max_user_instances: instances,
        inotify_max_user_watches: watches,
    }
}

#[test]
fn kinds_inotify_minimums_are_checked_with_the_fix() {
    assert_eq!(MIN_INOTIFY_MAX_USER_INSTANCES, 512);
    assert_eq!(MIN_INOTIFY_MAX_USER_WATCHES, 524_288);
    assert_eq!(inotify_problems(&facts(Some(512), Some(524_288))), Vec::<String>::new(), "the minimums are enough");
    assert_eq!(inotify_problems(&facts(None, None)), Vec::<String>::new(), "unknown is not reported");
    assert_eq!(
        inotify_problems(&facts(Some(511), Some(524_287))),
        vec![
            "fs.inotify.max_user_instances is 511, below the 512 kind and k3d nodes need (pods fail with \"too many open files\"); \
             raise it with `sudo sysctl fs.inotify.max_user_instances=512`, and add `fs.inotify.max_user_instances = 512` \
             to /etc/sysctl.d/99-idp-lab.conf to keep it"
                .to_owned(),
            "fs.inotify.max_user_watches is 524287, below the 524288 kind and k3d nodes need (pods fail with \"too many open files\"); \
             raise it with `sudo sysctl fs.inotify.max_user_watches=524288`, and add `fs.inotify.max_user_watches = 524288` \
             to /etc/sysctl.d/99-idp-lab.conf to keep it"
                .to_owned(),
        ]
    );
    let only_watches = inotify_problems(&facts(Some(8192), Some(8192)));
    assert_eq!(only_watches.len(), 1);
    assert!(only_watches[0].starts_with("fs.inotify.max_user_watches is 8192,"), "{only_watches:?}");
}
