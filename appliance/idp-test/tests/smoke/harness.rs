//! The harness's own promises: no control-plane process outlives a panicking or killed test.

use std::io::{BufRead as _, BufReader};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use futures::FutureExt as _;
use idp_test::poll::{Attempt, poll_until};
use idp_test::{ControlPlane, Need, require};

/// Set in the environment of the child test process that plays the killed test.
const HELPER_ENV: &str = "IDP_TEST_ORPHAN_HELPER";

/// Whether `pid` is gone: absent, or a zombie waiting for a reaper we do not control.
fn is_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // The state follows the parenthesised command name: "pid (comm) S ...".
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    }
}

#[tokio::test]
async fn a_panicking_test_leaves_no_process_and_no_temp_dir() {
    let _testbed = require!(Need::KubeBinaries);
    let seen: Mutex<Option<(Vec<u32>, PathBuf)>> = Mutex::new(None);
    let outcome = AssertUnwindSafe(async {
        let cp = ControlPlane::start().await.expect("the control plane starts");
        *seen.lock().expect("not poisoned") = Some((cp.pids(), cp.dir().to_path_buf()));
        panic!("deliberate panic with a running control plane");
    })
    .catch_unwind()
    .await;
    assert!(outcome.is_err(), "the block panics");
    let (pids, dir) = seen.into_inner().expect("not poisoned").expect("the control plane started");
    assert_eq!(pids.len(), 3, "etcd, kube-apiserver, kube-controller-manager");
    let alive: Vec<u32> = pids.iter().copied().filter(|pid| !is_gone(*pid)).collect();
    assert!(alive.is_empty(), "still running after the panic: {alive:?}");
    assert!(!dir.exists(), "{} survived the panic", dir.display());
}

#[tokio::test]
async fn a_killed_test_process_leaves_no_process_behind() {
    let _testbed = require!(Need::KubeBinaries);
    let exe = std::env::current_exe().expect("the test binary knows its path");
    let mut helper = Command::new(exe)
        .args(["--exact", "harness::orphan_helper", "--ignored", "--nocapture"])
        .env(HELPER_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the helper test starts");
    let stdout = helper.stdout.take().expect("piped stdout");
    // Read the helper's report on a thread: the pipe read blocks.
    let report = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout).lines().map_while(Result::ok).find_map(|line| line.strip_prefix("CONTROL-PLANE ").map(str::to_string))
    });
    let report = tokio::time::timeout(Duration::from_secs(120), report)
        .await
        .expect("the helper reports within 120 s")
        .expect("the reader thread finishes")
        .expect("the helper prints its control plane");
    let mut words = report.split_whitespace();
    let dir = PathBuf::from(words.next().expect("the temp dir"));
    let pids: Vec<u32> = words.map(|w| w.parse().expect("a pid")).collect();
    assert_eq!(pids.len(), 3, "{report}");

    // SIGKILL: no destructor runs in the helper.
    helper.kill().expect("the helper can be killed");
    helper.wait().expect("the helper is reaped");
    let pids_ref = &pids;
    let gone = poll_until("the orphaned control plane to die", Duration::from_secs(15), || async move {
        let alive: Vec<u32> = pids_ref.iter().copied().filter(|pid| !is_gone(*pid)).collect();
        Ok(if alive.is_empty() { Attempt::Done(()) } else { Attempt::Retry(format!("alive: {alive:?}")) })
    })
    .await;
    // The helper could not remove its temp dir; do it for it.
    remove_helper_dir(&dir);
    gone.expect("setpriv --pdeathsig kills the children of a killed test");
}

fn remove_helper_dir(dir: &Path) {
    let is_ours = dir.file_name().is_some_and(|n| n.to_string_lossy().starts_with("idp-test-cp-"));
    if is_ours {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Not a test of its own: the child process of `a_killed_test_process_leaves_no_process_behind`.
/// It starts a control plane, reports it on stdout and waits to be killed.
#[tokio::test]
#[ignore = "helper process of a_killed_test_process_leaves_no_process_behind"]
async fn orphan_helper() {
    if std::env::var_os(HELPER_ENV).is_none() {
        return;
    }
    let cp = ControlPlane::start().await.expect("the control plane starts");
    let pids: Vec<String> = cp.pids().iter().map(ToString::to_string).collect();
    println!("CONTROL-PLANE {} {}", cp.dir().display(), pids.join(" "));
    tokio::time::sleep(Duration::from_secs(300)).await;
}
