//! One valid custom resource per CustomResourceDefinition, generated from the CRD's schema.
//!
//! The acceptance tests apply the downlevelled CRD fixtures (see [`crate::crds`]) together with
//! one custom resource of each; [`sample_custom_resources`] makes those resources. Each sample
//! holds the least the storage version's `openAPIV3Schema` demands: every `required` property,
//! recursively, with a value that passes the schema's structural checks (type, `enum`,
//! `format`, `pattern`, lengths, bounds, item and property counts, `oneOf`/`anyOf`/`allOf`),
//! plus `spec` whenever the schema has one, so that the objects look like real custom
//! resources. `status` is never set.
//!
//! A string with a `pattern` is the first of a fixed list of our own candidate values
//! (`sample`, `example.com`, `https://example.com`, `30s`, ...) that the compiled pattern
//! matches; a pattern none of them matches is an error that names it (see [`sample_string`]).
//!
//! The generator does not evaluate CEL (`x-kubernetes-validations`; the downlevel script drops
//! them for the 1.20 API server anyway), but its choices satisfy the upstream rules on the
//! paths it fills: mostly by being minimal (a Gateway listener with no `hostname` or `tls`),
//! else through a short table of extra fields per kind (a Gateway API backend reference gets a
//! `port`, a listener the protocol `HTTP`), which also holds a few values the controllers
//! would parse (a cron `schedule`, an SLO `target`).
//!
//! It never sends `""`: the 1.20 API server's server-side apply turns an empty string into
//! `null` and then refuses it as not a string. So a pattern like `^$|<dns name>` gets a name.
//!
//! ```
//! use serde_json::json;
//!
//! let crd = json!({
//!     "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
//!     "metadata": {"name": "widgets.example.com"},
//!     "spec": {"group": "example.com", "scope": "Namespaced",
//!              "names": {"plural": "widgets", "kind": "Widget"},
//!              "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
//!                  "type": "object",
//!                  "properties": {"spec": {"type": "object", "required": ["size"],
//!                      "properties": {"size": {"type": "integer", "minimum": 3}}}}}}}]}
//! });
//! let samples = idp_test::samples::sample_custom_resources(&[crd], "lab").expect("a sample");
//! assert_eq!(samples, vec![json!({
//!     "apiVersion": "example.com/v1", "kind": "Widget",
//!     "metadata": {"name": "sample-widget", "namespace": "lab"},
//!     "spec": {"size": 3}
//! })]);
//! ```

use anyhow::{Context as _, bail};
use regex::Regex;
use serde_json::{Map, Value, json};

/// The string for a schema with no `enum`, `format` or `pattern` to go by.
const PLAIN: &str = "sample";

/// The strings tried, in this order, for a schema with a `pattern`: the first that the
/// compiled pattern matches, fits `minLength`/`maxLength` and is not `""` is the one sent (else
/// the first that matches once padded or cut to fit; see [`sample_string`]). The order is the
/// preference: the plain word wins wherever it is allowed, so a name stays `sample`, and the
/// more particular values (a URL, a duration, a cron schedule, ...) come up only for patterns
/// that refuse it. A pattern none of them matches is an error naming the schema path and the
/// pattern: the value to add here.
const CANDIDATES: &[&str] = &[
    PLAIN,
    "Sample",
    "example.com",
    "sample.example.com",
    "HTTP",
    "IPAddress",
    "System",
    "example.com/sample",
    "X-Sample",
    "https://example.com",
    "january",
    "monday",
    "30s",
    "1",
    "1GB",
    "00:00",
    "2024",
    "0 0 * * *",
    "abort",
    "sample@sample.iam.gserviceaccount.com",
    "sample.yaml",
];

/// Fields set beyond what the schemas require, as (group, kind, path, [(field, JSON value)]):
/// values the CEL rules of the upstream CRDs demand (the generator does not evaluate CEL),
/// and a few that make the samples read like real ones. A path names an object the generator
/// fills (`[]` stands for the items of a list); a field the schema does not describe there is
/// an error, so that a fixture update cannot turn an entry into a silently pruned field.
type Extra = (&'static str, &'static str, &'static str, &'static [(&'static str, &'static str)]);

const EXTRAS: &[Extra] = &[
    // CEL: "must specify either CACertificateRefs or WellKnownCACertificates".
    ("gateway.networking.k8s.io", "BackendTLSPolicy", "spec.validation", &[("wellKnownCACertificates", r#""System""#)]),
    // CEL: a backend reference to a Service (the default kind, core group) needs a port.
    ("gateway.networking.k8s.io", "TCPRoute", "spec.rules[].backendRefs[]", &[("port", "8080")]),
    ("gateway.networking.k8s.io", "TLSRoute", "spec.rules[].backendRefs[]", &[("port", "8443")]),
    ("gateway.networking.k8s.io", "UDPRoute", "spec.rules[].backendRefs[]", &[("port", "5353")]),
    // Readability: an HTTP listener on port 80 rather than a `sample` one on the minimum, 1.
    ("gateway.networking.k8s.io", "Gateway", "spec.listeners[]", &[("protocol", r#""HTTP""#), ("port", "80")]),
    ("gateway.networking.k8s.io", "ListenerSet", "spec.listeners[]", &[("protocol", r#""HTTP""#), ("port", "80")]),
    // Strings the controllers parse (their webhooks, not the schemas, check them).
    ("kyverno.io", "CleanupPolicy", "spec", &[("schedule", r#""0 0 * * *""#)]),
    ("kyverno.io", "ClusterCleanupPolicy", "spec", &[("schedule", r#""0 0 * * *""#)]),
    ("pyrra.dev", "ServiceLevelObjective", "spec", &[("target", r#""99.5""#), ("window", r#""28d""#)]),
];

/// Returns one custom resource for each CRD in `crds` (JSON `CustomResourceDefinition`s, e.g.
/// from [`downlevel_crd_fixtures`](crate::crds::downlevel_crd_fixtures)), sorted by
/// (group, kind).
///
/// Each sample is of the CRD's storage version (the version with `storage: true`, else the
/// first served one): `apiVersion: <group>/<version>`, `kind`, `metadata.name`
/// `sample-<lowercased kind>`, `metadata.namespace` = `namespace` only for `Namespaced` CRDs,
/// and a body generated from the version's `openAPIV3Schema` (see the [module docs](self)).
/// The output depends only on the input: the same CRDs give the same bytes.
///
/// Fails, naming the CRD and the schema path, on a CRD without group, kind or a usable
/// version, or on a schema no value can satisfy (e.g. `minProperties` with nothing to add).
pub fn sample_custom_resources(crds: &[Value], namespace: &str) -> anyhow::Result<Vec<Value>> {
    let mut samples = Vec::with_capacity(crds.len());
    for crd in crds {
        let name = crd.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("<unnamed>");
        let sample = sample_custom_resource(crd, namespace).with_context(|| format!("no sample for CRD {name}"))?;
        let group = crd.pointer("/spec/group").and_then(Value::as_str).unwrap_or_default().to_string();
        let kind = crd.pointer("/spec/names/kind").and_then(Value::as_str).unwrap_or_default().to_string();
        samples.push(((group, kind), sample));
    }
    samples.sort_by(|(a, _), (b, _)| a.cmp(b));
    Ok(samples.into_iter().map(|(_, sample)| sample).collect())
}

/// The sample of one CRD; see [`sample_custom_resources`].
pub fn sample_custom_resource(crd: &Value, namespace: &str) -> anyhow::Result<Value> {
    let spec = crd.get("spec").context("the CRD has no spec")?;
    let group = spec.get("group").and_then(Value::as_str).context("the CRD has no spec.group")?;
    let kind = spec.pointer("/names/kind").and_then(Value::as_str).context("the CRD has no spec.names.kind")?;
    let version = storage_version(crd).context("the CRD has neither a storage nor a served version")?;
    let version_name = version.get("name").and_then(Value::as_str).context("a CRD version without a name")?;
    let namespaced = spec.get("scope").and_then(Value::as_str) == Some("Namespaced");

    let mut object = match version.pointer("/schema/openAPIV3Schema") {
        Some(schema) => Generator { group, kind }.root_body(schema)?,
        None => Map::new(),
    };
    let mut metadata = Map::new();
    metadata.insert("name".into(), Value::String(sample_name(kind)));
    if namespaced {
        metadata.insert("namespace".into(), Value::String(namespace.to_string()));
    }
    object.insert("apiVersion".into(), Value::String(format!("{group}/{version_name}")));
    object.insert("kind".into(), Value::String(kind.to_string()));
    object.insert("metadata".into(), Value::Object(metadata));
    Ok(Value::Object(object))
}

/// The version a CRD stores: the one with `storage: true`, else the first served one.
pub fn storage_version(crd: &Value) -> Option<&Value> {
    let versions = crd.pointer("/spec/versions").and_then(Value::as_array)?;
    let flag = |v: &Value, key: &str| v.get(key).and_then(Value::as_bool) == Some(true);
    versions.iter().find(|v| flag(v, "storage")).or_else(|| versions.iter().find(|v| flag(v, "served")))
}

/// `sample-<kind>`, lowercased and reduced to a DNS-1123 label.
fn sample_name(kind: &str) -> String {
    let kind: String = kind.to_ascii_lowercase().chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
    let name = format!("sample-{kind}");
    let name = name.trim_end_matches('-');
    name.chars().take(63).collect()
}

/// Generates values for the schemas of one CRD (`group`, `kind` pick its [`EXTRAS`]).
struct Generator<'a> {
    group: &'a str,
    kind: &'a str,
}

impl Generator<'_> {
    /// The fields of the object besides `apiVersion`, `kind` and `metadata`: the root schema's
    /// required properties, and `spec` whenever there is one. Never `status`.
    fn root_body(&self, schema: &Value) -> anyhow::Result<Map<String, Value>> {
        let schema = effective(schema);
        let props = schema.get("properties").and_then(Value::as_object);
        let mut body = Map::new();
        let mut wanted: Vec<&str> = required(&schema).collect();
        if props.is_some_and(|p| p.contains_key("spec")) && !wanted.contains(&"spec") {
            wanted.push("spec");
        }
        for key in wanted {
            if matches!(key, "apiVersion" | "kind" | "metadata" | "status") || body.contains_key(key) {
                continue;
            }
            let value = match props.and_then(|p| p.get(key)) {
                Some(prop) => self.generate(prop, key)?,
                None => bail!("the root schema requires {key:?} but does not describe it"),
            };
            body.insert(key.to_string(), value);
        }
        Ok(body)
    }

    /// A valid value for `schema`; `path` names it in errors (`spec.listeners[].port`).
    fn generate(&self, schema: &Value, path: &str) -> anyhow::Result<Value> {
        let schema = effective(schema);
        let flag = |key: &str| schema.get(key).and_then(Value::as_bool) == Some(true);
        let ty = schema.get("type").and_then(Value::as_str);

        // A scalar or list default is valid by construction (the API server checks CRD defaults);
        // an object default is a starting point that `object` completes.
        match schema.get("default") {
            Some(Value::Object(_)) | None => {}
            Some(Value::Array(items)) if (items.len() as u64) < bound(&schema, "minItems").unwrap_or(0) => {}
            Some(default) if usable(default) => return Ok(default.clone()),
            Some(_) => {}
        }
        if let Some(values) = schema.get("enum").and_then(Value::as_array).filter(|e| !e.is_empty()) {
            // The first usable value; `""` or `null` only when the enum allows nothing else.
            return Ok(values.iter().find(|v| usable(v)).unwrap_or(&values[0]).clone());
        }
        if flag("x-kubernetes-int-or-string") {
            return Ok(number(&schema, true));
        }
        match ty {
            Some("string") => Ok(Value::String(sample_string(&schema).with_context(|| path.to_string())?)),
            Some("integer") => Ok(number(&schema, true)),
            Some("number") => Ok(number(&schema, false)),
            Some("boolean") => Ok(Value::Bool(false)),
            Some("array") => self.array(&schema, path),
            Some("object") => self.object(&schema, path),
            Some(other) => bail!("{path}: unknown type {other:?}"),
            // Untyped: an object if it describes properties, else anything (preserve-unknown).
            None => self.object(&schema, path),
        }
    }

    fn array(&self, schema: &Value, path: &str) -> anyhow::Result<Value> {
        let min = bound(schema, "minItems").unwrap_or(0);
        if min == 0 {
            return Ok(Value::Array(Vec::new()));
        }
        let items = schema.get("items").with_context(|| format!("{path}: an array with minItems {min} but no items schema"))?;
        let item = self.generate(items, &format!("{path}[]"))?;
        let set = schema.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("set")
            || schema.get("uniqueItems") == Some(&Value::Bool(true));
        if set && min > 1 {
            bail!("{path}: a set of at least {min} distinct items is not supported");
        }
        Ok(Value::Array((0..min).map(|_| item.clone()).collect()))
    }

    /// The [`EXTRAS`] fields (name, JSON text) for the object at `path` of this CRD.
    fn extras(&self, path: &str) -> impl Iterator<Item = &'static (&'static str, &'static str)> {
        let here = EXTRAS.iter().filter(move |(group, kind, at, _)| *group == self.group && *kind == self.kind && *at == path);
        here.flat_map(|(_, _, _, fields)| fields.iter())
    }

    fn object(&self, schema: &Value, path: &str) -> anyhow::Result<Value> {
        let mut object = match schema.get("default") {
            Some(Value::Object(default)) => default.clone(),
            _ => Map::new(),
        };
        let props = schema.get("properties").and_then(Value::as_object);
        let additional = schema.get("additionalProperties").filter(|a| a.is_object());
        let child = |key: &str| if path.is_empty() { key.to_string() } else { format!("{path}.{key}") };

        if schema.get("x-kubernetes-embedded-resource").and_then(Value::as_bool) == Some(true) {
            object.entry("apiVersion").or_insert_with(|| json!("v1"));
            object.entry("kind").or_insert_with(|| json!("ConfigMap"));
            object.entry("metadata").or_insert_with(|| json!({"name": PLAIN}));
        }
        for key in required(schema) {
            if object.contains_key(key) {
                continue;
            }
            let value = match (props.and_then(|p| p.get(key)), additional) {
                (Some(prop), _) | (None, Some(prop)) => self.generate(prop, &child(key))?,
                (None, None) => bail!("{}: required but not described", child(key)),
            };
            object.insert(key.to_string(), value);
        }
        for (key, text) in self.extras(path) {
            if !props.is_some_and(|p| p.contains_key(*key)) {
                bail!("{}: the schema no longer describes this field of EXTRAS", child(key));
            }
            let value = serde_json::from_str(text).with_context(|| format!("{}: EXTRAS holds no JSON: {text}", child(key)))?;
            object.insert(key.to_string(), value);
        }
        // minProperties: add declared properties in name order, then additional ones.
        let min = bound(schema, "minProperties").unwrap_or(0);
        let mut declared = props.into_iter().flatten();
        let mut extra = 0;
        while (object.len() as u64) < min {
            if let Some((key, prop)) = declared.find(|(key, _)| !object.contains_key(*key)) {
                let value = self.generate(prop, &child(key))?;
                object.insert(key.clone(), value);
                continue;
            }
            let key = if extra == 0 { PLAIN.to_string() } else { format!("{PLAIN}-{extra}") };
            extra += 1;
            if object.contains_key(&key) {
                continue;
            }
            let value = match (additional, schema.get("additionalProperties")) {
                (Some(prop), _) => self.generate(prop, &child(&key))?,
                (None, Some(Value::Bool(true))) => Value::String(PLAIN.into()),
                _ if schema.get("x-kubernetes-preserve-unknown-fields").and_then(Value::as_bool) == Some(true) => {
                    Value::String(PLAIN.into())
                }
                _ => bail!("{path}: minProperties {min} but no further property may be set"),
            };
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

/// The `required` property names of a schema, in their order.
fn required(schema: &Value) -> impl Iterator<Item = &str> {
    schema.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str)
}

/// `schema` with its `allOf` branches and the first `oneOf` and `anyOf` branch merged in (the
/// first branch is the one the sample satisfies). `not` is left alone: the samples hold only
/// required properties, which the fixtures' `not` clauses (e.g. "not both `any` and `all`")
/// never forbid.
fn effective(schema: &Value) -> Value {
    let Some(obj) = schema.as_object() else { return schema.clone() };
    if !["allOf", "oneOf", "anyOf"].iter().any(|k| obj.contains_key(*k)) {
        return schema.clone();
    }
    let mut merged = obj.clone();
    let all_of = merged.remove("allOf");
    let one_of = merged.remove("oneOf");
    let any_of = merged.remove("anyOf");
    let mut merged = Value::Object(merged);
    let branches = all_of
        .as_ref()
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .chain(one_of.as_ref().and_then(Value::as_array).and_then(|b| b.first()))
        .chain(any_of.as_ref().and_then(Value::as_array).and_then(|b| b.first()));
    for branch in branches {
        overlay(&mut merged, &effective(branch));
    }
    merged
}

/// Merges the constraints of `branch` into `base`: `required` lists are united, `properties`
/// merge per property, any other keyword of the branch wins.
fn overlay(base: &mut Value, branch: &Value) {
    let (Some(base), Some(branch)) = (base.as_object_mut(), branch.as_object()) else { return };
    for (key, value) in branch {
        match key.as_str() {
            "required" => {
                let list = base.entry("required").or_insert_with(|| Value::Array(Vec::new()));
                if let (Some(list), Some(more)) = (list.as_array_mut(), value.as_array()) {
                    for name in more {
                        if !list.contains(name) {
                            list.push(name.clone());
                        }
                    }
                }
            }
            "properties" => {
                let props = base.entry("properties").or_insert_with(|| Value::Object(Map::new()));
                if let (Some(props), Some(more)) = (props.as_object_mut(), value.as_object()) {
                    for (name, schema) in more {
                        match props.get_mut(name) {
                            Some(existing) => overlay(existing, schema),
                            None => {
                                props.insert(name.clone(), schema.clone());
                            }
                        }
                    }
                }
            }
            _ => {
                base.insert(key.clone(), value.clone());
            }
        }
    }
}

/// Whether a scalar is fit to send: not `null`, and not `""`, which the 1.20 API server's
/// server-side apply turns into `null` before validating ("must be of type string: \"null\"").
fn usable(value: &Value) -> bool {
    !value.is_null() && value.as_str() != Some("")
}

/// `minItems`-like non-negative bounds.
fn bound(schema: &Value, key: &str) -> Option<u64> {
    schema.get(key).and_then(Value::as_u64)
}

/// An integer (or a number) within `minimum`/`maximum`: 1 when allowed, else the nearest bound.
fn number(schema: &Value, integer: bool) -> Value {
    let exclusive = |key: &str| schema.get(key).and_then(Value::as_bool) == Some(true);
    let step = if integer { 1.0 } else { 0.5 };
    let lo = schema.get("minimum").and_then(Value::as_f64).map(|m| if exclusive("exclusiveMinimum") { m + step } else { m });
    let hi = schema.get("maximum").and_then(Value::as_f64).map(|m| if exclusive("exclusiveMaximum") { m - step } else { m });
    let mut value = 1.0_f64;
    if let Some(lo) = lo {
        value = value.max(if integer { lo.ceil() } else { lo });
    }
    if let Some(hi) = hi {
        value = value.min(if integer { hi.floor() } else { hi });
    }
    if value.fract() == 0.0 && value.abs() < 9.0e15 {
        // Exact: the value is integral and well inside i64's range.
        json!(value as i64)
    } else {
        json!(value)
    }
}

/// A valid string for a `type: string` schema, as [`sample_custom_resources`] picks it (before
/// `default` and `enum`, which it looks at first): with a `pattern`, the first of the
/// candidate values (the `format`'s value, then a fixed list of our own) that the pattern
/// matches and that fits `minLength`/`maxLength` as it is, else the first that matches once
/// padded or cut to fit; without one, the `format`'s value or `sample`, padded or cut to fit.
/// Never `""`.
///
/// The pattern is compiled with the `regex` crate. Kubernetes checks patterns with Go's
/// `regexp` (RE2 syntax, unanchored like [`Regex::is_match`]); the two agree on the syntax the
/// CRD fixtures use, and the candidates are ASCII, where Go's ASCII-only `\d`, `\w`, `\s`
/// and Rust's Unicode ones agree too.
///
/// Fails on a pattern that does not compile, or that no candidate matches, naming the pattern.
pub fn sample_string(schema: &Value) -> anyhow::Result<String> {
    let format = schema.get("format").and_then(Value::as_str).and_then(for_format);
    let min = bound(schema, "minLength").unwrap_or(0);
    let max = bound(schema, "maxLength");
    let Some(pattern) = schema.get("pattern").and_then(Value::as_str) else {
        return Ok(fit(format.unwrap_or(PLAIN), min, max));
    };
    let regex = Regex::new(pattern).with_context(|| format!("the pattern {pattern:?} does not compile as a Rust regex"))?;
    let candidates = || format.into_iter().chain(CANDIDATES.iter().copied());
    let fits = |value: &str| {
        let len = value.chars().count() as u64;
        len >= min.max(1) && max.is_none_or(|max| len <= max)
    };
    let as_is = candidates().find(|value| fits(value) && regex.is_match(value)).map(str::to_string);
    let fitted = || candidates().map(|value| fit(value, min, max)).find(|value| fits(value) && regex.is_match(value));
    as_is.or_else(fitted).with_context(|| {
        let lengths = match max {
            Some(max) => format!("minLength {min}, maxLength {max}"),
            None => format!("minLength {min}"),
        };
        format!("no candidate value matches the pattern {pattern:?} ({lengths}); add one to CANDIDATES in samples.rs")
    })
}

/// `value` padded with `x` to `min` characters and cut to `max`.
fn fit(value: &str, min: u64, max: Option<u64>) -> String {
    let mut value = value.to_string();
    while (value.chars().count() as u64) < min {
        value.push('x');
    }
    match max {
        Some(max) => value.chars().take(max as usize).collect(),
        None => value,
    }
}

/// A value of a Kubernetes-supported string `format`, or `None` for a free-form one.
fn for_format(format: &str) -> Option<&'static str> {
    Some(match format {
        "date-time" | "datetime" => "2024-01-01T00:00:00Z",
        "date" => "2024-01-01",
        "duration" => "30s",
        "byte" => "c2FtcGxl", // base64 of "sample"
        "ipv4" => "192.0.2.1",
        "ipv6" => "2001:db8::1",
        "cidr" => "192.0.2.0/24",
        "mac" => "00:00:5e:00:53:01",
        "uri" => "https://example.com",
        "email" => "sample@example.com",
        "hostname" => "sample.example.com",
        "uuid" | "uuid4" => "6ba7b810-9dad-41d1-80b4-00c04fd430c8",
        "hexcolor" => "#000000",
        "rgbcolor" => "rgb(0,0,0)",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd(kind: &str, scope: &str, schema: Value) -> Value {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": format!("{}s.example.com", kind.to_lowercase())},
            "spec": {"group": "example.com", "scope": scope,
                     "names": {"plural": format!("{}s", kind.to_lowercase()), "kind": kind},
                     "versions": [
                         {"name": "v1alpha1", "served": true, "storage": false,
                          "schema": {"openAPIV3Schema": {"type": "object"}}},
                         {"name": "v1", "served": true, "storage": true,
                          "schema": {"openAPIV3Schema": schema}}]}
        })
    }

    fn spec_of(schema: Value) -> Value {
        let crd = crd("Thing", "Namespaced", json!({"type": "object", "properties": {"spec": schema}}));
        sample_custom_resource(&crd, "ns").expect("a sample")["spec"].clone()
    }

    #[test]
    fn uses_the_storage_version_and_scope() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object"}, "status": {"type": "object"}}});
        let samples =
            sample_custom_resources(&[crd("Zed", "Namespaced", schema.clone()), crd("Alpha", "Cluster", schema)], "ns").expect("samples");
        assert_eq!(
            samples,
            vec![
                json!({"apiVersion": "example.com/v1", "kind": "Alpha", "metadata": {"name": "sample-alpha"}, "spec": {}}),
                json!({"apiVersion": "example.com/v1", "kind": "Zed",
                       "metadata": {"name": "sample-zed", "namespace": "ns"}, "spec": {}}),
            ]
        );
    }

    #[test]
    fn falls_back_to_the_first_served_version() {
        let mut crd = crd("Thing", "Namespaced", json!({"type": "object"}));
        for v in crd["spec"]["versions"].as_array_mut().into_iter().flatten() {
            v["storage"] = json!(false);
        }
        crd["spec"]["versions"][0]["served"] = json!(false);
        assert_eq!(sample_custom_resource(&crd, "ns").expect("a sample")["apiVersion"], "example.com/v1");
    }

    #[test]
    fn fills_required_fields_recursively_with_valid_values() {
        let spec = spec_of(json!({
            "type": "object",
            "required": ["name", "port", "ratio", "protocol", "when", "every", "ref", "items", "labels", "flag", "size", "data"],
            "properties": {
                "name": {"type": "string", "maxLength": 3},
                "port": {"type": "integer", "minimum": 1024, "maximum": 65535},
                "ratio": {"type": "number", "maximum": 0.25},
                "protocol": {"type": "string", "enum": ["TCP", "UDP"]},
                "when": {"type": "string", "format": "date-time"},
                "every": {"type": "string", "pattern": r"^[0-9]+[smh]$"},
                "ref": {"type": "object", "required": ["kind"], "properties": {
                    "kind": {"type": "string", "default": "Secret"}, "optional": {"type": "string"}}},
                "items": {"type": "array", "minItems": 2, "items": {"type": "object", "required": ["x"],
                    "properties": {"x": {"type": "boolean"}}}},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "flag": {"type": "boolean"},
                "size": {"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]},
                "data": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                "notRequired": {"type": "string"}
            }
        }));
        assert_eq!(
            spec,
            json!({
                "name": "sam", "port": 1024, "ratio": 0.25, "protocol": "TCP", "when": "2024-01-01T00:00:00Z",
                "every": "30s", "ref": {"kind": "Secret"}, "items": [{"x": false}, {"x": false}],
                "labels": {}, "flag": false, "size": 1, "data": {}
            })
        );
    }

    #[test]
    fn satisfies_the_first_branch_and_min_properties() {
        let spec = spec_of(json!({
            "type": "object",
            "required": ["source", "provider", "tags"],
            "properties": {
                "source": {"type": "object", "oneOf": [{"required": ["configMap"]}, {"required": ["secret"]}],
                           "allOf": [{"required": ["name"]}],
                           "properties": {"configMap": {"type": "string"}, "secret": {"type": "string"}, "name": {"type": "string"}}},
                "provider": {"type": "object", "minProperties": 1, "maxProperties": 1, "properties": {
                    "aws": {"type": "object", "required": ["region"], "properties": {"region": {"type": "string"}}},
                    "gcp": {"type": "object"}}},
                "tags": {"type": "object", "minProperties": 1, "additionalProperties": {"type": "integer", "minimum": 5}}
            }
        }));
        assert_eq!(
            spec,
            json!({"source": {"name": "sample", "configMap": "sample"}, "provider": {"aws": {"region": "sample"}}, "tags": {"sample": 5}})
        );
    }

    #[test]
    fn includes_required_root_fields_but_never_status_or_metadata() {
        let crd = crd(
            "Report",
            "Cluster",
            json!({"type": "object", "required": ["metadata", "results", "status"], "properties": {
                "metadata": {"type": "object"}, "results": {"type": "array"}, "status": {"type": "object"}}}),
        );
        assert_eq!(
            sample_custom_resource(&crd, "ns").expect("a sample"),
            json!({"apiVersion": "example.com/v1", "kind": "Report", "metadata": {"name": "sample-report"}, "results": []})
        );
    }

    #[test]
    fn never_sends_empty_strings() {
        let spec = spec_of(json!({
            "type": "object", "required": ["group", "mode", "only"],
            "properties": {
                "group": {"type": "string", "pattern": r"^$|^[a-z]+(\.[a-z]+)+$"},
                "mode": {"type": "string", "default": "", "enum": ["", "Strict"]},
                "only": {"type": "string", "enum": [""]}
            }
        }));
        assert_eq!(spec, json!({"group": "example.com", "mode": "Strict", "only": ""}));
    }

    #[test]
    fn picks_the_first_candidate_the_pattern_matches() {
        let pick = |schema: Value| sample_string(&schema).expect("a string");
        assert_eq!(pick(json!({"type": "string", "pattern": "^[a-z]+$"})), "sample");
        // "sample" (and "1") do not match; "30s" is the first candidate that does.
        assert_eq!(pick(json!({"type": "string", "pattern": "^[0-9]+[smh]$"})), "30s");
        // Unanchored, like Go's regexp.MatchString.
        assert_eq!(pick(json!({"type": "string", "pattern": "[.]com$"})), "example.com");
        assert_eq!(pick(json!({"type": "string", "pattern": "(?i)^MON"})), "monday");
        // The format's value goes first, when the pattern takes it.
        assert_eq!(pick(json!({"type": "string", "format": "ipv4", "pattern": r"^[0-9.]+$"})), "192.0.2.1");
        assert_eq!(pick(json!({"type": "string", "format": "ipv4", "pattern": "^[a-z]+$"})), "sample");
        // Lengths: "sample" and "Sample" are too long, the next one that matches fits as it is.
        assert_eq!(pick(json!({"type": "string", "pattern": "^[A-Za-z]+$", "maxLength": 4})), "HTTP");
        // None fits as it is: the first that matches once padded or cut.
        assert_eq!(pick(json!({"type": "string", "pattern": "^[a-z]+$", "minLength": 40})), format!("sample{}", "x".repeat(34)));
        assert_eq!(pick(json!({"type": "string", "pattern": "^[a-z]+$", "maxLength": 3})), "sam");
        // Never "", though the pattern allows it.
        assert_eq!(pick(json!({"type": "string", "pattern": "^$|^[0-9]{4}$"})), "2024");
        // Without a pattern: the format's value or the plain word, fitted to the lengths.
        assert_eq!(pick(json!({"type": "string", "format": "date"})), "2024-01-01");
        assert_eq!(pick(json!({"type": "string", "minLength": 8})), "samplexx");
    }

    #[test]
    fn a_pattern_no_candidate_matches_names_the_path_and_the_pattern() {
        let crd = crd(
            "Thing",
            "Namespaced",
            json!({"type": "object", "properties": {"spec": {"type": "object", "required": ["code"], "properties": {
                "code": {"type": "string", "pattern": "^[0-9]{3}-[A-Z]{3}$"}}}}}),
        );
        let err = sample_custom_resources(&[crd], "ns").expect_err("no candidate matches");
        let err = format!("{err:#}");
        assert!(err.contains("CRD things.example.com"), "{err}");
        assert!(err.contains(r#"spec.code: no candidate value matches the pattern "^[0-9]{3}-[A-Z]{3}$""#), "{err}");

        // Nor one that fits: all candidates are longer than 1 or do not match.
        let err = sample_string(&json!({"type": "string", "pattern": "^[a-z]+$", "minLength": 2, "maxLength": 1})).expect_err("no fit");
        assert!(format!("{err:#}").contains("(minLength 2, maxLength 1)"), "{err:#}");
    }

    #[test]
    fn a_pattern_rust_cannot_compile_names_the_path_and_the_pattern() {
        let crd = crd(
            "Thing",
            "Cluster",
            json!({"type": "object", "properties": {"spec": {"type": "object", "required": ["twice"], "properties": {
                "twice": {"type": "string", "pattern": r"^(a)\1$"}}}}}),
        );
        let err = format!("{:#}", sample_custom_resources(&[crd], "ns").expect_err("backreferences do not compile"));
        assert!(err.contains("CRD things.example.com"), "{err}");
        assert!(err.contains(r#"spec.twice: the pattern "^(a)\\1$" does not compile as a Rust regex"#), "{err}");
    }

    #[test]
    fn candidates_are_distinct_and_not_empty() {
        let mut seen = std::collections::BTreeSet::new();
        for candidate in CANDIDATES {
            assert!(!candidate.is_empty(), "an empty candidate");
            assert!(seen.insert(candidate), "{candidate:?} twice");
        }
    }

    #[test]
    fn extras_are_json() {
        for (group, kind, path, fields) in EXTRAS {
            for (key, value) in *fields {
                assert!(serde_json::from_str::<Value>(value).is_ok(), "{group} {kind} {path}.{key}: {value} is not JSON");
            }
        }
    }

    #[test]
    fn names_are_dns_labels() {
        assert_eq!(sample_name("GRPCRoute"), "sample-grpcroute");
        assert_eq!(sample_name("Weird_Kind.Name"), "sample-weirdkindname");
    }

    #[test]
    fn refuses_what_it_cannot_satisfy() {
        let crd = crd("Thing", "Namespaced", json!({"type": "object", "properties": {"spec": {"type": "object", "minProperties": 1}}}));
        let err = sample_custom_resources(&[crd], "ns").expect_err("no property may be added");
        assert!(format!("{err:#}").contains("spec: minProperties 1"), "{err:#}");
    }
}
