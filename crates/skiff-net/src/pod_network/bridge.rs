//! The node bridge (`skiff0`): every pod's host-side veth is a port of it, and it carries the
//! pod CIDR's gateway address so that pods reach the node and, through forwarding, the rest of
//! the cluster.

use std::net::Ipv4Addr;

use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkInfo, LinkMessage};
use nix::errno::Errno;

use super::cidr::Ipv4Cidr;
use super::error::{Error, Result};
use super::nl::{is_errno, Link, Netlink};

/// The bridge's hardware address: fixed, locally administered and derived from the gateway
/// address. A bridge without an address of its own takes the lowest of its ports' addresses
/// and changes it as pods come and go; pods still holding the old one in their neighbour
/// cache then send to the node in frames it drops as not its own, so DNS and everything
/// else through the gateway stopped for up to a minute after a pod started (the CNI bridge
/// plugin pins the bridge address for the same reason).
pub fn bridge_mac(gateway: Ipv4Addr) -> [u8; 6] {
    let o = gateway.octets();
    [0x0a, 0x58, o[0], o[1], o[2], o[3]]
}

/// Makes sure the bridge exists, is up, has MTU `mtu`, a hardware address of its own and
/// exactly the gateway address among cluster addresses; returns it. A new bridge gets
/// [`bridge_mac`]; one made by an older version keeps the address it has, now set as its
/// own (changing it would strand the running pods' neighbour caches just the same).
/// Idempotent, and repairs a bridge left by an older pod CIDR.
pub fn ensure_bridge(
    nl: &mut Netlink,
    name: &str,
    gateway: Ipv4Addr,
    pod_cidr: Ipv4Cidr,
    cluster_cidr: Ipv4Cidr,
    mtu: u32,
) -> Result<Link> {
    let mac = bridge_mac(gateway).to_vec();
    let link = match nl.link_by_name(name)? {
        Some(l) if l.kind == Some(InfoKind::Bridge) => l,
        Some(l) => {
            return Err(Error::Config(format!(
                "interface {name} exists but is a {:?}, not a bridge",
                l.kind
            )))
        }
        None => {
            let mut msg = LinkMessage::default();
            msg.attributes.push(LinkAttribute::IfName(name.to_string()));
            msg.attributes.push(LinkAttribute::Mtu(mtu));
            msg.attributes.push(LinkAttribute::Address(mac.clone()));
            msg.attributes
                .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                    InfoKind::Bridge,
                )]));
            match nl.create_link(msg, name) {
                // Another caller created it between our lookup and our create.
                Err(e) if is_errno(&e, Errno::EEXIST) => {}
                r => r?,
            }
            nl.link_by_name(name)?.ok_or_else(|| Error::NotFound {
                what: format!("bridge {name} after creating it"),
            })?
        }
    };
    for (ip, prefix) in nl.addresses(link.index)? {
        let stale = cluster_cidr.contains(ip) && (ip != gateway || prefix != pod_cidr.prefix_len());
        if stale {
            nl.delete_address(link.index, name, ip, prefix)?;
        }
    }
    nl.add_address(link.index, name, gateway, pod_cidr.prefix_len())?;
    let mut attrs = Vec::new();
    if link.mtu != mtu {
        attrs.push(LinkAttribute::Mtu(mtu));
    }
    if link.mac != mac {
        // Setting the current address marks it as the bridge's own, which the kernel then
        // keeps whatever ports come and go. (Netlink does not say whether it already is, so
        // such a bridge is marked again at each start: harmless, the address stays.)
        attrs.push(LinkAttribute::Address(link.mac.clone()));
    }
    if !link.up || !attrs.is_empty() {
        nl.set_link(link.index, name, true, attrs)?;
    }
    Ok(link)
}
