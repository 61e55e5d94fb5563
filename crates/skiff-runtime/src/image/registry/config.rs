//! `<data-dir>/registries.yaml`, in k3s' format, and the endpoints a pull tries.
//!
//! ```yaml
//! mirrors:
//!   docker.io:
//!     endpoint: ["https://mirror.internal:5000"]
//!   "registry.local:5000":
//!     endpoint: ["http://registry.local:5000"]   # plain HTTP: this registry is insecure
//! configs:
//!   "mirror.internal:5000":
//!     auth: {username: me, password: secret}
//!     tls: {ca_file: /etc/ssl/mirror-ca.pem, insecure_skip_verify: false}
//! ```
//!
//! As in k3s, plain HTTP is used only for an endpoint written with `http://`; a registry
//! without mirrors is reached over HTTPS. The `*` mirror applies to every registry.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;

use super::auth::RegistryAuth;
use super::RegistryError;

/// The parsed `registries.yaml`. Unknown keys (k3s' `rewrite`, ...) are ignored.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RegistriesConfig {
    /// Mirrors per registry name (`docker.io`, `registry.local:5000`, or `*`).
    #[serde(default)]
    pub mirrors: BTreeMap<String, Mirror>,
    /// Credentials and TLS settings per endpoint host (`host` or `host:port`).
    #[serde(default)]
    pub configs: BTreeMap<String, HostConfig>,
}

/// The endpoints that serve a registry's content.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Mirror {
    /// Endpoint URLs, tried in order before the registry's own endpoint.
    #[serde(default)]
    pub endpoint: Vec<String>,
}

/// Settings for one endpoint host.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct HostConfig {
    /// Credentials for the host.
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    /// TLS settings for the host.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

/// Credentials in `registries.yaml`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AuthConfig {
    /// User name for basic auth or the token server.
    #[serde(default)]
    pub username: Option<String>,
    /// Password.
    #[serde(default)]
    pub password: Option<String>,
    /// `base64(username:password)`, as in a docker config.
    #[serde(default)]
    pub auth: Option<String>,
}

/// TLS settings in `registries.yaml`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TlsConfig {
    /// PEM file of CA certificates trusted for this host, on top of the system roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain, for registries that require mutual TLS.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// PEM private key of the client certificate.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Accept any server certificate (still TLS, but unauthenticated).
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// One place to pull from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Base URL without trailing slash or `/v2`, such as `https://registry-1.docker.io`.
    pub base: String,
    /// `host[:port]` of the URL, the key into [`RegistriesConfig::configs`].
    pub host: String,
    /// Whether this is a mirror rather than the registry itself.
    pub mirror: bool,
}

impl Endpoint {
    /// Parses an endpoint URL; a URL without scheme means HTTPS, as in k3s.
    pub fn parse(url: &str, mirror: bool) -> Result<Self, String> {
        let url = url.trim().trim_end_matches('/');
        let (scheme, rest) = match url.split_once("://") {
            Some((s, r)) => (s.to_ascii_lowercase(), r),
            None => ("https".to_string(), url),
        };
        if scheme != "http" && scheme != "https" {
            return Err(format!("endpoint {url:?}: scheme must be http or https"));
        }
        let rest = rest.strip_suffix("/v2").unwrap_or(rest);
        let host = rest.split('/').next().unwrap_or("");
        if host.is_empty() {
            return Err(format!("endpoint {url:?} has no host"));
        }
        Ok(Self {
            base: format!("{scheme}://{rest}"),
            host: host.to_string(),
            mirror,
        })
    }

    /// Whether requests to this endpoint go over plain HTTP.
    pub fn plain_http(&self) -> bool {
        self.base.starts_with("http://")
    }
}

/// Where `registries.yaml` lives for a runtime root: `<data-dir>/registries.yaml` when the
/// root is skiff's `<data-dir>/agent/runtime`, otherwise `<root>/registries.yaml` (a
/// runtime used on its own, such as by the development binary).
pub fn registries_yaml_for_runtime_root(root: &Path) -> PathBuf {
    if root.ends_with("agent/runtime") {
        if let Some(data_dir) = root.parent().and_then(Path::parent) {
            return data_dir.join("registries.yaml");
        }
    }
    root.join("registries.yaml")
}

/// The host Docker Hub's API is served from; `docker.io` itself only redirects browsers.
pub const DOCKER_HUB_ENDPOINT: &str = "registry-1.docker.io";

impl RegistriesConfig {
    /// Reads `registries.yaml`; a missing file is an empty configuration.
    pub fn load(path: &Path) -> Result<Self, RegistryError> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => {
                return Err(RegistryError::Io {
                    what: "read registries config",
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        Self::parse(&bytes, path)
    }

    /// Parses `registries.yaml` content; `path` is only for messages.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Self, RegistryError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self::default());
        }
        let cfg: Self = serde_yaml::from_slice(bytes).map_err(|e| RegistryError::Config {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        // Validate endpoints now so that a typo is reported once, with the file name.
        for (name, m) in &cfg.mirrors {
            for url in &m.endpoint {
                Endpoint::parse(url, true).map_err(|reason| RegistryError::Config {
                    path: path.to_path_buf(),
                    reason: format!("mirrors.{name}: {reason}"),
                })?;
            }
        }
        Ok(cfg)
    }

    /// The endpoints to try for `registry`, in order: its mirrors (or the `*` mirrors), then
    /// the registry's own HTTPS endpoint unless a mirror already is that host (a mirror
    /// entry listing the registry itself with `http://` is how k3s marks it insecure).
    pub fn endpoints(&self, registry: &str) -> Vec<Endpoint> {
        let mirror = self.mirrors.get(registry).or_else(|| self.mirrors.get("*"));
        let mut out: Vec<Endpoint> = mirror
            .map(|m| {
                m.endpoint
                    .iter()
                    .filter_map(|u| Endpoint::parse(u, true).ok())
                    .collect()
            })
            .unwrap_or_default();
        let default_host = if registry == "docker.io" {
            DOCKER_HUB_ENDPOINT
        } else {
            registry
        };
        if !out.iter().any(|e| e.host == default_host) {
            out.push(Endpoint {
                base: format!("https://{default_host}"),
                host: default_host.to_string(),
                mirror: false,
            });
        }
        for e in &mut out {
            // The registry itself listed as a "mirror" is not a mirror.
            e.mirror = e.host != default_host;
        }
        out
    }

    /// Settings for an endpoint host: by exact `host[:port]`, then by the registry name the
    /// endpoint serves (so `docker.io` credentials apply to `registry-1.docker.io`), then `*`.
    pub fn host_config(&self, host: &str, registry: &str) -> Option<&HostConfig> {
        self.configs
            .get(host)
            .or_else(|| {
                let bare = host.split(':').next().unwrap_or(host);
                self.configs.get(bare).filter(|_| bare != host)
            })
            .or_else(|| self.configs.get(registry))
            .or_else(|| self.configs.get("*"))
    }

    /// Credentials for an endpoint host, if `registries.yaml` has any.
    pub fn credentials(
        &self,
        host: &str,
        registry: &str,
    ) -> Result<Option<RegistryAuth>, RegistryError> {
        let Some(auth) = self
            .host_config(host, registry)
            .and_then(|c| c.auth.as_ref())
        else {
            return Ok(None);
        };
        if let (Some(u), Some(p)) = (&auth.username, &auth.password) {
            return Ok(Some(RegistryAuth::basic(u, p)));
        }
        if let Some(encoded) = &auth.auth {
            return decode_basic(encoded)
                .map(Some)
                .map_err(|reason| RegistryError::Config {
                    path: PathBuf::from("registries.yaml"),
                    reason: format!("configs.{host}.auth.auth: {reason}"),
                });
        }
        Ok(None)
    }

    /// TLS settings for an endpoint host.
    pub fn tls(&self, host: &str, registry: &str) -> Option<&TlsConfig> {
        self.host_config(host, registry)
            .and_then(|c| c.tls.as_ref())
    }
}

/// Decodes `base64(username:password)`.
pub(crate) fn decode_basic(encoded: &str) -> Result<RegistryAuth, String> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|e| format!("not base64: {e}"))?;
    let text = String::from_utf8(raw).map_err(|_| "not UTF-8".to_string())?;
    let (u, p) = text
        .split_once(':')
        .ok_or_else(|| "expected username:password".to_string())?;
    Ok(RegistryAuth::basic(u, p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(yaml: &str) -> RegistriesConfig {
        RegistriesConfig::parse(yaml.as_bytes(), Path::new("registries.yaml")).unwrap()
    }

    #[test]
    fn docker_hub_mirrors_then_default() {
        let c = cfg("mirrors:\n  docker.io:\n    endpoint: [\"https://m.example:5000/\", \"http://plain.example\"]\n");
        let e = c.endpoints("docker.io");
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].base, "https://m.example:5000");
        assert_eq!(e[0].host, "m.example:5000");
        assert!(e[1].plain_http() && e[1].mirror);
        assert_eq!(e[2].base, "https://registry-1.docker.io");
        assert!(!e[2].mirror);
        assert_eq!(c.endpoints("quay.io")[0].base, "https://quay.io");
    }

    #[test]
    fn insecure_registry_is_not_tried_over_https() {
        let c = cfg("mirrors:\n  \"reg:5000\":\n    endpoint: [\"http://reg:5000\"]\n");
        let e = c.endpoints("reg:5000");
        assert_eq!(e.len(), 1);
        assert!(e[0].plain_http() && !e[0].mirror);
    }

    #[test]
    fn credentials_by_host_then_registry() {
        let c = cfg(concat!(
            "configs:\n",
            "  \"reg:5000\":\n    auth: {username: u, password: p}\n",
            "  docker.io:\n    auth: {auth: \"YTpi\"}\n",
            "  other:\n    tls: {insecure_skip_verify: true}\n",
        ));
        let a = c.credentials("reg:5000", "reg:5000").unwrap().unwrap();
        assert_eq!((a.username.as_str(), a.password.as_str()), ("u", "p"));
        let b = c
            .credentials("registry-1.docker.io", "docker.io")
            .unwrap()
            .unwrap();
        assert_eq!((b.username.as_str(), b.password.as_str()), ("a", "b"));
        assert!(c.credentials("x", "x").unwrap().is_none());
        assert!(c.tls("other:443", "other").unwrap().insecure_skip_verify);
    }

    #[test]
    fn bad_files_are_reported() {
        assert!(RegistriesConfig::parse(b"mirrors: [1", Path::new("r")).is_err());
        assert!(RegistriesConfig::parse(
            b"mirrors:\n  a:\n    endpoint: [\"ftp://x\"]\n",
            Path::new("r")
        )
        .is_err());
        assert!(RegistriesConfig::parse(b"\n", Path::new("r"))
            .unwrap()
            .mirrors
            .is_empty());
    }

    #[test]
    fn registries_yaml_location() {
        assert_eq!(
            registries_yaml_for_runtime_root(Path::new("/var/lib/skiff/agent/runtime")),
            Path::new("/var/lib/skiff/registries.yaml")
        );
        assert_eq!(
            registries_yaml_for_runtime_root(Path::new("/tmp/rt")),
            Path::new("/tmp/rt/registries.yaml")
        );
    }
}
