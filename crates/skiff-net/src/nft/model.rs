//! Typed model of the nftables objects skiff programs: tables, chains, rules made of kernel
//! expressions, sets and verdict maps, and the [`Transaction`] that applies them atomically.
//!
//! The model mirrors the kernel's own objects (what `nft --debug=netlink` prints), not nft's
//! source language, so that encoding it to netlink is a direct walk with no compiler in between.

use std::net::Ipv4Addr;
use std::time::Duration;

/// Address family of a table (`NFPROTO_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// `ip`: IPv4 only.
    Ip,
    /// `inet`: IPv4 and IPv6.
    Inet,
}

impl Family {
    /// The kernel's `NFPROTO_*` number.
    pub fn nfproto(self) -> u8 {
        match self {
            Family::Ip => 2,
            Family::Inet => 1,
        }
    }

    /// The name nft uses for this family.
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Ip => "ip",
            Family::Inet => "inet",
        }
    }
}

/// Type of a base chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChainType {
    /// `filter`: accept, drop, reject.
    Filter,
    /// `nat`: sees only the first packet of each connection; may dnat/snat/masquerade.
    Nat,
}

/// Netfilter hook a base chain attaches to (`NF_INET_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// Before routing, for packets arriving on an interface.
    Prerouting,
    /// Packets for a local address.
    Input,
    /// Routed packets.
    Forward,
    /// Locally generated packets.
    Output,
    /// After routing, for every packet leaving.
    Postrouting,
}

impl Hook {
    /// The kernel's hook number.
    pub fn number(self) -> u32 {
        match self {
            Hook::Prerouting => 0,
            Hook::Input => 1,
            Hook::Forward => 2,
            Hook::Output => 3,
            Hook::Postrouting => 4,
        }
    }
}

/// Well-known chain priorities, as nft names them.
pub mod priority {
    /// `dstnat`: where destination NAT happens.
    pub const DSTNAT: i32 = -100;
    /// `filter`.
    pub const FILTER: i32 = 0;
    /// `srcnat`: where source NAT happens.
    pub const SRCNAT: i32 = 100;
}

/// Where a base chain hooks in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseChain {
    /// Chain type.
    pub kind: ChainType,
    /// Hook.
    pub hook: Hook,
    /// Priority: lower runs first.
    pub priority: i32,
    /// What happens to packets that fall off the end.
    pub accept_by_default: bool,
}

/// A chain; `base` is `None` for regular chains that are only reached by jump/goto.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    /// Chain name (at most 255 bytes).
    pub name: String,
    /// Hook, if this is a base chain.
    pub base: Option<BaseChain>,
}

/// Terminal (or flow) decision of a rule.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    /// Let the packet through this hook.
    Accept,
    /// Drop silently.
    Drop,
    /// Return from a jumped-to chain.
    Return,
    /// Go on with the next expression (used as the "no verdict" of a map).
    Continue,
    /// Call a chain and come back.
    Jump(String),
    /// Continue in another chain without coming back.
    Goto(String),
}

impl Verdict {
    /// The kernel's verdict code (`NF_DROP`, `NF_ACCEPT`, `NFT_*`).
    pub fn code(&self) -> i32 {
        match self {
            Verdict::Drop => 0,
            Verdict::Accept => 1,
            Verdict::Continue => -1,
            Verdict::Jump(_) => -3,
            Verdict::Goto(_) => -4,
            Verdict::Return => -5,
        }
    }

    /// Target chain of jump/goto.
    pub fn chain(&self) -> Option<&str> {
        match self {
            Verdict::Jump(c) | Verdict::Goto(c) => Some(c),
            _ => None,
        }
    }
}

/// A kernel register. Registers 1-4 are 16 bytes wide; the 32-bit registers overlay them
/// (`Reg::r32(0..=3)` is register 1), which is how concatenated keys are built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reg(pub u32);

impl Reg {
    /// The verdict register: a lookup into a verdict map writes here.
    pub const VERDICT: Reg = Reg(0);
    /// First 16-byte data register.
    pub const R1: Reg = Reg(1);
    /// Second 16-byte data register.
    pub const R2: Reg = Reg(2);

    /// 32-bit register `i` (0..16); each field of a concatenation takes one or more of these.
    pub fn r32(i: u32) -> Reg {
        Reg(8 + i)
    }
}

/// Packet metadata keys (`NFT_META_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetaKey {
    /// Packet mark (host byte order u32).
    Mark,
    /// Layer-4 protocol number (u8).
    L4Proto,
}

impl MetaKey {
    /// Kernel key number.
    pub fn number(self) -> u32 {
        match self {
            MetaKey::Mark => 3,
            MetaKey::L4Proto => 16,
        }
    }
}

/// Header a payload offset is relative to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayloadBase {
    /// IP header.
    Network,
    /// TCP/UDP/SCTP header (`th`).
    Transport,
}

/// Comparison operator of `cmp`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    /// Equal.
    Eq,
    /// Not equal.
    Neq,
}

/// Conntrack keys (`NFT_CT_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CtKey {
    /// State bitmask (new, established, ...).
    State,
    /// Status bitmask (dnat done, ...).
    Status,
    /// Connection mark.
    Mark,
}

/// Which NAT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NatKind {
    /// Source NAT.
    Snat,
    /// Destination NAT.
    Dnat,
}

/// How `reject` answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectKind {
    /// TCP reset (only valid for TCP packets).
    TcpReset,
    /// ICMP destination unreachable with this code (3 = port unreachable).
    IcmpUnreachable(u8),
}

/// Flags of `fib` (what to look up).
pub mod fib_flags {
    /// Look up the source address.
    pub const SADDR: u32 = 1;
    /// Look up the destination address.
    pub const DADDR: u32 = 2;
}

/// One kernel expression. Rules are lists of these, evaluated in order; `sreg`/`dreg` are the
/// source and destination registers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expr {
    /// Load packet metadata into a register.
    Meta {
        /// What to load.
        key: MetaKey,
        /// Destination register.
        dreg: Reg,
    },
    /// Store a register into packet metadata.
    MetaSet {
        /// What to set.
        key: MetaKey,
        /// Source register.
        sreg: Reg,
    },
    /// Load `len` bytes at `offset` of a header.
    Payload {
        /// Which header.
        base: PayloadBase,
        /// Byte offset in that header.
        offset: u32,
        /// Bytes to load.
        len: u32,
        /// Destination register.
        dreg: Reg,
    },
    /// Compare a register with raw bytes; the rule stops matching if false.
    Cmp {
        /// Register to compare.
        sreg: Reg,
        /// Operator.
        op: CmpOp,
        /// Bytes to compare with (register layout, so network order for addresses and ports).
        data: Vec<u8>,
    },
    /// `dreg = (sreg & mask) ^ xor`.
    Bitwise {
        /// Source register.
        sreg: Reg,
        /// Destination register.
        dreg: Reg,
        /// AND mask; its length is the operand length.
        mask: Vec<u8>,
        /// XOR value, same length as `mask`.
        xor: Vec<u8>,
    },
    /// Look a key up in a named set or map.
    Lookup {
        /// Set name.
        set: String,
        /// First register of the key.
        sreg: Reg,
        /// `Some(Reg::VERDICT)` for verdict maps, `None` for membership tests.
        dreg: Option<Reg>,
        /// Match when the key is absent.
        invert: bool,
    },
    /// Look a key up in an anonymous constant verdict map owned by this rule
    /// (`numgen random mod 2 vmap { 0 : goto a, 1 : goto b }`).
    Vmap {
        /// First register of the key.
        sreg: Reg,
        /// Key length in bytes.
        key_len: u32,
        /// Keys and their verdicts.
        elems: Vec<(Vec<u8>, Verdict)>,
    },
    /// Load constant bytes into a data register.
    Immediate {
        /// Destination register.
        dreg: Reg,
        /// Bytes to load.
        data: Vec<u8>,
    },
    /// Set the verdict.
    Verdict(Verdict),
    /// Load a conntrack key.
    Ct {
        /// What to load.
        key: CtKey,
        /// Destination register.
        dreg: Reg,
    },
    /// Source or destination NAT to the address/port held in registers.
    Nat {
        /// SNAT or DNAT.
        kind: NatKind,
        /// Register with the IPv4 address.
        addr: Option<Reg>,
        /// Register with the port (network order).
        port: Option<Reg>,
    },
    /// Source NAT to the address of the outgoing interface.
    Masquerade {
        /// Randomise the source port fully (avoids port-reuse races, as kube-proxy does).
        fully_random: bool,
    },
    /// Random number in `0..modulus` (host byte order u32).
    Numgen {
        /// Upper bound (exclusive).
        modulus: u32,
        /// Destination register.
        dreg: Reg,
    },
    /// Reject the packet.
    Reject(RejectKind),
    /// Count packets and bytes.
    Counter,
    /// Route lookup; with `result = 3` the address type (`RTN_*`, host byte order u32).
    Fib {
        /// What to look up ([`fib_flags`]).
        flags: u32,
        /// What to return (`NFT_FIB_RESULT_*`).
        result: u32,
        /// Destination register.
        dreg: Reg,
    },
    /// Add the key to a dynamic set or refresh its timeout (`update @set { ip saddr }`).
    DynsetUpdate {
        /// Set name (the set needs a timeout).
        set: String,
        /// First register of the key.
        sreg_key: Reg,
    },
}

/// A rule: expressions plus an optional comment (shown by `nft list`).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Rule {
    /// Expressions in evaluation order.
    pub exprs: Vec<Expr>,
    /// Comment (truncated to 127 bytes when encoded).
    pub comment: Option<String>,
}

impl Rule {
    /// A rule from expressions.
    pub fn new(exprs: Vec<Expr>) -> Self {
        Rule {
            exprs,
            comment: None,
        }
    }

    /// The same rule with a comment.
    pub fn comment(mut self, c: impl Into<String>) -> Self {
        self.comment = Some(c.into());
        self
    }
}

/// nft's datatype numbers, stored in the kernel only so that `nft list` can print keys.
pub mod datatype {
    /// Plain integer.
    pub const INTEGER: u32 = 4;
    /// IPv4 address.
    pub const IPV4_ADDR: u32 = 7;
    /// IP protocol number.
    pub const INET_PROTO: u32 = 12;
    /// Port number.
    pub const INET_SERVICE: u32 = 13;

    /// Datatype of a concatenation, as nft composes it (6 bits per field).
    pub fn concat(fields: &[u32]) -> u32 {
        fields.iter().fold(0, |acc, f| (acc << 6) | f)
    }
}

/// A named set, or a map when `verdict_map` is true.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Set {
    /// Set name.
    pub name: String,
    /// nft datatype of the key (see [`datatype`]).
    pub key_type: u32,
    /// Key length in bytes (each concatenated field rounded up to 4).
    pub key_len: u32,
    /// Elements map to verdicts.
    pub verdict_map: bool,
    /// Elements expire after this long unless refreshed (makes the set dynamic).
    pub timeout: Option<Duration>,
}

/// A set element; `verdict` is required for verdict maps.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Elem {
    /// Key bytes, laid out as the registers that look it up.
    pub key: Vec<u8>,
    /// Value for verdict maps.
    pub verdict: Option<Verdict>,
}

/// One step of a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Create the table if it does not exist.
    AddTable,
    /// Delete the table and everything in it (fails if absent; pair with `AddTable`).
    DeleteTable,
    /// Create a chain (no-op if it exists).
    AddChain(Chain),
    /// Remove every rule of a chain.
    FlushChain(String),
    /// Delete an empty, unreferenced chain.
    DeleteChain(String),
    /// Append a rule to a chain.
    AddRule {
        /// Chain to append to.
        chain: String,
        /// The rule.
        rule: Rule,
    },
    /// Create a set.
    AddSet(Set),
    /// Delete an unreferenced set.
    DeleteSet(String),
    /// Add (or overwrite) elements.
    AddElems {
        /// Set or map name.
        set: String,
        /// Elements to add.
        elems: Vec<Elem>,
    },
    /// Delete elements.
    DeleteElems {
        /// Set or map name.
        set: String,
        /// Elements to delete (only keys matter).
        elems: Vec<Elem>,
    },
}

/// An ordered list of changes to one table, applied all-or-nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transaction {
    /// Table family.
    pub family: Family,
    /// Table name.
    pub table: String,
    /// Changes, in order.
    pub ops: Vec<Op>,
}

impl Transaction {
    /// An empty transaction on `family table`.
    pub fn new(family: Family, table: impl Into<String>) -> Self {
        Transaction {
            family,
            table: table.into(),
            ops: Vec::new(),
        }
    }

    /// Append a change.
    pub fn push(&mut self, op: Op) -> &mut Self {
        self.ops.push(op);
        self
    }

    /// Delete the table whether or not it exists (add-then-delete is atomic and never fails
    /// on a missing table, which is how knftables does it too).
    pub fn delete_table_if_exists(&mut self) -> &mut Self {
        self.ops.push(Op::AddTable);
        self.ops.push(Op::DeleteTable);
        self
    }

    /// True when there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// Key bytes for `ip daddr . meta l4proto . th dport` (each field padded to 4 bytes, as the
/// 32-bit registers hold them).
pub fn key_addr_proto_port(addr: Ipv4Addr, proto: u8, port: u16) -> Vec<u8> {
    let mut k = addr.octets().to_vec();
    k.extend_from_slice(&[proto, 0, 0, 0]);
    k.extend_from_slice(&port.to_be_bytes());
    k.extend_from_slice(&[0, 0]);
    k
}

/// Key bytes for `meta l4proto . th dport`.
pub fn key_proto_port(proto: u8, port: u16) -> Vec<u8> {
    let mut k = vec![proto, 0, 0, 0];
    k.extend_from_slice(&port.to_be_bytes());
    k.extend_from_slice(&[0, 0]);
    k
}
