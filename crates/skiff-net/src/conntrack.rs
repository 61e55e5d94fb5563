//! Deleting stale connection-tracking entries over ctnetlink (`NETLINK_NETFILTER`,
//! subsystem `CTNETLINK`), as kube-proxy does with the `conntrack` tool.
//!
//! UDP has no connection end: once a client's flow to a Service was NATed to a backend, the
//! kernel keeps sending that flow's packets to the same backend for as long as packets keep
//! coming, even after the backend is gone. Likewise a flow that hit a Service while it had
//! no endpoints stays pinned to the reject. So when a UDP backend leaves (or a UDP Service
//! gains its first backend) the proxy deletes the affected entries and the next packet is
//! load-balanced afresh.
//!
//! The entries are dumped, filtered here, and deleted one by one by their original tuple.

use std::net::Ipv4Addr;
use std::path::Path;

use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};

use crate::nft::Error;

const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_GET: u16 = 1;
const IPCTNL_MSG_CT_DELETE: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const AF_INET: u8 = 2;
const ENOENT: i32 = 2;
const NLA_TYPE_MASK: u16 = 0x3fff;

const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_ZONE: u16 = 18;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;

/// IP protocol number of UDP.
pub const IPPROTO_UDP: u8 = 17;

/// One direction of a tracked flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tuple {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// IP protocol number.
    pub protocol: u8,
    /// Source port (0 for protocols without ports).
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
}

/// A tracked IPv4 flow: what the client sent (`orig`) and what answers look like (`reply`;
/// after DNAT its source is the backend).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flow {
    /// Original direction.
    pub orig: Tuple,
    /// Reply direction.
    pub reply: Tuple,
    /// The encoded original-tuple and zone attributes, which identify the entry to delete.
    key: Vec<u8>,
}

impl Flow {
    /// Whether the flow was DNATed to `backend` (its replies come from there, though the
    /// client did not address it).
    pub fn nated_to(&self, backend: Ipv4Addr) -> bool {
        self.reply.src == backend && self.orig.dst != backend
    }
}

/// A ctnetlink socket in one network namespace.
pub struct Conntrack {
    sock: Socket,
    seq: u32,
}

impl Conntrack {
    /// A socket for the caller's network namespace.
    pub fn new() -> Result<Self, Error> {
        Ok(Self { sock: open()?, seq: 1 })
    }

    /// A socket for the network namespace at `netns`.
    pub fn in_netns(netns: &Path) -> Result<Self, Error> {
        Ok(Self { sock: crate::nft::in_netns(netns, open)?, seq: 1 })
    }

    /// Every tracked IPv4 flow.
    pub fn flows(&mut self) -> Result<Vec<Flow>, Error> {
        let seq = self.next_seq();
        self.send(&message(IPCTNL_MSG_CT_GET, NLM_F_REQUEST | NLM_F_DUMP, seq, &[]))?;
        let mut flows = Vec::new();
        let mut buf: Vec<u8> = Vec::with_capacity(256 * 1024);
        loop {
            buf.clear();
            let n = self.sock.recv(&mut buf, 0).map_err(io("receiving conntrack dump"))?;
            for (ty, payload) in messages(&buf[..n]) {
                match ty {
                    NLMSG_DONE => return Ok(flows),
                    NLMSG_ERROR => {
                        let errno = payload.get(..4).map(|b| -i32::from_ne_bytes(b.try_into().unwrap_or_default())).unwrap_or(0);
                        if errno != 0 {
                            return Err(kernel("dumping conntrack", errno));
                        }
                        return Ok(flows);
                    }
                    _ => {
                        if let Some(f) = payload.get(4..).and_then(parse_flow) {
                            flows.push(f);
                        }
                    }
                }
            }
        }
    }

    /// Deletes `flow`; an entry that is already gone counts as deleted.
    pub fn delete(&mut self, flow: &Flow) -> Result<(), Error> {
        let seq = self.next_seq();
        self.send(&message(IPCTNL_MSG_CT_DELETE, NLM_F_REQUEST | NLM_F_ACK, seq, &flow.key))?;
        let mut buf: Vec<u8> = Vec::with_capacity(8 * 1024);
        loop {
            buf.clear();
            let n = self.sock.recv(&mut buf, 0).map_err(io("receiving conntrack answer"))?;
            for (ty, payload) in messages(&buf[..n]) {
                if ty == NLMSG_ERROR {
                    let errno = payload.get(..4).map(|b| -i32::from_ne_bytes(b.try_into().unwrap_or_default())).unwrap_or(0);
                    return match errno {
                        0 | ENOENT => Ok(()),
                        e => Err(kernel("deleting a conntrack entry", e)),
                    };
                }
            }
        }
    }

    /// Deletes the UDP flows `stale` selects; returns how many went.
    pub fn delete_udp(&mut self, stale: impl Fn(&Flow) -> bool) -> Result<usize, Error> {
        let doomed: Vec<Flow> = self.flows()?.into_iter().filter(|f| f.orig.protocol == IPPROTO_UDP && stale(f)).collect();
        for f in &doomed {
            self.delete(f)?;
        }
        Ok(doomed.len())
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    fn send(&self, bytes: &[u8]) -> Result<(), Error> {
        self.sock.send(bytes, 0).map(|_| ()).map_err(io("sending to ctnetlink"))
    }
}

fn open() -> Result<Socket, Error> {
    let mut sock = Socket::new(NETLINK_NETFILTER).map_err(io("opening ctnetlink socket"))?;
    sock.bind_auto().map_err(io("binding ctnetlink socket"))?;
    sock.connect(&SocketAddr::new(0, 0)).map_err(io("connecting ctnetlink socket"))?;
    nix::sys::socket::setsockopt(&sock, nix::sys::socket::sockopt::ReceiveTimeout, &nix::sys::time::TimeVal::new(10, 0))
        .map_err(|e| Error::Io { context: "setting SO_RCVTIMEO".into(), source: e.into() })?;
    Ok(sock)
}

fn io(context: &'static str) -> impl Fn(std::io::Error) -> Error {
    move |source| Error::Io { context: context.into(), source }
}

fn kernel(op: &str, errno: i32) -> Error {
    Error::Kernel { op: op.into(), source: std::io::Error::from_raw_os_error(errno) }
}

/// A netlink message of the ctnetlink subsystem with an IPv4 nfgenmsg header.
fn message(kind: u16, flags: u16, seq: u32, attrs: &[u8]) -> Vec<u8> {
    let len = 16 + 4 + attrs.len();
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&((NFNL_SUBSYS_CTNETLINK << 8) | kind).to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&[AF_INET, 0, 0, 0]);
    m.extend_from_slice(attrs);
    m
}

/// The (type, payload) of each netlink message in `buf`.
fn messages(buf: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + 16 <= buf.len() {
        let len = u32::from_ne_bytes(buf[off..off + 4].try_into().unwrap_or_default()) as usize;
        if len < 16 || off + len > buf.len() {
            break;
        }
        let ty = u16::from_ne_bytes([buf[off + 4], buf[off + 5]]);
        out.push((ty, &buf[off + 16..off + len]));
        off += (len + 3) & !3;
    }
    out
}

/// The attributes in `buf` as (type without flags, payload, whole attribute bytes).
fn attributes(buf: &[u8]) -> Vec<(u16, &[u8], &[u8])> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + 4 <= buf.len() {
        let len = u16::from_ne_bytes([buf[off], buf[off + 1]]) as usize;
        if len < 4 || off + len > buf.len() {
            break;
        }
        let ty = u16::from_ne_bytes([buf[off + 2], buf[off + 3]]) & NLA_TYPE_MASK;
        out.push((ty, &buf[off + 4..off + len], &buf[off..off + len]));
        off += (len + 3) & !3;
    }
    out
}

fn parse_tuple(buf: &[u8]) -> Option<Tuple> {
    let attrs = attributes(buf);
    let ip = attrs.iter().find(|a| a.0 == CTA_TUPLE_IP)?.1;
    let proto = attrs.iter().find(|a| a.0 == CTA_TUPLE_PROTO)?.1;
    let ip = attributes(ip);
    let v4 = |ty| -> Option<Ipv4Addr> {
        let b = ip.iter().find(|a| a.0 == ty)?.1;
        Some(Ipv4Addr::from(<[u8; 4]>::try_from(b.get(..4)?).ok()?))
    };
    let proto = attributes(proto);
    let port = |ty| -> u16 {
        proto.iter().find(|a| a.0 == ty).and_then(|a| a.1.get(..2)).map(|b| u16::from_be_bytes([b[0], b[1]])).unwrap_or(0)
    };
    Some(Tuple {
        src: v4(CTA_IP_V4_SRC)?,
        dst: v4(CTA_IP_V4_DST)?,
        protocol: *proto.iter().find(|a| a.0 == CTA_PROTO_NUM)?.1.first()?,
        src_port: port(CTA_PROTO_SRC_PORT),
        dst_port: port(CTA_PROTO_DST_PORT),
    })
}

/// A flow from the attributes of a conntrack message (after the nfgenmsg header).
fn parse_flow(buf: &[u8]) -> Option<Flow> {
    let attrs = attributes(buf);
    let orig = attrs.iter().find(|a| a.0 == CTA_TUPLE_ORIG)?;
    let reply = attrs.iter().find(|a| a.0 == CTA_TUPLE_REPLY)?;
    let mut key = pad(orig.2);
    if let Some(zone) = attrs.iter().find(|a| a.0 == CTA_ZONE) {
        key.extend_from_slice(&pad(zone.2));
    }
    Some(Flow { orig: parse_tuple(orig.1)?, reply: parse_tuple(reply.1)?, key })
}

fn pad(attr: &[u8]) -> Vec<u8> {
    let mut v = attr.to_vec();
    v.resize((v.len() + 3) & !3, 0);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    const NLA_F_NESTED: u16 = 0x8000;

    fn attr(ty: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
        v.extend_from_slice(&ty.to_ne_bytes());
        v.extend_from_slice(payload);
        pad(&v)
    }

    fn tuple(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
        let ip = [attr(CTA_IP_V4_SRC, &src), attr(CTA_IP_V4_DST, &dst)].concat();
        let proto = [attr(CTA_PROTO_NUM, &[IPPROTO_UDP]), attr(CTA_PROTO_SRC_PORT, &sport.to_be_bytes()), attr(CTA_PROTO_DST_PORT, &dport.to_be_bytes())].concat();
        [attr(CTA_TUPLE_IP | NLA_F_NESTED, &ip), attr(CTA_TUPLE_PROTO | NLA_F_NESTED, &proto)].concat()
    }

    #[test]
    fn parses_a_dnated_udp_flow_and_keys_it_by_its_original_tuple() {
        let orig = attr(CTA_TUPLE_ORIG | NLA_F_NESTED, &tuple([10, 42, 0, 5], [10, 43, 0, 10], 40000, 53));
        let reply = attr(CTA_TUPLE_REPLY | NLA_F_NESTED, &tuple([10, 42, 1, 7], [10, 42, 0, 5], 53, 40000));
        let status = attr(3, &[0, 0, 1, 0x8a]);
        let flow = parse_flow(&[orig.clone(), reply, status].concat()).expect("flow");
        assert_eq!(flow.orig, Tuple { src: [10, 42, 0, 5].into(), dst: [10, 43, 0, 10].into(), protocol: IPPROTO_UDP, src_port: 40000, dst_port: 53 });
        assert_eq!(flow.reply.src, Ipv4Addr::new(10, 42, 1, 7));
        assert!(flow.nated_to(Ipv4Addr::new(10, 42, 1, 7)));
        assert!(!flow.nated_to(Ipv4Addr::new(10, 42, 1, 8)));
        assert_eq!(flow.key, orig);
        let m = message(IPCTNL_MSG_CT_DELETE, NLM_F_REQUEST | NLM_F_ACK, 7, &flow.key);
        assert_eq!(u32::from_ne_bytes(m[..4].try_into().unwrap()) as usize, m.len());
        assert_eq!(u16::from_ne_bytes([m[4], m[5]]), 0x0102);
    }

    /// Sends one UDP datagram from inside `ns` to `to` (nobody needs to listen: the flow is
    /// tracked on the way out).
    fn send_udp(ns: &Path, to: &str) {
        let to = to.to_string();
        crate::nft::in_netns(ns, move || {
            let sock = std::net::UdpSocket::bind("127.0.0.1:0").map_err(|e| Error::Io { context: "bind".into(), source: e })?;
            sock.send_to(b"x", &to).map_err(|e| Error::Io { context: "send".into(), source: e })?;
            Ok(())
        })
        .expect("send in netns");
    }

    #[test]
    fn deletes_only_the_flows_nated_to_a_gone_backend() {
        use crate::nft::testns::{can_run, Netns};
        if !can_run() {
            return;
        }
        let ns = Netns::new("ct");
        // A DNAT rule makes the kernel track (and NAT) locally sent datagrams to port 7777.
        ns.exec(&["nft", "add table ip t; add chain ip t out { type nat hook output priority -100; }; add rule ip t out udp dport 7777 dnat to 127.0.0.5"]);
        send_udp(&ns.path(), "127.0.0.9:7777");
        send_udp(&ns.path(), "127.0.0.8:7777");
        send_udp(&ns.path(), "127.0.0.7:8888");
        let mut ct = Conntrack::in_netns(&ns.path()).expect("ctnetlink");
        let flows = ct.flows().expect("dump");
        let udp: Vec<&Flow> = flows.iter().filter(|f| f.orig.protocol == IPPROTO_UDP).collect();
        assert_eq!(udp.len(), 3, "{flows:?}");
        let backend = Ipv4Addr::new(127, 0, 0, 5);
        assert_eq!(udp.iter().filter(|f| f.nated_to(backend)).count(), 2, "{udp:?}");

        assert_eq!(ct.delete_udp(|f| f.nated_to(backend)).expect("delete"), 2);
        let left: Vec<Flow> = ct.flows().expect("dump").into_iter().filter(|f| f.orig.protocol == IPPROTO_UDP).collect();
        assert_eq!(left.len(), 1, "{left:?}");
        assert_eq!(left[0].orig.dst, Ipv4Addr::new(127, 0, 0, 7));
        // Deleting again finds nothing and is not an error.
        assert_eq!(ct.delete_udp(|f| f.nated_to(backend)).expect("delete again"), 0);
    }

    #[test]
    fn truncated_input_yields_nothing() {
        assert!(parse_flow(&[8, 0, 1, 0x80, 1, 2]).is_none());
        assert!(messages(&[20, 0, 0, 0, 1]).is_empty());
    }
}
