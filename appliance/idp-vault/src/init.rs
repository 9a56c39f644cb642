//! Initialising and unsealing: [`init_and_unseal`] (once per lab, idempotent) and
//! [`unseal_if_sealed`] (after every restart).

use std::collections::BTreeMap;
use std::time::Duration;

use idp_core::secrets::{KEY_SHARES, KEY_THRESHOLD, KEYS_SECRET, ROOT_TOKEN_FIELD, UNSEAL_KEY_FIELD, VAULT_NAMESPACE, VaultKeys};
use idp_kube::Cluster;

use crate::client::{SealStatus, Vault};
use crate::error::VaultError;

/// The label on the keys' Secret.
const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "idp-lab");

/// What [`init_and_unseal`] found and did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitOutcome {
    /// The keys: returned by `sys/init` now, or the ones already kept. The caller keeps
    /// them in the lab's state store.
    pub keys: VaultKeys,
    /// Whether Vault was initialised by this call (it never is twice).
    pub initialised: bool,
    /// Whether this call unsealed it (it was sealed).
    pub unsealed: bool,
    /// Whether this call wrote the keys' Secret (it was missing).
    pub stored_in_cluster: bool,
}

/// What [`unseal_if_sealed`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unseal {
    /// Vault was unsealed already: nothing was sent but the status request.
    AlreadyUnsealed,
    /// Vault was sealed and is unsealed now.
    Unsealed,
}

fn secret_name() -> String {
    format!("{VAULT_NAMESPACE}/{KEYS_SECRET}")
}

/// The keys in Secret `vault-system/vault-init-keys`, `None` when there is no Secret.
async fn keys_in_cluster(cluster: &Cluster) -> Result<Option<VaultKeys>, VaultError> {
    let Some(data) = cluster
        .secret_data(VAULT_NAMESPACE, KEYS_SECRET)
        .await
        .map_err(|source| VaultError::Kube { action: "read the Vault keys' Secret", source: Box::new(source) })?
    else {
        return Ok(None);
    };
    let field = |name: &str| -> Result<String, VaultError> {
        let bytes = data
            .get(name)
            .ok_or_else(|| VaultError::Invalid { what: format!("Secret {}", secret_name()), problem: format!("it has no key {name}") })?;
        String::from_utf8(bytes.clone())
            .map(|s| s.trim().to_owned())
            .map_err(|_| VaultError::Invalid { what: format!("Secret {}", secret_name()), problem: format!("its key {name} is not text") })
    };
    Ok(Some(VaultKeys { unseal_key: field(UNSEAL_KEY_FIELD)?, root_token: field(ROOT_TOKEN_FIELD)? }))
}

/// Writes the keys to Secret `vault-system/vault-init-keys`, keys `unseal-key` and
/// `root-token` (as the original's `vault-init.sh` did).
async fn store_in_cluster(cluster: &Cluster, keys: &VaultKeys) -> Result<(), idp_kube::KubeError> {
    let labels = BTreeMap::from([(MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned())]);
    let data = BTreeMap::from([
        (UNSEAL_KEY_FIELD.to_owned(), keys.unseal_key.clone().into_bytes()),
        (ROOT_TOKEN_FIELD.to_owned(), keys.root_token.clone().into_bytes()),
    ]);
    cluster.apply_secret(VAULT_NAMESPACE, KEYS_SECRET, &labels, &data).await
}

/// How long an unsealed Vault may take to become active (a one-node raft elects
/// itself within seconds).
const ACTIVE_TIMEOUT: Duration = Duration::from_secs(60);

/// Unseals with `key`, and waits until Vault is active; fails unless Vault is unsealed
/// afterwards.
async fn unseal_with(vault: &Vault, key: &str) -> Result<(), VaultError> {
    let status = vault.unseal(key).await?;
    if status.sealed {
        return Err(VaultError::StillSealed {
            endpoint: vault.endpoint().to_owned(),
            progress: status.progress,
            threshold: status.threshold,
        });
    }
    vault.wait_ready(ACTIVE_TIMEOUT).await?;
    Ok(())
}

/// Brings Vault to initialised and unsealed, and its keys to where they are kept.
/// Idempotent: a second run changes nothing.
///
/// * Not initialised: `sys/init` with one key share, threshold one; the keys are written
///   to Secret `vault-system/vault-init-keys` (when `cluster` is given) before Vault is
///   unsealed with them. If that write fails, the error ([`VaultError::KeysNotStored`])
///   carries the keys: they exist nowhere else.
/// * Initialised: never initialised again. The keys are `known` (the lab's state) or
///   else the Secret's; when both exist they must agree ([`VaultError::KeysDiffer`]),
///   and when neither does, nothing can unseal it ([`VaultError::NoKeys`]). A sealed
///   Vault is unsealed; a missing Secret is written again from `known`.
///
/// Returns once Vault is ready ([`crate::Health::is_ready`]: unsealed and active).
/// `vault` needs no token. The keys come back in [`InitOutcome::keys`] for the caller
/// to keep in the lab's state store (mode 0600).
pub async fn init_and_unseal(vault: &Vault, cluster: Option<&Cluster>, known: Option<&VaultKeys>) -> Result<InitOutcome, VaultError> {
    let status = vault.seal_status().await?;
    if !status.initialized {
        let keys = vault.init(KEY_SHARES, KEY_THRESHOLD).await?;
        tracing::info!(endpoint = vault.endpoint(), "initialised Vault");
        if let Some(cluster) = cluster
            && let Err(source) = store_in_cluster(cluster, &keys).await
        {
            return Err(VaultError::KeysNotStored {
                endpoint: vault.endpoint().to_owned(),
                secret: secret_name(),
                keys,
                source: Box::new(source),
            });
        }
        unseal_with(vault, &keys.unseal_key).await?;
        return Ok(InitOutcome { keys, initialised: true, unsealed: true, stored_in_cluster: cluster.is_some() });
    }
    let (keys, in_cluster) = kept_keys(vault, cluster, known).await?;
    let unsealed = if status.sealed {
        unseal_with(vault, &keys.unseal_key).await?;
        tracing::info!(endpoint = vault.endpoint(), "unsealed Vault");
        true
    } else {
        // Unsealed by someone else a moment ago, it may not be active yet.
        vault.wait_ready(ACTIVE_TIMEOUT).await?;
        false
    };
    let mut stored_in_cluster = false;
    if let Some(cluster) = cluster
        && !in_cluster
    {
        store_in_cluster(cluster, &keys)
            .await
            .map_err(|source| VaultError::Kube { action: "write the Vault keys' Secret", source: Box::new(source) })?;
        stored_in_cluster = true;
    }
    Ok(InitOutcome { keys, initialised: false, unsealed, stored_in_cluster })
}

/// The keys kept for an initialised Vault: `known` (the lab's state) or else the
/// Secret's, which must agree when both exist; with whether the Secret has them.
async fn kept_keys(vault: &Vault, cluster: Option<&Cluster>, known: Option<&VaultKeys>) -> Result<(VaultKeys, bool), VaultError> {
    let in_cluster = match cluster {
        Some(cluster) => keys_in_cluster(cluster).await?,
        None => None,
    };
    let keys = match (known, &in_cluster) {
        (Some(known), Some(stored)) if known != stored => return Err(VaultError::KeysDiffer { secret: secret_name() }),
        (Some(known), _) => known.clone(),
        (None, Some(stored)) => stored.clone(),
        (None, None) => return Err(VaultError::NoKeys { endpoint: vault.endpoint().to_owned(), secret: secret_name() }),
    };
    Ok((keys, in_cluster.is_some()))
}

/// The watchdog's unseal action: [`unseal_if_sealed`] with the keys kept for the lab
/// (`known`, from the lab's state, or else Secret `vault-system/vault-init-keys`, as
/// [`init_and_unseal`] finds them), retried while Vault does not answer yet (a pod just
/// started), for [`crate::START_GRACE`]. Never initialises: an uninitialised Vault is
/// [`VaultError::NotInitialised`].
pub async fn unseal_with_kept_keys(vault: &Vault, cluster: Option<&Cluster>, known: Option<&VaultKeys>) -> Result<Unseal, VaultError> {
    let started = std::time::Instant::now();
    loop {
        let attempt = async {
            let status = vault.seal_status().await?;
            if !status.initialized {
                return Err(VaultError::NotInitialised { endpoint: vault.endpoint().to_owned() });
            }
            if !status.sealed {
                return Ok(Unseal::AlreadyUnsealed);
            }
            let (keys, _) = kept_keys(vault, cluster, known).await?;
            unseal_if_sealed(vault, &keys.unseal_key).await
        };
        match attempt.await {
            Err(e) if e.is_transport() && started.elapsed() < crate::START_GRACE => {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            other => return other,
        }
    }
}

/// The auto-unseal step: unseals Vault with `unseal_key` when it is sealed (and waits
/// until it is active), and does nothing when it is not. A Vault that is not initialised is
/// [`VaultError::NotInitialised`] (this step never initialises); a wrong key is
/// [`VaultError::KeyRefused`] and Vault stays sealed.
pub async fn unseal_if_sealed(vault: &Vault, unseal_key: &str) -> Result<Unseal, VaultError> {
    let status: SealStatus = vault.seal_status().await?;
    if !status.initialized {
        return Err(VaultError::NotInitialised { endpoint: vault.endpoint().to_owned() });
    }
    if !status.sealed {
        return Ok(Unseal::AlreadyUnsealed);
    }
    unseal_with(vault, unseal_key).await?;
    tracing::info!(endpoint = vault.endpoint(), "unsealed Vault");
    Ok(Unseal::Unsealed)
}
