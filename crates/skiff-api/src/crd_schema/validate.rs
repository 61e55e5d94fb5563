//! OpenAPI v3 value validation of custom resources, as upstream's kube-openapi validator
//! (`k8s.io/kube-openapi/pkg/validation/validate`) reports it through apiextensions'
//! conversion to field errors.
//!
//! Paths join property names with `.` and array indices with `[i]` (`spec.ports[0].port`);
//! messages carry the path again, as upstream's do (`spec.replicas in body should be less
//! than or equal to 10`). Errors of `allOf`/`anyOf`/`oneOf`/`not` are not tied to a field
//! upstream, so their field is `<nil>`, exactly as upstream prints them.

use std::collections::HashMap;

use regex::Regex;
use serde_json::{Map, Number, Value};

use super::{
    additional, as_f64, embedded, flag, format, go_float, go_value, items, json_equal, listtype,
    nullable, num, properties, Additional, FieldError, Num,
};
use crate::selector::go_quote;
use crate::validation::Reason;

/// Validates a custom resource against its version's `openAPIV3Schema`: the schema's value
/// validations, then embedded resources (`x-kubernetes-embedded-resource`), then
/// `x-kubernetes-list-type` `set`/`map` uniqueness, in upstream's order.
///
/// The object should already be pruned and defaulted. `x-kubernetes-validations` (CEL) is
/// not evaluated.
pub fn validate(obj: &Value, schema: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    Validator::default().check(obj, schema, "", &mut errs);
    errs.extend(embedded::validate_embedded(obj, schema));
    errs.extend(listtype::validate_list_types(obj, schema));
    errs
}

/// The field of an error named `name`: upstream trims a leading `.` (from required fields
/// at the root) and prints a nil path as `<nil>`.
fn field_of(name: &str) -> String {
    let f = name.trim_start_matches('.');
    if f.is_empty() {
        "<nil>".to_string()
    } else {
        f.to_string()
    }
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn invalid(name: &str, value: String, message: String) -> FieldError {
    FieldError {
        field: field_of(name),
        reason: Reason::Invalid,
        message,
        value: Some(value),
    }
}

/// Upstream reports type mismatches as `FieldValueTypeInvalid`, whose body reads like
/// `Invalid value`; the shared `Reason` has no such variant yet, so `Invalid` stands in.
fn type_invalid(name: &str, value: String, message: String) -> FieldError {
    invalid(name, value, message)
}

/// The `<nil>`-field error upstream produces for composition keywords.
fn composite(message: String) -> FieldError {
    FieldError {
        field: "<nil>".to_string(),
        reason: Reason::Invalid,
        message,
        value: Some("\"\"".to_string()),
    }
}

/// `FieldValueTooLong` as upstream words it for `maxLength`.
fn too_long(name: &str, max: u64) -> FieldError {
    let unit = if max == 1 { "byte" } else { "bytes" };
    FieldError {
        field: field_of(name),
        reason: Reason::TooLong,
        message: format!("may not be more than {max} {unit}"),
        value: None,
    }
}

/// `FieldValueTooMany` for `maxItems` and `maxProperties`.
fn too_many(name: &str, actual: usize, max: u64) -> FieldError {
    let unit = if max == 1 { "item" } else { "items" };
    FieldError {
        field: field_of(name),
        reason: Reason::TooMany,
        message: format!("must have at most {max} {unit}"),
        value: Some(actual.to_string()),
    }
}

/// The JSON type of a decoded value, with integers told apart from other numbers.
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) => match num(n) {
            Num::Int(_) => "integer",
            Num::Float(_) => "number",
        },
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Declared types: `type`, or `integer,string` for `x-kubernetes-int-or-string`, which
/// upstream turns into a two-type schema.
fn declared_types(s: &Value) -> Vec<&str> {
    if flag(s, "x-kubernetes-int-or-string") {
        return vec!["integer", "string"];
    }
    match s.get("type") {
        Some(Value::String(t)) if !t.is_empty() => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// go-openapi's `IsFloat64AJSONInteger`: integral (within a relative epsilon) and inside the
/// range where doubles hold integers exactly.
fn is_json_integer(f: f64) -> bool {
    const MAX: f64 = 9_007_199_254_740_992.0;
    if !f.is_finite() || !(-MAX..=MAX).contains(&f) {
        return false;
    }
    let t = f.trunc();
    if f == t {
        return true;
    }
    let diff = (f - t).abs();
    if t == 0.0 {
        return diff < 1e-9 * f64::MIN_POSITIVE;
    }
    diff / (f.abs() + t.abs()) < 1e-9
}

fn schema_f64(s: &Value, key: &str) -> Option<f64> {
    s.get(key).and_then(Value::as_f64)
}

fn schema_u64(s: &Value, key: &str) -> Option<u64> {
    s.get(key).and_then(Value::as_u64)
}

/// How a number from the object prints in a message: integers bare, floats as Go's `%v`.
fn show_num(n: &Num) -> String {
    match n {
        Num::Int(i) => i.to_string(),
        Num::Float(f) => go_float(*f),
    }
}

/// Converts a bound to the object's numeric kind, as upstream's native-type checks do
/// (an integer is compared with the bound truncated to an integer).
fn bound_for(data: &Num, bound: f64) -> Num {
    match data {
        Num::Int(_) => Num::Int(bound as i64),
        Num::Float(_) => Num::Float(bound),
    }
}

fn less(a: &Num, b: &Num) -> bool {
    match (a, b) {
        (Num::Int(x), Num::Int(y)) => x < y,
        _ => as_f64(a) < as_f64(b),
    }
}

/// Go's regexp classes `\d`, `\w`, `\s` and `\b` are ASCII-only while Rust's are Unicode;
/// this rewrites them (inside or outside brackets) so patterns accept what upstream accepts.
fn go_regex(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 16);
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str("[0-9]"),
            Some('D') => out.push_str("[^0-9]"),
            Some('w') => out.push_str("[0-9A-Za-z_]"),
            Some('W') => out.push_str("[^0-9A-Za-z_]"),
            Some('s') => out.push_str(r"[\t\n\f\r ]"),
            Some('S') => out.push_str(r"[^\t\n\f\r ]"),
            Some('b') => out.push_str(r"(?-u:\b)"),
            Some('B') => out.push_str(r"(?-u:\B)"),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// Compiles a schema `pattern` with Go's semantics; the error is the compiler's message.
pub(super) fn compile_pattern(pattern: &str) -> Result<Regex, String> {
    Regex::new(&go_regex(pattern)).map_err(|e| e.to_string())
}

/// One validation run; compiled patterns are reused across the values it visits.
#[derive(Default)]
struct Validator {
    patterns: HashMap<String, Result<Regex, String>>,
}

impl Validator {
    /// Validates `data` at `path` against schema node `s`, appending to `out`.
    fn check(&mut self, data: &Value, s: &Value, path: &str, out: &mut Vec<FieldError>) {
        let types = declared_types(s);
        if data.is_null() {
            // Upstream runs only the type and enum checks on null.
            if !types.is_empty() && !types.contains(&"null") && !nullable(s) {
                out.push(type_err(path, &types, "null"));
            }
            check_enum(data, s, path, out);
            return;
        }
        check_type(data, s, &types, path, out);
        self.check_composition(data, s, path, out);
        match data {
            Value::String(st) => {
                self.check_string(st, s, path, out);
                check_format(st, s, path, out);
            }
            Value::Number(n) => check_number(n, s, path, out),
            Value::Array(a) => self.check_array(a, s, path, out),
            _ => {}
        }
        check_enum(data, s, path, out);
        if let Value::Object(m) = data {
            self.check_object(m, s, path, out);
        }
    }

    /// Validates against a sub-schema into a fresh list.
    fn errors_for(&mut self, data: &Value, s: &Value, path: &str) -> Vec<FieldError> {
        let mut errs = Vec::new();
        self.check(data, s, path, &mut errs);
        errs
    }

    fn check_composition(
        &mut self,
        data: &Value,
        s: &Value,
        path: &str,
        out: &mut Vec<FieldError>,
    ) {
        let list = |k: &str| s.get(k).and_then(Value::as_array).filter(|a| !a.is_empty());
        if let Some(any_of) = list("anyOf") {
            let mut best: Option<Vec<FieldError>> = None;
            let mut matched = false;
            for sub in any_of {
                let errs = self.errors_for(data, sub, path);
                if errs.is_empty() {
                    matched = true;
                    break;
                }
                // Upstream reports the branch that got furthest; fewest errors stands in
                // for its match count.
                if best.as_ref().is_none_or(|b| errs.len() < b.len()) {
                    best = Some(errs);
                }
            }
            if !matched {
                out.push(composite(format!(
                    "{} must validate at least one schema (anyOf)",
                    go_quote(path)
                )));
                out.extend(best.unwrap_or_default());
            }
        }
        if let Some(one_of) = list("oneOf") {
            let mut best: Option<Vec<FieldError>> = None;
            let mut valid = 0;
            for sub in one_of {
                let errs = self.errors_for(data, sub, path);
                if errs.is_empty() {
                    valid += 1;
                } else if valid == 0 && best.as_ref().is_none_or(|b| errs.len() < b.len()) {
                    best = Some(errs);
                }
            }
            if valid != 1 {
                let detail = if valid == 0 {
                    "Found none valid".to_string()
                } else {
                    format!("Found {valid} valid alternatives")
                };
                out.push(composite(format!(
                    "{} must validate one and only one schema (oneOf). {detail}",
                    go_quote(path)
                )));
                if valid == 0 {
                    out.extend(best.unwrap_or_default());
                }
            }
        }
        if let Some(all_of) = list("allOf") {
            let mut valid = 0;
            for sub in all_of {
                let errs = self.errors_for(data, sub, path);
                if errs.is_empty() {
                    valid += 1;
                }
                out.extend(errs);
            }
            if valid != all_of.len() {
                let detail = if valid == 0 { ". None validated" } else { "" };
                out.push(composite(format!(
                    "{} must validate all the schemas (allOf){detail}",
                    go_quote(path)
                )));
            }
        }
        if let Some(not) = s.get("not").filter(|n| n.is_object()) {
            if self.errors_for(data, not, path).is_empty() {
                out.push(composite(format!(
                    "{} must not validate the schema (not)",
                    go_quote(path)
                )));
            }
        }
    }

    /// Length and pattern checks; upstream stops at the first failure.
    fn check_string(&mut self, st: &str, s: &Value, path: &str, out: &mut Vec<FieldError>) {
        let len = st.chars().count() as u64;
        if let Some(max) = schema_u64(s, "maxLength").filter(|max| len > *max) {
            out.push(too_long(path, max));
            return;
        }
        if let Some(min) = schema_u64(s, "minLength").filter(|min| len < *min) {
            out.push(invalid(
                path,
                go_quote(st),
                format!("{path} in body should be at least {min} chars long"),
            ));
            return;
        }
        let Some(pattern) = s.get("pattern").and_then(Value::as_str) else {
            return;
        };
        let compiled = self
            .patterns
            .entry(pattern.to_string())
            .or_insert_with(|| compile_pattern(pattern));
        match compiled {
            Ok(re) if re.is_match(st) => {}
            Ok(_) => out.push(invalid(
                path,
                go_quote(st),
                format!("{path} in body should match '{pattern}'"),
            )),
            Err(e) => out.push(invalid(
                path,
                go_quote(st),
                format!("{path} in body should match '{pattern}, but pattern is invalid: {e}'"),
            )),
        }
    }

    fn check_array(&mut self, a: &[Value], s: &Value, path: &str, out: &mut Vec<FieldError>) {
        if let Some(item_schema) = items(s) {
            for (i, v) in a.iter().enumerate() {
                self.check(v, item_schema, &format!("{path}[{i}]"), out);
            }
        }
        let len = a.len() as u64;
        if let Some(min) = schema_u64(s, "minItems").filter(|min| len < *min) {
            out.push(invalid(
                path,
                len.to_string(),
                format!("{path} in body should have at least {min} items"),
            ));
        }
        if let Some(max) = schema_u64(s, "maxItems").filter(|max| len > *max) {
            out.push(too_many(path, a.len(), max));
        }
        if flag(s, "uniqueItems") {
            let dup = a
                .iter()
                .enumerate()
                .any(|(i, x)| a[..i].iter().any(|y| y == x));
            if dup {
                out.push(invalid(
                    path,
                    "\"\"".to_string(),
                    format!("{path} in body shouldn't contain duplicates"),
                ));
            }
        }
    }

    fn check_object(
        &mut self,
        m: &Map<String, Value>,
        s: &Value,
        path: &str,
        out: &mut Vec<FieldError>,
    ) {
        let count = m.len() as u64;
        if let Some(min) = schema_u64(s, "minProperties").filter(|min| count < *min) {
            out.push(invalid(
                path,
                count.to_string(),
                format!("{path} in body should have at least {min} properties"),
            ));
        }
        if let Some(max) = schema_u64(s, "maxProperties").filter(|max| count > *max) {
            out.push(too_many(path, m.len(), max));
        }
        let props = properties(s);
        let declared = |k: &str| props.is_some_and(|p| p.contains_key(k));
        if s.get("additionalProperties") == Some(&Value::Bool(false)) {
            for k in m.keys().filter(|k| !declared(k)) {
                out.push(invalid(
                    path,
                    go_quote(k),
                    format!("{path}.{k} in body is a forbidden property"),
                ));
            }
        } else if let Additional::Schema(a) = additional(s) {
            for (k, v) in m.iter().filter(|(k, _)| !declared(k)) {
                self.check(v, a, &child(path, k), out);
            }
        }
        if let Some(props) = props {
            for (k, p) in props {
                if let Some(v) = m.get(k) {
                    self.check(v, p, &child(path, k), out);
                }
            }
        }
        if let Some(required) = s.get("required").and_then(Value::as_array) {
            for k in required.iter().filter_map(Value::as_str) {
                if !m.contains_key(k) {
                    out.push(FieldError {
                        field: field_of(&format!("{path}.{k}")),
                        reason: Reason::Required,
                        message: String::new(),
                        value: None,
                    });
                }
            }
        }
    }
}

fn type_err(path: &str, types: &[&str], actual: &str) -> FieldError {
    type_invalid(
        path,
        go_quote(actual),
        format!(
            "{path} in body must be of type {}: {}",
            types.join(","),
            go_quote(actual)
        ),
    )
}

fn check_type(data: &Value, s: &Value, types: &[&str], path: &str, out: &mut Vec<FieldError>) {
    let format = s
        .get("format")
        .and_then(Value::as_str)
        .filter(|f| format::is_supported(f));
    if types.is_empty() && format.is_none() {
        return;
    }
    let actual = type_name(data);
    let float_int = actual == "number"
        && types.contains(&"integer")
        && data.as_f64().is_some_and(is_json_integer);
    let int_float = actual == "integer" && types.contains(&"number");
    let matches = types.contains(&actual) || float_int || int_float;
    let scalar_or_object = !matches!(data, Value::String(_) | Value::Array(_));
    if let Some(f) = format {
        // A (string) format on a schema that gets a number, boolean or object: upstream
        // reports the format against the Go type of the value.
        if scalar_or_object && !matches {
            let go_format = match data {
                Value::Number(n) => match num(n) {
                    Num::Int(_) => "int64",
                    Num::Float(_) => "float64",
                },
                _ => "",
            };
            out.push(type_invalid(
                path,
                go_quote(go_format),
                format!(
                    "{path} in body must be of type {f}: {}",
                    go_quote(go_format)
                ),
            ));
            return;
        }
        // Strings and arrays under a non-numeric schema with a format skip the type check.
        let numeric = types.contains(&"integer") || types.contains(&"number");
        if !numeric && !scalar_or_object {
            return;
        }
    }
    if !matches {
        out.push(type_err(path, types, actual));
    }
}

fn check_format(st: &str, s: &Value, path: &str, out: &mut Vec<FieldError>) {
    let Some(f) = s.get("format").and_then(Value::as_str) else {
        return;
    };
    if format::is_supported(f) && !format::is_valid(f, st) {
        out.push(type_invalid(
            path,
            go_quote(st),
            format!("{path} in body must be of type {f}: {}", go_quote(st)),
        ));
    }
}

fn check_number(n: &Number, s: &Value, path: &str, out: &mut Vec<FieldError>) {
    let data = num(n);
    if let Some(factor) = schema_f64(s, "multipleOf") {
        check_multiple_of(&data, factor, path, out);
    }
    if let Some(min) = schema_f64(s, "minimum") {
        let exclusive = flag(s, "exclusiveMinimum");
        let bound = bound_for(&data, min);
        let fails = if exclusive {
            !less(&bound, &data)
        } else {
            less(&data, &bound)
        };
        if fails {
            let op = if exclusive {
                "greater than"
            } else {
                "greater than or equal to"
            };
            out.push(invalid(
                path,
                show_num(&data),
                format!("{path} in body should be {op} {}", show_num(&bound)),
            ));
        }
    }
    if let Some(max) = schema_f64(s, "maximum") {
        let exclusive = flag(s, "exclusiveMaximum");
        let bound = bound_for(&data, max);
        let fails = if exclusive {
            !less(&data, &bound)
        } else {
            less(&bound, &data)
        };
        if fails {
            let op = if exclusive {
                "less than"
            } else {
                "less than or equal to"
            };
            out.push(invalid(
                path,
                show_num(&data),
                format!("{path} in body should be {op} {}", show_num(&bound)),
            ));
        }
    }
}

fn check_multiple_of(data: &Num, factor: f64, path: &str, out: &mut Vec<FieldError>) {
    if factor < 0.0 {
        out.push(invalid(
            path,
            go_float(factor),
            format!(
                "factor MultipleOf declared for {path} must be positive: {}",
                go_float(factor)
            ),
        ));
        return;
    }
    // Integers are checked with integer arithmetic when the factor is a whole number, as
    // upstream's native-type check does; otherwise as floats.
    if let Num::Int(i) = data {
        let f = factor as i64;
        if factor.fract() == 0.0 && f != 0 {
            if i % f != 0 {
                out.push(invalid(
                    path,
                    i.to_string(),
                    format!("{path} in body should be a multiple of {f}"),
                ));
            }
            return;
        }
    }
    let x = as_f64(data);
    let ratio = if factor < 1.0 {
        1.0 / factor * x
    } else {
        x / factor
    };
    if !is_json_integer(ratio) {
        out.push(invalid(
            path,
            show_num(data),
            format!(
                "{path} in body should be a multiple of {}",
                go_float(factor)
            ),
        ));
    }
}

/// Upstream prints allowed values as strings, or as their JSON for other types (numbers
/// decoded as floats, so `1.0` prints as `1`).
fn enum_value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 1e21 => format!("{}", f as i128),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

fn check_enum(data: &Value, s: &Value, path: &str, out: &mut Vec<FieldError>) {
    let Some(allowed) = s.get("enum").and_then(Value::as_array) else {
        return;
    };
    if allowed.is_empty() || allowed.iter().any(|e| json_equal(data, e)) {
        return;
    }
    let quoted: Vec<String> = allowed
        .iter()
        .map(|v| go_quote(&enum_value_text(v)))
        .collect();
    out.push(FieldError {
        field: field_of(path),
        reason: Reason::NotSupported,
        message: format!("supported values: {}", quoted.join(", ")),
        value: Some(go_value(data)),
    });
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
