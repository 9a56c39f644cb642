//! Which names the lab's DNS answer serves, and what each one answers. Pure: a name in,
//! an [`Answer`] out; the server around it turns that into records or a refusal.
//!
//! Two zones are always served, the way the public nip.io and sslip.io services answer
//! them, so a lab behaves the same whether the local answer or the public one is asked:
//!
//! | name                                   | answer                        |
//! | -------------------------------------- | ----------------------------- |
//! | `10.0.0.1.nip.io`, `app.10.0.0.1.nip.io` | 10.0.0.1 (dotted)           |
//! | `10-0-0-1.nip.io`, `app.10-0-0-1.nip.io` | 10.0.0.1 (dashed)           |
//! | `app-10-0-0-1.nip.io`                  | 10.0.0.1 (dashed, with a prefix) |
//! | `0a000001.nip.io`, `app-0a000001.nip.io` | 10.0.0.1 (hex)              |
//! | `2001-db8--1.sslip.io`                 | 2001:db8::1 (sslip.io only)   |
//! | `nip.io`, `www.nip.io`, `256-0-0-1.nip.io` | in the zone, no address   |
//! | `nip.io.evil.com`, `evilnip.io`        | not ours                      |
//!
//! A third zone, the lab's own DNS suffix when it is not itself a nip.io or sslip.io
//! name (for example `idp.lab`), answers one fixed address for the suffix and every
//! name under it. The default suffix, `127-0-0-1.nip.io`, needs no such zone: it is a
//! nip.io name, so `argocd.127-0-0-1.nip.io` answers 127.0.0.1 by the dashed rule.
//!
//! ```
//! use idp_core::names::{Answer, Zones};
//! use std::net::{IpAddr, Ipv4Addr};
//!
//! let zones = Zones::new(Some("idp.lab"), IpAddr::V4(Ipv4Addr::new(192, 168, 1, 20)));
//! assert_eq!(zones.answer("ArgoCD.127-0-0-1.nip.io."), Answer::Address(IpAddr::V4(Ipv4Addr::LOCALHOST)));
//! assert_eq!(zones.answer("grafana.idp.lab"), Answer::Address(IpAddr::V4(Ipv4Addr::new(192, 168, 1, 20))));
//! assert_eq!(zones.answer("example.com"), Answer::NotOurs);
//! ```
//!
//! The rules, in full:
//!
//! - A name is in presentation form, labels separated by dots, with no escapes (a label
//!   cannot hold a dot). One trailing dot is allowed. Letters compare without case.
//! - A name with an empty label, a label over [`MAX_LABEL_LEN`] bytes, or more than
//!   [`MAX_NAME_LEN`] bytes (the trailing dot not counted) is no name at all:
//!   [`Answer::NotOurs`]. So is the root.
//! - Only the labels right before the zone are read; an address further left is not
//!   looked for. The label nearest the zone decides:
//!   1. *Dotted*: if it is an octet, it and the three labels before it must be octets
//!      (`1.2.3.4.5.nip.io` is 2.3.4.5).
//!   2. *Dashed*: else, if its last four `-`-separated parts are octets, they are the
//!      address; whatever comes before them is a prefix (`app-10-0-0-1`,
//!      `1-2-3-4-5-6-7-8` is 5.6.7.8).
//!   3. *Hex*: else, if its part after the last `-` (or the whole label) is exactly eight
//!      hex digits, they are the address (`7f000001`, `app-7f000001`).
//!   4. *IPv6*, under sslip.io only: else, if the whole label, with every `-` read as
//!      `:`, is an IPv6 address, it is the address (`--1` is ::1). The IPv4 forms come
//!      first, so `--1-2-3-4.sslip.io` is 1.2.3.4, as sslip.io's A answer would be.
//!      nip.io has no IPv6 form.
//!
//!   Anything else under the zone, the zone itself included, is [`Answer::NoAddress`].
//! - An octet is one to three decimal digits, 0 to 255, with no sign and no leading zero
//!   (`0` itself aside), as [`std::net::Ipv4Addr`]'s parser reads them. `010` is refused
//!   rather than guessed to be octal or decimal.
//! - nip.io and sslip.io win over the custom suffix: a name in both (the suffix `io`, say)
//!   is read by the nip.io/sslip.io rules.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The zones whose names carry their address, served the way nip.io and sslip.io
/// answer them.
pub const ADDRESS_ZONES: [&str; 2] = ["nip.io", "sslip.io"];

/// The longest name, in bytes, without its trailing dot.
pub const MAX_NAME_LEN: usize = 253;

/// The longest label, in bytes.
pub const MAX_LABEL_LEN: usize = 63;

/// What a name answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Answer {
    /// The name is in one of the zones and answers this address (an A record for IPv4,
    /// AAAA for IPv6).
    Address(IpAddr),
    /// The name is in one of the zones but encodes no address.
    NoAddress,
    /// The name is in none of the zones (the server refuses it).
    NotOurs,
}

/// The zones the lab's DNS answer serves: nip.io and sslip.io always, and a custom
/// suffix answering one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zones {
    /// The custom suffix, normalised, and what it answers.
    custom: Option<(String, IpAddr)>,
}

impl Zones {
    /// The zones with `custom_suffix` (for example `network.dns_suffix` once resolved)
    /// answering `custom_address` for itself and every name under it.
    ///
    /// The suffix is read like a name (case and one trailing dot ignored). It is left
    /// out when it is not a valid name, or is itself at or under nip.io or sslip.io:
    /// those names answer by the address they carry, never by `custom_address`.
    pub fn new(custom_suffix: Option<&str>, custom_address: IpAddr) -> Zones {
        let custom = custom_suffix
            .and_then(normalise)
            .filter(|suffix| ADDRESS_ZONES.iter().all(|zone| under(suffix, zone).is_none()))
            .map(|suffix| (suffix, custom_address));
        Zones { custom }
    }

    /// The custom suffix as served (lower case, no trailing dot), if there is one.
    pub fn custom_suffix(&self) -> Option<&str> {
        self.custom.as_ref().map(|(suffix, _)| suffix.as_str())
    }

    /// What `name` answers.
    pub fn answer(&self, name: &str) -> Answer {
        let Some(name) = normalise(name) else {
            return Answer::NotOurs;
        };
        for zone in ADDRESS_ZONES {
            if let Some(rest) = under(&name, zone) {
                return embedded(rest, zone == "sslip.io").map_or(Answer::NoAddress, Answer::Address);
            }
        }
        match &self.custom {
            Some((suffix, address)) if under(&name, suffix).is_some() => Answer::Address(*address),
            _ => Answer::NotOurs,
        }
    }

    /// Whether `name` is in one of the zones, with or without an address.
    pub fn contains(&self, name: &str) -> bool {
        self.answer(name) != Answer::NotOurs
    }
}

/// `name` in lower case without its trailing dot, or `None` when it is not a valid name
/// or is the root.
fn normalise(name: &str) -> Option<String> {
    let name = name.strip_suffix('.').unwrap_or(name);
    let valid =
        !name.is_empty() && name.len() <= MAX_NAME_LEN && name.split('.').all(|label| !label.is_empty() && label.len() <= MAX_LABEL_LEN);
    valid.then(|| name.to_ascii_lowercase())
}

/// The labels of `name` before `zone` (empty for the zone itself), when `name` is at or
/// under `zone`. Both normalised.
fn under<'a>(name: &'a str, zone: &str) -> Option<&'a str> {
    if name == zone {
        return Some("");
    }
    name.strip_suffix(zone)?.strip_suffix('.')
}

/// The address carried by `rest`, the labels before an address zone.
fn embedded(rest: &str, ipv6: bool) -> Option<IpAddr> {
    let mut labels = rest.rsplit('.');
    let nearest = labels.next().filter(|label| !label.is_empty())?;
    if let Some(d) = octet(nearest) {
        let c = octet(labels.next()?)?;
        let b = octet(labels.next()?)?;
        let a = octet(labels.next()?)?;
        return Some(IpAddr::V4(Ipv4Addr::new(a, b, c, d)));
    }
    dashed(nearest).or_else(|| hex(nearest)).map(IpAddr::V4).or_else(|| if ipv6 { dashed_v6(nearest).map(IpAddr::V6) } else { None })
}

/// `a-b-c-d` at the end of `label`, after an optional prefix.
fn dashed(label: &str) -> Option<Ipv4Addr> {
    let mut parts = label.rsplitn(5, '-');
    let d = octet(parts.next()?)?;
    let c = octet(parts.next()?)?;
    let b = octet(parts.next()?)?;
    let a = octet(parts.next()?)?;
    Some(Ipv4Addr::new(a, b, c, d))
}

/// Eight hex digits after the last `-` of `label`, or as the whole label.
fn hex(label: &str) -> Option<Ipv4Addr> {
    let digits = label.rsplit('-').next()?;
    if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(digits, 16).ok().map(Ipv4Addr::from)
}

/// The whole `label` as an IPv6 address with `-` for `:`.
fn dashed_v6(label: &str) -> Option<Ipv6Addr> {
    if label.contains(':') {
        return None;
    }
    label.replace('-', ":").parse().ok()
}

/// A decimal octet: one to three digits, 0 to 255, no sign, no leading zero.
fn octet(s: &str) -> Option<u8> {
    let canonical = s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    if canonical { s.parse().ok() } else { None }
}

#[cfg(test)]
mod tests;
