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

    // Removing a node label the DaemonSet selects on removes its pod there.
    c.ok(&["label", "node", "node-1", "role=edge"]).unwrap();
    c.ok(&["patch", "ds", "agent", "--type=merge", "-p", r#"{"spec":{"template":{"spec":{"nodeSelector":{"role":"edge"}}}}}"#]).unwrap();
    c.eventually(Duration::from_secs(30), "only node-1 keeps a daemon", || nodes_of(&c, "app=agent") == ["node-1"])
        .unwrap_or_else(|e| panic!("{e}: {:?}", pods(&c, "app=agent")));
    c.ok(&["delete", "ds", "agent"]).unwrap();
    c.eventually(Duration::from_secs(20), "daemon pods gone", || pods(&c, "app=agent").is_empty()).unwrap();
}
