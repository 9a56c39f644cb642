//! The binary as a user meets it: help, profiles, config errors, render, images.

use assert_cmd::Command;
use predicates::prelude::*;
use std::path::Path;

/// Variables of the test's own environment that must not reach the binary.
fn leaking_vars() -> impl Iterator<Item = String> {
    std::env::vars().map(|(k, _)| k).filter(|k| k.starts_with("IDP_LAB_") || k == "RUST_LOG")
}

/// The binary in an isolated home and an empty working folder, with no IDP_LAB_* leaking in.
fn idp_lab(dir: &Path) -> Command {
    let mut cmd = Command::cargo_bin("idp-lab").expect("binary");
    for k in leaking_vars() {
        cmd.env_remove(k);
    }
    cmd.current_dir(dir).env("IDP_LAB_HOME", dir.join("home")).env("NO_COLOR", "1");
    cmd
}

fn stdout(cmd: &mut Command) -> String {
    let out = cmd.output().expect("runs");
    assert!(out.status.success(), "failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn help_lists_only_working_commands() {
    let dir = tempfile::tempdir().expect("tempdir");
    insta::assert_snapshot!(stdout(idp_lab(dir.path()).arg("--help")));
}

#[test]
fn profiles_list_shows_the_five_profiles() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = stdout(idp_lab(dir.path()).args(["profiles", "list"]));
    insta::assert_snapshot!(out);
    let json: serde_json::Value =
        serde_json::from_str(&stdout(idp_lab(dir.path()).args(["profiles", "list", "-o", "json"]))).expect("json");
    let names: Vec<&str> = json.as_array().expect("array").iter().filter_map(|p| p["name"].as_str()).collect();
    assert_eq!(names, ["airgap", "full", "minimal", "standard", "workshop"]);
}

#[test]
fn profiles_show_resolves_config_file_and_environment() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("idp-lab.toml"), "[lab]\nname = \"demo\"\n").expect("write");
    let out = stdout(idp_lab(dir.path()).args(["profiles", "show", "workshop", "-o", "json"]).env("IDP_LAB_NETWORK_HTTPS_PORT", "9443"));
    let c: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(c["lab"]["name"], "demo");
    assert_eq!(c["lab"]["profile"], "workshop");
    assert_eq!(c["network"]["https_port"], 9443);
    assert_eq!(c["cluster"]["agents"], 1);
    idp_lab(dir.path()).args(["profiles", "show", "ful"]).assert().code(2).stderr(predicate::str::contains("did you mean \"full\"?"));
}

#[test]
fn config_check_reports_three_positioned_errors_and_exits_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[cluster]\nimagee = \"rancher/k3s:v1.33.4-k3s1\"\nagents = \"two\"\n\n[network]\nhttps_port = 70000\n")
        .expect("write");
    let out = idp_lab(dir.path()).args(["config", "check", "bad.toml"]).output().expect("runs");
    assert_eq!(out.status.code(), Some(2));
    insta::assert_snapshot!(String::from_utf8_lossy(&out.stderr));
    let out = idp_lab(dir.path()).args(["config", "check", "bad.toml", "-o", "json"]).output().expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json report");
    let lines: Vec<u64> = report["problems"].as_array().expect("problems").iter().filter_map(|p| p["line"].as_u64()).collect();
    assert_eq!(lines, [2, 3, 6]);
    std::fs::write(&file, "[lab]\nname = \"ok\"\n").expect("write");
    idp_lab(dir.path()).args(["config", "check", "bad.toml"]).assert().success().stdout("bad.toml: ok\n");
    idp_lab(dir.path()).args(["config", "check", "missing.toml"]).assert().code(2).stderr(predicate::str::contains("missing.toml"));
}

#[test]
fn bad_environment_and_flags_exit_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    idp_lab(dir.path())
        .arg("render")
        .env("IDP_LAB_NETWORK_HTTPS_PORT", "x")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("environment variable IDP_LAB_NETWORK_HTTPS_PORT"));
    idp_lab(dir.path())
        .args(["render", "--profile", "nope"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no profile named \"nope\""));
    idp_lab(dir.path()).arg("frobnicate").assert().code(2);
}

#[test]
fn render_is_byte_identical_across_processes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = || stdout(idp_lab(dir.path()).args(["render", "--profile", "full"]).env("IDP_LAB_NETWORK_HTTPS_PORT", "443"));
    let (a, b) = (run(), run());
    assert_eq!(a, b);
    assert!(a.contains("kind: PriorityClass") && a.contains("kind: HelmChart"));
    // With a non-default HTTPS port the external URLs carry it.
    let other = stdout(idp_lab(dir.path()).args(["render", "--profile", "full"]).env("IDP_LAB_NETWORK_HTTPS_PORT", "8443"));
    assert!(other.contains("https://argocd.127-0-0-1.nip.io:8443"));
}

#[test]
fn render_writes_one_file_per_wave() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out_dir = dir.path().join("out");
    std::fs::create_dir_all(&out_dir).expect("mkdir");
    std::fs::write(out_dir.join("wave-999.yaml"), "stale").expect("write");
    idp_lab(dir.path())
        .args(["render", "--profile", "minimal", "--out", "out"])
        .env("IDP_LAB_NETWORK_HTTPS_PORT", "443")
        .assert()
        .success();
    let mut files: Vec<String> =
        std::fs::read_dir(&out_dir).expect("read").filter_map(|e| e.ok()?.file_name().into_string().ok()).collect();
    files.sort();
    assert!(files.iter().all(|f| f.starts_with("wave-")) && !files.contains(&"wave-999.yaml".to_owned()), "{files:?}");
    assert_eq!(files.first().map(String::as_str), Some("wave-000.yaml"));
    let joined: String = files.iter().map(|f| std::fs::read_to_string(out_dir.join(f)).expect("read")).collect();
    let whole = stdout(idp_lab(dir.path()).args(["render", "--profile", "minimal"]).env("IDP_LAB_NETWORK_HTTPS_PORT", "443"));
    assert_eq!(joined, whole, "the wave files together are the whole render");
}

#[test]
fn render_survives_a_closed_pipe() {
    // The read end is closed before the binary starts, so its first write to stdout fails
    // with EPIPE whatever the output size (a `| head` would not: the render fits in a pipe
    // buffer and is written before head exits).
    let dir = tempfile::tempdir().expect("tempdir");
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("idp-lab"));
    for k in leaking_vars() {
        cmd.env_remove(k);
    }
    let out = cmd
        .args(["render", "--profile", "full"])
        .current_dir(dir.path())
        .env("IDP_LAB_HOME", dir.path().join("home"))
        .stdout(writer)
        .output()
        .expect("runs");
    assert!(out.status.success(), "exit {:?}: {}", out.status.code(), String::from_utf8_lossy(&out.stderr));
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn images_list_covers_the_profile() {
    let dir = tempfile::tempdir().expect("tempdir");
    let json: serde_json::Value =
        serde_json::from_str(&stdout(idp_lab(dir.path()).args(["images", "list", "--profile", "minimal", "-o", "json"]))).expect("json");
    let components: std::collections::BTreeSet<&str> =
        json.as_array().expect("array").iter().filter_map(|i| i["component"].as_str()).collect();
    assert!(components.contains("cilium") && components.contains("argocd"));
    assert!(!components.contains("vault"), "minimal has no secrets stack");
    let text = stdout(idp_lab(dir.path()).args(["images", "list"]));
    assert!(text.starts_with("COMPONENT") && text.contains("quay.io/cilium/cilium:v1.18.2"));
}

#[test]
fn logs_go_to_stderr_as_json_on_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = idp_lab(dir.path())
        .args(["render", "--profile", "minimal", "-v", "--log-format", "json"])
        .env("IDP_LAB_NETWORK_HTTPS_PORT", "443")
        .output()
        .expect("runs");
    assert!(out.status.success());
    let line = String::from_utf8_lossy(&out.stderr).lines().find(|l| l.contains("rendered")).map(str::to_owned).expect("a log line");
    let log: serde_json::Value = serde_json::from_str(&line).expect("json log");
    assert_eq!(log["fields"]["message"], "rendered");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("# component: namespaces"));
}

#[test]
fn version_and_completions() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert!(stdout(idp_lab(dir.path()).arg("version")).starts_with("idp-lab "));
    assert!(stdout(idp_lab(dir.path()).args(["completions", "bash"])).contains("idp-lab"));
}

#[test]
fn profiles_show_prints_a_config_file_that_resolves_to_the_same_configuration() {
    let dir = tempfile::tempdir().expect("tempdir");
    for profile in ["minimal", "standard", "full", "workshop", "airgap"] {
        let toml = stdout(idp_lab(dir.path()).args(["profiles", "show", profile]));
        std::fs::write(dir.path().join("shown.toml"), &toml).expect("write");
        idp_lab(dir.path()).args(["config", "check", "shown.toml"]).assert().success();
        let direct = stdout(idp_lab(dir.path()).args(["profiles", "show", profile, "-o", "json"]));
        let via_file = stdout(idp_lab(dir.path()).args(["--config", "shown.toml", "profiles", "show", profile, "-o", "json"]));
        assert_eq!(direct, via_file, "{profile}");
    }
}
