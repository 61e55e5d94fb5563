//! DaemonSet controller: one pod per eligible node (node selector, required node affinity,
//! taints the pod tolerates, including the automatic DaemonSet tolerations), placed by the
//! scheduler through required node affinity on `metadata.name`; RollingUpdate replaces pods
//! of an old template (`controller-revision-hash` label) with at most `maxUnavailable` nodes
//! unavailable at a time (one ControllerRevision per template, for `kubectl rollout
//! history|undo`); OnDelete only replaces pods that users delete. Status carries the
//! scheduled/ready/available/updated/misscheduled counts `kubectl rollout status` reads.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod, PodSpec, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::deployment::template_hash;
use crate::pods::{is_available, is_ready, selector_string};
use crate::replicaset::controller_ref;
use crate::revisions;
use crate::runtime::{Error, Ctx};

/// The label carrying the hash of the template a pod was made from.
pub const HASH_LABEL: &str = revisions::HASH_LABEL;

/// Run the controller until aborted. Node changes re-check every DaemonSet.
pub async fn run(client: kube::Client, pods: impl futures::Stream<Item = Arc<Pod>> + Send + 'static) {
    let ctx = Arc::new(Ctx { client: client.clone() });
    let controller = Controller::new(Api::<DaemonSet>::all(client.clone()), watcher::Config::default());
    let store = controller.store();
    controller
        .owns_shared_stream(pods)
        .watches(Api::<Node>::all(client), watcher::Config::default(), move |_node: Node| {
            store.state().iter().map(|ds| ObjectRef::from_obj(ds.as_ref())).collect::<Vec<_>>()
        })
        .run(reconcile, crate::runtime::error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

fn toleration(key: &str, effect: &str) -> Toleration {
    Toleration { key: Some(key.into()), operator: Some("Exists".into()), effect: Some(effect.into()), ..Default::default() }
}

/// Add the tolerations upstream gives every DaemonSet pod, so daemons keep running on nodes
/// that are not ready, unreachable, under resource pressure or cordoned.
pub fn add_daemon_tolerations(spec: &mut PodSpec) {
    let mut wanted = vec![
        toleration("node.kubernetes.io/not-ready", "NoExecute"),
        toleration("node.kubernetes.io/unreachable", "NoExecute"),
        toleration("node.kubernetes.io/disk-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/memory-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/pid-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if spec.host_network == Some(true) {
        wanted.push(toleration("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    let list = spec.tolerations.get_or_insert_with(Vec::new);
    for t in wanted {
        // Replace a user toleration of the same key and effect (upstream's AddOrUpdate).
        list.retain(|x| !(x.key == t.key && x.effect == t.effect));
        list.push(t);
    }
}

fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let vals = r.values.as_deref().unwrap_or(&[]);
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| vals.iter().any(|x| x == v)),
        "NotIn" => !value.is_some_and(|v| vals.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(x)) = (value.and_then(|v| v.parse::<i64>().ok()), vals.first().and_then(|x| x.parse::<i64>().ok())) else { return false };
            if r.operator == "Gt" { v > x } else { v < x }
        }
        _ => false,
    }
}

fn term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    let labels = node.labels();
    let name = node.name_any();
    let exprs = term.match_expressions.as_deref().unwrap_or(&[]);
    let fields = term.match_fields.as_deref().unwrap_or(&[]);
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    exprs.iter().all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
        && fields.iter().all(|r| requirement_matches(r, (r.key == "metadata.name").then_some(name.as_str())))
}

/// Whether a daemon pod should run on `node` (schedule a new one) and whether an existing one
/// may keep running there (only untolerated NoExecute taints evict it), as upstream decides.
pub fn eligibility(spec: &PodSpec, node: &Node) -> (bool, bool) {
    if let Some(sel) = &spec.node_selector {
        if !sel.iter().all(|(k, v)| node.labels().get(k) == Some(v)) {
            return (false, false);
        }
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| na.required_during_scheduling_ignored_during_execution.as_ref());
    if let Some(req) = required {
        if !req.node_selector_terms.iter().any(|t| term_matches(t, node)) {
            return (false, false);
        }
    }
    let tolerations = spec.tolerations.as_deref().unwrap_or(&[]);
    let taints = node.spec.as_ref().and_then(|s| s.taints.as_deref()).unwrap_or(&[]);
    let untolerated = |effect: &str| taints.iter().any(|t| t.effect == effect && !tolerations.iter().any(|tol| skiff_api::taints::tolerates(tol, t)));
    let no_execute = untolerated("NoExecute");
    if no_execute || untolerated("NoSchedule") {
        return (false, !no_execute);
    }
    (true, true)
}

/// The node a daemon pod is for: where it is bound, else the `metadata.name` its required
/// node affinity names.
pub fn target_node(p: &Pod) -> Option<String> {
    let spec = p.spec.as_ref()?;
    if let Some(n) = &spec.node_name {
        return Some(n.clone());
    }
    let terms = &spec.affinity.as_ref()?.node_affinity.as_ref()?.required_during_scheduling_ignored_during_execution.as_ref()?.node_selector_terms;
    terms.iter().flat_map(|t| t.match_fields.iter().flatten()).find(|r| r.key == "metadata.name" && r.operator == "In").and_then(|r| r.values.as_ref()?.first().cloned())
}

/// Pin a pod to `node` through required node affinity, replacing any required terms (the
/// controller already checked them), so the scheduler still runs its other checks.
fn pin_to_node(spec: &mut PodSpec, node: &str) {
    let term = NodeSelectorTerm {
        match_fields: Some(vec![NodeSelectorRequirement { key: "metadata.name".into(), operator: "In".into(), values: Some(vec![node.into()]) }]),
        match_expressions: None,
    };
    let affinity = spec.affinity.get_or_insert_with(Affinity::default);
    let na = affinity.node_affinity.get_or_insert_with(NodeAffinity::default);
    na.required_during_scheduling_ignored_during_execution = Some(NodeSelector { node_selector_terms: vec![term] });
}

fn phase(p: &Pod) -> &str {
    p.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

fn hash_of(p: &Pod) -> Option<&str> {
    p.labels().get(HASH_LABEL).map(String::as_str)
}

/// Resolve maxUnavailable against the number of nodes that should run a pod (percentages
/// round up, as upstream); never zero, so a rollout can always progress.
pub fn max_unavailable(v: Option<&IntOrString>, desired: i32) -> i32 {
    let n = match v {
        Some(IntOrString::Int(i)) => *i,
        Some(IntOrString::String(s)) => {
            let pct: i64 = s.trim_end_matches('%').parse().unwrap_or(0);
            ((desired as i64 * pct + 99) / 100) as i32
        }
        None => 1,
    };
    n.max(1)
}

/// Old-template pods to delete in this rolling-update step. `per_node` holds the live pods of
/// each node that should run one. Unavailable old pods go at once; available ones only while
/// fewer than `max_unavailable` nodes are unavailable.
pub fn rolling_deletions(per_node: &[Vec<&Pod>], hash: &str, max_unavailable: i32, min_ready: i32) -> Vec<String> {
    let mut unavailable = 0;
    let mut replace_now: Vec<String> = Vec::new();
    let mut candidates: Vec<String> = Vec::new();
    for pods in per_node {
        let new: Vec<&&Pod> = pods.iter().filter(|p| hash_of(p) == Some(hash)).collect();
        let old: Vec<&&Pod> = pods.iter().filter(|p| hash_of(p) != Some(hash)).collect();
        match (new.first(), old.first()) {
            (Some(n), None) => {
                if !is_available(n, min_ready) {
                    unavailable += 1;
                }
            }
            (None, Some(o)) if old.len() == 1 => {
                if !is_available(o, min_ready) {
                    replace_now.push(o.name_any());
                } else {
                    candidates.push(o.name_any());
                }
            }
            // Nothing yet, or several pods: the node is being fixed up by the manage step.
            _ => unavailable += 1,
        }
    }
    let budget = (max_unavailable - unavailable).max(0) as usize;
    replace_now.extend(candidates.into_iter().take(budget));
    replace_now
}

async fn reconcile(ds: Arc<DaemonSet>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if ds.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = ds.namespace().unwrap_or_default();
    let name = ds.name_any();
    let uid = ds.uid().unwrap_or_default();
    let spec = ds.spec.clone().unwrap_or_default();
    let Some(selector) = selector_string(&spec.selector) else { return Ok(Action::await_change()) };
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let nodes: Vec<Node> = Api::<Node>::all(ctx.client.clone()).list(&ListParams::default()).await?.items;
    let pods: Vec<Pod> = pods_api
        .list(&ListParams::default().labels(&selector))
        .await?
        .items
        .into_iter()
        .filter(|p| p.owner_references().iter().any(|o| o.controller == Some(true) && o.uid == uid))
        .collect();
    let collision = ds.status.as_ref().and_then(|s| s.collision_count).unwrap_or(0);
    let hash = template_hash(&spec.template, collision);
    let generation = ds.meta().generation.unwrap_or(0);
    // Revisions are what `kubectl rollout history|undo daemonset` read.
    let rev_api: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), &ns);
    let in_use: Vec<String> = pods.iter().filter_map(|p| hash_of(p)).map(|h| format!("{name}-{h}")).collect();
    revisions::sync(ds.as_ref(), &spec.template, spec.revision_history_limit.unwrap_or(10), &rev_api, &selector, &hash, &in_use).await?;
    let mut template_spec = spec.template.spec.clone().unwrap_or_default();
    add_daemon_tolerations(&mut template_spec);
    let min_ready = spec.min_ready_seconds.unwrap_or(0);

    let mut by_node: BTreeMap<String, Vec<&Pod>> = BTreeMap::new();
    for p in &pods {
        if let Some(n) = target_node(p) {
            by_node.entry(n).or_default().push(p);
        }
    }
    let mut delete: Vec<String> = Vec::new();
    let mut create: Vec<String> = Vec::new();
    let mut eligible: Vec<Vec<&Pod>> = Vec::new();
    let (mut desired, mut current, mut misscheduled, mut ready, mut available, mut updated) = (0, 0, 0, 0, 0, 0);
    for node in &nodes {
        let node_name = node.name_any();
        let all = by_node.remove(&node_name).unwrap_or_default();
        let (should_run, should_continue) = eligibility(&template_spec, node);
        let live: Vec<&Pod> = all.iter().copied().filter(|p| p.metadata.deletion_timestamp.is_none() && phase(p) != "Failed").collect();
        if should_run {
            desired += 1;
            if !live.is_empty() {
                current += 1;
            }
            if live.iter().any(|p| is_ready(p)) {
                ready += 1;
            }
            if live.iter().any(|p| is_available(p, min_ready)) {
                available += 1;
            }
            if live.iter().any(|p| hash_of(p) == Some(hash.as_str())) {
                updated += 1;
            }
        } else if !live.is_empty() {
            misscheduled += 1;
        }
        if should_continue {
            // Failed daemons are replaced; upstream adds a back-off we leave to the requeue.
            delete.extend(all.iter().filter(|p| phase(p) == "Failed" && p.metadata.deletion_timestamp.is_none()).map(|p| p.name_any()));
            if live.is_empty() && should_run {
                create.push(node_name.clone());
            } else if live.len() > 1 {
                // Keep the oldest, preferring one of the current template.
                let mut sorted = live.clone();
                sorted.sort_by_key(|p| (hash_of(p) != Some(hash.as_str()), p.metadata.creation_timestamp.as_ref().map(|t| t.0), p.name_any()));
                delete.extend(sorted.iter().skip(1).map(|p| p.name_any()));
            }
            if should_run {
                eligible.push(live);
            }
        } else {
            delete.extend(live.iter().map(|p| p.name_any()));
        }
    }
    // Pods for nodes that no longer exist.
    for pods in by_node.values() {
        delete.extend(pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none()).map(|p| p.name_any()));
    }

    let rolling = spec.update_strategy.as_ref().and_then(|s| s.type_.as_deref()).unwrap_or("RollingUpdate") == "RollingUpdate";
    if rolling {
        let mu = spec.update_strategy.as_ref().and_then(|s| s.rolling_update.as_ref()).and_then(|r| r.max_unavailable.as_ref());
        for n in rolling_deletions(&eligible, &hash, max_unavailable(mu, desired), min_ready) {
            if !delete.contains(&n) {
                tracing::info!(daemonset = %name, pod = %n, "replacing pod of an old template");
                delete.push(n);
            }
        }
    }

    for node_name in &create {
        let mut pod_spec = template_spec.clone();
        pin_to_node(&mut pod_spec, node_name);
        let meta = spec.template.metadata.clone().unwrap_or_default();
        let mut labels = meta.labels.unwrap_or_default();
        labels.insert(HASH_LABEL.into(), hash.clone());
        labels.insert("pod-template-generation".into(), generation.to_string());
        let pod = Pod {
            metadata: ObjectMeta {
                generate_name: Some(format!("{name}-")),
                namespace: Some(ns.clone()),
                labels: Some(labels),
                annotations: meta.annotations,
                owner_references: Some(vec![controller_ref(ds.as_ref())]),
                ..Default::default()
            },
            spec: Some(pod_spec),
            status: None,
        };
        if let Err(e) = pods_api.create(&PostParams::default(), &pod).await {
            tracing::warn!(daemonset = %name, node = %node_name, error = %e, "creating daemon pod failed");
        }
    }
    for p in &delete {
        match pods_api.delete(p, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => tracing::warn!(daemonset = %name, pod = %p, error = %e, "deleting daemon pod failed"),
        }
    }

    let status = json!({
        "desiredNumberScheduled": desired,
        "currentNumberScheduled": current,
        "numberMisscheduled": misscheduled,
        "numberReady": ready,
        "numberAvailable": available,
        "numberUnavailable": desired - available,
        "updatedNumberScheduled": updated,
        "observedGeneration": generation,
    });
    let current_status = serde_json::to_value(ds.status.clone().unwrap_or_default()).unwrap_or_default();
    let differs = status.as_object().unwrap().iter().any(|(k, v)| current_status.get(k).unwrap_or(&json!(0)) != v);
    if differs {
        let api: Api<DaemonSet> = Api::namespaced(ctx.client.clone(), &ns);
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&json!({"status": status}))).await?;
    }
    // Pods waiting out minReadySeconds change availability without an event.
    let wait = if min_ready > 0 && available < ready { Duration::from_secs(1) } else { Duration::from_secs(30) };
    Ok(Action::requeue(wait))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, labels: serde_json::Value, taints: serde_json::Value) -> Node {
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}, "spec": {"taints": taints}})).unwrap()
    }

    fn spec(v: serde_json::Value) -> PodSpec {
        let mut s: PodSpec = serde_json::from_value(json!({"containers": [{"name": "c"}]})).unwrap();
        let extra: PodSpec = serde_json::from_value({
            let mut v = v;
            v["containers"] = json!([{"name": "c"}]);
            v
        })
        .unwrap();
        s.node_selector = extra.node_selector;
        s.affinity = extra.affinity;
        s.tolerations = extra.tolerations;
        add_daemon_tolerations(&mut s);
        s
    }

    fn pod(name: &str, hash: &str, ready: bool) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {HASH_LABEL: hash}},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }, "lastTransitionTime": "2024-01-01T00:00:00Z"}]}
        }))
        .unwrap()
    }

    #[test]
    fn selectors_affinity_and_taints_decide_eligibility() {
        let plain = spec(json!({}));
        assert_eq!(eligibility(&plain, &node("a", json!({}), json!([]))), (true, true));
        let ssd = spec(json!({"nodeSelector": {"disk": "ssd"}}));
        assert_eq!(eligibility(&ssd, &node("a", json!({}), json!([]))), (false, false));
        assert_eq!(eligibility(&ssd, &node("a", json!({"disk": "ssd"}), json!([]))), (true, true));
        let aff = spec(json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z1"]}]}]}}}}));
        assert_eq!(eligibility(&aff, &node("a", json!({"zone": "z2"}), json!([]))), (false, false));
        assert_eq!(eligibility(&aff, &node("a", json!({"zone": "z1"}), json!([]))), (true, true));
        // A NoSchedule taint keeps new pods off but lets a running one stay; NoExecute evicts.
        assert_eq!(eligibility(&plain, &node("a", json!({}), json!([{"key": "k", "effect": "NoSchedule"}]))), (false, true));
        assert_eq!(eligibility(&plain, &node("a", json!({}), json!([{"key": "k", "effect": "NoExecute"}]))), (false, false));
        let tolerant = spec(json!({"tolerations": [{"key": "k", "operator": "Exists"}]}));
        assert_eq!(eligibility(&tolerant, &node("a", json!({}), json!([{"key": "k", "effect": "NoExecute"}]))), (true, true));
        // The automatic tolerations: cordoned, not-ready and pressured nodes still get daemons.
        for (k, e) in [("node.kubernetes.io/unschedulable", "NoSchedule"), ("node.kubernetes.io/not-ready", "NoExecute"), ("node.kubernetes.io/memory-pressure", "NoSchedule")] {
            assert_eq!(eligibility(&plain, &node("a", json!({}), json!([{"key": k, "effect": e}]))), (true, true), "{k}");
        }
        assert_eq!(eligibility(&plain, &node("a", json!({}), json!([{"key": "node.kubernetes.io/network-unavailable", "effect": "NoSchedule"}]))), (false, true));
    }

    #[test]
    fn pods_are_pinned_by_node_affinity() {
        let mut s = spec(json!({}));
        pin_to_node(&mut s, "node-7");
        let p = Pod { spec: Some(s), ..Default::default() };
        assert_eq!(target_node(&p).as_deref(), Some("node-7"));
        let terms = &p.spec.as_ref().unwrap().affinity.as_ref().unwrap().node_affinity.as_ref().unwrap().required_during_scheduling_ignored_during_execution.as_ref().unwrap().node_selector_terms;
        assert_eq!(terms.len(), 1);
        assert_eq!(terms[0].match_fields.as_ref().unwrap()[0].key, "metadata.name");
    }

    #[test]
    fn rolling_update_respects_max_unavailable() {
        let (a, b, c) = (pod("a", "old", true), pod("b", "old", true), pod("c", "old", false));
        let n = pod("n", "new", true);
        let fresh = pod("f", "new", false);
        // Unavailable old pods are replaced regardless; available ones within the budget.
        let plan = rolling_deletions(&[vec![&a], vec![&b], vec![&c]], "new", 1, 0);
        assert_eq!(plan, ["c", "a"]);
        // A new pod not yet available uses the budget up.
        let plan = rolling_deletions(&[vec![&a], vec![&b], vec![&fresh]], "new", 1, 0);
        assert!(plan.is_empty(), "{plan:?}");
        let plan = rolling_deletions(&[vec![&a], vec![&b], vec![&n]], "new", 2, 0);
        assert_eq!(plan, ["a", "b"]);
        // A node with no pod yet counts as unavailable.
        let plan = rolling_deletions(&[vec![&a], vec![]], "new", 1, 0);
        assert!(plan.is_empty());
        assert_eq!(max_unavailable(Some(&IntOrString::String("10%".into())), 3), 1);
        assert_eq!(max_unavailable(Some(&IntOrString::String("50%".into())), 5), 3);
        assert_eq!(max_unavailable(Some(&IntOrString::Int(0)), 5), 1);
    }
}
