//! Publishing to the lab registry against real software: the embedded registry
//! (idp-registry, served on a loopback port over a temporary `local/` directory and, for
//! the offline copy, a bundle `bundle create` made), Debian's docker-registry (CNCF
//! distribution 2.8) as a second target, skopeo as the independent reader, tar(1) to
//! unpack what was pushed, and python3's http.server as the Helm repository. A counting
//! proxy in front of the embedded registry shows what a publish sends.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use common::{FileServer, Registry as Distribution, require, run, sha256, tar_gz};
use idp_bundle::create::{CreateOptions, chart_ref_name, items_from_lock};
use idp_bundle::{BundleError, Client, Published, copy_chart_into_local, publish_chart, publish_chart_from_repository, publish_stack};
use idp_core::delivery::{STACK_FILE, STACK_LAYER_MEDIA_TYPE, StackArtifact};
use idp_core::diag::chain;
use idp_core::lock::Lock;
use idp_core::oci::{HELM_CHART_CONTENT, HELM_CONFIG, ImageManifest, OCI_EMPTY, OCI_EMPTY_DIGEST};
use idp_registry::{Access, Registry};
use serde_json::{Value, json};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

const CHART: &str = "demo";
const VERSION: &str = "0.1.0+build.1";
const TAG: &str = "0.1.0_build.1";

/// The embedded registry, served on 127.0.0.1 from this test's runtime; stopped when dropped.
struct Ours {
    port: u16,
    shutdown: CancellationToken,
    _local: tempfile::TempDir,
}

impl Ours {
    /// Over `layout` (a bundle tar, read-only) when given, and a new `local/` directory.
    async fn start(layout: Option<PathBuf>, access: Access) -> Ours {
        let local = tempfile::tempdir().unwrap();
        let dir = local.path().join("local");
        let registry = tokio::task::spawn_blocking(move || Registry::open(layout, dir)).await.unwrap().unwrap();
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let shutdown = CancellationToken::new();
        tokio::spawn(idp_registry::serve_with(listener, Arc::new(registry), access, shutdown.clone()));
        Ours { port, shutdown, _local: local }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Ours {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A TCP proxy to `upstream` on 127.0.0.1 recording every request line
/// (`HEAD /v2/local/stacks/demo/blobs/sha256:... HTTP/1.1`).
async fn counting_proxy(upstream: u16) -> (u16, Arc<Mutex<Vec<String>>>) {
    let requests = Arc::new(Mutex::new(Vec::new()));
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = requests.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect((Ipv4Addr::LOCALHOST, upstream)).await else { return };
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                let up = async {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match client_read.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let text = String::from_utf8_lossy(&buf[..n]);
                        for line in text.lines().filter(|l| {
                            ["GET ", "HEAD ", "POST ", "PUT ", "PATCH ", "DELETE "].iter().any(|m| l.starts_with(m))
                                && l.ends_with(" HTTP/1.1")
                        }) {
                            seen.lock().unwrap().push(line.to_owned());
                        }
                        if server_write.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = server_write.shutdown().await;
                };
                let down = async {
                    let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
                    let _ = client_write.shutdown().await;
                };
                tokio::join!(up, down);
            });
        }
    });
    (port, requests)
}

/// The embedded registry behind a counting proxy: the registry, the proxy's URL
/// (`http://127.0.0.1:<port>`) and its request lines.
async fn proxied(layout: Option<PathBuf>) -> (Ours, String, Arc<Mutex<Vec<String>>>) {
    let ours = Ours::start(layout, Access::Full).await;
    let (proxy, requests) = counting_proxy(ours.port).await;
    (ours, format!("http://127.0.0.1:{proxy}"), requests)
}

/// The request lines recorded since `from`, and the new mark.
fn since(requests: &Mutex<Vec<String>>, from: usize) -> (Vec<String>, usize) {
    let all = requests.lock().unwrap();
    (all[from..].to_vec(), all.len())
}

fn methods(lines: &[String]) -> Vec<&str> {
    lines.iter().map(|l| l.split(' ').next().unwrap_or_default()).collect()
}

/// `skopeo inspect --raw` of `reference` over plain HTTP.
fn raw_manifest(reference: &str) -> Vec<u8> {
    let out = std::process::Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false", &format!("docker://{reference}")])
        .output()
        .unwrap();
    assert!(out.status.success(), "skopeo inspect --raw {reference}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// `skopeo copy docker://<reference> dir:<dir>`: the manifest and every blob as files
/// named by their hex digest.
fn copy_to_dir(reference: &str, dir: &Path) {
    run("skopeo", &["copy", "--src-tls-verify=false", &format!("docker://{reference}"), &format!("dir:{}", dir.display())]);
}

fn stack() -> StackArtifact {
    StackArtifact::of(
        "demo-stack",
        &[
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "one", "namespace": "demo"}, "data": {"k": "v <&>"}}),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "two", "namespace": "demo"}, "stringData": {"a": "b"}}),
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stack_artifact_is_published_once_and_reads_back_everywhere_with_one_digest() {
    if !require("a_stack_artifact_is_published_once_and_reads_back_everywhere_with_one_digest", false) {
        return;
    }
    let (_ours, registry, requests) = proxied(None).await;
    let artifact = stack();
    let host = registry.trim_start_matches("http://");

    let first = publish_stack(&registry, &artifact).await.unwrap_or_else(|e| panic!("{}", chain(&e)));
    let reference = format!("{host}/local/stacks/demo-stack:{}", artifact.tag);
    assert_eq!((first.reference.as_str(), first.sent, first.blobs_sent), (reference.as_str(), true, 2));
    let (lines, mark) = since(&requests, 0);
    assert_eq!(methods(&lines), ["HEAD", "HEAD", "POST", "PUT", "HEAD", "POST", "PUT", "PUT"], "{lines:#?}");

    // Again: only HEADs (the tag and both blobs), nothing sent.
    let again = publish_stack(&registry, &artifact).await.unwrap();
    assert_eq!(again, Published { sent: false, blobs_sent: 0, ..first.clone() });
    let (lines, _) = since(&requests, mark);
    assert_eq!(methods(&lines), ["HEAD", "HEAD", "HEAD"], "a re-publish only asks: {lines:#?}");

    // skopeo reads the manifest as published: the empty config, one tar+gzip layer.
    let raw = raw_manifest(&reference);
    assert_eq!(sha256(&raw), first.digest.to_string(), "skopeo gets the bytes of the published digest");
    let manifest: ImageManifest = serde_json::from_slice(&raw).unwrap();
    assert_eq!(manifest.config.media_type, OCI_EMPTY);
    assert_eq!((manifest.config.digest.to_string().as_str(), manifest.config.size), (OCI_EMPTY_DIGEST, 2));
    assert_eq!(manifest.layers.len(), 1);
    assert_eq!(manifest.layers[0].media_type, STACK_LAYER_MEDIA_TYPE);
    assert!(manifest.layers[0].annotation("org.opencontainers.image.title").is_some());

    // skopeo copies it out; the layer unpacks (tar(1)) to manifests.yaml, exactly.
    let out = tempfile::tempdir().unwrap();
    let copied = out.path().join("copied");
    copy_to_dir(&reference, &copied);
    assert_eq!(std::fs::read(copied.join(OCI_EMPTY_DIGEST.trim_start_matches("sha256:"))).unwrap(), b"{}");
    let layer = copied.join(manifest.layers[0].digest.hex());
    let listing =
        std::process::Command::new("tar").args(["--full-time", "--numeric-owner", "-tvzf"]).arg(&layer).env("TZ", "UTC").output().unwrap();
    assert!(listing.status.success(), "tar -tvzf: {}", String::from_utf8_lossy(&listing.stderr));
    let listing = String::from_utf8_lossy(&listing.stdout).into_owned();
    let lines: Vec<&str> = listing.lines().collect();
    assert_eq!(lines.len(), 1, "one file: {listing}");
    assert!(lines[0].starts_with("-rw-r--r-- 0/0 "), "mode 0644, owner 0/0: {listing}");
    assert!(lines[0].contains(" 1970-01-01 00:00:00 ") && lines[0].ends_with(&format!(" {STACK_FILE}")), "mtime 0: {listing}");
    let unpacked = out.path().join("unpacked");
    std::fs::create_dir_all(&unpacked).unwrap();
    run("tar", &["-xzf", &layer.display().to_string(), "-C", &unpacked.display().to_string()]);
    assert_eq!(std::fs::read_to_string(unpacked.join(STACK_FILE)).unwrap(), artifact.manifests);
    assert!(artifact.manifests.contains("v <&>"), "the content is the render's, not escaped");

    // A second, independent registry: distribution computes the same digest.
    let dist = Distribution::start();
    let there = publish_stack(&dist.base(), &artifact).await.unwrap_or_else(|e| panic!("{}", chain(&e)));
    assert_eq!((there.digest.clone(), there.sent, there.blobs_sent), (first.digest.clone(), true, 2));
    assert_eq!(dist.content_digest("local/stacks/demo-stack", &artifact.tag), first.digest.to_string());
    assert_eq!(raw_manifest(&format!("{}/local/stacks/demo-stack:{}", dist.host(), artifact.tag)), raw);
    let again = publish_stack(&dist.base(), &artifact).await.unwrap();
    assert!(!again.sent && again.blobs_sent == 0, "{again:?}");

    // Other manifests: another tag and another digest, the shared empty config not sent again.
    let other = StackArtifact::of("demo-stack", &[json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "three"}})]);
    let next = publish_stack(&registry, &other).await.unwrap();
    assert_ne!((&next.digest, &other.tag), (&first.digest, &artifact.tag));
    assert_eq!((next.sent, next.blobs_sent), (true, 1), "only the new layer");
}

/// A chart package as `helm package` lays it out (`<name>/Chart.yaml` and friends), made
/// reproducibly by tar(1) (mtime 0).
fn package_chart(dir: &Path, name: &str, version: &str, chart_yaml: Option<&str>) -> Vec<u8> {
    let src = dir.join(format!("src-{name}-{version}-{}", chart_yaml.is_some()));
    std::fs::create_dir_all(src.join(name).join("templates")).unwrap();
    if let Some(text) = chart_yaml {
        std::fs::write(src.join(name).join("Chart.yaml"), text).unwrap();
    }
    std::fs::write(src.join(name).join("values.yaml"), "replicas: 1\n").unwrap();
    std::fs::write(src.join(name).join("templates/cm.yaml"), format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\n"))
        .unwrap();
    tar_gz(&src, name, &dir.join(format!("{name}-{version}-{}.tgz", chart_yaml.is_some())))
}

const CHART_YAML: &str = "apiVersion: v2\nname: demo\nversion: 0.1.0+build.1\ndescription: A demo chart\nappVersion: \"2.0\"\nmaintainers:\n  - name: Ann\n    email: ann@example.org\n";

/// A bundle of the chart, made by `bundle create` from a Helm repository served by
/// python3's http.server; (bundle path, the chart's name in the bundle).
async fn bundle_of(dir: &Path, package: &[u8]) -> (PathBuf, String, FileServer) {
    let repo = dir.join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::write(repo.join("demo-0.1.0.tgz"), package).unwrap();
    std::fs::write(
        repo.join("index.yaml"),
        format!(
            "apiVersion: v1\nentries:\n  demo:\n    - name: demo\n      version: {VERSION}\n      urls: [demo-0.1.0.tgz]\n      digest: {}\n",
            &sha256(package)[7..]
        ),
    )
    .unwrap();
    let files = FileServer::start(&repo);
    let lock = format!(
        "version: 1\ncomponents:\n  demo:\n    chart:\n      repository: \"{}\"\n      name: \"{CHART}\"\n      version: \"{VERSION}\"\n      digest: \"{}\"\n",
        files.url(""),
        sha256(package)
    );
    let lock = Lock::parse(&lock, "test-lock.yaml").unwrap_or_else(|e| panic!("the test lock parses:\n{e}"));
    let items = items_from_lock(&lock.entries()).unwrap();
    let out = dir.join("bundle.tar");
    let options = CreateOptions { out: out.clone(), platforms: vec!["linux/amd64".into()], allow_unverified: false };
    idp_bundle::create(&Client::new().unwrap(), &items, &options, &mut |_| {}).await.unwrap_or_else(|e| panic!("{}", chain(&e)));
    let name = chart_ref_name(&files.url(""), CHART, VERSION).unwrap();
    (out, name, files)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chart_is_published_as_helm_pushes_it_with_one_digest_offline_and_online() {
    if !require("a_chart_is_published_as_helm_pushes_it_with_one_digest_offline_and_online", false) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let package = package_chart(dir.path(), CHART, VERSION, Some(CHART_YAML));
    let (bundle, from_ref, files) = bundle_of(dir.path(), &package).await;
    assert_eq!(from_ref, format!("127.0.0.1:{}/demo:{TAG}", files.port));

    // Offline: the lab registry serves the bundle; the chart is copied into local/charts.
    let (ours, lab, requests) = proxied(Some(bundle)).await;
    let copied = copy_chart_into_local(&lab, &from_ref, CHART, VERSION).await.unwrap_or_else(|e| panic!("{}", chain(&e)));
    let reference = format!("{}/local/charts/demo:{TAG}", lab.trim_start_matches("http://"));
    assert_eq!((copied.reference.as_str(), copied.sent, copied.blobs_sent), (reference.as_str(), true, 2));

    // Online, the same package: the same manifest digest, so nothing to send.
    let (_, mark) = since(&requests, 0);
    let published = publish_chart(&lab, CHART, VERSION, package.clone().into()).await.unwrap_or_else(|e| panic!("{}", chain(&e)));
    assert_eq!(published, Published { sent: false, blobs_sent: 0, ..copied.clone() }, "offline and online agree");
    let (lines, _) = since(&requests, mark);
    assert!(methods(&lines).iter().all(|m| *m == "HEAD"), "{lines:#?}");

    // What skopeo reads is what `helm push` writes: no mediaType field, Helm's config
    // (Chart.yaml as Go marshals it) and annotations, the package as the one layer.
    let raw = raw_manifest(&reference);
    assert_eq!(sha256(&raw), copied.digest.to_string());
    let value: Value = serde_json::from_slice(&raw).unwrap();
    assert!(value.get("mediaType").is_none(), "Helm 3 writes no mediaType: {value}");
    let manifest: ImageManifest = serde_json::from_slice(&raw).unwrap();
    assert_eq!(manifest.config.media_type, HELM_CONFIG);
    assert_eq!(manifest.layers.len(), 1);
    assert_eq!((manifest.layers[0].media_type.as_str(), manifest.layers[0].digest.to_string()), (HELM_CHART_CONTENT, sha256(&package)));
    assert!(manifest.layers[0].annotations.is_none(), "helm push annotates no layer");
    let annotations = manifest.annotations.clone().unwrap_or_default();
    let annotation = |k: &str| annotations.get(k).map(String::as_str);
    assert_eq!(annotation("org.opencontainers.image.title"), Some(CHART));
    assert_eq!(annotation("org.opencontainers.image.version"), Some(VERSION));
    assert_eq!(annotation("org.opencontainers.image.description"), Some("A demo chart"));
    assert_eq!(annotation("org.opencontainers.image.authors"), Some("Ann (ann@example.org)"));
    assert_eq!(annotation("org.opencontainers.image.created"), Some("1970-01-01T00:00:00Z"), "the Chart.yaml entry's mtime");
    let out = tempfile::tempdir().unwrap();
    copy_to_dir(&reference, out.path());
    assert_eq!(
        std::fs::read_to_string(out.path().join(manifest.config.digest.hex())).unwrap(),
        r#"{"name":"demo","version":"0.1.0+build.1","description":"A demo chart","maintainers":[{"name":"Ann","email":"ann@example.org"}],"apiVersion":"v2","appVersion":"2.0"}"#
    );
    assert_eq!(std::fs::read(out.path().join(manifest.layers[0].digest.hex())).unwrap(), package, "the package, byte for byte");

    // Distribution: the same digest, by its own computation.
    let dist = Distribution::start();
    let there = publish_chart(&dist.base(), CHART, VERSION, package.clone().into()).await.unwrap_or_else(|e| panic!("{}", chain(&e)));
    assert_eq!((there.digest.clone(), there.sent), (copied.digest.clone(), true));
    assert_eq!(dist.content_digest("local/charts/demo", TAG), copied.digest.to_string());

    // Online from the lock: from the Helm repository (verified against the lock's digest),
    // and from an OCI registry (distribution, by the manifest digest): the same digest.
    let client = Client::new().unwrap();
    let lock = format!(
        "version: 1\ncomponents:\n  http:\n    chart:\n      repository: \"{}\"\n      name: \"{CHART}\"\n      version: \"{VERSION}\"\n      digest: \"{}\"\n  oci:\n    chart:\n      repository: \"oci://{}/local/charts\"\n      name: \"{CHART}\"\n      version: \"{VERSION}\"\n      digest: \"{}\"\n  unpinned:\n    chart:\n      repository: \"{}\"\n      name: \"{CHART}\"\n      version: \"{VERSION}\"\n      unverified: \"not resolved\"\n",
        files.url(""),
        sha256(&package),
        dist.host(),
        copied.digest,
        files.url("")
    );
    let lock = Lock::parse(&lock, "test-lock.yaml").unwrap_or_else(|e| panic!("{e}"));
    let chart_of = |c: &str| lock.components[c].chart.clone().unwrap();
    for component in ["http", "oci"] {
        let fresh = Ours::start(None, Access::Full).await;
        let p = publish_chart_from_repository(&client, &fresh.url(), &chart_of(component))
            .await
            .unwrap_or_else(|e| panic!("{component}: {}", chain(&e)));
        assert_eq!((p.digest.clone(), p.sent, p.blobs_sent), (copied.digest.clone(), true, 2), "{component}");
    }
    let e = publish_chart_from_repository(&client, &ours.url(), &chart_of("unpinned")).await.expect_err("unpinned");
    assert!(matches!(&e, BundleError::Unverified { entries } if entries.as_slice() == std::slice::from_ref(&from_ref)), "{e}");
    let mut wrong = chart_of("http");
    wrong.digest = Some(format!("sha256:{}", "0".repeat(64)));
    let e = publish_chart_from_repository(&client, &ours.url(), &wrong).await.expect_err("a digest the package does not have");
    assert!(matches!(&e, BundleError::Fetch { .. }), "{}", chain(&e));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_name_the_package_or_the_registry_and_repository() {
    if !require("refusals_name_the_package_or_the_registry_and_repository", false) {
        return;
    }
    let (_ours, lab, requests) = proxied(None).await;
    let dir = tempfile::tempdir().unwrap();

    // Packages that are not this chart: refused before anything is sent.
    let e = publish_chart(&lab, CHART, VERSION, b"PK\x03\x04 not a tgz".to_vec().into()).await.expect_err("not gzip");
    assert!(matches!(e, BundleError::Package { .. }), "{e:?}");
    assert_eq!(
        chain(&e),
        "the package of chart demo 0.1.0+build.1 is not gzip-compressed (a .tgz starts with 1f8b; this starts with \"504b\")"
    );
    let no_chart_yaml = package_chart(dir.path(), CHART, VERSION, None);
    let e = publish_chart(&lab, CHART, VERSION, no_chart_yaml.into()).await.expect_err("no Chart.yaml");
    assert_eq!(chain(&e), "the package of chart demo 0.1.0+build.1 has no demo/Chart.yaml");
    let other = package_chart(dir.path(), CHART, "9.9.9", Some("apiVersion: v2\nname: demo\nversion: 9.9.9\n"));
    let e = publish_chart(&lab, CHART, VERSION, other.into()).await.expect_err("another version");
    assert_eq!(chain(&e), "the package of chart demo 0.1.0+build.1 is version \"9.9.9\" (demo/Chart.yaml says so)");
    assert!(requests.lock().unwrap().is_empty(), "nothing sent for a refused package");

    // The mirror is read-only: a push outside local/ is refused by the registry, and the
    // error names the registry and the repository.
    let outside = StackArtifact { repository: "stacks/demo".into(), ..stack() };
    let e = publish_stack(&lab, &outside).await.expect_err("outside local/");
    let text = chain(&e);
    assert!(matches!(&e, BundleError::Publish { registry, repository, .. } if registry == &lab && repository == "stacks/demo"), "{text}");
    assert!(text.starts_with(&format!("failed to publish stacks/demo:{} to {lab}: ", outside.tag)), "{text}");
    assert!(text.contains("answered 405") && text.contains("read-only"), "{text}");

    // A read-only listener (a workshop's LAN) denies every write: 403 DENIED.
    let registry = Registry::open(None, dir.path().join("ro-local")).unwrap();
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let ro = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let stop = CancellationToken::new();
    tokio::spawn(idp_registry::serve_with(listener, Arc::new(registry), Access::MirrorOnly, stop.clone()));
    let e = publish_stack(&ro, &stack()).await.expect_err("read-only");
    let text = chain(&e);
    assert!(text.starts_with(&format!("failed to publish local/stacks/demo-stack:{} to {ro}: ", stack().tag)), "{text}");
    assert!(text.contains("answered 403") && text.contains("DENIED"), "{text}");
    stop.cancel();

    // Nothing listening: the same names, and the transport's error.
    let closed = format!("http://127.0.0.1:{}", common::free_port());
    let e = tokio::time::timeout(Duration::from_secs(60), publish_stack(&closed, &stack())).await.unwrap().expect_err("closed");
    assert!(
        chain(&e).starts_with(&format!("failed to publish local/stacks/demo-stack:{} to {closed}: failed to HEAD ", stack().tag)),
        "{}",
        chain(&e)
    );
    let e = publish_stack("127.0.0.1:5000", &stack()).await.expect_err("not a URL");
    assert!(chain(&e).contains("invalid registry URL \"127.0.0.1:5000\""), "{}", chain(&e));

    // Copies: a chart the mirror lacks, and an artifact that is not a chart.
    let e = copy_chart_into_local(&lab, "charts.example.org/demo:1.0.0", CHART, "1.0.0").await.expect_err("absent");
    let text = chain(&e);
    assert!(text.starts_with("failed to fetch charts.example.org/demo:1.0.0: ") && text.contains("answered 404"), "{text}");
    let artifact = stack();
    publish_stack(&lab, &artifact).await.unwrap();
    let e = copy_chart_into_local(&lab, &format!("local/stacks/demo-stack:{}", artifact.tag), CHART, "1.0.0").await.expect_err("a stack");
    assert!(matches!(&e, BundleError::NotAChart { .. }), "{e:?}");
    assert!(chain(&e).contains(&format!("its config is {OCI_EMPTY}")), "{}", chain(&e));
}
