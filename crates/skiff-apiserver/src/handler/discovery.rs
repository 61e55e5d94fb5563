//! Discovery: the legacy `/api`, `/apis`, `/apis/{g}`, `/api(s)/.../{v}` documents and the
//! aggregated `APIGroupDiscoveryList` (v2 and v2beta1) that kubectl asks for first.

use serde_json::{json, Value};
use skiff_api::ResourceInfo;

use crate::http::{self, Request, Response};
use crate::Server;

/// Subresource kind and verbs as upstream reports them: (group, version, kind, verbs).
fn subresource_meta(info: &ResourceInfo, sub: &str) -> (String, String, String, Vec<&'static str>) {
    let same = (info.group.clone(), info.version.clone(), info.kind.clone());
    let (g, v, k) = match sub {
        "scale" => ("autoscaling".into(), "v1".into(), "Scale".into()),
        "eviction" => ("policy".into(), "v1".into(), "Eviction".into()),
        "binding" => (String::new(), "v1".into(), "Binding".into()),
        "token" => ("authentication.k8s.io".into(), "v1".into(), "TokenRequest".into()),
        "exec" => (String::new(), "v1".into(), "PodExecOptions".into()),
        "attach" => (String::new(), "v1".into(), "PodAttachOptions".into()),
        "portforward" => (String::new(), "v1".into(), "PodPortForwardOptions".into()),
        "proxy" => (String::new(), "v1".into(), format!("{}ProxyOptions", info.kind)),
        _ => same,
    };
    let verbs = match sub {
        "exec" | "attach" | "portforward" => vec!["create", "get"],
        "proxy" => vec!["create", "delete", "get", "patch", "update"],
        "log" => vec!["get"],
        "binding" | "eviction" | "token" => vec!["create"],
        "finalize" => vec!["update"],
        _ => vec!["get", "patch", "update"],
    };
    (g, v, k, verbs)
}

/// Stable short hash used as `storageVersionHash` (clients only compare it).
fn version_hash(info: &ResourceInfo) -> String {
    use base64::Engine;
    use sha2::Digest;
    let d = sha2::Sha256::digest(format!("{}/{}/{}", info.group, info.storage_version, info.kind));
    base64::engine::general_purpose::STANDARD.encode(&d[..8])
}

/// `/api`
pub fn core_versions(srv: &Server, req: &Request) -> Response {
    if let Some(ct) = aggregated_type(req) {
        return aggregated(srv, true, &ct);
    }
    let addr = format!("{}:{}", srv.config.advertise_address, srv.config.port);
    http::json(
        200,
        &json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": addr}]}),
    )
}

fn group_entry(srv: &Server, group: &str) -> Value {
    let versions: Vec<Value> = srv
        .resources
        .versions(group)
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    json!({"name": group, "versions": versions, "preferredVersion": versions.first().cloned().unwrap_or(Value::Null)})
}

/// `/apis`
pub fn groups(srv: &Server, req: &Request) -> Response {
    if let Some(ct) = aggregated_type(req) {
        return aggregated(srv, false, &ct);
    }
    let mut groups: Vec<Value> =
        srv.resources.groups().iter().filter(|g| !g.is_empty()).map(|g| group_entry(srv, g)).collect();
    groups.push(super::metrics_api::group_entry());
    http::json(200, &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}))
}

/// `/apis/{group}`
pub fn group(srv: &Server, group: &str) -> Response {
    if group == super::metrics_api::GROUP {
        return http::json(200, &super::metrics_api::api_group());
    }
    if srv.resources.versions(group).is_empty() {
        return http::error(&skiff_api::ApiError::new(404, "NotFound", "the server could not find the requested resource"));
    }
    let mut g = group_entry(srv, group);
    g["kind"] = json!("APIGroup");
    g["apiVersion"] = json!("v1");
    http::json(200, &g)
}

/// `/api/v1`, `/apis/{group}/{version}`
pub fn resource_list(srv: &Server, group: &str, version: &str) -> Response {
    if group == super::metrics_api::GROUP && version == super::metrics_api::VERSION {
        return http::json(200, &super::metrics_api::resource_list());
    }
    let served = srv.resources.in_group_version(group, version);
    if served.is_empty() {
        return http::error(&skiff_api::ApiError::new(404, "NotFound", "the server could not find the requested resource"));
    }
    let mut resources = Vec::new();
    for s in &served {
        let i = &s.info;
        let mut r = json!({
            "name": i.plural, "singularName": i.singular, "namespaced": i.namespaced(), "kind": i.kind,
            "verbs": i.verbs, "storageVersionHash": version_hash(i),
        });
        if !i.short_names.is_empty() {
            r["shortNames"] = json!(i.short_names);
        }
        if !i.categories.is_empty() {
            r["categories"] = json!(i.categories);
        }
        resources.push(r);
        for sub in &i.subresources {
            let (g, v, k, verbs) = subresource_meta(i, sub);
            let mut e = json!({"name": format!("{}/{}", i.plural, sub), "singularName": "", "namespaced": i.namespaced(), "kind": k, "verbs": verbs});
            if g != i.group || v != i.version {
                e["group"] = json!(g);
                e["version"] = json!(v);
            }
            resources.push(e);
        }
    }
    let gv = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    http::json(200, &json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}))
}

/// The aggregated discovery media type the client accepts, if any (v2 preferred).
fn aggregated_type(req: &Request) -> Option<String> {
    let accept = req.header("accept");
    for part in accept.split(',') {
        let p = part.replace(' ', "");
        if p.contains("as=APIGroupDiscoveryList") && p.contains("g=apidiscovery.k8s.io") {
            if p.contains("v=v2beta1") {
                continue;
            }
            if p.contains("v=v2") {
                return Some("v2".into());
            }
        }
    }
    if accept.contains("v=v2beta1") && accept.contains("as=APIGroupDiscoveryList") {
        return Some("v2beta1".into());
    }
    None
}

fn aggregated(srv: &Server, core: bool, version: &str) -> Response {
    let groups: Vec<String> = srv.resources.groups().into_iter().filter(|g| g.is_empty() == core).collect();
    let mut items = Vec::new();
    for g in groups {
        let mut versions = Vec::new();
        for v in srv.resources.versions(&g) {
            let mut resources = Vec::new();
            for s in srv.resources.in_group_version(&g, &v) {
                let i = &s.info;
                let mut r = json!({
                    "resource": i.plural,
                    "responseKind": {"group": i.group, "version": i.version, "kind": i.kind},
                    "scope": if i.namespaced() { "Namespaced" } else { "Cluster" },
                    "singularResource": i.singular,
                    "verbs": i.verbs,
                });
                if !i.short_names.is_empty() {
                    r["shortNames"] = json!(i.short_names);
                }
                if !i.categories.is_empty() {
                    r["categories"] = json!(i.categories);
                }
                let subs: Vec<Value> = i
                    .subresources
                    .iter()
                    .map(|sub| {
                        let (sg, sv, sk, verbs) = subresource_meta(i, sub);
                        json!({"subresource": sub, "responseKind": {"group": sg, "version": sv, "kind": sk}, "verbs": verbs})
                    })
                    .collect();
                if !subs.is_empty() {
                    r["subresources"] = Value::Array(subs);
                }
                resources.push(r);
            }
            versions.push(json!({"version": v, "resources": resources, "freshness": "Current"}));
        }
        let meta = if core { json!({"creationTimestamp": null}) } else { json!({"name": g, "creationTimestamp": null}) };
        items.push(json!({"metadata": meta, "versions": versions}));
    }
    if !core {
        items.push(super::metrics_api::aggregated_item());
    }
    let body = json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{version}"),
        "metadata": {},
        "items": items,
    });
    let ct = format!("application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList");
    let mut r = http::raw(200, &ct, serde_json::to_vec(&body).unwrap());
    r.headers_mut().insert("vary", "Accept".parse().unwrap());
    r
}
