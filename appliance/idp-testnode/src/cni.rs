//! Whether a node's pod network is ready, as the kubelet learns it from the
//! container runtime. With flannel (k3s' default) the stand-in pretends the
//! network is up at once. With `--flannel-backend=none` it is ready only
//! once a CNI config exists in k3s' CNI config directory, which is where a
//! CNI such as Cilium writes it; until then the node is `NotReady`.

use std::path::{Path, PathBuf};

/// The CNI config directory k3s points containerd at.
pub const CONF_DIR: &str = "/var/lib/rancher/k3s/agent/etc/cni/net.d";

/// The `Ready=False` message while no CNI config exists, in the kubelet's
/// words.
pub const NOT_READY_MESSAGE: &str = "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:network plugin is not ready: cni config uninitialized";

/// How the node's network becomes ready.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Network {
    /// flannel: ready at once (the stand-in runs no flannel).
    Flannel,
    /// No built-in CNI: ready when [`find_config`] finds a config in `dir`.
    External {
        /// The CNI config directory watched.
        dir: PathBuf,
    },
}

impl Network {
    /// The mode for a cluster's `--flannel-backend`.
    pub fn for_backend(backend: &str) -> Network {
        if backend == "none" { Network::External { dir: PathBuf::from(CONF_DIR) } } else { Network::Flannel }
    }

    /// Whether the network is ready now.
    pub fn ready(&self) -> bool {
        match self {
            Network::Flannel => true,
            Network::External { dir } => find_config(dir).is_some(),
        }
    }

    /// True when readiness can change and must be polled.
    pub fn watched(&self) -> bool {
        matches!(self, Network::External { .. })
    }
}

/// The first usable CNI config in `dir`, in name order, as libcni looks
/// for them: a non-hidden regular file named `*.conf`, `*.conflist` or
/// `*.json` that holds a JSON object (with a non-empty `plugins` list for a
/// `.conflist`, a `type` otherwise). A file still being written does not
/// parse and is picked up on a later poll.
pub fn find_config(dir: &Path) -> Option<PathBuf> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir).ok()?.filter_map(Result::ok).map(|e| e.path()).collect();
    names.sort();
    names.into_iter().find(|p| is_config(p))
}

fn is_config(path: &Path) -> bool {
    let hidden = path.file_name().and_then(|n| n.to_str()).is_none_or(|n| n.starts_with('.'));
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or_default();
    if hidden || !matches!(ext, "conf" | "conflist" | "json") || !path.is_file() {
        return false;
    }
    std::fs::read(path).is_ok_and(|bytes| is_config_text(ext, &bytes))
}

fn is_config_text(ext: &str, bytes: &[u8]) -> bool {
    let Ok(serde_json::Value::Object(map)) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return false;
    };
    match ext {
        "conflist" => map.get("plugins").and_then(serde_json::Value::as_array).is_some_and(|p| !p.is_empty()),
        _ => map.get("type").and_then(serde_json::Value::as_str).is_some() || map.contains_key("plugins"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_must_be_named_and_shaped_like_one() {
        let dir = std::env::temp_dir().join(format!("idp-testnode-cni-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let net = Network::External { dir: dir.clone() };
        assert!(!net.ready(), "empty directory");
        std::fs::write(dir.join("05-cilium.conflist.tmp"), r#"{"plugins":[{"type":"cilium-cni"}]}"#).expect("write");
        std::fs::write(dir.join(".hidden.conflist"), r#"{"plugins":[{"type":"cilium-cni"}]}"#).expect("write");
        std::fs::write(dir.join("10-half.conflist"), r#"{"plugins":[{"ty"#).expect("write");
        std::fs::write(dir.join("20-empty.conflist"), r#"{"plugins":[]}"#).expect("write");
        assert!(!net.ready(), "only unusable files");
        std::fs::write(dir.join("30-bridge.conf"), r#"{"cniVersion":"0.4.0","name":"b","type":"bridge"}"#).expect("write");
        assert_eq!(find_config(&dir), Some(dir.join("30-bridge.conf")));
        assert!(net.ready());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn flannel_is_ready_at_once_and_none_is_watched() {
        assert!(Network::for_backend("vxlan").ready());
        assert!(!Network::for_backend("vxlan").watched());
        assert_eq!(Network::for_backend("none"), Network::External { dir: PathBuf::from(CONF_DIR) });
    }
}
