//! `read_file` over a real bundle holding the Gateway API v1.2.1 CRD files: the shared
//! fixtures (`<shared>/fixtures/gateway-api-v1.2.1`, with their `SHA256SUMS`) served by
//! python3's http.server, bundled by `create` as a tar, and the same tar unpacked by
//! tar(1) into a directory layout.
//!
//! The bundle holds the files under the URLs the embedded lock pins
//! (`https://raw.githubusercontent.com/...`), which this machine cannot reach. The items
//! are therefore the lock's own (`items_from_lock`, so named exactly as `bundle create`
//! names them), with only where each is fetched from pointed at the loopback server that
//! serves the same bytes: `create` still downloads them over HTTP and checks them against
//! the lock's sha256, like any file.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use common::{FileServer, require_programs, run};
use idp_bundle::create::{Item, Source, items_from_lock};
use idp_bundle::{BundleError, Client, CreateOptions, read_file};
use idp_core::lock::{Artifact, Lock, Owner};
use std::path::{Path, PathBuf};

/// The component whose upstream files these are.
const COMPONENT: &str = "gateway-api-crds";

/// `<shared>/fixtures/gateway-api-v1.2.1` (`IDP_LAB_SHARED`, else `../shared` beside the
/// repository).
fn fixtures() -> PathBuf {
    let shared = std::env::var_os("IDP_LAB_SHARED")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    shared.join("fixtures/gateway-api-v1.2.1")
}

fn ready(test: &str) -> bool {
    require_programs(
        test,
        &[
            ("python3", &["--version"][..], "apt-get install python3"),
            ("curl", &["--version"][..], "apt-get install curl"),
            ("tar", &["--version"][..], "apt-get install tar"),
        ],
        &[(&fixtures().join("SHA256SUMS"), "check out the shared fixtures beside the repository, or set IDP_LAB_SHARED")],
    )
}

/// One upstream file: its URL (the lock's), its sha256 (hex) and the fixture's bytes.
struct Upstream {
    url: String,
    sha256: String,
    bytes: Vec<u8>,
}

/// The lock's files of the component, each with the fixture of its name; the fixture's
/// `SHA256SUMS` must agree with the lock and with the bytes.
fn upstreams() -> Vec<Upstream> {
    let dir = fixtures();
    let sums = std::fs::read_to_string(dir.join("SHA256SUMS")).unwrap();
    let lock = Lock::embedded().unwrap();
    let mut out = Vec::new();
    for entry in lock.entries() {
        let (Owner::Component(COMPONENT), Artifact::File(file)) = (entry.owner, entry.artifact) else { continue };
        let name = file.url.rsplit('/').next().unwrap();
        let listed = sums.lines().find_map(|l| l.split_once("  ").filter(|(_, n)| *n == name).map(|(h, _)| h.to_owned()));
        let sha256 = file.sha256.clone().unwrap();
        assert_eq!(listed.as_deref(), Some(sha256.as_str()), "SHA256SUMS and the lock agree on {name}");
        let bytes = std::fs::read(dir.join(name)).unwrap();
        assert_eq!(common::sha256(&bytes), format!("sha256:{sha256}"), "{name} is the file SHA256SUMS names");
        out.push(Upstream { url: file.url.clone(), sha256, bytes });
    }
    assert_eq!(out.len(), 5, "the five standard-channel CRD files");
    out
}

/// A bundle (tar) of the component's files, leaving out those whose URL ends with one of
/// `without`; fetched from `server`.
async fn bundle(dir: &Path, server: &FileServer, without: &[&str]) -> PathBuf {
    let lock = Lock::embedded().unwrap();
    let entries: Vec<_> = lock
        .entries()
        .into_iter()
        .filter(|e| matches!((e.owner, e.artifact), (Owner::Component(COMPONENT), Artifact::File(f)) if !without.iter().any(|w| f.url.ends_with(w))))
        .collect();
    let items: Vec<Item> = items_from_lock(&entries)
        .unwrap()
        .into_iter()
        .map(|mut item| {
            if let Source::File { url, .. } = &mut item.source {
                // Fetched from the loopback copy; named, and checked, as the lock says.
                *url = server.url(url.rsplit('/').next().unwrap());
            }
            item
        })
        .collect();
    let out = dir.join(format!("bundle-{}.tar", without.len()));
    let options = CreateOptions { out: out.clone(), platforms: vec!["linux/amd64".into()], allow_unverified: false };
    idp_bundle::create(&Client::new().unwrap(), &items, &options, &mut |_| {}).await.unwrap();
    out
}

/// The tar unpacked by tar(1) into a directory layout.
fn unpacked(tar: &Path) -> PathBuf {
    let dir = tar.with_extension("d");
    std::fs::create_dir_all(&dir).unwrap();
    run("tar", &["-xf", &tar.display().to_string(), "-C", &dir.display().to_string()]);
    assert!(dir.join("index.json").is_file() && dir.join("blobs/sha256").is_dir(), "an OCI layout");
    dir
}

#[tokio::test]
async fn read_file_returns_the_fixture_bytes_from_a_tar_and_from_a_directory() {
    if !ready("read_file_returns_the_fixture_bytes_from_a_tar_and_from_a_directory") {
        return;
    }
    let files = upstreams();
    let server = FileServer::start(&fixtures());
    let work = tempfile::tempdir().unwrap();
    let tar = bundle(work.path(), &server, &[]).await;
    let dir = unpacked(&tar);
    for layout in [&tar, &dir] {
        for f in &files {
            let read =
                read_file(layout, &f.url, Some(&f.sha256)).unwrap_or_else(|e| panic!("{}: {}", f.url, idp_bundle::bundle::chain(&e)));
            assert!(read == f.bytes, "{} from {} is the fixture, byte for byte", f.url, layout.display());
            let prefixed = read_file(layout, &f.url, Some(&format!("sha256:{}", f.sha256))).unwrap();
            assert!(prefixed == f.bytes, "sha256:<hex> names the same file");
            // An unverified entry (no sha256) takes what the bundle holds for the URL.
            assert!(read_file(layout, &f.url, None).unwrap() == f.bytes, "{} without a sha256", f.url);
        }
    }
    // Each file is a different blob: no answer is another file's.
    assert_eq!(files.iter().map(|f| f.bytes.len()).collect::<std::collections::BTreeSet<_>>().len(), files.len());
}

/// Flips one byte of `path` at `offset`.
fn flip(path: &Path, offset: u64) {
    use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
    let mut file = std::fs::OpenOptions::new().read(true).write(true).open(path).unwrap();
    file.seek(SeekFrom::Start(offset)).unwrap();
    let mut byte = [0u8];
    file.read_exact(&mut byte).unwrap();
    file.seek(SeekFrom::Start(offset)).unwrap();
    file.write_all(&[byte[0] ^ 0x20]).unwrap();
}

#[tokio::test]
async fn a_flipped_byte_in_the_files_blob_is_caught_in_a_tar_and_in_a_directory() {
    if !ready("a_flipped_byte_in_the_files_blob_is_caught_in_a_tar_and_in_a_directory") {
        return;
    }
    let files = upstreams();
    let server = FileServer::start(&fixtures());
    let work = tempfile::tempdir().unwrap();
    let tar = bundle(work.path(), &server, &[]).await;
    let dir = unpacked(&tar);
    let target = files.iter().find(|f| f.url.ends_with("_httproutes.yaml")).unwrap();
    let digest = common::sha256(&target.bytes);

    // In the tar: the byte 1000 into the blob, found where `scan` says it starts.
    let scanned = idp_bundle::layout::scan(&tar, false).unwrap();
    let blob = &scanned.blobs[&idp_core::oci::Digest::parse(&digest).unwrap()];
    flip(&tar, blob.offset + 1000);
    // In the directory: the same byte of blobs/sha256/<hex>.
    flip(&dir.join("blobs/sha256").join(&digest[7..]), 1000);

    for layout in [&tar, &dir] {
        let e = read_file(layout, &target.url, Some(&target.sha256)).expect_err("a damaged blob is refused");
        let message = e.to_string();
        assert!(matches!(&e, BundleError::Damaged { bundle, .. } if bundle == layout), "{message}");
        assert!(message.contains(&digest), "names the blob: {message}");
        assert!(message.contains(&target.url), "names the file: {message}");
        assert!(message.contains("bundle verify"), "says how to see every problem: {message}");
        // Without an expected sha256 the blob's own digest still catches it.
        assert!(matches!(read_file(layout, &target.url, None), Err(BundleError::Damaged { .. })));
        // The other files are intact and still read.
        for f in files.iter().filter(|f| f.url != target.url) {
            assert!(read_file(layout, &f.url, Some(&f.sha256)).unwrap() == f.bytes);
        }
    }
    // `bundle verify` agrees about the tar.
    let verified = idp_bundle::verify(&tar).unwrap();
    assert!(verified.problems.iter().any(|p| p.digest.as_ref().map(ToString::to_string).as_deref() == Some(digest.as_str())));
}

#[tokio::test]
async fn a_url_the_bundle_lacks_is_named_with_the_bundle_create_that_adds_it() {
    if !ready("a_url_the_bundle_lacks_is_named_with_the_bundle_create_that_adds_it") {
        return;
    }
    let files = upstreams();
    let server = FileServer::start(&fixtures());
    let work = tempfile::tempdir().unwrap();
    let tar = bundle(work.path(), &server, &["_httproutes.yaml"]).await;
    let dir = unpacked(&tar);
    let lacking = files.iter().find(|f| f.url.ends_with("_httproutes.yaml")).unwrap();
    for layout in [&tar, &dir] {
        let e = read_file(layout, &lacking.url, Some(&lacking.sha256)).expect_err("not in the bundle");
        let message = e.to_string();
        assert!(matches!(&e, BundleError::NoFile { url, held: 4, .. } if *url == lacking.url), "{message}");
        assert!(message.contains(&lacking.url), "names the URL: {message}");
        assert!(message.contains(&layout.display().to_string()), "names the bundle: {message}");
        assert!(message.contains("idp-lab bundle create --profile"), "names the command that adds it: {message}");
        assert!(message.contains("it holds 4 others"), "{message}");
        // The files it holds still read.
        for f in files.iter().filter(|f| f.url != lacking.url) {
            assert!(read_file(layout, &f.url, Some(&f.sha256)).unwrap() == f.bytes);
        }
    }
    // The same path on another host is another file.
    let elsewhere = lacking.url.replace("raw.githubusercontent.com", "example.com");
    assert!(matches!(read_file(&tar, &elsewhere, None), Err(BundleError::NoFile { .. })));
}

#[tokio::test]
async fn a_wrong_expected_sha256_is_refused_naming_both_hashes() {
    if !ready("a_wrong_expected_sha256_is_refused_naming_both_hashes") {
        return;
    }
    let files = upstreams();
    let server = FileServer::start(&fixtures());
    let work = tempfile::tempdir().unwrap();
    let tar = bundle(work.path(), &server, &[]).await;
    let dir = unpacked(&tar);
    let (gateways, other) = (&files[1], &files[0]);
    assert!(gateways.url.ends_with("_gateways.yaml"), "{}", gateways.url);
    for layout in [&tar, &dir] {
        // What a newer lock would pin: another hash for the same URL.
        let e = read_file(layout, &gateways.url, Some(&other.sha256)).expect_err("the bytes are not those expected");
        let message = e.to_string();
        match &e {
            BundleError::FileMismatch { url, expected, actual, .. } => {
                assert_eq!(url, &gateways.url);
                assert_eq!(expected, &format!("sha256:{}", other.sha256));
                assert_eq!(actual, &format!("sha256:{}", gateways.sha256));
            }
            _ => panic!("not a mismatch: {message}"),
        }
        assert!(message.contains(&other.sha256) && message.contains(&gateways.sha256), "names both hashes: {message}");
        // Not a sha256 at all.
        assert!(matches!(read_file(layout, &gateways.url, Some("unverified")), Err(BundleError::Invalid { what: "sha256", .. })));
    }
}

#[tokio::test]
async fn what_is_no_bundle_is_refused_as_such() {
    if !ready("what_is_no_bundle_is_refused_as_such") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let url =
        "https://raw.githubusercontent.com/kubernetes-sigs/gateway-api/v1.2.1/config/crd/standard/gateway.networking.k8s.io_gateways.yaml";
    let missing = work.path().join("no-such.tar");
    assert!(matches!(read_file(&missing, url, None), Err(BundleError::Io { path, .. }) if path == missing));
    // A tar of something else (the fixtures themselves).
    let other = work.path().join("fixtures.tar");
    run("tar", &["-cf", &other.display().to_string(), "-C", &fixtures().display().to_string(), "."]);
    assert!(matches!(read_file(&other, url, None), Err(BundleError::NotABundle { .. })));
    // A directory that is no layout.
    assert!(matches!(read_file(&fixtures(), url, None), Err(BundleError::NotABundle { .. })));
}
