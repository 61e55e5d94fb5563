//! CA public key pins in kubeadm's `--discovery-token-ca-cert-hash` form:
//! `sha256:<hex of SHA-256 over the CA certificate's DER SubjectPublicKeyInfo>`. Pinning the
//! key rather than the certificate keeps the pin valid when the CA is re-issued with the same
//! key.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use sha2::{Digest, Sha256};

use super::BootstrapError;

/// The DER certificates in a PEM bundle.
pub(crate) fn pem_certs(pem: &str) -> Result<Vec<CertificateDer<'static>>, BootstrapError> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| BootstrapError::Certificate(format!("reading PEM certificate: {e}")))?;
    if certs.is_empty() {
        return Err(BootstrapError::Certificate("no certificate in PEM data".into()));
    }
    Ok(certs)
}

/// The pin (`sha256:<hex>`) of the first certificate in `ca_pem`.
pub fn ca_pin(ca_pem: &str) -> Result<String, BootstrapError> {
    let der = pem_certs(ca_pem)?.remove(0);
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| BootstrapError::Certificate(format!("parsing CA certificate: {e}")))?;
    let digest = Sha256::digest(cert.tbs_certificate.subject_pki.raw);
    Ok(format!("sha256:{}", digest.iter().map(|b| format!("{b:02x}")).collect::<String>()))
}

/// Check that `ca_pem` matches `pin`. Upper-case hex is accepted; other hash kinds are not.
pub fn check_pin(ca_pem: &str, pin: &str) -> Result<(), BootstrapError> {
    let want = pin.trim().to_ascii_lowercase();
    let hex = want.strip_prefix("sha256:").ok_or_else(|| BootstrapError::InvalidPin(pin.to_string()))?;
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(BootstrapError::InvalidPin(pin.to_string()));
    }
    let got = ca_pin(ca_pem)?;
    if got != want {
        return Err(BootstrapError::PinMismatch { expected: want, actual: got });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca() -> (String, Vec<u8>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        let spki = rustls_pki_types::SubjectPublicKeyInfoDer::from_pem_slice(key.public_key_pem().as_bytes()).unwrap();
        (cert.pem(), spki.to_vec())
    }

    #[test]
    fn pin_is_sha256_of_the_subject_public_key_info() {
        let (pem, spki) = ca();
        let want: String = Sha256::digest(&spki).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(ca_pin(&pem).unwrap(), format!("sha256:{want}"));
        check_pin(&pem, &format!("SHA256:{}", want.to_uppercase())).unwrap();
    }

    #[test]
    fn another_ca_or_a_malformed_pin_is_refused() {
        let (pem, _) = ca();
        let (other, _) = ca();
        let pin = ca_pin(&other).unwrap();
        assert!(matches!(check_pin(&pem, &pin), Err(BootstrapError::PinMismatch { .. })));
        assert!(matches!(check_pin(&pem, "md5:abcd"), Err(BootstrapError::InvalidPin(_))));
        assert!(matches!(check_pin(&pem, "sha256:1234"), Err(BootstrapError::InvalidPin(_))));
        assert!(ca_pin("not pem").is_err());
    }
}
