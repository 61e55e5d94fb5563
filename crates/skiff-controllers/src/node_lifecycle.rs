//! Node lifecycle: a node whose heartbeat (its Lease in `kube-node-lease`, or the Ready
//! condition's heartbeat) is older than the grace period becomes Ready=Unknown and gets the
//! `node.kubernetes.io/unreachable` NoSchedule and NoExecute taints; pods that do not
//! tolerate NoExecute taints (or whose tolerationSeconds ran out) are evicted, so their
//! controllers replace them elsewhere. When heartbeats return, the taints go away.
//!
//! Taints by condition, as upstream's TaintNodesByCondition: a node reporting
//! MemoryPressure, DiskPressure or PIDPressure gets the matching
//! `node.kubernetes.io/{memory,disk,pid}-pressure` NoSchedule taint until the condition
//! clears, so the scheduler keeps new pods away; one reporting Ready=False (a CNI node
//! without a network configuration yet) gets `node.kubernetes.io/not-ready` NoSchedule, which
//! only pods that tolerate it (a network add-on's daemons) get past.
//!
//! Trade-off: upstream waits 40 s before marking a node unknown and tolerates it for 300 s
//! (almost six minutes before pods move). skiff defaults to a 20 s grace and, through the
//! API server's DefaultTolerationSeconds admission, 30 s tolerations: pods of a dead node are
//! replaced within about a minute, as the course material expects, at the cost of evicting
//! pods during shorter network blips.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod, Taint};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use futures::StreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::ResourceExt;
use serde_json::json;

/// Timings of the node lifecycle controller.
#[derive(Debug, Clone)]
pub struct Timings {
    /// How long without a heartbeat before a node is Unknown.
    pub grace: Duration,
    /// How often nodes are checked.
    pub period: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Self { grace: Duration::from_secs(20), period: Duration::from_secs(2) }
    }
}

const UNREACHABLE: &str = "node.kubernetes.io/unreachable";

/// Node conditions, the status that brings a NoSchedule taint, and the taint.
const CONDITION_TAINTS: &[(&str, &str, &str)] = &[
    ("MemoryPressure", "True", "node.kubernetes.io/memory-pressure"),
    ("DiskPressure", "True", "node.kubernetes.io/disk-pressure"),
    ("PIDPressure", "True", "node.kubernetes.io/pid-pressure"),
    ("Ready", "False", NOT_READY),
];

/// The taint of a node whose Ready condition is False; the scheduler considers such a node
/// only once it carries it.
const NOT_READY: &str = "node.kubernetes.io/not-ready";

/// The node's taints made to match its conditions, or `None` when they already do.
fn sync_condition_taints(node: &Node) -> Option<Vec<Taint>> {
    let conditions = node.status.as_ref().and_then(|s| s.conditions.as_ref());
    let is = |kind: &str, status: &str| conditions.is_some_and(|cs| cs.iter().any(|c| c.type_ == kind && c.status == status));
    let taints: Vec<Taint> = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
    let mut out: Vec<Taint> = taints
        .iter()
        .filter(|t| {
            CONDITION_TAINTS
                .iter()
                .all(|(cond, status, key)| t.key != *key || t.effect != "NoSchedule" || is(cond, status))
        })
        .cloned()
        .collect();
    for (cond, status, key) in CONDITION_TAINTS {
        if is(cond, status) && !out.iter().any(|t| t.key == *key && t.effect == "NoSchedule") {
            out.push(Taint {
                key: key.to_string(),
                effect: "NoSchedule".into(),
                time_added: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now())),
                value: None,
            });
        }
    }
    (out != taints).then_some(out)
}

/// Run until aborted.
pub async fn run(client: kube::Client, timings: Timings) {
    // Nodes and Leases are watched, not listed every period: with thousands of nodes, reading
    // and decoding every Node and Lease every 2 s was a steady share of the API server's CPU.
    let (nodes, nodes_w) = reflector::store::<Node>();
    let (leases, leases_w) = reflector::store::<Lease>();
    let node_events = watcher(Api::<Node>::all(client.clone()), watcher::Config::default()).modify(|n| n.metadata.managed_fields = None);
    let lease_events = watcher(Api::<Lease>::namespaced(client.clone(), "kube-node-lease"), watcher::Config::default())
        .modify(|l| l.metadata.managed_fields = None);
    let _nodes = crate::AbortOnDrop(tokio::spawn(reflector::reflector(nodes_w, node_events).default_backoff().for_each(|_| async {})));
    let _leases = crate::AbortOnDrop(tokio::spawn(reflector::reflector(leases_w, lease_events).default_backoff().for_each(|_| async {})));
    if nodes.wait_until_ready().await.is_err() || leases.wait_until_ready().await.is_err() {
        return;
    }
    loop {
        if let Err(e) = pass(&client, &timings, &nodes, &leases).await {
            tracing::debug!(error = %e, "node lifecycle pass failed");
        }
        tokio::time::sleep(timings.period).await;
    }
}

fn now_secs() -> i64 {
    k8s_openapi::jiff::Timestamp::now().as_second()
}

async fn pass(client: &kube::Client, t: &Timings, node_store: &Store<Node>, leases: &Store<Lease>) -> Result<(), kube::Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let lease_times: HashMap<String, i64> = leases
        .state()
        .iter()
        .filter_map(|l| Some((l.name_any(), l.spec.as_ref()?.renew_time.as_ref()?.0.as_second())))
        .collect();
    for node in node_store.state() {
        let name = node.name_any();
        let ready = node.status.as_ref().and_then(|s| s.conditions.as_ref()).and_then(|cs| cs.iter().find(|c| c.type_ == "Ready").cloned());
        let heartbeat = lease_times
            .get(&name)
            .copied()
            .into_iter()
            .chain(ready.as_ref().and_then(|c| c.last_heartbeat_time.as_ref()).map(|t| t.0.as_second()))
            .max();
        let Some(heartbeat) = heartbeat else { continue };
        let stale = now_secs() - heartbeat > t.grace.as_secs() as i64;
        let taints: Vec<Taint> = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
        let has_taint = taints.iter().any(|t| t.key == UNREACHABLE);
        if stale {
            if ready.as_ref().is_some_and(|c| c.status != "Unknown") {
                let now = k8s_openapi::jiff::Timestamp::now().to_string();
                let msg = "Kubelet stopped posting node status.";
                let patch = json!({"status": {"conditions": [{"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown", "message": msg, "lastTransitionTime": now, "lastHeartbeatTime": ready.as_ref().and_then(|c| c.last_heartbeat_time.clone())}]}});
                nodes.patch_status(&name, &PatchParams::default(), &Patch::Strategic(&patch)).await?;
                tracing::warn!(node = %name, "node stopped posting status; marked Unknown");
            }
            if !has_taint {
                let now = k8s_openapi::jiff::Timestamp::now().to_string();
                let mut all: Vec<serde_json::Value> = taints.iter().filter_map(|t| serde_json::to_value(t).ok()).collect();
                all.push(json!({"key": UNREACHABLE, "effect": "NoSchedule", "timeAdded": now}));
                all.push(json!({"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": now}));
                nodes.patch(&name, &PatchParams::default(), &Patch::Merge(&json!({"spec": {"taints": all}}))).await?;
            }
        } else if has_taint && ready.as_ref().is_some_and(|c| c.status == "True") {
            let kept: Vec<serde_json::Value> =
                taints.iter().filter(|t| t.key != UNREACHABLE).filter_map(|t| serde_json::to_value(t).ok()).collect();
            nodes.patch(&name, &PatchParams::default(), &Patch::Merge(&json!({"spec": {"taints": kept}}))).await?;
            tracing::info!(node = %name, "node is back; unreachable taints removed");
        } else if let Some(taints) = sync_condition_taints(&node) {
            nodes.patch(&name, &PatchParams::default(), &Patch::Merge(&json!({"spec": {"taints": taints}}))).await?;
            tracing::info!(node = %name, "condition taints updated from node conditions");
        }
        evict_untolerated(client, &node).await?;
    }
    Ok(())
}

/// Evict pods on `node` that do not tolerate its NoExecute taints (taint-based eviction).
async fn evict_untolerated(client: &kube::Client, node: &Node) -> Result<(), kube::Error> {
    let no_execute: Vec<Taint> = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|t| t.effect == "NoExecute")
        .collect();
    if no_execute.is_empty() {
        return Ok(());
    }
    let pods: Api<Pod> = Api::all(client.clone());
    let on_node = pods.list(&ListParams::default().fields(&format!("spec.nodeName={}", node.name_any()))).await?;
    for pod in on_node.items.into_iter().filter(|p| p.metadata.deletion_timestamp.is_none()) {
        let tolerations = pod.spec.as_ref().and_then(|s| s.tolerations.clone()).unwrap_or_default();
        let mut evict_at: Option<i64> = None;
        for taint in &no_execute {
            let added = taint.time_added.as_ref().map(|t| t.0.as_second()).unwrap_or_else(now_secs);
            let matching: Vec<_> = tolerations
                .iter()
                .filter(|tol| skiff_api::taints::tolerates(tol, taint))
                .collect();
            let deadline = if matching.is_empty() {
                Some(added)
            } else if matching.iter().any(|t| t.toleration_seconds.is_none()) {
                None
            } else {
                matching.iter().filter_map(|t| t.toleration_seconds).min().map(|s| added + s)
            };
            if let Some(d) = deadline {
                evict_at = Some(evict_at.map_or(d, |e: i64| e.min(d)));
            }
        }
        if evict_at.is_some_and(|at| now_secs() >= at) {
            let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
            tracing::info!(pod = %pod.name_any(), node = %node.name_any(), "evicting pod from tainted node");
            let _ = api.delete(&pod.name_any(), &DeleteParams::default()).await;
        }
    }
    Ok(())
}


#[cfg(test)]
mod tests {
    use super::*;

    fn node(conditions: serde_json::Value, taints: serde_json::Value) -> Node {
        serde_json::from_value(json!({"metadata": {"name": "n"}, "spec": {"taints": taints}, "status": {"conditions": conditions}})).unwrap()
    }

    #[test]
    fn pressure_conditions_bring_and_take_their_taints() {
        let pressured = node(
            json!([{"type": "MemoryPressure", "status": "True"}, {"type": "DiskPressure", "status": "False"}]),
            json!([{"key": "dedicated", "effect": "NoSchedule"}]),
        );
        let taints = sync_condition_taints(&pressured).expect("a taint to add");
        let keys: Vec<&str> = taints.iter().map(|t| t.key.as_str()).collect();
        assert_eq!(keys, ["dedicated", "node.kubernetes.io/memory-pressure"]);
        let settled = node(json!([{"type": "MemoryPressure", "status": "True"}]), serde_json::to_value(&taints).unwrap());
        assert_eq!(sync_condition_taints(&settled), None);
        let relieved = node(json!([{"type": "MemoryPressure", "status": "False"}]), serde_json::to_value(&taints).unwrap());
        let kept = sync_condition_taints(&relieved).expect("the taint to go");
        assert_eq!(kept.iter().map(|t| t.key.as_str()).collect::<Vec<_>>(), ["dedicated"]);
    }

    #[test]
    fn a_not_ready_node_is_tainted_until_it_is_ready() {
        let not_ready = node(json!([{"type": "Ready", "status": "False", "reason": "KubeletNotReady"}]), json!([]));
        let taints = sync_condition_taints(&not_ready).expect("a taint to add");
        assert_eq!(taints.len(), 1);
        assert_eq!((taints[0].key.as_str(), taints[0].effect.as_str()), (NOT_READY, "NoSchedule"));
        let settled = node(json!([{"type": "Ready", "status": "False"}]), serde_json::to_value(&taints).unwrap());
        assert_eq!(sync_condition_taints(&settled), None);
        let ready = node(json!([{"type": "Ready", "status": "True"}]), serde_json::to_value(&taints).unwrap());
        assert_eq!(sync_condition_taints(&ready), Some(vec![]), "the taint goes once Ready");
        assert_eq!(sync_condition_taints(&node(json!([{"type": "Ready", "status": "True"}]), json!([]))), None);
    }
}
