//! Structural schemas of built-in kinds, for finding the fields a body sets that the kind
//! does not have (upstream's strict decoding: `unknown field "spec.foo"`).
//!
//! The kind's `schemars` schema is generated once and its `$ref`s are inlined, so the CRD
//! pruner ([`crate::crd_schema::prune_unknown_fields`]) can walk it. Recursive types (the
//! CRD `JSONSchemaProps`) and free-form values (`RawExtension`, `JSON`, unions) become
//! `x-kubernetes-preserve-unknown-fields`, so nothing legitimate is ever reported.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{json, Map, Value};

use super::builtin;
use super::schema::{generator, Flavor};

const PRESERVE: &str = "x-kubernetes-preserve-unknown-fields";

type Cache = Mutex<HashMap<(String, String, String), Option<Arc<Value>>>>;

/// The inlined schema of built-in `group/version/kind`, or `None` for kinds skiff has no
/// schema for.
pub fn builtin_structural_schema(group: &str, version: &str, kind: &str) -> Option<Arc<Value>> {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let key = (group.to_string(), version.to_string(), kind.to_string());
    if let Some(hit) = cache.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
        return hit.clone();
    }
    let built = build(group, version, kind).map(Arc::new);
    cache.lock().unwrap_or_else(|p| p.into_inner()).insert(key, built.clone());
    built
}

fn build(group: &str, version: &str, kind: &str) -> Option<Value> {
    let b = builtin::find(group, version, kind)?;
    let mut gen = generator(Flavor::V3);
    let root = serde_json::to_value((b.add)(&mut gen)).ok()?;
    let defs = gen.take_definitions(false);
    let mut stack = Vec::new();
    Some(inline(&root, &defs, &mut stack))
}

fn preserve() -> Value {
    json!({ PRESERVE: true })
}

fn inline(s: &Value, defs: &Map<String, Value>, stack: &mut Vec<String>) -> Value {
    let Value::Object(m) = s else { return preserve() };
    if let Some(r) = m.get("$ref").and_then(Value::as_str) {
        let name = r.rsplit('/').next().unwrap_or(r).to_string();
        if stack.contains(&name) {
            return preserve();
        }
        let Some(def) = defs.get(&name) else { return preserve() };
        stack.push(name);
        let out = inline(def, defs, stack);
        stack.pop();
        return out;
    }
    // `allOf: [one]` wraps a reference that carries its own description.
    if let Some([only]) = m.get("allOf").and_then(Value::as_array).map(Vec::as_slice) {
        return inline(only, defs, stack);
    }
    if m.contains_key("oneOf") || m.contains_key("anyOf") || m.contains_key("allOf") {
        return preserve();
    }
    let mut out = Map::new();
    for key in ["type", "format"] {
        if let Some(v) = m.get(key) {
            out.insert(key.into(), v.clone());
        }
    }
    if let Some(Value::Object(props)) = m.get("properties") {
        let inlined: Map<String, Value> = props.iter().map(|(k, v)| (k.clone(), inline(v, defs, stack))).collect();
        out.insert("properties".into(), Value::Object(inlined));
    }
    match m.get("additionalProperties") {
        Some(a @ Value::Object(am)) if !am.is_empty() => {
            out.insert("additionalProperties".into(), inline(a, defs, stack));
        }
        Some(Value::Object(_)) | Some(Value::Bool(true)) => {
            out.insert("additionalProperties".into(), preserve());
        }
        _ => {}
    }
    if let Some(items) = m.get("items") {
        out.insert("items".into(), inline(items, defs, stack));
    }
    let scalar = matches!(m.get("type").and_then(Value::as_str), Some("string" | "integer" | "number" | "boolean"));
    let shaped = out.contains_key("properties") || out.contains_key("additionalProperties") || out.contains_key("items");
    if !scalar && !shaped {
        // Free-form (no declared shape): anything goes, as upstream's typed decoding allows.
        out.insert(PRESERVE.into(), Value::Bool(true));
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd_schema::prune_unknown_fields;

    fn unknown(group: &str, version: &str, kind: &str, mut obj: Value) -> Vec<String> {
        let s = builtin_structural_schema(group, version, kind).expect("schema");
        prune_unknown_fields(&mut obj, &s)
    }

    #[test]
    fn finds_unknown_fields_of_built_in_kinds_with_upstream_paths() {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "labels": {"a": "b"}}, "data": {"k": "v"}, "junk": 1});
        assert_eq!(unknown("", "v1", "ConfigMap", cm), ["junk"]);
        let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"a": "b"}},
              "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [
                {"name": "c", "image": "i", "junk": 1, "resources": {"limits": {"cpu": "1"}}, "ports": [{"containerPort": 80}]}]}}},
            "status": {"replicas": 0}});
        assert_eq!(unknown("apps", "v1", "Deployment", d), ["spec.template.spec.containers[0].junk"]);
    }

    #[test]
    fn free_form_and_recursive_values_are_kept() {
        // ControllerRevision.data is a RawExtension: anything.
        let cr = json!({"apiVersion": "apps/v1", "kind": "ControllerRevision", "metadata": {"name": "r"}, "revision": 1, "data": {"spec": {"any": {"thing": 1}}}});
        assert!(unknown("apps", "v1", "ControllerRevision", cr).is_empty());
        // A CRD's schema nests JSONSchemaProps in itself.
        let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": "ws.x.io"},
            "spec": {"group": "x.io", "scope": "Namespaced", "names": {"plural": "ws", "kind": "W"},
              "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {"type": "object",
                "properties": {"spec": {"type": "object", "properties": {"size": {"type": "integer"}}, "x-kubernetes-int-or-string": true}}}}}]}});
        assert!(unknown("apiextensions.k8s.io", "v1", "CustomResourceDefinition", crd).is_empty());
        // IntOrString and Quantity values of either JSON type.
        let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"ports": [{"port": 80, "targetPort": "http"}]}});
        assert!(unknown("", "v1", "Service", svc).is_empty());
    }
}
