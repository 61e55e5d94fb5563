//! The streaming server on its own: who may call it, and the WebSocket v4 exec protocol and
//! attach refusal spoken by a hand-written client.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use skiff_kubelet::streaming::websocket::{encode_frame, opcode, read_frame};
use skiff_kubelet::streaming::{self, local::LocalBackend};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

struct Pki {
    ca_pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Pki {
    fn new() -> Self {
        let mut p = rcgen::CertificateParams::new(vec![]).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.distinguished_name.push(rcgen::DnType::CommonName, "test-ca");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = p.self_signed(&key).unwrap();
        let ca_pem = cert.pem();
        let issuer = rcgen::Issuer::from_ca_cert_pem(&ca_pem, key).unwrap();
        Self { ca_pem, issuer }
    }

    fn leaf(&self, cn: &str, orgs: &[&str], server: bool) -> (String, String) {
        let mut p = rcgen::CertificateParams::new(if server { vec!["127.0.0.1".to_string()] } else { vec![] }).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        for o in orgs {
            p.distinguished_name.push(rcgen::DnType::OrganizationName, *o);
        }
        p.extended_key_usages.push(if server { rcgen::ExtendedKeyUsagePurpose::ServerAuth } else { rcgen::ExtendedKeyUsagePurpose::ClientAuth });
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

async fn start(pki: &Pki) -> (u16, tokio::sync::watch::Sender<bool>) {
    let (cert, key) = pki.leaf("n1", &[], true);
    let tls = Arc::new(streaming::tls_config(&cert, &key, &pki.ca_pem).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::watch::channel(false);
    let backend = Arc::new(LocalBackend::new(std::env::temp_dir().join("no-logs-here")));
    tokio::spawn(streaming::serve(listener, tls, backend, rx));
    (port, tx)
}

type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

async fn connect(port: u16, ca_pem: &str, identity: Option<(String, String)>) -> std::io::Result<Tls> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let b = rustls::ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions().unwrap().with_root_certificates(roots);
    let cfg = match identity {
        Some((c, k)) => b
            .with_client_auth_cert(vec![CertificateDer::from_pem_slice(c.as_bytes()).unwrap()], PrivateKeyDer::from_pem_slice(k.as_bytes()).unwrap())
            .unwrap(),
        None => b.with_no_client_auth(),
    };
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let name = ServerName::IpAddress(std::net::IpAddr::from([127, 0, 0, 1]).into());
    tokio_rustls::TlsConnector::from(Arc::new(cfg)).connect(name, tcp).await
}

/// Send a request and return the status line and headers; the stream stays usable.
async fn request(tls: &mut BufReader<Tls>, head: &str) -> std::io::Result<(u16, String)> {
    tls.get_mut().write_all(head.as_bytes()).await?;
    let mut status = String::new();
    tls.read_line(&mut status).await?;
    let code = status.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let mut headers = String::new();
    loop {
        let mut l = String::new();
        if tls.read_line(&mut l).await? == 0 || l == "\r\n" {
            break;
        }
        headers.push_str(&l);
    }
    Ok((code, headers))
}

#[tokio::test]
async fn only_the_api_server_identity_gets_in() {
    let pki = Pki::new();
    let (port, _stop) = start(&pki).await;
    let get = "GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n";
    let mut ok = BufReader::new(connect(port, &pki.ca_pem, Some(pki.leaf("kube-apiserver-kubelet-client", &[], false))).await.unwrap());
    assert_eq!(request(&mut ok, get).await.unwrap().0, 200);
    let mut admin = BufReader::new(connect(port, &pki.ca_pem, Some(pki.leaf("system:admin", &["system:masters"], false))).await.unwrap());
    assert_eq!(request(&mut admin, get).await.unwrap().0, 200);
    let mut node = BufReader::new(connect(port, &pki.ca_pem, Some(pki.leaf("system:node:n2", &["system:nodes"], false))).await.unwrap());
    assert_eq!(request(&mut node, get).await.unwrap().0, 403);
    // Without a certificate, or with one from another CA, the handshake is refused (TLS 1.3
    // reports it on first use of the connection).
    let other = Pki::new();
    for identity in [None, Some(other.leaf("kube-apiserver-kubelet-client", &[], false))] {
        let refused = match connect(port, &pki.ca_pem, identity).await {
            Err(_) => true,
            Ok(t) => request(&mut BufReader::new(t), get).await.map(|(c, _)| c == 0).unwrap_or(true),
        };
        assert!(refused);
    }
}

async fn ws_exec(port: u16, pki: &Pki, path: &str, protocol: &str) -> (String, Vec<(u8, Vec<u8>)>) {
    let mut tls = BufReader::new(connect(port, &pki.ca_pem, Some(pki.leaf("kube-apiserver-kubelet-client", &[], false))).await.unwrap());
    let head = format!(
        "GET {path} HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-version: 13\r\n\
         sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-protocol: {protocol}\r\n\r\n"
    );
    let (code, headers) = request(&mut tls, &head).await.unwrap();
    assert_eq!(code, 101, "{headers}");
    assert!(headers.to_ascii_lowercase().contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="), "{headers}");
    let mut msgs = Vec::new();
    loop {
        let f = read_frame(&mut tls, 1 << 20).await.unwrap().expect("close frame before end");
        if f.opcode == opcode::CLOSE {
            // Answer the close as a client would.
            let _ = tls.get_mut().write_all(&encode_frame(opcode::CLOSE, &f.payload, Some([1, 2, 3, 4]))).await;
            break;
        }
        msgs.push((f.payload[0], f.payload[1..].to_vec()));
    }
    let mut rest = Vec::new();
    let _ = tls.read_to_end(&mut rest).await;
    (headers, msgs)
}

#[tokio::test]
async fn websocket_v4_exec_reports_exit_status_and_attach_is_refused() {
    let pki = Pki::new();
    let (port, _stop) = start(&pki).await;
    let (headers, msgs) = ws_exec(port, &pki, "/exec/ns/p/c?command=sh&command=-c&command=echo+hi%3B+exit+2&stdout=1&stderr=1", "v4.channel.k8s.io").await;
    assert!(headers.contains("v4.channel.k8s.io"));
    assert_eq!(msgs[0], (1, vec![]), "ready signal on the first output channel");
    let stdout: Vec<u8> = msgs.iter().filter(|(c, _)| *c == 1).flat_map(|(_, d)| d.clone()).collect();
    assert_eq!(stdout, b"hi\n");
    let status: Vec<&Vec<u8>> = msgs.iter().filter(|(c, _)| *c == 3).map(|(_, d)| d).collect();
    assert_eq!(status.len(), 1);
    let v: serde_json::Value = serde_json::from_slice(status[0]).unwrap();
    assert_eq!((v["status"].as_str(), v["reason"].as_str()), (Some("Failure"), Some("NonZeroExitCode")));
    assert_eq!(v["details"]["causes"][0]["message"], "2");

    let (_, msgs) = ws_exec(port, &pki, "/attach/ns/p/c?stdout=1", "v5.channel.k8s.io").await;
    let status = msgs.iter().find(|(c, _)| *c == 3).expect("status on the error channel");
    assert!(String::from_utf8_lossy(&status.1).contains("attach is not supported"), "{:?}", String::from_utf8_lossy(&status.1));

    // Plain requests and unknown protocols are refused before any upgrade.
    let mut tls = BufReader::new(connect(port, &pki.ca_pem, Some(pki.leaf("kube-apiserver-kubelet-client", &[], false))).await.unwrap());
    assert_eq!(request(&mut tls, "GET /exec/ns/p/c?command=true&stdout=1 HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap().0, 400);
    let mut tls = BufReader::new(connect(port, &pki.ca_pem, Some(pki.leaf("kube-apiserver-kubelet-client", &[], false))).await.unwrap());
    assert_eq!(request(&mut tls, "GET /containerLogs/ns/p/c HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap().0, 404);
}
