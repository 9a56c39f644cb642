//! The lab lifecycle against the real Docker Engine and the stand-in k3s node image
//! (`cluster.security = "capabilities"`: this engine refuses privileged containers).
//! Each test runs the binary as a user would, in an isolated home, and checks what
//! Docker, the API server and the nodes' own invocation records show.

use bollard::Docker;
use bollard::query_parameters::{InspectContainerOptions, ListContainersOptionsBuilder};
use idp_test::docker::download_file;
use idp_test::testnode_image;
use idp_test::{DockerScope, IsolatedEnv, Need, require};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::process::Output;

/// A lab of the test: its name, an isolated home and the node image (the stand-in,
/// with `cluster.security = "capabilities"`, unless a test sets otherwise).
struct Lab {
    env: IsolatedEnv,
    name: String,
    image: String,
    extra: Vec<(String, String)>,
}

impl Lab {
    fn new(scope: &DockerScope, image: &str) -> Lab {
        let extra = vec![("IDP_LAB_CLUSTER_SECURITY".to_owned(), "capabilities".to_owned())];
        Lab { env: IsolatedEnv::new().expect("isolated env"), name: scope.lab_name(), image: image.to_owned(), extra }
    }

    /// Another lab in the same home.
    fn sibling(&self, scope: &DockerScope) -> Lab {
        let mut env = IsolatedEnv::new().expect("isolated env");
        for var in ["IDP_LAB_HOME", "HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME"] {
            if let Some(v) = self.env.vars().get(std::ffi::OsStr::new(var)) {
                env.set(var, v);
            }
        }
        Lab { env, name: scope.lab_name(), image: self.image.clone(), extra: self.extra.clone() }
    }

    fn set(mut self, var: &str, value: &str) -> Lab {
        self.extra.push((var.to_owned(), value.to_owned()));
        self
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut cmd = self.env.command(env!("CARGO_BIN_EXE_idp-lab"));
        cmd.current_dir(self.env.root())
            .env("IDP_LAB_LAB_NAME", &self.name)
            .env("IDP_LAB_CLUSTER_IMAGE", &self.image)
            .env("IDP_LAB_CLUSTER_MEMORY", "1g")
            .env("NO_COLOR", "1")
            .envs(self.extra.iter().map(|(k, v)| (k, v)))
            .args(args);
        cmd.output().expect("idp-lab runs")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "idp-lab {args:?} failed ({}):\n{}", out.status, String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).expect("utf-8")
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&args)).expect("JSON on stdout")
    }

    fn node(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.name)
    }

    fn state_dir(&self) -> std::path::PathBuf {
        self.env.idp_lab_home().join("labs").join(&self.name)
    }

    fn kubeconfig(&self) -> std::path::PathBuf {
        self.env.home().join(".kube/config")
    }
}

fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default().contains(") Z ")
}

fn wait_gone(pid: u32) {
    let began = std::time::Instant::now();
    while alive(pid) && began.elapsed() < std::time::Duration::from_secs(10) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(!alive(pid), "process {pid} is still there");
}

/// The lab daemon `up` started: running, shown by `status`, answering HTTPS (the landing
/// page, with the lab CA) and DNS on the lab's ports, refusing a second `serve`, and
/// `urls` answering from the API. Its pid.
fn lab_daemon_serves(lab: &Lab, up: &Value, status: &Value) -> u32 {
    let pid = up["daemon"]["pid"].as_u64().expect("up names the daemon") as u32;
    assert!(alive(pid), "{up}");
    assert_eq!(status["daemon"]["state"], "running", "{status}");
    assert_eq!(status["daemon"]["pid"].as_u64(), Some(u64::from(pid)));
    let https = status["ports"]["https"].as_u64().expect("https port");
    let dns = status["ports"]["dns"].as_u64().expect("dns port");
    let names: Vec<&str> = status["daemon"]["listeners"].as_array().expect("listeners").iter().filter_map(|l| l["name"].as_str()).collect();
    // The nodes' DNS answer runs only when their resolv.conf names the gateway (the host
    // has loopback resolvers only); the network.rs tests cover it either way.
    let host_upstream = std::fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.strip_prefix("nameserver "))
        .any(|ip| ip.trim().parse::<std::net::IpAddr>().is_ok_and(|ip| !ip.is_loopback()));
    let expected: &[&str] = if host_upstream {
        &["https", "http", "dns", "dashboard", "registry", "alerts", "control"]
    } else {
        &["https", "http", "dns", "dashboard", "node-dns", "registry", "alerts", "control"]
    };
    assert_eq!(names, expected, "{status}");
    // The registry and the nodes' DNS answer listen on the lab network's gateway address,
    // which the nodes reach.
    let gateway = status["network"]["subnet"].as_str().expect("subnet").trim_end_matches("0/24").to_owned() + "1";
    let node = format!("{}-server-0", lab.name);
    let v2 = std::process::Command::new("docker")
        .args(["exec", &node, "/bin/busybox", "wget", "-q", "-O", "-", &format!("http://{gateway}:5000/v2/")])
        .output()
        .expect("docker exec");
    assert_eq!(String::from_utf8_lossy(&v2.stdout).trim(), "{}", "the registry from a node: {}", stderr(&v2));
    let registries =
        std::process::Command::new("docker").args(["exec", &node, "cat", "/etc/rancher/k3s/registries.yaml"]).output().expect("cat");
    let registries = String::from_utf8_lossy(&registries.stdout);
    assert!(registries.contains(&format!("\"{gateway}:5000\":")) && registries.contains(&format!("http://{gateway}:5000")), "{registries}");
    if !host_upstream {
        let node_dig = std::process::Command::new("dig")
            .args([&format!("@{gateway}"), "+short", "+time=5", "argocd.127-0-0-1.nip.io"])
            .output()
            .expect("dig");
        assert_eq!(String::from_utf8_lossy(&node_dig.stdout).trim(), "127.0.0.1", "the nodes' DNS answer");
    }
    let ca = lab.state_dir().join("ca/ca.crt");
    let curl = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(&ca)
        .args(["--resolve", &format!("127-0-0-1.nip.io:{https}:127.0.0.1"), &format!("https://127-0-0-1.nip.io:{https}/")])
        .output()
        .expect("curl");
    let page = String::from_utf8_lossy(&curl.stdout);
    assert!(curl.status.success() && page.contains("idp-lab"), "the landing page: {page} {}", stderr(&curl));
    let dig = std::process::Command::new("dig")
        .args(["@127.0.0.1", "-p", &dns.to_string(), "+short", "+time=5", "argocd.127-0-0-1.nip.io"])
        .output()
        .expect("dig");
    assert_eq!(String::from_utf8_lossy(&dig.stdout).trim(), "127.0.0.1");
    let second = lab.run(&["serve"]);
    assert_eq!(second.status.code(), Some(10), "a second serve: {}", stderr(&second));
    assert!(stderr(&second).contains(&format!("already running (pid {pid}")), "{}", stderr(&second));
    let urls = lab.ok(&["urls"]);
    assert!(urls.contains("No routes"), "{urls}");
    pid
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every container, volume and network Docker holds (ids and names).
async fn docker_objects(docker: &Docker) -> BTreeSet<String> {
    let mut all = BTreeSet::new();
    let containers =
        docker.list_containers(Some(ListContainersOptionsBuilder::default().all(true).build())).await.expect("list containers");
    all.extend(containers.into_iter().filter_map(|c| c.id).map(|id| format!("container {id}")));
    let volumes = docker.list_volumes(None::<bollard::query_parameters::ListVolumesOptions>).await.expect("list volumes");
    all.extend(volumes.volumes.unwrap_or_default().into_iter().map(|v| format!("volume {}", v.name)));
    let networks = docker.list_networks(None::<bollard::query_parameters::ListNetworksOptions>).await.expect("list networks");
    all.extend(networks.into_iter().filter_map(|n| n.id).map(|id| format!("network {id}")));
    all
}

/// Container id, address and start time of each node: what a no-op `up` must keep.
async fn fingerprint(docker: &Docker, nodes: &[String]) -> BTreeMap<String, (String, String, String, String)> {
    let mut out = BTreeMap::new();
    for node in nodes {
        let c = docker.inspect_container(node, None::<InspectContainerOptions>).await.expect("inspect node");
        let ip = c
            .network_settings
            .as_ref()
            .and_then(|s| s.networks.as_ref())
            .and_then(|n| n.values().next())
            .and_then(|e| e.ip_address.clone());
        let ports: BTreeMap<String, _> = c.network_settings.and_then(|s| s.ports).unwrap_or_default().into_iter().collect();
        let ports = serde_json::to_string(&ports).unwrap_or_default();
        out.insert(
            node.clone(),
            (c.id.unwrap_or_default(), ip.unwrap_or_default(), c.state.and_then(|s| s.started_at).unwrap_or_default(), ports),
        );
    }
    out
}

async fn kubectl_get_nodes(lab: &Lab) -> Output {
    let kubectl = idp_test::testbed().bin("kubectl");
    let mut cmd = lab.env.command(kubectl);
    cmd.args([
        "--kubeconfig",
        &lab.kubeconfig().display().to_string(),
        "--context",
        &format!("idp-lab-{}", lab.name),
        "get",
        "nodes",
        "-o",
        "json",
    ]);
    tokio::task::spawn_blocking(move || cmd.output().expect("kubectl runs")).await.expect("join")
}

/// kubectl with the lab's context, as a user runs it.
async fn kubectl(lab: &Lab, args: &[&str]) -> Output {
    let mut cmd = lab.env.command(idp_test::testbed().bin("kubectl"));
    cmd.args(["--kubeconfig", &lab.kubeconfig().display().to_string(), "--context", &format!("idp-lab-{}", lab.name)]).args(args);
    tokio::task::spawn_blocking(move || cmd.output().expect("kubectl runs")).await.expect("join")
}

/// A component `apply` puts into the lab with an inventory is watched by the lab daemon:
/// a value another field manager changes is reported (naming it) and healed, the drift is
/// in the history, and `status` shows no drift once healed.
async fn watched_for_drift(lab: &Lab) {
    let file = lab.env.root().join("drift-demo.yaml");
    std::fs::write(&file, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: drift-demo\ndata:\n  mode: desired\n").expect("write");
    let out = lab.run(&["apply", "--name", &lab.name, "-f", &file.display().to_string(), "-n", "default", "--inventory", "drift-demo"]);
    assert!(out.status.success(), "apply: {}", stderr(&out));
    assert!(stderr(&out).contains("watches drift-demo for drift"), "{}", stderr(&out));
    let value = |out: &Output| String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let get = ["get", "configmap", "drift-demo", "-n", "default", "-o", "jsonpath={.data.mode}"];
    assert_eq!(value(&kubectl(lab, &get).await), "desired");
    // `watch` follows the history live, one JSON event per line.
    let mut watch = lab.env.command(env!("CARGO_BIN_EXE_idp-lab"));
    watch
        .env("IDP_LAB_LAB_NAME", &lab.name)
        .env("NO_COLOR", "1")
        .args(["watch", "-o", "json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let watcher = watch.spawn().expect("idp-lab watch runs");
    std::thread::sleep(std::time::Duration::from_millis(600));
    // The daemon's engine lists its objects first; an edit before that is found by the
    // first comparison all the same.
    let patched = kubectl(
        lab,
        &[
            "patch",
            "configmap",
            "drift-demo",
            "-n",
            "default",
            "--type",
            "merge",
            "-p",
            r#"{"data":{"mode":"changed"}}"#,
            "--field-manager=intruder",
        ],
    )
    .await;
    assert!(patched.status.success(), "{}", stderr(&patched));
    let began = std::time::Instant::now();
    let history = loop {
        let history = lab.json(&["history"]);
        let healed = value(&kubectl(lab, &get).await) == "desired";
        let reported = history.as_array().is_some_and(|h| h.iter().any(|e| e["kind"] == "drift" && e.to_string().contains("intruder")));
        if healed && reported {
            break history;
        }
        assert!(began.elapsed() < std::time::Duration::from_secs(30), "not healed and recorded in 30 s: {history}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    eprintln!("drift healed and recorded after {:?}", began.elapsed());
    std::thread::sleep(std::time::Duration::from_millis(700));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(watcher.id() as i32), nix::sys::signal::Signal::SIGINT).expect("SIGINT");
    let watched = watcher.wait_with_output().expect("watch ends");
    assert!(watched.status.success(), "watch ends cleanly on Ctrl-C: {}", stderr(&watched));
    let lines: Vec<Value> =
        String::from_utf8_lossy(&watched.stdout).lines().map(|l| serde_json::from_str(l).expect("one JSON event per line")).collect();
    assert!(lines.iter().any(|e| e["kind"] == "drift" && e.to_string().contains("intruder")), "watch showed the drift live: {lines:?}");
    assert!(history.to_string().contains("ConfigMap default/drift-demo") || history.to_string().contains("drift-demo"), "{history}");
    let status = lab.json(&["status"]);
    assert!(status["drift"].as_array().is_some_and(|d| d.iter().all(|o| o["state"] != "reported")), "{}", status["drift"]);
}

/// The shape of a JSON value: its keys, with types for leaves and the first element for arrays.
fn shape(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
        Value::Array(a) => Value::Array(a.first().map(shape).into_iter().collect()),
        Value::String(_) => "string".into(),
        Value::Number(_) => "number".into(),
        Value::Bool(_) => "boolean".into(),
        Value::Null => "null".into(),
    }
}

/// Every field path of a JSON value (`nodes[].name`).
fn paths(v: &Value, prefix: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                out.push(path.clone());
                paths(v, &path, out);
            }
        }
        Value::Array(a) => {
            if let Some(first) = a.first() {
                paths(first, &format!("{prefix}[]"), out);
            }
        }
        _ => {}
    }
}

/// `status -o json` of a running lab keeps its documented shape (docs/status.md).
fn status_shape_is_documented(status: &Value) {
    insta::assert_json_snapshot!("status_shape", shape(status));
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/status.md")).expect("docs/status.md");
    let mut all = Vec::new();
    paths(status, "", &mut all);
    for path in all {
        assert!(doc.contains(&format!("| `{path}` |")), "docs/status.md does not describe `{path}`");
    }
}

fn invocation(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("invocation.json is JSON")
}

/// The acceptance scenario of `up --profile standard --no-platform` on the stand-in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standard_lab_from_up_to_down() {
    let _tb = require!(Need::Docker, Need::TestnodeImage, Need::KubeBinaries);
    let image = testnode_image().await.expect("image");
    lifecycle(&image, Nodes::StandIn).await;
}

/// The same scenario on real rancher/k3s, privileged: `e2e/real/run.sh` runs it where the
/// image and privileged containers exist (never on the project's machines).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real rancher/k3s image and privileged containers: e2e/real/run.sh"]
async fn real_k3s_standard_lab_from_up_to_down() {
    let _tb = require!(Need::Docker, Need::KubeBinaries);
    let image = std::env::var("IDP_LAB_REAL_K3S_IMAGE").unwrap_or_else(|_| idp_core::config::K3S_IMAGE.to_owned());
    lifecycle(&image, Nodes::RealK3s).await;
}

/// Which node image a scenario runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Nodes {
    /// The stand-in, with explicit capabilities; it records its invocation.
    StandIn,
    /// Real k3s, privileged.
    RealK3s,
}

/// One server and two agents as the Docker API and the API server show them, a no-op
/// second `up`, a recreated agent, stop/start, images import, pinned ports in `render`,
/// and `down` leaving Docker as it found it.
async fn lifecycle(image: &str, kind: Nodes) {
    let scope = DockerScope::new().await.expect("docker");
    let docker = scope.docker().clone();
    // Other tests make and remove Docker objects meanwhile, so the whole-machine comparison
    // is e2e/test.sh's (before and after the suite); here: everything this lab's containers
    // mounted or joined is gone after `down`, and none of it existed before `up`.
    let before = docker_objects(&docker).await;
    // Hold 443 (when free) so the lab's auto HTTPS port is not 443: render must later show
    // the pinned port even when 443 is free again.
    let hold_443 = TcpListener::bind(("127.0.0.1", 443)).ok();
    let mut lab = Lab::new(&scope, image);
    let security = if kind == Nodes::RealK3s { "privileged" } else { "capabilities" };
    lab = lab.set("IDP_LAB_CLUSTER_SECURITY", security);

    let up = lab.json(&["up", "--profile", "standard", "--no-platform"]);
    drop(hold_443);
    let servers = [lab.node("server-0")];
    let agents = [lab.node("agent-0"), lab.node("agent-1")];
    let all: Vec<String> = servers.iter().chain(&agents).cloned().collect();
    assert_eq!(up["nodes"].as_array().map(Vec::len), Some(3), "{up}");

    // What the Docker API shows, once the daemon's health loop judged the lab (its first
    // tick runs as the daemon (re)starts, so a status right after `up` may precede it).
    let began = std::time::Instant::now();
    let status = loop {
        let status = lab.json(&["status"]);
        if status["health"]["judgedAtMs"].is_number() || began.elapsed() > std::time::Duration::from_secs(30) {
            break status;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    if kind == Nodes::StandIn {
        status_shape_is_documented(&status);
    }
    let subnet = status["network"]["subnet"].as_str().expect("subnet").to_owned();
    let prefix = subnet.trim_end_matches("0/24");
    let api_port = status["ports"]["api"].as_u64().expect("api port");
    let https_port = status["ports"]["https"].as_u64().expect("https port");
    let first_daemon = lab_daemon_serves(&lab, &up, &status);
    // The watchdog's history is held by the daemon; nothing happened yet but the health
    // loop's first judgement: one verdict per component it judged, and the lab's.
    let history = lab.json(&["history"]);
    let events = history.as_array().expect("a list");
    assert!(!events.is_empty(), "the first judgement is recorded: {history}");
    assert!(
        events.iter().all(|e| e["kind"] == "verdict"
            && e["subject"].as_str().is_some_and(|s| s.starts_with("health "))
            && e["body"]["from"].is_null()),
        "a new lab's history holds only first verdicts: {history}"
    );
    assert!(events.iter().any(|e| e["subject"] == "health lab"), "{history}");
    if kind == Nodes::StandIn {
        watched_for_drift(&lab).await;
    }
    // The health rollup: the nodes wait for a CNI (Progressing, with the condition's
    // words), the daemon is Healthy, the lab is its worst component.
    let health = &status["health"];
    let component = |h: &Value, name: &str| h["components"].as_array().and_then(|c| c.iter().find(|c| c["name"] == name)).cloned();
    let cluster = component(health, "cluster").expect("the cluster's health");
    let daemon_health = component(health, "daemon").expect("the daemon's health");
    assert_eq!(daemon_health["health"], "Healthy", "{health}");
    assert_eq!(cluster["children"].as_u64(), Some(2 * all.len() as u64), "a container and a Node per node: {health}");
    if kind == Nodes::StandIn {
        assert_eq!(cluster["health"], "Progressing", "{health}");
        assert!(
            cluster["reasons"].as_array().expect("reasons").iter().all(|r| r["subject"].as_str().is_some_and(|s| s.starts_with("Node "))),
            "only the API's nodes wait (for a CNI): {health}"
        );
    }
    assert_eq!(health["lab"]["health"], cluster["health"], "{health}");
    for (node, ip) in all.iter().zip([format!("{prefix}2"), format!("{prefix}16"), format!("{prefix}17")]) {
        let c = docker.inspect_container(node, None::<InspectContainerOptions>).await.expect("inspect");
        let host = c.host_config.clone().expect("host config");
        assert_eq!(host.cgroupns_mode.map(|m| m.to_string()).as_deref(), Some("private"), "{node}");
        let tmpfs = host.tmpfs.clone().unwrap_or_default();
        assert!(tmpfs.contains_key("/run") && tmpfs.contains_key("/var/run"), "{node}: {tmpfs:?}");
        assert_eq!(host.memory, Some(1 << 30), "{node}");
        if kind == Nodes::StandIn {
            assert_eq!(host.privileged, Some(false), "{node}");
            assert!(host.cap_add.clone().unwrap_or_default().iter().any(|c| c.contains("SYS_ADMIN")), "{node}");
        } else {
            assert_eq!(host.privileged, Some(true), "{node}");
        }
        let endpoint = c
            .network_settings
            .as_ref()
            .and_then(|s| s.networks.as_ref())
            .and_then(|n| n.get(&lab.name))
            .expect("on the lab network")
            .clone();
        assert_eq!(endpoint.ip_address.as_deref(), Some(ip.as_str()), "{node}");
        assert_eq!(endpoint.ipam_config.and_then(|i| i.ipv4_address).as_deref(), Some(ip.as_str()), "{node}: a static address");
        let mounts = c.mounts.clone().unwrap_or_default();
        for path in ["/var/lib/kubelet", "/var/lib/rancher/k3s", "/var/lib/cni", "/var/log"] {
            let m = mounts.iter().find(|m| m.destination.as_deref() == Some(path)).unwrap_or_else(|| panic!("{node}: nothing at {path}"));
            assert!(m.name.as_deref().is_some_and(|n| n.starts_with(node.as_str())), "{node}: {path} is not a named volume: {m:?}");
        }
        assert!(mounts.iter().any(|m| m.destination.as_deref() == Some("/proc/meminfo") && m.rw == Some(false)), "{node}: fake meminfo");
        let ports = c.network_settings.as_ref().and_then(|s| s.ports.clone()).unwrap_or_default();
        let bound = |p: &str| {
            ports
                .get(p)
                .cloned()
                .flatten()
                .and_then(|b| b.into_iter().next())
                .map(|b| (b.host_ip.unwrap_or_default(), b.host_port.unwrap_or_default()))
        };
        if node.ends_with("server-0") {
            assert_eq!(bound("6443/tcp"), Some(("127.0.0.1".into(), api_port.to_string())), "{node}");
        } else {
            assert_eq!(bound("30443/tcp").map(|b| b.0), Some("127.0.0.1".into()), "{node}: gateway on loopback");
            assert!(bound("30080/tcp").is_some(), "{node}");
        }
        let labels = c.config.and_then(|c| c.labels).unwrap_or_default();
        assert_eq!(labels.get("dev.idp-lab.lab"), Some(&lab.name));
        assert_eq!(labels.get("dev.idp-lab.role").map(String::as_str), Some(if node.contains("server") { "server" } else { "agent" }));
    }

    // The token: 0600, in no label and no environment.
    let token_path = lab.state_dir().join("token");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&token_path).expect("token file").permissions());
    assert_eq!(mode & 0o777, 0o600);
    let token = std::fs::read_to_string(&token_path).expect("token").trim().to_owned();
    assert!(token.len() >= 32);
    for node in &all {
        let c = docker.inspect_container(node, None::<InspectContainerOptions>).await.expect("inspect");
        let config = c.config.expect("config");
        assert!(!config.labels.unwrap_or_default().values().any(|v| v.contains(&token)), "{node}: token in a label");
        assert!(!config.env.unwrap_or_default().iter().any(|v| v.contains(&token)), "{node}: token in the environment");
    }

    // The API server: three Nodes with their labels, taints and memory capacity.
    let out = kubectl_get_nodes(&lab).await;
    assert!(out.status.success(), "kubectl from the host: {}", stderr(&out));
    let nodes: Value = serde_json::from_slice(&out.stdout).expect("nodes JSON");
    let items = nodes["items"].as_array().expect("items");
    assert_eq!(items.len(), 3);
    let by_name = |n: &str| items.iter().find(|i| i["metadata"]["name"] == n).unwrap_or_else(|| panic!("no node {n}")).clone();
    let server = by_name(&servers[0]);
    assert!(
        server["spec"]["taints"]
            .as_array()
            .expect("taints")
            .iter()
            .any(|t| t["key"] == "node-role.kubernetes.io/control-plane" && t["effect"] == "NoSchedule")
    );
    assert_eq!(by_name(&agents[0])["metadata"]["labels"]["role"], "infra");
    assert_eq!(by_name(&agents[1])["metadata"]["labels"]["role"], "apps");

    // `apply --name LAB` finds the lab's own kubeconfig and puts the lab on the labels.
    let manifest = lab.env.root().join("cm.yaml");
    std::fs::write(&manifest, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: hello}\ndata: {k: v}\n").expect("write");
    let manifest = manifest.display().to_string();
    let applied = lab.json(&["apply", "--name", &lab.name, "-f", &manifest]);
    assert_eq!(applied["objects"][0]["action"], "created", "{applied}");
    let diff = lab.run(&["diff", "--name", &lab.name, "-f", &manifest]);
    assert_eq!(diff.status.code(), Some(0), "no drift after apply: {}", stderr(&diff));
    for item in items {
        // The API server normalises the quantity (1048576Ki is written back as 1Gi).
        let memory = item["status"]["capacity"]["memory"].as_str().expect("memory capacity");
        assert_eq!(idp_core::cluster::parse_memory_quantity(memory), Some(1 << 30), "{}: {memory}", item["metadata"]["name"]);
        // No CNI yet (flannel is off, Cilium comes with the platform): NotReady, as on k3s.
        let ready =
            item["status"]["conditions"].as_array().expect("conditions").iter().find(|c| c["type"] == "Ready").expect("Ready").clone();
        assert_eq!(ready["status"], "False", "{}", item["metadata"]["name"]);
    }

    // `/` is rshared inside the nodes, and the recorded k3s invocations.
    for node in &all {
        let out = std::process::Command::new("docker").args(["exec", node, "cat", "/proc/self/mountinfo"]).output().expect("docker exec");
        let mountinfo = String::from_utf8_lossy(&out.stdout).into_owned();
        let root =
            mountinfo.lines().find(|l| l.split_whitespace().nth(4) == Some("/")).unwrap_or_else(|| panic!("{node}: no / in {mountinfo}"));
        assert!(root.contains(" shared:"), "{node}: / is not shared: {root}");
        if kind == Nodes::RealK3s {
            continue;
        }
        let record =
            invocation(&download_file(&docker, node, "/var/lib/rancher/k3s/idp-testnode/invocation.json").await.expect("invocation"));
        let args: Vec<String> =
            record["effective_args"].as_array().expect("args").iter().filter_map(|a| a.as_str().map(str::to_owned)).collect();
        assert!(record["error"].is_null(), "{node}: {}", record["error"]);
        assert!(record["env"].get("K3S_TOKEN").is_none(), "{node}: the token is passed as a file");
        assert_eq!(record["env"]["K3S_KUBECONFIG_OUTPUT"], "/output/kubeconfig.yaml");
        assert!(args.iter().any(|a| a == "--token-file=/etc/rancher/k3s/token" || a == "--token-file"), "{node}: {args:?}");
        assert!(args.contains(&format!("--node-name={node}")), "{node}: {args:?}");
        let server_only = ["--flannel-backend=none", "--disable=traefik,servicelb", "--disable-network-policy", "--disable-kube-proxy"];
        if node.contains("server") {
            for flag in server_only {
                assert!(args.iter().any(|a| a == flag), "{node}: {flag} missing from {args:?}");
            }
            assert!(args.iter().any(|a| a.starts_with("--tls-san=")), "{node}");
        } else {
            assert_eq!(record["subcommand"], "agent");
            for flag in server_only.iter().map(|f| f.split('=').next().unwrap_or(f)).chain(["--tls-san", "--cluster-init"]) {
                assert!(!args.iter().any(|a| a.starts_with(flag)), "{node}: server-only {flag} on an agent: {args:?}");
            }
            assert!(args.iter().any(|a| a.starts_with("--server=") || a == "--server"), "{node}: joins through config.yaml: {args:?}");
        }
    }

    // A second `up` changes nothing; after a "reboot" (the daemon killed, the nodes left
    // running as Docker restarts them) it brings the daemon back.
    let fp = fingerprint(&docker, &all).await;
    let _ = std::process::Command::new("kill").args(["-KILL", &first_daemon.to_string()]).status();
    wait_gone(first_daemon);
    let again = lab.json(&["up", "--no-platform"]);
    assert!(again["actions"].as_array().expect("actions").iter().all(|a| a["action"] == "keep"), "{again}");
    assert_eq!(fingerprint(&docker, &all).await, fp, "a no-op up touched a node");
    let second_daemon = again["daemon"]["pid"].as_u64().expect("a daemon after the second up") as u32;
    assert_ne!(second_daemon, first_daemon);
    assert!(alive(second_daemon), "{again}");
    // One more `up` keeps the running daemon (it reloads it).
    let kept = lab.json(&["up", "--no-platform"]);
    assert_eq!(kept["daemon"]["pid"].as_u64(), Some(u64::from(second_daemon)), "{kept}");

    // Deleting one agent and running `up` recreates only it.
    docker
        .remove_container(&agents[1], Some(bollard::query_parameters::RemoveContainerOptionsBuilder::default().force(true).v(true).build()))
        .await
        .expect("remove agent");
    let repaired = lab.json(&["up", "--no-platform"]);
    let changed: Vec<&str> = repaired["actions"]
        .as_array()
        .expect("actions")
        .iter()
        .filter(|a| a["action"] != "keep")
        .filter_map(|a| a["node"].as_str())
        .collect();
    assert_eq!(changed, [agents[1].as_str()], "{repaired}");
    let after = fingerprint(&docker, &all).await;
    assert_eq!(after[&servers[0]], fp[&servers[0]]);
    assert_eq!(after[&agents[0]], fp[&agents[0]]);
    assert_eq!(after[&agents[1]].1, fp[&agents[1]].1, "the recreated agent keeps its address");
    assert_eq!(after[&agents[1]].3, fp[&agents[1]].3, "and its ports");

    // stop then start keeps addresses and ports, and the kubeconfig still works.
    let fp = fingerprint(&docker, &all).await;
    lab.ok(&["stop"]);
    let stopped = lab.json(&["status"]);
    assert_eq!(stopped["state"], "stopped");
    assert_eq!(stopped["daemon"]["state"], "stopped", "stop stops the daemon: {stopped}");
    assert!(!alive(second_daemon));
    let health = &stopped["health"];
    assert_eq!(health["lab"]["health"], "Unknown", "the API cannot be read with no node running: {health}");
    let cluster = component(health, "cluster").expect("cluster");
    let reasons = cluster["reasons"].as_array().expect("reasons");
    assert!(
        all.iter().all(|n| reasons.iter().any(|r| r["subject"] == format!("node {n}") && r["health"] == "Degraded")),
        "every stopped container is Degraded: {health}"
    );
    assert_eq!(component(health, "daemon").expect("daemon")["health"], "Degraded", "{health}");
    lab.ok(&["start"]);
    let started = lab.json(&["status"]);
    assert_eq!(started["daemon"]["state"], "running", "start starts the daemon: {started}");
    let third_daemon = started["daemon"]["pid"].as_u64().expect("pid") as u32;
    let restarted = fingerprint(&docker, &all).await;
    for node in &all {
        assert_eq!(restarted[node].1, fp[node].1, "{node}: address");
        assert_eq!(restarted[node].3, fp[node].3, "{node}: ports");
    }
    let out = kubectl_get_nodes(&lab).await;
    assert!(out.status.success(), "kubectl after start: {}", stderr(&out));

    // `render` for this lab uses the pinned HTTPS port, whatever listens on the host now.
    let listen_on_pinned = TcpListener::bind(("127.0.0.1", u16::try_from(https_port).expect("port"))).ok();
    let rendered = lab.ok(&["render"]);
    drop(listen_on_pinned);
    if https_port == 443 {
        assert!(!rendered.contains(".nip.io:443"), "443 is never written into URLs");
    } else {
        assert!(rendered.contains(&format!(".nip.io:{https_port}")), "render does not use the pinned port {https_port}");
    }

    // images import of a locally built image reaches every node's images directory.
    let local = format!("idp-lab-test/import-{}:v1", lab.name);
    let rootfs = lab.env.root().join("import.tar");
    {
        let mut builder = tar::Builder::new(std::fs::File::create(&rootfs).expect("create rootfs tar"));
        let mut header = tar::Header::new_gnu();
        header.set_size(5);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, "hello.txt", &b"hello"[..]).expect("append");
        builder.finish().expect("finish");
    }
    let imported =
        std::process::Command::new("docker").args(["import", &rootfs.display().to_string(), &local]).output().expect("docker import");
    assert!(imported.status.success(), "{}", stderr(&imported));
    let result = lab.json(&["images", "import", &local]);
    let file = result["files"][0].as_str().expect("a file").to_owned();
    for node in &all {
        let bytes = download_file(&docker, node, &format!("/var/lib/rancher/k3s/agent/images/{file}"))
            .await
            .expect("the image tarball is in the node");
        let mut archive = tar::Archive::new(bytes.as_slice());
        let names: Vec<String> =
            archive.entries().expect("a tar").filter_map(|e| e.ok()?.path().ok().map(|p| p.display().to_string())).collect();
        assert!(names.iter().any(|n| n == "manifest.json"), "{node}: not a docker save archive: {names:?}");
    }
    let _ = std::process::Command::new("docker").args(["image", "rm", &local]).output();
    let _ = image;

    // `down` leaves nothing of the lab (anonymous volumes included) and no kubeconfig entry.
    let mut mine: BTreeSet<String> = BTreeSet::new();
    for node in &all {
        let c = docker.inspect_container(node, None::<InspectContainerOptions>).await.expect("inspect");
        mine.insert(format!("container {}", c.id.clone().unwrap_or_default()));
        for m in c.mounts.unwrap_or_default() {
            if let Some(name) = m.name {
                mine.insert(format!("volume {name}"));
            }
        }
        for e in c.network_settings.and_then(|s| s.networks).unwrap_or_default().into_values() {
            mine.insert(format!("network {}", e.network_id.unwrap_or_default()));
        }
    }
    assert!(mine.iter().all(|o| !before.contains(o)), "the lab's objects are new");
    let down = lab.json(&["down"]);
    assert_eq!(down[0]["removed"]["containers"].as_array().map(Vec::len), Some(3), "{down}");
    assert_eq!(down[0]["daemonStopped"].as_u64(), Some(u64::from(third_daemon)), "{down}");
    assert!(!alive(third_daemon), "down left the lab daemon running");
    let after = docker_objects(&docker).await;
    let left: Vec<&String> = mine.iter().filter(|o| after.contains(*o)).collect();
    assert!(left.is_empty(), "down left these behind: {left:?}");
    assert!(scope.leftovers().await.expect("leftovers").is_empty(), "something still carries the lab's label");
    let kubeconfig = std::fs::read_to_string(lab.kubeconfig()).unwrap_or_default();
    assert!(!kubeconfig.contains(&format!("idp-lab-{}", lab.name)), "{kubeconfig}");
    let kept: Vec<String> = std::fs::read_dir(lab.state_dir())
        .expect("the state directory keeps the CA")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(kept, ["ca"], "down keeps only the lab CA");
    assert_eq!(lab.json(&["status"])["state"], "absent");
    lab.ok(&["down", "--purge"]);
    assert!(!lab.state_dir().exists(), "down --purge removes the CA too");
    scope.cleanup().await.expect("nothing left");
}

/// A taken port stops `up` before anything is created; two labs side by side get their
/// own names, subnets and ports; a changed configuration needs `--recreate`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taken_ports_refuse_and_two_labs_run_side_by_side() {
    let _tb = require!(Need::Docker, Need::TestnodeImage, Need::KubeBinaries);
    let image = testnode_image().await.expect("image");
    let scope = DockerScope::new().await.expect("docker");
    let taken = TcpListener::bind(("127.0.0.1", 0)).expect("bind");
    let port = taken.local_addr().expect("addr").port().to_string();
    let blocked = Lab::new(&scope, &image)
        .set("IDP_LAB_NETWORK_API_PORT", &port)
        .set("IDP_LAB_CLUSTER_AGENTS", "0")
        .set("IDP_LAB_CLUSTER_POOLS", "[]");
    let out = blocked.run(&["up", "--no-platform"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("port {port}")) && stderr(&out).contains("network.api_port"),
        "the port and its key are named: {}",
        stderr(&out)
    );
    assert!(scope.leftovers().await.expect("leftovers").is_empty(), "nothing was created");
    drop(taken);

    let a = Lab::new(&scope, &image).set("IDP_LAB_CLUSTER_AGENTS", "1").set("IDP_LAB_CLUSTER_POOLS", "[]");
    let b = a.sibling(&scope);
    let (ra, rb) = {
        let (a2, b2) = (&a, &b);
        std::thread::scope(|s| {
            let ha = s.spawn(|| a2.run(&["up", "--no-platform", "-o", "json"]));
            let hb = s.spawn(|| b2.run(&["up", "--no-platform", "-o", "json"]));
            (ha.join().expect("thread a"), hb.join().expect("thread b"))
        })
    };
    assert!(ra.status.success(), "lab a: {}", stderr(&ra));
    assert!(rb.status.success(), "lab b: {}", stderr(&rb));
    let (sa, sb) = (a.json(&["status"]), b.json(&["status"]));
    assert_ne!(sa["network"]["subnet"], sb["network"]["subnet"]);
    let ports = |s: &Value| -> BTreeSet<u64> {
        let p = &s["ports"];
        let mut all: BTreeSet<u64> = [&p["http"], &p["https"], &p["api"]].iter().filter_map(|v| v.as_u64()).collect();
        all.extend(p["gateway"].as_array().into_iter().flatten().flat_map(|g| [g["http"].as_u64(), g["https"].as_u64()]).flatten());
        all
    };
    assert!(ports(&sa).is_disjoint(&ports(&sb)), "{sa} {sb}");
    let listed = a.json(&["list"]);
    let names: Vec<&str> = listed.as_array().expect("list").iter().filter_map(|l| l["name"].as_str()).collect();
    assert!(names.contains(&a.name.as_str()) && names.contains(&b.name.as_str()), "{listed}");

    // A change that needs new nodes is refused with the differences, then --recreate.
    let changed = a.set("IDP_LAB_CLUSTER_MEMORY", "2g");
    let out = changed.run(&["up", "--no-platform"]);
    assert_eq!(out.status.code(), Some(10), "{}", stderr(&out));
    assert!(stderr(&out).contains("memory"), "{}", stderr(&out));
    let recreated = changed.json(&["up", "--no-platform", "--recreate"]);
    assert!(recreated["actions"].as_array().expect("actions").iter().any(|a| a["action"] == "recreate"), "{recreated}");

    let down = changed.json(&["down", "--all", "--yes"]);
    assert_eq!(down.as_array().map(Vec::len), Some(2), "{down}");
    assert!(scope.leftovers().await.expect("leftovers").is_empty());
    scope.cleanup().await.expect("nothing left");
}

/// A node that cannot start fails `up` with the node's own words, its logs saved, and
/// the state kept so the next `up` can continue; doctor says privileged containers are
/// refused here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_node_is_named_with_its_log_and_doctor_reports_privileges() {
    let _tb = require!(Need::Docker, Need::TestnodeImage, Need::KubeBinaries);
    let image = testnode_image().await.expect("image");
    let scope = DockerScope::new().await.expect("docker");
    let lab = Lab::new(&scope, &image)
        .set("IDP_LAB_CLUSTER_AGENTS", "0")
        .set("IDP_LAB_CLUSTER_POOLS", "[]")
        .set("IDP_LAB_CLUSTER_K3S_ARGS", "[\"--no-such-flag\"]")
        .set("IDP_LAB_TIMEOUTS_CLUSTER", "60s");
    let out = lab.run(&["up", "--no-platform"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(8), "{err}");
    assert!(err.contains(&lab.node("server-0")), "names the node: {err}");
    assert!(err.contains("flag provided but not defined: -no-such-flag"), "shows k3s' own words: {err}");
    assert!(err.contains("Node logs were saved to"), "{err}");
    assert!(err.contains("idp-lab down"), "says how to clean up: {err}");
    let logs = lab.state_dir().join("logs");
    assert!(std::fs::read_dir(&logs).map(|d| d.count()).unwrap_or(0) > 0, "logs saved in {}", logs.display());
    lab.ok(&["down"]);

    let privileged = Lab::new(&scope, &image).set("IDP_LAB_CLUSTER_SECURITY", "privileged");
    let out = {
        let mut cmd = privileged.env.command(env!("CARGO_BIN_EXE_idp-lab"));
        cmd.current_dir(privileged.env.root())
            .env("IDP_LAB_CLUSTER_IMAGE", &image)
            .env("IDP_LAB_LAB_NAME", &privileged.name)
            .args(["doctor"]);
        cmd.output().expect("doctor runs")
    };
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(7), "{text}\n{}", stderr(&out));
    assert!(text.contains("privileged containers are refused"), "{text}");
    assert!(scope.leftovers().await.expect("leftovers").is_empty(), "the probe containers are removed");
    scope.cleanup().await.expect("nothing left");
}
