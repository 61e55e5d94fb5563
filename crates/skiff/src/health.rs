//! Health endpoints of the in-process controller manager (:10257) and scheduler (:10259):
//! HTTPS with the cluster's serving certificate, unauthenticated `/healthz`, `/livez`,
//! `/readyz` (and `/metrics`), as operators and Prometheus expect of those ports.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// Serve health on `addr` until the process ends; `component` names it in `/metrics`.
pub async fn serve(addr: SocketAddr, acceptor: tokio_rustls::TlsAcceptor, component: &'static str) {
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(%addr, %component, error = %e, "health endpoint not started (port in use?)");
            return;
        }
    };
    tracing::info!(%addr, %component, "health endpoint listening");
    let started = Arc::new(std::time::Instant::now());
    loop {
        let Ok((tcp, _)) = listener.accept().await else { continue };
        let acceptor = acceptor.clone();
        let started = started.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else { return };
            let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let started = started.clone();
                async move {
                    let (code, ct, body) = match req.uri().path() {
                        "/healthz" | "/livez" | "/readyz" => (200, "text/plain; charset=utf-8", "ok".to_string()),
                        "/metrics" => (
                            200,
                            "text/plain; version=0.0.4",
                            format!(
                                "# HELP skiff_component_uptime_seconds Seconds since the component started.\n# TYPE skiff_component_uptime_seconds gauge\nskiff_component_uptime_seconds{{component=\"{component}\"}} {}\n",
                                started.elapsed().as_secs_f64()
                            ),
                        ),
                        _ => (404, "text/plain; charset=utf-8", "404 page not found".to_string()),
                    };
                    Ok::<_, std::convert::Infallible>(
                        hyper::Response::builder().status(code).header("content-type", ct).body(Full::new(Bytes::from(body))).unwrap(),
                    )
                }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(tls), svc).await;
        });
    }
}
