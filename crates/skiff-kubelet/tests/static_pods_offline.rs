//! Static pods run from the manifests directory while no API server answers: the agent
//! starts them, replaces them when the manifest changes, and stops them when it goes away.
//! Runs against the in-memory runtime, so it needs no root.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use skiff_kubelet::pods::naming;
use skiff_kubelet::{Config, Kubelet, NoPodNetwork};
use skiff_runtime::runtime::Phase;
use skiff_runtime::{FakeRuntime, Runtime};

const MANIFEST: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - name: c\n    image: skiff.test/busybox:1\n";

/// Pod UIDs of the running containers of pod `name`.
fn running(runtime: &FakeRuntime, name: &str) -> Vec<String> {
    runtime
        .list_containers()
        .unwrap()
        .into_iter()
        .filter(|c| c.status.phase == Phase::Running && c.config.labels.get(naming::POD_NAME).map(String::as_str) == Some(name))
        .filter_map(|c| c.config.labels.get(naming::POD_UID).cloned())
        .collect()
}

async fn wait_for(runtime: &FakeRuntime, what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < Duration::from_secs(20), "timed out waiting for {what}; runtime calls: {:?}", runtime.calls());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn write(path: &Path, text: &str) {
    // Write then rename, so a scan never sees half a file.
    let tmp = path.with_file_name(format!(".{}.tmp", path.file_name().unwrap().to_string_lossy()));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_pods_run_while_the_api_server_is_unreachable() {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    let file = manifests.join("web.yaml");
    write(&file, MANIFEST);

    let mut config = Config::new("offline-node", IpAddr::V4(Ipv4Addr::LOCALHOST), dir.path().join("agent"));
    config.manifests_dir = Some(manifests.clone());
    config.manifests_interval = Duration::from_millis(200);
    config.healthz_port = 0;
    config.eviction_hard = Vec::new();
    // Nothing listens on port 1: every API call fails at once.
    let client = kube::Client::try_from(kube::Config::new("http://127.0.0.1:1".parse().unwrap())).unwrap();
    let runtime = Arc::new(FakeRuntime::new());
    let kubelet = Kubelet::new(config, client, runtime.clone(), Arc::new(NoPodNetwork));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let agent = tokio::spawn(kubelet.run(stopped));

    wait_for(&runtime, "the static pod to run", || running(&runtime, "web-offline-node").len() == 1).await;
    let first = running(&runtime, "web-offline-node")[0].clone();
    assert_eq!(first.len(), 32, "a hash UID, as upstream gives static pods");

    // An edited manifest is a new pod: the old one stops, the new one starts.
    write(&file, &MANIFEST.replace("name: c\n", "name: c\n    command: [sh, -c, 'sleep 1000']\n"));
    wait_for(&runtime, "the edited static pod to replace the old one", || {
        let now = running(&runtime, "web-offline-node");
        now.len() == 1 && now[0] != first
    })
    .await;

    // A second document in another file adds a pod; removing the files stops both.
    write(&manifests.join("more.json"), r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "db"}, "spec": {"containers": [{"name": "c", "image": "skiff.test/busybox:1"}]}}"#);
    wait_for(&runtime, "the JSON static pod to run", || running(&runtime, "db-offline-node").len() == 1).await;
    std::fs::remove_file(&file).unwrap();
    std::fs::remove_file(manifests.join("more.json")).unwrap();
    wait_for(&runtime, "the static pods to stop and go", || {
        runtime.list_containers().unwrap().is_empty() && runtime.list_sandboxes().unwrap().is_empty()
    })
    .await;

    stop.send(true).unwrap();
    agent.await.unwrap().unwrap();
}
