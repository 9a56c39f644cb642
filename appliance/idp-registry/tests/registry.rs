//! idp-registry against real software on real sockets on 127.0.0.1: CNCF distribution
//! 2.8 (Debian's `docker-registry`) holds the seeded images and serves them side by side
//! with ours, skopeo builds the layout and copies out of ours, Docker pulls and pushes.
//!
//! Docker is a test-bed need (skip rule of `idp-test`); `docker-registry` and `skopeo`
//! follow the same rule: a skip outside CI, a failure with `CI=true`.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use idp_core::oci::{self, Descriptor, Digest, ImageIndex, OCI_CONFIG, OCI_INDEX, OCI_LAYER_TAR, OCI_MANIFEST, Platform};
use idp_registry::{Access, Registry, RegistryError};
use idp_test::process::Supervised;
use idp_test::testbed::{in_ci, report_skip};
use idp_test::{Need, require};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// How to get the tools on a Debian machine.
const INSTALL: &str = "printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && \
     apt-get install -y docker-registry skopeo; rm /usr/sbin/policy-rc.d (the policy keeps the registry's own service from starting)";

/// Whether every tool is on `PATH`; otherwise the skip rule: a panic in CI, a loud skip
/// elsewhere.
fn tools_present(test: &str, tools: &[&str]) -> bool {
    let missing: Vec<&str> = tools.iter().copied().filter(|tool| which(tool).is_none()).collect();
    if missing.is_empty() {
        return true;
    }
    let reason = format!("{} not on PATH", missing.join(" and "));
    if in_ci() {
        panic!("{test} cannot run in CI: {reason}\nto install: {INSTALL}");
    }
    report_skip(test, &format!("{reason} (to install: {INSTALL})"));
    false
}

fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(tool)).find(|candidate| candidate.is_file())
}

macro_rules! require_tools {
    ($($tool:expr),+) => {
        if !tools_present(idp_test::test_name!(), &[$($tool),+]) {
            return;
        }
    };
}

/// A unique suffix for names this run creates.
fn unique() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("{}-{nanos:x}", std::process::id())
}

/// A free port on 127.0.0.1 (bound and released; the process that takes it next binds it
/// right away).
fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

// ---------------------------------------------------------------------------------
// A plain HTTP/1.1 client: one request per connection, bytes as they are on the wire
// (no normalisation of the request target, which traversal tests rely on).

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn code(&self) -> String {
        let json: Value = serde_json::from_slice(&self.body).unwrap_or(Value::Null);
        json["errors"][0]["code"].as_str().unwrap_or_default().to_owned()
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

async fn http(addr: SocketAddr, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> anyhow::Result<Reply> {
    let mut tcp = TcpStream::connect(addr).await.with_context(|| format!("failed to connect to {addr}"))?;
    let mut request = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    tcp.write_all(request.as_bytes()).await?;
    tcp.write_all(body).await?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), tcp.read_to_end(&mut raw)).await.context("no answer within 60 s")??;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").context("no end of headers")?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).context("no status line")?;
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned())).collect();
    let mut body = raw[split + 4..].to_vec();
    if headers.iter().any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked")) {
        body = dechunk(&body)?;
    }
    Ok(Reply { status, headers, body })
}

fn dechunk(mut raw: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = raw.windows(2).position(|w| w == b"\r\n").context("bad chunk")?;
        let size = usize::from_str_radix(String::from_utf8_lossy(&raw[..line_end]).split(';').next().unwrap_or("").trim(), 16)?;
        raw = &raw[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(raw.get(..size).context("short chunk")?);
        raw = raw.get(size + 2..).context("short chunk")?;
    }
}

/// The path and query of a `Location` header (distribution answers absolute URLs).
fn location_target(location: &str) -> String {
    match location.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or_else(|| "/".to_owned(), |i| rest[i..].to_owned()),
        None => location.to_owned(),
    }
}

/// Pushes a blob through the API: POST, then PUT with the whole body.
async fn push_blob(addr: SocketAddr, repo: &str, media_type: &str, bytes: &[u8]) -> anyhow::Result<Descriptor> {
    let digest = Digest::of(bytes);
    let start = http(addr, "POST", &format!("/v2/{repo}/blobs/uploads/"), &[], b"").await?;
    ensure!(start.status == 202, "POST upload: {} {}", start.status, start.text());
    let target = location_target(start.header("location").context("no Location")?);
    let sep = if target.contains('?') { '&' } else { '?' };
    let put = http(addr, "PUT", &format!("{target}{sep}digest={digest}"), &[("Content-Type", "application/octet-stream")], bytes).await?;
    ensure!(put.status == 201, "PUT upload: {} {}", put.status, put.text());
    Ok(Descriptor::new(media_type, digest, bytes.len() as u64))
}

async fn push_manifest(addr: SocketAddr, repo: &str, reference: &str, media_type: &str, bytes: &[u8]) -> anyhow::Result<Descriptor> {
    let put = http(addr, "PUT", &format!("/v2/{repo}/manifests/{reference}"), &[("Content-Type", media_type)], bytes).await?;
    ensure!(put.status == 201, "PUT manifest: {} {}", put.status, put.text());
    Ok(Descriptor::new(media_type, Digest::of(bytes), bytes.len() as u64))
}

/// An uncompressed layer holding `files`.
fn layer_tar(files: &[(&str, &[u8])]) -> anyhow::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(1_700_000_000);
        header.set_cksum();
        builder.append_data(&mut header, name, *data)?;
    }
    Ok(builder.into_inner()?)
}

fn pseudo_random(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x.to_le_bytes()[0]
        })
        .collect()
}

// ---------------------------------------------------------------------------------
// The servers.

/// CNCF distribution on a port of its own.
struct Distribution {
    _process: Supervised,
    addr: SocketAddr,
}

impl Distribution {
    async fn start(workdir: &Path) -> anyhow::Result<Distribution> {
        let port = free_port()?;
        let config = workdir.join("distribution.yml");
        let data = workdir.join("distribution-data");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                data.display()
            ),
        )?;
        let binary = which("docker-registry").context("docker-registry is not on PATH")?;
        let mut process = Supervised::spawn("docker-registry", &binary, ["serve".as_ref(), config.as_os_str()], workdir)?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            process.ensure_running()?;
            if let Ok(reply) = http(addr, "GET", "/v2/", &[], b"").await
                && reply.status == 200
            {
                return Ok(Distribution { _process: process, addr });
            }
            if Instant::now() > deadline {
                bail!("docker-registry did not answer on {addr}; log:\n{}", process.log_tail(20));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Our registry, served on 127.0.0.1 from this test's runtime.
struct Ours {
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), idp_registry::RegistryError>>,
}

impl Ours {
    async fn start(layout: Option<PathBuf>, local: PathBuf) -> anyhow::Result<Ours> {
        let registry = tokio::task::spawn_blocking(move || Registry::open(layout, local)).await??;
        Ours::serve(Arc::new(registry), Access::Full).await
    }

    /// Another listener for a registry already open, with its own access.
    async fn serve(registry: Arc<Registry>, access: Access) -> anyhow::Result<Ours> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(idp_registry::serve_with(listener, registry, access, shutdown.clone()));
        Ok(Ours { addr, shutdown, task })
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        tokio::time::timeout(idp_registry::DRAIN_TIMEOUT + Duration::from_secs(2), self.task).await.context("serve did not stop")???;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------
// Tools.

async fn run(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .with_context(|| format!("failed to run {program}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    ensure!(
        out.status.success(),
        "{program} {} failed ({}):\n{stdout}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(stdout)
}

async fn skopeo(args: &[&str]) -> anyhow::Result<String> {
    run("skopeo", args).await
}

async fn docker(args: &[&str]) -> anyhow::Result<String> {
    run("docker", args).await
}

/// Docker image references this test created, removed on drop (also on panic). Only
/// references made here are ever removed.
#[derive(Default)]
struct Images(std::sync::Mutex<Vec<String>>);

impl Images {
    fn add(&self, reference: &str) {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(reference.to_owned());
    }

    async fn remove(&self, reference: &str) -> anyhow::Result<()> {
        docker(&["rmi", reference]).await?;
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).retain(|r| r != reference);
        Ok(())
    }
}

impl Drop for Images {
    fn drop(&mut self) {
        let refs = std::mem::take(&mut *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        for reference in refs {
            let _ = std::process::Command::new("docker").args(["rmi", "-f", &reference]).output();
        }
    }
}

/// `docker import` of a one-file tar as `reference`; the image id.
async fn import(images: &Images, dir: &Path, reference: &str, content: &[u8]) -> anyhow::Result<String> {
    let tar = dir.join(format!("import-{}.tar", Digest::of(reference.as_bytes()).hex()));
    std::fs::write(&tar, layer_tar(&[("content.txt", content)])?)?;
    let tar = tar.to_str().context("a UTF-8 path")?;
    images.add(reference);
    let id = docker(&["import", tar, reference]).await?;
    Ok(id.trim().to_owned())
}

// ---------------------------------------------------------------------------------
// The seeded content.

struct Seeded {
    /// `org/multi:1` in distribution: a two-platform index; in the layout
    /// `ghcr.io/org/multi:1`.
    index: Descriptor,
    amd64: Descriptor,
    amd64_config: Descriptor,
    /// A layer both platforms and `org/other` share.
    shared: Descriptor,
    /// A 3 MiB layer of the amd64 image, and its bytes.
    big: (Descriptor, Vec<u8>),
    /// `org/other:1` in distribution: one image sharing `shared`; in the layout
    /// `docker.io/org/multi:1`, the same path as the index on another registry.
    other: Descriptor,
}

fn config(arch: &str, layers: &[&Descriptor]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "architecture": arch,
        "os": "linux",
        "config": { "Cmd": ["/content.txt"] },
        "rootfs": { "type": "layers", "diff_ids": layers.iter().map(|l| l.digest.to_string()).collect::<Vec<_>>() },
    }))
    .unwrap_or_default()
}

fn manifest(config: &Descriptor, layers: &[&Descriptor]) -> Vec<u8> {
    let value = oci::ImageManifest {
        schema_version: 2,
        media_type: Some(OCI_MANIFEST.into()),
        artifact_type: None,
        config: config.clone(),
        layers: layers.iter().map(|l| (*l).clone()).collect(),
        subject: None,
        annotations: None,
    };
    serde_json::to_vec(&value).unwrap_or_default()
}

/// Pushes a multi-layer, two-platform index and an image sharing a layer with it into
/// distribution, through its API.
async fn seed(dist: SocketAddr) -> anyhow::Result<Seeded> {
    let shared = push_blob(dist, "org/multi", OCI_LAYER_TAR, &layer_tar(&[("shared.bin", &pseudo_random(64 * 1024, 1))])?).await?;
    let big_bytes = layer_tar(&[("big.bin", &pseudo_random(3 * 1024 * 1024, 2))])?;
    let big = push_blob(dist, "org/multi", OCI_LAYER_TAR, &big_bytes).await?;
    let arm = push_blob(dist, "org/multi", OCI_LAYER_TAR, &layer_tar(&[("arm.bin", b"arm64 only")])?).await?;
    let amd64_config = push_blob(dist, "org/multi", OCI_CONFIG, &config("amd64", &[&shared, &big])).await?;
    let arm64_config = push_blob(dist, "org/multi", OCI_CONFIG, &config("arm64", &[&shared, &arm])).await?;
    let amd64 = push_manifest(dist, "org/multi", "amd64", OCI_MANIFEST, &manifest(&amd64_config, &[&shared, &big])).await?;
    let arm64 = push_manifest(dist, "org/multi", "arm64", OCI_MANIFEST, &manifest(&arm64_config, &[&shared, &arm])).await?;
    let platform =
        |arch: &str| Some(Platform { architecture: arch.into(), os: "linux".into(), os_version: None, os_features: None, variant: None });
    let mut entries = vec![amd64.clone(), arm64];
    entries[0].platform = platform("amd64");
    entries[1].platform = platform("arm64");
    let index = ImageIndex { manifests: entries, ..ImageIndex::empty() };
    let index = push_manifest(dist, "org/multi", "1", OCI_INDEX, &serde_json::to_vec(&index)?).await?;

    let shared_again = push_blob(dist, "org/other", OCI_LAYER_TAR, &layer_tar(&[("shared.bin", &pseudo_random(64 * 1024, 1))])?).await?;
    ensure!(shared_again == shared, "the shared layer is byte-identical");
    let own = push_blob(dist, "org/other", OCI_LAYER_TAR, &layer_tar(&[("other.bin", b"other")])?).await?;
    let other_config = push_blob(dist, "org/other", OCI_CONFIG, &config("amd64", &[&shared, &own])).await?;
    let other = push_manifest(dist, "org/other", "1", OCI_MANIFEST, &manifest(&other_config, &[&shared, &own])).await?;
    Ok(Seeded { index, amd64, amd64_config, shared, big: (big, big_bytes), other })
}

/// Copies the seeded images (and `base`, a Docker-imported image distribution holds as
/// `library/base:1`) into an OCI layout with skopeo.
async fn make_layout(dist: SocketAddr, layout: &Path) -> anyhow::Result<()> {
    copy_seeded(dist, layout).await?;
    let dest = format!("oci:{}:docker.io/library/base:1", layout.display());
    skopeo(&["copy", "--src-tls-verify=false", &format!("docker://{dist}/library/base:1"), &dest]).await?;
    Ok(())
}

/// Copies the seeded images (not `base`) into an OCI layout with skopeo:
/// `ghcr.io/org/multi:1` (the index) and `docker.io/org/multi:1` (`org/other`).
async fn copy_seeded(dist: SocketAddr, layout: &Path) -> anyhow::Result<()> {
    let dest = |name: &str| format!("oci:{}:{name}", layout.display());
    let src = |repo: &str| format!("docker://{dist}/{repo}");
    // Uncompressed layers stay as they are, so the layout keeps distribution's digests.
    let keep = ["--preserve-digests", "--dest-oci-accept-uncompressed-layers", "--src-tls-verify=false"];
    skopeo(&[&["copy", "--all"], &keep[..], &[&src("org/multi:1"), &dest("ghcr.io/org/multi:1")]].concat()).await?;
    skopeo(&[&["copy"], &keep[..], &[&src("org/other:1"), &dest("docker.io/org/multi:1")]].concat()).await?;
    Ok(())
}

/// The descriptor `index.json` of `layout` gives `ref_name`.
fn layout_entry(layout: &Path, ref_name: &str) -> anyhow::Result<Descriptor> {
    let index: ImageIndex = serde_json::from_slice(&std::fs::read(layout.join("index.json"))?)?;
    index.manifests.into_iter().find(|d| d.ref_name() == Some(ref_name)).with_context(|| format!("{ref_name} is not in the layout"))
}

/// Every blob `root` reaches in `layout`.
fn reachable(layout: &Path, root: &Descriptor) -> anyhow::Result<Vec<oci::Blob>> {
    let path = |d: &Digest| layout.join("blobs/sha256").join(d.hex());
    Ok(oci::walk(root, |d| std::fs::read(path(d)).map(Some), |d| std::fs::metadata(path(d)).map(|m| Some(m.len())))?)
}

/// The hex-named files of a `dir:` copy, each checked to hash to its name.
fn dir_blobs(dir: &Path) -> anyhow::Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let hex = name.strip_suffix(".manifest.json").unwrap_or(&name);
        if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            let actual = Digest::of(&std::fs::read(entry.path())?);
            ensure!(actual.hex() == hex, "{name} in {} hashes to {actual}", dir.display());
            out.insert(hex.to_owned());
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------
// The tests.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_serves_a_skopeo_layout_like_distribution_to_skopeo_and_docker() {
    let _testbed = require!(Need::Docker);
    require_tools!("docker-registry", "skopeo");
    if let Err(e) = mirror_scenario().await {
        panic!("{e:#}");
    }
}

async fn mirror_scenario() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let images = Images::default();
    let dist = Distribution::start(dir.path()).await?;
    let seeded = seed(dist.addr).await?;
    let base_ref = format!("idp-registry-test/base-{}:1", unique());
    import(&images, dir.path(), &base_ref, b"a docker-imported image").await?;
    skopeo(&["copy", "--dest-tls-verify=false", &format!("docker-daemon:{base_ref}"), &format!("docker://{}/library/base:1", dist.addr)])
        .await?;
    images.remove(&base_ref).await?;

    let layout = dir.path().join("layout");
    make_layout(dist.addr, &layout).await?;
    // skopeo kept distribution's digests for the OCI content it copied.
    let index_entry = layout_entry(&layout, "ghcr.io/org/multi:1")?;
    ensure!(index_entry.digest == seeded.index.digest, "layout index {} vs distribution {}", index_entry.digest, seeded.index.digest);
    let other_entry = layout_entry(&layout, "docker.io/org/multi:1")?;
    ensure!(other_entry.digest == seeded.other.digest);
    let base_entry = layout_entry(&layout, "docker.io/library/base:1")?;

    let ours = Ours::start(Some(layout.clone()), dir.path().join("local")).await?;
    let (us, them) = (ours.addr, dist.addr);

    // Side by side with distribution: the same status, type, digest and length.
    let pairs = [
        ("HEAD", "/v2/org/multi/manifests/1?ns=ghcr.io".to_owned(), "/v2/org/multi/manifests/1".to_owned()),
        ("GET", "/v2/ghcr.io/org/multi/manifests/1".to_owned(), "/v2/org/multi/manifests/1".to_owned()),
        (
            "GET",
            format!("/v2/org/multi/manifests/{}?ns=ghcr.io", seeded.amd64.digest),
            format!("/v2/org/multi/manifests/{}", seeded.amd64.digest),
        ),
        (
            "HEAD",
            format!("/v2/org/multi/blobs/{}?ns=ghcr.io", seeded.shared.digest),
            format!("/v2/org/multi/blobs/{}", seeded.shared.digest),
        ),
        (
            "GET",
            format!("/v2/org/multi/blobs/{}?ns=ghcr.io", seeded.amd64_config.digest),
            format!("/v2/org/multi/blobs/{}", seeded.amd64_config.digest),
        ),
        ("GET", "/v2/org/multi/manifests/1?ns=docker.io".to_owned(), "/v2/org/other/manifests/1".to_owned()),
    ];
    // Distribution answers an OCI index only to a client that accepts one.
    let accept = [("Accept", ACCEPT)];
    for (method, ours_target, theirs_target) in &pairs {
        let a = http(us, method, ours_target, &accept, b"").await?;
        let b = http(them, method, theirs_target, &accept, b"").await?;
        ensure!(a.status == 200 && b.status == 200, "{method} {ours_target}: {} vs {} ({})", a.status, b.status, a.text());
        for header in ["content-type", "docker-content-digest", "content-length"] {
            ensure!(
                a.header(header) == b.header(header),
                "{method} {ours_target}: {header} {:?} vs distribution {:?}",
                a.header(header),
                b.header(header)
            );
        }
        ensure!(a.body == b.body, "{method} {ours_target}: the bodies differ");
        ensure!(a.header("docker-distribution-api-version") == Some("registry/2.0"));
    }

    // Range, against the layer's bytes and distribution's answer.
    let (big, big_bytes) = &seeded.big;
    let size = big_bytes.len();
    for (range, start, end) in [("bytes=1000-2000000", 1000, 2_000_000), ("bytes=3000000-", 3_000_000, size - 1), ("bytes=0-0", 0, 0)] {
        let a = http(us, "GET", &format!("/v2/ghcr.io/org/multi/blobs/{}", big.digest), &[("Range", range)], b"").await?;
        let b = http(them, "GET", &format!("/v2/org/multi/blobs/{}", big.digest), &[("Range", range)], b"").await?;
        ensure!(a.status == 206, "{range}: {} {}", a.status, a.text());
        ensure!(
            a.header("content-range") == Some(format!("bytes {start}-{end}/{size}").as_str()),
            "{range}: {:?}",
            a.header("content-range")
        );
        ensure!(a.body == big_bytes[start..=end], "{range}: wrong bytes");
        ensure!(
            b.status == 206 && a.header("content-range") == b.header("content-range") && a.body == b.body,
            "{range}: distribution answers otherwise"
        );
    }
    let past =
        http(us, "GET", &format!("/v2/ghcr.io/org/multi/blobs/{}", big.digest), &[("Range", &format!("bytes={size}-"))], b"").await?;
    ensure!(
        past.status == 416 && past.header("content-range") == Some(format!("bytes */{size}").as_str()),
        "unsatisfiable: {}",
        past.status
    );

    // An unknown digest: the error JSON with 404, as distribution answers.
    let unknown = Digest::of(b"not in the layout");
    let a = http(us, "GET", &format!("/v2/ghcr.io/org/multi/blobs/{unknown}"), &[], b"").await?;
    let b = http(them, "GET", &format!("/v2/org/multi/blobs/{unknown}"), &[], b"").await?;
    ensure!(a.status == 404 && a.code() == "BLOB_UNKNOWN", "unknown blob: {} {}", a.status, a.text());
    ensure!(b.status == 404 && b.code() == "BLOB_UNKNOWN", "distribution: {} {}", b.status, b.text());
    ensure!(a.header("content-type").is_some_and(|t| t.starts_with("application/json")));
    let a = http(us, "GET", "/v2/ghcr.io/org/multi/manifests/2", &[], b"").await?;
    ensure!(a.status == 404 && a.code() == "MANIFEST_UNKNOWN", "unknown tag: {}", a.text());

    // skopeo copies out of ours: identical digests.
    let out = dir.path().join("copy-base");
    skopeo(&["copy", "--src-tls-verify=false", &format!("docker://{us}/library/base:1"), &format!("dir:{}", out.display())]).await?;
    let manifest_digest = Digest::of(&std::fs::read(out.join("manifest.json"))?);
    ensure!(manifest_digest == base_entry.digest, "skopeo's copy of base has manifest {manifest_digest}, the layout {}", base_entry.digest);
    let copied = dir_blobs(&out)?;
    let expected: BTreeSet<String> =
        reachable(&layout, &base_entry)?.into_iter().filter(|b| !b.is_manifest()).map(|b| b.digest.hex().to_owned()).collect();
    ensure!(copied == expected, "skopeo copied {copied:?}, the layout has {expected:?}");

    let out = dir.path().join("copy-multi");
    skopeo(&["copy", "--all", "--src-tls-verify=false", &format!("docker://{us}/ghcr.io/org/multi:1"), &format!("dir:{}", out.display())])
        .await?;
    let manifest_digest = Digest::of(&std::fs::read(out.join("manifest.json"))?);
    ensure!(manifest_digest == seeded.index.digest, "skopeo's copy of the index has {manifest_digest}");
    let copied = dir_blobs(&out)?;
    let expected: BTreeSet<String> = reachable(&layout, &index_entry)?
        .into_iter()
        .filter(|b| b.digest != index_entry.digest)
        .map(|b| b.digest.hex().to_owned())
        .collect();
    ensure!(copied == expected, "skopeo copied {copied:?}, the layout has {expected:?}");
    let inspected: Value = serde_json::from_str(&skopeo(&["inspect", "--tls-verify=false", &format!("docker://{us}/org/multi:1")]).await?)?;
    ensure!(inspected["Digest"] == seeded.other.digest.to_string(), "without ns, org/multi is Docker Hub's: {inspected}");

    // docker pull through ours: the index, resolved to this machine's platform.
    let arch = docker(&["info", "--format", "{{.Architecture}}"]).await?;
    let multi = format!("{us}/ghcr.io/org/multi:1");
    images.add(&multi);
    docker(&["pull", &multi]).await?;
    let repo_digests = docker(&["image", "inspect", "--format", "{{json .RepoDigests}} {{.Id}} {{.Architecture}}", &multi]).await?;
    ensure!(repo_digests.contains(&format!("@{}", seeded.index.digest)), "docker pulled {repo_digests}");
    if arch.trim() == "x86_64" {
        ensure!(repo_digests.contains(&seeded.amd64_config.digest.to_string()), "docker's image is not the amd64 one: {repo_digests}");
    }
    images.remove(&multi).await?;
    let base = format!("{us}/library/base:1");
    images.add(&base);
    docker(&["pull", &base]).await?;
    images.remove(&base).await?;

    // Another client's push into the local namespace: skopeo (containers/image) uploads
    // the whole index from the layout; it comes back with the same digest.
    skopeo(&[
        "copy",
        "--all",
        "--preserve-digests",
        "--dest-tls-verify=false",
        &format!("oci:{}:ghcr.io/org/multi:1", layout.display()),
        &format!("docker://{us}/local/multi:1"),
    ])
    .await?;
    let pushed = http(us, "HEAD", "/v2/local/multi/manifests/1", &[], b"").await?;
    ensure!(
        pushed.header("docker-content-digest") == Some(seeded.index.digest.to_string().as_str()),
        "skopeo's push: {:?}",
        pushed.headers
    );
    ensure!(pushed.header("content-type") == Some(OCI_INDEX));

    ours.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_tar_is_served_in_place_like_its_layout_directory() {
    require_tools!("docker-registry", "skopeo", "tar");
    if let Err(e) = tar_scenario().await {
        panic!("{e:#}");
    }
}

/// Where the data of entry `name` (as GNU tar wrote it) is in the tar at `path`: its
/// offset, its size and the entry's index.
fn tar_entry(path: &Path, name: &str) -> anyhow::Result<(u64, u64, usize)> {
    let mut archive = tar::Archive::new(std::fs::File::open(path)?);
    for (i, entry) in archive.entries_with_seek()?.enumerate() {
        let entry = entry?;
        if entry.path()?.to_string_lossy() == name {
            return Ok((entry.raw_file_position(), entry.size(), i));
        }
    }
    bail!("{name} is not in {}", path.display())
}

/// `skopeo copy [--all] docker://{addr}/{name} dir:{out}`; the manifest's digest and
/// the blobs copied.
async fn copy_out(addr: SocketAddr, name: &str, all: bool, out: &Path) -> anyhow::Result<(Digest, BTreeSet<String>)> {
    let (src, dest) = (format!("docker://{addr}/{name}"), format!("dir:{}", out.display()));
    let mut args = vec!["copy", "--src-tls-verify=false"];
    if all {
        args.push("--all");
    }
    args.extend([src.as_str(), dest.as_str()]);
    skopeo(&args).await?;
    Ok((Digest::of(&std::fs::read(out.join("manifest.json"))?), dir_blobs(out)?))
}

async fn tar_scenario() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let dist = Distribution::start(dir.path()).await?;
    let seeded = seed(dist.addr).await?;
    let layout = dir.path().join("layout");
    copy_seeded(dist.addr, &layout).await?;
    // GNU tar's own order and names: `./`, `./blobs/sha256/...` by name, then
    // `./index.json` and `./oci-layout` last.
    let bundle = dir.path().join("bundle.tar");
    let (layout_arg, bundle_arg) = (layout.display().to_string(), bundle.display().to_string());
    run("tar", &["--sort=name", "--owner=0", "--group=0", "-C", &layout_arg, "-cf", &bundle_arg, "."]).await?;
    let big = &seeded.big.0;
    let big_entry = format!("./blobs/sha256/{}", big.digest.hex());
    let (big_at, _, big_index) = tar_entry(&bundle, &big_entry)?;
    ensure!(big_index > 3 && big_at > 1024, "the big layer is entry {big_index} at byte {big_at}");

    let registry = {
        let (bundle, local) = (bundle.clone(), dir.path().join("local"));
        Arc::new(tokio::task::spawn_blocking(move || Registry::open(Some(bundle), local)).await??)
    };
    let from_tar = Ours::serve(registry.clone(), Access::Full).await?;
    let from_dir = Ours::start(Some(layout.clone()), dir.path().join("local-dir")).await?;

    // skopeo copies the same content out of both, with distribution's digests.
    for (name, all, digest) in [("ghcr.io/org/multi:1", true, &seeded.index.digest), ("org/multi:1", false, &seeded.other.digest)] {
        let slug = Digest::of(name.as_bytes()).hex()[..8].to_owned();
        let (tar_digest, tar_blobs) = copy_out(from_tar.addr, name, all, &dir.path().join(format!("tar-{slug}"))).await?;
        let (dir_digest, dir_blobs) = copy_out(from_dir.addr, name, all, &dir.path().join(format!("dir-{slug}"))).await?;
        ensure!(tar_digest == *digest && dir_digest == *digest, "{name}: tar {tar_digest}, directory {dir_digest}, distribution {digest}");
        ensure!(tar_blobs == dir_blobs && !tar_blobs.is_empty(), "{name}: the tar gave {tar_blobs:?}, the directory {dir_blobs:?}");
    }
    let listed = http(from_tar.addr, "GET", "/v2/_catalog", &[], b"").await?;
    ensure!(
        serde_json::from_slice::<Value>(&listed.body)? == json!({ "repositories": ["ghcr.io/org/multi", "org/multi"] }),
        "{}",
        listed.text()
    );

    // Ranges in the big layer, deep inside the tar: its bytes, as distribution answers.
    let (_, big_bytes) = &seeded.big;
    let size = big_bytes.len();
    for (range, start, end) in [("bytes=0-0", 0, 0), ("bytes=1000-2000000", 1000, 2_000_000), ("bytes=-100", size - 100, size - 1)] {
        let a = http(from_tar.addr, "GET", &format!("/v2/ghcr.io/org/multi/blobs/{}", big.digest), &[("Range", range)], b"").await?;
        let b = http(dist.addr, "GET", &format!("/v2/org/multi/blobs/{}", big.digest), &[("Range", range)], b"").await?;
        ensure!(
            a.status == 206 && a.header("content-range") == Some(format!("bytes {start}-{end}/{size}").as_str()),
            "{range}: {}",
            a.status
        );
        ensure!(a.body == big_bytes[start..=end], "{range}: not the layer's bytes");
        ensure!(
            b.status == 206 && a.body == b.body && a.header("content-range") == b.header("content-range"),
            "{range}: distribution differs"
        );
    }

    // An unknown digest: 404 with the error JSON, as distribution answers.
    let unknown = Digest::of(b"not in the bundle");
    let a = http(from_tar.addr, "GET", &format!("/v2/ghcr.io/org/multi/blobs/{unknown}"), &[], b"").await?;
    let b = http(dist.addr, "GET", &format!("/v2/org/multi/blobs/{unknown}"), &[], b"").await?;
    ensure!(a.status == 404 && a.code() == "BLOB_UNKNOWN" && b.code() == "BLOB_UNKNOWN", "{} {}", a.status, a.text());
    ensure!(a.header("content-type").is_some_and(|t| t.starts_with("application/json")));
    let detail: Value = serde_json::from_slice(&a.body)?;
    ensure!(detail["errors"][0]["detail"]["digest"] == unknown.to_string(), "{detail}");

    // The read-only view of the same registry: skopeo pulls, skopeo's push is denied,
    // and local/ is not there.
    let lan = Ours::serve(registry.clone(), Access::MirrorOnly).await?;
    let (digest, _) = copy_out(lan.addr, "ghcr.io/org/multi:1", true, &dir.path().join("lan-copy")).await?;
    ensure!(digest == seeded.index.digest, "through the read-only view: {digest}");
    let push = skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("dir:{}", dir.path().join("lan-copy").display()),
        &format!("docker://{}/local/pushed:1", lan.addr),
    ])
    .await;
    let refused = push.err().map(|e| format!("{e:#}")).unwrap_or_default();
    ensure!(refused.to_lowercase().contains("denied"), "skopeo's push to the read-only view: {refused:?}");
    let post = http(lan.addr, "POST", "/v2/local/pushed/blobs/uploads/", &[], b"").await?;
    ensure!(post.status == 403 && post.code() == "DENIED", "POST: {} {}", post.status, post.text());
    // The same push through the full view works, and stays invisible on the other.
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("dir:{}", dir.path().join("lan-copy").display()),
        &format!("docker://{}/local/pushed:1", from_tar.addr),
    ])
    .await?;
    let full = http(from_tar.addr, "HEAD", "/v2/local/pushed/manifests/1", &[], b"").await?;
    let view = http(lan.addr, "HEAD", "/v2/local/pushed/manifests/1", &[], b"").await?;
    ensure!(full.status == 200 && view.status == 404, "local/pushed: full view {}, read-only view {}", full.status, view.status);
    lan.stop().await?;
    from_tar.stop().await?;
    from_dir.stop().await?;

    // A tar cut inside the big layer: refused at open, naming the file and the entry.
    let cut = dir.path().join("cut.tar");
    let bytes = std::fs::read(&bundle)?;
    std::fs::write(&cut, &bytes[..usize::try_from(big_at)? + size / 2])?;
    let opened = Registry::open(Some(cut.clone()), dir.path().join("local-cut"));
    match opened {
        Err(e @ RegistryError::Tar { .. }) => {
            let message = e.to_string();
            ensure!(
                message.contains(&cut.display().to_string()) && message.contains(&big_entry[2..]) && message.contains("truncated"),
                "{message}"
            );
        }
        Err(e) => bail!("the cut tar: {e:#}"),
        Ok(_) => bail!("the cut tar was served"),
    }
    // And one cut between entries: after the last one (`./oci-layout`), without the zero
    // blocks GNU tar ends with.
    let (last_at, last_size, _) = tar_entry(&bundle, "./oci-layout")?;
    let cut_at = usize::try_from((last_at + last_size).div_ceil(512) * 512)?;
    ensure!(cut_at < bytes.len() && bytes[cut_at..].iter().all(|b| *b == 0), "oci-layout is not the last entry");
    std::fs::write(&cut, &bytes[..cut_at])?;
    ensure!(
        matches!(Registry::open(Some(cut.clone()), dir.path().join("local-cut")), Err(RegistryError::Tar { .. })),
        "a tar without its end-of-archive marker was served"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_push_round_trips_through_the_local_namespace() {
    let _testbed = require!(Need::Docker);
    if let Err(e) = push_scenario().await {
        panic!("{e:#}");
    }
}

async fn push_scenario() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let images = Images::default();
    let local = dir.path().join("local");
    let ours = Ours::start(None, local.clone()).await?;
    let repo = format!("local/app-{}", unique());
    let v1 = format!("{}/{repo}:v1", ours.addr);
    let v2 = format!("{}/{repo}:v2", ours.addr);
    let id = import(&images, dir.path(), &v1, b"pushed by docker").await?;
    docker(&["push", &v1]).await?;
    images.add(&v2);
    docker(&["tag", &v1, &v2]).await?;
    let second = docker(&["push", &v2]).await?;
    ensure!(second.contains("already exists") || second.contains("Mounted"), "the second push uploaded the layer again:\n{second}");
    let tags = http(ours.addr, "GET", &format!("/v2/{repo}/tags/list"), &[], b"").await?;
    ensure!(serde_json::from_slice::<Value>(&tags.body)? == json!({ "name": repo, "tags": ["v1", "v2"] }), "tags: {}", tags.text());
    let head = http(ours.addr, "HEAD", &format!("/v2/{repo}/manifests/v1"), &[], b"").await?;
    ensure!(head.header("content-type") == Some(oci::DOCKER_MANIFEST), "pushed manifest: {:?}", head.headers);

    images.remove(&v1).await?;
    images.remove(&v2).await?;
    let gone = docker(&["image", "inspect", &v1]).await;
    ensure!(gone.is_err(), "{v1} is still there");
    images.add(&v1);
    docker(&["pull", &v1]).await?;
    let pulled = docker(&["image", "inspect", "--format", "{{.Id}}", &v1]).await?;
    ensure!(pulled.trim() == id, "pulled {} after pushing {id}", pulled.trim());
    images.remove(&v1).await?;

    // The store keeps the tags in its index.json, by ref name.
    let index: ImageIndex = serde_json::from_slice(&std::fs::read(local.join("index.json"))?)?;
    let v1_entry = index.manifests.iter().find(|d| d.ref_name() == Some(format!("{repo}:v1").as_str())).context("no v1 in index.json")?;
    ensure!(Some(v1_entry.digest.to_string().as_str()) == head.header("docker-content-digest"));
    ours.stop().await?;
    Ok(())
}

/// A tiny layout written by hand, served by ours, with a secret file beside it that a
/// traversal would reach.
async fn traversal_bed() -> anyhow::Result<(tempfile::TempDir, Ours)> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("secret"), "top secret")?;
    let layout = dir.path().join("layout");
    std::fs::create_dir_all(layout.join("blobs/sha256"))?;
    std::fs::write(layout.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let write = |media_type: &str, bytes: &[u8]| -> anyhow::Result<Descriptor> {
        let d = Descriptor::new(media_type, Digest::of(bytes), bytes.len() as u64);
        std::fs::write(layout.join("blobs/sha256").join(d.digest.hex()), bytes)?;
        Ok(d)
    };
    let config = write(OCI_CONFIG, b"{}")?;
    let layer = write(OCI_LAYER_TAR, b"layer")?;
    let mut root = write(OCI_MANIFEST, &manifest(&config, &[&layer]))?;
    root.annotations = Some([(oci::REF_NAME_ANNOTATION.to_owned(), "docker.io/library/x:1".to_owned())].into());
    let index = ImageIndex { manifests: vec![root], ..ImageIndex::empty() };
    std::fs::write(layout.join("index.json"), serde_json::to_vec(&index)?)?;
    let ours = Ours::start(Some(layout), dir.path().join("local")).await?;
    Ok((dir, ours))
}

/// Sends `target` as it is on the wire and expects `status` with error `code`, and
/// nothing of the secret.
async fn refused(method: &str, target: &str, status: u16, code: &str) {
    let result = async {
        let (dir, ours) = traversal_bed().await?;
        let reply = http(ours.addr, method, target, &[], b"x").await?;
        ensure!(reply.status == status && reply.code() == code, "{method} {target}: {} {}", reply.status, reply.text());
        ensure!(!reply.text().contains("top secret"), "{target} leaked the secret");
        ensure!(reply.header("content-type").is_some_and(|t| t.starts_with("application/json")));
        // Nothing was written beside the stores.
        let entries: BTreeSet<String> =
            std::fs::read_dir(dir.path())?.map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned())).collect::<Result<_, _>>()?;
        ensure!(entries == BTreeSet::from(["layout".to_owned(), "local".to_owned(), "secret".to_owned()]), "{entries:?}");
        ours.stop().await
    }
    .await;
    if let Err(e) = result {
        panic!("{e:#}");
    }
}

/// What Docker 20.10 sends as `Accept` for a manifest.
const ACCEPT: &str = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json, \
                      application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json";

const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

macro_rules! traversal {
    ($($test:ident: $method:literal $target:expr => $status:literal $code:literal;)+) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                refused($method, &$target, $status, $code).await;
            }
        )+
    };
}

traversal! {
    dot_dot_in_a_name: "GET" "/v2/../secret/manifests/1" => 400 "NAME_INVALID";
    dot_dot_inside_a_name: "GET" "/v2/library/x/../../../secret/manifests/1" => 400 "NAME_INVALID";
    dot_dot_before_blobs: "GET" format!("/v2/library/x/../../secret/blobs/sha256:{HEX}") => 400 "NAME_INVALID";
    encoded_dot_dot_in_a_name: "GET" "/v2/%2e%2e/%2e%2e/secret/manifests/1" => 400 "NAME_INVALID";
    encoded_upper_dot_dot_in_a_name: "GET" "/v2/%2E%2E/secret/tags/list" => 400 "NAME_INVALID";
    encoded_slash_in_a_name: "GET" "/v2/library%2Fx/manifests/1" => 400 "NAME_INVALID";
    double_encoded_dot_dot: "GET" "/v2/%252e%252e/secret/manifests/1" => 400 "NAME_INVALID";
    empty_component_in_a_name: "GET" "/v2//secret/manifests/1" => 400 "NAME_INVALID";
    backslash_in_a_name: "GET" "/v2/library\\..\\secret/manifests/1" => 400 "NAME_INVALID";
    too_long_a_name: "GET" format!("/v2/{}/manifests/1", "a".repeat(256)) => 400 "NAME_INVALID";
    too_long_a_name_in_parts: "GET" format!("/v2/{}/{}/tags/list", "a".repeat(128), "b".repeat(128)) => 400 "NAME_INVALID";
    dot_dot_in_a_digest: "GET" "/v2/library/x/blobs/sha256:../../../secret" => 400 "DIGEST_INVALID";
    encoded_dot_dot_in_a_digest: "GET" "/v2/library/x/blobs/sha256:%2e%2e%2f%2e%2e%2fsecret" => 400 "DIGEST_INVALID";
    encoded_colon_in_a_digest: "GET" format!("/v2/library/x/blobs/sha256%3A{HEX}") => 400 "DIGEST_INVALID";
    bad_algorithm_sha512: "GET" format!("/v2/library/x/blobs/sha512:{HEX}{HEX}") => 400 "DIGEST_INVALID";
    bad_algorithm_md5: "GET" "/v2/library/x/blobs/md5:0123456789abcdef0123456789abcdef" => 400 "DIGEST_INVALID";
    upper_case_digest: "GET" format!("/v2/library/x/blobs/sha256:{}", HEX.to_uppercase()) => 400 "DIGEST_INVALID";
    short_digest: "GET" format!("/v2/library/x/blobs/sha256:{}", &HEX[1..]) => 400 "DIGEST_INVALID";
    bad_algorithm_in_a_manifest_reference: "GET" format!("/v2/library/x/manifests/sha1:{}", &HEX[..40]) => 400 "DIGEST_INVALID";
    dot_dot_as_a_tag: "GET" "/v2/library/x/manifests/.." => 400 "TAG_INVALID";
    encoded_dot_dot_as_a_tag: "GET" "/v2/library/x/manifests/%2e%2e%2fsecret" => 400 "TAG_INVALID";
    dot_dot_in_an_upload_digest: "POST" "/v2/local/app/blobs/uploads/?digest=sha256%3A..%2F..%2Fsecret" => 400 "DIGEST_INVALID";
    bad_algorithm_in_an_upload_digest: "POST" format!("/v2/local/app/blobs/uploads/?digest=sha512%3A{HEX}{HEX}") => 400 "DIGEST_INVALID";
    dot_dot_as_an_upload_id: "PATCH" "/v2/local/app/blobs/uploads/..%2F..%2Fsecret" => 404 "BLOB_UPLOAD_UNKNOWN";
    dot_dot_in_a_local_name: "PUT" "/v2/local/../secret/manifests/1" => 400 "NAME_INVALID";
    a_write_to_the_mirror: "PUT" "/v2/library/x/manifests/1" => 405 "UNSUPPORTED";
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_completes_with_an_idle_keep_alive_connection() {
    let result = async {
        let (_dir, ours) = traversal_bed().await?;
        // A connection that asked once and stays open (keep-alive).
        let mut tcp = TcpStream::connect(ours.addr).await?;
        tcp.write_all(format!("GET /v2/ HTTP/1.1\r\nHost: {}\r\n\r\n", ours.addr).as_bytes()).await?;
        let mut buf = [0u8; 512];
        let n = tcp.read(&mut buf).await?;
        ensure!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));
        let started = Instant::now();
        ours.stop().await?;
        ensure!(started.elapsed() < Duration::from_secs(2), "shutdown took {:?}", started.elapsed());
        // The idle connection was closed.
        let n = tokio::time::timeout(Duration::from_secs(2), tcp.read(&mut buf)).await??;
        ensure!(n == 0, "the connection stayed open");
        anyhow::Ok(())
    }
    .await;
    if let Err(e) = result {
        panic!("{e:#}");
    }
}
