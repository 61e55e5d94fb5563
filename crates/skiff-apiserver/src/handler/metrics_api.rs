//! `metrics.k8s.io/v1beta1`: NodeMetrics and PodMetrics read live from the kubelets, which
//! is what metrics-server provides upstream, so `kubectl top` and the HorizontalPodAutoscaler
//! work without installing anything.
//!
//! Nothing is stored: every request lists the Nodes or Pods it is about (with the request's
//! label and field selectors), fetches `/stats/summary` from each involved node's kubelet
//! (concurrently, through the same TLS connection code as the `nodes/proxy` subresource) and
//! shapes the answer. CPU is the kubelet's rate (`usageNanoCores`) over its sampling window,
//! memory the working set, exactly the numbers metrics-server reports. Pods whose containers
//! do not all have a rate yet (just started) are left out, as metrics-server does, so a sum
//! never understates a pod's usage. Nodes whose kubelet cannot be reached are left out of
//! lists and are 404 when asked for by name.
//!
//! The group is read-only (`get`, `list`) and absent from the resource registry; discovery
//! lists it through [`group_entry`], [`api_group`], [`resource_list`] and [`aggregated_item`].

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use serde_json::{json, Value};
use skiff_api::status::ApiError;

use super::proxy;
use crate::filter::Filter;
use crate::http::{self, Method, Request, Response};
use crate::route::ResourcePath;
use crate::Server;

/// The API group.
pub const GROUP: &str = "metrics.k8s.io";
/// Its only version.
pub const VERSION: &str = "v1beta1";
/// Longest wait for one kubelet's summary; a dead node must not hang `kubectl top`.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest summary accepted (about 100 bytes per container field; far above any real node).
const MAX_SUMMARY_BYTES: usize = 64 << 20;
/// Window reported when a kubelet's summary does not carry one (the kubelet's interval).
const DEFAULT_WINDOW_SECS: f64 = 10.0;

fn group_version() -> String {
    format!("{GROUP}/{VERSION}")
}

/// The `/apis` entry of the group.
pub fn group_entry() -> Value {
    let v = json!({"groupVersion": group_version(), "version": VERSION});
    json!({"name": GROUP, "versions": [v.clone()], "preferredVersion": v})
}

/// `/apis/metrics.k8s.io`.
pub fn api_group() -> Value {
    let mut g = group_entry();
    g["kind"] = json!("APIGroup");
    g["apiVersion"] = json!("v1");
    g
}

/// `(plural, kind, namespaced)` of the two resources.
const RESOURCES: [(&str, &str, bool); 2] = [("nodes", "NodeMetrics", false), ("pods", "PodMetrics", true)];

/// `/apis/metrics.k8s.io/v1beta1`.
pub fn resource_list() -> Value {
    let resources: Vec<Value> = RESOURCES
        .iter()
        .map(|(plural, kind, namespaced)| json!({"name": plural, "singularName": "", "namespaced": namespaced, "kind": kind, "verbs": ["get", "list"]}))
        .collect();
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version(), "resources": resources})
}

/// The group's item in the aggregated `APIGroupDiscoveryList`.
pub fn aggregated_item() -> Value {
    let resources: Vec<Value> = RESOURCES
        .iter()
        .map(|(plural, kind, namespaced)| {
            json!({
                "resource": plural,
                "responseKind": {"group": GROUP, "version": VERSION, "kind": kind},
                "scope": if *namespaced { "Namespaced" } else { "Cluster" },
                "singularResource": "",
                "verbs": ["get", "list"],
            })
        })
        .collect();
    json!({"metadata": {"name": GROUP, "creationTimestamp": null}, "versions": [{"version": VERSION, "resources": resources, "freshness": "Current"}]})
}

/// CPU in cores as Kubernetes prints a quantity of nanocores: the largest exact unit.
pub fn cpu_quantity(nano_cores: u64) -> String {
    match nano_cores {
        0 => "0".into(),
        n if n.is_multiple_of(1_000_000_000) => format!("{}", n / 1_000_000_000),
        n if n.is_multiple_of(1_000_000) => format!("{}m", n / 1_000_000),
        n if n.is_multiple_of(1_000) => format!("{}u", n / 1_000),
        n => format!("{n}n"),
    }
}

/// Bytes as Kubernetes prints a binary quantity: the largest power-of-1024 unit that divides
/// it exactly, else plain bytes.
pub fn memory_quantity(bytes: u64) -> String {
    if bytes == 0 {
        return "0".into();
    }
    for (i, unit) in ["Ei", "Pi", "Ti", "Gi", "Mi", "Ki"].iter().enumerate() {
        let size = 1u64 << (10 * (6 - i as u32));
        if bytes.is_multiple_of(size) {
            return format!("{}{unit}", bytes / size);
        }
    }
    bytes.to_string()
}

/// A duration in Go's `time.Duration` text form (`15s`, `10.5s`, `1m0s`, `500ms`), which is
/// how `metav1.Duration` is encoded and how clients parse `window`. Millisecond precision.
pub fn go_duration(secs: f64) -> String {
    let ms = (secs.max(0.0) * 1000.0).round() as u64;
    if ms == 0 {
        return "0s".into();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (h, m, s, frac) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    let mut sec = s.to_string();
    if frac > 0 {
        sec.push_str(format!(".{frac:03}").trim_end_matches('0'));
    }
    match (h, m) {
        (0, 0) => format!("{sec}s"),
        (0, m) => format!("{m}m{sec}s"),
        (h, m) => format!("{h}h{m}m{sec}s"),
    }
}

fn metadata(obj: &Value, now: &str) -> Value {
    let mut meta = json!({"name": obj["metadata"]["name"], "creationTimestamp": now});
    if let Some(ns) = obj["metadata"]["namespace"].as_str() {
        meta["namespace"] = json!(ns);
    }
    if let Some(labels) = obj["metadata"]["labels"].as_object().filter(|l| !l.is_empty()) {
        meta["labels"] = Value::Object(labels.clone());
    }
    meta
}

/// NodeMetrics of `node` from its kubelet's `summary`; `None` while the node has no CPU rate.
pub fn node_metrics(node: &Value, summary: &Value, now: &str) -> Option<Value> {
    let stats = &summary["node"];
    let cpu = stats["cpu"]["usageNanoCores"].as_u64()?;
    let memory = stats["memory"]["workingSetBytes"].as_u64()?;
    let window = stats["cpu"]["windowSeconds"].as_f64().unwrap_or(DEFAULT_WINDOW_SECS);
    Some(json!({
        "kind": "NodeMetrics",
        "apiVersion": group_version(),
        "metadata": metadata(node, now),
        "timestamp": stats["cpu"]["time"].as_str().unwrap_or(now),
        "window": go_duration(window),
        "usage": {"cpu": cpu_quantity(cpu), "memory": memory_quantity(memory)},
    }))
}

/// PodMetrics of `pod` from its entry in a kubelet summary; `None` unless every container
/// has both a CPU rate and a working set.
pub fn pod_metrics(pod: &Value, stats: &Value, now: &str) -> Option<Value> {
    let mut containers = Vec::new();
    let mut timestamp: Option<&str> = None;
    let mut window: f64 = 0.0;
    for c in stats["containers"].as_array()? {
        let cpu = c["cpu"]["usageNanoCores"].as_u64()?;
        let memory = c["memory"]["workingSetBytes"].as_u64()?;
        containers.push(json!({"name": c["name"], "usage": {"cpu": cpu_quantity(cpu), "memory": memory_quantity(memory)}}));
        // RFC 3339 UTC timestamps order as strings.
        timestamp = timestamp.max(c["cpu"]["time"].as_str());
        window = window.max(c["cpu"]["windowSeconds"].as_f64().unwrap_or(DEFAULT_WINDOW_SECS));
    }
    if containers.is_empty() {
        return None;
    }
    Some(json!({
        "kind": "PodMetrics",
        "apiVersion": group_version(),
        "metadata": metadata(pod, now),
        "timestamp": timestamp.unwrap_or(now),
        "window": go_duration(window),
        "containers": containers,
    }))
}

/// The summary entry of `pod` (same namespace and name and, when the kubelet reports one,
/// the same UID, so a recreated pod never shows its predecessor's usage).
pub fn find_pod_stats<'a>(summary: &'a Value, pod: &Value) -> Option<&'a Value> {
    let meta = &pod["metadata"];
    summary["pods"].as_array()?.iter().find(|p| {
        let r = &p["podRef"];
        r["namespace"] == meta["namespace"]
            && r["name"] == meta["name"]
            && (r["uid"].as_str().unwrap_or("").is_empty() || r["uid"] == meta["uid"])
    })
}

/// Serve a request under `/apis/metrics.k8s.io/`.
pub async fn handle(srv: &Server, req: &Request, rp: &ResourcePath) -> Result<Response, ApiError> {
    let not_found = || ApiError::new(404, "NotFound", "the server could not find the requested resource");
    let known = RESOURCES.iter().any(|(plural, _, namespaced)| *plural == rp.resource && (*namespaced || rp.namespace.is_none()));
    if rp.version != VERSION || !known || rp.subresource.is_some() {
        return Err(not_found());
    }
    let verb = if rp.name.is_some() { "get" } else { "list" };
    authorize(req, rp, verb)?;
    if req.method != Method::GET || rp.watch_prefix || req.query.flag("watch") {
        return Err(ApiError::method_not_allowed(format!("the server does not allow this method on the requested resource ({}.{GROUP})", rp.resource)));
    }
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let body = match rp.resource.as_str() {
        "nodes" => nodes(srv, req, rp.name.as_deref(), &now).await?,
        _ => pods(srv, req, rp.namespace.as_deref(), rp.name.as_deref(), &now).await?,
    };
    Ok(http::json(200, &body))
}

/// Upstream's default RBAC gives the metrics API to cluster admins (and whoever they bind);
/// without RBAC here, that is `system:masters`.
fn authorize(req: &Request, rp: &ResourcePath, verb: &str) -> Result<(), ApiError> {
    let Some(user) = req.user.as_ref() else { return Err(ApiError::unauthorized()) };
    if user.is_admin() {
        return Ok(());
    }
    let scope = match &rp.namespace {
        Some(ns) => format!("in the namespace \"{ns}\""),
        None => "at the cluster scope".into(),
    };
    Err(ApiError::forbidden(format!(
        "{}.{GROUP} is forbidden: User \"{}\" cannot {verb} resource \"{}\" in API group \"{GROUP}\" {scope}",
        rp.resource, user.name, rp.resource
    )))
}

fn list_body(kind: &str, items: Vec<Value>) -> Value {
    json!({"kind": kind, "apiVersion": group_version(), "metadata": {}, "items": items})
}

async fn nodes(srv: &Server, req: &Request, name: Option<&str>, now: &str) -> Result<Value, ApiError> {
    let info = srv.resources.find("", "v1", "nodes").ok_or_else(|| ApiError::internal("nodes are not served"))?.info;
    let missing = |n: &str| ApiError::not_found(GROUP, "nodemetrics", n);
    if let Some(name) = name {
        let node = match srv.objects.try_get(&info, None, name).await? {
            Some(n) => n,
            None => return Err(missing(name)),
        };
        let summary = scrape(srv, &node).await.map_err(|e| {
            tracing::debug!(node = name, error = %e, "metrics: scrape failed");
            missing(name)
        })?;
        return node_metrics(&node, &summary, now).ok_or_else(|| missing(name));
    }
    let filter = Filter::from_query(&info, &req.query)?;
    let nodes = srv.objects.list(&info, None, 0, None, None, &|o| filter.matches(o)).await?.items;
    let summaries = scrape_all(srv, nodes.iter().collect()).await;
    let items = nodes.iter().filter_map(|n| node_metrics(n, summaries.get(node_name(n))?, now)).collect();
    Ok(list_body("NodeMetricsList", items))
}

async fn pods(srv: &Server, req: &Request, ns: Option<&str>, name: Option<&str>, now: &str) -> Result<Value, ApiError> {
    let pod_info = srv.resources.find("", "v1", "pods").ok_or_else(|| ApiError::internal("pods are not served"))?.info;
    let node_info = srv.resources.find("", "v1", "nodes").ok_or_else(|| ApiError::internal("nodes are not served"))?.info;
    let missing = |n: &str| ApiError::not_found(GROUP, "podmetrics", &format!("{}/{n}", ns.unwrap_or_default()));
    let pods: Vec<Value> = match name {
        Some(n) => vec![srv.objects.try_get(&pod_info, ns, n).await?.ok_or_else(|| missing(n))?],
        None => {
            let filter = Filter::from_query(&pod_info, &req.query)?;
            srv.objects.list(&pod_info, ns, 0, None, None, &|o| filter.matches(o)).await?.items
        }
    };
    let mut node_names: Vec<&str> = pods.iter().filter_map(|p| p["spec"]["nodeName"].as_str()).filter(|n| !n.is_empty()).collect();
    node_names.sort_unstable();
    node_names.dedup();
    let mut nodes = Vec::new();
    for n in node_names {
        if let Some(node) = srv.objects.try_get(&node_info, None, n).await? {
            nodes.push(node);
        }
    }
    let summaries = scrape_all(srv, nodes.iter().collect()).await;
    let items: Vec<Value> = pods
        .iter()
        .filter_map(|p| {
            let summary = summaries.get(p["spec"]["nodeName"].as_str()?)?;
            pod_metrics(p, find_pod_stats(summary, p)?, now)
        })
        .collect();
    match name {
        Some(n) => items.into_iter().next().ok_or_else(|| missing(n)),
        None => Ok(list_body("PodMetricsList", items)),
    }
}

fn node_name(node: &Value) -> &str {
    node["metadata"]["name"].as_str().unwrap_or_default()
}

/// Summaries of `nodes` by node name, fetched concurrently; unreachable nodes are missing.
async fn scrape_all(srv: &Server, nodes: Vec<&Value>) -> BTreeMap<String, Value> {
    let results = futures::future::join_all(nodes.iter().map(|n| scrape(srv, n))).await;
    nodes
        .iter()
        .zip(results)
        .filter_map(|(n, r)| match r {
            Ok(s) => Some((node_name(n).to_string(), s)),
            Err(e) => {
                tracing::debug!(node = node_name(n), error = %e, "metrics: scrape failed");
                None
            }
        })
        .collect()
}

/// `GET /stats/summary` from the node's kubelet.
async fn scrape(srv: &Server, node: &Value) -> Result<Value, ApiError> {
    let name = node_name(node);
    let target = proxy::kubelet_address(node).ok_or_else(|| ApiError::internal(format!("node {name} reports no address to reach its kubelet")))?;
    let fetch = async {
        let mut sender = proxy::connect(srv, &target).await?;
        let request = hyper::Request::get("/stats/summary")
            .header("host", format!("{}:{}", target.host, target.port))
            .header("accept", "application/json")
            .body(Full::new(Bytes::new()))
            .map_err(|e| ApiError::internal(format!("building the summary request for node {name}: {e}")))?;
        let resp = sender.send_request(request).await.map_err(|e| ApiError::internal(format!("summary from node {name}: {e}")))?;
        let status = resp.status();
        let body = Limited::new(resp.into_body(), MAX_SUMMARY_BYTES)
            .collect()
            .await
            .map_err(|e| ApiError::internal(format!("reading the summary of node {name}: {e}")))?
            .to_bytes();
        if !status.is_success() {
            return Err(ApiError::internal(format!("summary from node {name}: {status}: {}", String::from_utf8_lossy(&body))));
        }
        serde_json::from_slice::<Value>(&body).map_err(|e| ApiError::internal(format!("decoding the summary of node {name}: {e}")))
    };
    tokio::time::timeout(SCRAPE_TIMEOUT, fetch)
        .await
        .map_err(|_| ApiError::timeout(format!("summary from node {name}: no answer within {}s", SCRAPE_TIMEOUT.as_secs())))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_print_as_kubernetes_does() {
        assert_eq!(cpu_quantity(0), "0");
        assert_eq!(cpu_quantity(2_000_000_000), "2");
        assert_eq!(cpu_quantity(250_000_000), "250m");
        assert_eq!(cpu_quantity(1_500_000), "1500u");
        assert_eq!(cpu_quantity(123_456_789), "123456789n");
        assert_eq!(memory_quantity(0), "0");
        assert_eq!(memory_quantity(5 << 20), "5Mi");
        assert_eq!(memory_quantity(3 << 30), "3Gi");
        assert_eq!(memory_quantity(1536), "1536");
        assert_eq!(memory_quantity(4096 + 1024), "5Ki");
        assert_eq!(memory_quantity(1000), "1000");
    }

    #[test]
    fn windows_print_as_go_durations() {
        assert_eq!(go_duration(15.0), "15s");
        assert_eq!(go_duration(10.5), "10.5s");
        assert_eq!(go_duration(10.0123), "10.012s");
        assert_eq!(go_duration(60.0), "1m0s");
        assert_eq!(go_duration(3725.25), "1h2m5.25s");
        assert_eq!(go_duration(0.25), "250ms");
        assert_eq!(go_duration(0.0), "0s");
    }

    fn summary() -> Value {
        json!({
            "node": {"nodeName": "n1",
                "cpu": {"time": "2025-01-01T00:00:10Z", "usageNanoCores": 1_250_000_000u64, "usageCoreNanoSeconds": 9, "windowSeconds": 10.0},
                "memory": {"time": "2025-01-01T00:00:10Z", "workingSetBytes": 3u64 << 30}},
            "pods": [
                {"podRef": {"name": "busy", "namespace": "default", "uid": "u1"},
                 "containers": [
                    {"name": "main", "cpu": {"time": "2025-01-01T00:00:10Z", "usageNanoCores": 987_654_321u64, "windowSeconds": 10.0},
                     "memory": {"workingSetBytes": 5u64 << 20}},
                    {"name": "side", "cpu": {"time": "2025-01-01T00:00:10Z", "usageNanoCores": 1_000_000u64, "windowSeconds": 4.5},
                     "memory": {"workingSetBytes": 1000}}]},
                {"podRef": {"name": "fresh", "namespace": "default", "uid": "u2"},
                 "containers": [{"name": "main", "cpu": {"time": "2025-01-01T00:00:10Z", "usageCoreNanoSeconds": 5}, "memory": {"workingSetBytes": 1}}]}
            ]
        })
    }

    #[test]
    fn node_metrics_shape() {
        let node = json!({"metadata": {"name": "n1", "labels": {"kubernetes.io/hostname": "n1"}, "uid": "x"}});
        let m = node_metrics(&node, &summary(), "2025-01-01T00:00:11Z").unwrap();
        assert_eq!(
            m,
            json!({"kind": "NodeMetrics", "apiVersion": "metrics.k8s.io/v1beta1",
                "metadata": {"name": "n1", "creationTimestamp": "2025-01-01T00:00:11Z", "labels": {"kubernetes.io/hostname": "n1"}},
                "timestamp": "2025-01-01T00:00:10Z", "window": "10s", "usage": {"cpu": "1250m", "memory": "3Gi"}})
        );
        // No rate yet: no metrics.
        let mut s = summary();
        s["node"]["cpu"].as_object_mut().unwrap().remove("usageNanoCores");
        assert!(node_metrics(&node, &s, "now").is_none());
    }

    #[test]
    fn pod_metrics_shape_and_matching() {
        let s = summary();
        let pod = json!({"metadata": {"name": "busy", "namespace": "default", "uid": "u1", "labels": {"app": "busy"}}});
        let stats = find_pod_stats(&s, &pod).unwrap();
        let m = pod_metrics(&pod, stats, "2025-01-01T00:00:11Z").unwrap();
        assert_eq!(
            m,
            json!({"kind": "PodMetrics", "apiVersion": "metrics.k8s.io/v1beta1",
                "metadata": {"name": "busy", "namespace": "default", "creationTimestamp": "2025-01-01T00:00:11Z", "labels": {"app": "busy"}},
                "timestamp": "2025-01-01T00:00:10Z", "window": "10s",
                "containers": [
                    {"name": "main", "usage": {"cpu": "987654321n", "memory": "5Mi"}},
                    {"name": "side", "usage": {"cpu": "1m", "memory": "1000"}}]})
        );
        // A recreated pod with the same name does not get its predecessor's usage.
        let recreated = json!({"metadata": {"name": "busy", "namespace": "default", "uid": "other"}});
        assert!(find_pod_stats(&s, &recreated).is_none());
        // A container without a rate yet drops the whole pod.
        let fresh = json!({"metadata": {"name": "fresh", "namespace": "default", "uid": "u2"}});
        assert!(pod_metrics(&fresh, find_pod_stats(&s, &fresh).unwrap(), "now").is_none());
    }

    #[test]
    fn discovery_documents() {
        let list = resource_list();
        assert_eq!(list["groupVersion"], "metrics.k8s.io/v1beta1");
        assert_eq!(list["resources"][0]["kind"], "NodeMetrics");
        assert_eq!(list["resources"][1]["namespaced"], true);
        assert_eq!(api_group()["preferredVersion"]["groupVersion"], "metrics.k8s.io/v1beta1");
        let item = aggregated_item();
        assert_eq!(item["versions"][0]["resources"][1]["scope"], "Namespaced");
    }
}
