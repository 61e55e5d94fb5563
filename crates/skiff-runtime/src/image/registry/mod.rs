//! Pulling images over the OCI distribution API.
//!
//! A pull resolves a reference (`nginx` is `docker.io/library/nginx:latest`) to the endpoints
//! that may serve it (the mirrors of `<data-dir>/registries.yaml`, then the registry itself),
//! fetches the manifest (following an index down to linux/amd64), streams the config and
//! layer blobs to a staging OCI layout inside the store while hashing them, and hands that
//! layout to [`ImageStore::import`], which verifies, unpacks and commits it under the store's
//! file lock. A failed pull therefore stores nothing.
//!
//! The client is blocking, like the rest of the runtime API.
//!
//! - [`config`]: `registries.yaml` (mirrors, credentials, TLS) and endpoint selection;
//! - [`auth`]: credentials, `WWW-Authenticate` challenges and the bearer-token flow;
//! - [`client`]: the HTTP client (TLS, auth retries, verified downloads);
//! - [`resolve`]: reference parsing and manifest resolution;
//! - [`pull`]: the pull itself, deduplicated per reference.
//!
//! [`ImageStore::import`]: super::ImageStore::import

pub mod auth;
pub mod client;
pub mod config;
pub mod pull;
pub mod resolve;

use std::path::PathBuf;

pub use auth::RegistryAuth;
pub use config::{registries_yaml_for_runtime_root, RegistriesConfig};
pub use pull::pull;
pub use resolve::ImageReference;

/// Why a pull failed. Every variant names the registry, the reference or the digest involved
/// so that the message alone (which the node agent shows as `ErrImagePull`) is actionable.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The reference cannot be parsed.
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference {
        /// The reference as given.
        reference: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The registry could not be reached (DNS, connect, TLS, reset, timeout).
    #[error("cannot reach registry {registry} ({url}): {source}")]
    Transport {
        /// Registry host (endpoint authority).
        registry: String,
        /// The URL requested.
        url: String,
        /// The client error.
        #[source]
        source: Box<ureq::Error>,
    },
    /// The registry (or its token server) refused the credentials or the lack of them.
    #[error(
        "pull access denied for {reference} at {registry}: repository does not exist or may \
         require authorization: authorization failed ({detail})"
    )]
    Unauthorized {
        /// Registry host.
        registry: String,
        /// The image reference.
        reference: String,
        /// HTTP status and what answered it.
        detail: String,
    },
    /// The registry has no manifest for this tag or digest.
    #[error("manifest unknown: {reference} not found at registry {registry} ({detail})")]
    ManifestUnknown {
        /// Registry host.
        registry: String,
        /// The image reference.
        reference: String,
        /// Status and registry error code.
        detail: String,
    },
    /// The registry has no blob for a digest the manifest lists.
    #[error("blob unknown: {digest} of {reference} not found at registry {registry}")]
    BlobUnknown {
        /// Registry host.
        registry: String,
        /// The image reference.
        reference: String,
        /// The missing blob.
        digest: String,
    },
    /// The registry answered with an unexpected status.
    #[error("registry {registry} answered {status} for {url}: {body}")]
    Status {
        /// Registry host.
        registry: String,
        /// The URL requested.
        url: String,
        /// HTTP status code.
        status: u16,
        /// Start of the response body, for the registry's own error message.
        body: String,
    },
    /// Downloaded content does not hash to the digest that names it.
    #[error(
        "digest mismatch for {what} of {reference} from {registry}: expected {expected}, got {actual}"
    )]
    DigestMismatch {
        /// Registry host.
        registry: String,
        /// The image reference.
        reference: String,
        /// Manifest, config or layer.
        what: &'static str,
        /// The digest promised.
        expected: String,
        /// The digest of the bytes received.
        actual: String,
    },
    /// Downloaded content is longer or shorter than its descriptor says.
    #[error("size mismatch for {digest} of {reference} from {registry}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        /// Registry host.
        registry: String,
        /// The image reference.
        reference: String,
        /// The blob.
        digest: String,
        /// Size from the descriptor.
        expected: u64,
        /// Bytes received (at least; reading stops one past the limit).
        actual: u64,
    },
    /// A manifest, config or layer has a media type this runtime cannot use.
    #[error("unsupported media type {media_type:?} for {what} of {reference} from {registry}")]
    UnsupportedMediaType {
        /// Registry host.
        registry: String,
        /// The image reference.
        reference: String,
        /// Where it was found.
        what: String,
        /// The media type.
        media_type: String,
    },
    /// A document from the registry is malformed, or an index lacks this platform.
    #[error("invalid manifest for {reference} from {registry}: {reason}")]
    InvalidManifest {
        /// Registry host.
        registry: String,
        /// The image reference.
        reference: String,
        /// What is wrong.
        reason: String,
    },
    /// `registries.yaml`, a CA file or a docker config is unreadable or malformed.
    #[error("registry configuration {}: {reason}", path.display())]
    Config {
        /// The file (or `<dockerconfigjson>` for a pull secret).
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A local file operation failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The image store refused the downloaded image.
    #[error("storing {reference}: {source}")]
    Store {
        /// The image reference.
        reference: String,
        /// The store's error.
        #[source]
        source: crate::Error,
    },
}

impl From<RegistryError> for crate::Error {
    /// Maps onto the crate error so that [`crate::Runtime::pull_image`] keeps its signature;
    /// variants with a natural counterpart keep their kind (a 404 is `ImageNotFound`), the
    /// rest keep their full message.
    fn from(e: RegistryError) -> Self {
        use crate::Error;
        match e {
            RegistryError::Store { source, .. } => source,
            RegistryError::ManifestUnknown { .. } => Error::ImageNotFound(e.to_string()),
            RegistryError::DigestMismatch {
                registry,
                reference,
                what,
                expected,
                actual,
            } => Error::DigestMismatch {
                what: format!("{what} of {reference} from {registry}"),
                expected,
                actual,
            },
            RegistryError::UnsupportedMediaType {
                registry,
                reference,
                what,
                media_type,
            } => Error::UnsupportedMediaType {
                media_type,
                what: format!("{what} of {reference} from {registry}"),
            },
            RegistryError::InvalidReference { .. } => Error::InvalidArgument(e.to_string()),
            RegistryError::Io { what, path, source } => Error::Io { what, path, source },
            other => Error::InvalidState(other.to_string()),
        }
    }
}
