//! End-to-end, real kubectl: taint, cordon and uncordon on a Node object the test creates,
//! with the node's status set through the status subresource.

mod kubectl_common;

use kubectl_common::{cluster, heartbeat, ok_stdin};

fn node_status(c: &skiff_testkit::Cluster, name: &str) -> String {
    let out = c.ok(&["get", "node", name, "--no-headers"]).unwrap();
    out.split_whitespace().nth(1).unwrap().to_string()
}

#[test]
fn taint_cordon_uncordon_a_node() {
    let c = cluster();
    ok_stdin(&c, &["create", "-f", "-"], "apiVersion: v1\nkind: Node\nmetadata:\n  name: worker-1\n  labels:\n    kubernetes.io/hostname: worker-1\n    kubernetes.io/os: linux\n");
    // No Ready condition yet: upstream prints Unknown.
    assert_eq!(node_status(&c, "worker-1"), "Unknown");
    c.ok(&["patch", "node", "worker-1", "--subresource=status", "--type=merge", "-p", &heartbeat(r#"{"status":{"conditions":[{"type":"Ready","status":"True","reason":"KubeletReady","message":"ready","lastHeartbeatTime":"HEARTBEAT","lastTransitionTime":"2026-01-01T00:00:00Z"}],"nodeInfo":{"kubeletVersion":"v1.33.1"}}}"#)]).unwrap();
    assert_eq!(node_status(&c, "worker-1"), "Ready");
    let table = c.ok(&["get", "nodes"]).unwrap();
    assert!(table.contains("v1.33.1"), "VERSION column: {table}");
    // Status cannot be written through the main resource.
    c.ok(&["patch", "node", "worker-1", "--type=merge", "-p", r#"{"status":{"conditions":[{"type":"Ready","status":"False","reason":"Nope"}]}}"#]).unwrap();
    assert_eq!(node_status(&c, "worker-1"), "Ready");

    // Taints.
    assert_eq!(c.ok(&["taint", "nodes", "worker-1", "dedicated=db:NoSchedule"]).unwrap().trim(), "node/worker-1 tainted");
    c.ok(&["taint", "nodes", "worker-1", "gpu:NoExecute"]).unwrap();
    let n = c.json(&["get", "node", "worker-1"]).unwrap();
    let taints = n["spec"]["taints"].as_array().unwrap();
    assert_eq!(taints.len(), 2, "{taints:?}");
    assert!(taints.iter().any(|t| t["key"] == "dedicated" && t["value"] == "db" && t["effect"] == "NoSchedule"), "{taints:?}");
    let gpu = taints.iter().find(|t| t["key"] == "gpu").unwrap();
    assert_eq!(gpu["effect"], "NoExecute");
    // The same key and effect again needs --overwrite.
    let e = c.fails(&["taint", "nodes", "worker-1", "dedicated=web:NoSchedule"]).unwrap();
    assert!(e.contains("already has dedicated taint(s) with same effect(s) and --overwrite is false"), "{e}");
    c.ok(&["taint", "nodes", "worker-1", "dedicated=web:NoSchedule", "--overwrite"]).unwrap();
    assert_eq!(c.ok(&["get", "node", "worker-1", "-o", "jsonpath={.spec.taints[?(@.key==\"dedicated\")].value}"]).unwrap(), "web");
    // An invalid effect is refused by the server's validation.
    let e = c.fails(&["patch", "node", "worker-1", "--type=merge", "-p", r#"{"spec":{"taints":[{"key":"k","effect":"Sometimes"}]}}"#]).unwrap();
    assert!(e.contains("spec.taints[0].effect") && e.contains("Unsupported value"), "{e}");
    let described = c.ok(&["describe", "node", "worker-1"]).unwrap();
    assert!(described.contains("dedicated=web:NoSchedule") && described.contains("gpu:NoExecute"), "{described}");
    // Removal.
    assert_eq!(c.ok(&["taint", "nodes", "worker-1", "dedicated:NoSchedule-"]).unwrap().trim(), "node/worker-1 untainted");
    c.ok(&["taint", "nodes", "worker-1", "gpu-"]).unwrap();
    let n = c.json(&["get", "node", "worker-1"]).unwrap();
    assert!(n["spec"].get("taints").is_none_or(|t| t.as_array().unwrap().is_empty()), "{n}");

    // Cordon.
    assert_eq!(c.ok(&["cordon", "worker-1"]).unwrap().trim(), "node/worker-1 cordoned");
    assert_eq!(c.json(&["get", "node", "worker-1"]).unwrap()["spec"]["unschedulable"], true);
    assert_eq!(node_status(&c, "worker-1"), "Ready,SchedulingDisabled");
    assert_eq!(c.ok(&["cordon", "worker-1"]).unwrap().trim(), "node/worker-1 already cordoned");
    let described = c.ok(&["describe", "node", "worker-1"]).unwrap();
    assert!(described.lines().any(|l| l.starts_with("Unschedulable:") && l.trim_end().ends_with("true")), "{described}");
    // Uncordon.
    assert_eq!(c.ok(&["uncordon", "worker-1"]).unwrap().trim(), "node/worker-1 uncordoned");
    let n = c.json(&["get", "node", "worker-1"]).unwrap();
    assert!(n["spec"].get("unschedulable").is_none_or(|u| u == false), "{n}");
    assert_eq!(node_status(&c, "worker-1"), "Ready");

    // A node that is NotReady and cordoned, and selection by label.
    ok_stdin(&c, &["create", "-f", "-"], "apiVersion: v1\nkind: Node\nmetadata:\n  name: worker-2\n  labels:\n    pool: b\n");
    c.ok(&["patch", "node", "worker-2", "--subresource=status", "--type=merge", "-p", &heartbeat(r#"{"status":{"conditions":[{"type":"Ready","status":"False","reason":"KubeletNotReady","message":"down","lastHeartbeatTime":"HEARTBEAT","lastTransitionTime":"2026-01-01T00:00:00Z"}]}}"#)]).unwrap();
    c.ok(&["cordon", "-l", "pool=b"]).unwrap();
    assert_eq!(node_status(&c, "worker-2"), "NotReady,SchedulingDisabled");
    assert_eq!(node_status(&c, "worker-1"), "Ready");
    // Nodes are cluster-scoped: a namespace flag does not matter.
    assert!(c.ok(&["get", "nodes", "-n", "kube-system", "-o", "name"]).unwrap().contains("node/worker-2"));
    c.ok(&["delete", "node", "worker-2"]).unwrap();
    assert_eq!(c.ok(&["get", "nodes", "-o", "name"]).unwrap().trim(), "node/worker-1");
}

#[test]
fn node_names_and_roles() {
    let c = cluster();
    ok_stdin(&c, &["create", "-f", "-"], "apiVersion: v1\nkind: Node\nmetadata:\n  name: cp-1\n  labels:\n    node-role.kubernetes.io/control-plane: \"\"\n    node-role.kubernetes.io/master: \"\"\n");
    let table = c.ok(&["get", "nodes"]).unwrap();
    assert!(table.contains("control-plane,master"), "ROLES column: {table}");
    let bad = "apiVersion: v1\nkind: Node\nmetadata:\n  name: Bad_Node\n";
    let out = c.kubectl_stdin(&["create", "-f", "-"], bad).unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Invalid") || err.contains("invalid"), "{err}");
}
