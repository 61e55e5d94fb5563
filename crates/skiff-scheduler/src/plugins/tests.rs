//! Plugin tests on seeded node and pod sets: PreFilter + Filter (and Score) called directly.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use serde_json::{json, Value};

use crate::core::{feasible_nodes_to_find, pre_filter, run_filters, schedule_one, Framework, Rotation};
use crate::framework::{CycleState, FilterPlugin, ScorePlugin, Snapshot};
use crate::plugins::*;
use crate::pod::Pod;

fn node(name: &str, labels: Value, cpu: &str) -> Arc<Node> {
    let mut l = labels.as_object().cloned().unwrap_or_default();
    l.insert("kubernetes.io/hostname".into(), json!(name));
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": l},
            "status": {"allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
                       "conditions": [{"type": "Ready", "status": "True"}]},
        }))
        .unwrap(),
    )
}

fn pod(name: &str, labels: Value, spec: Value) -> Arc<Pod> {
    pod_in("default", name, labels, spec)
}

fn pod_in(ns: &str, name: &str, labels: Value, spec: Value) -> Arc<Pod> {
    let mut s = json!({"containers": [{"name": "c", "image": "nginx"}]});
    for (k, v) in spec.as_object().cloned().unwrap_or_default() {
        s[k] = v;
    }
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": ns, "uid": format!("uid-{name}"), "labels": labels},
            "spec": s,
        }))
        .unwrap(),
    )
}

/// Nodes, plus (node index, pod) placements.
fn snap(nodes: Vec<Arc<Node>>, placed: Vec<(usize, Arc<Pod>)>) -> Snapshot {
    let names: Vec<String> = nodes.iter().map(|n| n.metadata.name.clone().unwrap()).collect();
    let mut by: HashMap<String, Vec<Arc<Pod>>> = HashMap::new();
    for (i, p) in placed {
        by.entry(names[i].clone()).or_default().push(p);
    }
    let mut ns = HashMap::new();
    ns.insert("default".to_string(), Default::default());
    ns.insert("other".to_string(), [("team".to_string(), "x".to_string())].into_iter().collect());
    Snapshot::new(nodes, by, ns)
}

/// Filter result of `plugin` for `pod` on each node.
fn filter_all(plugin: &dyn FilterPlugin, pod: &Pod, s: &Snapshot) -> Vec<Result<(), String>> {
    let mut state = CycleState { requests: crate::framework::pod_requests(pod), ..Default::default() };
    if let Err(e) = plugin.pre_filter(pod, s, &mut state) {
        return s.nodes.iter().map(|_| Err(e.clone())).collect();
    }
    s.nodes.iter().map(|n| plugin.filter(&state, pod, n)).collect()
}

fn scores(plugin: &dyn ScorePlugin, pod: &Pod, s: &Snapshot) -> Vec<i64> {
    let mut state = CycleState { requests: crate::framework::pod_requests(pod), ..Default::default() };
    let all: Vec<usize> = (0..s.nodes.len()).collect();
    plugin.pre_score(pod, s, &all, &mut state);
    let mut out: Vec<i64> = s.nodes.iter().map(|n| plugin.score(&state, pod, n)).collect();
    plugin.normalize(&state, &mut out);
    out
}

fn anti(key: &str, sel: Value) -> Value {
    json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{"labelSelector": sel, "topologyKey": key}]}}})
}

const HOST: &str = "kubernetes.io/hostname";
const ZONE: &str = "topology.kubernetes.io/zone";

#[test]
fn anti_affinity_keeps_replicas_apart() {
    let s = snap(vec![node("a", json!({}), "4"), node("b", json!({}), "4")], vec![(0, pod("web-1", json!({"app": "web"}), json!({})))]);
    let p = pod("web-2", json!({"app": "web"}), anti(HOST, json!({"matchLabels": {"app": "web"}})));
    let r = filter_all(&inter_pod_affinity::InterPodAffinity, &p, &s);
    assert_eq!(r[0], Err(inter_pod_affinity::ANTI_AFFINITY_NOT_MATCH.into()));
    assert_eq!(r[1], Ok(()));
}

#[test]
fn anti_affinity_is_symmetric() {
    let guard = pod("guard", json!({"role": "guard"}), anti(HOST, json!({"matchLabels": {"app": "web"}})));
    let s = snap(vec![node("a", json!({}), "4"), node("b", json!({}), "4")], vec![(0, guard)]);
    let r = filter_all(&inter_pod_affinity::InterPodAffinity, &pod("w", json!({"app": "web"}), json!({})), &s);
    assert_eq!(r[0], Err(inter_pod_affinity::EXISTING_ANTI_AFFINITY_NOT_MATCH.into()));
    assert_eq!(r[1], Ok(()));
    // Another namespace is outside the guard's term (its own namespace by default).
    let r = filter_all(&inter_pod_affinity::InterPodAffinity, &pod_in("other", "w", json!({"app": "web"}), json!({})), &s);
    assert_eq!(r, vec![Ok(()), Ok(())]);
}

#[test]
fn affinity_follows_the_zone_and_lets_the_first_pod_in() {
    let nodes = || vec![node("a", json!({ZONE: "z1"}), "4"), node("b", json!({ZONE: "z2"}), "4"), node("c", json!({ZONE: "z1"}), "4")];
    let term = json!({"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": ZONE}]}}});
    let s = snap(nodes(), vec![(0, pod("db-0", json!({"app": "db"}), json!({})))]);
    let r = filter_all(&inter_pod_affinity::InterPodAffinity, &pod("app", json!({}), term.clone()), &s);
    assert_eq!(r, vec![Ok(()), Err(inter_pod_affinity::AFFINITY_NOT_MATCH.into()), Ok(())]);
    // No db anywhere: a pod that matches its own term may go anywhere; one that does not, nowhere.
    let empty = snap(nodes(), vec![]);
    assert!(filter_all(&inter_pod_affinity::InterPodAffinity, &pod("db-1", json!({"app": "db"}), term.clone()), &empty).iter().all(|r| r.is_ok()));
    assert!(filter_all(&inter_pod_affinity::InterPodAffinity, &pod("app", json!({}), term), &empty).iter().all(|r| r.is_err()));
}

#[test]
fn affinity_namespaces_and_namespace_selector() {
    let s = snap(vec![node("a", json!({}), "4"), node("b", json!({}), "4")], vec![(0, pod_in("other", "x", json!({"app": "web"}), json!({})))]);
    let with = |term_extra: Value| {
        let mut term = json!({"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": HOST});
        for (k, v) in term_extra.as_object().cloned().unwrap_or_default() {
            term[k] = v;
        }
        pod("p", json!({}), json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}}))
    };
    let ok = |p: &Pod| filter_all(&inter_pod_affinity::InterPodAffinity, p, &s)[0].is_ok();
    assert!(ok(&with(json!({}))), "own namespace only by default");
    assert!(!ok(&with(json!({"namespaces": ["other"]}))));
    assert!(!ok(&with(json!({"namespaceSelector": {}}))), "empty namespaceSelector means all");
    assert!(!ok(&with(json!({"namespaceSelector": {"matchLabels": {"team": "x"}}}))));
    assert!(ok(&with(json!({"namespaceSelector": {"matchLabels": {"team": "y"}}}))));
}

#[test]
fn match_label_keys_narrow_the_selector() {
    let s = snap(vec![node("a", json!({}), "4")], vec![(0, pod("old", json!({"app": "web", "rev": "1"}), json!({})))]);
    let spec = json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": HOST, "matchLabelKeys": ["rev"]}]}}});
    assert!(filter_all(&inter_pod_affinity::InterPodAffinity, &pod("new", json!({"app": "web", "rev": "2"}), spec.clone()), &s)[0].is_ok());
    assert!(filter_all(&inter_pod_affinity::InterPodAffinity, &pod("new", json!({"app": "web", "rev": "1"}), spec), &s)[0].is_err());
}

#[test]
fn preferred_affinity_scores_towards_matching_pods() {
    let s = snap(vec![node("a", json!({}), "4"), node("b", json!({}), "4")], vec![(1, pod("cache", json!({"app": "cache"}), json!({})))]);
    let p = pod("web", json!({}), json!({"affinity": {"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 50, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "cache"}}, "topologyKey": HOST}}]}}}));
    assert_eq!(scores(&inter_pod_affinity::InterPodAffinity, &p, &s), vec![0, 100]);
    let p = pod("web", json!({}), json!({"affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 50, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "cache"}}, "topologyKey": HOST}}]}}}));
    assert_eq!(scores(&inter_pod_affinity::InterPodAffinity, &p, &s), vec![100, 0]);
}

#[test]
fn placed_pods_terms_score_once_per_pod_and_group_by_terms() {
    // Placed pods that prefer to stay away from app=web: two on a, one on b, none on c.
    let shy = json!({"affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 10, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": HOST}}]}}});
    let nodes = vec![node("a", json!({}), "4"), node("b", json!({}), "4"), node("c", json!({}), "4")];
    let placed = vec![
        (0, pod("s1", json!({"app": "shy"}), shy.clone())),
        (0, pod("s2", json!({"app": "shy"}), shy.clone())),
        (1, pod("s3", json!({"app": "shy"}), shy)),
    ];
    let s = snap(nodes, placed);
    assert_eq!(s.with_affinity.groups.len(), 1, "replicas with equal terms share a group");
    // Raw: a -20, b -10, c 0; normalised over min..max.
    assert_eq!(scores(&inter_pod_affinity::InterPodAffinity, &pod("w", json!({"app": "web"}), json!({})), &s), vec![0, 50, 100]);
    // A pod the terms do not select is not steered.
    assert_eq!(scores(&inter_pod_affinity::InterPodAffinity, &pod("x", json!({"app": "other"}), json!({})), &s), vec![0, 0, 0]);
}

#[test]
fn assumed_pods_count_within_a_batch() {
    let mut s = snap(vec![node("a", json!({}), "4"), node("b", json!({}), "4"), node("c", json!({}), "4")], vec![]);
    let fw = Framework::default();
    let mut rot = Rotation::default();
    let mut used = Vec::new();
    for i in 0..3 {
        let p = pod(&format!("w{i}"), json!({"app": "web"}), anti(HOST, json!({"matchLabels": {"app": "web"}})));
        let n = schedule_one(&fw, &p, &s, &mut rot).unwrap();
        s.assume(n, p);
        used.push(n);
    }
    used.sort();
    assert_eq!(used, vec![0, 1, 2]);
    let extra = pod("w3", json!({"app": "web"}), anti(HOST, json!({"matchLabels": {"app": "web"}})));
    let err = schedule_one(&fw, &extra, &s, &mut rot).unwrap_err();
    assert_eq!(err.message(), "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules.");
}

fn spread(skew: i32, key: &str, when: &str) -> Value {
    json!({"topologySpreadConstraints": [{"maxSkew": skew, "topologyKey": key, "whenUnsatisfiable": when, "labelSelector": {"matchLabels": {"app": "web"}}}]})
}

#[test]
fn topology_spread_filters_by_skew() {
    let nodes = vec![node("a", json!({ZONE: "z1"}), "4"), node("b", json!({ZONE: "z1"}), "4"), node("c", json!({ZONE: "z2"}), "4"), node("d", json!({}), "4")];
    let s = snap(nodes, vec![(0, pod("w0", json!({"app": "web"}), json!({}))), (1, pod("w1", json!({"app": "web"}), json!({})))]);
    let r = filter_all(&pod_topology_spread::PodTopologySpread, &pod("w2", json!({"app": "web"}), spread(1, ZONE, "DoNotSchedule")), &s);
    assert_eq!(r[0], Err(pod_topology_spread::CONSTRAINTS_NOT_MATCH.into()));
    assert_eq!(r[2], Ok(()));
    assert_eq!(r[3], Err(pod_topology_spread::MISSING_LABEL.into()));
    // maxSkew 3 allows z1: 2 + 1 - 0 = 3.
    let r = filter_all(&pod_topology_spread::PodTopologySpread, &pod("w2", json!({"app": "web"}), spread(3, ZONE, "DoNotSchedule")), &s);
    assert_eq!(r[0], Ok(()));
    // A pod the selector does not match does not count itself.
    let r = filter_all(&pod_topology_spread::PodTopologySpread, &pod("x", json!({"app": "other"}), spread(2, ZONE, "DoNotSchedule")), &s);
    assert_eq!(r[0], Ok(()));
}

#[test]
fn topology_spread_min_domains_and_node_affinity() {
    let nodes = vec![node("a", json!({ZONE: "z1", "disk": "ssd"}), "4"), node("b", json!({ZONE: "z2"}), "4")];
    let s = snap(nodes, vec![(0, pod("w0", json!({"app": "web"}), json!({})))]);
    // Only z1 passes the pod's nodeSelector, so z2's zero does not count as the minimum.
    let mut spec = spread(1, ZONE, "DoNotSchedule");
    spec["nodeSelector"] = json!({"disk": "ssd"});
    assert_eq!(filter_all(&pod_topology_spread::PodTopologySpread, &pod("w1", json!({"app": "web"}), spec.clone()), &s)[0], Ok(()));
    // minDomains 3 with two domains: the global minimum is taken as 0.
    spec["topologySpreadConstraints"][0]["minDomains"] = json!(3);
    assert!(filter_all(&pod_topology_spread::PodTopologySpread, &pod("w1", json!({"app": "web"}), spec), &s)[0].is_err());
}

#[test]
fn topology_spread_scores_the_emptier_domain() {
    let nodes = vec![node("a", json!({ZONE: "z1"}), "4"), node("b", json!({ZONE: "z2"}), "4")];
    let s = snap(nodes, vec![(0, pod("w0", json!({"app": "web"}), json!({}))), (0, pod("w1", json!({"app": "web"}), json!({})))]);
    let sc = scores(&pod_topology_spread::PodTopologySpread, &pod("w2", json!({"app": "web"}), spread(1, ZONE, "ScheduleAnyway")), &s);
    assert!(sc[1] > sc[0], "{sc:?}");
}

#[test]
fn node_filters_and_reasons() {
    let fw = Framework::default();
    let mut tainted = (*node("t", json!({}), "4")).clone();
    tainted.spec = Some(serde_json::from_value(json!({"taints": [{"key": "gpu", "value": "yes", "effect": "NoSchedule"}]})).unwrap());
    let mut cordoned = (*node("u", json!({}), "4")).clone();
    cordoned.spec = Some(serde_json::from_value(json!({"unschedulable": true})).unwrap());
    let s = snap(
        vec![Arc::new(tainted), Arc::new(cordoned), node("small", json!({}), "1"), node("hdd", json!({"disk": "hdd"}), "8")],
        vec![(3, pod("port", json!({}), json!({"containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": 8080}]}]})))],
    );
    let p = pod("big", json!({}), json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": "2"}}, "ports": [{"containerPort": 80, "hostPort": 8080}]}]}));
    let err = schedule_one(&fw, &p, &s, &mut Rotation::default()).unwrap_err();
    assert_eq!(
        err.message(),
        "0/4 nodes are available: 1 Insufficient cpu, 1 node(s) didn't have free ports for the requested pod ports, 1 node(s) had untolerated taint {gpu=yes: NoSchedule}, 1 node(s) were unschedulable."
    );
    let mut sel = json!({"nodeSelector": {"disk": "ssd"}});
    sel["containers"] = json!([{"name": "c"}]);
    let err = schedule_one(&fw, &pod("p", json!({}), sel), &s, &mut Rotation::default()).unwrap_err();
    assert!(err.message().contains("2 node(s) didn't match Pod's node affinity/selector"), "{}", err.message());
}

#[test]
fn every_resource_shortfall_is_counted() {
    let fw = Framework::default();
    let s = snap(vec![node("a", json!({}), "2"), node("b", json!({}), "8")], vec![]);
    let big = json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": "4", "memory": "16Gi"}}}]});
    let err = schedule_one(&fw, &pod("big", json!({}), big), &s, &mut Rotation::default()).unwrap_err();
    assert_eq!(err.message(), "0/2 nodes are available: 1 Insufficient cpu, 2 Insufficient memory.");
}

fn claim(name: &str, class: &str, volume: Option<&str>) -> (String, Arc<PersistentVolumeClaim>) {
    let mut spec = json!({"storageClassName": class, "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}});
    if let Some(v) = volume {
        spec["volumeName"] = json!(v);
    }
    (format!("default/{name}"), Arc::new(serde_json::from_value(json!({"metadata": {"name": name, "namespace": "default"}, "spec": spec})).unwrap()))
}

fn class(name: &str, provisioner: &str, mode: &str) -> (String, Arc<StorageClass>) {
    (name.into(), Arc::new(serde_json::from_value(json!({"metadata": {"name": name}, "provisioner": provisioner, "volumeBindingMode": mode})).unwrap()))
}

fn local_pv(name: &str, class: &str, node: &str) -> Arc<PersistentVolume> {
    Arc::new(
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": {
            "storageClassName": class, "capacity": {"storage": "5Gi"}, "accessModes": ["ReadWriteOnce"], "hostPath": {"path": "/x"},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [{"key": HOST, "operator": "In", "values": [node]}]}]}}},
            "status": {"phase": "Available"}}))
        .unwrap(),
    )
}

#[test]
fn volume_binding() {
    let mut s = snap(vec![node("a", json!({}), "4"), node("b", json!({}), "4")], vec![]);
    s.classes = [class("local-path", "skiff.io/local-path", "WaitForFirstConsumer"), class("fast", "x", "Immediate"), class("manual", "kubernetes.io/no-provisioner", "WaitForFirstConsumer")].into_iter().collect();
    s.claims = [claim("dyn", "local-path", None), claim("imm", "fast", None), claim("bound", "manual", Some("pv-a")), claim("static", "manual", None)].into_iter().collect();
    s.volumes = vec![local_pv("pv-a", "manual", "a"), local_pv("pv-b", "manual", "b")];
    let using = |c: &str| pod("p", json!({}), json!({"volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": c}}]}));
    let vb = volume_binding::VolumeBinding;
    assert_eq!(filter_all(&vb, &using("missing"), &s)[0], Err("persistentvolumeclaim \"missing\" not found".into()));
    assert_eq!(filter_all(&vb, &using("imm"), &s)[0], Err(volume_binding::UNBOUND_IMMEDIATE.into()));
    assert_eq!(filter_all(&vb, &using("dyn"), &s), vec![Ok(()), Ok(())]);
    assert_eq!(filter_all(&vb, &using("bound"), &s), vec![Ok(()), Err(volume_binding::NODE_CONFLICT.into())]);
    // Static WaitForFirstConsumer: a volume exists for each node (pv-a is claimed by
    // "bound" only through the claim's volumeName, so it still counts as Available here).
    assert_eq!(filter_all(&vb, &using("static"), &s), vec![Ok(()), Ok(())]);
    s.volumes.pop();
    assert_eq!(filter_all(&vb, &using("static"), &s), vec![Ok(()), Err(volume_binding::NO_VOLUMES.into())]);
}

#[test]
fn image_locality_prefers_nodes_with_the_image() {
    let mut with = (*node("a", json!({}), "4")).clone();
    with.status.as_mut().unwrap().images = Some(serde_json::from_value(json!([{"names": ["docker.io/library/nginx:latest"], "sizeBytes": 500_000_000}])).unwrap());
    let s = snap(vec![Arc::new(with), node("b", json!({}), "4")], vec![]);
    let sc = scores(&image_locality::ImageLocality, &pod("p", json!({}), json!({})), &s);
    assert!(sc[0] > 0 && sc[1] == 0, "{sc:?}");
    assert_eq!(image_locality::normalize("nginx"), "nginx:latest");
    assert_eq!(image_locality::normalize("docker.io/library/nginx:1.2"), "nginx:1.2");
    assert_eq!(image_locality::normalize("localhost:5000/app"), "localhost:5000/app:latest");
}

fn with_prio(cpu: &str, prio: i32, extra: Value) -> Value {
    let mut v = json!({"priority": prio, "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]});
    for (k, x) in extra.as_object().cloned().unwrap_or_default() {
        v[k] = x;
    }
    v
}

#[test]
fn preemption_picks_the_cheapest_victims() {
    let fw = Framework::default();
    let placed = vec![
        (0, pod("low-a", json!({}), with_prio("3", 10, json!({})))),
        (1, pod("low-b1", json!({}), with_prio("2", 5, json!({})))),
        (1, pod("low-b2", json!({}), with_prio("1", 5, json!({})))),
        (2, pod("high-c", json!({}), with_prio("3", 2000, json!({})))),
    ];
    let s = snap(vec![node("a", json!({}), "4"), node("b", json!({}), "4"), node("c", json!({}), "4")], placed);
    let p = pod("vip", json!({}), with_prio("3", 1000, json!({})));
    let err = schedule_one(&fw, &p, &s, &mut Rotation::default()).unwrap_err();
    assert_eq!(err.message(), "0/3 nodes are available: 3 Insufficient cpu.");
    let c = crate::preemption::find_candidate(&fw, &err, &p, &s).unwrap();
    // Node b: evicting low-b1 (2 CPU) is enough and its top victim priority (5) is lowest;
    // low-b2 is given back.
    assert_eq!(s.nodes[c.node].name(), "b");
    assert_eq!(c.victims.iter().map(|v| v.metadata.name.clone().unwrap()).collect::<Vec<_>>(), vec!["low-b1"]);
    // Never may not preempt; equal priority finds no victims on a/b, nothing on c.
    let never = pod("n", json!({}), with_prio("3", 1000, json!({"preemptionPolicy": "Never"})));
    let err = schedule_one(&fw, &never, &s, &mut Rotation::default()).unwrap_err();
    assert_eq!(crate::preemption::find_candidate(&fw, &err, &never, &s).unwrap_err(), "preemption: not eligible due to preemptionPolicy=Never.");
    let low = pod("l", json!({}), with_prio("3", 1, json!({})));
    let err = schedule_one(&fw, &low, &s, &mut Rotation::default()).unwrap_err();
    assert_eq!(
        crate::preemption::find_candidate(&fw, &err, &low, &s).unwrap_err(),
        "preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod."
    );
}

#[test]
fn preemption_is_not_helpful_for_unresolvable_nodes() {
    let fw = Framework::default();
    let s = snap(vec![node("a", json!({"disk": "hdd"}), "4")], vec![(0, pod("low", json!({}), with_prio("3", 0, json!({}))))]);
    let p = pod("p", json!({}), with_prio("3", 100, json!({"nodeSelector": {"disk": "ssd"}})));
    let err = schedule_one(&fw, &p, &s, &mut Rotation::default()).unwrap_err();
    assert_eq!(crate::preemption::find_candidate(&fw, &err, &p, &s).unwrap_err(), "preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.");
}

#[test]
fn adaptive_share_of_nodes() {
    assert_eq!(feasible_nodes_to_find(50), 50);
    assert_eq!(feasible_nodes_to_find(1000), 420);
    assert_eq!(feasible_nodes_to_find(5000), 500);
    assert_eq!(feasible_nodes_to_find(100_000), 5000);
    // And the state PreFilter builds is what Filter reads.
    let s = snap(vec![node("a", json!({}), "1")], vec![]);
    let fw = Framework::default();
    let p = pod("p", json!({}), with_prio("2", 0, json!({})));
    let state = pre_filter(&fw, &p, &s).unwrap();
    assert_eq!(run_filters(&fw, &state, &p, &s.nodes[0]).unwrap_err().0, "Insufficient cpu");
}
