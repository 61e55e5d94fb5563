//! skiff-bench: the API server and store benchmark of issue 2, run by hand.
//!
//! ```text
//! cargo build --release -p skiff
//! cargo run --release -p skiff-bench -- [--quick]
//! ```
//!
//! Starts `skiff server` (the release binary next to this one) on a temp data dir on loopback
//! and drives its real HTTPS API with the admin client certificate; then starts etcd (Debian
//! `etcd-server`) the same way and runs the same write workload as puts through etcd's JSON
//! gateway. Prints a table of figures. Not a test: nothing here asserts a speed.
//!
//! Options: `--quick` (smaller counts), `--pods N` (default 10000), `--skiff PATH`,
//! `--etcd PATH`, `--no-etcd`, `--dir DIR` (where temp data dirs go; default $TMPDIR),
//! `--linger SECS` (keep the server up that long after the last phase, for inspection).

mod client;
mod procs;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use base64::Engine;
use bytes::Bytes;
use http::Method;
use http_body_util::BodyExt;

use client::{Conn, Target};
use procs::Proc;

const JSON: &str = "application/json";
const MERGE_PATCH: &str = "application/merge-patch+json";

struct Opts {
    quick: bool,
    pods: usize,
    skiff: Option<PathBuf>,
    etcd: Option<PathBuf>,
    no_etcd: bool,
    dir: Option<PathBuf>,
    linger: u64,
}

/// Counts of each phase.
struct Sizes {
    seq_creates: usize,
    par_creates: usize,
    seq_gets: usize,
    par_gets: usize,
    full_lists: usize,
    paged_lists: usize,
    watch_creates: usize,
    mixed_secs: u64,
}

const CONCURRENCY: usize = 32;
const WATCHERS: usize = 100;

fn parse_opts() -> anyhow::Result<Opts> {
    let mut o = Opts {
        quick: false,
        pods: 10_000,
        skiff: None,
        etcd: None,
        no_etcd: false,
        dir: None,
        linger: 0,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = |name: &str| args.next().with_context(|| format!("{name} needs a value"));
        match a.as_str() {
            "--quick" => o.quick = true,
            "--pods" => o.pods = val("--pods")?.parse()?,
            "--skiff" => o.skiff = Some(val("--skiff")?.into()),
            "--etcd" => o.etcd = Some(val("--etcd")?.into()),
            "--no-etcd" => o.no_etcd = true,
            "--dir" => o.dir = Some(val("--dir")?.into()),
            "--linger" => o.linger = val("--linger")?.parse()?,
            "-h" | "--help" => {
                println!("usage: skiff-bench [--quick] [--pods N] [--skiff PATH] [--etcd PATH] [--no-etcd] [--dir DIR] [--linger SECS]");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    Ok(o)
}

// ---------------------------------------------------------------------------------------------
// Figures

/// Latencies and wall time of one phase.
struct Phase {
    name: String,
    ok: usize,
    errors: usize,
    wall: Duration,
    lat: Vec<Duration>,
    srv_cpu: f64,
    bench_cpu: f64,
    /// Server RSS right after the phase, kB.
    rss_kb: u64,
}

impl Phase {
    fn rate(&self) -> f64 {
        self.ok as f64 / self.wall.as_secs_f64()
    }
    fn pct(&self, p: f64) -> Duration {
        pct(&self.lat, p)
    }
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// CPU use of the server under test and of this process over a phase.
struct CpuMark {
    pid: u32,
    srv: f64,
    me: f64,
}

impl CpuMark {
    fn new(pid: u32) -> CpuMark {
        CpuMark {
            pid,
            srv: procs::cpu_secs(Some(pid)),
            me: procs::cpu_secs(None),
        }
    }
    fn finish(&self, wall: Duration) -> (f64, f64) {
        let w = wall.as_secs_f64();
        (
            (procs::cpu_secs(Some(self.pid)) - self.srv) / w,
            (procs::cpu_secs(None) - self.me) / w,
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Workload driver

/// One request of a closed-loop workload.
struct Req {
    method: Method,
    path: String,
    ctype: Option<&'static str>,
    body: Bytes,
}

impl Req {
    fn get(path: String) -> Req {
        Req {
            method: Method::GET,
            path,
            ctype: None,
            body: Bytes::new(),
        }
    }
    fn post(path: String, body: Vec<u8>) -> Req {
        Req {
            method: Method::POST,
            path,
            ctype: Some(JSON),
            body: body.into(),
        }
    }
}

/// Run `total` requests made by `make(i)` over the given connections, each connection a worker
/// sending back to back. Returns the phase figures.
async fn drive(
    name: &str,
    pid: u32,
    conns: Vec<Conn>,
    total: usize,
    make: Arc<dyn Fn(usize) -> Req + Send + Sync>,
) -> anyhow::Result<(Phase, Vec<Conn>)> {
    let next = Arc::new(AtomicUsize::new(0));
    let first_err: Arc<std::sync::Mutex<Option<String>>> = Default::default();
    let cpu = CpuMark::new(pid);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for mut conn in conns {
        let next = next.clone();
        let make = make.clone();
        let first_err = first_err.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0usize;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let r = make(i);
                let t = Instant::now();
                let res = conn.send(&r.method, &r.path, r.ctype, r.body).await;
                let d = t.elapsed();
                match res {
                    Ok(rep) if rep.status.is_success() => lat.push(d),
                    Ok(rep) => {
                        errors += 1;
                        first_err.lock().unwrap().get_or_insert_with(|| {
                            format!(
                                "{} {}: {} {}",
                                r.method,
                                r.path,
                                rep.status,
                                String::from_utf8_lossy(&rep.body)
                            )
                        });
                    }
                    Err(e) => {
                        errors += 1;
                        first_err
                            .lock()
                            .unwrap()
                            .get_or_insert_with(|| format!("{} {}: {e:#}", r.method, r.path));
                    }
                }
            }
            (conn, lat, errors)
        }));
    }
    let mut conns = Vec::new();
    let mut lat = Vec::with_capacity(total);
    let mut errors = 0;
    for t in tasks {
        let (c, l, e) = t.await?;
        conns.push(c);
        lat.extend(l);
        errors += e;
    }
    let wall = start.elapsed();
    let (srv_cpu, bench_cpu) = cpu.finish(wall);
    lat.sort();
    if let Some(e) = first_err.lock().unwrap().take() {
        eprintln!("  ! {name}: {errors} errors; first: {}", truncate(&e, 300));
    }
    let rss_kb = procs::status_kb(pid, "VmRSS").unwrap_or(0);
    let phase = Phase {
        name: name.to_string(),
        ok: lat.len(),
        errors,
        wall,
        lat,
        srv_cpu,
        bench_cpu,
        rss_kb,
    };
    eprintln!(
        "  {:<34} {:>7} ok {:>9.0}/s  p50 {:>7.2} ms  p99 {:>7.2} ms",
        phase.name,
        phase.ok,
        phase.rate(),
        ms(phase.pct(0.5)),
        ms(phase.pct(0.99))
    );
    Ok((phase, conns))
}

fn truncate(s: &str, n: usize) -> String {
    if s.len() <= n {
        s.to_string()
    } else {
        let mut end = n;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &s[..end])
    }
}

// ---------------------------------------------------------------------------------------------
// Objects

fn configmap(name: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": {"app": "bench", "tier": "config"}},
        "data": {"settings.yaml": "log-level: info\nretries: 3\nendpoint: https://backend.bench.svc:8443/api\ntimeout: 30s\nfeatures: [a, b, c, d]\n", "mode": "benchmark"}
    }))
    .unwrap()
}

fn pod(name: &str, i: usize) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": {"app": "bench", "tier": "web", "shard": format!("s{}", i % 16)},
            "annotations": {"bench.skiff.dev/owner": "skiff-bench"}
        },
        "spec": {
            "containers": [{
                "name": "app",
                "image": "registry.example.com/bench/app:1.4.2",
                "args": ["--port=8080", "--log-level=info"],
                "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                "env": [{"name": "MODE", "value": "bench"}, {"name": "SHARD", "value": format!("{}", i % 16)}],
                "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}},
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 10}
            }],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30
        }
    }))
    .unwrap()
}

#[derive(serde::Deserialize)]
struct ListDoc {
    metadata: ListMeta,
    items: Vec<serde::de::IgnoredAny>,
}

#[derive(serde::Deserialize)]
struct ListMeta {
    #[serde(rename = "continue", default)]
    cont: Option<String>,
}

/// Tiny deterministic PRNG (xorshift) for picking objects.
struct Rng(u64);
impl Rng {
    fn next(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

// ---------------------------------------------------------------------------------------------
// skiff

struct SkiffResults {
    phases: Vec<Phase>,
    rss_empty_kb: u64,
    rss_pods_early_kb: u64,
    rss_pods_kb: u64,
    rss_end_kb: u64,
    hwm_kb: u64,
    full_list: Vec<Duration>,
    full_list_bytes: usize,
    list_cpu_ms: f64,
    paged_cpu_ms: f64,
    paged_list: Vec<Duration>,
    paged_pages: usize,
    page_lat: Vec<Duration>,
    watch_events: u64,
    watch_wall: Duration,
    watch_create_rate: f64,
    watch_cpu: (f64, f64),
    db_bytes: u64,
}

async fn wait_ready(server: &mut Proc, data: &std::path::Path) -> anyhow::Result<Arc<Target>> {
    let kubeconfig = data.join("kubeconfig.yaml");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        server.check_alive()?;
        if Instant::now() > deadline {
            bail!(
                "skiff server did not become ready in 60 s; log:\n{}",
                server.log_tail(20)
            );
        }
        if kubeconfig.exists() {
            if let Ok(target) = Target::from_kubeconfig(&kubeconfig) {
                if let Ok(mut c) = Conn::connect(target.clone()).await {
                    if let Ok(r) = c.send(&Method::GET, "/readyz", None, Bytes::new()).await {
                        if r.status.is_success() {
                            return Ok(target);
                        }
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn bench_skiff(
    bin: &std::path::Path,
    base: &std::path::Path,
    pods: usize,
    sz: &Sizes,
    linger: u64,
) -> anyhow::Result<SkiffResults> {
    let data = base.join("skiff-data");
    let port = procs::free_port()?;
    let mut cmd = std::process::Command::new(bin);
    cmd.args([
        "server",
        "--bind-address",
        "127.0.0.1",
        "--port",
        &port.to_string(),
        "--disable-agent",
        "--data-dir",
    ])
    .arg(&data);
    // Newer servers also listen for controller-manager and scheduler health/metrics on fixed
    // ports; turn those off so runs never collide with another server on this machine.
    let help = std::process::Command::new(bin)
        .args(["server", "--help"])
        .output()?;
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in ["--controller-manager-port", "--scheduler-port"] {
        if help.contains(flag) {
            cmd.args([flag, "0"]);
        }
    }
    let mut server = Proc::spawn("skiff server", cmd, &base.join("skiff.log"))?;
    let pid = server.pid();
    let t0 = Instant::now();
    let target = wait_ready(&mut server, &data).await?;
    eprintln!(
        "skiff server pid {pid} ready on https://{} in {} ms (data {})",
        target.addr(),
        t0.elapsed().as_millis(),
        data.display()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_empty_kb = procs::status_kb(pid, "VmRSS").unwrap_or(0);

    let mut c = Conn::connect(target.clone()).await?;
    for ns in ["bench-seq", "bench-par", "bench-pods", "bench-watch"] {
        let body = serde_json::to_vec(
            &serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        )?;
        let r = c
            .send(&Method::POST, "/api/v1/namespaces", Some(JSON), body.into())
            .await?;
        if !r.status.is_success() {
            bail!(
                "creating namespace {ns}: {} {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            );
        }
    }
    let mut phases = Vec::new();

    // 1. Populate the pods, 32-way: this is also the pod-create figure.
    let conns = Conn::many(&target, CONCURRENCY).await?;
    let (p, conns) = drive(
        &format!("create pods ({CONCURRENCY}-way)"),
        pid,
        conns,
        pods,
        Arc::new(|i| {
            Req::post(
                "/api/v1/namespaces/bench-pods/pods".into(),
                pod(&format!("pod-{i:05}"), i),
            )
        }),
    )
    .await?;
    phases.push(p);
    server.check_alive()?;

    // 2. Idle RSS holding the pods: 5 s after the creates, and once the server has settled.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rss_pods_early_kb = procs::status_kb(pid, "VmRSS").unwrap_or(0);
    let (rss_pods_kb, settle) = settled_rss_kb(pid).await;
    eprintln!(
        "  idle RSS holding {pods} pods: {:.1} MB after 5 s, {:.1} MB settled ({:.0} s later)",
        rss_pods_early_kb as f64 / 1024.0,
        rss_pods_kb as f64 / 1024.0,
        settle.as_secs_f64()
    );

    // 3. ConfigMap creates, sequential and 32-way (the write workload compared with etcd).
    let seq = vec![Conn::connect(target.clone()).await?];
    let (p, _) = drive(
        "create configmaps (sequential)",
        pid,
        seq,
        sz.seq_creates,
        Arc::new(|i| {
            Req::post(
                "/api/v1/namespaces/bench-seq/configmaps".into(),
                configmap(&format!("cm-{i:06}")),
            )
        }),
    )
    .await?;
    phases.push(p);
    let (p, conns) = drive(
        &format!("create configmaps ({CONCURRENCY}-way)"),
        pid,
        conns,
        sz.par_creates,
        Arc::new(|i| {
            Req::post(
                "/api/v1/namespaces/bench-par/configmaps".into(),
                configmap(&format!("cm-{i:06}")),
            )
        }),
    )
    .await?;
    phases.push(p);

    // 4. Gets of random pods.
    let getter = move |seed: u64| -> Arc<dyn Fn(usize) -> Req + Send + Sync> {
        Arc::new(move |i| {
            let mut r = Rng(seed ^ (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            Req::get(format!(
                "/api/v1/namespaces/bench-pods/pods/pod-{:05}",
                r.next(pods)
            ))
        })
    };
    let seq = vec![Conn::connect(target.clone()).await?];
    let (p, _) = drive("get pod (sequential)", pid, seq, sz.seq_gets, getter(7)).await?;
    phases.push(p);
    let (p, conns) = drive(
        &format!("get pod ({CONCURRENCY}-way)"),
        pid,
        conns,
        sz.par_gets,
        getter(11),
    )
    .await?;
    phases.push(p);

    // 5. Lists of all pods: one response, and paged by 500.
    let mut full_list = Vec::new();
    let mut full_list_bytes = 0;
    let list_start = Instant::now();
    let cpu = CpuMark::new(pid);
    for _ in 0..sz.full_lists {
        let t = Instant::now();
        let r = c
            .send(
                &Method::GET,
                "/api/v1/namespaces/bench-pods/pods",
                None,
                Bytes::new(),
            )
            .await?;
        let d = t.elapsed();
        if !r.status.is_success() {
            bail!("list pods: {}", r.status);
        }
        let doc: ListDoc = serde_json::from_slice(&r.body)?;
        if doc.items.len() != pods {
            eprintln!(
                "  ! full list returned {} items, expected {pods}",
                doc.items.len()
            );
        }
        full_list_bytes = r.body.len();
        full_list.push(d);
    }
    let list_cpu_ms =
        cpu.finish(list_start.elapsed()).0 * list_start.elapsed().as_secs_f64() * 1000.0
            / sz.full_lists as f64;
    full_list.sort();
    eprintln!(
        "  list {pods} pods (one response, {:.1} MB)     median {:.1} ms",
        full_list_bytes as f64 / 1048576.0,
        ms(pct(&full_list, 0.5))
    );
    let mut paged_list = Vec::new();
    let mut page_lat = Vec::new();
    let mut paged_pages = 0;
    let list_start = Instant::now();
    let cpu = CpuMark::new(pid);
    for _ in 0..sz.paged_lists {
        let t = Instant::now();
        let mut cont: Option<String> = None;
        let mut items = 0;
        let mut pages = 0;
        loop {
            let mut path = "/api/v1/namespaces/bench-pods/pods?limit=500".to_string();
            if let Some(c) = &cont {
                path.push_str("&continue=");
                path.push_str(&urlencode(c));
            }
            let tp = Instant::now();
            let r = c.send(&Method::GET, &path, None, Bytes::new()).await?;
            page_lat.push(tp.elapsed());
            if !r.status.is_success() {
                bail!(
                    "list pods page: {} {}",
                    r.status,
                    String::from_utf8_lossy(&r.body)
                );
            }
            let doc: ListDoc = serde_json::from_slice(&r.body)?;
            items += doc.items.len();
            pages += 1;
            cont = doc.metadata.cont.filter(|s| !s.is_empty());
            if cont.is_none() {
                break;
            }
        }
        paged_list.push(t.elapsed());
        paged_pages = pages;
        if items != pods {
            eprintln!("  ! paged list returned {items} items, expected {pods}");
        }
    }
    let paged_cpu_ms =
        cpu.finish(list_start.elapsed()).0 * list_start.elapsed().as_secs_f64() * 1000.0
            / sz.paged_lists as f64;
    paged_list.sort();
    page_lat.sort();
    eprintln!(
        "  list {pods} pods (limit=500, {paged_pages} pages)    median {:.1} ms; per page p50 {:.1} ms p99 {:.1} ms",
        ms(pct(&paged_list, 0.5)),
        ms(pct(&page_lat, 0.5)),
        ms(pct(&page_lat, 0.99))
    );
    phases.push(Phase {
        name: "list pods page (limit=500)".into(),
        ok: page_lat.len(),
        errors: 0,
        wall: paged_list.iter().sum(),
        lat: page_lat.clone(),
        srv_cpu: 0.0,
        bench_cpu: 0.0,
        rss_kb: procs::status_kb(pid, "VmRSS").unwrap_or(0),
    });

    // 6. 100 watchers on one namespace; 32-way creates into it; events delivered per second.
    let delivered = Arc::new(AtomicU64::new(0));
    let mut watch_tasks = Vec::new();
    let first_watch_err: Arc<std::sync::Mutex<Option<String>>> = Default::default();
    for _ in 0..WATCHERS {
        let mut wc = Conn::connect(target.clone()).await?;
        let resp = wc
            .stream("/api/v1/namespaces/bench-watch/configmaps?watch=1")
            .await?;
        let delivered = delivered.clone();
        let first_watch_err = first_watch_err.clone();
        watch_tasks.push(tokio::spawn(async move {
            let _keep = wc;
            let mut body = resp.into_body();
            let mut partial: Vec<u8> = Vec::new();
            while let Some(frame) = body.frame().await {
                let frame = match frame {
                    Ok(f) => f,
                    Err(e) => {
                        first_watch_err
                            .lock()
                            .unwrap()
                            .get_or_insert(format!("{e}"));
                        break;
                    }
                };
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                partial.extend_from_slice(&data);
                let mut n = 0;
                while let Some(pos) = partial.iter().position(|&b| b == b'\n') {
                    let line = &partial[..pos];
                    if !line.is_empty()
                        && !contains(line, b"\"BOOKMARK\"")
                        && !contains(line, b"\"ERROR\"")
                    {
                        n += 1;
                    }
                    partial.drain(..=pos);
                }
                if n > 0 {
                    delivered.fetch_add(n, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let expected = (WATCHERS * sz.watch_creates) as u64;
    let cpu = CpuMark::new(pid);
    let start = Instant::now();
    let (p, conns) = drive(
        &format!("create configmaps, {WATCHERS} watchers"),
        pid,
        conns,
        sz.watch_creates,
        Arc::new(|i| {
            Req::post(
                "/api/v1/namespaces/bench-watch/configmaps".into(),
                configmap(&format!("w-{i:06}")),
            )
        }),
    )
    .await?;
    let watch_create_rate = p.rate();
    phases.push(p);
    let deadline = Instant::now() + Duration::from_secs(60);
    while delivered.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let watch_wall = start.elapsed();
    let watch_cpu = cpu.finish(watch_wall);
    let watch_events = delivered.load(Ordering::Relaxed);
    if watch_events < expected {
        eprintln!("  ! watchers got {watch_events} of {expected} events within 60 s");
    }
    if let Some(e) = first_watch_err.lock().unwrap().take() {
        eprintln!("  ! a watch stream failed: {e}");
    }
    eprintln!(
        "  {WATCHERS} watchers: {watch_events} events in {:.2} s = {:.0} events/s",
        watch_wall.as_secs_f64(),
        watch_events as f64 / watch_wall.as_secs_f64()
    );

    // 7. Mixed load for latency percentiles, watchers still open, pods held: 32 workers, each
    //    loop of 10 = 5 gets, 2 creates, 1 merge patch, 1 list page of 500 pods, 1 delete.
    eprintln!(
        "  mixed load {} s ({CONCURRENCY} workers, {WATCHERS} watchers open) …",
        sz.mixed_secs
    );
    let stop_at = Instant::now() + Duration::from_secs(sz.mixed_secs);
    let cpu = CpuMark::new(pid);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (w, mut conn) in conns.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng(0x1234_5678 ^ ((w as u64 + 1) << 20));
            let mut mine: std::collections::VecDeque<String> = Default::default();
            let mut lat: [Vec<Duration>; 5] = Default::default();
            let mut errors = 0usize;
            let mut first_err: Option<String> = None;
            let mut i = 0usize;
            while Instant::now() < stop_at {
                let slot = i % 10;
                i += 1;
                let (kind, req) = match slot {
                    0..=4 => (
                        0,
                        Req::get(format!(
                            "/api/v1/namespaces/bench-pods/pods/pod-{:05}",
                            rng.next(pods)
                        )),
                    ),
                    5 | 6 => {
                        let name = format!("mix-{w}-{i}");
                        mine.push_back(name.clone());
                        (
                            1,
                            Req::post(
                                "/api/v1/namespaces/bench-watch/configmaps".into(),
                                configmap(&name),
                            ),
                        )
                    }
                    7 => {
                        let Some(name) = mine.back().cloned() else {
                            continue;
                        };
                        let body = serde_json::to_vec(
                            &serde_json::json!({"data": {"mode": format!("patched-{i}")}}),
                        )
                        .unwrap();
                        (
                            2,
                            Req {
                                method: Method::PATCH,
                                path: format!("/api/v1/namespaces/bench-watch/configmaps/{name}"),
                                ctype: Some(MERGE_PATCH),
                                body: body.into(),
                            },
                        )
                    }
                    8 => (
                        3,
                        Req::get("/api/v1/namespaces/bench-pods/pods?limit=500".into()),
                    ),
                    _ => {
                        let Some(name) = mine.pop_front() else {
                            continue;
                        };
                        (
                            4,
                            Req {
                                method: Method::DELETE,
                                path: format!("/api/v1/namespaces/bench-watch/configmaps/{name}"),
                                ctype: None,
                                body: Bytes::new(),
                            },
                        )
                    }
                };
                let t = Instant::now();
                let res = conn.send(&req.method, &req.path, req.ctype, req.body).await;
                let d = t.elapsed();
                match res {
                    Ok(r) if r.status.is_success() => lat[kind].push(d),
                    Ok(r) => {
                        errors += 1;
                        first_err.get_or_insert_with(|| {
                            format!(
                                "{} {}: {} {}",
                                req.method,
                                req.path,
                                r.status,
                                String::from_utf8_lossy(&r.body)
                            )
                        });
                    }
                    Err(e) => {
                        errors += 1;
                        first_err
                            .get_or_insert_with(|| format!("{} {}: {e:#}", req.method, req.path));
                    }
                }
            }
            (lat, errors, first_err)
        }));
    }
    let mut lat: [Vec<Duration>; 5] = Default::default();
    let mut errors = 0;
    let mut first_err = None;
    for t in tasks {
        let (l, e, f) = t.await?;
        for k in 0..5 {
            lat[k].extend_from_slice(&l[k]);
        }
        errors += e;
        if first_err.is_none() {
            first_err = f;
        }
    }
    let wall = start.elapsed();
    let (srv_cpu, bench_cpu) = cpu.finish(wall);
    let rss_kb = procs::status_kb(pid, "VmRSS").unwrap_or(0);
    if let Some(e) = first_err {
        eprintln!("  ! mixed: {errors} errors; first: {}", truncate(&e, 300));
    }
    let names = [
        "mixed: get pod",
        "mixed: create configmap",
        "mixed: patch configmap",
        "mixed: list 500 pods",
        "mixed: delete configmap",
    ];
    let mut all = Vec::new();
    for (k, mut l) in lat.into_iter().enumerate() {
        all.extend_from_slice(&l);
        l.sort();
        let p = Phase {
            name: names[k].into(),
            ok: l.len(),
            errors: 0,
            wall,
            lat: l,
            srv_cpu,
            bench_cpu,
            rss_kb,
        };
        eprintln!(
            "  {:<34} {:>7} ok {:>9.0}/s  p50 {:>7.2} ms  p99 {:>7.2} ms",
            p.name,
            p.ok,
            p.rate(),
            ms(p.pct(0.5)),
            ms(p.pct(0.99))
        );
        phases.push(p);
    }
    all.sort();
    phases.push(Phase {
        name: "mixed: all calls".into(),
        ok: all.len(),
        errors,
        wall,
        lat: all,
        srv_cpu,
        bench_cpu,
        rss_kb,
    });
    let _ = &phases.last().map(|p| {
        eprintln!(
            "  {:<34} {:>7} ok {:>9.0}/s  p50 {:>7.2} ms  p99 {:>7.2} ms",
            p.name,
            p.ok,
            p.rate(),
            ms(p.pct(0.5)),
            ms(p.pct(0.99))
        )
    });

    for t in &watch_tasks {
        t.abort();
    }
    drop(watch_tasks);
    server.check_alive()?;
    let (rss_end_kb, _) = settled_rss_kb(pid).await;
    let hwm_kb = procs::status_kb(pid, "VmHWM").unwrap_or(0);
    let db_bytes = dir_bytes(&data.join("db"));
    if linger > 0 {
        eprintln!("  --linger: server pid {pid} stays up {linger} s for inspection");
        tokio::time::sleep(Duration::from_secs(linger)).await;
    }
    drop(c);
    server.stop();
    Ok(SkiffResults {
        phases,
        rss_empty_kb,
        rss_pods_early_kb,
        rss_pods_kb,
        rss_end_kb,
        hwm_kb,
        full_list,
        full_list_bytes,
        list_cpu_ms,
        paged_cpu_ms,
        paged_list,
        paged_pages,
        page_lat,
        watch_events,
        watch_wall,
        watch_create_rate,
        watch_cpu,
        db_bytes,
    })
}

/// The server's RSS once it is idle: after its CPU use has dropped under 2% of a core
/// (checked each second, for at most a minute), plus 11 s, in which its trim thread (which
/// looks every 5 s) hands back what the work before touched. Returns the RSS in kB and how
/// long the wait took. What users see of an idle server is this, not the RSS straight after
/// a burst of requests.
async fn settled_rss_kb(pid: u32) -> (u64, Duration) {
    let start = Instant::now();
    let mut cpu = procs::cpu_secs(Some(pid));
    while start.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = procs::cpu_secs(Some(pid));
        let quiet = now - cpu < 0.02;
        cpu = now;
        if quiet {
            break;
        }
    }
    tokio::time::sleep(Duration::from_secs(11)).await;
    (procs::status_kb(pid, "VmRSS").unwrap_or(0), start.elapsed())
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn dir_bytes(p: &std::path::Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// etcd

async fn bench_etcd(
    bin: &std::path::Path,
    base: &std::path::Path,
    sz: &Sizes,
) -> anyhow::Result<Vec<Phase>> {
    let data = base.join("etcd-data");
    let port = procs::free_port()?;
    let peer = procs::free_port()?;
    let client_url = format!("http://127.0.0.1:{port}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let mut cmd = std::process::Command::new(bin);
    cmd.arg("--name")
        .arg("bench")
        .arg("--data-dir")
        .arg(&data)
        .args([
            "--listen-client-urls",
            &client_url,
            "--advertise-client-urls",
            &client_url,
        ])
        .args([
            "--listen-peer-urls",
            &peer_url,
            "--initial-advertise-peer-urls",
            &peer_url,
        ])
        .args(["--initial-cluster", &format!("bench={peer_url}")]);
    let mut etcd = Proc::spawn("etcd", cmd, &base.join("etcd.log"))?;
    let pid = etcd.pid();
    let target = Arc::new(Target::Plain {
        addr: format!("127.0.0.1:{port}").parse()?,
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        etcd.check_alive()?;
        if Instant::now() > deadline {
            bail!(
                "etcd did not become healthy in 30 s; log:\n{}",
                etcd.log_tail(20)
            );
        }
        if let Ok(mut c) = Conn::connect(target.clone()).await {
            if let Ok(r) = c.send(&Method::GET, "/health", None, Bytes::new()).await {
                if r.status.is_success() && contains(&r.body, b"true") {
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "etcd pid {pid} ready on {client_url} (data {})",
        data.display()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let b64 = |s: &[u8]| base64::engine::general_purpose::STANDARD.encode(s);
    let put = move |prefix: &'static str| -> Arc<dyn Fn(usize) -> Req + Send + Sync> {
        Arc::new(move |i| {
            let name = format!("cm-{i:06}");
            let key = format!("/registry/configmaps/{prefix}/{name}");
            let body = serde_json::to_vec(
                &serde_json::json!({"key": b64(key.as_bytes()), "value": b64(&configmap(&name))}),
            )
            .unwrap();
            Req::post("/v3/kv/put".into(), body)
        })
    };
    let mut phases = Vec::new();
    let seq = vec![Conn::connect(target.clone()).await?];
    let (p, _) = drive(
        "etcd put (sequential)",
        pid,
        seq,
        sz.seq_creates,
        put("bench-seq"),
    )
    .await?;
    phases.push(p);
    let conns = Conn::many(&target, CONCURRENCY).await?;
    let (p, _) = drive(
        &format!("etcd put ({CONCURRENCY}-way)"),
        pid,
        conns,
        sz.par_creates,
        put("bench-par"),
    )
    .await?;
    phases.push(p);
    let rss = procs::status_kb(pid, "VmRSS").unwrap_or(0);
    eprintln!("  etcd RSS after puts: {:.1} MB", rss as f64 / 1024.0);
    etcd.stop();
    Ok(phases)
}

// ---------------------------------------------------------------------------------------------

fn main() -> anyhow::Result<()> {
    let opts = parse_opts()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(opts))
}

async fn run(opts: Opts) -> anyhow::Result<()> {
    let sz = if opts.quick {
        Sizes {
            seq_creates: 300,
            par_creates: 3_000,
            seq_gets: 1_000,
            par_gets: 5_000,
            full_lists: 3,
            paged_lists: 2,
            watch_creates: 200,
            mixed_secs: 5,
        }
    } else {
        Sizes {
            seq_creates: 2_000,
            par_creates: 20_000,
            seq_gets: 5_000,
            par_gets: 30_000,
            full_lists: 10,
            paged_lists: 5,
            watch_creates: 1_000,
            mixed_secs: 20,
        }
    };
    let skiff = match &opts.skiff {
        Some(p) => p.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("exe dir")?
            .join("skiff"),
    };
    if !skiff.is_file() {
        bail!(
            "no skiff binary at {} — build it first with `cargo build --release -p skiff` (same CARGO_TARGET_DIR), or pass --skiff PATH",
            skiff.display()
        );
    }
    let base = match &opts.dir {
        Some(d) => tempfile::Builder::new()
            .prefix("skiff-bench-")
            .tempdir_in(d)?,
        None => tempfile::Builder::new().prefix("skiff-bench-").tempdir()?,
    };
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    eprintln!(
        "skiff-bench{}: {} pods, {CONCURRENCY}-way, {WATCHERS} watchers, {cores} cores; temp dir {}",
        if opts.quick { " --quick" } else { "" },
        opts.pods,
        base.path().display()
    );

    let load_start = loadavg();
    let s = bench_skiff(&skiff, base.path(), opts.pods, &sz, opts.linger).await?;

    let etcd_bin = if opts.no_etcd {
        None
    } else {
        opts.etcd.clone().or_else(|| procs::which("etcd"))
    };
    let etcd = match &etcd_bin {
        Some(bin) => Some(bench_etcd(bin, base.path(), &sz).await?),
        None => {
            eprintln!(
                "NOTE: etcd not run ({}); install Debian `etcd-server` (apt-get install etcd-server) for the side-by-side figures",
                if opts.no_etcd { "--no-etcd" } else { "no `etcd` on PATH" }
            );
            None
        }
    };

    print_report(&opts, &sz, &s, etcd.as_deref(), cores);
    println!("machine load average (1 min) at start {load_start}, at end {}: other work on this machine competes for the same cores", loadavg());
    Ok(())
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_default()
}

fn find<'a>(phases: &'a [Phase], name: &str) -> &'a Phase {
    phases
        .iter()
        .find(|p| p.name.starts_with(name))
        .expect("phase")
}

fn print_report(opts: &Opts, sz: &Sizes, s: &SkiffResults, etcd: Option<&[Phase]>, cores: usize) {
    println!();
    println!(
        "skiff-bench{} — {} pods held, {CONCURRENCY}-way concurrency, {WATCHERS} watchers, {cores} CPU cores (client and server share them)",
        if opts.quick { " --quick" } else { "" },
        opts.pods
    );
    println!();
    println!(
        "{:<36} {:>7} {:>5} {:>10} {:>8} {:>8} {:>8} {:>8} {:>6} {:>6} {:>9} {:>7}",
        "phase",
        "ok",
        "err",
        "ops/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "srv",
        "bench",
        "srv µs/op",
        "RSS MB"
    );
    let row =
        |p: &Phase| {
            println!(
            "{:<36} {:>7} {:>5} {:>10.0} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>6} {:>6} {:>9} {:>7.1}",
            p.name,
            p.ok,
            p.errors,
            p.rate(),
            ms(p.pct(0.5)),
            ms(p.pct(0.9)),
            ms(p.pct(0.99)),
            ms(p.lat.last().copied().unwrap_or_default()),
            if p.srv_cpu > 0.0 { format!("{:.2}", p.srv_cpu) } else { "-".into() },
            if p.bench_cpu > 0.0 { format!("{:.2}", p.bench_cpu) } else { "-".into() },
            if p.srv_cpu > 0.0 && !p.name.starts_with("mixed: ") || p.name == "mixed: all calls" {
                format!("{:.0}", p.srv_cpu * p.wall.as_secs_f64() * 1e6 / p.ok.max(1) as f64)
            } else {
                "-".into()
            },
            p.rss_kb as f64 / 1024.0,
        )
        };
    for p in &s.phases {
        row(p);
    }
    if let Some(e) = etcd {
        for p in e {
            row(p);
        }
    }
    println!("(srv/bench = CPU cores used by the server under test / by this benchmark process during the phase;");
    println!(" srv µs/op = server CPU time per successful call, which other load on the machine does not inflate much;");
    println!(" RSS MB = resident memory of the server process right after the phase)");
    println!();
    println!(
        "list {} pods, one response ({:.1} MB): min {:.1} ms, median {:.1} ms, max {:.1} ms over {} lists; server CPU {:.0} ms per list",
        opts.pods,
        s.full_list_bytes as f64 / 1048576.0,
        ms(s.full_list[0]),
        ms(pct(&s.full_list, 0.5)),
        ms(*s.full_list.last().unwrap()),
        s.full_list.len(),
        s.list_cpu_ms
    );
    println!(
        "list {} pods, limit=500 ({} pages): median {:.1} ms for all pages (page p50 {:.1} ms, p99 {:.1} ms) over {} lists; server CPU {:.0} ms per list",
        opts.pods,
        s.paged_pages,
        ms(pct(&s.paged_list, 0.5)),
        ms(pct(&s.page_lat, 0.5)),
        ms(pct(&s.page_lat, 0.99)),
        s.paged_list.len(),
        s.paged_cpu_ms
    );
    println!(
        "{WATCHERS} watchers: {} events delivered in {:.2} s = {:.0} events/s (creates {:.0}/s; srv {:.2} cores, bench {:.2})",
        s.watch_events,
        s.watch_wall.as_secs_f64(),
        s.watch_events as f64 / s.watch_wall.as_secs_f64(),
        s.watch_create_rate,
        s.watch_cpu.0,
        s.watch_cpu.1
    );
    println!(
        "server RSS: {:.1} MB empty; holding {} pods {:.1} MB 5 s after creating them, {:.1} MB idle (settled); {:.1} MB idle at the end; peak {:.1} MB; store files {:.1} MB",
        s.rss_empty_kb as f64 / 1024.0,
        opts.pods,
        s.rss_pods_early_kb as f64 / 1024.0,
        s.rss_pods_kb as f64 / 1024.0,
        s.rss_end_kb as f64 / 1024.0,
        s.hwm_kb as f64 / 1024.0,
        s.db_bytes as f64 / 1048576.0
    );
    let _ = sz;

    // Goals of issue 2.
    println!();
    println!(
        "{:<52} {:>14} {:>14} {:>6}",
        "goal (issue 2)", "target", "measured", "met"
    );
    let goal = |name: &str, target: String, measured: String, met: bool| {
        println!(
            "{:<52} {:>14} {:>14} {:>6}",
            name,
            target,
            measured,
            if met { "yes" } else { "NO" }
        );
    };
    let par = find(&s.phases, "create configmaps (32");
    goal(
        ">= 5,000 durable creates/s at 32-way",
        ">= 5000/s".into(),
        format!("{:.0}/s", par.rate()),
        par.rate() >= 5000.0,
    );
    if let Some(e) = etcd {
        let ep = find(e, "etcd put (32");
        goal(
            "creates/s at 32-way > etcd puts/s",
            format!("> {:.0}/s", ep.rate()),
            format!("{:.0}/s", par.rate()),
            par.rate() > ep.rate(),
        );
        let es = find(e, "etcd put (seq");
        let ss = find(&s.phases, "create configmaps (seq");
        goal(
            "(sequential: creates/s vs etcd puts/s)",
            format!("etcd {:.0}/s", es.rate()),
            format!("{:.0}/s", ss.rate()),
            ss.rate() > es.rate(),
        );
    }
    let fl = pct(&s.full_list, 0.5);
    goal(
        &format!("list {} pods (one response, median)", opts.pods),
        "< 200 ms".into(),
        format!("{:.1} ms", ms(fl)),
        ms(fl) < 200.0,
    );
    let pl = pct(&s.paged_list, 0.5);
    goal(
        &format!("list {} pods (limit=500, all pages, median)", opts.pods),
        "< 200 ms".into(),
        format!("{:.1} ms", ms(pl)),
        ms(pl) < 200.0,
    );
    let rss = s.rss_pods_kb as f64 / 1024.0;
    goal(
        &format!("idle RSS holding {} pods", opts.pods),
        "< 50 MB".into(),
        format!("{rss:.1} MB"),
        rss < 50.0,
    );
    let rss_end = s.rss_end_kb as f64 / 1024.0;
    goal(
        "idle RSS at the end (all objects, after load)",
        "< 50 MB".into(),
        format!("{rss_end:.1} MB"),
        rss_end < 50.0,
    );
    let mut worst: Option<&Phase> = None;
    for p in s
        .phases
        .iter()
        .filter(|p| p.name.starts_with("mixed:") && p.name != "mixed: all calls")
    {
        if worst.is_none_or(|w| p.pct(0.99) > w.pct(0.99)) {
            worst = Some(p);
        }
    }
    let all = find(&s.phases, "mixed: all calls");
    goal(
        "p99 of all calls under mixed load",
        "< 50 ms".into(),
        format!("{:.1} ms", ms(all.pct(0.99))),
        ms(all.pct(0.99)) < 50.0,
    );
    if let Some(w) = worst {
        goal(
            &format!(
                "p99 of the slowest call kind ({})",
                w.name.trim_start_matches("mixed: ")
            ),
            "< 50 ms".into(),
            format!("{:.1} ms", ms(w.pct(0.99))),
            ms(w.pct(0.99)) < 50.0,
        );
    }
    let mut worst_all: Option<&Phase> = None;
    for p in s
        .phases
        .iter()
        .filter(|p| !p.name.starts_with("mixed: all"))
    {
        if worst_all.is_none_or(|w| p.pct(0.99) > w.pct(0.99)) {
            worst_all = Some(p);
        }
    }
    if let Some(w) = worst_all {
        goal(
            &format!("p99, worst phase ({})", w.name),
            "< 50 ms".into(),
            format!("{:.1} ms", ms(w.pct(0.99))),
            ms(w.pct(0.99)) < 50.0,
        );
    }
    println!();
    println!(
        "(full-list requests are not in the p99 rows; their times are the list figures above)"
    );
}
