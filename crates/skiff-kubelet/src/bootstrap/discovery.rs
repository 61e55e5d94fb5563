//! Token discovery of the cluster CA, as `kubeadm join` does it: read the public
//! `kube-public/cluster-info` ConfigMap anonymously over TLS *without* verifying the server
//! (we do not know the CA yet), then trust its content only if the detached JWS for our token
//! id verifies with our token (proving the publisher knows the token secret) and, when given,
//! the CA's public key matches the pin (proving it is the CA the admin meant). The
//! unverified connection is used for this one read and dropped; the token itself is never
//! sent over it.

use std::time::{Duration, Instant};

use base64::Engine;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;

use super::token::BootstrapToken;
use super::{jws, pin, BootstrapError};

/// Namespace and name of the ConfigMap the bootstrap signer maintains.
pub const CLUSTER_INFO_NAMESPACE: &str = "kube-public";
/// Name of the cluster-info ConfigMap.
pub const CLUSTER_INFO_NAME: &str = "cluster-info";
/// Key of the kubeconfig inside cluster-info.
pub const KUBECONFIG_KEY: &str = "kubeconfig";
/// Prefix of the per-token signature keys (`jws-kubeconfig-<token-id>`).
pub const JWS_KEY_PREFIX: &str = "jws-kubeconfig-";

/// What one attempt found, before the retry policy decides.
enum Attempt {
    Ok(String),
    /// Worth retrying: cluster-info or our signature may simply not be published yet.
    NotYet(BootstrapError),
    Fatal(BootstrapError),
}

/// The verified cluster CA (PEM) of the server at `server`, retrying for up to `timeout`
/// while cluster-info or our token's signature is not yet published (a token created a
/// moment ago is signed asynchronously by the controller manager).
pub async fn discover_ca(
    server: &str,
    token: &BootstrapToken,
    ca_pin: Option<&str>,
    timeout: Duration,
) -> Result<String, BootstrapError> {
    let start = Instant::now();
    loop {
        match attempt(server, token, ca_pin).await {
            Attempt::Ok(ca) => return Ok(ca),
            Attempt::Fatal(e) => return Err(e),
            Attempt::NotYet(e) if start.elapsed() >= timeout => return Err(e),
            Attempt::NotYet(e) => {
                tracing::debug!(error = %e, "cluster-info not usable yet, retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

fn insecure_client(server: &str) -> Result<kube::Client, BootstrapError> {
    let uri: http::Uri = server.parse().map_err(|e| BootstrapError::InvalidServer(format!("{server}: {e}")))?;
    let mut cfg = kube::Config::new(uri);
    // The only unverified connection of the whole flow: what it returns is checked with the
    // token's JWS (and the pin) before anything else trusts it.
    cfg.accept_invalid_certs = true;
    cfg.connect_timeout = Some(Duration::from_secs(10));
    cfg.read_timeout = Some(Duration::from_secs(10));
    kube::Client::try_from(cfg).map_err(|e| BootstrapError::discovery(server, e))
}

async fn attempt(server: &str, token: &BootstrapToken, ca_pin: Option<&str>) -> Attempt {
    let client = match insecure_client(server) {
        Ok(c) => c,
        Err(e) => return Attempt::Fatal(e),
    };
    let api: Api<ConfigMap> = Api::namespaced(client, CLUSTER_INFO_NAMESPACE);
    let cm = match api.get_opt(CLUSTER_INFO_NAME).await {
        Ok(Some(cm)) => cm,
        Ok(None) => return Attempt::NotYet(BootstrapError::ClusterInfoMissing { server: server.to_string() }),
        // Connection refused and friends: the server may be starting.
        Err(e) => return Attempt::NotYet(BootstrapError::discovery(server, e)),
    };
    match verify_cluster_info(&cm, token, ca_pin) {
        Ok(ca) => Attempt::Ok(ca),
        Err(e @ BootstrapError::NoSignature { .. }) => Attempt::NotYet(e),
        Err(e) => Attempt::Fatal(e),
    }
}

/// Check a fetched cluster-info and return the CA (PEM) it carries.
pub fn verify_cluster_info(cm: &ConfigMap, token: &BootstrapToken, ca_pin: Option<&str>) -> Result<String, BootstrapError> {
    let data = cm.data.clone().unwrap_or_default();
    let kubeconfig = data.get(KUBECONFIG_KEY).ok_or_else(|| BootstrapError::ClusterInfoInvalid("no kubeconfig key".into()))?;
    let sig = data
        .get(&format!("{JWS_KEY_PREFIX}{}", token.id))
        .ok_or_else(|| BootstrapError::NoSignature { token_id: token.id.clone() })?;
    jws::verify_detached(sig, kubeconfig, &token.id, &token.secret)
        .map_err(|source| BootstrapError::BadSignature { token_id: token.id.clone(), source })?;
    let ca = ca_from_kubeconfig(kubeconfig)?;
    if let Some(p) = ca_pin {
        pin::check_pin(&ca, p)?;
    }
    Ok(ca)
}

/// The CA (PEM) of the first cluster of a kubeconfig document.
fn ca_from_kubeconfig(text: &str) -> Result<String, BootstrapError> {
    let kc = kube::config::Kubeconfig::from_yaml(text).map_err(|e| BootstrapError::ClusterInfoInvalid(format!("kubeconfig: {e}")))?;
    let data = kc
        .clusters
        .first()
        .and_then(|c| c.cluster.as_ref())
        .and_then(|c| c.certificate_authority_data.clone())
        .ok_or_else(|| BootstrapError::ClusterInfoInvalid("kubeconfig has no certificate-authority-data".into()))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|e| BootstrapError::ClusterInfoInvalid(format!("certificate-authority-data: {e}")))?;
    let pem = String::from_utf8(bytes).map_err(|_| BootstrapError::ClusterInfoInvalid("CA is not PEM text".into()))?;
    pin::pem_certs(&pem)?;
    Ok(pem)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster_info(ca_pem: &str, signer: &BootstrapToken) -> ConfigMap {
        let b64 = base64::engine::general_purpose::STANDARD.encode(ca_pem);
        let kc = format!("apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority-data: {b64}\n    server: https://127.0.0.1:6443\n  name: \"\"\ncontexts: []\nusers: []\n");
        let sig = jws::sign_detached(&kc, &signer.id, &signer.secret);
        let mut data = std::collections::BTreeMap::new();
        data.insert(KUBECONFIG_KEY.to_string(), kc);
        data.insert(format!("{JWS_KEY_PREFIX}{}", signer.id), sig);
        ConfigMap { data: Some(data), ..Default::default() }
    }

    fn ca_pem() -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.self_signed(&key).unwrap().pem()
    }

    #[test]
    fn signed_cluster_info_yields_its_ca_and_honours_the_pin() {
        let token = BootstrapToken::parse("abcdef.0123456789abcdef").unwrap();
        let ca = ca_pem();
        let cm = cluster_info(&ca, &token);
        assert_eq!(verify_cluster_info(&cm, &token, None).unwrap(), ca);
        let good = pin::ca_pin(&ca).unwrap();
        assert_eq!(verify_cluster_info(&cm, &token, Some(&good)).unwrap(), ca);
        let bad = pin::ca_pin(&ca_pem()).unwrap();
        assert!(matches!(verify_cluster_info(&cm, &token, Some(&bad)), Err(BootstrapError::PinMismatch { .. })));
    }

    #[test]
    fn wrong_secret_or_unknown_id_is_refused() {
        let token = BootstrapToken::parse("abcdef.0123456789abcdef").unwrap();
        let cm = cluster_info(&ca_pem(), &token);
        let wrong_secret = BootstrapToken::parse("abcdef.ffffffffffffffff").unwrap();
        assert!(matches!(verify_cluster_info(&cm, &wrong_secret, None), Err(BootstrapError::BadSignature { .. })));
        let other_id = BootstrapToken::parse("zzzzzz.0123456789abcdef").unwrap();
        assert!(matches!(verify_cluster_info(&cm, &other_id, None), Err(BootstrapError::NoSignature { .. })));
    }
}
