use super::*;
use proptest::prelude::*;

const CUSTOM: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 20));

fn zones() -> Zones {
    Zones::new(Some("IDP.lab."), CUSTOM)
}

fn v4(a: u8, b: u8, c: u8, d: u8) -> Answer {
    Answer::Address(IpAddr::V4(Ipv4Addr::new(a, b, c, d)))
}

fn v6(text: &str) -> Answer {
    Answer::Address(IpAddr::V6(text.parse().expect("test IPv6 address")))
}

const NO: Answer = Answer::NoAddress;
const NOT: Answer = Answer::NotOurs;

#[test]
fn table() {
    let long_label = "a".repeat(64);
    let label_63 = "a".repeat(63);
    // 4 * 62 + "1-2-3-4.nip.io" (14) = 262 > 253.
    let overlong = format!("{}1-2-3-4.nip.io", format!("{}.", "a".repeat(61)).repeat(4));
    // 3 * 62 + 52 + ".1-2-3-4.nip.io" (15) = 253: just fits.
    let longest = format!("{}{}.1-2-3-4.nip.io", format!("{}.", "a".repeat(61)).repeat(3), "a".repeat(52));
    assert_eq!(longest.len(), MAX_NAME_LEN);
    assert!(overlong.len() > MAX_NAME_LEN);
    let cases: Vec<(String, Answer)> = vec![
        // Dotted.
        ("10.0.0.1.nip.io".into(), v4(10, 0, 0, 1)),
        ("app.10.0.0.1.nip.io".into(), v4(10, 0, 0, 1)),
        ("a.b.c.10.0.0.1.nip.io".into(), v4(10, 0, 0, 1)),
        ("1.2.3.4.5.nip.io".into(), v4(2, 3, 4, 5)),
        ("0.0.0.0.nip.io".into(), v4(0, 0, 0, 0)),
        ("255.255.255.255.nip.io".into(), v4(255, 255, 255, 255)),
        ("192.168.1.20.sslip.io".into(), v4(192, 168, 1, 20)),
        ("www.192.168.1.20.sslip.io".into(), v4(192, 168, 1, 20)),
        // Dashed.
        ("10-0-0-1.nip.io".into(), v4(10, 0, 0, 1)),
        ("app.10-0-0-1.nip.io".into(), v4(10, 0, 0, 1)),
        ("app-10-0-0-1.nip.io".into(), v4(10, 0, 0, 1)),
        ("my-app-10-0-0-1.nip.io".into(), v4(10, 0, 0, 1)),
        ("1-2-3-4-5-6-7-8.nip.io".into(), v4(5, 6, 7, 8)),
        ("argocd.127-0-0-1.nip.io".into(), v4(127, 0, 0, 1)),
        ("127-0-0-1.nip.io".into(), v4(127, 0, 0, 1)),
        ("www-192-168-0-1.sslip.io".into(), v4(192, 168, 0, 1)),
        ("-1-2-3-4.nip.io".into(), v4(1, 2, 3, 4)),
        // The nearest label decides: a dotted address further left is not read.
        ("1.2.3.4.app-5-6-7-8.nip.io".into(), v4(5, 6, 7, 8)),
        ("1.2.3.4.app.nip.io".into(), NO),
        // Hex.
        ("7f000001.nip.io".into(), v4(127, 0, 0, 1)),
        ("app.7F000001.nip.io".into(), v4(127, 0, 0, 1)),
        ("app-c0a801fc.nip.io".into(), v4(192, 168, 1, 252)),
        ("ffffffff.sslip.io".into(), v4(255, 255, 255, 255)),
        ("00000000.sslip.io".into(), v4(0, 0, 0, 0)),
        ("7f00001.nip.io".into(), NO),
        ("7f0000011.nip.io".into(), NO),
        ("07f000001.nip.io".into(), NO),
        ("app-007f000001.sslip.io".into(), NO),
        ("0x7f000001.nip.io".into(), NO),
        ("7f00000g.nip.io".into(), NO),
        // IPv6, sslip.io only; the IPv4 forms come first.
        ("--1.sslip.io".into(), v6("::1")),
        ("2001-db8--1.sslip.io".into(), v6("2001:db8::1")),
        ("www.2001-DB8--1.sslip.io".into(), v6("2001:db8::1")),
        ("2607-f8b0-400a-800--200e.sslip.io".into(), v6("2607:f8b0:400a:800::200e")),
        ("--.sslip.io".into(), v6("::")),
        ("--1-2-3-4.sslip.io".into(), v4(1, 2, 3, 4)),
        ("2001-db8--1.nip.io".into(), NO),
        ("--1.nip.io".into(), NO),
        ("2001-db8---1.sslip.io".into(), NO),
        ("app-2001-db8--1.sslip.io".into(), NO),
        ("2001:db8::1.sslip.io".into(), NO),
        // Case and the trailing dot.
        ("APP.10.0.0.1.NIP.IO".into(), v4(10, 0, 0, 1)),
        ("10-0-0-1.nip.io.".into(), v4(10, 0, 0, 1)),
        ("Argocd.127-0-0-1.Nip.Io.".into(), v4(127, 0, 0, 1)),
        ("7F000001.SSLIP.IO.".into(), v4(127, 0, 0, 1)),
        // Octets.
        ("256.0.0.1.nip.io".into(), NO),
        ("10.0.0.256.nip.io".into(), NO),
        ("256-0-0-1.nip.io".into(), NO),
        ("10-0-0-256.nip.io".into(), NO),
        ("+1.2.3.4.nip.io".into(), NO),
        ("1.2.3.+4.nip.io".into(), NO),
        ("1-2-3-+4.nip.io".into(), NO),
        ("010.0.0.1.nip.io".into(), NO),
        ("10-0-0-01.nip.io".into(), NO),
        ("1000.0.0.1.nip.io".into(), NO),
        ("-1.2.3.4.nip.io".into(), NO),
        ("1.2.3.nip.io".into(), NO),
        ("2.3.4.nip.io".into(), NO),
        ("1-2-3.nip.io".into(), NO),
        ("1--2-3-4.nip.io".into(), NO),
        ("1-2-3-4-.nip.io".into(), NO),
        ("١.٢.٣.٤.nip.io".into(), NO),
        // In the zone, no address.
        ("nip.io".into(), NO),
        ("NIP.IO.".into(), NO),
        ("sslip.io".into(), NO),
        ("www.nip.io".into(), NO),
        ("a.b.sslip.io".into(), NO),
        ("app-10-0-0.nip.io".into(), NO),
        // Not a name at all.
        ("".into(), NOT),
        (".".into(), NOT),
        ("..".into(), NOT),
        (".nip.io".into(), NOT),
        ("a..10.0.0.1.nip.io".into(), NOT),
        ("10.0.0.1.nip.io..".into(), NOT),
        (format!("{long_label}.10-0-0-1.nip.io"), NOT),
        (format!("{label_63}.10-0-0-1.nip.io"), v4(10, 0, 0, 1)),
        (overlong.clone(), NOT),
        (format!("{longest}."), v4(1, 2, 3, 4)),
        (longest, v4(1, 2, 3, 4)),
        // Not ours.
        ("example.com".into(), NOT),
        ("nip.io.evil.com".into(), NOT),
        ("10.0.0.1.nip.io.evil.com".into(), NOT),
        ("evilnip.io".into(), NOT),
        ("10.0.0.1.evilnip.io".into(), NOT),
        ("10-0-0-1.nipio".into(), NOT),
        ("notsslip.io".into(), NOT),
        ("io".into(), NOT),
        ("lab".into(), NOT),
        ("evilidp.lab".into(), NOT),
        ("idp.lab.evil.com".into(), NOT),
        // The custom suffix.
        ("idp.lab".into(), Answer::Address(CUSTOM)),
        ("IDP.LAB.".into(), Answer::Address(CUSTOM)),
        ("argocd.idp.lab".into(), Answer::Address(CUSTOM)),
        ("a.b.c.idp.lab".into(), Answer::Address(CUSTOM)),
        ("10.0.0.1.idp.lab".into(), Answer::Address(CUSTOM)),
        ("a..idp.lab".into(), NOT),
    ];
    let zones = zones();
    let mut wrong = Vec::new();
    for (name, expected) in &cases {
        let got = zones.answer(name);
        if got != *expected {
            wrong.push(format!("{name:?}: expected {expected:?}, got {got:?}"));
        }
        assert_eq!(zones.contains(name), *expected != NOT, "{name:?}");
    }
    assert!(wrong.is_empty(), "{} of {} cases wrong:\n{}", wrong.len(), cases.len(), wrong.join("\n"));
}

#[test]
fn the_custom_suffix_is_normalised() {
    assert_eq!(zones().custom_suffix(), Some("idp.lab"));
    assert_eq!(Zones::new(None, CUSTOM).custom_suffix(), None);
}

#[test]
fn without_a_custom_suffix_only_the_address_zones_answer() {
    let zones = Zones::new(None, CUSTOM);
    assert_eq!(zones.answer("argocd.idp.lab"), NOT);
    assert_eq!(zones.answer("argocd.127-0-0-1.nip.io"), v4(127, 0, 0, 1));
}

#[test]
fn a_suffix_under_an_address_zone_is_no_custom_zone() {
    // The lab's default suffix: its names answer the address they carry.
    let zones = Zones::new(Some("127-0-0-1.nip.io"), CUSTOM);
    assert_eq!(zones.custom_suffix(), None);
    assert_eq!(zones.answer("argocd.127-0-0-1.nip.io"), v4(127, 0, 0, 1));
    assert_eq!(zones.answer("127-0-0-1.nip.io."), v4(127, 0, 0, 1));
    for (suffix, expected) in [("lab.nip.io", NO), ("NIP.IO.", NO), ("sslip.io", NO), ("x.10-0-0-1.sslip.io", v4(10, 0, 0, 1))] {
        let zones = Zones::new(Some(suffix), CUSTOM);
        assert_eq!(zones.custom_suffix(), None, "{suffix}");
        assert_eq!(zones.answer(&format!("www.{suffix}")), expected, "{suffix}");
        assert_eq!(zones.answer(suffix), expected, "{suffix}");
    }
    // A name that merely ends like a zone is a custom zone all right.
    let zones = Zones::new(Some("evilnip.io"), CUSTOM);
    assert_eq!(zones.custom_suffix(), Some("evilnip.io"));
    assert_eq!(zones.answer("www.evilnip.io"), Answer::Address(CUSTOM));
}

#[test]
fn an_invalid_custom_suffix_is_left_out() {
    for suffix in ["", ".", "a..lab", ".lab"] {
        let zones = Zones::new(Some(suffix), CUSTOM);
        assert_eq!(zones.custom_suffix(), None, "{suffix:?}");
        assert_eq!(zones.answer("www.lab"), NOT, "{suffix:?}");
    }
    assert_eq!(Zones::new(Some(&"a".repeat(64)), CUSTOM).custom_suffix(), None);
}

#[test]
fn the_address_zones_win_over_a_custom_suffix_above_them() {
    let zones = Zones::new(Some("io"), CUSTOM);
    assert_eq!(zones.answer("www.nip.io"), NO);
    assert_eq!(zones.answer("10.0.0.1.sslip.io"), v4(10, 0, 0, 1));
    assert_eq!(zones.answer("example.io"), Answer::Address(CUSTOM));
    assert_eq!(zones.answer("io"), Answer::Address(CUSTOM));
}

#[test]
fn the_custom_address_may_be_ipv6() {
    let address = IpAddr::V6(Ipv6Addr::LOCALHOST);
    assert_eq!(Zones::new(Some("idp.lab"), address).answer("x.idp.lab"), Answer::Address(address));
}

/// A valid, LDH prefix label.
fn prefix_label() -> impl Strategy<Value = String> {
    "[a-z0-9]([a-z0-9-]{0,40}[a-z0-9])?"
}

fn zone() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("nip.io"), Just("sslip.io")]
}

/// `name` with its letters' case and a trailing dot chosen by `style`.
fn styled(name: String, style: u8) -> String {
    let name = if style & 1 == 1 { name.to_ascii_uppercase() } else { name };
    if style & 2 == 2 { format!("{name}.") } else { name }
}

/// The IPv4 address the last four groups of a dashed IPv6 address read as, if they do.
fn dashed_ipv4_reading(dashed: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = dashed.rsplitn(5, '-').collect();
    let octets: Vec<u8> = parts.iter().take(4).filter_map(|p| octet(p)).collect();
    (parts.len() >= 4 && octets.len() == 4).then(|| Ipv4Addr::new(octets[3], octets[2], octets[1], octets[0]))
}

proptest! {
    /// Every form of every IPv4 address, bare or behind any valid prefix, under both
    /// zones, in any case and with or without the trailing dot, answers the address.
    #[test]
    fn every_ipv4_form_round_trips(ip in any::<Ipv4Addr>(), prefix in prefix_label(), zone in zone(), style in 0u8..4) {
        let [a, b, c, d] = ip.octets();
        let dotted = format!("{a}.{b}.{c}.{d}");
        let dashed = format!("{a}-{b}-{c}-{d}");
        let hex = format!("{:08x}", u32::from(ip));
        let names = [
            format!("{dotted}.{zone}"),
            format!("{prefix}.{dotted}.{zone}"),
            format!("{dashed}.{zone}"),
            format!("{prefix}.{dashed}.{zone}"),
            format!("{prefix}-{dashed}.{zone}"),
            format!("{hex}.{zone}"),
            format!("{prefix}.{hex}.{zone}"),
            format!("{prefix}-{hex}.{zone}"),
        ];
        let zones = zones();
        for name in names {
            let name = styled(name, style);
            prop_assert_eq!(zones.answer(&name), Answer::Address(IpAddr::V4(ip)), "{}", name);
        }
    }

    /// Every IPv6 address, dashed under sslip.io, answers itself, unless its last four
    /// groups also read as a dashed IPv4 address, which comes first. Under nip.io it
    /// answers no IPv6 address.
    #[test]
    fn every_ipv6_address_round_trips_under_sslip_io(ip in any::<Ipv6Addr>(), prefix in prefix_label(), style in 0u8..4) {
        // The compressed form (unless Rust writes it with a dotted IPv4 tail, which a
        // label cannot hold) and the full eight groups.
        let compressed = Some(ip.to_string()).filter(|s| !s.contains('.')).map(|s| s.replace(':', "-"));
        let full = ip.segments().map(|g| format!("{g:x}")).join("-");
        let zones = zones();
        for dashed in compressed.into_iter().chain([full]) {
            let expected = match dashed_ipv4_reading(&dashed) {
                Some(v4) => Answer::Address(IpAddr::V4(v4)),
                None => Answer::Address(IpAddr::V6(ip)),
            };
            prop_assert_eq!(zones.answer(&styled(format!("{dashed}.sslip.io"), style)), expected, "{}", dashed);
            prop_assert_eq!(zones.answer(&styled(format!("{prefix}.{dashed}.sslip.io"), style)), expected, "{}", dashed);
            let under_nip = zones.answer(&format!("{dashed}.nip.io"));
            prop_assert!(!matches!(under_nip, Answer::Address(IpAddr::V6(_))), "{}", dashed);
        }
    }

    /// No string makes `answer` panic, and `contains` agrees with it.
    #[test]
    fn arbitrary_strings_never_panic(name in any::<String>()) {
        let zones = zones();
        let answer = zones.answer(&name);
        prop_assert_eq!(zones.contains(&name), answer != Answer::NotOurs);
    }

    /// Nor do strings made of the characters names are made of.
    #[test]
    fn name_like_strings_never_panic(name in "[a-fA-F0-9.:-]{0,80}(\\.(nip|sslip)\\.io)?\\.?") {
        let zones = zones();
        let answer = zones.answer(&name);
        prop_assert_eq!(zones.contains(&name), answer != Answer::NotOurs);
    }

    /// A name that ends in none of the zones is not ours, even when it holds an address
    /// or a zone's name further left.
    #[test]
    fn names_outside_the_zones_are_not_ours(
        labels in proptest::collection::vec(prop_oneof![prefix_label(), Just("nip.io".to_string()), Just("10.0.0.1".to_string()), Just("idp.lab".to_string())], 0..5),
        tld in "[a-z]{2,10}",
    ) {
        prop_assume!(!["nip", "sslip", "lab", "io"].contains(&tld.as_str()));
        let name = labels.iter().map(|l| format!("{l}.")).collect::<String>() + &tld;
        prop_assert_eq!(zones().answer(&name), Answer::NotOurs, "{}", name);
    }

    /// Names that only end in a zone's text (`evilnip.io`) are not ours either.
    #[test]
    fn lookalike_zones_are_not_ours(prefix in "[a-z0-9-]{1,20}", zone in prop_oneof![Just("nip.io"), Just("sslip.io"), Just("idp.lab")]) {
        prop_assert_eq!(zones().answer(&format!("{prefix}{zone}")), Answer::NotOurs);
        prop_assert_eq!(zones().answer(&format!("10.0.0.1.{prefix}{zone}")), Answer::NotOurs);
    }

    /// Every name under the custom suffix answers the custom address.
    #[test]
    fn the_custom_suffix_answers_its_address(labels in proptest::collection::vec(prefix_label(), 0..4), style in 0u8..4) {
        let name = labels.iter().map(|l| format!("{l}.")).collect::<String>() + "idp.lab";
        prop_assert_eq!(zones().answer(&styled(name, style)), Answer::Address(CUSTOM));
    }
}
