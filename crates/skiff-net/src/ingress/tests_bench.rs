//! Benchmark: this proxy vs Debian nginx in front of the same backend, measured with wrk.
//!
//! Ignored by default (needs `wrk` and `nginx`, takes ~30 s, and wants a release build):
//! `cargo test --release ingress::tests_bench -- --ignored --nocapture`.
//! Knobs: `BENCH_SECS` (default 5), `BENCH_CONNS` (32), `BENCH_ROUNDS` (3), `BENCH_WORKERS` (2,
//! matching nginx's `worker_processes 2`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::tests_routes::{ingress, service, slice};
use super::{build_routes, IngressConfig, IngressServer};

/// The backend body: small, like an API response.
pub(crate) const BODY: &[u8] =
    b"{\"status\":\"ok\",\"service\":\"bench-backend\",\"items\":[1,2,3,4,5,6,7,8]}\n";

pub(crate) fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub(crate) fn have(cmd: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {cmd}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// One wrk run's figures.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Figures {
    pub(crate) rps: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) non2xx: u64,
}

fn parse_latency(v: &str) -> Option<f64> {
    let (num, unit) = v.split_at(v.find(|c: char| c.is_ascii_alphabetic())?);
    let n: f64 = num.parse().ok()?;
    Some(match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        "m" => n * 60_000.0,
        _ => return None,
    })
}

pub(crate) fn parse_wrk(out: &str) -> Option<Figures> {
    let mut f = Figures {
        rps: 0.0,
        p50_ms: 0.0,
        p99_ms: 0.0,
        non2xx: 0,
    };
    for line in out.lines().map(str::trim) {
        let mut parts = line.split_whitespace();
        match (parts.next(), parts.next()) {
            (Some("Requests/sec:"), Some(v)) => f.rps = v.parse().ok()?,
            (Some("50%"), Some(v)) => f.p50_ms = parse_latency(v)?,
            (Some("99%"), Some(v)) => f.p99_ms = parse_latency(v)?,
            (Some("Non-2xx"), _) => f.non2xx = line.rsplit(' ').next()?.parse().ok()?,
            _ => {}
        }
    }
    (f.rps > 0.0).then_some(f)
}

fn wrk(url: &str, secs: u64, conns: u64) -> Figures {
    let out = Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{conns}"),
            &format!("-d{secs}s"),
            "--latency",
            url,
        ])
        .output()
        .expect("run wrk");
    let text = String::from_utf8_lossy(&out.stdout);
    parse_wrk(&text).unwrap_or_else(|| panic!("cannot parse wrk output:\n{text}"))
}

/// CPU time (user + system) used so far by the tasks or processes whose `/proc` directories
/// are given, in microseconds. 0 for any that are gone.
fn cpu_us(dirs: &[PathBuf]) -> u64 {
    let tck = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as u64;
    let ticks: u64 = dirs
        .iter()
        .filter_map(|d| std::fs::read_to_string(d.join("stat")).ok())
        .map(|s| {
            // Fields after the parenthesised command: state is field 3, utime 14, stime 15.
            let rest = s.rsplit_once(')').map_or("", |(_, r)| r);
            let f: Vec<&str> = rest.split_whitespace().collect();
            let at = |i: usize| {
                f.get(i - 3)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            at(14) + at(15)
        })
        .sum();
    ticks * 1_000_000 / tck
}

/// This process's threads whose name starts with `prefix`.
fn own_threads(prefix: &str) -> Vec<PathBuf> {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| std::fs::read_to_string(p.join("comm")).is_ok_and(|c| c.starts_with(prefix)))
        .collect()
}

/// The processes whose parent is `ppid` (nginx's workers).
fn children(ppid: u32) -> Vec<PathBuf> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            std::fs::read_to_string(p.join("stat")).is_ok_and(|s| {
                let rest = s.rsplit_once(')').map_or("", |(_, r)| r);
                rest.split_whitespace().nth(1) == Some(ppid.to_string().as_str())
            })
        })
        .collect()
}

/// The 1, 5 and 15 minute load averages: the machine is shared, so figures need them.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn nginx_conf(dir: &Path, listen: SocketAddr, backend: SocketAddr) -> String {
    // A typical reverse-proxy setup, tuned the way an operator would: upstream keep-alive,
    // no access log, as many workers as cores, same forwarded headers as ours.
    let d = dir.display();
    format!(
        "worker_processes 2;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
           fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
           keepalive_requests 100000;\n\
           upstream be {{ server {backend}; keepalive 128; keepalive_requests 100000; }}\n\
           server {{\n    listen {listen};\n    location / {{\n      proxy_pass http://be;\n\
               proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n\
               proxy_set_header Host $host;\n      proxy_set_header X-Real-IP $remote_addr;\n\
               proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n\
               proxy_set_header X-Forwarded-Proto $scheme;\n      proxy_set_header X-Forwarded-Host $host;\n\
               proxy_set_header X-Forwarded-Port $server_port;\n    }}\n  }}\n}}\n"
    )
}

/// nginx as a child process, stopped by PID (TERM, then wait) when dropped.
struct Nginx {
    child: Child,
    dir: PathBuf,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

fn start_nginx(backend: SocketAddr) -> (Nginx, SocketAddr) {
    let dir = std::env::temp_dir().join(format!("skiff-ingress-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let listen = free_port();
    let conf = dir.join("nginx.conf");
    std::fs::write(&conf, nginx_conf(&dir, listen, backend)).unwrap();
    let child = Command::new("nginx")
        .args([
            "-c",
            conf.to_str().unwrap(),
            "-p",
            dir.to_str().unwrap(),
            "-g",
            "daemon off;",
        ])
        .stdout(Stdio::null())
        .spawn()
        .expect("start nginx");
    let nginx = Nginx { child, dir };
    for _ in 0..100 {
        if std::net::TcpStream::connect(listen).is_ok() {
            return (nginx, listen);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nginx did not start listening on {listen}");
}

/// The shared backend: hyper HTTP/1.1 with keep-alive, on its own single-thread runtime.
fn start_backend() -> (
    SocketAddr,
    std::thread::JoinHandle<()>,
    tokio::sync::oneshot::Sender<()>,
) {
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("bench-backend".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(l.local_addr().unwrap()).unwrap();
                loop {
                    let (s, _) = tokio::select! {
                        r = l.accept() => r.unwrap(),
                        _ = &mut stop_rx => return,
                    };
                    let _ = s.set_nodelay(true);
                    tokio::spawn(async move {
                        let svc = hyper::service::service_fn(|_req| async {
                            Ok::<_, std::convert::Infallible>(Response::new(Full::new(
                                Bytes::from_static(BODY),
                            )))
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(s), svc)
                            .await;
                    });
                }
            });
        })
        .unwrap();
    (addr_rx.recv().unwrap(), thread, stop_tx)
}

#[test]
#[ignore = "benchmark: needs wrk and nginx; run with --release -- --ignored --nocapture"]
fn bench_ingress_vs_nginx() {
    if !have("wrk") || !have("nginx") {
        eprintln!("skipping: wrk or nginx not installed (apt-get install -y wrk nginx-light)");
        return;
    }
    let secs = env_or("BENCH_SECS", 5);
    let conns = env_or("BENCH_CONNS", 32);
    let rounds = env_or("BENCH_ROUNDS", 3);
    let (backend, backend_thread, backend_stop) = start_backend();

    // Our proxy on its own thread and runtime (2 workers, like nginx's 2 worker processes).
    let (stop, stop_rx) = watch::channel(false);
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let proxy_thread = std::thread::spawn(move || {
        // Only drives bind and the accept loops' startup; the proxy runs on its worker threads.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let server = IngressServer::bind(IngressConfig {
                http: "127.0.0.1:0".parse().unwrap(),
                https: "127.0.0.1:0".parse().unwrap(),
                workers: env_or("BENCH_WORKERS", 2) as usize,
                ..IngressConfig::default()
            })
            .await
            .unwrap();
            let svc = service("default", "be", json!([{"port": 80, "targetPort": backend.port()}]));
            let sl = slice("default", "be", json!([{"port": backend.port()}]), json!([{"addresses": ["127.0.0.1"]}]));
            let ing = ingress(json!({"metadata": {"namespace": "default", "name": "bench"}, "spec": {"rules": [{"http": {"paths": [
                {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "be", "port": {"number": 80}}}}
            ]}}]}}));
            let (routes, w) = build_routes(&[ing], &[svc], &[sl], &[], "skiff", true);
            assert!(w.is_empty(), "{w:?}");
            server.handle().update(routes);
            addr_tx.send(server.local_addrs().0).unwrap();
            server.run(stop_rx).await;
        });
    });
    let ours = addr_rx.recv().unwrap();
    let (nginx, nginx_addr) = start_nginx(backend);
    // Whose CPU time each row's proxy column counts: CPU per request is steadier than
    // requests/s on a shared machine, where other load takes a varying share of the cores.
    let proxies = [
        Vec::new(),
        own_threads("skiff-ingress"),
        children(nginx.child.id()),
    ];
    let backend_thread_dir = own_threads("bench-backend");

    let urls = [
        ("backend (direct)", format!("http://{backend}/")),
        ("skiff ingress", format!("http://{ours}/")),
        ("nginx 1.22 proxy", format!("http://{nginx_addr}/")),
    ];
    // Warm-up: connection pools, page cache, CPU frequency.
    for (_, url) in &urls {
        wrk(url, 1, conns);
    }
    let cmd = format!("wrk -t2 -c{conns} -d{secs}s --latency <url>");
    println!(
        "\n{cmd}; backend: hyper HTTP/1.1, {}-byte body; {rounds} rounds; load average before: {}",
        BODY.len(),
        loadavg()
    );
    let mut sums = [(0.0f64, 0.0f64); 3];
    for round in 1..=rounds {
        let mut rps = [0.0f64; 3];
        // Alternate the proxies' order so that neither always runs right after the other.
        let order: [usize; 3] = if round % 2 == 1 { [0, 1, 2] } else { [0, 2, 1] };
        for i in order {
            let (name, url) = &urls[i];
            let (p0, b0) = (cpu_us(&proxies[i]), cpu_us(&backend_thread_dir));
            let f = wrk(url, secs, conns);
            let (p1, b1) = (cpu_us(&proxies[i]), cpu_us(&backend_thread_dir));
            let reqs = f.rps * secs as f64;
            println!(
                "round {round} {name:<18} {:>10.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms  non-2xx {}  cpu/req: proxy {:>5.1} us, backend {:>5.1} us",
                f.rps, f.p50_ms, f.p99_ms, f.non2xx,
                (p1 - p0) as f64 / reqs, (b1 - b0) as f64 / reqs
            );
            assert_eq!(f.non2xx, 0, "{name} returned errors");
            sums[i].0 += f.rps;
            sums[i].1 += f.p99_ms;
            rps[i] = f.rps;
        }
        println!(
            "round {round} skiff/nginx requests/s: {:.2}",
            rps[1] / rps[2]
        );
    }
    let n = rounds as f64;
    println!("mean:");
    for (i, (name, _)) in urls.iter().enumerate() {
        println!(
            "  {name:<18} {:>10.0} req/s  p99 {:>6.2} ms",
            sums[i].0 / n,
            sums[i].1 / n
        );
    }
    println!("skiff/nginx requests/s ratio: {:.2}", sums[1].0 / sums[2].0);
    println!("load average after: {}", loadavg());

    drop(nginx);
    let _ = stop.send(true);
    let _ = proxy_thread.join();
    let _ = backend_stop.send(());
    let _ = backend_thread.join();
}

#[test]
fn wrk_output_parses() {
    let out = "Running 5s test @ http://127.0.0.1:1/\n  2 threads and 32 connections\n  Thread Stats   Avg      Stdev     Max   +/- Stdev\n    Latency   310.12us  200.00us   5.00ms   90.00%\n  Latency Distribution\n     50%  250.00us\n     75%  300.00us\n     90%  400.00us\n     99%    1.20ms\n  100000 requests in 5.00s, 20.00MB read\n  Non-2xx or 3xx responses: 7\nRequests/sec:  20000.50\nTransfer/sec:      4.00MB\n";
    let f = parse_wrk(out).unwrap();
    assert_eq!(f.rps, 20000.5);
    assert_eq!(f.p50_ms, 0.25);
    assert_eq!(f.p99_ms, 1.2);
    assert_eq!(f.non2xx, 7);
    assert!(parse_wrk("garbage").is_none());
}
