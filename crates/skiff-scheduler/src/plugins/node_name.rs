//! NodeName: nothing to decide for pods that name their node (they never reach the queue),
//! kept for upstream parity in the plugin list.

use crate::framework::{CycleState, FilterPlugin, NodeInfo};
use crate::pod::Pod;

/// The plugin.
pub struct NodeName;

impl FilterPlugin for NodeName {
    fn name(&self) -> &'static str {
        "NodeName"
    }

    fn filter(&self, _state: &CycleState, pod: &Pod, node: &NodeInfo) -> Result<(), String> {
        match pod.node_name() {
            n if !n.is_empty() && n != node.name() => Err("node(s) didn't match the requested node name".into()),
            _ => Ok(()),
        }
    }
}
