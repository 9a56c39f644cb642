//! The HTTPS entry: what answers `https://<service>.<suffix>` on the host, in front of
//! the cluster's Gateway.
//!
//! It routes by SNI and, for the lab's routes, never terminates TLS: the client's
//! ClientHello is read (with rustls' [`Acceptor`], so it is parsed by a real TLS
//! stack), the bytes read so far are replayed to the Gateway's HTTPS node port, and the
//! two connections are joined. TLS, HTTP/2, gRPC and websockets then run end to end
//! with the Gateway's certificate, untouched.
//!
//! What it decides, per connection, from the SNI name and the latest [`RouteSnapshot`]:
//!
//! | SNI name                                   | answer                                       |
//! | ------------------------------------------ | -------------------------------------------- |
//! | none, or outside the lab's suffix          | TLS alert `unrecognized_name`; nothing forwarded |
//! | the bare suffix                            | the landing page (terminated here)           |
//! | under the suffix, with a ready route       | passed through to the Gateway                |
//! | under the suffix, route not ready          | a 503 page naming the route and the reason   |
//! | under the suffix, no route                 | a 404 page naming the routes that exist      |
//! | routes not known yet (API unreachable)     | passed through: the Gateway decides          |
//!
//! Passing through tries each Gateway node's loopback port in order and takes the first
//! that answers the ClientHello: a port that refuses the connection, or accepts it and
//! closes it without a byte (Docker's userland proxy does that when the node port
//! inside is not listening), is skipped. When none answers, the connection is
//! terminated here with a 503 page saying the Gateway is unreachable.
//!
//! On a connection terminated here, the certificate is the entry's own wildcard leaf
//! (from the lab CA). Since it overlaps the Gateway's, a browser may coalesce HTTP/2
//! requests for another host onto it: any request whose host is not the connection's
//! SNI name, or that would now be passed through (its route became ready), gets `421
//! Misdirected Request`, and the browser retries it on a fresh connection, which SNI
//! routes.
//!
//! Every connection and every request answered here is logged through tracing, target
//! `idp_edge::access`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use idp_core::routes::Route;
use idp_kube::RouteSnapshot;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::Acceptor;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::StartHandshake;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::{EdgeError, Leaf};

mod pages;

/// How long a client has to send its whole ClientHello.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long connecting to one Gateway port may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a Gateway port has to answer the ClientHello before the next is tried.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long connections in flight may go on after shutdown is asked for.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// The buffer of each direction of a passed-through connection (a TLS record's size).
const COPY_BUFFER: usize = 16 * 1024 + 256;
/// The largest ClientHello read (a post-quantum key share makes one ~2 KB).
const MAX_HELLO: usize = 64 * 1024;
/// A fatal TLS alert, `unrecognized_name` (112), as a plaintext TLS 1.2 record.
const UNRECOGNIZED_NAME: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 112];

/// Everything the entry needs to decide and answer. Cheap to share (`Arc`).
pub struct Entry {
    suffix: String,
    https_port: u16,
    gateway: Vec<SocketAddr>,
    routes: watch::Receiver<RouteSnapshot>,
    tls: Arc<ServerConfig>,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry").field("suffix", &self.suffix).field("gateway", &self.gateway).finish_non_exhaustive()
    }
}

/// What the entry does with one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Refuse it with a TLS alert: the name is not the lab's.
    Reject,
    /// The landing page.
    Landing,
    /// Pass it through to the Gateway; the route, when the routes are known.
    Forward(Option<String>),
    /// No route serves the name: a 404 page.
    NotFound,
    /// The route cannot serve now: a 503 page.
    Unavailable {
        /// The route, `namespace/name`.
        route: String,
        /// Why.
        reason: String,
    },
}

impl Entry {
    /// The entry for the lab names under `suffix` (e.g. `127-0-0-1.nip.io`), served on
    /// `https_port`, passing through to the `gateway` ports in order, with the routes
    /// `routes` delivers and `leaf` (a certificate for the suffix and `*.` the suffix)
    /// for what it answers itself.
    pub fn new(
        suffix: &str,
        https_port: u16,
        gateway: Vec<SocketAddr>,
        leaf: &Leaf,
        routes: watch::Receiver<RouteSnapshot>,
    ) -> Result<Entry, EdgeError> {
        let certs = CertificateDer::pem_slice_iter(leaf.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| EdgeError::Tls { what: "the entry's certificate", reason: e.to_string() })?;
        let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes())
            .map_err(|e| EdgeError::Tls { what: "the entry's key", reason: e.to_string() })?;
        let mut tls = ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| EdgeError::Tls { what: "the TLS versions", reason: e.to_string() })?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| EdgeError::Tls { what: "the entry's certificate", reason: e.to_string() })?;
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let suffix = suffix.trim_end_matches('.').to_ascii_lowercase();
        Ok(Entry { suffix, https_port, gateway, routes, tls: Arc::new(tls) })
    }

    /// What to do with a connection for `sni`, given the routes now.
    pub fn decide(&self, sni: Option<&str>) -> Decision {
        let snapshot = self.routes.borrow();
        decide(&self.suffix, sni, &snapshot)
    }

    fn origin(&self, host: &str) -> String {
        if self.https_port == 443 { format!("https://{host}") } else { format!("https://{host}:{}", self.https_port) }
    }
}

/// The decision for `sni` under `suffix` (lower case), given `snapshot`; see the module
/// docs.
fn decide(suffix: &str, sni: Option<&str>, snapshot: &RouteSnapshot) -> Decision {
    let Some(name) = sni.map(|s| s.trim_end_matches('.').to_ascii_lowercase()) else {
        return Decision::Reject;
    };
    if name == suffix {
        return Decision::Landing;
    }
    if !idp_core::routes::is_under(&name, suffix) {
        return Decision::Reject;
    }
    match idp_core::routes::lookup(&snapshot.routes, &name) {
        Some(route) if route.health.is_ready() => Decision::Forward(Some(route_name(route))),
        Some(route) => Decision::Unavailable { route: route_name(route), reason: route_reason(route) },
        None if snapshot.synced => Decision::NotFound,
        None => Decision::Forward(None),
    }
}

fn route_name(route: &Route) -> String {
    format!("{}/{}", route.namespace, route.name)
}

fn route_reason(route: &Route) -> String {
    match &route.health {
        idp_core::routes::Health::Ready => String::new(),
        idp_core::routes::Health::NotReady { reason } => reason.clone(),
    }
}

/// Serves the entry on `listener` until `shutdown` is cancelled, then lets connections
/// in flight finish for up to [`DRAIN_TIMEOUT`].
pub async fn serve_https(listener: TcpListener, entry: Arc<Entry>, shutdown: CancellationToken) -> Result<(), EdgeError> {
    let tracker = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => break,
        };
        let (tcp, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Out of file descriptors and the like: the listener itself is fine.
                tracing::warn!(error = %e, "https: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let entry = entry.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move { connection(tcp, peer, entry, shutdown).await });
    }
    drain(tracker).await;
    Ok(())
}

async fn drain(tracker: TaskTracker) {
    tracker.close();
    if tokio::time::timeout(DRAIN_TIMEOUT, tracker.wait()).await.is_err() {
        tracing::warn!(connections = tracker.len(), "shutdown: connections still open after the drain timeout are closed");
    }
}

/// One client connection, from its first byte to its end.
async fn connection(mut tcp: TcpStream, peer: SocketAddr, entry: Arc<Entry>, shutdown: CancellationToken) {
    let started = Instant::now();
    // A handshake not begun when shutdown comes is not waited for.
    let hello = tokio::select! {
        hello = tokio::time::timeout(HELLO_TIMEOUT, read_hello(&mut tcp)) => hello,
        () = shutdown.cancelled() => return,
    };
    let (hello, accepted) = match hello {
        Ok(Ok(pair)) => pair,
        Ok(Err(reason)) => {
            tracing::info!(target: "idp_edge::access", %peer, outcome = "refused", reason, "https");
            return;
        }
        Err(_) => {
            tracing::info!(target: "idp_edge::access", %peer, outcome = "refused", reason = "no ClientHello in time", "https");
            return;
        }
    };
    let sni = accepted.client_hello().server_name().map(str::to_owned);
    let decision = entry.decide(sni.as_deref());
    let sni_shown = sni.as_deref().unwrap_or("-");
    match decision {
        Decision::Reject => {
            let _ = tcp.write_all(&UNRECOGNIZED_NAME).await;
            tracing::info!(target: "idp_edge::access", %peer, sni = sni_shown, outcome = "rejected", "https: not a name of this lab");
        }
        Decision::Forward(route) => match connect_upstream(&entry.gateway, &hello).await {
            Ok((upstream, at, answer)) => {
                let route = route.as_deref().unwrap_or("-");
                let (up, down) = tokio::select! {
                    r = pass_through(tcp, upstream, &answer) => r,
                    () = async { shutdown.cancelled().await; tokio::time::sleep(DRAIN_TIMEOUT).await } => (0, 0),
                };
                tracing::info!(
                    target: "idp_edge::access", %peer, sni = sni_shown, route, gateway = %at, bytes_in = up, bytes_out = down,
                    ms = started.elapsed().as_millis() as u64, outcome = "forwarded", "https"
                );
            }
            Err(reason) => {
                let page = Local::Unavailable { route: route.unwrap_or_else(|| "-".into()), reason, gateway: true };
                terminate(tcp, peer, accepted, sni, page, entry, shutdown).await;
            }
        },
        Decision::Landing => terminate(tcp, peer, accepted, sni, Local::Landing, entry, shutdown).await,
        Decision::NotFound => terminate(tcp, peer, accepted, sni, Local::NotFound, entry, shutdown).await,
        Decision::Unavailable { route, reason } => {
            terminate(tcp, peer, accepted, sni, Local::Unavailable { route, reason, gateway: false }, entry, shutdown).await
        }
    }
}

/// Reads until rustls has a whole ClientHello; the bytes read, for replaying, and what
/// rustls accepted. A client that is not speaking TLS gets rustls' alert.
async fn read_hello(tcp: &mut TcpStream) -> Result<(Vec<u8>, rustls::server::Accepted), &'static str> {
    let mut acceptor = Acceptor::default();
    let mut hello = Vec::new();
    let mut chunk = vec![0u8; 4096];
    loop {
        let n = tcp.read(&mut chunk).await.map_err(|_| "read failed")?;
        if n == 0 {
            return Err("closed before its ClientHello");
        }
        hello.extend_from_slice(&chunk[..n]);
        if hello.len() > MAX_HELLO {
            return Err("ClientHello too large");
        }
        let mut rest = &chunk[..n];
        while !rest.is_empty() {
            acceptor.read_tls(&mut rest).map_err(|_| "not a TLS ClientHello")?;
            match acceptor.accept() {
                Ok(Some(accepted)) => return Ok((hello, accepted)),
                Ok(None) => {}
                Err((_, mut alert)) => {
                    let mut out = Vec::new();
                    let _ = alert.write_all(&mut out);
                    let _ = tcp.write_all(&out).await;
                    return Err("not a TLS ClientHello");
                }
            }
        }
    }
}

/// The first Gateway port that answers `hello`: its connection, its address and the
/// first bytes of its answer.
async fn connect_upstream(gateway: &[SocketAddr], hello: &[u8]) -> Result<(TcpStream, SocketAddr, Vec<u8>), String> {
    let mut failures = Vec::new();
    for &at in gateway {
        let attempt = async {
            let mut upstream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(at))
                .await
                .map_err(|_| "connect timed out".to_owned())?
                .map_err(|e| e.to_string())?;
            let _ = upstream.set_nodelay(true);
            upstream.write_all(hello).await.map_err(|e| e.to_string())?;
            let mut answer = Vec::with_capacity(COPY_BUFFER);
            let n = tokio::time::timeout(ANSWER_TIMEOUT, upstream.read_buf(&mut answer))
                .await
                .map_err(|_| "no answer to the ClientHello in time".to_owned())?
                .map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("closed without answering (nothing listens on the node port)".to_owned());
            }
            Ok::<_, String>((upstream, answer))
        };
        match attempt.await {
            Ok((upstream, answer)) => return Ok((upstream, at, answer)),
            Err(reason) => {
                tracing::debug!(gateway = %at, reason, "https: Gateway port did not answer");
                failures.push(format!("{at}: {reason}"));
            }
        }
    }
    if gateway.is_empty() {
        return Err("the lab has no Gateway node ports".into());
    }
    Err(format!("the Gateway is not reachable ({})", failures.join("; ")))
}

/// Joins the client and the Gateway, after sending the client `answer`; the bytes each
/// way (client to Gateway after the ClientHello, Gateway to client). When either side
/// ends (or fails), both connections are closed, as nginx's stream proxy does without
/// `proxy_half_close`: TLS has its own close, so nothing is lost, and a client's close
/// is never written into a Gateway connection that is gone.
async fn pass_through(mut client: TcpStream, mut upstream: TcpStream, answer: &[u8]) -> (u64, u64) {
    if client.write_all(answer).await.is_err() {
        return (0, 0);
    }
    let (mut client_read, mut client_write) = client.split();
    let (mut upstream_read, mut upstream_write) = upstream.split();
    let (mut up, mut down) = (0u64, answer.len() as u64);
    tokio::select! {
        () = copy_counting(&mut client_read, &mut upstream_write, &mut up) => {}
        () = copy_counting(&mut upstream_read, &mut client_write, &mut down) => {}
    }
    (up, down)
}

/// Copies `from` to `to` until `from` ends or either fails, counting into `count` (so
/// the count is right whichever side ends first).
async fn copy_counting<R, W>(from: &mut R, to: &mut W, count: &mut u64)
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let mut buffer = vec![0u8; COPY_BUFFER];
    loop {
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
        *count += n as u64;
    }
}

/// What a connection terminated here answers.
#[derive(Debug, Clone)]
enum Local {
    Landing,
    NotFound,
    /// The route cannot serve; `gateway` when that is because no Gateway port answered.
    Unavailable {
        route: String,
        reason: String,
        gateway: bool,
    },
}

/// Terminates TLS here and serves `page` (HTTP/1.1 or HTTP/2, by ALPN).
async fn terminate(
    tcp: TcpStream,
    peer: SocketAddr,
    accepted: rustls::server::Accepted,
    sni: Option<String>,
    page: Local,
    entry: Arc<Entry>,
    shutdown: CancellationToken,
) {
    let tls = match StartHandshake::from_parts(accepted, tcp).into_stream(entry.tls.clone()).await {
        Ok(tls) => tls,
        Err(e) => {
            tracing::info!(target: "idp_edge::access", %peer, outcome = "handshake failed", error = %e, "https");
            return;
        }
    };
    let sni = sni.unwrap_or_default().trim_end_matches('.').to_ascii_lowercase();
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let entry = entry.clone();
        let sni = sni.clone();
        let page = page.clone();
        async move { Ok::<_, std::convert::Infallible>(answer(&entry, peer, &sni, &page, &request).await) }
    });
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        () = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(DRAIN_TIMEOUT, conn).await;
        }
    }
}

/// The answer to one request on a connection terminated here for `sni`. The page is
/// decided again for each request, so a route that became ready, or a Gateway that came
/// back, sends the browser to a fresh connection (421) instead of a stale page.
async fn answer(entry: &Entry, peer: SocketAddr, sni: &str, page: &Local, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let host = request_host(request).unwrap_or_default();
    let path = request.uri().path();
    let origin = |h: &str| entry.origin(h);
    let (status, body) = if host != sni {
        (StatusCode::MISDIRECTED_REQUEST, pages::misdirected(&host, sni))
    } else {
        match (page, entry.decide(Some(sni))) {
            (Local::Landing, _) => (StatusCode::OK, pages::landing(&entry.suffix, &entry.routes.borrow().clone(), &origin)),
            (Local::Unavailable { route, reason, gateway: true }, Decision::Forward(_)) => {
                if gateway_listening(&entry.gateway).await {
                    (StatusCode::MISDIRECTED_REQUEST, pages::misdirected(&host, sni))
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, pages::unavailable(&host, route, reason))
                }
            }
            (_, Decision::Forward(_)) => (StatusCode::MISDIRECTED_REQUEST, pages::misdirected(&host, sni)),
            (_, Decision::Unavailable { route, reason }) => (StatusCode::SERVICE_UNAVAILABLE, pages::unavailable(&host, &route, &reason)),
            (Local::Unavailable { route, reason, .. }, Decision::Reject | Decision::Landing) => {
                (StatusCode::SERVICE_UNAVAILABLE, pages::unavailable(&host, route, reason))
            }
            (_, Decision::NotFound | Decision::Reject | Decision::Landing) => {
                (StatusCode::NOT_FOUND, pages::not_found(&host, &entry.routes.borrow().clone(), &origin))
            }
        }
    };
    tracing::info!(
        target: "idp_edge::access", %peer, sni, host, method = %request.method(), path, status = status.as_u16(),
        version = ?request.version(), outcome = "answered", "https"
    );
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if status == StatusCode::SERVICE_UNAVAILABLE {
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    }
    response
}

/// Whether any Gateway port accepts a TCP connection now.
async fn gateway_listening(gateway: &[SocketAddr]) -> bool {
    for &at in gateway {
        if matches!(tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(at)).await, Ok(Ok(_))) {
            return true;
        }
    }
    false
}

/// The host a request is for, lower case, without a port: the `:authority` of HTTP/2,
/// else the `Host` header.
fn request_host<B>(request: &Request<B>) -> Option<String> {
    let raw = match request.uri().authority() {
        Some(authority) => authority.host().to_owned(),
        None => {
            let value = request.headers().get(header::HOST)?.to_str().ok()?;
            let authority: http::uri::Authority = value.parse().ok()?;
            authority.host().to_owned()
        }
    };
    Some(raw.trim_end_matches('.').to_ascii_lowercase())
}

/// Serves the HTTP port on `listener` until `shutdown`: every request for a lab name
/// under `suffix` gets `308 Permanent Redirect` to the same URL over HTTPS on
/// `https_port`; other names get 404.
pub async fn serve_redirect(listener: TcpListener, suffix: &str, https_port: u16, shutdown: CancellationToken) -> Result<(), EdgeError> {
    let suffix: Arc<str> = suffix.trim_end_matches('.').to_ascii_lowercase().into();
    let tracker = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => break,
        };
        let Ok((tcp, peer)) = accepted else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let suffix = suffix.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let suffix = suffix.clone();
                async move { Ok::<_, std::convert::Infallible>(redirect(&suffix, https_port, peer, &request)) }
            });
            let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                () = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(DRAIN_TIMEOUT, conn).await;
                }
            }
        });
    }
    drain(tracker).await;
    Ok(())
}

fn redirect<B>(suffix: &str, https_port: u16, peer: SocketAddr, request: &Request<B>) -> Response<Full<Bytes>> {
    let host = request_host(request).unwrap_or_default();
    let ours = host == suffix || idp_core::routes::is_under(&host, suffix);
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
    let mut response = Response::new(Full::new(Bytes::new()));
    if ours {
        let port = if https_port == 443 { String::new() } else { format!(":{https_port}") };
        let location = format!("https://{host}{port}{path}");
        match HeaderValue::from_str(&location) {
            Ok(value) => {
                *response.status_mut() = StatusCode::PERMANENT_REDIRECT;
                response.headers_mut().insert(header::LOCATION, value);
            }
            Err(_) => *response.status_mut() = StatusCode::BAD_REQUEST,
        }
    } else {
        *response.status_mut() = StatusCode::NOT_FOUND;
        *response.body_mut() = Full::new(Bytes::from(format!("{host:?} is not a name of this lab (*.{suffix})\n")));
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    }
    tracing::info!(
        target: "idp_edge::access", %peer, host, method = %request.method(), path, status = response.status().as_u16(), outcome = "answered", "http"
    );
    response
}

#[cfg(test)]
mod tests;
