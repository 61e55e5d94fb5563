//! Adapter from the handlers to skiff-api's server-side apply and managed-fields tracking.

use serde_json::Value;
use skiff_api::patch::{self, ApplyError, ApplyOptions, PatchMeta};
use skiff_api::status::{ApiError, Cause};

use crate::resources::Served;

/// The field manager of kubectl's client-side apply.
const CSA_MANAGER: &str = "kubectl-client-side-apply";

/// Patch metadata for a served resource: built-in tables, or the CRD schema's list types.
pub fn meta_for(served: &Served) -> PatchMeta {
    if let Some(custom) = &served.custom {
        return match &custom.schema {
            Some(s) => PatchMeta::from_openapi_schema(s),
            None => PatchMeta::deduced(),
        };
    }
    patch::patch_meta_for(&served.info.api_version(), &served.info.kind).unwrap_or_else(PatchMeta::deduced)
}

/// Merge the applied configuration into `live` (or build the object when `live` is None),
/// tracking field ownership in `metadata.managedFields`. `subresource` is Some for status.
pub fn apply(
    served: &Served,
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    subresource: Option<&str>,
) -> Result<Value, ApiError> {
    let now = skiff_api::meta::now_rfc3339();
    let ignored: Vec<String> = match subresource {
        None if served.info.has_subresource("status") => vec!["status".into()],
        _ => vec![],
    };
    let opts = ApplyOptions { force, subresource: subresource.map(str::to_string), ignored_fields: ignored, now: Some(now) };
    // Upgrading from client-side apply: fields kubectl's client-side apply manages pass to the
    // server-side applier instead of conflicting with it (upstream's last-applied handling).
    let upgraded;
    let live = match live {
        Some(l) if manager != CSA_MANAGER && l.pointer("/metadata/annotations/kubectl.kubernetes.io~1last-applied-configuration").is_some() => {
            let mut l = l.clone();
            if let Some(Value::Array(entries)) = l.pointer_mut("/metadata/managedFields") {
                entries.retain(|e| e.get("manager").and_then(Value::as_str) != Some(CSA_MANAGER));
            }
            upgraded = l;
            Some(&upgraded)
        }
        other => other,
    };
    patch::apply_with(live, applied, manager, meta_for(served), &opts).map_err(|e| apply_error(served, applied, e))
}

fn apply_error(served: &Served, obj: &Value, e: ApplyError) -> ApiError {
    match e {
        ApplyError::Conflicts(conflicts) => {
            let mut err = ApiError::new(409, "Conflict", ApplyError::Conflicts(conflicts.clone()).to_string());
            err.name = Some(skiff_api::meta::name(obj).to_string());
            err.group = Some(served.info.group.clone());
            err.kind = Some(served.info.plural.clone());
            err.causes = conflicts
                .iter()
                .map(|c| Cause { reason: "FieldManagerConflict".into(), message: c.message(), field: c.field.clone() })
                .collect();
            err
        }
        other => ApiError::bad_request(other.to_string()),
    }
}

/// Record an ordinary (non-apply) write by `manager` in `metadata.managedFields`.
pub fn record_update(old: Option<&Value>, new: &mut Value, manager: &str, subresource: Option<&str>) {
    let now = skiff_api::meta::now_rfc3339();
    patch::record_update_at(old, new, manager, "Update", subresource, &now);
}

/// The field manager name of a request: `fieldManager`, else derived from the User-Agent as
/// upstream does (`kubectl-client-side-apply`, `kubectl-edit`, ... come from the query).
pub fn manager_name(query_manager: Option<&str>, user_agent: &str) -> String {
    if let Some(m) = query_manager.filter(|m| !m.is_empty()) {
        return m.to_string();
    }
    let first = user_agent.split('/').next().unwrap_or("");
    if first.is_empty() {
        "unknown".to_string()
    } else {
        first.chars().take(128).collect()
    }
}
