//! `shim zygote`: a shim process that forks the shim of each new container instead of the
//! agent executing the program for every one.
//!
//! Starting a container used to exec the whole `skiff` binary (`shim create`): the dynamic
//! loader, glibc's CPU feature probing (dozens of `cpuid` instructions, each a trip to the
//! hypervisor on a virtual machine), the allocator's start-up and the page faults of a fresh
//! image, about a quarter of the shim's CPU in a burst of 100 pods. The zygote pays that
//! once: the agent starts it (single-threaded, like every shim) and sends it one message per
//! container, the `shim create` arguments with the two pipes to report on; the zygote forks,
//! and the child, with the pipes as its stdout and stderr, becomes the container's supervisor
//! itself and reports `ok PID` or `error: ...` as its first line on stdout. (The executed
//! program forks once more and the parent relays that line and exits, because its caller
//! waits for it to exit; here the agent reads the first line, and the zygote reaps the
//! child whenever its container ends.)
//!
//! The child's command line is made the one the executed shim would have, because the agent
//! recognises a container's shim and its helpers by their command lines (`--id ID`,
//! `--lc-root DIR`) after restarts. `prctl(PR_SET_MM_ARG_*)` would need CAP_SYS_RESOURCE,
//! which root lacks on some hosts (this project's test machines), so the zygote is started
//! with room in its own argument area (`--room ....`) and the child writes the new command
//! line over it, as `setproctitle` does; the kernel reads `/proc/PID/cmdline` from there.
//! A request whose command line does not fit is run by executing the shim instead.
//!
//! The zygote serves until its socket closes: the agent exited, or dropped its [`Zygote`].

use std::io::{IoSlice, Read};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{sendmsg, socketpair, AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

use super::client::ShimProgram;
use super::fds::recv_with_fds;
use super::ShimCommand;
use crate::error::{Error, IoContext, Result};

/// Largest request: a `shim create` command line (paths and an id).
const MAX_REQUEST: usize = 64 * 1024;
/// Bytes of room in the zygote's argument area for its children's command lines.
const ROOM: usize = 8 * 1024;
/// What the zygote writes on stdout once it is ready to serve.
const READY: &[u8] = b"ready\n";

/// Why [`Zygote::run`] failed.
#[derive(Debug)]
pub enum ZygoteError {
    /// The request did not reach the zygote (it is gone): nothing was started.
    NotSent(Error),
    /// The request was sent but its outcome is unknown.
    Lost(Error),
}

/// How long after the zygote failed the agent executes shims before starting it again.
pub const RESTART_BACKOFF: Duration = Duration::from_secs(5);

/// The agent's handle on a running zygote.
pub struct Zygote {
    socket: OwnedFd,
    child: Child,
}

impl std::fmt::Debug for Zygote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Zygote").field("pid", &self.child.id()).finish()
    }
}

impl Zygote {
    /// Starts `program`'s zygote for the runtime whose libcontainer state is in `lc_root`
    /// (named on its command line) and waits for it to report ready; an error when it cannot
    /// serve (then shims are executed as before).
    pub fn start(program: &ShimProgram, lc_root: &std::path::Path) -> Result<Self> {
        let (ours, theirs) = socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)
            .map_err(|e| Error::Shim { id: "zygote".into(), message: format!("socketpair: {e}") })?;
        let mut child = Command::new(&program.program)
            .args(&program.prefix)
            .arg("zygote")
            .arg("--lc-root")
            .arg(lc_root)
            .arg("--room")
            .arg(".".repeat(ROOM))
            .stdin(Stdio::from(theirs))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .ctx("start shim zygote", &program.program)?;
        let mut stdout = child.stdout.take().expect("piped");
        let mut first = [0u8; READY.len()];
        let ready = stdout.read_exact(&mut first).is_ok() && first == READY;
        if !ready {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::Shim { id: "zygote".into(), message: "the shim zygote did not start".into() });
        }
        Ok(Self { socket: ours, child })
    }

    /// Runs `shim create` (`cmd`) in a child of the zygote, which becomes the container's
    /// supervisor; returns its report: the first line it wrote on stdout (the pipe stays open
    /// in the container's init until it execs) and all it wrote on stderr (closed as the
    /// supervisor sends its own output to its log), as `Command::output` gives them for an
    /// executed shim.
    pub fn run(&self, cmd: &ShimCommand) -> std::result::Result<(Vec<u8>, Vec<u8>), ZygoteError> {
        let err = |message: String| Error::Shim { id: "zygote".into(), message };
        let not_sent = |m: String| ZygoteError::NotSent(err(m));
        let args = cmd.to_args();
        // The child's command line is the zygote's program and prefix (under 4 KiB in any
        // sane installation) and these arguments; the room is the zygote's whole argument
        // area, more than twice `ROOM`.
        if args.iter().map(|a| a.len() + 1).sum::<usize>() > ROOM {
            return Err(not_sent("command line too long for the zygote's room".into()));
        }
        let (out_r, out_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| not_sent(format!("pipe: {e}")))?;
        let (err_r, err_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| not_sent(format!("pipe: {e}")))?;
        let request = args.join("\0");
        if request.len() > MAX_REQUEST {
            return Err(not_sent("command line too long for the zygote".into()));
        }
        let fds = [out_w.as_raw_fd(), err_w.as_raw_fd()];
        sendmsg::<()>(
            self.socket.as_raw_fd(),
            &[IoSlice::new(request.as_bytes())],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::MSG_NOSIGNAL,
            None,
        )
        .map_err(|e| not_sent(format!("send request: {e}")))?;
        drop((out_w, err_w));
        read_report(out_r, err_r).map_err(|e| ZygoteError::Lost(err(format!("read the shim's report: {e}"))))
    }
}

impl Drop for Zygote {
    fn drop(&mut self) {
        // Closing the socket ends the zygote; the kill covers one stuck in a fork.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads pipe `a` to its first line (or its end) and `b` to its end.
fn read_report(a: OwnedFd, b: OwnedFd) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let (mut a, mut b) = (Some(std::fs::File::from(a)), Some(std::fs::File::from(b)));
    let mut buf = [0u8; 4096];
    while a.is_some() || b.is_some() {
        let mut fds = Vec::new();
        for f in [&a, &b].into_iter().flatten() {
            fds.push(PollFd::new(f.as_fd(), PollFlags::POLLIN));
        }
        poll(&mut fds, PollTimeout::NONE).map_err(std::io::Error::from)?;
        let ready: Vec<bool> = fds.iter().map(|p| p.revents().is_some_and(|r| !r.is_empty())).collect();
        drop(fds);
        let mut i = 0;
        for (first_line_only, slot, sink) in [(true, &mut a, &mut out), (false, &mut b, &mut err)] {
            if slot.is_none() {
                continue;
            }
            if ready[i] {
                let n = slot.as_mut().expect("checked").read(&mut buf)?;
                sink.extend_from_slice(&buf[..n]);
                if n == 0 || (first_line_only && sink.contains(&b'\n')) {
                    *slot = None;
                }
            }
            i += 1;
        }
    }
    Ok((out, err))
}

/// `shim zygote`: serves requests on stdin (a SOCK_SEQPACKET socket) until it closes.
/// `prefix` is the command line before `zygote` (the program and its `shim` word).
pub(super) fn serve(prefix: Vec<String>) -> i32 {
    // Children rewrite the argument area: refuse to serve without one that has room.
    match arg_area() {
        Ok((start, end)) if end - start >= ROOM => {}
        Ok(_) => {
            eprintln!("error: no room for command lines (start with --room); containers need executed shims");
            return 1;
        }
        Err(e) => {
            eprintln!("error: cannot find the argument area ({e}); containers need executed shims");
            return 1;
        }
    }
    {
        use std::io::Write;
        let mut out = std::io::stdout();
        if out.write_all(READY).and_then(|()| out.flush()).is_err() {
            return 1;
        }
    }
    // SAFETY: fd 0 is the socket the agent gave us as stdin; nothing else owns it.
    #[allow(unsafe_code)]
    let socket = unsafe { OwnedFd::from_raw_fd(0) };
    let mut buf = vec![0u8; MAX_REQUEST];
    loop {
        reap();
        let mut fds = [PollFd::new(socket.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(1000u16)) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return 1,
        }
        let (n, passed) = match recv_with_fds(&socket, &mut buf) {
            Ok((0, _)) => return 0, // the agent is gone
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return 1,
        };
        let args: Vec<String> = String::from_utf8_lossy(&buf[..n]).split('\0').map(str::to_string).collect();
        let [out, err] = <[OwnedFd; 2]>::try_from(passed).unwrap_or_else(|fds| {
            // A malformed request: answer on whatever came, then drop it.
            let mut it = fds.into_iter();
            let (a, b) = (it.next(), it.next());
            [a.unwrap_or_else(dev_null), b.unwrap_or_else(dev_null)]
        });
        // SAFETY: this process is single-threaded (shims never start threads), so the child
        // gets a consistent copy of it.
        #[allow(unsafe_code)]
        match unsafe { fork() } {
            Ok(ForkResult::Child) => {
                let code = child(&prefix, args, socket, out, err);
                std::process::exit(code);
            }
            Ok(ForkResult::Parent { .. }) => {}
            Err(e) => {
                let mut f = std::fs::File::from(out);
                let _ = std::io::Write::write_all(&mut f, format!("error: fork shim: {e}\n").as_bytes());
            }
        }
    }
}

/// In the forked child: becomes `PROGRAM shim create ...` on the request's pipes.
fn child(prefix: &[String], args: Vec<String>, socket: OwnedFd, out: OwnedFd, err: OwnedFd) -> i32 {
    // Opened while 0-2 are taken, like `out` and `err` (received then): all three are above
    // 2, so dropping them below never closes the standard descriptors just set up.
    let null = dev_null();
    // The socket is descriptor 0, which /dev/null replaces: give up ownership, not the fd.
    let _ = std::os::fd::IntoRawFd::into_raw_fd(socket);
    for (fd, target) in [(null.as_raw_fd(), 0), (out.as_raw_fd(), 1), (err.as_raw_fd(), 2)] {
        if nix::unistd::dup2(fd, target).is_err() {
            return 1;
        }
    }
    drop((null, out, err));
    if let Err(e) = set_cmdline(&[prefix, args.as_slice()].concat()) {
        println!("error: cannot set the shim's command line: {e}");
        return 1;
    }
    match ShimCommand::parse(&args) {
        Ok(ShimCommand::Create(args)) => super::create::run_in_place(&args),
        Ok(_) => {
            println!("error: the zygote only creates containers");
            2
        }
        Err(e) => {
            println!("error: {e}");
            2
        }
    }
}

fn dev_null() -> OwnedFd {
    std::fs::File::open("/dev/null").map(OwnedFd::from).expect("/dev/null opens")
}

/// Reaps children that have exited (each exits once its container is created).
fn reap() {
    while let Ok(status) = waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
        if matches!(status, WaitStatus::StillAlive) {
            break;
        }
    }
}

/// Where the kernel reads this process's command line: `arg_start` and `arg_end`, fields
/// 48 and 49 of `/proc/self/stat`.
fn arg_area() -> std::io::Result<(usize, usize)> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    let bad = || std::io::Error::other("unexpected /proc/self/stat");
    // Fields after the command name (which may hold spaces) start at field 3.
    let rest: Vec<&str> = stat.rsplit_once(')').ok_or_else(bad)?.1.split_whitespace().collect();
    let field = |n: usize| rest.get(n - 3).and_then(|v| v.parse::<usize>().ok()).ok_or_else(bad);
    let (start, end) = (field(48)?, field(49)?);
    if start == 0 || end <= start {
        return Err(bad());
    }
    Ok((start, end))
}

/// Makes `/proc/self/cmdline` read as `argv` (NUL-separated) by writing it over the argument
/// area, the rest zeroed (the last byte stays NUL, so the kernel reads the area as plain
/// arguments). Only for the forked child: `std::env::args` reads the same memory.
#[allow(unsafe_code)]
fn set_cmdline(argv: &[String]) -> std::io::Result<()> {
    let mut text = Vec::new();
    for a in argv {
        text.extend_from_slice(a.as_bytes());
        text.push(0);
    }
    let (start, end) = arg_area()?;
    if text.len() > end - start {
        return Err(std::io::Error::other("command line longer than the argument area"));
    }
    text.resize(end - start, 0);
    // SAFETY: [start, end) is this process's argument area, the strings the kernel copied
    // onto our stack at exec: mapped and writable for the life of the process. Nothing else
    // runs (single-threaded), and what reads it later (`std::env::args`) finds
    // NUL-terminated strings in it.
    unsafe { std::ptr::copy_nonoverlapping(text.as_ptr(), start as *mut u8, text.len()) };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_is_the_first_line_and_all_of_stderr() {
        let (ar, aw) = nix::unistd::pipe().unwrap();
        let (br, bw) = nix::unistd::pipe().unwrap();
        let writer = std::thread::spawn(move || {
            let (mut a, mut b) = (std::fs::File::from(aw), std::fs::File::from(bw));
            use std::io::Write;
            for i in 0..100 {
                writeln!(b, "err {i}").unwrap();
                writeln!(a, "out {i}").unwrap();
            }
        });
        let (out, err) = read_report(ar, br).unwrap();
        writer.join().unwrap();
        assert!(String::from_utf8(out).unwrap().starts_with("out 0\n"), "the first line");
        assert!(String::from_utf8(err).unwrap().ends_with("err 99\n"), "all of stderr");
        // A first line while the writer keeps its end open (as the container's init does).
        let (ar, aw) = nix::unistd::pipe().unwrap();
        let (br, bw) = nix::unistd::pipe().unwrap();
        let mut held = std::fs::File::from(aw);
        std::io::Write::write_all(&mut held, b"ok 42\n").unwrap();
        drop(bw);
        let (out, err) = read_report(ar, br).unwrap();
        assert_eq!((out.as_slice(), err.as_slice()), (&b"ok 42\n"[..], &b""[..]));
        drop(held);
    }
}
