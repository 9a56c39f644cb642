//! Every object of one kind, listed once, as JSON: for the commands that judge objects
//! with [`idp_core::readiness`] (`idp-lab verify`: Nodes, Argo CD Applications,
//! Gateways, ExternalSecrets) and must not name kube types.

use kube::api::{Api, DynamicObject, ListParams};
use kube::discovery::ApiResource;
use serde_json::Value;

use crate::discovery::object_value;
use crate::{Cluster, KubeError};

/// A kind to list: its API group (empty for the core group), version, kind and plural.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KindRef<'a> {
    /// The group, e.g. `argoproj.io`; empty for the core group (`v1`).
    pub group: &'a str,
    /// The version, e.g. `v1alpha1`.
    pub version: &'a str,
    /// The kind, e.g. `Application`.
    pub kind: &'a str,
    /// Its plural, e.g. `applications`.
    pub plural: &'a str,
}

impl KindRef<'_> {
    /// `apiVersion` as objects carry it: `v1`, `argoproj.io/v1alpha1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.to_owned() } else { format!("{}/{}", self.group, self.version) }
    }

    /// The resource's name as kubectl spells it: `nodes`, `applications.argoproj.io`.
    pub fn resource(&self) -> String {
        if self.group.is_empty() { self.plural.to_owned() } else { format!("{}.{}", self.plural, self.group) }
    }

    fn api_resource(&self) -> ApiResource {
        ApiResource {
            group: self.group.to_owned(),
            version: self.version.to_owned(),
            api_version: self.api_version(),
            kind: self.kind.to_owned(),
            plural: self.plural.to_owned(),
        }
    }
}

impl Cluster {
    /// Every object of `kind` in every namespace (one LIST), as JSON with the
    /// `apiVersion` and `kind` that list items lack, sorted by namespace and name; `None`
    /// when the API server does not serve the kind (404: its CRD is not installed).
    pub async fn list_objects(&self, kind: &KindRef<'_>) -> Result<Option<Vec<Value>>, KubeError> {
        let resource = kind.api_resource();
        let api: Api<DynamicObject> = Api::all_with(self.client().clone(), &resource);
        let listed = match api.list(&ListParams::default()).await {
            Ok(list) => list.items,
            Err(kube::Error::Api(status)) if status.code == 404 => return Ok(None),
            Err(source) => return Err(KubeError::api("list objects", self.server(), source)),
        };
        let mut objects: Vec<Value> = listed.iter().filter_map(|o| object_value(o, &resource)).collect();
        let key = |v: &Value| {
            let at = |p: &str| v.pointer(p).and_then(Value::as_str).unwrap_or_default().to_owned();
            (at("/metadata/namespace"), at("/metadata/name"))
        };
        objects.sort_by_key(key);
        Ok(Some(objects))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_name_their_api_version_and_resource() {
        let node = KindRef { group: "", version: "v1", kind: "Node", plural: "nodes" };
        assert_eq!((node.api_version(), node.resource()), ("v1".to_owned(), "nodes".to_owned()));
        let app = KindRef { group: "argoproj.io", version: "v1alpha1", kind: "Application", plural: "applications" };
        assert_eq!((app.api_version(), app.resource()), ("argoproj.io/v1alpha1".to_owned(), "applications.argoproj.io".to_owned()));
        assert_eq!(app.api_resource().api_version, "argoproj.io/v1alpha1");
    }
}
