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

use super::ShimCommand;
use crate::error::{Error, IoContext, Result};
use crate::runtime::types::ContainerStatus;

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
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text.lines().next().unwrap_or("").trim();
        match line.strip_prefix("ok ") {
            Some(pid) if out.status.success() => pid.parse().map_err(|_| Error::Shim {
                id: id.to_string(),
                message: format!("bad readiness report {line:?}"),
            }),
            _ => Err(Error::Shim {
                id: id.to_string(),
                message: if line.is_empty() {
                    format!(
                        "{} ({})",
                        String::from_utf8_lossy(&out.stderr).trim(),
                        out.status
                    )
                } else {
                    line.trim_start_matches("error: ").to_string()
                },
            }),
        }
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
