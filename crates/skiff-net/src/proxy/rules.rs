//! Pure translation of a [`ProxyState`] into the desired content of the proxy's table.
//!
//! Layout (as upstream kube-proxy's nftables mode, with the no-endpoint check moved to
//! prerouting so that it answers even when no route to the service address exists):
//!
//! - `nat-prerouting` / `nat-output` (dstnat) jump `hostports` and `services`;
//! - `services` dispatches through the `service-ips` and (for local destinations)
//!   `service-nodeports` verdict maps to one chain per service port;
//! - `service-…` balances with `numgen random` over `endpoint-…` chains, which DNAT;
//! - `external-…` handles NodePort/LoadBalancer/externalIP traffic (masquerade, or the
//!   externalTrafficPolicy=Local short-circuits) before balancing;
//! - `filter-prerouting` / `filter-output` send new connections to services without usable
//!   endpoints, found in the `no-endpoint-*` maps, to `reject-chain` (or drop them);
//! - `nat-postrouting` masquerades marked packets and, optionally, pod egress.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::nft::expr;
use crate::nft::model::{datatype, key_addr_proto_port, key_proto_port, priority};
use crate::nft::{BaseChain, ChainType, Expr, Hook, Rule, Set, Verdict};

use super::{Endpoint, ProxyConfig, ProxyState, ServicePort};

pub(crate) const SERVICE_IPS: &str = "service-ips";
pub(crate) const SERVICE_NODEPORTS: &str = "service-nodeports";
pub(crate) const NO_EP_SERVICES: &str = "no-endpoint-services";
pub(crate) const NO_EP_NODEPORTS: &str = "no-endpoint-nodeports";
const MARK_CHAIN: &str = "mark-for-masquerade";
const REJECT_CHAIN: &str = "reject-chain";

/// A chain and its rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ChainSpec {
    pub base: Option<BaseChain>,
    pub rules: Vec<Rule>,
}

/// Desired table content; comparing two of these yields the incremental update.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Desired {
    pub chains: BTreeMap<String, ChainSpec>,
    pub sets: BTreeMap<String, Set>,
    /// Elements of every set/map, by set name (all sets appear, possibly empty).
    pub elems: BTreeMap<String, BTreeMap<Vec<u8>, Option<Verdict>>>,
}

impl Desired {
    fn chain(&mut self, name: &str, base: Option<BaseChain>, rules: Vec<Rule>) {
        self.chains
            .insert(name.to_string(), ChainSpec { base, rules });
    }

    fn set(&mut self, set: Set) {
        self.elems.entry(set.name.clone()).or_default();
        self.sets.insert(set.name.clone(), set);
    }

    fn elem(&mut self, set: &str, key: Vec<u8>, v: Verdict) {
        self.elems
            .entry(set.to_string())
            .or_default()
            .insert(key, Some(v));
    }
}

fn base(kind: ChainType, hook: Hook, priority: i32) -> Option<BaseChain> {
    Some(BaseChain {
        kind,
        hook,
        priority,
        accept_by_default: true,
    })
}

fn rule(parts: Vec<Vec<Expr>>) -> Rule {
    Rule::new(parts.into_iter().flatten().collect())
}

fn jump(c: &str) -> Vec<Expr> {
    vec![expr::verdict(Verdict::Jump(c.into()))]
}

fn goto(c: &str) -> Vec<Expr> {
    vec![expr::verdict(Verdict::Goto(c.into()))]
}

/// The part of every chain name that identifies a service port: `ns/name/proto/port`.
fn svc_id(s: &ServicePort) -> String {
    let port = if s.port_name.is_empty() {
        s.port.to_string()
    } else {
        s.port_name.clone()
    };
    format!(
        "{}/{}/{}/{}",
        s.namespace,
        s.name,
        s.protocol.as_str(),
        port
    )
}

fn endpoint_id(s: &ServicePort, e: &Endpoint) -> String {
    format!("{}__{}/{}", svc_id(s), e.ip, e.port)
}

/// Endpoints that may take new connections, as upstream picks them: ready ones, or when none is
/// ready, the ones still serving while terminating (so rolling updates do not drop traffic).
pub(crate) fn usable(eps: &[Endpoint], local_only: bool) -> Vec<&Endpoint> {
    let cand: Vec<&Endpoint> = eps.iter().filter(|e| !local_only || e.is_local).collect();
    let ready: Vec<&Endpoint> = cand.iter().copied().filter(|e| e.ready).collect();
    if !ready.is_empty() {
        return ready;
    }
    cand.into_iter()
        .filter(|e| e.serving && e.terminating)
        .collect()
}

/// Computes the whole desired table.
pub(crate) fn desired(cfg: &ProxyConfig, state: &ProxyState) -> Desired {
    let mut d = Desired::default();
    let mark = cfg.masquerade_mark;
    let cidr = cfg.cluster_cidr;

    d.chain(
        "nat-prerouting",
        base(ChainType::Nat, Hook::Prerouting, priority::DSTNAT),
        vec![rule(vec![jump("hostports")]), rule(vec![jump("services")])],
    );
    d.chain(
        "nat-output",
        base(ChainType::Nat, Hook::Output, priority::DSTNAT),
        vec![rule(vec![jump("hostports")]), rule(vec![jump("services")])],
    );
    let mut post = vec![rule(vec![jump("masquerading")])];
    if cfg.masquerade_cluster_egress {
        post.push(rule(vec![jump("cluster-egress")]));
        d.chain(
            "cluster-egress",
            None,
            vec![rule(vec![
                expr::saddr_in(cidr.addr, cidr.prefix),
                expr::daddr_not_in(cidr.addr, cidr.prefix),
                vec![Expr::Masquerade { fully_random: true }],
            ])
            .comment("pod traffic leaving the cluster network")],
        );
    }
    d.chain(
        "nat-postrouting",
        base(ChainType::Nat, Hook::Postrouting, priority::SRCNAT),
        post,
    );
    // Just before dstnat, so connections to services without endpoints are refused before any
    // routing decision (there may be no route to a service address at all).
    let check = vec![rule(vec![expr::ct_state_new(), jump("endpoints-check")])];
    d.chain(
        "filter-prerouting",
        base(ChainType::Filter, Hook::Prerouting, priority::DSTNAT - 10),
        check.clone(),
    );
    d.chain(
        "filter-output",
        base(ChainType::Filter, Hook::Output, priority::DSTNAT - 10),
        check,
    );
    d.chain(
        "endpoints-check",
        None,
        vec![
            rule(vec![expr::vmap_daddr_proto_dport(NO_EP_SERVICES)]),
            rule(vec![
                expr::fib_daddr_local(),
                expr::vmap_proto_dport(NO_EP_NODEPORTS),
            ]),
        ],
    );
    d.chain(
        "services",
        None,
        vec![
            rule(vec![expr::vmap_daddr_proto_dport(SERVICE_IPS)]),
            rule(vec![
                expr::fib_daddr_local(),
                expr::vmap_proto_dport(SERVICE_NODEPORTS),
            ]),
        ],
    );
    d.chain(MARK_CHAIN, None, vec![rule(vec![expr::mark_or(mark)])]);
    d.chain(
        "masquerading",
        None,
        vec![
            rule(vec![
                expr::mark_lacks(mark),
                vec![expr::verdict(Verdict::Return)],
            ]),
            rule(vec![expr::mark_xor(mark)]),
            rule(vec![vec![Expr::Masquerade { fully_random: true }]]),
        ],
    );
    d.chain(
        REJECT_CHAIN,
        None,
        vec![
            rule(vec![expr::reject_tcp_reset()]),
            rule(vec![expr::reject_icmp_port_unreachable()]),
        ],
    );

    let concat3 = datatype::concat(&[
        datatype::IPV4_ADDR,
        datatype::INET_PROTO,
        datatype::INET_SERVICE,
    ]);
    let concat2 = datatype::concat(&[datatype::INET_PROTO, datatype::INET_SERVICE]);
    for (name, key_type, key_len) in [
        (SERVICE_IPS, concat3, 12),
        (NO_EP_SERVICES, concat3, 12),
        (SERVICE_NODEPORTS, concat2, 8),
        (NO_EP_NODEPORTS, concat2, 8),
    ] {
        d.set(Set {
            name: name.into(),
            key_type,
            key_len,
            verdict_map: true,
            timeout: None,
        });
    }

    d.chain("hostports", None, host_port_rules(cfg, state));
    for s in &state.services {
        service(&mut d, cfg, s);
    }
    d
}

fn host_port_rules(cfg: &ProxyConfig, state: &ProxyState) -> Vec<Rule> {
    let mut rules = Vec::new();
    for h in &state.host_ports {
        let p = h.protocol.number();
        let mut m = match h.host_ip {
            Some(ip) => expr::daddr_is(ip),
            None => expr::fib_daddr_local(),
        };
        m.extend(expr::l4proto_is(p));
        m.extend(expr::dport_is(h.host_port));
        let what = format!(
            "hostport {}/{} -> {}:{}",
            h.protocol.as_str(),
            h.host_port,
            h.pod_ip,
            h.container_port
        );
        // Host-originated (including 127.0.0.1) and hairpin connections need SNAT so the pod's
        // reply comes back through this node's conntrack.
        rules.push(rule(vec![
            m.clone(),
            expr::fib_saddr_local(),
            expr::mark_or(cfg.masquerade_mark),
        ]));
        rules.push(rule(vec![
            m.clone(),
            expr::saddr_is(h.pod_ip),
            expr::mark_or(cfg.masquerade_mark),
        ]));
        rules.push(rule(vec![m, expr::dnat_to(p, h.pod_ip, h.container_port)]).comment(what));
    }
    rules
}

/// Affinity lookups (`ip saddr @affinity-X goto endpoint-X`) followed by the random choice.
fn balance(s: &ServicePort, eps: &[&Endpoint]) -> Vec<Rule> {
    let mut rules = Vec::new();
    if s.session_affinity_seconds.is_some() {
        for e in eps {
            let id = endpoint_id(s, e);
            rules.push(rule(vec![
                expr::saddr_in_set(&format!("affinity-{id}"), false),
                goto(&format!("endpoint-{id}")),
            ]));
        }
    }
    rules.push(rule(vec![expr::numgen_vmap(targets(s, eps))]));
    rules
}

fn service(d: &mut Desired, cfg: &ProxyConfig, s: &ServicePort) {
    let Some(cluster_ip) = s.cluster_ip else {
        return;
    };
    let id = svc_id(s);
    let p = s.protocol.number();
    let cidr = cfg.cluster_cidr;
    let all = usable(&s.endpoints, false);
    let local = usable(&s.endpoints, true);
    let internal = if s.internal_policy_local {
        local.clone()
    } else {
        all.clone()
    };
    let external = if s.external_policy_local {
        local.clone()
    } else {
        all.clone()
    };
    // No endpoints at all: refuse. Endpoints exist but none here and policy says Local: drop,
    // as upstream does, so clients time out rather than believe the service is down.
    let refuse = if all.is_empty() {
        Verdict::Goto(REJECT_CHAIN.into())
    } else {
        Verdict::Drop
    };

    for e in &all {
        let eid = endpoint_id(s, e);
        let mut rules = vec![rule(vec![expr::saddr_is(e.ip), jump(MARK_CHAIN)]).comment("hairpin")];
        if let Some(secs) = s.session_affinity_seconds {
            let set = format!("affinity-{eid}");
            d.set(Set {
                name: set.clone(),
                key_type: datatype::IPV4_ADDR,
                key_len: 4,
                verdict_map: false,
                timeout: Some(Duration::from_secs(secs.max(1).into())),
            });
            rules.push(rule(vec![expr::remember_saddr(&set)]));
        }
        rules.push(rule(vec![expr::dnat_to(p, e.ip, e.port)]));
        d.chain(&format!("endpoint-{eid}"), None, rules);
    }

    let svc_chain = format!("service-{id}");
    let key = key_addr_proto_port(cluster_ip, p, s.port);
    if internal.is_empty() {
        d.elem(NO_EP_SERVICES, key, refuse.clone());
    } else {
        let mut rules = vec![rule(vec![
            expr::daddr_is(cluster_ip),
            expr::dport_is(s.port),
            expr::saddr_not_in(cidr.addr, cidr.prefix),
            jump(MARK_CHAIN),
        ])
        .comment("traffic from outside the cluster network")];
        rules.extend(balance(s, &internal));
        d.chain(&svc_chain, None, rules);
        d.elem(SERVICE_IPS, key, Verdict::Goto(svc_chain.clone()));
    }

    let has_external =
        s.node_port.is_some() || !s.load_balancer_ips.is_empty() || !s.external_ips.is_empty();
    if !has_external {
        return;
    }
    let ext_chain = format!("external-{id}");
    let ext_ips = s.load_balancer_ips.iter().chain(&s.external_ips);
    if external.is_empty() {
        for ip in ext_ips {
            d.elem(
                NO_EP_SERVICES,
                key_addr_proto_port(*ip, p, s.port),
                refuse.clone(),
            );
        }
        if let Some(np) = s.node_port {
            d.elem(NO_EP_NODEPORTS, key_proto_port(p, np), refuse.clone());
        }
        return;
    }
    let mut rules = Vec::new();
    if s.external_policy_local {
        // Pods and the node itself may use any endpoint; only outside clients keep their
        // source address and are limited to local endpoints.
        rules.push(
            rule(vec![
                expr::saddr_in(cidr.addr, cidr.prefix),
                expr::numgen_vmap(targets(s, &all)),
            ])
            .comment("pod traffic uses all endpoints"),
        );
        rules.push(rule(vec![expr::fib_saddr_local(), jump(MARK_CHAIN)]));
        rules.push(
            rule(vec![
                expr::fib_saddr_local(),
                expr::numgen_vmap(targets(s, &all)),
            ])
            .comment("host traffic uses all endpoints"),
        );
        rules.extend(balance(s, &local));
    } else {
        rules.push(rule(vec![jump(MARK_CHAIN)]));
        rules.extend(balance(s, &all));
    }
    d.chain(&ext_chain, None, rules);
    for ip in ext_ips {
        d.elem(
            SERVICE_IPS,
            key_addr_proto_port(*ip, p, s.port),
            Verdict::Goto(ext_chain.clone()),
        );
    }
    if let Some(np) = s.node_port {
        d.elem(
            SERVICE_NODEPORTS,
            key_proto_port(p, np),
            Verdict::Goto(ext_chain.clone()),
        );
    }
}

fn targets(s: &ServicePort, eps: &[&Endpoint]) -> Vec<Verdict> {
    eps.iter()
        .map(|e| Verdict::Goto(format!("endpoint-{}", endpoint_id(s, e))))
        .collect()
}
