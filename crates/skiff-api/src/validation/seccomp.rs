//! `securityContext.seccompProfile` of pods and containers (upstream
//! `validateSeccompProfileField`).

use serde_json::Value;

use super::{child, str_or_empty, FieldError};

const TYPES: &[&str] = &["Localhost", "RuntimeDefault", "Unconfined"];

/// Checks the `seccompProfile` of the security context `sc` found at `path`.
pub(super) fn validate_seccomp_profile(sc: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let Some(sp) = sc.get("seccompProfile").filter(|v| !v.is_null()) else {
        return;
    };
    let path = child(path, "seccompProfile");
    let ty = str_or_empty(sp, "type");
    match ty {
        "" => errs.push(FieldError::required(
            child(&path, "type"),
            "type is required when seccompProfile is set",
        )),
        t if TYPES.contains(&t) => {}
        other => errs.push(FieldError::not_supported(
            child(&path, "type"),
            other,
            TYPES,
        )),
    }
    let lp_path = child(&path, "localhostProfile");
    let localhost = sp.get("localhostProfile").and_then(Value::as_str);
    match (ty, localhost) {
        ("Localhost", None) => errs.push(FieldError::required(
            lp_path,
            "must be set when seccomp type is Localhost",
        )),
        // The profile is a file under the kubelet's seccomp root: it must stay inside it.
        ("Localhost", Some(p)) => {
            if p.starts_with('/') {
                errs.push(FieldError::invalid(&lp_path, p, "must be a relative path"));
            }
            if p.split('/').any(|part| part == "..") {
                errs.push(FieldError::invalid(&lp_path, p, "must not contain '..'"));
            }
        }
        (_, Some(p)) => errs.push(FieldError::invalid(
            lp_path,
            p,
            "can only be set when seccomp type is Localhost",
        )),
        (_, None) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(sp: Value) -> Vec<String> {
        let mut errs = Vec::new();
        validate_seccomp_profile(
            &json!({"seccompProfile": sp}),
            "spec.securityContext",
            &mut errs,
        );
        errs.iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn upstream_rules() {
        assert!(check(json!({"type": "RuntimeDefault"})).is_empty());
        assert!(
            check(json!({"type": "Localhost", "localhostProfile": "profiles/a.json"})).is_empty()
        );
        assert_eq!(
            check(json!({})),
            ["spec.securityContext.seccompProfile.type: Required value: type is required when seccompProfile is set"]
        );
        assert_eq!(
            check(json!({"type": "Strict"})),
            [
                r#"spec.securityContext.seccompProfile.type: Unsupported value: "Strict": supported values: "Localhost", "RuntimeDefault", "Unconfined""#
            ]
        );
        assert_eq!(
            check(json!({"type": "Localhost"})),
            ["spec.securityContext.seccompProfile.localhostProfile: Required value: must be set when seccomp type is Localhost"]
        );
        assert_eq!(
            check(json!({"type": "Localhost", "localhostProfile": "/etc/../x"})),
            [
                r#"spec.securityContext.seccompProfile.localhostProfile: Invalid value: "/etc/../x": must be a relative path"#,
                r#"spec.securityContext.seccompProfile.localhostProfile: Invalid value: "/etc/../x": must not contain '..'"#
            ]
        );
        assert_eq!(
            check(json!({"type": "Unconfined", "localhostProfile": "a.json"})),
            [
                r#"spec.securityContext.seccompProfile.localhostProfile: Invalid value: "a.json": can only be set when seccomp type is Localhost"#
            ]
        );
    }
}
