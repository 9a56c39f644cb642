//! The provisioning plane: a lab's k3s nodes as Docker containers, made through the
//! Docker Engine API the way k3d makes them (see `../shared/reference/anchors-provisioning.md`
//! §(d)), with no k3d, k3s or kubectl binary on the host.
//!
//! The decisions are pure and live in `idp_core::cluster` (what each container looks
//! like, what to create, start or leave alone); this crate observes Docker and carries
//! the resulting [`Action`]s out. It is the only crate that names bollard types.

mod docker;
mod error;
mod files;

pub use docker::{EngineInfo, PrivilegeProbe, Removed};
pub use error::ProvisionError;

use idp_core::cluster::{Action, ClusterPlan, Observed};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// What the host contributes to node containers at creation, outside the plan (it
/// may change between runs without the nodes needing a recreate).
#[derive(Debug, Clone, Default)]
pub struct HostInputs {
    /// The lab's join token (from the 0600 file in its state directory).
    pub token: String,
    /// The host's resolvers, for the pods' resolv.conf.
    pub nameservers: Vec<IpAddr>,
    /// The host's proxy variables.
    pub proxy_env: Vec<(String, String)>,
    /// The lab's state directory (the fake `/proc/meminfo` of each node lives there).
    pub state_dir: PathBuf,
}

/// Something that happened while carrying out a plan, for progress lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// The lab network was created.
    NetworkCreated {
        /// Its name.
        name: String,
    },
    /// A node container was created and its files uploaded.
    NodeCreated {
        /// The node.
        node: String,
    },
    /// A node container was started.
    NodeStarted {
        /// The node.
        node: String,
    },
    /// A node logged its readiness line.
    NodeReady {
        /// The node.
        node: String,
        /// How long it took since its start.
        after: Duration,
    },
    /// A node was removed.
    NodeRemoved {
        /// The node.
        node: String,
    },
}

/// A way of making clusters: k3s in Docker today; kind-style nodes and existing
/// clusters later, behind the same five operations over a [`ClusterPlan`].
#[allow(async_fn_in_trait)]
pub trait Provider {
    /// What exists of the plan's lab.
    async fn inspect(&self, plan: &ClusterPlan) -> Result<Observed, ProvisionError>;
    /// Carries `actions` out: creates the network and nodes, recreates or starts them,
    /// and waits for each started node's readiness line. `release` is called with the
    /// host ports of a node just before that node starts (they were reserved until then).
    async fn create(
        &self,
        plan: &ClusterPlan,
        actions: &[Action],
        host: &HostInputs,
        timeout: Duration,
        release: &mut (dyn FnMut(&[u16]) + Send),
        progress: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<(), ProvisionError>;
    /// Starts every stopped node (servers first) and waits for them.
    async fn start(&self, plan: &ClusterPlan, timeout: Duration, progress: &mut (dyn FnMut(Progress) + Send))
    -> Result<(), ProvisionError>;
    /// Stops every node, keeping data, addresses and ports.
    async fn stop(&self, plan: &ClusterPlan) -> Result<Vec<String>, ProvisionError>;
    /// Removes everything of the lab: containers with their volumes, the network.
    async fn delete(&self, lab: &str) -> Result<Removed, ProvisionError>;
}

pub use docker::Engine;
