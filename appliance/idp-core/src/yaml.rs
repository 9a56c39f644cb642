//! A small, deterministic YAML emitter for JSON-shaped values, and the manifest parser.
//!
//! Keys are always sorted, strings are quoted whenever a plain scalar could be read
//! back as anything but the same string (YAML 1.1 and 1.2 alike), and multi-line
//! strings become literal blocks, so the output is byte-stable and round-trips.

use serde_json::Value;
use std::fmt::Write;

/// The most documents one stream may hold: a manifest file of a large component (the
/// parser's own default, 1 024, refuses a generated list of a thousand ConfigMaps).
pub const MAX_DOCUMENTS: usize = 100_000;

/// Parses a multi-document YAML stream into JSON values; empty documents are dropped.
pub fn parse_documents(text: &str) -> Result<Vec<Value>, String> {
    let options = serde_saphyr::options! { budget: serde_saphyr::budget! { max_documents: MAX_DOCUMENTS } };
    let docs: Vec<Value> = serde_saphyr::from_multiple_with_options(text, options).map_err(|e| e.to_string())?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

/// Parses one YAML document (an empty one is `null`).
pub fn parse_document(text: &str) -> Result<Value, String> {
    let mut docs = parse_documents(text)?;
    match docs.len() {
        0 => Ok(Value::Null),
        1 => Ok(docs.remove(0)),
        n => Err(format!("expected one YAML document, found {n}")),
    }
}

/// Emits `value` as a YAML document (no leading `---`), ending with a newline.
pub fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => emit_map(&mut out, map, 0, false),
        Value::Array(items) if !items.is_empty() => emit_seq(&mut out, items, 0),
        scalar => {
            emit_inline(&mut out, scalar, 0);
            out.push('\n');
        }
    }
    out
}

fn indent(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(' ', n));
}

fn sorted(map: &serde_json::Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut entries: Vec<_> = map.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    entries
}

/// Emits a map's entries at `level`; with `inline_first` the first entry continues the
/// current line (after a sequence dash).
fn emit_map(out: &mut String, map: &serde_json::Map<String, Value>, level: usize, inline_first: bool) {
    for (i, (key, value)) in sorted(map).into_iter().enumerate() {
        if i == 0 && inline_first {
            out.push(' ');
        } else {
            indent(out, level);
        }
        out.push_str(&scalar_string(key));
        out.push(':');
        emit_after_key(out, value, level);
    }
}

fn emit_seq(out: &mut String, items: &[Value], level: usize) {
    for item in items {
        indent(out, level);
        out.push('-');
        match item {
            Value::Object(map) if !map.is_empty() => emit_map(out, map, level + 2, true),
            // Anything else reads like a map value after its key.
            other => emit_after_key(out, other, level),
        }
    }
}

/// Emits what follows `key:`; nested collections go on the next lines.
fn emit_after_key(out: &mut String, value: &Value, level: usize) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            out.push('\n');
            emit_map(out, map, level + 2, false);
        }
        // Sequences under a key are indented like kubectl does it.
        Value::Array(items) if !items.is_empty() => {
            out.push('\n');
            emit_seq(out, items, level + 2);
        }
        other => {
            out.push(' ');
            emit_inline(out, other, level + 2);
            out.push('\n');
        }
    }
}

/// Emits a scalar or an empty collection; `level` is the indentation of block scalar content.
fn emit_inline(out: &mut String, value: &Value, level: usize) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Value::String(s) => {
            if let Some(block) = literal_block(s, level) {
                out.push_str(&block);
                // The block already ends with its own newline; callers add one more.
                out.pop();
            } else {
                out.push_str(&scalar_string(s));
            }
        }
        Value::Array(_) => out.push_str("[]"),
        Value::Object(_) => out.push_str("{}"),
    }
}

/// A literal block (`|`) for multi-line strings that can be represented exactly
/// without an indentation indicator; anything else is quoted.
fn literal_block(s: &str, level: usize) -> Option<String> {
    let awkward = |c: char| c == '\r' || c == '\t' || (c.is_control() && c != '\n') || matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}');
    if !s.contains('\n') || s.starts_with([' ', '\n']) || s.chars().any(awkward) {
        return None;
    }
    let trimmed = s.trim_end_matches('\n');
    if trimmed.lines().any(|l| l.ends_with(' ')) {
        return None;
    }
    let chomp = match s.len() - trimmed.len() {
        0 => "-",
        1 => "",
        _ => "+",
    };
    let level = level.max(2);
    let mut out = format!("|{chomp}\n");
    for line in s.strip_suffix('\n').unwrap_or(s).split('\n') {
        if !line.is_empty() {
            indent(&mut out, level);
            out.push_str(line);
        }
        out.push('\n');
    }
    Some(out)
}

/// A scalar as plain text when that is unambiguous, else double-quoted JSON-style.
fn scalar_string(s: &str) -> String {
    if is_plain_safe(s) { s.to_owned() } else { serde_json::to_string(s).unwrap_or_else(|_| format!("\"{}\"", s.escape_default())) }
}

fn is_plain_safe(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    if !(first.is_ascii_alphabetic() || first == '_' || first == '/') {
        return false;
    }
    if s.ends_with(':') || s.contains(": ") || s.contains(" #") || s.ends_with(' ') {
        return false;
    }
    if !s.chars().all(|c| c.is_ascii_alphanumeric() || "_./-:@=+ ".contains(c)) {
        return false;
    }
    // Words YAML 1.1 or 1.2 would read as booleans or null.
    const RESERVED: [&str; 11] = ["true", "false", "yes", "no", "on", "off", "y", "n", "null", "nan", "inf"];
    !RESERVED.iter().any(|w| s.eq_ignore_ascii_case(w))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn emits_sorted_kubectl_style_yaml() {
        let v = json!({"kind": "Namespace", "apiVersion": "v1",
            "metadata": {"name": "argocd", "labels": {"owner": "platform-team"}},
            "items": [{"b": 1, "a": "x"}, "plain", ["nested"]], "empty": {}, "none": []});
        insta::assert_snapshot!(to_yaml(&v), @r"
        apiVersion: v1
        empty: {}
        items:
          - a: x
            b: 1
          - plain
          -
            - nested
        kind: Namespace
        metadata:
          labels:
            owner: platform-team
          name: argocd
        none: []
        ");
    }

    #[test]
    fn quotes_ambiguous_strings() {
        for s in ["true", "No", "1.5", "0x1F", "2024-01-01", "*.a.nip.io", "", "a: b", "-x", "~", "null", "1e3", ":8443"] {
            assert!(scalar_string(s).starts_with('"'), "{s} must be quoted");
        }
        for s in ["argocd", "quay.io/cilium/cilium:v1.18.2", "a-b.c", "--enable-helm"[2..].as_ref()] {
            assert_eq!(scalar_string(s), s);
        }
    }

    #[test]
    fn a_thousand_and_more_documents_parse() {
        let text: String = (0..1500).map(|i| format!("---\nkind: ConfigMap\nmetadata:\n  name: cm-{i}\n")).collect();
        let docs = parse_documents(&text).expect("parses");
        assert_eq!(docs.len(), 1500);
        assert_eq!(docs[1499]["metadata"]["name"], "cm-1499");
        assert!(parse_documents("a: [1\n").is_err(), "a broken document is still an error");
    }

    #[test]
    fn multi_line_strings_become_literal_blocks() {
        let v = json!({"valuesContent": "a: 1\nb:\n  c: 2\n"});
        assert_eq!(to_yaml(&v), "valuesContent: |\n  a: 1\n  b:\n    c: 2\n");
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            "[ -~\n\t]{0,20}".prop_map(Value::String),
            prop::sample::select(vec!["true", "yes", "1.0", "-", "*x", "a: b", "x\n\n", "\n a", "  lead\nx", "a\n  b\n"])
                .prop_map(|s| Value::String(s.to_owned())),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[a-z:* -]{0,6}", inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn round_trips_through_a_real_yaml_parser(v in json_value()) {
            let text = to_yaml(&v);
            let back = parse_document(&text).map_err(|e| TestCaseError::fail(format!("{e}\n---\n{text}")))?;
            prop_assert_eq!(back, v, "emitted:\n{}", text);
        }
    }
}
