//! Node routes: `unreachable` guards for the cluster and service CIDRs, and routes to the pod
//! CIDRs of peer nodes. The kernel is the source of truth: our routes carry
//! [`SKIFF_ROUTE_PROTO`], so after a restart we find them again and remove the ones for peers
//! that went away, without keeping a state file.

use std::net::Ipv4Addr;

use netlink_packet_route::route::RouteType;
use netlink_packet_route::AddressFamily;

use super::cidr::Ipv4Cidr;
use super::error::Result;
use super::nl::{Neigh, Netlink, Route, SKIFF_ROUTE_PROTO};
use super::vxlan::vtep_mac;
use super::Backend;

/// Another node of the cluster, as seen by this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePeer {
    /// Node name (for logs).
    pub name: String,
    /// The peer's node address (VXLAN remote / host-gw next hop).
    pub node_ip: Ipv4Addr,
    /// The peer's pod CIDR.
    pub pod_cidr: Ipv4Cidr,
}

/// Installs (or replaces) an `unreachable` route for each prefix. More specific routes (the
/// local bridge, peers) win, so only cluster traffic without a real route hits these, and it
/// fails fast instead of leaking out of the default route.
pub fn ensure_unreachable(nl: &mut Netlink, prefixes: &[Ipv4Cidr]) -> Result<()> {
    for dst in prefixes {
        nl.replace_route(&unreachable(*dst))?;
    }
    Ok(())
}

/// Installs (or replaces) a route for `dst` straight into interface `oif`.
pub fn ensure_device_route(nl: &mut Netlink, dst: Ipv4Cidr, oif: u32) -> Result<()> {
    nl.replace_route(&Route {
        dst,
        kind: RouteType::Unicast,
        gateway: None,
        oif: Some(oif),
        onlink: false,
        protocol: SKIFF_ROUTE_PROTO,
    })
}

fn unreachable(dst: Ipv4Cidr) -> Route {
    Route {
        dst,
        kind: RouteType::Unreachable,
        gateway: None,
        oif: None,
        onlink: false,
        protocol: SKIFF_ROUTE_PROTO,
    }
}

/// The route to one peer's pods.
fn peer_route(backend: Backend, peer: &NodePeer, vxlan_index: Option<u32>) -> Route {
    match backend {
        Backend::Vxlan => Route {
            dst: peer.pod_cidr,
            kind: RouteType::Unicast,
            gateway: Some(peer.pod_cidr.addr()),
            oif: vxlan_index,
            onlink: true,
            protocol: SKIFF_ROUTE_PROTO,
        },
        Backend::HostGw => Route {
            dst: peer.pod_cidr,
            kind: RouteType::Unicast,
            gateway: Some(peer.node_ip),
            oif: None,
            onlink: false,
            protocol: SKIFF_ROUTE_PROTO,
        },
    }
}

/// Makes the kernel's peer routes (and, for VXLAN, ARP/FDB entries) match `peers` exactly:
/// adds missing ones, replaces changed ones, removes those of peers no longer listed.
pub fn sync_peers(
    nl: &mut Netlink,
    backend: Backend,
    cluster_cidr: Ipv4Cidr,
    own_pod_cidr: Ipv4Cidr,
    peers: &[NodePeer],
    vxlan_index: Option<u32>,
) -> Result<()> {
    // Our own node may be in the list the caller got from the API; never route to ourselves.
    let peers: Vec<&NodePeer> = peers
        .iter()
        .filter(|p| p.pod_cidr != own_pod_cidr && cluster_cidr.contains_net(&p.pod_cidr))
        .collect();
    let desired: Vec<Route> = peers
        .iter()
        .map(|p| peer_route(backend, p, vxlan_index))
        .collect();

    for existing in nl.routes()? {
        let ours = existing.protocol == SKIFF_ROUTE_PROTO
            && existing.kind == RouteType::Unicast
            && cluster_cidr.contains_net(&existing.dst)
            && existing.dst != cluster_cidr;
        let wanted = desired.iter().any(|d| {
            d.dst == existing.dst
                && d.gateway == existing.gateway
                && (d.oif.is_none() || d.oif == existing.oif)
        });
        if ours && !wanted {
            tracing::info!(dst = %existing.dst, "removing route of departed peer");
            nl.delete_route(&existing)?;
        }
    }

    if let Some(vx) = vxlan_index {
        let want_neigh: Vec<Neigh> = if backend == Backend::Vxlan {
            peers
                .iter()
                .map(|p| Neigh {
                    family: AddressFamily::Inet,
                    ifindex: vx,
                    dst: Some(p.pod_cidr.addr()),
                    mac: vtep_mac(p.node_ip).to_vec(),
                })
                .collect()
        } else {
            Vec::new()
        };
        let want_fdb: Vec<Neigh> = if backend == Backend::Vxlan {
            peers
                .iter()
                .map(|p| Neigh {
                    family: AddressFamily::Bridge,
                    ifindex: vx,
                    dst: Some(p.node_ip),
                    mac: vtep_mac(p.node_ip).to_vec(),
                })
                .collect()
        } else {
            Vec::new()
        };
        // Order matters for a clean cut-over: the FDB entry (where to tunnel) first, then ARP,
        // then the route that makes traffic use them.
        for f in &want_fdb {
            nl.replace_neigh(f)?;
        }
        for n in &want_neigh {
            nl.replace_neigh(n)?;
        }
        for stale in nl.neighbours(AddressFamily::Inet, vx)? {
            if !want_neigh.contains(&stale) {
                nl.delete_neigh(&stale)?;
            }
        }
        for stale in nl.neighbours(AddressFamily::Bridge, vx)? {
            if !want_fdb.contains(&stale) {
                nl.delete_neigh(&stale)?;
            }
        }
    }

    for r in &desired {
        nl.replace_route(r)?;
    }
    Ok(())
}

/// Removes every route skiff installed in the main table (unreachable guards and peer routes).
pub fn remove_all(nl: &mut Netlink) -> Result<()> {
    for r in nl.routes()? {
        if r.protocol == SKIFF_ROUTE_PROTO {
            nl.delete_route(&r)?;
        }
    }
    Ok(())
}
