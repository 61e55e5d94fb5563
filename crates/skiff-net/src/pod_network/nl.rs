//! A small blocking rtnetlink client over `netlink-sys`.
//!
//! Blocking on purpose: callers already run the pod network inside `spawn_blocking`, and a
//! synchronous socket needs no runtime. A netlink socket acts on the network namespace it was
//! created in, whatever thread later uses it; this is what lets [`super::PodNetwork`] stay bound
//! to its node namespace and lets us configure a pod namespace from a socket opened there.

use std::io;
use std::net::{IpAddr, Ipv4Addr};

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
    NLM_F_REPLACE, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteProtocol, RouteScope,
    RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use nix::errno::Errno;

use super::cidr::Ipv4Cidr;
use super::error::{Error, Result};

/// Route protocol number marking routes installed by skiff, so that they can be found again
/// in the kernel after a restart (the kernel is the source of truth for peer routes) and never
/// confused with routes that an administrator added.
pub const SKIFF_ROUTE_PROTO: u8 = 83;

/// What we need to know about an existing interface.
#[derive(Debug, Clone, Default)]
pub struct Link {
    /// Interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// MTU.
    pub mtu: u32,
    /// Hardware address.
    pub mac: Vec<u8>,
    /// Kind from `IFLA_INFO_KIND` (bridge, vxlan, veth, ...).
    pub kind: Option<InfoKind>,
    /// Index of the bridge this interface is enslaved to.
    pub master: Option<u32>,
    /// Whether the interface is administratively up.
    pub up: bool,
    /// Kind-specific attributes, e.g. the VXLAN id, to detect a device created differently.
    pub data: Option<InfoData>,
}

/// An IPv4 route in the main table, reduced to the fields the pod network uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Destination prefix.
    pub dst: Ipv4Cidr,
    /// `Unicast` or `Unreachable`.
    pub kind: RouteType,
    /// Next hop.
    pub gateway: Option<Ipv4Addr>,
    /// Output interface.
    pub oif: Option<u32>,
    /// Next hop is on the link even if no address says so (VXLAN peers' `.0`).
    pub onlink: bool,
    /// Route protocol (see [`SKIFF_ROUTE_PROTO`]).
    pub protocol: u8,
}

/// A neighbour (ARP) or FDB entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neigh {
    /// `Inet` for ARP entries, `Bridge` for forwarding database entries.
    pub family: AddressFamily,
    /// Interface index.
    pub ifindex: u32,
    /// Protocol address (ARP: the peer's IP; FDB on VXLAN: the remote VTEP IP).
    pub dst: Option<Ipv4Addr>,
    /// Link-layer address.
    pub mac: Vec<u8>,
}

/// A blocking rtnetlink socket bound to the namespace it was created in.
pub struct Netlink {
    sock: Socket,
    seq: u32,
}

impl std::fmt::Debug for Netlink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Netlink").field("seq", &self.seq).finish()
    }
}

fn nl_err(op: &'static str, target: impl Into<String>, source: io::Error) -> Error {
    Error::Netlink {
        op,
        target: target.into(),
        source,
    }
}

/// Whether an error is the given errno (used to make operations idempotent).
pub fn is_errno(e: &Error, errno: Errno) -> bool {
    e.errno() == Some(errno as i32)
}

impl Netlink {
    /// Opens a socket in the calling thread's current network namespace.
    pub fn open() -> Result<Self> {
        let mut sock =
            Socket::new(NETLINK_ROUTE).map_err(|e| nl_err("open socket", "NETLINK_ROUTE", e))?;
        sock.bind_auto()
            .map_err(|e| nl_err("bind socket", "NETLINK_ROUTE", e))?;
        sock.connect(&SocketAddr::new(0, 0))
            .map_err(|e| nl_err("connect socket", "NETLINK_ROUTE", e))?;
        Ok(Self { sock, seq: 1 })
    }

    fn send(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        op: &'static str,
        target: &str,
    ) -> Result<u32> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        packet.finalize();
        let mut buf = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut buf);
        self.sock.send(&buf, 0).map_err(|e| nl_err(op, target, e))?;
        Ok(self.seq)
    }

    /// Reads replies to `seq` until an ACK/error (non-dump) or `Done` (dump).
    fn collect(
        &mut self,
        seq: u32,
        dump: bool,
        op: &'static str,
        target: &str,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        let mut out = Vec::new();
        loop {
            let (buf, _) = self
                .sock
                .recv_from_full()
                .map_err(|e| nl_err(op, target, e))?;
            let mut offset = 0;
            while offset < buf.len() {
                let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf[offset..])
                    .map_err(|e| Error::Decode {
                        op,
                        detail: e.to_string(),
                    })?;
                let len = msg.header.length as usize;
                if msg.header.sequence_number == seq {
                    match msg.payload {
                        NetlinkPayload::Done(_) => return Ok(out),
                        NetlinkPayload::Error(e) => match e.code {
                            None if !dump => return Ok(out),
                            None => {}
                            Some(code) => {
                                return Err(nl_err(
                                    op,
                                    target,
                                    io::Error::from_raw_os_error(-code.get()),
                                ))
                            }
                        },
                        NetlinkPayload::InnerMessage(m) => out.push(m),
                        _ => {}
                    }
                }
                if len == 0 {
                    break;
                }
                offset += (len + 3) & !3;
            }
        }
    }

    /// Sends a request and waits for the kernel's acknowledgement.
    pub fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        extra_flags: u16,
        op: &'static str,
        target: &str,
    ) -> Result<()> {
        let seq = self.send(msg, NLM_F_REQUEST | NLM_F_ACK | extra_flags, op, target)?;
        self.collect(seq, false, op, target).map(|_| ())
    }

    /// Sends a dump request and returns every message of the reply.
    pub fn dump(
        &mut self,
        msg: RouteNetlinkMessage,
        op: &'static str,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        let seq = self.send(msg, NLM_F_REQUEST | NLM_F_DUMP, op, "dump")?;
        self.collect(seq, true, op, "dump")
    }

    // ---- links ----

    /// Looks an interface up by name; `None` when it does not exist.
    pub fn link_by_name(&mut self, name: &str) -> Result<Option<Link>> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        let seq = self.send(
            RouteNetlinkMessage::GetLink(msg),
            NLM_F_REQUEST | NLM_F_ACK,
            "get link",
            name,
        )?;
        match self.collect(seq, false, "get link", name) {
            Ok(msgs) => Ok(msgs.into_iter().find_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(parse_link(l)),
                _ => None,
            })),
            Err(e) if is_errno(&e, Errno::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every interface of the namespace.
    pub fn links(&mut self) -> Result<Vec<Link>> {
        let msgs = self.dump(
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            "list links",
        )?;
        Ok(msgs
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(parse_link(l)),
                _ => None,
            })
            .collect())
    }

    /// Creates an interface; fails with `EEXIST` if the name is taken.
    pub fn create_link(&mut self, msg: LinkMessage, name: &str) -> Result<()> {
        self.request(
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            "create link",
            name,
        )
    }

    /// Deletes an interface by index; a missing interface is not an error.
    pub fn delete_link(&mut self, index: u32, name: &str) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        match self.request(RouteNetlinkMessage::DelLink(msg), 0, "delete link", name) {
            Err(e) if is_errno(&e, Errno::ENODEV) => Ok(()),
            r => r,
        }
    }

    /// Changes attributes of an existing interface (MTU, master, MAC) and optionally sets it up.
    pub fn set_link(
        &mut self,
        index: u32,
        name: &str,
        up: bool,
        attrs: Vec<LinkAttribute>,
    ) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        if up {
            msg.header.flags = LinkFlags::Up;
            msg.header.change_mask = LinkFlags::Up;
        }
        msg.attributes = attrs;
        self.request(RouteNetlinkMessage::SetLink(msg), 0, "set link", name)
    }

    // ---- addresses ----

    /// Every IPv4 address of the namespace as (interface index, address, prefix length).
    pub fn all_addresses(&mut self) -> Result<Vec<(u32, Ipv4Addr, u8)>> {
        let mut req = AddressMessage::default();
        req.header.family = AddressFamily::Inet;
        let msgs = self.dump(RouteNetlinkMessage::GetAddress(req), "list addresses")?;
        let mut out = Vec::new();
        for m in msgs {
            let RouteNetlinkMessage::NewAddress(a) = m else {
                continue;
            };
            for attr in &a.attributes {
                if let AddressAttribute::Local(IpAddr::V4(ip)) = attr {
                    out.push((a.header.index, *ip, a.header.prefix_len));
                }
            }
        }
        Ok(out)
    }

    /// IPv4 addresses (address, prefix length) on one interface.
    pub fn addresses(&mut self, index: u32) -> Result<Vec<(Ipv4Addr, u8)>> {
        Ok(self
            .all_addresses()?
            .into_iter()
            .filter(|(i, _, _)| *i == index)
            .map(|(_, ip, p)| (ip, p))
            .collect())
    }

    /// Removes an IPv4 address; a missing address is not an error.
    pub fn delete_address(
        &mut self,
        index: u32,
        name: &str,
        ip: Ipv4Addr,
        prefix: u8,
    ) -> Result<()> {
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet;
        msg.header.prefix_len = prefix;
        msg.header.index = index;
        msg.attributes.push(AddressAttribute::Local(IpAddr::V4(ip)));
        let target = format!("{ip}/{prefix} on {name}");
        match self.request(
            RouteNetlinkMessage::DelAddress(msg),
            0,
            "delete address",
            &target,
        ) {
            Err(e) if is_errno(&e, Errno::EADDRNOTAVAIL) => Ok(()),
            r => r,
        }
    }

    /// Adds an IPv4 address; an identical existing address is not an error.
    pub fn add_address(&mut self, index: u32, name: &str, ip: Ipv4Addr, prefix: u8) -> Result<()> {
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet;
        msg.header.prefix_len = prefix;
        msg.header.index = index;
        msg.attributes.push(AddressAttribute::Local(IpAddr::V4(ip)));
        msg.attributes
            .push(AddressAttribute::Address(IpAddr::V4(ip)));
        if prefix < 31 {
            if let Some(net) = Ipv4Cidr::new(ip, prefix) {
                let bcast = net.nth(net.size() - 1).expect("last address");
                msg.attributes.push(AddressAttribute::Broadcast(bcast));
            }
        }
        let target = format!("{ip}/{prefix} on {name}");
        match self.request(
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            "add address",
            &target,
        ) {
            Err(e) if is_errno(&e, Errno::EEXIST) => Ok(()),
            r => r,
        }
    }

    // ---- routes ----

    /// Adds or replaces an IPv4 route in the main table.
    pub fn replace_route(&mut self, route: &Route) -> Result<()> {
        let target = format!("{} {:?}", route.dst, route.kind);
        self.request(
            RouteNetlinkMessage::NewRoute(route_msg(route)),
            NLM_F_CREATE | NLM_F_REPLACE,
            "replace route",
            &target,
        )
    }

    /// Deletes an IPv4 route from the main table; a missing route is not an error.
    pub fn delete_route(&mut self, route: &Route) -> Result<()> {
        let target = format!("{} {:?}", route.dst, route.kind);
        match self.request(
            RouteNetlinkMessage::DelRoute(route_msg(route)),
            0,
            "delete route",
            &target,
        ) {
            Err(e) if is_errno(&e, Errno::ESRCH) => Ok(()),
            r => r,
        }
    }

    /// IPv4 routes of the main table.
    pub fn routes(&mut self) -> Result<Vec<Route>> {
        let mut req = RouteMessage::default();
        req.header.address_family = AddressFamily::Inet;
        let msgs = self.dump(RouteNetlinkMessage::GetRoute(req), "list routes")?;
        let mut out = Vec::new();
        for m in msgs {
            let RouteNetlinkMessage::NewRoute(r) = m else {
                continue;
            };
            let mut table = u32::from(r.header.table);
            let mut dst = Ipv4Addr::UNSPECIFIED;
            let mut gateway = None;
            let mut oif = None;
            for a in &r.attributes {
                match a {
                    RouteAttribute::Table(t) => table = *t,
                    RouteAttribute::Destination(RouteAddress::Inet(ip)) => dst = *ip,
                    RouteAttribute::Gateway(RouteAddress::Inet(ip)) => gateway = Some(*ip),
                    RouteAttribute::Oif(i) => oif = Some(*i),
                    _ => {}
                }
            }
            if table != u32::from(RouteHeader::RT_TABLE_MAIN) {
                continue;
            }
            let Some(dst) = Ipv4Cidr::new(dst, r.header.destination_prefix_length) else {
                continue;
            };
            out.push(Route {
                dst,
                kind: r.header.kind,
                gateway,
                oif,
                onlink: r.header.flags.contains(RouteFlags::Onlink),
                protocol: u8::from(r.header.protocol),
            });
        }
        Ok(out)
    }

    // ---- neighbours / fdb ----

    /// Adds or replaces a permanent neighbour (`Inet`) or FDB (`Bridge`, self) entry.
    pub fn replace_neigh(&mut self, n: &Neigh) -> Result<()> {
        let target = format!("{:?} {:?} on {}", n.family, n.dst, n.ifindex);
        self.request(
            RouteNetlinkMessage::NewNeighbour(neigh_msg(n)),
            NLM_F_CREATE | NLM_F_REPLACE,
            "replace neighbour",
            &target,
        )
    }

    /// Deletes a neighbour or FDB entry; a missing entry is not an error.
    pub fn delete_neigh(&mut self, n: &Neigh) -> Result<()> {
        let target = format!("{:?} {:?} on {}", n.family, n.dst, n.ifindex);
        match self.request(
            RouteNetlinkMessage::DelNeighbour(neigh_msg(n)),
            0,
            "delete neighbour",
            &target,
        ) {
            Err(e) if is_errno(&e, Errno::ENOENT) => Ok(()),
            r => r,
        }
    }

    /// Permanent entries of `family` on interface `ifindex` (the ones we could have installed).
    pub fn neighbours(&mut self, family: AddressFamily, ifindex: u32) -> Result<Vec<Neigh>> {
        let mut req = NeighbourMessage::default();
        req.header.family = family;
        let msgs = self.dump(RouteNetlinkMessage::GetNeighbour(req), "list neighbours")?;
        let mut out = Vec::new();
        for m in msgs {
            let RouteNetlinkMessage::NewNeighbour(n) = m else {
                continue;
            };
            if n.header.ifindex != ifindex
                || n.header.family != family
                || n.header.state != NeighbourState::Permanent
            {
                continue;
            }
            let mut dst = None;
            let mut mac = Vec::new();
            for a in &n.attributes {
                match a {
                    NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => dst = Some(*ip),
                    // FDB (AF_BRIDGE) entries carry the remote VTEP as raw bytes: the decoder
                    // only knows the address family of the message, not of this attribute.
                    NeighbourAttribute::Destination(NeighbourAddress::Other(b)) if b.len() == 4 => {
                        dst = Some(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
                    }
                    NeighbourAttribute::LinkLayerAddress(l) => mac = l.clone(),
                    _ => {}
                }
            }
            out.push(Neigh {
                family,
                ifindex,
                dst,
                mac,
            });
        }
        Ok(out)
    }
}

fn parse_link(l: LinkMessage) -> Link {
    let mut link = Link {
        index: l.header.index,
        up: l.header.flags.contains(LinkFlags::Up),
        ..Default::default()
    };
    for a in l.attributes {
        match a {
            LinkAttribute::IfName(n) => link.name = n,
            LinkAttribute::Mtu(m) => link.mtu = m,
            LinkAttribute::Address(mac) => link.mac = mac,
            LinkAttribute::Controller(m) => link.master = Some(m),
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    match i {
                        LinkInfo::Kind(k) => link.kind = Some(k),
                        LinkInfo::Data(d) => link.data = Some(d),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    link
}

fn route_msg(route: &Route) -> RouteMessage {
    let mut msg = RouteMessage::default();
    msg.header.address_family = AddressFamily::Inet;
    msg.header.destination_prefix_length = route.dst.prefix_len();
    msg.header.table = RouteHeader::RT_TABLE_MAIN;
    msg.header.protocol = RouteProtocol::from(route.protocol);
    msg.header.kind = route.kind;
    // Unreachable routes and routes through a gateway are "universe"; a device route without a
    // gateway is link scope, as `ip route` would choose.
    msg.header.scope = if route.kind == RouteType::Unicast && route.gateway.is_none() {
        RouteScope::Link
    } else {
        RouteScope::Universe
    };
    if route.onlink {
        msg.header.flags = RouteFlags::Onlink;
    }
    msg.attributes
        .push(RouteAttribute::Destination(RouteAddress::Inet(
            route.dst.addr(),
        )));
    if let Some(gw) = route.gateway {
        msg.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(gw)));
    }
    if let Some(oif) = route.oif {
        msg.attributes.push(RouteAttribute::Oif(oif));
    }
    msg
}

fn neigh_msg(n: &Neigh) -> NeighbourMessage {
    let mut msg = NeighbourMessage::default();
    msg.header.family = n.family;
    msg.header.ifindex = n.ifindex;
    msg.header.state = NeighbourState::Permanent;
    if n.family == AddressFamily::Bridge {
        // NTF_SELF: the entry belongs to the VXLAN device's own FDB, not to a bridge master.
        msg.header.flags = NeighbourFlags::Own;
    }
    if let Some(dst) = n.dst {
        msg.attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(dst)));
    }
    msg.attributes
        .push(NeighbourAttribute::LinkLayerAddress(n.mac.clone()));
    msg
}
