//! Filter and Score plugins, one file each, registered by name in [`default_filters`] and
//! [`default_scores`].

pub mod balanced_allocation;
pub mod image_locality;
pub mod inter_pod_affinity;
pub mod node_affinity;
pub mod node_name;
pub mod node_ports;
pub mod node_resources_fit;
pub mod node_unschedulable;
pub mod pod_topology_spread;
pub mod taint_toleration;
pub mod volume_binding;

#[cfg(test)]
mod tests;

use crate::framework::{FilterPlugin, ScorePlugin};

/// Filters in upstream's order.
pub fn default_filters() -> Vec<Box<dyn FilterPlugin>> {
    vec![
        Box::new(node_unschedulable::NodeUnschedulable),
        Box::new(node_name::NodeName),
        Box::new(taint_toleration::TaintToleration),
        Box::new(node_affinity::NodeAffinity),
        Box::new(node_ports::NodePorts),
        Box::new(node_resources_fit::NodeResourcesFit),
        Box::new(volume_binding::VolumeBinding),
        Box::new(pod_topology_spread::PodTopologySpread),
        Box::new(inter_pod_affinity::InterPodAffinity),
    ]
}

/// Scores with upstream's default weights.
pub fn default_scores() -> Vec<(Box<dyn ScorePlugin>, i64)> {
    vec![
        (Box::new(taint_toleration::TaintToleration), 3),
        (Box::new(node_affinity::NodeAffinity), 2),
        (Box::new(node_resources_fit::NodeResourcesFit), 1),
        (Box::new(balanced_allocation::BalancedAllocation), 1),
        (Box::new(image_locality::ImageLocality), 1),
        (Box::new(inter_pod_affinity::InterPodAffinity), 2),
        (Box::new(pod_topology_spread::PodTopologySpread), 2),
    ]
}
