//! `kube-public/cluster-info` and bootstrap token upkeep, as upstream's bootstrapsigner and
//! tokencleaner controllers.
//!
//! cluster-info holds a kubeconfig with this cluster's CA and API server URL (taken from the
//! controller manager's own kubeconfig) and, for every bootstrap token that may sign, a
//! detached HS256 JWS of that kubeconfig under `jws-kubeconfig-<token-id>`. A joining node
//! reads it anonymously and trusts the CA only if the signature for its token verifies.
//! Token Secrets past their `expiration` are deleted.
//!
//! The JWS code mirrors `skiff_kubelet::bootstrap::jws` (this crate may not depend on the
//! kubelet); both are tested against the same independently computed vector.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::runtime::watcher;
use kube::ResourceExt;

const TOKEN_TYPE: &str = "bootstrap.kubernetes.io/token";
const CLUSTER_INFO: &str = "cluster-info";
/// Longest wait between passes, so expirations are noticed without an event.
const MAX_IDLE: Duration = Duration::from_secs(60);

/// Detached JWS (`<header>..<mac>`) of `content`, keyed with the token `<id>.<secret>`.
pub fn sign_detached(content: &str, token_id: &str, token_secret: &str) -> String {
    let header = serde_json::json!({"alg": "HS256", "kid": token_id}).to_string();
    let h = URL_SAFE_NO_PAD.encode(header.as_bytes());
    let p = URL_SAFE_NO_PAD.encode(content.as_bytes());
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, format!("{token_id}.{token_secret}").as_bytes());
    let mac = ring::hmac::sign(&key, format!("{h}.{p}").as_bytes());
    format!("{h}..{}", URL_SAFE_NO_PAD.encode(mac.as_ref()))
}

/// The kubeconfig published in cluster-info: the cluster only, no credentials.
pub fn cluster_kubeconfig(server: &str, ca_pem: &str) -> String {
    format!(
        "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {}\n    server: {server}\n  name: \"\"\ncontexts: []\ncurrent-context: \"\"\nkind: Config\npreferences: {{}}\nusers: []\n",
        STANDARD.encode(ca_pem)
    )
}

fn field(secret: &Secret, key: &str) -> Option<String> {
    secret.data.as_ref()?.get(key).and_then(|v| String::from_utf8(v.0.clone()).ok())
}

/// What to do with one token Secret at `now`.
#[derive(Debug, PartialEq, Eq)]
pub enum TokenState {
    /// Not a (well-formed) bootstrap token Secret; left alone.
    Ignore,
    /// Past its expiration: delete it.
    Expired,
    /// Valid; `Some((id, secret))` when it may sign cluster-info.
    Valid(Option<(String, String)>),
}

/// Classify a Secret in kube-system.
pub fn token_state(secret: &Secret, now: chrono::DateTime<chrono::Utc>) -> TokenState {
    if secret.type_.as_deref() != Some(TOKEN_TYPE) {
        return TokenState::Ignore;
    }
    if let Some(exp) = field(secret, "expiration") {
        match chrono::DateTime::parse_from_rfc3339(exp.trim()) {
            Ok(t) if t <= now => return TokenState::Expired,
            Ok(_) => {}
            // A malformed expiration never authenticates; keep the Secret for the admin to see.
            Err(_) => return TokenState::Ignore,
        }
    }
    let (Some(id), Some(sec)) = (field(secret, "token-id"), field(secret, "token-secret")) else { return TokenState::Ignore };
    let shape = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !shape(&id, 6) || !shape(&sec, 16) || secret.name_any() != format!("bootstrap-token-{id}") {
        return TokenState::Ignore;
    }
    let signs = field(secret, "usage-bootstrap-signing").as_deref() == Some("true");
    TokenState::Valid(signs.then_some((id, sec)))
}

/// The earliest future expiration among token Secrets, to wake up for it.
fn next_expiry(secrets: &[Secret], now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    secrets
        .iter()
        .filter(|s| s.type_.as_deref() == Some(TOKEN_TYPE))
        .filter_map(|s| field(s, "expiration"))
        .filter_map(|e| chrono::DateTime::parse_from_rfc3339(e.trim()).ok())
        .filter_map(|t| (t.with_timezone(&chrono::Utc) - now).to_std().ok())
        .min()
}

/// The desired cluster-info data for `kubeconfig` and the tokens in `secrets`.
pub fn desired_data(kubeconfig: &str, secrets: &[Secret], now: chrono::DateTime<chrono::Utc>) -> BTreeMap<String, String> {
    let mut data = BTreeMap::new();
    data.insert("kubeconfig".to_string(), kubeconfig.to_string());
    for s in secrets {
        if let TokenState::Valid(Some((id, sec))) = token_state(s, now) {
            data.insert(format!("jws-kubeconfig-{id}"), sign_detached(kubeconfig, &id, &sec));
        }
    }
    data
}

/// The server URL and CA (PEM) of the first cluster in a kubeconfig file.
fn cluster_of(path: &Path) -> Option<(String, String)> {
    let kc = kube::config::Kubeconfig::read_from(path).ok()?;
    let cluster = kc.clusters.first()?.cluster.clone()?;
    let ca = STANDARD.decode(cluster.certificate_authority_data?).ok()?;
    Some((cluster.server?, String::from_utf8(ca).ok()?))
}

async fn pass(client: &kube::Client, kubeconfig: &str) -> Result<Option<Duration>, kube::Error> {
    let now = chrono::Utc::now();
    let secrets_api: Api<Secret> = Api::namespaced(client.clone(), "kube-system");
    let secrets = secrets_api.list(&ListParams::default()).await?.items;
    for s in &secrets {
        if token_state(s, now) == TokenState::Expired {
            tracing::info!(secret = %s.name_any(), "deleting expired bootstrap token");
            match secrets_api.delete(&s.name_any(), &DeleteParams::default()).await {
                Ok(_) | Err(kube::Error::Api(_)) => {}
                Err(e) => return Err(e),
            }
        }
    }
    let want = desired_data(kubeconfig, &secrets, now);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "kube-public");
    match cms.get_opt(CLUSTER_INFO).await? {
        None => {
            let cm = ConfigMap {
                metadata: ObjectMeta { name: Some(CLUSTER_INFO.into()), namespace: Some("kube-public".into()), ..Default::default() },
                data: Some(want),
                ..Default::default()
            };
            cms.create(&PostParams::default(), &cm).await?;
            tracing::info!("published kube-public/cluster-info");
        }
        Some(mut cm) if cm.data.as_ref() != Some(&want) => {
            let tokens = want.len() - 1;
            cm.data = Some(want);
            // Carries the resourceVersion read above: a concurrent writer makes this a
            // conflict and the next pass starts again from what is there.
            cms.replace(CLUSTER_INFO, &PostParams::default(), &cm).await?;
            tracing::info!(tokens, "updated cluster-info signatures");
        }
        Some(_) => {}
    }
    Ok(next_expiry(&secrets, now))
}

/// Run until aborted; `kubeconfig` is the controller manager's own (its cluster's server and
/// CA are what cluster-info publishes).
pub async fn run(client: kube::Client, kubeconfig: std::path::PathBuf) {
    let Some((server, ca)) = cluster_of(&kubeconfig) else {
        tracing::warn!(path = %kubeconfig.display(), "no server and CA in kubeconfig: cluster-info will not be published");
        return;
    };
    let content = cluster_kubeconfig(&server, &ca);
    let secrets = watcher(Api::<Secret>::namespaced(client.clone(), "kube-system"), watcher::Config::default()).map(|_| ());
    let cms = watcher(
        Api::<ConfigMap>::namespaced(client.clone(), "kube-public"),
        watcher::Config::default().fields(&format!("metadata.name={CLUSTER_INFO}")),
    )
    .map(|_| ());
    let mut events = futures::stream::select(secrets, cms).boxed();
    loop {
        let wait = match pass(&client, &content).await {
            Ok(next) => next.map(|d| d + Duration::from_secs(1)).unwrap_or(MAX_IDLE).min(MAX_IDLE),
            Err(e) => {
                tracing::debug!(error = %e, "bootstrap signer pass failed");
                Duration::from_secs(1)
            }
        };
        tokio::select! {
            e = events.next() => if e.is_none() { return },
            _ = tokio::time::sleep(wait) => {}
        }
        // Coalesce a burst of events (a watcher's initial list) into one pass.
        while let Some(Some(_)) = futures::FutureExt::now_or_never(events.next()) {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn token(name: &str, fields: &[(&str, &str)]) -> Secret {
        Secret {
            metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
            type_: Some(TOKEN_TYPE.into()),
            data: Some(fields.iter().map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec()))).collect()),
            ..Default::default()
        }
    }

    fn now() -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::parse_from_rfc3339("2030-01-01T00:00:00Z").unwrap().into()
    }

    #[test]
    fn signature_matches_the_vector_the_kubelet_side_checks() {
        // Same Python-computed vector as skiff_kubelet::bootstrap::jws.
        assert_eq!(
            sign_detached("hello", "abcdef", "0123456789abcdef"),
            "eyJhbGciOiJIUzI1NiIsImtpZCI6ImFiY2RlZiJ9..1YKZyvDPfBemGGAy4I6fY-EuFZM-D15UJNRd-3NRdho"
        );
    }

    #[test]
    fn only_valid_signing_tokens_get_a_signature_and_expired_ones_are_deleted() {
        let base = [("token-id", "abcdef"), ("token-secret", "0123456789abcdef"), ("usage-bootstrap-signing", "true")];
        let good = token("bootstrap-token-abcdef", &base);
        let mut exp = base.to_vec();
        exp.push(("expiration", "2029-01-01T00:00:00Z"));
        let expired = token("bootstrap-token-abcdef", &exp);
        let no_sign = token("bootstrap-token-ghijkl", &[("token-id", "ghijkl"), ("token-secret", "0123456789abcdef")]);
        let misnamed = token("bootstrap-token-zzzzzz", &base);
        let mut opaque = good.clone();
        opaque.type_ = Some("Opaque".into());
        assert_eq!(token_state(&good, now()), TokenState::Valid(Some(("abcdef".into(), "0123456789abcdef".into()))));
        assert_eq!(token_state(&expired, now()), TokenState::Expired);
        assert_eq!(token_state(&no_sign, now()), TokenState::Valid(None));
        assert_eq!(token_state(&misnamed, now()), TokenState::Ignore);
        assert_eq!(token_state(&opaque, now()), TokenState::Ignore);

        let kc = cluster_kubeconfig("https://10.0.0.1:6443", "CA");
        let data = desired_data(&kc, &[good, expired, no_sign, misnamed, opaque], now());
        assert_eq!(data.keys().collect::<Vec<_>>(), vec!["jws-kubeconfig-abcdef", "kubeconfig"]);
        assert_eq!(data["jws-kubeconfig-abcdef"], sign_detached(&kc, "abcdef", "0123456789abcdef"));
    }

    #[test]
    fn wakes_up_for_the_next_expiration() {
        let soon = token("bootstrap-token-abcdef", &[("expiration", "2030-01-01T00:00:30Z")]);
        let later = token("bootstrap-token-ghijkl", &[("expiration", "2030-01-01T01:00:00Z")]);
        assert_eq!(next_expiry(&[later, soon], now()), Some(Duration::from_secs(30)));
    }
}
