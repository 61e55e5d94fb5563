//! build_routes from API objects: class selection, port resolution, conflicts, annotations.

use std::net::SocketAddr;

use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::Ingress;
use serde_json::json;

use super::matcher::{Lookup, PathMatch};
use super::routes::{build_routes, is_ours, Routes, Warning};

pub(super) fn ingress(v: serde_json::Value) -> Ingress {
    serde_json::from_value(v).unwrap()
}

pub(super) fn service(ns: &str, name: &str, ports: serde_json::Value) -> Service {
    serde_json::from_value(json!({
        "metadata": {"namespace": ns, "name": name},
        "spec": {"ports": ports}
    }))
    .unwrap()
}

pub(super) fn slice(
    ns: &str,
    svc: &str,
    ports: serde_json::Value,
    eps: serde_json::Value,
) -> EndpointSlice {
    serde_json::from_value(json!({
        "metadata": {"namespace": ns, "name": format!("{svc}-abc"),
                     "labels": {"kubernetes.io/service-name": svc}},
        "addressType": "IPv4",
        "ports": ports,
        "endpoints": eps
    }))
    .unwrap()
}

/// `(backend name, endpoints)` a request resolves to, or None for 404.
fn resolve(r: &Routes, host: &str, path: &str) -> Option<(String, Vec<SocketAddr>)> {
    match r.table.lookup(host, path) {
        Lookup::Path(p) => Some((p.backend.name.clone(), p.backend.endpoints.clone())),
        Lookup::Default(b) => Some((format!("default {}", b.name), b.endpoints.clone())),
        Lookup::NotFound => None,
    }
}

fn simple_ingress(
    name: &str,
    class: Option<&str>,
    host: &str,
    svc: &str,
    port: serde_json::Value,
) -> Ingress {
    let mut spec = json!({
        "rules": [{"host": host, "http": {"paths": [
            {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": svc, "port": port}}}
        ]}}]
    });
    if let Some(c) = class {
        spec["ingressClassName"] = json!(c);
    }
    ingress(json!({"metadata": {"namespace": "default", "name": name}, "spec": spec}))
}

fn addrs(list: &[&str]) -> Vec<SocketAddr> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}

#[test]
fn named_ports_resolve_through_service_and_slices_ready_only() {
    let svc = service(
        "default",
        "web",
        json!([
            {"name": "http", "port": 80, "targetPort": "web"},
            {"name": "admin", "port": 9000, "targetPort": 9001}
        ]),
    );
    let sl = slice(
        "default",
        "web",
        json!([{"name": "http", "port": 8080}, {"name": "admin", "port": 9001}]),
        json!([
            {"addresses": ["10.42.0.5"], "conditions": {"ready": true}},
            {"addresses": ["10.42.0.6"], "conditions": {"ready": false}},
            {"addresses": ["10.42.0.4"]}
        ]),
    );
    let by_name = simple_ingress("a", Some("skiff"), "a.test", "web", json!({"name": "http"}));
    let by_number = simple_ingress("b", Some("skiff"), "b.test", "web", json!({"number": 9000}));
    let (r, w) = build_routes(&[by_name, by_number], &[svc], &[sl], &[], "skiff", true);
    assert!(w.is_empty(), "{w:?}");
    let (name, eps) = resolve(&r, "a.test", "/x").unwrap();
    assert_eq!(name, "default/web:http");
    // Not-ready excluded; nil ready counts as ready; sorted.
    assert_eq!(eps, addrs(&["10.42.0.4:8080", "10.42.0.5:8080"]));
    let (_, eps) = resolve(&r, "b.test", "/").unwrap();
    assert_eq!(eps, addrs(&["10.42.0.4:9001", "10.42.0.5:9001"]));
    assert!(resolve(&r, "c.test", "/").is_none());
}

#[test]
fn missing_service_or_port_gives_an_empty_backend_and_a_warning() {
    let svc = service("default", "web", json!([{"port": 80}]));
    let a = simple_ingress("a", None, "a.test", "nope", json!({"number": 80}));
    let b = simple_ingress("b", None, "b.test", "web", json!({"number": 81}));
    let (r, w) = build_routes(&[a, b], &[svc], &[], &[], "skiff", true);
    assert_eq!(w.len(), 2, "{w:?}");
    assert_eq!(
        w[0],
        Warning {
            ingress: "default/a".into(),
            message: "service default/nope not found".into()
        }
    );
    assert!(w[1].message.contains("has no port 81"), "{w:?}");
    // Still routed (to 503), not 404.
    assert_eq!(resolve(&r, "a.test", "/").unwrap().1, vec![]);
    assert_eq!(resolve(&r, "b.test", "/").unwrap().1, vec![]);
}

#[test]
fn class_selection() {
    let mine = simple_ingress("mine", Some("skiff"), "a.test", "s", json!({"number": 80}));
    let other = simple_ingress("other", Some("nginx"), "b.test", "s", json!({"number": 80}));
    let none = simple_ingress("none", None, "c.test", "s", json!({"number": 80}));
    let mut legacy = simple_ingress(
        "legacy",
        Some("skiff"),
        "d.test",
        "s",
        json!({"number": 80}),
    );
    legacy.metadata.annotations = Some(
        [(
            "kubernetes.io/ingress.class".to_string(),
            "nginx".to_string(),
        )]
        .into(),
    );
    assert!(is_ours(&mine, "skiff", false));
    assert!(!is_ours(&other, "skiff", true));
    assert!(is_ours(&none, "skiff", true));
    assert!(!is_ours(&none, "skiff", false));
    assert!(
        !is_ours(&legacy, "skiff", true),
        "annotation overrides the field"
    );
    let all = [mine, other, none, legacy];
    let (r, _) = build_routes(&all, &[], &[], &[], "skiff", true);
    let hosts: Vec<bool> = ["a.test", "b.test", "c.test", "d.test"]
        .iter()
        .map(|h| resolve(&r, h, "/").is_some())
        .collect();
    assert_eq!(hosts, [true, false, true, false]);
    let (r, _) = build_routes(&all, &[], &[], &[], "skiff", false);
    assert!(resolve(&r, "c.test", "/").is_none());
}

#[test]
fn older_ingress_wins_conflicts() {
    let mut old = simple_ingress("old", None, "a.test", "one", json!({"number": 80}));
    old.metadata.creation_timestamp =
        Some(serde_json::from_value(json!("2024-01-01T00:00:00Z")).unwrap());
    let mut new = simple_ingress("new", None, "a.test", "two", json!({"number": 80}));
    new.metadata.creation_timestamp =
        Some(serde_json::from_value(json!("2025-01-01T00:00:00Z")).unwrap());
    let svcs = [
        service("default", "one", json!([{"port": 80}])),
        service("default", "two", json!([{"port": 80}])),
    ];
    // Input order must not matter.
    let (r, w) = build_routes(&[new, old], &svcs, &[], &[], "skiff", true);
    assert_eq!(resolve(&r, "a.test", "/").unwrap().0, "default/one:80");
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].ingress, "default/new");
}

#[test]
fn paths_types_defaults_and_bad_entries() {
    let ing = ingress(json!({
        "metadata": {"namespace": "ns", "name": "i"},
        "spec": {
            "defaultBackend": {"service": {"name": "d", "port": {"number": 80}}},
            "rules": [
                {"host": "*.wild.test", "http": {"paths": [
                    {"path": "/api", "pathType": "Exact", "backend": {"service": {"name": "a", "port": {"number": 80}}}},
                    {"path": "/api", "pathType": "ImplementationSpecific", "backend": {"service": {"name": "b", "port": {"number": 80}}}},
                    {"path": "/r", "pathType": "Prefix", "backend": {"resource": {"kind": "Bucket", "name": "x"}}},
                    {"path": "/q", "pathType": "Weird", "backend": {"service": {"name": "a", "port": {"number": 80}}}}
                ]}},
                {"host": "a.*.test", "http": {"paths": [
                    {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "a", "port": {"number": 80}}}}
                ]}},
                {"http": {"paths": [
                    {"pathType": "Prefix", "backend": {"service": {"name": "c", "port": {"number": 80}}}}
                ]}}
            ]
        }
    }));
    let (r, w) = build_routes(&[ing], &[], &[], &[], "skiff", true);
    assert_eq!(resolve(&r, "x.wild.test", "/api").unwrap().0, "ns/a:80");
    assert_eq!(resolve(&r, "x.wild.test", "/api/v1").unwrap().0, "ns/b:80");
    // Host-less rule with the default path "/" catches the rest; defaultBackend is last.
    assert_eq!(resolve(&r, "x.wild.test", "/other").unwrap().0, "ns/c:80");
    assert_eq!(resolve(&r, "anything", "/").unwrap().0, "ns/c:80");
    let msgs: Vec<&str> = w.iter().map(|w| w.message.as_str()).collect();
    assert!(
        msgs.iter().any(|m| m.contains("resource backends")),
        "{msgs:?}"
    );
    assert!(
        msgs.iter().any(|m| m.contains("unknown pathType")),
        "{msgs:?}"
    );
    assert!(
        msgs.iter()
            .any(|m| m.contains("wildcard must be the whole first label")),
        "{msgs:?}"
    );
}

#[test]
fn rewrite_target_and_regex_paths() {
    let ing = ingress(json!({
        "metadata": {"namespace": "ns", "name": "rw", "annotations": {
            "nginx.ingress.kubernetes.io/rewrite-target": "/$2"
        }},
        "spec": {"rules": [{"host": "a.test", "http": {"paths": [
            {"path": "/something(/|$)(.*)", "pathType": "ImplementationSpecific",
             "backend": {"service": {"name": "s", "port": {"number": 80}}}},
            {"path": "/plain", "pathType": "Prefix",
             "backend": {"service": {"name": "s", "port": {"number": 80}}}}
        ]}}]}
    }));
    let (r, w) = build_routes(&[ing], &[], &[], &[], "skiff", true);
    assert_eq!(
        w.iter()
            .filter(|w| !w.message.contains("not found"))
            .count(),
        0,
        "{w:?}"
    );
    let Lookup::Path(p) = r.table.lookup("a.test", "/something/new/x") else {
        panic!("no match")
    };
    assert!(matches!(p.matcher, PathMatch::Regex(_)));
    assert_eq!(
        p.rewrite
            .as_ref()
            .unwrap()
            .apply("/something/new/x", Some("a=1")),
        "/new/x?a=1"
    );
    let Lookup::Path(p) = r.table.lookup("a.test", "/plain/deep") else {
        panic!("no match")
    };
    assert!(
        matches!(p.matcher, PathMatch::Prefix(_)),
        "plain path stays a Prefix"
    );
    assert_eq!(
        p.rewrite.as_ref().unwrap().apply("/plain/deep", None),
        "/$2".replace("$2", "")
    );
}

#[test]
fn ssl_redirect_follows_tls_hosts_and_annotations() {
    let secretless_tls = |name: &str, host: &str, annotations: serde_json::Value| {
        ingress(json!({
            "metadata": {"namespace": "ns", "name": name, "annotations": annotations},
            "spec": {
                "tls": [{"hosts": ["*.tls.test"], "secretName": "missing"}],
                "rules": [{"host": host, "http": {"paths": [
                    {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "s", "port": {"number": 80}}}}
                ]}}]
            }
        }))
    };
    let a = secretless_tls("a", "a.tls.test", json!({}));
    let b = secretless_tls(
        "b",
        "b.tls.test",
        json!({"nginx.ingress.kubernetes.io/ssl-redirect": "false"}),
    );
    let c = secretless_tls("c", "plain.test", json!({}));
    let d = secretless_tls(
        "d",
        "forced.test",
        json!({"nginx.ingress.kubernetes.io/force-ssl-redirect": "true"}),
    );
    let (r, w) = build_routes(&[a, b, c, d], &[], &[], &[], "skiff", true);
    assert!(
        w.iter()
            .any(|w| w.message.contains("tls secret ns/missing not found")),
        "{w:?}"
    );
    let redirect = |h: &str| match r.table.lookup(h, "/") {
        Lookup::Path(p) => p.ssl_redirect,
        _ => panic!("{h} not routed"),
    };
    assert!(redirect("a.tls.test"));
    assert!(!redirect("b.tls.test"));
    assert!(!redirect("plain.test"));
    assert!(redirect("forced.test"));
}

#[test]
fn tls_secrets_feed_the_sni_table() {
    let ck = rcgen::generate_simple_self_signed(vec!["a.test".to_string()]).unwrap();
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"namespace": "ns", "name": "a-tls"},
        "type": "kubernetes.io/tls",
        "data": {
            "tls.crt": b64(ck.cert.pem().as_bytes()),
            "tls.key": b64(ck.signing_key.serialize_pem().as_bytes())
        }
    }))
    .unwrap();
    let broken: Secret = serde_json::from_value(json!({
        "metadata": {"namespace": "ns", "name": "broken"},
        "data": {"tls.crt": b64(b"nope"), "tls.key": b64(b"nope")}
    }))
    .unwrap();
    let ing = ingress(json!({
        "metadata": {"namespace": "ns", "name": "i"},
        "spec": {"tls": [{"secretName": "a-tls"}, {"hosts": ["b.test"], "secretName": "broken"}],
                 "rules": [{"host": "a.test"}]}
    }));
    let (r, w) = build_routes(&[ing], &[], &[], &[secret, broken], "skiff", true);
    assert!(
        r.certs.get("a.test").is_some(),
        "tls without hosts covers the rule hosts"
    );
    assert!(r.certs.get("b.test").is_none());
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].message
            .starts_with("certificate secret ns/broken: tls.crt"),
        "{w:?}"
    );
}

/// Minimal standard base64 (k8s ByteString is base64 in JSON); avoids a dependency for tests.
pub(super) fn b64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
