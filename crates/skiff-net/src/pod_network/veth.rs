//! Per-pod veth pairs: the host end is a port of the node bridge, the pod end is `eth0` inside
//! the sandbox's network namespace with the pod's address and a default route via the gateway.

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::Path;

use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::RouteType;

use super::cidr::Ipv4Cidr;
use super::error::{Error, Result};
use super::netns::run_in_netns;
use super::nl::{Netlink, Route, SKIFF_ROUTE_PROTO};

/// Prefix of host-side veth names; lets garbage collection recognise our interfaces.
pub const HOST_VETH_PREFIX: &str = "skv";

/// Name of the pod-side interface, as every Kubernetes network plugin does it.
pub const POD_IFNAME: &str = "eth0";

/// Host-side veth name for a sandbox: the prefix plus 12 hex digits of a stable 64-bit FNV-1a
/// hash of the id (15 characters, the kernel's limit). Stable across restarts so that detach
/// and gc find the interface from the sandbox id alone, without extra state.
pub fn host_veth_name(sandbox_id: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in sandbox_id.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{HOST_VETH_PREFIX}{:012x}", h >> 16)
}

/// What the pod end must look like.
#[derive(Debug, Clone, Copy)]
pub struct PodIface {
    /// The pod's address.
    pub ip: Ipv4Addr,
    /// The node's pod CIDR (gives the prefix length).
    pub pod_cidr: Ipv4Cidr,
    /// The bridge address, used as default gateway.
    pub gateway: Ipv4Addr,
    /// MTU of both veth ends.
    pub mtu: u32,
}

/// Wires a sandbox: creates (or reuses) the veth pair, enslaves the host end to the bridge and
/// configures `eth0` in the namespace at `netns`.
pub fn attach(
    nl: &mut Netlink,
    bridge_index: u32,
    sandbox_id: &str,
    netns: &Path,
    want: PodIface,
) -> Result<()> {
    let host = host_veth_name(sandbox_id);
    if let Some(existing) = nl.link_by_name(&host)? {
        // A previous attach got this far: keep the pair (and the pod's open connections) when
        // the pod end already holds the address, otherwise start over.
        let configured = run_in_netns(netns, || {
            let mut pod = Netlink::open()?;
            let Some(eth0) = pod.link_by_name(POD_IFNAME)? else {
                return Ok(false);
            };
            let addrs = pod.addresses(eth0.index)?;
            Ok(addrs.contains(&(want.ip, want.pod_cidr.prefix_len())))
        })?;
        if configured {
            plug_host_end(nl, &host, existing.index, bridge_index, want.mtu)?;
            return configure_pod_end(netns, want);
        }
        nl.delete_link(existing.index, &host)?;
    }

    let ns_file = File::open(netns).map_err(|source| Error::Netns {
        path: netns.to_path_buf(),
        op: "open",
        source,
    })?;
    // The peer is created directly inside the pod namespace under its final name, so it never
    // appears (and could never clash) in the node namespace.
    let mut peer = LinkMessage::default();
    peer.attributes
        .push(LinkAttribute::IfName(POD_IFNAME.into()));
    peer.attributes.push(LinkAttribute::Mtu(want.mtu));
    peer.attributes
        .push(LinkAttribute::NetNsFd(ns_file.as_raw_fd()));
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::IfName(host.clone()));
    msg.attributes.push(LinkAttribute::Mtu(want.mtu));
    msg.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Veth),
        LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
    ]));
    nl.create_link(msg, &format!("{host} <-> {POD_IFNAME}@{}", netns.display()))?;
    drop(ns_file);

    let link = nl.link_by_name(&host)?.ok_or_else(|| Error::NotFound {
        what: format!("veth {host} after creating it"),
    })?;
    let res = plug_host_end(nl, &host, link.index, bridge_index, want.mtu)
        .and_then(|()| configure_pod_end(netns, want));
    if res.is_err() {
        // Leave nothing half-wired behind; the caller may retry from scratch.
        let _ = nl.delete_link(link.index, &host);
    }
    res
}

fn plug_host_end(
    nl: &mut Netlink,
    host: &str,
    index: u32,
    bridge_index: u32,
    mtu: u32,
) -> Result<()> {
    nl.set_link(
        index,
        host,
        true,
        vec![
            LinkAttribute::Controller(bridge_index),
            LinkAttribute::Mtu(mtu),
        ],
    )
}

/// Inside the pod namespace: `lo` up, `eth0` up with its address, default route via gateway.
fn configure_pod_end(netns: &Path, want: PodIface) -> Result<()> {
    run_in_netns(netns, || {
        let mut pod = Netlink::open()?;
        if let Some(lo) = pod.link_by_name("lo")? {
            if !lo.up {
                pod.set_link(lo.index, "lo", true, Vec::new())?;
            }
        }
        let eth0 = pod
            .link_by_name(POD_IFNAME)?
            .ok_or_else(|| Error::NotFound {
                what: format!("{POD_IFNAME} in {}", netns.display()),
            })?;
        pod.add_address(eth0.index, POD_IFNAME, want.ip, want.pod_cidr.prefix_len())?;
        pod.set_link(
            eth0.index,
            POD_IFNAME,
            true,
            vec![LinkAttribute::Mtu(want.mtu)],
        )?;
        pod.replace_route(&Route {
            dst: Ipv4Cidr::new(Ipv4Addr::UNSPECIFIED, 0).expect("valid"),
            kind: RouteType::Unicast,
            gateway: Some(want.gateway),
            oif: Some(eth0.index),
            onlink: false,
            protocol: SKIFF_ROUTE_PROTO,
        })
    })
}

/// Deletes a sandbox's host veth (which also destroys the pod end); absent is fine.
pub fn detach(nl: &mut Netlink, sandbox_id: &str) -> Result<()> {
    let host = host_veth_name(sandbox_id);
    if let Some(link) = nl.link_by_name(&host)? {
        nl.delete_link(link.index, &host)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn veth_names_are_stable_short_and_distinct() {
        let a = host_veth_name("4f0c9a1b2c3d4e5f60718293a4b5c6d7e8f9");
        assert_eq!(a, host_veth_name("4f0c9a1b2c3d4e5f60718293a4b5c6d7e8f9"));
        assert_eq!(a.len(), 15);
        assert!(a.starts_with(HOST_VETH_PREFIX));
        assert_ne!(a, host_veth_name("4f0c9a1b2c3d4e5f60718293a4b5c6d7e8f8"));
        // Pinned so that a change of hash (which would orphan veths across an upgrade) is seen.
        assert_eq!(host_veth_name(""), "skvcbf29ce48422");
    }
}
