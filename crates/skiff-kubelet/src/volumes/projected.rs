//! `projected` volumes (configMap, secret, downwardAPI and serviceAccountToken sources in one
//! directory) and the service account token manager.
//!
//! Tokens come from the TokenRequest API, bound to the pod (`boundObjectRef`), so the API
//! server stops accepting them once the pod is gone. Like kubelet's token manager, a token
//! is reused until 80% of its lifetime has passed (or it is 24 hours old), then replaced on
//! the next sync; if the refresh fails the old token is served while it is still valid.
//! `clusterTrustBundle` sources are not implemented.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Pod, ProjectedVolumeSource, ServiceAccount, ServiceAccountTokenProjection};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{Api, PostParams};

use super::atomic_writer::FileProjection;
use super::configmap_secret::{configmap_payload, get_configmap, get_secret, secret_payload, DEFAULT_MODE};
use super::downward;
use super::error::SetUpError;

/// Default token lifetime when the projection does not say (the API's default).
const DEFAULT_EXPIRATION: i64 = 3600;
/// Tokens older than this are refreshed whatever their expiry (upstream's maxTTL).
const MAX_TTL: i64 = 24 * 3600;

/// Whether a token issued at `issued` and expiring at `expires` (Unix seconds) should be
/// replaced at `now`: when 80% of its life has passed, or it is older than 24 hours.
pub fn needs_refresh(issued: i64, expires: i64, now: i64) -> bool {
    let ttl = expires - issued;
    now >= expires || now - issued >= MAX_TTL || (now - issued) * 5 >= ttl * 4
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct TokenKey {
    namespace: String,
    service_account: String,
    audience: String,
    expiration: i64,
    pod_uid: String,
}

#[derive(Debug, Clone)]
struct CachedToken {
    token: String,
    issued: i64,
    expires: i64,
}

/// A source of the current Unix time in seconds.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// Caches service account tokens per (pod, service account, audience, lifetime).
pub struct TokenManager {
    cache: Mutex<HashMap<TokenKey, CachedToken>>,
    clock: Clock,
}

impl Default for TokenManager {
    fn default() -> Self {
        TokenManager { cache: Mutex::default(), clock: Arc::new(|| chrono::Utc::now().timestamp()) }
    }
}

impl std::fmt::Debug for TokenManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenManager").field("cached", &self.cache.lock().map(|c| c.len()).unwrap_or(0)).finish()
    }
}

impl TokenManager {
    /// A manager whose idea of "now" comes from `clock` (tests move time forward to see
    /// rotation without waiting most of an hour).
    pub fn with_clock(clock: Clock) -> Self {
        TokenManager { cache: Mutex::default(), clock }
    }

    /// The token for `proj` in `pod`, requesting a new one when none is cached or the cached
    /// one is due for refresh.
    pub async fn token(&self, client: &kube::Client, pod: &Pod, proj: &ServiceAccountTokenProjection) -> Result<String, SetUpError> {
        let namespace = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
        let service_account = pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "default".into());
        let key = TokenKey {
            namespace: namespace.clone(),
            service_account: service_account.clone(),
            audience: proj.audience.clone().unwrap_or_default(),
            expiration: proj.expiration_seconds.unwrap_or(DEFAULT_EXPIRATION),
            pod_uid: pod.metadata.uid.clone().unwrap_or_default(),
        };
        let now = (self.clock)();
        let cached = self.cache.lock().expect("token cache lock").get(&key).cloned();
        if let Some(c) = &cached {
            if !needs_refresh(c.issued, c.expires, now) {
                return Ok(c.token.clone());
            }
        }
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: key.audience.is_empty().then(Vec::new).unwrap_or_else(|| vec![key.audience.clone()]),
                expiration_seconds: Some(key.expiration),
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: pod.metadata.name.clone(),
                    uid: pod.metadata.uid.clone(),
                }),
            },
            ..Default::default()
        };
        let api: Api<ServiceAccount> = Api::namespaced(client.clone(), &namespace);
        match api.create_token_request(&service_account, &PostParams::default(), &request).await {
            Ok(resp) => {
                let Some(status) = resp.status else {
                    return Err(SetUpError::Token(kube::Error::Service("TokenRequest response has no status".into())));
                };
                let expires = status.expiration_timestamp.0.as_second();
                // The server may shorten the lifetime; the issue time follows from what it
                // granted, as upstream derives it.
                let granted = resp.spec.expiration_seconds.unwrap_or(key.expiration);
                let issued = (expires - granted).min(now);
                self.cache.lock().expect("token cache lock").insert(key, CachedToken { token: status.token.clone(), issued, expires });
                Ok(status.token)
            }
            Err(e) => match cached {
                Some(c) if now < c.expires => {
                    tracing::warn!(error = %e, sa = %service_account, "token refresh failed; serving the previous token until it expires");
                    Ok(c.token)
                }
                _ => Err(SetUpError::Token(e)),
            },
        }
    }

    /// Drop the tokens of a pod that is gone.
    pub fn forget_pod(&self, pod_uid: &str) {
        self.cache.lock().expect("token cache lock").retain(|k, _| k.pod_uid != pod_uid);
    }
}

/// Files of a projected volume. Every source is tried; the first failure is returned.
pub async fn payload(
    client: &kube::Client,
    tokens: &TokenManager,
    pod: &Pod,
    src: &ProjectedVolumeSource,
    allocatable: &BTreeMap<String, Quantity>,
) -> Result<BTreeMap<String, FileProjection>, SetUpError> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let default_mode = src.default_mode.map(|m| m as u32).unwrap_or(DEFAULT_MODE);
    let mut out = BTreeMap::new();
    let mut first_err = None;
    for source in src.sources.iter().flatten() {
        let part = if let Some(c) = source.config_map.as_ref() {
            let optional = c.optional == Some(true);
            match get_configmap(client, ns, &c.name, optional).await {
                Ok(cm) => configmap_payload(c.items.as_deref().unwrap_or_default(), &cm, default_mode, optional),
                Err(e) => Err(e),
            }
        } else if let Some(s) = source.secret.as_ref() {
            let optional = s.optional == Some(true);
            match get_secret(client, ns, &s.name, optional).await {
                Ok(secret) => secret_payload(s.items.as_deref().unwrap_or_default(), &secret, default_mode, optional),
                Err(e) => Err(e),
            }
        } else if let Some(d) = source.downward_api.as_ref() {
            downward::collect_data(d.items.as_deref().unwrap_or_default(), pod, default_mode, allocatable).map_err(SetUpError::from)
        } else if let Some(t) = source.service_account_token.as_ref() {
            tokens
                .token(client, pod, t)
                .await
                .map(|tok| BTreeMap::from([(t.path.clone(), FileProjection { data: tok.into_bytes(), mode: default_mode })]))
        } else {
            // clusterTrustBundle and sources newer than this agent.
            Ok(BTreeMap::new())
        };
        match part {
            Ok(files) => out.extend(files),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_at_eighty_percent() {
        let (iat, exp) = (1_000, 1_000 + 3600);
        assert!(!needs_refresh(iat, exp, iat));
        assert!(!needs_refresh(iat, exp, iat + 2879));
        assert!(needs_refresh(iat, exp, iat + 2880), "80% of 3600 s");
        assert!(needs_refresh(iat, exp, exp + 1));
        let long = iat + 7 * 24 * 3600;
        assert!(needs_refresh(iat, long, iat + 24 * 3600), "24 h cap");
        assert!(!needs_refresh(iat, long, iat + 23 * 3600));
    }
}
