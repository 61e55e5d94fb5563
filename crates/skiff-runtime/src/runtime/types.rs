//! Request and status types of the [`Runtime`](super::Runtime) API.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// What a pod sandbox needs: an id, a hostname and DNS settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxConfig {
    /// Sandbox id (path-safe, at most 64 characters).
    pub id: String,
    /// Hostname inside the pod (the pod name, as Kubernetes sets it).
    pub hostname: String,
    /// Share the host's network namespace (`hostNetwork: true`).
    #[serde(default)]
    pub host_network: bool,
    /// Lines of `/etc/resolv.conf`; empty copies the host's.
    #[serde(default)]
    pub dns: Vec<String>,
    /// Extra `/etc/hosts` entries as (ip, names).
    #[serde(default)]
    pub hosts: Vec<(String, Vec<String>)>,
    /// Labels, for listing.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Give the pod one `/dev/shm`, shared by its containers (a pod of more than one
    /// container). Otherwise each container gets a private one (the same 64 MiB tmpfs, but
    /// emptied when the container restarts) and nothing is mounted on the host for it: every
    /// host mount costs each later container create (see `runtime/pins.rs`).
    #[serde(default)]
    pub shared_shm: bool,
}

/// A created sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxInfo {
    /// The config it was created from.
    pub config: SandboxConfig,
    /// Namespace files (`net`, `ipc`, `uts`): `<state>/sandboxes/<id>/ns/` in the pin
    /// holder's mount namespace, reached through its root (`/proc/<holder>/root/...`; see
    /// `runtime/pins.rs`).
    pub ns_dir: PathBuf,
    /// Creation time (RFC 3339).
    pub created_at: String,
}

impl SandboxInfo {
    /// The pinned network namespace, for the network hook (`None` on the host network).
    pub fn netns_path(&self) -> Option<PathBuf> {
        (!self.config.host_network).then(|| self.ns_dir.join("net"))
    }
}

/// A mount into a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// Path inside the container.
    pub destination: String,
    /// What to mount.
    pub kind: MountKind,
    /// Mount read-only.
    #[serde(default)]
    pub readonly: bool,
}

/// The source of a [`Mount`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum MountKind {
    /// Bind-mount a host path.
    Bind {
        /// Host path.
        source: PathBuf,
    },
    /// A fresh tmpfs, optionally size-limited.
    Tmpfs {
        /// Size limit in bytes.
        size: Option<u64>,
    },
}

/// A resource limit (`setrlimit`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rlimit {
    /// Name as in the OCI spec, such as `RLIMIT_NOFILE`.
    pub kind: String,
    /// Soft limit.
    pub soft: u64,
    /// Hard limit.
    pub hard: u64,
}

/// Cgroup limits derived from a container's requests and limits.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    /// Relative CPU weight (cgroup v1 `cpu.shares`; from the CPU request).
    pub cpu_shares: Option<u64>,
    /// CPU quota per period in microseconds (from the CPU limit).
    pub cpu_quota: Option<i64>,
    /// CPU period in microseconds (100000 unless set).
    pub cpu_period: Option<u64>,
    /// Memory limit in bytes; exceeding it gets the container OOM-killed.
    pub memory_limit: Option<i64>,
    /// Maximum number of processes.
    pub pids_limit: Option<i64>,
}

/// Process identity.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// User id (`runAsUser`).
    pub uid: u32,
    /// Group id (`runAsGroup`); the user's primary group when unset.
    pub gid: Option<u32>,
    /// Supplementary groups.
    #[serde(default)]
    pub additional_gids: Vec<u32>,
}

/// Which system calls a container may make (`securityContext.seccompProfile`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum SeccompProfile {
    /// No filter (Kubernetes' default when no profile is set).
    #[default]
    Unconfined,
    /// skiff's built-in allow-list, adjusted to the container's capabilities.
    RuntimeDefault,
    /// An OCI-format profile (`linux.seccomp` JSON) read from this file when the container
    /// is created.
    Localhost {
        /// Absolute path of the profile.
        path: PathBuf,
    },
}

/// What a container runs and how it is confined.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerConfig {
    /// Container id (path-safe, at most 64 characters).
    pub id: String,
    /// Sandbox whose namespaces the container joins; `None` gives it its own.
    pub sandbox_id: Option<String>,
    /// Image reference or id.
    pub image: String,
    /// Kubernetes `command`: replaces the image entrypoint (and drops its cmd).
    #[serde(default)]
    pub command: Vec<String>,
    /// Kubernetes `args`: replaces the image cmd.
    #[serde(default)]
    pub args: Vec<String>,
    /// Environment, overriding the image's variables of the same name.
    #[serde(default)]
    pub env: Vec<(String, String)>,
    /// Working directory; the image's, else `/`.
    pub working_dir: Option<String>,
    /// User; the image's (numeric or from its `/etc/passwd`), else root.
    pub user: Option<User>,
    /// Hostname when the container has no sandbox.
    pub hostname: Option<String>,
    /// Extra mounts.
    #[serde(default)]
    pub mounts: Vec<Mount>,
    /// Mount the root filesystem read-only.
    #[serde(default)]
    pub readonly_rootfs: bool,
    /// All capabilities, no masked paths, devices allowed.
    #[serde(default)]
    pub privileged: bool,
    /// Capabilities added to the default set (`NET_ADMIN` or `CAP_NET_ADMIN`).
    #[serde(default)]
    pub capabilities_add: Vec<String>,
    /// Capabilities dropped from the default set (`ALL` drops all).
    #[serde(default)]
    pub capabilities_drop: Vec<String>,
    /// Set `no_new_privs` (`allowPrivilegeEscalation: false`).
    #[serde(default)]
    pub no_new_privileges: bool,
    /// Seccomp profile; ignored for privileged containers, which run unconfined.
    #[serde(default)]
    pub seccomp: SeccompProfile,
    /// Resource limits.
    #[serde(default)]
    pub rlimits: Vec<Rlimit>,
    /// Cgroup limits.
    #[serde(default)]
    pub resources: Resources,
    /// Where the CRI log goes; `<root>/containers/<id>/container.log` when unset.
    pub log_path: Option<PathBuf>,
    /// Labels, for listing.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Give the process a stdin that attach sessions write to (Kubernetes `stdin`);
    /// otherwise it reads `/dev/null`.
    #[serde(default)]
    pub stdin: bool,
    /// Close stdin once the first attach session ends (Kubernetes `stdinOnce`).
    #[serde(default)]
    pub stdin_once: bool,
    /// Run the process on a pseudo-terminal (Kubernetes `tty`); its output is logged as
    /// stdout.
    #[serde(default)]
    pub tty: bool,
}

/// Lifecycle phase of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Phase {
    /// Created, not started.
    Created,
    /// Its process runs.
    Running,
    /// Its process has exited.
    Exited,
    /// The shim is gone without recording an exit (the node crashed, for example).
    Unknown,
}

/// The state of a container as recorded by its shim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerStatus {
    /// Container id.
    pub id: String,
    /// Lifecycle phase.
    pub phase: Phase,
    /// Host pid of the container's init process, while it exists.
    pub pid: Option<i32>,
    /// Pid of the shim that owns the container.
    pub shim_pid: Option<i32>,
    /// Creation time (RFC 3339 with nanoseconds).
    pub created_at: Option<String>,
    /// Start time.
    pub started_at: Option<String>,
    /// Exit time.
    pub finished_at: Option<String>,
    /// Exit code; 128 + signal number when killed by a signal.
    pub exit_code: Option<i32>,
    /// `Completed`, `Error` or `OOMKilled`, as Kubernetes reports it.
    pub reason: Option<String>,
    /// Human-readable detail.
    pub message: Option<String>,
}

impl ContainerStatus {
    /// A fresh status in the given phase.
    pub fn new(id: &str, phase: Phase) -> Self {
        Self {
            id: id.to_string(),
            phase,
            pid: None,
            shim_pid: None,
            created_at: None,
            started_at: None,
            finished_at: None,
            exit_code: None,
            reason: None,
            message: None,
        }
    }
}

/// A container as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerInfo {
    /// The config it was created from.
    pub config: ContainerConfig,
    /// Its current status.
    pub status: ContainerStatus,
    /// Where its CRI log is.
    pub log_path: PathBuf,
}

/// Resource usage read from a container's cgroup.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerStats {
    /// Cumulative CPU time in nanoseconds.
    pub cpu_usage_ns: u64,
    /// Memory working set (usage minus inactive file cache), in bytes.
    pub memory_working_set_bytes: u64,
    /// Memory usage including cache, in bytes.
    pub memory_usage_bytes: u64,
    /// Number of processes.
    pub pids: u64,
}

/// A command to run in a running container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecRequest {
    /// Target container.
    pub container_id: String,
    /// Command and arguments.
    pub command: Vec<String>,
    /// Extra environment.
    #[serde(default)]
    pub env: Vec<(String, String)>,
    /// Working directory; the container's when unset.
    pub working_dir: Option<String>,
    /// Allocate a terminal of this size (rows, columns); stdin and stdout of the exec
    /// command are then relayed to it (stderr is merged into the terminal).
    #[serde(default)]
    pub tty: Option<(u16, u16)>,
    /// For [`Runtime::exec_sync`](super::Runtime::exec_sync): kill the process and fail with
    /// [`Error::Timeout`](crate::Error::Timeout) when it runs longer (exec probes' `timeoutSeconds`).
    #[serde(default)]
    pub timeout: Option<std::time::Duration>,
}

/// Which streams an attach session wants.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachRequest {
    /// Target container.
    pub container_id: String,
    /// Write to the container's stdin (ignored when it has none).
    #[serde(default)]
    pub stdin: bool,
    /// Receive its stdout (with a terminal: all its output).
    #[serde(default)]
    pub stdout: bool,
    /// Receive its stderr (never with a terminal).
    #[serde(default)]
    pub stderr: bool,
}

/// The result of an [`ExecRequest`] run to completion.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOutput {
    /// Exit code (128 + signal when killed).
    pub exit_code: i32,
    /// Captured standard output.
    pub stdout: Vec<u8>,
    /// Captured standard error.
    pub stderr: Vec<u8>,
}

/// An image as the node agent sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    /// Image id (config digest).
    pub id: String,
    /// Normalized references.
    pub names: Vec<String>,
    /// Stored size in bytes.
    pub size: u64,
}
