//! The cluster zone as a read-only snapshot built from Services and EndpointSlices.
//!
//! Everything a query can ask for is precomputed into hash maps keyed by lowercase name, so that
//! answering is a lookup and never walks API objects. A new snapshot is built for every change
//! and swapped in whole; readers holding the old one are unaffected.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// Label that ties an EndpointSlice to its Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// One SRV record's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Srv {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    pub target: Box<str>,
}

/// All records at one name. A node with nothing in it is an empty non-terminal (or a namespace),
/// which answers NOERROR without data rather than NXDOMAIN (RFC 8020).
#[derive(Debug, Default, Clone)]
pub(crate) struct Node {
    pub a: Vec<Ipv4Addr>,
    pub aaaa: Vec<Ipv6Addr>,
    pub cname: Option<Box<str>>,
    pub srv: Vec<Srv>,
}

#[derive(Debug)]
pub(crate) struct Zone {
    /// Cluster domain, lowercase, without dots at the ends.
    pub domain: Box<str>,
    pub names: HashMap<Box<str>, Node>,
    pub ptr: HashMap<IpAddr, Vec<Box<str>>>,
    /// SOA serial: build time, so that secondaries (and humans) can see the zone changed.
    pub serial: u32,
    /// SOA MNAME and RNAME, kept here so that negative answers need no formatting.
    pub soa_mname: Box<str>,
    pub soa_rname: Box<str>,
}

/// A snapshot of the cluster's DNS data. Cloning is one reference-count increment, which is what
/// lets the server swap snapshots without making readers wait.
#[derive(Debug, Clone)]
pub struct Records {
    pub(crate) zone: Arc<Zone>,
}

impl Records {
    /// A zone with no Services: only the structural names (`cluster.local`, `svc.cluster.local`,
    /// `pod.cluster.local`) exist.
    pub fn empty(domain: &str) -> Self {
        build_records(&[], &[], domain)
    }

    /// The cluster domain this snapshot was built for.
    pub fn domain(&self) -> &str {
        &self.zone.domain
    }

    /// Number of names in the zone, including empty non-terminals.
    pub fn len(&self) -> usize {
        self.zone.names.len()
    }

    /// Whether the zone has no names at all (never true for a built zone).
    pub fn is_empty(&self) -> bool {
        self.zone.names.is_empty()
    }

    /// The IPv4 addresses at `name` (any case, trailing dot optional), for callers and tests that
    /// want to inspect a snapshot without going through the wire format.
    pub fn ipv4(&self, name: &str) -> Vec<Ipv4Addr> {
        let key = normalize(name);
        self.zone
            .names
            .get(key.as_str())
            .map(|n| n.a.clone())
            .unwrap_or_default()
    }
}

/// Lowercases a name and strips the dots at its ends.
pub(crate) fn normalize(name: &str) -> String {
    name.trim_matches('.').to_ascii_lowercase()
}

/// The name CoreDNS gives an address without a hostname: the address with `.`/`:` replaced by
/// `-` (`10-42-0-5`, `fd00--5`).
pub(crate) fn dashed(ip: IpAddr) -> String {
    ip.to_string().replace(['.', ':'], "-")
}

/// Whether `s` can be a single DNS label; a malformed hostname must not create a name that
/// shadows another (e.g. one containing dots).
fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

struct Builder {
    domain: String,
    names: HashMap<Box<str>, Node>,
    ptr: HashMap<IpAddr, Vec<Box<str>>>,
}

impl Builder {
    /// The node at `name`, creating it and its ancestors down to the cluster domain so that
    /// intermediate names answer NODATA instead of NXDOMAIN.
    fn node(&mut self, name: &str) -> &mut Node {
        let mut at = name;
        while at.len() > self.domain.len() {
            match self.names.entry(at.into()) {
                Entry::Occupied(_) => break,
                Entry::Vacant(v) => {
                    v.insert(Node::default());
                }
            }
            match at.find('.') {
                Some(i) => at = &at[i + 1..],
                None => break,
            }
        }
        self.names.entry(name.into()).or_default()
    }

    fn add_ip(&mut self, name: &str, ip: IpAddr) {
        let node = self.node(name);
        match ip {
            IpAddr::V4(v4) => node.a.push(v4),
            IpAddr::V6(v6) => node.aaaa.push(v6),
        }
    }

    fn add_ptr(&mut self, ip: IpAddr, target: &str) {
        let targets = self.ptr.entry(ip).or_default();
        if !targets.iter().any(|t| &**t == target) {
            targets.push(target.into());
        }
    }
}

/// Lowercase `_name._proto` prefix for a named port; `None` for unnamed ports, which get no SRV.
fn srv_prefix(name: Option<&String>, protocol: Option<&String>) -> Option<String> {
    let name = name.filter(|n| is_label(n))?;
    let proto = protocol.map_or("tcp".to_string(), |p| p.to_ascii_lowercase());
    Some(format!("_{}._{}", name.to_ascii_lowercase(), proto))
}

/// Builds the zone for `domain` from all Services and EndpointSlices, as the CoreDNS
/// `kubernetes` plugin serves it:
/// - `svc.ns.svc.<domain>`: ClusterIPs (A/AAAA); for headless Services the ready endpoint
///   addresses (all of them with `publishNotReadyAddresses`); for ExternalName a CNAME.
/// - `host.svc.ns.svc.<domain>` per headless endpoint, `host` being the endpoint's hostname or
///   its dashed address.
/// - `_port._proto.svc.ns.svc.<domain>` SRV for named ports (one per endpoint when headless).
/// - PTR for ClusterIPs and headless endpoint addresses.
///
/// Namespaces are known through the Services in them: `ns.svc.<domain>` exists (NODATA) when a
/// Service lives in `ns`, and is NXDOMAIN otherwise.
pub fn build_records(services: &[Service], slices: &[EndpointSlice], domain: &str) -> Records {
    let domain = normalize(domain);
    let mut b = Builder {
        domain: domain.clone(),
        names: HashMap::new(),
        ptr: HashMap::new(),
    };
    b.names.insert(domain.as_str().into(), Node::default());
    b.node(&format!("svc.{domain}"));
    b.node(&format!("pod.{domain}"));

    // Slices by (namespace, service) so that each Service finds its own in one lookup.
    let mut by_service: HashMap<(&str, &str), Vec<&EndpointSlice>> = HashMap::new();
    for slice in slices {
        let ns = slice.metadata.namespace.as_deref().unwrap_or("default");
        let Some(svc) = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_NAME_LABEL))
        else {
            continue;
        };
        by_service
            .entry((ns, svc.as_str()))
            .or_default()
            .push(slice);
    }

    for svc in services {
        let Some(name) = svc.metadata.name.as_deref() else {
            continue;
        };
        let ns = svc.metadata.namespace.as_deref().unwrap_or("default");
        if !is_label(name) || !is_label(ns) {
            continue;
        }
        let Some(spec) = svc.spec.as_ref() else {
            continue;
        };
        let base = format!("{name}.{ns}.svc.{domain}").to_ascii_lowercase();
        b.node(&base);

        if spec.type_.as_deref() == Some("ExternalName") {
            if let Some(target) = spec.external_name.as_deref().map(normalize) {
                if !target.is_empty() {
                    b.node(&base).cname = Some(target.into());
                }
            }
            continue;
        }

        let headless = spec.cluster_ip.as_deref() == Some("None");
        if !headless {
            let ips = spec
                .cluster_ips
                .clone()
                .unwrap_or_else(|| spec.cluster_ip.iter().cloned().collect());
            for ip in ips.iter().filter_map(|s| s.parse::<IpAddr>().ok()) {
                b.add_ip(&base, ip);
                b.add_ptr(ip, &base);
            }
            for port in spec.ports.iter().flatten() {
                if let Some(prefix) = srv_prefix(port.name.as_ref(), port.protocol.as_ref()) {
                    let srv = Srv {
                        priority: 0,
                        weight: 100,
                        port: port.port as u16,
                        target: base.as_str().into(),
                    };
                    b.node(&format!("{prefix}.{base}")).srv.push(srv);
                }
            }
            continue;
        }

        let publish_not_ready = spec.publish_not_ready_addresses.unwrap_or(false);
        for slice in by_service.get(&(ns, name)).into_iter().flatten() {
            if slice.address_type != "IPv4" && slice.address_type != "IPv6" {
                continue; // FQDN slices are deprecated and carry no addresses to serve
            }
            for ep in &slice.endpoints {
                // A missing condition means "unknown", which the API says to treat as ready.
                let ready = ep.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
                if !ready && !publish_not_ready {
                    continue;
                }
                let hostname = ep.hostname.as_deref().filter(|h| is_label(h));
                for ip in ep.addresses.iter().filter_map(|s| s.parse::<IpAddr>().ok()) {
                    let host = hostname.map_or_else(|| dashed(ip), str::to_ascii_lowercase);
                    let ep_name = format!("{host}.{base}");
                    b.add_ip(&base, ip);
                    b.add_ip(&ep_name, ip);
                    b.add_ptr(ip, &ep_name);
                    for port in slice.ports.iter().flatten() {
                        let (Some(prefix), Some(p)) = (
                            srv_prefix(port.name.as_ref(), port.protocol.as_ref()),
                            port.port,
                        ) else {
                            continue;
                        };
                        let srv = Srv {
                            priority: 0,
                            weight: 0,
                            port: p as u16,
                            target: ep_name.as_str().into(),
                        };
                        b.node(&format!("{prefix}.{base}")).srv.push(srv);
                    }
                }
            }
        }
    }

    for node in b.names.values_mut() {
        // The same endpoint can sit in two slices while the controller moves it; serve it once.
        node.a.sort_unstable();
        node.a.dedup();
        node.aaaa.sort_unstable();
        node.aaaa.dedup();
        node.srv
            .sort_by(|x, y| (&x.target, x.port).cmp(&(&y.target, y.port)));
        node.srv
            .dedup_by(|x, y| x.target == y.target && x.port == y.port);
        // CoreDNS spreads 100 across the records of one priority.
        let weight = (100 / node.srv.len().max(1)).max(1) as u16;
        node.srv.iter_mut().for_each(|s| s.weight = weight);
    }
    for targets in b.ptr.values_mut() {
        targets.sort();
    }

    let serial = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_secs() as u32);
    Records {
        zone: Arc::new(Zone {
            soa_mname: format!("ns.dns.{domain}").into(),
            soa_rname: format!("hostmaster.{domain}").into(),
            domain: domain.into(),
            names: b.names,
            ptr: b.ptr,
            serial,
        }),
    }
}
