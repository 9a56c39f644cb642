//! Offline `up` against the real Docker Engine, Debian's docker-registry and skopeo, with
//! the stand-in node image: the bundle is made through a mirror (docker-registry holds a
//! retagged copy of the stand-in and locally built air-gap images under their Docker Hub
//! paths), the registry is stopped, and `up --no-platform` must then load the node image
//! from the bundle, mount the air-gap images, point every node's `registries.yaml` at the
//! lab registry, and make Docker pull nothing. Without a bundle, or with one that lacks an
//! image, `up` refuses before anything is made.

use idp_test::registry::Registry;
use idp_test::{DockerScope, IsolatedEnv, Need, require, testnode_image};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Removes the images it names when dropped (never the shared stand-in).
struct Images(Vec<String>);

impl Drop for Images {
    fn drop(&mut self) {
        for image in &self.0 {
            let _ = Command::new("docker").args(["rmi", "-f", image]).output();
        }
    }
}

/// The lab of the test, in an isolated home.
struct Lab {
    env: IsolatedEnv,
    name: String,
    vars: Vec<(String, String)>,
}

impl Lab {
    fn run(&self, args: &[&str]) -> Output {
        let mut cmd = self.env.command(env!("CARGO_BIN_EXE_idp-lab"));
        cmd.current_dir(self.env.root())
            .env("IDP_LAB_LAB_NAME", &self.name)
            .env("IDP_LAB_CLUSTER_SECURITY", "capabilities")
            .env("IDP_LAB_CLUSTER_MEMORY", "1g")
            .env("IDP_LAB_CLUSTER_AGENTS", "1")
            .env("IDP_LAB_CLUSTER_POOLS", "[]")
            .env("NO_COLOR", "1")
            .envs(self.vars.iter().map(|(k, v)| (k, v)))
            .args(args);
        cmd.output().expect("idp-lab runs")
    }

    fn with(&self, var: &str, value: &str) -> Lab {
        let mut env = IsolatedEnv::new().expect("env");
        for (k, v) in self.env.vars() {
            env.set(k, v);
        }
        let mut vars = self.vars.clone();
        vars.retain(|(k, _)| k != var);
        vars.push((var.to_owned(), value.to_owned()));
        Lab { env, name: self.name.clone(), vars }
    }
}

/// A one-file image imported into Docker as `name`.
fn import_tiny(dir: &Path, name: &str) {
    let root = dir.join(name.replace(['/', ':'], "_"));
    std::fs::create_dir_all(root.join("etc")).expect("dir");
    std::fs::write(root.join("etc/air-gap-image"), format!("{name}\n")).expect("file");
    let tar = root.with_extension("tar");
    run("tar", &["-cf", &tar.display().to_string(), "-C", &root.display().to_string(), "."]);
    run("docker", &["import", &tar.display().to_string(), name]);
}

fn image_events(since: &str) -> Vec<Value> {
    let until = format!("{}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("time").as_secs() + 1);
    let out = run("docker", &["events", "--since", since, "--until", &until, "--filter", "type=image", "--format", "{{json .}}"]);
    out.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_up_takes_everything_from_the_bundle_and_pulls_nothing() {
    let _tb = require!(Need::Docker, Need::TestnodeImage, Need::KubeBinaries, Need::RegistryTools);
    let standin = testnode_image().await.expect("image");
    let scope = DockerScope::new().await.expect("docker");
    let mut registry = Registry::start().expect("docker-registry");
    let scratch = registry.scratch();
    let host = registry.host();
    let lock = idp_core::lock::Lock::embedded().expect("lock");
    let airgap: Vec<String> = lock.cluster["k3s"].airgap.iter().map(|i| i.reference.clone()).collect();

    // The node image: a retagged copy of the stand-in (never the shared tag itself), as
    // Docker Hub would name it, pushed to the mirror under its Docker Hub path.
    let tag = format!("offline-{}", scope.run_id());
    let node_image = format!("docker.io/idp-lab/testnode-offline:{tag}");
    let local_name = format!("idp-lab/testnode-offline:{tag}");
    let mut cleanup = Images(vec![local_name.clone()]);
    let pushed = |name: &str| format!("{host}/{}", name.trim_start_matches("docker.io/"));
    run("docker", &["tag", &standin, &pushed(&node_image)]);
    cleanup.0.push(pushed(&node_image));
    run("docker", &["push", &pushed(&node_image)]);
    for image in &airgap {
        import_tiny(&scratch, &pushed(image));
        cleanup.0.push(pushed(image));
        run("docker", &["push", &pushed(image)]);
    }
    for name in cleanup.0.iter().skip(1) {
        run("docker", &["rmi", name]);
    }

    let env = IsolatedEnv::new().expect("isolated env");
    let lab = Lab {
        env,
        name: scope.lab_name(),
        vars: vec![
            ("IDP_LAB_CLUSTER_IMAGE".into(), node_image.clone()),
            ("IDP_LAB_REGISTRY_MIRRORS".into(), format!("{{ \"docker.io\" = [\"http://{host}\"] }}")),
        ],
    };
    let bundle = scratch.join("bundle.tar");
    let partial = scratch.join("lacking.tar");
    let mut create = vec!["bundle", "create", "--no-lock", "--platform", "linux/amd64", "--image", &node_image];
    let mut lacking = create.clone();
    lacking.extend(["--image", &airgap[0], "--out", partial.to_str().expect("path")]);
    for image in &airgap {
        create.extend(["--image", image.as_str()]);
    }
    create.extend(["--out", bundle.to_str().expect("path")]);
    for args in [&create, &lacking] {
        let out = lab.run(args);
        assert!(out.status.success(), "bundle create: {}", stderr(&out));
        assert!(stderr(&out).contains("docker.io through http://"), "the mirror is named: {}", stderr(&out));
    }
    // From here nothing is reachable but the machine itself.
    registry.stop();
    assert_eq!(
        Command::new("docker").args(["image", "inspect", &local_name]).output().expect("docker").status.code(),
        Some(1),
        "Docker must lack the node image"
    );

    // (The mirror was for making the bundle; the offline lab names none.)
    let offline = lab.with("IDP_LAB_REGISTRY_OFFLINE", "true").with("IDP_LAB_REGISTRY_MIRRORS", "{}");
    // No bundle: refused before anything is made, naming what is needed and the command.
    let none = offline.with("IDP_LAB_REGISTRY_BUNDLE", &scratch.join("absent.tar").display().to_string());
    let out = none.run(&["up", "--no-platform"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(7), "{err}");
    assert!(err.contains("no bundle at") && err.contains("absent.tar") && err.contains("nothing was created"), "{err}");
    assert!(err.contains("idp-lab bundle create") && err.contains(&format!("--image {node_image}")), "{err}");
    for image in &airgap {
        assert!(err.contains(image.as_str()), "{image} is named: {err}");
    }
    assert!(scope.leftovers().await.expect("leftovers").is_empty(), "nothing was created");
    // A bundle that lacks air-gap images: refused the same way, naming each one.
    let out = offline.with("IDP_LAB_REGISTRY_BUNDLE", partial.to_str().expect("path")).run(&["up", "--no-platform"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(7), "{err}");
    assert!(err.contains(&format!("lacks {} image(s)", airgap.len() - 1)), "{err}");
    assert!(
        !err.contains(&format!("{} (k3s air-gap)", airgap[0])) && err.contains(&format!("{} (k3s air-gap): not in the bundle", airgap[1])),
        "{err}"
    );
    assert!(scope.leftovers().await.expect("leftovers").is_empty(), "nothing was created");

    // The bundle holds what the cluster needs but not the platform's charts and CRD files:
    // plain `up` (with the platform) is refused before anything is made, naming them.
    let offline = offline.with("IDP_LAB_REGISTRY_BUNDLE", bundle.to_str().expect("path"));
    let out = offline.run(&["up"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(7), "{err}");
    assert!(err.contains("chart(s) or file(s) the platform needs offline") && err.contains("nothing was created"), "{err}");
    assert!(err.contains("(chart)") && err.contains("(file)"), "each named with its kind: {err}");
    assert!(scope.leftovers().await.expect("leftovers").is_empty(), "nothing was created");

    // The bundle that holds it all (for the cluster).
    let since = format!("{}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("time").as_secs());
    let out = offline.run(&["up", "--no-platform", "-o", "json"]);
    assert!(out.status.success(), "offline up: {}", stderr(&out));
    let up: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(up["offline"]["loadedNodeImage"], true, "{up}");
    assert_eq!(up["offline"]["airgapImages"].as_array().map(Vec::len), Some(airgap.len()), "{up}");
    let events = image_events(&since);
    let actions: Vec<&str> = events.iter().filter_map(|e| e["Action"].as_str()).collect();
    assert!(actions.contains(&"load"), "Docker loaded the node image: {events:?}");
    // Other tests pull from loopback registries meanwhile; no pull may name any other.
    let remote: Vec<&Value> = events
        .iter()
        .filter(|e| e["Action"] == "pull")
        .filter(|e| {
            let name = e["Actor"]["Attributes"]["name"].as_str().or(e["id"].as_str()).unwrap_or_default();
            !(name.starts_with("127.") || name.starts_with("localhost:") || name.starts_with("localhost/"))
        })
        .collect();
    assert!(remote.is_empty(), "Docker pulled from a remote registry: {remote:?}");
    run("docker", &["image", "inspect", &local_name]);

    assert!(up["nodes"].as_array().is_some_and(|n| n.len() == 2), "{up}");
    let gateway = run("docker", &["network", "inspect", &offline.name, "--format", "{{(index .IPAM.Config 0).Gateway}}"]).trim().to_owned();
    let state = lab.env.idp_lab_home().join("labs").join(&offline.name);
    let archive: PathBuf = state.join(idp_core::cluster::AIRGAP_HOST_FILE);
    for node in [format!("{}-server-0", offline.name), format!("{}-agent-0", offline.name)] {
        let registries = run("docker", &["exec", &node, "cat", "/etc/rancher/k3s/registries.yaml"]);
        for registry in ["docker.io", "quay.io", "ghcr.io", "registry.k8s.io"] {
            assert!(
                registries
                    .split_once(&format!("  {registry}:\n    endpoint:\n      - http://{gateway}:5000\n"))
                    .is_some_and(|(_, rest)| !rest.starts_with("      -")),
                "{node}: {registry}: {registries}"
            );
        }
        let record: Value =
            serde_json::from_str(&run("docker", &["exec", &node, "cat", "/var/lib/rancher/k3s/idp-testnode/invocation.json"]))
                .expect("invocation");
        let args = record["effective_args"].to_string();
        assert!(args.contains("--disable-default-registry-endpoint"), "{node}: {args}");
        let mounted =
            run("docker", &["exec", &node, "ls", "-l", &format!("{}/{}", idp_core::cluster::IMAGES_DIR, idp_core::cluster::AIRGAP_FILE)]);
        assert!(mounted.contains("idp-lab-airgap.tar"), "{node}: {mounted}");
        // The images the node's registry mirror serves from the bundle.
        let manifest = run(
            "docker",
            &[
                "exec",
                &node,
                "/bin/busybox",
                "wget",
                "-q",
                "-O",
                "-",
                &format!("http://{gateway}:5000/v2/rancher/mirrored-pause/manifests/3.6?ns=docker.io"),
            ],
        );
        assert!(manifest.contains("schemaVersion"), "{node}: {manifest}");
    }
    // The air-gap archive is a docker-archive another reader takes, with every image.
    for image in &airgap {
        let inspected = run("skopeo", &["inspect", &format!("docker-archive:{}:{image}", archive.display())]);
        assert!(inspected.contains("\"Layers\""), "{image}: {inspected}");
    }
    // KEP-1755: the lab registry is advertised.
    let kubeconfig = state.join("kubeconfig");
    let hosting = run(
        &idp_test::testbed().bin("kubectl").display().to_string(),
        &[
            "--kubeconfig",
            &kubeconfig.display().to_string(),
            "get",
            "configmap",
            "-n",
            "kube-public",
            "local-registry-hosting",
            "-o",
            "json",
        ],
    );
    assert!(hosting.contains(&format!("host: \\\"{gateway}:5000\\\"")), "{hosting}");

    // A second offline up changes nothing and loads nothing.
    let since = format!("{}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("time").as_secs());
    let again = offline.run(&["up", "--no-platform"]);
    assert!(again.status.success(), "{}", stderr(&again));
    // (Other tests use Docker meanwhile: only this lab's images count.)
    let touched: Vec<Value> = image_events(&since).into_iter().filter(|e| e.to_string().contains("testnode-offline")).collect();
    assert!(touched.is_empty(), "the second up touched the node image: {touched:?}");

    let down = offline.run(&["down"]);
    assert!(down.status.success(), "{}", stderr(&down));
    assert!(scope.leftovers().await.expect("leftovers").is_empty());
    scope.cleanup().await.expect("nothing left");
    drop(cleanup);
}

/// Offline `up` on real rancher/k3s, privileged, from a real bundle made on a connected
/// machine (`idp-lab bundle create --profile minimal --out FILE`, named by
/// `IDP_LAB_REAL_BUNDLE`): k3s imports the air-gap images from its images directory, and
/// its containerd pulls through the lab registry alone. `e2e/real/run.sh` runs it where
/// such a bundle, the image and privileged containers exist (never on the project's
/// machines).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs real rancher/k3s, privileged containers and a real bundle: e2e/real/run.sh"]
async fn real_k3s_offline_up_imports_the_air_gap_images() {
    let _tb = require!(Need::Docker, Need::KubeBinaries);
    let bundle = std::env::var("IDP_LAB_REAL_BUNDLE").expect("IDP_LAB_REAL_BUNDLE names a real bundle");
    let scope = DockerScope::new().await.expect("docker");
    let lab = Lab {
        env: IsolatedEnv::new().expect("env"),
        name: scope.lab_name(),
        vars: vec![
            ("IDP_LAB_CLUSTER_SECURITY".into(), "privileged".into()),
            ("IDP_LAB_REGISTRY_OFFLINE".into(), "true".into()),
            ("IDP_LAB_REGISTRY_BUNDLE".into(), bundle),
        ],
    };
    let out = lab.run(&["up", "--no-platform", "-o", "json"]);
    assert!(out.status.success(), "offline up: {}", stderr(&out));
    let lock = idp_core::lock::Lock::embedded().expect("lock");
    let node = format!("{}-server-0", lab.name);
    let began = std::time::Instant::now();
    for image in &lock.cluster["k3s"].airgap {
        loop {
            let listed = run("docker", &["exec", &node, "k3s", "ctr", "-n", "k8s.io", "images", "ls", "-q"]);
            if listed.lines().any(|l| l == image.reference) {
                break;
            }
            assert!(began.elapsed() < std::time::Duration::from_secs(120), "{} was not imported: {listed}", image.reference);
            std::thread::sleep(std::time::Duration::from_secs(2));
        }
    }
    let down = lab.run(&["down"]);
    assert!(down.status.success(), "{}", stderr(&down));
    scope.cleanup().await.expect("nothing left");
}
