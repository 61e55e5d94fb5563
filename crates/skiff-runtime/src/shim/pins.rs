//! `shim pins --state DIR`: the process whose mount namespace holds the runtime's namespace
//! pins (see `runtime/pins.rs` for why they are not in the host's).
//!
//! It forks (the agent waits only for the parent), makes itself a private copy of the host's
//! mount namespace, records its pid in `DIR/`[`PID_FILE`], says `ready` on stdout and then
//! only waits: the agent's threads join its mount namespace to bind pins there. It exits once it has held no pin for a while
//! (every sandbox removed, or the state directory gone: a test's runtime was thrown away),
//! under an exclusive lock on `DIR/`[`LOCK_FILE`] that the agent holds shared while it pins,
//! so that it never exits under a pin being made.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};
use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};

/// The holder's pid, in the state directory.
pub const PID_FILE: &str = "pins.pid";
/// The lock that keeps the holder from exiting while the agent pins.
pub const LOCK_FILE: &str = "pins.lock";
/// How often the holder looks for pins.
const CHECK_EVERY: Duration = Duration::from_secs(5);

/// Runs the holder for the runtime whose state directory is `state`; returns the exit code.
pub(super) fn serve(state: PathBuf) -> i32 {
    // The holder is a grandchild of the agent, adopted by init (or the machine's subreaper)
    // once this parent exits, so that no agent has to wait for it.
    // SAFETY: `shim pins` runs right after exec of the shim program, before anything could
    // start a thread, so the child gets a consistent copy of a single-threaded process.
    #[allow(unsafe_code)]
    match unsafe { nix::unistd::fork() } {
        Err(e) => {
            println!("error: fork the pin holder: {e}");
            return 1;
        }
        Ok(nix::unistd::ForkResult::Parent { .. }) => return 0,
        Ok(nix::unistd::ForkResult::Child) => {}
    }
    match prepare(&state) {
        Ok(()) => {}
        Err(e) => {
            println!("error: {e}");
            return 1;
        }
    }
    let mut idle_checks = 0;
    loop {
        std::thread::sleep(CHECK_EVERY);
        if !state.is_dir() {
            return 0;
        }
        if pins_held(&state) > 0 {
            idle_checks = 0;
            continue;
        }
        idle_checks += 1;
        if idle_checks >= 2 && exit_if_still_idle(&state) {
            return 0;
        }
    }
}

fn prepare(state: &Path) -> std::result::Result<(), String> {
    // Out of the agent's session and process group: stopping the agent leaves pods up.
    let _ = nix::unistd::setsid();
    nix::unistd::chdir("/").map_err(|e| format!("chdir /: {e}"))?;
    unshare(CloneFlags::CLONE_NEWNS).map_err(|e| format!("unshare the mount namespace: {e}"))?;
    // Private: mounts made on the host later do not propagate here, pins made here stay here.
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .map_err(|e| format!("make mounts private: {e}"))?;
    let pid_file = state.join(PID_FILE);
    crate::image::write_replace(&pid_file, format!("{}\n", std::process::id()).as_bytes())
        .map_err(|e| format!("write {}: {e}", pid_file.display()))?;
    println!("ready");
    use std::io::Write;
    std::io::stdout().flush().map_err(|e| format!("report ready: {e}"))?;
    // Let go of the agent's pipe: it reads to the end of our report.
    if let Ok(null) = std::fs::File::options().read(true).write(true).open("/dev/null") {
        let _ = nix::unistd::dup2(null.as_raw_fd(), 0);
        let _ = nix::unistd::dup2(null.as_raw_fd(), 1);
        let _ = nix::unistd::dup2(null.as_raw_fd(), 2);
    }
    Ok(())
}

/// How many namespace pins are mounted under `state`'s sandboxes in this mount namespace.
fn pins_held(state: &Path) -> usize {
    let sandboxes = state.join("sandboxes");
    let Ok(table) = std::fs::read_to_string("/proc/self/mountinfo") else { return 1 };
    table
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|mount_point| Path::new(mount_point).starts_with(&sandboxes))
        .count()
}

/// Exits the holder's duty when no pin is held and no agent is pinning: takes the lock
/// exclusively (without waiting), checks again and removes the pid file while holding it.
fn exit_if_still_idle(state: &Path) -> bool {
    let Ok(file) = std::fs::File::options().create(true).truncate(false).write(true).open(state.join(LOCK_FILE)) else {
        return false;
    };
    let Ok(_lock) = Flock::lock(file, FlockArg::LockExclusiveNonblock) else { return false };
    if pins_held(state) > 0 {
        return false;
    }
    let pid_file = state.join(PID_FILE);
    if std::fs::read_to_string(&pid_file).is_ok_and(|p| p.trim() == std::process::id().to_string()) {
        let _ = std::fs::remove_file(&pid_file);
    }
    // The lock is let go as the holder returns to exit; the pid file is already gone, so
    // an agent that pins next starts a new holder.
    true
}
