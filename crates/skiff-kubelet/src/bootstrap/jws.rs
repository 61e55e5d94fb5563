//! Detached JWS signatures with HS256 (RFC 7515, appendix F: a compact JWS with the payload
//! left out), the way upstream's bootstrap signer signs the `cluster-info` kubeconfig for each
//! bootstrap token. The HMAC key is the whole token `<id>.<secret>`, so only holders of the
//! token can produce or check a signature, and the signature names the token in `kid`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::hmac;

/// Why a detached signature was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwsError {
    /// Not `<header>..<signature>`.
    #[error("malformed detached jws: {0}")]
    Malformed(String),
    /// The header names another algorithm; only HS256 is accepted (never `none`).
    #[error("unsupported jws algorithm {0:?} (want HS256)")]
    Algorithm(String),
    /// The header names another token.
    #[error("jws is for token id {got:?}, not {want:?}")]
    KeyId {
        /// The `kid` in the header.
        got: String,
        /// The token id it was checked with.
        want: String,
    },
    /// The MAC does not match: the content or the token secret differ.
    #[error("jws signature does not match the content and token")]
    Signature,
}

fn key(token_id: &str, token_secret: &str) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, format!("{token_id}.{token_secret}").as_bytes())
}

/// The detached signature (`<header>..<mac>`) of `content` with the token `<id>.<secret>`.
pub fn sign_detached(content: &str, token_id: &str, token_secret: &str) -> String {
    let header = serde_json::json!({"alg": "HS256", "kid": token_id}).to_string();
    let h = URL_SAFE_NO_PAD.encode(header.as_bytes());
    let p = URL_SAFE_NO_PAD.encode(content.as_bytes());
    let mac = hmac::sign(&key(token_id, token_secret), format!("{h}.{p}").as_bytes());
    format!("{h}..{}", URL_SAFE_NO_PAD.encode(mac.as_ref()))
}

/// Check a detached signature of `content` against the token `<id>.<secret>`.
///
/// The MAC is recomputed over the header exactly as received (not re-serialized), so
/// signatures from other implementations with a different header layout still verify.
pub fn verify_detached(detached: &str, content: &str, token_id: &str, token_secret: &str) -> Result<(), JwsError> {
    let mut parts = detached.trim().split('.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(JwsError::Malformed("want three dot-separated parts".into()));
    };
    if !p.is_empty() {
        return Err(JwsError::Malformed("payload part is not empty".into()));
    }
    let header_bytes = URL_SAFE_NO_PAD.decode(h).map_err(|e| JwsError::Malformed(format!("header: {e}")))?;
    let header: serde_json::Value =
        serde_json::from_slice(&header_bytes).map_err(|e| JwsError::Malformed(format!("header: {e}")))?;
    let alg = header.get("alg").and_then(|a| a.as_str()).unwrap_or_default();
    if alg != "HS256" {
        return Err(JwsError::Algorithm(alg.to_string()));
    }
    if let Some(kid) = header.get("kid").and_then(|k| k.as_str()) {
        if kid != token_id {
            return Err(JwsError::KeyId { got: kid.to_string(), want: token_id.to_string() });
        }
    }
    let mac = URL_SAFE_NO_PAD.decode(s).map_err(|e| JwsError::Malformed(format!("signature: {e}")))?;
    let signed = format!("{h}.{}", URL_SAFE_NO_PAD.encode(content.as_bytes()));
    // ring's verify compares in constant time, so the MAC leaks nothing about the secret.
    hmac::verify(&key(token_id, token_secret), signed.as_bytes(), &mac).map_err(|_| JwsError::Signature)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_round_trips_and_is_detached() {
        let sig = sign_detached("apiVersion: v1\n", "abcdef", "0123456789abcdef");
        assert!(sig.contains(".."), "payload must be left out: {sig}");
        assert_eq!(verify_detached(&sig, "apiVersion: v1\n", "abcdef", "0123456789abcdef"), Ok(()));
    }

    #[test]
    fn other_content_secret_or_token_id_is_refused() {
        let sig = sign_detached("content", "abcdef", "0123456789abcdef");
        assert_eq!(verify_detached(&sig, "content2", "abcdef", "0123456789abcdef"), Err(JwsError::Signature));
        assert_eq!(verify_detached(&sig, "content", "abcdef", "0123456789abcdeX"), Err(JwsError::Signature));
        assert!(matches!(verify_detached(&sig, "content", "zzzzzz", "0123456789abcdef"), Err(JwsError::KeyId { .. })));
    }

    #[test]
    fn known_vector_matches_an_independent_hs256() {
        // Computed with Python's hmac module, so a broken encoding cannot agree with itself.
        let want = "eyJhbGciOiJIUzI1NiIsImtpZCI6ImFiY2RlZiJ9..1YKZyvDPfBemGGAy4I6fY-EuFZM-D15UJNRd-3NRdho";
        assert_eq!(sign_detached("hello", "abcdef", "0123456789abcdef"), want);
        assert_eq!(verify_detached(want, "hello", "abcdef", "0123456789abcdef"), Ok(()));
    }

    #[test]
    fn alg_none_and_garbage_are_refused() {
        let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","kid":"abcdef"}"#);
        assert_eq!(verify_detached(&format!("{h}.."), "x", "abcdef", "s"), Err(JwsError::Algorithm("none".into())));
        assert!(matches!(verify_detached("abc", "x", "abcdef", "s"), Err(JwsError::Malformed(_))));
        let sig = sign_detached("x", "abcdef", "s");
        let with_payload = sig.replacen("..", ".eA.", 1);
        assert!(matches!(verify_detached(&with_payload, "x", "abcdef", "s"), Err(JwsError::Malformed(_))));
    }
}
