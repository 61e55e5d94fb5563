//! `skiff token create`: make a bootstrap token an agent joins with, and the CA pin that
//! goes with it (`skiff agent --token <id>.<secret> --ca-pin sha256:<hex>`). The token format
//! and its Secret live in `skiff_kubelet::bootstrap::token`, next to the code that uses it.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;

/// Create a bootstrap token valid for `ttl` (zero: never expires) with the admin credentials
/// of `kubeconfig`, and return it as `<id>.<secret>`.
pub async fn create_token(kubeconfig: &Path, ttl: Duration) -> anyhow::Result<String> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).with_context(|| format!("reading {}", kubeconfig.display()))?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .with_context(|| format!("loading {}", kubeconfig.display()))?;
    let client = kube::Client::try_from(cfg).context("building the API client")?;
    let token = skiff_kubelet::bootstrap::create_token_secret(&client, ttl)
        .await
        .context("creating the bootstrap token (is the server running and is this an admin kubeconfig?)")?;
    Ok(token.to_string())
}

/// The pin of a CA certificate (PEM), `sha256:<hex of its SubjectPublicKeyInfo>`, as kubeadm's
/// `--discovery-token-ca-cert-hash`.
pub fn ca_pin(ca_pem: &str) -> anyhow::Result<String> {
    skiff_kubelet::bootstrap::ca_pin(ca_pem).context("computing the CA pin")
}
