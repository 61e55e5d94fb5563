//! Cluster DNS: the CoreDNS `kubernetes` and `forward` plugins, built in.
//!
//! Serves `cluster.local` (Services, headless endpoints, SRV, ExternalName, PTR, pod names) from
//! a [`Records`] snapshot built from Services and EndpointSlices, and forwards every other name
//! to the node's resolvers. Also composes pods' resolv.conf ([`pod_resolv_conf`]).
//!
//! Layout: `wire` (codec), `records` (snapshot), `answer` (zone logic, pure), `forward`
//! (upstreams), `server` (sockets), `resolv_conf`, `metrics`. Calls only tokio and k8s-openapi
//! types; the caller feeds it objects from its own watches.

use std::net::{Ipv4Addr, SocketAddr};

mod answer;
mod forward;
mod message;
mod metrics;
mod records;
mod resolv_conf;
mod server;
pub mod wire;

#[cfg(test)]
mod tests;

pub use forward::{Forwarder, UPSTREAM_TIMEOUT};
pub use message::{decode, Message};
pub use metrics::DnsMetrics;
pub use records::{build_records, Records};
pub use resolv_conf::{
    parse_resolv_conf, pod_resolv_conf, upstreams_from_files, upstreams_from_resolv_conf,
    ResolvConf, MAX_NAMESERVERS, MAX_SEARCH_LINE_CHARS, MAX_SEARCH_PATHS, NODE_RESOLV_CONF_PATHS,
};
pub use server::{DnsHandle, DnsServer};

/// Errors of the DNS server and forwarder.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// A listen address could not be bound.
    #[error("bind dns {proto} socket on {addr}: {source}")]
    Bind {
        /// `udp` or `tcp`.
        proto: &'static str,
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// I/O with an upstream resolver failed.
    #[error("upstream dns {upstream}: {source}")]
    Upstream {
        /// The upstream.
        upstream: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// An upstream resolver did not answer in time.
    #[error("upstream dns {upstream} timed out")]
    Timeout {
        /// The upstream.
        upstream: SocketAddr,
    },
    /// There is no upstream to forward to.
    #[error("no upstream dns servers configured")]
    NoUpstreams,
    /// A message could not be used.
    #[error("malformed dns message: {0}")]
    Malformed(String),
}

/// Configuration of the cluster DNS server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsConfig {
    /// Cluster domain served authoritatively.
    pub domain: String,
    /// Addresses to serve on, each on UDP and TCP. Port 0 picks one free port for both.
    pub listen: Vec<SocketAddr>,
    /// Resolvers for names outside the cluster, tried in order; usually
    /// [`upstreams_from_files`] on [`NODE_RESOLV_CONF_PATHS`].
    pub upstreams: Vec<SocketAddr>,
    /// TTL of cluster records, and of negative answers.
    pub ttl: u32,
}

impl Default for DnsConfig {
    /// The skiff defaults: `cluster.local` on 10.43.0.10:53 (the `kube-dns` Service address),
    /// TTL 5 s as CoreDNS's `kubernetes` plugin, no upstreams until the caller reads the node's.
    fn default() -> Self {
        DnsConfig {
            domain: "cluster.local".to_string(),
            listen: vec![SocketAddr::from((Ipv4Addr::new(10, 43, 0, 10), 53))],
            upstreams: Vec::new(),
            ttl: 5,
        }
    }
}
