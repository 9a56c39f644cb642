use super::*;
use crate::Listener;

fn state(dir: &Path) -> (State, watch::Sender<RouteSnapshot>) {
    let (sender, receiver) = watch::channel(RouteSnapshot { routes: Vec::new(), synced: true, error: None });
    let routes = Arc::new(Routes {
        dir: dir.to_path_buf(),
        sender: sender.clone(),
        task: tokio::sync::Mutex::new(None),
        shutdown: CancellationToken::new(),
        watchdog: None,
    });
    let info = DaemonInfo {
        lab: "demo".into(),
        pid: 42,
        version: "0.0.0".into(),
        started: 1,
        listeners: vec![Listener { name: "https".into(), address: "127.0.0.1:8443".into() }],
    };
    let registry = Arc::new(crate::network::LabRegistry::new(dir.to_path_buf(), None, None, CancellationToken::new()));
    (State { info, routes, registry, snapshot: receiver, watchdog: None }, sender)
}

#[tokio::test]
async fn the_routes_answer_what_the_socket_serves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (state, _sender) = state(dir.path());
    let (status, body) = route(&state, &Method::GET, "/healthz").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(serde_json::from_str::<DaemonInfo>(&body).expect("json"), state.info);
    let (status, body) = route(&state, &Method::GET, "/routes").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, r#"{"error":null,"routes":[],"synced":true}"#));
    assert_eq!(route(&state, &Method::POST, "/healthz").await.0, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(route(&state, &Method::GET, "/reload").await.0, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(route(&state, &Method::GET, "/nope").await.0, StatusCode::NOT_FOUND);
    // Without a kubeconfig, a reload succeeds and the snapshot says why there are no routes.
    let (status, body) = route(&state, &Method::POST, "/reload").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, r#"{"reloaded":true,"warnings":[]}"#));
    let error = state.snapshot.borrow().error.clone().expect("an error");
    assert!(error.contains("has no kubeconfig"), "{error}");
    // A kubeconfig that is not one: 500 with the reason.
    std::fs::write(dir.path().join(crate::KUBECONFIG_FILE), "not: [a kubeconfig").expect("write");
    let (status, body) = route(&state, &Method::POST, "/reload").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
}

#[tokio::test]
async fn the_socket_is_private_and_answers_over_http() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("daemon.sock");
    let listener = bind(&path).expect("bind");
    let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let (state, _sender) = state(dir.path());
    let token = CancellationToken::new();
    let server = tokio::spawn(serve(listener, Arc::new(state), token.clone()));
    let body = request(&path, Method::GET, "/healthz").await.expect("healthz");
    assert_eq!(serde_json::from_slice::<DaemonInfo>(&body).expect("json").pid, 42);
    let err = request(&path, Method::GET, "/nope").await.expect_err("404 is an error");
    assert!(err.to_string().contains("404"), "{err}");
    token.cancel();
    tokio::time::timeout(std::time::Duration::from_secs(3), server).await.expect("stops").expect("joins").expect("ok");
    let gone = request(&dir.path().join("missing.sock"), Method::GET, "/healthz").await.expect_err("no socket");
    assert!(gone.to_string().contains("cannot connect"), "{gone}");
}
