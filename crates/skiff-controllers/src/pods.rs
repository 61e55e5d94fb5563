//! Pod helpers shared by the workload controllers: activity, readiness, availability, and
//! label selectors as query strings.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::ResourceExt;

/// Counts toward replicas: not terminal and not being deleted.
pub fn is_active(p: &Pod) -> bool {
    let phase = p.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("");
    p.metadata.deletion_timestamp.is_none() && phase != "Succeeded" && phase != "Failed"
}

/// The Ready condition is True.
pub fn is_ready(p: &Pod) -> bool {
    ready_since(p).is_some()
}

fn ready_since(p: &Pod) -> Option<k8s_openapi::jiff::Timestamp> {
    p.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")
        .map(|c| c.last_transition_time.as_ref().map(|t| t.0).unwrap_or_else(k8s_openapi::jiff::Timestamp::now))
}

/// Ready for at least `min_ready_seconds`.
pub fn is_available(p: &Pod, min_ready_seconds: i32) -> bool {
    match ready_since(p) {
        Some(t) => min_ready_seconds <= 0 || k8s_openapi::jiff::Timestamp::now().as_second() - t.as_second() >= min_ready_seconds as i64,
        None => false,
    }
}

/// A LabelSelector as a `labelSelector` query string; None for a selector that matches
/// nothing useful (empty), which controllers must not act on.
pub fn selector_string(sel: &LabelSelector) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    for (k, v) in sel.match_labels.iter().flatten() {
        parts.push(format!("{k}={v}"));
    }
    for e in sel.match_expressions.iter().flatten() {
        let vals = e.values.clone().unwrap_or_default().join(",");
        match e.operator.as_str() {
            "In" => parts.push(format!("{} in ({vals})", e.key)),
            "NotIn" => parts.push(format!("{} notin ({vals})", e.key)),
            "Exists" => parts.push(e.key.clone()),
            "DoesNotExist" => parts.push(format!("!{}", e.key)),
            _ => {}
        }
    }
    (!parts.is_empty()).then(|| parts.join(","))
}

/// Name of a pod for logs.
pub fn name(p: &Pod) -> String {
    p.name_any()
}
