//! Pods and pod templates. The pod STATUS cell is the most intricate computation of all the
//! printers: it walks init containers, then containers, the way upstream's `printPod` does.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::table::format::{
    container_cells, deleting, format_labels, int, list, name, parse_time, st, Ctx,
};
use crate::table::{col, wide, Column, Printer, Row, AGE, NAME};

static POD_COLUMNS: [Column; 9] = [
    NAME,
    col("Ready", "string", "The aggregate readiness state of this pod for accepting traffic."),
    col("Status", "string", "The aggregate status of the containers in this pod."),
    col(
        "Restarts",
        "string",
        "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
    ),
    AGE,
    wide("IP", "string", "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated."),
    wide("Node", "string", "NodeName indicates in which node this pod is scheduled."),
    wide("Nominated Node", "string", "nominatedNodeName is set only when this pod preempts other pods on the node."),
    wide("Readiness Gates", "string", "If specified, all readiness gates will be evaluated for pod readiness."),
];

static POD_TEMPLATE_COLUMNS: [Column; 4] = [
    NAME,
    col(
        "Containers",
        "string",
        "Names of each container in the template.",
    ),
    col(
        "Images",
        "string",
        "Images referenced by each container in the template.",
    ),
    col("Pod Labels", "string", "The labels for the pod template."),
];

/// Printers of this file.
pub(crate) fn printer(group: &str, resource: &str) -> Option<Printer> {
    match (group, resource) {
        ("", "pods") => Some(Printer {
            columns: &POD_COLUMNS,
            row: pod_row,
        }),
        ("", "podtemplates") => Some(Printer {
            columns: &POD_TEMPLATE_COLUMNS,
            row: pod_template_row,
        }),
        _ => None,
    }
}

/// The later of two optional instants.
fn later(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// When the previous run of a container ended, if it has ended at least once.
fn last_termination(status: &Value) -> Option<DateTime<Utc>> {
    parse_time(&status["lastState"]["terminated"]["finishedAt"])
}

/// True when the pod has condition `kind` with status `True`.
fn has_true_condition(pod: &Value, kind: &str) -> bool {
    list(&pod["status"]["conditions"])
        .iter()
        .any(|c| st(&c["type"]) == kind && st(&c["status"]) == "True")
}

/// True when the first `Initialized` condition is `True` (later duplicates are ignored, as
/// upstream does).
fn initialized(pod: &Value) -> bool {
    list(&pod["status"]["conditions"])
        .iter()
        .find(|c| st(&c["type"]) == "Initialized")
        .is_some_and(|c| st(&c["status"]) == "True")
}

/// `Signal:N` or `ExitCode:N` for a terminated state without a reason.
fn exit_reason(term: &Value) -> String {
    let signal = int(&term["signal"]);
    if signal != 0 {
        format!("Signal:{signal}")
    } else {
        format!("ExitCode:{}", int(&term["exitCode"]))
    }
}

fn pod_row(pod: &Value, ctx: &Ctx) -> Row {
    let spec = &pod["spec"];
    let status = &pod["status"];
    let phase = st(&status["phase"]);

    let mut reason = phase.to_string();
    if !st(&status["reason"]).is_empty() {
        reason = st(&status["reason"]).to_string();
    }
    for c in list(&status["conditions"]) {
        if st(&c["type"]) == "PodScheduled" && st(&c["reason"]) == "SchedulingGated" {
            reason = "SchedulingGated".to_string();
        }
    }

    let conditions = match phase {
        "Succeeded" => Some(json!([{
            "type": "Completed", "status": "True", "reason": "Succeeded",
            "message": "The pod has completed successfully."
        }])),
        "Failed" => Some(json!([{
            "type": "Completed", "status": "True", "reason": "Failed",
            "message": "The pod failed."
        }])),
        _ => None,
    };

    let init_specs = list(&spec["initContainers"]);
    // Sidecars (init containers that restart always) count as regular containers.
    let is_sidecar = |n: &str| {
        init_specs
            .iter()
            .any(|c| st(&c["name"]) == n && st(&c["restartPolicy"]) == "Always")
    };
    let sidecars = init_specs
        .iter()
        .filter(|c| st(&c["restartPolicy"]) == "Always")
        .count();
    let total = list(&spec["containers"]).len() + sidecars;

    let mut restarts = 0i64;
    let mut sidecar_restarts = 0i64;
    let mut ready = 0usize;
    let mut last_restart: Option<DateTime<Utc>> = None;
    let mut last_sidecar_restart: Option<DateTime<Utc>> = None;

    let mut initializing = false;
    for (i, c) in list(&status["initContainerStatuses"]).iter().enumerate() {
        let count = int(&c["restartCount"]);
        restarts += count;
        last_restart = later(last_restart, last_termination(c));
        let sidecar = is_sidecar(st(&c["name"]));
        if sidecar {
            sidecar_restarts += count;
            last_sidecar_restart = later(last_sidecar_restart, last_termination(c));
        }
        let term = &c["state"]["terminated"];
        let waiting = &c["state"]["waiting"];
        if term.is_object() && int(&term["exitCode"]) == 0 {
            continue;
        }
        if sidecar && c["started"].as_bool() == Some(true) {
            if c["ready"].as_bool() == Some(true) {
                ready += 1;
            }
            continue;
        }
        if term.is_object() {
            let r = st(&term["reason"]);
            reason = if r.is_empty() {
                format!("Init:{}", exit_reason(term))
            } else {
                format!("Init:{r}")
            };
        } else if waiting.is_object()
            && !st(&waiting["reason"]).is_empty()
            && st(&waiting["reason"]) != "PodInitializing"
        {
            reason = format!("Init:{}", st(&waiting["reason"]));
        } else {
            reason = format!("Init:{i}/{}", init_specs.len());
        }
        initializing = true;
        break;
    }

    if !initializing || initialized(pod) {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        for c in list(&status["containerStatuses"]).iter().rev() {
            restarts += int(&c["restartCount"]);
            last_restart = later(last_restart, last_termination(c));
            let waiting = &c["state"]["waiting"];
            let term = &c["state"]["terminated"];
            if waiting.is_object() && !st(&waiting["reason"]).is_empty() {
                reason = st(&waiting["reason"]).to_string();
            } else if term.is_object() && !st(&term["reason"]).is_empty() {
                reason = st(&term["reason"]).to_string();
            } else if term.is_object() {
                reason = exit_reason(term);
            } else if c["ready"].as_bool() == Some(true) && c["state"]["running"].is_object() {
                has_running = true;
                ready += 1;
            }
        }
        // A pod whose last container completed but another is still running is not done.
        if reason == "Completed" && has_running {
            reason = if has_true_condition(pod, "Ready") {
                "Running".to_string()
            } else {
                "NotReady".to_string()
            };
        }
    }

    let is_deleting = deleting(pod);
    if is_deleting && st(&status["reason"]) == "NodeLost" {
        reason = "Unknown".to_string();
    } else if is_deleting && phase != "Failed" && phase != "Succeeded" {
        reason = "Terminating".to_string();
    }

    let restarts_cell = match last_restart {
        Some(t) if restarts != 0 => format!("{restarts} ({} ago)", ctx.since_time(t)),
        _ => restarts.to_string(),
    };

    let mut ip = list(&status["podIPs"])
        .first()
        .map(|p| st(&p["ip"]))
        .unwrap_or("");
    // Upstream converts a lone `podIP` into `podIPs` before printing.
    if ip.is_empty() {
        ip = st(&status["podIP"]);
    }
    let none_if_empty = |s: &str| {
        if s.is_empty() {
            "<none>".to_string()
        } else {
            s.to_string()
        }
    };

    let gates = list(&spec["readinessGates"]);
    let gates_cell = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let passing = gates
            .iter()
            .filter(|g| {
                let kind = st(&g["conditionType"]);
                list(&status["conditions"])
                    .iter()
                    .find(|c| st(&c["type"]) == kind)
                    .is_some_and(|c| st(&c["status"]) == "True")
            })
            .count();
        format!("{passing}/{}", gates.len())
    };

    Row {
        cells: vec![
            json!(name(pod)),
            json!(format!("{ready}/{total}")),
            json!(reason),
            json!(restarts_cell),
            json!(ctx.age(pod)),
            json!(none_if_empty(ip)),
            json!(none_if_empty(st(&spec["nodeName"]))),
            json!(none_if_empty(st(&status["nominatedNodeName"]))),
            json!(gates_cell),
        ],
        conditions,
    }
}

fn pod_template_row(obj: &Value, _ctx: &Ctx) -> Row {
    let template = &obj["template"];
    let (names, images) = container_cells(&template["spec"]);
    vec![
        json!(name(obj)),
        json!(names),
        json!(images),
        json!(format_labels(&template["metadata"]["labels"])),
    ]
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::tests::{ago, cells, names, one};

    fn pod(spec: Value, status: Value) -> Value {
        json!({
            "metadata": {"name": "p", "creationTimestamp": ago(300)},
            "spec": spec,
            "status": status,
        })
    }

    fn status_of(p: Value) -> Vec<Value> {
        cells(&one("", "pods", p))
    }

    #[test]
    fn columns() {
        let t = one("", "pods", pod(json!({}), json!({})));
        assert_eq!(
            names(&t),
            [
                "Name",
                "Ready",
                "Status",
                "Restarts",
                "Age",
                "IP",
                "Node",
                "Nominated Node",
                "Readiness Gates"
            ]
        );
        assert_eq!(t["columnDefinitions"][5]["priority"], 1);
        assert_eq!(t["columnDefinitions"][4]["priority"], 0);
    }

    #[test]
    fn running_pod() {
        let c = status_of(pod(
            json!({"containers": [{"name": "a"}, {"name": "b"}], "nodeName": "n1"}),
            json!({
                "phase": "Running",
                "podIP": "10.42.0.5",
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [
                    {"name": "a", "ready": true, "restartCount": 0, "state": {"running": {}}},
                    {"name": "b", "ready": true, "restartCount": 0, "state": {"running": {}}}
                ]
            }),
        ));
        assert_eq!(
            c,
            vec![
                json!("p"),
                json!("2/2"),
                json!("Running"),
                json!("0"),
                json!("5m"),
                json!("10.42.0.5"),
                json!("n1"),
                json!("<none>"),
                json!("<none>")
            ]
        );
    }

    #[test]
    fn crash_loop_with_restart_age() {
        let c = status_of(pod(
            json!({"containers": [{"name": "a"}]}),
            json!({
                "phase": "Running",
                "containerStatuses": [{
                    "name": "a", "ready": false, "restartCount": 5,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(125)}}
                }]
            }),
        ));
        assert_eq!(c[1], "0/1");
        assert_eq!(c[2], "CrashLoopBackOff");
        assert_eq!(c[3], "5 (2m5s ago)");
    }

    #[test]
    fn pending_and_creating() {
        let c = status_of(pod(
            json!({"containers": [{"name": "a"}]}),
            json!({"phase": "Pending"}),
        ));
        assert_eq!(c[2], "Pending");
        assert_eq!(c[5], "<none>");
        let c = status_of(pod(
            json!({"containers": [{"name": "a"}]}),
            json!({"phase": "Pending", "containerStatuses": [
                {"name": "a", "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}
            ]}),
        ));
        assert_eq!(c[2], "ContainerCreating");
    }

    #[test]
    fn init_containers() {
        let spec = json!({"initContainers": [{"name": "i1"}, {"name": "i2"}], "containers": [{"name": "a"}]});
        // First init container running: Init:0/2.
        let c = status_of(pod(
            spec.clone(),
            json!({"phase": "Pending", "initContainerStatuses": [
                {"name": "i1", "restartCount": 0, "state": {"running": {}}},
                {"name": "i2", "restartCount": 0, "state": {"waiting": {"reason": "PodInitializing"}}}
            ]}),
        ));
        assert_eq!(c[2], "Init:0/2");
        // First done, second crashing.
        let c = status_of(pod(
            spec.clone(),
            json!({"phase": "Pending", "initContainerStatuses": [
                {"name": "i1", "restartCount": 0, "state": {"terminated": {"exitCode": 0}}},
                {"name": "i2", "restartCount": 3, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}
            ]}),
        ));
        assert_eq!(c[2], "Init:CrashLoopBackOff");
        assert_eq!(c[3], "3");
        // Failed init container without a reason.
        let c = status_of(pod(
            spec,
            json!({"phase": "Pending", "initContainerStatuses": [
                {"name": "i1", "restartCount": 0, "state": {"terminated": {"exitCode": 2}}}
            ]}),
        ));
        assert_eq!(c[2], "Init:ExitCode:2");
    }

    #[test]
    fn sidecar_counts_as_container() {
        let c = status_of(pod(
            json!({"initContainers": [{"name": "s", "restartPolicy": "Always"}], "containers": [{"name": "a"}]}),
            json!({
                "phase": "Running",
                "conditions": [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"}],
                "initContainerStatuses": [{"name": "s", "started": true, "ready": true, "restartCount": 1, "state": {"running": {}}}],
                "containerStatuses": [{"name": "a", "ready": true, "restartCount": 0, "state": {"running": {}}}]
            }),
        ));
        assert_eq!(c[1], "2/2");
        assert_eq!(c[2], "Running");
        assert_eq!(c[3], "1");
    }

    #[test]
    fn completed_and_terminating() {
        let t = one(
            "",
            "pods",
            pod(
                json!({"containers": [{"name": "a"}]}),
                json!({"phase": "Succeeded", "containerStatuses": [
                    {"name": "a", "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}
                ]}),
            ),
        );
        assert_eq!(cells(&t)[2], "Completed");
        assert_eq!(t["rows"][0]["conditions"][0]["reason"], "Succeeded");

        let mut p = pod(
            json!({"containers": [{"name": "a"}]}),
            json!({"phase": "Running", "containerStatuses": [
                {"name": "a", "ready": true, "restartCount": 0, "state": {"running": {}}}
            ]}),
        );
        p["metadata"]["deletionTimestamp"] = json!(ago(1));
        assert_eq!(status_of(p.clone())[2], "Terminating");
        p["status"]["reason"] = json!("NodeLost");
        assert_eq!(status_of(p)[2], "Unknown");
    }

    #[test]
    fn completed_container_with_running_sibling() {
        let c = status_of(pod(
            json!({"containers": [{"name": "a"}, {"name": "b"}]}),
            json!({"phase": "Running", "containerStatuses": [
                {"name": "a", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                {"name": "b", "ready": true, "restartCount": 0, "state": {"running": {}}}
            ]}),
        ));
        assert_eq!(c[2], "NotReady");
        assert_eq!(c[1], "1/2");
    }

    #[test]
    fn readiness_gates_and_wide_cells() {
        let c = status_of(pod(
            json!({"containers": [], "readinessGates": [{"conditionType": "g1"}, {"conditionType": "g2"}]}),
            json!({
                "phase": "Running", "nominatedNodeName": "n2", "podIPs": [{"ip": "10.0.0.1"}, {"ip": "fd00::1"}],
                "conditions": [{"type": "g1", "status": "True"}, {"type": "g2", "status": "False"}]
            }),
        ));
        assert_eq!(c[5], "10.0.0.1");
        assert_eq!(c[7], "n2");
        assert_eq!(c[8], "1/2");
    }

    #[test]
    fn scheduling_gated() {
        let c = status_of(pod(
            json!({"containers": [{"name": "a"}]}),
            json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}),
        ));
        assert_eq!(c[2], "SchedulingGated");
    }

    #[test]
    fn pod_template() {
        let t = one(
            "",
            "podtemplates",
            json!({"metadata": {"name": "t"}, "template": {
                "metadata": {"labels": {"app": "x"}},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]}
            }}),
        );
        assert_eq!(names(&t), ["Name", "Containers", "Images", "Pod Labels"]);
        assert_eq!(
            cells(&t),
            vec![json!("t"), json!("c"), json!("nginx"), json!("app=x")]
        );
    }
}
