//! idp-kube against the real test bed: a Kubernetes 1.20 control plane (etcd and
//! kube-apiserver from Debian's source, no kubelet) and its kubectl. No mocks.
//!
//! Each test starts its own control plane; tests skip loudly when the kube binaries are
//! missing, and fail in CI (see `idp_test::require!`).

mod cluster;
mod kubectl;
mod support;
