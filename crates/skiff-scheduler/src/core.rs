//! One scheduling attempt for one pod, without I/O: PreFilter, Filter over (a share of) the
//! nodes, PreScore/Score/NormalizeScore over the feasible ones, pick the best. The result
//! is either a node index or a [`FitError`] that explains, per node, why not.

use std::collections::BTreeMap;

use crate::framework::{pod_requests, CycleState, FilterPlugin, NodeInfo, ScorePlugin, Snapshot};
use crate::pod::Pod;

/// The plugins, in order.
pub struct Framework {
    /// Filter plugins.
    pub filters: Vec<Box<dyn FilterPlugin>>,
    /// Score plugins with weights.
    pub scores: Vec<(Box<dyn ScorePlugin>, i64)>,
}

impl Default for Framework {
    fn default() -> Self {
        Self { filters: crate::plugins::default_filters(), scores: crate::plugins::default_scores() }
    }
}

/// Why a pod fits nowhere.
#[derive(Debug, Default)]
pub struct FitError {
    /// Nodes considered.
    pub num_nodes: usize,
    /// A PreFilter rejected the pod outright.
    pub pre_filter: Option<String>,
    /// How many nodes failed with each reason.
    pub reasons: BTreeMap<String, usize>,
    /// Nodes whose failing plugin preemption could cure.
    pub resolvable: Vec<usize>,
    /// The pod's cycle state (preemption re-runs Filter with it).
    pub state: CycleState,
}

impl FitError {
    /// `0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint ...`.
    pub fn message(&self) -> String {
        let detail = match &self.pre_filter {
            Some(r) => r.clone(),
            None if self.reasons.is_empty() => "no nodes available to schedule pods".into(),
            None => self.reasons.iter().map(|(r, n)| format!("{n} {r}")).collect::<Vec<_>>().join(", "),
        };
        format!("0/{} nodes are available: {detail}.", self.num_nodes)
    }
}

/// Upstream's adaptive percentageOfNodesToScore: in big clusters, stop filtering once this
/// many feasible nodes are found (50% minus 1% per 125 nodes, at least 5% and 100 nodes).
pub fn feasible_nodes_to_find(n: usize) -> usize {
    if n < 100 {
        return n;
    }
    let pct = (50 - (n / 125) as i64).max(5) as usize;
    (n * pct / 100).max(100)
}

/// Per-scheduler mutable bits that carry over between pods.
#[derive(Debug)]
pub struct Rotation {
    /// Where the next search starts (upstream's nextStartNodeIndex), so successive pods look
    /// at different nodes first.
    pub next_start: usize,
    seed: u64,
}

impl Default for Rotation {
    fn default() -> Self {
        Self { next_start: 0, seed: 0x9E37_79B9_7F4A_7C15 }
    }
}

impl Rotation {
    fn random(&mut self) -> u64 {
        // xorshift64: only used to break score ties, as upstream does with reservoir sampling.
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        self.seed
    }
}

/// Run every filter on one node with `state`.
pub fn run_filters(fw: &Framework, state: &CycleState, pod: &Pod, node: &NodeInfo) -> Result<(), (String, bool)> {
    for f in &fw.filters {
        if let Err(r) = f.filter(state, pod, node) {
            let resolvable = f.resolvable_by_preemption(&r);
            return Err((r, resolvable));
        }
    }
    Ok(())
}

/// PreFilter all plugins; `Err` when one rejects the pod outright.
pub fn pre_filter(fw: &Framework, pod: &Pod, snap: &Snapshot) -> Result<CycleState, (String, CycleState)> {
    let mut state = CycleState { requests: pod_requests(pod), ..Default::default() };
    for f in &fw.filters {
        if let Err(r) = f.pre_filter(pod, snap, &mut state) {
            return Err((r, state));
        }
    }
    Ok(state)
}

/// Find the best node for `pod`.
pub fn schedule_one(fw: &Framework, pod: &Pod, snap: &Snapshot, rot: &mut Rotation) -> Result<usize, Box<FitError>> {
    let n = snap.nodes.len();
    let mut state = match pre_filter(fw, pod, snap) {
        Ok(s) => s,
        Err((r, state)) => return Err(Box::new(FitError { num_nodes: n, pre_filter: Some(r), state, ..Default::default() })),
    };
    let want = feasible_nodes_to_find(n);
    let mut feasible: Vec<usize> = Vec::with_capacity(want.min(n));
    let mut err = FitError { num_nodes: n, ..Default::default() };
    let start = if n == 0 { 0 } else { rot.next_start % n };
    let mut processed = 0;
    for k in 0..n {
        let i = (start + k) % n;
        processed += 1;
        match run_filters(fw, &state, pod, &snap.nodes[i]) {
            Ok(()) => {
                feasible.push(i);
                if feasible.len() >= want {
                    break;
                }
            }
            Err((r, resolvable)) => {
                for one in r.split(crate::framework::REASON_SEPARATOR) {
                    *err.reasons.entry(one.to_string()).or_default() += 1;
                }
                if resolvable {
                    err.resolvable.push(i);
                }
            }
        }
    }
    if n > 0 {
        rot.next_start = (start + processed) % n;
    }
    if feasible.is_empty() {
        err.state = state;
        return Err(Box::new(err));
    }
    if feasible.len() == 1 {
        return Ok(feasible[0]);
    }
    let mut totals = vec![0i64; feasible.len()];
    let mut scores = vec![0i64; feasible.len()];
    for (plugin, weight) in &fw.scores {
        plugin.pre_score(pod, snap, &feasible, &mut state);
        for (j, i) in feasible.iter().enumerate() {
            scores[j] = plugin.score(&state, pod, &snap.nodes[*i]);
        }
        plugin.normalize(&state, &mut scores);
        for (t, s) in totals.iter_mut().zip(&scores) {
            *t += s * weight;
        }
    }
    // Highest total; ties broken at random so equal nodes share the load.
    let mut best = 0;
    let mut ties = 1u64;
    for j in 1..feasible.len() {
        if totals[j] > totals[best] {
            best = j;
            ties = 1;
        } else if totals[j] == totals[best] {
            ties += 1;
            if rot.random().is_multiple_of(ties) {
                best = j;
            }
        }
    }
    Ok(feasible[best])
}
