//! Translation of Services and EndpointSlices (k8s-openapi types) into a [`ProxyState`],
//! following upstream kube-proxy's reading of the API (defaults, nil conditions, headless and
//! ExternalName services, LoadBalancer `ipMode: Proxy`).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::{Endpoint, Protocol, ProxyState, ServicePort};

/// Label that ties an EndpointSlice to its Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Upstream default for sessionAffinityConfig.clientIP.timeoutSeconds (3 hours).
const DEFAULT_AFFINITY_SECONDS: u32 = 10800;

fn protocol(p: Option<&str>) -> Option<Protocol> {
    match p.unwrap_or("TCP") {
        "TCP" => Some(Protocol::Tcp),
        "UDP" => Some(Protocol::Udp),
        "SCTP" => Some(Protocol::Sctp),
        _ => None,
    }
}

fn ipv4s<'a>(addrs: impl IntoIterator<Item = &'a String>) -> Vec<Ipv4Addr> {
    addrs.into_iter().filter_map(|a| a.parse().ok()).collect()
}

/// Endpoints of every port of a service, keyed by (port name, protocol), deduplicated
/// (the same address may appear in several slices while they are being rebalanced).
type PortEndpoints = BTreeMap<(String, Protocol), BTreeMap<(Ipv4Addr, u16), Endpoint>>;

fn slice_endpoints(
    slices: &[&EndpointSlice],
    node_name: &str,
    node_ips: &[Ipv4Addr],
) -> PortEndpoints {
    let mut out = PortEndpoints::new();
    for slice in slices {
        if slice.address_type != "IPv4" {
            continue;
        }
        for sp in slice.ports.iter().flatten() {
            let (Some(port), Some(proto)) = (sp.port, protocol(sp.protocol.as_deref())) else {
                continue;
            };
            let Ok(port) = u16::try_from(port) else {
                continue;
            };
            let per_port = out
                .entry((sp.name.clone().unwrap_or_default(), proto))
                .or_default();
            for ep in &slice.endpoints {
                let Some(ip) = ep
                    .addresses
                    .first()
                    .and_then(|a| a.parse::<Ipv4Addr>().ok())
                else {
                    continue;
                };
                let c = ep.conditions.as_ref();
                // The API says a nil condition means "unknown", to be read as ready/serving;
                // serving defaults to ready, terminating to false.
                let ready = c.and_then(|c| c.ready).unwrap_or(true);
                let serving = c.and_then(|c| c.serving).unwrap_or(ready);
                let terminating = c.and_then(|c| c.terminating).unwrap_or(false);
                let is_local = match &ep.node_name {
                    Some(n) => n == node_name,
                    // Host-network endpoints of this node carry the node's address.
                    None => node_ips.contains(&ip),
                };
                per_port.insert(
                    (ip, port),
                    Endpoint {
                        ip,
                        port,
                        ready,
                        serving,
                        terminating,
                        is_local,
                    },
                );
            }
        }
    }
    out
}

/// Builds the proxy's view of `services` and their `slices` for the node `node_name` with
/// addresses `node_ips`. ExternalName and headless services are left out (they are DNS-only),
/// as are ports with an unknown protocol and non-IPv4 addresses.
pub fn build_state(
    services: &[Service],
    slices: &[EndpointSlice],
    node_name: &str,
    node_ips: &[Ipv4Addr],
) -> ProxyState {
    let mut by_service: BTreeMap<(&str, &str), Vec<&EndpointSlice>> = BTreeMap::new();
    for s in slices {
        let ns = s.metadata.namespace.as_deref().unwrap_or_default();
        if let Some(svc) = s
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_NAME_LABEL))
        {
            by_service.entry((ns, svc.as_str())).or_default().push(s);
        }
    }

    let mut out = Vec::new();
    for svc in services {
        let (Some(ns), Some(name), Some(spec)) = (
            svc.metadata.namespace.as_deref(),
            svc.metadata.name.as_deref(),
            svc.spec.as_ref(),
        ) else {
            continue;
        };
        let ty = spec.type_.as_deref().unwrap_or("ClusterIP");
        if ty == "ExternalName" {
            continue;
        }
        let Some(cluster_ip) = spec
            .cluster_ip
            .as_deref()
            .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
        else {
            continue;
        };
        let external_ips = ipv4s(spec.external_ips.iter().flatten());
        let load_balancer_ips: Vec<Ipv4Addr> = if ty == "LoadBalancer" {
            let ingress = svc
                .status
                .as_ref()
                .and_then(|s| s.load_balancer.as_ref())
                .and_then(|lb| lb.ingress.as_ref());
            // ipMode Proxy means an external load balancer proxies to the nodes itself; the
            // address must not be captured here (upstream does the same).
            ipv4s(
                ingress
                    .into_iter()
                    .flatten()
                    .filter(|i| i.ip_mode.as_deref() != Some("Proxy"))
                    .filter_map(|i| i.ip.as_ref()),
            )
        } else {
            Vec::new()
        };
        let session_affinity_seconds =
            (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
                spec.session_affinity_config
                    .as_ref()
                    .and_then(|c| c.client_ip.as_ref())
                    .and_then(|c| c.timeout_seconds)
                    .and_then(|t| u32::try_from(t).ok())
                    .unwrap_or(DEFAULT_AFFINITY_SECONDS)
            });
        let externally_reachable =
            matches!(ty, "NodePort" | "LoadBalancer") || !external_ips.is_empty();
        let external_policy_local =
            externally_reachable && spec.external_traffic_policy.as_deref() == Some("Local");
        let internal_policy_local = spec.internal_traffic_policy.as_deref() == Some("Local");
        let eps = slice_endpoints(
            by_service
                .get(&(ns, name))
                .map(Vec::as_slice)
                .unwrap_or_default(),
            node_name,
            node_ips,
        );

        for p in spec.ports.iter().flatten() {
            let (Some(proto), Ok(port)) = (protocol(p.protocol.as_deref()), u16::try_from(p.port))
            else {
                continue;
            };
            let port_name = p.name.clone().unwrap_or_default();
            let node_port = if matches!(ty, "NodePort" | "LoadBalancer") {
                p.node_port
                    .and_then(|n| u16::try_from(n).ok())
                    .filter(|n| *n != 0)
            } else {
                None
            };
            let endpoints = eps
                .get(&(port_name.clone(), proto))
                .map(|m| m.values().cloned().collect())
                .unwrap_or_default();
            out.push(ServicePort {
                namespace: ns.to_string(),
                name: name.to_string(),
                port_name,
                protocol: proto,
                cluster_ip: Some(cluster_ip),
                port,
                node_port,
                load_balancer_ips: load_balancer_ips.clone(),
                external_ips: external_ips.clone(),
                session_affinity_seconds,
                external_policy_local,
                internal_policy_local,
                endpoints,
            });
        }
    }
    out.sort_by(|a, b| {
        (&a.namespace, &a.name, &a.port_name, a.protocol).cmp(&(
            &b.namespace,
            &b.name,
            &b.port_name,
            b.protocol,
        ))
    });
    ProxyState {
        services: out,
        host_ports: Vec::new(),
    }
}
