//! The components idp-lab applied, as the lab's watchdog watches them: one JSON file per
//! component in the lab's state directory, written by whoever applied it (`apply
//! --inventory`, `up`'s bootstrap) and read at the daemon's start and every reload (by
//! the drift engine, the health loop and the playbooks' `reapply`).

use std::path::{Path, PathBuf};

use idp_core::objects::{Object, Place};
use idp_kube::{ApplyOptions, Inventory};
use idp_watchdog::{Component, Policy};
use serde::{Deserialize, Serialize};

use crate::DaemonError;

/// The folder, in the lab's state directory, of the components the watchdog watches for
/// drift: one JSON file per component, written by whoever applied it ([`record_component`]).
pub const COMPONENTS_DIR: &str = "watchdog/components";

/// A component idp-lab applied, as the watchdog watches it for drift: what `apply` sent
/// and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WatchedComponent {
    /// The component (the `idp-lab.dev/component` label; the file's name).
    pub component: String,
    /// The namespace of namespaced objects that name none.
    pub namespace: String,
    /// Its apply set: name and namespace of the parent.
    pub inventory: Option<(String, String)>,
    /// The desired objects, in the order applied.
    pub objects: Vec<serde_json::Value>,
    /// Heal drift (else report it only).
    pub heal: bool,
}

/// Records `component` for the watchdog of the lab in `dir` (the daemon picks it up at its
/// next start or reload).
pub fn record_component(dir: &Path, component: &WatchedComponent) -> Result<(), DaemonError> {
    let folder = dir.join(COMPONENTS_DIR);
    std::fs::create_dir_all(&folder).map_err(|source| DaemonError::Io { action: "create", path: folder.clone(), source })?;
    let value =
        serde_json::to_value(component).map_err(|e| DaemonError::Control { reason: format!("the component does not serialise: {e}") })?;
    crate::pidfile::write_json(&folder, &format!("{}.json", component.component), &value)
}

/// The components recorded in `dir`, each as the drift engine takes it; a file that does
/// not read is skipped with a warning.
pub(crate) fn recorded_components(dir: &Path, lab: &str) -> Vec<Component> {
    let folder = dir.join(COMPONENTS_DIR);
    let Ok(entries) = std::fs::read_dir(&folder) else { return Vec::new() };
    let mut files: Vec<PathBuf> =
        entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "json")).collect();
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let read = std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<WatchedComponent>(&b).map_err(|e| e.to_string()));
        let recorded = match read {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "watchdog: a recorded component does not read; not watched");
                continue;
            }
        };
        let source = format!("component {} (recorded in {})", recorded.component, path.display());
        let objects = recorded
            .objects
            .into_iter()
            .enumerate()
            .map(|(i, value)| Object { value, place: Place { source: source.clone(), document: i + 1, item: None }, wave: None })
            .collect();
        let mut options = ApplyOptions::new(lab, &recorded.component);
        options.namespace = recorded.namespace;
        options.inventory = recorded.inventory.map(|(name, namespace)| Inventory { name, namespace });
        let mut component = Component::new(&recorded.component, objects, options);
        component.policy = if recorded.heal { Policy::Heal } else { Policy::Report };
        out.push(component);
    }
    out
}
