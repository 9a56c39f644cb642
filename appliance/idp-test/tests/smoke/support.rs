//! Small helpers shared by the smoke tests.

use std::time::Instant;

use serde_json::Value;

/// Asserts that every field of `expected` is present in `actual` with the same value (objects
/// may hold more fields in `actual`, e.g. defaults the API server filled in).
pub fn assert_subset(expected: &Value, actual: &Value, path: &str) {
    match (expected, actual) {
        (Value::Object(want), Value::Object(have)) => {
            for (key, value) in want {
                let at = format!("{path}.{key}");
                let found = have.get(key).unwrap_or_else(|| panic!("{at} is missing in {actual}"));
                assert_subset(value, found, &at);
            }
        }
        (Value::Array(want), Value::Array(have)) => {
            assert_eq!(want.len(), have.len(), "{path} has {} items, expected {}", have.len(), want.len());
            for (i, (w, h)) in want.iter().zip(have).enumerate() {
                assert_subset(w, h, &format!("{path}[{i}]"));
            }
        }
        _ => assert_eq!(expected, actual, "{path} differs"),
    }
}

/// Prints how long a step took, so that test output shows where the time goes.
pub fn took(step: &str, since: Instant) {
    eprintln!("  {step}: {:.1?}", since.elapsed());
}
