//! `networking.k8s.io` and `discovery.k8s.io` kinds: ingresses, ingress classes, network
//! policies, service CIDRs, IP addresses and endpoint slices.

use serde_json::{json, Value};

use crate::table::core::load_balancer_ingress;
use crate::table::format::{format_label_selector, int, list, list_with_more, name, st, Ctx};
use crate::table::{col, Column, Printer, Row, RowFn, AGE, NAME};

static INGRESS_COLUMNS: [Column; 6] = [
    NAME,
    col(
        "Class",
        "string",
        "The name of the IngressClass resource that should be used for additional configuration",
    ),
    col(
        "Hosts",
        "string",
        "Hosts that incoming requests are matched against before the ingress rule",
    ),
    col(
        "Address",
        "string",
        "Address is a list containing ingress points for the load-balancer",
    ),
    col("Ports", "string", "Ports of TLS configurations that open"),
    AGE,
];

static INGRESS_CLASS_COLUMNS: [Column; 4] = [
    NAME,
    col(
        "Controller",
        "string",
        "Controller that is responsible for handling this class",
    ),
    col(
        "Parameters",
        "string",
        "A reference to a resource with additional parameters",
    ),
    AGE,
];

static NETWORK_POLICY_COLUMNS: [Column; 3] = [
    NAME,
    col(
        "Pod-Selector",
        "string",
        "Selects the pods to which this NetworkPolicy object applies.",
    ),
    AGE,
];

static ENDPOINT_SLICE_COLUMNS: [Column; 5] = [
    NAME,
    col(
        "AddressType",
        "string",
        "addressType specifies the type of address carried by this EndpointSlice.",
    ),
    col(
        "Ports",
        "string",
        "ports specifies the list of network ports exposed by each endpoint in this slice.",
    ),
    col(
        "Endpoints",
        "string",
        "endpoints is a list of unique endpoints in this slice.",
    ),
    AGE,
];

static SERVICE_CIDR_COLUMNS: [Column; 3] = [
    NAME,
    col(
        "CIDRs",
        "string",
        "CIDRs defines the IP blocks in CIDR notation from which to assign service cluster IPs.",
    ),
    AGE,
];

static IP_ADDRESS_COLUMNS: [Column; 2] = [
    NAME,
    col(
        "ParentRef",
        "string",
        "ParentRef references the resource that an IPAddress is attached to.",
    ),
];

/// Printers of this file.
pub(crate) fn printer(group: &str, resource: &str) -> Option<Printer> {
    let (columns, row): (&'static [Column], RowFn) = match (group, resource) {
        ("networking.k8s.io", "ingresses") => (&INGRESS_COLUMNS, ingress_row),
        ("networking.k8s.io", "ingressclasses") => (&INGRESS_CLASS_COLUMNS, ingress_class_row),
        ("networking.k8s.io", "networkpolicies") => (&NETWORK_POLICY_COLUMNS, network_policy_row),
        ("networking.k8s.io", "servicecidrs") => (&SERVICE_CIDR_COLUMNS, service_cidr_row),
        ("networking.k8s.io", "ipaddresses") => (&IP_ADDRESS_COLUMNS, ip_address_row),
        ("discovery.k8s.io", "endpointslices") => (&ENDPOINT_SLICE_COLUMNS, endpoint_slice_row),
        _ => return None,
    };
    Some(Printer { columns, row })
}

/// The HOSTS cell: up to three rule hosts, `*` when no rule names a host.
fn format_hosts(rules: &[Value]) -> String {
    let max = 3;
    let mut shown: Vec<&str> = Vec::new();
    let mut more = false;
    for rule in rules {
        if shown.len() == max {
            more = true;
        }
        let host = st(&rule["host"]);
        if !more && !host.is_empty() {
            shown.push(host);
        }
    }
    if shown.is_empty() {
        return "*".to_string();
    }
    let joined = shown.join(",");
    if more {
        // Upstream counts every rule, including host-less ones, in the remainder.
        format!("{joined} + {} more...", rules.len() - max)
    } else {
        joined
    }
}

fn ingress_row(ing: &Value, ctx: &Ctx) -> Row {
    let spec = &ing["spec"];
    let class = spec["ingressClassName"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| "<none>".to_string());
    let ports = if list(&spec["tls"]).is_empty() {
        "80"
    } else {
        "80, 443"
    };
    vec![
        json!(name(ing)),
        json!(class),
        json!(format_hosts(list(&spec["rules"]))),
        json!(load_balancer_ingress(&ing["status"]["loadBalancer"]).join(",")),
        json!(ports),
        json!(ctx.age(ing)),
    ]
    .into()
}

fn ingress_class_row(ic: &Value, ctx: &Ctx) -> Row {
    let p = &ic["spec"]["parameters"];
    let parameters = if p.is_object() {
        let mut s = st(&p["kind"]).to_string();
        if let Some(g) = p["apiGroup"].as_str() {
            s.push('.');
            s.push_str(g);
        }
        s.push('/');
        s.push_str(st(&p["name"]));
        s
    } else {
        "<none>".to_string()
    };
    vec![
        json!(name(ic)),
        json!(st(&ic["spec"]["controller"])),
        json!(parameters),
        json!(ctx.age(ic)),
    ]
    .into()
}

fn network_policy_row(np: &Value, ctx: &Ctx) -> Row {
    vec![
        json!(name(np)),
        json!(format_label_selector(&np["spec"]["podSelector"])),
        json!(ctx.age(np)),
    ]
    .into()
}

fn endpoint_slice_row(es: &Value, ctx: &Ctx) -> Row {
    let ports: Vec<String> = list(&es["ports"])
        .iter()
        .map(|p| {
            if p["port"].is_number() {
                int(&p["port"]).to_string()
            } else if let Some(n) = p["name"].as_str() {
                n.to_string()
            } else {
                "*".to_string()
            }
        })
        .collect();
    let addresses: Vec<String> = list(&es["endpoints"])
        .iter()
        .flat_map(|e| list(&e["addresses"]).iter().map(|a| st(a).to_string()))
        .collect();
    vec![
        json!(name(es)),
        json!(st(&es["addressType"])),
        json!(list_with_more(&ports, 3, "<unset>")),
        json!(list_with_more(&addresses, 3, "<unset>")),
        json!(ctx.age(es)),
    ]
    .into()
}

fn service_cidr_row(sc: &Value, ctx: &Ctx) -> Row {
    let cidrs: Vec<&str> = list(&sc["spec"]["cidrs"]).iter().map(st).collect();
    vec![json!(name(sc)), json!(cidrs.join(",")), json!(ctx.age(sc))].into()
}

fn ip_address_row(ip: &Value, _ctx: &Ctx) -> Row {
    let p = &ip["spec"]["parentRef"];
    let parent = if p.is_object() {
        let group = st(&p["group"]);
        let resource = st(&p["resource"]);
        let mut s = if group.is_empty() {
            resource.to_lowercase()
        } else {
            format!("{resource}.{group}").to_lowercase()
        };
        if !st(&p["namespace"]).is_empty() {
            s.push('/');
            s.push_str(st(&p["namespace"]));
        }
        s.push('/');
        s.push_str(st(&p["name"]));
        s
    } else {
        "<none>".to_string()
    };
    vec![json!(name(ip)), json!(parent)].into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::tests::{cells, names, one};

    #[test]
    fn ingress() {
        let t = one(
            "networking.k8s.io",
            "ingresses",
            json!({
                "metadata": {"name": "web"},
                "spec": {"ingressClassName": "skiff", "rules": [{"host": "a.example"}, {"host": "b.example"}], "tls": [{"hosts": ["a.example"]}]},
                "status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.2"}, {"ip": "10.0.0.1"}]}}
            }),
        );
        assert_eq!(
            names(&t),
            ["Name", "Class", "Hosts", "Address", "Ports", "Age"]
        );
        assert_eq!(
            cells(&t)[..5],
            [
                json!("web"),
                json!("skiff"),
                json!("a.example,b.example"),
                json!("10.0.0.1,10.0.0.2"),
                json!("80, 443")
            ]
        );
        let t = one(
            "networking.k8s.io",
            "ingresses",
            json!({"metadata": {"name": "x"}, "spec": {"rules": [{}]}}),
        );
        assert_eq!(
            cells(&t)[1..5],
            [json!("<none>"), json!("*"), json!(""), json!("80")]
        );
        let rules: Vec<Value> = (0..5).map(|i| json!({"host": format!("h{i}")})).collect();
        assert_eq!(format_hosts(&rules), "h0,h1,h2 + 2 more...");
    }

    #[test]
    fn ingress_class() {
        let t = one(
            "networking.k8s.io",
            "ingressclasses",
            json!({
                "metadata": {"name": "skiff"},
                "spec": {"controller": "skiff.io/ingress", "parameters": {"apiGroup": "k8s.example.com", "kind": "IngressParameters", "name": "p"}}
            }),
        );
        assert_eq!(names(&t), ["Name", "Controller", "Parameters", "Age"]);
        assert_eq!(
            cells(&t)[1..3],
            [
                json!("skiff.io/ingress"),
                json!("IngressParameters.k8s.example.com/p")
            ]
        );
        let t = one(
            "networking.k8s.io",
            "ingressclasses",
            json!({"metadata": {"name": "n"}, "spec": {"controller": "c"}}),
        );
        assert_eq!(cells(&t)[2], "<none>");
    }

    #[test]
    fn network_policy() {
        let t = one(
            "networking.k8s.io",
            "networkpolicies",
            json!({"metadata": {"name": "deny"}, "spec": {"podSelector": {}}}),
        );
        assert_eq!(names(&t), ["Name", "Pod-Selector", "Age"]);
        assert_eq!(cells(&t)[1], "<none>");
        let t = one(
            "networking.k8s.io",
            "networkpolicies",
            json!({"metadata": {"name": "a"}, "spec": {"podSelector": {"matchLabels": {"app": "db"}}}}),
        );
        assert_eq!(cells(&t)[1], "app=db");
    }

    #[test]
    fn endpoint_slice() {
        let t = one(
            "discovery.k8s.io",
            "endpointslices",
            json!({
                "metadata": {"name": "web-abc"}, "addressType": "IPv4",
                "ports": [{"port": 80, "name": "http"}, {"name": "named"}, {}],
                "endpoints": [{"addresses": ["10.42.0.1"]}, {"addresses": ["10.42.0.2", "10.42.0.3"]}, {"addresses": ["10.42.0.4"]}]
            }),
        );
        assert_eq!(
            names(&t),
            ["Name", "AddressType", "Ports", "Endpoints", "Age"]
        );
        assert_eq!(
            cells(&t)[1..4],
            [
                json!("IPv4"),
                json!("80,named,*"),
                json!("10.42.0.1,10.42.0.2,10.42.0.3 + 1 more...")
            ]
        );
        let t = one(
            "discovery.k8s.io",
            "endpointslices",
            json!({"metadata": {"name": "e"}, "addressType": "IPv4"}),
        );
        assert_eq!(cells(&t)[2..4], [json!("<unset>"), json!("<unset>")]);
    }

    #[test]
    fn service_cidr_and_ip_address() {
        let t = one(
            "networking.k8s.io",
            "servicecidrs",
            json!({"metadata": {"name": "kubernetes"}, "spec": {"cidrs": ["10.43.0.0/16", "fd00::/108"]}}),
        );
        assert_eq!(cells(&t)[1], "10.43.0.0/16,fd00::/108");
        let t = one(
            "networking.k8s.io",
            "ipaddresses",
            json!({"metadata": {"name": "10.43.0.1"}, "spec": {"parentRef": {"group": "", "resource": "services", "namespace": "default", "name": "kubernetes"}}}),
        );
        assert_eq!(
            cells(&t),
            vec![json!("10.43.0.1"), json!("services/default/kubernetes")]
        );
    }
}
