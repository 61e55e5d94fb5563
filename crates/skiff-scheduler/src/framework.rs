//! The scheduling framework: the state a cycle sees ([`NodeInfo`], [`Snapshot`]), the per-pod
//! [`CycleState`] that PreFilter/PreScore fill, and the plugin traits.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::StorageClass;

use crate::counts::CountCache;
use crate::plugins::{inter_pod_affinity, pod_topology_spread, volume_binding};
use crate::pod::Pod;

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

impl Resources {
    fn add(&mut self, r: &Resources) {
        self.milli_cpu += r.milli_cpu;
        self.memory += r.memory;
        self.pods += 1;
    }

    fn sub(&mut self, r: &Resources) {
        self.milli_cpu -= r.milli_cpu;
        self.memory -= r.memory;
        self.pods -= 1;
    }
}

/// What a pod asks for: the max of (sum of containers) and (each init container), plus overhead.
pub fn pod_requests(pod: &Pod) -> Resources {
    let Some(spec) = pod.spec.as_ref() else { return Resources { pods: 1, ..Default::default() } };
    let requests = |c: &crate::pod::Container| c.resources.as_ref().and_then(|r| r.requests).unwrap_or_default();
    let mut sum = Resources { pods: 1, ..Default::default() };
    for r in spec.containers.iter().map(requests) {
        sum.milli_cpu += r.milli_cpu;
        sum.memory += r.memory;
    }
    for r in spec.init_containers.iter().flatten().map(requests) {
        sum.milli_cpu = sum.milli_cpu.max(r.milli_cpu);
        sum.memory = sum.memory.max(r.memory);
    }
    let overhead = spec.overhead.as_ref().map(crate::pod::Requests::from_map).unwrap_or_default();
    sum.milli_cpu += overhead.milli_cpu;
    sum.memory += overhead.memory;
    sum
}

/// A pod's priority (`spec.priority`, set by Priority admission; 0 when absent).
pub fn pod_priority(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

/// An empty label map, for objects without labels.
pub(crate) static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

/// Labels of an object's metadata, or an empty map.
pub fn labels_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> &BTreeMap<String, String> {
    meta.labels.as_ref().unwrap_or(&NO_LABELS)
}

/// A node with what is already placed on it.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    /// Position in the snapshot (indexes per-node counts).
    pub index: usize,
    /// The node.
    pub node: Arc<Node>,
    name: String,
    /// Allocatable resources.
    pub allocatable: Resources,
    /// Sum of requests of pods on it.
    pub requested: Resources,
    /// Pods on it, with their requests (parsed once).
    pub pods: Vec<(Arc<Pod>, Resources)>,
    /// `spec.unschedulable` (cordoned), read here rather than through the Node: the first
    /// filter to touch each of thousands of nodes per pod paid for that pointer chase.
    pub unschedulable: bool,
    /// Whether the node has any NoSchedule or NoExecute taint (most have none, and then
    /// TaintToleration's filter need not look into the Node).
    pub hard_taints: bool,
}

impl NodeInfo {
    /// Build from a node and the pods bound to it.
    pub fn new(node: Arc<Node>, pods: Vec<Arc<Pod>>) -> Self {
        let alloc = node.status.as_ref().and_then(|s| s.allocatable.as_ref().or(s.capacity.as_ref()));
        let cpu_memory = alloc.map(crate::pod::Requests::from_map).unwrap_or_default();
        let allocatable = Resources {
            milli_cpu: cpu_memory.milli_cpu,
            memory: cpu_memory.memory,
            pods: alloc.and_then(|m| m.get("pods")).and_then(|v| v.0.parse().ok()).unwrap_or(110),
        };
        let name = node.metadata.name.clone().unwrap_or_default();
        let unschedulable = node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false);
        let hard_taints = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.as_ref())
            .is_some_and(|ts| ts.iter().any(|t| t.effect == "NoSchedule" || t.effect == "NoExecute"));
        let pods_on = Vec::with_capacity(pods.len());
        let mut info =
            Self { index: 0, node, name, allocatable, requested: Resources::default(), pods: pods_on, unschedulable, hard_taints };
        for p in pods {
            info.assume(p);
        }
        info
    }

    /// Node name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Node labels.
    pub fn labels(&self) -> &BTreeMap<String, String> {
        labels_of(&self.node.metadata)
    }

    /// Account a pod placed (or assumed) onto this node.
    pub fn assume(&mut self, pod: Arc<Pod>) {
        let r = pod_requests(&pod);
        self.requested.add(&r);
        self.pods.push((pod, r));
    }

    /// Take a pod off this node (preemption's what-if); true when it was there.
    pub fn remove(&mut self, uid: &str) -> bool {
        let Some(i) = self.pods.iter().position(|(p, _)| p.metadata.uid.as_deref() == Some(uid)) else { return false };
        let (_, r) = self.pods.swap_remove(i);
        self.requested.sub(&r);
        true
    }
}

/// Everything a scheduling batch sees: nodes with their pods, and the other objects plugins
/// read. Built once per batch from the informer caches and kept current as pods are assumed,
/// so per-pod work stays proportional to the nodes examined, not to the whole cluster.
#[derive(Default)]
pub struct Snapshot {
    /// Ready nodes.
    pub nodes: Vec<NodeInfo>,
    /// Labels of each namespace (for affinity terms' namespaceSelector).
    pub namespaces: HashMap<String, BTreeMap<String, String>>,
    /// Claims by namespace/name.
    pub claims: HashMap<String, Arc<PersistentVolumeClaim>>,
    /// Volumes by name.
    pub volumes: Vec<Arc<PersistentVolume>>,
    /// Storage classes by name.
    pub classes: HashMap<String, Arc<StorageClass>>,
    /// Disruption budgets (preemption prefers victims that do not break them).
    pub pdbs: Vec<Arc<PodDisruptionBudget>>,
    /// Placed pods carrying pod (anti-)affinity terms, grouped by identical terms with
    /// their count per node: the symmetric checks of InterPodAffinity look only at these.
    pub with_affinity: inter_pod_affinity::PlacedTerms,
    /// Per-topology-value counts of pods matching a selector, shared by InterPodAffinity and
    /// PodTopologySpread and updated on every assume.
    pub counts: CountCache,
    /// Each node's domain (value) for a topology key, as small integers.
    pub domains: DomainCache,
    /// Node count and how many nodes hold each image (ImageLocality).
    pub images: Arc<(usize, HashMap<String, usize>)>,
}

impl Snapshot {
    /// Build from ready nodes, the pods bound to each (by node name) and namespace labels.
    pub fn new(
        nodes: Vec<Arc<Node>>,
        mut pods_by_node: HashMap<String, Vec<Arc<Pod>>>,
        namespaces: HashMap<String, BTreeMap<String, String>>,
    ) -> Self {
        let mut snap = Snapshot { namespaces, ..Default::default() };
        for n in nodes {
            let pods = pods_by_node.remove(n.metadata.name.as_deref().unwrap_or("")).unwrap_or_default();
            let mut info = NodeInfo::new(n, pods);
            info.index = snap.nodes.len();
            for (p, _) in &info.pods {
                if let Some(t) = inter_pod_affinity::resolve_placed(p, &snap.namespaces) {
                    snap.with_affinity.add(info.index, t);
                }
            }
            snap.nodes.push(info);
        }
        snap.images = Arc::new((snap.nodes.len(), crate::plugins::image_locality::spread(&snap.nodes)));
        snap
    }

    /// Place `pod` on node `i` for the rest of the batch.
    pub fn assume(&mut self, i: usize, pod: Arc<Pod>) {
        self.counts.add(&self.nodes[i], &pod);
        if let Some(t) = inter_pod_affinity::resolve_placed(&pod, &self.namespaces) {
            self.with_affinity.add(i, t);
        }
        self.nodes[i].assume(pod);
    }
}

/// The domains of one topology key: node index -> domain id (`NO_DOMAIN` when the node lacks
/// the key), and each id's value. Filters compare integers instead of looking each node's
/// label up and hashing its value, for every node of every pod.
#[derive(Debug, Default)]
pub struct Domains {
    /// Domain id of each node, by snapshot index.
    pub of_node: Vec<u32>,
    /// Value of each domain id.
    pub values: Vec<String>,
}

/// [`Domains::of_node`] for a node without the key.
pub const NO_DOMAIN: u32 = u32::MAX;

/// [`Domains`] per topology key, built on first use (nodes do not change within a snapshot).
#[derive(Default)]
pub struct DomainCache {
    by_key: std::sync::Mutex<HashMap<String, Arc<Domains>>>,
}

impl DomainCache {
    /// The domains of `key` over `nodes`.
    pub fn get(&self, nodes: &[NodeInfo], key: &str) -> Arc<Domains> {
        let mut by_key = self.by_key.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(d) = by_key.get(key) {
            return d.clone();
        }
        let mut ids: HashMap<&str, u32> = HashMap::new();
        let mut d = Domains { of_node: vec![NO_DOMAIN; nodes.len()], values: Vec::new() };
        for n in nodes {
            if let Some(v) = n.labels().get(key) {
                let next = d.values.len() as u32;
                let id = *ids.entry(v.as_str()).or_insert(next);
                if id == next {
                    d.values.push(v.clone());
                }
                d.of_node[n.index] = id;
            }
        }
        let d = Arc::new(d);
        by_key.insert(key.to_string(), d.clone());
        d
    }
}

/// Per-pod state filled by PreFilter and PreScore, read by Filter and Score (upstream's
/// CycleState, with a typed slot per plugin instead of a string-keyed map).
#[derive(Debug, Default, Clone)]
pub struct CycleState {
    /// The pod's requests, parsed once.
    pub requests: Resources,
    /// InterPodAffinity's PreFilter result.
    pub affinity: Option<Arc<inter_pod_affinity::PreFilterState>>,
    /// InterPodAffinity's PreScore result.
    pub affinity_score: Option<Arc<inter_pod_affinity::ScoreState>>,
    /// PodTopologySpread's PreFilter result.
    pub spread: Option<Arc<pod_topology_spread::PreFilterState>>,
    /// PodTopologySpread's PreScore result.
    pub spread_score: Option<Arc<pod_topology_spread::ScoreState>>,
    /// ImageLocality's view of the snapshot's images.
    pub images: Option<Arc<(usize, HashMap<String, usize>)>>,
    /// VolumeBinding's PreFilter result.
    pub volumes: Option<Arc<volume_binding::PreFilterState>>,
}

/// Joins the reasons of a filter that rejects a node for several at once (NodeResourcesFit:
/// `Insufficient cpu` and `Insufficient memory`); the FailedScheduling message counts each,
/// as upstream's does.
pub const REASON_SEPARATOR: char = '\n';

/// A Filter plugin: can `pod` run on `node`? `Err(reason)` explains why not (several reasons
/// joined by [`REASON_SEPARATOR`]).
pub trait FilterPlugin: Send + Sync {
    /// Plugin name, as upstream names it.
    fn name(&self) -> &'static str;
    /// Once per pod, before any node is filtered. `Err(reason)` rejects the pod everywhere.
    fn pre_filter(&self, _pod: &Pod, _snap: &Snapshot, _state: &mut CycleState) -> Result<(), String> {
        Ok(())
    }
    /// Check one node.
    fn filter(&self, state: &CycleState, pod: &Pod, node: &NodeInfo) -> Result<(), String>;
    /// Whether evicting pods from a node can cure this plugin's rejection `reason`
    /// (upstream's Unschedulable vs UnschedulableAndUnresolvable).
    fn resolvable_by_preemption(&self, _reason: &str) -> bool {
        false
    }
}

/// A Score plugin: 0..=100 after normalisation, higher is better.
pub trait ScorePlugin: Send + Sync {
    /// Plugin name.
    fn name(&self) -> &'static str;
    /// Once per pod, with the feasible nodes, before scoring.
    fn pre_score(&self, _pod: &Pod, _snap: &Snapshot, _feasible: &[usize], _state: &mut CycleState) {}
    /// Score one feasible node.
    fn score(&self, state: &CycleState, pod: &Pod, node: &NodeInfo) -> i64;
    /// Rescale raw scores of all feasible nodes to 0..=100.
    fn normalize(&self, _state: &CycleState, _scores: &mut [i64]) {}
}

/// Scale `scores` so the highest becomes 100 (or the lowest, when `reverse`), as upstream's
/// DefaultNormalizeScore does.
pub fn default_normalize(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0);
    if max == 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = 100);
        }
        return;
    }
    for s in scores.iter_mut() {
        *s = *s * 100 / max;
        if reverse {
            *s = 100 - *s;
        }
    }
}
