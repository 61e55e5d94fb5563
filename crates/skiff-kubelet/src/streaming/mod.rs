//! The kubelet's streaming server (HTTPS, port 10250): container logs, exec, attach and
//! port-forward, in the wire protocols the real clients speak.
//!
//! Only the API server calls it (client certificate signed by the cluster CA); the API server
//! proxies `pods/log`, `pods/exec`, `pods/attach` and `pods/portforward` here and, after the
//! HTTP/1.1 upgrade, only copies bytes. So this server speaks every protocol kubectl 1.27-1.33
//! uses end to end:
//!
//! - exec/attach: WebSocket `v5.channel.k8s.io` / `v4.channel.k8s.io` ([`websocket`], [`exec`])
//!   and SPDY/3.1 with `X-Stream-Protocol-Version` ([`spdy`], [`exec`]);
//! - port-forward: SPDY/3.1 `portforward.k8s.io`, plain or tunnelled inside a WebSocket
//!   (`SPDY/3.1+portforward.k8s.io`) ([`portforward`]);
//! - logs: CRI-format log files decoded and filtered ([`logs`]).
//!
//! Containers are reached through [`StreamingBackend`], which the kubelet implements on top of
//! the runtime; [`local::LocalBackend`] runs host processes so all of this is testable without
//! containers.

pub mod exec;
pub mod local;
pub mod logs;
pub mod portforward;
pub mod server;
pub mod spdy;
pub mod websocket;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncWrite};

pub use server::{serve, tls_config};

/// Errors of the streaming server and its backend.
#[derive(Debug, thiserror::Error)]
pub enum StreamingError {
    /// The pod is not on this node.
    #[error("pod {namespace}/{pod} not found")]
    PodNotFound {
        /// Namespace.
        namespace: String,
        /// Pod name.
        pod: String,
    },
    /// The container is not in the pod (or has no such previous instance).
    #[error("container {container} not found in pod {namespace}/{pod}")]
    ContainerNotFound {
        /// Namespace.
        namespace: String,
        /// Pod name.
        pod: String,
        /// Container name.
        container: String,
    },
    /// The request is malformed (bad query parameter, missing streams).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The backend does not implement this operation.
    #[error("{0} is not supported by this node")]
    Unsupported(String),
    /// An I/O error, with what was being done.
    #[error("{context}: {source}")]
    Io {
        /// What failed (e.g. "reading log file /var/log/...").
        context: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The peer broke the wire protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The runtime failed (start of exec, sandbox gone, ...).
    #[error("runtime: {0}")]
    Runtime(String),
}

impl StreamingError {
    /// Attach context to an I/O error.
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| Self::Io { context, source }
    }

    /// The HTTP status this error is reported with.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::PodNotFound { .. } | Self::ContainerNotFound { .. } => 404,
            Self::BadRequest(_) | Self::Protocol(_) => 400,
            Self::Unsupported(_) => 501,
            Self::Io { .. } | Self::Runtime(_) => 500,
        }
    }
}

/// Result alias for this module.
pub type Result<T, E = StreamingError> = std::result::Result<T, E>;

/// Which standard streams an exec or attach wants, and whether it runs on a terminal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExecOptions {
    /// The client sends stdin.
    pub stdin: bool,
    /// The client wants stdout.
    pub stdout: bool,
    /// The client wants stderr (always false with a tty: the terminal merges them).
    pub stderr: bool,
    /// Allocate a terminal.
    pub tty: bool,
}

/// A terminal size, as the clients send it on the resize channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
pub struct TerminalSize {
    /// Columns.
    #[serde(rename = "Width")]
    pub width: u16,
    /// Rows.
    #[serde(rename = "Height")]
    pub height: u16,
}

/// A boxed reader of process output.
pub type BoxRead = Box<dyn AsyncRead + Send + Unpin>;
/// A boxed writer to process input.
pub type BoxWrite = Box<dyn AsyncWrite + Send + Unpin>;
/// Called with every terminal size the client reports.
pub type ResizeFn = Box<dyn Fn(TerminalSize) + Send + Sync>;
/// Resolves to the exit code once the process has exited.
pub type ExitFuture = Pin<Box<dyn Future<Output = Result<i32>> + Send>>;

/// A byte stream in both directions (a TCP connection into the pod, or a test double).
pub trait Duplex: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Duplex for T {}

/// A started exec (or an attach to the main process).
///
/// With a tty, `stdout` and `stdin` are the two directions of the terminal master and
/// `stderr` is `None`.
pub struct ExecProcess {
    /// The process's stdin, when requested. Dropping it closes stdin.
    pub stdin: Option<BoxWrite>,
    /// The process's stdout (or terminal output).
    pub stdout: Option<BoxRead>,
    /// The process's stderr.
    pub stderr: Option<BoxRead>,
    /// Applies terminal size changes (tty only).
    pub resize: Option<ResizeFn>,
    /// Resolves to the exit code.
    pub exit: ExitFuture,
}

impl std::fmt::Debug for ExecProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecProcess")
            .field("stdin", &self.stdin.is_some())
            .field("stdout", &self.stdout.is_some())
            .field("stderr", &self.stderr.is_some())
            .field("resize", &self.resize.is_some())
            .finish()
    }
}

/// What the kubelet provides to the streaming server: log files, processes in containers and
/// connections into pod network namespaces.
#[async_trait]
pub trait StreamingBackend: Send + Sync + 'static {
    /// The CRI-format log file of a container (`previous`: of its last terminated instance).
    async fn log_file(&self, namespace: &str, pod: &str, container: &str, previous: bool) -> Result<PathBuf>;

    /// Whether the container still writes to its log; `logs -f` ends when it stops.
    async fn container_running(&self, namespace: &str, pod: &str, container: &str) -> bool {
        let _ = (namespace, pod, container);
        true
    }

    /// Start `command` in the container.
    async fn exec(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        command: Vec<String>,
        opts: ExecOptions,
    ) -> Result<ExecProcess>;

    /// Attach to the container's main process.
    async fn attach(&self, namespace: &str, pod: &str, container: &str, opts: ExecOptions) -> Result<ExecProcess> {
        let _ = (namespace, pod, container, opts);
        Err(StreamingError::Unsupported("attach".into()))
    }

    /// Connect to `port` on the pod's loopback, inside its network namespace.
    async fn port_forward(&self, namespace: &str, pod: &str, port: u16) -> Result<Box<dyn Duplex>>;

    /// The Summary API document (`GET /stats/summary`).
    async fn stats_summary(&self) -> Result<serde_json::Value> {
        Err(StreamingError::Unsupported("stats summary".into()))
    }

    /// A Prometheus text exposition (`GET /metrics`, `/metrics/cadvisor`, `/metrics/resource`).
    async fn metrics_text(&self, which: MetricsEndpoint) -> Result<String> {
        Err(StreamingError::Unsupported(format!("metrics endpoint {which:?}")))
    }
}

/// Which of the kubelet's Prometheus endpoints is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsEndpoint {
    /// `/metrics`: the agent itself.
    Kubelet,
    /// `/metrics/cadvisor`: per-container usage.
    Cadvisor,
    /// `/metrics/resource`: the resource metrics metrics-server reads.
    Resource,
}
