//! ResourceQuota admission: a write that would take a namespace's usage past a quota's hard
//! limits is refused with 403 and upstream's message (`exceeded quota: NAME, requested: ...,
//! used: ..., limited: ...`); one that is admitted is charged to the quotas' `status.used`
//! before it is stored, each quota written with a compare-and-swap on its resourceVersion so
//! concurrent creates cannot both take the last unit. What an object costs comes from
//! `skiff_api::quota`, which the resource quota controller also uses to recompute usage.
//!
//! Creates of any namespaced kind are charged (object counts); updates only where usage can
//! change (services, claims), and only for increases: releases are the controller's.
//! A charge whose write then fails is refunded ([`Charges::refund`]); anything missed is
//! corrected by the controller's next recompute.

use serde_json::{json, Value};
use skiff_api::quota::{self, ResourceList};
use skiff_api::status::ApiError;
use skiff_api::{meta, ResourceInfo};

use super::limit_ranger::forbidden;
use crate::Server;

/// How often a charge is retried when another writer changed a quota in between.
const ATTEMPTS: usize = 16;

/// What one admitted write charged, so a failed store write can give it back.
#[derive(Debug, Default)]
#[must_use]
pub struct Charges {
    ns: String,
    charged: Vec<(String, ResourceList)>,
}

impl Charges {
    /// Give the charged usage back (the write it was for did not happen).
    pub async fn refund(self, srv: &Server) {
        for (name, delta) in &self.charged {
            release(srv, &self.ns, name, delta).await;
        }
    }
}

/// Kinds whose usage can change on a spec update: services (type, ports) and claims
/// (expansion). Pod resources change only through `resize`, which is not charged (as
/// upstream, pod updates are not quota-checked, so a label patch on a pod created before
/// a quota is never refused).
fn charges_on_update(info: &ResourceInfo) -> bool {
    info.group.is_empty() && matches!(info.plural.as_str(), "services" | "persistentvolumeclaims")
}

/// The usage increase of writing `obj` over `old` (None for a create): positive parts only.
fn delta(info: &ResourceInfo, obj: &Value, old: Option<&Value>) -> ResourceList {
    let now = chrono::Utc::now();
    let new = quota::usage(&info.group, &info.plural, obj, now);
    let d = match old {
        None => new,
        Some(o) => {
            let prev = quota::usage(&info.group, &info.plural, o, now);
            new.into_iter()
                .filter_map(|(k, q)| {
                    let diff = q.sub(&prev.get(&k).cloned().unwrap_or_default());
                    (!diff.is_negative()).then_some((k, diff))
                })
                .collect()
        }
    };
    quota::remove_zeros(d)
}

/// A quota's hard limits: its spec (status.hard is the controller's copy of it, possibly
/// behind).
fn hard(quota_obj: &Value) -> ResourceList {
    quota::parse_list(quota_obj.pointer("/spec/hard"))
}

/// The outcome of checking one quota.
#[derive(Debug, PartialEq)]
pub(crate) enum Verdict {
    /// Nothing of this quota is affected.
    Untouched,
    /// Admitted; the quota's new `status.used`.
    Charge { requested: ResourceList, used: ResourceList },
    /// Refused with this reason.
    Refuse(String),
}

/// Check one quota given its current `used`: upstream's constraint and limit checks.
pub(crate) fn check_one(name: &str, hard: &ResourceList, used: &ResourceList, info: &ResourceInfo, obj: &Value, delta: &ResourceList) -> Verdict {
    if info.group.is_empty() && info.plural == "pods" {
        if let Err(e) = quota::pod_constraints(hard, obj) {
            return Verdict::Refuse(format!("failed quota: {name}: {e}"));
        }
    }
    let requested = quota::mask(delta, hard.keys());
    if requested.is_empty() {
        return Verdict::Untouched;
    }
    let new_used = quota::add(used, &requested);
    let exceeded: Vec<String> = requested.keys().filter(|k| new_used.get(*k).is_some_and(|u| hard.get(*k).is_some_and(|h| u > h))).cloned().collect();
    if !exceeded.is_empty() {
        // Usage not yet recorded prints as 0, as upstream's would once synced.
        let shown_used: ResourceList = exceeded.iter().map(|k| (k.clone(), used.get(k).cloned().unwrap_or_default())).collect();
        return Verdict::Refuse(format!(
            "exceeded quota: {name}, requested: {}, used: {}, limited: {}",
            quota::pretty(&quota::mask(&requested, &exceeded)),
            quota::pretty(&shown_used),
            quota::pretty(&quota::mask(hard, &exceeded)),
        ));
    }
    Verdict::Charge { requested, used: new_used }
}

fn quotas_info(srv: &Server) -> ResourceInfo {
    srv.resources.find("", "v1", "resourcequotas").expect("resourcequotas are built in").info
}

/// Admit a create (`old` None) or an update of `obj`: refuse it, or charge it to every quota
/// it touches. Under `dry_run` the checks run and nothing is charged.
pub async fn admit(srv: &Server, info: &ResourceInfo, obj: &Value, old: Option<&Value>, dry_run: bool) -> Result<Charges, ApiError> {
    let mut charges = Charges { ns: meta::namespace(obj).unwrap_or("default").to_string(), charged: Vec::new() };
    if !info.namespaced() || (old.is_some() && !charges_on_update(info)) {
        return Ok(charges);
    }
    let delta = delta(info, obj, old);
    let is_pod = info.group.is_empty() && info.plural == "pods";
    if delta.is_empty() && !is_pod {
        return Ok(charges);
    }
    let ns = charges.ns.clone();
    if !srv.policy_presence.may_have(super::presence::Policy::Quota, &ns) {
        return Ok(charges);
    }
    let qinfo = quotas_info(srv);
    'attempt: for _ in 0..ATTEMPTS {
        let mut quotas = srv.objects.list(&qinfo, Some(&ns), 0, None, None, &|_| true).await?.items;
        if quotas.is_empty() {
            return Ok(charges);
        }
        quotas.sort_by(|a, b| meta::name(a).cmp(meta::name(b)));
        let mut writes: Vec<(Value, ResourceList)> = Vec::new();
        for q in quotas {
            if !quota::quota_matches(&q, &info.group, &info.plural, obj) {
                continue;
            }
            let hard = hard(&q);
            let mut used = quota::parse_list(q.pointer("/status/used"));
            // Resources the controller has not counted yet are counted now, so a quota is
            // enforced from the moment it exists.
            let missing: Vec<String> = hard.keys().filter(|k| delta.contains_key(*k) && !used.contains_key(*k)).cloned().collect();
            if !missing.is_empty() {
                used.extend(count_now(srv, &ns, &q, &missing).await?);
            }
            match check_one(meta::name(&q), &hard, &used, info, obj, &delta) {
                Verdict::Untouched => {}
                Verdict::Refuse(reason) => return Err(forbidden(info, meta::name(obj), &reason)),
                Verdict::Charge { requested, used } => {
                    let mut updated = q.clone();
                    if !updated.get("status").is_some_and(Value::is_object) {
                        updated["status"] = json!({});
                    }
                    if updated.pointer("/status/hard").is_none() {
                        updated["status"]["hard"] = quota::to_json(&hard);
                    }
                    updated["status"]["used"] = quota::to_json(&used);
                    writes.push((updated, requested));
                }
            }
        }
        if dry_run {
            return Ok(charges);
        }
        for (updated, requested) in writes {
            let name = meta::name(&updated).to_string();
            let rv: i64 = meta::resource_version(&updated).parse().unwrap_or(0);
            match srv.objects.update(&qinfo, updated, rv).await {
                Ok(_) => charges.charged.push((name, requested)),
                Err(e) if e.code == 409 => {
                    // Someone charged (or recomputed) this quota meanwhile: undo this
                    // attempt's charges and check again against fresh usage.
                    std::mem::take(&mut charges).refund(srv).await;
                    charges.ns = ns.clone();
                    continue 'attempt;
                }
                Err(e) => {
                    std::mem::take(&mut charges).refund(srv).await;
                    return Err(e);
                }
            }
        }
        return Ok(charges);
    }
    Err(ApiError::conflict(&qinfo.group, &qinfo.plural, "", "too many concurrent quota updates; please try again"))
}

/// Give `delta` back to quota `name` (clamped at zero), retrying on conflicts.
async fn release(srv: &Server, ns: &str, name: &str, delta: &ResourceList) {
    let qinfo = quotas_info(srv);
    for _ in 0..ATTEMPTS {
        let Ok(Some(mut q)) = srv.objects.try_get(&qinfo, Some(ns), name).await else { return };
        let used = quota::parse_list(q.pointer("/status/used"));
        if !q.get("status").is_some_and(Value::is_object) {
            return;
        }
        q["status"]["used"] = quota::to_json(&quota::sub_non_negative(&used, &quota::mask(delta, used.keys())));
        let rv: i64 = meta::resource_version(&q).parse().unwrap_or(0);
        match srv.objects.update(&qinfo, q, rv).await {
            Err(e) if e.code == 409 => continue,
            _ => return,
        }
    }
}

/// The namespace's current usage of `keys` as `quota_obj` scopes it, from the stored
/// objects (what the controller computes, for resources it has not recorded yet).
pub async fn count_now(srv: &Server, ns: &str, quota_obj: &Value, keys: &[String]) -> Result<ResourceList, ApiError> {
    let mut used: ResourceList = keys.iter().map(|k| (k.clone(), Default::default())).collect();
    let mut kinds: Vec<(String, String)> = keys.iter().filter_map(|k| quota::resource_for_key(k)).collect();
    kinds.sort();
    kinds.dedup();
    let now = chrono::Utc::now();
    for (group, plural) in kinds {
        let Some(served) = srv.resources.find_preferred(&group, &plural) else { continue };
        if !served.info.namespaced() {
            continue;
        }
        let page = srv.objects.list(&served.info, Some(ns), 0, None, None, &|_| true).await?;
        for o in page.items.iter().filter(|o| quota::quota_matches(quota_obj, &group, &plural, o)) {
            used = quota::add(&used, &quota::mask(&quota::usage(&group, &plural, o, now), keys));
        }
    }
    Ok(used)
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_api::quantity::Quantity;

    fn list(pairs: &[(&str, &str)]) -> ResourceList {
        pairs.iter().map(|(k, v)| (k.to_string(), Quantity::parse(v).unwrap())).collect()
    }

    fn pods() -> ResourceInfo {
        skiff_api::registry::builtin_resources().into_iter().find(|r| r.plural == "pods" && r.group.is_empty()).unwrap()
    }

    fn pod(cpu: &str) -> Value {
        json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}, "limits": {"cpu": cpu}}}]}})
    }

    #[test]
    fn charges_within_hard_and_refuses_past_it() {
        let hard = list(&[("pods", "2"), ("requests.cpu", "1")]);
        let p = pod("500m");
        let d = delta(&pods(), &p, None);
        let v = check_one("q", &hard, &list(&[("pods", "0"), ("requests.cpu", "0")]), &pods(), &p, &d);
        assert_eq!(v, Verdict::Charge { requested: list(&[("pods", "1"), ("requests.cpu", "500m")]), used: list(&[("pods", "1"), ("requests.cpu", "500m")]) });
        let v = check_one("q", &hard, &list(&[("pods", "1"), ("requests.cpu", "800m")]), &pods(), &p, &d);
        assert_eq!(v, Verdict::Refuse("exceeded quota: q, requested: requests.cpu=500m, used: requests.cpu=800m, limited: requests.cpu=1".into()));
        let v = check_one("q", &hard, &list(&[("pods", "2"), ("requests.cpu", "800m")]), &pods(), &p, &d);
        assert_eq!(
            v,
            Verdict::Refuse("exceeded quota: q, requested: pods=1,requests.cpu=500m, used: pods=2,requests.cpu=800m, limited: pods=2,requests.cpu=1".into())
        );
    }

    #[test]
    fn quota_on_limits_needs_every_container_to_set_them() {
        let hard = list(&[("limits.cpu", "2")]);
        let p = json!({"spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}]}});
        let v = check_one("q", &hard, &ResourceList::new(), &pods(), &p, &delta(&pods(), &p, None));
        assert_eq!(v, Verdict::Refuse("failed quota: q: must specify limits.cpu for: c".into()));
    }

    #[test]
    fn updates_charge_only_increases() {
        let svcs = skiff_api::registry::builtin_resources().into_iter().find(|r| r.plural == "services" && r.group.is_empty()).unwrap();
        let old = json!({"spec": {"type": "ClusterIP", "ports": [{"port": 80}]}});
        let new = json!({"spec": {"type": "NodePort", "ports": [{"port": 80}]}});
        assert_eq!(quota::pretty(&delta(&svcs, &new, Some(&old))), "services.nodeports=1");
        assert!(delta(&svcs, &old, Some(&new)).is_empty());
        let hard = list(&[("services.nodeports", "0")]);
        let v = check_one("np", &hard, &list(&[("services.nodeports", "0")]), &svcs, &new, &delta(&svcs, &new, Some(&old)));
        assert_eq!(v, Verdict::Refuse("exceeded quota: np, requested: services.nodeports=1, used: services.nodeports=0, limited: services.nodeports=0".into()));
    }
}
