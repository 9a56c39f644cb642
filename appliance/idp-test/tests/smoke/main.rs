//! Smoke tests of the test bed, driven through the harness: a real control plane, the shared
//! CRD fixtures, the real Docker daemon and the stand-in k3s node image.
//!
//! One test binary with a module per area keeps the link step (kube + bollard) to one.

mod control_plane;
mod harness;
mod node;
mod render;
mod support;
