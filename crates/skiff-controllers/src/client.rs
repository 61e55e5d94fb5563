//! Building a kube-rs client from a kubeconfig file.

use std::path::Path;

use anyhow::Context;

/// A client for the cluster described by the kubeconfig at `path`.
pub async fn from_kubeconfig(path: &Path) -> anyhow::Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(path).with_context(|| format!("reading {}", path.display()))?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .with_context(|| format!("loading {}", path.display()))?;
    kube::Client::try_from(cfg).context("building the API client")
}
