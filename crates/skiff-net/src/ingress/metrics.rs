//! Counters of the ingress controller, rendered in the Prometheus text format.
//!
//! Plain relaxed atomics, one set per worker thread (summed when read): the hot path pays one
//! increment per counter it touches, on a cache line no other core writes. A shared counter
//! would bounce between the cores' caches on every request.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use http::StatusCode;

/// Counters of all of a server's connections.
#[derive(Debug)]
pub struct IngressMetrics {
    shards: Box<[Counters]>,
}

impl Default for IngressMetrics {
    fn default() -> Self {
        IngressMetrics::new(1)
    }
}

/// One worker's counters, alone on their cache lines.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Counters {
    /// Responses by status class, index 0 = 1xx .. 4 = 5xx.
    responses: [AtomicU64; 5],
    connections: AtomicU64,
    tls_handshake_errors: AtomicU64,
    upstream_connect_errors: AtomicU64,
    upstream_errors: AtomicU64,
    upstream_timeouts: AtomicU64,
    retries: AtomicU64,
    no_endpoints: AtomicU64,
    not_found: AtomicU64,
    redirects: AtomicU64,
    upgrades: AtomicU64,
}

impl Counters {
    pub(crate) fn response(&self, status: StatusCode) {
        let class = (status.as_u16() / 100).clamp(1, 5) as usize - 1;
        self.responses[class].fetch_add(1, Relaxed);
    }
    pub(crate) fn connection(&self) {
        self.connections.fetch_add(1, Relaxed);
    }
    pub(crate) fn tls_handshake_error(&self) {
        self.tls_handshake_errors.fetch_add(1, Relaxed);
    }
    pub(crate) fn upstream_connect_error(&self) {
        self.upstream_connect_errors.fetch_add(1, Relaxed);
    }
    pub(crate) fn upstream_error(&self) {
        self.upstream_errors.fetch_add(1, Relaxed);
    }
    pub(crate) fn upstream_timeout(&self) {
        self.upstream_timeouts.fetch_add(1, Relaxed);
    }
    pub(crate) fn retry(&self) {
        self.retries.fetch_add(1, Relaxed);
    }
    pub(crate) fn no_endpoints(&self) {
        self.no_endpoints.fetch_add(1, Relaxed);
    }
    pub(crate) fn not_found(&self) {
        self.not_found.fetch_add(1, Relaxed);
    }
    pub(crate) fn redirect(&self) {
        self.redirects.fetch_add(1, Relaxed);
    }
    pub(crate) fn upgrade(&self) {
        self.upgrades.fetch_add(1, Relaxed);
    }
}

impl IngressMetrics {
    /// Counters with `shards` independent sets (one per worker).
    pub(crate) fn new(shards: usize) -> Self {
        IngressMetrics {
            shards: (0..shards.max(1)).map(|_| Counters::default()).collect(),
        }
    }

    /// The counters worker `i` updates.
    pub(crate) fn shard(&self, i: usize) -> &Counters {
        &self.shards[i % self.shards.len()]
    }

    fn sum(&self, f: impl Fn(&Counters) -> &AtomicU64) -> u64 {
        self.shards.iter().map(|c| f(c).load(Relaxed)).sum()
    }

    /// Responses sent so far with a status in `class` (1 for 1xx .. 5 for 5xx).
    pub fn responses(&self, class: u8) -> u64 {
        match class {
            1..=5 => self.sum(|c| &c.responses[class as usize - 1]),
            _ => 0,
        }
    }

    /// Failed connection attempts to endpoints so far.
    pub fn upstream_connect_errors(&self) -> u64 {
        self.sum(|c| &c.upstream_connect_errors)
    }

    /// Renders every counter in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(2048);
        out.push_str(
            "# HELP skiff_ingress_responses_total HTTP responses sent, by status class.\n",
        );
        out.push_str("# TYPE skiff_ingress_responses_total counter\n");
        for class in 1..=5u8 {
            let _ = writeln!(
                out,
                "skiff_ingress_responses_total{{code=\"{class}xx\"}} {}",
                self.responses(class)
            );
        }
        type Field = fn(&Counters) -> &AtomicU64;
        let singles: [(&str, &str, Field); 10] = [
            ("connections_total", "Client connections accepted.", |c| {
                &c.connections
            }),
            (
                "tls_handshake_errors_total",
                "TLS handshakes that failed.",
                |c| &c.tls_handshake_errors,
            ),
            (
                "upstream_connect_errors_total",
                "Connection attempts to endpoints that failed.",
                |c| &c.upstream_connect_errors,
            ),
            (
                "upstream_errors_total",
                "Requests that failed after reaching an endpoint (502).",
                |c| &c.upstream_errors,
            ),
            (
                "upstream_timeouts_total",
                "Requests whose endpoint did not answer in time (504).",
                |c| &c.upstream_timeouts,
            ),
            (
                "retries_total",
                "Requests retried on another connection or endpoint.",
                |c| &c.retries,
            ),
            (
                "no_endpoints_total",
                "Requests for backends without ready endpoints (503).",
                |c| &c.no_endpoints,
            ),
            (
                "not_found_total",
                "Requests that matched no rule (404).",
                |c| &c.not_found,
            ),
            (
                "redirects_total",
                "HTTP requests redirected to HTTPS.",
                |c| &c.redirects,
            ),
            (
                "upgrades_total",
                "Upgraded connections (WebSocket and others) passed through.",
                |c| &c.upgrades,
            ),
        ];
        for (name, help, field) in singles {
            let _ = writeln!(out, "# HELP skiff_ingress_{name} {help}");
            let _ = writeln!(out, "# TYPE skiff_ingress_{name} counter");
            let _ = writeln!(out, "skiff_ingress_{name} {}", self.sum(field));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_classes_and_counters() {
        let m = IngressMetrics::new(2);
        m.shard(0).response(StatusCode::OK);
        m.shard(1).response(StatusCode::NOT_FOUND);
        m.shard(0).response(StatusCode::SERVICE_UNAVAILABLE);
        m.shard(1).response(StatusCode::SERVICE_UNAVAILABLE);
        m.shard(1).upstream_connect_error();
        let text = m.render();
        assert!(text.contains("skiff_ingress_responses_total{code=\"2xx\"} 1\n"));
        assert!(text.contains("skiff_ingress_responses_total{code=\"5xx\"} 2\n"));
        assert!(text.contains("skiff_ingress_upstream_connect_errors_total 1\n"));
        assert_eq!(m.responses(4), 1);
    }
}
