//! Streaming subresources proxied to the kubelet of the pod's node: `pods/log`, `pods/exec`,
//! `pods/attach`, `pods/portforward`, and `nodes/proxy`.
//!
//! The API server dials the kubelet (`status.daemonEndpoints.kubeletEndpoint.Port` on the
//! node's InternalIP) over TLS, verifying its serving certificate against the cluster CA and
//! presenting the `kube-apiserver-kubelet-client` certificate, then forwards the request.
//! Upgrades (WebSocket, SPDY) are answered with the kubelet's 101 and its headers, after which
//! bytes are copied both ways untouched: the kubelet speaks every protocol the clients use, so
//! nothing here needs to understand them. Other responses (logs) stream through as they come.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;
use skiff_api::status::ApiError;

use crate::http::{Request, Response};
use crate::Server;

/// Port a kubelet listens on when its Node does not say.
const DEFAULT_KUBELET_PORT: u16 = 10250;
/// How long to wait for the kubelet's TCP and TLS handshakes.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// Annotation naming the container `kubectl exec/logs/attach` use when none is given.
const DEFAULT_CONTAINER_ANNOTATION: &str = "kubectl.kubernetes.io/default-container";

/// Request headers passed to the kubelet; everything else (notably credentials) stays here.
const FORWARDED_HEADERS: &[&str] = &[
    "connection",
    "upgrade",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "x-stream-protocol-version",
    "content-type",
    "accept",
    "user-agent",
];

/// Proxy `pods/{log,exec,attach,portforward}` of `ns/name`.
pub async fn pod(srv: &Server, req: &Request, ns: &str, name: &str, sub: &str) -> Result<Response, ApiError> {
    let pods = srv.resources.find("", "v1", "pods").ok_or_else(|| ApiError::internal("pods are not served"))?;
    let pod = srv.objects.get(&pods.info, Some(ns), name).await?;
    let node_name = pod.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or("");
    if node_name.is_empty() {
        return Err(ApiError::bad_request(format!("pod {name} does not have a host assigned")));
    }
    let mut query: Vec<(String, String)> = req.query.0.iter().filter(|(k, _)| k != "container").cloned().collect();
    let path = match sub {
        "portforward" => format!("/portForward/{ns}/{name}"),
        _ => {
            let container = pick_container(&pod, name, req.query.non_empty("container"))?;
            let prefix = match sub {
                "log" => "containerLogs",
                "exec" => "exec",
                _ => "attach",
            };
            format!("/{prefix}/{ns}/{name}/{container}")
        }
    };
    if sub == "log" {
        // Upstream's own knob for skipping kubelet TLS checks; never honoured here.
        query.retain(|(k, _)| k != "insecureSkipTLSVerifyBackend");
    }
    let target = kubelet_target(srv, node_name).await?;
    forward(srv, req, &target, &with_query(&path, &query)).await
}

/// Proxy `nodes/{name}/proxy/{path}` to `{path}` on that node's kubelet.
pub async fn node(srv: &Server, req: &Request, name: &str) -> Result<Response, ApiError> {
    let target = kubelet_target(srv, name).await?;
    // Everything after `/nodes/{name}/proxy` in the original (still percent-encoded) path.
    let marker = format!("/nodes/{name}/proxy");
    let rest = req.path.find(&marker).map(|i| &req.path[i + marker.len()..]).unwrap_or("");
    let rest = if rest.is_empty() { "/" } else { rest };
    forward(srv, req, &target, &with_query(rest, &req.query.0)).await
}

/// The container a request addresses: the one named, the default-container annotation, or
/// the only container; otherwise 400 listing the choices, as upstream does.
pub fn pick_container(pod: &Value, pod_name: &str, wanted: Option<&str>) -> Result<String, ApiError> {
    let names = |field: &str| -> Vec<String> {
        pod.pointer(&format!("/spec/{field}"))
            .and_then(Value::as_array)
            .map(|cs| cs.iter().filter_map(|c| c["name"].as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    };
    let containers = names("containers");
    let init = names("initContainers");
    let ephemeral = names("ephemeralContainers");
    if let Some(w) = wanted {
        if containers.iter().chain(&init).chain(&ephemeral).any(|c| c == w) {
            return Ok(w.to_string());
        }
        return Err(ApiError::bad_request(format!("container {w} is not valid for pod {pod_name}")));
    }
    let annotated = pod.pointer("/metadata/annotations").and_then(|a| a.get(DEFAULT_CONTAINER_ANNOTATION)).and_then(Value::as_str);
    if let Some(a) = annotated.filter(|a| containers.iter().any(|c| c == a)) {
        return Ok(a.to_string());
    }
    if containers.len() == 1 {
        return Ok(containers[0].clone());
    }
    let mut msg = format!("a container name must be specified for pod {pod_name}, choose one of: [{}]", containers.join(" "));
    if !init.is_empty() {
        msg.push_str(&format!(" or one of the init containers: [{}]", init.join(" ")));
    }
    Err(ApiError::bad_request(msg))
}

/// Where a node's kubelet listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeletTarget {
    /// Host to dial (an IP, or the hostname when the node reports no IP).
    pub host: String,
    /// Port.
    pub port: u16,
}

/// The kubelet address of a Node object: InternalIP, then ExternalIP, then Hostname.
pub fn kubelet_address(node: &Value) -> Option<KubeletTarget> {
    let addrs = node.pointer("/status/addresses").and_then(Value::as_array)?;
    let of = |t: &str| addrs.iter().find(|a| a["type"] == t).and_then(|a| a["address"].as_str()).filter(|a| !a.is_empty());
    let host = of("InternalIP").or_else(|| of("ExternalIP")).or_else(|| of("Hostname"))?.to_string();
    let port = node
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p > 0)
        .unwrap_or(DEFAULT_KUBELET_PORT);
    Some(KubeletTarget { host, port })
}

async fn kubelet_target(srv: &Server, node_name: &str) -> Result<KubeletTarget, ApiError> {
    let nodes = srv.resources.find("", "v1", "nodes").ok_or_else(|| ApiError::internal("nodes are not served"))?;
    let node = srv.objects.get(&nodes.info, None, node_name).await?;
    kubelet_address(&node).ok_or_else(|| ApiError::internal(format!("node {node_name} reports no address to reach its kubelet")))
}

fn with_query(path: &str, query: &[(String, String)]) -> String {
    if query.is_empty() {
        return path.to_string();
    }
    let q: Vec<String> = query.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect();
    format!("{path}?{}", q.join("&"))
}

fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// TLS client config for kubelets: cluster CA as the only root, our kubelet-client identity.
fn client_tls(srv: &Server) -> Result<rustls::ClientConfig, ApiError> {
    let err = |what: &str, e: &dyn std::fmt::Display| ApiError::internal(format!("kubelet client tls {what}: {e}"));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(srv.pki.ca.cert_pem.as_bytes()) {
        roots.add(c.map_err(|e| err("ca", &e))?).map_err(|e| err("ca", &e))?;
    }
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(srv.pki.kubelet_client.cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| err("certificate", &e))?;
    let key = PrivateKeyDer::from_pem_slice(srv.pki.kubelet_client.key_pem.as_bytes()).map_err(|e| err("key", &e))?;
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| err("versions", &e))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| err("identity", &e))?;
    // Upgrades exist only in HTTP/1.1.
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

fn dial_error(t: &KubeletTarget, e: impl std::fmt::Display) -> ApiError {
    // Upstream words it the same way ("error dialing backend"), with a 500.
    ApiError::internal(format!("error dialing backend: dial tcp {}:{}: {e}", t.host, t.port))
}

/// An HTTP/1.1 connection (upgrades allowed) to a kubelet, over TLS with the cluster CA and
/// the kubelet-client identity; shared by this proxy and the metrics API.
pub(crate) async fn connect(srv: &Server, target: &KubeletTarget) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>, ApiError> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_tls(srv)?));
    let server_name = match target.host.parse::<IpAddr>() {
        Ok(ip) => ServerName::IpAddress(ip.into()),
        Err(_) => ServerName::try_from(target.host.clone()).map_err(|e| dial_error(target, e))?,
    };
    let dial = async {
        let tcp = tokio::net::TcpStream::connect((target.host.as_str(), target.port)).await?;
        let _ = tcp.set_nodelay(true);
        connector.connect(server_name, tcp).await
    };
    let tls = match tokio::time::timeout(DIAL_TIMEOUT, dial).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => return Err(dial_error(target, e)),
        Err(_) => return Err(dial_error(target, "i/o timeout")),
    };
    let (sender, conn) = hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(tls))
        .await
        .map_err(|e| dial_error(target, e))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "kubelet connection ended");
        }
    });
    Ok(sender)
}

async fn forward(srv: &Server, req: &Request, target: &KubeletTarget, path_and_query: &str) -> Result<Response, ApiError> {
    // An upgrade over HTTP/2 has no connection to take over; refuse before bothering the kubelet.
    if !req.header("upgrade").is_empty() && req.upgrade.lock().expect("not poisoned").is_none() {
        return Err(ApiError::bad_request("this request cannot be upgraded (use HTTP/1.1 for streaming)"));
    }
    let mut sender = connect(srv, target).await?;
    let mut out = hyper::Request::builder()
        .method(req.method.clone())
        .uri(path_and_query)
        .header("host", format!("{}:{}", target.host, target.port));
    for name in FORWARDED_HEADERS {
        for v in req.headers.get_all(*name) {
            out = out.header(*name, v.clone());
        }
    }
    let out = out.body(Full::new(req.body.clone())).map_err(|e| ApiError::internal(format!("building kubelet request: {e}")))?;
    let mut resp = sender.send_request(out).await.map_err(|e| dial_error(target, e))?;
    let mut builder = http::Response::builder().status(resp.status());
    for (k, v) in resp.headers() {
        builder = builder.header(k, v);
    }
    if resp.status() != http::StatusCode::SWITCHING_PROTOCOLS {
        let body = resp.into_body().map_err(std::io::Error::other).boxed();
        return builder.body(body).map_err(|e| ApiError::internal(format!("kubelet response: {e}")));
    }
    let Some(client_upgrade) = req.upgrade.lock().expect("not poisoned").take() else {
        return Err(ApiError::bad_request("this request cannot be upgraded (use HTTP/1.1 for streaming)"));
    };
    let kubelet_upgrade = hyper::upgrade::on(&mut resp);
    tokio::spawn(async move {
        let (client, kubelet) = match tokio::join!(client_upgrade, kubelet_upgrade) {
            (Ok(c), Ok(k)) => (c, k),
            (c, k) => {
                tracing::debug!(client = ?c.err(), kubelet = ?k.err(), "streaming upgrade failed");
                return;
            }
        };
        let (mut client, mut kubelet) = (TokioIo::new(client), TokioIo::new(kubelet));
        match tokio::io::copy_bidirectional(&mut client, &mut kubelet).await {
            Ok((up, down)) => tracing::debug!(up, down, "streaming session ended"),
            Err(e) => tracing::debug!(error = %e, "streaming session ended"),
        }
    });
    builder.body(crate::http::full(Bytes::new())).map_err(|e| ApiError::internal(format!("kubelet response: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn default_container_choice() {
        let one = json!({"spec": {"containers": [{"name": "web"}]}});
        assert_eq!(pick_container(&one, "p", None).unwrap(), "web");
        assert_eq!(pick_container(&one, "p", Some("web")).unwrap(), "web");
        let e = pick_container(&one, "p", Some("db")).unwrap_err();
        assert_eq!((e.code, e.message.as_str()), (400, "container db is not valid for pod p"));
        let two = json!({"metadata": {"annotations": {}}, "spec": {"containers": [{"name": "a"}, {"name": "b"}], "initContainers": [{"name": "i"}]}});
        let e = pick_container(&two, "p", None).unwrap_err();
        assert_eq!(e.message, "a container name must be specified for pod p, choose one of: [a b] or one of the init containers: [i]");
        assert_eq!(pick_container(&two, "p", Some("i")).unwrap(), "i");
        let mut annotated = two.clone();
        annotated["metadata"]["annotations"][DEFAULT_CONTAINER_ANNOTATION] = json!("b");
        assert_eq!(pick_container(&annotated, "p", None).unwrap(), "b");
    }

    #[test]
    fn kubelet_address_prefers_internal_ip_and_reported_port() {
        let n = json!({"status": {"addresses": [{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "10.0.0.5"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 12345}}}});
        assert_eq!(kubelet_address(&n), Some(KubeletTarget { host: "10.0.0.5".into(), port: 12345 }));
        let n = json!({"status": {"addresses": [{"type": "Hostname", "address": "n1"}]}});
        assert_eq!(kubelet_address(&n), Some(KubeletTarget { host: "n1".into(), port: 10250 }));
        assert_eq!(kubelet_address(&json!({"status": {}})), None);
    }

    #[test]
    fn queries_are_re_encoded() {
        let q = vec![("command".to_string(), "echo hi&x".to_string()), ("stdout".to_string(), "true".to_string())];
        assert_eq!(with_query("/exec/ns/p/c", &q), "/exec/ns/p/c?command=echo%20hi%26x&stdout=true");
        assert_eq!(with_query("/x", &[]), "/x");
    }
}
