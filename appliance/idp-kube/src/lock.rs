//! The lock around a kubeconfig write: `<file>.lock`, the way client-go (kubectl) and
//! kind lock it, made robust against an idp-lab that died holding it.
//!
//! client-go creates `<file>.lock` with `O_CREAT|O_EXCL` and removes it when done; a lock
//! file that stays in place makes every later `kubectl config ...` fail with "file
//! exists". So a plain `flock` on a lock file left lying around would break kubectl.
//! Instead the lock is the *existence* of the file, as for kubectl and kind, and idp-lab
//! also holds an `flock` on the file it created and writes `idp-lab <pid>` into it. A
//! waiter that finds a file marked `idp-lab` whose `flock` it can take knows the holder
//! is gone and removes it. A file without that mark (kubectl's, kind's) is never taken
//! away: it is waited for.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{ErrorKind, Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};

use crate::KubeError;

/// How long a write waits for another process to release the kubeconfig.
pub(crate) const LOCK_WAIT: Duration = Duration::from_secs(10);
/// The pause between attempts.
const RETRY: Duration = Duration::from_millis(50);
/// The mark idp-lab writes into its lock files.
const MARK: &str = "idp-lab ";

/// The lock file of `path`: `<path>.lock`.
pub(crate) fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// Creates `dir` and its missing parents with mode 0700 (as `~/.kube` should be).
pub(crate) fn create_private_dir(dir: &Path) -> Result<(), KubeError> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| KubeError::io("create the directory", dir, e))
}

/// A held lock; dropping it removes the lock file, then releases the `flock`.
#[derive(Debug)]
pub(crate) struct LockGuard {
    path: PathBuf,
    // Released (closed) after `drop` removed the file, so a waiter that takes the flock
    // of this inode always finds the path gone or pointing at another inode.
    _flock: Flock<File>,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!(lock = %self.path.display(), "failed to remove the kubeconfig lock: {e}");
        }
    }
}

/// Locks the kubeconfig `path`, waiting up to `wait` for another holder to finish.
/// The lock file's directory must exist.
pub(crate) fn lock(path: &Path, wait: Duration) -> Result<LockGuard, KubeError> {
    let lock = lock_path(path);
    let started = Instant::now();
    loop {
        match OpenOptions::new().write(true).create_new(true).mode(0o600).open(&lock) {
            Ok(file) => return mark(file, &lock),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(KubeError::io("create the lock file", lock, e)),
        }
        if clear_if_stale(&lock) {
            continue;
        }
        if started.elapsed() >= wait {
            return Err(KubeError::Locked { path: path.to_path_buf(), holder: holder(&lock), lock, waited: started.elapsed() });
        }
        std::thread::sleep(RETRY);
    }
}

/// Takes the `flock` of a lock file this process just created and marks it as idp-lab's.
fn mark(file: File, lock: &Path) -> Result<LockGuard, KubeError> {
    // Nobody else can hold the flock of a file created a moment ago: waiters only try it
    // once the mark is written, below.
    let mut flock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(flock) => flock,
        Err((_, errno)) => {
            let _ = std::fs::remove_file(lock);
            return Err(KubeError::io("lock", lock, errno.into()));
        }
    };
    let guard_path = lock.to_path_buf();
    let text = format!("{MARK}{}\n", std::process::id());
    if let Err(e) = flock.write_all(text.as_bytes()) {
        let _ = std::fs::remove_file(lock);
        return Err(KubeError::io("write the lock file", lock, e));
    }
    Ok(LockGuard { path: guard_path, _flock: flock })
}

/// Removes `lock` when an idp-lab process that is gone left it behind. True when the
/// caller should try again at once (the file was removed, or changed under us).
fn clear_if_stale(lock: &Path) -> bool {
    let mut file = match File::open(lock) {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::NotFound => return true,
        // kubectl creates its lock file with mode 0: not ours, wait for it.
        Err(_) => return false,
    };
    let mut text = String::new();
    if file.read_to_string(&mut text).is_err() || !text.starts_with(MARK) {
        return false;
    }
    // EWOULDBLOCK: the holder is alive.
    let Ok(flock) = Flock::lock(file, FlockArg::LockExclusiveNonblock) else {
        return false;
    };
    // Holding the flock of the stale inode: no other waiter can be removing it now. The
    // path may already name a new lock file; only remove it when it is still this one.
    let same = match (flock.metadata(), std::fs::metadata(lock)) {
        (Ok(held), Ok(now)) => held.dev() == now.dev() && held.ino() == now.ino(),
        _ => false,
    };
    if same {
        tracing::warn!(lock = %lock.display(), holder = text.trim(), "removing a kubeconfig lock left by an idp-lab process that is gone");
        if let Err(e) = std::fs::remove_file(lock) {
            tracing::warn!(lock = %lock.display(), "failed to remove the stale kubeconfig lock: {e}");
            return false;
        }
    }
    true
}

/// Who holds `lock`, for the error message.
fn holder(lock: &Path) -> String {
    match std::fs::read_to_string(lock) {
        Ok(text) if text.starts_with(MARK) => format!("held by idp-lab process {}", text[MARK.len()..].trim()),
        Ok(_) | Err(_) => "made by kubectl, kind or another client-go program".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_waits_and_times_out_naming_the_holder() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("config");
        let _held = lock(&path, LOCK_WAIT).expect("first lock");
        let err = lock(&path, Duration::from_millis(200)).expect_err("second lock");
        let msg = err.to_string();
        assert!(msg.contains(&format!("idp-lab process {}", std::process::id())), "{msg}");
        assert!(msg.contains("config.lock"), "{msg}");
    }

    #[test]
    fn dropping_the_guard_removes_the_lock_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("config");
        drop(lock(&path, LOCK_WAIT).expect("lock"));
        assert!(!lock_path(&path).exists());
        drop(lock(&path, LOCK_WAIT).expect("lock again"));
    }

    #[test]
    fn a_lock_of_a_dead_idp_lab_is_cleared() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("config");
        // Marked as idp-lab's, but nobody holds its flock: the holder died.
        std::fs::write(lock_path(&path), "idp-lab 999999\n").expect("stale lock");
        let started = Instant::now();
        drop(lock(&path, Duration::from_secs(5)).expect("stale lock is taken over"));
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn a_foreign_lock_is_waited_for_and_never_removed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("config");
        // What kubectl leaves while it writes: an empty file.
        std::fs::write(lock_path(&path), "").expect("foreign lock");
        let err = lock(&path, Duration::from_millis(200)).expect_err("foreign lock is respected");
        assert!(err.to_string().contains("kubectl"), "{err}");
        assert!(lock_path(&path).exists());
    }

    #[test]
    fn a_foreign_lock_released_while_waiting_is_taken() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("config");
        std::fs::write(lock_path(&path), "").expect("foreign lock");
        let lock_file = lock_path(&path);
        let remover = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            std::fs::remove_file(lock_file)
        });
        let guard = lock(&path, Duration::from_secs(5)).expect("lock after release");
        remover.join().expect("thread").expect("removed");
        drop(guard);
    }
}
