//! The HTTPS listener: TLS requiring a client certificate from the cluster CA, the API
//! server's identity check, HTTP/1.1 with upgrades, and the kubelet's streaming paths:
//!
//! - `GET /containerLogs/{ns}/{pod}/{container}`
//! - `GET|POST /exec/{ns}/{pod}[/{uid}]/{container}?command=..`
//! - `GET|POST /attach/{ns}/{pod}[/{uid}]/{container}`
//! - `GET|POST /portForward/{ns}/{pod}[/{uid}]`
//! - `GET /healthz`
//! - `GET /stats/summary`, `GET /metrics`, `/metrics/cadvisor`, `/metrics/resource`

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::spdy::session::Session;
use super::{exec, logs, portforward, websocket, ExecOptions, MetricsEndpoint, StreamingBackend, StreamingError};

type Body = BoxBody<Bytes, std::io::Error>;

/// Subjects allowed to call the streaming server: the API server's kubelet-client certificate
/// (CN) or any cluster admin (O), as upstream's default kubelet authorization would allow.
const ALLOWED_CN: &str = "kube-apiserver-kubelet-client";
const ALLOWED_O: &str = "system:masters";

/// A TLS config serving `cert_pem`/`key_pem` that requires client certificates signed by the
/// CA in `client_ca_pem`. HTTP/1.1 only: upgrades (WebSocket, SPDY) do not exist in HTTP/2.
pub fn tls_config(cert_pem: &str, key_pem: &str, client_ca_pem: &str) -> Result<rustls::ServerConfig, StreamingError> {
    let tls_err = |what: &str, e: &dyn std::fmt::Display| StreamingError::Runtime(format!("streaming tls {what}: {e}"));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(client_ca_pem.as_bytes()) {
        let c = c.map_err(|e| tls_err("client ca", &e))?;
        roots.add(c).map_err(|e| tls_err("client ca", &e))?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| tls_err("client verifier", &e))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| tls_err("serving certificate", &e))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| tls_err("serving key", &e))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err("protocol versions", &e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| tls_err("serving certificate", &e))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Whether a verified client certificate belongs to the API server (or an admin).
pub fn client_allowed(cert: &CertificateDer<'_>) -> bool {
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert.as_ref()) else { return false };
    let subject = parsed.subject();
    let cn_ok = subject.iter_common_name().any(|a| a.as_str().ok() == Some(ALLOWED_CN));
    let o_ok = subject.iter_organization().any(|a| a.as_str().ok() == Some(ALLOWED_O));
    cn_ok || o_ok
}

/// Accept connections until `shutdown` becomes true. `tls` should come from [`tls_config`]
/// (or require client certificates the same way): requests from clients that are not the
/// API server are refused with 403.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    backend: Arc<dyn StreamingBackend>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "streaming: accept failed");
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let backend = backend.clone();
        let mut conn_shutdown = shutdown.clone();
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "streaming: tls handshake failed");
                    return;
                }
            };
            let allowed = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).is_some_and(client_allowed);
            let service = hyper::service::service_fn(move |req| {
                let backend = backend.clone();
                async move {
                    let resp = if allowed { route(backend, req).await } else { status(403, "Forbidden", "only the API server may use the kubelet streaming server") };
                    Ok::<_, std::convert::Infallible>(resp)
                }
            });
            let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service).with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => if let Err(e) = r { tracing::debug!(%peer, error = %e, "streaming: connection ended") },
                _ = conn_shutdown.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
}

/// Parse a raw query string into decoded pairs, keeping repeats (`command=a&command=b`).
pub fn parse_query(raw: Option<&str>) -> Vec<(String, String)> {
    let decode = |s: &str| -> String {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < b.len() => {
                    match std::str::from_utf8(&b[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok()) {
                        Some(v) => {
                            out.push(v);
                            i += 2;
                        }
                        None => out.push(b'%'),
                    }
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    raw.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

/// A response with an upstream-shaped `Status` body.
fn status(code: u16, reason: &str, message: &str) -> Response<Body> {
    let body = serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code,
    });
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json")
        .body(full(body.to_string()))
        .expect("valid response")
}

fn error_response(e: &StreamingError) -> Response<Body> {
    let reason = match e.http_status() {
        404 => "NotFound",
        400 => "BadRequest",
        501 => "NotImplemented",
        _ => "InternalError",
    };
    status(e.http_status(), reason, &e.to_string())
}

async fn route(backend: Arc<dyn StreamingBackend>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let segs: Vec<String> = path.split('/').filter(|s| !s.is_empty()).map(str::to_string).collect();
    let seg: Vec<&str> = segs.iter().map(String::as_str).collect();
    let query = parse_query(req.uri().query());
    let method_ok = matches!(*req.method(), Method::GET | Method::POST);
    match seg.as_slice() {
        ["healthz"] => Response::new(full("ok")),
        ["stats", "summary"] if *req.method() == Method::GET => match backend.stats_summary().await {
            Ok(v) => Response::builder().header("content-type", "application/json").body(full(v.to_string())).expect("valid response"),
            Err(e) => error_response(&e),
        },
        ["metrics", rest @ ..] if *req.method() == Method::GET && rest.len() <= 1 => {
            let which = match rest {
                [] => MetricsEndpoint::Kubelet,
                ["cadvisor"] => MetricsEndpoint::Cadvisor,
                ["resource"] => MetricsEndpoint::Resource,
                _ => return status(404, "NotFound", &format!("no metrics endpoint at {path}")),
            };
            match backend.metrics_text(which).await {
                Ok(text) => Response::builder()
                    .header("content-type", "text/plain; version=0.0.4; charset=utf-8")
                    .body(full(text))
                    .expect("valid response"),
                Err(e) => error_response(&e),
            }
        }
        ["containerLogs", ns, pod, container] if *req.method() == Method::GET => {
            container_logs(backend, ns.to_string(), pod.to_string(), container.to_string(), &query).await
        }
        [verb @ ("exec" | "attach"), ns, pod, .., container] if method_ok && (seg.len() == 4 || seg.len() == 5) => {
            let command: Vec<String> = query.iter().filter(|(k, _)| k == "command").map(|(_, v)| v.clone()).collect();
            if *verb == "exec" && command.is_empty() {
                return status(400, "BadRequest", "you must specify at least one command for the container");
            }
            let opts = exec::options_from_query(&query);
            if !opts.stdin && !opts.stdout && !opts.stderr {
                return status(400, "BadRequest", "you must specify at least one of stdin, stdout, stderr");
            }
            let ids = (ns.to_string(), pod.to_string(), container.to_string());
            let cmd = (*verb == "exec").then_some(command);
            upgrade_exec(backend, req, ids, cmd, opts)
        }
        ["portForward", ns, pod, ..] if method_ok && (seg.len() == 3 || seg.len() == 4) => {
            upgrade_port_forward(backend, req, ns.to_string(), pod.to_string())
        }
        _ => status(404, "NotFound", &format!("no streaming endpoint at {path}")),
    }
}

async fn container_logs(backend: Arc<dyn StreamingBackend>, ns: String, pod: String, container: String, query: &[(String, String)]) -> Response<Body> {
    let opts = match logs::LogOptions::from_query(query, chrono::Utc::now()) {
        Ok(o) => o,
        Err(e) => return error_response(&e),
    };
    let path = match backend.log_file(&ns, &pod, &container, opts.previous).await {
        Ok(p) => p,
        Err(e) => return error_response(&e),
    };
    // Open once up front so a missing file is a clean error status, not an empty 200.
    if let Err(e) = tokio::fs::metadata(&path).await {
        return error_response(&StreamingError::io(format!("log file {}", path.display()))(e));
    }
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        if let Err(e) = logs::stream_log(backend, path, (ns, pod, container), opts, tx).await {
            tracing::debug!(error = %e, "streaming: log stream ended with an error");
        }
    });
    Response::builder()
        .header("content-type", "text/plain")
        .body(ChannelBody { rx }.boxed())
        .expect("valid response")
}

/// A response body fed from a channel, so `logs -f` streams as lines arrive.
struct ChannelBody {
    rx: mpsc::Receiver<Bytes>,
}

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.rx.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

fn header<'a>(req: &'a Request<Incoming>, name: &str) -> &'a str {
    req.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// The SPDY protocol version both sides support, from `X-Stream-Protocol-Version` headers.
fn spdy_protocol(req: &Request<Incoming>, supported: &[&'static str]) -> Option<&'static str> {
    let offered: Vec<&str> = req
        .headers()
        .get_all("x-stream-protocol-version")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    offered.iter().find_map(|o| supported.iter().find(|s| *s == o).copied())
}

fn is_spdy_upgrade(req: &Request<Incoming>) -> bool {
    header(req, "upgrade").to_ascii_lowercase().starts_with("spdy/3.1")
}

fn switching(headers: &[(&str, String)]) -> Response<Body> {
    let mut b = Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
    for (k, v) in headers {
        b = b.header(*k, v.as_str());
    }
    b.body(full(Bytes::new())).expect("valid response")
}

/// Start an exec or attach (`command` is `None` for attach) on the upgraded connection.
fn upgrade_exec(
    backend: Arc<dyn StreamingBackend>,
    mut req: Request<Incoming>,
    ids: (String, String, String),
    command: Option<Vec<String>>,
    opts: ExecOptions,
) -> Response<Body> {
    let start = {
        let backend = backend.clone();
        async move {
            let (ns, pod, c) = (&ids.0, &ids.1, &ids.2);
            match command {
                Some(cmd) => backend.exec(ns, pod, c, cmd, opts).await,
                None => backend.attach(ns, pod, c, opts).await,
            }
        }
    };
    if websocket::is_websocket_upgrade(req.headers()) {
        let Some(proto) = websocket::choose_protocol(req.headers(), exec::WS_PROTOCOLS) else {
            return status(400, "BadRequest", &format!("websocket subprotocol must be one of {:?}", exec::WS_PROTOCOLS));
        };
        tracing::debug!(protocol = %proto, "streaming: exec/attach over websocket");
        let accept = websocket::accept_key(header(&req, "sec-websocket-key"));
        let on_upgrade = hyper::upgrade::on(&mut req);
        let p = proto.clone();
        tokio::spawn(async move {
            let Ok(upgraded) = on_upgrade.await else { return };
            let (reader, writer) = websocket::split(TokioIo::new(upgraded));
            exec::serve_websocket(reader, writer, &p, opts, start.await).await;
        });
        return switching(&[
            ("upgrade", "websocket".into()),
            ("connection", "Upgrade".into()),
            ("sec-websocket-accept", accept),
            ("sec-websocket-protocol", proto),
        ]);
    }
    if is_spdy_upgrade(&req) {
        let Some(proto) = spdy_protocol(&req, exec::SPDY_PROTOCOLS) else {
            return status(403, "Forbidden", &format!("unable to upgrade: X-Stream-Protocol-Version must be one of {:?}", exec::SPDY_PROTOCOLS));
        };
        tracing::debug!(protocol = proto, "streaming: exec/attach over spdy");
        let on_upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let Ok(upgraded) = on_upgrade.await else { return };
            exec::serve_spdy(Session::start(TokioIo::new(upgraded)), proto, opts, start).await;
        });
        return switching(&[("connection", "Upgrade".into()), ("upgrade", "SPDY/3.1".into()), ("x-stream-protocol-version", proto.into())]);
    }
    status(400, "BadRequest", "Upgrade request required")
}

fn upgrade_port_forward(backend: Arc<dyn StreamingBackend>, mut req: Request<Incoming>, ns: String, pod: String) -> Response<Body> {
    if websocket::is_websocket_upgrade(req.headers()) {
        let Some(proto) = websocket::choose_protocol(req.headers(), &[portforward::WS_TUNNEL_PROTOCOL]) else {
            return status(400, "BadRequest", &format!("websocket subprotocol must be {}", portforward::WS_TUNNEL_PROTOCOL));
        };
        tracing::debug!(protocol = %proto, "streaming: port-forward over websocket-tunnelled spdy");
        let accept = websocket::accept_key(header(&req, "sec-websocket-key"));
        let on_upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let Ok(upgraded) = on_upgrade.await else { return };
            let (reader, writer) = websocket::split(TokioIo::new(upgraded));
            let stream = websocket::tunnel(reader, writer);
            portforward::serve(Session::start(stream), backend, ns, pod).await;
        });
        return switching(&[
            ("upgrade", "websocket".into()),
            ("connection", "Upgrade".into()),
            ("sec-websocket-accept", accept),
            ("sec-websocket-protocol", proto),
        ]);
    }
    if is_spdy_upgrade(&req) {
        if spdy_protocol(&req, &[portforward::PROTOCOL]).is_none() {
            return status(403, "Forbidden", &format!("unable to upgrade: X-Stream-Protocol-Version must be {}", portforward::PROTOCOL));
        }
        tracing::debug!("streaming: port-forward over spdy");
        let on_upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let Ok(upgraded) = on_upgrade.await else { return };
            portforward::serve(Session::start(TokioIo::new(upgraded)), backend, ns, pod).await;
        });
        return switching(&[
            ("connection", "Upgrade".into()),
            ("upgrade", "SPDY/3.1".into()),
            ("x-stream-protocol-version", portforward::PROTOCOL.into()),
        ]);
    }
    status(400, "BadRequest", "Upgrade request required")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_keep_repeated_commands() {
        let q = parse_query(Some("command=sh&command=-c&command=echo+hi%21&stdout=1&x=%zz&y=%4"));
        let cmds: Vec<&str> = q.iter().filter(|(k, _)| k == "command").map(|(_, v)| v.as_str()).collect();
        assert_eq!(cmds, ["sh", "-c", "echo hi!"]);
        assert!(q.contains(&("x".into(), "%zz".into())));
        assert!(q.contains(&("y".into(), "%4".into())));
    }
}
