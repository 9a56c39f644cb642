//! Tests that need a process of their own (another environment, another user) run one
//! test of this test binary again in a child process.

use std::process::Command;

/// The variable that tells a child test it is the child.
pub(crate) const CHILD: &str = "IDP_HOST_TEST_CHILD";

/// Runs the ignored test `name` of this test binary in a child process whose
/// environment is only `envs` (plus [`CHILD`]), and returns its stdout after checking
/// that it passed and really ran.
pub(crate) fn run(name: &str, envs: &[(&str, &str)]) -> String {
    let exe = std::env::current_exe().expect("the test binary");
    let out = Command::new(exe)
        .args(["--exact", name, "--ignored", "--nocapture", "--test-threads=1"])
        .env_clear()
        .env(CHILD, "1")
        .envs(envs.iter().copied())
        .output()
        .expect("run the child test");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child test {name} failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("1 passed"), "child test {name} did not run:\n{stdout}");
    stdout
}

/// Whether this process is the child a parent test started.
pub(crate) fn is_child() -> bool {
    std::env::var_os(CHILD).is_some()
}
