//! Building a kube-rs client from a kubeconfig file.
//!
//! Not kube's default client: that one speaks HTTP/1.1 with an unbounded pool of keep-alive
//! connections, so a node agent starting 100 pods opened ~114 TLS connections to the API
//! server (a handshake each) and kept them, ~6 MB of buffers, for 90 s. Like client-go, this
//! client multiplexes every request and watch over one HTTP/2 connection (ALPN `h2`; the
//! API server speaks both), pinging it when idle so a dead server is noticed.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use kube::client::{Body, ClientBuilder, ConfigExt};
use tower::ServiceBuilder;

/// How long to wait for the TCP connection to the API server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle time after which the connection is pinged, and how long the answer may take
/// (client-go's ReadIdleTimeout and PingTimeout are 30 s and 15 s).
const PING_INTERVAL: Duration = Duration::from_secs(30);
const PING_TIMEOUT: Duration = Duration::from_secs(15);

/// A client for the cluster described by the kubeconfig at `path`.
pub async fn from_kubeconfig(path: &Path) -> anyhow::Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(path).with_context(|| format!("reading {}", path.display()))?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .with_context(|| format!("loading {}", path.display()))?;
    if cfg.proxy_url.is_some() || cfg.cluster_url.scheme_str() != Some("https") {
        // Proxies and plain HTTP (tests only) keep kube's own stack.
        return kube::Client::try_from(cfg).context("building the API client");
    }
    http2_client(cfg).context("building the API client")
}

/// kube's layers (base URI, credentials, extra headers) over an HTTP/2-only hyper client.
fn http2_client(cfg: kube::Config) -> anyhow::Result<kube::Client> {
    // hyper-rustls sets ALPN to `h2` itself (`enable_http2` below).
    let tls = cfg.rustls_client_config()?;
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    let mut https = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_only();
    if let Some(name) = cfg.tls_server_name.as_ref() {
        let name = rustls_pki_types::ServerName::try_from(name.clone()).context("tls-server-name")?;
        https = https.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name));
    }
    let https = https.enable_http2().wrap_connector(http);
    let hyper_client: hyper_util::client::legacy::Client<_, Body> = hyper_util::client::legacy::Builder::new(TokioExecutor::new())
        .http2_only(true)
        .timer(TokioTimer::new())
        .http2_keep_alive_interval(PING_INTERVAL)
        .http2_keep_alive_timeout(PING_TIMEOUT)
        .http2_keep_alive_while_idle(true)
        .build(https);
    let service = ServiceBuilder::new()
        .layer(cfg.base_uri_layer())
        .option_layer(cfg.auth_layer()?)
        .layer(cfg.extra_headers_layer()?)
        .map_err(tower::BoxError::from)
        .service(hyper_client);
    Ok(ClientBuilder::new(service, cfg.default_namespace.clone()).build())
}
