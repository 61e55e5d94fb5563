//! Bootstrap tokens as kubeadm makes them: `<id>.<secret>`, id `[a-z0-9]{6}` (public, names
//! the Secret), secret `[a-z0-9]{16}`, stored as a `bootstrap.kubernetes.io/token` Secret
//! `kube-system/bootstrap-token-<id>`. Creating one is an admin action (`skiff token create`);
//! it lives here beside the parser so the format has one home.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::api::{Api, ObjectMeta, PostParams};

use super::BootstrapError;

/// Namespace holding bootstrap token Secrets.
pub const TOKEN_NAMESPACE: &str = "kube-system";
/// Secret type of bootstrap tokens.
pub const TOKEN_SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";
/// Extra group given to tokens made by `skiff token create`, as kubeadm's default node token.
pub const DEFAULT_EXTRA_GROUP: &str = "system:bootstrappers:skiff:default-node-token";

const ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// A bootstrap token. `Display` prints the full `<id>.<secret>`; `Debug` hides the secret so
/// tokens never end up in logs by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct BootstrapToken {
    /// Public part, six characters.
    pub id: String,
    /// Private part, sixteen characters.
    pub secret: String,
}

impl fmt::Display for BootstrapToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.id, self.secret)
    }
}

impl fmt::Debug for BootstrapToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BootstrapToken({}.<redacted>)", self.id)
    }
}

fn valid_part(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// `n` characters of `[a-z0-9]` from the system CSPRNG. Bytes >= 252 are rejected so every
/// character is equally likely (252 = 7 * 36).
fn random_chars(n: usize) -> String {
    use ring::rand::SecureRandom;
    let rng = ring::rand::SystemRandom::new();
    let mut out = String::with_capacity(n);
    let mut buf = [0u8; 32];
    while out.len() < n {
        rng.fill(&mut buf).expect("system random source");
        for b in buf {
            if b < 252 && out.len() < n {
                out.push(ALPHABET[(b % 36) as usize] as char);
            }
        }
    }
    out
}

impl BootstrapToken {
    /// A fresh random token.
    pub fn generate() -> Self {
        Self { id: random_chars(6), secret: random_chars(16) }
    }

    /// Parse `<id>.<secret>`, refusing anything not in kubeadm's format.
    pub fn parse(s: &str) -> Result<Self, BootstrapError> {
        let s = s.trim();
        let Some((id, secret)) = s.split_once('.') else {
            return Err(BootstrapError::InvalidToken("want <id>.<secret>".into()));
        };
        if !valid_part(id, 6) || !valid_part(secret, 16) {
            return Err(BootstrapError::InvalidToken(
                "want a 6-character id and a 16-character secret of [a-z0-9], like abcdef.0123456789abcdef".into(),
            ));
        }
        Ok(Self { id: id.to_string(), secret: secret.to_string() })
    }

    /// Name of the Secret holding this token.
    pub fn secret_name(&self) -> String {
        format!("bootstrap-token-{}", self.id)
    }

    /// The Secret that makes this token valid: usable for authentication and for signing
    /// `cluster-info`, until `expires` (never when `None`).
    pub fn to_secret(&self, expires: Option<chrono::DateTime<chrono::Utc>>, description: &str) -> Secret {
        let mut data = BTreeMap::new();
        let mut put = |k: &str, v: &str| {
            data.insert(k.to_string(), ByteString(v.as_bytes().to_vec()));
        };
        put("description", description);
        put("token-id", &self.id);
        put("token-secret", &self.secret);
        put("usage-bootstrap-authentication", "true");
        put("usage-bootstrap-signing", "true");
        put("auth-extra-groups", DEFAULT_EXTRA_GROUP);
        if let Some(t) = expires {
            put("expiration", &t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        }
        Secret {
            metadata: ObjectMeta {
                name: Some(self.secret_name()),
                namespace: Some(TOKEN_NAMESPACE.to_string()),
                ..Default::default()
            },
            type_: Some(TOKEN_SECRET_TYPE.to_string()),
            data: Some(data),
            ..Default::default()
        }
    }
}

/// Create a new bootstrap token Secret through `client` (which must be allowed to create
/// Secrets in kube-system) and return the token. A zero `ttl` means the token never expires,
/// as with kubeadm's `--ttl 0`.
pub async fn create_token_secret(client: &kube::Client, ttl: Duration) -> Result<BootstrapToken, BootstrapError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), TOKEN_NAMESPACE);
    // A clash of random ids is unlikely but possible; try a few before giving up.
    let mut last = None;
    for _ in 0..5 {
        let token = BootstrapToken::generate();
        let expires = (!ttl.is_zero()).then(|| chrono::Utc::now() + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX));
        let secret = token.to_secret(expires, "bootstrap token generated by 'skiff token create'");
        match api.create(&PostParams::default(), &secret).await {
            Ok(_) => return Ok(token),
            Err(kube::Error::Api(s)) if s.code == 409 => last = Some(kube::Error::Api(s)),
            Err(e) => return Err(BootstrapError::api(format!("creating secret {TOKEN_NAMESPACE}/{}", token.secret_name()), e)),
        }
    }
    Err(BootstrapError::api("creating a bootstrap token secret (five id clashes)", last.expect("set in loop")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_have_kubeadms_format_and_differ() {
        let a = BootstrapToken::generate();
        let b = BootstrapToken::generate();
        assert_ne!(a, b);
        let s = a.to_string();
        assert_eq!(s.len(), 23);
        assert_eq!(BootstrapToken::parse(&s).unwrap(), a);
        assert!(s.bytes().all(|c| c == b'.' || c.is_ascii_lowercase() || c.is_ascii_digit()));
    }

    #[test]
    fn malformed_tokens_are_refused() {
        for bad in ["", "abcdef", "abcdef.", "ABCDEF.0123456789abcdef", "abcde.0123456789abcdef", "abcdef.0123456789abcde", "abcdef.0123456789abcdef0", "abcdef:0123456789abcdef", "abc-ef.0123456789abcdef"] {
            assert!(BootstrapToken::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(BootstrapToken::parse(" abcdef.0123456789abcdef\n").is_ok());
    }

    #[test]
    fn debug_hides_the_secret() {
        let t = BootstrapToken::parse("abcdef.0123456789abcdef").unwrap();
        assert!(!format!("{t:?}").contains("0123456789abcdef"));
    }

    #[test]
    fn secret_carries_the_fields_the_authenticator_reads() {
        let t = BootstrapToken::parse("abcdef.0123456789abcdef").unwrap();
        let exp = chrono::DateTime::parse_from_rfc3339("2030-01-02T03:04:05Z").unwrap().with_timezone(&chrono::Utc);
        let s = t.to_secret(Some(exp), "d");
        assert_eq!(s.metadata.name.as_deref(), Some("bootstrap-token-abcdef"));
        assert_eq!(s.type_.as_deref(), Some(TOKEN_SECRET_TYPE));
        let d = s.data.unwrap();
        let get = |k: &str| String::from_utf8(d[k].0.clone()).unwrap();
        assert_eq!(get("token-id"), "abcdef");
        assert_eq!(get("token-secret"), "0123456789abcdef");
        assert_eq!(get("expiration"), "2030-01-02T03:04:05Z");
        assert_eq!(get("usage-bootstrap-authentication"), "true");
        assert_eq!(get("usage-bootstrap-signing"), "true");
    }
}
