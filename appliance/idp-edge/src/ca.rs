//! The lab CA: a certificate authority of one lab, constrained to the lab's DNS suffixes.
//!
//! The CA lives in the folder the caller passes (`<lab dir>/ca`): `ca.crt` (PEM, 0644)
//! and `ca.key` (PEM PKCS#8, 0600), both written through a temporary file and a rename,
//! in a folder kept at 0700. A user trusts `ca.crt` once; the CA then issues the leaf
//! certificates of the lab's names.
//!
//! Profile of the CA certificate: ECDSA P-256 with SHA-256, ten years, subject
//! `CN=idp-lab <lab> CA`, basicConstraints `CA:TRUE, pathlen:0` (critical), keyUsage
//! `keyCertSign, cRLSign` (critical), subjectKeyIdentifier, and nameConstraints
//! (critical): permitted DNS subtrees = the lab's suffixes, excluded IP ranges
//! `0.0.0.0/0` and `::/0`.
//!
//! Why the IP exclusion: name constraints only bind the name forms they list, so a CA
//! with DNS subtrees alone could still vouch for any IP address. The lab serves names
//! only (nip.io puts the address into the name), and a LAN address changes with the
//! network, so the CA is kept from vouching for any address at all.
//!
//! Profile of a leaf: ECDSA P-256, 365 days (never past the CA), subject
//! `CN=idp-lab <lab> edge`, subjectAltName = the names, basicConstraints `CA:FALSE`,
//! keyUsage `digitalSignature`, extendedKeyUsage `serverAuth`, subject and authority key
//! identifiers.

use crate::EdgeError;
use rcgen::{
    BasicConstraints, CertificateParams, CidrSubnet, DistinguishedName, DnType, ExtendedKeyUsagePurpose, GeneralSubtree, IsCa, Issuer,
    KeyIdMethod, KeyPair, KeyUsagePurpose, NameConstraints, PKCS_ECDSA_P256_SHA256, PublicKeyData, SanType,
};
use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};

/// The CA certificate's file name inside the CA folder.
pub const CERT_FILE: &str = "ca.crt";
/// The CA key's file name inside the CA folder.
pub const KEY_FILE: &str = "ca.key";

/// How long a new CA is valid.
const CA_VALIDITY: Duration = Duration::days(3650);
/// How long a leaf is valid (browsers accept at most 398 days).
const LEAF_VALIDITY: Duration = Duration::days(365);
/// How far back validity starts, for clocks a little behind (containers, VMs).
const BACKDATE: Duration = Duration::hours(1);
/// A CA with less left than this is treated as expired.
const MIN_REMAINING: Duration = Duration::days(1);

/// The lab CA, loaded from or created in its folder. Its key is not shown by `Debug`; it
/// leaves this value only through [`LabCa::for_cluster_issuer`], for the lab's own
/// cert-manager (the name constraints bound what either can sign).
pub struct LabCa {
    dir: PathBuf,
    cert_pem: String,
    common_name: String,
    permitted: Vec<String>,
    not_after: OffsetDateTime,
    created: bool,
    issuer: Issuer<'static, KeyPair>,
}

/// A leaf certificate and its private key, both PEM. `Debug` hides the key.
#[derive(Clone, PartialEq, Eq)]
pub struct Leaf {
    /// The certificate (PEM, one `CERTIFICATE` block).
    pub cert_pem: String,
    /// The private key (PEM PKCS#8, `PRIVATE KEY`).
    pub key_pem: String,
}

impl fmt::Debug for Leaf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Leaf").field("cert_pem", &self.cert_pem).field("key_pem", &"[redacted]").finish()
    }
}

impl fmt::Debug for LabCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LabCa")
            .field("dir", &self.dir)
            .field("common_name", &self.common_name)
            .field("permitted", &self.permitted)
            .field("not_after", &self.not_after)
            .field("created", &self.created)
            .field("key", &"[redacted]")
            .finish_non_exhaustive()
    }
}

impl LabCa {
    /// Loads the CA of lab `lab` from `dir`, or creates it there when it does not exist
    /// yet or `renew` is set (the `--new-ca` flag).
    ///
    /// A loaded CA must be whole (both files), its key must match its certificate and
    /// be readable by its owner only, it must not be expired, and its name constraints
    /// must still cover every one of `suffixes` (e.g. `127-0-0-1.nip.io`); otherwise the
    /// error says to rerun with `--new-ca`. A new CA is constrained to exactly
    /// `suffixes`.
    pub fn load_or_create(lab: &str, dir: &Path, suffixes: &[String], renew: bool) -> Result<LabCa, EdgeError> {
        let suffixes = suffixes.iter().map(|s| normalise_suffix(s)).collect::<Result<Vec<_>, _>>()?;
        if suffixes.is_empty() {
            return Err(EdgeError::NoSuffixes);
        }
        let cert_path = dir.join(CERT_FILE);
        let key_path = dir.join(KEY_FILE);
        let cert_exists = exists(&cert_path)?;
        let key_exists = exists(&key_path)?;
        if !renew && (cert_exists || key_exists) {
            if !key_exists {
                return Err(EdgeError::Incomplete { dir: dir.to_path_buf(), present: CERT_FILE, missing: KEY_FILE });
            }
            if !cert_exists {
                return Err(EdgeError::Incomplete { dir: dir.to_path_buf(), present: KEY_FILE, missing: CERT_FILE });
            }
            let ca = Self::load(dir)?;
            for suffix in &suffixes {
                if !covered(suffix, &ca.permitted) {
                    return Err(EdgeError::NotCovered { dir: dir.to_path_buf(), suffix: suffix.clone(), permitted: ca.permitted.clone() });
                }
            }
            return Ok(ca);
        }
        Self::create(lab, dir, &suffixes)
    }

    /// The CA certificate, PEM: what a browser or a cluster is told to trust.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA's certificate and key, PEM, as the Secret of the lab cluster's cert-manager
    /// `ca-issuer` holds them, so that what it issues chains to the CA the host trusts.
    /// Whatever it signs is bound by the same name constraints (the lab's suffixes, no IP
    /// addresses), so the cluster can mint certificates only for names it serves anyway.
    pub fn for_cluster_issuer(&self) -> Result<Leaf, EdgeError> {
        let key_path = self.dir.join(KEY_FILE);
        let key_pem = fs::read_to_string(&key_path).map_err(io("read", &key_path))?;
        Ok(Leaf { cert_pem: self.cert_pem.clone(), key_pem })
    }

    /// Where the CA certificate is stored.
    pub fn cert_path(&self) -> PathBuf {
        self.dir.join(CERT_FILE)
    }

    /// The DNS subtrees the CA may issue for (its permitted name constraints).
    pub fn permitted_suffixes(&self) -> &[String] {
        &self.permitted
    }

    /// When the CA certificate stops being valid.
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    /// Whether this call made the CA (so the user has to trust it, again or for the
    /// first time), rather than loading it.
    pub fn is_new(&self) -> bool {
        self.created
    }

    /// Issues a server certificate for `names` (DNS names, a leading `*.` for a
    /// wildcard), each of which must lie under one of the CA's permitted suffixes.
    pub fn issue(&self, names: &[String]) -> Result<Leaf, EdgeError> {
        if names.is_empty() {
            return Err(EdgeError::NoNames);
        }
        let names = names.iter().map(|n| normalise_leaf_name(n)).collect::<Result<Vec<_>, _>>()?;
        for name in &names {
            if !covered(name, &self.permitted) {
                return Err(EdgeError::OutsideConstraints { name: name.clone(), permitted: self.permitted.clone() });
            }
        }
        self.issue_unchecked(&names)
    }

    /// Issues a leaf for `names` as given, without checking them against the name
    /// constraints; an IP address becomes an IP SAN. Only for tests that prove clients
    /// enforce the constraints.
    #[doc(hidden)]
    pub fn issue_unchecked(&self, names: &[String]) -> Result<Leaf, EdgeError> {
        let mut sans = Vec::with_capacity(names.len());
        for name in names {
            let san = match name.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(
                    name.as_str().try_into().map_err(|source| EdgeError::Generate { what: "leaf certificate's names", source })?,
                ),
            };
            sans.push(san);
        }
        let now = OffsetDateTime::now_utc();
        let not_before = now - BACKDATE;
        let not_after = (not_before + LEAF_VALIDITY).min(self.not_after);
        if not_after <= now {
            return Err(EdgeError::Expired { path: self.cert_path(), not_after: self.not_after });
        }
        let mut params = CertificateParams::default();
        params.distinguished_name = common_name(&leaf_common_name(&self.common_name));
        params.subject_alt_names = sans;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.not_before = not_before;
        params.not_after = not_after;
        let key = new_key("leaf key")?;
        let cert = params.signed_by(&key, &self.issuer).map_err(|source| EdgeError::Generate { what: "leaf certificate", source })?;
        Ok(Leaf { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }

    /// Makes a new CA in `dir`, replacing what is there.
    fn create(lab: &str, dir: &Path, suffixes: &[String]) -> Result<LabCa, EdgeError> {
        let now = OffsetDateTime::now_utc();
        let mut params = CertificateParams::default();
        params.distinguished_name = common_name(&format!("idp-lab {lab} CA"));
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.name_constraints = Some(NameConstraints {
            permitted_subtrees: suffixes.iter().map(|s| GeneralSubtree::DnsName(s.clone())).collect(),
            excluded_subtrees: vec![
                GeneralSubtree::IpAddress(CidrSubnet::V4([0; 4], [0; 4])),
                GeneralSubtree::IpAddress(CidrSubnet::V6([0; 16], [0; 16])),
            ],
        });
        params.not_before = now - BACKDATE;
        params.not_after = now - BACKDATE + CA_VALIDITY;
        let key = new_key("CA key")?;
        let cert = params.self_signed(&key).map_err(|source| EdgeError::Generate { what: "CA certificate", source })?;
        let cert_pem = cert.pem();
        let key_pem = key.serialize_pem();

        create_private_dir(dir)?;
        // The key first: a crash in between leaves a pair that does not match, which the
        // next load reports (with --new-ca), never a certificate with a lost key.
        write_atomic(dir, KEY_FILE, key_pem.as_bytes(), 0o600)?;
        write_atomic(dir, CERT_FILE, cert_pem.as_bytes(), 0o644)?;
        let mut ca = Self::from_parts(dir, cert_pem, key)?;
        ca.created = true;
        Ok(ca)
    }

    /// Loads the CA stored in `dir`, checking the pair.
    fn load(dir: &Path) -> Result<LabCa, EdgeError> {
        let key_path = dir.join(KEY_FILE);
        let meta = fs::metadata(&key_path).map_err(io("inspect", &key_path))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(EdgeError::KeyPermissions { path: key_path, mode });
        }
        let key_pem = fs::read_to_string(&key_path).map_err(io("read", &key_path))?;
        let key = KeyPair::from_pem(&key_pem).map_err(|source| EdgeError::BadKey { path: key_path.clone(), source })?;
        let cert_path = dir.join(CERT_FILE);
        let cert_pem = fs::read_to_string(&cert_path).map_err(io("read", &cert_path))?;
        Self::from_parts(dir, cert_pem, key)
    }

    /// Checks a certificate and key pair and makes the CA of them.
    fn from_parts(dir: &Path, cert_pem: String, key: KeyPair) -> Result<LabCa, EdgeError> {
        let cert_path = dir.join(CERT_FILE);
        let key_path = dir.join(KEY_FILE);
        if key.algorithm() != &PKCS_ECDSA_P256_SHA256 {
            return Err(EdgeError::WrongKeyType { path: key_path });
        }
        let bad = |reason| EdgeError::BadCertificate { path: cert_path.clone(), reason };
        let der = pem_certificate(&cert_pem).map_err(bad)?;
        let facts = der::parse_ca(&der).map_err(bad)?;
        if !facts.is_ca {
            return Err(bad("it is not a CA certificate"));
        }
        if facts.permitted.is_empty() {
            return Err(bad("it has no DNS name constraints"));
        }
        if facts.spki != key.subject_public_key_info() {
            return Err(EdgeError::KeyMismatch { key: key_path, cert: cert_path });
        }
        if facts.not_after - OffsetDateTime::now_utc() < MIN_REMAINING {
            return Err(EdgeError::Expired { path: cert_path, not_after: facts.not_after });
        }
        // The issuer's name and key identifier are taken from the certificate itself,
        // so that leaves chain to it byte for byte.
        let mut params = CertificateParams::default();
        params.distinguished_name = common_name(&facts.common_name);
        params.key_identifier_method = KeyIdMethod::PreSpecified(facts.key_id);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        Ok(LabCa {
            dir: dir.to_path_buf(),
            cert_pem,
            common_name: facts.common_name,
            permitted: facts.permitted,
            not_after: facts.not_after,
            created: false,
            issuer: Issuer::new(params, key),
        })
    }
}

/// A distinguished name of one common name.
fn common_name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

/// The leaves' common name: the CA's with `CA` replaced by `edge`, so the two differ
/// and neither looks like a host name.
fn leaf_common_name(ca_cn: &str) -> String {
    let base = ca_cn.strip_suffix(" CA").unwrap_or(ca_cn);
    format!("{base} edge")
}

fn new_key(what: &'static str) -> Result<KeyPair, EdgeError> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|source| EdgeError::Generate { what, source })
}

/// Whether `name` equals one of `permitted` or lies under it (RFC 5280 DNS subtrees).
fn covered(name: &str, permitted: &[String]) -> bool {
    permitted.iter().any(|p| name == p || name.strip_suffix(p.as_str()).is_some_and(|head| head.ends_with('.')))
}

/// A suffix as a name-constraint subtree: lower case, without a leading `*.` or `.`
/// and without the trailing dot.
fn normalise_suffix(raw: &str) -> Result<String, EdgeError> {
    let trimmed = raw.trim();
    let name = trimmed.strip_prefix("*.").or_else(|| trimmed.strip_prefix('.')).unwrap_or(trimmed);
    dns_name(raw, name)
}

/// A certificate name: a DNS name, lower case, optionally starting with `*.`.
fn normalise_leaf_name(raw: &str) -> Result<String, EdgeError> {
    let trimmed = raw.trim();
    match trimmed.strip_prefix("*.") {
        Some(rest) => Ok(format!("*.{}", dns_name(raw, rest)?)),
        None => dns_name(raw, trimmed),
    }
}

/// Checks a DNS name (LDH labels) and returns it in lower case.
fn dns_name(raw: &str, name: &str) -> Result<String, EdgeError> {
    let invalid = |reason| EdgeError::InvalidName { name: raw.to_string(), reason };
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    if name.is_empty() {
        return Err(invalid("it is empty"));
    }
    if name.len() > 253 {
        return Err(invalid("it is longer than 253 characters"));
    }
    if name.parse::<IpAddr>().is_ok() {
        return Err(invalid("it is an IP address; the lab CA vouches for names only"));
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(invalid("each label must have 1 to 63 characters"));
        }
        if !label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(invalid("only letters, digits, '-' and '.' are allowed"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(invalid("a label must not start or end with '-'"));
        }
    }
    Ok(name)
}

fn exists(path: &Path) -> Result<bool, EdgeError> {
    path.try_exists().map_err(io("inspect", path))
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> EdgeError {
    let path = path.to_path_buf();
    move |source| EdgeError::Io { action, path, source }
}

/// Creates `dir` (and missing parents) and makes it 0700.
fn create_private_dir(dir: &Path) -> Result<(), EdgeError> {
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io("create", dir))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io("protect", dir))
}

/// Writes `dir/name` through a temporary file in `dir` and a rename, with `mode`.
fn write_atomic(dir: &Path, name: &str, contents: &[u8], mode: u32) -> Result<(), EdgeError> {
    let target = dir.join(name);
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| {
        // A leftover of a crashed run of this process id; ours to replace.
        match fs::remove_file(&tmp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(io("remove", &tmp)(e));
            }
            _ => {}
        }
        let mut file = OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp).map_err(io("create", &tmp))?;
        // The umask may have narrowed the mode; set it exactly.
        file.set_permissions(fs::Permissions::from_mode(mode)).map_err(io("protect", &tmp))?;
        file.write_all(contents).map_err(io("write", &tmp))?;
        file.sync_all().map_err(io("write", &tmp))?;
        fs::rename(&tmp, &target).map_err(io("replace", &target))
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written?;
    // Make the rename itself durable.
    fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io("sync", dir))
}

/// The DER of the first `CERTIFICATE` block of a PEM text.
fn pem_certificate(pem: &str) -> Result<Vec<u8>, &'static str> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let start = pem.find(BEGIN).ok_or("it holds no PEM certificate")? + BEGIN.len();
    let len = pem[start..].find(END).ok_or("its PEM certificate is not terminated")?;
    base64_decode(&pem[start..start + len]).ok_or("its PEM certificate is not valid base64")
}

/// Decodes standard base64, ignoring whitespace.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let chars: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !chars.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(chars.len() / 4 * 3);
    let groups = chars.len() / 4;
    for (i, group) in chars.chunks(4).enumerate() {
        let pad = group.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && i + 1 != groups) {
            return None;
        }
        let mut acc = 0u32;
        for &c in &group[..4 - pad] {
            acc = (acc << 6) | value(c)?;
        }
        acc <<= 6 * pad as u32;
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..4 - pad]);
    }
    Some(out)
}

/// Just enough DER to read back the facts of a lab CA certificate.
mod der {
    use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

    const SEQUENCE: u8 = 0x30;
    const SET: u8 = 0x31;
    const INTEGER: u8 = 0x02;
    const BOOLEAN: u8 = 0x01;
    const OCTET_STRING: u8 = 0x04;
    const OID: u8 = 0x06;
    const UTF8_STRING: u8 = 0x0c;
    const PRINTABLE_STRING: u8 = 0x13;
    const UTC_TIME: u8 = 0x17;
    const GENERALIZED_TIME: u8 = 0x18;
    const VERSION: u8 = 0xa0;
    const EXTENSIONS: u8 = 0xa3;
    const PERMITTED: u8 = 0xa0;
    const DNS_NAME: u8 = 0x82;

    const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
    const OID_SUBJECT_KEY_ID: &[u8] = &[0x55, 0x1d, 0x0e];
    const OID_BASIC_CONSTRAINTS: &[u8] = &[0x55, 0x1d, 0x13];
    const OID_NAME_CONSTRAINTS: &[u8] = &[0x55, 0x1d, 0x1e];

    /// What the lab CA needs to know of its certificate.
    pub(super) struct CaFacts {
        /// The SubjectPublicKeyInfo, DER.
        pub spki: Vec<u8>,
        /// The subject's one common name.
        pub common_name: String,
        /// The subject key identifier.
        pub key_id: Vec<u8>,
        /// The end of validity.
        pub not_after: OffsetDateTime,
        /// basicConstraints cA.
        pub is_ca: bool,
        /// The permitted DNS subtrees.
        pub permitted: Vec<String>,
    }

    struct Tlv<'a> {
        tag: u8,
        content: &'a [u8],
        whole: &'a [u8],
    }

    type R<T> = Result<T, &'static str>;

    fn read(input: &[u8]) -> R<(Tlv<'_>, &[u8])> {
        const TRUNCATED: &str = "its DER is truncated";
        let (&tag, rest) = input.split_first().ok_or(TRUNCATED)?;
        if tag & 0x1f == 0x1f {
            return Err("its DER has an unexpected tag");
        }
        let (&first, rest) = rest.split_first().ok_or(TRUNCATED)?;
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return Err("its DER has a bad length");
            }
            let (bytes, rest) = rest.split_at(n);
            let len = bytes.iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
            (len, rest)
        };
        if rest.len() < len {
            return Err(TRUNCATED);
        }
        let (content, rest) = rest.split_at(len);
        let whole = &input[..input.len() - rest.len()];
        Ok((Tlv { tag, content, whole }, rest))
    }

    fn expect(input: &[u8], tag: u8) -> R<(Tlv<'_>, &[u8])> {
        let (tlv, rest) = read(input)?;
        if tlv.tag != tag {
            return Err("its DER does not have the shape of a certificate");
        }
        Ok((tlv, rest))
    }

    fn items(mut input: &[u8]) -> R<Vec<Tlv<'_>>> {
        let mut out = Vec::new();
        while !input.is_empty() {
            let (tlv, rest) = read(input)?;
            out.push(tlv);
            input = rest;
        }
        Ok(out)
    }

    pub(super) fn parse_ca(der: &[u8]) -> R<CaFacts> {
        let (cert, _) = expect(der, SEQUENCE)?;
        let (tbs, _) = expect(cert.content, SEQUENCE)?;
        let mut r = tbs.content;
        let (first, rest) = read(r)?;
        if first.tag == VERSION {
            r = rest;
        }
        let (_, r) = expect(r, INTEGER)?;
        let (_, r) = expect(r, SEQUENCE)?; // signature algorithm
        let (_, r) = expect(r, SEQUENCE)?; // issuer
        let (validity, r) = expect(r, SEQUENCE)?;
        let (subject, r) = expect(r, SEQUENCE)?;
        let (spki, r) = expect(r, SEQUENCE)?;

        let (_, rest) = read(validity.content)?;
        let (not_after, _) = read(rest)?;
        let not_after = time(&not_after)?;

        let common_name = common_name(subject.content)?;

        let mut facts =
            CaFacts { spki: spki.whole.to_vec(), common_name, key_id: Vec::new(), not_after, is_ca: false, permitted: Vec::new() };
        let Some(exts) = items(r)?.into_iter().find(|t| t.tag == EXTENSIONS) else {
            return Err("it has no extensions");
        };
        let (exts, _) = expect(exts.content, SEQUENCE)?;
        for ext in items(exts.content)? {
            let (oid, rest) = expect(ext.content, OID)?;
            let (mut value, rest) = read(rest)?;
            if value.tag == BOOLEAN {
                // The critical flag; the value follows it.
                (value, _) = read(rest)?;
            }
            if value.tag != OCTET_STRING {
                return Err("it has a malformed extension");
            }
            match oid.content {
                OID_SUBJECT_KEY_ID => {
                    let (id, _) = expect(value.content, OCTET_STRING)?;
                    facts.key_id = id.content.to_vec();
                }
                OID_BASIC_CONSTRAINTS => {
                    let (bc, _) = expect(value.content, SEQUENCE)?;
                    if let Some(first) = items(bc.content)?.first() {
                        facts.is_ca = first.tag == BOOLEAN && first.content == [0xff];
                    }
                }
                OID_NAME_CONSTRAINTS => {
                    let (nc, _) = expect(value.content, SEQUENCE)?;
                    for part in items(nc.content)? {
                        if part.tag != PERMITTED {
                            continue;
                        }
                        for subtree in items(part.content)? {
                            if subtree.tag != SEQUENCE {
                                return Err("it has a malformed name constraint");
                            }
                            let (base, _) = read(subtree.content)?;
                            if base.tag == DNS_NAME {
                                let name = std::str::from_utf8(base.content).map_err(|_| "it has a non-ASCII name constraint")?;
                                facts.permitted.push(name.to_ascii_lowercase());
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        if facts.key_id.is_empty() {
            return Err("it has no subject key identifier");
        }
        Ok(facts)
    }

    /// The one common name of a subject; other attributes make it not a lab CA.
    fn common_name(subject: &[u8]) -> R<String> {
        let mut cn = None;
        for rdn in items(subject)? {
            if rdn.tag != SET {
                return Err("its subject is malformed");
            }
            for atv in items(rdn.content)? {
                let (oid, rest) = expect(atv.content, OID)?;
                let (value, _) = read(rest)?;
                if oid.content != OID_COMMON_NAME || !matches!(value.tag, UTF8_STRING | PRINTABLE_STRING) || cn.is_some() {
                    return Err("its subject is not that of an idp-lab CA");
                }
                let text = std::str::from_utf8(value.content).map_err(|_| "its subject is not valid UTF-8")?;
                cn = Some(text.to_string());
            }
        }
        cn.ok_or("its subject has no common name")
    }

    fn time(tlv: &Tlv<'_>) -> R<OffsetDateTime> {
        const BAD: &str = "its validity is malformed";
        let text = std::str::from_utf8(tlv.content).map_err(|_| BAD)?;
        let digits = text.strip_suffix('Z').ok_or(BAD)?;
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(BAD);
        }
        let num = |s: &str| s.parse::<u16>().map_err(|_| BAD);
        let (year, rest) = match (tlv.tag, digits.len()) {
            (UTC_TIME, 12) => {
                let yy = num(&digits[..2])?;
                (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &digits[2..])
            }
            (GENERALIZED_TIME, 14) => (num(&digits[..4])?, &digits[4..]),
            _ => return Err(BAD),
        };
        let part = |i: usize| -> R<u8> { rest[i..i + 2].parse::<u8>().map_err(|_| BAD) };
        let month = Month::try_from(part(0)?).map_err(|_| BAD)?;
        let date = Date::from_calendar_date(i32::from(year), month, part(2)?).map_err(|_| BAD)?;
        let time = Time::from_hms(part(4)?, part(6)?, part(8)?).map_err(|_| BAD)?;
        Ok(PrimitiveDateTime::new(date, time).assume_utc())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn coverage_follows_rfc5280_dns_subtrees() {
        let p = s(&["127-0-0-1.nip.io"]);
        assert!(covered("127-0-0-1.nip.io", &p));
        assert!(covered("*.127-0-0-1.nip.io", &p));
        assert!(covered("a.b.127-0-0-1.nip.io", &p));
        assert!(!covered("x127-0-0-1.nip.io", &p));
        assert!(!covered("nip.io", &p));
        assert!(!covered("www.example.com", &p));
    }

    #[test]
    fn names_are_normalised_and_checked() {
        assert_eq!(normalise_suffix("*.127-0-0-1.NIP.io.").ok().as_deref(), Some("127-0-0-1.nip.io"));
        assert_eq!(normalise_suffix(".nip.io").ok().as_deref(), Some("nip.io"));
        assert_eq!(normalise_leaf_name("*.A.nip.io").ok().as_deref(), Some("*.a.nip.io"));
        for bad in ["", ".", "a..b", "-a.io", "a-.io", "a_b.io", "127.0.0.1", "::1", "a.*.io"] {
            assert!(matches!(normalise_leaf_name(bad), Err(EdgeError::InvalidName { .. })), "{bad:?} accepted");
        }
        assert!(normalise_suffix(&"a".repeat(64)).is_err());
    }

    #[test]
    fn base64_round_trips_known_vectors() {
        assert_eq!(base64_decode("").as_deref(), Some(&b""[..]));
        assert_eq!(base64_decode("Zg==").as_deref(), Some(&b"f"[..]));
        assert_eq!(base64_decode("Zm8=").as_deref(), Some(&b"fo"[..]));
        assert_eq!(base64_decode("Zm9v\nYmFy").as_deref(), Some(&b"foobar"[..]));
        assert_eq!(base64_decode("Zm9v!mFy"), None);
        assert_eq!(base64_decode("Zg==Zm9v"), None);
        assert_eq!(base64_decode("Zm9"), None);
    }

    #[test]
    fn a_new_ca_reads_back_its_own_profile() -> Result<(), EdgeError> {
        let dir = tempfile::tempdir().map_err(io("create", Path::new("tempdir")))?;
        let ca = LabCa::load_or_create("demo", &dir.path().join("ca"), &s(&["127-0-0-1.nip.io"]), false)?;
        assert!(ca.is_new());
        assert_eq!(ca.common_name, "idp-lab demo CA");
        assert_eq!(ca.permitted, s(&["127-0-0-1.nip.io"]));
        let remaining = ca.not_after() - OffsetDateTime::now_utc();
        assert!(remaining > Duration::days(3649) && remaining <= CA_VALIDITY);
        assert_eq!(leaf_common_name(&ca.common_name), "idp-lab demo edge");
        Ok(())
    }

    #[test]
    fn debug_never_shows_a_key() -> Result<(), EdgeError> {
        let dir = tempfile::tempdir().map_err(io("create", Path::new("tempdir")))?;
        let ca_dir = dir.path().join("ca");
        let ca = LabCa::load_or_create("demo", &ca_dir, &s(&["nip.io"]), false)?;
        let key_pem = fs::read_to_string(ca_dir.join(KEY_FILE)).map_err(io("read", &ca_dir))?;
        let key_body: String = key_pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let shown = format!("{ca:?} {ca:#?}");
        assert!(!shown.contains("PRIVATE KEY"), "{shown}");
        assert!(!shown.contains(&key_body[..40]), "{shown}");
        assert!(shown.contains("[redacted]"));

        let leaf = ca.issue(&s(&["a.nip.io"]))?;
        let shown = format!("{leaf:?}");
        assert!(!shown.contains("PRIVATE KEY"), "{shown}");
        assert!(leaf.key_pem.contains("PRIVATE KEY"));
        Ok(())
    }

    #[test]
    fn truncated_or_foreign_der_is_an_error_not_a_panic() {
        let garbage: [&[u8]; 5] = [&[], &[0x30], &[0x30, 0x85, 1, 1, 1, 1, 1], &[0x30, 0x05, 0x02], &[0x1f, 0]];
        for g in garbage {
            assert!(der::parse_ca(g).is_err());
        }
    }
}
