//! Port-forward over SPDY (`portforward.k8s.io`), plain or tunnelled in a WebSocket.
//!
//! For every local connection the client opens two SPDY streams carrying the same `port` and
//! `requestID` headers: `streamType: error` (we write a message there if connecting fails)
//! and `streamType: data` (the connection's bytes, both ways). Half-closes are passed through:
//! the client's FIN shuts down writing to the pod, the pod's EOF becomes our FIN.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;

use super::spdy::header;
use super::spdy::session::{Session, SpdyStream};
use super::StreamingBackend;

/// The SPDY stream protocol of port-forward.
pub const PROTOCOL: &str = "portforward.k8s.io";
/// The WebSocket subprotocol kubectl 1.31+ offers: SPDY carried in binary messages.
pub const WS_TUNNEL_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";

/// Serve port-forward streams until the client closes the session.
pub async fn serve(mut session: Session, backend: Arc<dyn StreamingBackend>, namespace: String, pod: String) {
    let mut pending: HashMap<String, (Option<SpdyStream>, Option<SpdyStream>)> = HashMap::new();
    let mut pairs = JoinSet::new();
    while let Some(stream) = session.incoming.recv().await {
        let kind = header(&stream.headers, "streamtype").unwrap_or("").to_string();
        // Clients before requestID existed sent one pair at a time; key those by port.
        let key = header(&stream.headers, "requestid")
            .or_else(|| header(&stream.headers, "port"))
            .unwrap_or("")
            .to_string();
        let slot = pending.entry(key.clone()).or_default();
        match kind.as_str() {
            "error" => slot.0 = Some(stream),
            "data" => slot.1 = Some(stream),
            other => {
                tracing::debug!(stream_type = other, "port-forward: ignoring unknown stream");
                stream.writer.finish().await;
                continue;
            }
        }
        if let (Some(_), Some(_)) = (&slot.0, &slot.1) {
            let (err, data) = pending.remove(&key).expect("present");
            let (err, data) = (err.expect("checked"), data.expect("checked"));
            let (backend, ns, pod) = (backend.clone(), namespace.clone(), pod.clone());
            pairs.spawn(forward(backend, ns, pod, err, data));
        }
        // Reap finished pairs so a long session does not accumulate handles.
        while pairs.try_join_next().is_some() {}
    }
    // The client is gone: nothing can read what the pairs would still copy.
    pairs.abort_all();
    session.close().await;
}

async fn forward(backend: Arc<dyn StreamingBackend>, ns: String, pod: String, err: SpdyStream, mut data: SpdyStream) {
    let port_header = header(&data.headers, "port").unwrap_or("").to_string();
    let port = match port_header.parse::<u16>() {
        Ok(p) if p > 0 => p,
        _ => {
            let msg = format!("invalid port {port_header:?} in port-forward request for pod {ns}/{pod}");
            let _ = err.writer.write(msg.as_bytes()).await;
            err.writer.finish().await;
            data.writer.finish().await;
            return;
        }
    };
    let conn = match backend.port_forward(&ns, &pod, port).await {
        Ok(c) => c,
        Err(e) => {
            // Worded as upstream's kubelet does; kubectl prints it.
            let msg = format!("error forwarding port {port} to pod {pod}, uid : {e}");
            let _ = err.writer.write(msg.as_bytes()).await;
            err.writer.finish().await;
            data.writer.finish().await;
            return;
        }
    };
    let (mut from_pod, mut to_pod) = tokio::io::split(conn);
    let writer = data.writer.clone();
    let up = async {
        while let Some(b) = data.reader.recv().await {
            if to_pod.write_all(&b).await.is_err() {
                break;
            }
        }
        let _ = to_pod.shutdown().await;
    };
    let down = async {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match from_pod.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if writer.write(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
        writer.finish().await;
    };
    tokio::join!(up, down);
    err.writer.finish().await;
}
