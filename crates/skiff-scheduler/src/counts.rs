//! Per-topology-value counts of placed pods matching (namespaces, label selector), computed
//! once per batch per distinct selector and kept current as pods are assumed. Upstream's
//! PreFilters recount the whole cluster for every pod; with one selector shared by the
//! replicas of a workload, this turns that O(pods) scan into a lookup.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::framework::{DomainCache, Domains, NodeInfo, NO_DOMAIN};
use crate::pod::Pod;
use crate::selector::{in_namespaces, matches, Namespaces};

/// Counts for one (namespaces, selector, topology key).
#[derive(Debug, Clone, Default)]
pub struct Counts {
    /// Matching pods on each node, by snapshot index.
    pub per_node: Vec<i32>,
    /// Matching pods on nodes that have the key.
    pub total: i32,
    /// The nodes' domains (values of the key).
    pub domains: Arc<Domains>,
    /// Matching pods per domain id of `domains` (nodes without the key are left out):
    /// filters that ask "any in this node's domain?" for thousands of nodes per pod index it.
    pub per_domain: Vec<i32>,
}

impl Counts {
    /// Matching pods per value of the key.
    pub fn per_value(&self) -> impl Iterator<Item = (&str, i32)> {
        self.domains.values.iter().map(String::as_str).zip(self.per_domain.iter().copied())
    }

    /// Matching pods in the domain of node `index` (0 when it lacks the key).
    pub fn in_domain_of(&self, index: usize) -> i32 {
        match self.domains.of_node.get(index) {
            Some(&id) if id != NO_DOMAIN => self.per_domain[id as usize],
            _ => 0,
        }
    }
}

struct Entry {
    namespaces: Namespaces,
    selector: LabelSelector,
    counts: Arc<Counts>,
}

/// The cache; lives in the batch's snapshot.
#[derive(Default)]
pub struct CountCache {
    entries: Mutex<HashMap<String, Entry>>,
}

/// Whether a placed pod counts: terminating pods do not (they are on their way out, which
/// also lets a preemptor stop seeing its victims).
pub fn pod_matches(pod: &Pod, namespaces: &Namespaces, selector: &LabelSelector) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && in_namespaces(namespaces, pod.metadata.namespace.as_deref().unwrap_or(""))
        && matches(selector, pod.labels())
}

impl CountCache {
    /// Counts of pods in `namespaces` matching `selector`, per value of `topology_key`.
    pub fn get(&self, nodes: &[NodeInfo], domains: &DomainCache, namespaces: &Namespaces, selector: &LabelSelector, topology_key: &str) -> Arc<Counts> {
        let key = format!("{namespaces:?}|{}|{topology_key}", serde_json::to_string(selector).unwrap_or_default());
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = entries.get(&key) {
            return e.counts.clone();
        }
        let domains = domains.get(nodes, topology_key);
        let mut c = Counts { per_node: vec![0; nodes.len()], per_domain: vec![0; domains.values.len()], domains, ..Default::default() };
        for n in nodes {
            let k = n.pods.iter().filter(|(p, _)| pod_matches(p, namespaces, selector)).count() as i32;
            c.per_node[n.index] = k;
            let id = c.domains.of_node[n.index];
            if id != NO_DOMAIN {
                c.per_domain[id as usize] += k;
                c.total += k;
            }
        }
        let counts = Arc::new(c);
        entries.insert(
            key,
            Entry { namespaces: namespaces.clone(), selector: selector.clone(), counts: counts.clone() },
        );
        counts
    }

    /// Account `pod` newly placed on `node`.
    pub fn add(&mut self, node: &NodeInfo, pod: &Pod) {
        let entries = self.entries.get_mut().unwrap_or_else(|e| e.into_inner());
        for e in entries.values_mut() {
            if !pod_matches(pod, &e.namespaces, &e.selector) {
                continue;
            }
            let c = Arc::make_mut(&mut e.counts);
            c.per_node[node.index] += 1;
            let id = c.domains.of_node[node.index];
            if id != NO_DOMAIN {
                c.per_domain[id as usize] += 1;
                c.total += 1;
            }
        }
    }
}
