//! The blocking HTTP side of a pull: one [`Session`] per endpoint and repository, which
//! authenticates (anonymous, basic, or bearer token from the registry's token server) and
//! fetches manifests and blobs, hashing blobs while they stream to disk.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ureq::http::{Response, StatusCode};
use ureq::tls::{Certificate, ClientCert, PemItem, RootCerts, TlsConfig};
use ureq::{Agent, Body};

use super::auth::{parse_challenge, Challenge, RegistryAuth, TokenResponse};
use super::config::{Endpoint, RegistriesConfig};
use super::RegistryError;
use crate::digest::{Digest, HashingWriter};

/// Manifests and indexes larger than this are refused: real ones are a few kB, and the
/// whole document is held in memory.
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;

/// HTTP agents per endpoint host, each with that host's TLS settings from `registries.yaml`.
pub struct Client<'a> {
    config: &'a RegistriesConfig,
    agents: HashMap<String, Agent>,
}

impl<'a> Client<'a> {
    /// A client for one pull.
    pub fn new(config: &'a RegistriesConfig) -> Self {
        Self {
            config,
            agents: HashMap::new(),
        }
    }

    /// The agent for `host`, built on first use.
    fn agent(&mut self, host: &str, registry: &str) -> Result<Agent, RegistryError> {
        if let Some(a) = self.agents.get(host) {
            return Ok(a.clone());
        }
        let mut tls = TlsConfig::builder();
        if let Some(t) = self.config.tls(host, registry) {
            if let Some(ca) = &t.ca_file {
                tls = tls.root_certs(roots_with_ca(ca)?);
            }
            if let (Some(cert), Some(key)) = (&t.cert_file, &t.key_file) {
                tls = tls.client_cert(Some(client_cert(cert, key)?));
            }
            tls = tls.disable_verification(t.insecure_skip_verify);
        }
        let agent: Agent = Agent::config_builder()
            // Statuses are protocol here (401 starts the auth dance, 404 is "unknown"), so
            // they come back as responses rather than errors.
            .http_status_as_error(false)
            .tls_config(tls.build())
            .user_agent(concat!("skiff/", env!("CARGO_PKG_VERSION")))
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_response(Some(Duration::from_secs(120)))
            // A whole-body deadline would fail large layers on slow links; a stalled
            // connection is what must not hang the pull forever.
            .timeout_per_read(Some(Duration::from_secs(120)))
            .build()
            .new_agent();
        self.agents.insert(host.to_string(), agent.clone());
        Ok(agent)
    }
}

fn read_pem(path: &Path) -> Result<Vec<PemItem<'static>>, RegistryError> {
    let bytes = std::fs::read(path).map_err(|source| RegistryError::Io {
        what: "read TLS file",
        path: path.to_path_buf(),
        source,
    })?;
    ureq::tls::parse_pem(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| RegistryError::Config {
            path: path.to_path_buf(),
            reason: format!("bad PEM: {e}"),
        })
}

/// The system's trusted roots plus the certificates of `ca_file`: a private CA is added
/// to, not substituted for, the roots, so that a token server on a public host still works.
fn roots_with_ca(ca_file: &Path) -> Result<RootCerts, RegistryError> {
    let mut certs: Vec<Certificate<'static>> = rustls_native_certs::load_native_certs()
        .certs
        .iter()
        .map(|der| Certificate::from_der(der.as_ref()).to_owned())
        .collect();
    let before = certs.len();
    for item in read_pem(ca_file)? {
        if let PemItem::Certificate(c) = item {
            certs.push(c);
        }
    }
    if certs.len() == before {
        return Err(RegistryError::Config {
            path: ca_file.to_path_buf(),
            reason: "no certificate in CA file".into(),
        });
    }
    Ok(RootCerts::Specific(Arc::new(certs)))
}

fn client_cert(cert: &Path, key: &Path) -> Result<ClientCert, RegistryError> {
    let chain: Vec<Certificate<'static>> = read_pem(cert)?
        .into_iter()
        .filter_map(|i| match i {
            PemItem::Certificate(c) => Some(c),
            _ => None,
        })
        .collect();
    let key_item = read_pem(key)?.into_iter().find_map(|i| match i {
        PemItem::PrivateKey(k) => Some(k),
        _ => None,
    });
    match key_item {
        Some(k) if !chain.is_empty() => Ok(ClientCert::new_with_certs(&chain, k)),
        _ => Err(RegistryError::Config {
            path: cert.to_path_buf(),
            reason: "client certificate or key missing from PEM files".into(),
        }),
    }
}

/// Requests to one endpoint for one repository, carrying the authorization obtained.
pub struct Session<'c, 'a> {
    client: &'c mut Client<'a>,
    /// The endpoint in use.
    pub endpoint: Endpoint,
    registry: String,
    repository: String,
    reference: String,
    creds: Option<RegistryAuth>,
    authorization: Option<String>,
    agent: Agent,
}

impl<'c, 'a> Session<'c, 'a> {
    /// Opens a session: checks `GET /v2/` and, when the registry wants authentication,
    /// obtains it for pulling `repository` (a token with scope `repository:<repo>:pull`).
    /// `creds` are used for this endpoint; `reference` names the image in errors.
    pub fn open(
        client: &'c mut Client<'a>,
        endpoint: Endpoint,
        registry: &str,
        repository: &str,
        reference: &str,
        creds: Option<RegistryAuth>,
    ) -> Result<Self, RegistryError> {
        let agent = client.agent(&endpoint.host, registry)?;
        let mut s = Self {
            client,
            endpoint,
            registry: registry.to_string(),
            repository: repository.to_string(),
            reference: reference.to_string(),
            creds,
            authorization: None,
            agent,
        };
        if let Some(token) = s.creds.as_ref().and_then(|c| c.registry_token.clone()) {
            s.authorization = Some(format!("Bearer {token}"));
        }
        let url = format!("{}/v2/", s.endpoint.base);
        let resp = s.send(&url, None)?;
        match resp.status().as_u16() {
            200..=299 => Ok(s),
            401 => {
                s.answer_challenge(&resp)?;
                Ok(s)
            }
            code => Err(s.status_error(&url, code, resp)),
        }
    }

    fn send(&self, url: &str, accept: Option<&str>) -> Result<Response<Body>, RegistryError> {
        let mut req = self.agent.get(url);
        if self.endpoint.mirror {
            // Pull-through mirrors (containerd's convention) learn the upstream from `ns`.
            req = req.query("ns", &self.registry);
        }
        if let Some(a) = accept {
            req = req.header("Accept", a);
        }
        if let Some(auth) = &self.authorization {
            req = req.header("Authorization", auth);
        }
        req.call().map_err(|e| RegistryError::Transport {
            registry: self.endpoint.host.clone(),
            url: url.to_string(),
            source: Box::new(e),
        })
    }

    fn denied(&self, detail: String) -> RegistryError {
        RegistryError::Unauthorized {
            registry: self.endpoint.host.clone(),
            reference: self.reference.clone(),
            detail,
        }
    }

    fn status_error(&self, url: &str, status: u16, resp: Response<Body>) -> RegistryError {
        if status == 401 || status == 403 {
            return self.denied(format!("{url} answered {status}"));
        }
        let mut body = resp.into_body();
        let text = body
            .with_config()
            .limit(4096)
            .lossy_utf8(true)
            .read_to_string()
            .unwrap_or_default();
        RegistryError::Status {
            registry: self.endpoint.host.clone(),
            url: url.to_string(),
            status,
            body: text.trim().chars().take(300).collect(),
        }
    }

    /// Turns a 401's challenge into an `Authorization` header for the next requests.
    fn answer_challenge(&mut self, resp: &Response<Body>) -> Result<(), RegistryError> {
        let header = resp
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        match parse_challenge(header) {
            Some(Challenge::Basic) => match &self.creds {
                Some(c) if !c.username.is_empty() => {
                    self.authorization = Some(c.basic_header());
                    Ok(())
                }
                _ => Err(self.denied(
                    "registry requires basic auth and no credentials are configured".into(),
                )),
            },
            Some(Challenge::Bearer {
                realm,
                service,
                scope,
            }) => {
                let token = self.fetch_token(&realm, service.as_deref(), scope.as_deref())?;
                self.authorization = Some(format!("Bearer {token}"));
                Ok(())
            }
            None => Err(self.denied(format!("401 with unsupported challenge {header:?}"))),
        }
    }

    /// The bearer-token flow: `GET realm?service=..&scope=..`, with basic credentials when
    /// there are any, answers `{"token": ...}`.
    fn fetch_token(
        &mut self,
        realm: &str,
        service: Option<&str>,
        scope: Option<&str>,
    ) -> Result<String, RegistryError> {
        let realm_endpoint = Endpoint::parse(realm, false)
            .map_err(|r| self.denied(format!("token realm {realm:?} is not a URL: {r}")))?;
        let agent = self.client.agent(&realm_endpoint.host, &self.registry)?;
        let own_scope = format!("repository:{}:pull", self.repository);
        let mut req = agent.get(realm).query("scope", scope.unwrap_or(&own_scope));
        if let Some(s) = service {
            req = req.query("service", s);
        }
        // Credentials travel in clear only where the operator chose plain HTTP for the
        // registry itself; a token server on http:// behind an HTTPS registry gets none.
        let may_send = realm_endpoint.base.starts_with("https://") || self.endpoint.plain_http();
        if let Some(c) = self
            .creds
            .as_ref()
            .filter(|c| !c.username.is_empty() && may_send)
        {
            req = req.header("Authorization", &c.basic_header());
        }
        let resp = req.call().map_err(|e| RegistryError::Transport {
            registry: realm_endpoint.host.clone(),
            url: realm.to_string(),
            source: Box::new(e),
        })?;
        let status = resp.status().as_u16();
        if status == 401 || status == 403 {
            return Err(self.denied(format!("token server {realm} answered {status}")));
        }
        if !(200..300).contains(&status) {
            return Err(self.status_error(realm, status, resp));
        }
        let body = resp
            .into_body()
            .with_config()
            .limit(1 << 20)
            .read_to_vec()
            .map_err(|e| RegistryError::Transport {
                registry: realm_endpoint.host.clone(),
                url: realm.to_string(),
                source: Box::new(e),
            })?;
        let parsed: TokenResponse = serde_json::from_slice(&body)
            .map_err(|e| self.denied(format!("token server {realm} sent no token: {e}")))?;
        parsed
            .token
            .or(parsed.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| self.denied(format!("token server {realm} sent an empty token")))
    }

    /// GET with auth: a 401 is answered once (a registry may ask for a narrower scope than
    /// the ping obtained), a second 401 or a 403 is an authorization failure.
    fn get(&mut self, url: &str, accept: Option<&str>) -> Result<Response<Body>, RegistryError> {
        let resp = self.send(url, accept)?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        let before = self.authorization.clone();
        self.answer_challenge(&resp)?;
        let resp = self.send(url, accept)?;
        if resp.status() == StatusCode::UNAUTHORIZED && before == self.authorization {
            return Err(self.denied(format!("{url} answered 401")));
        }
        Ok(resp)
    }

    /// Fetches a manifest or index by tag or digest; returns its bytes and `Content-Type`.
    /// A `Docker-Content-Digest` header, when sent, must match the bytes.
    pub fn manifest(
        &mut self,
        tag_or_digest: &str,
        accept: &str,
    ) -> Result<(Vec<u8>, Option<String>), RegistryError> {
        let url = format!(
            "{}/v2/{}/manifests/{tag_or_digest}",
            self.endpoint.base, self.repository
        );
        let resp = self.get(&url, Some(accept))?;
        let status = resp.status().as_u16();
        if status == 404 {
            let body = resp
                .into_body()
                .with_config()
                .limit(4096)
                .lossy_utf8(true)
                .read_to_string()
                .unwrap_or_default();
            let code = registry_error_code(&body).unwrap_or_else(|| "no error code".into());
            return Err(RegistryError::ManifestUnknown {
                registry: self.endpoint.host.clone(),
                reference: self.reference.clone(),
                detail: format!("404 {code}"),
            });
        }
        if !(200..300).contains(&status) {
            return Err(self.status_error(&url, status, resp));
        }
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_string());
        let announced = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| Digest::parse(v.trim()).ok());
        let bytes = resp
            .into_body()
            .with_config()
            .limit(MAX_MANIFEST_BYTES)
            .read_to_vec()
            .map_err(|e| RegistryError::Transport {
                registry: self.endpoint.host.clone(),
                url,
                source: Box::new(e),
            })?;
        if let Some(want) = announced {
            let actual = Digest::of_bytes(&bytes);
            if actual != want {
                return Err(RegistryError::DigestMismatch {
                    registry: self.endpoint.host.clone(),
                    reference: self.reference.clone(),
                    what: "manifest",
                    expected: want.to_string(),
                    actual: actual.to_string(),
                });
            }
        }
        Ok((bytes, content_type))
    }

    /// Streams the blob `digest` into `dest`, hashing as it goes; `dest` exists afterwards
    /// only if the content hashed to `digest` and had `size` bytes.
    pub fn blob(
        &mut self,
        digest: &Digest,
        size: u64,
        what: &'static str,
        dest: &Path,
    ) -> Result<(), RegistryError> {
        let url = format!(
            "{}/v2/{}/blobs/{digest}",
            self.endpoint.base, self.repository
        );
        let resp = self.get(&url, None)?;
        let status = resp.status().as_u16();
        if status == 404 {
            return Err(RegistryError::BlobUnknown {
                registry: self.endpoint.host.clone(),
                reference: self.reference.clone(),
                digest: digest.to_string(),
            });
        }
        if !(200..300).contains(&status) {
            return Err(self.status_error(&url, status, resp));
        }
        let partial = dest.with_extension("partial");
        let result = self.stream_verified(resp, digest, size, what, &url, &partial);
        match result {
            Ok(()) => std::fs::rename(&partial, dest).map_err(|source| RegistryError::Io {
                what: "commit download",
                path: dest.to_path_buf(),
                source,
            }),
            Err(e) => {
                let _ = std::fs::remove_file(&partial);
                Err(e)
            }
        }
    }

    fn stream_verified(
        &self,
        resp: Response<Body>,
        digest: &Digest,
        size: u64,
        what: &'static str,
        url: &str,
        partial: &Path,
    ) -> Result<(), RegistryError> {
        let io_err = |what: &'static str| {
            move |source| RegistryError::Io {
                what,
                path: partial.to_path_buf(),
                source,
            }
        };
        let file = File::create(partial).map_err(io_err("create download"))?;
        let mut out = HashingWriter::new(BufWriter::with_capacity(1 << 16, file));
        // Read one byte past the descriptor's size so that an over-long body is caught
        // without reading an endless one.
        let mut body = resp.into_body().into_reader().take(size.saturating_add(1));
        let copied = std::io::copy(&mut body, &mut out).map_err(|e| RegistryError::Transport {
            registry: self.endpoint.host.clone(),
            url: url.to_string(),
            source: Box::new(ureq::Error::Io(e)),
        })?;
        let (actual, writer) = out.finish();
        // No fsync: this is staging; the store copies what it keeps.
        writer
            .into_inner()
            .map_err(|e| e.into_error())
            .map_err(io_err("write download"))?;
        if copied != size {
            return Err(RegistryError::SizeMismatch {
                registry: self.endpoint.host.clone(),
                reference: self.reference.clone(),
                digest: digest.to_string(),
                expected: size,
                actual: copied,
            });
        }
        if &actual != digest {
            return Err(RegistryError::DigestMismatch {
                registry: self.endpoint.host.clone(),
                reference: self.reference.clone(),
                what,
                expected: digest.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(())
    }

    /// The registry host in use, for errors raised by callers.
    pub fn host(&self) -> &str {
        &self.endpoint.host
    }

    /// The image reference, for errors raised by callers.
    pub fn reference(&self) -> &str {
        &self.reference
    }
}

/// The first `errors[].code` of a distribution-spec error body (`MANIFEST_UNKNOWN`).
fn registry_error_code(body: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    v.get("errors")?
        .get(0)?
        .get("code")?
        .as_str()
        .map(str::to_string)
}

/// Writes all of `bytes` to `path` (small documents the pull already verified).
pub(crate) fn write_file(path: &Path, bytes: &[u8]) -> Result<(), RegistryError> {
    File::create(path)
        .and_then(|mut f| f.write_all(bytes))
        .map_err(|source| RegistryError::Io {
            what: "write",
            path: path.to_path_buf(),
            source,
        })
}
