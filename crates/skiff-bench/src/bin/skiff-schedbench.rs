//! skiff-schedbench: scheduler throughput and Deployment fan-out (issue 4's benchmarks).
//!
//! ```text
//! cargo build --release -p skiff -p skiff-bench
//! target/release/skiff-schedbench [--pods 10000] [--nodes 1000,5000] [--only basic,spread,affinity,deployment]
//! ```
//!
//! For each shape and node count, a fresh `skiff server --disable-agent` (release binary next
//! to this one, SQLite store, loopback) gets N Node objects (4 CPU, 32 GiB, 110 pods, ten
//! zones, no kubelet) and the pods, all created *before* a scheduler is running: the pods
//! name the scheduler `schedbench`, which the server's own scheduler ignores. Then this
//! process starts skiff's scheduler (the library, configured with that name) and measures
//! until every pod is bound, as seen through a watch. Shapes, after upstream's
//! scheduler_perf:
//! - basic: SchedulingBasic (pods requesting 100m CPU / 500Mi);
//! - spread: each pod with a DoNotSchedule zone spread constraint (maxSkew 1) over its group;
//! - affinity: ten groups; each pod has required pod affinity to its group in a zone and
//!   preferred anti-affinity to its group on hostname (requests 10m / 50Mi so a group fits
//!   in one zone).
//!
//! The deployment figure runs the whole control plane (its controllers and scheduler): the
//! time from creating a 1,000-replica Deployment to 1,000 pods existing (and bound onto 100
//! fake nodes). Prints figures; asserts nothing.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::{stream, StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use serde_json::{json, Value};

const SCHEDULER: &str = "schedbench";
const ZONES: usize = 10;
const GROUPS: usize = 10;

struct Opts {
    pods: usize,
    nodes: Vec<usize>,
    only: Vec<String>,
}

fn opts() -> anyhow::Result<Opts> {
    let args: Vec<String> = std::env::args().collect();
    let get = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    Ok(Opts {
        pods: get("--pods").map(|v| v.parse()).transpose()?.unwrap_or(10_000),
        nodes: get("--nodes").unwrap_or_else(|| "1000,5000".into()).split(',').map(|v| v.parse()).collect::<Result<_, _>>()?,
        only: get("--only").unwrap_or_else(|| "basic,spread,affinity,deployment".into()).split(',').map(str::to_string).collect(),
    })
}

/// A `skiff server` on a temp dir, killed on drop.
struct Server {
    child: Child,
    dir: tempfile::TempDir,
    client: kube::Client,
}

impl Server {
    /// Copy the server log out of the temp dir (which goes with the server).
    fn keep_log(&self) -> String {
        let to = std::env::temp_dir().join("skiff-schedbench-server.log");
        let _ = std::fs::copy(self.dir.path().join("server.log"), &to);
        to.display().to_string()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn start_server(skiff: &Path) -> anyhow::Result<Server> {
    let dir = tempfile::Builder::new().prefix("skiff-schedbench-").tempdir()?;
    let data = dir.path().join("data");
    let log = std::fs::File::create(dir.path().join("server.log"))?;
    let port = free_port().to_string();
    let child = Command::new(skiff)
        .args(["server", "--data-dir", data.to_str().unwrap(), "--port", &port, "--bind-address", "127.0.0.1", "--disable-agent"])
        .args(["--controller-manager-port", "0", "--scheduler-port", "0", "--node-monitor-grace-period", "3600"])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting skiff server")?;
    let kubeconfig = data.join("kubeconfig.yaml");
    let mut server = None;
    let mut child = Some(child);
    for _ in 0..400 {
        if kubeconfig.exists() {
            let kc = kube::config::Kubeconfig::read_from(&kubeconfig)?;
            let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
            let client = kube::Client::try_from(cfg)?;
            if client.apiserver_version().await.is_ok() && Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone()).get("default").await.is_ok() {
                server = Some(Server { child: child.take().unwrap(), dir, client });
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.context("server did not become ready")
}

fn node(i: usize) -> (Node, Value) {
    let name = format!("node-{i}");
    let node = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "topology.kubernetes.io/zone": format!("zone-{}", i % ZONES)}},
        "spec": {},
    }))
    .unwrap();
    // A fresh heartbeat; the server runs with a long node-monitor grace period so these
    // kubelet-less nodes stay Ready for the whole run.
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let status = json!({"status": {
        "capacity": {"cpu": "4", "memory": "32Gi", "pods": "110"},
        "allocatable": {"cpu": "4", "memory": "32Gi", "pods": "110"},
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "lastHeartbeatTime": now, "lastTransitionTime": now}],
    }});
    (node, status)
}

fn pod(shape: &str, i: usize) -> Pod {
    let group = format!("g{}", i % GROUPS);
    let mut spec = json!({
        "schedulerName": SCHEDULER,
        "containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.10", "resources": {"requests": {"cpu": "100m", "memory": "500Mi"}}}],
    });
    match shape {
        "spread" => {
            spec["topologySpreadConstraints"] = json!([{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule",
                "labelSelector": {"matchLabels": {"group": group}}}]);
        }
        "affinity" => {
            spec["containers"][0]["resources"]["requests"] = json!({"cpu": "10m", "memory": "50Mi"});
            spec["affinity"] = json!({
                "podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                    {"labelSelector": {"matchLabels": {"group": group}}, "topologyKey": "topology.kubernetes.io/zone"}]},
                "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 100, "podAffinityTerm": {"labelSelector": {"matchLabels": {"group": group}}, "topologyKey": "kubernetes.io/hostname"}}]},
            });
        }
        _ => {}
    }
    serde_json::from_value(json!({"metadata": {"name": format!("p-{i}"), "namespace": "default", "labels": {"bench": "sched", "group": group}}, "spec": spec})).unwrap()
}

async fn create_nodes(client: &kube::Client, n: usize) -> anyhow::Result<()> {
    let api: Api<Node> = Api::all(client.clone());
    stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            async move {
                let (node, status) = node(i);
                let name = node.metadata.name.clone().unwrap();
                api.create(&PostParams::default(), &node).await?;
                api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status)).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

async fn create_pods(client: &kube::Client, shape: &str, n: usize) -> anyhow::Result<()> {
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            async move { api.create(&PostParams::default(), &pod(shape, i)).await.map(|_| ()) }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

/// Waits until `want` pods matching `labels` satisfy `done`; returns when the first and the
/// last did, measured from `start`. The watch decodes only each pod's name and node
/// ([`Placement`]): it measures the scheduler and should take as little of the machine as it
/// can (decoding whole pods made it about a third of the bench process's CPU).
async fn watch_until(client: &kube::Client, labels: &str, want: usize, timeout: Duration, done: fn(&Placement) -> bool) -> anyhow::Result<(Instant, Instant)> {
    let api: Api<Placement> = Api::namespaced(client.clone(), "default");
    let mut seen = std::collections::HashSet::new();
    let mut first = None;
    let mut stream = watcher(api, watcher::Config::default().labels(labels)).applied_objects().boxed();
    let deadline = tokio::time::Instant::now() + timeout;
    while seen.len() < want {
        let next = tokio::time::timeout_at(deadline, stream.next()).await.with_context(|| format!("only {} of {want} pods after {timeout:?}", seen.len()))?;
        let Some(Ok(p)) = next else { bail!("watch ended") };
        if done(&p) && seen.insert(p.metadata.name.clone().unwrap_or_default()) {
            first.get_or_insert_with(Instant::now);
        }
    }
    Ok((first.unwrap_or_else(Instant::now), Instant::now()))
}

/// A pod as the bench's watch sees it: name, namespace, resourceVersion and node.
#[derive(Clone, Debug, serde::Deserialize)]
struct Placement {
    #[serde(deserialize_with = "few_metadata")]
    metadata: kube::api::ObjectMeta,
    #[serde(default)]
    spec: PlacementSpec,
}

#[derive(Clone, Debug, Default, serde::Deserialize)]
struct PlacementSpec {
    #[serde(rename = "nodeName", default)]
    node_name: Option<String>,
}

/// Metadata with only what a watch needs (the rest, managedFields above all, is skipped).
fn few_metadata<'de, D: serde::Deserializer<'de>>(d: D) -> Result<kube::api::ObjectMeta, D::Error> {
    #[derive(serde::Deserialize)]
    struct Few {
        name: Option<String>,
        namespace: Option<String>,
        #[serde(rename = "resourceVersion")]
        resource_version: Option<String>,
    }
    let f = <Few as serde::Deserialize>::deserialize(d)?;
    Ok(kube::api::ObjectMeta { name: f.name, namespace: f.namespace, resource_version: f.resource_version, ..Default::default() })
}

impl kube::Resource for Placement {
    type DynamicType = ();
    type Scope = kube::core::NamespaceResourceScope;

    fn kind(_: &()) -> std::borrow::Cow<'_, str> {
        "Pod".into()
    }
    fn group(_: &()) -> std::borrow::Cow<'_, str> {
        "".into()
    }
    fn version(_: &()) -> std::borrow::Cow<'_, str> {
        "v1".into()
    }
    fn plural(_: &()) -> std::borrow::Cow<'_, str> {
        "pods".into()
    }
    fn meta(&self) -> &kube::api::ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut kube::api::ObjectMeta {
        &mut self.metadata
    }
}

fn bound(p: &Placement) -> bool {
    p.spec.node_name.as_deref().is_some_and(|n| !n.is_empty())
}

fn exists(_: &Placement) -> bool {
    true
}

async fn scheduling(skiff: &Path, shape: &str, nodes: usize, pods: usize) -> anyhow::Result<()> {
    let server = start_server(skiff).await?;
    let client = server.client.clone();
    let t = Instant::now();
    create_nodes(&client, nodes).await?;
    create_pods(&client, shape, pods).await?;
    let setup = t.elapsed();
    let watching = tokio::spawn({
        let client = client.clone();
        async move { watch_until(&client, "bench=sched", pods, Duration::from_secs(600), bound).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let start = Instant::now();
    let config = skiff_scheduler::Config { scheduler_name: SCHEDULER.into(), ..Default::default() };
    let scheduler = tokio::spawn(skiff_scheduler::run_with(client.clone(), config));
    let result = watching.await?;
    scheduler.abort();
    let (first, last) = match result {
        Ok(v) => v,
        Err(e) => return Err(e.context(format!("server log kept in {}", server.keep_log()))),
    };
    let total = last.duration_since(start).as_secs_f64();
    let steady = last.duration_since(first).as_secs_f64();
    // Spot-check the placement rules held.
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let list = api.list(&kube::api::ListParams::default().labels("bench=sched")).await?;
    let mut per_node = std::collections::HashMap::<String, usize>::new();
    for p in &list.items {
        *per_node.entry(p.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default()).or_default() += 1;
    }
    println!(
        "  {shape:<9} {nodes:>5} nodes {pods:>6} pods: {:>7.0} pods/s from scheduler start ({total:.2} s), {:>7.0} pods/s first->last bind; setup {:.1} s; {} nodes used, max {} pods/node",
        pods as f64 / total,
        pods as f64 / steady.max(1e-9),
        setup.as_secs_f64(),
        per_node.len(),
        per_node.values().max().copied().unwrap_or(0),
    );
    Ok(())
}

async fn deployment(skiff: &Path, replicas: usize) -> anyhow::Result<()> {
    let server = start_server(skiff).await?;
    let client = server.client.clone();
    create_nodes(&client, 100).await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "fanout"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "fanout"}},
                 "template": {"metadata": {"labels": {"app": "fanout"}},
                              "spec": {"containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.10",
                                                      "resources": {"requests": {"cpu": "10m", "memory": "10Mi"}}}]}}}
    }))?;
    let created = tokio::spawn({
        let client = client.clone();
        async move { watch_until(&client, "app=fanout", replicas, Duration::from_secs(300), exists).await }
    });
    let scheduled = tokio::spawn({
        let client = client.clone();
        async move { watch_until(&client, "app=fanout", replicas, Duration::from_secs(300), bound).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let start = Instant::now();
    deployments.create(&PostParams::default(), &d).await?;
    let (_, all_created) = created.await??;
    let (_, all_bound) = scheduled.await??;
    println!(
        "  deployment {replicas} replicas: all pods created {:.2} s after the Deployment, all bound {:.2} s",
        all_created.duration_since(start).as_secs_f64(),
        all_bound.duration_since(start).as_secs_f64()
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let o = opts()?;
    let exe = std::env::current_exe()?;
    let skiff: PathBuf = exe.with_file_name("skiff");
    anyhow::ensure!(skiff.exists(), "build the release skiff binary first ({} missing)", skiff.display());
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        println!("scheduler throughput (pods created first, then skiff's scheduler started; bound = seen through a watch)");
        for shape in ["basic", "spread", "affinity"] {
            if !o.only.iter().any(|s| s == shape) {
                continue;
            }
            for &n in &o.nodes {
                scheduling(&skiff, shape, n, o.pods).await?;
            }
        }
        if o.only.iter().any(|s| s == "deployment") {
            deployment(&skiff, 1000).await?;
        }
        anyhow::Ok(())
    })
}
