//! Where a runtime keeps what does not outlive the machine: pod sandboxes (namespace pins,
//! pod files, `/dev/shm` mount points), container bundles and shim state, libcontainer's
//! state. Kept on a tmpfs under [`BASE`], as containerd keeps its bundles in
//! `/run/containerd` and runc its state in `/run/runc`, apart from the runtime root on disk
//! (images, the containers' writable layers, logs).
//!
//! Why: a pod start creates a dozen files and directories there, and on an ext4 disk each
//! creation is an inode allocation (on a file system without a journal, one that skips
//! every recently deleted inode while pods come and go: 16% of the agent's CPU in a burst of
//! 100 pods). On a tmpfs, creating them is a memory allocation, and after a reboot stale
//! sandboxes and bundles are gone with the namespaces and processes they described.

use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};

/// The directory holding every runtime's state directory.
pub const BASE: &str = "/run/skiff";

/// What a state directory holds (see the module docs).
pub const SUBDIRS: [&str; 3] = ["containers", "sandboxes", "libcontainer"];

/// A tag of `root` (the start of a hash of its absolute path) that names what belongs to
/// the runtime at `root` in machine-wide places: its state directory and its cgroup parent.
pub fn tag(root: &Path) -> String {
    use sha2::Digest as _;
    let absolute = std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf());
    let hash = sha2::Sha256::digest(absolute.as_os_str().as_encoded_bytes());
    hash.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// The state directory of the runtime at `root`: `/run/skiff/<tag>`.
pub fn for_root(root: &Path) -> PathBuf {
    Path::new(BASE).join(tag(root))
}

/// Makes sure [`BASE`] is on a tmpfs: when it is not (hosts whose `/run` is on disk, as this
/// project's test machines), mounts one there, private (pins and rootfs mounts below it need
/// not propagate anywhere) and kept after the agent exits, like the cgroup mounts of
/// [`crate::cgroups::mount_missing_v1`]. Returns whether it mounted one.
///
/// A non-empty `BASE` on disk is left alone: mounting over it would hide the state of
/// containers that are running.
pub fn ensure_tmpfs() -> std::io::Result<bool> {
    ensure_tmpfs_at(Path::new(BASE))
}

fn ensure_tmpfs_at(base: &Path) -> std::io::Result<bool> {
    std::fs::create_dir_all(base)?;
    if is_tmpfs(base)? {
        return Ok(false);
    }
    if std::fs::read_dir(base)?.next().is_some() {
        return Err(std::io::Error::other(format!(
            "{} is on disk and not empty; runtime state stays there (unmount nothing, stop the agent and empty it to move it to a tmpfs)",
            base.display()
        )));
    }
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    mount(Some("skiff-state"), base, Some("tmpfs"), flags, Some("mode=0755")).map_err(std::io::Error::from)?;
    mount(None::<&str>, base, None::<&str>, MsFlags::MS_PRIVATE, None::<&str>).map_err(std::io::Error::from)?;
    Ok(true)
}

/// Whether `path` is on a tmpfs.
pub fn is_tmpfs(path: &Path) -> std::io::Result<bool> {
    let st = nix::sys::statfs::statfs(path).map_err(std::io::Error::from)?;
    Ok(st.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC)
}

/// Removes the state directory `dir` if it is empty (a node's data directory is being
/// cleaned up); anything still in it stays.
pub fn remove_if_empty(dir: &Path) {
    for sub in SUBDIRS {
        let _ = std::fs::remove_dir(dir.join(sub));
    }
    let _ = std::fs::remove_dir(dir);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_root_has_its_own_state_dir() {
        let a = for_root(Path::new("/var/lib/skiff/agent/runtime"));
        let b = for_root(Path::new("/tmp/node-2/agent/runtime"));
        assert_ne!(a, b);
        assert!(a.starts_with(BASE) && a.file_name().unwrap().len() == 12);
        assert_eq!(a, for_root(Path::new("/var/lib/skiff/agent/runtime")), "stable across calls");
    }

    #[test]
    fn a_tmpfs_is_recognised() {
        assert!(is_tmpfs(Path::new("/dev/shm")).unwrap());
        assert!(!is_tmpfs(Path::new("/proc")).unwrap());
    }

    #[test]
    fn emptying_removes_only_empty_state() {
        let d = tempfile::tempdir().unwrap();
        let (empty, kept) = (d.path().join("empty"), d.path().join("kept"));
        std::fs::create_dir_all(empty.join("containers")).unwrap();
        std::fs::create_dir_all(kept.join("sandboxes/p")).unwrap();
        remove_if_empty(&empty);
        remove_if_empty(&kept);
        assert!(!empty.exists());
        assert!(kept.join("sandboxes/p").exists());
    }

    /// Needs root: mounts a tmpfs over an empty directory on disk, refuses a non-empty one.
    #[test]
    fn a_tmpfs_is_mounted_over_an_empty_dir_only() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        if is_tmpfs(d.path()).unwrap() {
            eprintln!("skipped: the target dir is on a tmpfs");
            return;
        }
        let base = d.path().join("run-skiff");
        assert!(ensure_tmpfs_at(&base).unwrap(), "mounted");
        let mounted = is_tmpfs(&base).unwrap();
        assert!(!ensure_tmpfs_at(&base).unwrap(), "mounted once");
        nix::mount::umount2(&base, nix::mount::MntFlags::MNT_DETACH).unwrap();
        assert!(mounted);
        std::fs::write(base.join("left"), b"x").unwrap();
        assert!(ensure_tmpfs_at(&base).is_err(), "a non-empty dir on disk is not hidden");
        assert!(!is_tmpfs(&base).unwrap());
    }
}
