//! Turns TOML text or environment variables into a validated [`Layer`], collecting
//! every problem as a positioned [`Diagnostic`] instead of stopping at the first.

use super::Layer;
use super::schema::{self, KeySpec, Kind, SECTIONS};
use crate::diag::{Diagnostic, Origin, did_you_mean, line_col};
use serde_json::{Value, json};
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use toml_edit::{Item, Table};

/// What kind of file is being read: profiles carry a `[profile]` table and may not
/// select another profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A user's `idp-lab.toml`.
    Config,
    /// An embedded profile.
    Profile,
}

/// Collects diagnostics for one input text.
pub(crate) struct Checker<'a> {
    text: &'a str,
    origin: Origin,
    components: &'a [&'a str],
    pub(crate) diags: Vec<Diagnostic>,
}

impl<'a> Checker<'a> {
    pub(crate) fn new(text: &'a str, origin: Origin, components: &'a [&'a str]) -> Self {
        Checker { text, origin, components, diags: Vec::new() }
    }

    pub(super) fn report(&mut self, span: Option<Range<usize>>, path: &str, message: String, hint: Option<String>) {
        let (line, column) = line_col(self.text, span.map_or(0, |s| s.start));
        self.diags.push(Diagnostic { origin: self.origin.clone(), line, column, path: path.to_owned(), message, hint });
    }

    /// Validates a whole document; profile and description keys go to `description`.
    pub(crate) fn document(&mut self, kind: FileKind, description: &mut Option<String>) -> Layer {
        let mut layer = Layer::new(self.origin.clone());
        let doc = match toml_edit::Document::parse(self.text) {
            Ok(doc) => doc,
            Err(e) => {
                let msg = e.message().trim().to_owned();
                self.report(e.span(), "", format!("invalid TOML: {msg}"), None);
                return layer;
            }
        };
        let root = doc.as_table();
        for (name, item) in root.iter() {
            let key_span = key_span(root, name).or_else(|| item.span());
            if kind == FileKind::Profile && name == "profile" {
                self.profile_table(item, description);
                continue;
            }
            let Some(table) = item.as_table_like() else {
                let hint = did_you_mean(name, SECTIONS.iter().map(|s| s.0)).map(|s| format!("keys belong in a section, e.g. [{s}]"));
                self.report(key_span, name, format!("expected a section (a table such as [{name}]), found {}", describe(item)), hint);
                continue;
            };
            if !SECTIONS.iter().any(|(s, _)| *s == name) {
                let mut sections: Vec<&str> = SECTIONS.iter().map(|s| s.0).collect();
                if kind == FileKind::Profile {
                    sections.push("profile");
                }
                let hint = did_you_mean(name, sections.iter().copied())
                    .map(|s| format!("did you mean [{s}]?"))
                    .or_else(|| Some(format!("sections are {}", sections.join(", "))));
                self.report(key_span, name, "unknown section".into(), hint);
                continue;
            }
            for (key, value) in table.iter() {
                let path = format!("{name}.{key}");
                let span = table.key(key).and_then(|k| k.span()).or_else(|| value.span());
                let Some(spec) = schema::lookup(name, key) else {
                    let hint = did_you_mean(key, schema::section_keys(name).map(|k| k.key))
                        .map(|k| format!("did you mean `{k}`?"))
                        .or_else(|| {
                            Some(format!(
                                "keys of [{name}] are {}",
                                schema::section_keys(name).map(|k| k.key).collect::<Vec<_>>().join(", ")
                            ))
                        });
                    self.report(span, &path, "unknown key".into(), hint);
                    continue;
                };
                if kind == FileKind::Profile && path == "lab.profile" {
                    self.report(span, &path, "a profile cannot select another profile".into(), Some("remove this key".into()));
                    continue;
                }
                if let Some(v) = self.value(spec, key, &path, value) {
                    layer.set(&path, v, self.position(value.span().or(span)));
                }
            }
        }
        layer
    }

    fn profile_table(&mut self, item: &Item, description: &mut Option<String>) {
        let Some(table) = item.as_table_like() else {
            self.report(item.span(), "profile", "expected a table [profile]".into(), None);
            return;
        };
        for (key, value) in table.iter() {
            let path = format!("profile.{key}");
            match (key, value.as_str()) {
                ("description", Some(text)) => *description = Some(text.to_owned()),
                ("description", None) => self.report(value.span(), &path, format!("expected a string, found {}", describe(value)), None),
                _ => self.report(
                    table.key(key).and_then(|k| k.span()),
                    &path,
                    "unknown key".into(),
                    Some("[profile] only has `description`".into()),
                ),
            }
        }
    }

    fn position(&self, span: Option<Range<usize>>) -> (usize, usize) {
        line_col(self.text, span.map_or(0, |s| s.start))
    }

    /// Checks one value against its spec; `None` after reporting a problem.
    pub(crate) fn value(&mut self, spec: &KeySpec, key: &str, path: &str, item: &Item) -> Option<Value> {
        let span = item.span();
        let expected = spec.kind.expected();
        let wrong = |this: &mut Self, found: String| {
            this.report(span.clone(), path, format!("expected {expected}, found {found}"), None);
            None
        };
        match spec.kind {
            Kind::Bool => match item.as_bool() {
                Some(b) => Some(json!(b)),
                None => wrong(self, describe(item)),
            },
            Kind::Int { min, max } => match item.as_integer() {
                Some(n) if (min..=max).contains(&n) => Some(json!(n)),
                Some(n) => wrong(self, n.to_string()),
                None => wrong(self, describe(item)),
            },
            Kind::Port => match (item.as_integer(), item.as_str()) {
                (Some(n), _) if (1..=65535).contains(&n) => Some(json!(n)),
                (_, Some("auto")) => Some(json!("auto")),
                (Some(n), _) => {
                    let hint = (n == 0).then(|| "use \"auto\" to let idp-lab pick a free port".to_owned());
                    self.report(span, path, format!("expected {expected}, found {n}"), hint);
                    None
                }
                (None, Some(s)) => wrong(self, format!("\"{s}\"")),
                _ => wrong(self, describe(item)),
            },
            _ => {
                let Some(text) = item.as_str() else {
                    return match spec.kind {
                        Kind::Duration => match item.as_integer() {
                            Some(n) if n > 0 => Some(json!(n)),
                            _ => wrong(self, describe(item)),
                        },
                        Kind::List => self.list(path, item),
                        Kind::Taints => self.taints(path, item),
                        Kind::Pools => self.pools(path, item),
                        Kind::Mirrors => self.mirrors(path, item),
                        Kind::Resolvers => self.resolvers(path, item),
                        Kind::Playbooks => self.playbooks(path, item),
                        Kind::Subset(words) => self.builtin_names(path, item, words),
                        _ => wrong(self, describe(item)),
                    };
                };
                self.string(spec, key, path, text, span)
            }
        }
    }

    fn string(&mut self, spec: &KeySpec, key: &str, path: &str, text: &str, span: Option<Range<usize>>) -> Option<Value> {
        let ok = match spec.kind {
            Kind::Name => is_name(text),
            Kind::Text => !text.trim().is_empty(),
            Kind::OptText => true,
            Kind::Choice(words) => {
                if !words.contains(&text) {
                    let hint = did_you_mean(text, words.iter().copied()).map(|w| format!("did you mean \"{w}\"?"));
                    self.report(span, path, format!("expected {}, found \"{text}\"", spec.kind.expected()), hint);
                    return None;
                }
                true
            }
            Kind::Ip => text.parse::<IpAddr>().is_ok(),
            Kind::AutoIp => text == "auto" || text.parse::<IpAddr>().is_ok(),
            Kind::Suffix => text == "auto" || is_dns_name(text),
            Kind::Size => parse_size(text).is_some(),
            Kind::Bytes => parse_bytes(text).is_some(),
            Kind::Resolvers => {
                let hint = format!("write an array, e.g. [\"{text}\"]");
                self.report(span, path, format!("expected {}, found \"{text}\"", spec.kind.expected()), Some(hint));
                return None;
            }
            Kind::Duration => {
                return match parse_duration(text) {
                    Some(secs) => Some(json!(secs)),
                    None => {
                        self.report(span, path, format!("expected {}, found \"{text}\"", spec.kind.expected()), None);
                        None
                    }
                };
            }
            Kind::Version => {
                if !self.components.contains(&key) {
                    let hint = did_you_mean(key, self.components.iter().copied())
                        .map(|c| format!("did you mean `{c}`?"))
                        .or_else(|| Some(format!("components with a chart: {}", self.components.join(", "))));
                    self.report(span, path, "no component with a chart has this name".into(), hint);
                    return None;
                }
                !text.trim().is_empty() && !text.contains(char::is_whitespace)
            }
            _ => false,
        };
        if ok {
            Some(json!(text))
        } else {
            self.report(span, path, format!("expected {}, found \"{text}\"", spec.kind.expected()), None);
            None
        }
    }

    fn strings(&mut self, path: &str, item: &Item) -> Option<Vec<String>> {
        let Some(array) = item.as_array() else {
            self.report(item.span(), path, format!("expected an array of strings, found {}", describe(item)), None);
            return None;
        };
        let mut out = Vec::new();
        let mut ok = true;
        for (i, v) in array.iter().enumerate() {
            match v.as_str() {
                Some(s) => out.push(s.to_owned()),
                None => {
                    self.report(v.span(), &format!("{path}[{i}]"), format!("expected a string, found {}", describe_value(v)), None);
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    fn list(&mut self, path: &str, item: &Item) -> Option<Value> {
        self.strings(path, item).map(|v| json!(v))
    }

    /// A list of strings whose every entry `problem` accepts (`None`) or explains, as
    /// the message and a hint; each bad entry is reported at its own position.
    fn checked_list(&mut self, path: &str, item: &Item, problem: impl Fn(&str) -> Option<(String, Option<String>)>) -> Option<Value> {
        let entries = self.strings(path, item)?;
        let spans: Vec<Option<Range<usize>>> = item.as_array().map(|a| a.iter().map(toml_edit::Value::span).collect()).unwrap_or_default();
        let mut ok = true;
        for (i, entry) in entries.iter().enumerate() {
            if let Some((message, hint)) = problem(entry) {
                let span = spans.get(i).cloned().flatten().or_else(|| item.span());
                self.report(span, &format!("{path}[{i}]"), message, hint);
                ok = false;
            }
        }
        ok.then(|| json!(entries))
    }

    fn taints(&mut self, path: &str, item: &Item) -> Option<Value> {
        self.checked_list(path, item, |t| {
            (!is_taint(t)).then(|| {
                (format!("expected a taint \"key=value:Effect\" (Effect: NoSchedule, PreferNoSchedule or NoExecute), found \"{t}\""), None)
            })
        })
    }

    fn resolvers(&mut self, path: &str, item: &Item) -> Option<Value> {
        self.checked_list(path, item, |r| {
            parse_resolver(r).is_none().then(|| {
                (format!("expected a resolver address \"ip\" or \"ip:port\" (\"[ip]:port\" for IPv6), found \"{r}\""), resolver_hint(r))
            })
        })
    }

    fn pools(&mut self, path: &str, item: &Item) -> Option<Value> {
        let tables: Vec<(Option<Range<usize>>, &dyn toml_edit::TableLike)> = if let Some(aot) = item.as_array_of_tables() {
            aot.iter().map(|t| (t.span(), t as &dyn toml_edit::TableLike)).collect()
        } else if let Some(array) = item.as_array() {
            let mut out = Vec::new();
            for v in array.iter() {
                match v.as_inline_table() {
                    Some(t) => out.push((v.span(), t as &dyn toml_edit::TableLike)),
                    None => {
                        self.report(
                            v.span(),
                            path,
                            format!("expected a pool table, found {}", describe_value(v)),
                            Some(Kind::Pools.expected()),
                        );
                        return None;
                    }
                }
            }
            out
        } else {
            self.report(item.span(), path, format!("expected {}, found {}", Kind::Pools.expected(), describe(item)), None);
            return None;
        };
        let mut pools = Vec::new();
        let mut names = Vec::new();
        let mut ok = true;
        for (i, (span, table)) in tables.into_iter().enumerate() {
            let here = format!("{path}[{i}]");
            let mut pool = serde_json::Map::new();
            pool.insert("labels".into(), json!({}));
            pool.insert("taints".into(), json!([]));
            for (key, value) in table.iter() {
                let kpath = format!("{here}.{key}");
                let vspan = value.span().or_else(|| span.clone());
                match key {
                    "name" => match value.as_str() {
                        Some(n) if is_name(n) && !names.contains(&n.to_owned()) => {
                            names.push(n.to_owned());
                            pool.insert("name".into(), json!(n));
                        }
                        Some(n) if is_name(n) => {
                            self.report(vspan, &kpath, format!("pool name \"{n}\" is used twice"), None);
                            ok = false;
                        }
                        _ => {
                            self.report(vspan, &kpath, format!("expected {}, found {}", Kind::Name.expected(), describe(value)), None);
                            ok = false;
                        }
                    },
                    "labels" => match self.string_table(&kpath, value, is_label_key, is_label_value) {
                        Some(labels) => {
                            pool.insert("labels".into(), labels);
                        }
                        None => ok = false,
                    },
                    "taints" => match self.strings(&kpath, value) {
                        Some(taints) => {
                            for (j, t) in taints.iter().enumerate() {
                                if !is_taint(t) {
                                    self.report(vspan.clone(), &format!("{kpath}[{j}]"), format!("expected a taint \"key=value:Effect\" (Effect: NoSchedule, PreferNoSchedule or NoExecute), found \"{t}\""), None);
                                    ok = false;
                                }
                            }
                            pool.insert("taints".into(), json!(taints));
                        }
                        None => ok = false,
                    },
                    other => {
                        let hint = did_you_mean(other, ["name", "labels", "taints"]).map(|k| format!("did you mean `{k}`?"));
                        self.report(
                            vspan,
                            &kpath,
                            "unknown key".into(),
                            hint.or_else(|| Some("a pool has name, labels and taints".into())),
                        );
                        ok = false;
                    }
                }
            }
            if !pool.contains_key("name") && ok {
                self.report(span, &here, "a pool needs a `name`".into(), None);
                ok = false;
            }
            pools.push(Value::Object(pool));
        }
        ok.then_some(Value::Array(pools))
    }

    fn mirrors(&mut self, path: &str, item: &Item) -> Option<Value> {
        let Some(table) = item.as_table_like() else {
            self.report(item.span(), path, format!("expected {}, found {}", Kind::Mirrors.expected(), describe(item)), None);
            return None;
        };
        let mut out = serde_json::Map::new();
        let mut ok = true;
        for (registry, value) in table.iter() {
            let kpath = format!("{path}.\"{registry}\"");
            match self.strings(&kpath, value) {
                Some(endpoints) => {
                    for e in &endpoints {
                        if !(e.starts_with("http://") || e.starts_with("https://")) || e.len() <= "https://".len() {
                            self.report(
                                value.span(),
                                &kpath,
                                format!("expected an endpoint URL starting with http:// or https://, found \"{e}\""),
                                Some("plain-HTTP mirrors need an explicit http://".into()),
                            );
                            ok = false;
                        }
                    }
                    out.insert(registry.to_owned(), json!(endpoints));
                }
                None => ok = false,
            }
        }
        ok.then_some(Value::Object(out))
    }

    fn string_table(&mut self, path: &str, item: &Item, key_ok: fn(&str) -> bool, value_ok: fn(&str) -> bool) -> Option<Value> {
        let Some(table) = item.as_table_like() else {
            self.report(item.span(), path, format!("expected a table of strings, found {}", describe(item)), None);
            return None;
        };
        let mut out = serde_json::Map::new();
        let mut ok = true;
        for (k, v) in table.iter() {
            let kpath = format!("{path}.{k}");
            match v.as_str() {
                Some(s) if key_ok(k) && value_ok(s) => {
                    out.insert(k.to_owned(), json!(s));
                }
                Some(s) => {
                    self.report(v.span(), &kpath, format!("expected a Kubernetes label (key: [prefix/]name, value: at most 63 of letters, digits, '-', '_', '.'), found {k} = \"{s}\""), None);
                    ok = false;
                }
                None => {
                    self.report(v.span(), &kpath, format!("expected a string, found {}", describe(v)), None);
                    ok = false;
                }
            }
        }
        ok.then_some(Value::Object(out))
    }
}

fn key_span(table: &Table, name: &str) -> Option<Range<usize>> {
    table.key(name).and_then(|k| k.span())
}

/// A short description of a TOML item's type, e.g. `a string ("x")` or `an integer (3)`.
pub(super) fn describe(item: &Item) -> String {
    match item {
        Item::None => "nothing".into(),
        Item::Value(v) => describe_value(v),
        Item::Table(_) => "a table".into(),
        Item::ArrayOfTables(_) => "an array of tables".into(),
    }
}

pub(super) fn describe_value(v: &toml_edit::Value) -> String {
    match v {
        toml_edit::Value::String(s) => format!("a string (\"{}\")", s.value()),
        toml_edit::Value::Integer(i) => format!("an integer ({})", i.value()),
        toml_edit::Value::Float(f) => format!("a float ({})", f.value()),
        toml_edit::Value::Boolean(b) => format!("a boolean ({})", b.value()),
        toml_edit::Value::Datetime(d) => format!("a datetime ({})", d.value()),
        toml_edit::Value::Array(_) => "an array".into(),
        toml_edit::Value::InlineTable(_) => "a table".into(),
    }
}

/// RFC 1123 label starting with a letter, at most 32 characters.
pub fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && !s.ends_with('-')
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// A DNS name of at least two labels, each an RFC 1123 label.
pub fn is_dns_name(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').count() >= 2
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        })
}

fn is_label_value(s: &str) -> bool {
    s.len() <= 63
        && (s.is_empty()
            || (s.starts_with(|c: char| c.is_ascii_alphanumeric())
                && s.ends_with(|c: char| c.is_ascii_alphanumeric())
                && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))))
}

fn is_label_key(s: &str) -> bool {
    let (prefix, name) = match s.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    prefix.is_none_or(is_dns_name) && !name.is_empty() && is_label_value(name)
}

fn is_taint(s: &str) -> bool {
    let Some((kv, effect)) = s.rsplit_once(':') else {
        return false;
    };
    let (key, value) = kv.split_once('=').unwrap_or((kv, ""));
    ["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&effect) && is_label_key(key) && is_label_value(value)
}

/// Parses a resolver address, `ip` (port 53) or `ip:port` (`[v6]:port`); `None` for
/// anything else, port 0, and the unspecified or a multicast address.
pub fn parse_resolver(s: &str) -> Option<SocketAddr> {
    let addr = match s.parse::<IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, 53),
        Err(_) => s.parse::<SocketAddr>().ok()?,
    };
    (addr.port() != 0 && !addr.ip().is_unspecified() && !addr.ip().is_multicast()).then_some(addr)
}

/// Why a string that [`parse_resolver`] refused is not a resolver, when that can be told.
fn resolver_hint(s: &str) -> Option<String> {
    let ip = s.parse::<IpAddr>().ok().or_else(|| s.parse::<SocketAddr>().ok().map(|a| a.ip()));
    if let Some(ip) = ip {
        return Some(if ip.is_unspecified() {
            format!("{ip} is no resolver: give the address of one")
        } else if ip.is_multicast() {
            format!("{ip} is a multicast address: give the address of one resolver")
        } else {
            "port 0 is no port: omit it for 53".to_owned()
        });
    }
    let (host, port) = s.rsplit_once(':').unwrap_or((s, ""));
    if host.contains(':') && !host.starts_with('[') && port.parse::<u16>().is_ok() {
        return Some(format!("an IPv6 address with a port is written in brackets, e.g. \"[{host}]:{port}\""));
    }
    if host.chars().any(|c| c.is_ascii_alphabetic()) && !host.contains(':') {
        return Some("a resolver is named by its IP address, not a hostname (which it would itself have to resolve)".to_owned());
    }
    None
}

/// Parses a memory size (`"4g"`, `"512m"`, `"1Gi"`, `"0"`) into bytes: at least Docker's
/// 6 MiB floor, or 0 for no limit.
pub fn parse_size(s: &str) -> Option<u64> {
    let bytes = parse_bytes(s)?;
    // Docker refuses limits under 6 MiB; 0 means "no limit".
    (bytes == 0 || bytes >= 6 << 20).then_some(bytes)
}

/// Parses a number of bytes with a unit (`"32m"`, `"512k"`, `"1Gi"`, `"0"`), no floor.
pub fn parse_bytes(s: &str) -> Option<u64> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "ki" | "kib" => 1 << 10,
        "m" | "mb" | "mi" | "mib" => 1 << 20,
        "g" | "gb" | "gi" | "gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// Parses a duration (`"300s"`, `"5m"`, `"1h"`, `"90"`) into whole seconds (at least 1).
pub fn parse_duration(s: &str) -> Option<u64> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return None,
    };
    n.checked_mul(mult).filter(|&secs| secs > 0)
}

/// Validates one environment variable `IDP_LAB_<SECTION>_<KEY>` holding `raw`.
pub(crate) fn env_value(checker: &mut Checker<'_>, var: &str, raw: &str, layer: &mut Layer) {
    let rest = &var["IDP_LAB_".len()..];
    let (section, key) = match rest.split_once('_') {
        Some((s, k)) => (s.to_ascii_lowercase(), k.to_ascii_lowercase()),
        None => (rest.to_ascii_lowercase(), String::new()),
    };
    let Some(spec) = schema::lookup(&section, &key) else {
        let known: Vec<String> = schema::KEYS.iter().filter(|k| k.key != "*").map(KeySpec::env_var).collect();
        let hint = did_you_mean(var, known.iter().map(String::as_str)).map(|v| format!("did you mean {v}?")).unwrap_or_else(|| {
            format!(
                "configuration variables are IDP_LAB_<SECTION>_<KEY> (see docs/configuration.md); reserved: {}",
                schema::ENV_VARS.iter().map(|v| v.name).collect::<Vec<_>>().join(", ")
            )
        });
        checker.report(None, &format!("{section}.{key}"), "no such configuration key".into(), Some(hint));
        return;
    };
    // A value that parses as a TOML value is taken as one (numbers, booleans, arrays,
    // tables); anything else is a bare string.
    let value: toml_edit::Value = raw.parse().unwrap_or_else(|_| toml_edit::Value::from(raw));
    let item = Item::Value(value);
    let path = format!("{section}.{key}");
    if let Some(v) = checker.value(spec, &key, &path, &item) {
        layer.set(&path, v, (1, 1));
    }
}
