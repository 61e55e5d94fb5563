//! Service (core/v1) and Ingress (networking.k8s.io/v1) validation.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::meta::validate_labels;
use super::names::{
    is_dns1035_label, is_dns1123_label, is_dns1123_subdomain, is_valid_cidr, is_valid_ip,
    is_valid_port_name, is_valid_port_num,
};
use super::pod::{enum_field, validate_port_num_or_name};
use super::{child, get_arr, get_i64, get_str, index, push_msgs, str_or_empty, FieldError};

/// Default NodePort range, as `--service-node-port-range` defaults upstream and in skiff.
pub const NODE_PORT_RANGE: (i64, i64) = (30000, 32767);

const SERVICE_TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];

/// core/v1 Service: type, ports, node ports, cluster IPs, external name and selector.
pub(crate) fn validate_service(obj: &Value) -> Vec<FieldError> {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let mut errs = Vec::new();
    let ty = get_str(spec, "type").unwrap_or("ClusterIP");
    if !SERVICE_TYPES.contains(&ty) {
        errs.push(FieldError::not_supported("spec.type", ty, SERVICE_TYPES));
    }
    let cluster_ip = str_or_empty(spec, "clusterIP");
    let headless = cluster_ip == "None";
    let ports = get_arr(spec, "ports");
    if ports.is_empty() && !headless && ty != "ExternalName" {
        errs.push(FieldError::required("spec.ports", ""));
    }
    if ty == "ExternalName" {
        if !cluster_ip.is_empty() {
            errs.push(FieldError::forbidden(
                "spec.clusterIP",
                "may not be set for ExternalName services",
            ));
        }
        let name = str_or_empty(spec, "externalName");
        if name.is_empty() {
            errs.push(FieldError::required("spec.externalName", ""));
        } else {
            // A trailing dot marks a fully qualified name and is allowed.
            push_msgs(
                &mut errs,
                "spec.externalName",
                name,
                is_dns1123_subdomain(name.strip_suffix('.').unwrap_or(name)),
            );
        }
    }
    let mut names = BTreeSet::new();
    let mut seen_ports = BTreeSet::new();
    let mut seen_node_ports = BTreeSet::new();
    for (i, p) in ports.iter().enumerate() {
        let pp = index("spec.ports", i);
        let name = str_or_empty(p, "name");
        if ports.len() > 1 && name.is_empty() {
            errs.push(FieldError::required(child(&pp, "name"), ""));
        } else if !name.is_empty() {
            push_msgs(&mut errs, &child(&pp, "name"), name, is_dns1123_label(name));
            if !names.insert(name) {
                errs.push(FieldError::duplicate(child(&pp, "name"), name));
            }
        }
        let port = get_i64(p, "port").unwrap_or(0);
        errs.extend(
            is_valid_port_num(port)
                .into_iter()
                .map(|m| FieldError::invalid(child(&pp, "port"), port, m)),
        );
        enum_field(&mut errs, p, "protocol", &pp, &["SCTP", "TCP", "UDP"]);
        if let Some(tp) = p.get("targetPort").filter(|t| !t.is_null()) {
            validate_port_num_or_name(tp, &child(&pp, "targetPort"), &mut errs);
        }
        let proto = get_str(p, "protocol").unwrap_or("TCP");
        if !seen_ports.insert((port, proto)) {
            errs.push(FieldError::duplicate(
                &pp,
                json!({"port": port, "protocol": proto}),
            ));
        }
        let node_port = get_i64(p, "nodePort").unwrap_or(0);
        if node_port != 0 {
            if ty == "ClusterIP" {
                errs.push(FieldError::forbidden(
                    child(&pp, "nodePort"),
                    "may not be used when `type` is 'ClusterIP'",
                ));
            } else if ty == "ExternalName" {
                // Upstream ignores ports of ExternalName services beyond their format.
            } else if !(NODE_PORT_RANGE.0..=NODE_PORT_RANGE.1).contains(&node_port) {
                errs.push(FieldError::invalid(
                    child(&pp, "nodePort"),
                    node_port,
                    format!(
                        "provided port is not in the valid range. The range of valid ports is {}-{}",
                        NODE_PORT_RANGE.0, NODE_PORT_RANGE.1
                    ),
                ));
            } else if !seen_node_ports.insert((node_port, proto)) {
                errs.push(FieldError::duplicate(child(&pp, "nodePort"), node_port));
            }
        }
    }
    let cluster_ips = get_arr(spec, "clusterIPs");
    if cluster_ips.is_empty() {
        if !cluster_ip.is_empty() && !headless {
            push_msgs(
                &mut errs,
                "spec.clusterIP",
                cluster_ip,
                is_valid_ip(cluster_ip),
            );
        }
    } else {
        for (i, ip) in cluster_ips.iter().enumerate() {
            let ip = ip.as_str().unwrap_or_default();
            if i == 0 && ip == "None" {
                continue;
            }
            push_msgs(&mut errs, &index("spec.clusterIPs", i), ip, is_valid_ip(ip));
        }
        if !cluster_ip.is_empty() && cluster_ips[0].as_str() != Some(cluster_ip) {
            errs.push(FieldError::invalid(
                "spec.clusterIPs",
                &spec["clusterIPs"],
                "first value must match `clusterIP`",
            ));
        }
    }
    for (i, ip) in get_arr(spec, "externalIPs").iter().enumerate() {
        let ip = ip.as_str().unwrap_or_default();
        push_msgs(
            &mut errs,
            &index("spec.externalIPs", i),
            ip,
            is_valid_ip(ip),
        );
    }
    let lb_ranges = get_arr(spec, "loadBalancerSourceRanges");
    if !lb_ranges.is_empty() && ty != "LoadBalancer" {
        errs.push(FieldError::forbidden(
            "spec.loadBalancerSourceRanges",
            "may only be used when `type` is 'LoadBalancer'",
        ));
    }
    for (i, r) in lb_ranges.iter().enumerate() {
        let r = r.as_str().unwrap_or_default();
        push_msgs(
            &mut errs,
            &index("spec.loadBalancerSourceRanges", i),
            r,
            is_valid_cidr(r.trim()),
        );
    }
    errs.extend(validate_labels(spec.get("selector"), "spec.selector"));
    enum_field(
        &mut errs,
        spec,
        "sessionAffinity",
        "spec",
        &["ClientIP", "None"],
    );
    enum_field(
        &mut errs,
        spec,
        "internalTrafficPolicy",
        "spec",
        &["Cluster", "Local"],
    );
    enum_field(
        &mut errs,
        spec,
        "ipFamilyPolicy",
        "spec",
        &["SingleStack", "PreferDualStack", "RequireDualStack"],
    );
    if let Some(etp) = get_str(spec, "externalTrafficPolicy").filter(|e| !e.is_empty()) {
        if ty == "ClusterIP" || ty == "ExternalName" {
            errs.push(FieldError::invalid(
                "spec.externalTrafficPolicy",
                etp,
                "may only be set for externally-accessible services",
            ));
        } else if etp != "Cluster" && etp != "Local" {
            errs.push(FieldError::not_supported(
                "spec.externalTrafficPolicy",
                etp,
                &["Cluster", "Local"],
            ));
        }
    }
    for (i, fam) in get_arr(spec, "ipFamilies").iter().enumerate() {
        let fam = fam.as_str().unwrap_or_default();
        if fam != "IPv4" && fam != "IPv6" {
            errs.push(FieldError::not_supported(
                index("spec.ipFamilies", i),
                fam,
                &["IPv4", "IPv6"],
            ));
        }
    }
    errs
}

const WILDCARD_ERR: &str = "a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, which must consist of lower case alphanumeric characters, '-' or '.' and end with an alphanumeric character (e.g. '*.example.com', regex used for validation is '\\*\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";

fn host_errors(host: &str) -> Vec<String> {
    if host.contains('*') {
        let mut errs = Vec::new();
        if host.len() > 253 {
            errs.push(super::names::max_len_error(253));
        }
        match host.strip_prefix("*.") {
            Some(rest) if is_dns1123_subdomain(rest).is_empty() => {}
            _ => errs.push(WILDCARD_ERR.to_string()),
        }
        errs
    } else {
        is_dns1123_subdomain(host)
    }
}

fn validate_backend(b: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let has_resource = b.get("resource").is_some_and(|v| !v.is_null());
    let svc = b.get("service").filter(|v| !v.is_null());
    match (has_resource, svc) {
        (true, Some(_)) => errs.push(FieldError::invalid(
            path,
            "",
            "cannot set both resource and service backends",
        )),
        (true, None) => {
            let r = &b["resource"];
            for k in ["kind", "name"] {
                if str_or_empty(r, k).is_empty() {
                    errs.push(FieldError::required(child(&child(path, "resource"), k), ""));
                }
            }
        }
        (false, Some(s)) => {
            let sp = child(path, "service");
            let name = str_or_empty(s, "name");
            if name.is_empty() {
                errs.push(FieldError::required(child(&sp, "name"), ""));
            } else {
                push_msgs(errs, &child(&sp, "name"), name, is_dns1035_label(name));
            }
            let port = s.get("port").unwrap_or(&Value::Null);
            let pname = str_or_empty(port, "name");
            let pnum = get_i64(port, "number").unwrap_or(0);
            match (pname.is_empty(), pnum == 0) {
                (false, false) => errs.push(FieldError::invalid(
                    path,
                    "",
                    "cannot set both port name & port number",
                )),
                (false, true) => push_msgs(
                    errs,
                    &child(&sp, "port.name"),
                    pname,
                    is_valid_port_name(pname),
                ),
                (true, false) => errs.extend(
                    is_valid_port_num(pnum)
                        .into_iter()
                        .map(|m| FieldError::invalid(child(&sp, "port.number"), pnum, m)),
                ),
                (true, true) => errs.push(FieldError::required(
                    path,
                    "port name or number is required",
                )),
            }
        }
        (false, None) => errs.push(FieldError::invalid(
            path,
            "",
            "resource or service backend is required",
        )),
    }
}

fn validate_http_path(p: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let value = str_or_empty(p, "path");
    let pp = child(path, "path");
    match get_str(p, "pathType") {
        None => errs.push(FieldError::required(
            child(path, "pathType"),
            "pathType must be specified",
        )),
        Some("Exact" | "Prefix") => {
            if !value.starts_with('/') {
                errs.push(FieldError::invalid(&pp, value, "must be an absolute path"));
            }
            for seq in ["//", "/./", "/../", "%2f", "%2F"] {
                if value.contains(seq) {
                    errs.push(FieldError::invalid(
                        &pp,
                        value,
                        format!("must not contain '{seq}'"),
                    ));
                }
            }
            for suffix in ["/..", "/."] {
                if value.ends_with(suffix) {
                    errs.push(FieldError::invalid(
                        &pp,
                        value,
                        format!("cannot end with '{suffix}'"),
                    ));
                }
            }
        }
        Some("ImplementationSpecific") => {
            if !value.is_empty() && !value.starts_with('/') {
                errs.push(FieldError::invalid(&pp, value, "must be an absolute path"));
            }
        }
        Some(other) => errs.push(FieldError::not_supported(
            child(path, "pathType"),
            other,
            &["Exact", "ImplementationSpecific", "Prefix"],
        )),
    }
    validate_backend(
        p.get("backend").unwrap_or(&Value::Null),
        &child(path, "backend"),
        errs,
    );
}

/// networking.k8s.io/v1 Ingress: rules or a default backend, hosts, paths and path types,
/// backends, TLS hosts and class name.
pub(crate) fn validate_ingress(obj: &Value) -> Vec<FieldError> {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let mut errs = Vec::new();
    let rules = get_arr(spec, "rules");
    let default_backend = spec.get("defaultBackend").filter(|b| !b.is_null());
    if rules.is_empty() && default_backend.is_none() {
        errs.push(FieldError::invalid(
            "spec",
            spec.get("rules").unwrap_or(&Value::Null),
            "either `defaultBackend` or `rules` must be specified",
        ));
    }
    if let Some(b) = default_backend {
        validate_backend(b, "spec.defaultBackend", &mut errs);
    }
    for (i, rule) in rules.iter().enumerate() {
        let rp = index("spec.rules", i);
        let host = str_or_empty(rule, "host");
        if !host.is_empty() {
            if host.parse::<std::net::IpAddr>().is_ok() {
                errs.push(FieldError::invalid(
                    child(&rp, "host"),
                    host,
                    "must be a DNS name, not an IP address",
                ));
            }
            push_msgs(&mut errs, &child(&rp, "host"), host, host_errors(host));
        }
        if let Some(http) = rule.get("http").filter(|h| !h.is_null()) {
            let hp = child(&rp, "http");
            let paths = get_arr(http, "paths");
            if paths.is_empty() {
                errs.push(FieldError::required(child(&hp, "paths"), ""));
            }
            for (j, p) in paths.iter().enumerate() {
                validate_http_path(p, &index(&child(&hp, "paths"), j), &mut errs);
            }
        }
    }
    for (i, tls) in get_arr(spec, "tls").iter().enumerate() {
        for (j, h) in get_arr(tls, "hosts").iter().enumerate() {
            let h = h.as_str().unwrap_or_default();
            push_msgs(
                &mut errs,
                &index(&child(&index("spec.tls", i), "hosts"), j),
                h,
                host_errors(h),
            );
        }
    }
    if let Some(class) = get_str(spec, "ingressClassName") {
        push_msgs(
            &mut errs,
            "spec.ingressClassName",
            class,
            is_dns1123_subdomain(class),
        );
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strs(errs: Vec<FieldError>) -> Vec<String> {
        errs.iter().map(|e| e.to_string()).collect()
    }

    fn svc(spec: Value) -> Value {
        json!({"metadata": {"name": "s", "namespace": "default"}, "spec": spec})
    }

    #[test]
    fn service_ports() {
        assert!(validate_service(&svc(
            json!({"ports": [{"port": 80, "targetPort": "http"}], "selector": {"app": "a"}})
        ))
        .is_empty());
        assert_eq!(
            strs(validate_service(&svc(json!({})))),
            ["spec.ports: Required value"]
        );
        assert!(validate_service(&svc(json!({"clusterIP": "None"}))).is_empty());
        let e = strs(validate_service(&svc(
            json!({"type": "NodePort", "ports": [
                {"port": 80, "nodePort": 80, "name": "a"},
                {"port": 80, "name": "b"},
                {"port": 0}
            ]}),
        )));
        assert!(e.contains(&"spec.ports[0].nodePort: Invalid value: 80: provided port is not in the valid range. The range of valid ports is 30000-32767".to_string()));
        assert!(e
            .iter()
            .any(|m| m.starts_with("spec.ports[1]: Duplicate value:")));
        assert!(e.contains(&"spec.ports[2].name: Required value".to_string()));
        assert!(e.contains(
            &"spec.ports[2].port: Invalid value: 0: must be between 1 and 65535, inclusive"
                .to_string()
        ));
        let e = strs(validate_service(&svc(
            json!({"ports": [{"port": 80, "nodePort": 30080}]}),
        )));
        assert_eq!(
            e,
            ["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"]
        );
    }

    #[test]
    fn service_types_and_ips() {
        let e = strs(validate_service(&svc(
            json!({"type": "Weird", "ports": [{"port": 1}]}),
        )));
        assert_eq!(e, ["spec.type: Unsupported value: \"Weird\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\""]);
        let e = strs(validate_service(&svc(json!({"type": "ExternalName"}))));
        assert_eq!(e, ["spec.externalName: Required value"]);
        assert!(validate_service(&svc(
            json!({"type": "ExternalName", "externalName": "example.com."})
        ))
        .is_empty());
        let e = strs(validate_service(&svc(
            json!({"clusterIP": "abc", "ports": [{"port": 1}]}),
        )));
        assert_eq!(e, ["spec.clusterIP: Invalid value: \"abc\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"]);
        let e = strs(validate_service(&svc(
            json!({"type": "ExternalName", "externalName": "x.com", "clusterIP": "10.0.0.1"}),
        )));
        assert_eq!(
            e,
            ["spec.clusterIP: Forbidden: may not be set for ExternalName services"]
        );
    }

    #[test]
    fn ingress() {
        let ok = json!({"spec": {"rules": [{"host": "foo.example.com", "http": {"paths": [
            {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}}
        ]}}]}});
        assert!(validate_ingress(&ok).is_empty());
        let e = strs(validate_ingress(&json!({"spec": {}})));
        assert_eq!(
            e,
            ["spec: Invalid value: null: either `defaultBackend` or `rules` must be specified"]
        );
        let bad = json!({"spec": {"rules": [{"host": "1.2.3.4", "http": {"paths": [
            {"path": "x", "backend": {"service": {"name": "web"}}},
            {"path": "a//b", "pathType": "Exact", "backend": {}},
            {"path": "/", "pathType": "Glob", "backend": {"service": {"name": "web", "port": {"name": "http", "number": 1}}}}
        ]}}, {"host": "*.example.com", "http": {"paths": []}}]}});
        let e = strs(validate_ingress(&bad));
        assert!(e.contains(&"spec.rules[0].host: Invalid value: \"1.2.3.4\": must be a DNS name, not an IP address".to_string()));
        assert!(e.contains(
            &"spec.rules[0].http.paths[0].pathType: Required value: pathType must be specified"
                .to_string()
        ));
        assert!(e.contains(
            &"spec.rules[0].http.paths[0].backend: Required value: port name or number is required"
                .to_string()
        ));
        assert!(e.contains(
            &"spec.rules[0].http.paths[1].path: Invalid value: \"a//b\": must be an absolute path"
                .to_string()
        ));
        assert!(e.contains(
            &"spec.rules[0].http.paths[1].path: Invalid value: \"a//b\": must not contain '//'"
                .to_string()
        ));
        assert!(e.contains(&"spec.rules[0].http.paths[1].backend: Invalid value: \"\": resource or service backend is required".to_string()));
        assert!(e
            .iter()
            .any(|m| m
                .starts_with("spec.rules[0].http.paths[2].pathType: Unsupported value: \"Glob\"")));
        assert!(e.contains(&"spec.rules[0].http.paths[2].backend: Invalid value: \"\": cannot set both port name & port number".to_string()));
        assert!(e.contains(&"spec.rules[1].http.paths: Required value".to_string()));
        assert!(!e.iter().any(|m| m.starts_with("spec.rules[1].host")));
    }
}
