//! What the registry tests share: the skip rule, a real docker-registry (CNCF distribution)
//! on a free loopback port, seeding through the registry API with curl, and processes and
//! Docker tags that are cleaned up when dropped.
//!
//! The skip rule is idp-test's (`CI=true`: a missing need fails the test; otherwise a loud
//! `SKIPPED` line and a line in `IDP_LAB_SKIP_LOG`), restated here because idp-test pulls
//! kube's TLS stack, which this crate keeps out of its dependency tree.

#![allow(dead_code, clippy::unwrap_used)]

use sha2::{Digest as _, Sha256};
use std::io::Write as _;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Debian's package `docker-registry` (CNCF distribution 2.8).
pub const REGISTRY: &str = "/usr/bin/docker-registry";

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true"))
}

fn works(program: &str, args: &[&str]) -> bool {
    Command::new(program).args(args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// The skip rule for `test`: `docker` (a daemon answering) when `docker` is set, and
/// docker-registry, skopeo, curl, tar and python3 always. `false`: skipped, return.
pub fn require(test: &str, docker: bool) -> bool {
    let mut missing = Vec::new();
    if !Path::new(REGISTRY).is_file() {
        missing.push(format!("{REGISTRY} (apt-get install docker-registry, with a policy-rc.d that exits 101)"));
    }
    for (program, args, install) in [
        ("skopeo", &["--version"][..], "apt-get install skopeo"),
        ("curl", &["--version"][..], "apt-get install curl"),
        ("tar", &["--version"][..], "apt-get install tar"),
        ("python3", &["--version"][..], "apt-get install python3"),
    ] {
        if !works(program, args) {
            missing.push(format!("{program} ({install})"));
        }
    }
    if docker && !works("docker", &["info"]) {
        missing.push("a Docker daemon (run e2e/testbed/install.sh)".into());
    }
    skip_unless(test, &missing)
}

/// The skip rule for `test` over what it found `missing` (empty: run, `true`).
pub fn skip_unless(test: &str, missing: &[String]) -> bool {
    if missing.is_empty() {
        return true;
    }
    let reason = format!("missing {}", missing.join(", "));
    assert!(!in_ci(), "{test} cannot run in CI: {reason}");
    let _ = std::io::stderr().write_all(format!("\nSKIPPED: {test}: {reason}\n").as_bytes());
    if let Ok(path) = std::env::var("IDP_LAB_SKIP_LOG")
        && !path.is_empty()
    {
        let line = format!("{test}\t{}\n", reason.replace(['\t', '\n'], " "));
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path).expect("skip log");
        f.write_all(line.as_bytes()).expect("skip log");
    }
    false
}

/// The skip rule for `test` over `programs` (name, `--version`-like arguments, how to
/// install it) and `paths` (a path that must exist, how to get it).
pub fn require_programs(test: &str, programs: &[(&str, &[&str], &str)], paths: &[(&Path, &str)]) -> bool {
    let mut missing: Vec<String> =
        programs.iter().filter(|(p, args, _)| !works(p, args)).map(|(p, _, install)| format!("{p} ({install})")).collect();
    missing.extend(paths.iter().filter(|(p, _)| !p.exists()).map(|(p, how)| format!("{} ({how})", p.display())));
    skip_unless(test, &missing)
}

/// A free loopback port (bound, then released for the child to take).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A child process killed and reaped when dropped.
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A docker-registry serving from a temporary directory on 127.0.0.1.
pub struct Registry {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Its configuration, storage, log and scratch files.
    pub dir: tempfile::TempDir,
    _process: Process,
}

impl Registry {
    /// Starts one and waits until `/v2/` answers.
    pub fn start() -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = dir.path().join("config.yml");
        let storage = dir.path().join("storage");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
                storage.display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new(REGISTRY)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let registry = Registry { port, dir, _process: Process(child) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !works("curl", &["-fsS", "-o", "/dev/null", &format!("{}/v2/", registry.base())]) {
            assert!(
                Instant::now() < deadline,
                "docker-registry did not answer: {}",
                std::fs::read_to_string(registry.dir.path().join("registry.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        registry
    }

    /// `127.0.0.1:<port>`, as image references name it.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Monolithic upload (POST, then PUT with the digest); returns the digest.
    pub fn push_blob(&self, repository: &str, bytes: &[u8]) -> String {
        let digest = sha256(bytes);
        let out =
            run("curl", &["-fsS", "-X", "POST", "-D", "-", "-o", "/dev/null", &format!("{}/v2/{repository}/blobs/uploads/", self.base())]);
        let location = out
            .lines()
            .find_map(|l| l.strip_prefix("Location: ").or_else(|| l.strip_prefix("location: ")))
            .unwrap_or_else(|| panic!("no Location in {out}"))
            .trim()
            .to_owned();
        let location = if location.starts_with('/') { format!("{}{location}", self.base()) } else { location };
        let separator = if location.contains('?') { '&' } else { '?' };
        let file = self.dir.path().join(format!("blob-{}", &digest[7..19]));
        std::fs::write(&file, bytes).unwrap();
        run(
            "curl",
            &[
                "-fsS",
                "-X",
                "PUT",
                "-H",
                "Content-Type: application/octet-stream",
                "--data-binary",
                &format!("@{}", file.display()),
                &format!("{location}{separator}digest={digest}"),
            ],
        );
        digest
    }

    /// `PUT /v2/<repository>/manifests/<reference>`; returns the digest of the bytes.
    pub fn put_manifest(&self, repository: &str, reference: &str, media_type: &str, bytes: &[u8]) -> String {
        let file = self.dir.path().join(format!("manifest-{}", &sha256(bytes)[7..19]));
        std::fs::write(&file, bytes).unwrap();
        run(
            "curl",
            &[
                "-fsS",
                "-X",
                "PUT",
                "-H",
                &format!("Content-Type: {media_type}"),
                "--data-binary",
                &format!("@{}", file.display()),
                &format!("{}/v2/{repository}/manifests/{reference}", self.base()),
            ],
        );
        sha256(bytes)
    }

    /// The registry's own `Docker-Content-Digest` for a reference (HEAD with curl).
    pub fn content_digest(&self, repository: &str, reference: &str) -> String {
        let accept = "Accept: application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";
        let out = run("curl", &["-fsSI", "-H", accept, &format!("{}/v2/{repository}/manifests/{reference}", self.base())]);
        out.lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("docker-content-digest").then(|| v.trim().to_owned())
            })
            .unwrap_or_else(|| panic!("no Docker-Content-Digest in {out}"))
    }

    /// Pushes a one-layer OCI image for `os/arch` and returns (manifest digest, manifest
    /// size, layer bytes). The config's diff_id is the compressed digest: the registry does
    /// not read it, and nothing here unpacks the image.
    pub fn push_image(&self, repository: &str, os: &str, arch: &str, content: &str) -> (String, usize, Vec<u8>) {
        let layer = gzip_tar(self.dir.path(), &format!("{arch}-{}.txt", &sha256(content.as_bytes())[7..15]), content);
        let layer_digest = self.push_blob(repository, &layer);
        let config =
            format!(r#"{{"architecture":"{arch}","os":"{os}","rootfs":{{"type":"layers","diff_ids":["{layer_digest}"]}},"config":{{}}}}"#);
        let config_digest = self.push_blob(repository, config.as_bytes());
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{layer_digest}","size":{}}}]}}"#,
            config.len(),
            layer.len()
        );
        let digest = sha256(manifest.as_bytes());
        self.put_manifest(repository, &digest, "application/vnd.oci.image.manifest.v1+json", manifest.as_bytes());
        (digest, manifest.len(), layer)
    }

    /// A two-platform OCI index at `tag` (plus an attestation-like `unknown/unknown` entry a
    /// resolver must skip); returns (index digest, amd64 digest, arm64 digest, amd64 layer).
    pub fn push_index(&self, repository: &str, tag: &str, salt: &str) -> (String, String, String, Vec<u8>) {
        let (amd64, amd64_size, layer) = self.push_image(repository, "linux", "amd64", &format!("amd64 of {repository} {salt}"));
        let (arm64, arm64_size, _) = self.push_image(repository, "linux", "arm64", &format!("arm64 of {repository} {salt}"));
        let entry = |digest: &str, size: usize, os: &str, arch: &str, extra: &str| {
            format!(
                r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{digest}","size":{size},"platform":{{"architecture":"{arch}","os":"{os}"{extra}}}}}"#
            )
        };
        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{},{},{}]}}"#,
            entry(&amd64, amd64_size, "linux", "amd64", ""),
            entry(&arm64, arm64_size, "linux", "arm64", r#","variant":"v8""#),
            entry(&amd64, amd64_size, "unknown", "unknown", "")
        );
        let digest = self.put_manifest(repository, tag, "application/vnd.oci.image.index.v1+json", index.as_bytes());
        (digest, amd64, arm64, layer)
    }
}

/// `sha256:<hex>`.
pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// A gzipped tar holding one file, made with tar(1).
pub fn gzip_tar(dir: &Path, name: &str, content: &str) -> Vec<u8> {
    let src = dir.join(format!("src-{name}"));
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join(name), content).unwrap();
    tar_gz(&src, name, &dir.join(format!("{name}.tgz")))
}

/// A reproducible `.tgz` of `<src>/<entry>` at `out` (sorted, mtime 0, owner 0), its bytes.
pub fn tar_gz(src: &Path, entry: &str, out: &Path) -> Vec<u8> {
    run(
        "tar",
        &[
            "--sort=name",
            "--mtime=@0",
            "--owner=0",
            "--group=0",
            "-czf",
            &out.display().to_string(),
            "-C",
            &src.display().to_string(),
            entry,
        ],
    );
    std::fs::read(out).unwrap()
}

/// Runs a program; its stdout, or a panic with its stderr.
pub fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(out.status.success(), "{program} {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Docker image tags this test created, removed when dropped (only these: never an image
/// the test did not make).
pub struct Tags(pub Vec<String>);

impl Drop for Tags {
    fn drop(&mut self) {
        for tag in &self.0 {
            let _ = Command::new("docker").args(["rmi", "--force", tag]).stdout(Stdio::null()).stderr(Stdio::null()).status();
        }
    }
}

/// A python3 http.server on 127.0.0.1 serving `dir`.
pub struct FileServer {
    /// Its port on 127.0.0.1.
    pub port: u16,
    _process: Process,
}

impl FileServer {
    /// Starts one and waits until it answers.
    pub fn start(dir: &Path) -> FileServer {
        let port = free_port();
        let child = Command::new("python3")
            .args(["-m", "http.server", &port.to_string(), "--bind", "127.0.0.1", "--directory", &dir.display().to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let server = FileServer { port, _process: Process(child) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !works("curl", &["-fsS", "-o", "/dev/null", &format!("http://127.0.0.1:{port}/")]) {
            assert!(Instant::now() < deadline, "http.server did not answer");
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    /// The URL of a file it serves.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }
}

/// The host's platform as Docker names it.
pub fn host_platform() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    format!("linux/{arch}")
}
