//! The sockets: UDP and TCP listeners answering from the current [`Records`] snapshot and handing
//! everything else to the [`Forwarder`].
//!
//! In-cluster queries are answered inline on the receiving task (a hash lookup and an encode, no
//! await), so they never queue behind forwarded ones, which run as their own tasks.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use super::answer::{decide, Decision};
use super::forward::{Forwarder, UPSTREAM_TIMEOUT};
use super::message::decode;
use super::metrics::DnsMetrics;
use super::records::Records;
use super::wire::*;
use super::{DnsConfig, DnsError};

/// A TCP client idle this long is disconnected (RFC 7766 suggests seconds, not minutes).
const TCP_IDLE: Duration = Duration::from_secs(10);
/// Open TCP connections beyond this are closed at once, so that a flood cannot exhaust tasks.
const MAX_TCP_CONNECTIONS: usize = 256;
/// Queries waiting on upstreams beyond this are REFUSED, as CoreDNS's `max_concurrent` does.
const MAX_IN_FLIGHT_FORWARDS: usize = 1024;

/// State shared by all tasks of one server.
#[derive(Debug)]
struct Shared {
    /// The current snapshot. Readers clone the `Records` (one Arc increment) under the read lock
    /// and drop the lock at once, so an update never waits for an answer and vice versa.
    records: RwLock<Records>,
    ttl: u32,
    forwarder: Forwarder,
    metrics: Arc<DnsMetrics>,
    forwards: Arc<Semaphore>,
}

impl Shared {
    fn records(&self) -> Records {
        self.records
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// A cheap handle to a running server, for feeding it snapshots and reading its metrics after
/// [`DnsServer::run`] has taken the server itself.
#[derive(Debug, Clone)]
pub struct DnsHandle {
    shared: Arc<Shared>,
}

impl DnsHandle {
    /// Replaces the served snapshot; queries already being answered finish on the old one.
    pub fn update(&self, records: Records) {
        *self
            .shared
            .records
            .write()
            .unwrap_or_else(|e| e.into_inner()) = records;
    }

    /// The server's counters.
    pub fn metrics(&self) -> &DnsMetrics {
        &self.shared.metrics
    }

    /// The counters in the Prometheus text format.
    pub fn metrics_text(&self) -> String {
        self.shared.metrics.metrics_text()
    }
}

/// The cluster DNS server: bound sockets plus the state they answer from.
#[derive(Debug)]
pub struct DnsServer {
    shared: Arc<Shared>,
    udp: Vec<Arc<UdpSocket>>,
    tcp: Vec<TcpListener>,
}

/// Binds UDP and TCP on the same address; with port 0, retries until one free port takes both.
async fn bind_pair(addr: SocketAddr) -> Result<(UdpSocket, TcpListener), DnsError> {
    let udp_err = |source| DnsError::Bind {
        proto: "udp",
        addr,
        source,
    };
    let tcp_err = |source| DnsError::Bind {
        proto: "tcp",
        addr,
        source,
    };
    let mut attempts = 0;
    loop {
        let udp = UdpSocket::bind(addr).await.map_err(udp_err)?;
        let bound = udp.local_addr().map_err(udp_err)?;
        match TcpListener::bind(bound).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if addr.port() == 0 && attempts < 16 => {
                attempts += 1;
                tracing::debug!(%bound, error = %e, "tcp port taken, picking another");
            }
            Err(e) => return Err(tcp_err(e)),
        }
    }
}

impl DnsServer {
    /// Binds every listen address on UDP and TCP and starts with an empty zone.
    pub async fn bind(cfg: DnsConfig) -> Result<Self, DnsError> {
        let mut udp = Vec::new();
        let mut tcp = Vec::new();
        let mut bound = Vec::new();
        for &addr in &cfg.listen {
            let (u, t) = bind_pair(addr).await?;
            bound.push(u.local_addr().map_err(|source| DnsError::Bind {
                proto: "udp",
                addr,
                source,
            })?);
            udp.push(Arc::new(u));
            tcp.push(t);
        }
        // Forwarding to ourselves would bounce a query until every hop timed out.
        let upstreams: Vec<SocketAddr> = cfg
            .upstreams
            .iter()
            .copied()
            .filter(|u| !bound.contains(u) && !cfg.listen.contains(u))
            .collect();
        if upstreams.is_empty() {
            tracing::warn!(
                "cluster dns has no upstream resolvers; names outside the cluster will fail"
            );
        }
        let shared = Arc::new(Shared {
            records: RwLock::new(Records::empty(&cfg.domain)),
            ttl: cfg.ttl,
            forwarder: Forwarder::new(upstreams, UPSTREAM_TIMEOUT),
            metrics: Arc::new(DnsMetrics::default()),
            forwards: Arc::new(Semaphore::new(MAX_IN_FLIGHT_FORWARDS)),
        });
        Ok(DnsServer { shared, udp, tcp })
    }

    /// The bound addresses, one per listen address (UDP and TCP share it).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.udp
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .collect()
    }

    /// A handle for updates and metrics that outlives `run` taking the server.
    pub fn handle(&self) -> DnsHandle {
        DnsHandle {
            shared: self.shared.clone(),
        }
    }

    /// Replaces the served snapshot.
    pub fn update(&self, records: Records) {
        self.handle().update(records);
    }

    /// The counters in the Prometheus text format.
    pub fn metrics_text(&self) -> String {
        self.shared.metrics.metrics_text()
    }

    /// Serves until `shutdown` becomes true (or its sender is dropped), then stops all tasks.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut tasks = JoinSet::new();
        // One receive loop per core and socket: answers are computed inline, so the number of
        // loops is the number of queries answered in parallel.
        let workers = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .min(8);
        for sock in &self.udp {
            for _ in 0..workers {
                tasks.spawn(udp_loop(self.shared.clone(), sock.clone()));
            }
        }
        for listener in self.tcp {
            tasks.spawn(tcp_accept_loop(self.shared.clone(), listener));
        }
        tracing::info!(addrs = ?self.udp.iter().filter_map(|s| s.local_addr().ok()).collect::<Vec<_>>(), "cluster dns serving");
        while !*shutdown.borrow_and_update() {
            if shutdown.changed().await.is_err() {
                break;
            }
        }
        tasks.shutdown().await;
    }
}

/// What the synchronous part of query handling decided.
enum Step {
    /// A response is in the output buffer.
    Reply,
    /// Nothing to send (a response, or garbage without a header).
    Drop,
    /// Needs upstreams: forward, or chase an ExternalName target.
    Upstream,
}

/// Handles everything that needs no I/O. `max_size` is `None` for TCP.
fn process(shared: &Shared, msg: &[u8], tcp: bool, qname: &mut String, out: &mut Vec<u8>) -> Step {
    out.clear();
    if msg.len() < HEADER_LEN || is_response(msg) {
        return Step::Drop;
    }
    let req = match parse_request(msg, qname) {
        Ok(req) => req,
        Err(e) => {
            tracing::debug!(error = %e, "malformed dns query");
            write_formerr(out, msg);
            return Step::Reply;
        }
    };
    let records = shared.records();
    let max = if tcp {
        u16::MAX as usize
    } else {
        req.max_udp_size()
    };
    match decide(&records.zone, &req, qname, shared.ttl) {
        Decision::Reply(sections) => {
            write_response(out, &req, &sections, max);
            Step::Reply
        }
        Decision::Forward | Decision::Chase { .. } => Step::Upstream,
    }
}

/// Resolves a query that needs upstreams, writing the response into a new buffer.
async fn upstream_reply(shared: &Shared, query: &[u8], tcp: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    let mut qname = String::new();
    let Ok(req) = parse_request(query, &mut qname) else {
        write_formerr(&mut out, query);
        return out;
    };
    let max = if tcp {
        u16::MAX as usize
    } else {
        req.max_udp_size()
    };
    let records = shared.records();
    let Ok(_permit) = shared.forwards.try_acquire() else {
        write_error(&mut out, &req, RCODE_REFUSED);
        return out;
    };
    match decide(&records.zone, &req, &qname, shared.ttl) {
        Decision::Reply(sections) => {
            // The snapshot changed since `process`: answer from the new one.
            write_response(&mut out, &req, &sections, max);
        }
        Decision::Forward => {
            let result = shared.forwarder.forward(query, tcp).await;
            shared.metrics.forward(result.is_err());
            match result {
                // The upstream sized its answer for the client's advertised buffer, so that is
                // the limit here rather than the smaller one used for our own answers.
                Ok(resp) if resp.len() <= max.max(req.client_udp_size()) => out = resp,
                Ok(resp) => {
                    // Fetched whole over TCP but too big for this client's datagram: send the
                    // upstream's rcode with TC so that the client asks again over TCP.
                    let rcode = (resp[3] & 0xF) as u16;
                    let s = Sections {
                        rcode,
                        ..Default::default()
                    };
                    write_response(&mut out, &req, &s, 0);
                }
                Err(e) => {
                    tracing::debug!(name = %qname, error = %e, "forwarding failed");
                    write_error(&mut out, &req, RCODE_SERVFAIL);
                }
            }
        }
        Decision::Chase {
            mut sections,
            target,
        } => {
            let chase = build_query(rand::random(), target, req.qtype, Some(MAX_UDP_SIZE as u16));
            let result = shared.forwarder.forward(&chase, false).await;
            shared.metrics.forward(result.is_err());
            if let Ok(Ok(msg)) = result.as_deref().map(decode) {
                // Only types whose data was decoded (or holds no names) can be re-encoded
                // safely; the rest could carry compression pointers into the upstream's message.
                let reencodable = [TYPE_A, TYPE_AAAA, TYPE_SRV, TYPE_PTR, TYPE_TXT];
                let wanted =
                    |t: u16| t == TYPE_CNAME || (t == req.qtype && reencodable.contains(&t));
                sections
                    .answers
                    .extend(msg.answers.into_iter().filter(|r| wanted(r.data.rtype())));
                if msg.rcode == RCODE_NXDOMAIN {
                    sections.rcode = RCODE_NXDOMAIN;
                }
            }
            // Without the upstream's part the CNAME alone is still the right partial answer.
            write_response(&mut out, &req, &sections, max);
        }
    }
    out
}

async fn udp_loop(shared: Arc<Shared>, sock: Arc<UdpSocket>) {
    let mut buf = vec![0u8; 65535];
    let mut out = Vec::with_capacity(MAX_UDP_SIZE);
    let mut qname = String::with_capacity(128);
    loop {
        let (n, peer) = match sock.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                // Errors here are per-datagram (e.g. ICMP feedback); the socket stays usable.
                tracing::debug!(error = %e, "dns udp receive failed");
                continue;
            }
        };
        let msg = &buf[..n];
        shared.metrics.query(false);
        match process(&shared, msg, false, &mut qname, &mut out) {
            Step::Reply => {
                shared.metrics.response(&out);
                if let Err(e) = sock.send_to(&out, peer).await {
                    tracing::debug!(%peer, error = %e, "dns udp send failed");
                }
            }
            Step::Drop => {}
            Step::Upstream => {
                let (shared, sock, query) = (shared.clone(), sock.clone(), msg.to_vec());
                tokio::spawn(async move {
                    let resp = upstream_reply(&shared, &query, false).await;
                    shared.metrics.response(&resp);
                    let _ = sock.send_to(&resp, peer).await;
                });
            }
        }
    }
}

async fn tcp_accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    let slots = Arc::new(Semaphore::new(MAX_TCP_CONNECTIONS));
    let mut conns = JoinSet::new();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(error = %e, "dns tcp accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        while conns.try_join_next().is_some() {}
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "too many dns tcp connections, closing");
            continue;
        };
        let shared = shared.clone();
        // Kept in a JoinSet so that connections end with the server instead of outliving it.
        conns.spawn(async move {
            let _permit = permit;
            if let Err(e) = serve_tcp(&shared, stream).await {
                tracing::debug!(%peer, error = %e, "dns tcp connection ended");
            }
        });
    }
}

/// Answers length-prefixed queries on one connection, in order, until EOF or idleness.
async fn serve_tcp(shared: &Shared, mut stream: TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut msg = Vec::with_capacity(512);
    let mut out = Vec::with_capacity(512);
    let mut qname = String::with_capacity(128);
    loop {
        let len = match tokio::time::timeout(TCP_IDLE, stream.read_u16()).await {
            Ok(Ok(len)) => len as usize,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Ok(()),
        };
        msg.resize(len, 0);
        tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut msg))
            .await
            .map_err(std::io::Error::other)??;
        shared.metrics.query(true);
        let resp = match process(shared, &msg, true, &mut qname, &mut out) {
            Step::Reply => std::mem::take(&mut out),
            Step::Drop => continue,
            Step::Upstream => upstream_reply(shared, &msg, true).await,
        };
        shared.metrics.response(&resp);
        let mut framed = Vec::with_capacity(resp.len() + 2);
        framed.extend_from_slice(&(resp.len() as u16).to_be_bytes());
        framed.extend_from_slice(&resp);
        stream.write_all(&framed).await?;
        out = resp;
    }
}
