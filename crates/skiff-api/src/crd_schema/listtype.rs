//! `x-kubernetes-list-type` invariants: items of a `set` are unique, items of a `map` are
//! objects unique by their `x-kubernetes-list-map-keys` (upstream's
//! `structural/listtype` validation).
//!
//! Paths here use upstream's `field.Path` forms: `.child`, `[index]` and `[mapKey]`.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::{go_value, items, properties, FieldError};
use crate::validation::Reason;

/// Checks every `set` and `map` list in `obj` against the schema.
pub(super) fn validate_list_types(obj: &Value, schema: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Value::Object(m) = obj {
        walk_object("", m, schema, &mut errs);
    }
    errs
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn walk(path: &str, v: &Value, s: &Value, errs: &mut Vec<FieldError>) {
    match v {
        Value::Array(a) => walk_array(path, a, s, errs),
        Value::Object(m) => walk_object(path, m, s, errs),
        _ => {}
    }
}

fn walk_object(path: &str, m: &Map<String, Value>, s: &Value, errs: &mut Vec<FieldError>) {
    if let Some(a) = s.get("additionalProperties").filter(|a| a.is_object()) {
        for (k, v) in m {
            walk(&format!("{path}[{k}]"), v, a, errs);
        }
    }
    if let Some(props) = properties(s) {
        for (k, v) in m {
            if let Some(p) = props.get(k) {
                walk(&child(path, k), v, p, errs);
            }
        }
    }
}

fn walk_array(path: &str, a: &[Value], s: &Value, errs: &mut Vec<FieldError>) {
    match s.get("x-kubernetes-list-type").and_then(Value::as_str) {
        Some("set") => check_set(path, a, errs),
        Some("map") => check_map(path, a, s, errs),
        _ => {}
    }
    if let Some(item_schema) = items(s) {
        for (i, v) in a.iter().enumerate() {
            walk(&format!("{path}[{i}]"), v, item_schema, errs);
        }
    }
}

fn duplicate(path: &str, i: usize, value: String) -> FieldError {
    FieldError {
        field: format!("{path}[{i}]"),
        reason: Reason::Duplicate,
        message: String::new(),
        value: Some(value),
    }
}

/// A canonical text for comparing values (object keys sorted, as Go's JSON encoder sorts
/// map keys), so that equal items compare equal whatever their key order.
fn canonical(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let inner: Vec<String> = keys
                .iter()
                .map(|k| format!("{}:{}", Value::String((*k).clone()), canonical(&m[*k])))
                .collect();
            format!("{{{}}}", inner.join(","))
        }
        Value::Array(a) => {
            let inner: Vec<String> = a.iter().map(canonical).collect();
            format!("[{}]", inner.join(","))
        }
        other => other.to_string(),
    }
}

/// Each repeated value is reported once, at its second occurrence.
fn check_set(path: &str, a: &[Value], errs: &mut Vec<FieldError>) {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, v) in a.iter().enumerate() {
        let times = seen.entry(canonical(v)).or_insert(0);
        *times += 1;
        if *times == 2 {
            errs.push(duplicate(path, i, go_value(v)));
        }
    }
}

fn check_map(path: &str, a: &[Value], s: &Value, errs: &mut Vec<FieldError>) {
    for (i, v) in a.iter().enumerate() {
        if !v.is_null() && !v.is_object() {
            errs.push(FieldError {
                field: format!("{path}[{i}]"),
                reason: Reason::Invalid,
                message: "must be an object for an array of list-type map".to_string(),
                value: Some(go_value(v)),
            });
            return;
        }
    }
    let keys: Vec<&str> = s
        .get("x-kubernetes-list-map-keys")
        .and_then(Value::as_array)
        .map(|k| k.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if keys.is_empty() {
        return;
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, v) in a.iter().enumerate() {
        // Keys are compared as the map of the key fields present: an item without any key
        // (or a null item) has the empty key, so two of them collide.
        let mut key = Map::new();
        for k in &keys {
            if let Some(val) = v.get(*k) {
                key.insert((*k).to_string(), val.clone());
            }
        }
        let key = Value::Object(key);
        let ident = if keys.len() == 1 {
            // A single key compares like a set element (by Go type and value).
            key.get(keys[0])
                .map(canonical)
                .unwrap_or_else(|| "\u{0}unspecified".into())
        } else {
            canonical(&key)
        };
        let times = seen.entry(ident).or_insert(0);
        *times += 1;
        if *times == 2 {
            errs.push(duplicate(path, i, go_value(&key)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "spec": {"type": "object", "properties": {
                    "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
                    "ports": {
                        "type": "array",
                        "x-kubernetes-list-type": "map",
                        "x-kubernetes-list-map-keys": ["port", "protocol"],
                        "items": {"type": "object", "properties": {
                            "port": {"type": "integer"},
                            "protocol": {"type": "string", "default": "TCP"}
                        }}
                    },
                    "groups": {
                        "type": "object",
                        "additionalProperties": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "integer"}}
                    },
                    "atomic": {"type": "array", "x-kubernetes-list-type": "atomic", "items": {"type": "string"}}
                }},
                "status": {"type": "object", "properties": {
                    "conditions": {
                        "type": "array",
                        "x-kubernetes-list-type": "map",
                        "x-kubernetes-list-map-keys": ["type"],
                        "items": {"type": "object", "properties": {"type": {"type": "string"}, "status": {"type": "string"}}}
                    }
                }}
            }
        })
    }

    fn msgs(obj: Value) -> Vec<String> {
        validate_list_types(&obj, &schema())
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn set_duplicates_reported_once_at_second_occurrence() {
        assert_eq!(
            msgs(json!({"spec": {"tags": ["a", "b", "a", "a"], "atomic": ["x", "x"]}})),
            vec![r#"spec.tags[2]: Duplicate value: "a""#]
        );
    }

    #[test]
    fn multi_key_maps_compare_present_keys() {
        // Defaulting has filled key defaults before validation; a still-missing key is
        // simply absent from the compared key.
        assert_eq!(
            msgs(json!({"spec": {"ports": [
                {"port": 80, "protocol": "TCP"},
                {"port": 80},
                {"protocol": "TCP", "port": 80},
                {"port": 80, "protocol": "UDP"},
                {"port": 80}
            ]}})),
            vec![
                r#"spec.ports[2]: Duplicate value: map[string]interface {}{"port":80, "protocol":"TCP"}"#,
                r#"spec.ports[4]: Duplicate value: map[string]interface {}{"port":80}"#,
            ]
        );
    }

    #[test]
    fn missing_single_keys_collide() {
        assert_eq!(
            msgs(json!({"status": {"conditions": [{"status": "True"}, null]}})),
            vec!["status.conditions[1]: Duplicate value: map[string]interface {}{}"]
        );
    }

    #[test]
    fn condition_types_must_be_unique() {
        let errs = validate_list_types(
            &json!({"status": {"conditions": [
                {"type": "Ready", "status": "True"},
                {"type": "Synced", "status": "True"},
                {"type": "Ready", "status": "False"}
            ]}}),
            &schema(),
        );
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].reason.as_str(), "FieldValueDuplicate");
        assert_eq!(
            errs[0].to_string(),
            r#"status.conditions[2]: Duplicate value: map[string]interface {}{"type":"Ready"}"#
        );
    }

    #[test]
    fn map_items_must_be_objects() {
        assert_eq!(
            msgs(json!({"status": {"conditions": [{"type": "A"}, "B"]}})),
            vec![
                r#"status.conditions[1]: Invalid value: "B": must be an object for an array of list-type map"#
            ]
        );
    }

    #[test]
    fn nested_under_maps_use_key_paths() {
        assert_eq!(
            msgs(json!({"spec": {"groups": {"g1": [1, 2, 1.0, 2]}}})),
            // Upstream keys scalars by Go type too: int64 1 and float64 1 differ.
            vec!["spec.groups[g1][3]: Duplicate value: 2"]
        );
    }
}
