//! Who changed a field: the field manager that owns a drifted path, read from the live
//! object's `metadata.managedFields` (server-side apply's ownership records, the
//! reference's §3.1). Pure: JSON in, names out.
//!
//! **Paths.** A drifted field is named as [`idp_core::drift::FieldDiff::path`] names it:
//! keys joined with `.` (`spec.replicas`), keys that are not plain words in brackets as JSON
//! strings (`metadata.labels["idp-lab.dev/lab"]`, `data["app.properties"]`), list indexes
//! in brackets (`spec.template.spec.containers[0].image`). [`parse_path`] reads that back
//! into [`Segment`]s; [`parse_pattern`] also takes `*` (any key) and `[*]` (any index) for
//! ignore rules.
//!
//! **fieldsV1.** Each managedFields entry holds a trie of the fields its manager owns:
//! `f:<name>` for a field of a map or struct, `k:<json object>` for the item of a list
//! keyed by those fields (`k:{"name":"web"}`), `v:<json value>` for an item of a set of
//! scalars, `i:<n>` for a positional item, and `.` for the element itself. A trie node
//! that is empty (`{}`) is a leaf: the manager owns the whole value there, atomic lists
//! and maps included. [`owns`] walks a path through a trie, matching list items by their
//! keys in the live object (a path says `containers[0]`; the trie says
//! `k:{"name":"web"}`).
//!
//! **Attribution** ([`attribute`]): the managers other than idp-lab that own the path; of
//! several, the one that wrote last. A field that nobody owns any more (someone removed
//! it) is attributed to the last writer other than idp-lab, with [`Evidence::LastWriter`]
//! to say that it is the best guess.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// A key of a mapping.
    Key(String),
    /// An index of a list.
    Index(usize),
    /// Any key (patterns only: `*`).
    AnyKey,
    /// Any index (patterns only: `[*]`).
    AnyIndex,
}

/// A path that does not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field path {path:?} does not read at byte {at}: {reason}")]
pub struct PathError {
    /// The path.
    pub path: String,
    /// The byte offset where reading failed.
    pub at: usize,
    /// What was expected there.
    pub reason: &'static str,
}

/// Reads a drift path (see the module docs) into segments; `""` is the empty path (the
/// whole object).
pub fn parse_path(path: &str) -> Result<Vec<Segment>, PathError> {
    parse(path, false)
}

/// Reads a path pattern: a drift path where `*` stands for any key and `[*]` for any
/// list index (`spec.template.spec.containers[*].image`, `metadata.annotations.*`).
pub fn parse_pattern(path: &str) -> Result<Vec<Segment>, PathError> {
    parse(path, true)
}

fn parse(path: &str, wildcards: bool) -> Result<Vec<Segment>, PathError> {
    let fail = |at: usize, reason: &'static str| PathError { path: path.to_owned(), at, reason };
    let bytes = path.as_bytes();
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at] {
            b'[' => {
                let rest = &path[at + 1..];
                if rest.starts_with('"') {
                    let mut values = serde_json::Deserializer::from_str(rest).into_iter::<String>();
                    let key = match values.next() {
                        Some(Ok(key)) => key,
                        _ => return Err(fail(at + 1, "a JSON string")),
                    };
                    let end = at + 1 + values.byte_offset();
                    if bytes.get(end) != Some(&b']') {
                        return Err(fail(end, "`]` after the key"));
                    }
                    out.push(Segment::Key(key));
                    at = end + 1;
                } else {
                    let close = rest.find(']').ok_or_else(|| fail(at, "a closing `]`"))?;
                    let inner = &rest[..close];
                    if wildcards && inner == "*" {
                        out.push(Segment::AnyIndex);
                    } else if !inner.is_empty() && inner.bytes().all(|b| b.is_ascii_digit()) {
                        out.push(Segment::Index(inner.parse().map_err(|_| fail(at + 1, "an index that fits"))?));
                    } else {
                        return Err(fail(at + 1, if wildcards { "an index, `*` or a JSON string" } else { "an index or a JSON string" }));
                    }
                    at += close + 2;
                }
            }
            b'.' if out.is_empty() => return Err(fail(at, "a key, not `.`, at the start")),
            b'.' => {
                at += 1;
                at = bare(path, at, wildcards, &mut out).ok_or_else(|| fail(at, "a key after `.`"))?;
            }
            _ if out.is_empty() => {
                at = bare(path, at, wildcards, &mut out).ok_or_else(|| fail(at, "a key"))?;
            }
            _ => return Err(fail(at, "`.` or `[`")),
        }
    }
    Ok(out)
}

/// Reads a plain key (or `*`) at `at`, pushing it; the offset after it, `None` for none.
fn bare(path: &str, at: usize, wildcards: bool, out: &mut Vec<Segment>) -> Option<usize> {
    let rest = &path[at..];
    if wildcards && rest.starts_with('*') {
        out.push(Segment::AnyKey);
        return Some(at + 1);
    }
    let len = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-')).unwrap_or(rest.len());
    if len == 0 || !rest.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        return None;
    }
    out.push(Segment::Key(rest[..len].to_owned()));
    Some(at + len)
}

/// Whether `pattern` names `path` or a field above it: segment by segment, with `*` and
/// `[*]` matching any key and any index. The empty pattern names everything.
pub fn covers(pattern: &[Segment], path: &[Segment]) -> bool {
    pattern.len() <= path.len()
        && pattern.iter().zip(path).all(|(p, s)| match (p, s) {
            (Segment::AnyKey, Segment::Key(_)) | (Segment::AnyIndex, Segment::Index(_)) => true,
            (p, s) => p == s,
        })
}

/// One entry of `metadata.managedFields`.
#[derive(Debug, Clone, PartialEq)]
pub struct ManagedEntry {
    /// The field manager.
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    /// When it last wrote, as the server gave it (RFC 3339); `None` when absent.
    pub time: Option<String>,
    /// The subresource it wrote through (`status`); `None` for the main resource.
    pub subresource: Option<String>,
    /// Its `fieldsV1` trie.
    pub fields: Value,
}

/// The managedFields entries of a live object, in its order; entries that are not
/// `FieldsV1` or lack a manager are left out.
pub fn entries(live: &Value) -> Vec<ManagedEntry> {
    let Some(list) = live.pointer("/metadata/managedFields").and_then(Value::as_array) else { return Vec::new() };
    list.iter()
        .filter(|e| e.get("fieldsType").and_then(Value::as_str).is_none_or(|t| t == "FieldsV1"))
        .filter_map(|e| {
            let text = |key: &str| e.get(key).and_then(Value::as_str).map(str::to_owned);
            Some(ManagedEntry {
                manager: text("manager")?,
                operation: text("operation").unwrap_or_default(),
                time: text("time"),
                subresource: text("subresource").filter(|s| !s.is_empty()),
                fields: e.get("fieldsV1").cloned().unwrap_or(Value::Null),
            })
        })
        .collect()
}

impl ManagedEntry {
    /// Whether this entry owns `path` of `live` (see [`owns`]).
    pub fn owns(&self, live: &Value, path: &[Segment]) -> bool {
        owns(&self.fields, Some(live), path)
    }

    /// Whether the entry only writes `status`: a controller's status update.
    fn status_only(&self) -> bool {
        self.fields.as_object().is_some_and(|m| !m.is_empty() && m.keys().all(|k| k == "f:status"))
    }
}

/// Whether the fieldsV1 trie `node` owns `path` of `live` (the value at the trie's level):
/// the path leads through the trie to a node, or to a leaf above it (an atomic value owned
/// whole). A list index is matched to a `k:`, `v:` or `i:` key by the live item at that
/// index, so a path into a list item that `live` lacks is owned only through an atomic
/// parent.
pub fn owns(node: &Value, live: Option<&Value>, path: &[Segment]) -> bool {
    let Some(map) = node.as_object() else { return false };
    let Some((first, rest)) = path.split_first() else { return true };
    if map.is_empty() {
        return true;
    }
    match first {
        Segment::Key(key) => map.get(&format!("f:{key}")).is_some_and(|child| owns(child, live.and_then(|l| l.get(key.as_str())), rest)),
        Segment::Index(index) => {
            let Some(item) = live.and_then(|l| l.get(*index)) else { return false };
            map.iter().any(|(key, child)| item_matches(key, item, *index) && owns(child, Some(item), rest))
        }
        Segment::AnyKey | Segment::AnyIndex => false,
    }
}

/// Whether the trie key `key` (`k:`, `v:` or `i:`) names the list item `item` at `index`.
fn item_matches(key: &str, item: &Value, index: usize) -> bool {
    if let Some(json) = key.strip_prefix("k:") {
        let Ok(Value::Object(keys)) = serde_json::from_str::<Value>(json) else { return false };
        !keys.is_empty() && keys.iter().all(|(k, v)| item.get(k).is_some_and(|have| same(have, v)))
    } else if let Some(json) = key.strip_prefix("v:") {
        serde_json::from_str::<Value>(json).is_ok_and(|v| same(&v, item))
    } else if let Some(n) = key.strip_prefix("i:") {
        n.parse::<usize>().is_ok_and(|n| n == index)
    } else {
        false
    }
}

/// JSON equality with numbers compared by value (`80` and `80.0`).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64().zip(y.as_f64()).is_some_and(|(x, y)| x == y),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b)),
        (Value::Object(x), Value::Object(y)) => x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w))),
        _ => a == b,
    }
}

/// How sure an [`Attribution`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Evidence {
    /// The manager owns the drifted field in `managedFields`.
    Owner,
    /// Nobody but idp-lab owns it (it was removed, or idp-lab co-owns it): the manager is
    /// the last one other than idp-lab that wrote the object.
    LastWriter,
}

/// The manager behind a drifted field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attribution {
    /// The field manager (`kubectl-edit`, `kube-controller-manager`, a `--field-manager`).
    pub manager: String,
    /// How it was found.
    pub evidence: Evidence,
}

/// Who changed `path` (a drift path) of `live`, `ours` being idp-lab's manager: of the
/// managers other than `ours` that own the path, the one that wrote last, else the last
/// writer other than `ours` (not counting status-only writes); `None` when nobody else
/// ever wrote the object, or the path does not read.
pub fn attribute(live: &Value, path: &str, ours: &str) -> Option<Attribution> {
    let entries = entries(live);
    let others = || entries.iter().filter(|e| e.manager != ours && e.subresource.is_none());
    if let Ok(segments) = parse_path(path)
        && !segments.is_empty()
        && let Some(owner) = latest(others().filter(|e| e.owns(live, &segments)))
    {
        return Some(Attribution { manager: owner.manager.clone(), evidence: Evidence::Owner });
    }
    latest(others().filter(|e| !e.status_only()))
        .map(|writer| Attribution { manager: writer.manager.clone(), evidence: Evidence::LastWriter })
}

/// The entry that wrote last (RFC 3339 times in one format compare as text); of equal
/// times, the later in the list.
fn latest<'a>(entries: impl Iterator<Item = &'a ManagedEntry>) -> Option<&'a ManagedEntry> {
    entries.fold(None, |best: Option<&ManagedEntry>, e| match best {
        Some(b) if b.time > e.time => Some(b),
        _ => Some(e),
    })
}

#[cfg(test)]
mod tests;
