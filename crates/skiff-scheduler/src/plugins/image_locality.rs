//! ImageLocality: prefers nodes that already hold the pod's images (from
//! `node.status.images`), weighted by how widely each image is spread so that one popular
//! image does not pull every pod onto the same few nodes.
//!
//! Gap: skiff's node agent does not report `status.images` yet, so on skiff nodes this
//! scores every node 0 (neutral) until it does; nodes that report images are scored.

use std::collections::HashMap;

use crate::framework::{CycleState, NodeInfo, ScorePlugin, Snapshot};
use crate::pod::Pod;

/// The plugin.
pub struct ImageLocality;

const MB: i64 = 1024 * 1024;
/// Upstream's thresholds: below 23 MB an image is not worth preferring a node for; above
/// 1000 MB per container the score saturates.
const MIN_THRESHOLD: i64 = 23 * MB;
const MAX_CONTAINER_THRESHOLD: i64 = 1000 * MB;

/// `nginx` -> `nginx:latest`, `docker.io/library/nginx:1` -> `nginx:1`: the forms users write
/// and runtimes report, compared in one shape.
pub fn normalize(image: &str) -> String {
    let s = image.strip_prefix("docker.io/library/").or_else(|| image.strip_prefix("docker.io/")).unwrap_or(image);
    let last = s.rsplit('/').next().unwrap_or(s);
    if last.contains(':') || s.contains('@') {
        s.to_string()
    } else {
        format!("{s}:latest")
    }
}

fn node_images(node: &NodeInfo) -> impl Iterator<Item = (String, i64)> + '_ {
    node.node
        .status
        .iter()
        .flat_map(|s| s.images.iter().flatten())
        .flat_map(|i| i.names.iter().flatten().map(move |n| (normalize(n), i.size_bytes.unwrap_or(0))))
}

/// How many of `nodes` hold each image (built with the snapshot).
pub fn spread(nodes: &[NodeInfo]) -> HashMap<String, usize> {
    let mut m: HashMap<String, usize> = HashMap::new();
    for n in nodes {
        let mut seen: Vec<String> = node_images(n).map(|(i, _)| i).collect();
        seen.sort();
        seen.dedup();
        for i in seen {
            *m.entry(i).or_default() += 1;
        }
    }
    m
}

/// Score one node given the spread of images over `total` nodes.
pub fn score_with(pod: &Pod, node: &NodeInfo, total: usize, spread: &HashMap<String, usize>) -> i64 {
    let wanted: Vec<String> = pod.spec.iter().flat_map(|s| s.containers.iter()).filter_map(|c| c.image.as_deref()).map(normalize).collect();
    if wanted.is_empty() || total == 0 {
        return 0;
    }
    let held: HashMap<String, i64> = node_images(node).collect();
    let sum: i64 = wanted
        .iter()
        .filter_map(|w| held.get(w).map(|size| (*size as f64 * spread.get(w).copied().unwrap_or(1) as f64 / total as f64) as i64))
        .sum();
    let max = MAX_CONTAINER_THRESHOLD * wanted.len() as i64;
    let sum = sum.clamp(MIN_THRESHOLD, max);
    100 * (sum - MIN_THRESHOLD) / (max - MIN_THRESHOLD)
}

impl ScorePlugin for ImageLocality {
    fn name(&self) -> &'static str {
        "ImageLocality"
    }

    fn pre_score(&self, _pod: &Pod, snap: &Snapshot, _feasible: &[usize], state: &mut CycleState) {
        state.images = (!snap.images.1.is_empty()).then(|| snap.images.clone());
    }

    fn score(&self, state: &CycleState, pod: &Pod, node: &NodeInfo) -> i64 {
        match state.images.as_deref() {
            Some((total, spread)) if !spread.is_empty() => score_with(pod, node, *total, spread),
            _ => 0,
        }
    }
}
