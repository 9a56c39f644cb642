//! The apply engine one object at a time, for the watchdog: a component's objects prepared
//! and resolved exactly as [`Cluster::apply`] and [`Cluster::diff`] prepare them, then
//! diffed, re-applied or listed one member at a time.
//!
//! Nothing here is a second engine. [`Watched::diff_member`] is [`Cluster::diff`] for one
//! object: the same server-side-apply dry-run (the apply module's `send`, field manager
//! `idp-lab`, force), compared with the live object by the same rule
//! ([`idp_core::drift::drift`]), and spared by the same [`ApplyCache`] when the input and
//! the live `resourceVersion` are what the last apply left ([`Watched::fresh`],
//! [`Watched::record`]). [`Watched::apply_member`] is [`Cluster::apply`]'s request for one
//! object. [`Watched::live`] is the engine's one LIST per kind and namespace.
//!
//! The watchdog names kube types (the house rule lets it), so a [`Scope`] hands out the
//! [`kube::Api`] to watch and turns the watch's objects into the JSON the rest speaks.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use futures::{StreamExt as _, stream};
use idp_core::drift;
use idp_core::objects::{Identity, Object};
use kube::Api;
use kube::api::{DynamicObject, ListParams};
use kube::discovery::ApiResource;
use kube::runtime::watcher;
use serde_json::Value;

use crate::apply::{self, ApplyOptions, explain};
use crate::cache::{self, ApplyCache};
use crate::diff::Field;
use crate::discovery::{Discovery, object_value};
use crate::item::{self, Item};
use crate::live::{as_value, resource_version};
use crate::{Cluster, KubeError};

/// How long one dry-run or apply of one object may take, retries included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// LISTs in flight at once, as the engine's.
const LIST_CONCURRENCY: usize = 16;

/// One object of a [`Watched`] set, as resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Group, kind, namespace and name.
    pub identity: Identity,
    /// `Kind.group namespace/name`, as `apply` and `diff` report it.
    pub object: String,
    /// The `apiVersion` it is applied with.
    pub api_version: String,
    /// The resource that serves it.
    pub resource: ApiResource,
    /// Whether its kind is namespaced.
    pub namespaced: bool,
}

/// Where one watch runs: one kind, in one namespace or (cluster-scoped kinds) everywhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// The resource watched.
    pub resource: ApiResource,
    /// The namespace; `None` for a cluster-scoped kind.
    pub namespace: Option<String>,
}

impl Scope {
    /// A key naming the scope: `apiVersion plural [namespace]`; two scopes with the same
    /// key are the same watch.
    pub fn key(&self) -> String {
        format!("{} {} {}", self.resource.api_version, self.resource.plural, self.namespace.as_deref().unwrap_or(""))
    }

    /// The API to watch (or list) the scope through.
    pub fn api(&self, cluster: &Cluster) -> Api<DynamicObject> {
        match &self.namespace {
            Some(namespace) => Api::namespaced_with(cluster.client().clone(), namespace, &self.resource),
            None => Api::all_with(cluster.client().clone(), &self.resource),
        }
    }

    /// An object of the scope as JSON, with the `apiVersion` and `kind` that list items
    /// leave out; `None` for an object that is not a mapping.
    pub fn value(&self, object: &DynamicObject) -> Option<Value> {
        object_value(object, &self.resource)
    }

    /// The identity of an object of the scope.
    pub fn identity(&self, object: &DynamicObject) -> Identity {
        Identity {
            group: self.resource.group.clone(),
            kind: self.resource.kind.clone(),
            namespace: object.metadata.namespace.clone().unwrap_or_default(),
            name: object.metadata.name.clone().unwrap_or_default(),
        }
    }
}

/// What a diff of one member found.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberDiff {
    /// The fields that differ, as [`Cluster::diff`] reports them; empty when in sync, one
    /// with an empty path when the object does not exist.
    pub fields: Vec<Field>,
    /// Whether the object exists live.
    pub exists: bool,
    /// Whether the dry-run left the live object as it is, so that its `resourceVersion`
    /// may go into the cache ([`Watched::record`]). The times of `managedFields` entries
    /// are not compared: the 1.20 API server's dry-run stamps idp-lab's entry with the
    /// current time for objects with atomic lists (Gateway API routes and listeners) even
    /// when nothing else would change, and such an object would never be cached.
    pub cacheable: bool,
}

/// A component's objects, prepared and resolved as `apply` does it, to be diffed and
/// re-applied one at a time. Made by [`Cluster::watched`].
#[derive(Debug, Clone)]
pub struct Watched {
    items: Vec<Item>,
    members: Vec<Member>,
    hashes: Vec<String>,
    owned: Vec<&'static str>,
}

impl Cluster {
    /// Prepares `objects` as [`Cluster::apply`] would with `options` (normalised, owned,
    /// member-labelled, in apply order) and resolves their kinds through discovery.
    ///
    /// Errors: [`KubeError::Input`] for what the input gets wrong (a namespace on a
    /// cluster-scoped kind, an object given twice), [`KubeError::NotServed`] for kinds the
    /// server does not serve (apply them first), [`KubeError::Api`] when the server cannot
    /// be reached.
    pub async fn watched(&self, objects: Vec<Object>, options: &ApplyOptions) -> Result<Watched, KubeError> {
        let set_id = options.inventory.as_ref().map(crate::Inventory::id);
        let mut items = item::prepare(objects, &options.lab, &options.component, set_id.as_deref())?;
        let discovery = Discovery::new(self.client().clone(), self.server());
        discovery.prefetch(items.iter().map(Item::api_version)).await;
        let mut problems = Vec::new();
        let unserved = item::resolve(&discovery, &mut items, &options.namespace, &mut problems).await?;
        problems.extend(item::duplicates(&items));
        if !problems.is_empty() {
            return Err(KubeError::Input { problems });
        }
        if !unserved.is_empty() {
            let mut kinds: Vec<String> = unserved.iter().map(|&i| format!("{} {}", items[i].kind_name(), items[i].api_version())).collect();
            kinds.sort();
            kinds.dedup();
            return Err(KubeError::NotServed { server: self.server().to_owned(), kinds, dry_run: false });
        }
        let members = items
            .iter()
            .filter_map(|item| {
                let kind = item.kind.as_ref()?;
                Some(Member {
                    identity: item.identity(),
                    object: item.display(),
                    api_version: item.api_version().to_owned(),
                    resource: kind.resource.clone(),
                    namespaced: kind.namespaced,
                })
            })
            .collect();
        let hashes = items.iter().map(|i| cache::hash(&i.value)).collect();
        Ok(Watched { items, members, hashes, owned: options.owned_labels() })
    }

    /// Binds `cache` to this cluster (by its `kube-system` uid), dropping its entries when
    /// they were another cluster's, as `apply` and `diff` do before they read it.
    pub async fn bind_cache(&self, cache: &mut ApplyCache) -> Result<(), KubeError> {
        cache.bind(&self.cluster_uid().await?);
        Ok(())
    }
}

impl Watched {
    /// The members, in apply order.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// The hash of member `index` as it is applied (what the cache keys on); two
    /// [`Watched`] sets whose member hashes match want the same object.
    pub fn hash(&self, index: usize) -> &str {
        self.hashes.get(index).map_or("", String::as_str)
    }

    /// The object member `index` is applied as: normalised and owned.
    pub fn desired(&self, index: usize) -> Option<&Value> {
        self.items.get(index).map(|i| &i.value)
    }

    /// The watches that cover every member: one per kind and namespace, one per
    /// cluster-scoped kind. These are the kinds and namespaces an apply set's parent lists
    /// after `apply` with prune.
    pub fn scopes(&self) -> Vec<Scope> {
        let mut scopes: BTreeMap<String, Scope> = BTreeMap::new();
        for (member, item) in self.members.iter().zip(&self.items) {
            let namespace = member.namespaced.then(|| item.namespace().to_owned());
            let scope = Scope { resource: member.resource.clone(), namespace };
            scopes.entry(scope.key()).or_insert(scope);
        }
        scopes.into_values().collect()
    }

    /// Whether the cache knows member `index` in sync at `live`'s `resourceVersion`: its
    /// input and version are what the last apply (or an in-sync diff) left.
    pub fn fresh(&self, index: usize, live: &Value, cache: &ApplyCache) -> bool {
        let (Some(member), Some(hash)) = (self.members.get(index), self.hashes.get(index)) else { return false };
        cache.fresh(&member.object, hash, resource_version(live))
    }

    /// Records in `cache` that member `index` is in sync at `resource_version` (after an
    /// in-sync, [`MemberDiff::cacheable`] diff, or after [`Watched::apply_member`]).
    pub fn record(&self, index: usize, resource_version: &str, cache: &mut ApplyCache) {
        if let (Some(member), Some(hash)) = (self.members.get(index), self.hashes.get(index)) {
            cache.record(&member.object, hash, resource_version);
        }
    }

    /// Forgets member `index` in `cache` (after a failed apply).
    pub fn forget(&self, index: usize, cache: &mut ApplyCache) {
        if let Some(member) = self.members.get(index) {
            cache.forget(&member.object);
        }
    }

    /// What applying member `index` would change on `live` (`None`: it does not exist),
    /// as [`Cluster::diff`] finds it for one object: a server-side-apply dry-run compared
    /// by [`drift::drift`]. An absent object costs no request: it differs as a whole.
    pub async fn diff_member(&self, cluster: &Cluster, index: usize, live: Option<&Value>) -> Result<MemberDiff, KubeError> {
        let item = self.item(index)?;
        let Some(live) = live else {
            let fields = drift::drift(&item.value, &Value::Null, &self.owned).into_iter().map(Field::from).collect();
            return Ok(MemberDiff { fields, exists: false, cacheable: false });
        };
        let api = self.api(cluster, item)?;
        let dry = match apply::send(&api, item, true, Instant::now() + REQUEST_TIMEOUT).await {
            Ok(answer) => as_value(answer, item),
            Err(e) => return Err(refusal(cluster, item, "dry-run server-side apply of one object", e)),
        };
        let fields: Vec<Field> = drift::drift(&dry, live, &self.owned).into_iter().map(Field::from).collect();
        let cacheable = fields.is_empty() && (&dry == live || without_times(&dry) == without_times(live));
        Ok(MemberDiff { fields, exists: true, cacheable })
    }

    /// Applies member `index` as [`Cluster::apply`] does (server-side apply, field manager
    /// `idp-lab`, force, retried on 409, 429, 5xx) and returns the object as the server
    /// left it.
    pub async fn apply_member(&self, cluster: &Cluster, index: usize) -> Result<Value, KubeError> {
        let item = self.item(index)?;
        let api = self.api(cluster, item)?;
        match apply::send(&api, item, false, Instant::now() + REQUEST_TIMEOUT).await {
            Ok(answer) => Ok(as_value(answer, item)),
            Err(e) => Err(refusal(cluster, item, "server-side apply one object", e)),
        }
    }

    /// Member `index` as it is live; `None` when it does not exist.
    pub async fn get(&self, cluster: &Cluster, index: usize) -> Result<Option<Value>, KubeError> {
        let item = self.item(index)?;
        let api = self.api(cluster, item)?;
        let found = api.get_opt(item.name()).await.map_err(|e| KubeError::api("read one object", cluster.server(), e))?;
        Ok(found.map(|o| as_value(o, item)))
    }

    /// Every live object of the members' kinds and namespaces, by identity: one LIST per
    /// kind and namespace, the lists `apply` and `diff` make (the live module's
    /// `one_per_list`). The future is `Send`, so a caller can spawn it (the engine's
    /// `live_objects` borrows its items through a closure rustc cannot prove `Send` for
    /// every lifetime).
    pub async fn live(&self, cluster: &Cluster) -> Result<HashMap<Identity, Value>, KubeError> {
        let lists: Vec<(Item, Api<DynamicObject>)> =
            crate::live::one_per_list(&self.items, cluster.client()).map(|(item, api)| (item.clone(), api)).collect();
        let answers: Vec<_> = stream::iter(lists.into_iter().map(|(item, api)| async move {
            let answer = api.list(&ListParams::default()).await;
            (item, answer)
        }))
        .buffer_unordered(LIST_CONCURRENCY)
        .collect()
        .await;
        let mut out = HashMap::new();
        for (item, answer) in answers {
            let list = answer.map_err(|e| KubeError::api("list live objects", cluster.server(), e))?;
            for object in list.items {
                let identity = Identity {
                    group: item.identity().group,
                    kind: item.kind_name().to_owned(),
                    namespace: object.metadata.namespace.clone().unwrap_or_default(),
                    name: object.metadata.name.clone().unwrap_or_default(),
                };
                out.insert(identity, as_value(object, &item));
            }
        }
        Ok(out)
    }

    fn item(&self, index: usize) -> Result<&Item, KubeError> {
        self.items
            .get(index)
            .ok_or_else(|| KubeError::Input { problems: vec![format!("no member {index} (the set has {})", self.items.len())] })
    }

    fn api(&self, cluster: &Cluster, item: &Item) -> Result<Api<DynamicObject>, KubeError> {
        item.api(cluster.client())
            .ok_or_else(|| KubeError::Input { problems: vec![format!("{}: its kind is not resolved", item.display())] })
    }
}

/// An object without the `time` of its `managedFields` entries.
fn without_times(value: &Value) -> Value {
    let mut value = value.clone();
    if let Some(entries) = value.pointer_mut("/metadata/managedFields").and_then(Value::as_array_mut) {
        for entry in entries.iter_mut().filter_map(Value::as_object_mut) {
            entry.remove("time");
        }
    }
    value
}

/// A request's error: a refusal by the API server (an answer with a status) reads as
/// `apply` reports it, with the way out where there is one; anything else as an API error.
fn refusal(cluster: &Cluster, item: &Item, action: &'static str, e: kube::Error) -> KubeError {
    match &e {
        kube::Error::Api(status) if status.code != 0 => {
            KubeError::Refused { server: cluster.server().to_owned(), applied: 0, failures: vec![explain(item, &e)] }
        }
        _ => KubeError::api(action, cluster.server(), e),
    }
}

/// A watcher error on one line, as the readiness waits word it: what failed and the API
/// server's answer.
pub fn watch_error(e: &watcher::Error) -> String {
    crate::wait::watch_error(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn managed_field_times_are_not_a_change() {
        let live = json!({"kind": "Gateway", "metadata": {"name": "g", "resourceVersion": "7", "managedFields": [
            {"manager": "idp-lab", "operation": "Apply", "time": "2026-01-01T10:00:00Z", "fieldsV1": {"f:spec": {"f:listeners": {}}}}
        ]}, "spec": {"listeners": [{"name": "http"}]}});
        let mut dry = live.clone();
        dry["metadata"]["managedFields"][0]["time"] = json!("2026-01-01T10:05:00Z");
        assert_ne!(dry, live);
        assert_eq!(without_times(&dry), without_times(&live));
        let mut owned = dry.clone();
        owned["metadata"]["managedFields"][0]["fieldsV1"] = json!({"f:spec": {}});
        assert_ne!(without_times(&owned), without_times(&live), "who owns what is a change");
        let mut moved = dry;
        moved["metadata"]["resourceVersion"] = json!("8");
        assert_ne!(without_times(&moved), without_times(&live), "a new version is a change");
        assert_eq!(without_times(&json!("x")), json!("x"));
    }
}
