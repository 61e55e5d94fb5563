//! The node agent running real containers, driven by the real kubectl: a deployment from a
//! locally imported image, scaling, pod replacement, a Job to completion, crash-loop
//! back-off, liveness and readiness probes, init containers in order, ConfigMap/Secret as
//! env and files, an OOM kill, and an agent crash that leaves pods running.
//!
//! Needs root (namespaces, cgroups, mounts) and busybox-static (the test image).

mod common;

use std::time::Duration;

use anyhow::Result;
use serde_json::Value;
use skiff_testkit::Cluster;

use common::IMAGE;

fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

fn node_cluster() -> Result<Cluster> {
    common::node_cluster(&[])
}

fn pod(cluster: &Cluster, name: &str) -> Value {
    cluster.json(&["get", "pod", name]).unwrap_or(Value::Null)
}

fn phase(cluster: &Cluster, name: &str) -> String {
    pod(cluster, name)["status"]["phase"].as_str().unwrap_or_default().to_string()
}

fn container_status(cluster: &Cluster, name: &str) -> Value {
    pod(cluster, name)["status"]["containerStatuses"][0].clone()
}

fn apply(cluster: &Cluster, manifest: &str) -> Result<()> {
    let out = cluster.kubectl_stdin(&["apply", "-f", "-"], manifest)?;
    anyhow::ensure!(out.status.success(), "apply failed: {}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}

#[test]
fn deployment_runs_scales_and_replaces_pods() -> Result<()> {
    if !is_root() {
        eprintln!("skipping: needs root");
        return Ok(());
    }
    let cluster = node_cluster()?;
    cluster.ok(&["create", "deployment", "web", "--image", IMAGE, "--", "sh", "-c", "echo started; sleep 3600"])?;
    cluster.ok(&["rollout", "status", "deployment/web", "--timeout=60s"])?;
    let pods = cluster.json(&["get", "pods", "-l", "app=web"])?;
    let first = &pods["items"][0];
    assert_eq!(first["status"]["phase"], "Running", "{first}");
    let cs = &first["status"]["containerStatuses"][0];
    assert_eq!(cs["ready"], true);
    assert_eq!(cs["restartCount"], 0);
    assert!(cs["containerID"].as_str().unwrap().starts_with("skiff://"), "{cs}");
    assert!(cs["state"]["running"]["startedAt"].is_string(), "{cs}");
    let conditions = first["status"]["conditions"].as_array().unwrap();
    for kind in ["PodScheduled", "Initialized", "ContainersReady", "Ready", "PodReadyToStartContainers"] {
        assert!(
            conditions.iter().any(|c| c["type"] == kind && c["status"] == "True"),
            "condition {kind} missing or false: {conditions:?}"
        );
    }
    assert_eq!(first["status"]["qosClass"], "BestEffort");

    cluster.ok(&["scale", "deployment/web", "--replicas=3"])?;
    cluster.ok(&["rollout", "status", "deployment/web", "--timeout=60s"])?;
    let names = cluster.ok(&["get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].metadata.name}"])?;
    let names: Vec<&str> = names.split_whitespace().collect();
    assert_eq!(names.len(), 3, "{names:?}");

    // Deleting a pod: the agent stops its container and the pod goes away; a new one replaces it.
    let victim = names[0].to_string();
    cluster.ok(&["delete", "pod", &victim, "--wait=true", "--timeout=60s"])?;
    cluster.eventually(Duration::from_secs(60), "a replacement pod to run", || {
        let out = cluster
            .ok(&["get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].status.phase}"])
            .unwrap_or_default();
        out.split_whitespace().filter(|p| *p == "Running").count() == 3
    })?;
    let after = cluster.ok(&["get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].metadata.name}"])?;
    assert!(!after.contains(&victim), "{after}");
    let events = cluster.ok(&["get", "events", "--field-selector", "reason=Started", "-o", "jsonpath={.items[*].source.component}"])?;
    assert!(events.contains("kubelet"), "{events}");
    Ok(())
}

#[test]
fn jobs_crash_loops_and_oom_kills_are_reported() -> Result<()> {
    if !is_root() {
        eprintln!("skipping: needs root");
        return Ok(());
    }
    let cluster = node_cluster()?;
    cluster.ok(&["create", "job", "once", "--image", IMAGE, "--", "sh", "-c", "echo done"])?;
    cluster.ok(&["wait", "--for=condition=complete", "job/once", "--timeout=60s"])?;
    let job_pod = cluster.ok(&["get", "pods", "-l", "job-name=once", "-o", "jsonpath={.items[0].metadata.name}"])?;
    assert_eq!(phase(&cluster, &job_pod), "Succeeded");
    let cs = container_status(&cluster, &job_pod);
    assert_eq!(cs["state"]["terminated"]["exitCode"], 0, "{cs}");
    assert_eq!(cs["state"]["terminated"]["reason"], "Completed", "{cs}");

    apply(
        &cluster,
        &format!(
            r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "crasher"}},
                "spec": {{"containers": [{{"name": "c", "image": "{IMAGE}", "command": ["sh", "-c", "exit 3"]}}]}}}}"#
        ),
    )?;
    cluster.eventually(Duration::from_secs(60), "crasher to be in CrashLoopBackOff", || {
        let cs = container_status(&cluster, "crasher");
        cs["restartCount"].as_i64().unwrap_or(0) >= 1 && cs["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    })?;
    let cs = container_status(&cluster, "crasher");
    assert_eq!(cs["lastState"]["terminated"]["exitCode"], 3, "{cs}");
    assert_eq!(phase(&cluster, "crasher"), "Running");

    apply(
        &cluster,
        &format!(
            r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "hog"}},
                "spec": {{"restartPolicy": "Never", "containers": [{{"name": "c", "image": "{IMAGE}",
                  "command": ["dd", "if=/dev/zero", "of=/dev/null", "bs=128M", "count=1"],
                  "resources": {{"limits": {{"memory": "16Mi"}}}}}}]}}}}"#
        ),
    )?;
    cluster.eventually(Duration::from_secs(60), "hog to fail", || phase(&cluster, "hog") == "Failed")?;
    let cs = container_status(&cluster, "hog");
    assert_eq!(cs["state"]["terminated"]["reason"], "OOMKilled", "{cs}");
    assert_eq!(cs["state"]["terminated"]["exitCode"], 137, "{cs}");

    // An idle pod sleeps until its container's exit wakes it (it no longer polls each
    // second, and only resyncs fully every 10 s): the exit must still be reported at once.
    apply(
        &cluster,
        &format!(
            r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "quitter"}},
                "spec": {{"restartPolicy": "Never", "containers": [{{"name": "c", "image": "{IMAGE}",
                  "command": ["sh", "-c", "sleep 3; exit 4"]}}]}}}}"#
        ),
    )?;
    cluster.ok(&["wait", "--for=condition=Ready", "pod/quitter", "--timeout=60s"])?;
    cluster.eventually(Duration::from_secs(60), "quitter to fail", || phase(&cluster, "quitter") == "Failed")?;
    let seen = std::time::SystemTime::now();
    let cs = container_status(&cluster, "quitter");
    assert_eq!(cs["state"]["terminated"]["exitCode"], 4, "{cs}");
    let finished: std::time::SystemTime = cs["state"]["terminated"]["finishedAt"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(std::time::SystemTime::from)
        .expect("finishedAt");
    let late = seen.duration_since(finished).unwrap_or_default();
    assert!(late < Duration::from_secs(5), "the exit was reported {late:?} after it happened: {cs}");
    Ok(())
}

#[test]
fn probes_init_containers_and_config_reach_containers() -> Result<()> {
    if !is_root() {
        eprintln!("skipping: needs root");
        return Ok(());
    }
    let cluster = node_cluster()?;
    // Liveness: a probe that always fails restarts the container.
    apply(
        &cluster,
        &format!(
            r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "unhealthy"}},
                "spec": {{"containers": [{{"name": "c", "image": "{IMAGE}", "command": ["sleep", "3600"],
                  "livenessProbe": {{"exec": {{"command": ["false"]}}, "periodSeconds": 1, "failureThreshold": 1}}}}]}}}}"#
        ),
    )?;
    // Readiness: ready only once the file exists.
    apply(
        &cluster,
        &format!(
            r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "slow"}},
                "spec": {{"containers": [{{"name": "c", "image": "{IMAGE}", "command": ["sh", "-c", "sleep 4; touch /tmp/ready; sleep 3600"],
                  "readinessProbe": {{"exec": {{"command": ["cat", "/tmp/ready"]}}, "periodSeconds": 1}}}}]}}}}"#
        ),
    )?;
    // Init containers run in order and share an emptyDir with the main container; config
    // from a ConfigMap and a Secret arrives as env and files.
    cluster.ok(&["create", "configmap", "settings", "--from-literal=greeting=hi", "--from-literal=key=value"])?;
    cluster.ok(&["create", "secret", "generic", "creds", "--from-literal=password=s3cret"])?;
    apply(
        &cluster,
        &format!(
            r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "ordered"}},
                "spec": {{"restartPolicy": "Never",
                  "volumes": [{{"name": "work", "emptyDir": {{}}}}, {{"name": "cfg", "configMap": {{"name": "settings"}}}},
                              {{"name": "sec", "secret": {{"secretName": "creds"}}}}],
                  "initContainers": [
                    {{"name": "one", "image": "{IMAGE}", "command": ["sh", "-c", "echo -n 1 >> /work/order"], "volumeMounts": [{{"name": "work", "mountPath": "/work"}}]}},
                    {{"name": "two", "image": "{IMAGE}", "command": ["sh", "-c", "echo -n 2 >> /work/order"], "volumeMounts": [{{"name": "work", "mountPath": "/work"}}]}}],
                  "containers": [{{"name": "main", "image": "{IMAGE}",
                    "command": ["sh", "-c", "test \"$(cat /work/order)\" = 12 && test \"$GREETING\" = hi && test \"$(cat /cfg/key)\" = value && test \"$(cat /sec/password)\" = s3cret && test \"$PASSWORD\" = s3cret && sleep 3600"],
                    "env": [{{"name": "GREETING", "valueFrom": {{"configMapKeyRef": {{"name": "settings", "key": "greeting"}}}}}},
                            {{"name": "PASSWORD", "valueFrom": {{"secretKeyRef": {{"name": "creds", "key": "password"}}}}}}],
                    "volumeMounts": [{{"name": "work", "mountPath": "/work"}}, {{"name": "cfg", "mountPath": "/cfg"}}, {{"name": "sec", "mountPath": "/sec"}}]}}]}}}}"#
        ),
    )?;
    cluster.eventually(Duration::from_secs(60), "the liveness probe to restart the container", || {
        container_status(&cluster, "unhealthy")["restartCount"].as_i64().unwrap_or(0) >= 1
    })?;
    let ready = |c: &Cluster| container_status(c, "slow")["ready"] == true;
    cluster.eventually(Duration::from_secs(30), "slow to run", || phase(&cluster, "slow") == "Running")?;
    let early = ready(&cluster);
    cluster.eventually(Duration::from_secs(30), "slow to become ready", || ready(&cluster))?;
    assert!(!early || container_status(&cluster, "slow")["restartCount"] == 0);
    cluster.eventually(Duration::from_secs(60), "ordered to run", || {
        let p = phase(&cluster, "ordered");
        assert_ne!(p, "Failed", "main container's checks failed: {}", pod(&cluster, "ordered")["status"]);
        p == "Running"
    })?;
    let init = &pod(&cluster, "ordered")["status"]["initContainerStatuses"];
    assert_eq!(init[0]["state"]["terminated"]["exitCode"], 0, "{init}");
    assert_eq!(init[1]["state"]["terminated"]["exitCode"], 0, "{init}");
    Ok(())
}

#[test]
fn pods_keep_running_across_an_agent_crash() -> Result<()> {
    if !is_root() {
        eprintln!("skipping: needs root");
        return Ok(());
    }
    let mut cluster = node_cluster()?;
    apply(
        &cluster,
        &format!(
            r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "steady"}},
                "spec": {{"containers": [{{"name": "c", "image": "{IMAGE}", "command": ["sleep", "3600"]}}]}}}}"#
        ),
    )?;
    cluster.eventually(Duration::from_secs(60), "steady to run", || phase(&cluster, "steady") == "Running")?;
    let before = container_status(&cluster, "steady");
    cluster.kill()?; // SIGKILL the server and its agent
    cluster.restart()?;
    cluster.eventually(Duration::from_secs(30), "the node to be Ready again", || {
        cluster
            .ok(&["get", "nodes", "-o", "jsonpath={.items[0].status.conditions[?(@.type==\"Ready\")].status}"])
            .is_ok_and(|s| s == "True")
    })?;
    std::thread::sleep(Duration::from_secs(3));
    cluster.eventually(Duration::from_secs(30), "steady to be reported Running", || phase(&cluster, "steady") == "Running")?;
    let after = container_status(&cluster, "steady");
    assert_eq!(after["containerID"], before["containerID"], "the container was replaced: {after}");
    assert_eq!(after["restartCount"], 0, "{after}");
    assert_eq!(after["state"]["running"]["startedAt"], before["state"]["running"]["startedAt"]);
    // Deleting it after the restart still stops it and removes it.
    cluster.ok(&["delete", "pod", "steady", "--timeout=60s"])?;
    Ok(())
}

#[test]
fn logs_exec_cp_and_port_forward_reach_real_containers() -> Result<()> {
    if !is_root() {
        eprintln!("skipping: needs root");
        return Ok(());
    }
    let cluster = node_cluster()?;
    apply(
        &cluster,
        &format!(
            r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "web"}},
                "spec": {{"containers": [{{"name": "c", "image": "{IMAGE}",
                  "command": ["sh", "-c", "echo line1; echo line2; echo hello-web > /var/www/index.html; exec httpd -f -p 8080 -h /var/www"]}}]}}}}"#
        ),
    )?;
    cluster.eventually(Duration::from_secs(60), "web to run", || phase(&cluster, "web") == "Running")?;
    cluster.eventually(Duration::from_secs(10), "web's logs", || cluster.ok(&["logs", "web"]).is_ok_and(|l| l.contains("line2")))?;
    assert_eq!(cluster.ok(&["logs", "web", "--tail=1"])?.trim(), "line2");
    assert_eq!(cluster.ok(&["exec", "web", "--", "cat", "/var/www/index.html"])?.trim(), "hello-web");
    let out = cluster.kubectl(&["exec", "web", "--", "sh", "-c", "exit 3"])?;
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    let out = cluster.kubectl_stdin(&["exec", "-i", "web", "--", "cat"], "through stdin\n")?;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "through stdin\n");

    // kubectl cp needs tar in the container: both directions.
    let local = cluster.data_dir().join("upload.txt");
    std::fs::write(&local, "copied in\n")?;
    if let Err(e) = cluster.ok(&["cp", local.to_str().unwrap(), "web:/tmp/upload.txt"]) {
        let log = cluster.log();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        panic!("{e}\nstatus: {}\nlog:\n{}", pod(&cluster, "web")["status"], tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
    }
    assert_eq!(cluster.ok(&["exec", "web", "--", "cat", "/tmp/upload.txt"])?, "copied in\n");
    let back = cluster.data_dir().join("download.txt");
    cluster.ok(&["cp", "web:/tmp/upload.txt", back.to_str().unwrap()])?;
    assert_eq!(std::fs::read_to_string(&back)?, "copied in\n");

    // port-forward: an HTTP request through the tunnel reaches httpd inside the pod.
    let mut child = std::process::Command::new(skiff_testkit::kubectl_path(33).expect("kubectl 1.33"))
        .args(["--kubeconfig", cluster.kubeconfig().to_str().unwrap(), "port-forward", "pod/web", "0:8080"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let result = (|| -> Result<String> {
        use std::io::{BufRead, Read, Write};
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().transpose()?.unwrap_or_default();
        let port: u16 = first
            .split("127.0.0.1:")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("unexpected port-forward output: {first}"))?;
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.write_all(b"GET /index.html HTTP/1.0\r\nHost: x\r\n\r\n")?;
        let mut body = String::new();
        s.read_to_string(&mut body)?;
        Ok(body)
    })();
    let _ = child.kill();
    let _ = child.wait();
    let body = result?;
    assert!(body.contains("hello-web"), "{body}");
    Ok(())
}

/// The course's multi-container pod: a one-shot writer that crash-loops, a looping writer, and
/// a web server sharing one emptyDir, read over localhost; and a hostPath pod writing to the
/// node's filesystem.
#[test]
fn course_emptydir_pod_and_host_path_pod() -> Result<()> {
    if !is_root() {
        eprintln!("skipping: needs root");
        return Ok(());
    }
    let cluster = node_cluster()?;
    apply(
        &cluster,
        &format!(
            r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "shared"}},
                "spec": {{"terminationGracePeriodSeconds": 1,
                  "volumes": [{{"name": "html", "emptyDir": {{}}}}],
                  "containers": [
                    {{"name": "once", "image": "{IMAGE}", "command": ["sh", "-c", "echo once >> /html/index.html"],
                      "volumeMounts": [{{"name": "html", "mountPath": "/html"}}]}},
                    {{"name": "loop", "image": "{IMAGE}", "command": ["sh", "-c", "while true; do echo tick >> /html/index.html; sleep 1; done"],
                      "volumeMounts": [{{"name": "html", "mountPath": "/html"}}]}},
                    {{"name": "web", "image": "{IMAGE}", "command": ["httpd", "-f", "-p", "8080", "-h", "/usr/share/web"],
                      "volumeMounts": [{{"name": "html", "mountPath": "/usr/share/web", "readOnly": true}}]}}]}}}}"#
        ),
    )?;
    let status_of = |name: &str| -> Value {
        let statuses = pod(&cluster, "shared")["status"]["containerStatuses"].clone();
        statuses.as_array().into_iter().flatten().find(|s| s["name"] == name).cloned().unwrap_or(Value::Null)
    };
    cluster.eventually(Duration::from_secs(90), "the one-shot writer to crash-loop", || {
        let once = status_of("once");
        once["restartCount"].as_i64().unwrap_or(0) >= 1 && once["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    })?;
    let once = status_of("once");
    assert_eq!(once["lastState"]["terminated"]["reason"], "Completed", "{once}");
    assert!(status_of("loop")["state"]["running"].is_object(), "{}", status_of("loop"));
    assert_eq!(status_of("loop")["restartCount"], 0);
    // The web container serves what both writers put in the shared volume, over localhost.
    let page = |c: &Cluster| c.ok(&["exec", "shared", "-c", "web", "--", "wget", "-q", "-O", "-", "http://localhost:8080/"]).unwrap_or_default();
    let first = page(&cluster);
    assert!(first.lines().any(|l| l == "once") && first.lines().any(|l| l == "tick"), "{first}");
    cluster.eventually(Duration::from_secs(10), "the looping writer to keep writing", || {
        page(&cluster).lines().filter(|l| *l == "tick").count() > first.lines().filter(|l| *l == "tick").count()
    })?;
    // The read-only mount refuses writes.
    let out = cluster.kubectl(&["exec", "shared", "-c", "web", "--", "sh", "-c", "echo x >> /usr/share/web/index.html"])?;
    assert!(!out.status.success(), "write through a readOnly mount succeeded");

    // hostPath: Directory must exist (the pod fails to start otherwise), DirectoryOrCreate makes it.
    let host_dir = cluster.data_dir().join("host-data");
    std::fs::create_dir_all(&host_dir)?;
    let made = cluster.data_dir().join("made-by-kubelet");
    apply(
        &cluster,
        &format!(
            r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "hostpath"}},
                "spec": {{"restartPolicy": "Never",
                  "volumes": [{{"name": "data", "hostPath": {{"path": "{}", "type": "Directory"}}}},
                              {{"name": "made", "hostPath": {{"path": "{}", "type": "DirectoryOrCreate"}}}}],
                  "containers": [{{"name": "c", "image": "{IMAGE}", "command": ["sh", "-c", "echo from-pod > /data/out.txt && touch /made/x"],
                    "volumeMounts": [{{"name": "data", "mountPath": "/data"}}, {{"name": "made", "mountPath": "/made"}}]}}]}}}}"#,
            host_dir.display(),
            made.display()
        ),
    )?;
    cluster.eventually(Duration::from_secs(60), "the hostPath pod to succeed", || phase(&cluster, "hostpath") == "Succeeded")?;
    assert_eq!(std::fs::read_to_string(host_dir.join("out.txt"))?.trim(), "from-pod");
    assert!(made.join("x").exists());
    Ok(())
}
