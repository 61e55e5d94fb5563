//! The kubelet Summary API (`stats/v1alpha1`, `GET /stats/summary`) built from two samples.
//!
//! Field names and units follow upstream so existing consumers (metrics-server, monitoring
//! agents) read it unchanged. One addition: every `cpu` block with a rate carries
//! `windowSeconds`, the interval its `usageNanoCores` was averaged over. Upstream leaves the
//! window implicit; skiff's API server reports it as the metrics API's `window`, which
//! metrics-server otherwise derives from its own scrape interval. Decoders that do not know
//! the field ignore it.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use super::host::FsUsage;
use super::{container_rate, node_rate, ContainerReading, Rate, Sample};

/// The whole summary.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    /// The node.
    pub node: NodeStats,
    /// Every pod with a running container.
    pub pods: Vec<PodStats>,
}

/// Node-level usage.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NodeStats {
    /// The node's name.
    pub node_name: String,
    /// Boot time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    /// CPU.
    pub cpu: CpuStats,
    /// Memory.
    pub memory: MemoryStats,
    /// The filesystem holding the agent's data directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fs: Option<FsStats>,
    /// The runtime's filesystems (images live under the same data directory).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<RuntimeStats>,
    /// Process limits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rlimit: Option<RlimitStats>,
}

/// CPU usage.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CpuStats {
    /// When it was read.
    pub time: String,
    /// Average usage over the window, in billionths of a core.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_nano_cores: Option<u64>,
    /// Cumulative usage since the container (or the machine) started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_core_nano_seconds: Option<u64>,
    /// skiff extension: the window `usageNanoCores` was averaged over, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window_seconds: Option<f64>,
}

/// Memory usage, in bytes.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MemoryStats {
    /// When it was read.
    pub time: String,
    /// What is left (node only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available_bytes: Option<u64>,
    /// In use, page cache included.
    pub usage_bytes: u64,
    /// Usage minus inactive file cache.
    pub working_set_bytes: u64,
    /// Anonymous memory (node only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_bytes: Option<u64>,
}

/// Filesystem usage.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FsStats {
    /// When it was read.
    pub time: String,
    /// Bytes available.
    pub available_bytes: u64,
    /// Total bytes.
    pub capacity_bytes: u64,
    /// Bytes used.
    pub used_bytes: u64,
    /// Free inodes.
    pub inodes_free: u64,
    /// Total inodes.
    pub inodes: u64,
    /// Used inodes.
    pub inodes_used: u64,
}

/// Runtime filesystems.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeStats {
    /// Where images are stored.
    pub image_fs: FsStats,
}

/// Process limits of the node.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RlimitStats {
    /// When it was read.
    pub time: String,
    /// Highest pid.
    pub maxpid: u64,
    /// Tasks now.
    pub curproc: u64,
}

/// Which pod.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PodReference {
    /// Name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// UID.
    pub uid: String,
}

/// One pod's usage: the sum of its containers'.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodStats {
    /// The pod.
    pub pod_ref: PodReference,
    /// When its sandbox was created.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    /// Its running containers.
    pub containers: Vec<ContainerStatsOut>,
    /// Pod CPU (present when every container has a rate).
    pub cpu: CpuStats,
    /// Pod memory.
    pub memory: MemoryStats,
    /// Processes in the pod.
    #[serde(rename = "process_stats")]
    pub process_stats: ProcessStats,
}

/// Process count.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ProcessStats {
    /// Processes (and threads) in the cgroups.
    pub process_count: u64,
}

/// One container's usage.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStatsOut {
    /// Name in the pod spec.
    pub name: String,
    /// When its process started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    /// CPU.
    pub cpu: CpuStats,
    /// Memory.
    pub memory: MemoryStats,
}

/// Extra node readings that are taken at request time rather than sampled.
#[derive(Debug, Clone, Default)]
pub struct NodeExtras {
    /// The data directory's filesystem.
    pub fs: Option<FsUsage>,
    /// `(pid_max, tasks)`.
    pub rlimit: Option<(u64, u64)>,
}

/// Kubernetes' timestamp format (`metav1.Time`: RFC 3339, whole seconds, `Z`).
pub fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn cpu(time: &str, cumulative: Option<u64>, rate: Option<Rate>) -> CpuStats {
    CpuStats {
        time: time.to_string(),
        usage_nano_cores: rate.map(|r| r.nano_cores),
        usage_core_nano_seconds: cumulative,
        window_seconds: rate.map(|r| (r.window.as_secs_f64() * 1000.0).round() / 1000.0),
    }
}

fn fs(time: &str, u: &FsUsage) -> FsStats {
    FsStats {
        time: time.to_string(),
        available_bytes: u.available,
        capacity_bytes: u.capacity,
        used_bytes: u.used,
        inodes_free: u.inodes_free,
        inodes: u.inodes,
        inodes_used: u.inodes.saturating_sub(u.inodes_free),
    }
}

/// Build the summary of node `node_name` from the latest sample `cur` and the one before it.
pub fn build(node_name: &str, prev: Option<&Sample>, cur: &Sample, extras: &NodeExtras) -> Summary {
    let time = timestamp(cur.time);
    let boot = DateTime::from_timestamp(cur.cpu.boot_time, 0).filter(|_| cur.cpu.boot_time > 0).map(timestamp);
    let node = NodeStats {
        node_name: node_name.to_string(),
        start_time: boot,
        cpu: cpu(&time, Some(cur.cpu.busy_ns), node_rate(prev, cur)),
        memory: MemoryStats {
            time: time.clone(),
            available_bytes: Some(cur.memory.available()),
            usage_bytes: cur.memory.usage,
            working_set_bytes: cur.memory.working_set,
            rss_bytes: Some(cur.memory.rss),
        },
        fs: extras.fs.as_ref().map(|u| fs(&time, u)),
        runtime: extras.fs.as_ref().map(|u| RuntimeStats { image_fs: fs(&time, u) }),
        rlimit: extras.rlimit.map(|(maxpid, curproc)| RlimitStats { time: time.clone(), maxpid, curproc }),
    };
    // Group containers by pod, keeping the runtime's order stable by sorting on the key.
    let mut by_pod: std::collections::BTreeMap<(String, String, String), Vec<&ContainerReading>> = Default::default();
    for c in &cur.containers {
        by_pod.entry((c.namespace.clone(), c.pod.clone(), c.pod_uid.clone())).or_default().push(c);
    }
    let pods = by_pod
        .into_iter()
        .map(|((namespace, name, uid), containers)| {
            let mut out = Vec::new();
            let (mut rate_sum, mut all_rated, mut window) = (0u64, true, std::time::Duration::ZERO);
            let (mut cumulative, mut ws, mut usage, mut procs) = (0u64, 0u64, 0u64, 0u64);
            for c in &containers {
                let rate = container_rate(prev, cur, c);
                match rate {
                    Some(r) => {
                        rate_sum += r.nano_cores;
                        window = window.max(r.window);
                    }
                    None => all_rated = false,
                }
                cumulative += c.stats.cpu_usage_ns;
                ws += c.stats.memory_working_set_bytes;
                usage += c.stats.memory_usage_bytes;
                procs += c.stats.pids;
                out.push(ContainerStatsOut {
                    name: c.container.clone(),
                    start_time: c.started_at.map(timestamp),
                    cpu: cpu(&time, Some(c.stats.cpu_usage_ns), rate),
                    memory: MemoryStats {
                        time: time.clone(),
                        available_bytes: None,
                        usage_bytes: c.stats.memory_usage_bytes,
                        working_set_bytes: c.stats.memory_working_set_bytes,
                        rss_bytes: None,
                    },
                });
            }
            // A pod rate missing a container's share would understate usage (and mislead
            // the autoscaler), so it is reported only when every container has one.
            let pod_rate = all_rated.then_some(Rate { nano_cores: rate_sum, window });
            PodStats {
                start_time: cur.pod_started.get(&uid).copied().map(timestamp),
                pod_ref: PodReference { name, namespace, uid },
                containers: out,
                cpu: cpu(&time, Some(cumulative), pod_rate),
                memory: MemoryStats { time: time.clone(), available_bytes: None, usage_bytes: usage, working_set_bytes: ws, rss_bytes: None },
                process_stats: ProcessStats { process_count: procs },
            }
        })
        .collect();
    Summary { node, pods }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use serde_json::json;

    use super::super::tests::{reading, sample};
    use super::*;

    #[test]
    fn summary_has_upstream_shape_and_rates() {
        let base = Instant::now();
        let prev = sample(base, 100, 10_000_000_000, vec![reading("c1", "main", 2_000_000_000, 50)]);
        let cur = sample(base, 110, 20_000_000_000, vec![reading("c1", "main", 7_000_000_000, 50), reading("c2", "side", 1_000_000_000, 105)]);
        let extras = NodeExtras {
            fs: Some(FsUsage { capacity: 1000, available: 400, used: 500, inodes: 100, inodes_free: 60 }),
            rlimit: Some((4_194_304, 300)),
        };
        let v = serde_json::to_value(build("node-a", Some(&prev), &cur, &extras)).unwrap();
        let node = &v["node"];
        assert_eq!(node["nodeName"], "node-a");
        assert_eq!(node["cpu"]["time"], "2025-01-01T00:01:50Z");
        // 10 s of CPU in 10 s: one core.
        assert_eq!(node["cpu"]["usageNanoCores"], 1_000_000_000u64);
        assert_eq!(node["cpu"]["usageCoreNanoSeconds"], 20_000_000_000u64);
        assert_eq!(node["cpu"]["windowSeconds"], 10.0);
        assert_eq!(node["memory"]["workingSetBytes"], 400u64 << 20);
        assert_eq!(node["memory"]["availableBytes"], (1u64 << 30) - (400 << 20));
        assert_eq!(node["fs"]["inodesUsed"], 40);
        assert_eq!(node["runtime"]["imageFs"]["capacityBytes"], 1000);
        assert_eq!(node["rlimit"], json!({"time": "2025-01-01T00:01:50Z", "maxpid": 4_194_304, "curproc": 300}));
        let pods = v["pods"].as_array().unwrap();
        assert_eq!(pods.len(), 1);
        let pod = &pods[0];
        assert_eq!(pod["podRef"], json!({"name": "busy", "namespace": "default", "uid": "uid-1"}));
        assert_eq!(pod["startTime"], "2025-01-01T00:00:00Z");
        assert_eq!(pod["containers"][0]["name"], "main");
        // main: 5 s over 10 s; side: 1 s since its start 5 s ago.
        assert_eq!(pod["containers"][0]["cpu"]["usageNanoCores"], 500_000_000u64);
        assert_eq!(pod["containers"][1]["cpu"]["usageNanoCores"], 200_000_000u64);
        assert_eq!(pod["containers"][1]["cpu"]["windowSeconds"], 5.0);
        assert_eq!(pod["cpu"]["usageNanoCores"], 700_000_000u64);
        assert_eq!(pod["memory"]["workingSetBytes"], 10u64 << 20);
        assert_eq!(pod["process_stats"]["process_count"], 4);
    }

    #[test]
    fn first_sample_has_no_rates() {
        let cur = sample(Instant::now(), 100, 5, vec![reading("c1", "main", 2_000_000_000, 10)]);
        let v = serde_json::to_value(build("n", None, &cur, &NodeExtras::default())).unwrap();
        assert!(v["node"]["cpu"].get("usageNanoCores").is_none(), "{v}");
        assert!(v["node"].get("fs").is_none());
        // The container started long before: its rate since start is still meaningful.
        assert_eq!(v["pods"][0]["containers"][0]["cpu"]["usageNanoCores"], 22_222_222u64);
    }
}
