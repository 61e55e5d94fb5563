//! A pod's namespaces (network, IPC, UTS), created and pinned with bind mounts so that they
//! outlive every process of the pod, as CRI-O's `pinns` does, in the mount namespace of a
//! holder process (`skiff shim pins`, see `shim/pins.rs`) rather than the host's.
//!
//! Why not in the host's: every mount there is copied into each new container's mount
//! namespace (libcontainer unshares one per container and makes all of it a slave) and is
//! printed in each of the dozen reads of `/proc/self/mountinfo` libcontainer makes while it
//! creates a container. Three pins per pod in the host's table made each container create
//! slower by the number of pods already running, quadratic over a burst (with 100 pods,
//! 300 of the table's 525 lines were pins). In the holder's namespace no container sees them.
//!
//! How they are made: `unshare` of these three kinds applies to the calling thread only, so a
//! short-lived thread of the agent makes them. It first leaves the agent's file system
//! context (`unshare(CLONE_FS)`, without which a thread of a multi-threaded process cannot
//! change its mount namespace) and joins the holder's mount namespace, then unshares, sets
//! the hostname, brings `lo` up and bind-mounts its own `/proc/thread-self/ns/*` files.
//!
//! How they are used: through the holder's root, `/proc/<holder>/root/<path>`; opening an
//! nsfs file there works for a privileged process as any open does, and `setns` takes the
//! file. How they go: removing a pin's file from the host's namespace makes the kernel
//! detach the mounts on it in every other namespace, so a sandbox's teardown (removing its
//! directory) needs no trip into the holder's.
//!
//! The holder is a session of its own, found again after an agent restart by its pid file
//! and command line. Killing it loses the pins: running containers keep their namespaces,
//! but new containers of those pods cannot join them (as when a pod's pause container is
//! killed elsewhere).

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use nix::fcntl::{Flock, FlockArg};
use nix::mount::{mount, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

use crate::error::{Error, IoContext, Result, SysContext};
use crate::shim::client::ShimProgram;
use crate::shim::pins::{LOCK_FILE, PID_FILE};

/// The agent's side of a runtime's pin holder.
#[derive(Debug)]
pub(super) struct PinHolder {
    shim: ShimProgram,
    state: PathBuf,
    /// Serialises finding or starting the holder within this process.
    starting: Mutex<()>,
}

impl PinHolder {
    /// The holder of the runtime whose state directory is `state`; started on first use.
    pub(super) fn new(shim: ShimProgram, state: &Path) -> Result<Self> {
        let state = std::path::absolute(state).ctx("resolve path", state)?;
        Ok(Self { shim, state, starting: Mutex::new(()) })
    }

    /// Creates a pod's namespaces and pins them in `ns_dir` (files `ipc`, `uts`, and `net`
    /// unless `host_network`) in the holder's mount namespace. Returns the directory as
    /// every other process reaches it (through the holder's root).
    pub(super) fn pin(&self, ns_dir: &Path, hostname: &str, host_network: bool) -> Result<PathBuf> {
        let ns_dir = std::path::absolute(ns_dir).ctx("resolve path", ns_dir)?;
        std::fs::create_dir_all(&ns_dir).ctx("create ns dir", &ns_dir)?;
        let kinds: &[&str] = if host_network { &["ipc", "uts"] } else { &["ipc", "uts", "net"] };
        for kind in kinds {
            let target = ns_dir.join(kind);
            File::create(&target).ctx("create ns file", &target)?;
        }
        // Shared: the holder takes it exclusively before it exits for want of pins.
        let lock_path = self.state.join(LOCK_FILE);
        let lock_file = File::options().create(true).truncate(false).write(true).open(&lock_path).ctx("open", &lock_path)?;
        let _lock = Flock::lock(lock_file, FlockArg::LockShared)
            .map_err(|(_, e)| e)
            .sys(|| format!("lock {}", lock_path.display()))?;
        let pid = self.holder()?;
        let mnt_path = format!("/proc/{pid}/ns/mnt");
        let holder_mnt = File::open(&mnt_path).ctx("open the pin holder's mount namespace", &mnt_path)?;
        let hostname = hostname.to_string();
        let dir = ns_dir.clone();
        let kinds: Vec<&'static str> = kinds.to_vec();
        std::thread::Builder::new()
            .name("skiff-pin-ns".into())
            .spawn(move || pin_on_this_thread(&holder_mnt, &dir, &hostname, &kinds))
            .ctx("start namespace thread", &ns_dir)?
            .join()
            .unwrap_or_else(|_| {
                Err(Error::Shim {
                    id: ns_dir.display().to_string(),
                    message: "namespace thread panicked".into(),
                })
            })?;
        Ok(Path::new(&format!("/proc/{pid}/root")).join(ns_dir.strip_prefix("/").unwrap_or(&ns_dir)))
    }

    /// The running holder's pid, starting one when there is none.
    fn holder(&self) -> Result<i32> {
        let _one = self.starting.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(pid) = running_holder(&self.state) {
            return Ok(pid);
        }
        let mut child = Command::new(&self.shim.program)
            .args(&self.shim.prefix)
            .arg("pins")
            .arg("--state")
            .arg(&self.state)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .ctx("start the pin holder", &self.shim.program)?;
        let mut line = String::new();
        let _ = BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line);
        // The program forks the holder and exits: reap it.
        let _ = child.wait();
        match running_holder(&self.state) {
            Some(pid) if line.trim() == "ready" => Ok(pid),
            _ => Err(Error::Shim {
                id: "pins".into(),
                message: format!("the pin holder did not start: {}", line.trim()),
            }),
        }
    }
}

/// The pid of the pin holder of the runtime whose state directory is `state`, if it runs.
pub fn running_holder(state: &Path) -> Option<i32> {
    let state = std::path::absolute(state).ok()?;
    let pid: i32 = std::fs::read_to_string(state.join(PID_FILE)).ok()?.trim().parse().ok()?;
    // A reused pid would not have this command line; a zombie has none.
    super::liveness::cmdline_contains(pid, &format!("\0pins\0--state\0{}\0", state.display())).then_some(pid)
}

/// Stops the pin holder of the runtime at `state` and removes its files (`skiff killall`);
/// any pins go with it.
pub fn stop_holder(state: &Path) {
    if let Some(pid) = running_holder(state) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    }
    let _ = std::fs::remove_file(state.join(PID_FILE));
    let _ = std::fs::remove_file(state.join(LOCK_FILE));
}

/// Must run on a thread of its own: it leaves the thread in the holder's mount namespace and
/// the pod's namespaces.
fn pin_on_this_thread(holder_mnt: &File, ns_dir: &Path, hostname: &str, kinds: &[&str]) -> Result<()> {
    unshare(CloneFlags::CLONE_FS).sys(|| "unshare the file system context".into())?;
    setns(holder_mnt, CloneFlags::CLONE_NEWNS).sys(|| "join the pin holder's mount namespace".into())?;
    let mut flags = CloneFlags::CLONE_NEWIPC | CloneFlags::CLONE_NEWUTS;
    let net = kinds.contains(&"net");
    if net {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    unshare(flags).sys(|| format!("unshare namespaces for {}", ns_dir.display()))?;
    nix::unistd::sethostname(hostname).sys(|| format!("set hostname {hostname:?}"))?;
    if net {
        loopback_up()?;
    }
    for kind in kinds {
        let target = ns_dir.join(kind);
        // Not /proc/self: that is the thread group leader, still in the agent's namespaces.
        let source = Path::new("/proc/thread-self/ns").join(kind);
        mount(Some(&source), &target, None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .sys(|| format!("pin {kind} namespace at {}", target.display()))?;
    }
    Ok(())
}

/// Brings `lo` up in the new network namespace so that containers of the pod can talk over
/// localhost before (and without) any network plugin.
#[allow(unsafe_code)]
fn loopback_up() -> Result<()> {
    let sock =
        std::net::UdpSocket::bind("0.0.0.0:0").ctx("open socket for loopback setup", "lo")?;
    // SAFETY: `ifreq` is a plain C struct for which all-zero bytes are a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the interface named in `ifr` and writes only into `ifr`,
    // which lives for the duration of the call; the socket fd is open.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr) } < 0 {
        return Err(std::io::Error::last_os_error()).ctx("get loopback flags", "lo");
    }
    // SAFETY: after SIOCGIFFLAGS the union holds the flags member, which is what we access.
    unsafe {
        ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
    }
    // SAFETY: as above; SIOCSIFFLAGS only reads `ifr`.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &ifr) } < 0 {
        return Err(std::io::Error::last_os_error()).ctx("bring loopback up", "lo");
    }
    Ok(())
}
