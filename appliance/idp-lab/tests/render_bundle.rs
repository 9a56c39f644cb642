//! `render --bundle FILE` (issue 10): upstream CRDs are real objects, read from the
//! bundle, not comments.
//!
//! The bundle holds the Gateway API v1.2.1 CRD files of the shared fixtures
//! (`<shared>/fixtures/gateway-api-v1.2.1`) under the URLs the embedded lock pins
//! (`https://raw.githubusercontent.com/...`), which this machine cannot reach. It is made
//! by idp-bundle's `create` from the lock's own items (`items_from_lock`, named exactly as
//! `idp-lab bundle create` names them), with only where each file is fetched from pointed
//! at python3's http.server serving the same bytes on loopback; `create` downloads them
//! and checks them against the lock's sha256 as it does any file.

use assert_cmd::Command;
use idp_bundle::create::{Item, Source, file_ref_name, items_from_lock};
use idp_core::lock::{Artifact, Lock, Owner};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The component whose upstream files these are.
const COMPONENT: &str = "gateway-api-crds";

fn fixtures() -> PathBuf {
    idp_test::testbed().shared_dir().join("fixtures/gateway-api-v1.2.1")
}

/// The skip rule: python3 and the fixtures (`CI=true`: missing ones fail the test).
fn ready(test: &str) -> bool {
    let mut missing = Vec::new();
    if !std::process::Command::new("python3").arg("--version").output().is_ok_and(|o| o.status.success()) {
        missing.push("python3 (apt-get install python3)".to_owned());
    }
    if !fixtures().join("SHA256SUMS").is_file() {
        missing
            .push(format!("the shared fixtures at {} (check them out beside the repository, or set IDP_LAB_SHARED)", fixtures().display()));
    }
    if missing.is_empty() {
        return true;
    }
    let reason = format!("missing {}", missing.join(", "));
    assert!(!idp_test::testbed::in_ci(), "{test} cannot run in CI: {reason}");
    idp_test::testbed::report_skip(test, &reason);
    false
}

/// python3's http.server on loopback, serving a directory; killed when dropped.
struct FileServer {
    port: u16,
    child: std::process::Child,
}

impl FileServer {
    fn start(dir: &Path) -> FileServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
        let child = std::process::Command::new("python3")
            .args(["-m", "http.server", &port.to_string(), "--bind", "127.0.0.1", "--directory", &dir.display().to_string()])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python3 http.server");
        let server = FileServer { port, child };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "http.server did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The component's files in the lock: (URL, sha256 hex).
fn locked_files() -> Vec<(String, String)> {
    let lock = Lock::embedded().expect("lock");
    lock.entries()
        .into_iter()
        .filter_map(|e| match (e.owner, e.artifact) {
            (Owner::Component(COMPONENT), Artifact::File(f)) => Some((f.url.clone(), f.sha256.clone().expect("verified"))),
            _ => None,
        })
        .collect()
}

fn file_name(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}

/// Makes `out` with `items` (each fetched from `server` under its URL's file name).
fn create(out: &Path, server: &FileServer, items: Vec<Item>) {
    let items: Vec<Item> = items
        .into_iter()
        .map(|mut item| {
            if let Source::File { url, .. } = &mut item.source {
                *url = server.url(file_name(url));
            }
            item
        })
        .collect();
    let options = idp_bundle::CreateOptions { out: out.to_owned(), platforms: vec!["linux/amd64".into()], allow_unverified: false };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime
        .block_on(idp_bundle::create(&idp_bundle::Client::new().expect("client"), &items, &options, &mut |_| {}))
        .unwrap_or_else(|e| panic!("bundle create: {}", idp_bundle::bundle::chain(&e)));
}

/// A bundle of the component's files, without those whose URL ends with one of `without`.
fn bundle(out: &Path, server: &FileServer, without: &[&str]) {
    let lock = Lock::embedded().expect("lock");
    let entries: Vec<_> = lock
        .entries()
        .into_iter()
        .filter(|e| matches!((e.owner, e.artifact), (Owner::Component(COMPONENT), Artifact::File(f)) if !without.iter().any(|w| f.url.ends_with(w))))
        .collect();
    create(out, server, items_from_lock(&entries).expect("items"));
}

/// The binary in an isolated home, with no IDP_LAB_* of the test's environment.
fn idp_lab(dir: &Path) -> Command {
    let mut cmd = Command::cargo_bin("idp-lab").expect("binary");
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("IDP_LAB_") || k == "RUST_LOG") {
        cmd.env_remove(k);
    }
    cmd.current_dir(dir).env("IDP_LAB_HOME", dir.join("home")).env("NO_COLOR", "1").env("IDP_LAB_NETWORK_HTTPS_PORT", "443");
    cmd
}

fn stdout(cmd: &mut Command) -> String {
    let out = cmd.output().expect("runs");
    assert!(out.status.success(), "failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8")
}

/// Every document of every fixture file, in the lock's order, as upstream wrote them.
fn fixture_objects() -> Vec<Value> {
    locked_files()
        .iter()
        .flat_map(|(url, _)| {
            let text = std::fs::read_to_string(fixtures().join(file_name(url))).expect("fixture");
            idp_core::yaml::parse_documents(&text).expect("fixture parses")
        })
        .collect()
}

fn crd_names(objects: &[Value]) -> Vec<String> {
    objects
        .iter()
        .filter(|o| o["kind"] == "CustomResourceDefinition")
        .map(|o| o["metadata"]["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn render_with_a_bundle_prints_the_upstream_crds_as_objects() {
    if !ready("render_with_a_bundle_prints_the_upstream_crds_as_objects") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let server = FileServer::start(&fixtures());
    let b = dir.path().join("crds.tar");
    bundle(&b, &server, &[]);
    let expected = fixture_objects();
    assert_eq!(
        crd_names(&expected),
        [
            "gatewayclasses.gateway.networking.k8s.io",
            "gateways.gateway.networking.k8s.io",
            "grpcroutes.gateway.networking.k8s.io",
            "httproutes.gateway.networking.k8s.io",
            "referencegrants.gateway.networking.k8s.io"
        ]
    );

    // Without --bundle: references, as before.
    let plain = stdout(idp_lab(dir.path()).args(["render", "--profile", "minimal"]));
    assert!(plain.contains("# upstream manifest, fetched and checked"), "a comment block without --bundle");
    assert!(!plain.contains("kind: CustomResourceDefinition"), "no CRD object without --bundle");

    // YAML: the CRDs, in place of the comment blocks, exactly as upstream wrote them.
    let yaml = stdout(idp_lab(dir.path()).args(["render", "--profile", "minimal", "--bundle", &b.display().to_string()]));
    assert!(!yaml.contains("# upstream manifest"), "no comment block is left");
    let objects = idp_core::yaml::parse_documents(&yaml).expect("the render parses");
    let crds: Vec<Value> = objects.iter().filter(|o| o["kind"] == "CustomResourceDefinition").cloned().collect();
    assert!(crds == expected, "the bundle's CRDs, in order, with nothing added or changed");
    assert!(crds.iter().all(|o| o["metadata"]["labels"].is_null()), "no render label on an upstream object");
    // In place: the component's section is its CRDs; every other section is unchanged.
    let sections = |text: &str| -> Vec<(String, String)> {
        text.split("# component: ")
            .filter(|s| !s.is_empty())
            .map(|s| (s.split(' ').next().unwrap_or_default().to_owned(), format!("# component: {s}")))
            .collect()
    };
    let (with, without) = (sections(&yaml), sections(&plain));
    assert_eq!(with.iter().map(|(n, _)| n).collect::<Vec<_>>(), without.iter().map(|(n, _)| n).collect::<Vec<_>>());
    for ((name, a), (_, b)) in with.iter().zip(&without) {
        if name == COMPONENT {
            assert!(idp_core::yaml::parse_documents(a).expect("parses") == expected, "{name} is its CRDs, nothing else");
        } else {
            assert_eq!(a, b, "{name} renders as without --bundle");
        }
    }

    // JSON: object items of the component, no reference items.
    let json: Value = serde_json::from_str(&stdout(idp_lab(dir.path()).args([
        "render",
        "--profile",
        "minimal",
        "--bundle",
        &b.display().to_string(),
        "-o",
        "json",
    ])))
    .expect("json");
    let items = json.as_array().expect("array");
    assert!(items.iter().all(|i| i.get("reference").is_none()), "no reference item is left");
    let from_component: Vec<Value> = items.iter().filter(|i| i["component"] == COMPONENT).map(|i| i["object"].clone()).collect();
    assert!(from_component == expected, "the component's items are the CRDs");

    // --out DIR: the first wave's file holds them.
    let listed = stdout(idp_lab(dir.path()).args(["render", "--profile", "minimal", "--bundle", &b.display().to_string(), "--out", "out"]));
    assert!(listed.contains("wave-010.yaml"), "{listed}");
    let wave = std::fs::read_to_string(dir.path().join("out/wave-010.yaml")).expect("wave file");
    let in_wave = idp_core::yaml::parse_documents(&wave).expect("parses");
    assert_eq!(crd_names(&in_wave), crd_names(&expected));

    // The unpacked layout (a directory) is a bundle too.
    let layout = dir.path().join("layout");
    std::fs::create_dir_all(&layout).expect("dir");
    let mut archive = tar::Archive::new(std::fs::File::open(&b).expect("bundle"));
    archive.unpack(&layout).expect("unpack");
    let from_dir = stdout(idp_lab(dir.path()).args(["render", "--profile", "minimal", "--bundle", &layout.display().to_string()]));
    assert_eq!(from_dir, yaml, "a directory layout renders the same");
}

#[test]
fn render_with_a_bundle_lacking_or_mismatching_a_crd_file_exits_2() {
    if !ready("render_with_a_bundle_lacking_or_mismatching_a_crd_file_exits_2") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    // The fixtures, plus a gateways file of other bytes (one more comment line).
    let served = dir.path().join("served");
    std::fs::create_dir_all(&served).expect("dir");
    for (url, _) in locked_files() {
        std::fs::copy(fixtures().join(file_name(&url)), served.join(file_name(&url))).expect("copy");
    }
    let (gateways_url, gateways_sha) = locked_files().into_iter().find(|(u, _)| u.ends_with("_gateways.yaml")).expect("gateways");
    let mut changed = std::fs::read(fixtures().join(file_name(&gateways_url))).expect("fixture");
    changed.extend_from_slice(b"# not upstream\n");
    let changed_sha = format!("sha256:{}", sha256_hex(&changed));
    std::fs::write(served.join("changed.yaml"), &changed).expect("write");
    let server = FileServer::start(&served);

    // Lacking the HTTPRoute CRD file.
    let lacking = dir.path().join("lacking.tar");
    bundle(&lacking, &server, &["_httproutes.yaml"]);
    let out =
        idp_lab(dir.path()).args(["render", "--profile", "minimal", "--bundle", &lacking.display().to_string()]).output().expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "exit 2 (INPUT): {stderr}");
    let (httproutes, _) = locked_files().into_iter().find(|(u, _)| u.ends_with("_httproutes.yaml")).expect("httproutes");
    assert!(stderr.contains(&httproutes), "names the URL: {stderr}");
    assert!(
        stderr.contains(&format!("idp-lab bundle create --profile minimal --out {}", lacking.display())),
        "names the command that makes a bundle with it: {stderr}"
    );
    assert!(out.stdout.is_empty(), "nothing is printed but the error");

    // Holding other bytes for the gateways URL (as a bundle of another lock would).
    let mut items: Vec<Item> = {
        let lock = Lock::embedded().expect("lock");
        let entries: Vec<_> = lock
            .entries()
            .into_iter()
            .filter(
                |e| matches!((e.owner, e.artifact), (Owner::Component(COMPONENT), Artifact::File(f)) if !f.url.ends_with("_gateways.yaml")),
            )
            .collect();
        items_from_lock(&entries).expect("items")
    };
    let mut other = items[0].clone();
    other.ref_name = file_ref_name(&gateways_url, Some(&changed_sha)).expect("name");
    other.source = Source::File { url: "changed.yaml".into(), sha256: Some(changed_sha.clone()) };
    items.push(other);
    let mismatching = dir.path().join("mismatching.tar");
    create(&mismatching, &server, items);
    let out = idp_lab(dir.path())
        .args(["render", "--profile", "minimal", "--bundle", &mismatching.display().to_string()])
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "exit 2 (INPUT): {stderr}");
    assert!(stderr.contains(&gateways_url), "names the URL: {stderr}");
    assert!(stderr.contains(&gateways_sha) && stderr.contains(&changed_sha), "names both hashes: {stderr}");

    // No bundle at that path: exit 6 (IO).
    let none = dir.path().join("none.tar");
    let out = idp_lab(dir.path()).args(["render", "--profile", "minimal", "--bundle", &none.display().to_string()]).output().expect("runs");
    assert_eq!(out.status.code(), Some(6), "exit 6 (IO): {}", String::from_utf8_lossy(&out.stderr));
}

fn sha256_hex(bytes: &[u8]) -> String {
    idp_core::oci::Digest::of(bytes).hex().to_owned()
}
