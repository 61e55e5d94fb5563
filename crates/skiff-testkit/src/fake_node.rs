//! A fake node for control-plane tests: a Node object with capacity and a Ready condition, a
//! Lease heartbeat, and a fake kubelet that marks pods bound to it Running and Ready (or
//! Succeeded for run-to-completion pods), removes pods being deleted, and can fail pods on
//! request (the [`FAIL_FIRST`] annotation). It runs its own async runtime on a background
//! thread until dropped.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use kube::ResourceExt;
use serde_json::json;

/// Pod annotation asking the fake kubelet to fail run-to-completion pods: with value `N`, the
/// first N such pods of the same owner (say, a Job's first N attempts) that this node runs
/// end `Failed` with exit code 1 instead of `Succeeded`.
pub const FAIL_FIRST: &str = "fake-kubelet.skiff.dev/fail-first";

/// Pod annotation making the fake kubelet take this many milliseconds to finish a pod being
/// deleted (as a real kubelet runs containers through their grace period); 0 by default.
pub const TERMINATING_MS: &str = "fake-kubelet.skiff.dev/terminating-ms";

/// What a fake node offers the scheduler.
#[derive(Clone, Debug)]
pub struct Capacity {
    /// CPU quantity, such as `4`.
    pub cpu: String,
    /// Memory quantity, such as `8Gi`.
    pub memory: String,
}

impl Default for Capacity {
    fn default() -> Self {
        Self { cpu: "4".into(), memory: "8Gi".into() }
    }
}

/// A running fake node.
pub struct FakeNode {
    /// Node name.
    pub name: String,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeNode {
    /// Register node `name` (4 CPUs, 8 GiB, 110 pods) with the cluster of `kubeconfig` and
    /// start its fake kubelet.
    pub fn start(kubeconfig: &Path, name: &str) -> anyhow::Result<Self> {
        Self::start_with(kubeconfig, name, Capacity::default())
    }

    /// Like [`FakeNode::start`], with the given CPU and memory (capacity and allocatable).
    pub fn start_with(kubeconfig: &Path, name: &str, capacity: Capacity) -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let kc = kubeconfig.to_path_buf();
        let node_name = name.to_string();
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let client = match client(&kc).await {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                if let Err(e) = register(&client, &node_name, &capacity).await {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
                let _ = ready_tx.send(Ok(()));
                let kubelet = tokio::spawn(kubelet(client.clone(), node_name.clone()));
                let heartbeat = tokio::spawn(heartbeat(client, node_name));
                while !stop2.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                kubelet.abort();
                heartbeat.abort();
            });
        });
        ready_rx.recv_timeout(Duration::from_secs(20))??;
        Ok(Self { name: name.to_string(), stop, thread: Some(thread) })
    }
}

impl Drop for FakeNode {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn client(kubeconfig: &Path) -> anyhow::Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    Ok(kube::Client::try_from(cfg)?)
}

async fn register(client: &kube::Client, name: &str, capacity: &Capacity) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}},
        "spec": {},
    }))?;
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    let status = json!({"status": {
        "capacity": {"cpu": capacity.cpu, "memory": capacity.memory, "pods": "110", "ephemeral-storage": "50Gi"},
        "allocatable": {"cpu": capacity.cpu, "memory": capacity.memory, "pods": "110", "ephemeral-storage": "50Gi"},
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "fake kubelet is posting ready status", "lastHeartbeatTime": now, "lastTransitionTime": now}],
        "addresses": [{"type": "InternalIP", "address": "192.0.2.10"}, {"type": "Hostname", "address": name}],
        "nodeInfo": {"kubeletVersion": "v1.33.0-fake", "containerRuntimeVersion": "fake://1", "osImage": "fake", "kernelVersion": "fake", "operatingSystem": "linux", "architecture": "amd64", "machineID": "", "systemUUID": "", "bootID": "", "kubeProxyVersion": ""},
    }});
    nodes.patch_status(name, &PatchParams::default(), &Patch::Merge(&status)).await?;
    Ok(())
}

async fn heartbeat(client: kube::Client, name: String) {
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(client, "kube-node-lease");
    loop {
        let now = k8s_openapi::jiff::Timestamp::now().to_string();
        let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": name, "namespace": "kube-node-lease"}, "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": now}});
        let _ = leases.patch(&name, &PatchParams::apply("fake-kubelet").force(), &Patch::Apply(&lease)).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

async fn kubelet(client: kube::Client, node: String) {
    // Distinct pod IPs per node, like a real node's pod CIDR.
    let subnet = node.bytes().fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(b as u32)) % 250;
    let mut next_ip = 2u32;
    let mut failures = Failures::default();
    let pods: Api<Pod> = Api::all(client.clone());
    let cfg = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
    let mut stream = watcher::watcher(pods, cfg).applied_objects().default_backoff().boxed();
    while let Some(ev) = stream.next().await {
        let Ok(pod) = ev else { continue };
        let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
        if pod.metadata.deletion_timestamp.is_some() {
            let delay = pod.annotations().get(TERMINATING_MS).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            let name = pod.name_any();
            // Each event of a terminating pod schedules the final delete again; the later
            // ones find it gone.
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(delay)).await;
                let _ = api.delete(&name, &DeleteParams::default().grace_period(0)).await;
            });
            continue;
        }
        let phase = pod.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
        if phase != "Pending" && !phase.is_empty() {
            continue;
        }
        let restart = pod.spec.as_ref().and_then(|s| s.restart_policy.clone()).unwrap_or_else(|| "Always".into());
        let fail = restart != "Always" && should_fail(&pod, &mut failures);
        let now = k8s_openapi::jiff::Timestamp::now().to_string();
        let containers: Vec<serde_json::Value> = pod
            .spec
            .iter()
            .flat_map(|s| s.containers.iter())
            .map(|c| {
                let state = if restart == "Always" {
                    json!({"running": {"startedAt": now}})
                } else if fail {
                    json!({"terminated": {"exitCode": 1, "reason": "Error", "startedAt": now, "finishedAt": now}})
                } else {
                    json!({"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": now, "finishedAt": now}})
                };
                json!({"name": c.name, "image": c.image, "imageID": "", "ready": restart == "Always", "started": restart == "Always", "restartCount": 0, "state": state})
            })
            .collect();
        let ready = if restart == "Always" { "True" } else { "False" };
        let ip = format!("10.42.{subnet}.{next_ip}");
        next_ip = if next_ip >= 254 { 2 } else { next_ip + 1 };
        let status = json!({"status": {
            "phase": if restart == "Always" { "Running" } else if fail { "Failed" } else { "Succeeded" },
            "hostIP": "192.0.2.10", "podIP": ip, "podIPs": [{"ip": ip}], "startTime": now,
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
                {"type": "Initialized", "status": "True", "lastTransitionTime": now},
                {"type": "ContainersReady", "status": ready, "lastTransitionTime": now},
                {"type": "Ready", "status": ready, "lastTransitionTime": now},
            ],
            "containerStatuses": containers,
        }});
        let _ = api.patch_status(&pod.name_any(), &PatchParams::default(), &Patch::Merge(&status)).await;
    }
}

/// What FAIL_FIRST decided: runs counted per owner uid, and the verdict per pod uid (so a pod
/// seen twice while still Pending is neither counted twice nor judged differently).
#[derive(Default)]
struct Failures {
    runs: std::collections::HashMap<String, u32>,
    verdicts: std::collections::HashMap<String, bool>,
}

/// Whether this run-to-completion pod is one of the first N of its owner that FAIL_FIRST asks
/// to fail.
fn should_fail(pod: &Pod, failures: &mut Failures) -> bool {
    let Some(first) = pod.annotations().get(FAIL_FIRST).and_then(|v| v.parse::<u32>().ok()) else { return false };
    let uid = pod.uid().unwrap_or_default();
    if let Some(v) = failures.verdicts.get(&uid) {
        return *v;
    }
    let owner = pod.owner_references().first().map(|o| o.uid.clone()).unwrap_or_else(|| uid.clone());
    let n = failures.runs.entry(owner).or_default();
    *n += 1;
    let fail = *n <= first;
    failures.verdicts.insert(uid, fail);
    fail
}
