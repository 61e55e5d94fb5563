//! Basic validation of a CustomResourceDefinition (`apiextensions.k8s.io/v1`) before it is
//! stored: names, group, scope, versions and the shape of each version's schema, with
//! upstream's field paths and wording.

use serde_json::Value;

use super::validate::compile_pattern;
use super::{go_value, items, properties, FieldError};
use crate::selector::go_quote;
use crate::validation::names::{is_dns1035_label, is_dns1123_subdomain};
use crate::validation::Reason;

fn required(field: &str, message: &str) -> FieldError {
    FieldError {
        field: field.to_string(),
        reason: Reason::Required,
        message: message.to_string(),
        value: None,
    }
}

fn invalid(field: &str, value: String, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.to_string(),
        reason: Reason::Invalid,
        message: message.into(),
        value: Some(value),
    }
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    path.iter()
        .try_fold(v, |v, k| v.get(*k))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Validates a CustomResourceDefinition on create or update.
///
/// Expects upstream's defaults applied (`names.singular` and `names.listKind` may be
/// absent: they default from the kind). Checks: `spec.group` (a DNS subdomain with a dot),
/// `spec.names` (plural/singular DNS-1035 labels, kind/listKind mixed-case labels, kind
/// different from listKind), `metadata.name` equal to `<plural>.<group>`, `spec.scope`
/// (`Namespaced` or `Cluster`), `spec.versions` (at least one, unique valid names, exactly
/// one storage version) and per version a structural root schema (present, `type: object`,
/// types given for properties and items, compilable `pattern`s).
pub fn validate_crd(crd: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = crd.get("spec").unwrap_or(&Value::Null);
    let group = str_at(spec, &["group"]);
    let plural = str_at(spec, &["names", "plural"]);

    let name = str_at(crd, &["metadata", "name"]);
    if name != format!("{plural}.{group}") {
        errs.push(invalid(
            "metadata.name",
            go_quote(name),
            r#"must be spec.names.plural+"."+spec.group"#,
        ));
    }

    if group.is_empty() {
        errs.push(required("spec.group", ""));
    } else {
        let msgs = is_dns1123_subdomain(group);
        if !msgs.is_empty() {
            errs.push(invalid("spec.group", go_quote(group), msgs.join(",")));
        } else if !group.contains('.') {
            errs.push(invalid(
                "spec.group",
                go_quote(group),
                "should be a domain with at least one dot",
            ));
        }
    }

    validate_names(spec, &mut errs);

    match spec
        .get("scope")
        .and_then(Value::as_str)
        .unwrap_or_default()
    {
        "" => errs.push(required("spec.scope", "")),
        "Namespaced" | "Cluster" => {}
        other => errs.push(FieldError {
            field: "spec.scope".into(),
            reason: Reason::NotSupported,
            message: r#"supported values: "Cluster", "Namespaced""#.into(),
            value: Some(go_quote(other)),
        }),
    }

    validate_versions(spec, &mut errs);
    errs
}

fn validate_names(spec: &Value, errs: &mut Vec<FieldError>) {
    let plural = str_at(spec, &["names", "plural"]);
    if plural.is_empty() {
        errs.push(required("spec.names.plural", ""));
    } else {
        label(errs, "spec.names.plural", plural, false);
    }
    let singular = str_at(spec, &["names", "singular"]);
    if !singular.is_empty() {
        label(errs, "spec.names.singular", singular, false);
    }
    let kind = str_at(spec, &["names", "kind"]);
    if kind.is_empty() {
        errs.push(required("spec.names.kind", ""));
    } else {
        label(errs, "spec.names.kind", kind, true);
    }
    let list_kind = str_at(spec, &["names", "listKind"]);
    if !list_kind.is_empty() {
        label(errs, "spec.names.listKind", list_kind, true);
        if list_kind == kind {
            errs.push(invalid(
                "spec.names.listKind",
                go_quote(list_kind),
                "kind and listKind cannot be the same",
            ));
        }
    }
    if let Some(short) = spec.pointer("/names/shortNames").and_then(Value::as_array) {
        for (i, s) in short.iter().enumerate() {
            let s = s.as_str().unwrap_or_default();
            let msgs = is_dns1035_label(s);
            if !msgs.is_empty() {
                errs.push(invalid(
                    &format!("spec.names.shortNames[{i}]"),
                    go_quote(s),
                    msgs.join(","),
                ));
            }
        }
    }
}

/// DNS-1035 label check; kinds may be mixed case (checked lowercased).
fn label(errs: &mut Vec<FieldError>, field: &str, value: &str, mixed_case: bool) {
    let checked = if mixed_case {
        value.to_lowercase()
    } else {
        value.to_string()
    };
    let msgs = is_dns1035_label(&checked);
    if msgs.is_empty() {
        return;
    }
    let message = if mixed_case {
        format!(
            "may have mixed case, but should otherwise match: {}",
            msgs.join(",")
        )
    } else {
        msgs.join(",")
    };
    errs.push(invalid(field, go_quote(value), message));
}

fn validate_versions(spec: &Value, errs: &mut Vec<FieldError>) {
    let versions = spec
        .get("versions")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if versions.is_empty() {
        errs.push(required(
            "spec.versions",
            "must have exactly one version marked as storage version",
        ));
        return;
    }
    let rendered = || go_value(spec.get("versions").unwrap_or(&Value::Null));
    let mut names: Vec<&str> = Vec::new();
    let mut unique = true;
    let mut storage = 0;
    for (i, v) in versions.iter().enumerate() {
        let path = format!("spec.versions[{i}]");
        let name = str_at(v, &["name"]);
        if names.contains(&name) {
            unique = false;
        }
        names.push(name);
        if name.is_empty() {
            errs.push(required(&format!("{path}.name"), ""));
        } else {
            let msgs = is_dns1035_label(name);
            if !msgs.is_empty() {
                errs.push(invalid(
                    &format!("{path}.name"),
                    go_quote(name),
                    msgs.join(","),
                ));
            }
        }
        for key in ["served", "storage"] {
            match v.get(key) {
                None | Some(Value::Bool(_)) => {}
                Some(other) => errs.push(invalid(
                    &format!("{path}.{key}"),
                    go_value(other),
                    "must be a boolean",
                )),
            }
        }
        if v.get("storage").and_then(Value::as_bool) == Some(true) {
            storage += 1;
        }
        validate_version_schema(v, &path, errs);
    }
    if !unique {
        errs.push(invalid(
            "spec.versions",
            rendered(),
            "must contain unique version names",
        ));
    }
    if storage != 1 {
        errs.push(invalid(
            "spec.versions",
            rendered(),
            "must have exactly one version marked as storage version",
        ));
    }
}

fn validate_version_schema(version: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let root_path = format!("{path}.schema.openAPIV3Schema");
    let Some(root) = version
        .pointer("/schema/openAPIV3Schema")
        .filter(|s| s.is_object())
    else {
        errs.push(required(&root_path, "schemas are required"));
        return;
    };
    match root.get("type").and_then(Value::as_str).unwrap_or_default() {
        "object" => {}
        "" if root.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) => {}
        "" => errs.push(required(
            &format!("{root_path}.type"),
            "must not be empty at the root",
        )),
        other => errs.push(invalid(
            &format!("{root_path}.type"),
            go_quote(other),
            "must be object at the root",
        )),
    }
    check_structure(root, &root_path, errs);
}

/// Structural-schema essentials: every property and item schema says its type (unless it
/// preserves unknown fields or is int-or-string), and patterns compile.
fn check_structure(s: &Value, path: &str, errs: &mut Vec<FieldError>) {
    if let Some(p) = s.get("pattern").and_then(Value::as_str) {
        if let Err(e) = compile_pattern(p) {
            errs.push(invalid(
                &format!("{path}.pattern"),
                go_quote(p),
                format!("must be a valid regular expression, but isn't: {e}"),
            ));
        }
    }
    if let Some(props) = properties(s) {
        for (k, p) in props {
            let child = format!("{path}.properties[{k}]");
            if lacks_type(p) {
                errs.push(required(
                    &format!("{child}.type"),
                    "must not be empty for specified object fields",
                ));
            }
            check_structure(p, &child, errs);
        }
    }
    if let Some(a) = s.get("additionalProperties").filter(|a| a.is_object()) {
        let child = format!("{path}.additionalProperties");
        if lacks_type(a) {
            errs.push(required(
                &format!("{child}.type"),
                "must not be empty for specified object fields",
            ));
        }
        check_structure(a, &child, errs);
    }
    if let Some(it) = items(s) {
        let child = format!("{path}.items");
        if lacks_type(it) {
            errs.push(required(
                &format!("{child}.type"),
                "must not be empty for specified array items",
            ));
        }
        check_structure(it, &child, errs);
    }
}

fn lacks_type(s: &Value) -> bool {
    let typed = s
        .get("type")
        .and_then(Value::as_str)
        .is_some_and(|t| !t.is_empty());
    let exempt = s.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true))
        || s.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
    !typed && !exempt
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn crd() -> Value {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "crontabs.stable.example.com"},
            "spec": {
                "group": "stable.example.com",
                "scope": "Namespaced",
                "names": {"plural": "crontabs", "singular": "crontab", "kind": "CronTab", "listKind": "CronTabList", "shortNames": ["ct"]},
                "versions": [
                    {"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
                        "type": "object",
                        "properties": {"spec": {"type": "object", "properties": {
                            "cronSpec": {"type": "string", "pattern": "^(\\d+|\\*)(/\\d+)?(\\s+(\\d+|\\*)(/\\d+)?){4}$"},
                            "port": {"x-kubernetes-int-or-string": true},
                            "raw": {"x-kubernetes-preserve-unknown-fields": true}
                        }}}
                    }}},
                    {"name": "v1beta1", "served": false, "storage": false, "schema": {"openAPIV3Schema": {"type": "object"}}}
                ]
            }
        })
    }

    fn msgs(v: &Value) -> Vec<String> {
        validate_crd(v).iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn valid_crd_passes() {
        assert_eq!(msgs(&crd()), Vec::<String>::new());
    }

    #[test]
    fn name_must_be_plural_dot_group() {
        let mut c = crd();
        c["metadata"]["name"] = json!("crontab.stable.example.com");
        assert_eq!(
            msgs(&c),
            vec![
                r#"metadata.name: Invalid value: "crontab.stable.example.com": must be spec.names.plural+"."+spec.group"#
            ]
        );
    }

    #[test]
    fn group_names_and_scope() {
        let mut c = crd();
        c["metadata"]["name"] = json!("CronTabs.example");
        c["spec"]["group"] = json!("example");
        c["spec"]["names"]["plural"] = json!("CronTabs");
        c["spec"]["names"]["listKind"] = json!("CronTab");
        c["spec"]["scope"] = json!("Global");
        let m = msgs(&c);
        assert_eq!(
            m[0],
            r#"spec.group: Invalid value: "example": should be a domain with at least one dot"#
        );
        assert!(
            m[1].starts_with(r#"spec.names.plural: Invalid value: "CronTabs": a DNS-1035 label"#),
            "{}",
            m[1]
        );
        assert_eq!(
            m[2],
            r#"spec.names.listKind: Invalid value: "CronTab": kind and listKind cannot be the same"#
        );
        assert_eq!(
            m[3],
            r#"spec.scope: Unsupported value: "Global": supported values: "Cluster", "Namespaced""#
        );
        assert_eq!(m.len(), 4);
    }

    #[test]
    fn required_fields() {
        let c = json!({"metadata": {"name": "."}, "spec": {"names": {}}});
        assert_eq!(
            msgs(&c),
            vec![
                "spec.group: Required value",
                "spec.names.plural: Required value",
                "spec.names.kind: Required value",
                "spec.scope: Required value",
                "spec.versions: Required value: must have exactly one version marked as storage version",
            ]
        );
    }

    #[test]
    fn exactly_one_storage_version_and_unique_names() {
        let mut c = crd();
        c["spec"]["versions"][1]["storage"] = json!(true);
        c["spec"]["versions"][1]["name"] = json!("v1");
        let errs = validate_crd(&c);
        let m: Vec<&str> = errs.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(
            m,
            vec![
                "must contain unique version names",
                "must have exactly one version marked as storage version"
            ]
        );
        assert!(errs.iter().all(|e| e.field == "spec.versions"));
    }

    #[test]
    fn schema_must_be_structural() {
        let mut c = crd();
        c["spec"]["versions"][0]["schema"]["openAPIV3Schema"] = json!({
            "type": "object",
            "properties": {"spec": {"properties": {"items": {"type": "array", "items": {}}, "bad": {"type": "string", "pattern": "(["}}}}
        });
        c["spec"]["versions"][1]["schema"] = json!({});
        let m = msgs(&c);
        assert_eq!(m[0], "spec.versions[0].schema.openAPIV3Schema.properties[spec].type: Required value: must not be empty for specified object fields");
        assert_eq!(m[1], "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[items].items.type: Required value: must not be empty for specified array items");
        assert!(m[2].starts_with(r#"spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[bad].pattern: Invalid value: "([": must be a valid regular expression, but isn't: "#));
        assert_eq!(
            m[3],
            "spec.versions[1].schema.openAPIV3Schema: Required value: schemas are required"
        );
        assert_eq!(m.len(), 4);
    }

    #[test]
    fn root_must_be_an_object() {
        let mut c = crd();
        c["spec"]["versions"][1]["schema"]["openAPIV3Schema"] = json!({"type": "array"});
        assert_eq!(
            msgs(&c),
            vec![
                r#"spec.versions[1].schema.openAPIV3Schema.type: Invalid value: "array": must be object at the root"#
            ]
        );
    }
}
