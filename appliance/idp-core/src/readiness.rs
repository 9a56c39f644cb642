//! Readiness verdicts per kind: is an object, as last seen in the cluster, ready,
//! still on its way, or failed? The rules are the reference's readiness table (Argo CD's
//! built-in health checks and kstatus, with the choices where they differ made
//! explicit); the apply engine in `idp-kube` feeds it the objects its watches see, and
//! [`explain`] names what is still not ready when a wait times out.
//!
//! Pure: a `serde_json::Value` in, a [`Verdict`] out. There is no clock here, so rules
//! that depend on time (kstatus' "Unschedulable for more than 15 s is Failed", "Ready=False
//! after the timeout is Failed") are InProgress with their reason, and the caller's
//! timeout makes them failures.
//!
//! The prelude, for every kind (kstatus, the reference's §7b):
//! 1. `metadata.deletionTimestamp` set: InProgress, `terminating`.
//! 2. `metadata.generation` and `status.observedGeneration` both present and different:
//!    InProgress, the controller has not seen the latest spec.
//! 3. Condition `Stalled=True`: Failed. Condition `Reconciling=True`: InProgress.
//!
//! Then the kind's rule (see [`verdict_with`]); kinds without one use the generic rule:
//! `Ready=True` is Ready, `Ready=False`/`Unknown` is InProgress with the condition's
//! message, and an object with no `Ready` condition (a ConfigMap, a Role) is Ready once
//! it exists.

use crate::objects::api_group;
use serde_json::Value;
use std::fmt;

/// What an object's status says about its readiness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Ready: nothing more to wait for.
    Ready,
    /// Not ready yet, and nothing says it will not get there.
    InProgress {
        /// Why it is not ready, as a human line: `0/1 available`, a condition's message.
        reason: String,
    },
    /// It will not get there without a change: waiting is pointless.
    Failed {
        /// Why, as a human line: `ProgressDeadlineExceeded: ...`, `container web:
        /// ImagePullBackOff (image nginx:nope)`.
        reason: String,
    },
}

impl Verdict {
    /// Whether the verdict is [`Verdict::Ready`].
    pub fn is_ready(&self) -> bool {
        matches!(self, Verdict::Ready)
    }

    /// Whether the verdict is [`Verdict::Failed`].
    pub fn is_failed(&self) -> bool {
        matches!(self, Verdict::Failed { .. })
    }

    /// The reason; empty for [`Verdict::Ready`].
    pub fn reason(&self) -> &str {
        match self {
            Verdict::Ready => "",
            Verdict::InProgress { reason } | Verdict::Failed { reason } => reason,
        }
    }
}

impl Verdict {
    /// The health this verdict means in a rollup (`crate::health`): Ready is Healthy,
    /// InProgress Progressing, Failed Degraded.
    pub fn health(&self) -> crate::health::Health {
        match self {
            Verdict::Ready => crate::health::Health::Healthy,
            Verdict::InProgress { .. } => crate::health::Health::Progressing,
            Verdict::Failed { .. } => crate::health::Health::Degraded,
        }
    }

    /// This verdict on `subject` as a child of a rollup, with its reason.
    pub fn child(&self, subject: impl Into<String>) -> crate::health::Child {
        crate::health::Child { subject: subject.into(), health: self.health(), reason: self.reason().to_owned() }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Ready => f.write_str("ready"),
            Verdict::InProgress { reason } => write!(f, "in progress: {reason}"),
            Verdict::Failed { reason } => write!(f, "failed: {reason}"),
        }
    }
}

fn in_progress(reason: impl Into<String>) -> Verdict {
    Verdict::InProgress { reason: reason.into() }
}

fn failed(reason: impl Into<String>) -> Verdict {
    Verdict::Failed { reason: reason.into() }
}

/// Other objects that some verdicts need, as the caller's watches see them. Everything
/// is optional: what is missing makes the rule that needs it conservative (InProgress),
/// never wrong in the other direction.
#[derive(Debug, Clone, Copy, Default)]
pub struct Related<'a> {
    /// The cluster's StorageClasses (`storage.k8s.io/v1`), for a Pending
    /// PersistentVolumeClaim: one whose class has `volumeBindingMode:
    /// WaitForFirstConsumer` is Ready before it binds.
    pub storage_classes: &'a [Value],
    /// Jobs (`batch/v1`), for a k3s HelmChart: its install Job (named in
    /// `status.jobName`, in the HelmChart's namespace) decides whether it is ready.
    pub jobs: &'a [Value],
}

/// The verdict on one object with nothing else known: [`verdict_with`] and empty
/// [`Related`]. A Pending PVC is then InProgress even if its class waits for the first
/// consumer, and a k3s HelmChart is never Ready (its install Job decides).
pub fn verdict(obj: &Value) -> Verdict {
    verdict_with(obj, &Related::default())
}

/// The verdict on one object, after the prelude (module docs), by its kind:
///
/// - **Deployment**: `spec.paused` is InProgress (`paused`; Argo CD's Suspended, which a
///   wait must not take for ready). A `Progressing` condition with reason
///   `ProgressDeadlineExceeded` is Failed with that reason and the message. Then, with
///   `spec.replicas` (default 1): `updatedReplicas` < spec, `status.replicas` >
///   `updatedReplicas` (old pods still there), `availableReplicas` < `updatedReplicas`
///   are InProgress. (Available pods are ready pods, so `readyReplicas` ≥ spec follows.)
/// - **StatefulSet**: `status.observedGeneration` must be present and > 0; `readyReplicas`
///   ≥ spec; with `OnDelete` that is all; with a rolling-update partition,
///   `updatedReplicas` ≥ spec − partition; else `currentRevision` = `updateRevision`.
///   Never Failed: a timeout is the failure.
/// - **DaemonSet**: observed; `desiredNumberScheduled` present; `numberAvailable` and
///   `numberReady` ≥ desired, and `updatedNumberScheduled` ≥ desired unless `OnDelete`.
/// - **ReplicaSet**: `ReplicaFailure=True` is Failed; `availableReplicas` and
///   `readyReplicas` ≥ spec and `status.replicas` ≤ spec.
/// - **Pod**: a container (or init container) waiting with reason `CrashLoopBackOff`,
///   `ImagePullBackOff`, `InvalidImageName`, `Err*` or `*Error` is Failed, with the container, the reason and
///   its image. Phase `Failed` is Failed (kstatus counts it as done: not copied), `Succeeded`
///   Ready. Running: with `restartPolicy: Always` (the default) Ready once the `Ready`
///   condition is True; with `Never`/`OnFailure` InProgress until it succeeds. Pending is
///   InProgress, with the scheduler's message when `PodScheduled=False`.
/// - **Job**: `Failed=True` is Failed, `Complete=True` Ready, anything else InProgress
///   (`spec.suspend` says `suspended`).
/// - **Service**: `LoadBalancer` needs `status.loadBalancer.ingress` (Argo CD's rule);
///   every other type is Ready.
/// - **PersistentVolumeClaim**: `Bound` is Ready, `Lost` Failed. `Pending` is Ready when
///   its StorageClass (`spec.storageClassName`, else the class annotated
///   `storageclass.kubernetes.io/is-default-class: "true"`) is in
///   [`Related::storage_classes`] with `volumeBindingMode: WaitForFirstConsumer` and the
///   PVC has no `volume.kubernetes.io/selected-node` annotation (no consumer yet: it binds
///   when a pod uses it). Otherwise InProgress.
/// - **CustomResourceDefinition**: `NamesAccepted=False` or `NonStructuralSchema=True`
///   is Failed, so is `Established=False` with a reason other than `Installing`;
///   `Established=True` is Ready; else InProgress.
/// - **APIService**: `Available=True`, else InProgress with the condition's message.
/// - **Namespace**: Ready unless `status.phase` is `Terminating`.
/// - **cert-manager Certificate, Issuer, ClusterIssuer**: `Issuing=True` is InProgress,
///   `Ready=True` Ready; `Ready=False` is InProgress with the message (Failed only by
///   the timeout: issuing takes retries).
/// - **External Secrets ExternalSecret, ClusterExternalSecret, SecretStore,
///   ClusterSecretStore**: `Ready=True` Ready, `Ready=False` Failed, else InProgress.
/// - **Gateway**: `Accepted=False` or `ResolvedRefs=False`, on the Gateway or a listener,
///   is Failed; Ready when `Accepted` and `Programmed` are True on the Gateway and every
///   listener is `Programmed`. Conditions for an older generation do not count.
/// - **HTTPRoute, GRPCRoute, TLSRoute, TCPRoute, UDPRoute**: every entry of
///   `status.parents` must have `Accepted` and `ResolvedRefs` True for the current
///   generation; either False is Failed; no parents yet is InProgress.
/// - **Argo CD Application**: `status.operationState.phase` `Failed`/`Error` or health
///   `Degraded` is Failed; Ready when health is `Healthy`, sync `Synced`, and no
///   operation is `Running`.
/// - **k3s HelmChart** (`helm.cattle.io`): from the HelmChart alone only failure can be
///   decided (a `Failed=True` condition, which newer helm-controllers set); success is
///   its install Job's. Without `status.jobName` it is InProgress (the controller has
///   not started the install); with it, the Job of that name in the HelmChart's
///   namespace is looked up in [`Related::jobs`] and its verdict is the HelmChart's
///   (InProgress while it is not there). [`helm_chart_job`] names the Job to watch.
/// - **any other kind**: the generic rule (module docs).
pub fn verdict_with(obj: &Value, related: &Related<'_>) -> Verdict {
    if let Some(verdict) = prelude(obj) {
        return verdict;
    }
    let group = api_group(str_at(obj, "/apiVersion"));
    let kind = str_at(obj, "/kind");
    match (group, kind) {
        ("apps" | "extensions", "Deployment") => deployment(obj),
        ("apps", "StatefulSet") => stateful_set(obj),
        ("apps" | "extensions", "DaemonSet") => daemon_set(obj),
        ("apps" | "extensions", "ReplicaSet") => replica_set(obj),
        ("", "Pod") => pod(obj),
        ("batch", "Job") => job(obj),
        ("", "Service") => service(obj),
        ("", "PersistentVolumeClaim") => pvc(obj, related.storage_classes),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => crd(obj),
        ("apiregistration.k8s.io", "APIService") => api_service(obj),
        ("", "Namespace") => namespace(obj),
        ("cert-manager.io", "Certificate" | "Issuer" | "ClusterIssuer") => cert_manager(obj),
        ("external-secrets.io", "ExternalSecret" | "ClusterExternalSecret" | "SecretStore" | "ClusterSecretStore") => external_secrets(obj),
        ("gateway.networking.k8s.io", "Gateway") => gateway(obj),
        ("gateway.networking.k8s.io", "HTTPRoute" | "GRPCRoute" | "TLSRoute" | "TCPRoute" | "UDPRoute") => route(obj),
        ("argoproj.io", "Application") => application(obj),
        ("helm.cattle.io", "HelmChart") => helm_chart(obj, related.jobs),
        _ => generic(obj),
    }
}

/// Whether objects of `kind` (of `api_version`) have no status to judge: built-in kinds
/// that are Ready as soon as they exist (configuration, accounts, RBAC, quotas, classes).
/// A health check need not read them: that they exist (and are as applied) is drift's to
/// watch. Custom resources are never static: they may carry a `Ready` condition.
pub fn is_static(api_version: &str, kind: &str) -> bool {
    let group = api_group(api_version);
    matches!(
        (group, kind),
        ("", "ConfigMap" | "Secret" | "ServiceAccount" | "LimitRange" | "ResourceQuota" | "Endpoints")
            | ("rbac.authorization.k8s.io", "Role" | "RoleBinding" | "ClusterRole" | "ClusterRoleBinding")
            | ("scheduling.k8s.io", "PriorityClass")
            | ("storage.k8s.io", "StorageClass")
            | ("networking.k8s.io", "NetworkPolicy" | "IngressClass")
            | ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration" | "MutatingWebhookConfiguration")
            | ("policy", "PodDisruptionBudget")
    )
}

/// The install Job of a k3s HelmChart, as (namespace, name), once the helm-controller
/// has recorded it in `status.jobName`: the Job runs in the HelmChart's namespace.
pub fn helm_chart_job(chart: &Value) -> Option<(String, String)> {
    let name = str_at(chart, "/status/jobName");
    if name.is_empty() {
        return None;
    }
    Some((str_at(chart, "/metadata/namespace").to_owned(), name.to_owned()))
}

/// One line per object that is not ready, `Kind namespace/name: reason` (`Kind name:
/// reason` for cluster-scoped objects), in the order given; empty when all are ready.
/// For the message of a wait that timed out.
pub fn explain(verdicts: &[(&Value, Verdict)]) -> String {
    let mut lines = Vec::new();
    for (obj, verdict) in verdicts {
        if verdict.is_ready() {
            continue;
        }
        let kind = str_at(obj, "/kind");
        let name = str_at(obj, "/metadata/name");
        let line = match str_at(obj, "/metadata/namespace") {
            "" => format!("{kind} {name}: {}", verdict.reason()),
            namespace => format!("{kind} {namespace}/{name}: {}", verdict.reason()),
        };
        lines.push(line);
    }
    lines.join("\n")
}

// ---------------------------------------------------------------------------------------
// Reading status.

/// The string at a JSON pointer, empty when absent or not a string.
fn str_at<'a>(obj: &'a Value, pointer: &str) -> &'a str {
    obj.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
}

/// The integer at a JSON pointer, if it is one.
fn int_at(obj: &Value, pointer: &str) -> Option<i64> {
    obj.pointer(pointer).and_then(Value::as_i64)
}

/// `spec.replicas`, default 1.
fn spec_replicas(obj: &Value) -> i64 {
    int_at(obj, "/spec/replicas").unwrap_or(1)
}

/// A condition, from a `conditions` list.
struct Condition<'a> {
    status: &'a str,
    reason: &'a str,
    message: &'a str,
    observed_generation: Option<i64>,
}

impl Condition<'_> {
    fn is(&self, status: &str) -> bool {
        self.status == status
    }

    /// `reason: message`, or whichever is there, or `fallback`.
    fn describe(&self, fallback: &str) -> String {
        match (self.reason, self.message) {
            ("", "") => fallback.to_owned(),
            (reason, "") => reason.to_owned(),
            ("", message) => message.to_owned(),
            (reason, message) => format!("{reason}: {message}"),
        }
    }
}

/// The condition of `type_` in the list at `pointer` (usually `/status/conditions`).
fn condition_in<'a>(list: Option<&'a Value>, type_: &str) -> Option<Condition<'a>> {
    let conditions = list?.as_array()?;
    let found = conditions.iter().find(|c| c.get("type").and_then(Value::as_str) == Some(type_))?;
    Some(Condition {
        status: str_at(found, "/status"),
        reason: str_at(found, "/reason"),
        message: str_at(found, "/message"),
        observed_generation: int_at(found, "/observedGeneration"),
    })
}

fn condition<'a>(obj: &'a Value, type_: &str) -> Option<Condition<'a>> {
    condition_in(obj.pointer("/status/conditions"), type_)
}

fn condition_is(obj: &Value, type_: &str, status: &str) -> bool {
    condition(obj, type_).is_some_and(|c| c.is(status))
}

// ---------------------------------------------------------------------------------------
// The rules.

fn prelude(obj: &Value) -> Option<Verdict> {
    if obj.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null()) {
        return Some(in_progress("terminating"));
    }
    if let (Some(generation), Some(observed)) = (int_at(obj, "/metadata/generation"), int_at(obj, "/status/observedGeneration"))
        && generation != observed
    {
        return Some(in_progress(format!("generation {generation} not yet observed (observed {observed})")));
    }
    if let Some(stalled) = condition(obj, "Stalled").filter(|c| c.is("True")) {
        return Some(failed(stalled.describe("stalled")));
    }
    if let Some(reconciling) = condition(obj, "Reconciling").filter(|c| c.is("True")) {
        return Some(in_progress(reconciling.describe("reconciling")));
    }
    None
}

fn generic(obj: &Value) -> Verdict {
    match condition(obj, "Ready") {
        Some(ready) if ready.is("True") => Verdict::Ready,
        Some(ready) => in_progress(ready.describe(&format!("Ready is {}", or_unknown(ready.status)))),
        None => Verdict::Ready,
    }
}

fn or_unknown(status: &str) -> &str {
    if status.is_empty() { "Unknown" } else { status }
}

fn deployment(obj: &Value) -> Verdict {
    if obj.pointer("/spec/paused").and_then(Value::as_bool) == Some(true) {
        return in_progress("paused (spec.paused)");
    }
    if let Some(progressing) = condition(obj, "Progressing").filter(|c| c.reason == "ProgressDeadlineExceeded") {
        return failed(progressing.describe("ProgressDeadlineExceeded"));
    }
    let spec = spec_replicas(obj);
    let replicas = int_at(obj, "/status/replicas").unwrap_or(0);
    let updated = int_at(obj, "/status/updatedReplicas").unwrap_or(0);
    let available = int_at(obj, "/status/availableReplicas").unwrap_or(0);
    if updated < spec {
        return in_progress(format!("{updated}/{spec} updated"));
    }
    if replicas > updated {
        return in_progress(format!("{} old replicas pending termination", replicas - updated));
    }
    if available < updated {
        return in_progress(format!("{available}/{spec} available"));
    }
    Verdict::Ready
}

fn stateful_set(obj: &Value) -> Verdict {
    if int_at(obj, "/status/observedGeneration").unwrap_or(0) <= 0 {
        return in_progress("not yet observed by the controller");
    }
    let spec = spec_replicas(obj);
    let ready = int_at(obj, "/status/readyReplicas").unwrap_or(0);
    if ready < spec {
        return in_progress(format!("{ready}/{spec} ready"));
    }
    if str_at(obj, "/spec/updateStrategy/type") == "OnDelete" {
        return Verdict::Ready;
    }
    if let Some(partition) = int_at(obj, "/spec/updateStrategy/rollingUpdate/partition").filter(|p| *p > 0) {
        let updated = int_at(obj, "/status/updatedReplicas").unwrap_or(0);
        let want = spec - partition;
        return if updated < want { in_progress(format!("{updated}/{want} updated (partition {partition})")) } else { Verdict::Ready };
    }
    let current = str_at(obj, "/status/currentRevision");
    let update = str_at(obj, "/status/updateRevision");
    if current != update {
        return in_progress(format!("rolling update to revision {update} ({current} still current)"));
    }
    Verdict::Ready
}

fn daemon_set(obj: &Value) -> Verdict {
    if int_at(obj, "/status/observedGeneration").is_none() {
        return in_progress("not yet observed by the controller");
    }
    let Some(desired) = int_at(obj, "/status/desiredNumberScheduled") else {
        return in_progress("desiredNumberScheduled not yet set");
    };
    if str_at(obj, "/spec/updateStrategy/type") != "OnDelete" {
        let updated = int_at(obj, "/status/updatedNumberScheduled").unwrap_or(0);
        if updated < desired {
            return in_progress(format!("{updated}/{desired} updated"));
        }
    }
    for (field, what) in [("numberAvailable", "available"), ("numberReady", "ready")] {
        let n = int_at(obj, &format!("/status/{field}")).unwrap_or(0);
        if n < desired {
            return in_progress(format!("{n}/{desired} {what}"));
        }
    }
    Verdict::Ready
}

fn replica_set(obj: &Value) -> Verdict {
    if let Some(failure) = condition(obj, "ReplicaFailure").filter(|c| c.is("True")) {
        return failed(failure.describe("ReplicaFailure"));
    }
    let spec = spec_replicas(obj);
    for (field, what) in [("availableReplicas", "available"), ("readyReplicas", "ready")] {
        let n = int_at(obj, &format!("/status/{field}")).unwrap_or(0);
        if n < spec {
            return in_progress(format!("{n}/{spec} {what}"));
        }
    }
    let replicas = int_at(obj, "/status/replicas").unwrap_or(0);
    if replicas > spec {
        return in_progress(format!("{} extra pods pending termination", replicas - spec));
    }
    Verdict::Ready
}

/// Whether a waiting reason means the container will not start without a change.
fn is_failing_wait(reason: &str) -> bool {
    matches!(reason, "CrashLoopBackOff" | "ImagePullBackOff" | "InvalidImageName") || reason.starts_with("Err") || reason.ends_with("Error")
}

fn pod(obj: &Value) -> Verdict {
    for list in ["initContainerStatuses", "containerStatuses"] {
        for status in obj.pointer(&format!("/status/{list}")).and_then(Value::as_array).into_iter().flatten() {
            let reason = str_at(status, "/state/waiting/reason");
            if is_failing_wait(reason) {
                let mut line = format!("container {}: {reason}", str_at(status, "/name"));
                let image = str_at(status, "/image");
                if !image.is_empty() {
                    line.push_str(&format!(" (image {image})"));
                }
                let message = str_at(status, "/state/waiting/message");
                if !message.is_empty() {
                    line.push_str(&format!(": {message}"));
                }
                return failed(line);
            }
        }
    }
    let phase = str_at(obj, "/status/phase");
    let always = matches!(str_at(obj, "/spec/restartPolicy"), "" | "Always");
    match phase {
        "Succeeded" => Verdict::Ready,
        "Failed" => {
            let why =
                [str_at(obj, "/status/reason"), str_at(obj, "/status/message")].into_iter().filter(|s| !s.is_empty()).collect::<Vec<_>>();
            failed(if why.is_empty() { "phase Failed".to_owned() } else { format!("phase Failed: {}", why.join(": ")) })
        }
        "Running" if always => match condition(obj, "Ready") {
            Some(ready) if ready.is("True") => Verdict::Ready,
            Some(ready) => in_progress(ready.describe("not ready")),
            None => in_progress("not ready"),
        },
        "Running" => in_progress("running (restartPolicy is not Always: ready when it succeeds)"),
        _ => match condition(obj, "PodScheduled").filter(|c| c.is("False")) {
            Some(scheduled) => in_progress(scheduled.describe("not scheduled")),
            None if phase.is_empty() => in_progress("no phase yet"),
            None => in_progress(format!("phase {phase}")),
        },
    }
}

fn job(obj: &Value) -> Verdict {
    if let Some(failure) = condition(obj, "Failed").filter(|c| c.is("True")) {
        return failed(failure.describe("Failed"));
    }
    if condition_is(obj, "Complete", "True") {
        return Verdict::Ready;
    }
    if obj.pointer("/spec/suspend").and_then(Value::as_bool) == Some(true) {
        return in_progress("suspended (spec.suspend)");
    }
    let active = int_at(obj, "/status/active").unwrap_or(0);
    let succeeded = int_at(obj, "/status/succeeded").unwrap_or(0);
    let failures = int_at(obj, "/status/failed").unwrap_or(0);
    in_progress(format!("running: {active} active, {succeeded} succeeded, {failures} failed"))
}

fn service(obj: &Value) -> Verdict {
    if str_at(obj, "/spec/type") != "LoadBalancer" {
        return Verdict::Ready;
    }
    let has_ingress = obj.pointer("/status/loadBalancer/ingress").and_then(Value::as_array).is_some_and(|i| !i.is_empty());
    if has_ingress { Verdict::Ready } else { in_progress("waiting for a load-balancer address (status.loadBalancer.ingress)") }
}

/// The annotation the scheduler sets on a PVC once a pod using it is placed.
const SELECTED_NODE_ANNOTATION: &str = "volume.kubernetes.io/selected-node";
/// The annotation that marks the default StorageClass.
const DEFAULT_CLASS_ANNOTATION: &str = "storageclass.kubernetes.io/is-default-class";

fn pvc(obj: &Value, storage_classes: &[Value]) -> Verdict {
    match str_at(obj, "/status/phase") {
        "Bound" => Verdict::Ready,
        "Lost" => failed("phase Lost: the bound volume is gone"),
        "Pending" => {
            let class_name = str_at(obj, "/spec/storageClassName");
            let class = if class_name.is_empty() {
                storage_classes
                    .iter()
                    .find(|c| str_at(c, &format!("/metadata/annotations/{}", DEFAULT_CLASS_ANNOTATION.replace('/', "~1"))) == "true")
            } else {
                storage_classes.iter().find(|c| str_at(c, "/metadata/name") == class_name)
            };
            let wffc = class.is_some_and(|c| str_at(c, "/volumeBindingMode") == "WaitForFirstConsumer");
            let selected = obj.pointer("/metadata/annotations").and_then(|a| a.get(SELECTED_NODE_ANNOTATION)).is_some_and(|n| !n.is_null());
            if wffc && !selected {
                Verdict::Ready
            } else if selected {
                in_progress("Pending: provisioning for the selected node")
            } else {
                in_progress("Pending")
            }
        }
        "" => in_progress("no phase yet"),
        other => in_progress(format!("phase {other}")),
    }
}

fn crd(obj: &Value) -> Verdict {
    if let Some(names) = condition(obj, "NamesAccepted").filter(|c| c.is("False")) {
        return failed(names.describe("NamesAccepted is False"));
    }
    if let Some(schema) = condition(obj, "NonStructuralSchema").filter(|c| c.is("True")) {
        return failed(schema.describe("NonStructuralSchema"));
    }
    match condition(obj, "Established") {
        Some(established) if established.is("True") => Verdict::Ready,
        Some(established) if established.is("False") && established.reason != "Installing" => {
            failed(established.describe("Established is False"))
        }
        Some(established) => in_progress(established.describe("not yet established")),
        None => in_progress("not yet established"),
    }
}

fn api_service(obj: &Value) -> Verdict {
    match condition(obj, "Available") {
        Some(available) if available.is("True") => Verdict::Ready,
        Some(available) => in_progress(available.describe("not available")),
        None => in_progress("not available"),
    }
}

fn namespace(obj: &Value) -> Verdict {
    if str_at(obj, "/status/phase") == "Terminating" { in_progress("terminating") } else { Verdict::Ready }
}

fn cert_manager(obj: &Value) -> Verdict {
    if let Some(issuing) = condition(obj, "Issuing").filter(|c| c.is("True")) {
        return in_progress(issuing.describe("issuing"));
    }
    match condition(obj, "Ready") {
        Some(ready) if ready.is("True") => Verdict::Ready,
        Some(ready) => in_progress(ready.describe("not ready")),
        None => in_progress("no Ready condition yet"),
    }
}

fn external_secrets(obj: &Value) -> Verdict {
    match condition(obj, "Ready") {
        Some(ready) if ready.is("True") => Verdict::Ready,
        Some(ready) if ready.is("False") => failed(ready.describe("Ready is False")),
        Some(ready) => in_progress(ready.describe("not ready")),
        None => in_progress("no Ready condition yet"),
    }
}

/// Whether a condition describes an older generation than the object's.
fn stale(c: &Condition<'_>, generation: Option<i64>) -> bool {
    matches!((c.observed_generation, generation), (Some(observed), Some(generation)) if observed < generation)
}

fn gateway(obj: &Value) -> Verdict {
    let generation = int_at(obj, "/metadata/generation");
    let conditions = obj.pointer("/status/conditions");
    let mut scopes = vec![("gateway".to_owned(), conditions, true)];
    for listener in obj.pointer("/status/listeners").and_then(Value::as_array).into_iter().flatten() {
        scopes.push((format!("listener {}", str_at(listener, "/name")), listener.get("conditions"), false));
    }
    for (scope, list, _) in &scopes {
        for type_ in ["Accepted", "ResolvedRefs"] {
            if let Some(c) = condition_in(*list, type_).filter(|c| c.is("False") && !stale(c, generation)) {
                return failed(format!("{scope}: {}", c.describe(&format!("{type_} is False"))));
            }
        }
    }
    for (scope, list, top) in &scopes {
        let wanted: &[&str] = if *top { &["Accepted", "Programmed"] } else { &["Programmed"] };
        for type_ in wanted {
            match condition_in(*list, type_) {
                Some(c) if c.is("True") && !stale(&c, generation) => {}
                Some(c) if stale(&c, generation) => return in_progress(format!("{scope}: {type_} not yet observed for generation")),
                Some(c) => return in_progress(format!("{scope}: {}", c.describe(&format!("{type_} is {}", or_unknown(c.status))))),
                None => return in_progress(format!("{scope}: not yet {}", type_.to_lowercase())),
            }
        }
    }
    Verdict::Ready
}

fn route(obj: &Value) -> Verdict {
    let generation = int_at(obj, "/metadata/generation");
    let parents = obj.pointer("/status/parents").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    if parents.is_empty() {
        return in_progress("no parent has taken the route yet (status.parents is empty)");
    }
    let mut waiting = None;
    for parent in parents {
        let name = match str_at(parent, "/parentRef/namespace") {
            "" => str_at(parent, "/parentRef/name").to_owned(),
            namespace => format!("{namespace}/{}", str_at(parent, "/parentRef/name")),
        };
        let list = parent.get("conditions");
        for type_ in ["Accepted", "ResolvedRefs"] {
            match condition_in(list, type_) {
                Some(c) if stale(&c, generation) => {
                    waiting.get_or_insert_with(|| format!("parent {name}: generation not yet observed"));
                }
                Some(c) if c.is("False") => return failed(format!("parent {name}: {}", c.describe(&format!("{type_} is False")))),
                Some(c) if c.is("True") => {}
                Some(c) => {
                    waiting
                        .get_or_insert_with(|| format!("parent {name}: {}", c.describe(&format!("{type_} is {}", or_unknown(c.status)))));
                }
                None => {
                    waiting.get_or_insert_with(|| format!("parent {name}: no {type_} condition yet"));
                }
            }
        }
    }
    waiting.map_or(Verdict::Ready, in_progress)
}

fn application(obj: &Value) -> Verdict {
    let health = str_at(obj, "/status/health/status");
    let sync = str_at(obj, "/status/sync/status");
    let phase = str_at(obj, "/status/operationState/phase");
    if matches!(phase, "Failed" | "Error") {
        let message = str_at(obj, "/status/operationState/message");
        return failed(if message.is_empty() { format!("sync operation {phase}") } else { format!("sync operation {phase}: {message}") });
    }
    if health == "Degraded" {
        let message = str_at(obj, "/status/health/message");
        return failed(if message.is_empty() { "health Degraded".to_owned() } else { format!("health Degraded: {message}") });
    }
    if health == "Healthy" && sync == "Synced" && phase != "Running" {
        return Verdict::Ready;
    }
    let mut reason = format!("health {}, sync {}", or_unknown(health), or_unknown(sync));
    if phase == "Running" {
        reason.push_str(", a sync operation is running");
    }
    in_progress(reason)
}

fn helm_chart(obj: &Value, jobs: &[Value]) -> Verdict {
    if let Some(failure) = condition(obj, "Failed").filter(|c| c.is("True")) {
        return failed(failure.describe("install failed"));
    }
    let Some((namespace, name)) = helm_chart_job(obj) else {
        return in_progress("waiting for the helm-controller to start the install job (status.jobName)");
    };
    let found = jobs
        .iter()
        .find(|j| str_at(j, "/kind") == "Job" && str_at(j, "/metadata/name") == name && str_at(j, "/metadata/namespace") == namespace);
    match found.map(verdict) {
        None => in_progress(format!("install job {namespace}/{name} not seen yet")),
        Some(Verdict::Ready) => Verdict::Ready,
        Some(Verdict::InProgress { reason }) => in_progress(format!("install job {namespace}/{name}: {reason}")),
        Some(Verdict::Failed { reason }) => failed(format!("install job {namespace}/{name}: {reason}")),
    }
}

#[cfg(test)]
mod tests;
