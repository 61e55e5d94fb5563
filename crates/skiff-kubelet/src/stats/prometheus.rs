//! The Prometheus text format (version 0.0.4) of the kubelet's metrics endpoints:
//!
//! - `/metrics/cadvisor`: per-container counters and gauges as cAdvisor names them, plus the
//!   root container (`id="/"`, the whole machine) and machine facts;
//! - `/metrics/resource`: the small stable set metrics-server scrapes (node, pod and
//!   container CPU seconds and working set);
//! - `/metrics`: the agent itself (running pods and containers, its process).
//!
//! Samples carry the millisecond timestamp of the reading they come from, as cAdvisor's do,
//! so a scraper sees when the value was measured rather than when it was fetched.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use super::host::SelfProcess;
use super::Sample;

/// The content type of every endpoint here.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Quote a label value: backslash, double quote and newline are escaped.
pub fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

struct Out {
    text: String,
    ts: i64,
}

impl Out {
    fn new(sample: &Sample) -> Self {
        Self { text: String::new(), ts: sample.time.timestamp_millis() }
    }

    fn header(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn line(&mut self, name: &str, labels: &[(&str, &str)], value: f64, timestamped: bool) {
        self.text.push_str(name);
        if !labels.is_empty() {
            let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
            let _ = write!(self.text, "{{{}}}", l.join(","));
        }
        let _ = write!(self.text, " {value}");
        if timestamped {
            let _ = write!(self.text, " {}", self.ts);
        }
        self.text.push('\n');
    }
}

fn secs(ns: u64) -> f64 {
    ns as f64 / 1e9
}

/// `/metrics/cadvisor` from the latest sample.
pub fn cadvisor(cur: &Sample) -> String {
    let mut o = Out::new(cur);
    let root = [("container", ""), ("id", "/"), ("image", ""), ("name", ""), ("namespace", ""), ("pod", "")];
    let label_sets: Vec<[(&str, &str); 6]> = cur
        .containers
        .iter()
        .map(|c| {
            [
                ("container", c.container.as_str()),
                ("id", c.id.as_str()),
                ("image", c.image.as_str()),
                ("name", c.id.as_str()),
                ("namespace", c.namespace.as_str()),
                ("pod", c.pod.as_str()),
            ]
        })
        .collect();
    o.header("container_cpu_usage_seconds_total", "counter", "Cumulative cpu time consumed in seconds.");
    o.line("container_cpu_usage_seconds_total", &root, secs(cur.cpu.busy_ns), true);
    for (c, l) in cur.containers.iter().zip(&label_sets) {
        o.line("container_cpu_usage_seconds_total", l, secs(c.stats.cpu_usage_ns), true);
    }
    o.header("container_memory_working_set_bytes", "gauge", "Current working set in bytes.");
    o.line("container_memory_working_set_bytes", &root, cur.memory.working_set as f64, true);
    for (c, l) in cur.containers.iter().zip(&label_sets) {
        o.line("container_memory_working_set_bytes", l, c.stats.memory_working_set_bytes as f64, true);
    }
    o.header("container_memory_usage_bytes", "gauge", "Current memory usage in bytes, including all memory regardless of when it was accessed");
    o.line("container_memory_usage_bytes", &root, cur.memory.usage as f64, true);
    for (c, l) in cur.containers.iter().zip(&label_sets) {
        o.line("container_memory_usage_bytes", l, c.stats.memory_usage_bytes as f64, true);
    }
    o.header("container_processes", "gauge", "Number of processes running inside the container.");
    for (c, l) in cur.containers.iter().zip(&label_sets) {
        o.line("container_processes", l, c.stats.pids as f64, true);
    }
    o.header("container_start_time_seconds", "gauge", "Start time of the container since unix epoch in seconds.");
    for (c, l) in cur.containers.iter().zip(&label_sets) {
        if let Some(t) = c.started_at {
            o.line("container_start_time_seconds", l, t.timestamp() as f64, true);
        }
    }
    o.header("machine_cpu_cores", "gauge", "Number of logical CPU cores.");
    o.line("machine_cpu_cores", &[], cur.cpu.cores as f64, false);
    o.header("machine_memory_bytes", "gauge", "Amount of memory installed on the machine.");
    o.line("machine_memory_bytes", &[], cur.memory.total as f64, false);
    o.text
}

/// `/metrics/resource` from the latest sample.
pub fn resource(cur: &Sample) -> String {
    let mut o = Out::new(cur);
    o.header("node_cpu_usage_seconds_total", "counter", "[STABLE] Cumulative cpu time consumed by the node in core-seconds");
    o.line("node_cpu_usage_seconds_total", &[], secs(cur.cpu.busy_ns), true);
    o.header("node_memory_working_set_bytes", "gauge", "[STABLE] Current working set of the node in bytes");
    o.line("node_memory_working_set_bytes", &[], cur.memory.working_set as f64, true);
    let containers: Vec<[(&str, &str); 3]> = cur
        .containers
        .iter()
        .map(|c| [("container", c.container.as_str()), ("namespace", c.namespace.as_str()), ("pod", c.pod.as_str())])
        .collect();
    o.header("container_cpu_usage_seconds_total", "counter", "[STABLE] Cumulative cpu time consumed by the container in core-seconds");
    for (c, l) in cur.containers.iter().zip(&containers) {
        o.line("container_cpu_usage_seconds_total", l, secs(c.stats.cpu_usage_ns), true);
    }
    o.header("container_memory_working_set_bytes", "gauge", "[STABLE] Current working set of the container in bytes");
    for (c, l) in cur.containers.iter().zip(&containers) {
        o.line("container_memory_working_set_bytes", l, c.stats.memory_working_set_bytes as f64, true);
    }
    o.header("container_start_time_seconds", "gauge", "[STABLE] Start time of the container since unix epoch in seconds");
    for (c, l) in cur.containers.iter().zip(&containers) {
        if let Some(t) = c.started_at {
            o.line("container_start_time_seconds", l, t.timestamp() as f64, true);
        }
    }
    let mut pods: BTreeMap<(&str, &str), (u64, u64)> = BTreeMap::new();
    for c in &cur.containers {
        let e = pods.entry((c.namespace.as_str(), c.pod.as_str())).or_default();
        e.0 += c.stats.cpu_usage_ns;
        e.1 += c.stats.memory_working_set_bytes;
    }
    o.header("pod_cpu_usage_seconds_total", "counter", "[STABLE] Cumulative cpu time consumed by the pod in core-seconds");
    for ((ns, pod), (cpu, _)) in &pods {
        o.line("pod_cpu_usage_seconds_total", &[("namespace", ns), ("pod", pod)], secs(*cpu), true);
    }
    o.header("pod_memory_working_set_bytes", "gauge", "[STABLE] Current working set of the pod in bytes");
    for ((ns, pod), (_, ws)) in &pods {
        o.line("pod_memory_working_set_bytes", &[("namespace", ns), ("pod", pod)], *ws as f64, true);
    }
    o.header("resource_scrape_error", "gauge", "[STABLE] 1 if there was an error while getting container metrics, 0 otherwise");
    o.line("resource_scrape_error", &[], 0.0, false);
    o.text
}

/// `/metrics`: the agent's own metrics. `process` is absent when `/proc/self` was unreadable.
pub fn kubelet(node_name: &str, cur: &Sample, process: Option<&SelfProcess>) -> String {
    let mut o = Out::new(cur);
    o.header("kubelet_node_name", "gauge", "The node's name. The count is always 1.");
    o.line("kubelet_node_name", &[("node", node_name)], 1.0, false);
    let pods: BTreeSet<&str> = cur.containers.iter().map(|c| c.pod_uid.as_str()).collect();
    o.header("kubelet_running_pods", "gauge", "Number of pods that have a running pod sandbox");
    o.line("kubelet_running_pods", &[], pods.len() as f64, false);
    o.header("kubelet_running_containers", "gauge", "Number of containers currently running");
    for (state, n) in &cur.container_states {
        o.line("kubelet_running_containers", &[("container_state", state)], *n as f64, false);
    }
    if let Some(p) = process {
        o.header("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.");
        o.line("process_cpu_seconds_total", &[], p.cpu_seconds, false);
        o.header("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
        o.line("process_resident_memory_bytes", &[], p.rss_bytes as f64, false);
        o.header("process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.");
        o.line("process_start_time_seconds", &[], p.start_time, false);
        o.header("process_open_fds", "gauge", "Number of open file descriptors.");
        o.line("process_open_fds", &[], p.open_fds as f64, false);
    }
    o.text
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::super::tests::{reading, sample};
    use super::*;

    #[test]
    fn cadvisor_has_root_and_container_series() {
        let cur = sample(Instant::now(), 10, 3_500_000_000, vec![reading("abc-main-0", "main", 1_500_000_000, 5)]);
        let text = cadvisor(&cur);
        let ts = cur.time.timestamp_millis();
        assert!(text.contains("# TYPE container_cpu_usage_seconds_total counter\n"), "{text}");
        assert!(text.contains(&format!("container_cpu_usage_seconds_total{{container=\"\",id=\"/\",image=\"\",name=\"\",namespace=\"\",pod=\"\"}} 3.5 {ts}\n")), "{text}");
        assert!(text.contains(&format!(
            "container_cpu_usage_seconds_total{{container=\"main\",id=\"abc-main-0\",image=\"skiff.test/busybox:1\",name=\"abc-main-0\",namespace=\"default\",pod=\"busy\"}} 1.5 {ts}\n"
        )), "{text}");
        assert!(text.contains(&format!("pod=\"busy\"}} {} {ts}\n", 5u64 << 20)), "{text}");
        assert!(text.contains("machine_cpu_cores 2\n"), "{text}");
        // Every sample line has a name, optional labels and a numeric value.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let after_name = line.rfind('}').map(|i| &line[i + 1..]).unwrap_or_else(|| line.split_once(' ').unwrap().1);
            let value = after_name.split_whitespace().next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }

    #[test]
    fn resource_and_kubelet_endpoints() {
        let cur = sample(Instant::now(), 10, 1_000_000_000, vec![reading("a", "main", 2_000_000_000, 5), reading("b", "side", 1_000_000_000, 5)]);
        let text = resource(&cur);
        assert!(text.contains("pod_cpu_usage_seconds_total{namespace=\"default\",pod=\"busy\"} 3 "), "{text}");
        assert!(text.contains("node_cpu_usage_seconds_total 1 "), "{text}");
        assert!(text.contains("resource_scrape_error 0\n"), "{text}");
        let p = SelfProcess { cpu_seconds: 1.25, rss_bytes: 4096, start_time: 1e9, open_fds: 7 };
        let text = kubelet("node\"1", &cur, Some(&p));
        assert!(text.contains("kubelet_node_name{node=\"node\\\"1\"} 1\n"), "{text}");
        assert!(text.contains("kubelet_running_pods 1\n"), "{text}");
        assert!(text.contains("kubelet_running_containers{container_state=\"exited\"} 2\n"), "{text}");
        assert!(text.contains("process_cpu_seconds_total 1.25\n"), "{text}");
    }
}
