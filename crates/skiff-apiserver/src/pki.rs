//! The cluster's certificates: a CA made on first start and kept in the data dir, the API
//! server's serving certificate (re-issued when its names change), the admin client
//! certificate, and the admin kubeconfig that embeds them.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, SanType,
};

/// Errors while making or loading certificates.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Generating or parsing a certificate failed.
    #[error("certificate {what}: {source}")]
    Cert {
        /// Which certificate.
        what: String,
        /// The cause.
        source: rcgen::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io { path: path.to_path_buf(), source }
}

fn cert_err(what: &str) -> impl FnOnce(rcgen::Error) -> PkiError + '_ {
    move |source| PkiError::Cert { what: what.to_string(), source }
}

/// PEM certificate and key.
#[derive(Debug, Clone)]
pub struct CertPair {
    /// Certificate, PEM.
    pub cert_pem: String,
    /// Private key, PEM (PKCS#8).
    pub key_pem: String,
}

/// The cluster PKI held in `<data-dir>/tls`.
#[derive(Debug, Clone)]
pub struct Pki {
    /// Directory holding the files.
    pub dir: PathBuf,
    /// The cluster CA.
    pub ca: CertPair,
    /// The API server's serving certificate.
    pub serving: CertPair,
    /// The admin client certificate (CN system:admin, O system:masters).
    pub admin: CertPair,
    /// The client certificate the API server presents to kubelets (CN
    /// kube-apiserver-kubelet-client, O system:masters), for logs/exec/attach/port-forward.
    pub kubelet_client: CertPair,
}

fn write_private(path: &Path, contents: &str) -> Result<(), PkiError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    // Write to a temp file then rename, so a crash never leaves a half-written key.
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io(&tmp))?;
    f.write_all(contents.as_bytes()).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

fn read_pair(dir: &Path, name: &str) -> Result<Option<CertPair>, PkiError> {
    let c = dir.join(format!("{name}.crt"));
    let k = dir.join(format!("{name}.key"));
    if !c.exists() || !k.exists() {
        return Ok(None);
    }
    Ok(Some(CertPair {
        cert_pem: std::fs::read_to_string(&c).map_err(io(&c))?,
        key_pem: std::fs::read_to_string(&k).map_err(io(&k))?,
    }))
}

fn write_pair(dir: &Path, name: &str, pair: &CertPair) -> Result<(), PkiError> {
    write_private(&dir.join(format!("{name}.key")), &pair.key_pem)?;
    write_private(&dir.join(format!("{name}.crt")), &pair.cert_pem)
}

fn validity(params: &mut CertificateParams, years: i32) {
    let now = chrono::Utc::now();
    use chrono::Datelike;
    // Back-date by a day to tolerate clock skew between nodes.
    let start = now - chrono::Duration::days(1);
    params.not_before = rcgen::date_time_ymd(start.year(), start.month() as u8, start.day() as u8);
    params.not_after = rcgen::date_time_ymd(now.year() + years, now.month() as u8, now.day().min(28) as u8);
}

fn make_ca() -> Result<CertPair, PkiError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("skiff-ca@{}", chrono::Utc::now().timestamp()));
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    validity(&mut params, 10);
    let key = KeyPair::generate().map_err(cert_err("ca key"))?;
    let cert = params.self_signed(&key).map_err(cert_err("ca"))?;
    Ok(CertPair { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}

/// Issue a leaf certificate signed by `ca`.
pub fn issue(
    ca: &CertPair,
    common_name: &str,
    organizations: &[&str],
    sans: &[String],
    server: bool,
    client: bool,
) -> Result<CertPair, PkiError> {
    let ca_key = KeyPair::from_pem(&ca.key_pem).map_err(cert_err("ca key"))?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key).map_err(cert_err("ca"))?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    for o in organizations {
        dn.push(DnType::OrganizationName, *o);
    }
    params.distinguished_name = dn;
    for san in sans {
        let entry = match san.parse::<std::net::IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(san.clone().try_into().map_err(cert_err("san"))?),
        };
        params.subject_alt_names.push(entry);
    }
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    if server {
        params.extended_key_usages.push(ExtendedKeyUsagePurpose::ServerAuth);
    }
    if client {
        params.extended_key_usages.push(ExtendedKeyUsagePurpose::ClientAuth);
    }
    validity(&mut params, 1);
    let key = KeyPair::generate().map_err(cert_err(common_name))?;
    let cert = params.signed_by(&key, &issuer).map_err(cert_err(common_name))?;
    Ok(CertPair { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}

impl Pki {
    /// Load the PKI from `dir`, creating whatever is missing. The serving certificate is
    /// re-issued when `sans` differ from the names it was made for.
    pub fn load_or_create(dir: &Path, sans: &[String]) -> Result<Self, PkiError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let ca = match read_pair(dir, "ca")? {
            Some(ca) => ca,
            None => {
                tracing::info!(dir = %dir.display(), "generating cluster certificate authority");
                let ca = make_ca()?;
                write_pair(dir, "ca", &ca)?;
                ca
            }
        };
        let sans_file = dir.join("serving.sans");
        let wanted = sans.join("\n");
        let have = std::fs::read_to_string(&sans_file).unwrap_or_default();
        let serving = match read_pair(dir, "serving")? {
            Some(p) if have == wanted => p,
            _ => {
                tracing::info!(names = %sans.join(","), "issuing API server serving certificate");
                let p = issue(&ca, "kube-apiserver", &[], sans, true, false)?;
                write_pair(dir, "serving", &p)?;
                write_private(&sans_file, &wanted)?;
                p
            }
        };
        let admin = match read_pair(dir, "admin")? {
            Some(p) => p,
            None => {
                let p = issue(&ca, "system:admin", &["system:masters"], &[], false, true)?;
                write_pair(dir, "admin", &p)?;
                p
            }
        };
        let kubelet_client = match read_pair(dir, "kubelet-client")? {
            Some(p) => p,
            None => {
                let p = issue(&ca, "kube-apiserver-kubelet-client", &["system:masters"], &[], false, true)?;
                write_pair(dir, "kubelet-client", &p)?;
                p
            }
        };
        Ok(Self { dir: dir.to_path_buf(), ca, serving, admin, kubelet_client })
    }

    /// A kubelet serving certificate for `node_name` and its addresses, signed by the cluster
    /// CA, so the API server can verify the kubelet it proxies streams to. For a kubelet that
    /// runs in the server's process; remote agents get theirs through their own bootstrap.
    pub fn issue_kubelet_serving_cert(&self, node_name: &str, ips: &[std::net::IpAddr]) -> Result<CertPair, PkiError> {
        let mut sans = vec![node_name.to_string()];
        sans.extend(ips.iter().map(|ip| ip.to_string()));
        sans.dedup();
        issue(&self.ca, &format!("system:node:{node_name}"), &["system:nodes"], &sans, true, false)
    }

    /// An admin kubeconfig for `server` (e.g. `https://127.0.0.1:6443`) with embedded credentials.
    pub fn admin_kubeconfig(&self, server: &str) -> String {
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority-data: {}\n    server: {}\n  name: skiff\ncontexts:\n- context:\n    cluster: skiff\n    user: skiff-admin\n  name: skiff\ncurrent-context: skiff\npreferences: {{}}\nusers:\n- name: skiff-admin\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n",
            b64(&self.ca.cert_pem),
            server,
            b64(&self.admin.cert_pem),
            b64(&self.admin.key_pem)
        )
    }

    /// Write the admin kubeconfig to `path` (mode 0600, atomically).
    pub fn write_kubeconfig(&self, path: &Path, server: &str) -> Result<(), PkiError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        write_private(path, &self.admin_kubeconfig(server))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pki_is_kept_across_loads_and_serving_reissued_on_new_names() {
        let dir = tempfile::tempdir().unwrap();
        let a = Pki::load_or_create(dir.path(), &["localhost".into(), "127.0.0.1".into()]).unwrap();
        let b = Pki::load_or_create(dir.path(), &["localhost".into(), "127.0.0.1".into()]).unwrap();
        assert_eq!(a.ca.cert_pem, b.ca.cert_pem);
        assert_eq!(a.serving.cert_pem, b.serving.cert_pem);
        let c = Pki::load_or_create(dir.path(), &["localhost".into(), "10.0.0.1".into()]).unwrap();
        assert_eq!(a.ca.cert_pem, c.ca.cert_pem);
        assert_ne!(a.serving.cert_pem, c.serving.cert_pem);
        assert!(a.admin_kubeconfig("https://127.0.0.1:6443").contains("client-certificate-data"));
        assert_eq!(a.kubelet_client.cert_pem, c.kubelet_client.cert_pem, "kubelet client cert kept");
    }

    #[test]
    fn kubelet_certificates_carry_the_expected_identities() {
        use x509_parser::prelude::*;
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(dir.path(), &["localhost".into()]).unwrap();
        use rustls_pki_types::pem::PemObject;
        let der = |pem: &str| rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).unwrap().to_vec();
        let client = der(&pki.kubelet_client.cert_pem);
        let (_, c) = X509Certificate::from_der(&client).unwrap();
        assert_eq!(c.subject().iter_common_name().next().unwrap().as_str().unwrap(), "kube-apiserver-kubelet-client");
        assert_eq!(c.subject().iter_organization().next().unwrap().as_str().unwrap(), "system:masters");
        let serving = pki.issue_kubelet_serving_cert("node-a", &["127.0.0.1".parse().unwrap()]).unwrap();
        let der = der(&serving.cert_pem);
        let (_, s) = X509Certificate::from_der(&der).unwrap();
        let names = &s.subject_alternative_name().unwrap().unwrap().value.general_names;
        assert!(names.iter().any(|n| matches!(n, GeneralName::DNSName("node-a"))), "{names:?}");
        assert!(names.iter().any(|n| matches!(n, GeneralName::IPAddress([127, 0, 0, 1]))), "{names:?}");
        assert!(s.extended_key_usage().unwrap().unwrap().value.server_auth);
    }
}
