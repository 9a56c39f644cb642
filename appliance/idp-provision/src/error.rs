//! The errors of the provisioning plane.

use std::time::Duration;

/// What can go wrong while talking to Docker about a lab.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// Docker does not answer.
    #[error(
        "Docker does not answer at {endpoint}: {source}; start it (`sudo systemctl start docker` or `dockerd`), or point DOCKER_HOST at a running engine"
    )]
    Unreachable {
        /// Where it was looked for.
        endpoint: String,
        /// What the client said.
        #[source]
        source: bollard::errors::Error,
    },
    /// A Docker API call failed.
    #[error("Docker refused to {what}: {source}")]
    Api {
        /// What was being done.
        what: String,
        /// What Docker said.
        #[source]
        source: bollard::errors::Error,
    },
    /// Docker refuses privileged containers or the capability set.
    #[error(
        "Docker refused to start a node container {mode}: {message}\n  This engine does not allow {mode} containers (rootless and hardened engines often do not).\n  Set cluster.security = \"capabilities\" (an explicit capability list), or run idp-lab against an engine that allows them."
    )]
    PrivilegesRefused {
        /// `privileged` or `with the capability list`.
        mode: String,
        /// Docker's message.
        message: String,
    },
    /// The node image is not there and may not or cannot be pulled.
    #[error("the node image {image} is not in Docker's image store{}", if *.offline { " and registry.offline forbids pulling it; load it with `docker load -i FILE` (or build one)" } else { "" })]
    ImageMissing {
        /// The image.
        image: String,
        /// Whether offline mode forbade pulling.
        offline: bool,
    },
    /// A published port was taken by the time Docker bound it.
    #[error("Docker could not publish port {port} of {node}: it is already allocated")]
    PortAllocated {
        /// The node.
        node: String,
        /// The host port.
        port: u16,
    },
    /// Another network took the lab's subnet meanwhile (labs made at the same time).
    #[error("the subnet {subnet} of the lab network was taken by another network meanwhile")]
    SubnetTaken {
        /// The subnet.
        subnet: String,
    },
    /// An object named like the lab's exists but was not made by idp-lab.
    #[error(
        "a Docker {kind} named {name} exists but does not carry the label dev.idp-lab.lab={lab}; it is not idp-lab's, so it is left alone: remove or rename it, or choose another lab name"
    )]
    Foreign {
        /// `network`, `container` or `volume`.
        kind: &'static str,
        /// Its name.
        name: String,
        /// The lab.
        lab: String,
    },
    /// A node did not log its readiness line in time.
    #[error("node {node} did not log {line:?} within {}s; its last log lines:\n{tail}", .after.as_secs())]
    NotReady {
        /// The node.
        node: String,
        /// The line waited for.
        line: String,
        /// How long was waited.
        after: Duration,
        /// The last log lines.
        tail: String,
    },
    /// A node's container stopped while idp-lab waited for it.
    #[error("node {node} stopped (exit code {code}) before it was ready; its last log lines:\n{tail}")]
    Exited {
        /// The node.
        node: String,
        /// Its exit code.
        code: i64,
        /// The last log lines.
        tail: String,
    },
    /// There is no such node.
    #[error("lab {lab} has no node {node}{}", if .known.is_empty() { String::new() } else { format!("; its nodes: {}", .known.join(", ")) })]
    NoSuchNode {
        /// The lab.
        lab: String,
        /// The node asked for.
        node: String,
        /// The nodes it has.
        known: Vec<String>,
    },
    /// A file could not be read or written on the host.
    #[error("failed to {what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Docker did not load an image archive (`POST /images/load`): it said why in its
    /// answer, or loaded nothing from it.
    #[error(
        "Docker could not load the image archive: {message}\n  The archive must be a docker-archive (the `docker save` format) that arrives whole; check a file with `skopeo inspect docker-archive:FILE`, and if it came from a bundle, `idp-lab bundle verify BUNDLE` names any damaged blob (make the bundle again on a connected machine)."
    )]
    LoadFailed {
        /// What Docker said (or that it loaded no image).
        message: String,
    },
    /// The upload of an image archive to Docker broke off: the archive's own stream
    /// failed (a damaged blob found while it streamed, a read error) or the connection
    /// dropped. Docker keeps nothing of a cut upload.
    #[error(
        "the upload of the image archive to Docker broke off: {cause}\n  Docker keeps nothing of a cut upload. Fix what broke it (for an archive from a bundle, `idp-lab bundle verify BUNDLE` names any damaged blob) and load it again."
    )]
    LoadCut {
        /// The innermost cause (the archive stream's error, when it failed).
        cause: String,
        /// What the client said.
        #[source]
        source: bollard::errors::Error,
    },
    /// The container's archive did not hold what was expected.
    #[error("{0}")]
    Archive(String),
}

impl ProvisionError {
    /// A Docker API error while doing `what`.
    pub(crate) fn api(what: impl Into<String>) -> impl FnOnce(bollard::errors::Error) -> ProvisionError {
        let what = what.into();
        move |source| ProvisionError::Api { what, source }
    }
}

/// Docker's status code and message, when the error is an answer of the engine.
pub(crate) fn docker_status(e: &bollard::errors::Error) -> Option<(u16, &str)> {
    match e {
        bollard::errors::Error::DockerResponseServerError { status_code, message } => Some((*status_code, message.as_str())),
        _ => None,
    }
}

/// Whether Docker answered "not found".
pub(crate) fn is_not_found(e: &bollard::errors::Error) -> bool {
    docker_status(e).is_some_and(|(code, _)| code == 404)
}
