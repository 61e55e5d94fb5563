//! Checks of objects marked `x-kubernetes-embedded-resource` (upstream's
//! `schema/objectmeta` validation): they need `apiVersion` and `kind`, and their `metadata`
//! must be valid object metadata.
//!
//! The root object is not checked here: its metadata is validated by the normal
//! object-meta validation of the API server.

use serde_json::{Map, Value};

use super::{flag, go_value, items, properties, FieldError};
use crate::validation::names::{is_dns1035_label, is_valid_path_segment_name};
use crate::validation::{validate_labels, Reason};

/// Checks every embedded resource below the root of `obj`.
pub(super) fn validate_embedded(obj: &Value, schema: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Value::Object(m) = obj {
        walk_children("", m, schema, &mut errs);
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
        Value::Object(m) => {
            if flag(s, "x-kubernetes-embedded-resource") {
                check_resource(path, m, errs);
            }
            walk_children(path, m, s, errs);
        }
        Value::Array(a) => {
            if let Some(item_schema) = items(s) {
                for (i, v) in a.iter().enumerate() {
                    walk(&format!("{path}[{i}]"), v, item_schema, errs);
                }
            }
        }
        _ => {}
    }
}

fn walk_children(path: &str, m: &Map<String, Value>, s: &Value, errs: &mut Vec<FieldError>) {
    let additional = s.get("additionalProperties").filter(|a| a.is_object());
    for (k, v) in m {
        if let Some(p) = properties(s).and_then(|p| p.get(k)) {
            walk(&child(path, k), v, p, errs);
        } else if let Some(a) = additional {
            walk(&format!("{path}[{k}]"), v, a, errs);
        }
    }
}

fn required(field: String, message: &str) -> FieldError {
    FieldError {
        field,
        reason: Reason::Required,
        message: message.to_string(),
        value: None,
    }
}

fn invalid(field: String, value: String, message: String) -> FieldError {
    FieldError {
        field,
        reason: Reason::Invalid,
        message,
        value: Some(value),
    }
}

fn check_resource(path: &str, m: &Map<String, Value>, errs: &mut Vec<FieldError>) {
    let api_version = child(path, "apiVersion");
    let kind = child(path, "kind");
    if !m.contains_key("apiVersion") {
        errs.push(required(api_version.clone(), "must not be empty"));
    }
    if !m.contains_key("kind") {
        errs.push(required(kind.clone(), "must not be empty"));
    }
    for (k, v) in m {
        match k.as_str() {
            "apiVersion" => match v.as_str() {
                None => errs.push(invalid(
                    api_version.clone(),
                    go_value(v),
                    "must be a string".into(),
                )),
                Some(gv) if gv.matches('/').count() > 1 => errs.push(invalid(
                    api_version.clone(),
                    go_value(v),
                    format!("unexpected GroupVersion string: {gv}"),
                )),
                Some(_) => {}
            },
            "kind" => match v.as_str() {
                None => errs.push(invalid(
                    kind.clone(),
                    go_value(v),
                    "must be a string".into(),
                )),
                Some("") => errs.push(invalid(
                    kind.clone(),
                    "\"\"".into(),
                    "must not be empty".into(),
                )),
                Some(s) => {
                    let msgs = is_dns1035_label(&s.to_lowercase());
                    if !msgs.is_empty() {
                        errs.push(invalid(
                            kind.clone(),
                            go_value(v),
                            format!(
                                "may have mixed case, but should otherwise match: {}",
                                msgs.join(",")
                            ),
                        ));
                    }
                }
            },
            "metadata" => check_metadata(&child(path, "metadata"), v, errs),
            _ => {}
        }
    }
}

/// The parts of object-meta validation that apply to an embedded object: a name, when
/// given, must be a valid path segment (upstream's choice for embedded resources), and
/// labels must be valid.
fn check_metadata(path: &str, meta: &Value, errs: &mut Vec<FieldError>) {
    let Some(m) = meta.as_object() else {
        errs.push(invalid(
            path.to_string(),
            go_value(meta),
            "must be an object".into(),
        ));
        return;
    };
    for key in ["name", "generateName"] {
        if let Some(name) = m.get(key).and_then(Value::as_str).filter(|n| !n.is_empty()) {
            for msg in is_valid_path_segment_name(name) {
                errs.push(invalid(
                    child(path, key),
                    crate::selector::go_quote(name),
                    msg,
                ));
            }
        }
    }
    errs.extend(validate_labels(m.get("labels"), &child(path, "labels")));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "template": {"type": "object", "x-kubernetes-embedded-resource": true, "x-kubernetes-preserve-unknown-fields": true},
            "extra": {"type": "array", "items": {"type": "object", "x-kubernetes-embedded-resource": true, "x-kubernetes-preserve-unknown-fields": true}}
        }}}})
    }

    fn msgs(obj: Value) -> Vec<String> {
        validate_embedded(&obj, &schema())
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn valid_embedded_resource() {
        assert!(msgs(json!({"spec": {"template": {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"app": "web"}}}}})).is_empty());
    }

    #[test]
    fn requires_api_version_and_kind() {
        assert_eq!(
            msgs(json!({"spec": {"extra": [{"metadata": {}}]}})),
            vec![
                "spec.extra[0].apiVersion: Required value: must not be empty",
                "spec.extra[0].kind: Required value: must not be empty",
            ]
        );
    }

    #[test]
    fn checks_types_and_kind_format() {
        assert_eq!(
            msgs(
                json!({"spec": {"template": {"apiVersion": 1, "kind": "My Kind", "metadata": {"name": "a/b", "labels": {"bad key!": "x"}}}}})
            ),
            vec![
                "spec.template.apiVersion: Invalid value: 1: must be a string",
                r#"spec.template.kind: Invalid value: "My Kind": may have mixed case, but should otherwise match: a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"#,
                r#"spec.template.metadata.name: Invalid value: "a/b": may not contain '/'"#,
                r#"spec.template.metadata.labels: Invalid value: "bad key!": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"#,
            ]
        );
    }
}
