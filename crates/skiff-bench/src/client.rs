//! A minimal HTTP/1.1 client: one connection per worker (TLS with the admin client certificate
//! for skiff, plain TCP for etcd's gRPC gateway), requests sent back to back on it.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use base64::Engine;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Where and how to connect.
pub enum Target {
    /// skiff's HTTPS API, authenticated by the admin client certificate.
    Tls {
        addr: SocketAddr,
        connector: TlsConnector,
        name: ServerName<'static>,
    },
    /// A plain HTTP endpoint (etcd's JSON gateway).
    Plain { addr: SocketAddr },
}

impl Target {
    /// The HTTPS target described by the admin kubeconfig of a skiff data dir.
    pub fn from_kubeconfig(path: &Path) -> anyhow::Result<Arc<Target>> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let doc: serde_yaml::Value = serde_yaml::from_str(&text)?;
        let field = |v: &serde_yaml::Value, k: &str| -> anyhow::Result<Vec<u8>> {
            let s = v
                .get(k)
                .and_then(|x| x.as_str())
                .ok_or_else(|| anyhow!("kubeconfig: no {k}"))?;
            Ok(base64::engine::general_purpose::STANDARD.decode(s)?)
        };
        let cluster = &doc["clusters"][0]["cluster"];
        let user = &doc["users"][0]["user"];
        let ca_pem = field(cluster, "certificate-authority-data")?;
        let cert_pem = field(user, "client-certificate-data")?;
        let key_pem = field(user, "client-key-data")?;
        let server = cluster["server"]
            .as_str()
            .ok_or_else(|| anyhow!("kubeconfig: no server"))?;
        let hostport = server
            .strip_prefix("https://")
            .ok_or_else(|| anyhow!("server {server} is not https"))?;
        let addr: SocketAddr = hostport
            .trim_end_matches('/')
            .parse()
            .with_context(|| format!("server address {hostport}"))?;

        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(&ca_pem) {
            roots.add(c?)?;
        }
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(&cert_pem).collect::<Result<_, _>>()?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)?;
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(Target::Tls {
            addr,
            connector: TlsConnector::from(Arc::new(cfg)),
            name: ServerName::IpAddress(addr.ip().into()),
        }))
    }

    pub fn addr(&self) -> SocketAddr {
        match self {
            Target::Tls { addr, .. } | Target::Plain { addr } => *addr,
        }
    }
}

/// One keep-alive HTTP/1.1 connection.
pub struct Conn {
    target: Arc<Target>,
    sender: http1::SendRequest<Full<Bytes>>,
}

/// A response with its whole body.
pub struct Reply {
    pub status: StatusCode,
    pub body: Bytes,
}

impl Conn {
    pub async fn connect(target: Arc<Target>) -> anyhow::Result<Conn> {
        let tcp = TcpStream::connect(target.addr()).await?;
        tcp.set_nodelay(true)?;
        let sender = match &*target {
            Target::Tls {
                connector, name, ..
            } => {
                let tls = connector.connect(name.clone(), tcp).await?;
                let (sender, conn) = http1::handshake(TokioIo::new(tls)).await?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                sender
            }
            Target::Plain { .. } => {
                let (sender, conn) = http1::handshake(TokioIo::new(tcp)).await?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                sender
            }
        };
        Ok(Conn { target, sender })
    }

    /// `n` connections to the same target.
    pub async fn many(target: &Arc<Target>, n: usize) -> anyhow::Result<Vec<Conn>> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(Conn::connect(target.clone()).await?);
        }
        Ok(out)
    }

    fn request(
        method: &Method,
        path: &str,
        ctype: Option<&str>,
        body: Bytes,
    ) -> anyhow::Result<Request<Full<Bytes>>> {
        let mut b = Request::builder()
            .method(method.clone())
            .uri(path)
            .header(http::header::HOST, "127.0.0.1");
        b = b.header(http::header::ACCEPT, "application/json");
        if let Some(ct) = ctype {
            b = b.header(http::header::CONTENT_TYPE, ct);
        }
        Ok(b.body(Full::new(body))?)
    }

    async fn ready(&mut self) -> anyhow::Result<()> {
        if self.sender.ready().await.is_err() || self.sender.is_closed() {
            // The server closed the keep-alive connection: open a new one.
            *self = Conn::connect(self.target.clone()).await?;
        }
        Ok(())
    }

    /// Send one request and read the whole response.
    pub async fn send(
        &mut self,
        method: &Method,
        path: &str,
        ctype: Option<&str>,
        body: Bytes,
    ) -> anyhow::Result<Reply> {
        self.ready().await?;
        let resp = self
            .sender
            .send_request(Self::request(method, path, ctype, body)?)
            .await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok(Reply { status, body })
    }

    /// Send one request and hand back the streaming response (watches).
    pub async fn stream(&mut self, path: &str) -> anyhow::Result<Response<Incoming>> {
        self.ready().await?;
        let resp = self
            .sender
            .send_request(Self::request(&Method::GET, path, None, Bytes::new())?)
            .await?;
        if !resp.status().is_success() {
            let status = resp.status();
            let body = resp.into_body().collect().await?.to_bytes();
            bail!("GET {path}: {status}: {}", String::from_utf8_lossy(&body));
        }
        Ok(resp)
    }
}
