//! A bounded load measurement of in-cluster A lookups over loopback UDP. Ignored by default
//! because it measures rather than checks; run it with
//! `cargo test --release -- --ignored --nocapture dns_load`.

use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::watch;

use super::*;
use crate::dns::{DnsConfig, DnsServer};

const CLIENTS: usize = 8;
const RUN_FOR: Duration = Duration::from_secs(2);

/// One client: a query in flight at a time, latency recorded per answer.
async fn client(
    server: std::net::SocketAddr,
    n: usize,
    deadline: Instant,
) -> (Vec<Duration>, usize) {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.connect(server).await.unwrap();
    let names = [
        "web.shop.svc.cluster.local",
        "redis.shop.svc.cluster.local",
        "redis-0.redis.shop.svc.cluster.local",
    ];
    let mut lat = Vec::with_capacity(100_000);
    let mut lost = 0;
    let mut buf = [0u8; 1500];
    let mut id: u16 = n as u16 * 7919;
    while Instant::now() < deadline {
        id = id.wrapping_add(1);
        let q = build_query(id, names[id as usize % names.len()], TYPE_A, None);
        let t = Instant::now();
        sock.send(&q).await.unwrap();
        match tokio::time::timeout(Duration::from_millis(500), sock.recv(&mut buf)).await {
            Ok(Ok(len)) if len > 12 && buf[..2] == id.to_be_bytes() => lat.push(t.elapsed()),
            _ => lost += 1,
        }
    }
    (lat, lost)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; prints queries/s and latency percentiles"]
async fn dns_load() {
    let cfg = DnsConfig {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        ..Default::default()
    };
    let server = DnsServer::bind(cfg).await.unwrap();
    server.update(fixture());
    let addr = server.local_addrs()[0];
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(server.run(rx));

    let start = Instant::now();
    let deadline = start + RUN_FOR;
    let runs: Vec<_> = (0..CLIENTS)
        .map(|n| tokio::spawn(client(addr, n, deadline)))
        .collect();
    let mut all = Vec::new();
    let mut lost = 0;
    for r in runs {
        let (lat, l) = r.await.unwrap();
        all.extend(lat);
        lost += l;
    }
    let secs = start.elapsed().as_secs_f64();
    stop.send(true).unwrap();
    task.await.unwrap();

    all.sort();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    println!(
        "dns_load: {CLIENTS} clients, {secs:.2} s, {} answers, {:.0} queries/s, p50 {:?}, p99 {:?}, max {:?}, lost {lost}",
        all.len(),
        all.len() as f64 / secs,
        pct(0.50),
        pct(0.99),
        all.last().unwrap(),
    );
    assert!(!all.is_empty());
}
