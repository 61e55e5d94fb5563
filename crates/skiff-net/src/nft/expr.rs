//! Building blocks for rules: each function returns the kernel expressions that nft would
//! generate for one piece of rule syntax, so callers can write rules at nft's level.

use std::net::Ipv4Addr;

use super::model::{
    fib_flags, CmpOp, CtKey, Expr, MetaKey, NatKind, PayloadBase, Reg, RejectKind, Verdict,
};

/// IP protocol numbers.
pub mod proto {
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// SCTP.
    pub const SCTP: u8 = 132;
}

/// `RTN_LOCAL`: fib address type of addresses owned by this host.
const RTN_LOCAL: u32 = 2;
/// `NF_CT_STATE_NEW_BIT`.
pub const CT_STATE_NEW: u32 = 1 << 3;
/// `IPS_DST_NAT`: the connection has been destination-NATed.
pub const CT_STATUS_DNAT: u32 = 1 << 5;

fn ip_field(offset: u32, dreg: Reg) -> Expr {
    Expr::Payload {
        base: PayloadBase::Network,
        offset,
        len: 4,
        dreg,
    }
}

/// Load `ip saddr` into `dreg`.
pub fn load_saddr(dreg: Reg) -> Expr {
    ip_field(12, dreg)
}

/// Load `ip daddr` into `dreg`.
pub fn load_daddr(dreg: Reg) -> Expr {
    ip_field(16, dreg)
}

/// Load `th dport` into `dreg`.
pub fn load_dport(dreg: Reg) -> Expr {
    Expr::Payload {
        base: PayloadBase::Transport,
        offset: 2,
        len: 2,
        dreg,
    }
}

/// Load `meta l4proto` into `dreg`.
pub fn load_l4proto(dreg: Reg) -> Expr {
    Expr::Meta {
        key: MetaKey::L4Proto,
        dreg,
    }
}

/// `meta l4proto <p>`.
pub fn l4proto_is(p: u8) -> Vec<Expr> {
    vec![
        load_l4proto(Reg::R1),
        Expr::Cmp {
            sreg: Reg::R1,
            op: CmpOp::Eq,
            data: vec![p],
        },
    ]
}

/// `ip daddr <a>`.
pub fn daddr_is(a: Ipv4Addr) -> Vec<Expr> {
    vec![
        load_daddr(Reg::R1),
        Expr::Cmp {
            sreg: Reg::R1,
            op: CmpOp::Eq,
            data: a.octets().to_vec(),
        },
    ]
}

/// `ip saddr <a>`.
pub fn saddr_is(a: Ipv4Addr) -> Vec<Expr> {
    vec![
        load_saddr(Reg::R1),
        Expr::Cmp {
            sreg: Reg::R1,
            op: CmpOp::Eq,
            data: a.octets().to_vec(),
        },
    ]
}

/// `th dport <p>`.
pub fn dport_is(p: u16) -> Vec<Expr> {
    vec![
        load_dport(Reg::R1),
        Expr::Cmp {
            sreg: Reg::R1,
            op: CmpOp::Eq,
            data: p.to_be_bytes().to_vec(),
        },
    ]
}

fn prefix_mask(len: u8) -> [u8; 4] {
    let m: u32 = if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len.min(32)))
    };
    m.to_be_bytes()
}

fn in_prefix(load: Expr, net: Ipv4Addr, len: u8, op: CmpOp) -> Vec<Expr> {
    let mask = prefix_mask(len);
    let net: Vec<u8> = net.octets().iter().zip(mask).map(|(a, m)| a & m).collect();
    vec![
        load,
        Expr::Bitwise {
            sreg: Reg::R1,
            dreg: Reg::R1,
            mask: mask.to_vec(),
            xor: vec![0; 4],
        },
        Expr::Cmp {
            sreg: Reg::R1,
            op,
            data: net,
        },
    ]
}

/// `ip saddr <net>/<len>`.
pub fn saddr_in(net: Ipv4Addr, len: u8) -> Vec<Expr> {
    in_prefix(load_saddr(Reg::R1), net, len, CmpOp::Eq)
}

/// `ip saddr != <net>/<len>`.
pub fn saddr_not_in(net: Ipv4Addr, len: u8) -> Vec<Expr> {
    in_prefix(load_saddr(Reg::R1), net, len, CmpOp::Neq)
}

/// `ip daddr != <net>/<len>`.
pub fn daddr_not_in(net: Ipv4Addr, len: u8) -> Vec<Expr> {
    in_prefix(load_daddr(Reg::R1), net, len, CmpOp::Neq)
}

/// `ip saddr @set` (or `!= @set` when `invert`).
pub fn saddr_in_set(set: &str, invert: bool) -> Vec<Expr> {
    vec![
        load_saddr(Reg::R1),
        Expr::Lookup {
            set: set.into(),
            sreg: Reg::R1,
            dreg: None,
            invert,
        },
    ]
}

/// `ip daddr . meta l4proto . th dport vmap @map`.
pub fn vmap_daddr_proto_dport(map: &str) -> Vec<Expr> {
    vec![
        load_daddr(Reg::r32(0)),
        load_l4proto(Reg::r32(1)),
        load_dport(Reg::r32(2)),
        Expr::Lookup {
            set: map.into(),
            sreg: Reg::r32(0),
            dreg: Some(Reg::VERDICT),
            invert: false,
        },
    ]
}

/// `meta l4proto . th dport vmap @map`.
pub fn vmap_proto_dport(map: &str) -> Vec<Expr> {
    vec![
        load_l4proto(Reg::r32(0)),
        load_dport(Reg::r32(1)),
        Expr::Lookup {
            set: map.into(),
            sreg: Reg::r32(0),
            dreg: Some(Reg::VERDICT),
            invert: false,
        },
    ]
}

fn fib_type_local(flags: u32) -> Vec<Expr> {
    vec![
        Expr::Fib {
            flags,
            result: 3,
            dreg: Reg::R1,
        },
        Expr::Cmp {
            sreg: Reg::R1,
            op: CmpOp::Eq,
            data: RTN_LOCAL.to_ne_bytes().to_vec(),
        },
    ]
}

/// `fib daddr type local`: the destination is one of this host's addresses (any interface,
/// including 127.0.0.1), which is how NodePorts match every node address at once.
pub fn fib_daddr_local() -> Vec<Expr> {
    fib_type_local(fib_flags::DADDR)
}

/// `fib saddr type local`: the packet comes from this host.
pub fn fib_saddr_local() -> Vec<Expr> {
    fib_type_local(fib_flags::SADDR)
}

fn bits_set(load: Expr, bits: u32) -> Vec<Expr> {
    vec![
        load,
        Expr::Bitwise {
            sreg: Reg::R1,
            dreg: Reg::R1,
            mask: bits.to_ne_bytes().to_vec(),
            xor: vec![0; 4],
        },
        Expr::Cmp {
            sreg: Reg::R1,
            op: CmpOp::Neq,
            data: vec![0; 4],
        },
    ]
}

/// `ct state new`.
pub fn ct_state_new() -> Vec<Expr> {
    bits_set(
        Expr::Ct {
            key: CtKey::State,
            dreg: Reg::R1,
        },
        CT_STATE_NEW,
    )
}

/// `meta mark & bits != 0`.
pub fn mark_has(bits: u32) -> Vec<Expr> {
    bits_set(
        Expr::Meta {
            key: MetaKey::Mark,
            dreg: Reg::R1,
        },
        bits,
    )
}

/// `meta mark & bits == 0`.
pub fn mark_lacks(bits: u32) -> Vec<Expr> {
    vec![
        Expr::Meta {
            key: MetaKey::Mark,
            dreg: Reg::R1,
        },
        Expr::Bitwise {
            sreg: Reg::R1,
            dreg: Reg::R1,
            mask: bits.to_ne_bytes().to_vec(),
            xor: vec![0; 4],
        },
        Expr::Cmp {
            sreg: Reg::R1,
            op: CmpOp::Eq,
            data: vec![0; 4],
        },
    ]
}

/// `meta mark set meta mark | bits`.
pub fn mark_or(bits: u32) -> Vec<Expr> {
    vec![
        Expr::Meta {
            key: MetaKey::Mark,
            dreg: Reg::R1,
        },
        Expr::Bitwise {
            sreg: Reg::R1,
            dreg: Reg::R1,
            mask: (!bits).to_ne_bytes().to_vec(),
            xor: bits.to_ne_bytes().to_vec(),
        },
        Expr::MetaSet {
            key: MetaKey::Mark,
            sreg: Reg::R1,
        },
    ]
}

/// `meta mark set meta mark ^ bits` (used to clear a bit known to be set).
pub fn mark_xor(bits: u32) -> Vec<Expr> {
    vec![
        Expr::Meta {
            key: MetaKey::Mark,
            dreg: Reg::R1,
        },
        Expr::Bitwise {
            sreg: Reg::R1,
            dreg: Reg::R1,
            mask: u32::MAX.to_ne_bytes().to_vec(),
            xor: bits.to_ne_bytes().to_vec(),
        },
        Expr::MetaSet {
            key: MetaKey::Mark,
            sreg: Reg::R1,
        },
    ]
}

/// `meta l4proto <p> dnat to <addr>:<port>`.
pub fn dnat_to(p: u8, addr: Ipv4Addr, port: u16) -> Vec<Expr> {
    let mut e = l4proto_is(p);
    e.push(Expr::Immediate {
        dreg: Reg::R1,
        data: addr.octets().to_vec(),
    });
    e.push(Expr::Immediate {
        dreg: Reg::R2,
        data: port.to_be_bytes().to_vec(),
    });
    e.push(Expr::Nat {
        kind: NatKind::Dnat,
        addr: Some(Reg::R1),
        port: Some(Reg::R2),
    });
    e
}

/// `numgen random mod N vmap { 0 : v0, 1 : v1, ... }`: pick one target uniformly.
pub fn numgen_vmap(targets: Vec<Verdict>) -> Vec<Expr> {
    let n = targets.len() as u32;
    let elems = targets
        .into_iter()
        .enumerate()
        .map(|(i, v)| ((i as u32).to_ne_bytes().to_vec(), v))
        .collect();
    vec![
        Expr::Numgen {
            modulus: n,
            dreg: Reg::R1,
        },
        Expr::Vmap {
            sreg: Reg::R1,
            key_len: 4,
            elems,
        },
    ]
}

/// `update @set { ip saddr }`: remember (or refresh) the client address.
pub fn remember_saddr(set: &str) -> Vec<Expr> {
    vec![
        load_saddr(Reg::R1),
        Expr::DynsetUpdate {
            set: set.into(),
            sreg_key: Reg::R1,
        },
    ]
}

/// `meta l4proto tcp reject with tcp reset`.
pub fn reject_tcp_reset() -> Vec<Expr> {
    let mut e = l4proto_is(proto::TCP);
    e.push(Expr::Reject(RejectKind::TcpReset));
    e
}

/// `reject with icmp port-unreachable`.
pub fn reject_icmp_port_unreachable() -> Vec<Expr> {
    vec![Expr::Reject(RejectKind::IcmpUnreachable(3))]
}

/// A verdict as the final expression.
pub fn verdict(v: Verdict) -> Expr {
    Expr::Verdict(v)
}
