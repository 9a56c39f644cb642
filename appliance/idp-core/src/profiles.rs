//! Embedded profiles and the whole configuration pipeline:
//! built-in defaults ← profile ← config file ← environment ← flags.

use crate::assets::{self, Profiles};
use crate::config::{self, Config, ConfigError, FileKind, Layer, ParsedProfile};
use crate::diag::{Diagnostic, Origin, did_you_mean};
use serde_json::{Value, json};

/// The profile used when nothing selects one.
pub const DEFAULT_PROFILE: &str = "standard";

/// An embedded profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// Its name (the file name without `.toml`).
    pub name: String,
    /// Its description.
    pub description: String,
    /// The values it sets.
    pub layer: Layer,
}

/// Names of the embedded profiles, sorted.
pub fn names() -> Vec<String> {
    assets::paths::<Profiles>().iter().filter_map(|p| p.strip_suffix(".toml")).map(str::to_owned).collect()
}

/// Loads and validates one embedded profile.
pub fn load(name: &str, components: &[&str]) -> Result<Option<Profile>, ConfigError> {
    let file = format!("{name}.toml");
    let Some(text) = assets::text::<Profiles>(&file) else {
        return Ok(None);
    };
    let ParsedProfile { layer, description } = config::parse_file(&text, &format!("profiles/{file}"), FileKind::Profile, components)?;
    Ok(Some(Profile { name: name.to_owned(), description: description.unwrap_or_default(), layer }))
}

/// What the user gave: a profile flag, a config file, the environment.
#[derive(Debug, Clone, Default)]
pub struct Inputs<'a> {
    /// `--profile`.
    pub profile_flag: Option<&'a str>,
    /// `--config FILE`: the name to show and its text.
    pub file: Option<(&'a str, &'a str)>,
    /// The process environment (only `IDP_LAB_*` variables are read).
    pub env: Vec<(String, String)>,
}

/// Resolves the configuration from all inputs; every problem is reported at once.
pub fn resolve(inputs: &Inputs<'_>, components: &[&str]) -> Result<Config, ConfigError> {
    let mut diagnostics = Vec::new();
    let file_layer = match inputs.file {
        Some((name, text)) => match config::parse_file(text, name, FileKind::Config, components) {
            Ok(p) => Some(p.layer),
            Err(e) => {
                diagnostics.extend(e.diagnostics);
                None
            }
        },
        None => None,
    };
    let env_layer = match config::env_layer(inputs.env.iter().map(|(k, v)| (k, v)), components) {
        Ok(l) => Some(l),
        Err(e) => {
            diagnostics.extend(e.diagnostics);
            None
        }
    };
    // The profile: flag, then environment, then file, then the default.
    let from = |layer: &Option<Layer>| layer.as_ref().and_then(|l| l.get("lab.profile")).and_then(Value::as_str).map(str::to_owned);
    let (name, origin) = match (inputs.profile_flag, from(&env_layer), from(&file_layer)) {
        (Some(flag), _, _) => (flag.to_owned(), Origin::Flag("--profile".into())),
        (None, Some(env), _) => (env, Origin::Env("IDP_LAB_LAB_PROFILE".into())),
        (None, None, Some(file)) => (file, Origin::File(inputs.file.map(|f| f.0).unwrap_or_default().to_owned())),
        (None, None, None) => (DEFAULT_PROFILE.to_owned(), Origin::Flag("--profile".into())),
    };
    let profile = match load(&name, components) {
        Ok(Some(p)) => Some(p),
        Ok(None) => {
            let all = names();
            let hint = did_you_mean(&name, all.iter().map(String::as_str))
                .map(|n| format!("did you mean \"{n}\"?"))
                .unwrap_or_else(|| format!("profiles are {}", all.join(", ")));
            diagnostics.push(Diagnostic {
                origin,
                line: 1,
                column: 1,
                path: "lab.profile".into(),
                message: format!("no profile named \"{name}\""),
                hint: Some(hint),
            });
            None
        }
        Err(e) => {
            diagnostics.extend(e.diagnostics);
            None
        }
    };
    if !diagnostics.is_empty() {
        return Err(ConfigError { diagnostics });
    }
    let defaults = config::defaults();
    let mut chosen = Layer::new(Origin::Flag("--profile".into()));
    chosen.set_flag("lab.profile", json!(name));
    let mut layers: Vec<&Layer> = vec![&defaults];
    if let Some(p) = &profile {
        layers.push(&p.layer);
    }
    layers.extend(file_layer.as_ref());
    layers.extend(env_layer.as_ref());
    layers.push(&chosen);
    config::resolve(&layers)
}
