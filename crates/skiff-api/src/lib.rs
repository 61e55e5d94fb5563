//! skiff-api: Kubernetes API machinery with no I/O.
//!
//! Owns the resource registry (group/version/kind, plural, scope, short names, categories,
//! verbs, subresources), object metadata helpers, the `Status` error model, and — in their own
//! modules — selectors, patching, validation, defaulting, Table printing, OpenAPI documents,
//! protobuf decoding, quantities and quota accounting. The API server (`skiff-apiserver`) is the main caller;
//! controllers and tests use the same helpers. This crate calls no other skiff crate.
#![forbid(unsafe_code)]

pub mod crd_schema;
pub mod defaults;
pub mod meta;
pub mod openapi;
pub mod patch;
pub mod protobuf;
pub mod quantity;
pub mod quota;
pub mod registry;
pub mod selector;
pub mod service_account;
pub mod status;
pub mod table;
pub mod taints;
pub mod validation;

pub use registry::{ResourceInfo, Scope};
pub use status::{ApiError, Cause};
