use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::process::Child;
use std::time::{Duration, Instant};

use super::*;

const NAME: &str = "idp-lab-test";

// --- helpers ---------------------------------------------------------------------

/// Whether the host tools a test needs are there. A missing one is a loud skip, and a
/// failure in CI (`CI=true`), as the test bed's skip rule has it.
fn have(test: &str, tools: &[&str]) -> bool {
    let target = Target::new(Path::new("/"));
    let mut missing: Vec<&str> = tools.iter().copied().filter(|t| target.tool(t).is_none()).collect();
    if tools.contains(&DEBIAN_TOOL) && !Command::new("dpkg").args(["-s", "ca-certificates"]).output().is_ok_and(|o| o.status.success()) {
        missing.push("the ca-certificates package");
    }
    if missing.is_empty() {
        return true;
    }
    let reason = format!("missing {} (apt-get install -y ca-certificates libnss3-tools openssl curl)", missing.join(", "));
    if std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true")) {
        panic!("{test} cannot run in CI: {reason}");
    }
    let _ = io::stderr().lock().write_all(format!("\nSKIPPED: trust::tests::{test}: {reason}\n").as_bytes());
    if let Some(log) = std::env::var_os("IDP_LAB_SKIP_LOG").filter(|l| !l.is_empty()) {
        let line = format!("trust::tests::{test}\t{reason}\n");
        let _ = std::fs::OpenOptions::new().create(true).append(true).open(log).and_then(|mut f| f.write_all(line.as_bytes()));
    }
    false
}

fn sh(program: &str, args: &[&str], dir: &Path) -> Output {
    let out = Command::new(program).args(args).current_dir(dir).output().expect("run a tool");
    assert!(out.status.success(), "{program} {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// A CA and a leaf for `lab.test` it signed, made with the openssl CLI.
struct Pki {
    dir: tempfile::TempDir,
    ca: String,
}

impl Pki {
    fn new(cn: &str) -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
        let subject = format!("/CN={cn}");
        let mut ca_args = vec!["req", "-x509", "-days", "2", "-keyout", "ca.key", "-out", "ca.pem", "-subj", &subject];
        ca_args.extend(ec);
        ca_args.extend(["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
        sh("openssl", &ca_args, d);
        let mut csr_args = vec!["req", "-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=lab.test"];
        csr_args.extend(ec);
        sh("openssl", &csr_args, d);
        std::fs::write(d.join("leaf.ext"), "subjectAltName=DNS:lab.test\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
            .expect("ext");
        sh(
            "openssl",
            &[
                "x509",
                "-req",
                "-in",
                "leaf.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "leaf.ext",
                "-out",
                "leaf.pem",
            ],
            d,
        );
        let ca = std::fs::read_to_string(d.join("ca.pem")).expect("ca.pem");
        Pki { dir, ca }
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }
}

/// `openssl s_server -www` with the leaf on a free loopback port; killed on drop.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(pki: &Pki) -> Server {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind").local_addr().expect("addr").port();
        let child = Command::new("openssl")
            .arg("s_server")
            .arg("-cert")
            .arg(pki.path("leaf.pem"))
            .arg("-key")
            .arg(pki.path("leaf.key"))
            .arg("-accept")
            .arg(format!("127.0.0.1:{port}"))
            .arg("-www")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start openssl s_server");
        let server = Server { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
            assert!(Instant::now() < deadline, "openssl s_server does not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// curl's exit code for `https://lab.test:<port>/` with only `bundle` as CAs.
    fn curl(&self, bundle: &Path) -> i32 {
        let empty = tempfile::tempdir().expect("tempdir");
        let resolve = format!("lab.test:{}:127.0.0.1", self.port);
        let out = Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "--max-time", "10", "--resolve", &resolve])
            .arg(format!("https://lab.test:{}/", self.port))
            // Debian's curl 7.88 has its bundle compiled in and ignores OpenSSL's
            // SSL_CERT_FILE (and CURL_CA_BUNDLE once --capath is given), so the bundle is
            // passed as --cacert; the empty --capath keeps the host's /etc/ssl/certs out.
            .arg("--cacert")
            .arg(bundle)
            .arg("--capath")
            .arg(empty.path())
            .env("SSL_CERT_FILE", bundle)
            .output()
            .expect("run curl");
        out.status.code().unwrap_or(-1)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// curl's exit code when the peer's certificate cannot be verified.
const CURL_UNTRUSTED: i32 = 60;

fn bundle(root: &Path) -> PathBuf {
    root.join("etc/ssl/certs/ca-certificates.crt")
}

fn change(outcomes: &[Outcome], store: &Store) -> Change {
    outcomes.iter().find(|o| o.store == *store).map(|o| o.change.clone()).unwrap_or_else(|| panic!("no {store} in {outcomes:?}"))
}

fn count_certs(path: &Path) -> usize {
    pem_blocks(&read_or_empty(path)).len()
}

/// A directory with fake tools: each `name` a shell script with body `script`.
fn fake_tools(tools: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, script) in tools {
        let path = dir.path().join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).expect("write tool");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    dir
}

// --- Debian: the bundle, checked with a real TLS handshake ------------------------------

#[test]
fn curl_trusts_the_lab_only_between_install_and_uninstall() {
    if !have("curl_trusts_the_lab_only_between_install_and_uninstall", &[DEBIAN_TOOL, "openssl", "curl"]) {
        return;
    }
    let lab = Pki::new("idp-lab test CA");
    let other = Pki::new("another CA");
    let server = Server::start(&lab);
    let root = tempfile::tempdir().expect("root");
    let root = root.path();
    let target = Target::new(root).with_homes([]);

    // Another CA first, so that the bundle exists and the failure is a verification one.
    target.install("idp-lab-other", &other.ca).expect("install the other CA");
    assert_eq!(server.curl(&bundle(root)), CURL_UNTRUSTED, "not trusted before install");
    assert_eq!(target.status(NAME, &lab.ca).state(&Store::Debian), Some(&State::NotTrusted));

    let installed = target.install(NAME, &lab.ca).expect("install");
    assert_eq!(change(&installed.stores, &Store::Debian), Change::Added);
    assert!(installed.changed());
    assert!(root.join("usr/local/share/ca-certificates/idp-lab-test.crt").is_file());
    assert!(root.join("etc/ssl/certs/idp-lab-test.pem").exists(), "the script's link");
    assert_eq!(server.curl(&bundle(root)), 0, "trusted after install");
    assert_eq!(target.status(NAME, &lab.ca).state(&Store::Debian), Some(&State::Trusted));

    let again = target.install(NAME, &lab.ca).expect("install again");
    assert_eq!(change(&again.stores, &Store::Debian), Change::AlreadyDone);
    assert!(!again.changed());

    let removed = target.uninstall(NAME).expect("uninstall");
    assert_eq!(change(&removed.stores, &Store::Debian), Change::Removed);
    assert_eq!(server.curl(&bundle(root)), CURL_UNTRUSTED, "not trusted after uninstall");
    assert!(root.join("etc/ssl/certs/idp-lab-test.pem").symlink_metadata().is_err(), "the link is gone, not left dangling");
    assert!(Cert::parse(&other.ca).expect("other").is_in(&read_or_empty(&bundle(root))), "the other CA stays");
    assert_eq!(target.status(NAME, &lab.ca).state(&Store::Debian), Some(&State::NotTrusted));

    let again = target.uninstall(NAME).expect("uninstall again");
    assert_eq!(change(&again.stores, &Store::Debian), Change::AlreadyDone);
    assert!(!again.changed());
}

#[test]
fn install_works_on_a_fresh_root_and_uninstall_leaves_no_trust_behind() {
    if !have("install_works_on_a_fresh_root_and_uninstall_leaves_no_trust_behind", &[DEBIAN_TOOL, "openssl", "curl"]) {
        return;
    }
    let lab = Pki::new("idp-lab test CA");
    let server = Server::start(&lab);
    let root = tempfile::tempdir().expect("root");
    let root = root.path();
    let target = Target::new(root).with_homes([]);
    assert_ne!(server.curl(&bundle(root)), 0, "no bundle yet");

    target.install(NAME, &lab.ca).expect("install on an empty root");
    assert_eq!(server.curl(&bundle(root)), 0, "trusted after install");
    assert_eq!(count_certs(&bundle(root)), 1);

    // With no certificate left the script keeps the old bundle; uninstall must not.
    target.uninstall(NAME).expect("uninstall");
    assert_eq!(count_certs(&bundle(root)), 0, "{}", read_or_empty(&bundle(root)));
    assert_ne!(server.curl(&bundle(root)), 0, "not trusted after uninstall");
}

#[test]
fn the_distribution_certificates_stay_in_the_bundle() {
    if !have("the_distribution_certificates_stay_in_the_bundle", &[DEBIAN_TOOL, "openssl"]) {
        return;
    }
    let conf = Path::new("/etc/ca-certificates.conf");
    if !conf.is_file() || !Path::new("/usr/share/ca-certificates").is_dir() {
        let _ = io::stderr()
            .lock()
            .write_all(b"\nSKIPPED: trust::tests::the_distribution_certificates_stay_in_the_bundle: no /etc/ca-certificates.conf\n");
        return;
    }
    let lab = Pki::new("idp-lab test CA");
    let root = tempfile::tempdir().expect("root");
    let root = root.path();
    std::fs::create_dir_all(root.join("etc")).expect("etc");
    std::fs::create_dir_all(root.join("usr/share")).expect("usr/share");
    std::fs::copy(conf, root.join("etc/ca-certificates.conf")).expect("copy the conf");
    std::os::unix::fs::symlink("/usr/share/ca-certificates", root.join("usr/share/ca-certificates")).expect("link the certs");
    let target = Target::new(root).with_homes([]);

    target.install(NAME, &lab.ca).expect("install");
    let with = count_certs(&bundle(root));
    assert!(with > 1, "the distribution's CAs are in the bundle ({with})");
    target.uninstall(NAME).expect("uninstall");
    assert_eq!(count_certs(&bundle(root)), with - 1, "only the lab CA went");
    // A non-empty configuration does not force a fresh run: uninstall asks for one.
    assert!(root.join("etc/ssl/certs/idp-lab-test.pem").symlink_metadata().is_err(), "no dangling link");
    assert!(!Cert::parse(&lab.ca).expect("ca").is_in(&read_or_empty(&bundle(root))));
}

#[test]
fn a_failing_tool_is_named_with_its_status_stderr_and_a_hint() {
    let tools = fake_tools(&[(DEBIAN_TOOL, "echo 'cannot write: Permission denied' >&2; exit 3")]);
    let root = tempfile::tempdir().expect("root");
    let target = Target::new(root.path()).with_homes([]).with_tool_dirs([tools.path().to_path_buf()]);
    let err = target.install(NAME, &test_cert()).expect_err("the tool fails");
    let msg = err.to_string();
    assert!(matches!(err, TrustError::Failed { ref status, .. } if status.code() == Some(3)), "{err:?}");
    for part in ["update-ca-certificates --certsconf", "exit status: 3", "Permission denied", "run with sudo"] {
        assert!(msg.contains(part), "{part:?} in {msg}");
    }
}

#[test]
fn a_tool_that_leaves_the_bundle_without_the_ca_is_an_error() {
    let tools = fake_tools(&[(DEBIAN_TOOL, "exit 0")]);
    let root = tempfile::tempdir().expect("root");
    let target = Target::new(root.path()).with_homes([]).with_tool_dirs([tools.path().to_path_buf()]);
    let err = target.install(NAME, &test_cert()).expect_err("nothing was regenerated");
    assert!(matches!(err, TrustError::NotApplied { store: Store::Debian, .. }), "{err:?}");
}

// --- NSS -------------------------------------------------------------------------------

/// A root with an empty NSS database in `/home/ada/.pki/nssdb`.
fn nss_root() -> (tempfile::TempDir, PathBuf) {
    let root = tempfile::tempdir().expect("root");
    let db = root.path().join("home/ada/.pki/nssdb");
    std::fs::create_dir_all(&db).expect("nssdb");
    sh(NSS_TOOL, &["-N", "-d", &format!("sql:{}", db.display()), "--empty-password"], root.path());
    (root, db)
}

fn certutil_list(db: &Path, name: Option<&str>) -> Output {
    let mut args = vec!["-L".to_owned(), "-d".to_owned(), format!("sql:{}", db.display())];
    if let Some(name) = name {
        args.extend(["-n".to_owned(), name.to_owned()]);
    }
    Command::new(NSS_TOOL).args(&args).output().expect("certutil -L")
}

#[test]
fn nss_databases_get_the_ca_with_tls_trust_and_lose_it() {
    if !have("nss_databases_get_the_ca_with_tls_trust_and_lose_it", &[NSS_TOOL, DEBIAN_TOOL, "openssl"]) {
        return;
    }
    let lab = Pki::new("idp-lab test CA");
    let (root, db) = nss_root();
    let target = Target::new(root.path()).with_homes([PathBuf::from("/home/ada")]);
    let store = Store::Nss { db: db.clone() };
    assert_eq!(target.status(NAME, &lab.ca).state(&store), Some(&State::NotTrusted));

    let installed = target.install(NAME, &lab.ca).expect("install");
    assert_eq!(change(&installed.stores, &store), Change::Added);
    let listed = certutil_list(&db, Some(NAME));
    assert!(listed.status.success(), "certutil -L -n lists it: {}", String::from_utf8_lossy(&listed.stderr));
    let all = String::from_utf8_lossy(&certutil_list(&db, None).stdout).into_owned();
    assert_eq!(nss_trusts(&all, NAME), ["C,,"], "{all}");
    assert_eq!(target.status(NAME, &lab.ca).state(&store), Some(&State::Trusted));
    assert!(target.status(NAME, &lab.ca).trusted_everywhere());

    let again = target.install(NAME, &lab.ca).expect("install again");
    assert_eq!(change(&again.stores, &store), Change::AlreadyDone);

    // A new CA for the same lab replaces the old one; it does not sit beside it.
    let renewed = Pki::new("idp-lab test CA, renewed");
    assert_eq!(target.status(NAME, &renewed.ca).state(&store), Some(&State::NotTrusted), "another certificate");
    let replaced = target.install(NAME, &renewed.ca).expect("install the new CA");
    assert_eq!(change(&replaced.stores, &store), Change::Replaced);
    let all = String::from_utf8_lossy(&certutil_list(&db, None).stdout).into_owned();
    assert_eq!(nss_trusts(&all, NAME).len(), 1, "{all}");
    assert_eq!(target.status(NAME, &renewed.ca).state(&store), Some(&State::Trusted));
    assert_eq!(target.status(NAME, &lab.ca).state(&store), Some(&State::NotTrusted));

    let removed = target.uninstall(NAME).expect("uninstall");
    assert_eq!(change(&removed.stores, &store), Change::Removed);
    assert!(!certutil_list(&db, Some(NAME)).status.success(), "gone");
    assert_eq!(target.status(NAME, &renewed.ca).state(&store), Some(&State::NotTrusted));
    let again = target.uninstall(NAME).expect("uninstall again");
    assert_eq!(change(&again.stores, &store), Change::AlreadyDone);
}

#[test]
fn firefox_profiles_are_found_and_homes_without_a_database_are_absent() {
    if !have("firefox_profiles_are_found_and_homes_without_a_database_are_absent", &[NSS_TOOL, DEBIAN_TOOL, "openssl"]) {
        return;
    }
    let root = tempfile::tempdir().expect("root");
    let profile = root.path().join("home/bob/.mozilla/firefox/abc.default-release");
    std::fs::create_dir_all(&profile).expect("profile");
    sh(NSS_TOOL, &["-N", "-d", &format!("sql:{}", profile.display()), "--empty-password"], root.path());
    std::fs::create_dir_all(root.path().join("home/eve")).expect("eve");
    let target = Target::new(root.path()).with_homes([PathBuf::from("/home/bob"), PathBuf::from("/home/eve")]);

    let lab = Pki::new("idp-lab test CA");
    target.install(NAME, &lab.ca).expect("install");
    let status = target.status(NAME, &lab.ca);
    assert_eq!(status.state(&Store::Nss { db: profile }), Some(&State::Trusted));
    assert_eq!(status.state(&Store::Nss { db: root.path().join("home/eve/.pki/nssdb") }), Some(&State::Absent));
    assert!(status.trusted_everywhere(), "{status:?}");
}

#[test]
fn a_broken_nss_database_is_unknown_in_status_and_an_error_on_install() {
    if !have("a_broken_nss_database_is_unknown_in_status_and_an_error_on_install", &[NSS_TOOL, DEBIAN_TOOL]) {
        return;
    }
    let root = tempfile::tempdir().expect("root");
    let db = root.path().join("home/ada/.pki/nssdb");
    std::fs::create_dir_all(&db).expect("nssdb");
    std::fs::write(db.join("cert9.db"), "not a database").expect("cert9.db");
    let target = Target::new(root.path()).with_homes([PathBuf::from("/home/ada")]);
    let store = Store::Nss { db: db.clone() };
    assert!(matches!(target.status(NAME, &test_cert()).state(&store), Some(State::Unknown { .. })));
    let err = target.install(NAME, &test_cert()).expect_err("a broken database");
    let msg = err.to_string();
    assert!(matches!(err, TrustError::Failed { store: Store::Nss { .. }, .. }), "{err:?}");
    assert!(msg.contains("certutil -L -d sql:") && msg.contains("exit status"), "{msg}");
}

// --- states without the tools -------------------------------------------------------------

#[test]
fn status_reports_absent_stores_and_missing_tools() {
    let root = tempfile::tempdir().expect("root");
    let empty = tempfile::tempdir().expect("no tools");
    let none = || Target::new(root.path()).with_homes([PathBuf::from("/home/ada")]).with_tool_dirs([empty.path().to_path_buf()]);

    let status = none().status(NAME, &test_cert());
    assert!(status.stores.iter().all(|s| s.state == State::Absent), "{status:?}");
    assert!(!status.trusted_everywhere());
    let err = none().install(NAME, &test_cert()).expect_err("no store");
    assert!(matches!(err, TrustError::NoSystemStore { .. }), "{err:?}");
    assert!(err.to_string().contains("update-ca-certificates"), "{err}");

    // The stores appear, their tools do not.
    std::fs::create_dir_all(root.path().join("etc/ssl/certs")).expect("certs");
    let db = root.path().join("home/ada/.pki/nssdb");
    std::fs::create_dir_all(&db).expect("nssdb");
    std::fs::write(db.join("cert9.db"), "").expect("cert9.db");
    let status = none().status(NAME, &test_cert());
    assert_eq!(status.state(&Store::Debian), Some(&State::ToolMissing { tool: DEBIAN_TOOL.to_owned() }));
    assert_eq!(status.state(&Store::Nss { db: db.clone() }), Some(&State::ToolMissing { tool: NSS_TOOL.to_owned() }));
    assert_eq!(status.state(&Store::Fedora), Some(&State::Absent));
    assert_eq!(status.state(&Store::MacOs), Some(&State::Absent));

    let installed = none().install(NAME, &test_cert()).expect("skips what it cannot do");
    assert_eq!(change(&installed.stores, &Store::Debian), Change::ToolMissing { tool: DEBIAN_TOOL.to_owned() });
    assert!(!installed.changed());
    let removed = none().uninstall(NAME).expect("nothing seen to remove");
    assert!(!removed.changed());

    // A CA that is there and cannot be taken out is an error, not a silent success.
    let crt = root.path().join("usr/local/share/ca-certificates/idp-lab-test.crt");
    std::fs::create_dir_all(crt.parent().expect("parent")).expect("local dir");
    std::fs::write(&crt, test_cert()).expect("crt");
    let err = none().uninstall(NAME).expect_err("tool missing");
    assert!(matches!(err, TrustError::ToolMissing { store: Store::Debian, .. }), "{err:?}");
    assert!(err.to_string().contains("apt-get install ca-certificates"), "{err}");
}

#[test]
fn fedora_is_refused_under_another_root_without_running_its_tool() {
    let root = tempfile::tempdir().expect("root");
    let marker = root.path().join("ran");
    let tools = fake_tools(&[(FEDORA_TOOL, &format!("touch {}", marker.display()))]);
    std::fs::create_dir_all(root.path().join("etc/pki/ca-trust/source/anchors")).expect("anchors");
    let target = Target::new(root.path()).with_homes([]).with_tool_dirs([tools.path().to_path_buf()]);
    assert_eq!(target.status(NAME, &test_cert()).state(&Store::Fedora), Some(&State::NotTrusted));
    let err = target.install(NAME, &test_cert()).expect_err("not under a test root");
    assert!(matches!(err, TrustError::RootUnsupported { store: Store::Fedora, .. }), "{err:?}");
    assert!(!marker.exists(), "update-ca-trust did not run");
    assert!(!root.path().join("etc/pki/ca-trust/source/anchors/idp-lab-test.pem").exists());
}

#[test]
fn bad_names_and_certificates_are_refused_before_anything_changes() {
    let root = tempfile::tempdir().expect("root");
    let target = Target::new(root.path()).with_homes([]);
    for name in ["", ".hidden", "a/b", "a b", "../x"] {
        assert!(matches!(target.install(name, &test_cert()), Err(TrustError::BadName { .. })), "{name:?}");
        assert!(matches!(target.uninstall(name), Err(TrustError::BadName { .. })), "{name:?}");
    }
    for pem in ["", "hello", &format!("{}{}", test_cert(), test_cert()), "-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n"] {
        assert!(matches!(target.install(NAME, pem), Err(TrustError::BadCertificate { .. })), "{pem:?}");
    }
    assert!(std::fs::read_dir(root.path()).expect("root").next().is_none(), "nothing written");
    let status = target.status("a/b", &test_cert());
    assert!(status.stores.iter().all(|s| matches!(s.state, State::Unknown { .. } | State::Absent)), "{status:?}");
}

// --- command lines as data ----------------------------------------------------------------

fn argv(command: &Command) -> Vec<String> {
    std::iter::once(command.get_program()).chain(command.get_args()).map(|a| a.to_string_lossy().into_owned()).collect()
}

#[test]
fn the_debian_command_points_every_directory_under_the_root() {
    let tool = Path::new("/usr/sbin/update-ca-certificates");
    assert_eq!(
        argv(&debian_command(tool, Path::new("/tmp/r"), true)),
        [
            "/usr/sbin/update-ca-certificates",
            "--certsconf",
            "/tmp/r/etc/ca-certificates.conf",
            "--certsdir",
            "/tmp/r/usr/share/ca-certificates",
            "--localcertsdir",
            "/tmp/r/usr/local/share/ca-certificates",
            "--etccertsdir",
            "/tmp/r/etc/ssl/certs",
            "--hooksdir",
            "/tmp/r/etc/ca-certificates/update.d",
            "--fresh",
        ]
    );
    // With `/` they are the script's own defaults.
    let prod = argv(&debian_command(tool, Path::new("/"), false));
    assert_eq!(prod[2], "/etc/ca-certificates.conf");
    assert_eq!(prod[10], "/etc/ca-certificates/update.d");
    assert!(!prod.contains(&"--fresh".to_owned()));
}

#[test]
fn the_fedora_and_macos_commands_are_the_documented_ones() {
    assert_eq!(argv(&fedora_command(Path::new("/usr/bin/update-ca-trust"))), ["/usr/bin/update-ca-trust", "extract"]);
    assert_eq!(FedoraPaths::new(Path::new("/")).anchor(NAME), Path::new("/etc/pki/ca-trust/source/anchors/idp-lab-test.pem"));

    let paths = MacOsPaths::new(Path::new("/"));
    let copy = paths.copy(NAME);
    assert_eq!(copy, Path::new("/Library/Application Support/idp-lab/trust/idp-lab-test.pem"));
    let security = Path::new("/usr/bin/security");
    assert_eq!(
        argv(&macos_add_command(security, &paths.keychain, &copy)),
        [
            "/usr/bin/security",
            "add-trusted-cert",
            "-d",
            "-r",
            "trustRoot",
            "-k",
            "/Library/Keychains/System.keychain",
            "/Library/Application Support/idp-lab/trust/idp-lab-test.pem",
        ]
    );
    assert_eq!(
        argv(&macos_remove_command(security, &copy)),
        ["/usr/bin/security", "remove-trusted-cert", "-d", "/Library/Application Support/idp-lab/trust/idp-lab-test.pem"]
    );
    assert_eq!(
        argv(&macos_verify_command(security, &copy)),
        ["/usr/bin/security", "verify-cert", "-c", "/Library/Application Support/idp-lab/trust/idp-lab-test.pem", "-p", "ssl"]
    );
    assert_eq!(
        render(&macos_remove_command(security, &copy)),
        "/usr/bin/security remove-trusted-cert -d '/Library/Application Support/idp-lab/trust/idp-lab-test.pem'"
    );
}

#[test]
fn the_nss_commands() {
    let tool = Path::new("/usr/bin/certutil");
    let db = Path::new("/home/ada/.pki/nssdb");
    assert_eq!(
        argv(&nss_add_command(tool, db, NAME)),
        ["/usr/bin/certutil", "-A", "-d", "sql:/home/ada/.pki/nssdb", "-t", "C,,", "-n", NAME, "-a"]
    );
    assert_eq!(argv(&nss_delete_command(tool, db, NAME)), ["/usr/bin/certutil", "-D", "-d", "sql:/home/ada/.pki/nssdb", "-n", NAME]);
    assert_eq!(argv(&nss_list_command(tool, db, None)), ["/usr/bin/certutil", "-L", "-d", "sql:/home/ada/.pki/nssdb"]);
    assert_eq!(
        argv(&nss_list_command(tool, db, Some(NAME))),
        ["/usr/bin/certutil", "-L", "-d", "sql:/home/ada/.pki/nssdb", "-n", NAME, "-a"]
    );
}

// --- pure parts ------------------------------------------------------------------------------

/// A syntactically valid certificate block (never parsed as DER here).
fn test_cert() -> String {
    "-----BEGIN CERTIFICATE-----\nMIIBAAAAbbbb\nccccDDDD==\n-----END CERTIFICATE-----\n".to_owned()
}

#[test]
fn certificates_compare_by_their_body_whatever_the_line_breaks() {
    let cert = Cert::parse(&test_cert()).expect("parse");
    assert_eq!(cert.body, "MIIBAAAAbbbbccccDDDD==");
    assert!(cert.is_in(&format!("junk\n{}", cert.pem)));
    assert!(cert.is_in("-----BEGIN CERTIFICATE-----\r\n MIIBAAAAbbbbccccDDDD== \r\n-----END CERTIFICATE-----\r\n"));
    assert!(!cert.is_in("-----BEGIN CERTIFICATE-----\nMIIBAAAAbbbb\n-----END CERTIFICATE-----\n"));

    let other = "-----BEGIN CERTIFICATE-----\nOTHER\n-----END CERTIFICATE-----\n";
    let bundle = format!("{other}{}{other}", cert.pem);
    assert_eq!(cert.strip_from(&bundle), format!("{other}{other}"));
    assert_eq!(cert.strip_from(&cert.pem), "");
}

#[test]
fn nss_listings_give_the_trust_of_the_name() {
    let listing = "\nCertificate Nickname                                         Trust Attributes\n                                                             SSL,S/MIME,JAR/XPI\n\nidp-lab-test                                                 C,,  \nidp-lab-test-2                                               CT,C,C\nmy idp-lab-test                                              ,,\n";
    assert_eq!(nss_trusts(listing, NAME), ["C,,"]);
    assert_eq!(nss_trusts(listing, "idp-lab-test-2"), ["CT,C,C"]);
    assert_eq!(nss_trusts(listing, "my idp-lab-test"), [",,"]);
    assert!(nss_trusts(listing, "idp-lab").is_empty());
}

#[test]
fn homes_come_from_passwd_and_paths_go_under_the_root() {
    let passwd = "root:x:0:0:root:/root:/bin/bash\nada:x:1000:1000:Ada,,,:/home/ada:/bin/bash\nbad:line\n";
    assert_eq!(passwd_home(passwd, "ada"), Some(PathBuf::from("/home/ada")));
    assert_eq!(passwd_home(passwd, "bob"), None);
    assert_eq!(under(Path::new("/tmp/r"), Path::new("/home/ada")), Path::new("/tmp/r/home/ada"));
    assert_eq!(under(Path::new("/"), Path::new("/home/ada")), Path::new("/home/ada"));
}
