//! Applying PATCH request bodies the way the Kubernetes API server does.
//!
//! Four patch types reach the server, each with its own entry point:
//! - `application/json-patch+json`: [`json_patch`] (RFC 6902),
//! - `application/merge-patch+json`: [`merge_patch`] (RFC 7386),
//! - `application/strategic-merge-patch+json`: [`strategic_merge_patch`], driven by the
//!   per-kind [`PatchMeta`] that [`patch_meta_for`] returns (unknown kinds get `None`, which the
//!   server turns into 415 as upstream does for custom resources),
//! - `application/apply-patch+yaml`: [`apply()`] (server-side apply), which also maintains
//!   `metadata.managedFields`; [`record_update`] keeps that bookkeeping for ordinary writes.
//!
//! Everything works on `serde_json::Value` and does no I/O, so the API server can call it
//! between reading and writing an object.

pub mod apply;
pub mod fieldpath;
pub mod json_patch;
pub mod managed_fields;
pub mod merge_patch;
pub mod patch_meta;
mod schema_meta;
pub mod strategic;
mod tables;

pub use apply::{
    apply, apply_at, apply_with, record_update, record_update_at, ApplyError, ApplyOptions,
    Conflict,
};
pub use json_patch::json_patch;
pub use merge_patch::merge_patch;
pub use patch_meta::{patch_meta_for, FieldMeta, Keys, ListType, PatchMeta, PatchStrategy};
pub use strategic::strategic_merge_patch;

/// Why a patch could not be applied.
///
/// The variants map onto the HTTP status the API server answers with (see
/// [`PatchError::status_code`]); the message is what goes into the `Status` object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The patch body itself is malformed (not a JSON patch array, bad directive format, ...).
    #[error("{0}")]
    BadRequest(String),
    /// The patch is well formed but cannot be applied to this object (missing path, failed
    /// `test`, lists of lists).
    #[error("{0}")]
    Invalid(String),
    /// A JSON patch with more operations than upstream accepts.
    #[error("the allowed maximum operations in a JSON patch is {max}, got {got}")]
    TooManyOperations {
        /// The limit (10000, as upstream).
        max: usize,
        /// How many operations the patch had.
        got: usize,
    },
    /// Strategic merge patch failures upstream does not classify (element without its merge
    /// key, unknown `$patch` value, mixed element types); upstream answers 500 for these and
    /// the API server should prefix the message with "Internal error occurred: ".
    #[error("{0}")]
    Internal(String),
}

impl PatchError {
    /// The HTTP status upstream answers with: 400 for malformed patches, 422 for patches that
    /// do not apply to the object, 413 for oversized JSON patches, 500 for the rest.
    pub fn status_code(&self) -> u16 {
        match self {
            PatchError::BadRequest(_) => 400,
            PatchError::Invalid(_) => 422,
            PatchError::TooManyOperations { .. } => 413,
            PatchError::Internal(_) => 500,
        }
    }

    /// The `Status.reason` upstream uses with [`PatchError::status_code`].
    pub fn reason(&self) -> &'static str {
        match self {
            PatchError::BadRequest(_) => "BadRequest",
            PatchError::Invalid(_) => "Invalid",
            PatchError::TooManyOperations { .. } => "RequestEntityTooLarge",
            PatchError::Internal(_) => "InternalError",
        }
    }

    pub(crate) fn bad(msg: impl Into<String>) -> Self {
        PatchError::BadRequest(msg.into())
    }

    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        PatchError::Invalid(msg.into())
    }

    pub(crate) fn internal(msg: impl Into<String>) -> Self {
        PatchError::Internal(msg.into())
    }
}
