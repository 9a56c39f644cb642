//! Kubernetes objects as dynamic values, before they meet a cluster: loading
//! multi-document YAML into objects (with `List`s expanded and every defect of a file
//! reported at once), finding duplicates, normalising what strict API servers refuse
//! or own, and the apply order: one sort key `(stage, wave, kind order, namespace,
//! name)`.
//!
//! Pure: the text comes in, `serde_json::Value`s come out. The apply engine in
//! `idp-kube` reads files and talks to the API server; everything it can decide without
//! a cluster lives here.

use crate::render::{COMPONENT_LABEL, Item, LAB_LABEL, Rendered};
use crate::yaml;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt;

/// Where an object came from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Place {
    /// The input, by the name shown to the user: a file, `-` for stdin, or a component.
    pub source: String,
    /// 1-based index of the document among the stream's non-empty documents (the YAML
    /// parser drops empty ones, so a document holding only comments is not counted).
    pub document: usize,
    /// 1-based index in the document's `items` when the document is a `List`.
    pub item: Option<usize>,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: document {}", self.source, self.document)?;
        if let Some(item) = self.item {
            write!(f, ", item {item}")?;
        }
        Ok(())
    }
}

/// A loaded object: the value, and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    /// The object, a JSON mapping with `apiVersion`, `kind` and `metadata.name` strings.
    pub value: Value,
    /// Where it was read.
    pub place: Place,
    /// The catalogue's wave, for a rendered object; `None` for other input, whose wave
    /// is its `argocd.argoproj.io/sync-wave` annotation.
    pub wave: Option<i32>,
}

impl Object {
    /// The objects of a render, each with its component's wave; the source is
    /// `component NAME` and the document index counts the component's objects.
    pub fn from_rendered(rendered: &Rendered) -> Vec<Object> {
        let mut out = Vec::new();
        for component in &rendered.components {
            let objects = component.items.iter().filter_map(|item| match item {
                Item::Object(value) => Some(value),
                Item::Reference { .. } => None,
            });
            for (i, value) in objects.enumerate() {
                let place = Place { source: format!("component {}", component.name), document: i + 1, item: None };
                out.push(Object { value: value.clone(), place, wave: Some(component.wave) });
            }
        }
        out
    }

    /// The `apiVersion`.
    pub fn api_version(&self) -> &str {
        str_at(&self.value, &["apiVersion"]).unwrap_or_default()
    }

    /// The `kind`.
    pub fn kind(&self) -> &str {
        str_at(&self.value, &["kind"]).unwrap_or_default()
    }

    /// `metadata.name`.
    pub fn name(&self) -> &str {
        str_at(&self.value, &["metadata", "name"]).unwrap_or_default()
    }

    /// `metadata.namespace`, empty when not set.
    pub fn namespace(&self) -> &str {
        str_at(&self.value, &["metadata", "namespace"]).unwrap_or_default()
    }

    /// What identifies the object in a cluster: (API group, kind, namespace, name). The
    /// version is left out: `apps/v1` and `apps/v1beta2` name the same object.
    pub fn identity(&self) -> Identity {
        Identity {
            group: api_group(self.api_version()).to_owned(),
            kind: self.kind().to_owned(),
            namespace: self.namespace().to_owned(),
            name: self.name().to_owned(),
        }
    }
}

/// What identifies an object in a cluster.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Identity {
    /// The API group, empty for the core group.
    pub group: String,
    /// The kind.
    pub kind: String,
    /// The namespace, empty when the object names none.
    pub namespace: String,
    /// The name.
    pub name: String,
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.kind)?;
        if !self.group.is_empty() {
            write!(f, ".{}", self.group)?;
        }
        f.write_str(" ")?;
        if !self.namespace.is_empty() {
            write!(f, "{}/", self.namespace)?;
        }
        f.write_str(&self.name)
    }
}

/// The API group of an `apiVersion`: `apps` for `apps/v1`, empty for `v1`.
pub fn api_group(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(group, _)| group)
}

/// One defect of one document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// The document (or a `List` item) is not a mapping.
    #[error("{place}: not a mapping but {found}")]
    NotAMapping {
        /// Where.
        place: Place,
        /// What it is instead, e.g. `a sequence`.
        found: &'static str,
    },
    /// Required fields are missing, empty or not strings.
    #[error("{place}: missing {}", fields.join(", "))]
    Missing {
        /// Where.
        place: Place,
        /// The fields, in the order `apiVersion`, `kind`, `metadata.name`.
        fields: Vec<&'static str>,
    },
    /// A field that must be a string (or a mapping) is something else.
    #[error("{place}: {field} must be {expected}, found {found}")]
    WrongType {
        /// Where.
        place: Place,
        /// The field, e.g. `metadata.namespace`.
        field: &'static str,
        /// What it must be.
        expected: &'static str,
        /// What it is.
        found: &'static str,
    },
}

/// Why a set of inputs did not load.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    /// A source is not valid YAML; the message has the line and column.
    #[error("{input}: {message}")]
    Syntax {
        /// The source, by name.
        input: String,
        /// The parser's message.
        message: String,
    },
    /// Documents are not objects; every problem found, in input order.
    #[error("{}", lines(problems))]
    Documents {
        /// The problems.
        problems: Vec<Problem>,
    },
    /// Objects are given twice.
    #[error("{}", lines(duplicates))]
    Duplicates {
        /// Each object given more than once, with both places.
        duplicates: Vec<Duplicate>,
    },
    /// Several sources failed; every error, in input order.
    #[error("{}", lines(errors))]
    Several {
        /// The errors (none of them `Several`).
        errors: Vec<LoadError>,
    },
}

impl LoadError {
    /// Every error, flattened: [`LoadError::Several`] is opened.
    pub fn errors(&self) -> Vec<&LoadError> {
        match self {
            LoadError::Several { errors } => errors.iter().collect(),
            other => vec![other],
        }
    }
}

fn lines<T: fmt::Display>(items: &[T]) -> String {
    items.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
}

/// An object given twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Duplicate {
    /// The object.
    pub identity: Identity,
    /// Where it was given first.
    pub first: Place,
    /// Where it was given again.
    pub again: Place,
}

impl fmt::Display for Duplicate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} is given twice, first at {}", self.again, self.identity, self.first)
    }
}

/// Loads a multi-document YAML stream from `source` (the name used in messages).
/// Empty documents are skipped; a `List` (`kind: List`, or a `*List` kind with an
/// `items` sequence) becomes its items. Every defect of the stream is reported, not
/// only the first.
pub fn load(text: &str, source: &str) -> Result<Vec<Object>, LoadError> {
    let documents = yaml::parse_documents(text).map_err(|message| LoadError::Syntax { input: source.to_owned(), message })?;
    let mut objects = Vec::new();
    let mut problems = Vec::new();
    for (i, document) in documents.into_iter().enumerate() {
        let place = Place { source: source.to_owned(), document: i + 1, item: None };
        expand(document, place, &mut objects, &mut problems);
    }
    if problems.is_empty() { Ok(objects) } else { Err(LoadError::Documents { problems }) }
}

/// Loads several sources, given as (name, text), and checks the whole set for
/// duplicates. Every source is loaded, whatever the others do, and every error is
/// reported: one error as itself, several as [`LoadError::Several`]. Duplicates are
/// only looked for when every source loaded.
pub fn load_all<'a>(sources: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Vec<Object>, LoadError> {
    let mut objects = Vec::new();
    let mut errors = Vec::new();
    for (source, text) in sources {
        match load(text, source) {
            Ok(loaded) => objects.extend(loaded),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        let duplicates = duplicates(&objects);
        if !duplicates.is_empty() {
            errors.push(LoadError::Duplicates { duplicates });
        }
    }
    match errors.len() {
        0 => Ok(objects),
        1 => Err(errors.remove(0)),
        _ => Err(LoadError::Several { errors }),
    }
}

/// Objects with the same (API group, kind, namespace, name) as an earlier one, in input
/// order, each with the place of its first occurrence.
pub fn duplicates(objects: &[Object]) -> Vec<Duplicate> {
    let mut seen: BTreeMap<Identity, &Place> = BTreeMap::new();
    let mut out = Vec::new();
    for object in objects {
        let identity = object.identity();
        match seen.get(&identity) {
            Some(first) => out.push(Duplicate { identity, first: (*first).clone(), again: object.place.clone() }),
            None => {
                seen.insert(identity, &object.place);
            }
        }
    }
    out
}

/// Adds the document's object(s) or its problems.
fn expand(document: Value, place: Place, objects: &mut Vec<Object>, problems: &mut Vec<Problem>) {
    let Value::Object(map) = document else {
        problems.push(Problem::NotAMapping { place, found: type_name(&document) });
        return;
    };
    let kind = map.get("kind").and_then(Value::as_str).unwrap_or_default().to_owned();
    let items = map.get("items");
    let is_list = kind == "List" || (kind.ends_with("List") && items.is_some_and(Value::is_array));
    if !is_list {
        check(Value::Object(map), place, objects, problems);
        return;
    }
    let items = match items {
        Some(Value::Array(items)) => items.clone(),
        None | Some(Value::Null) => Vec::new(),
        Some(other) => {
            problems.push(Problem::WrongType { place, field: "items", expected: "a sequence", found: type_name(other) });
            return;
        }
    };
    // A typed list (`ConfigMapList`) may leave its items' apiVersion and kind out.
    let item_kind = kind.strip_suffix("List").filter(|k| !k.is_empty()).map(str::to_owned);
    let api_version = map.get("apiVersion").cloned();
    for (j, mut item) in items.into_iter().enumerate() {
        let place = Place { item: Some(j + 1), ..place.clone() };
        if let (Value::Object(item), Some(item_kind)) = (&mut item, &item_kind) {
            item.entry("kind").or_insert_with(|| Value::String(item_kind.clone()));
            if let Some(api_version) = &api_version {
                item.entry("apiVersion").or_insert_with(|| api_version.clone());
            }
        }
        match item {
            Value::Object(_) => check(item, place, objects, problems),
            other => problems.push(Problem::NotAMapping { place, found: type_name(&other) }),
        }
    }
}

/// Checks one mapping for what every object needs.
fn check(value: Value, place: Place, objects: &mut Vec<Object>, problems: &mut Vec<Problem>) {
    let before = problems.len();
    let mut missing = Vec::new();
    for (path, field) in [(&["apiVersion"][..], "apiVersion"), (&["kind"][..], "kind"), (&["metadata", "name"][..], "metadata.name")] {
        if str_at(&value, path).is_none_or(str::is_empty) {
            missing.push(field);
        }
    }
    if !missing.is_empty() {
        problems.push(Problem::Missing { place: place.clone(), fields: missing });
    }
    let typed = [("metadata", "a mapping", Value::is_object as fn(&Value) -> bool), ("metadata.namespace", "a string", Value::is_string)];
    for (field, expected, ok) in typed {
        let found = match field.split_once('.') {
            Some((a, b)) => value.get(a).and_then(|m| m.get(b)),
            None => value.get(field),
        };
        if let Some(found) = found.filter(|v| !v.is_null() && !ok(v)) {
            problems.push(Problem::WrongType { place: place.clone(), field, expected, found: type_name(found) });
        }
    }
    if problems.len() == before {
        objects.push(Object { value, place, wave: None });
    }
}

/// The label every object idp-lab applies carries, with the value [`MANAGED_BY`].
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// The value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "idp-lab";
/// The annotation `kubectl apply` (client-side) leaves behind.
pub const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Metadata fields the server owns; a desired object must not carry them.
pub const SERVER_OWNED_METADATA: [&str; 8] = [
    "resourceVersion",
    "uid",
    "creationTimestamp",
    "generation",
    "managedFields",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

/// Normalises a desired object for a strict server, in place:
/// - `protocol: TCP` on every Service port, and on every container and init container
///   port of a Pod or pod template (Deployment, StatefulSet, DaemonSet, ReplicaSet,
///   ReplicationController, PodTemplate, Job, CronJob), where it is missing or null;
///   a protocol that is set is kept. Kinds of other API groups are left alone.
/// - a Secret's `stringData` merged into `data` (base64; `stringData` wins, as on the
///   server) and removed. A value that is not a string stays in `stringData`, for the
///   server to refuse with its own message.
/// - `status`, the [`SERVER_OWNED_METADATA`] and the [`LAST_APPLIED_ANNOTATION`]
///   removed (and `annotations` with it when nothing else is left).
pub fn normalize(value: &mut Value) {
    strip_server_owned(value);
    let group = api_group(str_at(value, &["apiVersion"]).unwrap_or_default()).to_owned();
    let kind = str_at(value, &["kind"]).unwrap_or_default().to_owned();
    let pod_spec = match (group.as_str(), kind.as_str()) {
        ("", "Service") => {
            if let Some(Value::Array(ports)) = value.pointer_mut("/spec/ports") {
                default_protocol(ports);
            }
            None
        }
        ("", "Secret") => {
            merge_string_data(value);
            None
        }
        ("", "Pod") => Some("/spec"),
        ("", "PodTemplate") => Some("/template/spec"),
        ("", "ReplicationController")
        | ("apps" | "extensions", "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet")
        | ("batch", "Job") => Some("/spec/template/spec"),
        ("batch", "CronJob") => Some("/spec/jobTemplate/spec/template/spec"),
        _ => None,
    };
    if let Some(spec) = pod_spec.and_then(|p| value.pointer_mut(p)) {
        for list in ["containers", "initContainers"] {
            for container in spec.get_mut(list).and_then(Value::as_array_mut).into_iter().flatten() {
                if let Some(Value::Array(ports)) = container.get_mut("ports") {
                    default_protocol(ports);
                }
            }
        }
    }
}

/// Sets `protocol: TCP` on each port mapping that has none (or null).
fn default_protocol(ports: &mut [Value]) {
    for port in ports.iter_mut().filter_map(Value::as_object_mut) {
        if port.get("protocol").is_none_or(Value::is_null) {
            port.insert("protocol".into(), Value::String("TCP".into()));
        }
    }
}

fn strip_server_owned(value: &mut Value) {
    let Some(object) = value.as_object_mut() else { return };
    object.remove("status");
    let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) else { return };
    for field in SERVER_OWNED_METADATA {
        metadata.remove(field);
    }
    if let Some(annotations) = metadata.get_mut("annotations").and_then(Value::as_object_mut)
        && annotations.remove(LAST_APPLIED_ANNOTATION).is_some()
        && annotations.is_empty()
    {
        metadata.remove("annotations");
    }
}

/// Moves a Secret's string `stringData` entries into `data`, base64-encoded. A Secret
/// whose `data` or `stringData` is not a mapping is left for the server to refuse.
fn merge_string_data(secret: &mut Value) {
    let Some(object) = secret.as_object_mut() else { return };
    if object.get("data").is_some_and(|d| !d.is_null() && !d.is_object()) {
        return;
    }
    let (encoded, now_empty) = match object.get_mut("stringData") {
        Some(Value::Object(entries)) => {
            let keys: Vec<String> = entries.iter().filter(|(_, v)| v.is_string()).map(|(k, _)| k.clone()).collect();
            let mut encoded = Map::new();
            for key in keys {
                if let Some(Value::String(text)) = entries.remove(&key) {
                    encoded.insert(key, Value::String(base64(text.as_bytes())));
                }
            }
            (encoded, entries.is_empty())
        }
        Some(Value::Null) => (Map::new(), true),
        _ => return,
    };
    if now_empty {
        object.remove("stringData");
    }
    if encoded.is_empty() {
        return;
    }
    let data = object.entry("data").or_insert(Value::Null);
    if data.is_null() {
        *data = Value::Object(Map::new());
    }
    if let Some(data) = data.as_object_mut() {
        data.extend(encoded);
    }
}

/// Standard base64 (RFC 4648 §4, with padding), as Kubernetes expects in Secret `data`.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Adds idp-lab's ownership labels: [`MANAGED_BY_LABEL`]`: idp-lab`, [`LAB_LABEL`] and
/// [`COMPONENT_LABEL`]. Other labels are kept; a `metadata` or `labels` that is missing
/// (or null) is created.
pub fn own(value: &mut Value, lab: &str, component: &str) {
    let Some(object) = value.as_object_mut() else { return };
    let metadata = object.entry("metadata").or_insert_with(|| Value::Object(Map::new()));
    if metadata.is_null() {
        *metadata = Value::Object(Map::new());
    }
    let Some(metadata) = metadata.as_object_mut() else { return };
    let labels = metadata.entry("labels").or_insert_with(|| Value::Object(Map::new()));
    if labels.is_null() {
        *labels = Value::Object(Map::new());
    }
    if let Some(labels) = labels.as_object_mut() {
        labels.insert(MANAGED_BY_LABEL.into(), Value::String(MANAGED_BY.into()));
        labels.insert(LAB_LABEL.into(), Value::String(lab.into()));
        labels.insert(COMPONENT_LABEL.into(), Value::String(component.into()));
    }
}

/// The annotation that gives an object outside the catalogue its wave.
pub const SYNC_WAVE_ANNOTATION: &str = "argocd.argoproj.io/sync-wave";

/// The kind order within a stage and wave: Helm's install order as Argo CD uses it
/// (`gitops-engine/pkg/sync/sync_tasks.go`). Kinds not listed sort after these, by name.
pub const KIND_ORDER: [&str; 30] = [
    "Namespace",
    "NetworkPolicy",
    "ResourceQuota",
    "LimitRange",
    "PodSecurityPolicy",
    "PodDisruptionBudget",
    "ServiceAccount",
    "Secret",
    "ConfigMap",
    "StorageClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
    "Service",
    "DaemonSet",
    "Pod",
    "ReplicationController",
    "ReplicaSet",
    "Deployment",
    "HorizontalPodAutoscaler",
    "StatefulSet",
    "Job",
    "CronJob",
    "IngressClass",
    "Ingress",
    "APIService",
];

/// The kinds of stage 0, applied (and waited on) before anything else.
pub const CLUSTER_DEFINITIONS: [&str; 4] = ["CustomResourceDefinition", "Namespace", "ClusterRole", "ClusterRoleBinding"];

/// The stage of a kind, as Flux stages an apply: 0 for the [`CLUSTER_DEFINITIONS`],
/// 1 for kinds whose name ends in `Class` (PriorityClass, StorageClass, GatewayClass,
/// IngressClass, ...), 2 for everything else.
pub fn stage_of(kind: &str) -> u8 {
    if CLUSTER_DEFINITIONS.contains(&kind) {
        0
    } else if kind.ends_with("Class") {
        1
    } else {
        2
    }
}

/// Whether the kind must be `Established` before objects that follow it are applied
/// (a CustomResourceDefinition: its kinds resolve only then).
pub fn needs_established(kind: &str) -> bool {
    kind == "CustomResourceDefinition"
}

/// A kind's place in [`KIND_ORDER`]; unknown kinds get `KIND_ORDER.len()`.
pub fn kind_rank(kind: &str) -> usize {
    KIND_ORDER.iter().position(|k| *k == kind).unwrap_or(KIND_ORDER.len())
}

/// The apply order of one object: compare keys to order objects. Field order is the
/// comparison order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SortKey {
    /// [`stage_of`] the kind.
    pub stage: u8,
    /// The catalogue's wave, else the sync-wave annotation, else 0.
    pub wave: i32,
    /// [`kind_rank`] of the kind.
    pub kind_rank: usize,
    /// The kind, which orders the unknown kinds among themselves.
    pub kind: String,
    /// The namespace, empty for none (these come first).
    pub namespace: String,
    /// The name.
    pub name: String,
}

/// A sync-wave annotation that is not a wave.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WaveError {
    /// The value is a string but not an integer (an `i32`, optionally signed, no spaces).
    #[error("annotation {SYNC_WAVE_ANNOTATION}: expected an integer such as \"-1\" or \"5\", found {found:?}")]
    NotAnInteger {
        /// The value.
        found: String,
    },
    /// The value is not a string (annotations are strings: quote the number).
    #[error("annotation {SYNC_WAVE_ANNOTATION}: expected a string holding an integer, found {found} (quote it)")]
    NotAString {
        /// The value as JSON.
        found: String,
    },
}

/// Objects that cannot be ordered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    /// Sync-wave annotations that are not waves: every one, with its object's place.
    #[error("{}", lines(&waves.iter().map(|(place, e)| format!("{place}: {e}")).collect::<Vec<_>>()))]
    Waves {
        /// Each object's place and what is wrong with its annotation.
        waves: Vec<(Place, WaveError)>,
    },
}

/// The wave of an object: `catalogue_wave` when given (the annotation is then not
/// read), else the [`SYNC_WAVE_ANNOTATION`], else 0.
pub fn wave_of(value: &Value, catalogue_wave: Option<i32>) -> Result<i32, WaveError> {
    if let Some(wave) = catalogue_wave {
        return Ok(wave);
    }
    match value.pointer("/metadata/annotations").and_then(|a| a.get(SYNC_WAVE_ANNOTATION)) {
        None | Some(Value::Null) => Ok(0),
        Some(Value::String(text)) => text.parse().map_err(|_| WaveError::NotAnInteger { found: text.clone() }),
        Some(other) => Err(WaveError::NotAString { found: other.to_string() }),
    }
}

/// The sort key of an object; see [`SortKey`] and [`wave_of`].
pub fn sort_key(value: &Value, catalogue_wave: Option<i32>) -> Result<SortKey, WaveError> {
    let kind = str_at(value, &["kind"]).unwrap_or_default();
    Ok(SortKey {
        stage: stage_of(kind),
        wave: wave_of(value, catalogue_wave)?,
        kind_rank: kind_rank(kind),
        kind: kind.to_owned(),
        namespace: str_at(value, &["metadata", "namespace"]).unwrap_or_default().to_owned(),
        name: str_at(value, &["metadata", "name"]).unwrap_or_default().to_owned(),
    })
}

/// Sorts objects into apply order, stably (equal keys keep their input order). Every
/// bad sync-wave annotation is reported, and then nothing is reordered.
pub fn order(objects: &mut Vec<Object>) -> Result<(), OrderError> {
    let mut keys = Vec::with_capacity(objects.len());
    let mut waves = Vec::new();
    for object in objects.iter() {
        match sort_key(&object.value, object.wave) {
            Ok(key) => keys.push(key),
            Err(e) => waves.push((object.place.clone(), e)),
        }
    }
    if !waves.is_empty() {
        return Err(OrderError::Waves { waves });
    }
    let mut keyed: Vec<(SortKey, Object)> = keys.into_iter().zip(objects.drain(..)).collect();
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    objects.extend(keyed.into_iter().map(|(_, o)| o));
    Ok(())
}

/// The string at `path`, if there is one.
fn str_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(value, |v, key| v.get(key))?.as_str()
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a sequence",
        Value::Object(_) => "a mapping",
    }
}

#[cfg(test)]
mod tests;
