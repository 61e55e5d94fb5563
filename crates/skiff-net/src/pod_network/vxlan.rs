//! The VXLAN overlay, as flannel's `vxlan` backend builds it.
//!
//! Each node has one VXLAN device (`skiff.1`, VNI 1, UDP 8472) whose MAC is derived from the
//! node IP, and whose address is the `.0` of the node's pod CIDR. For every peer node we add:
//! a route `peer_pod_cidr via peer.0 dev skiff.1 onlink`, a permanent ARP entry
//! `peer.0 -> peer MAC`, and an FDB entry `peer MAC -> dst peer node IP`. Learning is off, so no
//! multicast group is needed and the overlay works on any IP network between nodes.

use std::net::Ipv4Addr;

use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVxlan, LinkAttribute, LinkInfo, LinkMessage,
};
use nix::errno::Errno;

use super::cidr::Ipv4Cidr;
use super::error::{Error, Result};
use super::nl::{is_errno, Link, Netlink};

/// VXLAN encapsulation overhead: outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14).
pub const VXLAN_OVERHEAD: u32 = 50;

/// Parameters of the VXLAN device.
#[derive(Debug, Clone)]
pub struct VxlanParams {
    /// Device name, `skiff.1` by default.
    pub name: String,
    /// VXLAN network identifier.
    pub vni: u32,
    /// UDP destination port (8472 like flannel, not the IANA 4789, to coexist with it).
    pub port: u16,
}

/// The VTEP MAC of a node, derived from its IP so that peers can program neighbours without
/// exchanging it through the API: locally administered unicast `0e:73:` + the four IP bytes.
pub fn vtep_mac(node_ip: Ipv4Addr) -> [u8; 6] {
    let o = node_ip.octets();
    [0x0e, 0x73, o[0], o[1], o[2], o[3]]
}

/// The interface carrying `node_ip`: VXLAN packets leave through it and its MTU bounds ours.
pub fn underlay(nl: &mut Netlink, node_ip: Ipv4Addr) -> Result<Option<Link>> {
    let Some((index, _, _)) = nl
        .all_addresses()?
        .into_iter()
        .find(|(_, ip, _)| *ip == node_ip)
    else {
        return Ok(None);
    };
    Ok(nl.links()?.into_iter().find(|l| l.index == index))
}

/// Creates or repairs the VXLAN device; returns its interface index.
pub fn ensure_vxlan(
    nl: &mut Netlink,
    p: &VxlanParams,
    node_ip: Ipv4Addr,
    underlay_index: u32,
    mtu: u32,
    pod_cidr: Ipv4Cidr,
) -> Result<u32> {
    let mac = vtep_mac(node_ip).to_vec();
    if let Some(existing) = nl.link_by_name(&p.name)? {
        if !matches_params(&existing, p, node_ip, underlay_index) {
            // Like flannel: a device built with other parameters (node IP changed, other VNI)
            // is replaced rather than patched, since most VXLAN attributes are immutable.
            tracing::info!(device = %p.name, "recreating vxlan device with new parameters");
            nl.delete_link(existing.index, &p.name)?;
        }
    }
    let link = match nl.link_by_name(&p.name)? {
        Some(l) => l,
        None => {
            let mut msg = LinkMessage::default();
            msg.attributes.push(LinkAttribute::IfName(p.name.clone()));
            msg.attributes.push(LinkAttribute::Mtu(mtu));
            msg.attributes.push(LinkAttribute::Address(mac.clone()));
            msg.attributes.push(LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Vxlan),
                LinkInfo::Data(InfoData::Vxlan(vec![
                    InfoVxlan::Id(p.vni),
                    InfoVxlan::Local(node_ip),
                    InfoVxlan::Link(underlay_index),
                    InfoVxlan::Port(p.port),
                    InfoVxlan::Learning(false),
                ])),
            ]));
            match nl.create_link(msg, &p.name) {
                Err(e) if is_errno(&e, Errno::EEXIST) => {}
                r => r?,
            }
            nl.link_by_name(&p.name)?.ok_or_else(|| Error::NotFound {
                what: format!("vxlan {} after creating it", p.name),
            })?
        }
    };
    let mut attrs = Vec::new();
    if link.mtu != mtu {
        attrs.push(LinkAttribute::Mtu(mtu));
    }
    if link.mac != mac {
        attrs.push(LinkAttribute::Address(mac));
    }
    if !link.up || !attrs.is_empty() {
        nl.set_link(link.index, &p.name, true, attrs)?;
    }
    // The `.0/32` gives the node a source address inside its own pod CIDR for traffic it sends
    // to remote pods, so replies route back over the overlay (flannel does the same).
    let own = pod_cidr.addr();
    for (ip, prefix) in nl.addresses(link.index)? {
        if ip != own || prefix != 32 {
            nl.delete_address(link.index, &p.name, ip, prefix)?;
        }
    }
    nl.add_address(link.index, &p.name, own, 32)?;
    Ok(link.index)
}

fn matches_params(l: &Link, p: &VxlanParams, node_ip: Ipv4Addr, underlay_index: u32) -> bool {
    if l.kind != Some(InfoKind::Vxlan) {
        return false;
    }
    let Some(InfoData::Vxlan(attrs)) = &l.data else {
        return false;
    };
    let (mut id, mut local, mut port, mut link) = (None, None, None, None);
    for a in attrs {
        match a {
            InfoVxlan::Id(v) => id = Some(*v),
            InfoVxlan::Local(v) => local = Some(*v),
            InfoVxlan::Port(v) => port = Some(*v),
            InfoVxlan::Link(v) => link = Some(*v),
            _ => {}
        }
    }
    id == Some(p.vni)
        && local == Some(node_ip)
        && port == Some(p.port)
        && link == Some(underlay_index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vtep_mac_is_local_unicast_and_unique_per_ip() {
        let m = vtep_mac(Ipv4Addr::new(192, 168, 77, 2));
        assert_eq!(m, [0x0e, 0x73, 192, 168, 77, 2]);
        assert_eq!(m[0] & 0x01, 0, "must be unicast");
        assert_eq!(m[0] & 0x02, 0x02, "must be locally administered");
        assert_ne!(m, vtep_mac(Ipv4Addr::new(192, 168, 77, 3)));
    }
}
