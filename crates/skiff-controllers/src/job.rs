//! Job controller: runs pods until `completions` succeed (NonIndexed or Indexed), at most
//! `parallelism` at a time, retrying failures with exponential back-off up to
//! `backoffLimit`, failing after `activeDeadlineSeconds`, honouring `suspend`, and deleting
//! finished Jobs after `ttlSecondsAfterFinished`. Status carries active/ready/succeeded/
//! failed counts and the Complete/Failed (and SuccessCriteriaMet/FailureTarget) conditions.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::pods::{is_ready, selector_string};
use crate::replicaset::controller_ref;
use crate::runtime::{Error, Ctx};

const INDEX_ANNOTATION: &str = "batch.kubernetes.io/job-completion-index";

/// Run until aborted.
pub async fn run(client: kube::Client, pods: impl futures::Stream<Item = Arc<Pod>> + Send + 'static) {
    let ctx = Arc::new(Ctx { client: client.clone() });
    Controller::new(Api::<Job>::all(client.clone()), watcher::Config::default())
        .owns_shared_stream(pods)
        .run(reconcile, crate::runtime::error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

fn now() -> k8s_openapi::jiff::Timestamp {
    k8s_openapi::jiff::Timestamp::now()
}

fn finished_condition(job: &Job) -> Option<(String, k8s_openapi::jiff::Timestamp)> {
    job.status.as_ref()?.conditions.as_ref()?.iter().find_map(|c| {
        ((c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
            .then(|| (c.type_.clone(), c.last_transition_time.as_ref().map(|t| t.0).unwrap_or_else(now)))
    })
}

fn phase(p: &Pod) -> &str {
    p.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

fn index_of(p: &Pod) -> Option<i32> {
    p.annotations().get(INDEX_ANNOTATION).and_then(|i| i.parse().ok())
}

async fn reconcile(job: Arc<Job>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ns = job.namespace().unwrap_or_default();
    let name = job.name_any();
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    if job.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let spec = job.spec.clone().unwrap_or_default();
    // Finished: only the TTL remains.
    if let Some((_, at)) = finished_condition(&job) {
        if let Some(ttl) = spec.ttl_seconds_after_finished {
            let due = at.as_second() + ttl as i64;
            let left = due - now().as_second();
            if left <= 0 {
                tracing::info!(job = %name, "deleting finished job after its TTL");
                let _ = jobs.delete(&name, &DeleteParams::background()).await;
                return Ok(Action::await_change());
            }
            return Ok(Action::requeue(Duration::from_secs(left as u64)));
        }
        return Ok(Action::await_change());
    }
    let Some(selector) = spec.selector.as_ref().and_then(selector_string) else { return Ok(Action::await_change()) };
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let uid = job.uid().unwrap_or_default();
    let pods: Vec<Pod> = pods_api
        .list(&ListParams::default().labels(&selector))
        .await?
        .items
        .into_iter()
        .filter(|p| p.owner_references().iter().any(|o| o.uid == uid))
        .collect();
    let active: Vec<&Pod> = pods.iter().filter(|p| !matches!(phase(p), "Succeeded" | "Failed") && p.metadata.deletion_timestamp.is_none()).collect();
    let succeeded_pods: Vec<&Pod> = pods.iter().filter(|p| phase(p) == "Succeeded").collect();
    let failed = pods.iter().filter(|p| phase(p) == "Failed").count() as i32;
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    let completions = spec.completions;
    let parallelism = spec.parallelism.unwrap_or(1).max(0);
    let backoff_limit = spec.backoff_limit.unwrap_or(6);
    let succeeded_indexes: BTreeSet<i32> = succeeded_pods.iter().filter_map(|p| index_of(p)).collect();
    let succeeded = if indexed { succeeded_indexes.len() as i32 } else { succeeded_pods.len() as i32 };
    let start = job.status.as_ref().and_then(|s| s.start_time.clone()).map(|t| t.0).unwrap_or_else(now);
    let suspended = spec.suspend.unwrap_or(false);

    let mut finish: Option<(&str, &str, String)> = None;
    if completions.is_some_and(|c| succeeded >= c) || (completions.is_none() && succeeded > 0 && active.is_empty()) {
        finish = Some(("Complete", "CompletionsReached", "Reached expected number of succeeded pods".into()));
    } else if failed > backoff_limit {
        finish = Some(("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit".into()));
    } else if let Some(deadline) = spec.active_deadline_seconds {
        if !suspended && now().as_second() - start.as_second() >= deadline {
            finish = Some(("Failed", "DeadlineExceeded", "Job was active longer than specified deadline".into()));
        }
    }
    let mut requeue = Duration::from_secs(30);
    if let Some((kind, _, _)) = &finish {
        for p in &active {
            let _ = pods_api.delete(&p.name_any(), &DeleteParams::background()).await;
        }
        tracing::info!(job = %name, outcome = %kind, "job finished");
    } else if suspended {
        for p in &active {
            let _ = pods_api.delete(&p.name_any(), &DeleteParams::background()).await;
        }
    } else {
        // Exponential back-off after failures: 10 s, 20 s, 40 s, ... capped at 6 minutes.
        let last_failure = pods
            .iter()
            .filter(|p| phase(p) == "Failed")
            .filter_map(|p| p.status.as_ref()?.container_statuses.as_ref()?.iter().filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref().map(|t| t.0.as_second())).max())
            .max();
        let backoff = if failed > 0 { (10i64 << (failed - 1).min(6)).min(360) } else { 0 };
        let wait = last_failure.map(|t| t + backoff - now().as_second()).unwrap_or(0);
        if wait > 0 {
            requeue = Duration::from_secs(wait as u64);
        } else {
            let remaining = completions.map(|c| (c - succeeded).max(0)).unwrap_or(parallelism);
            let want = parallelism.min(remaining) - active.len() as i32;
            let template = spec.template.clone();
            let mut free_indexes = (0..completions.unwrap_or(0)).filter(|i| {
                !succeeded_indexes.contains(i) && !active.iter().any(|p| index_of(p) == Some(*i))
            });
            for _ in 0..want.max(0) {
                let mut meta = template.metadata.clone().unwrap_or_default();
                let mut spec_copy = template.spec.clone();
                let mut generate = format!("{name}-");
                if indexed {
                    let Some(i) = free_indexes.next() else { break };
                    meta.annotations.get_or_insert_with(Default::default).insert(INDEX_ANNOTATION.into(), i.to_string());
                    meta.labels.get_or_insert_with(Default::default).insert(INDEX_ANNOTATION.into(), i.to_string());
                    generate = format!("{name}-{i}-");
                    if let Some(ps) = spec_copy.as_mut() {
                        ps.hostname.get_or_insert_with(|| format!("{name}-{i}"));
                        for c in ps.containers.iter_mut() {
                            c.env.get_or_insert_with(Vec::new).push(k8s_openapi::api::core::v1::EnvVar {
                                name: "JOB_COMPLETION_INDEX".into(),
                                value: Some(i.to_string()),
                                value_from: None,
                            });
                        }
                    }
                }
                let pod = Pod {
                    metadata: ObjectMeta {
                        generate_name: Some(generate),
                        namespace: Some(ns.clone()),
                        labels: meta.labels,
                        annotations: meta.annotations,
                        owner_references: Some(vec![controller_ref(job.as_ref())]),
                        finalizers: None,
                        ..Default::default()
                    },
                    spec: spec_copy,
                    status: None,
                };
                if let Err(e) = pods_api.create(&PostParams::default(), &pod).await {
                    tracing::warn!(job = %name, error = %e, "creating job pod failed");
                    break;
                }
            }
        }
    }
    // Status.
    let now_s = now().to_string();
    let mut conditions: Vec<serde_json::Value> = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .map(|cs| cs.iter().filter(|c| c.type_ != "Suspended").filter_map(|c| serde_json::to_value(c).ok()).collect())
        .unwrap_or_default();
    if suspended && finish.is_none() {
        conditions.push(json!({"type": "Suspended", "status": "True", "reason": "JobSuspended", "message": "Job suspended", "lastProbeTime": now_s, "lastTransitionTime": now_s}));
    }
    let mut status = json!({
        "active": if finish.is_some() || suspended { 0 } else { active.len() },
        "ready": active.iter().filter(|p| is_ready(p)).count(),
        "succeeded": succeeded,
        "failed": failed,
        "startTime": start.to_string(),
    });
    if indexed {
        status["completedIndexes"] = json!(compress_indexes(&succeeded_indexes));
    }
    if let Some((kind, reason, message)) = &finish {
        let interim = if *kind == "Complete" { "SuccessCriteriaMet" } else { "FailureTarget" };
        conditions.push(json!({"type": interim, "status": "True", "reason": reason, "message": message, "lastProbeTime": now_s, "lastTransitionTime": now_s}));
        conditions.push(json!({"type": kind, "status": "True", "reason": reason, "message": message, "lastProbeTime": now_s, "lastTransitionTime": now_s}));
        if *kind == "Complete" {
            status["completionTime"] = json!(now_s);
        }
        status["active"] = json!(0);
    }
    status["conditions"] = json!(conditions);
    let current = job.status.as_ref().map(|s| serde_json::to_value(s).unwrap_or_default()).unwrap_or_default();
    let changed = ["active", "ready", "succeeded", "failed", "completedIndexes"].iter().any(|k| current.get(*k).unwrap_or(&json!(0)) != status.get(*k).unwrap_or(&json!(0)))
        || current.get("startTime").is_none()
        || finish.is_some()
        || current.get("conditions").map(|c| c.as_array().map(|a| a.len()).unwrap_or(0)).unwrap_or(0) != conditions.len();
    if changed {
        jobs.patch_status(&name, &PatchParams::default(), &Patch::Merge(&json!({"status": status}))).await?;
    }
    if finish.is_some() {
        return Ok(Action::requeue(Duration::from_millis(200)));
    }
    if let Some(deadline) = spec.active_deadline_seconds {
        let left = start.as_second() + deadline - now().as_second();
        requeue = requeue.min(Duration::from_secs(left.max(1) as u64));
    }
    Ok(Action::requeue(requeue))
}

/// `1,3-5,7` from a set of indexes, as upstream writes completedIndexes.
fn compress_indexes(set: &BTreeSet<i32>) -> String {
    let mut out: Vec<String> = Vec::new();
    let v: Vec<i32> = set.iter().copied().collect();
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        while j + 1 < v.len() && v[j + 1] == v[j] + 1 {
            j += 1;
        }
        out.push(if i == j { v[i].to_string() } else { format!("{}-{}", v[i], v[j]) });
        i = j + 1;
    }
    out.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completed_indexes_are_compressed() {
        let s: BTreeSet<i32> = [0, 1, 2, 4, 6, 7].into_iter().collect();
        assert_eq!(compress_indexes(&s), "0-2,4,6-7");
        assert_eq!(compress_indexes(&BTreeSet::new()), "");
    }
}
