//! ReplicaSet controller: keeps `spec.replicas` pods matching the selector, owned by the
//! ReplicaSet (adopting matching orphans), creating in slow-start batches and deleting the
//! least useful pods first (unscheduled, then pending, then not ready, then newest), and
//! reports status (replicas, ready, available, observedGeneration). Pods the API refuses
//! (quota, LimitRange) leave a FailedCreate event on the ReplicaSet.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Event, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::pods::{is_active, is_available, is_ready, selector_string};
use crate::runtime::{Error, Ctx};

/// Pod creates one ReplicaSet keeps in flight at once within a slow-start batch.
const CREATE_CONCURRENCY: usize = 32;

/// Run the controller until aborted.
pub async fn run(client: kube::Client, pods: impl futures::Stream<Item = Arc<Pod>> + Send + 'static) {
    let ctx = Arc::new(Ctx { client: client.clone() });
    Controller::new(Api::<ReplicaSet>::all(client.clone()), watcher::Config::default())
        .owns_shared_stream(pods)
        .run(reconcile, crate::runtime::error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

/// The owner reference a controller puts on what it creates.
pub fn controller_ref<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).to_string(),
        kind: K::kind(&()).to_string(),
        name: owner.meta().name.clone().unwrap_or_default(),
        uid: owner.meta().uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

async fn reconcile(rs: Arc<ReplicaSet>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ns = rs.namespace().unwrap_or_default();
    let name = rs.name_any();
    let uid = rs.uid().unwrap_or_default();
    if rs.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let spec = rs.spec.clone().unwrap_or_default();
    let Some(selector) = selector_string(&spec.selector) else { return Ok(Action::await_change()) };
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let pods = pods_api.list(&ListParams::default().labels(&selector)).await?;
    let mut mine: Vec<Pod> = Vec::new();
    for pod in pods.items {
        let controller = pod.owner_references().iter().find(|o| o.controller == Some(true)).cloned();
        match controller {
            Some(c) if c.uid == uid => mine.push(pod),
            Some(_) => {}
            None if pod.meta().deletion_timestamp.is_none() => {
                // Adopt the orphan, as upstream's ref manager does.
                let mut refs = pod.owner_references().to_vec();
                refs.push(controller_ref(rs.as_ref()));
                let patch = json!({"metadata": {"ownerReferences": refs, "resourceVersion": pod.resource_version()}});
                if pods_api.patch(&pod.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await.is_ok() {
                    mine.push(pod);
                }
            }
            None => {}
        }
    }
    let active: Vec<&Pod> = mine.iter().filter(|p| is_active(p)).collect();
    let want = spec.replicas.unwrap_or(1).max(0) as usize;
    if active.len() < want {
        let template = spec.template.clone().unwrap_or_default();
        let mut missing = want - active.len();
        // Slow start: 1, 2, 4, ... so a broken template does not flood the API.
        let mut batch = 1;
        while missing > 0 {
            let n = batch.min(missing);
            // One batch's creates run concurrently (upstream starts a goroutine per create):
            // awaiting each before the next made a 1,000-replica rollout 1,000 round trips.
            let creates = (0..n).map(|_| {
                let pod = Pod {
                    metadata: ObjectMeta {
                        generate_name: Some(format!("{name}-")),
                        namespace: Some(ns.clone()),
                        labels: template.metadata.as_ref().and_then(|m| m.labels.clone()),
                        annotations: template.metadata.as_ref().and_then(|m| m.annotations.clone()),
                        owner_references: Some(vec![controller_ref(rs.as_ref())]),
                        ..Default::default()
                    },
                    spec: template.spec.clone(),
                    status: None,
                };
                let pods_api = &pods_api;
                async move { pods_api.create(&PostParams::default(), &pod).await }
            });
            let results: Vec<_> = futures::stream::iter(creates).buffer_unordered(CREATE_CONCURRENCY).collect().await;
            let mut failed = false;
            for e in results.into_iter().filter_map(Result::err) {
                tracing::warn!(replicaset = %name, error = %e, "creating pod failed");
                // What `kubectl describe rs` shows when quota or admission refuses pods.
                let message = match &e {
                    kube::Error::Api(s) => s.message.clone(),
                    other => other.to_string(),
                };
                failed_create_event(&ctx.client, rs.as_ref(), &format!("Error creating: {message}")).await;
                failed = true;
            }
            if failed {
                break;
            }
            missing -= n;
            batch *= 2;
        }
    } else if active.len() > want {
        let mut ranked = active.clone();
        ranked.sort_by_key(|p| deletion_rank(p));
        for p in ranked.into_iter().take(active.len() - want) {
            let _ = pods_api.delete(&p.name_any(), &DeleteParams::default()).await;
        }
    }
    // Status from what exists now (the next pod event re-runs this with fresh counts).
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let template_labels: BTreeMap<String, String> =
        spec.template.as_ref().and_then(|t| t.metadata.as_ref()).and_then(|m| m.labels.clone()).unwrap_or_default();
    let counted: Vec<&Pod> = mine.iter().filter(|p| is_active(p)).collect();
    let status = json!({
        "status": {
            "replicas": counted.len(),
            "fullyLabeledReplicas": counted.iter().filter(|p| template_labels.iter().all(|(k, v)| p.labels().get(k) == Some(v))).count(),
            "readyReplicas": counted.iter().filter(|p| is_ready(p)).count(),
            "availableReplicas": counted.iter().filter(|p| is_available(p, min_ready)).count(),
            "observedGeneration": rs.meta().generation,
        }
    });
    let rs_api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &ns);
    let current = rs.status.as_ref().map(|s| serde_json::to_value(s).unwrap_or_default());
    if current.as_ref() != Some(&status["status"]) {
        rs_api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status)).await?;
    }
    Ok(Action::requeue(Duration::from_secs(30)))
}

/// A FailedCreate Warning event on the ReplicaSet, as upstream's replicaset-controller
/// records; a repeat of the same message bumps the count instead of adding an event.
async fn failed_create_event(client: &kube::Client, rs: &ReplicaSet, message: &str) {
    let ns = rs.namespace().unwrap_or_default();
    let api: Api<Event> = Api::namespaced(client.clone(), &ns);
    let now = k8s_openapi::jiff::Timestamp::now();
    let uid = rs.uid().unwrap_or_default();
    if let Ok(list) = api.list(&ListParams::default().fields(&format!("involvedObject.name={}", rs.name_any()))).await {
        let same = list.items.iter().find(|e| e.involved_object.uid.as_deref() == Some(uid.as_str()) && e.reason.as_deref() == Some("FailedCreate") && e.message.as_deref() == Some(message));
        if let Some(old) = same {
            let patch = json!({"count": old.count.unwrap_or(1) + 1, "lastTimestamp": now.to_string()});
            let _ = api.patch(&old.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await;
            return;
        }
    }
    let ev = json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": format!("{}.{:x}", rs.name_any(), now.as_nanosecond()), "namespace": ns},
        "involvedObject": {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs.name_any(), "namespace": ns, "uid": uid, "resourceVersion": rs.resource_version()},
        "reason": "FailedCreate", "message": message, "type": "Warning",
        "source": {"component": "replicaset-controller"}, "reportingComponent": "replicaset-controller",
        "firstTimestamp": now.to_string(), "lastTimestamp": now.to_string(), "count": 1,
    });
    if let Ok(ev) = serde_json::from_value::<Event>(ev) {
        let _ = api.create(&PostParams::default(), &ev).await;
    }
}

/// Lower ranks are deleted first: unscheduled, pending, not ready, then the newest.
fn deletion_rank(p: &Pod) -> (u8, u8, u8, std::cmp::Reverse<String>) {
    let scheduled = p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some();
    let phase = p.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
    let created = p.meta().creation_timestamp.as_ref().map(|t| t.0.to_string()).unwrap_or_default();
    (scheduled as u8, (phase == "Running") as u8, is_ready(p) as u8, std::cmp::Reverse(created))
}
