//! Priority admission (upstream's `Priority` plugin) on create:
//! - a Pod's `spec.priorityClassName` is resolved to `spec.priority` and
//!   `spec.preemptionPolicy`; an unknown class is refused (403) and so is a pod that states
//!   a different priority than its class gives; without a class name the `globalDefault`
//!   class applies, else priority 0;
//! - a PriorityClass gets `preemptionPolicy: PreemptLowerPriority` by default, may not be a
//!   second `globalDefault`, may not take the reserved `system-` prefix and may not exceed
//!   the highest user-definable value.

use std::sync::Arc;

use serde_json::{json, Value};
use skiff_api::status::{ApiError, Cause};
use skiff_api::{meta, ResourceInfo};

use crate::Server;

/// Highest value a user-defined class may have (upstream's HighestUserDefinablePriority).
pub const HIGHEST_USER_DEFINABLE_PRIORITY: i64 = 1_000_000_000;

/// The built-in classes every cluster has: (name, value, description).
pub const SYSTEM_CLASSES: [(&str, i64, &str); 2] = [
    ("system-node-critical", 2_000_001_000, "Used for system critical pods that must not be moved from their current node."),
    ("system-cluster-critical", 2_000_000_000, "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary."),
];

const PREEMPT_LOWER: &str = "PreemptLowerPriority";

/// Every PriorityClass, read from the store.
async fn classes(srv: &Server) -> Result<Vec<Arc<Value>>, ApiError> {
    let Some(served) = srv.resources.find("scheduling.k8s.io", "v1", "priorityclasses") else { return Ok(Vec::new()) };
    Ok(srv.objects.list(&served.info, None, 0, None, None, &|_| true).await?.items.into_iter().map(Arc::new).collect())
}

/// Every PriorityClass, from the watch-fed cache when it is following the store.
async fn cached_classes(srv: &Server) -> Result<Vec<Arc<Value>>, ApiError> {
    match srv.priority_classes.snapshot() {
        Some(all) => Ok(all),
        None => classes(srv).await,
    }
}

fn forbidden(resource: &str, name: &str, why: String) -> ApiError {
    let mut e = ApiError::forbidden(format!("{resource} \"{name}\" is forbidden: {why}"));
    e.kind = Some(resource.split('.').next().unwrap_or(resource).to_string());
    e.name = Some(name.to_string());
    e
}

/// Apply Priority admission to a new object (no-op for other kinds).
pub async fn admit(srv: &Server, info: &ResourceInfo, obj: &mut Value) -> Result<(), ApiError> {
    match (info.group.as_str(), info.kind.as_str()) {
        ("", "Pod") => admit_pod(srv, obj).await,
        ("scheduling.k8s.io", "PriorityClass") => admit_class(srv, obj).await,
        _ => Ok(()),
    }
}

async fn admit_pod(srv: &Server, pod: &mut Value) -> Result<(), ApiError> {
    let name = meta::name(pod).to_string();
    let class_name = pod.pointer("/spec/priorityClassName").and_then(Value::as_str).unwrap_or("").to_string();
    let mut all = cached_classes(srv).await?;
    if !class_name.is_empty() && !all.iter().any(|c| meta::name(c) == class_name) {
        // Perhaps created a moment ago and not in the cache yet: the store decides.
        all = classes(srv).await?;
    }
    let class = if class_name.is_empty() {
        all.iter().find(|c| c.get("globalDefault").and_then(Value::as_bool) == Some(true))
    } else {
        match all.iter().find(|c| meta::name(c) == class_name) {
            Some(c) => Some(c),
            None => return Err(forbidden("pods", &name, format!("no PriorityClass with name {class_name} was found"))),
        }
    };
    let priority = class.and_then(|c| c.get("value")).and_then(Value::as_i64).unwrap_or(0);
    let policy = class.and_then(|c| c.get("preemptionPolicy")).and_then(Value::as_str).unwrap_or(PREEMPT_LOWER).to_string();
    if let Some(given) = pod.pointer("/spec/priority").and_then(Value::as_i64) {
        if given != priority {
            return Err(forbidden(
                "pods",
                &name,
                format!("the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {priority} from the given PriorityClass name"),
            ));
        }
    }
    if let Some(given) = pod.pointer("/spec/preemptionPolicy").and_then(Value::as_str) {
        if class.is_some() && given != policy {
            return Err(forbidden(
                "pods",
                &name,
                format!("the string value of PreemptionPolicy ({given}) must not be provided in pod spec; priority admission controller computed {policy} from the given PriorityClass name"),
            ));
        }
    }
    if let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) {
        if let Some(c) = class {
            spec.insert("priorityClassName".into(), json!(meta::name(c)));
        }
        spec.insert("priority".into(), json!(priority));
        spec.entry("preemptionPolicy").or_insert(json!(policy));
    }
    Ok(())
}

async fn admit_class(srv: &Server, pc: &mut Value) -> Result<(), ApiError> {
    let name = meta::name(pc).to_string();
    let value = pc.get("value").and_then(Value::as_i64).unwrap_or(0);
    let invalid = |field: &str, message: String| {
        ApiError::invalid("scheduling.k8s.io", "PriorityClass", &name, vec![Cause { reason: "FieldValueForbidden".into(), message, field: field.into() }])
    };
    if name.starts_with("system-") {
        let known = SYSTEM_CLASSES.iter().any(|(n, v, _)| *n == name && *v == value);
        if !known {
            return Err(invalid(
                "metadata.name",
                format!("Forbidden: priority class names with 'system-' prefix are reserved for system use only. error: {name:?} is not a known system priority class"),
            ));
        }
    } else if value > HIGHEST_USER_DEFINABLE_PRIORITY {
        return Err(invalid("value", format!("Forbidden: maximum allowed value of a user defined priority is {HIGHEST_USER_DEFINABLE_PRIORITY}")));
    }
    if pc.get("globalDefault").and_then(Value::as_bool) == Some(true) {
        if let Some(other) = classes(srv).await?.iter().find(|c| c.get("globalDefault").and_then(Value::as_bool) == Some(true)) {
            return Err(forbidden(
                "priorityclasses.scheduling.k8s.io",
                &name,
                format!("PriorityClass {} is already marked as default. Only one default can exist", meta::name(other)),
            ));
        }
    }
    if let Some(m) = pc.as_object_mut() {
        m.entry("preemptionPolicy").or_insert(json!(PREEMPT_LOWER));
    }
    Ok(())
}
