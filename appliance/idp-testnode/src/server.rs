//! `k3s server`: etcd, kube-apiserver and kube-controller-manager as child
//! processes, auto-deploy manifests, the server's own node, and the admin
//! kubeconfig, in the order k3s v1.33 makes them observable: the agent side
//! (`containerd is now running`) first, then the control plane, then the
//! tokens and the kubeconfig (`Wrote kubeconfig ...`) *before* the API
//! server is known to be ready, then `Kube API server is now running`, and
//! `k3s is up and running` only once it serves and the node is registered.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};

use crate::api;
use crate::cli::{Settings, merge_component_args};
use crate::cni::{self, Network};
use crate::files::{self, K3S_YAML, MANIFESTS_DIR, server_path, write_atomic};
use crate::host;
use crate::manifests::Manifests;
use crate::node::NodeIdentity;
use crate::pki::{self, Pki, Sans};
use crate::supervisor::Supervisor;

/// etcd's client port on loopback.
const ETCD_CLIENT: &str = "http://127.0.0.1:2379";

/// Controllers that need a kubelet, a cloud or node IPAM, none of which exist.
const CONTROLLERS: &str = "*,-nodeipam,-nodelifecycle,-ttl,-attachdetach,-persistentvolume-binder,-cloud-node-lifecycle";

/// How long the apiserver may take to answer `/readyz`.
const READY_TIMEOUT: Duration = Duration::from_secs(300);

/// Runs the server until an error; children are stopped by the caller.
pub async fn run(settings: &Settings, sup: Arc<Supervisor>) -> Result<Infallible> {
    if settings.server_url.is_some() {
        bail!(
            "joining an existing cluster as another server (--server/K3S_URL with `k3s server`) is not supported by the idp-testnode stand-in; run one server and join agents"
        );
    }
    let hostname = host::hostname();
    let addrs = host::addresses();
    let port = settings.https_port;
    for dir in [MANIFESTS_DIR, "/var/lib/rancher/k3s/agent/images", "/etc/rancher/k3s"] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {dir}"))?;
    }

    let secret = resolve_token_secret(settings)?;
    let advertise: Option<String> = settings
        .advertise_address
        .clone()
        .or_else(|| settings.node_ips.first().map(IpAddr::to_string))
        .or_else(|| addrs.iter().find(|ip| ip.is_ipv4()).map(IpAddr::to_string));

    let mut sans = Sans::default();
    for s in &settings.tls_sans {
        sans.add(s);
    }
    let domain = &settings.cluster_domain;
    for s in [
        "127.0.0.1",
        "::1",
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        &format!("kubernetes.default.svc.{domain}"),
        &hostname,
        &settings.node_name,
    ] {
        sans.add(s);
    }
    if let Some(ip) = first_service_ip(&settings.service_cidr) {
        sans.add(&ip.to_string());
    }
    for ip in addrs.iter().chain(&settings.node_ips).chain(&settings.node_external_ips) {
        sans.add(&ip.to_string());
    }
    if let Some(a) = &advertise {
        sans.add(a);
    }
    let pki = Pki::ensure(&server_path("tls"), &sans)?;

    // Tokens: the node token file as k3s writes it, and the apiserver's
    // static token file (admin + the cluster token, both system:masters).
    let full = pki::full_token(&pki.ca_pem, &secret);
    for name in ["token", "node-token", "agent-token"] {
        write_atomic(&server_path(name), format!("{full}\n").as_bytes(), 0o600)?;
    }
    let admin_token_path = server_path("cred/admin.token");
    let admin_token = match std::fs::read_to_string(&admin_token_path) {
        Ok(t) if !t.trim().is_empty() => t.trim().to_string(),
        _ => {
            let t = pki::random_hex(16)?;
            write_atomic(&admin_token_path, t.as_bytes(), 0o600)?;
            t
        }
    };
    let node_user = pki::node_user(&secret);
    let mut csv = vec![csv_line(&admin_token, "admin", "admin")];
    csv.push(csv_line(&secret, &node_user, &node_user));
    csv.push(csv_line(&full, &node_user, &node_user));
    let tokens_csv = server_path("cred/tokens.csv");
    write_atomic(&tokens_csv, (csv.join("\n") + "\n").as_bytes(), 0o600)?;

    let url = format!("https://127.0.0.1:{port}");
    let admin_kubeconfig = server_path("cred/admin.kubeconfig");
    write_atomic(&admin_kubeconfig, internal_kubeconfig(&url, &pki.ca_cert, &admin_token).as_bytes(), 0o600)?;

    let bin = files::bin_dir();

    // The server's agent side comes up first, as in k3s (agent.Run before
    // StartServer); there is no containerd behind the line.
    let network = Network::for_backend(&settings.flannel_backend);
    if !settings.disable_agent {
        prepare_cni_dir(&network)?;
        info!("containerd is now running (idp-testnode stand-in: no container runtime is started)");
    }

    // etcd
    let etcd_args = merge_component_args(
        &[
            ("data-dir", server_path("db/etcd").display().to_string()),
            ("listen-client-urls", ETCD_CLIENT.into()),
            ("advertise-client-urls", ETCD_CLIENT.into()),
            ("listen-peer-urls", "http://127.0.0.1:2380".into()),
            ("quota-backend-bytes", "2147483648".into()),
        ],
        &settings.etcd_args,
    );
    sup.spawn("etcd", &bin.join("etcd"), &etcd_args)?;

    // kube-apiserver
    let issuer = format!("https://kubernetes.default.svc.{domain}");
    let mut defaults: Vec<(&str, String)> = vec![
        ("allow-privileged", "true".into()),
        ("anonymous-auth", "false".into()),
        ("api-audiences", format!("{issuer},k3s")),
        ("authorization-mode", "Node,RBAC".into()),
        ("bind-address", settings.bind_address.clone()),
        ("cert-dir", server_path("tls/temporary-certs").display().to_string()),
        ("client-ca-file", pki.ca_cert.display().to_string()),
        // Without a node lifecycle controller nothing would remove the
        // not-ready taint this plugin puts on new nodes; the stand-in adds
        // and removes that taint itself (see node.rs).
        ("disable-admission-plugins", "TaintNodesByCondition".into()),
        ("enable-admission-plugins", "NodeRestriction".into()),
        ("etcd-servers", ETCD_CLIENT.into()),
        ("insecure-port", "0".into()),
        ("profiling", "false".into()),
        ("secure-port", port.to_string()),
        ("service-account-issuer", issuer.clone()),
        ("service-account-key-file", pki.sa_pub.display().to_string()),
        ("service-account-signing-key-file", pki.sa_key.display().to_string()),
        ("service-cluster-ip-range", settings.service_cidr.clone()),
        ("storage-backend", "etcd3".into()),
        ("tls-cert-file", pki.serving_cert.display().to_string()),
        ("tls-private-key-file", pki.serving_key.display().to_string()),
        ("token-auth-file", tokens_csv.display().to_string()),
    ];
    if let Some(a) = &advertise {
        defaults.insert(0, ("advertise-address", a.clone()));
    }
    let apiserver_args = merge_component_args(&defaults, &settings.apiserver_args);
    info!("Running kube-apiserver {}", apiserver_args.join(" "));
    sup.spawn("kube-apiserver", &bin.join("kube-apiserver"), &apiserver_args)?;

    // Tokens and the admin kubeconfig now, while the API server may still
    // refuse connections: k3s writes them without waiting for readiness.
    let join_ip = advertise.clone().unwrap_or_else(|| "127.0.0.1".to_string());
    print_tokens(&join_ip, port);
    write_kubeconfig(settings, &pki)?;

    let client = api::client(&url, Some(pki.ca_der()?), &admin_token)?;
    api::wait_ready(&client, READY_TIMEOUT).await?;
    info!("ETCD server is now running");
    info!("Kube API server is now running");

    // kube-controller-manager
    let kcm_args = merge_component_args(
        &[
            ("bind-address", "127.0.0.1".into()),
            ("cluster-signing-cert-file", pki.ca_cert.display().to_string()),
            ("cluster-signing-key-file", pki.ca_key.display().to_string()),
            ("configure-cloud-routes", "false".into()),
            ("controllers", CONTROLLERS.into()),
            ("kubeconfig", admin_kubeconfig.display().to_string()),
            ("leader-elect", "false".into()),
            ("port", "0".into()),
            ("root-ca-file", pki.ca_cert.display().to_string()),
            ("secure-port", "0".into()),
            ("service-account-private-key-file", pki.sa_key.display().to_string()),
            ("use-service-account-credentials", "false".into()),
        ],
        &settings.controller_manager_args,
    );
    info!("Running kube-controller-manager {}", kcm_args.join(" "));
    sup.spawn("kube-controller-manager", &bin.join("kube-controller-manager"), &kcm_args)?;

    // What agents retrieve from a k3s server's supervisor.
    publish_agent_config(&client, settings).await?;

    // Auto-deploy manifests: first pass now, then watched.
    let mut manifests = Manifests::new(Path::new(MANIFESTS_DIR), &bin.join("kubectl"), &admin_kubeconfig);
    let failed = manifests.sync().await;
    if failed > 0 {
        warn!("{failed} manifest(s) failed to apply; retrying in the background");
    }

    // The server's own node (unless --disable-agent).
    let identity = if settings.disable_agent {
        info!("Agent disabled (--disable-agent): no node is registered for this server");
        None
    } else {
        let mut id = NodeIdentity::new(settings, &hostname, &addrs, true, network);
        register_with_retry(&mut id, &client).await?;
        info!("Successfully registered node {}", id.name);
        if !id.is_ready() {
            info!("Node {} is NotReady until a CNI config appears in {} (--flannel-backend=none)", id.name, cni::CONF_DIR);
        }
        Some(id)
    };

    info!("k3s is up and running");

    let heartbeat = async {
        match identity {
            Some(id) => id.heartbeat(client.clone()).await,
            None => std::future::pending().await,
        }
    };
    let never = tokio::select! {
        n = manifests.watch() => n,
        n = heartbeat => n,
    };
    match never {}
}

/// Creates k3s' CNI config directory. With flannel, writes the flannel
/// CNI config k3s' agent writes there (unless one is already there); with
/// `--flannel-backend=none` leaves the directory for a CNI to fill.
pub fn prepare_cni_dir(network: &Network) -> Result<()> {
    std::fs::create_dir_all(cni::CONF_DIR).with_context(|| format!("creating {}", cni::CONF_DIR))?;
    if *network == Network::Flannel {
        let path = Path::new(cni::CONF_DIR).join("10-flannel.conflist");
        if !path.exists() {
            write_atomic(&path, FLANNEL_CONFLIST.as_bytes(), 0o644)?;
        }
    }
    Ok(())
}

/// The flannel CNI config (what the stand-in pretends flannel uses).
const FLANNEL_CONFLIST: &str = r#"{
  "name": "cbr0",
  "cniVersion": "1.0.0",
  "plugins": [
    { "type": "flannel", "delegate": { "hairpinMode": true, "forceAddress": true, "isDefaultGateway": true } },
    { "type": "portmap", "capabilities": { "portMappings": true } },
    { "type": "bandwidth", "capabilities": { "bandwidth": true } }
  ]
}
"#;

/// The agent configuration, published until it succeeds (`kube-system` may
/// not exist for a moment after `/readyz`).
async fn publish_agent_config(client: &kube::Client, settings: &Settings) -> Result<()> {
    let data: std::collections::BTreeMap<String, String> = [
        ("flannel-backend", settings.flannel_backend.clone()),
        ("cluster-domain", settings.cluster_domain.clone()),
        ("service-cidr", settings.service_cidr.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let mut attempt = 0;
    loop {
        match api::publish_agent_config(client, data.clone()).await {
            Ok(()) => return Ok(()),
            Err(e) if attempt < 30 => {
                attempt += 1;
                if attempt % 5 == 0 {
                    warn!("Failed to publish the agent configuration (attempt {attempt}): {}", api::chain(&e));
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e).context("publishing the agent configuration"),
        }
    }
}

/// k3s' `printTokens` lines.
fn print_tokens(ip: &str, port: u16) {
    let host = if ip.contains(':') { format!("[{ip}]") } else { ip.to_string() };
    info!("Server node token is available at {}", server_path("token").display());
    info!("To join server node to cluster: k3s server -s https://{host}:{port} -t ${{SERVER_NODE_TOKEN}}");
    info!("Agent node token is available at {}", server_path("agent-token").display());
    info!("To join agent node to cluster: k3s agent -s https://{host}:{port} -t ${{AGENT_NODE_TOKEN}}");
}

/// Writes the admin kubeconfig as k3s' `writeKubeConfig` does: to
/// `--write-kubeconfig`/`K3S_KUBECONFIG_OUTPUT` when given, with
/// `/etc/rancher/k3s/k3s.yaml` then a symlink to it (unless a file is
/// already there), else to `/etc/rancher/k3s/k3s.yaml`; mode 0600 unless
/// `--write-kubeconfig-mode`.
fn write_kubeconfig(settings: &Settings, pki: &Pki) -> Result<()> {
    let yaml = admin_kubeconfig_yaml(&kubeconfig_url(settings), pki);
    let default = Path::new(K3S_YAML);
    if std::fs::symlink_metadata(default).is_ok_and(|m| m.file_type().is_symlink()) {
        std::fs::remove_file(default).with_context(|| format!("removing the kubeconfig symlink {K3S_YAML}"))?;
    }
    let target: PathBuf = settings.kubeconfig_output.clone().unwrap_or_else(|| default.to_path_buf());
    write_atomic(&target, yaml.as_bytes(), settings.kubeconfig_mode)?;
    if target != default && std::fs::symlink_metadata(default).is_err() {
        if let Some(dir) = default.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        if let Err(e) = std::os::unix::fs::symlink(&target, default) {
            error!("Failed to symlink kubeconfig: {e}");
        }
    }
    info!("Wrote kubeconfig {}", target.display());
    if target == default {
        info!("Run: k3s kubectl");
    }
    Ok(())
}

/// `https://127.0.0.1:<port>`, or the `--bind-address` when one is given.
fn kubeconfig_url(settings: &Settings) -> String {
    let port = settings.https_port;
    match settings.bind_address.parse::<IpAddr>() {
        Ok(ip) if !ip.is_unspecified() && ip.is_ipv6() => format!("https://[{ip}]:{port}"),
        Ok(ip) if !ip.is_unspecified() => format!("https://{ip}:{port}"),
        _ => format!("https://127.0.0.1:{port}"),
    }
}

/// Registers the node, retrying briefly: right after `/readyz` some
/// post-start work (RBAC bootstrap) may still race.
async fn register_with_retry(id: &mut NodeIdentity, client: &kube::Client) -> Result<()> {
    let mut attempt = 0;
    loop {
        match id.register(client).await {
            Ok(()) => return Ok(()),
            Err(e) if attempt < 20 => {
                attempt += 1;
                warn!("Failed to register node {} (attempt {attempt}): {e}", id.name);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e).with_context(|| format!("registering node {}", id.name)),
        }
    }
}

/// The cluster token's secret: the given one, else the stored one, else a
/// new random one. A given token that differs from the stored one is
/// rejected like k3s rejects it (its bootstrap data is encrypted with it).
fn resolve_token_secret(settings: &Settings) -> Result<String> {
    let stored =
        std::fs::read_to_string(server_path("token")).ok().map(|t| pki::token_secret(t.trim()).to_string()).filter(|t| !t.is_empty());
    match (&settings.token, stored) {
        (Some(given), Some(stored)) if pki::token_secret(given) != stored => {
            bail!("starting kubernetes: preparing server: bootstrap data already found and encrypted with different token")
        }
        (Some(given), _) => Ok(pki::token_secret(given).to_string()),
        (None, Some(stored)) => Ok(stored),
        (None, None) => pki::random_hex(16),
    }
}

/// One line of the apiserver's `--token-auth-file` (CSV, quoted).
fn csv_line(token: &str, user: &str, uid: &str) -> String {
    let q = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    format!("{},{},{},{}", q(token), q(user), q(uid), q("system:masters"))
}

/// The first address of a service CIDR (the `kubernetes` service IP).
fn first_service_ip(cidr: &str) -> Option<IpAddr> {
    let (net, _) = cidr.split_once('/')?;
    match net.parse::<IpAddr>().ok()? {
        IpAddr::V4(v4) => Some(IpAddr::V4(Ipv4Addr::from(u32::from(v4).checked_add(1)?))),
        IpAddr::V6(v6) => Some(IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6).checked_add(1)?))),
    }
}

/// The kubeconfig the stand-in itself (kubectl apply, controller manager)
/// uses: CA file and the admin bearer token.
fn internal_kubeconfig(url: &str, ca: &Path, token: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority: {}\n    server: {url}\n  name: default\ncontexts:\n- context:\n    cluster: default\n    user: default\n  name: default\ncurrent-context: default\npreferences: {{}}\nusers:\n- name: default\n  user:\n    token: {token}\n",
        ca.display()
    )
}

/// The admin kubeconfig in k3s' shape: everything named `default`, embedded
/// CA and an admin client certificate (`system:admin` in `system:masters`).
fn admin_kubeconfig_yaml(url: &str, pki: &Pki) -> String {
    format!(
        "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {}\n    server: {url}\n  name: default\ncontexts:\n- context:\n    cluster: default\n    user: default\n  name: default\ncurrent-context: default\nkind: Config\npreferences: {{}}\nusers:\n- name: default\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n",
        pki::base64(pki.ca_pem.as_bytes()),
        pki::base64(pki.admin_cert_pem.as_bytes()),
        pki::base64(pki.admin_key_pem.as_bytes()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_ip() {
        assert_eq!(first_service_ip("10.43.0.0/16"), Some("10.43.0.1".parse().expect("ip")));
        assert_eq!(first_service_ip("fd00::/108"), Some("fd00::1".parse().expect("ip")));
        assert_eq!(first_service_ip("garbage"), None);
    }

    #[test]
    fn csv_quotes() {
        assert_eq!(csv_line("a\"b", "u", "u"), r#""a""b","u","u","system:masters""#);
    }
}
