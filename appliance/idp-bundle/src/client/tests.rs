use super::*;

#[test]
fn parses_docker_hubs_documented_challenge() {
    // The distribution token spec's example (docs/spec/auth/token.md), with a comma inside
    // the quoted scope.
    let c = parse_challenge(
        r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:samalba/my-app:pull,push""#,
    )
    .expect("parses");
    assert_eq!(c.scheme, "Bearer");
    assert_eq!(c.params["realm"], "https://auth.docker.io/token");
    assert_eq!(c.params["service"], "registry.docker.io");
    assert_eq!(c.params["scope"], "repository:samalba/my-app:pull,push");
    assert_eq!(c.params.len(), 3);
}

#[test]
fn parses_the_challenges_other_registries_send() {
    // An insufficient-scope answer, with the error parameter distribution adds.
    let c = parse_challenge(
        r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull",error="insufficient_scope""#,
    )
    .expect("parses");
    assert_eq!((c.params["scope"].as_str(), c.params["error"].as_str()), ("repository:library/nginx:pull", "insufficient_scope"));
    // ghcr.io and quay.io shapes; quay sends no scope.
    let c = parse_challenge(r#"Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:dexidp/dex:pull""#).expect("ghcr");
    assert_eq!(c.params["realm"], "https://ghcr.io/token");
    let c = parse_challenge(r#"Bearer realm="https://quay.io/v2/auth",service="quay.io""#).expect("quay");
    assert_eq!((c.params.len(), c.params.get("scope")), (2, None));
    // Spaces after commas, unquoted tokens, upper-case keys, escapes.
    let c = parse_challenge(r#"bearer Realm="https://r.example/t?x=1", service=reg, scope="a\"b""#).expect("loose");
    assert_eq!(
        (c.params["realm"].as_str(), c.params["service"].as_str(), c.params["scope"].as_str()),
        ("https://r.example/t?x=1", "reg", "a\"b")
    );
    // htpasswd auth in distribution answers Basic: anonymous pulls cannot satisfy it.
    let c = parse_challenge(r#"Basic realm="Registry Realm""#).expect("basic");
    assert_eq!((c.scheme.as_str(), c.params["realm"].as_str()), ("Basic", "Registry Realm"));
}

#[test]
fn rejects_broken_challenges() {
    assert_eq!(parse_challenge(""), None);
    assert_eq!(parse_challenge(r#"Bearer realm="https://unterminated"#), None);
    assert_eq!(parse_challenge("Bearer realm"), None);
    assert_eq!(parse_challenge(r#"Bearer ="x""#), None);
    assert_eq!(parse_challenge(r#"realm="x""#), None);
}

#[test]
fn names_map_to_the_distribution_api() {
    let n = Name::parse("nginx:1.27").expect("parses");
    assert_eq!((n.registry.as_str(), n.repository.as_str(), n.reference.as_str()), ("docker.io", "library/nginx", "1.27"));
    assert_eq!(n.manifest_url("1.27"), "https://registry-1.docker.io/v2/library/nginx/manifests/1.27");
    let n = Name::parse("127.0.0.1:5000/idp-test/multi:v1").expect("parses");
    assert_eq!(n.manifest_url("v1"), "http://127.0.0.1:5000/v2/idp-test/multi/manifests/v1");
    let digest = format!("sha256:{}", "a".repeat(64));
    let n = Name::parse(&format!("quay.io/cilium/cilium:v1.18.2@{digest}")).expect("parses");
    assert_eq!((n.reference.as_str(), n.digest.as_deref()), (digest.as_str(), Some(digest.as_str())));
    assert_eq!(n.blob_url(&digest), format!("https://quay.io/v2/cilium/cilium/blobs/{digest}"));
    for bad in ["quay.io/Cilium/cilium:v1", "quay.io/cilium/cilium", "quay.io/cilium/cilium@sha256:abc", "quay.io/c/c:-x", "quay.io//c:v1"]
    {
        assert!(Name::parse(bad).is_err(), "{bad} accepted");
    }
}

#[test]
fn platforms_key_by_os_and_architecture() {
    let p = |os: &str, arch: &str, variant: Option<&str>| Platform {
        os: os.into(),
        architecture: arch.into(),
        variant: variant.map(Into::into),
    };
    assert_eq!(p("linux", "arm64", Some("v8")).key(), "linux/arm64");
    assert_eq!(p("linux", "amd64", None).key(), "linux/amd64");
    assert_eq!(p("linux", "arm", Some("v7")).key(), "linux/arm/v7");
    assert_eq!(encode("repository:library/nginx:pull"), "repository%3Alibrary%2Fnginx%3Apull");
}
