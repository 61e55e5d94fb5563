//! Why a CNI operation failed, with the file or plugin it concerns.

use std::path::PathBuf;

/// A failed CNI operation.
#[derive(Debug, thiserror::Error)]
pub enum CniError {
    /// The configuration directory holds no network configuration (yet: a network add-on
    /// such as Flannel or Calico writes it once its own pod runs).
    #[error("no CNI network configuration (*.conflist, *.conf, *.json) in {}", dir.display())]
    NoConfig {
        /// The configuration directory.
        dir: PathBuf,
    },
    /// A file could not be read or written.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done (`reading CNI configuration`).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The network configuration file is not a usable CNI configuration.
    #[error("CNI configuration {}: {reason}", path.display())]
    InvalidConfig {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// No executable named after the plugin's `type` in the plugin directories.
    #[error("CNI plugin {plugin:?} not found in {path}")]
    PluginNotFound {
        /// The plugin type.
        plugin: String,
        /// The directories searched (CNI_PATH).
        path: String,
    },
    /// The plugin ran and reported failure (or could not be run).
    #[error("CNI plugin {plugin} {command} failed: {message}")]
    PluginFailed {
        /// The plugin type.
        plugin: String,
        /// `ADD` or `DEL`.
        command: &'static str,
        /// The plugin's error (`code`, `msg`, `details`) or exit status and stderr.
        message: String,
    },
    /// The plugin did not finish in time and was killed.
    #[error("CNI plugin {plugin} {command} did not finish within {limit:?} and was killed")]
    Timeout {
        /// The plugin type.
        plugin: String,
        /// `ADD` or `DEL`.
        command: &'static str,
        /// The time limit.
        limit: std::time::Duration,
    },
    /// The plugin succeeded but printed something that is not a CNI result.
    #[error("CNI plugin {plugin} {command} printed an unusable result: {reason}")]
    BadResult {
        /// The plugin type.
        plugin: String,
        /// `ADD` or `DEL`.
        command: &'static str,
        /// Why it is unusable.
        reason: String,
    },
    /// The saved attachment of a sandbox is unreadable.
    #[error("CNI state {}: {reason}", path.display())]
    State {
        /// The state file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}
