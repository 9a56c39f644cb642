//! The control endpoint: HTTP/1.1 over a unix socket with mode 0600 in the lab's state
//! directory, so only the lab's owner can reach it.
//!
//! | request         | answer                                                     |
//! | --------------- | ---------------------------------------------------------- |
//! | `GET /healthz`  | 200 and [`DaemonInfo`] as JSON                             |
//! | `GET /routes`   | 200 and the route watch's latest snapshot as JSON          |
//! | `POST /reload`  | starts the registry, the nodes' DNS answer and the Alertmanager receiver if their address exists now (a failure there is a warning in the answer), re-reads the kubeconfig and restarts the route watch: 200, or 500 with the error |
//! | `GET /drift`   | 200 and the objects drifted now, as the watchdog sees them (`[]` when it watches nothing) |
//! | `GET /health`  | 200 and the health loop's last judgement of the lab ([`crate::health::HealthSnapshot`]), `null` before its first tick or with the watchdog off |
//! | `GET /history?since=SECONDS` or `?since_ms=MILLISECONDS` | 200 and the watchdog's events since that Unix time (all kept, without either), oldest first; 503 with why when the daemon has no history |
//! | anything else   | 404 (405 for a known path with another method)             |

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::sync::Arc;

use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use idp_kube::RouteSnapshot;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::{DaemonError, DaemonInfo, Routes};

/// What the control endpoint answers from.
pub(crate) struct State {
    pub(crate) info: DaemonInfo,
    pub(crate) routes: Arc<Routes>,
    pub(crate) registry: Arc<crate::network::LabRegistry>,
    pub(crate) snapshot: watch::Receiver<RouteSnapshot>,
    pub(crate) watchdog: Option<Arc<crate::watchdog::LabWatchdog>>,
}

/// Binds the control socket at `path` with mode 0600: bound under a temporary name,
/// restricted, then renamed into place, so it is never reachable with wider rights.
pub(crate) fn bind(path: &Path) -> Result<UnixListener, DaemonError> {
    let io = |action: &'static str, source| DaemonError::Io { action, path: path.to_path_buf(), source };
    let tmp = path.with_extension(format!("sock.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let listener = UnixListener::bind(&tmp).map_err(|e| io("bind the control socket", e))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).map_err(|e| io("restrict the control socket", e))?;
    std::fs::rename(&tmp, path).map_err(|e| io("place the control socket", e))?;
    Ok(listener)
}

/// The answer to one control request (the socket's whole behaviour, testable without
/// a socket).
pub(crate) async fn route(state: &State, method: &Method, target: &str) -> (StatusCode, String) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    match (method, path) {
        (&Method::GET, "/healthz") => {
            let mut info = state.info.clone();
            let at = info.listeners.iter().position(|l| l.name == "control").unwrap_or(info.listeners.len());
            let mut late = state.registry.listeners().await;
            if let Some(watchdog) = &state.watchdog {
                late.extend(watchdog.listeners().await);
            }
            info.listeners.splice(at..at, late);
            (StatusCode::OK, serde_json::to_string(&info).unwrap_or_default())
        }
        (&Method::GET, "/routes") => {
            let snapshot = state.snapshot.borrow().clone();
            let body = serde_json::json!({"synced": snapshot.synced, "error": snapshot.error, "routes": snapshot.routes});
            (StatusCode::OK, body.to_string())
        }
        (&Method::GET, "/drift") => {
            let drift = match &state.watchdog {
                Some(watchdog) => watchdog.drift().await,
                None => Vec::new(),
            };
            (StatusCode::OK, serde_json::to_string(&drift).unwrap_or_else(|_| "[]".into()))
        }
        (&Method::GET, "/health") => {
            let snapshot = state.watchdog.as_ref().and_then(|w| w.health());
            (StatusCode::OK, serde_json::to_string(&snapshot).unwrap_or_else(|_| "null".into()))
        }
        (&Method::GET, "/history") => {
            let Some(watchdog) = &state.watchdog else {
                return (StatusCode::SERVICE_UNAVAILABLE, r#"{"error":"the watchdog is off (watchdog.enabled = false)"}"#.to_owned());
            };
            let param = |name: &str| query.split('&').find_map(|kv| kv.strip_prefix(name)).map(str::parse::<u64>);
            let since = match (param("since="), param("since_ms=")) {
                (None, None) => std::time::UNIX_EPOCH,
                (Some(Ok(secs)), None) => std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs),
                (None, Some(Ok(ms))) => std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms),
                _ => {
                    let error = r#"{"error":"give since (whole seconds) or since_ms (milliseconds) since the Unix epoch, not both"}"#;
                    return (StatusCode::BAD_REQUEST, error.to_owned());
                }
            };
            match watchdog.since(since).await {
                Ok(events) => (StatusCode::OK, serde_json::json!({ "events": events }).to_string()),
                Err(e) => (StatusCode::SERVICE_UNAVAILABLE, serde_json::json!({ "error": e }).to_string()),
            }
        }
        (&Method::POST, "/reload") => {
            let mut warnings = state.registry.ensure_started().await;
            if let Some(watchdog) = &state.watchdog {
                warnings.extend(watchdog.ensure_started().await);
            }
            match state.routes.restart().await {
                Ok(()) => (StatusCode::OK, serde_json::json!({"reloaded": true, "warnings": warnings}).to_string()),
                Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, serde_json::json!({"error": e.to_string()}).to_string()),
            }
        }
        (_, "/healthz" | "/routes" | "/reload" | "/history" | "/drift" | "/health") => {
            (StatusCode::METHOD_NOT_ALLOWED, r#"{"error":"method not allowed"}"#.to_owned())
        }
        _ => (StatusCode::NOT_FOUND, r#"{"error":"not found"}"#.to_owned()),
    }
}

/// Serves the control endpoint on `listener` until `shutdown`.
pub(crate) async fn serve(listener: UnixListener, state: Arc<State>, shutdown: CancellationToken) -> Result<(), DaemonError> {
    let tracker = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => break,
        };
        let Ok((stream, _)) = accepted else { continue };
        let state = state.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let state = state.clone();
                async move {
                    let target = request.uri().path_and_query().map_or("/", |p| p.as_str());
                    let (status, body) = route(&state, request.method(), target).await;
                    let mut response = Response::new(Full::new(Bytes::from(body)));
                    *response.status_mut() = status;
                    response.headers_mut().insert(header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
                    Ok::<_, std::convert::Infallible>(response)
                }
            });
            let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                () = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), conn).await;
                }
            }
        });
    }
    tracker.close();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), tracker.wait()).await;
    Ok(())
}

/// One request to the control socket at `socket`; the body of a 2xx answer.
pub(crate) async fn request(socket: &Path, method: Method, path: &str) -> Result<Vec<u8>, DaemonError> {
    let fail = |reason: String| DaemonError::Control { reason };
    let stream = UnixStream::connect(socket).await.map_err(|e| fail(format!("cannot connect to {}: {e}", socket.display())))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| fail(format!("handshake failed: {e}")))?;
    let driver = tokio::spawn(conn);
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, "idp-lab-daemon")
        .body(Full::new(Bytes::new()))
        .map_err(|e| fail(e.to_string()))?;
    let response = sender.send_request(request).await.map_err(|e| fail(format!("request failed: {e}")))?;
    let status = response.status();
    let body = response.into_body().collect().await.map_err(|e| fail(format!("reading the answer failed: {e}")))?.to_bytes();
    driver.abort();
    if !status.is_success() {
        return Err(fail(format!("{path} answered {status}: {}", String::from_utf8_lossy(&body))));
    }
    Ok(body.to_vec())
}

#[cfg(test)]
mod tests;
