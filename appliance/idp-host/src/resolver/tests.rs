//! Setup and teardown on temporary roots for all three resolvers, as data; and, for
//! NetworkManager's dnsmasq, for real: a real `dnsmasq` started the way NetworkManager
//! starts it reads the file setup wrote, and the real `dig` asks it.

use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr, TcpListener, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::process::Child;
use std::time::{Duration, Instant};

use super::*;

const LAB: &str = "demo";
const OTHER: &str = "other";
/// What the stand-in for the host's usual upstream answers: a public address, since
/// dnsmasq's `stop-dns-rebind` drops private and documentation ranges (192.0.2.0/24 too).
const UPSTREAM: &str = "93.184.215.14";

// --- helpers ---------------------------------------------------------------------

/// Whether the host tools a test needs are there. A missing one is a loud skip, and a
/// failure in CI (`CI=true`), as the test bed's skip rule has it.
fn have(test: &str, tools: &[&str]) -> bool {
    let host = Host::new(Path::new("/"));
    let missing: Vec<&str> = tools.iter().copied().filter(|t| host.tool(t).is_none()).collect();
    if missing.is_empty() {
        return true;
    }
    let reason = format!("missing {} (apt-get install -y dnsmasq-base bind9-dnsutils)", missing.join(", "));
    if std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true")) {
        panic!("{test} cannot run in CI: {reason}");
    }
    let _ = io::stderr().lock().write_all(format!("\nSKIPPED: resolver::tests::{test}: {reason}\n").as_bytes());
    if let Some(log) = std::env::var_os("IDP_LAB_SKIP_LOG").filter(|l| !l.is_empty()) {
        let line = format!("resolver::tests::{test}\t{reason}\n");
        let _ = std::fs::OpenOptions::new().create(true).append(true).open(log).and_then(|mut f| f.write_all(line.as_bytes()));
    }
    false
}

fn target(suffix: &str, address: IpAddr, port: u16) -> Target {
    Target { suffix: suffix.to_owned(), address, port }
}

fn lab_target() -> Target {
    target("idp.lab", IpAddr::V4(Ipv4Addr::LOCALHOST), 1053)
}

/// A host under `root` with no tools and the given resolvers.
fn host(root: &Path, kinds: &[Resolver]) -> Host {
    Host::new(root).with_tool_dirs([]).with_resolvers(kinds).with_systemd_version(Some(258))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

/// Every file under `dir`, relative to it, sorted.
fn tree(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.filter_map(|e| e.ok()) {
            let path = entry.path();
            if path.is_dir() {
                walk(base, &path, out);
            } else {
                out.push(path.strip_prefix(base).expect("under base").display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn outcome(outcomes: &[Outcome], kind: Resolver) -> &Outcome {
    outcomes.iter().find(|o| o.resolver == kind).unwrap_or_else(|| panic!("no {kind} in {outcomes:?}"))
}

fn changes(o: &Outcome, root: &Path) -> Vec<(String, Change)> {
    o.files.iter().map(|f| (f.path.strip_prefix(root).expect("under root").display().to_string(), f.change)).collect()
}

/// A directory of stand-in tools: each `(name, body)` a shell script; every script first
/// appends its name and arguments to `calls.log` in the directory.
fn fake_tools(tools: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("calls.log");
    for (name, body) in tools {
        let path = dir.path().join(name);
        std::fs::write(&path, format!("#!/bin/sh\necho \"{name} $*\" >> '{}'\n{body}\n", log.display())).expect("write tool");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    dir
}

fn calls(tools: &tempfile::TempDir) -> Vec<String> {
    std::fs::read_to_string(tools.path().join("calls.log")).unwrap_or_default().lines().map(str::to_owned).collect()
}

// --- the files, as data ------------------------------------------------------------

#[test]
fn files_name_the_lab_and_route_only_the_suffix() {
    let t = lab_target();
    let head = "# Written by idp-lab for the lab `demo`: names under idp.lab go to the lab's DNS server 127.0.0.1:1053.\n\
                # `idp-lab dns teardown --name demo` removes this file; `idp-lab dns setup` rewrites it.\n\
                # idp-lab: lab=demo suffix=idp.lab server=127.0.0.1:1053\n";
    assert_eq!(resolved_delegate(LAB, &t), format!("{head}[Delegate]\nDNS=127.0.0.1:1053\nDomains=~idp.lab\nDefaultRoute=no\n"));
    assert_eq!(resolved_dropin(LAB, &t), format!("{head}[Resolve]\nDNS=127.0.0.1:1053\nDomains=~idp.lab\n"));
    assert_eq!(dnsmasq_conf(LAB, &t), format!("{head}server=/idp.lab/127.0.0.1#1053\nrebind-domain-ok=/idp.lab/\n"));
    assert_eq!(macos_conf(LAB, &t), format!("{head}nameserver 127.0.0.1\nport 1053\n"));

    // IPv6: brackets for systemd, the bare address for dnsmasq and macOS.
    let v6 = target("127-0-0-1.nip.io", IpAddr::V6(Ipv6Addr::LOCALHOST), 5353);
    assert!(resolved_delegate(LAB, &v6).contains("\nDNS=[::1]:5353\n"));
    assert!(resolved_dropin(LAB, &v6).contains("\nDNS=[::1]:5353\n"));
    assert!(dnsmasq_conf(LAB, &v6).contains("\nserver=/127-0-0-1.nip.io/::1#5353\n"));
    assert!(macos_conf(LAB, &v6).contains("\nnameserver ::1\nport 5353\n"));
    assert!(resolved_delegate(LAB, &v6).contains("server=[::1]:5353\n"));

    // Port 53: the address alone, which every systemd reads.
    let p53 = target("idp.lab", IpAddr::V4(Ipv4Addr::new(192, 168, 1, 20)), 53);
    assert!(resolved_dropin(LAB, &p53).contains("\nDNS=192.168.1.20\n"));
    assert!(resolved_delegate(LAB, &p53).contains("\nDNS=192.168.1.20\n"));

    // Every file's marker reads back as the target.
    for text in [resolved_delegate(LAB, &v6), resolved_dropin(LAB, &t), dnsmasq_conf(LAB, &p53), macos_conf(LAB, &t)] {
        let mark = parse_mark(&text).expect("a marker");
        assert_eq!(mark.lab, LAB);
        assert!([&t, &v6, &p53].contains(&&mark.target()), "{mark:?}");
    }
    assert_eq!(parse_mark("server=/idp.lab/127.0.0.1#1053\n"), None);
    assert_eq!(parse_mark("# idp-lab: lab=demo suffix=idp.lab\n"), None, "no server");
}

#[test]
fn reload_commands() {
    assert_eq!(reload_line(Resolver::SystemdResolved), "systemctl restart systemd-resolved.service");
    assert_eq!(reload_line(Resolver::NetworkManagerDnsmasq), "nmcli general reload dns-full");
    assert_eq!(reload_line(Resolver::MacOs), "killall -HUP mDNSResponder");
    assert_eq!(Resolver::ALL.map(Resolver::key), ["systemd-resolved", "networkmanager-dnsmasq", "macos"]);
    assert_eq!(Resolver::NetworkManagerDnsmasq.to_string(), "NetworkManager (dnsmasq)");
}

// --- validation: nothing gets into a path or a configuration line --------------------

#[test]
fn suffixes_that_are_not_dns_names_are_refused_before_anything_is_written() {
    let cases: &[(&str, &str)] = &[
        ("", "empty"),
        ("lab", "one label"),
        ("idp..lab", "empty label"),
        (".idp.lab", "empty label"),
        ("idp.lab.", "trailing dot"),
        ("../../etc/passwd", "`/`"),
        ("idp.lab/x", "`/`"),
        ("idp lab.x", "whitespace"),
        ("idp.lab\nserver=/#/203.0.113.9", "whitespace"),
        ("idp.lab\tx", "whitespace"),
        ("idp.lab\0x", "control"),
        ("idp.lab#53", "`#`"),
        ("*.idp.lab", "`*`"),
        ("idp_lab.x", "`_`"),
        ("IDP.lab", "lowercase (idp.lab)"),
        ("-idp.lab", "begins or ends with `-`"),
        ("idp-.lab", "begins or ends with `-`"),
    ];
    let long_label = format!("{}.lab", "a".repeat(64));
    let long_name = format!("{}lab", "abcdefgh.".repeat(28));
    let mut all: Vec<(String, &str)> = cases.iter().map(|(s, r)| ((*s).to_owned(), *r)).collect();
    all.push((long_label, "at most 63"));
    all.push((long_name, "at most 253"));
    for (suffix, reason) in all {
        let root = tempfile::tempdir().expect("root");
        let Err(err) = host(root.path(), &Resolver::ALL).setup(LAB, &target(&suffix, IpAddr::V4(Ipv4Addr::LOCALHOST), 1053)) else {
            panic!("{suffix:?} must be refused");
        };
        assert!(matches!(err, ResolverError::BadSuffix { .. }), "{suffix:?}: {err}");
        assert!(err.to_string().contains(reason), "{suffix:?}: `{err}` should say {reason}");
        assert_eq!(tree(root.path()), Vec::<String>::new(), "{suffix:?} wrote something");
    }
    for good in ["idp.lab", "127-0-0-1.nip.io", "a.b.c.d", "x1.y-2.z3"] {
        check_suffix(good).unwrap_or_else(|e| panic!("{good}: {e}"));
    }
}

#[test]
fn lab_names_and_servers_are_checked() {
    let root = tempfile::tempdir().expect("root");
    let h = host(root.path(), &Resolver::ALL);
    for lab in ["", "../x", "Demo", "a b", "x/y", "-a", "a-", "demo\n"] {
        let err = h.setup(lab, &lab_target()).expect_err(lab);
        assert!(matches!(err, ResolverError::BadLab { .. }), "{lab:?}: {err}");
        assert!(matches!(h.teardown(lab), Err(ResolverError::BadLab { .. })), "{lab:?}");
        assert!(h.status(lab).iter().all(|p| p.files.is_empty()));
    }
    let bad = [
        (IpAddr::V4(Ipv4Addr::UNSPECIFIED), 1053, "unspecified"),
        (IpAddr::V6(Ipv6Addr::UNSPECIFIED), 1053, "unspecified"),
        (IpAddr::V4(Ipv4Addr::LOCALHOST), 0, "port 0"),
        (IpAddr::V4(Ipv4Addr::new(224, 0, 0, 251)), 5353, "multicast"),
    ];
    for (address, port, reason) in bad {
        let err = h.setup(LAB, &target("idp.lab", address, port)).expect_err(reason);
        assert!(matches!(err, ResolverError::BadServer { .. }), "{err}");
        assert!(err.to_string().contains(reason), "{err}");
    }
    assert_eq!(tree(root.path()), Vec::<String>::new());
}

// --- detection ---------------------------------------------------------------------

#[test]
fn detection_reads_the_root() {
    let root = tempfile::tempdir().expect("root");
    let r = root.path();
    let plain = Host::new(r).with_tool_dirs([]);
    assert_eq!(plain.detect(), Vec::<Resolver>::new());
    assert!(matches!(plain.setup(LAB, &lab_target()), Err(ResolverError::NoResolver { .. })));
    assert_eq!(tree(r), Vec::<String>::new(), "no resolver: nothing written");

    std::fs::create_dir_all(r.join("run/systemd/resolve")).expect("mkdir");
    assert_eq!(detect(r), vec![Resolver::SystemdResolved]);

    let nm = r.join("etc/NetworkManager/NetworkManager.conf");
    write(&nm, "[main]\nplugins=ifupdown,keyfile\n# dns=dnsmasq\n");
    assert_eq!(nm_dns_mode(r), None, "a comment is not a setting");
    write(&nm, "[main]\nplugins=keyfile\n\n[ifupdown]\ndns=dnsmasq\n");
    assert_eq!(nm_dns_mode(r), None, "only [main] counts");
    write(&nm, "[main]\nplugins=keyfile\ndns = dnsmasq # the default here\n");
    assert_eq!(detect(r), vec![Resolver::SystemdResolved, Resolver::NetworkManagerDnsmasq]);

    // A later snippet overrides; one in etc hides one of the same name in usr/lib.
    write(&r.join("usr/lib/NetworkManager/conf.d/20-dns.conf"), "[main]\ndns=systemd-resolved\n");
    assert_eq!(nm_dns_mode(r).as_deref(), Some("systemd-resolved"));
    write(&r.join("etc/NetworkManager/conf.d/20-dns.conf"), "");
    assert_eq!(nm_dns_mode(r).as_deref(), Some("dnsmasq"), "the etc snippet masks the usr/lib one");
    write(&r.join("run/NetworkManager/conf.d/90-off.conf"), "[main]\ndns=default\n");
    assert_eq!(nm_dns_mode(r).as_deref(), Some("default"));
    write(&r.join("etc/NetworkManager/conf.d/99-on.conf"), "[main]\ndns=dnsmasq\n");
    write(&r.join("etc/NetworkManager/conf.d/99-on.conf.bak"), "[main]\ndns=none\n");
    assert_eq!(nm_dns_mode(r).as_deref(), Some("dnsmasq"), "only *.conf snippets, in name order");

    // macOS is found on macOS only; tests force it.
    assert_eq!(detect(r).contains(&Resolver::MacOs), cfg!(target_os = "macos"));
    assert_eq!(host(r, &[Resolver::MacOs]).detect(), vec![Resolver::MacOs]);
}

#[test]
fn the_systemd_version_comes_from_the_shared_library() {
    assert_eq!(shared_library_version("libsystemd-shared-252.so"), Some(252));
    assert_eq!(shared_library_version("libsystemd-shared-256.5-1.fc41.so"), Some(256));
    assert_eq!(shared_library_version("libsystemd-shared-252.so.bak"), None);
    assert_eq!(shared_library_version("libsystemd-core-252.so"), None);
    assert_eq!(parse_systemctl_version("systemd 252 (252.36-1~deb12u1)\n+PAM +AUDIT\n"), Some(252));
    assert_eq!(parse_systemctl_version("systemd 258~rc2 (258~rc2-1)\n"), Some(258));
    assert_eq!(parse_systemctl_version("something else\n"), None);

    let root = tempfile::tempdir().expect("root");
    let r = root.path();
    assert_eq!(Host::new(r).systemd_version(), None, "nothing under the root, and no probe off /");
    write(&r.join("usr/lib/x86_64-linux-gnu/systemd/libsystemd-shared-252.so"), "");
    assert_eq!(Host::new(r).systemd_version(), Some(252));
    write(&r.join("usr/lib/systemd/libsystemd-shared-258.1-1.so"), "");
    assert_eq!(Host::new(r).systemd_version(), Some(258));
    assert_eq!(Host::new(r).with_systemd_version(None).systemd_version(), None);
}

/// The library scan agrees with the host's own `systemctl --version`.
#[test]
fn the_systemd_version_of_this_host() {
    if !have("the_systemd_version_of_this_host", &["systemctl"]) {
        return;
    }
    let host = Host::new(Path::new("/"));
    let out = Command::new(host.tool("systemctl").expect("systemctl")).arg("--version").output().expect("systemctl --version");
    let expected = parse_systemctl_version(&String::from_utf8_lossy(&out.stdout));
    assert!(expected.is_some(), "cannot read {:?}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(host.systemd_version(), expected);
}

// --- systemd-resolved (as data) ------------------------------------------------------

#[test]
fn resolved_gets_a_delegate_from_258_and_a_dropin_before() {
    let root = tempfile::tempdir().expect("root");
    let r = root.path();
    let delegate = "etc/systemd/dns-delegate.d/idp-lab-demo.dns-delegate".to_owned();
    let dropin = "etc/systemd/resolved.conf.d/idp-lab-demo.conf".to_owned();
    let t = lab_target();

    let old = host(r, &[Resolver::SystemdResolved]).with_systemd_version(Some(252));
    let done = old.setup(LAB, &t).expect("setup on 252");
    let o = outcome(&done.resolvers, Resolver::SystemdResolved);
    assert_eq!(changes(o, r), [(dropin.clone(), Change::Created)]);
    assert_eq!(o.reload, Reload::Skipped { command: "systemctl restart systemd-resolved.service".to_owned() });
    assert!(o.notes.iter().any(|n| n.contains("systemd 252 has no DNS delegates")), "{:?}", o.notes);
    assert_eq!(read(&r.join(&dropin)), resolved_dropin(LAB, &t));
    assert!(!r.join(&delegate).exists());

    // The host's own global servers are pointed out.
    write(&r.join("etc/systemd/resolved.conf"), "[Resolve]\nDNS=1.1.1.1 9.9.9.9\n#DNS=8.8.8.8\n");
    let again = old.setup(LAB, &t).expect("setup again");
    let o = outcome(&again.resolvers, Resolver::SystemdResolved);
    assert_eq!(changes(o, r), [(dropin.clone(), Change::Unchanged)]);
    assert_eq!(o.reload, Reload::NotNeeded);
    assert!(o.notes.iter().any(|n| n.contains("also lists 1.1.1.1 9.9.9.9:") && !n.contains("8.8.8.8")), "{:?}", o.notes);

    // After an upgrade to 258 the delegate replaces the drop-in.
    let new = host(r, &[Resolver::SystemdResolved]).with_systemd_version(Some(258));
    let done = new.setup(LAB, &t).expect("setup on 258");
    let o = outcome(&done.resolvers, Resolver::SystemdResolved);
    assert_eq!(changes(o, r), [(delegate.clone(), Change::Created), (dropin.clone(), Change::Removed)]);
    assert!(o.notes.is_empty(), "{:?}", o.notes);
    assert_eq!(read(&r.join(&delegate)), resolved_delegate(LAB, &t));
    assert!(!r.join(&dropin).exists());

    // Unknown version: both, with a note.
    let unknown = host(r, &[Resolver::SystemdResolved]).with_systemd_version(None);
    let done = unknown.setup(LAB, &t).expect("setup, version unknown");
    let o = outcome(&done.resolvers, Resolver::SystemdResolved);
    assert_eq!(changes(o, r), [(delegate.clone(), Change::Unchanged), (dropin.clone(), Change::Created)]);
    assert!(o.notes.iter().any(|n| n.contains("unknown")), "{:?}", o.notes);

    let gone = unknown.teardown(LAB).expect("teardown");
    let o = outcome(&gone.resolvers, Resolver::SystemdResolved);
    assert_eq!(changes(o, r), [(delegate.clone(), Change::Removed), (dropin.clone(), Change::Removed)]);
    assert_eq!(tree(r), ["etc/systemd/resolved.conf"], "the host's own file stays");
}

#[test]
fn an_old_resolved_needs_port_53() {
    let root = tempfile::tempdir().expect("root");
    let r = root.path();
    let h = host(r, &[Resolver::SystemdResolved, Resolver::NetworkManagerDnsmasq]).with_systemd_version(Some(245));
    let err = h.setup(LAB, &lab_target()).expect_err("port 1053 on systemd 245");
    assert!(matches!(err, ResolverError::Unsupported { resolver: Resolver::SystemdResolved, .. }), "{err}");
    assert!(err.to_string().contains("systemd 245") && err.to_string().contains("246"), "{err}");
    assert_eq!(tree(r), Vec::<String>::new(), "refused before anything was written, dnsmasq's file too");

    let t = target("idp.lab", IpAddr::V4(Ipv4Addr::LOCALHOST), 53);
    h.setup(LAB, &t).expect("port 53 works everywhere");
    assert!(read(&r.join("etc/systemd/resolved.conf.d/idp-lab-demo.conf")).contains("\nDNS=127.0.0.1\n"));
}

// --- NetworkManager's dnsmasq (as data; the real one below) ---------------------------

#[test]
fn setup_twice_changes_nothing_and_teardown_of_nothing_succeeds() {
    let root = tempfile::tempdir().expect("root");
    let r = root.path();
    let h = host(r, &[Resolver::NetworkManagerDnsmasq]);
    let file = "etc/NetworkManager/dnsmasq.d/idp-lab-demo.conf".to_owned();

    let gone = h.teardown(LAB).expect("teardown of nothing");
    assert!(!gone.changed());
    assert_eq!(gone.resolvers.iter().map(|o| o.resolver).collect::<Vec<_>>(), Resolver::ALL);
    assert!(gone.resolvers.iter().all(|o| o.files.is_empty() && o.reload == Reload::NotNeeded));

    let first = h.setup(LAB, &lab_target()).expect("setup");
    assert!(first.changed());
    assert_eq!(changes(outcome(&first.resolvers, Resolver::NetworkManagerDnsmasq), r), [(file.clone(), Change::Created)]);
    let mode = std::fs::metadata(r.join(&file)).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode, 0o644);
    let before = read(&r.join(&file));
    let mtime = std::fs::metadata(r.join(&file)).expect("stat").modified().expect("mtime");

    let second = h.setup(LAB, &lab_target()).expect("setup again");
    assert!(!second.changed());
    assert_eq!(changes(outcome(&second.resolvers, Resolver::NetworkManagerDnsmasq), r), [(file.clone(), Change::Unchanged)]);
    assert_eq!(outcome(&second.resolvers, Resolver::NetworkManagerDnsmasq).reload, Reload::NotNeeded);
    assert_eq!(read(&r.join(&file)), before);
    assert_eq!(std::fs::metadata(r.join(&file)).expect("stat").modified().expect("mtime"), mtime, "not rewritten");

    // Another port: the file is replaced.
    let moved = h.setup(LAB, &target("idp.lab", IpAddr::V4(Ipv4Addr::LOCALHOST), 1054)).expect("setup, new port");
    assert_eq!(changes(outcome(&moved.resolvers, Resolver::NetworkManagerDnsmasq), r), [(file.clone(), Change::Replaced)]);
    assert!(read(&r.join(&file)).contains("server=/idp.lab/127.0.0.1#1054\n"));
    assert_eq!(tree(r), [file.as_str()], "no temporary file left");

    let gone = h.teardown(LAB).expect("teardown");
    assert_eq!(changes(outcome(&gone.resolvers, Resolver::NetworkManagerDnsmasq), r), [(file.clone(), Change::Removed)]);
    assert_eq!(tree(r), Vec::<String>::new());
    assert!(!h.teardown(LAB).expect("teardown again").changed());
}

#[test]
fn teardown_removes_only_the_labs_own_files() {
    let root = tempfile::tempdir().expect("root");
    let r = root.path();
    let h = host(r, &Resolver::ALL);
    let foreign = [
        ("etc/NetworkManager/dnsmasq.d/corp.conf", "server=/corp.example/10.0.0.53\n"),
        ("etc/NetworkManager/dnsmasq.d/idp-lab-hand-made.conf", "server=/hand.made/10.0.0.54\n"),
        ("etc/resolver/corp.example", "nameserver 10.0.0.53\n"),
        ("etc/systemd/resolved.conf.d/local.conf", "[Resolve]\nDNSSEC=no\n"),
    ];
    for (path, text) in foreign {
        write(&r.join(path), text);
    }
    h.setup(LAB, &lab_target()).expect("setup demo");
    h.setup(OTHER, &target("other.lab", IpAddr::V4(Ipv4Addr::LOCALHOST), 1054)).expect("setup other");
    // In the order of Resolver::ALL.
    let ours =
        ["etc/systemd/dns-delegate.d/idp-lab-demo.dns-delegate", "etc/NetworkManager/dnsmasq.d/idp-lab-demo.conf", "etc/resolver/idp.lab"];
    for path in ours {
        assert!(r.join(path).is_file(), "{path}");
    }

    let status = h.status(LAB);
    assert_eq!(status.len(), 3);
    for placement in &status {
        assert!(placement.detected);
        assert_eq!(placement.files.len(), 1, "{placement:?}");
        assert_eq!(placement.target.as_ref(), Some(&lab_target()));
    }

    let gone = h.teardown(LAB).expect("teardown demo");
    assert!(gone.changed());
    let removed: Vec<String> = gone.resolvers.iter().flat_map(|o| changes(o, r)).map(|(p, c)| format!("{p} {c:?}")).collect();
    assert_eq!(removed, ours.map(|p| format!("{p} Removed")));
    let mut left: Vec<String> = foreign.iter().map(|(p, _)| (*p).to_owned()).collect();
    left.extend([
        "etc/NetworkManager/dnsmasq.d/idp-lab-other.conf".to_owned(),
        "etc/resolver/other.lab".to_owned(),
        "etc/systemd/dns-delegate.d/idp-lab-other.dns-delegate".to_owned(),
    ]);
    left.sort();
    assert_eq!(tree(r), left);
    for (path, text) in foreign {
        assert_eq!(read(&r.join(path)), text, "{path} untouched");
    }
    assert!(h.status(LAB).iter().all(|p| p.files.is_empty() && p.target.is_none()));
    assert!(h.status(OTHER).iter().all(|p| p.files.len() == 1));
}

#[test]
fn teardown_covers_resolvers_the_host_no_longer_uses() {
    let root = tempfile::tempdir().expect("root");
    let r = root.path();
    host(r, &[Resolver::NetworkManagerDnsmasq]).setup(LAB, &lab_target()).expect("setup");
    // The host now uses nothing idp-lab knows; teardown still finds the file.
    let gone = Host::new(r).with_tool_dirs([]).with_reload(true).teardown(LAB).expect("teardown");
    let o = outcome(&gone.resolvers, Resolver::NetworkManagerDnsmasq);
    assert_eq!(o.files.len(), 1);
    assert_eq!(o.reload, Reload::NotRunning, "no reload for a resolver that is not running");
    assert_eq!(tree(r), Vec::<String>::new());
}

#[test]
fn files_idp_lab_did_not_write_are_never_overwritten() {
    let root = tempfile::tempdir().expect("root");
    let r = root.path();
    let h = host(r, &[Resolver::NetworkManagerDnsmasq, Resolver::MacOs]);
    let hand = r.join("etc/resolver/idp.lab");
    write(&hand, "nameserver 10.1.1.1\n");

    let err = h.setup(LAB, &lab_target()).expect_err("a hand-made /etc/resolver/idp.lab");
    assert!(matches!(&err, ResolverError::NotOurs { resolver: Resolver::MacOs, path, .. } if *path == hand), "{err}");
    assert!(err.to_string().contains(&hand.display().to_string()), "the message names the path: {err}");
    assert_eq!(read(&hand), "nameserver 10.1.1.1\n");
    assert_eq!(tree(r), ["etc/resolver/idp.lab"], "refused before dnsmasq's file was written");
    assert!(!h.teardown(LAB).expect("teardown").changed(), "teardown leaves it alone");
    assert_eq!(read(&hand), "nameserver 10.1.1.1\n");

    // The same at dnsmasq's path, under our own file name.
    std::fs::remove_file(&hand).expect("rm");
    let named = r.join("etc/NetworkManager/dnsmasq.d/idp-lab-demo.conf");
    write(&named, "server=/idp.lab/10.1.1.1\n");
    let err = h.setup(LAB, &lab_target()).expect_err("a hand-made idp-lab-demo.conf");
    assert!(matches!(&err, ResolverError::NotOurs { path, .. } if *path == named), "{err}");
    assert_eq!(read(&named), "server=/idp.lab/10.1.1.1\n");
    assert!(!hand.exists());
}

#[test]
fn one_suffix_belongs_to_one_lab() {
    let root = tempfile::tempdir().expect("root");
    let r = root.path();
    let h = host(r, &[Resolver::NetworkManagerDnsmasq, Resolver::MacOs]);
    h.setup(OTHER, &lab_target()).expect("setup other");
    let before = tree(r);
    let err = h.setup(LAB, &lab_target()).expect_err("idp.lab is the other lab's");
    assert!(matches!(&err, ResolverError::Taken { lab, .. } if lab == OTHER), "{err}");
    assert!(err.to_string().contains("idp-lab dns teardown --name other"), "{err}");
    assert_eq!(tree(r), before);
}

#[test]
fn a_new_suffix_replaces_the_old_one_on_macos() {
    let root = tempfile::tempdir().expect("root");
    let r = root.path();
    let h = host(r, &[Resolver::MacOs]);
    h.setup(LAB, &lab_target()).expect("setup");
    assert_eq!(read(&r.join("etc/resolver/idp.lab")), macos_conf(LAB, &lab_target()));
    let next = target("127-0-0-1.nip.io", IpAddr::V4(Ipv4Addr::LOCALHOST), 1053);
    let done = h.setup(LAB, &next).expect("setup, new suffix");
    assert_eq!(
        changes(outcome(&done.resolvers, Resolver::MacOs), r),
        [("etc/resolver/127-0-0-1.nip.io".to_owned(), Change::Created), ("etc/resolver/idp.lab".to_owned(), Change::Removed)]
    );
    assert_eq!(tree(r), ["etc/resolver/127-0-0-1.nip.io"], "no temporary file in etc/resolver or etc");
    assert_eq!(h.status(LAB)[2].target.as_ref(), Some(&next));
}

// --- reloads, with stand-in tools ---------------------------------------------------------

#[test]
fn reloads_run_only_when_something_changed() {
    let tools = fake_tools(&[("systemctl", "exit 0"), ("nmcli", "exit 0"), ("killall", "exit 0")]);
    let root = tempfile::tempdir().expect("root");
    let r = root.path();
    let h = host(r, &Resolver::ALL).with_tool_dirs([tools.path().to_path_buf()]).with_reload(true);

    let done = h.setup(LAB, &lab_target()).expect("setup");
    assert_eq!(
        calls(&tools),
        ["systemctl restart systemd-resolved.service", "nmcli general reload dns-full", "killall -HUP mDNSResponder"]
    );
    assert_eq!(
        outcome(&done.resolvers, Resolver::NetworkManagerDnsmasq).reload,
        Reload::Done { command: "nmcli general reload dns-full".to_owned() }
    );

    h.setup(LAB, &lab_target()).expect("setup again");
    assert_eq!(calls(&tools).len(), 3, "nothing changed, nothing reloaded: {:?}", calls(&tools));

    h.teardown(LAB).expect("teardown");
    assert_eq!(calls(&tools).len(), 6, "{:?}", calls(&tools));
    h.teardown(LAB).expect("teardown again");
    assert_eq!(calls(&tools).len(), 6, "{:?}", calls(&tools));

    // Off /, reloads are reported, not run.
    let quiet = host(r, &Resolver::ALL).with_tool_dirs([tools.path().to_path_buf()]);
    let done = quiet.setup(LAB, &lab_target()).expect("setup without reloads");
    assert_eq!(outcome(&done.resolvers, Resolver::MacOs).reload, Reload::Skipped { command: "killall -HUP mDNSResponder".to_owned() });
    assert_eq!(calls(&tools).len(), 6);
}

#[test]
fn a_failing_or_missing_reload_tool_is_an_error_that_says_what_to_run() {
    let tools = fake_tools(&[("nmcli", "echo 'Error: Not authorized to reload' >&2; exit 1")]);
    let root = tempfile::tempdir().expect("root");
    let r = root.path();
    let h = host(r, &[Resolver::NetworkManagerDnsmasq]).with_tool_dirs([tools.path().to_path_buf()]).with_reload(true);
    let err = h.setup(LAB, &lab_target()).expect_err("nmcli fails");
    let text = err.to_string();
    assert!(matches!(err, ResolverError::Failed { .. }), "{text}");
    assert!(text.contains("nmcli general reload dns-full") && text.contains("Not authorized") && text.contains("sudo"), "{text}");
    assert!(r.join("etc/NetworkManager/dnsmasq.d/idp-lab-demo.conf").is_file(), "the file is in place, as the message says");

    let empty = tempfile::tempdir().expect("empty");
    let h = host(r, &[Resolver::NetworkManagerDnsmasq]).with_tool_dirs([empty.path().to_path_buf()]).with_reload(true);
    let err = h.teardown(LAB).expect_err("no nmcli");
    assert!(matches!(&err, ResolverError::ToolMissing { tool, .. } if tool == "nmcli"), "{err}");
    assert!(err.to_string().contains("run `nmcli general reload dns-full`"), "{err}");
}

// --- the real dnsmasq ---------------------------------------------------------------------

/// A real `dnsmasq` on a free port, killed when dropped.
struct Dnsmasq {
    child: Child,
    listen: IpAddr,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Dnsmasq {
    /// Starts dnsmasq on `listen` with `args`, and waits until `probe` resolves to
    /// `expect`.
    fn start(listen: IpAddr, args: &[String], probe: &str, expect: &str) -> Dnsmasq {
        let binary = Host::new(Path::new("/")).tool("dnsmasq").expect("dnsmasq");
        for _ in 0..10 {
            let port = free_port(listen);
            let dir = tempfile::tempdir().expect("tempdir");
            let log = dir.path().join("queries.log");
            let mut command = Command::new(&binary);
            command
                .args(["--keep-in-foreground", "--conf-file=/dev/null", "--no-hosts", "--no-resolv", "--bind-interfaces", "--log-queries"])
                .arg("--pid-file=")
                .arg(format!("--listen-address={listen}"))
                .arg(format!("--port={port}"))
                .arg(format!("--log-facility={}", log.display()))
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            if nix::unistd::geteuid().is_root() {
                // Stay root instead of switching to a user that may not exist here.
                command.arg("--user=root");
            }
            let child = command.spawn().expect("start dnsmasq");
            let mut server = Dnsmasq { child, listen, port, log, _dir: dir };
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if server.child.try_wait().expect("try_wait").is_some() {
                    break;
                }
                if server.dig(probe) == expect {
                    return server;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("dnsmasq {args:?} did not start answering {probe} with {expect}");
    }

    /// `dig +short` for the A record of `name`, trimmed.
    fn dig(&self, name: &str) -> String {
        let out = Command::new("dig")
            .arg(format!("@{}", self.listen))
            .args(["-p", &self.port.to_string(), name, "A", "+short", "+time=2", "+tries=1"])
            .output()
            .expect("run dig");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn queries(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// A port free for both UDP and TCP on `listen` (dnsmasq binds both).
fn free_port(listen: IpAddr) -> u16 {
    loop {
        let udp = UdpSocket::bind((listen, 0)).expect("bind udp");
        let port = udp.local_addr().expect("addr").port();
        if TcpListener::bind((listen, port)).is_ok() {
            return port;
        }
    }
}

/// The stand-in for NetworkManager's dnsmasq: its options for the DNS plugin, with the
/// upstream it would get over D-Bus given as `--server`, and the directory setup wrote.
fn front(conf_dir: &Path, upstream: &Dnsmasq, extra: &[&str]) -> Dnsmasq {
    let mut args =
        vec![format!("--conf-dir={}", conf_dir.display()), format!("--server=127.0.0.1#{}", upstream.port), "--cache-size=0".to_owned()];
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    Dnsmasq::start(IpAddr::V4(Ipv4Addr::LOCALHOST), &args, "www.example.com", UPSTREAM)
}

#[test]
fn networkmanager_dnsmasq_sends_only_the_lab_suffix_to_the_lab() {
    if !have("networkmanager_dnsmasq_sends_only_the_lab_suffix_to_the_lab", &["dnsmasq", "dig"]) {
        return;
    }
    let v4 = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
    // The lab's DNS server: the lab's names, and a tell-tale answer for anything else.
    let lab = Dnsmasq::start(
        v4,
        &["--address=/idp.lab/127.0.0.1".to_owned(), "--address=/#/192.0.2.66".to_owned()],
        "argocd.idp.lab",
        "127.0.0.1",
    );
    // Another lab, on IPv6 loopback.
    let other = Dnsmasq::start(
        v6,
        &["--address=/other.lab/10.9.8.7".to_owned(), "--address=/#/192.0.2.77".to_owned()],
        "svc.other.lab",
        "10.9.8.7",
    );
    // The host's usual upstream: everything, and one private answer.
    let upstream = Dnsmasq::start(
        v4,
        &[format!("--address=/#/{UPSTREAM}"), "--address=/private.example/10.1.1.1".to_owned()],
        "www.example.com",
        UPSTREAM,
    );

    let root = tempfile::tempdir().expect("root");
    let r = root.path();
    let h = Host::new(r).with_tool_dirs([]).with_resolvers(&[Resolver::NetworkManagerDnsmasq]);
    h.setup(LAB, &target("idp.lab", v4, lab.port)).expect("setup demo");
    h.setup(OTHER, &target("other.lab", v6, other.port)).expect("setup other");

    let conf_dir = r.join("etc/NetworkManager/dnsmasq.d");
    let nm = front(&conf_dir, &upstream, &[]);
    assert_eq!(nm.dig("argocd.idp.lab"), "127.0.0.1", "the lab's name goes to the lab");
    assert_eq!(nm.dig("grafana.apps.idp.lab"), "127.0.0.1");
    assert_eq!(nm.dig("svc.other.lab"), "10.9.8.7", "an IPv6 server works");
    assert_eq!(nm.dig("www.example.com"), UPSTREAM, "another name goes upstream");
    assert_eq!(nm.dig("idp.lab.example.com"), UPSTREAM, "a name that only contains the suffix is not the lab's");
    assert_eq!(nm.dig("notidp.lab"), UPSTREAM, "a name that only ends like the suffix is not the lab's");
    let seen = lab.queries();
    assert!(seen.contains("argocd.idp.lab"), "the lab's server saw its name: {seen}");
    for name in ["www.example.com", "idp.lab.example.com", "notidp.lab", "svc.other.lab"] {
        assert!(!seen.contains(name), "the lab's server saw {name}: {seen}");
    }
    drop(nm);

    // With rebind protection on, the lab's loopback answers still pass, and others do not.
    let strict = front(&conf_dir, &upstream, &["--stop-dns-rebind"]);
    assert_eq!(strict.dig("private.example"), "", "stop-dns-rebind is on");
    assert_eq!(strict.dig("argocd.idp.lab"), "127.0.0.1", "rebind-domain-ok lets the lab's answer through");
    drop(strict);
    // Without that line the same dnsmasq drops it.
    let bare = tempfile::tempdir().expect("conf dir");
    std::fs::write(bare.path().join("lab.conf"), format!("server=/idp.lab/127.0.0.1#{}\n", lab.port)).expect("write");
    let strict = front(bare.path(), &upstream, &["--stop-dns-rebind"]);
    assert_eq!(strict.dig("argocd.idp.lab"), "", "without rebind-domain-ok the lab's loopback answer is dropped");
    drop(strict);

    // Teardown: the next dnsmasq (NetworkManager restarts it) sends the name upstream.
    h.teardown(LAB).expect("teardown demo");
    let nm = front(&conf_dir, &upstream, &[]);
    assert_eq!(nm.dig("argocd.idp.lab"), UPSTREAM, "after teardown the name is not the lab's");
    assert_eq!(nm.dig("svc.other.lab"), "10.9.8.7", "the other lab stays");
}
