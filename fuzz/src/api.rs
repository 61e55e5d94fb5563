//! Fuzz harnesses for the skiff-api decoders, parsers and patchers.
//!
//! One function per target: it takes arbitrary bytes, drives the function under test (and the
//! calls a server makes right after it, e.g. matching a parsed selector against an object) and
//! ignores every `Err`. The only failure is a panic. The cargo-fuzz targets in
//! `fuzz/fuzz_targets/` call these, and `crates/skiff-api/tests/fuzz_smoke.rs` includes this
//! file with `#[path]` for a bounded, deterministic run in the ordinary test suite, so both
//! exercise the same code.
//!
//! Two-document targets (patches, apply) split their input at the first NUL byte:
//! `doc \0 patch`. Without a NUL the whole input is the patch and the document is
//! [`deployment`].

use serde_json::{json, Value};
use skiff_api::patch::{self, ApplyOptions, PatchMeta};

/// Every target in this file, by name (the name of its directory under `fuzz/regressions/`).
pub const TARGETS: &[(&str, fn(&[u8]))] = &[
    ("protobuf_decode", protobuf_decode),
    ("json_patch", json_patch),
    ("merge_patch", merge_patch),
    ("strategic_merge_patch", strategic_merge_patch),
    ("server_side_apply", server_side_apply),
    ("label_selector", label_selector),
    ("field_selector", field_selector),
    ("quantity", quantity),
    ("jsonpath", jsonpath),
    ("validation", validation),
];

/// Fixed timestamp for managed fields, so runs are deterministic.
const NOW: &str = "2025-01-01T00:00:00Z";

/// Kinds whose validation and patch metadata the harnesses pick from.
pub const KINDS: &[(&str, &str)] = &[
    ("v1", "Pod"),
    ("v1", "Service"),
    ("v1", "ConfigMap"),
    ("v1", "Secret"),
    ("v1", "Namespace"),
    ("v1", "Node"),
    ("v1", "PersistentVolumeClaim"),
    ("v1", "PersistentVolume"),
    ("v1", "ReplicationController"),
    ("v1", "PodTemplate"),
    ("apps/v1", "Deployment"),
    ("apps/v1", "ReplicaSet"),
    ("apps/v1", "StatefulSet"),
    ("apps/v1", "DaemonSet"),
    ("batch/v1", "Job"),
    ("batch/v1", "CronJob"),
    ("networking.k8s.io/v1", "Ingress"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ("storage.k8s.io/v1", "StorageClass"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
    ("policy/v1", "PodDisruptionBudget"),
];

/// A Deployment as kubectl sends it: the default document for patches and selectors.
pub fn deployment() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web", "namespace": "default", "uid": "0b6e3f1c-0000-4000-8000-000000000001",
            "resourceVersion": "7", "generation": 1,
            "labels": {"app": "web", "tier": "frontend"},
            "annotations": {"deployment.kubernetes.io/revision": "1"},
            "managedFields": [{
                "manager": "kubectl", "operation": "Apply", "apiVersion": "apps/v1",
                "time": NOW, "fieldsType": "FieldsV1",
                "fieldsV1": {"f:spec": {"f:replicas": {}, "f:template": {"f:spec": {
                    "f:containers": {"k:{\"name\":\"nginx\"}": {".": {}, "f:image": {}, "f:name": {}}}
                }}}}
            }]
        },
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [{
                        "name": "nginx", "image": "nginx:1.25",
                        "ports": [{"containerPort": 80, "protocol": "TCP"}],
                        "env": [{"name": "A", "value": "1"}],
                        "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}}
                    }],
                    "volumes": [{"name": "data", "emptyDir": {}}]
                }
            }
        },
        "status": {"replicas": 3, "readyReplicas": 3}
    })
}

/// Splits `doc \0 rest`; without a NUL the whole input is `rest` and `doc` is `None`.
fn split(data: &[u8]) -> (Option<&[u8]>, &[u8]) {
    match data.iter().position(|b| *b == 0) {
        Some(i) => (Some(&data[..i]), &data[i + 1..]),
        None => (None, data),
    }
}

fn parse_json(data: &[u8]) -> Option<Value> {
    serde_json::from_slice(data).ok()
}

/// The document and patch of a two-document input (see the module docs).
fn doc_and_patch(data: &[u8]) -> Option<(Value, Value)> {
    let (doc, patch) = split(data);
    let doc = match doc {
        Some(d) => parse_json(d)?,
        None => deployment(),
    };
    Some((doc, parse_json(patch)?))
}

/// Patch metadata for the document's apiVersion/kind, the Deployment's for unknown kinds.
fn meta_for(doc: &Value) -> PatchMeta {
    let api_version = doc.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or("");
    patch::patch_meta_for(api_version, kind)
        .or_else(|| patch::patch_meta_for("apps/v1", "Deployment"))
        .expect("Deployment has patch metadata")
}

/// A cheap deterministic pick from the input, for choosing kinds and flags.
fn pick(data: &[u8], n: usize) -> usize {
    let h = data.iter().fold(data.len() as u64, |h, b| h.wrapping_mul(31).wrapping_add(*b as u64));
    (h % n as u64) as usize
}

/// `skiff_api::protobuf::decode`, then `encode` of whatever it decoded.
pub fn protobuf_decode(data: &[u8]) {
    if let Ok(v) = skiff_api::protobuf::decode(data) {
        let _ = skiff_api::protobuf::encode(&v);
    }
}

/// `skiff_api::patch::json_patch` (RFC 6902).
pub fn json_patch(data: &[u8]) {
    if let Some((doc, p)) = doc_and_patch(data) {
        let _ = patch::json_patch(&doc, &p);
    }
}

/// `skiff_api::patch::merge_patch` (RFC 7386).
pub fn merge_patch(data: &[u8]) {
    if let Some((doc, p)) = doc_and_patch(data) {
        let _ = patch::merge_patch(&doc, &p);
    }
}

/// `skiff_api::patch::strategic_merge_patch` with the document kind's patch metadata.
pub fn strategic_merge_patch(data: &[u8]) {
    if let Some((doc, p)) = doc_and_patch(data) {
        let _ = patch::strategic_merge_patch(&doc, &p, meta_for(&doc));
    }
}

/// Server-side apply (`apply_with`, as the API server calls it) of the patch onto the live
/// document (an empty document part means create), then `record_update_at` of an ordinary
/// update from the live object to the result.
pub fn server_side_apply(data: &[u8]) {
    let (live, applied) = split(data);
    let live = match live {
        Some([]) => None,
        Some(d) => match parse_json(d) {
            Some(v) => Some(v),
            None => return,
        },
        None => Some(deployment()),
    };
    let Some(applied) = parse_json(applied) else { return };
    let meta = meta_for(live.as_ref().unwrap_or(&applied));
    let opts = ApplyOptions {
        force: pick(data, 2) == 1,
        subresource: None,
        ignored_fields: vec!["status".to_string()],
        now: Some(NOW.to_string()),
    };
    if let Ok(mut out) = patch::apply_with(live.as_ref(), &applied, "fuzz", meta, &opts) {
        patch::record_update_at(live.as_ref(), &mut out, "other", "Update", None, NOW);
        patch::record_update_at(Some(&applied), &mut out, "status-writer", "Update", Some("status"), NOW);
    }
}

/// `LabelSelector::parse`, printing, reparsing and matching against a Deployment.
pub fn label_selector(data: &[u8]) {
    use skiff_api::selector::LabelSelector;
    let s = String::from_utf8_lossy(data);
    if let Ok(sel) = LabelSelector::parse(&s) {
        let printed = sel.to_string();
        let _ = LabelSelector::parse(&printed);
        let _ = sel.matches_object(&deployment());
        let _ = sel.exact_match("app");
    }
    if let Ok(v) = serde_json::from_slice::<Value>(data) {
        if let Ok(sel) = LabelSelector::from_json(&v) {
            let _ = sel.to_string();
            let _ = sel.matches_object(&deployment());
        }
    }
}

/// `FieldSelector::parse`, printing, per-resource validation and matching.
pub fn field_selector(data: &[u8]) {
    use skiff_api::selector::FieldSelector;
    let s = String::from_utf8_lossy(data);
    if let Ok(sel) = FieldSelector::parse(&s) {
        let _ = FieldSelector::parse(&sel.to_string());
        let obj = deployment();
        let _ = sel.matches_object(&obj);
        for (group, resource) in [("", "pods"), ("apps", "deployments"), ("", "events"), ("events.k8s.io", "events")] {
            if let Ok(v) = sel.validate_for(group, resource) {
                let _ = v.matches_object_for(group, resource, &obj);
            }
        }
    }
}

/// `Quantity::parse` and the arithmetic and printing the server does with quantities.
pub fn quantity(data: &[u8]) {
    use skiff_api::quantity::Quantity;
    let s = String::from_utf8_lossy(data);
    if let Ok(q) = Quantity::parse(&s) {
        let printed = q.to_string();
        let _ = Quantity::parse(&printed);
        let _ = (q.value(), q.milli_value(), q.as_f64(), q.is_zero(), q.is_negative(), q.format());
        let _ = q.add(&q).to_string();
        let _ = q.sub(&q).to_string();
        let _ = q.neg().to_string();
    }
}

/// `JsonPath::parse` and evaluation against a Deployment.
pub fn jsonpath(data: &[u8]) {
    use skiff_api::table::jsonpath::JsonPath;
    let s = String::from_utf8_lossy(data);
    if let Ok(p) = JsonPath::parse(&s) {
        let _ = p.find(&deployment());
    }
}

/// `validation::validate` for the object's own group/kind and for one picked from [`KINDS`],
/// and `validate_update` against itself.
pub fn validation(data: &[u8]) {
    use skiff_api::validation;
    let Some(obj) = parse_json(data) else { return };
    let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    let _ = validation::validate(group, kind, &obj);
    let (av, kind) = KINDS[pick(data, KINDS.len())];
    let group = av.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
    let _ = validation::validate(group, kind, &obj);
    let _ = validation::validate_update(group, kind, &obj, &obj);
}
