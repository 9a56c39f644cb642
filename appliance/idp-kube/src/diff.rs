//! Diff: what applying the input would change, object by object.
//!
//! Each object is sent as a server-side-apply dry-run (the server defaults it, runs its
//! webhooks and merges every other manager's fields) and compared with the live object
//! by Flux's rule ([`idp_core::drift`]): first the labels and annotations idp-lab sets,
//! then everything but metadata and status. A label someone else added is theirs: SSA
//! leaves it, so it is not drift.
//!
//! One LIST per kind and namespace gives the live objects; an object whose input and
//! `resourceVersion` match the [`ApplyCache`] is known to be in sync and costs no
//! dry-run.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::{StreamExt as _, stream};
use idp_core::drift::{self, FieldDiff};
use idp_core::objects::Object;
use kube::api::DynamicObject;
use serde::Serialize;
use serde_json::Value;

use crate::apply::{self, ApplyOptions, explain};
use crate::cache::{self, ApplyCache};
use crate::discovery::Discovery;
use crate::item::{self, Item};
use crate::live::{as_value, resource_version};
use crate::{Cluster, KubeError};

/// How long a diff's requests may take together.
const DIFF_TIMEOUT: Duration = Duration::from_secs(120);

/// One field that differs, for machines.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Field {
    /// Where, as [`FieldDiff::path`] names it; empty for the whole object.
    pub path: String,
    /// The live value; absent when the live object lacks it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live: Option<Value>,
    /// The value idp-lab would set; absent when it would not have the field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub desired: Option<Value>,
}

/// One object that would change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ObjectDiff {
    /// `Kind.group namespace/name`.
    pub object: String,
    /// Whether it exists live (else applying creates it).
    pub exists: bool,
    /// The fields that differ; one with an empty path when it does not exist.
    pub fields: Vec<Field>,
    /// The unified diff from live to desired (`--- live`, `+++ desired`).
    pub unified: String,
}

/// What a diff found.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DiffReport {
    /// Objects compared.
    pub compared: usize,
    /// Of them, known in sync from the cache (no dry-run sent).
    pub cached: usize,
    /// Objects that would change, in apply order.
    pub drifted: Vec<ObjectDiff>,
}

impl From<FieldDiff> for Field {
    fn from(d: FieldDiff) -> Field {
        Field { path: d.path, live: d.live, desired: d.desired }
    }
}

impl Cluster {
    /// What applying `objects` with `options` would change; see the module docs. The
    /// `cache` is read, and learns objects found in sync.
    pub async fn diff(&self, objects: Vec<Object>, options: &ApplyOptions, cache: &mut ApplyCache) -> Result<DiffReport, KubeError> {
        let deadline = Instant::now() + DIFF_TIMEOUT;
        let client = self.client();
        let server = self.server();
        let set_id = options.inventory.as_ref().map(crate::Inventory::id);
        let mut items = item::prepare(objects, &options.lab, &options.component, set_id.as_deref())?;
        let discovery = Discovery::new(client.clone(), server);
        let (uid, ()) = tokio::join!(self.cluster_uid(), discovery.prefetch(items.iter().map(Item::api_version)));
        cache.bind(&uid?);
        let mut problems = Vec::new();
        item::resolve(&discovery, &mut items, &options.namespace, &mut problems).await?;
        if !problems.is_empty() {
            return Err(KubeError::Input { problems });
        }
        let live = self.live_objects(&items).await?;
        let owned = options.owned_labels();
        let hashes: Vec<String> = items.iter().map(|i| cache::hash(&i.value)).collect();
        let plans: Vec<(&Item, &String, Option<&Value>, bool)> = items
            .iter()
            .zip(&hashes)
            .map(|(item, hash)| {
                let current = live.get(&item.identity());
                let in_sync = current.is_some_and(|l| cache.fresh(&item.display(), hash, resource_version(l)));
                (item, hash, current, in_sync)
            })
            .collect();
        let work = plans.into_iter().map(|(item, hash, current, in_sync)| {
            async move {
                if in_sync {
                    return (item, hash, current, Ok(None));
                }
                // A kind not served yet (its CRD is in the input) or a namespace that does
                // not exist yet: applying creates the object as given.
                let Some(api) = item.api(client) else { return (item, hash, current, Ok(Some(item.value.clone()))) };
                let result = match send_dry_run(&api, item, deadline).await {
                    Ok(dry) => Ok(Some(dry)),
                    Err(kube::Error::Api(s)) if s.code == 404 && current.is_none() => Ok(Some(item.value.clone())),
                    Err(e) => Err(explain(item, &e)),
                };
                (item, hash, current, result)
            }
        });
        let mut results = stream::iter(work).buffer_unordered(options.concurrency.max(1));
        let mut report = DiffReport { compared: items.len(), ..DiffReport::default() };
        let mut drifted = BTreeMap::new();
        let mut refused = Vec::new();
        while let Some((item, hash, current, result)) = results.next().await {
            let dry = match result {
                Ok(None) => {
                    report.cached += 1;
                    continue;
                }
                Ok(Some(dry)) => dry,
                Err(message) => {
                    refused.push(message);
                    continue;
                }
            };
            let live_value = current.cloned().unwrap_or(Value::Null);
            let fields = drift::drift(&dry, &live_value, &owned);
            if let Some(current) = current
                && fields.is_empty()
                && &dry == current
            {
                cache.record(&item.display(), hash, resource_version(current));
            }
            if !fields.is_empty() {
                drifted.insert(
                    item.display(),
                    ObjectDiff {
                        object: item.display(),
                        exists: current.is_some(),
                        fields: fields.into_iter().map(Field::from).collect(),
                        unified: drift::unified(&dry, &live_value),
                    },
                );
            }
        }
        if !refused.is_empty() {
            refused.sort();
            return Err(KubeError::Refused { server: server.to_owned(), applied: 0, failures: refused });
        }
        report.drifted = items.iter().filter_map(|i| drifted.remove(&i.display())).collect();
        Ok(report)
    }
}

/// A server-side-apply dry-run of one item, as JSON.
async fn send_dry_run(api: &kube::Api<DynamicObject>, item: &Item, deadline: Instant) -> Result<Value, kube::Error> {
    let answer = apply::send(api, item, true, deadline).await?;
    Ok(as_value(answer, item))
}
