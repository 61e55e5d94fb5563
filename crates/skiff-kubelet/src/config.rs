//! Settings of the node agent.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

/// Settings of the node agent; [`Config::new`] gives the defaults skiff uses.
#[derive(Debug, Clone)]
pub struct Config {
    /// Node name (the hostname by default).
    pub node_name: String,
    /// The node's InternalIP: where the API server reaches the agent and what hostNetwork
    /// pods report as their IP.
    pub node_ip: IpAddr,
    /// The agent's own state (`<data-dir>/agent`).
    pub root: PathBuf,
    /// Extra node labels.
    pub labels: BTreeMap<String, String>,
    /// Mark the node as a control-plane node (`node-role.kubernetes.io/control-plane`).
    pub control_plane: bool,
    /// Port of the streaming/stats server the API server calls (10250).
    pub kubelet_port: u16,
    /// Port of the plain-HTTP `/healthz` (10248; 0 turns it off).
    pub healthz_port: u16,
    /// Cluster DNS address given to pods (10.43.0.10).
    pub cluster_dns: Ipv4Addr,
    /// Cluster domain (`cluster.local`).
    pub cluster_domain: String,
    /// How often the Lease is renewed (10 s, as upstream).
    pub lease_interval: Duration,
    /// Lease duration written into the Lease (40 s, as upstream).
    pub lease_duration_seconds: i32,
    /// How often the Node status is rewritten when nothing changed (60 s; upstream 5 min).
    pub status_report_interval: Duration,
    /// How often each pod worker re-checks its containers when nothing woke it.
    pub resync_interval: Duration,
    /// Maximum pods (110, as upstream).
    pub max_pods: u32,
    /// Container log rotation (10Mi, 5 files, checked every 10 s, as upstream).
    pub log_rotation: crate::log_rotation::Policy,
    /// Directory of static pod manifests (`<data-dir>/manifests`); `None` turns static
    /// pods off.
    pub manifests_dir: Option<PathBuf>,
    /// How often the manifests directory is re-read (upstream: 20 s plus inotify).
    pub manifests_interval: Duration,
    /// Hard eviction thresholds (upstream's defaults unless `--eviction-hard` says otherwise).
    pub eviction_hard: Vec<crate::eviction::Threshold>,
    /// How often the eviction manager looks at the node (10 s, as upstream).
    pub eviction_interval: Duration,
    /// How long a pressure condition stays on after its threshold was last crossed (5 min,
    /// as upstream's `--eviction-pressure-transition-period`).
    pub eviction_pressure_transition: Duration,
}

impl Config {
    /// Defaults for node `node_name` at `node_ip`, state under `root`.
    pub fn new(node_name: impl Into<String>, node_ip: IpAddr, root: impl Into<PathBuf>) -> Self {
        Self {
            node_name: node_name.into(),
            node_ip,
            root: root.into(),
            labels: BTreeMap::new(),
            control_plane: false,
            kubelet_port: 10250,
            healthz_port: 10248,
            cluster_dns: Ipv4Addr::new(10, 43, 0, 10),
            cluster_domain: "cluster.local".into(),
            lease_interval: Duration::from_secs(10),
            lease_duration_seconds: 40,
            status_report_interval: Duration::from_secs(60),
            resync_interval: Duration::from_secs(1),
            max_pods: 110,
            log_rotation: crate::log_rotation::Policy::default(),
            manifests_dir: None,
            manifests_interval: Duration::from_secs(2),
            eviction_hard: crate::eviction::Threshold::defaults(),
            eviction_interval: Duration::from_secs(10),
            eviction_pressure_transition: Duration::from_secs(300),
        }
    }
}

/// This machine's hostname, lowercased (a valid node name in the common case).
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .map(|h| h.to_lowercase())
        .unwrap_or_else(|| "localhost".into())
}
