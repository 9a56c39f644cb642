//! `bundle create|verify|inspect` against real software: Debian's docker-registry (CNCF
//! distribution 2.8) seeded with images Docker built and pushed (a multi-layer image and
//! one built on it, so sharing its layers; a `docker import`ed one) and a two-platform
//! OCI index made through the registry API; a Helm repository and a file server
//! (python3's http.server) holding charts this test packages; skopeo as the independent
//! reader of the bundle. The resume test kills a real process (this test binary, run
//! again as a child) in the middle of a blob.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use common::{FileServer, Registry, Tags, host_platform, require, run, sha256, tar_gz};
use idp_bundle::create::{CreateOptions, Event, Item, items_from_lock};
use idp_bundle::layout::scan;
use idp_bundle::{BundleError, Client, Kind};
use idp_core::lock::Lock;
use idp_core::oci::Digest;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, Read as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A chart package as `helm package` lays it out: `<name>/Chart.yaml` and friends.
fn package_chart(dir: &Path, name: &str, version: &str) -> Vec<u8> {
    let src = dir.join(format!("src-{name}-{version}"));
    std::fs::create_dir_all(src.join(name).join("templates")).unwrap();
    std::fs::write(src.join(name).join("Chart.yaml"), format!("apiVersion: v2\nname: {name}\nversion: {version}\n")).unwrap();
    std::fs::write(src.join(name).join("values.yaml"), "replicas: 1\n").unwrap();
    std::fs::write(src.join(name).join("templates/cm.yaml"), format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\n"))
        .unwrap();
    tar_gz(&src, name, &dir.join(format!("{name}-{version}.tgz")))
}

/// `docker build` of a `FROM` image (or scratch) with one `COPY` per file: one layer each.
fn docker_build(dir: &Path, tag: &str, from: &str, files: &[(&str, &str)]) {
    let ctx = dir.join(format!("ctx-{}", &sha256(tag.as_bytes())[7..15]));
    std::fs::create_dir_all(&ctx).unwrap();
    let mut dockerfile = format!("FROM {from}\n");
    for (name, content) in files {
        std::fs::write(ctx.join(name), content).unwrap();
        dockerfile.push_str(&format!("COPY {name} /{name}\n"));
    }
    std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    run("docker", &["build", "-q", "-t", tag, &ctx.display().to_string()]);
}

/// What the seeded sources hold.
struct Seeded {
    _registry: Registry,
    _files: FileServer,
    _tags: Tags,
    _dir: tempfile::TempDir,
    /// The lock text.
    lock: String,
    /// Image references (as bundled) with their lock digests.
    layered: (String, String),
    derived: (String, String),
    imported: (String, String),
    multi: (String, String),
    amd64: String,
    arm64: String,
    charts: Vec<(String, String)>,
    file: (String, String),
}

fn seed() -> Seeded {
    let registry = Registry::start();
    let host = registry.host();
    let dir = tempfile::tempdir().unwrap();
    let salt = format!("{}-{}", std::process::id(), registry.port);
    let layered = format!("{host}/idp-bundle-test/layered:v1");
    let derived = format!("{host}/idp-bundle-test/derived:v1");
    let imported = format!("{host}/idp-bundle-test/imported:v1");
    let tags = Tags(vec![layered.clone(), derived.clone(), imported.clone()]);
    // Three layers; the second image is built on the first, so it shares all three.
    docker_build(
        dir.path(),
        &layered,
        "scratch",
        &[("a.txt", &format!("a {salt}\n")), ("b.txt", &format!("b {salt}\n")), ("c.txt", &format!("c {salt}\n"))],
    );
    docker_build(dir.path(), &derived, &layered, &[("d.txt", &format!("d {salt}\n"))]);
    let root = dir.path().join("rootfs");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/imported"), format!("imported {salt}\n")).unwrap();
    let tar = dir.path().join("rootfs.tar");
    run("tar", &["-cf", &tar.display().to_string(), "-C", &root.display().to_string(), "."]);
    run("docker", &["import", &tar.display().to_string(), &imported]);
    for tag in &tags.0 {
        run("docker", &["push", tag]);
    }
    let (multi_digest, amd64, arm64, _) = registry.push_index("idp-bundle-test/multi", "v1", &salt);
    let digest_of = |repo: &str| registry.content_digest(repo, "v1");
    let (l, d, i) = (digest_of("idp-bundle-test/layered"), digest_of("idp-bundle-test/derived"), digest_of("idp-bundle-test/imported"));

    // The Helm repository and an upstream file.
    let repo_dir = dir.path().join("repo");
    std::fs::create_dir_all(&repo_dir).unwrap();
    let demo = package_chart(&repo_dir, "demo", "0.1.0");
    let other = package_chart(&repo_dir, "other", "1.2.3");
    std::fs::write(
        repo_dir.join("index.yaml"),
        format!(
            "apiVersion: v1\nentries:\n  demo:\n    - name: demo\n      version: 0.1.0\n      urls: [demo-0.1.0.tgz]\n      digest: {}\n  other:\n    - name: other\n      version: 1.2.3\n      urls: [other-1.2.3.tgz]\n      digest: {}\n",
            &sha256(&demo)[7..],
            &sha256(&other)[7..]
        ),
    )
    .unwrap();
    let crds = format!("apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {{name: {salt}}}\n");
    std::fs::write(repo_dir.join("crds.yaml"), &crds).unwrap();
    let files = FileServer::start(&repo_dir);
    let hp = host_platform();
    let lock = format!(
        r#"version: 1
cluster:
  k3s:
    node:
      reference: "{host}/idp-bundle-test/multi:v1"
      digest: "{multi_digest}"
      platforms:
        linux/amd64: "{amd64}"
        linux/arm64: "{arm64}"
components:
  demo:
    chart:
      repository: "{repository}"
      name: "demo"
      version: "0.1.0"
      digest: "{demo_digest}"
    files:
      - url: "{crds_url}"
        sha256: "{crds_sha}"
    images:
      - reference: "{layered}"
        digest: "{l}"
        platforms: {{ {hp}: "{l}" }}
      - reference: "{derived}"
        digest: "{d}"
        platforms: {{ {hp}: "{d}" }}
  other:
    chart:
      repository: "{repository}"
      name: "other"
      version: "1.2.3"
      digest: "{other_digest}"
    images:
      - reference: "{imported}"
        digest: "{i}"
        platforms: {{ {hp}: "{i}" }}
      - reference: "{layered}"
        digest: "{l}"
        platforms: {{ {hp}: "{l}" }}
"#,
        repository = files.url(""),
        demo_digest = sha256(&demo),
        other_digest = sha256(&other),
        crds_url = files.url("crds.yaml"),
        crds_sha = &sha256(crds.as_bytes())[7..],
    );
    let port = files.port;
    Seeded {
        _registry: registry,
        _files: files,
        _tags: tags,
        _dir: dir,
        lock,
        multi: (format!("{host}/idp-bundle-test/multi:v1"), multi_digest),
        layered: (layered, l),
        derived: (derived, d),
        imported: (imported, i),
        amd64,
        arm64,
        charts: vec![(format!("127.0.0.1:{port}/demo:0.1.0"), sha256(&demo)), (format!("127.0.0.1:{port}/other:1.2.3"), sha256(&other))],
        file: (format!("127.0.0.1:{port}/crds.yaml:sha256-{}", &sha256(crds.as_bytes())[7..]), sha256(crds.as_bytes())),
    }
}

fn items(lock_text: &str) -> Vec<Item> {
    let lock = Lock::parse(lock_text, "test-lock.yaml").expect("the test lock parses");
    items_from_lock(&lock.entries()).expect("items")
}

fn options(out: &Path, platforms: &[&str]) -> CreateOptions {
    CreateOptions { out: out.to_owned(), platforms: platforms.iter().map(|p| (*p).to_owned()).collect(), allow_unverified: false }
}

/// The tar's entry names, in order.
fn entries(bundle: &Path) -> Vec<String> {
    run("tar", &["-tf", &bundle.display().to_string()]).lines().map(str::to_owned).collect()
}

fn skopeo_digest(bundle: &Path, name: &str) -> String {
    let out = run("skopeo", &["inspect", &format!("oci-archive:{}:{name}", bundle.display())]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["Digest"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_reads_with_skopeo_holds_the_locks_digests_and_catches_every_flipped_byte() {
    if !require("a_bundle_reads_with_skopeo_holds_the_locks_digests_and_catches_every_flipped_byte", true) {
        return;
    }
    let s = seed();
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("bundle.tar");
    let client = Client::new().unwrap();
    let hp = host_platform();
    let mut events = Vec::new();
    let created = idp_bundle::create(&client, &items(&s.lock), &options(&out, &[&hp]), &mut |e| events.push(e)).await.expect("creates");
    assert!(!work.path().join("bundle.tar.partial").exists(), "the work directory is removed");
    // The derived image's three layers are the layered image's: fetched once, then found.
    assert_eq!(created.reused, 3);
    assert!(created.warnings.is_empty(), "{:?}", created.warnings);
    let names: BTreeSet<&str> = created.artifacts.iter().map(|a| a.name.as_str()).collect();
    let expected: BTreeSet<&str> = [&s.layered.0, &s.derived.0, &s.imported.0, &s.multi.0, &s.charts[0].0, &s.charts[1].0, &s.file.0]
        .into_iter()
        .map(String::as_str)
        .collect();
    assert_eq!(names, expected);
    assert!(events.iter().any(|e| matches!(e, Event::Bytes(n) if *n > 0)), "progress reports bytes");
    assert_eq!(events.iter().filter(|e| matches!(e, Event::Artifact { .. })).count(), 7);

    // The lock's digests are the ones index.json names.
    let scanned = scan(&out, true).unwrap();
    let index = scanned.index.as_ref().unwrap();
    let root_of =
        |name: &str| index.manifests.iter().find(|m| m.ref_name() == Some(name)).unwrap_or_else(|| panic!("{name}")).digest.to_string();
    // (An OCI index is its own root; a Docker manifest is wrapped in an OCI index, kept
    // byte for byte under the lock's digest.)
    assert_eq!(root_of(&s.multi.0), s.multi.1);
    for (name, digest) in [&s.layered, &s.derived, &s.imported, &s.multi] {
        let desc = index.manifests.iter().find(|m| m.ref_name() == Some(name.as_str())).unwrap();
        assert_eq!(desc.annotation(idp_bundle::bundle::DIGEST_ANNOTATION), Some(digest.as_str()), "{name}");
        assert_eq!(sha256(&scanned.small[&Digest::parse(digest).unwrap()]), *digest, "{name}: the lock's manifest, unchanged");
    }
    // The file is an artifact whose one layer is the file, with the lock's sha256.
    let file_manifest: idp_core::oci::ImageManifest =
        serde_json::from_slice(&scanned.small[&Digest::parse(&root_of(&s.file.0)).unwrap()]).unwrap();
    assert_eq!(file_manifest.layers.len(), 1);
    assert_eq!(file_manifest.layers[0].digest.to_string(), s.file.1);
    assert_eq!(file_manifest.artifact_type.as_deref(), Some(idp_bundle::bundle::FILE_ARTIFACT_TYPE));
    // Every blob is stored once, under its own digest, and the tar starts with the layout.
    let listing = entries(&out);
    assert_eq!(&listing[..2], ["oci-layout", "index.json"]);
    let blob_entries: Vec<&String> = listing.iter().filter(|e| e.starts_with("blobs/sha256/") && e.len() > 13).collect();
    assert_eq!(blob_entries.len(), blob_entries.iter().collect::<BTreeSet<_>>().len(), "no blob twice");
    assert!(scanned.blobs.iter().all(|(d, b)| b.actual.as_ref() == Some(d)));
    // The derived image shares the layered image's three layers: they are in the bundle once,
    // and the derived image reaches them.
    let reach = |name: &str| -> BTreeSet<Digest> {
        let desc = index.manifests.iter().find(|m| m.ref_name() == Some(name)).unwrap();
        scanned.reach(desc).unwrap().into_iter().map(|b| b.digest).collect()
    };
    let layered_manifest: idp_core::oci::ImageManifest =
        serde_json::from_slice(&scanned.small[&Digest::parse(&s.layered.1).unwrap()]).unwrap();
    assert_eq!(layered_manifest.layers.len(), 3, "a multi-layer image");
    let derived_blobs = reach(&s.derived.0);
    for layer in &layered_manifest.layers {
        assert!(derived_blobs.contains(&layer.digest), "derived shares {}", layer.digest);
        assert_eq!(listing.iter().filter(|e| e.ends_with(layer.digest.hex())).count(), 1);
    }
    // Only the requested platform: the host's manifest is in, the other one is not; the
    // index keeps its original bytes (the lock's digest).
    let (kept, dropped) = if hp == "linux/amd64" { (&s.amd64, &s.arm64) } else { (&s.arm64, &s.amd64) };
    assert!(scanned.blobs.contains_key(&Digest::parse(kept).unwrap()));
    assert!(!scanned.blobs.contains_key(&Digest::parse(dropped).unwrap()), "the other platform is left out");
    assert_eq!(sha256(&scanned.small[&Digest::parse(&s.multi.1).unwrap()]), s.multi.1);

    // skopeo reads it: inspect gives the lock's digests, copy gives the image.
    for (name, _) in [&s.layered, &s.derived, &s.imported, &s.multi] {
        assert_eq!(skopeo_digest(&out, name), root_of(name), "skopeo inspect {name}");
    }
    for (name, _) in [&s.derived, &s.multi] {
        let dest = work.path().join(format!("copy-{}", &sha256(name.as_bytes())[7..15]));
        run("skopeo", &["copy", &format!("oci-archive:{}:{name}", out.display()), &format!("dir:{}", dest.display())]);
        let manifest: idp_core::oci::ImageManifest = serde_json::from_slice(&std::fs::read(dest.join("manifest.json")).unwrap()).unwrap();
        for layer in &manifest.layers {
            let bytes = std::fs::read(dest.join(layer.digest.hex())).unwrap();
            assert_eq!(sha256(&bytes), layer.digest.to_string(), "{name}: the copied layer has its digest");
        }
    }
    let chart_manifest = run("skopeo", &["inspect", "--raw", &format!("oci-archive:{}:{}", out.display(), s.charts[0].0)]);
    let chart_manifest: idp_core::oci::ImageManifest = serde_json::from_str(&chart_manifest).unwrap();
    assert_eq!(chart_manifest.config.media_type, idp_core::oci::HELM_CONFIG);
    assert_eq!(chart_manifest.layers[0].media_type, idp_core::oci::HELM_CHART_CONTENT);
    assert_eq!(chart_manifest.layers[0].digest.to_string(), s.charts[0].1, "the chart package is the lock's");

    // inspect lists kinds, platforms and sizes.
    let inspection = idp_bundle::inspect(&out).unwrap();
    let listed = |name: &str| inspection.artifacts.iter().find(|a| a.name == name).unwrap();
    assert_eq!((listed(&s.multi.0).kind, listed(&s.multi.0).platforms.clone()), (Kind::Image, vec![hp.clone()]));
    assert_eq!(listed(&s.layered.0).platforms, vec![hp.clone()], "a single manifest's platform comes from its config");
    assert_eq!((listed(&s.charts[1].0).kind, listed(&s.file.0).kind), (Kind::Chart, Kind::File));
    assert_eq!(listed(&s.layered.0).owners, ["demo", "other"], "an image two components need is bundled once");
    assert!(listed(&s.derived.0).size > listed(&s.layered.0).size);
    assert_eq!(inspection.bytes, scanned.blobs.values().map(|b| b.size).sum::<u64>());
    assert!(inspection.artifacts.iter().all(|a| a.error.is_none()));

    // verify: sound, then one flipped byte in each blob, one at a time, is named by blob
    // and by every artifact that reaches it.
    let sound = idp_bundle::verify(&out).unwrap();
    assert!(sound.ok(), "{:?}", sound.problems);
    let mut reached_by: BTreeMap<Digest, BTreeSet<String>> = BTreeMap::new();
    for desc in &index.manifests {
        for d in reach(desc.ref_name().unwrap()) {
            reached_by.entry(d).or_default().insert(desc.ref_name().unwrap().to_owned());
        }
    }
    let original = std::fs::read(&out).unwrap();
    let damaged = work.path().join("damaged.tar");
    assert_eq!(reached_by.len(), scanned.blobs.len(), "every blob is reached");
    for (digest, blob) in &scanned.blobs {
        let mut bytes = original.clone();
        let at = usize::try_from(blob.offset + blob.size / 2).unwrap();
        bytes[at] ^= 0x20;
        std::fs::write(&damaged, &bytes).unwrap();
        let v = idp_bundle::verify(&damaged).unwrap();
        assert!(!v.ok(), "a flipped byte in {digest} is caught");
        let artifacts: BTreeSet<String> = v.problems.iter().map(|p| p.artifact.clone()).collect();
        assert_eq!(artifacts, reached_by[digest], "{digest}: {:?}", v.problems);
        assert!(v.problems.iter().all(|p| p.digest.as_ref() == Some(digest)), "{:?}", v.problems);
    }
    // A missing blob (the tar rewritten without it) is named too.
    let (victim, _) = scanned.blobs.iter().find(|(_, b)| b.size > 1000).unwrap();
    {
        let mut archive = tar::Archive::new(std::fs::File::open(&out).unwrap());
        let mut builder = tar::Builder::new(std::fs::File::create(&damaged).unwrap());
        for entry in archive.entries().unwrap() {
            let entry = entry.unwrap();
            if entry.path().unwrap().to_string_lossy().ends_with(victim.hex()) {
                continue;
            }
            let mut header = entry.header().clone();
            let path = entry.path().unwrap().into_owned();
            builder.append_data(&mut header, path, entry).unwrap();
        }
        builder.finish().unwrap();
    }
    let v = idp_bundle::verify(&damaged).unwrap();
    assert!(!v.ok() && v.problems.iter().all(|p| p.reason.contains("missing")), "{:?}", v.problems);
    assert_eq!(v.problems.iter().map(|p| p.artifact.clone()).collect::<BTreeSet<_>>(), reached_by[victim]);
    // Not a bundle at all.
    std::fs::write(&damaged, b"not a tar").unwrap();
    assert!(idp_bundle::verify(&damaged).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unverified_entries_and_unknown_platforms_are_refused() {
    if !require("unverified_entries_and_unknown_platforms_are_refused", false) {
        return;
    }
    let registry = Registry::start();
    let (_, amd64, arm64, _) = registry.push_index("idp-bundle-test/loose", "v1", "loose");
    let host = registry.host();
    let lock = format!(
        "version: 1\ncomponents:\n  loose:\n    images:\n      - reference: \"{host}/idp-bundle-test/loose:v1\"\n        unverified: \"not resolved yet\"\n"
    );
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("b.tar");
    let client = Client::new().unwrap();
    let e = idp_bundle::create(&client, &items(&lock), &options(&out, &["linux/amd64"]), &mut |_| {}).await.expect_err("refused");
    assert!(matches!(&e, BundleError::Unverified { entries } if entries.len() == 1), "{e}");
    assert!(!out.exists());
    let e = idp_bundle::create(&client, &items(&lock), &options(&out, &["linux/s390x"]), &mut |_| {}).await.expect_err("platform");
    assert!(matches!(e, BundleError::Platform { .. }), "{e}");
    // With --allow-unverified: by tag, with a warning, and marked in index.json.
    let mut allowed = options(&out, &["linux/amd64", "linux/arm64"]);
    allowed.allow_unverified = true;
    let created = idp_bundle::create(&client, &items(&lock), &allowed, &mut |_| {}).await.expect("allowed");
    assert_eq!(created.warnings.len(), 1, "{:?}", created.warnings);
    let listed = idp_bundle::inspect(&out).unwrap();
    assert_eq!(listed.artifacts[0].unverified.as_deref(), Some("not resolved yet"));
    assert_eq!(listed.artifacts[0].platforms, ["linux/amd64", "linux/arm64"]);
    let scanned = scan(&out, false).unwrap();
    assert!([amd64, arm64].iter().all(|d| scanned.blobs.contains_key(&Digest::parse(d).unwrap())));
    // An image whose lock pins another platform digest than the index holds is refused.
    let (index, real_amd64, _, _) = registry.push_index("idp-bundle-test/pinned", "v1", "pinned");
    let wrong = format!(
        "version: 1\ncomponents:\n  pinned:\n    images:\n      - reference: \"{host}/idp-bundle-test/pinned:v1\"\n        digest: \"{index}\"\n        platforms:\n          linux/amd64: \"{}\"\n",
        sha256(b"another")
    );
    let e = idp_bundle::create(&client, &items(&wrong), &options(&work.path().join("c.tar"), &["linux/amd64"]), &mut |_| {})
        .await
        .expect_err("lock mismatch");
    assert!(matches!(&e, BundleError::LockMismatch { reason, .. } if reason.contains(&real_amd64)), "{e}");
}

/// A TCP proxy to `upstream` that sends responses at about `rate` bytes per second and
/// records every request line (`GET /v2/.../blobs/sha256:...`).
async fn slow_proxy(upstream: u16, rate: usize, requests: Arc<Mutex<Vec<String>>>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let requests = requests.clone();
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else { return };
                let (mut client_read, mut client_write) = tokio::io::split(client);
                let (mut server_read, mut server_write) = tokio::io::split(server);
                let up = async {
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        let n = match client_read.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let text = String::from_utf8_lossy(&buf[..n]);
                        for line in text.lines().filter(|l| l.starts_with("GET ") || l.starts_with("HEAD ")) {
                            requests.lock().unwrap().push(line.to_owned());
                        }
                        if server_write.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                };
                let down = async {
                    let chunk = (rate / 20).max(1);
                    let mut buf = vec![0u8; chunk];
                    loop {
                        let n = match server_read.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if client_write.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                };
                tokio::join!(up, down);
            });
        }
    });
    port
}

/// The child half of the resume test: runs `create` from the environment's lock and
/// prints each event on stderr. A no-op unless the parent test set the variables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_creates_from_the_environment() {
    let (Ok(lock), Ok(out)) = (std::env::var("IDP_BUNDLE_TEST_CHILD_LOCK"), std::env::var("IDP_BUNDLE_TEST_CHILD_OUT")) else {
        return;
    };
    let text = std::fs::read_to_string(lock).unwrap();
    let client = Client::new().unwrap();
    let result = idp_bundle::create(&client, &items(&text), &options(Path::new(&out), &["linux/amd64"]), &mut |e| {
        if let Event::Blob { digest, reused, .. } = e {
            eprintln!("event blob {digest} {}", if reused { "reused" } else { "fetched" });
        }
    })
    .await;
    eprintln!("event done {}", result.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_create_resumes_and_fetches_only_what_is_missing() {
    if !require("a_killed_create_resumes_and_fetches_only_what_is_missing", false) {
        return;
    }
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    // An image with two small layers and a 3 MB one, served at ~1 MB/s.
    let small1 = common::gzip_tar(dir.path(), "one.txt", "one");
    let small2 = common::gzip_tar(dir.path(), "two.txt", "two");
    let mut big = vec![0u8; 3 * 1024 * 1024];
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for b in &mut big {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        *b = seed as u8;
    }
    let repo = "idp-bundle-test/resume";
    let layers: Vec<(String, usize)> = [&small1, &small2, &big].iter().map(|l| (registry.push_blob(repo, l), l.len())).collect();
    let config = r#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"config":{}}"#;
    let config_digest = registry.push_blob(repo, config.as_bytes());
    let layer_json: Vec<String> = layers
        .iter()
        .map(|(d, n)| format!(r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{d}","size":{n}}}"#))
        .collect();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[{}]}}"#,
        config.len(),
        layer_json.join(",")
    );
    let manifest_digest = registry.put_manifest(repo, "v1", "application/vnd.oci.image.manifest.v1+json", manifest.as_bytes());
    let requests = Arc::new(Mutex::new(Vec::new()));
    let proxy = slow_proxy(registry.port, 1024 * 1024, requests.clone()).await;
    let lock = dir.path().join("lock.yaml");
    std::fs::write(
        &lock,
        format!(
            "version: 1\ncomponents:\n  app:\n    images:\n      - reference: \"127.0.0.1:{proxy}/{repo}:v1\"\n        digest: \"{manifest_digest}\"\n        platforms: {{ linux/amd64: \"{manifest_digest}\" }}\n"
        ),
    )
    .unwrap();
    let out = dir.path().join("bundle.tar");
    let big_digest = Digest::parse(&layers[2].0).unwrap();
    let part = dir.path().join("bundle.tar.partial/tmp").join(format!("{}.part", big_digest.hex()));

    // The child: this test binary, running only the child test.
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_creates_from_the_environment", "--nocapture", "--test-threads=1"])
        .env("IDP_BUNDLE_TEST_CHILD_LOCK", &lock)
        .env("IDP_BUNDLE_TEST_CHILD_OUT", &out)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let fetched = Arc::new(AtomicUsize::new(0));
    let log = Arc::new(Mutex::new(String::new()));
    let reader = {
        let (fetched, log) = (fetched.clone(), log.clone());
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.starts_with("event blob") && line.ends_with("fetched") {
                    fetched.fetch_add(1, Ordering::SeqCst);
                }
                log.lock().unwrap().push_str(&format!("{line}\n"));
            }
        })
    };
    // Kill it once the manifest, the config and the small layers are in and the big
    // layer is partly written.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let partial = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
        if fetched.load(Ordering::SeqCst) >= 4 && partial > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the child never got to the big blob: {}", log.lock().unwrap());
        assert!(child.try_wait().unwrap().is_none(), "the child ended early: {}", log.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    reader.join().unwrap();
    assert!(!out.exists(), "no bundle from a killed run");
    assert_eq!(fetched.load(Ordering::SeqCst), 4, "{}", log.lock().unwrap());
    let before = requests.lock().unwrap().len();

    // The resumed run fetches only the big layer.
    let client = Client::new().unwrap();
    let created =
        idp_bundle::create(&client, &items(&std::fs::read_to_string(&lock).unwrap()), &options(&out, &["linux/amd64"]), &mut |_| {})
            .await
            .expect("resumes");
    assert_eq!((created.fetched, created.reused), (1, 4));
    let after: Vec<String> = requests.lock().unwrap()[before..].to_vec();
    assert_eq!(after.len(), 1, "{after:?}");
    assert!(after[0].starts_with(&format!("GET /v2/{repo}/blobs/{big_digest}")), "{after:?}");
    assert!(idp_bundle::verify(&out).unwrap().ok());
    let mut blob = Vec::new();
    std::fs::File::open(&out).unwrap().read_to_end(&mut blob).unwrap();
    assert!(blob.windows(64).any(|w| w == &big[..64]), "the big layer is in the bundle");
}

#[test]
fn paths_are_stable() {
    // The work directory is next to the output.
    assert_eq!(idp_bundle::layout::with_suffix(Path::new("/x/b.tar"), ".partial"), PathBuf::from("/x/b.tar.partial"));
}
