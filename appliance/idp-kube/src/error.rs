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

/// An error and its causes in one line, leaving out a cause its effect already quotes.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !text.is_empty() && !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

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
