//! Resource quota controller: keeps each ResourceQuota's `status.hard` equal to its
//! `spec.hard` and recomputes `status.used` from the objects in its namespace, so usage the
//! API server's admission charged is released when objects go away (deletes, pods reaching
//! Succeeded/Failed) and anything admission missed is corrected.
//!
//! Level-triggered: a quota is recomputed when it changes, within about a second of any
//! object changing (the garbage collector's metadata graph sees every kind, so deletes of
//! anything counted release promptly), and every [`RESYNC`] (upstream resyncs every five
//! minutes). The status write carries the resourceVersion the
//! computation started from, so a charge admission made meanwhile is never overwritten:
//! the write conflicts and the quota is recomputed; and usage is only lowered once the quota
//! has seen no charge for [`SETTLE`], so a create charged but not yet stored is not
//! forgotten (which would let the next create overshoot).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ResourceQuota;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::ResourceExt;
use serde_json::{json, Value};
use skiff_api::quota::{self, ResourceList};

use crate::graph::Graph;
use crate::runtime::Error;

/// Periodic full recompute of every quota.
pub const RESYNC: Duration = Duration::from_secs(30);

/// A discovered resource and whether it is namespaced (None: not served).
type Discovered = Option<(ApiResource, bool)>;

/// Controller context: the client and the API resources already discovered.
pub struct QuotaCtx {
    client: kube::Client,
    resources: Mutex<HashMap<(String, String), Discovered>>,
}

/// Run until aborted. Object changes of any kind reach the controller through the shared
/// metadata graph: when it changed, every quota is recomputed (at most once a second).
pub async fn run(client: kube::Client, graph: Graph) {
    let ctx = Arc::new(QuotaCtx { client: client.clone(), resources: Mutex::new(HashMap::new()) });
    let trigger = futures::stream::unfold((graph, 0u64), |(graph, mut seen)| async move {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = graph.changes();
            if now != seen {
                seen = now;
                return Some(((), (graph, seen)));
            }
        }
    });
    Controller::new(Api::<ResourceQuota>::all(client), watcher::Config::default())
        .reconcile_all_on(trigger)
        .run(reconcile, crate::runtime::error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

impl QuotaCtx {
    /// The API resource serving (group, plural) and whether it is namespaced, discovered
    /// once per group (None when the server does not serve it).
    async fn resource(&self, group: &str, plural: &str) -> Result<Discovered, Error> {
        let key = (group.to_string(), plural.to_string());
        if let Some(found) = self.resources.lock().expect("lock").get(&key) {
            return Ok(found.clone());
        }
        let found = match kube::discovery::group(&self.client, group).await {
            Ok(g) => g
                .recommended_resources()
                .into_iter()
                .find(|(ar, _)| ar.plural == plural)
                .map(|(ar, caps)| (ar, caps.scope == kube::discovery::Scope::Namespaced)),
            // An unknown group (a CRD not installed yet) is looked up again next time.
            Err(_) => return Ok(None),
        };
        self.resources.lock().expect("lock").insert(key, found.clone());
        Ok(found)
    }
}

/// Sum what the objects charge, restricted to `keys`, zero for keys nothing charges.
pub fn sum_usage<'a>(quota_obj: &Value, group: &str, plural: &str, objects: impl IntoIterator<Item = &'a Value>, keys: &[String], into: &mut ResourceList) {
    let now = chrono::Utc::now();
    for o in objects.into_iter().filter(|o| quota::quota_matches(quota_obj, group, plural, o)) {
        *into = quota::add(into, &quota::mask(&quota::usage(group, plural, o, now), keys));
    }
}

/// How long a quota must go without new charges before the controller lowers its usage.
/// Admission charges a quota just before storing the object, so a count taken in between
/// misses an object already paid for; no charge for this long means every admitted create
/// has been stored (or refunded, which is itself a change).
pub const SETTLE: Duration = Duration::from_secs(1);

/// Current usage of `keys` in `ns` as `quota_obj` scopes it, zero for keys nothing charges.
async fn count(ctx: &QuotaCtx, ns: &str, quota_obj: &Value, keys: &[String]) -> Result<ResourceList, Error> {
    let mut used: ResourceList = keys.iter().map(|k| (k.clone(), Default::default())).collect();
    let mut kinds: Vec<(String, String)> = keys.iter().filter_map(|k| quota::resource_for_key(k)).collect();
    kinds.sort();
    kinds.dedup();
    for (group, plural) in kinds {
        let Some((ar, namespaced)) = ctx.resource(&group, &plural).await? else { continue };
        if !namespaced {
            continue;
        }
        let list = Api::<DynamicObject>::namespaced_with(ctx.client.clone(), ns, &ar).list(&ListParams::default()).await?;
        let objects: Vec<Value> = list.items.iter().filter_map(|o| serde_json::to_value(o).ok()).collect();
        sum_usage(quota_obj, &group, &plural, &objects, keys, &mut used);
    }
    Ok(used)
}

/// Whether `new` is below `old` for any resource.
fn lowers(old: &ResourceList, new: &ResourceList) -> bool {
    new.iter().any(|(k, q)| old.get(k).is_some_and(|o| q < o))
}

async fn reconcile(rq: Arc<ResourceQuota>, ctx: Arc<QuotaCtx>) -> Result<Action, Error> {
    if rq.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = rq.namespace().unwrap_or_default();
    let name = rq.name_any();
    let api: Api<ResourceQuota> = Api::namespaced(ctx.client.clone(), &ns);
    // The quota first, then the objects: a charge admitted after this read changes the
    // quota's resourceVersion and the status write below conflicts.
    let Some(fresh) = api.get_opt(&name).await? else { return Ok(Action::await_change()) };
    let fresh_json = serde_json::to_value(&fresh).unwrap_or_default();
    let hard = quota::parse_list(fresh_json.pointer("/spec/hard"));
    let keys: Vec<String> = hard.keys().cloned().collect();
    let recorded = quota::parse_list(fresh_json.pointer("/status/used"));
    let mut used = count(&ctx, &ns, &fresh_json, &keys).await?;
    if lowers(&recorded, &used) {
        tokio::time::sleep(SETTLE).await;
        let Some(again) = api.get_opt(&name).await? else { return Ok(Action::await_change()) };
        if again.resource_version() != fresh.resource_version() {
            return Ok(Action::requeue(Duration::from_millis(100)));
        }
        used = count(&ctx, &ns, &fresh_json, &keys).await?;
    }
    let status = json!({
        "hard": fresh_json.pointer("/spec/hard").cloned().unwrap_or(json!({})),
        "used": quota::to_json(&used),
    });
    let current = json!({
        "hard": fresh_json.pointer("/status/hard").cloned().unwrap_or(json!({})),
        "used": fresh_json.pointer("/status/used").cloned().unwrap_or(json!({})),
    });
    if !same_status(&current, &status) {
        // One merge patch, conditional on the resourceVersion read above; resources dropped
        // from spec.hard are removed with explicit nulls.
        let mut status_patch = status.clone();
        for k in ["hard", "used"] {
            for old in current[k].as_object().into_iter().flatten().map(|(name, _)| name) {
                if status[k].get(old).is_none() {
                    status_patch[k][old] = Value::Null;
                }
            }
        }
        let patch = json!({"metadata": {"resourceVersion": fresh.resource_version()}, "status": status_patch});
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
        tracing::debug!(quota = %name, namespace = %ns, "resource quota status updated");
    }
    Ok(Action::requeue(RESYNC))
}

/// Compare statuses by quantity value, so `1000m` and `1` do not cause rewrites.
fn same_status(a: &Value, b: &Value) -> bool {
    ["hard", "used"].iter().all(|k| {
        let x: BTreeMap<_, _> = quota::parse_list(a.get(*k)).into_iter().collect();
        let y: BTreeMap<_, _> = quota::parse_list(b.get(*k)).into_iter().collect();
        x == y
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_is_summed_per_key_and_scope() {
        let quota_obj = json!({"spec": {"hard": {"pods": "10", "requests.cpu": "4", "count/pods": "10"}}});
        let keys: Vec<String> = ["count/pods", "pods", "requests.cpu"].iter().map(|s| s.to_string()).collect();
        let pod = |cpu: &str, phase: &str| json!({"spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]}, "status": {"phase": phase}});
        let pods = [pod("250m", "Running"), pod("500m", "Pending"), pod("1", "Succeeded")];
        let mut used: ResourceList = keys.iter().map(|k| (k.clone(), Default::default())).collect();
        sum_usage(&quota_obj, "", "pods", &pods, &keys, &mut used);
        assert_eq!(quota::pretty(&used), "count/pods=3,pods=2,requests.cpu=750m");

        let best_effort = json!({"spec": {"scopes": ["BestEffort"], "hard": {"pods": "1"}}});
        let mut used = ResourceList::new();
        sum_usage(&best_effort, "", "pods", &pods, &["pods".to_string()], &mut used);
        assert!(used.get("pods").is_none_or(|q| q.is_zero()), "{used:?}");
    }

    #[test]
    fn lowering_is_per_resource() {
        let l = |pairs: &[(&str, &str)]| -> ResourceList { pairs.iter().map(|(k, v)| (k.to_string(), skiff_api::quantity::Quantity::parse(v).unwrap())).collect() };
        assert!(lowers(&l(&[("pods", "2"), ("cpu", "1")]), &l(&[("pods", "1"), ("cpu", "2")])));
        assert!(!lowers(&l(&[("pods", "1")]), &l(&[("pods", "1"), ("cpu", "2")])));
        assert!(!lowers(&ResourceList::new(), &l(&[("pods", "0")])));
    }

    #[test]
    fn statuses_compare_by_value() {
        assert!(same_status(&json!({"hard": {"cpu": "1"}, "used": {"cpu": "1000m"}}), &json!({"hard": {"cpu": "1000m"}, "used": {"cpu": "1"}})));
        assert!(!same_status(&json!({"hard": {"cpu": "1"}, "used": {}}), &json!({"hard": {"cpu": "1"}, "used": {"cpu": "0"}})));
    }
}
