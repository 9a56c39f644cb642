//! `idp-lab verify`: the original platform's smoke checks (digest §8 "Verify" and "What an
//! appliance must reproduce"), each passing or failing with its reason:
//!
//! | check | what passes |
//! |---|---|
//! | `api` | the lab's API server answers `/readyz` (the other checks need it) |
//! | `node` | each Node is Ready |
//! | `application` | each Argo CD Application is Synced and Healthy (and Argo CD is installed) |
//! | `gateway` | each Gateway, and the lab's `kube-system/idp-gateway`, is Accepted and Programmed |
//! | `external-secret` | each ExternalSecret is Ready (`stacks.secrets`) |
//! | `grafana-datasources` | Grafana, through the API server's service proxy, lists datasources for its admin login (`stacks.observability`) |
//! | `url` | each route's URL answers 2xx or 3xx over TLS through the lab's HTTPS entry, its certificate verified against the lab CA |
//!
//! Objects are judged by [`idp_core::readiness`], the rules `up` waits with and the
//! watchdog judges with. Progress goes to stderr, the results through the printer (the
//! shape: `docs/creds-verify.md`); exit [`CHECK_FAILED`] when any check fails.

use crate::cli::{Global, LabArgs};
use crate::commands::creds::{self, Sources};
use crate::exit::{CHECK_FAILED, Failure};
use crate::lab::{self, Lab};
use crate::printer::{Printer, table};
use crate::progress::Steps;
use idp_core::readiness::{self, Verdict};
use idp_core::routes::Route;
use idp_core::settings::Settings;
use idp_kube::proxy::ProxyRequest;
use idp_kube::{Cluster, KindRef};
use serde::Serialize;
use serde_json::Value;
use std::io::{Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

/// How long one connection to the HTTPS entry may take to connect, and to answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const ANSWER_TIMEOUT: Duration = Duration::from_secs(15);

/// The lab's Gateway, which every route hangs on (`embedded/components/gateway`).
const LAB_GATEWAY: (&str, &str) = ("kube-system", "idp-gateway");

const NODES: KindRef<'static> = KindRef { group: "", version: "v1", kind: "Node", plural: "nodes" };
const APPLICATIONS: KindRef<'static> = KindRef { group: "argoproj.io", version: "v1alpha1", kind: "Application", plural: "applications" };
const GATEWAYS: KindRef<'static> = KindRef { group: "gateway.networking.k8s.io", version: "v1", kind: "Gateway", plural: "gateways" };
const EXTERNAL_SECRETS: KindRef<'static> =
    KindRef { group: "external-secrets.io", version: "v1", kind: "ExternalSecret", plural: "externalsecrets" };

/// The `verify -o json` document.
#[derive(Serialize)]
struct Report {
    lab: String,
    checks: Vec<Check>,
    passed: usize,
    failed: usize,
}

/// One smoke check on one subject.
#[derive(Serialize)]
struct Check {
    /// What is checked: `api`, `node`, `application`, `gateway`, `external-secret`,
    /// `grafana-datasources` or `url`.
    check: &'static str,
    /// On what: `Node lab-server-0`, `https://argocd.127-0-0-1.nip.io/`.
    subject: String,
    pass: bool,
    /// What was seen: why it fails, or what passing looked like.
    reason: String,
}

fn check(check: &'static str, subject: impl Into<String>, pass: bool, reason: impl Into<String>) -> Check {
    Check { check, subject: subject.into(), pass, reason: reason.into() }
}

pub fn run(global: &Global, printer: Printer, args: LabArgs) -> Result<(), Failure> {
    let lab = Lab::load(global, &args)?;
    creds::require_lab(&lab)?;
    let settings = lab.ctx.settings()?;
    let kept = creds::kept_keys(&lab);
    let mut steps = Steps::new(global.quiet);
    steps.note(&format!("Verifying lab \"{}\"", lab.name));
    let checks = lab::runtime()?.block_on(checks(&lab, &settings, kept, &mut steps));
    let failed = checks.iter().filter(|c| !c.pass).count();
    let report = Report { lab: lab.name.clone(), passed: checks.len() - failed, failed, checks };
    printer.result(|| text(&report), &report)?;
    if failed == 0 {
        return Ok(());
    }
    let mut failing: Vec<String> = report.checks.iter().filter(|c| !c.pass).map(|c| c.subject.clone()).collect();
    if failing.len() > 3 {
        let more = failing.len() - 3;
        failing.truncate(3);
        failing.push(format!("{more} more"));
    }
    Err(Failure::new(CHECK_FAILED, format!("{failed} of {} checks failed: {}", report.checks.len(), failing.join(", "))))
}

/// Writes one step line for the checks of a group.
fn step(steps: &mut Steps, group: &str, checks: &[Check]) {
    let failed = checks.iter().filter(|c| !c.pass).count();
    if failed == 0 {
        steps.done(&format!("{group}: {} passed", checks.len()));
    } else {
        steps.failed(&format!("{group}: {failed} of {} failed", checks.len()));
    }
}

async fn checks(
    lab: &Lab,
    settings: &Settings,
    kept: Result<Option<idp_core::secrets::VaultKeys>, String>,
    steps: &mut Steps,
) -> Vec<Check> {
    let mut all = Vec::new();
    steps.start("API server");
    let cluster = match creds::connect(lab).await {
        Ok(cluster) => {
            let api = vec![check("api", format!("API server {}", cluster.server()), true, "answers /readyz with ok")];
            step(steps, "API server", &api);
            all.extend(api);
            cluster
        }
        Err(reason) => {
            let api = vec![check("api", "API server", false, format!("{reason} (every other check needs it)"))];
            step(steps, "API server", &api);
            return api;
        }
    };
    let stacks = &lab.ctx.config.stacks;

    steps.start("nodes");
    let nodes = objects(&cluster, &NODES, "node", "Node", |_| "Ready".to_owned(), &lab.name).await;
    let nodes = if nodes.is_empty() { vec![check("node", "Nodes", false, "no node is registered with the API server")] } else { nodes };
    step(steps, "nodes", &nodes);
    all.extend(nodes);

    steps.start("Argo CD Applications");
    let apps = objects(&cluster, &APPLICATIONS, "application", "Application", application_passed, &lab.name).await;
    let apps = if apps.is_empty() {
        vec![check("application", "Applications", false, "no Application exists: Argo CD delivers no stack yet")]
    } else {
        apps
    };
    step(steps, "Argo CD Applications", &apps);
    all.extend(apps);

    steps.start("Gateways");
    let mut gateways = objects(&cluster, &GATEWAYS, "gateway", "Gateway", |_| "Accepted and Programmed".to_owned(), &lab.name).await;
    let lab_gateway = format!("Gateway {}/{}", LAB_GATEWAY.0, LAB_GATEWAY.1);
    if !gateways.iter().any(|c| c.subject == lab_gateway || c.subject == "Gateways") {
        gateways.push(check("gateway", lab_gateway, false, format!("it does not exist; `idp-lab up --name {}` applies it", lab.name)));
    }
    step(steps, "Gateways", &gateways);
    all.extend(gateways);

    if stacks.secrets {
        steps.start("ExternalSecrets");
        let secrets = objects(&cluster, &EXTERNAL_SECRETS, "external-secret", "ExternalSecret", |_| "Ready".to_owned(), &lab.name).await;
        let secrets =
            if secrets.is_empty() { vec![check("external-secret", "ExternalSecrets", false, "no ExternalSecret exists")] } else { secrets };
        step(steps, "ExternalSecrets", &secrets);
        all.extend(secrets);
    } else {
        steps.note("- ExternalSecrets: not checked (stacks.secrets is off)");
    }

    if stacks.observability {
        steps.start("Grafana datasources");
        let grafana = vec![grafana_datasources(lab, settings, &cluster, kept).await];
        step(steps, "Grafana datasources", &grafana);
        all.extend(grafana);
    } else {
        steps.note("- Grafana datasources: not checked (stacks.observability is off)");
    }

    steps.start("URLs");
    let urls = urls(lab, settings, &cluster).await;
    step(steps, "URLs", &urls);
    all.extend(urls);
    all
}

/// One check per object of `kind`, by its readiness verdict; what passing looked like
/// from `passed`. A kind the cluster does not serve, or a failed list, is one failing
/// check naming it.
async fn objects(
    cluster: &Cluster,
    kind: &KindRef<'_>,
    name: &'static str,
    title: &str,
    passed: fn(&Value) -> String,
    lab: &str,
) -> Vec<Check> {
    let plural = format!("{title}s");
    let listed = match cluster.list_objects(kind).await {
        Ok(Some(listed)) => listed,
        Ok(None) => {
            return vec![check(
                name,
                plural,
                false,
                format!(
                    "the cluster does not serve {} (its CRD is not installed); `idp-lab up --name {lab}` installs the platform",
                    kind.resource()
                ),
            )];
        }
        Err(e) => return vec![check(name, plural, false, e.to_string())],
    };
    listed
        .iter()
        .map(|object| {
            let subject = subject(title, object);
            match readiness::verdict(object) {
                Verdict::Ready => check(name, subject, true, passed(object)),
                Verdict::InProgress { reason } => check(name, subject, false, format!("not ready yet: {reason}")),
                Verdict::Failed { reason } => check(name, subject, false, reason),
            }
        })
        .collect()
}

fn subject(title: &str, object: &Value) -> String {
    let at = |p: &str| object.pointer(p).and_then(Value::as_str).unwrap_or_default();
    match at("/metadata/namespace") {
        "" => format!("{title} {}", at("/metadata/name")),
        namespace => format!("{title} {namespace}/{}", at("/metadata/name")),
    }
}

fn application_passed(app: &Value) -> String {
    let at = |p: &str| app.pointer(p).and_then(Value::as_str).unwrap_or_default();
    format!("{}, {}", at("/status/sync/status"), at("/status/health/status"))
}

/// Grafana's datasources, through the API server's service proxy to the Service its
/// route names (the catalogue's), signed in with the admin login `creds` reads. The API
/// server keeps `Authorization` for itself, so the login is Grafana's own: `POST /login`,
/// then its session cookie.
async fn grafana_datasources(
    lab: &Lab,
    settings: &Settings,
    cluster: &Cluster,
    kept: Result<Option<idp_core::secrets::VaultKeys>, String>,
) -> Check {
    const NAME: &str = "grafana-datasources";
    let Some((namespace, service, port)) = lab
        .ctx
        .catalogue
        .components
        .iter()
        .find_map(|c| c.routes.iter().find(|r| r.host == "grafana").map(|r| (c.namespace.clone(), r.service.clone(), r.port)))
    else {
        return check(NAME, "Grafana", false, "the embedded catalogue has no route for grafana");
    };
    let subject = format!("Grafana (Service {namespace}/{service}:{port})");
    let mut sources = Sources::open(lab, kept).await;
    let url = creds::url("grafana", &settings.network.dns_suffix, settings.network.ports.https);
    let login = match sources.login("grafana", url).await {
        Ok(login) => login,
        Err(e) => return check(NAME, subject, false, format!("no admin login to sign in with: {e}")),
    };
    let port = port.to_string();
    let request = |method: http::Method, path: &str, headers: Vec<(String, String)>, body: Vec<u8>| ProxyRequest {
        method,
        path: path.to_owned(),
        headers: [vec![("Accept".to_owned(), "application/json".to_owned())], headers].concat(),
        body,
    };
    let credentials = serde_json::json!({ "user": login.username.clone().unwrap_or_default(), "password": login.password });
    let sign_in = request(
        http::Method::POST,
        "login",
        vec![("Content-Type".to_owned(), "application/json".to_owned())],
        credentials.to_string().into_bytes(),
    );
    let answer = match cluster.service_proxy(&namespace, &service, &port, sign_in).await {
        Ok(answer) => answer,
        Err(e) => return check(NAME, subject, false, format!("Grafana is not reachable through the API server: {e}")),
    };
    if answer.status != 200 {
        return check(
            NAME,
            subject,
            false,
            format!("Grafana refused the admin login read from {}: {}", login.source, answer_line(&answer)),
        );
    }
    // `name=value` of each Set-Cookie, for the session.
    let cookies: Vec<&str> = answer.header_values("set-cookie").filter_map(|c| c.split(';').next()).map(str::trim).collect();
    if cookies.is_empty() {
        return check(NAME, subject, false, "Grafana accepted the admin login but set no session cookie");
    }
    let list = request(http::Method::GET, "api/datasources", vec![("Cookie".to_owned(), cookies.join("; "))], Vec::new());
    let answer = match cluster.service_proxy(&namespace, &service, &port, list).await {
        Ok(answer) => answer,
        Err(e) => return check(NAME, subject, false, format!("Grafana is not reachable through the API server: {e}")),
    };
    if answer.status != 200 {
        return check(NAME, subject, false, format!("GET /api/datasources: {}", answer_line(&answer)));
    }
    let Ok(Value::Array(datasources)) = serde_json::from_slice::<Value>(&answer.body) else {
        return check(NAME, subject, false, "GET /api/datasources did not answer a JSON list");
    };
    if datasources.is_empty() {
        return check(NAME, subject, false, "Grafana has no datasource");
    }
    let mut names: Vec<String> =
        datasources.iter().map(|d| format!("{} ({})", d["name"].as_str().unwrap_or("?"), d["type"].as_str().unwrap_or("?"))).collect();
    names.sort();
    check(NAME, subject, true, format!("{} datasource{}: {}", names.len(), if names.len() == 1 { "" } else { "s" }, names.join(", ")))
}

/// An upstream's answer in one line: the status and Grafana's `message`, if any.
fn answer_line(answer: &idp_kube::proxy::ProxyResponse) -> String {
    let message = serde_json::from_slice::<Value>(&answer.body).ok().and_then(|v| v["message"].as_str().map(str::to_owned));
    match message {
        Some(message) => format!("{} {message}", answer.status),
        None => format!("status {}", answer.status),
    }
}

/// One check per URL of the lab's routes: a GET through the lab's HTTPS entry, trusting
/// only the lab CA.
async fn urls(lab: &Lab, settings: &Settings, cluster: &Cluster) -> Vec<Check> {
    let routes = match cluster.routes().await {
        Ok(routes) => routes,
        Err(e) => return vec![check("url", "routes", false, e.to_string())],
    };
    let port = settings.network.ports.https;
    let suffix_port = if port == 443 { String::new() } else { format!(":{port}") };
    let targets: Vec<(String, &Route)> =
        routes.iter().flat_map(|r| r.hostnames.iter().filter(|h| !h.contains('*')).map(move |h| (h.clone(), r))).collect();
    if targets.is_empty() {
        return vec![check("url", "routes", false, "no HTTPRoute with a hostname exists; `idp-lab up` applies the platform's")];
    }
    let ca_path = lab::ca_dir(&lab.dir()).join(idp_edge::CERT_FILE);
    let tls = match client_config(&ca_path) {
        Ok(tls) => tls,
        Err(reason) => {
            return targets.iter().map(|(host, _)| check("url", format!("https://{host}{suffix_port}/"), false, reason.clone())).collect();
        }
    };
    let (entry, daemon_runs) = entry_address(lab, settings);
    let fetches = targets.iter().map(|(host, _)| {
        let (host, tls) = (host.clone(), Arc::clone(&tls));
        let authority = format!("{host}{suffix_port}");
        tokio::task::spawn_blocking(move || fetch(entry, &host, &authority, tls))
    });
    let answers = futures::future::join_all(fetches).await;
    targets
        .iter()
        .zip(answers)
        .map(|((host, route), answer)| {
            let subject = format!("https://{host}{suffix_port}/");
            let answer = answer.unwrap_or_else(|e| Err(format!("the request did not finish: {e}")));
            let not_ready = match &route.health {
                idp_core::routes::Health::NotReady { reason } => {
                    format!("; route {}/{} is not ready: {reason}", route.namespace, route.name)
                }
                idp_core::routes::Health::Ready => String::new(),
            };
            match answer {
                Ok((status, line)) if (200..400).contains(&status) => {
                    check("url", subject, true, format!("{line} over TLS (the lab CA's certificate)"))
                }
                Ok((_, line)) => check("url", subject, false, format!("answered {line}{not_ready}")),
                Err(e) if !daemon_runs => check(
                    "url",
                    subject,
                    false,
                    format!("{e}; the lab daemon (its HTTPS entry) is not running: `idp-lab up --name {}` starts it", lab.name),
                ),
                Err(e) => check("url", subject, false, format!("{e}{not_ready}")),
            }
        })
        .collect()
}

/// Where the lab's HTTPS entry listens (the running daemon's `https` listener, else the
/// lab's bind address and HTTPS port), as a client connects to it; and whether it runs.
fn entry_address(lab: &Lab, settings: &Settings) -> (SocketAddr, bool) {
    let connectable = |addr: SocketAddr| {
        if addr.ip().is_unspecified() { SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port()) } else { addr }
    };
    let configured = connectable(SocketAddr::new(settings.network.bind_address, settings.network.ports.https));
    match idp_daemon::status(&lab.dir()) {
        idp_daemon::DaemonState::Stopped => (configured, false),
        idp_daemon::DaemonState::Running { info, .. } => {
            let listening = info
                .iter()
                .flat_map(|i| i.listeners.iter())
                .find(|l| l.name == "https")
                .and_then(|l| l.address.parse::<SocketAddr>().ok())
                .map(connectable);
            (listening.unwrap_or(configured), true)
        }
    }
}

/// A TLS client that trusts the lab CA at `ca_path` and nothing else, speaking HTTP/1.1.
fn client_config(ca_path: &std::path::Path) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let pem = std::fs::read(ca_path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("the lab has no CA ({} is missing); `idp-lab up` makes it", ca_path.display()),
        _ => format!("failed to read the lab CA {}: {e}", ca_path.display()),
    })?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| format!("the lab CA {} is not PEM: {e}", ca_path.display()))?;
        roots.add(cert).map_err(|e| format!("the lab CA {} is not a usable certificate: {e}", ca_path.display()))?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// `GET /` of `host` through the entry at `entry` (SNI `host`, `Host: authority`): the
/// status and the status line's text, e.g. `(200, "200 OK")`.
fn fetch(entry: SocketAddr, host: &str, authority: &str, tls: Arc<rustls::ClientConfig>) -> Result<(u16, String), String> {
    let tcp = TcpStream::connect_timeout(&entry, CONNECT_TIMEOUT)
        .map_err(|e| format!("cannot connect to the lab's HTTPS entry at {entry}: {e}"))?;
    tcp.set_read_timeout(Some(ANSWER_TIMEOUT)).and_then(|()| tcp.set_write_timeout(Some(ANSWER_TIMEOUT))).map_err(|e| e.to_string())?;
    let name = rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|e| format!("{host:?} is not a server name: {e}"))?;
    let connection = rustls::ClientConnection::new(tls, name).map_err(|e| e.to_string())?;
    let mut stream = rustls::StreamOwned::new(connection, tcp);
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: idp-lab/{} verify\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    );
    let tls_error = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => format!("no answer within {}s", ANSWER_TIMEOUT.as_secs()),
        _ => format!("TLS or HTTP with {host} through {entry} failed: {e}"),
    };
    stream.write_all(request.as_bytes()).and_then(|()| stream.flush()).map_err(tls_error)?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 8192 {
        let n = stream.read(&mut buf).map_err(tls_error)?;
        if n == 0 {
            return Err(format!("{host} closed the connection without an answer"));
        }
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head);
    let line = head.lines().next().unwrap_or_default();
    // `HTTP/1.1 200 OK`
    let mut parts = line.splitn(2, ' ');
    let (version, rest) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default().trim());
    let status = rest.split(' ').next().and_then(|s| s.parse::<u16>().ok());
    match status {
        Some(status) if version.starts_with("HTTP/") => Ok((status, rest.to_owned())),
        _ => Err(format!("{host} did not answer HTTP: {line:?}")),
    }
}

fn text(report: &Report) -> String {
    let rows: Vec<Vec<String>> = report
        .checks
        .iter()
        .map(|c| vec![if c.pass { "ok" } else { "FAIL" }.to_owned(), c.check.to_owned(), c.subject.clone(), c.reason.clone()])
        .collect();
    let mut out = table(&["", "CHECK", "SUBJECT", "REASON"], &rows);
    out.push_str(&format!("Lab \"{}\": {} passed, {} failed\n", report.lab, report.passed, report.failed));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn objects_are_named_with_their_namespace_when_they_have_one() {
        assert_eq!(subject("Node", &json!({"metadata": {"name": "lab-server-0"}})), "Node lab-server-0");
        assert_eq!(subject("Application", &json!({"metadata": {"name": "a", "namespace": "argocd"}})), "Application argocd/a");
    }

    #[test]
    fn a_passing_application_says_its_sync_and_health() {
        let app = json!({"status": {"sync": {"status": "Synced"}, "health": {"status": "Healthy"}}});
        assert_eq!(application_passed(&app), "Synced, Healthy");
    }

    #[test]
    fn the_report_counts_and_shapes_as_documented() {
        let checks = vec![check("api", "API server", true, "answers /readyz with ok"), check("node", "Node a", false, "KubeletNotReady")];
        let report = Report { lab: "l".into(), passed: 1, failed: 1, checks };
        let v = serde_json::to_value(&report).expect("json");
        assert_eq!(v["checks"][1], json!({"check": "node", "subject": "Node a", "pass": false, "reason": "KubeletNotReady"}));
        assert_eq!((v["passed"].as_u64(), v["failed"].as_u64()), (Some(1), Some(1)));
        assert!(text(&report).contains("FAIL  node   Node a"), "{}", text(&report));
    }
}
