//! From API objects to a [`Ruleset`]: one chain per isolated local pod and direction whose
//! rules are the union of what the selecting policies allow, followed by `drop`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};

use crate::nft::expr;
use crate::nft::model::CmpOp;
use crate::nft::{Expr, Reg, Rule, Verdict};

use super::ruleset::Ruleset;
use super::select::{
    peer_pods, peer_selects_pods, policy_key, policy_namespace, policy_selects, policy_types,
    port_prefixes, resolve_named, Block, Cidr, PortSpec,
};
use super::{PolicyInput, PolicyPod, Protocol};

/// Name of the nftables table (family `ip`) that holds NetworkPolicy rules.
pub const TABLE: &str = "skiff-policy";

/// Longest set or chain name we generate; the kernel allows 255 bytes.
const MAX_NAME: usize = 200;

/// Traffic direction relative to the pod a chain protects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dir {
    Ingress,
    Egress,
}

impl Dir {
    /// Verdict of an allow rule. Egress returns so that the base chain goes on to the
    /// destination's ingress chain; ingress is the last check and accepts.
    fn allow(self) -> Verdict {
        match self {
            Dir::Ingress => Verdict::Accept,
            Dir::Egress => Verdict::Return,
        }
    }

    /// Loads the peer's address: the source of ingress, the destination of egress.
    fn load_peer(self) -> Expr {
        match self {
            Dir::Ingress => expr::load_saddr(Reg::R1),
            Dir::Egress => expr::load_daddr(Reg::R1),
        }
    }

    fn tag(self) -> &'static str {
        match self {
            Dir::Ingress => "in",
            Dir::Egress => "out",
        }
    }

    fn chain(self, ip: Ipv4Addr) -> String {
        match self {
            Dir::Ingress => format!("ingress-{ip}"),
            Dir::Egress => format!("egress-{ip}"),
        }
    }
}

/// One `ingress[]`/`egress[]` entry, direction-neutral.
struct RuleRef<'a> {
    peers: &'a [NetworkPolicyPeer],
    ports: &'a [NetworkPolicyPort],
}

fn rules_of(policy: &NetworkPolicy, dir: Dir) -> Vec<RuleRef<'_>> {
    let Some(spec) = policy.spec.as_ref() else {
        return Vec::new();
    };
    match dir {
        Dir::Ingress => spec
            .ingress
            .iter()
            .flatten()
            .map(|r| RuleRef {
                peers: r.from.as_deref().unwrap_or_default(),
                ports: r.ports.as_deref().unwrap_or_default(),
            })
            .collect(),
        Dir::Egress => spec
            .egress
            .iter()
            .flatten()
            .map(|r| RuleRef {
                peers: r.to.as_deref().unwrap_or_default(),
                ports: r.ports.as_deref().unwrap_or_default(),
            })
            .collect(),
    }
}

/// Set name for rule `idx` of `policy`: readable (`in_<ns>_<name>_<idx>`; `_` cannot occur
/// in Kubernetes names, so it separates unambiguously), hashed when too long.
fn set_name(kind: &str, policy: &NetworkPolicy, idx: usize) -> String {
    let ns = policy_namespace(policy);
    let name = policy.metadata.name.as_deref().unwrap_or("");
    let readable = format!("{kind}_{ns}_{name}_{idx}");
    if readable.len() <= MAX_NAME {
        return readable;
    }
    format!("{kind}_{:016x}_{idx}", fnv1a(&format!("{ns}/{name}")))
}

/// FNV-1a: stable across runs and releases (unlike `DefaultHasher`), so names persist.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// `<loaded address> & mask == net`, or `!=` when `negate`.
fn prefix_match(load: Expr, cidr: Cidr, negate: bool) -> Vec<Expr> {
    let mut e = vec![load];
    if cidr.len < 32 {
        e.push(Expr::Bitwise {
            sreg: Reg::R1,
            dreg: Reg::R1,
            mask: Cidr::mask(cidr.len).to_be_bytes().to_vec(),
            xor: vec![0; 4],
        });
    }
    e.push(Expr::Cmp {
        sreg: Reg::R1,
        op: if negate { CmpOp::Neq } else { CmpOp::Eq },
        data: cidr.addr.octets().to_vec(),
    });
    e
}

/// `meta l4proto P th dport & mask == value` for each piece of a port range.
fn port_match(proto: Protocol, lo: u16, hi: u16) -> Vec<Vec<Expr>> {
    port_prefixes(lo, hi)
        .into_iter()
        .map(|(value, mask)| {
            let mut e = expr::l4proto_is(proto.number());
            e.push(expr::load_dport(Reg::R1));
            if mask != u16::MAX {
                e.push(Expr::Bitwise {
                    sreg: Reg::R1,
                    dreg: Reg::R1,
                    mask: mask.to_be_bytes().to_vec(),
                    xor: vec![0; 2],
                });
            }
            e.push(Expr::Cmp {
                sreg: Reg::R1,
                op: CmpOp::Eq,
                data: value.to_be_bytes().to_vec(),
            });
            e
        })
        .collect()
}

/// `ip daddr . meta l4proto . th dport @set`.
fn dest_port_lookup(set: &str) -> Vec<Expr> {
    vec![
        expr::load_daddr(Reg::r32(0)),
        expr::load_l4proto(Reg::r32(1)),
        expr::load_dport(Reg::r32(2)),
        Expr::Lookup {
            set: set.into(),
            sreg: Reg::r32(0),
            dreg: None,
            invert: false,
        },
    ]
}

/// Compiles one policy rule for the chain of `pod`, registering the shared sets it uses.
fn compile_rule(
    rs: &mut Ruleset,
    input: &PolicyInput,
    policy: &NetworkPolicy,
    idx: usize,
    rule: &RuleRef<'_>,
    dir: Dir,
    pod: &PolicyPod,
) -> Vec<Rule> {
    let key = policy_key(policy);
    let ns = policy_namespace(policy);
    let comment = format!("{key} {}[{idx}]", dir.tag());
    let specs: Vec<PortSpec> = rule.ports.iter().filter_map(PortSpec::parse).collect();

    // Peer alternatives (ORed): nothing to match when `from`/`to` is empty, else one set for
    // all selector peers plus one prefix match per IP block.
    let any_peer = rule.peers.is_empty();
    let blocks: Vec<Block> = rule
        .peers
        .iter()
        .filter_map(|p| Block::from_peer(p, &key))
        .collect();
    let mut peer_matches: Vec<Vec<Expr>> = Vec::new();
    if any_peer {
        peer_matches.push(Vec::new());
    }
    if rule.peers.iter().any(peer_selects_pods) {
        let name = set_name(dir.tag(), policy, idx);
        rs.addr_sets.entry(name.clone()).or_insert_with(|| {
            rule.peers
                .iter()
                .flat_map(|p| peer_pods(input, ns, p))
                .map(|p| p.ip)
                .collect()
        });
        // The lookup stays even while the set is empty, so pods appearing later only add
        // elements.
        peer_matches.push(vec![
            dir.load_peer(),
            Expr::Lookup {
                set: name,
                sreg: Reg::R1,
                dreg: None,
                invert: false,
            },
        ]);
    }
    for b in &blocks {
        let mut e = prefix_match(dir.load_peer(), b.cidr, false);
        for ex in &b.except {
            e.extend(prefix_match(dir.load_peer(), *ex, true));
        }
        peer_matches.push(e);
    }

    // Port alternatives (ORed); an empty `ports` list means every port and protocol.
    let mut port_matches: Vec<Vec<Expr>> = Vec::new();
    let mut named_egress: Vec<(Protocol, &str)> = Vec::new();
    if rule.ports.is_empty() {
        port_matches.push(Vec::new());
    }
    for spec in &specs {
        match spec {
            PortSpec::AnyPort(p) => port_matches.push(expr::l4proto_is(p.number())),
            PortSpec::Range(p, lo, hi) => port_matches.extend(port_match(*p, *lo, *hi)),
            // Ingress: the destination is this pod, so the name resolves here and now.
            PortSpec::Named(p, name) if dir == Dir::Ingress => {
                if let Some(port) = resolve_named(pod, name, *p) {
                    port_matches.extend(port_match(*p, port, port));
                }
            }
            PortSpec::Named(p, name) => named_egress.push((*p, name)),
        }
    }

    let mut out = Vec::new();
    for peer in &peer_matches {
        for port in &port_matches {
            let mut e = peer.clone();
            e.extend(port.iter().cloned());
            e.push(expr::verdict(dir.allow()));
            out.push(Rule::new(e).comment(comment.clone()));
        }
    }
    if !named_egress.is_empty() {
        // Egress named ports resolve per destination pod: every pod the peers cover that has
        // such a port contributes `ip . proto . port`. Addresses outside the cluster have no
        // named ports, so named ports never match them.
        let name = set_name("outport", policy, idx);
        rs.port_sets.entry(name.clone()).or_insert_with(|| {
            let selected: BTreeSet<Ipv4Addr> = rule
                .peers
                .iter()
                .flat_map(|p| peer_pods(input, ns, p))
                .map(|p| p.ip)
                .collect();
            input
                .pods
                .iter()
                .filter(|d| {
                    any_peer || selected.contains(&d.ip) || blocks.iter().any(|b| b.contains(d.ip))
                })
                .flat_map(|d| {
                    named_egress
                        .iter()
                        .filter_map(|(p, n)| resolve_named(d, n, *p).map(|port| (d.ip, *p, port)))
                })
                .collect()
        });
        let mut e = dest_port_lookup(&name);
        e.push(expr::verdict(dir.allow()));
        out.push(Rule::new(e).comment(comment));
    }
    out
}

/// The chain of one isolated pod in one direction.
fn pod_chain(
    rs: &mut Ruleset,
    input: &PolicyInput,
    policies: &[&NetworkPolicy],
    dir: Dir,
    pod: &PolicyPod,
) -> Vec<Rule> {
    // A pod can always reach itself, also through a Service that hairpins back to it.
    let mut own = vec![dir.load_peer()];
    own.push(Expr::Cmp {
        sreg: Reg::R1,
        op: CmpOp::Eq,
        data: pod.ip.octets().to_vec(),
    });
    own.push(expr::verdict(dir.allow()));
    let mut rules = vec![Rule::new(own).comment("own traffic")];
    for policy in policies {
        for (idx, rule) in rules_of(policy, dir).iter().enumerate() {
            rules.extend(compile_rule(rs, input, policy, idx, rule, dir, pod));
        }
    }
    rules.push(
        Rule::new(vec![Expr::Counter, expr::verdict(Verdict::Drop)]).comment(format!(
            "{}/{} isolated for {}",
            pod.namespace,
            pod.name,
            match dir {
                Dir::Ingress => "ingress",
                Dir::Egress => "egress",
            }
        )),
    );
    rules
}

/// Compiles the NetworkPolicies that apply to this node's pods into the desired table.
/// Pure: same input, same ruleset.
pub fn compile(input: &PolicyInput) -> Ruleset {
    let mut rs = Ruleset::new(TABLE);
    rs.node_ips = input.node_ips.iter().copied().collect();
    let mut policies: Vec<&NetworkPolicy> = input.policies.iter().collect();
    // Deterministic rule order regardless of the order the informer delivered objects in.
    policies.sort_by_key(|p| policy_key(p));
    let mut seen: BTreeMap<Ipv4Addr, &PolicyPod> = BTreeMap::new();
    for pod in &input.pods {
        if !input
            .local_pods
            .contains(&(pod.namespace.clone(), pod.name.clone()))
        {
            continue;
        }
        if let Some(first) = seen.get(&pod.ip) {
            tracing::warn!(
                pod = %format!("{}/{}", pod.namespace, pod.name),
                other = %format!("{}/{}", first.namespace, first.name),
                ip = %pod.ip,
                "two local pods share an address; enforcing policy for the first only"
            );
            continue;
        }
        seen.insert(pod.ip, pod);
        let selecting: Vec<(&NetworkPolicy, super::PolicyTypes)> = policies
            .iter()
            .filter(|p| policy_selects(p, pod))
            .map(|p| (*p, policy_types(p)))
            .collect();
        for dir in [Dir::Ingress, Dir::Egress] {
            let isolating: Vec<&NetworkPolicy> = selecting
                .iter()
                .filter(|(_, t)| match dir {
                    Dir::Ingress => t.ingress,
                    Dir::Egress => t.egress,
                })
                .map(|(p, _)| *p)
                .collect();
            if isolating.is_empty() {
                continue;
            }
            let chain = dir.chain(pod.ip);
            let rules = pod_chain(&mut rs, input, &isolating, dir, pod);
            rs.chains.insert(chain.clone(), rules);
            match dir {
                Dir::Ingress => rs.ingress.insert(pod.ip, chain),
                Dir::Egress => rs.egress.insert(pod.ip, chain),
            };
        }
    }
    rs
}
