//! What most commands need: the catalogue and the resolved configuration, from the
//! global flags, the config file and the environment.

use crate::cli::Global;
use crate::exit::{Failure, INPUT, IO};
use idp_core::catalogue::Catalogue;
use idp_core::config::Config;
use idp_core::profiles::{self, Inputs};
use std::path::PathBuf;

/// The default configuration file, read when it exists and `--config` is not given.
pub const DEFAULT_CONFIG: &str = "idp-lab.toml";

/// The loaded inputs of a command.
pub struct Context {
    /// The embedded catalogue.
    pub catalogue: Catalogue,
    /// The resolved configuration.
    pub config: Config,
}

/// Reads the configuration file named by `--config` (or ./idp-lab.toml if present).
pub fn read_config_file(global: &Global) -> Result<Option<(String, String)>, Failure> {
    let (path, explicit) = match &global.config {
        Some(p) => (p.clone(), true),
        None => (PathBuf::from(DEFAULT_CONFIG), false),
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            tracing::debug!(path = %path.display(), "reading configuration");
            Ok(Some((path.display().to_string(), text)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Failure::new(INPUT, format!("{}: no such file", path.display()))),
        Err(e) => Err(Failure::new(IO, format!("failed to read {}: {e}", path.display()))),
    }
}

/// The `IDP_LAB_*` environment.
pub fn env() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter(|(k, _)| k.starts_with("IDP_LAB_"))
        .collect()
}

impl Context {
    /// Loads the catalogue and resolves the configuration, with `profile` overriding `--profile`.
    pub fn load(global: &Global, profile: Option<&str>) -> Result<Context, Failure> {
        let catalogue = Catalogue::load()?;
        let file = read_config_file(global)?;
        let inputs = Inputs {
            profile_flag: profile.or(global.profile.as_deref()),
            file: file.as_ref().map(|(n, t)| (n.as_str(), t.as_str())),
            env: env(),
        };
        let config = profiles::resolve(&inputs, &catalogue.chart_components())?;
        Ok(Context { catalogue, config })
    }
}
