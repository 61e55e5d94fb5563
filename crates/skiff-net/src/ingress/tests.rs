//! End-to-end on 127.0.0.1: real listeners, real backends, real TLS clients.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use k8s_openapi::api::core::v1::Secret;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::tests_routes::{b64, ingress, service, slice};
use super::{build_routes, IngressConfig, IngressHandle, IngressServer};

/// A backend that echoes what it received, and echoes bytes after an `Upgrade: echo`.
pub(super) async fn backend(name: &'static str) -> SocketAddr {
    backend_counted(name).await.0
}

/// [`backend`], also counting the TCP connections it accepted (to observe pooling).
async fn backend_counted(name: &'static str) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| echo(name, req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    (addr, accepted)
}

async fn echo(
    name: &'static str,
    mut req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    if req.headers().contains_key("upgrade") {
        let up = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(io) = up.await {
                let mut io = TokioIo::new(io);
                let mut buf = [0u8; 1024];
                while let Ok(n) = io.read(&mut buf).await {
                    if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        });
        let resp = Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("connection", "upgrade")
            .header("upgrade", "echo")
            .body(Full::new(Bytes::new()))
            .unwrap();
        return Ok(resp);
    }
    let h = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_string()
    };
    let mut text = format!(
        "backend={name}\nuri={}\nversion={:?}\n",
        req.uri(),
        req.version()
    );
    for n in [
        "host",
        "x-forwarded-for",
        "x-real-ip",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-forwarded-port",
    ] {
        text.push_str(&format!("{n}={}\n", h(n)));
    }
    let body = req.into_body().collect().await?.to_bytes();
    text.push_str(&format!("body={}\n", String::from_utf8_lossy(&body)));
    Ok(Response::new(Full::new(Bytes::from(text))))
}

/// A port on 127.0.0.1 where nothing listens.
async fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

pub(super) struct Running {
    pub(super) http: SocketAddr,
    pub(super) https: SocketAddr,
    pub(super) handle: IngressHandle,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn stop(self) {
        self.stop.send(true).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), self.task)
            .await
            .unwrap()
            .unwrap();
    }
}

pub(super) async fn start_ingress() -> Running {
    start_ingress_with(2).await
}

/// `workers` 0 serves on the test's runtime, otherwise on worker threads.
async fn start_ingress_with(workers: usize) -> Running {
    let cfg = IngressConfig {
        http: "127.0.0.1:0".parse().unwrap(),
        https: "127.0.0.1:0".parse().unwrap(),
        workers,
        ..IngressConfig::default()
    };
    let server = IngressServer::bind(cfg).await.unwrap();
    let (http, https) = server.local_addrs();
    let handle = server.handle();
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(server.run(rx));
    Running {
        http,
        https,
        handle,
        stop,
        task,
    }
}

/// One request on a fresh HTTP/1.1 connection.
async fn get(addr: SocketAddr, host: &str, path: &str) -> (StatusCode, http::HeaderMap, String) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get(path)
        .header("host", host)
        .header("x-forwarded-for", "203.0.113.9")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = tx.send_request(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

fn two_backends_objects(
    a: SocketAddr,
    b: SocketAddr,
    extra_a: &[SocketAddr],
) -> (
    Vec<k8s_openapi::api::networking::v1::Ingress>,
    Vec<k8s_openapi::api::core::v1::Service>,
    Vec<k8s_openapi::api::discovery::v1::EndpointSlice>,
) {
    let svc_a = service(
        "default",
        "svc-a",
        json!([{"name": "http", "port": 80, "targetPort": "web"}]),
    );
    let svc_b = service(
        "default",
        "svc-b",
        json!([{"port": 8080, "targetPort": 8080}]),
    );
    // All endpoints share one port in a Service; on loopback, distinct ports need distinct
    // slices, which is what a Service with pods using different named-port numbers produces.
    let mut slices = vec![
        slice(
            "default",
            "svc-a",
            json!([{"name": "http", "port": a.port()}]),
            json!([{"addresses": ["127.0.0.1"], "conditions": {"ready": true}}]),
        ),
        slice(
            "default",
            "svc-b",
            json!([{"port": b.port()}]),
            json!([{"addresses": ["127.0.0.1"]}]),
        ),
    ];
    for (i, e) in extra_a.iter().enumerate() {
        let mut s = slice(
            "default",
            "svc-a",
            json!([{"name": "http", "port": e.port()}]),
            json!([{"addresses": ["127.0.0.1"]}]),
        );
        s.metadata.name = Some(format!("svc-a-extra{i}"));
        slices.push(s);
    }
    let ing = ingress(json!({
        "metadata": {"namespace": "default", "name": "web"},
        "spec": {"rules": [
            {"host": "a.test", "http": {"paths": [
                {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "svc-a", "port": {"name": "http"}}}},
                {"path": "/b", "pathType": "Prefix", "backend": {"service": {"name": "svc-b", "port": {"number": 8080}}}},
                {"path": "/empty", "pathType": "Exact", "backend": {"service": {"name": "svc-empty", "port": {"number": 80}}}}
            ]}},
            {"host": "b.test", "http": {"paths": [
                {"path": "/only", "pathType": "Prefix", "backend": {"service": {"name": "svc-b", "port": {"number": 8080}}}}
            ]}}
        ]}
    }));
    let rw = ingress(json!({
        "metadata": {"namespace": "default", "name": "rw", "annotations": {"nginx.ingress.kubernetes.io/rewrite-target": "/$2"}},
        "spec": {"rules": [{"host": "rw.test", "http": {"paths": [
            {"path": "/app(/|$)(.*)", "pathType": "ImplementationSpecific", "backend": {"service": {"name": "svc-b", "port": {"number": 8080}}}}
        ]}}]}
    }));
    let svc_empty = service("default", "svc-empty", json!([{"port": 80}]));
    (vec![ing, rw], vec![svc_a, svc_b, svc_empty], slices)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_hosts_and_paths_with_forwarded_headers() {
    let ((a, a_conns), b) = (backend_counted("A").await, backend("B").await);
    let ing = start_ingress().await;
    let (ings, svcs, slices) = two_backends_objects(a, b, &[]);
    let (routes, warnings) = build_routes(&ings, &svcs, &slices, &[], "skiff", true);
    assert!(warnings.is_empty(), "{warnings:?}");
    ing.handle.update(routes);

    let (s, _, body) = get(ing.http, "a.test", "/x?q=1").await;
    assert_eq!(s, StatusCode::OK);
    assert!(body.contains("backend=A\nuri=/x?q=1\n"), "{body}");
    assert!(body.contains("host=a.test\n"), "host preserved: {body}");
    assert!(
        body.contains("x-forwarded-for=203.0.113.9, 127.0.0.1\n"),
        "{body}"
    );
    assert!(body.contains("x-real-ip=127.0.0.1\n"), "{body}");
    assert!(body.contains("x-forwarded-proto=http\n"), "{body}");
    assert!(body.contains("x-forwarded-host=a.test\n"), "{body}");
    assert!(
        body.contains(&format!("x-forwarded-port={}\n", ing.http.port())),
        "{body}"
    );
    assert!(body.contains("version=HTTP/1.1"), "{body}");

    let (s, _, body) = get(ing.http, "A.TEST:80", "/b/deep").await;
    assert_eq!(s, StatusCode::OK);
    assert!(body.starts_with("backend=B\n"), "{body}");
    let (_, _, body) = get(ing.http, "a.test", "/bb").await;
    assert!(
        body.starts_with("backend=A\n"),
        "element-wise prefix: {body}"
    );
    for _ in 0..6 {
        assert_eq!(get(ing.http, "a.test", "/again").await.0, StatusCode::OK);
    }
    // Eight client connections one after the other, served by two workers with a pool each:
    // at most one upstream connection per worker.
    assert!(
        a_conns.load(Ordering::SeqCst) <= 2,
        "upstream keep-alive: {a_conns:?}"
    );
    let (_, _, body) = get(ing.http, "b.test", "/only").await;
    assert!(body.starts_with("backend=B\n"), "{body}");

    let (s, _, body) = get(ing.http, "b.test", "/elsewhere").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(body, "404 page not found\n");
    let (s, _, _) = get(ing.http, "nobody.test", "/").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _, body) = get(ing.http, "a.test", "/empty").await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{body}");

    let (s, _, body) = get(ing.http, "rw.test", "/app/list?x=1").await;
    assert_eq!(s, StatusCode::OK);
    assert!(body.contains("uri=/list?x=1\n"), "rewrite-target: {body}");

    let m = ing.handle.render_metrics();
    assert!(
        m.contains("skiff_ingress_responses_total{code=\"4xx\"} 2\n"),
        "{m}"
    );
    assert!(
        m.contains("skiff_ingress_responses_total{code=\"5xx\"} 1\n"),
        "{m}"
    );
    ing.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_round_robin_and_retry_past_a_closed_endpoint() {
    let (a, b, a2) = (backend("A").await, backend("B").await, backend("A2").await);
    let dead = closed_port().await;
    let ing = start_ingress().await;
    let (ings, svcs, slices) = two_backends_objects(a, b, &[dead, a2]);
    let (routes, _) = build_routes(&ings, &svcs, &slices, &[], "skiff", true);
    ing.handle.update(routes);

    // Many requests on one client connection with a POST body: every one must succeed even
    // though a third of the endpoints refuse connections.
    let stream = TcpStream::connect(ing.http).await.unwrap();
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut seen = std::collections::HashSet::new();
    for i in 0..12 {
        let req = Request::post("/p")
            .header("host", "a.test")
            .body(Full::new(Bytes::from(format!("n{i}"))))
            .unwrap();
        // The client connection may still be finishing the previous exchange.
        tx.ready().await.unwrap();
        let resp = tx.send_request(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let body = String::from_utf8(
            resp.into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes()
                .to_vec(),
        )
        .unwrap();
        assert!(body.contains(&format!("body=n{i}\n")), "{body}");
        seen.insert(body.lines().next().unwrap().to_string());
    }
    assert_eq!(
        seen.len(),
        2,
        "round-robin over both live endpoints: {seen:?}"
    );
    assert!(ing.handle.metrics().upstream_connect_errors() >= 1);
    ing.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_is_passed_through_as_a_tunnel() {
    let (a, b) = (backend("A").await, backend("B").await);
    let ing = start_ingress().await;
    let (ings, svcs, slices) = two_backends_objects(a, b, &[]);
    ing.handle
        .update(build_routes(&ings, &svcs, &slices, &[], "skiff", true).0);

    let mut s = TcpStream::connect(ing.http).await.unwrap();
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            s.read(&mut byte).await.unwrap(),
            1,
            "closed early: {head:?}"
        );
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: echo"), "{head}");
    for msg in [&b"hello"[..], b"second frame"] {
        s.write_all(msg).await.unwrap();
        let mut got = vec![0u8; msg.len()];
        s.read_exact(&mut got).await.unwrap();
        assert_eq!(got, msg);
    }
    ing.stop().await;
}

/// A CA and leaf certificates it signs, as a Secret.
struct Pki {
    ca_der: rustls_pki_types::CertificateDer<'static>,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Pki {
    fn new() -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "test ca");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Pki {
            ca_der: cert.der().clone(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    fn secret(&self, name: &str, hosts: &[&str]) -> Secret {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        serde_json::from_value(json!({
            "metadata": {"namespace": "default", "name": name},
            "type": "kubernetes.io/tls",
            "data": {"tls.crt": b64(cert.pem().as_bytes()), "tls.key": b64(key.serialize_pem().as_bytes())}
        }))
        .unwrap()
    }

    fn connector(&self, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone()).unwrap();
        let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        tokio_rustls::TlsConnector::from(Arc::new(cfg))
    }
}

async fn tls_connect(
    pki: &Pki,
    addr: SocketAddr,
    sni: &str,
    alpn: &[&[u8]],
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = rustls_pki_types::ServerName::try_from(sni.to_string()).unwrap();
    pki.connector(alpn).connect(name, tcp).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_by_sni_http2_and_https_redirect() {
    let (a, b) = (backend("A").await, backend("B").await);
    let ing = start_ingress().await;
    let pki = Pki::new();
    let secrets = [
        pki.secret("a-tls", &["a.test"]),
        pki.secret("wild-tls", &["*.wild.test"]),
    ];
    let (mut ings, svcs, slices) = two_backends_objects(a, b, &[]);
    ings.push(ingress(json!({
        "metadata": {"namespace": "default", "name": "secure"},
        "spec": {
            "tls": [{"hosts": ["a.test"], "secretName": "a-tls"}, {"hosts": ["*.wild.test"], "secretName": "wild-tls"}],
            "rules": [{"host": "*.wild.test", "http": {"paths": [
                {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "svc-b", "port": {"number": 8080}}}}
            ]}}]
        }
    })));
    let (routes, warnings) = build_routes(&ings, &svcs, &slices, &secrets, "skiff", true);
    assert!(warnings.is_empty(), "{warnings:?}");
    ing.handle.update(routes);

    // Plain HTTP to a TLS host: 308 to https on the https port, path and query kept.
    let (s, h, _) = get(ing.http, "a.test", "/x?y=1").await;
    assert_eq!(s, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(
        h["location"],
        format!("https://a.test:{}/x?y=1", ing.https.port())
    );

    // HTTP/1.1 over TLS, certificate chosen by SNI and verified against the test CA.
    let tls = tls_connect(&pki, ing.https, "a.test", &[b"http/1.1"])
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = tx
        .send_request(
            Request::get("/x")
                .header("host", "a.test")
                .body(Empty::<Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body = String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    assert!(
        body.contains("backend=A\n") && body.contains("x-forwarded-proto=https\n"),
        "{body}"
    );

    // HTTP/2 via ALPN, wildcard certificate; the backend still gets HTTP/1.1 and a Host.
    let tls = tls_connect(&pki, ing.https, "x.wild.test", &[b"h2", b"http/1.1"])
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut tx, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    for i in 0..3 {
        let req = Request::post(format!("https://x.wild.test/h2/{i}"))
            .body(Full::new(Bytes::from("payload")))
            .unwrap();
        let resp = tx.send_request(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.version(), http::Version::HTTP_2);
        let body = String::from_utf8(
            resp.into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes()
                .to_vec(),
        )
        .unwrap();
        assert!(body.contains("backend=B\n"), "{body}");
        assert!(body.contains(&format!("uri=/h2/{i}\n")), "{body}");
        assert!(
            body.contains("host=x.wild.test\n") && body.contains("version=HTTP/1.1\n"),
            "{body}"
        );
        assert!(body.contains("body=payload\n"), "{body}");
    }

    // An unknown name gets the self-signed default certificate, which the client rejects.
    let err = tls_connect(&pki, ing.https, "other.test", &[b"http/1.1"])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("certificate"), "{err}");
    // Two labels below a wildcard is not covered either.
    assert!(
        tls_connect(&pki, ing.https, "a.b.wild.test", &[b"http/1.1"])
            .await
            .is_err()
    );
    ing.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_updates_apply_to_the_next_request_and_shutdown_drains() {
    let (a, b) = (backend("A").await, backend("B").await);
    // Also covers serving on the caller's runtime.
    let ing = start_ingress_with(0).await;
    let (s, _, _) = get(ing.http, "a.test", "/").await;
    assert_eq!(
        s,
        StatusCode::NOT_FOUND,
        "empty routes before the first update"
    );
    let (ings, svcs, slices) = two_backends_objects(a, b, &[]);
    ing.handle
        .update(build_routes(&ings, &svcs, &slices, &[], "skiff", true).0);
    let (s, _, _) = get(ing.http, "a.test", "/").await;
    assert_eq!(s, StatusCode::OK);
    let http = ing.http;
    ing.stop().await;
    assert!(
        TcpStream::connect(http).await.is_err(),
        "listener closed after shutdown"
    );
}

/// A backend speaking raw HTTP/1.1 with hand-written framing, to test what the plain-text fast
/// path (`fast.rs`) passes through: by request path, a chunked body with a trailer, an HTTP/1.0
/// response delimited by closing, hop-by-hop response headers, and a keep-alive response after
/// which the connection is closed anyway (a pooled connection the endpoint dropped).
async fn raw_backend() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        let mut chunk = [0u8; 4096];
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                    buf.drain(..end + 4);
                    let path = head.split(' ').nth(1).unwrap_or("").to_string();
                    let (resp, close): (&[u8], bool) = match path.as_str() {
                        "/b/chunked" => (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\nx-t: 1\r\n\r\n", false),
                        "/b/close" => (b"HTTP/1.0 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil close", true),
                        "/b/hop" => (b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: keep-alive, x-hop\r\nkeep-alive: timeout=5\r\n\r\nok", false),
                        "/b/once" => (b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nonce", true),
                        _ => (b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\ndefault", false),
                    };
                    if s.write_all(resp).await.is_err() || close {
                        return;
                    }
                }
            });
        }
    });
    (addr, accepted)
}

/// Reads from `s` until `want` responses' worth of `marker` appeared or the peer closed.
async fn read_until(s: &mut TcpStream, marker: &str, want: usize) -> String {
    let mut text = String::new();
    let mut buf = [0u8; 4096];
    while text.matches(marker).count() < want {
        match tokio::time::timeout(std::time::Duration::from_secs(5), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => text.push_str(&String::from_utf8_lossy(&buf[..n])),
            Err(_) => panic!("no response; so far: {text:?}"),
        }
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_fast_path_framing_pipelining_and_stale_connections() {
    let (a, (b, b_conns)) = (backend("A").await, raw_backend().await);
    let ing = start_ingress_with(0).await;
    let (ings, svcs, slices) = two_backends_objects(a, b, &[]);
    let (routes, _) = build_routes(&ings, &svcs, &slices, &[], "skiff", true);
    ing.handle.update(routes);

    // Chunked passes through with its trailer; the connection stays usable after it.
    let mut c = TcpStream::connect(ing.http).await.unwrap();
    c.write_all(b"GET /b/chunked HTTP/1.1\r\nhost: a.test\r\n\r\nGET /b/hop HTTP/1.1\r\nhost: a.test\r\n\r\n").await.unwrap();
    let text = read_until(&mut c, "\r\n\r\nok", 1).await;
    assert!(text.contains("transfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\nx-t: 1\r\n\r\nHTTP/1.1 200"), "{text:?}");
    // Hop-by-hop response headers are dropped, the rest kept.
    let second = &text[text.rfind("HTTP/1.1 200").unwrap()..];
    assert!(second.contains("content-length: 2\r\n") && second.ends_with("\r\n\r\nok"), "{second:?}");
    assert!(!second.to_ascii_lowercase().contains("keep-alive"), "{second:?}");

    // An HTTP/1.0 response without a length: relayed until the endpoint closes, and the
    // client is told the connection closes.
    c.write_all(b"GET /b/close HTTP/1.1\r\nhost: a.test\r\n\r\n").await.unwrap();
    let text = read_until(&mut c, "no such marker", 1).await;
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n") && text.contains("connection: close\r\n") && text.ends_with("\r\n\r\nuntil close"), "{text:?}");

    // The endpoint closes after answering "/b/once" without saying so: the next request on
    // that pooled connection finds it closed and is sent again on a fresh one.
    let before = b_conns.load(Ordering::SeqCst);
    for path in ["/b/once", "/b/x", "/b/once", "/b/y"] {
        let mut c = TcpStream::connect(ing.http).await.unwrap();
        c.write_all(format!("GET {path} HTTP/1.1\r\nhost: a.test\r\nconnection: close\r\n\r\n").as_bytes()).await.unwrap();
        let text = read_until(&mut c, "no such marker", 1).await;
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{path}: {text:?}");
        assert!(text.contains("connection: close\r\n"), "{path}: {text:?}");
    }
    assert!(b_conns.load(Ordering::SeqCst) - before >= 2, "stale connections were not replaced");

    // What the fast path does not take goes to hyper on the same connection: HTTP/1.0, then
    // a 404 (answered locally); hyper keeps serving what follows.
    let mut c = TcpStream::connect(ing.http).await.unwrap();
    c.write_all(b"GET /x HTTP/1.0\r\nhost: a.test\r\nconnection: keep-alive\r\n\r\n").await.unwrap();
    let text = read_until(&mut c, "body=", 1).await;
    assert!(text.starts_with("HTTP/1.0 200") || text.starts_with("HTTP/1.1 200"), "{text:?}");
    assert!(text.contains("backend=A\nuri=/x\n"), "{text:?}");
    let mut c = TcpStream::connect(ing.http).await.unwrap();
    c.write_all(b"GET / HTTP/1.1\r\nhost: nobody.test\r\n\r\nGET /y HTTP/1.1\r\nhost: a.test\r\n\r\n").await.unwrap();
    let text = read_until(&mut c, "body=", 1).await;
    assert!(text.starts_with("HTTP/1.1 404"), "{text:?}");
    assert!(text.contains("backend=A\nuri=/y\n"), "{text:?}");

    // A POST body split across writes reaches the endpoint whole.
    let mut c = TcpStream::connect(ing.http).await.unwrap();
    c.write_all(b"POST /p HTTP/1.1\r\nhost: a.test\r\ncontent-length: 10\r\n\r\nhel").await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    c.write_all(b"lo worl").await.unwrap();
    let text = read_until(&mut c, "body=hello worl\n", 1).await;
    assert!(text.contains("body=hello worl\n"), "{text:?}");
    ing.stop().await;
}
