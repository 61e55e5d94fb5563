//! A container's root: the image's layers under an overlayfs with the container's own
//! `upper/` and `work/` directories (its layer directory, on disk).
//!
//! The layer paths go into the mount's options, which the kernel prints in every read of
//! `/proc/*/mountinfo`, and libcontainer reads that file a dozen times per container it
//! creates (once per cgroup v1 controller, once per bind mount). With absolute paths a
//! container's line was ~600 bytes, half of the whole table with 100 pods, so every pod made
//! every later container create slower. So the mount is made from the layer directory with
//! relative paths (containerd does the same when the options get long): a thread of its own
//! unshares its working directory (`CLONE_FS`, allowed in a multi-threaded process and
//! invisible to the other threads), changes into the layer directory and mounts.

use std::path::{Component, Path, PathBuf};

use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};

use crate::error::{Error, IoContext, Result, SysContext};

/// Mounts the overlay of `lowers` (topmost first) at `rootfs`, with `layer_dir/upper` and
/// `layer_dir/work`, creating all three.
pub(super) fn mount_overlay(layer_dir: &Path, rootfs: &Path, lowers: &[PathBuf], id: &str) -> Result<()> {
    // Absolute first: the mount runs from inside the layer directory.
    let absolute = |p: &Path| std::path::absolute(p).ctx("resolve path", p);
    let layer_dir = &absolute(layer_dir)?;
    let rootfs = absolute(rootfs)?;
    for d in [&rootfs, &layer_dir.join("upper"), &layer_dir.join("work")] {
        std::fs::create_dir_all(d).ctx("create container dir", d)?;
    }
    let mut relative = Vec::with_capacity(lowers.len());
    for l in lowers {
        relative.push(relative_to(&absolute(l)?, layer_dir).display().to_string());
    }
    let data = format!("lowerdir={},upperdir=upper,workdir=work", relative.join(":"));
    let dir = layer_dir.to_path_buf();
    let id = id.to_string();
    std::thread::Builder::new()
        .name("skiff-rootfs".into())
        .spawn(move || -> Result<()> {
            unshare(CloneFlags::CLONE_FS).sys(|| "unshare the working directory".into())?;
            nix::unistd::chdir(&dir).sys(|| format!("change into {}", dir.display()))?;
            mount(
                Some("overlay"),
                &rootfs,
                Some("overlay"),
                MsFlags::empty(),
                Some(data.as_str()),
            )
            .sys(|| format!("mount overlay rootfs for container {id}"))
        })
        .ctx("start rootfs thread", layer_dir)?
        .join()
        .unwrap_or_else(|_| {
            Err(Error::Shim {
                id: layer_dir.display().to_string(),
                message: "rootfs thread panicked".into(),
            })
        })
}

/// `path` relative to directory `base` when both are absolute (`../..` as needed), else
/// `path` itself.
fn relative_to(path: &Path, base: &Path) -> PathBuf {
    if !path.is_absolute() || !base.is_absolute() {
        return path.to_path_buf();
    }
    let p: Vec<Component> = path.components().collect();
    let b: Vec<Component> = base.components().collect();
    let common = p.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut out = PathBuf::new();
    for _ in common..b.len() {
        out.push("..");
    }
    for c in &p[common..] {
        out.push(c);
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_made_relative_to_the_layer_dir() {
        let base = Path::new("/var/lib/skiff/agent/runtime/containers/c1");
        assert_eq!(
            relative_to(Path::new("/var/lib/skiff/agent/runtime/images/snapshots/ab"), base),
            PathBuf::from("../../images/snapshots/ab")
        );
        assert_eq!(relative_to(base, base), PathBuf::from("."));
        assert_eq!(relative_to(&base.join("upper"), base), PathBuf::from("upper"));
        assert_eq!(relative_to(Path::new("/other/x"), base), PathBuf::from("../../../../../../../other/x"));
        assert_eq!(relative_to(Path::new("rel/x"), base), PathBuf::from("rel/x"));
    }
}
