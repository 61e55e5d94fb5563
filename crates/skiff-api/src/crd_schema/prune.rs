//! Pruning of fields a structural schema does not declare (upstream's
//! `structural/pruning` plus the `metadata` coercion and non-nullable-null removal that
//! follow it when a custom resource is decoded).

use serde_json::Value;

use super::{additional, flag, items, nullable, properties, property_schema, Additional};

/// The fields of `ObjectMeta`: everything else under a resource's `metadata` is dropped,
/// as upstream round-trips `metadata` through the typed struct.
const OBJECT_META_FIELDS: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

const PRESERVE: &str = "x-kubernetes-preserve-unknown-fields";
const EMBEDDED: &str = "x-kubernetes-embedded-resource";

/// Drops from a custom resource every field its schema does not declare, as upstream does
/// before storing it. See [`prune_unknown_fields`].
pub fn prune(obj: &mut Value, schema: &Value) {
    prune_unknown_fields(obj, schema);
}

/// Prunes `obj` (a whole custom resource) against its version's `openAPIV3Schema` and
/// returns the paths of the dropped fields (`spec.foo`, `spec.items[0].bar`,
/// `metadata.foo`), which the API server reports as `unknown field "..."` warnings or, with
/// `fieldValidation=Strict`, errors.
///
/// Fields are kept when declared in `properties`, when they match `additionalProperties`, or
/// anywhere below `x-kubernetes-preserve-unknown-fields: true` (declared properties there are
/// still pruned recursively). The root and every `x-kubernetes-embedded-resource` object
/// keep `apiVersion` and `kind` (strings) and `metadata` (an object), whose unknown fields
/// are dropped. Finally `null` values of non-nullable properties without a default are
/// removed, as upstream does right after pruning, so that they read as absent.
pub fn prune_unknown_fields(obj: &mut Value, schema: &Value) -> Vec<String> {
    let mut pruner = Pruner::default();
    pruner.prune(obj, Some(schema), "", true);
    drop_non_nullable_nulls(obj, schema);
    pruner.unknown
}

#[derive(Default)]
struct Pruner {
    unknown: Vec<String>,
}

/// `parent.key`, or `key` at the root: upstream's unknown-field path form.
fn key_path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// Whether `key` is one of the fields an embedded resource keeps regardless of the schema
/// (only with the right JSON type, as upstream checks).
fn is_kept_resource_field(key: &str, value: &Value) -> bool {
    match key {
        "apiVersion" | "kind" => value.is_string(),
        "metadata" => value.is_object(),
        _ => false,
    }
}

impl Pruner {
    /// `resource` marks the root, which upstream always treats as an embedded resource.
    fn prune(&mut self, x: &mut Value, s: Option<&Value>, path: &str, resource: bool) {
        if let Some(s) = s.filter(|s| flag(s, PRESERVE)) {
            self.skip_prune(x, s, path, resource);
            return;
        }
        match x {
            Value::Object(m) => {
                let Some(s) = s else {
                    // A value without a schema (under `additionalProperties: true`) keeps no
                    // fields, as upstream's nil-schema prune.
                    for k in m.keys() {
                        self.unknown.push(key_path(path, k));
                    }
                    m.clear();
                    return;
                };
                let resource = resource || flag(s, EMBEDDED);
                let mut dropped = Vec::new();
                for (k, v) in m.iter_mut() {
                    let child = key_path(path, k);
                    if resource && is_kept_resource_field(k, v) {
                        if k == "metadata" {
                            self.prune_metadata(v, &child);
                        }
                        continue;
                    }
                    if let Some(p) = properties(s).and_then(|p| p.get(k)) {
                        self.prune(v, Some(p), &child, false);
                        continue;
                    }
                    match additional(s) {
                        Additional::Schema(a) => self.prune(v, Some(a), &child, false),
                        Additional::Unschematized => self.prune(v, None, &child, false),
                        Additional::Absent => {
                            self.unknown.push(child);
                            dropped.push(k.clone());
                        }
                    }
                }
                if !dropped.is_empty() {
                    m.retain(|k, _| !dropped.contains(k));
                }
            }
            Value::Array(a) => {
                let item_schema = s.and_then(items);
                for (i, v) in a.iter_mut().enumerate() {
                    self.prune(v, item_schema, &format!("{path}[{i}]"), false);
                }
            }
            _ => {}
        }
    }

    /// A node with `x-kubernetes-preserve-unknown-fields`: unknown fields stay, declared ones
    /// are still pruned by their own schemas.
    fn skip_prune(&mut self, x: &mut Value, s: &Value, path: &str, resource: bool) {
        match x {
            Value::Object(m) => {
                let resource = resource || flag(s, EMBEDDED);
                for (k, v) in m.iter_mut() {
                    let child = key_path(path, k);
                    if resource && is_kept_resource_field(k, v) {
                        if k == "metadata" {
                            self.prune_metadata(v, &child);
                        }
                        continue;
                    }
                    if let Some(p) = properties(s).and_then(|p| p.get(k)) {
                        self.prune(v, Some(p), &child, false);
                        continue;
                    }
                    match additional(s) {
                        Additional::Schema(a) => self.prune(v, Some(a), &child, false),
                        Additional::Unschematized => self.prune(v, None, &child, false),
                        Additional::Absent => {}
                    }
                }
            }
            Value::Array(a) => {
                // Upstream keeps skipping (not pruning) into the items of a preserved array.
                if let Some(item_schema) = items(s) {
                    for (i, v) in a.iter_mut().enumerate() {
                        self.skip_prune(v, item_schema, &format!("{path}[{i}]"), false);
                    }
                }
            }
            _ => {}
        }
    }

    fn prune_metadata(&mut self, meta: &mut Value, path: &str) {
        let Some(m) = meta.as_object_mut() else {
            return;
        };
        let dropped: Vec<String> = m
            .keys()
            .filter(|k| !OBJECT_META_FIELDS.contains(&k.as_str()))
            .cloned()
            .collect();
        for k in &dropped {
            self.unknown.push(key_path(path, k));
        }
        if !dropped.is_empty() {
            m.retain(|k, _| !dropped.contains(k));
        }
    }
}

/// Removes `null` values whose schema is neither nullable nor defaulted (upstream's
/// `PruneNonNullableNullsWithoutDefaults`): they would otherwise fail type validation although
/// clients commonly send them for "unset".
fn drop_non_nullable_nulls(x: &mut Value, s: &Value) {
    match x {
        Value::Object(m) => {
            m.retain(|k, v| {
                !(v.is_null()
                    && property_schema(s, k).is_some_and(|p| {
                        !nullable(p) && p.get("default").is_none_or(Value::is_null)
                    }))
            });
            for (k, v) in m.iter_mut() {
                if let Some(p) = property_schema(s, k) {
                    drop_non_nullable_nulls(v, p);
                }
            }
        }
        Value::Array(a) => {
            if let Some(item_schema) = items(s) {
                for v in a {
                    drop_non_nullable_nulls(v, item_schema);
                }
            }
        }
        _ => {}
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
                "spec": {
                    "type": "object",
                    "properties": {
                        "image": {"type": "string"},
                        "ports": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {"port": {"type": "integer"}}
                            }
                        },
                        "labels": {
                            "type": "object",
                            "additionalProperties": {"type": "string"}
                        },
                        "settings": {
                            "type": "object",
                            "additionalProperties": {
                                "type": "object",
                                "properties": {"enabled": {"type": "boolean"}}
                            }
                        },
                        "raw": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": true,
                            "properties": {
                                "known": {
                                    "type": "object",
                                    "properties": {"a": {"type": "string"}}
                                }
                            }
                        },
                        "template": {
                            "type": "object",
                            "x-kubernetes-embedded-resource": true,
                            "properties": {"spec": {"type": "object", "properties": {"x": {"type": "string"}}}}
                        },
                        "optional": {"type": "string"},
                        "maybe": {"type": "string", "nullable": true},
                        "withDefault": {"type": "string", "default": "d"}
                    }
                },
                "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
            }
        })
    }

    #[test]
    fn drops_undeclared_fields_and_reports_paths() {
        let mut obj = json!({
            "apiVersion": "stable.example.com/v1",
            "kind": "CronTab",
            "metadata": {"name": "a", "namespace": "default", "bogus": 1, "labels": {"x": "y"}},
            "spec": {
                "image": "nginx",
                "extra": true,
                "ports": [{"port": 80, "name": "http"}, {"port": 81}],
                "labels": {"a": "b"},
                "settings": {"one": {"enabled": true, "junk": 1}}
            },
            "top": "level"
        });
        let unknown = prune_unknown_fields(&mut obj, &schema());
        assert_eq!(
            obj,
            json!({
                "apiVersion": "stable.example.com/v1",
                "kind": "CronTab",
                "metadata": {"name": "a", "namespace": "default", "labels": {"x": "y"}},
                "spec": {
                    "image": "nginx",
                    "ports": [{"port": 80}, {"port": 81}],
                    "labels": {"a": "b"},
                    "settings": {"one": {"enabled": true}}
                }
            })
        );
        assert_eq!(
            unknown,
            vec![
                "metadata.bogus",
                "spec.extra",
                "spec.ports[0].name",
                "spec.settings.one.junk",
                "top"
            ]
        );
    }

    #[test]
    fn preserve_unknown_fields_keeps_unknown_but_prunes_declared() {
        let mut obj = json!({
            "apiVersion": "v1", "kind": "K", "metadata": {},
            "spec": {"raw": {"anything": {"deep": [1, 2]}, "known": {"a": "x", "b": "gone"}}},
            "status": {"whatever": {"x": 1}}
        });
        let unknown = prune_unknown_fields(&mut obj, &schema());
        assert_eq!(
            obj["spec"]["raw"],
            json!({"anything": {"deep": [1, 2]}, "known": {"a": "x"}})
        );
        assert_eq!(obj["status"], json!({"whatever": {"x": 1}}));
        assert_eq!(unknown, vec!["spec.raw.known.b"]);
    }

    #[test]
    fn embedded_resource_keeps_type_meta_and_object_meta() {
        let mut obj = json!({
            "apiVersion": "v1", "kind": "K", "metadata": {},
            "spec": {"template": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "n", "labels": {"a": "b"}, "junk": true},
                "spec": {"x": "y", "z": 1},
                "other": 1
            }}
        });
        let unknown = prune_unknown_fields(&mut obj, &schema());
        assert_eq!(
            obj["spec"]["template"],
            json!({
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "n", "labels": {"a": "b"}},
                "spec": {"x": "y"}
            })
        );
        assert_eq!(
            unknown,
            vec![
                "spec.template.metadata.junk",
                "spec.template.spec.z",
                "spec.template.other"
            ]
        );
    }

    #[test]
    fn non_string_kind_is_pruned_at_root() {
        let mut obj = json!({"apiVersion": "v1", "kind": 5, "metadata": "x"});
        prune(&mut obj, &json!({"type": "object"}));
        assert_eq!(obj, json!({"apiVersion": "v1"}));
    }

    #[test]
    fn no_schema_under_additional_properties_true_clears_objects() {
        let s = json!({"type": "object", "properties": {"m": {"type": "object", "additionalProperties": true}}});
        let mut obj = json!({"apiVersion": "v1", "kind": "K", "m": {"a": {"b": 1}, "c": 2}});
        let unknown = prune_unknown_fields(&mut obj, &s);
        assert_eq!(obj["m"], json!({"a": {}, "c": 2}));
        assert_eq!(unknown, vec!["m.a.b"]);
    }

    #[test]
    fn nulls_of_non_nullable_fields_without_default_are_dropped() {
        let mut obj = json!({
            "apiVersion": "v1", "kind": "K",
            "spec": {"optional": null, "maybe": null, "withDefault": null, "labels": {"a": null}}
        });
        prune(&mut obj, &schema());
        assert_eq!(
            obj["spec"],
            json!({"maybe": null, "withDefault": null, "labels": {}})
        );
    }

    #[test]
    fn keeps_field_order() {
        let mut obj = json!({"apiVersion": "v1", "kind": "K", "spec": {"x": 1, "optional": "a", "y": 2, "image": "i"}});
        prune(&mut obj, &schema());
        let keys: Vec<&String> = obj["spec"].as_object().unwrap().keys().collect();
        assert_eq!(keys, vec!["optional", "image"]);
    }
}
