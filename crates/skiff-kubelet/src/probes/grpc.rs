//! gRPC probes: one `grpc.health.v1.Health/Check` call over HTTP/2 without TLS, as
//! upstream's prober makes it. The protobuf messages are tiny and encoded by hand:
//! `HealthCheckRequest { string service = 1; }` and
//! `HealthCheckResponse { ServingStatus status = 1; }` with SERVING = 1.

use bytes::{BufMut, Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

/// The health service's serving statuses, by number.
const STATUSES: [&str; 4] = ["UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"];

/// gRPC status code names, by number.
const CODES: [&str; 17] = [
    "OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound", "AlreadyExists",
    "PermissionDenied", "ResourceExhausted", "FailedPrecondition", "Aborted", "OutOfRange",
    "Unimplemented", "Internal", "Unavailable", "DataLoss", "Unauthenticated",
];

/// The length-prefixed gRPC message carrying `HealthCheckRequest { service }`.
pub fn encode_request(service: &str) -> Bytes {
    let mut message = BytesMut::new();
    if !service.is_empty() {
        message.put_u8(0x0a); // field 1, length-delimited
        put_varint(&mut message, service.len() as u64);
        message.put_slice(service.as_bytes());
    }
    let mut frame = BytesMut::with_capacity(5 + message.len());
    frame.put_u8(0); // not compressed
    frame.put_u32(message.len() as u32);
    frame.put_slice(&message);
    frame.freeze()
}

fn put_varint(buf: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        buf.put_u8((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

fn read_varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// The serving status in a length-prefixed `HealthCheckResponse` (0, UNKNOWN, when the
/// field is absent, as protobuf defaults it).
pub fn decode_response(body: &[u8]) -> Result<u64, String> {
    if body.len() < 5 {
        return Err("empty response".into());
    }
    if body[0] != 0 {
        return Err("compressed responses are not supported".into());
    }
    let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    let message = body.get(5..5 + len).ok_or("truncated response")?;
    let (mut pos, mut status) = (0, 0);
    while pos < message.len() {
        let key = read_varint(message, &mut pos).ok_or("malformed response")?;
        match (key >> 3, key & 7) {
            (1, 0) => status = read_varint(message, &mut pos).ok_or("malformed response")?,
            (_, 0) => {
                read_varint(message, &mut pos).ok_or("malformed response")?;
            }
            (_, 1) => pos += 8,
            (_, 2) => {
                let n = read_varint(message, &mut pos).ok_or("malformed response")? as usize;
                pos += n;
            }
            (_, 5) => pos += 4,
            _ => return Err("malformed response".into()),
        }
    }
    Ok(status)
}

/// Calls Health/Check for `service` over `stream`; `Ok` is a pass, `Err` the failure
/// message upstream would give.
pub async fn check(stream: TcpStream, authority: &str, service: &str) -> Result<(), String> {
    let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .map_err(|e| format!("error: failed to connect service {authority:?}: {e}"))?;
    let driver = tokio::spawn(conn);
    let request = http::Request::post(format!("http://{authority}/grpc.health.v1.Health/Check"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("user-agent", "kube-probe/1.33")
        .body(Full::new(encode_request(service)))
        .map_err(|e| e.to_string())?;
    let result = async {
        let response = sender.send_request(request).await.map_err(|e| format!("error: health rpc probe failed: {e}"))?;
        if response.status() != http::StatusCode::OK {
            return Err(format!("error: health rpc probe failed: unexpected HTTP status code {}", response.status().as_u16()));
        }
        let headers = response.headers().clone();
        let collected = response.into_body().collect().await.map_err(|e| format!("error: health rpc probe failed: {e}"))?;
        let trailers = collected.trailers().cloned().unwrap_or_default();
        let body = collected.to_bytes();
        // A trailers-only answer carries grpc-status in the headers.
        let status_of = |name: &str| trailers.get(name).or_else(|| headers.get(name)).and_then(|v| v.to_str().ok()).map(str::to_string);
        let code: usize = status_of("grpc-status").and_then(|s| s.parse().ok()).unwrap_or(2);
        if code != 0 {
            let desc = status_of("grpc-message").unwrap_or_default();
            let name = CODES.get(code).copied().unwrap_or("Unknown");
            let rpc = format!("rpc error: code = {name} desc = {desc}");
            return Err(if code == 12 {
                format!("error: this server does not implement the grpc health protocol (grpc.health.v1.Health): {rpc}")
            } else {
                format!("error: health rpc probe failed: {rpc}")
            });
        }
        match decode_response(&body)? {
            1 => Ok(()),
            other => Err(format!(
                "service unhealthy (responded with {:?})",
                STATUSES.get(other as usize).copied().unwrap_or("UNKNOWN")
            )),
        }
    }
    .await;
    driver.abort();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_encode_and_decode_by_hand() {
        assert_eq!(&encode_request("")[..], &[0, 0, 0, 0, 0]);
        assert_eq!(&encode_request("db")[..], &[0, 0, 0, 0, 4, 0x0a, 2, b'd', b'b']);
        assert_eq!(decode_response(&[0, 0, 0, 0, 2, 0x08, 1]), Ok(1));
        assert_eq!(decode_response(&[0, 0, 0, 0, 2, 0x08, 2]), Ok(2));
        assert_eq!(decode_response(&[0, 0, 0, 0, 0]), Ok(0), "an absent field is UNKNOWN");
        // An unknown length-delimited field before the status is skipped.
        assert_eq!(decode_response(&[0, 0, 0, 0, 5, 0x12, 1, b'x', 0x08, 1]), Ok(1));
        assert!(decode_response(&[0, 0, 0]).is_err());
        assert!(decode_response(&[0, 0, 0, 0, 9, 0x08]).is_err());
    }
}
