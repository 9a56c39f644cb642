//! Well-known paths inside the node container and a safe file writer.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

/// k3s' data dir (`--data-dir` is recorded but not honoured).
pub const DATA_DIR: &str = "/var/lib/rancher/k3s";
/// Auto-deploy manifests of a server.
pub const MANIFESTS_DIR: &str = "/var/lib/rancher/k3s/server/manifests";
/// Where the parsed invocation is recorded for tests.
pub const INVOCATION: &str = "/var/lib/rancher/k3s/idp-testnode/invocation.json";
/// The admin kubeconfig k3s always writes.
pub const K3S_YAML: &str = "/etc/rancher/k3s/k3s.yaml";
/// Child process logs go to `<LOG_DIR>/<name>.log`.
pub const LOG_DIR: &str = "/var/log";

/// Directory of the real control-plane binaries (`IDP_TESTNODE_BIN_DIR`
/// overrides it, e.g. to run outside the image).
pub fn bin_dir() -> PathBuf {
    std::env::var_os("IDP_TESTNODE_BIN_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/usr/libexec/idp-testnode"))
}

/// Path of one server sub-directory or file.
pub fn server_path(rel: &str) -> PathBuf {
    Path::new(DATA_DIR).join("server").join(rel)
}

/// Writes `contents` to `path` with `mode` through a temporary file and a
/// rename, so readers (k3d copies the kubeconfig out while k3s runs) never
/// see a partial file. Parent directories are created.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let parent = path.parent().unwrap_or_else(|| Path::new("/"));
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&tmp)?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.write_all(contents)?;
        f.sync_all()?;
        if std::fs::rename(&tmp, path).is_err() {
            // A bind-mounted target cannot be replaced; overwrite it in place.
            let _ = std::fs::remove_file(&tmp);
            std::fs::write(path, contents)?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
        }
        Ok(())
    };
    write().with_context(|| format!("writing {}", path.display()))
}
