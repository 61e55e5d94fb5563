//! Resource metrics end to end with real containers and the real kubectl: the node agent's
//! `/stats/summary` and Prometheus endpoints (through `nodes/proxy`), the API server's
//! `metrics.k8s.io/v1beta1` (discovery, NodeMetrics, PodMetrics, label selectors),
//! `kubectl top nodes` / `top pods`, and a HorizontalPodAutoscaler scaling a Deployment up
//! from measured CPU (no fake-usage annotations anywhere).
//!
//! Needs root (namespaces, cgroups, mounts) and busybox-static (the test image).

mod common;

use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::Value;
use skiff_testkit::Cluster;

use common::IMAGE;

fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

fn node_cluster() -> Result<Cluster> {
    common::node_cluster(&[])
}

fn apply(cluster: &Cluster, manifest: &str) -> Result<()> {
    let out = cluster.kubectl_stdin(&["apply", "-f", "-"], manifest)?;
    anyhow::ensure!(out.status.success(), "apply failed: {}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}

/// A pod running `script`, with a CPU request and limit (the limit keeps the busy loops from
/// taking whole cores of the test machine).
fn pod_manifest(name: &str, script: &str) -> String {
    format!(
        r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "{name}", "labels": {{"app": "{name}"}}}},
            "spec": {{"containers": [{{"name": "{name}", "image": "{IMAGE}", "command": ["sh", "-c", "{script}"],
            "resources": {{"requests": {{"cpu": "50m"}}, "limits": {{"cpu": "200m"}}}}}}]}}}}"#
    )
}

/// Millicores from a quantity as kubectl top prints it (`123m`, `1`, `0`).
fn millicores(q: &str) -> Option<f64> {
    match q.strip_suffix('m') {
        Some(m) => m.parse().ok(),
        None => q.parse::<f64>().ok().map(|c| c * 1000.0),
    }
}

/// `kubectl top pods` rows as (name, millicores).
fn top_pods(cluster: &Cluster) -> Vec<(String, f64)> {
    let out = cluster.ok(&["top", "pods", "--no-headers"]).unwrap_or_default();
    out.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((f.first()?.to_string(), millicores(f.get(1)?)?))
        })
        .collect()
}

fn raw(cluster: &Cluster, path: &str) -> Result<Value> {
    let text = cluster.ok(&["get", "--raw", path])?;
    serde_json::from_str(&text).with_context(|| format!("{path} is not JSON: {text}"))
}

#[test]
fn top_and_autoscaling_use_measured_usage() -> Result<()> {
    if !is_root() {
        eprintln!("skipping: needs root");
        return Ok(());
    }
    let cluster = node_cluster()?;
    let node = cluster.ok(&["get", "nodes", "-o", "jsonpath={.items[0].metadata.name}"])?;
    apply(&cluster, &pod_manifest("busy", "while :; do :; done"))?;
    apply(&cluster, &pod_manifest("idle", "sleep 3600"))?;
    cluster.ok(&["wait", "--for=condition=Ready", "pod/busy", "pod/idle", "--timeout=60s"])?;

    // Discovery: the group is listed both ways kubectl asks.
    let groups = raw(&cluster, "/apis")?;
    assert!(
        groups["groups"].as_array().unwrap().iter().any(|g| g["name"] == "metrics.k8s.io"),
        "metrics.k8s.io missing from /apis: {groups}"
    );
    let resources = raw(&cluster, "/apis/metrics.k8s.io/v1beta1")?;
    let kinds: Vec<&str> = resources["resources"].as_array().unwrap().iter().filter_map(|r| r["kind"].as_str()).collect();
    assert_eq!(kinds, ["NodeMetrics", "PodMetrics"], "{resources}");
    let api_resources = cluster.ok(&["api-resources", "--api-group=metrics.k8s.io", "--no-headers"])?;
    assert!(api_resources.contains("PodMetrics") && api_resources.contains("NodeMetrics"), "{api_resources}");

    // kubectl top pods: the busy loop shows real CPU, more than the idle pod.
    let mut rows = Vec::new();
    cluster.eventually(Duration::from_secs(60), "top pods to show the busy pod's CPU", || {
        rows = top_pods(&cluster);
        rows.iter().any(|(n, cpu)| n == "busy" && *cpu >= 20.0) && rows.iter().any(|(n, _)| n == "idle")
    })?;
    eprintln!("top pods: {rows:?}");
    let cpu_of = |name: &str| rows.iter().find(|(n, _)| n == name).map(|(_, c)| *c).unwrap();
    assert!(cpu_of("busy") > cpu_of("idle"), "{rows:?}");
    // The 200m limit caps the loop (a little slack for the sampling window's edges).
    assert!(cpu_of("busy") <= 260.0, "{rows:?}");

    // kubectl top nodes: one row for the node with CPU and memory.
    let mut top_nodes = String::new();
    cluster.eventually(Duration::from_secs(30), "top nodes to show the node", || {
        top_nodes = cluster.ok(&["top", "nodes", "--no-headers"]).unwrap_or_default();
        top_nodes.lines().any(|l| l.split_whitespace().next() == Some(node.as_str()))
    })?;
    eprintln!("top nodes: {top_nodes}");
    let fields: Vec<&str> = top_nodes.lines().next().unwrap().split_whitespace().collect();
    assert!(millicores(fields[1]).is_some_and(|c| c > 0.0), "{top_nodes}");
    assert!(fields[2].ends_with('%') && fields[3].ends_with("Mi") && fields[4].ends_with('%'), "{top_nodes}");

    // The raw NodeMetricsList.
    let list = raw(&cluster, "/apis/metrics.k8s.io/v1beta1/nodes")?;
    assert_eq!(list["kind"], "NodeMetricsList", "{list}");
    assert_eq!(list["apiVersion"], "metrics.k8s.io/v1beta1", "{list}");
    let item = &list["items"][0];
    assert_eq!(item["metadata"]["name"], node.as_str(), "{list}");
    assert!(item["metadata"]["labels"]["kubernetes.io/hostname"].is_string(), "{list}");
    assert!(item["timestamp"].as_str().is_some_and(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok()), "{list}");
    assert!(item["window"].as_str().is_some_and(|w| w.ends_with('s')), "{list}");
    assert!(item["usage"]["cpu"].is_string() && item["usage"]["memory"].is_string(), "{list}");
    let one = raw(&cluster, &format!("/apis/metrics.k8s.io/v1beta1/nodes/{node}"))?;
    assert_eq!(one["kind"], "NodeMetrics", "{one}");
    let missing = cluster.fails(&["get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes/no-such-node"])?;
    assert!(missing.contains("NotFound") || missing.contains("not found"), "{missing}");

    // PodMetrics: one by name, and a list narrowed by a label selector.
    let busy = raw(&cluster, "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/busy")?;
    assert_eq!(busy["kind"], "PodMetrics", "{busy}");
    assert_eq!(busy["containers"][0]["name"], "busy", "{busy}");
    assert_eq!(busy["metadata"]["labels"]["app"], "busy", "{busy}");
    let selected = raw(&cluster, "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods?labelSelector=app%3Didle")?;
    let names: Vec<&str> = selected["items"].as_array().unwrap().iter().filter_map(|p| p["metadata"]["name"].as_str()).collect();
    assert_eq!(names, ["idle"], "{selected}");
    let all = raw(&cluster, "/apis/metrics.k8s.io/v1beta1/pods")?;
    assert_eq!(all["kind"], "PodMetricsList", "{all}");

    // The agent's own endpoints through the node proxy.
    let summary = raw(&cluster, &format!("/api/v1/nodes/{node}/proxy/stats/summary"))?;
    assert!(summary["node"]["cpu"]["usageCoreNanoSeconds"].as_u64().is_some_and(|n| n > 0), "{summary}");
    assert!(summary["node"]["memory"]["workingSetBytes"].as_u64().is_some_and(|n| n > 0), "{summary}");
    assert!(summary["node"]["fs"]["capacityBytes"].as_u64().is_some_and(|n| n > 0), "{summary}");
    let pods = summary["pods"].as_array().context("summary without pods")?;
    let busy_stats = pods.iter().find(|p| p["podRef"]["name"] == "busy").context("busy pod missing from the summary")?;
    assert!(busy_stats["cpu"]["usageNanoCores"].as_u64().is_some_and(|n| n > 10_000_000), "{busy_stats}");
    assert!(busy_stats["containers"][0]["memory"]["workingSetBytes"].as_u64().is_some(), "{busy_stats}");
    let cadvisor = cluster.ok(&["get", "--raw", &format!("/api/v1/nodes/{node}/proxy/metrics/cadvisor")])?;
    let busy_line = cadvisor
        .lines()
        .find(|l| l.starts_with("container_cpu_usage_seconds_total{container=\"busy\"") && l.contains("pod=\"busy\""))
        .with_context(|| format!("no busy cpu series in:\n{cadvisor}"))?;
    let seconds: f64 = busy_line.split_whitespace().nth(1).unwrap().parse()?;
    assert!(seconds > 0.0, "{busy_line}");
    assert!(cadvisor.contains("container_memory_working_set_bytes{container=\"idle\""), "{cadvisor}");
    let kubelet_metrics = cluster.ok(&["get", "--raw", &format!("/api/v1/nodes/{node}/proxy/metrics")])?;
    assert!(kubelet_metrics.contains("kubelet_running_pods 2"), "{kubelet_metrics}");
    let resource = cluster.ok(&["get", "--raw", &format!("/api/v1/nodes/{node}/proxy/metrics/resource")])?;
    assert!(resource.contains("pod_cpu_usage_seconds_total{namespace=\"default\",pod=\"busy\"}"), "{resource}");

    // Free the CPU before the autoscaling part.
    cluster.ok(&["delete", "pod", "busy", "idle", "--wait=true", "--timeout=60s"])?;

    // An HPA at 50% of a 50m request over a busy loop (about 200m: 400%) scales up.
    apply(
        &cluster,
        &format!(
            r#"{{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {{"name": "burn"}},
                "spec": {{"replicas": 1, "selector": {{"matchLabels": {{"app": "burn"}}}},
                "template": {{"metadata": {{"labels": {{"app": "burn"}}}},
                "spec": {{"containers": [{{"name": "burn", "image": "{IMAGE}", "command": ["sh", "-c", "while :; do :; done"],
                "resources": {{"requests": {{"cpu": "50m"}}, "limits": {{"cpu": "200m"}}}}}}]}}}}}}}}"#
        ),
    )?;
    cluster.ok(&["rollout", "status", "deployment/burn", "--timeout=60s"])?;
    cluster.ok(&["autoscale", "deployment", "burn", "--cpu-percent=50", "--min=1", "--max=3"])?;
    let mut hpa = Value::Null;
    cluster.eventually(Duration::from_secs(90), "the autoscaler to scale burn up from measured CPU", || {
        hpa = cluster.json(&["get", "hpa", "burn"]).unwrap_or(Value::Null);
        hpa["status"]["desiredReplicas"].as_i64().unwrap_or(0) >= 2
    })?;
    eprintln!("hpa status: {}", hpa["status"]);
    let utilization = hpa["status"]["currentMetrics"][0]["resource"]["current"]["averageUtilization"].as_i64().unwrap_or(0);
    assert!(utilization > 50, "{hpa}");
    cluster.eventually(Duration::from_secs(30), "the deployment to be scaled", || {
        cluster.ok(&["get", "deployment", "burn", "-o", "jsonpath={.spec.replicas}"]).is_ok_and(|r| r.trim().parse::<i32>().unwrap_or(0) >= 2)
    })?;
    let described = cluster.ok(&["describe", "hpa", "burn"])?;
    assert!(described.contains("/ 50%"), "{described}");
    Ok(())
}
