//! The Kubernetes plane: the one client every other plane uses to reach a cluster's
//! API (kubeconfig files, contexts, readiness of the API and its nodes).
//!
//! The public API speaks in project types ([`idp_core::cluster::KubeNode`],
//! [`idp_core::cluster::NodeSpec`]) and std types; `kube` and `k8s-openapi` stay inside.
//!
//! * [`kubeconfig`]: the lab's kubeconfig made from k3s', merged into and removed from
//!   the user's kubeconfig under the lock kubectl and kind use.
//! * [`Cluster`]: a connection made from a kubeconfig: `/readyz`, the nodes, and waiting
//!   for the nodes a plan expects.
//! * The apply engine: [`Cluster::apply`] (server-side apply in stages and waves, with
//!   discovery that survives the CRD race, readiness over watches, and an in-cluster
//!   [`Inventory`] with prune) and [`Cluster::diff`], both sparing an unchanged cluster
//!   its requests through the [`ApplyCache`].
//! * The lab's routes: [`Cluster::watch_routes`] (HTTPRoutes and their health, as a
//!   stream of [`RouteSnapshot`]s) and [`Cluster::routes`].
//! * The playbook [`actions`]: [`Cluster::rollout_restart`], [`Cluster::sync_application`],
//!   [`Cluster::refresh_external_secret`] and [`Cluster::submit_workflow`].
//! * Objects of any kind as JSON, for verdicts outside this crate:
//!   [`Cluster::list_objects`] of a [`KindRef`].

pub mod actions;
mod apply;
mod cache;
mod cluster;
mod diff;
mod discovery;
pub mod dynamic;
mod error;
pub mod inventory;
mod item;
pub mod kubeconfig;
mod live;
mod lock;
mod objects;
pub mod proxy;
mod routes;
mod wait;
pub mod watch_diff;

pub use apply::{Action, Applied, ApplyOptions, ApplyReport, DEFAULT_CONCURRENCY, FIELD_MANAGER, Progress};
pub use cache::ApplyCache;
pub use cluster::Cluster;
pub use diff::{DiffReport, Field, ObjectDiff};
pub use error::{Cause, KubeError};
pub use inventory::Inventory;
pub use objects::KindRef;
pub use routes::RouteSnapshot;
