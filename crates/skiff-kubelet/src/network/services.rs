//! The network services driven by cluster-wide caches: the service proxy (nftables), the
//! node-local cluster DNS, and NetworkPolicy enforcement. Each resyncs after any change of
//! its inputs; the work itself is atomic on the skiff-net side.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass, NetworkPolicy};
use kube::api::{Api, Patch, PatchParams, PostParams};
use skiff_net::ingress::{self, IngressConfig, IngressServer};
use skiff_net::dns::{self, DnsConfig, DnsServer};
use skiff_net::nft::NetlinkBackend;
use skiff_net::policy::{self, PolicyEnforcer, PolicyInput, PolicyPod};
use skiff_net::proxy::{self, HostPort, ProxyConfig, ServiceProxy};

use super::proxy_health::{self, Endpoints, ProxyHealth};
use super::watch::{self, Cache};
use crate::Shared;

/// The caches the network services read.
#[derive(Clone)]
pub struct Caches {
    services: Arc<Cache<Service>>,
    slices: Arc<Cache<EndpointSlice>>,
    pods: Option<Arc<Cache<Pod>>>,
    namespaces: Option<Arc<Cache<Namespace>>>,
    policies: Option<Arc<Cache<NetworkPolicy>>>,
    ingresses: Option<Arc<Cache<Ingress>>>,
    secrets: Option<Arc<Cache<Secret>>>,
}

impl Caches {
    /// Starts the watches; pods, namespaces and policies only when `with_pods`, Ingresses
    /// and Secrets only when `with_ingress`.
    pub fn start(client: kube::Client, with_pods: bool, with_ingress: bool) -> Self {
        Self {
            ingresses: with_ingress.then(|| Arc::new(watch::cache(client.clone()))),
            secrets: with_ingress.then(|| Arc::new(watch::cache(client.clone()))),
            services: Arc::new(watch::cache(client.clone())),
            slices: Arc::new(watch::cache(client.clone())),
            pods: with_pods.then(|| Arc::new(watch::cache(client.clone()))),
            namespaces: with_pods.then(|| Arc::new(watch::cache(client.clone()))),
            policies: with_pods.then(|| Arc::new(watch::cache(client))),
        }
    }
}

/// Services the proxy programs: all but the node-local DNS, whose address is a local one.
fn proxied_services(services: Vec<Service>) -> Vec<Service> {
    services
        .into_iter()
        .filter(|s| !(s.metadata.namespace.as_deref() == Some("kube-system") && s.metadata.name.as_deref() == Some("kube-dns")))
        .collect()
}

fn proto(p: Option<&str>) -> proxy::Protocol {
    match p {
        Some("UDP") => proxy::Protocol::Udp,
        Some("SCTP") => proxy::Protocol::Sctp,
        _ => proxy::Protocol::Tcp,
    }
}

/// hostPort mappings of the pods running on this node.
fn host_ports(pods: &[Pod], node: &str) -> Vec<HostPort> {
    let mut out = Vec::new();
    for pod in pods {
        let spec = match &pod.spec {
            Some(s) if s.node_name.as_deref() == Some(node) && !s.host_network.unwrap_or(false) => s,
            _ => continue,
        };
        let Some(pod_ip) = pod.status.as_ref().and_then(|s| s.pod_ip.as_ref()).and_then(|ip| ip.parse::<Ipv4Addr>().ok()) else {
            continue;
        };
        for port in spec.containers.iter().flat_map(|c| c.ports.iter().flatten()) {
            let Some(host_port) = port.host_port.filter(|p| (1..=65535).contains(p)) else { continue };
            out.push(HostPort {
                protocol: proto(port.protocol.as_deref()),
                host_ip: port.host_ip.as_ref().and_then(|ip| ip.parse().ok()).filter(|ip: &Ipv4Addr| !ip.is_unspecified()),
                host_port: host_port as u16,
                pod_ip,
                container_port: port.container_port as u16,
            });
        }
    }
    out
}

/// Programs Services (and hostPorts) into the `skiff` nftables table after every change.
pub async fn run_proxy(shared: Arc<Shared>, caches: Caches, ports: (u16, u16)) {
    let node_ips: Vec<Ipv4Addr> = match shared.config.node_ip {
        std::net::IpAddr::V4(ip) => vec![ip],
        _ => Vec::new(),
    };
    let config = ProxyConfig { node_ips: node_ips.clone(), node_name: shared.config.node_name.clone(), ..Default::default() };
    let built = NetlinkBackend::new()
        .map_err(|source| proxy::Error::Nft { context: "opening netlink".into(), source })
        .and_then(|b| ServiceProxy::new(config, b));
    let proxy = match built {
        Ok(p) => Arc::new(Mutex::new(p)),
        Err(e) => {
            tracing::error!(error = %e, "service proxy could not start; Services will not work on this node");
            return;
        }
    };
    let health = Arc::new(ProxyHealth::default());
    let (healthz_port, metrics_port) = ports;
    if healthz_port != 0 {
        tokio::spawn(proxy_health::serve(health.clone(), SocketAddr::from(([0, 0, 0, 0], healthz_port)), Endpoints::Health));
    }
    if metrics_port != 0 {
        tokio::spawn(proxy_health::serve(health.clone(), SocketAddr::from(([127, 0, 0, 1], metrics_port)), Endpoints::Metrics));
    }
    let mut services_changed = caches.services.changed.clone();
    let mut slices_changed = caches.slices.changed.clone();
    let mut pods_changed = caches.pods.as_ref().map(|p| p.changed.clone());
    let mut conntrack: Option<skiff_net::conntrack::Conntrack> = None;
    let mut programmed = proxy::ProxyState::default();
    loop {
        health.queued();
        let started = std::time::Instant::now();
        // The copies of the caches end with this block, before the loop waits.
        let state = {
            let services = proxied_services(watch::items(&caches.services.store));
            let slices = watch::items(&caches.slices.store);
            let mut state = proxy::build_state(&services, &slices, &shared.config.node_name, &node_ips);
            if let Some(pods) = &caches.pods {
                state.host_ports = host_ports(&watch::items(&pods.store), &shared.config.node_name);
            }
            state
        };
        let p = proxy.clone();
        let wanted = state.clone();
        let ok = match tokio::task::spawn_blocking(move || p.lock().expect("proxy lock").sync(&state)).await {
            Ok(Ok(stats)) => {
                tracing::debug!(?stats, "service rules synced");
                let stale = proxy::stale::stale_udp(&programmed, &wanted);
                programmed = wanted;
                if !stale.is_empty() {
                    let mut ct = conntrack.take();
                    conntrack = tokio::task::spawn_blocking(move || flush_stale_udp(ct.take(), &stale)).await.unwrap_or(None);
                }
                true
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "service rule sync failed; retrying on the next change");
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, "service rule sync panicked");
                false
            }
        };
        health.synced(ok, started.elapsed());
        match &mut pods_changed {
            Some(pc) => watch::next_change(&mut [&mut services_changed, &mut slices_changed, pc]).await,
            None => watch::next_change(&mut [&mut services_changed, &mut slices_changed]).await,
        }
    }
}

/// Deletes the UDP conntrack entries `stale` selects, so the next datagram of those flows is
/// balanced over the current backends; returns the socket for reuse (none after an error).
fn flush_stale_udp(ct: Option<skiff_net::conntrack::Conntrack>, stale: &proxy::stale::StaleUdp) -> Option<skiff_net::conntrack::Conntrack> {
    let mut ct = match ct.map_or_else(skiff_net::conntrack::Conntrack::new, Ok) {
        Ok(ct) => ct,
        Err(e) => {
            tracing::warn!(error = %e, "cannot open ctnetlink; stale UDP flows stay until they time out");
            return None;
        }
    };
    match ct.delete_udp(|f| stale.matches(f)) {
        Ok(0) => Some(ct),
        Ok(n) => {
            tracing::debug!(flows = n, ?stale, "deleted stale UDP conntrack entries");
            Some(ct)
        }
        Err(e) => {
            tracing::warn!(error = %e, "deleting stale UDP conntrack entries failed");
            None
        }
    }
}

/// Serves cluster DNS on the cluster DNS address (made local to this node), records
/// rebuilt after every Service or EndpointSlice change.
pub async fn run_dns(shared: Arc<Shared>, caches: Caches) {
    let upstreams = dns::upstreams_from_files(&dns::NODE_RESOLV_CONF_PATHS);
    let config = DnsConfig {
        domain: shared.config.cluster_domain.clone(),
        listen: vec![SocketAddr::from((shared.config.cluster_dns, 53))],
        upstreams,
        ..Default::default()
    };
    let server = match DnsServer::bind(config).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cluster DNS could not start on this node");
            return;
        }
    };
    let handle = server.handle();
    let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(server.run(stop_rx));
    tracing::info!(address = %shared.config.cluster_dns, "cluster DNS serving");
    let mut services_changed = caches.services.changed.clone();
    let mut slices_changed = caches.slices.changed.clone();
    loop {
        // Temporaries: only the caches hold the objects while the loop waits.
        handle.update(dns::build_records(&watch::items(&caches.services.store), &watch::items(&caches.slices.store), &shared.config.cluster_domain));
        watch::next_change(&mut [&mut services_changed, &mut slices_changed]).await;
    }
}

/// Enforces NetworkPolicies for the pods of this node.
pub async fn run_policy(shared: Arc<Shared>, caches: Caches) {
    let (Some(pods), Some(namespaces), Some(policies)) = (caches.pods.clone(), caches.namespaces.clone(), caches.policies.clone()) else {
        return;
    };
    if let Err(e) = tokio::task::spawn_blocking(|| policy::enable_bridge_netfilter(None)).await.unwrap_or(Ok(())) {
        tracing::warn!(error = %e, "bridged pod traffic is not filtered; NetworkPolicies may not apply between pods of this node");
    }
    let enforcer = match NetlinkBackend::new() {
        Ok(b) => Arc::new(Mutex::new(PolicyEnforcer::new(b))),
        Err(e) => {
            tracing::error!(error = %e, "NetworkPolicy enforcement could not start");
            return;
        }
    };
    let node_ips: Vec<Ipv4Addr> = match shared.config.node_ip {
        std::net::IpAddr::V4(ip) => vec![ip],
        _ => Vec::new(),
    };
    let mut pods_changed = pods.changed.clone();
    let mut ns_changed = namespaces.changed.clone();
    let mut policies_changed = policies.changed.clone();
    loop {
        // Read through the store's shared objects (no copy of every pod), and everything
        // built from them is moved into the blocking sync, so nothing is held while waiting.
        let all_pods = pods.store.state();
        let local_pods: BTreeSet<(String, String)> = all_pods
            .iter()
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(shared.config.node_name.as_str()))
            .map(|p| (p.metadata.namespace.clone().unwrap_or_default(), p.metadata.name.clone().unwrap_or_default()))
            .collect();
        let namespace_labels: BTreeMap<String, BTreeMap<String, String>> = watch::items(&namespaces.store)
            .into_iter()
            .map(|n| (n.metadata.name.clone().unwrap_or_default(), n.metadata.labels.clone().unwrap_or_default()))
            .collect();
        let input = PolicyInput {
            pods: all_pods.iter().filter_map(|p| PolicyPod::from_pod(p, None)).collect(),
            namespaces: namespace_labels,
            policies: watch::items(&policies.store),
            local_pods,
            node_ips: node_ips.clone(),
        };
        let e = enforcer.clone();
        match tokio::task::spawn_blocking(move || e.lock().expect("policy lock").sync(&input)).await {
            Ok(Err(err)) => tracing::warn!(error = %err, "NetworkPolicy sync failed"),
            Err(err) => tracing::warn!(error = %err, "NetworkPolicy sync panicked"),
            Ok(Ok(_)) => {}
        }
        drop(all_pods);
        watch::next_change(&mut [&mut pods_changed, &mut ns_changed, &mut policies_changed]).await;
    }
}

/// The ingress class this node serves.
pub const INGRESS_CLASS: &str = "skiff";

/// Serves Ingresses of class `skiff` (the default class) on the node's ports 80 and 443;
/// control-plane nodes also create the IngressClass and publish Ingress status.
pub async fn run_ingress(shared: Arc<Shared>, caches: Caches) {
    let (Some(ingresses), Some(secrets)) = (caches.ingresses.clone(), caches.secrets.clone()) else { return };
    if shared.config.control_plane {
        let api: Api<IngressClass> = Api::all(shared.client.clone());
        match api.create(&PostParams::default(), &ingress::ingress_class(INGRESS_CLASS, true)).await {
            Ok(_) | Err(kube::Error::Api(_)) => {}
            Err(e) => tracing::warn!(error = %e, "could not create the skiff IngressClass"),
        }
    }
    let config = IngressConfig { class_name: INGRESS_CLASS.into(), is_default_class: true, ..Default::default() };
    let server = match IngressServer::bind(config).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "ingress controller could not start on this node");
            return;
        }
    };
    let handle = server.handle();
    let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(server.run(stop_rx));
    tracing::info!("ingress controller serving on :80 and :443");
    let mut changed: Vec<tokio::sync::watch::Receiver<u64>> = vec![
        caches.services.changed.clone(),
        caches.slices.changed.clone(),
        ingresses.changed.clone(),
        secrets.changed.clone(),
    ];
    loop {
        let all = watch::items(&ingresses.store);
        let (routes, warnings) = ingress::build_routes(
            &all,
            &watch::items(&caches.services.store),
            &watch::items(&caches.slices.store),
            &watch::items(&secrets.store),
            INGRESS_CLASS,
            true,
        );
        for w in warnings {
            tracing::debug!(warning = %w, "ingress");
        }
        handle.update(routes);
        if shared.config.control_plane {
            publish_status(&shared, &all).await;
        }
        let mut refs: Vec<&mut tokio::sync::watch::Receiver<u64>> = changed.iter_mut().collect();
        watch::next_change(&mut refs).await;
    }
}

/// Writes the node addresses into the status of our Ingresses that lack them.
async fn publish_status(shared: &Shared, all: &[Ingress]) {
    let status = ingress::ingress_status(&[shared.config.node_ip]);
    for ing in all.iter().filter(|i| ingress::is_ours(i, INGRESS_CLASS, true)) {
        let current = ing.status.as_ref().and_then(|s| s.load_balancer.as_ref());
        if current == status.load_balancer.as_ref() {
            continue;
        }
        let ns = ing.metadata.namespace.clone().unwrap_or_default();
        let name = ing.metadata.name.clone().unwrap_or_default();
        let api: Api<Ingress> = Api::namespaced(shared.client.clone(), &ns);
        let patch = serde_json::json!({ "status": status });
        if let Err(e) = api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            tracing::debug!(ingress = %format!("{ns}/{name}"), error = %e, "could not publish ingress status");
        }
    }
}
