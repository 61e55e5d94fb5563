//! Unit tests of [`super`]: messages and paths as upstream prints them.

use super::*;
use serde_json::json;

fn msgs(obj: Value, schema: Value) -> Vec<String> {
    validate(&obj, &schema)
        .iter()
        .map(|e| e.to_string())
        .collect()
}

fn spec(props: Value) -> Value {
    json!({"type": "object", "properties": {"spec": {"type": "object", "properties": props}}})
}

#[test]
fn type_errors_name_the_actual_type() {
    let s = spec(json!({"replicas": {"type": "integer"}, "on": {"type": "boolean"}}));
    assert_eq!(
        msgs(json!({"spec": {"replicas": "3", "on": 1}}), s),
        vec![
            r#"spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string""#,
            r#"spec.on: Invalid value: "integer": spec.on in body must be of type boolean: "integer""#,
        ]
    );
}

#[test]
fn integral_floats_are_integers_and_integers_are_numbers() {
    let s = spec(json!({"i": {"type": "integer"}, "n": {"type": "number"}}));
    assert!(msgs(json!({"spec": {"i": 3.0, "n": 3}}), s.clone()).is_empty());
    assert_eq!(
        msgs(json!({"spec": {"i": 3.5}}), s),
        vec![
            r#"spec.i: Invalid value: "number": spec.i in body must be of type integer: "number""#
        ]
    );
}

#[test]
fn null_needs_nullable() {
    let s = spec(json!({"a": {"type": "string"}, "b": {"type": "string", "nullable": true}}));
    assert_eq!(
        msgs(json!({"spec": {"a": null, "b": null}}), s),
        vec![r#"spec.a: Invalid value: "null": spec.a in body must be of type string: "null""#]
    );
}

#[test]
fn int_or_string() {
    let s = spec(
        json!({"port": {"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]}}),
    );
    assert!(msgs(json!({"spec": {"port": 80}}), s.clone()).is_empty());
    assert!(msgs(json!({"spec": {"port": "http"}}), s.clone()).is_empty());
    let errs = validate(&json!({"spec": {"port": true}}), &s);
    assert_eq!(
        errs[0].to_string(),
        r#"spec.port: Invalid value: "boolean": spec.port in body must be of type integer,string: "boolean""#
    );
    assert_eq!(
        errs[1].to_string(),
        r#"<nil>: Invalid value: "": "spec.port" must validate at least one schema (anyOf)"#
    );
}

#[test]
fn numeric_bounds() {
    let s = spec(json!({
        "replicas": {"type": "integer", "minimum": 1, "maximum": 10},
        "ratio": {"type": "number", "exclusiveMinimum": true, "minimum": 0, "exclusiveMaximum": true, "maximum": 1.5},
        "step": {"type": "integer", "multipleOf": 5},
        "half": {"type": "number", "multipleOf": 0.5}
    }));
    assert_eq!(
        msgs(json!({"spec": {"replicas": 11, "ratio": 1.5, "step": 7, "half": 0.75}}), s.clone()),
        vec![
            "spec.replicas: Invalid value: 11: spec.replicas in body should be less than or equal to 10",
            "spec.ratio: Invalid value: 1.5: spec.ratio in body should be less than 1.5",
            "spec.step: Invalid value: 7: spec.step in body should be a multiple of 5",
            "spec.half: Invalid value: 0.75: spec.half in body should be a multiple of 0.5",
        ]
    );
    assert_eq!(
        msgs(json!({"spec": {"replicas": 0, "ratio": 0}}), s.clone()),
        vec![
            "spec.replicas: Invalid value: 0: spec.replicas in body should be greater than or equal to 1",
            "spec.ratio: Invalid value: 0: spec.ratio in body should be greater than 0",
        ]
    );
    assert!(msgs(
        json!({"spec": {"replicas": 10, "ratio": 0.1, "step": 15, "half": 2.5}}),
        s
    )
    .is_empty());
}

#[test]
fn string_checks_stop_at_first_failure() {
    let s = spec(
        json!({"name": {"type": "string", "minLength": 2, "maxLength": 5, "pattern": "^[a-z]+$"}}),
    );
    assert_eq!(
        msgs(json!({"spec": {"name": "TOOLONG"}}), s.clone()),
        vec!["spec.name: Too long: may not be more than 5 bytes"]
    );
    assert_eq!(
        msgs(json!({"spec": {"name": "a"}}), s.clone()),
        vec![r#"spec.name: Invalid value: "a": spec.name in body should be at least 2 chars long"#]
    );
    assert_eq!(
        msgs(json!({"spec": {"name": "AB"}}), s.clone()),
        vec![r#"spec.name: Invalid value: "AB": spec.name in body should match '^[a-z]+$'"#]
    );
    // Lengths count characters, not bytes.
    assert!(msgs(
        json!({"spec": {"name": "ééééé"}}),
        spec(json!({"name": {"type": "string", "maxLength": 5}}))
    )
    .is_empty());
}

#[test]
fn patterns_use_go_ascii_classes() {
    let s = spec(json!({"n": {"type": "string", "pattern": r"^\d+$"}}));
    assert!(msgs(json!({"spec": {"n": "123"}}), s.clone()).is_empty());
    assert_eq!(msgs(json!({"spec": {"n": "١٢٣"}}), s).len(), 1);
    assert_eq!(go_regex(r"[\d\\d]\w"), r"[[0-9]\\d][0-9A-Za-z_]");
}

#[test]
fn invalid_pattern_is_reported() {
    let s = spec(json!({"n": {"type": "string", "pattern": "(["}}));
    let errs = msgs(json!({"spec": {"n": "x"}}), s);
    assert_eq!(errs.len(), 1);
    assert!(errs[0].starts_with(r#"spec.n: Invalid value: "x": spec.n in body should match '([, but pattern is invalid: "#), "{}", errs[0]);
}

#[test]
fn formats() {
    let s = spec(json!({
        "at": {"type": "string", "format": "date-time"},
        "size": {"type": "integer", "format": "int32"},
        "id": {"type": "string", "format": "uuid"}
    }));
    assert_eq!(
        msgs(
            json!({"spec": {"at": "soon", "size": 9_999_999_999_i64, "id": "123e4567-e89b-12d3-a456-426614174000"}}),
            s
        ),
        vec![
            r#"spec.at: Invalid value: "soon": spec.at in body must be of type date-time: "soon""#
        ]
    );
}

#[test]
fn string_format_on_a_number_names_the_go_type() {
    let s = spec(json!({"at": {"type": "string", "format": "date"}}));
    assert_eq!(
        msgs(json!({"spec": {"at": 5}}), s),
        vec![r#"spec.at: Invalid value: "int64": spec.at in body must be of type date: "int64""#]
    );
}

#[test]
fn enums() {
    let s = spec(
        json!({"color": {"type": "string", "enum": ["red", "blue"]}, "n": {"type": "integer", "enum": [1, 2]}}),
    );
    assert_eq!(
        msgs(json!({"spec": {"color": "pink", "n": 3}}), s.clone()),
        vec![
            r#"spec.color: Unsupported value: "pink": supported values: "red", "blue""#,
            r#"spec.n: Unsupported value: 3: supported values: "1", "2""#,
        ]
    );
    assert!(msgs(json!({"spec": {"color": "red", "n": 2}}), s).is_empty());
}

#[test]
fn required_fields() {
    let s = json!({
        "type": "object",
        "required": ["spec"],
        "properties": {"spec": {"type": "object", "required": ["size", "color"], "properties": {"size": {"type": "integer"}}}}
    });
    assert_eq!(msgs(json!({}), s.clone()), vec!["spec: Required value"]);
    let errs = validate(&json!({"spec": {"color": "x"}}), &s);
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].to_string(), "spec.size: Required value");
    assert_eq!(errs[0].reason.as_str(), "FieldValueRequired");
}

#[test]
fn arrays() {
    let s = spec(json!({
        "tags": {"type": "array", "minItems": 1, "maxItems": 2, "uniqueItems": true, "items": {"type": "string", "maxLength": 3}}
    }));
    assert_eq!(
        msgs(json!({"spec": {"tags": ["a", "a", "long"]}}), s.clone()),
        vec![
            "spec.tags[2]: Too long: may not be more than 3 bytes",
            "spec.tags: Too many: 3: must have at most 2 items",
            r#"spec.tags: Invalid value: "": spec.tags in body shouldn't contain duplicates"#,
        ]
    );
    assert_eq!(
        msgs(json!({"spec": {"tags": []}}), s),
        vec!["spec.tags: Invalid value: 0: spec.tags in body should have at least 1 items"]
    );
}

#[test]
fn object_property_counts_and_maps() {
    let s = spec(json!({
        "labels": {"type": "object", "maxProperties": 1, "additionalProperties": {"type": "string"}},
        "limits": {"type": "object", "minProperties": 1, "additionalProperties": {"type": "integer"}},
        "strict": {"type": "object", "additionalProperties": false, "properties": {"a": {"type": "string"}}}
    }));
    assert_eq!(
        msgs(
            json!({"spec": {"labels": {"a": "1", "b": "2"}, "limits": {}, "strict": {"a": "x", "b": 1}}}),
            s.clone()
        ),
        vec![
            "spec.labels: Too many: 2: must have at most 1 item",
            "spec.limits: Invalid value: 0: spec.limits in body should have at least 1 properties",
            r#"spec.strict: Invalid value: "b": spec.strict.b in body is a forbidden property"#,
        ]
    );
    assert_eq!(
        msgs(json!({"spec": {"limits": {"cpu": "x"}}}), s),
        vec![
            r#"spec.limits.cpu: Invalid value: "string": spec.limits.cpu in body must be of type integer: "string""#
        ]
    );
}

#[test]
fn composition_keywords() {
    let s = spec(json!({
        "one": {"type": "integer", "oneOf": [{"minimum": 0}, {"maximum": 10}]},
        "all": {"type": "integer", "allOf": [{"minimum": 0}, {"maximum": 10}]},
        "not": {"type": "string", "not": {"enum": ["forbidden"]}}
    }));
    assert_eq!(
        msgs(
            json!({"spec": {"one": 5, "all": 11, "not": "forbidden"}}),
            s
        ),
        vec![
            r#"<nil>: Invalid value: "": "spec.one" must validate one and only one schema (oneOf). Found 2 valid alternatives"#,
            "spec.all: Invalid value: 11: spec.all in body should be less than or equal to 10",
            r#"<nil>: Invalid value: "": "spec.all" must validate all the schemas (allOf)"#,
            r#"<nil>: Invalid value: "": "spec.not" must not validate the schema (not)"#,
        ]
    );
}

#[test]
fn cel_rules_are_ignored() {
    let s = spec(
        json!({"a": {"type": "string", "x-kubernetes-validations": [{"rule": "self == 'x'"}]}}),
    );
    assert!(msgs(json!({"spec": {"a": "y"}}), s).is_empty());
}

#[test]
fn field_values_are_structured_for_status_causes() {
    let s = spec(json!({"replicas": {"type": "integer", "maximum": 10}}));
    let errs = validate(&json!({"spec": {"replicas": 11}}), &s);
    assert_eq!(
        errs[0].to_cause(),
        json!({
            "reason": "FieldValueInvalid",
            "message": "Invalid value: 11: spec.replicas in body should be less than or equal to 10",
            "field": "spec.replicas"
        })
    );
}
