//! RFC 6455 WebSocket, server side: the opening handshake's accept key and subprotocol
//! choice, frame encoding and decoding, and a reader/writer pair over an upgraded connection.
//!
//! Hand-written because only a small part is needed (binary messages, ping/pong, close, no
//! extensions) and the framing is easier to test byte for byte here than through a library.

use std::sync::Arc;

use base64::Engine;
use http::HeaderMap;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Fixed GUID of RFC 6455 section 1.3 that the accept key hashes in.
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Largest message accepted from a client. Clients send stdin and resize events, which are
/// small; a bound keeps a broken client from exhausting memory.
pub const MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// Frame opcodes.
pub mod opcode {
    /// Continuation of a fragmented message.
    pub const CONTINUATION: u8 = 0x0;
    /// UTF-8 text message.
    pub const TEXT: u8 = 0x1;
    /// Binary message.
    pub const BINARY: u8 = 0x2;
    /// Close.
    pub const CLOSE: u8 = 0x8;
    /// Ping.
    pub const PING: u8 = 0x9;
    /// Pong.
    pub const PONG: u8 = 0xA;
}

/// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`.
pub fn accept_key(key: &str) -> String {
    let mut input = key.trim().as_bytes().to_vec();
    input.extend_from_slice(GUID.as_bytes());
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &input);
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

/// Whether the request asks for a WebSocket upgrade.
pub fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get_all(http::header::UPGRADE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|p| p.trim().eq_ignore_ascii_case("websocket")))
}

/// The first subprotocol the client offers (in its order of preference) that we support.
pub fn choose_protocol(headers: &HeaderMap, supported: &[&str]) -> Option<String> {
    headers
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .find(|p| supported.iter().any(|s| s.eq_ignore_ascii_case(p)))
        .map(str::to_string)
}

/// Encode one final frame. Servers send unmasked frames; `mask` exists for tests and clients.
pub fn encode_frame(op: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(0x80 | (op & 0x0f));
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n <= u16::MAX as usize => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(m) => {
            out.extend_from_slice(&m);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ m[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// One decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Last fragment of its message.
    pub fin: bool,
    /// Opcode.
    pub opcode: u8,
    /// Unmasked payload.
    pub payload: Vec<u8>,
}

/// Read one frame; `Ok(None)` on a clean end of stream before a frame starts.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R, max: usize) -> std::io::Result<Option<Frame>> {
    let mut head = [0u8; 2];
    match r.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let fin = head[0] & 0x80 != 0;
    let opcode = head[0] & 0x0f;
    if head[0] & 0x70 != 0 {
        return Err(invalid("reserved bits set without a negotiated extension"));
    }
    let masked = head[1] & 0x80 != 0;
    let len = match head[1] & 0x7f {
        126 => r.read_u16().await? as u64,
        127 => r.read_u64().await?,
        n => n as u64,
    };
    if len > max as u64 {
        return Err(invalid(&format!("frame of {len} bytes exceeds the {max} byte limit")));
    }
    let mut mask = [0u8; 4];
    if masked {
        r.read_exact(&mut mask).await?;
    }
    let mut payload = vec![0u8; len as usize];
    r.read_exact(&mut payload).await?;
    if masked {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= mask[i % 4];
        }
    }
    Ok(Some(Frame { fin, opcode, payload }))
}

fn invalid(msg: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, format!("websocket: {msg}"))
}

/// A complete message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Binary data.
    Binary(Vec<u8>),
    /// Text data (not checked for UTF-8: the k8s protocols treat it as bytes too).
    Text(Vec<u8>),
    /// The peer closed, with its status code if it gave one.
    Close(Option<u16>),
}

type BoxWriter = Box<dyn AsyncWrite + Send + Unpin>;

/// The sending side, shared by every task that writes (stdout, stderr, status, pongs).
#[derive(Clone)]
pub struct WsWriter {
    inner: Arc<tokio::sync::Mutex<BoxWriter>>,
}

impl WsWriter {
    /// Wrap a writer.
    pub fn new(w: impl AsyncWrite + Send + Unpin + 'static) -> Self {
        Self { inner: Arc::new(tokio::sync::Mutex::new(Box::new(w))) }
    }

    /// Send one frame and flush it (frames must leave promptly: they carry interactive output).
    pub async fn send(&self, op: u8, payload: &[u8]) -> std::io::Result<()> {
        let frame = encode_frame(op, payload, None);
        let mut w = self.inner.lock().await;
        w.write_all(&frame).await?;
        w.flush().await
    }

    /// Send a binary message.
    pub async fn binary(&self, payload: &[u8]) -> std::io::Result<()> {
        self.send(opcode::BINARY, payload).await
    }

    /// Send a close frame with `code` and shut the connection down for writing.
    pub async fn close(&self, code: u16) -> std::io::Result<()> {
        let frame = encode_frame(opcode::CLOSE, &code.to_be_bytes(), None);
        let mut w = self.inner.lock().await;
        w.write_all(&frame).await?;
        w.flush().await?;
        w.shutdown().await
    }
}

/// The receiving side: reassembles fragmented messages and answers pings.
pub struct WsReader {
    inner: Box<dyn AsyncRead + Send + Unpin>,
    writer: WsWriter,
}

impl WsReader {
    /// The next message; `Ok(None)` when the connection ended without a close frame.
    pub async fn next(&mut self) -> std::io::Result<Option<Message>> {
        let mut partial: Option<(u8, Vec<u8>)> = None;
        loop {
            let Some(frame) = read_frame(&mut self.inner, MAX_MESSAGE).await? else { return Ok(None) };
            match frame.opcode {
                opcode::PING => {
                    // client-go's heartbeat closes the connection when pongs stop coming.
                    self.writer.send(opcode::PONG, &frame.payload).await?;
                }
                opcode::PONG => {}
                opcode::CLOSE => {
                    let code = (frame.payload.len() >= 2).then(|| u16::from_be_bytes([frame.payload[0], frame.payload[1]]));
                    return Ok(Some(Message::Close(code)));
                }
                opcode::TEXT | opcode::BINARY if partial.is_none() => {
                    if frame.fin {
                        return Ok(Some(to_message(frame.opcode, frame.payload)));
                    }
                    partial = Some((frame.opcode, frame.payload));
                }
                opcode::CONTINUATION if partial.is_some() => {
                    let (op, mut data) = partial.take().expect("checked above");
                    if data.len() + frame.payload.len() > MAX_MESSAGE {
                        return Err(invalid("message exceeds the size limit"));
                    }
                    data.extend_from_slice(&frame.payload);
                    if frame.fin {
                        return Ok(Some(to_message(op, data)));
                    }
                    partial = Some((op, data));
                }
                op => return Err(invalid(&format!("unexpected opcode {op:#x}"))),
            }
        }
    }
}

fn to_message(op: u8, data: Vec<u8>) -> Message {
    if op == opcode::TEXT {
        Message::Text(data)
    } else {
        Message::Binary(data)
    }
}

/// Split an upgraded connection into a message reader and a shared writer.
pub fn split<S>(io: S) -> (WsReader, WsWriter)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (r, w) = tokio::io::split(io);
    let writer = WsWriter::new(w);
    (WsReader { inner: Box::new(r), writer: writer.clone() }, writer)
}

/// Turn a WebSocket whose binary messages carry a byte stream (kubectl's
/// `SPDY/3.1+portforward.k8s.io` tunnel) back into a byte stream.
pub fn tunnel(mut reader: WsReader, writer: WsWriter) -> tokio::io::DuplexStream {
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let (mut from_peer, mut to_peer) = tokio::io::split(ours);
    tokio::spawn(async move {
        while let Ok(Some(msg)) = reader.next().await {
            match msg {
                Message::Binary(b) | Message::Text(b) => {
                    if to_peer.write_all(&b).await.is_err() {
                        break;
                    }
                }
                Message::Close(_) => break,
            }
        }
        let _ = to_peer.shutdown().await;
    });
    tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match from_peer.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if writer.binary(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
        let _ = writer.close(1000).await;
    });
    theirs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_rfc_example() {
        // The worked example of RFC 6455 section 1.3.
        assert_eq!(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn protocol_choice_follows_client_order() {
        let mut h = HeaderMap::new();
        h.append("sec-websocket-protocol", "v5.channel.k8s.io, v4.channel.k8s.io".parse().unwrap());
        assert_eq!(choose_protocol(&h, &["v4.channel.k8s.io", "v5.channel.k8s.io"]).as_deref(), Some("v5.channel.k8s.io"));
        assert_eq!(choose_protocol(&h, &["channel.k8s.io"]), None);
        h.insert("upgrade", "WebSocket".parse().unwrap());
        assert!(is_websocket_upgrade(&h));
    }

    #[test]
    fn frame_lengths_use_the_three_encodings() {
        assert_eq!(encode_frame(opcode::BINARY, b"hi", None), vec![0x82, 2, b'h', b'i']);
        let mid = encode_frame(opcode::BINARY, &[7u8; 300], None);
        assert_eq!(&mid[..4], &[0x82, 126, 1, 44]);
        assert_eq!(mid.len(), 304);
        let big = encode_frame(opcode::TEXT, &vec![1u8; 70_000], None);
        assert_eq!(&big[..2], &[0x81, 127]);
        assert_eq!(u64::from_be_bytes(big[2..10].try_into().unwrap()), 70_000);
    }

    #[tokio::test]
    async fn masked_frames_round_trip() {
        let bytes = encode_frame(opcode::BINARY, b"\x00hello", Some([1, 2, 3, 4]));
        assert_eq!(bytes[1], 0x80 | 6);
        assert_ne!(&bytes[6..], b"\x00hello", "payload is masked on the wire");
        let f = read_frame(&mut &bytes[..], 1024).await.unwrap().unwrap();
        assert_eq!(f, Frame { fin: true, opcode: opcode::BINARY, payload: b"\x00hello".to_vec() });
        assert!(read_frame(&mut &b""[..], 1024).await.unwrap().is_none());
        assert!(read_frame(&mut &bytes[..], 3).await.is_err(), "size limit enforced");
    }

    #[tokio::test]
    async fn reader_reassembles_fragments_and_answers_pings() {
        let (client, server) = tokio::io::duplex(4096);
        let (mut reader, _writer) = split(server);
        let (mut client_r, mut client_w) = tokio::io::split(client);
        let mut wire = Vec::new();
        // First fragment (not FIN), a ping in between, then the final continuation.
        let mut first = encode_frame(opcode::BINARY, b"ab", Some([9, 9, 9, 9]));
        first[0] &= 0x7f;
        wire.extend(first);
        wire.extend(encode_frame(opcode::PING, b"p", Some([1, 1, 1, 1])));
        wire.extend(encode_frame(opcode::CONTINUATION, b"cd", Some([5, 6, 7, 8])));
        wire.extend(encode_frame(opcode::CLOSE, &1000u16.to_be_bytes(), Some([0, 0, 0, 0])));
        client_w.write_all(&wire).await.unwrap();
        assert_eq!(reader.next().await.unwrap(), Some(Message::Binary(b"abcd".to_vec())));
        let pong = read_frame(&mut client_r, 1024).await.unwrap().unwrap();
        assert_eq!((pong.opcode, pong.payload), (opcode::PONG, b"p".to_vec()));
        assert_eq!(reader.next().await.unwrap(), Some(Message::Close(Some(1000))));
    }
}
