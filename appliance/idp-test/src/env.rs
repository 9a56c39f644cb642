//! An isolated environment for child processes: a temporary `IDP_LAB_HOME` (and `HOME`/XDG
//! directories beneath it) and an environment with the developer's cluster and Docker
//! pointers scrubbed, so a test can never touch the real ones.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context as _;
use tempfile::TempDir;

/// Variables never passed on to children: they would point tools at the developer's cluster,
/// Docker daemon or idp-lab state.
pub const SCRUBBED: [&str; 6] = ["KUBECONFIG", "DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_CONFIG", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"];
/// Prefix of idp-lab's own variables, all scrubbed before `IDP_LAB_HOME` is set.
pub const IDP_LAB_PREFIX: &str = "IDP_LAB_";

/// A temporary home plus the environment map to run children in; the directory is removed on
/// drop.
#[derive(Debug)]
pub struct IsolatedEnv {
    root: TempDir,
    vars: BTreeMap<OsString, OsString>,
}

impl IsolatedEnv {
    /// Creates the temporary directories and the environment: the current one minus
    /// [`SCRUBBED`] and every `IDP_LAB_*` variable, plus `IDP_LAB_HOME`, `HOME` and the XDG base
    /// directories inside the temp dir.
    pub fn new() -> anyhow::Result<Self> {
        let root =
            tempfile::Builder::new().prefix("idp-test-env-").tempdir().context("failed to create the isolated environment's temp dir")?;
        let mut vars = scrubbed(std::env::vars_os());
        let home = root.path().join("home");
        let idp_lab_home = root.path().join("idp-lab-home");
        let dirs = [
            ("IDP_LAB_HOME", idp_lab_home),
            ("HOME", home.clone()),
            ("XDG_CONFIG_HOME", home.join(".config")),
            ("XDG_CACHE_HOME", home.join(".cache")),
            ("XDG_DATA_HOME", home.join(".local/share")),
            ("XDG_STATE_HOME", home.join(".local/state")),
        ];
        for (name, dir) in dirs {
            std::fs::create_dir_all(&dir).with_context(|| format!("failed to create {}", dir.display()))?;
            vars.insert(name.into(), dir.into());
        }
        Ok(Self { root, vars })
    }

    /// Stops every lab daemon (`idp-lab serve`) of this home that is still running: a test
    /// that failed before its `down` must not leave one behind. Dropping does this too.
    pub fn stop_daemons(&self) {
        let labs = self.idp_lab_home().join("labs");
        for entry in std::fs::read_dir(&labs).into_iter().flatten().flatten() {
            let pid_file = entry.path().join("daemon.pid");
            let Some(pid) = std::fs::read_to_string(&pid_file).ok().and_then(|t| t.trim().parse::<i32>().ok()) else { continue };
            // Only an idp-lab serve of this home: never a recycled pid of something else.
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            let ours = String::from_utf8_lossy(&environ).contains(&self.idp_lab_home().display().to_string());
            if pid > 1 && cmdline.contains("idp-lab") && cmdline.contains(" serve") && ours {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            }
        }
    }

    /// The temporary `IDP_LAB_HOME`.
    pub fn idp_lab_home(&self) -> PathBuf {
        self.root.path().join("idp-lab-home")
    }

    /// The temporary `HOME`.
    pub fn home(&self) -> PathBuf {
        self.root.path().join("home")
    }

    /// The root of the temporary directory (for scratch files of the test).
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// The environment children get.
    pub fn vars(&self) -> &BTreeMap<OsString, OsString> {
        &self.vars
    }

    /// Sets a variable for children, e.g. `KUBECONFIG` of a test control plane.
    pub fn set(&mut self, name: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut Self {
        self.vars.insert(name.as_ref().into(), value.as_ref().into());
        self
    }

    /// Replaces `cmd`'s environment with this one.
    pub fn apply<'c>(&self, cmd: &'c mut Command) -> &'c mut Command {
        cmd.env_clear().envs(&self.vars)
    }

    /// A command for `program` running in this environment.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new(program);
        self.apply(&mut cmd);
        cmd
    }
}

/// `vars` without [`SCRUBBED`] and `IDP_LAB_*` variables.
pub fn scrubbed(vars: impl IntoIterator<Item = (OsString, OsString)>) -> BTreeMap<OsString, OsString> {
    vars.into_iter()
        .filter(|(name, _)| {
            let name = name.to_string_lossy();
            !SCRUBBED.contains(&name.as_ref()) && !name.starts_with(IDP_LAB_PREFIX)
        })
        .collect()
}

impl Drop for IsolatedEnv {
    fn drop(&mut self) {
        self.stop_daemons();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrubs_cluster_docker_and_idp_lab_variables() {
        let vars = [
            ("KUBECONFIG", "/home/me/.kube/config"),
            ("DOCKER_HOST", "tcp://prod:2376"),
            ("IDP_LAB_HOME", "/home/me/.idp-lab"),
            ("PATH", "/usr/bin"),
        ]
        .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let kept = scrubbed(vars);
        assert_eq!(kept.keys().collect::<Vec<_>>(), vec![&OsString::from("PATH")]);
    }

    #[test]
    fn children_see_the_temp_home_and_no_kubeconfig() {
        let mut env = IsolatedEnv::new().expect("temp dirs");
        env.set("EXTRA", "1");
        let out = env
            .command("/bin/sh")
            .args(["-c", "echo \"$IDP_LAB_HOME|$HOME|${KUBECONFIG-unset}|${DOCKER_HOST-unset}|$EXTRA\""])
            .output()
            .expect("sh runs");
        let line = String::from_utf8(out.stdout).expect("utf-8");
        let expected = format!("{}|{}|unset|unset|1\n", env.idp_lab_home().display(), env.home().display());
        assert_eq!(line, expected);
        assert!(env.idp_lab_home().is_dir());
        let root = env.root().to_path_buf();
        drop(env);
        assert!(!root.exists(), "the temp dir is removed on drop");
    }
}
