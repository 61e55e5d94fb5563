//! TLS bootstrap of a node agent, kubeadm style.
//!
//! 1. [`discovery`]: fetch `kube-public/cluster-info` without trusting the server, accept its
//!    CA only if the JWS for our bootstrap token verifies (and the CA matches the pin).
//! 2. Trusting that CA, authenticate with the bootstrap token (`system:bootstrap:<id>`) and
//!    ask for a client certificate through a CertificateSigningRequest ([`csr`]); the
//!    controller manager approves and signs it. Write `<data_dir>/kubelet.kubeconfig`.
//! 3. With the new identity (`system:node:<name>`), ask for the serving certificate of the
//!    streaming server (signer `kubernetes.io/kubelet-serving`).
//!
//! On restart a client certificate with more than 10% of its life left is reused (no token
//! needed); [`rotate_if_needed`] renews both certificates once 80% of their life has passed.

pub mod csr;
pub mod discovery;
pub mod jws;
pub mod pin;
pub mod token;
mod files;

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use pin::ca_pin;
pub use token::{create_token_secret, BootstrapToken};

/// A client certificate with less than this fraction of its life left is not reused at start.
const REUSE_MIN_REMAINING: f64 = 0.10;
/// Certificates are renewed once this fraction of their life has passed.
pub const ROTATE_AFTER: f64 = 0.80;

/// Errors of the TLS bootstrap, each saying what failed and what to check.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// The token is not `<id>.<secret>`.
    #[error("invalid bootstrap token: {0}")]
    InvalidToken(String),
    /// The CA pin is not `sha256:<64 hex>`.
    #[error("invalid CA pin {0:?}: want sha256:<64 hex digits>, as printed by 'skiff token create'")]
    InvalidPin(String),
    /// The server URL does not parse.
    #[error("invalid server url {0}")]
    InvalidServer(String),
    /// The server could not be read during discovery.
    #[error("reading cluster-info from {server}: {source}")]
    Discovery {
        /// Server URL.
        server: String,
        /// Client error.
        #[source]
        source: kube::Error,
    },
    /// The server has no cluster-info ConfigMap (its controller manager has not published it).
    #[error("{server} has no kube-public/cluster-info configmap yet; is the controller manager running?")]
    ClusterInfoMissing {
        /// Server URL.
        server: String,
    },
    /// cluster-info exists but cannot be used.
    #[error("cluster-info is unusable: {0}")]
    ClusterInfoInvalid(String),
    /// No signature for our token id: the token is unknown, expired or not yet signed.
    #[error("cluster-info has no signature for token id {token_id:?}: the token is unknown or expired (create one with 'skiff token create')")]
    NoSignature {
        /// Token id.
        token_id: String,
    },
    /// The signature does not verify: wrong token secret, or cluster-info was tampered with.
    #[error("cluster-info signature for token id {token_id:?} does not verify: wrong token secret or a tampered response ({source})")]
    BadSignature {
        /// Token id.
        token_id: String,
        /// Why.
        #[source]
        source: jws::JwsError,
    },
    /// The CA does not match the pin given on the command line.
    #[error("the cluster CA does not match the pinned public key: expected {expected}, the server's CA is {actual}")]
    PinMismatch {
        /// Pin given.
        expected: String,
        /// Pin of the CA found.
        actual: String,
    },
    /// The server refused our credentials.
    #[error("the server refused the credentials while {what} (401): the bootstrap token is unknown, expired or wrong")]
    Unauthorized {
        /// What was being done.
        what: String,
    },
    /// A CSR was denied or failed.
    #[error("certificate signing request {name} was denied: {reason}")]
    CsrDenied {
        /// CSR name.
        name: String,
        /// Condition reason and message.
        reason: String,
    },
    /// A CSR was not issued in time.
    #[error("certificate signing request {name} was not approved and issued within {waited:?}; check 'kubectl get csr' and the controller manager")]
    CsrTimeout {
        /// CSR name.
        name: String,
        /// How long we waited.
        waited: Duration,
    },
    /// Watching a CSR failed.
    #[error("waiting for certificate signing request {name}: {reason}")]
    CsrWait {
        /// CSR name.
        name: String,
        /// Why.
        reason: String,
    },
    /// Any other API call failed.
    #[error("{what}: {source}")]
    Api {
        /// What was being done.
        what: String,
        /// Client error.
        #[source]
        source: kube::Error,
    },
    /// Certificate or key material could not be made or read.
    #[error("certificate: {0}")]
    Certificate(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

impl BootstrapError {
    pub(crate) fn api(what: impl Into<String>, source: kube::Error) -> Self {
        Self::Api { what: what.into(), source }
    }

    pub(crate) fn discovery(server: &str, source: kube::Error) -> Self {
        Self::Discovery { server: server.to_string(), source }
    }
}

/// What an agent needs to join.
#[derive(Debug, Clone)]
pub struct JoinOptions {
    /// API server URL, e.g. `https://10.0.0.1:6443`.
    pub server: String,
    /// Bootstrap token `<id>.<secret>`; unused when valid credentials already exist.
    pub token: String,
    /// `sha256:<hex>` of the CA's SubjectPublicKeyInfo (kubeadm's
    /// `--discovery-token-ca-cert-hash`). Without it, the CA is trusted on the token's JWS alone.
    pub ca_pin: Option<String>,
    /// The agent's data dir (`<data>/agent`); credentials are kept here.
    pub data_dir: PathBuf,
    /// Node name; the identity becomes `system:node:<node_name>`.
    pub node_name: String,
    /// Node addresses for the serving certificate.
    pub node_ips: Vec<IpAddr>,
    /// How long discovery retries while cluster-info or the token's signature is not yet
    /// published (a fresh token is signed asynchronously).
    pub discovery_timeout: Duration,
    /// How long to wait for each CSR to be approved and issued.
    pub csr_timeout: Duration,
}

impl Default for JoinOptions {
    fn default() -> Self {
        Self {
            server: String::new(),
            token: String::new(),
            ca_pin: None,
            data_dir: PathBuf::new(),
            node_name: String::new(),
            node_ips: Vec::new(),
            discovery_timeout: Duration::from_secs(60),
            csr_timeout: Duration::from_secs(300),
        }
    }
}

/// Credentials of a joined node.
#[derive(Debug, Clone)]
pub struct JoinedCredentials {
    /// Kubeconfig with the node's client certificate (`<data_dir>/kubelet.kubeconfig`, 0600).
    pub kubeconfig_path: PathBuf,
    /// The cluster CA (PEM).
    pub ca_pem: String,
    /// Serving certificate of the streaming server (PEM).
    pub serving_cert_pem: String,
    /// Its private key (PEM).
    pub serving_key_pem: String,
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Join the cluster, or reuse the credentials of an earlier join if they are still good.
pub async fn join(opts: JoinOptions) -> Result<JoinedCredentials, BootstrapError> {
    let paths = files::Paths::new(&opts.data_dir);
    paths.create_dirs()?;
    let reusable = match paths.load_client()? {
        Some(c) => csr::elapsed_fraction(&c.cert_pem, now())? < 1.0 - REUSE_MIN_REMAINING,
        None => false,
    };
    if reusable {
        tracing::info!(path = %paths.kubeconfig.display(), "reusing the node's client certificate");
    } else {
        bootstrap_client(&opts, &paths).await?;
    }
    let ca_pem = paths.read_ca()?;
    let serving = match paths.load_serving()? {
        Some(s) if csr::elapsed_fraction(&s.cert_pem, now())? < ROTATE_AFTER => s,
        _ => request_serving(&opts, &paths).await?,
    };
    Ok(JoinedCredentials {
        kubeconfig_path: paths.kubeconfig.clone(),
        ca_pem,
        serving_cert_pem: serving.cert_pem,
        serving_key_pem: serving.key_pem,
    })
}

/// Steps 1 and 2: discovery, then a client certificate requested with the bootstrap token.
async fn bootstrap_client(opts: &JoinOptions, paths: &files::Paths) -> Result<(), BootstrapError> {
    let token = BootstrapToken::parse(&opts.token)?;
    let ca_pem = discovery::discover_ca(&opts.server, &token, opts.ca_pin.as_deref(), opts.discovery_timeout).await?;
    tracing::info!(server = %opts.server, token_id = %token.id, "cluster CA verified with the bootstrap token");
    let client = files::token_client(&opts.server, &ca_pem, &token).await?;
    let req = csr::client_request(&opts.node_name)?;
    let cert = csr::request_certificate(&client, &req.csr_pem, csr::CLIENT_SIGNER, csr::CLIENT_USAGES, opts.csr_timeout).await?;
    paths.write_ca(&ca_pem)?;
    paths.write_client(&opts.server, &ca_pem, &files::Pair { cert_pem: cert, key_pem: req.key_pem })
}

/// Step 3: a serving certificate requested with the node's own client certificate.
async fn request_serving(opts: &JoinOptions, paths: &files::Paths) -> Result<files::Pair, BootstrapError> {
    let client = files::kubeconfig_client(&paths.kubeconfig).await?;
    let req = csr::serving_request(&opts.node_name, &opts.node_ips)?;
    let cert = csr::request_certificate(&client, &req.csr_pem, csr::SERVING_SIGNER, csr::SERVING_USAGES, opts.csr_timeout).await?;
    let pair = files::Pair { cert_pem: cert, key_pem: req.key_pem };
    paths.write_serving(&pair)?;
    Ok(pair)
}

/// What [`rotate_if_needed`] did.
#[derive(Debug, Clone)]
pub struct Rotation {
    /// The client certificate (and kubeconfig) was renewed; clients built from the old
    /// kubeconfig keep working until the old certificate expires, but should be rebuilt.
    pub client_rotated: bool,
    /// The serving certificate was renewed; the streaming server should reload it.
    pub serving_rotated: bool,
    /// The credentials now on disk.
    pub credentials: JoinedCredentials,
}

/// Renew the client and serving certificates once [`ROTATE_AFTER`] of their life has passed,
/// authenticating with the current client certificate (a self-renewal the approver allows
/// without a token). Meant to be called periodically (e.g. every few minutes) after [`join`].
pub async fn rotate_if_needed(opts: &JoinOptions) -> Result<Rotation, BootstrapError> {
    let paths = files::Paths::new(&opts.data_dir);
    let client_pair = paths
        .load_client()?
        .ok_or_else(|| BootstrapError::Certificate(format!("{} has no client certificate; join first", paths.kubeconfig.display())))?;
    let ca_pem = paths.read_ca()?;
    let mut client_rotated = false;
    if csr::elapsed_fraction(&client_pair.cert_pem, now())? >= ROTATE_AFTER {
        let client = files::kubeconfig_client(&paths.kubeconfig).await?;
        let req = csr::client_request(&opts.node_name)?;
        let cert = csr::request_certificate(&client, &req.csr_pem, csr::CLIENT_SIGNER, csr::CLIENT_USAGES, opts.csr_timeout).await?;
        paths.write_client(&opts.server, &ca_pem, &files::Pair { cert_pem: cert, key_pem: req.key_pem })?;
        tracing::info!("rotated the node's client certificate");
        client_rotated = true;
    }
    let (serving, serving_rotated) = match paths.load_serving()? {
        Some(s) if csr::elapsed_fraction(&s.cert_pem, now())? < ROTATE_AFTER => (s, false),
        _ => {
            tracing::info!("rotating the node's serving certificate");
            (request_serving(opts, &paths).await?, true)
        }
    };
    Ok(Rotation {
        client_rotated,
        serving_rotated,
        credentials: JoinedCredentials {
            kubeconfig_path: paths.kubeconfig.clone(),
            ca_pem,
            serving_cert_pem: serving.cert_pem,
            serving_key_pem: serving.key_pem,
        },
    })
}
