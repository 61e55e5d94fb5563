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

/// Parses `24h`, `90m`, `30s` or `0`.
pub fn parse_ttl(text: &str) -> anyhow::Result<Duration> {
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let (num, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let n: u64 = num.parse().map_err(|_| anyhow::anyhow!("bad --ttl {text:?}: use e.g. 24h, 90m, 30s or 0"))?;
    let secs = match unit {
        "h" => n * 3600,
        "m" => n * 60,
        "s" | "" => n,
        _ => anyhow::bail!("bad --ttl {text:?}: use e.g. 24h, 90m, 30s or 0"),
    };
    Ok(Duration::from_secs(secs))
}

/// `skiff token create`: makes a token with the server's admin kubeconfig and prints how
/// an agent joins with it.
pub async fn print_new_token(data_dir: &Path, ttl: &str) -> anyhow::Result<()> {
    let kubeconfig = data_dir.join("kubeconfig.yaml");
    anyhow::ensure!(kubeconfig.exists(), "no kubeconfig at {} (is the server's --data-dir right, and has it started?)", kubeconfig.display());
    let token = create_token(&kubeconfig, parse_ttl(ttl)?).await?;
    let ca = std::fs::read_to_string(data_dir.join("tls").join("ca.crt")).unwrap_or_default();
    println!("{token}");
    if let Ok(pin) = ca_pin(&ca) {
        eprintln!("join an agent with:\n  skiff agent --server https://<this server>:6443 --token {token} --ca-pin {pin}");
    }
    Ok(())
}
