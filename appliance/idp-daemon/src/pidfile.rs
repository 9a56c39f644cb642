//! The pid file under an exclusive `flock`: who runs, and the one-daemon-per-lab rule.
//!
//! The lock, not the file's existence, says a daemon runs: a daemon killed with SIGKILL
//! leaves its file behind, but the kernel releases its lock, so the next one starts.
//! The pid written into the file is only for messages and for [`stop`].

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::{DaemonError, DaemonInfo, INFO_FILE, PID_FILE};

/// How long taking the lock is retried: a [`status`] call holds it for an instant.
const ACQUIRE_RETRY: Duration = Duration::from_millis(500);

/// Whether a lab's daemon runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DaemonState {
    /// None runs.
    Stopped,
    /// One runs: its pid, and what it serves once it has written that.
    Running {
        /// Its pid.
        pid: u32,
        /// Its `daemon.json`, once written.
        info: Option<DaemonInfo>,
    },
}

fn open(dir: &Path) -> Result<File, DaemonError> {
    let path = dir.join(PID_FILE);
    std::fs::create_dir_all(dir).map_err(|source| DaemonError::Io { action: "create", path: dir.to_path_buf(), source })?;
    OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o600).open(&path).map_err(|source| DaemonError::Io {
        action: "open",
        path,
        source,
    })
}

fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

fn lab_of(dir: &Path) -> String {
    dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Takes the lab's lock and writes this process's pid; fails naming the running daemon.
pub(crate) fn acquire(dir: &Path) -> Result<Flock<File>, DaemonError> {
    let began = Instant::now();
    let mut file = open(dir)?;
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(mut lock) => {
                let path = dir.join(PID_FILE);
                let io = |source| DaemonError::Io { action: "write", path: path.clone(), source };
                lock.set_len(0).map_err(io)?;
                lock.seek(SeekFrom::Start(0)).map_err(io)?;
                writeln!(lock, "{}", std::process::id()).map_err(io)?;
                lock.sync_data().map_err(io)?;
                let _ = std::fs::remove_file(dir.join(INFO_FILE));
                return Ok(lock);
            }
            Err((mut back, Errno::EWOULDBLOCK)) => {
                if began.elapsed() >= ACQUIRE_RETRY {
                    return Err(DaemonError::AlreadyRunning {
                        lab: lab_of(dir),
                        pid: read_pid(&mut back).unwrap_or(0),
                        pidfile: dir.join(PID_FILE),
                    });
                }
                file = back;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err((_, errno)) => {
                return Err(DaemonError::Io { action: "lock", path: dir.join(PID_FILE), source: std::io::Error::from(errno) });
            }
        }
    }
}

/// Writes `daemon.json`.
pub(crate) fn write_info(dir: &Path, info: &DaemonInfo) -> Result<(), DaemonError> {
    write_json(dir, INFO_FILE, &serde_json::to_value(info).unwrap_or_default())
}

/// Writes `value` as `<dir>/<name>` through a temporary file and a rename, so a reader
/// never sees half of it.
pub(crate) fn write_json(dir: &Path, name: &str, value: &serde_json::Value) -> Result<(), DaemonError> {
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp"));
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    std::fs::write(&tmp, text + "\n").and_then(|()| std::fs::rename(&tmp, &path)).map_err(|source| DaemonError::Io {
        action: "write",
        path,
        source,
    })
}

/// Removes `daemon.json`, empties the pid file, then releases the lock. The file
/// itself stays: removing it would let a daemon starting now lock the old inode while
/// another creates a new file, and both would run.
pub(crate) fn release(dir: &Path, lock: Flock<File>) {
    let _ = std::fs::remove_file(dir.join(INFO_FILE));
    let _ = lock.set_len(0);
    drop(lock);
}

/// Whether the daemon of the lab whose state directory is `dir` runs.
pub fn status(dir: &Path) -> DaemonState {
    let path = dir.join(PID_FILE);
    let Ok(file) = OpenOptions::new().read(true).write(true).open(&path) else {
        return DaemonState::Stopped;
    };
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        // Nobody holds it: no daemon (a SIGKILLed one left its file). Released at once.
        Ok(lock) => {
            drop(lock);
            DaemonState::Stopped
        }
        Err((mut file, Errno::EWOULDBLOCK)) => {
            let info = std::fs::read_to_string(dir.join(INFO_FILE)).ok().and_then(|t| serde_json::from_str::<DaemonInfo>(&t).ok());
            let pid = read_pid(&mut file).or(info.as_ref().map(|i| i.pid)).unwrap_or(0);
            DaemonState::Running { pid, info }
        }
        Err(_) => DaemonState::Stopped,
    }
}

/// Stops the lab's daemon: SIGTERM, then waits up to `timeout` for it to release its
/// lock. The pid it stopped, or `None` when none ran.
pub fn stop(dir: &Path, timeout: Duration) -> Result<Option<u32>, DaemonError> {
    let DaemonState::Running { pid, .. } = status(dir) else {
        return Ok(None);
    };
    let Ok(raw) = i32::try_from(pid) else {
        return Ok(None);
    };
    if raw <= 1 {
        return Ok(None);
    }
    match kill(Pid::from_raw(raw), Signal::SIGTERM) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(errno) => return Err(DaemonError::Io { action: "signal the daemon of", path: dir.to_path_buf(), source: errno.into() }),
    }
    let began = Instant::now();
    while began.elapsed() < timeout {
        if status(dir) == DaemonState::Stopped {
            return Ok(Some(pid));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(DaemonError::StopTimeout { pid, seconds: timeout.as_secs() })
}
