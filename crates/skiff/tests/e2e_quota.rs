//! End-to-end: ResourceQuota and LimitRange with real kubectl on a control plane without a
//! node — creates refused past a quota with upstream's message and charged while admitted,
//! `kubectl describe quota` showing Used/Hard, usage released after deletes, a Deployment
//! held at the quota with FailedCreate events, and LimitRange defaults and bounds.

use std::time::Duration;

use skiff_testkit::Cluster;

fn cluster() -> Cluster {
    Cluster::start(std::path::Path::new(env!("CARGO_BIN_EXE_skiff"))).expect("server starts")
}

fn pod(name: &str, cpu: &str, memory: &str) -> String {
    format!(
        r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}"}},"spec":{{"containers":[{{"name":"app","image":"nginx","resources":{{"requests":{{"cpu":"{cpu}","memory":"{memory}"}}}}}}]}}}}"#
    )
}

/// Create from a manifest; Ok(stdout) or Err(stderr).
fn create(c: &Cluster, manifest: &str, extra: &[&str]) -> Result<String, String> {
    let mut args = vec!["create", "-f", "-"];
    args.extend_from_slice(extra);
    let out = c.kubectl_stdin(&args, manifest).unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The (Used, Hard) columns of `kubectl describe quota` for `resource`.
fn described(c: &Cluster, args: &[&str], resource: &str) -> Option<(String, String)> {
    let mut a = vec!["describe", "quota"];
    a.extend_from_slice(args);
    let out = c.ok(&a).unwrap();
    out.lines().find_map(|l| {
        let cols: Vec<&str> = l.split_whitespace().collect();
        (cols.len() == 3 && cols[0] == resource).then(|| (cols[1].to_string(), cols[2].to_string()))
    })
}

fn used(c: &Cluster, name: &str, ns: &str) -> serde_json::Value {
    c.json(&["get", "quota", name, "-n", ns]).unwrap()["status"]["used"].clone()
}

#[test]
fn quota_refuses_past_hard_and_releases_on_delete() {
    let c = cluster();
    c.ok(&["create", "quota", "q", "--hard=pods=2,requests.cpu=1,requests.memory=1Gi"]).unwrap();
    c.eventually(Duration::from_secs(15), "quota status from the controller", || {
        let q = c.json(&["get", "quota", "q"]).unwrap();
        q["status"]["hard"]["pods"] == "2" && q["status"]["used"]["pods"] == "0"
    })
    .unwrap();

    // Quota on cpu/memory requests: every container must state them.
    let bare = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"bare"},"spec":{"containers":[{"name":"app","image":"nginx"}]}}"#;
    let err = create(&c, bare, &[]).unwrap_err();
    assert!(
        err.contains(r#"Error from server (Forbidden): error when creating "STDIN": pods "bare" is forbidden: failed quota: q: must specify requests.cpu for: app; requests.memory for: app"#),
        "{err}"
    );

    create(&c, &pod("p1", "500m", "128Mi"), &[]).unwrap();
    create(&c, &pod("p2", "400m", "128Mi"), &[]).unwrap();
    // Charged at admission, before the controller could have seen the pods.
    let u = used(&c, "q", "default");
    assert_eq!((u["pods"].as_str(), u["requests.cpu"].as_str(), u["requests.memory"].as_str()), (Some("2"), Some("900m"), Some("256Mi")), "{u}");

    let err = create(&c, &pod("p3", "200m", "64Mi"), &[]).unwrap_err();
    assert!(
        err.contains(r#"pods "p3" is forbidden: exceeded quota: q, requested: pods=1,requests.cpu=200m, used: pods=2,requests.cpu=900m, limited: pods=2,requests.cpu=1"#),
        "{err}"
    );
    assert_eq!(described(&c, &["q"], "pods"), Some(("2".into(), "2".into())));
    assert_eq!(described(&c, &["q"], "requests.cpu"), Some(("900m".into(), "1".into())));
    assert_eq!(described(&c, &["q"], "requests.memory"), Some(("256Mi".into(), "1Gi".into())));

    // Deleting a pod releases its usage; the refused pod then fits.
    c.ok(&["delete", "pod", "p1", "--wait=false"]).unwrap();
    c.eventually(Duration::from_secs(20), "usage released", || {
        let u = used(&c, "q", "default");
        u["pods"] == "1" && u["requests.cpu"] == "400m"
    })
    .unwrap();
    create(&c, &pod("p3", "200m", "64Mi"), &[]).unwrap();
    // A server-side dry run is checked but not charged.
    let err = create(&c, &pod("p4", "600m", "64Mi"), &["--dry-run=server"]).unwrap_err();
    assert!(err.contains("exceeded quota: q, requested: pods=1,requests.cpu=600m, used: pods=2,requests.cpu=600m, limited: pods=2,requests.cpu=1"), "{err}");
    c.ok(&["delete", "quota", "q"]).unwrap();
    create(&c, &pod("p4", "100m", "64Mi"), &["--dry-run=server"]).unwrap();
    assert_eq!(c.json(&["get", "pods"]).unwrap()["items"].as_array().unwrap().len(), 2);

    // Object counts: legacy names, count/<resource>.<group>, and node ports.
    c.eventually(Duration::from_secs(15), "root CA ConfigMap", || c.kubectl(&["get", "cm", "kube-root-ca.crt"]).unwrap().status.success()).unwrap();
    c.ok(&["create", "quota", "objs", "--hard=configmaps=2,count/deployments.apps=1,services.nodeports=1"]).unwrap();
    c.ok(&["create", "configmap", "one"]).unwrap();
    let err = c.fails(&["create", "configmap", "two"]).unwrap();
    assert!(err.contains(r#"configmaps "two" is forbidden: exceeded quota: objs, requested: configmaps=1, used: configmaps=2, limited: configmaps=2"#), "{err}");
    c.ok(&["create", "deployment", "d1", "--image=nginx", "--replicas=0"]).unwrap();
    let err = c.fails(&["create", "deployment", "d2", "--image=nginx", "--replicas=0"]).unwrap();
    assert!(err.contains(r#"deployments.apps "d2" is forbidden: exceeded quota: objs, requested: count/deployments.apps=1, used: count/deployments.apps=1, limited: count/deployments.apps=1"#), "{err}");
    c.ok(&["create", "service", "nodeport", "np1", "--tcp=80"]).unwrap();
    let err = c.fails(&["create", "service", "nodeport", "np2", "--tcp=80"]).unwrap();
    assert!(err.contains("exceeded quota: objs, requested: services.nodeports=1, used: services.nodeports=1, limited: services.nodeports=1"), "{err}");
    // Updates are charged for what they add: a ClusterIP service turned NodePort.
    c.ok(&["create", "service", "clusterip", "cip", "--tcp=80"]).unwrap();
    let err = c.fails(&["patch", "service", "cip", "-p", r#"{"spec":{"type":"NodePort"}}"#]).unwrap();
    assert!(err.contains(r#"services "cip" is forbidden: exceeded quota: objs, requested: services.nodeports=1, used: services.nodeports=1, limited: services.nodeports=1"#), "{err}");
    // Deletes release object counts too.
    c.ok(&["delete", "configmap", "one"]).unwrap();
    c.ok(&["delete", "deployment", "d1"]).unwrap();
    c.eventually(Duration::from_secs(20), "object counts released", || {
        let u = used(&c, "objs", "default");
        u["configmaps"] == "1" && u["count/deployments.apps"] == "0"
    })
    .unwrap();
    c.ok(&["create", "configmap", "two"]).unwrap();
}

#[test]
fn deployment_stops_at_the_quota_with_failed_create_events() {
    let c = cluster();
    c.ok(&["create", "namespace", "team"]).unwrap();
    c.ok(&["create", "quota", "pods", "-n", "team", "--hard=pods=2"]).unwrap();
    c.ok(&["create", "deployment", "web", "-n", "team", "--image=nginx", "--replicas=3"]).unwrap();
    c.eventually(Duration::from_secs(30), "FailedCreate event on the ReplicaSet", || {
        let ev = c.json(&["get", "events", "-n", "team", "--field-selector", "reason=FailedCreate"]).unwrap();
        ev["items"].as_array().unwrap().iter().any(|e| {
            let m = e["message"].as_str().unwrap_or("");
            e["involvedObject"]["kind"] == "ReplicaSet"
                && e["type"] == "Warning"
                && m.starts_with("Error creating: pods \"web-")
                && m.ends_with("is forbidden: exceeded quota: pods, requested: pods=1, used: pods=2, limited: pods=2")
        })
    })
    .unwrap();
    let pods = c.json(&["get", "pods", "-n", "team"]).unwrap();
    assert_eq!(pods["items"].as_array().unwrap().len(), 2, "{pods}");
    assert_eq!(described(&c, &["pods", "-n", "team"], "pods"), Some(("2".into(), "2".into())));
    let rs = c.ok(&["describe", "rs", "-n", "team"]).unwrap();
    assert!(rs.contains("FailedCreate") && rs.contains("exceeded quota: pods"), "{rs}");

    // A scoped quota only sees the pods its scope selects.
    c.ok(&["create", "namespace", "scoped"]).unwrap();
    c.ok(&["create", "quota", "be", "-n", "scoped", "--hard=pods=1", "--scopes=BestEffort"]).unwrap();
    c.ok(&["run", "be1", "-n", "scoped", "--image=nginx", "--restart=Never"]).unwrap();
    let err = c.fails(&["run", "be2", "-n", "scoped", "--image=nginx", "--restart=Never"]).unwrap();
    assert!(err.contains(r#"pods "be2" is forbidden: exceeded quota: be, requested: pods=1, used: pods=1, limited: pods=1"#), "{err}");
    let burstable = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"burst","namespace":"scoped"},"spec":{"containers":[{"name":"app","image":"nginx","resources":{"requests":{"cpu":"10m"}}}]}}"#;
    create(&c, burstable, &[]).unwrap();
    assert_eq!(used(&c, "be", "scoped")["pods"], "1");
}

const LIMITS: &str = r#"{"apiVersion":"v1","kind":"LimitRange","metadata":{"name":"limits"},"spec":{"limits":[
  {"type":"Container","default":{"cpu":"300m","memory":"128Mi"},"defaultRequest":{"cpu":"100m"},"max":{"cpu":"500m"}},
  {"type":"PersistentVolumeClaim","max":{"storage":"1Gi"}}]}}"#;

#[test]
fn limit_range_defaults_and_bounds() {
    let c = cluster();
    create(&c, LIMITS, &[]).unwrap();
    let lr = c.json(&["get", "limitrange", "limits"]).unwrap();
    // API defaulting: defaultRequest memory falls back to default.
    assert_eq!(lr["spec"]["limits"][0]["defaultRequest"]["memory"], "128Mi", "{lr}");

    let plain = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"plain"},"spec":{"containers":[{"name":"app","image":"nginx"}]}}"#;
    create(&c, plain, &[]).unwrap();
    let p = c.json(&["get", "pod", "plain"]).unwrap();
    let r = &p["spec"]["containers"][0]["resources"];
    assert_eq!(r["requests"], serde_json::json!({"cpu": "100m", "memory": "128Mi"}), "{p}");
    assert_eq!(r["limits"], serde_json::json!({"cpu": "300m", "memory": "128Mi"}), "{p}");
    assert_eq!(
        p["metadata"]["annotations"]["kubernetes.io/limit-ranger"],
        "LimitRanger plugin set: cpu, memory request for container app; cpu, memory limit for container app"
    );
    assert_eq!(p["status"]["qosClass"], "Burstable");

    let big = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"big"},"spec":{"containers":[{"name":"app","image":"nginx","resources":{"limits":{"cpu":"1"}}}]}}"#;
    let err = create(&c, big, &[]).unwrap_err();
    assert!(err.contains(r#"Error from server (Forbidden): error when creating "STDIN": pods "big" is forbidden: maximum cpu usage per Container is 500m, but limit is 1"#), "{err}");

    let claim = r#"{"apiVersion":"v1","kind":"PersistentVolumeClaim","metadata":{"name":"claim"},"spec":{"accessModes":["ReadWriteOnce"],"resources":{"requests":{"storage":"2Gi"}}}}"#;
    let err = create(&c, claim, &[]).unwrap_err();
    assert!(err.contains(r#"persistentvolumeclaims "claim" is forbidden: maximum storage usage per PersistentVolumeClaim is 1Gi, but request is 2Gi"#), "{err}");

    let d = c.ok(&["describe", "limitrange", "limits"]).unwrap();
    assert!(d.contains("Container") && d.contains("500m") && d.contains("300m"), "{d}");
}

#[test]
fn concurrent_creates_do_not_overshoot() {
    let c = cluster();
    c.ok(&["create", "namespace", "burst"]).unwrap();
    c.ok(&["create", "quota", "few", "-n", "burst", "--hard=pods=4,count/secrets=5"]).unwrap();
    // Twenty creates of each kind at once, while the controller recomputes on every change.
    let results: Vec<(bool, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..20)
            .flat_map(|i| {
                let c = &c;
                let secret = s.spawn(move || {
                    let out = c.kubectl(&["create", "secret", "generic", &format!("s{i}"), "-n", "burst", "--from-literal=a=b"]).unwrap();
                    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
                });
                let pod = s.spawn(move || {
                    let out = c.kubectl(&["run", &format!("p{i}"), "-n", "burst", "--image=nginx", "--restart=Never"]).unwrap();
                    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
                });
                [secret, pod]
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (ok, err) in &results {
        assert!(*ok || err.contains("is forbidden: exceeded quota: few"), "{err}");
    }
    let secrets = c.json(&["get", "secrets", "-n", "burst"]).unwrap()["items"].as_array().unwrap().len();
    let pods = c.json(&["get", "pods", "-n", "burst"]).unwrap()["items"].as_array().unwrap().len();
    assert_eq!((secrets, pods), (5, 4));
    assert_eq!(results.iter().filter(|(ok, _)| *ok).count(), 9);
    // The controller's recount agrees with what admission charged.
    c.eventually(Duration::from_secs(10), "recount", || {
        let u = used(&c, "few", "burst");
        u["pods"] == "4" && u["count/secrets"] == "5"
    })
    .unwrap();
}

/// Admission skips reading quotas and limit ranges in namespaces that hold none
/// (`admission::presence`); a policy must nonetheless bind from the moment its create is
/// acknowledged, stop binding once deleted, and bind again right after a restart.
#[test]
fn policies_bind_from_their_acknowledged_create() {
    let mut c = cluster();
    let refused = |c: &Cluster, ns: &str, name: &str| {
        let out = c.kubectl(&["create", "configmap", name, "-n", ns]).unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "configmap {ns}/{name} admitted past a zero quota");
        assert!(err.contains("exceeded quota: zero"), "{err}");
    };
    for i in 0..5 {
        let ns = format!("fresh{i}");
        c.ok(&["create", "namespace", &ns]).unwrap();
        // A create first, so the namespace is known to hold nothing.
        c.ok(&["create", "configmap", "before", "-n", &ns]).unwrap();
        c.ok(&["create", "quota", "zero", "--hard=configmaps=1", "-n", &ns]).unwrap();
        refused(&c, &ns, "after");
    }
    // Deleted: creates pass again once the deletion is seen.
    c.ok(&["delete", "quota", "zero", "-n", "fresh0"]).unwrap();
    c.eventually(Duration::from_secs(10), "a create past the deleted quota", || {
        c.kubectl(&["create", "configmap", "free", "-n", "fresh0"]).unwrap().status.success()
    })
    .unwrap();
    // LimitRange defaults apply to the very next pod.
    c.ok(&["create", "namespace", "ranged"]).unwrap();
    create(&c, &pod("first", "100m", "64Mi"), &["-n", "ranged"]).unwrap();
    let range = r#"{"apiVersion":"v1","kind":"LimitRange","metadata":{"name":"lr"},"spec":{"limits":[{"type":"Container","default":{"cpu":"300m"}}]}}"#;
    create(&c, range, &["-n", "ranged"]).unwrap();
    create(&c, &pod("second", "100m", "64Mi"), &["-n", "ranged"]).unwrap();
    let second = c.json(&["get", "pod", "second", "-n", "ranged"]).unwrap();
    assert_eq!(second["spec"]["containers"][0]["resources"]["limits"]["cpu"], "300m", "{second}");
    // After a restart the stored quotas are found again.
    c.restart().unwrap();
    refused(&c, "fresh1", "after-restart");
}
