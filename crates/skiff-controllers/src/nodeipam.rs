//! Node IPAM, as upstream's node-ipam-controller with the range allocator: every Node gets
//! a /24 `spec.podCIDR` out of the cluster CIDR (10.42.0.0/16), never one another node holds.
//! The pod network of each node builds its bridge and routes from it.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::ResourceExt;
use serde_json::json;

use crate::runtime::Error;

/// The cluster CIDR pod ranges come from.
pub const CLUSTER_CIDR: (Ipv4Addr, u8) = (Ipv4Addr::new(10, 42, 0, 0), 16);

struct Ctx {
    client: kube::Client,
    nodes: Store<Node>,
    /// Ranges handed out that the node cache may not show yet, with when. Held while
    /// allocating, which also serialises allocations so two nodes never get the same range.
    recent: tokio::sync::Mutex<Vec<(String, Instant)>>,
}

/// How long a range just handed out is remembered apart from the cache (which shows it
/// within moments; the bound only matters for a node deleted before its patch is seen).
const RECENT_TTL: Duration = Duration::from_secs(60);

/// The first /24 of `cluster` not in `taken` (as `a.b.c.0/24` strings).
pub fn next_free(cluster: (Ipv4Addr, u8), taken: &BTreeSet<String>) -> Option<String> {
    let base = u32::from(cluster.0) & (!0u32).checked_shl(32 - cluster.1 as u32).unwrap_or(0);
    let count = 1u32 << (24 - cluster.1.min(24));
    (0..count)
        .map(|i| format!("{}/24", Ipv4Addr::from(base + (i << 8))))
        .find(|cidr| !taken.contains(cidr))
}

/// Run until aborted.
pub async fn run(client: kube::Client) {
    let api: Api<Node> = Api::all(client.clone());
    let controller = Controller::new(api, watcher::Config::default());
    let ctx = Arc::new(Ctx { client, nodes: controller.store(), recent: Default::default() });
    controller.run(reconcile, crate::runtime::error_policy, ctx).for_each(|_| async {}).await;
}

async fn reconcile(node: Arc<Node>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if node.spec.as_ref().and_then(|s| s.pod_cidr.as_ref()).is_some() {
        return Ok(Action::await_change());
    }
    // As upstream's range allocator, the taken ranges come from the node cache (complete
    // once its first list is in) plus what this controller handed out since. Listing every
    // Node per allocation instead made registering N nodes cost N full lists (with 5,000
    // nodes that was most of the API server's CPU for minutes).
    if ctx.nodes.wait_until_ready().await.is_err() {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let mut recent = ctx.recent.lock().await;
    let mut taken: BTreeSet<String> =
        ctx.nodes.state().iter().filter_map(|n| n.spec.as_ref().and_then(|s| s.pod_cidr.clone())).collect();
    recent.retain(|(cidr, at)| !taken.contains(cidr) && at.elapsed() < RECENT_TTL);
    taken.extend(recent.iter().map(|(cidr, _)| cidr.clone()));
    let Some(cidr) = next_free(CLUSTER_CIDR, &taken) else {
        tracing::warn!(node = %node.name_any(), "no pod CIDR left in the cluster range");
        return Ok(Action::requeue(Duration::from_secs(60)));
    };
    let api: Api<Node> = Api::all(ctx.client.clone());
    let patch = json!({"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}});
    api.patch(&node.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
    tracing::info!(node = %node.name_any(), %cidr, "allocated pod CIDR");
    recent.push((cidr, Instant::now()));
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_the_first_free_range() {
        let mut taken = BTreeSet::new();
        assert_eq!(next_free(CLUSTER_CIDR, &taken).as_deref(), Some("10.42.0.0/24"));
        taken.insert("10.42.0.0/24".to_string());
        taken.insert("10.42.2.0/24".to_string());
        assert_eq!(next_free(CLUSTER_CIDR, &taken).as_deref(), Some("10.42.1.0/24"));
        let all: BTreeSet<String> = (0..256).map(|i| format!("10.42.{i}.0/24")).collect();
        assert_eq!(next_free(CLUSTER_CIDR, &all), None);
    }
}
