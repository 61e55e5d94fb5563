//! End-to-end, real kubectl: typed `create secret` and `create service` commands (which send
//! protobuf bodies), `expose`, and ClusterIP/NodePort allocation with conflicts refused.

mod kubectl_common;

use kubectl_common::{cluster, fails_stdin, ok_stdin};

fn b64(s: &str) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n = (chunk[0] as u32) << 16 | (*chunk.get(1).unwrap_or(&0) as u32) << 8 | *chunk.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn create_secret_generic_and_docker_registry() {
    let c = cluster();
    let out = c.ok(&["create", "secret", "generic", "creds", "--from-literal=user=admin", "--from-literal=pass=pw"]).unwrap();
    assert_eq!(out.trim(), "secret/creds created");
    let s = c.json(&["get", "secret", "creds"]).unwrap();
    assert_eq!(s["type"], "Opaque");
    assert_eq!(s["data"]["user"], b64("admin"));
    assert_eq!(s["data"]["pass"], b64("pw"));
    assert_eq!(c.ok(&["get", "secret", "creds", "-o", "jsonpath={.data.user}"]).unwrap(), b64("admin"));

    c.ok(&["create", "secret", "docker-registry", "reg", "--docker-server=reg.example.com", "--docker-username=u", "--docker-password=p", "--docker-email=e@x.org"]).unwrap();
    let s = c.json(&["get", "secret", "reg"]).unwrap();
    assert_eq!(s["type"], "kubernetes.io/dockerconfigjson");
    let cfg = s["data"][".dockerconfigjson"].as_str().unwrap();
    let expected = b64(&format!(r#"{{"auths":{{"reg.example.com":{{"username":"u","password":"p","email":"e@x.org","auth":"{}"}}}}}}"#, b64("u:p")));
    assert_eq!(cfg, expected);

    let table = c.ok(&["get", "secrets"]).unwrap();
    let row = |name: &str| table.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name} in:\n{table}")).split_whitespace().map(str::to_string).collect::<Vec<_>>();
    assert_eq!(row("creds")[1..3], ["Opaque".to_string(), "2".to_string()]);
    assert_eq!(row("reg")[1..3], ["kubernetes.io/dockerconfigjson".to_string(), "1".to_string()]);

    // A docker-registry secret without its key is invalid (type-specific validation).
    let bad = r#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"bad"},"type":"kubernetes.io/dockerconfigjson","data":{"x":"eA=="}}"#;
    let e = fails_stdin(&c, &["create", "-f", "-"], bad);
    assert!(e.contains("is invalid") && e.contains("data[.dockerconfigjson]: Required value"), "{e}");
    // Duplicates are refused.
    let e = c.fails(&["create", "secret", "generic", "creds", "--from-literal=a=b"]).unwrap();
    assert!(e.contains("already exists"), "{e}");
}

#[test]
fn create_service_nodeport_and_expose() {
    let c = cluster();
    c.ok(&["create", "service", "nodeport", "np", "--tcp=8080:80"]).unwrap();
    let svc = c.json(&["get", "svc", "np"]).unwrap();
    assert_eq!(svc["spec"]["type"], "NodePort");
    let p = &svc["spec"]["ports"][0];
    assert_eq!(p["port"], 8080);
    assert_eq!(p["targetPort"], 80);
    assert_eq!(p["protocol"], "TCP");
    let np = p["nodePort"].as_i64().unwrap();
    assert!((30000..=32767).contains(&np), "nodePort {np}");
    assert_eq!(svc["spec"]["externalTrafficPolicy"], "Cluster");
    let ip = svc["spec"]["clusterIP"].as_str().unwrap();
    assert!(ip.starts_with("10.43.") && ip != "10.43.0.1", "clusterIP {ip}");
    assert_eq!(svc["spec"]["clusterIPs"][0], ip);
    let table = c.ok(&["get", "svc", "np"]).unwrap();
    assert!(table.contains("NodePort") && table.contains(&format!("8080:{np}/TCP")) && table.contains(ip), "{table}");

    // An explicit nodePort is honoured.
    c.ok(&["create", "service", "nodeport", "fixed", "--tcp=80:80", "--node-port=30080"]).unwrap();
    assert_eq!(c.json(&["get", "svc", "fixed"]).unwrap()["spec"]["ports"][0]["nodePort"], 30080);

    // expose a deployment: selector and ports come from it.
    c.ok(&["create", "deployment", "web", "--image=nginx", "--port=80"]).unwrap();
    let out = c.ok(&["expose", "deployment", "web", "--port=8080", "--target-port=80"]).unwrap();
    assert_eq!(out.trim(), "service/web exposed");
    let svc = c.json(&["get", "svc", "web"]).unwrap();
    assert_eq!(svc["spec"]["type"], "ClusterIP");
    assert_eq!(svc["spec"]["selector"]["app"], "web");
    assert_eq!(svc["spec"]["ports"][0]["port"], 8080);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 80);
    assert!(svc["spec"]["ports"][0].get("nodePort").is_none());
    c.ok(&["expose", "deployment", "web", "--name=web-np", "--type=NodePort", "--port=80"]).unwrap();
    let np2 = c.json(&["get", "svc", "web-np"]).unwrap()["spec"]["ports"][0]["nodePort"].as_i64().unwrap();
    assert!((30000..=32767).contains(&np2) && np2 != np && np2 != 30080, "{np2}");
    // Headless.
    c.ok(&["create", "service", "clusterip", "headless", "--clusterip=None"]).unwrap();
    assert_eq!(c.json(&["get", "svc", "headless"]).unwrap()["spec"]["clusterIP"], "None");
}

#[test]
fn node_port_to_cluster_ip_drops_type_dependent_fields() {
    let c = cluster();
    c.ok(&["create", "service", "nodeport", "plain", "--tcp=80:80"]).unwrap();
    c.ok(&["patch", "svc", "plain", "-p", r#"{"spec":{"type":"ClusterIP"}}"#]).unwrap();
    let svc = c.json(&["get", "svc", "plain"]).unwrap();
    assert_eq!(svc["spec"]["type"], "ClusterIP");
    assert!(svc["spec"]["ports"][0].get("nodePort").is_none(), "{svc}");
    assert!(svc["spec"].get("externalTrafficPolicy").is_none(), "{svc}");

    c.ok(&["create", "service", "nodeport", "fixed", "--tcp=80:80", "--node-port=30080"]).unwrap();
    c.ok(&["patch", "svc", "fixed", "--type=merge", "-p", r#"{"spec":{"type":"ClusterIP","ports":[{"port":80,"targetPort":80,"protocol":"TCP"}]}}"#]).unwrap();
    let fixed = c.json(&["get", "svc", "fixed"]).unwrap();
    assert_eq!(fixed["spec"]["type"], "ClusterIP");
    assert!(fixed["spec"]["ports"][0].get("nodePort").is_none(), "{fixed}");
    // The released nodePort is free for someone else.
    c.ok(&["create", "service", "nodeport", "reuse", "--tcp=80:80", "--node-port=30080"]).unwrap();
}

#[test]
fn cluster_ip_and_node_port_conflicts_are_refused() {
    let c = cluster();
    c.ok(&["create", "service", "nodeport", "a", "--tcp=80:80", "--node-port=30555"]).unwrap();
    let e = c.fails(&["create", "service", "nodeport", "b", "--tcp=80:80", "--node-port=30555"]).unwrap();
    assert!(e.contains("Invalid") && e.contains("30555") && e.contains("provided port is already allocated"), "{e}");
    let e = c.fails(&["create", "service", "nodeport", "c", "--tcp=80:80", "--node-port=40000"]).unwrap();
    assert!(e.contains("40000") && e.contains("30000-32767"), "{e}");
    // The same nodePort twice inside one service.
    let two = r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"twice"},"spec":{"type":"NodePort","ports":[{"name":"a","port":80,"nodePort":30600},{"name":"b","port":81,"nodePort":30600}]}}"#;
    let e = fails_stdin(&c, &["create", "-f", "-"], two);
    assert!(e.contains("30600"), "{e}");

    c.ok(&["create", "service", "clusterip", "x", "--tcp=80:80", "--clusterip=10.43.100.100"]).unwrap();
    let e = c.fails(&["create", "service", "clusterip", "y", "--tcp=80:80", "--clusterip=10.43.100.100"]).unwrap();
    assert!(e.contains("Invalid") && e.contains("10.43.100.100") && e.contains("already allocated"), "{e}");
    let e = c.fails(&["create", "service", "clusterip", "z", "--tcp=80:80", "--clusterip=10.43.0.1"]).unwrap();
    assert!(e.contains("already allocated"), "the kubernetes service holds 10.43.0.1: {e}");
    let e = c.fails(&["create", "service", "clusterip", "out", "--tcp=80:80", "--clusterip=10.99.0.1"]).unwrap();
    assert!(e.contains("10.43.0.0/16"), "{e}");

    // An update asking for a taken nodePort is refused and leaves the service as it was.
    c.ok(&["create", "service", "nodeport", "d", "--tcp=80:80"]).unwrap();
    let before = c.json(&["get", "svc", "d"]).unwrap()["spec"]["ports"][0]["nodePort"].clone();
    let e = c.fails(&["patch", "svc", "d", "-p", r#"{"spec":{"ports":[{"port":80,"nodePort":30555}]}}"#]).unwrap();
    assert!(e.contains("already allocated"), "{e}");
    assert_eq!(c.json(&["get", "svc", "d"]).unwrap()["spec"]["ports"][0]["nodePort"], before);
    // clusterIP is immutable.
    let e = c.fails(&["patch", "svc", "x", "--type=merge", "-p", r#"{"spec":{"clusterIP":"10.43.100.101","clusterIPs":["10.43.100.101"]}}"#]).unwrap();
    assert!(e.contains("may not change once set") || e.contains("immutable"), "{e}");

    // Deleting releases both the port and the IP.
    c.ok(&["delete", "svc", "a", "x"]).unwrap();
    c.ok(&["create", "service", "nodeport", "b", "--tcp=80:80", "--node-port=30555"]).unwrap();
    c.ok(&["create", "service", "clusterip", "y", "--tcp=80:80", "--clusterip=10.43.100.100"]).unwrap();

    // Allocated addresses never collide across many services.
    let mut ips = std::collections::HashSet::new();
    let mut ports = std::collections::HashSet::new();
    for i in 0..12 {
        let svc = format!(r#"{{"apiVersion":"v1","kind":"Service","metadata":{{"name":"many-{i}"}},"spec":{{"type":"NodePort","ports":[{{"port":80}}]}}}}"#);
        ok_stdin(&c, &["create", "-f", "-"], &svc);
    }
    let list = c.json(&["get", "svc"]).unwrap();
    for s in list["items"].as_array().unwrap() {
        if let Some(ip) = s["spec"]["clusterIP"].as_str().filter(|ip| *ip != "None") {
            assert!(ips.insert(ip.to_string()), "duplicate clusterIP {ip}");
        }
        for p in s["spec"]["ports"].as_array().unwrap() {
            if let Some(n) = p["nodePort"].as_i64() {
                assert!(ports.insert(n), "duplicate nodePort {n}");
            }
        }
    }
    assert!(ports.len() >= 13, "{ports:?}");
}
