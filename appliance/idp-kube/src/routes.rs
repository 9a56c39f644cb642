//! The lab's HTTPRoutes with their health, for the HTTPS entry, its landing page and
//! `idp-lab urls`: a watch that republishes [`idp_core::routes::routes`] on every change,
//! and a one-shot list.
//!
//! [`Cluster::watch_routes`] runs two watches, all namespaces: HTTPRoutes
//! (`gateway.networking.k8s.io/v1`) and core Endpoints. Nothing is polled. Each watch
//! is kube's watcher with its default backoff, so an API server that restarts, or an
//! HTTPRoute CRD that is installed later, is picked up without a restart of the caller;
//! while a watch fails, its last error is in the snapshot.

use std::collections::BTreeMap;

use futures::StreamExt as _;
use futures::stream::{self, BoxStream};
use idp_core::routes::{self, Route};
use k8s_openapi::api::core::v1::Endpoints;
use kube::api::{Api, DynamicObject, ListParams};
use kube::discovery::ApiResource;
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher::{self, Event};
use serde_json::Value;
use tokio::sync::watch;

use crate::discovery::object_value;
use crate::{Cluster, KubeError};

/// What the route watch knows at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteSnapshot {
    /// The routes, sorted by namespace and name.
    pub routes: Vec<Route>,
    /// Whether both watches have listed everything at least once: until then `routes`
    /// may be missing some.
    pub synced: bool,
    /// The last error of a watch that is failing now (the API is unreachable, the
    /// HTTPRoute CRD is not installed), if any.
    pub error: Option<String>,
}

/// The HTTPRoute resource, v1 (Gateway API 1.0 and later).
fn httproute_resource() -> ApiResource {
    ApiResource {
        group: "gateway.networking.k8s.io".into(),
        version: "v1".into(),
        api_version: "gateway.networking.k8s.io/v1".into(),
        kind: "HTTPRoute".into(),
        plural: "httproutes".into(),
    }
}

/// Which watch an event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Routes,
    Endpoints,
}

/// One watch's view: the objects by namespace and name, and the list being rebuilt
/// during a (re)list.
#[derive(Default)]
struct Store {
    objects: BTreeMap<(String, String), Value>,
    relisting: Option<BTreeMap<(String, String), Value>>,
    synced: bool,
    error: Option<String>,
}

impl Store {
    fn key(value: &Value) -> Option<(String, String)> {
        let meta = value.get("metadata")?;
        let namespace = meta.get("namespace").and_then(Value::as_str).unwrap_or_default();
        Some((namespace.to_owned(), meta.get("name")?.as_str()?.to_owned()))
    }

    /// Takes one event; whether what the store shows changed.
    fn take(&mut self, event: watcher::Result<Event<Value>>) -> bool {
        match event {
            Err(e) => {
                let text = e.to_string();
                let changed = self.error.as_deref() != Some(text.as_str());
                self.error = Some(text);
                changed
            }
            Ok(event) => {
                let had_error = self.error.take().is_some();
                match event {
                    Event::Init => {
                        self.relisting = Some(BTreeMap::new());
                        had_error
                    }
                    Event::InitApply(value) => {
                        if let (Some(key), Some(list)) = (Store::key(&value), self.relisting.as_mut()) {
                            list.insert(key, value);
                        }
                        had_error
                    }
                    Event::InitDone => {
                        if let Some(list) = self.relisting.take() {
                            self.objects = list;
                        }
                        self.synced = true;
                        true
                    }
                    Event::Apply(value) => match Store::key(&value) {
                        Some(key) => self.objects.insert(key, value.clone()).as_ref() != Some(&value) || had_error,
                        None => had_error,
                    },
                    Event::Delete(value) => Store::key(&value).is_some_and(|key| self.objects.remove(&key).is_some()) || had_error,
                }
            }
        }
    }
}

fn snapshot(routes_store: &Store, endpoints_store: &Store) -> RouteSnapshot {
    let httproutes: Vec<Value> = routes_store.objects.values().cloned().collect();
    let endpoints: Vec<Value> = endpoints_store.objects.values().cloned().collect();
    let error = match (&routes_store.error, &endpoints_store.error) {
        (Some(r), _) => Some(format!("watching HTTPRoutes: {r}")),
        (None, Some(e)) => Some(format!("watching Endpoints: {e}")),
        (None, None) => None,
    };
    RouteSnapshot { routes: routes::routes(&httproutes, &endpoints), synced: routes_store.synced && endpoints_store.synced, error }
}

fn endpoints_value(endpoints: &Endpoints) -> Option<Value> {
    serde_json::to_value(endpoints).ok()
}

impl Cluster {
    /// Watches the cluster's HTTPRoutes and Endpoints and sends a new [`RouteSnapshot`]
    /// into `sender` whenever the routes, their health, or a watch's error changes. Runs
    /// until every receiver is dropped; a failing watch is retried with backoff, never
    /// given up on.
    pub async fn watch_routes(&self, sender: watch::Sender<RouteSnapshot>) {
        let resource = httproute_resource();
        let routes_api: Api<DynamicObject> = Api::all_with(self.client().clone(), &resource);
        let endpoints_api: Api<Endpoints> = Api::all(self.client().clone());
        let route_events: BoxStream<'static, (Source, watcher::Result<Event<Value>>)> =
            watcher::watcher(routes_api, watcher::Config::default())
                .default_backoff()
                .map(move |event| (Source::Routes, event.map(|e| map_event(e, |o| object_value(&o, &resource)))))
                .boxed();
        let endpoint_events: BoxStream<'static, (Source, watcher::Result<Event<Value>>)> =
            watcher::watcher(endpoints_api, watcher::Config::default())
                .default_backoff()
                .map(|event| (Source::Endpoints, event.map(|e| map_event(e, |o| endpoints_value(&o)))))
                .boxed();
        let mut events = stream::select(route_events, endpoint_events);
        let mut stores = (Store::default(), Store::default());
        loop {
            let next = tokio::select! {
                next = events.next() => next,
                () = sender.closed() => return,
            };
            let Some((source, event)) = next else { return };
            let changed = match source {
                Source::Routes => stores.0.take(event),
                Source::Endpoints => stores.1.take(event),
            };
            if changed {
                let next = snapshot(&stores.0, &stores.1);
                sender.send_if_modified(|current| {
                    let modified = *current != next;
                    if modified {
                        *current = next;
                    }
                    modified
                });
            }
        }
    }

    /// The cluster's routes with their health, listed once. An API server without the
    /// HTTPRoute kind has no routes.
    pub async fn routes(&self) -> Result<Vec<Route>, KubeError> {
        let resource = httproute_resource();
        let routes_api: Api<DynamicObject> = Api::all_with(self.client().clone(), &resource);
        let listed = match routes_api.list(&ListParams::default()).await {
            Ok(list) => list.items,
            Err(kube::Error::Api(status)) if status.code == 404 => return Ok(Vec::new()),
            Err(source) => return Err(KubeError::api("list HTTPRoutes", self.server(), source)),
        };
        let httproutes: Vec<Value> = listed.iter().filter_map(|o| object_value(o, &resource)).collect();
        let endpoints_api: Api<Endpoints> = Api::all(self.client().clone());
        let endpoints =
            endpoints_api.list(&ListParams::default()).await.map_err(|source| KubeError::api("list Endpoints", self.server(), source))?;
        let endpoints: Vec<Value> = endpoints.items.iter().filter_map(endpoints_value).collect();
        Ok(routes::routes(&httproutes, &endpoints))
    }
}

/// `event` with its objects converted by `convert` (dropped where that fails).
fn map_event<K>(event: Event<K>, convert: impl Fn(K) -> Option<Value>) -> Event<Value> {
    match event {
        Event::Init => Event::Init,
        Event::InitDone => Event::InitDone,
        Event::InitApply(o) => convert(o).map_or(Event::InitApply(Value::Null), Event::InitApply),
        Event::Apply(o) => convert(o).map_or(Event::Apply(Value::Null), Event::Apply),
        Event::Delete(o) => convert(o).map_or(Event::Delete(Value::Null), Event::Delete),
    }
}
