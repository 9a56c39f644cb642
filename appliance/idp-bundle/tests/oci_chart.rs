//! Helm charts from OCI registries (`repository: oci://...`), end to end against real
//! software: a chart this test packages is pushed to Debian's docker-registry (CNCF
//! distribution 2.8) as Helm pushes one (an OCI manifest, config
//! `application/vnd.cncf.helm.config.v1+json`, one
//! `application/vnd.cncf.helm.chart.content.v1.tar+gzip` layer, `+` in the tag as `_`);
//! `lock update` resolves it to the manifest digest the registry and skopeo report;
//! `bundle create` stores it under its own reference, byte for byte; skopeo reads it
//! from the bundle and copies it into a second docker-registry, which then serves the
//! same manifest digest and package.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use common::{Registry, require, run, sha256, tar_gz};
use idp_bundle::create::{CreateOptions, Item, Source, items_from_lock};
use idp_bundle::layout::scan;
use idp_bundle::{BundleError, Client, Kind};
use idp_core::lock::Lock;
use idp_core::oci::{Digest, HELM_CHART_CONTENT, HELM_CONFIG, ImageManifest, OCI_MANIFEST};
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::Path;

const NAME: &str = "demo";
const VERSION: &str = "0.1.0+build.1";
const TAG: &str = "0.1.0_build.1";

/// A chart package as `helm package` lays it out: `<name>/Chart.yaml` and friends.
fn package_chart(dir: &Path, name: &str, version: &str, salt: &str) -> Vec<u8> {
    let src = dir.join(format!("src-{name}-{version}"));
    std::fs::create_dir_all(src.join(name).join("templates")).unwrap();
    std::fs::write(src.join(name).join("Chart.yaml"), format!("apiVersion: v2\nname: {name}\nversion: {version}\n")).unwrap();
    std::fs::write(src.join(name).join("values.yaml"), format!("replicas: 1\nsalt: {salt:?}\n")).unwrap();
    std::fs::write(src.join(name).join("templates/cm.yaml"), format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\n"))
        .unwrap();
    tar_gz(&src, name, &dir.join(format!("{name}-{version}-{salt}.tgz")))
}

/// A one-layer OCI manifest over `config` at `repository:tag`, as Helm (or ORAS) pushes
/// one; returns its digest.
fn push_artifact(
    registry: &Registry,
    repository: &str,
    tag: &str,
    (config_type, config): (&str, &[u8]),
    (layer_type, layer): (&str, &[u8]),
) -> String {
    let config_digest = registry.push_blob(repository, config);
    let layer_digest = registry.push_blob(repository, layer);
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"{config_type}","digest":"{config_digest}","size":{}}},"layers":[{{"mediaType":"{layer_type}","digest":"{layer_digest}","size":{},"annotations":{{"org.opencontainers.image.title":"chart.tgz"}}}}]}}"#,
        config.len(),
        layer.len()
    );
    registry.put_manifest(repository, tag, OCI_MANIFEST, manifest.as_bytes())
}

/// A Helm chart artifact of `package` at `<repository>:<tag>`; its manifest digest.
fn push_chart(registry: &Registry, repository: &str, name: &str, version: &str, package: &[u8]) -> String {
    let config = format!(r#"{{"apiVersion":"v2","name":"{name}","version":"{version}"}}"#);
    let tag = version.replace('+', "_");
    push_artifact(registry, repository, &tag, (HELM_CONFIG, config.as_bytes()), (HELM_CHART_CONTENT, package))
}

fn chart_lock(repository: &str, name: &str, version: &str, pin: &str) -> String {
    format!("    chart:\n      repository: \"{repository}\"\n      name: \"{name}\"\n      version: \"{version}\"\n{pin}")
}

fn items(lock: &Lock, component: &str) -> Vec<Item> {
    let entries: Vec<_> = lock.entries().into_iter().filter(|e| e.owner.to_string() == component).collect();
    assert_eq!(entries.len(), 1, "{component}: one chart entry");
    items_from_lock(&entries).expect("items")
}

fn options(out: &Path) -> CreateOptions {
    CreateOptions { out: out.to_owned(), platforms: vec!["linux/amd64".into(), "linux/arm64".into()], allow_unverified: false }
}

/// The bytes of blob `digest` in the bundle's tar, read at its offset.
fn blob_bytes(bundle: &Path, digest: &Digest) -> Vec<u8> {
    let scanned = scan(bundle, false).unwrap();
    let blob = &scanned.blobs[digest];
    let mut file = std::fs::File::open(bundle).unwrap();
    file.seek(SeekFrom::Start(blob.offset)).unwrap();
    let mut bytes = vec![0u8; usize::try_from(blob.size).unwrap()];
    file.read_exact(&mut bytes).unwrap();
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oci_chart_is_locked_by_its_manifest_digest_and_bundled_under_its_own_reference() {
    if !require("an_oci_chart_is_locked_by_its_manifest_digest_and_bundled_under_its_own_reference", false) {
        return;
    }
    let registry = Registry::start();
    let host = registry.host();
    let dir = tempfile::tempdir().unwrap();
    let package = package_chart(dir.path(), NAME, VERSION, "first");
    let manifest_digest = push_chart(&registry, &format!("charts/{NAME}"), NAME, VERSION, &package);
    // A chart whose tag moved after the lock pinned it.
    let pinned = push_chart(&registry, "charts/moving", "moving", "1.0.0", &package_chart(dir.path(), "moving", "1.0.0", "first"));
    let moved = push_chart(&registry, "charts/moving", "moving", "1.0.0", &package_chart(dir.path(), "moving", "1.0.0", "second"));
    assert_ne!(pinned, moved);
    let repository = format!("oci://{host}/charts");
    let text = format!(
        "version: 1\ncomponents:\n  demo:\n{}\n  moving:\n{}\n  absent:\n{}\n",
        chart_lock(&repository, NAME, VERSION, "      unverified: \"not resolved yet\""),
        chart_lock(&repository, "moving", "1.0.0", &format!("      digest: \"{pinned}\"")),
        chart_lock(&repository, "absent", "1.0.0", "      unverified: \"not resolved yet\""),
    );
    let lock = Lock::parse(&text, "test-lock.yaml").unwrap_or_else(|e| panic!("the test lock parses:\n{e}"));
    let reference = format!("{host}/charts/{NAME}:{TAG}");
    assert_eq!(lock.components["demo"].chart.as_ref().unwrap().oci_reference().as_deref(), Some(reference.as_str()));

    // lock update: the manifest digest, as docker-registry and skopeo report it.
    let updated = idp_bundle::update(&lock, &Client::new().unwrap()).await.expect("updates");
    let chart = updated.components["demo"].chart.as_ref().unwrap();
    assert_eq!(registry.content_digest(&format!("charts/{NAME}"), TAG), manifest_digest);
    let raw = std::process::Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false", &format!("docker://{reference}")])
        .output()
        .unwrap();
    assert!(raw.status.success(), "skopeo inspect --raw: {}", String::from_utf8_lossy(&raw.stderr));
    assert_eq!(sha256(&raw.stdout), manifest_digest, "skopeo's raw manifest hashes to the registry's digest");
    assert_eq!(
        (chart.digest.as_deref(), chart.url.as_deref(), chart.unverified.as_deref(), chart.source.as_deref()),
        (Some(manifest_digest.as_str()), None, None, None),
        "{chart:?}"
    );
    assert_ne!(chart.digest.as_deref(), Some(sha256(&package).as_str()), "the manifest's digest, not the package's");
    // The moved tag: the lock keeps its digest and says what the tag names now.
    let moving = updated.components["moving"].chart.as_ref().unwrap();
    assert_eq!(moving.digest.as_deref(), Some(pinned.as_str()));
    assert!(moving.unverified.as_deref().is_some_and(|r| r.contains(&moved) && r.contains("keeps")), "{moving:?}");
    // An absent chart stays unverified, with the registry's answer.
    let absent = updated.components["absent"].chart.as_ref().unwrap();
    assert!(absent.digest.is_none() && absent.unverified.as_deref().is_some_and(|r| r.contains("404")), "{absent:?}");
    // The updated lock reads back.
    let updated = Lock::parse(&updated.to_yaml(), "updated").expect("reads back");

    // bundle create: a chart named by its OCI reference, pinned to the manifest digest.
    let items = items(&updated, "demo");
    assert_eq!((items[0].ref_name.as_str(), items[0].kind), (reference.as_str(), Kind::Chart));
    assert!(
        matches!(&items[0].source, Source::OciChart { name } if name.digest.as_ref().map(ToString::to_string) == Some(manifest_digest.clone()))
    );
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("bundle.tar");
    let created = idp_bundle::create(&Client::new().unwrap(), &items, &options(&out), &mut |_| {}).await.expect("creates");
    assert_eq!(created.artifacts.len(), 1);
    let bundled = &created.artifacts[0];
    assert_eq!(
        (bundled.name.as_str(), bundled.kind, bundled.digest.to_string()),
        (reference.as_str(), Kind::Chart, manifest_digest.clone())
    );
    assert!(bundled.platforms.is_empty(), "no platform applies to a chart: {:?}", bundled.platforms);
    assert_eq!((created.fetched, created.warnings.len()), (3, 0), "the manifest, the Helm config and the package: {created:?}");

    // index.json names it by its reference, kind chart; the manifest is the registry's,
    // unchanged; its layer is the package byte for byte; its config is Helm's.
    let scanned = scan(&out, true).unwrap();
    let index = scanned.index.as_ref().unwrap();
    assert_eq!(index.manifests.len(), 1);
    let desc = &index.manifests[0];
    assert_eq!((desc.ref_name(), desc.media_type.as_str()), (Some(reference.as_str()), OCI_MANIFEST));
    assert_eq!(desc.annotation(idp_bundle::bundle::KIND_ANNOTATION), Some("chart"));
    assert_eq!(desc.digest.to_string(), manifest_digest);
    let manifest_bytes = &scanned.small[&desc.digest];
    assert_eq!(manifest_bytes, &raw.stdout, "the registry's manifest bytes");
    let manifest: ImageManifest = serde_json::from_slice(manifest_bytes).unwrap();
    assert_eq!((manifest.config.media_type.as_str(), manifest.layers.len()), (HELM_CONFIG, 1));
    assert_eq!(manifest.layers[0].media_type, HELM_CHART_CONTENT);
    assert_eq!(blob_bytes(&out, &manifest.layers[0].digest), package, "the package, byte for byte");
    let config: serde_json::Value = serde_json::from_slice(&blob_bytes(&out, &manifest.config.digest)).unwrap();
    assert_eq!((config["name"].as_str(), config["version"].as_str()), (Some(NAME), Some(VERSION)));
    assert!(scanned.blobs.iter().all(|(d, b)| b.actual.as_ref() == Some(d)), "every blob has its digest");

    // verify and inspect.
    let verified = idp_bundle::verify(&out).unwrap();
    assert!(verified.ok() && verified.artifacts == 1 && verified.blobs == 3, "{verified:?}");
    let inspection = idp_bundle::inspect(&out).unwrap();
    let listed = &inspection.artifacts[0];
    assert_eq!((listed.name.as_str(), listed.kind, listed.blobs), (reference.as_str(), Kind::Chart, 3));
    assert!(listed.platforms.is_empty() && listed.error.is_none() && listed.owners == ["demo"], "{listed:?}");
    assert_eq!(listed.size, manifest_bytes.len() as u64 + manifest.config.size + package.len() as u64);

    // skopeo reads it from the bundle: the raw manifest by its reference, and a copy into
    // another docker-registry, which then serves the same digest and package. (skopeo
    // 1.9's plain `inspect` refuses any non-image artifact, from a registry as from the
    // bundle: "unsupported image-specific operation on artifact with type
    // application/vnd.cncf.helm.config.v1+json".)
    let archive = format!("oci-archive:{}:{reference}", out.display());
    assert_eq!(sha256(run("skopeo", &["inspect", "--raw", &archive]).as_bytes()), manifest_digest);
    let plain = std::process::Command::new("skopeo").args(["inspect", &archive]).output().unwrap();
    assert!(!plain.status.success() && String::from_utf8_lossy(&plain.stderr).contains("artifact"), "skopeo 1.9 refuses: {plain:?}");
    let lab = Registry::start();
    run("skopeo", &["copy", "--dest-tls-verify=false", &archive, &format!("docker://{}/charts/{NAME}:{TAG}", lab.host())]);
    assert_eq!(lab.content_digest(&format!("charts/{NAME}"), TAG), manifest_digest, "the same manifest, copied from the bundle");
    let served = std::process::Command::new("curl")
        .args(["-fsS", &format!("{}/v2/charts/{NAME}/blobs/{}", lab.base(), manifest.layers[0].digest)])
        .output()
        .unwrap();
    assert!(served.status.success(), "curl: {}", String::from_utf8_lossy(&served.stderr));
    assert_eq!(served.stdout, package, "the copied package, byte for byte");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oci_chart_that_is_not_what_the_lock_pins_is_refused() {
    if !require("an_oci_chart_that_is_not_what_the_lock_pins_is_refused", false) {
        return;
    }
    let registry = Registry::start();
    let host = registry.host();
    let dir = tempfile::tempdir().unwrap();
    let package = package_chart(dir.path(), NAME, VERSION, "real");
    let real = push_chart(&registry, &format!("charts/{NAME}"), NAME, VERSION, &package);
    // An image where the lock expects a chart: an OCI image config, a tar layer.
    let image_config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"config":{}}"#;
    let image = push_artifact(
        &registry,
        "charts/image",
        "1.0.0",
        (idp_core::oci::OCI_CONFIG, image_config),
        (idp_core::oci::OCI_LAYER_GZIP, &common::gzip_tar(dir.path(), "x.txt", "x")),
    );
    let repository = format!("oci://{host}/charts");
    let wrong = sha256(b"another manifest");
    let text = format!(
        "version: 1\ncomponents:\n  wrong:\n{}\n  image:\n{}\n",
        chart_lock(&repository, NAME, VERSION, &format!("      digest: \"{wrong}\"")),
        chart_lock(&repository, "image", "1.0.0", &format!("      digest: \"{image}\"")),
    );
    let lock = Lock::parse(&text, "test-lock.yaml").unwrap_or_else(|e| panic!("the test lock parses:\n{e}"));
    let client = Client::new().unwrap();
    let work = tempfile::tempdir().unwrap();

    // A pinned digest the registry does not hold: LockMismatch, naming both digests.
    let out = work.path().join("wrong.tar");
    let e = idp_bundle::create(&client, &items(&lock, "wrong"), &options(&out), &mut |_| {}).await.expect_err("a wrong digest");
    assert!(
        matches!(&e, BundleError::LockMismatch { artifact, reason }
            if *artifact == format!("{host}/charts/{NAME}:{TAG}") && reason.contains(&wrong) && reason.contains(&real)),
        "{}",
        idp_bundle::bundle::chain(&e)
    );
    assert!(!out.exists(), "no bundle");
    // The same with the package's digest pinned (an HTTP chart's kind of digest).
    let text = text.replace(&wrong, &sha256(&package));
    let lock = Lock::parse(&text, "test-lock.yaml").unwrap();
    let e = idp_bundle::create(&client, &items(&lock, "wrong"), &options(&out), &mut |_| {}).await.expect_err("a package digest");
    assert!(matches!(&e, BundleError::LockMismatch { reason, .. } if reason.contains(&real)), "{}", idp_bundle::bundle::chain(&e));

    // An image under a chart's name: LockMismatch, saying it is not a chart.
    let out = work.path().join("image.tar");
    let e = idp_bundle::create(&client, &items(&lock, "image"), &options(&out), &mut |_| {}).await.expect_err("not a chart");
    assert!(
        matches!(&e, BundleError::LockMismatch { reason, .. } if reason.contains(HELM_CONFIG) && reason.contains(idp_core::oci::OCI_CONFIG)),
        "{e}"
    );
    assert!(!out.exists(), "no bundle");

    // And unverified, without --allow-unverified: refused before anything is fetched.
    let text = format!("version: 1\ncomponents:\n  loose:\n{}\n", chart_lock(&repository, NAME, VERSION, "      unverified: \"later\""));
    let lock = Lock::parse(&text, "test-lock.yaml").unwrap();
    let e = idp_bundle::create(&client, &items(&lock, "loose"), &options(&out), &mut |_| {}).await.expect_err("unverified");
    assert!(matches!(&e, BundleError::Unverified { entries } if entries == &[format!("{host}/charts/{NAME}:{TAG}")]), "{e}");
}
