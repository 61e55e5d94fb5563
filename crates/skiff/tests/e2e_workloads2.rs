//! End-to-end: CronJobs, DaemonSets and StatefulSets reconciled by skiff's controllers, pods
//! placed by its scheduler onto fake nodes whose fake kubelets report them running.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use skiff_testkit::Cluster;

fn cluster() -> Cluster {
    Cluster::start(std::path::Path::new(env!("CARGO_BIN_EXE_skiff"))).expect("server starts")
}

fn create(c: &Cluster, manifest: &str) {
    let out = c.kubectl_stdin(&["create", "-f", "-"], manifest).unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Names of the Jobs a CronJob controls.
fn owned_jobs(c: &Cluster, cronjob: &str) -> Vec<String> {
    let jobs = c.json(&["get", "jobs"]).unwrap();
    jobs["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["metadata"]["ownerReferences"].as_array().is_some_and(|o| o.iter().any(|o| o["kind"] == "CronJob" && o["name"] == cronjob)))
        .map(|j| j["metadata"]["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn cronjob_fires_missed_slot_and_prunes_history() {
    let c = cluster();
    let _n = c.fake_node("node-1").unwrap();
    create(&c, r#"{"apiVersion":"batch/v1","kind":"CronJob","metadata":{"name":"tick"},"spec":{"schedule":"*/1 * * * *","successfulJobsHistoryLimit":2,
        "jobTemplate":{"metadata":{"labels":{"app":"tick"}},"spec":{"template":{"spec":{"restartPolicy":"Never","containers":[{"name":"c","image":"busybox"}]}}}}}}"#);
    // Pretend the last run was five minutes ago: the latest missed minute is started at once
    // instead of waiting for the next minute boundary.
    let past = Timestamp::from_second((Timestamp::now().as_second() / 60 - 5) * 60).unwrap();
    c.ok(&["patch", "cronjob", "tick", "--subresource=status", "--type=merge", "-p", &format!(r#"{{"status":{{"lastScheduleTime":"{past}"}}}}"#)]).unwrap();
    c.eventually(Duration::from_secs(20), "a scheduled job", || !owned_jobs(&c, "tick").is_empty()).unwrap();
    let first = owned_jobs(&c, "tick")[0].clone();
    let minutes: i64 = first.strip_prefix("tick-").unwrap().parse().unwrap();
    assert!(minutes > past.as_second() / 60, "{first} is not after {past}");
    let job = c.json(&["get", "job", &first]).unwrap();
    assert_eq!(job["metadata"]["labels"]["app"], "tick", "{job}");
    let stamp = job["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"].as_str().unwrap().to_string();
    assert_eq!(stamp.parse::<Timestamp>().unwrap().as_second(), minutes * 60, "{job}");
    c.ok(&["wait", "--for=condition=complete", &format!("job/{first}"), "--timeout=30s"]).unwrap();
    c.eventually(Duration::from_secs(20), "lastSuccessfulTime and no active jobs", || {
        let cj = c.json(&["get", "cronjob", "tick"]).unwrap();
        cj["status"]["lastSuccessfulTime"].is_string() && cj["status"]["active"].as_array().is_none_or(|a| a.is_empty()) && cj["status"]["lastScheduleTime"].as_str().is_some_and(|t| t.parse::<Timestamp>().unwrap().as_second() >= minutes * 60)
    })
    .unwrap();

    // Manual runs from the template are owned by the CronJob and count toward its history.
    for i in 1..=3 {
        c.ok(&["create", "job", &format!("manual-{i}"), "--from=cronjob/tick"]).unwrap();
        c.ok(&["wait", "--for=condition=complete", &format!("job/manual-{i}"), "--timeout=30s"]).unwrap();
    }
    c.eventually(Duration::from_secs(20), "history pruned to 2 successful jobs", || {
        let jobs = owned_jobs(&c, "tick");
        jobs.len() == 2 && jobs.contains(&"manual-3".to_string())
    })
    .unwrap_or_else(|e| panic!("{e}: {:?}", owned_jobs(&c, "tick")));

    // Suspended: a missed slot is not started.
    c.ok(&["patch", "cronjob", "tick", "--type=merge", "-p", r#"{"spec":{"suspend":true}}"#]).unwrap();
    let before = owned_jobs(&c, "tick");
    c.ok(&["patch", "cronjob", "tick", "--subresource=status", "--type=merge", "-p", &format!(r#"{{"status":{{"lastScheduleTime":"{past}"}}}}"#)]).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(owned_jobs(&c, "tick"), before);
    let table = c.ok(&["get", "cronjob", "tick"]).unwrap();
    assert!(table.contains("True"), "suspend column: {table}");
}

/// Live pods of a label selector as (name, node, image).
fn pods(c: &Cluster, selector: &str) -> Vec<(String, String, String)> {
    let pods = c.json(&["get", "pods", "-l", selector]).unwrap();
    pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| {
            (
                p["metadata"]["name"].as_str().unwrap_or("").to_string(),
                p["spec"]["nodeName"].as_str().unwrap_or("").to_string(),
                p["spec"]["containers"][0]["image"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn nodes_of(c: &Cluster, selector: &str) -> Vec<String> {
    let mut nodes: Vec<String> = pods(c, selector).into_iter().map(|p| p.1).collect();
    nodes.sort();
    nodes
}

#[test]
fn daemonset_runs_one_pod_per_eligible_node() {
    let c = cluster();
    let _n1 = c.fake_node("node-1").unwrap();
    let _n2 = c.fake_node("node-2").unwrap();
    let _n3 = c.fake_node("node-3").unwrap();
    c.ok(&["taint", "node", "node-3", "dedicated=infra:NoSchedule"]).unwrap();
    create(&c, r#"{"apiVersion":"apps/v1","kind":"DaemonSet","metadata":{"name":"agent"},"spec":{"selector":{"matchLabels":{"app":"agent"}},
        "template":{"metadata":{"labels":{"app":"agent"}},"spec":{"containers":[{"name":"a","image":"agent:1"}]}}}}"#);
    let out = c.ok(&["rollout", "status", "daemonset/agent", "--timeout=30s"]).unwrap();
    assert!(out.contains("successfully rolled out"), "{out}");
    assert_eq!(nodes_of(&c, "app=agent"), ["node-1", "node-2"]);
    let ds = c.json(&["get", "ds", "agent"]).unwrap();
    for (k, v) in [("desiredNumberScheduled", 2), ("currentNumberScheduled", 2), ("numberReady", 2), ("numberAvailable", 2), ("updatedNumberScheduled", 2), ("numberMisscheduled", 0)] {
        assert_eq!(ds["status"][k], v, "{k}: {}", ds["status"]);
    }
    let pod = c.json(&["get", "pods", "-l", "app=agent"]).unwrap()["items"][0].clone();
    assert!(pod["metadata"]["labels"]["controller-revision-hash"].is_string(), "{pod}");
    let tolerations = pod["spec"]["tolerations"].to_string();
    assert!(tolerations.contains("node.kubernetes.io/unschedulable") && tolerations.contains("node.kubernetes.io/not-ready"), "{tolerations}");
    assert_eq!(pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]["matchFields"][0]["key"], "metadata.name");

    // A new node gets a daemon; cordoning does not keep daemons off.
    let _n4 = c.fake_node("node-4").unwrap();
    c.ok(&["cordon", "node-4"]).unwrap();
    c.eventually(Duration::from_secs(20), "a daemon on node-4", || nodes_of(&c, "app=agent") == ["node-1", "node-2", "node-4"])
        .unwrap_or_else(|e| panic!("{e}: {:?}", pods(&c, "app=agent")));
    c.eventually(Duration::from_secs(20), "all 3 ready", || c.json(&["get", "ds", "agent"]).unwrap()["status"]["numberReady"] == 3).unwrap();

    // A new image rolls out node by node (maxUnavailable 1 by default).
    c.ok(&["set", "image", "daemonset/agent", "a=agent:2"]).unwrap();
    let out = c.ok(&["rollout", "status", "daemonset/agent", "--timeout=30s"]).unwrap();
    assert!(out.contains("successfully rolled out"), "{out}");
    c.eventually(Duration::from_secs(20), "only new pods", || {
        let p = pods(&c, "app=agent");
        p.len() == 3 && p.iter().all(|p| p.2 == "agent:2")
    })
    .unwrap_or_else(|e| panic!("{e}: {:?}", pods(&c, "app=agent")));

    let history = c.ok(&["rollout", "history", "daemonset/agent"]).unwrap();
    assert!(history.contains('1') && history.contains('2'), "{history}");
    c.ok(&["rollout", "undo", "daemonset/agent"]).unwrap();
    c.ok(&["rollout", "status", "daemonset/agent", "--timeout=30s"]).unwrap();
    c.eventually(Duration::from_secs(20), "back on the old image", || {
        let p = pods(&c, "app=agent");
        p.len() == 3 && p.iter().all(|p| p.2 == "agent:1")
    })
    .unwrap_or_else(|e| panic!("{e}: {:?}", pods(&c, "app=agent")));

    // Removing a node label the DaemonSet selects on removes its pod there.
    c.ok(&["label", "node", "node-1", "role=edge"]).unwrap();
    c.ok(&["patch", "ds", "agent", "--type=merge", "-p", r#"{"spec":{"template":{"spec":{"nodeSelector":{"role":"edge"}}}}}"#]).unwrap();
    c.eventually(Duration::from_secs(30), "only node-1 keeps a daemon", || nodes_of(&c, "app=agent") == ["node-1"])
        .unwrap_or_else(|e| panic!("{e}: {:?}", pods(&c, "app=agent")));
    c.ok(&["delete", "ds", "agent"]).unwrap();
    c.eventually(Duration::from_secs(20), "daemon pods gone", || pods(&c, "app=agent").is_empty()).unwrap();
}

fn pvc_names(c: &Cluster) -> Vec<String> {
    let mut names: Vec<String> = c.ok(&["get", "pvc", "-o", "jsonpath={.items[*].metadata.name}"]).unwrap().split_whitespace().map(String::from).collect();
    names.sort();
    names
}

#[test]
fn statefulset_creates_in_order_and_keeps_claims() {
    let c = cluster();
    let _n1 = c.fake_node("node-1").unwrap();
    // Record the order in which pods appear.
    create(&c, r#"{"apiVersion":"apps/v1","kind":"StatefulSet","metadata":{"name":"web"},"spec":{"replicas":3,"serviceName":"web",
        "selector":{"matchLabels":{"app":"web"}},
        "template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"nginx","image":"nginx:1","volumeMounts":[{"name":"data","mountPath":"/data"}]}]}},
        "volumeClaimTemplates":[{"metadata":{"name":"data"},"spec":{"accessModes":["ReadWriteOnce"],"resources":{"requests":{"storage":"1Gi"}}}}]}}"#);
    let out = c.ok(&["rollout", "status", "statefulset/web", "--timeout=30s"]).unwrap();
    assert!(out.contains("roll out complete") || out.contains("rolling update complete"), "{out}");
    let p = c.json(&["get", "pods", "-l", "app=web", "--sort-by=.metadata.creationTimestamp"]).unwrap();
    let items = p["items"].as_array().unwrap();
    let names: Vec<&str> = items.iter().map(|p| p["metadata"]["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["web-0", "web-1", "web-2"]);
    // Each pod was created only after its predecessor was ready.
    for w in items.windows(2) {
        let ready_at = w[0]["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Ready").unwrap()["lastTransitionTime"].as_str().unwrap().parse::<Timestamp>().unwrap();
        let created = w[1]["metadata"]["creationTimestamp"].as_str().unwrap().parse::<Timestamp>().unwrap();
        assert!(created.as_second() >= ready_at.as_second(), "{} created before {} was ready", w[1]["metadata"]["name"], w[0]["metadata"]["name"]);
    }
    let web1 = &items[1];
    assert_eq!(web1["spec"]["hostname"], "web-1");
    assert_eq!(web1["spec"]["subdomain"], "web");
    assert_eq!(web1["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"], "web-1");
    assert_eq!(web1["metadata"]["labels"]["apps.kubernetes.io/pod-index"], "1");
    assert_eq!(web1["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"], "data-web-1", "{web1}");
    assert_eq!(pvc_names(&c), ["data-web-0", "data-web-1", "data-web-2"]);
    let sts = c.json(&["get", "sts", "web"]).unwrap();
    for k in ["replicas", "readyReplicas", "currentReplicas", "updatedReplicas", "availableReplicas"] {
        assert_eq!(sts["status"][k], 3, "{k}: {}", sts["status"]);
    }
    assert_eq!(sts["status"]["currentRevision"], sts["status"]["updateRevision"]);

    // A rolling update replaces pods from the highest ordinal down.
    c.ok(&["set", "image", "statefulset/web", "nginx=nginx:2"]).unwrap();
    let out = c.ok(&["rollout", "status", "statefulset/web", "--timeout=30s"]).unwrap();
    assert!(out.contains("complete"), "{out}");
    c.eventually(Duration::from_secs(20), "all pods on the new image", || {
        let p = pods(&c, "app=web");
        p.len() == 3 && p.iter().all(|p| p.2 == "nginx:2")
    })
    .unwrap_or_else(|e| panic!("{e}: {:?}", pods(&c, "app=web")));
    let history = c.ok(&["rollout", "history", "statefulset/web"]).unwrap();
    assert!(history.contains('1') && history.contains('2'), "{history}");
    c.ok(&["rollout", "undo", "statefulset/web"]).unwrap();
    c.ok(&["rollout", "status", "statefulset/web", "--timeout=30s"]).unwrap();
    c.eventually(Duration::from_secs(20), "back on the old image", || {
        let p = pods(&c, "app=web");
        p.len() == 3 && p.iter().all(|p| p.2 == "nginx:1")
    })
    .unwrap_or_else(|e| panic!("{e}: {:?}", pods(&c, "app=web")));

    // Scale up adds the next ordinals (with their claims), in order.
    c.ok(&["scale", "statefulset", "web", "--replicas=5"]).unwrap();
    c.ok(&["rollout", "status", "statefulset/web", "--timeout=30s"]).unwrap();
    c.eventually(Duration::from_secs(20), "web-0..4", || {
        let mut names: Vec<String> = pods(&c, "app=web").into_iter().map(|p| p.0).collect();
        names.sort();
        names == ["web-0", "web-1", "web-2", "web-3", "web-4"]
    })
    .unwrap_or_else(|e| panic!("{e}: {:?}", pods(&c, "app=web")));
    assert_eq!(pvc_names(&c).len(), 5);

    // Scale down removes the highest ordinals; claims stay.
    c.ok(&["scale", "statefulset", "web", "--replicas=1"]).unwrap();
    c.eventually(Duration::from_secs(20), "only web-0", || {
        let mut names: Vec<String> = pods(&c, "app=web").into_iter().map(|p| p.0).collect();
        names.sort();
        names == ["web-0"]
    })
    .unwrap_or_else(|e| panic!("{e}: {:?}", pods(&c, "app=web")));
    assert_eq!(pvc_names(&c).len(), 5);
    // Deleting the set keeps the claims too (Retain is the default).
    c.ok(&["delete", "sts", "web"]).unwrap();
    c.eventually(Duration::from_secs(20), "pods gone", || pods(&c, "app=web").is_empty()).unwrap();
    assert_eq!(pvc_names(&c), ["data-web-0", "data-web-1", "data-web-2", "data-web-3", "data-web-4"]);
}

#[test]
fn statefulset_claims_follow_delete_retention_policy() {
    let c = cluster();
    let _n1 = c.fake_node("node-1").unwrap();
    create(&c, r#"{"apiVersion":"apps/v1","kind":"StatefulSet","metadata":{"name":"db"},"spec":{"replicas":2,"serviceName":"db","podManagementPolicy":"Parallel",
        "persistentVolumeClaimRetentionPolicy":{"whenScaled":"Delete","whenDeleted":"Delete"},
        "selector":{"matchLabels":{"app":"db"}},
        "template":{"metadata":{"labels":{"app":"db"}},"spec":{"containers":[{"name":"db","image":"postgres","volumeMounts":[{"name":"data","mountPath":"/data"}]}]}},
        "volumeClaimTemplates":[{"metadata":{"name":"data"},"spec":{"accessModes":["ReadWriteOnce"],"resources":{"requests":{"storage":"1Gi"}}}}]}}"#);
    c.ok(&["rollout", "status", "statefulset/db", "--timeout=30s"]).unwrap();
    assert_eq!(pvc_names(&c), ["data-db-0", "data-db-1"]);
    c.ok(&["scale", "statefulset", "db", "--replicas=1"]).unwrap();
    c.eventually(Duration::from_secs(20), "the claim of db-1 deleted with it", || pvc_names(&c) == ["data-db-0"])
        .unwrap_or_else(|e| panic!("{e}: {:?}", pvc_names(&c)));
    c.ok(&["delete", "sts", "db"]).unwrap();
    c.eventually(Duration::from_secs(20), "all claims deleted with the set", || pvc_names(&c).is_empty())
        .unwrap_or_else(|e| panic!("{e}: {:?}", pvc_names(&c)));
}
