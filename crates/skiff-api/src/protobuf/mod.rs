//! Kubernetes protobuf bodies (`application/vnd.kubernetes.protobuf`) as JSON.
//!
//! kubectl's typed commands (`create deployment|namespace|secret|...`,
//! `auth can-i`, `create token`, `drain`, ...) send protobuf instead of JSON.
//! [`decode`] turns such a body into the `serde_json::Value` that the same
//! object would have as JSON, so the API server handles both alike;
//! [`encode`] goes the other way for clients that ask for protobuf replies.
//!
//! The wire format is the 4 magic bytes `k8s\0` followed by a `runtime.Unknown`
//! message: `typeMeta {apiVersion, kind}`, `raw` (the object's own protobuf
//! bytes), `contentEncoding` and `contentType`. The object's bytes carry only
//! field numbers, so decoding walks a generated table (`schema.txt`, made by
//! `crates/skiff-api/tools/gen_protobuf_schema.py` from the sources of the
//! `k8s-pb` and `k8s-openapi` crates) that gives every message's fields their
//! JSON names and types.
//! Every kind that `k8s-pb` 0.9 knows decodes, in every version it carries.

mod decode;
mod encode;
mod schema;
mod wellknown;
mod wire;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_kubectl;

use serde_json::Value;

/// The bytes that open every Kubernetes protobuf body.
pub const MAGIC: &[u8] = b"k8s\0";

/// The media type of Kubernetes protobuf bodies.
pub const PROTOBUF_CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// Why a protobuf body could not be decoded, or an object not encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtobufError {
    /// The body does not start with `k8s\0`.
    #[error("body is not kubernetes protobuf: it does not start with the magic bytes \"k8s\\0\"")]
    BadMagic,
    /// The envelope names no kind.
    #[error("protobuf envelope has no kind in its type meta")]
    MissingKind,
    /// The envelope's apiVersion and kind name no known type.
    #[error("no protobuf type is known for kind {kind:?} in apiVersion {api_version:?}")]
    UnknownKind {
        /// The envelope's apiVersion.
        api_version: String,
        /// The envelope's kind.
        kind: String,
    },
    /// The envelope's `contentEncoding` is set; Kubernetes defines none.
    #[error("unsupported protobuf content encoding {0:?}")]
    UnsupportedEncoding(String),
    /// The bytes are not a valid encoding of the named type.
    #[error("malformed protobuf at {path}: {reason}")]
    Malformed {
        /// Where in the object, e.g. `spec.template.spec.containers[0]`.
        path: String,
        /// What is wrong, e.g. `truncated message`.
        reason: String,
    },
    /// A JSON object cannot be encoded as protobuf.
    #[error("cannot encode {path} as protobuf: {reason}")]
    Encode {
        /// Where in the object, e.g. `metadata.creationTimestamp`.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

/// Whether a `Content-Type` (or `Accept` entry) names Kubernetes protobuf,
/// ignoring case, surrounding spaces and parameters such as `;stream=watch`.
pub fn is_protobuf_content_type(content_type: &str) -> bool {
    let media_type = content_type.split(';').next().unwrap_or("").trim();
    media_type.eq_ignore_ascii_case(PROTOBUF_CONTENT_TYPE)
}

/// Decodes a Kubernetes protobuf body into the object's JSON form, with
/// `kind` and `apiVersion` taken from the envelope.
///
/// Never panics: any input is either decoded or rejected with an error that
/// says what is wrong and where.
pub fn decode(body: &[u8]) -> Result<Value, ProtobufError> {
    decode::decode_envelope(schema::Schema::get(), body, 0)
}

/// Encodes a JSON object (with `apiVersion` and `kind`) as a Kubernetes
/// protobuf body: the magic bytes and a `runtime.Unknown` envelope.
///
/// Fields the protobuf type does not have are left out, as Go's protobuf
/// encoder would never see them.
pub fn encode(object: &Value) -> Result<Vec<u8>, ProtobufError> {
    encode::encode_envelope(schema::Schema::get(), object)
}

/// Whether `api_version` and `kind` name a type that [`decode`] and [`encode`] know.
pub fn is_known_kind(api_version: &str, kind: &str) -> bool {
    schema::Schema::get().kind(api_version, kind).is_some()
}
