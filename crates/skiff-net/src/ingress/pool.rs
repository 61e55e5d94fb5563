//! Keep-alive HTTP/1.1 connections to endpoints.
//!
//! Own pool rather than hyper-util's client: the proxy must know whether a failure happened
//! while connecting (then another endpoint may be tried) or after the request was handed to a
//! connection (then it may not), and must pick the endpoint itself for round-robin and passive
//! health. A connection goes back to the pool only when its response body has been read to the
//! end (see `body.rs`), so a pooled connection is never busy.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// The request body type sent upstream: the client's body, streamed.
pub(crate) type Sender = SendRequest<Incoming>;

struct Idle {
    tx: Sender,
    since: Instant,
}

/// Idle connections per endpoint, most recently used last: hyper's (TLS clients, HTTP/2,
/// upgrades) and plain sockets for the HTTP/1.1 fast path (`fast.rs`).
pub(crate) struct Pool {
    idle: Mutex<HashMap<SocketAddr, Vec<Idle>>>,
    raw: Mutex<HashMap<SocketAddr, Vec<(TcpStream, Instant)>>>,
    max_idle: usize,
    idle_timeout: Duration,
    connect_timeout: Duration,
}

/// Why a new connection could not be made.
#[derive(Debug)]
pub(crate) enum ConnectError {
    Io(std::io::Error),
    Timeout,
    Handshake(hyper::Error),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Io(e) => write!(f, "{e}"),
            ConnectError::Timeout => f.write_str("connect timed out"),
            ConnectError::Handshake(e) => write!(f, "handshake: {e}"),
        }
    }
}

impl Pool {
    pub(crate) fn new(max_idle: usize, idle_timeout: Duration, connect_timeout: Duration) -> Self {
        Pool {
            idle: Mutex::new(HashMap::new()),
            raw: Mutex::new(HashMap::new()),
            max_idle,
            idle_timeout,
            connect_timeout,
        }
    }

    /// An idle connection to `addr`, if one is still open and fresh.
    pub(crate) fn take(&self, addr: SocketAddr) -> Option<Sender> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.get_mut(&addr)?;
        // LIFO keeps a small set of hot connections; stale ones at the bottom age out.
        while let Some(c) = list.pop() {
            if !c.tx.is_closed() && c.since.elapsed() < self.idle_timeout {
                return Some(c.tx);
            }
        }
        None
    }

    /// Returns a connection whose last response was fully read.
    pub(crate) fn put(&self, addr: SocketAddr, tx: Sender) {
        if tx.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.entry(addr).or_default();
        if list.len() >= self.max_idle {
            // Drop the oldest: it is the one most likely to be closed by the endpoint soon.
            list.remove(0);
        }
        list.push(Idle {
            tx,
            since: Instant::now(),
        });
    }

    /// Opens a new connection to `addr`; its driver runs in its own task until the connection
    /// closes or every handle to it is dropped.
    pub(crate) async fn connect(&self, addr: SocketAddr) -> Result<Sender, ConnectError> {
        let stream =
            match tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return Err(ConnectError::Io(e)),
                Err(_) => return Err(ConnectError::Timeout),
            };
        // Small requests and responses must not wait for Nagle.
        let _ = stream.set_nodelay(true);
        let (tx, conn) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(ConnectError::Handshake)?;
        tokio::spawn(async move {
            // with_upgrades: a 101 hands the socket to the WebSocket tunnel instead of closing.
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(endpoint = %addr, error = %e, "upstream connection ended");
            }
        });
        Ok(tx)
    }

    /// Forgets idle connections to endpoints not in `keep` (after a routes update), so that
    /// removed pods do not hold sockets until the idle timeout.
    pub(crate) fn retain(&self, keep: &std::collections::HashSet<SocketAddr>) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.retain(|addr, _| keep.contains(addr));
        drop(idle);
        let mut raw = self.raw.lock().unwrap_or_else(|p| p.into_inner());
        raw.retain(|addr, _| keep.contains(addr));
    }

    /// An idle plain socket to `addr` that is still fresh (it may have been closed by the
    /// endpoint meanwhile: the fast path checks or retries).
    pub(crate) fn take_raw(&self, addr: SocketAddr) -> Option<TcpStream> {
        let mut raw = self.raw.lock().unwrap_or_else(|p| p.into_inner());
        let list = raw.get_mut(&addr)?;
        while let Some((s, since)) = list.pop() {
            if since.elapsed() < self.idle_timeout {
                return Some(s);
            }
        }
        None
    }

    /// Returns a plain socket whose last response was read to its end.
    pub(crate) fn put_raw(&self, addr: SocketAddr, stream: TcpStream) {
        let mut raw = self.raw.lock().unwrap_or_else(|p| p.into_inner());
        let list = raw.entry(addr).or_default();
        if list.len() >= self.max_idle {
            list.remove(0);
        }
        list.push((stream, Instant::now()));
    }

    /// Opens a plain socket to `addr` for the fast path.
    pub(crate) async fn connect_raw(&self, addr: SocketAddr) -> Result<TcpStream, ConnectError> {
        match tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                Ok(s)
            }
            Ok(Err(e)) => Err(ConnectError::Io(e)),
            Err(_) => Err(ConnectError::Timeout),
        }
    }
}
