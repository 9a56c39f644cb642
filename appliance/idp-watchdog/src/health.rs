//! The parts of the health rollup ([`idp_core::health`]) the watchdog reads from the
//! cluster: the objects of each component idp-lab applied, the API's nodes, Argo CD
//! `Application`s (their health and sync status, as Argo CD wrote them) and k3s
//! `HelmChart`s (with their install Jobs). The daemon adds what it sees elsewhere (the
//! node containers, Vault's seal status, its own servers) and judges the whole.
//!
//! Every verdict is [`idp_core::readiness`]' (one set of rules for `up`'s waits and
//! for the watchdog). What cannot be read is Unknown, with the error as its reason: a
//! rollup is always given, never an error.

use crate::drift::Component;
use idp_core::cluster::KubeNode;
use idp_core::health::{self, Child, Health, Rollup};
use idp_core::readiness::{self, Related};
use idp_kube::Cluster;
use idp_kube::watch_diff::Watched;
use kube::api::{DynamicObject, ListParams};
use kube::discovery::ApiResource;
use serde_json::Value;

/// A component whose objects the health loop judges: its objects with a status to judge
/// (not [`readiness::is_static`]: ConfigMaps, Secrets, RBAC... are Ready once they exist,
/// which drift watches) resolved once (their kinds discovered), then only listed at each
/// tick. A component of static objects alone costs no request.
pub struct ComponentHealth {
    name: String,
    watched: Result<Option<Watched>, String>,
}

impl ComponentHealth {
    /// Resolves `component`'s objects on `cluster` (discovery; nothing is listed yet). A
    /// component whose objects do not resolve is judged Unknown, with why.
    pub async fn new(cluster: &Cluster, component: &Component) -> ComponentHealth {
        let judged: Vec<idp_core::objects::Object> =
            component.objects.iter().filter(|o| !readiness::is_static(o.api_version(), o.kind())).cloned().collect();
        let watched = match judged.is_empty() {
            true => Ok(None),
            false => cluster.watched(judged, &component.options).await.map(Some).map_err(|e| idp_core::diag::chain(&e)),
        };
        ComponentHealth { name: component.name.clone(), watched }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its verdict now: every object's readiness verdict on its live state; an object
    /// that does not exist is Degraded (what idp-lab applied is gone).
    pub async fn judge(&self, cluster: &Cluster) -> Rollup {
        let watched = match &self.watched {
            Ok(Some(watched)) => watched,
            Ok(None) => return health::rollup(&self.name, &[]),
            Err(e) => return health::rollup(&self.name, &[Child::unknown("its objects", e.clone())]),
        };
        let live = match watched.live(cluster).await {
            Ok(live) => live,
            Err(e) => return health::rollup(&self.name, &[Child::unknown("its objects", idp_core::diag::chain(&e))]),
        };
        let children: Vec<Child> = watched
            .members()
            .iter()
            .map(|member| match live.get(&member.identity) {
                Some(value) => readiness::verdict(value).child(&member.object),
                None => Child { subject: member.object.clone(), health: Health::Degraded, reason: "it does not exist".into() },
            })
            .collect();
        health::rollup(&self.name, &children)
    }
}

/// The API's nodes: Ready is Healthy, registered but not Ready Progressing (with the
/// `Ready` condition's reason).
pub fn nodes(nodes: &[KubeNode]) -> Vec<Child> {
    nodes
        .iter()
        .map(|n| {
            let subject = format!("Node {}", n.name);
            match n.ready {
                true => Child { subject, health: Health::Healthy, reason: String::new() },
                false => {
                    Child { subject, health: Health::Progressing, reason: n.not_ready_because.clone().unwrap_or_else(|| "NotReady".into()) }
                }
            }
        })
        .collect()
}

fn resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: if group.is_empty() { version.into() } else { format!("{group}/{version}") },
        kind: kind.into(),
        plural: plural.into(),
    }
}

/// Every object of `resource`, as JSON; `None` when the cluster does not serve the kind
/// (its CRD is not installed: 404).
async fn list(cluster: &Cluster, resource: &ApiResource) -> Result<Option<Vec<Value>>, String> {
    let api = cluster.dynamic_api(resource, None);
    match api.list(&ListParams::default()).await {
        Ok(list) => Ok(Some(list.items.into_iter().map(|o| as_value(o, resource)).collect())),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
        Err(e) => Err(format!("listing {} failed: {}", resource.plural, idp_core::diag::chain(&e))),
    }
}

/// A listed object with the `apiVersion` and `kind` list items lack.
fn as_value(object: DynamicObject, resource: &ApiResource) -> Value {
    let mut value = serde_json::to_value(object).unwrap_or_default();
    if let Some(map) = value.as_object_mut() {
        map.insert("apiVersion".into(), Value::String(resource.api_version.clone()));
        map.insert("kind".into(), Value::String(resource.kind.clone()));
    }
    value
}

fn subject(kind: &str, object: &Value) -> String {
    let namespace = object.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("");
    let name = object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
    format!("{kind} {namespace}/{name}")
}

/// Argo CD's `Application`s, each judged by the health and sync status Argo CD wrote
/// (`status.health.status`, `status.sync.status`, the operation's phase); none when Argo
/// CD is not installed. The whole lab's are one component, `applications`.
pub async fn applications(cluster: &Cluster) -> Option<Rollup> {
    let apps = match list(cluster, &resource("argoproj.io", "v1alpha1", "Application", "applications")).await {
        Ok(Some(apps)) => apps,
        Ok(None) => return None,
        Err(e) => return Some(health::rollup("applications", &[Child::unknown("Applications", e)])),
    };
    let children: Vec<Child> = apps.iter().map(|app| readiness::verdict(app).child(subject("Application", app))).collect();
    Some(health::rollup("applications", &children))
}

/// k3s' `HelmChart`s, each judged by its install Job (`status.jobName`); none when no
/// helm-controller serves the kind. The lab's are one component, `helm-charts`.
pub async fn helm_charts(cluster: &Cluster) -> Option<Rollup> {
    let charts = match list(cluster, &resource("helm.cattle.io", "v1", "HelmChart", "helmcharts")).await {
        Ok(Some(charts)) => charts,
        Ok(None) => return None,
        Err(e) => return Some(health::rollup("helm-charts", &[Child::unknown("HelmCharts", e)])),
    };
    let jobs = if charts.iter().any(|c| readiness::helm_chart_job(c).is_some()) {
        match list(cluster, &resource("batch", "v1", "Job", "jobs")).await {
            Ok(jobs) => jobs.unwrap_or_default(),
            Err(e) => return Some(health::rollup("helm-charts", &[Child::unknown("the HelmCharts' install Jobs", e)])),
        }
    } else {
        Vec::new()
    };
    let related = Related { jobs: &jobs, ..Related::default() };
    let children: Vec<Child> =
        charts.iter().map(|chart| readiness::verdict_with(chart, &related).child(subject("HelmChart", chart))).collect();
    Some(health::rollup("helm-charts", &children))
}
