//! `rbac.authorization.k8s.io` kinds. Only bindings have printers upstream; roles and
//! cluster roles use the default `Name`/`Created At` table.

use serde_json::{json, Value};

use crate::table::format::{list, name, st, Ctx};
use crate::table::{col, wide, Column, Printer, Row, AGE, NAME};

static ROLE_BINDING_COLUMNS: [Column; 6] = [
    NAME,
    col("Role", "string", "RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace."),
    AGE,
    wide("Users", "string", "Users in the roleBinding"),
    wide("Groups", "string", "Groups in the roleBinding"),
    wide("ServiceAccounts", "string", "ServiceAccounts in the roleBinding"),
];

static CLUSTER_ROLE_BINDING_COLUMNS: [Column; 6] = [
    NAME,
    col(
        "Role",
        "string",
        "RoleRef can only reference a ClusterRole in the global namespace.",
    ),
    AGE,
    wide("Users", "string", "Users in the clusterRoleBinding"),
    wide("Groups", "string", "Groups in the clusterRoleBinding"),
    wide(
        "ServiceAccounts",
        "string",
        "ServiceAccounts in the clusterRoleBinding",
    ),
];

/// Printers of this file.
pub(crate) fn printer(group: &str, resource: &str) -> Option<Printer> {
    match (group, resource) {
        ("rbac.authorization.k8s.io", "rolebindings") => Some(Printer {
            columns: &ROLE_BINDING_COLUMNS,
            row: binding_row,
        }),
        ("rbac.authorization.k8s.io", "clusterrolebindings") => Some(Printer {
            columns: &CLUSTER_ROLE_BINDING_COLUMNS,
            row: binding_row,
        }),
        _ => None,
    }
}

fn binding_row(b: &Value, ctx: &Ctx) -> Row {
    let mut users: Vec<String> = Vec::new();
    let mut groups: Vec<String> = Vec::new();
    let mut sas: Vec<String> = Vec::new();
    for s in list(&b["subjects"]) {
        match st(&s["kind"]) {
            "ServiceAccount" => sas.push(format!("{}/{}", st(&s["namespace"]), st(&s["name"]))),
            "User" => users.push(st(&s["name"]).to_string()),
            "Group" => groups.push(st(&s["name"]).to_string()),
            // Upstream collects other kinds separately and does not print them.
            _ => {}
        }
    }
    let role = format!(
        "{}/{}",
        st(&b["roleRef"]["kind"]),
        st(&b["roleRef"]["name"])
    );
    vec![
        json!(name(b)),
        json!(role),
        json!(ctx.age(b)),
        json!(users.join(", ")),
        json!(groups.join(", ")),
        json!(sas.join(", ")),
    ]
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::tests::{cells, names, one};

    #[test]
    fn bindings() {
        let b = json!({
            "metadata": {"name": "admin"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [
                {"kind": "User", "name": "alice"}, {"kind": "User", "name": "bob"},
                {"kind": "Group", "name": "system:masters"},
                {"kind": "ServiceAccount", "namespace": "kube-system", "name": "default"}
            ]
        });
        let t = one(
            "rbac.authorization.k8s.io",
            "clusterrolebindings",
            b.clone(),
        );
        assert_eq!(
            names(&t),
            ["Name", "Role", "Age", "Users", "Groups", "ServiceAccounts"]
        );
        let c = cells(&t);
        assert_eq!(c[1], "ClusterRole/cluster-admin");
        assert_eq!(
            c[3..6],
            [
                json!("alice, bob"),
                json!("system:masters"),
                json!("kube-system/default")
            ]
        );
        let t = one("rbac.authorization.k8s.io", "rolebindings", b);
        assert_eq!(cells(&t)[1], "ClusterRole/cluster-admin");
    }

    #[test]
    fn roles_use_default_table() {
        for r in ["roles", "clusterroles"] {
            let t = one(
                "rbac.authorization.k8s.io",
                r,
                json!({"metadata": {"name": "x", "creationTimestamp": "2024-01-02T03:04:05Z"}}),
            );
            assert_eq!(names(&t), ["Name", "Created At"]);
            assert_eq!(cells(&t)[1], "2024-01-02T03:04:05Z");
        }
    }
}
