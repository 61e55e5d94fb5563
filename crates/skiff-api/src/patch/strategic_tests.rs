//! Tests for strategic merge patch, kept apart so `strategic.rs` stays readable.

use super::*;
use crate::patch::patch_meta::patch_meta_for;
use serde_json::json;

fn deploy() -> PatchMeta {
    patch_meta_for("apps/v1", "Deployment").unwrap()
}

fn pod() -> PatchMeta {
    patch_meta_for("v1", "Pod").unwrap()
}

fn smp(doc: Value, patch: Value, meta: PatchMeta) -> Value {
    strategic_merge_patch(&doc, &patch, meta).unwrap()
}

fn pod_with(containers: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
           "spec": {"containers": containers}})
}

#[test]
fn containers_merge_by_name() {
    let doc = pod_with(json!([
        {"name": "a", "image": "a:1", "env": [{"name": "X", "value": "1"}]},
        {"name": "b", "image": "b:1"}
    ]));
    let patch = json!({"spec": {"containers": [
        {"name": "a", "image": "a:2", "env": [{"name": "Y", "value": "2"}]}
    ]}});
    let out = smp(doc, patch, pod());
    assert_eq!(
        out["spec"]["containers"],
        json!([
            {"name": "a", "image": "a:2", "env": [{"name": "Y", "value": "2"}, {"name": "X", "value": "1"}]},
            {"name": "b", "image": "b:1"}
        ])
    );
}

#[test]
fn new_list_items_without_order_directive_go_first_as_upstream() {
    let doc = pod_with(json!([{"name": "a", "image": "a"}]));
    let out = smp(
        doc,
        json!({"spec": {"containers": [{"name": "b", "image": "b"}]}}),
        pod(),
    );
    assert_eq!(
        out["spec"]["containers"],
        json!([{"name": "b", "image": "b"}, {"name": "a", "image": "a"}])
    );
}

#[test]
fn set_element_order_controls_final_order() {
    let doc = pod_with(json!([{"name": "a", "image": "a"}, {"name": "c", "image": "c"}]));
    let patch = json!({"spec": {
        "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}],
        "containers": [{"name": "b", "image": "b"}]
    }});
    let out = smp(doc, patch, pod());
    let names: Vec<_> = out["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["a", "b", "c"]);
    assert!(out["spec"].get("$setElementOrder/containers").is_none());
}

#[test]
fn kubectl_apply_style_patch_with_deletion() {
    let doc = pod_with(json!([
        {"name": "a", "image": "a:1"},
        {"name": "b", "image": "b:1"}
    ]));
    let patch = json!({"spec": {
        "$setElementOrder/containers": [{"name": "a"}],
        "containers": [{"name": "a", "image": "a:2"}, {"$patch": "delete", "name": "b"}]
    }});
    let out = smp(doc, patch, pod());
    assert_eq!(
        out["spec"]["containers"],
        json!([{"name": "a", "image": "a:2"}])
    );
}

#[test]
fn patch_directives_in_lists_and_maps() {
    let doc = pod_with(json!([{"name": "a", "image": "a"}, {"name": "b", "image": "b"}]));
    let out = smp(
        doc.clone(),
        json!({"spec": {"containers": [{"name": "z", "image": "z"}, {"$patch": "replace"}]}}),
        pod(),
    );
    assert_eq!(
        out["spec"]["containers"],
        json!([{"name": "z", "image": "z"}])
    );

    let out = smp(
        doc.clone(),
        json!({"metadata": {"$patch": "delete"}, "spec": {"$patch": "replace", "nodeName": "n"}}),
        pod(),
    );
    assert_eq!(out["metadata"], json!({}));
    assert_eq!(out["spec"], json!({"nodeName": "n"}));

    let err = strategic_merge_patch(
        &doc,
        &json!({"spec": {"containers": [{"$patch": "merge"}]}}),
        pod(),
    )
    .unwrap_err();
    assert!(err
        .to_string()
        .contains("merging lists cannot yet be specified"));
    let err = strategic_merge_patch(&doc, &json!({"spec": {"$patch": "frob"}}), pod()).unwrap_err();
    assert!(err.to_string().starts_with("unknown patch type: frob"));
    assert_eq!(err.status_code(), 500);
}

#[test]
fn null_deletes_and_unknown_fields_merge() {
    let doc =
        json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"x": {"y": 1, "z": 2}}});
    let patch = json!({"metadata": {"labels": {"a": null, "c": "3"}}, "spec": {"x": {"z": null, "w": 3}, "gone": null}});
    let out = smp(doc, patch, deploy());
    assert_eq!(
        out,
        json!({"metadata": {"labels": {"b": "2", "c": "3"}}, "spec": {"x": {"y": 1, "w": 3}}})
    );
}

#[test]
fn non_merging_lists_are_replaced() {
    let doc = pod_with(json!([{"name": "a", "args": ["1", "2"]}]));
    let patch = json!({"spec": {"containers": [{"name": "a", "args": ["3"]}], "tolerations": [{"key": "k"}]}});
    let out = smp(doc, patch, pod());
    assert_eq!(out["spec"]["containers"][0]["args"], json!(["3"]));
    assert_eq!(out["spec"]["tolerations"], json!([{"key": "k"}]));
}

#[test]
fn finalizers_are_a_set() {
    let doc = json!({"metadata": {"finalizers": ["a", "b"]}});
    let out = smp(
        doc.clone(),
        json!({"metadata": {"finalizers": ["b", "c"]}}),
        deploy(),
    );
    assert_eq!(out["metadata"]["finalizers"], json!(["a", "b", "c"]));
    let out = smp(
        doc,
        json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
        deploy(),
    );
    assert_eq!(out["metadata"]["finalizers"], json!(["b"]));
    let err = strategic_merge_patch(
        &json!({}),
        &json!({"metadata": {"$deleteFromPrimitiveListfinalizers": ["a"]}}),
        deploy(),
    )
    .unwrap_err();
    assert_eq!(err.to_string(), "invalid patch format of primitive list");
}

#[test]
fn retain_keys_switches_volume_source() {
    let doc = json!({"spec": {"volumes": [{"name": "v", "emptyDir": {}}]}});
    let patch = json!({"spec": {"volumes": [
        {"name": "v", "hostPath": {"path": "/x"}, "$retainKeys": ["hostPath", "name"]}
    ]}});
    let out = smp(doc.clone(), patch, pod());
    assert_eq!(
        out["spec"]["volumes"],
        json!([{"name": "v", "hostPath": {"path": "/x"}}])
    );

    let bad =
        json!({"spec": {"volumes": [{"name": "v", "hostPath": {}, "$retainKeys": ["name"]}]}});
    let err = strategic_merge_patch(&doc, &bad, pod()).unwrap_err();
    assert_eq!(err.to_string(), "invalid patch format of retainKeys");
    assert_eq!(err.status_code(), 400);
}

#[test]
fn deployment_strategy_retain_keys() {
    let doc =
        json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}});
    let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}});
    assert_eq!(
        smp(doc, patch, deploy())["spec"]["strategy"],
        json!({"type": "Recreate"})
    );
}

#[test]
fn merge_key_is_required() {
    let doc = pod_with(json!([{"name": "a"}]));
    let err = strategic_merge_patch(
        &doc,
        &json!({"spec": {"containers": [{"image": "x"}]}}),
        pod(),
    )
    .unwrap_err();
    assert_eq!(err.status_code(), 500);
    assert!(err
        .to_string()
        .contains("does not contain declared merge key: name"));
}

#[test]
fn service_ports_merge_by_port() {
    let svc = patch_meta_for("v1", "Service").unwrap();
    let doc = json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}]}});
    let out = smp(
        doc,
        json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}]}}),
        svc,
    );
    assert_eq!(
        out["spec"]["ports"],
        json!([{"port": 80, "targetPort": 9090}, {"port": 443}])
    );
}

#[test]
fn nested_template_lists_merge() {
    let doc = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "web", "ports": [{"containerPort": 80}], "volumeMounts": [{"mountPath": "/a", "name": "x"}]}
    ]}}}});
    let patch = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "web", "ports": [{"containerPort": 81}], "volumeMounts": [{"mountPath": "/a", "readOnly": true}]}
    ]}}}});
    let out = smp(doc, patch, deploy());
    let c = &out["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        c["ports"],
        json!([{"containerPort": 81}, {"containerPort": 80}])
    );
    assert_eq!(
        c["volumeMounts"],
        json!([{"mountPath": "/a", "name": "x", "readOnly": true}])
    );
}

#[test]
fn directives_are_stripped_from_new_values() {
    let doc = json!({"metadata": {"name": "d"}});
    let patch = json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "a"}],
        "containers": [{"name": "a", "env": [{"name": "X", "value": "1"}, {"$patch": "delete", "name": "Y"}]}]
    }}}});
    let out = smp(doc, patch, deploy());
    assert_eq!(
        out["spec"],
        json!({"template": {"spec": {"containers": [{"name": "a", "env": [{"name": "X", "value": "1"}]}]}}})
    );
}

#[test]
fn type_changes_replace_and_errors() {
    let out = smp(
        json!({"a": [1]}),
        json!({"a": {"b": 1}}),
        PatchMeta::deduced(),
    );
    assert_eq!(out, json!({"a": {"b": 1}}));
    let err = strategic_merge_patch(&json!({}), &json!([1]), PatchMeta::deduced()).unwrap_err();
    assert_eq!(err.status_code(), 400);
    let doc = json!({"metadata": {"finalizers": ["a"]}});
    let err = strategic_merge_patch(
        &doc,
        &json!({"metadata": {"finalizers": [["x"]]}}),
        deploy(),
    )
    .unwrap_err();
    assert_eq!(err.to_string(), "lists of lists are not supported");
}

#[test]
fn set_element_order_mismatch_is_rejected() {
    let doc = pod_with(json!([{"name": "a"}, {"name": "b"}]));
    let patch = json!({"spec": {
        "$setElementOrder/containers": [{"name": "a"}],
        "containers": [{"name": "b", "image": "x"}]
    }});
    assert!(strategic_merge_patch(&doc, &patch, pod()).is_err());
}

#[test]
fn primitive_set_with_order() {
    let doc = json!({"metadata": {"finalizers": ["a", "b", "c"]}});
    let patch = json!({"metadata": {
        "$setElementOrder/finalizers": ["c", "a"],
        "$deleteFromPrimitiveList/finalizers": ["b"]
    }});
    let out = smp(doc, patch, deploy());
    assert_eq!(out["metadata"]["finalizers"], json!(["c", "a"]));
}

fn env_names(v: &Value) -> Vec<String> {
    v["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn patch_order_wins_for_patched_items_and_live_order_for_the_rest() {
    let doc = pod_with(json!([{"name": "c", "env": [
        {"name": "A"}, {"name": "B", "value": "b"}, {"name": "C"}
    ]}]));
    let patch = json!({"spec": {"containers": [{"name": "c", "env": [
        {"name": "C", "value": "c"}, {"name": "A", "value": "a"}
    ]}]}});
    let out = smp(doc, patch, pod());
    assert_eq!(env_names(&out), ["B", "C", "A"]);
    assert_eq!(out["spec"]["containers"][0]["env"][0]["value"], "b");
}

#[test]
fn set_element_order_may_name_absent_items() {
    let doc = pod_with(json!([{"name": "c", "env": [{"name": "A"}, {"name": "C"}]}]));
    let patch = json!({"spec": {"containers": [{"name": "c",
        "$setElementOrder/env": [{"name": "C"}, {"name": "B"}, {"name": "A"}],
        "env": [{"name": "C", "value": "3"}, {"name": "A", "value": "1"}]
    }]}});
    let out = smp(doc, patch, pod());
    assert_eq!(env_names(&out), ["C", "A"]);
}

#[test]
fn deleting_removes_every_duplicate() {
    let doc = pod_with(json!([{"name": "c", "env": [
        {"name": "A"}, {"name": "A"}, {"name": "B", "value": "x"}
    ]}]));
    let patch = json!({"spec": {"containers": [{"name": "c", "env": [{"name": "A", "$patch": "delete"}]}]}});
    let out = smp(doc, patch, pod());
    assert_eq!(
        out["spec"]["containers"][0]["env"],
        json!([{"name": "B", "value": "x"}])
    );
}

#[test]
fn delete_from_primitive_list_never_adds() {
    let doc = json!({"metadata": {"finalizers": ["a"]}, "spec": {}});
    let out = smp(
        doc,
        json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["zz"]},
               "spec": {"$deleteFromPrimitiveList/podCIDRs": ["10.0.0.0/24"]}}),
        patch_meta_for("v1", "Node").unwrap(),
    );
    assert_eq!(out, json!({"metadata": {"finalizers": ["a"]}, "spec": {}}));
}

#[test]
fn map_replace_directive_keeps_only_patch_keys() {
    let doc = json!({"metadata": {"labels": {"a": "1", "b": "2"}}});
    let out = smp(
        doc,
        json!({"metadata": {"labels": {"c": "3", "$patch": "replace"}}}),
        deploy(),
    );
    assert_eq!(out["metadata"]["labels"], json!({"c": "3"}));
}

#[test]
fn retain_keys_without_directive_merges_normally() {
    let doc = json!({"spec": {"volumes": [{"name": "v", "configMap": {"name": "x"}}]}});
    let patch = json!({"spec": {"volumes": [{"name": "v", "configMap": {"optional": true}}]}});
    let out = smp(doc, patch, pod());
    assert_eq!(
        out["spec"]["volumes"],
        json!([{"name": "v", "configMap": {"name": "x", "optional": true}}])
    );
}

#[test]
fn pdb_selector_is_replaced() {
    let pdb = patch_meta_for("policy/v1", "PodDisruptionBudget").unwrap();
    let doc = json!({"spec": {"selector": {"matchLabels": {"a": "1"}}}});
    let out = smp(
        doc,
        json!({"spec": {"selector": {"matchLabels": {"b": "2"}}}}),
        pdb,
    );
    assert_eq!(out["spec"]["selector"], json!({"matchLabels": {"b": "2"}}));
}
