//! Resource usage of the node and its containers: what the kubelet's embedded cAdvisor does.
//!
//! A [`Collector`] samples the node (`/proc/stat`, `/proc/meminfo`) and every running
//! container (the runtime's cgroup statistics, found by the pod labels the pod workers put
//! on them) every [`SAMPLE_INTERVAL`], keeping the last two samples. CPU usage is a rate, so
//! it needs two readings of the cumulative counters: `usageNanoCores` is the difference
//! between the two samples divided by the time between them, and that interval is the
//! window metrics consumers report. Memory is the working set at the latest sample.
//!
//! Those samples are served as the Summary API ([`summary`], `GET /stats/summary`, which the
//! API server's `metrics.k8s.io` reads) and in the Prometheus text format ([`prometheus`],
//! `/metrics/cadvisor`, `/metrics/resource`, `/metrics`).

pub mod host;
pub mod prometheus;
pub mod summary;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use skiff_runtime::runtime::{ContainerStats, Phase};
use skiff_runtime::Runtime;

use crate::pods::naming;

/// Time between samples once running: the kubelet's housekeeping interval is 10 s, and
/// metrics-server's resolution is 15 s, so consumers never see staler data than that.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(10);
/// Time between the very first two samples, so node CPU has a rate soon after start.
pub const FIRST_INTERVAL: Duration = Duration::from_secs(1);
/// Shortest window a rate is computed over: shorter ones are mostly noise.
pub const MIN_WINDOW: Duration = Duration::from_secs(1);

/// Errors reading usage.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A file did not have the expected format.
    #[error("parsing {path}: {detail}")]
    Parse {
        /// The file.
        path: String,
        /// What was wrong.
        detail: String,
    },
    /// `statvfs` failed.
    #[error("statvfs {path}: {source}")]
    Statvfs {
        /// The path asked about.
        path: String,
        /// The cause.
        source: nix::Error,
    },
    /// The runtime could not list containers or sandboxes.
    #[error("{what}: {source}")]
    Runtime {
        /// What was being done.
        what: String,
        /// The runtime error.
        source: skiff_runtime::Error,
    },
    /// The blocking sampler task failed.
    #[error("sampler task: {0}")]
    Task(String),
}

/// One running container's reading.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerReading {
    /// Runtime id (one per attempt, so restarts start new counters).
    pub id: String,
    /// Pod namespace.
    pub namespace: String,
    /// Pod name.
    pub pod: String,
    /// Pod UID.
    pub pod_uid: String,
    /// Container name in the pod spec.
    pub container: String,
    /// Image reference.
    pub image: String,
    /// When its process started.
    pub started_at: Option<DateTime<Utc>>,
    /// Cgroup readings.
    pub stats: ContainerStats,
}

/// Everything read at one instant.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Wall-clock time of the reading (reported as `time`/`timestamp`).
    pub time: DateTime<Utc>,
    /// Monotonic time of the reading, for intervals that wall-clock jumps cannot distort.
    pub instant: Instant,
    /// Node CPU.
    pub cpu: host::CpuTimes,
    /// Node memory.
    pub memory: host::Memory,
    /// Running containers.
    pub containers: Vec<ContainerReading>,
    /// Pod UID -> when its sandbox was created (the pod's start on this node).
    pub pod_started: BTreeMap<String, DateTime<Utc>>,
    /// Containers known to the runtime by state (`running`, `exited`, ...), for `/metrics`.
    pub container_states: BTreeMap<String, u64>,
}

/// A CPU rate and the window it was measured over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Average usage over the window, in billionths of a core.
    pub nano_cores: u64,
    /// The window.
    pub window: Duration,
}

/// Average usage between two readings of a cumulative CPU counter; `None` when there is no
/// interval or the counter went backwards (a different cgroup under the same name).
pub fn usage_nano_cores(prev_ns: u64, cur_ns: u64, elapsed: Duration) -> Option<u64> {
    let elapsed_ns = elapsed.as_nanos();
    if elapsed_ns == 0 || cur_ns < prev_ns {
        return None;
    }
    u64::try_from(u128::from(cur_ns - prev_ns) * 1_000_000_000 / elapsed_ns).ok()
}

/// The node's CPU rate between the two samples.
pub fn node_rate(prev: Option<&Sample>, cur: &Sample) -> Option<Rate> {
    let prev = prev?;
    let window = cur.instant.checked_duration_since(prev.instant)?;
    if window < MIN_WINDOW {
        return None;
    }
    Some(Rate { nano_cores: usage_nano_cores(prev.cpu.busy_ns, cur.cpu.busy_ns, window)?, window })
}

/// A container's CPU rate: between the two samples when both saw it; for a container that
/// started after the earlier sample, since its start (its cgroup counted from zero then),
/// so new pods have usage at their first sample instead of one interval later.
pub fn container_rate(prev: Option<&Sample>, cur: &Sample, c: &ContainerReading) -> Option<Rate> {
    if let Some(p) = prev.and_then(|p| p.containers.iter().find(|pc| pc.id == c.id)) {
        let window = cur.instant.checked_duration_since(prev?.instant)?;
        return Some(Rate { nano_cores: usage_nano_cores(p.stats.cpu_usage_ns, c.stats.cpu_usage_ns, window)?, window });
    }
    let started = c.started_at?;
    if prev.is_some_and(|p| started < p.time) {
        // Running at the earlier sample but not read then: no trustworthy start point.
        return None;
    }
    let window = (cur.time - started).to_std().ok().filter(|w| *w >= MIN_WINDOW)?;
    Some(Rate { nano_cores: usage_nano_cores(0, c.stats.cpu_usage_ns, window)?, window })
}

fn parse_time(s: Option<&str>) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s?).ok().map(|t| t.with_timezone(&Utc))
}

/// Read the node and every running container now. Blocking (files and the runtime).
pub fn take_sample(runtime: &dyn Runtime) -> Result<Sample, StatsError> {
    let cpu = host::read_cpu()?;
    let memory = host::read_memory()?;
    let listed = runtime.list_containers().map_err(|source| StatsError::Runtime { what: "listing containers".into(), source })?;
    let sandboxes = runtime.list_sandboxes().map_err(|source| StatsError::Runtime { what: "listing sandboxes".into(), source })?;
    let mut container_states = BTreeMap::new();
    let mut containers = Vec::new();
    for info in listed {
        let state = match info.status.phase {
            Phase::Created => "created",
            Phase::Running => "running",
            Phase::Exited => "exited",
            Phase::Unknown => "unknown",
        };
        *container_states.entry(state.to_string()).or_insert(0) += 1;
        let labels = &info.config.labels;
        let label = |k: &str| labels.get(k).cloned().unwrap_or_default();
        if info.status.phase != Phase::Running || !labels.contains_key(naming::POD_UID) {
            continue;
        }
        // A container that exits between the listing and this read has no cgroup any more;
        // it is simply not part of this sample.
        let Ok(stats) = runtime.stats(&info.config.id) else { continue };
        containers.push(ContainerReading {
            id: info.config.id.clone(),
            namespace: label(naming::POD_NAMESPACE),
            pod: label(naming::POD_NAME),
            pod_uid: label(naming::POD_UID),
            container: label(naming::CONTAINER_NAME),
            image: info.config.image.clone(),
            started_at: parse_time(info.status.started_at.as_deref()),
            stats,
        });
    }
    let pod_started = sandboxes
        .iter()
        .filter_map(|s| Some((s.config.labels.get(naming::POD_UID)?.clone(), parse_time(Some(&s.created_at))?)))
        .collect();
    Ok(Sample { time: Utc::now(), instant: Instant::now(), cpu, memory, containers, pod_started, container_states })
}

#[derive(Default)]
struct Window {
    prev: Option<Arc<Sample>>,
    last: Option<Arc<Sample>>,
}

/// Samples the node and its containers in the background and keeps the last two samples.
pub struct Collector {
    runtime: Arc<dyn Runtime>,
    window: Mutex<Window>,
    started: AtomicBool,
}

impl Collector {
    /// A collector over `runtime`; sampling begins with [`Collector::start`].
    pub fn new(runtime: Arc<dyn Runtime>) -> Arc<Self> {
        Arc::new(Self { runtime, window: Mutex::new(Window::default()), started: AtomicBool::new(false) })
    }

    /// Start the sampling task on the current tokio runtime, once; a no-op outside one (the
    /// first request starts it then). The task holds only a weak reference, so it ends when
    /// the collector is dropped.
    pub fn start(self: &Arc<Self>) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else { return };
        if self.started.swap(true, Ordering::SeqCst) {
            return;
        }
        let weak = Arc::downgrade(self);
        handle.spawn(sample_loop(weak));
    }

    /// Take one sample now and make it the latest.
    pub async fn sample_now(&self) -> Result<Arc<Sample>, StatsError> {
        let rt = self.runtime.clone();
        let sample = tokio::task::spawn_blocking(move || take_sample(rt.as_ref()))
            .await
            .map_err(|e| StatsError::Task(e.to_string()))??;
        let sample = Arc::new(sample);
        let mut w = self.window.lock().expect("stats window lock poisoned");
        w.prev = w.last.take();
        w.last = Some(sample.clone());
        Ok(sample)
    }

    /// The earlier and the latest sample. Before the sampler has produced one (first request
    /// right after start), one is taken now; rates then appear from the next sample on.
    pub async fn samples(self: &Arc<Self>) -> Result<(Option<Arc<Sample>>, Arc<Sample>), StatsError> {
        self.start();
        {
            let w = self.window.lock().expect("stats window lock poisoned");
            if let Some(last) = &w.last {
                return Ok((w.prev.clone(), last.clone()));
            }
        }
        let last = self.sample_now().await?;
        let w = self.window.lock().expect("stats window lock poisoned");
        Ok((w.prev.clone(), last))
    }
}

async fn sample_loop(weak: Weak<Collector>) {
    let mut delay = Duration::ZERO;
    let mut taken = 0u32;
    loop {
        tokio::time::sleep(delay).await;
        let Some(collector) = weak.upgrade() else { return };
        if let Err(e) = collector.sample_now().await {
            tracing::debug!(error = %e, "stats: sample failed");
        }
        drop(collector);
        taken += 1;
        delay = if taken == 1 { FIRST_INTERVAL } else { SAMPLE_INTERVAL };
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A sample at `t` seconds (monotonic base `base`) with the given node busy time.
    pub(crate) fn sample(base: Instant, t: u64, busy_ns: u64, containers: Vec<ContainerReading>) -> Sample {
        let epoch = DateTime::parse_from_rfc3339("2025-01-01T00:00:00Z").unwrap().with_timezone(&Utc);
        Sample {
            time: epoch + chrono::Duration::seconds(t as i64),
            instant: base + Duration::from_secs(t),
            cpu: host::CpuTimes { busy_ns, cores: 2, boot_time: 1_735_600_000 },
            memory: host::Memory { total: 1 << 30, usage: 600 << 20, working_set: 400 << 20, rss: 300 << 20 },
            containers,
            pod_started: BTreeMap::from([("uid-1".to_string(), epoch)]),
            container_states: BTreeMap::from([("running".to_string(), 1), ("exited".to_string(), 2)]),
        }
    }

    pub(crate) fn reading(id: &str, container: &str, cpu_ns: u64, started_secs: i64) -> ContainerReading {
        let epoch = DateTime::parse_from_rfc3339("2025-01-01T00:00:00Z").unwrap().with_timezone(&Utc);
        ContainerReading {
            id: id.into(),
            namespace: "default".into(),
            pod: "busy".into(),
            pod_uid: "uid-1".into(),
            container: container.into(),
            image: "skiff.test/busybox:1".into(),
            started_at: Some(epoch + chrono::Duration::seconds(started_secs)),
            stats: ContainerStats { cpu_usage_ns: cpu_ns, memory_working_set_bytes: 5 << 20, memory_usage_bytes: 8 << 20, pids: 2 },
        }
    }

    #[test]
    fn rate_is_counter_delta_over_elapsed_time() {
        // Half a core for 10 s: 5e9 ns of CPU.
        assert_eq!(usage_nano_cores(1_000_000_000, 6_000_000_000, Duration::from_secs(10)), Some(500_000_000));
        // Two full cores.
        assert_eq!(usage_nano_cores(0, 30_000_000_000, Duration::from_secs(15)), Some(2_000_000_000));
        assert_eq!(usage_nano_cores(5, 5, Duration::from_secs(1)), Some(0));
        // Counter reset (new cgroup) and zero-length intervals give no rate.
        assert_eq!(usage_nano_cores(10, 5, Duration::from_secs(1)), None);
        assert_eq!(usage_nano_cores(0, 5, Duration::ZERO), None);
    }

    #[test]
    fn node_rate_needs_two_samples_a_window_apart() {
        let base = Instant::now();
        let a = sample(base, 0, 10_000_000_000, vec![]);
        let b = sample(base, 10, 25_000_000_000, vec![]);
        assert_eq!(node_rate(Some(&a), &b), Some(Rate { nano_cores: 1_500_000_000, window: Duration::from_secs(10) }));
        assert_eq!(node_rate(None, &b), None);
        let too_close = Sample { instant: a.instant + Duration::from_millis(200), ..a.clone() };
        assert_eq!(node_rate(Some(&a), &too_close), None);
    }

    #[test]
    fn container_rate_between_samples_or_since_start() {
        let base = Instant::now();
        let prev = sample(base, 100, 0, vec![reading("c1", "main", 2_000_000_000, 50)]);
        let cur = sample(base, 110, 0, vec![reading("c1", "main", 12_000_000_000, 50), reading("c2", "side", 1_000_000_000, 105)]);
        // Seen twice: 10 s of CPU over 10 s is one core.
        let r = container_rate(Some(&prev), &cur, &cur.containers[0]).unwrap();
        assert_eq!((r.nano_cores, r.window), (1_000_000_000, Duration::from_secs(10)));
        // Started at 105, read at 110: 1 s of CPU over 5 s.
        let r = container_rate(Some(&prev), &cur, &cur.containers[1]).unwrap();
        assert_eq!((r.nano_cores, r.window), (200_000_000, Duration::from_secs(5)));
        // Started before the earlier sample but missing from it: no rate.
        let old = reading("c3", "x", 1_000_000_000, 90);
        assert_eq!(container_rate(Some(&prev), &cur, &old), None);
        // A restart under a new id starts from zero instead of going negative.
        let restarted = reading("c1b", "main", 100_000_000, 109);
        assert_eq!(container_rate(Some(&prev), &cur, &restarted).unwrap().window, Duration::from_secs(1));
    }
}
