//! The lab CA against real clients: `openssl verify`, `openssl s_server` and `curl`.
//! Both tools are required; a missing one fails the test with a message, never a skip.

use idp_edge::{EdgeError, LabCa, Leaf};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const SUFFIX: &str = "127-0-0-1.nip.io";

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Runs a tool, failing loudly when it is not installed.
fn run(tool: &str, args: &[&str]) -> Output {
    match Command::new(tool).args(args).output() {
        Ok(out) => out,
        Err(e) => panic!("this test needs `{tool}` on PATH (apt-get install {tool}): {e}"),
    }
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

struct Lab {
    _home: tempfile::TempDir,
    root: PathBuf,
    ca: LabCa,
}

impl Lab {
    fn new() -> Result<Lab, Box<dyn std::error::Error>> {
        let home = tempfile::tempdir()?;
        let root = home.path().to_path_buf();
        let ca = LabCa::load_or_create("demo", &root.join("ca"), &strings(&[SUFFIX]), false)?;
        Ok(Lab { _home: home, root, ca })
    }

    fn ca_file(&self) -> PathBuf {
        self.root.join("ca").join("ca.crt")
    }

    /// Writes a leaf to `<name>.crt` and `<name>.key`.
    fn write_leaf(&self, name: &str, leaf: &Leaf) -> std::io::Result<(PathBuf, PathBuf)> {
        let cert = self.root.join(format!("{name}.crt"));
        let key = self.root.join(format!("{name}.key"));
        std::fs::write(&cert, &leaf.cert_pem)?;
        std::fs::write(&key, &leaf.key_pem)?;
        Ok((cert, key))
    }

    fn verify(&self, leaf: &Path) -> Output {
        let ca = self.ca_file();
        run("openssl", &["verify", "-x509_strict", "-purpose", "sslserver", "-CAfile", path(&ca), path(leaf)])
    }
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap_or_else(|| panic!("non-UTF-8 temp path {p:?}"))
}

#[test]
fn openssl_verifies_the_wildcard_leaf_and_the_ca_profile() -> TestResult {
    let lab = Lab::new()?;
    let leaf = lab.ca.issue(&strings(&["*.127-0-0-1.nip.io", "127-0-0-1.nip.io"]))?;
    let (cert, _) = lab.write_leaf("wild", &leaf)?;
    let out = lab.verify(&cert);
    assert!(out.status.success(), "openssl verify refused the leaf: {}", text(&out));
    assert!(text(&out).contains(": OK"), "{}", text(&out));

    let ca_file = lab.ca_file();
    let ca_text = text(&run("openssl", &["x509", "-noout", "-text", "-in", path(&ca_file)]));
    for needle in [
        "Subject: CN = idp-lab demo CA",
        "ASN1 OID: prime256v1",
        "CA:TRUE, pathlen:0",
        "Certificate Sign, CRL Sign",
        "X509v3 Name Constraints: critical",
        "DNS:127-0-0-1.nip.io",
        "IP:0.0.0.0/0.0.0.0",
        "IP:0:0:0:0:0:0:0:0/0:0:0:0:0:0:0:0",
    ] {
        assert!(ca_text.contains(needle), "CA lacks {needle:?}:\n{ca_text}");
    }
    let leaf_text = text(&run("openssl", &["x509", "-noout", "-text", "-in", path(&cert)]));
    for needle in [
        "Subject: CN = idp-lab demo edge",
        "Issuer: CN = idp-lab demo CA",
        "ASN1 OID: prime256v1",
        "CA:FALSE",
        "TLS Web Server Authentication",
        "DNS:*.127-0-0-1.nip.io, DNS:127-0-0-1.nip.io",
        "X509v3 Authority Key Identifier",
    ] {
        assert!(leaf_text.contains(needle), "leaf lacks {needle:?}:\n{leaf_text}");
    }
    let days = run("openssl", &["x509", "-noout", "-checkend", &(366 * 86400).to_string(), "-in", path(&cert)]);
    assert!(!days.status.success(), "leaf valid for more than 366 days");
    let days = run("openssl", &["x509", "-noout", "-checkend", &(364 * 86400).to_string(), "-in", path(&cert)]);
    assert!(days.status.success(), "leaf valid for less than 364 days");
    Ok(())
}

#[test]
fn openssl_rejects_leaves_outside_the_name_constraints() -> TestResult {
    let lab = Lab::new()?;
    // issue() refuses them itself ...
    for name in ["www.example.com", "nip.io"] {
        let refused = lab.ca.issue(&strings(&[name]));
        assert!(matches!(refused, Err(EdgeError::OutsideConstraints { .. })), "{name}: {refused:?}");
    }
    // ... and a leaf signed anyway is refused by the client.
    let outside = lab.ca.issue_unchecked(&strings(&["www.example.com"]))?;
    let (cert, _) = lab.write_leaf("outside", &outside)?;
    let out = lab.verify(&cert);
    assert!(!out.status.success(), "openssl accepted www.example.com: {}", text(&out));
    assert!(text(&out).contains("permitted subtree violation"), "not a name-constraints refusal: {}", text(&out));

    let ip = lab.ca.issue_unchecked(&strings(&["127.0.0.1"]))?;
    let (cert, _) = lab.write_leaf("ip", &ip)?;
    let out = lab.verify(&cert);
    assert!(!out.status.success(), "openssl accepted an IP leaf: {}", text(&out));
    assert!(text(&out).contains("excluded subtree violation"), "not a name-constraints refusal: {}", text(&out));
    Ok(())
}

/// An `openssl s_server` serving one leaf; killed on drop.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(cert: &Path, key: &Path) -> Result<(Server, u16), Box<dyn std::error::Error>> {
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?.port();
    let child = Command::new("openssl")
        .args(["s_server", "-quiet", "-www", "-accept"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["-cert", path(cert), "-key", path(key)])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("this test needs `openssl` on PATH: {e}"));
    let mut server = Server(child);
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if let Some(status) = server.0.try_wait()? {
            return Err(format!("openssl s_server exited early: {status}").into());
        }
        if Instant::now() > deadline {
            return Err("openssl s_server did not listen within 10 s".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok((server, port))
}

fn curl(ca: &Path, host: &str, port: u16) -> Output {
    let resolve = format!("{host}:{port}:127.0.0.1");
    let url = format!("https://{host}:{port}/");
    run("curl", &["-sS", "--fail", "--max-time", "10", "--cacert", path(ca), "--resolve", &resolve, &url])
}

#[test]
fn curl_trusts_a_permitted_name_and_refuses_one_outside() -> TestResult {
    let lab = Lab::new()?;

    // The setup works: a permitted name, served with its leaf, is trusted.
    let good = lab.ca.issue(&strings(&["*.127-0-0-1.nip.io", "127-0-0-1.nip.io"]))?;
    let (cert, key) = lab.write_leaf("good", &good)?;
    let (server, port) = serve(&cert, &key)?;
    let out = curl(&lab.ca_file(), "app.127-0-0-1.nip.io", port);
    assert!(out.status.success(), "curl refused a permitted name: {}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("s_server"), "{}", text(&out));
    drop(server);

    // The same setup with a name outside the constraints is refused, for the
    // certificate (curl exit 60), not for the connection.
    let bad = lab.ca.issue_unchecked(&strings(&["www.example.com"]))?;
    let (cert, key) = lab.write_leaf("bad", &bad)?;
    let (_server, port) = serve(&cert, &key)?;
    let out = curl(&lab.ca_file(), "www.example.com", port);
    assert_eq!(out.status.code(), Some(60), "curl did not refuse the certificate: {}", text(&out));
    assert!(text(&out).contains("permitted subtree violation"), "not a name-constraints refusal: {}", text(&out));
    Ok(())
}

#[test]
fn the_ca_is_stable_until_renewed() -> TestResult {
    let home = tempfile::tempdir()?;
    let dir = home.path().join("lab").join("ca");
    let suffixes = strings(&[SUFFIX]);
    let first = LabCa::load_or_create("demo", &dir, &suffixes, false)?;
    assert!(first.is_new());
    let on_disk = std::fs::read(dir.join("ca.crt"))?;
    assert_eq!(on_disk, first.cert_pem().as_bytes());

    let second = LabCa::load_or_create("demo", &dir, &suffixes, false)?;
    assert!(!second.is_new());
    assert_eq!(second.cert_pem(), first.cert_pem());
    assert_eq!(std::fs::read(dir.join("ca.crt"))?, on_disk);
    // A suffix under a permitted one is covered too.
    let third = LabCa::load_or_create("demo", &dir, &strings(&["x.127-0-0-1.nip.io"]), false)?;
    assert_eq!(third.cert_pem(), first.cert_pem());

    // A leaf issued by the loaded CA chains to the certificate on disk.
    let leaf = second.issue(&strings(&["*.127-0-0-1.nip.io"]))?;
    let leaf_file = home.path().join("leaf.crt");
    std::fs::write(&leaf_file, &leaf.cert_pem)?;
    let ca_file = dir.join("ca.crt");
    let out = run("openssl", &["verify", "-CAfile", path(&ca_file), path(&leaf_file)]);
    assert!(out.status.success(), "{}", text(&out));

    let renewed = LabCa::load_or_create("demo", &dir, &suffixes, true)?;
    assert!(renewed.is_new());
    assert_ne!(renewed.cert_pem(), first.cert_pem());
    assert_eq!(std::fs::read(dir.join("ca.crt"))?, renewed.cert_pem().as_bytes());
    let out = run("openssl", &["verify", "-CAfile", path(&ca_file), path(&leaf_file)]);
    assert!(!out.status.success(), "the old leaf chains to the new CA: {}", text(&out));
    Ok(())
}

#[test]
fn the_key_is_private_and_written_whole() -> TestResult {
    let home = tempfile::tempdir()?;
    let dir = home.path().join("ca");
    LabCa::load_or_create("demo", &dir, &strings(&[SUFFIX]), false)?;
    let mode = |p: &Path| -> std::io::Result<u32> { Ok(std::fs::metadata(p)?.permissions().mode() & 0o777) };
    assert_eq!(mode(&dir.join("ca.key"))?, 0o600);
    assert_eq!(mode(&dir.join("ca.crt"))?, 0o644);
    assert_eq!(mode(&dir)?, 0o700);
    let names: Vec<String> =
        std::fs::read_dir(&dir)?.map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned())).collect::<Result<_, _>>()?;
    let mut names = names;
    names.sort();
    assert_eq!(names, ["ca.crt", "ca.key"], "temporary files left behind");
    let key = std::fs::read_to_string(dir.join("ca.key"))?;
    assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"), "{}", &key[..30]);

    // openssl reads it as a P-256 key that matches the certificate.
    let key_file = dir.join("ca.key");
    let cert_file = dir.join("ca.crt");
    let from_key = run("openssl", &["pkey", "-in", path(&key_file), "-pubout"]);
    let from_cert = run("openssl", &["x509", "-in", path(&cert_file), "-noout", "-pubkey"]);
    assert!(from_key.status.success(), "{}", text(&from_key));
    assert_eq!(from_key.stdout, from_cert.stdout);

    // A key others can read is refused on load.
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644))?;
    let err = LabCa::load_or_create("demo", &dir, &strings(&[SUFFIX]), false).err().ok_or("a world-readable key was accepted")?;
    assert!(matches!(err, EdgeError::KeyPermissions { mode: 0o644, .. }), "{err}");
    assert!(err.to_string().contains("chmod 600"), "{err}");
    Ok(())
}

#[test]
fn damaged_or_mismatched_files_are_precise_errors() -> TestResult {
    let home = tempfile::tempdir()?;
    let dir = home.path().join("ca");
    let suffixes = strings(&[SUFFIX]);
    LabCa::load_or_create("demo", &dir, &suffixes, false)?;
    let key_file = dir.join("ca.key");
    let cert_file = dir.join("ca.crt");
    let good_key = std::fs::read_to_string(&key_file)?;
    let good_cert = std::fs::read_to_string(&cert_file)?;

    // A corrupted key.
    std::fs::write(&key_file, "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")?;
    let err = LabCa::load_or_create("demo", &dir, &suffixes, false).err().ok_or("a corrupted key was accepted")?;
    assert!(matches!(err, EdgeError::BadKey { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("ca.key") && msg.contains("--new-ca"), "{msg}");

    // Another CA's key.
    let other = tempfile::tempdir()?;
    LabCa::load_or_create("demo", other.path(), &suffixes, false)?;
    std::fs::copy(other.path().join("ca.key"), &key_file)?;
    let err = LabCa::load_or_create("demo", &dir, &suffixes, false).err().ok_or("a foreign key was accepted")?;
    assert!(matches!(err, EdgeError::KeyMismatch { .. }), "{err:?}");
    assert!(err.to_string().contains("--new-ca"), "{err}");

    // A corrupted certificate (the base64 damaged, or cut short).
    std::fs::write(&key_file, &good_key)?;
    std::fs::write(&cert_file, good_cert.replacen("MII", "M!I", 1))?;
    let err = LabCa::load_or_create("demo", &dir, &suffixes, false).err().ok_or("a corrupted certificate was accepted")?;
    assert!(matches!(err, EdgeError::BadCertificate { .. }), "{err:?}");
    let lines: Vec<&str> = good_cert.lines().collect();
    let mut cut = lines[..lines.len() - 4].join("\n");
    cut.push_str("\n-----END CERTIFICATE-----\n");
    std::fs::write(&cert_file, cut)?;
    let err = LabCa::load_or_create("demo", &dir, &suffixes, false).err().ok_or("a truncated certificate was accepted")?;
    assert!(matches!(err, EdgeError::BadCertificate { .. }), "{err:?}");
    assert!(err.to_string().contains("--new-ca"), "{err}");

    // Only one of the two files.
    std::fs::remove_file(&cert_file)?;
    let err = LabCa::load_or_create("demo", &dir, &suffixes, false).err().ok_or("a CA without its certificate was accepted")?;
    assert!(matches!(err, EdgeError::Incomplete { .. }), "{err:?}");
    assert!(err.to_string().contains("--new-ca"), "{err}");

    // --new-ca repairs all of it.
    let ca = LabCa::load_or_create("demo", &dir, &suffixes, true)?;
    assert!(ca.is_new());
    LabCa::load_or_create("demo", &dir, &suffixes, false)?;
    Ok(())
}

#[test]
fn a_new_suffix_outside_the_constraints_asks_for_a_new_ca() -> TestResult {
    let home = tempfile::tempdir()?;
    let dir = home.path().join("ca");
    let old = LabCa::load_or_create("demo", &dir, &strings(&[SUFFIX]), false)?;
    let moved = strings(&[SUFFIX, "192-168-1-20.nip.io"]);
    let err = LabCa::load_or_create("demo", &dir, &moved, false).err().ok_or("an uncovered suffix was accepted")?;
    assert!(matches!(err, EdgeError::NotCovered { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("192-168-1-20.nip.io") && msg.contains("--new-ca"), "{msg}");

    let new = LabCa::load_or_create("demo", &dir, &moved, true)?;
    assert_ne!(new.cert_pem(), old.cert_pem());
    assert_eq!(new.permitted_suffixes(), moved.as_slice());
    new.issue(&strings(&["*.192-168-1-20.nip.io"]))?;
    Ok(())
}

#[test]
fn bad_input_is_an_error() {
    let home = match tempfile::tempdir() {
        Ok(h) => h,
        Err(e) => panic!("no temp dir: {e}"),
    };
    let dir = home.path().join("ca");
    assert!(matches!(LabCa::load_or_create("demo", &dir, &[], false), Err(EdgeError::NoSuffixes)));
    assert!(matches!(LabCa::load_or_create("demo", &dir, &strings(&["bad_name.io"]), false), Err(EdgeError::InvalidName { .. })));
    assert!(!dir.exists(), "a refused call created the CA folder");
}
