//! Seeding: the KV v2 engine at `secret/` and every value of the seeding table
//! ([`idp_core::secrets::SEEDS`]), written once and never regenerated.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use idp_core::secrets::{BCRYPT_COST, Fallback, KV_MOUNT, RANDOM_BYTES, Seed, Source, seed_paths, table_problems};
use serde_json::{Value, json};

use crate::client::{KvSecret, Vault};
use crate::error::VaultError;

/// How long a freshly mounted KV v2 engine may answer "upgrading" before writes work.
const MOUNT_SETTLE: Duration = Duration::from_secs(20);

/// What happened to one seeded value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeedAction {
    /// It existed and was left as it was.
    Kept,
    /// Generated now from Vault's random bytes.
    Generated,
    /// Written now from the caller's input.
    Given,
    /// Written now from a fixed value of the table.
    Fixed,
    /// Hashed now from its plaintext (it was missing).
    Hashed,
    /// Hashed again: the stored hash did not match its plaintext (the original's bug 1:
    /// two independent random values).
    Rehashed,
}

/// One value of a [`SeedReport`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seeded {
    /// The KV path under `secret/`, e.g. `argocd/admin`.
    pub path: &'static str,
    /// The key.
    pub key: &'static str,
    /// What happened to it.
    pub action: SeedAction,
}

/// What [`seed`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SeedReport {
    /// Whether the KV v2 engine was mounted at `secret/` now.
    pub mounted: bool,
    /// Every value of the table, in table order.
    pub values: Vec<Seeded>,
}

impl SeedReport {
    /// How many values were written (everything but [`SeedAction::Kept`]).
    pub fn written(&self) -> usize {
        self.values.iter().filter(|v| v.action != SeedAction::Kept).count()
    }

    /// Whether nothing changed: no mount, no value written.
    pub fn is_noop(&self) -> bool {
        !self.mounted && self.written() == 0
    }
}

/// Seeds `seeds` (normally [`idp_core::secrets::SEEDS`]) into the KV v2 engine at
/// `secret/`, mounting it first when missing. `vault` needs a token that may mount
/// engines and write the paths (the root token).
///
/// A value that exists is never replaced: a rerun writes nothing. A missing value comes
/// from its [`Source`]: Vault's random bytes (`sys/tools/random/32`), a fixed value, or
/// `inputs[name]` when the input is given and not blank. A bcrypt hash follows its
/// plaintext: written when missing, rewritten when it does not verify against the
/// stored plaintext. Writes use check-and-set (create, or `PATCH` of the version
/// read), so a concurrent writer fails the run instead of being overwritten; every
/// written path is read back and compared.
///
/// An input that no seed names is [`VaultError::Invalid`] (a typo would otherwise be
/// ignored), as is a table with [`table_problems`].
pub async fn seed(vault: &Vault, seeds: &[Seed], inputs: &BTreeMap<String, String>) -> Result<SeedReport, VaultError> {
    let problems = table_problems(seeds);
    if !problems.is_empty() {
        return Err(VaultError::Invalid { what: "the seeding table".into(), problem: problems.join("; ") });
    }
    let known: BTreeSet<&str> = seeds
        .iter()
        .filter_map(|s| match s.source {
            Source::Input { input, .. } => Some(input),
            _ => None,
        })
        .collect();
    let unknown: Vec<&str> = inputs.keys().map(String::as_str).filter(|name| !known.contains(name)).collect();
    if !unknown.is_empty() {
        return Err(VaultError::Invalid {
            what: "the seeding inputs".into(),
            problem: format!("no seed takes {} (known: {})", unknown.join(", "), known.into_iter().collect::<Vec<_>>().join(", ")),
        });
    }

    let mut report = SeedReport { mounted: mount_kv2(vault).await?, values: Vec::new() };
    for path in seed_paths(seeds) {
        let existing = read_settled(vault, path).await?;
        let mut values = existing.as_ref().map(|s| s.data.clone()).unwrap_or_default();
        let mut writes: BTreeMap<String, String> = BTreeMap::new();
        for s in seeds.iter().filter(|s| s.path == path) {
            let (value, action) = resolve(vault, s, &values, inputs).await?;
            if action != SeedAction::Kept {
                writes.insert(s.key.to_owned(), value.clone());
                tracing::info!(path = %format!("{KV_MOUNT}/{path}"), key = s.key, ?action, "seeded");
            }
            values.insert(s.key.to_owned(), value);
            report.values.push(Seeded { path: s.path, key: s.key, action });
        }
        if writes.is_empty() {
            continue;
        }
        let cas = existing.as_ref().map_or(0, |s| s.version);
        let data = if cas == 0 { &values } else { &writes };
        vault.kv_write(KV_MOUNT, path, data, cas).await?;
        verify(vault, path, &values).await?;
    }
    Ok(report)
}

/// Mounts KV version 2 at `secret/` unless it is there; whether it mounted it. A mount
/// of another kind or version there is [`VaultError::Invalid`].
async fn mount_kv2(vault: &Vault) -> Result<bool, VaultError> {
    let mount = format!("{KV_MOUNT}/");
    let mounts = vault.read("list the secrets engines", "sys/mounts").await?.unwrap_or(Value::Null);
    // Vault answers with the mounts both at the top level and under `data`.
    let existing = mounts.get("data").and_then(|d| d.get(&mount)).or_else(|| mounts.get(&mount));
    if let Some(existing) = existing {
        let kind = existing.get("type").and_then(Value::as_str).unwrap_or_default();
        let version = existing.pointer("/options/version").and_then(Value::as_str).unwrap_or("1");
        if kind == "kv" && version == "2" {
            return Ok(false);
        }
        return Err(VaultError::Invalid {
            what: format!("the secrets engine at {mount} of Vault at {}", vault.endpoint()),
            problem: format!("it is {kind} version {version}, not kv version 2; the platform's SecretStores read kv v2"),
        });
    }
    let body = json!({ "type": "kv", "description": "idp-lab platform secrets", "options": { "version": "2" } });
    vault.write("mount the KV v2 engine", &format!("sys/mounts/{KV_MOUNT}"), body).await?;
    tracing::info!(mount = %mount, "mounted KV v2");
    Ok(true)
}

/// Reads `path`; right after mounting, the engine is still "upgrading from
/// non-versioned to versioned data" and refuses for a moment, which is waited out.
async fn read_settled(vault: &Vault, path: &str) -> Result<Option<KvSecret>, VaultError> {
    let started = std::time::Instant::now();
    loop {
        match vault.kv_read(KV_MOUNT, path).await {
            Err(VaultError::Api { ref errors, .. })
                if started.elapsed() < MOUNT_SETTLE && errors.iter().any(|e| e.to_lowercase().contains("upgrading")) =>
            {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            other => return other,
        }
    }
}

/// The value of seed `s` given the values of its path so far, and what that is.
async fn resolve(
    vault: &Vault,
    s: &Seed,
    values: &BTreeMap<String, String>,
    inputs: &BTreeMap<String, String>,
) -> Result<(String, SeedAction), VaultError> {
    let existing = values.get(s.key);
    if let Source::Bcrypt { of } = s.source {
        return bcrypt_of(s, values.get(of), existing);
    }
    if let Some(value) = existing {
        return Ok((value.clone(), SeedAction::Kept));
    }
    let fallback = match s.source {
        Source::Random(encoding) => Fallback::Random(encoding),
        Source::Fixed(value) => Fallback::Fixed(value),
        Source::Input { input, otherwise } => match inputs.get(input).filter(|v| !v.trim().is_empty()) {
            Some(given) => return Ok((given.clone(), SeedAction::Given)),
            None => otherwise,
        },
        Source::Bcrypt { of } => return bcrypt_of(s, values.get(of), existing),
    };
    Ok(match fallback {
        Fallback::Random(encoding) => (vault.random(RANDOM_BYTES, encoding).await?, SeedAction::Generated),
        Fallback::Fixed(value) => (value.to_owned(), SeedAction::Fixed),
    })
}

/// The bcrypt hash of `plaintext` for seed `s`: the `existing` one when it verifies,
/// else a new one. ([`table_problems`] guarantees the plaintext came earlier in the
/// path, so it is there.)
fn bcrypt_of(s: &Seed, plaintext: Option<&String>, existing: Option<&String>) -> Result<(String, SeedAction), VaultError> {
    let plaintext = plaintext.map(String::as_str).unwrap_or_default();
    if let Some(hash) = existing
        && bcrypt::verify(plaintext, hash).unwrap_or(false)
    {
        return Ok((hash.clone(), SeedAction::Kept));
    }
    let hashed = bcrypt::hash(plaintext, BCRYPT_COST).map_err(|source| VaultError::Bcrypt {
        path: format!("{KV_MOUNT}/{}", s.path),
        key: s.key.to_owned(),
        source,
    })?;
    Ok((hashed, if existing.is_some() { SeedAction::Rehashed } else { SeedAction::Hashed }))
}

/// Reads `path` back and checks it holds `values`.
async fn verify(vault: &Vault, path: &str, values: &BTreeMap<String, String>) -> Result<(), VaultError> {
    let read = vault.kv_read(KV_MOUNT, path).await?.map(|s| s.data).unwrap_or_default();
    for (key, value) in values {
        let found = match read.get(key) {
            None => "nothing",
            Some(v) if v != value => "another value",
            Some(_) => continue,
        };
        return Err(VaultError::ReadBack {
            endpoint: vault.endpoint().to_owned(),
            path: format!("{KV_MOUNT}/{path}"),
            key: key.clone(),
            found,
        });
    }
    Ok(())
}
