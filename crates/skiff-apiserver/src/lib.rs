//! skiff-apiserver: the Kubernetes REST API over HTTPS, on top of `skiff-store`.
//!
//! Data flow: [`server`] accepts TLS connections and authenticates; [`route`] turns the path
//! into what it addresses; [`handler`] runs the verb (discovery, get/list/watch, create,
//! update, patch, delete, subresources) through [`admission`] (defaults, validation,
//! allocation) and [`objects`] (the store). Only this crate touches the store; every other
//! component is an API client. May call `skiff-api` and `skiff-store`.
#![forbid(unsafe_code)]
// `ApiError` carries a whole upstream Status (message, details, causes); it is returned on
// the cold path only, so its size is not worth boxing every error for.
#![allow(clippy::result_large_err)]

pub mod admission;
pub mod auth;
pub mod filter;
pub mod bootstrap;
pub mod bootstrap_token;
pub mod convert;
pub mod handler;
pub mod http;
pub mod in_process;
pub mod metrics;
pub mod node_authz;
pub mod objects;
pub mod pki;
mod patching;
mod protobuf_body;
mod raw_list;
pub mod tables;
pub mod resources;
pub mod route;
pub mod sa_token;
pub mod server;
mod ssa;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use skiff_store::Store;

/// API server settings. `Default` gives upstream/k3s-like defaults.
#[derive(Debug, Clone)]
pub struct Config {
    /// Directory for TLS material, tokens and the kubeconfig.
    pub data_dir: PathBuf,
    /// Address to listen on.
    pub bind_address: IpAddr,
    /// HTTPS port (6443).
    pub port: u16,
    /// Address clients and the `kubernetes` Service endpoints use to reach this server.
    pub advertise_address: IpAddr,
    /// Extra names/IPs for the serving certificate.
    pub tls_sans: Vec<String>,
    /// Where else to write the admin kubeconfig.
    pub write_kubeconfig: Option<PathBuf>,
    /// Service cluster IP range (10.43.0.0/16).
    pub service_cidr: (std::net::Ipv4Addr, u8),
    /// NodePort range, inclusive (30000-32767).
    pub node_port_range: (u16, u16),
    /// tolerationSeconds given to pods for not-ready/unreachable nodes.
    pub default_toleration_seconds: i64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("/var/lib/skiff"),
            bind_address: IpAddr::from([0, 0, 0, 0]),
            port: 6443,
            advertise_address: IpAddr::from([127, 0, 0, 1]),
            tls_sans: Vec::new(),
            write_kubeconfig: None,
            service_cidr: (std::net::Ipv4Addr::new(10, 43, 0, 0), 16),
            node_port_range: (30000, 32767),
            default_toleration_seconds: admission::DEFAULT_TOLERATION_SECONDS,
        }
    }
}

impl Config {
    /// The first address of the service range: the `kubernetes` Service's ClusterIP.
    pub fn kubernetes_service_ip(&self) -> std::net::Ipv4Addr {
        let base = u32::from(self.service_cidr.0);
        std::net::Ipv4Addr::from(base + 1)
    }
}

/// Shared state of a running API server, handed to every handler.
pub struct Server {
    /// Settings.
    pub config: Config,
    /// Objects in the store.
    pub objects: objects::Objects,
    /// Served resources (built-in + CRDs).
    pub resources: resources::Resources,
    /// Bearer tokens.
    pub tokens: auth::TokenAuthenticator,
    /// Metrics.
    pub metrics: Arc<metrics::Metrics>,
    /// Serializes ClusterIP/NodePort allocation so two creates never get the same one.
    pub allocation: tokio::sync::Mutex<()>,
    /// The cluster PKI.
    pub pki: pki::Pki,
    /// Cached OpenAPI documents.
    pub openapi: handler::openapi::OpenApiCache,
    /// Service account token signer/verifier.
    pub sa_tokens: sa_token::TokenSigner,
    /// Watch events rendered once for all watchers.
    pub watch_events: Arc<handler::watch_cache::EventCache>,
    /// Namespaces holding ResourceQuotas or LimitRanges (admission skips the others).
    pub policy_presence: admission::presence::PolicyPresence,
    /// PriorityClasses for Priority admission, kept from a store watch.
    pub priority_classes: admission::priority_classes::PriorityClasses,
}

impl Server {
    /// The user of an `Authorization` header: the admin token or a service account JWT.
    pub fn bearer_user(&self, header: &str) -> Option<auth::User> {
        if let Some(u) = self.tokens.authenticate(header) {
            return Some(u);
        }
        let token = header.strip_prefix("Bearer ").or_else(|| header.strip_prefix("bearer "))?.trim();
        self.sa_tokens.verify(token)
    }
}

/// A built, not yet running, API server.
pub struct ApiServer {
    srv: Arc<Server>,
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl ApiServer {
    /// Prepare certificates, tokens, kubeconfig and the listener; seed first-start objects.
    pub async fn build(config: Config, store: Arc<dyn Store>) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&config.data_dir)?;
        let mut sans: Vec<String> = vec![
            "localhost".into(),
            "127.0.0.1".into(),
            "kubernetes".into(),
            "kubernetes.default".into(),
            "kubernetes.default.svc".into(),
            "kubernetes.default.svc.cluster.local".into(),
            config.kubernetes_service_ip().to_string(),
            config.advertise_address.to_string(),
        ];
        if let Ok(h) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
            sans.push(h.trim().to_lowercase());
        }
        if !config.bind_address.is_unspecified() {
            sans.push(config.bind_address.to_string());
        }
        sans.extend(config.tls_sans.iter().cloned());
        sans.dedup();
        let pki = pki::Pki::load_or_create(&config.data_dir.join("tls"), &sans)?;
        let listener = tokio::net::TcpListener::bind(SocketAddr::new(config.bind_address, config.port)).await?;
        let local = listener.local_addr()?;
        let host = if config.bind_address.is_unspecified() { "127.0.0.1".to_string() } else { config.bind_address.to_string() };
        let url = format!("https://{}:{}", host, local.port());
        let kubeconfig = config.data_dir.join("kubeconfig.yaml");
        pki.write_kubeconfig(&kubeconfig, &url)?;
        if let Some(extra) = &config.write_kubeconfig {
            pki.write_kubeconfig(extra, &url)?;
        }
        tracing::info!(path = %kubeconfig.display(), "wrote admin kubeconfig");
        let tokens = auth::TokenAuthenticator::default();
        let admin_token = auth::load_or_create_token(&config.data_dir.join("tls").join("admin.token"))?;
        tokens.add(&admin_token, auth::User::new("system:admin", &["system:masters".to_string()]));
        let acceptor = server::tls_acceptor(&pki)?;
        let sa_tokens = sa_token::TokenSigner::load_or_create(&config.data_dir.join("tls").join("sa.key"))?;
        let metrics = Arc::new(metrics::Metrics::default());
        let srv = Arc::new(Server {
            config,
            objects: objects::Objects::new(store, metrics.clone()),
            resources: resources::Resources::new(),
            tokens,
            metrics,
            allocation: tokio::sync::Mutex::new(()),
            pki,
            openapi: Default::default(),
            sa_tokens,
            watch_events: Default::default(),
            policy_presence: Default::default(),
            priority_classes: Default::default(),
        });
        bootstrap::seed(&srv).await?;
        handler::crd::load_all(&srv).await?;
        Ok(Self { srv, listener, acceptor })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("bound listener")
    }

    /// Shared state (for in-process callers and tests).
    pub fn state(&self) -> Arc<Server> {
        self.srv.clone()
    }

    /// Serve until `shutdown` becomes true.
    pub async fn run(self, shutdown: tokio::sync::watch::Receiver<bool>) {
        tracing::info!(addr = %self.local_addr(), "API server listening");
        let srv = self.srv.clone();
        let crd_task = tokio::spawn(handler::crd::watch_crds(srv.clone()));
        let expiry_task = tokio::spawn(srv.watch_events.clone().expire_periodically());
        let presence_task = tokio::spawn(admission::presence::PolicyPresence::run(srv.clone()));
        let priority_task = tokio::spawn(admission::priority_classes::PriorityClasses::run(srv.clone()));
        server::serve(self.srv, self.listener, self.acceptor, shutdown).await;
        crd_task.abort();
        expiry_task.abort();
        presence_task.abort();
        priority_task.abort();
        tracing::info!("API server stopped");
    }
}
