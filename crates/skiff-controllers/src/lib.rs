//! skiff-controllers: the controller manager. Every controller is an API client (kube-rs)
//! of the API server, even in the same process, exactly like kube-controller-manager.
//!
//! Controllers: garbage collector ([`gc`]) and namespace lifecycle ([`namespace`]) from a
//! shared metadata graph ([`graph`]); ReplicaSet, Deployment, StatefulSet, DaemonSet, Job,
//! CronJob ([`schedule`] parses cron); Endpoints/EndpointSlices; node lifecycle; service
//! accounts and root CA; PodDisruptionBudget status ([`disruption`]); HorizontalPodAutoscaler;
//! PV binding and local-path provisioning ([`volume`]); ResourceQuota usage
//! ([`resourcequota`]). Controllers that react to pods share one pod watch ([`informer`]).
//! They run only while this process holds the controller manager's Lease ([`leader`]).
//! May call no other skiff crate (it talks HTTP to the API server).
#![forbid(unsafe_code)]

pub mod bootstrap_signer;
pub mod client;
pub mod csr;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod disruption;
pub mod endpoints;
pub mod gc;
pub mod graph;
pub mod hpa;
pub mod informer;
pub mod job;
pub mod leader;
pub mod namespace;
pub mod node_lifecycle;
pub mod nodeipam;
pub mod pods;
pub mod replicaset;
pub mod resourcequota;
pub mod revisions;
pub mod runtime;
pub mod schedule;
pub mod serviceaccount;
pub mod servicelb;
pub mod statefulset;
pub mod volume;

use std::path::PathBuf;
use std::time::Duration;

/// Controller manager settings.
#[derive(Clone)]
pub struct Config {
    /// Kubeconfig used to reach the API server (and to read the cluster CA from).
    pub kubeconfig: PathBuf,
    /// A ready client to use instead of one built from `kubeconfig` (`skiff server` passes
    /// its in-process transport).
    pub client: Option<kube::Client>,
    /// How often API discovery is re-read; a changed CRD triggers it at once.
    pub rediscover_every: Duration,
    /// Node heartbeat grace and check period.
    pub node_timings: node_lifecycle::Timings,
    /// Directory with the cluster CA (`ca.crt`, `ca.key`) that signs approved CSRs.
    pub tls_dir: Option<PathBuf>,
}

impl Config {
    /// Defaults with the given kubeconfig.
    pub fn new(kubeconfig: PathBuf) -> Self {
        // The server writes its kubeconfig to `<data-dir>/kubeconfig.yaml` and its CA to `<data-dir>/tls`.
        let tls_dir = kubeconfig.parent().map(|d| d.join("tls"));
        Self { kubeconfig, client: None, rediscover_every: Duration::from_secs(30), node_timings: Default::default(), tls_dir }
    }
}

/// Run the controller manager until `shutdown` becomes true: controllers run only while this
/// process holds the `kube-controller-manager` Lease, so several servers can run it.
pub async fn run(config: Config, mut shutdown: tokio::sync::watch::Receiver<bool>) -> anyhow::Result<()> {
    let client = match &config.client {
        Some(c) => c.clone(),
        None => client::from_kubeconfig(&config.kubeconfig).await?,
    };
    let c = client.clone();
    let elected = tokio::spawn(leader::run_elected(client, leader::LeaseConfig::new("kube-controller-manager"), move || {
        run_controllers(c.clone(), config.clone())
    }));
    let _guard = AbortOnDrop(elected);
    let _ = shutdown.changed().await;
    Ok(())
}

/// Aborts a task when dropped (tokio's JoinHandle detaches instead).
pub struct AbortOnDrop(pub tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct StopGraph(graph::Graph);

impl Drop for StopGraph {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// Every controller, until aborted (dropping the JoinSet aborts them all).
async fn run_controllers(client: kube::Client, config: Config) {
    let graph = graph::Graph::start(client.clone(), config.rediscover_every);
    let _stop = StopGraph(graph.clone());
    // One pod watch for all controllers that react to pods (informer.rs).
    let pods = informer::PodFeed::new();
    let mut set = tokio::task::JoinSet::new();
    set.spawn(gc::run(client.clone(), graph.clone()));
    set.spawn(namespace::run(client.clone(), graph.clone()));
    set.spawn(replicaset::run(client.clone(), pods.subscribe()));
    set.spawn(deployment::run(client.clone()));
    set.spawn(node_lifecycle::run(client.clone(), config.node_timings.clone()));
    set.spawn(endpoints::run(client.clone(), pods.subscribe()));
    set.spawn(nodeipam::run(client.clone()));
    set.spawn(servicelb::run(client.clone()));
    set.spawn(job::run(client.clone(), pods.subscribe()));
    set.spawn(cronjob::run(client.clone()));
    set.spawn(daemonset::run(client.clone(), pods.subscribe()));
    set.spawn(statefulset::run(client.clone(), pods.subscribe()));
    set.spawn(disruption::run(client.clone(), pods.subscribe()));
    set.spawn(resourcequota::run(client.clone(), graph.clone()));
    set.spawn(volume::run(client.clone(), pods.subscribe()));
    set.spawn(hpa::run(client.clone(), std::sync::Arc::new(hpa::PodMetricsSource::new(client.clone())), pods.subscribe()));
    set.spawn(serviceaccount::run(client.clone(), serviceaccount::ca_from_kubeconfig(&config.kubeconfig)));
    set.spawn(csr::run(client.clone(), config.tls_dir.clone()));
    set.spawn(bootstrap_signer::run(client.clone(), config.kubeconfig.clone()));
    // Started last: every pod-triggered controller has subscribed by now.
    set.spawn(pods.run(client.clone()));
    while set.join_next().await.is_some() {}
}
