//! Where the bootstrap keeps credentials and how clients are built from them. Private keys
//! and the kubeconfig are written 0600 through a temporary file and a rename, so a crash
//! never leaves a half-written key behind.

use std::path::{Path, PathBuf};

use base64::Engine;

use super::csr::b64;
use super::token::BootstrapToken;
use super::BootstrapError;

/// A certificate and its key (PEM).
pub(crate) struct Pair {
    pub cert_pem: String,
    pub key_pem: String,
}

/// Credential files under the agent's data dir.
pub(crate) struct Paths {
    pub kubeconfig: PathBuf,
    pki: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BootstrapError + '_ {
    move |source| BootstrapError::Io { path: path.to_path_buf(), source }
}

fn write_atomic(path: &Path, contents: &str, mode: u32) -> Result<(), BootstrapError> {
    crate::atomic_file::write(path, contents.as_bytes(), mode).map_err(|(path, source)| BootstrapError::Io { path, source })
}

fn read_opt(path: &Path) -> Result<Option<String>, BootstrapError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(BootstrapError::Io { path: path.to_path_buf(), source: e }),
    }
}

/// A kubeconfig document for `server` trusting `ca_pem`, with the given `user:` body lines.
fn kubeconfig_yaml(server: &str, ca_pem: &str, user: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority-data: {}\n    server: {server}\n  name: default\ncontexts:\n- context:\n    cluster: default\n    user: default\n  name: default\ncurrent-context: default\npreferences: {{}}\nusers:\n- name: default\n  user:\n{user}",
        b64(ca_pem)
    )
}

impl Paths {
    pub fn new(data_dir: &Path) -> Self {
        Self { kubeconfig: data_dir.join("kubelet.kubeconfig"), pki: data_dir.join("pki") }
    }

    pub fn create_dirs(&self) -> Result<(), BootstrapError> {
        std::fs::create_dir_all(&self.pki).map_err(io(&self.pki))
    }

    fn ca(&self) -> PathBuf {
        self.pki.join("ca.crt")
    }

    pub fn read_ca(&self) -> Result<String, BootstrapError> {
        let p = self.ca();
        std::fs::read_to_string(&p).map_err(io(&p))
    }

    pub fn write_ca(&self, pem: &str) -> Result<(), BootstrapError> {
        write_atomic(&self.ca(), pem, 0o644)
    }

    /// The client certificate and key embedded in the kubeconfig, if there is one.
    pub fn load_client(&self) -> Result<Option<Pair>, BootstrapError> {
        let Some(text) = read_opt(&self.kubeconfig)? else { return Ok(None) };
        let bad = |why: &str| BootstrapError::Certificate(format!("{}: {why}", self.kubeconfig.display()));
        let kc = kube::config::Kubeconfig::from_yaml(&text).map_err(|e| bad(&e.to_string()))?;
        let user = kc.auth_infos.first().and_then(|a| a.auth_info.clone()).ok_or_else(|| bad("no user"))?;
        let decode = |d: Option<String>| -> Result<String, BootstrapError> {
            let d = d.ok_or_else(|| bad("no embedded client certificate"))?;
            let bytes = base64::engine::general_purpose::STANDARD.decode(d.trim()).map_err(|e| bad(&e.to_string()))?;
            String::from_utf8(bytes).map_err(|_| bad("certificate data is not PEM"))
        };
        // kube keeps the key in a secret string; serialising the user is the public way to
        // read it back without depending on the `secrecy` crate.
        let fields = serde_json::to_value(&user).map_err(|e| bad(&e.to_string()))?;
        let key = fields.get("client-key-data").and_then(|v| v.as_str()).map(str::to_string);
        Ok(Some(Pair { cert_pem: decode(user.client_certificate_data)?, key_pem: decode(key)? }))
    }

    /// Write the node's kubeconfig with its client certificate (0600).
    pub fn write_client(&self, server: &str, ca_pem: &str, pair: &Pair) -> Result<(), BootstrapError> {
        let user = format!("    client-certificate-data: {}\n    client-key-data: {}\n", b64(&pair.cert_pem), b64(&pair.key_pem));
        write_atomic(&self.kubeconfig, &kubeconfig_yaml(server, ca_pem, &user), 0o600)
    }

    pub fn load_serving(&self) -> Result<Option<Pair>, BootstrapError> {
        let (c, k) = (self.pki.join("kubelet-serving.crt"), self.pki.join("kubelet-serving.key"));
        match (read_opt(&c)?, read_opt(&k)?) {
            (Some(cert_pem), Some(key_pem)) => Ok(Some(Pair { cert_pem, key_pem })),
            _ => Ok(None),
        }
    }

    pub fn write_serving(&self, pair: &Pair) -> Result<(), BootstrapError> {
        // Key first: a certificate without its key is useless, the other way round is
        // recovered by requesting again.
        write_atomic(&self.pki.join("kubelet-serving.key"), &pair.key_pem, 0o600)?;
        write_atomic(&self.pki.join("kubelet-serving.crt"), &pair.cert_pem, 0o644)
    }
}

async fn client_from_yaml(text: &str) -> Result<kube::Client, BootstrapError> {
    let kc = kube::config::Kubeconfig::from_yaml(text).map_err(|e| BootstrapError::Certificate(format!("kubeconfig: {e}")))?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .map_err(|e| BootstrapError::Certificate(format!("kubeconfig: {e}")))?;
    kube::Client::try_from(cfg).map_err(|e| BootstrapError::api("building the API client", e))
}

/// A client that trusts `ca_pem` and authenticates with the bootstrap token (bearer).
pub(crate) async fn token_client(server: &str, ca_pem: &str, token: &BootstrapToken) -> Result<kube::Client, BootstrapError> {
    client_from_yaml(&kubeconfig_yaml(server, ca_pem, &format!("    token: {token}\n"))).await
}

/// A client from the node's kubeconfig (its client certificate).
pub(crate) async fn kubeconfig_client(path: &Path) -> Result<kube::Client, BootstrapError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    client_from_yaml(&text).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubeconfig_round_trips_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let p = Paths::new(dir.path());
        p.create_dirs().unwrap();
        assert!(p.load_client().unwrap().is_none());
        let pair = Pair { cert_pem: "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n".into(), key_pem: "KEY".into() };
        p.write_client("https://127.0.0.1:6443", "CA", &pair).unwrap();
        let back = p.load_client().unwrap().unwrap();
        assert_eq!(back.cert_pem, pair.cert_pem);
        assert_eq!(back.key_pem, "KEY");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&p.kubeconfig).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
