//! TaintToleration: NoSchedule/NoExecute taints must be tolerated; PreferNoSchedule taints
//! lower the score.

use k8s_openapi::api::core::v1::{Taint, Toleration};

use crate::framework::{CycleState, FilterPlugin, NodeInfo, ScorePlugin};
use crate::pod::Pod;

/// The plugin.
pub struct TaintToleration;

pub use skiff_api::taints::tolerates;

fn taints(node: &NodeInfo) -> &[Taint] {
    node.node.spec.as_ref().and_then(|s| s.taints.as_deref()).unwrap_or(&[])
}

fn tolerations(pod: &Pod) -> &[Toleration] {
    pod.spec.as_ref().and_then(|s| s.tolerations.as_deref()).map(Vec::as_slice).unwrap_or(&[])
}

impl FilterPlugin for TaintToleration {
    fn name(&self) -> &'static str {
        "TaintToleration"
    }

    fn filter(&self, _state: &CycleState, pod: &Pod, node: &NodeInfo) -> Result<(), String> {
        if !node.hard_taints {
            return Ok(());
        }
        for taint in taints(node).iter().filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute") {
            if !tolerations(pod).iter().any(|t| tolerates(t, taint)) {
                let v = taint.value.as_deref().map(|v| format!("={v}")).unwrap_or_default();
                return Err(format!("node(s) had untolerated taint {{{}{v}: {}}}", taint.key, taint.effect));
            }
        }
        Ok(())
    }
}

impl ScorePlugin for TaintToleration {
    fn name(&self) -> &'static str {
        "TaintToleration"
    }

    fn score(&self, _state: &CycleState, pod: &Pod, node: &NodeInfo) -> i64 {
        let bad = taints(node)
            .iter()
            .filter(|t| t.effect == "PreferNoSchedule" && !tolerations(pod).iter().any(|tol| tolerates(tol, t)))
            .count() as i64;
        (100 - bad * 25).max(0)
    }
}
