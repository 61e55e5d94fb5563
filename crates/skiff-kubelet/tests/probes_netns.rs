//! gRPC and HTTPS probes reach servers that listen only inside a pod's network namespace
//! (here a namespace made with `ip netns add`, loopback only): the prober connects from
//! inside it, as for the other probe kinds. Needs root; skipped otherwise.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use k8s_openapi::api::core::v1::{Container, Probe};
use skiff_kubelet::probes::{run, Outcome, Target};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A network namespace that is deleted when dropped.
struct Netns(String);

impl Netns {
    fn new(name: &str) -> Self {
        let _ = std::process::Command::new("ip").args(["netns", "del", name]).output();
        let ok = std::process::Command::new("ip").args(["netns", "add", name]).status().unwrap().success();
        assert!(ok, "ip netns add {name}");
        let up = std::process::Command::new("nsenter")
            .arg(format!("--net=/run/netns/{name}"))
            .args(["ip", "link", "set", "lo", "up"])
            .status()
            .unwrap();
        assert!(up.success());
        Netns(name.to_string())
    }

    fn path(&self) -> PathBuf {
        PathBuf::from(format!("/run/netns/{}", self.0))
    }

    /// A listener on 127.0.0.1 inside the namespace (bound from a thread that entered it).
    fn listen(&self) -> tokio::net::TcpListener {
        let path = self.path();
        let std_listener = std::thread::spawn(move || {
            let file = std::fs::File::open(path).unwrap();
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.set_nonblocking(true).unwrap();
            l
        })
        .join()
        .unwrap();
        tokio::net::TcpListener::from_std(std_listener).unwrap()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

fn serve_grpc(listener: tokio::net::TcpListener) {
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                    let _ = req.into_body().collect().await;
                    let mut trailers = http::HeaderMap::new();
                    trailers.insert("grpc-status", "0".parse().unwrap());
                    let frames: Vec<Result<Frame<Bytes>, Infallible>> =
                        vec![Ok(Frame::data(Bytes::from_static(&[0, 0, 0, 0, 2, 0x08, 1]))), Ok(Frame::trailers(trailers))];
                    Ok::<_, Infallible>(hyper::Response::new(StreamBody::new(futures::stream::iter(frames))))
                });
                let _ = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(s), service)
                    .await;
            });
        }
    });
}

fn serve_https(listener: tokio::net::TcpListener) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["pod.example".to_string()]).unwrap().self_signed(&key).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()))
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(s).await else { return };
                let mut buf = [0u8; 1024];
                let _ = tls.read(&mut buf).await;
                let _ = tls.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").await;
                let _ = tls.shutdown().await;
            });
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_and_https_probes_run_inside_the_pod_network_namespace() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipping: needs root");
        return;
    }
    let ns = Netns::new("kubelet-probe-test");
    let grpc = ns.listen();
    let grpc_port = grpc.local_addr().unwrap().port();
    serve_grpc(grpc);
    let https = ns.listen();
    let https_port = https.local_addr().unwrap().port();
    serve_https(https);

    let container: Container = serde_json::from_value(serde_json::json!({"name": "c"})).unwrap();
    let target = |netns: Option<PathBuf>| Target {
        runtime: Arc::new(skiff_runtime::FakeRuntime::new()),
        container_id: "x".into(),
        netns,
        pod_ip: None,
    };
    let grpc_probe: Probe = serde_json::from_value(serde_json::json!({"grpc": {"port": grpc_port}})).unwrap();
    let https_probe: Probe =
        serde_json::from_value(serde_json::json!({"httpGet": {"path": "/healthz", "port": https_port, "scheme": "HTTPS"}})).unwrap();
    assert_eq!(run(&grpc_probe, &container, &target(Some(ns.path()))).await, Outcome::Success);
    assert_eq!(run(&https_probe, &container, &target(Some(ns.path()))).await, Outcome::Success);
    // From the host's namespace nothing answers on those ports.
    assert!(matches!(run(&grpc_probe, &container, &target(None)).await, Outcome::Failure(_)));
    assert!(matches!(run(&https_probe, &container, &target(None)).await, Outcome::Failure(_)));
}
