//! TLS termination: certificates from `kubernetes.io/tls` Secrets chosen by SNI, with a
//! self-signed fallback made at startup (ingress-nginx's "fake certificate").

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::matcher::normalize_host;
use super::routes::Routes;
use super::IngressError;

/// Certificates by SNI name: exact names, and wildcards keyed by the suffix after `*.`.
#[derive(Debug, Default)]
pub(crate) struct CertTable {
    exact: HashMap<String, Arc<CertifiedKey>>,
    wildcard: HashMap<String, Arc<CertifiedKey>>,
}

impl CertTable {
    /// Adds `host` (lowercase; `*.suffix` for a wildcard). Returns false when the host already
    /// has a certificate, which is kept: older Ingresses win.
    pub(crate) fn insert(&mut self, host: &str, key: Arc<CertifiedKey>) -> bool {
        let map = match host.strip_prefix("*.") {
            Some(suffix) => (&mut self.wildcard, suffix),
            None => (&mut self.exact, host),
        };
        match map.0.entry(map.1.to_string()) {
            std::collections::hash_map::Entry::Occupied(e) => Arc::ptr_eq(e.get(), &key),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(key);
                true
            }
        }
    }

    /// The certificate for an SNI name: exact first, then a wildcard one label up.
    pub(crate) fn get(&self, name: &str) -> Option<&Arc<CertifiedKey>> {
        self.exact.get(name).or_else(|| {
            let (_, suffix) = name.split_once('.')?;
            self.wildcard.get(suffix)
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.exact.len() + self.wildcard.len()
    }
}

/// The crypto provider used everywhere here; explicit so that no process-wide default needs to
/// be installed by the binary.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Parses a PEM chain and key (as found in `tls.crt` / `tls.key`) and checks that they belong
/// together. `what` names the source for the error.
pub(crate) fn certified_key_from_pem(
    what: &str,
    crt: &[u8],
    key: &[u8],
) -> Result<CertifiedKey, IngressError> {
    let err = |reason: String| IngressError::Certificate {
        what: what.to_string(),
        reason,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(crt)
        .collect::<Result<_, _>>()
        .map_err(|e| err(format!("tls.crt: {e}")))?;
    if chain.is_empty() {
        return Err(err("tls.crt holds no certificate".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| err(format!("tls.key: {e}")))?;
    CertifiedKey::from_der(chain, key, &provider()).map_err(|e| err(e.to_string()))
}

/// Generates the fallback certificate served when no Secret matches the SNI name (or there is
/// no SNI); clients will not trust it, which is the point: it only keeps the handshake going.
pub(crate) fn default_certificate() -> Result<CertifiedKey, IngressError> {
    let mut params = rcgen::CertificateParams::new(vec!["skiff-ingress.invalid".to_string()])?;
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        "skiff ingress default certificate",
    );
    let key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    let key_der =
        PrivateKeyDer::try_from(key.serialize_der()).map_err(|e| IngressError::Certificate {
            what: "default".into(),
            reason: e.to_string(),
        })?;
    CertifiedKey::from_der(vec![cert.der().clone()], key_der, &provider()).map_err(|e| {
        IngressError::Certificate {
            what: "default".into(),
            reason: e.to_string(),
        }
    })
}

/// Picks the certificate for each handshake from the current [`Routes`] snapshot, so that a
/// route update changes certificates without rebuilding the rustls configuration.
#[derive(Debug)]
pub(crate) struct SniResolver {
    routes: Arc<RwLock<Routes>>,
    default: Arc<CertifiedKey>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if let Some(name) = hello.server_name() {
            let name = normalize_host(name);
            let routes = self.routes.read().unwrap_or_else(|p| p.into_inner());
            if let Some(ck) = routes.certs.get(&name) {
                return Some(ck.clone());
            }
        }
        Some(self.default.clone())
    }
}

/// The server configuration for the https listener: SNI resolver, ALPN `h2` then `http/1.1`.
pub(crate) fn server_config(
    routes: Arc<RwLock<Routes>>,
    default: CertifiedKey,
) -> Result<ServerConfig, IngressError> {
    let resolver = SniResolver {
        routes,
        default: Arc::new(default),
    };
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(names: &[&str]) -> (String, String) {
        let ck = rcgen::generate_simple_self_signed(
            names.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
        .unwrap();
        (ck.cert.pem(), ck.signing_key.serialize_pem())
    }

    #[test]
    fn pem_pairs_load_and_mismatches_are_rejected() {
        let (c1, k1) = leaf(&["a.test"]);
        let (_, k2) = leaf(&["b.test"]);
        certified_key_from_pem("t", c1.as_bytes(), k1.as_bytes()).unwrap();
        let e = certified_key_from_pem("secret ns/x", c1.as_bytes(), k2.as_bytes()).unwrap_err();
        assert!(e.to_string().starts_with("certificate secret ns/x:"), "{e}");
        assert!(certified_key_from_pem("t", b"junk", k1.as_bytes()).is_err());
        assert!(default_certificate().is_ok());
    }

    #[test]
    fn table_prefers_exact_then_one_label_wildcard() {
        let (c, k) = leaf(&["x"]);
        let a = Arc::new(certified_key_from_pem("a", c.as_bytes(), k.as_bytes()).unwrap());
        let w = Arc::new(certified_key_from_pem("w", c.as_bytes(), k.as_bytes()).unwrap());
        let mut t = CertTable::default();
        assert!(t.insert("a.example.com", a.clone()));
        assert!(t.insert("*.example.com", w.clone()));
        assert!(!t.insert("a.example.com", w.clone()));
        assert!(Arc::ptr_eq(t.get("a.example.com").unwrap(), &a));
        assert!(Arc::ptr_eq(t.get("b.example.com").unwrap(), &w));
        assert!(t.get("x.b.example.com").is_none());
        assert!(t.get("example.com").is_none());
    }
}
