//! CronJob controller: creates a Job from `jobTemplate` at each time of `schedule`
//! ([`crate::schedule`], in `timeZone`), named `<cronjob>-<scheduled unix minutes>` so a
//! schedule slot is created at most once, honouring `concurrencyPolicy`
//! (Allow/Forbid/Replace), `startingDeadlineSeconds` and `suspend`, pruning finished Jobs to
//! the history limits, and reporting `active`, `lastScheduleTime` and `lastSuccessfulTime`.
//!
//! Level-triggered: `status.active` is recomputed from the unfinished Jobs the CronJob
//! controls (so a Job made by `kubectl create job --from=cronjob/...` counts too, where
//! upstream only tracks the Jobs it made itself), and the missed slot is recomputed from
//! `lastScheduleTime` each time. The controller requeues itself at the next schedule time.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::tz::TimeZone;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::replicaset::controller_ref;
use crate::schedule::{self, Schedule};
use crate::runtime::{Error, Ctx};

/// The annotation upstream puts on each scheduled Job: its scheduled time (RFC 3339).
pub const SCHEDULED_ANNOTATION: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";

/// More missed slots than this are not worth listing one by one (upstream's threshold).
const TOO_MANY_MISSED: usize = 100;

/// Run the controller until aborted.
pub async fn run(client: kube::Client) {
    let ctx = Arc::new(Ctx { client: client.clone() });
    Controller::new(Api::<CronJob>::all(client.clone()), watcher::Config::default())
        .owns(Api::<Job>::all(client), watcher::Config::default())
        .run(reconcile, crate::runtime::error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

/// The schedule slot that is due now, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// The most recent schedule time not yet started (at or before now).
    pub scheduled: Option<Timestamp>,
    /// How many slots were missed (including `scheduled`), capped just above the warning
    /// threshold.
    pub missed: usize,
    /// The next schedule time after now.
    pub next: Option<Timestamp>,
}

/// Work out which slot is due: slots after `last` (or after creation) and, with a starting
/// deadline, no older than `now - deadline`.
pub fn due(sched: &Schedule, tz: &TimeZone, last: Option<Timestamp>, created: Timestamp, deadline: Option<i64>, now: Timestamp) -> Due {
    let mut earliest = last.unwrap_or(created);
    if let Some(d) = deadline {
        let floor = Timestamp::from_second(now.as_second() - d).unwrap_or(now);
        if floor > earliest {
            earliest = floor;
        }
    }
    let next = sched.next_after(now, tz);
    let mut scheduled = None;
    let mut missed = 0;
    let mut t = earliest;
    while let Some(n) = sched.next_after(t, tz).filter(|n| *n <= now) {
        scheduled = Some(n);
        missed += 1;
        t = n;
        if missed > TOO_MANY_MISSED {
            // Find the latest slot without walking through all of them: look back over
            // growing windows until one holds a slot, then walk that window.
            let mut window = 60i64;
            loop {
                let from = Timestamp::from_second(now.as_second() - window).unwrap_or(earliest).max(t);
                if sched.next_after(from, tz).is_some_and(|n| n <= now) || from <= t {
                    let mut u = from;
                    while let Some(n) = sched.next_after(u, tz).filter(|n| *n <= now) {
                        scheduled = Some(n);
                        u = n;
                    }
                    break;
                }
                window *= 2;
            }
            break;
        }
    }
    Due { scheduled, missed, next }
}

/// Finished: a Complete or Failed condition is True. Returns whether it succeeded.
fn finished(job: &Job) -> Option<bool> {
    job.status.as_ref()?.conditions.as_ref()?.iter().find_map(|c| {
        (c.status == "True" && (c.type_ == "Complete" || c.type_ == "Failed")).then_some(c.type_ == "Complete")
    })
}

fn started_at(job: &Job) -> Timestamp {
    job.status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .or(job.metadata.creation_timestamp.as_ref())
        .map(|t| t.0)
        .unwrap_or(Timestamp::UNIX_EPOCH)
}

/// Jobs to delete so that at most `limit` of `jobs` (all finished alike) remain: the oldest.
pub fn beyond_limit<'a>(jobs: &[&'a Job], limit: i32) -> Vec<&'a Job> {
    let mut sorted: Vec<&Job> = jobs.to_vec();
    sorted.sort_by_key(|j| started_at(j));
    let extra = sorted.len().saturating_sub(limit.max(0) as usize);
    sorted.into_iter().take(extra).collect()
}

/// The Job name for a slot: `<cronjob>-<unix minutes>`, as upstream names them.
pub fn job_name(cronjob: &str, scheduled: Timestamp) -> String {
    format!("{cronjob}-{}", scheduled.as_second() / 60)
}

fn format_in(t: Timestamp, tz: &TimeZone) -> String {
    if *tz == TimeZone::UTC {
        return t.to_string();
    }
    t.to_zoned(tz.clone()).strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
}

fn job_for(cj: &CronJob, scheduled: Timestamp, tz: &TimeZone) -> Job {
    let template = cj.spec.as_ref().map(|s| s.job_template.clone()).unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    let mut annotations = meta.annotations.unwrap_or_default();
    annotations.insert(SCHEDULED_ANNOTATION.into(), format_in(scheduled, tz));
    Job {
        metadata: ObjectMeta {
            name: Some(job_name(&cj.name_any(), scheduled)),
            namespace: cj.namespace(),
            labels: meta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![controller_ref(cj)]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    }
}

fn object_ref(j: &Job) -> serde_json::Value {
    json!({"apiVersion": "batch/v1", "kind": "Job", "name": j.name_any(), "namespace": j.namespace(), "uid": j.uid(), "resourceVersion": j.resource_version()})
}

async fn reconcile(cj: Arc<CronJob>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if cj.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = cj.namespace().unwrap_or_default();
    let name = cj.name_any();
    let uid = cj.uid().unwrap_or_default();
    let spec = cj.spec.clone().unwrap_or_default();
    let jobs_api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let mut jobs: Vec<Job> = jobs_api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|j| j.owner_references().iter().any(|o| o.controller == Some(true) && o.uid == uid))
        .collect();
    let now = Timestamp::now();
    let status = cj.status.clone().unwrap_or_default();
    let last_schedule = status.last_schedule_time.as_ref().map(|t| t.0);
    let mut last_success = status.last_successful_time.as_ref().map(|t| t.0);
    for j in &jobs {
        if finished(j) == Some(true) {
            if let Some(done) = j.status.as_ref().and_then(|s| s.completion_time.as_ref()).map(|t| t.0) {
                last_success = Some(last_success.map_or(done, |l| l.max(done)));
            }
        }
    }

    // History limits: the oldest finished Jobs go first.
    let succeeded: Vec<&Job> = jobs.iter().filter(|j| finished(j) == Some(true)).collect();
    let failed: Vec<&Job> = jobs.iter().filter(|j| finished(j) == Some(false)).collect();
    let mut pruned: Vec<String> = Vec::new();
    for j in beyond_limit(&succeeded, spec.successful_jobs_history_limit.unwrap_or(3))
        .into_iter()
        .chain(beyond_limit(&failed, spec.failed_jobs_history_limit.unwrap_or(1)))
    {
        tracing::info!(cronjob = %name, job = %j.name_any(), "deleting finished job beyond the history limit");
        match jobs_api.delete(&j.name_any(), &DeleteParams::background()).await {
            Ok(_) => pruned.push(j.name_any()),
            Err(kube::Error::Api(e)) if e.code == 404 => pruned.push(j.name_any()),
            Err(e) => tracing::warn!(cronjob = %name, error = %e, "deleting old job failed"),
        }
    }
    jobs.retain(|j| !pruned.contains(&j.name_any()));

    let mut new_last_schedule = last_schedule;
    let mut requeue: Option<Duration> = None;
    let suspended = spec.suspend.unwrap_or(false);
    let parsed = spec.schedule.parse::<Schedule>();
    let tz = schedule::time_zone(spec.time_zone.as_deref(), schedule::system_zoneinfo);
    match (&parsed, &tz) {
        _ if suspended => {}
        (Err(e), _) => tracing::warn!(cronjob = %name, error = %e, "unparseable schedule"),
        (_, Err(e)) => tracing::warn!(cronjob = %name, error = %e, "unusable time zone"),
        (Ok(sched), Ok(tz)) => {
            let created = cj.metadata.creation_timestamp.as_ref().map(|t| t.0).unwrap_or(now);
            let d = due(sched, tz, last_schedule, created, spec.starting_deadline_seconds, now);
            if d.missed > TOO_MANY_MISSED {
                tracing::warn!(cronjob = %name, "too many missed start times (> {TOO_MANY_MISSED}); only the most recent is started; check the clock or set startingDeadlineSeconds");
            }
            requeue = d.next.map(|n| Duration::from_millis(((n.as_millisecond() - now.as_millisecond()).max(0) + 100) as u64));
            if let Some(at) = d.scheduled {
                let active: Vec<&Job> = jobs.iter().filter(|j| finished(j).is_none() && j.metadata.deletion_timestamp.is_none()).collect();
                let policy = spec.concurrency_policy.as_deref().unwrap_or("Allow");
                let exists = jobs.iter().any(|j| j.name_any() == job_name(&name, at));
                if exists {
                    new_last_schedule = Some(at);
                } else if policy == "Forbid" && !active.is_empty() {
                    // The slot stays due: the active Job finishing re-runs this reconcile,
                    // which starts it if still within the starting deadline.
                    tracing::debug!(cronjob = %name, "not starting a job: the previous one still runs and the policy is Forbid");
                } else {
                    if policy == "Replace" {
                        for j in &active {
                            tracing::info!(cronjob = %name, job = %j.name_any(), "replacing active job");
                            let _ = jobs_api.delete(&j.name_any(), &DeleteParams::background()).await;
                        }
                        let gone: Vec<String> = active.iter().map(|j| j.name_any()).collect();
                        jobs.retain(|j| !gone.contains(&j.name_any()));
                    }
                    match jobs_api.create(&PostParams::default(), &job_for(&cj, at, tz)).await {
                        Ok(j) => {
                            tracing::info!(cronjob = %name, job = %j.name_any(), "created job");
                            jobs.push(j);
                            new_last_schedule = Some(at);
                        }
                        Err(kube::Error::Api(e)) if e.code == 409 => new_last_schedule = Some(at),
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
    }

    let active: Vec<serde_json::Value> =
        jobs.iter().filter(|j| finished(j).is_none() && j.metadata.deletion_timestamp.is_none()).map(object_ref).collect();
    let patch = json!({"status": {
        "active": if active.is_empty() { serde_json::Value::Null } else { json!(active) },
        "lastScheduleTime": new_last_schedule.map(|t| t.to_string()),
        "lastSuccessfulTime": last_success.map(|t| t.to_string()),
    }});
    let current = json!({"status": {
        "active": status.active.as_ref().filter(|a| !a.is_empty()).map(|a| a.iter().map(|r| json!({"apiVersion": r.api_version, "kind": r.kind, "name": r.name, "namespace": r.namespace, "uid": r.uid, "resourceVersion": r.resource_version})).collect::<Vec<_>>()),
        "lastScheduleTime": last_schedule.map(|t| t.to_string()),
        "lastSuccessfulTime": status.last_successful_time.as_ref().map(|t| t.0.to_string()),
    }});
    if patch != current {
        Api::<CronJob>::namespaced(ctx.client.clone(), &ns).patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    }
    Ok(requeue.map(Action::requeue).unwrap_or_else(Action::await_change))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn every(s: &str) -> Schedule {
        s.parse().unwrap()
    }

    #[test]
    fn nothing_due_before_the_first_slot() {
        let d = due(&every("*/5 * * * *"), &TimeZone::UTC, None, ts("2024-01-01T10:01:00Z"), None, ts("2024-01-01T10:04:59Z"));
        assert_eq!(d, Due { scheduled: None, missed: 0, next: Some(ts("2024-01-01T10:05:00Z")) });
    }

    #[test]
    fn the_latest_missed_slot_is_due() {
        let d = due(&every("*/5 * * * *"), &TimeZone::UTC, Some(ts("2024-01-01T10:00:00Z")), ts("2024-01-01T09:00:00Z"), None, ts("2024-01-01T10:17:00Z"));
        assert_eq!(d.scheduled, Some(ts("2024-01-01T10:15:00Z")));
        assert_eq!(d.missed, 3);
        assert_eq!(d.next, Some(ts("2024-01-01T10:20:00Z")));
        // Already started: nothing due.
        let d = due(&every("*/5 * * * *"), &TimeZone::UTC, Some(ts("2024-01-01T10:15:00Z")), ts("2024-01-01T09:00:00Z"), None, ts("2024-01-01T10:17:00Z"));
        assert_eq!(d.scheduled, None);
    }

    #[test]
    fn starting_deadline_skips_old_slots() {
        let d = due(&every("0 * * * *"), &TimeZone::UTC, None, ts("2024-01-01T09:30:00Z"), Some(600), ts("2024-01-01T10:20:00Z"));
        assert_eq!(d.scheduled, None);
        let d = due(&every("0 * * * *"), &TimeZone::UTC, None, ts("2024-01-01T09:30:00Z"), Some(1800), ts("2024-01-01T10:20:00Z"));
        assert_eq!(d.scheduled, Some(ts("2024-01-01T10:00:00Z")));
    }

    #[test]
    fn too_many_missed_still_finds_the_latest() {
        let d = due(&every("* * * * *"), &TimeZone::UTC, Some(ts("2024-01-01T00:00:00Z")), ts("2023-01-01T00:00:00Z"), None, ts("2024-03-01T12:34:56Z"));
        assert!(d.missed > TOO_MANY_MISSED);
        assert_eq!(d.scheduled, Some(ts("2024-03-01T12:34:00Z")));
        let d = due(&every("0 0 1 * *"), &TimeZone::UTC, Some(ts("2000-01-01T00:00:00Z")), ts("2000-01-01T00:00:00Z"), None, ts("2024-03-15T00:00:00Z"));
        assert_eq!(d.scheduled, Some(ts("2024-03-01T00:00:00Z")));
    }

    #[test]
    fn names_and_history() {
        assert_eq!(job_name("hello", ts("2024-01-01T00:00:00Z")), "hello-28401120");
        let job = |name: &str, start: &str| {
            let mut j = Job::default();
            j.metadata.name = Some(name.into());
            j.status = Some(k8s_openapi::api::batch::v1::JobStatus { start_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(ts(start))), ..Default::default() });
            j
        };
        let (a, b, c) = (job("a", "2024-01-01T00:03:00Z"), job("b", "2024-01-01T00:01:00Z"), job("c", "2024-01-01T00:02:00Z"));
        let gone: Vec<String> = beyond_limit(&[&a, &b, &c], 1).iter().map(|j| j.name_any()).collect();
        assert_eq!(gone, ["b", "c"]);
        assert!(beyond_limit(&[&a], 3).is_empty());
        assert_eq!(beyond_limit(&[&a, &b], 0).len(), 2);
    }
}
