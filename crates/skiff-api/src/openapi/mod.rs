//! OpenAPI documents served by the API server: the v3 index (`/openapi/v3`), one v3 document per
//! group-version (`/openapi/v3/apis/<group>/<version>`) and the swagger 2.0 document
//! (`/openapi/v2`).
//!
//! kubectl depends on them: `kubectl explain` renders the v3 schema of a kind, `kubectl apply`
//! finds a kind's PATCH operation to learn whether it may send a strategic merge patch (and
//! computes it from the schema's `x-kubernetes-patch-*` extensions) and whether the server
//! validates fields itself (the `fieldValidation` parameter); older fallbacks read v2.
//!
//! Schemas of built-in kinds come from `k8s-openapi`'s `schemars` implementations, which carry
//! upstream's definition names and descriptions; the patch extensions they lack come from a
//! hand-written table (`extensions.rs`). Documents are generated on demand and only hold what their
//! resources reach; callers keep the serialized bytes ([`DocumentCache`]) rather than the
//! documents, so nothing large stays resident. This module performs no I/O and depends on no
//! other skiff module.

mod builtin;
mod cache;
mod document;
mod extensions;
mod paths;
mod schema;
mod structural;
#[cfg(test)]
mod tests;
mod v2proto;

use serde_json::Value;

pub use builtin::{builtin_definition_name, builtin_kinds};
pub use structural::builtin_structural_schema;
pub use cache::{fingerprint, DocumentCache, OpenApiError};
pub use v2proto::{v2_protobuf, V2_PROTOBUF_CONTENT_TYPE, V2_PROTOBUF_MEDIA_TYPE};

/// The Kubernetes version the documents describe, reported as the v2 document's `info.version`.
pub const API_LEVEL: &str = "v1.33.0";

/// One served resource, as the documents need to know it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApiResourceDoc {
    /// API group, empty for the core group.
    pub group: String,
    /// Version within the group.
    pub version: String,
    /// Kind of the objects, such as `Deployment`.
    pub kind: String,
    /// Plural resource name used in URLs, such as `deployments`.
    pub plural: String,
    /// Whether objects live in namespaces.
    pub namespaced: bool,
    /// Verbs served: `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`,
    /// `deletecollection`.
    pub verbs: Vec<String>,
    /// Subresources served, such as `status`, `scale`, `log`, `exec`, `binding`, `eviction`.
    pub subresources: Vec<String>,
    /// Definition name of the kind's schema: upstream's name for built-ins (see
    /// [`builtin_definition_name`], used when this is `None`), or the name under which the caller
    /// passes a custom resource's schema.
    pub definition: Option<String>,
}

/// Definition name for a custom resource's schema, in upstream's style: the group's DNS labels
/// reversed, then version and kind (`stable.example.com`, `v1`, `CronTab` gives
/// `com.example.stable.v1.CronTab`). Use it for [`ApiResourceDoc::definition`] and as the name in
/// `custom_schemas`.
pub fn custom_definition_name(group: &str, version: &str, kind: &str) -> String {
    let mut parts: Vec<&str> = group.split('.').filter(|p| !p.is_empty()).rev().collect();
    parts.push(version);
    parts.push(kind);
    parts.join(".")
}

/// The `/openapi/v3` index: one entry per group-version path (`api/v1`, `apis/apps/v1`) with the
/// hash clients use to cache the document (`?hash=` in `serverRelativeURL`).
pub fn v3_index(group_versions: &[(String, String)]) -> Value {
    document::v3_index(group_versions)
}

/// The OpenAPI 3.0 document of one group-version (`group` empty for the core group).
///
/// `resources` may hold resources of other group-versions; only those of this one are described.
/// `custom_schemas` pairs definition names with the `openAPIV3Schema` of custom resources; a
/// resource whose `definition` names one of them is described with it (and without strategic
/// merge patch, which custom resources do not support). The document's `components.schemas`
/// holds only the definitions reachable from the resources, plus the meta kinds operations use.
pub fn v3_document(
    group: &str,
    version: &str,
    resources: &[ApiResourceDoc],
    custom_schemas: &[(String, Value)],
) -> Value {
    document::v3_document(group, version, resources, custom_schemas)
}

/// The swagger 2.0 document describing every resource passed, for clients that still read
/// `/openapi/v2`: all definitions, but only the PATCH operations among the paths (what those
/// clients read; the full set would triple the size). Custom resource schemas lose the constructs
/// swagger 2.0 cannot express (`nullable`, `oneOf`, `anyOf`, `allOf`, `not`).
///
/// Serve it as JSON to clients asking for JSON, and encoded with [`v2_protobuf`] to clients asking
/// for [`V2_PROTOBUF_MEDIA_TYPE`] (client-go always does, and cannot read JSON there), with
/// [`V2_PROTOBUF_CONTENT_TYPE`].
pub fn v2_document(all: &[ApiResourceDoc], custom_schemas: &[(String, Value)]) -> Value {
    document::v2_document(all, custom_schemas, API_LEVEL)
}
