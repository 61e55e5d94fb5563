//! The service proxy (kube-proxy's nftables mode): turns Services and their endpoints into
//! one nftables table, `table ip skiff`, and keeps it up to date.
//!
//! [`state::build_state`] translates API objects into the plain [`ProxyState`];
//! [`rules`](self) computes the desired table from it (pure, unit-tested); [`sync`](self) diffs
//! desired against what was last applied and emits one atomic [`Transaction`]
//! through a [`Backend`]. Dispatch goes through verdict maps keyed by
//! `ip daddr . meta l4proto . th dport`, so most endpoint changes only touch one service's
//! chains and a few map elements.
//!
//! Calls only [`crate::nft`]; knows nothing about the API server.

mod rules;
pub mod stale;
pub mod state;
mod sync;

#[cfg(test)]
mod tests_bench;
#[cfg(test)]
mod tests_netns;
#[cfg(test)]
mod tests_rules;

use std::net::Ipv4Addr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::nft::{self, Backend, Family, Transaction};

pub use state::build_state;

/// Errors of the service proxy.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Programming nftables failed.
    #[error("{context}: {source}")]
    Nft {
        /// What the proxy was doing.
        context: String,
        /// The nftables error.
        #[source]
        source: nft::Error,
    },
    /// The configuration cannot work.
    #[error("invalid proxy configuration: {0}")]
    Config(String),
}

/// An IPv4 prefix such as 10.42.0.0/16.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Cidr {
    /// Network address.
    pub addr: Ipv4Addr,
    /// Prefix length (0-32).
    pub prefix: u8,
}

impl Ipv4Cidr {
    /// True when `ip` is inside the prefix.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix.min(32)))
        };
        u32::from(ip) & mask == u32::from(self.addr) & mask
    }
}

/// Proxy configuration; `Default` matches skiff's defaults.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// Pod network; traffic from outside it to a service is masqueraded.
    pub cluster_cidr: Ipv4Cidr,
    /// This node's addresses (NodePorts match every local address through `fib`; these are
    /// used to recognise host-network endpoints as local).
    pub node_ips: Vec<Ipv4Addr>,
    /// This node's name, to tell local endpoints apart.
    pub node_name: String,
    /// Packet mark bit that asks postrouting to masquerade.
    pub masquerade_mark: u32,
    /// Name of the nftables table (family `ip`) the proxy owns.
    pub table: String,
    /// Write `net.ipv4.conf.all.route_localnet=1` so NodePorts answer on 127.0.0.1.
    pub route_localnet: bool,
    /// Masquerade pod traffic leaving the cluster CIDR (what flannel's ip-masq does).
    pub masquerade_cluster_egress: bool,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            cluster_cidr: Ipv4Cidr {
                addr: Ipv4Addr::new(10, 42, 0, 0),
                prefix: 16,
            },
            node_ips: Vec::new(),
            node_name: String::new(),
            masquerade_mark: 0x4000,
            table: "skiff".into(),
            route_localnet: true,
            masquerade_cluster_egress: true,
        }
    }
}

/// Transport protocol of a service port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    /// IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => nft::expr::proto::TCP,
            Protocol::Udp => nft::expr::proto::UDP,
            Protocol::Sctp => nft::expr::proto::SCTP,
        }
    }

    /// Lowercase name, as used in chain names.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// One backend of a service port, with EndpointSlice conditions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Pod (or host) address.
    pub ip: Ipv4Addr,
    /// Target port.
    pub port: u16,
    /// Ready to receive new connections.
    pub ready: bool,
    /// Serving (ready, ignoring termination).
    pub serving: bool,
    /// Being deleted.
    pub terminating: bool,
    /// Runs on this node.
    pub is_local: bool,
}

/// One port of one Service, with everything needed to program it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePort {
    /// Service namespace.
    pub namespace: String,
    /// Service name.
    pub name: String,
    /// Port name (may be empty for single-port services).
    pub port_name: String,
    /// Protocol.
    pub protocol: Protocol,
    /// ClusterIP; `None` for headless services, which the proxy ignores.
    pub cluster_ip: Option<Ipv4Addr>,
    /// Service port.
    pub port: u16,
    /// NodePort, if allocated.
    pub node_port: Option<u16>,
    /// LoadBalancer ingress addresses.
    pub load_balancer_ips: Vec<Ipv4Addr>,
    /// spec.externalIPs.
    pub external_ips: Vec<Ipv4Addr>,
    /// sessionAffinity ClientIP timeout, if enabled.
    pub session_affinity_seconds: Option<u32>,
    /// externalTrafficPolicy: Local.
    pub external_policy_local: bool,
    /// internalTrafficPolicy: Local.
    pub internal_policy_local: bool,
    /// Endpoints for this port.
    pub endpoints: Vec<Endpoint>,
}

/// A container hostPort.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPort {
    /// Protocol.
    pub protocol: Protocol,
    /// Only this host address, or every local address.
    pub host_ip: Option<Ipv4Addr>,
    /// Port on the host.
    pub host_port: u16,
    /// Pod address.
    pub pod_ip: Ipv4Addr,
    /// Port in the pod.
    pub container_port: u16,
}

/// Everything the proxy programs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProxyState {
    /// Service ports.
    pub services: Vec<ServicePort>,
    /// Host ports.
    pub host_ports: Vec<HostPort>,
}

/// What one `sync` did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// The whole table was rewritten (first sync, or after a failure).
    pub full: bool,
    /// Chains created or rewritten.
    pub chains_written: usize,
    /// Chains deleted.
    pub chains_deleted: usize,
    /// Map elements added or removed.
    pub elements_changed: usize,
    /// Operations in the transaction.
    pub ops: usize,
    /// Time to compute and apply.
    pub duration: Duration,
}

struct Inner {
    backend: Box<dyn Backend>,
    /// What the kernel holds, as of the last successful sync; `None` forces a full rewrite.
    applied: Option<rules::Desired>,
}

/// The service proxy for one node.
pub struct ServiceProxy {
    cfg: ProxyConfig,
    inner: Mutex<Inner>,
}

impl ServiceProxy {
    /// Creates the proxy; with `cfg.route_localnet`, enables route_localnet through the backend.
    pub fn new(cfg: ProxyConfig, backend: impl Backend + 'static) -> Result<Self, Error> {
        if cfg.table.is_empty() || cfg.table.len() > 255 {
            return Err(Error::Config(format!(
                "table name {:?} must be 1-255 bytes",
                cfg.table
            )));
        }
        if cfg.masquerade_mark == 0 {
            return Err(Error::Config("masquerade_mark must have a bit set".into()));
        }
        let mut backend: Box<dyn Backend> = Box::new(backend);
        if cfg.route_localnet {
            backend
                .enable_route_localnet()
                .map_err(|source| Error::Nft {
                    context: "enabling route_localnet".into(),
                    source,
                })?;
        }
        Ok(ServiceProxy {
            cfg,
            inner: Mutex::new(Inner {
                backend,
                applied: None,
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes the table match `state` in one atomic transaction, touching only what changed
    /// since the last successful sync.
    pub fn sync(&mut self, state: &ProxyState) -> Result<SyncStats, Error> {
        let start = Instant::now();
        let desired = rules::desired(&self.cfg, state);
        let mut inner = self.lock();
        let (tx, mut stats) = match &inner.applied {
            Some(prev) => sync::incremental(&self.cfg, prev, &desired),
            None => sync::full(&self.cfg, &desired),
        };
        if let Err(source) = inner.backend.apply(&tx) {
            // The kernel rolled back, but our idea of its state may be stale: rewrite next time.
            inner.applied = None;
            return Err(Error::Nft {
                context: format!("syncing table ip {}", self.cfg.table),
                source,
            });
        }
        inner.applied = Some(desired);
        stats.ops = tx.ops.len();
        stats.duration = start.elapsed();
        tracing::debug!(full = stats.full, chains = stats.chains_written, elements = stats.elements_changed, took = ?stats.duration, "proxy rules synced");
        Ok(stats)
    }

    /// Deletes the proxy's table (no error if it is already gone).
    pub fn cleanup(&self) -> Result<(), Error> {
        let mut tx = Transaction::new(Family::Ip, self.cfg.table.clone());
        tx.delete_table_if_exists();
        let mut inner = self.lock();
        inner.applied = None;
        inner.backend.apply(&tx).map_err(|source| Error::Nft {
            context: format!("deleting table ip {}", self.cfg.table),
            source,
        })
    }
}
