//! Counters for the DNS server, rendered in the Prometheus text format.
//!
//! Plain atomics rather than a metrics library: the set is small and fixed, and the hot path
//! pays one relaxed increment per counter touched.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Response codes that get their own series; anything else is counted as `OTHER`.
const RCODES: [&str; 6] = [
    "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED",
];

/// Counters shared by all of a server's tasks.
#[derive(Debug, Default)]
pub struct DnsMetrics {
    queries_udp: AtomicU64,
    queries_tcp: AtomicU64,
    responses: [AtomicU64; 7],
    forwarded: AtomicU64,
    forward_failures: AtomicU64,
    truncated: AtomicU64,
}

impl DnsMetrics {
    /// Counts a query received over UDP (`tcp == false`) or TCP.
    pub fn query(&self, tcp: bool) {
        if tcp {
            &self.queries_tcp
        } else {
            &self.queries_udp
        }
        .fetch_add(1, Relaxed);
    }

    /// Counts a response by its header rcode and TC bit.
    pub fn response(&self, msg: &[u8]) {
        let Some(&flags) = msg.get(3) else { return };
        let rcode = (flags & 0xF) as usize;
        self.responses[rcode.min(RCODES.len())].fetch_add(1, Relaxed);
        if msg[2] & 0x02 != 0 {
            self.truncated.fetch_add(1, Relaxed);
        }
    }

    /// Counts a query sent upstream, and whether it failed on every upstream.
    pub fn forward(&self, failed: bool) {
        self.forwarded.fetch_add(1, Relaxed);
        if failed {
            self.forward_failures.fetch_add(1, Relaxed);
        }
    }

    /// Queries received so far, both transports.
    pub fn queries(&self) -> u64 {
        self.queries_udp.load(Relaxed) + self.queries_tcp.load(Relaxed)
    }

    /// Queries sent upstream so far.
    pub fn forwarded(&self) -> u64 {
        self.forwarded.load(Relaxed)
    }

    /// Responses sent with the given rcode name (`"NXDOMAIN"`), or `OTHER`.
    pub fn responses(&self, rcode: &str) -> u64 {
        let i = RCODES
            .iter()
            .position(|r| *r == rcode)
            .unwrap_or(RCODES.len());
        self.responses[i].load(Relaxed)
    }

    /// All counters in the Prometheus text exposition format.
    pub fn metrics_text(&self) -> String {
        let mut out = String::with_capacity(1024);
        let mut family = |name: &str, help: &str, series: &[(&str, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (labels, v) in series {
                let _ = writeln!(out, "{name}{labels} {v}");
            }
        };
        family(
            "skiff_dns_requests_total",
            "DNS queries received, by transport.",
            &[
                ("{proto=\"udp\"}", self.queries_udp.load(Relaxed)),
                ("{proto=\"tcp\"}", self.queries_tcp.load(Relaxed)),
            ],
        );
        let labels: Vec<String> = RCODES
            .iter()
            .chain(&["OTHER"])
            .map(|r| format!("{{rcode=\"{r}\"}}"))
            .collect();
        let series: Vec<(&str, u64)> = labels
            .iter()
            .zip(&self.responses)
            .map(|(l, c)| (l.as_str(), c.load(Relaxed)))
            .collect();
        family(
            "skiff_dns_responses_total",
            "DNS responses sent, by response code.",
            &series,
        );
        family(
            "skiff_dns_forward_requests_total",
            "Queries sent to upstream resolvers.",
            &[("", self.forwarded.load(Relaxed))],
        );
        family(
            "skiff_dns_forward_failures_total",
            "Forwarded queries that no upstream answered.",
            &[("", self.forward_failures.load(Relaxed))],
        );
        family(
            "skiff_dns_truncated_responses_total",
            "Responses sent with the TC bit set.",
            &[("", self.truncated.load(Relaxed))],
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_by_rcode() {
        let m = DnsMetrics::default();
        m.query(false);
        m.query(true);
        m.response(&[0, 0, 0x81, 0x83]); // NXDOMAIN
        m.response(&[0, 0, 0x83, 0x80]); // NOERROR, truncated
        m.forward(true);
        let text = m.metrics_text();
        assert!(
            text.contains("skiff_dns_requests_total{proto=\"udp\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("skiff_dns_responses_total{rcode=\"NXDOMAIN\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("skiff_dns_responses_total{rcode=\"NOERROR\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("skiff_dns_forward_failures_total 1\n"),
            "{text}"
        );
        assert!(
            text.contains("skiff_dns_truncated_responses_total 1\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE skiff_dns_forward_requests_total counter\n"),
            "{text}"
        );
        assert_eq!(m.queries(), 2);
    }
}
