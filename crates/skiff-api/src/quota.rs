//! Resource quota accounting with no I/O: what one object charges against a ResourceQuota
//! (upstream's `pkg/quota/v1/evaluator/core`), the arithmetic on resource lists, quota scopes,
//! and the per-pod request/limit sums LimitRanger also needs.
//!
//! Both the API server's ResourceQuota admission (charging at create) and the controller
//! manager's resource quota controller (recomputing `status.used`) call these, so the two
//! always agree on what an object costs.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

use crate::quantity::{self, Quantity};

/// A ResourceList: resource name to quantity, ordered by name (upstream prints them sorted).
pub type ResourceList = BTreeMap<String, Quantity>;

/// Suffix of per-StorageClass quota names: `<class>.storageclass.storage.k8s.io/requests.storage`.
pub const STORAGE_CLASS_SUFFIX: &str = ".storageclass.storage.k8s.io/";

/// Quota names a pod must declare for every container when a quota constrains them (a
/// backward-compatibility rule of upstream's pod evaluator).
const POD_VALIDATION_SET: &[&str] = &["requests.cpu", "requests.memory", "limits.cpu", "limits.memory", "cpu", "memory"];

/// Parse a JSON ResourceList, skipping entries that are not quantities (validation refuses
/// those before anything is stored).
pub fn parse_list(v: Option<&Value>) -> ResourceList {
    v.and_then(Value::as_object)
        .map(|m| m.iter().filter_map(|(k, q)| quantity::from_json(q).ok().map(|q| (k.clone(), q))).collect())
        .unwrap_or_default()
}

/// A ResourceList as JSON (canonical quantity strings).
pub fn to_json(list: &ResourceList) -> Value {
    Value::Object(list.iter().map(|(k, q)| (k.clone(), json!(q.to_string()))).collect::<Map<String, Value>>())
}

/// `a + b` per resource.
pub fn add(a: &ResourceList, b: &ResourceList) -> ResourceList {
    let mut out = a.clone();
    for (k, q) in b {
        let sum = out.get(k).map(|v| v.add(q)).unwrap_or_else(|| q.clone());
        out.insert(k.clone(), sum);
    }
    out
}

/// `a - b` per resource, never below zero (releasing more than was charged clamps to 0).
pub fn sub_non_negative(a: &ResourceList, b: &ResourceList) -> ResourceList {
    let mut out = a.clone();
    for (k, q) in b {
        let d = out.get(k).cloned().unwrap_or_default().sub(q);
        out.insert(k.clone(), if d.is_negative() { Quantity::zero() } else { d });
    }
    out
}

/// Only the entries of `list` named in `keys`.
pub fn mask<'a>(list: &ResourceList, keys: impl IntoIterator<Item = &'a String>) -> ResourceList {
    keys.into_iter().filter_map(|k| list.get(k).map(|q| (k.clone(), q.clone()))).collect()
}

/// Drop zero entries.
pub fn remove_zeros(list: ResourceList) -> ResourceList {
    list.into_iter().filter(|(_, q)| !q.is_zero()).collect()
}

/// `k=v,k=v` sorted by name, as upstream's quota messages print resource lists.
pub fn pretty(list: &ResourceList) -> String {
    list.iter().map(|(k, q)| format!("{k}={q}")).collect::<Vec<_>>().join(",")
}

/// The object-count quota name of a resource: `count/<plural>` for the core group,
/// `count/<plural>.<group>` otherwise.
pub fn object_count_name(group: &str, plural: &str) -> String {
    if group.is_empty() {
        format!("count/{plural}")
    } else {
        format!("count/{plural}.{group}")
    }
}

/// Which resource's objects charge quota name `key`, as (group, plural); None for names
/// nothing in the API charges.
pub fn resource_for_key(key: &str) -> Option<(String, String)> {
    let core = |p: &str| Some((String::new(), p.to_string()));
    if let Some(rest) = key.strip_prefix("count/") {
        return match rest.split_once('.') {
            Some((plural, group)) => Some((group.to_string(), plural.to_string())),
            None => core(rest),
        };
    }
    if key.contains(STORAGE_CLASS_SUFFIX) {
        return core("persistentvolumeclaims");
    }
    match key {
        "pods" | "cpu" | "memory" | "ephemeral-storage" => core("pods"),
        "services" | "services.nodeports" | "services.loadbalancers" => core("services"),
        "persistentvolumeclaims" | "requests.storage" => core("persistentvolumeclaims"),
        "configmaps" | "secrets" | "replicationcontrollers" | "resourcequotas" => core(key),
        k if k.starts_with("requests.") || k.starts_with("limits.") || k.starts_with("hugepages-") => core("pods"),
        _ => None,
    }
}

/// What `obj` (of `group`/`plural`) charges. `now` decides whether a pod past its deletion
/// grace still counts.
pub fn usage(group: &str, plural: &str, obj: &Value, now: chrono::DateTime<chrono::Utc>) -> ResourceList {
    let mut out = ResourceList::new();
    out.insert(object_count_name(group, plural), one());
    if !group.is_empty() {
        return out;
    }
    match plural {
        "pods" if pod_counts(obj, now) => out = add(&out, &pod_compute_usage(obj)),
        "services" => out = add(&out, &service_usage(obj)),
        "persistentvolumeclaims" => out = add(&out, &pvc_usage(obj)),
        "configmaps" | "secrets" | "replicationcontrollers" | "resourcequotas" => {
            out.insert(plural.to_string(), one());
        }
        _ => {}
    }
    out
}

fn one() -> Quantity {
    Quantity::from_value(1, quantity::Format::DecimalSI)
}

fn count(n: usize) -> Quantity {
    Quantity::from_value(n as i64, quantity::Format::DecimalSI)
}

/// Whether a pod's compute resources (and the `pods` count) are charged: not in a terminal
/// phase and not past its deletion grace period (upstream's QuotaV1Pod).
pub fn pod_counts(pod: &Value, now: chrono::DateTime<chrono::Utc>) -> bool {
    let phase = pod.pointer("/status/phase").and_then(Value::as_str).unwrap_or("");
    if phase == "Succeeded" || phase == "Failed" {
        return false;
    }
    let deleted = pod.pointer("/metadata/deletionTimestamp").and_then(Value::as_str).and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
    let grace = pod.pointer("/metadata/deletionGracePeriodSeconds").and_then(Value::as_i64);
    match (deleted, grace) {
        (Some(at), Some(g)) => now <= at.with_timezone(&chrono::Utc) + chrono::Duration::seconds(g),
        _ => true,
    }
}

fn container_list<'a>(spec: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    spec.get(key).and_then(Value::as_array).into_iter().flatten()
}

fn container_resources(c: &Value, section: &str) -> ResourceList {
    parse_list(c.pointer(&format!("/resources/{section}")))
}

/// Effective pod requests (`section` = "requests") or limits ("limits"): the sum over
/// containers and restartable (sidecar) init containers, at least the largest regular init
/// container plus the sidecars started before it, plus the pod overhead (for limits, only
/// where a limit is set; upstream's
/// resourcehelper.PodRequests/PodLimits).
pub fn pod_resources(spec: &Value, section: &str) -> ResourceList {
    let mut sum = ResourceList::new();
    for c in container_list(spec, "containers") {
        sum = add(&sum, &container_resources(c, section));
    }
    let mut sidecars = ResourceList::new();
    let mut init_max = ResourceList::new();
    for c in container_list(spec, "initContainers") {
        let r = container_resources(c, section);
        if c.get("restartPolicy").and_then(Value::as_str) == Some("Always") {
            sum = add(&sum, &r);
            sidecars = add(&sidecars, &r);
        } else {
            for (k, q) in add(&sidecars, &r) {
                if init_max.get(&k).is_none_or(|m| &q > m) {
                    init_max.insert(k, q);
                }
            }
        }
    }
    for (k, q) in init_max {
        if sum.get(&k).is_none_or(|s| &q > s) {
            sum.insert(k, q);
        }
    }
    let overhead = parse_list(spec.get("overhead"));
    if section == "limits" {
        // Overhead raises only the limits that are set: no limit stays no limit.
        let keys: Vec<String> = sum.keys().cloned().collect();
        return add(&sum, &mask(&overhead, &keys));
    }
    add(&sum, &overhead)
}

/// Quota names charged by the given requests and limits (upstream's podComputeUsageHelper),
/// with `pods` = 1: `cpu`/`requests.cpu` from requests, `limits.cpu` from limits, the same
/// for memory and ephemeral-storage, and `requests.<name>` for hugepages and extended
/// resources.
pub fn compute_usage(requests: &ResourceList, limits: &ResourceList) -> ResourceList {
    let mut out = ResourceList::new();
    out.insert("pods".into(), one());
    for r in ["cpu", "memory", "ephemeral-storage"] {
        if let Some(q) = requests.get(r) {
            out.insert(r.to_string(), q.clone());
            out.insert(format!("requests.{r}"), q.clone());
        }
        if let Some(q) = limits.get(r) {
            out.insert(format!("limits.{r}"), q.clone());
        }
    }
    for (k, q) in requests {
        if k.starts_with("hugepages-") {
            out.insert(k.clone(), q.clone());
            out.insert(format!("requests.{k}"), q.clone());
        } else if k.contains('/') && !k.contains("kubernetes.io/") && !k.starts_with("requests.") {
            out.insert(format!("requests.{k}"), q.clone());
        }
    }
    out
}

fn pod_compute_usage(pod: &Value) -> ResourceList {
    let spec = pod.get("spec").unwrap_or(&Value::Null);
    compute_usage(&pod_resources(spec, "requests"), &pod_resources(spec, "limits"))
}

fn service_usage(svc: &Value) -> ResourceList {
    let mut out = ResourceList::new();
    out.insert("services".into(), one());
    let ports: Vec<&Value> = svc.pointer("/spec/ports").and_then(Value::as_array).map(|a| a.iter().collect()).unwrap_or_default();
    let (node_ports, lbs) = match svc.pointer("/spec/type").and_then(Value::as_str).unwrap_or("ClusterIP") {
        "NodePort" => (ports.len(), 0),
        // With node port allocation off, only explicitly requested node ports count.
        "LoadBalancer" if svc.pointer("/spec/allocateLoadBalancerNodePorts") == Some(&json!(false)) => {
            (ports.iter().filter(|p| p.get("nodePort").and_then(Value::as_u64).is_some_and(|n| n != 0)).count(), 1)
        }
        "LoadBalancer" => (ports.len(), 1),
        _ => (0, 0),
    };
    out.insert("services.nodeports".into(), count(node_ports));
    out.insert("services.loadbalancers".into(), count(lbs));
    out
}

/// A claim's StorageClass: `spec.storageClassName`, or the beta annotation.
fn pvc_class(pvc: &Value) -> String {
    pvc.pointer("/metadata/annotations/volume.beta.kubernetes.io~1storage-class")
        .or_else(|| pvc.pointer("/spec/storageClassName"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

fn pvc_usage(pvc: &Value) -> ResourceList {
    let mut out = ResourceList::new();
    out.insert("persistentvolumeclaims".into(), one());
    let class = pvc_class(pvc);
    if !class.is_empty() {
        out.insert(format!("{class}{STORAGE_CLASS_SUFFIX}persistentvolumeclaims"), one());
    }
    // A claim being expanded is charged the larger of what it asks and what it has.
    let requested = pvc.pointer("/spec/resources/requests/storage").and_then(|q| quantity::from_json(q).ok());
    let allocated = pvc.pointer("/status/allocatedResources/storage").and_then(|q| quantity::from_json(q).ok());
    let storage = match (requested, allocated) {
        (Some(r), Some(a)) => Some(r.max(a)),
        (r, a) => r.or(a),
    };
    if let Some(s) = storage {
        if !class.is_empty() {
            out.insert(format!("{class}{STORAGE_CLASS_SUFFIX}requests.storage"), s.clone());
        }
        out.insert("requests.storage".into(), s);
    }
    out
}

/// Upstream's pod evaluator Constraints: with a quota on any of cpu/memory (requests or
/// limits), every container must state that resource. `Err` carries upstream's message
/// (`must specify limits.cpu for: a,b; requests.memory for: b`).
pub fn pod_constraints(hard: &ResourceList, pod: &Value) -> Result<(), String> {
    let required: BTreeSet<&str> = hard.keys().map(String::as_str).filter(|k| POD_VALIDATION_SET.contains(k)).collect();
    if required.is_empty() {
        return Ok(());
    }
    let spec = pod.get("spec").unwrap_or(&Value::Null);
    let mut missing: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for c in container_list(spec, "containers").chain(container_list(spec, "initContainers")) {
        let have = compute_usage(&container_resources(c, "requests"), &container_resources(c, "limits"));
        for r in &required {
            if !have.contains_key(*r) {
                let name = c.get("name").and_then(Value::as_str).unwrap_or("").to_string();
                missing.entry(r).or_default().insert(name);
            }
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let parts: Vec<String> = missing.iter().map(|(r, names)| format!("{r} for: {}", names.iter().cloned().collect::<Vec<_>>().join(","))).collect();
    Err(format!("must specify {}", parts.join("; ")))
}

/// A quota's scope constraints: plain `spec.scopes` plus `spec.scopeSelector` expressions,
/// as (scope name, operator, values).
fn scope_terms(quota: &Value) -> Vec<(String, String, Vec<String>)> {
    let mut out: Vec<(String, String, Vec<String>)> = quota
        .pointer("/spec/scopes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|s| (s.to_string(), "Exists".to_string(), Vec::new()))
        .collect();
    for e in quota.pointer("/spec/scopeSelector/matchExpressions").and_then(Value::as_array).into_iter().flatten() {
        let name = e.get("scopeName").and_then(Value::as_str).unwrap_or("").to_string();
        let op = e.get("operator").and_then(Value::as_str).unwrap_or("Exists").to_string();
        let values = e.get("values").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).map(str::to_string).collect();
        out.push((name, op, values));
    }
    out
}

/// Whether `quota` covers `obj` (of `group`/`plural`): a quota without scopes covers every
/// object in its namespace; scopes select pods only (Terminating, NotTerminating,
/// BestEffort, NotBestEffort, PriorityClass, CrossNamespacePodAffinity).
pub fn quota_matches(quota: &Value, group: &str, plural: &str, obj: &Value) -> bool {
    let terms = scope_terms(quota);
    if terms.is_empty() {
        return true;
    }
    if !(group.is_empty() && plural == "pods") {
        return false;
    }
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    terms.iter().all(|(scope, op, values)| match scope.as_str() {
        "Terminating" => spec.get("activeDeadlineSeconds").and_then(Value::as_i64).is_some_and(|s| s >= 0),
        "NotTerminating" => spec.get("activeDeadlineSeconds").and_then(Value::as_i64).is_none_or(|s| s < 0),
        "BestEffort" => crate::defaults::pod_qos(spec) == "BestEffort",
        "NotBestEffort" => crate::defaults::pod_qos(spec) != "BestEffort",
        "PriorityClass" => {
            let class = spec.get("priorityClassName").and_then(Value::as_str).filter(|c| !c.is_empty());
            match op.as_str() {
                "In" => class.is_some_and(|c| values.iter().any(|v| v == c)),
                "NotIn" => class.is_none_or(|c| !values.iter().any(|v| v == c)),
                "Exists" => class.is_some(),
                "DoesNotExist" => class.is_none(),
                _ => false,
            }
        }
        "CrossNamespacePodAffinity" => cross_namespace_affinity(spec),
        _ => false,
    })
}

fn cross_namespace_affinity(spec: &Value) -> bool {
    ["podAffinity", "podAntiAffinity"].iter().any(|kind| {
        let Some(a) = spec.pointer(&format!("/affinity/{kind}")) else { return false };
        let required = a.get("requiredDuringSchedulingIgnoredDuringExecution").and_then(Value::as_array).into_iter().flatten();
        let preferred = a
            .get("preferredDuringSchedulingIgnoredDuringExecution")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|w| w.get("podAffinityTerm"));
        required.chain(preferred).any(|t| {
            t.get("namespaceSelector").is_some_and(|s| !s.is_null()) || t.get("namespaces").and_then(Value::as_array).is_some_and(|n| !n.is_empty())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap()
    }

    fn list(pairs: &[(&str, &str)]) -> ResourceList {
        pairs.iter().map(|(k, v)| (k.to_string(), q(v))).collect()
    }

    fn now() -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now()
    }

    #[test]
    fn arithmetic_keeps_canonical_forms() {
        let a = list(&[("requests.cpu", "500m"), ("requests.memory", "512Mi")]);
        let b = list(&[("requests.cpu", "500m"), ("requests.memory", "512Mi"), ("pods", "1")]);
        let s = add(&a, &b);
        assert_eq!(pretty(&s), "pods=1,requests.cpu=1,requests.memory=1Gi");
        let back = sub_non_negative(&s, &b);
        assert_eq!(pretty(&back), "pods=0,requests.cpu=500m,requests.memory=512Mi");
        let clamped = sub_non_negative(&list(&[("pods", "1")]), &list(&[("pods", "3")]));
        assert_eq!(pretty(&clamped), "pods=0");
        assert_eq!(pretty(&remove_zeros(clamped)), "");
        assert_eq!(pretty(&mask(&s, &["pods".to_string(), "x".to_string()])), "pods=1");
        assert_eq!(to_json(&s)["requests.memory"], "1Gi");
    }

    #[test]
    fn pod_usage_sums_containers_and_init_maximum() {
        let pod = json!({"spec": {
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"cpu": "500m"}}},
                {"name": "b", "resources": {"requests": {"cpu": "250m"}, "limits": {"cpu": 1}}}
            ],
            "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "2"}}}],
            "overhead": {"memory": "1Mi"}
        }});
        let u = usage("", "pods", &pod, now());
        assert_eq!(
            pretty(&u),
            "count/pods=1,cpu=2,limits.cpu=1500m,memory=65Mi,pods=1,requests.cpu=2,requests.memory=65Mi"
        );
    }

    #[test]
    fn terminal_pods_only_count_as_objects() {
        let pod = json!({"spec": {"containers": [{"name": "a", "resources": {"requests": {"cpu": "1"}}}]}, "status": {"phase": "Succeeded"}});
        assert_eq!(pretty(&usage("", "pods", &pod, now())), "count/pods=1");
        let mut gone = pod.clone();
        gone["status"]["phase"] = json!("Running");
        gone["metadata"] = json!({"deletionTimestamp": "2020-01-01T00:00:00Z", "deletionGracePeriodSeconds": 30});
        assert_eq!(pretty(&usage("", "pods", &gone, now())), "count/pods=1");
    }

    #[test]
    fn services_claims_and_generic_objects() {
        let np = json!({"spec": {"type": "NodePort", "ports": [{"port": 80}, {"port": 443}]}});
        assert_eq!(pretty(&usage("", "services", &np, now())), "count/services=1,services=1,services.loadbalancers=0,services.nodeports=2");
        let lb = json!({"spec": {"type": "LoadBalancer", "allocateLoadBalancerNodePorts": false, "ports": [{"port": 80, "nodePort": 30001}, {"port": 81}]}});
        assert_eq!(pretty(&usage("", "services", &lb, now())), "count/services=1,services=1,services.loadbalancers=1,services.nodeports=1");
        let pvc = json!({"spec": {"storageClassName": "fast", "resources": {"requests": {"storage": "1Gi"}}}});
        assert_eq!(
            pretty(&usage("", "persistentvolumeclaims", &pvc, now())),
            "count/persistentvolumeclaims=1,fast.storageclass.storage.k8s.io/persistentvolumeclaims=1,fast.storageclass.storage.k8s.io/requests.storage=1Gi,persistentvolumeclaims=1,requests.storage=1Gi"
        );
        assert_eq!(pretty(&usage("", "configmaps", &json!({}), now())), "configmaps=1,count/configmaps=1");
        assert_eq!(pretty(&usage("apps", "deployments", &json!({}), now())), "count/deployments.apps=1");
        assert_eq!(resource_for_key("count/deployments.apps"), Some(("apps".into(), "deployments".into())));
        assert_eq!(resource_for_key("limits.memory"), Some(("".into(), "pods".into())));
        assert_eq!(resource_for_key("requests.storage"), Some(("".into(), "persistentvolumeclaims".into())));
        assert_eq!(resource_for_key("gold.storageclass.storage.k8s.io/requests.storage"), Some(("".into(), "persistentvolumeclaims".into())));
        assert_eq!(resource_for_key("bogus"), None);
    }

    #[test]
    fn constraints_name_containers_missing_a_quota_resource() {
        let pod = json!({"spec": {"containers": [
            {"name": "a", "resources": {"requests": {"cpu": "1"}}},
            {"name": "b", "resources": {}}
        ]}});
        let hard = list(&[("limits.cpu", "2"), ("requests.cpu", "2"), ("pods", "3")]);
        assert_eq!(pod_constraints(&hard, &pod).unwrap_err(), "must specify limits.cpu for: a,b; requests.cpu for: b");
        assert!(pod_constraints(&list(&[("pods", "1")]), &pod).is_ok());
    }

    #[test]
    fn scopes_select_pods() {
        let be = json!({"spec": {"containers": [{"name": "a"}]}});
        let burst = json!({"spec": {"containers": [{"name": "a", "resources": {"requests": {"cpu": "1"}}}], "activeDeadlineSeconds": 10, "priorityClassName": "high"}});
        let scoped = |scopes: Value| json!({"spec": {"scopes": scopes}});
        assert!(quota_matches(&scoped(json!(["BestEffort"])), "", "pods", &be));
        assert!(!quota_matches(&scoped(json!(["BestEffort"])), "", "pods", &burst));
        assert!(quota_matches(&scoped(json!(["NotBestEffort", "Terminating"])), "", "pods", &burst));
        assert!(quota_matches(&scoped(json!(["NotTerminating"])), "", "pods", &be));
        assert!(!quota_matches(&scoped(json!(["BestEffort"])), "", "services", &json!({})));
        assert!(quota_matches(&json!({"spec": {}}), "", "services", &json!({})));
        let pc = |op: &str, values: Value| json!({"spec": {"scopeSelector": {"matchExpressions": [{"scopeName": "PriorityClass", "operator": op, "values": values}]}}});
        assert!(quota_matches(&pc("In", json!(["high"])), "", "pods", &burst));
        assert!(!quota_matches(&pc("In", json!(["high"])), "", "pods", &be));
        assert!(quota_matches(&pc("NotIn", json!(["high"])), "", "pods", &be));
        assert!(quota_matches(&pc("Exists", json!([])), "", "pods", &burst));
        assert!(quota_matches(&pc("DoesNotExist", json!([])), "", "pods", &be));
    }
}
