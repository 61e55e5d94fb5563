//! Running one plugin: found by its `type` in the plugin directories, given the CNI_*
//! environment and its configuration on stdin, and killed (with anything it started) if it
//! outlives the time limit, so a hung plugin cannot hold a pod worker forever.

use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{self, Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::error::CniError;

/// The CNI commands the agent runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Attach the sandbox.
    Add,
    /// Detach it.
    Del,
}

impl Command {
    /// CNI_COMMAND's value.
    pub fn name(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
        }
    }
}

/// The environment of one plugin call (the spec's parameters).
#[derive(Debug, Clone)]
pub struct Invocation<'a> {
    /// ADD or DEL.
    pub command: Command,
    /// CNI_CONTAINERID: the sandbox id.
    pub container_id: &'a str,
    /// CNI_NETNS: the pinned network namespace (empty on a DEL whose namespace is gone).
    pub netns: &'a str,
    /// CNI_IFNAME: the interface inside the sandbox.
    pub ifname: &'a str,
    /// CNI_ARGS: `K=V;K=V`.
    pub args: &'a str,
}

/// What a plugin did.
#[derive(Debug)]
pub struct Outcome {
    /// How it ended.
    pub status: ExitStatus,
    /// Everything it printed on stdout.
    pub stdout: Vec<u8>,
    /// Everything it printed on stderr.
    pub stderr: Vec<u8>,
}

impl Outcome {
    /// The exit status in words (`exit status 1`, `killed by signal 9`).
    pub fn status_text(&self) -> String {
        match (self.status.code(), self.status.signal()) {
            (Some(code), _) => format!("exit status {code}"),
            (None, Some(sig)) => format!("killed by signal {sig}"),
            _ => "unknown exit status".into(),
        }
    }
}

/// The plugin directories as CNI_PATH (`:`-separated).
pub fn cni_path(bin_dirs: &[PathBuf]) -> String {
    bin_dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(":")
}

/// The executable for plugin `kind`: the first directory that has it.
pub fn find_plugin(bin_dirs: &[PathBuf], kind: &str) -> Result<PathBuf, CniError> {
    bin_dirs
        .iter()
        .map(|d| d.join(kind))
        .find(|p| p.is_file())
        .ok_or_else(|| CniError::PluginNotFound { plugin: kind.to_string(), path: cni_path(bin_dirs) })
}

/// ETXTBSY: the executable is still open for writing somewhere, as when a plugin is being
/// installed or another thread's fork briefly holds the file that was just written.
const TEXT_FILE_BUSY: i32 = 26;

fn spawn(cmd: &mut process::Command) -> std::io::Result<Child> {
    let mut tries = 0;
    loop {
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(TEXT_FILE_BUSY) && tries < 20 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(25));
            }
            r => return r,
        }
    }
}

fn reader<R: Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut buf);
        }
        buf
    })
}

/// Runs `program` for `inv` with `stdin` as its input; `Ok(None)` means it was killed after
/// `timeout`. The plugin inherits the agent's environment (plugins such as `bridge` with
/// `ipMasq` run `iptables` from PATH) plus the CNI_* variables.
pub fn run(program: &Path, bin_dirs: &[PathBuf], inv: &Invocation<'_>, stdin: &[u8], timeout: Duration) -> std::io::Result<Option<Outcome>> {
    let mut cmd = process::Command::new(program);
    cmd.env("CNI_COMMAND", inv.command.name())
        .env("CNI_CONTAINERID", inv.container_id)
        .env("CNI_NETNS", inv.netns)
        .env("CNI_IFNAME", inv.ifname)
        .env("CNI_ARGS", inv.args)
        .env("CNI_PATH", cni_path(bin_dirs))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a timeout kills the IPAM plugin it may have started too.
        .process_group(0);
    let mut child = spawn(&mut cmd)?;
    let input = stdin.to_vec();
    let mut pipe = child.stdin.take();
    // Written from a thread: a plugin may print before it has read all of its input.
    let writer = std::thread::spawn(move || {
        if let Some(p) = pipe.as_mut() {
            let _ = p.write_all(&input);
        }
    });
    let out = reader(child.stdout.take());
    let err = reader(child.stderr.take());
    let started = Instant::now();
    let mut pause = Duration::from_millis(2);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if started.elapsed() >= timeout {
            let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    };
    let _ = writer.join();
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    Ok(status.map(|status| Outcome { status, stdout, stderr }))
}
