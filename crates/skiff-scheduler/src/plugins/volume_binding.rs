//! VolumeBinding: a pod's PersistentVolumeClaims must exist; a bound claim's volume must be
//! reachable from the node (its nodeAffinity); an unbound claim is only acceptable when its
//! class binds WaitForFirstConsumer, and then the node must be able to get a volume: a
//! dynamic provisioner can make one (within the class's allowedTopologies), otherwise an
//! Available volume of the class must fit the claim and accept the node.
//!
//! Binding itself stays with the PV controller (skiff-controllers' volume.rs), which waits
//! for the consumer pod to be bound and then provisions on (and records
//! `volume.kubernetes.io/selected-node` for) that pod's node; upstream's scheduler writes
//! that annotation in PreBind instead, with the same outcome.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{NodeSelector, PersistentVolume, PersistentVolumeClaim};
use skiff_api::quantity::Quantity;

use crate::framework::{CycleState, FilterPlugin, NodeInfo, Snapshot};
use crate::plugins::node_affinity::term_matches;
use crate::pod::Pod;

/// The plugin.
pub struct VolumeBinding;

/// Filter reasons, worded as upstream.
pub const NODE_CONFLICT: &str = "node(s) had volume node affinity conflict";
/// See [`NODE_CONFLICT`].
pub const NO_VOLUMES: &str = "node(s) didn't find available persistent volumes to bind";
/// PreFilter rejection for claims that must bind before scheduling.
pub const UNBOUND_IMMEDIATE: &str = "pod has unbound immediate PersistentVolumeClaims";

/// What PreFilter found.
#[derive(Debug, Default)]
pub struct PreFilterState {
    /// Node affinity of the volumes already bound to the pod's claims.
    bound: Vec<NodeSelector>,
    /// Unbound WaitForFirstConsumer claims with no provisioner: the volumes that could take
    /// each one.
    static_candidates: Vec<Vec<Arc<PersistentVolume>>>,
    /// Unbound claims a provisioner will serve: the class's allowed topologies, if any.
    provisioned: Vec<Vec<k8s_openapi::api::core::v1::TopologySelectorTerm>>,
}

/// Claim names a pod uses (`persistentVolumeClaim` volumes and generic ephemeral volumes).
pub fn claim_names(pod: &Pod) -> Vec<String> {
    let name = pod.metadata.name.as_deref().unwrap_or("");
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| match (&v.persistent_volume_claim, &v.ephemeral) {
            (Some(c), _) => Some(c.claim_name.clone()),
            (None, Some(_)) => Some(format!("{name}-{}", v.name)),
            _ => None,
        })
        .collect()
}

fn storage(q: Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity>) -> i64 {
    q.and_then(|q| Quantity::parse(&q.0).ok()).map(|q| q.value()).unwrap_or(0)
}

fn volume_fits(pv: &PersistentVolume, pvc: &PersistentVolumeClaim, class: &str) -> bool {
    let (Some(spec), Some(want)) = (pv.spec.as_ref(), pvc.spec.as_ref()) else { return false };
    let available = pv.status.as_ref().and_then(|s| s.phase.as_deref()).is_none_or(|p| p == "Available" || p == "Pending");
    let free = spec.claim_ref.as_ref().is_none_or(|r| r.name.as_deref() == pvc.metadata.name.as_deref() && r.namespace == pvc.metadata.namespace);
    let modes = want.access_modes.iter().flatten().all(|m| spec.access_modes.iter().flatten().any(|h| h == m));
    let size = storage(want.resources.as_ref().and_then(|r| r.requests.as_ref()).and_then(|r| r.get("storage")));
    available
        && free
        && modes
        && spec.storage_class_name.as_deref().unwrap_or("") == class
        && storage(spec.capacity.as_ref().and_then(|c| c.get("storage"))) >= size
}

fn selector_accepts(sel: &NodeSelector, node: &NodeInfo) -> bool {
    sel.node_selector_terms.iter().any(|t| term_matches(t, node))
}

impl FilterPlugin for VolumeBinding {
    fn name(&self) -> &'static str {
        "VolumeBinding"
    }

    fn pre_filter(&self, pod: &Pod, snap: &Snapshot, state: &mut CycleState) -> Result<(), String> {
        let names = claim_names(pod);
        if names.is_empty() {
            state.volumes = None;
            return Ok(());
        }
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let mut out = PreFilterState::default();
        for name in names {
            let Some(pvc) = snap.claims.get(&format!("{ns}/{name}")) else {
                return Err(format!("persistentvolumeclaim \"{name}\" not found"));
            };
            if pvc.metadata.deletion_timestamp.is_some() {
                return Err(format!("persistentvolumeclaim \"{name}\" is being deleted"));
            }
            let spec = pvc.spec.clone().unwrap_or_default();
            if let Some(vol) = spec.volume_name.as_deref().filter(|v| !v.is_empty()) {
                let pv = snap.volumes.iter().find(|pv| pv.metadata.name.as_deref() == Some(vol));
                if let Some(req) = pv.and_then(|pv| pv.spec.as_ref()?.node_affinity.as_ref()?.required.clone()) {
                    out.bound.push(req);
                }
                continue;
            }
            let class_name = spec.storage_class_name.clone().unwrap_or_default();
            let class = snap.classes.get(&class_name);
            if class.and_then(|c| c.volume_binding_mode.as_deref()) != Some("WaitForFirstConsumer") {
                return Err(UNBOUND_IMMEDIATE.into());
            }
            let class = class.expect("checked above");
            if class.provisioner == "kubernetes.io/no-provisioner" {
                out.static_candidates.push(snap.volumes.iter().filter(|pv| volume_fits(pv, pvc, &class_name)).cloned().collect());
            } else {
                out.provisioned.push(class.allowed_topologies.clone().unwrap_or_default());
            }
        }
        state.volumes = Some(Arc::new(out));
        Ok(())
    }

    fn filter(&self, state: &CycleState, _pod: &Pod, node: &NodeInfo) -> Result<(), String> {
        let Some(s) = state.volumes.as_deref() else { return Ok(()) };
        if !s.bound.iter().all(|sel| selector_accepts(sel, node)) {
            return Err(NODE_CONFLICT.into());
        }
        let labels = node.labels();
        let topology_ok = |terms: &Vec<k8s_openapi::api::core::v1::TopologySelectorTerm>| {
            terms.is_empty()
                || terms.iter().any(|t| {
                    t.match_label_expressions.iter().flatten().all(|e| labels.get(&e.key).is_some_and(|v| e.values.contains(v)))
                })
        };
        if !s.provisioned.iter().all(topology_ok) {
            return Err(NODE_CONFLICT.into());
        }
        // Each static claim needs a volume of its own that accepts this node.
        let mut taken: Vec<&str> = Vec::new();
        for candidates in &s.static_candidates {
            let pick = candidates.iter().find(|pv| {
                let name = pv.metadata.name.as_deref().unwrap_or("");
                !taken.contains(&name)
                    && pv.spec.as_ref().and_then(|s| s.node_affinity.as_ref()?.required.as_ref()).is_none_or(|sel| selector_accepts(sel, node))
            });
            match pick {
                Some(pv) => taken.push(pv.metadata.name.as_deref().unwrap_or("")),
                None => return Err(NO_VOLUMES.into()),
            }
        }
        Ok(())
    }
}
