//! Bootstrap token authentication and the other API-server pieces of node TLS bootstrap.
//!
//! - A bearer token `<id>.<secret>` authenticates as `system:bootstrap:<id>` in
//!   `system:bootstrappers` (plus the Secret's `auth-extra-groups`) while the Secret
//!   `kube-system/bootstrap-token-<id>` of type `bootstrap.kubernetes.io/token` holds that
//!   secret, allows authentication and has not expired, as upstream's bootstrap authenticator.
//!   The Secret is read from the store on each such request: joins are rare and short, and
//!   a deleted or expired token stops working at once.
//! - Anonymous clients may GET `kube-public/cluster-info` (upstream grants this through RBAC
//!   to `system:anonymous`): a joining node reads it before it trusts the server.
//! - A created CertificateSigningRequest records who asked (`spec.username`, `groups`,
//!   `uid`), overwriting whatever the client sent, since the approver decides on it.

use base64::Engine;
use http::Method;
use serde_json::{json, Value};

use crate::auth::User;
use crate::http::Request;
use crate::resources::Served;
use crate::Server;

/// Group every bootstrap token user is in.
pub const BOOTSTRAPPERS: &str = "system:bootstrappers";
/// Secret type of bootstrap tokens.
pub const SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";

/// `(id, secret)` if `token` has the bootstrap token shape `[a-z0-9]{6}.[a-z0-9]{16}`.
pub fn parse_token(token: &str) -> Option<(&str, &str)> {
    let (id, secret) = token.split_once('.')?;
    let ok = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    (ok(id, 6) && ok(secret, 16)).then_some((id, secret))
}

/// A string field of a Secret's `data` (base64 in the stored object).
fn data_field(secret: &Value, key: &str) -> Option<String> {
    let b64 = secret.get("data")?.get(key)?.as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    String::from_utf8(bytes).ok()
}

/// Equality whose time does not depend on where the strings differ, so the secret cannot be
/// guessed one character at a time.
fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether a token Secret's `expiration` (RFC 3339) has passed at `now`. A malformed
/// expiration counts as expired: failing closed is the safe reading.
pub fn expired(secret: &Value, now: chrono::DateTime<chrono::Utc>) -> bool {
    match data_field(secret, "expiration") {
        None => false,
        Some(t) => chrono::DateTime::parse_from_rfc3339(t.trim()).map(|t| t <= now).unwrap_or(true),
    }
}

/// The user a bootstrap token Secret authenticates `(id, secret)` as, if it does at `now`.
pub fn user_from_secret(secret: &Value, id: &str, token_secret: &str, now: chrono::DateTime<chrono::Utc>) -> Option<User> {
    if secret.get("type").and_then(Value::as_str) != Some(SECRET_TYPE) {
        return None;
    }
    if secret.pointer("/metadata/deletionTimestamp").is_some_and(|d| !d.is_null()) {
        return None;
    }
    if data_field(secret, "token-id").as_deref() != Some(id) {
        return None;
    }
    if !constant_time_eq(&data_field(secret, "token-secret")?, token_secret) {
        return None;
    }
    if data_field(secret, "usage-bootstrap-authentication").as_deref() != Some("true") {
        return None;
    }
    if expired(secret, now) {
        return None;
    }
    let mut groups = vec![BOOTSTRAPPERS.to_string()];
    for g in data_field(secret, "auth-extra-groups").unwrap_or_default().split(',') {
        let g = g.trim();
        // As upstream: extra groups must stay inside system:bootstrappers:*, so a token
        // Secret cannot grant e.g. system:masters.
        if g.starts_with("system:bootstrappers:") && !groups.iter().any(|x| x == g) {
            groups.push(g.to_string());
        }
    }
    Some(User::new(&format!("system:bootstrap:{id}"), &groups))
}

/// The user of an `Authorization` header carrying a bootstrap token, if it is valid.
pub async fn authenticate(srv: &Server, header: &str) -> Option<User> {
    let token = header.strip_prefix("Bearer ").or_else(|| header.strip_prefix("bearer "))?.trim();
    let (id, token_secret) = parse_token(token)?;
    let secrets = srv.resources.find("", "v1", "secrets")?;
    let secret = srv.objects.try_get(&secrets.info, Some("kube-system"), &format!("bootstrap-token-{id}")).await.ok()??;
    let user = user_from_secret(&secret, id, token_secret, chrono::Utc::now());
    if user.is_none() {
        tracing::debug!(token_id = %id, "bootstrap token refused");
    }
    user
}

/// The anonymous request kubeadm-style discovery makes: GET of `kube-public/cluster-info`.
pub fn is_public_cluster_info(req: &Request) -> bool {
    req.method == Method::GET
        && req.path == "/api/v1/namespaces/kube-public/configmaps/cluster-info"
        && !req.query.flag("watch")
}

/// Record the requesting user in a CertificateSigningRequest being created.
pub fn stamp_csr_requester(served: &Served, req: &Request, obj: &mut Value) {
    if served.info.group != "certificates.k8s.io" || served.info.plural != "certificatesigningrequests" {
        return;
    }
    let Some(user) = req.user.as_ref() else { return };
    if !obj.get("spec").is_some_and(Value::is_object) {
        obj["spec"] = json!({});
    }
    let spec = &mut obj["spec"];
    spec["username"] = json!(user.name);
    spec["groups"] = json!(user.groups);
    if let Some(m) = spec.as_object_mut() {
        // Neither is known to this authenticator; never keep what the client claimed.
        m.remove("uid");
        m.remove("extra");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn secret(expiration: Option<&str>, extra: &str) -> Value {
        let mut data = json!({
            "token-id": b64("abcdef"),
            "token-secret": b64("0123456789abcdef"),
            "usage-bootstrap-authentication": b64("true"),
            "auth-extra-groups": b64(extra),
        });
        if let Some(e) = expiration {
            data["expiration"] = json!(b64(e));
        }
        json!({"type": SECRET_TYPE, "metadata": {"name": "bootstrap-token-abcdef"}, "data": data})
    }

    fn now() -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::parse_from_rfc3339("2030-01-01T00:00:00Z").unwrap().into()
    }

    #[test]
    fn valid_token_authenticates_with_bootstrapper_groups_only() {
        let s = secret(Some("2031-01-01T00:00:00Z"), "system:bootstrappers:skiff:default-node-token,system:masters");
        let u = user_from_secret(&s, "abcdef", "0123456789abcdef", now()).unwrap();
        assert_eq!(u.name, "system:bootstrap:abcdef");
        assert_eq!(u.groups, vec!["system:bootstrappers", "system:bootstrappers:skiff:default-node-token", "system:authenticated"]);
        assert!(!u.is_admin());
    }

    #[test]
    fn wrong_secret_expired_unusable_or_wrong_type_is_refused() {
        let s = secret(None, "");
        assert!(user_from_secret(&s, "abcdef", "0123456789abcdeX", now()).is_none());
        assert!(user_from_secret(&s, "abcdeX", "0123456789abcdef", now()).is_none());
        assert!(user_from_secret(&secret(Some("2029-12-31T23:59:59Z"), ""), "abcdef", "0123456789abcdef", now()).is_none());
        assert!(user_from_secret(&secret(Some("soon"), ""), "abcdef", "0123456789abcdef", now()).is_none());
        let mut no_auth = secret(None, "");
        no_auth["data"]["usage-bootstrap-authentication"] = json!(b64("false"));
        assert!(user_from_secret(&no_auth, "abcdef", "0123456789abcdef", now()).is_none());
        let mut opaque = secret(None, "");
        opaque["type"] = json!("Opaque");
        assert!(user_from_secret(&opaque, "abcdef", "0123456789abcdef", now()).is_none());
        assert!(user_from_secret(&s, "abcdef", "0123456789abcdef", now()).is_some());
    }

    #[test]
    fn token_shape() {
        assert_eq!(parse_token("abcdef.0123456789abcdef"), Some(("abcdef", "0123456789abcdef")));
        assert_eq!(parse_token("abcdef.0123456789abcde"), None);
        assert_eq!(parse_token("ABCDEF.0123456789abcdef"), None);
        assert_eq!(parse_token("eyJhbGciOiJFUzI1NiJ9.e30.sig"), None);
    }
}
