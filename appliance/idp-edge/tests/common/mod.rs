//! What the HTTPS entry's tests share: the lab CA, an nginx standing in for the
//! Gateway, the entry on free ports, and curl/openssl as clients.

#![allow(dead_code, clippy::unwrap_used, missing_docs)]

use idp_core::routes::{Backend, Health, Route};
use idp_edge::{Entry, LabCa, serve_https, serve_redirect};
use idp_kube::RouteSnapshot;
use idp_test::process::Supervised;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The lab suffix of every test.
pub const SUFFIX: &str = "127-0-0-1.nip.io";

/// The drain bound of the entry.
pub fn edge_drain() -> Duration {
    idp_edge::https::DRAIN_TIMEOUT
}

/// A lab CA in `<dir>/ca` for [`SUFFIX`].
pub fn lab_ca(dir: &Path) -> LabCa {
    LabCa::load_or_create("test", &dir.join("ca"), &[SUFFIX.to_owned()], false).unwrap()
}

/// The path of a tool, or a panic naming the package that has it.
pub fn tool(name: &str, package: &str) -> PathBuf {
    let found = Command::new("sh").arg("-c").arg(format!("command -v {name}")).output().unwrap();
    let path = String::from_utf8_lossy(&found.stdout).trim().to_owned();
    assert!(found.status.success() && !path.is_empty(), "`{name}` is not installed; these tests need it: apt-get install -y {package}");
    PathBuf::from(path)
}

/// A route `ns/<name>` for `<host>.<SUFFIX>` to Service `ns/<name>:80`.
pub fn route(name: &str, host: &str, health: Health) -> Route {
    Route {
        namespace: "ns".into(),
        name: name.into(),
        hostnames: vec![format!("{host}.{SUFFIX}")],
        backends: vec![Backend { kind: "Service".into(), namespace: "ns".into(), name: name.into(), port: Some(80) }],
        health,
    }
}

/// A loopback port nothing listens on.
pub async fn dead_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

/// nginx serving TLS with a `*.<SUFFIX>` leaf of the lab CA on a free port: `/`
/// answers `gateway host=$host proto=$server_protocol`, `/ws` proxies websockets to a
/// backend.
pub struct Nginx {
    process: Supervised,
    port: u16,
    dir: PathBuf,
    /// The leaf nginx serves (PEM).
    pub leaf_pem: String,
}

impl Nginx {
    pub fn start(parent: &Path, ca: &LabCa, websocket_backend: SocketAddr) -> anyhow::Result<Nginx> {
        let nginx = tool("nginx", "nginx");
        let dir = tempfile::Builder::new().prefix("nginx").tempdir_in(parent)?.keep();
        std::fs::create_dir_all(dir.join("tmp"))?;
        let leaf = ca.issue(&[format!("*.{SUFFIX}")])?;
        std::fs::write(dir.join("gw.crt"), &leaf.cert_pem)?;
        std::fs::write(dir.join("gw.key"), &leaf.key_pem)?;
        for _ in 0..20 {
            let port = { std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port() };
            let d = dir.display();
            let conf = format!(
                r#"daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 256; }}
http {{
  access_log {d}/access.log;
  client_body_temp_path {d}/tmp; proxy_temp_path {d}/tmp; fastcgi_temp_path {d}/tmp; uwsgi_temp_path {d}/tmp; scgi_temp_path {d}/tmp;
  server {{
    listen 127.0.0.1:{port} ssl http2;
    ssl_certificate {d}/gw.crt;
    ssl_certificate_key {d}/gw.key;
    location / {{ default_type text/plain; return 200 "gateway host=$host proto=$server_protocol\n"; }}
    location /ws {{
      proxy_pass http://{websocket_backend};
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection "upgrade";
    }}
  }}
}}
"#
            );
            std::fs::write(dir.join("nginx.conf"), conf)?;
            let dir_arg = format!("{}/", dir.display());
            let conf_arg = dir.join("nginx.conf");
            let error_arg = dir.join("error.log");
            let process = Supervised::spawn(
                "nginx",
                &nginx,
                [std::ffi::OsStr::new("-p"), dir_arg.as_ref(), "-e".as_ref(), error_arg.as_os_str(), "-c".as_ref(), conf_arg.as_os_str()],
                &dir,
            )?;
            let began = std::time::Instant::now();
            while began.elapsed() < Duration::from_secs(10) {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Ok(Nginx { process, port, dir, leaf_pem: leaf.cert_pem });
                }
                if !process_alive(&process) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            // The port was taken between the probe and nginx's bind: try another.
            drop(process);
        }
        anyhow::bail!("nginx did not start; its log: {}", std::fs::read_to_string(dir.join("error.log")).unwrap_or_default())
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// How many requests nginx has logged.
    pub fn requests(&self) -> usize {
        std::fs::read_to_string(self.dir.join("access.log")).map(|s| s.lines().count()).unwrap_or(0)
    }
}

fn process_alive(process: &Supervised) -> bool {
    std::path::Path::new(&format!("/proc/{}", process.pid())).exists()
}

/// A backend that answers one websocket upgrade with 101 and then echoes.
pub async fn echo_websocket_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 1024];
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    let Ok(n) = socket.read(&mut buf).await else { return };
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                }
                let request = String::from_utf8_lossy(&seen).to_ascii_lowercase();
                if !request.contains("upgrade: websocket") {
                    let _ = socket.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n").await;
                    return;
                }
                let _ = socket
                    .write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
                    .await;
                loop {
                    let Ok(n) = socket.read(&mut buf).await else { return };
                    if n == 0 || socket.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// The entry (HTTPS and HTTP) on free ports of 127.0.0.1.
pub struct Running {
    pub https_port: u16,
    pub http_port: u16,
    pub routes: watch::Sender<RouteSnapshot>,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<Result<(), idp_edge::EdgeError>>>,
}

impl Running {
    pub async fn start(ca: &LabCa, gateway: Vec<SocketAddr>, routes: Vec<Route>, synced: bool) -> Running {
        let (sender, receiver) = watch::channel(RouteSnapshot { routes, synced, error: None });
        Running::with_routes(ca, gateway, sender, receiver).await
    }

    pub async fn with_routes(
        ca: &LabCa,
        gateway: Vec<SocketAddr>,
        sender: watch::Sender<RouteSnapshot>,
        receiver: watch::Receiver<RouteSnapshot>,
    ) -> Running {
        let https = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let https_port = https.local_addr().unwrap().port();
        let http_port = http.local_addr().unwrap().port();
        let leaf = ca.issue(&[SUFFIX.to_owned(), format!("*.{SUFFIX}")]).unwrap();
        let entry = Arc::new(Entry::new(SUFFIX, https_port, gateway, &leaf, receiver).unwrap());
        let shutdown = CancellationToken::new();
        let tasks = vec![
            tokio::spawn(serve_https(https, entry, shutdown.clone())),
            tokio::spawn({
                let shutdown = shutdown.clone();
                async move { serve_redirect(http, SUFFIX, https_port, shutdown).await }
            }),
        ];
        Running { https_port, http_port, routes: sender, shutdown, tasks }
    }

    /// Cancels and waits for both servers, which must end cleanly.
    pub async fn stop(self) {
        self.shutdown.cancel();
        for task in self.tasks {
            task.await.unwrap().unwrap();
        }
    }
}

/// What one curl call gave.
#[derive(Debug)]
pub struct Fetched {
    pub status: i32,
    pub code: u16,
    pub redirect_url: String,
    pub body: String,
    pub stderr: String,
}

/// curl, trusting the lab CA only and resolving the lab's names to 127.0.0.1.
pub struct Curl {
    cacert: PathBuf,
    port: u16,
}

impl Curl {
    pub fn new(ca: &LabCa, port: u16) -> Curl {
        Curl { cacert: ca.cert_path(), port }
    }

    /// `host` is the first label (`""` for the bare suffix).
    fn name(host: &str) -> String {
        if host.is_empty() { SUFFIX.to_owned() } else { format!("{host}.{SUFFIX}") }
    }

    pub async fn get(&self, extra: &[&str], host: &str, path: &str) -> Fetched {
        let name = Curl::name(host);
        let mut args: Vec<String> = vec!["--resolve".into(), format!("{name}:{}:127.0.0.1", self.port)];
        args.extend(extra.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.raw(&refs, &format!("https://{name}:{}{path}", self.port)).await
    }

    pub async fn http(&self, port: u16, host: &str, path: &str) -> Fetched {
        let name = Curl::name(host);
        self.raw(&["--resolve", &format!("{name}:{port}:127.0.0.1")], &format!("http://{name}:{port}{path}")).await
    }

    pub async fn raw(&self, extra: &[&str], url: &str) -> Fetched {
        let mut command = Command::new(tool("curl", "curl"));
        command
            .args(["-sS", "--max-time", "10", "--cacert"])
            .arg(&self.cacert)
            .args(["-w", "\n%{http_code} %{redirect_url}"])
            .args(extra)
            .arg(url)
            .env_remove("SSL_CERT_FILE")
            .env_remove("https_proxy")
            .env_remove("HTTPS_PROXY")
            .env_remove("http_proxy");
        let output = tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let (body, trailer) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
        let (code, redirect_url) = trailer.split_once(' ').unwrap_or((trailer, ""));
        Fetched {
            status: output.status.code().unwrap_or(-1),
            code: code.parse().unwrap_or(0),
            redirect_url: redirect_url.to_owned(),
            body: body.to_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

/// `openssl s_client` offering ALPN h2 to the entry for `name`, its whole output.
pub async fn openssl_s_client(port: u16, name: &str, ca: &LabCa) -> String {
    let mut command = Command::new(tool("openssl", "openssl"));
    command
        .args(["s_client", "-alpn", "h2", "-showcerts", "-servername", name, "-connect", &format!("127.0.0.1:{port}"), "-CAfile"])
        .arg(ca.cert_path())
        .stdin(std::process::Stdio::null());
    let output = tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

/// The base64 body of a PEM certificate, as `openssl s_client -showcerts` prints it.
pub fn pem_body(pem: &str) -> &str {
    let start = pem.find('\n').map_or(0, |i| i + 1);
    let end = pem.find("-----END").unwrap_or(pem.len());
    pem[start..end].trim()
}

/// A TLS client (trusting the lab CA) that upgrades `/ws` to a websocket through the
/// entry, sends `payload` and returns what comes back.
pub async fn websocket_echo(port: u16, name: &str, ca: &LabCa, payload: &[u8]) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca.cert_pem().as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let server_name = rustls::pki_types::ServerName::try_from(name.to_owned()).unwrap();
    let mut tls = connector.connect(server_name, tcp).await.unwrap();
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {name}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "closed before the upgrade answer: {}", String::from_utf8_lossy(&head));
        head.extend_from_slice(&buf[..n]);
    }
    let head_text = String::from_utf8_lossy(&head).into_owned();
    assert!(head_text.starts_with("HTTP/1.1 101"), "{head_text}");
    tls.write_all(payload).await.unwrap();
    let mut echoed = vec![0u8; payload.len()];
    tokio::time::timeout(Duration::from_secs(5), tls.read_exact(&mut echoed)).await.unwrap().unwrap();
    echoed
}
