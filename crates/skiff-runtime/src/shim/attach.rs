//! Attach sessions of `shim create`: live output, stdin and terminal resizes of the
//! container's main process, for the agent (`kubectl attach`, `kubectl run -i`).
//!
//! The agent asks on the control socket with `attach [stdin] [stdout] [stderr]`. The reply
//! `ok [tty] NAME...` carries, with SCM_RIGHTS, one descriptor per NAME in that order:
//! `stdin` is the write side of the container's stdin (a pipe, or the terminal master),
//! `stdout`/`stderr` are the read sides of fresh pipes the shim copies output into. The
//! connection then stays open as the session: the agent may send `resize ROWS COLS` lines,
//! and either side closing it ends the session. The shim closes it once the container has
//! exited and its output is drained, so the agent sees the end of output and of the session
//! together.
//!
//! Output is copied without ever blocking the container or its log: a reader that falls
//! more than a pipe's capacity (1 MiB) behind loses what did not fit. `stdinOnce` without a
//! terminal hands the shim's own stdin writer to the first session that takes stdin, so the
//! container reads EOF when that session (or just its stdin) ends, as containerd does;
//! with a terminal the master stays (it carries the output) but no later session gets stdin.

use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

use super::fds::{output_pipe, parse_size, send_with_fds, set_winsize, write_nonblocking};
use super::log::Stream;

/// Longest control line accepted from a session.
const MAX_LINE: usize = 1024;

struct Session {
    conn: UnixStream,
    out: Option<OwnedFd>,
    err: Option<OwnedFd>,
    took_stdin: bool,
    pending: Vec<u8>,
    /// Output was dropped for a slow reader (noted once in shim.log).
    lossy: bool,
}

/// The container's stdin and its attach sessions.
pub(super) struct Attachments {
    /// The container runs on a terminal.
    pub(super) terminal: bool,
    stdin: bool,
    stdin_once: bool,
    /// Without a terminal: the shim's write side of the container's stdin pipe.
    stdin_writer: Option<OwnedFd>,
    /// With a terminal: whether sessions may still write to it.
    terminal_stdin: bool,
    sessions: Vec<Session>,
}

impl Attachments {
    pub(super) fn new(
        stdin: bool,
        stdin_once: bool,
        terminal: bool,
        stdin_writer: Option<OwnedFd>,
    ) -> Self {
        Self {
            terminal,
            stdin,
            stdin_once,
            stdin_writer,
            terminal_stdin: stdin && terminal,
            sessions: Vec::new(),
        }
    }

    /// The session connections to poll, by index.
    pub(super) fn connections(&self) -> impl Iterator<Item = (usize, &UnixStream)> {
        self.sessions.iter().map(|s| &s.conn).enumerate()
    }

    /// Opens a session for an `attach` request; `words` are the requested streams. Returns
    /// the error to reply with when the session cannot be opened.
    pub(super) fn open(
        &mut self,
        conn: UnixStream,
        words: &[&str],
        master: Option<&OwnedFd>,
    ) -> Result<(), String> {
        let want = |w: &str| words.contains(&w);
        let mut names = Vec::new();
        let mut sent: Vec<OwnedFd> = Vec::new();
        let mut session = Session {
            conn,
            out: None,
            err: None,
            took_stdin: false,
            pending: Vec::new(),
            lossy: false,
        };
        if want("stdin") && self.stdin {
            let writer = if self.terminal {
                self.terminal_stdin.then_some(master).flatten()
            } else {
                self.stdin_writer.as_ref()
            };
            if let Some(w) = writer {
                sent.push(w.try_clone().map_err(|e| format!("dup stdin: {e}"))?);
                names.push("stdin");
                session.took_stdin = true;
            }
        }
        if want("stdout") {
            let (r, w) = output_pipe().map_err(|e| format!("stdout pipe: {e}"))?;
            sent.push(r);
            session.out = Some(w);
            names.push("stdout");
        }
        if want("stderr") && !self.terminal {
            let (r, w) = output_pipe().map_err(|e| format!("stderr pipe: {e}"))?;
            sent.push(r);
            session.err = Some(w);
            names.push("stderr");
        }
        let mut reply = String::from("ok");
        if self.terminal {
            reply.push_str(" tty");
        }
        for n in &names {
            reply.push(' ');
            reply.push_str(n);
        }
        reply.push('\n');
        let raw: Vec<_> = sent.iter().map(|f| f.as_raw_fd()).collect();
        send_with_fds(&session.conn, reply.as_bytes(), &raw).map_err(|e| format!("send: {e}"))?;
        // Our copies of the read sides must go, or the agent never sees the end of output.
        drop(sent);
        if session.took_stdin && self.stdin_once && !self.terminal {
            // The agent's copy is now the only writer: its close is the container's EOF.
            self.stdin_writer = None;
        }
        session
            .conn
            .set_nonblocking(true)
            .map_err(|e| format!("configure session: {e}"))?;
        self.sessions.push(session);
        Ok(())
    }

    /// Copies output to every session that wants `stream`.
    pub(super) fn broadcast(&mut self, stream: Stream, data: &[u8], id: &str) {
        for s in &mut self.sessions {
            let slot = match stream {
                Stream::Stdout => &mut s.out,
                Stream::Stderr => &mut s.err,
            };
            let Some(w) = slot else { continue };
            match write_nonblocking(w, data) {
                Ok(n) if n < data.len() && !s.lossy => {
                    s.lossy = true;
                    tracing::warn!(container = %id, dropped = data.len() - n, "attach reader too slow; output dropped");
                }
                Ok(_) => {}
                // The reader went away: stop copying this stream to it.
                Err(_) => *slot = None,
            }
        }
    }

    /// Reads from the sessions whose connections polled ready: applies resizes and ends the
    /// sessions the agent closed.
    pub(super) fn service(&mut self, ready: &[usize], master: Option<&OwnedFd>) {
        let mut ended = Vec::new();
        for &i in ready {
            let Some(s) = self.sessions.get_mut(i) else {
                continue;
            };
            let mut buf = [0u8; 512];
            match (&s.conn).read(&mut buf) {
                Ok(0) => ended.push(i),
                Ok(n) => {
                    s.pending.extend_from_slice(&buf[..n]);
                    while let Some(nl) = s.pending.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = s.pending.drain(..=nl).collect();
                        let line = String::from_utf8_lossy(&line);
                        if let (Some(size), Some(m)) =
                            (line.strip_prefix("resize ").and_then(parse_size), master)
                        {
                            set_winsize(m, size.0, size.1);
                        }
                    }
                    if s.pending.len() > MAX_LINE {
                        ended.push(i);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => ended.push(i),
            }
        }
        ended.sort_unstable();
        ended.dedup();
        for i in ended.into_iter().rev() {
            let s = self.sessions.remove(i);
            if s.took_stdin && self.stdin_once {
                self.terminal_stdin = false;
            }
        }
    }

    /// Ends every session (the container is gone and its output drained).
    pub(super) fn close_all(&mut self) {
        self.sessions.clear();
    }
}
