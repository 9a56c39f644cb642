//! The live objects of a run's kinds and namespaces: one LIST per kind and namespace,
//! shared by apply (the cache, the settling after a wait) and diff.

use std::collections::{BTreeMap, HashMap};

use futures::{StreamExt as _, stream};
use idp_core::objects::{self, Identity};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{DynamicObject, ListParams};
use serde_json::Value;

use crate::item::Item;
use crate::{Cluster, KubeError};

/// LISTs in flight at once.
const LIST_CONCURRENCY: usize = 16;

impl Cluster {
    /// The `resourceVersion` of every live object of the items' kinds and namespaces:
    /// one metadata LIST per kind and namespace.
    pub(crate) async fn live_versions(&self, items: &[Item]) -> Result<HashMap<Identity, String>, KubeError> {
        let answers: Vec<_> = stream::iter(
            one_per_list(items, self.client()).map(|(item, api)| async move { (item, api.list_metadata(&ListParams::default()).await) }),
        )
        .buffer_unordered(LIST_CONCURRENCY)
        .collect()
        .await;
        let mut out = HashMap::new();
        for (item, answer) in answers {
            let list = answer.map_err(|e| KubeError::api("list live objects", self.server(), e))?;
            for meta in list.items {
                out.insert(listed(item, &meta.metadata), meta.metadata.resource_version.unwrap_or_default());
            }
        }
        Ok(out)
    }

    /// Every live object of the items' kinds and namespaces: one LIST per kind and
    /// namespace.
    pub(crate) async fn live_objects(&self, items: &[Item]) -> Result<HashMap<Identity, Value>, KubeError> {
        let requests = one_per_list(items, self.client());
        let answers: Vec<_> = stream::iter(requests.map(|(item, api)| async move { (item, api.list(&ListParams::default()).await) }))
            .buffer_unordered(LIST_CONCURRENCY)
            .collect()
            .await;
        let mut out = HashMap::new();
        for (item, answer) in answers {
            let list = answer.map_err(|e| KubeError::api("list live objects", self.server(), e))?;
            for object in list.items {
                out.insert(listed(item, &object.metadata), as_value(object, item));
            }
        }
        Ok(out)
    }
}

/// The identity of a listed object of `item`'s kind.
fn listed(item: &Item, metadata: &ObjectMeta) -> Identity {
    Identity {
        group: objects::api_group(item.api_version()).to_owned(),
        kind: item.kind_name().to_owned(),
        namespace: metadata.namespace.clone().unwrap_or_default(),
        name: metadata.name.clone().unwrap_or_default(),
    }
}

/// One item of each kind and namespace among `items`, with the API to list them.
pub(crate) fn one_per_list<'a>(items: &'a [Item], client: &kube::Client) -> impl Iterator<Item = (&'a Item, Api<DynamicObject>)> {
    let mut lists: BTreeMap<(&str, &str, &str), &Item> = BTreeMap::new();
    for item in items.iter().filter(|i| i.kind.is_some()) {
        lists.entry((item.api_version(), item.kind_name(), item.namespace())).or_insert(item);
    }
    let client = client.clone();
    lists.into_values().filter_map(move |item| Some((item, item.api(&client)?)))
}

/// A listed object as JSON, with the `apiVersion` and `kind` a LIST leaves out of items.
pub(crate) fn as_value(object: DynamicObject, item: &Item) -> Value {
    item.kind.as_ref().and_then(|kind| crate::discovery::object_value(&object, &kind.resource)).unwrap_or(Value::Null)
}

/// The `resourceVersion` of an object as JSON; empty when it has none.
pub(crate) fn resource_version(value: &Value) -> &str {
    value.pointer("/metadata/resourceVersion").and_then(Value::as_str).unwrap_or_default()
}
