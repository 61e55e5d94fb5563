//! PodDisruptionBudget controller: keeps each budget's status (expectedPods, currentHealthy,
//! desiredHealthy, disruptionsAllowed, the DisruptionAllowed condition) in line with the pods
//! its selector matches. The API server's eviction subresource reads that status and
//! decrements `disruptionsAllowed` per eviction, recording the pod in `disruptedPods`; this
//! controller leaves such pods out of the healthy count until they are gone (or the record
//! is two minutes old), so a stale pod list cannot hand the same disruption out twice.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::ResourceExt;
use serde_json::{json, Value};

use crate::pods::{is_ready, selector_string};
use crate::runtime::{Error, Ctx};

/// How long an eviction's `disruptedPods` record keeps a pod out of the healthy count when
/// the pod is not deleted (upstream's DeletionTimeout).
const DISRUPTION_TIMEOUT_SECS: i64 = 120;

/// Run until aborted.
pub async fn run(client: kube::Client, pods: impl futures::Stream<Item = Arc<Pod>> + Send + 'static) {
    let ctx = Arc::new(Ctx { client: client.clone() });
    let controller = Controller::new(Api::<PodDisruptionBudget>::all(client.clone()), watcher::Config::default());
    let budgets = controller.store();
    controller
        .watches_shared_stream(pods, move |pod: Arc<Pod>| {
            let ns = pod.namespace();
            let labels = pod.labels().clone();
            budgets
                .state()
                .into_iter()
                .filter(|b| b.namespace() == ns)
                .filter(|b| b.spec.as_ref().and_then(|s| s.selector.as_ref()).is_some_and(|s| selector_matches(s, &labels)))
                .map(|b| ObjectRef::from_obj(b.as_ref()))
                .collect::<Vec<_>>()
        })
        .run(reconcile, crate::runtime::error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

/// Whether `labels` satisfy a LabelSelector; an empty selector matches everything (policy/v1).
pub use skiff_api::selector::object_selector_matches as selector_matches;

/// `value` of `total`: integers as is, percentages scaled and rounded up (upstream's
/// GetScaledValueFromIntOrPercent with roundUp, used for both minAvailable and maxUnavailable).
pub fn scaled(value: &IntOrString, total: i32) -> i32 {
    match value {
        IntOrString::Int(n) => *n,
        IntOrString::String(s) => {
            let pct: i64 = s.trim_end_matches('%').trim().parse().unwrap_or(0);
            ((pct * total as i64 + 99) / 100) as i32
        }
    }
}

/// The budget's (expectedPods, desiredHealthy) given the matched pod count and the replicas
/// their controllers want. An integer minAvailable counts pods; percentages and
/// maxUnavailable are relative to the controllers' scale, as upstream computes them.
pub fn expected_and_desired(min_available: Option<&IntOrString>, max_unavailable: Option<&IntOrString>, pods: i32, controller_scale: i32) -> (i32, i32) {
    if let Some(mu) = max_unavailable {
        let expected = controller_scale;
        (expected, (expected - scaled(mu, expected)).max(0))
    } else if let Some(ma) = min_available {
        match ma {
            IntOrString::Int(n) => (pods, *n),
            IntOrString::String(_) => (controller_scale, scaled(ma, controller_scale)),
        }
    } else {
        (0, 0)
    }
}

fn ts_seconds(v: &Value) -> Option<i64> {
    v.as_str()?.parse::<k8s_openapi::jiff::Timestamp>().ok().map(|t| t.as_second())
}

/// Replicas wanted by the controller of `pod` (a Deployment through its ReplicaSet, a
/// StatefulSet, ReplicationController or bare ReplicaSet), keyed so each controller counts
/// once; a pod without a known controller counts as one replica of its own.
async fn controller_of(client: &kube::Client, ns: &str, pod: &Pod) -> Result<(String, i32), Error> {
    let Some(owner) = pod.owner_references().iter().find(|o| o.controller == Some(true)).cloned() else {
        return Ok((format!("pod/{}", pod.name_any()), 1));
    };
    let found = match owner.kind.as_str() {
        "ReplicaSet" => match Api::<ReplicaSet>::namespaced(client.clone(), ns).get_opt(&owner.name).await? {
            Some(rs) => match rs.owner_references().iter().find(|o| o.controller == Some(true) && o.kind == "Deployment") {
                Some(d) => Api::<Deployment>::namespaced(client.clone(), ns)
                    .get_opt(&d.name)
                    .await?
                    .map(|d| (format!("deployment/{}", d.name_any()), d.spec.and_then(|s| s.replicas).unwrap_or(1))),
                None => Some((format!("replicaset/{}", rs.name_any()), rs.spec.and_then(|s| s.replicas).unwrap_or(1))),
            },
            None => None,
        },
        "StatefulSet" => Api::<StatefulSet>::namespaced(client.clone(), ns)
            .get_opt(&owner.name)
            .await?
            .map(|s| (format!("statefulset/{}", s.name_any()), s.spec.and_then(|s| s.replicas).unwrap_or(1))),
        "ReplicationController" => Api::<ReplicationController>::namespaced(client.clone(), ns)
            .get_opt(&owner.name)
            .await?
            .map(|s| (format!("rc/{}", s.name_any()), s.spec.and_then(|s| s.replicas).unwrap_or(1))),
        _ => None,
    };
    Ok(found.unwrap_or_else(|| (format!("{}/{}", owner.kind, owner.name), 1)))
}

async fn reconcile(pdb: Arc<PodDisruptionBudget>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if pdb.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = pdb.namespace().unwrap_or_default();
    let name = pdb.name_any();
    let spec = pdb.spec.clone().unwrap_or_default();
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    // Pods first, then a fresh budget: an eviction that lands between the two reads is
    // already visible in the budget's disruptedPods.
    let pods: Vec<Pod> = match spec.selector.as_ref() {
        None => Vec::new(),
        Some(sel) => {
            let lp = match selector_string(sel) {
                Some(s) => ListParams::default().labels(&s),
                None => ListParams::default(),
            };
            pods_api.list(&lp).await?.items.into_iter().filter(|p| selector_matches(sel, p.labels())).collect()
        }
    };
    let budgets: Api<PodDisruptionBudget> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(fresh) = budgets.get_opt(&name).await? else { return Ok(Action::await_change()) };
    let current = serde_json::to_value(fresh.status.clone().unwrap_or_default()).unwrap_or_default();
    let now = k8s_openapi::jiff::Timestamp::now().as_second();

    let mut disrupted: BTreeMap<String, Value> = BTreeMap::new();
    let mut dropped: Vec<String> = Vec::new();
    for (pod, at) in current.get("disruptedPods").and_then(Value::as_object).into_iter().flatten() {
        let live = pods.iter().any(|p| p.name_any() == *pod && p.metadata.deletion_timestamp.is_none());
        let fresh_record = ts_seconds(at).is_some_and(|t| now - t < DISRUPTION_TIMEOUT_SECS);
        if live && fresh_record {
            disrupted.insert(pod.clone(), at.clone());
        } else {
            dropped.push(pod.clone());
        }
    }
    let active: Vec<&Pod> = pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect();
    let healthy = active.iter().filter(|p| is_ready(p) && !disrupted.contains_key(&p.name_any())).count() as i32;

    let needs_scale = spec.max_unavailable.is_some() || matches!(spec.min_available, Some(IntOrString::String(_)));
    let mut scale = 0;
    if needs_scale {
        let mut seen: BTreeMap<String, i32> = BTreeMap::new();
        for p in &active {
            let (key, replicas) = controller_of(&ctx.client, &ns, p).await?;
            seen.insert(key, replicas);
        }
        scale = seen.values().sum();
    }
    let (expected, desired) = expected_and_desired(spec.min_available.as_ref(), spec.max_unavailable.as_ref(), active.len() as i32, scale);
    let allowed = (healthy - desired).max(0);

    let (cond_status, reason) = if allowed > 0 { ("True", "SufficientPods") } else { ("False", "InsufficientPods") };
    let old_cond = fresh.status.as_ref().and_then(|s| s.conditions.as_ref()).and_then(|cs| cs.iter().find(|c| c.type_ == "DisruptionAllowed"));
    let transition = match old_cond {
        Some(c) if c.status == cond_status => serde_json::to_value(&c.last_transition_time).unwrap_or(Value::Null),
        _ => json!(k8s_openapi::jiff::Timestamp::now().to_string()),
    };
    let generation = fresh.metadata.generation.unwrap_or(0);
    let condition = json!({
        "type": "DisruptionAllowed",
        "status": cond_status,
        "reason": reason,
        "message": "",
        "observedGeneration": generation,
        "lastTransitionTime": transition,
    });
    let mut disrupted_patch = serde_json::Map::new();
    for (k, v) in &disrupted {
        disrupted_patch.insert(k.clone(), v.clone());
    }
    for k in &dropped {
        disrupted_patch.insert(k.clone(), Value::Null);
    }
    let status = json!({
        "observedGeneration": generation,
        "expectedPods": expected,
        "currentHealthy": healthy,
        "desiredHealthy": desired,
        "disruptionsAllowed": allowed,
        "disruptedPods": disrupted_patch,
        "conditions": [condition],
    });
    let unchanged = ["observedGeneration", "expectedPods", "currentHealthy", "desiredHealthy", "disruptionsAllowed"]
        .iter()
        .all(|k| current.get(*k).unwrap_or(&json!(0)) == &status[*k])
        && dropped.is_empty()
        && old_cond.is_some_and(|c| c.status == cond_status && c.reason == reason);
    if !unchanged {
        budgets.patch_status(&name, &PatchParams::default(), &Patch::Merge(&json!({"status": status}))).await?;
        tracing::debug!(pdb = %name, healthy, desired, allowed, "disruption budget status updated");
    }
    // Records of evictions that never deleted their pod expire on their own.
    let next = if disrupted.is_empty() { Duration::from_secs(60) } else { Duration::from_secs(10) };
    Ok(Action::requeue(next))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

    fn pct(s: &str) -> IntOrString {
        IntOrString::String(s.into())
    }

    #[test]
    fn min_available_int_counts_pods() {
        assert_eq!(expected_and_desired(Some(&IntOrString::Int(2)), None, 3, 0), (3, 2));
    }

    #[test]
    fn percentages_round_up_against_controller_scale() {
        // 50% of 3 is 1.5: upstream rounds up to 2 for minAvailable.
        assert_eq!(expected_and_desired(Some(&pct("50%")), None, 3, 3), (3, 2));
        // maxUnavailable 34% of 3 rounds up to 2 unavailable, so 1 must stay healthy.
        assert_eq!(expected_and_desired(None, Some(&pct("34%")), 3, 3), (3, 1));
        assert_eq!(expected_and_desired(None, Some(&IntOrString::Int(1)), 2, 3), (3, 2));
        assert_eq!(expected_and_desired(None, Some(&IntOrString::Int(5)), 2, 3), (3, 0));
        assert_eq!(expected_and_desired(None, None, 2, 3), (0, 0));
    }

    #[test]
    fn selectors_match_labels_and_expressions() {
        let labels: BTreeMap<String, String> = [("app".to_string(), "web".to_string()), ("tier".to_string(), "fe".to_string())].into();
        let mut sel = LabelSelector { match_labels: Some([("app".to_string(), "web".to_string())].into()), match_expressions: None };
        assert!(selector_matches(&sel, &labels));
        sel.match_expressions = Some(vec![LabelSelectorRequirement { key: "tier".into(), operator: "In".into(), values: Some(vec!["be".into()]) }]);
        assert!(!selector_matches(&sel, &labels));
        assert!(selector_matches(&LabelSelector::default(), &labels), "empty selector matches all");
    }
}
