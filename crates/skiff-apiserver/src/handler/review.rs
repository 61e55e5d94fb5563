//! Create-only review kinds: SelfSubjectAccessReview (what `kubectl auth can-i` asks),
//! SubjectAccessReview, SelfSubjectRulesReview, SelfSubjectReview (`kubectl auth whoami`)
//! and TokenReview. Until RBAC enforcement lands, members of `system:masters` are allowed
//! everything and other users only self reviews (see `handler::authorize`); the answers
//! describe exactly that.

use serde_json::{json, Value};
use skiff_api::status::ApiError;

use crate::http::{self, decode_body, Request, Response};
use crate::resources::Served;
use crate::Server;

/// POST a review object; answers it with `status` filled.
pub async fn create(srv: &Server, req: &Request, served: &Served, _ns: Option<&str>) -> Result<Response, ApiError> {
    let mut body = decode_body(req)?;
    super::write::check_type(served, &body)?;
    let user = req.user.clone().ok_or_else(ApiError::unauthorized)?;
    body["kind"] = json!(served.info.kind);
    body["apiVersion"] = json!(served.info.api_version());
    if body.get("metadata").is_none() {
        body["metadata"] = json!({});
    }
    match served.info.kind.as_str() {
        "SelfSubjectAccessReview" => {
            body["status"] = decision(user.is_admin());
        }
        "SubjectAccessReview" | "LocalSubjectAccessReview" => {
            let groups: Vec<String> = body
                .pointer("/spec/groups")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|g| g.as_str().map(str::to_string)).collect())
                .unwrap_or_default();
            let admin = groups.iter().any(|g| g == "system:masters");
            body["status"] = decision(admin);
        }
        "SelfSubjectRulesReview" => {
            let rules = if user.is_admin() {
                json!([{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}])
            } else {
                json!([])
            };
            body["status"] = json!({"resourceRules": rules, "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}], "incomplete": false});
        }
        "SelfSubjectReview" => {
            body["status"] = json!({"userInfo": {"username": user.name, "groups": user.groups}});
        }
        "TokenReview" => {
            let token = body.pointer("/spec/token").and_then(Value::as_str).unwrap_or("");
            body["status"] = match srv.bearer_user(&format!("Bearer {token}")) {
                Some(u) => json!({"authenticated": true, "user": {"username": u.name, "groups": u.groups}}),
                None => json!({"authenticated": false, "error": "invalid bearer token"}),
            };
        }
        other => return Err(ApiError::method_not_allowed(format!("create is not supported for {other}"))),
    }
    Ok(http::json(201, &body))
}

fn decision(allowed: bool) -> Value {
    if allowed {
        json!({"allowed": true, "reason": "member of system:masters"})
    } else {
        json!({"allowed": false})
    }
}
