//! `apps` kinds: deployments, replica sets, stateful sets, daemon sets and controller
//! revisions.

use serde_json::{json, Value};

use crate::table::format::{
    container_cells, format_label_selector, format_labels, int, list, name, selector_string, st,
    Ctx,
};
use crate::table::{col, wide, Column, Printer, Row, RowFn, AGE, NAME};

const CONTAINERS_DESC: &str = "Names of each container in the template.";
const IMAGES_DESC: &str = "Images referenced by each container in the template.";

static DEPLOYMENT_COLUMNS: [Column; 8] = [
    NAME,
    col("Ready", "string", "Number of the pod with ready state"),
    col("Up-to-date", "string", "Total number of non-terminated pods targeted by this deployment that have the desired template spec."),
    col("Available", "string", "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment."),
    AGE,
    wide("Containers", "string", CONTAINERS_DESC),
    wide("Images", "string", IMAGES_DESC),
    wide("Selector", "string", "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment."),
];

static REPLICA_SET_COLUMNS: [Column; 8] = [
    NAME,
    col(
        "Desired",
        "integer",
        "Replicas is the number of desired replicas.",
    ),
    col(
        "Current",
        "integer",
        "Replicas is the most recently observed number of replicas.",
    ),
    col(
        "Ready",
        "integer",
        "The number of ready replicas for this replica set.",
    ),
    AGE,
    wide("Containers", "string", CONTAINERS_DESC),
    wide("Images", "string", IMAGES_DESC),
    wide(
        "Selector",
        "string",
        "Selector is a label query over pods that should match the replica count.",
    ),
];

static STATEFUL_SET_COLUMNS: [Column; 5] = [
    NAME,
    col("Ready", "string", "Number of the pod with ready state"),
    AGE,
    wide("Containers", "string", CONTAINERS_DESC),
    wide("Images", "string", IMAGES_DESC),
];

static DAEMON_SET_COLUMNS: [Column; 11] = [
    NAME,
    col("Desired", "integer", "The total number of nodes that should be running the daemon pod (including nodes correctly running the daemon pod)."),
    col("Current", "integer", "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod."),
    col("Ready", "integer", "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready."),
    col("Up-to-date", "integer", "The total number of nodes that are running updated daemon pod"),
    col("Available", "integer", "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)"),
    col("Node Selector", "string", "NodeSelector is a selector which must be true for the pod to fit on a node."),
    AGE,
    wide("Containers", "string", CONTAINERS_DESC),
    wide("Images", "string", IMAGES_DESC),
    wide("Selector", "string", "A label query over pods that are managed by the daemon set."),
];

static CONTROLLER_REVISION_COLUMNS: [Column; 4] = [
    NAME,
    col("Controller", "string", "Controller of the object"),
    col(
        "Revision",
        "string",
        "Revision indicates the revision of the state represented by Data.",
    ),
    AGE,
];

/// Printers of this file.
pub(crate) fn printer(group: &str, resource: &str) -> Option<Printer> {
    if group != "apps" && group != "extensions" {
        return None;
    }
    let (columns, row): (&'static [Column], RowFn) = match resource {
        "deployments" => (&DEPLOYMENT_COLUMNS, deployment_row),
        "replicasets" => (&REPLICA_SET_COLUMNS, replica_set_row),
        "statefulsets" if group == "apps" => (&STATEFUL_SET_COLUMNS, stateful_set_row),
        "daemonsets" => (&DAEMON_SET_COLUMNS, daemon_set_row),
        "controllerrevisions" if group == "apps" => {
            (&CONTROLLER_REVISION_COLUMNS, controller_revision_row)
        }
        _ => return None,
    };
    Some(Printer { columns, row })
}

fn deployment_row(d: &Value, ctx: &Ctx) -> Row {
    let spec = &d["spec"];
    let status = &d["status"];
    let (names, images) = container_cells(&spec["template"]["spec"]);
    // Deployments print the bare selector (empty when it selects everything), unlike the
    // other workloads which print `<none>`.
    let selector = selector_string(&spec["selector"]).unwrap_or_else(|| "<invalid>".to_string());
    vec![
        json!(name(d)),
        json!(format!(
            "{}/{}",
            int(&status["readyReplicas"]),
            int(&spec["replicas"])
        )),
        json!(int(&status["updatedReplicas"])),
        json!(int(&status["availableReplicas"])),
        json!(ctx.age(d)),
        json!(names),
        json!(images),
        json!(selector),
    ]
    .into()
}

fn replica_set_row(rs: &Value, ctx: &Ctx) -> Row {
    let spec = &rs["spec"];
    let status = &rs["status"];
    let (names, images) = container_cells(&spec["template"]["spec"]);
    vec![
        json!(name(rs)),
        json!(int(&spec["replicas"])),
        json!(int(&status["replicas"])),
        json!(int(&status["readyReplicas"])),
        json!(ctx.age(rs)),
        json!(names),
        json!(images),
        json!(format_label_selector(&spec["selector"])),
    ]
    .into()
}

fn stateful_set_row(ss: &Value, ctx: &Ctx) -> Row {
    let (names, images) = container_cells(&ss["spec"]["template"]["spec"]);
    vec![
        json!(name(ss)),
        json!(format!(
            "{}/{}",
            int(&ss["status"]["readyReplicas"]),
            int(&ss["spec"]["replicas"])
        )),
        json!(ctx.age(ss)),
        json!(names),
        json!(images),
    ]
    .into()
}

fn daemon_set_row(ds: &Value, ctx: &Ctx) -> Row {
    let spec = &ds["spec"];
    let status = &ds["status"];
    let (names, images) = container_cells(&spec["template"]["spec"]);
    vec![
        json!(name(ds)),
        json!(int(&status["desiredNumberScheduled"])),
        json!(int(&status["currentNumberScheduled"])),
        json!(int(&status["numberReady"])),
        json!(int(&status["updatedNumberScheduled"])),
        json!(int(&status["numberAvailable"])),
        json!(format_labels(&spec["template"]["spec"]["nodeSelector"])),
        json!(ctx.age(ds)),
        json!(names),
        json!(images),
        json!(format_label_selector(&spec["selector"])),
    ]
    .into()
}

/// `kind.group/name` (lowercased kind and group) of the controlling owner, `<none>` if none.
fn controller_of(obj: &Value) -> String {
    let Some(owner) = list(&obj["metadata"]["ownerReferences"])
        .iter()
        .find(|o| o["controller"].as_bool() == Some(true))
    else {
        return "<none>".to_string();
    };
    let api_version = st(&owner["apiVersion"]);
    // `apps/v1` has group `apps`; `v1` is the core group.
    let group = match api_version.rsplit_once('/') {
        Some((g, _)) => g,
        None => "",
    };
    let kind = st(&owner["kind"]);
    let owner_name = st(&owner["name"]);
    if kind.is_empty() && group.is_empty() {
        return owner_name.to_string();
    }
    let group_kind = if group.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}.{group}")
    };
    format!("{}/{owner_name}", group_kind.to_lowercase())
}

fn controller_revision_row(cr: &Value, ctx: &Ctx) -> Row {
    vec![
        json!(name(cr)),
        json!(controller_of(cr)),
        json!(int(&cr["revision"])),
        json!(ctx.age(cr)),
    ]
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::tests::{ago, cells, names, one};

    fn template() -> Value {
        json!({"spec": {"containers": [{"name": "web", "image": "nginx:1"}, {"name": "side", "image": "busybox"}]}})
    }

    #[test]
    fn deployment() {
        let t = one(
            "apps",
            "deployments",
            json!({
                "metadata": {"name": "web", "creationTimestamp": ago(7200)},
                "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": template()},
                "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}
            }),
        );
        assert_eq!(
            names(&t),
            [
                "Name",
                "Ready",
                "Up-to-date",
                "Available",
                "Age",
                "Containers",
                "Images",
                "Selector"
            ]
        );
        assert_eq!(
            cells(&t),
            vec![
                json!("web"),
                json!("2/3"),
                json!(3),
                json!(2),
                json!("120m"),
                json!("web,side"),
                json!("nginx:1,busybox"),
                json!("app=web")
            ]
        );
        let t = one(
            "apps",
            "deployments",
            json!({"metadata": {"name": "e"}, "spec": {"selector": {}}}),
        );
        assert_eq!(cells(&t)[1], "0/0");
        assert_eq!(cells(&t)[7], "");
    }

    #[test]
    fn replica_set() {
        let t = one(
            "apps",
            "replicasets",
            json!({
                "metadata": {"name": "web-1"},
                "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web", "pod-template-hash": "1"}}, "template": template()},
                "status": {"replicas": 3, "readyReplicas": 1}
            }),
        );
        assert_eq!(
            names(&t),
            [
                "Name",
                "Desired",
                "Current",
                "Ready",
                "Age",
                "Containers",
                "Images",
                "Selector"
            ]
        );
        assert_eq!(cells(&t)[1..4], [json!(3), json!(3), json!(1)]);
        assert_eq!(cells(&t)[7], "app=web,pod-template-hash=1");
    }

    #[test]
    fn stateful_set() {
        let t = one(
            "apps",
            "statefulsets",
            json!({
                "metadata": {"name": "db"}, "spec": {"replicas": 2, "template": template()}, "status": {"readyReplicas": 2}
            }),
        );
        assert_eq!(names(&t), ["Name", "Ready", "Age", "Containers", "Images"]);
        assert_eq!(cells(&t)[1], "2/2");
    }

    #[test]
    fn daemon_set() {
        let mut tpl = template();
        tpl["spec"]["nodeSelector"] = json!({"kubernetes.io/os": "linux"});
        let t = one(
            "apps",
            "daemonsets",
            json!({
                "metadata": {"name": "ds"},
                "spec": {"selector": {"matchLabels": {"k": "v"}}, "template": tpl},
                "status": {"desiredNumberScheduled": 2, "currentNumberScheduled": 2, "numberReady": 1, "updatedNumberScheduled": 2, "numberAvailable": 1}
            }),
        );
        assert_eq!(
            names(&t),
            [
                "Name",
                "Desired",
                "Current",
                "Ready",
                "Up-to-date",
                "Available",
                "Node Selector",
                "Age",
                "Containers",
                "Images",
                "Selector"
            ]
        );
        assert_eq!(
            cells(&t)[1..7],
            [
                json!(2),
                json!(2),
                json!(1),
                json!(2),
                json!(1),
                json!("kubernetes.io/os=linux")
            ]
        );
        assert_eq!(cells(&t)[10], "k=v");
    }

    #[test]
    fn controller_revision() {
        let t = one(
            "apps",
            "controllerrevisions",
            json!({
                "metadata": {"name": "ds-abc", "ownerReferences": [
                    {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "ds", "controller": true}
                ]},
                "revision": 4
            }),
        );
        assert_eq!(names(&t), ["Name", "Controller", "Revision", "Age"]);
        assert_eq!(cells(&t)[1..3], [json!("daemonset.apps/ds"), json!(4)]);
        let t = one(
            "apps",
            "controllerrevisions",
            json!({"metadata": {"name": "x"}, "revision": 1}),
        );
        assert_eq!(cells(&t)[1], "<none>");
    }
}
