//! The built-in ingress controller: networking.k8s.io/v1 Ingress served in-process (the role
//! Traefik plays in k3s).
//!
//! The caller (node agent) watches Ingresses, Services, EndpointSlices and Secrets, turns them
//! into an immutable [`Routes`] snapshot with [`build_routes`] and swaps it into a running
//! [`IngressServer`] through its [`IngressHandle`]. Requests never wait for the API server.
//!
//! Layout: `matcher` (host and path matching, pure), `rewrite` (nginx's rewrite-target),
//! `routes` (API objects -> snapshot), `tls` (certificates, SNI), `pool` (keep-alive
//! connections to endpoints), `body` (response bodies that hand connections back to the pool),
//! `proxy` (one request: routing, headers, retries, upgrades), `fast` (plain HTTP/1.1
//! requests proxied without hyper, the common case; `chunked` finds where a chunked body
//! ends), `server` (listeners, HTTP/1.1 and HTTP/2, drain), `balance` (spreading connections over the worker threads),
//! `metrics` (Prometheus counters), `status` (Ingress status and
//! IngressClass helpers). Calls only tokio, hyper, rustls and k8s-openapi types.

use std::net::SocketAddr;

mod balance;
mod body;
mod chunked;
mod fast;
mod matcher;
mod metrics;
mod pool;
mod proxy;
mod rewrite;
mod routes;
mod server;
mod status;
mod tls;

#[cfg(test)]
mod tests;
#[cfg(test)]
pub(crate) mod tests_bench;
#[cfg(test)]
mod tests_routes;

pub use metrics::IngressMetrics;
pub use routes::{build_routes, is_ours, Routes, Warning};
pub use server::{IngressConfig, IngressHandle, IngressServer};
pub use status::{ingress_class, ingress_status, CONTROLLER_NAME};

/// Errors of the ingress controller.
#[derive(Debug, thiserror::Error)]
pub enum IngressError {
    /// A listen address could not be bound.
    #[error("bind ingress {scheme} listener on {addr}: {source}")]
    Bind {
        /// `http` or `https`.
        scheme: &'static str,
        /// The address asked for.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The self-signed fallback certificate could not be made.
    #[error("generate default ingress certificate: {0}")]
    DefaultCertificate(#[from] rcgen::Error),
    /// A certificate or key (from a Secret or generated) was unusable.
    #[error("certificate {what}: {reason}")]
    Certificate {
        /// Where it came from, e.g. `secret default/site-tls`.
        what: String,
        /// Why it was rejected.
        reason: String,
    },
    /// rustls refused the server configuration.
    #[error("tls server configuration: {0}")]
    Tls(#[from] rustls::Error),
}
