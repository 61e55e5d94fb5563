//! The node's side of a CertificateSigningRequest: make a key (ECDSA P-256, never leaves the
//! node) and a PKCS#10 request, post it as a `certificates.k8s.io/v1` object, and wait on a
//! watch until the signer fills `status.certificate` or someone denies it.

use std::net::IpAddr;
use std::time::Duration;

use base64::Engine;
use k8s_openapi::api::certificates::v1::{CertificateSigningRequest, CertificateSigningRequestSpec};
use k8s_openapi::ByteString;
use kube::api::{Api, ObjectMeta, PostParams};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};

use super::BootstrapError;

/// Signer of kubelet client certificates (auto-approved for bootstrappers and renewals).
pub const CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
/// Signer of kubelet serving certificates.
pub const SERVING_SIGNER: &str = "kubernetes.io/kubelet-serving";
/// Usages of a kubelet client certificate with an ECDSA key (no key encipherment, which only
/// RSA keys do; upstream's approver checks for exactly this set).
pub const CLIENT_USAGES: &[&str] = &["digital signature", "client auth"];
/// Usages of a kubelet serving certificate with an ECDSA key.
pub const SERVING_USAGES: &[&str] = &["digital signature", "server auth"];

/// A private key and the PEM request for it.
pub struct KeyAndRequest {
    /// PKCS#8 PEM of the new private key.
    pub key_pem: String,
    /// PEM `CERTIFICATE REQUEST`.
    pub csr_pem: String,
}

fn node_subject(node_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "system:nodes");
    dn.push(DnType::CommonName, format!("system:node:{node_name}"));
    dn
}

fn make_request(params: CertificateParams) -> Result<KeyAndRequest, BootstrapError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| BootstrapError::Certificate(format!("generating key: {e}")))?;
    let csr = params.serialize_request(&key).map_err(|e| BootstrapError::Certificate(format!("building CSR: {e}")))?;
    let csr_pem = csr.pem().map_err(|e| BootstrapError::Certificate(format!("encoding CSR: {e}")))?;
    Ok(KeyAndRequest { key_pem: key.serialize_pem(), csr_pem })
}

/// Key and request for the client certificate of `node_name` (`system:node:<name>` in
/// `system:nodes`, no SANs, as the approver requires).
pub fn client_request(node_name: &str) -> Result<KeyAndRequest, BootstrapError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = node_subject(node_name);
    make_request(params)
}

/// Key and request for the serving certificate of `node_name`, valid for the node name and
/// its addresses.
pub fn serving_request(node_name: &str, ips: &[IpAddr]) -> Result<KeyAndRequest, BootstrapError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = node_subject(node_name);
    let dns = node_name
        .to_string()
        .try_into()
        .map_err(|e| BootstrapError::Certificate(format!("node name {node_name:?} is not a DNS name: {e}")))?;
    params.subject_alt_names.push(SanType::DnsName(dns));
    params.subject_alt_names.extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
    make_request(params)
}

fn condition(csr: &CertificateSigningRequest, kind: &str) -> Option<String> {
    let conds = csr.status.as_ref()?.conditions.as_ref()?;
    conds
        .iter()
        .find(|c| c.type_ == kind && c.status == "True")
        .map(|c| format!("{}: {}", c.reason.clone().unwrap_or_default(), c.message.clone().unwrap_or_default()))
}

fn issued(csr: &CertificateSigningRequest) -> bool {
    csr.status.as_ref().and_then(|s| s.certificate.as_ref()).is_some_and(|c| !c.0.is_empty())
        || condition(csr, "Denied").is_some()
        || condition(csr, "Failed").is_some()
}

/// Post `csr_pem` as a CertificateSigningRequest for `signer` with `usages` through
/// `client`, and wait up to `timeout` for the certificate (PEM) it is issued.
pub async fn request_certificate(
    client: &kube::Client,
    csr_pem: &str,
    signer: &str,
    usages: &[&str],
    timeout: Duration,
) -> Result<String, BootstrapError> {
    let api: Api<CertificateSigningRequest> = Api::all(client.clone());
    let obj = CertificateSigningRequest {
        metadata: ObjectMeta { generate_name: Some("csr-".into()), ..Default::default() },
        spec: CertificateSigningRequestSpec {
            request: ByteString(csr_pem.as_bytes().to_vec()),
            signer_name: signer.to_string(),
            usages: Some(usages.iter().map(|u| u.to_string()).collect()),
            expiration_seconds: None,
            ..Default::default()
        },
        status: None,
    };
    let created = api.create(&PostParams::default(), &obj).await.map_err(|e| match &e {
        kube::Error::Api(s) if s.code == 401 => BootstrapError::Unauthorized { what: format!("creating a {signer} CSR") },
        _ => BootstrapError::api(format!("creating a {signer} CSR"), e),
    })?;
    let name = created.metadata.name.clone().unwrap_or_default();
    tracing::info!(csr = %name, %signer, "certificate signing request created, waiting for approval");
    let wait = kube::runtime::wait::await_condition(api, &name, |o: Option<&CertificateSigningRequest>| o.is_some_and(issued));
    let done = match tokio::time::timeout(timeout, wait).await {
        Err(_) => return Err(BootstrapError::CsrTimeout { name, waited: timeout }),
        Ok(Err(e)) => return Err(BootstrapError::CsrWait { name, reason: e.to_string() }),
        Ok(Ok(None)) => return Err(BootstrapError::CsrWait { name, reason: "the request was deleted".into() }),
        Ok(Ok(Some(o))) => o,
    };
    if let Some(why) = condition(&done, "Denied") {
        return Err(BootstrapError::CsrDenied { name, reason: why });
    }
    if let Some(why) = condition(&done, "Failed") {
        return Err(BootstrapError::CsrDenied { name, reason: format!("signing failed: {why}") });
    }
    let cert = done.status.and_then(|s| s.certificate).map(|c| c.0).unwrap_or_default();
    let pem = String::from_utf8(cert).map_err(|_| BootstrapError::Certificate(format!("csr {name}: issued certificate is not PEM text")))?;
    super::pin::pem_certs(&pem)?;
    tracing::info!(csr = %name, "certificate issued");
    Ok(pem)
}

/// Validity window of the first certificate in `pem`, as unix seconds.
pub fn validity(pem: &str) -> Result<(i64, i64), BootstrapError> {
    let der = super::pin::pem_certs(pem)?.remove(0);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).map_err(|e| BootstrapError::Certificate(format!("parsing certificate: {e}")))?;
    Ok((cert.validity().not_before.timestamp(), cert.validity().not_after.timestamp()))
}

/// Fraction of the certificate's lifetime that has passed at `now` (unix seconds): 0 at
/// notBefore, 1 at notAfter, clamped to [0, 1].
pub fn elapsed_fraction(pem: &str, now: i64) -> Result<f64, BootstrapError> {
    let (start, end) = validity(pem)?;
    if end <= start {
        return Ok(1.0);
    }
    Ok(((now - start) as f64 / (end - start) as f64).clamp(0.0, 1.0))
}

/// PEM of a private key as kubeconfig's base64 `client-key-data`.
pub(crate) fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_csr(pem: &str) -> (String, Vec<String>, usize) {
        let params = rcgen::CertificateSigningRequestParams::from_pem(pem).unwrap();
        let dn = &params.params.distinguished_name;
        let text = |t: DnType| match dn.get(&t) {
            Some(rcgen::DnValue::Utf8String(s)) => s.clone(),
            Some(rcgen::DnValue::PrintableString(s)) => s.to_string(),
            other => panic!("unexpected {other:?}"),
        };
        (text(DnType::CommonName), vec![text(DnType::OrganizationName)], params.params.subject_alt_names.len())
    }

    #[test]
    fn client_request_names_the_node_and_has_no_sans() {
        let r = client_request("worker-1").unwrap();
        assert!(r.key_pem.contains("PRIVATE KEY"));
        let (cn, orgs, sans) = parse_csr(&r.csr_pem);
        assert_eq!(cn, "system:node:worker-1");
        assert_eq!(orgs, vec!["system:nodes"]);
        assert_eq!(sans, 0);
    }

    #[test]
    fn serving_request_lists_name_and_addresses() {
        let r = serving_request("worker-1", &["10.0.0.5".parse().unwrap(), "::1".parse().unwrap()]).unwrap();
        let (cn, _, sans) = parse_csr(&r.csr_pem);
        assert_eq!(cn, "system:node:worker-1");
        assert_eq!(sans, 3);
    }

    #[test]
    fn elapsed_fraction_tracks_the_lifetime() {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::default();
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2030, 1, 1);
        let pem = p.self_signed(&key).unwrap().pem();
        let (start, end) = validity(&pem).unwrap();
        assert_eq!(elapsed_fraction(&pem, start - 10).unwrap(), 0.0);
        assert_eq!(elapsed_fraction(&pem, end + 10).unwrap(), 1.0);
        let mid = elapsed_fraction(&pem, start + (end - start) / 2).unwrap();
        assert!((mid - 0.5).abs() < 1e-6);
    }
}
