//! Certificates, keys and tokens of the stand-in server, kept under
//! `/var/lib/rancher/k3s/server/tls` so a restarted container reuses them.
//!
//! The CA, the admin client certificate and the service-account key persist;
//! the apiserver's serving certificate is re-issued at every start because
//! the container's addresses may have changed.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};
use sha2::{Digest as _, Sha256};

/// Paths and material of the server's PKI.
#[derive(Debug)]
pub struct Pki {
    /// CA certificate (PEM), also `certificate-authority-data` of kubeconfigs.
    pub ca_pem: String,
    /// CA certificate file.
    pub ca_cert: PathBuf,
    /// CA key file.
    pub ca_key: PathBuf,
    /// Serving certificate file of the apiserver.
    pub serving_cert: PathBuf,
    /// Serving key file of the apiserver.
    pub serving_key: PathBuf,
    /// Admin client certificate (PEM), CN `system:admin`, O `system:masters`.
    pub admin_cert_pem: String,
    /// Admin client key (PEM).
    pub admin_key_pem: String,
    /// Service-account signing key (PKCS#8 PEM).
    pub sa_key: PathBuf,
    /// Service-account public key (SPKI PEM).
    pub sa_pub: PathBuf,
}

/// Names and addresses the serving certificate must cover.
#[derive(Debug, Default)]
pub struct Sans {
    /// DNS names.
    pub dns: Vec<String>,
    /// IP addresses.
    pub ips: Vec<IpAddr>,
}

impl Sans {
    /// Adds a `--tls-san`-style entry: an IP when it parses as one.
    pub fn add(&mut self, entry: &str) {
        let entry = entry.trim();
        if entry.is_empty() {
            return;
        }
        match entry.parse::<IpAddr>() {
            Ok(ip) if !self.ips.contains(&ip) => self.ips.push(ip),
            Ok(_) => {}
            Err(_) => {
                let name = entry.to_lowercase();
                if !self.dns.contains(&name) {
                    self.dns.push(name);
                }
            }
        }
    }
}

fn write_private(path: &Path, contents: &str) -> Result<()> {
    crate::files::write_atomic(path, contents.as_bytes(), 0o600)
}

fn ca_params(cn: &str) -> Result<CertificateParams> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::hours(1);
    p.not_after = now + time::Duration::days(3650);
    Ok(p)
}

fn leaf_params(cn: &str, org: Option<&str>, days: i64) -> Result<CertificateParams> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    if let Some(o) = org {
        dn.push(DnType::OrganizationName, o);
    }
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    p.use_authority_key_identifier_extension = true;
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::hours(1);
    p.not_after = now + time::Duration::days(days);
    Ok(p)
}

impl Pki {
    /// Loads or creates the PKI in `dir` and issues a fresh serving
    /// certificate for `sans`.
    pub fn ensure(dir: &Path, sans: &Sans) -> Result<Pki> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let ca_cert = dir.join("server-ca.crt");
        let ca_key = dir.join("server-ca.key");
        let ca_cn_file = dir.join("server-ca.cn");

        // CA: reuse when all three files exist, else create anew.
        let existing = (std::fs::read_to_string(&ca_cert), std::fs::read_to_string(&ca_key), std::fs::read_to_string(&ca_cn_file));
        let (ca_pem, ca_keypair, ca_cn) = match existing {
            (Ok(pem), Ok(key), Ok(cn)) => {
                let kp = KeyPair::from_pem(&key).with_context(|| format!("parsing {}", ca_key.display()))?;
                (pem, kp, cn.trim().to_string())
            }
            _ => {
                let cn = format!("k3s-server-ca@{}", time::OffsetDateTime::now_utc().unix_timestamp());
                let kp = KeyPair::generate()?;
                let cert = ca_params(&cn)?.self_signed(&kp)?;
                write_private(&ca_key, &kp.serialize_pem())?;
                crate::files::write_atomic(&ca_cert, cert.pem().as_bytes(), 0o644)?;
                crate::files::write_atomic(&ca_cn_file, cn.as_bytes(), 0o644)?;
                (cert.pem(), kp, cn)
            }
        };
        // Signing needs only the CA's name, key and key-id method, all of
        // which are rebuilt identically from the stored CN and key.
        let issuer = Issuer::new(ca_params(&ca_cn)?, ca_keypair);

        // Serving certificate, re-issued every start.
        let mut serving = leaf_params("kube-apiserver", None, 365)?;
        serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        for name in &sans.dns {
            serving
                .subject_alt_names
                .push(SanType::DnsName(name.clone().try_into().with_context(|| format!("TLS SAN {name:?} is not a valid DNS name"))?));
        }
        for ip in &sans.ips {
            serving.subject_alt_names.push(SanType::IpAddress(*ip));
        }
        let serving_kp = KeyPair::generate()?;
        let serving_cert = serving.signed_by(&serving_kp, &issuer)?;
        let serving_cert_path = dir.join("serving-kube-apiserver.crt");
        let serving_key_path = dir.join("serving-kube-apiserver.key");
        crate::files::write_atomic(&serving_cert_path, serving_cert.pem().as_bytes(), 0o644)?;
        write_private(&serving_key_path, &serving_kp.serialize_pem())?;

        // Admin client certificate, persisted so exported kubeconfigs survive restarts.
        let admin_cert_path = dir.join("client-admin.crt");
        let admin_key_path = dir.join("client-admin.key");
        let (admin_cert_pem, admin_key_pem) = match (std::fs::read_to_string(&admin_cert_path), std::fs::read_to_string(&admin_key_path)) {
            (Ok(c), Ok(k)) => (c, k),
            _ => {
                let mut p = leaf_params("system:admin", Some("system:masters"), 3650)?;
                p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
                let kp = KeyPair::generate()?;
                let cert = p.signed_by(&kp, &issuer)?;
                crate::files::write_atomic(&admin_cert_path, cert.pem().as_bytes(), 0o644)?;
                write_private(&admin_key_path, &kp.serialize_pem())?;
                (cert.pem(), kp.serialize_pem())
            }
        };

        // Service-account key pair.
        let sa_key = dir.join("service.key");
        let sa_pub = dir.join("service.pub");
        if !(sa_key.exists() && sa_pub.exists()) {
            let kp = KeyPair::generate()?;
            write_private(&sa_key, &kp.serialize_pem())?;
            crate::files::write_atomic(&sa_pub, kp.public_key_pem().as_bytes(), 0o644)?;
        }

        Ok(Pki {
            ca_pem,
            ca_cert,
            ca_key,
            serving_cert: serving_cert_path,
            serving_key: serving_key_path,
            admin_cert_pem,
            admin_key_pem,
            sa_key,
            sa_pub,
        })
    }

    /// The CA as DER, for in-process clients.
    pub fn ca_der(&self) -> Result<Vec<u8>> {
        let body: String = self.ca_pem.lines().filter(|l| !l.starts_with("-----")).collect();
        base64_decode(&body).context("CA certificate PEM is not valid base64")
    }
}

/// The secret part of a k3s token: `K10<hash>::<user>:<secret>` yields
/// `<secret>`, anything else is taken whole.
pub fn token_secret(token: &str) -> &str {
    match token.strip_prefix("K10").and_then(|r| r.split_once("::")) {
        Some((_, creds)) => creds.split_once(':').map_or(creds, |(_, s)| s),
        None => token,
    }
}

/// The full ("secure") k3s token for a CA: `K10<sha256(ca pem)>::server:<secret>`.
pub fn full_token(ca_pem: &str, secret: &str) -> String {
    format!("K10{}::server:{secret}", hex(&Sha256::digest(ca_pem.as_bytes())))
}

/// The user name nodes authenticating with `token` get: `node:<12 hex>`.
pub fn node_user(token: &str) -> String {
    let digest = hex(&Sha256::digest(token_secret(token).as_bytes()));
    format!("node:{}", &digest[..12])
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `n` random bytes as hex, from the kernel.
pub fn random_hex(n: usize) -> Result<String> {
    use std::io::Read as _;
    let mut buf = vec![0u8; n];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut buf)).context("reading /dev/urandom")?;
    Ok(hex(&buf))
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (kubeconfig `*-data` fields).
pub fn base64(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(B64[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text.bytes().filter(|c| !c.is_ascii_whitespace() && *c != b'=') {
        let v = B64.iter().position(|x| *x == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        for (raw, enc) in [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foobar", "Zm9vYmFy")] {
            assert_eq!(base64(raw.as_bytes()), enc);
            assert_eq!(base64_decode(enc).as_deref(), Some(raw.as_bytes()));
        }
    }

    #[test]
    fn token_forms() {
        assert_eq!(token_secret("abc"), "abc");
        assert_eq!(token_secret("K10deadbeef::server:abc"), "abc");
        assert_eq!(node_user("abc"), node_user("K10ff::server:abc"));
        assert!(full_token("pem", "abc").starts_with("K10"));
        assert!(full_token("pem", "abc").ends_with("::server:abc"));
    }

    #[test]
    fn pki_is_created_and_reused() {
        let dir = std::env::temp_dir().join(format!("idp-testnode-pki-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut sans = Sans::default();
        for s in ["127.0.0.1", "localhost", "kubernetes", "127.0.0.1"] {
            sans.add(s);
        }
        assert_eq!(sans.ips.len(), 1);
        let a = Pki::ensure(&dir, &sans).expect("create");
        let b = Pki::ensure(&dir, &sans).expect("reuse");
        assert_eq!(a.ca_pem, b.ca_pem);
        assert_eq!(a.admin_cert_pem, b.admin_cert_pem);
        assert!(!a.ca_der().expect("der").is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
