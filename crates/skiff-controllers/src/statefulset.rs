//! StatefulSet controller: pods with stable names `<set>-<ordinal>`, created in order and
//! only after their predecessors are Running and Ready (OrderedReady) or all at once
//! (Parallel), removed from the highest ordinal down; one PVC per replica and
//! volumeClaimTemplate (`<template>-<set>-<ordinal>`) created before its pod and kept unless
//! `persistentVolumeClaimRetentionPolicy` says Delete; RollingUpdate (highest ordinal first,
//! down to `partition`) and OnDelete driven by ControllerRevisions named `<set>-<hash>`,
//! which pods carry in `controller-revision-hash`. Status carries replica counts and
//! current/update revisions, which `kubectl rollout status|history` read.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::deployment::template_hash;
use crate::pods::{is_available, is_ready, selector_string};
use crate::replicaset::controller_ref;
use crate::revisions;
use crate::runtime::{Error, Ctx};

/// Pod label: the ControllerRevision (`<set>-<hash>`) the pod was made from.
pub const REVISION_LABEL: &str = revisions::HASH_LABEL;
/// Pod label: the pod's own name, so a Service can select one replica.
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// Pod label: the pod's ordinal.
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

/// Run the controller until aborted.
pub async fn run(client: kube::Client, pods: impl futures::Stream<Item = Arc<Pod>> + Send + 'static) {
    let ctx = Arc::new(Ctx { client: client.clone() });
    Controller::new(Api::<StatefulSet>::all(client.clone()), watcher::Config::default())
        .owns_shared_stream(pods)
        .run(reconcile, crate::runtime::error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

/// The ordinal of a pod named `<set>-<n>`.
pub fn ordinal_of(set: &str, pod: &str) -> Option<i32> {
    let n = pod.strip_prefix(set)?.strip_prefix('-')?;
    if n.is_empty() || (n.len() > 1 && n.starts_with('0')) {
        return None;
    }
    n.parse().ok().filter(|n: &i32| *n >= 0)
}

/// The claim name for a volumeClaimTemplate and ordinal.
pub fn claim_name(template: &str, set: &str, ordinal: i32) -> String {
    format!("{template}-{set}-{ordinal}")
}

fn revision_label(p: &Pod) -> Option<&str> {
    p.labels().get(REVISION_LABEL).map(String::as_str)
}

fn running_and_ready(p: &Pod) -> bool {
    p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") && is_ready(p)
}

fn terminating(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_some()
}

fn failed(p: &Pod) -> bool {
    matches!(p.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Failed") | Some("Succeeded"))
}

/// The pod for `ordinal` made from `template` (of revision `revision`).
pub fn new_pod(set: &StatefulSet, template: &PodTemplateSpec, revision: &str, ordinal: i32) -> Pod {
    let set_name = set.name_any();
    let spec = set.spec.clone().unwrap_or_default();
    let name = format!("{set_name}-{ordinal}");
    let meta = template.metadata.clone().unwrap_or_default();
    let mut labels = meta.labels.unwrap_or_default();
    labels.insert(POD_NAME_LABEL.into(), name.clone());
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
    labels.insert(REVISION_LABEL.into(), revision.into());
    let mut pod_spec = template.spec.clone().unwrap_or_default();
    pod_spec.hostname = Some(name.clone());
    if let Some(svc) = spec.service_name.as_ref().filter(|s| !s.is_empty()) {
        pod_spec.subdomain = Some(svc.clone());
    }
    let volumes = pod_spec.volumes.get_or_insert_with(Vec::new);
    for claim in spec.volume_claim_templates.iter().flatten() {
        let vname = claim.metadata.name.clone().unwrap_or_default();
        volumes.retain(|v| v.name != vname);
        volumes.push(Volume {
            name: vname.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource { claim_name: claim_name(&vname, &set_name, ordinal), read_only: None }),
            ..Default::default()
        });
    }
    if volumes.is_empty() {
        pod_spec.volumes = None;
    }
    Pod {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: set.namespace(),
            labels: Some(labels),
            annotations: meta.annotations,
            owner_references: Some(vec![controller_ref(set)]),
            ..Default::default()
        },
        spec: Some(pod_spec),
        status: None,
    }
}

/// The PVCs of `ordinal`: each template's spec and labels plus the set's selector labels,
/// owned by the set when `whenDeleted` is Delete (the garbage collector then removes them).
pub fn claims_for(set: &StatefulSet, ordinal: i32) -> Vec<PersistentVolumeClaim> {
    let spec = set.spec.clone().unwrap_or_default();
    let delete_with_set = spec.persistent_volume_claim_retention_policy.as_ref().and_then(|p| p.when_deleted.as_deref()) == Some("Delete");
    spec.volume_claim_templates
        .iter()
        .flatten()
        .map(|t| {
            let mut labels = t.metadata.labels.clone().unwrap_or_default();
            labels.extend(spec.selector.match_labels.clone().unwrap_or_default());
            PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some(claim_name(t.metadata.name.as_deref().unwrap_or_default(), &set.name_any(), ordinal)),
                    namespace: set.namespace(),
                    labels: Some(labels),
                    annotations: t.metadata.annotations.clone(),
                    owner_references: delete_with_set.then(|| vec![controller_ref(set)]),
                    ..Default::default()
                },
                spec: t.spec.clone(),
                status: None,
            }
        })
        .collect()
}

/// What one reconcile pass does to pods, decided from the current pods alone.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Ordinals to create, with whether each gets the update (true) or current revision.
    pub create: Vec<(i32, bool)>,
    /// Pods to delete (failed, condemned by scale-down, or outdated by a rolling update).
    pub delete: Vec<String>,
}

/// Decide creations and deletions. `pods` maps ordinals to the set's pods.
pub fn plan(spec: &StatefulSetSpec, pods: &BTreeMap<i32, &Pod>, update_revision: &str) -> Plan {
    let start = spec.ordinals.as_ref().and_then(|o| o.start).unwrap_or(0).max(0);
    let replicas = spec.replicas.unwrap_or(1).max(0);
    let end = start + replicas;
    let ordered = spec.pod_management_policy.as_deref().unwrap_or("OrderedReady") != "Parallel";
    let strategy = spec.update_strategy.as_ref();
    let rolling = strategy.and_then(|s| s.type_.as_deref()).unwrap_or("RollingUpdate") == "RollingUpdate";
    let partition = strategy.and_then(|s| s.rolling_update.as_ref()).and_then(|r| r.partition).unwrap_or(0).max(0);
    let mut out = Plan::default();
    // Bring up the wanted ordinals, lowest first.
    for ord in start..end {
        match pods.get(&ord) {
            None => {
                out.create.push((ord, !(rolling && ord < start + partition)));
                if ordered {
                    return out;
                }
            }
            Some(p) if failed(p) && !terminating(p) => {
                // Replaced once it is gone (the deletion event requeues).
                out.delete.push(p.name_any());
                if ordered {
                    return out;
                }
            }
            Some(p) => {
                if ordered && (terminating(p) || !running_and_ready(p)) {
                    return out;
                }
            }
        }
    }
    // Scale down from the highest ordinal; in order, one at a time and only when all is healthy.
    let condemned: Vec<&&Pod> = pods.iter().rev().filter(|(o, _)| **o < start || **o >= end).map(|(_, p)| p).collect();
    for p in &condemned {
        if terminating(p) {
            if ordered {
                return out;
            }
            continue;
        }
        out.delete.push(p.name_any());
        if ordered {
            return out;
        }
    }
    if !condemned.is_empty() && ordered {
        return out;
    }
    if !rolling {
        return out;
    }
    // Rolling update: the highest outdated pod goes first, waiting for each to be healthy.
    for ord in (start + partition..end).rev() {
        let Some(p) = pods.get(&ord) else { return out };
        if revision_label(p) != Some(update_revision) && !terminating(p) {
            out.delete.push(p.name_any());
            return out;
        }
        if !running_and_ready(p) {
            return out;
        }
    }
    out
}


/// The owner references a claim should have under the retention policy: the set's when
/// `whenDeleted` is Delete, and for a pod condemned by scale-down with `whenScaled` Delete,
/// only that pod's (so the garbage collector removes the claim with the pod, which it would
/// not do while the set still owned it). Other owners are kept.
pub fn claim_owners(refs: &[OwnerReference], set: &StatefulSet, condemned_pod: Option<&Pod>) -> Vec<OwnerReference> {
    let policy = set.spec.as_ref().and_then(|s| s.persistent_volume_claim_retention_policy.clone()).unwrap_or_default();
    let set_uid = set.uid().unwrap_or_default();
    let mut out: Vec<OwnerReference> = refs.iter().filter(|r| r.uid != set_uid && r.kind != "Pod").cloned().collect();
    match condemned_pod {
        Some(pod) if policy.when_scaled.as_deref() == Some("Delete") => out.push(OwnerReference {
            api_version: "v1".into(),
            kind: "Pod".into(),
            name: pod.name_any(),
            uid: pod.uid().unwrap_or_default(),
            controller: None,
            block_owner_deletion: Some(true),
        }),
        _ => {
            // Pod owners are kept only while that pod is the one being scaled away.
            if policy.when_deleted.as_deref() == Some("Delete") {
                out.push(controller_ref(set));
            }
        }
    }
    out
}

async fn fix_claim_owners(set: &StatefulSet, api: &Api<PersistentVolumeClaim>, ordinal: i32, condemned_pod: Option<&Pod>) -> Result<(), Error> {
    for claim in claims_for(set, ordinal) {
        let claim_name = claim.name_any();
        let Ok(existing) = api.get(&claim_name).await else { continue };
        let want = claim_owners(existing.owner_references(), set, condemned_pod);
        if want.as_slice() == existing.owner_references() {
            continue;
        }
        let patch = json!({"metadata": {"ownerReferences": want, "resourceVersion": existing.resource_version()}});
        api.patch(&claim_name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    }
    Ok(())
}

async fn reconcile(set: Arc<StatefulSet>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if set.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = set.namespace().unwrap_or_default();
    let name = set.name_any();
    let uid = set.uid().unwrap_or_default();
    let spec = set.spec.clone().unwrap_or_default();
    let Some(selector) = selector_string(&spec.selector) else { return Ok(Action::await_change()) };
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let pvc_api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    let rev_api: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), &ns);
    let all: Vec<Pod> = pods_api
        .list(&ListParams::default().labels(&selector))
        .await?
        .items
        .into_iter()
        .filter(|p| p.owner_references().iter().any(|o| o.controller == Some(true) && o.uid == uid))
        .collect();
    let pods: BTreeMap<i32, &Pod> = all.iter().filter_map(|p| Some((ordinal_of(&name, &p.name_any())?, p))).collect();

    let collision = set.status.as_ref().and_then(|s| s.collision_count).unwrap_or(0);
    let hash = template_hash(&spec.template, collision);
    let update_revision = format!("{name}-{hash}");
    let status = set.status.clone().unwrap_or_default();
    let mut current_revision = status.current_revision.clone().filter(|r| !r.is_empty()).unwrap_or_else(|| update_revision.clone());
    let mut in_use: Vec<String> = all.iter().filter_map(|p| revision_label(p).map(String::from)).collect();
    in_use.push(current_revision.clone());
    let history = spec.revision_history_limit.unwrap_or(10);
    let revisions = revisions::sync(set.as_ref(), &spec.template, history, &rev_api, &selector, &hash, &in_use).await?;
    let current_template = revisions
        .iter()
        .find(|r| r.name_any() == current_revision)
        .and_then(revisions::template_of)
        .unwrap_or_else(|| spec.template.clone());

    let plan = plan(&spec, &pods, &update_revision);
    for (ord, updated) in &plan.create {
        for claim in claims_for(&set, *ord) {
            match pvc_api.create(&PostParams::default(), &claim).await {
                Ok(_) => tracing::info!(statefulset = %name, pvc = %claim.name_any(), "created claim"),
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
        }
        // A claim left from an earlier scale-down may still name its old pod as owner.
        fix_claim_owners(&set, &pvc_api, *ord, None).await?;
        let (template, revision) = if *updated { (&spec.template, &update_revision) } else { (&current_template, &current_revision) };
        match pods_api.create(&PostParams::default(), &new_pod(&set, template, revision, *ord)).await {
            Ok(p) => tracing::info!(statefulset = %name, pod = %p.name_any(), "created pod"),
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    let start = spec.ordinals.as_ref().and_then(|o| o.start).unwrap_or(0).max(0);
    let replicas = spec.replicas.unwrap_or(1).max(0);
    for pod_name in &plan.delete {
        let ord = ordinal_of(&name, pod_name).unwrap_or(0);
        let condemned = ord < start || ord >= start + replicas;
        if condemned {
            if let Some(pod) = pods.get(&ord) {
                fix_claim_owners(&set, &pvc_api, ord, Some(pod)).await?;
            }
        }
        tracing::info!(statefulset = %name, pod = %pod_name, "deleting pod");
        match pods_api.delete(pod_name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }

    // Status from the pods seen at the start of this pass; the changes above come back as
    // pod events and re-run it.
    let live: Vec<&Pod> = all.iter().filter(|p| !terminating(p) && !failed(p)).collect();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let count = |f: &dyn Fn(&Pod) -> bool| live.iter().filter(|p| f(p)).count() as i32;
    let ready = count(&|p| is_ready(p));
    let available = count(&|p| is_available(p, min_ready));
    let updated = count(&|p| revision_label(p) == Some(update_revision.as_str()));
    let mut current = count(&|p| revision_label(p) == Some(current_revision.as_str()));
    let n = live.len() as i32;
    let rolling = spec.update_strategy.as_ref().and_then(|s| s.type_.as_deref()).unwrap_or("RollingUpdate") == "RollingUpdate";
    if rolling && updated == n && ready == n && n == replicas && current_revision != update_revision {
        // The rolling update is complete: the update revision becomes current.
        current_revision = update_revision.clone();
        current = updated;
    }
    let new_status = json!({
        "replicas": n,
        "readyReplicas": ready,
        "availableReplicas": available,
        "currentReplicas": current,
        "updatedReplicas": updated,
        "currentRevision": current_revision,
        "updateRevision": update_revision,
        "observedGeneration": set.meta().generation,
        "collisionCount": collision,
    });
    let old = serde_json::to_value(&status).unwrap_or_default();
    if new_status.as_object().unwrap().iter().any(|(k, v)| old.get(k).unwrap_or(&json!(0)) != v) {
        Api::<StatefulSet>::namespaced(ctx.client.clone(), &ns)
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&json!({"status": new_status})))
            .await?;
    }
    let wait = if min_ready > 0 && available < ready { Duration::from_secs(1) } else { Duration::from_secs(30) };
    Ok(Action::requeue(wait))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, rev: &str, ready: bool) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {REVISION_LABEL: rev}},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}
        }))
        .unwrap()
    }

    fn spec(v: serde_json::Value) -> StatefulSetSpec {
        let mut v = v;
        v["selector"] = json!({"matchLabels": {"app": "web"}});
        v["serviceName"] = json!("web");
        v["template"] = json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}});
        serde_json::from_value(v).unwrap()
    }

    fn map(pods: &[Pod]) -> BTreeMap<i32, &Pod> {
        pods.iter().map(|p| (ordinal_of("web", &p.name_any()).unwrap(), p)).collect()
    }

    #[test]
    fn ordinals_parse_strictly() {
        assert_eq!(ordinal_of("web", "web-0"), Some(0));
        assert_eq!(ordinal_of("web", "web-12"), Some(12));
        for bad in ["web-", "web-01", "web-x", "webby-1", "web-1-2", "db-1"] {
            assert_eq!(ordinal_of("web", bad), None, "{bad}");
        }
        assert_eq!(claim_name("data", "web", 2), "data-web-2");
    }

    #[test]
    fn ordered_ready_creates_one_at_a_time() {
        let s = spec(json!({"replicas": 3}));
        assert_eq!(plan(&s, &BTreeMap::new(), "r1"), Plan { create: vec![(0, true)], delete: vec![] });
        let pods = [pod("web-0", "r1", false)];
        assert_eq!(plan(&s, &map(&pods), "r1"), Plan::default());
        let pods = [pod("web-0", "r1", true)];
        assert_eq!(plan(&s, &map(&pods), "r1").create, [(1, true)]);
        let parallel = spec(json!({"replicas": 3, "podManagementPolicy": "Parallel"}));
        assert_eq!(plan(&parallel, &BTreeMap::new(), "r1").create, [(0, true), (1, true), (2, true)]);
    }

    #[test]
    fn scale_down_goes_from_the_highest_ordinal() {
        let s = spec(json!({"replicas": 1}));
        let pods = [pod("web-0", "r1", true), pod("web-1", "r1", true), pod("web-2", "r1", true)];
        assert_eq!(plan(&s, &map(&pods), "r1").delete, ["web-2"]);
        let parallel = spec(json!({"replicas": 1, "podManagementPolicy": "Parallel"}));
        assert_eq!(plan(&parallel, &map(&pods), "r1").delete, ["web-2", "web-1"]);
    }

    #[test]
    fn rolling_update_honours_partition() {
        let s = spec(json!({"replicas": 3, "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 1}}}));
        let pods = [pod("web-0", "r1", true), pod("web-1", "r1", true), pod("web-2", "r1", true)];
        assert_eq!(plan(&s, &map(&pods), "r2").delete, ["web-2"]);
        let pods = [pod("web-0", "r1", true), pod("web-1", "r1", true), pod("web-2", "r2", false)];
        assert!(plan(&s, &map(&pods), "r2").delete.is_empty(), "waits for web-2 to be ready");
        let pods = [pod("web-0", "r1", true), pod("web-1", "r1", true), pod("web-2", "r2", true)];
        assert_eq!(plan(&s, &map(&pods), "r2").delete, ["web-1"]);
        let pods = [pod("web-0", "r1", true), pod("web-1", "r2", true), pod("web-2", "r2", true)];
        assert!(plan(&s, &map(&pods), "r2").delete.is_empty(), "web-0 is below the partition");
        // Below the partition, a missing pod comes back at the current revision.
        let pods = [pod("web-1", "r2", true), pod("web-2", "r2", true)];
        assert_eq!(plan(&s, &map(&pods), "r2").create, [(0, false)]);
        let on_delete = spec(json!({"replicas": 3, "updateStrategy": {"type": "OnDelete"}}));
        let pods = [pod("web-0", "r1", true), pod("web-1", "r1", true), pod("web-2", "r1", true)];
        assert_eq!(plan(&on_delete, &map(&pods), "r2"), Plan::default());
    }

    #[test]
    fn pods_get_identity_and_claims() {
        let set: StatefulSet = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "u1"},
            "spec": {"replicas": 1, "serviceName": "nginx", "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx", "volumeMounts": [{"name": "data", "mountPath": "/d"}]}]}},
                "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}
        }))
        .unwrap();
        let p = new_pod(&set, &set.spec.as_ref().unwrap().template, "web-abc", 2);
        assert_eq!(p.name_any(), "web-2");
        let s = p.spec.as_ref().unwrap();
        assert_eq!(s.hostname.as_deref(), Some("web-2"));
        assert_eq!(s.subdomain.as_deref(), Some("nginx"));
        assert_eq!(s.volumes.as_ref().unwrap()[0].persistent_volume_claim.as_ref().unwrap().claim_name, "data-web-2");
        assert_eq!(p.labels()[POD_NAME_LABEL], "web-2");
        assert_eq!(p.labels()[POD_INDEX_LABEL], "2");
        assert_eq!(p.labels()[REVISION_LABEL], "web-abc");
        let claims = claims_for(&set, 2);
        assert_eq!(claims.len(), 1);
        assert_eq!(claims[0].name_any(), "data-web-2");
        assert_eq!(claims[0].labels()["app"], "web");
        assert!(claims[0].metadata.owner_references.is_none(), "retained by default");
    }

    #[test]
    fn claim_owners_follow_the_retention_policy() {
        let set = |scaled: &str, deleted: &str| -> StatefulSet {
            serde_json::from_value(json!({"metadata": {"name": "db", "uid": "set"}, "spec": {"selector": {}, "template": {}, "serviceName": "db",
                "persistentVolumeClaimRetentionPolicy": {"whenScaled": scaled, "whenDeleted": deleted}}})).unwrap()
        };
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "db-1", "uid": "pod"}})).unwrap();
        let uids = |refs: Vec<OwnerReference>| refs.into_iter().map(|r| r.uid).collect::<Vec<_>>();
        let both = set("Delete", "Delete");
        assert_eq!(uids(claim_owners(&[], &both, None)), ["set"]);
        assert_eq!(uids(claim_owners(&[controller_ref(&both)], &both, Some(&pod))), ["pod"]);
        // Scaled back up: the pod reference goes, the set's returns.
        let with_pod = claim_owners(&[controller_ref(&both)], &both, Some(&pod));
        assert_eq!(uids(claim_owners(&with_pod, &both, None)), ["set"]);
        assert!(claim_owners(&[], &set("Retain", "Retain"), Some(&pod)).is_empty());
        assert_eq!(uids(claim_owners(&[], &set("Retain", "Delete"), Some(&pod))), ["set"]);
        assert_eq!(uids(claim_owners(&[], &set("Delete", "Retain"), Some(&pod))), ["pod"]);
    }
}
