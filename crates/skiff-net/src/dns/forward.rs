//! Forwarding to the node's upstream resolvers (the CoreDNS `forward` plugin, reduced): UDP first
//! and TCP when the answer was truncated, 2 s per upstream, next upstream on failure.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{timeout, timeout_at, Instant};

use super::wire::{is_response, is_truncated, message_id, HEADER_LEN};
use super::DnsError;

/// How long one upstream gets before the next one is tried.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);

/// Sends queries upstream. Each exchange uses a fresh socket (so a random source port) and a
/// random id, which is what makes spoofed answers hard to land; the client's id is restored on
/// the way back.
#[derive(Debug, Clone)]
pub struct Forwarder {
    upstreams: Vec<SocketAddr>,
    timeout: Duration,
}

impl Forwarder {
    /// A forwarder trying `upstreams` in order, `timeout` each.
    pub fn new(upstreams: Vec<SocketAddr>, timeout: Duration) -> Self {
        Forwarder { upstreams, timeout }
    }

    /// The upstreams in the order they are tried.
    pub fn upstreams(&self) -> &[SocketAddr] {
        &self.upstreams
    }

    /// Resolves `query` upstream and returns the response carrying the query's own id. `tcp`
    /// says the client asked over TCP, which is then used upstream too.
    pub async fn forward(&self, query: &[u8], tcp: bool) -> Result<Vec<u8>, DnsError> {
        let Some(client_id) = message_id(query) else {
            return Err(DnsError::Malformed("query shorter than a header".into()));
        };
        let mut last = DnsError::NoUpstreams;
        for &upstream in &self.upstreams {
            let mut msg = query.to_vec();
            let id: u16 = rand::random();
            msg[..2].copy_from_slice(&id.to_be_bytes());
            let deadline = Instant::now() + self.timeout;
            let result = if tcp {
                tcp_exchange(upstream, &msg, deadline).await
            } else {
                match udp_exchange(upstream, &msg, deadline).await {
                    // The answer did not fit in a datagram: fetch it whole, but keep the
                    // truncated one if TCP fails, which still tells the client to retry.
                    Ok(resp) if is_truncated(&resp) => {
                        let tcp_deadline = Instant::now() + self.timeout;
                        Ok(tcp_exchange(upstream, &msg, tcp_deadline)
                            .await
                            .unwrap_or(resp))
                    }
                    other => other,
                }
            };
            match result {
                Ok(mut resp) => {
                    resp[..2].copy_from_slice(&client_id.to_be_bytes());
                    return Ok(resp);
                }
                Err(e) => {
                    tracing::debug!(%upstream, error = %e, "upstream dns failed, trying next");
                    last = e;
                }
            }
        }
        Err(last)
    }
}

/// Whether `resp` answers `query`: same id, QR set, same question (names compared without
/// case, since resolvers may randomise it).
fn answers(query: &[u8], resp: &[u8]) -> bool {
    if resp.len() < HEADER_LEN || !is_response(resp) || message_id(resp) != message_id(query) {
        return false;
    }
    let qlen = question_len(query);
    match (
        query.get(HEADER_LEN..HEADER_LEN + qlen),
        resp.get(HEADER_LEN..HEADER_LEN + qlen),
    ) {
        (Some(q), Some(r)) => q.eq_ignore_ascii_case(r),
        _ => false,
    }
}

/// Length of the (uncompressed) first question, or 0 when there is none.
fn question_len(msg: &[u8]) -> usize {
    if msg.len() < HEADER_LEN || msg[4..6] == [0, 0] {
        return 0;
    }
    let mut at = HEADER_LEN;
    while let Some(&len) = msg.get(at) {
        if len == 0 {
            return at + 5 - HEADER_LEN;
        }
        if len & 0xC0 != 0 {
            return 0;
        }
        at += len as usize + 1;
    }
    0
}

async fn udp_exchange(
    upstream: SocketAddr,
    msg: &[u8],
    deadline: Instant,
) -> Result<Vec<u8>, DnsError> {
    let io = |source| DnsError::Upstream { upstream, source };
    let local: SocketAddr = match upstream {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let sock = UdpSocket::bind(local).await.map_err(io)?;
    sock.connect(upstream).await.map_err(io)?;
    sock.send(msg).await.map_err(io)?;
    let mut buf = vec![0u8; 65535];
    loop {
        let n = timeout_at(deadline, sock.recv(&mut buf))
            .await
            .map_err(|_| DnsError::Timeout { upstream })?
            .map_err(io)?;
        // Anything that is not the answer to this question is ignored, not trusted.
        if answers(msg, &buf[..n]) {
            buf.truncate(n);
            return Ok(buf);
        }
    }
}

async fn tcp_exchange(
    upstream: SocketAddr,
    msg: &[u8],
    deadline: Instant,
) -> Result<Vec<u8>, DnsError> {
    let io = |source| DnsError::Upstream { upstream, source };
    let work = async {
        let mut stream = TcpStream::connect(upstream).await.map_err(io)?;
        stream.set_nodelay(true).map_err(io)?;
        let mut framed = Vec::with_capacity(msg.len() + 2);
        framed.extend_from_slice(&(msg.len() as u16).to_be_bytes());
        framed.extend_from_slice(msg);
        stream.write_all(&framed).await.map_err(io)?;
        let len = stream.read_u16().await.map_err(io)? as usize;
        let mut resp = vec![0u8; len];
        stream.read_exact(&mut resp).await.map_err(io)?;
        if !answers(msg, &resp) {
            return Err(DnsError::Malformed(format!(
                "upstream {upstream} sent an unrelated answer"
            )));
        }
        Ok(resp)
    };
    let left = deadline.saturating_duration_since(Instant::now());
    timeout(left, work)
        .await
        .map_err(|_| DnsError::Timeout { upstream })?
}
