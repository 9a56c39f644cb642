use super::*;
use crate::profiles::{self, Inputs};
use crate::render::{self, Item, Vars};
use serde_json::Value;

fn catalogue() -> Catalogue {
    Catalogue::load().expect("the embedded catalogue loads")
}

fn config(catalogue: &Catalogue, profile: &str) -> Config {
    let inputs = Inputs { profile_flag: Some(profile), ..Inputs::default() };
    profiles::resolve(&inputs, &catalogue.chart_components()).expect("the profile resolves")
}

fn all_configs(catalogue: &Catalogue) -> Vec<(String, Config)> {
    profiles::names().into_iter().map(|p| (p.clone(), config(catalogue, &p))).collect()
}

fn embedded_text() -> String {
    assets::text::<Embedded>(LOCK_PATH).expect("embedded/lock.yaml")
}

fn lock() -> Lock {
    Lock::embedded().unwrap_or_else(|e| panic!("embedded/lock.yaml:\n{e}"))
}

#[test]
fn the_embedded_lock_is_in_canonical_form() {
    // What `lock update` writes is what the repository holds: updates diff minimally.
    assert_eq!(lock().to_yaml(), embedded_text(), "embedded/lock.yaml is not in Lock::to_yaml form");
}

#[test]
fn every_profile_finds_everything_it_needs_in_the_lock() {
    let catalogue = catalogue();
    let lock = lock();
    for (profile, config) in all_configs(&catalogue) {
        let selection = lock.select(&config, &catalogue);
        let missing: Vec<String> = selection.missing.iter().map(ToString::to_string).collect();
        assert!(missing.is_empty(), "profile {profile}: the lock lacks\n  {}", missing.join("\n  "));
    }
}

#[test]
fn no_lock_entry_is_stale() {
    let catalogue = catalogue();
    let configs: Vec<Config> = all_configs(&catalogue).into_iter().map(|(_, c)| c).collect();
    let lock = lock();
    let stale: Vec<String> = lock.stale(&configs, &catalogue).iter().map(|e| format!("{}: {} {}", e.owner, e.kind(), e.name())).collect();
    assert!(stale.is_empty(), "entries no profile needs (remove them from embedded/lock.yaml):\n  {}", stale.join("\n  "));
}

/// Every image string in rendered objects and chart values (`image:` or
/// `repository`+`tag`), as the render test finds them.
fn rendered_images(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(img)) = m.get("image") {
                out.push(img.clone());
            }
            if let (Some(Value::String(repo)), Some(tag)) = (m.get("repository"), m.get("tag")) {
                let registry = m.get("registry").and_then(Value::as_str).map(|r| format!("{r}/")).unwrap_or_default();
                let tag = tag.as_str().map(str::to_owned).unwrap_or_else(|| tag.to_string());
                out.push(format!("{registry}{repo}:{tag}"));
            }
            m.values().for_each(|x| rendered_images(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| rendered_images(x, out)),
        _ => {}
    }
}

#[test]
fn everything_each_profile_renders_is_locked() {
    let catalogue = catalogue();
    let lock = lock();
    for (profile, config) in all_configs(&catalogue) {
        let settings = crate::settings::resolve(&config, &crate::settings::Probes::default()).expect("settings");
        let rendered = render::render(&config, &catalogue, &Vars::new(&config, &settings.network)).expect("renders");
        let entries = lock.for_profile(&config, &catalogue);
        let images: Vec<String> =
            entries.iter().filter_map(|e| if let Artifact::Image(i) = e.artifact { Some(i.reference.clone()) } else { None }).collect();
        let mut checked = 0;
        for component in &rendered.components {
            for item in &component.items {
                match item {
                    Item::Reference { url, sha256, .. } => {
                        let locked = entries.iter().any(|e| {
                            matches!(e.artifact, Artifact::File(f) if f.url == *url
                            && f.sha256.clone().unwrap_or_else(|| "unverified".into()) == *sha256)
                        });
                        assert!(locked, "profile {profile}: {} renders {url} (sha256 {sha256}), not locked", component.name);
                        checked += 1;
                    }
                    Item::Object(o) => {
                        let mut found = Vec::new();
                        rendered_images(o, &mut found);
                        if let Some(values) = o["spec"]["valuesContent"].as_str() {
                            rendered_images(&crate::yaml::parse_document(values).expect("values parse"), &mut found);
                        }
                        for image in found {
                            let qualified = normalize_reference(&image);
                            assert!(
                                images.contains(&qualified),
                                "profile {profile}: {} renders image {image}, which the lock lacks",
                                component.name
                            );
                            checked += 1;
                        }
                        if o["kind"] == "HelmChart" {
                            let spec = &o["spec"];
                            let chart = spec["chart"].as_str().unwrap_or_default();
                            let locked = match chart.strip_prefix("oci://") {
                                // Offline: the lab registry's copy, by name and version.
                                Some(at) => {
                                    let name =
                                        at.strip_prefix(&format!("{}/local/charts/", render::registry_address(render::DEFAULT_GATEWAY)));
                                    assert_eq!(spec["plainHTTP"], true, "profile {profile}: {spec}");
                                    entries.iter().any(|e| {
                                        matches!(e.artifact, Artifact::Chart(c) if Some(c.name.as_str()) == name && c.version == spec["version"])
                                    })
                                }
                                None => entries.iter().any(|e| {
                                    matches!(e.artifact, Artifact::Chart(c)
                                    if same_repository(&c.repository, spec["repo"].as_str().unwrap_or_default())
                                        && c.name == chart && c.version == spec["version"])
                                }),
                            };
                            assert!(locked, "profile {profile}: {} renders HelmChart {spec}, whose chart the lock lacks", component.name);
                            checked += 1;
                        }
                        if o["kind"] == "Application" {
                            // Argo CD's charts come from the lab registry too.
                            let prefix = format!("oci://{}/local/charts/", render::registry_address(render::DEFAULT_GATEWAY));
                            for source in o["spec"]["sources"].as_array().into_iter().flatten() {
                                let Some(name) = source["repoURL"].as_str().and_then(|u| u.strip_prefix(&prefix)) else { continue };
                                let locked = entries.iter().any(
                                    |e| matches!(e.artifact, Artifact::Chart(c) if c.name == name && c.version == source["targetRevision"]),
                                );
                                assert!(
                                    locked,
                                    "profile {profile}: {} renders chart source {source}, whose chart the lock lacks",
                                    component.name
                                );
                                checked += 1;
                            }
                        }
                    }
                }
            }
        }
        assert!(checked > 5, "profile {profile}: only {checked} rendered artifacts checked");
        // The node image and the air-gap images come with every k3s profile.
        let node = normalize_reference(config.cluster.node_image());
        assert!(images.contains(&node), "profile {profile}: node image {node} not selected");
        assert!(entries.iter().filter(|e| matches!(e.owner, Owner::Airgap("k3s"))).count() >= 5, "profile {profile}: air-gap images");
    }
}

#[test]
fn profiles_select_only_what_they_enable() {
    let catalogue = catalogue();
    let lock = lock();
    let minimal = lock.for_profile(&config(&catalogue, "minimal"), &catalogue);
    let full = lock.for_profile(&config(&catalogue, "full"), &catalogue);
    let has = |entries: &[Entry<'_>], reference: &str| entries.iter().any(|e| e.name() == reference);
    assert!(has(&minimal, "quay.io/cilium/cilium:v1.18.2") && has(&full, "quay.io/cilium/cilium:v1.18.2"));
    assert!(!has(&minimal, "docker.io/hashicorp/vault:1.20.4"), "minimal has no secrets stack");
    assert!(has(&full, "docker.io/hashicorp/vault:1.20.4"));
    assert!(minimal.len() < full.len());
    assert!(minimal.iter().all(|e| !matches!(e.owner, Owner::Component("vault" | "backstage" | "sonarqube"))));
    // Each entry once, in lock order.
    let all = lock.entries();
    let positions: Vec<usize> = full.iter().map(|e| all.iter().position(|a| same_entry(a, e)).expect("from the lock")).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
}

#[test]
fn a_cluster_that_exists_needs_no_node_images() {
    let catalogue = catalogue();
    let lock = lock();
    let mut existing = config(&catalogue, "minimal");
    existing.cluster.flavor = Flavor::Existing;
    let selection = lock.select(&existing, &catalogue);
    assert!(selection.missing.is_empty(), "{:?}", selection.missing);
    assert!(selection.entries.iter().all(|e| matches!(e.owner, Owner::Component(_))));
}

#[test]
fn a_chart_version_override_is_missing_until_locked() {
    let catalogue = catalogue();
    let lock = lock();
    let mut config = config(&catalogue, "minimal");
    config.versions.insert("cilium".into(), "1.18.3".into());
    let selection = lock.select(&config, &catalogue);
    assert_eq!(selection.missing.len(), 1, "{:?}", selection.missing);
    let missing = selection.missing[0].to_string();
    assert!(missing.contains("cilium 1.18.3") && missing.contains("pins cilium 1.18.2"), "{missing}");
    // A custom node image is missing too.
    config.cluster.image = "rancher/k3s:v1.34.1-k3s1".into();
    let missing: Vec<String> = lock.select(&config, &catalogue).missing.iter().map(ToString::to_string).collect();
    assert!(missing.iter().any(|m| m.contains("docker.io/rancher/k3s:v1.34.1-k3s1")), "{missing:?}");
}

#[test]
fn a_lock_without_an_image_fails_and_an_extra_entry_is_stale() {
    let catalogue = catalogue();
    let configs: Vec<Config> = all_configs(&catalogue).into_iter().map(|(_, c)| c).collect();
    let mut lock = lock();
    let vault = lock.components.get_mut("vault").expect("vault");
    let removed = vault.images.remove(0);
    let missing: Vec<String> = lock.select(&configs[0], &catalogue).missing.iter().map(ToString::to_string).collect();
    let full = config(&catalogue, "full");
    let missing_full: Vec<String> = lock.select(&full, &catalogue).missing.iter().map(ToString::to_string).collect();
    assert_eq!(missing_full, [format!("vault: image {}: not in the lock; add it under `components.vault.images`", removed.reference)]);
    assert!(missing.len() <= 1);
    // An image nobody lists, a component that does not exist, and an old chart version.
    let mut extra = removed.clone();
    extra.reference = "docker.io/hashicorp/vault:1.19.0".into();
    lock.components.get_mut("vault").expect("vault").images.extend([removed, extra]);
    lock.components.insert("gone".into(), ComponentLock { images: vec![lock.cluster["k3s"].node.clone()], ..ComponentLock::default() });
    let stale: Vec<String> = lock.stale(&configs, &catalogue).iter().map(|e| format!("{} {}", e.owner, e.name())).collect();
    assert_eq!(stale, ["gone docker.io/rancher/k3s:v1.33.4-k3s1", "vault docker.io/hashicorp/vault:1.19.0"]);
}

#[test]
fn a_file_pinned_differently_from_the_catalogue_is_missing() {
    let catalogue = catalogue();
    let mut lock = lock();
    let files = &mut lock.components.get_mut("gateway-api-crds").expect("gateway-api-crds").files;
    files[1].sha256 = Some("0".repeat(64));
    let missing: Vec<String> = lock.select(&config(&catalogue, "minimal"), &catalogue).missing.iter().map(ToString::to_string).collect();
    assert_eq!(missing.len(), 1, "{missing:?}");
    assert!(missing[0].contains("gateway.networking.k8s.io_gateways.yaml") && missing[0].contains("make them agree"), "{missing:?}");
}

#[test]
fn the_gateway_api_crds_are_pinned_from_the_fixtures() {
    let lock = lock();
    let files = &lock.components["gateway-api-crds"].files;
    assert_eq!(files.len(), 5);
    for f in files {
        assert!(f.unverified.is_none(), "{} should be verified", f.url);
        assert!(f.url.starts_with("https://raw.githubusercontent.com/kubernetes-sigs/gateway-api/v1.2.1/config/crd/standard/"));
    }
    assert_eq!(files[3].sha256.as_deref(), Some("db36230a2f54ca3f1733bebc9d303d4db16c958856bf2be941a2c6269b872014"));
    // Everything else the embedded lock holds was written offline: unverified with a reason,
    // except the cilium chart whose package digest the fixtures record.
    for e in lock.entries() {
        let pinned_from_fixtures =
            matches!(e.artifact, Artifact::File(_)) || matches!(e.artifact, Artifact::Chart(c) if c.name == "cilium");
        assert_eq!(e.unverified().is_none(), pinned_from_fixtures, "{} {}", e.owner, e.name());
    }
}

#[test]
fn the_lock_round_trips_through_its_canonical_form() {
    let mut lock = lock();
    let image = &mut lock.cluster.get_mut("k3s").expect("k3s").node;
    image.digest = Some(format!("sha256:{}", "a".repeat(64)));
    image.platforms.insert("linux/amd64".into(), format!("sha256:{}", "b".repeat(64)));
    image.unverified = None;
    image.source = Some("a \"quoted\" note: with colons # and hashes".into());
    let text = lock.to_yaml();
    assert_eq!(Lock::parse(&text, "x.yaml").expect("parses"), lock);
}

fn diagnostics(text: &str) -> Vec<Diagnostic> {
    match Lock::parse(text, "lock.yaml") {
        Ok(lock) => panic!("accepted a broken lock: {lock:?}"),
        Err(e) => e.diagnostics,
    }
}

const GOOD: &str = "\
version: 1
components:
  cilium:
    chart:
      repository: https://helm.cilium.io
      name: cilium
      version: 1.18.2
      unverified: offline
    images:
      - reference: quay.io/cilium/cilium:v1.18.2
        digest: sha256:858f807ea4e20e85e3ea3240a762e1f4b29f1cb5bbd0463b8aa77e7b097c0667
        platforms:
          linux/amd64: sha256:858f807ea4e20e85e3ea3240a762e1f4b29f1cb5bbd0463b8aa77e7b097c0667
      - reference: quay.io/cilium/hubble-ui:v0.13.3
        unverified: offline
";

#[test]
fn a_good_small_lock_parses() {
    let lock = Lock::parse(GOOD, "lock.yaml").expect("parses");
    let entries = lock.entries();
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[1].unverified(), None);
    assert_eq!(entries[2].unverified(), Some("offline"));
}

#[test]
fn a_misspelt_field_names_file_line_field_and_the_fix() {
    let text = GOOD.replace("        digest:", "        digets:");
    let d = diagnostics(&text);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!((d[0].origin.to_string().as_str(), d[0].line), ("lock.yaml", 11), "{}", d[0]);
    assert_eq!(d[0].path, "components.cilium.images[0].digets", "{}", d[0]);
    assert!(d[0].message.contains("digets"), "{}", d[0]);
    assert_eq!(d[0].hint.as_deref(), Some("did you mean `digest`? (docs/catalogue.md lists the lock's fields)"));
}

#[test]
fn bad_values_are_each_reported_where_they_are() {
    let text = GOOD
        .replace("digest: sha256:858f", "digest: sha256:XYZ")
        .replace("version: 1.18.2\n      unverified: offline", "version: 1.18.2")
        .replace("quay.io/cilium/hubble-ui:v0.13.3", "hubble-ui:latest");
    let d = diagnostics(&text);
    let shown: Vec<String> = d.iter().map(ToString::to_string).collect();
    assert_eq!(d.len(), 3, "{shown:#?}");
    // The chart lost its reason and has no digest; reported at its name.
    assert_eq!((d[0].line, d[0].path.as_str()), (6, "components.cilium.chart"), "{}", d[0]);
    assert!(d[0].message.contains("needs `digest`") && d[0].hint.as_deref() == Some(UNVERIFIED_HINT));
    assert_eq!((d[1].line, d[1].column, d[1].path.as_str()), (10, 17, "components.cilium.images[0].digest"), "{}", d[1]);
    assert!(d[1].hint.as_deref().is_some_and(|h| h.contains("64 lowercase hex")));
    assert_eq!((d[2].line, d[2].path.as_str()), (13, "components.cilium.images[1].reference"), "{}", d[2]);
    assert_eq!(d[2].hint.as_deref(), Some("write registry/repository:tag with a version tag (not latest)"));
    assert!(d[2].to_string().starts_with("lock.yaml:13:20: components.cilium.images[1].reference: "), "{}", d[2]);
}

#[test]
fn a_verified_image_needs_its_platforms_and_a_reason_must_say_something() {
    let text = GOOD.replace(
        "        platforms:\n          linux/amd64: sha256:858f807ea4e20e85e3ea3240a762e1f4b29f1cb5bbd0463b8aa77e7b097c0667\n",
        "",
    );
    let d = diagnostics(&text);
    assert_eq!(d.len(), 1, "{d:?}");
    assert!(d[0].message.contains("`digest` and `platforms`") && d[0].path == "components.cilium.images[0]", "{}", d[0]);
    let d = diagnostics(&GOOD.replace("unverified: offline\n    images", "unverified: \"  \"\n    images"));
    assert_eq!((d.len(), d[0].line), (1, 8), "{d:?}");
    let d = diagnostics(&GOOD.replace("linux/amd64", "linux amd64"));
    assert_eq!(d[0].path, "components.cilium.images[0].platforms.linux amd64", "{d:?}");
}

#[test]
fn a_syntax_error_or_a_wrong_version_has_a_position() {
    let d = diagnostics(&GOOD.replace("    images:\n", "    images:\n   - broken: [\n"));
    assert!(d[0].line >= 9 && d[0].hint.is_some(), "{}", d[0]);
    let d = diagnostics(&GOOD.replace("version: 1", "version: 2"));
    assert_eq!((d[0].line, d[0].column, d[0].path.as_str()), (1, 10, "version"), "{}", d[0]);
    let d = diagnostics("components: {}\n");
    assert!(d[0].message.contains("version"), "{}", d[0]);
    let d = diagnostics(&GOOD.replace("https://helm.cilium.io", "http://helm.cilium.io"));
    assert_eq!(d[0].path, "components.cilium.chart.repository", "{}", d[0]);
    // Plain http is for loopback test repositories only.
    assert!(Lock::parse(&GOOD.replace("https://helm.cilium.io", "http://127.0.0.1:8080/charts"), "x").is_ok());
}

#[test]
fn key_paths_follow_indentation_and_sequences() {
    let text = "a:\n  b:\n    - x: 1\n      y: 2\n    - x: 3\n  c:\n  - z: 4\n";
    assert_eq!(key_path_at(text, 1), "a");
    assert_eq!(key_path_at(text, 3), "a.b[0].x");
    assert_eq!(key_path_at(text, 4), "a.b[0].y");
    assert_eq!(key_path_at(text, 5), "a.b[1].x");
    assert_eq!(key_path_at(text, 6), "a.c");
    assert_eq!(key_path_at(text, 7), "a.c[0].z");
}

#[test]
fn references_are_qualified_the_way_docker_does() {
    assert_eq!(normalize_reference("rancher/k3s:v1.33.4-k3s1"), "docker.io/rancher/k3s:v1.33.4-k3s1");
    assert_eq!(normalize_reference("nginx:1.27"), "docker.io/library/nginx:1.27");
    assert_eq!(normalize_reference("docker.io/nginx:1.27"), "docker.io/library/nginx:1.27");
    assert_eq!(normalize_reference("index.docker.io/grafana/loki:3"), "docker.io/grafana/loki:3");
    assert_eq!(normalize_reference("quay.io/cilium/cilium:v1"), "quay.io/cilium/cilium:v1");
    assert_eq!(normalize_reference("localhost/app:1"), "localhost/app:1");
    assert_eq!(normalize_reference("127.0.0.1:5000/app:1"), "127.0.0.1:5000/app:1");
    assert!(is_digest(&format!("sha256:{}", "0".repeat(64))));
    assert!(!is_digest(&format!("sha256:{}", "A".repeat(64))) && !is_digest("sha512:00"));
}

#[test]
fn the_lock_names_the_registries_its_images_come_from() {
    let registries = lock().registries();
    for registry in ["docker.io", "quay.io", "ghcr.io"] {
        assert!(registries.contains(registry), "{registries:?}");
    }
    // Folded as clients fold them: never `index.docker.io`, never a bare path component.
    assert!(registries.iter().all(|r| r.contains('.') || r.contains(':') || r == "localhost"), "{registries:?}");
}

#[test]
fn the_cluster_images_are_the_node_and_its_air_gap_set() {
    let catalogue = catalogue();
    let lock = lock();
    let config = config(&catalogue, "minimal");
    let images = lock.cluster_images(&config);
    let k3s = &lock.cluster["k3s"];
    assert_eq!(images.len(), 1 + k3s.airgap.len());
    assert_eq!(images[0].reference, normalize_reference(config.cluster.node_image()));
    assert_eq!(images[0].owner, "k3s node");
    assert!(images[1..].iter().all(|i| i.owner == "k3s air-gap"));
    // Unverified entries are needed unpinned.
    assert!(images.iter().zip(std::iter::once(&k3s.node).chain(&k3s.airgap)).all(|(p, l)| l.unverified.is_none() || p.digest.is_none()));
    // A custom node image is needed by name alone, with the flavor's air-gap set.
    let mut custom = config.clone();
    custom.cluster.image = "registry.example:5000/me/node:dev".into();
    let images = lock.cluster_images(&custom);
    assert_eq!((images[0].reference.as_str(), images[0].digest.as_ref()), ("registry.example:5000/me/node:dev", None));
    assert_eq!(images.len(), 1 + k3s.airgap.len());
    custom.cluster.flavor = Flavor::Existing;
    assert!(lock.cluster_images(&custom).is_empty());
}

#[test]
fn absent_images_are_found_by_reference_and_by_digest() {
    let a = "sha256:".to_owned() + &"a".repeat(64);
    let b = "sha256:".to_owned() + &"b".repeat(64);
    let pinned = |reference: &str, digest: Option<&str>| Pinned {
        owner: "k3s air-gap".into(),
        reference: reference.into(),
        digest: digest.map(Into::into),
    };
    let needed = vec![
        pinned("docker.io/rancher/mirrored-pause:3.6", Some(&a)),
        pinned("docker.io/rancher/k3s:v1", None),
        pinned("quay.io/cilium/cilium:v1", Some(&a)),
        pinned("ghcr.io/x/y:1", None),
    ];
    // Docker's short forms name the same images.
    let bundled = vec![
        ("rancher/mirrored-pause:3.6".to_owned(), a.clone()),
        ("index.docker.io/rancher/k3s:v1".to_owned(), b.clone()),
        ("quay.io/cilium/cilium:v1".to_owned(), b.clone()),
    ];
    let absent = absent_from(&needed, &bundled);
    let shown: Vec<String> = absent.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            format!("quay.io/cilium/cilium:v1 (k3s air-gap): the bundle holds {b}, the lock pins {a}"),
            "ghcr.io/x/y:1 (k3s air-gap): not in the bundle".to_owned(),
        ]
    );
    assert!(absent_from(&needed[..2], &bundled).is_empty());
    assert_eq!(absent_from(&needed, &[]).len(), needed.len());
}

/// [`GOOD`] with its cilium chart in an OCI registry (`repository` on line 5).
fn oci_lock(repository: &str) -> String {
    GOOD.replace("https://helm.cilium.io", repository)
}

#[test]
fn a_chart_may_come_from_an_oci_registry() {
    let digest = format!("sha256:{}", "c".repeat(64));
    let text = oci_lock("oci://ghcr.io/org/charts")
        .replace("      unverified: offline\n    images", &format!("      digest: {digest}\n    images"));
    let lock = Lock::parse(&text, "lock.yaml").unwrap_or_else(|e| panic!("an oci:// chart parses:\n{e}"));
    let chart = lock.components["cilium"].chart.as_ref().expect("the chart");
    assert!(chart.is_oci());
    assert_eq!(chart.oci_reference().as_deref(), Some("ghcr.io/org/charts/cilium:1.18.2"));
    assert_eq!((chart.digest.as_deref(), chart.url.as_deref(), chart.unverified.as_deref()), (Some(digest.as_str()), None, None));
    // The canonical form keeps it.
    assert_eq!(Lock::parse(&lock.to_yaml(), "again").expect("reads back"), lock);
    // A loopback registry with a port, a registry without a path, a trailing slash, and a
    // version with build metadata (its tag has `_` for `+`).
    for (repository, version, reference) in [
        ("oci://127.0.0.1:5000/charts", "1.18.2", "127.0.0.1:5000/charts/cilium:1.18.2"),
        ("oci://ghcr.io", "1.18.2", "ghcr.io/cilium:1.18.2"),
        ("oci://ghcr.io/org/charts/", "1.18.2+build.7", "ghcr.io/org/charts/cilium:1.18.2_build.7"),
        ("oci://registry-1.docker.io/bitnamicharts", "1.18.2", "docker.io/bitnamicharts/cilium:1.18.2"),
    ] {
        let text = oci_lock(repository).replace("version: 1.18.2", &format!("version: {version}"));
        let lock = Lock::parse(&text, "lock.yaml").unwrap_or_else(|e| panic!("{repository}:\n{e}"));
        let chart = lock.components["cilium"].chart.as_ref().expect("the chart");
        assert_eq!(chart.oci_reference().as_deref(), Some(reference), "{repository}");
    }
    // An HTTP repository's chart has no OCI reference.
    let lock = Lock::parse(GOOD, "lock.yaml").expect("parses");
    let chart = lock.components["cilium"].chart.as_ref().expect("the chart");
    assert!(!chart.is_oci() && chart.oci_reference().is_none());
}

#[test]
fn a_bad_oci_repository_is_reported_at_its_line_and_field() {
    for (repository, says) in [
        ("oci://", "names no registry"),
        ("oci:///charts", "names no registry"),
        ("oci://UPPER/x", "upper case"),
        ("oci://GHCR.IO/org", "upper case"),
        ("oci://charts/x", "do not read as a registry"),
        ("\"oci://ghcr.io/my charts\"", "grammar"),
        ("oci://ghcr.io:http/x", "host name"),
        ("oci://ghcr.io/org//charts", "grammar"),
        ("oci://ghcr.io/Org", "grammar"),
    ] {
        let d = diagnostics(&oci_lock(repository));
        let shown: Vec<String> = d.iter().map(ToString::to_string).collect();
        assert_eq!(d.len(), 1, "{repository}: {shown:#?}");
        assert_eq!((d[0].origin.to_string().as_str(), d[0].line), ("lock.yaml", 5), "{repository}: {}", d[0]);
        assert_eq!((d[0].column, d[0].path.as_str()), (19, "components.cilium.chart.repository"), "{repository}: {}", d[0]);
        assert!(d[0].message.contains("is not an OCI registry path") && d[0].message.contains(says), "{repository}: {}", d[0]);
        assert_eq!(d[0].hint.as_deref(), Some(OCI_HINT), "{repository}");
        assert!(d[0].hint.as_deref().is_some_and(|h| h.contains("oci://<registry>[/<path>]")));
    }
    // Neither http(s) nor oci://: the hint offers both.
    let d = diagnostics(&oci_lock("ftp://ghcr.io/x"));
    assert_eq!((d.len(), d[0].line, d[0].path.as_str()), (1, 5, "components.cilium.chart.repository"), "{d:?}");
    assert!(d[0].message.contains("or an oci:// registry") && d[0].hint.as_deref() == Some(REPOSITORY_HINT), "{}", d[0]);
}

#[test]
fn an_oci_charts_name_version_and_url_must_fit_an_oci_reference() {
    // A name the repository grammar refuses: reported at the name (line 6).
    let d = diagnostics(&oci_lock("oci://ghcr.io/org").replace("name: cilium", "name: Cilium"));
    assert_eq!((d.len(), d[0].line, d[0].path.as_str()), (1, 6, "components.cilium.chart.name"), "{d:?}");
    assert!(d[0].message.contains("ghcr.io/org/Cilium:1.18.2"), "{}", d[0]);
    // A version that is no tag: at the version (line 7).
    let d = diagnostics(&oci_lock("oci://ghcr.io/org").replace("version: 1.18.2", "version: \".1.18\""));
    assert_eq!((d.len(), d[0].line, d[0].path.as_str()), (1, 7, "components.cilium.chart.version"), "{d:?}");
    assert!(d[0].hint.as_deref().is_some_and(|h| h.contains("is its tag")), "{}", d[0]);
    // Spaces in the version: the general check, once.
    let d = diagnostics(&oci_lock("oci://ghcr.io/org").replace("version: 1.18.2", "version: \"1.18 2\""));
    assert_eq!((d.len(), d[0].line, d[0].path.as_str()), (1, 7, "components.cilium.chart.version"), "{d:?}");
    // A package URL on an OCI chart: refused at the url (line 8), naming the artifact.
    let d = diagnostics(
        &oci_lock("oci://ghcr.io/org")
            .replace("      unverified: offline\n    images", "      url: https://x.example/c.tgz\n      unverified: offline\n    images"),
    );
    assert_eq!((d.len(), d[0].line, d[0].path.as_str()), (1, 8, "components.cilium.chart.url"), "{d:?}");
    assert!(d[0].hint.as_deref().is_some_and(|h| h.contains("ghcr.io/org/cilium:1.18.2")), "{}", d[0]);
}

#[test]
fn entries_say_their_kind_and_digest_and_empty_components_are_left_out() {
    let lock = lock();
    let entries = lock.entries();
    let of = |kind: &str| entries.iter().find(|e| e.kind() == kind).copied();
    let image = of("image").expect("an image");
    let chart = of("chart").expect("a chart");
    let file = of("file").expect("a file");
    assert!(
        matches!(image.artifact, Artifact::Image(_))
            && matches!(chart.artifact, Artifact::Chart(_))
            && matches!(file.artifact, Artifact::File(_))
    );
    // A verified file's digest is its sha256 with the prefix; an image's is as pinned.
    let verified = entries.iter().find(|e| e.kind() == "file" && e.unverified().is_none()).expect("a verified file (Gateway API)");
    let Artifact::File(f) = verified.artifact else { unreachable!() };
    assert_eq!(verified.digest(), Some(format!("sha256:{}", f.sha256.as_deref().expect("sha256"))));
    let pinned = entries.iter().find(|e| e.kind() == "chart" && e.unverified().is_none()).expect("a verified chart (cilium)");
    let Artifact::Chart(c) = pinned.artifact else { unreachable!() };
    assert_eq!(pinned.digest(), c.digest.clone());
    assert!(pinned.digest().is_some_and(|d| is_digest(&d)));
    // An empty component is not written; one with anything is.
    let mut with_empty = lock.clone();
    with_empty.components.insert("zz-empty".into(), ComponentLock::default());
    assert!(ComponentLock::default().is_empty());
    let one_chart = ComponentLock { chart: lock.components.values().find_map(|c| c.chart.clone()), ..ComponentLock::default() };
    let one_image =
        ComponentLock { images: lock.components.values().flat_map(|c| c.images.clone()).take(1).collect(), ..ComponentLock::default() };
    let one_file =
        ComponentLock { files: lock.components.values().flat_map(|c| c.files.clone()).take(1).collect(), ..ComponentLock::default() };
    assert!(!one_chart.is_empty() && !one_image.is_empty() && !one_file.is_empty());
    assert!(!with_empty.to_yaml().contains("zz-empty"), "an empty component is left out of the file");
}

#[test]
fn repositories_match_with_or_without_a_trailing_slash_only() {
    assert!(same_repository("https://charts.jetstack.io/", "https://charts.jetstack.io"));
    assert!(same_repository("oci://ghcr.io/org/charts", "oci://ghcr.io/org/charts/"));
    assert!(!same_repository("https://charts.jetstack.io", "https://helm.cilium.io"));
    assert!(!same_repository("https://a.example/charts", "https://a.example"));
}

#[test]
fn package_urls_and_short_image_references_are_positioned_errors() {
    // An HTTP chart's url must be a URL; an OCI chart has none (the hint names its artifact).
    let bad_url =
        GOOD.replace("      unverified: offline\n    images", "      url: ftp://x/cilium.tgz\n      unverified: offline\n    images");
    let d = diagnostics(&bad_url);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].path, "components.cilium.chart.url");
    assert!(d[0].message.contains("ftp://x/cilium.tgz") && d[0].message.contains("not an http(s) URL"), "{}", d[0]);
    let ok_url = GOOD.replace(
        "      unverified: offline\n    images",
        "      url: https://helm.cilium.io/cilium-1.18.2.tgz\n      unverified: offline\n    images",
    );
    assert!(Lock::parse(&ok_url, "lock.yaml").is_ok());
    let oci_url = oci_lock("oci://ghcr.io/org/charts")
        .replace("      unverified: offline\n    images", "      url: https://ghcr.io/x.tgz\n      unverified: offline\n    images");
    let d = diagnostics(&oci_url);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].path, "components.cilium.chart.url");
    assert!(d[0].hint.as_deref().is_some_and(|h| h.contains("the chart is the OCI artifact ghcr.io/org/charts/cilium:1.18.2")), "{}", d[0]);
    // An image reference must be pinned and fully qualified, each on its own.
    for short in ["cilium/cilium:v1.18.2", "quay.io/cilium/cilium"] {
        let d = diagnostics(&GOOD.replace("quay.io/cilium/hubble-ui:v0.13.3", short));
        assert_eq!(d.len(), 1, "{short}: {d:?}");
        assert!(d[0].path.starts_with("components.cilium.images"), "{short}: {}", d[0]);
    }
}
