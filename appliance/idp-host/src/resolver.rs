//! Pointing the host's resolver at a lab's own DNS server, for the lab's DNS suffix only
//! (`idp-lab dns setup|teardown`).
//!
//! Every path is taken under a root directory: `/` in production, a temporary directory
//! in tests, so that a test never touches the machine's own resolver. The reload tools
//! (`systemctl`, `nmcli`, `killall`) are the host's. They act on the running host, not on
//! a root, so they run only when the root is `/` (or when [`Host::with_reload`] asks for
//! them, as the tests do with stand-in tools).
//!
//! The resolvers:
//!
//! - **systemd-resolved** ([`Resolver::SystemdResolved`]), found when
//!   `<root>/run/systemd/resolve/` exists (resolved is running). What is written depends on
//!   the systemd version (read from `libsystemd-shared-<N>.so` under the root, else from
//!   `systemctl --version` on `/`):
//!   - systemd 258 and later: a DNS delegate,
//!     `<root>/etc/systemd/dns-delegate.d/idp-lab-<lab>.dns-delegate` with `[Delegate]`,
//!     `DNS=<addr>:<port>`, `Domains=~<suffix>` and `DefaultRoute=no`. This makes a scope of
//!     its own that gets the names under the suffix and nothing else.
//!   - older systemd: a drop-in, `<root>/etc/systemd/resolved.conf.d/idp-lab-<lab>.conf`
//!     with `[Resolve]`, `DNS=<addr>:<port>` and `Domains=~<suffix>`. The names under the
//!     suffix go to the lab's server only. But resolved always uses its global scope as a
//!     default route too, so names that match no routing domain are also sent to the
//!     lab's server (it refuses them, and the links' servers answer them). The outcome
//!     carries a note saying so. A port other than 53 in `DNS=` needs systemd 246 or later
//!     (`[addr]:port` for IPv6), and an older systemd is refused.
//!   - unknown version: both files, with a note.
//!
//!   The reload is `systemctl restart systemd-resolved.service`. Only systemd 256 and
//!   later can reload their configuration without a restart, and only 258 has delegates.
//!   UNVERIFIED: systemd-resolved cannot run on the test machine (no systemd as PID 1), so
//!   the files and the command line are tested as data only.
//! - **NetworkManager with dnsmasq** ([`Resolver::NetworkManagerDnsmasq`]), found when the
//!   NetworkManager configuration under the root (`etc/NetworkManager/NetworkManager.conf`,
//!   then the `conf.d/*.conf` snippets of `usr/lib`, `run` and `etc`, in NetworkManager's
//!   order) ends up with `dns=dnsmasq` in `[main]`. The file is
//!   `<root>/etc/NetworkManager/dnsmasq.d/idp-lab-<lab>.conf` with
//!   `server=/<suffix>/<addr>#<port>`, plus `rebind-domain-ok=/<suffix>/` so that a
//!   dnsmasq with `stop-dns-rebind` still passes on the lab's loopback and LAN addresses.
//!   The reload is `nmcli general reload dns-full` (NetworkManager 1.22 or later), which
//!   restarts NetworkManager's dnsmasq. Verified by the tests: a real dnsmasq, started the
//!   way NetworkManager starts it (`--conf-dir` on that directory), sends the lab's names
//!   to a stand-in for the lab's server and every other name to its usual upstream.
//! - **macOS** ([`Resolver::MacOs`]), found on macOS. The file is
//!   `<root>/etc/resolver/<suffix>` with `nameserver <addr>` and `port <port>`. A file at
//!   that path that idp-lab did not write for this lab is never overwritten. The reload
//!   is `killall -HUP mDNSResponder`, which flushes the cache. mDNSResponder picks up new
//!   files by itself. UNVERIFIED: no macOS here, so this is tested as data only.
//!
//! Every file begins with a comment that names the lab and the teardown command, and a
//! marker line (`# idp-lab: lab=<lab> suffix=<suffix> server=<addr>:<port>`). Teardown
//! and status go by that marker, so they find the macOS file without being told the
//! suffix, and they never touch a file idp-lab did not write. Files are written
//! atomically (a temporary file, then a rename) with mode 0644.
//!
//! Setting up twice changes nothing. Tearing down a lab that has nothing set up succeeds.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

/// The first line of the marker every file idp-lab writes carries.
const MARKER: &str = "# idp-lab: ";
/// The prefix of the file names idp-lab gives its systemd and dnsmasq files.
const PREFIX: &str = "idp-lab-";
/// The first systemd with DNS delegates (`dns-delegate.d`).
const DELEGATES_SINCE: u32 = 258;
/// The first systemd that takes a port in `DNS=`.
const PORT_SYNTAX_SINCE: u32 = 246;
/// The largest file scanned for a marker; ours are a few hundred bytes.
const SCAN_LIMIT: u64 = 64 * 1024;

/// Points the resolvers detected under `root` (see [`detect`]) at the lab's DNS server
/// for `target.suffix`. Reloads them when `root` is `/`.
pub fn setup(root: &Path, lab: &str, target: &Target) -> Result<Setup, ResolverError> {
    Host::new(root).setup(lab, target)
}

/// Removes every file [`setup`] wrote for `lab` under `root`, for every kind of resolver,
/// detected or not. Reloads the detected resolvers that changed when `root` is `/`.
pub fn teardown(root: &Path, lab: &str) -> Result<Teardown, ResolverError> {
    Host::new(root).teardown(lab)
}

/// The resolvers this host (under `root`) uses, in the order of [`Resolver::ALL`].
pub fn detect(root: &Path) -> Vec<Resolver> {
    Host::new(root).detect()
}

/// Where `lab` is set up under `root`: one entry for each kind of resolver.
pub fn status(root: &Path, lab: &str) -> Vec<Placement> {
    Host::new(root).status(lab)
}

/// Where the lab's names should go: the names under `suffix`, to the DNS server at
/// `address`:`port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The lab's DNS suffix, e.g. `127-0-0-1.nip.io` or `idp.lab`: a DNS name of at least
    /// two labels, lowercase, without a trailing dot.
    pub suffix: String,
    /// The address the lab's DNS server answers on (not `0.0.0.0` or `::`: give the
    /// loopback or LAN address it is bound to).
    pub address: IpAddr,
    /// The port it answers on (UDP and TCP).
    pub port: u16,
}

impl Target {
    /// The lab's DNS server as one socket address.
    pub fn server(&self) -> SocketAddr {
        SocketAddr::new(self.address, self.port)
    }

    /// Checks the suffix and the server; see [`Target`].
    pub fn check(&self) -> Result<(), ResolverError> {
        check_suffix(&self.suffix)?;
        let bad = |reason: &str| Err(ResolverError::BadServer { server: self.server(), reason: reason.to_owned() });
        if self.port == 0 {
            return bad("port 0 is not a port a server answers on");
        }
        if self.address.is_unspecified() {
            return bad("a resolver cannot send to the unspecified address; give the address the server is bound to, e.g. 127.0.0.1");
        }
        if self.address.is_multicast() {
            return bad("a multicast address cannot be a DNS server");
        }
        Ok(())
    }
}

/// One kind of host resolver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Resolver {
    /// systemd-resolved (a DNS delegate on systemd 258+, a `resolved.conf.d` drop-in before).
    SystemdResolved,
    /// NetworkManager's own dnsmasq (`dns=dnsmasq`), through `dnsmasq.d`.
    NetworkManagerDnsmasq,
    /// macOS's `/etc/resolver` (UNVERIFIED).
    MacOs,
}

impl Resolver {
    /// Every kind, in the order setup, teardown and status report them.
    pub const ALL: [Resolver; 3] = [Resolver::SystemdResolved, Resolver::NetworkManagerDnsmasq, Resolver::MacOs];

    /// A stable key for machine-readable output: `systemd-resolved`,
    /// `networkmanager-dnsmasq` or `macos`.
    pub fn key(self) -> &'static str {
        match self {
            Resolver::SystemdResolved => "systemd-resolved",
            Resolver::NetworkManagerDnsmasq => "networkmanager-dnsmasq",
            Resolver::MacOs => "macos",
        }
    }
}

impl fmt::Display for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Resolver::SystemdResolved => "systemd-resolved",
            Resolver::NetworkManagerDnsmasq => "NetworkManager (dnsmasq)",
            Resolver::MacOs => "macOS (/etc/resolver)",
        })
    }
}

/// What happened to one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// It was written, and was not there before.
    Created,
    /// It was there with other contents, and was rewritten.
    Replaced,
    /// It was removed.
    Removed,
    /// It already was as asked.
    Unchanged,
}

/// One file and what happened to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileChange {
    /// The file, under the root.
    pub path: PathBuf,
    /// What happened to it.
    pub change: Change,
}

/// Whether a resolver was told about the change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reload {
    /// The command ran and succeeded.
    Done {
        /// The command line.
        command: String,
    },
    /// Nothing changed, so nothing was reloaded.
    NotNeeded,
    /// Something changed but reloads are off (the root is not `/`): run the command on the
    /// machine the root belongs to.
    Skipped {
        /// The command line.
        command: String,
    },
    /// Files were removed for a resolver this host does not use, so there is nothing to
    /// reload.
    NotRunning,
}

/// What setup or teardown did to one resolver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The resolver.
    pub resolver: Resolver,
    /// The files written, kept or removed, in order.
    pub files: Vec<FileChange>,
    /// Whether the resolver was reloaded.
    pub reload: Reload,
    /// What the user should know, e.g. that an old systemd-resolved also sends other names
    /// to the lab's server.
    pub notes: Vec<String>,
}

impl Outcome {
    /// Whether any file changed.
    pub fn changed(&self) -> bool {
        self.files.iter().any(|f| f.change != Change::Unchanged)
    }
}

/// The result of [`setup`]: one outcome per resolver detected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setup {
    /// The resolvers, in the order of [`Resolver::ALL`].
    pub resolvers: Vec<Outcome>,
}

impl Setup {
    /// Whether any file changed.
    pub fn changed(&self) -> bool {
        self.resolvers.iter().any(Outcome::changed)
    }
}

/// The result of [`teardown`]: one outcome per kind of resolver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Teardown {
    /// Every kind, in the order of [`Resolver::ALL`].
    pub resolvers: Vec<Outcome>,
}

impl Teardown {
    /// Whether any file was removed.
    pub fn changed(&self) -> bool {
        self.resolvers.iter().any(Outcome::changed)
    }
}

/// Where a lab is set up for one kind of resolver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The resolver.
    pub resolver: Resolver,
    /// Whether this host uses it.
    pub detected: bool,
    /// The files idp-lab wrote for the lab (empty when it is not set up there).
    pub files: Vec<PathBuf>,
    /// Where they send the lab's names, read back from the first file's marker.
    pub target: Option<Target>,
}

/// Why a resolver could not be set up or torn down. Each message names the resolver and
/// the path or command, and says how to recover.
#[derive(Debug, thiserror::Error)]
pub enum ResolverError {
    /// The lab name cannot be used in a file name.
    #[error("`{lab}` cannot name a lab: use a lowercase letter, then lowercase letters, digits and `-` (at most 32, not ending with `-`)")]
    BadLab {
        /// The name given.
        lab: String,
    },
    /// The suffix is not a DNS name that can be written into a resolver's configuration.
    #[error("`{}` cannot be the lab's DNS suffix: {reason}", suffix.escape_debug())]
    BadSuffix {
        /// The suffix given.
        suffix: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The DNS server cannot be given to a resolver.
    #[error("{server} cannot be the lab's DNS server: {reason}")]
    BadServer {
        /// The server given.
        server: SocketAddr,
        /// What is wrong with it.
        reason: String,
    },
    /// No resolver that idp-lab knows was found.
    #[error(
        "no resolver idp-lab can configure under {}: looked for systemd-resolved (run/systemd/resolve/), NetworkManager with dns=dnsmasq (etc/NetworkManager/) and macOS; send the lab's suffix to its DNS server by hand",
        root.display()
    )]
    NoResolver {
        /// The root looked under.
        root: PathBuf,
    },
    /// A file is where idp-lab would write, and idp-lab did not write it for this lab.
    #[error("{resolver}: {} exists and was not written by idp-lab for the lab `{lab}`; idp-lab does not overwrite it: move it away, or give the lab another suffix", path.display())]
    NotOurs {
        /// The resolver.
        resolver: Resolver,
        /// The file.
        path: PathBuf,
        /// The lab being set up.
        lab: String,
    },
    /// Another lab already routes the suffix.
    #[error("`{suffix}` is already sent to the DNS server of the lab `{lab}` ({}): run `idp-lab dns teardown --name {lab}` first, or give this lab another suffix", path.display())]
    Taken {
        /// The suffix.
        suffix: String,
        /// The lab that routes it.
        lab: String,
        /// The file that routes it.
        path: PathBuf,
    },
    /// The resolver's version cannot do what is asked.
    #[error("{resolver}: {reason}")]
    Unsupported {
        /// The resolver.
        resolver: Resolver,
        /// Why, and what to do instead.
        reason: String,
    },
    /// A file or directory could not be read, written or removed.
    #[error("{resolver}: cannot {action} {}: {source}; {hint}", path.display())]
    Io {
        /// The resolver.
        resolver: Resolver,
        /// What was being done (`read`, `write`, `remove`, `create`).
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
        /// How to recover.
        hint: String,
    },
    /// The tool that reloads the resolver is not installed.
    #[error(
        "{resolver}: the files are in place, but `{tool}` is not installed to reload it; run `{command}` where it is, or restart the resolver"
    )]
    ToolMissing {
        /// The resolver.
        resolver: Resolver,
        /// The tool.
        tool: String,
        /// The whole reload command.
        command: String,
    },
    /// The reload tool could not be started.
    #[error("{resolver}: the files are in place, but `{command}` cannot be run: {source}")]
    Spawn {
        /// The resolver.
        resolver: Resolver,
        /// The command line.
        command: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The reload tool failed.
    #[error("{resolver}: the files are in place, but `{command}` failed ({status}): {stderr}; {hint}")]
    Failed {
        /// The resolver.
        resolver: Resolver,
        /// The command line.
        command: String,
        /// Its exit status.
        status: ExitStatus,
        /// Its stderr (trimmed; `(no output)` when empty).
        stderr: String,
        /// How to recover.
        hint: String,
    },
}

/// Where the resolvers are: a root directory, the directories the reload tools are looked
/// for in, and whether to run them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    root: PathBuf,
    tool_dirs: Vec<PathBuf>,
    resolvers: Option<Vec<Resolver>>,
    reload: bool,
    systemd: Version,
}

/// How the systemd version is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    Probe,
    Given(Option<u32>),
}

impl Host {
    /// The resolvers under `root`, detected (see [`detect`]). Tools are looked for in
    /// `$PATH` and the `sbin` directories; they run only when `root` is `/`.
    pub fn new(root: &Path) -> Self {
        let mut tool_dirs: Vec<PathBuf> = std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
        for dir in ["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
            if !tool_dirs.iter().any(|d| d == Path::new(dir)) {
                tool_dirs.push(PathBuf::from(dir));
            }
        }
        Host { root: root.to_path_buf(), tool_dirs, resolvers: None, reload: root == Path::new("/"), systemd: Version::Probe }
    }

    /// The same host with exactly these resolvers instead of the detected ones (a test
    /// sets up macOS's on Linux with it).
    pub fn with_resolvers(mut self, resolvers: &[Resolver]) -> Self {
        let mut kinds = resolvers.to_vec();
        kinds.sort();
        kinds.dedup();
        self.resolvers = Some(kinds);
        self
    }

    /// The same host with the tools looked for only in `dirs` (a test puts stand-ins
    /// there).
    pub fn with_tool_dirs(mut self, dirs: impl IntoIterator<Item = PathBuf>) -> Self {
        self.tool_dirs = dirs.into_iter().collect();
        self
    }

    /// The same host with the reload commands run (`true`) or only reported (`false`),
    /// whatever the root.
    pub fn with_reload(mut self, reload: bool) -> Self {
        self.reload = reload;
        self
    }

    /// The same host with this systemd version (`None`: unknown) instead of the one found
    /// under the root.
    pub fn with_systemd_version(mut self, version: Option<u32>) -> Self {
        self.systemd = Version::Given(version);
        self
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The resolvers this host uses; see [`detect`].
    pub fn detect(&self) -> Vec<Resolver> {
        if let Some(kinds) = &self.resolvers {
            return kinds.clone();
        }
        let mut kinds = Vec::new();
        if self.at("/run/systemd/resolve").is_dir() {
            kinds.push(Resolver::SystemdResolved);
        }
        if nm_dns_mode(&self.root).as_deref() == Some("dnsmasq") {
            kinds.push(Resolver::NetworkManagerDnsmasq);
        }
        if cfg!(target_os = "macos") {
            kinds.push(Resolver::MacOs);
        }
        kinds
    }

    /// The systemd version under the root: the highest `libsystemd-shared-<N>` library
    /// found, else, on `/`, what `systemctl --version` says. `None` when neither tells.
    pub fn systemd_version(&self) -> Option<u32> {
        if let Version::Given(version) = self.systemd {
            return version;
        }
        let mut dirs = vec![self.at("/usr/lib/systemd"), self.at("/usr/lib64/systemd"), self.at("/lib/systemd")];
        for lib in [self.at("/usr/lib"), self.at("/lib")] {
            let Ok(entries) = std::fs::read_dir(&lib) else { continue };
            dirs.extend(entries.filter_map(|e| e.ok()).map(|e| e.path().join("systemd")));
        }
        let found = dirs
            .iter()
            .filter_map(|dir| std::fs::read_dir(dir).ok())
            .flat_map(|entries| entries.filter_map(|e| e.ok()))
            .filter_map(|e| shared_library_version(&e.file_name().to_string_lossy()))
            .max();
        if found.is_some() || self.root != Path::new("/") {
            return found;
        }
        let output = Command::new(self.tool("systemctl")?).arg("--version").stdin(Stdio::null()).output().ok()?;
        parse_systemctl_version(&String::from_utf8_lossy(&output.stdout))
    }

    /// Points every resolver found at the lab's DNS server for `target.suffix`; see
    /// [`setup`].
    ///
    /// Fails before changing anything when the lab name or the target is unusable, when no
    /// resolver is found, when a file idp-lab did not write is in the way, or when another
    /// lab routes the suffix. Then fails at the first file or reload that fails (the
    /// resolvers before it stay set up).
    pub fn setup(&self, lab: &str, target: &Target) -> Result<Setup, ResolverError> {
        check_lab(lab)?;
        target.check()?;
        let kinds = self.detect();
        if kinds.is_empty() {
            return Err(ResolverError::NoResolver { root: self.root.clone() });
        }
        let found = self.scan();
        if let Some(other) = found.iter().find(|f| f.mark.lab != lab && f.mark.suffix == target.suffix) {
            return Err(ResolverError::Taken { suffix: target.suffix.clone(), lab: other.mark.lab.clone(), path: other.path.clone() });
        }
        let plans = kinds.iter().map(|&kind| self.plan(kind, lab, target, &found)).collect::<Result<Vec<_>, _>>()?;
        let mut resolvers = Vec::new();
        for plan in plans {
            resolvers.push(self.apply(plan, true)?);
        }
        Ok(Setup { resolvers })
    }

    /// Removes every file written for `lab`; see [`teardown`].
    pub fn teardown(&self, lab: &str) -> Result<Teardown, ResolverError> {
        check_lab(lab)?;
        let detected = self.detect();
        let found = self.scan();
        let mut resolvers = Vec::new();
        for kind in Resolver::ALL {
            let remove = found.iter().filter(|f| f.resolver == kind && f.mark.lab == lab).map(|f| f.path.clone()).collect();
            let plan = Plan { resolver: kind, write: Vec::new(), remove, notes: Vec::new() };
            resolvers.push(self.apply(plan, detected.contains(&kind))?);
        }
        Ok(Teardown { resolvers })
    }

    /// Where `lab` is set up; see [`status`]. A lab name that cannot be used is set up
    /// nowhere.
    pub fn status(&self, lab: &str) -> Vec<Placement> {
        let detected = self.detect();
        let found = if check_lab(lab).is_ok() { self.scan() } else { Vec::new() };
        Resolver::ALL
            .iter()
            .map(|&kind| {
                let ours: Vec<&Found> = found.iter().filter(|f| f.resolver == kind && f.mark.lab == lab).collect();
                Placement {
                    resolver: kind,
                    detected: detected.contains(&kind),
                    files: ours.iter().map(|f| f.path.clone()).collect(),
                    target: ours.first().map(|f| f.mark.target()),
                }
            })
            .collect()
    }

    /// The files a resolver needs for the lab, after checking that nothing foreign is in
    /// their way, and the lab's other files of that resolver (to remove).
    fn plan(&self, kind: Resolver, lab: &str, target: &Target, found: &[Found]) -> Result<Plan, ResolverError> {
        let mut notes = Vec::new();
        let write = match kind {
            Resolver::SystemdResolved => {
                let version = self.systemd_version();
                let delegate = (self.resolved_delegate(lab), resolved_delegate(lab, target));
                let dropin = (self.resolved_dropin(lab), resolved_dropin(lab, target));
                match version {
                    Some(v) if v >= DELEGATES_SINCE => vec![delegate],
                    Some(v) => {
                        if v < PORT_SYNTAX_SINCE && target.port != 53 {
                            return Err(ResolverError::Unsupported {
                                resolver: kind,
                                reason: format!(
                                    "systemd {v} cannot send to a port other than 53 (DNS=addr:port needs systemd {PORT_SYNTAX_SINCE}); serve the lab's DNS on port 53, or use NetworkManager with dnsmasq"
                                ),
                            });
                        }
                        notes.push(legacy_note(&target.suffix, &format!("systemd {v}")));
                        notes.extend(self.global_dns_note(&target.suffix));
                        vec![dropin]
                    }
                    None => {
                        notes.push(legacy_note(&target.suffix, "the systemd version is unknown, so both files are written, and"));
                        notes.extend(self.global_dns_note(&target.suffix));
                        vec![delegate, dropin]
                    }
                }
            }
            Resolver::NetworkManagerDnsmasq => vec![(self.dnsmasq_file(lab), dnsmasq_conf(lab, target))],
            Resolver::MacOs => vec![(self.macos_file(&target.suffix), macos_conf(lab, target))],
        };
        for (path, _) in &write {
            let Some(text) = read_existing(kind, path)? else { continue };
            if parse_mark(&text).is_none_or(|mark| mark.lab != lab) {
                return Err(ResolverError::NotOurs { resolver: kind, path: path.clone(), lab: lab.to_owned() });
            }
        }
        let remove = found
            .iter()
            .filter(|f| f.resolver == kind && f.mark.lab == lab && !write.iter().any(|(p, _)| *p == f.path))
            .map(|f| f.path.clone())
            .collect();
        Ok(Plan { resolver: kind, write, remove, notes })
    }

    /// Writes and removes what `plan` says, then reloads the resolver when something
    /// changed and it `runs` on this host.
    fn apply(&self, plan: Plan, runs: bool) -> Result<Outcome, ResolverError> {
        let kind = plan.resolver;
        let mut files = Vec::new();
        for (path, text) in &plan.write {
            let existing = read_existing(kind, path)?;
            let change = match existing {
                Some(old) if old == *text => Change::Unchanged,
                Some(_) => Change::Replaced,
                None => Change::Created,
            };
            if change != Change::Unchanged {
                let dir = path.parent().unwrap_or(&self.root);
                std::fs::create_dir_all(dir).map_err(|e| io_error(kind, "create", dir, e))?;
                // /etc/resolver reads every file in it, so the temporary file goes beside it.
                let tmp_dir = if kind == Resolver::MacOs { dir.parent().unwrap_or(dir) } else { dir };
                write_file(kind, path, text, tmp_dir)?;
            }
            files.push(FileChange { path: path.clone(), change });
        }
        for path in &plan.remove {
            match std::fs::remove_file(path) {
                Ok(()) => files.push(FileChange { path: path.clone(), change: Change::Removed }),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error(kind, "remove", path, e)),
            }
        }
        let changed = files.iter().any(|f| f.change != Change::Unchanged);
        let reload = match (changed, runs, self.reload) {
            (false, _, _) => Reload::NotNeeded,
            (true, false, _) => Reload::NotRunning,
            (true, true, false) => Reload::Skipped { command: reload_line(kind) },
            (true, true, true) => self.run_reload(kind)?,
        };
        Ok(Outcome { resolver: kind, files, reload, notes: plan.notes })
    }

    /// Runs the reload command of `kind`.
    fn run_reload(&self, kind: Resolver) -> Result<Reload, ResolverError> {
        let (tool, args) = reload_command(kind);
        let line = reload_line(kind);
        let Some(program) = self.tool(tool) else {
            return Err(ResolverError::ToolMissing { resolver: kind, tool: tool.to_owned(), command: line });
        };
        let output = Command::new(program).args(args).stdin(Stdio::null()).output().map_err(|source| ResolverError::Spawn {
            resolver: kind,
            command: line.clone(),
            source,
        })?;
        if output.status.success() {
            return Ok(Reload::Done { command: line });
        }
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        Err(ResolverError::Failed {
            resolver: kind,
            hint: failure_hint(&stderr, &line),
            command: line,
            status: output.status,
            stderr: if stderr.is_empty() { "(no output)".to_owned() } else { stderr },
        })
    }

    /// Every file under the root that carries idp-lab's marker, for any lab.
    fn scan(&self) -> Vec<Found> {
        let dirs = [
            (Resolver::SystemdResolved, self.at("/etc/systemd/dns-delegate.d"), Some(".dns-delegate")),
            (Resolver::SystemdResolved, self.at("/etc/systemd/resolved.conf.d"), Some(".conf")),
            (Resolver::NetworkManagerDnsmasq, self.at("/etc/NetworkManager/dnsmasq.d"), Some(".conf")),
            (Resolver::MacOs, self.at("/etc/resolver"), None),
        ];
        let mut found = Vec::new();
        for (resolver, dir, ext) in dirs {
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            let mut paths: Vec<PathBuf> = entries
                .filter_map(|e| e.ok())
                .filter(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let named = match ext {
                        Some(ext) => name.starts_with(PREFIX) && name.ends_with(ext),
                        None => !name.starts_with('.'),
                    };
                    named && e.metadata().is_ok_and(|m| m.is_file() && m.len() <= SCAN_LIMIT)
                })
                .map(|e| e.path())
                .collect();
            paths.sort();
            for path in paths {
                let Ok(text) = std::fs::read_to_string(&path) else { continue };
                if let Some(mark) = parse_mark(&text) {
                    found.push(Found { resolver, path, mark });
                }
            }
        }
        found
    }

    /// A note when the host's own configuration already has global DNS servers: the
    /// global scope uses one of its servers at a time, so the lab's names may go to
    /// another one.
    fn global_dns_note(&self, suffix: &str) -> Option<String> {
        let mut files = vec![self.at("/etc/systemd/resolved.conf")];
        if let Ok(entries) = std::fs::read_dir(self.at("/etc/systemd/resolved.conf.d")) {
            let mut dropins: Vec<PathBuf> = entries
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "conf"))
                .filter(|p| !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(PREFIX)))
                .collect();
            dropins.sort();
            files.extend(dropins);
        }
        let servers: Vec<String> = files
            .iter()
            .filter_map(|f| std::fs::read_to_string(f).ok())
            .flat_map(|text| ini_values(&text, "Resolve", "DNS"))
            .filter(|v| !v.is_empty())
            .collect();
        (!servers.is_empty()).then(|| {
            format!(
                "the global DNS= also lists {}: resolved asks one global server at a time, so names under {suffix} may go there instead; move those servers to a link, or upgrade to systemd {DELEGATES_SINCE}",
                servers.join(" ")
            )
        })
    }

    fn resolved_delegate(&self, lab: &str) -> PathBuf {
        self.at("/etc/systemd/dns-delegate.d").join(format!("{PREFIX}{lab}.dns-delegate"))
    }

    fn resolved_dropin(&self, lab: &str) -> PathBuf {
        self.at("/etc/systemd/resolved.conf.d").join(format!("{PREFIX}{lab}.conf"))
    }

    fn dnsmasq_file(&self, lab: &str) -> PathBuf {
        self.at("/etc/NetworkManager/dnsmasq.d").join(format!("{PREFIX}{lab}.conf"))
    }

    fn macos_file(&self, suffix: &str) -> PathBuf {
        self.at("/etc/resolver").join(suffix)
    }

    /// `path` (absolute, as seen on the host) under the root.
    fn at(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }

    /// The tool `name` in the tool directories, when it is an executable file.
    fn tool(&self, name: &str) -> Option<PathBuf> {
        use std::os::unix::fs::PermissionsExt;
        self.tool_dirs.iter().map(|d| d.join(name)).find(|p| p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
    }
}

/// What setup or teardown is to do to one resolver.
struct Plan {
    resolver: Resolver,
    write: Vec<(PathBuf, String)>,
    remove: Vec<PathBuf>,
    notes: Vec<String>,
}

/// A file idp-lab wrote, found under the root.
struct Found {
    resolver: Resolver,
    path: PathBuf,
    mark: Mark,
}

/// What a file's marker says.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mark {
    lab: String,
    suffix: String,
    server: SocketAddr,
}

impl Mark {
    fn target(&self) -> Target {
        Target { suffix: self.suffix.clone(), address: self.server.ip(), port: self.server.port() }
    }
}

/// The marker line of a file: `# idp-lab: lab=<lab> suffix=<suffix> server=<addr>:<port>`.
fn parse_mark(text: &str) -> Option<Mark> {
    let line = text.lines().find_map(|l| l.strip_prefix(MARKER))?;
    let (mut lab, mut suffix, mut server) = (None, None, None);
    for field in line.split_whitespace() {
        match field.split_once('=') {
            Some(("lab", v)) => lab = Some(v.to_owned()),
            Some(("suffix", v)) => suffix = Some(v.to_owned()),
            Some(("server", v)) => server = v.parse().ok(),
            _ => {}
        }
    }
    Some(Mark { lab: lab?, suffix: suffix?, server: server? })
}

/// The comment every file begins with.
fn header(lab: &str, target: &Target) -> String {
    format!(
        "# Written by idp-lab for the lab `{lab}`: names under {suffix} go to the lab's DNS server {server}.\n\
         # `idp-lab dns teardown --name {lab}` removes this file; `idp-lab dns setup` rewrites it.\n\
         {MARKER}lab={lab} suffix={suffix} server={server}\n",
        suffix = target.suffix,
        server = target.server(),
    )
}

/// A server for systemd-resolved's `DNS=`: the address alone on port 53 (every version
/// reads it), else `addr:port` or `[addr]:port` (systemd 246 and later).
fn resolved_server(target: &Target) -> String {
    if target.port == 53 { target.address.to_string() } else { target.server().to_string() }
}

/// `<root>/etc/systemd/dns-delegate.d/idp-lab-<lab>.dns-delegate` (systemd 258+): a scope
/// that gets the names under the suffix and, with `DefaultRoute=no`, nothing else.
fn resolved_delegate(lab: &str, target: &Target) -> String {
    format!("{}[Delegate]\nDNS={}\nDomains=~{}\nDefaultRoute=no\n", header(lab, target), resolved_server(target), target.suffix)
}

/// `<root>/etc/systemd/resolved.conf.d/idp-lab-<lab>.conf` (before systemd 258): the
/// server joins the global scope, with the suffix as a routing-only domain.
fn resolved_dropin(lab: &str, target: &Target) -> String {
    format!("{}[Resolve]\nDNS={}\nDomains=~{}\n", header(lab, target), resolved_server(target), target.suffix)
}

/// `<root>/etc/NetworkManager/dnsmasq.d/idp-lab-<lab>.conf`: the names under the suffix
/// go to the lab's server, and may resolve to private addresses even with
/// `stop-dns-rebind`.
fn dnsmasq_conf(lab: &str, target: &Target) -> String {
    format!(
        "{}server=/{suffix}/{}#{}\nrebind-domain-ok=/{suffix}/\n",
        header(lab, target),
        target.address,
        target.port,
        suffix = target.suffix
    )
}

/// `<root>/etc/resolver/<suffix>` (macOS, resolver(5)): the file name is the domain.
fn macos_conf(lab: &str, target: &Target) -> String {
    format!("{}nameserver {}\nport {}\n", header(lab, target), target.address, target.port)
}

/// The note for systemd-resolved before delegates.
fn legacy_note(suffix: &str, why: &str) -> String {
    format!(
        "{why} has no DNS delegates (systemd {DELEGATES_SINCE}+): names under {suffix} go to the lab's server only, but resolved also sends it the names no routing domain claims (it refuses them, and the other servers answer them)"
    )
}

/// The program and arguments that make `kind` read its new configuration.
fn reload_command(kind: Resolver) -> (&'static str, &'static [&'static str]) {
    match kind {
        // `reload` rereads the configuration only from systemd 256 on; a restart works on
        // every version, and delegates need one.
        Resolver::SystemdResolved => ("systemctl", &["restart", "systemd-resolved.service"]),
        // Restarts NetworkManager's dnsmasq, which reads dnsmasq.d only when it starts.
        Resolver::NetworkManagerDnsmasq => ("nmcli", &["general", "reload", "dns-full"]),
        // mDNSResponder reads /etc/resolver by itself; the signal flushes its cache.
        Resolver::MacOs => ("killall", &["-HUP", "mDNSResponder"]),
    }
}

/// The reload command of `kind` as one line.
fn reload_line(kind: Resolver) -> String {
    let (tool, args) = reload_command(kind);
    std::iter::once(tool).chain(args.iter().copied()).collect::<Vec<_>>().join(" ")
}

fn failure_hint(stderr: &str, line: &str) -> String {
    let lower = stderr.to_ascii_lowercase();
    let denied = ["permission denied", "not permitted", "not authorized", "access denied", "must be root", "authentication"]
        .iter()
        .any(|w| lower.contains(w));
    if denied || !nix::unistd::geteuid().is_root() {
        format!("the resolver belongs to root: run with sudo (or run `sudo {line}` yourself)")
    } else {
        format!("run `{line}` yourself once the resolver is running; setting up again is safe")
    }
}

/// The version in a `libsystemd-shared-<N>[.<rest>].so` file name.
fn shared_library_version(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("libsystemd-shared-")?;
    if !rest.ends_with(".so") {
        return None;
    }
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The version in `systemctl --version`'s first line: `systemd 252 (252.36-1~deb12u1)`.
fn parse_systemctl_version(text: &str) -> Option<u32> {
    let mut words = text.lines().next()?.split_whitespace();
    if words.next()? != "systemd" {
        return None;
    }
    let digits: String = words.next()?.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The DNS mode NetworkManager ends up with under `root` (`dns=` in `[main]`), reading
/// its files in its own order: `NetworkManager.conf`, then the `conf.d/*.conf` snippets
/// sorted by name, a snippet in `etc` hiding one of the same name in `run` or `usr/lib`.
/// `None` when no file sets it.
fn nm_dns_mode(root: &Path) -> Option<String> {
    let at = |p: &str| root.join(p);
    let mut snippets: std::collections::BTreeMap<String, PathBuf> = std::collections::BTreeMap::new();
    for dir in ["usr/lib/NetworkManager/conf.d", "run/NetworkManager/conf.d", "etc/NetworkManager/conf.d"] {
        let Ok(entries) = std::fs::read_dir(at(dir)) else { continue };
        for entry in entries.filter_map(|e| e.ok()) {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".conf") && !name.starts_with('.') {
                snippets.insert(name, entry.path());
            }
        }
    }
    std::iter::once(at("etc/NetworkManager/NetworkManager.conf"))
        .chain(snippets.into_values())
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .flat_map(|text| ini_values(&text, "main", "dns"))
        // A value is one word; anything after it (an inline comment) is not part of it.
        .map(|v| v.split_whitespace().next().unwrap_or_default().to_owned())
        .next_back()
}

/// The values of `key` in the sections named `section` of an INI text, in order.
fn ini_values(text: &str, section: &str, key: &str) -> Vec<String> {
    let mut values = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = name.trim() == section;
            continue;
        }
        if !inside {
            continue;
        }
        if let Some((k, v)) = line.split_once('=')
            && k.trim() == key
        {
            values.push(v.trim().to_owned());
        }
    }
    values
}

/// A lab name: as the configuration has it (`idp_core::config::is_name`).
fn check_lab(lab: &str) -> Result<(), ResolverError> {
    if idp_core::config::is_name(lab) { Ok(()) } else { Err(ResolverError::BadLab { lab: lab.to_owned() }) }
}

/// A suffix that is a DNS name and nothing else: it becomes part of a file name and of a
/// configuration line, so no `/`, whitespace, `#` or empty label gets through.
fn check_suffix(suffix: &str) -> Result<(), ResolverError> {
    let bad = |reason: String| Err(ResolverError::BadSuffix { suffix: suffix.to_owned(), reason });
    if suffix.is_empty() {
        return bad("it is empty".to_owned());
    }
    if let Some(c) = suffix.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return bad(format!("it holds whitespace or a control character ({:?})", c));
    }
    if suffix.contains('/') {
        return bad("it holds `/`: a DNS name is not a path".to_owned());
    }
    if suffix.ends_with('.') && suffix.len() > 1 {
        return bad(format!("give it without the trailing dot ({})", suffix.trim_end_matches('.')));
    }
    if suffix.contains("..") || suffix.starts_with('.') {
        return bad("it has an empty label (`..` or a leading `.`)".to_owned());
    }
    if suffix.len() > 253 {
        return bad(format!("it is {} characters long; a DNS name has at most 253", suffix.len()));
    }
    if suffix.chars().any(|c| c.is_ascii_uppercase()) {
        return bad(format!("write it in lowercase ({})", suffix.to_ascii_lowercase()));
    }
    if let Some(c) = suffix.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.'))) {
        return bad(format!("`{c}` is not allowed: use letters, digits, `-` and `.`"));
    }
    let labels: Vec<&str> = suffix.split('.').collect();
    if labels.len() < 2 {
        return bad("it has one label, which would send a whole top-level domain to the lab; give at least two (e.g. idp.lab)".to_owned());
    }
    for label in labels {
        if label.len() > 63 {
            return bad(format!("the label `{label}` is {} characters long; a label has at most 63", label.len()));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return bad(format!("the label `{label}` begins or ends with `-`"));
        }
    }
    Ok(())
}

/// The contents of `path`, or `None` when there is no file there.
fn read_existing(kind: Resolver, path: &Path) -> Result<Option<String>, ResolverError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(kind, "read", path, e)),
    }
}

fn io_error(kind: Resolver, action: &'static str, path: &Path, source: io::Error) -> ResolverError {
    let hint = if source.kind() == io::ErrorKind::PermissionDenied {
        "the resolver's configuration belongs to root: run with sudo".to_owned()
    } else {
        "check the path and its parent directories".to_owned()
    };
    ResolverError::Io { resolver: kind, action, path: path.to_path_buf(), source, hint }
}

/// Writes `text` to `path` through a temporary file in `tmp_dir` (on the same file system)
/// and a rename, so that a resolver never reads half a file; readable by everyone (0644).
fn write_file(kind: Resolver, path: &Path, text: &str, tmp_dir: &Path) -> Result<(), ResolverError> {
    use std::os::unix::fs::PermissionsExt;
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = tmp_dir.join(format!(".{file_name}.idp-lab.tmp"));
    let written = std::fs::write(&tmp, text)
        .and_then(|()| std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)))
        .and_then(|()| std::fs::rename(&tmp, path));
    written.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io_error(kind, "write", path, e)
    })
}

#[cfg(test)]
mod tests;
