//! Unit tests (no I/O): the generated table model, incremental diffs, and `build_state`.

use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::rules::{
    self, desired, NO_EP_NODEPORTS, NO_EP_SERVICES, SERVICE_IPS, SERVICE_NODEPORTS,
};
use super::*;
use crate::nft::expr::proto::TCP;
use crate::nft::model::{key_addr_proto_port, key_proto_port};
use crate::nft::{Expr, Op, RecordingBackend, Verdict};

pub(crate) fn ep(last: u8, ready: bool, local: bool) -> Endpoint {
    Endpoint {
        ip: Ipv4Addr::new(10, 42, 0, last),
        port: 8080,
        ready,
        serving: ready,
        terminating: false,
        is_local: local,
    }
}

pub(crate) fn svc(name: &str, ip: Ipv4Addr, eps: Vec<Endpoint>) -> ServicePort {
    ServicePort {
        namespace: "default".into(),
        name: name.into(),
        port_name: "http".into(),
        protocol: Protocol::Tcp,
        cluster_ip: Some(ip),
        port: 80,
        node_port: None,
        load_balancer_ips: vec![],
        external_ips: vec![],
        session_affinity_seconds: None,
        external_policy_local: false,
        internal_policy_local: false,
        endpoints: eps,
    }
}

const CIP: Ipv4Addr = Ipv4Addr::new(10, 43, 0, 20);

fn elem(d: &rules::Desired, set: &str, key: Vec<u8>) -> Option<Verdict> {
    d.elems[set].get(&key).cloned().flatten()
}

fn gotos(d: &rules::Desired, chain: &str) -> Vec<String> {
    let mut out = Vec::new();
    for r in &d.chains[chain].rules {
        for e in &r.exprs {
            if let Expr::Vmap { elems, .. } = e {
                out.extend(
                    elems
                        .iter()
                        .filter_map(|(_, v)| v.chain().map(String::from)),
                );
            }
        }
    }
    out
}

#[test]
fn cluster_ip_balances_over_ready_endpoints() {
    let cfg = ProxyConfig::default();
    let state = ProxyState {
        services: vec![svc(
            "web",
            CIP,
            vec![
                ep(10, true, false),
                ep(11, true, true),
                ep(12, false, false),
            ],
        )],
        host_ports: vec![],
    };
    let d = desired(&cfg, &state);
    let chain = "service-default/web/tcp/http";
    assert_eq!(
        elem(&d, SERVICE_IPS, key_addr_proto_port(CIP, TCP, 80)),
        Some(Verdict::Goto(chain.into()))
    );
    assert_eq!(
        gotos(&d, chain),
        vec![
            "endpoint-default/web/tcp/http__10.42.0.10/8080",
            "endpoint-default/web/tcp/http__10.42.0.11/8080"
        ]
    );
    let ep_chain = &d.chains["endpoint-default/web/tcp/http__10.42.0.10/8080"];
    assert!(ep_chain
        .rules
        .last()
        .unwrap()
        .exprs
        .iter()
        .any(|e| matches!(e, Expr::Nat { .. })));
    assert!(
        !d.chains
            .contains_key("endpoint-default/web/tcp/http__10.42.0.12/8080"),
        "unready endpoint must not get a chain"
    );
    assert!(d.elems[NO_EP_SERVICES].is_empty());
}

#[test]
fn terminating_endpoints_are_a_fallback_only() {
    let mut term = ep(13, false, false);
    term.serving = true;
    term.terminating = true;
    assert_eq!(
        rules::usable(&[ep(10, true, false), term.clone()], false).len(),
        1
    );
    assert_eq!(
        rules::usable(&[ep(10, false, false), term.clone()], false),
        vec![&term]
    );
    assert!(rules::usable(&[ep(10, false, false)], false).is_empty());
}

#[test]
fn service_without_endpoints_is_rejected() {
    let cfg = ProxyConfig::default();
    let mut s = svc("empty", CIP, vec![ep(10, false, false)]);
    s.node_port = Some(30080);
    let d = desired(
        &cfg,
        &ProxyState {
            services: vec![s],
            host_ports: vec![],
        },
    );
    assert_eq!(
        elem(&d, NO_EP_SERVICES, key_addr_proto_port(CIP, TCP, 80)),
        Some(Verdict::Goto("reject-chain".into()))
    );
    assert_eq!(
        elem(&d, NO_EP_NODEPORTS, key_proto_port(TCP, 30080)),
        Some(Verdict::Goto("reject-chain".into()))
    );
    assert!(d.elems[SERVICE_IPS].is_empty());
    assert!(!d.chains.keys().any(|c| c.starts_with("service-")));
}

#[test]
fn external_local_policy_uses_local_endpoints_and_drops_without_them() {
    let cfg = ProxyConfig::default();
    let mut s = svc("lb", CIP, vec![ep(10, true, false), ep(11, true, true)]);
    s.node_port = Some(30081);
    s.load_balancer_ips = vec![Ipv4Addr::new(192, 168, 5, 1)];
    s.external_policy_local = true;
    let d = desired(
        &cfg,
        &ProxyState {
            services: vec![s.clone()],
            host_ports: vec![],
        },
    );
    let ext = "external-default/lb/tcp/http";
    assert_eq!(
        elem(&d, SERVICE_NODEPORTS, key_proto_port(TCP, 30081)),
        Some(Verdict::Goto(ext.into()))
    );
    assert_eq!(
        elem(
            &d,
            SERVICE_IPS,
            key_addr_proto_port(Ipv4Addr::new(192, 168, 5, 1), TCP, 80)
        ),
        Some(Verdict::Goto(ext.into()))
    );
    // Pods and host get both endpoints, outside clients only the local one; no blanket masquerade.
    let last = d.chains[ext].rules.last().unwrap();
    let local_only: Vec<_> = last
        .exprs
        .iter()
        .filter_map(|e| {
            if let Expr::Vmap { elems, .. } = e {
                Some(elems.len())
            } else {
                None
            }
        })
        .collect();
    assert_eq!(local_only, vec![1]);
    assert!(!d.chains[ext]
        .rules
        .iter()
        .any(|r| r.exprs == vec![Expr::Verdict(Verdict::Jump("mark-for-masquerade".into()))]));

    s.endpoints = vec![ep(10, true, false)];
    let d = desired(
        &cfg,
        &ProxyState {
            services: vec![s],
            host_ports: vec![],
        },
    );
    assert_eq!(
        elem(&d, NO_EP_NODEPORTS, key_proto_port(TCP, 30081)),
        Some(Verdict::Drop)
    );
    assert!(
        elem(&d, SERVICE_IPS, key_addr_proto_port(CIP, TCP, 80)).is_some(),
        "cluster traffic still served"
    );
}

#[test]
fn session_affinity_adds_sets_and_lookups() {
    let cfg = ProxyConfig::default();
    let mut s = svc(
        "sticky",
        CIP,
        vec![ep(10, true, false), ep(11, true, false)],
    );
    s.session_affinity_seconds = Some(30);
    let d = desired(
        &cfg,
        &ProxyState {
            services: vec![s],
            host_ports: vec![],
        },
    );
    let set = "affinity-default/sticky/tcp/http__10.42.0.10/8080";
    assert_eq!(
        d.sets[set].timeout,
        Some(std::time::Duration::from_secs(30))
    );
    let svc_rules = &d.chains["service-default/sticky/tcp/http"].rules;
    assert!(svc_rules.iter().any(|r| r
        .exprs
        .iter()
        .any(|e| matches!(e, Expr::Lookup { set: s, .. } if s == set))));
    let ep_rules = &d.chains["endpoint-default/sticky/tcp/http__10.42.0.10/8080"].rules;
    assert!(ep_rules.iter().any(|r| r
        .exprs
        .iter()
        .any(|e| matches!(e, Expr::DynsetUpdate { set: s, .. } if s == set))));
}

#[test]
fn endpoint_change_touches_only_that_service() {
    let cfg = ProxyConfig::default();
    let mut state = ProxyState {
        services: (0..50)
            .map(|i| {
                svc(
                    &format!("s{i}"),
                    Ipv4Addr::new(10, 43, 1, i),
                    vec![ep(10, true, false), ep(11, true, false)],
                )
            })
            .collect(),
        host_ports: vec![],
    };
    let prev = desired(&cfg, &state);
    let (tx, _) = sync::incremental(&cfg, &prev, &prev);
    assert!(tx.is_empty(), "no change, no ops: {:?}", tx.ops);

    state.services[7].endpoints.pop();
    let next = desired(&cfg, &state);
    let (tx, stats) = sync::incremental(&cfg, &prev, &next);
    assert_eq!(
        tx.ops
            .iter()
            .filter(|o| matches!(o, Op::FlushChain(c) if c == "service-default/s7/tcp/http"))
            .count(),
        1
    );
    assert_eq!(tx.ops.iter().filter(|o| matches!(o, Op::DeleteChain(c) if c == "endpoint-default/s7/tcp/http__10.42.0.11/8080")).count(), 1);
    assert_eq!(stats.chains_written, 1);
    assert_eq!(stats.chains_deleted, 1);
    // The flush comes before the delete, or the kernel would refuse the delete.
    let pos = |f: &dyn Fn(&Op) -> bool| tx.ops.iter().position(f).unwrap();
    assert!(
        pos(&|o| matches!(o, Op::FlushChain(c) if c.starts_with("service-")))
            < pos(&|o| matches!(o, Op::DeleteChain(_)))
    );

    // All endpoints gone: map element moves from service-ips to no-endpoint-services.
    state.services[7].endpoints.clear();
    let last = desired(&cfg, &state);
    let (tx, _) = sync::incremental(&cfg, &next, &last);
    assert!(tx
        .ops
        .iter()
        .any(|o| matches!(o, Op::DeleteElems { set, .. } if set == SERVICE_IPS)));
    assert!(tx
        .ops
        .iter()
        .any(|o| matches!(o, Op::AddElems { set, .. } if set == NO_EP_SERVICES)));
}

#[test]
fn proxy_syncs_full_then_incremental_and_cleans_up() {
    let rec = RecordingBackend::default();
    let mut p = ServiceProxy::new(ProxyConfig::default(), rec.clone()).unwrap();
    assert!(*rec.route_localnet.lock().unwrap());
    let mut state = ProxyState {
        services: vec![svc("web", CIP, vec![ep(10, true, false)])],
        host_ports: vec![],
    };
    assert!(p.sync(&state).unwrap().full);
    state.services[0].endpoints.push(ep(11, true, false));
    let st = p.sync(&state).unwrap();
    assert!(!st.full);
    assert_eq!(
        st.chains_written, 2,
        "service chain rewritten, one endpoint chain added"
    );
    p.cleanup().unwrap();
    let applied = rec.applied.lock().unwrap();
    assert_eq!(applied.len(), 3);
    assert_eq!(applied[2].ops, vec![Op::AddTable, Op::DeleteTable]);
}

#[test]
fn build_state_reads_services_and_slices() {
    let services: Vec<Service> = vec![
        serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": "ns", "name": "web"},
            "spec": {"type": "LoadBalancer", "clusterIP": "10.43.0.7", "externalTrafficPolicy": "Local",
                     "sessionAffinity": "ClientIP", "externalIPs": ["192.168.9.9"],
                     "ports": [{"name": "http", "port": 80, "nodePort": 30007}, {"name": "dns", "port": 53, "protocol": "UDP"}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "192.168.9.1"}, {"ip": "192.168.9.2", "ipMode": "Proxy"}]}}
        })).unwrap(),
        serde_json::from_value(serde_json::json!({"metadata": {"namespace": "ns", "name": "headless"}, "spec": {"clusterIP": "None", "ports": [{"port": 80}]}})).unwrap(),
        serde_json::from_value(serde_json::json!({"metadata": {"namespace": "ns", "name": "ext"}, "spec": {"type": "ExternalName", "externalName": "example.com"}})).unwrap(),
    ];
    let slices: Vec<EndpointSlice> = vec![serde_json::from_value(serde_json::json!({
        "metadata": {"namespace": "ns", "name": "web-abc", "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [
            {"addresses": ["10.42.0.5"], "nodeName": "n1", "conditions": {"ready": true}},
            {"addresses": ["10.42.1.5"], "nodeName": "n2", "conditions": {"ready": false, "serving": true, "terminating": true}},
            {"addresses": ["192.168.1.10"]}
        ]
    })).unwrap()];
    let st = build_state(&services, &slices, "n1", &[Ipv4Addr::new(192, 168, 1, 10)]);
    assert_eq!(st.services.len(), 2, "{st:#?}");
    let http = st.services.iter().find(|s| s.port_name == "http").unwrap();
    assert_eq!(http.cluster_ip, Some(Ipv4Addr::new(10, 43, 0, 7)));
    assert_eq!(http.node_port, Some(30007));
    assert_eq!(http.load_balancer_ips, vec![Ipv4Addr::new(192, 168, 9, 1)]);
    assert_eq!(http.external_ips, vec![Ipv4Addr::new(192, 168, 9, 9)]);
    assert_eq!(http.session_affinity_seconds, Some(10800));
    assert!(http.external_policy_local && !http.internal_policy_local);
    assert_eq!(http.endpoints.len(), 3);
    let by_ip = |ip: [u8; 4]| {
        http.endpoints
            .iter()
            .find(|e| e.ip == Ipv4Addr::from(ip))
            .unwrap()
    };
    assert!(by_ip([10, 42, 0, 5]).is_local && by_ip([10, 42, 0, 5]).ready);
    let t = by_ip([10, 42, 1, 5]);
    assert!(!t.is_local && !t.ready && t.serving && t.terminating);
    assert!(
        by_ip([192, 168, 1, 10]).is_local,
        "host-network endpoint with this node's address"
    );
    assert!(
        by_ip([192, 168, 1, 10]).ready,
        "nil conditions read as ready"
    );
    let dns = st.services.iter().find(|s| s.port_name == "dns").unwrap();
    assert_eq!(dns.protocol, Protocol::Udp);
    assert!(dns.endpoints.is_empty(), "no slice port named dns");
}
