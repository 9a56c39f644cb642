//! Child processes (etcd, kube-apiserver, kube-controller-manager): started
//! with their output in `/var/log/<name>.log`, watched, and stopped with
//! SIGTERM, then SIGKILL after a grace period.

use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, Result};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::sync::mpsc;

use crate::files::LOG_DIR;

/// How long children get between SIGTERM and SIGKILL.
const GRACE: Duration = Duration::from_secs(5);

/// A child that ended.
#[derive(Debug)]
pub struct Exit {
    /// Name given at spawn (also the log file's stem).
    pub name: String,
    /// How it ended.
    pub status: std::io::Result<ExitStatus>,
}

#[derive(Debug)]
struct Proc {
    name: String,
    pid: Pid,
    exited: Arc<AtomicBool>,
}

/// Owns the children; exits are reported on the channel from [`Supervisor::new`].
#[derive(Debug)]
pub struct Supervisor {
    procs: Mutex<Vec<Proc>>,
    tx: mpsc::UnboundedSender<Exit>,
}

impl Supervisor {
    /// A supervisor and the receiver of its children's exits.
    pub fn new() -> (Arc<Supervisor>, mpsc::UnboundedReceiver<Exit>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Arc::new(Supervisor { procs: Mutex::new(Vec::new()), tx }), rx)
    }

    /// Starts `program args` with stdout and stderr appended to
    /// `/var/log/<name>.log`.
    pub fn spawn(&self, name: &str, program: &Path, args: &[String]) -> Result<()> {
        std::fs::create_dir_all(LOG_DIR).with_context(|| format!("creating {LOG_DIR}"))?;
        let log_path = Path::new(LOG_DIR).join(format!("{name}.log"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let mut child = tokio::process::Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        let raw = child.id().and_then(|id| i32::try_from(id).ok()).context("child has no pid")?;
        let exited = Arc::new(AtomicBool::new(false));
        let proc = Proc { name: name.to_string(), pid: Pid::from_raw(raw), exited: exited.clone() };
        self.procs.lock().map_err(|_| anyhow::anyhow!("supervisor lock poisoned"))?.push(proc);
        let tx = self.tx.clone();
        let name = name.to_string();
        tokio::spawn(async move {
            let status = child.wait().await;
            exited.store(true, Ordering::SeqCst);
            let _ = tx.send(Exit { name, status });
        });
        Ok(())
    }

    fn signal_alive(&self, sig: Signal) -> usize {
        let Ok(procs) = self.procs.lock() else { return 0 };
        let mut n = 0;
        // Newest first: controller manager, apiserver, then etcd.
        for p in procs.iter().rev() {
            if !p.exited.load(Ordering::SeqCst) {
                if sig == Signal::SIGKILL {
                    warn!("{} did not stop within {}s, killing it", p.name, GRACE.as_secs());
                }
                let _ = kill(p.pid, sig);
                n += 1;
            }
        }
        n
    }

    fn all_exited(&self) -> bool {
        self.procs.lock().map(|p| p.iter().all(|p| p.exited.load(Ordering::SeqCst))).unwrap_or(true)
    }

    /// Stops every child: SIGTERM, wait up to 5 s, SIGKILL the rest.
    pub async fn shutdown(&self, exits: &mut mpsc::UnboundedReceiver<Exit>) {
        if self.signal_alive(Signal::SIGTERM) == 0 {
            return;
        }
        let wait_all = async {
            while !self.all_exited() {
                if exits.recv().await.is_none() {
                    break;
                }
            }
        };
        if tokio::time::timeout(GRACE, wait_all).await.is_err() {
            self.signal_alive(Signal::SIGKILL);
            let wait_all = async {
                while !self.all_exited() {
                    if exits.recv().await.is_none() {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(2), wait_all).await;
        }
    }
}
