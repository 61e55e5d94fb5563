//! LimitRanger admission: the LimitRanges of a namespace default the requests and limits of
//! new pods' containers (`defaultRequest` -> requests, `default` -> limits, recorded in the
//! `kubernetes.io/limit-ranger` annotation), then bound them: `min`, `max` and
//! `maxLimitRequestRatio` per Container and per Pod, and `min`/`max` storage per
//! PersistentVolumeClaim. Violations are 403 Forbidden with upstream's wording.
//!
//! As upstream, pods are handled on create only (their resources cannot change afterwards);
//! claims on create and update (expansion).

use serde_json::{json, Map, Value};
use skiff_api::quantity::Quantity;
use skiff_api::quota::{parse_list, ResourceList};
use skiff_api::status::ApiError;
use skiff_api::{meta, ResourceInfo};

use crate::Server;

const ANNOTATION: &str = "kubernetes.io/limit-ranger";

/// Whether LimitRanger looks at this kind.
fn handles(info: &ResourceInfo) -> bool {
    info.group.is_empty() && matches!(info.kind.as_str(), "Pod" | "PersistentVolumeClaim")
}

/// The namespace's LimitRanges, oldest name first.
async fn load(srv: &Server, ns: &str) -> Result<Vec<Value>, ApiError> {
    if !srv.policy_presence.may_have(super::presence::Policy::LimitRange, ns) {
        return Ok(Vec::new());
    }
    let Some(lr) = srv.resources.find("", "v1", "limitranges") else { return Ok(Vec::new()) };
    Ok(srv.objects.list(&lr.info, Some(ns), 0, None, None, &|_| true).await?.items)
}

/// Upstream's admission Forbidden: `<resource> "<name>" is forbidden: <reason>`, with the
/// details clients read.
pub(super) fn forbidden(info: &ResourceInfo, name: &str, reason: &str) -> ApiError {
    let mut e = ApiError::forbidden(format!("{} \"{name}\" is forbidden: {reason}", info.group_resource()));
    e.group = Some(info.group.clone());
    e.kind = Some(info.plural.clone());
    e.name = Some(name.to_string());
    e
}

/// Mutating step, for pods on create: fill unset container requests and limits from the
/// namespace's Container defaults. Runs after API defaulting and before validation, so a
/// default limit below an explicit request is refused by validation as upstream.
pub async fn default_pod(srv: &Server, pod: &mut Value) -> Result<(), ApiError> {
    let ns = meta::namespace(pod).unwrap_or("default").to_string();
    let ranges = load(srv, &ns).await?;
    for lr in &ranges {
        apply_defaults(lr, pod);
    }
    Ok(())
}

/// Validating step: pods on create, claims on create and update (no subresources).
pub async fn check(srv: &Server, info: &ResourceInfo, obj: &Value, updating: bool) -> Result<(), ApiError> {
    if !handles(info) || (updating && info.kind == "Pod") {
        return Ok(());
    }
    let ns = meta::namespace(obj).unwrap_or("default").to_string();
    let ranges = load(srv, &ns).await?;
    let errs: Vec<String> = ranges
        .iter()
        .flat_map(|lr| if info.kind == "Pod" { pod_violations(lr, obj) } else { claim_violations(lr, obj) })
        .collect();
    match aggregate(errs) {
        None => Ok(()),
        Some(reason) => Err(forbidden(info, meta::name(obj), &reason)),
    }
}

/// Upstream's error aggregate: one message as is, several as `[a, b]` (duplicates dropped).
fn aggregate(mut errs: Vec<String>) -> Option<String> {
    let mut seen = std::collections::HashSet::new();
    errs.retain(|e| seen.insert(e.clone()));
    match errs.len() {
        0 => None,
        1 => errs.pop(),
        _ => Some(format!("[{}]", errs.join(", "))),
    }
}

fn items<'a>(lr: &'a Value, ty: &'a str) -> impl Iterator<Item = &'a Value> {
    lr.pointer("/spec/limits").and_then(Value::as_array).into_iter().flatten().filter(move |i| i.get("type").and_then(Value::as_str) == Some(ty))
}

/// Fill one LimitRange's Container defaults into every container; annotate what was set.
fn apply_defaults(lr: &Value, pod: &mut Value) {
    let mut default_requests = ResourceList::new();
    let mut default_limits = ResourceList::new();
    for item in items(lr, "Container") {
        default_requests.extend(parse_list(item.get("defaultRequest")));
        default_limits.extend(parse_list(item.get("default")));
    }
    if default_requests.is_empty() && default_limits.is_empty() {
        return;
    }
    let mut notes: Vec<String> = Vec::new();
    for (list, label) in [("containers", "container"), ("initContainers", "init container")] {
        let Some(Value::Array(cs)) = pod.pointer_mut(&format!("/spec/{list}")) else { continue };
        for c in cs.iter_mut().filter_map(Value::as_object_mut) {
            let name = c.get("name").and_then(Value::as_str).unwrap_or("").to_string();
            let resources = child(c, "resources");
            let set_limits = fill(child(resources, "limits"), &default_limits);
            let set_requests = fill(child(resources, "requests"), &default_requests);
            // Upstream omits empty lists.
            resources.retain(|_, v| v.as_object().is_none_or(|m| !m.is_empty()));
            if !set_requests.is_empty() {
                notes.push(format!("{} request for {label} {name}", set_requests.join(", ")));
            }
            if !set_limits.is_empty() {
                notes.push(format!("{} limit for {label} {name}", set_limits.join(", ")));
            }
        }
    }
    if !notes.is_empty() {
        let annotations = child(meta::metadata_mut(pod), "annotations");
        annotations.insert(ANNOTATION.into(), json!(format!("LimitRanger plugin set: {}", notes.join("; "))));
    }
}

fn child<'a>(m: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let v = m.entry(key.to_string()).or_insert_with(|| json!({}));
    if !v.is_object() {
        *v = json!({});
    }
    v.as_object_mut().expect("object")
}

/// Set the entries of `defaults` missing from `target`; the names set, sorted.
fn fill(target: &mut Map<String, Value>, defaults: &ResourceList) -> Vec<String> {
    let mut set = Vec::new();
    for (k, q) in defaults {
        if !target.contains_key(k) {
            target.insert(k.clone(), json!(q.to_string()));
            set.push(k.clone());
        }
    }
    set
}

fn container_section(c: &Value, section: &str) -> ResourceList {
    parse_list(c.pointer(&format!("/resources/{section}")))
}

/// What one LimitRange refuses about a pod: Container bounds per container (init containers
/// included), Pod bounds on the pod's effective requests and limits.
fn pod_violations(lr: &Value, pod: &Value) -> Vec<String> {
    let spec = pod.get("spec").unwrap_or(&Value::Null);
    let mut errs = Vec::new();
    for item in items(lr, "Container") {
        for list in ["containers", "initContainers"] {
            for c in spec.get(list).and_then(Value::as_array).into_iter().flatten() {
                bounds(item, "Container", &container_section(c, "requests"), &container_section(c, "limits"), &mut errs);
            }
        }
    }
    for item in items(lr, "Pod") {
        let requests = skiff_api::quota::pod_resources(spec, "requests");
        let limits = skiff_api::quota::pod_resources(spec, "limits");
        bounds(item, "Pod", &requests, &limits, &mut errs);
    }
    errs
}

/// A claim's `spec.resources.requests` against PersistentVolumeClaim min and max (limits
/// are not user input for claims).
fn claim_violations(lr: &Value, pvc: &Value) -> Vec<String> {
    let requests = parse_list(pvc.pointer("/spec/resources/requests"));
    let mut errs = Vec::new();
    for item in items(lr, "PersistentVolumeClaim") {
        for (k, min) in parse_list(item.get("min")) {
            errs.extend(min_constraint("PersistentVolumeClaim", &k, &min, &requests, &ResourceList::new()));
        }
        for (k, max) in parse_list(item.get("max")) {
            errs.extend(max_request_constraint("PersistentVolumeClaim", &k, &max, &requests));
        }
    }
    errs
}

fn bounds(item: &Value, ty: &str, requests: &ResourceList, limits: &ResourceList, errs: &mut Vec<String>) {
    for (k, min) in parse_list(item.get("min")) {
        errs.extend(min_constraint(ty, &k, &min, requests, limits));
    }
    for (k, max) in parse_list(item.get("max")) {
        errs.extend(max_constraint(ty, &k, &max, requests, limits));
    }
    for (k, ratio) in parse_list(item.get("maxLimitRequestRatio")) {
        errs.extend(ratio_constraint(ty, &k, &ratio, requests, limits));
    }
}

fn min_constraint(ty: &str, r: &str, min: &Quantity, requests: &ResourceList, limits: &ResourceList) -> Option<String> {
    let Some(req) = requests.get(r) else {
        return Some(format!("minimum {r} usage per {ty} is {min}.  No request is specified"));
    };
    if req < min {
        return Some(format!("minimum {r} usage per {ty} is {min}, but request is {req}"));
    }
    match limits.get(r) {
        Some(lim) if lim < min => Some(format!("minimum {r} usage per {ty} is {min}, but limit is {lim}")),
        _ => None,
    }
}

fn max_constraint(ty: &str, r: &str, max: &Quantity, requests: &ResourceList, limits: &ResourceList) -> Option<String> {
    let Some(lim) = limits.get(r) else {
        return Some(format!("maximum {r} usage per {ty} is {max}.  No limit is specified"));
    };
    if lim > max {
        return Some(format!("maximum {r} usage per {ty} is {max}, but limit is {lim}"));
    }
    match requests.get(r) {
        Some(req) if req > max => Some(format!("maximum {r} usage per {ty} is {max}, but request is {req}")),
        _ => None,
    }
}

fn max_request_constraint(ty: &str, r: &str, max: &Quantity, requests: &ResourceList) -> Option<String> {
    match requests.get(r) {
        None => Some(format!("maximum {r} usage per {ty} is {max}.  No request is specified")),
        Some(req) if req > max => Some(format!("maximum {r} usage per {ty} is {max}, but request is {req}")),
        Some(_) => None,
    }
}

fn ratio_constraint(ty: &str, r: &str, ratio: &Quantity, requests: &ResourceList, limits: &ResourceList) -> Option<String> {
    let req = requests.get(r).filter(|q| !q.is_zero());
    let lim = limits.get(r).filter(|q| !q.is_zero());
    let Some(req) = req else {
        return Some(format!("{r} max limit to request ratio per {ty} is {ratio}, but no request is specified or request is 0"));
    };
    let Some(lim) = lim else {
        return Some(format!("{r} max limit to request ratio per {ty} is {ratio}, but no limit is specified or limit is 0"));
    };
    let observed = lim.as_f64() / req.as_f64();
    // Compared exactly (limit <= ratio * request) so 3/1.5 against 2 is not lost to rounding.
    let allowed = ratio.as_f64() * req.as_f64();
    if lim.as_f64() > allowed * (1.0 + 1e-12) {
        return Some(format!("{r} max limit to request ratio per {ty} is {ratio}, but provided ratio is {observed:.6}"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lr(limits: Value) -> Value {
        json!({"spec": {"limits": limits}})
    }

    #[test]
    fn defaults_fill_only_what_is_unset_and_annotate() {
        let range = lr(json!([{"type": "Container", "default": {"cpu": "500m", "memory": "128Mi"}, "defaultRequest": {"cpu": "0.1", "memory": "64Mi"}}]));
        let mut pod = json!({"metadata": {}, "spec": {
            "containers": [{"name": "web", "resources": {"limits": {"memory": "256Mi"}, "requests": {"memory": "256Mi"}}}],
            "initContainers": [{"name": "init"}]
        }});
        apply_defaults(&range, &mut pod);
        let web = &pod["spec"]["containers"][0]["resources"];
        assert_eq!(web["limits"], json!({"cpu": "500m", "memory": "256Mi"}));
        assert_eq!(web["requests"], json!({"cpu": "100m", "memory": "256Mi"}));
        assert_eq!(pod["spec"]["initContainers"][0]["resources"]["requests"], json!({"cpu": "100m", "memory": "64Mi"}));
        assert_eq!(
            pod["metadata"]["annotations"][ANNOTATION],
            "LimitRanger plugin set: cpu request for container web; cpu limit for container web; cpu, memory request for init container init; cpu, memory limit for init container init"
        );
    }

    #[test]
    fn container_bounds_use_upstream_wording() {
        let range = lr(json!([{"type": "Container", "max": {"cpu": "500m"}, "min": {"memory": "16Mi"}, "maxLimitRequestRatio": {"cpu": "2"}}]));
        let pod = |req: Value, lim: Value| json!({"spec": {"containers": [{"name": "a", "resources": {"requests": req, "limits": lim}}]}});
        let errs = pod_violations(&range, &pod(json!({"cpu": "200m", "memory": "32Mi"}), json!({"cpu": "1"})));
        assert_eq!(errs, vec!["maximum cpu usage per Container is 500m, but limit is 1", "cpu max limit to request ratio per Container is 2, but provided ratio is 5.000000"]);
        let errs = pod_violations(&range, &pod(json!({"cpu": "250m", "memory": "8Mi"}), json!({"cpu": "500m"})));
        assert_eq!(errs, vec!["minimum memory usage per Container is 16Mi, but request is 8Mi"]);
        let errs = pod_violations(&range, &pod(json!({"memory": "16Mi"}), json!({})));
        assert_eq!(
            errs,
            vec!["maximum cpu usage per Container is 500m.  No limit is specified", "cpu max limit to request ratio per Container is 2, but no request is specified or request is 0"]
        );
        assert!(pod_violations(&range, &pod(json!({"cpu": "250m", "memory": "16Mi"}), json!({"cpu": "500m"}))).is_empty());
        assert_eq!(aggregate(vec!["a".into(), "b".into(), "a".into()]).unwrap(), "[a, b]");
        assert_eq!(aggregate(vec!["a".into()]).unwrap(), "a");
    }

    #[test]
    fn pod_bounds_sum_containers() {
        let range = lr(json!([{"type": "Pod", "max": {"memory": "1Gi"}}]));
        let pod = json!({"spec": {"containers": [
            {"name": "a", "resources": {"requests": {"memory": "512Mi"}, "limits": {"memory": "768Mi"}}},
            {"name": "b", "resources": {"requests": {"memory": "256Mi"}, "limits": {"memory": "512Mi"}}}
        ]}});
        assert_eq!(pod_violations(&range, &pod), vec!["maximum memory usage per Pod is 1Gi, but limit is 1280Mi"]);
    }

    #[test]
    fn claims_are_bounded_by_their_requests() {
        let range = lr(json!([{"type": "PersistentVolumeClaim", "min": {"storage": "1Gi"}, "max": {"storage": "5Gi"}}]));
        let claim = |s: &str| json!({"spec": {"resources": {"requests": {"storage": s}}}});
        assert_eq!(claim_violations(&range, &claim("10Gi")), vec!["maximum storage usage per PersistentVolumeClaim is 5Gi, but request is 10Gi"]);
        assert_eq!(claim_violations(&range, &claim("500Mi")), vec!["minimum storage usage per PersistentVolumeClaim is 1Gi, but request is 500Mi"]);
        assert!(claim_violations(&range, &claim("2Gi")).is_empty());
    }
}
