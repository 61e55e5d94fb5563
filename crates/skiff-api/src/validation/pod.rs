//! Pod spec validation (upstream `ValidatePodSpec` and helpers): containers, ports, env,
//! volumes and mounts, resources, tolerations and the pod-level enums.

use std::collections::BTreeSet;

use serde_json::Value;

use super::meta::{meta_of, validate_labels, validate_template_meta};
use super::names::{
    inclusive_range_error, is_config_map_key, is_dns1123_label, is_dns1123_subdomain,
    is_env_var_name, is_qualified_name, is_valid_label_value, is_valid_port_name,
    is_valid_port_num,
};
use super::seccomp::validate_seccomp_profile;
use super::{
    child, get_arr, get_i64, get_obj, get_str, index, key, push_msgs, str_or_empty, FieldError,
};
use crate::quantity::{self, Quantity};

/// Volume source fields; a volume must set exactly one.
const VOLUME_SOURCES: &[&str] = &[
    "emptyDir",
    "hostPath",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "gitRepo",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "persistentVolumeClaim",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "downwardAPI",
    "fc",
    "azureFile",
    "configMap",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "projected",
    "portworxVolume",
    "scaleIO",
    "storageos",
    "csi",
    "ephemeral",
    "image",
];

/// Validates a pod template (`ValidatePodTemplateSpec`): template labels and annotations and
/// the pod spec at `<path>.spec`.
pub fn validate_pod_template(template: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = validate_template_meta(meta_of(template), &child(path, "metadata"));
    let spec = template.get("spec").unwrap_or(&Value::Null);
    errs.extend(validate_pod_spec(spec, &child(path, "spec")));
    errs
}

/// Validates a pod spec rooted at `path` (usually `spec` or `spec.template.spec`).
pub fn validate_pod_spec(spec: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let volumes = validate_volumes(get_arr(spec, "volumes"), &child(path, "volumes"), &mut errs);
    let mut names = BTreeSet::new();
    let containers = get_arr(spec, "containers");
    if containers.is_empty() {
        errs.push(FieldError::required(child(path, "containers"), ""));
    }
    for (i, c) in get_arr(spec, "initContainers").iter().enumerate() {
        validate_container(
            c,
            &index(&child(path, "initContainers"), i),
            &volumes,
            &mut names,
            true,
            &mut errs,
        );
    }
    for (i, c) in containers.iter().enumerate() {
        validate_container(
            c,
            &index(&child(path, "containers"), i),
            &volumes,
            &mut names,
            false,
            &mut errs,
        );
    }
    if spec.get("hostNetwork").and_then(Value::as_bool) == Some(true) {
        for (i, c) in containers.iter().enumerate() {
            for (j, p) in get_arr(c, "ports").iter().enumerate() {
                let cp = get_i64(p, "containerPort").unwrap_or(0);
                // Defaulting copies containerPort into hostPort, so only a set, different value is wrong.
                if get_i64(p, "hostPort").is_some_and(|hp| hp != cp) {
                    let pp = index(&child(&index(&child(path, "containers"), i), "ports"), j);
                    errs.push(FieldError::invalid(
                        child(&pp, "containerPort"),
                        cp,
                        "must match `hostPort` when `hostNetwork` is true",
                    ));
                }
            }
        }
    }
    enum_field(
        &mut errs,
        spec,
        "restartPolicy",
        path,
        &["Always", "OnFailure", "Never"],
    );
    enum_field(
        &mut errs,
        spec,
        "dnsPolicy",
        path,
        &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
    );
    errs.extend(validate_labels(
        spec.get("nodeSelector"),
        &child(path, "nodeSelector"),
    ));
    for k in ["serviceAccountName", "nodeName", "priorityClassName"] {
        if let Some(v) = get_str(spec, k).filter(|v| !v.is_empty()) {
            push_msgs(&mut errs, &child(path, k), v, is_dns1123_subdomain(v));
        }
    }
    for k in ["hostname", "subdomain"] {
        if let Some(v) = get_str(spec, k).filter(|v| !v.is_empty()) {
            push_msgs(&mut errs, &child(path, k), v, is_dns1123_label(v));
        }
    }
    if let Some(v) = get_i64(spec, "activeDeadlineSeconds") {
        if !(1..=i32::MAX as i64).contains(&v) {
            errs.push(FieldError::invalid(
                child(path, "activeDeadlineSeconds"),
                v,
                inclusive_range_error(1, i32::MAX as i64),
            ));
        }
    }
    errs.extend(validate_tolerations(
        get_arr(spec, "tolerations"),
        &child(path, "tolerations"),
    ));
    if let Some(sc) = spec.get("securityContext") {
        validate_seccomp_profile(sc, &child(path, "securityContext"), &mut errs);
    }
    errs
}

/// Checks an optional enum-valued string field.
pub(crate) fn enum_field(
    errs: &mut Vec<FieldError>,
    v: &Value,
    k: &str,
    path: &str,
    allowed: &[&str],
) {
    match v.get(k) {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if s.is_empty() => {
            errs.push(FieldError::required(child(path, k), ""))
        }
        Some(Value::String(s)) if allowed.contains(&s.as_str()) => {}
        Some(other) => errs.push(FieldError::not_supported(child(path, k), other, allowed)),
    }
}

/// Validates the volume list and returns the names of the valid volumes.
fn validate_volumes(volumes: &[Value], path: &str, errs: &mut Vec<FieldError>) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (i, vol) in volumes.iter().enumerate() {
        let p = index(path, i);
        let mut el = validate_volume_source(vol, &p);
        let name = str_or_empty(vol, "name");
        let name_path = child(&p, "name");
        if name.is_empty() {
            el.push(FieldError::required(&name_path, ""));
        } else {
            push_msgs(&mut el, &name_path, name, is_dns1123_label(name));
        }
        if names.contains(name) {
            el.push(FieldError::duplicate(&name_path, name));
        }
        if el.is_empty() {
            names.insert(name.to_string());
        }
        errs.extend(el);
    }
    names
}

fn validate_volume_source(vol: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let present: Vec<&str> = VOLUME_SOURCES
        .iter()
        .copied()
        .filter(|s| vol.get(*s).is_some_and(|v| !v.is_null()))
        .collect();
    if present.is_empty() {
        errs.push(FieldError::required(path, "must specify a volume type"));
        return errs;
    }
    for extra in &present[1..] {
        errs.push(FieldError::forbidden(
            child(path, extra),
            "may not specify more than 1 volume type",
        ));
    }
    let src = present[0];
    let v = &vol[src];
    let p = child(path, src);
    let required_field = match src {
        "hostPath" => Some("path"),
        "secret" => Some("secretName"),
        "configMap" => Some("name"),
        "persistentVolumeClaim" => Some("claimName"),
        "nfs" => Some("server"),
        "csi" => Some("driver"),
        "ephemeral" => Some("volumeClaimTemplate"),
        _ => None,
    };
    if let Some(f) = required_field {
        let missing = match v.get(f) {
            None | Some(Value::Null) => true,
            Some(Value::String(s)) => s.is_empty(),
            _ => false,
        };
        if missing {
            errs.push(FieldError::required(child(&p, f), ""));
        }
    }
    if src == "nfs" && str_or_empty(v, "path").is_empty() {
        errs.push(FieldError::required(child(&p, "path"), ""));
    }
    if matches!(src, "secret" | "configMap") {
        for (i, item) in get_arr(v, "items").iter().enumerate() {
            let ip = index(&child(&p, "items"), i);
            let k = str_or_empty(item, "key");
            if k.is_empty() {
                errs.push(FieldError::required(child(&ip, "key"), ""));
            }
            validate_local_path(
                &mut errs,
                str_or_empty(item, "path"),
                &child(&ip, "path"),
                true,
            );
        }
    }
    if src == "emptyDir" {
        if let Some(q) = v.get("sizeLimit") {
            quantity_nonnegative(&mut errs, q, &child(&p, "sizeLimit"));
        }
    }
    errs
}

/// `validateLocalDescendingPath` (and `validateLocalNonReservedPath` for projected items).
fn validate_local_path(errs: &mut Vec<FieldError>, target: &str, path: &str, required: bool) {
    if target.is_empty() {
        if required {
            errs.push(FieldError::required(path, ""));
        }
        return;
    }
    if target.starts_with('/') {
        errs.push(FieldError::invalid(path, target, "must be a relative path"));
    }
    if target.split('/').any(|part| part == "..") {
        errs.push(FieldError::invalid(path, target, "must not contain '..'"));
    }
}

fn validate_container(
    c: &Value,
    path: &str,
    volumes: &BTreeSet<String>,
    names: &mut BTreeSet<String>,
    init: bool,
    errs: &mut Vec<FieldError>,
) {
    if let Some(sc) = c.get("securityContext") {
        validate_seccomp_profile(sc, &child(path, "securityContext"), errs);
    }
    let name = str_or_empty(c, "name");
    let name_path = child(path, "name");
    if name.is_empty() {
        errs.push(FieldError::required(&name_path, ""));
    } else {
        push_msgs(errs, &name_path, name, is_dns1123_label(name));
    }
    if !names.insert(name.to_string()) {
        errs.push(FieldError::duplicate(&name_path, name));
    }
    if str_or_empty(c, "image").is_empty() {
        errs.push(FieldError::required(child(path, "image"), ""));
    }
    match (init, get_str(c, "restartPolicy")) {
        (_, None) => {}
        (true, Some("Always")) => {}
        (true, Some(other)) => errs.push(FieldError::not_supported(
            child(path, "restartPolicy"),
            other,
            &["Always"],
        )),
        (false, Some(_)) => errs.push(FieldError::forbidden(
            child(path, "restartPolicy"),
            "may not be set for non-init containers",
        )),
    }
    enum_field(
        errs,
        c,
        "imagePullPolicy",
        path,
        &["Always", "IfNotPresent", "Never"],
    );
    enum_field(
        errs,
        c,
        "terminationMessagePolicy",
        path,
        &["File", "FallbackToLogsOnError"],
    );
    validate_ports(get_arr(c, "ports"), &child(path, "ports"), errs);
    validate_env(get_arr(c, "env"), &child(path, "env"), errs);
    for (i, e) in get_arr(c, "envFrom").iter().enumerate() {
        let has_cm = e.get("configMapRef").is_some_and(|v| !v.is_null());
        let has_secret = e.get("secretRef").is_some_and(|v| !v.is_null());
        let p = index(&child(path, "envFrom"), i);
        if has_cm == has_secret {
            let msg = if has_cm {
                "may not have more than one field specified at a time"
            } else {
                "must specify one of: `configMapRef` or `secretRef`"
            };
            errs.push(FieldError::invalid(&p, "", msg));
        }
    }
    validate_mounts(
        get_arr(c, "volumeMounts"),
        &child(path, "volumeMounts"),
        volumes,
        errs,
    );
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = c.get(probe).filter(|p| !p.is_null()) {
            validate_probe(p, &child(path, probe), errs);
        }
    }
    if let Some(res) = c.get("resources") {
        validate_resources(res, &child(path, "resources"), errs);
    }
}

fn validate_ports(ports: &[Value], path: &str, errs: &mut Vec<FieldError>) {
    let mut names = BTreeSet::new();
    for (i, p) in ports.iter().enumerate() {
        let ip = index(path, i);
        let name = str_or_empty(p, "name");
        if !name.is_empty() {
            let msgs = is_valid_port_name(name);
            if !msgs.is_empty() {
                push_msgs(errs, &child(&ip, "name"), name, msgs);
            } else if !names.insert(name) {
                errs.push(FieldError::duplicate(child(&ip, "name"), name));
            }
        }
        match get_i64(p, "containerPort").unwrap_or(0) {
            0 => errs.push(FieldError::required(child(&ip, "containerPort"), "")),
            n => errs.extend(
                is_valid_port_num(n)
                    .into_iter()
                    .map(|m| FieldError::invalid(child(&ip, "containerPort"), n, m)),
            ),
        }
        if let Some(hp) = get_i64(p, "hostPort").filter(|hp| *hp != 0) {
            errs.extend(
                is_valid_port_num(hp)
                    .into_iter()
                    .map(|m| FieldError::invalid(child(&ip, "hostPort"), hp, m)),
            );
        }
        enum_field(errs, p, "protocol", &ip, &["SCTP", "TCP", "UDP"]);
    }
}

fn validate_env(env: &[Value], path: &str, errs: &mut Vec<FieldError>) {
    for (i, e) in env.iter().enumerate() {
        let ip = index(path, i);
        let name = str_or_empty(e, "name");
        if name.is_empty() {
            errs.push(FieldError::required(child(&ip, "name"), ""));
        } else {
            push_msgs(errs, &child(&ip, "name"), name, is_env_var_name(name));
        }
        let Some(from) = e.get("valueFrom").filter(|v| !v.is_null()) else {
            continue;
        };
        let fp = child(&ip, "valueFrom");
        let sources = [
            "fieldRef",
            "resourceFieldRef",
            "configMapKeyRef",
            "secretKeyRef",
            "fileKeyRef",
        ];
        let n = sources
            .iter()
            .filter(|s| from.get(**s).is_some_and(|v| !v.is_null()))
            .count();
        if n == 0 {
            errs.push(FieldError::invalid(
                &fp,
                "",
                "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
            ));
        } else if n > 1 {
            errs.push(FieldError::invalid(
                &fp,
                "",
                "may not have more than one field specified at a time",
            ));
        }
        if !str_or_empty(e, "value").is_empty() {
            errs.push(FieldError::invalid(
                &fp,
                "",
                "may not be specified when `value` is not empty",
            ));
        }
        for r in ["configMapKeyRef", "secretKeyRef"] {
            if let Some(kr) = from.get(r).filter(|v| !v.is_null()) {
                let k = str_or_empty(kr, "key");
                if k.is_empty() {
                    errs.push(FieldError::required(child(&child(&fp, r), "key"), ""));
                } else {
                    push_msgs(errs, &child(&child(&fp, r), "key"), k, is_config_map_key(k));
                }
            }
        }
        if let Some(fr) = from.get("fieldRef").filter(|v| !v.is_null()) {
            if str_or_empty(fr, "fieldPath").is_empty() {
                errs.push(FieldError::required(
                    child(&child(&fp, "fieldRef"), "fieldPath"),
                    "",
                ));
            }
        }
    }
}

fn validate_mounts(
    mounts: &[Value],
    path: &str,
    volumes: &BTreeSet<String>,
    errs: &mut Vec<FieldError>,
) {
    let mut points = BTreeSet::new();
    for (i, m) in mounts.iter().enumerate() {
        let ip = index(path, i);
        let name = str_or_empty(m, "name");
        if name.is_empty() {
            errs.push(FieldError::required(child(&ip, "name"), ""));
        }
        if !volumes.contains(name) {
            errs.push(FieldError::not_found(child(&ip, "name"), name));
        }
        let mp = str_or_empty(m, "mountPath");
        if mp.is_empty() {
            errs.push(FieldError::required(child(&ip, "mountPath"), ""));
        }
        if !points.insert(mp) {
            errs.push(FieldError::invalid(
                child(&ip, "mountPath"),
                mp,
                "must be unique",
            ));
        }
        validate_local_path(
            errs,
            str_or_empty(m, "subPath"),
            &child(&ip, "subPath"),
            false,
        );
        if let Some(mode) = get_str(m, "mountPropagation") {
            if !["None", "HostToContainer", "Bidirectional"].contains(&mode) {
                errs.push(FieldError::not_supported(
                    child(&ip, "mountPropagation"),
                    mode,
                    &["Bidirectional", "HostToContainer", "None"],
                ));
            }
        }
    }
}

fn validate_probe(p: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let handlers = ["exec", "httpGet", "tcpSocket", "grpc"];
    let set: Vec<&str> = handlers
        .iter()
        .copied()
        .filter(|h| p.get(*h).is_some_and(|v| !v.is_null()))
        .collect();
    match set.len() {
        0 => errs.push(FieldError::required(path, "must specify a handler type")),
        1 => {}
        _ => errs.push(FieldError::forbidden(
            child(path, set[1]),
            "may not specify more than 1 handler type",
        )),
    }
    for k in [
        "initialDelaySeconds",
        "timeoutSeconds",
        "periodSeconds",
        "successThreshold",
        "failureThreshold",
    ] {
        super::nonnegative(errs, p, k, path);
    }
    if let Some(port) = p
        .pointer("/httpGet/port")
        .or_else(|| p.pointer("/tcpSocket/port"))
    {
        let handler = if p.get("httpGet").is_some() {
            "httpGet"
        } else {
            "tcpSocket"
        };
        validate_port_num_or_name(port, &child(&child(path, handler), "port"), errs);
    }
}

/// `ValidatePortNumOrName` for IntOrString ports.
pub(crate) fn validate_port_num_or_name(port: &Value, path: &str, errs: &mut Vec<FieldError>) {
    match port {
        Value::Number(n) => {
            let n = n.as_i64().unwrap_or(0);
            errs.extend(
                is_valid_port_num(n)
                    .into_iter()
                    .map(|m| FieldError::invalid(path, n, m)),
            );
        }
        Value::String(s) => push_msgs(errs, path, s, is_valid_port_name(s)),
        _ => errs.push(FieldError::invalid(
            path,
            port,
            "must be an integer or a port name",
        )),
    }
}

/// Whether the resource name is a built-in one (no domain, or a kubernetes.io one).
fn is_native_resource(name: &str) -> bool {
    !name.contains('/') || name.contains("kubernetes.io/")
}

/// Upstream's `IsStandardResourceName`: compute resources and quota names.
fn is_standard_resource_name(name: &str) -> bool {
    const STANDARD: &[&str] = &[
        "cpu",
        "memory",
        "ephemeral-storage",
        "requests.cpu",
        "requests.memory",
        "requests.ephemeral-storage",
        "limits.cpu",
        "limits.memory",
        "limits.ephemeral-storage",
        "pods",
        "services",
        "replicationcontrollers",
        "resourcequotas",
        "secrets",
        "configmaps",
        "persistentvolumeclaims",
        "storage",
        "requests.storage",
        "services.nodeports",
        "services.loadbalancers",
    ];
    STANDARD.contains(&name)
        || name.starts_with("hugepages-")
        || name.starts_with("requests.hugepages-")
}

/// Extended resources: vendor-domained, not `requests.`-prefixed.
fn is_extended_resource(name: &str) -> bool {
    !is_native_resource(name)
        && !name.starts_with("requests.")
        && is_qualified_name(&format!("requests.{name}")).is_empty()
}

/// Resources whose requests may be below their limits.
fn overcommit_allowed(name: &str) -> bool {
    is_native_resource(name) && !name.starts_with("hugepages-")
}

/// Parses a quantity field, reporting unparsable values like upstream's decoder would.
pub(crate) fn parse_quantity(
    v: &Value,
    path: &str,
    errs: &mut Vec<FieldError>,
) -> Option<Quantity> {
    match quantity::from_json(v) {
        Ok(q) => Some(q),
        Err(e) => {
            errs.push(FieldError::invalid(path, v, e.to_string()));
            None
        }
    }
}

fn quantity_nonnegative(errs: &mut Vec<FieldError>, v: &Value, path: &str) -> Option<Quantity> {
    let q = parse_quantity(v, path, errs)?;
    if q.is_negative() {
        errs.push(FieldError::invalid(
            path,
            q.to_string(),
            "must be greater than or equal to 0",
        ));
    }
    Some(q)
}

/// Container `resources`: names, non-negative values, integer extended resources and
/// requests not above limits (equal for resources that cannot be overcommitted).
pub(crate) fn validate_resources(res: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let lim_path = child(path, "limits");
    let req_path = child(path, "requests");
    let mut limits = Vec::new();
    for (section, sp) in [("limits", &lim_path), ("requests", &req_path)] {
        let Some(map) = get_obj(res, section) else {
            continue;
        };
        for (name, v) in map {
            let fp = key(sp, name);
            let name_msgs = is_qualified_name(name);
            let name_ok = name_msgs.is_empty();
            push_msgs(errs, &fp, name, name_msgs);
            if name_ok && !name.contains('/') && !is_standard_resource_name(name) {
                errs.push(FieldError::invalid(
                    &fp,
                    name,
                    "must be a standard resource type or fully qualified",
                ));
            }
            if !name.contains('/') {
                let standard = matches!(name.as_str(), "cpu" | "memory" | "ephemeral-storage")
                    || name.starts_with("hugepages-");
                if !standard {
                    errs.push(FieldError::invalid(
                        &fp,
                        name,
                        "must be a standard resource for containers",
                    ));
                }
            } else if !is_native_resource(name) && !is_extended_resource(name) {
                errs.push(FieldError::invalid(
                    &fp,
                    name,
                    "doesn't follow extended resource name standard",
                ));
            }
            let Some(q) = quantity_nonnegative(errs, v, &fp) else {
                continue;
            };
            if is_extended_resource(name) && q.milli_value() % 1000 != 0 {
                errs.push(FieldError::invalid(
                    &fp,
                    q.to_string(),
                    "must be an integer",
                ));
            }
            if section == "limits" {
                limits.push((name.clone(), q));
            } else {
                match limits.iter().find(|(n, _)| n == name) {
                    Some((_, lim)) if &q != lim && !overcommit_allowed(name) => {
                        errs.push(FieldError::invalid(
                            &req_path,
                            q.to_string(),
                            format!("must be equal to {name} limit of {lim}"),
                        ))
                    }
                    Some((_, lim)) if &q > lim => errs.push(FieldError::invalid(
                        &req_path,
                        q.to_string(),
                        format!("must be less than or equal to {name} limit of {lim}"),
                    )),
                    Some(_) => {}
                    None if !overcommit_allowed(name) => errs.push(FieldError::required(
                        &lim_path,
                        "Limit must be set for non overcommitable resources",
                    )),
                    None => {}
                }
            }
        }
    }
}

fn validate_tolerations(tolerations: &[Value], path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, t) in tolerations.iter().enumerate() {
        let ip = index(path, i);
        let k = str_or_empty(t, "key");
        let op = str_or_empty(t, "operator");
        let effect = str_or_empty(t, "effect");
        if !k.is_empty() {
            push_msgs(&mut errs, &child(&ip, "key"), k, is_qualified_name(k));
        }
        if k.is_empty() && op != "Exists" {
            errs.push(FieldError::invalid(
                child(&ip, "operator"),
                op,
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            ));
        }
        if t.get("tolerationSeconds").is_some_and(|v| !v.is_null()) && effect != "NoExecute" {
            errs.push(FieldError::invalid(
                child(&ip, "effect"),
                effect,
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ));
        }
        let value = str_or_empty(t, "value");
        match op {
            "" | "Equal" => {
                let msgs = is_valid_label_value(value);
                if !msgs.is_empty() {
                    errs.push(FieldError::invalid(
                        child(&ip, "operator"),
                        value,
                        msgs.join(";"),
                    ));
                }
            }
            "Exists" => {
                if !value.is_empty() {
                    errs.push(FieldError::invalid(
                        child(&ip, "operator"),
                        t,
                        "value must be empty when `operator` is 'Exists'",
                    ));
                }
            }
            other => errs.push(FieldError::not_supported(
                child(&ip, "operator"),
                other,
                &["Equal", "Exists"],
            )),
        }
        if !effect.is_empty() && !["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&effect)
        {
            errs.push(FieldError::not_supported(
                child(&ip, "effect"),
                effect,
                &["NoSchedule", "PreferNoSchedule", "NoExecute"],
            ));
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn errs_of(spec: Value) -> Vec<String> {
        validate_pod_spec(&spec, "spec")
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn minimal_pod_is_valid() {
        let spec = json!({"containers": [{"name": "c", "image": "nginx", "ports": [{"containerPort": 80}]}]});
        assert_eq!(errs_of(spec), Vec::<String>::new());
    }

    #[test]
    fn containers() {
        assert_eq!(errs_of(json!({})), ["spec.containers: Required value"]);
        let e = errs_of(
            json!({"containers": [{"name": "c", "image": "x"}, {"name": "c"}, {"name": "Bad", "image": "x"}]}),
        );
        assert!(e.contains(&"spec.containers[1].name: Duplicate value: \"c\"".to_string()));
        assert!(e.contains(&"spec.containers[1].image: Required value".to_string()));
        assert!(e.iter().any(|m| m.starts_with(
            "spec.containers[2].name: Invalid value: \"Bad\": a lowercase RFC 1123 label"
        )));
        let e = errs_of(json!({
            "initContainers": [{"name": "c", "image": "x", "restartPolicy": "Never"}],
            "containers": [{"name": "c", "image": "x", "restartPolicy": "Always"}]
        }));
        assert!(e.contains(&"spec.initContainers[0].restartPolicy: Unsupported value: \"Never\": supported values: \"Always\"".to_string()));
        assert!(e.contains(&"spec.containers[0].name: Duplicate value: \"c\"".to_string()));
        assert!(e.contains(
            &"spec.containers[0].restartPolicy: Forbidden: may not be set for non-init containers"
                .to_string()
        ));
    }

    #[test]
    fn ports_env_enums() {
        let e = errs_of(json!({
            "restartPolicy": "Sometimes",
            "containers": [{
                "name": "c", "image": "x",
                "ports": [{"containerPort": 70000, "protocol": "ICMP", "name": "http"}, {"containerPort": 1, "name": "http"}],
                "env": [{"name": ""}, {"name": "A=B"}, {"name": "X", "value": "1", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]
            }]
        }));
        assert!(e.contains(&"spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive".to_string()));
        assert!(e.contains(&"spec.containers[0].ports[0].protocol: Unsupported value: \"ICMP\": supported values: \"SCTP\", \"TCP\", \"UDP\"".to_string()));
        assert!(
            e.contains(&"spec.containers[0].ports[1].name: Duplicate value: \"http\"".to_string())
        );
        assert!(e.contains(&"spec.containers[0].env[0].name: Required value".to_string()));
        assert!(e
            .iter()
            .any(|m| m.starts_with("spec.containers[0].env[1].name: Invalid value: \"A=B\"")));
        assert!(e.contains(&"spec.containers[0].env[2].valueFrom: Invalid value: \"\": may not be specified when `value` is not empty".to_string()));
        assert!(e.contains(&"spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"".to_string()));
    }

    #[test]
    fn volumes_and_mounts() {
        let e = errs_of(json!({
            "volumes": [
                {"name": "a", "emptyDir": {}},
                {"name": "a", "emptyDir": {}},
                {"name": "b"},
                {"name": "c", "emptyDir": {}, "hostPath": {"path": "/x"}},
                {"name": "d", "secret": {}}
            ],
            "containers": [{"name": "c", "image": "x", "volumeMounts": [
                {"name": "a", "mountPath": "/a"},
                {"name": "zz", "mountPath": "/a"},
                {"name": "a", "mountPath": "/b", "subPath": "../x"}
            ]}]
        }));
        assert!(e.contains(&"spec.volumes[1].name: Duplicate value: \"a\"".to_string()));
        assert!(
            e.contains(&"spec.volumes[2]: Required value: must specify a volume type".to_string())
        );
        assert!(e.contains(
            &"spec.volumes[3].hostPath: Forbidden: may not specify more than 1 volume type"
                .to_string()
        ));
        assert!(e.contains(&"spec.volumes[4].secret.secretName: Required value".to_string()));
        assert!(
            e.contains(&"spec.containers[0].volumeMounts[1].name: Not found: \"zz\"".to_string())
        );
        assert!(e.contains(
            &"spec.containers[0].volumeMounts[1].mountPath: Invalid value: \"/a\": must be unique"
                .to_string()
        ));
        assert!(e.contains(&"spec.containers[0].volumeMounts[2].subPath: Invalid value: \"../x\": must not contain '..'".to_string()));
    }

    #[test]
    fn resources() {
        let e = errs_of(
            json!({"containers": [{"name": "c", "image": "x", "resources": {
                "limits": {"cpu": "500m", "memory": "1Gi", "example.com/gpu": "1"},
                "requests": {"cpu": "1", "memory": "-1", "example.com/gpu": "2", "bogus": "1", "example.com/dev": "1"}
            }}]}),
        );
        assert!(e.contains(&"spec.containers[0].resources.requests: Invalid value: \"1\": must be less than or equal to cpu limit of 500m".to_string()));
        assert!(e.contains(&"spec.containers[0].resources.requests[memory]: Invalid value: \"-1\": must be greater than or equal to 0".to_string()));
        assert!(e.contains(&"spec.containers[0].resources.requests: Invalid value: \"2\": must be equal to example.com/gpu limit of 1".to_string()));
        assert!(e.contains(&"spec.containers[0].resources.requests[bogus]: Invalid value: \"bogus\": must be a standard resource type or fully qualified".to_string()));
        assert!(e.contains(&"spec.containers[0].resources.requests[bogus]: Invalid value: \"bogus\": must be a standard resource for containers".to_string()));
        assert!(e.contains(&"spec.containers[0].resources.limits: Required value: Limit must be set for non overcommitable resources".to_string()));
        let e = errs_of(
            json!({"containers": [{"name": "c", "image": "x", "resources": {"limits": {"cpu": "1ki"}}}]}),
        );
        assert!(e[0].contains("unable to parse quantity's suffix"));
    }

    #[test]
    fn tolerations_and_misc() {
        let e = errs_of(json!({
            "containers": [{"name": "c", "image": "x"}],
            "activeDeadlineSeconds": 0,
            "nodeSelector": {"bad key": "v"},
            "tolerations": [
                {"operator": "Equal", "value": "x"},
                {"key": "k", "operator": "Exists", "value": "v"},
                {"key": "k", "effect": "Sometimes"},
                {"key": "k", "effect": "NoSchedule", "tolerationSeconds": 5}
            ]
        }));
        assert!(e.contains(&"spec.activeDeadlineSeconds: Invalid value: 0: must be between 1 and 2147483647, inclusive".to_string()));
        assert!(e
            .iter()
            .any(|m| m.starts_with("spec.nodeSelector: Invalid value: \"bad key\"")));
        assert!(e.iter().any(|m| m.starts_with(
            "spec.tolerations[0].operator: Invalid value: \"Equal\": operator must be Exists"
        )));
        assert!(e.iter().any(
            |m| m.starts_with("spec.tolerations[1].operator: Invalid value:")
                && m.ends_with("value must be empty when `operator` is 'Exists'")
        ));
        assert!(
            e.iter()
                .any(|m| m
                    .starts_with("spec.tolerations[2].effect: Unsupported value: \"Sometimes\""))
        );
        assert!(e.contains(&"spec.tolerations[3].effect: Invalid value: \"NoSchedule\": effect must be 'NoExecute' when `tolerationSeconds` is set".to_string()));
    }

    #[test]
    fn host_network_ports() {
        let e = errs_of(
            json!({"hostNetwork": true, "containers": [{"name": "c", "image": "x",
            "ports": [{"containerPort": 80, "hostPort": 81}, {"containerPort": 90}]}]}),
        );
        assert_eq!(e, ["spec.containers[0].ports[0].containerPort: Invalid value: 80: must match `hostPort` when `hostNetwork` is true"]);
    }
}
