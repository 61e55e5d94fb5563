//! Unit tests of the compiled model: a small interpreter runs new connections through the
//! pod chains the way the kernel would, and the enforcer's transactions are checked through
//! [`RecordingBackend`].

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use serde_json::json;

use super::ruleset::{EGRESS_MAP, INGRESS_MAP};
use super::tests_select::{np, pod};
use super::*;
use crate::nft::model::{key_addr_proto_port, CmpOp, MetaKey, PayloadBase};
use crate::nft::{Expr, Op, RecordingBackend, Rule, Verdict};

/// Outcome of running a packet through one chain.
enum Exit {
    Verdict(Verdict),
    FellOff,
}

/// The first packet of a connection, as far as the rules look at it.
#[derive(Clone, Copy)]
struct Pkt {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: Protocol,
    dport: u16,
}

/// Runs the expressions skiff generates (payload, meta l4proto, bitwise, cmp, lookup,
/// verdict, counter); panics on anything else so that new expressions get interpreted.
fn run_chain(rs: &Ruleset, rules: &[Rule], p: Pkt) -> Exit {
    'rules: for rule in rules {
        let mut regs = [0u8; 64];
        let at = |r: crate::nft::Reg| {
            if r.0 >= 8 {
                (r.0 as usize - 8) * 4
            } else {
                (r.0 as usize - 1) * 16
            }
        };
        for e in &rule.exprs {
            match e {
                Expr::Payload {
                    base,
                    offset,
                    len,
                    dreg,
                } => {
                    let bytes: Vec<u8> = match (base, offset) {
                        (PayloadBase::Network, 12) => p.src.octets().to_vec(),
                        (PayloadBase::Network, 16) => p.dst.octets().to_vec(),
                        (PayloadBase::Transport, 2) => p.dport.to_be_bytes().to_vec(),
                        other => panic!("unexpected payload {other:?}"),
                    };
                    assert_eq!(bytes.len(), *len as usize);
                    let o = at(*dreg);
                    regs[o..o + 4].fill(0);
                    regs[o..o + bytes.len()].copy_from_slice(&bytes);
                }
                Expr::Meta {
                    key: MetaKey::L4Proto,
                    dreg,
                } => {
                    let o = at(*dreg);
                    regs[o..o + 4].copy_from_slice(&[p.proto.number(), 0, 0, 0]);
                }
                Expr::Bitwise {
                    sreg, dreg, mask, ..
                } => {
                    let (s, d) = (at(*sreg), at(*dreg));
                    for (i, m) in mask.iter().enumerate() {
                        regs[d + i] = regs[s + i] & m;
                    }
                }
                Expr::Cmp { sreg, op, data } => {
                    let o = at(*sreg);
                    let eq = regs[o..o + data.len()] == data[..];
                    if eq != (*op == CmpOp::Eq) {
                        continue 'rules;
                    }
                }
                Expr::Lookup {
                    set,
                    sreg,
                    dreg: None,
                    invert: false,
                } => {
                    let o = at(*sreg);
                    let hit = if let Some(ips) = rs.addr_sets.get(set) {
                        ips.iter().any(|ip| regs[o..o + 4] == ip.octets())
                    } else if let Some(keys) = rs.port_sets.get(set) {
                        keys.iter().any(|(ip, pr, port)| {
                            regs[o..o + 12] == key_addr_proto_port(*ip, pr.number(), *port)[..]
                        })
                    } else {
                        panic!("lookup in unknown set {set}")
                    };
                    if !hit {
                        continue 'rules;
                    }
                }
                Expr::Counter => {}
                Expr::Verdict(v) => return Exit::Verdict(v.clone()),
                other => panic!("unexpected expression {other:?}"),
            }
        }
    }
    Exit::FellOff
}

/// Whether the forward chain lets a new connection through.
fn allowed(rs: &Ruleset, p: Pkt) -> bool {
    if let Some(chain) = rs.egress.get(&p.src) {
        match run_chain(rs, &rs.chains[chain], p) {
            Exit::Verdict(Verdict::Return) => {}
            Exit::Verdict(Verdict::Drop) => return false,
            Exit::Verdict(v) => panic!("egress chain gave {v:?}"),
            Exit::FellOff => panic!("egress chain {chain} has no final verdict"),
        }
    }
    if let Some(chain) = rs.ingress.get(&p.dst) {
        return match run_chain(rs, &rs.chains[chain], p) {
            Exit::Verdict(Verdict::Accept) => true,
            Exit::Verdict(Verdict::Drop) => false,
            Exit::Verdict(v) => panic!("ingress chain gave {v:?}"),
            Exit::FellOff => panic!("ingress chain {chain} has no final verdict"),
        };
    }
    true
}

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 42, 0, last)
}

fn tcp(src: Ipv4Addr, dst: Ipv4Addr, dport: u16) -> Pkt {
    Pkt {
        src,
        dst,
        proto: Protocol::Tcp,
        dport,
    }
}

/// Namespace `app`: frontend .1, backend .2 (local, named port http=8080), other .3; namespace
/// `mon`: prom .4 (remote). Local pods: frontend and backend.
fn input(policies: Vec<k8s_openapi::api::networking::v1::NetworkPolicy>) -> PolicyInput {
    let mut backend = pod("app", "backend", [10, 42, 0, 2], &[("role", "backend")]);
    backend.named_ports.push(NamedPort {
        name: "http".into(),
        protocol: Protocol::Tcp,
        port: 8080,
    });
    PolicyInput {
        pods: vec![
            pod("app", "frontend", [10, 42, 0, 1], &[("role", "frontend")]),
            backend,
            pod("app", "other", [10, 42, 0, 3], &[("role", "other")]),
            pod("mon", "prom", [10, 42, 0, 4], &[("role", "prom")]),
        ],
        namespaces: [(
            "mon".to_string(),
            [("purpose".to_string(), "monitoring".to_string())].into(),
        )]
        .into(),
        policies,
        local_pods: [("app", "frontend"), ("app", "backend")]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
        node_ips: vec![Ipv4Addr::new(192, 168, 1, 10)],
    }
}

fn backend_only(extra: serde_json::Value) -> serde_json::Value {
    let mut spec = json!({"podSelector": {"matchLabels": {"role": "backend"}}});
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    spec
}

#[test]
fn no_policy_means_no_isolation() {
    let rs = compile(&input(vec![]));
    assert!(rs.chains.is_empty() && rs.ingress.is_empty() && rs.egress.is_empty());
    assert!(allowed(&rs, tcp(ip(3), ip(2), 8080)));
    assert_eq!(rs.node_ips.len(), 1);
}

#[test]
fn deny_all_ingress_isolates_only_selected_local_pods() {
    let rs = compile(&input(vec![np("app", "deny", backend_only(json!({}))), {
        // Selects `other`, which is not on this node: nothing to enforce here.
        np(
            "app",
            "deny-other",
            json!({"podSelector": {"matchLabels": {"role": "other"}}}),
        )
    }]));
    assert_eq!(rs.ingress.keys().collect::<Vec<_>>(), [&ip(2)]);
    assert!(rs.egress.is_empty());
    assert!(!allowed(&rs, tcp(ip(1), ip(2), 8080)));
    assert!(!allowed(&rs, tcp(ip(3), ip(2), 9090)));
    // A pod can always reach itself; egress of the isolated pod is untouched.
    assert!(allowed(&rs, tcp(ip(2), ip(2), 8080)));
    assert!(allowed(&rs, tcp(ip(2), ip(1), 80)));
    assert!(allowed(&rs, tcp(ip(1), ip(3), 80)));
}

#[test]
fn allow_rules_union_over_policies_and_peers() {
    let from_frontend = np(
        "app",
        "from-frontend",
        backend_only(json!({"ingress": [{"from": [
            {"podSelector": {"matchLabels": {"role": "frontend"}}}],
            "ports": [{"port": "http"}]}]})),
    );
    let from_monitoring = np(
        "app",
        "from-monitoring",
        backend_only(json!({"ingress": [{"from": [
            {"namespaceSelector": {"matchLabels": {"purpose": "monitoring"}}}],
            "ports": [{"port": 9000, "endPort": 9100}]}]})),
    );
    let rs = compile(&input(vec![from_frontend, from_monitoring]));
    assert_eq!(
        rs.addr_sets["in_app_from-frontend_0"],
        BTreeSet::from([ip(1)])
    );
    assert_eq!(
        rs.addr_sets["in_app_from-monitoring_0"],
        BTreeSet::from([ip(4)])
    );
    assert!(allowed(&rs, tcp(ip(1), ip(2), 8080)));
    assert!(!allowed(&rs, tcp(ip(1), ip(2), 8081)));
    assert!(!allowed(&rs, tcp(ip(3), ip(2), 8080)));
    assert!(allowed(&rs, tcp(ip(4), ip(2), 9000)));
    assert!(allowed(&rs, tcp(ip(4), ip(2), 9077)));
    assert!(allowed(&rs, tcp(ip(4), ip(2), 9100)));
    assert!(!allowed(&rs, tcp(ip(4), ip(2), 9101)));
    assert!(!allowed(&rs, tcp(ip(4), ip(2), 8080)));
    let udp = Pkt {
        proto: Protocol::Udp,
        ..tcp(ip(1), ip(2), 8080)
    };
    assert!(!allowed(&rs, udp), "named port http is TCP");
}

#[test]
fn unresolvable_named_port_allows_nothing() {
    let rs = compile(&input(vec![np(
        "app",
        "p",
        backend_only(json!({"ingress": [{"ports": [{"port": "metrics"}]}]})),
    )]));
    for port in [80, 8080, 9090] {
        assert!(!allowed(&rs, tcp(ip(1), ip(2), port)));
    }
    let bad_proto = compile(&input(vec![np(
        "app",
        "p",
        backend_only(json!({"ingress": [{"ports": [{"protocol": "ICMP"}]}]})),
    )]));
    assert!(!allowed(&bad_proto, tcp(ip(1), ip(2), 80)));
}

#[test]
fn empty_from_and_ports_allow_everything() {
    let rs = compile(&input(vec![np(
        "app",
        "all",
        backend_only(json!({"ingress": [{}]})),
    )]));
    assert!(allowed(&rs, tcp(Ipv4Addr::new(8, 8, 8, 8), ip(2), 1)));
    assert!(allowed(&rs, tcp(ip(3), ip(2), 65535)));
}

#[test]
fn egress_ip_blocks_with_exceptions_and_named_ports() {
    let egress = np(
        "app",
        "egress",
        json!({
            "podSelector": {"matchLabels": {"role": "frontend"}},
            "policyTypes": ["Egress"],
            "egress": [
                {"to": [{"ipBlock": {"cidr": "192.168.0.0/16", "except": ["192.168.5.0/24"]}}]},
                {"to": [{"podSelector": {"matchLabels": {"role": "backend"}}}],
                 "ports": [{"port": "http"}]},
                {"ports": [{"protocol": "UDP", "port": 53}]},
            ],
        }),
    );
    let rs = compile(&input(vec![egress]));
    assert_eq!(rs.egress.keys().collect::<Vec<_>>(), [&ip(1)]);
    assert!(rs.ingress.is_empty());
    let f = ip(1);
    assert!(allowed(&rs, tcp(f, Ipv4Addr::new(192, 168, 77, 2), 8080)));
    assert!(!allowed(&rs, tcp(f, Ipv4Addr::new(192, 168, 5, 2), 8080)));
    assert!(!allowed(&rs, tcp(f, Ipv4Addr::new(10, 1, 1, 1), 8080)));
    assert_eq!(
        rs.port_sets["outport_app_egress_1"],
        BTreeSet::from([(ip(2), Protocol::Tcp, 8080)])
    );
    assert!(allowed(&rs, tcp(f, ip(2), 8080)));
    assert!(!allowed(&rs, tcp(f, ip(2), 9090)));
    assert!(!allowed(&rs, tcp(f, ip(3), 8080)));
    // DNS anywhere, e.g. the cluster DNS address.
    let dns = Pkt {
        proto: Protocol::Udp,
        ..tcp(f, Ipv4Addr::new(10, 43, 0, 10), 53)
    };
    assert!(allowed(&rs, dns));
    assert!(!allowed(&rs, tcp(f, Ipv4Addr::new(10, 43, 0, 10), 53)));
}

#[test]
fn both_directions_must_allow_between_local_pods() {
    let deny_egress = np(
        "app",
        "deny-egress",
        json!({"podSelector": {"matchLabels": {"role": "frontend"}}, "policyTypes": ["Egress"]}),
    );
    let allow_in = np(
        "app",
        "allow-in",
        backend_only(json!({"ingress": [{"from": [{"podSelector": {}}]}]})),
    );
    let rs = compile(&input(vec![deny_egress.clone(), allow_in.clone()]));
    assert!(
        !allowed(&rs, tcp(ip(1), ip(2), 8080)),
        "egress of frontend denies"
    );
    assert!(allowed(&rs, tcp(ip(3), ip(2), 8080)));
    let allow_out = np(
        "app",
        "allow-out",
        json!({"podSelector": {"matchLabels": {"role": "frontend"}},
               "egress": [{"to": [{"podSelector": {"matchLabels": {"role": "backend"}}}]}]}),
    );
    let rs = compile(&input(vec![deny_egress, allow_in, allow_out]));
    assert!(allowed(&rs, tcp(ip(1), ip(2), 8080)));
    assert!(!allowed(&rs, tcp(ip(1), ip(3), 8080)));
    // allow-out defaults to Ingress too and has no ingress rules: frontend is isolated.
    assert!(!allowed(&rs, tcp(ip(3), ip(1), 8080)));
}

fn ops(tx: &crate::nft::Transaction) -> Vec<String> {
    tx.ops
        .iter()
        .map(|op| match op {
            Op::AddTable => "add table".to_string(),
            Op::DeleteTable => "delete table".to_string(),
            Op::AddChain(c) => format!("add chain {}", c.name),
            Op::FlushChain(c) => format!("flush chain {c}"),
            Op::DeleteChain(c) => format!("delete chain {c}"),
            Op::AddRule { chain, .. } => format!("add rule {chain}"),
            Op::AddSet(s) => format!("add set {}", s.name),
            Op::DeleteSet(s) => format!("delete set {s}"),
            Op::AddElems { set, elems } => format!("add {} to {set}", elems.len()),
            Op::DeleteElems { set, elems } => format!("delete {} from {set}", elems.len()),
        })
        .collect()
}

#[test]
fn enforcer_writes_whole_table_then_small_updates() {
    let rec = RecordingBackend::default();
    let mut enf = PolicyEnforcer::new(rec.clone());
    let from_frontend = np(
        "app",
        "from-frontend",
        backend_only(json!({"ingress": [{"from": [
            {"podSelector": {"matchLabels": {"role": "frontend"}}}]}]})),
    );
    let mut inp = input(vec![from_frontend]);
    let s = enf.sync(&inp).unwrap();
    assert!(s.full);
    assert_eq!((s.ingress_isolated, s.egress_isolated), (1, 0));
    let first = ops(&rec.applied.lock().unwrap()[0]);
    assert_eq!(first[..3], ["add table", "delete table", "add table"]);
    assert!(first.contains(&"add 1 to in_app_from-frontend_0".to_string()));
    assert!(first.contains(&format!("add 1 to {INGRESS_MAP}")));
    assert!(first.ends_with(&["add rule input".to_string()]));

    // Nothing changed: no transaction at all.
    let s = enf.sync(&inp).unwrap();
    assert_eq!((s.full, s.ops), (false, 0));
    assert_eq!(rec.applied.lock().unwrap().len(), 1);

    // A pod becomes a frontend: one element, no rule touched.
    inp.pods[2].labels.insert("role".into(), "frontend".into());
    enf.sync(&inp).unwrap();
    assert_eq!(
        ops(&rec.applied.lock().unwrap()[1]),
        ["add 1 to in_app_from-frontend_0"]
    );

    // The frontend (a local pod) is isolated for egress: a new chain and a map element.
    inp.policies.push(np(
        "app",
        "deny-egress",
        json!({"podSelector": {"matchLabels": {"role": "frontend"}}, "policyTypes": ["Egress"]}),
    ));
    enf.sync(&inp).unwrap();
    assert_eq!(
        ops(&rec.applied.lock().unwrap()[2]),
        [
            "add chain egress-10.42.0.1",
            "add rule egress-10.42.0.1",
            "add rule egress-10.42.0.1",
            &format!("add 1 to {EGRESS_MAP}"),
        ]
    );

    // Everything removed: elements out of the maps before chains and sets go.
    inp.policies.clear();
    enf.sync(&inp).unwrap();
    assert_eq!(
        ops(&rec.applied.lock().unwrap()[3]),
        [
            &format!("delete 1 from {INGRESS_MAP}"),
            &format!("delete 1 from {EGRESS_MAP}"),
            "flush chain egress-10.42.0.1",
            "delete chain egress-10.42.0.1",
            "flush chain ingress-10.42.0.2",
            "delete chain ingress-10.42.0.2",
            "delete set in_app_from-frontend_0",
        ]
    );
    enf.cleanup().unwrap();
    assert_eq!(
        ops(rec.applied.lock().unwrap().last().unwrap()),
        ["add table", "delete table"]
    );
}

/// Records transactions, or fails them while `fail` is set.
#[derive(Clone, Default)]
struct Flaky {
    fail: std::sync::Arc<std::sync::atomic::AtomicBool>,
    rec: RecordingBackend,
}

impl crate::nft::Backend for Flaky {
    fn apply(&mut self, tx: &crate::nft::Transaction) -> Result<(), crate::nft::Error> {
        if self.fail.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(crate::nft::Error::Timeout);
        }
        self.rec.apply(tx)
    }
    fn enable_route_localnet(&mut self) -> Result<(), crate::nft::Error> {
        Ok(())
    }
}

#[test]
fn failed_sync_reports_and_forces_a_full_rewrite() {
    let flaky = Flaky::default();
    let mut enf = PolicyEnforcer::new(flaky.clone());
    assert!(enf.sync(&input(vec![])).unwrap().full);
    flaky.fail.store(true, std::sync::atomic::Ordering::Relaxed);
    let deny = np("app", "deny", backend_only(json!({})));
    let err = enf.sync(&input(vec![deny.clone()])).unwrap_err();
    assert!(err.to_string().contains("network policy table"), "{err}");
    flaky
        .fail
        .store(false, std::sync::atomic::Ordering::Relaxed);
    let s = enf.sync(&input(vec![deny])).unwrap();
    assert!(
        s.full,
        "state after a failure is unknown, so the table is rewritten"
    );
    assert_eq!(flaky.rec.applied.lock().unwrap().len(), 2);
}
