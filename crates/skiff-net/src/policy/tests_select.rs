//! Unit tests of policy meaning: selectors, policy types, peers, blocks, ports.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::json;

use super::select::*;
use super::*;

pub(super) fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub(super) fn pod(ns: &str, name: &str, ip: [u8; 4], l: &[(&str, &str)]) -> PolicyPod {
    PolicyPod {
        namespace: ns.into(),
        name: name.into(),
        ip: Ipv4Addr::from(ip),
        labels: labels(l),
        named_ports: Vec::new(),
        host_veth: None,
    }
}

/// A NetworkPolicy from its JSON spec.
pub(super) fn np(ns: &str, name: &str, spec: serde_json::Value) -> NetworkPolicy {
    serde_json::from_value(json!({
        "metadata": {"namespace": ns, "name": name},
        "spec": spec,
    }))
    .expect("valid NetworkPolicy")
}

fn sel(v: serde_json::Value) -> LabelSelector {
    serde_json::from_value(v).expect("valid selector")
}

fn peer(v: serde_json::Value) -> NetworkPolicyPeer {
    serde_json::from_value(v).expect("valid peer")
}

#[test]
fn selectors_follow_upstream_operators() {
    let l = labels(&[("app", "web"), ("tier", "front")]);
    assert!(selector_matches(&sel(json!({})), &l));
    assert!(selector_matches(
        &sel(json!({"matchLabels": {"app": "web"}})),
        &l
    ));
    assert!(!selector_matches(
        &sel(json!({"matchLabels": {"app": "db"}})),
        &l
    ));
    let expr = |op: &str, vals: &[&str]| {
        sel(json!({"matchExpressions": [{"key": "tier", "operator": op, "values": vals}]}))
    };
    assert!(selector_matches(&expr("In", &["front", "x"]), &l));
    assert!(!selector_matches(&expr("In", &["back"]), &l));
    assert!(!selector_matches(&expr("NotIn", &["front"]), &l));
    assert!(selector_matches(&expr("NotIn", &["back"]), &l));
    // NotIn matches when the key is absent.
    assert!(selector_matches(&expr("NotIn", &["front"]), &labels(&[])));
    assert!(selector_matches(&expr("Exists", &[]), &l));
    assert!(!selector_matches(&expr("DoesNotExist", &[]), &l));
    assert!(selector_matches(&expr("DoesNotExist", &[]), &labels(&[])));
    assert!(!selector_matches(&expr("Bogus", &["front"]), &l));
    // matchLabels and matchExpressions are ANDed.
    let both = sel(json!({"matchLabels": {"app": "web"},
        "matchExpressions": [{"key": "tier", "operator": "In", "values": ["back"]}]}));
    assert!(!selector_matches(&both, &l));
}

#[test]
fn policy_types_default_like_upstream() {
    let t = |spec| policy_types(&np("a", "p", spec));
    let only_in = PolicyTypes {
        ingress: true,
        egress: false,
    };
    assert_eq!(t(json!({})), only_in);
    assert_eq!(t(json!({"ingress": [{}]})), only_in);
    assert_eq!(t(json!({"egress": []})), only_in);
    assert_eq!(
        t(json!({"egress": [{}]})),
        PolicyTypes {
            ingress: true,
            egress: true
        }
    );
    assert_eq!(
        t(json!({"policyTypes": ["Egress"]})),
        PolicyTypes {
            ingress: false,
            egress: true
        }
    );
    assert_eq!(
        t(json!({"policyTypes": ["Ingress", "Egress"], "ingress": [{}]})),
        PolicyTypes {
            ingress: true,
            egress: true
        }
    );
}

#[test]
fn policy_selects_pods_of_its_namespace_only() {
    let p = np(
        "a",
        "p",
        json!({"podSelector": {"matchLabels": {"role": "db"}}}),
    );
    assert!(policy_selects(
        &p,
        &pod("a", "x", [10, 0, 0, 1], &[("role", "db")])
    ));
    assert!(!policy_selects(
        &p,
        &pod("b", "x", [10, 0, 0, 1], &[("role", "db")])
    ));
    assert!(!policy_selects(
        &p,
        &pod("a", "x", [10, 0, 0, 1], &[("role", "web")])
    ));
    let all = np("a", "all", json!({"podSelector": {}}));
    assert!(policy_selects(&all, &pod("a", "x", [10, 0, 0, 1], &[])));
}

fn cluster() -> PolicyInput {
    PolicyInput {
        pods: vec![
            pod("a", "fa", [10, 42, 0, 1], &[("role", "frontend")]),
            pod("a", "oa", [10, 42, 0, 2], &[("role", "other")]),
            pod("b", "fb", [10, 42, 1, 1], &[("role", "frontend")]),
            pod("c", "fc", [10, 42, 2, 1], &[("role", "frontend")]),
        ],
        namespaces: [("b".to_string(), labels(&[("team", "blue")]))].into(),
        ..PolicyInput::default()
    }
}

fn names(pods: Vec<&PolicyPod>) -> Vec<&str> {
    pods.iter().map(|p| p.name.as_str()).collect()
}

#[test]
fn peers_combine_pod_and_namespace_selectors() {
    let input = cluster();
    let pods_only = peer(json!({"podSelector": {"matchLabels": {"role": "frontend"}}}));
    assert_eq!(names(peer_pods(&input, "a", &pods_only)), ["fa"]);
    let ns_only = peer(json!({"namespaceSelector": {"matchLabels": {"team": "blue"}}}));
    assert_eq!(names(peer_pods(&input, "a", &ns_only)), ["fb"]);
    let every_ns = peer(json!({"namespaceSelector": {}}));
    assert_eq!(names(peer_pods(&input, "a", &every_ns)).len(), 4);
    let both = peer(json!({
        "namespaceSelector": {"matchExpressions": [
            {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["a", "c"]}]},
        "podSelector": {"matchLabels": {"role": "frontend"}},
    }));
    assert_eq!(names(peer_pods(&input, "b", &both)), ["fa", "fc"]);
    let block_only = peer(json!({"ipBlock": {"cidr": "10.42.0.0/16"}}));
    assert!(peer_pods(&input, "a", &block_only).is_empty());
}

#[test]
fn ip_blocks_parse_and_carve_exceptions() {
    let b = Block::from_peer(
        &peer(json!({"ipBlock": {"cidr": "10.0.0.7/8", "except": ["10.1.0.0/16", "junk"]}})),
        "t",
    )
    .expect("block");
    assert_eq!(b.cidr.addr, Ipv4Addr::new(10, 0, 0, 0));
    assert_eq!(b.except.len(), 1);
    assert!(b.contains(Ipv4Addr::new(10, 2, 3, 4)));
    assert!(!b.contains(Ipv4Addr::new(10, 1, 3, 4)));
    assert!(!b.contains(Ipv4Addr::new(11, 0, 0, 1)));
    assert!(Block::from_peer(&peer(json!({"ipBlock": {"cidr": "fd00::/8"}})), "t").is_none());
    assert_eq!(Cidr::parse("0.0.0.0/0").map(|c| c.len), Some(0));
    assert!(Cidr::parse("0.0.0.0/0").is_some_and(|c| c.contains(Ipv4Addr::new(1, 2, 3, 4))));
    assert!(Cidr::parse("1.2.3.4/33").is_none());
}

#[test]
fn ports_parse_with_upstream_defaults() {
    let port = |v| PortSpec::parse(&serde_json::from_value::<NetworkPolicyPort>(v).unwrap());
    assert_eq!(
        port(json!({"port": 80})),
        Some(PortSpec::Range(Protocol::Tcp, 80, 80))
    );
    assert_eq!(
        port(json!({"protocol": "UDP", "port": 53})),
        Some(PortSpec::Range(Protocol::Udp, 53, 53))
    );
    assert_eq!(
        port(json!({"port": 8000, "endPort": 8100})),
        Some(PortSpec::Range(Protocol::Tcp, 8000, 8100))
    );
    assert_eq!(
        port(json!({"protocol": "SCTP"})),
        Some(PortSpec::AnyPort(Protocol::Sctp))
    );
    assert_eq!(
        port(json!({"port": "http"})),
        Some(PortSpec::Named(Protocol::Tcp, "http".into()))
    );
    assert_eq!(port(json!({"protocol": "ICMP", "port": 1})), None);
    assert_eq!(port(json!({"port": 70000})), None);
}

#[test]
fn port_prefixes_cover_exactly_the_range() {
    for (lo, hi) in [
        (1, 1),
        (80, 80),
        (8000, 8100),
        (1, 65535),
        (1023, 1025),
        (0, 65535),
    ] {
        let pieces = port_prefixes(lo, hi);
        assert!(pieces.len() <= 32, "{lo}-{hi}: {} pieces", pieces.len());
        for p in 0..=u16::MAX {
            let hits = pieces.iter().filter(|(v, m)| p & m == *v).count();
            let want = usize::from(p >= lo && p <= hi);
            assert_eq!(hits, want, "port {p} in {lo}-{hi}");
        }
    }
}

#[test]
fn policy_pod_from_api_pod() {
    let p: Pod = serde_json::from_value(json!({
        "metadata": {"namespace": "a", "name": "web", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "ports": [
            {"name": "http", "containerPort": 8080},
            {"name": "dns", "containerPort": 53, "protocol": "UDP"},
            {"containerPort": 9000}]}]},
        "status": {"podIP": "10.42.0.9", "podIPs": [{"ip": "fd00::9"}, {"ip": "10.42.0.9"}]},
    }))
    .unwrap();
    let pp = PolicyPod::from_pod(&p, Some("veth1".into())).expect("has an IPv4 address");
    assert_eq!(pp.ip, Ipv4Addr::new(10, 42, 0, 9));
    assert_eq!(pp.labels, labels(&[("app", "web")]));
    assert_eq!(resolve_named(&pp, "http", Protocol::Tcp), Some(8080));
    assert_eq!(resolve_named(&pp, "dns", Protocol::Udp), Some(53));
    assert_eq!(resolve_named(&pp, "dns", Protocol::Tcp), None);
    let no_ip: Pod = serde_json::from_value(json!({"metadata": {"name": "x"}})).unwrap();
    assert!(PolicyPod::from_pod(&no_ip, None).is_none());
}
