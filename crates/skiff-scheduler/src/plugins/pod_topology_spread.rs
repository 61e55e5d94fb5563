//! PodTopologySpread, default spreading only: pods of the same controller (ReplicaSet,
//! StatefulSet, ...) prefer nodes that run fewer of their siblings, as upstream's system
//! default constraint on `kubernetes.io/hostname` does.

use k8s_openapi::api::core::v1::Pod;

use crate::framework::{NodeInfo, ScorePlugin};

/// The plugin.
pub struct PodTopologySpread;

fn controller_uid(p: &Pod) -> Option<&str> {
    p.metadata.owner_references.as_ref()?.iter().find(|o| o.controller == Some(true)).map(|o| o.uid.as_str())
}

impl ScorePlugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        "PodTopologySpread"
    }

    fn score(&self, pod: &Pod, node: &NodeInfo) -> i64 {
        let Some(owner) = controller_uid(pod) else { return 100 };
        let siblings = node.pods.iter().filter(|p| controller_uid(p) == Some(owner)).count() as i64;
        100 / (1 + siblings)
    }
}
