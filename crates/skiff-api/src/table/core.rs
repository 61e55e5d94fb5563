//! Core-group (`""`) kinds other than pods and volumes: nodes, namespaces, services,
//! endpoints, config maps, secrets, service accounts, replication controllers, resource
//! quotas and component statuses.

use serde_json::{json, Value};

use crate::table::format::{
    condition, container_cells, format_labels, int, list, map_len, name, st, Ctx,
};
use crate::table::{col, wide, Column, Printer, Row, RowFn, AGE, NAME};

static NODE_COLUMNS: [Column; 10] = [
    NAME,
    col("Status", "string", "The status of the node"),
    col("Roles", "string", "The roles of the node"),
    AGE,
    col("Version", "string", "Kubelet Version reported by the node."),
    wide("Internal-IP", "string", "List of addresses reachable to the node."),
    wide("External-IP", "string", "List of addresses reachable to the node."),
    wide("OS-Image", "string", "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy))."),
    wide("Kernel-Version", "string", "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64)."),
    wide("Container-Runtime", "string", "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2)."),
];

static NAMESPACE_COLUMNS: [Column; 3] = [
    NAME,
    col("Status", "string", "The status of the namespace"),
    AGE,
];

static SERVICE_COLUMNS: [Column; 7] = [
    NAME,
    col("Type", "string", "type determines how the Service is exposed."),
    col("Cluster-IP", "string", "clusterIP is the IP address of the service and is usually assigned randomly."),
    col("External-IP", "string", "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service."),
    col("Port(s)", "string", "The list of ports that are exposed by this service."),
    AGE,
    wide("Selector", "string", "Route service traffic to pods with label keys and values matching this selector."),
];

static ENDPOINTS_COLUMNS: [Column; 3] = [
    NAME,
    col(
        "Endpoints",
        "string",
        "The set of all endpoints is the union of all subsets.",
    ),
    AGE,
];

static CONFIG_MAP_COLUMNS: [Column; 3] = [
    NAME,
    col("Data", "string", "Data contains the configuration data."),
    AGE,
];

static SECRET_COLUMNS: [Column; 4] = [
    NAME,
    col(
        "Type",
        "string",
        "Used to facilitate programmatic handling of secret data.",
    ),
    col("Data", "string", "Data contains the secret data."),
    AGE,
];

static SERVICE_ACCOUNT_COLUMNS: [Column; 3] = [
    NAME,
    col("Secrets", "string", "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use."),
    AGE,
];

static RC_COLUMNS: [Column; 8] = [
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
        "The number of ready replicas for this replication controller.",
    ),
    AGE,
    wide(
        "Containers",
        "string",
        "Names of each container in the template.",
    ),
    wide(
        "Images",
        "string",
        "Images referenced by each container in the template.",
    ),
    wide(
        "Selector",
        "string",
        "Selector is a label query over pods that should match the Replicas count.",
    ),
];

static RESOURCE_QUOTA_COLUMNS: [Column; 4] = [
    NAME,
    col("Request", "string", "Request represents a minimum amount of cpu/memory that a container may consume."),
    col("Limit", "string", "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node."),
    AGE,
];

static COMPONENT_STATUS_COLUMNS: [Column; 4] = [
    NAME,
    col("Status", "string", "Status of the component conditions"),
    col("Message", "string", "Message of the component conditions"),
    col("Error", "string", "Error of the component conditions"),
];

/// Printers of this file.
pub(crate) fn printer(group: &str, resource: &str) -> Option<Printer> {
    let (columns, row): (&'static [Column], RowFn) = match (group, resource) {
        ("", "nodes") => (&NODE_COLUMNS, node_row),
        ("", "namespaces") => (&NAMESPACE_COLUMNS, namespace_row),
        ("", "services") => (&SERVICE_COLUMNS, service_row),
        ("", "endpoints") => (&ENDPOINTS_COLUMNS, endpoints_row),
        ("", "configmaps") => (&CONFIG_MAP_COLUMNS, config_map_row),
        ("", "secrets") => (&SECRET_COLUMNS, secret_row),
        ("", "serviceaccounts") => (&SERVICE_ACCOUNT_COLUMNS, service_account_row),
        ("", "replicationcontrollers") => (&RC_COLUMNS, rc_row),
        ("", "resourcequotas") => (&RESOURCE_QUOTA_COLUMNS, resource_quota_row),
        ("", "componentstatuses") => (&COMPONENT_STATUS_COLUMNS, component_status_row),
        _ => return None,
    };
    Some(Printer { columns, row })
}

/// Node roles from `node-role.kubernetes.io/<role>` and `kubernetes.io/role=<role>` labels,
/// sorted and deduplicated.
fn node_roles(node: &Value) -> String {
    let mut roles: Vec<String> = Vec::new();
    if let Some(labels) = node["metadata"]["labels"].as_object() {
        for (k, v) in labels {
            if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
                if !role.is_empty() {
                    roles.push(role.to_string());
                }
            } else if k == "kubernetes.io/role" && !st(v).is_empty() {
                roles.push(st(v).to_string());
            }
        }
    }
    roles.sort();
    roles.dedup();
    if roles.is_empty() {
        "<none>".to_string()
    } else {
        roles.join(",")
    }
}

/// First node address of `kind`, `<none>` when there is none.
fn node_address(node: &Value, kind: &str) -> String {
    list(&node["status"]["addresses"])
        .iter()
        .find(|a| st(&a["type"]) == kind)
        .map(|a| st(&a["address"]).to_string())
        .unwrap_or_else(|| "<none>".to_string())
}

fn node_row(node: &Value, ctx: &Ctx) -> Row {
    let mut status: Vec<String> = Vec::new();
    // Upstream keeps the last Ready condition when there are duplicates.
    if let Some(c) = list(&node["status"]["conditions"])
        .iter()
        .rev()
        .find(|c| st(&c["type"]) == "Ready")
    {
        if st(&c["status"]) == "True" {
            status.push("Ready".into());
        } else {
            status.push("NotReady".into());
        }
    }
    if status.is_empty() {
        status.push("Unknown".into());
    }
    if node["spec"]["unschedulable"].as_bool() == Some(true) {
        status.push("SchedulingDisabled".into());
    }
    let info = &node["status"]["nodeInfo"];
    let unknown_if_empty = |v: &Value| {
        let s = st(v);
        if s.is_empty() {
            "<unknown>".to_string()
        } else {
            s.to_string()
        }
    };
    vec![
        json!(name(node)),
        json!(status.join(",")),
        json!(node_roles(node)),
        json!(ctx.age(node)),
        json!(st(&info["kubeletVersion"])),
        json!(node_address(node, "InternalIP")),
        json!(node_address(node, "ExternalIP")),
        json!(unknown_if_empty(&info["osImage"])),
        json!(unknown_if_empty(&info["kernelVersion"])),
        json!(unknown_if_empty(&info["containerRuntimeVersion"])),
    ]
    .into()
}

fn namespace_row(ns: &Value, ctx: &Ctx) -> Row {
    vec![
        json!(name(ns)),
        json!(st(&ns["status"]["phase"])),
        json!(ctx.age(ns)),
    ]
    .into()
}

/// Load-balancer ingress points (IP, else hostname), deduplicated and sorted.
pub(crate) fn load_balancer_ingress(status: &Value) -> Vec<String> {
    let mut out: Vec<String> = list(&status["ingress"])
        .iter()
        .filter_map(|i| {
            let ip = st(&i["ip"]);
            let host = st(&i["hostname"]);
            if !ip.is_empty() {
                Some(ip.to_string())
            } else if !host.is_empty() {
                Some(host.to_string())
            } else {
                None
            }
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The EXTERNAL-IP cell of a service (upstream's `getServiceExternalIP`, wide form).
fn service_external_ip(svc: &Value, kind: &str) -> String {
    let external: Vec<&str> = list(&svc["spec"]["externalIPs"]).iter().map(st).collect();
    match kind {
        "ClusterIP" | "NodePort" => {
            if external.is_empty() {
                "<none>".to_string()
            } else {
                external.join(",")
            }
        }
        "LoadBalancer" => {
            let mut all = load_balancer_ingress(&svc["status"]["loadBalancer"]);
            if !external.is_empty() {
                all.extend(external.iter().map(|s| s.to_string()));
                return all.join(",");
            }
            if all.is_empty() {
                "<pending>".to_string()
            } else {
                all.join(",")
            }
        }
        "ExternalName" => st(&svc["spec"]["externalName"]).to_string(),
        _ => "<unknown>".to_string(),
    }
}

/// The PORT(S) cell: `80/TCP`, `80:30080/TCP`, comma-joined; `<none>` when empty.
fn service_ports(svc: &Value) -> String {
    let pieces: Vec<String> = list(&svc["spec"]["ports"])
        .iter()
        .map(|p| {
            let proto = match st(&p["protocol"]) {
                "" => "TCP",
                other => other,
            };
            let node_port = int(&p["nodePort"]);
            if node_port > 0 {
                format!("{}:{}/{}", int(&p["port"]), node_port, proto)
            } else {
                format!("{}/{}", int(&p["port"]), proto)
            }
        })
        .collect();
    if pieces.is_empty() {
        "<none>".to_string()
    } else {
        pieces.join(",")
    }
}

fn service_row(svc: &Value, ctx: &Ctx) -> Row {
    let spec = &svc["spec"];
    // The API server defaults the type; treat an undefaulted object the same way.
    let kind = match st(&spec["type"]) {
        "" => "ClusterIP",
        other => other,
    };
    let mut cluster_ip = list(&spec["clusterIPs"])
        .first()
        .map(st)
        .unwrap_or("")
        .to_string();
    if cluster_ip.is_empty() {
        cluster_ip = st(&spec["clusterIP"]).to_string();
    }
    if cluster_ip.is_empty() {
        cluster_ip = "<none>".to_string();
    }
    vec![
        json!(name(svc)),
        json!(kind),
        json!(cluster_ip),
        json!(service_external_ip(svc, kind)),
        json!(service_ports(svc)),
        json!(ctx.age(svc)),
        json!(format_labels(&spec["selector"])),
    ]
    .into()
}

/// `host:port` with IPv6 hosts bracketed, as Go's `net.JoinHostPort` does.
fn join_host_port(host: &str, port: i64) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The ENDPOINTS cell: up to three `ip:port` entries and a `+ N more...` suffix.
fn format_endpoints(ep: &Value) -> String {
    let subsets = list(&ep["subsets"]);
    if subsets.is_empty() {
        return "<none>".to_string();
    }
    let mut all: Vec<String> = Vec::new();
    for ss in subsets {
        let addresses = list(&ss["addresses"]);
        let ports = list(&ss["ports"]);
        if ports.is_empty() {
            // Headless services may have no ports.
            all.extend(addresses.iter().map(|a| st(&a["ip"]).to_string()));
            continue;
        }
        for p in ports {
            for a in addresses {
                all.push(join_host_port(st(&a["ip"]), int(&p["port"])));
            }
        }
    }
    let shown = all.iter().take(3).cloned().collect::<Vec<_>>().join(",");
    if all.len() > 3 {
        format!("{shown} + {} more...", all.len() - 3)
    } else {
        shown
    }
}

fn endpoints_row(ep: &Value, ctx: &Ctx) -> Row {
    vec![
        json!(name(ep)),
        json!(format_endpoints(ep)),
        json!(ctx.age(ep)),
    ]
    .into()
}

fn config_map_row(cm: &Value, ctx: &Ctx) -> Row {
    let n = map_len(&cm["data"]) + map_len(&cm["binaryData"]);
    vec![json!(name(cm)), json!(n), json!(ctx.age(cm))].into()
}

fn secret_row(s: &Value, ctx: &Ctx) -> Row {
    vec![
        json!(name(s)),
        json!(st(&s["type"])),
        json!(map_len(&s["data"])),
        json!(ctx.age(s)),
    ]
    .into()
}

fn service_account_row(sa: &Value, ctx: &Ctx) -> Row {
    vec![
        json!(name(sa)),
        json!(list(&sa["secrets"]).len()),
        json!(ctx.age(sa)),
    ]
    .into()
}

fn rc_row(rc: &Value, ctx: &Ctx) -> Row {
    let (names, images) = container_cells(&rc["spec"]["template"]["spec"]);
    vec![
        json!(name(rc)),
        json!(int(&rc["spec"]["replicas"])),
        json!(int(&rc["status"]["replicas"])),
        json!(int(&rc["status"]["readyReplicas"])),
        json!(ctx.age(rc)),
        json!(names),
        json!(images),
        json!(format_labels(&rc["spec"]["selector"])),
    ]
    .into()
}

/// A quantity as stored (the API server keeps quantities in canonical form), `0` when unset.
fn quantity(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => "0".to_string(),
    }
}

fn resource_quota_row(rq: &Value, ctx: &Ctx) -> Row {
    let hard = &rq["status"]["hard"];
    let used = &rq["status"]["used"];
    let mut resources: Vec<&String> = hard
        .as_object()
        .map(|m| m.keys().collect())
        .unwrap_or_default();
    resources.sort();
    let mut request: Vec<String> = Vec::new();
    let mut limit: Vec<String> = Vec::new();
    for r in resources {
        let piece = format!(
            "{r}: {}/{}",
            quantity(&used[r.as_str()]),
            quantity(&hard[r.as_str()])
        );
        // Only `limits.*` go to the LIMIT column; everything else is a request.
        let is_limit = r.split('.').count() > 1 && r.split('.').next() == Some("limits");
        if is_limit {
            limit.push(piece);
        } else {
            request.push(piece);
        }
    }
    vec![
        json!(name(rq)),
        json!(request.join(", ")),
        json!(limit.join(", ")),
        json!(ctx.age(rq)),
    ]
    .into()
}

fn component_status_row(cs: &Value, _ctx: &Ctx) -> Row {
    let (status, message, error) = match condition(&cs["conditions"], "Healthy") {
        Some(c) => (
            if st(&c["status"]) == "True" {
                "Healthy"
            } else {
                "Unhealthy"
            },
            st(&c["message"]),
            st(&c["error"]),
        ),
        None => ("Unknown", "", ""),
    };
    vec![json!(name(cs)), json!(status), json!(message), json!(error)].into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::tests::{ago, cells, names, one};

    #[test]
    fn node() {
        let t = one(
            "",
            "nodes",
            json!({
                "metadata": {"name": "n1", "creationTimestamp": ago(3 * 86400 + 4 * 3600), "labels": {
                    "node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/master": "true",
                    "kubernetes.io/role": "etcd", "kubernetes.io/hostname": "n1"
                }},
                "spec": {"unschedulable": true},
                "status": {
                    "conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}],
                    "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}, {"type": "Hostname", "address": "n1"}],
                    "nodeInfo": {"kubeletVersion": "v1.33.0", "osImage": "Debian", "kernelVersion": "6.1", "containerRuntimeVersion": "skiff://0.1"}
                }
            }),
        );
        assert_eq!(
            names(&t),
            [
                "Name",
                "Status",
                "Roles",
                "Age",
                "Version",
                "Internal-IP",
                "External-IP",
                "OS-Image",
                "Kernel-Version",
                "Container-Runtime"
            ]
        );
        assert_eq!(
            cells(&t),
            vec![
                json!("n1"),
                json!("Ready,SchedulingDisabled"),
                json!("control-plane,etcd,master"),
                json!("3d4h"),
                json!("v1.33.0"),
                json!("10.0.0.1"),
                json!("<none>"),
                json!("Debian"),
                json!("6.1"),
                json!("skiff://0.1")
            ]
        );
        let t = one(
            "",
            "nodes",
            json!({"metadata": {"name": "n2"}, "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}}),
        );
        assert_eq!(cells(&t)[1], "NotReady");
        assert_eq!(cells(&t)[2], "<none>");
        assert_eq!(cells(&t)[7], "<unknown>");
        let t = one("", "nodes", json!({"metadata": {"name": "n3"}}));
        assert_eq!(cells(&t)[1], "Unknown");
    }

    #[test]
    fn namespace() {
        let t = one(
            "",
            "namespaces",
            json!({"metadata": {"name": "default", "creationTimestamp": ago(30)}, "status": {"phase": "Active"}}),
        );
        assert_eq!(names(&t), ["Name", "Status", "Age"]);
        assert_eq!(
            cells(&t),
            vec![json!("default"), json!("Active"), json!("30s")]
        );
    }

    #[test]
    fn services() {
        let t = one(
            "",
            "services",
            json!({"metadata": {"name": "web", "creationTimestamp": ago(600)}, "spec": {
                "type": "NodePort", "clusterIP": "10.43.0.7", "clusterIPs": ["10.43.0.7"],
                "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}],
                "selector": {"app": "web"}
            }}),
        );
        assert_eq!(
            names(&t),
            [
                "Name",
                "Type",
                "Cluster-IP",
                "External-IP",
                "Port(s)",
                "Age",
                "Selector"
            ]
        );
        assert_eq!(
            cells(&t),
            vec![
                json!("web"),
                json!("NodePort"),
                json!("10.43.0.7"),
                json!("<none>"),
                json!("80:30080/TCP,53/UDP"),
                json!("10m"),
                json!("app=web")
            ]
        );
        let lb = |status: Value, external: Value| {
            cells(&one(
                "",
                "services",
                json!({"metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer", "clusterIP": "10.43.0.9", "externalIPs": external}, "status": status}),
            ))
        };
        assert_eq!(lb(json!({}), json!([]))[3], "<pending>");
        assert_eq!(
            lb(
                json!({"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}, {"hostname": "a.example"}]}}),
                json!([])
            )[3],
            "1.2.3.4,a.example"
        );
        assert_eq!(
            lb(
                json!({"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}),
                json!(["5.6.7.8"])
            )[3],
            "1.2.3.4,5.6.7.8"
        );
        assert_eq!(lb(json!({}), json!([]))[4], "<none>");
        let en = cells(&one(
            "",
            "services",
            json!({"metadata": {"name": "e"}, "spec": {"type": "ExternalName", "externalName": "db.example"}}),
        ));
        assert_eq!(en[2], "<none>");
        assert_eq!(en[3], "db.example");
        assert_eq!(en[6], "<none>");
        let headless = cells(&one(
            "",
            "services",
            json!({"metadata": {"name": "h"}, "spec": {"clusterIP": "None"}}),
        ));
        assert_eq!(headless[1], "ClusterIP");
        assert_eq!(headless[2], "None");
    }

    #[test]
    fn endpoints() {
        let t = one(
            "",
            "endpoints",
            json!({"metadata": {"name": "web"}, "subsets": [
                {"addresses": [{"ip": "10.42.0.1"}, {"ip": "10.42.0.2"}, {"ip": "fd00::3"}], "ports": [{"port": 80}, {"port": 443}]}
            ]}),
        );
        assert_eq!(
            cells(&t)[1],
            "10.42.0.1:80,10.42.0.2:80,[fd00::3]:80 + 3 more..."
        );
        let t = one("", "endpoints", json!({"metadata": {"name": "none"}}));
        assert_eq!(cells(&t)[1], "<none>");
        let t = one(
            "",
            "endpoints",
            json!({"metadata": {"name": "headless"}, "subsets": [{"addresses": [{"ip": "10.42.0.1"}]}]}),
        );
        assert_eq!(cells(&t)[1], "10.42.0.1");
    }

    #[test]
    fn config_secret_sa() {
        let t = one(
            "",
            "configmaps",
            json!({"metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}}),
        );
        assert_eq!(names(&t), ["Name", "Data", "Age"]);
        assert_eq!(cells(&t)[1], 3);
        let t = one(
            "",
            "secrets",
            json!({"metadata": {"name": "s"}, "type": "Opaque", "data": {"a": "MQ=="}}),
        );
        assert_eq!(names(&t), ["Name", "Type", "Data", "Age"]);
        assert_eq!(cells(&t)[1], "Opaque");
        assert_eq!(cells(&t)[2], 1);
        let t = one(
            "",
            "serviceaccounts",
            json!({"metadata": {"name": "default"}}),
        );
        assert_eq!(names(&t), ["Name", "Secrets", "Age"]);
        assert_eq!(cells(&t)[1], 0);
    }

    #[test]
    fn replication_controller() {
        let t = one(
            "",
            "replicationcontrollers",
            json!({
                "metadata": {"name": "rc"},
                "spec": {"replicas": 3, "selector": {"app": "x"}, "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}},
                "status": {"replicas": 3, "readyReplicas": 2}
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
        assert_eq!(cells(&t)[1..4], [json!(3), json!(3), json!(2)]);
        assert_eq!(cells(&t)[7], "app=x");
    }

    #[test]
    fn resource_quota() {
        let t = one(
            "",
            "resourcequotas",
            json!({
                "metadata": {"name": "q"},
                "status": {
                    "hard": {"pods": "10", "requests.cpu": "1", "limits.memory": "2Gi", "limits.cpu": "2"},
                    "used": {"pods": "3", "requests.cpu": "500m", "limits.cpu": "1"}
                }
            }),
        );
        assert_eq!(
            cells(&t)[1..3],
            [
                json!("pods: 3/10, requests.cpu: 500m/1"),
                json!("limits.cpu: 1/2, limits.memory: 0/2Gi")
            ]
        );
    }

    #[test]
    fn component_status() {
        let t = one(
            "",
            "componentstatuses",
            json!({"metadata": {"name": "etcd-0"}, "conditions": [{"type": "Healthy", "status": "True", "message": "ok"}]}),
        );
        assert_eq!(
            cells(&t),
            vec![json!("etcd-0"), json!("Healthy"), json!("ok"), json!("")]
        );
    }
}
