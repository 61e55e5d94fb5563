//! `shim sandbox`: create a pod's namespaces and pin them with bind mounts.
//!
//! Runs as its own short-lived process because `unshare` changes the calling process's
//! namespaces, which the multi-threaded agent must never do to itself.

use std::os::fd::AsRawFd;
use std::path::Path;

use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};

use super::SandboxArgs;
use crate::error::{IoContext, Result, SysContext};

pub(super) fn run(args: &SandboxArgs) -> i32 {
    match pin(args) {
        Ok(()) => {
            println!("ok");
            0
        }
        Err(e) => {
            println!("error: {e}");
            1
        }
    }
}

fn pin(args: &SandboxArgs) -> Result<()> {
    std::fs::create_dir_all(&args.ns_dir).ctx("create ns dir", &args.ns_dir)?;
    let mut flags = CloneFlags::CLONE_NEWIPC | CloneFlags::CLONE_NEWUTS;
    let mut kinds = vec!["ipc", "uts"];
    if !args.host_network {
        flags |= CloneFlags::CLONE_NEWNET;
        kinds.push("net");
    }
    unshare(flags).sys(|| format!("unshare namespaces for {}", args.ns_dir.display()))?;
    nix::unistd::sethostname(&args.hostname).sys(|| format!("set hostname {:?}", args.hostname))?;
    if !args.host_network {
        loopback_up()?;
    }
    for kind in kinds {
        let target = args.ns_dir.join(kind);
        std::fs::File::create(&target).ctx("create ns file", &target)?;
        let source = Path::new("/proc/self/ns").join(kind);
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
