//! Error type shared by the runtime's subsystems.

use std::path::PathBuf;

/// Errors returned by the image store, the container driver, sandboxes and the shim.
///
/// Every variant carries the object it is about (a path, a digest, a container id) so that
/// the message alone tells an operator what went wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A filesystem or process operation failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done, for example "open blob".
        what: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Content did not hash to the digest that names it.
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        /// What was verified (a blob, a layer's uncompressed content).
        what: String,
        /// The digest that the manifest or config promised.
        expected: String,
        /// The digest of the bytes actually read.
        actual: String,
    },
    /// A digest string is not `sha256:<64 hex>`.
    #[error("invalid digest {0:?}: expected sha256:<64 lowercase hex digits>")]
    InvalidDigest(String),
    /// A manifest, index or layer uses a media type the store cannot handle.
    #[error("unsupported media type {media_type:?} for {what}")]
    UnsupportedMediaType {
        /// The media type found.
        media_type: String,
        /// Where it was found.
        what: String,
    },
    /// An image archive or layout is malformed.
    #[error("invalid image {source_name}: {reason}")]
    InvalidImage {
        /// The file or directory being imported.
        source_name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A JSON document could not be parsed or written.
    #[error("json {what} {}: {source}", path.display())]
    Json {
        /// Which document, for example "manifest".
        what: &'static str,
        /// Where the document lives.
        path: PathBuf,
        /// The parser error.
        #[source]
        source: serde_json::Error,
    },
    /// No image matches a name or id.
    #[error("image not found: {0}")]
    ImageNotFound(String),
    /// An image cannot be removed because containers still use it.
    #[error("image {image} is in use by container {container}")]
    ImageInUse {
        /// The image reference.
        image: String,
        /// One container using it.
        container: String,
    },
    /// No container or sandbox has this id.
    #[error("{kind} not found: {id}")]
    NotFound {
        /// "container" or "sandbox".
        kind: &'static str,
        /// The id asked for.
        id: String,
    },
    /// An object with this id already exists.
    #[error("{kind} already exists: {id}")]
    AlreadyExists {
        /// "container" or "sandbox".
        kind: &'static str,
        /// The id asked for.
        id: String,
    },
    /// An id contains characters that are not allowed in paths or cgroup names.
    #[error("invalid id {0:?}: use 1-64 characters from [a-zA-Z0-9_.-], not starting with '.'")]
    InvalidId(String),
    /// A system call failed.
    #[error("{what}: {source}")]
    Sys {
        /// What was being done, with the object involved.
        what: String,
        /// The errno.
        #[source]
        source: nix::Error,
    },
    /// libcontainer refused or failed an operation.
    #[error("container {id}: {what}: {message}")]
    Container {
        /// The container id.
        id: String,
        /// What was being done.
        what: &'static str,
        /// The libcontainer error, rendered.
        message: String,
    },
    /// The shim of a container reported a failure or could not be reached.
    #[error("shim for container {id}: {message}")]
    Shim {
        /// The container id.
        id: String,
        /// What went wrong.
        message: String,
    },
    /// A request is invalid in the current state, for example starting a running container.
    #[error("{0}")]
    InvalidState(String),
    /// An operation did not finish in time; what it left running was killed.
    #[error("timed out: {0}")]
    Timeout(String),
    /// A spec or argument is invalid.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A container's seccomp profile cannot be loaded or compiled.
    #[error("container {id}: cannot load seccomp profile {profile:?}: {reason}")]
    Seccomp {
        /// The container id.
        id: String,
        /// The profile (`RuntimeDefault` or the Localhost file's path).
        profile: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attaches a path and a verb to an I/O error.
pub(crate) trait IoContext<T> {
    /// Converts the error into [`Error::Io`].
    fn ctx(self, what: &'static str, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, what: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| Error::Io {
            what,
            path: path.into(),
            source,
        })
    }
}

/// Attaches a description to an errno.
pub(crate) trait SysContext<T> {
    /// Converts the error into [`Error::Sys`].
    fn sys(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> SysContext<T> for nix::Result<T> {
    fn sys(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Sys {
            what: what(),
            source,
        })
    }
}

/// Checks that an id is safe to use as a path component and a cgroup name.
pub fn validate_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidId(id.to_string()))
    }
}
