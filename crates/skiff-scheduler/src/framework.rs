//! The scheduling framework: the state a cycle sees ([`NodeInfo`]) and the plugin traits.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, Pod};
use skiff_api::quantity::Quantity;

/// Resources as milli-CPU and bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resources {
    /// CPU in millicores.
    pub milli_cpu: i64,
    /// Memory in bytes.
    pub memory: i64,
    /// Pod count.
    pub pods: i64,
}

fn q(map: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>, key: &str, milli: bool) -> i64 {
    map.and_then(|m| m.get(key))
        .and_then(|v| Quantity::parse(&v.0).ok())
        .map(|v| if milli { v.milli_value() } else { v.value() })
        .unwrap_or(0)
}

/// What a pod asks for: the max of (sum of containers) and (each init container), plus overhead.
pub fn pod_requests(pod: &Pod) -> Resources {
    let Some(spec) = pod.spec.as_ref() else { return Resources { pods: 1, ..Default::default() } };
    let mut sum = Resources { pods: 1, ..Default::default() };
    for c in &spec.containers {
        let r = c.resources.as_ref().and_then(|r| r.requests.as_ref());
        sum.milli_cpu += q(r, "cpu", true);
        sum.memory += q(r, "memory", false);
    }
    for c in spec.init_containers.iter().flatten() {
        let r = c.resources.as_ref().and_then(|r| r.requests.as_ref());
        sum.milli_cpu = sum.milli_cpu.max(q(r, "cpu", true));
        sum.memory = sum.memory.max(q(r, "memory", false));
    }
    sum.milli_cpu += q(spec.overhead.as_ref(), "cpu", true);
    sum.memory += q(spec.overhead.as_ref(), "memory", false);
    sum
}

/// A node with what is already placed on it.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    /// The node.
    pub node: Node,
    /// Allocatable resources.
    pub allocatable: Resources,
    /// Sum of requests of pods on it.
    pub requested: Resources,
    /// Pods on it.
    pub pods: Vec<Pod>,
}

impl NodeInfo {
    /// Build from a node and the pods bound to it.
    pub fn new(node: Node, pods: Vec<Pod>) -> Self {
        let alloc = node.status.as_ref().and_then(|s| s.allocatable.as_ref().or(s.capacity.as_ref()));
        let allocatable = Resources {
            milli_cpu: q(alloc, "cpu", true),
            memory: q(alloc, "memory", false),
            pods: alloc.and_then(|m| m.get("pods")).and_then(|v| v.0.parse().ok()).unwrap_or(110),
        };
        let mut requested = Resources::default();
        for p in &pods {
            let r = pod_requests(p);
            requested.milli_cpu += r.milli_cpu;
            requested.memory += r.memory;
            requested.pods += 1;
        }
        Self { node, allocatable, requested, pods }
    }

    /// Node name.
    pub fn name(&self) -> String {
        self.node.metadata.name.clone().unwrap_or_default()
    }

    /// Account a pod assumed onto this node in the current cycle.
    pub fn assume(&mut self, pod: &Pod) {
        let r = pod_requests(pod);
        self.requested.milli_cpu += r.milli_cpu;
        self.requested.memory += r.memory;
        self.requested.pods += 1;
        self.pods.push(pod.clone());
    }
}

/// A Filter plugin: can `pod` run on `node`? `Err(reason)` explains why not.
pub trait FilterPlugin: Send + Sync {
    /// Plugin name, as upstream names it.
    fn name(&self) -> &'static str;
    /// Check one node.
    fn filter(&self, pod: &Pod, node: &NodeInfo) -> Result<(), String>;
}

/// A Score plugin: 0..=100, higher is better.
pub trait ScorePlugin: Send + Sync {
    /// Plugin name.
    fn name(&self) -> &'static str;
    /// Score one feasible node.
    fn score(&self, pod: &Pod, node: &NodeInfo) -> i64;
}
