//! What most commands need: the catalogue and the resolved configuration, from the
//! global flags, the config file and the environment.

use crate::cli::Global;
use crate::exit::{Failure, INPUT, IO, PORT, STATE};
use idp_core::catalogue::Catalogue;
use idp_core::config::Config;
use idp_core::profiles::{self, Inputs};
use idp_core::settings::{self, Probes, Settings, SettingsError};
use idp_state::{LAB_RECORD, LabRecord, StateStore};
use std::collections::BTreeSet;
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

/// The idp-lab home (`$IDP_LAB_HOME`, else the XDG data directory).
pub fn home() -> Result<PathBuf, Failure> {
    idp_state::home_from_env(std::env::var_os(idp_state::HOME_ENV).as_deref()).map_err(|e| Failure::new(STATE, e.to_string()))
}

/// The state store of `lab`.
pub fn store(lab: &str) -> Result<StateStore, Failure> {
    Ok(StateStore::for_lab(&home()?, lab))
}

/// The record of `lab`, if it was ever brought up.
pub fn lab_record(lab: &str) -> Result<Option<LabRecord>, Failure> {
    store(lab)?.get::<LabRecord>(LAB_RECORD).map_err(state_failure)
}

/// A state-plane error as a failure.
pub fn state_failure(e: idp_state::StateError) -> Failure {
    Failure::new(STATE, e.to_string())
}

impl Context {
    /// Resolves the settings: what this lab pinned at its first `up` wins; otherwise the
    /// host is probed for free ports, skipping the ports every other lab pinned.
    pub fn settings(&self) -> Result<Settings, Failure> {
        let network = &self.config.network;
        let lab = &self.config.lab.name;
        let pinned = lab_record(lab)?.and_then(|r| r.ports);
        let mut reserved = BTreeSet::new();
        let home = home()?;
        for other in idp_state::lab_names(&home).into_iter().filter(|n| n != lab) {
            if let Ok(Some(record)) = StateStore::for_lab(&home, &other).get::<LabRecord>(LAB_RECORD)
                && let Some(ports) = record.ports
            {
                reserved.extend(ports.all());
            }
        }
        let candidates = settings::port_candidates(&self.config, pinned.as_ref());
        let probes = Probes {
            // Workshop mode serves the registry on the LAN address too.
            lan_ip: if network.needs_lan_ip() || self.config.registry.serve_lan { idp_host::net::detect_lan_ip() } else { None },
            busy: idp_host::net::busy_ports(&candidates),
            pinned,
            reserved,
        };
        settings::resolve(&self.config, &probes).map_err(|e| match e {
            SettingsError::NoFreePort { .. } => Failure::new(PORT, e.to_string()),
            SettingsError::NoLanIp | SettingsError::BadImage(_) => Failure::new(INPUT, e.to_string()),
            SettingsError::Unparsed { .. } => Failure::new(crate::exit::INTERNAL, e.to_string()),
        })
    }
}
