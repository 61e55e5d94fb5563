//! Counters of the ingress controller, rendered in the Prometheus text format.
//!
//! Plain relaxed atomics: the set is small and fixed and the hot path pays one increment per
//! counter it touches.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use http::StatusCode;

/// Counters shared by all of a server's connections.
#[derive(Debug, Default)]
pub struct IngressMetrics {
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

impl IngressMetrics {
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

    /// Responses sent so far with a status in `class` (1 for 1xx .. 5 for 5xx).
    pub fn responses(&self, class: u8) -> u64 {
        match class {
            1..=5 => self.responses[class as usize - 1].load(Relaxed),
            _ => 0,
        }
    }

    /// Failed connection attempts to endpoints so far.
    pub fn upstream_connect_errors(&self) -> u64 {
        self.upstream_connect_errors.load(Relaxed)
    }

    /// Renders every counter in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(2048);
        out.push_str(
            "# HELP skiff_ingress_responses_total HTTP responses sent, by status class.\n",
        );
        out.push_str("# TYPE skiff_ingress_responses_total counter\n");
        for (i, c) in self.responses.iter().enumerate() {
            let _ = writeln!(
                out,
                "skiff_ingress_responses_total{{code=\"{}xx\"}} {}",
                i + 1,
                c.load(Relaxed)
            );
        }
        let singles: [(&str, &str, &AtomicU64); 10] = [
            (
                "connections_total",
                "Client connections accepted.",
                &self.connections,
            ),
            (
                "tls_handshake_errors_total",
                "TLS handshakes that failed.",
                &self.tls_handshake_errors,
            ),
            (
                "upstream_connect_errors_total",
                "Connection attempts to endpoints that failed.",
                &self.upstream_connect_errors,
            ),
            (
                "upstream_errors_total",
                "Requests that failed after reaching an endpoint (502).",
                &self.upstream_errors,
            ),
            (
                "upstream_timeouts_total",
                "Requests whose endpoint did not answer in time (504).",
                &self.upstream_timeouts,
            ),
            (
                "retries_total",
                "Requests retried on another connection or endpoint.",
                &self.retries,
            ),
            (
                "no_endpoints_total",
                "Requests for backends without ready endpoints (503).",
                &self.no_endpoints,
            ),
            (
                "not_found_total",
                "Requests that matched no rule (404).",
                &self.not_found,
            ),
            (
                "redirects_total",
                "HTTP requests redirected to HTTPS.",
                &self.redirects,
            ),
            (
                "upgrades_total",
                "Upgraded connections (WebSocket and others) passed through.",
                &self.upgrades,
            ),
        ];
        for (name, help, c) in singles {
            let _ = writeln!(out, "# HELP skiff_ingress_{name} {help}");
            let _ = writeln!(out, "# TYPE skiff_ingress_{name} counter");
            let _ = writeln!(out, "skiff_ingress_{name} {}", c.load(Relaxed));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_classes_and_counters() {
        let m = IngressMetrics::default();
        m.response(StatusCode::OK);
        m.response(StatusCode::NOT_FOUND);
        m.response(StatusCode::SERVICE_UNAVAILABLE);
        m.response(StatusCode::SERVICE_UNAVAILABLE);
        m.upstream_connect_error();
        let text = m.render();
        assert!(text.contains("skiff_ingress_responses_total{code=\"2xx\"} 1\n"));
        assert!(text.contains("skiff_ingress_responses_total{code=\"5xx\"} 2\n"));
        assert!(text.contains("skiff_ingress_upstream_connect_errors_total 1\n"));
        assert_eq!(m.responses(4), 1);
    }
}
