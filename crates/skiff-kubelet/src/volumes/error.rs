//! Errors of the volume manager. Texts follow kubelet's so that `kubectl describe pod` shows
//! what users of upstream expect (`MountVolume.SetUp failed for volume "cfg" : configmap
//! "app" not found`).

use std::io;
use std::path::PathBuf;

use super::atomic_writer::WriteError;
use super::downward::DownwardError;
use super::subpath::SubPathError;

/// Why one volume could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetUpError {
    /// A referenced object does not exist (`configmap "x" not found`).
    #[error("{kind} {name:?} not found")]
    NotFound {
        /// Lower-case kind as kubelet prints it: `configmap`, `secret`.
        kind: &'static str,
        /// Object name.
        name: String,
    },
    /// An `items` entry names a key the ConfigMap lacks.
    #[error("configmap references non-existent config key: {0}")]
    MissingConfigMapKey(String),
    /// An `items` entry names a key the Secret lacks.
    #[error("references non-existent secret key: {0}")]
    MissingSecretKey(String),
    /// A hostPath exists but is not of the requested type (or `Directory` is missing).
    #[error("hostPath type check failed: {path} is not {what}")]
    HostPathType {
        /// Host path.
        path: String,
        /// The expected type, as in `a directory`.
        what: &'static str,
    },
    /// A hostPath `type` value Kubernetes does not define.
    #[error("{0} is an invalid volume type")]
    InvalidHostPathType(String),
    /// The claim is missing, unbound, or its volume is unusable here.
    #[error("error processing PVC {namespace}/{claim}: {reason}")]
    Claim {
        /// Pod namespace.
        namespace: String,
        /// Claim name.
        claim: String,
        /// What is wrong.
        reason: String,
    },
    /// A volume source skiff's node agent does not implement (nfs, csi, ...).
    #[error("volume type {0} is not supported by this node")]
    Unsupported(String),
    /// An emptyDir medium other than "" and Memory.
    #[error("unsupported emptyDir medium {0:?}")]
    Medium(String),
    /// A quantity that does not parse.
    #[error("invalid quantity {0:?}")]
    BadQuantity(String),
    /// A downward API item could not be evaluated.
    #[error(transparent)]
    Downward(#[from] DownwardError),
    /// The atomic writer failed.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// A filesystem or mount operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// Where.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// An API request failed (other than not found).
    #[error("{what}: {source}")]
    Api {
        /// What was requested.
        what: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// The TokenRequest for a service account token failed.
    #[error("failed to fetch token: {0}")]
    Token(#[source] kube::Error),
}

/// Errors of the [`VolumeManager`](super::VolumeManager).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// One volume failed; the text is kubelet's FailedMount event message.
    #[error("MountVolume.SetUp failed for volume {volume:?} : {source}")]
    SetUp {
        /// Volume name.
        volume: String,
        /// Why.
        #[source]
        source: SetUpError,
    },
    /// Several volumes failed; each is worth its own event.
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Many(Vec<Error>),
    /// A volumeMount names a volume the pod does not have (or that was not set up).
    #[error("cannot find volume {volume:?} to mount into container {container:?}")]
    NoVolume {
        /// Volume name.
        volume: String,
        /// Container name.
        container: String,
    },
    /// A subPath or subPathExpr could not be prepared.
    #[error("failed to prepare subPath for volumeMount {mount:?} of container {container:?}: {source}")]
    SubPath {
        /// Volume mount name.
        mount: String,
        /// Container name.
        container: String,
        /// Why.
        #[source]
        source: SubPathError,
    },
    /// Unmounting or deleting a pod's volumes failed.
    #[error("tearing down {path}: {source}")]
    Teardown {
        /// The path that could not be cleaned.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The pod has no `metadata.uid`, so it has no volume directory.
    #[error("pod has no uid")]
    NoUid,
}

impl Error {
    /// The individual failures, one per volume (for one event each).
    pub fn failures(&self) -> Vec<&Error> {
        match self {
            Error::Many(v) => v.iter().flat_map(|e| e.failures()).collect(),
            e => vec![e],
        }
    }

    /// Fold a list of failures into one error (`None` when empty).
    pub fn combine(mut errors: Vec<Error>) -> Option<Error> {
        match errors.len() {
            0 => None,
            1 => errors.pop(),
            _ => Some(Error::Many(errors)),
        }
    }
}

pub(super) fn io_err(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> SetUpError {
    let path = path.into();
    move |source| SetUpError::Io { op, path, source }
}
