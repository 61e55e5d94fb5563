//! The scheduling loop: wait for a change, then place every pending pod.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use serde_json::json;

use crate::cache::Cache;
use crate::framework::NodeInfo;
use crate::plugins::{default_filters, default_scores};

/// The scheduler name pods must ask for (or leave empty).
pub const SCHEDULER_NAME: &str = "default-scheduler";

/// Run until aborted.
pub async fn run(client: kube::Client) {
    let (cache, tasks) = Cache::start(client.clone());
    // The informers stop with the loop (e.g. when leadership is lost and this task is aborted).
    struct AbortAll(Vec<tokio::task::JoinHandle<()>>);
    impl Drop for AbortAll {
        fn drop(&mut self) {
            for t in &self.0 {
                t.abort();
            }
        }
    }
    let _tasks = AbortAll(tasks);
    let filters = default_filters();
    let scores = default_scores();
    // Last unschedulable message per pod, so the condition and event are written once.
    let mut reported: HashMap<String, String> = HashMap::new();
    // Pods bound in earlier cycles that the cache does not show as bound yet (upstream's
    // assume cache): without them, back-to-back cycles would pile pods onto one node.
    let mut assumed: HashMap<String, (String, std::time::Instant)> = HashMap::new();
    loop {
        let _ = tokio::time::timeout(Duration::from_secs(2), cache.changed.notified()).await;
        let nodes: Vec<std::sync::Arc<Node>> = cache.nodes.state();
        let pods: Vec<std::sync::Arc<Pod>> = cache.pods.state();
        assumed.retain(|key, (_, at)| {
            at.elapsed() < Duration::from_secs(30)
                && pods.iter().any(|p| pod_key(p) == *key && p.spec.as_ref().and_then(|s| s.node_name.as_deref()).unwrap_or("").is_empty())
        });
        let mut infos: Vec<NodeInfo> = nodes
            .iter()
            .filter(|n| node_ready(n))
            .map(|n| {
                let name = n.name_any();
                let on: Vec<Pod> = pods
                    .iter()
                    .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(name.as_str()) && active(p))
                    .map(|p| p.as_ref().clone())
                    .collect();
                let mut info = NodeInfo::new(n.as_ref().clone(), on);
                for p in pods.iter().filter(|p| assumed.get(&pod_key(p)).is_some_and(|(node, _)| *node == name)) {
                    info.assume(p);
                }
                info
            })
            .collect();
        let mut pending: Vec<&std::sync::Arc<Pod>> =
            pods.iter().filter(|p| needs_scheduling(p) && !assumed.contains_key(&pod_key(p))).collect();
        pending.sort_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0.to_string()).unwrap_or_default());
        for pod in pending {
            let key = format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any());
            let mut reasons: HashMap<String, usize> = HashMap::new();
            let mut feasible: Vec<usize> = Vec::new();
            for (i, info) in infos.iter().enumerate() {
                match filters.iter().try_for_each(|f| f.filter(pod, info)) {
                    Ok(()) => feasible.push(i),
                    Err(r) => *reasons.entry(r).or_default() += 1,
                }
            }
            let best = feasible
                .iter()
                .map(|i| (scores.iter().map(|(s, w)| s.score(pod, &infos[*i]) * w).sum::<i64>(), *i))
                .max_by_key(|(score, i)| (*score, std::cmp::Reverse(*i)));
            match best {
                Some((_, i)) => {
                    let node = infos[i].name();
                    if bind(&client, pod, &node).await {
                        infos[i].assume(pod);
                        assumed.insert(key.clone(), (node.clone(), std::time::Instant::now()));
                        reported.remove(&key);
                        tracing::info!(pod = %key, node = %node, "scheduled");
                    }
                }
                None => {
                    let mut parts: Vec<String> = reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
                    parts.sort();
                    let msg = format!(
                        "0/{} nodes are available: {}. preemption: 0/{} nodes are available: {} Preemption is not helpful for scheduling.",
                        nodes.len(),
                        if parts.is_empty() { "no nodes available to schedule pods".to_string() } else { parts.join(", ") },
                        nodes.len(),
                        nodes.len()
                    );
                    if reported.get(&key) != Some(&msg) {
                        report_unschedulable(&client, pod, &msg).await;
                        reported.insert(key, msg);
                    }
                }
            }
        }
    }
}

fn pod_key(p: &Pod) -> String {
    format!("{}/{}", p.namespace().unwrap_or_default(), p.name_any())
}

fn node_ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn active(p: &Pod) -> bool {
    let phase = p.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("");
    phase != "Succeeded" && phase != "Failed"
}

fn needs_scheduling(p: &Pod) -> bool {
    let Some(spec) = p.spec.as_ref() else { return false };
    spec.node_name.as_deref().unwrap_or("").is_empty()
        && spec.scheduler_name.as_deref().unwrap_or(SCHEDULER_NAME) == SCHEDULER_NAME
        && p.metadata.deletion_timestamp.is_none()
        && spec.scheduling_gates.as_ref().is_none_or(|g| g.is_empty())
        && active(p)
}

async fn bind(client: &kube::Client, pod: &Pod, node: &str) -> bool {
    let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
    let binding = json!({
        "apiVersion": "v1", "kind": "Binding",
        "metadata": {"name": pod.name_any(), "namespace": pod.namespace()},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    });
    match api.create_subresource::<_, serde_json::Value>("binding", &pod.name_any(), &PostParams::default(), &binding).await {
        Ok(_) => true,
        Err(e) => {
            tracing::debug!(pod = %pod.name_any(), error = %e, "binding failed");
            false
        }
    }
}

async fn report_unschedulable(client: &kube::Client, pod: &Pod, msg: &str) {
    let ns = pod.namespace().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let status = json!({"status": {"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": msg, "lastTransitionTime": now}]}});
    let _ = api.patch_status(&pod.name_any(), &PatchParams::default(), &Patch::Strategic(&status)).await;
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), &ns);
    let ev = json!({
        "apiVersion": "v1", "kind": "Event",
        // Named like client-go's recorder: <object>.<hex nanoseconds>.
        "metadata": {"name": format!("{}.{:x}", pod.name_any(), k8s_openapi::jiff::Timestamp::now().as_nanosecond()), "namespace": ns},
        "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": pod.name_any(), "namespace": ns, "uid": pod.uid()},
        "reason": "FailedScheduling", "message": msg, "type": "Warning",
        "source": {"component": SCHEDULER_NAME}, "reportingComponent": SCHEDULER_NAME,
        "firstTimestamp": now, "lastTimestamp": now, "count": 1,
    });
    if let Ok(ev) = serde_json::from_value::<k8s_openapi::api::core::v1::Event>(ev) {
        let _ = events.create(&PostParams::default(), &ev).await;
    }
}
