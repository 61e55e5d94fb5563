//! The server side of a SPDY session: accepts every stream the client opens (replying at
//! once, as the kubelet's handlers expect), hands each to the caller with its headers, a
//! receiver of its data and a sender of DATA frames, echoes pings, and closes with GOAWAY.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::mpsc;

use super::{control_frame, data_frame, kind, read_frame, stream_id_at, HeaderCompressor, HeaderDecompressor, Headers, RawFrame, FLAG_FIN};

/// Outgoing frames queued for the writer task; bounded so a slow client slows producers.
const OUT_QUEUE: usize = 64;

enum Out {
    Frame(Vec<u8>),
    /// Send GOAWAY, flush and shut the connection down for writing.
    Close,
}

/// Sends DATA frames on one stream.
#[derive(Clone)]
pub struct StreamWriter {
    id: u32,
    out: mpsc::Sender<Out>,
    finished: Arc<AtomicBool>,
}

impl StreamWriter {
    /// The stream id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Send `data` (split into frames of at most 32 KiB).
    pub async fn write(&self, data: &[u8]) -> std::io::Result<()> {
        for chunk in data.chunks(32 * 1024) {
            self.out.send(Out::Frame(data_frame(self.id, 0, chunk))).await.map_err(|_| closed())?;
        }
        Ok(())
    }

    /// Close our half of the stream (empty DATA frame with FIN). Idempotent.
    pub async fn finish(&self) {
        if !self.finished.swap(true, Ordering::SeqCst) {
            let _ = self.out.send(Out::Frame(data_frame(self.id, FLAG_FIN, &[]))).await;
        }
    }
}

fn closed() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::BrokenPipe, "spdy session closed")
}

/// Reads one stream's incoming data as a byte stream; ends at the client's FIN or RST.
pub struct StreamReader {
    rx: mpsc::UnboundedReceiver<Bytes>,
    pending: Bytes,
}

impl StreamReader {
    /// The next chunk of data, `None` at end of stream.
    pub async fn recv(&mut self) -> Option<Bytes> {
        if !self.pending.is_empty() {
            return Some(std::mem::take(&mut self.pending));
        }
        self.rx.recv().await
    }
}

impl AsyncRead for StreamReader {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        loop {
            if !self.pending.is_empty() {
                let n = self.pending.len().min(buf.remaining());
                buf.put_slice(&self.pending.split_to(n));
                return Poll::Ready(Ok(()));
            }
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(b)) => self.pending = b,
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// A stream the client opened.
pub struct SpdyStream {
    /// Stream id.
    pub id: u32,
    /// Headers of its SYN_STREAM (lowercase names).
    pub headers: Headers,
    /// Its incoming data.
    pub reader: StreamReader,
    /// Its outgoing data.
    pub writer: StreamWriter,
}

/// A running session.
pub struct Session {
    /// Streams as the client opens them; ends when the connection does.
    pub incoming: mpsc::Receiver<SpdyStream>,
    out: mpsc::Sender<Out>,
    reader_task: tokio::task::JoinHandle<()>,
    writer_task: tokio::task::JoinHandle<()>,
}

impl Session {
    /// Run a session on an upgraded connection.
    pub fn start<S>(io: S) -> Self
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (r, w) = tokio::io::split(io);
        let (out_tx, out_rx) = mpsc::channel(OUT_QUEUE);
        let (in_tx, in_rx) = mpsc::channel(16);
        let writer_task = tokio::spawn(write_loop(w, out_rx));
        let reader_task = tokio::spawn(read_loop(r, out_tx.clone(), in_tx));
        Self { incoming: in_rx, out: out_tx, reader_task, writer_task }
    }

    /// Send GOAWAY after everything already queued, close the connection and stop reading.
    pub async fn close(self) {
        let _ = self.out.send(Out::Close).await;
        drop(self.out);
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), self.writer_task).await;
        self.reader_task.abort();
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(mut w: W, mut rx: mpsc::Receiver<Out>) {
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        // Write everything queued, then flush once: fewer TLS records under load.
        while let Some(item) = next.take() {
            match item {
                Out::Frame(f) => {
                    if w.write_all(&f).await.is_err() {
                        return;
                    }
                }
                Out::Close => {
                    let mut body = 0u32.to_be_bytes().to_vec();
                    body.extend_from_slice(&0u32.to_be_bytes());
                    let _ = w.write_all(&control_frame(kind::GOAWAY, 0, &body)).await;
                    let _ = w.flush().await;
                    let _ = w.shutdown().await;
                    return;
                }
            }
            next = rx.try_recv().ok();
        }
        if w.flush().await.is_err() {
            return;
        }
    }
}

async fn read_loop<R: AsyncRead + Unpin>(mut r: R, out: mpsc::Sender<Out>, incoming: mpsc::Sender<SpdyStream>) {
    let mut inflate = HeaderDecompressor::new();
    let mut deflate = match HeaderCompressor::new() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "spdy: header compressor");
            return;
        }
    };
    let mut streams: HashMap<u32, mpsc::UnboundedSender<Bytes>> = HashMap::new();
    loop {
        let frame = match read_frame(&mut r).await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error = %e, "spdy: read ended");
                break;
            }
        };
        match frame {
            RawFrame::Data { stream_id, flags, data } => {
                if let Some(tx) = streams.get(&stream_id) {
                    if !data.is_empty() {
                        let _ = tx.send(Bytes::from(data));
                    }
                }
                if flags & FLAG_FIN != 0 {
                    streams.remove(&stream_id);
                }
            }
            RawFrame::Control { kind: kind::SYN_STREAM, flags, body } => {
                let Some(id) = stream_id_at(&body, 0) else { break };
                // Body: stream id, associated id, priority and slot, then the header block.
                let headers = match body.get(10..).map(|b| inflate.decompress(b)) {
                    Some(Ok(h)) => h,
                    other => {
                        tracing::debug!(?other, "spdy: bad SYN_STREAM header block");
                        break;
                    }
                };
                let (tx, rx) = mpsc::unbounded_channel();
                if flags & FLAG_FIN == 0 {
                    streams.insert(id, tx);
                }
                let reply_block = match deflate.compress(&[]) {
                    Ok(b) => b,
                    Err(_) => break,
                };
                let mut reply = id.to_be_bytes().to_vec();
                reply.extend_from_slice(&reply_block);
                if out.send(Out::Frame(control_frame(kind::SYN_REPLY, 0, &reply))).await.is_err() {
                    break;
                }
                let stream = SpdyStream {
                    id,
                    headers,
                    reader: StreamReader { rx, pending: Bytes::new() },
                    writer: StreamWriter { id, out: out.clone(), finished: Arc::new(AtomicBool::new(false)) },
                };
                if incoming.send(stream).await.is_err() {
                    break;
                }
            }
            RawFrame::Control { kind: kind::RST_STREAM, body, .. } => {
                if let Some(id) = stream_id_at(&body, 0) {
                    streams.remove(&id);
                }
            }
            RawFrame::Control { kind: kind::PING, body, .. } => {
                // Echo the client's pings (odd ids); ours would be even and we send none.
                if out.send(Out::Frame(control_frame(kind::PING, 0, &body))).await.is_err() {
                    break;
                }
            }
            RawFrame::Control { kind: kind::GOAWAY, .. } => break,
            RawFrame::Control { kind: kind::HEADERS, body, .. } => {
                // Keep the zlib stream in step even though the headers are not used.
                if let Some(b) = body.get(4..) {
                    let _ = inflate.decompress(b);
                }
            }
            RawFrame::Control { .. } => {} // SETTINGS, WINDOW_UPDATE: nothing to do without flow control.
        }
    }
    // Ending the senders gives every stream reader an end of stream.
    streams.clear();
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// Build a client SYN_STREAM with compressed headers.
    fn syn_stream(c: &mut HeaderCompressor, id: u32, headers: &[(&str, &str)]) -> Vec<u8> {
        let h: Headers = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut body = id.to_be_bytes().to_vec();
        body.extend_from_slice(&0u32.to_be_bytes());
        body.extend_from_slice(&[0, 0]);
        body.extend(c.compress(&h).unwrap());
        control_frame(kind::SYN_STREAM, 0, &body)
    }

    #[tokio::test]
    async fn streams_are_replied_to_and_carry_data_both_ways() {
        let (client, server) = tokio::io::duplex(1 << 16);
        let mut session = Session::start(server);
        let (mut cr, mut cw) = tokio::io::split(client);
        let mut comp = HeaderCompressor::new().unwrap();
        cw.write_all(&syn_stream(&mut comp, 1, &[("streamType", "data"), ("port", "80")])).await.unwrap();
        cw.write_all(&data_frame(1, 0, b"ping?")).await.unwrap();
        cw.write_all(&data_frame(1, FLAG_FIN, b"")).await.unwrap();
        cw.write_all(&control_frame(kind::PING, 0, &1u32.to_be_bytes())).await.unwrap();

        let mut s = session.incoming.recv().await.unwrap();
        assert_eq!(s.id, 1);
        assert_eq!(super::super::header(&s.headers, "streamtype"), Some("data"));
        let mut got = Vec::new();
        s.reader.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"ping?");
        s.writer.write(b"pong!").await.unwrap();
        s.writer.finish().await;
        s.writer.finish().await;

        let mut inflate = HeaderDecompressor::new();
        match read_frame(&mut cr).await.unwrap().unwrap() {
            RawFrame::Control { kind: k, body, .. } => {
                assert_eq!(k, kind::SYN_REPLY);
                assert_eq!(stream_id_at(&body, 0), Some(1));
                assert!(inflate.decompress(&body[4..]).unwrap().is_empty());
            }
            other => panic!("expected SYN_REPLY, got {other:?}"),
        }
        assert_eq!(read_frame(&mut cr).await.unwrap(), Some(RawFrame::Control { kind: kind::PING, flags: 0, body: vec![0, 0, 0, 1] }));
        assert_eq!(read_frame(&mut cr).await.unwrap(), Some(RawFrame::Data { stream_id: 1, flags: 0, data: b"pong!".to_vec() }));
        assert_eq!(read_frame(&mut cr).await.unwrap(), Some(RawFrame::Data { stream_id: 1, flags: FLAG_FIN, data: vec![] }));
        session.close().await;
        assert!(matches!(read_frame(&mut cr).await.unwrap(), Some(RawFrame::Control { kind: kind::GOAWAY, .. })));
        assert_eq!(read_frame(&mut cr).await.unwrap(), None, "connection shut down after GOAWAY");
    }
}
