//! The scheduler's own Pod: the fields of a v1 Pod that the plugins and the loop read, with
//! upstream's field names, decoded straight from the watch.
//!
//! Why not `k8s_openapi`'s Pod: the cache holds every pod in the cluster, and a typed Pod is
//! 2,176 bytes before anything is allocated (each `Container` another 2,120), so a stripped
//! copy of a small pod took ~5.5 KB and 10,000 pending pods ~57 MB of a server's heap
//! (heaptrack, docs/benchmarks.md). This type keeps the same paths (`pod.spec.containers`,
//! `c.resources.requests`, ...) so plugin code reads as it would upstream, and serde skips
//! every other field of the JSON without allocating it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{
    Affinity, ContainerPort, EphemeralVolumeSource, PersistentVolumeClaimVolumeSource, PodSchedulingGate, Toleration,
    TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::NamespaceResourceScope;
use serde::{Deserialize, Deserializer, Serialize};

/// A v1 Pod as the scheduler sees it.
///
/// Its labels are kept apart from `metadata` (which never holds them) and shared with other
/// pods that carry the same set ([`Recent`]): a pod's labels are a `BTreeMap` node of
/// room for eleven entries plus a string per key and value, ~700 bytes for three labels,
/// and the pods of one ReplicaSet (or one benchmark shard) all carry the same set. Read
/// them with [`Pod::labels`]; (de)serialised, they are in `metadata.labels` as usual.
///
/// The spec is shared the same way: pods made from one template have equal specs but for
/// `spec.nodeName`, which is therefore kept apart too ([`Pod::node_name`]); a spec is ~300
/// bytes inline plus its containers, a third of what a cached pod took.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(from = "PodJson", into = "PodJson")]
pub struct Pod {
    /// Standard metadata without labels (annotations and managed fields are dropped when
    /// cached).
    pub metadata: ObjectMeta,
    /// `metadata.labels`, shared.
    pub labels: Option<Arc<BTreeMap<String, String>>>,
    /// `spec.nodeName` (empty or absent while the pod waits for scheduling).
    pub node_name: Option<String>,
    /// What the plugins read of the spec, shared; its own `nodeName` is always empty.
    pub spec: Option<Arc<PodSpec>>,
    /// What the loop reads of the status.
    pub status: Option<PodStatus>,
}

impl Pod {
    /// The pod's labels (an empty map when it has none).
    pub fn labels(&self) -> &BTreeMap<String, String> {
        self.labels.as_deref().unwrap_or(&crate::framework::NO_LABELS)
    }

    /// `spec.nodeName`, empty while unbound.
    pub fn node_name(&self) -> &str {
        self.node_name.as_deref().unwrap_or("")
    }
}

/// The wire form of [`Pod`].
#[derive(Clone, Deserialize, Serialize)]
struct PodJson {
    #[serde(default)]
    metadata: ObjectMeta,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    spec: Option<PodSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    status: Option<PodStatus>,
}

impl From<PodJson> for Pod {
    fn from(mut p: PodJson) -> Self {
        let labels = p.metadata.labels.take().map(|l| LABEL_SETS.share(l));
        let node_name = p.spec.as_mut().and_then(|s| s.node_name.take());
        let spec = p.spec.map(|s| SPECS.share(s));
        Pod { metadata: p.metadata, labels, node_name, spec, status: p.status }
    }
}

impl From<Pod> for PodJson {
    fn from(mut p: Pod) -> Self {
        p.metadata.labels = p.labels.map(|l| (*l).clone());
        let spec = p.spec.map(|s| PodSpec { node_name: p.node_name, ..(*s).clone() });
        PodJson { metadata: p.metadata, spec, status: p.status }
    }
}

/// Values decoded recently, most recent first, so that cached pods carrying an equal value
/// share one copy of it. A short list is enough: pods arrive grouped by their controller (a
/// ReplicaSet's pods are created together), and most carry one of a few toleration lists.
struct Recent<T> {
    seen: Mutex<Vec<Arc<T>>>,
    capacity: usize,
}

impl<T: PartialEq> Recent<T> {
    const fn new(capacity: usize) -> Self {
        Recent { seen: Mutex::new(Vec::new()), capacity }
    }

    /// `value`, or an equal one decoded recently.
    fn share(&self, value: T) -> Arc<T> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let shared = match seen.iter().position(|s| **s == value) {
            Some(i) => seen.remove(i),
            None => Arc::new(value),
        };
        seen.insert(0, shared.clone());
        seen.truncate(self.capacity);
        shared
    }
}

/// Label sets decoded recently ([`Pod::labels`]).
static LABEL_SETS: Recent<BTreeMap<String, String>> = Recent::new(32);

/// Specs decoded recently, without their node names ([`Pod::spec`]).
static SPECS: Recent<PodSpec> = Recent::new(16);

/// The spec fields scheduling depends on.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    /// Decoded here, then moved to [`Pod::node_name`]: read that one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    node_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preemption_policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    /// Boxed: most pods have none, and `Affinity` is 144 bytes inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Box<Affinity>>,
    /// Shared between pods with the same list ([`shared_tolerations`]).
    #[serde(default, deserialize_with = "shared_tolerations", serialize_with = "plain_tolerations", skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Arc<Vec<Toleration>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology_spread_constraints: Option<Vec<TopologySpreadConstraint>>,
    /// Volumes: only claims and ephemeral volumes (what VolumeBinding reads).
    #[serde(default, deserialize_with = "claim_volumes", skip_serializing_if = "Option::is_none")]
    pub volumes: Option<Vec<Volume>>,
    #[serde(default)]
    pub containers: Vec<Container>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_containers: Option<Vec<Container>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overhead: Option<BTreeMap<String, Quantity>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduling_gates: Option<Vec<PodSchedulingGate>>,
}

/// A container: what requests, ports, image locality and sidecar detection read.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<ContainerPort>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// `Always` on an init container makes it a sidecar.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<String>,
}

/// A container's resources: its requests, parsed as they are decoded (limits do not affect
/// placement).
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
pub struct ResourceRequirements {
    #[serde(default, deserialize_with = "parse_requests", skip_serializing_if = "Option::is_none")]
    pub requests: Option<Requests>,
}

/// The requests NodeResourcesFit counts: CPU in millicores and memory in bytes (a map of
/// two quantities took ~650 bytes per container; other resources are not scheduled on).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Requests {
    pub milli_cpu: i64,
    pub memory: i64,
}

impl Requests {
    /// From a resource map (`requests`, `overhead`, a node's allocatable); a missing or
    /// unparsable quantity counts 0 (the API server refuses unparsable ones).
    pub fn from_map(map: &BTreeMap<String, Quantity>) -> Self {
        let get = |key: &str, milli: bool| {
            map.get(key)
                .and_then(|v| skiff_api::quantity::Quantity::parse(&v.0).ok())
                .map(|v| if milli { v.milli_value() } else { v.value() })
                .unwrap_or(0)
        };
        Requests { milli_cpu: get("cpu", true), memory: get("memory", false) }
    }
}

fn parse_requests<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Requests>, D::Error> {
    Ok(Option::<BTreeMap<String, Quantity>>::deserialize(d)?.map(|m| Requests::from_map(&m)))
}

/// Keeps the volumes VolumeBinding looks at (claims and ephemeral volumes): the others
/// would only make specs of otherwise equal pods differ.
fn claim_volumes<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<Volume>>, D::Error> {
    Ok(Option::<Vec<Volume>>::deserialize(d)?.map(|mut v| {
        v.retain(|v| v.persistent_volume_claim.is_some() || v.ephemeral.is_some());
        v
    }))
}

fn plain_tolerations<S: serde::Serializer>(v: &Option<Arc<Vec<Toleration>>>, s: S) -> Result<S::Ok, S::Error> {
    v.as_deref().serialize(s)
}

/// Toleration lists decoded recently. Admission gives every pod the same two
/// not-ready/unreachable tolerations, so cached pods share a copy instead of holding ~500
/// bytes each.
static TOLERATIONS: Recent<Vec<Toleration>> = Recent::new(16);

fn shared_tolerations<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Arc<Vec<Toleration>>>, D::Error> {
    Ok(Option::<Vec<Toleration>>::deserialize(d)?.map(|list| TOLERATIONS.share(list)))
}

/// A volume, with the sources VolumeBinding looks at.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_volume_claim: Option<PersistentVolumeClaimVolumeSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ephemeral: Option<EphemeralVolumeSource>,
}

/// The status fields the loop reads.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nominated_node_name: Option<String>,
}

impl k8s_openapi::Resource for Pod {
    const API_VERSION: &'static str = "v1";
    const GROUP: &'static str = "";
    const KIND: &'static str = "Pod";
    const VERSION: &'static str = "v1";
    const URL_PATH_SEGMENT: &'static str = "pods";
    type Scope = NamespaceResourceScope;
}

impl k8s_openapi::Metadata for Pod {
    type Ty = ObjectMeta;

    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(labels: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({"metadata": {"name": "p", "labels": labels}})).unwrap()
    }

    #[test]
    fn pods_of_one_template_share_a_spec_and_keep_their_own_node() {
        let pod = |name: &str, node: Option<&str>, image: &str| -> Pod {
            let mut spec = serde_json::json!({"containers": [{"name": "c", "image": image}],
                "volumes": [{"name": "cfg", "configMap": {"name": "x"}}, {"name": "data", "persistentVolumeClaim": {"claimName": name}}]});
            if let Some(n) = node {
                spec["nodeName"] = n.into();
            }
            serde_json::from_value(serde_json::json!({"metadata": {"name": name}, "spec": spec})).unwrap()
        };
        let (a, b) = (pod("a", None, "web:1"), pod("a", Some("node-1"), "web:1"));
        assert!(Arc::ptr_eq(a.spec.as_ref().unwrap(), b.spec.as_ref().unwrap()), "equal but for the node: one copy");
        assert_eq!((a.node_name(), b.node_name()), ("", "node-1"));
        let c = pod("a", Some("node-1"), "web:2");
        assert!(!Arc::ptr_eq(b.spec.as_ref().unwrap(), c.spec.as_ref().unwrap()));
        let claims = pod("b", None, "web:1");
        assert!(!Arc::ptr_eq(a.spec.as_ref().unwrap(), claims.spec.as_ref().unwrap()), "other claims, other spec");
        assert_eq!(claims.spec.as_ref().unwrap().volumes.as_ref().unwrap().len(), 1, "only claims are kept");
        let v = serde_json::to_value(&b).unwrap();
        assert_eq!(v["spec"]["nodeName"], "node-1", "written back where it came from");
        assert_eq!(v["spec"]["containers"][0]["image"], "web:1");
        assert!(serde_json::to_value(&a).unwrap()["spec"].get("nodeName").is_none());
    }

    #[test]
    fn equal_label_sets_are_shared_and_written_back_in_metadata() {
        let a = decode(serde_json::json!({"app": "web", "tier": "front"}));
        let b = decode(serde_json::json!({"tier": "front", "app": "web"}));
        let c = decode(serde_json::json!({"app": "db"}));
        assert!(Arc::ptr_eq(a.labels.as_ref().unwrap(), b.labels.as_ref().unwrap()));
        assert!(!Arc::ptr_eq(a.labels.as_ref().unwrap(), c.labels.as_ref().unwrap()));
        assert!(a.metadata.labels.is_none(), "labels live outside the metadata");
        assert_eq!(a.labels().get("tier").map(String::as_str), Some("front"));
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["metadata"]["labels"], serde_json::json!({"app": "db"}));
        assert!(decode(serde_json::Value::Null).labels().is_empty());
    }
}
