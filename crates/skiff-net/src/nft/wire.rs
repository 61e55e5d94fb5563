//! Encoding of a [`Transaction`] into one nfnetlink batch
//! (`NFNL_MSG_BATCH_BEGIN`, nf_tables messages, `NFNL_MSG_BATCH_END`).
//!
//! Pure byte building, no I/O, so it is unit-testable. Attribute numbers come from the kernel's
//! `include/uapi/linux/netfilter/nf_tables.h`; integers inside attributes are big-endian, while
//! register data (cmp values, map keys) are raw bytes as the expressions load them.

use super::model::{
    datatype, ChainType, CmpOp, CtKey, Expr, NatKind, Op, PayloadBase, RejectKind, Rule, Set,
    Transaction, Verdict,
};

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;

const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_DELCHAIN: u16 = 5;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_DELRULE: u16 = 8;
const NFT_MSG_NEWSET: u16 = 9;
const NFT_MSG_DELSET: u16 = 11;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;

/// `NLM_F_REQUEST`.
pub(crate) const NLM_F_REQUEST: u16 = 0x1;
/// `NLM_F_ACK`.
pub(crate) const NLM_F_ACK: u16 = 0x4;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_APPEND: u16 = 0x800;
const NLA_F_NESTED: u16 = 0x8000;

const NFT_SET_ANONYMOUS: u32 = 0x1;
const NFT_SET_CONSTANT: u32 = 0x2;
const NFT_SET_MAP: u32 = 0x8;
const NFT_SET_TIMEOUT: u32 = 0x10;
const NFT_SET_EVAL: u32 = 0x20;
const NFT_DATA_VERDICT: u32 = 0xffff_ff00;

/// Largest payload we put under one nested attribute: `nla_len` is 16 bits, so long element
/// lists are split over several messages.
const MAX_ELEMS_BYTES: usize = 32 * 1024;

/// An encoded batch plus what is needed to match the kernel's answers to operations.
pub struct Batch {
    /// The bytes to send in one `sendmsg` (the kernel only treats one skb as one batch).
    pub bytes: Vec<u8>,
    /// Sequence number of each message and a short description for error messages.
    pub messages: Vec<(u32, String)>,
    /// Sequence number of the last message, which carries `NLM_F_ACK`.
    pub last_seq: u32,
    /// Sequence number of the batch-begin message (commit errors are reported against it).
    pub begin_seq: u32,
}

/// Attribute writer over a growing buffer.
struct W {
    b: Vec<u8>,
}

impl W {
    fn pad(&mut self) {
        while !self.b.len().is_multiple_of(4) {
            self.b.push(0);
        }
    }
    fn attr(&mut self, ty: u16, data: &[u8]) {
        self.b
            .extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
        self.b.extend_from_slice(&ty.to_ne_bytes());
        self.b.extend_from_slice(data);
        self.pad();
    }
    fn u32(&mut self, ty: u16, v: u32) {
        self.attr(ty, &v.to_be_bytes());
    }
    fn u64(&mut self, ty: u16, v: u64) {
        self.attr(ty, &v.to_be_bytes());
    }
    fn str(&mut self, ty: u16, s: &str) {
        let mut d = s.as_bytes().to_vec();
        d.push(0);
        self.attr(ty, &d);
    }
    fn nest(&mut self, ty: u16) -> usize {
        let at = self.b.len();
        self.b.extend_from_slice(&[0, 0]);
        self.b.extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
        at
    }
    fn end(&mut self, at: usize) {
        let len = (self.b.len() - at) as u16;
        self.b[at..at + 2].copy_from_slice(&len.to_ne_bytes());
    }
    /// Starts a netlink message with an nfgenmsg header.
    fn msg(&mut self, ty: u16, flags: u16, seq: u32, family: u8, res_id: u16) -> usize {
        let at = self.b.len();
        self.b.extend_from_slice(&[0; 4]);
        self.b.extend_from_slice(&ty.to_ne_bytes());
        self.b
            .extend_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
        self.b.extend_from_slice(&seq.to_ne_bytes());
        self.b.extend_from_slice(&0u32.to_ne_bytes());
        self.b.extend_from_slice(&[family, 0]);
        self.b.extend_from_slice(&res_id.to_be_bytes());
        at
    }
    fn msg_end(&mut self, at: usize) {
        let len = (self.b.len() - at) as u32;
        self.b[at..at + 4].copy_from_slice(&len.to_ne_bytes());
    }
}

fn nft_type(msg: u16) -> u16 {
    (NFNL_SUBSYS_NFTABLES << 8) | msg
}

/// Encoder state for one batch.
struct Enc<'a> {
    w: W,
    tx: &'a Transaction,
    seq: u32,
    messages: Vec<(u32, String)>,
    next_set_id: u32,
    /// Offset of the last message header, to set `NLM_F_ACK` on it at the end.
    last_msg: usize,
}

impl Enc<'_> {
    fn begin(&mut self, msg: u16, flags: u16, what: String) -> usize {
        self.seq = self.seq.wrapping_add(1);
        self.messages.push((self.seq, what));
        self.last_msg = self.w.b.len();
        let fam = self.tx.family.nfproto();
        self.w.msg(nft_type(msg), flags, self.seq, fam, 0)
    }

    fn table_attr(&mut self, ty: u16) {
        let t = self.tx.table.clone();
        self.w.str(ty, &t);
    }

    fn op(&mut self, op: &Op) {
        match op {
            Op::AddTable | Op::DeleteTable => {
                let (m, f) = if *op == Op::AddTable {
                    (NFT_MSG_NEWTABLE, NLM_F_CREATE)
                } else {
                    (NFT_MSG_DELTABLE, 0)
                };
                let at = self.begin(m, f, format!("{op:?} {}", self.tx.table));
                self.table_attr(1);
                self.w.msg_end(at);
            }
            Op::AddChain(c) => {
                let at = self.begin(
                    NFT_MSG_NEWCHAIN,
                    NLM_F_CREATE,
                    format!("add chain {}", c.name),
                );
                self.table_attr(1);
                self.w.str(3, &c.name);
                if let Some(b) = &c.base {
                    let h = self.w.nest(4);
                    self.w.u32(1, b.hook.number());
                    self.w.u32(2, b.priority as u32);
                    self.w.end(h);
                    self.w.u32(5, u32::from(b.accept_by_default));
                    self.w.str(
                        7,
                        match b.kind {
                            ChainType::Filter => "filter",
                            ChainType::Nat => "nat",
                        },
                    );
                }
                self.w.msg_end(at);
            }
            Op::FlushChain(c) | Op::DeleteChain(c) => {
                // DELRULE with no handle removes every rule of the chain.
                let (m, what) = if matches!(op, Op::FlushChain(_)) {
                    (NFT_MSG_DELRULE, "flush")
                } else {
                    (NFT_MSG_DELCHAIN, "delete")
                };
                let at = self.begin(m, 0, format!("{what} chain {c}"));
                self.table_attr(1);
                self.w.str(if m == NFT_MSG_DELRULE { 2 } else { 3 }, c);
                self.w.msg_end(at);
            }
            Op::AddRule { chain, rule } => self.rule(chain, rule),
            Op::AddSet(s) => self.set(s),
            Op::DeleteSet(s) => {
                let at = self.begin(NFT_MSG_DELSET, 0, format!("delete set {s}"));
                self.table_attr(1);
                self.w.str(2, s);
                self.w.msg_end(at);
            }
            Op::AddElems { set, elems } => self.elems(
                NFT_MSG_NEWSETELEM,
                set,
                None,
                elems.iter().map(|e| (&e.key[..], e.verdict.as_ref())),
            ),
            Op::DeleteElems { set, elems } => self.elems(
                NFT_MSG_DELSETELEM,
                set,
                None,
                elems.iter().map(|e| (&e.key[..], None)),
            ),
        }
    }

    fn set(&mut self, s: &Set) {
        let at = self.begin(NFT_MSG_NEWSET, NLM_F_CREATE, format!("add set {}", s.name));
        self.table_attr(1);
        self.w.str(2, &s.name);
        let mut flags = 0;
        if s.verdict_map {
            flags |= NFT_SET_MAP;
        }
        if s.timeout.is_some() {
            flags |= NFT_SET_TIMEOUT | NFT_SET_EVAL;
        }
        self.w.u32(3, flags);
        self.w.u32(4, s.key_type);
        self.w.u32(5, s.key_len);
        if s.verdict_map {
            self.w.u32(6, NFT_DATA_VERDICT);
        }
        if let Some(t) = s.timeout {
            self.w.u64(11, t.as_millis() as u64);
        }
        self.next_set_id += 1;
        self.w.u32(10, self.next_set_id);
        self.w.msg_end(at);
    }

    /// Emits NEWSET/DELSETELEM messages, splitting long lists.
    fn elems<'e>(
        &mut self,
        msg: u16,
        set: &str,
        set_id: Option<u32>,
        elems: impl Iterator<Item = (&'e [u8], Option<&'e Verdict>)>,
    ) {
        let mut chunk = W { b: Vec::new() };
        let mut n = 0usize;
        for (key, v) in elems {
            let e = chunk.nest(1);
            let k = chunk.nest(1);
            chunk.attr(1, key);
            chunk.end(k);
            if let Some(v) = v {
                let d = chunk.nest(2);
                verdict(&mut chunk, v);
                chunk.end(d);
            }
            chunk.end(e);
            n += 1;
            if chunk.b.len() >= MAX_ELEMS_BYTES {
                self.elem_msg(msg, set, set_id, &chunk.b, n);
                chunk.b.clear();
                n = 0;
            }
        }
        if n > 0 {
            self.elem_msg(msg, set, set_id, &chunk.b, n);
        }
    }

    fn elem_msg(&mut self, msg: u16, set: &str, set_id: Option<u32>, elems: &[u8], n: usize) {
        let what = if msg == NFT_MSG_NEWSETELEM {
            "add"
        } else {
            "delete"
        };
        let at = self.begin(
            msg,
            if msg == NFT_MSG_NEWSETELEM {
                NLM_F_CREATE
            } else {
                0
            },
            format!("{what} {n} elements of {set}"),
        );
        self.table_attr(1);
        self.w.str(2, set);
        if let Some(id) = set_id {
            self.w.u32(4, id);
        }
        let l = self.w.nest(3);
        self.w.b.extend_from_slice(elems);
        self.w.end(l);
        self.w.msg_end(at);
    }

    fn rule(&mut self, chain: &str, rule: &Rule) {
        // Anonymous maps must exist (with their elements) before the rule that binds them.
        let mut anon = Vec::new();
        for e in &rule.exprs {
            if let Expr::Vmap { key_len, elems, .. } = e {
                self.next_set_id += 1;
                let id = self.next_set_id;
                let at = self.begin(
                    NFT_MSG_NEWSET,
                    NLM_F_CREATE,
                    format!("add anonymous map for rule in {chain}"),
                );
                self.table_attr(1);
                self.w.str(2, "__map%d");
                self.w
                    .u32(3, NFT_SET_ANONYMOUS | NFT_SET_CONSTANT | NFT_SET_MAP);
                self.w.u32(4, datatype::INTEGER);
                self.w.u32(5, *key_len);
                self.w.u32(6, NFT_DATA_VERDICT);
                self.w.u32(10, id);
                // nft's set userdata: key byte order = host endian, so `nft list` prints 0, 1.
                self.w.attr(13, &[0, 4, 1, 0, 0, 0]);
                self.w.msg_end(at);
                self.elems(
                    NFT_MSG_NEWSETELEM,
                    "__map%d",
                    Some(id),
                    elems.iter().map(|(k, v)| (&k[..], Some(v))),
                );
                anon.push(id);
            }
        }
        let at = self.begin(
            NFT_MSG_NEWRULE,
            NLM_F_CREATE | NLM_F_APPEND,
            format!("add rule to {chain}"),
        );
        self.table_attr(1);
        self.w.str(2, chain);
        let list = self.w.nest(4);
        let mut anon = anon.into_iter();
        for e in &rule.exprs {
            let el = self.w.nest(1);
            expr(&mut self.w, e, &mut anon);
            self.w.end(el);
        }
        self.w.end(list);
        if let Some(c) = &rule.comment {
            // nft's rule userdata TLV: type 0 (comment), length, NUL-terminated text.
            let mut text: Vec<u8> = c.bytes().take(127).collect();
            text.push(0);
            let mut ud = vec![0u8, text.len() as u8];
            ud.extend_from_slice(&text);
            self.w.attr(7, &ud);
        }
        self.w.msg_end(at);
    }
}

fn verdict(w: &mut W, v: &Verdict) {
    let n = w.nest(2);
    w.u32(1, v.code() as u32);
    if let Some(c) = v.chain() {
        w.str(2, c);
    }
    w.end(n);
}

fn data_value(w: &mut W, ty: u16, data: &[u8]) {
    let n = w.nest(ty);
    w.attr(1, data);
    w.end(n);
}

/// Writes NFTA_EXPR_NAME and NFTA_EXPR_DATA for one expression.
fn expr(w: &mut W, e: &Expr, anon: &mut impl Iterator<Item = u32>) {
    let name = match e {
        Expr::Meta { .. } | Expr::MetaSet { .. } => "meta",
        Expr::Payload { .. } => "payload",
        Expr::Cmp { .. } => "cmp",
        Expr::Bitwise { .. } => "bitwise",
        Expr::Lookup { .. } | Expr::Vmap { .. } => "lookup",
        Expr::Immediate { .. } | Expr::Verdict(_) => "immediate",
        Expr::Ct { .. } => "ct",
        Expr::Nat { .. } => "nat",
        Expr::Masquerade { .. } => "masq",
        Expr::Numgen { .. } => "numgen",
        Expr::Reject(_) => "reject",
        Expr::Counter => "counter",
        Expr::Fib { .. } => "fib",
        Expr::DynsetUpdate { .. } => "dynset",
    };
    w.str(1, name);
    let d = w.nest(2);
    match e {
        Expr::Meta { key, dreg } => {
            w.u32(1, dreg.0);
            w.u32(2, key.number());
        }
        Expr::MetaSet { key, sreg } => {
            w.u32(2, key.number());
            w.u32(3, sreg.0);
        }
        Expr::Payload {
            base,
            offset,
            len,
            dreg,
        } => {
            w.u32(1, dreg.0);
            w.u32(
                2,
                match base {
                    PayloadBase::Network => 1,
                    PayloadBase::Transport => 2,
                },
            );
            w.u32(3, *offset);
            w.u32(4, *len);
        }
        Expr::Cmp { sreg, op, data } => {
            w.u32(1, sreg.0);
            w.u32(
                2,
                match op {
                    CmpOp::Eq => 0,
                    CmpOp::Neq => 1,
                },
            );
            data_value(w, 3, data);
        }
        Expr::Bitwise {
            sreg,
            dreg,
            mask,
            xor,
        } => {
            w.u32(1, sreg.0);
            w.u32(2, dreg.0);
            w.u32(3, mask.len() as u32);
            data_value(w, 4, mask);
            data_value(w, 5, xor);
        }
        Expr::Lookup {
            set,
            sreg,
            dreg,
            invert,
        } => {
            w.str(1, set);
            w.u32(2, sreg.0);
            if let Some(d) = dreg {
                w.u32(3, d.0);
            }
            if *invert {
                w.u32(5, 1);
            }
        }
        Expr::Vmap { sreg, .. } => {
            w.str(1, "__map%d");
            w.u32(2, sreg.0);
            w.u32(3, 0);
            w.u32(
                4,
                anon.next().expect("anonymous map encoded before its rule"),
            );
        }
        Expr::Immediate { dreg, data } => {
            w.u32(1, dreg.0);
            data_value(w, 2, data);
        }
        Expr::Verdict(v) => {
            w.u32(1, 0);
            let n = w.nest(2);
            verdict(w, v);
            w.end(n);
        }
        Expr::Ct { key, dreg } => {
            w.u32(1, dreg.0);
            w.u32(
                2,
                match key {
                    CtKey::State => 0,
                    CtKey::Status => 2,
                    CtKey::Mark => 3,
                },
            );
        }
        Expr::Nat { kind, addr, port } => {
            w.u32(
                1,
                match kind {
                    NatKind::Snat => 0,
                    NatKind::Dnat => 1,
                },
            );
            w.u32(2, 2); // NFPROTO_IPV4
            if let Some(a) = addr {
                w.u32(3, a.0);
            }
            if let Some(p) = port {
                w.u32(5, p.0);
            }
        }
        Expr::Masquerade { fully_random } => {
            if *fully_random {
                w.u32(1, 0x10); // NF_NAT_RANGE_PROTO_RANDOM_FULLY
            }
        }
        Expr::Numgen { modulus, dreg } => {
            w.u32(1, dreg.0);
            w.u32(2, *modulus);
            w.u32(3, 1); // NFT_NG_RANDOM
        }
        Expr::Reject(k) => match k {
            RejectKind::TcpReset => w.u32(1, 1),
            RejectKind::IcmpUnreachable(code) => {
                w.u32(1, 0);
                w.attr(2, &[*code]);
            }
        },
        Expr::Counter => {}
        Expr::Fib {
            flags,
            result,
            dreg,
        } => {
            w.u32(1, dreg.0);
            w.u32(2, *result);
            w.u32(3, *flags);
        }
        Expr::DynsetUpdate { set, sreg_key } => {
            w.str(1, set);
            w.u32(3, 1); // NFT_DYNSET_OP_UPDATE
            w.u32(4, sreg_key.0);
        }
    }
    w.end(d);
}

/// Encodes `tx` as one batch whose messages are numbered from `seq + 1`.
pub fn encode(tx: &Transaction, seq: u32) -> Batch {
    let mut e = Enc {
        w: W {
            b: Vec::with_capacity(4096),
        },
        tx,
        seq,
        messages: Vec::new(),
        next_set_id: 0,
        last_msg: 0,
    };
    e.seq = e.seq.wrapping_add(1);
    let begin_seq = e.seq;
    let at =
        e.w.msg(NFNL_MSG_BATCH_BEGIN, 0, begin_seq, 0, NFNL_SUBSYS_NFTABLES);
    e.w.msg_end(at);
    for op in &tx.ops {
        e.op(op);
    }
    // Only the last real message asks for an ack: errors are always reported, so one ack marks
    // the end of the kernel's answer without flooding the socket on big batches.
    let last_seq = e.seq;
    let flags_at = e.last_msg + 6;
    let flags = u16::from_ne_bytes([e.w.b[flags_at], e.w.b[flags_at + 1]]) | NLM_F_ACK;
    e.w.b[flags_at..flags_at + 2].copy_from_slice(&flags.to_ne_bytes());
    e.seq = e.seq.wrapping_add(1);
    let at =
        e.w.msg(NFNL_MSG_BATCH_END, 0, e.seq, 0, NFNL_SUBSYS_NFTABLES);
    e.w.msg_end(at);
    Batch {
        bytes: e.w.b,
        messages: e.messages,
        last_seq,
        begin_seq,
    }
}
