//! The host mount operations volumes need (tmpfs for memory-backed volumes), behind a trait
//! so that the volume logic can be tested without root.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Mounts and unmounts on the host.
pub trait Mounter: Send + Sync + std::fmt::Debug {
    /// Mount a fresh tmpfs on `target` (an existing directory), size-limited when `size` is
    /// given, with root directory mode `mode`.
    fn mount_tmpfs(&self, target: &Path, size: Option<u64>, mode: u32) -> io::Result<()>;
    /// Unmount whatever is mounted on `target`.
    fn unmount(&self, target: &Path) -> io::Result<()>;
    /// Whether `path` is a mount point.
    fn is_mount_point(&self, path: &Path) -> io::Result<bool>;
}

/// The real host, through `mount(2)` and `/proc/self/mountinfo`.
#[derive(Debug, Default, Clone, Copy)]
pub struct HostMounter;

impl Mounter for HostMounter {
    fn mount_tmpfs(&self, target: &Path, size: Option<u64>, mode: u32) -> io::Result<()> {
        use nix::mount::{mount, MsFlags};
        let mut opts = format!("mode={mode:o}");
        if let Some(s) = size {
            opts.push_str(&format!(",size={s}"));
        }
        // nosuid/nodev: these hold data, never set-uid programs or devices.
        mount(Some("tmpfs"), target, Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some(opts.as_str()))
            .map_err(io::Error::from)
    }

    fn unmount(&self, target: &Path) -> io::Result<()> {
        use nix::mount::{umount2, MntFlags};
        match umount2(target, MntFlags::empty()) {
            // A process still has a file open in it: detach now, the kernel frees it later.
            Err(nix::errno::Errno::EBUSY) => umount2(target, MntFlags::MNT_DETACH).map_err(io::Error::from),
            r => r.map_err(io::Error::from),
        }
    }

    fn is_mount_point(&self, path: &Path) -> io::Result<bool> {
        let info = std::fs::read_to_string("/proc/self/mountinfo")?;
        let path = match std::fs::canonicalize(path) {
            Ok(p) => p,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        let found = mount_points(&info).any(|p| p == path);
        Ok(found)
    }
}

/// Mount points listed in a `/proc/self/mountinfo` text (field 5, octal escapes decoded).
pub fn mount_points(info: &str) -> impl Iterator<Item = PathBuf> + '_ {
    info.lines().filter_map(|l| l.split(' ').nth(4)).map(|p| PathBuf::from(unescape_octal(p)))
}

/// `\040` -> space, as the kernel escapes space, tab, newline and backslash.
fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A test double that records mounts instead of making them.
#[derive(Debug, Default)]
pub struct FakeMounter {
    /// Currently "mounted" targets with their size.
    pub mounted: Mutex<Vec<(PathBuf, Option<u64>)>>,
}

impl Mounter for FakeMounter {
    fn mount_tmpfs(&self, target: &Path, size: Option<u64>, _mode: u32) -> io::Result<()> {
        self.mounted.lock().expect("lock").push((target.to_path_buf(), size));
        Ok(())
    }

    fn unmount(&self, target: &Path) -> io::Result<()> {
        let mut m = self.mounted.lock().expect("lock");
        let before = m.len();
        m.retain(|(p, _)| p != target);
        if m.len() == before {
            return Err(io::Error::from_raw_os_error(nix::libc::EINVAL));
        }
        Ok(())
    }

    fn is_mount_point(&self, path: &Path) -> io::Result<bool> {
        Ok(self.mounted.lock().expect("lock").iter().any(|(p, _)| p == path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mountinfo() {
        let info = "22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw\n\
                    40 22 0:35 / /var/lib/my\\040dir rw - tmpfs tmpfs rw\n";
        let points: Vec<PathBuf> = mount_points(info).collect();
        assert_eq!(points, vec![PathBuf::from("/"), PathBuf::from("/var/lib/my dir")]);
    }
}
