//! Tests of the encoder (no I/O) and, as root, of real kernel transactions inside a private
//! network namespace, read back with `nft`.

use std::net::Ipv4Addr;
use std::time::Duration;

use super::expr::{self, proto};
use super::model::{datatype, key_addr_proto_port, priority, Elem};
use super::testns::{can_run, Netns};
use super::*;

fn sample_tx() -> Transaction {
    let mut tx = Transaction::new(Family::Ip, "skifftest");
    tx.delete_table_if_exists();
    tx.push(Op::AddTable);
    let nat = |name: &str, hook| Chain {
        name: name.into(),
        base: Some(BaseChain {
            kind: ChainType::Nat,
            hook,
            priority: priority::DSTNAT,
            accept_by_default: true,
        }),
    };
    tx.push(Op::AddChain(nat("prerouting", Hook::Prerouting)));
    tx.push(Op::AddChain(Chain {
        name: "filter-prerouting".into(),
        base: Some(BaseChain {
            kind: ChainType::Filter,
            hook: Hook::Prerouting,
            priority: -110,
            accept_by_default: true,
        }),
    }));
    for c in ["svc", "ep-a", "ep-b", "reject"] {
        tx.push(Op::AddChain(Chain {
            name: c.into(),
            base: None,
        }));
    }
    tx.push(Op::AddSet(Set {
        name: "service-ips".into(),
        key_type: datatype::concat(&[
            datatype::IPV4_ADDR,
            datatype::INET_PROTO,
            datatype::INET_SERVICE,
        ]),
        key_len: 12,
        verdict_map: true,
        timeout: None,
    }));
    tx.push(Op::AddSet(Set {
        name: "aff-a".into(),
        key_type: datatype::IPV4_ADDR,
        key_len: 4,
        verdict_map: false,
        timeout: Some(Duration::from_secs(60)),
    }));
    tx.push(Op::AddRule {
        chain: "prerouting".into(),
        rule: Rule::new(expr::vmap_daddr_proto_dport("service-ips")),
    });
    let mut r = expr::fib_daddr_local();
    r.push(Expr::Counter);
    tx.push(Op::AddRule {
        chain: "prerouting".into(),
        rule: Rule::new(r).comment("nodeports"),
    });
    let mut r = expr::saddr_in_set("aff-a", false);
    r.push(expr::verdict(Verdict::Goto("ep-a".into())));
    tx.push(Op::AddRule {
        chain: "svc".into(),
        rule: Rule::new(r),
    });
    let mut r = expr::saddr_not_in(Ipv4Addr::new(10, 42, 0, 0), 16);
    r.extend(expr::mark_or(0x4000));
    tx.push(Op::AddRule {
        chain: "svc".into(),
        rule: Rule::new(r),
    });
    tx.push(Op::AddRule {
        chain: "svc".into(),
        rule: Rule::new(expr::numgen_vmap(vec![
            Verdict::Goto("ep-a".into()),
            Verdict::Goto("ep-b".into()),
        ])),
    });
    tx.push(Op::AddRule {
        chain: "ep-a".into(),
        rule: Rule::new(expr::remember_saddr("aff-a")),
    });
    tx.push(Op::AddRule {
        chain: "ep-a".into(),
        rule: Rule::new(expr::dnat_to(
            proto::TCP,
            Ipv4Addr::new(10, 42, 0, 10),
            8080,
        )),
    });
    tx.push(Op::AddRule {
        chain: "ep-b".into(),
        rule: Rule::new(expr::dnat_to(
            proto::TCP,
            Ipv4Addr::new(10, 42, 0, 11),
            8080,
        )),
    });
    tx.push(Op::AddRule {
        chain: "reject".into(),
        rule: Rule::new(expr::reject_tcp_reset()),
    });
    tx.push(Op::AddRule {
        chain: "reject".into(),
        rule: Rule::new(expr::reject_icmp_port_unreachable()),
    });
    let mut r = expr::ct_state_new();
    r.extend(expr::mark_has(0x4000));
    r.push(expr::verdict(Verdict::Accept));
    tx.push(Op::AddRule {
        chain: "filter-prerouting".into(),
        rule: Rule::new(r),
    });
    tx.push(Op::AddElems {
        set: "service-ips".into(),
        elems: vec![Elem {
            key: key_addr_proto_port(Ipv4Addr::new(10, 43, 0, 5), proto::TCP, 80),
            verdict: Some(Verdict::Goto("svc".into())),
        }],
    });
    tx
}

#[test]
fn batch_is_well_formed() {
    let tx = sample_tx();
    let b = wire::encode(&tx, 100);
    // Walk the messages: lengths add up, all 4-aligned, begin/end framing, ack only on the last.
    let mut off = 0;
    let mut types = Vec::new();
    let mut acks = Vec::new();
    while off < b.bytes.len() {
        let len = u32::from_ne_bytes(b.bytes[off..off + 4].try_into().unwrap()) as usize;
        assert_eq!(len % 4, 0);
        let ty = u16::from_ne_bytes([b.bytes[off + 4], b.bytes[off + 5]]);
        let flags = u16::from_ne_bytes([b.bytes[off + 6], b.bytes[off + 7]]);
        let seq = u32::from_ne_bytes(b.bytes[off + 8..off + 12].try_into().unwrap());
        types.push(ty);
        if flags & wire::NLM_F_ACK != 0 {
            acks.push(seq);
        }
        off += len;
    }
    assert_eq!(off, b.bytes.len());
    assert_eq!(types.first(), Some(&0x10));
    assert_eq!(types.last(), Some(&0x11));
    assert_eq!(acks, vec![b.last_seq]);
    assert_eq!(b.begin_seq, 101);
    // One message per op plus the anonymous map and its elements for the numgen rule.
    assert_eq!(b.messages.len(), tx.ops.len() + 2);
}

#[test]
fn long_element_lists_are_split() {
    let mut tx = Transaction::new(Family::Ip, "t");
    let elems = (0..5000u32)
        .map(|i| Elem {
            key: key_addr_proto_port(Ipv4Addr::from(i), 6, 80),
            verdict: Some(Verdict::Goto(format!("chain-{i}"))),
        })
        .collect();
    tx.push(Op::AddElems {
        set: "m".into(),
        elems,
    });
    let b = wire::encode(&tx, 0);
    assert!(
        b.messages.len() > 2,
        "expected several element messages, got {}",
        b.messages.len()
    );
}

#[test]
fn kernel_applies_and_nft_reads_back() {
    if !can_run() {
        return;
    }
    let ns = Netns::new("nft");
    let mut be = NetlinkBackend::in_netns(&ns.path()).expect("backend");
    be.apply(&sample_tx()).expect("apply");

    let text = ns.nft_text("skifftest");
    for want in [
        "type nat hook prerouting priority dstnat; policy accept;",
        "type filter hook prerouting priority dstnat - 10; policy accept;",
        "ip daddr . meta l4proto . th dport vmap @service-ips",
        "fib daddr type local counter packets 0 bytes 0 comment \"nodeports\"",
        "ip saddr @aff-a goto ep-a",
        "ip saddr != 10.42.0.0/16 meta mark set meta mark | 0x00004000",
        "numgen random mod 2 vmap { 0 : goto ep-a, 1 : goto ep-b }",
        "update @aff-a { ip saddr }",
        "meta l4proto tcp dnat to 10.42.0.10:8080",
        "reject with tcp reset",
        "\t\treject\n",
        "ct state new meta mark & 0x00004000 != 0x00000000 accept",
        "10.43.0.5 . tcp . 80 : goto svc",
        "timeout 1m",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    let json = ns.nft_json("skifftest").expect("table listed");
    let chains = json["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o.get("chain").is_some())
        .count();
    assert_eq!(chains, 6);

    // Incremental change: drop ep-b from the service and delete it, in one transaction.
    let mut tx = Transaction::new(Family::Ip, "skifftest");
    tx.push(Op::FlushChain("svc".into()));
    tx.push(Op::AddRule {
        chain: "svc".into(),
        rule: Rule::new(expr::numgen_vmap(vec![Verdict::Goto("ep-a".into())])),
    });
    tx.push(Op::FlushChain("ep-b".into()));
    tx.push(Op::DeleteChain("ep-b".into()));
    be.apply(&tx).expect("incremental");
    let text = ns.nft_text("skifftest");
    assert!(!text.contains("ep-b"), "{text}");
    assert!(
        text.contains("numgen random mod 1 vmap { 0 : goto ep-a }"),
        "{text}"
    );

    // A failing batch changes nothing: the first op succeeds alone but is rolled back.
    let mut tx = Transaction::new(Family::Ip, "skifftest");
    tx.push(Op::AddChain(Chain {
        name: "new-chain".into(),
        base: None,
    }));
    tx.push(Op::AddRule {
        chain: "svc".into(),
        rule: Rule::new(vec![expr::verdict(Verdict::Jump("missing".into()))]),
    });
    let err = be.apply(&tx).expect_err("must fail");
    assert!(
        matches!(err, Error::Kernel { ref op, .. } if op.contains("svc")),
        "{err}"
    );
    assert!(!ns.nft_text("skifftest").contains("new-chain"));

    let mut tx = Transaction::new(Family::Ip, "skifftest");
    tx.delete_table_if_exists();
    be.apply(&tx).expect("delete");
    assert!(ns.nft_json("skifftest").is_none());
    // Deleting again is fine.
    be.apply(&tx).expect("delete again");
}
