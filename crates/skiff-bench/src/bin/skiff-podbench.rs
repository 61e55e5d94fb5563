//! skiff-podbench: pod startup latency and node agent footprint (issue 5's benchmark).
//!
//! ```text
//! cargo build --release -p skiff -p skiff-bench
//! sudo target/release/skiff-podbench [--pods 100] [--rate 30] [--secs 3] [--hold SECS] [--cold-client]
//! ```
//!
//! The burst's client has one connection open per pod before it starts (`--cold-client`:
//! none; see `warm_connections`).
//!
//! `--hold SECS` keeps the N idle pods running that long after their measurement (the
//! agent's PID is printed), for profiling the agent with `perf` or `/proc/PID/smaps`.
//!
//! Runs a control plane (`skiff server --disable-agent`) and a separate `skiff agent` in a
//! network namespace of its own (pods get real veths and addresses; nothing changes in the
//! root namespace), imports a busybox image, then:
//! 1. creates N pods at once and measures create -> Ready as seen through a watch;
//! 2. once the machine is quiet again after deleting them, creates pods at R per second
//!    for S seconds, same measurement;
//! 3. reads the agent's RSS and CPU use over 10 s idle with 0 and with N pods running.
//!
//! Prints figures; asserts nothing. Needs root and busybox-static.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use tokio::sync::Mutex;

const IMAGE: &str = "skiff.bench/busybox:1";
const NETNS: &str = "skiff-podbench";

struct Opts {
    pods: usize,
    rate: usize,
    secs: usize,
    hold: usize,
    /// Let the burst's creates open their own connections (see `warm_connections`).
    cold_client: bool,
}

fn opts() -> Opts {
    let args: Vec<String> = std::env::args().collect();
    let get = |name: &str, default: usize| {
        args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
    };
    Opts {
        pods: get("--pods", 100),
        rate: get("--rate", 30),
        secs: get("--secs", 3),
        hold: get("--hold", 0),
        cold_client: args.iter().any(|a| a == "--cold-client"),
    }
}

fn sh(args: &[&str]) -> anyhow::Result<()> {
    let st = Command::new(args[0]).args(&args[1..]).status()?;
    if !st.success() {
        bail!("{args:?} failed");
    }
    Ok(())
}

/// The bench's network namespace, removed on drop.
struct Netns;

impl Netns {
    fn create() -> anyhow::Result<Self> {
        let _ = Command::new("ip").args(["netns", "del", NETNS]).status();
        sh(&["ip", "netns", "add", NETNS])?;
        let guard = Netns;
        sh(&["ip", "-n", NETNS, "link", "set", "lo", "up"])?;
        // The node's "NIC": one end of a veth pair kept inside the namespace (no dummy
        // driver needed), so the node has a routable address of its own.
        sh(&["ip", "-n", NETNS, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1"])?;
        sh(&["ip", "-n", NETNS, "link", "set", "eth1", "up"])?;
        sh(&["ip", "-n", NETNS, "addr", "add", "192.168.253.1/24", "dev", "eth0"])?;
        sh(&["ip", "-n", NETNS, "link", "set", "eth0", "up"])?;
        Ok(guard)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", NETNS]).status();
    }
}

fn spawn_in_netns(binary: &Path, args: &[&str], log: &Path) -> anyhow::Result<Child> {
    let file = std::fs::File::create(log)?;
    Ok(Command::new("nsenter")
        .arg(format!("--net=/run/netns/{NETNS}"))
        .arg("--")
        .arg(binary)
        .args(args)
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()?)
}

fn rss_kib(pid: u32) -> u64 {
    status_field(pid, "VmRSS:")
}

/// A numeric field of /proc/PID/status (`VmRSS:` in KiB, `Threads:`).
fn status_field(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

/// A field of /proc/PID/smaps_rollup in KiB: `Pss` (resident memory with shared pages split
/// among their sharers: what the process really costs) or `Anonymous` (private heap/stack).
fn rollup_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.split(':').next() == Some(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

/// Waits until the whole machine has been under 10% busy for two seconds in a row (at most
/// `limit`); returns how long that took. One quiet second was not enough: the kernel tears
/// down deleted pods' network namespaces in batches, and a pause between two batches passed
/// for quiet, so the sustained phase sometimes ran into the next batch.
async fn settle(limit: Duration) -> Duration {
    let start = Instant::now();
    let mut quiet = 0;
    while start.elapsed() < limit && quiet < 2 {
        let (busy0, total0) = machine_ticks();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (busy1, total1) = machine_ticks();
        quiet = if (busy1 - busy0) * 10 < (total1 - total0).max(1) { quiet + 1 } else { 0 };
    }
    start.elapsed()
}

/// Busy and total jiffies of the whole machine (all cores) from /proc/stat.
fn machine_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let cpu: Vec<u64> = stat.lines().next().unwrap_or("").split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    let total: u64 = cpu.iter().sum();
    let idle = cpu.get(3).copied().unwrap_or(0) + cpu.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// RSS (MiB) and CPU (% of one core) of `pid` over `secs` seconds.
fn footprint(pid: u32, secs: u64) -> (f64, f64) {
    let hz = 100.0; // USER_HZ on Linux
    let t0 = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(secs));
    let t1 = cpu_ticks(pid);
    (rss_kib(pid) as f64 / 1024.0, (t1 - t0) as f64 / hz / secs as f64 * 100.0)
}

/// The shims' count and their summed RSS, PSS and anonymous memory, in MiB.
fn shim_memory_mib() -> (usize, f64, f64, f64) {
    let mut count = 0;
    let (mut rss, mut pss, mut anon) = (0, 0, 0);
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmd).contains("skiff-podbench") && String::from_utf8_lossy(&cmd).contains("\0shim\0") {
            count += 1;
            rss += rss_kib(pid);
            pss += rollup_kib(pid, "Pss");
            anon += rollup_kib(pid, "Anonymous");
        }
    }
    (count, rss as f64 / 1024.0, pss as f64 / 1024.0, anon as f64 / 1024.0)
}

/// The runtime helpers that are not containers' shims, whose command lines do not name the
/// bench's data dir (the zygote and the pin holder, both under the agent's state directory
/// in /run/skiff): (kind, pid) for each process of the bench's `skiff` binary.
fn runtime_helpers(skiff: &Path) -> Vec<(&'static str, u32)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        if std::fs::read_link(format!("/proc/{pid}/exe")).ok().as_deref() != Some(skiff) {
            continue;
        }
        let cmd = String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default()).into_owned();
        for kind in ["zygote", "pins"] {
            if cmd.contains(&format!("\0shim\0{kind}\0")) {
                out.push((kind, pid));
            }
        }
    }
    out
}

fn pod(name: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"bench": "podbench"}},
        "spec": {"terminationGracePeriodSeconds": 0, "automountServiceAccountToken": false,
                 "containers": [{"name": "c", "image": IMAGE, "command": ["sleep", "3600"]}]}
    }))
    .expect("valid pod")
}

fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// Opens `n` connections to the API server and leaves them idle in the client's pool, so
/// that `n` concurrent creates find a connection instead of each starting with a TLS
/// handshake. The client (kube-rs) speaks HTTP/1.1, one request per connection at a time;
/// client-go's HTTP/2 multiplexes a burst over one connection it already has, and upstream
/// measures pod startup from the pod's creation time, after any handshake. Without this,
/// 100 handshakes (the server verifying 100 client certificates) ran inside the burst.
async fn warm_connections(client: &kube::Client, n: usize) -> anyhow::Result<()> {
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let lists = (0..n).map(|_| {
        let api = api.clone();
        async move { api.list(&ListParams::default().limit(1)).await }
    });
    for r in futures::future::join_all(lists).await {
        r?;
    }
    Ok(())
}

/// Creates pods by `schedule` (name, delay from start) and returns create -> Ready latencies.
async fn measure(client: &kube::Client, schedule: Vec<(String, Duration)>) -> anyhow::Result<Vec<f64>> {
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let created: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let ready: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let wanted = schedule.len();
    let watch_ready = ready.clone();
    let watch_api = api.clone();
    let watching = tokio::spawn(async move {
        let mut stream = watcher(watch_api, watcher::Config::default().labels("bench=podbench")).applied_objects().boxed();
        while let Some(Ok(p)) = stream.next().await {
            if is_ready(&p) {
                let mut r = watch_ready.lock().await;
                r.entry(p.metadata.name.clone().unwrap_or_default()).or_insert_with(Instant::now);
                if r.len() >= wanted {
                    break;
                }
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await; // let the watch start
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (name, at) in schedule {
        let api = api.clone();
        let created = created.clone();
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(tokio::time::Instant::from_std(start + at)).await;
            created.lock().await.insert(name.clone(), Instant::now());
            api.create(&PostParams::default(), &pod(&name)).await.map(|_| ())
        }));
    }
    for t in tasks {
        t.await??;
    }
    tokio::time::timeout(Duration::from_secs(180), watching).await.context("pods did not all become Ready in 180 s")??;
    let created = created.lock().await;
    let ready = ready.lock().await;
    let mut lat: Vec<f64> = created
        .iter()
        .filter_map(|(n, c)| ready.get(n).map(|r| r.duration_since(*c).as_secs_f64() * 1000.0))
        .collect();
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    Ok(lat)
}

async fn delete_all(client: &kube::Client) -> anyhow::Result<()> {
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    api.delete_collection(&DeleteParams::default(), &ListParams::default().labels("bench=podbench")).await?;
    for _ in 0..600 {
        if api.list(&ListParams::default().labels("bench=podbench")).await?.items.is_empty() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("pods were not deleted within 60 s")
}

fn main() -> anyhow::Result<()> {
    // Enter the bench namespace before any thread exists: a thread's network namespace is
    // inherited by the threads and processes it creates, so every client connection and
    // child process below lives there.
    let netns = Netns::create()?;
    let ns = std::fs::File::open(format!("/run/netns/{NETNS}"))?;
    nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).context("entering the bench namespace")?;
    let result = tokio::runtime::Runtime::new()?.block_on(bench());
    drop(netns);
    result
}

async fn bench() -> anyhow::Result<()> {
    let o = opts();
    let exe = std::env::current_exe()?;
    let skiff: PathBuf = exe.with_file_name("skiff");
    anyhow::ensure!(skiff.exists(), "build the release skiff binary first ({} missing)", skiff.display());
    let dir = tempfile::Builder::new().prefix("skiff-podbench-").tempdir()?;
    let server_dir = dir.path().join("server");
    let agent_dir = dir.path().join("agent");
    std::fs::create_dir_all(&agent_dir)?;
    let mut server = spawn_in_netns(
        &skiff,
        &["server", "--data-dir", server_dir.to_str().unwrap(), "--disable-agent", "--bind-address", "0.0.0.0",
          "--advertise-address", "192.168.253.1", "--controller-manager-port", "0", "--scheduler-port", "0"],
        &dir.path().join("server.log"),
    )?;
    let kubeconfig = server_dir.join("kubeconfig.yaml");
    for _ in 0..200 {
        if kubeconfig.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let archive = dir.path().join("busybox.tar");
    skiff_testkit::images::write_busybox_archive(&archive, IMAGE);
    let out = Command::new(&skiff).args(["image", "import", "--data-dir"]).arg(&agent_dir).arg(&archive).output()?;
    anyhow::ensure!(out.status.success(), "image import: {}", String::from_utf8_lossy(&out.stderr));
    let mut agent = spawn_in_netns(
        &skiff,
        &["agent", "--kubeconfig", kubeconfig.to_str().unwrap(), "--data-dir", agent_dir.to_str().unwrap(),
          "--node-name", "bench", "--node-ip", "192.168.253.1", "--kubelet-healthz-port", "0", "--disable-ingress",
          // Memory-only eviction, as the tests' agents: a full disk must not taint the node
          // (disk-pressure) and leave every pod Pending.
          "--eviction-hard", "memory.available<1Mi"],
        &dir.path().join("agent.log"),
    )?;
    let result = run(&o, &kubeconfig, agent.id(), server.id()).await;
    let _ = agent.kill();
    let _ = agent.wait();
    let _ = server.kill();
    let _ = server.wait();
    let _ = Command::new(&skiff).args(["killall", "--data-dir"]).arg(&agent_dir).status();
    if let Err(e) = &result {
        eprintln!("agent log: {}", dir.path().join("agent.log").display());
        let _ = dir.keep();
        return Err(anyhow::anyhow!("{e:#}"));
    }
    result
}

async fn run(o: &Opts, kubeconfig: &Path, agent_pid: u32, server_pid: u32) -> anyhow::Result<()> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    let client = kube::Client::try_from(cfg)?;
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    for _ in 0..600 {
        if let Ok(n) = nodes.get("bench").await {
            let ready = n.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            if ready && n.spec.as_ref().and_then(|s| s.pod_cidr.as_ref()).is_some() {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Warm-up: one pod (first image use, network setup).
    let warm = measure(&client, vec![("warmup".into(), Duration::ZERO)]).await?;
    delete_all(&client).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (rss0, cpu0) = footprint(agent_pid, 10);

    if !o.cold_client {
        warm_connections(&client, o.pods).await?;
    }
    let burst: Vec<(String, Duration)> = (0..o.pods).map(|i| (format!("burst-{i}"), Duration::ZERO)).collect();
    let t = Instant::now();
    let (busy0, total0) = machine_ticks();
    let (srv0, agent0) = (cpu_ticks(server_pid), cpu_ticks(agent_pid));
    let lat = measure(&client, burst).await?;
    let burst_wall = t.elapsed();
    let (busy1, total1) = machine_ticks();
    let (srv1, agent1) = (cpu_ticks(server_pid), cpu_ticks(agent_pid));
    // Where the burst's CPU went: the machine's busy share says whether startup was CPU-bound;
    // the server's and agent's own seconds say who spent it (the rest: shims, containers,
    // this bench, the kernel's work for them).
    let machine_busy = (busy1 - busy0) as f64 / (total1 - total0).max(1) as f64 * 100.0;
    let (srv_cpu, agent_cpu) = ((srv1 - srv0) as f64 / 100.0, (agent1 - agent0) as f64 / 100.0);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let threads_after_burst = status_field(agent_pid, "Threads:");
    let (rss_n, cpu_n) = footprint(agent_pid, 10);
    let threads_idle = status_field(agent_pid, "Threads:");
    let (shims, shim_rss, shim_pss, shim_anon) = shim_memory_mib();
    let skiff = std::env::current_exe()?.with_file_name("skiff");
    let helpers: Vec<String> = runtime_helpers(&std::fs::canonicalize(&skiff).unwrap_or(skiff))
        .into_iter()
        .map(|(kind, pid)| format!("{kind} RSS {:.1} MiB / PSS {:.1} MiB", rss_kib(pid) as f64 / 1024.0, rollup_kib(pid, "Pss") as f64 / 1024.0))
        .collect();
    let agent_pss = rollup_kib(agent_pid, "Pss") as f64 / 1024.0;
    let agent_anon = rollup_kib(agent_pid, "Anonymous") as f64 / 1024.0;
    if o.hold > 0 {
        eprintln!("holding {} idle pods for {} s: agent pid {agent_pid}, server pid {server_pid}", o.pods, o.hold);
        tokio::time::sleep(Duration::from_secs(o.hold as u64)).await;
    }
    delete_all(&client).await?;
    // Deleting 100 pods goes on in the kernel after the API has forgotten them (network
    // namespaces and veths are torn down by kernel workers): the sustained phase measured
    // straight after it was measuring start-up during that teardown (p50 ~2.4 s against
    // ~50 ms for a pod on a quiet node). So wait until the machine is quiet first.
    let settled = settle(Duration::from_secs(30)).await;

    let step = Duration::from_secs_f64(1.0 / o.rate as f64);
    let steady: Vec<(String, Duration)> = (0..o.rate * o.secs).map(|i| (format!("steady-{i}"), step * i as u32)).collect();
    let lat2 = measure(&client, steady).await?;
    delete_all(&client).await?;

    println!("pod startup (create -> Ready seen through a watch; image present; pod network on)");
    println!("  warm-up single pod: {:.0} ms", warm.first().copied().unwrap_or(f64::NAN));
    println!(
        "  burst of {} pods at once: p50 {:.0} ms  p99 {:.0} ms  max {:.0} ms  (all Ready after {:.1} s)",
        lat.len(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or(f64::NAN),
        burst_wall.as_secs_f64()
    );
    println!(
        "  burst CPU: machine {machine_busy:.0}% busy (all cores), server {srv_cpu:.2} s, agent {agent_cpu:.2} s, over {:.2} s",
        burst_wall.as_secs_f64()
    );
    println!(
        "  {} pods/s for {} s ({} pods): p50 {:.0} ms  p99 {:.0} ms  (started once the machine was quiet, {:.1} s after the burst's pods were deleted)",
        o.rate,
        o.secs,
        lat2.len(),
        percentile(&lat2, 0.5),
        percentile(&lat2, 0.99),
        settled.as_secs_f64()
    );
    println!("agent process (skiff agent, without its shims)");
    println!("  idle, 0 pods: RSS {rss0:.1} MiB, CPU {cpu0:.2}% of a core (10 s)");
    println!("  idle, {} pods: RSS {rss_n:.1} MiB, CPU {cpu_n:.2}% of a core (10 s)", o.pods);
    println!("  threads: {threads_after_burst} right after the burst, {threads_idle} after 10 s idle");
    println!("  idle, {} pods: PSS {agent_pss:.1} MiB (RSS minus the shares of pages others map too), anonymous {agent_anon:.1} MiB", o.pods);
    println!(
        "  shims: {shims} processes, RSS {shim_rss:.1} MiB, PSS {shim_pss:.1} MiB, anonymous {shim_anon:.1} MiB in total ({:.2} / {:.2} / {:.2} MiB each)",
        shim_rss / shims.max(1) as f64,
        shim_pss / shims.max(1) as f64,
        shim_anon / shims.max(1) as f64
    );
    println!("  runtime helpers (one each per node): {}", if helpers.is_empty() { "none".to_string() } else { helpers.join(", ") });
    Ok(())
}
