//! Node TLS bootstrap against a real `skiff server --disable-agent`: a token from
//! `skiff token create`'s function, discovery of the CA through the signed cluster-info,
//! client and serving certificates through auto-approved CSRs, the resulting identity, reuse
//! on restart, and refusal of wrong tokens, wrong CA pins and expired tokens.

mod common;

#[path = "../src/token.rs"]
#[allow(dead_code)]
mod token;

use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Secret};
use kube::api::{Api, ListParams, PostParams};
use skiff_kubelet::bootstrap::{self, BootstrapError, BootstrapToken, JoinOptions};
use skiff_testkit::Cluster;

fn options(cluster: &Cluster, token: &str, pin: Option<String>, dir: &Path, node: &str) -> JoinOptions {
    JoinOptions {
        server: format!("https://127.0.0.1:{}", cluster.port),
        token: token.to_string(),
        ca_pin: pin,
        data_dir: dir.to_path_buf(),
        node_name: node.to_string(),
        node_ips: vec!["127.0.0.1".parse().unwrap()],
        discovery_timeout: Duration::from_secs(30),
        csr_timeout: Duration::from_secs(60),
    }
}

fn cluster_ca(cluster: &Cluster) -> String {
    std::fs::read_to_string(cluster.data_dir().join("tls").join("ca.crt")).expect("cluster CA")
}

async fn client_from(path: &Path) -> Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(path)?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    Ok(kube::Client::try_from(cfg)?)
}

/// A client authenticating with a bearer token, trusting the cluster CA.
async fn token_client(cluster: &Cluster, token: &str) -> Result<kube::Client> {
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD.encode(cluster_ca(cluster));
    let yaml = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority-data: {ca}\n    server: https://127.0.0.1:{}\n  name: c\ncontexts:\n- context:\n    cluster: c\n    user: u\n  name: c\ncurrent-context: c\nusers:\n- name: u\n  user:\n    token: {token}\n",
        cluster.port
    );
    let cfg = kube::Config::from_custom_kubeconfig(kube::config::Kubeconfig::from_yaml(&yaml)?, &Default::default()).await?;
    Ok(kube::Client::try_from(cfg)?)
}

async fn whoami(client: kube::Client) -> Result<(String, Vec<String>)> {
    let review: SelfSubjectReview = serde_json::from_value(serde_json::json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview", "metadata": {}}))?;
    let got = Api::<SelfSubjectReview>::all(client).create(&PostParams::default(), &review).await?;
    let info = got.status.and_then(|s| s.user_info).unwrap_or_default();
    Ok((info.username.unwrap_or_default(), info.groups.unwrap_or_default()))
}

/// Verify `cert_pem` as a TLS server certificate for `name` against `ca_pem`, as the API
/// server does when it calls the kubelet (chain, name, server-auth usage).
fn verify_serving(ca_pem: &str, cert_pem: &str, name: &str) -> Result<()> {
    use tokio_rustls::rustls;
    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca_pem.as_bytes())?)?;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(std::sync::Arc::new(roots), provider).build()?;
    let cert = CertificateDer::from_pem_slice(cert_pem.as_bytes())?;
    verifier.verify_server_cert(&cert, &[], &ServerName::try_from(name.to_string())?, &[], UnixTime::now())?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_joins_with_a_token_and_gets_node_certificates() -> Result<()> {
    let cluster = Cluster::start(common::skiff_binary())?;
    let dir = tempfile::tempdir()?;
    let token = token::create_token(&cluster.kubeconfig(), Duration::from_secs(3600)).await?;
    assert!(BootstrapToken::parse(&token).is_ok(), "token {token} is not <id>.<secret>");
    let pin = token::ca_pin(&cluster_ca(&cluster))?;
    assert!(pin.starts_with("sha256:") && pin.len() == 71, "pin {pin}");

    // The bootstrap token itself: a bootstrapper that may handle CSRs and nothing else.
    let (user, groups) = whoami(token_client(&cluster, &token).await?).await?;
    assert_eq!(user, format!("system:bootstrap:{}", &token[..6]));
    assert!(groups.iter().any(|g| g == "system:bootstrappers"), "{groups:?}");
    let boot = token_client(&cluster, &token).await?;
    Api::<CertificateSigningRequest>::all(boot.clone()).list(&ListParams::default()).await?;
    let denied = Api::<Secret>::namespaced(boot, "kube-system").list(&ListParams::default()).await.unwrap_err();
    assert_eq!(common::api_code(&denied), Some(403), "{denied}");

    let creds = bootstrap::join(options(&cluster, &token, Some(pin.clone()), dir.path(), "joiner-1")).await?;
    assert_eq!(creds.kubeconfig_path, dir.path().join("kubelet.kubeconfig"));
    assert_eq!(creds.ca_pem.trim(), cluster_ca(&cluster).trim());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&creds.kubeconfig_path)?.permissions().mode() & 0o777, 0o600);

    // The new identity is the node's, and it can do what a kubelet does (but not more).
    let node_client = client_from(&creds.kubeconfig_path).await?;
    let (user, groups) = whoami(node_client.clone()).await?;
    assert_eq!(user, "system:node:joiner-1");
    assert!(groups.iter().any(|g| g == "system:nodes"), "{groups:?}");
    let node: Node = serde_json::from_value(serde_json::json!({"metadata": {"name": "joiner-1"}}))?;
    Api::<Node>::all(node_client.clone()).create(&PostParams::default(), &node).await?;
    let denied = Api::<k8s_openapi::api::apps::v1::Deployment>::all(node_client).list(&ListParams::default()).await.unwrap_err();
    assert_eq!(common::api_code(&denied), Some(403), "{denied}");

    // The serving certificate names the node and its address and is signed by the cluster CA.
    for name in ["joiner-1", "127.0.0.1"] {
        verify_serving(&creds.ca_pem, &creds.serving_cert_pem, name)?;
    }
    assert!(verify_serving(&creds.ca_pem, &creds.serving_cert_pem, "other-node").is_err());
    assert!(creds.serving_key_pem.contains("PRIVATE KEY"));

    // Both CSRs are approved and issued, as kubectl shows them.
    let csrs = cluster.ok(&["get", "csr"])?;
    let issued: Vec<&str> = csrs.lines().filter(|l| l.contains("Approved,Issued")).collect();
    assert_eq!(issued.len(), 2, "kubectl get csr:\n{csrs}");
    assert!(issued.iter().any(|l| l.contains("kubernetes.io/kube-apiserver-client-kubelet") && l.contains("system:bootstrap:")), "{csrs}");
    assert!(issued.iter().any(|l| l.contains("kubernetes.io/kubelet-serving") && l.contains("system:node:joiner-1")), "{csrs}");

    // A restart reuses the credentials: no token needed, nothing new requested.
    let again = bootstrap::join(options(&cluster, "not-a-token", None, dir.path(), "joiner-1")).await?;
    assert_eq!(again.serving_cert_pem, creds.serving_cert_pem);
    let count = Api::<CertificateSigningRequest>::all(common::kube_client(&cluster, None).await?).list(&ListParams::default()).await?.items.len();
    assert_eq!(count, 2);
    let rotation = bootstrap::rotate_if_needed(&options(&cluster, "", None, dir.path(), "joiner-1")).await?;
    assert!(!rotation.client_rotated && !rotation.serving_rotated, "fresh certificates must not rotate");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_tokens_pins_and_expired_tokens_are_refused() -> Result<()> {
    let cluster = Cluster::start(common::skiff_binary())?;
    let admin = common::kube_client(&cluster, None).await?;
    let token = token::create_token(&cluster.kubeconfig(), Duration::from_secs(3600)).await?;
    let pin = token::ca_pin(&cluster_ca(&cluster))?;
    let dir = tempfile::tempdir()?;
    let quick = |tok: &str, pin: Option<String>| {
        let mut o = options(&cluster, tok, pin, dir.path(), "joiner-2");
        o.discovery_timeout = Duration::from_secs(3);
        o
    };

    // Right id, wrong secret: the signature of cluster-info does not verify.
    let wrong_secret = format!("{}.{}", &token[..6], "zzzzzzzzzzzzzzzz");
    let err = bootstrap::join(quick(&wrong_secret, None)).await.unwrap_err();
    assert!(matches!(err, BootstrapError::BadSignature { .. }), "{err}");
    assert!(err.to_string().contains("wrong token secret"), "{err}");

    // Unknown id: nothing is signed for it.
    let err = bootstrap::join(quick("qqqqqq.0123456789abcdef", None)).await.unwrap_err();
    assert!(matches!(err, BootstrapError::NoSignature { .. }), "{err}");

    // Not a token at all.
    let err = bootstrap::join(quick("hello", None)).await.unwrap_err();
    assert!(matches!(err, BootstrapError::InvalidToken(_)), "{err}");

    // The right token but a pin of another CA.
    let other_key = rcgen::KeyPair::generate()?;
    let mut other = rcgen::CertificateParams::default();
    other.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let other_pin = token::ca_pin(&other.self_signed(&other_key)?.pem())?;
    let err = bootstrap::join(quick(&token, Some(other_pin))).await.unwrap_err();
    assert!(matches!(err, BootstrapError::PinMismatch { .. }), "{err}");
    assert!(err.to_string().contains(&pin), "the message names the server's pin: {err}");
    assert!(!dir.path().join("kubelet.kubeconfig").exists(), "nothing is written on refusal");

    // An expired token: not signed, refused by the authenticator, and deleted by the cleaner.
    let expired = BootstrapToken::generate();
    let secret = expired.to_secret(Some(chrono::Utc::now() - chrono::Duration::minutes(1)), "expired");
    Api::<Secret>::namespaced(admin.clone(), "kube-system").create(&PostParams::default(), &secret).await?;
    let err = bootstrap::join(quick(&expired.to_string(), None)).await.unwrap_err();
    assert!(matches!(err, BootstrapError::NoSignature { .. }), "{err}");
    let refused = Api::<CertificateSigningRequest>::all(token_client(&cluster, &expired.to_string()).await?)
        .list(&ListParams::default())
        .await
        .unwrap_err();
    assert_eq!(common::api_code(&refused), Some(401), "{refused}");
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), "kube-system");
    let start = std::time::Instant::now();
    while secrets.get_opt(&expired.secret_name()).await?.is_some() {
        assert!(start.elapsed() < Duration::from_secs(20), "expired token secret was not cleaned up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Anonymous clients may read cluster-info and nothing else.
    let mut cfg = kube::Config::new(format!("https://127.0.0.1:{}", cluster.port).parse()?);
    cfg.accept_invalid_certs = true;
    let anon = kube::Client::try_from(cfg)?;
    let public: Api<ConfigMap> = Api::namespaced(anon, "kube-public");
    let info = public.get("cluster-info").await?;
    assert!(info.data.unwrap_or_default().contains_key(&format!("jws-kubeconfig-{}", &token[..6])));
    let err = public.list(&ListParams::default()).await.unwrap_err();
    assert_eq!(common::api_code(&err), Some(401), "{err}");

    // The good token still works after all that.
    let creds = bootstrap::join(options(&cluster, &token, Some(pin), dir.path(), "joiner-2")).await?;
    let (user, _) = whoami(client_from(&creds.kubeconfig_path).await?).await?;
    assert_eq!(user, "system:node:joiner-2");
    Ok(())
}
