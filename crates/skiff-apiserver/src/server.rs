//! The HTTPS listener: TLS with optional client certificates (verified against the cluster
//! CA), HTTP/1.1 and HTTP/2, body limits, authentication, metrics, and graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::auth::{user_from_cert, User};
use crate::http::{self, Request};
use crate::pki::Pki;
use crate::Server;

/// Build the TLS acceptor from the cluster PKI.
pub fn tls_acceptor(pki: &Pki) -> anyhow::Result<TlsAcceptor> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(pki.ca.cert_pem.as_bytes()) {
        roots.add(c?)?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()?;
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(pki.serving.cert_pem.as_bytes()).collect::<Result<_, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(pki.serving.key_pem.as_bytes())?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(cfg)))
}

/// A TLS acceptor with the serving certificate and no client authentication, for the
/// unauthenticated health endpoints of the other control-plane components.
pub fn health_acceptor(pki: &Pki) -> anyhow::Result<TlsAcceptor> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(pki.serving.cert_pem.as_bytes()).collect::<Result<_, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(pki.serving.key_pem.as_bytes())?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(cfg)))
}

/// Accept connections until `shutdown` fires.
pub async fn serve(
    srv: Arc<Server>,
    listener: TcpListener,
    acceptor: TlsAcceptor,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let _ = tcp.set_nodelay(true);
        let srv = srv.clone();
        let acceptor = acceptor.clone();
        let mut conn_shutdown = shutdown.clone();
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "tls handshake failed");
                    return;
                }
            };
            let cert_user =
                tls.get_ref().1.peer_certificates().and_then(|c| c.first()).and_then(|c| user_from_cert(c));
            let service = hyper::service::service_fn(move |req| {
                let srv = srv.clone();
                let cert_user = cert_user.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(srv, req, cert_user, peer).await) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => if let Err(e) = r { tracing::debug!(%peer, error = %e, "connection ended") },
                _ = conn_shutdown.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
}

async fn handle(
    srv: Arc<Server>,
    req: hyper::Request<Incoming>,
    cert_user: Option<User>,
    peer: SocketAddr,
) -> http::Response {
    let start = Instant::now();
    let (parts, body) = req.into_parts();
    let body = match http::read_body(body).await {
        Ok(b) => b,
        Err(e) => return http::error(&e),
    };
    let auth_header = parts.headers.get("authorization").and_then(|h| h.to_str().ok());
    let mut user = cert_user.or_else(|| auth_header.and_then(|h| srv.bearer_user(h)));
    if let (None, Some(h)) = (&user, auth_header) {
        user = crate::bootstrap_token::authenticate(&srv, h).await;
    }
    dispatch(&srv, Request::from_parts(parts, body, user), start, &peer).await
}

/// Run a decoded request through the handlers, counting it in the metrics and stamping the
/// audit id; shared by HTTPS connections and in-process clients ([`crate::in_process`]).
pub(crate) async fn dispatch(srv: &Server, request: Request, start: Instant, peer: &(dyn std::fmt::Display + Sync)) -> http::Response {
    let verb = request.method.to_string();
    let path = request.path.clone();
    let mut response = crate::handler::handle(srv, request).await;
    let code = response.status().as_u16();
    let secs = start.elapsed().as_secs_f64();
    let resource = crate::handler::metric_resource(&path);
    srv.metrics.request(&verb, &resource, code, secs);
    tracing::debug!(%peer, %verb, %path, code, ms = secs * 1000.0, "request");
    response.headers_mut().insert("audit-id", uuid::Uuid::new_v4().to_string().parse().unwrap());
    response
}
