//! CertificateSigningRequests of nodes: approval and signing, as upstream's csrapproving
//! and csrsigning controllers.
//!
//! Approval (automatic, only for kubelets):
//! - `kubernetes.io/kube-apiserver-client-kubelet`: the request is a node client certificate
//!   (CN `system:node:<name>`, O exactly `system:nodes`, no SANs, usages digital signature +
//!   client auth, optionally key encipherment) asked for by a bootstrap token
//!   (`system:bootstrappers`, a new node) or by that same node (`system:nodes`, a renewal).
//! - `kubernetes.io/kubelet-serving`: a serving certificate whose CN is the requesting node's
//!   own name, O `system:nodes`, DNS/IP SANs only, usages server auth (+ digital signature,
//!   key encipherment). Upstream leaves these to a separate approver; we approve them because
//!   the node's own identity asks, but we do not check that the IPs belong to the node.
//!
//! Anything else waits for a human (`kubectl certificate approve`). Approved requests for the
//! two kubelet signers and `kubernetes.io/kube-apiserver-client` are signed with the cluster
//! CA (`<data-dir>/tls/ca.{crt,key}`) for one year (or `spec.expirationSeconds` if shorter).
//! Usages come from `spec.usages`, never from the request's own extensions.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::ResourceExt;
use serde_json::json;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

use crate::runtime::Error;

/// Signer of kubelet client certificates.
pub const CLIENT_KUBELET: &str = "kubernetes.io/kube-apiserver-client-kubelet";
/// Signer of kubelet serving certificates.
pub const KUBELET_SERVING: &str = "kubernetes.io/kubelet-serving";
/// Signer of general client certificates (approved by hand only).
pub const APISERVER_CLIENT: &str = "kubernetes.io/kube-apiserver-client";
const ONE_YEAR_SECS: i64 = 365 * 24 * 3600;

/// What the request (PKCS#10) asks for.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Requested {
    /// Subject common name.
    pub common_name: String,
    /// Subject organizations.
    pub organizations: Vec<String>,
    /// DNS SANs.
    pub dns: Vec<String>,
    /// IP SANs.
    pub ips: usize,
    /// Email or URI SANs (never allowed for kubelets).
    pub other_sans: usize,
}

/// Parse and signature-check a PEM certificate request.
pub fn parse_request(pem: &[u8]) -> Result<Requested, String> {
    let text = std::str::from_utf8(pem).map_err(|_| "request is not PEM text".to_string())?;
    let der = text
        .split("-----BEGIN CERTIFICATE REQUEST-----")
        .nth(1)
        .and_then(|r| r.split("-----END CERTIFICATE REQUEST-----").next())
        .ok_or("no CERTIFICATE REQUEST block")?;
    use base64::Engine;
    let der: String = der.chars().filter(|c| !c.is_whitespace()).collect();
    let der = base64::engine::general_purpose::STANDARD.decode(der).map_err(|e| format!("request base64: {e}"))?;
    let (_, csr) = x509_parser::certification_request::X509CertificationRequest::from_der(&der).map_err(|e| format!("request: {e}"))?;
    // Proves the requester holds the key, so nobody can get a certificate for another's key.
    csr.verify_signature().map_err(|e| format!("request signature: {e}"))?;
    let subject = &csr.certification_request_info.subject;
    let mut out = Requested {
        common_name: subject.iter_common_name().next().and_then(|c| c.as_str().ok()).unwrap_or_default().to_string(),
        organizations: subject.iter_organization().filter_map(|o| o.as_str().ok().map(str::to_string)).collect(),
        ..Default::default()
    };
    for ext in csr.requested_extensions().into_iter().flatten() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext {
            for name in &san.general_names {
                match name {
                    GeneralName::DNSName(d) => out.dns.push(d.to_string()),
                    GeneralName::IPAddress(_) => out.ips += 1,
                    _ => out.other_sans += 1,
                }
            }
        }
    }
    Ok(out)
}

fn usage_set(csr: &CertificateSigningRequest) -> BTreeSet<String> {
    csr.spec.usages.clone().unwrap_or_default().into_iter().collect()
}

fn subset(have: &BTreeSet<String>, allowed: &[&str]) -> bool {
    have.iter().all(|u| allowed.contains(&u.as_str()))
}

fn requester_in(csr: &CertificateSigningRequest, group: &str) -> bool {
    csr.spec.groups.as_ref().is_some_and(|g| g.iter().any(|x| x == group))
}

/// Why a request is approved automatically (`Ok(message)`), or why not (`Err`).
pub fn auto_approval(csr: &CertificateSigningRequest) -> Result<&'static str, String> {
    let req = parse_request(&csr.spec.request.0)?;
    let usages = usage_set(csr);
    let node_subject = req.common_name.starts_with("system:node:")
        && req.common_name.len() > "system:node:".len()
        && req.organizations == ["system:nodes"];
    if !node_subject {
        return Err("subject is not system:node:<name> in organization system:nodes".into());
    }
    let requester = csr.spec.username.clone().unwrap_or_default();
    match csr.spec.signer_name.as_str() {
        CLIENT_KUBELET => {
            if !req.dns.is_empty() || req.ips > 0 || req.other_sans > 0 {
                return Err("a node client certificate carries no subject alternative names".into());
            }
            if !usages.contains("client auth") || !usages.contains("digital signature") || !subset(&usages, &["client auth", "digital signature", "key encipherment"]) {
                return Err(format!("usages {usages:?} are not those of a node client certificate"));
            }
            if requester == req.common_name && requester_in(csr, "system:nodes") {
                return Ok("Auto approving self kubelet client certificate after SubjectAccessReview.");
            }
            if requester_in(csr, "system:bootstrappers") {
                return Ok("Auto approving kubelet client certificate after SubjectAccessReview.");
            }
            Err(format!("requester {requester:?} is neither a bootstrap token nor the node itself"))
        }
        KUBELET_SERVING => {
            if requester != req.common_name || !requester_in(csr, "system:nodes") {
                return Err(format!("requester {requester:?} is not the node {:?}", req.common_name));
            }
            if req.other_sans > 0 || (req.dns.is_empty() && req.ips == 0) {
                return Err("a kubelet serving certificate needs DNS or IP names and nothing else".into());
            }
            if !usages.contains("server auth") || !subset(&usages, &["server auth", "digital signature", "key encipherment"]) {
                return Err(format!("usages {usages:?} are not those of a kubelet serving certificate"));
            }
            Ok("Auto approving kubelet serving certificate requested by the node itself.")
        }
        other => Err(format!("signer {other} is not approved automatically")),
    }
}

fn has_condition(csr: &CertificateSigningRequest, kind: &str) -> bool {
    csr.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|c| c.iter().any(|c| c.type_ == kind && c.status == "True"))
}

/// The cluster CA, loaded once.
pub struct Ca {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Ca {
    /// Load `ca.crt` and `ca.key` from `tls_dir`.
    pub fn load(tls_dir: &Path) -> Result<Self, String> {
        let read = |n: &str| std::fs::read_to_string(tls_dir.join(n)).map_err(|e| format!("{}: {e}", tls_dir.join(n).display()));
        let key = rcgen::KeyPair::from_pem(&read("ca.key")?).map_err(|e| format!("ca.key: {e}"))?;
        let issuer = rcgen::Issuer::from_ca_cert_pem(&read("ca.crt")?, key).map_err(|e| format!("ca.crt: {e}"))?;
        Ok(Self { issuer })
    }

    /// Sign an approved request: subject and SANs from the request, usages from `spec.usages`.
    pub fn sign(&self, csr: &CertificateSigningRequest) -> Result<String, String> {
        let text = std::str::from_utf8(&csr.spec.request.0).map_err(|_| "request is not PEM text".to_string())?;
        let mut requested = rcgen::CertificateSigningRequestParams::from_pem(text).map_err(|e| format!("request: {e}"))?;
        let usages = usage_set(csr);
        let allowed: &[&str] = match csr.spec.signer_name.as_str() {
            KUBELET_SERVING => &["server auth", "digital signature", "key encipherment"],
            _ => &["client auth", "digital signature", "key encipherment"],
        };
        if !subset(&usages, allowed) {
            return Err(format!("usages {usages:?} are not allowed for signer {}", csr.spec.signer_name));
        }
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = requested.params.distinguished_name.clone();
        params.subject_alt_names = requested.params.subject_alt_names.clone();
        params.is_ca = rcgen::IsCa::ExplicitNoCa;
        params.use_authority_key_identifier_extension = true;
        for u in &usages {
            match u.as_str() {
                "digital signature" => params.key_usages.push(rcgen::KeyUsagePurpose::DigitalSignature),
                "key encipherment" => params.key_usages.push(rcgen::KeyUsagePurpose::KeyEncipherment),
                "client auth" => params.extended_key_usages.push(rcgen::ExtendedKeyUsagePurpose::ClientAuth),
                "server auth" => params.extended_key_usages.push(rcgen::ExtendedKeyUsagePurpose::ServerAuth),
                _ => {}
            }
        }
        let mut serial = [0u8; 16];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut serial).map_err(|_| "random serial".to_string())?;
        serial[0] &= 0x7f;
        params.serial_number = Some(serial.to_vec().into());
        // As upstream: at most a year, shorter if asked, at least ten minutes.
        let life = csr.spec.expiration_seconds.map(|s| (s as i64).clamp(600, ONE_YEAR_SECS)).unwrap_or(ONE_YEAR_SECS);
        let now = chrono::Utc::now();
        // Dates only (rcgen's helper); starting a day early tolerates clock skew between nodes.
        let ymd = |t: chrono::DateTime<chrono::Utc>| {
            use chrono::Datelike;
            rcgen::date_time_ymd(t.year(), t.month() as u8, t.day() as u8)
        };
        params.not_before = ymd(now - chrono::Duration::days(1));
        params.not_after = ymd(now + chrono::Duration::seconds(life));
        // Only the requested key, subject and names survive from the request.
        requested.params = params;
        requested.signed_by(&self.issuer).map(|c| c.pem()).map_err(|e| format!("signing: {e}"))
    }
}

struct Ctx {
    client: kube::Client,
    ca: Option<Ca>,
}

/// Run until aborted. Without a CA (`tls_dir` lacks `ca.key`) requests are approved but not
/// signed, and a warning says why.
pub async fn run(client: kube::Client, tls_dir: Option<std::path::PathBuf>) {
    let ca = match tls_dir.as_deref().map(Ca::load) {
        Some(Ok(ca)) => Some(ca),
        Some(Err(e)) => {
            tracing::warn!(error = %e, "cluster CA not readable: certificate signing requests will not be signed");
            None
        }
        None => None,
    };
    let ctx = Arc::new(Ctx { client: client.clone(), ca });
    Controller::new(Api::<CertificateSigningRequest>::all(client), watcher::Config::default())
        .run(reconcile, crate::runtime::error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

async fn reconcile(csr: Arc<CertificateSigningRequest>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let name = csr.name_any();
    let api: Api<CertificateSigningRequest> = Api::all(ctx.client.clone());
    let issued = csr.status.as_ref().and_then(|s| s.certificate.as_ref()).is_some_and(|c| !c.0.is_empty());
    if issued || has_condition(&csr, "Denied") || has_condition(&csr, "Failed") {
        return Ok(Action::await_change());
    }
    let mut conditions = csr.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now());
    if !has_condition(&csr, "Approved") {
        match auto_approval(&csr) {
            Ok(message) => {
                conditions.push(k8s_openapi::api::certificates::v1::CertificateSigningRequestCondition {
                    type_: "Approved".into(),
                    status: "True".into(),
                    reason: Some("AutoApproved".into()),
                    message: Some(message.into()),
                    last_update_time: Some(now.clone()),
                    last_transition_time: Some(now),
                });
                let patch = json!({"status": {"conditions": conditions}});
                api.patch_approval(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
                tracing::info!(csr = %name, signer = %csr.spec.signer_name, "approved certificate signing request");
            }
            Err(why) => tracing::debug!(csr = %name, %why, "not approving automatically"),
        }
        // The approval's own watch event brings the request back for signing.
        return Ok(Action::await_change());
    }
    if !matches!(csr.spec.signer_name.as_str(), CLIENT_KUBELET | KUBELET_SERVING | APISERVER_CLIENT) {
        return Ok(Action::await_change());
    }
    let Some(ca) = &ctx.ca else { return Ok(Action::await_change()) };
    let status = match ca.sign(&csr) {
        Ok(pem) => {
            tracing::info!(csr = %name, "signed certificate signing request");
            use base64::Engine;
            json!({"status": {"certificate": base64::engine::general_purpose::STANDARD.encode(pem)}})
        }
        Err(why) => {
            tracing::warn!(csr = %name, %why, "certificate signing request cannot be signed");
            conditions.push(k8s_openapi::api::certificates::v1::CertificateSigningRequestCondition {
                type_: "Failed".into(),
                status: "True".into(),
                reason: Some("SigningError".into()),
                message: Some(why),
                last_update_time: Some(now.clone()),
                last_transition_time: Some(now),
            });
            json!({"status": {"conditions": conditions}})
        }
    };
    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status)).await?;
    Ok(Action::await_change())
}

#[cfg(test)]
#[path = "csr_tests.rs"]
mod tests;
