//! A [`StreamingBackend`] that runs host processes instead of containers: for tests of the
//! streaming protocols and for trying the server without a runtime. Not for production use:
//! it spawns from the calling (threaded) process, which the real kubelet must never do.
//!
//! Logs are CRI files at `<log_dir>/<namespace>_<pod>/<container>/current.log` (and
//! `previous.log`); port-forward connects to 127.0.0.1, through an optional port map so a
//! test can stand a server on an ephemeral port behind "port 80".

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Mutex;

use async_trait::async_trait;

use super::{Duplex, ExecOptions, ExecProcess, Result, StreamingBackend, StreamingError, TerminalSize};

/// Runs commands on the host; see the module docs.
#[derive(Debug, Default)]
pub struct LocalBackend {
    /// Root of the per-container log files.
    pub log_dir: PathBuf,
    /// Pod port -> host port on 127.0.0.1 (unmapped ports are used as they are).
    pub ports: Mutex<HashMap<u16, u16>>,
    /// Containers whose log is finished (`logs -f` ends for them).
    pub stopped: Mutex<Vec<(String, String, String)>>,
}

impl LocalBackend {
    /// A backend keeping logs under `log_dir`.
    pub fn new(log_dir: impl Into<PathBuf>) -> Self {
        Self { log_dir: log_dir.into(), ..Default::default() }
    }

    /// Where a container's current (or previous) log lives.
    pub fn log_path(&self, namespace: &str, pod: &str, container: &str, previous: bool) -> PathBuf {
        let file = if previous { "previous.log" } else { "current.log" };
        self.log_dir.join(format!("{namespace}_{pod}")).join(container).join(file)
    }
}

fn spawn_err(cmd: &[String]) -> impl FnOnce(std::io::Error) -> StreamingError + '_ {
    move |e| StreamingError::Runtime(format!("starting {cmd:?}: {e}"))
}

#[async_trait]
impl StreamingBackend for LocalBackend {
    async fn log_file(&self, namespace: &str, pod: &str, container: &str, previous: bool) -> Result<PathBuf> {
        let p = self.log_path(namespace, pod, container, previous);
        if !p.exists() {
            return Err(StreamingError::ContainerNotFound {
                namespace: namespace.into(),
                pod: pod.into(),
                container: if previous { format!("{container} (previous instance)") } else { container.into() },
            });
        }
        Ok(p)
    }

    async fn container_running(&self, namespace: &str, pod: &str, container: &str) -> bool {
        let key = (namespace.to_string(), pod.to_string(), container.to_string());
        !self.stopped.lock().expect("not poisoned").contains(&key)
    }

    async fn exec(&self, _ns: &str, _pod: &str, _container: &str, command: Vec<String>, opts: ExecOptions) -> Result<ExecProcess> {
        if command.is_empty() {
            return Err(StreamingError::BadRequest("empty command".into()));
        }
        if opts.tty {
            return exec_tty(command);
        }
        let pipe = |on: bool| if on { Stdio::piped() } else { Stdio::null() };
        let mut child = tokio::process::Command::new(&command[0])
            .args(&command[1..])
            .stdin(pipe(opts.stdin))
            .stdout(pipe(opts.stdout))
            .stderr(pipe(opts.stderr))
            .kill_on_drop(true)
            .spawn()
            .map_err(spawn_err(&command))?;
        let stdin = child.stdin.take().map(|s| Box::new(s) as super::BoxWrite);
        let stdout = child.stdout.take().map(|s| Box::new(s) as super::BoxRead);
        let stderr = child.stderr.take().map(|s| Box::new(s) as super::BoxRead);
        let exit = Box::pin(async move {
            let st = child.wait().await.map_err(StreamingError::io("waiting for exec process"))?;
            // A signal death reports 128+signal, as shells do.
            Ok(st.code().unwrap_or_else(|| 128 + std::os::unix::process::ExitStatusExt::signal(&st).unwrap_or(0)))
        });
        Ok(ExecProcess { stdin, stdout, stderr, resize: None, exit })
    }

    async fn port_forward(&self, _ns: &str, _pod: &str, port: u16) -> Result<Box<dyn Duplex>> {
        let target = self.ports.lock().expect("not poisoned").get(&port).copied().unwrap_or(port);
        let s = tokio::net::TcpStream::connect(("127.0.0.1", target))
            .await
            .map_err(StreamingError::io(format!("connecting to 127.0.0.1:{target}")))?;
        Ok(Box::new(s))
    }
}

/// Run `command` on a new pseudo-terminal; both directions go through the master side.
fn exec_tty(command: Vec<String>) -> Result<ExecProcess> {
    let pty = nix::pty::openpty(None, None).map_err(|e| StreamingError::Runtime(format!("openpty: {e}")))?;
    let master = std::fs::File::from(pty.master);
    let slave = std::fs::File::from(pty.slave);
    let dup = |f: &std::fs::File| f.try_clone().map_err(StreamingError::io("duplicating pty"));
    let mut child = tokio::process::Command::new(&command[0])
        .args(&command[1..])
        .stdin(Stdio::from(dup(&slave)?))
        .stdout(Stdio::from(dup(&slave)?))
        .stderr(Stdio::from(dup(&slave)?))
        .kill_on_drop(true)
        .spawn()
        .map_err(spawn_err(&command))?;
    // Our copies of the slave must go, or the master never sees EOF (EIO) after the exit.
    drop(slave);
    let reader = tokio::fs::File::from_std(dup(&master)?);
    let writer = tokio::fs::File::from_std(dup(&master)?);
    let resize: super::ResizeFn = Box::new(move |size: TerminalSize| set_window_size(&master, size));
    let exit = Box::pin(async move {
        let st = child.wait().await.map_err(StreamingError::io("waiting for exec process"))?;
        Ok(st.code().unwrap_or(128))
    });
    Ok(ExecProcess { stdin: Some(Box::new(writer)), stdout: Some(Box::new(reader)), stderr: None, resize: Some(resize), exit })
}

fn set_window_size(master: &std::fs::File, size: TerminalSize) {
    let ws = rustix::termios::Winsize { ws_row: size.height, ws_col: size.width, ws_xpixel: 0, ws_ypixel: 0 };
    if let Err(e) = rustix::termios::tcsetwinsize(master, ws) {
        tracing::debug!(error = %e, "pty resize failed");
    }
}
