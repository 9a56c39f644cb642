//! `idp-lab trust` as a user runs it: the lab CA printed, and trusted and untrusted in
//! Debian's store under a temporary root (never the machine's own), with the real
//! `update-ca-certificates`.

use idp_test::IsolatedEnv;
use serde_json::Value;
use std::process::Output;

fn run(env: &IsolatedEnv, args: &[&str]) -> Output {
    let mut cmd = env.command(env!("CARGO_BIN_EXE_idp-lab"));
    cmd.current_dir(env.root()).env("NO_COLOR", "1").env("IDP_LAB_LAB_NAME", "trusty").args(args);
    cmd.output().expect("idp-lab runs")
}

fn ok(env: &IsolatedEnv, args: &[&str]) -> String {
    let out = run(env, args);
    assert!(out.status.success(), "idp-lab {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8")
}

fn debian(status: &Value) -> String {
    let rows = status.as_array().expect("rows");
    let row = rows.iter().find(|r| r["store"].as_str().is_some_and(|s| s.starts_with("debian"))).expect("a debian row");
    row["state"].as_str().unwrap_or_default().to_owned()
}

#[test]
fn the_lab_ca_is_exported_trusted_and_untrusted_under_a_root() {
    assert!(
        std::path::Path::new("/usr/sbin/update-ca-certificates").exists(),
        "update-ca-certificates is missing: e2e/testbed/install.sh installs ca-certificates"
    );
    let env = IsolatedEnv::new().expect("isolated env");
    let pem = ok(&env, &["trust", "export"]);
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
    assert_eq!(ok(&env, &["trust", "export"]), pem, "the CA is stable");
    let ca = env.idp_lab_home().join("labs/trusty/ca/ca.crt");
    assert_eq!(std::fs::read_to_string(&ca).expect("the CA in the lab's state"), pem);
    // Its name constraints name the lab's suffix.
    let text = std::process::Command::new("openssl").args(["x509", "-noout", "-text", "-in"]).arg(&ca).output().expect("openssl");
    assert!(String::from_utf8_lossy(&text.stdout).contains("DNS:127-0-0-1.nip.io"), "{}", String::from_utf8_lossy(&text.stdout));

    let root = env.root().join("fsroot");
    let root_arg = root.display().to_string();
    let status = |env: &IsolatedEnv| -> Value {
        serde_json::from_str(&ok(env, &["trust", "status", "--root", &root_arg, "-o", "json"])).expect("status JSON")
    };
    ok(&env, &["trust", "install", "--root", &root_arg]);
    assert_eq!(debian(&status(&env)), "trusted");
    let bundle = std::fs::read_to_string(root.join("etc/ssl/certs/ca-certificates.crt")).expect("the root's bundle");
    assert!(bundle.contains(pem.lines().nth(1).expect("a base64 line")), "the bundle holds the CA");
    let again = ok(&env, &["trust", "install", "--root", &root_arg, "-o", "json"]);
    assert!(again.contains("already so"), "{again}");
    ok(&env, &["trust", "uninstall", "--root", &root_arg]);
    assert_eq!(debian(&status(&env)), "not trusted");
}
