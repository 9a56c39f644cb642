//! `docker_archive` against real software: a bundle made by `create` from Debian's
//! docker-registry (CNCF distribution 2.8), seeded with images Docker built and pushed
//! (a three-layer image, one built on it that shares those layers and adds a 1 MiB one)
//! and a two-platform OCI index pushed through the registry API (real layers, real
//! diff IDs); the archive read back by skopeo (`docker-archive:`), loaded by Docker
//! 20.10 (`docker load`) and imported by containerd (`ctr images import`, what k3s does
//! with its air-gap images).
//!
//! Every image a test loads is removed at the end, by tag and by ID.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use common::{FileServer, Registry, Tags, host_platform, require, run, sha256};
use idp_bundle::ArchiveError;
use idp_bundle::create::{CreateOptions, Item, Source, file_ref_name, image_item};
use idp_bundle::docker_archive::ArchiveSummary;
use idp_bundle::layout::scan;
use idp_bundle::{BundleError, Client, Kind};
use idp_core::oci::{Digest, ImageIndex, ImageManifest};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The other platform of the two the bundle carries.
fn other_platform() -> String {
    if host_platform() == "linux/amd64" { "linux/arm64".into() } else { "linux/amd64".into() }
}

fn arch_of(platform: &str) -> &str {
    platform.rsplit('/').next().unwrap()
}

/// `len` bytes that do not compress (xorshift).
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    let mut out = vec![0u8; len];
    for b in &mut out {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        *b = seed as u8;
    }
    out
}

/// `docker build` of a `FROM` image (or scratch) with one `COPY` per file: one layer each.
fn docker_build(dir: &Path, tag: &str, from: &str, files: &[(&str, &[u8])]) {
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

/// A real layer: a tar of one file (made with tar(1)), gzipped; (gzip bytes, diff ID).
fn layer(dir: &Path, name: &str, content: &[u8]) -> (Vec<u8>, String) {
    let src = dir.join(format!("layer-{name}"));
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join(name), content).unwrap();
    let tar = dir.join(format!("{name}.tar"));
    run(
        "tar",
        &["--sort=name", "--mtime=@0", "--owner=0", "--group=0", "-cf", &tar.display().to_string(), "-C", &src.display().to_string(), name],
    );
    let plain = std::fs::read(&tar).unwrap();
    let gz = Command::new("gzip").args(["-n", "-c"]).arg(&tar).output().unwrap();
    assert!(gz.status.success());
    (gz.stdout, sha256(&plain))
}

/// One platform's image of a two-platform index: (manifest digest, its size, config digest).
fn push_platform(registry: &Registry, dir: &Path, repo: &str, arch: &str, variant: &str, salt: &str) -> (String, usize, String) {
    let (gz, diff_id) = layer(dir, &format!("{arch}.txt"), format!("{arch} of {repo} {salt}\n").as_bytes());
    let layer_digest = registry.push_blob(repo, &gz);
    let config = format!(
        r#"{{"architecture":"{arch}","os":"linux"{variant},"rootfs":{{"type":"layers","diff_ids":["{diff_id}"]}},"config":{{"Cmd":["/{arch}.txt"]}}}}"#
    );
    let config_digest = registry.push_blob(repo, config.as_bytes());
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{layer_digest}","size":{}}}]}}"#,
        config.len(),
        gz.len()
    );
    let digest =
        registry.put_manifest(repo, &sha256(manifest.as_bytes()), "application/vnd.oci.image.manifest.v1+json", manifest.as_bytes());
    (digest, manifest.len(), config_digest)
}

/// A two-platform OCI index (amd64, arm64/v8) whose images Docker can load; returns
/// (index digest, config digest by platform).
fn push_real_index(registry: &Registry, dir: &Path, repo: &str, tag: &str, salt: &str) -> (String, BTreeMap<String, String>) {
    let (amd64, amd64_size, amd64_config) = push_platform(registry, dir, repo, "amd64", "", salt);
    let (arm64, arm64_size, arm64_config) = push_platform(registry, dir, repo, "arm64", r#","variant":"v8""#, salt);
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{amd64}","size":{amd64_size},"platform":{{"architecture":"amd64","os":"linux"}}}},{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{arm64}","size":{arm64_size},"platform":{{"architecture":"arm64","os":"linux","variant":"v8"}}}}]}}"#
    );
    let digest = registry.put_manifest(repo, tag, "application/vnd.oci.image.index.v1+json", index.as_bytes());
    (digest, BTreeMap::from([("linux/amd64".to_owned(), amd64_config), ("linux/arm64".to_owned(), arm64_config)]))
}

async fn create(items: &[Item], out: &Path, platforms: &[&str]) {
    let client = Client::new().unwrap();
    let options =
        CreateOptions { out: out.to_owned(), platforms: platforms.iter().map(|p| (*p).to_owned()).collect(), allow_unverified: false };
    idp_bundle::create(&client, items, &options, &mut |_| {}).await.expect("bundle create");
}

fn archive(bundle: &Path, images: &[&str], platform: &str, out: &Path) -> Result<ArchiveSummary, BundleError> {
    let file = std::io::BufWriter::new(std::fs::File::create(out).unwrap());
    let images: Vec<String> = images.iter().map(|i| (*i).to_owned()).collect();
    idp_bundle::docker_archive(bundle, &images, platform, file)
}

fn archive_error(e: BundleError) -> ArchiveError {
    match e {
        BundleError::DockerArchive(inner) => *inner,
        other => panic!("expected a docker-archive error, got {other}"),
    }
}

/// A command's status and combined output, without panicking.
fn try_run(program: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(program).args(args).stdin(Stdio::null()).output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

fn docker_inspect(image: &str) -> Option<serde_json::Value> {
    let (ok, out) = try_run("docker", &["image", "inspect", image]);
    ok.then(|| serde_json::from_str::<Vec<serde_json::Value>>(&out).unwrap().remove(0))
}

fn diff_ids(config: &[u8]) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_slice(config).unwrap();
    v["rootfs"]["diff_ids"].as_array().unwrap().iter().map(|d| d.as_str().unwrap().to_owned()).collect()
}

/// The entries of a tar file, in order.
fn listing(path: &Path) -> Vec<String> {
    let mut archive = tar::Archive::new(std::fs::File::open(path).unwrap());
    archive.entries().unwrap().map(|e| e.unwrap().path().unwrap().display().to_string()).collect()
}

fn member(path: &Path, name: &str) -> Vec<u8> {
    let mut archive = tar::Archive::new(std::fs::File::open(path).unwrap());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().display().to_string() == name {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
            return bytes;
        }
    }
    panic!("{name} is not in {}", path.display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_docker_archive_loads_in_docker_reads_in_skopeo_and_refuses_damaged_blobs() {
    if !require("a_docker_archive_loads_in_docker_reads_in_skopeo_and_refuses_damaged_blobs", true) {
        return;
    }
    let registry = Registry::start();
    let host = registry.host();
    let dir = tempfile::tempdir().unwrap();
    let salt = format!("{}-{}", std::process::id(), registry.port);
    let layered = format!("{host}/idp-bundle-test/da-layered:v1");
    let derived = format!("{host}/idp-bundle-test/da-derived:v1");
    let multi = format!("{host}/idp-bundle-test/da-multi:v1");
    // Everything loaded is removed at the end: these tags and every image ID pushed here.
    let mut cleanup = Tags(vec![layered.clone(), derived.clone(), multi.clone()]);
    let big = noise(1024 * 1024 + 4321, 0x2545_f491_4f6c_dd1d ^ u64::from(registry.port));
    docker_build(
        dir.path(),
        &layered,
        "scratch",
        &[
            ("a.txt", format!("a {salt}\n").as_bytes()),
            ("b.txt", format!("b {salt}\n").as_bytes()),
            ("c.txt", format!("c {salt}\n").as_bytes()),
        ],
    );
    docker_build(dir.path(), &derived, &layered, &[("d.bin", &big)]);
    for tag in [&layered, &derived] {
        run("docker", &["push", tag]);
    }
    // Gone from Docker, so only the archive can bring them back.
    for tag in [&derived, &layered] {
        run("docker", &["rmi", tag]);
    }
    let (multi_digest, configs) = push_real_index(&registry, dir.path(), "idp-bundle-test/da-multi", "v1", &salt);
    let files_dir = dir.path().join("files");
    std::fs::create_dir_all(&files_dir).unwrap();
    std::fs::write(files_dir.join("notes.txt"), "not an image\n").unwrap();
    let files = FileServer::start(&files_dir);
    let file_sha = sha256(b"not an image\n");
    let file_name = file_ref_name(&files.url("notes.txt"), Some(&file_sha)).unwrap();
    let items = vec![
        image_item(&layered, "--image").unwrap(),
        image_item(&derived, "--image").unwrap(),
        image_item(&multi, "--image").unwrap(),
        Item {
            ref_name: file_name.clone(),
            kind: Kind::File,
            source: Source::File { url: files.url("notes.txt"), sha256: Some(file_sha) },
            owners: vec!["test".into()],
            unverified: None,
        },
    ];
    let bundle = dir.path().join("bundle.tar");
    create(&items, &bundle, &["linux/amd64", "linux/arm64"]).await;
    let hp = host_platform();

    // --- The archive of three images, for the host's platform. ---
    let out = dir.path().join("images.tar");
    let summary = archive(&bundle, &[&layered, &derived, &multi], &hp, &out).expect("docker_archive");
    assert_eq!(summary.images.len(), 3);
    assert_eq!(summary.entries, 3);
    let [l, d, m] = [&summary.images[0], &summary.images[1], &summary.images[2]];
    cleanup.0.extend(summary.images.iter().map(|i| i.config.to_string()));
    assert_eq!(l.layers.len(), 3, "a three-layer image");
    assert_eq!(d.layers.len(), 4);
    assert_eq!(d.layers[..3], l.layers[..], "the derived image shares the layered image's three layers");
    assert_eq!((m.platform.as_str(), m.config.to_string()), (hp.as_str(), configs[&hp].clone()), "the host's manifest of the index");
    assert_eq!([&l.platform, &d.platform], [&hp, &hp]);
    assert_eq!(summary.blobs, 3 + 4 + 1, "three configurations, five distinct layers");
    assert_eq!(summary.bytes, std::fs::metadata(&out).unwrap().len());
    let names = listing(&out);
    assert_eq!(names.last().map(String::as_str), Some("manifest.json"), "manifest.json comes last");
    for layer in &d.layers {
        let entry = format!("{}/layer.tar", layer.hex());
        assert_eq!(names.iter().filter(|n| **n == entry).count(), 1, "{entry} once, though two images use it");
    }
    assert_eq!(names.iter().collect::<BTreeSet<_>>().len(), names.len(), "no entry twice: {names:?}");
    let manifest: serde_json::Value = serde_json::from_slice(&member(&out, "manifest.json")).unwrap();
    assert_eq!(manifest.as_array().unwrap().len(), 3);
    assert_eq!(manifest[1]["Config"], format!("{}.json", d.config.hex()));
    assert_eq!(manifest[1]["RepoTags"], serde_json::json!([derived]));
    assert_eq!(manifest[1]["Layers"].as_array().unwrap().len(), 4);
    // The layers are the bundle's bytes, still gzip-compressed.
    let scanned = scan(&bundle, true).unwrap();
    for layer in &d.layers {
        let bytes = member(&out, &format!("{}/layer.tar", layer.hex()));
        assert_eq!(sha256(&bytes), layer.to_string());
        assert_eq!(&bytes[..2], [0x1f, 0x8b], "stored compressed, as bundled");
    }

    // skopeo reads it: the layers it reports are the configuration's diff IDs.
    for image in [l, d, m] {
        let config = member(&out, &format!("{}.json", image.config.hex()));
        assert_eq!(sha256(&config), image.config.to_string());
        let tag = image.repo_tag.as_deref().unwrap();
        let out = run("skopeo", &["inspect", &format!("docker-archive:{}:{tag}", out.display())]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let layers: Vec<String> = v["Layers"].as_array().unwrap().iter().map(|l| l.as_str().unwrap().to_owned()).collect();
        assert_eq!(layers, diff_ids(&config), "skopeo inspect {tag}");
        assert_eq!(v["Architecture"], arch_of(&hp));
    }
    let copy = dir.path().join("skopeo-copy");
    run("skopeo", &["copy", &format!("docker-archive:{}:{derived}", out.display()), &format!("dir:{}", copy.display())]);

    // docker load gives each image with its tag, and the configuration's digest as ID.
    for image in [l, d, m] {
        assert!(docker_inspect(image.repo_tag.as_deref().unwrap()).is_none(), "not in Docker before the load");
    }
    let loaded = run("docker", &["load", "-i", &out.display().to_string()]);
    for image in [l, d, m] {
        let tag = image.repo_tag.as_deref().unwrap();
        assert!(loaded.contains(&format!("Loaded image: {tag}")), "{loaded}");
        let v = docker_inspect(tag).unwrap_or_else(|| panic!("{tag} is in Docker"));
        assert_eq!(v["Id"], image.config.to_string(), "{tag}: the image ID is the config digest");
        assert_eq!(v["RepoTags"], serde_json::json!([tag]));
        assert_eq!(v["Architecture"], arch_of(&hp));
        let config = member(&out, &format!("{}.json", image.config.hex()));
        assert_eq!(v["RootFS"]["Layers"], serde_json::json!(diff_ids(&config)), "{tag}: every layer, decompressed");
    }
    // The files are there, the 1 MiB one byte for byte (it spans several read chunks).
    let container = run("docker", &["create", &derived, "/none"]).trim().to_owned();
    let copied = dir.path().join("copied");
    std::fs::create_dir_all(&copied).unwrap();
    let cp = try_run("docker", &["cp", &format!("{container}:/d.bin"), &copied.display().to_string()]);
    let cp_a = try_run("docker", &["cp", &format!("{container}:/a.txt"), &copied.display().to_string()]);
    run("docker", &["rm", "-f", &container]);
    assert!(cp.0 && cp_a.0, "{cp:?} {cp_a:?}");
    assert!(std::fs::read(copied.join("d.bin")).unwrap() == big, "d.bin is the built file");
    assert_eq!(std::fs::read_to_string(copied.join("a.txt")).unwrap(), format!("a {salt}\n"));

    // --- The other platform of the index, asked for by digest: loaded untagged. ---
    let other = other_platform();
    let by_digest = format!("{host}/idp-bundle-test/da-multi@{multi_digest}");
    let out_other = dir.path().join("other.tar");
    let summary = archive(&bundle, &[&by_digest], &other, &out_other).expect("the other platform");
    let image = &summary.images[0];
    cleanup.0.push(image.config.to_string());
    assert_eq!((image.platform.as_str(), image.repo_tag.as_deref()), (other.as_str(), None));
    assert_eq!(image.config.to_string(), configs[&other], "the requested platform's manifest");
    let manifest: serde_json::Value = serde_json::from_slice(&member(&out_other, "manifest.json")).unwrap();
    assert_eq!(manifest[0]["RepoTags"], serde_json::json!([]));
    let loaded = run("docker", &["load", "-i", &out_other.display().to_string()]);
    assert!(loaded.contains(&format!("Loaded image ID: {}", image.config)), "{loaded}");
    let v = docker_inspect(&image.config.to_string()).unwrap();
    assert_eq!(v["Architecture"], arch_of(&other));
    assert_eq!(v["RepoTags"], serde_json::json!([]));
    // arm64/v8 and arm64 are the same platform.
    if other == "linux/arm64" {
        let v8 = archive(&bundle, &[&multi], "linux/arm64/v8", &dir.path().join("v8.tar")).expect("arm64/v8");
        assert_eq!(v8.images[0].config, image.config);
    }

    // --- What is not there fails before anything is written, and says how to fix it. ---
    let missing = format!("{host}/idp-bundle-test/da-layered:v2");
    let mut nothing = Vec::new();
    let e = idp_bundle::docker_archive(&bundle, &[layered.clone(), missing.clone()], &hp, &mut nothing).expect_err("no such image");
    assert!(nothing.is_empty(), "nothing written for a missing image");
    let text = e.to_string();
    assert!(text.contains(&format!("{missing} is not in the bundle")), "{text}");
    assert!(text.contains(&format!("(it holds {layered}, ")), "the same repository first: {text}");
    assert!(text.contains(&format!("`idp-lab bundle create --image {missing} --platform {hp} --out FILE`")), "{text}");
    assert!(matches!(archive_error(e), ArchiveError::NoImage { .. }));
    let e = idp_bundle::docker_archive(&bundle, std::slice::from_ref(&multi), "linux/s390x", &mut nothing).expect_err("no such platform");
    let text = e.to_string();
    assert!(
        text.contains(&format!("{multi} in the bundle {} has no linux/s390x manifest (it has linux/amd64, linux/arm64)", bundle.display())),
        "{text}"
    );
    assert!(text.contains(&format!("`idp-lab bundle create --image {multi} --platform linux/s390x --out FILE`")), "{text}");
    let e = idp_bundle::docker_archive(&bundle, std::slice::from_ref(&layered), &other, &mut nothing)
        .expect_err("a single manifest of the host");
    assert!(matches!(archive_error(e), ArchiveError::NoPlatform { offered, .. } if offered == [hp.clone()]));
    let e = idp_bundle::docker_archive(&bundle, std::slice::from_ref(&file_name), &hp, &mut nothing).expect_err("a file");
    assert!(e.to_string().contains("it is a file, not a container image"), "{e}");
    let e = idp_bundle::docker_archive(&bundle, std::slice::from_ref(&multi), "s390x", &mut nothing).expect_err("not a platform");
    assert!(matches!(e, BundleError::Platform { .. }), "{e}");
    assert!(nothing.is_empty());
    // A bundle made for the host only: the index lists the other platform, the bundle left it out.
    let host_only = dir.path().join("host-only.tar");
    create(&items[2..3], &host_only, &[&hp]).await;
    let e = idp_bundle::docker_archive(&host_only, std::slice::from_ref(&multi), &other, &mut nothing).expect_err("left out");
    let text = e.to_string();
    assert!(
        text.contains(&format!("has no {other} manifest (it has {hp}; its index lists the platform, but the bundle was made without it)")),
        "{text}"
    );

    // --- A flipped byte in any blob an image reaches fails, naming the image and the blob. ---
    let index = scanned.index.as_ref().unwrap();
    let root = |name: &str| index.manifests.iter().find(|m| m.ref_name() == Some(name)).unwrap().clone();
    let mut reached: BTreeMap<Digest, BTreeSet<String>> = BTreeMap::new();
    for name in [&layered, &derived, &multi] {
        let desc = root(name);
        // The index and its wrapped or host manifests, the configuration, the layers.
        for blob in scanned.reach(&desc).unwrap() {
            reached.entry(blob.digest).or_default().insert(name.clone());
        }
    }
    // What this archive reads is the host's platform: the other platform's manifest and
    // blobs are not read, so they are not checked (bundle verify checks them).
    let other_blobs: BTreeSet<Digest> = {
        let idx: ImageIndex = serde_json::from_slice(&scanned.small[&Digest::parse(&multi_digest).unwrap()]).unwrap();
        let other_manifest = idx.manifests.iter().find(|e| e.platform.as_ref().is_some_and(|p| p.architecture == arch_of(&other))).unwrap();
        let mf: ImageManifest = serde_json::from_slice(&scanned.small[&other_manifest.digest]).unwrap();
        std::iter::once(other_manifest.digest.clone())
            .chain(std::iter::once(mf.config.digest))
            .chain(mf.layers.into_iter().map(|l| l.digest))
            .collect()
    };
    let original = std::fs::read(&bundle).unwrap();
    let damaged = dir.path().join("damaged.tar");
    let out_damaged = dir.path().join("damaged-images.tar");
    let mut checked = 0;
    for (digest, images) in reached.iter().filter(|(d, _)| !other_blobs.contains(*d)) {
        let blob = &scanned.blobs[digest];
        let mut bytes = original.clone();
        bytes[usize::try_from(blob.offset + blob.size / 2).unwrap()] ^= 0x20;
        std::fs::write(&damaged, &bytes).unwrap();
        let e = archive(&damaged, &[&layered, &derived, &multi], &hp, &out_damaged).expect_err("a flipped byte");
        let text = e.to_string();
        match archive_error(e) {
            ArchiveError::Damaged { image, digest: named, reason, .. } => {
                assert_eq!(&named, digest, "{text}");
                assert!(images.contains(&image), "{digest} named under {image}, reached by {images:?}");
                assert!(reason.contains("hash to"), "{reason}");
            }
            other => panic!("{digest}: expected Damaged, got {other}"),
        }
        assert!(text.contains("must be discarded"), "{text}");
        checked += 1;
    }
    assert!(checked >= 3 + 4 + 1 + 3, "every manifest, configuration and layer read: {checked}");
    // The output of a damaged layer is cut inside that layer: no manifest.json, no end.
    // Docker and skopeo both refuse it.
    let big_layer = d.layers[3].clone();
    let blob = &scanned.blobs[&big_layer];
    let mut bytes = original.clone();
    bytes[usize::try_from(blob.offset + blob.size - 10).unwrap()] ^= 0x01;
    std::fs::write(&damaged, &bytes).unwrap();
    archive(&damaged, &[&derived], &hp, &out_damaged).expect_err("the last chunk of the big layer");
    let written = std::fs::read(&out_damaged).unwrap();
    let end = usize::try_from(blob.offset + blob.size).unwrap();
    let damaged_tail = &bytes[end - 64..end];
    assert!(written.windows(64).any(|w| w == &bytes[end - 300_000..end - 300_000 + 64]), "the layer's first chunks are written");
    assert!(!written.windows(64).any(|w| w == damaged_tail), "the layer's last chunk is not written");
    assert!(!written.windows(13).any(|w| w == b"manifest.json"));
    let (ok, said) = try_run("docker", &["load", "-i", &out_damaged.display().to_string()]);
    assert!(!ok, "docker load refuses a cut archive: {said}");
    let (ok, said) = try_run("skopeo", &["inspect", &format!("docker-archive:{}", out_damaged.display())]);
    assert!(!ok, "skopeo refuses a cut archive: {said}");
    drop(cleanup);
    for image in [l, d, m] {
        assert!(docker_inspect(&image.config.to_string()).is_none(), "{} removed", image.config);
    }
}

/// The containerd socket Docker's own containerd listens on (Debian's docker.io), or a
/// system containerd's.
fn containerd_socket() -> Option<PathBuf> {
    ["/var/run/docker/containerd/containerd.sock", "/run/containerd/containerd.sock"].into_iter().map(PathBuf::from).find(|p| p.exists())
}

/// The skip rule (see common::require) for what only this test needs: `ctr` and a
/// containerd socket.
fn require_containerd(test: &str) -> Option<PathBuf> {
    let socket = containerd_socket();
    let ctr = Command::new("ctr").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success());
    if let (Some(socket), true) = (&socket, ctr) {
        return Some(socket.clone());
    }
    let reason = "missing ctr and a containerd socket (Debian's docker.io brings both; run e2e/testbed/install.sh)";
    assert!(!std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true")), "{test} cannot run in CI: {reason}");
    let _ = std::io::stderr().write_all(format!("\nSKIPPED: {test}: {reason}\n").as_bytes());
    if let Ok(path) = std::env::var("IDP_LAB_SKIP_LOG")
        && !path.is_empty()
    {
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path).unwrap();
        f.write_all(format!("{test}\t{reason}\n").as_bytes()).unwrap();
    }
    None
}

/// A containerd namespace removed (with its images and content) when dropped.
struct Namespace {
    socket: PathBuf,
    name: String,
}

impl Namespace {
    fn ctr(&self, args: &[&str]) -> (bool, String) {
        let mut all = vec!["-a", self.socket.to_str().unwrap(), "-n", &self.name];
        all.extend_from_slice(args);
        try_run("ctr", &all)
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let (_, images) = self.ctr(&["images", "ls", "-q"]);
        for image in images.lines().filter(|l| !l.is_empty()) {
            self.ctr(&["images", "rm", "--sync", image]);
        }
        let (_, content) = self.ctr(&["content", "ls", "-q"]);
        for blob in content.lines().filter(|l| !l.is_empty()) {
            self.ctr(&["content", "rm", blob]);
        }
        for _ in 0..50 {
            if try_run("ctr", &["-a", self.socket.to_str().unwrap(), "namespaces", "rm", &self.name]).0 {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_imports_and_unpacks_the_archive_with_compressed_layers() {
    let test = "containerd_imports_and_unpacks_the_archive_with_compressed_layers";
    if !require(test, false) {
        return;
    }
    let Some(socket) = require_containerd(test) else { return };
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let salt = format!("{}-{}", std::process::id(), registry.port);
    let (_, configs) = push_real_index(&registry, dir.path(), "idp-bundle-test/ctr", "v1", &salt);
    let image = format!("{}/idp-bundle-test/ctr:v1", registry.host());
    let bundle = dir.path().join("bundle.tar");
    create(&[image_item(&image, "--image").unwrap()], &bundle, &["linux/amd64", "linux/arm64"]).await;
    let hp = host_platform();
    let out = dir.path().join("images.tar");
    let summary = archive(&bundle, &[&image], &hp, &out).unwrap();
    assert_eq!(summary.images[0].config.to_string(), configs[&hp]);
    let ns = Namespace { socket, name: format!("idp-bundle-test-{salt}") };
    let (ok, said) = ns.ctr(&["images", "import", &out.display().to_string()]);
    assert!(ok, "ctr images import: {said}");
    let (ok, listed) = ns.ctr(&["images", "check"]);
    assert!(ok, "{listed}");
    let line = listed.lines().find(|l| l.starts_with(&image)).unwrap_or_else(|| panic!("{image} imported: {listed}"));
    assert!(line.contains("complete (2/2)") && line.trim_end().ends_with("true"), "complete and unpacked: {line}");
}
