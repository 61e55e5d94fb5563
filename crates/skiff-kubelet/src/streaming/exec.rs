//! exec and attach over WebSocket (`v5.channel.k8s.io`, `v4.channel.k8s.io`) and SPDY
//! (`X-Stream-Protocol-Version` v4 down to v1): wiring the client's streams to a process and
//! reporting how it ended as upstream does.
//!
//! WebSocket messages carry a channel byte first: 0 stdin, 1 stdout, 2 stderr, 3 error
//! (a `Status` in v4+), 4 resize (`{"Width":..,"Height":..}`), and in v5, 255 = "close
//! channel N" so the client can end stdin without closing the connection. SPDY carries the same
//! streams as separate SPDY streams named by their `streamType` header.

use std::time::Duration;

use bytes::Bytes;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use super::spdy::session::{Session, StreamWriter};
use super::websocket::{Message, WsReader, WsWriter};
use super::{ExecProcess, ExecOptions, Result, StreamingError, TerminalSize};

/// WebSocket subprotocols for exec/attach, most preferred first.
pub const WS_PROTOCOLS: &[&str] = &["v5.channel.k8s.io", "v4.channel.k8s.io"];
/// SPDY stream protocol versions for exec/attach, most preferred first.
pub const SPDY_PROTOCOLS: &[&str] = &["v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io"];

/// How long the client may take to open the SPDY streams it asked for.
const STREAM_WAIT: Duration = Duration::from_secs(30);

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;

/// Where one output stream goes.
#[derive(Clone)]
pub enum Sink {
    /// A WebSocket channel.
    Ws(WsWriter, u8),
    /// A SPDY stream.
    Spdy(StreamWriter),
}

impl Sink {
    async fn write(&self, data: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Ws(w, ch) => {
                let mut msg = Vec::with_capacity(data.len() + 1);
                msg.push(*ch);
                msg.extend_from_slice(data);
                w.binary(&msg).await
            }
            Sink::Spdy(s) => s.write(data).await,
        }
    }

    async fn finish(&self) {
        if let Sink::Spdy(s) = self {
            s.finish().await;
        }
    }
}

/// The client's side of an exec, whichever protocol carries it.
pub struct Channels {
    /// Data for the process's stdin; ends when the client closes stdin.
    pub stdin: Option<mpsc::UnboundedReceiver<Bytes>>,
    /// Process stdout.
    pub stdout: Option<Sink>,
    /// Process stderr.
    pub stderr: Option<Sink>,
    /// Error/status channel.
    pub error: Sink,
    /// Terminal size messages (JSON objects, possibly split or concatenated).
    pub resize: Option<mpsc::UnboundedReceiver<Bytes>>,
    /// Report the outcome as a v1 `Status` (v4+) rather than plain text.
    pub status_json: bool,
    /// Resolves (with an error: the sender is dropped) once the client's connection is
    /// gone; the process is then no longer waited for, which ends an attach session.
    pub gone: Option<oneshot::Receiver<()>>,
}

/// The `Status` upstream's kubelet writes on the error channel for an exit code.
pub fn exit_status(code: i32) -> serde_json::Value {
    if code == 0 {
        return json!({"metadata": {}, "status": "Success"});
    }
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!("command terminated with non-zero exit code: error executing command, exit code {code}"),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
    })
}

/// A failure before or while running, as a `Status`.
pub fn error_status(e: &StreamingError) -> serde_json::Value {
    json!({"metadata": {}, "status": "Failure", "message": e.to_string(), "reason": "InternalError", "code": 500})
}

/// Decode terminal sizes from a byte stream of JSON objects.
#[derive(Default)]
pub struct ResizeDecoder {
    buf: Vec<u8>,
}

impl ResizeDecoder {
    /// Feed bytes; returns every complete size seen.
    pub fn push(&mut self, data: &[u8]) -> Vec<TerminalSize> {
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        let mut consumed = 0;
        let mut it = serde_json::Deserializer::from_slice(&self.buf).into_iter::<TerminalSize>();
        loop {
            match it.next() {
                Some(Ok(s)) => {
                    out.push(s);
                    consumed = it.byte_offset();
                }
                Some(Err(e)) if e.is_eof() => break,
                Some(Err(_)) => {
                    // Garbage: drop it rather than wedge the decoder forever.
                    consumed = self.buf.len();
                    break;
                }
                None => break,
            }
        }
        self.buf.drain(..consumed);
        out
    }
}

/// Run `proc` against the client's channels until it exits and its output is drained, then
/// report the outcome on the error channel.
pub async fn run(proc: Result<ExecProcess>, mut ch: Channels) {
    let proc = match proc {
        Ok(p) => p,
        Err(e) => {
            report(&ch, Err(e)).await;
            return;
        }
    };
    let ExecProcess { stdin, stdout, stderr, resize, exit } = proc;
    let mut tasks = Vec::new();
    if let (Some(mut rx), Some(mut w)) = (ch.stdin.take(), stdin) {
        tokio::spawn(async move {
            while let Some(b) = rx.recv().await {
                if w.write_all(&b).await.is_err() || w.flush().await.is_err() {
                    break;
                }
            }
            // Dropping the writer closes the process's stdin (EOF for `cat`, `sh -s`, ...).
            let _ = w.shutdown().await;
        });
    }
    if let (Some(mut rx), Some(resize)) = (ch.resize.take(), resize) {
        tokio::spawn(async move {
            let mut dec = ResizeDecoder::default();
            while let Some(b) = rx.recv().await {
                for size in dec.push(&b) {
                    resize(size);
                }
            }
        });
    }
    for (reader, sink) in [(stdout, ch.stdout.clone()), (stderr, ch.stderr.clone())] {
        let (Some(mut reader), Some(sink)) = (reader, sink) else { continue };
        tasks.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match reader.read(&mut buf).await {
                    // A tty master reports EIO once the last slave fd closes: that is EOF.
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if sink.write(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            }
            sink.finish().await;
        }));
    }
    let code = match ch.gone.take() {
        Some(gone) => tokio::select! {
            code = exit => code,
            _ = gone => {
                tracing::debug!("exec/attach: client went away");
                return;
            }
        },
        None => exit.await,
    };
    for t in tasks {
        let _ = t.await;
    }
    report(&ch, code).await;
}

async fn report(ch: &Channels, outcome: Result<i32>) {
    let body = match (&outcome, ch.status_json) {
        (Ok(code), true) => exit_status(*code).to_string().into_bytes(),
        (Err(e), true) => error_status(e).to_string().into_bytes(),
        (Ok(0), false) => Vec::new(),
        (Ok(code), false) => format!("command terminated with non-zero exit code: exit status {code}").into_bytes(),
        (Err(e), false) => e.to_string().into_bytes(),
    };
    if !body.is_empty() {
        let _ = ch.error.write(&body).await;
    }
    ch.error.finish().await;
    for s in [&ch.stdout, &ch.stderr].into_iter().flatten() {
        s.finish().await;
    }
}

/// Serve an exec/attach over an upgraded WebSocket.
pub async fn serve_websocket(mut reader: WsReader, writer: WsWriter, protocol: &str, opts: ExecOptions, proc: Result<ExecProcess>) {
    let v5 = protocol.starts_with("v5.");
    let (stdin_tx, stdin_rx) = mpsc::unbounded_channel();
    let (resize_tx, resize_rx) = mpsc::unbounded_channel();
    // Upstream announces readiness with an empty message on the lowest output channel.
    let first = if opts.stdout { STDOUT } else if opts.stderr { STDERR } else { ERROR };
    let _ = writer.binary(&[first]).await;
    let (gone_tx, gone_rx) = oneshot::channel::<()>();
    let demux = tokio::spawn(async move {
        let _gone = gone_tx;
        let mut stdin_tx = Some(stdin_tx);
        while let Ok(Some(msg)) = reader.next().await {
            let data = match msg {
                Message::Binary(d) | Message::Text(d) => d,
                Message::Close(_) => break,
            };
            match data.split_first() {
                Some((&STDIN, rest)) => {
                    if let Some(tx) = &stdin_tx {
                        let _ = tx.send(Bytes::copy_from_slice(rest));
                    }
                }
                Some((&RESIZE, rest)) => {
                    let _ = resize_tx.send(Bytes::copy_from_slice(rest));
                }
                Some((&CLOSE, [ch, ..])) if v5 && *ch == STDIN => stdin_tx = None,
                _ => {}
            }
        }
    });
    let ch = Channels {
        stdin: opts.stdin.then_some(stdin_rx),
        stdout: opts.stdout.then(|| Sink::Ws(writer.clone(), STDOUT)),
        stderr: opts.stderr.then(|| Sink::Ws(writer.clone(), STDERR)),
        error: Sink::Ws(writer.clone(), ERROR),
        resize: opts.tty.then_some(resize_rx),
        status_json: true,
        gone: Some(gone_rx),
    };
    run(proc, ch).await;
    let _ = writer.close(1000).await;
    demux.abort();
}

/// Serve an exec/attach over an upgraded SPDY connection: wait for the streams the request
/// announced, then run. `start` starts the process once the streams are there, so a client
/// that never opens them never gets a process.
pub async fn serve_spdy<F>(mut session: Session, protocol: &str, opts: ExecOptions, start: F)
where
    F: std::future::Future<Output = Result<ExecProcess>>,
{
    let resize_supported = !matches!(protocol, "channel.k8s.io" | "v2.channel.k8s.io");
    let want = |t: &str| match t {
        "error" => true,
        "stdin" => opts.stdin,
        "stdout" => opts.stdout,
        "stderr" => opts.stderr,
        "resize" => opts.tty && resize_supported,
        _ => false,
    };
    let expected = ["error", "stdin", "stdout", "stderr", "resize"].iter().filter(|t| want(t)).count();
    let mut streams = std::collections::HashMap::new();
    let deadline = tokio::time::sleep(STREAM_WAIT);
    tokio::pin!(deadline);
    while streams.len() < expected {
        tokio::select! {
            s = session.incoming.recv() => match s {
                Some(s) => {
                    let kind = super::spdy::header(&s.headers, "streamtype").unwrap_or("").to_string();
                    if want(&kind) {
                        streams.insert(kind, s);
                    }
                }
                None => return,
            },
            _ = &mut deadline => {
                tracing::debug!(got = streams.len(), expected, "exec: client did not open its streams in time");
                session.close().await;
                return;
            }
        }
    }
    let pipe = |s: Option<super::spdy::session::SpdyStream>| {
        s.map(|mut s| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(async move {
                while let Some(b) = s.reader.recv().await {
                    if tx.send(b).is_err() {
                        break;
                    }
                }
            });
            rx
        })
    };
    // The session's stream queue ends when the connection does: that is the client going.
    let (gone_tx, gone_rx) = oneshot::channel::<()>();
    let mut incoming = std::mem::replace(&mut session.incoming, mpsc::channel(1).1);
    tokio::spawn(async move {
        while incoming.recv().await.is_some() {}
        drop(gone_tx);
    });
    let error = streams.remove("error").expect("error stream is always expected");
    let stdout = streams.remove("stdout").map(|s| Sink::Spdy(s.writer));
    let stderr = streams.remove("stderr").map(|s| Sink::Spdy(s.writer));
    let ch = Channels {
        stdin: pipe(streams.remove("stdin")),
        resize: pipe(streams.remove("resize")),
        stdout,
        stderr,
        error: Sink::Spdy(error.writer),
        status_json: protocol == "v4.channel.k8s.io",
        gone: Some(gone_rx),
    };
    run(start.await, ch).await;
    session.close().await;
}

/// Options from the query of an exec/attach request.
pub fn options_from_query(query: &[(String, String)]) -> ExecOptions {
    let flag = |k: &str| query.iter().any(|(qk, v)| qk == k && matches!(v.as_str(), "true" | "1"));
    let tty = flag("tty");
    // With a terminal there is no separate stderr: the pty merges it into stdout.
    ExecOptions { stdin: flag("stdin"), stdout: flag("stdout"), stderr: flag("stderr") && !tty, tty }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_become_upstream_statuses() {
        assert_eq!(exit_status(0)["status"], "Success");
        let s = exit_status(3);
        assert_eq!(s["status"], "Failure");
        assert_eq!(s["reason"], "NonZeroExitCode");
        assert_eq!(s["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(s["details"]["causes"][0]["message"], "3");
        let e = error_status(&StreamingError::Runtime("no such container".into()));
        assert_eq!(e["status"], "Failure");
        assert!(e["message"].as_str().unwrap().contains("no such container"));
    }

    #[test]
    fn resize_messages_decode_across_splits() {
        let mut d = ResizeDecoder::default();
        assert!(d.push(br#"{"Width":80,"#).is_empty());
        let got = d.push(br#""Height":24}{"Width":100,"Height":30}"#);
        assert_eq!(got, vec![TerminalSize { width: 80, height: 24 }, TerminalSize { width: 100, height: 30 }]);
        assert!(d.push(b"not json").is_empty());
        assert_eq!(d.push(br#"{"Width":1,"Height":2}"#), vec![TerminalSize { width: 1, height: 2 }]);
    }

    /// A client that hangs up stops the wait for a process that would never end (an attach
    /// session to a long-running container): its resources go with the connection.
    #[tokio::test]
    async fn a_departed_client_ends_the_wait() {
        let (client, server) = tokio::io::duplex(4096);
        let (reader, writer) = super::super::websocket::split(server);
        let (dropped_tx, dropped_rx) = oneshot::channel::<()>();
        let exit: super::super::ExitFuture = Box::pin(async move {
            let _notify_on_drop = dropped_tx;
            std::future::pending::<()>().await;
            Ok(0)
        });
        let proc = ExecProcess { stdin: None, stdout: None, stderr: None, resize: None, exit };
        let opts = ExecOptions { stdin: true, stdout: true, stderr: false, tty: true };
        let served = tokio::spawn(serve_websocket(reader, writer, "v5.channel.k8s.io", opts, Ok(proc)));
        drop(client);
        tokio::time::timeout(Duration::from_secs(5), served).await.expect("serving ends").unwrap();
        assert!(dropped_rx.await.is_err(), "the exit future was dropped");
    }

    #[test]
    fn query_flags() {
        let q = |s: &[(&str, &str)]| s.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>();
        let o = options_from_query(&q(&[("stdin", "true"), ("stdout", "1"), ("stderr", "true"), ("tty", "true")]));
        assert_eq!(o, ExecOptions { stdin: true, stdout: true, stderr: false, tty: true }, "a tty merges stderr");
        assert_eq!(options_from_query(&q(&[("output", "1")])), ExecOptions::default());
    }
}
