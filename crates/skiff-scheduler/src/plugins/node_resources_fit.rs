//! NodeResourcesFit: requests must fit in what is left of allocatable (CPU, memory, pods);
//! scores favour the least allocated node (upstream's default strategy).

use crate::framework::{CycleState, FilterPlugin, NodeInfo, ScorePlugin};
use crate::pod::Pod;

/// The plugin.
pub struct NodeResourcesFit;

impl FilterPlugin for NodeResourcesFit {
    fn name(&self) -> &'static str {
        "NodeResourcesFit"
    }

    fn filter(&self, state: &CycleState, _pod: &Pod, node: &NodeInfo) -> Result<(), String> {
        let r = state.requests;
        let a = node.allocatable;
        let u = node.requested;
        let too_many = u.pods + 1 > a.pods;
        let cpu = r.milli_cpu > 0 && u.milli_cpu + r.milli_cpu > a.milli_cpu;
        let memory = r.memory > 0 && u.memory + r.memory > a.memory;
        if !(too_many || cpu || memory) {
            return Ok(());
        }
        // Every shortfall is reported, as upstream ("2 Insufficient cpu, 2 Insufficient memory").
        let reasons: Vec<&str> = [(too_many, "Too many pods"), (cpu, "Insufficient cpu"), (memory, "Insufficient memory")]
            .into_iter()
            .filter_map(|(short, reason)| short.then_some(reason))
            .collect();
        Err(reasons.join(&crate::framework::REASON_SEPARATOR.to_string()))
    }

    fn resolvable_by_preemption(&self, _reason: &str) -> bool {
        true
    }
}

/// Share of `cap` still free after `used`, 0..=100.
pub fn free_share(used: i64, cap: i64) -> i64 {
    if cap <= 0 {
        return 0;
    }
    ((cap - used).max(0) * 100) / cap
}

impl ScorePlugin for NodeResourcesFit {
    fn name(&self) -> &'static str {
        "NodeResourcesFit"
    }

    fn score(&self, state: &CycleState, _pod: &Pod, node: &NodeInfo) -> i64 {
        let r = state.requests;
        // Upstream counts a default of 100m CPU / 200Mi for containers without requests.
        let cpu = node.requested.milli_cpu + r.milli_cpu.max(100);
        let mem = node.requested.memory + r.memory.max(200 * 1024 * 1024);
        (free_share(cpu, node.allocatable.milli_cpu) + free_share(mem, node.allocatable.memory)) / 2
    }
}
