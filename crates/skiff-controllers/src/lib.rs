//! skiff-controllers: the controller manager. Every controller is an API client (kube-rs)
//! of the API server, even in the same process, exactly like kube-controller-manager.
//!
//! Controllers so far: the garbage collector ([`gc`]: ownerReferences with Background,
//! Foreground and Orphan propagation) and the namespace lifecycle controller
//! ([`namespace`]: a deleted namespace is emptied, then finalized). Both work from one shared
//! metadata graph ([`graph`]) fed by metadata-only watches of every listable resource.
//! May call no other skiff crate (it talks HTTP to the API server).
#![forbid(unsafe_code)]

pub mod client;
pub mod deployment;
pub mod endpoints;
pub mod gc;
pub mod graph;
pub mod job;
pub mod namespace;
pub mod node_lifecycle;
pub mod pods;
pub mod replicaset;
pub mod serviceaccount;

use std::path::PathBuf;
use std::time::Duration;

/// Controller manager settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Kubeconfig used to reach the API server.
    pub kubeconfig: PathBuf,
    /// How often API discovery is re-read to pick up new CRDs.
    pub rediscover_every: Duration,
    /// Node heartbeat grace and check period.
    pub node_timings: node_lifecycle::Timings,
}

impl Config {
    /// Defaults with the given kubeconfig.
    pub fn new(kubeconfig: PathBuf) -> Self {
        Self { kubeconfig, rediscover_every: Duration::from_secs(5), node_timings: Default::default() }
    }
}

/// Run every controller until `shutdown` becomes true.
pub async fn run(config: Config, mut shutdown: tokio::sync::watch::Receiver<bool>) -> anyhow::Result<()> {
    let client = client::from_kubeconfig(&config.kubeconfig).await?;
    let graph = graph::Graph::start(client.clone(), config.rediscover_every);
    let gc = tokio::spawn(gc::run(client.clone(), graph.clone()));
    let ns = tokio::spawn(namespace::run(client.clone(), graph.clone()));
    let rs = tokio::spawn(replicaset::run(client.clone()));
    let deploy = tokio::spawn(deployment::run(client.clone()));
    let nodes = tokio::spawn(node_lifecycle::run(client.clone(), config.node_timings.clone()));
    let endpoints = tokio::spawn(endpoints::run(client.clone()));
    let jobs = tokio::spawn(job::run(client.clone()));
    let sa = tokio::spawn(serviceaccount::run(client.clone(), serviceaccount::ca_from_kubeconfig(&config.kubeconfig)));
    let _ = shutdown.changed().await;
    for t in [gc, ns, rs, deploy, nodes, endpoints, jobs, sa] {
        t.abort();
    }
    graph.stop();
    Ok(())
}
