//! The rendered platform against the original's numbers (seed digest §2, §4, §5), the
//! image lists, determinism and per-profile snapshots.

use idp_core::catalogue::Catalogue;
use idp_core::config::Config;
use idp_core::profiles::{self, Inputs};
use idp_core::render::{self, Item, Rendered, Vars};
use idp_core::yaml;
use serde_json::Value;

fn config(profile: &str) -> (Catalogue, Config) {
    let catalogue = Catalogue::load().expect("the embedded catalogue loads");
    let inputs = Inputs { profile_flag: Some(profile), ..Inputs::default() };
    let config = profiles::resolve(&inputs, &catalogue.chart_components()).expect("the profile resolves");
    (catalogue, config)
}

fn rendered(profile: &str) -> Rendered {
    let (catalogue, config) = config(profile);
    let settings = idp_core::settings::resolve(&config, &idp_core::settings::Probes::default()).expect("settings");
    let vars = Vars::new(&config, &settings.network);
    render::render(&config, &catalogue, &vars).expect("renders")
}

fn objects<'a>(r: &'a Rendered, kind: &str) -> Vec<&'a Value> {
    r.objects().map(|(_, o)| o).filter(|o| o["kind"] == kind).collect()
}

fn find<'a>(r: &'a Rendered, kind: &str, name: &str) -> &'a Value {
    objects(r, kind).into_iter().find(|o| o["metadata"]["name"] == name).unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

#[test]
fn priority_classes_are_the_originals() {
    let r = rendered("full");
    let table = [
        ("platform-infrastructure", 1_000_000),
        ("platform-events", 200_000),
        ("platform-policy", 100_000),
        ("platform-security", 12_000),
        ("platform-observability", 10_000),
        ("platform-cicd", 7_500),
        ("platform-dashboards", 5_000),
        ("user-workloads", 3_000),
        ("cicd-execution", 2_500),
        ("unclassified-workload", 0),
    ];
    assert_eq!(objects(&r, "PriorityClass").len(), table.len());
    for (name, value) in table {
        let pc = find(&r, "PriorityClass", name);
        assert_eq!(pc["value"], value, "{name}");
        let default = pc["globalDefault"].as_bool().unwrap_or(false);
        assert_eq!(default, name == "unclassified-workload", "{name} globalDefault");
    }
}

#[test]
fn stack_namespaces_carry_their_contracts() {
    let r = rendered("full");
    // namespace: LR defaultRequest cpu/mem, LR default cpu/mem, RQ requests cpu/mem, RQ limits cpu/mem
    let table = [
        ("backstage", ["150m", "256Mi", "500m", "1Gi", "1500m", "3Gi", "4000m", "8Gi"]),
        ("cicd", ["100m", "64Mi", "200m", "128Mi", "3000m", "6Gi", "8000m", "14Gi"]),
        ("argo-events", ["50m", "64Mi", "200m", "256Mi", "500m", "1Gi", "2000m", "3Gi"]),
        ("observability", ["100m", "64Mi", "200m", "128Mi", "1500m", "3Gi", "4000m", "6Gi"]),
        ("security", ["100m", "64Mi", "200m", "128Mi", "2000m", "4Gi", "8000m", "8Gi"]),
    ];
    for (ns, n) in table {
        let namespace = find(&r, "Namespace", ns);
        for label in ["app.kubernetes.io/part-of", "owner", "business-unit", "environment"] {
            assert!(!s(&namespace["metadata"]["labels"][label]).is_empty(), "{ns} lacks {label}");
        }
        let lr = find(&r, "LimitRange", &format!("{ns}-limits"));
        assert_eq!(lr["metadata"]["namespace"], ns);
        let c = &lr["spec"]["limits"][0];
        assert_eq!(c["type"], "Container");
        let got = [&c["defaultRequest"]["cpu"], &c["defaultRequest"]["memory"], &c["default"]["cpu"], &c["default"]["memory"]];
        let rq = find(&r, "ResourceQuota", &format!("{ns}-quota"));
        let h = &rq["spec"]["hard"];
        let got_rq = [&h["requests.cpu"], &h["requests.memory"], &h["limits.cpu"], &h["limits.memory"]];
        let got: Vec<&str> = got.into_iter().chain(got_rq).map(s).collect();
        assert_eq!(got, n, "{ns}");
    }
    let events = find(&r, "LimitRange", "argo-events-limits");
    assert_eq!(events["spec"]["limits"][0]["min"]["cpu"], "10m");
    assert_eq!(events["spec"]["limits"][0]["max"]["memory"], "1Gi");
    let ev = find(&r, "Namespace", "argo-events");
    assert_eq!(ev["metadata"]["labels"]["pod-security.kubernetes.io/enforce"], "baseline");
    // kyverno-system and the bootstrap namespaces have no LimitRange/ResourceQuota (digest §5.2).
    for o in objects(&r, "LimitRange").into_iter().chain(objects(&r, "ResourceQuota")) {
        let ns = s(&o["metadata"]["namespace"]);
        assert!(table.iter().any(|(n, _)| *n == ns), "unexpected governance in {ns}");
    }
}

#[test]
fn gateway_has_both_listeners_and_one_route_per_ui() {
    let r = rendered("full");
    let gw = find(&r, "Gateway", "idp-gateway");
    assert_eq!(gw["metadata"]["namespace"], "kube-system");
    let listeners = gw["spec"]["listeners"].as_array().expect("listeners");
    let http = listeners.iter().find(|l| l["name"] == "http").expect("http listener");
    assert_eq!((http["port"].as_u64(), s(&http["protocol"])), (Some(80), "HTTP"));
    let https = listeners.iter().find(|l| l["name"] == "https").expect("https listener");
    assert_eq!((https["port"].as_u64(), s(&https["protocol"])), (Some(443), "HTTPS"));
    assert_eq!(https["tls"]["mode"], "Terminate");
    assert_eq!(https["tls"]["certificateRefs"][0]["name"], "idp-wildcard-cert");
    for l in listeners {
        assert_eq!(l["hostname"], "*.127-0-0-1.nip.io");
    }
    let redirect = find(&r, "HTTPRoute", "http-to-https-redirect");
    assert_eq!(redirect["spec"]["parentRefs"][0]["sectionName"], "http");
    let filter = &redirect["spec"]["rules"][0]["filters"][0];
    assert_eq!((s(&filter["requestRedirect"]["scheme"]), filter["requestRedirect"]["statusCode"].as_u64()), ("https", Some(301)));

    // digest §4: one route per UI; the broken events route is dropped (bug 8).
    let uis = [
        ("argocd", "argocd", "argocd-server", 80),
        ("backstage", "backstage", "backstage", 7007),
        ("dex", "backstage", "dex", 5556),
        ("grafana", "observability", "prometheus-grafana", 80),
        ("pyrra", "observability", "pyrra", 9099),
        ("sonarqube", "cicd", "sonarqube-sonarqube", 9000),
        ("vault", "vault-system", "vault", 8200),
        ("workflows", "cicd", "argo-workflows-server", 2746),
    ];
    let routes: Vec<&Value> = objects(&r, "HTTPRoute").into_iter().filter(|o| o["metadata"]["name"] != "http-to-https-redirect").collect();
    assert_eq!(routes.len(), uis.len());
    for (host, ns, svc, port) in uis {
        let route = find(&r, "HTTPRoute", host);
        assert_eq!(route["metadata"]["namespace"], ns, "{host}");
        assert_eq!(route["spec"]["hostnames"][0], format!("{host}.127-0-0-1.nip.io"));
        assert_eq!(route["spec"]["parentRefs"][0]["name"], "idp-gateway");
        assert_eq!(route["spec"]["parentRefs"][0]["sectionName"], "https");
        let backend = &route["spec"]["rules"][0]["backendRefs"][0];
        assert_eq!((s(&backend["name"]), backend["port"].as_u64()), (svc, Some(port)), "{host}");
    }
}

#[test]
fn the_issuer_chain_signs_with_the_lab_ca() {
    let r = rendered("full");
    // The CA is the host edge's (written by `up` as this Secret), not one made in the
    // cluster: no self-signed issuer, no CA Certificate for cert-manager to rotate (bug 7).
    assert!(objects(&r, "ClusterIssuer").iter().all(|i| i["spec"].get("selfSigned").is_none()));
    assert!(objects(&r, "Certificate").iter().all(|c| c["spec"]["isCA"] != true), "no CA is issued in the cluster");
    assert_eq!(find(&r, "ClusterIssuer", "ca-issuer")["spec"]["ca"]["secretName"], "idp-lab-ca-secret");
    let wildcard = find(&r, "Certificate", "idp-wildcard-cert");
    assert_eq!(wildcard["metadata"]["namespace"], "kube-system");
    assert_eq!(wildcard["spec"]["issuerRef"]["name"], "ca-issuer");
    assert_eq!(wildcard["spec"]["issuerRef"]["kind"], "ClusterIssuer");
    assert_eq!(wildcard["spec"]["dnsNames"], serde_json::json!(["*.127-0-0-1.nip.io", "127-0-0-1.nip.io"]));
    assert_eq!((s(&wildcard["spec"]["duration"]), s(&wildcard["spec"]["renewBefore"])), ("8760h", "720h"));
}

#[test]
fn bootstrap_helm_charts_are_pinned() {
    let r = rendered("full");
    let table = [
        (
            "prometheus-operator-crds",
            "https://prometheus-community.github.io/helm-charts",
            "prometheus-operator-crds",
            "23.0.0",
            "kube-system",
        ),
        ("cilium", "https://helm.cilium.io", "cilium", "1.18.2", "kube-system"),
        ("cert-manager", "https://charts.jetstack.io", "cert-manager", "v1.19.0", "cert-manager"),
        ("vault", "https://helm.releases.hashicorp.com", "vault", "0.31.0", "vault-system"),
        ("external-secrets", "https://charts.external-secrets.io", "external-secrets", "0.20.2", "external-secrets-system"),
        ("argocd", "https://argoproj.github.io/argo-helm", "argo-cd", "8.6.0", "argocd"),
    ];
    assert_eq!(objects(&r, "HelmChart").len(), table.len());
    for (name, repo, chart, version, ns) in table {
        let hc = find(&r, "HelmChart", name);
        assert_eq!(hc["apiVersion"], "helm.cattle.io/v1");
        assert_eq!(hc["metadata"]["namespace"], "kube-system");
        let spec = &hc["spec"];
        assert_eq!(
            [s(&spec["repo"]), s(&spec["chart"]), s(&spec["version"]), s(&spec["targetNamespace"])],
            [repo, chart, version, ns],
            "{name}"
        );
    }
    assert_eq!(find(&r, "HelmChart", "cilium")["spec"]["bootstrap"], true);
    let cilium = yaml::parse_document(s(&find(&r, "HelmChart", "cilium")["spec"]["valuesContent"])).expect("values parse");
    assert_eq!(cilium["kubeProxyReplacement"], true);
    assert_eq!(cilium["gatewayAPI"]["enabled"], true);
    assert_eq!(cilium["ipam"]["operator"]["clusterPoolIPv4PodCIDRList"][0], "10.42.0.0/16");
    // Bug 9: the notifications URL is substituted, never a literal ${DNS_SUFFIX}.
    let argocd = s(&find(&r, "HelmChart", "argocd")["spec"]["valuesContent"]);
    assert!(argocd.contains("https://argocd.127-0-0-1.nip.io") && !argocd.contains("${"));
    // Vault's liveness probe does not kill a sealed Vault (§10).
    let vault = yaml::parse_document(s(&find(&r, "HelmChart", "vault")["spec"]["valuesContent"])).expect("values parse");
    assert!(s(&vault["server"]["livenessProbe"]["path"]).contains("sealedcode=204"));
    let gateway_crds = r.components.iter().find(|c| c.name == "gateway-api-crds").expect("gateway-api-crds");
    // The five standard-channel CRD files of the tag, each with its sha256.
    assert_eq!(gateway_crds.items.len(), 5);
    assert!(matches!(&gateway_crds.items[0], Item::Reference { url, sha256, version }
        if url == "https://raw.githubusercontent.com/kubernetes-sigs/gateway-api/v1.2.1/config/crd/standard/gateway.networking.k8s.io_gatewayclasses.yaml"
            && sha256 == "f0dcbdd9fb49b4562dad27ceec96078b3846611708464120598949cd2ab1e765" && version == "v1.2.1"));
}

/// Cilium writes its CNI configuration where k3s (flannel off) reads it, the same
/// directory provisioning knows nodes wait on, and talks to the API at the first server.
#[test]
fn cilium_writes_its_cni_config_where_k3s_reads_it() {
    let r = rendered("standard");
    let cilium = yaml::parse_document(s(&find(&r, "HelmChart", "cilium")["spec"]["valuesContent"])).expect("values parse");
    assert_eq!(cilium["cni"]["confPath"], idp_core::cluster::CNI_CONF_DIR);
    assert!(s(&cilium["cni"]["binPath"]).starts_with("/var/lib/rancher/k3s/"), "{}", cilium["cni"]["binPath"]);
    assert_eq!(cilium["k8sServiceHost"], idp_core::settings::node_name("idp-lab", idp_core::settings::NodeRole::Server, 0));
    assert_eq!(cilium["kubeProxyReplacement"], true, "k3s runs with --disable-kube-proxy");
}

#[test]
fn the_prod_dial_sets_real_ha_keys() {
    let r = rendered("full");
    let argocd = yaml::parse_document(s(&find(&r, "HelmChart", "argocd")["spec"]["valuesContent"])).expect("values parse");
    assert_eq!(argocd["redis-ha"]["enabled"], true, "bug 12: real chart-8.x HA keys");
    assert_eq!(argocd["server"]["replicas"], 2);
    let standard = rendered("standard");
    let argocd = yaml::parse_document(s(&find(&standard, "HelmChart", "argocd")["spec"]["valuesContent"])).expect("values parse");
    assert_ne!(argocd["redis-ha"]["enabled"], true);
}

#[test]
fn stacks_switch_whole_stacks() {
    let minimal = rendered("minimal");
    let names: Vec<&str> = minimal.components.iter().map(|c| c.name.as_str()).collect();
    for absent in ["vault", "external-secrets", "observability-namespace", "kube-prometheus-stack", "backstage"] {
        assert!(!names.contains(&absent), "minimal renders {absent}");
    }
    for present in ["cilium", "gateway", "pki", "argocd", "priority-classes"] {
        assert!(names.contains(&present), "minimal lacks {present}");
    }
    let hosts: Vec<&str> = objects(&minimal, "HTTPRoute").iter().map(|o| s(&o["metadata"]["name"])).collect();
    assert_eq!(hosts, ["argocd", "http-to-https-redirect"]);
}

#[test]
fn every_object_is_labelled_and_ordered_by_wave() {
    let r = rendered("full");
    let waves: Vec<i32> = r.components.iter().map(|c| c.wave).collect();
    assert!(waves.windows(2).all(|w| w[0] <= w[1]), "{waves:?}");
    for (component, o) in r.objects() {
        assert_eq!(o["metadata"]["labels"]["idp-lab.dev/component"], component);
        assert_eq!(o["metadata"]["labels"]["app.kubernetes.io/managed-by"], "idp-lab");
    }
}

/// Every image string in the project's own manifests and values, per component.
fn referenced_images(r: &Rendered) -> Vec<(String, String)> {
    fn walk(v: &Value, out: &mut Vec<String>) {
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
                m.values().for_each(|x| walk(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    for (component, o) in r.objects() {
        let mut images = Vec::new();
        walk(o, &mut images);
        if let Some(values) = o["spec"]["valuesContent"].as_str() {
            walk(&yaml::parse_document(values).expect("values parse"), &mut images);
        }
        found.extend(images.into_iter().map(|i| (component.to_owned(), i)));
    }
    found
}

#[test]
fn the_image_walker_finds_both_reference_forms() {
    // Today's manifests reference no image directly; make sure the check below would see one.
    let values = "image: ghcr.io/a/b:v1\nsub:\n  image:\n    registry: quay.io\n    repository: c/d\n    tag: v2\n";
    let object = serde_json::json!({"apiVersion": "v1", "kind": "X", "metadata": {"name": "x"},
        "spec": {"containers": [{"image": "docker.io/e/f:v3"}], "valuesContent": values}});
    let synthetic = Rendered {
        components: vec![render::RenderedComponent {
            name: "demo".into(),
            wave: 0,
            items: vec![Item::Object(object)],
            delivered: Vec::new(),
        }],
    };
    let found: Vec<String> = referenced_images(&synthetic).into_iter().map(|(_, i)| i).collect();
    assert_eq!(found, ["docker.io/e/f:v3", "ghcr.io/a/b:v1", "quay.io/c/d:v2"]);
}

#[test]
fn every_referenced_image_is_in_the_image_lists() {
    let (catalogue, _) = config("full");
    let r = rendered("full");
    for (component, image) in referenced_images(&r) {
        let listed = catalogue
            .get(&component)
            .expect("component")
            .images
            .iter()
            .any(|i| i.reference == image || i.reference.ends_with(&format!("/{image}")));
        assert!(listed, "{component} references {image}, which images/{component}.txt does not list");
    }
    for c in &catalogue.components {
        for i in &c.images {
            assert!(idp_core::catalogue::is_pinned_reference(&i.reference), "{}: {}", c.name, i.reference);
        }
    }
}

#[test]
fn rendering_is_deterministic() {
    let a = Rendered::to_yaml_stream(&rendered("full").components);
    let b = Rendered::to_yaml_stream(&rendered("full").components);
    assert_eq!(a, b);
    assert!(!a.contains("${"), "unsubstituted variable");
}

#[test]
fn every_profile_renders_and_is_pinned_by_a_snapshot() {
    for profile in profiles::names() {
        let r = rendered(&profile);
        let mut text = Rendered::to_yaml_stream(&r.components);
        // And what Argo CD delivers: each stack artifact's manifests, as pushed.
        for c in &r.components {
            if let Some(artifact) = c.artifact() {
                text.push_str(&format!("# stack artifact {}:{}\n{}", artifact.repository, artifact.tag, artifact.manifests));
            }
        }
        insta::assert_snapshot!(format!("render-{profile}"), text);
    }
}

/// Argo CD delivers every gitops component from the lab registry: one Application each
/// (its chart and its stack artifact), its manifests only in its artifact, an AppProject
/// per stack scoped to exactly that, and the registry's credentials.
#[test]
fn argo_cd_delivers_every_stack_from_the_lab_registry() {
    let (catalogue, config) = config("full");
    let r = rendered("full");
    let registry = "oci://172.30.0.1:5000/local/";
    let gitops: Vec<&idp_core::catalogue::Component> =
        catalogue.enabled(&config.stacks).filter(|c| c.delivery == idp_core::catalogue::Delivery::Gitops).collect();
    assert!(gitops.len() >= 12, "{}", gitops.len());
    for c in &gitops {
        let rc = r.components.iter().find(|rc| rc.name == c.name).expect("rendered");
        let kinds: Vec<&str> = rc.items.iter().filter_map(|i| if let Item::Object(o) = i { o["kind"].as_str() } else { None }).collect();
        assert_eq!(kinds[0], "Application", "{}: {kinds:?}", c.name);
        assert!(kinds[1..].iter().all(|k| *k == "HTTPRoute"), "{}: only its routes are applied directly: {kinds:?}", c.name);
        assert_eq!(rc.delivered.is_empty(), c.manifests.is_empty(), "{}: its manifests are delivered", c.name);
        let app = find(&r, "Application", &c.name);
        assert_eq!((&app["metadata"]["namespace"], &app["spec"]["project"]), (&Value::from("argocd"), &Value::from(c.stack.as_str())));
        assert_eq!(app["spec"]["destination"]["namespace"], c.namespace.as_str());
        let sources = app["spec"]["sources"].as_array().expect("sources");
        assert!(sources.iter().all(|s| s["repoURL"].as_str().is_some_and(|u| u.starts_with(registry))), "{}: {sources:?}", c.name);
        if let Some(chart) = &c.chart {
            assert_eq!(sources[0]["repoURL"], format!("{registry}charts/{}", chart.name));
            assert_eq!(sources[0]["targetRevision"], chart.version.as_str());
        }
        match rc.artifact() {
            Some(artifact) => {
                let last = sources.last().expect("a source");
                assert_eq!(last["repoURL"], format!("oci://172.30.0.1:5000/{}", artifact.repository));
                assert_eq!(last["targetRevision"], artifact.tag.as_str());
                for o in &rc.delivered {
                    assert!(!r.objects().any(|(_, applied)| applied == o), "{}: a delivered object is also applied", c.name);
                    assert_eq!(o["metadata"]["labels"]["idp-lab.dev/component"], c.name.as_str());
                }
            }
            None => assert!(c.manifests.is_empty(), "{}", c.name),
        }
    }
    // No custom resource of a chart Argo CD installs is applied by idp-lab.
    for kind in ["ClusterPolicy", "ServiceLevelObjective", "WorkflowTemplate", "EventBus", "Sensor", "EventSource"] {
        assert!(objects(&r, kind).is_empty(), "{kind} is applied directly");
    }
    // The projects: one per stack with applications, exactly their sources and namespaces.
    let projects = objects(&r, "AppProject");
    let mut stacks: Vec<&str> = gitops.iter().map(|c| c.stack.as_str()).collect();
    stacks.sort();
    stacks.dedup();
    assert_eq!(projects.iter().map(|p| s(&p["metadata"]["name"])).collect::<Vec<_>>(), stacks);
    for p in &projects {
        let stack = s(&p["metadata"]["name"]);
        let apps: Vec<&Value> = objects(&r, "Application").into_iter().filter(|a| a["spec"]["project"] == stack).collect();
        let mut want: Vec<&str> = apps
            .iter()
            .flat_map(|a| a["spec"]["sources"].as_array().into_iter().flatten())
            .map(|s| s["repoURL"].as_str().unwrap_or(""))
            .collect();
        want.sort();
        want.dedup();
        let got: Vec<&str> = p["spec"]["sourceRepos"].as_array().expect("repos").iter().map(s).collect();
        assert_eq!(got, want, "{stack}");
        let namespaces: Vec<&str> =
            p["spec"]["destinations"].as_array().expect("destinations").iter().map(|d| s(&d["namespace"])).collect();
        for a in &apps {
            assert!(namespaces.contains(&s(&a["spec"]["destination"]["namespace"])), "{stack}: {namespaces:?}");
        }
    }
    let gitops_component = r.components.iter().find(|c| c.name == "gitops").expect("the gitops component");
    assert_eq!(gitops_component.wave, 55);
    let creds = find(&r, "Secret", "idp-lab-registry");
    assert_eq!(creds["stringData"]["url"], "oci://172.30.0.1:5000");
    // The render is the same twice (artifact tags are content hashes).
    assert_eq!(rendered("full"), r);
}

/// Offline, the bootstrap charts come from the lab registry too.
#[test]
fn the_airgap_render_takes_every_chart_from_the_lab_registry() {
    let r = rendered("airgap");
    let charts = objects(&r, "HelmChart");
    assert!(!charts.is_empty());
    for chart in charts {
        let spec = &chart["spec"];
        assert!(s(&spec["chart"]).starts_with("oci://172.30.0.1:5000/local/charts/"), "{spec}");
        assert_eq!(spec["plainHTTP"], true, "{spec}");
        assert!(spec.get("repo").is_none(), "no upstream repository offline: {spec}");
    }
    let standard = rendered("standard");
    assert!(objects(&standard, "HelmChart").iter().all(|c| c["spec"]["repo"].as_str().is_some_and(|r| r.starts_with("https://"))));
}

/// A lab's own gateway names its registry everywhere.
#[test]
fn the_lab_registry_is_the_labs_gateway() {
    let (catalogue, config) = config("full");
    let settings = idp_core::settings::resolve(&config, &idp_core::settings::Probes::default()).expect("settings");
    let vars = Vars::new(&config, &settings.network).with_gateway(std::net::Ipv4Addr::new(172, 30, 7, 1));
    let r = render::render(&config, &catalogue, &vars).expect("renders");
    let text = Rendered::to_yaml_stream(&r.components);
    assert!(!text.contains("172.30.0.1"), "the default gateway is gone");
    assert!(text.contains("oci://172.30.7.1:5000/local/stacks/"));
    let trivy = find(&r, "Application", "trivy-operator");
    assert_eq!(trivy["spec"]["sources"][0]["helm"]["valuesObject"]["trivy"]["dbRegistry"], "172.30.7.1:5000");
}

/// The Gateway's Service keeps the node ports the nodes publish: the lab's settings, not
/// the original's hard-coded 30080/30443.
#[test]
fn the_gateway_service_has_the_settings_node_ports() {
    let catalogue = Catalogue::load().expect("catalogue");
    for (env, http, https) in [
        (vec![], None, None),
        (vec![("IDP_LAB_NETWORK_HTTP_NODEPORT", "31080"), ("IDP_LAB_NETWORK_HTTPS_NODEPORT", "31443")], Some(31080), Some(31443)),
    ] {
        let env = env.into_iter().map(|(k, v): (&str, &str)| (k.to_owned(), v.to_owned())).collect();
        let inputs = Inputs { profile_flag: Some("standard"), env, ..Inputs::default() };
        let config = profiles::resolve(&inputs, &catalogue.chart_components()).expect("profile");
        let settings = idp_core::settings::resolve(&config, &idp_core::settings::Probes::default()).expect("settings");
        let r = render::render(&config, &catalogue, &Vars::new(&config, &settings.network)).expect("renders");
        let svc = find(&r, "Service", "cilium-gateway-idp-gateway");
        assert_eq!(svc["spec"]["type"], "LoadBalancer");
        let ports: Vec<(u64, u64)> = svc["spec"]["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .map(|p| (p["port"].as_u64().unwrap_or(0), p["nodePort"].as_u64().unwrap_or(0)))
            .collect();
        let want_http = http.unwrap_or(settings.network.http_nodeport);
        let want_https = https.unwrap_or(settings.network.https_nodeport);
        assert_eq!(ports, [(80, u64::from(want_http)), (443, u64::from(want_https))]);
        assert_eq!((settings.network.http_nodeport, settings.network.https_nodeport), (want_http, want_https));
    }
    // Cilium hands LoadBalancer addresses out from the nodes' own (servicelb is off).
    let r = rendered("standard");
    let cilium = find(&r, "HelmChart", "cilium");
    let values = yaml::parse_document(s(&cilium["spec"]["valuesContent"])).expect("values");
    assert_eq!((&values["nodeIPAM"]["enabled"], &values["defaultLBServiceIPAM"]), (&Value::from(true), &Value::from("nodeipam")));
}

/// Kyverno's namespace-label policy ships in Audit and is delivered in Enforce once the
/// platform is up; the audit policies stay in Audit either way.
#[test]
fn the_namespace_label_policy_is_enforced_once_the_platform_is_up() {
    let (catalogue, config) = config("full");
    let settings = idp_core::settings::resolve(&config, &idp_core::settings::Probes::default()).expect("settings");
    let actions = |vars: Vars| -> (Vec<(String, Vec<String>)>, String) {
        let r = render::render(&config, &catalogue, &vars).expect("renders");
        let kyverno = r.components.iter().find(|c| c.name == "kyverno").expect("kyverno");
        let policies = kyverno
            .delivered
            .iter()
            .filter(|o| o["kind"] == "ClusterPolicy")
            .map(|p| {
                let rules = p["spec"]["rules"].as_array().expect("rules");
                (s(&p["metadata"]["name"]).to_owned(), rules.iter().map(|r| s(&r["validate"]["failureAction"]).to_owned()).collect())
            })
            .collect();
        (policies, kyverno.artifact().expect("artifact").tag)
    };
    let (during, tag_during) = actions(Vars::new(&config, &settings.network));
    let (after, tag_after) = actions(Vars::new(&config, &settings.network).after_install());
    assert_eq!(during.len(), 4);
    assert!(during.iter().all(|(_, a)| a.iter().all(|a| a == "Audit")), "nothing is denied while the platform installs: {during:?}");
    for ((name, before), (_, now)) in during.iter().zip(&after) {
        if name == "enforce-namespace-labels" {
            assert!(!now.is_empty() && now.iter().all(|a| a == "Enforce"), "{name}: {now:?}");
        } else {
            assert_eq!(before, now, "{name} stays in Audit");
        }
    }
    assert_ne!(tag_during, tag_after, "the enforced policy is a new stack artifact, which Argo CD follows");
}
