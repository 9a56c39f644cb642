//! The playbook actions of the lab daemon that write to the cluster, each done the way
//! the tool people know does it, so that what idp-lab did reads the same as what an
//! operator would have done by hand:
//!
//! * [`Cluster::rollout_restart`]: `kubectl rollout restart` (the pod template's
//!   [`RESTARTED_AT_ANNOTATION`]).
//! * [`Cluster::sync_application`]: `argocd app sync` (an Argo CD Application's
//!   `operation`, never over one already there).
//! * [`Cluster::refresh_external_secret`]: `kubectl annotate es NAME
//!   force-sync=$(date +%s) --overwrite` (the [`FORCE_SYNC_ANNOTATION`]), at the version
//!   of `external-secrets.io` the server serves.
//! * [`Cluster::submit_workflow`]: `argo submit --from workflowtemplate/NAME -p k=v`.
//!
//! Every kind but the three `apps/v1` workloads is resolved through discovery first, so
//! a cluster without the CRD answers [`KubeError::NotServed`], and an object that is not
//! there [`KubeError::NotFound`]. Writes go as field manager [`FIELD_MANAGER`].

use std::collections::BTreeMap;

use idp_core::config::{NamespacedName, ObjectRef};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{DynamicObject, ObjectMeta, Patch, PatchParams, PostParams, TypeMeta};
use kube::discovery::ApiResource;
use serde_json::{Map, Value, json};

use crate::discovery::{Discovery, Kind};
use crate::{Cluster, FIELD_MANAGER, KubeError};

/// The pod-template annotation `kubectl rollout restart` sets to the time of the restart.
pub const RESTARTED_AT_ANNOTATION: &str = "kubectl.kubernetes.io/restartedAt";
/// The annotation whose change makes the External Secrets Operator sync an ExternalSecret
/// at once; its value is the time in Unix seconds.
pub const FORCE_SYNC_ANNOTATION: &str = "force-sync";
/// Who an Argo CD sync started by idp-lab names as its initiator.
pub const SYNC_INITIATOR: &str = "idp-lab";

/// The group version of Argo CD's Applications and Argo Workflows' kinds.
const ARGOPROJ: &str = "argoproj.io/v1alpha1";
/// The group of the External Secrets Operator.
const ESO_GROUP: &str = "external-secrets.io";
/// The versions of [`ESO_GROUP`] to take, best first, before whatever else it serves
/// (ESO 0.20 serves `v1` and `v1beta1`).
const ESO_VERSIONS: [&str; 2] = ["v1", "v1beta1"];
/// How often setting an Application's operation is tried when the Application changes
/// between reading and writing it (409 Conflict).
const CONFLICT_ATTEMPTS: u32 = 5;

impl Cluster {
    /// Restarts the pods of a Deployment, StatefulSet or DaemonSet (`apps/v1`) the way
    /// `kubectl rollout restart` does: a merge patch of its pod template's
    /// [`RESTARTED_AT_ANNOTATION`] to now (RFC 3339, UTC, whole seconds), which its
    /// controller rolls out like any template change. An `object` without a namespace is
    /// looked for in the kubeconfig context's namespace, as kubectl would.
    ///
    /// Returns what was done, e.g. `restarted Deployment shop/web
    /// (kubectl.kubernetes.io/restartedAt=2026-12-01T17:42:41Z)`.
    ///
    /// Errors: [`KubeError::Cannot`] for any other kind and for a paused Deployment (as
    /// kubectl refuses one), [`KubeError::NotFound`] when the object does not exist,
    /// [`KubeError::Api`] when a request fails.
    pub async fn rollout_restart(&self, object: &ObjectRef) -> Result<String, KubeError> {
        let resource = match object.kind.as_str() {
            "Deployment" => ApiResource::erase::<Deployment>(&()),
            "StatefulSet" => ApiResource::erase::<StatefulSet>(&()),
            "DaemonSet" => ApiResource::erase::<DaemonSet>(&()),
            other => {
                return Err(KubeError::Cannot {
                    action: "rollout restart",
                    what: object.to_string(),
                    problem: format!("only a Deployment, StatefulSet or DaemonSet (apps/v1) can be restarted, not a {other}"),
                });
            }
        };
        let namespace = object.namespace.as_deref().unwrap_or_else(|| self.client().default_namespace());
        let what = format!("{} {namespace}/{}", object.kind, object.name);
        let api = self.dynamic_api(&resource, Some(namespace));
        let live = self.get_object(&api, &object.name, &what, "read the workload").await?;
        if object.kind == "Deployment" && live.data.pointer("/spec/paused").and_then(Value::as_bool) == Some(true) {
            return Err(KubeError::Cannot {
                action: "rollout restart",
                what,
                problem: "it is paused; resume it first (`kubectl rollout resume`)".into(),
            });
        }
        let at = rfc3339_seconds(Timestamp::now());
        let patch = json!({"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT_ANNOTATION: at}}}}});
        match api.patch(&object.name, &patch_params(), &Patch::Merge(&patch)).await {
            Ok(_) => Ok(format!("restarted {what} ({RESTARTED_AT_ANNOTATION}={at})")),
            Err(kube::Error::Api(status)) if status.code == 404 => Err(self.not_found(what)),
            Err(e) => Err(KubeError::api("patch the workload's pod template", self.server(), e)),
        }
    }

    /// Starts a sync of an Argo CD Application the way `argocd app sync` does: it sets
    /// the Application's `operation` to a sync initiated by [`SYNC_INITIATOR`], to the
    /// revision its source targets, with the sync options and the retry of its sync
    /// policy, and clears the last operation's state; Argo CD's controller
    /// then runs it. The write is conditional on the Application's `resourceVersion`, and
    /// done again from a fresh read when the Application changed in between.
    ///
    /// Returns what was done, e.g. `started a sync of Application argocd/guestbook to v1.2`.
    ///
    /// Errors: [`KubeError::OperationInProgress`] when the Application already has an
    /// operation (it is left as it is), [`KubeError::Cannot`] while it is being deleted,
    /// [`KubeError::NotFound`], [`KubeError::NotServed`] when the cluster has no
    /// Application CRD, [`KubeError::Api`].
    pub async fn sync_application(&self, app: &NamespacedName) -> Result<String, KubeError> {
        let what = format!("Application {}/{}", app.namespace, app.name);
        let api = self.argoproj_api("Application", &app.namespace).await?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let live = self.get_object(&api, &app.name, &what, "read the Application").await?;
            if live.metadata.deletion_timestamp.is_some() {
                return Err(KubeError::Cannot { action: "sync", what, problem: "it is being deleted".into() });
            }
            if let Some(operation) = live.data.get("operation").filter(|op| !op.is_null()) {
                return Err(KubeError::OperationInProgress { operation: describe_operation(operation, &live.data), what });
            }
            let operation = sync_operation(&live.data);
            let mut patch = json!({
                "metadata": {"resourceVersion": live.metadata.resource_version},
                "operation": operation,
            });
            if live.data.pointer("/status/operationState").is_some() {
                patch["status"] = json!({"operationState": null});
            }
            match api.patch(&app.name, &patch_params(), &Patch::Merge(&patch)).await {
                Ok(_) => {
                    let to = match operation.pointer("/sync/revision").and_then(Value::as_str) {
                        Some(revision) => revision.to_owned(),
                        None => "its target revision".to_owned(),
                    };
                    return Ok(format!("started a sync of {what} to {to}"));
                }
                Err(kube::Error::Api(status)) if status.code == 409 && attempt < CONFLICT_ATTEMPTS => {
                    tracing::debug!(application = %what, attempt, "the Application changed while its operation was set; again");
                }
                Err(kube::Error::Api(status)) if status.code == 404 => return Err(self.not_found(what)),
                Err(e) => return Err(KubeError::api("set the Application's operation", self.server(), e)),
            }
        }
    }

    /// Makes the External Secrets Operator sync an ExternalSecret now, as its
    /// documentation says to (`kubectl annotate es NAME force-sync=$(date +%s)
    /// --overwrite`): a merge patch of its [`FORCE_SYNC_ANNOTATION`] to the Unix time.
    /// The version of `external-secrets.io` is the one discovery finds the kind served
    /// at: `v1`, else `v1beta1`, else the group's preferred version.
    ///
    /// Returns what was done, e.g. `asked ExternalSecret grafana/admin
    /// (external-secrets.io/v1) to sync now (force-sync=1796146961)`.
    ///
    /// Errors: [`KubeError::NotFound`], [`KubeError::NotServed`] when no version of the
    /// group serves ExternalSecrets, [`KubeError::Api`].
    pub async fn refresh_external_secret(&self, es: &NamespacedName) -> Result<String, KubeError> {
        let what = format!("ExternalSecret {}/{}", es.namespace, es.name);
        let discovery = Discovery::new(self.client().clone(), self.server());
        let kind = self.served_version(&discovery, ESO_GROUP, "ExternalSecret", &ESO_VERSIONS).await?;
        let api = self.dynamic_api(&kind.resource, Some(&es.namespace));
        let now = Timestamp::now().as_second().to_string();
        let patch = json!({"metadata": {"annotations": {FORCE_SYNC_ANNOTATION: now}}});
        match api.patch(&es.name, &patch_params(), &Patch::Merge(&patch)).await {
            Ok(_) => Ok(format!("asked {what} ({}) to sync now ({FORCE_SYNC_ANNOTATION}={now})", kind.resource.api_version)),
            Err(kube::Error::Api(status)) if status.code == 404 => Err(self.not_found(what)),
            Err(e) => Err(KubeError::api("annotate the ExternalSecret", self.server(), e)),
        }
    }

    /// Submits a Workflow from an Argo Workflows WorkflowTemplate the way `argo submit
    /// --from workflowtemplate/NAME -p k=v` does: a Workflow in the template's namespace,
    /// named by `generateName: NAME-`, labelled `workflows.argoproj.io/workflow-template:
    /// NAME`, with `spec.workflowTemplateRef.name: NAME` and each of `parameters` as a
    /// `spec.arguments.parameters` entry (in name order; none: no arguments).
    ///
    /// Returns the name the API server gave the Workflow.
    ///
    /// Errors: [`KubeError::NotFound`] when the WorkflowTemplate does not exist (nothing
    /// is created), [`KubeError::NotServed`] when the cluster has no Argo Workflows CRDs,
    /// [`KubeError::Api`].
    pub async fn submit_workflow(&self, template: &NamespacedName, parameters: &BTreeMap<String, String>) -> Result<String, KubeError> {
        let what = format!("WorkflowTemplate {}/{}", template.namespace, template.name);
        let discovery = Discovery::new(self.client().clone(), self.server());
        let templates = self.resolve_kind(&discovery, ARGOPROJ, "WorkflowTemplate").await?;
        let workflows = self.resolve_kind(&discovery, ARGOPROJ, "Workflow").await?;
        let templates = self.dynamic_api(&templates.resource, Some(&template.namespace));
        self.get_object(&templates, &template.name, &what, "read the WorkflowTemplate").await?;
        let workflow = workflow_from_template(&workflows.resource, template, parameters);
        let api = self.dynamic_api(&workflows.resource, Some(&template.namespace));
        let params = PostParams { field_manager: Some(FIELD_MANAGER.to_owned()), ..PostParams::default() };
        let created = api.create(&params, &workflow).await.map_err(|e| KubeError::api("create the Workflow", self.server(), e))?;
        created.metadata.name.ok_or_else(|| KubeError::Cannot {
            action: "submit a Workflow from",
            what,
            problem: "the API server answered with a Workflow without a name".into(),
        })
    }

    /// An API for `kind` of [`ARGOPROJ`] in `namespace`, once discovery found it served.
    async fn argoproj_api(&self, kind: &str, namespace: &str) -> Result<Api<DynamicObject>, KubeError> {
        let discovery = Discovery::new(self.client().clone(), self.server());
        let kind = self.resolve_kind(&discovery, ARGOPROJ, kind).await?;
        Ok(self.dynamic_api(&kind.resource, Some(namespace)))
    }

    /// `kind` of `api_version`, or [`KubeError::NotServed`].
    async fn resolve_kind(&self, discovery: &Discovery, api_version: &str, kind: &str) -> Result<Kind, KubeError> {
        discovery.resolve(api_version, kind).await?.ok_or_else(|| KubeError::NotServed {
            server: self.server().to_owned(),
            kinds: vec![format!("{kind} {api_version}")],
            dry_run: false,
        })
    }

    /// `kind` of `group` at the first of `versions` that serves it, else at the version
    /// the server prefers; [`KubeError::NotServed`] when none does.
    async fn served_version(&self, discovery: &Discovery, group: &str, kind: &str, versions: &[&str]) -> Result<Kind, KubeError> {
        for version in versions {
            if let Some(found) = discovery.resolve(&format!("{group}/{version}"), kind).await? {
                return Ok(found);
            }
        }
        discovery.resolve_group_kind(group, kind).await?.ok_or_else(|| KubeError::NotServed {
            server: self.server().to_owned(),
            kinds: vec![format!("{kind} {group}/{}", versions.join(" or "))],
            dry_run: false,
        })
    }

    /// The object `name`, or [`KubeError::NotFound`] naming it as `what`.
    async fn get_object(&self, api: &Api<DynamicObject>, name: &str, what: &str, action: &'static str) -> Result<DynamicObject, KubeError> {
        match api.get(name).await {
            Ok(object) => Ok(object),
            Err(kube::Error::Api(status)) if status.code == 404 => Err(self.not_found(what.to_owned())),
            Err(e) => Err(KubeError::api(action, self.server(), e)),
        }
    }

    fn not_found(&self, what: String) -> KubeError {
        KubeError::NotFound { server: self.server().to_owned(), what }
    }
}

/// A merge patch as [`FIELD_MANAGER`].
fn patch_params() -> PatchParams {
    PatchParams { field_manager: Some(FIELD_MANAGER.to_owned()), ..PatchParams::default() }
}

/// `t` in RFC 3339, UTC, to the second: `2026-12-01T17:42:41Z` (`kubectl rollout restart`
/// writes Go's `time.RFC3339`, which has no fractional seconds either).
fn rfc3339_seconds(t: Timestamp) -> String {
    format!("{t:.0}")
}

/// The `operation` `argocd app sync` gives the Application `app` (a JSON object) when
/// asked for nothing but a sync: initiated by [`SYNC_INITIATOR`]; `sync.revision` the
/// source's `targetRevision` (for an Application of several `sources`, `sync.revisions`,
/// one per source), left out when empty as Argo CD leaves it out; `sync.syncOptions` and
/// `retry` from `spec.syncPolicy` when it has them. Argo CD's server also resolves the
/// revision to a commit through its repo server; without it, its controller does.
pub(crate) fn sync_operation(app: &Value) -> Value {
    let mut sync = Map::new();
    let target = |source: &Value| source.get("targetRevision").and_then(Value::as_str).unwrap_or_default().to_owned();
    match app.pointer("/spec/sources").and_then(Value::as_array).filter(|s| !s.is_empty()) {
        Some(sources) => {
            sync.insert("revisions".into(), sources.iter().map(|s| Value::String(target(s))).collect());
        }
        None => {
            let revision = app.pointer("/spec/source").map(target).unwrap_or_default();
            if !revision.is_empty() {
                sync.insert("revision".into(), Value::String(revision));
            }
        }
    }
    let policy = app.pointer("/spec/syncPolicy");
    if let Some(options) = policy.and_then(|p| p.get("syncOptions")).filter(|o| o.as_array().is_some_and(|o| !o.is_empty())) {
        sync.insert("syncOptions".into(), options.clone());
    }
    let mut operation = json!({"initiatedBy": {"username": SYNC_INITIATOR}, "sync": sync});
    if let Some(retry) = policy.and_then(|p| p.get("retry")).filter(|r| !r.is_null()) {
        operation["retry"] = retry.clone();
    }
    operation
}

/// What an Application's `operation` is, for an error: its kind, who started it, and
/// the phase of its state, e.g. `a sync started by admin, Running`.
fn describe_operation(operation: &Value, app: &Value) -> String {
    let kind = if operation.get("sync").is_some() { "a sync" } else { "an operation" };
    let by = operation.get("initiatedBy");
    let who =
        match (by.and_then(|b| b.get("username")).and_then(Value::as_str), by.and_then(|b| b.get("automated")).and_then(Value::as_bool)) {
            (Some(user), _) if !user.is_empty() => format!(" started by {user}"),
            (_, Some(true)) => " started by automated sync".to_owned(),
            _ => String::new(),
        };
    let phase = match app.pointer("/status/operationState/phase").and_then(Value::as_str) {
        Some(phase) if !phase.is_empty() => format!(", {phase}"),
        _ => ", not picked up by the controller yet".to_owned(),
    };
    format!("{kind}{who}{phase}")
}

/// The Workflow `argo submit --from workflowtemplate/NAME` makes of `template`.
fn workflow_from_template(resource: &ApiResource, template: &NamespacedName, parameters: &BTreeMap<String, String>) -> DynamicObject {
    let mut spec = json!({"workflowTemplateRef": {"name": template.name}});
    if !parameters.is_empty() {
        let parameters: Vec<Value> = parameters.iter().map(|(name, value)| json!({"name": name, "value": value})).collect();
        spec["arguments"] = json!({"parameters": parameters});
    }
    DynamicObject {
        types: Some(TypeMeta { api_version: resource.api_version.clone(), kind: resource.kind.clone() }),
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", template.name)),
            namespace: Some(template.namespace.clone()),
            labels: Some(BTreeMap::from([("workflows.argoproj.io/workflow-template".to_owned(), template.name.clone())])),
            ..ObjectMeta::default()
        },
        data: json!({"spec": spec}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarted_at_is_rfc3339_to_the_second() {
        let t: Timestamp = "2026-12-01T17:42:41.123456789Z".parse().expect("a timestamp");
        assert_eq!(rfc3339_seconds(t), "2026-12-01T17:42:41Z");
        assert_eq!(rfc3339_seconds(Timestamp::UNIX_EPOCH), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn a_sync_takes_revision_options_and_retry_from_the_application() {
        let app = json!({"spec": {
            "source": {"repoURL": "https://git.example/x", "path": "app", "targetRevision": "v1.2"},
            "syncPolicy": {"syncOptions": ["CreateNamespace=true"], "retry": {"limit": 3, "backoff": {"duration": "5s"}}},
        }});
        assert_eq!(
            sync_operation(&app),
            json!({
                "initiatedBy": {"username": "idp-lab"},
                "sync": {"revision": "v1.2", "syncOptions": ["CreateNamespace=true"]},
                "retry": {"limit": 3, "backoff": {"duration": "5s"}},
            })
        );
    }

    #[test]
    fn a_bare_application_gets_a_bare_sync() {
        let app = json!({"spec": {"source": {"repoURL": "https://git.example/x", "path": "app"}, "syncPolicy": {"syncOptions": []}}});
        assert_eq!(sync_operation(&app), json!({"initiatedBy": {"username": "idp-lab"}, "sync": {}}));
        assert_eq!(sync_operation(&json!({})), json!({"initiatedBy": {"username": "idp-lab"}, "sync": {}}));
    }

    #[test]
    fn several_sources_sync_one_revision_each() {
        let app = json!({"spec": {"sources": [{"repoURL": "a", "targetRevision": "main"}, {"repoURL": "b"}]}});
        assert_eq!(sync_operation(&app), json!({"initiatedBy": {"username": "idp-lab"}, "sync": {"revisions": ["main", ""]}}));
    }

    #[test]
    fn an_operation_in_progress_is_described() {
        let operation = json!({"sync": {}, "initiatedBy": {"username": "admin"}});
        let app = json!({"status": {"operationState": {"phase": "Running"}}});
        assert_eq!(describe_operation(&operation, &app), "a sync started by admin, Running");
        let automated = json!({"sync": {}, "initiatedBy": {"automated": true}});
        assert_eq!(describe_operation(&automated, &json!({})), "a sync started by automated sync, not picked up by the controller yet");
        assert_eq!(describe_operation(&json!({}), &json!({})), "an operation, not picked up by the controller yet");
    }

    #[test]
    fn a_workflow_refers_to_its_template_with_the_parameters_in_name_order() {
        let resource = ApiResource {
            group: "argoproj.io".into(),
            version: "v1alpha1".into(),
            api_version: ARGOPROJ.into(),
            kind: "Workflow".into(),
            plural: "workflows".into(),
        };
        let template = NamespacedName { namespace: "cicd".into(), name: "remediate".into() };
        let parameters = BTreeMap::from([("z".to_owned(), "1".to_owned()), ("a".to_owned(), "two".to_owned())]);
        let value = serde_json::to_value(workflow_from_template(&resource, &template, &parameters)).expect("JSON");
        assert_eq!(
            value,
            json!({
                "apiVersion": "argoproj.io/v1alpha1",
                "kind": "Workflow",
                "metadata": {
                    "generateName": "remediate-",
                    "namespace": "cicd",
                    "labels": {"workflows.argoproj.io/workflow-template": "remediate"},
                },
                "spec": {
                    "workflowTemplateRef": {"name": "remediate"},
                    "arguments": {"parameters": [{"name": "a", "value": "two"}, {"name": "z", "value": "1"}]},
                },
            })
        );
        let bare = serde_json::to_value(workflow_from_template(&resource, &template, &BTreeMap::new())).expect("JSON");
        assert_eq!(bare["spec"], json!({"workflowTemplateRef": {"name": "remediate"}}));
    }
}
