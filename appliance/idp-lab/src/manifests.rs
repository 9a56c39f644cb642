//! What `apply` and `diff` share: reading the manifests, finding the cluster, the
//! options of the engine, and the apply cache kept in the state store.

use crate::cli::{Global, InputArgs, TargetArgs};
use crate::context::{Context, home};
use crate::exit::{Failure, INPUT, IO, KUBE, NOT_FOUND, TIMEOUT};
use crate::lab;
use idp_core::objects::{self, Object};
use idp_kube::{ApplyCache, ApplyOptions, Cluster, Inventory, KubeError};
use std::io::Read as _;
use std::path::{Path, PathBuf};

/// The component label of objects applied by `apply -f` outside an apply set.
pub const DEFAULT_COMPONENT: &str = "apply";

/// The manifest files under `path`: the file itself, or a directory's `*.yaml`,
/// `*.yml` and `*.json` files, recursively, in name order.
fn files(path: &Path) -> Result<Vec<PathBuf>, Failure> {
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Failure::new(INPUT, format!("-f {}: no such file or directory", path.display())),
        _ => Failure::new(IO, format!("failed to read {}: {e}", path.display())),
    })?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| Failure::new(IO, format!("failed to read directory {}: {e}", path.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for entry in entries {
        if entry.is_dir() {
            out.extend(files(&entry)?);
        } else if entry.extension().and_then(|e| e.to_str()).is_some_and(|e| matches!(e, "yaml" | "yml" | "json")) {
            out.push(entry);
        }
    }
    Ok(out)
}

/// Reads and loads every input: all problems of all files at once.
pub fn load(args: &InputArgs) -> Result<Vec<Object>, Failure> {
    let mut texts: Vec<(String, String)> = Vec::new();
    for path in &args.files {
        if path.as_os_str() == "-" {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).map_err(|e| Failure::new(IO, format!("failed to read stdin: {e}")))?;
            texts.push(("-".into(), text));
            continue;
        }
        for file in files(path)? {
            let text = std::fs::read_to_string(&file).map_err(|e| Failure::new(IO, format!("failed to read {}: {e}", file.display())))?;
            texts.push((file.display().to_string(), text));
        }
    }
    if texts.is_empty() {
        return Err(Failure::new(INPUT, "no manifests found: -f names no *.yaml, *.yml or *.json file"));
    }
    objects::load_all(texts.iter().map(|(source, text)| (source.as_str(), text.as_str()))).map_err(|e| Failure::new(INPUT, e.to_string()))
}

/// The cluster and the lab name for the labels: `--name LAB`'s own kubeconfig, else
/// `--kubeconfig`, `$KUBECONFIG` or `~/.kube/config`.
pub async fn connect(global: &Global, target: &TargetArgs) -> Result<(Cluster, String), Failure> {
    let (path, lab) = match &target.name {
        Some(name) => {
            let lab = lab::Lab::load(global, &crate::cli::LabArgs { name: Some(name.clone()) })?;
            let path = lab::kubeconfig_path(&lab.dir());
            if !path.exists() {
                return Err(Failure::new(
                    NOT_FOUND,
                    format!("lab {name:?} has no kubeconfig ({} is missing); `idp-lab up --name {name}` makes the lab", path.display()),
                ));
            }
            (path, lab.name)
        }
        None => {
            let path = match &target.kubeconfig {
                Some(path) => path.clone(),
                None => idp_kube::kubeconfig::default_path()
                    .ok_or_else(|| Failure::new(INPUT, "no kubeconfig: give one with --kubeconfig, or a lab with --name"))?,
            };
            (path, Context::load(global, None)?.config.lab.name)
        }
    };
    let text = std::fs::read_to_string(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            Failure::new(INPUT, format!("no kubeconfig at {}; give one with --kubeconfig, or a lab with --name", path.display()))
        }
        _ => Failure::new(IO, format!("failed to read {}: {e}", path.display())),
    })?;
    let cluster = Cluster::from_kubeconfig(&text, target.context.as_deref()).await.map_err(|e| Failure::new(INPUT, e.to_string()))?;
    Ok((cluster, lab))
}

/// The engine's options from the flags.
pub fn options(input: &InputArgs, lab: &str) -> Result<ApplyOptions, Failure> {
    if !is_dns_label(&input.namespace) {
        return Err(Failure::new(
            INPUT,
            format!("-n {:?}: expected a namespace name (lowercase letters, digits and '-', at most 63)", input.namespace),
        ));
    }
    let component = input.inventory.as_deref().unwrap_or(DEFAULT_COMPONENT);
    let mut options = ApplyOptions::new(lab, component);
    options.namespace.clone_from(&input.namespace);
    options.concurrency = usize::from(input.concurrency);
    if let Some(name) = &input.inventory {
        if !is_dns_label(name) {
            return Err(Failure::new(
                INPUT,
                format!("--inventory {name:?}: expected a name of lowercase letters, digits and '-', at most 63"),
            ));
        }
        options.inventory = Some(Inventory { name: name.clone(), namespace: input.namespace.clone() });
    }
    Ok(options)
}

fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// The file of `server`'s apply cache: `<home>/cache/apply/<server as a file name>.json`.
/// It is a cache, not state: losing it only costs requests, so it is a plain file
/// written by rename, not a record of the state store (whose blobs made reading and
/// writing 500 entries cost more than the no-op apply itself).
fn cache_file(server: &str) -> Option<PathBuf> {
    let name: String = server.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' { c } else { '-' }).collect();
    home().ok().map(|home| home.join("cache").join("apply").join(format!("{name}.json")))
}

/// The cache of `server`; empty when there is none or it cannot be read (it only saves
/// requests, so a problem with it is a warning, never a failure).
pub fn read_cache(server: &str) -> ApplyCache {
    let Some(path) = cache_file(server) else { return ApplyCache::default() };
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return ApplyCache::default(),
        Err(e) => {
            tracing::warn!("the apply cache {} cannot be read, so every object is sent: {e}", path.display());
            return ApplyCache::default();
        }
    };
    serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        tracing::warn!("the apply cache {} is damaged, so every object is sent (it is rewritten): {e}", path.display());
        ApplyCache::default()
    })
}

/// Keeps the cache of `server` for the next run, unless it is what was read.
pub fn save_cache(server: &str, read: &ApplyCache, cache: &ApplyCache) {
    if read == cache {
        return;
    }
    let Some(path) = cache_file(server) else { return };
    let written = (|| -> std::io::Result<()> {
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let tmp = path.with_extension(format!("json.{}", std::process::id()));
        std::fs::write(&tmp, serde_json::to_vec(cache).map_err(std::io::Error::other)?)?;
        std::fs::rename(&tmp, &path)
    })();
    if let Err(e) = written {
        tracing::warn!("the apply cache {} cannot be saved, so the next run sends every object: {e}", path.display());
    }
}

/// An engine error as a failure with its exit code.
pub fn failure(e: KubeError) -> Failure {
    let code = match &e {
        KubeError::Input { .. } | KubeError::NotOurs { .. } | KubeError::Refused { .. } => INPUT,
        KubeError::NotServed { dry_run: false, .. } => TIMEOUT,
        KubeError::NotServed { .. } => INPUT,
        KubeError::NotReadyInTime { .. } | KubeError::Failed { .. } => TIMEOUT,
        _ => KUBE,
    };
    Failure::new(code, e.to_string())
}
