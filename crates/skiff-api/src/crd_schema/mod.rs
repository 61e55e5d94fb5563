//! What the API server does with a CustomResourceDefinition version's `openAPIV3Schema` when
//! custom resources are written, following upstream's apiextensions-apiserver.
//!
//! A custom resource body goes through, in upstream's order (the coercing decoder prunes,
//! the versioning codec around it then defaults):
//! 1. [`prune`] (or [`prune_unknown_fields`], which also reports what it dropped, for
//!    `fieldValidation` warnings and errors): fields the schema does not declare are dropped,
//!    `metadata` is cut down to `ObjectMeta`'s fields, and `null`s of non-nullable
//!    properties without a default are removed;
//! 2. [`apply_defaults`]: `default` values fill absent properties (and `null`s of
//!    non-nullable properties), recursively. Upstream also defaults every object read back
//!    from storage, so callers should run it on reads too;
//! 3. [`validate`]: the OpenAPI value validations (types, ranges, lengths, patterns,
//!    formats, enums, `allOf`/`anyOf`/`oneOf`/`not`, ...), `x-kubernetes-list-type` set/map
//!    uniqueness and embedded-resource checks, reported as [`FieldError`]s with upstream's
//!    paths and wording (kube-openapi messages such as `spec.replicas in body should be less
//!    than or equal to 10`), on create and update alike.
//!
//! [`validate_crd`] holds the basic checks of a CustomResourceDefinition itself (names,
//! group, scope, versions, a structural root schema).
//!
//! Schemas are plain `serde_json::Value`s (the CRD's `openAPIV3Schema`), so nothing here
//! depends on typed CRD structs. CEL rules (`x-kubernetes-validations`) are not evaluated.

mod crd;
mod defaults;
mod embedded;
mod format;
mod listtype;
mod prune;
mod validate;

#[cfg(test)]
mod tests;

use serde_json::{Map, Value};

pub use crate::validation::FieldError;
pub use crd::validate_crd;
pub use defaults::apply_defaults;
pub use prune::{prune, prune_unknown_fields};
pub use validate::validate;

/// `properties` of a schema node.
fn properties(schema: &Value) -> Option<&Map<String, Value>> {
    schema.get("properties").and_then(Value::as_object)
}

/// How a schema node treats keys that are not in `properties`.
enum Additional<'a> {
    /// No `additionalProperties`: unknown keys are not described.
    Absent,
    /// `additionalProperties: true` (or `false`, which structural schemas forbid): keys are
    /// allowed but their values have no schema, as upstream's `Structural` with a nil
    /// `AdditionalProperties.Structural`.
    Unschematized,
    /// `additionalProperties: {...}`.
    Schema(&'a Value),
}

fn additional(schema: &Value) -> Additional<'_> {
    match schema.get("additionalProperties") {
        None | Some(Value::Null) => Additional::Absent,
        Some(v @ Value::Object(_)) => Additional::Schema(v),
        Some(_) => Additional::Unschematized,
    }
}

/// The schema of a property: the named one, else `additionalProperties`.
fn property_schema<'a>(schema: &'a Value, key: &str) -> Option<&'a Value> {
    if let Some(p) = properties(schema).and_then(|p| p.get(key)) {
        return Some(p);
    }
    match additional(schema) {
        Additional::Schema(s) => Some(s),
        _ => None,
    }
}

/// `items` of an array schema (the single-schema form; structural schemas have no tuples).
fn items(schema: &Value) -> Option<&Value> {
    schema.get("items").filter(|v| v.is_object())
}

/// A boolean vendor extension or keyword, false when absent.
fn flag(schema: &Value, key: &str) -> bool {
    schema.get(key).and_then(Value::as_bool).unwrap_or(false)
}

fn nullable(schema: &Value) -> bool {
    flag(schema, "nullable")
}

/// Go's `%v` of a `float64` (shortest digits, exponent form outside 1e-4..1e6), which is how
/// upstream prints float bounds and values in messages.
fn go_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    // Rust's `{:e}` gives the same shortest round-trip digits Go uses.
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let sign = if f < 0.0 { "-" } else { "" };
    if !(-4..6).contains(&exp) {
        let (first, rest) = digits.split_at(1);
        let frac = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let esign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{first}{frac}e{esign}{:02}", exp.abs());
    }
    if exp < 0 {
        let zeros = "0".repeat((-exp - 1) as usize);
        return format!("{sign}0.{zeros}{digits}");
    }
    let int_len = exp as usize + 1;
    if digits.len() <= int_len {
        format!("{sign}{digits}{}", "0".repeat(int_len - digits.len()))
    } else {
        format!("{sign}{}.{}", &digits[..int_len], &digits[int_len..])
    }
}

/// A JSON number as upstream's decoder types it: integers that fit `int64` stay integers,
/// everything else is a `float64`.
enum Num {
    Int(i64),
    Float(f64),
}

fn num(n: &serde_json::Number) -> Num {
    match n.as_i64() {
        Some(i) => Num::Int(i),
        None => Num::Float(n.as_f64().unwrap_or(f64::NAN)),
    }
}

/// Go's `%v` of a decoded JSON value for scalars, `%#v` for maps and slices: how upstream
/// shows a bad value in an error body.
fn go_value(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match num(n) {
            Num::Int(i) => i.to_string(),
            Num::Float(f) => go_float(f),
        },
        Value::String(s) => crate::selector::go_quote(s),
        other => go_sharp(other),
    }
}

/// Go's `%#v` of `interface{}` JSON values (`map[string]interface {}{"a":1}`), with map
/// keys sorted as Go's printer sorts them.
fn go_sharp(v: &Value) -> String {
    match v {
        Value::Null => "interface {}(nil)".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(_) => go_value(v),
        Value::String(s) => crate::selector::go_quote(s),
        Value::Array(a) => {
            let inner: Vec<String> = a.iter().map(go_sharp).collect();
            format!("[]interface {{}}{{{}}}", inner.join(", "))
        }
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let inner: Vec<String> = keys
                .iter()
                .map(|k| format!("{}:{}", crate::selector::go_quote(k), go_sharp(&m[*k])))
                .collect();
            format!("map[string]interface {{}}{{{}}}", inner.join(", "))
        }
    }
}

/// JSON equality with numbers compared by value, as upstream compares decoded values after
/// converting them to a common numeric type (`1` equals `1.0`).
fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (num(x), num(y)) {
            (Num::Int(i), Num::Int(j)) => i == j,
            (x, y) => as_f64(&x) == as_f64(&y),
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_equal(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}

fn as_f64(n: &Num) -> f64 {
    match n {
        Num::Int(i) => *i as f64,
        Num::Float(f) => *f,
    }
}

#[cfg(test)]
mod helper_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn go_float_matches_go_percent_v() {
        assert_eq!(go_float(10.0), "10");
        assert_eq!(go_float(1.5), "1.5");
        assert_eq!(go_float(-0.25), "-0.25");
        assert_eq!(go_float(123456.0), "123456");
        assert_eq!(go_float(1e6), "1e+06");
        assert_eq!(go_float(123456789.0), "1.23456789e+08");
        assert_eq!(go_float(0.0001), "0.0001");
        assert_eq!(go_float(0.00001), "1e-05");
        assert_eq!(go_float(1e21), "1e+21");
    }

    #[test]
    fn go_value_renders_like_go() {
        assert_eq!(go_value(&json!("a\"b")), r#""a\"b""#);
        assert_eq!(go_value(&json!(11)), "11");
        assert_eq!(go_value(&json!(2.5)), "2.5");
        assert_eq!(go_value(&Value::Null), "null");
        assert_eq!(
            go_value(&json!({"type": "Ready", "n": 1})),
            r#"map[string]interface {}{"n":1, "type":"Ready"}"#
        );
        assert_eq!(go_value(&json!(["a", 1])), r#"[]interface {}{"a", 1}"#);
    }

    #[test]
    fn json_equal_compares_numbers_by_value() {
        assert!(json_equal(&json!(1), &json!(1.0)));
        assert!(json_equal(&json!({"a": [1, 2]}), &json!({"a": [1.0, 2]})));
        assert!(!json_equal(&json!({"a": 1}), &json!({"a": 1, "b": 2})));
        assert!(!json_equal(&json!("1"), &json!(1)));
    }

    #[test]
    fn additional_properties_forms() {
        assert!(matches!(additional(&json!({})), Additional::Absent));
        assert!(matches!(
            additional(&json!({"additionalProperties": true})),
            Additional::Unschematized
        ));
        let s = json!({"additionalProperties": {"type": "string"}});
        assert!(matches!(additional(&s), Additional::Schema(_)));
        assert_eq!(property_schema(&s, "x"), Some(&json!({"type": "string"})));
    }
}
