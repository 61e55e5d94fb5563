//! The API the node agent uses: the [`Runtime`] trait, its real implementation
//! [`LocalRuntime`] and a [`FakeRuntime`] for unit tests of the agent.
//!
//! All methods block (they run processes and touch the filesystem); an async caller runs
//! them with `tokio::task::spawn_blocking`.

mod attach;
mod fake;
mod liveness;
mod local;
pub mod pins;
pub(crate) mod rootfs;
mod running;
mod sandbox;
pub mod state_dir;
pub mod types;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use attach::{AttachSession, ExecResizer, SessionControl, StreamingExec};
pub use fake::FakeRuntime;
pub use local::{LocalRuntime, RecoveryReport, RuntimeConfig};
pub use sandbox::{LoopbackOnly, NetworkHook};
pub use types::*;

use crate::error::Result;
use crate::image::registry::RegistryAuth;

/// Images, sandboxes and containers of one node.
pub trait Runtime: Send + Sync {
    /// Imports a docker-archive, OCI archive or OCI layout; `name` tags images that carry none.
    fn import_image(&self, path: &Path, name: Option<&str>) -> Result<Vec<ImageInfo>>;
    /// Pulls an image from a registry.
    fn pull_image(&self, reference: &str) -> Result<ImageInfo>;
    /// Pulls an image with credentials for its registry (from an imagePullSecret, see
    /// [`RegistryAuth::from_docker_config_json`]). Runtimes without registries (fakes)
    /// ignore `auth`.
    fn pull_image_with(&self, reference: &str, auth: Option<&RegistryAuth>) -> Result<ImageInfo> {
        let _ = auth;
        self.pull_image(reference)
    }
    /// Looks an image up by reference or id; `None` when absent.
    fn image_status(&self, reference: &str) -> Result<Option<ImageInfo>>;
    /// Lists images.
    fn list_images(&self) -> Result<Vec<ImageInfo>>;
    /// Removes an image (refused while containers use it).
    fn remove_image(&self, reference: &str) -> Result<()>;

    /// Creates a pod sandbox: its namespaces and pod files, then the network hook.
    fn create_sandbox(&self, config: &SandboxConfig) -> Result<SandboxInfo>;
    /// Tears a sandbox down (network hook, namespace mounts, files). Idempotent.
    fn remove_sandbox(&self, id: &str) -> Result<()>;
    /// Lists sandboxes.
    fn list_sandboxes(&self) -> Result<Vec<SandboxInfo>>;

    /// Creates a container (rootfs, spec, shim); its process waits for [`Runtime::start_container`].
    fn create_container(&self, config: &ContainerConfig) -> Result<ContainerStatus>;
    /// Starts a created container's process.
    fn start_container(&self, id: &str) -> Result<()>;
    /// Sends SIGTERM, then SIGKILL after `grace`; returns once the container has exited.
    fn stop_container(&self, id: &str, grace: Duration) -> Result<ContainerStatus>;
    /// Waits until the container exits (at most `timeout`) and returns its status.
    fn wait_container(&self, id: &str, timeout: Option<Duration>) -> Result<ContainerStatus>;
    /// Removes a container, killing it first if it still runs. Idempotent.
    fn remove_container(&self, id: &str) -> Result<()>;
    /// The recorded status of a container.
    fn container_status(&self, id: &str) -> Result<ContainerStatus>;
    /// A descriptor that polls readable once running container `id` has exited and its
    /// exit is recorded, so a caller can sleep until then instead of asking
    /// [`Runtime::container_status`] periodically. None when the runtime has none to give
    /// (the container does not run, or the runtime has no processes); callers then poll.
    fn exit_fd(&self, id: &str) -> Option<std::os::fd::OwnedFd> {
        let _ = id;
        None
    }
    /// Ids of the containers that run now: what periodic checks such as log rotation
    /// need, without reading every container's record (see [`Runtime::list_containers`]).
    fn running_container_ids(&self) -> Result<Vec<String>> {
        Ok(self
            .list_containers()?
            .into_iter()
            .filter(|c| c.status.phase == Phase::Running)
            .map(|c| c.status.id)
            .collect())
    }
    /// Lists containers.
    fn list_containers(&self) -> Result<Vec<ContainerInfo>>;
    /// Lists the containers whose id starts with `prefix`: one pod's containers when ids
    /// start with something of the pod's, without reading every other container's record
    /// (a burst of new pods each looking through all containers was quadratic).
    fn list_containers_with_prefix(&self, prefix: &str) -> Result<Vec<ContainerInfo>> {
        Ok(self.list_containers()?.into_iter().filter(|c| c.config.id.starts_with(prefix)).collect())
    }
    /// The sandbox `id`, if it exists.
    fn sandbox(&self, id: &str) -> Result<Option<SandboxInfo>> {
        Ok(self.list_sandboxes()?.into_iter().find(|s| s.config.id == id))
    }
    /// Runs a command in a running container to completion.
    fn exec_sync(&self, request: &ExecRequest) -> Result<ExecOutput>;
    /// Path of a container's CRI log file.
    fn log_path(&self, id: &str) -> Result<PathBuf>;
    /// Makes the container's shim reopen its log path, after the caller renamed the file to
    /// rotate it (CRI `ReopenContainerLog`).
    fn reopen_log(&self, id: &str) -> Result<()>;
    /// Resource usage of a running container.
    fn stats(&self, id: &str) -> Result<ContainerStats>;
    /// A command that runs `request` in its container with the caller's stdio, for
    /// streaming exec (`kubectl exec -it`); runtimes without processes refuse.
    fn exec_command(&self, request: &ExecRequest) -> Result<std::process::Command> {
        Err(crate::Error::InvalidArgument(format!(
            "streaming exec into {} is not supported by this runtime",
            request.container_id
        )))
    }
    /// Like [`Runtime::exec_command`], with a handle that resizes the exec's terminal
    /// (`request.tty` set) while it runs.
    fn exec_streaming(&self, request: &ExecRequest) -> Result<StreamingExec> {
        Ok(StreamingExec {
            command: self.exec_command(request)?,
            resize: None,
        })
    }
    /// Attaches to a running container's main process (`kubectl attach`): live output,
    /// stdin when the container has one, terminal resizes. The container's runtime keeps
    /// the streams, so sessions work across restarts of the caller.
    fn attach(&self, request: &AttachRequest) -> Result<AttachSession> {
        Err(crate::Error::InvalidArgument(format!(
            "attach to {} is not supported by this runtime",
            request.container_id
        )))
    }
}
