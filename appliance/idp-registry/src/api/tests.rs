//! The API in-process, through [`handle`], over layouts written here.

use super::*;
use crate::RegistryError;
use http_body_util::Full;
use idp_core::oci::{ImageIndex, OCI_CONFIG, OCI_INDEX, OCI_LAYER_TAR, OCI_MANIFEST, OciLayout, Platform, REF_NAME_ANNOTATION};
use std::collections::BTreeMap;
use std::path::Path;

/// A layout under construction.
struct LayoutBuilder {
    dir: tempfile::TempDir,
    index: ImageIndex,
}

impl LayoutBuilder {
    fn new() -> LayoutBuilder {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("blobs/sha256")).expect("blobs dir");
        std::fs::write(dir.path().join("oci-layout"), serde_json::to_vec(&OciLayout::default()).expect("json")).expect("oci-layout");
        LayoutBuilder { dir, index: ImageIndex::empty() }
    }

    fn blob(&self, media_type: &str, bytes: &[u8]) -> Descriptor {
        let digest = Digest::of(bytes);
        std::fs::write(self.dir.path().join("blobs/sha256").join(digest.hex()), bytes).expect("blob");
        Descriptor::new(media_type, digest, bytes.len() as u64)
    }

    fn image(&self, config: &str, layers: &[&[u8]]) -> Descriptor {
        let manifest = ImageManifest {
            schema_version: 2,
            media_type: Some(OCI_MANIFEST.into()),
            artifact_type: None,
            config: self.blob(OCI_CONFIG, config.as_bytes()),
            layers: layers.iter().map(|l| self.blob(OCI_LAYER_TAR, l)).collect(),
            subject: None,
            annotations: None,
        };
        self.blob(OCI_MANIFEST, &serde_json::to_vec(&manifest).expect("json"))
    }

    fn index_of(&self, manifests: Vec<(Descriptor, &str)>) -> Descriptor {
        let manifests = manifests
            .into_iter()
            .map(|(mut d, arch)| {
                d.platform =
                    Some(Platform { architecture: arch.into(), os: "linux".into(), os_version: None, os_features: None, variant: None });
                d
            })
            .collect();
        let index = ImageIndex { manifests, ..ImageIndex::empty() };
        self.blob(OCI_INDEX, &serde_json::to_vec(&index).expect("json"))
    }

    fn name(&mut self, mut desc: Descriptor, ref_name: &str) -> Descriptor {
        desc.annotations = Some(BTreeMap::from([(REF_NAME_ANNOTATION.to_owned(), ref_name.to_owned())]));
        self.index.manifests.push(desc.clone());
        desc
    }

    fn finish(&self) {
        std::fs::write(self.dir.path().join("index.json"), serde_json::to_vec(&self.index).expect("json")).expect("index.json");
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// The layout most tests use, and what is in it.
struct Fixture {
    layout: LayoutBuilder,
    local: tempfile::TempDir,
    registry: Registry,
    /// docker.io/library/x:1, a two-platform index.
    x_index: Descriptor,
    x_amd64: Descriptor,
    /// 3 MiB + 7 bytes, in x's amd64 image.
    big_layer: (Descriptor, Vec<u8>),
    /// docker.io/org/app:v1 and ghcr.io/org/app:v1: same path, different images.
    hub_app: Descriptor,
    ghcr_app: Descriptor,
}

fn fixture() -> Fixture {
    let mut layout = LayoutBuilder::new();
    let big: Vec<u8> = (0..3 * 1024 * 1024 + 7).map(|i: u32| (i % 253) as u8).collect();
    let x_amd64 = layout.image("{\"architecture\":\"amd64\"}", &[b"base", &big]);
    let x_arm64 = layout.image("{\"architecture\":\"arm64\"}", &[b"base", b"arm"]);
    let x_index = layout.index_of(vec![(x_amd64.clone(), "amd64"), (x_arm64, "arm64")]);
    let x_index = layout.name(x_index, "docker.io/library/x:1");
    let hub_app = layout.image("{\"from\":\"hub\"}", &[b"hub layer"]);
    let hub_app = layout.name(hub_app, "org/app:v1");
    let ghcr_app = layout.image("{\"from\":\"ghcr\"}", &[b"ghcr layer"]);
    let ghcr_app = layout.name(ghcr_app, "ghcr.io/org/app:v1");
    let pause = layout.image("{}", &[b"pause"]);
    layout.name(pause, "registry.k8s.io/pause:3.10");
    let bare = layout.image("{\"bare\":1}", &[b"bare"]);
    layout.name(bare, "v1");
    layout.finish();
    let local = tempfile::tempdir().expect("local dir");
    let registry = Registry::open(Some(layout.path().to_owned()), local.path().join("store")).expect("open");
    let big_desc = Descriptor::new(OCI_LAYER_TAR, Digest::of(&big), big.len() as u64);
    Fixture { layout, local, registry, x_index, x_amd64, big_layer: (big_desc, big), hub_app, ghcr_app }
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    /// The first error code of a distribution error body.
    fn code(&self) -> String {
        self.json()["errors"][0]["code"].as_str().unwrap_or_default().to_owned()
    }
}

async fn call(registry: &Registry, method: Method, uri: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
    let mut request = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Full::new(Bytes::copy_from_slice(body))).expect("request");
    let response = handle(registry, request).await;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.expect("body").to_bytes();
    Answer { status, headers, body }
}

async fn get(registry: &Registry, uri: &str) -> Answer {
    call(registry, Method::GET, uri, &[], b"").await
}

#[tokio::test]
async fn base_answers_with_the_api_version() {
    let f = fixture();
    let a = get(&f.registry, "/v2/").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body, Bytes::from_static(b"{}"));
    assert_eq!(a.header("docker-distribution-api-version"), Some("registry/2.0"));
    assert_eq!(a.header("content-type"), Some(JSON));
    assert_eq!(get(&f.registry, "/v2").await.status, StatusCode::OK);
    let other = get(&f.registry, "/v1/").await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
    assert_eq!(other.header("docker-distribution-api-version"), Some("registry/2.0"));
}

#[tokio::test]
async fn manifests_by_tag_carry_type_digest_and_length() {
    let f = fixture();
    let bytes = std::fs::read(f.layout.path().join("blobs/sha256").join(f.x_index.digest.hex())).expect("index bytes");
    for uri in
        ["/v2/library/x/manifests/1?ns=docker.io", "/v2/x/manifests/1?ns=docker.io", "/v2/library/x/manifests/1", "/v2/x/manifests/1"]
    {
        let a = get(&f.registry, uri).await;
        assert_eq!(a.status, StatusCode::OK, "{uri}");
        assert_eq!(a.header("content-type"), Some(OCI_INDEX), "{uri}");
        assert_eq!(a.header("docker-content-digest"), Some(f.x_index.digest.to_string().as_str()), "{uri}");
        assert_eq!(a.header("content-length"), Some(bytes.len().to_string().as_str()), "{uri}");
        assert_eq!(a.body, bytes, "{uri}");
    }
    let head = call(&f.registry, Method::HEAD, "/v2/library/x/manifests/1", &[], b"").await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.header("content-length"), Some(bytes.len().to_string().as_str()));
    assert_eq!(head.header("docker-content-digest"), Some(f.x_index.digest.to_string().as_str()));
    assert!(head.body.is_empty());
}

#[tokio::test]
async fn ns_keeps_the_same_path_of_two_registries_apart() {
    let f = fixture();
    let hub = f.hub_app.digest.to_string();
    let ghcr = f.ghcr_app.digest.to_string();
    assert_ne!(hub, ghcr);
    let cases = [
        ("/v2/org/app/manifests/v1?ns=docker.io", &hub),
        ("/v2/org/app/manifests/v1?ns=index.docker.io", &hub),
        ("/v2/org/app/manifests/v1?ns=ghcr.io", &ghcr),
        ("/v2/org/app/manifests/v1", &hub),
        ("/v2/ghcr.io/org/app/manifests/v1", &ghcr),
        ("/v2/docker.io/org/app/manifests/v1", &hub),
    ];
    for (uri, digest) in cases {
        let a = get(&f.registry, uri).await;
        assert_eq!(a.status, StatusCode::OK, "{uri}");
        assert_eq!(a.header("docker-content-digest"), Some(digest.as_str()), "{uri}");
    }
    assert_eq!(get(&f.registry, "/v2/org/app/manifests/v1?ns=quay.io").await.code(), "NAME_UNKNOWN");
    assert_eq!(get(&f.registry, "/v2/pause/manifests/3.10?ns=registry.k8s.io").await.status, StatusCode::OK);
    assert_eq!(get(&f.registry, "/v2/pause/manifests/3.10").await.code(), "NAME_UNKNOWN", "no ns: Docker Hub's pause");
    assert_eq!(get(&f.registry, "/v2/registry.k8s.io/pause/manifests/3.10").await.status, StatusCode::OK);
    // Blobs follow the same rule: the ghcr layer is not in Docker Hub's org/app.
    let ghcr_layer = Digest::of(b"ghcr layer");
    assert_eq!(get(&f.registry, &format!("/v2/org/app/blobs/{ghcr_layer}?ns=ghcr.io")).await.status, StatusCode::OK);
    assert_eq!(get(&f.registry, &format!("/v2/org/app/blobs/{ghcr_layer}?ns=docker.io")).await.code(), "BLOB_UNKNOWN");
}

#[tokio::test]
async fn manifests_by_digest_are_scoped_to_their_repository() {
    let f = fixture();
    let uri = format!("/v2/library/x/manifests/{}?ns=docker.io", f.x_amd64.digest);
    let a = get(&f.registry, &uri).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.header("content-type"), Some(OCI_MANIFEST));
    assert_eq!(Digest::of(&a.body), f.x_amd64.digest);
    // Another repository's manifest, and a layer asked for as a manifest.
    assert_eq!(get(&f.registry, &format!("/v2/org/app/manifests/{}", f.x_amd64.digest)).await.code(), "MANIFEST_UNKNOWN");
    assert_eq!(get(&f.registry, &format!("/v2/library/x/manifests/{}", f.big_layer.0.digest)).await.code(), "MANIFEST_UNKNOWN");
    // A manifest can be fetched as a blob, as distribution allows.
    let blob = get(&f.registry, &format!("/v2/library/x/blobs/{}", f.x_amd64.digest)).await;
    assert_eq!(blob.status, StatusCode::OK);
    assert_eq!(Digest::of(&blob.body), f.x_amd64.digest);
}

#[tokio::test]
async fn blobs_stream_whole_and_in_ranges() {
    let f = fixture();
    let (desc, bytes) = &f.big_layer;
    let size = bytes.len();
    let uri = format!("/v2/library/x/blobs/{}", desc.digest);
    let whole = get(&f.registry, &uri).await;
    assert_eq!(whole.status, StatusCode::OK);
    assert_eq!(whole.body.len(), size);
    assert!(whole.body == bytes[..], "the whole blob");
    assert_eq!(whole.header("docker-content-digest"), Some(desc.digest.to_string().as_str()));
    assert_eq!(whole.header("content-length"), Some(size.to_string().as_str()));
    assert_eq!(whole.header("accept-ranges"), Some("bytes"));

    let head = call(&f.registry, Method::HEAD, &uri, &[], b"").await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.header("content-length"), Some(size.to_string().as_str()));
    assert!(head.body.is_empty());

    let ranges = [
        ("bytes=0-0", 0, 0),
        ("bytes=1048570-1048585", 1_048_570, 1_048_585),
        ("bytes=3145000-", 3_145_000, size - 1),
        ("bytes=-7", size - 7, size - 1),
    ];
    for (range, start, end) in ranges {
        let a = call(&f.registry, Method::GET, &uri, &[("range", range)], b"").await;
        assert_eq!(a.status, StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(a.header("content-range"), Some(format!("bytes {start}-{end}/{size}").as_str()), "{range}");
        assert_eq!(a.header("content-length"), Some((end - start + 1).to_string().as_str()), "{range}");
        assert!(a.body == bytes[start..=end], "{range}");
    }
    let unsatisfiable = call(&f.registry, Method::GET, &uri, &[("range", &format!("bytes={size}-"))], b"").await;
    assert_eq!(unsatisfiable.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(unsatisfiable.header("content-range"), Some(format!("bytes */{size}").as_str()));
    assert_eq!(unsatisfiable.code(), "RANGE_INVALID");
}

#[tokio::test]
async fn unknown_things_get_the_error_json_with_404() {
    let f = fixture();
    let unknown = Digest::of(b"nothing");
    let a = get(&f.registry, &format!("/v2/library/x/blobs/{unknown}")).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(a.header("content-type"), Some(JSON));
    let json = a.json();
    assert_eq!(json["errors"][0]["code"], "BLOB_UNKNOWN");
    assert_eq!(json["errors"][0]["message"], "blob unknown to registry");
    assert_eq!(json["errors"][0]["detail"]["digest"], unknown.to_string());
    assert_eq!(json["errors"].as_array().map(Vec::len), Some(1));
    let head = call(&f.registry, Method::HEAD, &format!("/v2/library/x/blobs/{unknown}"), &[], b"").await;
    assert_eq!(head.status, StatusCode::NOT_FOUND);

    let cases = [
        ("/v2/library/x/manifests/2", StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN"),
        (&format!("/v2/library/x/manifests/{unknown}"), StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN"),
        ("/v2/library/nope/manifests/1", StatusCode::NOT_FOUND, "NAME_UNKNOWN"),
        ("/v2/library/nope/tags/list", StatusCode::NOT_FOUND, "NAME_UNKNOWN"),
        (&format!("/v2/library/nope/blobs/{unknown}"), StatusCode::NOT_FOUND, "NAME_UNKNOWN"),
        ("/v2/local/nope/manifests/v1", StatusCode::NOT_FOUND, "NAME_UNKNOWN"),
        ("/v2/local/nope/tags/list", StatusCode::NOT_FOUND, "NAME_UNKNOWN"),
        (&format!("/v2/local/nope/blobs/{unknown}"), StatusCode::NOT_FOUND, "BLOB_UNKNOWN"),
        // A bare-tag ref name (`v1`) names no repository.
        ("/v2/library/v1/manifests/latest", StatusCode::NOT_FOUND, "NAME_UNKNOWN"),
    ];
    for (uri, status, code) in cases {
        let a = get(&f.registry, uri).await;
        assert_eq!((a.status, a.code().as_str()), (status, code), "{uri}");
    }
}

#[tokio::test]
async fn traversal_and_invalid_forms_are_refused_before_any_lookup() {
    let f = fixture();
    // A file outside both stores that a traversal would reach.
    std::fs::write(f.layout.path().join("secret"), "do not serve").expect("secret");
    let hex = "a".repeat(64);
    let cases: Vec<(String, &str)> = vec![
        ("/v2/../secret/manifests/latest".into(), "NAME_INVALID"),
        ("/v2/library/../../secret/manifests/latest".into(), "NAME_INVALID"),
        ("/v2/library/x/../../../secret/blobs/sha256:".to_owned() + &hex, "NAME_INVALID"),
        ("/v2/%2e%2e/secret/manifests/latest".into(), "NAME_INVALID"),
        ("/v2/%2E%2E/secret/tags/list".into(), "NAME_INVALID"),
        ("/v2/library%2Fx/manifests/1".into(), "NAME_INVALID"),
        ("/v2/library%2fx/manifests/1".into(), "NAME_INVALID"),
        ("/v2//secret/manifests/latest".into(), "NAME_INVALID"),
        ("/v2/Library/x/manifests/1".into(), "NAME_INVALID"),
        (format!("/v2/{}/manifests/latest", "a".repeat(256)), "NAME_INVALID"),
        (format!("/v2/{}/b/manifests/latest", "a".repeat(254)), "NAME_INVALID"),
        ("/v2/library/x/blobs/sha256:../../../secret".into(), "DIGEST_INVALID"),
        ("/v2/library/x/blobs/sha256:%2e%2e%2f%2e%2e%2fsecret".into(), "DIGEST_INVALID"),
        ("/v2/library/x/blobs/sha256%3A".to_owned() + &hex, "DIGEST_INVALID"),
        ("/v2/library/x/blobs/sha512:".to_owned() + &hex + &hex, "DIGEST_INVALID"),
        ("/v2/library/x/blobs/md5:".to_owned() + &hex[..32], "DIGEST_INVALID"),
        ("/v2/library/x/blobs/sha256:".to_owned() + &hex.to_uppercase(), "DIGEST_INVALID"),
        ("/v2/library/x/blobs/sha256:".to_owned() + &hex[..63], "DIGEST_INVALID"),
        ("/v2/library/x/manifests/sha512:".to_owned() + &hex + &hex, "DIGEST_INVALID"),
        ("/v2/library/x/manifests/sha256:..".into(), "DIGEST_INVALID"),
        ("/v2/library/x/manifests/..".into(), "TAG_INVALID"),
        ("/v2/library/x/manifests/%2e%2e".into(), "TAG_INVALID"),
        ("/v2/local/app/blobs/sha256:../../../secret".into(), "DIGEST_INVALID"),
        ("/v2/local/../secret/tags/list".into(), "NAME_INVALID"),
    ];
    for (uri, code) in &cases {
        let a = get(&f.registry, uri).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{uri}: {:?}", String::from_utf8_lossy(&a.body));
        assert_eq!(a.code(), *code, "{uri}");
        assert!(!String::from_utf8_lossy(&a.body).contains("do not serve"), "{uri}");
    }
    // Uploads: a digest in the query and an upload id that try the same.
    let post = call(&f.registry, Method::POST, "/v2/local/app/blobs/uploads/?digest=sha256%3A..%2F..%2Fsecret", &[], b"x").await;
    assert_eq!((post.status, post.code().as_str()), (StatusCode::BAD_REQUEST, "DIGEST_INVALID"));
    let post = call(&f.registry, Method::POST, "/v2/local/app/blobs/uploads/?digest=sha1%3Aabc", &[], b"x").await;
    assert_eq!((post.status, post.code().as_str()), (StatusCode::BAD_REQUEST, "DIGEST_INVALID"));
    let patch = call(&f.registry, Method::PATCH, "/v2/local/app/blobs/uploads/..%2F..%2Fsecret", &[], b"x").await;
    assert_eq!((patch.status, patch.code().as_str()), (StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN"));
    let mount = call(&f.registry, Method::POST, "/v2/local/app/blobs/uploads/?mount=..%2Fsecret&from=library/x", &[], b"").await;
    assert_eq!((mount.status, mount.code().as_str()), (StatusCode::BAD_REQUEST, "DIGEST_INVALID"));
    // Nothing was written into the local store by any of it.
    let uploads = std::fs::read_dir(f.local.path().join("store/uploads")).expect("uploads").count();
    assert_eq!(uploads, 0);
}

#[tokio::test]
async fn tags_and_catalog_list_with_pagination() {
    let f = fixture();
    let tags = get(&f.registry, "/v2/org/app/tags/list?ns=ghcr.io").await;
    assert_eq!(tags.json(), json!({ "name": "org/app", "tags": ["v1"] }));
    let catalog = get(&f.registry, "/v2/_catalog").await.json();
    assert_eq!(catalog, json!({ "repositories": ["ghcr.io/org/app", "library/x", "org/app", "registry.k8s.io/pause"] }));
    let page = get(&f.registry, "/v2/_catalog?n=2").await;
    assert_eq!(page.json(), json!({ "repositories": ["ghcr.io/org/app", "library/x"] }));
    assert_eq!(page.header("link"), Some("</v2/_catalog?last=library/x&n=2>; rel=\"next\""));
    let next = get(&f.registry, "/v2/_catalog?last=library/x&n=2").await;
    assert_eq!(next.json(), json!({ "repositories": ["org/app", "registry.k8s.io/pause"] }));
    assert_eq!(next.header("link"), None);
    assert_eq!(get(&f.registry, "/v2/_catalog?n=many").await.code(), "PAGINATION_NUMBER_INVALID");
    assert_eq!(f.registry.mirrored_registries(), vec!["docker.io", "ghcr.io", "registry.k8s.io"]);
}

#[tokio::test]
async fn the_mirror_is_read_only() {
    let f = fixture();
    let digest = Digest::of(b"x");
    let cases = [
        (Method::PUT, "/v2/library/x/manifests/2".to_owned()),
        (Method::DELETE, "/v2/library/x/manifests/1".to_owned()),
        (Method::POST, "/v2/library/x/blobs/uploads/".to_owned()),
        (Method::PATCH, "/v2/library/x/blobs/uploads/abc".to_owned()),
        (Method::DELETE, format!("/v2/library/x/blobs/{digest}")),
        (Method::PUT, format!("/v2/ghcr.io/org/app/manifests/{digest}")),
    ];
    for (method, uri) in cases {
        let a = call(&f.registry, method.clone(), &uri, &[], b"{}").await;
        assert_eq!((a.status, a.code().as_str()), (StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED"), "{method} {uri}");
    }
}

fn docker_manifest(config: &Descriptor, layers: &[&Descriptor]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": oci::DOCKER_MANIFEST,
        "config": { "mediaType": oci::DOCKER_CONFIG, "digest": config.digest, "size": config.size },
        "layers": layers.iter().map(|l| json!({ "mediaType": oci::DOCKER_LAYER_GZIP, "digest": l.digest, "size": l.size })).collect::<Vec<_>>(),
    }))
    .expect("json")
}

#[tokio::test]
async fn monolithic_upload_verifies_the_digest() {
    let f = fixture();
    let content = b"a monolithic blob";
    let digest = Digest::of(content);
    let wrong =
        call(&f.registry, Method::POST, &format!("/v2/local/app/blobs/uploads/?digest={}", Digest::of(b"other")), &[], content).await;
    assert_eq!((wrong.status, wrong.code().as_str()), (StatusCode::BAD_REQUEST, "DIGEST_INVALID"));
    assert_eq!(get(&f.registry, &format!("/v2/local/app/blobs/{digest}")).await.code(), "BLOB_UNKNOWN");
    let ok = call(&f.registry, Method::POST, &format!("/v2/local/app/blobs/uploads/?digest={digest}"), &[], content).await;
    assert_eq!(ok.status, StatusCode::CREATED);
    assert_eq!(ok.header("location"), Some(format!("/v2/local/app/blobs/{digest}").as_str()));
    assert_eq!(ok.header("docker-content-digest"), Some(digest.to_string().as_str()));
    let back = get(&f.registry, &format!("/v2/local/other/blobs/{digest}")).await;
    assert_eq!(back.body, Bytes::from_static(content));
    // The leftover of the failed upload is gone.
    assert_eq!(std::fs::read_dir(f.local.path().join("store/uploads")).expect("uploads").count(), 0);
    // A mount of a blob that is here is a hit.
    let mount = call(&f.registry, Method::POST, &format!("/v2/local/third/blobs/uploads/?mount={digest}&from=local/app"), &[], b"").await;
    assert_eq!(mount.status, StatusCode::CREATED);
    let miss =
        call(&f.registry, Method::POST, &format!("/v2/local/third/blobs/uploads/?mount={}&from=local/app", Digest::of(b"no")), &[], b"")
            .await;
    assert_eq!(miss.status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn chunked_upload_with_content_ranges() {
    let f = fixture();
    let content: Vec<u8> = (0..10_000u32).map(|i| (i % 7) as u8).collect();
    let digest = Digest::of(&content);
    let start = call(&f.registry, Method::POST, "/v2/local/app/blobs/uploads/", &[], b"").await;
    assert_eq!(start.status, StatusCode::ACCEPTED);
    assert_eq!(start.header("range"), Some("0-0"));
    let location = start.header("location").expect("location").to_owned();
    let id = start.header("docker-upload-uuid").expect("uuid").to_owned();
    assert_eq!(location, format!("/v2/local/app/blobs/uploads/{id}"));
    assert!(id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");

    let first = call(&f.registry, Method::PATCH, &location, &[("content-range", "0-3999")], &content[..4000]).await;
    assert_eq!(first.status, StatusCode::ACCEPTED);
    assert_eq!(first.header("range"), Some("0-3999"));
    // Out of order: refused, and the upload is unchanged.
    let skip = call(&f.registry, Method::PATCH, &location, &[("content-range", "5000-5999")], &content[5000..6000]).await;
    assert_eq!((skip.status, skip.code().as_str()), (StatusCode::RANGE_NOT_SATISFIABLE, "RANGE_INVALID"));
    assert_eq!(skip.header("range"), Some("0-3999"));
    // A range that announces more than the body holds: refused, rolled back.
    let short = call(&f.registry, Method::PATCH, &location, &[("content-range", "4000-5999")], &content[4000..5000]).await;
    assert_eq!((short.status, short.code().as_str()), (StatusCode::BAD_REQUEST, "BLOB_UPLOAD_INVALID"));
    let status = get(&f.registry, &location).await;
    assert_eq!(status.status, StatusCode::NO_CONTENT);
    assert_eq!(status.header("range"), Some("0-3999"));
    // Without Content-Range (as Docker streams), then the last bytes with the PUT.
    let second = call(&f.registry, Method::PATCH, &location, &[], &content[4000..9000]).await;
    assert_eq!(second.header("range"), Some("0-8999"));
    // The upload belongs to local/app, not to another repository.
    let elsewhere = call(&f.registry, Method::PUT, &format!("/v2/local/other/blobs/uploads/{id}?digest={digest}"), &[], b"").await;
    assert_eq!(elsewhere.code(), "BLOB_UPLOAD_UNKNOWN");
    let done = call(&f.registry, Method::PUT, &format!("{location}?digest={digest}"), &[], &content[9000..]).await;
    assert_eq!(done.status, StatusCode::CREATED, "{:?}", String::from_utf8_lossy(&done.body));
    assert_eq!(done.header("docker-content-digest"), Some(digest.to_string().as_str()));
    let back = get(&f.registry, &format!("/v2/local/app/blobs/{digest}")).await;
    assert!(back.body == content[..]);
    // The session is over.
    assert_eq!(get(&f.registry, &location).await.code(), "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test]
async fn a_finished_upload_with_the_wrong_digest_is_dropped() {
    let f = fixture();
    let start = call(&f.registry, Method::POST, "/v2/local/app/blobs/uploads/", &[], b"").await;
    let location = start.header("location").expect("location").to_owned();
    call(&f.registry, Method::PATCH, &location, &[], b"some bytes").await;
    let wrong = Digest::of(b"other bytes");
    let done = call(&f.registry, Method::PUT, &format!("{location}?digest={wrong}"), &[], b"").await;
    assert_eq!((done.status, done.code().as_str()), (StatusCode::BAD_REQUEST, "DIGEST_INVALID"));
    assert_eq!(get(&f.registry, &format!("/v2/local/app/blobs/{wrong}")).await.code(), "BLOB_UNKNOWN");
    assert_eq!(get(&f.registry, &location).await.code(), "BLOB_UPLOAD_UNKNOWN");
    let missing = call(&f.registry, Method::PUT, &location, &[], b"").await;
    assert_eq!(missing.code(), "DIGEST_INVALID");
    // DELETE cancels an upload.
    let start = call(&f.registry, Method::POST, "/v2/local/app/blobs/uploads/", &[], b"").await;
    let location = start.header("location").expect("location").to_owned();
    assert_eq!(call(&f.registry, Method::DELETE, &location, &[], b"").await.status, StatusCode::NO_CONTENT);
    assert_eq!(get(&f.registry, &location).await.code(), "BLOB_UPLOAD_UNKNOWN");
    assert_eq!(std::fs::read_dir(f.local.path().join("store/uploads")).expect("uploads").count(), 0);
}

async fn push_blob(registry: &Registry, content: &[u8]) -> Descriptor {
    let digest = Digest::of(content);
    let a = call(registry, Method::POST, &format!("/v2/local/app/blobs/uploads/?digest={digest}"), &[], content).await;
    assert_eq!(a.status, StatusCode::CREATED);
    Descriptor::new(OCI_LAYER_TAR, digest, content.len() as u64)
}

#[tokio::test]
async fn manifest_put_checks_its_blobs_and_tags() {
    let f = fixture();
    let config = push_blob(&f.registry, b"{\"architecture\":\"amd64\",\"os\":\"linux\"}").await;
    let layer = push_blob(&f.registry, b"layer bytes").await;
    let absent = Descriptor::new(OCI_LAYER_TAR, Digest::of(b"absent"), 6);
    let ct = [("content-type", oci::DOCKER_MANIFEST)];

    let missing = call(&f.registry, Method::PUT, "/v2/local/app/manifests/v1", &ct, &docker_manifest(&config, &[&layer, &absent])).await;
    assert_eq!((missing.status, missing.code().as_str()), (StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN"));
    assert_eq!(missing.json()["errors"][0]["detail"]["digest"], absent.digest.to_string());
    let mut wrong_size = layer.clone();
    wrong_size.size += 1;
    let sized = call(&f.registry, Method::PUT, "/v2/local/app/manifests/v1", &ct, &docker_manifest(&config, &[&wrong_size])).await;
    assert_eq!(sized.code(), "MANIFEST_INVALID");
    let garbage = call(&f.registry, Method::PUT, "/v2/local/app/manifests/v1", &ct, b"{not json").await;
    assert_eq!(garbage.code(), "MANIFEST_INVALID");
    let mismatch =
        call(&f.registry, Method::PUT, "/v2/local/app/manifests/v1", &[("content-type", OCI_INDEX)], &docker_manifest(&config, &[&layer]))
            .await;
    assert_eq!(mismatch.code(), "MANIFEST_INVALID");
    let huge = vec![b' '; usize::try_from(MAX_MANIFEST_SIZE).expect("usize") + 1];
    assert_eq!(call(&f.registry, Method::PUT, "/v2/local/app/manifests/v1", &ct, &huge).await.code(), "MANIFEST_INVALID");
    assert_eq!(get(&f.registry, "/v2/local/app/tags/list").await.code(), "NAME_UNKNOWN");

    let manifest = docker_manifest(&config, &[&layer]);
    let digest = Digest::of(&manifest);
    let by_wrong_digest = call(&f.registry, Method::PUT, &format!("/v2/local/app/manifests/{}", Digest::of(b"x")), &ct, &manifest).await;
    assert_eq!(by_wrong_digest.code(), "DIGEST_INVALID");
    let put = call(&f.registry, Method::PUT, "/v2/local/app/manifests/v1", &ct, &manifest).await;
    assert_eq!(put.status, StatusCode::CREATED, "{:?}", String::from_utf8_lossy(&put.body));
    assert_eq!(put.header("docker-content-digest"), Some(digest.to_string().as_str()));
    assert_eq!(put.header("location"), Some(format!("/v2/local/app/manifests/{digest}").as_str()));

    for uri in ["/v2/local/app/manifests/v1".to_owned(), format!("/v2/local/app/manifests/{digest}")] {
        let a = get(&f.registry, &uri).await;
        assert_eq!(a.status, StatusCode::OK, "{uri}");
        assert_eq!(a.header("content-type"), Some(oci::DOCKER_MANIFEST), "{uri}");
        assert_eq!(a.header("docker-content-digest"), Some(digest.to_string().as_str()), "{uri}");
        assert_eq!(a.body, manifest, "{uri}");
    }
    assert_eq!(get(&f.registry, "/v2/local/app/manifests/v2").await.code(), "MANIFEST_UNKNOWN");
    assert_eq!(get(&f.registry, "/v2/local/app/tags/list").await.json(), json!({ "name": "local/app", "tags": ["v1"] }));
    assert!(f.registry.catalog().contains(&"local/app".to_owned()));

    // An index over it, pushed by digest then tagged.
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{ "mediaType": oci::DOCKER_MANIFEST, "digest": digest, "size": manifest.len() }],
    }))
    .expect("json");
    let put = call(&f.registry, Method::PUT, "/v2/local/app/manifests/multi", &[("content-type", OCI_INDEX)], &index).await;
    assert_eq!(put.status, StatusCode::CREATED);
    let dangling = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{ "mediaType": oci::DOCKER_MANIFEST, "digest": Digest::of(b"gone"), "size": 4 }],
    }))
    .expect("json");
    let put = call(&f.registry, Method::PUT, "/v2/local/app/manifests/dangling", &[("content-type", OCI_INDEX)], &dangling).await;
    assert_eq!(put.code(), "MANIFEST_BLOB_UNKNOWN");

    // The tags survive a restart: index.json is the store's truth.
    let reopened = Registry::open(None, f.local.path().join("store")).expect("reopen");
    let a = get(&reopened, "/v2/local/app/manifests/v1").await;
    assert_eq!(a.header("docker-content-digest"), Some(digest.to_string().as_str()));
    assert_eq!(get(&reopened, "/v2/local/app/tags/list").await.json(), json!({ "name": "local/app", "tags": ["multi", "v1"] }));
    let written: ImageIndex =
        serde_json::from_slice(&std::fs::read(f.local.path().join("store/index.json")).expect("index.json")).expect("an OCI index");
    let names: Vec<&str> = written.manifests.iter().filter_map(Descriptor::ref_name).collect();
    assert_eq!(names, vec!["local/app:multi", "local/app:v1"]);
}

#[test]
fn open_refuses_a_broken_layout() {
    let mut layout = LayoutBuilder::new();
    let image = layout.image("{}", &[b"layer"]);
    layout.name(image, "docker.io/library/broken:1");
    layout.finish();
    let local = tempfile::tempdir().expect("local");
    std::fs::remove_file(layout.path().join("blobs/sha256").join(Digest::of(b"layer").hex())).expect("remove a layer");
    match Registry::open(Some(layout.path().to_owned()), local.path().to_owned()) {
        Err(RegistryError::Incomplete { name, source: oci::WalkError::Missing { digest, .. }, .. }) => {
            assert_eq!(name, "docker.io/library/broken:1");
            assert_eq!(digest, Digest::of(b"layer"));
        }
        other => panic!("{other:?}"),
    }
    std::fs::write(layout.path().join("oci-layout"), r#"{"imageLayoutVersion":"2.0.0"}"#).expect("write");
    assert!(matches!(Registry::open(Some(layout.path().to_owned()), local.path().to_owned()), Err(RegistryError::NotALayout { .. })));
    std::fs::write(layout.path().join("oci-layout"), "{").expect("write");
    assert!(matches!(Registry::open(Some(layout.path().to_owned()), local.path().to_owned()), Err(RegistryError::Json { .. })));
    let nowhere = layout.path().join("nowhere");
    assert!(matches!(Registry::open(Some(nowhere), local.path().to_owned()), Err(RegistryError::Io { .. })));
}

#[test]
fn open_refuses_a_pinned_ref_name_that_disagrees() {
    let mut layout = LayoutBuilder::new();
    let image = layout.image("{}", &[b"layer"]);
    layout.name(image, &format!("docker.io/library/p:1@{}", Digest::of(b"another")));
    layout.finish();
    let local = tempfile::tempdir().expect("local");
    assert!(matches!(Registry::open(Some(layout.path().to_owned()), local.path().to_owned()), Err(RegistryError::NotALayout { .. })));
}

#[test]
fn mirror_keys() {
    let cases = [
        ("library/nginx", Some("docker.io"), ("docker.io", "library/nginx")),
        ("nginx", Some("docker.io"), ("docker.io", "library/nginx")),
        ("nginx", Some("registry-1.docker.io"), ("docker.io", "library/nginx")),
        ("org/app", Some("ghcr.io"), ("ghcr.io", "org/app")),
        ("pause", Some("registry.k8s.io"), ("registry.k8s.io", "pause")),
        ("nginx", None, ("docker.io", "library/nginx")),
        ("org/app", None, ("docker.io", "org/app")),
        ("ghcr.io/org/app", None, ("ghcr.io", "org/app")),
        ("localhost/app", None, ("localhost", "app")),
        ("app", Some("localhost:5000"), ("localhost:5000", "app")),
    ];
    for (name, ns, (registry, repository)) in cases {
        assert_eq!(mirror_key(name, ns), (registry.to_owned(), repository.to_owned()), "{name} {ns:?}");
    }
}

// ---------------------------------------------------------------------------------
// A bundle tar, served in place.

/// One entry of a test tar.
enum TarEntry {
    File(String, Vec<u8>),
    Dir(String),
    Symlink(String, String),
}

/// The entries of a tar of the layout at `dir`, ordered as `bundle create` orders
/// them: `oci-layout`, `index.json`, the directories, then the blobs, by name.
fn layout_entries(dir: &Path) -> Vec<TarEntry> {
    let read = |name: &str| std::fs::read(dir.join(name)).expect("read a layout file");
    let mut entries = vec![
        TarEntry::File("oci-layout".into(), read("oci-layout")),
        TarEntry::File("index.json".into(), read("index.json")),
        TarEntry::Dir("blobs/".into()),
        TarEntry::Dir("blobs/sha256/".into()),
    ];
    let mut names: Vec<String> = std::fs::read_dir(dir.join("blobs/sha256"))
        .expect("blobs")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in names {
        let name = format!("blobs/sha256/{name}");
        let bytes = read(&name);
        entries.push(TarEntry::File(name, bytes));
    }
    entries
}

/// A tar of `entries` with the tar crate, ended with the end-of-archive marker.
fn tar_bytes(entries: &[TarEntry]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut header = tar::Header::new_gnu();
        header.set_mtime(0);
        match entry {
            TarEntry::File(name, bytes) => {
                header.set_mode(0o644);
                header.set_size(bytes.len() as u64);
                header.set_entry_type(tar::EntryType::Regular);
                builder.append_data(&mut header, name, bytes.as_slice()).expect("append a file");
            }
            TarEntry::Dir(name) => {
                header.set_mode(0o755);
                header.set_size(0);
                header.set_entry_type(tar::EntryType::Directory);
                builder.append_data(&mut header, name, std::io::empty()).expect("append a directory");
            }
            TarEntry::Symlink(name, target) => {
                header.set_mode(0o777);
                header.set_size(0);
                header.set_entry_type(tar::EntryType::Symlink);
                builder.append_link(&mut header, name, target).expect("append a link");
            }
        }
    }
    builder.into_inner().expect("finish the tar")
}

/// Where the data of entry `name` starts in `tar`, and its index among the entries.
fn entry_offset(tar: &[u8], name: &str) -> (u64, usize) {
    let mut archive = tar::Archive::new(tar);
    for (i, entry) in archive.entries().expect("entries").enumerate() {
        let entry = entry.expect("entry");
        if entry.path().expect("path").to_string_lossy() == name {
            return (entry.raw_file_position(), i);
        }
    }
    panic!("{name} is not in the tar");
}

fn write_tar(dir: &tempfile::TempDir, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.path().join("bundle.tar");
    std::fs::write(&path, bytes).expect("write the tar");
    path
}

fn open_tar(path: &Path) -> Result<Registry, RegistryError> {
    let local = tempfile::tempdir().expect("local");
    Registry::open(Some(path.to_owned()), local.path().join("store"))
}

/// A request's headers.
type Headers = Vec<(&'static str, &'static str)>;

/// The answer's parts that must not depend on where the layout is.
fn same(a: &Answer) -> (StatusCode, Option<String>, Option<String>, Option<String>, Option<String>, Bytes) {
    let h = |n: &str| a.header(n).map(str::to_owned);
    (a.status, h("content-type"), h("docker-content-digest"), h("content-length"), h("content-range"), a.body.clone())
}

#[tokio::test]
async fn a_tar_of_the_layout_serves_what_the_directory_serves() {
    let f = fixture();
    let tar = tar_bytes(&layout_entries(f.layout.path()));
    let out = tempfile::tempdir().expect("out");
    let tar_path = write_tar(&out, &tar);
    let from_tar = open_tar(&tar_path).expect("open the tar");
    let (big, big_bytes) = &f.big_layer;
    // The big layer is deep inside the tar: an offset error would show.
    let (offset, index) = entry_offset(&tar, &format!("blobs/sha256/{}", big.digest.hex()));
    assert!(index > 4 && offset > 4096, "the big layer is entry {index} at byte {offset}");
    let blob = format!("/v2/library/x/blobs/{}", big.digest);
    let small = format!("/v2/ghcr.io/org/app/blobs/{}", Digest::of(b"ghcr layer"));
    let unknown = format!("/v2/library/x/blobs/{}", Digest::of(b"nothing"));
    let requests: Vec<(Method, String, Headers)> = vec![
        (Method::GET, "/v2/".into(), vec![]),
        (Method::GET, "/v2/library/x/manifests/1".into(), vec![]),
        (Method::HEAD, "/v2/library/x/manifests/1".into(), vec![]),
        (Method::GET, format!("/v2/library/x/manifests/{}", f.x_amd64.digest), vec![]),
        (Method::GET, "/v2/org/app/manifests/v1?ns=ghcr.io".into(), vec![]),
        (Method::GET, "/v2/org/app/manifests/v1".into(), vec![]),
        (Method::GET, blob.clone(), vec![]),
        (Method::HEAD, blob.clone(), vec![]),
        (Method::GET, blob.clone(), vec![("range", "bytes=0-0")]),
        (Method::GET, blob.clone(), vec![("range", "bytes=1048570-2097160")]),
        (Method::GET, blob.clone(), vec![("range", "bytes=-7")]),
        (Method::GET, blob.clone(), vec![("range", "bytes=99999999-")]),
        (Method::GET, small.clone(), vec![("range", "bytes=5-")]),
        (Method::GET, small, vec![]),
        (Method::GET, unknown, vec![]),
        (Method::GET, "/v2/library/x/manifests/2".into(), vec![]),
        (Method::GET, "/v2/_catalog".into(), vec![]),
        (Method::GET, "/v2/library/x/tags/list".into(), vec![]),
    ];
    for (method, uri, headers) in &requests {
        let a = call(&f.registry, method.clone(), uri, headers, b"").await;
        let b = call(&from_tar, method.clone(), uri, headers, b"").await;
        assert_eq!(same(&a), same(&b), "{method} {uri} {headers:?}");
    }
    // And the bytes are the layer's, not its neighbours' in the tar.
    let ranged = call(&from_tar, Method::GET, &blob, &[("range", "bytes=1048570-2097160")], b"").await;
    assert_eq!(ranged.status, StatusCode::PARTIAL_CONTENT);
    assert!(ranged.body == big_bytes[1_048_570..=2_097_160], "the range's bytes");
    let whole = get(&from_tar, &blob).await;
    assert_eq!(Digest::of(&whole.body), big.digest);
    let unknown = get(&from_tar, &format!("/v2/library/x/blobs/{}", Digest::of(b"nothing"))).await;
    assert_eq!((unknown.status, unknown.code().as_str()), (StatusCode::NOT_FOUND, "BLOB_UNKNOWN"));
    assert_eq!(unknown.header("content-type"), Some(JSON));
    assert_eq!(unknown.json()["errors"][0]["detail"]["digest"], Digest::of(b"nothing").to_string());
    assert_eq!(from_tar.mirrored_registries(), f.registry.mirrored_registries());
}

#[tokio::test]
async fn names_with_a_dot_slash_prefix_are_the_same_names() {
    let f = fixture();
    let entries: Vec<TarEntry> = std::iter::once(TarEntry::Dir("./".into()))
        .chain(layout_entries(f.layout.path()).into_iter().map(|e| match e {
            TarEntry::File(name, bytes) => TarEntry::File(format!("./{name}"), bytes),
            TarEntry::Dir(name) => TarEntry::Dir(format!("./{name}")),
            other => other,
        }))
        .collect();
    let out = tempfile::tempdir().expect("out");
    let registry = open_tar(&write_tar(&out, &tar_bytes(&entries))).expect("open");
    let a = get(&registry, &format!("/v2/library/x/blobs/{}", f.big_layer.0.digest)).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(Digest::of(&a.body), f.big_layer.0.digest);
}

/// The `Tar` error's entry and reason, or a panic naming what came instead.
fn tar_refusal(result: Result<Registry, RegistryError>) -> (String, u64, String) {
    match result {
        Err(RegistryError::Tar { entry, offset, reason, .. }) => (entry, offset, reason),
        Err(other) => panic!("not a Tar error: {other:?}"),
        Ok(_) => panic!("the tar was accepted"),
    }
}

#[test]
fn a_truncated_tar_is_refused_at_open_naming_where() {
    let f = fixture();
    let tar = tar_bytes(&layout_entries(f.layout.path()));
    let big = format!("blobs/sha256/{}", f.big_layer.0.digest.hex());
    let (big_at, _) = entry_offset(&tar, &big);
    let out = tempfile::tempdir().expect("out");

    // Cut inside the big layer's data.
    let path = write_tar(&out, &tar[..usize::try_from(big_at).expect("usize") + 1000]);
    let (entry, offset, reason) = tar_refusal(open_tar(&path));
    assert_eq!(entry, big);
    assert_eq!(offset, big_at - 512, "the entry's header");
    assert!(reason.contains("truncated") && reason.contains("runs past the end"), "{reason}");
    let message = open_tar(&path).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains(&path.display().to_string()) && message.contains(&big), "{message}");

    // Cut at an entry boundary: only the end-of-archive marker is missing.
    let (entry, _, reason) = tar_refusal(open_tar(&write_tar(&out, &tar[..tar.len() - 1024])));
    assert!(entry.starts_with("the end of the archive, after blobs/sha256/"), "{entry}");
    assert!(reason.contains("truncated"), "{reason}");
    // Cut inside a header.
    let (entry, _, reason) = tar_refusal(open_tar(&write_tar(&out, &tar[..100])));
    assert_eq!((entry.as_str(), reason.contains("header")), ("the first header", true), "{reason}");
    // Nothing at all.
    let (_, _, reason) = tar_refusal(open_tar(&write_tar(&out, b"")));
    assert!(reason.contains("empty"), "{reason}");
    // The whole tar opens.
    open_tar(&write_tar(&out, &tar)).expect("the whole tar");
}

#[test]
fn a_malformed_tar_is_refused_at_open() {
    let f = fixture();
    let entries = layout_entries(f.layout.path());
    let tar = tar_bytes(&entries);
    let out = tempfile::tempdir().expect("out");

    // A damaged header: its checksum no longer matches.
    let index_header = usize::try_from(entry_offset(&tar, "index.json").0).expect("usize") - 512;
    let mut damaged = tar.clone();
    damaged[index_header + 10] ^= 0x55;
    let (entry, offset, reason) = tar_refusal(open_tar(&write_tar(&out, &damaged)));
    assert_eq!((entry.as_str(), offset), ("the header after oci-layout", index_header as u64), "{reason}");
    match open_tar(&write_tar(&out, &damaged)) {
        Err(RegistryError::Tar { source: Some(source), .. }) => assert!(source.to_string().contains("checksum"), "{source}"),
        other => panic!("{other:?}"),
    }

    // Gzip-compressed.
    let mut gzip = vec![0x1f, 0x8b, 0x08, 0];
    gzip.extend_from_slice(&tar[..2048]);
    let (_, _, reason) = tar_refusal(open_tar(&write_tar(&out, &gzip)));
    assert!(reason.contains("gzip"), "{reason}");

    // A blob twice (as `tar -r` appends), under the same name and as ./name.
    let big = format!("blobs/sha256/{}", f.big_layer.0.digest.hex());
    for twin in [big.clone(), format!("./{big}")] {
        let mut doubled = layout_entries(f.layout.path());
        doubled.push(TarEntry::File(twin, f.big_layer.1.clone()));
        let (entry, _, reason) = tar_refusal(open_tar(&write_tar(&out, &tar_bytes(&doubled))));
        assert_eq!(entry, big);
        assert!(reason.contains("twice"), "{reason}");
    }
    let mut doubled = layout_entries(f.layout.path());
    doubled.push(TarEntry::File("index.json".into(), b"{}".to_vec()));
    assert_eq!(tar_refusal(open_tar(&write_tar(&out, &tar_bytes(&doubled)))).0, "index.json");

    // A layout file that is a link.
    let mut linked: Vec<TarEntry> =
        layout_entries(f.layout.path()).into_iter().filter(|e| !matches!(e, TarEntry::File(name, _) if *name == big)).collect();
    linked.push(TarEntry::Symlink(big.clone(), "../../../etc/passwd".into()));
    let (entry, _, reason) = tar_refusal(open_tar(&write_tar(&out, &tar_bytes(&linked))));
    assert_eq!(entry, big);
    assert!(reason.contains("Symlink"), "{reason}");

    // No index.json, no oci-layout.
    for missing in ["index.json", "oci-layout"] {
        let without: Vec<TarEntry> =
            layout_entries(f.layout.path()).into_iter().filter(|e| !matches!(e, TarEntry::File(name, _) if name == missing)).collect();
        match open_tar(&write_tar(&out, &tar_bytes(&without))) {
            Err(RegistryError::NotALayout { reason, .. }) => assert!(reason.contains(missing), "{reason}"),
            other => panic!("without {missing}: {other:?}"),
        }
    }
    // Stray files and directories are passed over.
    let mut strays = layout_entries(f.layout.path());
    strays.push(TarEntry::File("README".into(), b"hello".to_vec()));
    strays.push(TarEntry::Dir("extra/".into()));
    strays.push(TarEntry::Symlink("latest".into(), "index.json".into()));
    open_tar(&write_tar(&out, &tar_bytes(&strays))).expect("strays are fine");
}

#[test]
fn a_tar_missing_a_blob_an_image_reaches_is_refused() {
    let f = fixture();
    let big = format!("blobs/sha256/{}", f.big_layer.0.digest.hex());
    let without: Vec<TarEntry> =
        layout_entries(f.layout.path()).into_iter().filter(|e| !matches!(e, TarEntry::File(name, _) if *name == big)).collect();
    let out = tempfile::tempdir().expect("out");
    let path = write_tar(&out, &tar_bytes(&without));
    match open_tar(&path) {
        Err(RegistryError::Incomplete { name, layout, source: oci::WalkError::Missing { digest, parent } }) => {
            assert_eq!(name, "docker.io/library/x:1");
            assert_eq!(layout, path);
            assert_eq!(digest, f.big_layer.0.digest);
            assert_eq!(parent, f.x_amd64.digest.to_string());
        }
        other => panic!("{other:?}"),
    }
    // A manifest whose bytes in the tar are not its digest's.
    let amd64 = format!("blobs/sha256/{}", f.x_amd64.digest.hex());
    let tampered: Vec<TarEntry> = layout_entries(f.layout.path())
        .into_iter()
        .map(|e| match e {
            TarEntry::File(name, mut bytes) if name == amd64 => {
                bytes[0] = b' ';
                TarEntry::File(name, bytes)
            }
            other => other,
        })
        .collect();
    match open_tar(&write_tar(&out, &tar_bytes(&tampered))) {
        Err(RegistryError::Incomplete { source: oci::WalkError::DigestMismatch { digest, .. }, .. }) => {
            assert_eq!(digest, f.x_amd64.digest)
        }
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------------------------
// The read-only view (a workshop's LAN).

async fn call_as(registry: &Registry, access: Access, method: Method, uri: &str, body: &[u8]) -> Answer {
    let request = Request::builder().method(method).uri(uri).body(Full::new(Bytes::copy_from_slice(body))).expect("request");
    let response = handle_with(registry, access, request).await;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.expect("body").to_bytes();
    Answer { status, headers, body }
}

#[tokio::test]
async fn the_mirror_only_view_reads_the_mirror_and_refuses_every_write() {
    let f = fixture();
    // Something in the local namespace, pushed through the full view.
    let layer = push_blob(&f.registry, b"local layer").await;
    let config = push_blob(&f.registry, b"{\"os\":\"linux\"}").await;
    let manifest = docker_manifest(&config, &[&layer]);
    let put = call(&f.registry, Method::PUT, "/v2/local/app/manifests/v1", &[("content-type", oci::DOCKER_MANIFEST)], &manifest).await;
    assert_eq!(put.status, StatusCode::CREATED);
    let ro = Access::MirrorOnly;

    // Reads of the mirror: the same answers as the full view.
    for uri in [
        "/v2/".to_owned(),
        "/v2/library/x/manifests/1".to_owned(),
        format!("/v2/library/x/blobs/{}", f.big_layer.0.digest),
        "/v2/org/app/tags/list?ns=ghcr.io".to_owned(),
    ] {
        let full = get(&f.registry, &uri).await;
        let view = call_as(&f.registry, ro, Method::GET, &uri, b"").await;
        assert_eq!(view.status, StatusCode::OK, "{uri}");
        assert_eq!(same(&full), same(&view), "{uri}");
    }
    let head = call_as(&f.registry, ro, Method::HEAD, "/v2/library/x/manifests/1", b"").await;
    assert_eq!(head.header("docker-content-digest"), Some(f.x_index.digest.to_string().as_str()));

    // The local namespace is not there: unknown names, and not in the catalog.
    for uri in [
        "/v2/local/app/manifests/v1".to_owned(),
        "/v2/local/app/tags/list".to_owned(),
        format!("/v2/local/app/blobs/{}", layer.digest),
        format!("/v2/local/app/manifests/{}", Digest::of(&manifest)),
    ] {
        let a = call_as(&f.registry, ro, Method::GET, &uri, b"").await;
        assert_eq!((a.status, a.code().as_str()), (StatusCode::NOT_FOUND, "NAME_UNKNOWN"), "{uri}");
        assert!(get(&f.registry, &uri).await.status.is_success(), "{uri} on the full view");
    }
    let catalog = call_as(&f.registry, ro, Method::GET, "/v2/_catalog", b"").await.json();
    assert_eq!(catalog, json!({ "repositories": ["ghcr.io/org/app", "library/x", "org/app", "registry.k8s.io/pause"] }));
    assert!(get(&f.registry, "/v2/_catalog").await.json()["repositories"].as_array().is_some_and(|r| r.contains(&json!("local/app"))));

    // Every write form, to the mirror's names and to local/: DENIED, nothing written.
    let start = call(&f.registry, Method::POST, "/v2/local/app/blobs/uploads/", &[], b"").await;
    let upload = start.header("location").expect("an upload of the full view").to_owned();
    let digest = Digest::of(b"new");
    let writes: Vec<(Method, String)> = vec![
        (Method::POST, "/v2/local/app/blobs/uploads/".into()),
        (Method::POST, format!("/v2/local/app/blobs/uploads/?digest={digest}")),
        (Method::POST, format!("/v2/local/app/blobs/uploads/?mount={}&from=local/app", layer.digest)),
        (Method::POST, "/v2/library/x/blobs/uploads/".into()),
        (Method::PATCH, upload.clone()),
        (Method::PUT, format!("{upload}?digest={digest}")),
        (Method::DELETE, upload.clone()),
        (Method::PUT, "/v2/local/app/manifests/v2".into()),
        (Method::PUT, "/v2/library/x/manifests/2".into()),
        (Method::DELETE, "/v2/local/app/manifests/v1".into()),
        (Method::DELETE, format!("/v2/local/app/blobs/{}", layer.digest)),
        (Method::DELETE, format!("/v2/library/x/blobs/{}", f.big_layer.0.digest)),
        (Method::POST, "/v2/".into()),
        (Method::PUT, "/v2/_catalog".into()),
        (Method::OPTIONS, "/v2/".into()),
        (Method::POST, "/v2/../etc/blobs/uploads/".into()),
    ];
    for (method, uri) in &writes {
        let a = call_as(&f.registry, ro, method.clone(), uri, &manifest).await;
        assert_eq!((a.status, a.code().as_str()), (StatusCode::FORBIDDEN, "DENIED"), "{method} {uri}");
        assert_eq!(a.header("content-type"), Some(JSON), "{method} {uri}");
        assert_eq!(a.header("docker-distribution-api-version"), Some("registry/2.0"));
    }
    // Reads of the upload endpoints belong to writes: DENIED too.
    let status = call_as(&f.registry, ro, Method::GET, &upload, b"").await;
    assert_eq!((status.status, status.code().as_str()), (StatusCode::FORBIDDEN, "DENIED"));
    assert_eq!(get(&f.registry, &format!("/v2/local/app/blobs/{digest}")).await.code(), "BLOB_UNKNOWN");
    assert_eq!(get(&f.registry, "/v2/local/app/tags/list").await.json(), json!({ "name": "local/app", "tags": ["v1"] }));

    // The full view still writes: the upload the view could not touch finishes.
    let done = call(&f.registry, Method::PUT, &format!("{upload}?digest={digest}"), &[], b"new").await;
    assert_eq!(done.status, StatusCode::CREATED, "{:?}", String::from_utf8_lossy(&done.body));
    let again = call(&f.registry, Method::PUT, "/v2/local/app/manifests/v2", &[("content-type", oci::DOCKER_MANIFEST)], &manifest).await;
    assert_eq!(again.status, StatusCode::CREATED);
    assert_eq!(get(&f.registry, "/v2/local/app/tags/list").await.json(), json!({ "name": "local/app", "tags": ["v1", "v2"] }));
}
