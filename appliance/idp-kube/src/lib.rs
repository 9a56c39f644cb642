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

mod cluster;
mod error;
pub mod kubeconfig;
mod lock;

pub use cluster::Cluster;
pub use error::{Cause, KubeError};
