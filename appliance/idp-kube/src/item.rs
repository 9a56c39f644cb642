//! An object on its way to the cluster: prepared (normalised, owned, member-labelled,
//! in apply order), then resolved (its kind served, its namespace set or checked).

use std::collections::HashMap;

use idp_core::objects::{self, Identity, Object, SortKey};
use kube::Api;
use kube::api::DynamicObject;
use serde_json::Value;

use crate::KubeError;
use crate::discovery::{Discovery, Kind};
use crate::inventory::PART_OF_LABEL;
use crate::wait::Target;

/// An object on its way.
#[derive(Debug, Clone)]
pub(crate) struct Item {
    /// Where it came from.
    pub place: objects::Place,
    /// Its apply order.
    pub key: SortKey,
    /// The object to send: normalised and owned.
    pub value: Value,
    /// Its kind once resolved.
    pub kind: Option<Kind>,
}

impl Item {
    pub(crate) fn api_version(&self) -> &str {
        self.value.get("apiVersion").and_then(Value::as_str).unwrap_or_default()
    }

    pub(crate) fn kind_name(&self) -> &str {
        &self.key.kind
    }

    pub(crate) fn name(&self) -> &str {
        &self.key.name
    }

    /// The namespace as it will be sent; empty for none.
    pub(crate) fn namespace(&self) -> &str {
        self.value.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or_default()
    }

    pub(crate) fn identity(&self) -> Identity {
        Identity {
            group: objects::api_group(self.api_version()).to_owned(),
            kind: self.key.kind.clone(),
            namespace: self.namespace().to_owned(),
            name: self.key.name.clone(),
        }
    }

    pub(crate) fn display(&self) -> String {
        self.identity().to_string()
    }

    /// The API to reach it; `None` before it is resolved.
    pub(crate) fn api(&self, client: &kube::Client) -> Option<Api<DynamicObject>> {
        let kind = self.kind.as_ref()?;
        Some(if kind.namespaced {
            Api::namespaced_with(client.clone(), self.namespace(), &kind.resource)
        } else {
            Api::all_with(client.clone(), &kind.resource)
        })
    }

    pub(crate) fn target(&self) -> Option<Target> {
        Some(Target {
            kind: self.kind.clone()?,
            namespace: self.namespace().to_owned(),
            name: self.name().to_owned(),
            identity: self.identity(),
        })
    }
}

/// Prepares objects: normalised, owned, member-labelled, in apply order.
pub(crate) fn prepare(objects: Vec<Object>, lab: &str, component: &str, set_id: Option<&str>) -> Result<Vec<Item>, KubeError> {
    let mut objects = objects;
    objects::order(&mut objects).map_err(|e| KubeError::Input { problems: vec![e.to_string()] })?;
    let mut items = Vec::with_capacity(objects.len());
    for object in objects {
        let mut value = object.value;
        objects::normalize(&mut value);
        objects::own(&mut value, lab, component);
        if let Some(id) = set_id
            && let Some(labels) = value.pointer_mut("/metadata/labels").and_then(Value::as_object_mut)
        {
            labels.insert(PART_OF_LABEL.into(), Value::String(id.to_owned()));
        }
        let key =
            objects::sort_key(&value, object.wave).map_err(|e| KubeError::Input { problems: vec![format!("{}: {e}", object.place)] })?;
        items.push(Item { place: object.place, key, value, kind: None });
    }
    Ok(items)
}

/// Resolves every item that is not yet, and sets or checks its namespace; returns the
/// items still not served. Problems with namespaces are all collected.
pub(crate) async fn resolve(
    discovery: &Discovery,
    items: &mut [Item],
    namespace: &str,
    problems: &mut Vec<String>,
) -> Result<Vec<usize>, KubeError> {
    let mut unserved = Vec::new();
    for (i, item) in items.iter_mut().enumerate() {
        if item.kind.is_some() {
            continue;
        }
        let Some(kind) = discovery.resolve(item.api_version(), item.kind_name()).await? else {
            unserved.push(i);
            continue;
        };
        let given = item.namespace().to_owned();
        if kind.namespaced && given.is_empty() {
            if let Some(metadata) = item.value.get_mut("metadata").and_then(Value::as_object_mut) {
                metadata.insert("namespace".into(), Value::String(namespace.to_owned()));
            }
        } else if !kind.namespaced && !given.is_empty() {
            problems.push(format!(
                "{}: {} {} is cluster-scoped, but the object names namespace {given:?}; remove metadata.namespace",
                item.place,
                item.kind_name(),
                item.name()
            ));
        }
        item.key.namespace = item.namespace().to_owned();
        item.kind = Some(kind);
    }
    Ok(unserved)
}

/// Duplicates after namespaces were defaulted (`a` without a namespace and `a` in
/// `default` are the same object).
pub(crate) fn duplicates(items: &[Item]) -> Vec<String> {
    let mut seen: HashMap<Identity, &objects::Place> = HashMap::new();
    let mut out = Vec::new();
    for item in items.iter().filter(|i| i.kind.is_some()) {
        let identity = item.identity();
        if let Some(first) = seen.get(&identity) {
            out.push(format!("{}: {identity} is given twice, first at {first}", item.place));
        } else {
            seen.insert(identity, &item.place);
        }
    }
    out
}
