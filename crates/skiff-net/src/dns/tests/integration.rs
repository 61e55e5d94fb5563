//! The server over real loopback sockets, with a fake upstream resolver on another port.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::watch;

use super::*;
use crate::dns::{DnsConfig, DnsHandle, DnsServer};

/// A fake upstream: `nN.example.com` answers N A records (192.0.2.x), anything else one record
/// 192.0.2.1, `nx.example.com` NXDOMAIN. Over UDP an answer over 512 bytes comes back empty with
/// TC, forcing the TCP retry.
struct FakeUpstream {
    addr: SocketAddr,
    udp_queries: Arc<AtomicUsize>,
    tcp_queries: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.tasks.iter().for_each(|t| t.abort());
    }
}

fn fake_answer(query: &[u8], limit: usize) -> Vec<u8> {
    let mut qname = String::new();
    let req = parse_request(query, &mut qname).unwrap();
    let count = qname
        .strip_prefix('n')
        .and_then(|r| r.split('.').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(1u8);
    let mut s = Sections::default();
    if qname == "nx.example.com" {
        s.rcode = RCODE_NXDOMAIN;
    } else {
        s.answers = (0..count)
            .map(|i| Rr {
                name: qname.clone().into(),
                ttl: 60,
                data: RData::A(Ipv4Addr::new(192, 0, 2, i + 1)),
            })
            .collect();
    }
    let mut out = Vec::new();
    write_response(&mut out, &req, &s, limit);
    out
}

async fn fake_upstream() -> FakeUpstream {
    // The UDP port picked by the kernel may be taken for TCP by someone else: try again.
    let (udp, tcp) = {
        let mut attempt = 0;
        loop {
            let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let addr = udp.local_addr().unwrap();
            match TcpListener::bind(addr).await {
                Ok(tcp) => break (udp, tcp),
                Err(e) if attempt < 50 => {
                    attempt += 1;
                    let _ = e;
                }
                Err(e) => panic!("no port free for both UDP and TCP: {e}"),
            }
        }
    };
    let addr = udp.local_addr().unwrap();
    let (uq, tq) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let uq2 = uq.clone();
    let udp_task = tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok((n, peer)) = udp.recv_from(&mut buf).await {
            uq2.fetch_add(1, Ordering::SeqCst);
            let _ = udp.send_to(&fake_answer(&buf[..n], 512), peer).await;
        }
    });
    let tq2 = tq.clone();
    let tcp_task = tokio::spawn(async move {
        while let Ok((mut s, _)) = tcp.accept().await {
            tq2.fetch_add(1, Ordering::SeqCst);
            let len = s.read_u16().await.unwrap() as usize;
            let mut q = vec![0u8; len];
            s.read_exact(&mut q).await.unwrap();
            let resp = fake_answer(&q, 65535);
            s.write_u16(resp.len() as u16).await.unwrap();
            s.write_all(&resp).await.unwrap();
        }
    });
    FakeUpstream {
        addr,
        udp_queries: uq,
        tcp_queries: tq,
        tasks: vec![udp_task, tcp_task],
    }
}

struct Running {
    addr: SocketAddr,
    handle: DnsHandle,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

async fn start(upstreams: Vec<SocketAddr>) -> Running {
    let cfg = DnsConfig {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        upstreams,
        ..Default::default()
    };
    let server = DnsServer::bind(cfg).await.unwrap();
    server.update(fixture());
    let addr = server.local_addrs()[0];
    let handle = server.handle();
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(server.run(rx));
    Running {
        addr,
        handle,
        stop,
        task,
    }
}

async fn udp_ask(server: SocketAddr, query: &[u8]) -> Option<Vec<u8>> {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(query, server).await.unwrap();
    let mut buf = vec![0u8; 65535];
    let n = tokio::time::timeout(Duration::from_secs(5), sock.recv(&mut buf))
        .await
        .ok()?
        .unwrap();
    buf.truncate(n);
    Some(buf)
}

async fn udp_msg(server: SocketAddr, name: &str, qtype: u16, edns: Option<u16>) -> Message {
    decode(
        &udp_ask(server, &build_query(0xBEEF, name, qtype, edns))
            .await
            .expect("udp answer"),
    )
    .unwrap()
}

async fn tcp_msgs(server: SocketAddr, queries: &[Vec<u8>]) -> Vec<Message> {
    let mut s = TcpStream::connect(server).await.unwrap();
    // All queries first, then all answers: pipelining on one connection must work.
    for q in queries {
        s.write_u16(q.len() as u16).await.unwrap();
        s.write_all(q).await.unwrap();
    }
    let mut out = Vec::new();
    for _ in queries {
        let len = s.read_u16().await.unwrap() as usize;
        let mut buf = vec![0u8; len];
        s.read_exact(&mut buf).await.unwrap();
        out.push(decode(&buf).unwrap());
    }
    out
}

#[tokio::test]
async fn udp_and_tcp_answer_cluster_names() {
    let srv = start(vec![]).await;
    let m = udp_msg(srv.addr, "web.shop.svc.cluster.local", TYPE_A, None).await;
    assert_eq!(
        (m.id, ips(&m.answers)),
        (0xBEEF, vec!["10.43.1.5".to_string()])
    );
    let q1 = build_query(1, "redis-0.redis.shop.svc.cluster.local", TYPE_A, None);
    let q2 = build_query(2, "big.shop.svc.cluster.local", TYPE_A, None);
    let ms = tcp_msgs(srv.addr, &[q1, q2]).await;
    assert_eq!(ips(&ms[0].answers), ["10.42.0.10"]);
    assert_eq!(
        (ms[1].id, ms[1].answers.len(), ms[1].tc()),
        (2, 60, false),
        "tcp is not truncated"
    );
    let tc = udp_msg(srv.addr, "big.shop.svc.cluster.local", TYPE_A, None).await;
    assert!(tc.tc());
    let text = srv.handle.metrics_text();
    assert!(
        text.contains("skiff_dns_requests_total{proto=\"tcp\"} 2\n"),
        "{text}"
    );
    assert!(
        text.contains("skiff_dns_truncated_responses_total 1\n"),
        "{text}"
    );
    srv.stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(2), srv.task)
        .await
        .expect("run returns on shutdown")
        .unwrap();
}

#[tokio::test]
async fn forwards_outside_names_and_restores_the_id() {
    let up = fake_upstream().await;
    let srv = start(vec![up.addr]).await;
    let m = udp_msg(srv.addr, "www.example.com", TYPE_A, None).await;
    assert_eq!(m.id, 0xBEEF);
    assert_eq!(m.rcode, RCODE_NOERROR);
    assert_eq!(ips(&m.answers), ["192.0.2.1"]);
    assert!(!m.aa(), "forwarded answers are not ours");
    let nx = udp_msg(srv.addr, "nx.example.com", TYPE_A, None).await;
    assert_eq!(nx.rcode, RCODE_NXDOMAIN);
    // Unknown reverse names fall through to the upstream too.
    udp_msg(srv.addr, "9.9.9.10.in-addr.arpa", TYPE_PTR, None).await;
    assert_eq!(up.udp_queries.load(Ordering::SeqCst), 3);
    assert_eq!(srv.handle.metrics().forwarded(), 3);
    // TCP clients are forwarded over TCP.
    let ms = tcp_msgs(srv.addr, &[build_query(9, "www.example.com", TYPE_A, None)]).await;
    assert_eq!(
        (ms[0].id, ips(&ms[0].answers)),
        (9, vec!["192.0.2.1".to_string()])
    );
    assert_eq!(up.tcp_queries.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn truncated_upstream_answers_are_retried_over_tcp() {
    let up = fake_upstream().await;
    let srv = start(vec![up.addr]).await;
    // 40 records: too big for the upstream's 512-byte UDP, fits the client's EDNS 1232.
    let m = udp_msg(srv.addr, "n40.example.com", TYPE_A, Some(4096)).await;
    assert_eq!((m.answers.len(), m.tc()), (40, false));
    assert_eq!(up.tcp_queries.load(Ordering::SeqCst), 1);
    // 100 records (about 1.6 kB) fit a 4096-byte client buffer...
    let m = udp_msg(srv.addr, "n100.example.com", TYPE_A, Some(4096)).await;
    assert_eq!((m.answers.len(), m.tc()), (100, false));
    // ...but not a 1232-byte one: that client gets TC and retries over TCP itself.
    let m = udp_msg(srv.addr, "n100.example.com", TYPE_A, Some(1232)).await;
    assert!(m.tc());
    assert!(m.answers.is_empty());
    let ms = tcp_msgs(
        srv.addr,
        &[build_query(3, "n100.example.com", TYPE_A, None)],
    )
    .await;
    assert_eq!(ms[0].answers.len(), 100);
}

#[tokio::test]
async fn next_upstream_after_timeout_and_servfail_when_none_answer() {
    let up = fake_upstream().await;
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap(); // receives, never answers
    let srv = start(vec![silent.local_addr().unwrap(), up.addr]).await;
    let t = Instant::now();
    let m = udp_msg(srv.addr, "www.example.com", TYPE_A, None).await;
    assert_eq!(ips(&m.answers), ["192.0.2.1"]);
    assert!(
        t.elapsed() >= Duration::from_millis(1900),
        "first upstream was given its 2 s"
    );

    // A closed port refuses at once; with nothing else to try the client gets SERVFAIL.
    let closed = {
        let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        s.local_addr().unwrap()
    };
    let srv2 = start(vec![closed]).await;
    let m = udp_msg(srv2.addr, "www.example.com", TYPE_A, None).await;
    assert_eq!(m.rcode, RCODE_SERVFAIL);
    assert!(srv2
        .handle
        .metrics_text()
        .contains("skiff_dns_forward_failures_total 1\n"));
}

#[tokio::test]
async fn external_name_is_chased_upstream() {
    let up = fake_upstream().await;
    let srv = start(vec![up.addr]).await;
    let m = udp_msg(srv.addr, "db.shop.svc.cluster.local", TYPE_A, None).await;
    assert_eq!(m.answers[0].data, RData::Cname("db.example.com".into()));
    assert_eq!(ips(&m.answers), ["192.0.2.1"]);
    // The fake answers A whatever it is asked; records of another type are not passed on.
    let m = udp_msg(srv.addr, "db.shop.svc.cluster.local", TYPE_AAAA, None).await;
    assert_eq!(m.answers.len(), 1, "only the CNAME: {m:?}");
}

#[tokio::test]
async fn updates_take_effect_and_bad_packets_are_handled() {
    let srv = start(vec![]).await;
    assert_eq!(
        udp_msg(srv.addr, "api.new.svc.cluster.local", TYPE_A, None)
            .await
            .rcode,
        RCODE_NXDOMAIN
    );
    srv.handle.update(build_records(
        &[service("new", "api", &["10.43.7.7"], &[])],
        &[],
        "cluster.local",
    ));
    assert_eq!(
        ips(
            &udp_msg(srv.addr, "api.new.svc.cluster.local", TYPE_A, None)
                .await
                .answers
        ),
        ["10.43.7.7"]
    );

    let mut two_questions = build_query(5, "a.example.com", TYPE_A, None);
    two_questions[5] = 2;
    let resp = decode(&udp_ask(srv.addr, &two_questions).await.unwrap()).unwrap();
    assert_eq!((resp.id, resp.rcode), (5, RCODE_FORMERR));

    // Responses sent to the server are dropped, not answered (no reflection loops).
    let mut response = build_query(6, "web.shop.svc.cluster.local", TYPE_A, None);
    response[2] |= 0x80;
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(&response, srv.addr).await.unwrap();
    let mut buf = [0u8; 512];
    assert!(
        tokio::time::timeout(Duration::from_millis(300), sock.recv(&mut buf))
            .await
            .is_err()
    );
    // The server still answers afterwards.
    assert_eq!(
        udp_msg(srv.addr, "api.new.svc.cluster.local", TYPE_A, None)
            .await
            .rcode,
        RCODE_NOERROR
    );
    // The old snapshot is gone whole.
    assert_eq!(
        udp_msg(srv.addr, "web.shop.svc.cluster.local", TYPE_A, None)
            .await
            .rcode,
        RCODE_NXDOMAIN
    );
}

#[tokio::test]
async fn binds_udp_and_tcp_on_one_port() {
    let first = start(vec![]).await;
    // Asking to bind the taken port fails with a useful error.
    let err = DnsServer::bind(DnsConfig {
        listen: vec![first.addr],
        ..Default::default()
    })
    .await
    .unwrap_err();
    assert!(err.to_string().contains(&first.addr.to_string()), "{err}");
    let cfg = DnsConfig {
        listen: vec![
            "127.0.0.1:0".parse().unwrap(),
            "127.0.0.1:0".parse().unwrap(),
        ],
        upstreams: vec![],
        ..Default::default()
    };
    let two = DnsServer::bind(cfg).await.unwrap();
    let addrs = two.local_addrs();
    assert_eq!(addrs.len(), 2);
    for a in addrs {
        // The TCP listener is on the same port as the UDP socket.
        TcpStream::connect(a).await.unwrap();
    }
}
