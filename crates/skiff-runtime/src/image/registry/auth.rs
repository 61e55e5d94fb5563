//! Registry credentials and the parts of the auth protocol that need no I/O: reading a
//! `kubernetes.io/dockerconfigjson` secret, parsing `WWW-Authenticate` challenges, and
//! building `Authorization` headers.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use base64::Engine as _;
use serde::Deserialize;

use super::config::decode_basic;
use super::RegistryError;

/// Credentials for one registry.
///
/// With a user name and password the client answers a `Basic` challenge directly and a
/// `Bearer` challenge by asking the token server with them; a registry token (docker config
/// `registrytoken`) is sent as the bearer token itself.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct RegistryAuth {
    /// User name.
    pub username: String,
    /// Password or personal access token.
    pub password: String,
    /// A ready bearer token for the registry, used instead of asking a token server.
    pub registry_token: Option<String>,
}

impl fmt::Debug for RegistryAuth {
    // Secrets must not end up in logs through `{:?}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryAuth")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field(
                "registry_token",
                &self.registry_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

#[derive(Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: Option<BTreeMap<String, DockerAuthEntry>>,
}

#[derive(Deserialize, Default)]
struct DockerAuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    registrytoken: Option<String>,
}

/// The names Docker Hub goes by in docker configs; all mean the registry `docker.io`.
const DOCKER_HUB_ALIASES: [&str; 4] = [
    "docker.io",
    "index.docker.io",
    "registry-1.docker.io",
    "registry.hub.docker.com",
];

/// Reduces a docker config key (`https://index.docker.io/v1/`, `reg:5000`, `*.corp`) to the
/// registry host it names.
fn config_key_host(key: &str) -> String {
    let rest = key.split_once("://").map_or(key, |(_, r)| r);
    let host = rest.split('/').next().unwrap_or(rest).to_ascii_lowercase();
    if DOCKER_HUB_ALIASES.contains(&host.as_str()) {
        "docker.io".to_string()
    } else {
        host
    }
}

/// Whether a config key host matches a registry host, the way the kubelet's credential
/// keyring matches: the same port, and each DNS label equal or matched by a `*` glob label.
fn host_matches(pattern: &str, host: &str) -> bool {
    let split = |h: &str| -> (String, Option<String>) {
        match h.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => {
                (name.to_string(), Some(port.to_string()))
            }
            _ => (h.to_string(), None),
        }
    };
    let (pname, pport) = split(pattern);
    let (hname, hport) = split(host);
    if pport != hport {
        return false;
    }
    let plabels: Vec<&str> = pname.split('.').collect();
    let hlabels: Vec<&str> = hname.split('.').collect();
    plabels.len() == hlabels.len()
        && plabels
            .iter()
            .zip(&hlabels)
            .all(|(p, h)| *p == "*" || p == h)
}

impl RegistryAuth {
    /// Credentials for basic auth (or for the token server of a bearer-token registry).
    pub fn basic(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            password: password.into(),
            registry_token: None,
        }
    }

    /// Picks the credentials for `registry_host` (`docker.io`, `reg.example:5000`) out of the
    /// `.dockerconfigjson` of a `kubernetes.io/dockerconfigjson` secret (the legacy
    /// `.dockercfg` shape without `auths` is accepted too). An exact host match wins over a
    /// wildcard one; `Ok(None)` when no entry matches.
    pub fn from_docker_config_json(
        bytes: &[u8],
        registry_host: &str,
    ) -> Result<Option<Self>, RegistryError> {
        let bad = |reason: String| RegistryError::Config {
            path: PathBuf::from("<dockerconfigjson>"),
            reason,
        };
        let entries: BTreeMap<String, DockerAuthEntry> =
            match serde_json::from_slice::<DockerConfig>(bytes) {
                Ok(DockerConfig { auths: Some(a) }) => a,
                _ => serde_json::from_slice(bytes)
                    .map_err(|e| bad(format!("not a docker config: {e}")))?,
            };
        let want = config_key_host(registry_host);
        let mut exact = None;
        let mut glob = None;
        for (key, entry) in &entries {
            let host = config_key_host(key);
            if host == want {
                exact = Some((key, entry));
                break;
            }
            if glob.is_none() && host.contains('*') && host_matches(&host, &want) {
                glob = Some((key, entry));
            }
        }
        let Some((key, entry)) = exact.or(glob) else {
            return Ok(None);
        };
        let mut auth = match (&entry.username, &entry.password, &entry.auth) {
            (Some(u), Some(p), _) if !u.is_empty() => Self::basic(u, p),
            (_, _, Some(encoded)) if !encoded.is_empty() => {
                decode_basic(encoded).map_err(|r| bad(format!("auths.{key}.auth: {r}")))?
            }
            _ => Self::default(),
        };
        auth.registry_token = entry.registrytoken.clone().filter(|t| !t.is_empty());
        if auth.username.is_empty() && auth.registry_token.is_none() {
            return Err(bad(format!(
                "auths.{key} has neither username/password, auth nor registrytoken"
            )));
        }
        Ok(Some(auth))
    }

    /// `Authorization` value for basic auth.
    pub fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// `Basic realm="..."`.
    Basic,
    /// `Bearer realm="...",service="...",scope="..."`.
    Bearer {
        /// Token server URL.
        realm: String,
        /// `service` parameter to pass back.
        service: Option<String>,
        /// `scope` parameter the registry asked for.
        scope: Option<String>,
    },
}

/// Parses a `WWW-Authenticate` header value, preferring a Bearer challenge when the header
/// offers several.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let mut found = Vec::new();
    let mut rest = header.trim();
    while !rest.is_empty() {
        let end = rest.find(|c: char| c.is_whitespace()).unwrap_or(rest.len());
        let scheme = rest[..end].trim_end_matches(',').to_ascii_lowercase();
        rest = rest[end..].trim_start();
        let mut params = BTreeMap::new();
        // auth-params: key=value or key="quoted, with \" escapes", comma separated.
        while let Some(eq) = rest.find('=') {
            let key = rest[..eq].trim();
            if key.is_empty() || key.contains(|c: char| c.is_whitespace() || c == ',') {
                break; // the next challenge's scheme
            }
            let after = &rest[eq + 1..];
            let (value, remaining) = if let Some(q) = after.strip_prefix('"') {
                let mut v = String::new();
                let mut chars = q.char_indices();
                let mut consumed = q.len();
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some((_, n)) = chars.next() {
                                v.push(n);
                            }
                        }
                        '"' => {
                            consumed = i + 1;
                            break;
                        }
                        _ => v.push(c),
                    }
                }
                (v, &q[consumed..])
            } else {
                let end = after.find(',').unwrap_or(after.len());
                (after[..end].trim().to_string(), &after[end..])
            };
            params.insert(key.to_ascii_lowercase(), value);
            rest = remaining.trim_start().trim_start_matches(',').trim_start();
        }
        match scheme.as_str() {
            "bearer" => {
                if let Some(realm) = params.remove("realm") {
                    found.push(Challenge::Bearer {
                        realm,
                        service: params.remove("service"),
                        scope: params.remove("scope"),
                    });
                }
            }
            "basic" => found.push(Challenge::Basic),
            _ => {}
        }
        if scheme.is_empty() {
            break;
        }
    }
    found
        .iter()
        .find(|c| matches!(c, Challenge::Bearer { .. }))
        .or(found.first())
        .cloned()
}

/// The token server's answer; registries use either field name.
#[derive(Deserialize)]
pub(crate) struct TokenResponse {
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub access_token: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_hub_challenge() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull""#,
        );
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/nginx:pull".into()),
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="x", Bearer realm="http://t/token""#),
            Some(Challenge::Bearer {
                realm: "http://t/token".into(),
                service: None,
                scope: None
            })
        );
        assert_eq!(parse_challenge("Negotiate"), None);
    }

    #[test]
    fn docker_config_matching() {
        let json = br#"{"auths":{
            "https://index.docker.io/v1/":{"auth":"aHViOnB3"},
            "reg.example:5000":{"username":"u","password":"p"},
            "*.corp.example":{"auth":"Zzpw"},
            "tok.example":{"registrytoken":"abc"}}}"#;
        let hub = RegistryAuth::from_docker_config_json(json, "docker.io")
            .unwrap()
            .unwrap();
        assert_eq!(
            (hub.username.as_str(), hub.password.as_str()),
            ("hub", "pw")
        );
        let reg = RegistryAuth::from_docker_config_json(json, "reg.example:5000")
            .unwrap()
            .unwrap();
        assert_eq!(reg.username, "u");
        assert!(RegistryAuth::from_docker_config_json(json, "reg.example")
            .unwrap()
            .is_none());
        let g = RegistryAuth::from_docker_config_json(json, "a.corp.example")
            .unwrap()
            .unwrap();
        assert_eq!(g.username, "g");
        assert!(
            RegistryAuth::from_docker_config_json(json, "a.b.corp.example")
                .unwrap()
                .is_none()
        );
        let t = RegistryAuth::from_docker_config_json(json, "tok.example")
            .unwrap()
            .unwrap();
        assert_eq!(t.registry_token.as_deref(), Some("abc"));
        assert!(RegistryAuth::from_docker_config_json(b"[]", "x").is_err());
        let legacy = br#"{"reg:1":{"auth":"YTpi"}}"#;
        assert_eq!(
            RegistryAuth::from_docker_config_json(legacy, "reg:1")
                .unwrap()
                .unwrap()
                .password,
            "b"
        );
    }

    #[test]
    fn debug_hides_secrets() {
        let s = format!("{:?}", RegistryAuth::basic("me", "hunter2"));
        assert!(s.contains("me") && !s.contains("hunter2"));
    }
}
