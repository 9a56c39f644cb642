//! The one error type of the Kubernetes plane.

use std::path::PathBuf;
use std::time::Duration;

/// What went wrong underneath: a client, TLS or YAML error. Boxed so that no
/// `kube` type is part of this crate's public API.
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Errors of the Kubernetes plane.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// A kubeconfig is not YAML, or not a kubeconfig.
    #[error("failed to read {what} as a kubeconfig: {source}")]
    Parse {
        /// The file, or which text (e.g. `the k3s admin kubeconfig`).
        what: String,
        /// What the parser said.
        #[source]
        source: Cause,
    },
    /// A kubeconfig parses, but does not hold what it must.
    #[error("{what} is not a usable kubeconfig: {problem}")]
    Invalid {
        /// The file, or which text.
        what: String,
        /// What was found instead.
        problem: String,
    },
    /// Reading or writing a file failed.
    #[error("failed to {action} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. `read` or `rename into place`.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// Another process kept a kubeconfig locked for too long.
    #[error(
        "failed to lock {}: {} stayed in place for {}s ({holder}); if no kubectl, kind or idp-lab is writing the kubeconfig, remove it",
        path.display(), lock.display(), waited.as_secs()
    )]
    Locked {
        /// The kubeconfig.
        path: PathBuf,
        /// Its lock file.
        lock: PathBuf,
        /// How long it was waited for.
        waited: Duration,
        /// Who holds it, as far as the lock file says.
        holder: String,
    },
    /// No client could be made from a kubeconfig.
    #[error("failed to connect with the kubeconfig: {detail}")]
    Client {
        /// The source and its causes, in one line.
        detail: String,
        /// What kube said.
        #[source]
        source: Cause,
    },
    /// A request to the API server failed.
    #[error("failed to {action} on {server}: {detail}")]
    Api {
        /// What was being done, e.g. `list nodes`.
        action: &'static str,
        /// The API server's URL.
        server: String,
        /// The source and its causes, in one line (a client error alone often only says
        /// `client error (Connect)`; the cause says `Connection refused`).
        detail: String,
        /// What the client said.
        #[source]
        source: Cause,
    },
    /// The API server answered `/readyz` with something other than `ok`.
    #[error("the API server at {server} is not ready: /readyz answered {status}: {body}")]
    NotReady {
        /// The API server's URL.
        server: String,
        /// The HTTP status code.
        status: u16,
        /// The failing checks of the answer (`[-]etcd failed: ...`), or the whole
        /// answer on one line when it lists none.
        body: String,
    },
    /// The nodes did not all register with their labels and taints in time.
    #[error(
        "timed out after {}s waiting for the nodes of {server}: {}{}",
        waited.as_secs(),
        problems.join("; "),
        last_error.as_ref().map(|e| format!("; last API error: {e}")).unwrap_or_default()
    )]
    NodesTimeout {
        /// The API server's URL.
        server: String,
        /// How long it was waited.
        waited: Duration,
        /// One line per node that is missing or does not match, as last seen.
        problems: Vec<String>,
        /// The last error from the API server, if the last attempts failed.
        #[source]
        last_error: Option<Box<KubeError>>,
    },
    /// Objects were not all ready when a readiness wait's time ran out.
    #[error(
        "timed out after {}s waiting for {not_ready} of {total} objects on {server} to become ready:{}",
        waited.as_secs(),
        explain.lines().map(|line| format!("\n  {line}")).collect::<String>()
    )]
    NotReadyInTime {
        /// The API server's URL.
        server: String,
        /// How long it was waited.
        waited: Duration,
        /// How many objects were not ready.
        not_ready: usize,
        /// How many objects were waited for.
        total: usize,
        /// One line per object not ready, `Kind namespace/name: reason`
        /// ([`idp_core::readiness::explain`]), with the last error of a watch that failed.
        explain: String,
    },
    /// An object will not become ready without a change (its verdict is Failed), so a
    /// readiness wait stopped at once.
    #[error(
        "failed on {server}, waiting will not make it ready:{}",
        explain.lines().map(|line| format!("\n  {line}")).collect::<String>()
    )]
    Failed {
        /// The API server's URL.
        server: String,
        /// One line per failed object, `Kind namespace/name: reason`
        /// ([`idp_core::readiness::explain`]).
        explain: String,
    },
    /// Objects the input gets wrong, found before anything was sent: every one.
    #[error("{}", problems.join("\n"))]
    Input {
        /// One line per problem, each naming the object's file and document.
        problems: Vec<String>,
    },
    /// Kinds the API server does not serve, at the deadline (or at once in a dry run).
    #[error(
        "{server} does not serve {}{}",
        kinds.join(", "),
        if *dry_run {
            "; a dry run cannot create their CRDs, so their objects cannot be checked before a real apply"
        } else {
            "; is the CRD that defines each installed (in this input, or by a chart applied before)?"
        }
    )]
    NotServed {
        /// The API server's URL.
        server: String,
        /// `Kind apiVersion` of each, sorted.
        kinds: Vec<String>,
        /// Whether the run was a dry run.
        dry_run: bool,
    },
    /// The API server refused objects of a wave; the rest of the wave was applied, the
    /// later waves were not.
    #[error(
        "{server} refused {} object(s) ({applied} of the wave applied, later waves not; fix these and apply again):\n{}",
        failures.len(),
        failures.join("\n")
    )]
    Refused {
        /// The API server's URL.
        server: String,
        /// How many objects of the wave were applied.
        applied: usize,
        /// One line per refused object: which, where from, why, and the way out.
        failures: Vec<String>,
    },
    /// An object idp-lab would take over belongs to something else.
    #[error("{what} is not idp-lab's: {problem}; choose another name")]
    NotOurs {
        /// The object.
        what: String,
        /// Why not.
        problem: String,
    },
    /// The object an action names does not exist.
    #[error("{what} does not exist on {server}")]
    NotFound {
        /// The API server's URL.
        server: String,
        /// The object, `Kind namespace/name`.
        what: String,
    },
    /// An action does not apply to the object it names, or not in the state it is in;
    /// nothing was changed.
    #[error("cannot {action} {what}: {problem}")]
    Cannot {
        /// The action, e.g. `rollout restart`.
        action: &'static str,
        /// The object, `Kind namespace/name`.
        what: String,
        /// Why not, and the way out if there is one.
        problem: String,
    },
    /// An Argo CD Application already has an operation (a sync in progress), so a sync
    /// was not started; the Application was left as it was.
    #[error("cannot sync {what}: another operation is already in progress ({operation}); wait until it ends, or terminate it")]
    OperationInProgress {
        /// The Application, `Application namespace/name`.
        what: String,
        /// The operation: its kind, who started it and its phase, as far as the
        /// Application says.
        operation: String,
    },
}

impl KubeError {
    pub(crate) fn client(source: impl std::error::Error + Send + Sync + 'static) -> KubeError {
        KubeError::Client { detail: chain(&source), source: Box::new(source) }
    }

    pub(crate) fn api(action: &'static str, server: &str, source: impl std::error::Error + Send + Sync + 'static) -> KubeError {
        KubeError::Api { action, server: server.to_owned(), detail: chain(&source), source: Box::new(source) }
    }

    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> KubeError {
        KubeError::Io { action, path: path.into(), source }
    }
}

pub(crate) use idp_core::diag::chain;

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{text}")]
    struct E {
        text: &'static str,
        #[source]
        source: Option<Box<E>>,
    }

    #[test]
    fn chain_joins_causes_it_does_not_already_quote() {
        let inner = E { text: "Connection refused (os error 111)", source: None };
        let middle = E { text: "client error (Connect)", source: Some(Box::new(inner)) };
        let outer = E { text: "ServiceError: client error (Connect)", source: Some(Box::new(middle)) };
        assert_eq!(chain(&outer), "ServiceError: client error (Connect): Connection refused (os error 111)");
    }
}
