//! BalancedAllocation: prefers nodes whose CPU and memory use stay in proportion.

use crate::framework::{CycleState, NodeInfo, ScorePlugin};
use crate::pod::Pod;

/// The plugin.
pub struct BalancedAllocation;

impl ScorePlugin for BalancedAllocation {
    fn name(&self) -> &'static str {
        "NodeResourcesBalancedAllocation"
    }

    fn score(&self, state: &CycleState, _pod: &Pod, node: &NodeInfo) -> i64 {
        let r = state.requests;
        let a = node.allocatable;
        if a.milli_cpu <= 0 || a.memory <= 0 {
            return 0;
        }
        let cpu = (node.requested.milli_cpu + r.milli_cpu) as f64 / a.milli_cpu as f64;
        let mem = (node.requested.memory + r.memory) as f64 / a.memory as f64;
        ((1.0 - (cpu - mem).abs()).max(0.0) * 100.0) as i64
    }
}
