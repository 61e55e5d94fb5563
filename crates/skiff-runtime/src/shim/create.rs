//! `shim create`: create the container, then supervise it until it exits.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::{Duration, Instant};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::Container;
use libcontainer::syscall::syscall::SyscallType;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, pipe2, ForkResult, Pid};

use super::attach::Attachments;
use super::client::{socket_path_via, write_status, SOCKET_NAME, STATUS_FILE};
use super::confine::Confinement;
use super::fds::recv_with_fds;
use super::log::{timestamp, LineSplitter, Stream};
use super::CreateArgs;
use crate::cgroups;
use crate::error::{Error, IoContext, Result, SysContext};
use crate::runtime::types::{ContainerStatus, Phase};

/// How long to keep reading output after the container exited: its pipes close as soon as
/// every process in its pid namespace is gone, so this only bounds pathological cases.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);
/// Name of the console socket (in the state directory) libcontainer sends the terminal
/// master over; it exists only while the container is being created.
const CONSOLE_NAME: &str = "console.sock";
/// How long after creating or starting its container the shim waits before shrinking its
/// resident set. Not at once: the agent's start request and a short-lived container's exit
/// follow within milliseconds, and trimming (a walk of the process's mappings and unmapping
/// megabytes of pages) would delay both; a container that has exited by then never costs it.
pub const IDLE_TRIM_DELAY: Duration = Duration::from_secs(1);

/// Forks; the parent relays the child's readiness report and exits, the child supervises the
/// container. Returns the parent's exit code.
#[allow(unsafe_code)]
pub(super) fn run(args: &CreateArgs) -> i32 {
    let (ready_r, ready_w) = match pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: create readiness pipe: {e}");
            return 1;
        }
    };
    // SAFETY: `shim create` runs right after exec of the shim program, before anything could
    // start a thread, so the child gets a consistent copy of a single-threaded process.
    match unsafe { fork() } {
        Err(e) => {
            eprintln!("error: fork shim: {e}");
            1
        }
        Ok(ForkResult::Parent { .. }) => {
            drop(ready_w);
            // One line, not EOF: the container's init inherits the pipe and keeps it open
            // until it execs.
            let mut msg = String::new();
            let _ = BufReader::new(File::from(ready_r)).read_line(&mut msg);
            let msg = msg.trim();
            if msg.starts_with("ok") {
                println!("{msg}");
                0
            } else if msg.is_empty() {
                println!("error: shim exited before reporting");
                1
            } else {
                println!("{msg}");
                1
            }
        }
        Ok(ForkResult::Child) => {
            drop(ready_r);
            std::process::exit(supervise_reporting(args, File::from(ready_w)));
        }
    }
}

/// `shim create` in a child of the zygote: supervises in this process instead of forking
/// again, since nothing waits for this process to exit (the zygote reaps it whenever it
/// ends). The readiness line goes straight to the agent's pipe, our stdout at entry; the
/// agent reads that one line, not to the pipe's end: the container's init holds a copy of
/// it until it execs. Saves a fork and an exit per container.
pub(super) fn run_in_place(args: &CreateArgs) -> i32 {
    match std::io::stdout().as_fd().try_clone_to_owned() {
        Ok(ready) => supervise_reporting(args, File::from(ready)),
        Err(e) => {
            println!("error: duplicate the report pipe: {e}");
            1
        }
    }
}

/// Supervises the container, reporting `ok PID` or the error on `ready`; the exit code.
fn supervise_reporting(args: &CreateArgs, ready: File) -> i32 {
    let mut ready = Some(ready);
    match supervise(args, &mut ready) {
        Ok(()) => 0,
        Err(e) => {
            if let Some(r) = ready.as_mut() {
                let _ = writeln!(r, "error: {e}");
            }
            tracing::error!(container = %args.id, error = %e, "shim failed");
            eprintln!("error: {e}");
            1
        }
    }
}

fn redirect_stdio(state_dir: &Path) -> Result<()> {
    let log = state_dir.join("shim.log");
    let f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .ctx("open shim log", &log)?;
    let null = File::open("/dev/null").ctx("open", "/dev/null")?;
    // The agent waits for EOF on the stdout it gave us, so the long-lived child must let go
    // of it; its own diagnostics go to shim.log.
    nix::unistd::dup2(null.as_raw_fd(), 0).sys(|| "redirect shim stdin".into())?;
    nix::unistd::dup2(f.as_raw_fd(), 1).sys(|| "redirect shim stdout".into())?;
    nix::unistd::dup2(f.as_raw_fd(), 2).sys(|| "redirect shim stderr".into())?;
    Ok(())
}

fn supervise(args: &CreateArgs, ready: &mut Option<File>) -> Result<()> {
    nix::unistd::setsid().sys(|| "setsid".into())?;
    redirect_stdio(&args.state_dir)?;
    // Processes orphaned inside the container's session come back to us to be reaped.
    nix::sys::prctl::set_child_subreaper(true).sys(|| "set child subreaper".into())?;

    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&args.log_path)
        .ctx("open container log", &args.log_path)?;
    let state_dir = File::open(&args.state_dir).ctx("open state dir", &args.state_dir)?;

    let lc_err = |what: &'static str| {
        let id = args.id.clone();
        move |e: libcontainer::error::LibcontainerError| Error::Container {
            id,
            what,
            message: e.to_string(),
        }
    };
    // The container's root, mounted where only this container sees it (see
    // `runtime/rootfs.rs`).
    if let Some(overlay) = crate::runtime::rootfs::read_overlay(&args.bundle)? {
        crate::runtime::rootfs::mount_in_own_namespace(&overlay)?;
    }
    let confinement = Confinement::from_bundle(&args.id, &args.bundle)?;
    let mut builder = ContainerBuilder::new(args.id.clone(), SyscallType::Linux)
        .with_root_path(&args.lc_root)
        .map_err(lc_err("set state root"))?
        .with_executor(confinement.executor());
    // With a terminal, libcontainer's init creates the pty and sends its master over a
    // console socket; otherwise the container gets pipes (and /dev/null or a stdin pipe).
    let mut console = None;
    let mut pipes = None;
    let mut stdin_w = None;
    if args.terminal {
        let path = console_path_via(&state_dir);
        let _ = std::fs::remove_file(args.state_dir.join(CONSOLE_NAME));
        let l = UnixListener::bind(&path)
            .ctx("bind console socket", args.state_dir.join(CONSOLE_NAME))?;
        builder = builder.with_console_socket(Some(&path));
        console = Some(l);
    } else {
        let (out_r, out_w) =
            pipe2(nix::fcntl::OFlag::O_CLOEXEC).sys(|| "create stdout pipe".into())?;
        let (err_r, err_w) =
            pipe2(nix::fcntl::OFlag::O_CLOEXEC).sys(|| "create stderr pipe".into())?;
        let stdin = if args.stdin {
            let (r, w) = pipe2(nix::fcntl::OFlag::O_CLOEXEC).sys(|| "create stdin pipe".into())?;
            stdin_w = Some(w);
            r
        } else {
            OwnedFd::from(File::open("/dev/null").ctx("open", "/dev/null")?)
        };
        builder = builder
            .with_stdin(stdin)
            .with_stdout(out_w)
            .with_stderr(err_w);
        pipes = Some((out_r, err_r));
    }
    let builder = builder.validate_id().map_err(lc_err("validate id"))?;
    let created = builder
        .as_init(&args.bundle)
        .with_systemd(false)
        .with_detach(true)
        .build();
    let container = match created {
        Ok(c) => c,
        Err(e) => {
            // libcontainer leaves its state dir (and maybe a cgroup) behind on failure.
            if let Ok(mut c) = Container::load(args.lc_root.join(&args.id)) {
                let _ = c.delete(true);
            }
            cgroups::remove(&args.cgroups_path);
            let _ = std::fs::remove_file(args.state_dir.join(CONSOLE_NAME));
            return Err(lc_err("create")(e));
        }
    };
    let pid = container.pid().ok_or_else(|| Error::Container {
        id: args.id.clone(),
        what: "create",
        message: "no init pid after create".into(),
    })?;
    let (out, err) = match (console, pipes) {
        (Some(l), _) => {
            let master = receive_terminal(&l, &args.state_dir);
            let _ = std::fs::remove_file(args.state_dir.join(CONSOLE_NAME));
            let master = match master {
                Ok(m) => m,
                Err(e) => {
                    let _ = kill(pid, Signal::SIGKILL);
                    let _ = waitpid(pid, None);
                    if let Ok(mut c) = Container::load(args.lc_root.join(&args.id)) {
                        let _ = c.delete(true);
                    }
                    cgroups::remove(&args.cgroups_path);
                    return Err(e);
                }
            };
            (Some((master, LineSplitter::terminal(Stream::Stdout))), None)
        }
        (None, Some((out_r, err_r))) => (
            Some((out_r, LineSplitter::new(Stream::Stdout))),
            Some((err_r, LineSplitter::new(Stream::Stderr))),
        ),
        (None, None) => unreachable!("either a console or pipes were set up"),
    };

    // Bound only now so that the container's init, which shares our open files until it
    // execs, never holds the listener.
    let _ = std::fs::remove_file(args.state_dir.join(SOCKET_NAME));
    let listener = UnixListener::bind(socket_path_via(&state_dir))
        .ctx("bind control socket", args.state_dir.join(SOCKET_NAME))?;
    listener
        .set_nonblocking(true)
        .ctx("configure control socket", args.state_dir.join(SOCKET_NAME))?;

    let mut status = ContainerStatus::new(&args.id, Phase::Created);
    status.pid = Some(pid.as_raw());
    status.shim_pid = Some(std::process::id() as i32);
    status.created_at = Some(timestamp());
    write_status(&args.state_dir, &status)?;

    // Only now block SIGCHLD: the container's init was forked with our old mask, and a mask
    // inherited by a container would silently change its signal handling.
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    mask.thread_block().sys(|| "block SIGCHLD".into())?;
    let sigfd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .sys(|| "create signalfd".into())?;

    // Closing the pipe after the report lets the parent exit and the agent continue.
    if let Some(mut r) = ready.take() {
        writeln!(r, "ok {}", pid.as_raw()).ctx("report readiness", &args.state_dir)?;
    }

    // Creating the container (spec parsing, libcontainer, the seccomp compiler) is the peak of
    // the shim's heap and of the code it runs; the freed heap pages and the clean code pages
    // go back once the shim has been idle a moment (see `IDLE_TRIM_DELAY`).
    let mut sup = Supervisor {
        args,
        container,
        pid,
        status,
        log,
        out,
        err,
        attach: Attachments::new(args.stdin, args.stdin_once, args.terminal, stdin_w),
        waiters: Vec::new(),
        kill_at: None,
        exited_at: None,
        trim_at: Some(Instant::now() + IDLE_TRIM_DELAY),
    };
    sup.run(&listener, &sigfd)
}

/// The console socket path of the state directory open as `dir` (see [`socket_path_via`]).
fn console_path_via(dir: &File) -> std::path::PathBuf {
    std::path::PathBuf::from(format!("/proc/self/fd/{}/{CONSOLE_NAME}", dir.as_raw_fd()))
}

/// Takes the terminal master the container's init sent over the console socket. The init
/// connected and sent it before `build` returned, so it waits in the socket already; the
/// timeout only guards against a libcontainer that did not.
fn receive_terminal(listener: &UnixListener, state_dir: &Path) -> Result<OwnedFd> {
    let path = state_dir.join(CONSOLE_NAME);
    listener
        .set_nonblocking(true)
        .ctx("configure console socket", &path)?;
    let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
    let _ = poll(&mut fds, PollTimeout::from(10_000u16));
    let (conn, _) = listener.accept().ctx("accept console socket", &path)?;
    conn.set_nonblocking(false)
        .ctx("configure console socket", &path)?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .ctx("configure console socket", &path)?;
    let mut buf = [0u8; 4096];
    let (_, mut fds) = recv_with_fds(&conn, &mut buf).ctx("receive terminal", &path)?;
    if fds.is_empty() {
        return Err(Error::Io {
            what: "receive terminal",
            path,
            source: std::io::Error::other("no terminal descriptor in console socket message"),
        });
    }
    Ok(fds.swap_remove(0))
}

struct Supervisor<'a> {
    args: &'a CreateArgs,
    container: Container,
    pid: Pid,
    status: ContainerStatus,
    log: File,
    /// Container stdout (with a terminal: the master, carrying all output).
    out: Option<(OwnedFd, LineSplitter)>,
    /// Container stderr (never with a terminal).
    err: Option<(OwnedFd, LineSplitter)>,
    attach: Attachments,
    waiters: Vec<UnixStream>,
    kill_at: Option<Instant>,
    exited_at: Option<Instant>,
    /// When to hand back the memory the last create or start used (`IDLE_TRIM_DELAY`).
    trim_at: Option<Instant>,
}

/// What one `poll` entry watches.
#[derive(Clone, Copy)]
enum Source {
    Signals,
    Listener,
    Output(Stream),
    Session(usize),
}

impl Supervisor<'_> {
    fn run(&mut self, listener: &UnixListener, sigfd: &SignalFd) -> Result<()> {
        // The init may have exited before SIGCHLD was blocked.
        self.reap();
        loop {
            if let Some(t) = self.exited_at {
                if (self.out.is_none() && self.err.is_none()) || t.elapsed() >= DRAIN_AFTER_EXIT {
                    return self.finish();
                }
            }
            if self.kill_at.is_some_and(|t| Instant::now() >= t) {
                self.kill_at = None;
                let _ = kill(self.pid, Signal::SIGKILL);
            }
            if self.trim_at.is_some_and(|t| Instant::now() >= t) {
                self.trim_at = None;
                crate::resident::trim();
            }
            let deadline = [
                self.kill_at,
                self.exited_at.map(|t| t + DRAIN_AFTER_EXIT),
                self.trim_at,
            ]
            .into_iter()
            .flatten()
            .min();
            let timeout = match deadline {
                Some(d) => PollTimeout::try_from(d.saturating_duration_since(Instant::now()))
                    .unwrap_or(PollTimeout::MAX),
                None => PollTimeout::NONE,
            };
            let ready: Vec<Source> = {
                let mut sources = vec![Source::Signals, Source::Listener];
                let mut fds = vec![
                    PollFd::new(sigfd.as_fd(), PollFlags::POLLIN),
                    PollFd::new(listener.as_fd(), PollFlags::POLLIN),
                ];
                for (slot, stream) in [(&self.out, Stream::Stdout), (&self.err, Stream::Stderr)] {
                    if let Some((fd, _)) = slot {
                        fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
                        sources.push(Source::Output(stream));
                    }
                }
                for (i, conn) in self.attach.connections() {
                    fds.push(PollFd::new(conn.as_fd(), PollFlags::POLLIN));
                    sources.push(Source::Session(i));
                }
                match poll(&mut fds, timeout) {
                    Ok(_) => {}
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => return Err(e).sys(|| "poll".into()),
                }
                fds.iter()
                    .zip(sources)
                    .filter(|(f, _)| f.revents().is_some_and(|r| !r.is_empty()))
                    .map(|(_, s)| s)
                    .collect()
            };
            let mut sessions = Vec::new();
            for source in ready {
                match source {
                    Source::Output(stream) => self.pump(stream),
                    Source::Signals => {
                        while let Ok(Some(_)) = sigfd.read_signal() {}
                        self.reap();
                    }
                    Source::Listener => {
                        while let Ok((conn, _)) = listener.accept() {
                            self.serve(conn);
                        }
                    }
                    Source::Session(i) => sessions.push(i),
                }
            }
            let master = self
                .attach
                .terminal
                .then_some(())
                .and(self.out.as_ref().map(|(fd, _)| fd));
            self.attach.service(&sessions, master);
        }
    }

    fn pump(&mut self, stream: Stream) {
        let slot = match stream {
            Stream::Stdout => &mut self.out,
            Stream::Stderr => &mut self.err,
        };
        let Some((fd, splitter)) = slot.as_mut() else {
            return;
        };
        let mut buf = [0u8; 32 * 1024];
        match nix::unistd::read(fd.as_raw_fd(), &mut buf) {
            Ok(0) | Err(_) => {
                let _ = splitter.finish(&mut self.log);
                *slot = None;
            }
            Ok(n) => {
                if let Err(e) = splitter.feed(&buf[..n], &mut self.log) {
                    tracing::warn!(container = %self.args.id, error = %e, "writing container log failed");
                }
                self.attach.broadcast(stream, &buf[..n], &self.args.id);
            }
        }
    }

    fn reap(&mut self) {
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(p, code)) if p == self.pid => self.record_exit(code),
                Ok(WaitStatus::Signaled(p, sig, _)) if p == self.pid => {
                    self.record_exit(128 + sig as i32)
                }
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }

    fn record_exit(&mut self, code: i32) {
        self.exited_at = Some(Instant::now());
        self.kill_at = None;
        self.status.phase = Phase::Exited;
        self.status.exit_code = Some(code);
        self.status.finished_at = Some(timestamp());
        let oom = cgroups::oom_kills(&self.args.cgroups_path) > 0;
        self.status.reason = Some(
            if oom {
                "OOMKilled"
            } else if code == 0 {
                "Completed"
            } else {
                "Error"
            }
            .into(),
        );
        if oom {
            self.status.message =
                Some("the container exceeded its memory limit and was killed".into());
        }
    }

    fn serve(&mut self, mut conn: UnixStream) {
        let _ = conn.set_nonblocking(false);
        let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
        let mut line = String::new();
        if BufReader::new(&conn).read_line(&mut line).is_err() {
            return;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.first() == Some(&"attach") {
            let result = if self.exited_at.is_some() || self.status.phase == Phase::Exited {
                Err("container is not running".to_string())
            } else {
                let master = self
                    .attach
                    .terminal
                    .then_some(())
                    .and(self.out.as_ref().map(|(fd, _)| fd));
                match conn.try_clone() {
                    Ok(c) => self.attach.open(c, &words[1..], master),
                    Err(e) => Err(e.to_string()),
                }
            };
            if let Err(e) = result {
                let _ = writeln!(conn, "error: {e}");
            }
            return;
        }
        let starting = words.first() == Some(&"start");
        let reply = match (words.first().copied(), words.get(1).copied()) {
            (Some("start"), _) => Some(self.start()),
            (Some("reopen"), _) => Some(self.reopen_log()),
            (Some("status"), _) => Some(serde_json::to_string(&self.status).unwrap_or_default()),
            (Some("kill"), Some(sig)) => Some(self.signal(sig)),
            (Some("stop"), Some(grace)) => match grace.parse::<u64>() {
                Ok(g) => self.stop(g, conn.try_clone().ok()),
                Err(_) => Some(format!("error: bad grace period {grace:?}")),
            },
            (Some("wait"), _) => match conn.try_clone() {
                Ok(c) => {
                    self.waiters.push(c);
                    None
                }
                Err(e) => Some(format!("error: {e}")),
            },
            _ => Some(format!("error: unknown request {:?}", line.trim())),
        };
        if let Some(r) = reply {
            let _ = writeln!(conn, "{r}");
        }
        if starting {
            // Starting ran code the idle loop never needs again: trim again once idle.
            self.trim_at = Some(Instant::now() + IDLE_TRIM_DELAY);
        }
    }

    /// After the agent renamed the log for rotation, continue in a fresh file at the path.
    fn reopen_log(&mut self) -> String {
        match OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.args.log_path)
        {
            Ok(f) => {
                let _ = self.log.sync_data();
                self.log = f;
                "ok".into()
            }
            Err(e) => format!("error: reopen {}: {e}", self.args.log_path.display()),
        }
    }

    fn start(&mut self) -> String {
        if self.status.phase != Phase::Created {
            return format!("error: container is {:?}, not created", self.status.phase);
        }
        match self.container.start() {
            Ok(()) => {
                self.status.phase = Phase::Running;
                self.status.started_at = Some(timestamp());
                match write_status(&self.args.state_dir, &self.status) {
                    Ok(()) => "ok".into(),
                    Err(e) => format!("error: {e}"),
                }
            }
            Err(e) => format!("error: start: {e}"),
        }
    }

    fn signal(&mut self, sig: &str) -> String {
        let parsed = sig
            .parse::<i32>()
            .ok()
            .and_then(|n| Signal::try_from(n).ok())
            .or_else(|| sig.parse::<Signal>().ok())
            .or_else(|| format!("SIG{sig}").parse::<Signal>().ok());
        match parsed {
            None => format!("error: unknown signal {sig:?}"),
            Some(_) if self.exited_at.is_some() || self.status.phase == Phase::Exited => {
                "ok".into()
            }
            Some(s) => match kill(self.pid, s) {
                Ok(()) => "ok".into(),
                Err(e) => format!("error: kill: {e}"),
            },
        }
    }

    /// SIGTERM now, SIGKILL when the grace period ends; the reply waits for the exit.
    fn stop(&mut self, grace_secs: u64, conn: Option<UnixStream>) -> Option<String> {
        if self.exited_at.is_some() {
            return Some(format!("exited {}", self.status.exit_code.unwrap_or(-1)));
        }
        // A created container never ran its process: there is nothing to ask nicely.
        let first = if grace_secs == 0 || self.status.phase == Phase::Created {
            Signal::SIGKILL
        } else {
            Signal::SIGTERM
        };
        if let Err(e) = kill(self.pid, first) {
            return Some(format!("error: kill: {e}"));
        }
        if first == Signal::SIGTERM {
            let at = Instant::now() + Duration::from_secs(grace_secs);
            self.kill_at = Some(self.kill_at.map_or(at, |t| t.min(at)));
        }
        self.waiters.extend(conn);
        None
    }

    fn finish(&mut self) -> Result<()> {
        for slot in [&mut self.out, &mut self.err] {
            if let Some((_, splitter)) = slot.as_mut() {
                let _ = splitter.finish(&mut self.log);
            }
            *slot = None;
        }
        let _ = self.log.sync_data();
        // Ending the sessions tells attached clients that the output is complete.
        self.attach.close_all();
        let written = write_status(&self.args.state_dir, &self.status);
        // Tear down the cgroup and libcontainer's state; the status file is the record now.
        if let Err(e) = self.container.delete(true) {
            tracing::warn!(container = %self.args.id, error = %e, "libcontainer delete failed");
        }
        cgroups::remove(&self.args.cgroups_path);
        let reply = format!("exited {}", self.status.exit_code.unwrap_or(-1));
        for mut w in self.waiters.drain(..) {
            let _ = writeln!(w, "{reply}");
        }
        let _ = std::fs::remove_file(self.args.state_dir.join(SOCKET_NAME));
        tracing::info!(container = %self.args.id, exit_code = ?self.status.exit_code, file = STATUS_FILE, "container exited");
        written
    }
}
