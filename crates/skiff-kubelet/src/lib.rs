//! skiff-kubelet: the node agent (the kubelet counterpart).
//!
//! Owns the node's registration and Lease heartbeat ([`node`]), one worker per pod bound to
//! the node ([`pods`]: sandbox, init containers, containers, restarts with back-off, probes,
//! status), and the pieces those workers use. It talks to the cluster only through the
//! Kubernetes API (a kube-rs client) and to containers only through
//! [`skiff_runtime::Runtime`]; the pod network plugs in through the runtime's network hook
//! and [`PodAddresses`].

#![forbid(unsafe_code)]

mod atomic_file;
pub mod bootstrap;
pub mod config;
pub mod env;
pub mod eviction;
pub mod events;
pub mod log_rotation;
pub mod netns;
pub mod network;
pub mod node;
pub mod pods;
pub mod probes;
pub mod static_pods;
pub mod stats;
pub mod stream_backend;
pub mod streaming;
pub mod volumes;

use std::net::IpAddr;
use std::sync::Arc;

pub use config::Config;
use skiff_runtime::{runtime::SandboxInfo, Runtime};

/// Errors of the node agent.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the API server failed.
    #[error("{what}: {source}")]
    Api {
        /// What was being done.
        what: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// The container runtime failed.
    #[error("{what}: {source}")]
    Runtime {
        /// What was being done.
        what: String,
        /// The runtime error.
        #[source]
        source: skiff_runtime::Error,
    },
    /// Anything else, described.
    #[error("{0}")]
    Other(String),
}

/// Result alias of the node agent.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where the pod network tells the agent which address a sandbox got.
pub trait PodAddresses: Send + Sync {
    /// The pod IP of a (non host-network) sandbox, once the network hook wired it.
    fn pod_ip(&self, sandbox: &SandboxInfo) -> Option<IpAddr>;

    /// Whether the network can wire pods now; `Err` says why not, as a container runtime's
    /// NetworkReady=false message does (the node then reports Ready=False). Called every
    /// second or so, so it must be cheap.
    fn network_ready(&self) -> Result<(), String> {
        Ok(())
    }
}

/// No pod network: pods get only loopback and no pod IP.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoPodNetwork;

impl PodAddresses for NoPodNetwork {
    fn pod_ip(&self, _: &SandboxInfo) -> Option<IpAddr> {
        None
    }
}

/// What every part of the agent shares.
pub struct Shared {
    /// Settings.
    pub config: Config,
    /// API client.
    pub client: kube::Client,
    /// Container runtime.
    pub runtime: Arc<dyn Runtime>,
    /// Pod addresses from the network.
    pub addresses: Arc<dyn PodAddresses>,
    /// Event recorder.
    pub events: events::Recorder,
    /// Pod volumes.
    pub volumes: volumes::VolumeManager,
    /// Node allocatable, for `resourceFieldRef` of containers without limits.
    pub allocatable: std::collections::BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    /// Node pressure, eviction requests and the pods that run (see [`eviction`]).
    pub eviction: eviction::State,
}

/// The node agent, built and ready to run.
pub struct Kubelet {
    shared: Arc<Shared>,
    streaming_tls: Option<Arc<rustls::ServerConfig>>,
}

impl Kubelet {
    /// Builds the agent from its parts.
    pub fn new(config: Config, client: kube::Client, runtime: Arc<dyn Runtime>, addresses: Arc<dyn PodAddresses>) -> Self {
        let events = events::Recorder::new(client.clone(), &config.node_name);
        let allocatable = node::Capacity::read(&config.root, config.max_pods).allocatable(&config.eviction_hard);
        let volumes = volumes::VolumeManager::new(config.root.join("pods"), client.clone(), config.node_name.clone());
        volumes.set_node_allocatable(allocatable.clone());
        let shared = Arc::new(Shared { config, client, runtime, addresses, events, volumes, allocatable, eviction: Default::default() });
        Self { shared, streaming_tls: None }
    }

    /// Serves logs, exec, attach and port-forward on `kubelet_port` with this TLS setup
    /// (see [`streaming::tls_config`]: only the API server's client certificate gets in).
    pub fn with_streaming_tls(mut self, tls: Arc<rustls::ServerConfig>) -> Self {
        self.streaming_tls = Some(tls);
        self
    }

    /// What the parts of the agent share.
    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Registers the node, then keeps its heartbeat and pod workers going until `shutdown`
    /// turns true. Running containers are left running on shutdown (they are re-adopted on
    /// the next start), as the kubelet does.
    pub async fn run(self, mut shutdown: tokio::sync::watch::Receiver<bool>) -> Result<()> {
        // Pods first: static pods run even while the API server cannot be reached.
        let pods = tokio::spawn(pods::manager::run(self.shared.clone()));
        let rotation = tokio::spawn(log_rotation::run(self.shared.runtime.clone(), self.shared.config.log_rotation));
        let shared = self.shared.clone();
        let heartbeat = tokio::spawn(async move {
            let network_ready = shared.addresses.network_ready().is_ok();
            loop {
                match node::register(&shared).await {
                    Ok(_) => break,
                    Err(e) => {
                        tracing::warn!(node = %shared.config.node_name, error = %e, "node registration failed; retrying");
                        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                    }
                }
            }
            tracing::info!(node = %shared.config.node_name, "node registered");
            tokio::join!(node::heartbeat(shared.clone()), node::watch_network(shared, network_ready));
        });
        let eviction = tokio::spawn(eviction::run(self.shared.clone()));
        let streaming = match self.streaming_tls.clone() {
            Some(tls) => {
                let addr = std::net::SocketAddr::from(([0, 0, 0, 0], self.shared.config.kubelet_port));
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|e| Error::Other(format!("binding the kubelet port {addr}: {e}")))?;
                let backend = Arc::new(
                    stream_backend::RuntimeBackend::new(self.shared.runtime.clone())
                        .with_node(self.shared.config.node_name.clone(), self.shared.config.root.clone()),
                );
                Some(tokio::spawn(streaming::serve(listener, tls, backend, shutdown.clone())))
            }
            None => None,
        };
        let healthz = match self.shared.config.healthz_port {
            0 => None,
            port => Some(tokio::spawn(node::serve_healthz(port))),
        };
        let _ = shutdown.wait_for(|stop| *stop).await;
        heartbeat.abort();
        pods.abort();
        rotation.abort();
        eviction.abort();
        for task in [streaming, healthz].into_iter().flatten() {
            task.abort();
        }
        Ok(())
    }
}
