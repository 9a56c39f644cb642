//! The state plane: a sled store per lab under the idp-lab home, holding versioned
//! records.
//!
//! sled locks a database exclusively, so nothing keeps a store open: every operation
//! opens it, does its work and closes it, retrying briefly while another process holds
//! it. `status` can therefore read while `up` runs, and two labs never share a lock.

use serde::{Deserialize, Serialize, de::DeserializeOwned};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The environment variable that overrides the idp-lab home.
pub const HOME_ENV: &str = "IDP_LAB_HOME";

/// How long an operation waits for another process to release a lab's store.
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// Errors of the state plane.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// No home directory could be determined.
    #[error("failed to find a data directory for idp-lab; set {HOME_ENV}")]
    NoHome,
    /// The store could not be opened or used.
    #[error("failed to use the state store at {path}: {source}")]
    Store {
        /// The store's folder.
        path: PathBuf,
        /// What sled said.
        #[source]
        source: sled::Error,
    },
    /// Another process kept the store locked for too long.
    #[error("the state store at {path} stayed locked by another idp-lab process for {}s", LOCK_WAIT.as_secs())]
    Locked {
        /// The store's folder.
        path: PathBuf,
    },
    /// A record was written by a newer idp-lab.
    #[error(
        "record {key} in {path} has schema version {found}, newer than the {supported} this idp-lab understands; upgrade idp-lab (or remove the lab with a newer one)"
    )]
    NewerSchema {
        /// The store's folder.
        path: PathBuf,
        /// The record key.
        key: String,
        /// The version found.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },
    /// A record does not decode.
    #[error("record {key} in {path} is damaged: {message}; it is a cache of the live lab and can be removed")]
    Damaged {
        /// The store's folder.
        path: PathBuf,
        /// The record key.
        key: String,
        /// The decoding error.
        message: String,
    },
}

/// A record type kept in the store.
pub trait Record: Serialize + DeserializeOwned {
    /// The key prefix of this record type, e.g. `lab`.
    const KIND: &'static str;
    /// The schema version this build writes and the newest it reads.
    const SCHEMA_VERSION: u32;
}

/// What is stored: the record with its kind and schema version.
#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    kind: String,
    schema_version: u32,
    data: serde_json::Value,
}

/// The idp-lab home: `$IDP_LAB_HOME`, else the XDG data directory (`~/.local/share/idp-lab`).
pub fn home_from_env(value: Option<&std::ffi::OsStr>) -> Result<PathBuf, StateError> {
    if let Some(v) = value.filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(v));
    }
    directories::ProjectDirs::from("dev", "idp-lab", "idp-lab").map(|d| d.data_dir().to_path_buf()).ok_or(StateError::NoHome)
}

/// The state store of one lab.
#[derive(Debug, Clone)]
pub struct StateStore {
    path: PathBuf,
}

impl StateStore {
    /// The store of lab `lab` under `home` (`<home>/labs/<lab>/state`); nothing is opened yet.
    pub fn for_lab(home: &Path, lab: &str) -> StateStore {
        StateStore { path: home.join("labs").join(lab).join("state") }
    }

    /// The store of the lab whose state directory is `lab_dir` (`<lab_dir>/state`; the
    /// daemon knows its lab by that directory).
    pub fn in_lab_dir(lab_dir: &Path) -> StateStore {
        StateStore { path: lab_dir.join("state") }
    }

    /// The store's folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The lab's state directory, where files beside the store live (token, kubeconfig,
    /// logs, the CA).
    pub fn lab_dir(&self) -> &Path {
        self.path.parent().unwrap_or(&self.path)
    }

    /// Opens the store for the length of `f`, waiting while another process holds it.
    fn with_db<T>(&self, f: impl FnOnce(&sled::Db) -> Result<T, StateError>) -> Result<T, StateError> {
        let started = Instant::now();
        let db = loop {
            match sled::Config::new().path(&self.path).mode(sled::Mode::LowSpace).open() {
                Ok(db) => break db,
                Err(sled::Error::Io(e)) if is_lock_contention(&e) => {
                    if started.elapsed() > LOCK_WAIT {
                        return Err(StateError::Locked { path: self.path.clone() });
                    }
                    std::thread::sleep(Duration::from_millis(25));
                }
                Err(source) => {
                    return Err(StateError::Store { path: self.path.clone(), source });
                }
            }
        };
        // Vault's keys live here: the store is the owner's alone, whatever the umask.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let _ = std::fs::set_permissions(&self.path, std::fs::Permissions::from_mode(0o700));
        }
        let out = f(&db)?;
        db.flush().map_err(|source| StateError::Store { path: self.path.clone(), source })?;
        Ok(out)
    }

    fn key<R: Record>(name: &str) -> String {
        format!("{}/{name}", R::KIND)
    }

    /// Writes a record under `name`.
    pub fn put<R: Record>(&self, name: &str, record: &R) -> Result<(), StateError> {
        let key = Self::key::<R>(name);
        let envelope = Envelope {
            kind: R::KIND.to_owned(),
            schema_version: R::SCHEMA_VERSION,
            data: serde_json::to_value(record).map_err(|e| self.damaged(&key, e))?,
        };
        let bytes = serde_json::to_vec(&envelope).map_err(|e| self.damaged(&key, e))?;
        self.with_db(|db| {
            db.insert(key.as_bytes(), bytes).map(drop).map_err(|source| StateError::Store { path: self.path.clone(), source })
        })
    }

    /// Reads the record under `name`, if there is one.
    pub fn get<R: Record>(&self, name: &str) -> Result<Option<R>, StateError> {
        let key = Self::key::<R>(name);
        if !self.path.exists() {
            return Ok(None);
        }
        let raw = self.with_db(|db| db.get(key.as_bytes()).map_err(|source| StateError::Store { path: self.path.clone(), source }))?;
        raw.map(|bytes| self.decode::<R>(&key, &bytes)).transpose()
    }

    /// Removes the record under `name`.
    pub fn delete<R: Record>(&self, name: &str) -> Result<(), StateError> {
        let key = Self::key::<R>(name);
        if !self.path.exists() {
            return Ok(());
        }
        self.with_db(|db| db.remove(key.as_bytes()).map(drop).map_err(|source| StateError::Store { path: self.path.clone(), source }))
    }

    /// All records of one type, by name.
    pub fn list<R: Record>(&self) -> Result<Vec<(String, R)>, StateError> {
        if !self.path.exists() {
            return Ok(Vec::new());
        }
        let prefix = format!("{}/", R::KIND);
        let raw: Vec<(Vec<u8>, Vec<u8>)> = self.with_db(|db| {
            db.scan_prefix(prefix.as_bytes())
                .map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())))
                .collect::<Result<_, _>>()
                .map_err(|source| StateError::Store { path: self.path.clone(), source })
        })?;
        raw.into_iter()
            .map(|(k, v)| {
                let key = String::from_utf8_lossy(&k).into_owned();
                let record = self.decode::<R>(&key, &v)?;
                Ok((key[prefix.len()..].to_owned(), record))
            })
            .collect()
    }

    /// Removes the whole store of this lab (what `down` leaves behind: nothing).
    pub fn destroy(&self) -> Result<(), StateError> {
        let Some(lab_dir) = self.path.parent() else {
            return Ok(());
        };
        match std::fs::remove_dir_all(lab_dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StateError::Store { path: self.path.clone(), source: sled::Error::Io(e) }),
        }
    }

    fn decode<R: Record>(&self, key: &str, bytes: &[u8]) -> Result<R, StateError> {
        let envelope: Envelope = serde_json::from_slice(bytes).map_err(|e| self.damaged(key, e))?;
        if envelope.schema_version > R::SCHEMA_VERSION {
            return Err(StateError::NewerSchema {
                path: self.path.clone(),
                key: key.to_owned(),
                found: envelope.schema_version,
                supported: R::SCHEMA_VERSION,
            });
        }
        serde_json::from_value(envelope.data).map_err(|e| self.damaged(key, e))
    }

    fn damaged(&self, key: &str, e: impl std::fmt::Display) -> StateError {
        StateError::Damaged { path: self.path.clone(), key: key.to_owned(), message: e.to_string() }
    }
}

/// Whether sled failed to open because another handle holds the lock (sled wraps the
/// `WouldBlock` from `flock` in an error of its own).
fn is_lock_contention(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::WouldBlock || e.to_string().contains("could not acquire lock")
}

/// What idp-lab remembers about a lab between runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabRecord {
    /// The profile it was brought up with.
    pub profile: String,
    /// The resolved configuration, as JSON.
    pub config: serde_json::Value,
    /// The idp-lab version that last wrote it.
    pub written_by: String,
    /// The host ports chosen at the first `up`, pinned for the lab's life (schema 2).
    #[serde(default)]
    pub ports: Option<idp_core::settings::Ports>,
    /// The cluster plan of the last `up`, to name what a changed configuration changes
    /// (schema 2).
    #[serde(default)]
    pub plan: Option<idp_core::cluster::ClusterPlan>,
}

impl Record for LabRecord {
    const KIND: &'static str = "lab";
    const SCHEMA_VERSION: u32 = 2;
}

/// The key of a lab's one [`LabRecord`].
pub const LAB_RECORD: &str = "current";

/// The lab's Vault keys (`up` keeps them here, beside Secret `vault-system/vault-init-keys`;
/// the daemon's unseal action reads them). The store's folder is the owner's alone (0700).
impl Record for idp_core::secrets::VaultKeys {
    const KIND: &'static str = "vault-keys";
    const SCHEMA_VERSION: u32 = 1;
}

/// The key of a lab's one [`idp_core::secrets::VaultKeys`] record.
pub const VAULT_KEYS_RECORD: &str = "current";

/// Every lab under `home` that has a state directory, by name.
pub fn lab_names(home: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(home.join("labs"))
        .map(|dir| dir.filter_map(|e| e.ok()).filter(|e| e.path().is_dir()).filter_map(|e| e.file_name().into_string().ok()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> LabRecord {
        LabRecord {
            profile: "standard".into(),
            config: serde_json::json!({"lab": {"name": "demo"}}),
            written_by: "0.1.0".into(),
            ports: None,
            plan: None,
        }
    }

    #[test]
    fn round_trips_records_and_lists_them() {
        let home = tempfile::tempdir().expect("tempdir");
        let store = StateStore::for_lab(home.path(), "demo");
        assert_eq!(store.get::<LabRecord>("current").expect("read"), None, "absent store reads as empty");
        store.put("current", &record()).expect("write");
        assert_eq!(store.get::<LabRecord>("current").expect("read"), Some(record()));
        assert_eq!(store.list::<LabRecord>().expect("list").len(), 1);
        store.delete::<LabRecord>("current").expect("delete");
        assert_eq!(store.get::<LabRecord>("current").expect("read"), None);
        store.destroy().expect("destroy");
        assert!(!home.path().join("labs/demo").exists());
    }

    #[test]
    fn keeps_vault_keys_in_a_store_only_its_owner_reads() {
        use std::os::unix::fs::PermissionsExt as _;
        let home = tempfile::tempdir().expect("tempdir");
        let store = StateStore::for_lab(home.path(), "demo");
        let keys = idp_core::secrets::VaultKeys { unseal_key: "ab12".into(), root_token: "s.root".into() };
        store.put(VAULT_KEYS_RECORD, &keys).expect("write");
        assert_eq!(StateStore::in_lab_dir(&home.path().join("labs/demo")).path(), store.path(), "the daemon finds the same store");
        assert_eq!(store.get::<idp_core::secrets::VaultKeys>(VAULT_KEYS_RECORD).expect("read"), Some(keys));
        assert_eq!(store.get::<LabRecord>(VAULT_KEYS_RECORD).expect("read"), None, "another kind does not see the keys");
        let mode = std::fs::metadata(store.path()).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "the store holds Vault's keys: group and others may not enter it");
    }

    #[test]
    fn refuses_records_from_a_newer_schema() {
        #[derive(Serialize, Deserialize)]
        struct Future(u8);
        impl Record for Future {
            const KIND: &'static str = "lab";
            const SCHEMA_VERSION: u32 = 99;
        }
        let home = tempfile::tempdir().expect("tempdir");
        let store = StateStore::for_lab(home.path(), "demo");
        store.put("current", &Future(1)).expect("write");
        let err = store.get::<LabRecord>("current").expect_err("newer schema");
        assert!(matches!(err, StateError::NewerSchema { found: 99, supported: 2, .. }), "{err}");
        assert!(err.to_string().contains("upgrade idp-lab"));
    }

    #[test]
    fn labs_do_not_block_each_other_and_readers_wait_for_writers() {
        let home = tempfile::tempdir().expect("tempdir");
        let a = StateStore::for_lab(home.path(), "a");
        let b = StateStore::for_lab(home.path(), "b");
        a.put("current", &record()).expect("write a");
        // Hold a's store open in this thread while another lab and a reader work.
        a.with_db(|_| {
            b.put("current", &record()).expect("b is independent of a");
            let reader = {
                let a = a.clone();
                std::thread::spawn(move || a.get::<LabRecord>("current"))
            };
            std::thread::sleep(Duration::from_millis(200));
            Ok(reader)
        })
        .expect("hold a")
        .join()
        .expect("reader thread")
        .expect("the reader got the store once it was released");
    }

    #[test]
    fn reads_schema_1_records_and_lists_labs() {
        #[derive(Serialize, Deserialize)]
        struct V1 {
            profile: String,
            config: serde_json::Value,
            written_by: String,
        }
        impl Record for V1 {
            const KIND: &'static str = "lab";
            const SCHEMA_VERSION: u32 = 1;
        }
        let home = tempfile::tempdir().expect("tempdir");
        let store = StateStore::for_lab(home.path(), "old");
        store.put(LAB_RECORD, &V1 { profile: "minimal".into(), config: serde_json::json!({}), written_by: "0.1.0".into() }).expect("write");
        let read = store.get::<LabRecord>(LAB_RECORD).expect("a v1 record reads").expect("present");
        assert_eq!((read.profile.as_str(), read.ports, read.plan), ("minimal", None, None));
        StateStore::for_lab(home.path(), "b-lab").put(LAB_RECORD, &record()).expect("write");
        assert_eq!(lab_names(home.path()), ["b-lab", "old"]);
        assert!(store.lab_dir().ends_with("labs/old"));
    }

    #[test]
    fn home_prefers_the_environment() {
        assert_eq!(home_from_env(Some(std::ffi::OsStr::new("/tmp/x"))).expect("home"), PathBuf::from("/tmp/x"));
        assert!(home_from_env(None).is_ok() || std::env::var_os("HOME").is_none());
    }
}
