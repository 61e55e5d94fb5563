//! Conversion between API versions that share storage, as upstream does through its
//! internal types: core/v1 Events and events.k8s.io/v1 Events are one resource, and
//! autoscaling/v1 and autoscaling/v2 HorizontalPodAutoscalers are one resource. Objects are
//! stored in whichever version wrote them and converted on the way out (and before selectors
//! are evaluated).

use serde_json::{json, Map, Value};

use crate::resources::Served;

/// Convert `obj` (in any served version of its resource) to the version `served` names.
pub fn to_served(served: &Served, obj: Value) -> Value {
    let want = served.info.api_version();
    let have = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("").to_string();
    if have.is_empty() || have == want {
        return obj;
    }
    match (served.info.kind.as_str(), have.as_str(), want.as_str()) {
        ("Event", "events.k8s.io/v1", "v1") => event_to_core(obj),
        ("Event", "v1", "events.k8s.io/v1") => event_to_events_v1(obj),
        ("HorizontalPodAutoscaler", "autoscaling/v2", "autoscaling/v1") => hpa_v2_to_v1(obj),
        ("HorizontalPodAutoscaler", "autoscaling/v1", "autoscaling/v2") => hpa_v1_to_v2(obj),
        _ => obj,
    }
}

/// True for resources served in several versions from one storage (conversion needed).
pub fn shares_storage(served: &Served) -> bool {
    matches!((served.info.group.as_str(), served.info.kind.as_str()), ("" | "events.k8s.io", "Event") | ("autoscaling", "HorizontalPodAutoscaler"))
}

fn take(m: &mut Map<String, Value>, from: &str) -> Option<Value> {
    m.remove(from)
}

fn event_to_core(mut obj: Value) -> Value {
    let Some(m) = obj.as_object_mut() else { return obj };
    m.insert("apiVersion".into(), json!("v1"));
    if let Some(v) = take(m, "regarding") {
        m.insert("involvedObject".into(), v);
    }
    if let Some(v) = take(m, "note") {
        m.insert("message".into(), v);
    }
    let controller = take(m, "reportingController");
    let instance = m.get("reportingInstance").cloned();
    if let Some(c) = &controller {
        m.insert("reportingComponent".into(), c.clone());
    }
    let mut source = take(m, "deprecatedSource").unwrap_or(json!({}));
    if source.get("component").is_none() {
        if let Some(c) = controller {
            source["component"] = c;
        }
    }
    if source.get("host").is_none() {
        if let Some(h) = instance {
            source["host"] = h;
        }
    }
    m.insert("source".into(), source);
    if let Some(v) = take(m, "deprecatedFirstTimestamp") {
        m.insert("firstTimestamp".into(), v);
    }
    if let Some(v) = take(m, "deprecatedLastTimestamp") {
        m.insert("lastTimestamp".into(), v);
    }
    if let Some(v) = take(m, "deprecatedCount") {
        m.insert("count".into(), v);
    }
    if !m.contains_key("involvedObject") {
        m.insert("involvedObject".into(), json!({}));
    }
    obj
}

fn event_to_events_v1(mut obj: Value) -> Value {
    let Some(m) = obj.as_object_mut() else { return obj };
    m.insert("apiVersion".into(), json!("events.k8s.io/v1"));
    if let Some(v) = take(m, "involvedObject") {
        m.insert("regarding".into(), v);
    }
    if let Some(v) = take(m, "message") {
        m.insert("note".into(), v);
    }
    let component = take(m, "reportingComponent").filter(|v| v.as_str().is_some_and(|s| !s.is_empty()));
    let source = take(m, "source");
    let controller = component.or_else(|| source.as_ref().and_then(|s| s.get("component").cloned()));
    if let Some(c) = controller {
        m.insert("reportingController".into(), c);
    }
    if !m.contains_key("reportingInstance") {
        if let Some(h) = source.as_ref().and_then(|s| s.get("host").cloned()) {
            m.insert("reportingInstance".into(), h);
        }
    }
    if let Some(s) = source {
        m.insert("deprecatedSource".into(), s);
    }
    if let Some(v) = take(m, "firstTimestamp") {
        m.insert("deprecatedFirstTimestamp".into(), v);
    }
    if let Some(v) = take(m, "lastTimestamp") {
        m.insert("deprecatedLastTimestamp".into(), v);
    }
    if let Some(v) = take(m, "count") {
        m.insert("deprecatedCount".into(), v);
    }
    obj
}

fn hpa_v2_to_v1(mut obj: Value) -> Value {
    let cpu_target = obj.pointer("/spec/metrics").and_then(Value::as_array).and_then(|ms| {
        ms.iter().find_map(|m| {
            (m["type"] == "Resource" && m.pointer("/resource/name") == Some(&json!("cpu")))
                .then(|| m.pointer("/resource/target/averageUtilization").cloned())
                .flatten()
        })
    });
    let cpu_current = obj.pointer("/status/currentMetrics").and_then(Value::as_array).and_then(|ms| {
        ms.iter().find_map(|m| {
            (m["type"] == "Resource" && m.pointer("/resource/name") == Some(&json!("cpu")))
                .then(|| m.pointer("/resource/current/averageUtilization").cloned())
                .flatten()
        })
    });
    obj["apiVersion"] = json!("autoscaling/v1");
    if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
        spec.remove("metrics");
        spec.remove("behavior");
        if let Some(t) = cpu_target {
            spec.insert("targetCPUUtilizationPercentage".into(), t);
        }
    }
    if let Some(status) = obj.get_mut("status").and_then(Value::as_object_mut) {
        status.remove("currentMetrics");
        status.remove("conditions");
        if let Some(c) = cpu_current {
            status.insert("currentCPUUtilizationPercentage".into(), c);
        }
    }
    obj
}

fn hpa_v1_to_v2(mut obj: Value) -> Value {
    obj["apiVersion"] = json!("autoscaling/v2");
    if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
        if let Some(t) = spec.remove("targetCPUUtilizationPercentage") {
            spec.insert(
                "metrics".into(),
                json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": t}}}]),
            );
        }
    }
    if let Some(status) = obj.get_mut("status").and_then(Value::as_object_mut) {
        if let Some(c) = status.remove("currentCPUUtilizationPercentage") {
            status.insert(
                "currentMetrics".into(),
                json!([{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": c}}}]),
            );
        }
    }
    obj
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_between_versions() {
        let core = json!({"apiVersion": "v1", "kind": "Event", "involvedObject": {"kind": "Pod", "name": "p"}, "message": "hi", "reason": "Started", "source": {"component": "kubelet", "host": "n1"}, "count": 2});
        let v1 = event_to_events_v1(core.clone());
        assert_eq!(v1["regarding"]["name"], "p");
        assert_eq!(v1["note"], "hi");
        assert_eq!(v1["reportingController"], "kubelet");
        assert_eq!(v1["deprecatedCount"], 2);
        let back = event_to_core(v1);
        assert_eq!(back["involvedObject"], core["involvedObject"]);
        assert_eq!(back["message"], "hi");
        assert_eq!(back["source"]["component"], "kubelet");
        assert_eq!(back["count"], 2);
    }

    #[test]
    fn hpa_cpu_target_survives_both_ways() {
        let v1 = json!({"apiVersion": "autoscaling/v1", "spec": {"targetCPUUtilizationPercentage": 50, "minReplicas": 1, "maxReplicas": 5}});
        let v2 = hpa_v1_to_v2(v1);
        assert_eq!(v2["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"], 50);
        let again = hpa_v2_to_v1(v2);
        assert_eq!(again["spec"]["targetCPUUtilizationPercentage"], 50);
        assert!(again["spec"].get("metrics").is_none());
    }
}
