//! The streaming server's view of this node: container logs, exec and port-forward served
//! from the runtime. Containers are found by the labels the pod workers put on them, so
//! this needs no state of its own and works right after an agent restart. It also serves the
//! node's resource usage (Summary API and Prometheus endpoints) from a [`stats::Collector`].

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use skiff_runtime::runtime::{ContainerInfo, ExecRequest, Phase};
use skiff_runtime::Runtime;

use crate::pods::naming;
use crate::stats;
use crate::streaming::{Duplex, ExecOptions, ExecProcess, MetricsEndpoint, Result, StreamingBackend, StreamingError};

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
        let std_cmd = self.runtime.exec_command(&request).map_err(|e| StreamingError::Runtime(e.to_string()))?;
        let mut cmd = tokio::process::Command::from(std_cmd);
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
        Ok(ExecProcess { stdin, stdout, stderr, resize: None, exit })
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
