//! A pod's namespaces (network, IPC, UTS), created and pinned with bind mounts so that they
//! outlive every process of the pod, as CRI-O's `pinns` does.
//!
//! `unshare` of these three kinds applies to the calling thread only (each thread has its
//! own set of namespaces; only mount and user namespaces need a single-threaded process),
//! so a short-lived thread of the agent makes them: it unshares, sets the hostname, brings
//! `lo` up and bind-mounts its own `/proc/thread-self/ns/*` files, then exits. This used to
//! be a `skiff shim sandbox` process per pod; exec'ing the whole binary for it cost more than
//! everything it did (about 2 ms of CPU per pod, a tenth of a 100-pod burst).

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};

use crate::error::{Error, IoContext, Result, SysContext};

/// Creates the namespaces in `ns_dir` (files `ipc`, `uts`, and `net` unless `host_network`).
pub(super) fn pin_namespaces(ns_dir: &Path, hostname: &str, host_network: bool) -> Result<()> {
    let ns_dir: PathBuf = ns_dir.to_path_buf();
    let hostname = hostname.to_string();
    let what = ns_dir.clone();
    std::thread::Builder::new()
        .name("skiff-pin-ns".into())
        .spawn(move || pin_on_this_thread(&ns_dir, &hostname, host_network))
        .ctx("start namespace thread", &what)?
        .join()
        .unwrap_or_else(|_| {
            Err(Error::Shim {
                id: what.display().to_string(),
                message: "namespace thread panicked".into(),
            })
        })
}

/// Must run on a thread of its own: it leaves the thread in the new namespaces.
fn pin_on_this_thread(ns_dir: &Path, hostname: &str, host_network: bool) -> Result<()> {
    std::fs::create_dir_all(ns_dir).ctx("create ns dir", ns_dir)?;
    let mut flags = CloneFlags::CLONE_NEWIPC | CloneFlags::CLONE_NEWUTS;
    let mut kinds = vec!["ipc", "uts"];
    if !host_network {
        flags |= CloneFlags::CLONE_NEWNET;
        kinds.push("net");
    }
    unshare(flags).sys(|| format!("unshare namespaces for {}", ns_dir.display()))?;
    nix::unistd::sethostname(hostname).sys(|| format!("set hostname {hostname:?}"))?;
    if !host_network {
        loopback_up()?;
    }
    for kind in kinds {
        let target = ns_dir.join(kind);
        std::fs::File::create(&target).ctx("create ns file", &target)?;
        // Not /proc/self: that is the thread group leader, still in the agent's namespaces.
        let source = Path::new("/proc/thread-self/ns").join(kind);
        mount(
            Some(&source),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
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
