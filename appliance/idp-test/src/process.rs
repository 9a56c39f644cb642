//! Supervised child processes that cannot outlive the test that started them.
//!
//! Three layers make sure no etcd or kube-apiserver is left behind:
//!
//! 1. [`Supervised`] stops its process on `Drop` (SIGTERM, then SIGKILL after a grace period),
//!    which also runs while a panicking test unwinds.
//! 2. Children are started through `setpriv --pdeathsig KILL` (util-linux) when it is on `PATH`,
//!    so the kernel kills them when the thread that spawned them goes away, even if the test
//!    process is SIGKILLed (a nextest timeout, an OOM kill) and no destructor runs.
//! 3. Children stay in the test's process group, so a Ctrl-C in the terminal or a group kill by
//!    the test runner reaches them as well.
//!
//! Because of (2), spawn from the test's own thread (the body of a `#[tokio::test]` runs there),
//! not from `spawn_blocking`, whose threads exit when idle.

use std::ffi::OsStr;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// A child process with its output in a log file, stopped on drop.
#[derive(Debug)]
pub struct Supervised {
    name: String,
    child: Child,
    log: PathBuf,
    exited: Option<ExitStatus>,
}

impl Supervised {
    /// Starts `program` with `args` in `workdir`, stdout and stderr going to `<workdir>/<name>.log`.
    pub fn spawn<I, S>(name: &str, program: &Path, args: I, workdir: &Path) -> anyhow::Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let log = workdir.join(format!("{name}.log"));
        let out = File::create(&log).with_context(|| format!("failed to create {}", log.display()))?;
        let err = out.try_clone().context("failed to duplicate the log file handle")?;
        let mut cmd = match setpriv() {
            Some(setpriv) => {
                let mut cmd = Command::new(setpriv);
                cmd.args(["--pdeathsig", "KILL", "--"]).arg(program);
                cmd
            }
            None => Command::new(program),
        };
        cmd.args(args).current_dir(workdir).env_remove("KUBECONFIG").stdin(Stdio::null()).stdout(out).stderr(err);
        let child = cmd.spawn().with_context(|| format!("failed to start {name} ({})", program.display()))?;
        Ok(Self { name: name.to_string(), child, log, exited: None })
    }

    /// The process name given at spawn time.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The log file holding the process's stdout and stderr.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails, quoting the end of the log, when the process has exited.
    pub fn ensure_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.poll_exit() {
            bail!("{} exited early ({status}); last log lines:\n{}", self.name, self.log_tail(30));
        }
        Ok(())
    }

    /// The last `lines` lines of the log (empty when unreadable).
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn poll_exit(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            // An error here means the child was already reaped; treat it as gone.
            self.exited = match self.child.try_wait() {
                Ok(status) => status,
                Err(_) => Some(ExitStatus::default()),
            };
        }
        self.exited
    }

    fn signal(&mut self, signal: Signal) {
        if self.poll_exit().is_some() {
            return;
        }
        let Ok(pid) = i32::try_from(self.child.id()) else { return };
        // ESRCH (already gone) is fine: the next poll reaps it.
        let _ = kill(Pid::from_raw(pid), signal);
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        stop_all(std::slice::from_mut(self), DEFAULT_GRACE);
    }
}

/// How long [`stop_all`] waits after SIGTERM before it sends SIGKILL.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);

/// Sends SIGTERM to every process at once, waits up to `grace` for them to exit, SIGKILLs the
/// rest and reaps them. Blocking; safe to call from `Drop` while panicking.
pub fn stop_all(procs: &mut [Supervised], grace: Duration) {
    for p in procs.iter_mut() {
        p.signal(Signal::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && procs.iter_mut().any(|p| p.poll_exit().is_none()) {
        std::thread::sleep(Duration::from_millis(20));
    }
    for p in procs.iter_mut() {
        if p.poll_exit().is_none() {
            p.signal(Signal::SIGKILL);
            p.exited = p.child.wait().ok().or(Some(ExitStatus::default()));
        }
    }
}

/// `setpriv` from util-linux, if on `PATH`.
fn setpriv() -> Option<&'static Path> {
    static SETPRIV: OnceLock<Option<PathBuf>> = OnceLock::new();
    SETPRIV
        .get_or_init(|| {
            let path = std::env::var_os("PATH")?;
            std::env::split_paths(&path).map(|dir| dir.join("setpriv")).find(|candidate| candidate.is_file())
        })
        .as_deref()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_stops_the_process_and_reports_early_exit() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut sleeper = Supervised::spawn("sleeper", Path::new("/bin/sleep"), ["600"], dir.path()).expect("sleep starts");
        sleeper.ensure_running().expect("sleep is still running");
        let pid = Pid::from_raw(i32::try_from(sleeper.pid()).expect("pid fits"));
        let started = Instant::now();
        drop(sleeper);
        assert!(started.elapsed() < DEFAULT_GRACE, "sleep stops on SIGTERM, well before SIGKILL");
        assert!(kill(pid, None).is_err(), "the process is gone after drop");

        let mut quitter = Supervised::spawn("quitter", Path::new("/bin/sh"), ["-c", "echo bye; exit 3"], dir.path()).expect("sh starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        let err = loop {
            match quitter.ensure_running() {
                Err(e) => break e.to_string(),
                Ok(()) if Instant::now() > deadline => panic!("sh -c 'exit 3' still runs after 10 s"),
                Ok(()) => std::thread::sleep(Duration::from_millis(10)),
            }
        };
        assert!(err.contains("quitter exited early") && err.contains("bye"), "{err}");
    }
}
