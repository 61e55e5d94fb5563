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

/// Idle connections of one kind per endpoint, most recently used last.
struct IdleMap<T>(Mutex<HashMap<SocketAddr, Vec<(T, Instant)>>>);

impl<T> IdleMap<T> {
    fn new() -> Self {
        IdleMap(Mutex::new(HashMap::new()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, Vec<(T, Instant)>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The newest idle connection to `addr` younger than `max_age` that `usable` accepts.
    /// LIFO keeps a small set of hot connections; stale ones at the bottom age out.
    fn take(&self, addr: SocketAddr, max_age: Duration, usable: impl Fn(&T) -> bool) -> Option<T> {
        let mut idle = self.lock();
        let list = idle.get_mut(&addr)?;
        while let Some((c, since)) = list.pop() {
            if usable(&c) && since.elapsed() < max_age {
                return Some(c);
            }
        }
        None
    }

    /// Keeps `c` for reuse; beyond `max` per endpoint the oldest goes (the one most likely to
    /// be closed by the endpoint soon).
    fn put(&self, addr: SocketAddr, c: T, max: usize) {
        let mut idle = self.lock();
        let list = idle.entry(addr).or_default();
        if list.len() >= max {
            list.remove(0);
        }
        list.push((c, Instant::now()));
    }

    fn retain(&self, keep: &std::collections::HashSet<SocketAddr>) {
        self.lock().retain(|addr, _| keep.contains(addr));
    }
}

/// Idle connections per endpoint: hyper's (TLS clients, HTTP/2, upgrades) and plain sockets
/// for the HTTP/1.1 fast path (`fast.rs`).
pub(crate) struct Pool {
    idle: IdleMap<Sender>,
    raw: IdleMap<TcpStream>,
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
            idle: IdleMap::new(),
            raw: IdleMap::new(),
            max_idle,
            idle_timeout,
            connect_timeout,
        }
    }

    /// An idle connection to `addr`, if one is still open and fresh.
    pub(crate) fn take(&self, addr: SocketAddr) -> Option<Sender> {
        self.idle.take(addr, self.idle_timeout, |tx| !tx.is_closed())
    }

    /// Returns a connection whose last response was fully read.
    pub(crate) fn put(&self, addr: SocketAddr, tx: Sender) {
        if !tx.is_closed() {
            self.idle.put(addr, tx, self.max_idle);
        }
    }

    /// Opens a new connection to `addr`; its driver runs in its own task until the connection
    /// closes or every handle to it is dropped.
    pub(crate) async fn connect(&self, addr: SocketAddr) -> Result<Sender, ConnectError> {
        let stream = self.connect_raw(addr).await?;
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
        self.idle.retain(keep);
        self.raw.retain(keep);
    }

    /// An idle plain socket to `addr` that is still fresh (it may have been closed by the
    /// endpoint meanwhile: the fast path checks or retries).
    pub(crate) fn take_raw(&self, addr: SocketAddr) -> Option<TcpStream> {
        self.raw.take(addr, self.idle_timeout, |_| true)
    }

    /// Returns a plain socket whose last response was read to its end.
    pub(crate) fn put_raw(&self, addr: SocketAddr, stream: TcpStream) {
        self.raw.put(addr, stream, self.max_idle);
    }

    /// Opens a plain socket to `addr`, with Nagle off (small requests and responses must not
    /// wait for it).
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
