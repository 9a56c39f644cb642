//! The clients against real software: Debian's docker-registry (CNCF distribution 2.8)
//! seeded with images Docker pushed and an OCI index built through the registry API,
//! skopeo and curl as independent readers of the registry's digests, a corrupting TCP
//! proxy and a bearer-token gate in front of the real registry, and a Helm repository
//! served by python3's http.server.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use common::{FileServer, Registry, Tags, host_platform, require, run, sha256};
use idp_bundle::client::{Client, DOCKER_MANIFEST, OCI_INDEX};
use idp_bundle::error::ClientError;
use idp_core::lock::Lock;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn client() -> Client {
    Client::new().expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolution_gives_exactly_the_digests_the_registry_reports() {
    if !require("resolution_gives_exactly_the_digests_the_registry_reports", true) {
        return;
    }
    let registry = Registry::start();
    // An image Docker builds and pushes (Docker 20.10 pushes a schema-2 manifest).
    let root = registry.dir.path().join("rootfs");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/idp-bundle-test"), format!("made by the idp-bundle test on port {}\n", registry.port)).unwrap();
    let tar = registry.dir.path().join("rootfs.tar");
    run("tar", &["-cf", &tar.display().to_string(), "-C", &root.display().to_string(), "."]);
    let single = format!("{}/idp-bundle-test/single:v1", registry.host());
    let _tags = Tags(vec![single.clone()]);
    run("docker", &["import", &tar.display().to_string(), &single]);
    run("docker", &["push", &single]);
    // A two-platform OCI index through the registry API.
    let (index, amd64, arm64, layer) = registry.push_index("idp-bundle-test/multi", "v1", "a");

    let client = client();
    let resolved = client.resolve(&single).await.expect("resolves the pushed image");
    let reported = registry.content_digest("idp-bundle-test/single", "v1");
    let inspected: serde_json::Value =
        serde_json::from_str(&run("skopeo", &["inspect", "--tls-verify=false", &format!("docker://{single}")])).unwrap();
    assert_eq!(resolved.digest, reported);
    assert_eq!(resolved.digest, inspected["Digest"]);
    assert_eq!(resolved.media_type, DOCKER_MANIFEST);
    assert_eq!(resolved.platforms, BTreeMap::from([(host_platform(), reported.clone())]));
    assert_eq!(client.head_digest(&single).await.expect("HEAD"), reported);

    let multi = format!("{}/idp-bundle-test/multi:v1", registry.host());
    let resolved = client.resolve(&multi).await.expect("resolves the index");
    let raw = std::process::Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false", &format!("docker://{multi}")])
        .output()
        .unwrap()
        .stdout;
    assert_eq!(resolved.digest, index);
    assert_eq!(resolved.digest, registry.content_digest("idp-bundle-test/multi", "v1"));
    assert_eq!(resolved.digest, sha256(&raw), "skopeo's raw bytes hash to the same digest");
    assert_eq!(resolved.media_type, OCI_INDEX);
    // The unknown/unknown entry is not a platform.
    assert_eq!(resolved.platforms, BTreeMap::from([("linux/amd64".to_owned(), amd64.clone()), ("linux/arm64".to_owned(), arm64.clone())]));
    let by_digest = client.resolve(&format!("{}/idp-bundle-test/multi@{index}", registry.host())).await.expect("by digest");
    assert_eq!(by_digest, resolved);
    let manifest = client.manifest(&format!("{}/idp-bundle-test/multi@{arm64}", registry.host())).await.expect("arm64 manifest");
    assert_eq!((manifest.digest.as_str(), manifest.is_index()), (arm64.as_str(), false));

    // A blob streams, and its bytes are the ones pushed.
    let mut bytes = Vec::new();
    let layer_digest = sha256(&layer);
    let fetched = client.blob(&multi, &layer_digest, &mut bytes).await.expect("blob");
    assert_eq!((fetched.digest.as_str(), fetched.size, bytes == layer), (layer_digest.as_str(), layer.len() as u64, true));

    // What is not there is the registry's 404, not a guess.
    let absent = client.resolve(&format!("{}/idp-bundle-test/multi:v9", registry.host())).await.expect_err("no such tag");
    assert!(matches!(&absent, ClientError::Status { status: 404, detail, .. } if detail.contains("MANIFEST_UNKNOWN")), "{absent}");
    let wrong = format!("sha256:{}", "0".repeat(64));
    let absent = client.blob(&multi, &wrong, &mut Vec::new()).await.expect_err("no such blob");
    assert!(matches!(absent, ClientError::Status { status: 404, .. }), "{absent}");
    assert!(matches!(client.blob(&multi, "sha256:../../etc", &mut Vec::new()).await, Err(ClientError::Invalid { .. })));
}

/// A TCP proxy in front of `upstream` that flips one byte of the first response body on
/// each connection (a disk or network fault the registry does not see).
async fn corrupting_proxy(upstream: u16) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else { return };
                let (mut client_read, mut client_write) = client.split();
                let (mut server_read, mut server_write) = tokio::io::split(server);
                let up = tokio::io::copy(&mut client_read, &mut server_write);
                let down = async {
                    let mut seen = Vec::new();
                    let mut flipped = false;
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        let n = match server_read.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let chunk = &mut buf[..n];
                        if !flipped {
                            let start = seen.len();
                            seen.extend_from_slice(chunk);
                            if let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                                // The body's sixth byte (or its first when shorter).
                                let target = end + 4 + 5;
                                if target >= start && target < start + n {
                                    chunk[target - start] ^= 0x01;
                                    flipped = true;
                                }
                            }
                        }
                        if client_write.write_all(chunk).await.is_err() {
                            break;
                        }
                    }
                };
                let _ = tokio::join!(up, down);
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_is_caught_while_streaming() {
    if !require("a_flipped_byte_is_caught_while_streaming", false) {
        return;
    }
    let registry = Registry::start();
    let (index, _, _, layer) = registry.push_index("idp-bundle-test/flip", "v1", "flip");
    let proxy = corrupting_proxy(registry.port).await;
    let through = format!("127.0.0.1:{proxy}/idp-bundle-test/flip:v1");
    let layer_digest = sha256(&layer);

    let dir = tempfile::tempdir().unwrap();
    let mut file = tokio::fs::File::create(dir.path().join("blob.partial")).await.unwrap();
    let e = client().blob(&through, &layer_digest, &mut file).await.expect_err("the flip is caught");
    match &e {
        ClientError::DigestMismatch { what: "blob", expected, actual, .. } => {
            assert_eq!(expected, &layer_digest);
            let mut flipped = layer.clone();
            flipped[5] ^= 0x01;
            assert_eq!(actual, &sha256(&flipped), "the digest of the bytes that arrived");
        }
        other => panic!("expected a digest mismatch, got {other}"),
    }
    // The bytes did stream to the sink (so callers write to a temporary file).
    assert_eq!(tokio::fs::metadata(dir.path().join("blob.partial")).await.unwrap().len(), layer.len() as u64);
    // A manifest by tag: its bytes no longer match the registry's Docker-Content-Digest.
    let e = client().manifest(&through).await.expect_err("the flip is caught");
    assert!(matches!(&e, ClientError::DigestMismatch { what: "manifest", expected, .. } if *expected == index), "{e}");
    // Straight from the registry, both are fine.
    let direct = format!("{}/idp-bundle-test/flip:v1", registry.host());
    client().blob(&direct, &layer_digest, &mut tokio::io::sink()).await.expect("direct blob");
    assert_eq!(client().manifest(&direct).await.expect("direct manifest").digest, index);
}

/// A bearer-token gate in front of the real registry, per the distribution token spec:
/// a request without `Authorization: Bearer <good>` gets a 401 with the challenge; the
/// realm (`/token` on the gate) hands out `token` for the right service and scope.
async fn token_gate(upstream: u16, token: &'static str, good: &'static str, issued: Arc<AtomicUsize>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let issued = issued.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match client.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&head).into_owned();
                let target = text.split_whitespace().nth(1).unwrap_or_default().to_owned();
                let authorization = text.lines().find_map(|l| {
                    l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("authorization")).map(|(_, v)| v.trim().to_owned())
                });
                let answer = |status: &str, headers: &str, body: &str| {
                    format!("HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
                };
                if let Some(query) = target.strip_prefix("/token?") {
                    let right = query.contains("service=idp-gate") && query.contains("scope=repository%3Aidp-bundle-test%2Fgated%3Apull");
                    let reply = if right {
                        issued.fetch_add(1, Ordering::SeqCst);
                        answer("200 OK", "Content-Type: application/json\r\n", &format!(r#"{{"token":"{token}","expires_in":300}}"#))
                    } else {
                        answer("400 Bad Request", "", "wrong service or scope")
                    };
                    let _ = client.write_all(reply.as_bytes()).await;
                    return;
                }
                if authorization.as_deref() != Some(&format!("Bearer {good}")) {
                    let challenge = format!(
                        "WWW-Authenticate: Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"idp-gate\",scope=\"repository:idp-bundle-test/gated:pull\"\r\n"
                    );
                    let _ = client
                        .write_all(answer("401 Unauthorized", &challenge, r#"{"errors":[{"code":"UNAUTHORIZED"}]}"#).as_bytes())
                        .await;
                    return;
                }
                let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)).await else { return };
                if server.write_all(&head).await.is_ok() {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bearer_challenge_is_answered_with_a_token_from_its_realm() {
    if !require("a_bearer_challenge_is_answered_with_a_token_from_its_realm", false) {
        return;
    }
    let registry = Registry::start();
    let (index, amd64, arm64, _) = registry.push_index("idp-bundle-test/gated", "v1", "gated");
    let issued = Arc::new(AtomicUsize::new(0));
    let gate = token_gate(registry.port, "good-token", "good-token", issued.clone()).await;
    // The gate really refuses an anonymous request.
    let refused = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", &format!("http://127.0.0.1:{gate}/v2/idp-bundle-test/gated/manifests/v1")])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&refused.stdout), "401");

    let client = client();
    let gated = format!("127.0.0.1:{gate}/idp-bundle-test/gated:v1");
    let resolved = client.resolve(&gated).await.expect("resolves through the token flow");
    assert_eq!(resolved.digest, index);
    assert_eq!(resolved.platforms.get("linux/amd64"), Some(&amd64));
    assert_eq!(resolved.platforms.get("linux/arm64"), Some(&arm64));
    assert_eq!(issued.load(Ordering::SeqCst), 1);
    // The token is cached for the repository: no second token request.
    assert_eq!(client.head_digest(&gated).await.expect("HEAD"), index);
    assert_eq!(issued.load(Ordering::SeqCst), 1);

    // A realm whose token the gate does not accept: a clear error, not a loop.
    let bad_issued = Arc::new(AtomicUsize::new(0));
    let bad_gate = token_gate(registry.port, "stale-token", "good-token", bad_issued.clone()).await;
    let e = client.resolve(&format!("127.0.0.1:{bad_gate}/idp-bundle-test/gated:v1")).await.expect_err("refused");
    assert!(matches!(&e, ClientError::AuthRequired { challenge, .. } if challenge.starts_with("Bearer realm=")), "{e}");
    assert_eq!(bad_issued.load(Ordering::SeqCst), 1);
}

/// A chart package as `helm package` lays it out: `<name>/Chart.yaml` and friends.
fn package_chart(dir: &std::path::Path, name: &str, version: &str) -> Vec<u8> {
    let src = dir.join(format!("src-{name}-{version}"));
    std::fs::create_dir_all(src.join(name).join("templates")).unwrap();
    std::fs::write(src.join(name).join("Chart.yaml"), format!("apiVersion: v2\nname: {name}\nversion: {version}\n")).unwrap();
    std::fs::write(src.join(name).join("values.yaml"), "replicas: 1\n").unwrap();
    std::fs::write(src.join(name).join("templates/cm.yaml"), "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: demo}\n").unwrap();
    let out = dir.join(format!("{name}-{version}.tgz"));
    run("tar", &["--sort=name", "--mtime=@0", "-czf", &out.display().to_string(), "-C", &src.display().to_string(), name]);
    std::fs::read(out).unwrap()
}

/// A Helm repository on loopback: demo 0.1.0 with its digest, 0.2.0 with a wrong one, and
/// an upstream-style plain file.
fn helm_repository(dir: &std::path::Path) -> (Vec<u8>, Vec<u8>) {
    let good = package_chart(dir, "demo", "0.1.0");
    let other = package_chart(dir, "demo", "0.2.0");
    let index = format!(
        "apiVersion: v1\nentries:\n  demo:\n    - name: demo\n      version: 0.2.0\n      urls: [demo-0.2.0.tgz]\n      digest: {}\n    - name: demo\n      version: 0.1.0\n      urls: [demo-0.1.0.tgz]\n      digest: {}\ngenerated: \"2026-12-01T00:00:00Z\"\n",
        "0".repeat(64),
        &sha256(&good)[7..]
    );
    std::fs::write(dir.join("index.yaml"), index).unwrap();
    std::fs::write(dir.join("crds.yaml"), "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n").unwrap();
    (good, other)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_helm_repository_over_http_resolves_and_a_wrong_digest_is_caught() {
    if !require("a_helm_repository_over_http_resolves_and_a_wrong_digest_is_caught", false) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (good, other) = helm_repository(dir.path());
    let server = FileServer::start(dir.path());
    let repository = server.url("");
    let client = client();

    let chart = client.find_chart(&repository, "demo", "0.1.0").await.expect("in the index");
    assert_eq!(chart.url, server.url("demo-0.1.0.tgz"));
    assert_eq!(chart.digest.as_deref(), Some(sha256(&good).as_str()));
    let mut bytes = Vec::new();
    let fetched = client.download_chart(&chart, None, &mut bytes).await.expect("downloads");
    assert_eq!((fetched.digest, bytes), (sha256(&good), good.clone()));
    // The package really is a chart (tar can list it).
    let listing = run("tar", &["-tzf", &dir.path().join("demo-0.1.0.tgz").display().to_string()]);
    assert!(listing.lines().any(|l| l == "demo/Chart.yaml"), "{listing}");

    // 0.2.0's index digest is wrong: caught on download.
    let wrong = client.find_chart(&repository, "demo", "0.2.0").await.expect("in the index");
    let e = client.download_chart(&wrong, None, &mut tokio::io::sink()).await.expect_err("wrong digest");
    assert!(matches!(&e, ClientError::DigestMismatch { what: "chart", actual, .. } if *actual == sha256(&other)), "{e}");
    // A lock digest that disagrees with the index: refused before downloading.
    let e = client.download_chart(&chart, Some(&sha256(b"x")), &mut tokio::io::sink()).await.expect_err("disagrees");
    assert!(matches!(e, ClientError::DigestMismatch { .. }), "{e}");
    let e = client.find_chart(&repository, "demo", "9.9.9").await.expect_err("absent");
    assert!(e.to_string().ends_with("has no chart demo 9.9.9 (it has 0.2.0, 0.1.0)"), "{e}");
    let e = client.find_chart(&server.url("nowhere/"), "demo", "0.1.0").await.expect_err("no index");
    assert!(matches!(e, ClientError::Status { status: 404, .. }), "{e}");

    // Plain files, as upstream CRDs are fetched.
    let crds = std::fs::read(dir.path().join("crds.yaml")).unwrap();
    let fetched = client.fetch(&server.url("crds.yaml"), Some(&sha256(&crds)), &mut tokio::io::sink()).await.expect("file");
    assert_eq!(fetched.size, crds.len() as u64);
    let e = client.fetch(&server.url("crds.yaml"), Some(&sha256(b"other")), &mut tokio::io::sink()).await.expect_err("mismatch");
    assert!(matches!(e, ClientError::DigestMismatch { what: "file", .. }), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_resolves_what_it_reaches_and_says_why_for_the_rest() {
    if !require("update_resolves_what_it_reaches_and_says_why_for_the_rest", false) {
        return;
    }
    let registry = Registry::start();
    let host = registry.host();
    let (index, amd64, arm64, _) = registry.push_index("idp-bundle-test/app", "v1", "app");
    // A tag that moves after the lock pinned it.
    let (pinned, ..) = registry.push_index("idp-bundle-test/moving", "v1", "first");
    let (moved, ..) = registry.push_index("idp-bundle-test/moving", "v1", "second");
    let dir = tempfile::tempdir().unwrap();
    let (good, _) = helm_repository(dir.path());
    let files = FileServer::start(dir.path());
    let crds = std::fs::read(dir.path().join("crds.yaml")).unwrap();
    let zeros = "0".repeat(64);
    let text = format!(
        r#"version: 1
cluster:
  k3s:
    node:
      reference: "{host}/idp-bundle-test/app:v1"
      unverified: "not resolved yet"
    airgap:
      - reference: "{host}/idp-bundle-test/absent:v1"
        unverified: "not resolved yet"
components:
  demo:
    chart:
      repository: "{repository}"
      name: "demo"
      version: "0.1.0"
      unverified: "not resolved yet"
    files:
      - url: "{crds_url}"
        unverified: "not resolved yet"
      - url: "{crds_url}"
        sha256: "{zeros}"
      - url: "{missing_url}"
        sha256: "{zeros}"
    images:
      - reference: "{host}/idp-bundle-test/moving:v1"
        digest: "{pinned}"
        unverified: "platforms not resolved yet"
"#,
        repository = files.url(""),
        crds_url = files.url("crds.yaml"),
        missing_url = files.url("missing.yaml"),
    );
    let lock = Lock::parse(&text, "test-lock.yaml").expect("the test lock parses");
    let updated = idp_bundle::update(&lock, &client()).await.expect("updates");

    let node = &updated.cluster["k3s"].node;
    assert_eq!((node.digest.as_deref(), node.unverified.as_deref()), (Some(index.as_str()), None), "{node:?}");
    assert_eq!(node.platforms, BTreeMap::from([("linux/amd64".to_owned(), amd64), ("linux/arm64".to_owned(), arm64)]));
    let absent = &updated.cluster["k3s"].airgap[0];
    assert!(
        absent.digest.is_none() && absent.unverified.as_deref().is_some_and(|r| r.contains("404") && r.contains("MANIFEST_UNKNOWN")),
        "{absent:?}"
    );

    let demo = &updated.components["demo"];
    let chart = demo.chart.as_ref().unwrap();
    assert_eq!(
        (chart.digest.as_deref(), chart.url.as_deref(), chart.unverified.as_deref()),
        (Some(sha256(&good).as_str()), Some(files.url("demo-0.1.0.tgz").as_str()), None)
    );
    assert_eq!((demo.files[0].sha256.as_deref(), demo.files[0].unverified.as_deref()), (Some(&sha256(&crds)[7..]), None));
    // A pinned sha256 the server no longer matches is kept, and flagged.
    assert_eq!(demo.files[1].sha256.as_deref(), Some(zeros.as_str()));
    assert!(demo.files[1].unverified.as_deref().is_some_and(|r| r.contains("keeps its sha256")), "{:?}", demo.files[1]);
    // An unreachable verified entry stays as it was.
    assert_eq!(demo.files[2], lock.components["demo"].files[2]);
    // The pinned digest is kept and resolved; the moved tag is reported.
    let moving = &demo.images[0];
    assert_eq!(moving.digest.as_deref(), Some(pinned.as_str()));
    assert_eq!(moving.platforms.len(), 2);
    assert!(moving.unverified.as_deref().is_some_and(|r| r.contains(&moved) && r.contains("keeps")), "{moving:?}");
    // The result reads back from its canonical form.
    assert_eq!(Lock::parse(&updated.to_yaml(), "updated").expect("reads back"), updated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_come_through_a_mirror_after_one_that_fails_and_never_from_upstream() {
    if !require("images_come_through_a_mirror_after_one_that_fails_and_never_from_upstream", true) {
        return;
    }
    // docker-registry stands in for a mirror of Docker Hub (as `registry.mirrors` names one):
    // the image is `docker.io/rancher/idp-bundle-mirrored:v1`, stored at its path.
    let registry = Registry::start();
    let (index, amd64, _, layer) = registry.push_index("rancher/idp-bundle-mirrored", "v1", "mirror");
    // A mirror that refuses connections, and one that answers 404 for everything, first.
    let dead = common::free_port();
    let empty = Registry::start();
    let mirrors = BTreeMap::from([(
        "index.docker.io".to_owned(),
        vec![format!("http://127.0.0.1:{dead}"), format!("{}/", empty.base()), registry.base()],
    )]);
    let client = client().with_mirrors(&mirrors);
    for reference in ["docker.io/rancher/idp-bundle-mirrored:v1", "rancher/idp-bundle-mirrored:v1"] {
        let resolved = client.resolve(reference).await.unwrap_or_else(|e| panic!("{reference} through the mirror: {e}"));
        assert_eq!(resolved.digest, index);
        assert_eq!(resolved.platforms.get("linux/amd64"), Some(&amd64));
    }
    assert_eq!(client.head_digest("docker.io/rancher/idp-bundle-mirrored:v1").await.expect("HEAD"), index);
    let mut bytes = Vec::new();
    client.blob("docker.io/rancher/idp-bundle-mirrored:v1", &sha256(&layer), &mut bytes).await.expect("blob through the mirror");
    assert_eq!(bytes, layer);
    // Mirrors are per registry: another registry's image is asked of that registry alone
    // (here the empty one, whose 404 is the answer, though Docker Hub's mirror holds it).
    let other = client.resolve(&format!("{}/rancher/idp-bundle-mirrored:v1", empty.host())).await.expect_err("not in that registry");
    assert!(matches!(other, ClientError::Status { status: 404, .. }), "{other}");
    // A digest a mirror serves is verified like any other: the corrupting proxy is caught.
    let proxy = corrupting_proxy(registry.port).await;
    let bad = self::client().with_mirrors(&BTreeMap::from([("docker.io".to_owned(), vec![format!("http://127.0.0.1:{proxy}")])]));
    let mut sink = Vec::new();
    let flipped = bad.blob("docker.io/rancher/idp-bundle-mirrored:v1", &sha256(&layer), &mut sink).await.expect_err("a flipped byte");
    assert!(matches!(flipped, ClientError::DigestMismatch { .. }), "{flipped}");
}
