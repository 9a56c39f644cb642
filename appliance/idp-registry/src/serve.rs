//! The registry on a socket the caller bound.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http::Request;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::{Access, Registry, RegistryError, handle_with};

/// How long requests in flight may go on after shutdown is asked for.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a client may take to send a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `registry` over HTTP/1.1 on `listener` with [`Access::Full`] until `shutdown`
/// is cancelled, then lets requests in flight finish for up to [`DRAIN_TIMEOUT`]. Docker
/// and containerd speak plain HTTP/1.1 to a registry they are told is insecure
/// (127.0.0.1 always is).
pub async fn serve(listener: TcpListener, registry: Arc<Registry>, shutdown: CancellationToken) -> Result<(), RegistryError> {
    serve_with(listener, registry, Access::Full, shutdown).await
}

/// Serves as [`serve`] does, with what `access` allows on this listener. Several
/// listeners may serve one registry, each with its own access (the lab network with
/// [`Access::Full`], the LAN with [`Access::MirrorOnly`]).
pub async fn serve_with(
    listener: TcpListener,
    registry: Arc<Registry>,
    access: Access,
    shutdown: CancellationToken,
) -> Result<(), RegistryError> {
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
                tracing::warn!(error = %e, "registry: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let registry = registry.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let registry = registry.clone();
                async move { Ok::<_, Infallible>(handle_with(&registry, access, request).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(tcp), service);
            tokio::pin!(conn);
            let result = tokio::select! {
                result = conn.as_mut() => result,
                () = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    match tokio::time::timeout(DRAIN_TIMEOUT, conn).await {
                        Ok(result) => result,
                        Err(_) => return,
                    }
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "registry: connection ended with an error");
            }
        });
    }
    tracker.close();
    if tokio::time::timeout(DRAIN_TIMEOUT, tracker.wait()).await.is_err() {
        tracing::warn!(connections = tracker.len(), "registry: connections still open after the drain timeout are closed");
    }
    Ok(())
}
