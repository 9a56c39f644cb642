//! The in-cluster inventory of an apply set, by kubectl's ApplySet conventions
//! (KEP-3659), so that it survives a lost state store and `kubectl apply --prune
//! --applyset` and other tools can read it:
//!
//! * the **parent** is a Secret (kubectl's default parent kind) named after the set, in
//!   the set's namespace. It carries the label `applyset.kubernetes.io/id` and the
//!   annotations `applyset.kubernetes.io/tooling` (`idp-lab/<version>`),
//!   `applyset.kubernetes.io/contains-group-kinds` (sorted `Kind.group`, `Kind` for the
//!   core group) and `applyset.kubernetes.io/additional-namespaces` (the members'
//!   namespaces other than the parent's, sorted);
//! * every **member** carries the label `applyset.kubernetes.io/part-of: <id>`;
//! * the **id** is `applyset-<base64url(sha256("<name>.<namespace>.Secret."))>-v1`.
//!
//! Before members are applied the parent is widened to the union of what it listed and
//! what the run applies (so a run that dies half-way still finds every member next
//! time); after a prune it is narrowed to what the run applied.

use std::collections::BTreeSet;

use idp_core::objects::base64;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::KubeError;

/// The parent's label holding the set's id.
pub const ID_LABEL: &str = "applyset.kubernetes.io/id";
/// The member label naming the set's id.
pub const PART_OF_LABEL: &str = "applyset.kubernetes.io/part-of";
/// The parent annotation naming the tool that manages the set.
pub const TOOLING_ANNOTATION: &str = "applyset.kubernetes.io/tooling";
/// The parent annotation listing the members' kinds.
pub const GROUP_KINDS_ANNOTATION: &str = "applyset.kubernetes.io/contains-group-kinds";
/// The parent annotation listing the members' namespaces other than the parent's.
pub const NAMESPACES_ANNOTATION: &str = "applyset.kubernetes.io/additional-namespaces";
/// The member annotation that keeps an object from ever being pruned.
pub const PRUNE_ANNOTATION: &str = "idp-lab.dev/prune";
/// The value of [`PRUNE_ANNOTATION`] that disables prune.
pub const PRUNE_DISABLED: &str = "disabled";
/// The field manager of the parent.
const FIELD_MANAGER: &str = "idp-lab";

/// An apply set: the name and namespace of its parent Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inventory {
    /// The set's name, which is the parent Secret's name.
    pub name: String,
    /// The parent's namespace.
    pub namespace: String,
}

/// What a parent lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Listed {
    /// `Kind.group` (or `Kind`) of the members.
    pub group_kinds: BTreeSet<String>,
    /// Every namespace a member may live in, the parent's included.
    pub namespaces: BTreeSet<String>,
}

impl Inventory {
    /// The set's id, as kubectl computes it for a Secret parent.
    pub fn id(&self) -> String {
        let digest = Sha256::digest(format!("{}.{}.Secret.", self.name, self.namespace).as_bytes());
        let url: String = base64(&digest)
            .chars()
            .filter(|c| *c != '=')
            .map(|c| match c {
                '+' => '-',
                '/' => '_',
                c => c,
            })
            .collect();
        format!("applyset-{url}-v1")
    }

    fn api(&self, client: &kube::Client) -> Api<Secret> {
        Api::namespaced(client.clone(), &self.namespace)
    }

    /// What the parent lists now; `None` when there is no parent. A Secret of that name
    /// that is not this set's parent (another id, or none) is an error: idp-lab will not
    /// take it over.
    pub(crate) async fn read(&self, client: &kube::Client, server: &str) -> Result<Option<Listed>, KubeError> {
        let Some(secret) =
            self.api(client).get_opt(&self.name).await.map_err(|e| KubeError::api("read the apply set's parent", server, e))?
        else {
            return Ok(None);
        };
        let id = secret.metadata.labels.as_ref().and_then(|l| l.get(ID_LABEL)).cloned().unwrap_or_default();
        if id != self.id() {
            return Err(KubeError::NotOurs {
                what: format!("Secret {}/{}", self.namespace, self.name),
                problem: if id.is_empty() {
                    format!("it has no {ID_LABEL} label, so it is not an apply set's parent")
                } else {
                    format!("its {ID_LABEL} is {id:?}, not {:?}", self.id())
                },
            });
        }
        let annotations = secret.metadata.annotations.unwrap_or_default();
        let split = |key: &str| -> BTreeSet<String> {
            annotations
                .get(key)
                .map(|v| v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect())
                .unwrap_or_default()
        };
        let mut namespaces = split(NAMESPACES_ANNOTATION);
        namespaces.insert(self.namespace.clone());
        Ok(Some(Listed { group_kinds: split(GROUP_KINDS_ANNOTATION), namespaces }))
    }

    /// Makes the parent list exactly `listed` (server-side apply; created when absent).
    pub(crate) async fn write(&self, client: &kube::Client, listed: &Listed, dry_run: bool) -> Result<(), kube::Error> {
        let join = |set: &BTreeSet<String>| set.iter().map(String::as_str).collect::<Vec<_>>().join(",");
        let others: BTreeSet<String> = listed.namespaces.iter().filter(|n| **n != self.namespace && !n.is_empty()).cloned().collect();
        let parent = json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "labels": {
                    ID_LABEL: self.id(),
                    idp_core::objects::MANAGED_BY_LABEL: idp_core::objects::MANAGED_BY,
                },
                "annotations": {
                    TOOLING_ANNOTATION: format!("idp-lab/{}", env!("CARGO_PKG_VERSION")),
                    GROUP_KINDS_ANNOTATION: join(&listed.group_kinds),
                    NAMESPACES_ANNOTATION: join(&others),
                },
            },
            "type": "Opaque",
        });
        let mut params = PatchParams::apply(FIELD_MANAGER).force();
        params.dry_run = dry_run;
        self.api(client).patch(&self.name, &params, &Patch::Apply(parent)).await.map(drop)
    }
}

/// The `Kind.group` of a kind, as the parent lists it (`Deployment.apps`, `ConfigMap`).
pub(crate) fn group_kind(group: &str, kind: &str) -> String {
    if group.is_empty() { kind.to_owned() } else { format!("{kind}.{group}") }
}

/// The group and kind of a [`group_kind`] string.
pub(crate) fn split_group_kind(group_kind: &str) -> (&str, &str) {
    match group_kind.split_once('.') {
        Some((kind, group)) => (group, kind),
        None => ("", group_kind),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_is_kubectls() {
        // kubectl's ApplySet.ID(): "applyset-" + base64url(sha256("name.namespace.Kind.group"),
        // unpadded) + "-v1"; the value was computed with Python's hashlib and base64.
        let set = Inventory { name: "demo".into(), namespace: "default".into() };
        assert_eq!(set.id(), "applyset-g-9vO3Gntkd6KKnGIOcQY9dRSq6Du4sz_7-8UzQNrWQ-v1");
        assert_ne!(set.id(), Inventory { name: "demo".into(), namespace: "other".into() }.id());
    }

    #[test]
    fn group_kinds_read_back() {
        assert_eq!(group_kind("apps", "Deployment"), "Deployment.apps");
        assert_eq!(group_kind("", "ConfigMap"), "ConfigMap");
        assert_eq!(split_group_kind("Deployment.apps"), ("apps", "Deployment"));
        assert_eq!(split_group_kind("Certificate.cert-manager.io"), ("cert-manager.io", "Certificate"));
        assert_eq!(split_group_kind("ConfigMap"), ("", "ConfigMap"));
    }
}
