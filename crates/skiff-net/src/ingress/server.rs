//! Listeners: plain HTTP/1.1 on the http port, TLS with ALPN (HTTP/2 or HTTP/1.1) on the https
//! port, graceful drain on shutdown. Serving happens on `workers` threads, each a
//! single-threaded runtime with its own accept loop and upstream pool (see [`IngressConfig`]).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;

use super::balance::{Balancer, Handoff, Open};
use super::metrics::IngressMetrics;
use super::pool::Pool;
use super::proxy::{serve, ConnInfo, Shared, Worker};
use super::routes::Routes;
use super::{tls, IngressError};

/// How long shutdown waits for open connections to finish their requests.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Slow or silent TLS clients must not hold a task forever.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Limit on time to receive a request's headers (slowloris).
pub(crate) const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Configuration of the ingress controller's data plane.
#[derive(Debug, Clone)]
pub struct IngressConfig {
    /// Plain HTTP listen address.
    pub http: SocketAddr,
    /// HTTPS listen address.
    pub https: SocketAddr,
    /// The IngressClass name this controller serves.
    pub class_name: String,
    /// Whether the class is the cluster default (Ingresses naming no class are ours).
    pub is_default_class: bool,
    /// Limit on connecting to an endpoint before trying the next one.
    pub connect_timeout: Duration,
    /// Limit on waiting for an endpoint's response headers (nginx's proxy_read_timeout).
    pub upstream_timeout: Duration,
    /// Idle keep-alive connections kept per endpoint.
    pub max_idle_per_endpoint: usize,
    /// Idle connections older than this are not reused.
    pub idle_timeout: Duration,
    /// Worker threads, each with its own single-threaded runtime, listeners' clones and
    /// upstream pool (nginx's worker processes). Keeping a request's client connection, its
    /// upstream connection and their wake-ups on one thread roughly doubles throughput over
    /// a shared work-stealing runtime. 0 serves on the caller's runtime instead.
    pub workers: usize,
}

impl Default for IngressConfig {
    fn default() -> Self {
        IngressConfig {
            http: SocketAddr::from(([0, 0, 0, 0], 80)),
            https: SocketAddr::from(([0, 0, 0, 0], 443)),
            class_name: "skiff".to_string(),
            is_default_class: true,
            connect_timeout: Duration::from_secs(5),
            upstream_timeout: Duration::from_secs(60),
            max_idle_per_endpoint: 128,
            idle_timeout: Duration::from_secs(30),
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

/// The bound, not yet running ingress server.
pub struct IngressServer {
    http: TcpListener,
    https: TcpListener,
    shared: Arc<Shared>,
    acceptor: TlsAcceptor,
    workers: usize,
}

/// Cheap, cloneable control of a running server: route updates and metrics.
#[derive(Clone)]
pub struct IngressHandle {
    shared: Arc<Shared>,
}

impl IngressHandle {
    /// Swaps in a new routing snapshot; requests already routed finish on the old one.
    pub fn update(&self, routes: Routes) {
        let keep: HashSet<SocketAddr> = all_endpoints(&routes);
        self.shared.set_routes(routes);
        for w in &self.shared.workers {
            w.pool.retain(&keep);
        }
    }

    /// The snapshot in use.
    pub fn routes(&self) -> Routes {
        self.shared
            .routes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The live counters.
    pub fn metrics(&self) -> &IngressMetrics {
        &self.shared.metrics
    }

    /// The counters in the Prometheus text format.
    pub fn render_metrics(&self) -> String {
        self.shared.metrics.render()
    }
}

fn all_endpoints(routes: &Routes) -> HashSet<SocketAddr> {
    let t = &routes.table;
    let mut out = HashSet::new();
    let mut add = |b: &super::routes::Backend| out.extend(b.endpoints.iter().copied());
    for h in t
        .exact
        .values()
        .chain(t.wildcard.values())
        .chain(std::iter::once(&t.any))
    {
        h.for_each_backend(&mut add);
    }
    if let Some(b) = &t.default_backend {
        add(b);
    }
    out
}

impl IngressServer {
    /// Binds both listeners and generates the fallback certificate. Port 0 picks free ports
    /// (see [`IngressServer::local_addrs`]).
    pub async fn bind(cfg: IngressConfig) -> Result<Self, IngressError> {
        let http = TcpListener::bind(cfg.http)
            .await
            .map_err(|source| IngressError::Bind {
                scheme: "http",
                addr: cfg.http,
                source,
            })?;
        let https = TcpListener::bind(cfg.https)
            .await
            .map_err(|source| IngressError::Bind {
                scheme: "https",
                addr: cfg.https,
                source,
            })?;
        let https_port = https
            .local_addr()
            .map(|a| a.port())
            .unwrap_or(cfg.https.port());
        let routes = Arc::new(RwLock::new(Routes::default()));
        let tls_config = tls::server_config(routes.clone(), tls::default_certificate()?)?;
        let n = cfg.workers.max(1);
        let workers = (0..n)
            .map(|i| {
                let pool = Pool::new(
                    cfg.max_idle_per_endpoint,
                    cfg.idle_timeout,
                    cfg.connect_timeout,
                );
                Arc::new(Worker::new(i, pool))
            })
            .collect();
        let shared = Arc::new(Shared {
            routes,
            generation: Default::default(),
            workers,
            metrics: IngressMetrics::new(n),
            https_port,
            upstream_timeout: cfg.upstream_timeout,
        });
        Ok(IngressServer {
            http,
            https,
            shared,
            acceptor: TlsAcceptor::from(Arc::new(tls_config)),
            workers: cfg.workers,
        })
    }

    /// The bound (http, https) addresses.
    pub fn local_addrs(&self) -> (SocketAddr, SocketAddr) {
        let addr = |l: &TcpListener| {
            l.local_addr()
                .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)))
        };
        (addr(&self.http), addr(&self.https))
    }

    /// A handle for route updates and metrics; valid before and during [`IngressServer::run`].
    pub fn handle(&self) -> IngressHandle {
        IngressHandle {
            shared: self.shared.clone(),
        }
    }

    /// Serves until `shutdown` becomes true (or its sender is dropped), then stops accepting,
    /// asks open connections to finish their current request and waits for them (bounded).
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        let (http_addr, https_addr) = self.local_addrs();
        tracing::info!(http = %http_addr, https = %https_addr, workers = self.workers, "ingress listening");
        let IngressServer {
            http,
            https,
            shared,
            acceptor,
            workers,
        } = self;
        if workers == 0 {
            let listeners = Listeners {
                http,
                https,
                acceptor,
            };
            let worker = shared.workers[0].clone();
            accept_loop(listeners, shared, worker, None, shutdown).await;
            tracing::info!("ingress stopped");
            return;
        }
        // Each worker accepts on its own clone of the listening sockets; the kernel hands a new
        // connection to whichever worker asks first, which spreads load like nginx's workers.
        let (http, https) = match (http.into_std(), https.into_std()) {
            (Ok(h), Ok(s)) => (h, s),
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(error = %e, "ingress listeners unusable, not serving");
                return;
            }
        };
        let mut done = Vec::new();
        let (balancer, inboxes) = Balancer::new(shared.workers.len());
        for ((i, w), inbox) in shared.workers.iter().enumerate().zip(inboxes) {
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let clones = http.try_clone().and_then(|h| Ok((h, https.try_clone()?)));
            let (h, s) = match clones {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(worker = i, error = %e, "cannot clone ingress listeners");
                    continue;
                }
            };
            let (shared, w, acceptor, stop) = (
                shared.clone(),
                w.clone(),
                acceptor.clone(),
                shutdown.clone(),
            );
            let seat = Seat {
                me: i,
                balancer: balancer.clone(),
                inbox,
            };
            let spawned = std::thread::Builder::new()
                .name(format!("skiff-ingress-{i}"))
                .spawn(move || worker(seat, h, s, acceptor, shared, w, stop, tx));
            match spawned {
                Ok(_) => done.push(rx),
                Err(e) => tracing::error!(worker = i, error = %e, "cannot start ingress worker"),
            }
        }
        drop((http, https, balancer));
        if done.is_empty() {
            tracing::error!("no ingress worker could start");
        }
        for rx in done {
            // An error only means the worker thread ended without saying so (panic): done too.
            let _ = rx.await;
        }
        tracing::info!("ingress stopped");
    }
}

/// The sockets one accept loop serves.
struct Listeners {
    http: TcpListener,
    https: TcpListener,
    acceptor: TlsAcceptor,
}

/// A worker's place among the others: its index, the shared balancer and its inbox.
struct Seat {
    me: usize,
    balancer: Arc<Balancer>,
    inbox: mpsc::UnboundedReceiver<Handoff>,
}

/// Body of one worker thread: its own current-thread runtime running an accept loop.
#[allow(clippy::too_many_arguments)]
fn worker(
    seat: Seat,
    http: std::net::TcpListener,
    https: std::net::TcpListener,
    acceptor: TlsAcceptor,
    shared: Arc<Shared>,
    me: Arc<Worker>,
    stop: watch::Receiver<bool>,
    done: tokio::sync::oneshot::Sender<()>,
) {
    let i = seat.me;
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(worker = i, error = %e, "cannot build ingress worker runtime");
            return;
        }
    };
    rt.block_on(async move {
        tokio::spawn(heartbeat());
        match (TcpListener::from_std(http), TcpListener::from_std(https)) {
            (Ok(http), Ok(https)) => {
                accept_loop(
                    Listeners {
                        http,
                        https,
                        acceptor,
                    },
                    shared,
                    me,
                    Some(seat),
                    stop,
                )
                .await;
            }
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(worker = i, error = %e, "ingress worker cannot register listeners")
            }
        }
    });
    let _ = done.send(());
}

/// Keeps a timer due within a second on the worker's runtime. Every request arms timers due
/// in 30 s (header read) and 60 s (upstream): when such a timer is due before the runtime's
/// planned wake-up, tokio interrupts its reactor with an eventfd write, which measured at one
/// extra write and epoll_wait per five requests. A near timer makes that never the case.
async fn heartbeat() {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
    }
}

/// Accepts on both listeners until shutdown, then drains this loop's connections. With a
/// seat, connections are spread over the workers (see `balance.rs`): some accepted here are
/// handed over, and others come in through the inbox.
async fn accept_loop(
    l: Listeners,
    shared: Arc<Shared>,
    me: Arc<Worker>,
    mut seat: Option<Seat>,
    mut shutdown: watch::Receiver<bool>,
) {
    // Every connection task holds a sender; recv() returning None means all have ended.
    let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
    let spawner = Spawner {
        http_addr: l.http.local_addr().ok(),
        https_addr: l.https.local_addr().ok(),
        acceptor: l.acceptor.clone(),
        shared,
        worker: me,
        stop: shutdown.clone(),
        alive: alive_tx,
    };
    loop {
        if *shutdown.borrow() {
            break;
        }
        let inbox = async {
            match seat.as_mut() {
                Some(s) => s.inbox.recv().await,
                None => std::future::pending().await,
            }
        };
        let (accepted, tls) = tokio::select! {
            r = l.http.accept() => (r, false),
            r = l.https.accept() => (r, true),
            Some(h) = inbox => {
                match TcpStream::from_std(h.stream) {
                    Ok(stream) => spawner.spawn(stream, h.peer, h.tls, Some(h.open)),
                    Err(e) => tracing::warn!(error = %e, "ingress worker cannot register a handed-over connection"),
                }
                continue;
            }
            r = shutdown.changed() => {
                if r.is_err() { break } else { continue }
            }
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Usually EMFILE; back off instead of spinning on the error.
                tracing::warn!(error = %e, "ingress accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        spawner.metrics().connection();
        let Some(seat) = &seat else {
            spawner.spawn(stream, peer, tls, None);
            continue;
        };
        let open = seat.balancer.assign(seat.me);
        if open.worker() == seat.me {
            spawner.spawn(stream, peer, tls, Some(open));
            continue;
        }
        // Leaves this worker's reactor; the receiving worker registers it with its own.
        let stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "cannot hand over ingress connection");
                continue;
            }
        };
        let handoff = Handoff {
            stream,
            peer,
            tls,
            open,
        };
        if let Err(h) = seat.balancer.hand_over(handoff) {
            // That worker has stopped (shutdown): serve it here.
            drop(h.open);
            let open = seat.balancer.count(seat.me);
            match TcpStream::from_std(h.stream) {
                Ok(stream) => spawner.spawn(stream, peer, tls, Some(open)),
                Err(e) => tracing::debug!(%peer, error = %e, "cannot take back ingress connection"),
            }
        }
    }
    drop(l);
    drop(seat);
    drop(spawner);
    if tokio::time::timeout(DRAIN_TIMEOUT, alive_rx.recv())
        .await
        .is_err()
    {
        tracing::warn!("ingress connections still open after drain timeout");
    }
}

/// What an accept loop needs to start serving a connection on its runtime.
struct Spawner {
    http_addr: Option<SocketAddr>,
    https_addr: Option<SocketAddr>,
    acceptor: TlsAcceptor,
    shared: Arc<Shared>,
    worker: Arc<Worker>,
    stop: watch::Receiver<bool>,
    alive: mpsc::Sender<()>,
}

impl Spawner {
    fn metrics(&self) -> &super::metrics::Counters {
        self.shared.metrics.shard(self.worker.index)
    }

    /// Serves one client connection in its own task; `open` counts it for the balancer
    /// until the task ends.
    fn spawn(&self, stream: TcpStream, peer: SocketAddr, tls: bool, open: Option<Open>) {
        let fallback = if tls { self.https_addr } else { self.http_addr };
        let Some(local) = stream.local_addr().ok().or(fallback) else {
            return;
        };
        let conn = Arc::new(ConnInfo::new(
            peer,
            local,
            tls,
            self.shared.clone(),
            self.worker.clone(),
        ));
        let (stop, alive, acceptor) =
            (self.stop.clone(), self.alive.clone(), self.acceptor.clone());
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            if tls {
                serve_tls(acceptor, stream, conn, stop).await;
            } else {
                // Plain HTTP/1.1 proxying without hyper; it hands anything else to serve_http1.
                super::fast::serve(stream, conn, stop).await;
            }
            drop((alive, open));
        });
    }
}

async fn serve_tls(
    acceptor: TlsAcceptor,
    stream: TcpStream,
    conn: Arc<ConnInfo>,
    stop: watch::Receiver<bool>,
) {
    let tls = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            conn.metrics().tls_handshake_error();
            tracing::debug!(peer = %conn.peer, error = %e, "tls handshake failed");
            return;
        }
        Err(_) => {
            conn.metrics().tls_handshake_error();
            return;
        }
    };
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    if h2 {
        serve_http2(TokioIo::new(tls), conn, stop).await;
    } else {
        serve_http1(TokioIo::new(tls), conn, stop).await;
    }
}

/// Resolves when shutdown is asked for (or its sender is gone). The watch guard is dropped
/// inside, so the connection future stays `Send`.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

pub(crate) async fn serve_http1<I>(io: TokioIo<I>, conn: Arc<ConnInfo>, mut stop: watch::Receiver<bool>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let peer = conn.peer;
    let svc = service_fn(move |req| serve(conn.clone(), req));
    let c = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(io, svc)
        .with_upgrades();
    tokio::pin!(c);
    let res = tokio::select! {
        r = c.as_mut() => r,
        _ = stopped(&mut stop) => {
            c.as_mut().graceful_shutdown();
            c.await
        }
    };
    if let Err(e) = res {
        tracing::debug!(%peer, error = %e, "http/1 connection ended with error");
    }
}

async fn serve_http2<I>(io: TokioIo<I>, conn: Arc<ConnInfo>, mut stop: watch::Receiver<bool>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let peer = conn.peer;
    let svc = service_fn(move |req| serve(conn.clone(), req));
    let c = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .serve_connection(io, svc);
    tokio::pin!(c);
    let res = tokio::select! {
        r = c.as_mut() => r,
        _ = stopped(&mut stop) => {
            c.as_mut().graceful_shutdown();
            c.await
        }
    };
    if let Err(e) = res {
        tracing::debug!(%peer, error = %e, "http/2 connection ended with error");
    }
}
