//! `emptyDir` volumes: a directory under the pod's volume dir, or a tmpfs mounted there for
//! `medium: Memory`. A disk-backed `sizeLimit` is not enforced by the filesystem; eviction
//! compares [`usage`] against it, as upstream's eviction manager does.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::Path;

use k8s_openapi::api::core::v1::EmptyDirVolumeSource;

use super::error::{io_err, SetUpError};
use super::mount::Mounter;
use super::quantity::Quantity;

/// Mode of emptyDir directories: any user of any container may write (kubelet's 0777).
const MODE: u32 = 0o777;

/// Create (or re-check) the emptyDir at `dir`.
pub fn setup(dir: &Path, src: &EmptyDirVolumeSource, mounter: &dyn Mounter) -> Result<(), SetUpError> {
    make_dir(dir, MODE)?;
    match src.medium.as_deref().unwrap_or("") {
        "" => Ok(()),
        "Memory" => {
            if !mounter.is_mount_point(dir).map_err(io_err("checking mount", dir))? {
                let size = size_limit(src)?;
                mounter.mount_tmpfs(dir, size, MODE).map_err(io_err("mounting tmpfs on", dir))?;
                // Some tmpfs implementations ignore mode= (and the fake mounter has none).
                fs::set_permissions(dir, fs::Permissions::from_mode(MODE)).map_err(io_err("chmod", dir))?;
            }
            Ok(())
        }
        other => Err(SetUpError::Medium(other.to_string())),
    }
}

/// `sizeLimit` in bytes, if set.
pub fn size_limit(src: &EmptyDirVolumeSource) -> Result<Option<u64>, SetUpError> {
    match src.size_limit.as_ref() {
        None => Ok(None),
        Some(q) => {
            let v = Quantity::parse(&q.0).ok_or_else(|| SetUpError::BadQuantity(q.0.clone()))?.value();
            Ok(Some(u64::try_from(v).map_err(|_| SetUpError::BadQuantity(q.0.clone()))?))
        }
    }
}

/// Create `dir` (and parents) and give it exactly `mode`, whatever the umask.
pub(super) fn make_dir(dir: &Path, mode: u32) -> Result<(), SetUpError> {
    fs::DirBuilder::new().recursive(true).mode(mode).create(dir).map_err(io_err("creating", dir))?;
    let meta = fs::metadata(dir).map_err(io_err("stat", dir))?;
    if meta.permissions().mode() & 0o7777 != mode {
        fs::set_permissions(dir, fs::Permissions::from_mode(mode)).map_err(io_err("chmod", dir))?;
    }
    Ok(())
}

/// Space and inodes used below a directory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirUsage {
    /// Bytes of allocated blocks (what `du` reports).
    pub bytes: u64,
    /// Files, directories and links.
    pub inodes: u64,
}

/// What `path` uses, counting every hard-linked inode once, never following symlinks nor
/// crossing into other filesystems (a container cannot make eviction walk the host).
pub fn usage(path: &Path) -> io::Result<DirUsage> {
    let root = fs::symlink_metadata(path)?;
    let mut seen = std::collections::HashSet::new();
    let mut total = DirUsage::default();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let meta = match entry.metadata() {
                Ok(m) => m,
                // Removed while walking: the container is busy, not an error.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if meta.dev() != root.dev() || !seen.insert(meta.ino()) {
                continue;
            }
            total.bytes += meta.blocks() * 512;
            total.inodes += 1;
            if meta.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volumes::mount::FakeMounter;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity as Q;

    #[test]
    fn disk_and_memory() {
        let dir = tempfile::tempdir().unwrap();
        let m = FakeMounter::default();
        let disk = dir.path().join("a");
        setup(&disk, &EmptyDirVolumeSource::default(), &m).unwrap();
        assert_eq!(fs::metadata(&disk).unwrap().permissions().mode() & 0o777, 0o777);
        assert!(m.mounted.lock().unwrap().is_empty());

        let mem = dir.path().join("b");
        let src = EmptyDirVolumeSource { medium: Some("Memory".into()), size_limit: Some(Q("64Mi".into())) };
        setup(&mem, &src, &m).unwrap();
        setup(&mem, &src, &m).unwrap();
        assert_eq!(*m.mounted.lock().unwrap(), vec![(mem.clone(), Some(64 << 20))], "mounted once");

        let bad = EmptyDirVolumeSource { medium: Some("HugePages".into()), size_limit: None };
        assert!(matches!(setup(&dir.path().join("c"), &bad, &m), Err(SetUpError::Medium(_))));
    }

    #[test]
    fn usage_counts_files_once_and_skips_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::create_dir(d.join("sub")).unwrap();
        fs::write(d.join("sub/f"), vec![1u8; 100_000]).unwrap();
        fs::hard_link(d.join("sub/f"), d.join("g")).unwrap();
        std::os::unix::fs::symlink("/usr", d.join("link")).unwrap();
        let u = usage(d).unwrap();
        assert_eq!(u.inodes, 3, "sub, f (once), link");
        assert!(u.bytes >= 100_000 && u.bytes < 200_000, "{u:?}");
    }
}
