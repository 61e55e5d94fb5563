//! The streaming server's view of this node: container logs, exec and port-forward served
//! from the runtime. Containers are found by the labels the pod workers put on them, so
//! this needs no state of its own and works right after an agent restart. It also serves the
//! node's resource usage (Summary API and Prometheus endpoints) from a [`stats::Collector`].

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use skiff_runtime::runtime::{AttachRequest, ContainerInfo, ExecRequest, Phase, SessionControl};
use skiff_runtime::Runtime;

use crate::pods::naming;
use crate::stats;
use crate::streaming::{
    BoxRead, BoxWrite, Duplex, ExecOptions, ExecProcess, MetricsEndpoint, ResizeFn, Result, StreamingBackend, StreamingError,
    TerminalSize,
};

/// Serves logs, exec and port-forward from the node's runtime.
pub struct RuntimeBackend {
    runtime: Arc<dyn Runtime>,
    stats: Arc<stats::Collector>,
    node_name: String,
    data_dir: PathBuf,
}

impl RuntimeBackend {
    /// A backend over `runtime`. Usage sampling starts right away when called inside a tokio
    /// runtime, so rates exist by the time anyone asks. The node is named after the host and
    /// its filesystem is `/` until [`RuntimeBackend::with_node`] says otherwise.
    pub fn new(runtime: Arc<dyn Runtime>) -> Self {
        let stats = stats::Collector::new(runtime.clone());
        stats.start();
        let node_name = nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_default();
        Self { runtime, stats, node_name, data_dir: PathBuf::from("/") }
    }

    /// Report usage as node `node_name`, with the filesystem holding `data_dir` as its disk.
    pub fn with_node(mut self, node_name: impl Into<String>, data_dir: impl Into<PathBuf>) -> Self {
        self.node_name = node_name.into();
        self.data_dir = data_dir.into();
        self
    }

    async fn samples(&self) -> Result<(Option<Arc<stats::Sample>>, Arc<stats::Sample>)> {
        self.stats.samples().await.map_err(|e| StreamingError::Runtime(format!("reading resource usage: {e}")))
    }

    async fn list(&self) -> Result<Vec<ContainerInfo>> {
        let rt = self.runtime.clone();
        tokio::task::spawn_blocking(move || rt.list_containers())
            .await
            .map_err(|e| StreamingError::Runtime(e.to_string()))?
            .map_err(|e| StreamingError::Runtime(e.to_string()))
    }

    /// The attempts of container `container` of pod `namespace/pod`, newest first.
    async fn attempts(&self, namespace: &str, pod: &str, container: &str) -> Result<Vec<ContainerInfo>> {
        let mut found: Vec<ContainerInfo> = self
            .list()
            .await?
            .into_iter()
            .filter(|c| {
                let l = &c.config.labels;
                l.get(naming::POD_NAMESPACE).map(String::as_str) == Some(namespace)
                    && l.get(naming::POD_NAME).map(String::as_str) == Some(pod)
                    && l.get(naming::CONTAINER_NAME).map(String::as_str) == Some(container)
            })
            .collect();
        found.sort_by_key(|c| {
            std::cmp::Reverse(c.config.labels.get(naming::CONTAINER_ATTEMPT).and_then(|a| a.parse::<u32>().ok()).unwrap_or(0))
        });
        if found.is_empty() {
            return Err(StreamingError::ContainerNotFound {
                namespace: namespace.into(),
                pod: pod.into(),
                container: container.into(),
            });
        }
        Ok(found)
    }

    async fn running(&self, namespace: &str, pod: &str, container: &str) -> Result<ContainerInfo> {
        let current = self.attempts(namespace, pod, container).await?.remove(0);
        if current.status.phase != Phase::Running {
            return Err(StreamingError::BadRequest(format!(
                "container {container} is not running in pod {namespace}/{pod}"
            )));
        }
        Ok(current)
    }
}

/// Ends an attach session when dropped.
struct EndSession(SessionControl);

impl Drop for EndSession {
    fn drop(&mut self) {
        self.0.end();
    }
}

#[async_trait]
impl StreamingBackend for RuntimeBackend {
    async fn log_file(&self, namespace: &str, pod: &str, container: &str, previous: bool) -> Result<PathBuf> {
        let attempts = self.attempts(namespace, pod, container).await?;
        let chosen = if previous {
            attempts.into_iter().nth(1).ok_or_else(|| {
                StreamingError::BadRequest(format!(
                    "previous terminated container \"{container}\" in pod \"{pod}\" not found"
                ))
            })?
        } else {
            attempts.into_iter().next().expect("non-empty")
        };
        Ok(chosen.log_path)
    }

    async fn container_running(&self, namespace: &str, pod: &str, container: &str) -> bool {
        self.attempts(namespace, pod, container)
            .await
            .ok()
            .and_then(|a| a.into_iter().next())
            .is_some_and(|c| c.status.phase == Phase::Running)
    }

    async fn exec(&self, namespace: &str, pod: &str, container: &str, command: Vec<String>, opts: ExecOptions) -> Result<ExecProcess> {
        let target = self.running(namespace, pod, container).await?;
        let request = ExecRequest {
            container_id: target.config.id.clone(),
            command,
            tty: opts.tty.then_some((24, 80)),
            ..Default::default()
        };
        let prepared = self.runtime.exec_streaming(&request).map_err(|e| StreamingError::Runtime(e.to_string()))?;
        let resize = prepared.resize.map(|r| {
            Box::new(move |size: TerminalSize| {
                if let Err(e) = r.resize(size.height, size.width) {
                    tracing::debug!(error = %e, "exec resize failed");
                }
            }) as ResizeFn
        });
        let mut cmd = tokio::process::Command::from(prepared.command);
        cmd.stdin(if opts.stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(if opts.stdout || opts.tty { Stdio::piped() } else { Stdio::null() })
            .stderr(if opts.stderr && !opts.tty { Stdio::piped() } else { Stdio::null() })
            .kill_on_drop(false);
        let mut child = cmd.spawn().map_err(StreamingError::io("starting exec"))?;
        let stdin = child.stdin.take().map(|s| Box::new(s) as crate::streaming::BoxWrite);
        let stdout = child.stdout.take().map(|s| Box::new(s) as crate::streaming::BoxRead);
        let stderr = child.stderr.take().map(|s| Box::new(s) as crate::streaming::BoxRead);
        let exit = Box::pin(async move {
            let status = child.wait().await.map_err(StreamingError::io("waiting for exec"))?;
            Ok(status.code().unwrap_or(137))
        });
        Ok(ExecProcess { stdin, stdout, stderr, resize, exit })
    }

    async fn attach(&self, namespace: &str, pod: &str, container: &str, opts: ExecOptions) -> Result<ExecProcess> {
        let target = self.running(namespace, pod, container).await?;
        let request = AttachRequest {
            container_id: target.config.id.clone(),
            stdin: opts.stdin,
            stdout: opts.stdout || opts.tty,
            stderr: opts.stderr,
        };
        let rt = self.runtime.clone();
        let session = tokio::task::spawn_blocking(move || rt.attach(&request))
            .await
            .map_err(|e| StreamingError::Runtime(e.to_string()))?
            .map_err(|e| StreamingError::Runtime(e.to_string()))?;
        let io = |what: &'static str| StreamingError::io(format!("attaching to {container}: {what}"));
        let stdin = match session.stdin {
            // A terminal master is not a pipe; its (rare, short) writes go to the blocking pool.
            Some(f) if session.tty => Some(Box::new(tokio::fs::File::from_std(f)) as BoxWrite),
            Some(f) => Some(Box::new(tokio::net::unix::pipe::Sender::from_file(f).map_err(io("stdin"))?) as BoxWrite),
            None => None,
        };
        let reader = |f: Option<std::fs::File>, what: &'static str| -> Result<Option<BoxRead>> {
            f.map(|f| tokio::net::unix::pipe::Receiver::from_file(f).map(|r| Box::new(r) as BoxRead).map_err(io(what)))
                .transpose()
        };
        let stdout = reader(session.stdout, "stdout")?;
        let stderr = reader(session.stderr, "stderr")?;
        let control = session.control;
        let resize = match (session.tty, control.try_clone()) {
            (true, Ok(c)) => Some(Box::new(move |size: TerminalSize| {
                if let Err(e) = c.resize(size.height, size.width) {
                    tracing::debug!(error = %e, "attach resize failed");
                }
            }) as ResizeFn),
            _ => None,
        };
        let ender = control.try_clone().map_err(io("session"))?;
        // The session lasts until the container exits and its output is drained (the shim
        // then closes it); dropping this future first (the client went away) ends it here.
        let exit = Box::pin(async move {
            let _end = EndSession(ender);
            let _ = tokio::task::spawn_blocking(move || control.wait()).await;
            Ok(0)
        });
        Ok(ExecProcess { stdin, stdout, stderr, resize, exit })
    }

    async fn port_forward(&self, namespace: &str, pod: &str, port: u16) -> Result<Box<dyn Duplex>> {
        let rt = self.runtime.clone();
        let sandboxes = tokio::task::spawn_blocking(move || rt.list_sandboxes())
            .await
            .map_err(|e| StreamingError::Runtime(e.to_string()))?
            .map_err(|e| StreamingError::Runtime(e.to_string()))?;
        let sandbox = sandboxes
            .into_iter()
            .find(|s| {
                let l = &s.config.labels;
                l.get(naming::POD_NAMESPACE).map(String::as_str) == Some(namespace)
                    && l.get(naming::POD_NAME).map(String::as_str) == Some(pod)
            })
            .ok_or_else(|| StreamingError::PodNotFound { namespace: namespace.into(), pod: pod.into() })?;
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let stream = crate::netns::connect_tcp(sandbox.netns_path().as_deref(), addr, Duration::from_secs(5))
            .await
            .map_err(StreamingError::io(format!("connecting to port {port} in pod {namespace}/{pod}")))?;
        Ok(Box::new(stream))
    }

    async fn stats_summary(&self) -> Result<serde_json::Value> {
        let (prev, cur) = self.samples().await?;
        let data_dir = self.data_dir.clone();
        // statvfs and /proc reads are quick but blocking; a hung network filesystem must not
        // stall the async workers.
        let extras = tokio::task::spawn_blocking(move || stats::summary::NodeExtras {
            fs: stats::host::read_fs(&data_dir).map_err(|e| tracing::debug!(error = %e, "stats: fs")).ok(),
            rlimit: stats::host::read_process_limits().map_err(|e| tracing::debug!(error = %e, "stats: rlimit")).ok(),
        })
        .await
        .map_err(|e| StreamingError::Runtime(format!("reading node filesystems: {e}")))?;
        let summary = stats::summary::build(&self.node_name, prev.as_deref(), &cur, &extras);
        serde_json::to_value(summary).map_err(|e| StreamingError::Runtime(format!("encoding the summary: {e}")))
    }

    async fn metrics_text(&self, which: MetricsEndpoint) -> Result<String> {
        let (_, cur) = self.samples().await?;
        Ok(match which {
            MetricsEndpoint::Cadvisor => stats::prometheus::cadvisor(&cur),
            MetricsEndpoint::Resource => stats::prometheus::resource(&cur),
            MetricsEndpoint::Kubelet => {
                let process = stats::host::read_self(cur.cpu.boot_time).map_err(|e| tracing::debug!(error = %e, "stats: self")).ok();
                stats::prometheus::kubelet(&self.node_name, &cur, process.as_ref())
            }
        })
    }
}
