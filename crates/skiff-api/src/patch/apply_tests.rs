//! Tests for server-side apply and update tracking.

use super::*;
use serde_json::json;

const T0: &str = "2025-01-01T00:00:00Z";
const T1: &str = "2025-01-01T00:01:00Z";

fn deploy_meta() -> PatchMeta {
    patch_meta_for("apps/v1", "Deployment").unwrap()
}

fn deployment(replicas: i64, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "nginx", "image": image}]}
            }
        }
    })
}

fn managers(obj: &Value) -> Vec<(String, String)> {
    obj["metadata"]["managedFields"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    (
                        e["manager"].as_str().unwrap().to_string(),
                        e["operation"].as_str().unwrap().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn create_by_apply_records_fields_v1() {
    let out = apply_at(
        None,
        &deployment(2, "nginx:1"),
        "kubectl",
        false,
        deploy_meta(),
        T0,
    )
    .unwrap();
    assert_eq!(out["spec"]["replicas"], 2);
    let mf = &out["metadata"]["managedFields"][0];
    assert_eq!(mf["manager"], "kubectl");
    assert_eq!(mf["operation"], "Apply");
    assert_eq!(mf["apiVersion"], "apps/v1");
    assert_eq!(mf["time"], T0);
    assert_eq!(mf["fieldsType"], "FieldsV1");
    assert_eq!(
        mf["fieldsV1"],
        json!({
            "f:metadata": {"f:labels": {"f:app": {}}},
            "f:spec": {
                "f:replicas": {},
                "f:selector": {},
                "f:template": {
                    "f:metadata": {"f:labels": {"f:app": {}}},
                    "f:spec": {"f:containers": {"k:{\"name\":\"nginx\"}": {
                        ".": {}, "f:image": {}, "f:name": {}
                    }}}
                }
            }
        })
    );
}

#[test]
fn reapply_changes_own_fields_without_conflict() {
    let live = apply_at(
        None,
        &deployment(2, "nginx:1"),
        "kubectl",
        false,
        deploy_meta(),
        T0,
    )
    .unwrap();
    let out = apply_at(
        Some(&live),
        &deployment(3, "nginx:2"),
        "kubectl",
        false,
        deploy_meta(),
        T1,
    )
    .unwrap();
    assert_eq!(out["spec"]["replicas"], 3);
    assert_eq!(
        out["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:2"
    );
    assert_eq!(
        managers(&out),
        [("kubectl".to_string(), "Apply".to_string())]
    );
    assert_eq!(out["metadata"]["managedFields"][0]["time"], T1);
}

#[test]
fn noop_apply_keeps_object_identical() {
    let live = apply_at(
        None,
        &deployment(2, "nginx:1"),
        "kubectl",
        false,
        deploy_meta(),
        T0,
    )
    .unwrap();
    let out = apply_at(
        Some(&live),
        &deployment(2, "nginx:1"),
        "kubectl",
        false,
        deploy_meta(),
        T1,
    )
    .unwrap();
    assert_eq!(out, live);
}

#[test]
fn scale_after_apply_conflicts_then_force_moves_ownership() {
    let live = apply_at(
        None,
        &deployment(2, "nginx:1"),
        "kubectl",
        false,
        deploy_meta(),
        T0,
    )
    .unwrap();
    let mut scaled = live.clone();
    scaled["spec"]["replicas"] = json!(5);
    record_update_at(
        Some(&live),
        &mut scaled,
        "kubectl-scale",
        "Update",
        None,
        T1,
    );
    assert_eq!(
        managers(&scaled),
        [
            ("kubectl".to_string(), "Apply".to_string()),
            ("kubectl-scale".to_string(), "Update".to_string())
        ]
    );
    assert_eq!(
        scaled["metadata"]["managedFields"][1]["fieldsV1"],
        json!({"f:spec": {"f:replicas": {}}})
    );
    // The applier no longer owns replicas.
    let apply_fields = &scaled["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"];
    assert!(apply_fields.get("f:replicas").is_none());

    let err = apply_at(
        Some(&scaled),
        &deployment(3, "nginx:1"),
        "kubectl",
        false,
        deploy_meta(),
        T1,
    )
    .unwrap_err();
    assert_eq!(err.status_code(), 409);
    assert_eq!(
        err.to_string(),
        "Apply failed with 1 conflict: conflict with \"kubectl-scale\" using apps/v1: .spec.replicas"
    );
    let ApplyError::Conflicts(c) = &err else {
        panic!("expected conflicts")
    };
    assert_eq!(
        c[0].message(),
        "conflict with \"kubectl-scale\" using apps/v1"
    );
    assert_eq!(c[0].field, ".spec.replicas");

    // Applying the value the other manager set is shared ownership, not a conflict.
    let shared = apply_at(
        Some(&scaled),
        &deployment(5, "nginx:1"),
        "kubectl",
        false,
        deploy_meta(),
        T1,
    )
    .unwrap();
    assert_eq!(managers(&shared).len(), 2);

    let forced = apply_at(
        Some(&scaled),
        &deployment(3, "nginx:1"),
        "kubectl",
        true,
        deploy_meta(),
        T1,
    )
    .unwrap();
    assert_eq!(forced["spec"]["replicas"], 3);
    assert_eq!(
        managers(&forced),
        [("kubectl".to_string(), "Apply".to_string())]
    );
}

#[test]
fn dropping_a_field_from_config_removes_it_unless_shared() {
    let mut cfg = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "c"}, "data": {"a": "1", "b": "2", "c": "3"}});
    let meta = patch_meta_for("v1", "ConfigMap").unwrap();
    let live = apply_at(None, &cfg, "mgr-a", false, meta.clone(), T0).unwrap();
    // Another applier also sets c to the same value: shared ownership.
    let other = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "c"}, "data": {"c": "3"}});
    let live = apply_at(Some(&live), &other, "mgr-b", false, meta.clone(), T0).unwrap();
    cfg["data"] = json!({"a": "1"});
    let out = apply_at(Some(&live), &cfg, "mgr-a", false, meta, T1).unwrap();
    assert_eq!(out["data"], json!({"a": "1", "c": "3"}));
}

#[test]
fn removing_a_container_from_config_removes_it() {
    let mut two = deployment(1, "nginx:1");
    two["spec"]["template"]["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "sidecar", "image": "busybox"}));
    let mut live = apply_at(None, &two, "kubectl", false, deploy_meta(), T0).unwrap();
    // Defaulting on the server adds fields nobody applied.
    live["spec"]["template"]["spec"]["containers"][1]["terminationMessagePath"] =
        json!("/dev/termination-log");
    let out = apply_at(
        Some(&live),
        &deployment(1, "nginx:1"),
        "kubectl",
        false,
        deploy_meta(),
        T1,
    )
    .unwrap();
    let containers = out["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap();
    assert_eq!(containers.len(), 1);
    assert_eq!(containers[0]["name"], "nginx");
}

#[test]
fn client_side_apply_owner_conflicts_on_configmap() {
    let meta = patch_meta_for("v1", "ConfigMap").unwrap();
    let mut created = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "c", "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
        "data": {"key": "old", "other": "x"}});
    record_update_at(
        None,
        &mut created,
        "kubectl-client-side-apply",
        "Update",
        None,
        T0,
    );
    assert_eq!(
        created["metadata"]["managedFields"][0]["fieldsV1"],
        json!({"f:data": {"f:key": {}, "f:other": {}},
               "f:metadata": {"f:annotations": {"f:kubectl.kubernetes.io/last-applied-configuration": {}}}})
    );
    let applied = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "c"}, "data": {"key": "new", "other": "y"}});
    let err = apply_at(Some(&created), &applied, "kubectl", false, meta, T1).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Apply failed with 2 conflicts: conflicts with \"kubectl-client-side-apply\" using v1:\n- .data.key\n- .data.other"
    );
    assert_eq!(err.reason(), "Conflict");
}

#[test]
fn service_ports_keyed_by_port_and_default_protocol() {
    let meta = patch_meta_for("v1", "Service").unwrap();
    let mut live = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
        "spec": {"ports": [{"port": 80, "protocol": "TCP", "targetPort": 8080}]}});
    record_update_at(None, &mut live, "creator", "Update", None, T0);
    let applied = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
        "spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}]}});
    let out = apply_at(Some(&live), &applied, "kubectl", false, meta, T1).unwrap();
    let ports = out["spec"]["ports"].as_array().unwrap();
    assert_eq!(ports.len(), 2);
    assert_eq!(ports[0]["protocol"], "TCP");
    assert_eq!(ports[1]["port"], 443);
    let applier = out["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["manager"] == "kubectl")
        .unwrap();
    assert!(applier["fieldsV1"]["f:spec"]["f:ports"]
        .get("k:{\"port\":443,\"protocol\":\"TCP\"}")
        .is_some());
}

#[test]
fn untracked_live_object_is_owned_before_first_apply() {
    let live = deployment(2, "nginx:1");
    let err = apply_at(
        Some(&live),
        &deployment(4, "nginx:1"),
        "kubectl",
        false,
        deploy_meta(),
        T0,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Apply failed with 1 conflict: conflict with \"before-first-apply\" using apps/v1: .spec.replicas"
    );
}

#[test]
fn bad_apply_configs() {
    let bad = json!({"metadata": {"managedFields": [{}]}});
    let err = apply_at(None, &bad, "m", false, deploy_meta(), T0).unwrap_err();
    assert_eq!(
        (err.status_code(), err.to_string().as_str()),
        (400, "metadata.managedFields must be nil")
    );
    assert!(apply_at(None, &json!([1]), "m", false, deploy_meta(), T0).is_err());
}

#[test]
fn update_tracking_reset_and_removal() {
    let mut obj = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
        "data": {"a": "1"}});
    record_update_at(None, &mut obj, "m1", "Update", None, T0);
    let mut next = obj.clone();
    next["data"] = json!({"b": "2"});
    record_update_at(Some(&obj), &mut next, "m2", "Update", None, T1);
    // m1's only field was removed, so its entry disappears.
    assert_eq!(managers(&next), [("m2".to_string(), "Update".to_string())]);

    let mut reset = next.clone();
    reset["metadata"]["managedFields"] = json!([]);
    record_update_at(Some(&next), &mut reset, "m3", "Update", None, T1);
    assert!(reset["metadata"].get("managedFields").is_none());
}

#[test]
fn finalizers_are_owned_per_value() {
    let meta = deploy_meta();
    let a = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "finalizers": ["x"]}});
    let live = apply_at(None, &a, "ma", false, meta.clone(), T0).unwrap();
    let b = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "finalizers": ["y"]}});
    let live = apply_at(Some(&live), &b, "mb", false, meta.clone(), T0).unwrap();
    assert_eq!(live["metadata"]["finalizers"], json!(["x", "y"]));
    let a2 = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}});
    let out = apply_at(Some(&live), &a2, "ma", false, meta, T1).unwrap();
    assert_eq!(out["metadata"]["finalizers"], json!(["y"]));
}

#[test]
fn options_subresource_and_ignored_fields() {
    let mut cfg = deployment(2, "nginx:1");
    cfg["status"] = json!({"replicas": 9});
    let opts = ApplyOptions {
        ignored_fields: vec!["status".into()],
        now: Some(T0.into()),
        ..ApplyOptions::default()
    };
    let out = apply_with(None, &cfg, "kubectl", deploy_meta(), &opts).unwrap();
    assert!(out.get("status").is_none());
    assert!(out["metadata"]["managedFields"][0]["fieldsV1"]
        .get("f:status")
        .is_none());

    let status = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "status": {"conditions": [{"type": "Available", "status": "True"}]}});
    let opts = ApplyOptions {
        subresource: Some("status".into()),
        now: Some(T1.into()),
        ..ApplyOptions::default()
    };
    let out = apply_with(Some(&out), &status, "ctrl", deploy_meta(), &opts).unwrap();
    let entry = out["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["manager"] == "ctrl")
        .unwrap();
    assert_eq!(entry["subresource"], "status");
    assert_eq!(
        entry["fieldsV1"]["f:status"],
        json!({"f:conditions": {"k:{\"type\":\"Available\"}": {".": {}, "f:status": {}, "f:type": {}}}})
    );
}
