//! Putting a lab's CA into the host's trust stores, and taking it out again
//! (`idp-lab trust install|uninstall|status`).
//!
//! Every path is taken under a root directory: `/` in production, a temporary directory
//! in tests, so that a test never touches the machine's own trust stores. The tools
//! themselves (`update-ca-certificates`, `certutil`, ...) are the host's; they are told
//! where the stores are.
//!
//! The stores:
//!
//! - **Debian/Ubuntu** ([`Store::Debian`]): the CA is written to
//!   `<root>/usr/local/share/ca-certificates/<name>.crt` and `update-ca-certificates`
//!   regenerates `<root>/etc/ssl/certs/ca-certificates.crt` (the bundle OpenSSL, curl and
//!   most tools read) with every one of its directories under the root. Verified by the
//!   tests.
//! - **Fedora/RHEL** ([`Store::Fedora`]): an anchor in
//!   `<root>/etc/pki/ca-trust/source/anchors/<name>.pem`, then `update-ca-trust extract`.
//!   UNVERIFIED: the command lines are tested as data only.
//! - **macOS** ([`Store::MacOs`]): `security add-trusted-cert -d -r trustRoot -k
//!   <root>/Library/Keychains/System.keychain`. UNVERIFIED: the command lines are tested as
//!   data only.
//! - **NSS** ([`Store::Nss`], Chromium's `~/.pki/nssdb` and Firefox's profiles): `certutil
//!   -A -t C,,` in every database found under the given home directories. Verified by the
//!   tests.
//!
//! Installing twice, or uninstalling a CA that is not there, changes nothing and succeeds.

use std::ffi::OsString;
use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};

/// The Debian tool that regenerates the bundle.
const DEBIAN_TOOL: &str = "update-ca-certificates";
/// The Fedora/RHEL tool that extracts the consolidated trust.
const FEDORA_TOOL: &str = "update-ca-trust";
/// The macOS keychain tool.
const MACOS_TOOL: &str = "security";
/// The NSS database tool (Debian package `libnss3-tools`).
const NSS_TOOL: &str = "certutil";
/// The NSS trust flags for a CA trusted to issue TLS server certificates.
const NSS_TRUST: &str = "C,,";

/// Installs the CA `cert_pem` (one PEM certificate) as `name` (e.g. `idp-lab-demo`) in
/// every trust store found under `root`, with the NSS databases of the invoking user
/// (see [`Target::new`]). A store that holds it already is left alone.
pub fn install(root: &Path, name: &str, cert_pem: &str) -> Result<Installed, TrustError> {
    Target::new(root).install(name, cert_pem)
}

/// Removes the CA installed as `name` from every trust store found under `root` (see
/// [`Target::new`]). A store that does not hold it is left alone.
pub fn uninstall(root: &Path, name: &str) -> Result<Removed, TrustError> {
    Target::new(root).uninstall(name)
}

/// Whether each trust store found under `root` trusts `cert_pem` as `name` (see
/// [`Target::new`]).
pub fn status(root: &Path, name: &str, cert_pem: &str) -> Status {
    Target::new(root).status(name, cert_pem)
}

/// Where the trust stores are: a root directory, the home directories whose NSS
/// databases count, and the directories the tools are looked for in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    root: PathBuf,
    homes: Vec<PathBuf>,
    tool_dirs: Vec<PathBuf>,
}

impl Target {
    /// The stores under `root`, with the home directories of the invoking user: `$HOME`
    /// and, under `sudo`, the home of `$SUDO_USER` from `<root>/etc/passwd` (sudo may
    /// reset `HOME` to root's). Tools are looked for in `$PATH` and the `sbin`
    /// directories (a user's `PATH` often lacks them).
    pub fn new(root: &Path) -> Self {
        let mut homes = Vec::new();
        if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
            homes.push(PathBuf::from(home));
        }
        if let Some(user) = std::env::var("SUDO_USER").ok().filter(|u| !u.is_empty() && u != "root") {
            let passwd = std::fs::read_to_string(under(root, Path::new("/etc/passwd"))).unwrap_or_default();
            homes.extend(passwd_home(&passwd, &user));
        }
        homes.dedup();
        let mut tool_dirs: Vec<PathBuf> = std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
        for dir in ["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
            if !tool_dirs.iter().any(|d| d == Path::new(dir)) {
                tool_dirs.push(PathBuf::from(dir));
            }
        }
        Target { root: root.to_path_buf(), homes, tool_dirs }
    }

    /// The same stores with exactly these home directories (paths as seen from `root`,
    /// e.g. `/home/ada`), instead of the invoking user's.
    pub fn with_homes(mut self, homes: impl IntoIterator<Item = PathBuf>) -> Self {
        self.homes = homes.into_iter().collect();
        self
    }

    /// The same stores with the tools looked for only in `dirs` (a test hides a tool
    /// with it).
    pub fn with_tool_dirs(mut self, dirs: impl IntoIterator<Item = PathBuf>) -> Self {
        self.tool_dirs = dirs.into_iter().collect();
        self
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Installs the CA `cert_pem` as `name` in every store found; see [`install`].
    ///
    /// Fails before changing anything when the name or the certificate is unusable, or
    /// when no system store (Debian, Fedora or macOS) is found; then at the first store
    /// whose update fails (the stores before it keep the CA).
    pub fn install(&self, name: &str, cert_pem: &str) -> Result<Installed, TrustError> {
        check_name(name)?;
        let cert = Cert::parse(cert_pem)?;
        let system = self.system_stores();
        if system.iter().all(|(_, p)| *p == Presence::Absent) {
            return Err(TrustError::NoSystemStore { root: self.root.clone() });
        }
        let mut stores = Vec::new();
        for (store, presence) in system {
            let change = match presence {
                Presence::Absent => Change::Absent,
                Presence::ToolMissing(tool) => Change::ToolMissing { tool: tool.to_owned() },
                Presence::Ready(tool) => match store {
                    Store::Debian => self.debian_install(&tool, name, &cert)?,
                    Store::Fedora => self.fedora_install(&tool, name, &cert)?,
                    Store::MacOs => self.macos_install(&tool, name, &cert)?,
                    Store::Nss { .. } => unreachable_store(),
                },
            };
            stores.push(Outcome { store, change });
        }
        for (store, presence) in self.nss_stores() {
            let change = match (&store, presence) {
                (_, Presence::Absent) => Change::Absent,
                (_, Presence::ToolMissing(tool)) => Change::ToolMissing { tool: tool.to_owned() },
                (Store::Nss { db }, Presence::Ready(tool)) => nss_install(&tool, db, name, &cert)?,
                _ => unreachable_store(),
            };
            stores.push(Outcome { store, change });
        }
        Ok(Installed { stores })
    }

    /// Removes the CA installed as `name` from every store found; see [`uninstall`].
    ///
    /// A store whose tool is missing is skipped when it cannot be seen to hold the CA,
    /// and is an error when it can (the CA would stay trusted).
    pub fn uninstall(&self, name: &str) -> Result<Removed, TrustError> {
        check_name(name)?;
        let mut stores = Vec::new();
        for (store, presence) in self.system_stores().into_iter().chain(self.nss_stores()) {
            let change = match presence {
                Presence::Absent => Change::Absent,
                Presence::ToolMissing(tool) => {
                    if self.holds_file(&store, name) {
                        return Err(TrustError::ToolMissing { hint: install_hint(&store, tool), store, tool: tool.to_owned() });
                    }
                    Change::ToolMissing { tool: tool.to_owned() }
                }
                Presence::Ready(tool) => match &store {
                    Store::Debian => self.debian_uninstall(&tool, name)?,
                    Store::Fedora => self.fedora_uninstall(&tool, name)?,
                    Store::MacOs => self.macos_uninstall(&tool, name)?,
                    Store::Nss { db } => nss_uninstall(&tool, db, name)?,
                },
            };
            stores.push(Outcome { store, change });
        }
        Ok(Removed { stores })
    }

    /// Whether each store found trusts `cert_pem` as `name`; see [`status`]. A name or
    /// certificate that cannot be used is [`State::Unknown`] everywhere.
    pub fn status(&self, name: &str, cert_pem: &str) -> Status {
        let checked = check_name(name).and_then(|()| Cert::parse(cert_pem));
        let stores = self
            .system_stores()
            .into_iter()
            .chain(self.nss_stores())
            .map(|(store, presence)| {
                let state = match &checked {
                    Err(e) => State::Unknown { reason: e.to_string() },
                    Ok(cert) => self.store_state(&store, &presence, name, cert),
                };
                StoreStatus { store, state }
            })
            .collect();
        Status { stores }
    }

    fn store_state(&self, store: &Store, presence: &Presence, name: &str, cert: &Cert) -> State {
        match (store, presence) {
            (_, Presence::Absent) => State::Absent,
            (Store::Debian, _) => {
                // The bundle is what clients read; it can be checked without the tool.
                if cert.is_in(&read_or_empty(&self.debian().bundle)) {
                    State::Trusted
                } else if let Presence::ToolMissing(tool) = presence {
                    State::ToolMissing { tool: (*tool).to_owned() }
                } else {
                    State::NotTrusted
                }
            }
            (Store::Fedora, _) => {
                if cert.is_in(&read_or_empty(&self.fedora().bundle)) {
                    State::Trusted
                } else if let Presence::ToolMissing(tool) = presence {
                    State::ToolMissing { tool: (*tool).to_owned() }
                } else {
                    State::NotTrusted
                }
            }
            (_, Presence::ToolMissing(tool)) => State::ToolMissing { tool: (*tool).to_owned() },
            (Store::MacOs, Presence::Ready(tool)) => {
                let copy = self.macos().copy(name);
                if !cert.is_in(&read_or_empty(&copy)) {
                    return State::NotTrusted;
                }
                match macos_verify_command(tool, &copy).output() {
                    Ok(out) if out.status.success() => State::Trusted,
                    Ok(_) => State::NotTrusted,
                    Err(e) => State::Unknown { reason: format!("cannot run {}: {e}", tool.display()) },
                }
            }
            (Store::Nss { db }, Presence::Ready(tool)) => match nss_lookup(tool, db, name) {
                Ok(found) if found.trusted && cert.is_in(&found.pem) => State::Trusted,
                Ok(_) => State::NotTrusted,
                Err(e) => State::Unknown { reason: e.to_string() },
            },
        }
    }

    /// The system stores and whether each is there and usable.
    fn system_stores(&self) -> Vec<(Store, Presence)> {
        let debian = self.debian();
        let debian_tool = self.tool(DEBIAN_TOOL);
        let debian_there = debian_tool.is_some() || debian.local_dir.is_dir() || debian.etc_dir.is_dir();
        let fedora_there = self.fedora().anchors.is_dir();
        let macos_there = self.macos().keychain.is_file();
        vec![
            (Store::Debian, self.presence(debian_there, DEBIAN_TOOL)),
            (Store::Fedora, self.presence(fedora_there, FEDORA_TOOL)),
            (Store::MacOs, self.presence(macos_there, MACOS_TOOL)),
        ]
    }

    /// The NSS databases under each home: `.pki/nssdb` (Chromium, and NSS's default for
    /// tools) and Firefox's profiles, each counted when it holds a `cert9.db` (the SQL
    /// format; the old `cert8.db` format is not handled). A home without any gives one
    /// absent `.pki/nssdb` store, so that status shows where it looked.
    fn nss_stores(&self) -> Vec<(Store, Presence)> {
        let mut stores = Vec::new();
        for home in &self.homes {
            let home = under(&self.root, home);
            let pki = home.join(".pki/nssdb");
            let mut dbs: Vec<PathBuf> = Vec::new();
            if pki.join("cert9.db").is_file() {
                dbs.push(pki.clone());
            }
            for profiles in [home.join(".mozilla/firefox"), home.join("snap/firefox/common/.mozilla/firefox")] {
                let Ok(entries) = std::fs::read_dir(&profiles) else { continue };
                let mut found: Vec<PathBuf> =
                    entries.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.join("cert9.db").is_file()).collect();
                found.sort();
                dbs.extend(found);
            }
            if dbs.is_empty() {
                stores.push((Store::Nss { db: pki }, Presence::Absent));
            }
            for db in dbs {
                stores.push((Store::Nss { db }, self.presence(true, NSS_TOOL)));
            }
        }
        stores
    }

    fn presence(&self, there: bool, tool: &'static str) -> Presence {
        match (there, self.tool(tool)) {
            (false, _) => Presence::Absent,
            (true, None) => Presence::ToolMissing(tool),
            (true, Some(path)) => Presence::Ready(path),
        }
    }

    /// The tool `name` in the tool directories, when it is an executable file.
    fn tool(&self, name: &str) -> Option<PathBuf> {
        use std::os::unix::fs::PermissionsExt;
        self.tool_dirs.iter().map(|d| d.join(name)).find(|p| p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
    }

    /// Whether the file this module would have written for `name` in `store` exists (NSS
    /// keeps no file: false).
    fn holds_file(&self, store: &Store, name: &str) -> bool {
        match store {
            Store::Debian => self.debian().cert(name).exists(),
            Store::Fedora => self.fedora().anchor(name).exists(),
            Store::MacOs => self.macos().copy(name).exists(),
            Store::Nss { .. } => false,
        }
    }

    fn debian(&self) -> DebianPaths {
        DebianPaths::new(&self.root)
    }

    fn fedora(&self) -> FedoraPaths {
        FedoraPaths::new(&self.root)
    }

    fn macos(&self) -> MacOsPaths {
        MacOsPaths::new(&self.root)
    }

    fn debian_install(&self, tool: &Path, name: &str, cert: &Cert) -> Result<Change, TrustError> {
        let store = Store::Debian;
        let paths = self.debian();
        let file = paths.cert(name);
        let existing = std::fs::read_to_string(&file).ok();
        let same_file = existing.as_deref().is_some_and(|text| Cert::parse(text).is_ok_and(|c| c == *cert));
        if same_file && cert.is_in(&read_or_empty(&paths.bundle)) {
            return Ok(Change::AlreadyDone);
        }
        for dir in [&paths.local_dir, &paths.etc_dir] {
            std::fs::create_dir_all(dir).map_err(|e| io_error(&store, "create", dir, e))?;
        }
        if !paths.conf.exists() {
            // An empty configuration selects no distribution certificate, which is what a
            // missing one means to the script too (it would only complain).
            write_file(&store, &paths.conf, "")?;
        }
        if !same_file {
            write_file(&store, &file, &cert.pem)?;
        }
        let mut command = debian_command(tool, &self.root, false);
        run(&store, &mut command, None)?;
        if !cert.is_in(&read_or_empty(&paths.bundle)) {
            return Err(TrustError::NotApplied {
                store,
                command: render(&command),
                what: format!("{} does not hold the CA", paths.bundle.display()),
                hint: "run it with --verbose to see which certificates it reads".to_owned(),
            });
        }
        Ok(if existing.is_some() && !same_file { Change::Replaced } else { Change::Added })
    }

    fn debian_uninstall(&self, tool: &Path, name: &str) -> Result<Change, TrustError> {
        let store = Store::Debian;
        let paths = self.debian();
        let file = paths.cert(name);
        let Ok(text) = std::fs::read_to_string(&file) else {
            return Ok(Change::AlreadyDone);
        };
        std::fs::remove_file(&file).map_err(|e| io_error(&store, "remove", &file, e))?;
        let before = read_or_empty(&paths.bundle);
        // --fresh: the `<name>.pem` link now points nowhere, and only a fresh run drops
        // it (and rehashes).
        let mut command = debian_command(tool, &self.root, true);
        run(&store, &mut command, None)?;
        let Ok(cert) = Cert::parse(&text) else { return Ok(Change::Removed) };
        let after = read_or_empty(&paths.bundle);
        if cert.is_in(&after) {
            if after == before {
                // The script writes the bundle only when at least one certificate is
                // left; with none left it keeps the old one, which is now wrong.
                write_file(&store, &paths.bundle, &cert.strip_from(&after))?;
            } else {
                return Err(TrustError::NotApplied {
                    store,
                    command: render(&command),
                    what: format!("{} still holds the CA (another file under {} adds it)", paths.bundle.display(), self.root.display()),
                    hint: "remove that file too, or run update-ca-certificates --fresh --verbose to find it".to_owned(),
                });
            }
        }
        Ok(Change::Removed)
    }

    fn fedora_install(&self, tool: &Path, name: &str, cert: &Cert) -> Result<Change, TrustError> {
        let store = Store::Fedora;
        self.fedora_root_only()?;
        let paths = self.fedora();
        let file = paths.anchor(name);
        let existing = std::fs::read_to_string(&file).ok();
        let same_file = existing.as_deref().is_some_and(|text| Cert::parse(text).is_ok_and(|c| c == *cert));
        if same_file && cert.is_in(&read_or_empty(&paths.bundle)) {
            return Ok(Change::AlreadyDone);
        }
        write_file(&store, &file, &cert.pem)?;
        run(&store, &mut fedora_command(tool), None)?;
        Ok(if existing.is_some() && !same_file { Change::Replaced } else { Change::Added })
    }

    fn fedora_uninstall(&self, tool: &Path, name: &str) -> Result<Change, TrustError> {
        let store = Store::Fedora;
        let file = self.fedora().anchor(name);
        if !file.exists() {
            return Ok(Change::AlreadyDone);
        }
        self.fedora_root_only()?;
        std::fs::remove_file(&file).map_err(|e| io_error(&store, "remove", &file, e))?;
        run(&store, &mut fedora_command(tool), None)?;
        Ok(Change::Removed)
    }

    /// `update-ca-trust` reads its sources from fixed places (`/etc/pki/ca-trust/source`,
    /// `/usr/share/pki/ca-trust-source`), so it cannot be pointed at another root.
    fn fedora_root_only(&self) -> Result<(), TrustError> {
        if self.root == Path::new("/") {
            Ok(())
        } else {
            Err(TrustError::RootUnsupported { store: Store::Fedora, root: self.root.clone() })
        }
    }

    fn macos_install(&self, tool: &Path, name: &str, cert: &Cert) -> Result<Change, TrustError> {
        let store = Store::MacOs;
        let paths = self.macos();
        let copy = paths.copy(name);
        let existing = std::fs::read_to_string(&copy).ok();
        let same_file = existing.as_deref().is_some_and(|text| Cert::parse(text).is_ok_and(|c| c == *cert));
        if same_file && macos_verify_command(tool, &copy).output().is_ok_and(|o| o.status.success()) {
            return Ok(Change::AlreadyDone);
        }
        if let Some(dir) = copy.parent() {
            std::fs::create_dir_all(dir).map_err(|e| io_error(&store, "create", dir, e))?;
        }
        if existing.is_some() && !same_file {
            // The old CA's trust setting goes with the old copy.
            run(&store, &mut macos_remove_command(tool, &copy), None)?;
        }
        write_file(&store, &copy, &cert.pem)?;
        run(&store, &mut macos_add_command(tool, &paths.keychain, &copy), None)?;
        Ok(if existing.is_some() && !same_file { Change::Replaced } else { Change::Added })
    }

    fn macos_uninstall(&self, tool: &Path, name: &str) -> Result<Change, TrustError> {
        let store = Store::MacOs;
        let copy = self.macos().copy(name);
        if !copy.exists() {
            return Ok(Change::AlreadyDone);
        }
        run(&store, &mut macos_remove_command(tool, &copy), None)?;
        std::fs::remove_file(&copy).map_err(|e| io_error(&store, "remove", &copy, e))?;
        Ok(Change::Removed)
    }
}

fn unreachable_store() -> Change {
    // The system stores are never NSS stores and the NSS ones are never system stores;
    // a store that is neither is simply not touched.
    Change::Absent
}

/// One trust store.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Store {
    /// Debian/Ubuntu's `update-ca-certificates` bundle.
    Debian,
    /// Fedora/RHEL's `update-ca-trust` anchors (UNVERIFIED).
    Fedora,
    /// macOS's System keychain (UNVERIFIED).
    MacOs,
    /// One NSS database (Chromium's `~/.pki/nssdb`, a Firefox profile).
    Nss {
        /// Its directory, under the root.
        db: PathBuf,
    },
}

impl fmt::Display for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Store::Debian => f.write_str("debian (update-ca-certificates)"),
            Store::Fedora => f.write_str("fedora (update-ca-trust)"),
            Store::MacOs => f.write_str("macos (System keychain)"),
            Store::Nss { db } => write!(f, "nss ({})", db.display()),
        }
    }
}

/// What an install or an uninstall did to one store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The CA was added.
    Added,
    /// Another certificate under the same name was replaced by the CA.
    Replaced,
    /// The CA was removed.
    Removed,
    /// Nothing to do: the store already was as asked.
    AlreadyDone,
    /// The store is not on this machine.
    Absent,
    /// The store is there, but the tool that updates it is not; it was not touched.
    ToolMissing {
        /// The tool, e.g. `certutil`.
        tool: String,
    },
}

/// What happened to one store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The store.
    pub store: Store,
    /// What happened to it.
    pub change: Change,
}

/// The result of [`install`]: one outcome per store looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    /// The stores, system stores first.
    pub stores: Vec<Outcome>,
}

/// The result of [`uninstall`]: one outcome per store looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed {
    /// The stores, system stores first.
    pub stores: Vec<Outcome>,
}

impl Installed {
    /// Whether any store changed.
    pub fn changed(&self) -> bool {
        self.stores.iter().any(|o| matches!(o.change, Change::Added | Change::Replaced))
    }
}

impl Removed {
    /// Whether any store changed.
    pub fn changed(&self) -> bool {
        self.stores.iter().any(|o| o.change == Change::Removed)
    }
}

/// Whether one store trusts the CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// It trusts it.
    Trusted,
    /// It is there and does not trust it (or holds another certificate under its name).
    NotTrusted,
    /// The store is not on this machine.
    Absent,
    /// The store is there but the tool to read or update it is not.
    ToolMissing {
        /// The tool, e.g. `certutil`.
        tool: String,
    },
    /// It could not be found out.
    Unknown {
        /// Why.
        reason: String,
    },
}

/// One store's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreStatus {
    /// The store.
    pub store: Store,
    /// Whether it trusts the CA.
    pub state: State,
}

/// The result of [`status`]: one state per store looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The stores, system stores first.
    pub stores: Vec<StoreStatus>,
}

impl Status {
    /// The state of `store`, when it was looked at.
    pub fn state(&self, store: &Store) -> Option<&State> {
        self.stores.iter().find(|s| s.store == *store).map(|s| &s.state)
    }

    /// Whether every store that is there trusts the CA (and at least one does).
    pub fn trusted_everywhere(&self) -> bool {
        let present: Vec<_> = self.stores.iter().filter(|s| s.state != State::Absent).collect();
        !present.is_empty() && present.iter().all(|s| s.state == State::Trusted)
    }
}

/// Why a CA could not be installed or removed. Each message names the store, the
/// command with its exit status and stderr where one ran, and how to recover.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// The name cannot be used as a file name and NSS nickname.
    #[error("`{name}` cannot name a CA in a trust store: use letters, digits, `.`, `_` and `-`, not starting with `.` (e.g. idp-lab-demo)")]
    BadName {
        /// The name given.
        name: String,
    },
    /// The certificate is not exactly one PEM certificate.
    #[error("the CA is not one PEM certificate: {reason}")]
    BadCertificate {
        /// What is wrong with it.
        reason: String,
    },
    /// No system store was found.
    #[error(
        "no system trust store under {}: looked for update-ca-certificates (Debian/Ubuntu), etc/pki/ca-trust/source/anchors (Fedora/RHEL) and Library/Keychains/System.keychain (macOS); install Debian's ca-certificates package or trust the CA by hand",
        root.display()
    )]
    NoSystemStore {
        /// The root looked under.
        root: PathBuf,
    },
    /// The store is there, the CA is in it, and the tool to take it out is missing.
    #[error("{store}: `{tool}` is not installed; {hint}")]
    ToolMissing {
        /// The store.
        store: Store,
        /// The tool.
        tool: String,
        /// How to get it.
        hint: String,
    },
    /// The store cannot be used under a root other than `/`.
    #[error("{store}: only the host's own store can be updated (root /), not one under {}", root.display())]
    RootUnsupported {
        /// The store.
        store: Store,
        /// The root given.
        root: PathBuf,
    },
    /// A file or directory could not be written or removed.
    #[error("{store}: cannot {action} {}: {source}; {hint}", path.display())]
    Io {
        /// The store.
        store: Store,
        /// What was being done (`write`, `remove`, `create`).
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
        /// How to recover.
        hint: String,
    },
    /// A tool could not be started.
    #[error("{store}: cannot run `{command}`: {source}")]
    Spawn {
        /// The store.
        store: Store,
        /// The command line.
        command: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A tool failed.
    #[error("{store}: `{command}` failed ({status}): {stderr}; {hint}")]
    Failed {
        /// The store.
        store: Store,
        /// The command line.
        command: String,
        /// Its exit status.
        status: ExitStatus,
        /// Its stderr (trimmed; `(no output)` when empty).
        stderr: String,
        /// How to recover.
        hint: String,
    },
    /// A tool succeeded, and the store is still not as asked.
    #[error("{store}: `{command}` succeeded but {what}; {hint}")]
    NotApplied {
        /// The store.
        store: Store,
        /// The command line.
        command: String,
        /// What is wrong.
        what: String,
        /// How to recover.
        hint: String,
    },
}

/// Whether a store is there, and the tool for it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Presence {
    Absent,
    ToolMissing(&'static str),
    Ready(PathBuf),
}

struct DebianPaths {
    conf: PathBuf,
    certs_dir: PathBuf,
    local_dir: PathBuf,
    etc_dir: PathBuf,
    hooks_dir: PathBuf,
    bundle: PathBuf,
}

impl DebianPaths {
    fn new(root: &Path) -> Self {
        let at = |p: &str| under(root, Path::new(p));
        DebianPaths {
            conf: at("/etc/ca-certificates.conf"),
            certs_dir: at("/usr/share/ca-certificates"),
            local_dir: at("/usr/local/share/ca-certificates"),
            etc_dir: at("/etc/ssl/certs"),
            hooks_dir: at("/etc/ca-certificates/update.d"),
            bundle: at("/etc/ssl/certs/ca-certificates.crt"),
        }
    }

    fn cert(&self, name: &str) -> PathBuf {
        // The script only reads `*.crt` files.
        self.local_dir.join(format!("{name}.crt"))
    }
}

struct FedoraPaths {
    anchors: PathBuf,
    bundle: PathBuf,
}

impl FedoraPaths {
    fn new(root: &Path) -> Self {
        FedoraPaths {
            anchors: under(root, Path::new("/etc/pki/ca-trust/source/anchors")),
            bundle: under(root, Path::new("/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem")),
        }
    }

    fn anchor(&self, name: &str) -> PathBuf {
        self.anchors.join(format!("{name}.pem"))
    }
}

struct MacOsPaths {
    keychain: PathBuf,
    copies: PathBuf,
}

impl MacOsPaths {
    fn new(root: &Path) -> Self {
        MacOsPaths {
            keychain: under(root, Path::new("/Library/Keychains/System.keychain")),
            copies: under(root, Path::new("/Library/Application Support/idp-lab/trust")),
        }
    }

    /// The copy kept of the CA: `security add-trusted-cert` reads a file, and `security
    /// remove-trusted-cert` needs it again to take the trust setting away.
    fn copy(&self, name: &str) -> PathBuf {
        self.copies.join(format!("{name}.pem"))
    }
}

/// `update-ca-certificates` with every directory under `root` (with `/` these are its
/// defaults): it links the certificates of the configuration and of the local directory
/// into `<root>/etc/ssl/certs`, rehashes it and rewrites the bundle
/// `<root>/etc/ssl/certs/ca-certificates.crt`; with `fresh` it first drops the links
/// into those directories (needed when a certificate was removed). The hooks (e.g.
/// Java's keystore) are those under the root, so a test root runs none.
fn debian_command(tool: &Path, root: &Path, fresh: bool) -> Command {
    let paths = DebianPaths::new(root);
    let mut command = Command::new(tool);
    command
        .arg("--certsconf")
        .arg(&paths.conf)
        .arg("--certsdir")
        .arg(&paths.certs_dir)
        .arg("--localcertsdir")
        .arg(&paths.local_dir)
        .arg("--etccertsdir")
        .arg(&paths.etc_dir)
        .arg("--hooksdir")
        .arg(&paths.hooks_dir);
    if fresh {
        command.arg("--fresh");
    }
    command
}

/// `update-ca-trust extract`: regenerates `/etc/pki/ca-trust/extracted` from the
/// anchors. UNVERIFIED (no Fedora here).
fn fedora_command(tool: &Path) -> Command {
    let mut command = Command::new(tool);
    command.arg("extract");
    command
}

/// `security add-trusted-cert -d -r trustRoot -k <keychain> <file>`: adds the CA to the
/// System keychain with an admin trust setting as a root. Needs root, and macOS may ask
/// for an administrator's confirmation. UNVERIFIED (no macOS here).
fn macos_add_command(tool: &Path, keychain: &Path, file: &Path) -> Command {
    let mut command = Command::new(tool);
    command.args(["add-trusted-cert", "-d", "-r", "trustRoot", "-k"]).arg(keychain).arg(file);
    command
}

/// `security remove-trusted-cert -d <file>`: drops the admin trust setting of the CA, so
/// that it is no longer trusted. The certificate itself stays in the keychain, untrusted
/// (removing it would need its SHA-1 for `security delete-certificate -Z`). UNVERIFIED.
fn macos_remove_command(tool: &Path, file: &Path) -> Command {
    let mut command = Command::new(tool);
    command.args(["remove-trusted-cert", "-d"]).arg(file);
    command
}

/// `security verify-cert -c <file> -p ssl`: succeeds when the CA is trusted (it is its own
/// chain). UNVERIFIED.
fn macos_verify_command(tool: &Path, file: &Path) -> Command {
    let mut command = Command::new(tool);
    command.args(["verify-cert", "-c"]).arg(file).args(["-p", "ssl"]);
    command
}

/// `certutil -A -d sql:<db> -t C,, -n <name> -a`, the certificate on stdin: adds the CA
/// trusted for TLS servers.
fn nss_add_command(tool: &Path, db: &Path, name: &str) -> Command {
    let mut command = Command::new(tool);
    command.arg("-A").arg("-d").arg(sql(db)).args(["-t", NSS_TRUST, "-n", name, "-a"]);
    command
}

/// `certutil -D -d sql:<db> -n <name>`: deletes one certificate named `name`.
fn nss_delete_command(tool: &Path, db: &Path, name: &str) -> Command {
    let mut command = Command::new(tool);
    command.arg("-D").arg("-d").arg(sql(db)).args(["-n", name]);
    command
}

/// `certutil -L -d sql:<db>`, and with a name `-n <name> -a`: lists the nicknames with
/// their trust, or prints the certificates named `name` as PEM.
fn nss_list_command(tool: &Path, db: &Path, name: Option<&str>) -> Command {
    let mut command = Command::new(tool);
    command.arg("-L").arg("-d").arg(sql(db));
    if let Some(name) = name {
        command.args(["-n", name, "-a"]);
    }
    command
}

fn sql(db: &Path) -> OsString {
    let mut arg = OsString::from("sql:");
    arg.push(db);
    arg
}

/// What an NSS database holds under a name.
struct NssEntry {
    /// How many entries the listing shows with that name.
    count: usize,
    /// Whether one of them is trusted as a TLS CA (`C` in the SSL field).
    trusted: bool,
    /// Their certificates, as PEM (empty when none).
    pem: String,
}

fn nss_lookup(tool: &Path, db: &Path, name: &str) -> Result<NssEntry, TrustError> {
    let store = Store::Nss { db: db.to_path_buf() };
    let listing = run(&store, &mut nss_list_command(tool, db, None), None)?;
    let trusts = nss_trusts(&String::from_utf8_lossy(&listing.stdout), name);
    if trusts.is_empty() {
        return Ok(NssEntry { count: 0, trusted: false, pem: String::new() });
    }
    let pem = run(&store, &mut nss_list_command(tool, db, Some(name)), None)?;
    Ok(NssEntry {
        count: trusts.len(),
        trusted: trusts.iter().any(|t| t.split(',').next().is_some_and(|ssl| ssl.contains('C'))),
        pem: String::from_utf8_lossy(&pem.stdout).into_owned(),
    })
}

/// The trust attributes (e.g. `C,,`) of the entries named `name` in a `certutil -L`
/// listing: the nickname, spaces, then the attributes.
fn nss_trusts(listing: &str, name: &str) -> Vec<String> {
    listing
        .lines()
        .filter_map(|line| {
            let line = line.trim_end();
            let (nick, trust) = line.rsplit_once(char::is_whitespace)?;
            (nick.trim_end() == name && trust.matches(',').count() == 2).then(|| trust.to_owned())
        })
        .collect()
}

fn nss_install(tool: &Path, db: &Path, name: &str, cert: &Cert) -> Result<Change, TrustError> {
    let store = Store::Nss { db: db.to_path_buf() };
    let found = nss_lookup(tool, db, name)?;
    if found.count == 1 && found.trusted && cert.is_in(&found.pem) {
        return Ok(Change::AlreadyDone);
    }
    // Another certificate, or the CA with other trust: certutil -A would add a second
    // entry under the name, so the old ones go first.
    for _ in 0..found.count {
        run(&store, &mut nss_delete_command(tool, db, name), None)?;
    }
    run(&store, &mut nss_add_command(tool, db, name), Some(cert.pem.as_bytes()))?;
    Ok(if found.count == 0 { Change::Added } else { Change::Replaced })
}

fn nss_uninstall(tool: &Path, db: &Path, name: &str) -> Result<Change, TrustError> {
    let store = Store::Nss { db: db.to_path_buf() };
    let found = nss_lookup(tool, db, name)?;
    if found.count == 0 {
        return Ok(Change::AlreadyDone);
    }
    for _ in 0..found.count {
        run(&store, &mut nss_delete_command(tool, db, name), None)?;
    }
    Ok(Change::Removed)
}

/// Runs `command` (with `stdin` fed to it, or none), and returns its output when it
/// succeeded.
fn run(store: &Store, command: &mut Command, stdin: Option<&[u8]>) -> Result<Output, TrustError> {
    command.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() }).stdout(Stdio::piped()).stderr(Stdio::piped());
    let line = render(command);
    let mut child = command.spawn().map_err(|source| TrustError::Spawn { store: store.clone(), command: line.clone(), source })?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A tool that exits early closes the pipe; its status tells why.
        let _ = pipe.write_all(input);
    }
    let output = child.wait_with_output().map_err(|source| TrustError::Spawn { store: store.clone(), command: line.clone(), source })?;
    if output.status.success() {
        return Ok(output);
    }
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    Err(TrustError::Failed {
        store: store.clone(),
        command: line,
        status: output.status,
        hint: failure_hint(store, &stderr),
        stderr: if stderr.is_empty() { "(no output)".to_owned() } else { stderr },
    })
}

/// How to recover from a failed tool.
fn failure_hint(store: &Store, stderr: &str) -> String {
    let lower = stderr.to_ascii_lowercase();
    let denied =
        ["permission denied", "not permitted", "read-only", "read_only", "must be root", "authorization"].iter().any(|w| lower.contains(w));
    match store {
        Store::Nss { db } => {
            if denied {
                format!("{} must be writable by you: run as its owner (not with sudo), or fix its permissions", db.display())
            } else {
                format!("check {} with `certutil -L -d sql:{}`", db.display(), db.display())
            }
        }
        _ if denied || !nix::unistd::geteuid().is_root() => "the system trust store belongs to root: run with sudo".to_owned(),
        _ => "see the tool's message; running it again is safe".to_owned(),
    }
}

fn install_hint(store: &Store, tool: &str) -> String {
    match store {
        Store::Debian => "install it (apt-get install ca-certificates), or run again where it is".to_owned(),
        Store::Fedora => "install it (dnf install ca-certificates)".to_owned(),
        Store::MacOs => format!("{tool} comes with macOS; check PATH"),
        Store::Nss { .. } => "install it (apt-get install libnss3-tools; dnf install nss-tools)".to_owned(),
    }
}

fn io_error(store: &Store, action: &'static str, path: &Path, source: io::Error) -> TrustError {
    let hint = if source.kind() == io::ErrorKind::PermissionDenied {
        "run with sudo".to_owned()
    } else {
        "check the path and its parent directories".to_owned()
    };
    TrustError::Io { store: store.clone(), action, path: path.to_path_buf(), source, hint }
}

/// Writes `text` to `path` through a temporary file beside it and a rename, so a reader
/// never sees half a file; readable by everyone (0644, as certificates are).
fn write_file(store: &Store, path: &Path, text: &str) -> Result<(), TrustError> {
    use std::os::unix::fs::PermissionsExt;
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{file_name}.idp-lab.tmp"));
    let written = std::fs::write(&tmp, text)
        .and_then(|()| std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)))
        .and_then(|()| std::fs::rename(&tmp, path));
    written.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io_error(store, "write", path, e)
    })
}

fn read_or_empty(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// `path` (absolute, as seen on the host) under `root`.
fn under(root: &Path, path: &Path) -> PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}

/// The home directory of `user` in a passwd file.
fn passwd_home(passwd: &str, user: &str) -> Option<PathBuf> {
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.len() >= 7 && fields[0] == user && !fields[5].is_empty()).then(|| PathBuf::from(fields[5]))
    })
}

fn check_name(name: &str) -> Result<(), TrustError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok { Ok(()) } else { Err(TrustError::BadName { name: name.to_owned() }) }
}

/// One certificate: its base64 body without whitespace (what comparisons use) and a
/// canonical PEM text.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Cert {
    body: String,
    pem: String,
}

impl Cert {
    /// Exactly one `CERTIFICATE` block.
    fn parse(text: &str) -> Result<Cert, TrustError> {
        let blocks = pem_blocks(text);
        let bad = |reason: &str| TrustError::BadCertificate { reason: reason.to_owned() };
        let body = match blocks.as_slice() {
            [] => return Err(bad("no -----BEGIN CERTIFICATE----- block")),
            [one] => one.clone(),
            _ => return Err(bad("more than one certificate; give the CA alone")),
        };
        if body.is_empty() || !body.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=')) {
            return Err(bad("the block is not base64"));
        }
        let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
        for chunk in body.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(chunk));
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
        Ok(Cert { body, pem })
    }

    /// Whether a PEM text (a bundle, a listing) holds this certificate.
    fn is_in(&self, text: &str) -> bool {
        pem_blocks(text).contains(&self.body)
    }

    /// A bundle without this certificate (the other blocks kept as they were).
    fn strip_from(&self, bundle: &str) -> String {
        let mut out = String::new();
        let mut block = String::new();
        let mut inside = false;
        for line in bundle.lines() {
            if line.trim() == "-----BEGIN CERTIFICATE-----" {
                inside = true;
            }
            if inside {
                block.push_str(line);
                block.push('\n');
                if line.trim() == "-----END CERTIFICATE-----" {
                    inside = false;
                    if !self.is_in(&block) {
                        out.push_str(&block);
                    }
                    block.clear();
                }
            } else {
                out.push_str(line);
                out.push('\n');
            }
        }
        out.push_str(&block);
        out
    }
}

/// The bodies (base64, whitespace removed) of the `CERTIFICATE` blocks of a PEM text.
fn pem_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let line = line.trim();
        if line == "-----BEGIN CERTIFICATE-----" {
            current = Some(String::new());
        } else if line == "-----END CERTIFICATE-----" {
            blocks.extend(current.take());
        } else if let Some(body) = current.as_mut() {
            body.extend(line.chars().filter(|c| !c.is_whitespace()));
        }
    }
    blocks
}

/// A command line for messages: the program and its arguments, quoted when needed.
fn render(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|a| {
            let a = a.to_string_lossy();
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || c == '\'' || c == '"') {
                format!("'{}'", a.replace('\'', r"'\''"))
            } else {
                a.into_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests;
