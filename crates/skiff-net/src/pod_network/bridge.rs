//! The node bridge (`skiff0`): every pod's host-side veth is a port of it, and it carries the
//! pod CIDR's gateway address so that pods reach the node and, through forwarding, the rest of
//! the cluster.

use std::net::Ipv4Addr;

use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkInfo, LinkMessage};
use nix::errno::Errno;

use super::cidr::Ipv4Cidr;
use super::error::{Error, Result};
use super::nl::{is_errno, Link, Netlink};

/// Makes sure the bridge exists, is up, has MTU `mtu` and exactly the gateway address among
/// cluster addresses; returns it. Idempotent, and repairs a bridge left by an older pod CIDR.
pub fn ensure_bridge(
    nl: &mut Netlink,
    name: &str,
    gateway: Ipv4Addr,
    pod_cidr: Ipv4Cidr,
    cluster_cidr: Ipv4Cidr,
    mtu: u32,
) -> Result<Link> {
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
    let attrs = if link.mtu != mtu {
        vec![LinkAttribute::Mtu(mtu)]
    } else {
        Vec::new()
    };
    if !link.up || !attrs.is_empty() {
        nl.set_link(link.index, name, true, attrs)?;
    }
    Ok(link)
}
