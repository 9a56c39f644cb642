//! Drift: how a live object differs from what idp-lab would make of it, by Flux's rule
//! (the reference's §2.1), and a readable unified diff of the two.
//!
//! **What is compared, and why.** The desired side is the result of a server-side-apply
//! dry-run of idp-lab's object (field manager `idp-lab`, force), not the manifest. The
//! API server has already defaulted it, run the mutating webhooks, and merged in every
//! field other managers own, so everything idp-lab does not set is identical on both
//! sides and needs no rule here: server defaults (§7a.4), values injected after
//! admission such as a `caBundle` (§7a.6), fields a human added with `kubectl edit`, a
//! foreign label. What differs is what idp-lab sets and someone changed: exactly what a
//! re-apply restores. So, as Flux's `hasDrifted` does:
//!
//! 1. **Labels and annotations**, key by key: the keys of the desired object's
//!    `metadata.labels` and `metadata.annotations`, plus the `owned_labels` the caller
//!    names (the labels idp-lab applies, so a removed ownership label is drift even when
//!    the desired side was not a dry-run). A key only live has is someone else's: SSA
//!    leaves it alone, so it is not drift. Tool-written annotations and labels of §7a.3
//!    ([`IGNORED_ANNOTATIONS`], [`IGNORED_LABELS`]) are never compared.
//! 2. **Everything but `metadata` and `status`**, field by field, after the
//!    normalisation of [`normalized`]: `null`, `[]` and `{}` are the same as absent
//!    (Role `rules: []` against none, §7a.5), numbers compare by value, and a
//!    HorizontalPodAutoscaler's `spec.metrics` loses duplicates and an empty trailing
//!    metric (the dry-run bug before Kubernetes 1.27 that Flux's normaliser works
//!    around).
//!
//! Not here, because the dry-run makes them moot or they are the caller's: quantity
//! canonicalisation (the server canonicalises both sides), whole kinds never diffed
//! (§7a.7: Events, Endpoints, Leases, ...), and controller-owned fields idp-lab should
//! simply not set (`spec.replicas` under an HPA, §7a.6).

use crate::objects::{LAST_APPLIED_ANNOTATION, SERVER_OWNED_METADATA, api_group};
use crate::yaml::to_yaml;
use serde_json::{Map, Value};
use std::collections::BTreeSet;
use std::fmt;

/// Annotations written by tools and controllers (§7a.3), never compared. An entry
/// ending in `/` is a prefix.
pub const IGNORED_ANNOTATIONS: [&str; 16] = [
    LAST_APPLIED_ANNOTATION,
    "deployment.kubernetes.io/revision",
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
    "pv.kubernetes.io/bind-completed",
    "pv.kubernetes.io/bound-by-controller",
    "volume.kubernetes.io/storage-provisioner",
    "volume.beta.kubernetes.io/storage-provisioner",
    "volume.kubernetes.io/selected-node",
    "autoscaling.alpha.kubernetes.io/",
    "control-plane.alpha.kubernetes.io/leader",
    "cluster-autoscaler.kubernetes.io/last-updated",
    "meta.helm.sh/",
    "argocd.argoproj.io/tracking-id",
    "notified.notifications.argoproj.io",
    "kustomize.toolkit.fluxcd.io/",
];

/// Labels written by the server and other tools (§7a.3), never compared. An entry
/// ending in `/` is a prefix.
pub const IGNORED_LABELS: [&str; 2] = ["kubernetes.io/metadata.name", "kustomize.toolkit.fluxcd.io/"];

fn ignored(list: &[&str], key: &str) -> bool {
    list.iter().any(|entry| if entry.ends_with('/') { key.starts_with(entry) } else { key == *entry })
}

/// One field that differs.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldDiff {
    /// Where: keys joined with `.`, and `["key"]` for keys that are not plain words, list
    /// indexes in brackets: `spec.replicas`, `metadata.labels["idp-lab.dev/lab"]`,
    /// `spec.template.spec.containers[0].image`, `data["app.properties"]`. Empty for
    /// the whole object (it does not exist live).
    pub path: String,
    /// The value idp-lab would set; `None` when the desired side does not have the field.
    pub desired: Option<Value>,
    /// The live value; `None` when the live object does not have the field.
    pub live: Option<Value>,
}

impl fmt::Display for FieldDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |v: &Option<Value>| v.as_ref().map_or_else(|| "(absent)".to_owned(), Value::to_string);
        let path = if self.path.is_empty() { "(object)" } else { &self.path };
        write!(f, "{path}: live {}, desired {}", show(&self.live), show(&self.desired))
    }
}

/// The fields where `live` differs from `desired_dry_run` by Flux's rule (module docs):
/// first the labels, then the annotations, then everything but `metadata` and `status`,
/// each group in path order. Empty when there is no drift. A `live` that is not an
/// object (null: it does not exist) is one difference with an empty path.
pub fn drift(desired_dry_run: &Value, live: &Value, owned_labels: &[&str]) -> Vec<FieldDiff> {
    if !live.is_object() {
        return vec![FieldDiff { path: String::new(), desired: Some(desired_dry_run.clone()), live: None }];
    }
    let mut out = Vec::new();
    for (field, ignore, extra) in [("labels", &IGNORED_LABELS[..], owned_labels), ("annotations", &IGNORED_ANNOTATIONS[..], &[][..])] {
        let desired = desired_dry_run.pointer(&format!("/metadata/{field}")).and_then(Value::as_object);
        let current = live.pointer(&format!("/metadata/{field}")).and_then(Value::as_object);
        let mut keys: BTreeSet<&str> = desired.into_iter().flat_map(|m| m.keys().map(String::as_str)).collect();
        keys.extend(extra.iter().copied());
        for key in keys.into_iter().filter(|k| !ignored(ignore, k)) {
            let want = desired.and_then(|m| m.get(key)).filter(|v| !v.is_null());
            let have = current.and_then(|m| m.get(key)).filter(|v| !v.is_null());
            if want != have {
                out.push(FieldDiff { path: format!("metadata.{field}{}", segment(key)), desired: want.cloned(), live: have.cloned() });
            }
        }
    }
    let desired = normalized(&without_metadata_and_status(desired_dry_run));
    let current = normalized(&without_metadata_and_status(live));
    compare(&desired, &current, String::new(), &mut out);
    out
}

/// A copy without `metadata` and `status`.
fn without_metadata_and_status(value: &Value) -> Value {
    let mut value = value.clone();
    if let Some(object) = value.as_object_mut() {
        object.remove("metadata");
        object.remove("status");
    }
    value
}

/// The normalised form both sides are compared in: `null`, `[]` and `{}` removed from
/// mappings (recursively; in a list they stay, as placeholders), and for a
/// HorizontalPodAutoscaler (`autoscaling`) `spec.metrics` without duplicates and
/// without empty metrics.
pub fn normalized(value: &Value) -> Value {
    let mut value = prune_empty(value).unwrap_or(Value::Null);
    let hpa = api_group(value.get("apiVersion").and_then(Value::as_str).unwrap_or_default()) == "autoscaling"
        && value.get("kind").and_then(Value::as_str) == Some("HorizontalPodAutoscaler");
    if hpa && let Some(Value::Array(metrics)) = value.pointer_mut("/spec/metrics") {
        let mut kept: Vec<Value> = Vec::with_capacity(metrics.len());
        for metric in metrics.drain(..) {
            if !is_empty(&metric) && !kept.contains(&metric) {
                kept.push(metric);
            }
        }
        *metrics = kept;
    }
    value
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Array(items) => items.is_empty(),
        Value::Object(map) => map.is_empty(),
        _ => false,
    }
}

/// The value with empty entries removed from its mappings; `None` when it is itself
/// empty after that.
fn prune_empty(value: &Value) -> Option<Value> {
    let pruned = match value {
        Value::Object(map) => {
            Value::Object(map.iter().filter_map(|(k, v)| prune_empty(v).map(|v| (k.clone(), v))).collect::<Map<String, Value>>())
        }
        Value::Array(items) => Value::Array(items.iter().map(|v| prune_empty(v).unwrap_or(Value::Null)).collect()),
        other => other.clone(),
    };
    if is_empty(&pruned) { None } else { Some(pruned) }
}

/// One path segment: `.key` for plain words, else `["key"]`.
fn segment(key: &str) -> String {
    let plain = key.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if plain { format!(".{key}") } else { format!("[{}]", Value::String(key.to_owned())) }
}

fn join(path: &str, key: &str) -> String {
    let segment = segment(key);
    match segment.strip_prefix('.') {
        Some(bare) if path.is_empty() => bare.to_owned(),
        _ => format!("{path}{segment}"),
    }
}

fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64().zip(y.as_f64()).is_some_and(|(x, y)| x == y),
        _ => a == b,
    }
}

/// Appends the differences between two normalised values under `path`.
fn compare(desired: &Value, live: &Value, path: String, out: &mut Vec<FieldDiff>) {
    match (desired, live) {
        (Value::Object(want), Value::Object(have)) => {
            let keys: BTreeSet<&String> = want.keys().chain(have.keys()).collect();
            for key in keys {
                let sub = join(&path, key);
                match (want.get(key), have.get(key)) {
                    (Some(w), Some(h)) => compare(w, h, sub, out),
                    (w, h) => out.push(FieldDiff { path: sub, desired: w.cloned(), live: h.cloned() }),
                }
            }
        }
        (Value::Array(want), Value::Array(have)) => {
            for i in 0..want.len().max(have.len()) {
                let sub = format!("{path}[{i}]");
                match (want.get(i), have.get(i)) {
                    (Some(w), Some(h)) => compare(w, h, sub, out),
                    (w, h) => out.push(FieldDiff { path: sub, desired: w.cloned(), live: h.cloned() }),
                }
            }
        }
        (w, h) if same(w, h) => {}
        (w, h) => {
            let some = |v: &Value| if v.is_null() { None } else { Some(v.clone()) };
            out.push(FieldDiff { path, desired: some(w), live: some(h) });
        }
    }
}

/// The view of an object that [`unified`] shows: without `status`, the server-owned
/// metadata and the [`IGNORED_ANNOTATIONS`], [`normalized`].
fn view(value: &Value) -> Value {
    let mut value = value.clone();
    if let Some(object) = value.as_object_mut() {
        object.remove("status");
        if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            for field in SERVER_OWNED_METADATA {
                metadata.remove(field);
            }
            if let Some(annotations) = metadata.get_mut("annotations").and_then(Value::as_object_mut) {
                annotations.retain(|k, _| !ignored(&IGNORED_ANNOTATIONS, k));
            }
        }
    }
    normalized(&value)
}

/// Lines of context around each change in [`unified`].
const CONTEXT: usize = 3;
/// Above this many cells (changed lines of one side times the other's), [`unified`]
/// shows the changed region as all removed, then all added, instead of aligning it.
const MAX_ALIGN_CELLS: usize = 4_000_000;

/// A unified diff (`diff -u` style, 3 lines of context) from the live object to the
/// desired one, of their stable YAML ([`to_yaml`]), both without `status`, server-owned
/// metadata and tool annotations, and [`normalized`]. `-` lines are live values a
/// re-apply replaces, `+` lines what idp-lab sets, as `kubectl diff` shows it. Empty when
/// the two views are the same. A `live` that is null (absent) shows the whole object
/// added.
pub fn unified(desired: &Value, live: &Value) -> String {
    let want = to_yaml(&view(desired));
    let have = if live.is_null() { String::new() } else { to_yaml(&view(live)) };
    let old: Vec<&str> = have.lines().collect();
    let new: Vec<&str> = want.lines().collect();
    let ops = line_diff(&old, &new);
    if ops.iter().all(|op| matches!(op, Op::Same(..))) {
        return String::new();
    }
    let mut out = String::from("--- live\n+++ desired\n");
    // Hunks: runs of changes joined when at most 2 × CONTEXT unchanged lines apart.
    let changed: Vec<usize> = ops.iter().enumerate().filter(|(_, op)| !matches!(op, Op::Same(..))).map(|(i, _)| i).collect();
    let mut start = 0;
    while start < changed.len() {
        let mut end = start;
        while end + 1 < changed.len() && changed[end + 1] - changed[end] <= 2 * CONTEXT + 1 {
            end += 1;
        }
        let from = changed[start].saturating_sub(CONTEXT);
        let to = (changed[end] + CONTEXT + 1).min(ops.len());
        hunk(&ops[from..to], &old, &new, &mut out);
        start = end + 1;
    }
    out
}

/// One step of a line diff: indexes into the old (live) and new (desired) lines.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Same(usize, usize),
    Removed(usize),
    Added(usize),
}

fn hunk(ops: &[Op], old: &[&str], new: &[&str], out: &mut String) {
    // The position of the hunk in each file, 1-based.
    let mut old_start = None;
    let mut new_start = None;
    let (mut old_len, mut new_len) = (0, 0);
    let mut body = String::new();
    for op in ops {
        match *op {
            Op::Same(o, n) => {
                old_start.get_or_insert(o);
                new_start.get_or_insert(n);
                old_len += 1;
                new_len += 1;
                body.push_str(&format!(" {}\n", old[o]));
            }
            Op::Removed(o) => {
                old_start.get_or_insert(o);
                old_len += 1;
                body.push_str(&format!("-{}\n", old[o]));
            }
            Op::Added(n) => {
                new_start.get_or_insert(n);
                new_len += 1;
                body.push_str(&format!("+{}\n", new[n]));
            }
        }
    }
    // A side with no lines in the hunk (an empty file) is at line 0, as diff has it.
    let position = |start: Option<usize>, len: usize| if len == 0 { 0 } else { start.map_or(0, |s| s + 1) };
    let (old_pos, new_pos) = (position(old_start, old_len), position(new_start, new_len));
    out.push_str(&format!("@@ -{old_pos},{old_len} +{new_pos},{new_len} @@\n"));
    out.push_str(&body);
}

/// A line diff: the common prefix and suffix, and a longest common subsequence of the
/// rest (removals before additions within a change).
fn line_diff(old: &[&str], new: &[&str]) -> Vec<Op> {
    let prefix = old.iter().zip(new).take_while(|(a, b)| a == b).count();
    let suffix = old[prefix..].iter().rev().zip(new[prefix..].iter().rev()).take_while(|(a, b)| a == b).count();
    let (a, b) = (&old[prefix..old.len() - suffix], &new[prefix..new.len() - suffix]);
    let mut ops: Vec<Op> = (0..prefix).map(|i| Op::Same(i, i)).collect();
    if a.len().saturating_mul(b.len()) > MAX_ALIGN_CELLS {
        ops.extend((0..a.len()).map(|i| Op::Removed(prefix + i)));
        ops.extend((0..b.len()).map(|j| Op::Added(prefix + j)));
    } else {
        // lcs[i][j]: the LCS length of a[i..] and b[j..].
        let width = b.len() + 1;
        let mut lcs = vec![0u32; (a.len() + 1) * width];
        for i in (0..a.len()).rev() {
            for j in (0..b.len()).rev() {
                lcs[i * width + j] =
                    if a[i] == b[j] { lcs[(i + 1) * width + j + 1] + 1 } else { lcs[(i + 1) * width + j].max(lcs[i * width + j + 1]) };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < a.len() || j < b.len() {
            if i < a.len() && j < b.len() && a[i] == b[j] {
                ops.push(Op::Same(prefix + i, prefix + j));
                i += 1;
                j += 1;
            } else if i < a.len() && (j == b.len() || lcs[(i + 1) * width + j] >= lcs[i * width + j + 1]) {
                ops.push(Op::Removed(prefix + i));
                i += 1;
            } else {
                ops.push(Op::Added(prefix + j));
                j += 1;
            }
        }
    }
    let (o, n) = (old.len() - suffix, new.len() - suffix);
    ops.extend((0..suffix).map(|k| Op::Same(o + k, n + k)));
    ops
}

#[cfg(test)]
mod tests;
