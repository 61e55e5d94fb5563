//! The node's share of cluster networking, fed from the API: the pod network (once the node
//! has a pod CIDR), routes to the other nodes, the service proxy, the node-local cluster DNS
//! and NetworkPolicy enforcement. The mechanics live in `skiff-net`; this module watches the
//! API and calls it. In CNI mode ([`cni`]) plugins wire the pods and route between nodes,
//! and only the services run here.

pub mod cni;
mod hook;
pub mod proxy_health;
mod services;
mod watch;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Service};
use kube::api::{Api, PostParams};
use skiff_net::pod_network::{Backend, Ipv4Cidr, NodePeer, PodNetwork, PodNetworkConfig};

pub use cni::CniNetwork;
pub use hook::ClusterNetwork;

use crate::pods::containers_blocking as blocking;
use crate::Shared;

/// Which network services the node runs.
#[derive(Debug, Clone)]
pub struct NetworkOptions {
    /// How pod traffic reaches other nodes.
    pub backend: Backend,
    /// Program Services into nftables.
    pub proxy: bool,
    /// Serve cluster DNS on the node (at the cluster DNS address).
    pub dns: bool,
    /// Enforce NetworkPolicies.
    pub policy: bool,
    /// Serve Ingresses on the node's ports 80 and 443.
    pub ingress: bool,
    /// Port of the service proxy's `/healthz` on all addresses (10256; 0 = off).
    pub proxy_healthz_port: u16,
    /// Port of the service proxy's `/metrics` on localhost (10249; 0 = off).
    pub proxy_metrics_port: u16,
    /// CNI plugins wire the pods instead of skiff's bridge (`backend` is then unused).
    pub cni: Option<cni::CniConfig>,
}

impl Default for NetworkOptions {
    fn default() -> Self {
        Self {
            backend: Backend::Vxlan,
            proxy: true,
            dns: true,
            policy: true,
            ingress: true,
            proxy_healthz_port: 10256,
            proxy_metrics_port: 10249,
            cni: None,
        }
    }
}

fn node_ipv4(shared: &Shared) -> Option<Ipv4Addr> {
    match shared.config.node_ip {
        IpAddr::V4(ip) => Some(ip),
        IpAddr::V6(_) => None,
    }
}

/// Waits for the node's pod CIDR, builds the pod network and runs the network services
/// until the task is dropped.
pub async fn run(shared: Arc<Shared>, network: Arc<ClusterNetwork>, options: NetworkOptions) {
    let Some(node_ip) = node_ipv4(&shared) else {
        tracing::error!("the pod network needs an IPv4 node address");
        return;
    };
    let pod_cidr = wait_for_pod_cidr(&shared).await;
    let mut config = PodNetworkConfig::new(pod_cidr, node_ip, shared.config.root.join("network"));
    config.backend = options.backend;
    let built = tokio::task::spawn_blocking(move || PodNetwork::new(config)).await;
    let pod_network = match built {
        Ok(Ok(pn)) => Arc::new(pn),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "could not build the pod network; pods get no network");
            return;
        }
        Err(e) => {
            tracing::error!(error = %e, "pod network setup panicked");
            return;
        }
    };
    network.set(pod_network.clone());
    tracing::info!(%pod_cidr, "pod network ready");
    release_leaked_addresses(&shared, &pod_network).await;

    let nodes = watch::cache::<Node>(shared.client.clone());
    tokio::spawn(sync_peers(nodes, pod_network.clone()));
    let pn = pod_network.clone();
    start_services(shared, options, move |dns_ip| pn.add_local_address(dns_ip)).await;
}

/// CNI mode: the plugins own pod wiring and the routes between nodes, so there is no pod
/// CIDR to wait for and no bridge; the services run as in [`run`], the cluster DNS address
/// going on the loopback interface (pods reach it through their CNI gateway, the host).
pub async fn run_cni(shared: Arc<Shared>, network: Arc<CniNetwork>, options: NetworkOptions) {
    tracing::info!(conf_dir = %network.config().conf_dir.display(), "pod network: CNI plugins");
    start_services(shared, options, |dns_ip| skiff_net::pod_network::add_link_address("lo", dns_ip)).await;
}

/// Starts the service proxy, the cluster DNS (after `add_dns_address` made its address
/// local), NetworkPolicy enforcement and the Ingress controller, as `options` ask.
async fn start_services<F>(shared: Arc<Shared>, options: NetworkOptions, add_dns_address: F)
where
    F: FnOnce(Ipv4Addr) -> skiff_net::pod_network::Result<()> + Send + 'static,
{
    let client = shared.client.clone();
    if options.proxy || options.dns || options.policy || options.ingress {
        let caches = services::Caches::start(client.clone(), options.policy || options.proxy, options.ingress);
        if options.ingress {
            tokio::spawn(services::run_ingress(shared.clone(), caches.clone()));
        }
        if options.proxy {
            let ports = (options.proxy_healthz_port, options.proxy_metrics_port);
            tokio::spawn(services::run_proxy(shared.clone(), caches.clone(), ports));
        }
        if options.dns {
            ensure_dns_service(&shared).await;
            let dns_ip = shared.config.cluster_dns;
            match tokio::task::spawn_blocking(move || add_dns_address(dns_ip)).await {
                Ok(Ok(())) => {
                    tokio::spawn(services::run_dns(shared.clone(), caches.clone()));
                }
                Ok(Err(e)) => tracing::error!(error = %e, "could not add the cluster DNS address; no DNS on this node"),
                Err(e) => tracing::error!(error = %e, "DNS address setup panicked"),
            }
        }
        if options.policy {
            tokio::spawn(services::run_policy(shared.clone(), caches.clone()));
        }
    }
}

async fn wait_for_pod_cidr(shared: &Shared) -> Ipv4Cidr {
    let api: Api<Node> = Api::all(shared.client.clone());
    let mut logged = false;
    loop {
        if let Ok(node) = api.get(&shared.config.node_name).await {
            if let Some(cidr) = node.spec.as_ref().and_then(|s| s.pod_cidr.as_ref()) {
                match cidr.parse::<Ipv4Cidr>() {
                    Ok(c) => return c,
                    Err(e) => tracing::warn!(%cidr, error = %e, "unusable pod CIDR on the node"),
                }
            }
        }
        if !logged {
            tracing::info!("waiting for the node's pod CIDR");
            logged = true;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// After an agent restart, addresses of sandboxes that no longer exist go back to the pool.
async fn release_leaked_addresses(shared: &Shared, pod_network: &Arc<PodNetwork>) {
    let Ok(sandboxes) = blocking(&shared.runtime, |rt| rt.list_sandboxes()).await else { return };
    let live: Vec<String> = sandboxes.into_iter().map(|s| s.config.id).collect();
    let pn = pod_network.clone();
    let released = tokio::task::spawn_blocking(move || {
        let ids: Vec<&str> = live.iter().map(String::as_str).collect();
        pn.gc(&ids)
    })
    .await;
    match released {
        Ok(Ok(ids)) if !ids.is_empty() => tracing::info!(sandboxes = ?ids, "released addresses of vanished sandboxes"),
        Ok(Err(e)) => tracing::warn!(error = %e, "pod address garbage collection failed"),
        _ => {}
    }
}

/// Keeps routes to every other node's pod CIDR (VXLAN or direct) in step with the Nodes.
async fn sync_peers(mut nodes: watch::Cache<Node>, pod_network: Arc<PodNetwork>) {
    loop {
        let peers: Vec<NodePeer> = watch::items(&nodes.store)
            .into_iter()
            .filter_map(|n| {
                let cidr = n.spec.as_ref()?.pod_cidr.as_ref()?.parse().ok()?;
                let ip = n
                    .status
                    .as_ref()?
                    .addresses
                    .as_ref()?
                    .iter()
                    .find(|a| a.type_ == "InternalIP")?
                    .address
                    .parse()
                    .ok()?;
                Some(NodePeer { name: n.metadata.name.clone().unwrap_or_default(), node_ip: ip, pod_cidr: cidr })
            })
            .collect();
        let pn = pod_network.clone();
        match tokio::task::spawn_blocking(move || pn.set_peers(&peers)).await {
            Ok(Err(e)) => tracing::warn!(error = %e, "updating routes to other nodes failed"),
            Err(e) => tracing::warn!(error = %e, "peer sync panicked"),
            Ok(Ok(())) => {}
        }
        watch::next_change(&mut [&mut nodes.changed]).await;
    }
}

/// The `kube-dns` Service in kube-system at the cluster DNS address, as k3s's CoreDNS
/// manifest creates it; the DNS itself runs on every node, so the Service has no selector
/// and the proxy leaves it alone.
async fn ensure_dns_service(shared: &Shared) {
    let api: Api<Service> = Api::namespaced(shared.client.clone(), "kube-system");
    if matches!(api.get_opt("kube-dns").await, Ok(Some(_))) {
        return;
    }
    let service: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "kube-dns", "namespace": "kube-system",
                     "labels": {"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS", "kubernetes.io/cluster-service": "true"}},
        "spec": {"clusterIP": shared.config.cluster_dns.to_string(),
                 "ports": [{"name": "dns", "port": 53, "protocol": "UDP"},
                           {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]}
    }))
    .expect("valid service");
    match api.create(&PostParams::default(), &service).await {
        Ok(_) => tracing::info!("created the kube-dns Service"),
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => tracing::warn!(error = %e, "could not create the kube-dns Service"),
    }
}
