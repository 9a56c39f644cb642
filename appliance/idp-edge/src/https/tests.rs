use super::*;
use idp_core::routes::{Backend, Health};

fn route(name: &str, host: &str, health: Health) -> Route {
    Route {
        namespace: "ns".into(),
        name: name.into(),
        hostnames: vec![host.into()],
        backends: vec![Backend { kind: "Service".into(), namespace: "ns".into(), name: name.into(), port: Some(80) }],
        health,
    }
}

fn snapshot(synced: bool) -> RouteSnapshot {
    RouteSnapshot {
        routes: vec![
            route("argocd", "argocd.127-0-0-1.nip.io", Health::Ready),
            route("grafana", "grafana.127-0-0-1.nip.io", Health::NotReady { reason: "Service ns/grafana has no ready endpoint".into() }),
        ],
        synced,
        error: None,
    }
}

#[test]
fn decisions_follow_the_table_of_the_module_docs() {
    let s = snapshot(true);
    let d = |sni: Option<&str>| decide("127-0-0-1.nip.io", sni, &s);
    assert_eq!(d(None), Decision::Reject);
    assert_eq!(d(Some("example.com")), Decision::Reject);
    assert_eq!(d(Some("x127-0-0-1.nip.io")), Decision::Reject);
    assert_eq!(d(Some("127-0-0-1.nip.io.evil.com")), Decision::Reject);
    assert_eq!(d(Some("127-0-0-1.NIP.io.")), Decision::Landing);
    assert_eq!(d(Some("ArgoCD.127-0-0-1.nip.io")), Decision::Forward(Some("ns/argocd".into())));
    assert_eq!(
        d(Some("grafana.127-0-0-1.nip.io")),
        Decision::Unavailable { route: "ns/grafana".into(), reason: "Service ns/grafana has no ready endpoint".into() }
    );
    assert_eq!(d(Some("nope.127-0-0-1.nip.io")), Decision::NotFound);
}

#[test]
fn unknown_routes_are_passed_through_not_refused() {
    let s = snapshot(false);
    assert_eq!(decide("127-0-0-1.nip.io", Some("nope.127-0-0-1.nip.io"), &s), Decision::Forward(None));
}

#[test]
fn pages_escape_what_the_cluster_says() {
    let mut s = snapshot(true);
    s.routes[0].namespace = "<script>".into();
    s.routes[1].health = Health::NotReady { reason: "a \"quoted\" & <b>bold</b> reason".into() };
    let html = pages::landing("127-0-0-1.nip.io", &s, &|h| format!("https://{h}:8443"));
    assert!(!html.contains("<script>"), "{html}");
    assert!(html.contains("&lt;script&gt;/argocd"));
    assert!(html.contains("a &quot;quoted&quot; &amp; &lt;b&gt;bold&lt;/b&gt; reason"));
    assert!(html.contains(r#"<a href="https://argocd.127-0-0-1.nip.io:8443/">argocd.127-0-0-1.nip.io</a>"#));
    assert!(html.contains("1 of 2 routes ready"));
    let page = pages::unavailable("g.x", "ns/<g>", "down");
    assert!(page.contains("ns/&lt;g&gt;") && page.contains("http-equiv=\"refresh\""));
}

#[test]
fn hosts_come_from_the_authority_or_the_host_header_without_port_or_case() {
    let h2 = Request::builder().uri("https://ArgoCD.x.nip.io:8443/path").body(()).expect("request");
    assert_eq!(request_host(&h2).as_deref(), Some("argocd.x.nip.io"));
    let h1 = Request::builder().uri("/path").header("host", "Grafana.x.nip.io.:8443").body(()).expect("request");
    assert_eq!(request_host(&h1).as_deref(), Some("grafana.x.nip.io"));
    let bad = Request::builder().uri("/").header("host", "a b").body(()).expect("request");
    assert_eq!(request_host(&bad), None);
}

#[test]
fn the_redirect_keeps_path_and_query_and_names_the_https_port() {
    let peer: SocketAddr = "127.0.0.1:1".parse().expect("addr");
    let request = Request::builder().uri("/a/b?c=d").header("host", "argocd.x.nip.io:8080").body(()).expect("request");
    let response = redirect("x.nip.io", 8443, peer, &request);
    assert_eq!(response.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(response.headers()[header::LOCATION], "https://argocd.x.nip.io:8443/a/b?c=d");
    let on_443 = redirect("x.nip.io", 443, peer, &request);
    assert_eq!(on_443.headers()[header::LOCATION], "https://argocd.x.nip.io/a/b?c=d");
    let other = Request::builder().uri("/").header("host", "example.com").body(()).expect("request");
    assert_eq!(redirect("x.nip.io", 443, peer, &other).status(), StatusCode::NOT_FOUND);
}

/// A connected pair of loopback sockets.
async fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let (a, b) = tokio::join!(TcpStream::connect(listener.local_addr().expect("addr")), listener.accept());
    (a.expect("connect"), b.expect("accept").0)
}

#[tokio::test]
async fn pass_through_counts_both_ways_and_closes_both_when_one_side_ends() {
    let (mut client, client_side) = pair().await;
    let (upstream_side, mut upstream) = pair().await;
    let joined = tokio::spawn(async move { pass_through(client_side, upstream_side, b"HELLO").await });
    let mut hello = [0u8; 5];
    client.read_exact(&mut hello).await.expect("the answer first");
    assert_eq!(&hello, b"HELLO");
    client.write_all(b"ping!!").await.expect("write");
    let mut ping = [0u8; 6];
    upstream.read_exact(&mut ping).await.expect("forwarded");
    upstream.write_all(b"pong").await.expect("write");
    let mut pong = [0u8; 4];
    client.read_exact(&mut pong).await.expect("back");
    // The Gateway ends: the client's side is closed too, and the counts are whole.
    drop(upstream);
    let (up, down) = tokio::time::timeout(Duration::from_secs(5), joined).await.expect("ends").expect("joins");
    assert_eq!((up, down), (6, 5 + 4));
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut rest)).await.expect("closed");
    assert!(read.is_ok_and(|n| n == 0), "the client's connection is closed");
}
