//! Approval rules and signing of node certificate requests.

use super::*;
use k8s_openapi::api::certificates::v1::CertificateSigningRequestSpec;
use k8s_openapi::ByteString;

fn request(cn: &str, orgs: &[&str], sans: Vec<rcgen::SanType>) -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    let mut dn = rcgen::DistinguishedName::new();
    for o in orgs {
        dn.push(rcgen::DnType::OrganizationName, *o);
    }
    dn.push(rcgen::DnType::CommonName, cn);
    params.distinguished_name = dn;
    params.subject_alt_names = sans;
    params.serialize_request(&key).unwrap().pem().unwrap()
}

fn csr(pem: &str, signer: &str, usages: &[&str], user: &str, groups: &[&str]) -> CertificateSigningRequest {
    CertificateSigningRequest {
        spec: CertificateSigningRequestSpec {
            request: ByteString(pem.as_bytes().to_vec()),
            signer_name: signer.into(),
            usages: Some(usages.iter().map(|u| u.to_string()).collect()),
            username: Some(user.into()),
            groups: Some(groups.iter().map(|g| g.to_string()).collect()),
            ..Default::default()
        },
        ..Default::default()
    }
}

const CLIENT: &[&str] = &["digital signature", "client auth"];
const SERVING: &[&str] = &["digital signature", "server auth"];
const BOOT: &[&str] = &["system:bootstrappers", "system:authenticated"];
const NODES: &[&str] = &["system:nodes", "system:authenticated"];

fn dns(n: &str) -> rcgen::SanType {
    rcgen::SanType::DnsName(n.to_string().try_into().unwrap())
}

#[test]
fn bootstrap_token_gets_a_node_client_certificate() {
    let pem = request("system:node:n1", &["system:nodes"], vec![]);
    let c = csr(&pem, CLIENT_KUBELET, CLIENT, "system:bootstrap:abcdef", BOOT);
    assert!(auto_approval(&c).is_ok());
    let rsa_style = csr(&pem, CLIENT_KUBELET, &["digital signature", "key encipherment", "client auth"], "system:bootstrap:abcdef", BOOT);
    assert!(auto_approval(&rsa_style).is_ok());
}

#[test]
fn a_node_renews_only_its_own_client_certificate() {
    let pem = request("system:node:n1", &["system:nodes"], vec![]);
    assert!(auto_approval(&csr(&pem, CLIENT_KUBELET, CLIENT, "system:node:n1", NODES)).is_ok());
    assert!(auto_approval(&csr(&pem, CLIENT_KUBELET, CLIENT, "system:node:n2", NODES)).is_err());
    assert!(auto_approval(&csr(&pem, CLIENT_KUBELET, CLIENT, "alice", &["system:authenticated"])).is_err());
}

#[test]
fn client_requests_with_other_subjects_names_or_usages_are_left_alone() {
    let boot = |pem: &str, usages: &[&str]| auto_approval(&csr(pem, CLIENT_KUBELET, usages, "system:bootstrap:abcdef", BOOT));
    assert!(boot(&request("system:node:n1", &["system:masters"], vec![]), CLIENT).is_err());
    assert!(boot(&request("system:node:n1", &["system:nodes", "system:masters"], vec![]), CLIENT).is_err());
    assert!(boot(&request("admin", &["system:nodes"], vec![]), CLIENT).is_err());
    assert!(boot(&request("system:node:", &["system:nodes"], vec![]), CLIENT).is_err());
    assert!(boot(&request("system:node:n1", &["system:nodes"], vec![dns("n1")]), CLIENT).is_err());
    let ok = request("system:node:n1", &["system:nodes"], vec![]);
    assert!(boot(&ok, &["digital signature", "client auth", "server auth"]).is_err());
    assert!(boot(&ok, &["client auth"]).is_err());
}

#[test]
fn serving_certificates_only_for_the_node_itself() {
    let ip = rcgen::SanType::IpAddress("10.0.0.5".parse().unwrap());
    let pem = request("system:node:n1", &["system:nodes"], vec![dns("n1"), ip]);
    assert!(auto_approval(&csr(&pem, KUBELET_SERVING, SERVING, "system:node:n1", NODES)).is_ok());
    assert!(auto_approval(&csr(&pem, KUBELET_SERVING, SERVING, "system:node:n2", NODES)).is_err());
    assert!(auto_approval(&csr(&pem, KUBELET_SERVING, SERVING, "system:bootstrap:abcdef", BOOT)).is_err());
    assert!(auto_approval(&csr(&pem, KUBELET_SERVING, CLIENT, "system:node:n1", NODES)).is_err());
    let email = request("system:node:n1", &["system:nodes"], vec![dns("n1"), rcgen::SanType::Rfc822Name("a@b.c".to_string().try_into().unwrap())]);
    assert!(auto_approval(&csr(&email, KUBELET_SERVING, SERVING, "system:node:n1", NODES)).is_err());
    let nameless = request("system:node:n1", &["system:nodes"], vec![]);
    assert!(auto_approval(&csr(&nameless, KUBELET_SERVING, SERVING, "system:node:n1", NODES)).is_err());
}

#[test]
fn other_signers_and_forged_requests_wait_for_a_human() {
    let pem = request("system:node:n1", &["system:nodes"], vec![]);
    assert!(auto_approval(&csr(&pem, APISERVER_CLIENT, CLIENT, "system:bootstrap:abcdef", BOOT)).is_err());
    // Flip a byte of the signature: the request no longer proves possession of the key.
    use base64::Engine;
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let mut der = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
    let last = der.len() - 1;
    der[last] ^= 0xff;
    let forged = format!(
        "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
        base64::engine::general_purpose::STANDARD.encode(der)
    );
    let err = auto_approval(&csr(&forged, CLIENT_KUBELET, CLIENT, "system:bootstrap:abcdef", BOOT)).unwrap_err();
    assert!(err.contains("signature"), "{err}");
}

#[test]
fn signing_uses_the_ca_the_requested_key_and_spec_usages() {
    let dir = tempfile::tempdir().unwrap();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::default();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, "test-ca");
    ca_params.distinguished_name = dn;
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    std::fs::write(dir.path().join("ca.crt"), ca_cert.pem()).unwrap();
    std::fs::write(dir.path().join("ca.key"), ca_key.serialize_pem()).unwrap();
    let ca = Ca::load(dir.path()).unwrap();

    let pem = request("system:node:n1", &["system:nodes"], vec![dns("n1")]);
    let der_req = {
        use base64::Engine;
        let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        base64::engine::general_purpose::STANDARD.decode(b64).unwrap()
    };
    let (_, parsed_req) = x509_parser::certification_request::X509CertificationRequest::from_der(&der_req).unwrap();
    let cert_pem = ca.sign(&csr(&pem, KUBELET_SERVING, SERVING, "system:node:n1", NODES)).unwrap();
    let (_, p) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).unwrap();
    let cert = p.parse_x509().unwrap();
    assert_eq!(cert.subject().iter_common_name().next().unwrap().as_str().unwrap(), "system:node:n1");
    assert_eq!(cert.issuer().iter_common_name().next().unwrap().as_str().unwrap(), "test-ca");
    assert_eq!(cert.public_key().raw, parsed_req.certification_request_info.subject_pki.raw);
    let (_, ca_parsed) = x509_parser::parse_x509_certificate(ca_cert.der()).unwrap();
    cert.verify_signature(Some(ca_parsed.public_key())).unwrap();
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && !eku.client_auth);
    assert!(!cert.is_ca());
    let life = cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
    assert!((364 * 86400..=367 * 86400).contains(&life), "lifetime {life}s");

    // Usages outside the signer's set are refused even if someone approved them.
    assert!(ca.sign(&csr(&pem, KUBELET_SERVING, &["client auth"], "system:node:n1", NODES)).is_err());
}
