//! End-to-end tests: a CronTab-like CRD and custom resources going through pruning,
//! defaulting and validation as the API server runs them on create.

use serde_json::{json, Value};

use super::*;
use crate::validation::invalid_message;

fn crontab_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "crontabs.stable.example.com"},
        "spec": {
            "group": "stable.example.com",
            "scope": "Namespaced",
            "names": {"plural": "crontabs", "singular": "crontab", "kind": "CronTab", "listKind": "CronTabList", "shortNames": ["ct"]},
            "versions": [{
                "name": "v1",
                "served": true,
                "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": spec_schema(),
                        "status": status_schema()
                    }
                }}
            }]
        }
    })
}

fn spec_schema() -> Value {
    json!({
        "type": "object",
        "required": ["cronSpec", "image"],
        "properties": {
            "cronSpec": {"type": "string", "pattern": "^(\\d+|\\*)(/\\d+)?(\\s+(\\d+|\\*)(/\\d+)?){4}$"},
            "image": {"type": "string", "minLength": 1, "maxLength": 64},
            "replicas": {"type": "integer", "minimum": 1, "maximum": 10, "default": 1},
            "color": {"type": "string", "enum": ["red", "blue"], "default": "blue"},
            "suspend": {"type": "boolean", "nullable": true},
            "config": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
            "resources": {
                "type": "object",
                "default": {},
                "properties": {
                    "cpu": {"x-kubernetes-int-or-string": true, "default": "100m"},
                    "memory": {"x-kubernetes-int-or-string": true}
                }
            },
            "ports": {
                "type": "array",
                "maxItems": 4,
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["containerPort"],
                "items": {
                    "type": "object",
                    "required": ["containerPort"],
                    "properties": {
                        "containerPort": {"type": "integer", "format": "int32", "minimum": 1, "maximum": 65535},
                        "protocol": {"type": "string", "enum": ["TCP", "UDP"], "default": "TCP"}
                    }
                }
            },
            "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}}
        },
        "x-kubernetes-validations": [{"rule": "self.replicas <= 10", "message": "too many"}]
    })
}

fn status_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "observedGeneration": {"type": "integer", "format": "int64"},
            "lastScheduleTime": {"type": "string", "format": "date-time"},
            "conditions": {
                "type": "array",
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["type"],
                "items": {
                    "type": "object",
                    "required": ["type", "status"],
                    "properties": {
                        "type": {"type": "string", "maxLength": 316},
                        "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
                        "reason": {"type": "string"},
                        "message": {"type": "string"},
                        "lastTransitionTime": {"type": "string", "format": "date-time"}
                    }
                }
            }
        }
    })
}

fn schema() -> Value {
    crontab_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

/// Pruning, defaulting and validation in the API server's order.
fn admit(mut obj: Value) -> (Value, Vec<String>, Vec<FieldError>) {
    let s = schema();
    let unknown = prune_unknown_fields(&mut obj, &s);
    apply_defaults(&mut obj, &s);
    let errs = validate(&obj, &s);
    (obj, unknown, errs)
}

fn messages(errs: &[FieldError]) -> Vec<String> {
    errs.iter().map(ToString::to_string).collect()
}

#[test]
fn the_crd_itself_is_valid() {
    assert_eq!(
        messages(&validate_crd(&crontab_crd())),
        Vec::<String>::new()
    );
}

#[test]
fn valid_crontab_is_defaulted_and_pruned() {
    let (obj, unknown, errs) = admit(json!({
        "apiVersion": "stable.example.com/v1",
        "kind": "CronTab",
        "metadata": {"name": "my-cron", "namespace": "default", "labels": {"app": "cron"}, "extra": "x"},
        "spec": {
            "cronSpec": "*/5 * * * *",
            "image": "my-cron-image",
            "suspend": null,
            "config": {"anything": {"goes": [1, "two"]}},
            "ports": [{"containerPort": 8080}, {"containerPort": 53, "protocol": "UDP"}],
            "tags": ["a", "b"],
            "unknownField": 1
        }
    }));
    assert_eq!(messages(&errs), Vec::<String>::new());
    assert_eq!(unknown, vec!["metadata.extra", "spec.unknownField"]);
    assert_eq!(
        obj,
        json!({
            "apiVersion": "stable.example.com/v1",
            "kind": "CronTab",
            "metadata": {"name": "my-cron", "namespace": "default", "labels": {"app": "cron"}},
            "spec": {
                "cronSpec": "*/5 * * * *",
                "image": "my-cron-image",
                "suspend": null,
                "config": {"anything": {"goes": [1, "two"]}},
                "ports": [{"containerPort": 8080, "protocol": "TCP"}, {"containerPort": 53, "protocol": "UDP"}],
                "tags": ["a", "b"],
                "replicas": 1,
                "color": "blue",
                "resources": {"cpu": "100m"}
            }
        })
    );
}

#[test]
fn invalid_crontab_reports_upstream_errors() {
    let (_, _, errs) = admit(json!({
        "apiVersion": "stable.example.com/v1",
        "kind": "CronTab",
        "metadata": {"name": "bad"},
        "spec": {
            "cronSpec": "every minute",
            "replicas": 11,
            "color": "pink",
            "resources": {"cpu": true},
            "ports": [{"containerPort": 80}, {"containerPort": 80, "protocol": "SCTP"}, {"protocol": "TCP"}],
            "tags": ["a", "a"]
        }
    }));
    assert_eq!(
        messages(&errs),
        vec![
            r#"spec.cronSpec: Invalid value: "every minute": spec.cronSpec in body should match '^(\d+|\*)(/\d+)?(\s+(\d+|\*)(/\d+)?){4}$'"#,
            "spec.replicas: Invalid value: 11: spec.replicas in body should be less than or equal to 10",
            r#"spec.color: Unsupported value: "pink": supported values: "red", "blue""#,
            r#"spec.resources.cpu: Invalid value: "boolean": spec.resources.cpu in body must be of type integer,string: "boolean""#,
            r#"spec.ports[1].protocol: Unsupported value: "SCTP": supported values: "TCP", "UDP""#,
            "spec.ports[2].containerPort: Required value",
            "spec.image: Required value",
            r#"spec.ports[1]: Duplicate value: map[string]interface {}{"containerPort":80}"#,
            r#"spec.tags[1]: Duplicate value: "a""#,
        ]
    );
    let reasons: Vec<&str> = errs.iter().map(|e| e.reason.as_str()).collect();
    assert_eq!(
        reasons,
        vec![
            "FieldValueInvalid",
            "FieldValueInvalid",
            "FieldValueNotSupported",
            "FieldValueInvalid",
            "FieldValueNotSupported",
            "FieldValueRequired",
            "FieldValueRequired",
            "FieldValueDuplicate",
            "FieldValueDuplicate",
        ]
    );
}

#[test]
fn wrong_types_and_lengths() {
    let (_, _, errs) = admit(json!({
        "apiVersion": "stable.example.com/v1",
        "kind": "CronTab",
        "metadata": {"name": "typed"},
        "spec": {
            "cronSpec": "* * * * *",
            "image": "x".repeat(65),
            "replicas": "string",
            "ports": [{"containerPort": 1}, {"containerPort": 2}, {"containerPort": 3}, {"containerPort": 4}, {"containerPort": 5}]
        }
    }));
    assert_eq!(
        messages(&errs),
        vec![
            "spec.image: Too long: may not be more than 64 bytes",
            r#"spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string""#,
            "spec.ports: Too many: 5: must have at most 4 items",
        ]
    );
    assert_eq!(
        errs[0].to_cause(),
        json!({"reason": "FieldValueTooLong", "message": "Too long: may not be more than 64 bytes", "field": "spec.image"})
    );
}

#[test]
fn status_conditions_are_a_list_map() {
    let (_, _, errs) = admit(json!({
        "apiVersion": "stable.example.com/v1",
        "kind": "CronTab",
        "metadata": {"name": "s"},
        "spec": {"cronSpec": "* * * * *", "image": "i"},
        "status": {
            "observedGeneration": 2,
            "lastScheduleTime": "2025-01-01T00:00:00Z",
            "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": "2025-01-01T00:00:00Z"},
                {"type": "Ready", "status": "Maybe", "lastTransitionTime": "yesterday"},
                {"status": "True"}
            ]
        }
    }));
    assert_eq!(
        messages(&errs),
        vec![
            r#"status.conditions[1].status: Unsupported value: "Maybe": supported values: "True", "False", "Unknown""#,
            r#"status.conditions[1].lastTransitionTime: Invalid value: "yesterday": status.conditions[1].lastTransitionTime in body must be of type date-time: "yesterday""#,
            "status.conditions[2].type: Required value",
            r#"status.conditions[1]: Duplicate value: map[string]interface {}{"type":"Ready"}"#,
        ]
    );
}

#[test]
fn errors_make_an_upstream_invalid_status_message() {
    let (_, _, errs) = admit(json!({
        "apiVersion": "stable.example.com/v1",
        "kind": "CronTab",
        "metadata": {"name": "my-cron"},
        "spec": {"cronSpec": "* * * * *", "image": "i", "replicas": 0}
    }));
    assert_eq!(
        invalid_message("stable.example.com", "CronTab", "my-cron", &errs),
        r#"CronTab.stable.example.com "my-cron" is invalid: spec.replicas: Invalid value: 0: spec.replicas in body should be greater than or equal to 1"#
    );
}

#[test]
fn null_handling_across_the_pipeline() {
    // A non-nullable field sent as null: defaulted when it has a default, dropped otherwise.
    let (obj, _, errs) = admit(json!({
        "apiVersion": "stable.example.com/v1",
        "kind": "CronTab",
        "metadata": {"name": "n"},
        "spec": {"cronSpec": "* * * * *", "image": "i", "replicas": null, "tags": null, "suspend": null}
    }));
    assert!(errs.is_empty(), "{errs:?}");
    assert_eq!(obj["spec"]["replicas"], 1);
    assert!(obj["spec"].get("tags").is_none());
    assert_eq!(obj["spec"]["suspend"], Value::Null);
}
