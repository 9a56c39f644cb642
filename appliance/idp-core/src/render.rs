//! Rendering: the resolved configuration and the catalogue become every object the
//! lab applies, in apply order, with the lab's variables substituted. Pure and
//! deterministic: the same inputs give the same bytes.

use crate::catalogue::{Catalogue, CatalogueError, Component, Delivery, Route};
use crate::config::Config;
use crate::delivery::{self, ChartSource, ProjectScope, StackArtifact};
use crate::settings::NetworkSettings;
use crate::yaml;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// Label put on every object idp-lab renders, naming its component.
pub const COMPONENT_LABEL: &str = "idp-lab.dev/component";
/// Label put on every object idp-lab renders, naming the lab.
pub const LAB_LABEL: &str = "idp-lab.dev/lab";
/// Namespace of the k3s helm-controller's `HelmChart` resources.
pub const HELMCHART_NAMESPACE: &str = "kube-system";

/// The variables substituted into manifests and values as `${NAME}`, and whether the
/// render is of a lab whose platform is up ([`Vars::after_install`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vars(BTreeMap<&'static str, String>, bool);

/// The annotation on a Kyverno policy that ships in Audit (so nothing the platform
/// applies is denied while it installs) and takes this failure action once the platform
/// is up ([`Vars::after_install`]).
pub const AFTER_INSTALL_ACTION: &str = "idp-lab.dev/failure-action-after-install";

impl Vars {
    /// The variables of a lab: its name, its DNS suffix (also escaped for a regular
    /// expression), its HTTPS port (for URLs) and the Gateway's node ports.
    pub fn new(config: &Config, network: &NetworkSettings) -> Vars {
        let mut v = BTreeMap::new();
        let https_port = network.ports.https;
        v.insert("LAB_NAME", config.lab.name.clone());
        v.insert("DNS_SUFFIX", network.dns_suffix.clone());
        v.insert("DNS_SUFFIX_REGEX", regex_escape(&network.dns_suffix));
        v.insert("URL_PORT", if https_port == 443 { String::new() } else { format!(":{https_port}") });
        v.insert("HTTP_NODEPORT", network.http_nodeport.to_string());
        v.insert("HTTPS_NODEPORT", network.https_nodeport.to_string());
        v.insert(delivery::LAB_REGISTRY_VAR, registry_address(DEFAULT_GATEWAY));
        Vars(v, false)
    }

    /// The same variables for a lab whose platform is up: each rule of a policy annotated
    /// [`AFTER_INSTALL_ACTION`] gets that failure action (the namespace-label policy moves
    /// from Audit to Enforce), so what Argo CD delivers and compares against is the final
    /// policy, not a patch it would revert.
    pub fn after_install(mut self) -> Vars {
        self.1 = true;
        self
    }

    /// The same variables for a lab whose network has gateway `gateway` (known once the
    /// lab exists; until then the gateway of the first subnet `up` tries,
    /// [`DEFAULT_GATEWAY`]).
    pub fn with_gateway(mut self, gateway: std::net::Ipv4Addr) -> Vars {
        self.0.insert(delivery::LAB_REGISTRY_VAR, registry_address(gateway));
        self
    }

    /// The names of all variables.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.0.keys().copied()
    }

    /// A variable's value.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// Replaces every `${NAME}`; an unknown name is an error naming the line.
    pub fn substitute(&self, text: &str) -> Result<String, String> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                return Err(format!("line {}: unterminated ${{", line_of(text, rest, start)));
            };
            let name = &after[..end];
            match self.0.get(name) {
                Some(value) => out.push_str(value),
                None => {
                    let known: Vec<&str> = self.names().collect();
                    return Err(format!("line {}: unknown variable ${{{name}}} (known: {})", line_of(text, rest, start), known.join(", ")));
                }
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

/// The gateway of the first subnet `up` tries for a lab network (172.30.0.0/24): the
/// lab registry's address in a render made before the lab exists.
pub const DEFAULT_GATEWAY: std::net::Ipv4Addr = std::net::Ipv4Addr::new(172, 30, 0, 1);

/// The lab registry as pods and nodes reach it: `<gateway>:5000`.
pub fn registry_address(gateway: std::net::Ipv4Addr) -> String {
    format!("{gateway}:{}", crate::cluster::REGISTRY_PORT)
}

/// `text` with every regular-expression metacharacter escaped (RE2/Go syntax, as
/// CoreDNS' `rewrite name regex` reads it): a DNS suffix's dots match only dots.
fn regex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for c in text.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn line_of(text: &str, rest: &str, start: usize) -> usize {
    let offset = text.len() - rest.len() + start;
    text[..offset].matches('\n').count() + 1
}

/// One rendered item.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// A complete Kubernetes object.
    Object(Value),
    /// An upstream manifest fetched and checked at `up` or bundle time.
    Reference {
        /// Where it is fetched from.
        url: String,
        /// Its expected sha256, or `unverified`.
        sha256: String,
        /// Upstream version.
        version: String,
    },
}

/// The items of one component.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderedComponent {
    /// Component name.
    pub name: String,
    /// Its wave.
    pub wave: i32,
    /// Its items, in apply order.
    pub items: Vec<Item>,
    /// What Argo CD delivers of it (`delivery: gitops`): its manifests, substituted and
    /// labelled, pushed to the lab registry as its stack artifact; not applied by idp-lab.
    pub delivered: Vec<Value>,
}

impl RenderedComponent {
    /// Its stack artifact, when Argo CD delivers manifests of it.
    pub fn artifact(&self) -> Option<StackArtifact> {
        (!self.delivered.is_empty()).then(|| StackArtifact::of(&self.name, &self.delivered))
    }
}

/// Everything a lab applies, in apply order.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// Components in apply order.
    pub components: Vec<RenderedComponent>,
}

/// A problem rendering an embedded file (a defect of the build).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// The catalogue is broken.
    #[error(transparent)]
    Catalogue(#[from] CatalogueError),
    /// A file does not render.
    #[error("embedded/{file}: {message}")]
    File {
        /// The embedded file.
        file: String,
        /// What is wrong.
        message: String,
    },
}

/// Renders every enabled component, and, when Argo CD delivers any, the
/// [`delivery::GITOPS_COMPONENT`] with their AppProjects (see [`crate::delivery`]).
pub fn render(config: &Config, catalogue: &Catalogue, vars: &Vars) -> Result<Rendered, RenderError> {
    let mut components: Vec<RenderedComponent> =
        catalogue.enabled(&config.stacks).map(|c| render_component(config, c, vars)).collect::<Result<_, _>>()?;
    let registry = vars.get(delivery::LAB_REGISTRY_VAR).unwrap_or_default().to_owned();
    let mut scopes: BTreeMap<String, ProjectScope> = BTreeMap::new();
    for (c, rendered) in catalogue.enabled(&config.stacks).zip(&components) {
        if c.delivery != Delivery::Gitops {
            continue;
        }
        let application = rendered.items.iter().find_map(|i| match i {
            Item::Object(o) if o["kind"] == "Application" && o["metadata"]["name"] == c.name.as_str() => Some(o),
            _ => None,
        });
        if let Some(application) = application {
            scopes.entry(c.stack.as_str().to_owned()).or_default().add(application, &rendered.delivered);
        }
    }
    if !scopes.is_empty() {
        let mut items: Vec<Item> = delivery::gitops_objects(&registry, &scopes).into_iter().map(Item::Object).collect();
        for item in &mut items {
            if let Item::Object(obj) = item {
                label(obj, delivery::GITOPS_COMPONENT, &config.lab.name);
            }
        }
        let at = components.iter().position(|c| c.wave > delivery::GITOPS_WAVE).unwrap_or(components.len());
        components.insert(
            at,
            RenderedComponent { name: delivery::GITOPS_COMPONENT.into(), wave: delivery::GITOPS_WAVE, items, delivered: Vec::new() },
        );
    }
    Ok(Rendered { components })
}

fn file_error(c: &Component, file: &str, message: impl Into<String>) -> RenderError {
    RenderError::File { file: c.file_path(file), message: message.into() }
}

/// A component's chart values: `values`, with `prod_values` merged over them when the
/// `prod` dial is on; substituted.
pub fn chart_values(config: &Config, c: &Component, vars: &Vars) -> Result<Value, RenderError> {
    let Some(chart) = &c.chart else { return Ok(json!({})) };
    let mut values = match &chart.values {
        Some(f) => load_values(c, f, vars)?,
        None => json!({}),
    };
    if config.stacks.prod
        && let Some(f) = &chart.prod_values
    {
        merge(&mut values, load_values(c, f, vars)?);
    }
    Ok(values)
}

fn render_component(config: &Config, c: &Component, vars: &Vars) -> Result<RenderedComponent, RenderError> {
    let mut items = Vec::new();
    for up in &c.upstream {
        items.push(Item::Reference { url: up.url.clone(), sha256: up.sha256.clone(), version: up.version.clone() });
    }
    let mut manifests = Vec::new();
    for file in &c.manifests {
        let text = vars.substitute(&c.file(file)?).map_err(|e| file_error(c, file, e))?;
        let docs = yaml::parse_documents(&text).map_err(|e| file_error(c, file, e))?;
        for doc in docs {
            check_object(&doc).map_err(|e| file_error(c, file, e))?;
            manifests.push(doc);
        }
    }
    let registry = vars.get(delivery::LAB_REGISTRY_VAR).unwrap_or_default();
    if vars.1 {
        for obj in &mut manifests {
            apply_after_install(obj);
        }
    }
    if c.delivery == Delivery::Gitops {
        for obj in &mut manifests {
            label(obj, &c.name, &config.lab.name);
        }
        let artifact = (!manifests.is_empty()).then(|| StackArtifact::of(&c.name, &manifests));
        let chart = match &c.chart {
            Some(chart) => Some(ChartSource {
                chart: chart.name.clone(),
                version: config.versions.get(&c.name).unwrap_or(&chart.version).clone(),
                values: chart_values(config, c, vars)?,
            }),
            None => None,
        };
        let mut application =
            delivery::application(&c.name, c.stack.as_str(), &c.namespace, c.wave, registry, chart.as_ref(), artifact.as_ref());
        label(&mut application, &c.name, &config.lab.name);
        items.push(Item::Object(application));
        for route in &c.routes {
            let mut route = http_route(c, route, vars);
            label(&mut route, &c.name, &config.lab.name);
            items.push(Item::Object(route));
        }
        return Ok(RenderedComponent { name: c.name.clone(), wave: c.wave, items, delivered: manifests });
    }
    if let Some(chart) = &c.chart {
        let values = chart_values(config, c, vars)?;
        let version = config.versions.get(&c.name).unwrap_or(&chart.version);
        let mut spec = if config.registry.offline {
            // Offline, the chart comes from the lab registry (pushed there by `up` from
            // the bundle), over plain HTTP; the install Job of a bootstrap chart runs on
            // the host network, where the gateway is reachable before a CNI exists.
            json!({
                "chart": format!("oci://{registry}/{}", delivery::chart_repository(&chart.name)),
                "version": version,
                "plainHTTP": true,
                "targetNamespace": c.namespace,
            })
        } else {
            json!({
                "repo": chart.repo,
                "chart": chart.name,
                "version": version,
                "targetNamespace": c.namespace,
            })
        };
        if chart.bootstrap {
            spec["bootstrap"] = json!(true);
        }
        if values.as_object().is_some_and(|m| !m.is_empty()) {
            spec["valuesContent"] = json!(yaml::to_yaml(&values));
        }
        items.push(Item::Object(json!({
            "apiVersion": "helm.cattle.io/v1",
            "kind": "HelmChart",
            "metadata": {"name": c.name, "namespace": HELMCHART_NAMESPACE},
            "spec": spec,
        })));
    }
    items.extend(manifests.into_iter().map(Item::Object));
    for route in &c.routes {
        items.push(Item::Object(http_route(c, route, vars)));
    }
    for item in &mut items {
        if let Item::Object(obj) = item {
            label(obj, &c.name, &config.lab.name);
        }
    }
    Ok(RenderedComponent { name: c.name.clone(), wave: c.wave, items, delivered: Vec::new() })
}

fn load_values(c: &Component, file: &str, vars: &Vars) -> Result<Value, RenderError> {
    let text = vars.substitute(&c.file(file)?).map_err(|e| file_error(c, file, e))?;
    match yaml::parse_document(&text).map_err(|e| file_error(c, file, e))? {
        Value::Null => Ok(json!({})),
        v @ Value::Object(_) => Ok(v),
        _ => Err(file_error(c, file, "values must be a mapping")),
    }
}

/// Deep-merges `over` into `base`: mappings merge key by key, everything else is replaced.
pub fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

/// Sets every rule's `validate.failureAction` of a policy annotated
/// [`AFTER_INSTALL_ACTION`] to the annotation's value.
fn apply_after_install(obj: &mut Value) {
    let Some(action) = obj.pointer(&format!("/metadata/annotations/{}", AFTER_INSTALL_ACTION.replace('/', "~1"))).and_then(Value::as_str)
    else {
        return;
    };
    let action = Value::String(action.to_owned());
    if let Some(rules) = obj.pointer_mut("/spec/rules").and_then(Value::as_array_mut) {
        for rule in rules {
            if let Some(validate) = rule.get_mut("validate").and_then(Value::as_object_mut) {
                validate.insert("failureAction".into(), action.clone());
            }
        }
    }
}

fn check_object(doc: &Value) -> Result<(), String> {
    let has = |p: &str| doc.pointer(p).and_then(Value::as_str).is_some_and(|s| !s.is_empty());
    if has("/apiVersion") && has("/kind") && has("/metadata/name") {
        Ok(())
    } else {
        Err(format!("not a complete object (apiVersion, kind, metadata.name): {}", doc.to_string().chars().take(80).collect::<String>()))
    }
}

fn http_route(c: &Component, route: &Route, vars: &Vars) -> Value {
    let suffix = vars.get("DNS_SUFFIX").unwrap_or_default();
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": route.host, "namespace": c.namespace},
        "spec": {
            "parentRefs": [{"name": "idp-gateway", "namespace": "kube-system", "sectionName": "https"}],
            "hostnames": [format!("{}.{suffix}", route.host)],
            "rules": [{"backendRefs": [{"name": route.service, "port": route.port}]}],
        },
    })
}

fn label(obj: &mut Value, component: &str, lab: &str) {
    let Some(metadata) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    let labels = metadata.entry("labels").or_insert_with(|| Value::Object(Map::new()));
    if let Some(labels) = labels.as_object_mut() {
        labels.insert("app.kubernetes.io/managed-by".into(), json!("idp-lab"));
        labels.insert(COMPONENT_LABEL.into(), json!(component));
        labels.insert(LAB_LABEL.into(), json!(lab));
    }
}

impl Rendered {
    /// All objects in apply order.
    pub fn objects(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.components.iter().flat_map(|c| {
            c.items.iter().filter_map(move |i| match i {
                Item::Object(v) => Some((c.name.as_str(), v)),
                Item::Reference { .. } => None,
            })
        })
    }

    /// The waves in order, each with its components.
    pub fn waves(&self) -> Vec<(i32, Vec<&RenderedComponent>)> {
        let mut waves: Vec<(i32, Vec<&RenderedComponent>)> = Vec::new();
        for c in &self.components {
            match waves.last_mut() {
                Some((w, list)) if *w == c.wave => list.push(c),
                _ => waves.push((c.wave, vec![c])),
            }
        }
        waves
    }

    /// A YAML stream of some components; upstream references become comment blocks.
    pub fn to_yaml_stream<'a>(components: impl IntoIterator<Item = &'a RenderedComponent>) -> String {
        let mut out = String::new();
        for c in components {
            out.push_str(&format!("# component: {} (wave {})\n", c.name, c.wave));
            for item in &c.items {
                out.push_str("---\n");
                match item {
                    Item::Object(v) => out.push_str(&yaml::to_yaml(v)),
                    Item::Reference { url, sha256, version } => {
                        out.push_str("# upstream manifest, fetched and checked against its sha256 at `up` or bundle time:\n");
                        out.push_str(&format!("#   url: {url}\n#   sha256: {sha256}\n#   version: {version}\n"));
                    }
                }
            }
            if let Some(artifact) = c.artifact() {
                out.push_str(&format!(
                    "# delivered by Argo CD from the lab registry's {}:{} (`render -o json` shows them):\n",
                    artifact.repository, artifact.tag
                ));
                for o in &c.delivered {
                    let at = |p: &str| o.pointer(p).and_then(Value::as_str).unwrap_or_default();
                    let namespace = at("/metadata/namespace");
                    let slash = if namespace.is_empty() { "" } else { "/" };
                    out.push_str(&format!("#   {} {namespace}{slash}{}\n", at("/kind"), at("/metadata/name")));
                }
            }
        }
        out
    }

    /// The whole render as one JSON value: an array of items with their component and wave.
    pub fn to_json(&self) -> Value {
        let items: Vec<Value> =
            self.components
                .iter()
                .flat_map(|c| {
                    c.items.iter().map(move |i| match i {
                    Item::Object(v) => json!({"component": c.name, "wave": c.wave, "object": v}),
                    Item::Reference { url, sha256, version } => {
                        json!({"component": c.name, "wave": c.wave, "reference": {"url": url, "sha256": sha256, "version": version}})
                    }
                })
                .chain(c.artifact().into_iter().flat_map(move |a| {
                    let artifact = format!("{}:{}", a.repository, a.tag);
                    c.delivered.iter().map(move |o| json!({"component": c.name, "wave": c.wave, "delivered": o, "artifact": artifact}))
                }))
                })
                .collect();
        Value::Array(items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars {
        let mut v = BTreeMap::new();
        v.insert("DNS_SUFFIX", "127-0-0-1.nip.io".to_owned());
        v.insert("URL_PORT", String::new());
        Vars(v, false)
    }

    #[test]
    fn substitutes_known_variables_and_names_unknown_ones() {
        let v = vars();
        assert_eq!(v.substitute("https://argocd.${DNS_SUFFIX}${URL_PORT}/").as_deref(), Ok("https://argocd.127-0-0-1.nip.io/"));
        assert_eq!(v.substitute("bcrypt $2a$10$x stays").as_deref(), Ok("bcrypt $2a$10$x stays"));
        let e = v.substitute("a\nb ${NOPE}").expect_err("unknown variable");
        assert!(e.starts_with("line 2: unknown variable ${NOPE}"), "{e}");
        assert!(v.substitute("${DNS_SUFFIX").is_err());
    }

    #[test]
    fn the_suffix_regex_escapes_every_metacharacter() {
        assert_eq!(regex_escape("127-0-0-1.nip.io"), r"127-0-0-1\.nip\.io");
        assert_eq!(regex_escape(r"a.b*c+d?e(f)g|h[i]j{k}l^m$n\o"), r"a\.b\*c\+d\?e\(f\)g\|h\[i\]j\{k\}l\^m\$n\\o");
        assert_eq!(regex_escape("lab-1"), "lab-1");
    }

    /// The profile's render with `env` set, and its `coredns-custom` ConfigMap.
    fn coredns_custom(profile: Option<&str>, env: &[(&str, &str)]) -> Value {
        let catalogue = Catalogue::load().expect("the embedded catalogue loads");
        let env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let inputs = crate::profiles::Inputs { profile_flag: profile, env, ..Default::default() };
        let config = crate::profiles::resolve(&inputs, &catalogue.chart_components()).expect("the profile resolves");
        let settings = crate::settings::resolve(&config, &crate::settings::Probes::default()).expect("settings");
        let vars = Vars::new(&config, &settings.network);
        let rendered = render(&config, &catalogue, &vars).expect("renders");
        let found: Vec<(&str, &Value)> =
            rendered.objects().filter(|(_, o)| o["kind"] == "ConfigMap" && o["metadata"]["name"] == "coredns-custom").collect();
        assert_eq!(found.len(), 1, "exactly one coredns-custom ConfigMap");
        let (component, cm) = found[0];
        assert_eq!(component, "gateway");
        assert_eq!((&cm["apiVersion"], &cm["metadata"]["namespace"]), (&json!("v1"), &json!("kube-system")));
        cm.clone()
    }

    /// The Corefile fragment k3s' CoreDNS imports inside `.:53`: one `rewrite` line per
    /// name form (every `*.<suffix>` name, the bare suffix), both to the Gateway's Service.
    fn assert_rewrites_to_the_gateway(cm: &Value, suffix: &str, escaped: &str) {
        let data = cm["data"].as_object().expect("data");
        let keys: Vec<&str> = data.keys().map(String::as_str).collect();
        assert_eq!(keys, ["idp-suffix.override"], "one .override key, no .server key");
        let fragment = data["idp-suffix.override"].as_str().expect("a string");
        assert!(!fragment.contains(['{', '}']), "a plain directive list, no blocks or {{$ENV}}: {fragment}");
        assert!(!fragment.contains('"'), "no quoting needed: {fragment}");
        let lines: Vec<Vec<&str>> = fragment.lines().filter(|l| !l.trim().is_empty()).map(|l| l.split_whitespace().collect()).collect();
        let service = "cilium-gateway-idp-gateway.kube-system.svc.cluster.local.";
        let wildcard = format!(r"^(.+)\.{escaped}\.$");
        let bare = format!("{suffix}.");
        let expected: Vec<Vec<&str>> = vec![
            vec!["rewrite", "stop", "name", "regex", &wildcard, service, "answer", "auto"],
            vec!["rewrite", "stop", "name", "exact", &bare, service],
        ];
        assert_eq!(lines, expected, "{fragment}");
    }

    #[test]
    fn coredns_sends_the_default_suffix_to_the_gateway() {
        let cm = coredns_custom(None, &[]);
        assert_rewrites_to_the_gateway(&cm, "127-0-0-1.nip.io", r"127-0-0-1\.nip\.io");
    }

    #[test]
    fn coredns_sends_a_custom_suffix_to_the_gateway() {
        let cm = coredns_custom(Some("minimal"), &[("IDP_LAB_NETWORK_DNS_SUFFIX", "idp.lab")]);
        assert_rewrites_to_the_gateway(&cm, "idp.lab", r"idp\.lab");
    }

    #[test]
    fn merge_is_deep_for_mappings_only() {
        let mut base = json!({"a": {"b": 1, "c": [1, 2]}, "d": 1});
        merge(&mut base, json!({"a": {"c": [3], "e": true}}));
        assert_eq!(base, json!({"a": {"b": 1, "c": [3], "e": true}, "d": 1}));
    }
}
