//! Objects of kinds this crate has no type for, for the watchdog (the house rule lets it
//! name kube types): a [`kube::Api`] of [`DynamicObject`]s for one [`ApiResource`], made
//! with the cluster's own client, so it shares its connection pool and authentication.
//!
//! The watchdog lists Pyrra `ServiceLevelObjective`s through it.

use kube::Api;
use kube::api::DynamicObject;
use kube::discovery::ApiResource;

use crate::Cluster;

impl Cluster {
    /// An API for the objects of `resource`: in every namespace with `None` (a LIST is
    /// cluster-wide), in one namespace with `Some`. Nothing is sent yet.
    pub fn dynamic_api(&self, resource: &ApiResource, namespace: Option<&str>) -> Api<DynamicObject> {
        match namespace {
            Some(namespace) => Api::namespaced_with(self.client().clone(), namespace, resource),
            None => Api::all_with(self.client().clone(), resource),
        }
    }
}
