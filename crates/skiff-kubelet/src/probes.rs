//! Running one probe (exec, httpGet over HTTP or HTTPS, tcpSocket, grpc) against a
//! container, as the kubelet's prober does. Network probes connect from inside the pod's
//! network namespace. Scheduling (periods, thresholds) lives with the pod worker.

mod grpc;
mod tls;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use skiff_runtime::runtime::ExecRequest;
use skiff_runtime::Runtime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The result of one probe run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The probe passed.
    Success,
    /// The probe failed; the message goes into the `Unhealthy` event.
    Failure(String),
}

/// Where a probe runs.
#[derive(Clone)]
pub struct Target {
    /// The runtime, for exec probes.
    pub runtime: Arc<dyn Runtime>,
    /// Runtime id of the container.
    pub container_id: String,
    /// The pod's network namespace (`None` for hostNetwork pods).
    pub netns: Option<PathBuf>,
    /// The pod IP, the default host of httpGet probes.
    pub pod_ip: Option<IpAddr>,
}

/// `timeoutSeconds` of a probe (default 1).
pub fn timeout(p: &Probe) -> Duration {
    Duration::from_secs(p.timeout_seconds.unwrap_or(1).max(1) as u64)
}

/// Resolves a probe port (a number or a container port name).
pub fn resolve_port(port: &IntOrString, container: &Container) -> Result<u16, String> {
    match port {
        IntOrString::Int(n) if (1..=65535).contains(n) => Ok(*n as u16),
        IntOrString::Int(n) => Err(format!("invalid port number: {n}")),
        IntOrString::String(name) => {
            if let Ok(n) = name.parse::<u16>() {
                return Ok(n);
            }
            container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .map(|p| p.container_port as u16)
                .ok_or_else(|| format!("couldn't find port {name:?} in container {}", container.name))
        }
    }
}

/// Runs `probe` once against `target`.
pub async fn run(probe: &Probe, container: &Container, target: &Target) -> Outcome {
    let limit = timeout(probe);
    if let Some(exec) = &probe.exec {
        let request = ExecRequest {
            container_id: target.container_id.clone(),
            command: exec.command.clone().unwrap_or_default(),
            timeout: Some(limit),
            ..Default::default()
        };
        let runtime = target.runtime.clone();
        return match tokio::task::spawn_blocking(move || runtime.exec_sync(&request)).await {
            Ok(Ok(out)) if out.exit_code == 0 => Outcome::Success,
            Ok(Ok(out)) => {
                let text = String::from_utf8_lossy(if out.stdout.is_empty() { &out.stderr } else { &out.stdout });
                Outcome::Failure(format!("command exited with {}: {}", out.exit_code, text.trim()))
            }
            Ok(Err(skiff_runtime::Error::Timeout(_))) => {
                Outcome::Failure(format!("command timed out after {}s", limit.as_secs()))
            }
            Ok(Err(e)) => Outcome::Failure(e.to_string()),
            Err(e) => Outcome::Failure(e.to_string()),
        };
    }
    if let Some(tcp) = &probe.tcp_socket {
        let port = match resolve_port(&tcp.port, container) {
            Ok(p) => p,
            Err(e) => return Outcome::Failure(e),
        };
        let host = tcp.host.as_ref().and_then(|h| h.parse().ok());
        return match connect(target, host, port, limit).await {
            Ok(_) => Outcome::Success,
            Err(e) => Outcome::Failure(format!("dial tcp {}:{port}: {e}", show_host(target, host))),
        };
    }
    if let Some(http) = &probe.http_get {
        let port = match resolve_port(&http.port, container) {
            Ok(p) => p,
            Err(e) => return Outcome::Failure(e),
        };
        let host = http.host.as_ref().and_then(|h| h.parse().ok());
        let path = http.path.clone().unwrap_or_else(|| "/".into());
        let headers: Vec<(String, String)> =
            http.http_headers.iter().flatten().map(|h| (h.name.clone(), h.value.clone())).collect();
        let https = http.scheme.as_deref() == Some("HTTPS");
        let display = format!("{}://{}:{port}{path}", if https { "https" } else { "http" }, show_host(target, host));
        return match tokio::time::timeout(limit, http_get(target, host, port, https, &path, &headers, limit)).await {
            Ok(Ok(code)) if (200..400).contains(&code) => Outcome::Success,
            Ok(Ok(code)) => Outcome::Failure(format!("HTTP probe failed with statuscode: {code}")),
            Ok(Err(e)) => Outcome::Failure(format!("Get \"{display}\": {e}")),
            Err(_) => Outcome::Failure(format!(
                "Get \"{display}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
            )),
        };
    }
    if let Some(g) = &probe.grpc {
        if !(1..=65535).contains(&g.port) {
            return Outcome::Failure(format!("invalid port number: {}", g.port));
        }
        let port = g.port as u16;
        let authority = format!("{}:{port}", show_host(target, None));
        let call = async {
            let stream = connect(target, None, port, limit)
                .await
                .map_err(|e| format!("timeout: failed to connect service {authority:?} within {}s: {e}", limit.as_secs()))?;
            grpc::check(stream, &authority, g.service.as_deref().unwrap_or_default()).await
        };
        return match tokio::time::timeout(limit, call).await {
            Ok(Ok(())) => Outcome::Success,
            Ok(Err(message)) => Outcome::Failure(message),
            Err(_) => Outcome::Failure(format!("timeout: health rpc did not complete within {}s", limit.as_secs())),
        };
    }
    Outcome::Failure("probe has no handler".into())
}

fn show_host(target: &Target, host: Option<IpAddr>) -> String {
    host.or(target.pod_ip).map(|h| h.to_string()).unwrap_or_else(|| "127.0.0.1".into())
}

/// Connects to the probe's host (the pod IP by default) from inside the pod's network
/// namespace, so that pods without a routed address can be probed too.
async fn connect(target: &Target, host: Option<IpAddr>, port: u16, limit: Duration) -> std::io::Result<tokio::net::TcpStream> {
    let ip = host.or(target.pod_ip).unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let netns = if host.is_some() { None } else { target.netns.as_deref() };
    crate::netns::connect_tcp(netns, SocketAddr::new(ip, port), limit).await
}

async fn http_get(
    target: &Target,
    host: Option<IpAddr>,
    port: u16,
    https: bool,
    path: &str,
    headers: &[(String, String)],
    limit: Duration,
) -> std::io::Result<u16> {
    let stream = connect(target, host, port, limit).await?;
    if https {
        let ip = host.or(target.pod_ip).unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let tls = tls::handshake(stream, ip).await?;
        return http_exchange(tls, target, host, port, path, headers).await;
    }
    http_exchange(stream, target, host, port, path, headers).await
}

/// Sends the probe's GET over `stream` (plain or TLS) and reads the status code.
async fn http_exchange<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut stream: S,
    target: &Target,
    host: Option<IpAddr>,
    port: u16,
    path: &str,
    headers: &[(String, String)],
) -> std::io::Result<u16> {
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {}:{port}\r\n", show_host(target, host));
    let has = |name: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
    if !has("user-agent") {
        request.push_str("User-Agent: kube-probe/1.33\r\n");
    }
    if !has("accept") {
        request.push_str("Accept: */*\r\n");
    }
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 256];
    while !buf.windows(2).any(|w| w == b"\r\n") {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > 8192 {
            break;
        }
    }
    parse_status_line(&buf).ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "malformed HTTP response"))
}

fn parse_status_line(buf: &[u8]) -> Option<u16> {
    let line = buf.split(|b| *b == b'\n').next()?;
    let text = std::str::from_utf8(line).ok()?;
    let mut parts = text.split_whitespace();
    let version = parts.next()?;
    if !version.starts_with("HTTP/") {
        return None;
    }
    parts.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_parse() {
        assert_eq!(parse_status_line(b"HTTP/1.1 204 No Content\r\n"), Some(204));
        assert_eq!(parse_status_line(b"HTTP/1.0 500\r\n"), Some(500));
        assert_eq!(parse_status_line(b"garbage\r\n"), None);
    }

    #[test]
    fn named_ports_resolve_from_the_container() {
        let c: Container = serde_json::from_value(serde_json::json!({
            "name": "web", "ports": [{"name": "http", "containerPort": 8080}]
        }))
        .unwrap();
        assert_eq!(resolve_port(&IntOrString::String("http".into()), &c), Ok(8080));
        assert_eq!(resolve_port(&IntOrString::Int(81), &c), Ok(81));
        assert!(resolve_port(&IntOrString::String("nope".into()), &c).is_err());
        assert!(resolve_port(&IntOrString::Int(0), &c).is_err());
    }

    #[tokio::test]
    async fn http_probe_reads_the_status_code() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            for code in [200u16, 503] {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(format!("HTTP/1.1 {code} X\r\ncontent-length: 0\r\n\r\n").as_bytes()).await;
            }
        });
        let probe: Probe = serde_json::from_value(serde_json::json!({"httpGet": {"path": "/healthz", "port": port}})).unwrap();
        let c: Container = serde_json::from_value(serde_json::json!({"name": "c"})).unwrap();
        let target = Target {
            runtime: Arc::new(skiff_runtime::FakeRuntime::new()),
            container_id: "x".into(),
            netns: None,
            pod_ip: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        };
        assert_eq!(run(&probe, &c, &target).await, Outcome::Success);
        assert!(matches!(run(&probe, &c, &target).await, Outcome::Failure(m) if m.contains("503")));
    }

    fn local_target() -> Target {
        Target {
            runtime: Arc::new(skiff_runtime::FakeRuntime::new()),
            container_id: "x".into(),
            netns: None,
            pod_ip: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        }
    }

    #[tokio::test]
    async fn https_probes_speak_tls_without_verifying_the_certificate() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["somewhere.example".to_string()]).unwrap().self_signed(&key).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let (s, _) = listener.accept().await.unwrap();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(s).await else { return };
                    let mut buf = [0u8; 1024];
                    let n = tls.read(&mut buf).await.unwrap_or(0);
                    let code = if String::from_utf8_lossy(&buf[..n]).starts_with("GET /ok ") { 200 } else { 500 };
                    let _ = tls.write_all(format!("HTTP/1.1 {code} X\r\ncontent-length: 0\r\n\r\n").as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        let c: Container = serde_json::from_value(serde_json::json!({"name": "c"})).unwrap();
        let probe = |path: &str| -> Probe {
            serde_json::from_value(serde_json::json!({"httpGet": {"path": path, "port": port, "scheme": "HTTPS"}})).unwrap()
        };
        assert_eq!(run(&probe("/ok"), &c, &local_target()).await, Outcome::Success);
        assert!(matches!(run(&probe("/bad"), &c, &local_target()).await, Outcome::Failure(m) if m.contains("500")));

        // A plain-HTTP server fails an HTTPS probe: the handshake is what is checked.
        let plain = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let plain_port = plain.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut s, _) = plain.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await;
        });
        let p: Probe = serde_json::from_value(serde_json::json!({"httpGet": {"port": plain_port, "scheme": "HTTPS"}})).unwrap();
        assert!(matches!(run(&p, &c, &local_target()).await, Outcome::Failure(m) if m.starts_with("Get \"https://127.0.0.1:")));
    }

    /// A gRPC health server: service "" serves, "sick" does not, "absent" is unimplemented.
    async fn grpc_health_server() -> u16 {
        use http_body_util::{BodyExt, StreamBody};
        use hyper::body::Frame;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let (s, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                        assert_eq!(req.uri().path(), "/grpc.health.v1.Health/Check");
                        assert_eq!(req.headers()["content-type"], "application/grpc");
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let name = String::from_utf8_lossy(body.get(7..).unwrap_or_default()).into_owned();
                        let mut trailers = http::HeaderMap::new();
                        let mut frames: Vec<Result<Frame<bytes::Bytes>, std::convert::Infallible>> = Vec::new();
                        match name.as_str() {
                            "absent" => {
                                trailers.insert("grpc-status", "12".parse().unwrap());
                                trailers.insert("grpc-message", "unknown service".parse().unwrap());
                            }
                            other => {
                                let status = if other == "sick" { 2 } else { 1 };
                                frames.push(Ok(Frame::data(bytes::Bytes::from(vec![0, 0, 0, 0, 2, 0x08, status]))));
                                trailers.insert("grpc-status", "0".parse().unwrap());
                            }
                        }
                        frames.push(Ok(Frame::trailers(trailers)));
                        let response = hyper::Response::builder()
                            .header("content-type", "application/grpc")
                            .body(StreamBody::new(futures::stream::iter(frames)))
                            .unwrap();
                        Ok::<_, std::convert::Infallible>(response)
                    });
                    let _ = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(s), service)
                        .await;
                });
            }
        });
        port
    }

    #[tokio::test]
    async fn grpc_probes_call_the_health_service() {
        let port = grpc_health_server().await;
        let c: Container = serde_json::from_value(serde_json::json!({"name": "c"})).unwrap();
        let probe = |service: Option<&str>| -> Probe {
            serde_json::from_value(serde_json::json!({"grpc": {"port": port, "service": service}, "timeoutSeconds": 2})).unwrap()
        };
        assert_eq!(run(&probe(None), &c, &local_target()).await, Outcome::Success);
        assert_eq!(
            run(&probe(Some("sick")), &c, &local_target()).await,
            Outcome::Failure("service unhealthy (responded with \"NOT_SERVING\")".into())
        );
        assert!(matches!(run(&probe(Some("absent")), &c, &local_target()).await,
            Outcome::Failure(m) if m.contains("does not implement the grpc health protocol") && m.contains("code = Unimplemented desc = unknown service")));
        // Nothing listening: a connection failure, not a pass.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
        let p: Probe = serde_json::from_value(serde_json::json!({"grpc": {"port": closed}})).unwrap();
        assert!(matches!(run(&p, &c, &local_target()).await, Outcome::Failure(m) if m.contains("failed to connect service")));
    }
}
