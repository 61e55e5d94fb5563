//! Update-only rules: which fields may change once an object exists.

use serde_json::{Map, Value};

use super::{get_arr, get_obj, str_or_empty, FieldError};
use crate::quantity;

/// Kind-specific immutability checks (metadata is handled by the caller).
pub(crate) fn validate_kind_update(
    group: &str,
    kind: &str,
    old: &Value,
    new: &Value,
) -> Vec<FieldError> {
    match (group, kind) {
        ("", "Pod") => pod_update(old, new),
        ("apps", "Deployment" | "ReplicaSet" | "DaemonSet") => selector_immutable(old, new),
        ("apps", "StatefulSet") => stateful_set_update(old, new),
        ("batch", "Job") => job_update(old, new),
        ("", "Service") => service_update(old, new),
        ("", "ConfigMap") => immutable_data(old, new, &["data", "binaryData"]),
        ("", "Secret") => {
            let mut errs = immutable_data(old, new, &["data"]);
            let (ot, nt) = (str_or_empty(old, "type"), str_or_empty(new, "type"));
            if ot != nt {
                errs.push(FieldError::invalid("type", nt, "field is immutable"));
            }
            errs
        }
        ("", "PersistentVolumeClaim") => pvc_update(old, new),
        ("", "PersistentVolume") => pv_update(old, new),
        ("", "Node") => node_update(old, new),
        ("storage.k8s.io", "StorageClass") => storage_class_update(old, new),
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            if old.get("roleRef") != new.get("roleRef") {
                vec![FieldError::invalid(
                    "roleRef",
                    new.get("roleRef").unwrap_or(&Value::Null),
                    "cannot change roleRef",
                )]
            } else {
                Vec::new()
            }
        }
        _ => Vec::new(),
    }
}

fn at<'a>(v: &'a Value, pointer: &str) -> &'a Value {
    v.pointer(pointer).unwrap_or(&Value::Null)
}

/// `ValidateImmutableField`: absent and null are the same.
fn immutable(old: &Value, new: &Value, pointer: &str, path: &str) -> Vec<FieldError> {
    let (o, n) = (at(old, pointer), at(new, pointer));
    if o != n {
        vec![FieldError::invalid(path, n, "field is immutable")]
    } else {
        Vec::new()
    }
}

/// `spec.selector` may not change (apps/v1 and batch/v1).
fn selector_immutable(old: &Value, new: &Value) -> Vec<FieldError> {
    let (o, n) = (at(old, "/spec/selector"), at(new, "/spec/selector"));
    if o != n {
        vec![FieldError::invalid(
            "spec.selector",
            super::render_label_selector(n),
            "field is immutable",
        )]
    } else {
        Vec::new()
    }
}

/// A spec as a map we can overwrite fields in.
fn spec_map(v: &Value) -> Map<String, Value> {
    v.get("spec")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

/// Copies `k` from `from` into `to` (removing it when absent) so it drops out of a comparison.
fn take_field(to: &mut Map<String, Value>, from: &Map<String, Value>, k: &str) {
    match from.get(k) {
        Some(v) => {
            to.insert(k.to_string(), v.clone());
        }
        None => {
            to.remove(k);
        }
    }
}

/// A short rendering of which spec fields differ, appended to "may not change" messages in
/// place of upstream's Go struct diff.
fn spec_diff(old: &Map<String, Value>, new: &Map<String, Value>) -> String {
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut out = String::new();
    for k in keys {
        let (o, n) = (old.get(k), new.get(k));
        if o != n {
            let show = |v: Option<&Value>| v.map(Value::to_string).unwrap_or_else(|| "null".into());
            out.push_str(&format!("\n- {k}: {}\n+ {k}: {}", show(o), show(n)));
        }
    }
    out
}

const POD_UPDATE_MSG: &str = "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

fn pod_update(old: &Value, new: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let os = spec_map(old);
    let ns = spec_map(new);
    match (
        os.get("activeDeadlineSeconds").and_then(Value::as_i64),
        ns.get("activeDeadlineSeconds").and_then(Value::as_i64),
    ) {
        (_, Some(n)) if !(0..=i32::MAX as i64).contains(&n) => errs.push(FieldError::invalid(
            "spec.activeDeadlineSeconds",
            n,
            super::names::inclusive_range_error(0, i32::MAX as i64),
        )),
        (Some(o), Some(n)) if o < n => errs.push(FieldError::invalid(
            "spec.activeDeadlineSeconds",
            n,
            "must be less than or equal to previous value",
        )),
        (Some(_), None) => errs.push(FieldError::invalid(
            "spec.activeDeadlineSeconds",
            &Value::Null,
            "must not update from a positive integer to nil value",
        )),
        _ => {}
    }
    let old_tol = os
        .get("tolerations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let new_tol = ns
        .get("tolerations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let without_seconds = |t: &Value| {
        let mut t = t.clone();
        if let Some(m) = t.as_object_mut() {
            m.remove("tolerationSeconds");
        }
        t
    };
    let all_kept = old_tol.iter().all(|o| {
        new_tol
            .iter()
            .any(|n| without_seconds(o) == without_seconds(n))
    });
    if !all_kept {
        errs.push(FieldError::forbidden(
            "spec.tolerations",
            "existing toleration can not be modified except its tolerationSeconds",
        ));
    }

    let mut munged = ns.clone();
    for list in ["containers", "initContainers"] {
        let (Some(o), Some(Value::Array(n))) =
            (os.get(list).and_then(Value::as_array), munged.get_mut(list))
        else {
            continue;
        };
        if o.len() != n.len() {
            continue;
        }
        for (nc, oc) in n.iter_mut().zip(o) {
            if let (Some(nm), Some(img)) = (nc.as_object_mut(), oc.get("image")) {
                nm.insert("image".into(), img.clone());
            }
        }
    }
    for k in [
        "activeDeadlineSeconds",
        "tolerations",
        "ephemeralContainers",
    ] {
        take_field(&mut munged, &os, k);
    }
    let (ogp, ngp) = (
        os.get("terminationGracePeriodSeconds"),
        ns.get("terminationGracePeriodSeconds"),
    );
    if ogp.and_then(Value::as_i64).is_some_and(|g| g < 0) && ngp.and_then(Value::as_i64) == Some(1)
    {
        take_field(&mut munged, &os, "terminationGracePeriodSeconds");
    }
    // Scheduling gates may only be removed.
    let old_gates = os
        .get("schedulingGates")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let new_gates = ns
        .get("schedulingGates")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if new_gates.iter().all(|g| old_gates.contains(g)) {
        take_field(&mut munged, &os, "schedulingGates");
    }
    if munged != os {
        errs.push(FieldError::forbidden(
            "spec",
            format!("{POD_UPDATE_MSG}{}", spec_diff(&os, &munged)),
        ));
    }
    errs
}

fn stateful_set_update(old: &Value, new: &Value) -> Vec<FieldError> {
    let os = spec_map(old);
    let mut ns = spec_map(new);
    for k in [
        "replicas",
        "template",
        "updateStrategy",
        "minReadySeconds",
        "ordinals",
        "revisionHistoryLimit",
        "persistentVolumeClaimRetentionPolicy",
    ] {
        take_field(&mut ns, &os, k);
    }
    if ns != os {
        return vec![FieldError::forbidden(
            "spec",
            "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
        )];
    }
    Vec::new()
}

fn job_update(old: &Value, new: &Value) -> Vec<FieldError> {
    let mut errs = selector_immutable(old, new);
    errs.extend(immutable(
        old,
        new,
        "/spec/completionMode",
        "spec.completionMode",
    ));
    errs.extend(immutable(
        old,
        new,
        "/spec/podFailurePolicy",
        "spec.podFailurePolicy",
    ));
    errs.extend(immutable(
        old,
        new,
        "/spec/backoffLimitPerIndex",
        "spec.backoffLimitPerIndex",
    ));
    // Indexed jobs may scale completions together with parallelism (elastic indexed jobs).
    let elastic = at(new, "/spec/completionMode").as_str() == Some("Indexed")
        && at(new, "/spec/completions") == at(new, "/spec/parallelism")
        && at(old, "/spec/completions") == at(old, "/spec/parallelism");
    if !elastic {
        errs.extend(immutable(old, new, "/spec/completions", "spec.completions"));
    }
    let mut old_t = at(old, "/spec/template").clone();
    let new_t = at(new, "/spec/template");
    // A suspended job that never started may have its scheduling directives changed.
    let mutable_scheduling =
        at(old, "/spec/suspend").as_bool() == Some(true) && at(old, "/status/startTime").is_null();
    if mutable_scheduling {
        for (section, keys) in [
            ("metadata", &["labels", "annotations"][..]),
            (
                "spec",
                &["nodeSelector", "tolerations", "affinity", "schedulingGates"][..],
            ),
        ] {
            let from = new_t
                .get(section)
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            if let Some(obj) = old_t.as_object_mut() {
                let entry = obj
                    .entry(section)
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Some(to) = entry.as_object_mut() {
                    for k in keys {
                        take_field(to, &from, k);
                    }
                }
            }
        }
    }
    if &old_t != new_t {
        errs.push(FieldError::invalid(
            "spec.template",
            new_t,
            "field is immutable",
        ));
    }
    errs
}

fn primary_ip(v: &Value) -> &str {
    let spec = v.get("spec").unwrap_or(&Value::Null);
    get_arr(spec, "clusterIPs")
        .first()
        .and_then(Value::as_str)
        .unwrap_or_else(|| str_or_empty(spec, "clusterIP"))
}

/// The cluster IP may not change unless the service moves to or from ExternalName. An
/// empty new value means "keep": the API server carries allocated values over first.
fn service_update(old: &Value, new: &Value) -> Vec<FieldError> {
    let ext = |v: &Value| at(v, "/spec/type").as_str() == Some("ExternalName");
    if ext(old) || ext(new) {
        return Vec::new();
    }
    let (o, n) = (primary_ip(old), primary_ip(new));
    if !o.is_empty() && !n.is_empty() && o != n {
        let shown = new
            .pointer("/spec/clusterIPs")
            .cloned()
            .unwrap_or_else(|| Value::from(vec![n]));
        return vec![FieldError::invalid(
            "spec.clusterIPs[0]",
            &shown,
            "may not change once set",
        )];
    }
    Vec::new()
}

/// ConfigMaps and Secrets marked `immutable: true` keep their data and the flag.
fn immutable_data(old: &Value, new: &Value, bags: &[&str]) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if old.get("immutable").and_then(Value::as_bool) != Some(true) {
        return errs;
    }
    const MSG: &str = "field is immutable when `immutable` is set";
    if new.get("immutable").and_then(Value::as_bool) != Some(true) {
        errs.push(FieldError::forbidden("immutable", MSG));
    }
    for bag in bags {
        let empty = Map::new();
        if get_obj(old, bag).unwrap_or(&empty) != get_obj(new, bag).unwrap_or(&empty) {
            errs.push(FieldError::forbidden(*bag, MSG));
        }
    }
    errs
}

fn storage_request(v: &Value) -> Option<crate::quantity::Quantity> {
    v.pointer("/spec/resources/requests/storage")
        .and_then(|q| quantity::from_json(q).ok())
}

fn pvc_update(old: &Value, new: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut os = spec_map(old);
    let mut ns = spec_map(new);
    // The binder sets volumeName once.
    if os
        .get("volumeName")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .is_empty()
    {
        take_field(&mut os, &ns, "volumeName");
    }
    take_field(&mut ns, &os, "volumeAttributesClassName");
    let bound = at(new, "/status/phase").as_str() == Some("Bound");
    if bound {
        let old_storage = os
            .get("resources")
            .and_then(|r| r.pointer("/requests/storage"))
            .cloned();
        if let (Some(storage), Some(req)) = (
            old_storage,
            ns.get_mut("resources")
                .and_then(|r| r.get_mut("requests"))
                .and_then(Value::as_object_mut),
        ) {
            req.insert("storage".into(), storage);
        }
    }
    if os != ns {
        errs.push(FieldError::forbidden(
            "spec",
            format!(
                "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims{}",
                spec_diff(&os, &ns)
            ),
        ));
    }
    if let (Some(o), Some(n)) = (storage_request(old), storage_request(new)) {
        if n < o {
            let capacity = old
                .pointer("/status/capacity/storage")
                .and_then(|q| quantity::from_json(q).ok());
            if capacity.is_none_or(|c| n <= c) {
                errs.push(FieldError::forbidden(
                    "spec.resources.requests.storage",
                    "field can not be less than status.capacity",
                ));
            }
        }
    }
    errs
}

/// The volume source of a PersistentVolume is fixed; node affinity may only be added.
fn pv_update(old: &Value, new: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let source = |v: &Value| -> Map<String, Value> {
        let spec = spec_map(v);
        super::kinds::PV_SOURCES
            .iter()
            .filter_map(|k| spec.get(*k).map(|s| (k.to_string(), s.clone())))
            .collect()
    };
    let (os, ns) = (source(old), source(new));
    if os != ns {
        errs.push(FieldError::forbidden(
            "spec.persistentvolumesource",
            format!(
                "spec.persistentvolumesource is immutable after creation{}",
                spec_diff(&os, &ns)
            ),
        ));
    }
    errs.extend(immutable(old, new, "/spec/volumeMode", "volumeMode"));
    if !at(old, "/spec/nodeAffinity").is_null() {
        errs.extend(immutable(old, new, "/spec/nodeAffinity", "nodeAffinity"));
    }
    errs
}

fn node_update(old: &Value, new: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let old_cidrs = get_arr(at(old, "/spec"), "podCIDRs");
    if !old_cidrs.is_empty() && old_cidrs != get_arr(at(new, "/spec"), "podCIDRs") {
        errs.push(FieldError::forbidden(
            "spec.podCIDRs",
            "node updates may not change podCIDR except from \"\" to valid",
        ));
    }
    let old_pid = str_or_empty(at(old, "/spec"), "providerID");
    if !old_pid.is_empty() && old_pid != str_or_empty(at(new, "/spec"), "providerID") {
        errs.push(FieldError::forbidden(
            "spec.providerID",
            "node updates may not change providerID except from \"\" to valid",
        ));
    }
    errs
}

fn storage_class_update(old: &Value, new: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let empty = Map::new();
    if get_obj(old, "parameters").unwrap_or(&empty) != get_obj(new, "parameters").unwrap_or(&empty)
    {
        errs.push(FieldError::forbidden(
            "parameters",
            "updates to parameters are forbidden.",
        ));
    }
    if str_or_empty(old, "provisioner") != str_or_empty(new, "provisioner") {
        errs.push(FieldError::forbidden(
            "provisioner",
            "updates to provisioner are forbidden.",
        ));
    }
    // reclaimPolicy defaults to Delete.
    let rp = |v: &Value| {
        v.get("reclaimPolicy")
            .and_then(Value::as_str)
            .unwrap_or("Delete")
            .to_string()
    };
    if rp(old) != rp(new) {
        errs.push(FieldError::forbidden(
            "reclaimPolicy",
            "updates to reclaimPolicy are forbidden.",
        ));
    }
    errs.extend(immutable(
        old,
        new,
        "/volumeBindingMode",
        "volumeBindingMode",
    ));
    errs
}

#[cfg(test)]
mod tests {
    use super::super::validate_update;
    use serde_json::{json, Value};

    fn strs(group: &str, kind: &str, old: &Value, new: &Value) -> Vec<String> {
        validate_update(group, kind, old, new)
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    fn pod(spec: Value) -> Value {
        json!({"metadata": {"name": "p", "namespace": "default", "uid": "u1"}, "spec": spec})
    }

    #[test]
    fn pod_updates() {
        let old = pod(
            json!({"containers": [{"name": "c", "image": "a"}], "tolerations": [{"key": "k", "operator": "Exists"}]}),
        );
        let new = pod(
            json!({"containers": [{"name": "c", "image": "b"}], "activeDeadlineSeconds": 5,
            "tolerations": [{"key": "k", "operator": "Exists"}, {"key": "j", "operator": "Exists"}]}),
        );
        assert_eq!(strs("", "Pod", &old, &new), Vec::<String>::new());
        let new = pod(
            json!({"containers": [{"name": "c", "image": "a"}], "nodeName": "n1", "tolerations": [{"key": "k", "operator": "Exists"}]}),
        );
        let e = strs("", "Pod", &old, &new);
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`"));
        assert!(e[0].contains("+ nodeName: \"n1\""));
        let new = pod(json!({"containers": [{"name": "c", "image": "a"}]}));
        assert_eq!(
            strs("", "Pod", &old, &new),
            ["spec.tolerations: Forbidden: existing toleration can not be modified except its tolerationSeconds"]
        );
        let mut renamed = new.clone();
        renamed["metadata"]["name"] = json!("q");
        assert!(strs("", "Pod", &new, &renamed)
            .contains(&"metadata.name: Invalid value: \"q\": field is immutable".to_string()));
    }

    #[test]
    fn workload_updates() {
        let d = |app: &str| {
            json!({"metadata": {"name": "d", "namespace": "n"}, "spec": {
            "selector": {"matchLabels": {"app": app}},
            "template": {"metadata": {"labels": {"app": app}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}}})
        };
        assert!(strs("apps", "Deployment", &d("a"), &d("a")).is_empty());
        let e = strs("apps", "Deployment", &d("a"), &d("b"));
        assert_eq!(e, ["spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"b\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"]);
        let mut sts_new = d("a");
        sts_new["spec"]["serviceName"] = json!("svc");
        sts_new["spec"]["replicas"] = json!(3);
        let e = strs("apps", "StatefulSet", &d("a"), &sts_new);
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with(
            "spec: Forbidden: updates to statefulset spec for fields other than 'replicas'"
        ));
        let job = |image: &str, suspend: bool| {
            json!({"metadata": {"name": "j", "namespace": "n"}, "spec": {"suspend": suspend,
            "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": image}]}}}})
        };
        let e = strs("batch", "Job", &job("a", false), &job("b", false));
        assert_eq!(e.len(), 1);
        assert!(
            e[0].starts_with("spec.template: Invalid value:")
                && e[0].ends_with("field is immutable")
        );
    }

    #[test]
    fn service_config_pvc_storage_updates() {
        let s = |ip: &str| json!({"metadata": {"name": "s", "namespace": "n"}, "spec": {"clusterIP": ip, "ports": [{"port": 80}]}});
        assert_eq!(
            strs("", "Service", &s("10.43.0.5"), &s("10.43.0.6")),
            ["spec.clusterIPs[0]: Invalid value: []string{\"10.43.0.6\"}: may not change once set"]
        );
        assert!(strs("", "Service", &s("10.43.0.5"), &s("")).is_empty());
        let cm = |v: &str, imm: bool| json!({"metadata": {"name": "c", "namespace": "n"}, "immutable": imm, "data": {"k": v}});
        assert!(strs("", "ConfigMap", &cm("a", false), &cm("b", false)).is_empty());
        assert_eq!(
            strs("", "ConfigMap", &cm("a", true), &cm("b", false)),
            [
                "immutable: Forbidden: field is immutable when `immutable` is set",
                "data: Forbidden: field is immutable when `immutable` is set"
            ]
        );
        let pvc = |size: &str, phase: &str, class: &str| {
            json!({"metadata": {"name": "p", "namespace": "n"},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": class, "resources": {"requests": {"storage": size}}},
            "status": {"phase": phase, "capacity": {"storage": "1Gi"}}})
        };
        assert!(strs(
            "",
            "PersistentVolumeClaim",
            &pvc("1Gi", "Bound", "a"),
            &pvc("2Gi", "Bound", "a")
        )
        .is_empty());
        let e = strs(
            "",
            "PersistentVolumeClaim",
            &pvc("1Gi", "Bound", "a"),
            &pvc("1Gi", "Bound", "b"),
        );
        assert!(e[0].starts_with(
            "spec: Forbidden: spec is immutable after creation except resources.requests"
        ));
        let e = strs(
            "",
            "PersistentVolumeClaim",
            &pvc("2Gi", "Bound", "a"),
            &pvc("1Gi", "Bound", "a"),
        );
        assert_eq!(e, ["spec.resources.requests.storage: Forbidden: field can not be less than status.capacity"]);
        let sc = |p: &str| json!({"metadata": {"name": "s"}, "provisioner": "x.io/p", "parameters": {"type": p}});
        assert_eq!(
            strs("storage.k8s.io", "StorageClass", &sc("a"), &sc("b")),
            ["parameters: Forbidden: updates to parameters are forbidden."]
        );
        let sec = |t: &str| json!({"metadata": {"name": "s", "namespace": "n"}, "type": t});
        assert_eq!(
            strs("", "Secret", &sec("Opaque"), &sec("x/y")),
            ["type: Invalid value: \"x/y\": field is immutable"]
        );
    }
}
