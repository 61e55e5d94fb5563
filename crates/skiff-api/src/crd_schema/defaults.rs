//! Defaulting from a structural schema's `default` values (upstream's
//! `structural/defaulting`).

use serde_json::Value;

use super::{additional, items, nullable, properties, Additional};

/// The `default` of a schema node; an explicit `default: null` is no default, as upstream's
/// `Default.Object == nil`.
fn default_of(schema: &Value) -> Option<&Value> {
    schema.get("default").filter(|d| !d.is_null())
}

/// Whether a value must be replaced by its schema's default: upstream defaults a `null`
/// only when the field is not nullable.
fn replace_null(v: &Value, s: &Value) -> bool {
    v.is_null() && !nullable(s)
}

/// Fills in `default` values of `schema` in `obj`, recursively.
///
/// A declared property that is absent, or `null` while not `nullable`, gets a copy of its
/// `default`; map values (`additionalProperties`) and array items that are non-nullable
/// `null`s get their schema's default. Defaulting then recurses into every value,
/// including the defaults just inserted, so defaults nested inside a defaulted object are
/// filled too. Schemaless places (no `properties`, `additionalProperties` or `items`) are
/// left alone.
pub fn apply_defaults(obj: &mut Value, schema: &Value) {
    match obj {
        Value::Object(m) => {
            if let Some(props) = properties(schema) {
                for (k, p) in props {
                    let Some(d) = default_of(p) else {
                        continue;
                    };
                    match m.get_mut(k) {
                        None => {
                            m.insert(k.clone(), d.clone());
                        }
                        Some(v) if replace_null(v, p) => *v = d.clone(),
                        Some(_) => {}
                    }
                }
            }
            let additional = match additional(schema) {
                Additional::Schema(a) => Some(a),
                _ => None,
            };
            for (k, v) in m.iter_mut() {
                if let Some(p) = properties(schema).and_then(|p| p.get(k)) {
                    apply_defaults(v, p);
                } else if let Some(a) = additional {
                    default_element(v, a);
                }
            }
        }
        Value::Array(a) => {
            if let Some(item_schema) = items(schema) {
                for v in a {
                    default_element(v, item_schema);
                }
            }
        }
        _ => {}
    }
}

/// Defaults a map value or array item: a non-nullable `null` becomes the default, then the
/// value is defaulted inside.
fn default_element(v: &mut Value, s: &Value) {
    if replace_null(v, s) {
        if let Some(d) = default_of(s) {
            *v = d.clone();
        }
    }
    apply_defaults(v, s);
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
                    "default": {},
                    "properties": {
                        "replicas": {"type": "integer", "default": 1},
                        "image": {"type": "string"},
                        "mode": {"type": "string", "nullable": true, "default": "auto"},
                        "policy": {
                            "type": "object",
                            "default": {"kind": "Always"},
                            "properties": {
                                "kind": {"type": "string"},
                                "backoff": {"type": "integer", "default": 10}
                            }
                        },
                        "ports": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "default": {"port": 80},
                                "properties": {
                                    "port": {"type": "integer"},
                                    "protocol": {"type": "string", "default": "TCP"}
                                }
                            }
                        },
                        "limits": {
                            "type": "object",
                            "additionalProperties": {"type": "string", "default": "1"}
                        }
                    }
                }
            }
        })
    }

    #[test]
    fn fills_absent_fields_recursively_including_inside_defaults() {
        let mut obj = json!({"apiVersion": "v1", "kind": "K"});
        apply_defaults(&mut obj, &schema());
        assert_eq!(
            obj["spec"],
            json!({
                "replicas": 1,
                "mode": "auto",
                "policy": {"kind": "Always", "backoff": 10}
            })
        );
    }

    #[test]
    fn keeps_present_values_and_nullable_nulls() {
        let mut obj = json!({"spec": {"replicas": 3, "mode": null, "policy": {"kind": "Never", "backoff": 2}}});
        apply_defaults(&mut obj, &schema());
        assert_eq!(obj["spec"]["replicas"], 3);
        assert_eq!(obj["spec"]["mode"], Value::Null);
        assert_eq!(
            obj["spec"]["policy"],
            json!({"kind": "Never", "backoff": 2})
        );
    }

    #[test]
    fn replaces_non_nullable_nulls() {
        let mut obj = json!({"spec": {"replicas": null, "image": null}});
        apply_defaults(&mut obj, &schema());
        assert_eq!(obj["spec"]["replicas"], 1);
        // No default: the null stays (pruning, which runs first, removes it).
        assert_eq!(obj["spec"]["image"], Value::Null);
    }

    #[test]
    fn defaults_array_items_and_map_values() {
        let mut obj = json!({"spec": {
            "ports": [{"port": 443}, null, {"port": 53, "protocol": "UDP"}],
            "limits": {"cpu": null, "memory": "2Gi"}
        }});
        apply_defaults(&mut obj, &schema());
        assert_eq!(
            obj["spec"]["ports"],
            json!([
                {"port": 443, "protocol": "TCP"},
                {"port": 80, "protocol": "TCP"},
                {"port": 53, "protocol": "UDP"}
            ])
        );
        assert_eq!(obj["spec"]["limits"], json!({"cpu": "1", "memory": "2Gi"}));
    }

    #[test]
    fn wrong_types_are_left_for_validation() {
        let mut obj = json!({"spec": "oops"});
        apply_defaults(&mut obj, &schema());
        assert_eq!(obj["spec"], "oops");
    }
}
