use super::*;
use proptest::prelude::*;
use std::cell::RefCell;

const HEX64: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn digest_of(s: &str) -> Digest {
    Digest::of(s.as_bytes())
}

#[test]
fn digest_parses_the_canonical_form_only() {
    let text = format!("sha256:{HEX64}");
    let digest = Digest::parse(&text).expect("canonical digest");
    assert_eq!(digest.hex(), HEX64);
    assert_eq!(digest.algorithm(), "sha256");
    assert_eq!(digest.to_string(), text);
    assert_eq!(text.parse::<Digest>().expect("FromStr"), digest);

    let upper = format!("sha256:{}", HEX64.to_ascii_uppercase());
    let rejected = [
        ("", "expected <algorithm>:<hex>"),
        (HEX64, "expected <algorithm>:<hex>"),
        (&format!("sha512:{HEX64}{HEX64}"), "only sha256 is supported"),
        (&format!("SHA256:{HEX64}"), "only sha256 is supported"),
        (&format!("sha256+b64:{HEX64}"), "only sha256 is supported"),
        (&upper, "hex digits must be lower case"),
        (&format!("sha256:{}", &HEX64[1..]), "a sha256 digest has 64 hex digits"),
        (&format!("sha256:{HEX64}0"), "a sha256 digest has 64 hex digits"),
        (&format!("sha256:../{}", &HEX64[3..]), "not a hex digit"),
        (&format!("sha256:{}/x", &HEX64[2..]), "not a hex digit"),
        (&format!("sha256%3A{HEX64}"), "expected <algorithm>:<hex>"),
        (&format!("sha256:%2e%2e{}", &HEX64[6..]), "not a hex digit"),
        (&format!("sha256:{}g", &HEX64[1..]), "not a hex digit"),
        (&format!(" sha256:{HEX64}"), "only sha256 is supported"),
    ];
    for (input, reason) in rejected {
        match Digest::parse(input) {
            Err(OciError::InvalidDigest { reason: r, .. }) => assert_eq!(r, reason, "{input:?}"),
            other => panic!("{input:?} gave {other:?}"),
        }
    }
}

#[test]
fn digest_of_bytes_is_sha256() {
    assert_eq!(Digest::of(b"{}").to_string(), OCI_EMPTY_DIGEST);
    assert_eq!(Digest::of(b"").hex(), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    assert_ne!(Digest::of(b"a"), Digest::of(b"b"));
}

#[test]
fn digest_errors_do_not_echo_huge_input() {
    let huge = format!("sha256:{}", "a".repeat(100_000));
    let err = Digest::parse(&huge).expect_err("too long");
    assert!(err.to_string().len() < 400, "{}", err.to_string().len());
}

#[test]
fn digest_serde_validates() {
    let ok: Digest = serde_json::from_str(&format!("\"sha256:{HEX64}\"")).expect("valid");
    assert_eq!(serde_json::to_string(&ok).expect("serialise"), format!("\"sha256:{HEX64}\""));
    assert!(serde_json::from_str::<Digest>("\"sha256:../../etc/passwd\"").is_err());
    assert!(serde_json::from_str::<Digest>(&format!("\"md5:{HEX64}\"")).is_err());
}

#[test]
fn repository_names_follow_the_grammar() {
    let accepted =
        ["a", "library/nginx", "ghcr.io/org/app", "a.b_c__d-e---f", "0/1/2", "local/app", "registry.k8s.io/pause", "a-b/c_d/e.f"];
    for name in accepted {
        assert_eq!(validate_repository(name), Ok(()), "{name}");
    }
    let longest = format!("{}/{}", "a".repeat(127), "b".repeat(127));
    assert_eq!(longest.len(), MAX_NAME_LEN);
    assert_eq!(validate_repository(&longest), Ok(()));

    let too_long = "a".repeat(MAX_NAME_LEN + 1);
    let rejected = [
        "",
        "..",
        "../etc",
        "a/../b",
        "a/..",
        "a..b",
        "/a",
        "a/",
        "a//b",
        "%2e%2e/a",
        "a%2Fb",
        "a%2fb",
        "A",
        "Library/nginx",
        "a___b",
        "a.-b",
        "a_-b",
        "-a",
        "a-",
        ".a",
        "a.",
        "_a",
        "a b",
        "a:b",
        "a@b",
        "a\\b",
        "a\0b",
        "ä",
        too_long.as_str(),
    ];
    for name in rejected {
        assert!(matches!(validate_repository(name), Err(OciError::InvalidName { .. })), "{name:?} was accepted");
    }
}

#[test]
fn tags_follow_the_grammar() {
    for tag in ["latest", "v1.27.3", "_x", "A-b_c.d", "1", &"a".repeat(128)] {
        assert_eq!(validate_tag(tag), Ok(()), "{tag}");
    }
    for tag in ["", ".x", "-x", "a/b", "a:b", "a%2e", "..", "a b", &"a".repeat(129)] {
        assert!(matches!(validate_tag(tag), Err(OciError::InvalidTag { .. })), "{tag:?} was accepted");
    }
}

#[test]
fn references_are_tags_or_digests() {
    assert_eq!(Reference::parse("v1"), Ok(Reference::Tag("v1".into())));
    assert_eq!(Reference::parse(&format!("sha256:{HEX64}")), Ok(Reference::Digest(Digest::parse(&format!("sha256:{HEX64}")).expect("d"))));
    assert!(matches!(Reference::parse("sha512:abc"), Err(OciError::InvalidDigest { .. })));
    assert!(matches!(Reference::parse("../x"), Err(OciError::InvalidTag { .. })));
    assert!(matches!(Reference::parse("%2e%2e"), Err(OciError::InvalidTag { .. })));
    assert_eq!(Reference::parse("v1").expect("tag").to_string(), "v1");
}

#[test]
fn image_names_normalise_like_docker() {
    let cases = [
        ("nginx", "docker.io", "library/nginx", None),
        ("nginx:1.27", "docker.io", "library/nginx", Some("1.27")),
        ("docker.io/library/nginx:1.27", "docker.io", "library/nginx", Some("1.27")),
        ("index.docker.io/library/nginx:1.27", "docker.io", "library/nginx", Some("1.27")),
        ("docker.io/nginx:1.27", "docker.io", "library/nginx", Some("1.27")),
        ("bitnami/redis:7", "docker.io", "bitnami/redis", Some("7")),
        ("ghcr.io/org/app:v1", "ghcr.io", "org/app", Some("v1")),
        ("GHCR.io/org/app:v1", "ghcr.io", "org/app", Some("v1")),
        ("quay.io/jetstack/cert-manager-controller:v1.16.1", "quay.io", "jetstack/cert-manager-controller", Some("v1.16.1")),
        ("registry.k8s.io/pause:3.10", "registry.k8s.io", "pause", Some("3.10")),
        ("localhost:5000/app:dev", "localhost:5000", "app", Some("dev")),
        ("localhost/app", "localhost", "app", None),
        ("127.0.0.1:5001/local/app:v1", "127.0.0.1:5001", "local/app", Some("v1")),
    ];
    for (input, registry, repository, tag) in cases {
        let name = ImageName::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(name.registry, registry, "{input}");
        assert_eq!(name.repository, repository, "{input}");
        assert_eq!(name.tag.as_deref(), tag, "{input}");
        assert_eq!(name.digest, None, "{input}");
    }
    let pinned = ImageName::parse(&format!("rancher/k3s:v1.33.1-k3s1@sha256:{HEX64}")).expect("pinned");
    assert_eq!(pinned.tag.as_deref(), Some("v1.33.1-k3s1"));
    assert_eq!(pinned.digest.as_ref().map(Digest::hex), Some(HEX64));
    assert_eq!(pinned.to_string(), format!("docker.io/rancher/k3s:v1.33.1-k3s1@sha256:{HEX64}"));

    for bad in [
        "",
        "docker.io/../etc:1",
        "ghcr.io/Org/app:v1",
        "nginx:1.27@sha512:00",
        "nginx:-bad",
        "ghcr.io/",
        "ghcr.io//a",
        "bad_host.io/a:b",
        "host.io:99999999/a",
        "a%2Fb:c",
    ] {
        assert!(matches!(ImageName::parse(bad), Err(OciError::InvalidReference { .. })), "{bad:?} was accepted");
    }
}

#[test]
fn canonical_registry_folds_docker_hub_aliases() {
    assert_eq!(canonical_registry("registry-1.docker.io"), "docker.io");
    assert_eq!(canonical_registry("Index.Docker.IO"), "docker.io");
    assert_eq!(canonical_registry("quay.io"), "quay.io");
}

#[test]
fn layout_index_round_trips_with_annotations_and_platforms() {
    // The shape skopeo writes for `oci:DIR:docker.io/library/x:1`, plus a platform.
    let text = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{HEX64}","size":529,"annotations":{{"org.opencontainers.image.ref.name":"docker.io/library/x:1"}},"platform":{{"architecture":"arm64","os":"linux","variant":"v8"}}}}]}}"#
    );
    let index: ImageIndex = serde_json::from_str(&text).expect("index.json");
    assert_eq!(index.manifests.len(), 1);
    let desc = &index.manifests[0];
    assert_eq!(desc.ref_name(), Some("docker.io/library/x:1"));
    assert_eq!(
        desc.platform.as_ref().map(|p| (p.os.as_str(), p.architecture.as_str(), p.variant.as_deref())),
        Some(("linux", "arm64", Some("v8")))
    );
    let again: ImageIndex = serde_json::from_str(&serde_json::to_string(&index).expect("serialise")).expect("parse again");
    assert_eq!(again, index);

    let layout: OciLayout = serde_json::from_str(r#"{"imageLayoutVersion":"1.0.0"}"#).expect("oci-layout");
    assert_eq!(layout, OciLayout::default());
    assert!(
        serde_json::from_str::<ImageIndex>(r#"{"schemaVersion":2,"manifests":[{"mediaType":"x","digest":"sha256:00","size":1}]}"#).is_err()
    );
    assert!(
        serde_json::from_str::<ImageIndex>(&format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"x","digest":"sha256:{HEX64}","size":-1}}]}}"#
        ))
        .is_err()
    );
}

#[test]
fn manifests_parse_docker_and_oci_shapes() {
    let text = format!(
        r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","config":{{"mediaType":"{DOCKER_CONFIG}","size":7,"digest":"sha256:{HEX64}"}},"layers":[{{"mediaType":"{DOCKER_LAYER_GZIP}","size":9,"digest":"sha256:{HEX64}"}}]}}"#
    );
    let manifest: ImageManifest = serde_json::from_str(&text).expect("docker manifest");
    assert_eq!(manifest.media_type.as_deref(), Some(DOCKER_MANIFEST));
    assert_eq!(manifest.layers.len(), 1);
    assert!(is_manifest(DOCKER_MANIFEST) && is_manifest(OCI_MANIFEST) && !is_manifest(OCI_INDEX));
    assert!(is_index(DOCKER_MANIFEST_LIST) && is_index(OCI_INDEX) && !is_index(OCI_MANIFEST));
}

/// An in-memory blob store for [`walk`], counting which digests were read whole.
#[derive(Default)]
struct Store {
    blobs: HashMap<Digest, Vec<u8>>,
    reads: RefCell<Vec<Digest>>,
}

impl Store {
    fn add(&mut self, bytes: &[u8]) -> Digest {
        let digest = Digest::of(bytes);
        self.blobs.insert(digest.clone(), bytes.to_vec());
        digest
    }

    fn desc(&self, media_type: &str, digest: &Digest) -> Descriptor {
        Descriptor::new(media_type, digest.clone(), self.blobs[digest].len() as u64)
    }

    fn manifest(&mut self, config: &str, layers: &[&str]) -> Descriptor {
        let config = self.add(config.as_bytes());
        let layers: Vec<Descriptor> = layers
            .iter()
            .map(|l| {
                let d = self.add(l.as_bytes());
                self.desc(OCI_LAYER_GZIP, &d)
            })
            .collect();
        let manifest = ImageManifest {
            schema_version: 2,
            media_type: Some(OCI_MANIFEST.into()),
            artifact_type: None,
            config: self.desc(OCI_CONFIG, &config),
            layers,
            subject: None,
            annotations: None,
        };
        let bytes = serde_json::to_vec(&manifest).expect("manifest json");
        let digest = self.add(&bytes);
        self.desc(OCI_MANIFEST, &digest)
    }

    fn index(&mut self, manifests: Vec<Descriptor>) -> Descriptor {
        let index = ImageIndex { manifests, ..ImageIndex::empty() };
        let bytes = serde_json::to_vec(&index).expect("index json");
        let digest = self.add(&bytes);
        self.desc(OCI_INDEX, &digest)
    }

    fn walk(&self, root: &Descriptor) -> Result<Vec<Blob>, WalkError<std::io::Error>> {
        walk(
            root,
            |d| {
                self.reads.borrow_mut().push(d.clone());
                Ok(self.blobs.get(d).cloned())
            },
            |d| Ok(self.blobs.get(d).map(|b| b.len() as u64)),
        )
    }
}

#[test]
fn walk_lists_an_index_with_a_shared_layer_once() {
    let mut store = Store::default();
    let amd = store.manifest("config-amd64", &["base", "app-amd64"]);
    let arm = store.manifest("config-arm64", &["base", "app-arm64"]);
    let root = store.index(vec![amd.clone(), arm.clone()]);
    let blobs = store.walk(&root).expect("walk");
    let digests: Vec<Digest> = blobs.iter().map(|b| b.digest.clone()).collect();
    let expected = vec![
        root.digest.clone(),
        amd.digest.clone(),
        digest_of("config-amd64"),
        digest_of("base"),
        digest_of("app-amd64"),
        arm.digest.clone(),
        digest_of("config-arm64"),
        digest_of("app-arm64"),
    ];
    assert_eq!(digests, expected);
    assert_eq!(blobs.iter().filter(|b| b.is_manifest()).count(), 3);
    assert_eq!(blobs[3].size, 4);
    assert_eq!(blobs[3].media_type, OCI_LAYER_GZIP);
    // Layers and configs are never read whole, only sized.
    let reads = store.reads.borrow();
    assert_eq!(*reads, vec![root.digest.clone(), amd.digest.clone(), arm.digest.clone()]);
}

#[test]
fn walk_of_a_single_manifest_or_plain_blob() {
    let mut store = Store::default();
    let manifest = store.manifest("c", &["l1", "l2"]);
    assert_eq!(store.walk(&manifest).expect("manifest").len(), 4);
    let blob = store.add(b"chart");
    let only = store.walk(&store.desc(HELM_CHART_CONTENT, &blob)).expect("blob");
    assert_eq!(only, vec![Blob { digest: blob, size: 5, media_type: HELM_CHART_CONTENT.into() }]);
}

#[test]
fn walk_fails_on_a_missing_layer_naming_its_manifest() {
    let mut store = Store::default();
    let manifest = store.manifest("c", &["present", "gone"]);
    store.blobs.remove(&digest_of("gone"));
    match store.walk(&manifest) {
        Err(WalkError::Missing { digest, parent }) => {
            assert_eq!(digest, digest_of("gone"));
            assert_eq!(parent, manifest.digest.to_string());
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn walk_fails_on_a_missing_root() {
    let store = Store::default();
    let root = Descriptor::new(OCI_INDEX, digest_of("nothing"), 7);
    assert!(matches!(store.walk(&root), Err(WalkError::Missing { parent, .. }) if parent == "the root"));
}

#[test]
fn walk_fails_on_a_layer_size_mismatch() {
    let mut store = Store::default();
    let manifest = store.manifest("c", &["layer"]);
    store.blobs.insert(digest_of("layer"), b"layer-grown".to_vec());
    match store.walk(&manifest) {
        Err(WalkError::SizeMismatch { digest, expected, actual }) => {
            assert_eq!((digest, expected, actual), (digest_of("layer"), 5, 11));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn walk_fails_on_a_manifest_size_or_digest_mismatch() {
    let mut store = Store::default();
    let manifest = store.manifest("c", &["layer"]);
    let mut wrong_size = manifest.clone();
    wrong_size.size += 1;
    assert!(matches!(store.walk(&wrong_size), Err(WalkError::SizeMismatch { .. })));

    let mut bytes = store.blobs[&manifest.digest].clone();
    let last = bytes.len() - 2;
    bytes[last] ^= 1;
    store.blobs.insert(manifest.digest.clone(), bytes.clone());
    match store.walk(&manifest) {
        Err(WalkError::DigestMismatch { digest, actual }) => {
            assert_eq!(digest, manifest.digest);
            assert_eq!(actual, Digest::of(&bytes));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn walk_fails_on_a_blob_described_with_two_sizes() {
    let mut store = Store::default();
    let layer = store.add(b"shared");
    let config = store.add(b"c");
    let good = Descriptor::new(OCI_LAYER_GZIP, layer.clone(), 6);
    let bad = Descriptor::new(OCI_LAYER_GZIP, layer.clone(), 7);
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(OCI_MANIFEST.into()),
        artifact_type: None,
        config: store.desc(OCI_CONFIG, &config),
        layers: vec![good, bad],
        subject: None,
        annotations: None,
    };
    let digest = store.add(&serde_json::to_vec(&manifest).expect("json"));
    let root = store.desc(OCI_MANIFEST, &digest);
    assert!(matches!(store.walk(&root), Err(WalkError::SizeMismatch { digest, expected: 7, actual: 6 }) if digest == layer));
}

#[test]
fn walk_fails_on_unreadable_json() {
    let mut store = Store::default();
    let digest = store.add(b"{\"schemaVersion\":2,\"manifests\":\"no\"}");
    let root = store.desc(OCI_INDEX, &digest);
    assert!(matches!(store.walk(&root), Err(WalkError::Parse { media_type, .. }) if media_type == OCI_INDEX));
    let digest = store.add(b"not json");
    let root = store.desc(DOCKER_MANIFEST, &digest);
    assert!(matches!(store.walk(&root), Err(WalkError::Parse { .. })));
}

#[test]
fn walk_refuses_indexes_nested_too_deep() {
    let mut store = Store::default();
    let mut root = store.manifest("c", &["l"]);
    for _ in 0..MAX_DEPTH {
        root = store.index(vec![root]);
    }
    assert!(store.walk(&root).is_ok(), "{MAX_DEPTH} levels are fine");
    let deeper = store.index(vec![root]);
    assert!(matches!(store.walk(&deeper), Err(WalkError::TooDeep { .. })));
}

#[test]
fn walk_passes_source_errors_on() {
    let mut store = Store::default();
    let manifest = store.manifest("c", &["l"]);
    let result = walk(&manifest, |d| Ok(store.blobs.get(d).cloned()), |_| Err(std::io::Error::other("disk on fire")));
    match result {
        Err(WalkError::Source { digest, source }) => {
            assert_eq!(digest, digest_of("c"));
            assert_eq!(source.to_string(), "disk on fire");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn local_registry_hosting_config_map() {
    let hosting = LocalRegistryHosting {
        host: "127.0.0.1:5001".into(),
        host_from_container_runtime: Some("172.28.0.1:5001".into()),
        host_from_cluster_network: None,
        help: "https://example.invalid/registry".into(),
    };
    let cm = hosting.config_map();
    assert_eq!(cm["metadata"]["name"], "local-registry-hosting");
    assert_eq!(cm["metadata"]["namespace"], "kube-public");
    let doc = cm["data"]["localRegistryHosting.v1"].as_str().expect("a string");
    let parsed = crate::yaml::parse_document(doc).expect("yaml");
    assert_eq!(parsed["host"], "127.0.0.1:5001");
    assert_eq!(parsed["hostFromContainerRuntime"], "172.28.0.1:5001");
    assert_eq!(parsed["help"], "https://example.invalid/registry");
    assert!(parsed.get("hostFromClusterNetwork").is_none());
}

/// One path component of the grammar.
fn component() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[a-z0-9]{1,6}((\\.|_|__|-{1,3})[a-z0-9]{1,6}){0,3}").expect("regex")
}

fn valid_name() -> impl Strategy<Value = String> {
    proptest::collection::vec(component(), 1..5).prop_map(|parts| parts.join("/"))
}

/// Fragments that make any name invalid wherever they are put.
const POISON: [&str; 12] = ["..", "%2e", "%2F", "//", "A", "___", ".-", "-.", "_.", " ", "\\", ":"];

proptest! {
    /// Every name the grammar generates is accepted.
    #[test]
    fn grammar_names_are_accepted(name in valid_name()) {
        prop_assert_eq!(validate_repository(&name), Ok(()));
    }

    /// No arbitrary string panics the parser, and what it accepts has the grammar's
    /// shape: allowed bytes only, no empty or edge-punctuated component, no `..`.
    #[test]
    fn accepted_names_have_the_grammar_shape(s in "\\PC{0,40}|[a-z0-9._/%-]{0,40}") {
        if validate_repository(&s).is_ok() {
            prop_assert!(s.len() <= MAX_NAME_LEN);
            prop_assert!(s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-/".contains(&b)));
            prop_assert!(!s.contains("..") && !s.contains("//") && !s.starts_with('/') && !s.ends_with('/'));
            for c in s.split('/') {
                let (first, last) = (c.as_bytes()[0], c.as_bytes()[c.len() - 1]);
                prop_assert!(first.is_ascii_alphanumeric() && last.is_ascii_alphanumeric());
            }
        }
    }

    /// A poisonous fragment anywhere in a valid name, or a slash at either end, makes
    /// it invalid.
    #[test]
    fn poisoned_names_are_rejected(name in valid_name(), at in any::<prop::sample::Index>(), poison in prop::sample::select(&POISON[..])) {
        let cut = at.index(name.len() + 1);
        let poisoned = format!("{}{}{}", &name[..cut], poison, &name[cut..]);
        prop_assert!(validate_repository(&poisoned).is_err(), "{} accepted", poisoned);
        let leading = format!("/{name}");
        let trailing = format!("{name}/");
        prop_assert!(validate_repository(&leading).is_err());
        prop_assert!(validate_repository(&trailing).is_err());
    }

    /// Names over 255 bytes are rejected, however valid otherwise.
    #[test]
    fn overlong_names_are_rejected(parts in proptest::collection::vec("[a-z0-9]{60}", 5..8)) {
        let name = parts.join("/");
        prop_assert!(name.len() > MAX_NAME_LEN);
        prop_assert!(validate_repository(&name).is_err());
    }

    /// Every sha256 digest round-trips through Display and parse.
    #[test]
    fn digests_round_trip(hex in "[0-9a-f]{64}") {
        let text = format!("sha256:{hex}");
        let digest = Digest::parse(&text).expect("valid");
        prop_assert_eq!(digest.hex(), hex.as_str());
        prop_assert_eq!(digest.to_string(), text);
    }

    /// Whatever string parses is exactly `sha256:` and 64 lowercase hex digits.
    #[test]
    fn parsed_digests_are_canonical(s in "\\PC{0,80}|sha256:[0-9a-fA-F./%]{60,68}") {
        if let Ok(digest) = Digest::parse(&s) {
            prop_assert_eq!(s.len(), 71);
            prop_assert!(s.starts_with("sha256:"));
            prop_assert!(s[7..].bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
            prop_assert_eq!(digest.to_string(), s);
        }
    }

    /// Changing any one hex digit into anything but a lowercase hex digit is refused.
    #[test]
    fn corrupted_digests_are_rejected(hex in "[0-9a-f]{64}", at in 0usize..64, bad in "[^0-9a-f]") {
        let mut corrupted = hex.clone();
        corrupted.replace_range(at..at + 1, &bad);
        let text = format!("sha256:{corrupted}");
        prop_assert!(Digest::parse(&text).is_err());
    }

    /// Only sha256 is accepted, whatever the other algorithm's name.
    #[test]
    fn other_algorithms_are_rejected(algorithm in "[a-z0-9+._-]{1,12}", hex in "[0-9a-f]{64,128}") {
        prop_assume!(algorithm != "sha256");
        let text = format!("{algorithm}:{hex}");
        prop_assert!(Digest::parse(&text).is_err());
    }
}
