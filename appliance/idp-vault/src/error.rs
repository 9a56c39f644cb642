//! The one error type of the secrets plane.

use std::time::Duration;

use idp_core::secrets::VaultKeys;
use idp_kube::KubeError;

/// What went wrong underneath a transport: a connection, the API server's proxy.
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Errors of the secrets plane. None of them shows a key, token or seeded value.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// A request did not get an answer from Vault: the connection failed, the API server
    /// refused to proxy it (no endpoints, the pod unreachable), or it timed out.
    #[error("failed to {action} at {endpoint}: {detail}")]
    Transport {
        /// What was being done, e.g. `read the seal status`.
        action: String,
        /// Where the request went ([`crate::Transport::endpoint`]).
        endpoint: String,
        /// The cause and its causes, in one line.
        detail: String,
        /// What the transport said.
        #[source]
        source: Cause,
    },
    /// Vault answered with an error status.
    #[error("Vault at {endpoint} refused to {action}: {status} {}", if errors.is_empty() { "(no message)".to_owned() } else { errors.join("; ") })]
    Api {
        /// What was being done.
        action: String,
        /// Where the request went.
        endpoint: String,
        /// The HTTP status.
        status: u16,
        /// Vault's `errors`.
        errors: Vec<String>,
    },
    /// Vault's answer is not what its API documents.
    #[error("failed to read Vault's answer to {action} at {endpoint}: {source}")]
    Decode {
        /// What was being done.
        action: String,
        /// Where the request went.
        endpoint: String,
        /// What the JSON parser said.
        #[source]
        source: serde_json::Error,
    },
    /// Vault refused the unseal key; it stays sealed.
    #[error(
        "Vault at {endpoint} refused the unseal key and stays sealed: {reason}; the key must be the one this Vault's init \
         returned (in the lab's state and in Secret vault-system/vault-init-keys)"
    )]
    KeyRefused {
        /// Where the request went.
        endpoint: String,
        /// What Vault said.
        reason: String,
    },
    /// Vault accepted the key but is still sealed (it wants more key shares than one).
    #[error("Vault at {endpoint} is still sealed after the unseal key was accepted: {progress} of {threshold} key shares given")]
    StillSealed {
        /// Where the request went.
        endpoint: String,
        /// Key shares given so far.
        progress: u64,
        /// Key shares needed.
        threshold: u64,
    },
    /// Vault is not initialised, and the step does not initialise it.
    #[error("Vault at {endpoint} is not initialised; `up` initialises it")]
    NotInitialised {
        /// Where the request went.
        endpoint: String,
    },
    /// Vault is initialised, but its keys are nowhere to be found.
    #[error(
        "Vault at {endpoint} is initialised, but its keys are neither in the lab's state nor in Secret {secret}; \
         without the unseal key it cannot be unsealed (idp-lab never re-initialises a Vault: delete its data \
         volume to start over, losing every secret)"
    )]
    NoKeys {
        /// Where the request went.
        endpoint: String,
        /// The Secret looked in, `namespace/name`.
        secret: String,
    },
    /// The keys in the lab's state and in the cluster Secret differ.
    #[error(
        "the Vault keys in the lab's state differ from those in Secret {secret}; idp-lab does not choose between \
         them: remove the wrong ones (the Secret, or the lab's record) and run again"
    )]
    KeysDiffer {
        /// The Secret, `namespace/name`.
        secret: String,
    },
    /// Vault was initialised now, but its keys could not be written to the cluster
    /// Secret. `keys` holds them: the caller must keep them, they are not shown again.
    #[error("Vault at {endpoint} was initialised, but its keys could not be written to Secret {secret}: {source}")]
    KeysNotStored {
        /// Where the request went.
        endpoint: String,
        /// The Secret, `namespace/name`.
        secret: String,
        /// The keys `sys/init` returned (redacted in `Debug`).
        keys: VaultKeys,
        /// Why the Secret could not be written.
        #[source]
        source: Box<KubeError>,
    },
    /// A Kubernetes request of the plane failed (reading the keys' Secret, the pod watch).
    #[error("failed to {action}: {source}")]
    Kube {
        /// What was being done.
        action: &'static str,
        /// What the Kubernetes plane said.
        #[source]
        source: Box<KubeError>,
    },
    /// Input the plane cannot use; nothing was sent.
    #[error("{what}: {problem}")]
    Invalid {
        /// What the input was.
        what: String,
        /// What is wrong with it.
        problem: String,
    },
    /// Vault holds something else than what was just written.
    #[error("Vault at {endpoint} does not hold what was written to {path} key {key}: read back {found}")]
    ReadBack {
        /// Where the request went.
        endpoint: String,
        /// The KV path, e.g. `secret/argocd/admin`.
        path: String,
        /// The key.
        key: String,
        /// What was found instead, without the value (`nothing`, `another value`).
        found: &'static str,
    },
    /// A value could not be hashed with bcrypt.
    #[error("failed to hash {path} key {key} with bcrypt: {source}")]
    Bcrypt {
        /// The KV path.
        path: String,
        /// The key.
        key: String,
        /// What bcrypt said.
        #[source]
        source: bcrypt::BcryptError,
    },
    /// Vault did not become ready (initialised and unsealed) in time.
    #[error("timed out after {}s waiting for Vault at {endpoint} to be initialised and unsealed: {last}", waited.as_secs())]
    NotReady {
        /// Where the requests went.
        endpoint: String,
        /// How long it was waited.
        waited: Duration,
        /// What was seen last.
        last: String,
    },
}

impl VaultError {
    /// The keys of a Vault that was initialised by the failing call, when the error
    /// carries them ([`VaultError::KeysNotStored`]): keep them, they exist nowhere else.
    pub fn keys(&self) -> Option<&VaultKeys> {
        match self {
            VaultError::KeysNotStored { keys, .. } => Some(keys),
            _ => None,
        }
    }

    /// The HTTP status Vault answered with, for [`VaultError::Api`].
    pub fn status(&self) -> Option<u16> {
        match self {
            VaultError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether the request never got an answer from Vault (so retrying may help: Vault
    /// is starting, or the API server has no endpoint for it yet).
    pub fn is_transport(&self) -> bool {
        matches!(self, VaultError::Transport { .. })
    }
}

pub(crate) use idp_core::diag::chain;
