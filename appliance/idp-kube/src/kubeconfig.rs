//! Kubeconfig files: the lab's own kubeconfig made from the one k3s writes, and merging
//! it into (and removing it from) the user's kubeconfig the way kubectl and kind do.
//!
//! Files are handled as YAML data, not through a typed model, so that whatever idp-lab
//! does not own (other clusters, users and contexts, `preferences`, `extensions`, fields
//! newer than any library) is written back with the same content. Keys come out sorted.
//!
//! Writes take the lock kubectl and kind take (`<file>.lock`, see the `lock` module), wait
//! for it up to 10 s, and replace the file atomically (a temporary file in the same
//! directory, fsync, rename) with mode 0600. These functions block; call them from
//! `spawn_blocking` in async code.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io::{ErrorKind, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Map, Value, json};

use crate::KubeError;
use crate::lock::{LOCK_WAIT, create_private_dir, lock};

/// The three sections idp-lab adds an entry to, with the key of each entry's settings.
const SECTIONS: [(&str, &str); 3] = [("clusters", "cluster"), ("users", "user"), ("contexts", "context")];
/// The `current-context` key.
const CURRENT: &str = "current-context";

/// The name of the cluster, user and context of `lab` in kubeconfig files: `idp-lab-<lab>`.
pub fn context_name(lab: &str) -> String {
    format!("idp-lab-{lab}")
}

/// Turns the admin kubeconfig k3s writes (one cluster, user and context, all named
/// `default`, certificates embedded) into the lab's: the three renamed
/// [`context_name`]`(lab)`, `current-context` set to it, and the cluster's `server`
/// replaced by `server` (the address the host reaches the API on, e.g.
/// `https://127.0.0.1:6443`).
///
/// A kubeconfig without exactly one cluster, user and context is an error naming what
/// it holds.
pub fn lab_kubeconfig(raw: &str, lab: &str, server: &str) -> Result<String, KubeError> {
    const WHAT: &str = "the k3s admin kubeconfig";
    check_lab(lab)?;
    check_server(server)?;
    let name = context_name(lab);
    let doc = parse(raw, WHAT)?;
    let mut cluster = only_entry(&doc, 0, WHAT)?;
    let user = only_entry(&doc, 1, WHAT)?;
    let mut context = only_entry(&doc, 2, WHAT)?;
    cluster.insert("server".into(), json!(server));
    context.insert("cluster".into(), json!(name));
    context.insert("user".into(), json!(name));
    let out = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{ "name": name, "cluster": cluster }],
        "users": [{ "name": name, "user": user }],
        "contexts": [{ "name": name, "context": context }],
        "current-context": name,
        "preferences": {},
    });
    Ok(idp_core::yaml::to_yaml(&out))
}

/// The kubeconfig file kubectl writes to: the first path of `$KUBECONFIG` (a
/// `:`-separated list), else `$HOME/.kube/config`. `None` without either.
pub fn default_path() -> Option<PathBuf> {
    default_path_from(std::env::var_os("KUBECONFIG"), std::env::var_os("HOME"))
}

fn default_path_from(kubeconfig: Option<OsString>, home: Option<OsString>) -> Option<PathBuf> {
    if let Some(list) = kubeconfig {
        // client-go skips empty entries of the list.
        if let Some(first) = std::env::split_paths(&list).find(|p| !p.as_os_str().is_empty()) {
            return Some(first);
        }
    }
    home.filter(|h| !h.is_empty()).map(|h| PathBuf::from(h).join(".kube").join("config"))
}

/// Merges `lab_kubeconfig` (made by [`lab_kubeconfig`]) into the kubeconfig at `path`:
/// the cluster, user and context named [`context_name`]`(lab)` replace any of the same
/// name, and everything else stays. `current-context` is set to the lab's when
/// `switch_context` is true or the file had none.
///
/// A missing file (and its directory, with mode 0700) is created. A file that is not a
/// kubeconfig is an error and is left as it is.
pub fn merge(path: &Path, lab_kubeconfig: &str, lab: &str, switch_context: bool) -> Result<(), KubeError> {
    check_lab(lab)?;
    let name = context_name(lab);
    let new = parse(lab_kubeconfig, "the lab's kubeconfig")?;
    let mut entries = Vec::with_capacity(SECTIONS.len());
    for (index, (section, _)) in SECTIONS.iter().enumerate() {
        let entry = entries_of(&new, section).iter().find(|e| entry_name(e) == Some(name.as_str())).cloned();
        let Some(entry) = entry else {
            return Err(KubeError::Invalid {
                what: "the lab's kubeconfig".into(),
                problem: format!("it has no {} named {name:?}", SECTIONS[index].1),
            });
        };
        entries.push(entry);
    }

    if let Some(dir) = path.parent() {
        create_private_dir(dir)?;
    }
    let _lock = lock(path, LOCK_WAIT)?;
    let mut doc = read(path)?.unwrap_or_default();
    if doc.is_empty() {
        // A new file gets what kubectl writes into one.
        doc.insert("preferences".into(), json!({}));
    }
    doc.entry("apiVersion").or_insert_with(|| json!("v1"));
    doc.entry("kind").or_insert_with(|| json!("Config"));
    for ((section, _), entry) in SECTIONS.iter().zip(entries) {
        let mut list = match doc.remove(*section) {
            Some(Value::Array(list)) => list,
            _ => Vec::new(),
        };
        // In place of the old entry (of the first, should the name be there twice).
        let at = list.iter().position(|e| entry_name(e) == Some(name.as_str()));
        list.retain(|e| entry_name(e) != Some(name.as_str()));
        let at = at.unwrap_or(list.len()).min(list.len());
        list.insert(at, entry);
        doc.insert((*section).into(), Value::Array(list));
    }
    let has_current = doc.get(CURRENT).and_then(Value::as_str).is_some_and(|c| !c.is_empty());
    if switch_context || !has_current {
        doc.insert(CURRENT.into(), json!(name));
    }
    write_atomically(path, &idp_core::yaml::to_yaml(&Value::Object(doc)))
}

/// Removes the cluster, user and context named [`context_name`]`(lab)` from the
/// kubeconfig at `path`, and `current-context` when it names the lab's. True when
/// anything was removed. A missing file is `Ok(false)`; a file left empty stays.
pub fn remove(path: &Path, lab: &str) -> Result<bool, KubeError> {
    check_lab(lab)?;
    let name = context_name(lab);
    if !exists(path)? {
        return Ok(false);
    }
    let _lock = lock(path, LOCK_WAIT)?;
    let Some(mut doc) = read(path)? else {
        return Ok(false);
    };
    let mut removed = false;
    for (section, _) in SECTIONS {
        if let Some(Value::Array(list)) = doc.get_mut(section) {
            let before = list.len();
            list.retain(|e| entry_name(e) != Some(name.as_str()));
            removed |= list.len() != before;
        }
    }
    if doc.get(CURRENT).and_then(Value::as_str) == Some(name.as_str()) {
        doc.remove(CURRENT);
        removed = true;
    }
    if removed {
        write_atomically(path, &idp_core::yaml::to_yaml(&Value::Object(doc)))?;
    }
    Ok(removed)
}

/// Whether the kubeconfig at `path` holds any of the cluster, user and context named
/// [`context_name`]`(lab)` (that is, whether [`remove`] would remove something). A
/// missing file holds nothing.
pub fn contains(path: &Path, lab: &str) -> Result<bool, KubeError> {
    check_lab(lab)?;
    let name = context_name(lab);
    let Some(doc) = read(path)? else {
        return Ok(false);
    };
    Ok(SECTIONS.iter().any(|(section, _)| entries_of(&doc, section).iter().any(|e| entry_name(e) == Some(name.as_str()))))
}

fn check_lab(lab: &str) -> Result<(), KubeError> {
    if idp_core::config::is_name(lab) {
        return Ok(());
    }
    Err(KubeError::Invalid {
        what: format!("lab name {lab:?}"),
        problem: "expected lowercase letters, digits and dashes, starting with a letter".into(),
    })
}

fn check_server(server: &str) -> Result<(), KubeError> {
    let ok = server
        .parse::<http::Uri>()
        .is_ok_and(|uri| matches!(uri.scheme_str(), Some("https" | "http")) && uri.authority().is_some_and(|a| !a.host().is_empty()));
    if ok {
        return Ok(());
    }
    Err(KubeError::Invalid { what: format!("server {server:?}"), problem: "expected a URL such as https://127.0.0.1:6443".into() })
}

/// Parses kubeconfig text (empty text is an empty kubeconfig) and checks the shape of
/// the sections idp-lab edits; `what` names it in errors.
fn parse(text: &str, what: &str) -> Result<Map<String, Value>, KubeError> {
    if text.trim().is_empty() {
        return Ok(Map::new());
    }
    let docs: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| KubeError::Parse { what: what.into(), source: Box::new(e) })?;
    let mut docs: Vec<Value> = docs.into_iter().filter(|d| !d.is_null()).collect();
    let invalid = |problem: String| KubeError::Invalid { what: what.into(), problem };
    let doc = match docs.len() {
        0 => return Ok(Map::new()),
        1 => docs.remove(0),
        n => return Err(invalid(format!("it holds {n} YAML documents, a kubeconfig holds one"))),
    };
    let Value::Object(doc) = doc else {
        return Err(invalid(format!("its top level is {}, not a mapping", kind_of(&doc))));
    };
    for (section, _) in SECTIONS {
        match doc.get(section) {
            None | Some(Value::Null) => {}
            Some(Value::Array(list)) => {
                if let Some((i, bad)) = list.iter().enumerate().find(|(_, e)| entry_name(e).is_none()) {
                    return Err(invalid(format!("{section}[{i}] is {}, not an entry with a name", kind_of(bad))));
                }
            }
            Some(other) => return Err(invalid(format!("{section} is {}, not a list", kind_of(other)))),
        }
    }
    match doc.get(CURRENT) {
        None | Some(Value::Null | Value::String(_)) => Ok(doc),
        Some(other) => Err(invalid(format!("{CURRENT} is {}, not a string", kind_of(other)))),
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// The one entry of `SECTIONS[index]` in a k3s kubeconfig: its settings.
fn only_entry(doc: &Map<String, Value>, index: usize, what: &str) -> Result<Map<String, Value>, KubeError> {
    let (section, key) = SECTIONS[index];
    let list = entries_of(doc, section);
    let invalid = |problem: String| KubeError::Invalid { what: what.into(), problem };
    let entry = match list {
        [entry] => entry,
        [] => return Err(invalid(format!("it has no {key}, expected one"))),
        many => {
            let names: Vec<&str> = many.iter().filter_map(entry_name).collect();
            return Err(invalid(format!("it has {} {section} ({}), expected one", many.len(), names.join(", "))));
        }
    };
    let name = entry_name(entry).unwrap_or_default();
    match entry.get(key) {
        Some(Value::Object(settings)) => Ok(settings.clone()),
        _ => Err(invalid(format!("{key} {name:?} has no settings"))),
    }
}

/// The entries of a section (none when it is absent or null; `parse` checked the rest).
fn entries_of<'a>(doc: &'a Map<String, Value>, section: &str) -> &'a [Value] {
    match doc.get(section) {
        Some(Value::Array(list)) => list,
        _ => &[],
    }
}

fn entry_name(entry: &Value) -> Option<&str> {
    entry.get("name").and_then(Value::as_str)
}

fn exists(path: &Path) -> Result<bool, KubeError> {
    path.try_exists().map_err(|e| KubeError::io("look for", path, e))
}

/// Reads and parses the kubeconfig at `path`; `None` when there is no such file.
fn read(path: &Path) -> Result<Option<Map<String, Value>>, KubeError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(KubeError::io("read", path, e)),
    };
    let what = path.display().to_string();
    let text = String::from_utf8(bytes).map_err(|e| KubeError::Parse { what: what.clone(), source: Box::new(e) })?;
    parse(&text, &what).map(Some)
}

/// Replaces `path` with `text`: a temporary file in the same directory, written, synced
/// and renamed over it, with mode 0600. A symbolic link is followed, so the file it
/// points at is replaced, not the link.
fn write_atomically(path: &Path, text: &str) -> Result<(), KubeError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let target = match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => std::fs::canonicalize(path).map_err(|e| KubeError::io("follow the link", path, e))?,
        _ => path.to_path_buf(),
    };
    let dir = match target.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "config".into());
    let tmp = dir.join(format!(".{file_name}.idp-lab-{}-{}.tmp", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed)));
    let written = (|| {
        let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        // The umask can only take bits away; make sure it is exactly 0600.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        file.write_all(text.as_bytes())?;
        file.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(KubeError::io("write", tmp, e));
    }
    if let Err(e) = std::fs::rename(&tmp, &target) {
        let _ = std::fs::remove_file(&tmp);
        return Err(KubeError::io("rename a temporary file over", target, e));
    }
    // Make the rename itself durable; a failure here loses nothing already written.
    if let Err(e) = std::fs::File::open(&dir).and_then(|d| d.sync_all()) {
        tracing::debug!(dir = %dir.display(), "failed to sync the kubeconfig's directory: {e}");
    }
    Ok(())
}

#[cfg(test)]
mod tests;
