//! NodeUnschedulable: cordoned nodes take no new pods unless the pod tolerates
//! `node.kubernetes.io/unschedulable:NoSchedule`.

use crate::framework::{CycleState, FilterPlugin, NodeInfo};
use crate::pod::Pod;

/// The plugin.
pub struct NodeUnschedulable;

impl FilterPlugin for NodeUnschedulable {
    fn name(&self) -> &'static str {
        "NodeUnschedulable"
    }

    fn filter(&self, _state: &CycleState, pod: &Pod, node: &NodeInfo) -> Result<(), String> {
        if !node.unschedulable {
            return Ok(());
        }
        let tolerated = pod.spec.as_ref().and_then(|s| s.tolerations.as_ref()).is_some_and(|ts| {
            ts.iter().any(|t| {
                (t.key.as_deref() == Some("node.kubernetes.io/unschedulable") || (t.key.is_none() && t.operator.as_deref() == Some("Exists")))
                    && t.effect.as_deref().is_none_or(|e| e == "NoSchedule")
            })
        });
        if !tolerated {
            return Err("node(s) were unschedulable".into());
        }
        Ok(())
    }
}
