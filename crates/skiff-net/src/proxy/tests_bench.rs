//! Benchmark: HTTP requests/s through a ClusterIP vs straight to the pod IP, same backend, in
//! one run (issue 6's goal: at least 0.95x).
//!
//! Ignored by default (needs root and `wrk`; wants a release build):
//! `cargo test --release -p skiff-net bench_cluster_ip_vs_pod_ip -- --ignored --nocapture`.
//! Knobs: `BENCH_SECS` (5), `BENCH_CONNS` (32), `BENCH_ROUNDS` (3).
//!
//! The client namespace reaches both addresses through the node namespace (routing, and for
//! the ClusterIP the node's `table ip skiff` DNAT), so the only difference between the two
//! is the proxy's rules.

use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::process::Command;

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use hyper_util::rt::TokioIo;

use super::tests_netns::{Topology, POD_A};
use super::tests_rules::svc;
use super::*;
use crate::ingress::tests_bench::{env_or, have, parse_wrk, Figures, BODY};
use crate::nft::testns::can_run;
use crate::nft::NetlinkBackend;

const BENCH_CIP: Ipv4Addr = Ipv4Addr::new(10, 43, 0, 50);
const BACKEND_PORT: u16 = 8081;

/// A hyper HTTP/1.1 keep-alive backend on 0.0.0.0:8081 inside the namespace at `netns`,
/// on its own thread and single-thread runtime, for the life of the process.
fn start_backend_in(netns: std::path::PathBuf) {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let file = std::fs::File::open(&netns).expect("open netns");
        nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::bind(("0.0.0.0", BACKEND_PORT)).await.unwrap();
            ready_tx.send(()).unwrap();
            loop {
                let Ok((s, _)) = l.accept().await else { continue };
                let _ = s.set_nodelay(true);
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(|_req| async {
                        Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from_static(BODY))))
                    });
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(s), svc).await;
                });
            }
        });
    });
    ready_rx.recv().expect("backend started");
}

fn wrk_in(netns: &str, url: &str, secs: u64, conns: u64) -> Figures {
    let out = Command::new("ip")
        .args(["netns", "exec", netns, "wrk", "-t2", &format!("-c{conns}"), &format!("-d{secs}s"), "--latency", url])
        .output()
        .expect("run wrk");
    let text = String::from_utf8_lossy(&out.stdout);
    parse_wrk(&text).unwrap_or_else(|| panic!("cannot parse wrk output:\n{text}{}", String::from_utf8_lossy(&out.stderr)))
}

#[test]
#[ignore = "benchmark: needs root and wrk; run with --release -- --ignored --nocapture"]
fn bench_cluster_ip_vs_pod_ip() {
    if !can_run() || !have("wrk") {
        eprintln!("skipping: needs root, ip, nft and wrk");
        return;
    }
    let (secs, conns, rounds) = (env_or("BENCH_SECS", 5), env_or("BENCH_CONNS", 32), env_or("BENCH_ROUNDS", 3));
    let topo = Topology::new();
    start_backend_in(topo.pods[0].path());
    let cfg = ProxyConfig { node_name: "node".into(), node_ips: vec![Ipv4Addr::new(192, 168, 77, 1)], ..Default::default() };
    let mut proxy = ServiceProxy::new(cfg, NetlinkBackend::in_netns(&topo.node.path()).expect("backend")).expect("proxy");
    let endpoint = Endpoint { ip: POD_A, port: BACKEND_PORT, ready: true, serving: true, terminating: false, is_local: true };
    // A realistic table: the benchmarked Service among 1,000 others.
    let mut services: Vec<ServicePort> = (0..1000u32)
        .map(|i| svc(&format!("filler{i}"), Ipv4Addr::new(10, 43, 100 + (i / 250) as u8, (i % 250) as u8 + 1), vec![endpoint.clone()]))
        .collect();
    services.push(svc("bench", BENCH_CIP, vec![endpoint]));
    proxy.sync(&ProxyState { services, host_ports: vec![] }).expect("sync");

    let pod_url = format!("http://{POD_A}:{BACKEND_PORT}/");
    let cip_url = format!("http://{BENCH_CIP}/");
    // Warm both paths (ARP, conntrack, the backend's runtime).
    wrk_in(&topo.client.name, &pod_url, 1, conns);
    wrk_in(&topo.client.name, &cip_url, 1, conns);
    println!("wrk -t2 -c{conns} -d{secs}s from a client namespace through a node namespace; 1,001 Services programmed");
    println!("{:<6} {:>12} {:>9} {:>9}   {:>12} {:>9} {:>9}   {:>6}", "round", "pod IP rps", "p50 ms", "p99 ms", "ClusterIP", "p50 ms", "p99 ms", "ratio");
    let mut ratios = Vec::new();
    for round in 1..=rounds {
        // Alternate the order so drift on the machine does not favour one side.
        let (pod, cip) = if round % 2 == 1 {
            let p = wrk_in(&topo.client.name, &pod_url, secs, conns);
            (p, wrk_in(&topo.client.name, &cip_url, secs, conns))
        } else {
            let c = wrk_in(&topo.client.name, &cip_url, secs, conns);
            (wrk_in(&topo.client.name, &pod_url, secs, conns), c)
        };
        assert_eq!(pod.non2xx + cip.non2xx, 0, "errors during the run");
        let ratio = cip.rps / pod.rps;
        ratios.push(ratio);
        println!(
            "{round:<6} {:>12.0} {:>9.2} {:>9.2}   {:>12.0} {:>9.2} {:>9.2}   {ratio:>6.3}",
            pod.rps, pod.p50_ms, pod.p99_ms, cip.rps, cip.p50_ms, cip.p99_ms
        );
    }
    ratios.sort_by(f64::total_cmp);
    let median = ratios[ratios.len() / 2];
    println!("median ClusterIP / pod IP requests/s: {median:.3} (goal >= 0.95: {})", if median >= 0.95 { "met" } else { "NOT met" });
}
