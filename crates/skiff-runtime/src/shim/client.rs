//! The agent's side of the shim: starting shim processes, talking to their control sockets
//! and reading the status files they write. Nothing here forks; everything is safe to call
//! from a multi-threaded process.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::fds::recv_with_fds;
use super::ShimCommand;
use crate::error::{Error, IoContext, Result};
use crate::runtime::types::{AttachRequest, ContainerStatus};
use crate::runtime::{AttachSession, SessionControl};

/// Name of the control socket in a container's state directory.
pub const SOCKET_NAME: &str = "shim.sock";
/// Name of the status file in a container's state directory.
pub const STATUS_FILE: &str = "status.json";

/// How to start the shim program: `skiff shim` in production, the dev binary in tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShimProgram {
    /// The executable.
    pub program: PathBuf,
    /// Arguments before the shim subcommand, such as `["shim"]`.
    pub prefix: Vec<String>,
}

impl ShimProgram {
    /// The running executable with a `shim` prefix, for binaries that embed the shim.
    pub fn current_exe() -> Result<Self> {
        let program = std::env::current_exe().ctx("find current executable", "/proc/self/exe")?;
        Ok(Self {
            program,
            prefix: vec!["shim".into()],
        })
    }

    /// A `Command` running `cmd`, with stdin closed.
    pub fn command(&self, cmd: &ShimCommand) -> Command {
        let mut c = Command::new(&self.program);
        c.args(&self.prefix)
            .args(cmd.to_args())
            .stdin(Stdio::null());
        c
    }

    /// Runs `shim create` and returns the container's init pid once it is created. The shim
    /// process this starts exits at once; its forked child supervises the container.
    pub fn create(&self, cmd: &ShimCommand, id: &str) -> Result<i32> {
        let out = self
            .command(cmd)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .ctx("run shim", &self.program)?;
        create_report(&out.stdout, &out.stderr, &out.status.to_string(), id)
    }
}

/// The container's init pid from what `shim create` printed: `ok PID` as the first line of
/// `stdout`, or `error: ...`; `exit` describes how the shim ended, for a shim that printed
/// nothing. (A shim exits 0 exactly when it printed `ok`.)
pub(crate) fn create_report(stdout: &[u8], stderr: &[u8], exit: &str, id: &str) -> Result<i32> {
    let text = String::from_utf8_lossy(stdout);
    let line = text.lines().next().unwrap_or("").trim();
    match line.strip_prefix("ok ") {
        Some(pid) => pid.parse().map_err(|_| Error::Shim {
            id: id.to_string(),
            message: format!("bad readiness report {line:?}"),
        }),
        None => Err(Error::Shim {
            id: id.to_string(),
            message: if line.is_empty() {
                format!("{} ({exit})", String::from_utf8_lossy(stderr).trim())
            } else {
                line.trim_start_matches("error: ").to_string()
            },
        }),
    }
}

/// The control socket path of the state directory open as `dir`, through `/proc/self/fd`
/// so that deep data directories do not hit the 108-byte socket path limit.
pub(crate) fn socket_path_via(dir: &File) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}/{SOCKET_NAME}", dir.as_raw_fd()))
}

/// Sends one request line to a shim and returns its one-line reply. `timeout` bounds the
/// wait for the reply (`None` waits forever, for `wait` and `stop`).
pub fn request(
    state_dir: &Path,
    id: &str,
    line: &str,
    timeout: Option<Duration>,
) -> Result<String> {
    let shim_err = |message: String| Error::Shim {
        id: id.to_string(),
        message,
    };
    let dir = File::open(state_dir).ctx("open state dir", state_dir)?;
    let mut conn = UnixStream::connect(socket_path_via(&dir))
        .map_err(|e| shim_err(format!("cannot reach shim (is it running?): {e}")))?;
    conn.set_read_timeout(timeout)
        .map_err(|e| shim_err(e.to_string()))?;
    writeln!(conn, "{line}").map_err(|e| shim_err(format!("send {line:?}: {e}")))?;
    let mut reply = String::new();
    BufReader::new(&conn)
        .read_line(&mut reply)
        .map_err(|e| shim_err(format!("no reply to {line:?}: {e}")))?;
    let reply = reply.trim().to_string();
    if reply.is_empty() {
        return Err(shim_err(format!(
            "shim closed the connection without replying to {line:?}"
        )));
    }
    match reply.strip_prefix("error: ") {
        Some(e) => Err(shim_err(e.to_string())),
        None => Ok(reply),
    }
}

/// Opens an attach session with a container's shim (see the protocol in `shim::attach`).
pub fn attach(state_dir: &Path, request: &AttachRequest) -> Result<AttachSession> {
    let id = request.container_id.as_str();
    let shim_err = |message: String| Error::Shim {
        id: id.to_string(),
        message,
    };
    let dir = File::open(state_dir).ctx("open state dir", state_dir)?;
    let mut conn = UnixStream::connect(socket_path_via(&dir))
        .map_err(|e| shim_err(format!("cannot reach shim (is it running?): {e}")))?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| shim_err(e.to_string()))?;
    let mut line = String::from("attach");
    for (on, name) in [
        (request.stdin, " stdin"),
        (request.stdout, " stdout"),
        (request.stderr, " stderr"),
    ] {
        if on {
            line.push_str(name);
        }
    }
    writeln!(conn, "{line}").map_err(|e| shim_err(format!("send attach: {e}")))?;
    // The reply is one line; the descriptors come with its first byte.
    let mut reply = Vec::new();
    let mut fds = Vec::new();
    while !reply.contains(&b'\n') {
        let mut buf = [0u8; 256];
        let (n, got) = recv_with_fds(&conn, &mut buf)
            .map_err(|e| shim_err(format!("no reply to attach: {e}")))?;
        fds.extend(got);
        if n == 0 {
            break;
        }
        reply.extend_from_slice(&buf[..n]);
    }
    let reply = String::from_utf8_lossy(&reply).trim().to_string();
    if let Some(e) = reply.strip_prefix("error: ") {
        return Err(if e.contains("not running") {
            Error::InvalidState(format!("container {id} is not running"))
        } else {
            shim_err(e.to_string())
        });
    }
    let mut words = reply.split_whitespace();
    if words.next() != Some("ok") {
        return Err(shim_err(format!("bad attach reply {reply:?}")));
    }
    let mut session = AttachSession {
        stdin: None,
        stdout: None,
        stderr: None,
        tty: false,
        control: SessionControl::new(conn.try_clone().map_err(|e| shim_err(e.to_string()))?),
    };
    let mut fds = fds.into_iter();
    for w in words {
        let slot = match w {
            "tty" => {
                session.tty = true;
                continue;
            }
            "stdin" => &mut session.stdin,
            "stdout" => &mut session.stdout,
            "stderr" => &mut session.stderr,
            other => return Err(shim_err(format!("unknown attach stream {other:?}"))),
        };
        let fd = fds
            .next()
            .ok_or_else(|| shim_err(format!("attach reply {reply:?} lacks descriptors")))?;
        *slot = Some(File::from(fd));
    }
    conn.set_read_timeout(None)
        .map_err(|e| shim_err(e.to_string()))?;
    Ok(session)
}

/// Writes a status file atomically.
pub(crate) fn write_status(state_dir: &Path, status: &ContainerStatus) -> Result<()> {
    let path = state_dir.join(STATUS_FILE);
    let bytes = serde_json::to_vec_pretty(status).map_err(|source| Error::Json {
        what: "container status",
        path: path.clone(),
        source,
    })?;
    crate::image::write_replace(&path, &bytes)
}

/// Reads the status file a shim wrote.
pub fn read_status(state_dir: &Path) -> Result<ContainerStatus> {
    let path = state_dir.join(STATUS_FILE);
    let bytes = std::fs::read(&path).ctx("read container status", &path)?;
    serde_json::from_slice(&bytes).map_err(|source| Error::Json {
        what: "container status",
        path,
        source,
    })
}
