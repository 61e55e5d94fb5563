//! End-to-end: Deployments and ReplicaSets reconciled by skiff's controllers, pods placed by
//! its scheduler onto fake nodes whose fake kubelets report them running.

use std::time::Duration;

use skiff_testkit::Cluster;

fn cluster() -> Cluster {
    Cluster::start(std::path::Path::new(env!("CARGO_BIN_EXE_skiff"))).expect("server starts")
}

fn count_running(c: &Cluster, selector: &str) -> usize {
    let pods = c.json(&["get", "pods", "-l", selector]).unwrap();
    pods["items"].as_array().unwrap().iter().filter(|p| p["status"]["phase"] == "Running" && p["metadata"]["deletionTimestamp"].is_null()).count()
}

#[test]
fn deployment_rolls_out_scales_updates_and_rolls_back() {
    let c = cluster();
    let _n1 = c.fake_node("node-1").unwrap();
    let _n2 = c.fake_node("node-2").unwrap();
    c.ok(&["create", "deployment", "web", "--image=nginx:1.25", "--replicas=3"]).unwrap();
    let out = c.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]).unwrap();
    assert!(out.contains("successfully rolled out"), "{out}");
    assert_eq!(count_running(&c, "app=web"), 3);
    // Pods spread over both nodes by the scheduler.
    let nodes = c.ok(&["get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].spec.nodeName}"]).unwrap();
    assert!(nodes.contains("node-1") && nodes.contains("node-2"), "{nodes}");

    c.ok(&["scale", "deployment", "web", "--replicas=5"]).unwrap();
    c.eventually(Duration::from_secs(30), "5 running pods", || count_running(&c, "app=web") == 5).unwrap();
    c.ok(&["scale", "deployment", "web", "--replicas=2"]).unwrap();
    c.eventually(Duration::from_secs(30), "2 running pods", || count_running(&c, "app=web") == 2).unwrap();

    // A new image rolls out through a second ReplicaSet.
    c.ok(&["set", "image", "deployment/web", "nginx=nginx:1.26"]).unwrap();
    let out = c.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]).unwrap();
    assert!(out.contains("successfully rolled out"), "{out}");
    let rs = c.json(&["get", "rs", "-l", "app=web"]).unwrap();
    assert_eq!(rs["items"].as_array().unwrap().len(), 2, "{rs}");
    let images = c.ok(&["get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].spec.containers[0].image}"]).unwrap();
    c.eventually(Duration::from_secs(30), "only new pods", || {
        let imgs = c.ok(&["get", "pods", "-l", "app=web", "--field-selector=status.phase=Running", "-o", "jsonpath={.items[*].spec.containers[0].image}"]).unwrap();
        !imgs.contains("1.25") && imgs.contains("1.26")
    }).unwrap_or_else(|e| panic!("{e}; earlier images: {images}"));
    let history = c.ok(&["rollout", "history", "deployment/web"]).unwrap();
    assert!(history.contains('1') && history.contains('2'), "{history}");

    c.ok(&["rollout", "undo", "deployment/web"]).unwrap();
    c.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]).unwrap();
    let image = c.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.template.spec.containers[0].image}"]).unwrap();
    assert_eq!(image, "nginx:1.25");
    let d = c.json(&["get", "deploy", "web"]).unwrap();
    assert_eq!(d["metadata"]["annotations"]["deployment.kubernetes.io/revision"], "3", "{d}");

    // Deleting the deployment removes its ReplicaSets and pods (garbage collector).
    c.ok(&["delete", "deployment", "web"]).unwrap();
    c.eventually(Duration::from_secs(30), "pods and replicasets gone", || {
        c.ok(&["get", "rs,pods", "-o", "name"]).unwrap().trim().is_empty()
    }).unwrap();
}

#[test]
fn unschedulable_pods_stay_pending_with_a_reason() {
    let c = cluster();
    let _n = c.fake_node("small").unwrap();
    c.ok(&["run", "huge", "--image=busybox", "--overrides", r#"{"spec":{"containers":[{"name":"huge","image":"busybox","resources":{"requests":{"cpu":"64"}}}]}}"#]).unwrap();
    c.eventually(Duration::from_secs(20), "FailedScheduling", || {
        let p = c.json(&["get", "pod", "huge"]).unwrap();
        p["status"]["conditions"].as_array().is_some_and(|cs| cs.iter().any(|c| c["reason"] == "Unschedulable"))
    }).unwrap();
    let d = c.ok(&["describe", "pod", "huge"]).unwrap();
    assert!(d.contains("FailedScheduling") && d.contains("Insufficient cpu"), "{d}");
    c.ok(&["cordon", "small"]).unwrap();
    c.ok(&["run", "small-pod", "--image=busybox"]).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let p = c.json(&["get", "pod", "small-pod"]).unwrap();
    assert!(p["spec"]["nodeName"].is_null(), "cordoned node took a pod: {p}");
    c.ok(&["uncordon", "small"]).unwrap();
    c.eventually(Duration::from_secs(20), "small-pod scheduled after uncordon", || {
        c.json(&["get", "pod", "small-pod"]).unwrap()["spec"]["nodeName"] == "small"
    }).unwrap();
}

#[test]
fn a_pending_pod_is_scheduled_once_a_deleted_pod_frees_room() {
    let c = cluster();
    let _n = c.fake_node("roomy").unwrap();
    let pod = |name: &str| {
        let spec = format!(r#"{{"spec":{{"containers":[{{"name":"{name}","image":"busybox","resources":{{"requests":{{"cpu":"3"}}}}}}]}}}}"#);
        c.ok(&["run", name, "--image=busybox", "--overrides", &spec]).unwrap();
    };
    pod("first");
    c.eventually(Duration::from_secs(20), "first bound", || c.json(&["get", "pod", "first"]).unwrap()["spec"]["nodeName"] == "roomy").unwrap();
    pod("second");
    c.eventually(Duration::from_secs(20), "second Unschedulable", || {
        let p = c.json(&["get", "pod", "second"]).unwrap();
        p["status"]["conditions"].as_array().is_some_and(|cs| cs.iter().any(|c| c["reason"] == "Unschedulable"))
    })
    .unwrap();
    // The deletion is the cluster change that gets the set-aside `second` tried again.
    c.ok(&["delete", "pod", "first", "--wait=false"]).unwrap();
    c.eventually(Duration::from_secs(20), "second bound after first is gone", || {
        c.json(&["get", "pod", "second"]).unwrap()["spec"]["nodeName"] == "roomy"
    })
    .unwrap();
}

#[test]
fn disable_scheduler_leaves_pods_unbound() {
    let c = Cluster::start_with(std::path::Path::new(env!("CARGO_BIN_EXE_skiff")), &["--disable-scheduler"]).unwrap();
    let _n = c.fake_node("idle").unwrap();
    c.ok(&["run", "waiting", "--image=busybox"]).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let p = c.json(&["get", "pod", "waiting"]).unwrap();
    assert!(p["spec"]["nodeName"].is_null(), "bound without a scheduler: {p}");
    assert!(p["status"]["conditions"].is_null(), "a scheduler wrote conditions: {p}");
    // The controller manager still runs: a Deployment gets its ReplicaSet.
    c.ok(&["create", "deployment", "still", "--image=busybox"]).unwrap();
    c.eventually(Duration::from_secs(20), "ReplicaSet created", || !c.ok(&["get", "rs", "-o", "name"]).unwrap().trim().is_empty()).unwrap();
}

#[test]
fn pods_of_a_dead_node_are_replaced() {
    let c = Cluster::start_with(
        std::path::Path::new(env!("CARGO_BIN_EXE_skiff")),
        &["--node-monitor-grace-period", "3", "--default-unreachable-toleration-seconds", "2"],
    )
    .unwrap();
    let n1 = c.fake_node("node-1").unwrap();
    let _n2 = c.fake_node("node-2").unwrap();
    c.ok(&["create", "deployment", "web", "--image=nginx", "--replicas=4"]).unwrap();
    c.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]).unwrap();
    let on = |node: &str| {
        let pods = c.json(&["get", "pods", "-l", "app=web"]).unwrap();
        pods["items"].as_array().unwrap().iter().filter(|p| p["spec"]["nodeName"] == node && p["status"]["phase"] == "Running" && p["metadata"]["deletionTimestamp"].is_null()).count()
    };
    assert!(on("node-1") > 0, "spreading put nothing on node-1");
    drop(n1); // node-1 stops heartbeating: a crash
    c.eventually(Duration::from_secs(40), "node-1 Unknown and tainted", || {
        let n = c.json(&["get", "node", "node-1"]).unwrap();
        let ready = n["status"]["conditions"].as_array().unwrap().iter().any(|c| c["type"] == "Ready" && c["status"] == "Unknown");
        let tainted = n["spec"]["taints"].as_array().is_some_and(|t| t.iter().any(|t| t["key"] == "node.kubernetes.io/unreachable" && t["effect"] == "NoExecute"));
        ready && tainted
    })
    .unwrap();
    c.eventually(Duration::from_secs(40), "all 4 replicas running on node-2", || on("node-2") == 4).unwrap();
    let status = c.ok(&["get", "nodes"]).unwrap();
    assert!(status.contains("NotReady"), "{status}");
}

#[test]
fn services_get_endpoints_of_ready_pods_only() {
    let c = cluster();
    let _n = c.fake_node("node-1").unwrap();
    c.ok(&["create", "deployment", "api", "--image=nginx", "--replicas=3", "--port=8080"]).unwrap();
    c.ok(&["rollout", "status", "deployment/api", "--timeout=60s"]).unwrap();
    c.ok(&["expose", "deployment", "api", "--port=80", "--target-port=8080"]).unwrap();
    c.ok(&["create", "service", "clusterip", "wrong", "--tcp=80:8080"]).unwrap(); // selector app=wrong
    c.eventually(Duration::from_secs(20), "3 endpoint addresses", || {
        let ep = c.json(&["get", "endpoints", "api"]).unwrap();
        ep["subsets"][0]["addresses"].as_array().is_some_and(|a| a.len() == 3) && ep["subsets"][0]["ports"][0]["port"] == 8080
    }).unwrap();
    let slices = c.json(&["get", "endpointslices", "-l", "kubernetes.io/service-name=api"]).unwrap();
    let eps = slices["items"][0]["endpoints"].as_array().unwrap();
    assert_eq!(eps.len(), 3);
    assert!(eps.iter().all(|e| e["conditions"]["ready"] == true));
    c.eventually(Duration::from_secs(20), "empty endpoints for a wrong selector", || {
        c.json(&["get", "endpoints", "wrong"]).map(|ep| ep["subsets"].as_array().is_none_or(|s| s.is_empty())).unwrap_or(false)
    }).unwrap();
    let shown = c.ok(&["get", "endpoints", "wrong"]).unwrap();
    assert!(shown.contains("<none>"), "{shown}");
    // A pod that stops being ready leaves the ready addresses.
    let pod = c.ok(&["get", "pods", "-l", "app=api", "-o", "jsonpath={.items[0].metadata.name}"]).unwrap();
    c.ok(&["patch", "pod", &pod, "--subresource=status", "--type=merge", "-p", r#"{"status":{"conditions":[{"type":"Ready","status":"False"}]}}"#]).unwrap();
    c.eventually(Duration::from_secs(20), "2 ready + 1 not ready", || {
        let ep = c.json(&["get", "endpoints", "api"]).unwrap();
        ep["subsets"][0]["addresses"].as_array().is_some_and(|a| a.len() == 2)
            && ep["subsets"][0]["notReadyAddresses"].as_array().is_some_and(|a| a.len() == 1)
    }).unwrap();
}

#[test]
fn jobs_run_to_completion() {
    let c = cluster();
    let _n = c.fake_node("node-1").unwrap();
    let job = r#"{"apiVersion":"batch/v1","kind":"Job","metadata":{"name":"batch"},"spec":{"completions":3,"parallelism":2,"template":{"spec":{"restartPolicy":"Never","containers":[{"name":"w","image":"busybox","command":["true"]}]}}}}"#;
    let out = c.kubectl_stdin(&["create", "-f", "-"], job).unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    c.ok(&["wait", "--for=condition=complete", "job/batch", "--timeout=60s"]).unwrap();
    let j = c.json(&["get", "job", "batch"]).unwrap();
    assert_eq!(j["status"]["succeeded"], 3, "{j}");
    assert!(j["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"].is_string());
    let pods = c.ok(&["get", "pods", "-l", "job-name=batch", "-o", "name"]).unwrap();
    assert_eq!(pods.lines().count(), 3, "{pods}");
    let table = c.ok(&["get", "jobs"]).unwrap();
    assert!(table.contains("Complete") && table.contains("3/3"), "{table}");
    // Indexed jobs run one pod per index.
    let indexed = r#"{"apiVersion":"batch/v1","kind":"Job","metadata":{"name":"idx"},"spec":{"completions":3,"parallelism":3,"completionMode":"Indexed","template":{"spec":{"restartPolicy":"Never","containers":[{"name":"w","image":"busybox"}]}}}}"#;
    let out = c.kubectl_stdin(&["create", "-f", "-"], indexed).unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    c.ok(&["wait", "--for=condition=complete", "job/idx", "--timeout=60s"]).unwrap();
    assert_eq!(c.json(&["get", "job", "idx"]).unwrap()["status"]["completedIndexes"], "0-2");
}
