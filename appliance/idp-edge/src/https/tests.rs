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
