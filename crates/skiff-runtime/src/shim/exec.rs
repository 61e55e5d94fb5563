//! `shim exec`: run a process inside a running container and exit with its exit code.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use serde_json::{json, Value};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::confine::Confinement;
use super::fds::{parse_size, recv_with_fds, set_winsize};
use super::ExecArgs;
use crate::error::{Error, IoContext, Result, SysContext};

/// Exit code when the exec itself fails (as `docker exec` and shells use 126).
const EXEC_FAILED: i32 = 126;

pub(super) fn run(args: &ExecArgs) -> i32 {
    match exec(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            EXEC_FAILED
        }
    }
}

fn exec(args: &ExecArgs) -> Result<i32> {
    let lc = |what: &'static str| {
        let id = args.id.clone();
        move |e: libcontainer::error::LibcontainerError| Error::Container {
            id,
            what,
            message: e.to_string(),
        }
    };
    // libcontainer takes ownership of the descriptors it wires to the process, so give it
    // duplicates of ours.
    let stdin = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .ctx("dup stdin", "/proc/self/fd/0")?;
    let stdout = std::io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .ctx("dup stdout", "/proc/self/fd/1")?;
    let stderr = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .ctx("dup stderr", "/proc/self/fd/2")?;
    let env: HashMap<String, String> = args
        .env
        .iter()
        .filter_map(|e| {
            e.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    if let Some(size) = args.tty {
        return exec_tty(args, size, stdin, stdout, stderr, env);
    }
    let confinement = Confinement::from_bundle(&args.id, &bundle_of(args)?)?;
    let pid = ContainerBuilder::new(args.id.clone(), SyscallType::Linux)
        .with_root_path(&args.lc_root)
        .map_err(lc("set state root"))?
        .with_executor(confinement.executor())
        .with_stdin(stdin)
        .with_stdout(stdout)
        .with_stderr(stderr)
        .validate_id()
        .map_err(lc("validate id"))?
        .as_tenant()
        .with_container_args(args.command.clone())
        .with_env(env)
        .with_cwd(args.cwd.as_ref())
        .with_user(args.uid)
        .with_group(args.gid)
        .with_detach(false)
        .build()
        .map_err(lc("exec"))?;
    Ok(Reaper::new(pid)?.wait())
}

/// Waits for the exec'd process while honouring termination requests: SIGTERM, SIGINT or
/// SIGHUP to the shim (the agent giving up on a timed-out exec, say) SIGKILL the process,
/// which would otherwise outlive the shim inside the container.
struct Reaper {
    pid: Pid,
    sigfd: SignalFd,
}

impl Reaper {
    fn new(pid: Pid) -> Result<Self> {
        let mut mask = SigSet::empty();
        for s in [
            Signal::SIGCHLD,
            Signal::SIGTERM,
            Signal::SIGINT,
            Signal::SIGHUP,
        ] {
            mask.add(s);
        }
        // Blocked only after the process was forked, so it keeps the default mask.
        mask.thread_block().sys(|| "block signals".into())?;
        let sigfd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .sys(|| "create signalfd".into())?;
        Ok(Self { pid, sigfd })
    }

    /// Handles pending signals; returns the exit code once the process is gone.
    fn poll_exit(&self) -> Option<i32> {
        while let Ok(Some(info)) = self.sigfd.read_signal() {
            if info.ssi_signo != Signal::SIGCHLD as u32 {
                let _ = kill(self.pid, Signal::SIGKILL);
            }
        }
        match waitpid(self.pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => Some(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => Some(128 + sig as i32),
            Ok(_) => None,
            // Nothing left to wait for (reaped elsewhere): report a failure, not a hang.
            Err(nix::errno::Errno::ECHILD) => Some(EXEC_FAILED),
            Err(_) => None,
        }
    }

    fn wait(&self) -> i32 {
        loop {
            if let Some(code) = self.poll_exit() {
                return code;
            }
            let mut fds = [PollFd::new(self.sigfd.as_fd(), PollFlags::POLLIN)];
            let _ = poll(&mut fds, PollTimeout::NONE);
        }
    }
}

/// Runs the process on a pseudo-terminal. libcontainer hands the terminal's master side
/// over a console socket; the shim then relays stdin to it and its output to stdout until
/// the process is gone.
fn exec_tty(
    args: &ExecArgs,
    (rows, cols): (u16, u16),
    stdin: OwnedFd,
    stdout: OwnedFd,
    stderr: OwnedFd,
    env: HashMap<String, String>,
) -> Result<i32> {
    let lc = |what: &'static str| {
        let id = args.id.clone();
        move |e: libcontainer::error::LibcontainerError| Error::Container {
            id,
            what,
            message: e.to_string(),
        }
    };
    let work = std::env::temp_dir().join(format!("skiff-exec-{}", std::process::id()));
    std::fs::create_dir_all(&work).ctx("create exec dir", &work)?;
    struct Cleanup(PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _cleanup = Cleanup(work.clone());

    // With a terminal, libcontainer takes the whole process from a file rather than from
    // builder arguments: start from the container's own process and override.
    let bundle = bundle_of(args)?;
    let spec_path = bundle.join("config.json");
    let spec: Value = read_json(&spec_path)?;
    let confinement = Confinement::from_bundle(&args.id, &bundle)?;
    let mut process = spec["process"].clone();
    process["terminal"] = json!(true);
    process["args"] = json!(args.command);
    let mut merged: Vec<String> = process["env"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    for (k, v) in &env {
        let prefix = format!("{k}=");
        merged.retain(|e| !e.starts_with(&prefix));
        merged.push(format!("{k}={v}"));
    }
    if !merged.iter().any(|e| e.starts_with("TERM=")) {
        merged.push("TERM=xterm".into());
    }
    process["env"] = json!(merged);
    if let Some(cwd) = &args.cwd {
        process["cwd"] = json!(cwd);
    }
    if let Some(uid) = args.uid {
        process["user"]["uid"] = json!(uid);
    }
    if let Some(gid) = args.gid {
        process["user"]["gid"] = json!(gid);
    }
    let process_path = work.join("process.json");
    std::fs::write(
        &process_path,
        serde_json::to_vec(&process).expect("json values serialize"),
    )
    .ctx("write exec process", &process_path)?;
    let socket_path = work.join("console.sock");
    let listener = UnixListener::bind(&socket_path).ctx("bind console socket", &socket_path)?;

    let pid = ContainerBuilder::new(args.id.clone(), SyscallType::Linux)
        .with_root_path(&args.lc_root)
        .map_err(lc("set state root"))?
        .with_console_socket(Some(&socket_path))
        .with_executor(confinement.executor())
        .validate_id()
        .map_err(lc("validate id"))?
        .as_tenant()
        .with_process(Some(&process_path))
        .with_detach(true)
        .build()
        .map_err(lc("exec"))?;
    drop(stderr);

    let (conn, _) = listener
        .accept()
        .ctx("accept console socket", &socket_path)?;
    let mut buf = [0u8; 4096];
    let (_, mut fds) = recv_with_fds(&conn, &mut buf).ctx("receive terminal", &socket_path)?;
    if fds.is_empty() {
        return Err(Error::Io {
            what: "receive terminal",
            path: socket_path,
            source: std::io::Error::other("no terminal descriptor in console socket message"),
        });
    }
    let master = fds.swap_remove(0);
    let mut sizes = match &args.resize {
        Some(p) => Some(Resizes::open(p)?),
        None => None,
    };
    // The newest size the agent already sent beats the one on the command line.
    let (rows, cols) = sizes
        .as_mut()
        .and_then(Resizes::read)
        .unwrap_or((rows, cols));
    set_winsize(&master, rows, cols);
    let reaper = Reaper::new(pid)?;
    relay(stdin, stdout, &master, &reaper, sizes.as_mut());
    Ok(reaper.wait())
}

/// The container's bundle directory, from libcontainer's state.
fn bundle_of(args: &ExecArgs) -> Result<PathBuf> {
    let state_path = args.lc_root.join(&args.id).join("state.json");
    let state: Value = read_json(&state_path)?;
    Ok(PathBuf::from(state["bundle"].as_str().unwrap_or_default()))
}

/// Terminal sizes the agent writes to a FIFO as `ROWS COLS` lines (each one write of less
/// than PIPE_BUF bytes, so lines arrive whole).
struct Resizes {
    fifo: File,
    pending: Vec<u8>,
}

impl Resizes {
    /// Opened read-write so that it never reports end of file while the agent has it
    /// closed, and non-blocking so that an empty FIFO does not stall the relay.
    fn open(path: &Path) -> Result<Self> {
        let fifo = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .ctx("open resize fifo", path)?;
        Ok(Self {
            fifo,
            pending: Vec::new(),
        })
    }

    /// Drains the FIFO; returns the newest complete size, if any.
    fn read(&mut self) -> Option<(u16, u16)> {
        let mut buf = [0u8; 512];
        while let Ok(n) = (&self.fifo).read(&mut buf) {
            if n == 0 {
                break;
            }
            self.pending.extend_from_slice(&buf[..n]);
        }
        let mut newest = None;
        while let Some(nl) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=nl).collect();
            newest = parse_size(&String::from_utf8_lossy(&line)).or(newest);
        }
        if self.pending.len() > 512 {
            self.pending.clear();
        }
        newest
    }
}

fn read_json(path: &Path) -> Result<Value> {
    let bytes = std::fs::read(path).ctx("read", path)?;
    serde_json::from_slice(&bytes).map_err(|source| Error::Json {
        what: "exec source",
        path: path.to_path_buf(),
        source,
    })
}

/// Copies stdin to the terminal and the terminal to stdout until the terminal closes (its
/// last slave descriptor goes away when the process exits).
fn relay(
    stdin: OwnedFd,
    stdout: OwnedFd,
    master: &OwnedFd,
    reaper: &Reaper,
    mut sizes: Option<&mut Resizes>,
) {
    let mut stdin_open = true;
    let mut buf = [0u8; 16 * 1024];
    loop {
        let mut fds = vec![
            PollFd::new(master.as_fd(), PollFlags::POLLIN),
            PollFd::new(reaper.sigfd.as_fd(), PollFlags::POLLIN),
        ];
        if let Some(s) = &sizes {
            fds.push(PollFd::new(s.fifo.as_fd(), PollFlags::POLLIN));
        }
        let stdin_at = fds.len();
        if stdin_open {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return,
        }
        let ready = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
        let master_ready = ready(&fds[0]);
        let signalled = ready(&fds[1]);
        let resized = sizes.is_some() && ready(&fds[2]);
        let stdin_ready = stdin_open && ready(&fds[stdin_at]);
        drop(fds);
        if resized {
            if let Some((rows, cols)) = sizes.as_mut().and_then(|s| s.read()) {
                set_winsize(master, rows, cols);
            }
        }
        // Only termination requests matter here; the exit itself shows as the terminal
        // closing, after which the caller collects the status.
        if signalled {
            let mut term = false;
            while let Ok(Some(info)) = reaper.sigfd.read_signal() {
                term |= info.ssi_signo != Signal::SIGCHLD as u32;
            }
            if term {
                let _ = kill(reaper.pid, Signal::SIGKILL);
            }
        }
        if master_ready {
            match nix::unistd::read(master.as_raw_fd(), &mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if write_all(&stdout, &buf[..n]).is_err() {
                        return;
                    }
                }
            }
        }
        if stdin_ready {
            match nix::unistd::read(stdin.as_raw_fd(), &mut buf) {
                Ok(0) | Err(_) => stdin_open = false,
                Ok(n) => {
                    let _ = write_all(master, &buf[..n]);
                }
            }
        }
    }
}

fn write_all(fd: &OwnedFd, mut data: &[u8]) -> nix::Result<()> {
    while !data.is_empty() {
        let n = nix::unistd::write(fd, data)?;
        data = &data[n..];
    }
    Ok(())
}
