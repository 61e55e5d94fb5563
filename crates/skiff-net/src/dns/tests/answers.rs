//! Answers for every case the CoreDNS `kubernetes` plugin serves, through the wire format:
//! encode a query, answer it from the fixture, decode the response.

use std::borrow::Cow;

use super::*;
use crate::dns::answer::reverse_ip;

const WEB: &str = "web.shop.svc.cluster.local";

fn soa_mname(msg: &Message) -> Option<String> {
    msg.authority.iter().find_map(|r| match &r.data {
        RData::Soa { mname, .. } => Some(mname.to_string()),
        _ => None,
    })
}

#[test]
fn cluster_ip_a_record() {
    let r = fixture();
    let m = ask(&r, WEB, TYPE_A).unwrap();
    assert_eq!(m.rcode, RCODE_NOERROR);
    assert!(m.aa(), "cluster answers are authoritative");
    assert_eq!(m.id, 0x1234);
    assert_eq!(ips(&m.answers), ["10.43.1.5"]);
    assert_eq!(m.answers[0].ttl, 5);
    assert_eq!(m.answers[0].name, WEB);
    assert_eq!(
        ask(&r, "kubernetes.default.svc.cluster.local.", TYPE_A)
            .map(|m| ips(&m.answers))
            .unwrap(),
        ["10.43.0.1"]
    );
}

#[test]
fn question_case_is_echoed_and_lookup_ignores_case() {
    let r = fixture();
    let q = build_query(7, "Web.SHOP.svc.Cluster.Local", TYPE_A, None);
    let m = ask_with(&r, &q, 512).unwrap();
    assert_eq!(ips(&m.answers), ["10.43.1.5"]);
    // The question bytes come back exactly as sent (0x20 randomisation relies on it).
    let mut out = Vec::new();
    let mut qn = String::new();
    let req = parse_request(&q, &mut qn).unwrap();
    write_response(&mut out, &req, &Sections::default(), 512);
    assert_eq!(&out[12..q.len()], &q[12..]);
}

#[test]
fn aaaa_for_ipv4_only_name_is_nodata_not_nxdomain() {
    let m = ask(&fixture(), WEB, TYPE_AAAA).unwrap();
    assert_eq!(m.rcode, RCODE_NOERROR);
    assert!(m.answers.is_empty());
    assert_eq!(soa_mname(&m).as_deref(), Some("ns.dns.cluster.local"));
}

#[test]
fn dual_stack_service_answers_both_families() {
    let r = fixture();
    assert_eq!(
        ips(&ask(&r, "dual.shop.svc.cluster.local", TYPE_A)
            .unwrap()
            .answers),
        ["10.43.1.6"]
    );
    assert_eq!(
        ips(&ask(&r, "dual.shop.svc.cluster.local", TYPE_AAAA)
            .unwrap()
            .answers),
        ["fd00:43::6"]
    );
}

#[test]
fn headless_serves_ready_endpoints_only() {
    let m = ask(&fixture(), "redis.shop.svc.cluster.local", TYPE_A).unwrap();
    assert_eq!(
        sorted_ips(&m),
        ["10.42.0.10", "10.42.1.11"],
        "not-ready 10.42.2.12 left out, duplicate served once"
    );
}

#[test]
fn headless_publish_not_ready_serves_all() {
    let m = ask(&fixture(), "peers.shop.svc.cluster.local", TYPE_A).unwrap();
    assert_eq!(sorted_ips(&m), ["10.42.0.20", "10.42.0.21"]);
}

#[test]
fn statefulset_pod_names() {
    let r = fixture();
    let m = ask(&r, "redis-0.redis.shop.svc.cluster.local", TYPE_A).unwrap();
    assert_eq!(ips(&m.answers), ["10.42.0.10"]);
    assert_eq!(
        ips(&ask(&r, "redis-1.redis.shop.svc.cluster.local", TYPE_A)
            .unwrap()
            .answers),
        ["10.42.1.11"]
    );
    let not_ready = ask(&r, "redis-2.redis.shop.svc.cluster.local", TYPE_A).unwrap();
    assert_eq!(not_ready.rcode, RCODE_NXDOMAIN);
    // The other namespace's redis-0 is not mixed in.
    assert_eq!(
        r.ipv4("redis-0.redis.other.svc.cluster.local"),
        Vec::<std::net::Ipv4Addr>::new()
    );
}

#[test]
fn endpoint_without_hostname_gets_dashed_name() {
    let m = ask(
        &fixture(),
        "10-42-0-21.peers.shop.svc.cluster.local",
        TYPE_A,
    )
    .unwrap();
    assert_eq!(ips(&m.answers), ["10.42.0.21"]);
}

#[test]
fn srv_for_named_cluster_ip_ports() {
    let r = fixture();
    let m = ask(&r, "_http._tcp.web.shop.svc.cluster.local", TYPE_SRV).unwrap();
    assert_eq!(m.rcode, RCODE_NOERROR);
    assert_eq!(
        m.answers[0].data,
        RData::Srv {
            priority: 0,
            weight: 100,
            port: 80,
            target: Cow::Borrowed(WEB)
        }
    );
    assert_eq!(
        ips(&m.additional),
        ["10.43.1.5"],
        "target address in the additional section"
    );
    let udp = ask(&r, "_dns-udp._udp.web.shop.svc.cluster.local", TYPE_SRV).unwrap();
    assert_eq!(udp.answers.len(), 1);
    assert_eq!(
        ask(&r, "_http._udp.web.shop.svc.cluster.local", TYPE_SRV)
            .unwrap()
            .rcode,
        RCODE_NXDOMAIN
    );
    // `_tcp.web...` is an empty non-terminal: exists, no data.
    let ent = ask(&r, "_tcp.web.shop.svc.cluster.local", TYPE_SRV).unwrap();
    assert_eq!((ent.rcode, ent.answers.len()), (RCODE_NOERROR, 0));
}

#[test]
fn srv_for_headless_points_at_each_endpoint() {
    let r = fixture();
    let m = ask(&r, "_redis._tcp.redis.shop.svc.cluster.local", TYPE_SRV).unwrap();
    let targets: Vec<(String, u16, u16)> = m
        .answers
        .iter()
        .map(|rr| match &rr.data {
            RData::Srv {
                target,
                port,
                weight,
                ..
            } => (target.to_string(), *port, *weight),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        targets,
        [
            ("redis-0.redis.shop.svc.cluster.local".to_string(), 6379, 50),
            ("redis-1.redis.shop.svc.cluster.local".to_string(), 6379, 50),
        ]
    );
    assert_eq!(ips(&m.additional), ["10.42.0.10", "10.42.1.11"]);
    let gossip = ask(&r, "_gossip._udp.peers.shop.svc.cluster.local", TYPE_SRV).unwrap();
    let names: Vec<String> = gossip
        .answers
        .iter()
        .map(|rr| match &rr.data {
            RData::Srv { target, .. } => target.to_string(),
            _ => String::new(),
        })
        .collect();
    assert_eq!(
        names,
        [
            "10-42-0-20.peers.shop.svc.cluster.local",
            "10-42-0-21.peers.shop.svc.cluster.local"
        ]
    );
}

#[test]
fn external_name_is_a_cname() {
    let r = fixture();
    let m = ask(&r, "db.shop.svc.cluster.local", TYPE_A).unwrap();
    assert_eq!(m.answers.len(), 1);
    assert_eq!(
        m.answers[0].data,
        RData::Cname(Cow::Borrowed("db.example.com"))
    );
    // Chasing outside the cluster is the server's job (it asks the upstream).
    let q = build_query(1, "db.shop.svc.cluster.local", TYPE_A, None);
    let mut qn = String::new();
    let req = parse_request(&q, &mut qn).unwrap();
    match decide(&r.zone, &req, &qn, 5) {
        Decision::Chase { target, .. } => assert_eq!(target, "db.example.com"),
        other => panic!("expected a chase, got {other:?}"),
    }
    let cname_q = ask(&r, "db.shop.svc.cluster.local", TYPE_CNAME).unwrap();
    assert_eq!(cname_q.answers.len(), 1);
}

#[test]
fn external_name_into_the_cluster_is_chased() {
    let m = ask(&fixture(), "alias.shop.svc.cluster.local", TYPE_A).unwrap();
    assert_eq!(m.answers[0].data, RData::Cname(Cow::Borrowed(WEB)));
    assert_eq!(m.answers[1].name, WEB);
    assert_eq!(ips(&m.answers), ["10.43.1.5"]);
}

#[test]
fn cname_loop_is_servfail_not_a_hang() {
    let m = ask(&fixture(), "loop-a.shop.svc.cluster.local", TYPE_A).unwrap();
    assert_eq!(m.rcode, RCODE_SERVFAIL);
}

#[test]
fn ptr_for_cluster_ips_and_headless_endpoints() {
    let r = fixture();
    let ptr = |name: &str| {
        ask(&r, name, TYPE_PTR).map(|m| {
            m.answers
                .iter()
                .map(|rr| match &rr.data {
                    RData::Ptr(t) => t.to_string(),
                    _ => String::new(),
                })
                .collect::<Vec<_>>()
        })
    };
    assert_eq!(ptr("5.1.43.10.in-addr.arpa").unwrap(), [WEB]);
    assert_eq!(
        ptr("10.0.42.10.in-addr.arpa").unwrap(),
        ["redis-0.redis.shop.svc.cluster.local"]
    );
    assert_eq!(
        ptr("20.0.42.10.in-addr.arpa").unwrap(),
        ["10-42-0-20.peers.shop.svc.cluster.local"]
    );
    let v6 = "6.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.3.4.0.0.0.0.d.f.ip6.arpa";
    assert_eq!(ptr(v6).unwrap(), ["dual.shop.svc.cluster.local"]);
    assert!(
        ptr("9.9.9.10.in-addr.arpa").is_none(),
        "unknown addresses fall through to upstream"
    );
    assert_eq!(
        reverse_ip("1.2.3.4.in-addr.arpa"),
        Some("4.3.2.1".parse().unwrap())
    );
    assert_eq!(reverse_ip("01.2.3.4.in-addr.arpa"), None);
    assert_eq!(reverse_ip("2.3.4.in-addr.arpa"), None);
}

#[test]
fn pod_names_echo_the_address() {
    let r = fixture();
    let m = ask(&r, "10-42-0-99.shop.pod.cluster.local", TYPE_A).unwrap();
    assert_eq!(
        (m.rcode, ips(&m.answers)),
        (RCODE_NOERROR, vec!["10.42.0.99".to_string()])
    );
    let v6 = ask(&r, "fd00--99.shop.pod.cluster.local", TYPE_AAAA).unwrap();
    assert_eq!(ips(&v6.answers), ["fd00::99"]);
    let nodata = ask(&r, "10-42-0-99.shop.pod.cluster.local", TYPE_AAAA).unwrap();
    assert_eq!((nodata.rcode, nodata.answers.len()), (RCODE_NOERROR, 0));
    assert_eq!(
        ask(&r, "not-an-ip.shop.pod.cluster.local", TYPE_A)
            .unwrap()
            .rcode,
        RCODE_NXDOMAIN
    );
    assert_eq!(
        ask(&r, "10-42-0-999.shop.pod.cluster.local", TYPE_A)
            .unwrap()
            .rcode,
        RCODE_NXDOMAIN
    );
}

#[test]
fn unknown_names_are_nxdomain_with_soa() {
    let r = fixture();
    let m = ask(&r, "nope.shop.svc.cluster.local", TYPE_A).unwrap();
    assert_eq!(m.rcode, RCODE_NXDOMAIN);
    assert!(m.aa());
    assert_eq!(soa_mname(&m).as_deref(), Some("ns.dns.cluster.local"));
    assert_eq!(m.authority[0].name, "cluster.local");
    assert_eq!(
        ask(&r, "ghost.svc.cluster.local", TYPE_A).unwrap().rcode,
        RCODE_NXDOMAIN
    );
    assert_eq!(
        ask(&r, "x.cluster.local", TYPE_A).unwrap().rcode,
        RCODE_NXDOMAIN
    );
}

#[test]
fn namespaces_and_structural_names_are_nodata() {
    let r = fixture();
    for name in [
        "shop.svc.cluster.local",
        "svc.cluster.local",
        "cluster.local",
        "pod.cluster.local",
    ] {
        let m = ask(&r, name, TYPE_A).unwrap();
        assert_eq!((m.rcode, m.answers.len()), (RCODE_NOERROR, 0), "{name}");
    }
    let soa = ask(&r, "cluster.local", TYPE_SOA).unwrap();
    assert!(matches!(soa.answers[0].data, RData::Soa { minimum: 5, .. }));
}

#[test]
fn other_names_are_forwarded() {
    let r = fixture();
    assert!(ask(&r, "example.com", TYPE_A).is_none());
    assert!(
        ask(&r, "notcluster.local", TYPE_A).is_none(),
        "suffix match is by label"
    );
    assert!(ask(&r, "", TYPE_NS).is_none());
}

#[test]
fn edns_is_echoed_and_bad_versions_refused() {
    let r = fixture();
    let m = ask_with(&r, &build_query(1, WEB, TYPE_A, Some(4096)), 4096).unwrap();
    assert_eq!(
        m.edns.map(|e| (e.udp_size as usize, e.version)),
        Some((MAX_UDP_SIZE, 0))
    );
    let m = ask(&r, WEB, TYPE_A).unwrap();
    assert!(
        m.edns.is_none(),
        "no OPT in the answer to a query without one"
    );
    let mut v1 = build_query(1, WEB, TYPE_A, Some(4096));
    let n = v1.len();
    v1[n - 5] = 1; // OPT TTL byte 2 = version
    let m = ask_with(&r, &v1, 4096).unwrap();
    assert_eq!(m.rcode, RCODE_BADVERS);
    assert!(m.answers.is_empty());
}

#[test]
fn large_answers_truncate_to_the_client_size() {
    let r = fixture();
    let name = "big.shop.svc.cluster.local";
    let plain = build_query(1, name, TYPE_A, None);
    let mut qn = String::new();
    let max = parse_request(&plain, &mut qn).unwrap().max_udp_size();
    let m = ask_with(&r, &plain, max).unwrap();
    assert!(m.tc(), "60 A records do not fit in 512 bytes");
    assert!(m.answers.is_empty());
    let edns = build_query(1, name, TYPE_A, Some(4096));
    let max = parse_request(&edns, &mut qn).unwrap().max_udp_size();
    assert_eq!(max, MAX_UDP_SIZE);
    let m = ask_with(&r, &edns, max).unwrap();
    assert!(!m.tc());
    assert_eq!(m.answers.len(), 60);
}

#[test]
fn other_opcodes_are_notimp() {
    let mut q = build_query(1, WEB, TYPE_A, None);
    q[2] |= 2 << 3; // opcode STATUS
    assert_eq!(ask_with(&fixture(), &q, 512).unwrap().rcode, RCODE_NOTIMP);
}

#[test]
fn address_order_rotates_between_queries() {
    let r = fixture();
    let first = |id| {
        ips(&ask_with(
            &r,
            &build_query(id, "redis.shop.svc.cluster.local", TYPE_A, None),
            512,
        )
        .unwrap()
        .answers)[0]
            .clone()
    };
    assert_ne!(first(0), first(1));
}

#[test]
fn names_are_compressed() {
    let m = ask(
        &fixture(),
        "_redis._tcp.redis.shop.svc.cluster.local",
        TYPE_SRV,
    )
    .unwrap();
    let q = build_query(
        0x1234,
        "_redis._tcp.redis.shop.svc.cluster.local",
        TYPE_SRV,
        None,
    );
    let mut out = Vec::new();
    let mut qn = String::new();
    let req = parse_request(&q, &mut qn).unwrap();
    let zone = fixture();
    if let Decision::Reply(s) = decide(&zone.zone, &req, &qn, 5) {
        write_response(&mut out, &req, &s, 512);
    }
    // 2 SRV + 2 A records; uncompressed they would take over 300 bytes.
    assert_eq!(m.answers.len() + m.additional.len(), 4);
    assert!(out.len() < 220, "response is {} bytes", out.len());
}

#[test]
fn malformed_queries_are_rejected() {
    let mut qn = String::new();
    let mut two = build_query(1, WEB, TYPE_A, None);
    two[5] = 2;
    assert!(parse_request(&two, &mut qn).is_err());
    assert!(parse_request(&[0; 5], &mut qn).is_err());
    // A pointer loop in a name must not spin.
    let mut looped = build_query(1, "a", TYPE_A, None);
    looped.truncate(12);
    looped.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1]);
    assert!(parse_request(&looped, &mut qn).is_err());
    assert!(read_name(&[0xC0, 0], 0, &mut qn).is_err());
}

#[test]
fn build_records_indexes_what_it_should() {
    let r = fixture();
    assert_eq!(r.domain(), "cluster.local");
    assert_eq!(
        r.ipv4("WEB.shop.svc.cluster.local."),
        vec!["10.43.1.5".parse::<std::net::Ipv4Addr>().unwrap()]
    );
    let zone = &r.zone;
    assert!(
        zone.names.contains_key("_tcp.redis.shop.svc.cluster.local"),
        "empty non-terminal recorded"
    );
    assert!(
        !zone
            .names
            .contains_key("_8080._tcp.web.shop.svc.cluster.local"),
        "unnamed ports get no SRV"
    );
    assert!(
        !zone.names.keys().any(|k| k.contains("ignored")),
        "FQDN slices ignored"
    );
    let empty = Records::empty("Cluster.Local.");
    assert_eq!(empty.domain(), "cluster.local");
    assert_eq!(empty.len(), 3);
    // A different domain serves the same objects under it.
    let other = build_records(
        &[service("a", "b", &["10.43.9.9"], &[])],
        &[],
        "corp.internal",
    );
    assert_eq!(other.ipv4("b.a.svc.corp.internal").len(), 1);
    assert!(
        ask(&other, "b.a.svc.cluster.local", TYPE_A).is_none(),
        "cluster.local is now outside the zone"
    );
}
