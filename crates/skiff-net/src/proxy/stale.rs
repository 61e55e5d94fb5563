//! Which UDP conntrack entries a change of Services makes stale (see [`crate::conntrack`]):
//! flows NATed to a backend that stopped serving a UDP Service, and flows to a UDP Service
//! address that had no backend (and were rejected) but has one now.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use super::{Protocol, ProxyState, ServicePort};

/// What to delete after a sync.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StaleUdp {
    /// Backends whose NATed UDP flows must go.
    pub backends: BTreeSet<Ipv4Addr>,
    /// Service addresses whose UDP flows must go.
    pub service_ips: BTreeSet<Ipv4Addr>,
}

impl StaleUdp {
    /// Nothing to delete.
    pub fn is_empty(&self) -> bool {
        self.backends.is_empty() && self.service_ips.is_empty()
    }

    /// Whether `flow` is one of the stale ones.
    pub fn matches(&self, flow: &crate::conntrack::Flow) -> bool {
        self.service_ips.contains(&flow.orig.dst) || self.backends.iter().any(|b| flow.nated_to(*b))
    }
}

type Key<'a> = (&'a str, &'a str, &'a str);

fn udp_ports(state: &ProxyState) -> BTreeMap<Key<'_>, &ServicePort> {
    state
        .services
        .iter()
        .filter(|s| s.protocol == Protocol::Udp)
        .map(|s| ((s.namespace.as_str(), s.name.as_str(), s.port_name.as_str()), s))
        .collect()
}

fn ready(s: &ServicePort) -> BTreeSet<Ipv4Addr> {
    s.endpoints.iter().filter(|e| e.ready).map(|e| e.ip).collect()
}

fn addresses(s: &ServicePort) -> impl Iterator<Item = Ipv4Addr> + '_ {
    s.cluster_ip.into_iter().chain(s.external_ips.iter().copied()).chain(s.load_balancer_ips.iter().copied())
}

/// The UDP flows that `after` makes stale, compared with `before`.
pub fn stale_udp(before: &ProxyState, after: &ProxyState) -> StaleUdp {
    let (old, new) = (udp_ports(before), udp_ports(after));
    let mut out = StaleUdp::default();
    for (key, was) in &old {
        let now = new.get(key).map(|s| ready(s)).unwrap_or_default();
        out.backends.extend(ready(was).difference(&now));
    }
    for (key, is) in &new {
        let had = old.get(key).is_some_and(|s| !ready(s).is_empty());
        if !had && !ready(is).is_empty() {
            out.service_ips.extend(addresses(is));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::Endpoint;

    fn port(name: &str, protocol: Protocol, ips: &[[u8; 4]]) -> ServicePort {
        ServicePort {
            namespace: "ns".into(),
            name: name.into(),
            port_name: String::new(),
            protocol,
            cluster_ip: Some(Ipv4Addr::new(10, 43, 0, 10)),
            port: 53,
            node_port: None,
            load_balancer_ips: vec![],
            external_ips: vec![],
            session_affinity_seconds: None,
            external_policy_local: false,
            internal_policy_local: false,
            endpoints: ips
                .iter()
                .map(|ip| Endpoint { ip: (*ip).into(), port: 53, ready: true, serving: true, terminating: false, is_local: false })
                .collect(),
        }
    }

    fn state(ports: Vec<ServicePort>) -> ProxyState {
        ProxyState { services: ports, host_ports: vec![] }
    }

    #[test]
    fn a_removed_udp_backend_is_stale_a_tcp_one_is_not() {
        let before = state(vec![port("dns", Protocol::Udp, &[[10, 42, 0, 1], [10, 42, 0, 2]]), port("web", Protocol::Tcp, &[[10, 42, 0, 3]])]);
        let after = state(vec![port("dns", Protocol::Udp, &[[10, 42, 0, 2]]), port("web", Protocol::Tcp, &[])]);
        let s = stale_udp(&before, &after);
        assert_eq!(s.backends, BTreeSet::from([Ipv4Addr::new(10, 42, 0, 1)]));
        assert!(s.service_ips.is_empty());
    }

    #[test]
    fn a_deleted_udp_service_makes_all_its_backends_stale() {
        let before = state(vec![port("dns", Protocol::Udp, &[[10, 42, 0, 1]])]);
        let s = stale_udp(&before, &state(vec![]));
        assert_eq!(s.backends, BTreeSet::from([Ipv4Addr::new(10, 42, 0, 1)]));
    }

    #[test]
    fn a_udp_service_gaining_its_first_backend_flushes_its_address() {
        let before = state(vec![port("dns", Protocol::Udp, &[])]);
        let after = state(vec![port("dns", Protocol::Udp, &[[10, 42, 0, 1]])]);
        let s = stale_udp(&before, &after);
        assert_eq!(s.service_ips, BTreeSet::from([Ipv4Addr::new(10, 43, 0, 10)]));
        assert!(s.backends.is_empty());
        assert!(stale_udp(&after, &after).is_empty(), "no change, nothing stale");
    }
}
