//! `idp-lab creds` and `idp-lab verify` as a user runs them, against the test bed's real
//! API server (Kubernetes 1.20) in a lab state directory made by hand: a kubeconfig and,
//! for `creds`, the Vault keys record (no Docker nodes; there is no kubelet either, so the
//! tests write the objects' statuses themselves, as the controllers would).
//!
//! * `creds`: OpenBao stands in for Vault (its HTTP API is Vault's). It runs on this
//!   host's non-loopback address behind Service `vault-system/vault`, Endpoints and a pod
//!   `vault-0` whose status names that address, so the API server's service proxy reaches
//!   it as it reaches the lab's Vault (it refuses loopback endpoints). It is initialised
//!   and seeded by `idp_vault` as `up` does, and its keys kept in the lab's state store.
//! * `verify`: the real CRDs (`idp_test::crds`, downlevelled) with Nodes, Applications,
//!   a Gateway and ExternalSecrets whose statuses pass or fail; a stand-in Grafana (an
//!   HTTP server in this test speaking Grafana's login and `/api/datasources`) behind the
//!   service proxy; and the lab daemon's real HTTPS entry (`idp-lab serve`) in front of a
//!   stand-in Gateway (TLS with a lab-CA leaf) for the routes' URLs.

#![allow(clippy::unwrap_used)]

use idp_test::poll::{Attempt, poll_until};
use idp_test::{ControlPlane, IsolatedEnv, Need, require};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

const SUFFIX: &str = "127-0-0-1.nip.io";

/// The lab's HTTPS port in every run (fixed, so no probe chooses another).
fn https_port() -> u16 {
    free_port(IpAddr::from([127, 0, 0, 1]))
}

fn free_port(ip: IpAddr) -> u16 {
    TcpListener::bind((ip, 0)).unwrap().local_addr().unwrap().port()
}

/// This host's first IPv4 address that is neither loopback nor link-local: the API
/// server (on this host) dials it, and accepts it as an endpoint.
fn host_address() -> IpAddr {
    let found = nix::ifaddrs::getifaddrs().unwrap().find_map(|ifa| {
        let ip = ifa.address.as_ref()?.as_sockaddr_in()?.ip();
        (!ip.is_loopback() && !ip.is_link_local() && !ip.is_unspecified()).then_some(IpAddr::V4(ip))
    });
    found.expect("this host has no non-loopback IPv4 address for the API server to dial")
}

/// A lab made by hand in an isolated home: its state directory with the test bed's
/// kubeconfig, and the ports its commands use.
struct Lab {
    env: IsolatedEnv,
    name: String,
    https: u16,
    vars: Vec<(String, String)>,
}

impl Lab {
    fn new(name: &str, kubeconfig: &str) -> Lab {
        let env = IsolatedEnv::new().unwrap();
        let https = https_port();
        let lab = Lab { env, name: name.to_owned(), https, vars: Vec::new() };
        std::fs::create_dir_all(lab.dir()).unwrap();
        std::fs::write(lab.dir().join("kubeconfig"), kubeconfig).unwrap();
        lab
    }

    fn dir(&self) -> PathBuf {
        self.env.idp_lab_home().join("labs").join(&self.name)
    }

    fn store(&self) -> idp_state::StateStore {
        idp_state::StateStore::for_lab(&self.env.idp_lab_home(), &self.name)
    }

    fn command(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = self.env.command(env!("CARGO_BIN_EXE_idp-lab"));
        cmd.current_dir(self.env.root())
            .env("NO_COLOR", "1")
            .env("IDP_LAB_NETWORK_HTTPS_PORT", self.https.to_string())
            .envs(self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .args(args)
            .args(["--name", &self.name]);
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// `args -o json`: its exit code and document.
    fn json(&self, args: &[&str]) -> (Option<i32>, Value) {
        let out = self.run(&[args, &["-o", "json"]].concat());
        let doc = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("idp-lab {args:?}: no JSON ({e}): {}\n{}", stdout(&out), stderr(&out)));
        (out.status.code(), doc)
    }

    fn url(&self, host: &str) -> String {
        format!("https://{host}.{SUFFIX}:{}/", self.https)
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// kubectl against the test bed; its stdout.
fn kubectl(cp: &ControlPlane, args: &[&str]) -> String {
    let out = cp.kubectl().args(args).output().unwrap();
    assert!(out.status.success(), "kubectl {args:?}: {}", stderr(&out));
    stdout(&out)
}

fn apply(cp: &ControlPlane, dir: &Path, yaml: &str) {
    let file = tempfile::Builder::new().suffix(".yaml").tempfile_in(dir).unwrap();
    std::fs::write(file.path(), yaml).unwrap();
    kubectl(cp, &["apply", "-f", &file.path().display().to_string()]);
}

/// Writes `status` to the object at API path `path` through its status subresource (a
/// read, then a PUT of the object with that status), as its controller would.
fn write_status(cp: &ControlPlane, dir: &Path, path: &str, status: Value) {
    let mut object: Value = serde_json::from_str(&kubectl(cp, &["get", "--raw", path])).unwrap();
    object["status"] = status;
    let file = tempfile::Builder::new().suffix(".json").tempfile_in(dir).unwrap();
    std::fs::write(file.path(), object.to_string()).unwrap();
    kubectl(cp, &["replace", "--raw", &format!("{path}/status"), "-f", &file.path().display().to_string()]);
}

fn condition(type_: &str, status: &str, reason: &str, message: &str) -> Value {
    json!({"type": type_, "status": status, "reason": reason, "message": message, "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 1})
}

/// Service `namespace/name` (port `port`, name `http`) whose one endpoint is `upstream`,
/// with pod `pod` at its address as the target the API server checks before it dials.
fn service_to(cp: &ControlPlane, dir: &Path, namespace: &str, name: &str, port: u16, pod: &str, upstream: SocketAddr) {
    let (ip, target) = (upstream.ip(), upstream.port());
    apply(
        cp,
        dir,
        &format!(
            r#"
apiVersion: v1
kind: ServiceAccount
metadata: {{name: {pod}, namespace: {namespace}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: {pod}, namespace: {namespace}}}
spec:
  nodeName: stand-in-node
  serviceAccountName: {pod}
  automountServiceAccountToken: false
  containers: [{{name: main, image: stand-in}}]
---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {namespace}}}
spec: {{ports: [{{name: http, port: {port}, targetPort: {target}}}]}}
---
apiVersion: v1
kind: Endpoints
metadata: {{name: {name}, namespace: {namespace}}}
subsets:
  - addresses: [{{ip: "{ip}", targetRef: {{kind: Pod, namespace: {namespace}, name: {pod}}}}}]
    ports: [{{name: http, port: {target}}}]
"#
        ),
    );
    write_status(
        cp,
        dir,
        &format!("/api/v1/namespaces/{namespace}/pods/{pod}"),
        json!({"phase": "Running", "podIP": ip.to_string(), "podIPs": [{"ip": ip.to_string()}], "conditions": [{"type": "Ready", "status": "True"}]}),
    );
}

fn namespaces(cp: &ControlPlane, dir: &Path, names: &[&str]) {
    let yaml: Vec<String> = names.iter().map(|n| format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {n}}}\n")).collect();
    apply(cp, dir, &yaml.join("---\n"));
}

/// Every field path of `doc` (`lab`, `logins[].service`, ...) is named in
/// docs/creds-verify.md, so the documented shape stays the real one.
fn shape_is_documented(doc: &Value) {
    fn paths(v: &Value, prefix: &str, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    out.push(path.clone());
                    paths(v, &path, out);
                }
            }
            Value::Array(items) => items.iter().for_each(|i| paths(i, &format!("{prefix}[]"), out)),
            _ => {}
        }
    }
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/creds-verify.md")).unwrap();
    let mut found = Vec::new();
    paths(doc, "", &mut found);
    for path in found {
        assert!(text.contains(&format!("`{path}`")), "docs/creds-verify.md does not describe `{path}`");
    }
}

// --- creds -------------------------------------------------------------------------------

/// `bao server` (OpenBao, standing in for Vault) on `ip` with raft storage in `dir`.
fn openbao(testbed: &idp_test::Testbed, dir: &Path, ip: IpAddr) -> (idp_test::process::Supervised, u16) {
    let (port, cluster_port) = (free_port(ip), free_port(ip));
    let data = dir.join("bao-data");
    std::fs::create_dir_all(&data).unwrap();
    let config = format!(
        r#"storage "raft" {{
  path    = "{data}"
  node_id = "vault-0"
}}
listener "tcp" {{
  address         = "{ip}:{port}"
  cluster_address = "{ip}:{cluster_port}"
  tls_disable     = true
}}
api_addr     = "http://{ip}:{port}"
cluster_addr = "http://{ip}:{cluster_port}"
ui           = false
"#,
        data = data.display()
    );
    std::fs::write(dir.join("bao.hcl"), config).unwrap();
    let process = idp_test::process::Supervised::spawn(
        "bao",
        &testbed.bin("bao"),
        ["server".to_owned(), format!("-config={}", dir.join("bao.hcl").display())],
        dir,
    )
    .unwrap();
    (process, port)
}

fn login<'a>(creds: &'a Value, service: &str) -> &'a Value {
    creds["logins"].as_array().unwrap().iter().find(|l| l["service"] == service).unwrap_or_else(|| panic!("no {service} in {creds}"))
}

/// `creds` prints the seeded values and the root token, each with its source; with Vault
/// sealed, the entries that need it say so and the rest still print (from the Secrets
/// External Secrets writes); with nothing readable it exits 12; without a lab, 11.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creds_reads_the_logins_where_the_platform_keeps_them() {
    let testbed = require!(Need::KubeBinaries, Need::OpenBao);
    let cp = ControlPlane::start_without_controller_manager().await.expect("control plane");
    let lab = Lab::new("crd", cp.kubeconfig());
    let scratch = lab.env.root().to_path_buf();
    let ip = host_address();
    let (bao, bao_port) = openbao(&testbed, &scratch, ip);

    namespaces(&cp, &scratch, &["vault-system", "observability", "cicd"]);
    service_to(&cp, &scratch, "vault-system", "vault", 8200, "vault-0", SocketAddr::new(ip, bao_port));

    // Initialised, unsealed and seeded as `up` does it, through the API server.
    let cluster = idp_kube::Cluster::from_kubeconfig(cp.kubeconfig(), None).await.unwrap();
    let vault = idp_vault::Vault::in_lab(&cluster);
    let keys = poll_until("OpenBao to answer through the service proxy", Duration::from_secs(60), || {
        let (vault, cluster) = (vault.clone(), cluster.clone());
        async move {
            Ok(match idp_vault::init_and_unseal(&vault, Some(&cluster), None).await {
                Ok(outcome) => Attempt::Done(outcome.keys),
                Err(e) if e.is_transport() => Attempt::Retry(e.to_string()),
                Err(e) => return Err(e.into()),
            })
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", bao.log_tail(30)));
    lab.store().put(idp_state::VAULT_KEYS_RECORD, &keys).unwrap();
    let root = vault.with_token(&keys.root_token);
    let inputs = BTreeMap::from([("grafana_admin_password".to_owned(), "grafana-admin-pw".to_owned())]);
    idp_vault::seed(&root, idp_core::secrets::SEEDS, &inputs).await.unwrap();
    let argocd = root.kv_get("argocd/admin").await.unwrap().unwrap();
    let sonarqube = root.kv_get("sonarqube/admin").await.unwrap().unwrap();

    let (code, creds) = lab.json(&["creds"]);
    assert_eq!(code, Some(0), "{creds}");
    assert_eq!(creds["lab"], "crd");
    shape_is_documented(&creds);
    let services: Vec<&str> = creds["logins"].as_array().unwrap().iter().filter_map(|l| l["service"].as_str()).collect();
    assert_eq!(services, ["argocd", "grafana", "sonarqube", "vault", "backstage"]);
    let a = login(&creds, "argocd");
    assert_eq!((a["url"].as_str(), a["username"].as_str()), (Some(lab.url("argocd").as_str()), Some("admin")));
    assert_eq!(a["password"].as_str(), argocd.get("plainPassword").map(String::as_str));
    assert_eq!(a["source"], "Vault secret/argocd/admin (username, plainPassword)");
    let g = login(&creds, "grafana");
    assert_eq!((g["username"].as_str(), g["password"].as_str()), (Some("admin"), Some("grafana-admin-pw")));
    assert_eq!(g["source"], "Vault secret/grafana/admin (admin-password)");
    assert_eq!(login(&creds, "sonarqube")["password"].as_str(), sonarqube.get("password").map(String::as_str));
    let v = login(&creds, "vault");
    assert_eq!(
        (v["url"].as_str(), v["username"].as_null(), v["password"].as_str()),
        (Some(lab.url("vault").as_str()), Some(()), Some(keys.root_token.as_str()))
    );
    assert!(v["source"].as_str().unwrap().starts_with("the lab's state store"), "{v}");
    let b = login(&creds, "backstage");
    assert_eq!((b["username"].as_str(), b["password"].as_str()), (Some("admin@example.com"), Some("password")));
    let text = lab.run(&["creds"]);
    assert!(text.status.success(), "{}", stderr(&text));
    let text = stdout(&text);
    assert!(text.contains("Logins of lab \"crd\": 5 of 5 readable"), "{text}");
    assert!(text.contains("  password     grafana-admin-pw\n  read from    Vault secret/grafana/admin (admin-password)"), "{text}");
    assert!(text.contains(&format!("  token        {}", keys.root_token)), "{text}");

    // Without the state store's record, the root token comes from the cluster's Secret.
    lab.store().delete::<idp_core::secrets::VaultKeys>(idp_state::VAULT_KEYS_RECORD).unwrap();
    let (_, creds) = lab.json(&["creds"]);
    assert_eq!(login(&creds, "vault")["source"], "Secret vault-system/vault-init-keys (root-token): the root token");
    assert_eq!(login(&creds, "vault")["password"].as_str(), Some(keys.root_token.as_str()));
    lab.store().put(idp_state::VAULT_KEYS_RECORD, &keys).unwrap();

    // Vault sealed: what only Vault holds says so and how to fix it; Grafana's and
    // SonarQube's come from the Secrets External Secrets wrote (SonarQube's URL-encoded).
    apply(
        &cp,
        &scratch,
        r#"
apiVersion: v1
kind: Secret
metadata: {name: grafana-admin-credentials, namespace: observability}
stringData: {admin-user: admin, admin-password: from-the-secret}
---
apiVersion: v1
kind: Secret
metadata: {name: sonarqube-admin-credentials, namespace: cicd}
stringData: {password: "a%2Bb%2Fc%3D", currentPassword: admin}
"#,
    );
    let sealed = std::process::Command::new(testbed.bin("bao"))
        .args(["operator", "seal", &format!("-address=http://{ip}:{bao_port}")])
        .env("BAO_TOKEN", &keys.root_token)
        .env("VAULT_TOKEN", &keys.root_token)
        .output()
        .unwrap();
    assert!(sealed.status.success(), "bao operator seal: {}", stderr(&sealed));
    let (code, creds) = lab.json(&["creds"]);
    assert_eq!(code, Some(0), "some logins are still readable: {creds}");
    for service in ["argocd", "vault"] {
        let entry = login(&creds, service);
        let error = entry["error"].as_str().unwrap_or_else(|| panic!("{service} should fail: {entry}"));
        assert!(error.contains("Vault is sealed; `idp-lab up --name crd` unseals it"), "{error}");
        assert_eq!(entry.as_object().unwrap().len(), 2, "an error entry is service and error only: {entry}");
    }
    let g = login(&creds, "grafana");
    assert_eq!(
        (g["password"].as_str(), g["source"].as_str()),
        (
            Some("from-the-secret"),
            Some("Secret observability/grafana-admin-credentials (admin-password), written by External Secrets from Vault")
        )
    );
    assert_eq!(login(&creds, "sonarqube")["password"], "a+b/c=", "URL-decoded as the chart's Job encoded it");
    assert_eq!(login(&creds, "backstage")["password"], "password");
    let text = stdout(&lab.run(&["creds"]));
    assert!(text.contains("Vault          cannot be read\n  why          Vault is sealed"), "{text}");

    // Nothing readable (an API server that does not answer, and no Dex): exit 12, each
    // entry with its reason.
    let dead =
        idp_test::kubeconfig::with_server_yaml(cp.kubeconfig(), &format!("https://127.0.0.1:{}", free_port(IpAddr::from([127, 0, 0, 1]))))
            .unwrap();
    let mut gone = Lab::new("gone", &dead);
    gone.vars.push(("IDP_LAB_STACKS_BACKSTAGE".into(), "false".into()));
    let (code, creds) = gone.json(&["creds"]);
    assert_eq!(code, Some(12), "{creds}");
    shape_is_documented(&creds);
    let a = login(&creds, "argocd")["error"].as_str().unwrap().to_owned();
    assert!(a.contains("the lab's API server does not answer") && a.contains("`idp-lab start --name gone`"), "{a}");
    assert!(login(&creds, "backstage")["error"].as_str().unwrap().contains("stacks.backstage = false"), "{creds}");
    let out = gone.run(&["creds"]);
    assert_eq!(out.status.code(), Some(12));
    assert!(stderr(&out).contains("no login of lab \"gone\" could be read"), "{}", stderr(&out));

    // No such lab: named, with how to make it.
    let none = lab.env.command(env!("CARGO_BIN_EXE_idp-lab")).args(["creds", "--name", "nolab"]).output().unwrap();
    assert_eq!(none.status.code(), Some(11), "{}", stderr(&none));
    assert!(stderr(&none).contains("idp-lab up --name nolab"), "{}", stderr(&none));
    drop(bao);
}

// --- verify ------------------------------------------------------------------------------

/// The stand-in Grafana on `ip`: `POST /login` with `{"user":"admin","password":password}`
/// sets a session cookie, `GET /api/datasources` with it lists two datasources; anything
/// else is 401, as Grafana answers.
async fn stand_in_grafana(ip: IpAddr, password: &'static str) -> u16 {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let (head, body) = loop {
                    let Ok(n) = conn.read(&mut chunk).await else { return };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                        let length = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        while buf.len() < end + 4 + length {
                            let Ok(n) = conn.read(&mut chunk).await else { return };
                            if n == 0 {
                                break;
                            }
                            buf.extend_from_slice(&chunk[..n]);
                        }
                        break (head, buf[end + 4..].to_vec());
                    }
                };
                let request_line = head.lines().next().unwrap_or_default().to_owned();
                let cookie = head.lines().any(|l| l.to_ascii_lowercase().starts_with("cookie:") && l.contains("grafana_session=s3ss10n"));
                let (status, extra, body) = if request_line.starts_with("POST /login ") {
                    let sent: Value = serde_json::from_slice(&body).unwrap_or_default();
                    if sent["user"] == "admin" && sent["password"] == password {
                        ("200 OK", "Set-Cookie: grafana_session=s3ss10n; Path=/; HttpOnly\r\n", json!({"message": "Logged in"}))
                    } else {
                        ("401 Unauthorized", "", json!({"message": "Invalid username or password"}))
                    }
                } else if request_line.starts_with("GET /api/datasources ") && cookie {
                    ("200 OK", "", json!([{"name": "Prometheus", "type": "prometheus"}, {"name": "Loki", "type": "loki"}]))
                } else {
                    ("401 Unauthorized", "", json!({"message": "Unauthorized"}))
                };
                let body = body.to_string();
                let answer = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(answer.as_bytes()).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    port
}

/// The stand-in Gateway: TLS on loopback with a `*.<suffix>` leaf of the lab CA (as
/// cert-manager's wildcard is), answering every request `200 OK`.
fn stand_in_gateway(ca: &idp_edge::LabCa) -> SocketAddr {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let leaf = ca.issue(&[format!("*.{SUFFIX}")]).unwrap();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(leaf.cert_pem.as_bytes()).map(Result::unwrap).collect();
    let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(tcp) = conn else { continue };
            let config = Arc::clone(&config);
            std::thread::spawn(move || {
                let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
                let Ok(server) = rustls::ServerConnection::new(config) else { return };
                let mut tls = rustls::StreamOwned::new(server, tcp);
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tls.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n\r\ngateway\n");
                tls.conn.send_close_notify();
                let _ = tls.flush();
            });
        }
    });
    addr
}

const OBJECTS: &str = r#"
apiVersion: v1
kind: Node
metadata: {name: vfy-server-0}
---
apiVersion: v1
kind: Node
metadata: {name: vfy-agent-0}
---
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: platform, namespace: argocd}
spec:
  project: default
  destination: {server: "https://kubernetes.default.svc", namespace: apps}
  source: {repoURL: "http://git.idp-lab.svc/platform.git", path: apps, targetRevision: HEAD}
status:
  sync: {status: Synced}
  health: {status: Healthy}
---
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: broken, namespace: argocd}
spec:
  project: default
  destination: {server: "https://kubernetes.default.svc", namespace: apps}
  source: {repoURL: "http://git.idp-lab.svc/platform.git", path: broken, targetRevision: HEAD}
status:
  sync: {status: Synced}
  health: {status: Degraded, message: "Deployment apps/web: ProgressDeadlineExceeded"}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: idp-gateway, namespace: kube-system}
spec:
  gatewayClassName: cilium
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {name: grafana-admin-credentials, namespace: observability}
spec:
  secretStoreRef: {name: observability, kind: SecretStore}
  target: {name: grafana-admin-credentials}
  data: [{secretKey: password, remoteRef: {key: grafana/admin, property: admin-password}}]
---
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {name: sonarqube-admin-credentials, namespace: cicd}
spec:
  secretStoreRef: {name: cicd, kind: SecretStore}
  target: {name: sonarqube-admin-credentials}
  data: [{secretKey: password, remoteRef: {key: sonarqube/admin, property: password}}]
---
apiVersion: v1
kind: Secret
metadata: {name: grafana-admin-credentials, namespace: observability}
stringData: {admin-user: admin, admin-password: grafana-pw}
---
apiVersion: v1
kind: Service
metadata: {name: argocd, namespace: apps}
spec: {ports: [{port: 80, protocol: TCP}]}
---
apiVersion: v1
kind: Endpoints
metadata: {name: argocd, namespace: apps}
subsets: [{addresses: [{ip: 10.42.0.9}], ports: [{port: 8080, protocol: TCP}]}]
---
apiVersion: v1
kind: Service
metadata: {name: grafana-web, namespace: apps}
spec: {ports: [{port: 80, protocol: TCP}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: argocd, namespace: apps}
spec:
  hostnames: [argocd.127-0-0-1.nip.io]
  rules: [{backendRefs: [{name: argocd, port: 80}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: grafana, namespace: apps}
spec:
  hostnames: [grafana.127-0-0-1.nip.io]
  rules: [{backendRefs: [{name: grafana-web, port: 80}]}]
"#;

/// `(check, subject, pass)` of each check, in order.
fn outcomes(report: &Value) -> Vec<(String, String, bool)> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["check"].as_str().unwrap().to_owned(), c["subject"].as_str().unwrap().to_owned(), c["pass"].as_bool().unwrap()))
        .collect()
}

fn reason<'a>(report: &'a Value, subject: &str) -> &'a str {
    let found = report["checks"].as_array().unwrap().iter().find(|c| c["subject"] == subject);
    found.and_then(|c| c["reason"].as_str()).unwrap_or_else(|| panic!("no check of {subject} in {report}"))
}

/// `verify` reports exactly the checks the cluster's objects pass and fail, with their
/// reasons, through the real readiness rules, the service proxy and the HTTPS entry;
/// exit 13 when one fails, 11 without a lab.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn verify_reports_each_smoke_check_with_its_reason() {
    let testbed = require!(Need::KubeBinaries, Need::SharedFixtures, Need::PythonYaml);
    let script = testbed.script("downlevel-crds.py");
    let fixtures = testbed.crd_fixtures_dir();
    let dirs = ["argo-cd", "external-secrets", "gateway-api"].map(|d| fixtures.join(d));
    let (cp, argo, eso, gateway) = tokio::join!(
        ControlPlane::start_without_controller_manager(),
        idp_test::crds::downlevel_crds(&script, &dirs[0]),
        idp_test::crds::downlevel_crds(&script, &dirs[1]),
        idp_test::crds::downlevel_crds(&script, &dirs[2]),
    );
    let cp = cp.expect("control plane");
    let crds: Vec<Value> = [argo, eso, gateway].into_iter().flat_map(|c| c.expect("CRDs")).collect();
    idp_test::crds::apply_crds(&cp.client(), &crds).await.expect("CRDs installed");

    let mut lab = Lab::new("vfy", cp.kubeconfig());
    let scratch = lab.env.root().to_path_buf();
    let (http, dns) = (free_port(IpAddr::from([127, 0, 0, 1])), free_port(IpAddr::from([127, 0, 0, 1])));
    lab.vars.extend([
        ("IDP_LAB_NETWORK_HTTP_PORT".to_owned(), http.to_string()),
        ("IDP_LAB_NETWORK_DNS_PORT".to_owned(), dns.to_string()),
        ("IDP_LAB_WATCHDOG_ENABLED".to_owned(), "false".to_owned()),
    ]);

    namespaces(&cp, &scratch, &["argocd", "observability", "cicd", "apps"]);
    apply(&cp, &scratch, OBJECTS);
    let ready = condition("Ready", "True", "KubeletReady", "kubelet is posting ready status");
    write_status(&cp, &scratch, "/api/v1/nodes/vfy-server-0", json!({"conditions": [ready]}));
    let not_ready = condition("Ready", "False", "KubeletNotReady", "container runtime network not ready: cni plugin not initialized");
    write_status(&cp, &scratch, "/api/v1/nodes/vfy-agent-0", json!({"conditions": [not_ready]}));
    write_status(
        &cp,
        &scratch,
        "/apis/gateway.networking.k8s.io/v1/namespaces/kube-system/gateways/idp-gateway",
        json!({
            "conditions": [condition("Accepted", "True", "Accepted", "accepted by cilium"), condition("Programmed", "True", "Programmed", "programmed")],
            "listeners": [{"name": "http", "attachedRoutes": 2, "supportedKinds": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute"}],
                           "conditions": [condition("Programmed", "True", "Programmed", "programmed")]}],
        }),
    );
    write_status(
        &cp,
        &scratch,
        "/apis/external-secrets.io/v1/namespaces/observability/externalsecrets/grafana-admin-credentials",
        json!({"conditions": [condition("Ready", "True", "SecretSynced", "secret synced")]}),
    );
    write_status(
        &cp,
        &scratch,
        "/apis/external-secrets.io/v1/namespaces/cicd/externalsecrets/sonarqube-admin-credentials",
        json!({"conditions": [condition("Ready", "False", "SecretSyncedError", "could not get secret data from provider")]}),
    );
    // Grafana (the catalogue's Service observability/prometheus-grafana:80), standing in.
    let ip = host_address();
    let grafana = stand_in_grafana(ip, "grafana-pw").await;
    service_to(&cp, &scratch, "observability", "prometheus-grafana", 80, "grafana-0", SocketAddr::new(ip, grafana));

    // The lab daemon's HTTPS entry, in front of the stand-in Gateway.
    let ca = idp_edge::LabCa::load_or_create("vfy", &lab.dir().join("ca"), &[SUFFIX.to_owned()], false).unwrap();
    let gateway = stand_in_gateway(&ca);
    let mut daemon: Child =
        lab.command(&["serve", "--gateway", &gateway.to_string()]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    // Once the entry knows the routes, the unready one is its 503 (before, it passes
    // everything through and the stand-in Gateway answers 200).
    let grafana_url = lab.url("grafana");
    let lab_ref = &lab;
    let (code, report) = poll_until("the HTTPS entry to know the routes", Duration::from_secs(60), || {
        let grafana_url = grafana_url.clone();
        async move {
            let (code, report) = tokio::task::spawn_blocking({
                let command = lab_ref.command(&["verify", "-o", "json"]);
                move || {
                    let mut command = command;
                    let out = command.output().unwrap();
                    (out.status.code(), serde_json::from_slice::<Value>(&out.stdout).unwrap_or_default())
                }
            })
            .await
            .unwrap();
            let seen = report["checks"].as_array().into_iter().flatten().find(|c| c["subject"] == grafana_url.as_str()).cloned();
            Ok(match seen {
                Some(c) if c["reason"].as_str().is_some_and(|r| r.contains("503")) => Attempt::Done((code, report)),
                other => Attempt::Retry(format!("{other:?}")),
            })
        }
    })
    .await
    .unwrap_or_else(|e| {
        let _ = daemon.kill();
        let mut log = String::new();
        let _ = daemon.stderr.take().map(|mut s| s.read_to_string(&mut log));
        panic!("{e:#}\n{log}")
    });

    let server = cp.server().trim_end_matches('/').to_owned();
    let expected: Vec<(String, String, bool)> = [
        ("api", format!("API server {server}"), true),
        ("node", "Node vfy-agent-0".to_owned(), false),
        ("node", "Node vfy-server-0".to_owned(), true),
        ("application", "Application argocd/broken".to_owned(), false),
        ("application", "Application argocd/platform".to_owned(), true),
        ("gateway", "Gateway kube-system/idp-gateway".to_owned(), true),
        ("external-secret", "ExternalSecret cicd/sonarqube-admin-credentials".to_owned(), false),
        ("external-secret", "ExternalSecret observability/grafana-admin-credentials".to_owned(), true),
        ("grafana-datasources", "Grafana (Service observability/prometheus-grafana:80)".to_owned(), true),
        ("url", lab.url("argocd"), true),
        ("url", lab.url("grafana"), false),
    ]
    .into_iter()
    .map(|(c, s, p)| (c.to_owned(), s, p))
    .collect();
    assert_eq!(outcomes(&report), expected, "{report:#}");
    assert_eq!(code, Some(13));
    shape_is_documented(&report);
    assert_eq!((report["lab"].as_str(), report["passed"].as_u64(), report["failed"].as_u64()), (Some("vfy"), Some(7), Some(4)));
    for c in report["checks"].as_array().unwrap() {
        let mut keys: Vec<&str> = c.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["check", "pass", "reason", "subject"], "{c}");
    }
    assert_eq!(
        reason(&report, "Node vfy-agent-0"),
        "not ready yet: KubeletNotReady: container runtime network not ready: cni plugin not initialized"
    );
    assert_eq!(reason(&report, "Application argocd/broken"), "health Degraded: Deployment apps/web: ProgressDeadlineExceeded");
    assert_eq!(reason(&report, "Application argocd/platform"), "Synced, Healthy");
    assert_eq!(
        reason(&report, "ExternalSecret cicd/sonarqube-admin-credentials"),
        "SecretSyncedError: could not get secret data from provider"
    );
    assert_eq!(
        reason(&report, "Grafana (Service observability/prometheus-grafana:80)"),
        "2 datasources: Loki (loki), Prometheus (prometheus)"
    );
    assert_eq!(reason(&report, &lab.url("argocd")), "200 OK over TLS (the lab CA's certificate)");
    let unready = reason(&report, &lab.url("grafana"));
    assert!(unready.starts_with("answered 503"), "{unready}");
    assert!(unready.ends_with("route apps/grafana is not ready: Service apps/grafana-web has no endpoints"), "{unready}");

    // Text: one row per check, then the count; progress on stderr; exit 13 named.
    let out = lab.run(&["verify"]);
    assert_eq!(out.status.code(), Some(13));
    let text = stdout(&out);
    assert!(text.lines().next().unwrap().split_whitespace().eq(["CHECK", "SUBJECT", "REASON"]), "{text}");
    let row = text.lines().find(|l| l.contains("Node vfy-agent-0")).unwrap_or_default();
    assert!(row.split_whitespace().take(4).eq(["FAIL", "node", "Node", "vfy-agent-0"]), "{text}");
    assert!(text.ends_with("Lab \"vfy\": 7 passed, 4 failed\n"), "{text}");
    let err = stderr(&out);
    assert!(err.contains("✓ API server: 1 passed") && err.contains("✗ nodes: 1 of 2 failed"), "{err}");
    assert!(err.contains("error: 4 of 11 checks failed: Node vfy-agent-0, Application argocd/broken"), "{err}");

    // Grafana gone from behind its Service: the API server's refusal, named.
    // (Endpoints without addresses: what the endpoints controller leaves when no pod is ready.)
    kubectl(&cp, &["-n", "observability", "patch", "endpoints", "prometheus-grafana", "--type=merge", "-p", r#"{"subsets":null}"#]);
    let (_, report) = lab.json(&["verify"]);
    let gone = reason(&report, "Grafana (Service observability/prometheus-grafana:80)");
    assert!(gone.starts_with("Grafana is not reachable through the API server") && gone.contains("no endpoints available"), "{gone}");

    // The daemon stopped: the URLs fail, saying what to start.
    let _ = daemon.kill();
    let _ = daemon.wait();
    let (_, report) = lab.json(&["verify"]);
    let down = reason(&report, &lab.url("argocd"));
    assert!(down.contains("cannot connect to the lab's HTTPS entry") && down.contains("`idp-lab up --name vfy` starts it"), "{down}");

    // No such lab.
    let none = lab.env.command(env!("CARGO_BIN_EXE_idp-lab")).args(["verify", "--name", "nolab"]).output().unwrap();
    assert_eq!(none.status.code(), Some(11), "{}", stderr(&none));
}
