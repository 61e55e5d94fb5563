//! From API objects to a [`Routes`] snapshot: class selection, annotations, Service port and
//! EndpointSlice resolution, TLS certificates.
//!
//! Problems are never fatal: a broken path, a missing Service or Secret becomes a [`Warning`]
//! (for events or logs) and the rest of the cluster's Ingresses keep working.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::matcher::{HostRoutes, PathMatch, PathRoute, RouteTable};
use super::rewrite::{compile_path_regex, has_regex_chars, Rewrite};
use super::tls::CertTable;

/// Legacy class annotation, still honoured by every controller.
const CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";
const REWRITE_TARGET: &str = "nginx.ingress.kubernetes.io/rewrite-target";
const USE_REGEX: &str = "nginx.ingress.kubernetes.io/use-regex";
const SSL_REDIRECT: &str = "nginx.ingress.kubernetes.io/ssl-redirect";
const FORCE_SSL_REDIRECT: &str = "nginx.ingress.kubernetes.io/force-ssl-redirect";
/// Label linking an EndpointSlice to its Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// How long an endpoint that refused a connection is tried last (nginx's fail_timeout is 10 s;
/// shorter here because pod endpoints come back quickly and the snapshot is rebuilt anyway).
const DOWN_FOR: Duration = Duration::from_secs(5);

/// An immutable routing snapshot; clones share it, so swapping one in is a pointer copy.
#[derive(Clone, Default)]
pub struct Routes {
    pub(crate) table: Arc<RouteTable>,
    pub(crate) certs: Arc<CertTable>,
}

impl Routes {
    /// Number of distinct hosts with rules (exact and wildcard), for logs.
    pub fn host_count(&self) -> usize {
        self.table.exact.len() + self.table.wildcard.len()
    }

    /// Number of paths over all hosts, including host-less rules.
    pub fn path_count(&self) -> usize {
        self.table
            .exact
            .values()
            .map(HostRoutes::len)
            .sum::<usize>()
            + self
                .table
                .wildcard
                .values()
                .map(HostRoutes::len)
                .sum::<usize>()
            + self.table.any.len()
    }
}

impl fmt::Debug for Routes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Routes")
            .field("hosts", &self.host_count())
            .field("paths", &self.path_count())
            .field("certificates", &self.certs.len())
            .finish()
    }
}

/// A problem found while building routes, attributed to one Ingress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// `namespace/name` of the Ingress.
    pub ingress: String,
    /// What is wrong, lowercase.
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ingress {}: {}", self.ingress, self.message)
    }
}

/// One Service port's ready endpoints, shared by every path that names it so that round-robin
/// spans all of them.
#[derive(Debug)]
pub(crate) struct Backend {
    /// `namespace/service:port`, for logs and tests.
    pub(crate) name: String,
    pub(crate) endpoints: Vec<SocketAddr>,
    next: AtomicUsize,
    /// Per endpoint: milliseconds (since [`epoch`]) until which it is tried only as a last resort.
    down_until: Box<[AtomicU64]>,
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    epoch().elapsed().as_millis() as u64
}

impl Backend {
    pub(crate) fn new(name: String, endpoints: Vec<SocketAddr>) -> Self {
        let down_until = endpoints.iter().map(|_| AtomicU64::new(0)).collect();
        Backend {
            name,
            endpoints,
            next: AtomicUsize::new(0),
            down_until,
        }
    }

    /// Endpoint indices to try for one request, at most `max`: round-robin from a rotating start,
    /// endpoints that recently refused connections last.
    pub(crate) fn candidates(&self, max: usize) -> Candidates<'_> {
        let start = if self.endpoints.len() > 1 {
            self.next.fetch_add(1, Relaxed)
        } else {
            0
        };
        Candidates {
            backend: self,
            start,
            step: 0,
            left: max.min(self.endpoints.len()),
            now: None,
        }
    }

    /// Records that connecting to endpoint `idx` failed.
    pub(crate) fn mark_down(&self, idx: usize) {
        if let Some(slot) = self.down_until.get(idx) {
            slot.store(now_ms() + DOWN_FOR.as_millis() as u64, Relaxed);
        }
    }
}

/// Iterator returned by [`Backend::candidates`]: two passes over the endpoints, healthy first.
pub(crate) struct Candidates<'a> {
    backend: &'a Backend,
    start: usize,
    step: usize,
    left: usize,
    now: Option<u64>,
}

impl Iterator for Candidates<'_> {
    type Item = (usize, SocketAddr);

    fn next(&mut self) -> Option<Self::Item> {
        let n = self.backend.endpoints.len();
        while self.left > 0 && self.step < 2 * n {
            let pass = self.step / n;
            let idx = (self.start + self.step) % n;
            self.step += 1;
            let until = self.backend.down_until[idx].load(Relaxed);
            let down = until != 0 && until > *self.now.get_or_insert_with(now_ms);
            if down == (pass == 1) {
                self.left -= 1;
                return Some((idx, self.backend.endpoints[idx]));
            }
        }
        None
    }
}

/// True when the Ingress is for this controller: the legacy annotation decides if present,
/// then `spec.ingressClassName`, and an Ingress naming no class is ours when we are the
/// default class.
pub fn is_ours(ingress: &Ingress, class: &str, default_class: bool) -> bool {
    if let Some(c) = annotation(ingress, CLASS_ANNOTATION) {
        return c == class;
    }
    match ingress
        .spec
        .as_ref()
        .and_then(|s| s.ingress_class_name.as_deref())
    {
        Some(c) => c == class,
        None => default_class,
    }
}

fn annotation<'a>(ingress: &'a Ingress, key: &str) -> Option<&'a str> {
    ingress
        .metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

fn key(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> (&str, &str) {
    (
        meta.namespace.as_deref().unwrap_or("default"),
        meta.name.as_deref().unwrap_or(""),
    )
}

/// Builds the routing snapshot from the cluster's objects (all namespaces).
///
/// Only Ingresses of `class` are used (see [`is_ours`]). Older Ingresses win conflicts (same
/// host and path, two default backends, two certificates for one host), as ingress-nginx does.
pub fn build_routes(
    ingresses: &[Ingress],
    services: &[Service],
    slices: &[EndpointSlice],
    secrets: &[Secret],
    class: &str,
    default_class: bool,
) -> (Routes, Vec<Warning>) {
    let mut ours: Vec<&Ingress> = ingresses
        .iter()
        .filter(|i| is_ours(i, class, default_class) && i.metadata.deletion_timestamp.is_none())
        .collect();
    ours.sort_by(|a, b| {
        let ta = a.metadata.creation_timestamp.as_ref().map(|t| t.0);
        let tb = b.metadata.creation_timestamp.as_ref().map(|t| t.0);
        ta.cmp(&tb)
            .then_with(|| key(&a.metadata).cmp(&key(&b.metadata)))
    });

    let mut b = Builder {
        services: services.iter().map(|s| (key(&s.metadata), s)).collect(),
        slices: HashMap::new(),
        secrets: secrets.iter().map(|s| (key(&s.metadata), s)).collect(),
        backends: HashMap::new(),
        warnings: Vec::new(),
    };
    for slice in slices {
        let ns = slice.metadata.namespace.as_deref().unwrap_or("default");
        let labels = slice.metadata.labels.as_ref();
        if let Some(svc) = labels.and_then(|l| l.get(SERVICE_NAME_LABEL)) {
            b.slices.entry((ns, svc.as_str())).or_default().push(slice);
        }
    }

    let mut certs = CertTable::default();
    let mut tls_hosts: HashSet<String> = HashSet::new();
    for ing in &ours {
        b.add_tls(ing, &mut certs, &mut tls_hosts);
    }

    let mut table = RouteTable::default();
    let mut seen: HashSet<(String, String)> = HashSet::new();
    for ing in &ours {
        b.add_rules(ing, &mut table, &mut seen, &tls_hosts);
    }
    table.sort();
    let routes = Routes {
        table: Arc::new(table),
        certs: Arc::new(certs),
    };
    (routes, b.warnings)
}

/// Rule hosts of an Ingress, normalised (used when a `tls` entry lists no hosts).
fn rule_hosts(ing: &Ingress) -> Vec<String> {
    let rules = ing.spec.as_ref().and_then(|s| s.rules.as_ref());
    rules
        .into_iter()
        .flatten()
        .filter_map(|r| r.host.as_deref())
        .map(str::to_ascii_lowercase)
        .collect()
}

/// True when `host` (a rule host, possibly a wildcard) has TLS configured.
fn host_has_tls(host: &str, tls_hosts: &HashSet<String>) -> bool {
    if tls_hosts.contains(host) {
        return true;
    }
    // A wildcard TLS entry covers concrete hosts one label below it.
    match host.split_once('.') {
        Some((label, suffix)) if label != "*" => tls_hosts.contains(&format!("*.{suffix}")),
        _ => false,
    }
}

struct Builder<'a> {
    services: HashMap<(&'a str, &'a str), &'a Service>,
    slices: HashMap<(&'a str, &'a str), Vec<&'a EndpointSlice>>,
    secrets: HashMap<(&'a str, &'a str), &'a Secret>,
    /// Dedup so that paths naming the same Service port share one round-robin.
    backends: HashMap<(String, String, String), Arc<Backend>>,
    warnings: Vec<Warning>,
}

impl<'a> Builder<'a> {
    fn warn(&mut self, ing: &Ingress, message: String) {
        let (ns, name) = key(&ing.metadata);
        self.warnings.push(Warning {
            ingress: format!("{ns}/{name}"),
            message,
        });
    }

    fn add_tls(&mut self, ing: &Ingress, certs: &mut CertTable, tls_hosts: &mut HashSet<String>) {
        let ns = key(&ing.metadata).0;
        let Some(entries) = ing.spec.as_ref().and_then(|s| s.tls.as_ref()) else {
            return;
        };
        for entry in entries {
            let hosts: Vec<String> = match &entry.hosts {
                Some(h) if !h.is_empty() => h.iter().map(|h| h.to_ascii_lowercase()).collect(),
                _ => rule_hosts(ing),
            };
            tls_hosts.extend(hosts.iter().cloned());
            let Some(secret_name) = entry.secret_name.as_deref() else {
                // No secret: the host is served with the default certificate, as upstream does.
                continue;
            };
            let Some(secret) = self.secrets.get(&(ns, secret_name)).copied() else {
                self.warn(
                    ing,
                    format!(
                        "tls secret {ns}/{secret_name} not found, using the default certificate"
                    ),
                );
                continue;
            };
            let data = secret.data.as_ref();
            let pem = |k: &str| data.and_then(|d| d.get(k)).map(|v| v.0.as_slice());
            let (Some(crt), Some(key)) = (pem("tls.crt"), pem("tls.key")) else {
                self.warn(
                    ing,
                    format!("tls secret {ns}/{secret_name} lacks tls.crt or tls.key"),
                );
                continue;
            };
            let what = format!("secret {ns}/{secret_name}");
            match super::tls::certified_key_from_pem(&what, crt, key) {
                Ok(ck) => {
                    let ck = Arc::new(ck);
                    for host in &hosts {
                        if !certs.insert(host, ck.clone()) {
                            self.warn(ing, format!("tls host {host} already has a certificate from an older ingress, {what} ignored for it"));
                        }
                    }
                }
                Err(e) => self.warn(ing, format!("{e}, using the default certificate")),
            }
        }
    }

    fn add_rules(
        &mut self,
        ing: &Ingress,
        table: &mut RouteTable,
        seen: &mut HashSet<(String, String)>,
        tls_hosts: &HashSet<String>,
    ) {
        let Some(spec) = ing.spec.as_ref() else {
            return;
        };
        let (ns, name) = key(&ing.metadata);
        let source: Arc<str> = Arc::from(format!("{ns}/{name}"));
        let rewrite_target = annotation(ing, REWRITE_TARGET).filter(|t| !t.is_empty());
        let use_regex = annotation(ing, USE_REGEX) == Some("true");
        let ssl_redirect = annotation(ing, SSL_REDIRECT) != Some("false");
        let force_ssl = annotation(ing, FORCE_SSL_REDIRECT) == Some("true");

        if let Some(def) = &spec.default_backend {
            if table.default_backend.is_some() {
                self.warn(
                    ing,
                    "defaultBackend ignored, an older ingress already sets one".into(),
                );
            } else if let Some(backend) = self.backend(ing, def) {
                table.default_backend = Some(backend);
            }
        }

        for rule in spec.rules.iter().flatten() {
            let host = rule.host.as_deref().unwrap_or("").to_ascii_lowercase();
            if host.contains('*') && (!host.starts_with("*.") || host[2..].contains('*')) {
                self.warn(
                    ing,
                    format!("host {host}: a wildcard must be the whole first label"),
                );
                continue;
            }
            let redirect =
                force_ssl || (ssl_redirect && !host.is_empty() && host_has_tls(&host, tls_hosts));
            let Some(http) = &rule.http else { continue };
            for p in &http.paths {
                let path = p.path.as_deref().filter(|p| !p.is_empty()).unwrap_or("/");
                let regex = p.path_type != "Exact"
                    && (use_regex || (rewrite_target.is_some() && has_regex_chars(path)));
                if !regex && !path.starts_with('/') {
                    self.warn(
                        ing,
                        format!("host {host:?} path {path:?}: must start with /"),
                    );
                    continue;
                }
                let matcher = match p.path_type.as_str() {
                    "Exact" => PathMatch::Exact(path.to_string()),
                    "Prefix" | "ImplementationSpecific" if !regex => PathMatch::prefix(path),
                    "Prefix" | "ImplementationSpecific" => match compile_path_regex(path) {
                        Ok(re) => PathMatch::Regex(re),
                        Err(e) => {
                            self.warn(ing, format!("host {host:?} path {path:?}: bad regex: {e}"));
                            continue;
                        }
                    },
                    other => {
                        self.warn(
                            ing,
                            format!("host {host:?} path {path:?}: unknown pathType {other:?}"),
                        );
                        continue;
                    }
                };
                let dedup = (host.clone(), format!("{}:{path}", p.path_type));
                if !seen.insert(dedup) {
                    self.warn(ing, format!("host {host:?} path {path:?} ({}) already defined by an older ingress, ignored", p.path_type));
                    continue;
                }
                let rewrite = match rewrite_target.map(|t| Rewrite::new(path, regex, t)) {
                    None => None,
                    Some(Ok(rw)) => Some(rw),
                    Some(Err(e)) => {
                        self.warn(
                            ing,
                            format!("host {host:?} path {path:?}: rewrite-target: {e}"),
                        );
                        continue;
                    }
                };
                let Some(backend) = self.backend(ing, &p.backend) else {
                    continue;
                };
                let route = PathRoute {
                    matcher,
                    backend,
                    rewrite,
                    ssl_redirect: redirect,
                    source: source.clone(),
                };
                let level = if host.is_empty() {
                    &mut table.any
                } else if let Some(suffix) = host.strip_prefix("*.") {
                    table.wildcard.entry(suffix.to_string()).or_default()
                } else {
                    table.exact.entry(host.clone()).or_default()
                };
                level.push(route);
            }
        }
    }

    /// Resolves an Ingress backend to its ready endpoints. A backend that names something
    /// missing still yields a (possibly empty) Backend, so that requests get 503 rather than
    /// falling through to another rule; `None` only for backends we cannot serve at all.
    fn backend(&mut self, ing: &Ingress, backend: &IngressBackend) -> Option<Arc<Backend>> {
        let ns = key(&ing.metadata).0;
        let Some(svc_ref) = &backend.service else {
            self.warn(
                ing,
                "resource backends are not supported, path ignored".into(),
            );
            return None;
        };
        let port_ref = svc_ref.port.as_ref();
        let port_key = match (
            port_ref.and_then(|p| p.number),
            port_ref.and_then(|p| p.name.as_deref()),
        ) {
            (Some(n), _) => n.to_string(),
            (None, Some(name)) => name.to_string(),
            (None, None) => {
                self.warn(ing, format!("backend service {} has no port", svc_ref.name));
                return None;
            }
        };
        let cache_key = (ns.to_string(), svc_ref.name.clone(), port_key.clone());
        if let Some(b) = self.backends.get(&cache_key) {
            return Some(b.clone());
        }
        let name = format!("{ns}/{}:{port_key}", svc_ref.name);
        let endpoints = match self.endpoints(ns, &svc_ref.name, &port_key) {
            Ok(eps) => eps,
            Err(msg) => {
                self.warn(ing, msg);
                Vec::new()
            }
        };
        let b = Arc::new(Backend::new(name, endpoints));
        self.backends.insert(cache_key, b.clone());
        Some(b)
    }

    /// Ready `podIP:targetPort` pairs of one Service port, sorted and deduplicated.
    fn endpoints(
        &self,
        ns: &str,
        svc_name: &str,
        port_key: &str,
    ) -> Result<Vec<SocketAddr>, String> {
        let svc = self
            .services
            .get(&(ns, svc_name))
            .ok_or_else(|| format!("service {ns}/{svc_name} not found"))?;
        let spec = svc.spec.as_ref();
        if spec.and_then(|s| s.type_.as_deref()) == Some("ExternalName") {
            return Err(format!(
                "service {ns}/{svc_name} is ExternalName, not supported"
            ));
        }
        let port = spec
            .and_then(|s| s.ports.as_ref())
            .into_iter()
            .flatten()
            .find(|p| match port_key.parse::<i32>() {
                Ok(n) => p.port == n,
                Err(_) => p.name.as_deref() == Some(port_key),
            })
            .ok_or_else(|| format!("service {ns}/{svc_name} has no port {port_key}"))?;
        let port_name = port.name.as_deref().unwrap_or("");
        let mut out: Vec<SocketAddr> = Vec::new();
        for slice in self.slices.get(&(ns, svc_name)).into_iter().flatten() {
            if !matches!(slice.address_type.as_str(), "IPv4" | "IPv6") {
                continue;
            }
            // EndpointSlice ports carry the Service port's name with the resolved target port,
            // which is how named targetPorts (different per pod) get resolved.
            let target = slice
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref().unwrap_or("") == port_name)
                .and_then(|p| p.port)
                .or(match &port.target_port {
                    Some(IntOrString::Int(n)) => Some(*n),
                    None => Some(port.port),
                    Some(IntOrString::String(_)) => None,
                });
            let Some(target) = target.and_then(|t| u16::try_from(t).ok()) else {
                continue;
            };
            for ep in &slice.endpoints {
                // A nil `ready` means unknown, which consumers are told to treat as ready.
                let ready = ep.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
                if !ready {
                    continue;
                }
                for addr in &ep.addresses {
                    if let Ok(ip) = addr.parse::<IpAddr>() {
                        out.push(SocketAddr::new(ip, target));
                    }
                }
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }
}
