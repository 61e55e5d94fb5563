//! Deployment controller: one ReplicaSet per pod template (named `<deployment>-<hash>`, its
//! pods labelled `pod-template-hash`), rolled out with RollingUpdate (maxSurge /
//! maxUnavailable) or Recreate, revisions in `deployment.kubernetes.io/revision`, old
//! ReplicaSets pruned to `revisionHistoryLimit`, and status with Available/Progressing
//! conditions that `kubectl rollout status` reads.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::pods::selector_string;
use crate::replicaset::controller_ref;
use crate::runtime::{Error, Ctx};

const REVISION: &str = "deployment.kubernetes.io/revision";
const HASH_LABEL: &str = "pod-template-hash";

/// Run the controller until aborted.
pub async fn run(client: kube::Client) {
    let ctx = Arc::new(Ctx { client: client.clone() });
    Controller::new(Api::<Deployment>::all(client.clone()), watcher::Config::default())
        .owns(Api::<ReplicaSet>::all(client), watcher::Config::default())
        .run(reconcile, crate::runtime::error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

/// FNV-1a (32-bit): a stable hash of the pod template, like upstream's pod-template-hash.
fn fnv32a(data: &[u8]) -> u32 {
    let mut h: u32 = 0x811c9dc5;
    for b in data {
        h ^= *b as u32;
        h = h.wrapping_mul(0x01000193);
    }
    h
}

/// The template hash as upstream encodes it: digits mapped onto consonants and safe digits.
pub fn template_hash(template: &PodTemplateSpec, collision_count: i32) -> String {
    let mut bytes = serde_json::to_vec(template).unwrap_or_default();
    if collision_count > 0 {
        bytes.extend(collision_count.to_string().as_bytes());
    }
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    fnv32a(&bytes).to_string().bytes().map(|b| ALPHABET[b as usize % ALPHABET.len()] as char).collect()
}

fn without_hash(t: &PodTemplateSpec) -> PodTemplateSpec {
    let mut t = t.clone();
    if let Some(labels) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(HASH_LABEL);
    }
    t
}

fn revision(rs: &ReplicaSet) -> i64 {
    rs.annotations().get(REVISION).and_then(|r| r.parse().ok()).unwrap_or(0)
}

fn spec_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

fn available(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0)
}

/// Resolve an int-or-percent against `total`, rounding up (surge) or down (unavailable).
fn resolve(v: Option<&IntOrString>, total: i32, round_up: bool, default_pct: i32) -> i32 {
    match v {
        Some(IntOrString::Int(i)) => *i,
        Some(IntOrString::String(s)) => {
            let pct: i32 = s.trim_end_matches('%').parse().unwrap_or(default_pct);
            let x = total as i64 * pct as i64;
            (if round_up { (x + 99) / 100 } else { x / 100 }) as i32
        }
        None => {
            let x = total as i64 * default_pct as i64;
            (if round_up { (x + 99) / 100 } else { x / 100 }) as i32
        }
    }
}

async fn reconcile(d: Arc<Deployment>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if d.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = d.namespace().unwrap_or_default();
    let name = d.name_any();
    let uid = d.uid().unwrap_or_default();
    let spec = d.spec.clone().unwrap_or_default();
    let Some(selector) = selector_string(&spec.selector) else { return Ok(Action::await_change()) };
    let rs_api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &ns);
    let all = rs_api.list(&ListParams::default().labels(&selector)).await?;
    let mut owned: Vec<ReplicaSet> = Vec::new();
    for rs in all.items {
        let controller = rs.owner_references().iter().find(|o| o.controller == Some(true)).cloned();
        match controller {
            Some(c) if c.uid == uid => owned.push(rs),
            None if rs.meta().deletion_timestamp.is_none() => {
                let mut refs = rs.owner_references().to_vec();
                refs.push(controller_ref(d.as_ref()));
                let patch = json!({"metadata": {"ownerReferences": refs, "resourceVersion": rs.resource_version()}});
                if let Ok(adopted) = rs_api.patch(&rs.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await {
                    owned.push(adopted);
                }
            }
            _ => {}
        }
    }
    let template = spec.template.clone();
    let collision = d.status.as_ref().and_then(|s| s.collision_count).unwrap_or(0);
    let hash = template_hash(&template, collision);
    let replicas = spec.replicas.unwrap_or(1).max(0);
    let max_revision = owned.iter().map(revision).max().unwrap_or(0);
    let new_idx = owned.iter().position(|rs| rs.spec.as_ref().and_then(|s| s.template.as_ref()).map(without_hash) == Some(without_hash(&template)));
    let paused = spec.paused.unwrap_or(false);
    let recreate = spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) == Some("Recreate");
    let ru = spec.strategy.as_ref().and_then(|s| s.rolling_update.clone()).unwrap_or_default();
    let mut max_surge = resolve(ru.max_surge.as_ref(), replicas, true, 25);
    let mut max_unavailable = resolve(ru.max_unavailable.as_ref(), replicas, false, 25);
    if recreate {
        max_surge = 0;
        max_unavailable = replicas;
    }
    if max_surge == 0 && max_unavailable == 0 {
        max_unavailable = 1;
    }

    let mut new_rs = match new_idx {
        Some(i) => {
            let mut rs = owned.remove(i);
            // The current template's ReplicaSet carries the newest revision.
            let others_max = owned.iter().map(revision).max().unwrap_or(0);
            if revision(&rs) <= others_max || rs.annotations().get(REVISION).is_none() {
                // A rollback (or an adopted ReplicaSet) becomes the newest revision.
                let patch = json!({"metadata": {"annotations": {REVISION: (others_max + 1).to_string()}}});
                rs = rs_api.patch(&rs.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
            }
            Some(rs)
        }
        None if paused => None,
        None => {
            let mut t = template.clone();
            let meta = t.metadata.get_or_insert_with(Default::default);
            meta.labels.get_or_insert_with(Default::default).insert(HASH_LABEL.into(), hash.clone());
            let mut sel = spec.selector.clone();
            sel.match_labels.get_or_insert_with(Default::default).insert(HASH_LABEL.into(), hash.clone());
            let mut labels = t.metadata.as_ref().and_then(|m| m.labels.clone()).unwrap_or_default();
            labels.insert(HASH_LABEL.into(), hash.clone());
            let existing_total: i32 = owned.iter().map(spec_replicas).sum();
            let initial = if recreate {
                0
            } else if owned.is_empty() {
                replicas
            } else {
                (replicas + max_surge - existing_total).clamp(0, replicas)
            };
            let rs = ReplicaSet {
                metadata: ObjectMeta {
                    name: Some(format!("{name}-{hash}")),
                    namespace: Some(ns.clone()),
                    labels: Some(labels),
                    annotations: Some(
                        [
                            (REVISION.to_string(), (max_revision + 1).to_string()),
                            ("deployment.kubernetes.io/desired-replicas".to_string(), replicas.to_string()),
                            ("deployment.kubernetes.io/max-replicas".to_string(), (replicas + max_surge).to_string()),
                        ]
                        .into_iter()
                        .chain(d.annotations().get("kubernetes.io/change-cause").map(|c| ("kubernetes.io/change-cause".to_string(), c.clone())))
                        .collect(),
                    ),
                    owner_references: Some(vec![controller_ref(d.as_ref())]),
                    ..Default::default()
                },
                spec: Some(ReplicaSetSpec {
                    replicas: Some(initial),
                    min_ready_seconds: spec.min_ready_seconds,
                    selector: sel,
                    template: Some(t),
                }),
                status: None,
            };
            match rs_api.create(&PostParams::default(), &rs).await {
                Ok(rs) => {
                    tracing::info!(deployment = %name, replicaset = %rs.name_any(), "scaled up new replica set");
                    Some(rs)
                }
                Err(kube::Error::Api(e)) if e.code == 409 => {
                    // A different template already took this hash: bump collisionCount.
                    let patch = json!({"status": {"collisionCount": collision + 1}});
                    let dapi: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
                    dapi.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
                    return Ok(Action::requeue(Duration::from_millis(100)));
                }
                Err(e) => return Err(e.into()),
            }
        }
    };
    let old = owned;
    // The Deployment carries its current revision, as upstream (kubectl rollout reads it).
    if let Some(new) = &new_rs {
        let rev = revision(new).to_string();
        if d.annotations().get(REVISION) != Some(&rev) {
            let dapi: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
            let patch = json!({"metadata": {"annotations": {REVISION: rev}}});
            dapi.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
        }
    }

    let mut requeue = Duration::from_secs(30);
    if !paused {
        if let Some(new) = new_rs.as_mut() {
            let old_total: i32 = old.iter().map(spec_replicas).sum();
            let old_pods_running: i32 = old.iter().map(|r| r.status.as_ref().map(|s| s.replicas).unwrap_or(0)).sum();
            let new_target = if recreate {
                let scaled_down = old_total == 0 && old_pods_running == 0;
                if scaled_down && spec_replicas(new) < replicas && old_pods_remain(&ctx, &ns, &selector, &old).await? {
                    // Terminating old pods still run (ReplicaSet status no longer counts
                    // them): Recreate starts nothing new until they are gone, as upstream.
                    // Their deletion is not an event this controller watches, hence the poll.
                    requeue = Duration::from_secs(1);
                    spec_replicas(new)
                } else if scaled_down {
                    replicas
                } else {
                    0
                }
            } else {
                let allowed = replicas + max_surge;
                let current = old_total + spec_replicas(new);
                let up = (allowed - current).max(0);
                (spec_replicas(new) + up).min(replicas).max(if spec_replicas(new) > replicas { replicas } else { 0 })
            };
            if new_target != spec_replicas(new) {
                *new = scale(&rs_api, new, new_target).await?;
            }
            // Scale old ReplicaSets down as far as availability allows.
            let min_available = replicas - max_unavailable;
            let new_unavailable = spec_replicas(new) - available(new);
            let all_available: i32 = old.iter().map(available).sum::<i32>() + available(new);
            let mut budget = if recreate { i32::MAX } else { all_available - min_available - new_unavailable };
            let mut olds: Vec<&ReplicaSet> = old.iter().filter(|r| spec_replicas(r) > 0).collect();
            olds.sort_by_key(|r| revision(r));
            for r in olds {
                if budget <= 0 {
                    break;
                }
                // Unavailable old pods go first and do not spend the budget.
                let unhealthy = spec_replicas(r) - available(r);
                let down = (unhealthy + budget).min(spec_replicas(r));
                let spent = (down - unhealthy).max(0);
                scale(&rs_api, r, spec_replicas(r) - down).await?;
                budget -= spent;
            }
        }
    }

    // Prune old ReplicaSets beyond revisionHistoryLimit.
    let limit = spec.revision_history_limit.unwrap_or(10).max(0) as usize;
    let mut empties: Vec<&ReplicaSet> =
        old.iter().filter(|r| spec_replicas(r) == 0 && r.status.as_ref().map(|s| s.replicas).unwrap_or(0) == 0).collect();
    if empties.len() > limit {
        empties.sort_by_key(|r| revision(r));
        for r in &empties[..empties.len() - limit] {
            let _ = rs_api.delete(&r.name_any(), &DeleteParams::background()).await;
        }
    }

    update_status(&ctx, &d, new_rs.as_ref(), &old, replicas, max_unavailable).await?;
    Ok(Action::requeue(requeue))
}

/// Whether any pod of the old ReplicaSets `old` still exists and has not finished (being
/// deleted counts as existing: its containers may still run through their grace period).
async fn old_pods_remain(ctx: &Ctx, ns: &str, selector: &str, old: &[ReplicaSet]) -> Result<bool, Error> {
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(ctx.client.clone(), ns);
    let old_uids: Vec<String> = old.iter().filter_map(|r| r.uid()).collect();
    let list = pods.list(&ListParams::default().labels(selector)).await?;
    Ok(list.items.iter().any(|p| {
        let finished = p.status.as_ref().and_then(|s| s.phase.as_deref()).is_some_and(|ph| ph == "Succeeded" || ph == "Failed");
        !finished && p.owner_references().iter().any(|o| o.controller == Some(true) && old_uids.contains(&o.uid))
    }))
}

async fn scale(api: &Api<ReplicaSet>, rs: &ReplicaSet, to: i32) -> Result<ReplicaSet, Error> {
    let patch = json!({"spec": {"replicas": to}});
    let r = api.patch(&rs.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
    tracing::info!(replicaset = %rs.name_any(), from = spec_replicas(rs), to, "scaled replica set");
    Ok(r)
}

async fn update_status(
    ctx: &Ctx,
    d: &Deployment,
    new: Option<&ReplicaSet>,
    old: &[ReplicaSet],
    replicas: i32,
    max_unavailable: i32,
) -> Result<(), Error> {
    let all: Vec<&ReplicaSet> = new.into_iter().chain(old.iter()).collect();
    let sum = |f: &dyn Fn(&ReplicaSet) -> i32| all.iter().map(|r| f(r)).sum::<i32>();
    let total = sum(&|r| r.status.as_ref().map(|s| s.replicas).unwrap_or(0));
    let ready = sum(&|r| r.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0));
    let avail = sum(&|r| available(r));
    let updated = new.map(|r| r.status.as_ref().map(|s| s.replicas).unwrap_or(0)).unwrap_or(0);
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let old_conds = d.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    let keep_time = |ty: &str, status: &str| {
        old_conds
            .iter()
            .find(|c| c.type_ == ty && c.status == status)
            .and_then(|c| c.last_transition_time.as_ref().map(|t| t.0.to_string()))
            .unwrap_or_else(|| now.clone())
    };
    let is_available = avail >= replicas - max_unavailable;
    let complete = new.is_some() && updated == replicas && total == replicas && avail >= replicas;
    let (av_status, av_reason, av_msg) = if is_available {
        ("True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
    } else {
        ("False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.")
    };
    let new_name = new.map(|r| r.name_any()).unwrap_or_default();
    let (pr_reason, pr_msg) = if complete {
        ("NewReplicaSetAvailable", format!("ReplicaSet \"{new_name}\" has successfully progressed."))
    } else {
        ("ReplicaSetUpdated", format!("ReplicaSet \"{new_name}\" is progressing."))
    };
    let mut status = json!({
        "observedGeneration": d.meta().generation,
        "replicas": total,
        "updatedReplicas": updated,
        "readyReplicas": ready,
        "availableReplicas": avail,
        "unavailableReplicas": (replicas - avail).max(0),
        "conditions": [
            {"type": "Available", "status": av_status, "reason": av_reason, "message": av_msg, "lastUpdateTime": now, "lastTransitionTime": keep_time("Available", av_status)},
            {"type": "Progressing", "status": "True", "reason": pr_reason, "message": pr_msg, "lastUpdateTime": now, "lastTransitionTime": keep_time("Progressing", "True")},
        ],
    });
    if let Some(c) = d.status.as_ref().and_then(|s| s.collision_count) {
        status["collisionCount"] = json!(c);
    }
    // Skip writes that change only timestamps, so status does not churn every pass.
    let strip = |v: &serde_json::Value| {
        let mut v = v.clone();
        if let Some(cs) = v.get_mut("conditions").and_then(|c| c.as_array_mut()) {
            for c in cs.iter_mut().filter_map(|c| c.as_object_mut()) {
                c.remove("lastUpdateTime");
                c.remove("lastTransitionTime");
            }
        }
        if let Some(m) = v.as_object_mut() {
            m.retain(|_, x| !x.is_null() && *x != json!(0));
        }
        v
    };
    let current = d.status.as_ref().map(|s| serde_json::to_value(s).unwrap_or_default()).unwrap_or_default();
    if strip(&current) != strip(&status) {
        let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), &d.namespace().unwrap_or_default());
        api.patch_status(&d.name_any(), &PatchParams::default(), &Patch::Merge(&json!({"status": status}))).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_round_like_upstream() {
        let p = IntOrString::String("25%".into());
        assert_eq!(resolve(Some(&p), 10, true, 25), 3);
        assert_eq!(resolve(Some(&p), 10, false, 25), 2);
        assert_eq!(resolve(None, 1, true, 25), 1);
        assert_eq!(resolve(None, 1, false, 25), 0);
        assert_eq!(resolve(Some(&IntOrString::Int(2)), 10, true, 25), 2);
    }

    #[test]
    fn template_hash_is_stable_and_safe() {
        let t = PodTemplateSpec::default();
        let a = template_hash(&t, 0);
        assert_eq!(a, template_hash(&t, 0));
        assert_ne!(a, template_hash(&t, 1));
        assert!(a.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
    }
}
