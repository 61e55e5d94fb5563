//! Eviction under pressure, the basic form of upstream's eviction manager: hard thresholds
//! only. Every `eviction_interval` the node is measured; crossed thresholds turn the
//! MemoryPressure, DiskPressure and PIDPressure conditions on (they stay on for the
//! transition period after the last crossing), and one pod at a time, ranked as upstream
//! ranks them ([`rank`]), is evicted: its worker stops its containers and reports it Failed
//! with reason `Evicted`. New pods that the pressure forbids are refused at admission
//! ([`admit`]), as the kubelet refuses them.

pub mod rank;
pub mod threshold;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use k8s_openapi::api::core::v1::Pod;

pub use threshold::{parse_list, Signal, Threshold};

use crate::Shared;

/// Why a worker must stop its pod (reason and message of the Failed status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eviction {
    /// `Evicted`.
    pub reason: String,
    /// Upstream's wording.
    pub message: String,
}

/// Eviction state shared by the manager, the node status and the pod workers.
#[derive(Debug, Default)]
pub struct State {
    /// Pressure conditions now true (`MemoryPressure`, ...).
    conditions: Mutex<BTreeSet<&'static str>>,
    /// Pods asked to go, by UID, until their worker takes the request.
    requests: Mutex<HashMap<String, Eviction>>,
    /// Pods that run (not terminal), by UID: the candidates.
    active: Mutex<BTreeMap<String, Arc<Pod>>>,
    /// Ticks on every request, so that idle workers, which sleep until their pod has
    /// something due, look at once (`subscribe`).
    requested_signal: tokio::sync::watch::Sender<()>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl State {
    /// Pressure conditions that are true now.
    pub fn conditions(&self) -> BTreeSet<&'static str> {
        lock(&self.conditions).clone()
    }

    /// Replaces the pressure conditions; returns whether they changed.
    pub fn set_conditions(&self, now: BTreeSet<&'static str>) -> bool {
        let mut c = lock(&self.conditions);
        let changed = *c != now;
        *c = now;
        changed
    }

    /// A worker says its pod runs (`Some`) or no longer does (`None`). The worker's own
    /// copy of the pod is shared, not copied.
    pub fn track(&self, uid: &str, pod: Option<&Arc<Pod>>) {
        let mut active = lock(&self.active);
        match pod {
            Some(p) => {
                if active.get(uid).is_none_or(|old| !Arc::ptr_eq(old, p)) {
                    active.insert(uid.to_string(), p.clone());
                }
            }
            None => {
                active.remove(uid);
            }
        }
    }

    /// Asks the worker of pod `uid` to evict it.
    pub fn request(&self, uid: &str, eviction: Eviction) {
        lock(&self.requests).insert(uid.to_string(), eviction);
        self.requested_signal.send_replace(());
    }

    /// Changes whenever an eviction is requested (of any pod).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<()> {
        self.requested_signal.subscribe()
    }

    /// The eviction asked for pod `uid`, if any (taken: asked once).
    pub fn take(&self, uid: &str) -> Option<Eviction> {
        lock(&self.requests).remove(uid)
    }

    /// Whether the eviction of pod `uid` was asked for and not yet taken.
    pub fn requested(&self, uid: &str) -> bool {
        lock(&self.requests).contains_key(uid)
    }

    fn pending(&self) -> bool {
        !lock(&self.requests).is_empty()
    }

    fn active(&self) -> Vec<Arc<Pod>> {
        lock(&self.active).values().cloned().collect()
    }
}

/// Whether a new pod may start under the current pressure; the error is the message of
/// the rejection (`The node had condition: [MemoryPressure]. `). As upstream: critical pods
/// always; under memory pressure only pods that are not BestEffort or that tolerate the
/// memory-pressure taint; under disk or pid pressure no other pod.
pub fn admit(pod: &Pod, conditions: &BTreeSet<&'static str>) -> Result<(), String> {
    if conditions.is_empty() || rank::is_critical(pod) {
        return Ok(());
    }
    let refuse = || {
        let list: Vec<&str> = conditions.iter().copied().collect();
        Err(format!("The node had condition: [{}]. ", list.join(", ")))
    };
    let only_memory = conditions.len() == 1 && conditions.contains("MemoryPressure");
    if !only_memory {
        return refuse();
    }
    let qos = pod
        .spec
        .as_ref()
        .and_then(|s| serde_json::to_value(s).ok())
        .map(|v| skiff_api::defaults::pod_qos(&v))
        .unwrap_or("BestEffort");
    let taint = k8s_openapi::api::core::v1::Taint {
        key: "node.kubernetes.io/memory-pressure".into(),
        effect: "NoSchedule".into(),
        ..Default::default()
    };
    let tolerates = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_ref())
        .is_some_and(|ts| ts.iter().any(|t| skiff_api::taints::tolerates(t, &taint)));
    if qos != "BestEffort" || tolerates {
        return Ok(());
    }
    refuse()
}

/// Measures the node and evicts until the task is dropped.
pub async fn run(shared: Arc<Shared>) {
    let mut last_crossed: HashMap<&'static str, Instant> = HashMap::new();
    loop {
        let root = shared.config.root.clone();
        let observed = tokio::task::spawn_blocking(move || threshold::observe(&root)).await.unwrap_or_default();
        let mut crossed = threshold::crossed(&shared.config.eviction_hard, &observed);
        crossed.sort_by_key(|(t, _)| t.signal);
        let now = Instant::now();
        for (t, _) in &crossed {
            last_crossed.insert(t.signal.condition(), now);
        }
        let transition = shared.config.eviction_pressure_transition;
        let conditions: BTreeSet<&'static str> =
            last_crossed.iter().filter(|(_, at)| now.duration_since(**at) < transition).map(|(c, _)| *c).collect();
        if shared.eviction.set_conditions(conditions.clone()) {
            tracing::info!(conditions = ?conditions, "node pressure changed");
            for (t, o) in &crossed {
                tracing::warn!(threshold = %t, available = o.available, "eviction threshold crossed");
            }
            if let Err(e) = crate::node::report_now(&shared).await {
                tracing::warn!(error = %e, "could not report the node's pressure conditions");
            }
        }
        let mut evicted = false;
        if let Some((t, o)) = crossed.first() {
            if !shared.eviction.pending() {
                evicted = evict_one(&shared, t, *o).await;
            }
        }
        if !evicted && !crossed.is_empty() {
            tracing::debug!("under pressure but no pod to evict");
        }
        // One pod per pass: the next measurement shows whether that was enough.
        tokio::time::sleep(shared.config.eviction_interval).await;
    }
}


/// Picks the first pod in upstream's order for `threshold` and asks its worker to evict it.
async fn evict_one(shared: &Arc<Shared>, threshold: &Threshold, observed: threshold::Observation) -> bool {
    let pods: Vec<Pod> = shared.eviction.active().into_iter().filter(|p| !rank::is_critical(p)).map(|p| (*p).clone()).collect();
    if pods.is_empty() {
        return false;
    }
    let runtime = shared.runtime.clone();
    let sample = tokio::task::spawn_blocking(move || crate::stats::take_sample(runtime.as_ref())).await.ok().and_then(Result::ok);
    let mut candidates: Vec<rank::Candidate> = pods
        .into_iter()
        .map(|pod| {
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            let readings: Vec<_> = sample.iter().flat_map(|s| s.containers.iter()).filter(|c| c.pod_uid == uid).collect();
            rank::Candidate {
                memory: readings.iter().map(|c| (c.container.clone(), c.stats.memory_working_set_bytes)).collect(),
                pids: readings.iter().map(|c| c.stats.pids).sum(),
                pod,
            }
        })
        .collect();
    rank::rank(threshold.signal, &mut candidates);
    let Some(victim) = candidates.first() else { return false };
    let message = rank::message(threshold, observed, victim);
    let uid = victim.pod.metadata.uid.clone().unwrap_or_default();
    tracing::info!(pod = %crate::static_pods::key(&victim.pod), threshold = %threshold, "evicting pod");
    shared.eviction.request(&uid, Eviction { reason: "Evicted".into(), message });
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": v})).unwrap()
    }

    #[test]
    fn tracked_pods_are_the_workers_copies_until_replaced_or_gone() {
        let state = State::default();
        let v1 = Arc::new(pod(json!({"priority": 5, "containers": [{"name": "c"}]})));
        state.track("u1", Some(&v1));
        state.track("u1", Some(&v1));
        let kept = state.active();
        assert_eq!(kept.len(), 1);
        assert!(Arc::ptr_eq(&kept[0], &v1), "shared, not copied");
        drop(kept);
        let v2 = Arc::new(pod(json!({"priority": 7, "containers": [{"name": "c"}]})));
        state.track("u1", Some(&v2));
        assert!(Arc::ptr_eq(&state.active()[0], &v2), "a newer version replaces the old one");
        assert_eq!(Arc::strong_count(&v1), 1, "the old version is no longer held");
        state.track("u1", None);
        assert!(state.active().is_empty());
    }

    #[test]
    fn admission_under_pressure_follows_upstream() {
        let best_effort = pod(json!({"containers": [{"name": "c"}]}));
        let burstable = pod(json!({"containers": [{"name": "c", "resources": {"requests": {"memory": "1Mi"}}}]}));
        let tolerant = pod(json!({"containers": [{"name": "c"}], "tolerations": [{"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"}]}));
        let memory = BTreeSet::from(["MemoryPressure"]);
        let disk = BTreeSet::from(["DiskPressure", "MemoryPressure"]);
        assert!(admit(&best_effort, &BTreeSet::new()).is_ok());
        assert_eq!(admit(&best_effort, &memory).unwrap_err(), "The node had condition: [MemoryPressure]. ");
        assert!(admit(&burstable, &memory).is_ok());
        assert!(admit(&tolerant, &memory).is_ok());
        assert_eq!(admit(&burstable, &disk).unwrap_err(), "The node had condition: [DiskPressure, MemoryPressure]. ");
    }

    #[test]
    fn requests_are_taken_once() {
        let s = State::default();
        s.request("u", Eviction { reason: "Evicted".into(), message: "m".into() });
        assert!(s.pending());
        assert_eq!(s.take("u").unwrap().reason, "Evicted");
        assert!(s.take("u").is_none());
        assert!(s.set_conditions(BTreeSet::from(["MemoryPressure"])));
        assert!(!s.set_conditions(BTreeSet::from(["MemoryPressure"])));
    }
}
