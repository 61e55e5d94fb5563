//! Statuses of running containers, valid for as long as their shim lives.
//!
//! A running container's `status.json` changes only when its shim records the exit, and the
//! shim exits right after writing it. So once a container was read as Running with a live
//! shim, a pidfd on that shim answers "unchanged?" with one non-blocking `poll`, instead of
//! stat-ing, reading and parsing the status file and reading `/proc/PID/stat`. The node
//! agent asks for every container of every idle pod each second; with 100 pods those file
//! reads were half of the agent's idle CPU.

use std::collections::HashMap;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::sync::Mutex;

use super::types::{ContainerStatus, Phase};

/// Running containers by id: their shim's pidfd and the status read when it was opened.
#[derive(Default)]
pub(crate) struct RunningStatuses {
    entries: Mutex<HashMap<String, (OwnedFd, ContainerStatus)>>,
}

/// A pidfd for `pid`, or None (no such process, or a kernel without pidfd_open).
#[allow(unsafe_code)]
fn pidfd_open(pid: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1; a
    // non-negative result is a descriptor this process now owns.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Whether the process behind `pidfd` has exited (its pidfd polls readable then).
fn exited(pidfd: &OwnedFd) -> bool {
    let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
    !matches!(poll(&mut fds, PollTimeout::ZERO), Ok(0))
}

impl RunningStatuses {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (OwnedFd, ContainerStatus)>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The remembered status of `id`, if its shim still lives.
    pub(crate) fn get(&self, id: &str) -> Option<ContainerStatus> {
        let mut entries = self.lock();
        let (pidfd, status) = entries.get(id)?;
        if exited(pidfd) {
            entries.remove(id);
            return None;
        }
        Some(status.clone())
    }

    /// Remember `status` (just read from the file) when it is Running with a live shim.
    /// `still_alive` re-confirms the shim after the pidfd is open, so a pid reused between
    /// the caller's check and the open is never taken for the shim.
    pub(crate) fn remember(&self, id: &str, status: &ContainerStatus, still_alive: impl Fn(i32) -> bool) {
        let Some(pid) = status.shim_pid.filter(|_| status.phase == Phase::Running) else { return };
        let Some(pidfd) = pidfd_open(pid) else { return };
        if still_alive(pid) && !exited(&pidfd) {
            self.lock().insert(id.to_string(), (pidfd, status.clone()));
        }
    }

    /// A new descriptor on the shim of running container `id` that polls readable once
    /// the shim exits (it records the container's exit first), or None when `id` is not
    /// known to run.
    pub(crate) fn exit_fd(&self, id: &str) -> Option<OwnedFd> {
        let entries = self.lock();
        let (pidfd, _) = entries.get(id)?;
        pidfd.try_clone().ok()
    }

    /// Forget `id` (stopped, removed, or about to change through this runtime).
    pub(crate) fn forget(&self, id: &str) {
        self.lock().remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A process standing in for a shim, and container c1's Running status naming it.
    fn stand_in_shim() -> (std::process::Child, ContainerStatus) {
        let child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let mut status = ContainerStatus::new("c1", Phase::Running);
        status.shim_pid = Some(child.id() as i32);
        (child, status)
    }

    #[test]
    fn a_status_is_kept_until_its_process_exits() {
        let (mut child, status) = stand_in_shim();
        let running = RunningStatuses::default();
        running.remember("c1", &status, |_| true);
        assert_eq!(running.get("c1").map(|s| s.phase), Some(Phase::Running));

        // Not remembered: a created container, or a shim the re-check refuses.
        let created = ContainerStatus { phase: Phase::Created, ..status.clone() };
        running.remember("c2", &created, |_| true);
        running.remember("c3", &status, |_| false);
        assert!(running.get("c2").is_none() && running.get("c3").is_none());

        child.kill().unwrap();
        child.wait().unwrap();
        assert!(running.get("c1").is_none(), "an exited shim invalidates the status");
        running.remember("c1", &status, |_| true);
        assert!(running.get("c1").is_none(), "a dead pid is never remembered");
    }

    #[test]
    fn exit_fds_poll_readable_once_the_process_exits() {
        let (mut child, status) = stand_in_shim();
        let running = RunningStatuses::default();
        assert!(running.exit_fd("c1").is_none(), "unknown containers have none");
        running.remember("c1", &status, |_| true);
        let fd = running.exit_fd("c1").expect("a running container has one");
        assert!(!exited(&fd));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(exited(&fd), "readable after the exit");
        running.forget("c1");
        assert!(exited(&fd), "the caller's descriptor outlives the entry");
    }

    #[test]
    fn forget_drops_the_entry() {
        let (mut child, status) = stand_in_shim();
        let running = RunningStatuses::default();
        running.remember("c1", &status, |_| true);
        running.forget("c1");
        assert!(running.get("c1").is_none());
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
