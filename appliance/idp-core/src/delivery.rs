//! How the stacks reach the cluster: Argo CD, from the lab's own registry (pure).
//!
//! A component with `delivery: gitops` is not applied by idp-lab. Its render is:
//! - an Argo CD `Application` (in [`ARGOCD_NAMESPACE`], project = its stack) whose
//!   sources are OCI artifacts of the lab registry ([`LAB_REGISTRY_VAR`]): its chart as
//!   an OCI Helm chart ([`chart_repository`], the chart's values inline) and its own
//!   manifests as a **stack artifact** ([`StackArtifact`], [`stack_repository`]), both
//!   pushed there by `up`, offline and online alike, so Argo CD needs no Git server and
//!   no internet;
//! - its HTTPRoutes, applied directly (the edge watches them).
//!
//! One more component, [`GITOPS_COMPONENT`] (wave [`GITOPS_WAVE`], right after Argo CD), holds an `AppProject` per stack (its sources: exactly its applications'
//! repositories; its destinations: exactly the namespaces its objects land in) and the
//! repository credentials that let Argo CD read the lab registry over plain HTTP.
//!
//! Every Application syncs the way the original's ApplicationSets did (digest §7, with
//! its numbers): automated prune and self-heal, server-side apply, retry 10 with backoff
//! 10 s × 2 up to 10 min; and `SkipDryRunOnMissingResource`, so a custom resource whose CRD
//! comes with the same application's chart waits for it instead of failing the sync.

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use std::collections::{BTreeMap, BTreeSet};

/// The namespace of Argo CD and its Applications.
pub const ARGOCD_NAMESPACE: &str = "argocd";

/// The synthetic component holding the AppProjects and the registry's credentials.
pub const GITOPS_COMPONENT: &str = "gitops";

/// Its wave: right after Argo CD (50), before the Gateway (60) and the stacks (100 and up).
pub const GITOPS_WAVE: i32 = 55;

/// The render variable naming the lab registry as pods and nodes reach it
/// (`<lab network gateway>:5000`).
pub const LAB_REGISTRY_VAR: &str = "LAB_REGISTRY";

/// Where the lab registry's charts live (its writable namespace, `local/`).
pub const CHARTS_PREFIX: &str = "local/charts";

/// Where the stack artifacts live.
pub const STACKS_PREFIX: &str = "local/stacks";

/// The media type of a stack artifact's one layer: a gzipped tar of its manifests, a
/// type Argo CD's repo server extracts.
pub const STACK_LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// The one file in a stack artifact.
pub const STACK_FILE: &str = "manifests.yaml";

/// The name of the Secret with the registry's credentials.
pub const REPO_CREDS_SECRET: &str = "idp-lab-registry";

/// A chart's repository in the lab registry: `local/charts/<name>`.
pub fn chart_repository(chart: &str) -> String {
    format!("{CHARTS_PREFIX}/{chart}")
}

/// A chart version as an OCI tag (Helm writes `+` as `_`).
pub fn chart_tag(version: &str) -> String {
    version.replace('+', "_")
}

/// A component's stack artifact repository: `local/stacks/<component>`.
pub fn stack_repository(component: &str) -> String {
    format!("{STACKS_PREFIX}/{component}")
}

/// A component's own manifests, as Argo CD delivers them: what `up` pushes to the lab
/// registry as `<registry>/local/stacks/<component>:<tag>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackArtifact {
    /// The component.
    pub component: String,
    /// `local/stacks/<component>`.
    pub repository: String,
    /// `sha-<16 hex>` of the manifests: a new render of other objects is a new tag, so an
    /// Application follows it and an unchanged one is pushed once.
    pub tag: String,
    /// The objects, one YAML stream ([`STACK_FILE`]).
    pub manifests: String,
}

impl StackArtifact {
    /// The artifact of `component`'s delivered `objects` (already substituted and labelled).
    pub fn of(component: &str, objects: &[Value]) -> StackArtifact {
        let mut manifests = String::new();
        for object in objects {
            manifests.push_str("---\n");
            manifests.push_str(&crate::yaml::to_yaml(object));
        }
        let digest = Sha256::digest(manifests.as_bytes());
        let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        StackArtifact { component: component.to_owned(), repository: stack_repository(component), tag: format!("sha-{hex}"), manifests }
    }
}

/// A chart Argo CD installs from the lab registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChartSource {
    /// The chart's name.
    pub chart: String,
    /// Its version.
    pub version: String,
    /// Its values (substituted, `prod` merged).
    pub values: Value,
}

/// The `Application` of a gitops component: `sources` are its chart (if any) and its
/// stack artifact (if it has manifests), from `registry` (`host:port`).
pub fn application(
    component: &str,
    stack: &str,
    namespace: &str,
    wave: i32,
    registry: &str,
    chart: Option<&ChartSource>,
    artifact: Option<&StackArtifact>,
) -> Value {
    let mut sources = Vec::new();
    if let Some(chart) = chart {
        let mut helm = json!({"releaseName": component});
        if chart.values.as_object().is_some_and(|m| !m.is_empty()) {
            helm["valuesObject"] = chart.values.clone();
        }
        sources.push(json!({
            "repoURL": format!("oci://{registry}/{}", chart_repository(&chart.chart)),
            "targetRevision": chart.version,
            "path": ".",
            "helm": helm,
        }));
    }
    if let Some(artifact) = artifact {
        sources.push(json!({
            "repoURL": format!("oci://{registry}/{}", artifact.repository),
            "targetRevision": artifact.tag,
            "path": ".",
        }));
    }
    json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {
            "name": component,
            "namespace": ARGOCD_NAMESPACE,
            "annotations": {"idp-lab.dev/wave": wave.to_string()},
            // Deleting the Application deletes what it deployed (`down` on an existing cluster).
            "finalizers": ["resources-finalizer.argocd.argoproj.io"],
        },
        "spec": {
            "project": stack,
            "destination": {"server": "https://kubernetes.default.svc", "namespace": namespace},
            "sources": sources,
            "syncPolicy": {
                "automated": {"prune": true, "selfHeal": true},
                "syncOptions": [
                    "ServerSideApply=true",
                    "PruneLast=true",
                    "ApplyOutOfSyncOnly=true",
                    "RespectIgnoreDifferences=true",
                    "SkipDryRunOnMissingResource=true",
                ],
                "retry": {"limit": 10, "backoff": {"duration": "10s", "factor": 2, "maxDuration": "10m"}},
            },
        },
    })
}

/// What one stack's AppProject allows: its applications' source repositories and the
/// namespaces their objects land in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProjectScope {
    /// Every `repoURL` of its applications.
    pub sources: BTreeSet<String>,
    /// Every destination namespace.
    pub namespaces: BTreeSet<String>,
}

impl ProjectScope {
    /// Adds an Application ([`application`]) and the namespaces of its delivered objects.
    pub fn add(&mut self, application: &Value, delivered: &[Value]) {
        if let Some(sources) = application.pointer("/spec/sources").and_then(Value::as_array) {
            self.sources.extend(sources.iter().filter_map(|s| s["repoURL"].as_str()).map(str::to_owned));
        }
        if let Some(ns) = application.pointer("/spec/destination/namespace").and_then(Value::as_str) {
            self.namespaces.insert(ns.to_owned());
        }
        self.namespaces
            .extend(delivered.iter().filter_map(|o| o.pointer("/metadata/namespace").and_then(Value::as_str)).map(str::to_owned));
    }
}

/// The AppProject of `stack`: only its applications' sources, only its namespaces (any
/// kind in them, and cluster-scoped kinds: its charts install CRDs, cluster roles and
/// webhooks).
pub fn app_project(stack: &str, scope: &ProjectScope) -> Value {
    let destinations: Vec<Value> =
        scope.namespaces.iter().map(|ns| json!({"server": "https://kubernetes.default.svc", "namespace": ns})).collect();
    json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AppProject",
        "metadata": {"name": stack, "namespace": ARGOCD_NAMESPACE},
        "spec": {
            "description": format!("The {stack} stack, delivered by idp-lab from the lab registry."),
            "sourceRepos": scope.sources.iter().collect::<Vec<_>>(),
            "destinations": destinations,
            "clusterResourceWhitelist": [{"group": "*", "kind": "*"}],
            "namespaceResourceWhitelist": [{"group": "*", "kind": "*"}],
        },
    })
}

/// The credentials template that lets Argo CD read every repository of the lab registry
/// (`oci://<registry>`, plain HTTP, no login).
pub fn registry_credentials(registry: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": REPO_CREDS_SECRET,
            "namespace": ARGOCD_NAMESPACE,
            "labels": {"argocd.argoproj.io/secret-type": "repo-creds"},
        },
        "type": "Opaque",
        "stringData": {"url": format!("oci://{registry}"), "type": "oci", "insecureOCIForceHttp": "true"},
    })
}

/// The AppProjects of every stack with applications, and the credentials: the objects of
/// [`GITOPS_COMPONENT`]. `scopes` by stack name.
pub fn gitops_objects(registry: &str, scopes: &BTreeMap<String, ProjectScope>) -> Vec<Value> {
    let mut out = vec![registry_credentials(registry)];
    out.extend(scopes.iter().map(|(stack, scope)| app_project(stack, scope)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stack_artifact_is_named_by_its_content() {
        let a = StackArtifact::of("kyverno", &[json!({"kind": "ConfigMap", "metadata": {"name": "a"}})]);
        let b = StackArtifact::of("kyverno", &[json!({"kind": "ConfigMap", "metadata": {"name": "b"}})]);
        assert_eq!(a.repository, "local/stacks/kyverno");
        assert!(a.tag.starts_with("sha-") && a.tag.len() == 20, "{}", a.tag);
        assert_ne!(a.tag, b.tag, "other objects, another tag");
        assert_eq!(a, StackArtifact::of("kyverno", &[json!({"kind": "ConfigMap", "metadata": {"name": "a"}})]), "deterministic");
        assert_eq!(a.manifests, "---\nkind: ConfigMap\nmetadata:\n  name: a\n");
    }

    #[test]
    fn an_application_syncs_its_chart_and_its_stack_from_the_lab_registry() {
        let chart =
            ChartSource { chart: "kyverno".into(), version: "3.5.2".into(), values: json!({"admissionController": {"replicas": 1}}) };
        let artifact = StackArtifact::of("kyverno", &[json!({"kind": "ClusterPolicy", "metadata": {"name": "p"}})]);
        let app = application("kyverno", "policies", "kyverno-system", 100, "172.30.0.1:5000", Some(&chart), Some(&artifact));
        let sources = app["spec"]["sources"].as_array().expect("sources");
        assert_eq!(sources.len(), 2);
        assert_eq!(sources[0]["repoURL"], "oci://172.30.0.1:5000/local/charts/kyverno");
        assert_eq!((&sources[0]["targetRevision"], &sources[0]["path"]), (&json!("3.5.2"), &json!(".")));
        assert_eq!(sources[0]["helm"]["valuesObject"]["admissionController"]["replicas"], 1);
        assert_eq!(sources[1]["repoURL"], "oci://172.30.0.1:5000/local/stacks/kyverno");
        assert_eq!(sources[1]["targetRevision"], json!(artifact.tag));
        let policy = &app["spec"]["syncPolicy"];
        assert_eq!(policy["automated"], json!({"prune": true, "selfHeal": true}));
        assert_eq!(policy["retry"], json!({"limit": 10, "backoff": {"duration": "10s", "factor": 2, "maxDuration": "10m"}}));
        assert!(policy["syncOptions"].as_array().expect("options").contains(&json!("ServerSideApply=true")));
        assert_eq!(app["spec"]["project"], "policies");
        // A chart alone: one source; values left out when there are none.
        let bare = ChartSource { values: json!({}), ..chart };
        let app = application("kyverno", "policies", "kyverno-system", 100, "r:5000", Some(&bare), None);
        assert_eq!(app["spec"]["sources"].as_array().map(Vec::len), Some(1));
        assert!(app["spec"]["sources"][0]["helm"].get("valuesObject").is_none());
    }

    #[test]
    fn a_project_allows_only_its_applications_sources_and_namespaces() {
        let artifact = StackArtifact::of("loki", &[]);
        let app = application("loki", "observability", "observability", 100, "r:5000", None, Some(&artifact));
        let mut scope = ProjectScope::default();
        scope.add(
            &app,
            &[
                json!({"kind": "ConfigMap", "metadata": {"name": "x", "namespace": "kube-system"}}),
                json!({"kind": "ClusterRole", "metadata": {"name": "y"}}),
            ],
        );
        let project = app_project("observability", &scope);
        assert_eq!(project["spec"]["sourceRepos"], json!(["oci://r:5000/local/stacks/loki"]));
        let namespaces: Vec<&str> =
            project["spec"]["destinations"].as_array().expect("list").iter().filter_map(|d| d["namespace"].as_str()).collect();
        assert_eq!(namespaces, ["kube-system", "observability"]);
        let creds = registry_credentials("r:5000");
        assert_eq!(creds["stringData"], json!({"url": "oci://r:5000", "type": "oci", "insecureOCIForceHttp": "true"}));
        assert_eq!(creds["metadata"]["labels"]["argocd.argoproj.io/secret-type"], "repo-creds");
    }
}
