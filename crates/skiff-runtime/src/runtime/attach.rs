//! The agent's handles on interactive streams: an attach session to a container's main
//! process ([`AttachSession`]) and the terminal of a streaming exec ([`StreamingExec`]).

use std::fs::File;
use std::io::{BufRead, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

/// An attach session, as [`Runtime::attach`](super::Runtime::attach) opens it. The streams
/// are plain descriptors (pipes, or the terminal master for stdin); the session lasts until
/// the container exits (after its output is drained) or [`SessionControl::end`] is called.
#[derive(Debug)]
pub struct AttachSession {
    /// Writes to the container's stdin; dropping it closes stdin for `stdinOnce`
    /// containers. `None` when not asked for or when the container has no stdin.
    pub stdin: Option<File>,
    /// The container's stdout (with a terminal: all its output), from now on.
    pub stdout: Option<File>,
    /// The container's stderr (never with a terminal).
    pub stderr: Option<File>,
    /// The container runs on a terminal.
    pub tty: bool,
    /// Resizes, and the session's end.
    pub control: SessionControl,
}

/// The control connection of an attach session.
#[derive(Debug)]
pub struct SessionControl {
    conn: UnixStream,
}

impl SessionControl {
    /// Wraps the connection to whatever serves the session (the shim, or a fake).
    pub fn new(conn: UnixStream) -> Self {
        Self { conn }
    }

    /// A second handle on the same session (to wait on one while resizing through another).
    pub fn try_clone(&self) -> std::io::Result<Self> {
        Ok(Self {
            conn: self.conn.try_clone()?,
        })
    }

    /// Sets the container's terminal size (ignored without a terminal).
    pub fn resize(&self, rows: u16, cols: u16) -> std::io::Result<()> {
        (&self.conn).write_all(format!("resize {rows} {cols}\n").as_bytes())
    }

    /// Blocks until the session ends: the container exited and its output was drained,
    /// or [`SessionControl::end`] was called.
    pub fn wait(&self) {
        let mut r = std::io::BufReader::new(&self.conn);
        let mut line = String::new();
        while matches!(r.read_line(&mut line), Ok(n) if n > 0) {
            line.clear();
        }
    }

    /// Ends the session: the shim stops copying output to it (and, for `stdinOnce`
    /// containers, closes stdin); a blocked [`SessionControl::wait`] returns.
    pub fn end(&self) {
        let _ = self.conn.shutdown(Shutdown::Both);
    }
}

/// A command running an exec with the caller's stdio, as
/// [`Runtime::exec_streaming`](super::Runtime::exec_streaming) prepares it.
#[derive(Debug)]
pub struct StreamingExec {
    /// The command to spawn (the exec shim).
    pub command: std::process::Command,
    /// Resizes its terminal (with a tty only).
    pub resize: Option<ExecResizer>,
}

/// Sends terminal sizes to an exec shim through a FIFO; removes the FIFO when dropped.
#[derive(Debug)]
pub struct ExecResizer {
    fifo: File,
    path: PathBuf,
}

impl ExecResizer {
    /// Wraps a FIFO open for writing (non-blocking, so a shim that stopped reading never
    /// stalls the caller) and the path to remove afterwards.
    pub fn new(fifo: File, path: PathBuf) -> Self {
        Self { fifo, path }
    }

    /// Sets the terminal size; sizes sent before the exec starts apply when it does.
    pub fn resize(&self, rows: u16, cols: u16) -> std::io::Result<()> {
        // One short write: FIFO writes under PIPE_BUF bytes arrive whole.
        (&self.fifo).write_all(format!("{rows} {cols}\n").as_bytes())
    }
}

impl Drop for ExecResizer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
