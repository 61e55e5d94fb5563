//! The meaning of a NetworkPolicy, independent of nftables: which pods a policy selects, for
//! which directions it isolates them, which peers and ports its rules name.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{PolicyInput, PolicyPod, Protocol};

/// The label every namespace carries with its own name (set by the API server).
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// True when `labels` satisfy `sel`: every `matchLabels` pair and every `matchExpressions`
/// requirement (ANDed). The empty selector matches everything; an unknown operator matches
/// nothing, so a malformed selector never widens what a policy allows.
pub fn selector_matches(sel: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_ok = sel
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    labels_ok
        && sel
            .match_expressions
            .iter()
            .flatten()
            .all(|r| requirement_matches(r, labels))
}

fn requirement_matches(req: &LabelSelectorRequirement, labels: &BTreeMap<String, String>) -> bool {
    let value = labels.get(&req.key);
    let listed = |v: &String| req.values.iter().flatten().any(|x| x == v);
    match req.operator.as_str() {
        "In" => value.is_some_and(listed),
        // Upstream: NotIn also matches when the key is absent.
        "NotIn" => !value.is_some_and(listed),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        _ => false,
    }
}

/// Directions a policy isolates its pods for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PolicyTypes {
    /// Selected pods accept only ingress that some policy allows.
    pub ingress: bool,
    /// Selected pods send only egress that some policy allows.
    pub egress: bool,
}

/// `spec.policyTypes`, or its upstream default when absent or empty: Ingress always, Egress
/// when the policy has egress rules.
pub fn policy_types(policy: &NetworkPolicy) -> PolicyTypes {
    let Some(spec) = policy.spec.as_ref() else {
        return PolicyTypes {
            ingress: true,
            egress: false,
        };
    };
    match spec.policy_types.as_deref() {
        Some(types) if !types.is_empty() => PolicyTypes {
            ingress: types.iter().any(|t| t == "Ingress"),
            egress: types.iter().any(|t| t == "Egress"),
        },
        _ => PolicyTypes {
            ingress: true,
            egress: spec.egress.as_ref().is_some_and(|e| !e.is_empty()),
        },
    }
}

/// Namespace of a policy object.
pub(crate) fn policy_namespace(policy: &NetworkPolicy) -> &str {
    policy.metadata.namespace.as_deref().unwrap_or("default")
}

/// `namespace/name` of a policy, for comments and logs.
pub(crate) fn policy_key(policy: &NetworkPolicy) -> String {
    format!(
        "{}/{}",
        policy_namespace(policy),
        policy.metadata.name.as_deref().unwrap_or("")
    )
}

/// True when `policy` applies to `pod`: same namespace, and the pod selector (absent = all
/// pods of the namespace) matches.
pub(crate) fn policy_selects(policy: &NetworkPolicy, pod: &PolicyPod) -> bool {
    if pod.namespace != policy_namespace(policy) {
        return false;
    }
    match policy.spec.as_ref().and_then(|s| s.pod_selector.as_ref()) {
        Some(sel) => selector_matches(sel, &pod.labels),
        None => true,
    }
}

/// Labels of a namespace, including the implied name label.
pub(crate) fn namespace_labels(input: &PolicyInput, ns: &str) -> BTreeMap<String, String> {
    let mut labels = input.namespaces.get(ns).cloned().unwrap_or_default();
    labels
        .entry(NAMESPACE_NAME_LABEL.into())
        .or_insert_with(|| ns.into());
    labels
}

/// True when the peer names pods (rather than only an IP block).
pub(crate) fn peer_selects_pods(peer: &NetworkPolicyPeer) -> bool {
    peer.pod_selector.is_some() || peer.namespace_selector.is_some()
}

/// Pods a peer names through its selectors: `podSelector` alone means pods of the policy's
/// namespace, `namespaceSelector` alone all pods of matching namespaces, both together the
/// matching pods of matching namespaces. An IP-block-only peer names no pods here.
pub(crate) fn peer_pods<'a>(
    input: &'a PolicyInput,
    policy_ns: &str,
    peer: &NetworkPolicyPeer,
) -> Vec<&'a PolicyPod> {
    if !peer_selects_pods(peer) {
        return Vec::new();
    }
    let mut ns_match: BTreeMap<&str, bool> = BTreeMap::new();
    input
        .pods
        .iter()
        .filter(|pod| {
            let ns_ok = match &peer.namespace_selector {
                Some(sel) => *ns_match.entry(&pod.namespace).or_insert_with(|| {
                    selector_matches(sel, &namespace_labels(input, &pod.namespace))
                }),
                None => pod.namespace == policy_ns,
            };
            ns_ok
                && peer
                    .pod_selector
                    .as_ref()
                    .is_none_or(|sel| selector_matches(sel, &pod.labels))
        })
        .collect()
}

/// An IPv4 prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Cidr {
    /// Network address (host bits cleared).
    pub addr: Ipv4Addr,
    /// Prefix length, 0-32.
    pub len: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n` (or a bare address as /32); IPv6 and malformed text give `None`.
    pub fn parse(s: &str) -> Option<Cidr> {
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a.parse::<Ipv4Addr>().ok()?, l.parse::<u8>().ok()?),
            None => (s.parse::<Ipv4Addr>().ok()?, 32),
        };
        if len > 32 {
            return None;
        }
        Some(Cidr {
            addr: Ipv4Addr::from(u32::from(addr) & Self::mask(len)),
            len,
        })
    }

    /// The netmask as a number.
    pub fn mask(len: u8) -> u32 {
        if len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(len))
        }
    }

    /// True when `ip` is inside the prefix.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & Self::mask(self.len) == u32::from(self.addr)
    }
}

/// An `ipBlock`: a prefix minus exceptions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Block {
    /// The allowed prefix.
    pub cidr: Cidr,
    /// Prefixes carved out of it.
    pub except: Vec<Cidr>,
}

impl Block {
    /// The peer's IPv4 block; `None` when it has none or it cannot match IPv4 traffic (an
    /// IPv6 or malformed CIDR). Malformed exceptions are dropped with a warning, which can
    /// only happen for objects that bypassed API validation.
    pub fn from_peer(peer: &NetworkPolicyPeer, policy: &str) -> Option<Block> {
        let b = peer.ip_block.as_ref()?;
        let Some(cidr) = Cidr::parse(&b.cidr) else {
            if !b.cidr.contains(':') {
                tracing::warn!(policy, cidr = %b.cidr, "ignoring malformed ipBlock");
            }
            return None;
        };
        let except = b
            .except
            .iter()
            .flatten()
            .filter_map(|e| {
                let c = Cidr::parse(e);
                if c.is_none() {
                    tracing::warn!(policy, except = %e, "ignoring malformed ipBlock exception");
                }
                c
            })
            .collect();
        Some(Block { cidr, except })
    }

    /// True when `ip` is in the block and in none of its exceptions.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        self.cidr.contains(ip) && !self.except.iter().any(|e| e.contains(ip))
    }
}

/// One entry of a rule's `ports`, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PortSpec {
    /// Every port of a protocol (`port` absent).
    AnyPort(Protocol),
    /// `port` through `endPort` (equal when there is no `endPort`).
    Range(Protocol, u16, u16),
    /// A named container port, resolved per destination pod.
    Named(Protocol, String),
}

impl PortSpec {
    /// Parses one entry; `None` when it can match nothing (unknown protocol, port 0 or out of
    /// range), so that it does not turn into "any port".
    pub fn parse(p: &NetworkPolicyPort) -> Option<PortSpec> {
        let proto = Protocol::parse(p.protocol.as_deref())?;
        match &p.port {
            None => Some(PortSpec::AnyPort(proto)),
            Some(IntOrString::Int(n)) => {
                let lo = u16::try_from(*n).ok().filter(|&n| n > 0)?;
                // An endPort below port fails API validation; treat it as a single port.
                let hi = p
                    .end_port
                    .and_then(|e| u16::try_from(e).ok())
                    .filter(|&e| e >= lo)
                    .unwrap_or(lo);
                Some(PortSpec::Range(proto, lo, hi))
            }
            Some(IntOrString::String(name)) => Some(PortSpec::Named(proto, name.clone())),
        }
    }
}

/// The number of `pod`'s container port called `name` with protocol `proto`.
pub(crate) fn resolve_named(pod: &PolicyPod, name: &str, proto: Protocol) -> Option<u16> {
    pod.named_ports
        .iter()
        .find(|p| p.name == name && p.protocol == proto)
        .map(|p| p.port)
}

/// Splits `lo..=hi` into `(value, mask)` pairs such that a port is in the range exactly when
/// `port & mask == value` for one pair; this is how a range becomes plain `cmp` expressions,
/// which the nft model offers (it has no range or ordered comparison). At most 30 pairs.
pub(crate) fn port_prefixes(lo: u16, hi: u16) -> Vec<(u16, u16)> {
    let (mut lo, hi) = (u32::from(lo), u32::from(hi));
    let mut out = Vec::new();
    while lo <= hi {
        // The largest aligned power-of-two block starting at lo that stays within hi.
        let mut bits = lo.trailing_zeros().min(16);
        while lo + (1 << bits) - 1 > hi {
            bits -= 1;
        }
        out.push((lo as u16, !((1u32 << bits) - 1) as u16));
        lo += 1 << bits;
    }
    out
}
