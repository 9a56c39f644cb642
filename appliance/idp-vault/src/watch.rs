//! Auto-unseal: the trigger (a watch on pod `vault-0` that fires on every new start of
//! its Vault container) and the loop that runs [`unseal_if_sealed`] on each.
//!
//! This fixes the original's delayed crash loop (digest §10): `vault-0` restarted hours
//! after deploy came back sealed and stayed so until someone reran `task vault:init`.

use std::time::{Duration, Instant};

use futures::stream::{BoxStream, StreamExt as _};
use idp_kube::Cluster;
use idp_kube::proxy::PodState;

use crate::client::Vault;
use crate::error::{VaultError, chain};
use crate::init::{Unseal, unseal_if_sealed};

/// How long after a start the unseal step keeps trying to reach Vault (it may not be
/// listening yet, or the API server may have no endpoint for it yet).
pub const START_GRACE: Duration = Duration::from_secs(120);
/// The pause between such tries.
const RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// One start of the Vault container: a new pod, or a restart of the container in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VaultStart {
    /// The pod's UID.
    pub uid: String,
    /// The container's restart count.
    pub restart_count: i32,
    /// When it started running (RFC 3339).
    pub running_since: String,
}

/// Tells starts apart from repeats of a state already seen (a relist, a status update
/// that changes something else).
#[derive(Debug, Default)]
pub(crate) struct Starts {
    container: String,
    last: Option<VaultStart>,
}

impl Starts {
    pub(crate) fn new(container: &str) -> Starts {
        Starts { container: container.to_owned(), last: None }
    }

    /// The start `state` shows, if it is one not seen before: the container runs, and
    /// the pod, its restart count or its start time differ from the last start.
    pub(crate) fn observe(&mut self, state: Option<&PodState>) -> Option<VaultStart> {
        let state = state?;
        let container = state.containers.iter().find(|c| c.name == self.container)?;
        let running_since = container.running_since.clone()?;
        let start = VaultStart { uid: state.uid.clone(), restart_count: container.restart_count, running_since };
        if self.last.as_ref() == Some(&start) {
            return None;
        }
        self.last = Some(start.clone());
        Some(start)
    }
}

/// The starts of container `container` in pod `pod` of `namespace`, from a watch: the
/// first item is the container as it runs now (if it does), then one per restart or
/// recreated pod. Watch errors are items too; the watch retries and the stream goes on.
pub fn vault_starts(cluster: &Cluster, namespace: &str, pod: &str, container: &str) -> BoxStream<'static, Result<VaultStart, VaultError>> {
    let starts = Starts::new(container);
    cluster
        .watch_pod(namespace, pod)
        .scan(starts, |starts, item| {
            let out = match item {
                Ok(state) => starts.observe(state.as_ref()).map(Ok),
                Err(source) => Some(Err(VaultError::Kube { action: "watch the Vault pod", source: Box::new(source) })),
            };
            std::future::ready(Some(out))
        })
        .filter_map(std::future::ready)
        .boxed()
}

/// One round of auto-unseal.
#[derive(Debug)]
pub enum AutoUnseal {
    /// Vault (re)started; the unseal step ran with this outcome.
    Started {
        /// The start.
        start: VaultStart,
        /// What the unseal step did, or why it failed after [`START_GRACE`] of retries
        /// (or at once, for a refused key).
        outcome: Result<Unseal, VaultError>,
    },
    /// The watch failed (it is retried).
    Watch(VaultError),
}

/// Auto-unseal for the lab's Vault: watches pod `vault-0` in `vault-system` and, on
/// every start of its `vault` container, runs [`unseal_if_sealed`] with `unseal_key`
/// through `vault`, retrying while Vault does not answer yet (for [`START_GRACE`]).
/// Yields one [`AutoUnseal`] per start or watch error; never ends on its own, so the
/// daemon drives it until it shuts down.
pub fn auto_unseal(cluster: &Cluster, vault: Vault, unseal_key: String) -> BoxStream<'static, AutoUnseal> {
    use idp_core::secrets::{VAULT_CONTAINER, VAULT_NAMESPACE, VAULT_POD};
    vault_starts(cluster, VAULT_NAMESPACE, VAULT_POD, VAULT_CONTAINER)
        .then(move |item| {
            let vault = vault.clone();
            let unseal_key = unseal_key.clone();
            async move {
                match item {
                    Err(e) => AutoUnseal::Watch(e),
                    Ok(start) => {
                        tracing::info!(uid = %start.uid, restarts = start.restart_count, "Vault started; unsealing if sealed");
                        let outcome = unseal_after_start(&vault, &unseal_key).await;
                        AutoUnseal::Started { start, outcome }
                    }
                }
            }
        })
        .boxed()
}

/// [`unseal_if_sealed`], retried while Vault does not answer, for [`START_GRACE`].
async fn unseal_after_start(vault: &Vault, unseal_key: &str) -> Result<Unseal, VaultError> {
    let started = Instant::now();
    loop {
        match unseal_if_sealed(vault, unseal_key).await {
            Err(e) if e.is_transport() && started.elapsed() < START_GRACE => {
                tracing::debug!(error = %chain(&e), "Vault does not answer yet");
                tokio::time::sleep(RETRY_INTERVAL).await;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use idp_kube::proxy::ContainerState;

    fn pod(uid: &str, restarts: i32, since: Option<&str>) -> PodState {
        PodState {
            uid: uid.into(),
            phase: "Running".into(),
            pod_ip: Some("10.0.0.5".into()),
            containers: vec![
                ContainerState { name: "sidecar".into(), restart_count: 7, running_since: Some("x".into()), ready: true },
                ContainerState { name: "vault".into(), restart_count: restarts, running_since: since.map(str::to_owned), ready: false },
            ],
        }
    }

    #[test]
    fn every_start_fires_once() {
        let mut starts = Starts::new("vault");
        assert_eq!(starts.observe(None), None, "no pod");
        assert_eq!(starts.observe(Some(&pod("a", 0, None))), None, "not running yet");
        let first = starts.observe(Some(&pod("a", 0, Some("t1")))).expect("the first start");
        assert_eq!(first, VaultStart { uid: "a".into(), restart_count: 0, running_since: "t1".into() });
        assert_eq!(starts.observe(Some(&pod("a", 0, Some("t1")))), None, "a relist repeats it");
        let mut ready = pod("a", 0, Some("t1"));
        ready.containers[1].ready = true;
        assert_eq!(starts.observe(Some(&ready)), None, "becoming ready is no start");
        assert_eq!(starts.observe(Some(&pod("a", 1, None))), None, "crashed, waiting");
        assert!(starts.observe(Some(&pod("a", 1, Some("t2")))).is_some(), "the restart");
        assert_eq!(starts.observe(None), None, "deleted");
        assert!(starts.observe(Some(&pod("b", 0, Some("t3")))).is_some(), "a new pod");
    }
}
