//! The apply cache: for each object idp-lab applied, the hash of what it applied and
//! the `resourceVersion` the server answered with. When a LIST shows the same
//! `resourceVersion` and the input hashes the same, the live object is exactly what
//! applying it again would leave, so `apply` skips the PATCH and `diff` the dry-run: an
//! unchanged cluster costs one LIST per kind and namespace.
//!
//! A `resourceVersion` is only unique within one cluster (a fresh cluster counts from
//! small numbers again), so the cache belongs to one cluster, named by the uid of its
//! `kube-system` namespace, and starts empty for any other.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// What idp-lab last applied, per object, on one cluster. Serialisable, so that the
/// caller can keep it between runs (the binary keeps a file per API server).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyCache {
    /// The uid of the cluster's `kube-system` namespace; empty until first used.
    cluster: String,
    /// Object identity (as displayed) → entry.
    entries: BTreeMap<String, Entry>,
}

/// One object's entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    /// SHA-256 of the applied object, hex.
    desired: String,
    /// The `resourceVersion` after the apply.
    resource_version: String,
}

impl ApplyCache {
    /// Binds the cache to `cluster` (a `kube-system` uid), dropping every entry when it
    /// was another cluster's.
    pub(crate) fn bind(&mut self, cluster: &str) {
        if self.cluster != cluster {
            self.entries.clear();
            cluster.clone_into(&mut self.cluster);
        }
    }

    /// Whether the live object at `live_version` is what `hash` left.
    pub(crate) fn fresh(&self, identity: &str, hash: &str, live_version: &str) -> bool {
        self.entries.get(identity).is_some_and(|e| e.desired == hash && e.resource_version == live_version)
    }

    /// Records that applying `hash` left the object at `resource_version`.
    pub(crate) fn record(&mut self, identity: &str, hash: &str, resource_version: &str) {
        if resource_version.is_empty() {
            return;
        }
        self.entries.insert(identity.to_owned(), Entry { desired: hash.to_owned(), resource_version: resource_version.to_owned() });
    }

    /// Forgets an object (it was pruned, or its apply failed).
    pub(crate) fn forget(&mut self, identity: &str) {
        self.entries.remove(identity);
    }

    /// How many objects it knows.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it knows no object.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The hash of an object as applied: SHA-256 of its JSON, hex.
pub(crate) fn hash(value: &Value) -> String {
    let digest = Sha256::digest(value.to_string().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_entry_is_fresh_only_for_the_same_input_and_version() {
        let mut cache = ApplyCache::default();
        assert!(cache.is_empty());
        assert_eq!(cache.len(), 0);
        cache.bind("uid-a");
        let h = hash(&json!({"kind": "ConfigMap", "data": {"a": "1"}}));
        cache.record("ConfigMap x/y", &h, "42");
        cache.record("ConfigMap x/w", &h, "7");
        assert!(!cache.is_empty());
        assert_eq!(cache.len(), 2);
        cache.forget("ConfigMap x/w");
        assert!(cache.fresh("ConfigMap x/y", &h, "42"));
        assert!(!cache.fresh("ConfigMap x/y", &h, "43"), "changed live");
        assert!(!cache.fresh("ConfigMap x/y", &hash(&json!({"kind": "ConfigMap", "data": {"a": "2"}})), "42"), "changed input");
        assert!(!cache.fresh("ConfigMap x/z", &h, "42"), "another object");
        cache.bind("uid-a");
        assert_eq!(cache.len(), 1, "the same cluster keeps its entries");
        cache.bind("uid-b");
        assert!(cache.is_empty(), "another cluster starts empty");
        assert!(!cache.fresh("ConfigMap x/y", &h, "42"));
    }

    #[test]
    fn no_version_records_nothing_and_forget_forgets() {
        let mut cache = ApplyCache::default();
        cache.record("a", "h", "");
        assert!(cache.is_empty());
        cache.record("a", "h", "1");
        cache.forget("a");
        assert!(!cache.fresh("a", "h", "1"));
    }
}
