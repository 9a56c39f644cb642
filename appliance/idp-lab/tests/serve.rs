//! `idp-lab serve` as a service manager runs it: in the foreground, answering on its
//! ports and its control socket, refusing a second instance, and draining on SIGTERM or
//! SIGINT within its bound even with a client that never finishes its handshake.

#![allow(clippy::unwrap_used)]

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The bound `serve` must stop within after a signal: the servers' drain (5 s) and a
/// margin for the process to exit.
const STOP_BOUND: Duration = Duration::from_secs(8);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Daemon {
    child: Child,
    home: std::path::PathBuf,
    https: u16,
    dns: u16,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // A failed assertion must not leave the daemon running.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn command(home: &Path, ports: (u16, u16, u16)) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_idp-lab"));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("IDP_LAB_") || k == "RUST_LOG") {
        cmd.env_remove(k);
    }
    cmd.current_dir(home)
        .env("IDP_LAB_HOME", home.join("home"))
        .env("IDP_LAB_NETWORK_HTTP_PORT", ports.0.to_string())
        .env("IDP_LAB_NETWORK_HTTPS_PORT", ports.1.to_string())
        .env("IDP_LAB_NETWORK_DNS_PORT", ports.2.to_string())
        .env("NO_COLOR", "1");
    cmd
}

fn start(home: &Path) -> Daemon {
    let ports = (free_port(), free_port(), free_port());
    let child = command(home, ports)
        .args(["serve", "--name", "svc", "--gateway", "127.0.0.1:9"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let daemon = Daemon { child, home: home.to_path_buf(), https: ports.1, dns: ports.2 };
    let info = daemon.home.join("home/labs/svc/daemon.json");
    let began = Instant::now();
    while !info.exists() {
        assert!(began.elapsed() < Duration::from_secs(15), "serve did not write {}", info.display());
        std::thread::sleep(Duration::from_millis(50));
    }
    daemon
}

/// Sends `signal` and returns how long the daemon took to exit, with its status.
fn signal_and_wait(daemon: &mut Daemon, signal: &str) -> (Duration, std::process::ExitStatus) {
    let pid = daemon.child.id().to_string();
    assert!(Command::new("kill").args([&format!("-{signal}"), &pid]).status().unwrap().success());
    let began = Instant::now();
    loop {
        if let Some(status) = daemon.child.try_wait().unwrap() {
            return (began.elapsed(), status);
        }
        if began.elapsed() > STOP_BOUND * 2 {
            let _ = daemon.child.kill();
            panic!("serve did not stop within {:?} of {signal}", STOP_BOUND * 2);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn serve_answers_refuses_a_second_instance_and_drains_on_sigterm_in_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = start(dir.path());
    let lab_dir = dir.path().join("home/labs/svc");
    let socket = lab_dir.join("daemon.sock");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&socket).unwrap().permissions()) & 0o777;
    assert_eq!(mode, 0o600, "the control socket is the owner's only");

    // It answers DNS and HTTPS.
    let dig = Command::new("dig").args(["@127.0.0.1", "-p", &daemon.dns.to_string(), "+short", "+time=5", "a.10-1-2-3.nip.io"]).output();
    assert_eq!(String::from_utf8_lossy(&dig.unwrap().stdout).trim(), "10.1.2.3");
    let ca = lab_dir.join("ca/ca.crt");
    let https = daemon.https;
    let landing = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(&ca)
        .args(["--resolve", &format!("127-0-0-1.nip.io:{https}:127.0.0.1"), &format!("https://127-0-0-1.nip.io:{https}/")])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&landing.stdout).contains("idp-lab"), "{}", String::from_utf8_lossy(&landing.stderr));

    // A second instance for the same lab refuses and names the first.
    let second = command(dir.path(), (free_port(), free_port(), free_port()))
        .args(["serve", "--name", "svc", "--gateway", "127.0.0.1:9"])
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(10), "{}", String::from_utf8_lossy(&second.stderr));
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains(&format!("already running (pid {}", daemon.child.id())), "{err}");

    // A client that connected and never sent its ClientHello does not hold the shutdown up
    // beyond the bound.
    let _idle = std::net::TcpStream::connect(("127.0.0.1", https)).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let (took, status) = signal_and_wait(&mut daemon, "TERM");
    assert!(status.success(), "{status}");
    assert!(took < STOP_BOUND, "SIGTERM: stopped after {took:?}");
    assert!(!socket.exists(), "the control socket is removed");
    assert_eq!(std::fs::read_to_string(lab_dir.join("daemon.pid")).unwrap_or_default(), "", "the pid file is emptied");

    // SIGINT (Ctrl-C) drains the same way, and the lab can be served again.
    let mut again = start(dir.path());
    let (took, status) = signal_and_wait(&mut again, "INT");
    assert!(status.success() && took < STOP_BOUND, "SIGINT: {status} after {took:?}");
}

#[test]
fn serve_of_a_lab_that_never_came_up_says_how_to_make_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = command(dir.path(), (free_port(), free_port(), free_port())).args(["serve", "--name", "nolab"]).output().unwrap();
    assert_eq!(out.status.code(), Some(11), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("idp-lab up --name nolab"));
}

#[test]
fn a_taken_port_fails_serve_naming_the_port() {
    let dir = tempfile::tempdir().unwrap();
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let out = command(dir.path(), (free_port(), port, free_port()))
        .args(["serve", "--name", "busy", "--gateway", "127.0.0.1:9"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("cannot listen for https on 127.0.0.1:{port}")), "{err}");
}
