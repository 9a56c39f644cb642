//! The errors of the lab daemon.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Errors of the lab daemon.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// Another daemon of the lab holds its pid file.
    #[error(
        "the lab daemon of {lab:?} is already running (pid {pid}, {}); `idp-lab status --name {lab}` shows it, `idp-lab down --name {lab}` stops it",
        pidfile.display()
    )]
    AlreadyRunning {
        /// The lab.
        lab: String,
        /// The running daemon's pid, as its pid file says.
        pid: u32,
        /// The pid file.
        pidfile: PathBuf,
    },
    /// A socket could not be bound.
    #[error("cannot listen for {what} on {address}: {source}; another program holds the port, or it needs privileges (ports below 1024)")]
    Bind {
        /// What the socket is for.
        what: &'static str,
        /// Where.
        address: SocketAddr,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// A file or folder could not be read, written or created.
    #[error("failed to {action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The host edge failed (the CA, a certificate, a server).
    #[error("{reason}")]
    Edge {
        /// What the edge plane said.
        reason: String,
    },
    /// The lab's kubeconfig could not be used.
    #[error("the lab's kubeconfig: {reason}")]
    Kube {
        /// What the Kubernetes plane said.
        reason: String,
    },
    /// The control endpoint could not be reached or answered badly.
    #[error("the lab daemon's control socket: {reason}")]
    Control {
        /// What went wrong.
        reason: String,
    },
    /// The daemon did not stop in time after SIGTERM.
    #[error("the lab daemon (pid {pid}) did not stop within {seconds} s of SIGTERM; `kill -9 {pid}` ends it")]
    StopTimeout {
        /// Its pid.
        pid: u32,
        /// How long was waited.
        seconds: u64,
    },
}
