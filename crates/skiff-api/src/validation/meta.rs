//! `metadata` validation (upstream `ValidateObjectMeta` / `ValidateObjectMetaUpdate`) and
//! the shared checks for label maps and `metav1.LabelSelector` objects.

use serde_json::Value;

use super::names::{
    is_dns1123_label, is_qualified_name, is_valid_label_value, name_is_dns_subdomain, NameValidator,
};
use super::{
    child, get_arr, get_i64, get_obj, get_str, index, push_msgs, str_or_empty, FieldError,
};

/// Upstream's total annotation size limit (keys plus values).
pub const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

/// Owner kinds that may never own anything.
const BANNED_OWNERS: &[(&str, &str)] = &[("", "Event"), ("events.k8s.io", "Event")];

/// Validates `metadata` of a new object (`ValidateObjectMetaAccessor`): name or
/// generateName, namespace presence by scope, generation, labels, annotations, owner
/// references and finalizers.
pub fn validate_object_meta(
    meta: &Value,
    namespaced: bool,
    name_fn: NameValidator,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let generate_name = str_or_empty(meta, "generateName");
    if !generate_name.is_empty() {
        push_msgs(
            &mut errs,
            "metadata.generateName",
            generate_name,
            name_fn(generate_name, true),
        );
    }
    let name = str_or_empty(meta, "name");
    if name.is_empty() {
        errs.push(FieldError::required(
            "metadata.name",
            "name or generateName is required",
        ));
    } else {
        push_msgs(&mut errs, "metadata.name", name, name_fn(name, false));
    }
    let namespace = str_or_empty(meta, "namespace");
    if namespaced {
        if namespace.is_empty() {
            errs.push(FieldError::required("metadata.namespace", ""));
        } else {
            push_msgs(
                &mut errs,
                "metadata.namespace",
                namespace,
                is_dns1123_label(namespace),
            );
        }
    } else if !namespace.is_empty() {
        errs.push(FieldError::forbidden(
            "metadata.namespace",
            "not allowed on this type",
        ));
    }
    errs.extend(common_meta(meta));
    errs
}

/// Metadata checks for a kind whose scope is unknown here: the namespace is only checked for
/// format.
pub(crate) fn validate_object_meta_any_scope(meta: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let generate_name = str_or_empty(meta, "generateName");
    if !generate_name.is_empty() {
        push_msgs(
            &mut errs,
            "metadata.generateName",
            generate_name,
            name_is_dns_subdomain(generate_name, true),
        );
    }
    let name = str_or_empty(meta, "name");
    if name.is_empty() {
        errs.push(FieldError::required(
            "metadata.name",
            "name or generateName is required",
        ));
    } else {
        push_msgs(
            &mut errs,
            "metadata.name",
            name,
            name_is_dns_subdomain(name, false),
        );
    }
    let namespace = str_or_empty(meta, "namespace");
    if !namespace.is_empty() {
        push_msgs(
            &mut errs,
            "metadata.namespace",
            namespace,
            is_dns1123_label(namespace),
        );
    }
    errs.extend(common_meta(meta));
    errs
}

fn common_meta(meta: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(g) = get_i64(meta, "generation").filter(|g| *g < 0) {
        errs.push(FieldError::invalid(
            "metadata.generation",
            g,
            "must be greater than or equal to 0",
        ));
    }
    errs.extend(validate_labels(meta.get("labels"), "metadata.labels"));
    errs.extend(validate_annotations(
        meta.get("annotations"),
        "metadata.annotations",
    ));
    errs.extend(validate_owner_references(
        get_arr(meta, "ownerReferences"),
        "metadata.ownerReferences",
    ));
    for f in get_arr(meta, "finalizers") {
        let f = f.as_str().unwrap_or_default();
        push_msgs(&mut errs, "metadata.finalizers", f, is_qualified_name(f));
    }
    errs
}

/// Validates a label map: keys are qualified names, values label values. Errors point at
/// the map itself (`metadata.labels`), as upstream's do.
pub fn validate_labels(labels: Option<&Value>, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(map) = labels.and_then(Value::as_object) else {
        return errs;
    };
    for (k, v) in map {
        push_msgs(&mut errs, path, k, is_qualified_name(k));
        let v = v.as_str().unwrap_or_default();
        push_msgs(&mut errs, path, v, is_valid_label_value(v));
    }
    errs
}

/// Annotation keys are qualified names (case-insensitive); keys and values together may not
/// exceed 256 KiB.
pub(crate) fn validate_annotations(annotations: Option<&Value>, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(map) = annotations.and_then(Value::as_object) else {
        return errs;
    };
    let mut total = 0;
    for (k, v) in map {
        push_msgs(&mut errs, path, k, is_qualified_name(&k.to_lowercase()));
        total += k.len() + v.as_str().map(str::len).unwrap_or_default();
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        errs.push(FieldError::too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT));
    }
    errs
}

fn validate_owner_references(refs: &[Value], path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut first_controller: Option<String> = None;
    for r in refs {
        let api_version = str_or_empty(r, "apiVersion");
        let (group, version) = match api_version.rsplit_once('/') {
            Some((g, v)) => (g, v),
            None => ("", api_version),
        };
        // Upstream reports these against the list path, not an indexed one.
        if version.is_empty() {
            errs.push(FieldError::invalid(
                child(path, "apiVersion"),
                api_version,
                "version must not be empty",
            ));
        }
        let kind = str_or_empty(r, "kind");
        if kind.is_empty() {
            errs.push(FieldError::invalid(
                child(path, "kind"),
                kind,
                "must not be empty",
            ));
        }
        let name = str_or_empty(r, "name");
        if name.is_empty() {
            errs.push(FieldError::invalid(
                child(path, "name"),
                name,
                "must not be empty",
            ));
        }
        let uid = str_or_empty(r, "uid");
        if uid.is_empty() {
            errs.push(FieldError::invalid(
                child(path, "uid"),
                uid,
                "must not be empty",
            ));
        }
        if BANNED_OWNERS.contains(&(group, kind)) {
            let gvk = format!("{group}/{version}, Kind={kind}");
            errs.push(FieldError::invalid(
                path,
                r,
                format!("{gvk} is disallowed from being an owner"),
            ));
        }
        if r.get("controller").and_then(Value::as_bool) == Some(true) {
            let current = format!("{kind}/{name}");
            match &first_controller {
                Some(first) => errs.push(FieldError::invalid(
                    path,
                    Value::Array(refs.to_vec()),
                    format!(
                        "Only one reference can have Controller set to true. Found \"true\" in references for {first} and {current}"
                    ),
                )),
                None => first_controller = Some(current),
            }
        }
    }
    errs
}

/// Validates `metadata` changes on update (`ValidateObjectMetaUpdate`): identity fields are
/// immutable, generation may not go down, and no finalizers may be added while deleting.
/// Fields upstream silently carries over from the stored object (`uid` when omitted,
/// `creationTimestamp`, a set `deletionTimestamp`) are not reported; the caller should copy
/// them into the stored object as upstream's `BeforeUpdate` does.
pub fn validate_object_meta_update(old: &Value, new: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if old.get("deletionTimestamp").is_some_and(|v| !v.is_null()) {
        let old_f: Vec<&str> = get_arr(old, "finalizers")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let mut extra: Vec<&str> = get_arr(new, "finalizers")
            .iter()
            .filter_map(Value::as_str)
            .filter(|f| !old_f.contains(f))
            .collect();
        extra.sort();
        extra.dedup();
        if !extra.is_empty() {
            let quoted: Vec<String> = extra.iter().map(|f| crate::selector::go_quote(f)).collect();
            errs.push(FieldError::forbidden(
                "metadata.finalizers",
                format!(
                    "no new finalizers can be added if the object is being deleted, found new finalizers []string{{{}}}",
                    quoted.join(", ")
                ),
            ));
        }
    }
    let (og, ng) = (
        get_i64(old, "generation").unwrap_or(0),
        get_i64(new, "generation").unwrap_or(0),
    );
    if ng < og {
        errs.push(FieldError::invalid(
            "metadata.generation",
            ng,
            "must not be decremented",
        ));
    }
    for field in [
        "name",
        "namespace",
        "uid",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
    ] {
        let o = old.get(field).unwrap_or(&Value::Null);
        let n = new.get(field).unwrap_or(&Value::Null);
        // Upstream's BeforeUpdate copies these from the stored object when the request
        // omits them (and always for a set deletionTimestamp), so only a real change counts.
        let carried_over = match field {
            "uid" | "deletionGracePeriodSeconds" => n.is_null(),
            "deletionTimestamp" => !o.is_null(),
            _ => false,
        };
        if o != n && !carried_over {
            errs.push(FieldError::invalid(
                child("metadata", field),
                n,
                "field is immutable",
            ));
        }
    }
    errs
}

/// Validates a `metav1.LabelSelector` object (`ValidateLabelSelector`), strict about label
/// values.
pub fn validate_label_selector(sel: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if sel.is_null() {
        return errs;
    }
    errs.extend(validate_labels(
        sel.get("matchLabels"),
        &child(path, "matchLabels"),
    ));
    for (i, expr) in get_arr(sel, "matchExpressions").iter().enumerate() {
        let p = index(&child(path, "matchExpressions"), i);
        let values = get_arr(expr, "values");
        let op = str_or_empty(expr, "operator");
        match op {
            "In" | "NotIn" => {
                if values.is_empty() {
                    errs.push(FieldError::required(
                        child(&p, "values"),
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    ));
                }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    errs.push(FieldError::forbidden(
                        child(&p, "values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    ));
                }
            }
            _ => errs.push(FieldError::invalid(
                child(&p, "operator"),
                op,
                "not a valid selector operator",
            )),
        }
        let k = str_or_empty(expr, "key");
        push_msgs(&mut errs, &child(&p, "key"), k, is_qualified_name(k));
        for (j, v) in values.iter().enumerate() {
            let v = v.as_str().unwrap_or_default();
            push_msgs(
                &mut errs,
                &index(&child(&p, "values"), j),
                v,
                is_valid_label_value(v),
            );
        }
    }
    errs
}

/// Whether a label selector object has no requirements (`{}`), which workloads reject.
pub(crate) fn selector_is_empty(sel: &Value) -> bool {
    get_obj(sel, "matchLabels").is_none_or(|m| m.is_empty())
        && get_arr(sel, "matchExpressions").is_empty()
}

/// The `metadata` of a nested object (pod templates), or null.
pub(crate) fn meta_of(v: &Value) -> &Value {
    v.get("metadata").unwrap_or(&Value::Null)
}

/// Template metadata: only labels and annotations are checked (`ValidateTemplateObjectMeta`).
pub(crate) fn validate_template_meta(meta: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = validate_labels(meta.get("labels"), &child(path, "labels"));
    errs.extend(validate_annotations(
        meta.get("annotations"),
        &child(path, "annotations"),
    ));
    errs
}

/// A string field that must be a DNS subdomain when set.
pub(crate) fn optional_subdomain(errs: &mut Vec<FieldError>, v: &Value, k: &str, path: &str) {
    if let Some(s) = get_str(v, k).filter(|s| !s.is_empty()) {
        push_msgs(
            errs,
            &child(path, k),
            s,
            super::names::is_dns1123_subdomain(s),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(errs: &[FieldError]) -> Vec<String> {
        errs.iter()
            .map(|e| format!("{}:{}", e.field, e.reason))
            .collect()
    }

    #[test]
    fn name_namespace_scope() {
        let ok = json!({"name": "web", "namespace": "default"});
        assert!(validate_object_meta(&ok, true, name_is_dns_subdomain).is_empty());
        let errs = validate_object_meta(&json!({"name": "web"}), true, name_is_dns_subdomain);
        assert_eq!(fields(&errs), ["metadata.namespace:FieldValueRequired"]);
        let errs = validate_object_meta(&ok, false, name_is_dns_subdomain);
        assert_eq!(
            errs[0].to_string(),
            "metadata.namespace: Forbidden: not allowed on this type"
        );
        let errs = validate_object_meta(
            &json!({"generateName": "web-"}),
            false,
            name_is_dns_subdomain,
        );
        assert_eq!(
            errs[0].to_string(),
            "metadata.name: Required value: name or generateName is required"
        );
        let errs = validate_object_meta(&json!({"name": "Web"}), false, name_is_dns_subdomain);
        assert!(errs[0]
            .to_string()
            .starts_with("metadata.name: Invalid value: \"Web\": a lowercase RFC 1123 subdomain"));
    }

    #[test]
    fn labels_annotations_owners() {
        let meta = json!({
            "name": "a",
            "labels": {"good": "v", "bad key": "v", "k": "bad value"},
            "annotations": {"Example.COM/Key": "x", "a": "x".repeat(TOTAL_ANNOTATION_SIZE_LIMIT)},
            "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "r", "uid": "1", "controller": true},
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "s", "uid": "2", "controller": true},
                {"apiVersion": "", "kind": "", "name": "", "uid": ""}
            ]
        });
        let errs = validate_object_meta(&meta, false, name_is_dns_subdomain);
        let f = fields(&errs);
        assert_eq!(
            f.iter()
                .filter(|x| *x == "metadata.labels:FieldValueInvalid")
                .count(),
            2
        );
        assert!(f.contains(&"metadata.annotations:FieldValueTooLong".to_string()));
        assert!(errs.iter().any(|e| e
            .message
            .starts_with("Only one reference can have Controller set to true")));
        assert!(f.contains(&"metadata.ownerReferences.uid:FieldValueInvalid".to_string()));
        assert!(f.contains(&"metadata.ownerReferences.apiVersion:FieldValueInvalid".to_string()));
    }

    #[test]
    fn meta_update() {
        let old = json!({"name": "a", "uid": "1", "generation": 3, "deletionTimestamp": "x", "finalizers": ["a/b"]});
        let new = json!({"name": "b", "uid": "1", "generation": 2, "deletionTimestamp": "x", "finalizers": ["a/b", "c/d"]});
        let errs = validate_object_meta_update(&old, &new);
        let f = fields(&errs);
        assert!(validate_object_meta_update(
            &json!({"name": "a", "uid": "1", "creationTimestamp": "t"}),
            &json!({"name": "a"})
        )
        .is_empty());
        assert_eq!(
            fields(&validate_object_meta_update(
                &json!({"name": "a", "uid": "1"}),
                &json!({"name": "a", "uid": "2"})
            )),
            ["metadata.uid:FieldValueInvalid"]
        );
        assert!(f.contains(&"metadata.name:FieldValueInvalid".to_string()));
        assert!(f.contains(&"metadata.generation:FieldValueInvalid".to_string()));
        assert!(errs
            .iter()
            .any(|e| e.message.contains("found new finalizers []string{\"c/d\"}")));
    }

    #[test]
    fn label_selector_objects() {
        let sel = json!({"matchExpressions": [
            {"key": "a", "operator": "In"},
            {"key": "b", "operator": "Exists", "values": ["x"]},
            {"key": "c", "operator": "Bogus"}
        ]});
        let f = fields(&validate_label_selector(&sel, "spec.selector"));
        assert_eq!(
            f,
            [
                "spec.selector.matchExpressions[0].values:FieldValueRequired",
                "spec.selector.matchExpressions[1].values:FieldValueForbidden",
                "spec.selector.matchExpressions[2].operator:FieldValueInvalid"
            ]
        );
        assert!(selector_is_empty(&json!({})));
        assert!(!selector_is_empty(&json!({"matchLabels": {"a": "b"}})));
    }
}
