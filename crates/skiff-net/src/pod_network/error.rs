//! Errors of the pod network, each carrying what was being done to which object so that a
//! failure in the node agent's log is actionable without a debugger.

use std::io;
use std::path::PathBuf;

/// Result alias for the pod network.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while wiring the pod network.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A netlink request was refused by the kernel or the socket failed.
    #[error("netlink {op} {target}: {source}")]
    Netlink {
        /// The operation, e.g. "create bridge" or "add route".
        op: &'static str,
        /// The object the operation was about (interface name, prefix, ...).
        target: String,
        /// The kernel's errno or the socket error.
        #[source]
        source: io::Error,
    },
    /// A netlink reply could not be decoded.
    #[error("netlink {op}: cannot decode reply: {detail}")]
    Decode {
        /// The operation whose reply was bad.
        op: &'static str,
        /// Decoder message.
        detail: String,
    },
    /// Entering or opening a network namespace failed.
    #[error("network namespace {path}: {op}: {source}")]
    Netns {
        /// The namespace file (a bind-mounted `/proc/<pid>/ns/net` or `/run/netns/<name>`).
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// Underlying error.
        #[source]
        source: io::Error,
    },
    /// A file operation on the state directory or `/proc/sys` failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: io::Error,
    },
    /// Every usable address of the node's pod CIDR is allocated.
    #[error("no free address left in pod cidr {cidr} for sandbox {sandbox}")]
    Exhausted {
        /// The node's pod CIDR.
        cidr: String,
        /// The sandbox that asked.
        sandbox: String,
    },
    /// An interface that must exist does not (e.g. the one carrying the node IP).
    #[error("{what} not found")]
    NotFound {
        /// Description of the missing object.
        what: String,
    },
    /// The configuration cannot work (e.g. pod CIDR outside the cluster CIDR).
    #[error("invalid pod network config: {0}")]
    Config(String),
    /// The per-sandbox helper thread panicked or could not be spawned.
    #[error("helper thread for {what}: {detail}")]
    Thread {
        /// What the thread was doing.
        what: String,
        /// Why it failed.
        detail: String,
    },
}

impl Error {
    /// The errno behind a netlink error, when there is one; used to treat EEXIST/ENODEV
    /// as success in idempotent operations.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Netlink { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}
