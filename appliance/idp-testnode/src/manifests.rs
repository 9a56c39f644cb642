//! Auto-deploy manifests: every `*.yaml`, `*.yml` and `*.json` under
//! `/var/lib/rancher/k3s/server/manifests` (sorted, sub-directories
//! included, `<file>.skip` suppresses `<file>`) is applied with
//! `kubectl apply --server-side --force-conflicts` at start and again when it
//! changes. A failing manifest is logged as an error and retried with
//! back-off, never fatal, as in k3s. Deleting a file deletes nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use crate::labels::is_dns_subdomain;

/// How often the directory is rescanned.
const SCAN: Duration = Duration::from_secs(5);
/// Longest wait between retries of a failing manifest.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Upper bound for one kubectl run.
const APPLY_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug)]
struct FileState {
    stamp: (SystemTime, u64),
    ok: bool,
    failures: u32,
    next_try: Instant,
}

/// The applier and what it has applied so far.
#[derive(Debug)]
pub struct Manifests {
    dir: PathBuf,
    kubectl: PathBuf,
    kubeconfig: PathBuf,
    state: BTreeMap<PathBuf, FileState>,
}

impl Manifests {
    /// An applier for `dir` using `kubectl` with `kubeconfig`.
    pub fn new(dir: &Path, kubectl: &Path, kubeconfig: &Path) -> Manifests {
        Manifests { dir: dir.to_path_buf(), kubectl: kubectl.to_path_buf(), kubeconfig: kubeconfig.to_path_buf(), state: BTreeMap::new() }
    }

    fn candidates(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![self.dir.clone()];
        while let Some(dir) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&dir) else { continue };
            for entry in rd.filter_map(Result::ok) {
                let path = entry.path();
                let Ok(meta) = std::fs::metadata(&path) else { continue };
                if meta.is_dir() {
                    stack.push(path);
                    continue;
                }
                let ext = path.extension().and_then(|e| e.to_str()).unwrap_or_default();
                let hidden = path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'));
                let skipped = PathBuf::from(format!("{}.skip", path.display())).exists();
                if matches!(ext, "yaml" | "yml" | "json") && !hidden && !skipped {
                    out.push(path);
                }
            }
        }
        out.sort();
        out
    }

    /// One pass: applies new and changed files, retries due failures.
    /// Returns how many files failed in this pass.
    pub async fn sync(&mut self) -> usize {
        let mut failed = 0;
        for path in self.candidates() {
            let Ok(meta) = std::fs::metadata(&path) else { continue };
            let stamp = (meta.modified().unwrap_or(SystemTime::UNIX_EPOCH), meta.len());
            let due = match self.state.get(&path) {
                None => true,
                Some(s) if s.stamp != stamp => true,
                Some(s) => !s.ok && Instant::now() >= s.next_try,
            };
            if !due {
                continue;
            }
            let previous_failures = match self.state.get(&path) {
                Some(s) if s.stamp == stamp => s.failures,
                _ => 0,
            };
            let ok = self.apply(&path).await;
            let failures = if ok { 0 } else { previous_failures + 1 };
            if !ok {
                failed += 1;
            }
            let backoff = SCAN.saturating_mul(1 << failures.min(4)).min(MAX_BACKOFF);
            self.state.insert(path, FileState { stamp, ok, failures, next_try: Instant::now() + backoff });
        }
        failed
    }

    async fn apply(&self, path: &Path) -> bool {
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
        if !is_dns_subdomain(stem) {
            error!(
                "Failed to process manifest {}: AddOn name {stem:?} derived from the file name is not a valid RFC 1123 subdomain",
                path.display()
            );
            return false;
        }
        let run = tokio::process::Command::new(&self.kubectl)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["apply", "--server-side", "--force-conflicts", "-f"])
            .arg(path)
            .kill_on_drop(true)
            .output();
        match tokio::time::timeout(APPLY_TIMEOUT, run).await {
            Ok(Ok(out)) if out.status.success() => {
                info!("Applied manifest {}: {}", path.display(), one_line(&out.stdout));
                true
            }
            Ok(Ok(out)) => {
                error!(
                    "Failed to apply manifest {}: {}",
                    path.display(),
                    one_line(if out.stderr.is_empty() { &out.stdout } else { &out.stderr })
                );
                false
            }
            Ok(Err(e)) => {
                error!("Failed to apply manifest {}: running kubectl: {e}", path.display());
                false
            }
            Err(_) => {
                error!("Failed to apply manifest {}: kubectl timed out", path.display());
                false
            }
        }
    }

    /// Rescans forever.
    pub async fn watch(mut self) -> std::convert::Infallible {
        loop {
            tokio::time::sleep(SCAN).await;
            self.sync().await;
        }
    }
}

fn one_line(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; ")
}
