//! The test-bed harness for idp-lab's integration tests.
//!
//! Everything here runs the real thing: a throwaway Kubernetes control plane built from
//! Debian's sources ([`ControlPlane`]), the real Docker daemon ([`DockerScope`]) and the
//! stand-in k3s node image ([`testnode_image`]). Tests whose dependencies are missing
//! skip loudly on a laptop and fail in CI ([`require!`], see [`testbed`](mod@testbed)).
//!
//! ```no_run
//! use idp_test::{ControlPlane, Need, require};
//!
//! #[tokio::test]
//! async fn namespaces_can_be_listed() {
//!     let _testbed = require!(Need::KubeBinaries);
//!     let cp = ControlPlane::start_without_controller_manager().await.expect("control plane starts");
//!     let namespaces: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(cp.client());
//!     assert!(!namespaces.list(&Default::default()).await.expect("list").items.is_empty());
//! }
//! ```

pub mod control_plane;
pub mod crds;
pub mod docker;
pub mod env;
pub mod kubeconfig;
pub mod poll;
pub mod process;
pub mod registry;
pub mod render;
pub mod samples;
pub mod testbed;

pub use control_plane::{ControlPlane, ControlPlaneOptions};
pub use crds::{InstalledCrds, install_crd_fixtures};
pub use docker::{DockerScope, Leftovers};
pub use env::IsolatedEnv;
pub use samples::sample_custom_resources;
pub use testbed::{Need, Testbed, testbed, testnode_image};
