//! One proxied request: route lookup, redirects, header rewriting, endpoint choice with retry on
//! connect failure, upgrade tunnels.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use super::body::ResponseBody;
use super::matcher::{normalize_host, Lookup};
use super::metrics::{Counters, IngressMetrics};
use super::pool::{Pool, Sender};
use super::routes::{Backend, Routes};

/// At most this many endpoints are tried for one request (connect failures only).
pub(crate) const MAX_ENDPOINT_TRIES: usize = 4;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// State shared by every connection of one server.
pub(crate) struct Shared {
    pub(crate) routes: Arc<RwLock<Routes>>,
    /// Bumped after each routes update; workers compare it with their copy's.
    pub(crate) generation: AtomicU64,
    /// Per worker thread state (see `server.rs`); kept here for pruning pools on updates.
    pub(crate) workers: Vec<Arc<Worker>>,
    pub(crate) metrics: IngressMetrics,
    /// Port put in https redirects (omitted when 443).
    pub(crate) https_port: u16,
    /// Longest wait for an endpoint's response headers.
    pub(crate) upstream_timeout: Duration,
}

impl Shared {
    /// Publishes a new routing snapshot to every worker.
    pub(crate) fn set_routes(&self, routes: Routes) {
        let mut cur = self.routes.write().unwrap_or_else(|p| p.into_inner());
        *cur = routes;
        self.generation.fetch_add(1, Ordering::Release);
    }
}

/// What one worker thread keeps to itself, so that a request writes no memory another core
/// writes too (an atomic on a cache line the other core just wrote costs about as much as
/// parsing a header): its upstream pool, its metrics shard, its copy of the routes handle.
pub(crate) struct Worker {
    /// Index of the metrics shard.
    pub(crate) index: usize,
    /// Upstream connections stay on the thread that drives them, so a request never wakes
    /// another thread.
    pub(crate) pool: Arc<Pool>,
    /// The generation and snapshot last seen. An `Arc` of this worker's own, so cloning it
    /// per request does not touch the snapshot's shared reference count.
    routes: Mutex<(u64, Arc<Routes>)>,
}

impl Worker {
    pub(crate) fn new(index: usize, pool: Pool) -> Self {
        Worker {
            index,
            pool: Arc::new(pool),
            routes: Mutex::new((u64::MAX, Arc::new(Routes::default()))),
        }
    }

    /// The current routing snapshot; refreshed from `shared` only after an update.
    pub(crate) fn routes(&self, shared: &Shared) -> Arc<Routes> {
        let generation = shared.generation.load(Ordering::Acquire);
        let mut mine = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        if mine.0 != generation {
            let cur = shared.routes.read().unwrap_or_else(|p| p.into_inner());
            *mine = (generation, Arc::new(cur.clone()));
        }
        mine.1.clone()
    }
}

/// Per client connection facts, with header values prepared once per connection.
pub(crate) struct ConnInfo {
    pub(crate) peer: SocketAddr,
    pub(crate) tls: bool,
    pub(crate) shared: Arc<Shared>,
    /// The worker serving this connection.
    pub(crate) worker: Arc<Worker>,
    pub(crate) peer_ip: HeaderValue,
    pub(crate) local_port: HeaderValue,
}

impl ConnInfo {
    pub(crate) fn new(
        peer: SocketAddr,
        local: SocketAddr,
        tls: bool,
        shared: Arc<Shared>,
        worker: Arc<Worker>,
    ) -> Self {
        ConnInfo {
            peer,
            tls,
            shared,
            worker,
            peer_ip: HeaderValue::from_str(&peer.ip().to_string())
                .unwrap_or_else(|_| HeaderValue::from_static("unknown")),
            local_port: HeaderValue::from(local.port()),
        }
    }

    /// This worker's counters.
    pub(crate) fn metrics(&self) -> &Counters {
        self.shared.metrics.shard(self.worker.index)
    }

    fn proto(&self) -> HeaderValue {
        HeaderValue::from_static(if self.tls { "https" } else { "http" })
    }
}

/// hyper service entry point: never fails, every problem becomes a status code.
pub(crate) async fn serve(
    conn: Arc<ConnInfo>,
    req: Request<Incoming>,
) -> Result<Response<ResponseBody>, Infallible> {
    let resp = proxy(&conn, req).await;
    conn.metrics().response(resp.status());
    Ok(resp)
}

fn local(status: StatusCode, text: &'static str) -> Response<ResponseBody> {
    let mut resp = Response::new(ResponseBody::local(text));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// The routing decision, borrowed from the snapshot the request holds.
struct Target<'a> {
    backend: &'a Backend,
    /// The Ingress that routed the request (none for a default backend), for logs.
    source: Option<&'a str>,
    rewritten: Option<String>,
    redirect: bool,
}

fn route<'a>(routes: &'a Routes, host: &str, uri: &Uri) -> Option<Target<'a>> {
    let path = uri.path();
    match routes.table.lookup(host, path) {
        Lookup::Path(r) => Some(Target {
            backend: &r.backend,
            source: Some(&r.source),
            rewritten: r.rewrite.as_ref().map(|rw| rw.apply(path, uri.query())),
            redirect: r.ssl_redirect,
        }),
        Lookup::Default(b) => Some(Target {
            backend: b,
            source: None,
            rewritten: None,
            redirect: false,
        }),
        Lookup::NotFound => None,
    }
}

async fn proxy(conn: &ConnInfo, mut req: Request<Incoming>) -> Response<ResponseBody> {
    let shared = &*conn.shared;
    let metrics = conn.metrics();
    // HTTP/2 (and absolute-form HTTP/1) carry the host in the URI, HTTP/1 in Host.
    let host_value = match req.uri().authority() {
        Some(a) => HeaderValue::from_str(a.as_str()).ok(),
        None => req.headers().get(header::HOST).cloned(),
    };
    let host_str = host_value
        .as_ref()
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let host = normalize_host(host_str);
    let routes = conn.worker.routes(shared);
    let Some(target) = route(&routes, &host, req.uri()) else {
        metrics.not_found();
        return local(StatusCode::NOT_FOUND, "404 page not found\n");
    };

    if target.redirect && !conn.tls && !req.uri().path().starts_with("/.well-known/acme-challenge/")
    {
        metrics.redirect();
        return redirect(&host, shared.https_port, req.uri());
    }
    if target.backend.endpoints.is_empty() {
        metrics.no_endpoints();
        return local(
            StatusCode::SERVICE_UNAVAILABLE,
            "503 service unavailable: no ready endpoints\n",
        );
    }

    let upgrade = is_upgrade(&req);
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    let upgrade_value = if upgrade {
        parts.headers.get(header::UPGRADE).cloned()
    } else {
        None
    };
    strip_hop_by_hop(&mut parts.headers);
    // Room for the forwarded headers up front: one growth of the map instead of two or three.
    parts.headers.reserve(6);
    if let Some(v) = upgrade_value {
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        parts.headers.insert(header::UPGRADE, v);
    }
    // The client already got its `100 Continue` from our side of the exchange.
    parts.headers.remove(header::EXPECT);
    add_forwarded(&mut parts.headers, conn, host_value.as_ref());
    if let Some(pq) = target.rewritten {
        match PathAndQuery::try_from(pq) {
            Ok(pq) => parts.uri = Uri::from(pq),
            Err(_) => {
                return local(
                    StatusCode::BAD_REQUEST,
                    "400 bad request: rewritten path is invalid\n",
                )
            }
        }
    } else if parts.uri.scheme().is_some() || parts.uri.authority().is_some() {
        let pq = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        parts.uri = Uri::from(pq);
    }
    parts.version = Version::HTTP_11;
    let req = Request::from_parts(parts, body);

    let Some((result, tx, addr)) = send(conn, target.backend, req).await else {
        return local(
            StatusCode::BAD_GATEWAY,
            "502 bad gateway: no endpoint accepted the connection\n",
        );
    };
    let resp = match result {
        Ok(r) => r,
        Err(status) => {
            tracing::debug!(ingress = ?target.source, backend = %target.backend.name, endpoint = %addr, %status, "upstream failed");
            let text = if status == StatusCode::GATEWAY_TIMEOUT {
                "504 gateway timeout\n"
            } else {
                "502 bad gateway\n"
            };
            return local(status, text);
        }
    };

    match client_upgrade {
        Some(client_up) if resp.status() == StatusCode::SWITCHING_PROTOCOLS => {
            let mut resp = resp;
            let upstream_up = hyper::upgrade::on(&mut resp);
            metrics.upgrade();
            let peer = conn.peer;
            tokio::spawn(async move {
                match tokio::join!(client_up, upstream_up) {
                    (Ok(c), Ok(u)) => {
                        let (mut c, mut u) = (TokioIo::new(c), TokioIo::new(u));
                        let _ = tokio::io::copy_bidirectional(&mut c, &mut u).await;
                    }
                    (c, u) => {
                        tracing::debug!(%peer, client = c.is_ok(), upstream = u.is_ok(), "upgrade failed")
                    }
                }
                drop(tx);
            });
            let (parts, _) = resp.into_parts();
            Response::from_parts(parts, ResponseBody::empty())
        }
        Some(_) => {
            // The endpoint declined the upgrade; the connection carried upgrade headers, so it
            // is not reused.
            let (mut parts, body) = resp.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            Response::from_parts(parts, ResponseBody::upstream_unpooled(body))
        }
        None => {
            let (mut parts, body) = resp.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            Response::from_parts(
                parts,
                ResponseBody::upstream(body, conn.worker.pool.clone(), addr, tx),
            )
        }
    }
}

/// Outcome of [`send`]: the response (or the status to answer with), the connection it came
/// on and the endpoint.
type Sent = (Result<Response<Incoming>, StatusCode>, Sender, SocketAddr);

/// Sends `req` to one of the backend's endpoints. Endpoints are tried in round-robin order
/// while connecting fails; once a connection accepted the request it is never retried
/// elsewhere, since the endpoint may have acted on it. `None` when no endpoint could be
/// reached at all.
async fn send(conn: &ConnInfo, backend: &Backend, mut req: Request<Incoming>) -> Option<Sent> {
    let (shared, pool, metrics) = (&*conn.shared, &*conn.worker.pool, conn.metrics());
    'endpoints: for (attempt, (idx, addr)) in backend.candidates(MAX_ENDPOINT_TRIES).enumerate() {
        if attempt > 0 {
            metrics.retry();
        }
        loop {
            let Some((mut tx, pooled)) =
                checkout(pool.take(addr), || pool.connect(addr), backend, idx, metrics).await
            else {
                continue 'endpoints;
            };
            // A connection returned at end of body may not have gone idle yet; waiting is
            // cheap, and an error means it closed meanwhile.
            if pooled && !tx.is_ready() && tx.ready().await.is_err() {
                continue;
            }
            match tokio::time::timeout(shared.upstream_timeout, tx.try_send_request(req)).await {
                Ok(Ok(resp)) => return Some((Ok(resp), tx, addr)),
                Ok(Err(mut e)) => match e.take_message() {
                    // Not written: the connection was closing. Safe to resend.
                    Some(r) if pooled => {
                        req = r;
                        metrics.retry();
                    }
                    Some(r) => {
                        // A fresh connection that dies before the request is written counts
                        // as a connect failure.
                        req = r;
                        metrics.upstream_connect_error();
                        backend.mark_down(idx);
                        continue 'endpoints;
                    }
                    None => {
                        metrics.upstream_error();
                        tracing::debug!(backend = %backend.name, endpoint = %addr, error = %e.error(), "upstream request failed");
                        return Some((Err(StatusCode::BAD_GATEWAY), tx, addr));
                    }
                },
                Err(_) => {
                    metrics.upstream_timeout();
                    return Some((Err(StatusCode::GATEWAY_TIMEOUT), tx, addr));
                }
            }
        }
    }
    None
}

/// A connection to endpoint `idx` of `backend` for one attempt: the idle one `pooled` offers
/// (then `true`) or a new one from `connect`. `None` when connecting failed, which is counted
/// and marks the endpoint down so the caller moves on to the next.
pub(crate) async fn checkout<T, F, Fut>(
    pooled: Option<T>,
    connect: F,
    backend: &Backend,
    idx: usize,
    metrics: &Counters,
) -> Option<(T, bool)>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<T, super::pool::ConnectError>>,
{
    if let Some(c) = pooled {
        return Some((c, true));
    }
    match connect().await {
        Ok(c) => Some((c, false)),
        Err(e) => {
            metrics.upstream_connect_error();
            backend.mark_down(idx);
            tracing::debug!(backend = %backend.name, endpoint = %backend.endpoints[idx], error = %e, "connect failed");
            None
        }
    }
}

fn redirect(host: &str, https_port: u16, uri: &Uri) -> Response<ResponseBody> {
    let pq = uri.path_and_query().map_or("/", PathAndQuery::as_str);
    let location = if https_port == 443 {
        format!("https://{host}{pq}")
    } else {
        format!("https://{host}:{https_port}{pq}")
    };
    let mut resp = Response::new(ResponseBody::empty());
    *resp.status_mut() = StatusCode::PERMANENT_REDIRECT;
    match HeaderValue::try_from(location) {
        Ok(v) => {
            resp.headers_mut().insert(header::LOCATION, v);
            resp
        }
        Err(_) => local(StatusCode::BAD_REQUEST, "400 bad request\n"),
    }
}

/// An HTTP/1.1 request asking for a protocol switch (`Connection: upgrade` + `Upgrade`).
fn is_upgrade(req: &Request<Incoming>) -> bool {
    req.version() == Version::HTTP_11
        && req.headers().contains_key(header::UPGRADE)
        && req
            .headers()
            .get_all(header::CONNECTION)
            .iter()
            .any(|v| has_token(v, "upgrade"))
}

fn has_token(v: &HeaderValue, token: &str) -> bool {
    v.to_str()
        .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        .unwrap_or(false)
}

/// Removes headers that describe one hop only (RFC 9110 section 7.6.1), including those the
/// Connection header names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if let Some(conn) = headers.remove(header::CONNECTION) {
        // Rare: extra names listed in Connection beyond keep-alive/close/upgrade.
        if let Ok(s) = conn.to_str() {
            for name in s.split(',').map(str::trim) {
                if !matches!(
                    name.to_ascii_lowercase().as_str(),
                    "keep-alive" | "close" | "upgrade" | ""
                ) {
                    if let Ok(n) = HeaderName::from_bytes(name.as_bytes()) {
                        headers.remove(n);
                    }
                }
            }
        }
    }
    for name in [
        &KEEP_ALIVE,
        &PROXY_CONNECTION,
        &header::TE,
        &header::TRAILER,
        &header::TRANSFER_ENCODING,
        &header::UPGRADE,
    ] {
        headers.remove(name);
    }
}

/// X-Forwarded-* and X-Real-IP. X-Forwarded-For is appended to (as nginx's
/// `$proxy_add_x_forwarded_for`) so a chain of proxies stays visible; the others describe this
/// hop and overwrite whatever the client sent.
fn add_forwarded(headers: &mut HeaderMap, conn: &ConnInfo, host: Option<&HeaderValue>) {
    let xff = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(prev) if !prev.is_empty() => {
            HeaderValue::from_str(&format!("{prev}, {}", conn.peer.ip()))
                .unwrap_or_else(|_| conn.peer_ip.clone())
        }
        _ => conn.peer_ip.clone(),
    };
    headers.insert(X_FORWARDED_FOR.clone(), xff);
    headers.insert(X_REAL_IP.clone(), conn.peer_ip.clone());
    headers.insert(X_FORWARDED_PROTO.clone(), conn.proto());
    headers.insert(X_FORWARDED_PORT.clone(), conn.local_port.clone());
    if let Some(h) = host {
        headers.insert(X_FORWARDED_HOST.clone(), h.clone());
        // HTTP/2 requests have no Host header; HTTP/1 backends need one, and the spec of this
        // proxy is to preserve the client's host.
        if !headers.contains_key(header::HOST) {
            headers.insert(header::HOST, h.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_go_including_connection_listed_ones() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, X-Secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert("x-keep", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("x-keep"));
    }

    #[test]
    fn forwarded_headers_append_for_and_overwrite_the_rest() {
        let pool = Pool::new(1, Duration::from_secs(1), Duration::from_secs(1));
        let worker = Arc::new(Worker::new(0, pool));
        let shared = Arc::new(Shared {
            routes: Arc::default(),
            generation: AtomicU64::new(0),
            workers: vec![worker.clone()],
            metrics: IngressMetrics::default(),
            https_port: 443,
            upstream_timeout: Duration::from_secs(1),
        });
        let conn = ConnInfo::new(
            "10.0.0.7:5555".parse().unwrap(),
            "0.0.0.0:443".parse().unwrap(),
            true,
            shared,
            worker,
        );
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("1.2.3.4"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("gopher"));
        add_forwarded(&mut h, &conn, Some(&HeaderValue::from_static("a.test:443")));
        assert_eq!(h["x-forwarded-for"], "1.2.3.4, 10.0.0.7");
        assert_eq!(h["x-real-ip"], "10.0.0.7");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-port"], "443");
        assert_eq!(h["x-forwarded-host"], "a.test:443");
        assert_eq!(h["host"], "a.test:443");
    }

    #[test]
    fn redirect_keeps_path_and_query_and_names_odd_ports() {
        let uri: Uri = "/a/b?c=d".parse().unwrap();
        let r = redirect("a.test", 443, &uri);
        assert_eq!(r.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(r.headers()["location"], "https://a.test/a/b?c=d");
        let r = redirect("a.test", 8443, &uri);
        assert_eq!(r.headers()["location"], "https://a.test:8443/a/b?c=d");
    }
}
