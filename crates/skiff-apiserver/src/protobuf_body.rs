//! Kubernetes protobuf request bodies, decoded to JSON by skiff-api's protobuf module.

use serde_json::Value;
use skiff_api::protobuf::{self, ProtobufError};
use skiff_api::status::ApiError;

/// Decode a `application/vnd.kubernetes.protobuf` body.
pub fn decode(body: &[u8]) -> Result<Value, ApiError> {
    protobuf::decode(body).map_err(|e| match e {
        ProtobufError::UnknownKind { .. } => ApiError::unsupported_media_type("application/vnd.kubernetes.protobuf"),
        other => ApiError::bad_request(format!("error decoding protobuf body: {other}")),
    })
}
