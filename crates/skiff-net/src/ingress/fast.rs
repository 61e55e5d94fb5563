//! Plain-text HTTP/1.1 proxied without hyper, for the common case: a request without a body
//! or with a Content-Length body, routed to an endpoint. The head is parsed with `httparse`,
//! rewritten into a buffer (hop-by-hop headers out, X-Forwarded-* in), sent over a pooled
//! plain socket, and the response is copied back as it arrives (Content-Length, chunked
//! passed through unchanged, or until close), all in the client connection's own task.
//!
//! Why: through hyper's server and client a request passed three tasks, a header map per
//! message and a channel between the two connections; on the 2-core VM that made skiff's
//! ingress spend ~14 us of CPU per request against nginx's ~12 us. This path does a request
//! the way nginx does.
//!
//! Everything else hands the connection, with the bytes already read, to the hyper server
//! (`server::serve_http1`), which serves it from then on with the full behaviour: HTTP/1.0,
//! upgrades (WebSocket), `Expect`, chunked request bodies, absolute-form targets, requests
//! answered locally (404, 503, https redirects), malformed or oversized heads. TLS
//! connections never come here.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::StatusCode;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};

use super::chunked::ChunkedEnd;
use super::matcher::{normalize_host, Lookup};
use super::proxy::{checkout, ConnInfo, MAX_ENDPOINT_TRIES};
use super::routes::{Backend, Routes};

/// Request headers the fast path parses; a request with more goes to hyper.
const MAX_HEADERS: usize = 64;
/// Response headers accepted from an endpoint (hyper's limit too); more is a 502.
const MAX_RESPONSE_HEADERS: usize = 100;
/// A request head larger than this goes to hyper, which applies its own limits.
const MAX_HEAD: usize = 64 * 1024;

/// Request headers that describe one hop, or that this proxy sets itself.
const DROPPED: [&str; 10] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "x-forwarded-for",
    "x-real-ip",
    "x-forwarded-proto",
    "x-forwarded-port",
    "x-forwarded-host",
];

/// Response headers that describe one hop (Transfer-Encoding is handled apart).
const HOP_BY_HOP: [&str; 5] = ["connection", "keep-alive", "proxy-connection", "te", "trailer"];

/// What the request asks of the exchange, once its head is rewritten for the endpoint.
struct Plan<'r> {
    backend: &'r Backend,
    /// Request body bytes still to come from the client after those already in the buffer.
    body_left: u64,
    /// The client sent `Connection: close`.
    client_close: bool,
    /// A method that may be sent again if a pooled connection turns out closed.
    idempotent: bool,
    /// HEAD: the response has no body whatever its headers say.
    head: bool,
}

/// Deadlines kept across requests: one timer per connection, moved forward only when less
/// than a tenth of its span is left, rather than a timer armed and disarmed per request (which
/// costs a timer-wheel insert and may wake the reactor). A wait thus ends between 90% and 100%
/// of its timeout.
struct Deadline {
    sleep: Pin<Box<Sleep>>,
    span: Duration,
}

impl Deadline {
    fn new(span: Duration) -> Self {
        Deadline { sleep: Box::pin(tokio::time::sleep(span)), span }
    }

    fn arm(&mut self) -> Pin<&mut Sleep> {
        let now = Instant::now();
        if self.sleep.deadline() < now + self.span - self.span / 10 {
            self.sleep.as_mut().reset(now + self.span);
        }
        self.sleep.as_mut()
    }
}

/// Serves one plain-text client connection.
pub(crate) async fn serve(mut client: TcpStream, conn: Arc<ConnInfo>, stop: watch::Receiver<bool>) {
    let mut buf = BytesMut::with_capacity(4096);
    let mut ubuf = BytesMut::with_capacity(4096);
    let mut out: Vec<u8> = Vec::with_capacity(1024);
    let mut header_deadline = Deadline::new(super::server::HEADER_READ_TIMEOUT);
    let mut upstream_deadline = Deadline::new(conn.shared.upstream_timeout);
    let mut watch_stop = stop.clone();
    let stopping = async move {
        let _ = watch_stop.wait_for(|s| *s).await;
    };
    tokio::pin!(stopping);
    loop {
        let routes = conn.worker.routes(&conn.shared);
        // A whole request head, planned; or the reason to leave this path.
        let (plan, consumed) = loop {
            if !buf.is_empty() {
                let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let mut req = httparse::Request::new(&mut headers);
                match req.parse(&buf) {
                    Ok(httparse::Status::Complete(n)) => match plan(&req, &conn, &routes, &mut out) {
                        Some(p) => break (p, n),
                        None => return to_hyper(client, buf, conn, stop).await,
                    },
                    Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD => {}
                    _ => return to_hyper(client, buf, conn, stop).await,
                }
            }
            buf.reserve(4096);
            let idle = buf.is_empty();
            tokio::select! {
                biased;
                r = client.read_buf(&mut buf) => match r {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                },
                _ = header_deadline.arm() => return,
                _ = &mut stopping, if idle => return,
            }
        };
        // The body bytes that came with the head travel in the same write.
        let in_buf = (buf.len() - consumed).min((plan.body_left) as usize);
        out.extend_from_slice(&buf[consumed..consumed + in_buf]);
        buf.advance(consumed + in_buf);
        let plan = Plan { body_left: plan.body_left - in_buf as u64, ..plan };
        let keep = exchange(&mut client, &mut buf, &mut ubuf, &out, &plan, &conn, &mut upstream_deadline).await;
        if !keep || plan.client_close {
            let _ = client.shutdown().await;
            return;
        }
    }
}

/// Checks that the fast path can take the request and writes its head for the endpoint into
/// `out`.
fn plan<'r>(
    req: &httparse::Request<'_, '_>,
    conn: &ConnInfo,
    routes: &'r Routes,
    out: &mut Vec<u8>,
) -> Option<Plan<'r>> {
    let (method, target) = (req.method?, req.path?);
    if req.version != Some(1) || method == "CONNECT" || !target.starts_with('/') {
        return None;
    }
    let mut host: Option<&[u8]> = None;
    let mut length: Option<u64> = None;
    let mut client_close = false;
    let mut forwarded_for: Option<&[u8]> = None;
    let mut listed: Vec<&str> = Vec::new();
    for h in req.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("host") {
            if host.is_some() {
                return None;
            }
            host = Some(h.value);
        } else if name.eq_ignore_ascii_case("content-length") {
            let n: u64 = std::str::from_utf8(h.value).ok()?.trim().parse().ok()?;
            if length.is_some_and(|l| l != n) {
                return None;
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            || name.eq_ignore_ascii_case("upgrade")
            || name.eq_ignore_ascii_case("expect")
        {
            return None;
        } else if name.eq_ignore_ascii_case("connection") {
            for token in std::str::from_utf8(h.value).ok()?.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    client_close = true;
                } else if !token.eq_ignore_ascii_case("keep-alive") && !token.is_empty() {
                    listed.push(token);
                }
            }
        } else if name.eq_ignore_ascii_case("x-forwarded-for") {
            forwarded_for = Some(h.value);
        }
    }
    let host_value = host?;
    let host_str = std::str::from_utf8(host_value).ok()?;
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let (backend, rewritten) = match routes.table.lookup(&normalize_host(host_str), path) {
        Lookup::Path(r) if r.ssl_redirect && !conn.tls => return None,
        Lookup::Path(r) => (&*r.backend, r.rewrite.as_ref().map(|rw| rw.apply(path, query))),
        Lookup::Default(b) => (&**b, None),
        Lookup::NotFound => return None,
    };
    if backend.endpoints.is_empty() {
        return None;
    }
    let target = rewritten.as_deref().unwrap_or(target);
    if !target.starts_with('/') || target.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return None;
    }

    out.clear();
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for h in req.headers.iter() {
        if DROPPED.iter().any(|d| h.name.eq_ignore_ascii_case(d)) || listed.iter().any(|l| h.name.eq_ignore_ascii_case(l)) {
            continue;
        }
        out.extend_from_slice(h.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value);
        out.extend_from_slice(b"\r\n");
    }
    // As the hyper path (proxy::add_forwarded): X-Forwarded-For appended to, the rest set.
    let peer_ip = conn.peer_ip.as_bytes();
    out.extend_from_slice(b"x-forwarded-for: ");
    if let Some(prev) = forwarded_for.filter(|p| !p.is_empty()) {
        out.extend_from_slice(prev);
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(peer_ip);
    out.extend_from_slice(b"\r\nx-real-ip: ");
    out.extend_from_slice(peer_ip);
    out.extend_from_slice(b"\r\nx-forwarded-proto: http\r\nx-forwarded-port: ");
    out.extend_from_slice(conn.local_port.as_bytes());
    out.extend_from_slice(b"\r\nx-forwarded-host: ");
    out.extend_from_slice(host_value);
    out.extend_from_slice(b"\r\n\r\n");

    Some(Plan {
        backend,
        body_left: length.unwrap_or(0),
        client_close,
        idempotent: matches!(method, "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"),
        head: method == "HEAD",
    })
}

/// Sends the request (head and first body bytes in `out`, `plan.body_left` more from the
/// client) to an endpoint and copies the response back. False when the client connection
/// must be closed afterwards.
async fn exchange(
    client: &mut TcpStream,
    buf: &mut BytesMut,
    ubuf: &mut BytesMut,
    out: &[u8],
    plan: &Plan<'_>,
    conn: &ConnInfo,
    deadline: &mut Deadline,
) -> bool {
    let (pool, metrics) = (&*conn.worker.pool, conn.metrics());
    let backend = plan.backend;
    'endpoints: for (attempt, (idx, addr)) in backend.candidates(MAX_ENDPOINT_TRIES).enumerate() {
        if attempt > 0 {
            metrics.retry();
        }
        loop {
            let Some((mut up, pooled)) =
                checkout(pool.take_raw(addr), || pool.connect_raw(addr), backend, idx, metrics).await
            else {
                continue 'endpoints;
            };
            // A request that must not be sent twice goes only on a connection known open.
            if pooled && !plan.idempotent && !still_open(&up) {
                continue;
            }
            if up.write_all(out).await.is_err() {
                if pooled {
                    metrics.retry();
                    continue;
                }
                metrics.upstream_connect_error();
                backend.mark_down(idx);
                continue 'endpoints;
            }
            if plan.body_left > 0 && copy_body(client, buf, &mut up, plan.body_left).await.is_err() {
                metrics.upstream_error();
                return false;
            }
            ubuf.clear();
            return match respond(client, &mut up, ubuf, plan, conn, deadline).await {
                Ok(Done { reusable, keep_client }) => {
                    if reusable {
                        pool.put_raw(addr, up);
                    }
                    keep_client
                }
                // A pooled connection the endpoint had closed: nothing came back, and the
                // request may be repeated on a fresh one.
                Err(Failure::Closed) if pooled && plan.idempotent && plan.body_left == 0 => {
                    metrics.retry();
                    continue;
                }
                Err(Failure::Closed | Failure::Upstream) => {
                    metrics.upstream_error();
                    local(client, StatusCode::BAD_GATEWAY, "502 bad gateway\n", conn).await
                }
                Err(Failure::Timeout) => {
                    metrics.upstream_timeout();
                    local(client, StatusCode::GATEWAY_TIMEOUT, "504 gateway timeout\n", conn).await
                }
                // Part of the response went out: the client connection cannot be saved.
                Err(Failure::Midway) => {
                    metrics.upstream_error();
                    false
                }
            };
        }
    }
    local(client, StatusCode::BAD_GATEWAY, "502 bad gateway: no endpoint accepted the connection\n", conn).await
}

/// Whether an idle pooled socket is still open (readable with no data means the endpoint
/// closed it).
fn still_open(s: &TcpStream) -> bool {
    let mut probe = [0u8; 1];
    matches!(s.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

/// Copies `left` request body bytes from the client (what is buffered first) to the endpoint.
async fn copy_body(client: &mut TcpStream, buf: &mut BytesMut, up: &mut TcpStream, mut left: u64) -> io::Result<()> {
    while left > 0 {
        if buf.is_empty() {
            buf.reserve(16 * 1024);
            if client.read_buf(buf).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        let n = (buf.len() as u64).min(left) as usize;
        up.write_all(&buf[..n]).await?;
        buf.advance(n);
        left -= n as u64;
    }
    Ok(())
}

/// How an exchange failed.
enum Failure {
    /// The endpoint closed (or reset) before sending anything.
    Closed,
    /// The endpoint sent something that is not a valid response head.
    Upstream,
    /// No response head within the upstream timeout.
    Timeout,
    /// The response broke off after part of it reached the client.
    Midway,
}

/// A response relayed to its end.
struct Done {
    /// The endpoint connection can carry another request.
    reusable: bool,
    /// The client connection can too (not after a body delimited by closing).
    keep_client: bool,
}

/// How the response body is delimited.
enum Framing {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

/// Reads the response head from the endpoint and forwards head and body to the client.
async fn respond(
    client: &mut TcpStream,
    up: &mut TcpStream,
    ubuf: &mut BytesMut,
    plan: &Plan<'_>,
    conn: &ConnInfo,
    deadline: &mut Deadline,
) -> Result<Done, Failure> {
    let mut head_out: Vec<u8> = Vec::new();
    let (status, head_len, framing, up_close) = loop {
        let parsed = {
            let mut headers = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(ubuf) {
                Ok(httparse::Status::Complete(n)) => Some(read_head(&resp, n, plan, conn.peer, &mut head_out)?),
                Ok(httparse::Status::Partial) if ubuf.len() <= MAX_HEAD => None,
                _ => return Err(Failure::Upstream),
            }
        };
        match parsed {
            // Interim responses (103 Early Hints, a stray 100) are not passed on.
            Some((status, n, _, _)) if (100..200).contains(&status) => {
                ubuf.advance(n);
                continue;
            }
            Some(head) => break head,
            None => {}
        }
        ubuf.reserve(4096);
        let empty = ubuf.is_empty();
        tokio::select! {
            biased;
            r = up.read_buf(ubuf) => match r {
                Ok(0) | Err(_) if empty => return Err(Failure::Closed),
                Ok(0) | Err(_) => return Err(Failure::Upstream),
                Ok(_) => {}
            },
            _ = deadline.arm() => return Err(Failure::Timeout),
        }
    };
    conn.metrics().response(StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY));
    // The head (as received, or rewritten by read_head) and the body bytes already here go
    // out in one write.
    let body_here = ubuf.len() - head_len;
    let (first_body, mut left, mut chunks) = match framing {
        Framing::None => (0, 0, None),
        Framing::Length(l) => {
            let n = (body_here as u64).min(l);
            (n as usize, l - n, None)
        }
        Framing::Chunked => {
            let mut scan = ChunkedEnd::new();
            match scan.feed(&ubuf[head_len..]).map_err(|_| Failure::Upstream)? {
                Some(end) => (end, 0, None),
                None => (body_here, 1, Some(scan)),
            }
        }
        Framing::UntilClose => (body_here, 1, None),
    };
    let write = if head_out.is_empty() {
        client.write_all(&ubuf[..head_len + first_body]).await
    } else {
        head_out.extend_from_slice(&ubuf[head_len..head_len + first_body]);
        client.write_all(&head_out).await
    };
    write.map_err(|_| Failure::Midway)?;
    // Bytes past the response's end: the endpoint is out of step, do not reuse it.
    let mut clean = ubuf.len() == head_len + first_body;
    ubuf.clear();
    while left > 0 {
        ubuf.reserve(16 * 1024);
        let n = match up.read_buf(ubuf).await {
            Ok(0) if matches!(framing, Framing::UntilClose) => return Ok(Done { reusable: false, keep_client: false }),
            Ok(0) | Err(_) => return Err(Failure::Midway),
            Ok(n) => n,
        };
        let take = match (&framing, chunks.as_mut()) {
            (Framing::Length(_), _) => {
                let take = (n as u64).min(left);
                left -= take;
                take as usize
            }
            (Framing::Chunked, Some(scan)) => match scan.feed(&ubuf[..n]).map_err(|_| Failure::Midway)? {
                Some(end) => {
                    left = 0;
                    end
                }
                None => n,
            },
            _ => n,
        };
        client.write_all(&ubuf[..take]).await.map_err(|_| Failure::Midway)?;
        clean &= take == n;
        ubuf.clear();
    }
    Ok(Done { reusable: clean && !up_close, keep_client: true })
}

/// Reads a complete response head: status, head length, framing, whether the endpoint
/// closes after it. Writes a rewritten head into `head_out` when the received one cannot be
/// passed on as is (HTTP/1.0, hop-by-hop headers, no length so the client must be told the
/// connection closes); leaves it empty otherwise.
fn read_head(
    resp: &httparse::Response<'_, '_>,
    n: usize,
    plan: &Plan<'_>,
    peer: std::net::SocketAddr,
    head_out: &mut Vec<u8>,
) -> Result<(u16, usize, Framing, bool), Failure> {
    let status = resp.code.ok_or(Failure::Upstream)?;
    if status == 101 {
        tracing::debug!(%peer, "endpoint switched protocols without being asked");
        return Err(Failure::Upstream);
    }
    let http10 = resp.version == Some(0);
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut other_coding = false;
    let mut close = http10;
    let mut hop = false;
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            length = std::str::from_utf8(h.value).ok().and_then(|v| v.trim().parse().ok());
            if length.is_none() {
                return Err(Failure::Upstream);
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            let last = std::str::from_utf8(h.value).unwrap_or("").rsplit(',').next().unwrap_or("").trim().to_ascii_lowercase();
            chunked = last == "chunked";
            other_coding = !chunked;
        } else if HOP_BY_HOP.iter().any(|x| h.name.eq_ignore_ascii_case(x)) {
            hop = true;
            if h.name.eq_ignore_ascii_case("connection") {
                let v = std::str::from_utf8(h.value).unwrap_or("");
                close |= v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close"));
                if http10 && v.split(',').any(|t| t.trim().eq_ignore_ascii_case("keep-alive")) {
                    close = false;
                }
            }
        }
    }
    if (100..200).contains(&status) {
        return Ok((status, n, Framing::None, false));
    }
    let framing = if plan.head || status == 204 || status == 304 {
        Framing::None
    } else if chunked && !http10 {
        Framing::Chunked
    } else if other_coding || chunked {
        Framing::UntilClose
    } else if let Some(l) = length {
        Framing::Length(l)
    } else {
        Framing::UntilClose
    };
    let until_close = matches!(framing, Framing::UntilClose);
    // With chunked framing a Content-Length is wrong and must not reach the client (RFC 9112
    // 6.3: a sender must not send both).
    let drop_length = chunked && length.is_some();
    head_out.clear();
    if http10 || hop || until_close || plan.client_close || drop_length {
        head_out.extend_from_slice(format!("HTTP/1.1 {status} {}\r\n", resp.reason.unwrap_or("")).as_bytes());
        for h in resp.headers.iter() {
            let drop = HOP_BY_HOP.iter().any(|x| h.name.eq_ignore_ascii_case(x))
                || (h.name.eq_ignore_ascii_case("transfer-encoding") && !matches!(framing, Framing::Chunked))
                || (drop_length && h.name.eq_ignore_ascii_case("content-length"));
            if !drop {
                head_out.extend_from_slice(h.name.as_bytes());
                head_out.extend_from_slice(b": ");
                head_out.extend_from_slice(h.value);
                head_out.extend_from_slice(b"\r\n");
            }
        }
        if until_close || plan.client_close {
            head_out.extend_from_slice(b"connection: close\r\n");
        }
        head_out.extend_from_slice(b"\r\n");
    }
    Ok((status, n, framing, close || until_close))
}

/// Answers the client from the proxy itself; false when the connection should close.
async fn local(client: &mut TcpStream, status: StatusCode, text: &str, conn: &ConnInfo) -> bool {
    conn.metrics().response(status);
    let head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\n\r\n{text}",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        text.len()
    );
    client.write_all(head.as_bytes()).await.is_ok()
}

/// Hands the connection to the hyper server, which reads `buf` (what this path already read)
/// before the socket.
async fn to_hyper(client: TcpStream, buf: BytesMut, conn: Arc<ConnInfo>, stop: watch::Receiver<bool>) {
    let io = Prefixed { prefix: buf.freeze(), io: client };
    super::server::serve_http1(TokioIo::new(io), conn, stop).await;
}

/// A socket whose first bytes were already read into `prefix`.
struct Prefixed {
    prefix: Bytes,
    io: TcpStream,
}

impl AsyncRead for Prefixed {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(out.remaining());
            out.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, out)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, data)
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

