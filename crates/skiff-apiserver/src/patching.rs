//! PATCH bodies: JSON patch, merge patch, strategic merge patch and server-side apply,
//! dispatched on the request's content type to skiff-api's patch module.

use serde_json::Value;
use skiff_api::status::ApiError;

use crate::resources::Served;

/// The patch flavours upstream accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// `application/json-patch+json`
    Json,
    /// `application/merge-patch+json`
    Merge,
    /// `application/strategic-merge-patch+json`
    Strategic,
    /// `application/apply-patch+yaml`
    Apply,
}

impl PatchType {
    /// From the Content-Type header.
    pub fn from_content_type(ct: &str) -> Result<Self, ApiError> {
        match ct.split(';').next().unwrap_or("").trim() {
            "application/json-patch+json" => Ok(Self::Json),
            "application/merge-patch+json" => Ok(Self::Merge),
            "application/strategic-merge-patch+json" => Ok(Self::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Ok(Self::Apply),
            other => Err(ApiError::unsupported_media_type(other)),
        }
    }
}

/// Parse the patch document (JSON, or YAML for apply).
pub fn parse(pt: PatchType, body: &[u8]) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_request("the body of the request was empty"));
    }
    if pt == PatchType::Apply {
        let y: serde_yaml::Value =
            serde_yaml::from_slice(body).map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
        return serde_json::to_value(y).map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))
}

/// Apply a non-apply patch to `current`.
pub fn apply_patch(served: &Served, pt: PatchType, current: &Value, patch: &Value) -> Result<Value, ApiError> {
    let invalid = |e: skiff_api::patch::PatchError| {
        let msg = if e.status_code() == 500 { format!("Internal error occurred: {e}") } else { e.to_string() };
        ApiError::new(e.status_code(), e.reason(), msg)
    };
    match pt {
        PatchType::Json => skiff_api::patch::json_patch(current, patch).map_err(invalid),
        PatchType::Merge => skiff_api::patch::merge_patch(current, patch).map_err(invalid),
        PatchType::Strategic => {
            if served.info.custom {
                return Err(ApiError::unsupported_media_type("application/strategic-merge-patch+json"));
            }
            let meta = skiff_api::patch::patch_meta_for(&served.info.api_version(), &served.info.kind)
                .ok_or_else(|| ApiError::unsupported_media_type("application/strategic-merge-patch+json"))?;
            skiff_api::patch::strategic_merge_patch(current, patch, meta).map_err(invalid)
        }
        PatchType::Apply => Err(ApiError::internal("apply patches are handled by server-side apply")),
    }
}
