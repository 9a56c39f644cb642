//! The errors of the bundle clients.

/// A failure talking to a registry, a Helm repository or a file server, or bytes that do
/// not match their digest.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A reference or URL that cannot be used.
    #[error("invalid {what} {value:?}: {reason}")]
    Invalid {
        /// What it is (`image reference`, `URL`, `digest`).
        what: &'static str,
        /// The value.
        value: String,
        /// Why it is rejected.
        reason: String,
    },
    /// The TLS set-up failed.
    #[error("failed to set up TLS")]
    Tls(#[source] rustls::Error),
    /// The request did not complete (DNS, connect, TLS, reset).
    #[error("failed to {method} {url}")]
    Request {
        /// `GET` or `HEAD`.
        method: String,
        /// The URL.
        url: String,
        /// What went wrong.
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    /// Reading the response body failed.
    #[error("failed to read the body of {url}")]
    Body {
        /// The URL.
        url: String,
        /// What went wrong.
        #[source]
        source: hyper::Error,
    },
    /// Writing the downloaded bytes failed.
    #[error("failed to write what {url} sent")]
    Write {
        /// The URL.
        url: String,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// No answer (or no further bytes) in time.
    #[error("timed out after {seconds} s waiting for {url}")]
    Timeout {
        /// The URL.
        url: String,
        /// The limit.
        seconds: u64,
    },
    /// An HTTP status other than the expected one.
    #[error("{url} answered {status}{}", if .detail.is_empty() { String::new() } else { format!(": {}", .detail) })]
    Status {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
        /// The start of the body (the distribution API's error JSON, say).
        detail: String,
    },
    /// The registry wants credentials; only anonymous pulls are supported.
    #[error("{url} needs credentials ({challenge}); only anonymous pulls are supported")]
    AuthRequired {
        /// The URL.
        url: String,
        /// The `WWW-Authenticate` challenge.
        challenge: String,
    },
    /// Too many redirects.
    #[error("{url}: more than {limit} redirects")]
    Redirects {
        /// The first URL.
        url: String,
        /// The limit.
        limit: usize,
    },
    /// A response larger than what its kind may be (manifests, indexes, tokens).
    #[error("{url} sent more than {limit} bytes")]
    TooLarge {
        /// The URL.
        url: String,
        /// The limit.
        limit: u64,
    },
    /// Bytes whose digest is not the expected one.
    #[error("{what} from {url} has {actual}, expected {expected}")]
    DigestMismatch {
        /// What was downloaded (`blob`, `manifest`, `chart`, `file`).
        what: &'static str,
        /// Where from.
        url: String,
        /// The expected digest.
        expected: String,
        /// What the bytes hash to.
        actual: String,
    },
    /// A response that is not what the protocol says.
    #[error("{url}: {reason}")]
    Protocol {
        /// The URL.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// A JSON document that does not parse.
    #[error("{url} sent JSON that does not parse")]
    Json {
        /// The URL.
        url: String,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// A Helm repository index that does not parse.
    #[error("{url} is not a Helm repository index")]
    Index {
        /// The URL.
        url: String,
        /// The parser's error.
        #[source]
        source: Box<serde_saphyr::Error>,
    },
    /// The Helm repository has no such chart version.
    #[error("{repository} has no chart {name} {version}{}", if .versions.is_empty() { String::new() } else { format!(" (it has {})", .versions.join(", ")) })]
    ChartNotFound {
        /// The repository.
        repository: String,
        /// The chart.
        name: String,
        /// The version.
        version: String,
        /// The versions it has, newest first as listed (at most ten).
        versions: Vec<String>,
    },
}
