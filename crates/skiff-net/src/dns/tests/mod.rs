//! Tests of the DNS subsystem: fixtures shared by the answer tests (pure, no sockets), the
//! server tests (loopback sockets, a fake upstream) and the load measurement.

mod answers;
mod integration;
mod load;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::answer::{decide, Decision};
use super::message::{decode, Message};
use super::records::{build_records, Records};
use super::wire::*;

fn meta(ns: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        namespace: Some(ns.into()),
        name: Some(name.into()),
        ..Default::default()
    }
}

/// A Service; `cluster_ip` "None" makes it headless.
pub(crate) fn service(
    ns: &str,
    name: &str,
    cluster_ips: &[&str],
    ports: &[(&str, i32, &str)],
) -> Service {
    Service {
        metadata: meta(ns, name),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            cluster_ip: cluster_ips.first().map(|s| s.to_string()),
            cluster_ips: Some(cluster_ips.iter().map(|s| s.to_string()).collect()),
            ports: Some(
                ports
                    .iter()
                    .map(|(n, p, proto)| ServicePort {
                        name: (!n.is_empty()).then(|| n.to_string()),
                        port: *p,
                        protocol: Some(proto.to_string()),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub(crate) fn external(ns: &str, name: &str, target: &str) -> Service {
    Service {
        metadata: meta(ns, name),
        spec: Some(ServiceSpec {
            type_: Some("ExternalName".into()),
            external_name: Some(target.into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// An EndpointSlice for `svc`; endpoints are (address, hostname, ready).
pub(crate) fn slice(
    ns: &str,
    svc: &str,
    name: &str,
    family: &str,
    endpoints: &[(&str, Option<&str>, Option<bool>)],
    ports: &[(&str, i32, &str)],
) -> EndpointSlice {
    let mut m = meta(ns, name);
    m.labels = Some(BTreeMap::from([(
        "kubernetes.io/service-name".to_string(),
        svc.to_string(),
    )]));
    EndpointSlice {
        metadata: m,
        address_type: family.into(),
        endpoints: endpoints
            .iter()
            .map(|(ip, host, ready)| Endpoint {
                addresses: vec![ip.to_string()],
                hostname: host.map(str::to_string),
                conditions: Some(EndpointConditions {
                    ready: *ready,
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect(),
        ports: Some(
            ports
                .iter()
                .map(|(n, p, proto)| EndpointPort {
                    name: Some(n.to_string()),
                    port: Some(*p),
                    protocol: Some(proto.to_string()),
                    ..Default::default()
                })
                .collect(),
        ),
    }
}

/// The cluster every test answers from.
pub(crate) fn fixture() -> Records {
    let mut headless_redis = service("shop", "redis", &["None"], &[("redis", 6379, "TCP")]);
    headless_redis.spec.as_mut().unwrap().cluster_ip = Some("None".into());
    let mut peers = service("shop", "peers", &["None"], &[]);
    peers.spec.as_mut().unwrap().publish_not_ready_addresses = Some(true);
    let big = service("shop", "big", &["None"], &[]);
    let services = vec![
        service(
            "default",
            "kubernetes",
            &["10.43.0.1"],
            &[("https", 443, "TCP")],
        ),
        service(
            "shop",
            "web",
            &["10.43.1.5"],
            &[
                ("http", 80, "TCP"),
                ("dns-udp", 53, "UDP"),
                ("", 8080, "TCP"),
            ],
        ),
        service("shop", "dual", &["10.43.1.6", "fd00:43::6"], &[]),
        headless_redis,
        peers,
        big,
        external("shop", "db", "DB.example.com."),
        external("shop", "alias", "web.shop.svc.cluster.local"),
        external("shop", "loop-a", "loop-b.shop.svc.cluster.local"),
        external("shop", "loop-b", "loop-a.shop.svc.cluster.local"),
    ];
    let big_eps: Vec<String> = (0..60).map(|i| format!("10.42.3.{}", i + 1)).collect();
    let big_refs: Vec<(&str, Option<&str>, Option<bool>)> =
        big_eps.iter().map(|s| (s.as_str(), None, None)).collect();
    let slices = vec![
        slice(
            "shop",
            "redis",
            "redis-abc",
            "IPv4",
            &[
                ("10.42.0.10", Some("redis-0"), Some(true)),
                ("10.42.1.11", Some("redis-1"), None),
                ("10.42.2.12", Some("redis-2"), Some(false)),
            ],
            &[("redis", 6379, "TCP")],
        ),
        // The same endpoint again in a second slice, as during a controller's move.
        slice(
            "shop",
            "redis",
            "redis-def",
            "IPv4",
            &[("10.42.0.10", Some("redis-0"), Some(true))],
            &[("redis", 6379, "TCP")],
        ),
        // Same service name in another namespace must not leak in.
        slice(
            "other",
            "redis",
            "redis-xyz",
            "IPv4",
            &[("10.42.9.9", Some("redis-0"), Some(true))],
            &[],
        ),
        slice(
            "shop",
            "peers",
            "peers-1",
            "IPv4",
            &[
                ("10.42.0.20", None, Some(false)),
                ("10.42.0.21", None, None),
            ],
            &[("gossip", 7946, "UDP")],
        ),
        slice("shop", "big", "big-1", "IPv4", &big_refs, &[]),
        slice(
            "shop",
            "peers",
            "peers-fqdn",
            "FQDN",
            &[("ignored.example.com", None, None)],
            &[],
        ),
    ];
    build_records(&services, &slices, "cluster.local")
}

/// Encodes a query, answers it from `records` and decodes the response. `None` means the query
/// was handed to the upstreams.
pub(crate) fn ask(records: &Records, name: &str, qtype: u16) -> Option<Message> {
    ask_with(records, &build_query(0x1234, name, qtype, None), 512)
}

/// As [`ask`], for a prepared query and response size limit.
pub(crate) fn ask_with(records: &Records, query: &[u8], max: usize) -> Option<Message> {
    let mut qname = String::new();
    let req = parse_request(query, &mut qname).expect("query parses");
    let mut out = Vec::new();
    match decide(&records.zone, &req, &qname, 5) {
        Decision::Reply(s) | Decision::Chase { sections: s, .. } => {
            write_response(&mut out, &req, &s, max);
            Some(decode(&out).expect("response decodes"))
        }
        Decision::Forward => None,
    }
}

/// The addresses in an answer section, in order.
pub(crate) fn ips(rrs: &[Rr<'_>]) -> Vec<String> {
    rrs.iter()
        .filter_map(|r| match &r.data {
            RData::A(ip) => Some(ip.to_string()),
            RData::Aaaa(ip) => Some(ip.to_string()),
            _ => None,
        })
        .collect()
}

/// The answer addresses sorted, for comparisons that ignore round-robin order.
pub(crate) fn sorted_ips(msg: &Message) -> Vec<String> {
    let mut v = ips(&msg.answers);
    v.sort();
    v
}
