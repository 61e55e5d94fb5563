//! What bootstrap tokens and nodes may do, until RBAC is enforced.
//!
//! - `system:bootstrappers` may create, get, list and watch CertificateSigningRequests, the
//!   rights of upstream's `system:node-bootstrapper` role, and nothing else.
//! - `system:nodes` (client certificates `system:node:<name>` / O `system:nodes`) get a fixed
//!   allow-list of the resources and verbs a kubelet uses. This is NOT upstream's Node
//!   authorizer and NodeRestriction admission: a node is not limited to its own Node object
//!   or to the pods, secrets and configmaps of pods bound to it. It is a coarse stand-in that
//!   keeps nodes away from everything else (RBAC objects, workloads, other credentials'
//!   approval, ...).
//! - Pods, as upstream's NodeRestriction admission: a node creates only mirror pods bound to
//!   itself and owned by its Node ([`admit_pod_create`]), and deletes only pods bound to
//!   itself ([`admit_pod_delete`]; the kubelet finalizes the deletion of every pod it ran).

use serde_json::Value;

use crate::auth::User;

/// The annotation that marks a mirror pod.
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// Every verb that reads.
const READ: &[&str] = &["get", "list", "watch"];
/// Reads and writes of an object the node owns (its Node, its Lease).
const OWN: &[&str] = &["get", "list", "watch", "create", "update", "patch", "delete"];
/// Status writes.
const STATUS: &[&str] = &["get", "update", "patch"];

/// `(group, resource or resource/subresource, verbs)` a node may use.
const NODE_RULES: &[(&str, &str, &[&str])] = &[
    ("", "nodes", OWN),
    ("", "nodes/status", STATUS),
    ("", "pods", &["get", "list", "watch", "create", "delete"]),
    ("", "pods/status", STATUS),
    ("", "pods/eviction", &["create"]),
    ("", "events", &["get", "list", "watch", "create", "update", "patch"]),
    ("", "configmaps", READ),
    ("", "secrets", READ),
    ("", "services", READ),
    ("", "endpoints", READ),
    ("", "namespaces", READ),
    ("", "serviceaccounts", READ),
    ("", "serviceaccounts/token", &["create"]),
    ("", "persistentvolumes", READ),
    ("", "persistentvolumeclaims", READ),
    ("", "persistentvolumeclaims/status", STATUS),
    ("coordination.k8s.io", "leases", OWN),
    ("events.k8s.io", "events", &["get", "list", "watch", "create", "update", "patch"]),
    ("discovery.k8s.io", "endpointslices", READ),
    ("networking.k8s.io", "networkpolicies", READ),
    // The built-in ingress controller runs in every node's agent.
    ("networking.k8s.io", "ingresses", READ),
    ("networking.k8s.io", "ingressclasses", READ),
    ("node.k8s.io", "runtimeclasses", READ),
    ("storage.k8s.io", "csidrivers", READ),
    ("storage.k8s.io", "csinodes", OWN),
    ("storage.k8s.io", "volumeattachments", READ),
    ("certificates.k8s.io", "certificatesigningrequests", &["get", "list", "watch", "create"]),
    ("authentication.k8s.io", "tokenreviews", &["create"]),
    ("authorization.k8s.io", "subjectaccessreviews", &["create"]),
];

/// `(group, resource, verbs)` a bootstrap token may use.
const BOOTSTRAPPER_RULES: &[(&str, &str, &[&str])] =
    &[("certificates.k8s.io", "certificatesigningrequests", &["get", "list", "watch", "create"])];

fn in_group(user: &User, group: &str) -> bool {
    user.groups.iter().any(|g| g == group)
}

fn matches(rules: &[(&str, &str, &[&str])], group: &str, resource: &str, verb: &str) -> bool {
    rules.iter().any(|(g, r, verbs)| *g == group && *r == resource && verbs.contains(&verb))
}

/// Whether `user` may `verb` the `resource` (plural, or `plural/subresource`) of API `group`.
pub fn allows(user: &User, group: &str, resource: &str, verb: &str) -> bool {
    if in_group(user, crate::bootstrap_token::BOOTSTRAPPERS) && matches(BOOTSTRAPPER_RULES, group, resource, verb) {
        return true;
    }
    // Both the group and the name shape, as upstream's Node authorizer identifies nodes.
    in_group(user, "system:nodes") && user.name.starts_with("system:node:") && matches(NODE_RULES, group, resource, verb)
}

/// The node a user is (`system:node:<name>` in group `system:nodes`), if it is one.
pub fn node_name(user: &User) -> Option<&str> {
    if !in_group(user, "system:nodes") {
        return None;
    }
    user.name.strip_prefix("system:node:").filter(|n| !n.is_empty())
}

/// NodeRestriction on pod creation: nodes may only create mirror pods bound to themselves,
/// owned by their own Node, referring to no secrets, configmaps or claims. The error is the
/// admission message; other users are not restricted here.
pub fn admit_pod_create(user: &User, pod: &Value) -> Result<(), String> {
    let Some(node) = node_name(user) else { return Ok(()) };
    if pod.pointer("/metadata/annotations").and_then(|a| a.get(MIRROR_ANNOTATION)).is_none() {
        return Err(format!("pod does not have \"{MIRROR_ANNOTATION}\" annotation, node \"{node}\" can only create mirror pods"));
    }
    if pod.pointer("/spec/nodeName").and_then(Value::as_str) != Some(node) {
        return Err(format!("node \"{node}\" can only create pods with spec.nodeName set to itself"));
    }
    let owners = pod.pointer("/metadata/ownerReferences").and_then(Value::as_array).cloned().unwrap_or_default();
    match owners.as_slice() {
        [] => return Err(format!("node \"{node}\" can only create pods with an owner reference set to itself")),
        [owner] => {
            let own = owner.get("apiVersion").and_then(Value::as_str) == Some("v1")
                && owner.get("kind").and_then(Value::as_str) == Some("Node")
                && owner.get("name").and_then(Value::as_str) == Some(node);
            if !own {
                return Err(format!("node \"{node}\" can only create pods with an owner reference set to itself"));
            }
        }
        _ => return Err(format!("node \"{node}\" can only create pods with a single owner reference set to itself")),
    }
    for volume in pod.pointer("/spec/volumes").and_then(Value::as_array).into_iter().flatten() {
        for (field, what) in [("secret", "secrets"), ("configMap", "configmaps"), ("persistentVolumeClaim", "persistentvolumeclaims")] {
            if volume.get(field).is_some() {
                return Err(format!("node \"{node}\" can not create pods that reference {what}"));
            }
        }
    }
    Ok(())
}

/// NodeRestriction on pod deletion: a node deletes only pods bound to itself.
pub fn admit_pod_delete(user: &User, pod: &Value) -> Result<(), String> {
    let Some(node) = node_name(user) else { return Ok(()) };
    if pod.pointer("/spec/nodeName").and_then(Value::as_str) != Some(node) {
        return Err(format!("node \"{node}\" can only delete pods with spec.nodeName set to itself"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mirror(node: &str) -> Value {
        json!({
            "metadata": {"name": "web-n1", "annotations": {MIRROR_ANNOTATION: "abc"},
                         "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": node, "uid": "u", "controller": true}]},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i"}]}
        })
    }

    #[test]
    fn nodes_create_only_their_own_mirror_pods() {
        let n = node();
        assert_eq!(admit_pod_create(&n, &mirror("n1")), Ok(()));
        let mut plain = mirror("n1");
        plain["metadata"]["annotations"] = json!({});
        assert!(admit_pod_create(&n, &plain).unwrap_err().contains("can only create mirror pods"));
        let mut elsewhere = mirror("n1");
        elsewhere["spec"]["nodeName"] = json!("n2");
        assert!(admit_pod_create(&n, &elsewhere).unwrap_err().contains("spec.nodeName set to itself"));
        assert!(admit_pod_create(&n, &mirror("n2")).is_err(), "owned by another node");
        let mut orphan = mirror("n1");
        orphan["metadata"]["ownerReferences"] = json!([]);
        assert!(admit_pod_create(&n, &orphan).unwrap_err().contains("owner reference"));
        let mut secret = mirror("n1");
        secret["spec"]["volumes"] = json!([{"name": "s", "secret": {"secretName": "x"}}]);
        assert!(admit_pod_create(&n, &secret).unwrap_err().contains("reference secrets"));
        let admin = User::new("system:admin", &["system:masters".to_string()]);
        assert_eq!(admit_pod_create(&admin, &plain), Ok(()), "the admin is not restricted");
    }

    #[test]
    fn nodes_delete_only_pods_bound_to_themselves() {
        let n = node();
        assert_eq!(admit_pod_delete(&n, &mirror("n1")), Ok(()));
        assert!(admit_pod_delete(&n, &mirror("n2")).unwrap_err().contains("can only delete pods"));
        assert!(admit_pod_delete(&n, &json!({"spec": {}})).is_err());
        let admin = User::new("system:admin", &["system:masters".to_string()]);
        assert_eq!(admit_pod_delete(&admin, &mirror("n2")), Ok(()));
    }

    fn node() -> User {
        User::new("system:node:n1", &["system:nodes".to_string()])
    }

    fn bootstrapper() -> User {
        User::new("system:bootstrap:abcdef", &["system:bootstrappers".to_string()])
    }

    #[test]
    fn bootstrappers_only_handle_csrs() {
        let b = bootstrapper();
        for verb in ["create", "get", "list", "watch"] {
            assert!(allows(&b, "certificates.k8s.io", "certificatesigningrequests", verb), "{verb}");
        }
        assert!(!allows(&b, "certificates.k8s.io", "certificatesigningrequests", "delete"));
        assert!(!allows(&b, "certificates.k8s.io", "certificatesigningrequests/approval", "update"));
        assert!(!allows(&b, "", "nodes", "create"));
        assert!(!allows(&b, "", "secrets", "get"));
    }

    #[test]
    fn nodes_get_their_allow_list_and_nothing_more() {
        let n = node();
        assert!(allows(&n, "", "nodes", "create"));
        assert!(allows(&n, "", "pods/status", "patch"));
        assert!(allows(&n, "coordination.k8s.io", "leases", "update"));
        assert!(allows(&n, "", "serviceaccounts/token", "create"));
        assert!(!allows(&n, "", "pods", "update"));
        assert!(!allows(&n, "", "secrets", "create"));
        assert!(!allows(&n, "apps", "deployments", "list"));
        assert!(!allows(&n, "rbac.authorization.k8s.io", "clusterroles", "get"));
        assert!(!allows(&n, "certificates.k8s.io", "certificatesigningrequests/approval", "update"));
    }

    #[test]
    fn the_group_without_the_node_name_shape_is_not_a_node() {
        let odd = User::new("alice", &["system:nodes".to_string()]);
        assert!(!allows(&odd, "", "nodes", "create"));
        let plain = User::new("system:node:n1", &[]);
        assert!(!allows(&plain, "", "nodes", "create"));
    }
}
