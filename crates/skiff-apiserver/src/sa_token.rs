//! Service account tokens: JWTs signed by the API server's own key (ES256, kept in
//! `<data-dir>/tls/sa.key`), issued through `serviceaccounts/{name}/token` (TokenRequest,
//! what `kubectl create token` calls) and accepted by the authenticator as
//! `system:serviceaccount:<namespace>:<name>`.

use std::path::Path;

use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};

use crate::auth::User;

/// The issuer and default audience of tokens, as upstream's default.
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// Errors of the signer.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Reading or writing the key failed.
    #[error("service account key {path}: {source}")]
    Io {
        /// Key path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The key could not be made or parsed.
    #[error("service account key: {0}")]
    Key(String),
}

/// Signs and verifies service account tokens.
pub struct TokenSigner {
    key: EcdsaKeyPair,
    public: Vec<u8>,
    kid: String,
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

impl TokenSigner {
    /// Load the signing key from `path`, creating it on first start.
    pub fn load_or_create(path: &Path) -> Result<Self, TokenError> {
        let rng = SystemRandom::new();
        let io = |source| TokenError::Io { path: path.display().to_string(), source };
        let pkcs8 = match std::fs::read(path) {
            Ok(k) => k,
            Err(_) => {
                let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).map_err(|e| TokenError::Key(e.to_string()))?;
                use std::io::Write;
                use std::os::unix::fs::OpenOptionsExt;
                let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path).map_err(io)?;
                f.write_all(doc.as_ref()).map_err(io)?;
                f.sync_all().map_err(io)?;
                doc.as_ref().to_vec()
            }
        };
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, &rng).map_err(|e| TokenError::Key(e.to_string()))?;
        let public = key.public_key().as_ref().to_vec();
        use sha2::Digest;
        let kid = b64(&sha2::Sha256::digest(&public)[..16]);
        Ok(Self { key, public, kid })
    }

    /// Issue a token for service account `ns/name` (uid `uid`), valid for `seconds`.
    pub fn issue(&self, ns: &str, name: &str, uid: &str, audiences: &[String], seconds: i64, bound: Option<Value>) -> Result<(String, i64), TokenError> {
        let now = chrono::Utc::now().timestamp();
        let exp = now + seconds;
        let aud: Vec<String> = if audiences.is_empty() { vec![ISSUER.to_string()] } else { audiences.to_vec() };
        let mut k8s = json!({"namespace": ns, "serviceaccount": {"name": name, "uid": uid}});
        if let Some(b) = bound {
            k8s[b["kind"].as_str().unwrap_or("pod").to_lowercase()] = json!({"name": b["name"], "uid": b["uid"]});
        }
        let claims = json!({
            "aud": aud, "exp": exp, "iat": now, "nbf": now, "iss": ISSUER,
            "sub": format!("system:serviceaccount:{ns}:{name}"),
            "kubernetes.io": k8s,
        });
        let header = json!({"alg": "ES256", "kid": self.kid, "typ": "JWT"});
        let signing_input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
        let sig = self.key.sign(&SystemRandom::new(), signing_input.as_bytes()).map_err(|e| TokenError::Key(e.to_string()))?;
        Ok((format!("{signing_input}.{}", b64(sig.as_ref())), exp))
    }

    /// The service account user of a valid, unexpired token signed by this key.
    pub fn verify(&self, token: &str) -> Option<User> {
        let mut parts = token.split('.');
        let (h, c, s) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s).ok()?;
        let public = ring::signature::UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &self.public);
        public.verify(format!("{h}.{c}").as_bytes(), &sig).ok()?;
        let claims: Value = serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(c).ok()?).ok()?;
        let now = chrono::Utc::now().timestamp();
        if claims["exp"].as_i64()? < now || claims["iss"] != ISSUER {
            return None;
        }
        let sub = claims["sub"].as_str()?;
        let ns = claims.pointer("/kubernetes.io/namespace")?.as_str()?;
        Some(User::new(sub, &["system:serviceaccounts".to_string(), format!("system:serviceaccounts:{ns}")]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_tokens_verify_and_tampering_fails() {
        let dir = tempfile::tempdir().unwrap();
        let s = TokenSigner::load_or_create(&dir.path().join("sa.key")).unwrap();
        let (t, exp) = s.issue("default", "builder", "u1", &[], 600, None).unwrap();
        assert!(exp > chrono::Utc::now().timestamp());
        let u = s.verify(&t).unwrap();
        assert_eq!(u.name, "system:serviceaccount:default:builder");
        assert!(u.groups.contains(&"system:serviceaccounts:default".to_string()));
        let mut bad = t.clone();
        bad.replace_range(bad.len() - 3.., "AAA");
        assert!(s.verify(&bad).is_none());
        let (expired, _) = s.issue("default", "builder", "u1", &[], -10, None).unwrap();
        assert!(s.verify(&expired).is_none());
        // The key persists: a reloaded signer verifies old tokens.
        let again = TokenSigner::load_or_create(&dir.path().join("sa.key")).unwrap();
        assert!(again.verify(&t).is_some());
    }
}
