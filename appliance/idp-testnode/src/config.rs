//! The files k3s reads at start: `/etc/rancher/k3s/config.yaml` (plus
//! `config.yaml.d/*.yaml`) and `/etc/rancher/k3s/registries.yaml`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Default config file (`--config`, `K3S_CONFIG_FILE` override it).
pub const DEFAULT_CONFIG: &str = "/etc/rancher/k3s/config.yaml";
/// Default registries file (`--private-registry` overrides it).
pub const DEFAULT_REGISTRIES: &str = "/etc/rancher/k3s/registries.yaml";

/// A config or registries file that exists but cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid YAML of the expected shape.
    #[error("parsing {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
}

/// The merged content of the config files (keys sorted within a file, files
/// in order).
#[derive(Debug, Default)]
pub struct ConfigFiles {
    /// Files read, in order.
    pub files: Vec<PathBuf>,
    /// Merged keys and values.
    pub merged: Vec<(String, Value)>,
    /// Each file's text as read, for the record.
    pub texts: Vec<(PathBuf, String)>,
}

impl ConfigFiles {
    /// Reads `path` (a missing file is no error, as in k3s) and then
    /// `<path>.d/*.yaml` in name order. A later file replaces a key's value,
    /// except that a key ending in `+` appends to a list.
    pub fn load(path: &Path) -> Result<ConfigFiles, ConfigError> {
        let mut out = ConfigFiles::default();
        let mut candidates = vec![path.to_path_buf()];
        let dropins = PathBuf::from(format!("{}.d", path.display()));
        if let Ok(rd) = std::fs::read_dir(&dropins) {
            let mut extra: Vec<PathBuf> = rd
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
                .collect();
            extra.sort();
            candidates.extend(extra);
        }
        for file in candidates {
            let text = match std::fs::read_to_string(&file) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => return Err(ConfigError::Read { path: file, source }),
            };
            out.files.push(file.clone());
            out.texts.push((file.clone(), text.clone()));
            if text.trim().is_empty() {
                continue;
            }
            let map: BTreeMap<String, Value> = serde_saphyr::from_str::<Option<BTreeMap<String, Value>>>(&text)
                .map_err(|e| ConfigError::Parse {
                    path: file.clone(),
                    message: format!("{e} (the config file must be a YAML mapping of flag names to values)"),
                })?
                .unwrap_or_default();
            for (key, value) in map {
                out.merge(key, value);
            }
        }
        Ok(out)
    }

    fn merge(&mut self, key: String, value: Value) {
        let (key, append) = match key.strip_suffix('+') {
            Some(k) => (k.to_string(), true),
            None => (key, false),
        };
        match self.merged.iter_mut().find(|(k, _)| *k == key) {
            Some((_, existing)) if append => {
                let mut items = into_list(std::mem::take(existing));
                items.extend(into_list(value));
                *existing = Value::Array(items);
            }
            Some((_, existing)) => *existing = value,
            None => self.merged.push((key, value)),
        }
    }

    /// Removes the keys `known` rejects and returns them, in order: what
    /// `k3s server` does with keys that are not server flags.
    pub fn drop_unknown(&mut self, known: impl Fn(&str) -> bool) -> Vec<String> {
        let (keep, drop): (Vec<_>, Vec<_>) = std::mem::take(&mut self.merged).into_iter().partition(|(k, _)| known(k));
        self.merged = keep;
        drop.into_iter().map(|(k, _)| k).collect()
    }

    /// The config as `--key=value` arguments (`-k=value` for one-letter
    /// keys, as k3s writes them), to be placed before the command line's.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        for (key, value) in &self.merged {
            let dashes = if key.chars().count() == 1 { "-" } else { "--" };
            for item in into_list(value.clone()) {
                let v = match item {
                    Value::Null => continue,
                    Value::String(s) => s,
                    Value::Bool(b) => b.to_string(),
                    Value::Number(n) => n.to_string(),
                    other => other.to_string(),
                };
                args.push(format!("{dashes}{key}={v}"));
            }
        }
        args
    }

    /// The merged config as a JSON object, for the record.
    pub fn to_json(&self) -> Value {
        Value::Object(self.merged.iter().cloned().collect())
    }

    /// Each file's text by path, for the record.
    pub fn texts_json(&self) -> Value {
        Value::Object(self.texts.iter().map(|(p, t)| (p.display().to_string(), Value::String(t.clone()))).collect())
    }
}

/// The value of `--config`/`-c` found by a lenient scan of the command line
/// (as k3s' config-file parser finds it, also in a line the flag parser
/// would refuse).
pub fn find_config_arg(args: &[String]) -> Option<String> {
    let mut found = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--" {
            break;
        }
        let body = a.strip_prefix("--").or_else(|| a.strip_prefix('-'));
        let Some(body) = body else { continue };
        match body.split_once('=') {
            Some(("config" | "c", v)) => found = Some(v.to_string()),
            None if matches!(body, "config" | "c") => found = it.next().cloned(),
            _ => {}
        }
    }
    found
}

fn into_list(v: Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a,
        Value::Null => Vec::new(),
        other => vec![other],
    }
}

/// `registries.yaml` as k3s/containerd understand it. Unknown keys are
/// ignored, as Go's YAML decoder ignores them.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct Registries {
    /// Mirror endpoints per registry host (`"*"` for all).
    #[serde(default)]
    pub mirrors: BTreeMap<String, Mirror>,
    /// Auth and TLS per registry host.
    #[serde(default)]
    pub configs: BTreeMap<String, RegistryConfig>,
}

/// One `mirrors.<registry>` entry.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct Mirror {
    /// Endpoints tried in order.
    #[serde(default)]
    pub endpoint: Vec<String>,
    /// Repository rewrites (regex -> replacement).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rewrite: BTreeMap<String, String>,
}

/// One `configs.<registry>` entry.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct RegistryConfig {
    /// Credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<BTreeMap<String, String>>,
    /// TLS settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<RegistryTls>,
}

/// `configs.<registry>.tls`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct RegistryTls {
    /// CA bundle path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// Client certificate path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<String>,
    /// Client key path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<String>,
    /// Skip server verification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure_skip_verify: Option<bool>,
}

/// Reads and validates the registries file; `Ok(None)` when absent.
pub fn load_registries(path: &Path) -> Result<Option<Registries>, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(ConfigError::Read { path: path.to_path_buf(), source });
        }
    };
    if text.trim().is_empty() {
        return Ok(Some(Registries::default()));
    }
    serde_saphyr::from_str::<Option<Registries>>(&text)
        .map(Option::unwrap_or_default)
        .map(Some)
        .map_err(|e| ConfigError::Parse { path: path.to_path_buf(), message: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write");
        p
    }

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("idp-testnode-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("mkdir");
        d
    }

    #[test]
    fn config_file_becomes_args_and_dropins_merge() {
        let d = tempdir("cfg");
        let cfg = write(&d, "config.yaml", "node-label: [a=1]\ntoken: x\ncluster-init: true\ntls-san: s1\n");
        std::fs::create_dir_all(d.join("config.yaml.d")).expect("mkdir");
        write(&d.join("config.yaml.d"), "10.yaml", "node-label+: [b=2]\ntoken: second\n");
        let c = ConfigFiles::load(&cfg).expect("loads");
        assert_eq!(c.files.len(), 2);
        assert_eq!(c.to_args(), ["--cluster-init=true", "--node-label=a=1", "--node-label=b=2", "--tls-san=s1", "--token=second"]);
        assert!(c.texts_json()[cfg.display().to_string()].as_str().is_some_and(|t| t.contains("token: x")));
    }

    #[test]
    fn unknown_keys_can_be_dropped() {
        let d = tempdir("cfg3");
        let cfg = write(&d, "config.yaml", "foo: 1\nnode-label: [a=1]\nt: tok\n");
        let mut c = ConfigFiles::load(&cfg).expect("loads");
        assert_eq!(c.to_args(), ["--foo=1", "--node-label=a=1", "-t=tok"]);
        assert_eq!(c.drop_unknown(|k| k != "foo"), ["foo"]);
        assert_eq!(c.to_args(), ["--node-label=a=1", "-t=tok"]);
    }

    #[test]
    fn config_arg_is_found_leniently() {
        let a = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(find_config_arg(&a(&["--bogus", "-c", "/x.yaml"])).as_deref(), Some("/x.yaml"));
        assert_eq!(find_config_arg(&a(&["--config=/y.yaml"])).as_deref(), Some("/y.yaml"));
        assert_eq!(find_config_arg(&a(&["--token", "t"])), None);
    }

    #[test]
    fn missing_config_is_fine_and_garbage_is_not() {
        let d = tempdir("cfg2");
        assert!(ConfigFiles::load(&d.join("nope.yaml")).expect("ok").files.is_empty());
        let bad = write(&d, "bad.yaml", "- just\n- a list\n");
        assert!(ConfigFiles::load(&bad).is_err());
    }

    #[test]
    fn registries_parse_and_reject_bad_yaml() {
        let d = tempdir("reg");
        let good = write(
            &d,
            "r.yaml",
            "mirrors:\n  \"*\":\n    endpoint: [\"http://reg:5000\"]\nconfigs:\n  reg:5000:\n    tls:\n      insecure_skip_verify: true\n",
        );
        let r = load_registries(&good).expect("ok").expect("present");
        assert_eq!(r.mirrors["*"].endpoint, ["http://reg:5000"]);
        assert_eq!(r.configs["reg:5000"].tls.as_ref().and_then(|t| t.insecure_skip_verify), Some(true));
        let bad = write(&d, "bad.yaml", "mirrors: [unclosed\n");
        assert!(load_registries(&bad).is_err());
        let wrong = write(&d, "wrong.yaml", "mirrors: 3\n");
        assert!(load_registries(&wrong).is_err());
        assert!(load_registries(&d.join("absent.yaml")).expect("ok").is_none());
    }
}
