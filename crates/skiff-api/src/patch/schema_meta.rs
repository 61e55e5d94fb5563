//! Patch metadata derived from an OpenAPI v3 schema, for custom resources.
//!
//! A CRD's structural schema carries the same facts the built-in table records
//! (`x-kubernetes-list-type`, `x-kubernetes-list-map-keys`, `x-kubernetes-map-type`), so
//! server-side apply on custom resources can honour them. Strategic merge patch stays
//! unsupported for custom resources, as upstream, so no patch strategies are read.

use std::sync::Arc;

use serde_json::Value;

use super::patch_meta::{FieldMeta, Keys, ListType, PatchMeta, PatchStrategy};
use super::tables;

/// One object level of a schema: its declared properties, or the schema of its map values.
#[derive(Debug)]
pub(crate) struct SchemaNode {
    properties: Vec<(String, SchemaField)>,
    values: Option<SchemaField>,
}

/// The facts about one property of a [`SchemaNode`].
#[derive(Debug, Clone)]
struct SchemaField {
    list_type: ListType,
    atomic: bool,
    child: PatchMeta,
}

impl SchemaField {
    fn meta(&self) -> FieldMeta {
        FieldMeta {
            strategy: PatchStrategy::Default,
            merge_key: None,
            list_type: self.list_type.clone(),
            atomic: self.atomic,
            meta: self.child.clone(),
        }
    }
}

impl SchemaNode {
    pub(crate) fn field(&self, name: &str) -> FieldMeta {
        self.properties
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, f)| f)
            .or(self.values.as_ref())
            .map(SchemaField::meta)
            .unwrap_or_else(FieldMeta::deduced)
    }

    pub(crate) fn known_fields(&self) -> Vec<(String, FieldMeta)> {
        self.properties
            .iter()
            .map(|(n, f)| (n.clone(), f.meta()))
            .collect()
    }
}

impl PatchMeta {
    /// Patch metadata for objects validated by `schema`, an OpenAPI v3 object schema such as
    /// a CRD version's `schema.openAPIV3Schema`. `metadata` always gets the standard
    /// `ObjectMeta` facts (finalizers as a set, owner references keyed by uid), whatever the
    /// schema says about it, because the API server owns that part of every object.
    pub fn from_openapi_schema(schema: &Value) -> PatchMeta {
        let Some(mut node) = object_node(schema) else {
            return PatchMeta::of(&tables::CUSTOM_RESOURCE);
        };
        let metadata = SchemaField {
            list_type: ListType::Atomic,
            atomic: false,
            child: PatchMeta::of(&tables::OBJECT_META),
        };
        match node.properties.iter_mut().find(|(n, _)| n == "metadata") {
            Some((_, f)) => *f = metadata,
            None => node.properties.push(("metadata".into(), metadata)),
        }
        PatchMeta::schema(Arc::new(node))
    }
}

fn object_node(schema: &Value) -> Option<SchemaNode> {
    let props = schema.get("properties").and_then(Value::as_object);
    let values = schema
        .get("additionalProperties")
        .filter(|v| v.is_object())
        .map(field);
    if props.is_none() && values.is_none() {
        return None;
    }
    Some(SchemaNode {
        properties: props
            .map(|p| p.iter().map(|(k, v)| (k.clone(), field(v))).collect())
            .unwrap_or_default(),
        values,
    })
}

fn child_meta(schema: &Value) -> PatchMeta {
    object_node(schema)
        .map(|n| PatchMeta::schema(Arc::new(n)))
        .unwrap_or_else(PatchMeta::deduced)
}

fn field(schema: &Value) -> SchemaField {
    let ext = |k: &str| schema.get(k).and_then(Value::as_str);
    let is_array = ext("type") == Some("array") || schema.get("items").is_some();
    if is_array {
        let list_type = match ext("x-kubernetes-list-type") {
            Some("set") => ListType::Set,
            Some("map") => {
                let keys: Vec<String> = schema
                    .get("x-kubernetes-list-map-keys")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default();
                // A map list without keys cannot identify elements; treat it as atomic.
                if keys.is_empty() {
                    ListType::Atomic
                } else {
                    ListType::Map(Keys::owned(keys))
                }
            }
            _ => ListType::Atomic,
        };
        let child = schema
            .get("items")
            .map(child_meta)
            .unwrap_or_else(PatchMeta::deduced);
        return SchemaField {
            list_type,
            atomic: false,
            child,
        };
    }
    SchemaField {
        list_type: ListType::Atomic,
        atomic: ext("x-kubernetes-map-type") == Some("atomic"),
        child: child_meta(schema),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn crd_schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "spec": {"type": "object", "properties": {
                    "items": {"type": "array", "x-kubernetes-list-type": "map",
                              "x-kubernetes-list-map-keys": ["name", "zone"],
                              "items": {"type": "object", "properties": {
                                  "name": {"type": "string"},
                                  "tags": {"type": "array", "x-kubernetes-list-type": "set",
                                           "items": {"type": "string"}}
                              }}},
                    "selector": {"type": "object", "x-kubernetes-map-type": "atomic"},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "args": {"type": "array", "items": {"type": "string"}}
                }},
                "status": {"type": "object", "properties": {
                    "conditions": {"type": "array", "x-kubernetes-list-type": "map",
                                   "x-kubernetes-list-map-keys": ["type"],
                                   "items": {"type": "object"}}
                }}
            }
        })
    }

    #[test]
    fn reads_list_and_map_types() {
        let meta = PatchMeta::from_openapi_schema(&crd_schema());
        let spec = meta.field("spec").meta;
        let items = spec.field("items");
        assert_eq!(
            items.list_type,
            ListType::Map(Keys::owned(vec!["name".into(), "zone".into()]))
        );
        assert_eq!(items.meta.field("tags").list_type, ListType::Set);
        assert!(spec.field("selector").atomic);
        assert_eq!(spec.field("args").list_type, ListType::Atomic);
        let labels = spec.field("labels").meta;
        assert!(labels.is_known());
        assert!(!labels.field("any-key").meta.is_known());
        let conds = meta.field("status").meta.field("conditions");
        assert_eq!(
            conds.list_type.clone(),
            ListType::Map(Keys::fixed(&["type"]))
        );
        let fin = meta.field("metadata").meta.field("finalizers");
        assert_eq!(fin.list_type, ListType::Set);
        assert_eq!(spec.field("unknown").list_type, ListType::Atomic);
    }

    #[test]
    fn apply_on_custom_resource_uses_schema() {
        let meta = PatchMeta::from_openapi_schema(&crd_schema());
        let a = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        let live = crate::patch::apply_at(
            None,
            &a,
            "ctrl-a",
            false,
            meta.clone(),
            "2025-01-01T00:00:00Z",
        )
        .unwrap();
        let b = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
            "status": {"conditions": [{"type": "Synced", "status": "False"}]}});
        let out = crate::patch::apply_at(
            Some(&live),
            &b,
            "ctrl-b",
            false,
            meta,
            "2025-01-01T00:00:00Z",
        )
        .unwrap();
        // Keyed by type, so the two controllers' conditions coexist.
        assert_eq!(out["status"]["conditions"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn schemaless_resource_still_knows_metadata() {
        let meta = PatchMeta::from_openapi_schema(&json!({"type": "object",
            "x-kubernetes-preserve-unknown-fields": true}));
        assert_eq!(
            meta.field("metadata")
                .meta
                .field("ownerReferences")
                .merge_key,
            Some("uid")
        );
        assert_eq!(meta.field("spec").list_type, ListType::Atomic);
    }
}
