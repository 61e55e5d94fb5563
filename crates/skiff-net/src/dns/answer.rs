//! Deciding what to answer: the zone logic of the CoreDNS `kubernetes` plugin, as a pure function
//! from a parsed query and a snapshot to response sections (or "forward this").
//!
//! Pure so that every case is unit-testable without sockets; the server does the I/O.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::records::{Node, Zone};
use super::wire::*;

/// CNAME hops followed inside the zone before giving up; ExternalName Services can point at
/// each other, and a loop must not spin.
const MAX_CNAME_HOPS: usize = 8;

/// What to do with a query.
#[derive(Debug)]
pub(crate) enum Decision<'a> {
    /// Answer with these sections.
    Reply(Sections<'a>),
    /// Outside the cluster's authority: send the query upstream unchanged.
    Forward,
    /// An ExternalName chain ends outside the cluster: look `target` up upstream (same qtype),
    /// append what comes back to these sections, then answer.
    Chase {
        sections: Sections<'a>,
        target: &'a str,
    },
}

fn reply(rcode: u16) -> Decision<'static> {
    Decision::Reply(Sections {
        rcode,
        ..Default::default()
    })
}

/// Whether `name` is `domain` or below it.
pub(crate) fn in_zone(name: &str, domain: &str) -> bool {
    name.len() >= domain.len()
        && name.ends_with(domain)
        && (name.len() == domain.len() || name.as_bytes()[name.len() - domain.len() - 1] == b'.')
}

/// The address a reverse name (`4.3.2.1.in-addr.arpa`, nibbles under `ip6.arpa`) stands for.
pub(crate) fn reverse_ip(name: &str) -> Option<IpAddr> {
    if let Some(rest) = name.strip_suffix(".in-addr.arpa") {
        let mut octets = [0u8; 4];
        let mut parts = rest.split('.');
        for slot in octets.iter_mut().rev() {
            let p = parts.next()?;
            if p.is_empty() || p.len() > 3 || (p.len() > 1 && p.starts_with('0')) {
                return None;
            }
            *slot = p.parse().ok()?;
        }
        return parts
            .next()
            .is_none()
            .then(|| IpAddr::V4(Ipv4Addr::from(octets)));
    }
    let rest = name.strip_suffix(".ip6.arpa")?;
    let mut value: u128 = 0;
    let mut count = 0;
    for (i, nibble) in rest.split('.').enumerate() {
        let digit = u8::from_str_radix(nibble, 16)
            .ok()
            .filter(|_| nibble.len() == 1)?;
        value |= (digit as u128) << (4 * i);
        count += 1;
    }
    (count == 32).then(|| IpAddr::V6(Ipv6Addr::from(value)))
}

/// The address in a pod name `1-2-3-4.ns.pod.<domain>`. Like CoreDNS's `pods insecure` mode the
/// address is echoed without checking that such a pod exists: that is what clients of this
/// legacy form rely on.
fn pod_ip(qname: &str, domain: &str) -> Option<IpAddr> {
    let rest = qname.strip_suffix(domain)?.strip_suffix(".pod.")?;
    let (host, ns) = rest.split_once('.')?;
    if ns.is_empty() || ns.contains('.') {
        return None;
    }
    if host.bytes().filter(|&b| b == b'-').count() == 3 && !host.contains(':') {
        if let Ok(v4) = host.replace('-', ".").parse::<Ipv4Addr>() {
            return Some(IpAddr::V4(v4));
        }
    }
    host.replace('-', ":")
        .parse::<Ipv6Addr>()
        .ok()
        .map(IpAddr::V6)
}

fn soa<'a>(zone: &'a Zone, ttl: u32) -> Rr<'a> {
    Rr {
        name: Cow::Borrowed(&zone.domain),
        ttl,
        data: RData::Soa {
            mname: Cow::Borrowed(&zone.soa_mname),
            rname: Cow::Borrowed(&zone.soa_rname),
            serial: zone.serial,
            refresh: 7200,
            retry: 1800,
            expire: 86400,
            minimum: ttl,
        },
    }
}

/// Appends the records of `node` matching `qtype`, starting the address lists at `rotate` so
/// that successive queries spread over endpoints (what CoreDNS's `loadbalance` plugin does).
fn push_records<'a>(
    out: &mut Vec<Rr<'a>>,
    owner: &'a str,
    node: &'a Node,
    qtype: u16,
    ttl: u32,
    rotate: usize,
) {
    let name = || Cow::Borrowed(owner);
    if qtype == TYPE_A || qtype == TYPE_ANY {
        let n = node.a.len();
        out.extend((0..n).map(|i| Rr {
            name: name(),
            ttl,
            data: RData::A(node.a[(rotate + i) % n]),
        }));
    }
    if qtype == TYPE_AAAA || qtype == TYPE_ANY {
        let n = node.aaaa.len();
        out.extend((0..n).map(|i| Rr {
            name: name(),
            ttl,
            data: RData::Aaaa(node.aaaa[(rotate + i) % n]),
        }));
    }
    if qtype == TYPE_SRV || qtype == TYPE_ANY {
        out.extend(node.srv.iter().map(|s| Rr {
            name: name(),
            ttl,
            data: RData::Srv {
                priority: s.priority,
                weight: s.weight,
                port: s.port,
                target: Cow::Borrowed(&s.target),
            },
        }));
    }
}

/// Decides the answer for one query. `qname` is the lowercase question name.
pub(crate) fn decide<'a>(
    zone: &'a Zone,
    req: &Request<'_>,
    qname: &'a str,
    ttl: u32,
) -> Decision<'a> {
    if req.opcode != 0 {
        return reply(RCODE_NOTIMP);
    }
    if req.edns.is_some_and(|e| e.version > 0) {
        return reply(RCODE_BADVERS);
    }
    let qtype = req.qtype;
    let rotate = req.id as usize;

    if !in_zone(qname, &zone.domain) {
        // Reverse names: answer the addresses we own, let the upstream have the rest (CoreDNS's
        // `fallthrough in-addr.arpa ip6.arpa`).
        if qtype == TYPE_PTR || qtype == TYPE_ANY {
            if let Some(targets) = reverse_ip(qname).and_then(|ip| zone.ptr.get(&ip)) {
                let answers = targets
                    .iter()
                    .map(|t| Rr {
                        name: Cow::Borrowed(qname),
                        ttl,
                        data: RData::Ptr(Cow::Borrowed(t)),
                    })
                    .collect();
                return Decision::Reply(Sections {
                    authoritative: true,
                    answers,
                    ..Default::default()
                });
            }
        }
        return Decision::Forward;
    }
    if req.qclass != CLASS_IN && req.qclass != CLASS_ANY {
        return reply(RCODE_REFUSED);
    }

    let mut s = Sections {
        authoritative: true,
        ..Default::default()
    };
    let Some(node) = zone.names.get(qname) else {
        if let Some(ip) = pod_ip(qname, &zone.domain) {
            let data = match ip {
                IpAddr::V4(v4) if qtype == TYPE_A || qtype == TYPE_ANY => Some(RData::A(v4)),
                IpAddr::V6(v6) if qtype == TYPE_AAAA || qtype == TYPE_ANY => Some(RData::Aaaa(v6)),
                _ => None,
            };
            s.answers.extend(data.map(|data| Rr {
                name: Cow::Borrowed(qname),
                ttl,
                data,
            }));
        } else {
            s.rcode = RCODE_NXDOMAIN;
        }
        if s.answers.is_empty() {
            s.authority.push(soa(zone, ttl));
        }
        return Decision::Reply(s);
    };

    if qname == &*zone.domain && (qtype == TYPE_SOA || qtype == TYPE_ANY) {
        s.answers.push(soa(zone, ttl));
    }

    // ExternalName: the CNAME answers every type but CNAME itself, and is followed so that stub
    // resolvers (which do not chase) get addresses.
    let mut owner = qname;
    let mut node = node;
    for _ in 0..MAX_CNAME_HOPS {
        let Some(target) = node.cname.as_deref() else {
            break;
        };
        s.answers.push(Rr {
            name: Cow::Borrowed(owner),
            ttl,
            data: RData::Cname(Cow::Borrowed(target)),
        });
        if qtype == TYPE_CNAME {
            return Decision::Reply(s);
        }
        if !in_zone(target, &zone.domain) {
            return Decision::Chase {
                sections: s,
                target,
            };
        }
        match zone.names.get(target) {
            Some(next) => {
                owner = target;
                node = next;
            }
            None => {
                match pod_ip(target, &zone.domain) {
                    Some(IpAddr::V4(v4)) if qtype == TYPE_A => s.answers.push(Rr {
                        name: Cow::Borrowed(target),
                        ttl,
                        data: RData::A(v4),
                    }),
                    Some(IpAddr::V6(v6)) if qtype == TYPE_AAAA => s.answers.push(Rr {
                        name: Cow::Borrowed(target),
                        ttl,
                        data: RData::Aaaa(v6),
                    }),
                    Some(_) => {}
                    None => s.rcode = RCODE_NXDOMAIN,
                }
                if s.answers.iter().all(|r| r.data.rtype() == TYPE_CNAME) {
                    s.authority.push(soa(zone, ttl));
                }
                return Decision::Reply(s);
            }
        }
    }
    if node.cname.is_some() {
        return reply(RCODE_SERVFAIL); // CNAME loop inside the zone
    }

    push_records(&mut s.answers, owner, node, qtype, ttl, rotate);
    if qtype == TYPE_SRV {
        // Addresses of the targets save clients a round trip per target, as CoreDNS does.
        for srv in &node.srv {
            if let Some(target) = zone.names.get(&*srv.target) {
                push_records(&mut s.additional, &srv.target, target, TYPE_A, ttl, 0);
                push_records(&mut s.additional, &srv.target, target, TYPE_AAAA, ttl, 0);
            }
        }
    }
    if s.answers.is_empty() || s.answers.iter().all(|r| r.data.rtype() == TYPE_CNAME) {
        // NODATA: the name exists (an IPv4-only Service asked for AAAA, a namespace, ...).
        s.authority.push(soa(zone, ttl));
    }
    Decision::Reply(s)
}
