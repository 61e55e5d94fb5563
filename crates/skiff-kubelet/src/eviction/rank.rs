//! Which pod goes first under pressure, and the words the eviction is reported with.
//!
//! As upstream's eviction manager ranks them: for memory, pods using more than they request
//! come first, then lower priority, then larger use above the request; for pids, lower
//! priority then more processes. Disk signals rank by priority here (per-pod disk use is
//! not measured yet). Critical pods (static, mirror, or priority at least
//! system-cluster-critical's) are never candidates.

use std::cmp::Ordering;

use k8s_openapi::api::core::v1::Pod;

use super::threshold::{show_bytes, Observation, Signal, Threshold};

/// Priority from which pods are critical (`system-cluster-critical`).
pub const CRITICAL_PRIORITY: i32 = 2_000_000_000;

/// A running pod and what its containers use.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The pod.
    pub pod: Pod,
    /// Memory working set by container name, in bytes.
    pub memory: Vec<(String, u64)>,
    /// Processes of the whole pod.
    pub pids: u64,
}

impl Candidate {
    fn priority(&self) -> i32 {
        self.pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
    }

    fn memory_usage(&self) -> u64 {
        self.memory.iter().map(|(_, m)| m).sum()
    }

    fn memory_request(&self) -> u64 {
        self.pod
            .spec
            .iter()
            .flat_map(|s| s.containers.iter())
            .map(|c| container_request(c, "memory"))
            .sum()
    }
}

fn container_request(c: &k8s_openapi::api::core::v1::Container, resource: &str) -> u64 {
    c.resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get(resource))
        .and_then(|q| crate::volumes::quantity::Quantity::parse(&q.0))
        .map(|q| q.value().max(0) as u64)
        .unwrap_or(0)
}

/// Static, mirror and system-critical pods are kept whatever the pressure.
pub fn is_critical(pod: &Pod) -> bool {
    crate::static_pods::is_static(pod)
        || crate::static_pods::is_mirror(pod)
        || pod.spec.as_ref().and_then(|s| s.priority).is_some_and(|p| p >= CRITICAL_PRIORITY)
}

/// Orders `candidates` for `signal`, first to evict first.
pub fn rank(signal: Signal, candidates: &mut [Candidate]) {
    candidates.sort_by(|a, b| match signal {
        Signal::MemoryAvailable => {
            let exceeds = |c: &Candidate| c.memory_usage() > c.memory_request();
            let over = |c: &Candidate| c.memory_usage() as i128 - c.memory_request() as i128;
            exceeds(b)
                .cmp(&exceeds(a))
                .then(a.priority().cmp(&b.priority()))
                .then(over(b).cmp(&over(a)))
        }
        Signal::PidAvailable => a.priority().cmp(&b.priority()).then(b.pids.cmp(&a.pids)),
        _ => a.priority().cmp(&b.priority()).then(Ordering::Equal),
    });
}

/// Upstream's eviction message: the resource, the threshold and what was available, then
/// the containers that used more memory than they asked for.
pub fn message(threshold: &Threshold, observed: Observation, victim: &Candidate) -> String {
    let signal = threshold.signal;
    let mut out = format!("The node was low on resource: {}. ", signal.resource());
    let (quantity, available) = match signal {
        Signal::MemoryAvailable | Signal::NodeFsAvailable | Signal::ImageFsAvailable => {
            (show_bytes(threshold.absolute(observed.capacity)), show_bytes(observed.available))
        }
        _ => (threshold.absolute(observed.capacity).to_string(), observed.available.to_string()),
    };
    out.push_str(&format!("Threshold quantity: {quantity}, available: {available}. "));
    if signal == Signal::MemoryAvailable {
        for c in victim.pod.spec.iter().flat_map(|s| s.containers.iter()) {
            let used = victim.memory.iter().find(|(n, _)| *n == c.name).map(|(_, m)| *m).unwrap_or(0);
            let request = container_request(c, "memory");
            if used > request {
                out.push_str(&format!(
                    "Container {} was using {}, request is {}, has larger consumption of memory. ",
                    c.name,
                    show_bytes(used),
                    show_bytes(request)
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn candidate(name: &str, priority: i32, request: Option<&str>, used: u64) -> Candidate {
        let mut c = json!({"name": "c", "image": "i"});
        if let Some(r) = request {
            c["resources"] = json!({"requests": {"memory": r}});
        }
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"priority": priority, "containers": [c]}})).unwrap();
        Candidate { pod, memory: vec![("c".into(), used)], pids: 1 }
    }

    fn names(c: &[Candidate]) -> Vec<&str> {
        c.iter().map(|c| c.pod.metadata.name.as_deref().unwrap()).collect()
    }

    #[test]
    fn memory_ranking_follows_upstream() {
        let mut c = vec![
            candidate("within-request", 0, Some("100Mi"), 50 << 20),
            candidate("best-effort-small", 0, None, 1 << 20),
            candidate("best-effort-big", 0, None, 30 << 20),
            candidate("important-over", 1000, None, 90 << 20),
        ];
        rank(Signal::MemoryAvailable, &mut c);
        assert_eq!(names(&c), ["best-effort-big", "best-effort-small", "important-over", "within-request"]);
    }

    #[test]
    fn the_message_names_threshold_and_greedy_containers() {
        let t = &super::super::threshold::parse_list("memory.available<100Mi").unwrap()[0];
        let victim = candidate("p", 0, Some("1Mi"), 2 << 20);
        let m = message(t, Observation { available: 50 << 20, capacity: 1 << 30 }, &victim);
        assert_eq!(
            m,
            "The node was low on resource: memory. Threshold quantity: 100Mi, available: 50Mi. \
             Container c was using 2Mi, request is 1Mi, has larger consumption of memory. "
        );
    }

    #[test]
    fn critical_pods_are_spared() {
        let mut p = candidate("p", CRITICAL_PRIORITY, None, 0).pod;
        assert!(is_critical(&p));
        p.spec.as_mut().unwrap().priority = Some(0);
        assert!(!is_critical(&p));
        p.metadata.annotations = Some([("kubernetes.io/config.source".to_string(), "file".to_string())].into());
        assert!(is_critical(&p));
    }
}
