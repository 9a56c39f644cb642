//! The HTTPS entry against real software: nginx (Debian's, with a certificate from the
//! lab CA) standing in for the Gateway's HTTPS node port, curl and `openssl s_client` as
//! the clients, on real sockets on 127.0.0.1. The routes are given as a snapshot here;
//! `routes.rs` takes them from a real API server.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use common::*;
use idp_core::routes::Health;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_entry_passes_lab_names_through_by_sni_and_answers_the_rest_itself() {
    let dir = tempfile::tempdir().unwrap();
    let ca = lab_ca(dir.path());
    let ws = echo_websocket_backend().await;
    let nginx = Nginx::start(dir.path(), &ca, ws).unwrap();
    // The first Gateway port refuses connections (a stopped node): the entry fails over.
    let dead = dead_port().await;
    let routes = vec![
        route("argocd", "argocd", Health::Ready),
        route("ws", "ws", Health::Ready),
        route("grafana", "grafana", Health::NotReady { reason: "Service ns/grafana has no ready endpoint".into() }),
    ];
    let entry = Running::start(&ca, vec![dead, nginx.addr()], routes, true).await;
    let curl = Curl::new(&ca, entry.https_port);

    // Passed through by SNI, TLS end to end with nginx's certificate: HTTP/1.1 and HTTP/2.
    let h1 = curl.get(&["--http1.1"], "argocd", "/").await;
    assert_eq!((h1.code, h1.body.as_str()), (200, "gateway host=argocd.127-0-0-1.nip.io proto=HTTP/1.1\n"), "{h1:?}");
    let h2 = curl.get(&["--http2"], "argocd", "/").await;
    assert_eq!((h2.code, h2.body.as_str()), (200, "gateway host=argocd.127-0-0-1.nip.io proto=HTTP/2.0\n"), "{h2:?}");
    let s_client = openssl_s_client(entry.https_port, "argocd.127-0-0-1.nip.io", &ca).await;
    assert!(s_client.contains("ALPN protocol: h2"), "{s_client}");
    assert!(s_client.contains("Verify return code: 0 (ok)"), "{s_client}");
    assert!(s_client.contains(pem_body(&nginx.leaf_pem)), "the certificate served is not nginx's: {s_client}");

    // A websocket upgrade passes through, and bytes flow both ways after it.
    let echoed = websocket_echo(entry.https_port, "ws.127-0-0-1.nip.io", &ca, b"ping over the entry").await;
    assert_eq!(echoed, b"ping over the entry");

    // The HTTP port redirects to HTTPS, keeping path and query.
    let redirect = curl.http(entry.http_port, "argocd", "/a/b?c=d").await;
    assert_eq!(redirect.code, 308, "{redirect:?}");
    assert_eq!(redirect.redirect_url, format!("https://argocd.127-0-0-1.nip.io:{}/a/b?c=d", entry.https_port));

    // Answered here, with the entry's own certificate from the same CA.
    let landing = curl.get(&["--http2"], "", "/").await;
    assert_eq!(landing.code, 200, "{landing:?}");
    for needle in ["argocd.127-0-0-1.nip.io", "ns/grafana", "has no ready endpoint", "2 of 3 routes ready"] {
        assert!(landing.body.contains(needle), "landing page lacks {needle:?}: {}", landing.body);
    }
    let missing = curl.get(&[], "nope", "/").await;
    assert_eq!(missing.code, 404, "{missing:?}");
    assert!(missing.body.contains("No route for <code>nope.127-0-0-1.nip.io</code>") && missing.body.contains("argocd.127-0-0-1.nip.io"));
    let not_ready = curl.get(&[], "grafana", "/").await;
    assert_eq!(not_ready.code, 503, "{not_ready:?}");
    assert!(not_ready.body.contains("ns/grafana") && not_ready.body.contains("Service ns/grafana has no ready endpoint"));

    // A second host on a connection terminated here: 421, over HTTP/2 and HTTP/1.1.
    for version in ["--http2", "--http1.1"] {
        let coalesced = curl.get(&[version, "-H", "Host: argocd.127-0-0-1.nip.io"], "nope", "/").await;
        assert_eq!(coalesced.code, 421, "{version}: {coalesced:?}");
    }

    // A name outside the suffix: a TLS alert, and nothing reaches nginx.
    let before = nginx.requests();
    let outside = curl
        .raw(&["--resolve", &format!("example.com:{}:127.0.0.1", entry.https_port)], &format!("https://example.com:{}/", entry.https_port))
        .await;
    assert_eq!(outside.status, 35, "{outside:?}");
    assert!(outside.stderr.contains("unrecognized name"), "{outside:?}");
    let no_sni = curl.raw(&[], &format!("https://127.0.0.1:{}/", entry.https_port)).await;
    assert_ne!(no_sni.status, 0, "{no_sni:?}");
    assert_eq!(nginx.requests(), before, "a refused name reached the Gateway");

    // With the Gateway gone, the route's page says so.
    drop(nginx);
    let down = curl.get(&[], "argocd", "/").await;
    assert_eq!(down.code, 503, "{down:?}");
    assert!(down.body.contains("ns/argocd") && down.body.contains("the Gateway is not reachable"), "{}", down.body);

    // Shutdown drains within its bound.
    let began = Instant::now();
    entry.stop().await;
    assert!(began.elapsed() < edge_drain() + Duration::from_secs(1), "shutdown took {:?}", began.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswering_gateway_port_is_skipped_unknown_routes_pass_and_plain_text_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = lab_ca(dir.path());
    // Accepts and closes at once, the way Docker's proxy does when nothing listens inside.
    let closer = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closer_addr = closer.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((socket, _)) = closer.accept().await {
            drop(socket);
        }
    });
    let ws = echo_websocket_backend().await;
    let nginx = Nginx::start(dir.path(), &ca, ws).unwrap();
    let entry = Running::start(&ca, vec![closer_addr, nginx.addr()], vec![route("argocd", "argocd", Health::Ready)], true).await;
    let curl = Curl::new(&ca, entry.https_port);
    let through = curl.get(&[], "argocd", "/").await;
    assert_eq!(through.code, 200, "{through:?}");

    // Routes not known yet (no API answer): passed through, so nginx answers a name with no route.
    let unknown = Running::start(&ca, vec![nginx.addr()], Vec::new(), false).await;
    let through = Curl::new(&ca, unknown.https_port).get(&[], "nope", "/").await;
    assert_eq!((through.code, through.body.as_str()), (200, "gateway host=nope.127-0-0-1.nip.io proto=HTTP/2.0\n"));

    // Not TLS at all: the connection is closed, nothing forwarded.
    let before = nginx.requests();
    let mut plain = tokio::net::TcpStream::connect(("127.0.0.1", entry.https_port)).await.unwrap();
    plain.write_all(b"GET / HTTP/1.1\r\nHost: argocd.127-0-0-1.nip.io\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "a plain-text request was kept open");
    assert!(!String::from_utf8_lossy(&answer).contains("gateway"), "{answer:?}");
    assert_eq!(nginx.requests(), before);
    entry.stop().await;
    unknown.stop().await;
}
