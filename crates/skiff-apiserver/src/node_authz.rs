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

use crate::auth::User;

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

#[cfg(test)]
mod tests {
    use super::*;

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
