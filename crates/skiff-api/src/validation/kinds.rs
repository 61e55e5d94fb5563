//! Validation of the smaller kinds: ConfigMap, Secret, Namespace, Node,
//! PersistentVolumeClaim, HorizontalPodAutoscaler, StorageClass and RBAC bindings.

use serde_json::Value;

use super::meta::{meta_of, optional_subdomain, validate_label_selector};
use super::names::{
    is_config_map_key, is_qualified_name, is_valid_cidr, is_valid_label_value,
    is_valid_path_segment_name,
};
use super::pod::{enum_field, parse_quantity};
use super::{
    child, get_arr, get_i64, get_obj, get_str, index, key, push_msgs, str_or_empty, FieldError,
};

/// Upstream's cap on the data of a ConfigMap or Secret.
pub const MAX_SECRET_SIZE: usize = 1024 * 1024;

/// Decoded length of standard base64 text, without decoding it.
fn base64_decoded_len(s: &str) -> usize {
    let s = s.trim_end_matches('=');
    s.len() * 3 / 4
}

/// core/v1 ConfigMap: key names, no key in both `data` and `binaryData`, 1 MiB in total.
pub(crate) fn validate_config_map(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let data = get_obj(obj, "data");
    let binary = get_obj(obj, "binaryData");
    let mut total = 0;
    for (bag, other, other_name, this_name) in [
        (data, binary, "binaryData", "data"),
        (binary, data, "data", "binaryData"),
    ] {
        let Some(map) = bag else { continue };
        for (k, v) in map {
            let p = key(this_name, k);
            push_msgs(&mut errs, &p, k, is_config_map_key(k));
            if other.is_some_and(|o| o.contains_key(k)) {
                errs.push(FieldError::invalid(
                    &p,
                    k,
                    format!("duplicate of key present in {other_name}"),
                ));
            }
            let s = v.as_str().unwrap_or_default();
            total += if this_name == "data" {
                s.len()
            } else {
                base64_decoded_len(s)
            };
        }
    }
    if total > MAX_SECRET_SIZE {
        // An empty path means the whole object, as upstream reports it.
        errs.push(FieldError::too_long("", MAX_SECRET_SIZE));
    }
    errs
}

/// core/v1 Secret: key names (`stringData` counts as `data`), size, and the keys each
/// well-known type requires.
pub(crate) fn validate_secret(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut keys: Vec<&str> = Vec::new();
    let mut total = 0;
    if let Some(map) = get_obj(obj, "data") {
        for (k, v) in map {
            keys.push(k);
            total += base64_decoded_len(v.as_str().unwrap_or_default());
        }
    }
    if let Some(map) = get_obj(obj, "stringData") {
        for (k, v) in map {
            if !keys.contains(&k.as_str()) {
                keys.push(k);
            }
            total += v.as_str().map(str::len).unwrap_or_default();
        }
    }
    for k in &keys {
        push_msgs(&mut errs, &key("data", k), k, is_config_map_key(k));
    }
    if total > MAX_SECRET_SIZE {
        errs.push(FieldError::too_long("data", MAX_SECRET_SIZE));
    }
    let has = |k: &str| keys.contains(&k);
    match str_or_empty(obj, "type") {
        "kubernetes.io/service-account-token" => {
            let sa = meta_of(obj)
                .pointer("/annotations/kubernetes.io~1service-account.name")
                .and_then(Value::as_str);
            if sa.unwrap_or_default().is_empty() {
                errs.push(FieldError::required(
                    "metadata.annotations[kubernetes.io/service-account.name]",
                    "",
                ));
            }
        }
        "kubernetes.io/dockercfg" if !has(".dockercfg") => {
            errs.push(FieldError::required("data[.dockercfg]", ""))
        }
        "kubernetes.io/dockerconfigjson" if !has(".dockerconfigjson") => {
            errs.push(FieldError::required("data[.dockerconfigjson]", ""))
        }
        "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
            errs.push(FieldError::required("data[username]", ""));
            errs.push(FieldError::required("data[password]", ""));
        }
        "kubernetes.io/ssh-auth" if !has("ssh-privatekey") => {
            errs.push(FieldError::required("data[ssh-privatekey]", ""))
        }
        "kubernetes.io/tls" => {
            for k in ["tls.crt", "tls.key"] {
                if !has(k) {
                    errs.push(FieldError::required(key("data", k), ""));
                }
            }
        }
        _ => {}
    }
    errs
}

const STANDARD_FINALIZERS: &[&str] = &["kubernetes", "orphan", "foregroundDeletion"];

/// core/v1 Namespace: `spec.finalizers` must be standard or fully qualified.
pub(crate) fn validate_namespace(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for f in get_arr(obj.get("spec").unwrap_or(&Value::Null), "finalizers") {
        let f = f.as_str().unwrap_or_default();
        let msgs = is_qualified_name(f);
        if !msgs.is_empty() {
            push_msgs(&mut errs, "spec.finalizers", f, msgs);
        } else if !f.contains('/') && !STANDARD_FINALIZERS.contains(&f) {
            errs.push(FieldError::invalid(
                "spec.finalizers",
                f,
                "name is neither a standard finalizer name nor is it fully qualified",
            ));
        }
    }
    errs
}

/// core/v1 Node: pod CIDRs and taints.
pub(crate) fn validate_node(obj: &Value) -> Vec<FieldError> {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let mut errs = Vec::new();
    let cidrs = get_arr(spec, "podCIDRs");
    for (i, c) in cidrs.iter().enumerate() {
        let c = c.as_str().unwrap_or_default();
        push_msgs(&mut errs, &index("spec.podCIDRs", i), c, is_valid_cidr(c));
    }
    if cidrs.len() > 1 {
        let v4 = cidrs
            .iter()
            .filter(|c| !c.as_str().unwrap_or_default().contains(':'))
            .count();
        if cidrs.len() > 2 || v4 != 1 {
            errs.push(FieldError::invalid(
                "spec.podCIDRs",
                &spec["podCIDRs"],
                "may specify no more than one CIDR for each IP family",
            ));
        }
    }
    let mut seen: Vec<(&str, &str)> = Vec::new();
    for (i, t) in get_arr(spec, "taints").iter().enumerate() {
        let tp = index("spec.taints", i);
        let k = str_or_empty(t, "key");
        push_msgs(&mut errs, &child(&tp, "key"), k, is_qualified_name(k));
        let v = str_or_empty(t, "value");
        let msgs = is_valid_label_value(v);
        if !msgs.is_empty() {
            errs.push(FieldError::invalid(child(&tp, "value"), v, msgs.join(";")));
        }
        let effect = str_or_empty(t, "effect");
        match effect {
            "" => errs.push(FieldError::required(child(&tp, "effect"), "")),
            "NoSchedule" | "PreferNoSchedule" | "NoExecute" => {}
            other => errs.push(FieldError::not_supported(
                child(&tp, "effect"),
                other,
                &["NoSchedule", "PreferNoSchedule", "NoExecute"],
            )),
        }
        if seen.contains(&(k, effect)) {
            let mut e = FieldError::duplicate(&tp, t);
            e.message = "taints must be unique by key and effect pair".into();
            errs.push(e);
        } else {
            seen.push((k, effect));
        }
    }
    errs
}

const ACCESS_MODES: &[&str] = &[
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOnce",
    "ReadWriteOncePod",
];

/// core/v1 PersistentVolumeClaim: access modes, storage request, selector, class.
pub(crate) fn validate_pvc(obj: &Value) -> Vec<FieldError> {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let mut errs = Vec::new();
    let modes = get_arr(spec, "accessModes");
    if modes.is_empty() {
        errs.push(FieldError::required(
            "spec.accessModes",
            "at least 1 access mode is required",
        ));
    }
    let (mut rwop, mut other) = (false, false);
    for m in modes {
        let m = m.as_str().unwrap_or_default();
        if !ACCESS_MODES.contains(&m) {
            errs.push(FieldError::not_supported(
                "spec.accessModes",
                m,
                ACCESS_MODES,
            ));
        }
        if m == "ReadWriteOncePod" {
            rwop = true;
        } else {
            other = true;
        }
    }
    if rwop && other {
        errs.push(FieldError::forbidden(
            "spec.accessModes",
            "may not use ReadWriteOncePod with other access modes",
        ));
    }
    if let Some(sel) = spec.get("selector").filter(|s| !s.is_null()) {
        errs.extend(validate_label_selector(sel, "spec.selector"));
    }
    // Upstream keys this path off `resources`, not `resources.requests`.
    let storage_path = key("spec.resources", "storage");
    match spec.pointer("/resources/requests/storage") {
        None => errs.push(FieldError::required(&storage_path, "")),
        Some(v) => {
            if let Some(q) = parse_quantity(v, &storage_path, &mut errs) {
                if q.is_negative() || q.is_zero() {
                    errs.push(FieldError::invalid(
                        &storage_path,
                        q.to_string(),
                        "must be greater than zero",
                    ));
                }
            }
        }
    }
    optional_subdomain(&mut errs, spec, "storageClassName", "spec");
    enum_field(
        &mut errs,
        spec,
        "volumeMode",
        "spec",
        &["Block", "Filesystem"],
    );
    errs
}

/// PersistentVolume source fields; exactly one must be set.
pub(crate) const PV_SOURCES: &[&str] = &[
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "hostPath",
    "glusterfs",
    "nfs",
    "rbd",
    "iscsi",
    "cinder",
    "cephfs",
    "fc",
    "flocker",
    "flexVolume",
    "azureFile",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "portworxVolume",
    "scaleIO",
    "local",
    "storageos",
    "csi",
];

/// core/v1 PersistentVolume: access modes, capacity, exactly one source, reclaim policy.
pub(crate) fn validate_pv(obj: &Value) -> Vec<FieldError> {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let mut errs = Vec::new();
    let modes = get_arr(spec, "accessModes");
    if modes.is_empty() {
        errs.push(FieldError::required("spec.accessModes", ""));
    }
    for m in modes {
        let m = m.as_str().unwrap_or_default();
        if !ACCESS_MODES.contains(&m) {
            errs.push(FieldError::not_supported(
                "spec.accessModes",
                m,
                ACCESS_MODES,
            ));
        }
    }
    let capacity = get_obj(spec, "capacity");
    if capacity.is_none_or(|c| c.is_empty()) {
        errs.push(FieldError::required("spec.capacity", ""));
    }
    if let Some(cap) = capacity {
        if !cap.contains_key("storage") || cap.len() > 1 {
            errs.push(FieldError::not_supported(
                "spec.capacity",
                &spec["capacity"],
                &["storage"],
            ));
        }
        for (name, q) in cap {
            let p = key("spec.capacity", name);
            if let Some(q) = parse_quantity(q, &p, &mut errs) {
                if q.is_negative() || q.is_zero() {
                    errs.push(FieldError::invalid(
                        &p,
                        q.to_string(),
                        "must be greater than zero",
                    ));
                }
            }
        }
    }
    let present: Vec<&str> = PV_SOURCES
        .iter()
        .copied()
        .filter(|k| spec.get(*k).is_some_and(|v| !v.is_null()))
        .collect();
    match present.as_slice() {
        [] => errs.push(FieldError::required("spec", "must specify a volume type")),
        [first, rest @ ..] => {
            for extra in rest {
                errs.push(FieldError::forbidden(
                    child("spec", extra),
                    "may not specify more than 1 volume type",
                ));
            }
            let src = &spec[*first];
            let required = match *first {
                "hostPath" | "local" => Some("path"),
                "nfs" => Some("server"),
                "csi" => Some("driver"),
                _ => None,
            };
            if let Some(f) = required {
                if str_or_empty(src, f).is_empty() {
                    errs.push(FieldError::required(child(&child("spec", first), f), ""));
                }
            }
            if *first == "local" && spec.get("nodeAffinity").is_none_or(Value::is_null) {
                errs.push(FieldError::required(
                    "spec.nodeAffinity",
                    "Local volume requires node affinity",
                ));
            }
        }
    }
    if let Some(p) = get_str(spec, "persistentVolumeReclaimPolicy") {
        if !["Delete", "Recycle", "Retain"].contains(&p) {
            errs.push(FieldError::not_supported(
                "spec.persistentVolumeReclaimPolicy",
                p,
                &["Delete", "Recycle", "Retain"],
            ));
        }
    }
    optional_subdomain(&mut errs, spec, "storageClassName", "spec");
    enum_field(
        &mut errs,
        spec,
        "volumeMode",
        "spec",
        &["Block", "Filesystem"],
    );
    errs
}

fn cross_version_ref(r: &Value, path: &str, errs: &mut Vec<FieldError>) {
    for k in ["kind", "name"] {
        let v = str_or_empty(r, k);
        if v.is_empty() {
            errs.push(FieldError::required(child(path, k), ""));
        } else {
            push_msgs(errs, &child(path, k), v, is_valid_path_segment_name(v));
        }
    }
}

/// autoscaling HorizontalPodAutoscaler (v1 and v2 shapes): target reference, replica bounds
/// and metric source types.
pub(crate) fn validate_hpa(obj: &Value) -> Vec<FieldError> {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let mut errs = Vec::new();
    let min = get_i64(spec, "minReplicas");
    if let Some(m) = min.filter(|m| *m < 1) {
        errs.push(FieldError::invalid(
            "spec.minReplicas",
            m,
            "must be greater than or equal to 1",
        ));
    }
    let max = get_i64(spec, "maxReplicas").unwrap_or(0);
    if max < 1 {
        errs.push(FieldError::invalid(
            "spec.maxReplicas",
            max,
            "must be greater than 0",
        ));
    }
    if min.is_some_and(|m| max < m) {
        errs.push(FieldError::invalid(
            "spec.maxReplicas",
            max,
            "must be greater than or equal to `minReplicas`",
        ));
    }
    cross_version_ref(
        spec.get("scaleTargetRef").unwrap_or(&Value::Null),
        "spec.scaleTargetRef",
        &mut errs,
    );
    if let Some(p) = get_i64(spec, "targetCPUUtilizationPercentage").filter(|p| *p < 1) {
        errs.push(FieldError::invalid(
            "spec.targetCPUUtilizationPercentage",
            p,
            "must be greater than or equal to 1",
        ));
    }
    let sources = [
        "ContainerResource",
        "External",
        "Object",
        "Pods",
        "Resource",
    ];
    for (i, m) in get_arr(spec, "metrics").iter().enumerate() {
        let mp = index("spec.metrics", i);
        match get_str(m, "type").unwrap_or_default() {
            "" => errs.push(FieldError::required(
                child(&mp, "type"),
                "must specify a metric source type",
            )),
            t if sources.contains(&t) => {
                // The source is in the field named after the type, lower-camel-cased.
                let mut field = t.to_string();
                field[..1].make_ascii_lowercase();
                if m.get(&field).is_none_or(Value::is_null) {
                    errs.push(FieldError::required(
                        child(&mp, &field),
                        "must populate information for the given metric source",
                    ));
                }
            }
            t => errs.push(FieldError::not_supported(child(&mp, "type"), t, &sources)),
        }
    }
    errs
}

/// storage.k8s.io/v1 StorageClass: provisioner, parameters, reclaim and binding modes.
pub(crate) fn validate_storage_class(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let prov = str_or_empty(obj, "provisioner");
    if prov.is_empty() {
        errs.push(FieldError::required("provisioner", ""));
    } else {
        push_msgs(
            &mut errs,
            "provisioner",
            prov,
            is_qualified_name(&prov.to_lowercase()),
        );
    }
    if let Some(params) = get_obj(obj, "parameters") {
        let size: usize = params
            .iter()
            .map(|(k, v)| k.len() + v.as_str().map(str::len).unwrap_or_default())
            .sum();
        if params.len() > 512 {
            errs.push(FieldError::too_many("parameters", params.len(), 512));
        }
        if size > 256 * 1024 {
            errs.push(FieldError::too_long("parameters", 256 * 1024));
        }
    }
    if let Some(rp) = get_str(obj, "reclaimPolicy") {
        if rp != "Delete" && rp != "Retain" {
            errs.push(FieldError::not_supported(
                "reclaimPolicy",
                rp,
                &["Delete", "Retain"],
            ));
        }
    }
    if let Some(m) = get_str(obj, "volumeBindingMode") {
        if m != "Immediate" && m != "WaitForFirstConsumer" {
            errs.push(FieldError::not_supported(
                "volumeBindingMode",
                m,
                &["Immediate", "WaitForFirstConsumer"],
            ));
        }
    }
    errs
}

/// rbac.authorization.k8s.io RoleBinding and ClusterRoleBinding: the role reference and
/// subjects.
pub(crate) fn validate_role_binding(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let cluster = obj.get("kind").and_then(Value::as_str) == Some("ClusterRoleBinding");
    let rr = obj.get("roleRef").unwrap_or(&Value::Null);
    let group = str_or_empty(rr, "apiGroup");
    if group != "rbac.authorization.k8s.io" {
        errs.push(FieldError::not_supported(
            "roleRef.apiGroup",
            group,
            &["rbac.authorization.k8s.io"],
        ));
    }
    let kind = str_or_empty(rr, "kind");
    let kinds: &[&str] = if cluster {
        &["ClusterRole"]
    } else {
        &["Role", "ClusterRole"]
    };
    if !kinds.contains(&kind) {
        errs.push(FieldError::not_supported("roleRef.kind", kind, kinds));
    }
    let name = str_or_empty(rr, "name");
    if name.is_empty() {
        errs.push(FieldError::required("roleRef.name", ""));
    } else {
        push_msgs(
            &mut errs,
            "roleRef.name",
            name,
            is_valid_path_segment_name(name),
        );
    }
    for (i, s) in get_arr(obj, "subjects").iter().enumerate() {
        let sp = index("subjects", i);
        if str_or_empty(s, "name").is_empty() {
            errs.push(FieldError::required(child(&sp, "name"), ""));
        }
        match str_or_empty(s, "kind") {
            "ServiceAccount" => {
                if cluster && str_or_empty(s, "namespace").is_empty() {
                    errs.push(FieldError::required(child(&sp, "namespace"), ""));
                }
            }
            "User" | "Group" => {}
            other => errs.push(FieldError::not_supported(
                child(&sp, "kind"),
                other,
                &["ServiceAccount", "User", "Group"],
            )),
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn strs(errs: Vec<FieldError>) -> Vec<String> {
        errs.iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn config_maps_and_secrets() {
        assert!(validate_config_map(
            &json!({"data": {"a.conf": "x"}, "binaryData": {"b": "eA=="}})
        )
        .is_empty());
        let e = strs(validate_config_map(
            &json!({"data": {"a/b": "x", "c": "y"}, "binaryData": {"c": "eA=="}}),
        ));
        assert!(e[0].starts_with("data[a/b]: Invalid value: \"a/b\": a valid config key must consist of alphanumeric characters, '-', '_' or '.'"));
        assert!(e.contains(
            &"data[c]: Invalid value: \"c\": duplicate of key present in binaryData".to_string()
        ));
        assert!(e.contains(
            &"binaryData[c]: Invalid value: \"c\": duplicate of key present in data".to_string()
        ));
        let big = "x".repeat(MAX_SECRET_SIZE + 1);
        assert_eq!(
            strs(validate_config_map(&json!({"data": {"a": big}}))),
            [": Too long: must have at most 1048576 bytes"]
        );
        let e = strs(validate_secret(
            &json!({"type": "kubernetes.io/tls", "data": {"tls.crt": ""}}),
        ));
        assert_eq!(e, ["data[tls.key]: Required value"]);
        let e = strs(validate_secret(
            &json!({"type": "kubernetes.io/service-account-token", "metadata": {}}),
        ));
        assert_eq!(
            e,
            ["metadata.annotations[kubernetes.io/service-account.name]: Required value"]
        );
        assert!(validate_secret(&json!({"stringData": {"password": "x"}})).is_empty());
    }

    #[test]
    fn namespace_node_pvc() {
        let e = strs(validate_namespace(
            &json!({"spec": {"finalizers": ["kubernetes", "custom", "example.com/x"]}}),
        ));
        assert_eq!(e, ["spec.finalizers: Invalid value: \"custom\": name is neither a standard finalizer name nor is it fully qualified"]);
        let e = strs(validate_node(
            &json!({"spec": {"podCIDRs": ["10.42.0.0/24", "bad"], "taints": [
                {"key": "k", "effect": "NoSchedule"}, {"key": "k", "effect": "NoSchedule"}, {"key": "j"}
            ]}}),
        ));
        assert!(e.contains(&"spec.podCIDRs[1]: Invalid value: \"bad\": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)".to_string()));
        assert!(e
            .iter()
            .any(|m| m.starts_with("spec.taints[1]: Duplicate value:")
                && m.ends_with("taints must be unique by key and effect pair")));
        assert!(e.contains(&"spec.taints[2].effect: Required value".to_string()));
        assert!(validate_pvc(&json!({"spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})).is_empty());
        let e = strs(validate_pvc(
            &json!({"spec": {"accessModes": ["ReadWriteOncePod", "Sometimes"], "resources": {"requests": {"storage": "0"}}}}),
        ));
        assert!(e
            .iter()
            .any(|m| m.starts_with("spec.accessModes: Unsupported value: \"Sometimes\"")));
        assert!(e.contains(
            &"spec.accessModes: Forbidden: may not use ReadWriteOncePod with other access modes"
                .to_string()
        ));
        assert!(e.contains(
            &"spec.resources[storage]: Invalid value: \"0\": must be greater than zero".to_string()
        ));
        let e = strs(validate_pvc(&json!({"spec": {}})));
        assert_eq!(
            e,
            [
                "spec.accessModes: Required value: at least 1 access mode is required",
                "spec.resources[storage]: Required value"
            ]
        );
    }

    #[test]
    fn persistent_volumes() {
        let ok = json!({"spec": {"accessModes": ["ReadWriteOnce"], "capacity": {"storage": "1Gi"},
            "hostPath": {"path": "/data"}, "persistentVolumeReclaimPolicy": "Delete"}});
        assert!(validate_pv(&ok).is_empty());
        let e = strs(validate_pv(
            &json!({"spec": {"capacity": {"storage": "0", "cpu": "1"}, "local": {"path": "/x"}, "nfs": {}}}),
        ));
        assert!(e.contains(&"spec.accessModes: Required value".to_string()));
        assert!(e
            .iter()
            .any(|m| m.starts_with("spec.capacity: Unsupported value:")));
        assert!(e.contains(
            &"spec.capacity[storage]: Invalid value: \"0\": must be greater than zero".to_string()
        ));
        assert!(e.contains(
            &"spec.local: Forbidden: may not specify more than 1 volume type".to_string()
        ));
        assert!(e.contains(&"spec.nfs.server: Required value".to_string()));
        let e = strs(validate_pv(
            &json!({"spec": {"accessModes": ["ReadWriteOnce"], "capacity": {"storage": "1Gi"}, "local": {"path": "/x"}}}),
        ));
        assert_eq!(
            e,
            ["spec.nodeAffinity: Required value: Local volume requires node affinity"]
        );
    }

    #[test]
    fn hpa_storage_class_bindings() {
        let ok = json!({"spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": 1, "maxReplicas": 3,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu"}}]}});
        assert!(validate_hpa(&ok).is_empty());
        let e = strs(validate_hpa(
            &json!({"spec": {"scaleTargetRef": {}, "minReplicas": 5, "maxReplicas": 3, "metrics": [{"type": "Pods"}]}}),
        ));
        assert!(e.contains(
            &"spec.maxReplicas: Invalid value: 3: must be greater than or equal to `minReplicas`"
                .to_string()
        ));
        assert!(e.contains(&"spec.scaleTargetRef.kind: Required value".to_string()));
        assert!(e.contains(&"spec.metrics[0].pods: Required value: must populate information for the given metric source".to_string()));
        let e = strs(validate_storage_class(&json!({"reclaimPolicy": "Recycle"})));
        assert_eq!(e, ["provisioner: Required value", "reclaimPolicy: Unsupported value: \"Recycle\": supported values: \"Delete\", \"Retain\""]);
        let e = strs(validate_role_binding(
            &json!({"kind": "ClusterRoleBinding", "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "x"},
            "subjects": [{"kind": "ServiceAccount", "name": "default"}]}),
        ));
        assert_eq!(
            e,
            [
                "roleRef.kind: Unsupported value: \"Role\": supported values: \"ClusterRole\"",
                "subjects[0].namespace: Required value"
            ]
        );
    }
}
