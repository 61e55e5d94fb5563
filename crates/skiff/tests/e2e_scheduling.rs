//! End-to-end: the scheduler's InterPodAffinity and preemption, driven with the real kubectl
//! against `skiff server` with fake nodes.

use std::time::Duration;

use skiff_testkit::Cluster;

fn cluster() -> Cluster {
    Cluster::start(std::path::Path::new(env!("CARGO_BIN_EXE_skiff"))).expect("server starts")
}

fn create(c: &Cluster, manifest: &str) {
    let out = c.kubectl_stdin(&["create", "-f", "-"], manifest).unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn required_anti_affinity_puts_one_replica_per_node() {
    let c = cluster();
    let _nodes: Vec<_> = ["sched-a", "sched-b", "sched-c"].iter().map(|n| c.fake_node(n).unwrap()).collect();
    create(
        &c,
        r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"spread"},"spec":{"replicas":4,
        "selector":{"matchLabels":{"app":"spread"}},"template":{"metadata":{"labels":{"app":"spread"}},"spec":{
        "affinity":{"podAntiAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":[
            {"labelSelector":{"matchLabels":{"app":"spread"}},"topologyKey":"kubernetes.io/hostname"}]}},
        "containers":[{"name":"c","image":"busybox"}]}}}}"#,
    );
    let pods = || c.json(&["get", "pods", "-l", "app=spread"]).unwrap()["items"].as_array().cloned().unwrap_or_default();
    c.eventually(Duration::from_secs(30), "3 pods running and 1 unschedulable", || {
        let ps = pods();
        let running = ps.iter().filter(|p| p["status"]["phase"] == "Running").count();
        let unschedulable = ps.iter().filter(|p| p["status"]["conditions"].as_array().is_some_and(|cs| cs.iter().any(|c| c["reason"] == "Unschedulable"))).count();
        ps.len() == 4 && running == 3 && unschedulable == 1
    })
    .unwrap_or_else(|e| panic!("{e}: {:#?}", pods()));
    let ps = pods();
    let mut nodes: Vec<&str> = ps.iter().filter_map(|p| p["spec"]["nodeName"].as_str()).collect();
    nodes.sort();
    assert_eq!(nodes, vec!["sched-a", "sched-b", "sched-c"]);
    let pending = ps.iter().find(|p| p["spec"]["nodeName"].is_null()).unwrap();
    assert_eq!(pending["status"]["phase"], "Pending");
    let name = pending["metadata"]["name"].as_str().unwrap();
    let d = c.ok(&["describe", "pod", name]).unwrap();
    assert!(
        d.contains("FailedScheduling")
            && d.contains("0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod."),
        "{d}"
    );
    // A fourth node takes the pending replica.
    let _d = c.fake_node("sched-d").unwrap();
    c.eventually(Duration::from_secs(30), "the fourth replica on the new node", || {
        c.json(&["get", "pod", name]).unwrap()["spec"]["nodeName"] == "sched-d"
    })
    .unwrap();
}

#[test]
fn high_priority_pod_preempts_a_low_priority_one() {
    let c = cluster();
    let _n = c.fake_node("sched-only").unwrap();
    // Built-in classes exist; an unknown class is refused by Priority admission.
    let pcs = c.ok(&["get", "priorityclasses"]).unwrap();
    assert!(pcs.contains("system-node-critical") && pcs.contains("2000001000") && pcs.contains("system-cluster-critical"), "{pcs}");
    let err = c.fails(&["run", "nope", "--image=busybox", "--overrides", r#"{"spec":{"priorityClassName":"nope"}}"#]).unwrap();
    assert!(err.contains(r#"pods "nope" is forbidden: no PriorityClass with name nope was found"#), "{err}");
    c.ok(&["create", "priorityclass", "low", "--value=100"]).unwrap();
    c.ok(&["create", "priorityclass", "high", "--value=1000"]).unwrap();
    let pod = |name: &str, class: &str| {
        format!(
            r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}"}},"spec":{{"priorityClassName":"{class}",
            "containers":[{{"name":"c","image":"busybox","resources":{{"requests":{{"cpu":"3"}}}}}}]}}}}"#
        )
    };
    create(&c, &pod("victim", "low"));
    c.ok(&["wait", "--for=condition=Ready", "pod/victim", "--timeout=30s"]).unwrap();
    assert_eq!(c.json(&["get", "pod", "victim"]).unwrap()["spec"]["priority"], 100);
    create(&c, &pod("vip", "high"));
    let vip = c.json(&["get", "pod", "vip"]).unwrap();
    assert_eq!(vip["spec"]["priority"], 1000, "{vip}");
    assert_eq!(vip["spec"]["preemptionPolicy"], "PreemptLowerPriority", "{vip}");
    c.eventually(Duration::from_secs(30), "vip bound to the node", || c.json(&["get", "pod", "vip"]).unwrap()["spec"]["nodeName"] == "sched-only").unwrap();
    let gone = c.kubectl(&["get", "pod", "victim"]).unwrap();
    assert!(!gone.status.success(), "victim still exists");
    let vip = c.json(&["get", "pod", "vip"]).unwrap();
    assert_eq!(vip["status"]["nominatedNodeName"], "sched-only", "{vip}");
    let events = c.ok(&["get", "events", "--field-selector", "reason=Preempted"]).unwrap();
    assert!(events.contains("pod/victim") && events.contains("on node sched-only"), "{events}");
    // A lower-priority pod does not preempt the higher one.
    create(&c, &pod("late", "low"));
    c.eventually(Duration::from_secs(20), "late unschedulable", || {
        c.json(&["get", "pod", "late"]).unwrap()["status"]["conditions"].as_array().is_some_and(|cs| cs.iter().any(|c| c["reason"] == "Unschedulable"))
    })
    .unwrap();
    assert!(c.json(&["get", "pod", "vip"]).unwrap()["metadata"]["deletionTimestamp"].is_null());

    // One globalDefault class at most; pods without a class name get it.
    c.ok(&["create", "priorityclass", "dflt", "--value=50", "--global-default"]).unwrap();
    let err = c.fails(&["create", "priorityclass", "dflt2", "--value=60", "--global-default"]).unwrap();
    assert!(err.contains("PriorityClass dflt is already marked as default. Only one default can exist"), "{err}");
    let err = c.fails(&["create", "priorityclass", "system-mine", "--value=60"]).unwrap();
    assert!(err.contains("reserved for system use only"), "{err}");
    c.ok(&["run", "plain", "--image=busybox"]).unwrap();
    let plain = c.json(&["get", "pod", "plain"]).unwrap();
    assert_eq!((plain["spec"]["priority"].as_i64(), plain["spec"]["priorityClassName"].as_str()), (Some(50), Some("dflt")), "{plain}");
    // Admission follows deletions too (it reads a watch-fed cache of the classes).
    c.ok(&["delete", "priorityclass", "dflt"]).unwrap();
    c.ok(&["run", "plain2", "--image=busybox"]).unwrap();
    let plain2 = c.json(&["get", "pod", "plain2"]).unwrap();
    assert_eq!((plain2["spec"]["priority"].as_i64(), plain2["spec"].get("priorityClassName")), (Some(0), None), "{plain2}");
    let err = c.fails(&["run", "gone", "--image=busybox", "--overrides", r#"{"spec":{"priorityClassName":"dflt"}}"#]).unwrap();
    assert!(err.contains("no PriorityClass with name dflt was found"), "{err}");
}
