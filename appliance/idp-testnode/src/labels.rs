//! Node names, labels and taints as k3s' flags take them (`--node-name`,
//! `--node-label`, `--node-taint`), checked the way the API server will.

/// A node taint as parsed from `--node-taint`.
pub type Taint = k8s_openapi::api::core::v1::Taint;

/// True for a lowercase RFC 1123 subdomain (node names, AddOn names).
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|part| {
            !part.is_empty()
                && part.len() <= 63
                && part.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        })
}

/// A label name or value segment: alphanumerics with `-_.` inside, ≤ 63.
fn is_label_segment(s: &str) -> bool {
    s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && s.bytes().next().is_none_or(|b| b.is_ascii_alphanumeric())
        && s.bytes().last().is_none_or(|b| b.is_ascii_alphanumeric())
}

/// A qualified key: `[prefix/]name`, prefix a DNS subdomain.
fn is_qualified_key(k: &str) -> bool {
    let (prefix, name) = match k.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    !name.is_empty() && is_label_segment(name) && prefix.is_none_or(is_dns_subdomain)
}

/// Parses `key=value` (`key=` allowed) as given to `--node-label`.
pub fn parse_label(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or_else(|| "a node label must be key=value".to_string())?;
    if !is_qualified_key(k) {
        return Err(format!("{k:?} is not a valid label key"));
    }
    if !is_label_segment(v) {
        return Err(format!("{v:?} is not a valid label value"));
    }
    Ok((k.to_string(), v.to_string()))
}

/// Parses `key[=value]:Effect` as given to `--node-taint`.
pub fn parse_taint(s: &str) -> Result<Taint, String> {
    let (kv, effect) = s.rsplit_once(':').ok_or_else(|| "a node taint must be key=value:Effect".to_string())?;
    if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
        return Err(format!("unknown taint effect {effect:?} (NoSchedule, PreferNoSchedule or NoExecute)"));
    }
    let (key, value) = match kv.split_once('=') {
        Some((k, v)) => (k, Some(v)),
        None => (kv, None),
    };
    if !is_qualified_key(key) {
        return Err(format!("{key:?} is not a valid taint key"));
    }
    if let Some(v) = value
        && !is_label_segment(v)
    {
        return Err(format!("{v:?} is not a valid taint value"));
    }
    Ok(Taint { key: key.to_string(), value: value.map(str::to_string), effect: effect.to_string(), time_added: None })
}
