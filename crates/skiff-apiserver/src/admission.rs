//! What happens to an object between decoding and storing: system metadata (uid, timestamps,
//! generation, generateName), upstream defaults, status rules (status is written only through
//! the status subresource), validation, and allocation of Service ClusterIPs and NodePorts.
//! LimitRanger ([`limit_ranger`]) and ResourceQuota ([`resource_quota`], called by the write
//! handlers next to the store write) live in submodules.

mod limit_ranger;
pub mod presence;
pub mod priority_classes;
pub mod resource_quota;

use std::collections::HashSet;
use std::net::Ipv4Addr;

use rand::Rng;
use serde_json::{json, Value};
use skiff_api::status::{ApiError, Cause};
use skiff_api::{meta, ResourceInfo};

use crate::resources::Served;
use crate::Server;

pub mod priority;

/// Kinds whose `metadata.generation` tracks spec changes, as upstream's strategies do.
fn tracks_generation(info: &ResourceInfo) -> bool {
    info.custom
        || matches!(
            (info.group.as_str(), info.kind.as_str()),
            ("apps", _)
                | ("batch", _)
                | ("", "ReplicationController")
                | ("autoscaling", _)
                | ("policy", "PodDisruptionBudget")
                | ("networking.k8s.io", "Ingress" | "NetworkPolicy")
                | ("apiextensions.k8s.io", _)
                | ("admissionregistration.k8s.io", _)
                | ("flowcontrol.apiserver.k8s.io", _)
        )
}

/// Kinds whose status is cleared on create (the controllers own it).
fn resets_status_on_create(info: &Served) -> bool {
    if info.info.kind == "Node" || info.info.kind == "CustomResourceDefinition" {
        return false;
    }
    info.info.has_subresource("status")
}

const NAME_CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn random_suffix() -> String {
    let mut rng = rand::rng();
    (0..5).map(|_| NAME_CHARS[rng.random_range(0..NAME_CHARS.len())] as char).collect()
}

/// Whether two objects agree on everything but metadata and status (a spec change).
fn same_spec_part(a: &Value, b: &Value) -> bool {
    meta::same_except(a, b, &["metadata", "status", "kind", "apiVersion"])
}

/// Prepare a new object for storage.
pub async fn prepare_create(srv: &Server, served: &Served, obj: &mut Value, ns: Option<&str>) -> Result<(), ApiError> {
    let info = &served.info;
    if let Some(m) = obj.as_object_mut() {
        m.insert("kind".into(), json!(info.kind));
        m.insert("apiVersion".into(), json!(info.api_version()));
    }
    {
        let m = meta::metadata_mut(obj);
        if m.get("name").and_then(Value::as_str).unwrap_or("").is_empty() {
            match m.get("generateName").and_then(Value::as_str).filter(|g| !g.is_empty()) {
                Some(g) => {
                    let n = format!("{g}{}", random_suffix());
                    m.insert("name".into(), json!(n));
                }
                None => {
                    return Err(ApiError::invalid(
                        &info.group,
                        &info.kind,
                        "",
                        vec![Cause { reason: "FieldValueRequired".into(), message: "Required value: name or generateName is required".into(), field: "metadata.name".into() }],
                    ))
                }
            }
        }
        m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        m.insert("creationTimestamp".into(), json!(meta::now_rfc3339()));
        m.remove("deletionTimestamp");
        m.remove("deletionGracePeriodSeconds");
        m.remove("resourceVersion");
        m.remove("selfLink");
        if tracks_generation(info) {
            m.insert("generation".into(), json!(1));
        } else {
            m.remove("generation");
        }
        if info.namespaced() {
            m.insert("namespace".into(), json!(ns.unwrap_or("default")));
        } else {
            m.remove("namespace");
        }
    }
    if info.namespaced() {
        let ns_name = meta::namespace(obj).unwrap_or("default").to_string();
        check_namespace(srv, &ns_name).await?;
    }
    if resets_status_on_create(served) {
        if let Some(m) = obj.as_object_mut() {
            m.remove("status");
        }
    }
    if info.group.is_empty() && info.kind == "Secret" {
        merge_string_data(obj);
    }
    skiff_api::defaults::apply(&info.group, &info.kind, obj);
    priority::admit(srv, info, obj).await?;
    match (info.group.as_str(), info.kind.as_str()) {
        ("", "Pod") => {
            default_toleration_seconds(obj, srv.config.default_toleration_seconds);
            // ServiceAccount admission: the bound token volume, unless the pod or its
            // ServiceAccount opts out. (Upstream also refuses pods whose ServiceAccount does
            // not exist yet; skiff lets them through, the kubelet's token request fails
            // until the account appears.)
            // Mirror pods (static pods shown by their node) get no service account, as upstream.
            let mirror = obj.pointer("/metadata/annotations/kubernetes.io~1config.mirror").is_some();
            if !mirror {
                let ns_name = meta::namespace(obj).unwrap_or("default").to_string();
                let sa_name = obj.pointer("/spec/serviceAccountName").and_then(Value::as_str).unwrap_or("default").to_string();
                let sa_info = srv.resources.find("", "v1", "serviceaccounts").expect("serviceaccounts are built in");
                let sa = srv.objects.try_get(&sa_info.info, Some(&ns_name), &sa_name).await.ok().flatten();
                let automount = sa.as_ref().and_then(|s| s.get("automountServiceAccountToken")).and_then(Value::as_bool);
                skiff_api::service_account::inject_service_account_volume(obj, automount);
            }
            limit_ranger::default_pod(srv, obj).await?;
            let qos = skiff_api::defaults::pod_qos(&obj["spec"]);
            obj["status"] = json!({"phase": "Pending", "qosClass": qos});
        }
        ("", "Namespace") => {
            obj["status"] = json!({"phase": "Active"});
            if obj.pointer("/spec/finalizers").is_none() {
                obj["spec"] = json!({"finalizers": ["kubernetes"]});
            }
        }
        ("", "PersistentVolumeClaim") => {
            obj["status"] = json!({"phase": "Pending"});
            default_storage_class(srv, obj).await?;
        }
        ("", "PersistentVolume") => obj["status"] = json!({"phase": "Pending"}),
        ("", "Service") => {
            obj["status"] = json!({"loadBalancer": {}});
            let _guard = srv.allocation.lock().await;
            allocate_service(srv, None, obj).await?;
        }
        ("apps", "Deployment" | "ReplicaSet" | "StatefulSet") => obj["status"] = json!({}),
        ("batch", "Job") => job_selector(obj),
        _ => {}
    }
    custom_resource(served, obj)?;
    validate(info, obj)?;
    limit_ranger::check(srv, info, obj, false).await
}

/// How long pods tolerate a not-ready or unreachable node before eviction (upstream: 300 s;
/// skiff: 30 s so pods of a dead node move within about a minute).
pub const DEFAULT_TOLERATION_SECONDS: i64 = 30;

/// DefaultTolerationSeconds admission: pods without their own not-ready/unreachable
/// NoExecute tolerations get them, bounded.
fn default_toleration_seconds(pod: &mut Value, seconds: i64) {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else { return };
    let tolerations = spec.entry("tolerations").or_insert_with(|| json!([]));
    let Some(list) = tolerations.as_array_mut() else { return };
    for key in ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"] {
        let covered = list.iter().any(|t| {
            let k = t.get("key").and_then(Value::as_str).unwrap_or("");
            let effect = t.get("effect").and_then(Value::as_str).unwrap_or("");
            (k == key || (k.is_empty() && t.get("operator") == Some(&json!("Exists")))) && (effect.is_empty() || effect == "NoExecute")
        });
        if !covered {
            list.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": seconds}));
        }
    }
}

/// A Secret's write-only `stringData` is merged into `data` (base64), as upstream.
fn merge_string_data(secret: &mut Value) {
    use base64::Engine;
    let Some(m) = secret.as_object_mut() else { return };
    let Some(Value::Object(string_data)) = m.remove("stringData") else { return };
    let data = m.entry("data").or_insert_with(|| json!({}));
    if !data.is_object() {
        *data = json!({});
    }
    for (k, v) in string_data {
        let text = v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
        data[k.as_str()] = json!(base64::engine::general_purpose::STANDARD.encode(text.as_bytes()));
    }
}

/// On a Service type change, clear what only the old type needed (upstream's
/// dropTypeDependentFields): node ports, external traffic policy, health check port.
fn drop_type_dependent_fields(old: &Value, new: &mut Value) {
    let old_type = old.pointer("/spec/type").and_then(Value::as_str).unwrap_or("ClusterIP");
    let new_type = new.pointer("/spec/type").and_then(Value::as_str).unwrap_or("ClusterIP").to_string();
    if old_type == new_type {
        return;
    }
    let external = new_type == "NodePort" || new_type == "LoadBalancer";
    let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) else { return };
    if !external {
        if spec.get("externalTrafficPolicy") == old.pointer("/spec/externalTrafficPolicy") {
            spec.remove("externalTrafficPolicy");
        }
        spec.remove("healthCheckNodePort");
        if let Some(Value::Array(ports)) = spec.get_mut("ports") {
            for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                p.remove("nodePort");
            }
        }
    }
    if new_type != "LoadBalancer" {
        spec.remove("allocateLoadBalancerNodePorts");
        spec.remove("loadBalancerClass");
    }
}

/// Jobs without `manualSelector` get upstream's generated selector and template labels.
fn job_selector(job: &mut Value) {
    if job.pointer("/spec/manualSelector") == Some(&json!(true)) {
        return;
    }
    let uid = meta::uid(job).to_string();
    let name = meta::name(job).to_string();
    let Some(spec) = job.get_mut("spec").and_then(Value::as_object_mut) else { return };
    spec.insert("selector".into(), json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}));
    let template = spec.entry("template").or_insert_with(|| json!({}));
    if !template.get("metadata").is_some_and(Value::is_object) {
        template["metadata"] = json!({});
    }
    if !template["metadata"].get("labels").is_some_and(Value::is_object) {
        template["metadata"]["labels"] = json!({});
    }
    let labels = template["metadata"]["labels"].as_object_mut().expect("object");
    labels.insert("batch.kubernetes.io/controller-uid".into(), json!(uid));
    labels.insert("batch.kubernetes.io/job-name".into(), json!(name));
    labels.insert("controller-uid".into(), json!(uid));
    labels.insert("job-name".into(), json!(name));
}

/// DefaultStorageClass admission: a claim with no `storageClassName` at all (an explicit
/// `""` means "no class" and is kept) gets the default class, the newest if several.
async fn default_storage_class(srv: &Server, obj: &mut Value) -> Result<(), ApiError> {
    if !obj.pointer("/spec/storageClassName").is_none_or(Value::is_null) {
        return Ok(());
    }
    let Some(classes) = srv.resources.find("storage.k8s.io", "v1", "storageclasses") else { return Ok(()) };
    let page = srv.objects.list(&classes.info, None, 0, None, None, &|c| {
        c.pointer("/metadata/annotations/storageclass.kubernetes.io~1is-default-class").and_then(Value::as_str) == Some("true")
    }).await?;
    let newest = page.items.iter().max_by_key(|c| c.pointer("/metadata/creationTimestamp").and_then(Value::as_str).unwrap_or("").to_string());
    if let (Some(class), Some(spec)) = (newest, obj.get_mut("spec").and_then(Value::as_object_mut)) {
        spec.insert("storageClassName".into(), json!(meta::name(class)));
    }
    Ok(())
}

async fn check_namespace(srv: &Server, ns: &str) -> Result<(), ApiError> {
    let ns_info = srv.resources.find("", "v1", "namespaces").expect("namespaces are built in");
    match srv.objects.try_get(&ns_info.info, None, ns).await? {
        None => Err(ApiError::not_found("", "namespaces", ns)),
        Some(n) if meta::is_deleting(&n) => Err(ApiError::forbidden(format!(
            "unable to create new content in namespace {ns} because it is being terminated"
        ))),
        Some(_) => Ok(()),
    }
}

/// Carry system-owned fields from `old` into `new` on update and apply status rules.
/// `subresource` is `Some("status")` for status writes.
pub async fn prepare_update(
    srv: &Server,
    served: &Served,
    old: &Value,
    new: &mut Value,
    subresource: Option<&str>,
) -> Result<(), ApiError> {
    let info = &served.info;
    if let Some(m) = new.as_object_mut() {
        m.insert("kind".into(), json!(info.kind));
        m.insert("apiVersion".into(), json!(info.api_version()));
    }
    let has_status = info.has_subresource("status");
    if subresource == Some("status") {
        // Status writes change status only (and never spec or metadata other than what the
        // controllers may touch).
        let status = new.get("status").cloned();
        let mut merged = old.clone();
        match status {
            Some(s) => merged["status"] = s,
            None => {
                if let Some(m) = merged.as_object_mut() {
                    m.remove("status");
                }
            }
        }
        *new = merged;
    } else if has_status && subresource != Some("binding") {
        // (pods/binding writes the PodScheduled condition along with spec.nodeName.)
        match old.get("status") {
            Some(s) => new["status"] = s.clone(),
            None => {
                if let Some(m) = new.as_object_mut() {
                    m.remove("status");
                }
            }
        }
    }
    // Borrowed, not cloned: the old metadata carries managedFields, and copying it on every
    // update showed in profiles.
    let no_meta = Value::Null;
    let old_meta = old.get("metadata").unwrap_or(&no_meta);
    {
        let m = meta::metadata_mut(new);
        for k in ["uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"] {
            match old_meta.get(k) {
                Some(v) => m.insert(k.to_string(), v.clone()),
                None => m.remove(k),
            };
        }
        if let Some(ns) = old_meta.get("namespace") {
            m.insert("namespace".into(), ns.clone());
        }
        // Once deleting, finalizers may only be removed, never added.
        if old_meta.get("deletionTimestamp").is_some() {
            let old_f: HashSet<String> = meta::finalizers(old).into_iter().collect();
            let new_f = m.get("finalizers").and_then(Value::as_array).cloned().unwrap_or_default();
            if new_f.iter().any(|f| !old_f.contains(f.as_str().unwrap_or(""))) {
                return Err(ApiError::forbidden(format!(
                    "{} \"{}\" is forbidden: no new finalizers can be added if the object is being deleted",
                    info.group_resource(),
                    meta::name(old)
                )));
            }
        }
    }
    if info.group.is_empty() && info.kind == "Secret" {
        merge_string_data(new);
    }
    if info.group.is_empty() && info.kind == "Service" && subresource.is_none() {
        drop_type_dependent_fields(old, new);
    }
    skiff_api::defaults::apply(&info.group, &info.kind, new);
    if tracks_generation(info) && !same_spec_part(old, new) {
        let g = old_meta.get("generation").and_then(Value::as_i64).unwrap_or(0);
        meta::metadata_mut(new).insert("generation".into(), json!(g + 1));
    }
    match (info.group.as_str(), info.kind.as_str()) {
        ("", "Service") if subresource.is_none() => {
            let _guard = srv.allocation.lock().await;
            allocate_service(srv, Some(old), new).await?;
        }
        ("", "Namespace") if subresource.is_none() => {
            new["spec"] = old.get("spec").cloned().unwrap_or(json!({}));
        }
        _ => {}
    }
    custom_resource(served, new)?;
    match subresource {
        // Spec writes get full update validation (immutable fields included); subresource
        // writes (status, binding, approval, ...) change only what their handler allows.
        None => {
            to_result(info, new, skiff_api::validation::validate_update(&info.group, &info.kind, old, new))?;
            limit_ranger::check(srv, info, new, true).await
        }
        Some(_) => Ok(()),
    }
}




/// Upstream validation of a new object (skiff-api's validation module): 422 with field causes.
pub fn validate(info: &ResourceInfo, obj: &Value) -> Result<(), ApiError> {
    let mut errs = skiff_api::validation::validate(&info.group, &info.kind, obj);
    if info.group == "apiextensions.k8s.io" && info.kind == "CustomResourceDefinition" {
        errs.extend(skiff_api::crd_schema::validate_crd(obj));
    }
    to_result(info, obj, errs)
}

/// Custom resources: prune unknown fields, apply schema defaults, then validate against the
/// CRD version's structural schema, in upstream's order.
pub fn custom_resource(served: &Served, obj: &mut Value) -> Result<(), ApiError> {
    custom_resource_with(served, obj, FieldValidation::Ignore)
}

/// `fieldValidation` query parameter: what to do with fields the schema does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValidation {
    /// Drop them silently.
    Ignore,
    /// Drop them (the server would warn).
    Warn,
    /// Refuse the request with 400.
    Strict,
}

impl FieldValidation {
    /// From the query value (upstream's default is Warn when absent).
    pub fn parse(v: Option<&str>) -> Self {
        match v {
            Some("Strict") => Self::Strict,
            Some("Ignore") => Self::Ignore,
            _ => Self::Warn,
        }
    }
}

/// Like [`custom_resource`], refusing unknown fields under `Strict`.
pub fn custom_resource_with(served: &Served, obj: &mut Value, fv: FieldValidation) -> Result<(), ApiError> {
    let Some(schema) = served.custom.as_ref().and_then(|c| c.schema.as_ref()) else { return Ok(()) };
    if fv == FieldValidation::Strict {
        let mut probe = obj.clone();
        let dropped = skiff_api::crd_schema::prune_unknown_fields(&mut probe, schema);
        if !dropped.is_empty() {
            let list: Vec<String> = dropped.iter().map(|f| format!("unknown field \"{f}\"")).collect();
            return Err(ApiError::bad_request(format!("strict decoding error: {}", list.join(", "))));
        }
    }
    skiff_api::crd_schema::prune(obj, schema);
    skiff_api::crd_schema::apply_defaults(obj, schema);
    to_result(&served.info, obj, skiff_api::crd_schema::validate(obj, schema))
}

fn to_result(info: &ResourceInfo, obj: &Value, errs: Vec<skiff_api::validation::FieldError>) -> Result<(), ApiError> {
    if errs.is_empty() {
        return Ok(());
    }
    let causes = errs
        .iter()
        .map(|e| Cause { reason: e.reason.as_str().to_string(), message: e.body(), field: e.field.clone() })
        .collect();
    Err(ApiError::invalid(&info.group, &info.kind, meta::name(obj), causes))
}

/// Assign ClusterIP and NodePorts to a Service, keeping what `old` had; refuse conflicts.
async fn allocate_service(srv: &Server, old: Option<&Value>, svc: &mut Value) -> Result<(), ApiError> {
    let info = srv.resources.find("", "v1", "services").expect("services are built in").info;
    let name = meta::name(svc).to_string();
    let invalid = |field: &str, msg: String| {
        ApiError::invalid("", "Service", &name, vec![Cause { reason: "FieldValueInvalid".into(), message: msg, field: field.into() }])
    };
    let ty = svc.pointer("/spec/type").and_then(Value::as_str).unwrap_or("ClusterIP").to_string();
    // Everything allocated by other Services.
    let page = srv.objects.list(&info, None, 0, None, None, &|_| true).await?;
    let my_uid = old.map(|o| meta::uid(o).to_string());
    let mut used_ips = HashSet::new();
    let mut used_ports = HashSet::new();
    for s in page.items.iter().filter(|s| Some(meta::uid(s).to_string()) != my_uid) {
        if let Some(ip) = s.pointer("/spec/clusterIP").and_then(Value::as_str) {
            used_ips.insert(ip.to_string());
        }
        for p in s.pointer("/spec/ports").and_then(Value::as_array).into_iter().flatten() {
            if let Some(np) = p.get("nodePort").and_then(Value::as_u64) {
                used_ports.insert(np as u16);
            }
        }
    }
    let spec = svc.get_mut("spec").and_then(Value::as_object_mut).ok_or_else(|| invalid("spec", "Required value".into()))?;
    if ty == "ExternalName" {
        spec.remove("clusterIP");
        spec.remove("clusterIPs");
        return Ok(());
    }
    let old_ip = old.and_then(|o| o.pointer("/spec/clusterIP")).and_then(Value::as_str).map(str::to_string);
    let requested = spec.get("clusterIP").and_then(Value::as_str).unwrap_or("").to_string();
    let ip = if requested == "None" {
        "None".to_string()
    } else if let Some(o) = old_ip.filter(|o| !o.is_empty()) {
        if !requested.is_empty() && requested != o {
            return Err(invalid("spec.clusterIPs[0]", format!("Invalid value: []string{{\"{requested}\"}}: may not change once set")));
        }
        o
    } else if !requested.is_empty() {
        let parsed: Ipv4Addr = requested.parse().map_err(|_| invalid("spec.clusterIPs", format!("Invalid value: []string{{\"{requested}\"}}: must be a valid IP address")))?;
        if !in_cidr(parsed, srv.config.service_cidr) {
            return Err(invalid("spec.clusterIPs", format!("Invalid value: []string{{\"{requested}\"}}: failed to allocate IP {requested}: the provided IP ({requested}) is not in the valid range. The range of valid IPs is {}/{}", srv.config.service_cidr.0, srv.config.service_cidr.1)));
        }
        if used_ips.contains(&requested) {
            return Err(invalid("spec.clusterIPs", format!("Invalid value: []string{{\"{requested}\"}}: failed to allocate IP {requested}: provided IP is already allocated")));
        }
        requested
    } else {
        pick_ip(srv.config.service_cidr, &used_ips).ok_or_else(|| ApiError::internal("failed to allocate a serviceIP: range is full"))?.to_string()
    };
    spec.insert("clusterIP".into(), json!(ip));
    spec.insert("clusterIPs".into(), json!([ip]));
    // Single-stack IPv4, headless or not.
    spec.entry("ipFamilies").or_insert(json!(["IPv4"]));
    spec.entry("ipFamilyPolicy").or_insert(json!("SingleStack"));
    let wants_node_ports = ty == "NodePort" || (ty == "LoadBalancer" && spec.get("allocateLoadBalancerNodePorts") != Some(&json!(false)));
    let (lo, hi) = srv.config.node_port_range;
    let old_ports: Vec<Value> = old.and_then(|o| o.pointer("/spec/ports")).and_then(Value::as_array).cloned().unwrap_or_default();
    if let Some(Value::Array(ports)) = spec.get_mut("ports") {
        let mut mine = HashSet::new();
        for (i, p) in ports.iter_mut().enumerate() {
            let Some(pm) = p.as_object_mut() else { continue };
            if !wants_node_ports {
                pm.remove("nodePort");
                continue;
            }
            let requested = pm.get("nodePort").and_then(Value::as_u64).map(|n| n as u16);
            let previous = old_ports
                .iter()
                .find(|op| op.get("port") == pm.get("port") && op.get("protocol") == pm.get("protocol"))
                .and_then(|op| op.get("nodePort"))
                .and_then(Value::as_u64)
                .map(|n| n as u16);
            let port = match requested.or(previous) {
                Some(n) => {
                    if n < lo || n > hi {
                        return Err(invalid(&format!("spec.ports[{i}].nodePort"), format!("Invalid value: {n}: provided port is not in the valid range. The range of valid ports is {lo}-{hi}")));
                    }
                    if used_ports.contains(&n) || mine.contains(&n) {
                        return Err(invalid(&format!("spec.ports[{i}].nodePort"), format!("Invalid value: {n}: provided port is already allocated")));
                    }
                    n
                }
                None => {
                    let mut rng = rand::rng();
                    let mut pick = None;
                    for _ in 0..1000 {
                        let n = rng.random_range(lo..=hi);
                        if !used_ports.contains(&n) && !mine.contains(&n) {
                            pick = Some(n);
                            break;
                        }
                    }
                    pick.or_else(|| (lo..=hi).find(|n| !used_ports.contains(n) && !mine.contains(n)))
                        .ok_or_else(|| ApiError::internal("failed to allocate a nodePort: range is full"))?
                }
            };
            mine.insert(port);
            pm.insert("nodePort".into(), json!(port));
        }
    }
    Ok(())
}

fn in_cidr(ip: Ipv4Addr, (base, bits): (Ipv4Addr, u8)) -> bool {
    let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
    (u32::from(ip) & mask) == (u32::from(base) & mask)
}

fn pick_ip((base, bits): (Ipv4Addr, u8), used: &HashSet<String>) -> Option<Ipv4Addr> {
    let size = 1u32 << (32 - bits as u32);
    let base = u32::from(base);
    let mut rng = rand::rng();
    // Random probing first (like upstream's allocator), then a scan when the range is crowded.
    // Offsets 1..=10 stay reserved for well-known services (kubernetes, DNS).
    for _ in 0..256 {
        let off = rng.random_range(11..size - 1);
        let ip = Ipv4Addr::from(base + off);
        if !used.contains(&ip.to_string()) {
            return Some(ip);
        }
    }
    (11..size - 1).map(|o| Ipv4Addr::from(base + o)).find(|ip| !used.contains(&ip.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_part_ignores_metadata_status_and_type() {
        let a = json!({"kind": "Deployment", "apiVersion": "apps/v1", "metadata": {"name": "a"}, "spec": {"replicas": 1}, "status": {}});
        let relabelled = json!({"kind": "Deployment", "metadata": {"name": "a", "labels": {"x": "y"}}, "spec": {"replicas": 1}});
        assert!(same_spec_part(&a, &relabelled));
        let scaled = json!({"metadata": {"name": "a"}, "spec": {"replicas": 2}});
        assert!(!same_spec_part(&a, &scaled));
        let extra = json!({"metadata": {"name": "a"}, "spec": {"replicas": 1}, "template": {}});
        assert!(!same_spec_part(&a, &extra) && !same_spec_part(&extra, &a));
    }

    #[test]
    fn cidr_membership() {
        let cidr = (Ipv4Addr::new(10, 43, 0, 0), 16);
        assert!(in_cidr(Ipv4Addr::new(10, 43, 200, 1), cidr));
        assert!(!in_cidr(Ipv4Addr::new(10, 44, 0, 1), cidr));
        let used: HashSet<String> = HashSet::new();
        let ip = pick_ip(cidr, &used).unwrap();
        assert!(in_cidr(ip, cidr));
    }
}
