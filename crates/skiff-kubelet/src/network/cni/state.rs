//! What the node remembers of each attachment, one JSON file per sandbox under the agent's
//! data dir: the configuration ADD ran with (DEL must use the same chain, even after the
//! configuration directory changed), the namespace and arguments, and the final result
//! (the pod IP after an agent restart, and `prevResult` for DEL). The file is written before
//! the first plugin runs, so a half-done ADD is still undone with the right configuration.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::config::NetworkConfigList;
use super::error::CniError;

/// One sandbox's attachment to the CNI network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    /// The configuration list ADD used.
    pub config: NetworkConfigList,
    /// The file it came from (for messages).
    #[serde(default)]
    pub source: PathBuf,
    /// The plugin directories ADD searched: DEL runs the same executables, and a process
    /// that has no CNI flags (`skiff killall`) can still undo the attachment.
    #[serde(default)]
    pub bin_dirs: Vec<PathBuf>,
    /// CNI_NETNS of the ADD.
    pub netns: String,
    /// CNI_IFNAME of the ADD.
    pub ifname: String,
    /// CNI_ARGS of the ADD.
    pub args: String,
    /// The last plugin's result, once ADD completed.
    #[serde(default)]
    pub result: Option<Value>,
}

/// The directory of attachment files.
#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    /// Attachments kept in `dir` (created on first save).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// The attachment of sandbox `id`, if there is one.
    pub fn load(&self, id: &str) -> Result<Option<Attachment>, CniError> {
        let path = self.path(id);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(CniError::Io { what: "reading CNI state", path, source }),
        };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| CniError::State { path, reason: e.to_string() })
    }

    /// Saves the attachment of sandbox `id` (atomically: a crash leaves the old or the new).
    pub fn save(&self, id: &str, attachment: &Attachment) -> Result<(), CniError> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|source| CniError::Io { what: "writing CNI state", path: self.dir.clone(), source })?;
        let bytes = serde_json::to_vec_pretty(attachment).expect("an attachment serializes");
        crate::atomic_file::write(&self.path(id), &bytes, 0o644)
            .map_err(|(path, source)| CniError::Io { what: "writing CNI state", path, source })
    }

    /// Forgets sandbox `id` (nothing to forget is fine).
    pub fn remove(&self, id: &str) -> Result<(), CniError> {
        let path = self.path(id);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(CniError::Io { what: "removing CNI state", path, source: e }),
            _ => Ok(()),
        }
    }

    /// The sandbox ids with an attachment.
    pub fn ids(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return Vec::new() };
        let mut ids: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".json").map(str::to_string))
            .filter(|id| !id.starts_with('.'))
            .collect();
        ids.sort();
        ids
    }
}
