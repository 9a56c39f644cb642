//! Discovery: which resource serves a kind, and whether it is namespaced, asked of the
//! API server for exactly the group version an object names (`GET /apis/G/V` or
//! `/api/v1`), never guessed from the kind.
//!
//! A group version that answers 404, or that does not list the kind, is *not served
//! yet*: its CRD may be on its way (applied earlier in the run, or by a chart the run
//! installed). The 1.20 API server answers 404 for some seconds after a CRD is
//! `Established` (`../shared/testbed/NOTES.md`), so callers retry what is not served
//! until their deadline, and [`Discovery::forget`] a group version once its CRD is
//! established. Answers are cached for the life of the value; a group version is
//! asked once however many objects name it.

use std::collections::HashMap;
use std::sync::Mutex;

use kube::api::DynamicObject;
use kube::discovery::ApiResource;
use serde_json::Value;

use crate::KubeError;

/// A kind the API server serves: its resource, and whether it is namespaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Kind {
    /// The resource: group, version, kind and plural.
    pub resource: ApiResource,
    /// Whether objects of the kind live in a namespace.
    pub namespaced: bool,
}

/// The kinds each group version serves, as far as asked.
pub(crate) struct Discovery {
    client: kube::Client,
    server: String,
    /// `apiVersion` → kind → [`Kind`]; an empty map for a group version that answered 404.
    served: Mutex<HashMap<String, HashMap<String, Kind>>>,
}

impl Discovery {
    /// Discovery through `client`, whose server is `server` (for errors).
    pub(crate) fn new(client: kube::Client, server: &str) -> Discovery {
        Discovery { client, server: server.to_owned(), served: Mutex::new(HashMap::new()) }
    }

    /// The kind `kind` of `api_version`, or `None` when the API server does not serve
    /// it (yet). Only a failure to reach the server, or an answer other than a list or
    /// 404, is an error.
    pub(crate) async fn resolve(&self, api_version: &str, kind: &str) -> Result<Option<Kind>, KubeError> {
        if let Some(kinds) = self.cached(api_version) {
            return Ok(kinds.get(kind).cloned());
        }
        let kinds = self.ask(api_version).await?;
        let found = kinds.get(kind).cloned();
        if let Ok(mut served) = self.served.lock() {
            served.insert(api_version.to_owned(), kinds);
        }
        Ok(found)
    }

    /// Asks for every group version of `api_versions` at once (each once), so that the
    /// [`Discovery::resolve`] calls that follow are answered from the cache. Errors are
    /// left for `resolve` to meet again.
    pub(crate) async fn prefetch<'a>(&self, api_versions: impl IntoIterator<Item = &'a str>) {
        let wanted: std::collections::BTreeSet<&str> = api_versions.into_iter().filter(|v| self.cached(v).is_none()).collect();
        let answers = futures::future::join_all(wanted.into_iter().map(|v| async move { (v, self.ask(v).await) })).await;
        if let Ok(mut served) = self.served.lock() {
            for (api_version, answer) in answers {
                if let Ok(kinds) = answer {
                    served.insert(api_version.to_owned(), kinds);
                }
            }
        }
    }

    /// Forgets what `api_version` served, so that the next [`Discovery::resolve`] asks
    /// again (after its CRD was applied or became established).
    pub(crate) fn forget(&self, api_version: &str) {
        if let Ok(mut served) = self.served.lock() {
            served.remove(api_version);
        }
    }

    /// The kind `kind` of `group` at the version the server prefers, or `None` when the
    /// group or the kind is not served (for prune, where only group and kind are known).
    pub(crate) async fn resolve_group_kind(&self, group: &str, kind: &str) -> Result<Option<Kind>, KubeError> {
        let versions: Vec<String> = if group.is_empty() {
            vec!["v1".to_owned()]
        } else {
            let groups = self.client.list_api_groups().await.map_err(|e| KubeError::api("list API groups", &self.server, e))?;
            let Some(found) = groups.groups.into_iter().find(|g| g.name == group) else { return Ok(None) };
            let preferred = found.preferred_version.map(|v| v.group_version);
            let mut versions: Vec<String> = preferred.into_iter().collect();
            versions.extend(found.versions.into_iter().map(|v| v.group_version));
            versions
        };
        for api_version in versions {
            if let Some(kind) = self.resolve(&api_version, kind).await? {
                return Ok(Some(kind));
            }
        }
        Ok(None)
    }

    fn cached(&self, api_version: &str) -> Option<HashMap<String, Kind>> {
        self.served.lock().ok()?.get(api_version).cloned()
    }

    /// Asks the server for the resources of one group version; 404 is none.
    async fn ask(&self, api_version: &str) -> Result<HashMap<String, Kind>, KubeError> {
        let answer = match api_version.split_once('/') {
            None => self.client.list_core_api_resources(api_version).await,
            Some(_) => self.client.list_api_group_resources(api_version).await,
        };
        let list = match answer {
            Ok(list) => list,
            Err(kube::Error::Api(status)) if status.code == 404 => {
                tracing::debug!(api_version, "group version not served (yet)");
                return Ok(HashMap::new());
            }
            Err(e) => return Err(KubeError::api("discover the API", &self.server, e)),
        };
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let mut kinds = HashMap::new();
        // Subresources (`deployments/status`) share their parent's kind: skip them.
        for resource in list.resources.into_iter().filter(|r| !r.name.contains('/')) {
            let namespaced = resource.namespaced;
            let api = ApiResource {
                group: group.to_owned(),
                version: version.to_owned(),
                api_version: api_version.to_owned(),
                kind: resource.kind.clone(),
                plural: resource.name,
            };
            kinds.insert(resource.kind, Kind { resource: api, namespaced });
        }
        Ok(kinds)
    }
}

/// An object of `resource` as JSON, with the `apiVersion` and `kind` that list items and
/// watch events leave out (the readiness verdicts and the drift rules dispatch on them);
/// `None` for an object that is not a JSON mapping.
pub(crate) fn object_value(object: &DynamicObject, resource: &ApiResource) -> Option<Value> {
    let mut value = serde_json::to_value(object).ok()?;
    let map = value.as_object_mut()?;
    map.insert("apiVersion".to_owned(), Value::String(resource.api_version.clone()));
    map.insert("kind".to_owned(), Value::String(resource.kind.clone()));
    Some(value)
}
