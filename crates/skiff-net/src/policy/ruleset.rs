//! The compiled table as plain data, and the transactions that create it from nothing or
//! move the kernel from a previously applied [`Ruleset`] to a new one.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use crate::nft::expr;
use crate::nft::model::{datatype, key_addr_proto_port, priority, CmpOp, CtKey};
use crate::nft::{
    BaseChain, Chain, ChainType, Elem, Expr, Family, Hook, Op, Reg, Rule, Set, Transaction, Verdict,
};

use super::Protocol;

/// Verdict map from a local pod's address to its ingress chain.
pub(crate) const INGRESS_MAP: &str = "ingress-pods";
/// Verdict map from a local pod's address to its egress chain.
pub(crate) const EGRESS_MAP: &str = "egress-pods";
/// This node's addresses, always reachable from its pods.
pub(crate) const NODE_SET: &str = "node-ips";
const FORWARD: &str = "forward";
const INPUT: &str = "input";

/// `NF_CT_STATE_BIT(IP_CT_ESTABLISHED) | NF_CT_STATE_BIT(IP_CT_RELATED)`.
const CT_ESTABLISHED_RELATED: u32 = 0b110;

/// The desired contents of the policy table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ruleset {
    /// Table name (family `ip`).
    pub table: String,
    /// Regular chains, one per isolated local pod and direction, with their rules in order.
    pub chains: BTreeMap<String, Vec<Rule>>,
    /// Address sets: peers named by selectors, one set per policy rule.
    pub addr_sets: BTreeMap<String, BTreeSet<Ipv4Addr>>,
    /// `daddr . l4proto . dport` sets: egress named ports resolved per destination pod.
    pub port_sets: BTreeMap<String, BTreeSet<(Ipv4Addr, Protocol, u16)>>,
    /// Ingress-isolated local pod address to its chain.
    pub ingress: BTreeMap<Ipv4Addr, String>,
    /// Egress-isolated local pod address to its chain.
    pub egress: BTreeMap<Ipv4Addr, String>,
    /// This node's addresses.
    pub node_ips: BTreeSet<Ipv4Addr>,
}

fn addr_elems<'a>(ips: impl IntoIterator<Item = &'a Ipv4Addr>) -> Vec<Elem> {
    ips.into_iter()
        .map(|ip| Elem {
            key: ip.octets().to_vec(),
            verdict: None,
        })
        .collect()
}

fn port_elems<'a>(keys: impl IntoIterator<Item = &'a (Ipv4Addr, Protocol, u16)>) -> Vec<Elem> {
    keys.into_iter()
        .map(|(ip, proto, port)| Elem {
            key: key_addr_proto_port(*ip, proto.number(), *port),
            verdict: None,
        })
        .collect()
}

fn map_elems<'a>(entries: impl IntoIterator<Item = (&'a Ipv4Addr, &'a String)>) -> Vec<Elem> {
    entries
        .into_iter()
        .map(|(ip, chain)| Elem {
            key: ip.octets().to_vec(),
            verdict: Some(Verdict::Jump(chain.clone())),
        })
        .collect()
}

fn addr_set(name: &str) -> Set {
    Set {
        name: name.into(),
        key_type: datatype::IPV4_ADDR,
        key_len: 4,
        verdict_map: false,
        timeout: None,
    }
}

fn port_set(name: &str) -> Set {
    Set {
        name: name.into(),
        key_type: datatype::concat(&[
            datatype::IPV4_ADDR,
            datatype::INET_PROTO,
            datatype::INET_SERVICE,
        ]),
        key_len: 12,
        verdict_map: false,
        timeout: None,
    }
}

fn pod_map(name: &str) -> Set {
    Set {
        verdict_map: true,
        ..addr_set(name)
    }
}

/// `ct state established,related accept`: replies of allowed connections always pass.
pub(crate) fn established_accept() -> Rule {
    Rule::new(vec![
        Expr::Ct {
            key: CtKey::State,
            dreg: Reg::R1,
        },
        Expr::Bitwise {
            sreg: Reg::R1,
            dreg: Reg::R1,
            mask: CT_ESTABLISHED_RELATED.to_ne_bytes().to_vec(),
            xor: vec![0; 4],
        },
        Expr::Cmp {
            sreg: Reg::R1,
            op: CmpOp::Neq,
            data: vec![0; 4],
        },
        expr::verdict(Verdict::Accept),
    ])
}

fn dispatch(load: Expr, map: &str) -> Rule {
    Rule::new(vec![
        load,
        Expr::Lookup {
            set: map.into(),
            sreg: Reg::R1,
            dreg: Some(Reg::VERDICT),
            invert: false,
        },
    ])
}

fn base_chain(name: &str, hook: Hook) -> Chain {
    Chain {
        name: name.into(),
        base: Some(BaseChain {
            kind: ChainType::Filter,
            hook,
            priority: priority::FILTER,
            // Policy only ever narrows: what no isolated pod's chain drops passes.
            accept_by_default: true,
        }),
    }
}

/// The two base chains and their fixed rules.
fn base_chains() -> Vec<(Chain, Vec<Rule>)> {
    // Egress first: a packet between two isolated pods must pass the sender's egress chain
    // (which returns when allowed) and then the receiver's ingress chain.
    let forward = vec![
        established_accept(),
        dispatch(expr::load_saddr(Reg::R1), EGRESS_MAP).comment("egress of local pods"),
        dispatch(expr::load_daddr(Reg::R1), INGRESS_MAP).comment("ingress of local pods"),
    ];
    let mut to_node = vec![expr::load_daddr(Reg::R1)];
    to_node.push(Expr::Lookup {
        set: NODE_SET.into(),
        sreg: Reg::R1,
        dreg: None,
        invert: false,
    });
    to_node.push(expr::verdict(Verdict::Accept));
    // Delivered locally: a pod talking to the node. The node's own addresses are always
    // allowed; anything else served here (the cluster DNS address) is egress like any other.
    let input = vec![
        established_accept(),
        Rule::new(to_node).comment("pods may always reach their node"),
        dispatch(expr::load_saddr(Reg::R1), EGRESS_MAP).comment("egress of local pods"),
    ];
    vec![
        (base_chain(FORWARD, Hook::Forward), forward),
        (base_chain(INPUT, Hook::Input), input),
    ]
}

fn add_rules(tx: &mut Transaction, chain: &str, rules: &[Rule]) {
    for r in rules {
        tx.push(Op::AddRule {
            chain: chain.into(),
            rule: r.clone(),
        });
    }
}

fn push_elems(tx: &mut Transaction, set: &str, elems: Vec<Elem>, add: bool) {
    if elems.is_empty() {
        return;
    }
    let set = set.to_string();
    tx.push(if add {
        Op::AddElems { set, elems }
    } else {
        Op::DeleteElems { set, elems }
    });
}

/// Adds and deletes elements so that a set holding `old` holds `new`.
fn diff_elems<T: Ord>(
    tx: &mut Transaction,
    set: &str,
    old: &BTreeSet<T>,
    new: &BTreeSet<T>,
    to_elems: impl Fn(Vec<&T>) -> Vec<Elem>,
) {
    push_elems(tx, set, to_elems(old.difference(new).collect()), false);
    push_elems(tx, set, to_elems(new.difference(old).collect()), true);
}

impl Ruleset {
    /// An empty ruleset for `table`.
    pub fn new(table: impl Into<String>) -> Ruleset {
        Ruleset {
            table: table.into(),
            ..Ruleset::default()
        }
    }

    /// Number of rules in the pod chains.
    pub fn rule_count(&self) -> usize {
        self.chains.values().map(Vec::len).sum()
    }

    /// Number of elements over all sets and maps.
    pub fn element_count(&self) -> usize {
        self.addr_sets.values().map(BTreeSet::len).sum::<usize>()
            + self.port_sets.values().map(BTreeSet::len).sum::<usize>()
            + self.ingress.len()
            + self.egress.len()
            + self.node_ips.len()
    }

    /// Replaces whatever table of this name exists with this ruleset, in one transaction.
    pub fn full_transaction(&self) -> Transaction {
        let mut tx = Transaction::new(Family::Ip, self.table.clone());
        tx.delete_table_if_exists();
        tx.push(Op::AddTable);
        // Sets before the rules that look them up, chains before the map elements that jump
        // to them, base chains last; the kernel checks references as it goes.
        tx.push(Op::AddSet(addr_set(NODE_SET)));
        tx.push(Op::AddSet(pod_map(INGRESS_MAP)));
        tx.push(Op::AddSet(pod_map(EGRESS_MAP)));
        push_elems(&mut tx, NODE_SET, addr_elems(&self.node_ips), true);
        for (name, ips) in &self.addr_sets {
            tx.push(Op::AddSet(addr_set(name)));
            push_elems(&mut tx, name, addr_elems(ips), true);
        }
        for (name, keys) in &self.port_sets {
            tx.push(Op::AddSet(port_set(name)));
            push_elems(&mut tx, name, port_elems(keys), true);
        }
        for (name, rules) in &self.chains {
            tx.push(Op::AddChain(Chain {
                name: name.clone(),
                base: None,
            }));
            add_rules(&mut tx, name, rules);
        }
        push_elems(&mut tx, INGRESS_MAP, map_elems(&self.ingress), true);
        push_elems(&mut tx, EGRESS_MAP, map_elems(&self.egress), true);
        for (chain, rules) in base_chains() {
            let name = chain.name.clone();
            tx.push(Op::AddChain(chain));
            add_rules(&mut tx, &name, &rules);
        }
        tx
    }

    /// The changes that turn the table as `old` left it into this ruleset. Pod churn becomes
    /// element updates; only chains whose rules changed are flushed and refilled.
    pub fn update_transaction(&self, old: &Ruleset) -> Transaction {
        let mut tx = Transaction::new(Family::Ip, self.table.clone());
        let empty_addrs = BTreeSet::new();
        let empty_ports = BTreeSet::new();
        diff_elems(&mut tx, NODE_SET, &old.node_ips, &self.node_ips, |v| {
            addr_elems(v)
        });
        for (name, ips) in &self.addr_sets {
            if !old.addr_sets.contains_key(name) {
                tx.push(Op::AddSet(addr_set(name)));
            }
            let before = old.addr_sets.get(name).unwrap_or(&empty_addrs);
            diff_elems(&mut tx, name, before, ips, |v| addr_elems(v));
        }
        for (name, keys) in &self.port_sets {
            if !old.port_sets.contains_key(name) {
                tx.push(Op::AddSet(port_set(name)));
            }
            let before = old.port_sets.get(name).unwrap_or(&empty_ports);
            diff_elems(&mut tx, name, before, keys, |v| port_elems(v));
        }
        for (name, rules) in &self.chains {
            match old.chains.get(name) {
                Some(before) if before == rules => continue,
                Some(_) => {
                    tx.push(Op::FlushChain(name.clone()));
                }
                None => {
                    tx.push(Op::AddChain(Chain {
                        name: name.clone(),
                        base: None,
                    }));
                }
            }
            add_rules(&mut tx, name, rules);
        }
        for (map, before, after) in [
            (INGRESS_MAP, &old.ingress, &self.ingress),
            (EGRESS_MAP, &old.egress, &self.egress),
        ] {
            // A changed target is a delete plus an add: the kernel refuses to overwrite an
            // element's data in place.
            let gone = before.iter().filter(|(ip, c)| after.get(*ip) != Some(*c));
            let new = after.iter().filter(|(ip, c)| before.get(*ip) != Some(*c));
            push_elems(&mut tx, map, map_elems(gone), false);
            push_elems(&mut tx, map, map_elems(new), true);
        }
        // Deletions last, once no map element jumps to the chains and no rule uses the sets.
        for name in old.chains.keys().filter(|c| !self.chains.contains_key(*c)) {
            tx.push(Op::FlushChain(name.clone()));
            tx.push(Op::DeleteChain(name.clone()));
        }
        let gone_sets = old
            .addr_sets
            .keys()
            .filter(|s| !self.addr_sets.contains_key(*s))
            .chain(
                old.port_sets
                    .keys()
                    .filter(|s| !self.port_sets.contains_key(*s)),
            );
        for name in gone_sets {
            tx.push(Op::DeleteSet(name.clone()));
        }
        tx
    }
}
