//! Node agent pod features driven through the real kubectl: static pods from
//! `<data-dir>/manifests` with their mirror pods, `activeDeadlineSeconds`, and eviction
//! under (made-up) memory pressure.
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

fn node_cluster(extra: &[&str]) -> Result<Cluster> {
    common::node_cluster(extra)
}

fn node_name(cluster: &Cluster) -> Result<String> {
    cluster.ok(&["get", "nodes", "-o", "jsonpath={.items[0].metadata.name}"])
}

fn pod(cluster: &Cluster, name: &str) -> Value {
    cluster.json(&["get", "pod", name]).unwrap_or(Value::Null)
}

fn apply(cluster: &Cluster, manifest: &str) -> Result<()> {
    let out = cluster.kubectl_stdin(&["apply", "-f", "-"], manifest)?;
    anyhow::ensure!(out.status.success(), "apply failed: {}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}

/// Whether a process whose command line contains `needle` runs on this machine.
fn process_running(needle: &str) -> bool {
    std::fs::read_dir("/proc").into_iter().flatten().flatten().any(|e| {
        std::fs::read(e.path().join("cmdline"))
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " ").contains(needle))
            .unwrap_or(false)
    })
}

#[test]
fn static_pods_run_from_manifests_with_mirror_pods() -> Result<()> {
    if !is_root() {
        eprintln!("skipping: needs root");
        return Ok(());
    }
    let cluster = node_cluster(&[])?;
    let node = node_name(&cluster)?;
    let manifests = cluster.data_dir().join("manifests");
    std::fs::create_dir_all(&manifests)?;
    let mirror = format!("web-{node}");
    // A marker in the command line tells this pod's process apart from everyone else's.
    let manifest = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  labels:\n    tier: static\nspec:\n  containers:\n  - name: c\n    image: {IMAGE}\n    command: [sh, -c, 'sleep 36017']\n"
    );
    std::fs::write(manifests.join("web.yaml"), &manifest)?;

    cluster.eventually(Duration::from_secs(60), "the mirror pod to show the static pod running", || {
        let p = pod(&cluster, &mirror);
        p["status"]["phase"] == "Running" && p["status"]["containerStatuses"][0]["ready"] == true
    })?;
    let p = pod(&cluster, &mirror);
    let ann = &p["metadata"]["annotations"];
    assert_eq!(ann["kubernetes.io/config.source"], "file", "{p}");
    let hash = ann["kubernetes.io/config.hash"].as_str().unwrap_or_default().to_string();
    assert_eq!(hash.len(), 32, "{p}");
    assert_eq!(ann["kubernetes.io/config.mirror"], hash.as_str(), "{p}");
    let owner = &p["metadata"]["ownerReferences"][0];
    assert_eq!((owner["kind"].as_str(), owner["name"].as_str(), owner["controller"].as_bool()), (Some("Node"), Some(node.as_str()), Some(true)), "{p}");
    assert_eq!(p["spec"]["nodeName"], node.as_str());
    assert_eq!(p["metadata"]["labels"]["tier"], "static");
    assert!(p["spec"]["volumes"].as_array().is_none_or(|v| v.is_empty()), "no service account token in a mirror pod: {p}");
    let container_id = p["status"]["containerStatuses"][0]["containerID"].as_str().unwrap_or_default().to_string();
    assert!(container_id.starts_with("skiff://"), "{p}");
    assert!(process_running("sleep 36017"));

    // Deleting the mirror pod through the API: it comes back, the static pod keeps running.
    let first_uid = p["metadata"]["uid"].as_str().unwrap_or_default().to_string();
    cluster.ok(&["delete", "pod", &mirror, "--wait=false"])?;
    cluster.eventually(Duration::from_secs(60), "a new mirror pod with the same running container", || {
        let p = pod(&cluster, &mirror);
        p["metadata"]["uid"].as_str().is_some_and(|u| u != first_uid)
            && p["metadata"]["deletionTimestamp"].is_null()
            && p["status"]["phase"] == "Running"
            && p["status"]["containerStatuses"][0]["containerID"] == container_id.as_str()
    })?;
    let p = pod(&cluster, &mirror);
    assert_eq!(p["status"]["containerStatuses"][0]["restartCount"], 0, "{p}");

    // Editing the manifest makes a new pod (a new hash), mirrored again.
    std::fs::write(manifests.join("web.yaml"), manifest.replace("tier: static", "tier: edited"))?;
    cluster.eventually(Duration::from_secs(60), "the edited static pod to be mirrored", || {
        let p = pod(&cluster, &mirror);
        p["metadata"]["labels"]["tier"] == "edited"
            && p["metadata"]["annotations"]["kubernetes.io/config.hash"].as_str().is_some_and(|h| h != hash)
            && p["status"]["phase"] == "Running"
    })?;

    // Removing the file stops the pod and deletes the mirror.
    std::fs::remove_file(manifests.join("web.yaml"))?;
    cluster.eventually(Duration::from_secs(60), "the mirror pod to go", || {
        cluster.fails(&["get", "pod", &mirror]).is_ok_and(|e| e.contains("NotFound"))
    })?;
    cluster.eventually(Duration::from_secs(30), "the static pod's process to end", || !process_running("sleep 36017"))?;
    std::thread::sleep(Duration::from_secs(3));
    assert!(cluster.fails(&["get", "pod", &mirror]).is_ok(), "the mirror pod must not come back");
    Ok(())
}

#[test]
fn active_deadline_fails_the_pod_and_stops_its_containers() -> Result<()> {
    if !is_root() {
        eprintln!("skipping: needs root");
        return Ok(());
    }
    let cluster = node_cluster(&[])?;
    apply(
        &cluster,
        &format!(
            r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "deadline"}},
                "spec": {{"activeDeadlineSeconds": 4, "terminationGracePeriodSeconds": 2,
                  "containers": [{{"name": "c", "image": "{IMAGE}", "command": ["sh", "-c", "sleep 36018"]}}]}}}}"#
        ),
    )?;
    cluster.eventually(Duration::from_secs(60), "the pod to fail with DeadlineExceeded", || {
        let p = pod(&cluster, "deadline");
        p["status"]["phase"] == "Failed" && p["status"]["reason"] == "DeadlineExceeded"
    })?;
    let p = pod(&cluster, "deadline");
    assert_eq!(p["status"]["message"], "Pod was active on the node longer than the specified deadline", "{p}");
    assert!(p["status"]["containerStatuses"][0]["state"]["terminated"].is_object(), "{p}");
    cluster.eventually(Duration::from_secs(20), "the container's process to end", || !process_running("sleep 36018"))?;
    let events = cluster.ok(&["get", "events", "--field-selector", "involvedObject.name=deadline", "-o", "jsonpath={.items[*].reason}"])?;
    assert!(events.contains("DeadlineExceeded"), "{events}");
    Ok(())
}

#[test]
fn memory_pressure_evicts_pods() -> Result<()> {
    if !is_root() {
        eprintln!("skipping: needs root");
        return Ok(());
    }
    // A threshold no machine meets: the node is under memory pressure from the start.
    let cluster = node_cluster(&["--eviction-hard", "memory.available<1000Gi"])?;
    let node = node_name(&cluster)?;
    cluster.eventually(Duration::from_secs(40), "MemoryPressure and its taint", || {
        let n = cluster.json(&["get", "node", &node]).unwrap_or(Value::Null);
        let pressure = n["status"]["conditions"].as_array().into_iter().flatten().any(|c| {
            c["type"] == "MemoryPressure" && c["status"] == "True" && c["reason"] == "KubeletHasInsufficientMemory"
        });
        let tainted = n["spec"]["taints"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|t| t["key"] == "node.kubernetes.io/memory-pressure" && t["effect"] == "NoSchedule");
        pressure && tainted
    })?;
    let n = cluster.json(&["get", "node", &node])?;
    let disk = n["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "DiskPressure").cloned().unwrap_or_default();
    assert_eq!(disk["status"], "False", "only the memory threshold was set: {n}");

    // Bound to the node directly, as the taint keeps the scheduler away. A BestEffort pod
    // is refused under memory pressure; a Burstable one runs until it is evicted.
    let manifest = |name: &str, resources: &str| {
        format!(
            r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "{name}"}},
                "spec": {{"nodeName": "{node}", "terminationGracePeriodSeconds": 1,
                  "containers": [{{"name": "c", "image": "{IMAGE}", "command": ["sh", "-c", "sleep 3600"]{resources}}}]}}}}"#
        )
    };
    apply(&cluster, &manifest("besteffort", ""))?;
    cluster.eventually(Duration::from_secs(40), "the BestEffort pod to be Failed/Evicted", || {
        let p = pod(&cluster, "besteffort");
        p["status"]["phase"] == "Failed" && p["status"]["reason"] == "Evicted"
    })?;
    let p = pod(&cluster, "besteffort");
    assert_eq!(p["status"]["message"], "Pod was rejected: The node had condition: [MemoryPressure]. ", "{p}");

    apply(&cluster, &manifest("burstable", r#", "resources": {"requests": {"memory": "1Mi"}}"#))?;
    cluster.eventually(Duration::from_secs(60), "the Burstable pod to be evicted", || {
        let p = pod(&cluster, "burstable");
        p["status"]["phase"] == "Failed" && p["status"]["reason"] == "Evicted"
    })?;
    let p = pod(&cluster, "burstable");
    let message = p["status"]["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("The node was low on resource: memory. Threshold quantity: 1000Gi, available: "), "{p}");
    let disruption = p["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "DisruptionTarget").cloned().unwrap_or_default();
    assert_eq!((disruption["status"].as_str(), disruption["reason"].as_str()), (Some("True"), Some("TerminationByKubelet")), "{p}");
    assert!(p["status"]["containerStatuses"][0]["state"]["terminated"].is_object(), "{p}");
    let events = cluster.ok(&["get", "events", "--field-selector", "involvedObject.name=burstable,reason=Evicted", "-o", "jsonpath={.items[*].type}"])?;
    assert!(events.contains("Warning"), "{events}");
    Ok(())
}

/// Kills the agent process and removes its containers, even when the test fails.
struct Agent {
    child: std::process::Child,
    data_dir: std::path::PathBuf,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::process::Command::new(common::skiff_binary())
            .args(["killall", "--data-dir"])
            .arg(&self.data_dir)
            .output();
    }
}

#[test]
fn static_pods_run_while_the_api_server_is_down() -> Result<()> {
    if !is_root() {
        eprintln!("skipping: needs root");
        return Ok(());
    }
    // A cluster that existed once: its kubeconfig now points at nothing.
    let mut cluster = Cluster::start(common::skiff_binary())?;
    let dir = tempfile::Builder::new().prefix("skiff-e2e-offline-").tempdir()?;
    let kubeconfig = dir.path().join("kubeconfig.yaml");
    std::fs::copy(cluster.kubeconfig(), &kubeconfig)?;
    cluster.stop()?;

    let data_dir = dir.path().join("data");
    let manifests = data_dir.join("manifests");
    std::fs::create_dir_all(&manifests)?;
    let archive = dir.path().join("busybox.tar");
    skiff_testkit::images::write_busybox_archive(&archive, IMAGE);
    let out = std::process::Command::new(common::skiff_binary())
        .args(["image", "import", "--data-dir"])
        .arg(&data_dir)
        .arg(&archive)
        .output()?;
    anyhow::ensure!(out.status.success(), "image import: {}", String::from_utf8_lossy(&out.stderr));
    std::fs::write(
        manifests.join("offline.yaml"),
        format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: offline\nspec:\n  terminationGracePeriodSeconds: 2\n  containers:\n  - name: c\n    image: {IMAGE}\n    command: [sh, -c, 'sleep 36019']\n"),
    )?;
    let log = std::fs::File::create(dir.path().join("agent.log"))?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let child = std::process::Command::new(common::skiff_binary())
        .args(["agent", "--kubeconfig"])
        .arg(&kubeconfig)
        .arg("--data-dir")
        .arg(&data_dir)
        .args(["--node-name", "offline-node", "--flannel-backend", "none", "--kubelet-healthz-port", "0"])
        .args(["--kubelet-port", &port.to_string(), "--eviction-hard", "memory.available<1Mi"])
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?;
    let _agent = Agent { child, data_dir: data_dir.clone() };
    let start = std::time::Instant::now();
    while !process_running("sleep 36019") {
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(60),
            "the static pod did not start without an API server; agent log:\n{}",
            std::fs::read_to_string(dir.path().join("agent.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Removing the manifest stops it, still without an API server.
    std::fs::remove_file(manifests.join("offline.yaml"))?;
    let start = std::time::Instant::now();
    while process_running("sleep 36019") {
        anyhow::ensure!(start.elapsed() < Duration::from_secs(60), "the static pod did not stop");
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}
