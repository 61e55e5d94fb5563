//! Preemption (upstream's DefaultPreemption PostFilter), without I/O: when a pod fits
//! nowhere, find a node where evicting lower-priority pods makes room, with as few and as
//! unimportant victims as possible, preferring victims whose PodDisruptionBudgets allow it.
//!
//! Limits: InterPodAffinity and PodTopologySpread keep the counts taken before eviction
//! (upstream subtracts victims through PreFilter extensions), so a node blocked only by a
//! lower-priority pod's labels is not chosen; terminating pods no longer count there, so
//! once victims are being deleted the preemptor fits.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::core::{run_filters, FitError, Framework};
use crate::framework::{pod_priority, NodeInfo, Snapshot};
use crate::pod::Pod;
use crate::selector::matches;

/// The chosen node and whom to evict there.
#[derive(Debug)]
pub struct Candidate {
    /// Node index in the snapshot.
    pub node: usize,
    /// Pods to delete.
    pub victims: Vec<Arc<Pod>>,
    /// Victims whose budget does not allow a disruption.
    pub pdb_violations: usize,
}

/// Why preemption cannot help (upstream's `preemption: ...` suffix), or `Ok(None)` when the
/// pod may not preempt at all.
pub fn eligible(pod: &Pod, snap: &Snapshot) -> Result<(), String> {
    let spec = pod.spec.as_ref();
    if spec.and_then(|s| s.preemption_policy.as_deref()) == Some("Never") {
        return Err("preemption: not eligible due to preemptionPolicy=Never.".into());
    }
    // Already nominated and victims still terminating there: wait for them instead of
    // evicting more.
    let nominated = pod.status.as_ref().and_then(|s| s.nominated_node_name.as_deref()).filter(|n| !n.is_empty());
    if let Some(node) = nominated.and_then(|n| snap.nodes.iter().find(|i| i.name() == n)) {
        let p = pod_priority(pod);
        if node.pods.iter().any(|(v, _)| v.metadata.deletion_timestamp.is_some() && pod_priority(v) < p) {
            return Err("preemption: not eligible due to a terminating pod on the nominated node.".into());
        }
    }
    Ok(())
}

fn fits(fw: &Framework, err: &FitError, pod: &Pod, node: &NodeInfo) -> bool {
    run_filters(fw, &err.state, pod, node).is_ok()
}

/// Budget headroom left, per PDB index, as victims are chosen.
fn violates(pdbs: &[Arc<k8s_openapi::api::policy::v1::PodDisruptionBudget>], left: &mut BTreeMap<usize, i32>, victim: &Pod) -> bool {
    let ns = victim.metadata.namespace.as_deref();
    let mut violated = false;
    for (i, pdb) in pdbs.iter().enumerate() {
        let selects = pdb.metadata.namespace.as_deref() == ns
            && pdb.spec.as_ref().and_then(|s| s.selector.as_ref()).is_some_and(|s| matches(s, victim.labels()));
        if selects {
            let allowed = left.entry(i).or_insert_with(|| pdb.status.as_ref().map(|s| s.disruptions_allowed).unwrap_or(0));
            *allowed -= 1;
            violated |= *allowed < 0;
        }
    }
    violated
}

/// Victims on one node, or `None` when evicting every lower-priority pod still would not
/// make the pod fit.
fn select_victims(fw: &Framework, err: &FitError, pod: &Pod, snap: &Snapshot, i: usize) -> Option<Candidate> {
    let p = pod_priority(pod);
    let node = &snap.nodes[i];
    let mut lower: Vec<Arc<Pod>> =
        node.pods.iter().filter(|(v, _)| pod_priority(v) < p && v.metadata.deletion_timestamp.is_none()).map(|(v, _)| v.clone()).collect();
    if lower.is_empty() {
        return None;
    }
    let mut trial: NodeInfo = node.clone();
    for v in &lower {
        trial.remove(v.metadata.uid.as_deref().unwrap_or(""));
    }
    if !fits(fw, err, pod, &trial) {
        return None;
    }
    // Most important first (higher priority, then older): each is given back to the node
    // when the pod still fits without evicting it. PDB-protected pods get that chance first.
    lower.sort_by(|a, b| {
        pod_priority(b).cmp(&pod_priority(a)).then_with(|| {
            let t = |p: &Pod| p.status.as_ref().and_then(|s| s.start_time.as_ref()).map(|t| t.0);
            t(a).cmp(&t(b))
        })
    });
    let mut left = BTreeMap::new();
    let (protected, free): (Vec<Arc<Pod>>, Vec<Arc<Pod>>) = lower.into_iter().partition(|v| violates(&snap.pdbs, &mut left.clone(), v));
    let mut victims = Vec::new();
    let mut pdb_violations = 0;
    for (group, is_protected) in [(protected, true), (free, false)] {
        for v in group {
            trial.assume(v.clone());
            if !fits(fw, err, pod, &trial) {
                trial.remove(v.metadata.uid.as_deref().unwrap_or(""));
                if is_protected || violates(&snap.pdbs, &mut left, &v) {
                    pdb_violations += 1;
                }
                victims.push(v);
            }
        }
    }
    (!victims.is_empty()).then_some(Candidate { node: i, victims, pdb_violations })
}

/// Pick the node to preempt on; `Err(message)` explains why none works.
pub fn find_candidate(fw: &Framework, err: &FitError, pod: &Pod, snap: &Snapshot) -> Result<Candidate, String> {
    eligible(pod, snap)?;
    let n = err.num_nodes;
    let enough = (n / 10).max(100);
    let mut found: Vec<Candidate> = Vec::new();
    for &i in &err.resolvable {
        if let Some(c) = select_victims(fw, err, pod, snap, i) {
            found.push(c);
            if found.len() >= enough {
                break;
            }
        }
    }
    // Upstream's order: fewest PDB violations, lowest top victim priority, lowest priority
    // sum, fewest victims.
    let best = found.into_iter().min_by_key(|c| {
        let top = c.victims.iter().map(|v| pod_priority(v)).max().unwrap_or(i32::MIN);
        let sum: i64 = c.victims.iter().map(|v| pod_priority(v) as i64 + i32::MAX as i64 + 1).sum();
        (c.pdb_violations, top, sum, c.victims.len())
    });
    best.ok_or_else(|| {
        let unresolvable = n - err.resolvable.len();
        let mut parts = Vec::new();
        if !err.resolvable.is_empty() {
            parts.push(format!("{} No preemption victims found for incoming pod", err.resolvable.len()));
        }
        if unresolvable > 0 {
            parts.push(format!("{unresolvable} Preemption is not helpful for scheduling"));
        }
        format!("preemption: 0/{n} nodes are available: {}.", parts.join(", "))
    })
}
