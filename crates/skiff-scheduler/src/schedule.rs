//! The scheduling loop: wait for a change, snapshot the caches, then place every pending pod
//! (highest priority first), binding asynchronously; pods that fit nowhere may preempt.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::ObjectRef;
use kube::ResourceExt;
use serde_json::json;
use tokio::sync::{mpsc, Semaphore};

use crate::cache::{pod_key, Cache};
use crate::core::{schedule_one, Framework, Rotation};
use crate::framework::{pod_priority, Snapshot};
use crate::pod::Pod;
use crate::preemption::{find_candidate, Candidate};

/// The scheduler name pods must ask for (or leave empty).
pub const SCHEDULER_NAME: &str = "default-scheduler";

/// Scheduler settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Pods whose `spec.schedulerName` is this (or empty, for the default name) are ours.
    pub scheduler_name: String,
    /// Bindings in flight at once (upstream binds asynchronously too).
    pub bind_concurrency: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self { scheduler_name: SCHEDULER_NAME.into(), bind_concurrency: 64 }
    }
}

/// Run with the default configuration until aborted.
pub async fn run(client: kube::Client) {
    run_with(client, Config::default()).await
}

/// Run until aborted.
pub async fn run_with(client: kube::Client, config: Config) {
    let (cache, tasks) = Cache::start(client.clone(), &config.scheduler_name);
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
    cache.wait_synced().await;
    let fw = Framework::default();
    let mut rot = Rotation::default();
    let binds = Arc::new(Semaphore::new(config.bind_concurrency.max(1)));
    let (failed_tx, mut failed_rx) = mpsc::unbounded_channel::<String>();
    // Last unschedulable message per pod, so the condition and event are written once.
    let mut reported: HashMap<String, String> = HashMap::new();
    // Pods bound (or being bound) that the cache does not show as bound yet (upstream's
    // assume cache): without them, back-to-back batches would pile pods onto one node.
    // Keyed by uid, which every pending pod carries: looking pods up on every pass must not
    // format a key per pod (with 10,000 pods being bound that was 20,000 strings a pass).
    let mut assumed: HashMap<String, Assumed> = HashMap::new();
    let mut last_assumed_cleanup = Instant::now();
    // Pods whose preemption was started recently: their victims may not show as terminating
    // in the cache yet, and preempting again would evict more than needed.
    let mut preempting: HashMap<String, Instant> = HashMap::new();
    // Pods that fit nowhere, set aside until the cluster changes (see `Unschedulable`).
    let mut unschedulable = Unschedulable::default();
    // Generation and time of the last pass over every pod.
    let mut last_full = (u64::MAX, Instant::now());
    // A binding failed: its pod is pending again without any event saying so.
    let mut retry_failed_binds = false;
    loop {
        tokio::select! {
            _ = tokio::time::timeout(Duration::from_secs(2), cache.changed.notified()) => {}
            Some(key) = failed_rx.recv() => { assumed.remove(&key); retry_failed_binds = true; }
        }
        // Coalesce bursts of watch events (every binding echoes back as one) into one pass.
        tokio::time::sleep(Duration::from_millis(5)).await;
        while let Ok(key) = failed_rx.try_recv() {
            assumed.remove(&key);
            retry_failed_binds = true;
        }
        // Forget pods the cache shows bound (or gone), at most once a second: an entry for
        // a bound pod is never consulted (only unbound pods are looked up), and checking
        // every entry against the cache on every pass was the scheduler's top cost while
        // thousands of bindings were in flight.
        if last_assumed_cleanup.elapsed() >= Duration::from_secs(1) {
            last_assumed_cleanup = Instant::now();
            assumed.retain(|_, a| {
                let unbound = cache.pods.get(&a.pod).is_some_and(|p| node_of(&p).is_empty());
                if unbound && a.at.elapsed() >= Duration::from_secs(30) {
                    // Its binding never showed: look at it again in a full pass.
                    retry_failed_binds = true;
                    return false;
                }
                unbound
            });
        }
        // Read before the pods: a change that lands during this pass bumps it again.
        let generation = cache.generation.load(std::sync::atomic::Ordering::Acquire);
        let arrived = std::mem::take(&mut *cache.arrived.lock().unwrap());
        // A full pass looks at every waiting pod; otherwise only at pods that arrived. After
        // a pass every waiting pod is assumed (being bound), set aside as unschedulable, or
        // not ready for scheduling (which only a change to the pod itself ends, and that
        // makes it arrive again), so a cluster change matters only when pods are set aside
        // and failed bindings only when there are some. (Walking every waiting pod on each
        // binding's echo was the scheduler's top cost with thousands of pods in flight.)
        let full = (generation != last_full.0 && !unschedulable.is_empty()) || last_full.1.elapsed() >= RETRY_AFTER || retry_failed_binds;
        if full {
            last_full = (generation, Instant::now());
            retry_failed_binds = false;
        } else if arrived.is_empty() {
            continue;
        }
        let candidates: Vec<Arc<Pod>> = if full {
            let waiting: Vec<Arc<Pod>> = cache.waiting.lock().unwrap().iter().filter_map(|k| cache.pods.get(&k.object_ref())).collect();
            // Every waiting pod is here: set-aside pods not among them were bound or deleted.
            unschedulable.forget_gone(&waiting);
            waiting
        } else {
            let mut seen = std::collections::HashSet::new();
            arrived.into_iter().filter(|r| seen.insert(r.clone())).filter_map(|r| cache.pods.get(&r)).collect()
        };
        let mut pending: Vec<&Arc<Pod>> = candidates
            .iter()
            .filter(|p| needs_scheduling(p, &config.scheduler_name))
            .filter(|p| !unschedulable.set_aside(p, generation))
            .filter(|p| assumed.is_empty() || !assumed.contains_key(uid_of(p)))
            .collect();
        preempting.retain(|_, at| at.elapsed() < Duration::from_secs(10));
        if pending.is_empty() {
            continue;
        }
        // Upstream's queue order: priority, then age.
        pending.sort_by(|a, b| {
            pod_priority(b).cmp(&pod_priority(a)).then_with(|| a.metadata.creation_timestamp.as_ref().map(|t| t.0).cmp(&b.metadata.creation_timestamp.as_ref().map(|t| t.0)))
        });
        let pods: Vec<Arc<Pod>> = cache.pods.state();
        let mut snap = snapshot(&cache, &pods, &assumed);
        for pod in pending {
            let key = pod_key(pod);
            match schedule_one(&fw, pod, &snap, &mut rot) {
                Ok(i) => {
                    let node = snap.nodes[i].name().to_string();
                    snap.assume(i, (*pod).clone());
                    unschedulable.remove(pod);
                    let uid = uid_of(pod).to_string();
                    assumed.insert(uid.clone(), Assumed { node: node.clone(), at: Instant::now(), pod: crate::cache::key_of(pod) });
                    reported.remove(&key);
                    let (client, pod, permits, failed) = (client.clone(), (*pod).clone(), binds.clone(), failed_tx.clone());
                    tokio::spawn(async move {
                        let _permit = permits.acquire_owned().await;
                        if bind(&client, &pod, &node).await {
                            tracing::debug!(pod = %key, node = %node, "scheduled");
                        } else {
                            let _ = failed.send(uid);
                        }
                    });
                }
                Err(err) => {
                    unschedulable.insert(pod, generation);
                    let mut msg = err.message();
                    let candidate = if preempting.contains_key(&key) { Err(String::new()) } else { find_candidate(&fw, &err, pod, &snap) };
                    match candidate {
                        Err(why) if why.is_empty() => {}
                        Ok(c) => {
                            preempting.insert(key.clone(), Instant::now());
                            let node = snap.nodes[c.node].name().to_string();
                            tracing::info!(pod = %key, node = %node, victims = c.victims.len(), "preempting");
                            tokio::spawn(preempt(client.clone(), (**pod).clone(), node, c));
                        }
                        Err(why) => msg = format!("{msg} {why}"),
                    }
                    if reported.get(&key) != Some(&msg) {
                        reported.insert(key, msg.clone());
                        tokio::spawn(report_unschedulable(client.clone(), (**pod).clone(), msg));
                    }
                }
            }
        }
    }
}

/// Pods that fit nowhere, with the cluster generation and their own resourceVersion at the
/// failed attempt. They are tried again only when the cluster changed since (a node, a bound
/// or deleted pod, a claim...), when the pod itself changed, or after `RETRY_AFTER` anyway.
/// Without this every new pod would re-run the whole backlog of unschedulable pods: with
/// 10,000 of them that was several milliseconds of CPU per created pod.
#[derive(Default)]
struct Unschedulable {
    /// By a hash of the uid, with a hash of the resourceVersion: 40 bytes an entry and
    /// nothing on the heap, where two strings per pod took ~160 bytes of a server holding
    /// 10,000 unschedulable pods. Only equality is ever asked of either, and a 64-bit
    /// collision among a node's pending pods would at worst delay one pod's retry until the
    /// next cluster change or `RETRY_AFTER`.
    pods: HashMap<u64, (u64, u64, Instant)>,
    last_cleanup: Option<Instant>,
}

/// Upstream's podMaxInUnschedulablePodsDuration is 5 minutes; a minute is cheap here.
const RETRY_AFTER: Duration = Duration::from_secs(60);

/// A fixed 64-bit hash of `s` (SipHash with zero keys: the same for the process's life).
fn hash_str(s: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

fn rv_hash(pod: &Pod) -> u64 {
    hash_str(pod.metadata.resource_version.as_deref().unwrap_or(""))
}

impl Unschedulable {
    fn insert(&mut self, pod: &Pod, generation: u64) {
        self.pods.insert(hash_str(uid_of(pod)), (rv_hash(pod), generation, Instant::now()));
    }

    fn is_empty(&self) -> bool {
        self.pods.is_empty()
    }

    fn remove(&mut self, pod: &Pod) {
        if !self.pods.is_empty() {
            self.pods.remove(&hash_str(uid_of(pod)));
        }
    }

    /// Whether `pod` failed at this very generation and has not changed since.
    fn set_aside(&self, pod: &Pod, generation: u64) -> bool {
        if self.pods.is_empty() {
            return false;
        }
        self.pods.get(&hash_str(uid_of(pod))).is_some_and(|(rv, at_generation, at)| {
            *at_generation == generation && *rv == rv_hash(pod) && at.elapsed() < RETRY_AFTER
        })
    }

    /// Drop pods that are no longer among `waiting` (every pod waiting for scheduling):
    /// bound or deleted since. Now and then only: it builds a set of them all.
    fn forget_gone(&mut self, pods: &[Arc<Pod>]) {
        if self.pods.is_empty() || self.last_cleanup.is_some_and(|t| t.elapsed() < Duration::from_secs(10)) {
            return;
        }
        self.last_cleanup = Some(Instant::now());
        let live: std::collections::HashSet<u64> = pods.iter().map(|p| hash_str(uid_of(p))).collect();
        self.pods.retain(|uid, _| live.contains(uid));
    }
}

/// Nodes that are Ready (see [`node_considered`]), with the pods on them (bound, or assumed
/// in an earlier batch).
fn snapshot(cache: &Cache, pods: &[Arc<Pod>], assumed: &HashMap<String, Assumed>) -> Snapshot {
    let nodes: Vec<Arc<Node>> = cache.nodes.state().into_iter().filter(|n| node_considered(n)).collect();
    let mut by_node: HashMap<String, Vec<Arc<Pod>>> = HashMap::new();
    for p in pods.iter().filter(|p| active(p)) {
        let node = node_of(p);
        let node = if node.is_empty() {
            if assumed.is_empty() {
                continue;
            }
            match assumed.get(uid_of(p)) {
                Some(a) => a.node.as_str(),
                None => continue,
            }
        } else {
            node
        };
        by_node.entry(node.to_string()).or_default().push(p.clone());
    }
    let namespaces: HashMap<String, BTreeMap<String, String>> =
        cache.namespaces.state().iter().map(|n| (n.name_any(), n.labels().clone())).collect();
    let mut snap = Snapshot::new(nodes, by_node, namespaces);
    snap.claims = cache.claims.state().into_iter().map(|c| (format!("{}/{}", c.namespace().unwrap_or_default(), c.name_any()), c)).collect();
    snap.volumes = cache.volumes.state();
    snap.classes = cache.classes.state().into_iter().map(|c| (c.name_any(), c)).collect();
    snap.pdbs = cache.pdbs.state();
    snap
}

/// A pod bound (or being bound) that the cache does not show bound yet.
struct Assumed {
    node: String,
    at: Instant,
    pod: ObjectRef<Pod>,
}

fn uid_of(p: &Pod) -> &str {
    p.metadata.uid.as_deref().unwrap_or("")
}


fn node_of(p: &Pod) -> &str {
    p.node_name()
}

/// Whether pods may go to `n`: Ready nodes, and nodes reporting Ready=False once the node
/// lifecycle controller tainted them `node.kubernetes.io/not-ready:NoSchedule`, so that only
/// pods tolerating that taint go there (a network add-on's daemons on a CNI node that waits
/// for them to write its configuration), as upstream decides by taints alone.
fn node_considered(n: &Node) -> bool {
    let ready = n
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.status.as_str());
    let not_ready_taint = || {
        n.spec
            .as_ref()
            .and_then(|s| s.taints.as_ref())
            .is_some_and(|ts| ts.iter().any(|t| t.key == "node.kubernetes.io/not-ready" && t.effect == "NoSchedule"))
    };
    match ready {
        Some("True") => true,
        Some("False") => not_ready_taint(),
        _ => false,
    }
}

fn active(p: &Pod) -> bool {
    let phase = p.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("");
    phase != "Succeeded" && phase != "Failed"
}

fn needs_scheduling(p: &Pod, scheduler: &str) -> bool {
    let Some(spec) = p.spec.as_ref() else { return false };
    p.node_name().is_empty()
        && crate::cache::for_scheduler(p, scheduler)
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

/// Nominate the node for the preemptor, then evict the victims gracefully, each with a
/// DisruptionTarget condition and a `Preempted` event as upstream.
async fn preempt(client: kube::Client, pod: Pod, node: String, c: Candidate) {
    let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
    let nominate = json!({"status": {"nominatedNodeName": node}});
    if let Err(e) = api.patch_status(&pod.name_any(), &PatchParams::default(), &Patch::Merge(&nominate)).await {
        tracing::warn!(pod = %pod.name_any(), error = %e, "could not set nominatedNodeName");
    }
    let preemptor_uid = pod.uid().unwrap_or_default();
    for v in c.victims {
        let ns = v.namespace().unwrap_or_default();
        let vapi: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let now = k8s_openapi::jiff::Timestamp::now().to_string();
        let cond = json!({"status": {"conditions": [{"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler",
            "message": format!("{SCHEDULER_NAME}: preempting to accommodate a higher priority pod"), "lastTransitionTime": now}]}});
        let _ = vapi.patch_status(&v.name_any(), &PatchParams::default(), &Patch::Strategic(&cond)).await;
        event(&client, &v, "Normal", "Preempted", &format!("Preempted by pod {preemptor_uid} on node {node}")).await;
        let dp = DeleteParams { preconditions: v.uid().map(|uid| kube::api::Preconditions { uid: Some(uid), resource_version: None }), ..Default::default() };
        match vapi.delete(&v.name_any(), &dp).await {
            Ok(_) => tracing::info!(victim = %v.name_any(), preemptor = %pod.name_any(), node = %node, "preempted"),
            Err(e) => tracing::warn!(victim = %v.name_any(), error = %e, "could not delete preemption victim"),
        }
    }
}

async fn event(client: &kube::Client, pod: &Pod, type_: &str, reason: &str, msg: &str) {
    let ns = pod.namespace().unwrap_or_default();
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), &ns);
    let now = k8s_openapi::jiff::Timestamp::now();
    let ev = json!({
        "apiVersion": "v1", "kind": "Event",
        // Named like client-go's recorder: <object>.<hex nanoseconds>.
        "metadata": {"name": format!("{}.{:x}", pod.name_any(), now.as_nanosecond()), "namespace": ns},
        "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": pod.name_any(), "namespace": ns, "uid": pod.uid()},
        "reason": reason, "message": msg, "type": type_,
        "source": {"component": SCHEDULER_NAME}, "reportingComponent": SCHEDULER_NAME,
        "firstTimestamp": now.to_string(), "lastTimestamp": now.to_string(), "count": 1,
    });
    if let Ok(ev) = serde_json::from_value::<k8s_openapi::api::core::v1::Event>(ev) {
        let _ = events.create(&PostParams::default(), &ev).await;
    }
}

async fn report_unschedulable(client: kube::Client, pod: Pod, msg: String) {
    let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let status = json!({"status": {"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": msg, "lastTransitionTime": now}]}});
    let _ = api.patch_status(&pod.name_any(), &PatchParams::default(), &Patch::Strategic(&status)).await;
    event(&client, &pod, "Warning", "FailedScheduling", &msg).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, rv: &str) -> Pod {
        let mut p = Pod::default();
        p.metadata.name = Some(name.into());
        p.metadata.namespace = Some("default".into());
        p.metadata.resource_version = Some(rv.into());
        p.metadata.uid = Some(format!("uid-{name}"));
        p
    }

    #[test]
    fn unschedulable_pods_wait_for_a_cluster_change_or_their_own() {
        let mut u = Unschedulable::default();
        let p = pod("web", "5");
        assert!(!u.set_aside(&p, 1), "never tried: schedule it");
        u.insert(&p, 1);
        assert!(u.set_aside(&p, 1), "nothing changed since it failed");
        assert!(!u.set_aside(&p, 2), "the cluster changed: try again");
        assert!(!u.set_aside(&pod("web", "6"), 1), "the pod itself changed: try again");
        assert!(!u.set_aside(&pod("other", "5"), 1));
        u.remove(&p);
        assert!(!u.set_aside(&p, 1));
    }

    #[test]
    fn not_ready_nodes_are_considered_only_with_the_not_ready_taint() {
        let node = |ready: &str, taints: serde_json::Value| -> Node {
            serde_json::from_value(json!({"metadata": {"name": "n"}, "spec": {"taints": taints},
                "status": {"conditions": [{"type": "Ready", "status": ready}]}}))
            .unwrap()
        };
        let not_ready = json!([{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}]);
        assert!(node_considered(&node("True", json!([]))));
        assert!(!node_considered(&node("False", json!([]))), "not tainted yet: nothing may go there");
        assert!(node_considered(&node("False", not_ready.clone())));
        assert!(!node_considered(&node("Unknown", not_ready)));
        assert!(!node_considered(&Node::default()));
    }

    #[test]
    fn unschedulable_forgets_deleted_pods() {
        let mut u = Unschedulable::default();
        let (a, b) = (pod("a", "1"), pod("b", "1"));
        u.insert(&a, 1);
        u.insert(&b, 1);
        u.forget_gone(&[Arc::new(a.clone())]);
        assert!(u.set_aside(&a, 1));
        assert_eq!(u.pods.len(), 1);
    }
}
