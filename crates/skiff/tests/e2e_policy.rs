//! End-to-end: policy controllers on fake nodes — PodDisruptionBudgets honoured by
//! `kubectl drain` through the eviction subresource, the PV binder and local-path
//! provisioner, and the HorizontalPodAutoscaler on injected metrics.

use std::time::Duration;

use skiff_testkit::Cluster;

fn cluster() -> Cluster {
    Cluster::start(std::path::Path::new(env!("CARGO_BIN_EXE_skiff"))).expect("server starts")
}

const PDB: &str = r#"{"apiVersion":"policy/v1","kind":"PodDisruptionBudget","metadata":{"name":"web"},"spec":{"minAvailable":1,"selector":{"matchLabels":{"app":"web"}}}}"#;

#[test]
fn drain_waits_for_the_disruption_budget() {
    let c = cluster();
    // Both replicas land on node-1, the only node so far.
    let _n1 = c.fake_node("node-1").unwrap();
    c.ok(&["create", "deployment", "web", "--image=nginx", "--replicas=2"]).unwrap();
    c.ok(&["rollout", "status", "deployment/web", "--timeout=30s"]).unwrap();
    let out = c.kubectl_stdin(&["apply", "-f", "-"], PDB).unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    c.eventually(Duration::from_secs(15), "pdb status", || {
        let p = c.json(&["get", "pdb", "web"]).unwrap();
        p["status"]["currentHealthy"] == 2 && p["status"]["desiredHealthy"] == 1 && p["status"]["disruptionsAllowed"] == 1 && p["status"]["expectedPods"] == 2
    })
    .unwrap();
    let p = c.json(&["get", "pdb", "web"]).unwrap();
    let cond = &p["status"]["conditions"][0];
    assert_eq!((cond["type"].as_str(), cond["status"].as_str(), cond["reason"].as_str()), (Some("DisruptionAllowed"), Some("True"), Some("SufficientPods")), "{p}");

    // A budget allowing nothing refuses a direct eviction with upstream's 429.
    c.ok(&["patch", "pdb", "web", "--type=merge", "-p", r#"{"spec":{"minAvailable":2}}"#]).unwrap();
    c.eventually(Duration::from_secs(15), "no disruptions allowed", || {
        let p = c.json(&["get", "pdb", "web"]).unwrap();
        p["status"]["disruptionsAllowed"] == 0 && p["status"]["observedGeneration"] == p["metadata"]["generation"] && p["status"]["conditions"][0]["reason"] == "InsufficientPods"
    })
    .unwrap();
    let victim = c.ok(&["get", "pods", "-l", "app=web", "-o", "jsonpath={.items[0].metadata.name}"]).unwrap();
    let eviction = format!(r#"{{"apiVersion":"policy/v1","kind":"Eviction","metadata":{{"name":"{victim}","namespace":"default"}}}}"#);
    let out = c.kubectl_stdin(&["create", "--raw", &format!("/api/v1/namespaces/default/pods/{victim}/eviction"), "-f", "-"], &eviction).unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("TooManyRequests") && err.contains("Cannot evict pod as it would violate the pod's disruption budget."), "{err}");
    c.ok(&["patch", "pdb", "web", "--type=merge", "-p", r#"{"spec":{"minAvailable":1}}"#]).unwrap();
    c.eventually(Duration::from_secs(15), "one disruption allowed again", || c.json(&["get", "pdb", "web"]).unwrap()["status"]["disruptionsAllowed"] == 1).unwrap();

    // Draining node-1: the first eviction passes, the second waits for a replacement pod
    // to become ready on node-2.
    let _n2 = c.fake_node("node-2").unwrap();
    let out = c.kubectl(&["drain", "node-1", "--timeout=25s", "--delete-emptydir-data"]).unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "drain failed: {stdout}{stderr}");
    // The second pod had to wait for its replacement to become ready on node-2.
    assert!(stderr.contains("Cannot evict pod as it would violate the pod's disruption budget."), "drain never blocked: {stdout}{stderr}");
    assert!(stdout.contains("node/node-1 drained"), "{stdout}");
    c.eventually(Duration::from_secs(20), "both replicas running on node-2", || {
        let pods = c.json(&["get", "pods", "-l", "app=web"]).unwrap();
        let items = pods["items"].as_array().unwrap();
        items.len() == 2 && items.iter().all(|p| p["spec"]["nodeName"] == "node-2" && p["status"]["phase"] == "Running")
    })
    .unwrap();
    let n = c.json(&["get", "node", "node-1"]).unwrap();
    assert_eq!(n["spec"]["unschedulable"], true, "{n}");
}

fn apply(c: &Cluster, manifest: &str) {
    let out = c.kubectl_stdin(&["apply", "-f", "-"], manifest).unwrap();
    assert!(out.status.success(), "apply failed: {}", String::from_utf8_lossy(&out.stderr));
}

fn events_for(c: &Cluster, name: &str) -> Vec<(String, String)> {
    let ev = c.json(&["get", "events", "--field-selector", &format!("involvedObject.name={name}")]).unwrap();
    ev["items"].as_array().unwrap().iter().map(|e| (e["reason"].as_str().unwrap_or("").to_string(), e["message"].as_str().unwrap_or("").to_string())).collect()
}

#[test]
fn local_path_provisions_for_the_first_consumer() {
    let c = cluster();
    let _n = c.fake_node("node-1").unwrap();
    c.eventually(Duration::from_secs(15), "default storage class", || {
        c.json(&["get", "storageclass", "local-path"]).is_ok_and(|sc| {
            sc["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true" && sc["volumeBindingMode"] == "WaitForFirstConsumer"
        })
    })
    .unwrap();
    apply(&c, r#"{"apiVersion":"v1","kind":"PersistentVolumeClaim","metadata":{"name":"data"},"spec":{"accessModes":["ReadWriteOnce"],"resources":{"requests":{"storage":"2Gi"}}}}"#);
    // Defaulted to the default class, then waiting for a consumer.
    c.eventually(Duration::from_secs(15), "claim defaulted to local-path", || {
        c.json(&["get", "pvc", "data"]).unwrap()["spec"]["storageClassName"] == "local-path"
    })
    .unwrap();
    c.eventually(Duration::from_secs(15), "WaitForFirstConsumer event", || events_for(&c, "data").iter().any(|(r, _)| r == "WaitForFirstConsumer")).unwrap();
    assert_eq!(c.json(&["get", "pvc", "data"]).unwrap()["status"]["phase"], "Pending");
    apply(&c, r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"user"},"spec":{"containers":[{"name":"c","image":"busybox"}],"volumes":[{"name":"d","persistentVolumeClaim":{"claimName":"data"}}]}}"#);
    c.eventually(Duration::from_secs(20), "claim bound", || c.json(&["get", "pvc", "data"]).unwrap()["status"]["phase"] == "Bound").unwrap();
    let pvc = c.json(&["get", "pvc", "data"]).unwrap();
    let pv_name = pvc["spec"]["volumeName"].as_str().unwrap().to_string();
    assert_eq!(pvc["status"]["capacity"]["storage"], "2Gi", "{pvc}");
    let pv = c.json(&["get", "pv", &pv_name]).unwrap();
    assert_eq!(pv["status"]["phase"], "Bound", "{pv}");
    assert_eq!(pv["spec"]["claimRef"]["name"], "data", "{pv}");
    assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Delete", "{pv}");
    assert_eq!(pv["spec"]["hostPath"]["path"], format!("/var/lib/skiff/storage/{pv_name}"), "{pv}");
    assert_eq!(pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"][0], "node-1", "{pv}");
    // Reclaim Delete: the volume goes with its claim.
    c.ok(&["delete", "pod", "user", "--wait=false"]).unwrap();
    c.ok(&["delete", "pvc", "data", "--wait=false"]).unwrap();
    c.eventually(Duration::from_secs(20), "provisioned volume deleted", || c.ok(&["get", "pv", "-o", "name"]).unwrap().trim().is_empty()).unwrap();
}

#[test]
fn unsatisfiable_claims_stay_pending_and_static_volumes_bind() {
    let c = cluster();
    apply(&c, r#"{"apiVersion":"v1","kind":"PersistentVolumeClaim","metadata":{"name":"lost"},"spec":{"storageClassName":"no-such-class","accessModes":["ReadWriteOnce"],"resources":{"requests":{"storage":"1Gi"}}}}"#);
    c.eventually(Duration::from_secs(15), "ProvisioningFailed event", || {
        events_for(&c, "lost").iter().any(|(r, m)| r == "ProvisioningFailed" && m.contains("\"no-such-class\" not found"))
    })
    .unwrap();
    assert_eq!(c.json(&["get", "pvc", "lost"]).unwrap()["status"]["phase"], "Pending");
    let described = c.ok(&["describe", "pvc", "lost"]).unwrap();
    assert!(described.contains("ProvisioningFailed"), "{described}");

    // Two static volumes: the claim takes the smallest one that fits.
    for (name, size) in [("pv-big", "10Gi"), ("pv-small", "1Gi"), ("pv-mid", "3Gi")] {
        apply(&c, &format!(r#"{{"apiVersion":"v1","kind":"PersistentVolume","metadata":{{"name":"{name}"}},"spec":{{"storageClassName":"manual","capacity":{{"storage":"{size}"}},"accessModes":["ReadWriteOnce"],"hostPath":{{"path":"/tmp/{name}"}}}}}}"#));
    }
    c.eventually(Duration::from_secs(15), "volumes available", || {
        let pvs = c.json(&["get", "pv"]).unwrap();
        pvs["items"].as_array().unwrap().iter().all(|p| p["status"]["phase"] == "Available")
    })
    .unwrap();
    apply(&c, r#"{"apiVersion":"v1","kind":"PersistentVolumeClaim","metadata":{"name":"claim"},"spec":{"storageClassName":"manual","accessModes":["ReadWriteOnce"],"resources":{"requests":{"storage":"2Gi"}}}}"#);
    c.eventually(Duration::from_secs(15), "static claim bound", || c.json(&["get", "pvc", "claim"]).unwrap()["status"]["phase"] == "Bound").unwrap();
    let pvc = c.json(&["get", "pvc", "claim"]).unwrap();
    assert_eq!(pvc["spec"]["volumeName"], "pv-mid", "{pvc}");
    c.eventually(Duration::from_secs(10), "pv-mid bound", || {
        let pv = c.json(&["get", "pv", "pv-mid"]).unwrap();
        pv["status"]["phase"] == "Bound" && pv["spec"]["claimRef"]["name"] == "claim"
    })
    .unwrap();
    assert_eq!(c.json(&["get", "pv", "pv-big"]).unwrap()["status"]["phase"], "Available");
    // A Retain volume is Released, not deleted, when its claim goes.
    c.ok(&["delete", "pvc", "claim", "--wait=false"]).unwrap();
    c.eventually(Duration::from_secs(15), "pv-mid released", || c.json(&["get", "pv", "pv-mid"]).unwrap()["status"]["phase"] == "Released").unwrap();
}

const WEB_DEPLOYMENT: &str = r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"busy"},"spec":{"replicas":2,"selector":{"matchLabels":{"app":"busy"}},
 "template":{"metadata":{"labels":{"app":"busy"},"annotations":{"skiff.dev/fake-cpu-usage":"90m"}},
  "spec":{"containers":[{"name":"c","image":"nginx","resources":{"requests":{"cpu":"100m"}}}]}}}}"#;

const BUSY_HPA: &str = r#"{"apiVersion":"autoscaling/v2","kind":"HorizontalPodAutoscaler","metadata":{"name":"busy"},"spec":{
 "scaleTargetRef":{"apiVersion":"apps/v1","kind":"Deployment","name":"busy"},"minReplicas":1,"maxReplicas":5,
 "metrics":[{"type":"Resource","resource":{"name":"cpu","target":{"type":"Utilization","averageUtilization":50}}}],
 "behavior":{"scaleDown":{"stabilizationWindowSeconds":0}}}}"#;

fn replicas(c: &Cluster) -> i64 {
    c.json(&["get", "deploy", "busy"]).unwrap()["spec"]["replicas"].as_i64().unwrap_or(-1)
}

fn hpa_condition(c: &Cluster, type_: &str) -> (String, String) {
    let h = c.json(&["get", "hpa", "busy"]).unwrap();
    h["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|x| x["type"] == type_))
        .map(|x| (x["status"].as_str().unwrap_or("").to_string(), x["reason"].as_str().unwrap_or("").to_string()))
        .unwrap_or_default()
}

#[test]
fn hpa_scales_a_deployment_on_injected_cpu_usage() {
    let c = cluster();
    let _n = c.fake_node("node-1").unwrap();
    apply(&c, WEB_DEPLOYMENT);
    c.ok(&["rollout", "status", "deployment/busy", "--timeout=30s"]).unwrap();
    apply(&c, BUSY_HPA);
    // 90% of requests against a 50% target: 2 -> 4 -> capped at 5.
    c.eventually(Duration::from_secs(25), "scaled up to the maximum", || replicas(&c) == 5 && hpa_condition(&c, "ScalingLimited") == ("True".into(), "TooManyReplicas".into())).unwrap();
    let h = c.json(&["get", "hpa", "busy"]).unwrap();
    assert_eq!(h["status"]["desiredReplicas"], 5, "{h}");
    assert!(h["status"]["lastScaleTime"].is_string(), "{h}");
    assert_eq!(h["status"]["currentMetrics"][0]["resource"]["current"]["averageUtilization"], 90, "{h}");
    assert_eq!(hpa_condition(&c, "ScalingActive"), ("True".into(), "ValidMetricFound".into()));
    assert_eq!(hpa_condition(&c, "AbleToScale").0, "True");
    c.ok(&["rollout", "status", "deployment/busy", "--timeout=20s"]).unwrap();

    // Load drops to 10%: with no scale-down window it goes straight to the minimum.
    c.ok(&["annotate", "pods", "-l", "app=busy", "skiff.dev/fake-cpu-usage=10m", "--overwrite"]).unwrap();
    c.eventually(Duration::from_secs(25), "scaled down to the minimum", || replicas(&c) == 1).unwrap();
    c.eventually(Duration::from_secs(10), "status follows", || {
        let h = c.json(&["get", "hpa", "busy"]).unwrap();
        h["status"]["desiredReplicas"] == 1 && h["status"]["currentMetrics"][0]["resource"]["current"]["averageUtilization"] == 10
    })
    .unwrap();
}
