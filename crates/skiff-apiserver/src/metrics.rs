//! Prometheus metrics of the API server, kept in a small lock-protected registry and rendered
//! in the text exposition format: requests by verb/resource/code with latency histograms,
//! open watches, and store latencies.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;

/// Histogram bucket upper bounds in seconds (upstream-like spread).
const BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0];

#[derive(Default, Clone)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    total: u64,
}

impl Histogram {
    fn observe(&mut self, secs: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; BUCKETS.len()];
        }
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum += secs;
        self.total += 1;
    }
}

/// The server's metrics.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    latency: Mutex<BTreeMap<(String, String), Histogram>>,
    store_latency: Mutex<BTreeMap<String, Histogram>>,
    /// Watches currently open.
    pub open_watches: AtomicI64,
}

impl Metrics {
    /// Record one finished request.
    pub fn request(&self, verb: &str, resource: &str, code: u16, secs: f64) {
        *self.requests.lock().unwrap().entry((verb.into(), resource.into(), code)).or_default() += 1;
        self.latency.lock().unwrap().entry((verb.into(), resource.into())).or_default().observe(secs);
    }

    /// Record one store operation.
    pub fn store_op(&self, op: &str, secs: f64) {
        self.store_latency.lock().unwrap().entry(op.into()).or_default().observe(secs);
    }

    /// Render everything in Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP apiserver_request_total Counter of apiserver requests broken out by verb, resource and HTTP response code.\n# TYPE apiserver_request_total counter\n");
        for ((verb, res, code), n) in self.requests.lock().unwrap().iter() {
            let _ = writeln!(out, "apiserver_request_total{{verb=\"{verb}\",resource=\"{res}\",code=\"{code}\"}} {n}");
        }
        out.push_str("# HELP apiserver_request_duration_seconds Response latency distribution in seconds for each verb and resource.\n# TYPE apiserver_request_duration_seconds histogram\n");
        for ((verb, res), h) in self.latency.lock().unwrap().iter() {
            write_hist(&mut out, "apiserver_request_duration_seconds", &format!("verb=\"{verb}\",resource=\"{res}\""), h);
        }
        out.push_str("# HELP apiserver_longrunning_requests Gauge of all active long-running apiserver requests.\n# TYPE apiserver_longrunning_requests gauge\n");
        let _ = writeln!(out, "apiserver_longrunning_requests{{verb=\"WATCH\"}} {}", self.open_watches.load(Ordering::Relaxed));
        out.push_str("# HELP skiff_store_request_duration_seconds Store request latency in seconds by operation.\n# TYPE skiff_store_request_duration_seconds histogram\n");
        for (op, h) in self.store_latency.lock().unwrap().iter() {
            write_hist(&mut out, "skiff_store_request_duration_seconds", &format!("operation=\"{op}\""), h);
        }
        out
    }
}

fn write_hist(out: &mut String, name: &str, labels: &str, h: &Histogram) {
    for (i, b) in BUCKETS.iter().enumerate() {
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{b}\"}} {}", h.counts.get(i).copied().unwrap_or(0));
    }
    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", h.total);
    let _ = writeln!(out, "{name}_sum{{{labels}}} {}", h.sum);
    let _ = writeln!(out, "{name}_count{{{labels}}} {}", h.total);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let m = Metrics::default();
        m.request("GET", "pods", 200, 0.003);
        m.request("GET", "pods", 200, 0.3);
        let text = m.render();
        assert!(text.contains("apiserver_request_total{verb=\"GET\",resource=\"pods\",code=\"200\"} 2"));
        assert!(text.contains("apiserver_request_duration_seconds_bucket{verb=\"GET\",resource=\"pods\",le=\"0.005\"} 1"));
        assert!(text.contains("apiserver_request_duration_seconds_count{verb=\"GET\",resource=\"pods\"} 2"));
    }
}
