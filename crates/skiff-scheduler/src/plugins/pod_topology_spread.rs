//! PodTopologySpread: `topologySpreadConstraints` with `DoNotSchedule` filter (skew = pods
//! matching in the node's domain + 1 - the smallest domain's count must stay within
//! `maxSkew`, `minDomains` honoured); `ScheduleAnyway` constraints score, favouring the
//! emptier domains. Pods without constraints that belong to a controller get the system
//! default constraints (hostname maxSkew 3, zone maxSkew 5, both ScheduleAnyway) over pods
//! with the same labels; upstream derives that selector from the owning controllers and
//! services, which for a workload's replicas selects the same pods.

use std::sync::Arc;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::counts::{pod_matches, Counts};
use crate::framework::{CycleState, Domains, FilterPlugin, NodeInfo, ScorePlugin, Snapshot, NO_DOMAIN};
use crate::plugins::node_affinity;
use crate::pod::Pod;
use crate::selector::with_label_keys;

/// The plugin.
pub struct PodTopologySpread;

/// Filter reasons, worded as upstream.
pub const CONSTRAINTS_NOT_MATCH: &str = "node(s) didn't match pod topology spread constraints";
/// See [`CONSTRAINTS_NOT_MATCH`].
pub const MISSING_LABEL: &str = "node(s) didn't match pod topology spread constraints (missing required label)";

/// One constraint, resolved against the pod.
#[derive(Debug, Clone)]
pub struct Constraint {
    max_skew: i64,
    topology_key: String,
    hard: bool,
    selector: Option<LabelSelector>,
    min_domains: i64,
    honor_affinity: bool,
    honor_taints: bool,
}

fn constraints(pod: &Pod) -> Vec<Constraint> {
    let Some(spec) = pod.spec.as_ref() else { return Vec::new() };
    match spec.topology_spread_constraints.as_deref() {
        Some(cs) if !cs.is_empty() => cs
            .iter()
            .map(|c| Constraint {
                max_skew: c.max_skew as i64,
                topology_key: c.topology_key.clone(),
                hard: c.when_unsatisfiable == "DoNotSchedule",
                selector: c.label_selector.as_ref().map(|s| with_label_keys(s, pod, c.match_label_keys.as_deref().unwrap_or_default(), &[])),
                min_domains: c.min_domains.unwrap_or(1) as i64,
                honor_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
                honor_taints: c.node_taints_policy.as_deref() == Some("Honor"),
            })
            .collect(),
        _ => {
            let owned = pod.metadata.owner_references.iter().flatten().any(|o| o.controller == Some(true));
            let labels = pod.labels();
            if !owned || labels.is_empty() {
                return Vec::new();
            }
            let selector = Some(LabelSelector { match_labels: Some(labels.clone()), ..Default::default() });
            [("kubernetes.io/hostname", 3), ("topology.kubernetes.io/zone", 5)]
                .into_iter()
                .map(|(key, skew)| Constraint {
                    max_skew: skew,
                    topology_key: key.into(),
                    hard: false,
                    selector: selector.clone(),
                    min_domains: 1,
                    honor_affinity: true,
                    honor_taints: false,
                })
                .collect()
        }
    }
}

fn own_namespace(pod: &Pod) -> Option<Vec<String>> {
    Some(vec![pod.metadata.namespace.clone().unwrap_or_else(|| "default".into())])
}

fn taints_tolerated(pod: &Pod, node: &NodeInfo) -> bool {
    let tols = pod.spec.as_ref().and_then(|s| s.tolerations.as_deref()).map(Vec::as_slice).unwrap_or(&[]);
    node.node.spec.as_ref().and_then(|s| s.taints.as_deref()).unwrap_or(&[]).iter().filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute").all(|t| tols.iter().any(|tol| crate::plugins::taint_toleration::tolerates(tol, t)))
}

/// Per-domain counts (by id of `ids`, the domains of the constraint's key) over the nodes a
/// constraint counts (those with all the keys, passing the pod's node affinity and, when
/// asked, its taints); `None` for domains no counted node is in.
fn domain_counts(pod: &Pod, snap: &Snapshot, c: &Constraint, all_keys: &[&str], counts: Option<&Counts>, ids: &Domains) -> Vec<Option<i64>> {
    let restricted = (c.honor_affinity && node_affinity::restricts(pod)) || c.honor_taints || all_keys.len() > 1;
    if !restricted {
        return match counts {
            Some(counts) => counts.per_domain.iter().map(|n| Some(*n as i64)).collect(),
            None => vec![None; ids.values.len()],
        };
    }
    let mut out = vec![None; ids.values.len()];
    for n in &snap.nodes {
        let labels = n.labels();
        if !all_keys.iter().all(|k| labels.contains_key(*k))
            || (c.honor_affinity && !node_affinity::matches_node(pod, n))
            || (c.honor_taints && !taints_tolerated(pod, n))
        {
            continue;
        }
        let here = counts.map_or(0, |counts| counts.per_node[n.index] as i64);
        let domain: &mut Option<i64> = &mut out[ids.of_node[n.index] as usize];
        *domain = Some(domain.unwrap_or(0) + here);
    }
    out
}

/// PreFilter result: per hard constraint, the domain counts, the smallest one, and whether
/// the pod counts itself.
#[derive(Debug, Default)]
pub struct PreFilterState {
    hard: Vec<HardConstraint>,
}

#[derive(Debug)]
struct HardConstraint {
    max_skew: i64,
    /// The nodes' domains for the constraint's key.
    domains: Arc<Domains>,
    /// Matching pods per domain id (0 for domains no counted node is in).
    counts: Vec<i64>,
    /// The smallest count among counted domains.
    min: i64,
    /// 1 when the pod matches its own selector.
    self_match: i64,
}

impl FilterPlugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        "PodTopologySpread"
    }

    fn pre_filter(&self, pod: &Pod, snap: &Snapshot, state: &mut CycleState) -> Result<(), String> {
        let hard: Vec<Constraint> = constraints(pod).into_iter().filter(|c| c.hard).collect();
        if hard.is_empty() {
            state.spread = None;
            return Ok(());
        }
        let ns = own_namespace(pod);
        let keys: Vec<&str> = hard.iter().map(|c| c.topology_key.as_str()).collect();
        let mut out = PreFilterState::default();
        for c in &hard {
            let ids = snap.domains.get(&snap.nodes, &c.topology_key);
            let (counts, self_match) = match &c.selector {
                Some(sel) => (Some(snap.counts.get(&snap.nodes, &snap.domains, &ns, sel, &c.topology_key)), pod_matches(pod, &ns, sel) as i64),
                None => (None, 0),
            };
            let by_id = domain_counts(pod, snap, c, &keys, counts.as_deref(), &ids);
            let counted = by_id.iter().flatten();
            let min = if (counted.clone().count() as i64) < c.min_domains { 0 } else { counted.min().copied().unwrap_or(0) };
            let counts = by_id.iter().map(|n| n.unwrap_or(0)).collect();
            out.hard.push(HardConstraint { max_skew: c.max_skew, domains: ids, counts, min, self_match });
        }
        state.spread = Some(Arc::new(out));
        Ok(())
    }

    fn filter(&self, state: &CycleState, _pod: &Pod, node: &NodeInfo) -> Result<(), String> {
        let Some(s) = state.spread.as_deref() else { return Ok(()) };
        for c in &s.hard {
            let id = c.domains.of_node[node.index];
            if id == NO_DOMAIN {
                return Err(MISSING_LABEL.into());
            }
            if c.counts[id as usize] + c.self_match - c.min > c.max_skew {
                return Err(CONSTRAINTS_NOT_MATCH.into());
            }
        }
        Ok(())
    }

    fn resolvable_by_preemption(&self, reason: &str) -> bool {
        reason != MISSING_LABEL
    }
}

/// PreScore result: per soft constraint, its counts and weight.
#[derive(Debug, Default)]
pub struct ScoreState {
    soft: Vec<(Constraint, Option<Arc<Counts>>, f64)>,
}

impl ScorePlugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        "PodTopologySpread"
    }

    fn pre_score(&self, pod: &Pod, snap: &Snapshot, feasible: &[usize], state: &mut CycleState) {
        let soft: Vec<Constraint> = constraints(pod).into_iter().filter(|c| !c.hard).collect();
        if soft.is_empty() {
            state.spread_score = None;
            return;
        }
        let ns = own_namespace(pod);
        let mut out = ScoreState::default();
        for c in soft {
            let counts = c.selector.as_ref().map(|sel| snap.counts.get(&snap.nodes, &snap.domains, &ns, sel, &c.topology_key));
            // Upstream weighs each constraint by log(domains + 2) so that a key with many
            // small domains (hostname) does not drown one with a few big ones (zone).
            let domains = if c.topology_key == "kubernetes.io/hostname" {
                feasible.len()
            } else {
                counts.as_ref().map(|c| c.domains.values.len()).unwrap_or(0)
            };
            out.soft.push((c, counts, ((domains + 2) as f64).ln()));
        }
        state.spread_score = Some(Arc::new(out));
    }

    fn score(&self, state: &CycleState, _pod: &Pod, node: &NodeInfo) -> i64 {
        let Some(s) = state.spread_score.as_deref() else { return 0 };
        let labels = node.labels();
        let mut total = 0.0;
        for (c, counts, weight) in &s.soft {
            if !labels.contains_key(&c.topology_key) {
                return -1;
            }
            let n = match counts {
                Some(counts) if c.topology_key == "kubernetes.io/hostname" => counts.per_node[node.index] as f64,
                Some(counts) => counts.in_domain_of(node.index) as f64,
                None => 0.0,
            };
            total += n * weight + (c.max_skew - 1) as f64;
        }
        total.round() as i64
    }

    fn normalize(&self, state: &CycleState, scores: &mut [i64]) {
        if state.spread_score.is_none() {
            return;
        }
        // Nodes missing a key (-1) score 0; the rest: fewer matching pods is better.
        let counted = scores.iter().copied().filter(|s| *s >= 0);
        let (min, max) = (counted.clone().min().unwrap_or(0), counted.max().unwrap_or(0));
        for s in scores.iter_mut() {
            *s = if *s < 0 {
                0
            } else if max == 0 {
                100
            } else {
                100 * (max + min - *s) / max
            };
        }
    }
}
