//! Authentication: client certificates signed by the cluster CA (CN = user, O = groups) and
//! bearer tokens (the admin token kept in the data dir). Anonymous requests reach only the
//! health and version endpoints.

use std::collections::HashMap;
use std::sync::RwLock;

/// An authenticated identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// User name, e.g. `system:admin`.
    pub name: String,
    /// Groups, always including `system:authenticated`.
    pub groups: Vec<String>,
}

impl User {
    /// A user with `system:authenticated` added to its groups.
    pub fn new(name: &str, groups: &[String]) -> Self {
        let mut groups = groups.to_vec();
        if !groups.iter().any(|g| g == "system:authenticated") {
            groups.push("system:authenticated".into());
        }
        Self { name: name.to_string(), groups }
    }

    /// True for members of `system:masters` (allowed everything, as upstream).
    pub fn is_admin(&self) -> bool {
        self.groups.iter().any(|g| g == "system:masters")
    }
}

/// Identity of a verified client certificate (DER): subject CN and O values.
pub fn user_from_cert(der: &[u8]) -> Option<User> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let cn = subject.iter_common_name().next()?.as_str().ok()?.to_string();
    let orgs: Vec<String> =
        subject.iter_organization().filter_map(|o| o.as_str().ok().map(str::to_string)).collect();
    Some(User::new(&cn, &orgs))
}

/// Bearer tokens the server accepts.
#[derive(Default)]
pub struct TokenAuthenticator {
    tokens: RwLock<HashMap<String, User>>,
}

impl TokenAuthenticator {
    /// Accept `token` as `user`.
    pub fn add(&self, token: &str, user: User) {
        self.tokens.write().unwrap().insert(token.to_string(), user);
    }

    /// The user of an `Authorization: Bearer ...` header value.
    pub fn authenticate(&self, header: &str) -> Option<User> {
        let token = header.strip_prefix("Bearer ").or_else(|| header.strip_prefix("bearer "))?.trim();
        self.tokens.read().unwrap().get(token).cloned()
    }
}

/// Load the admin token from `path`, creating a random one on first start.
pub fn load_or_create_token(path: &std::path::Path) -> std::io::Result<String> {
    if let Ok(t) = std::fs::read_to_string(path) {
        let t = t.trim().to_string();
        if !t.is_empty() {
            return Ok(t);
        }
    }
    use rand::Rng;
    let token: String = rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(48)
        .map(char::from)
        .collect();
    use std::os::unix::fs::OpenOptionsExt;
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.write_all(token.as_bytes())?;
    f.sync_all()?;
    Ok(token)
}
