//! A container's root: the image's layers under an overlayfs with the container's own
//! `upper/` and `work/` directories (its layer directory, on disk).
//!
//! The overlay is mounted by the container's shim, in a mount namespace of the shim's own,
//! not by the agent in the host's. Every mount in the host's namespace is copied into each
//! new container's mount namespace, made a slave there, and listed in every read of
//! `/proc/self/mountinfo`, which libcontainer makes a dozen times per container (once per
//! cgroup v1 controller, once for the rootfs' parent). A root per running container in the
//! host's table made every container create slower by the number of containers already
//! running: quadratic over a burst of pods. In the shim's namespace the overlay is seen by
//! that container alone, and it goes away with the shim.
//!
//! The agent prepares the directories and writes the mount's description to the bundle
//! ([`MOUNT_FILE`]); the shim mounts it before libcontainer creates the container. The layer
//! paths are relative to the layer directory (the shim changes into it to mount), as
//! containerd does when the options get long: the kernel prints them in every mountinfo read.

use std::path::{Component, Path, PathBuf};

use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};
use serde::{Deserialize, Serialize};

use crate::error::{IoContext, Result, SysContext};

/// The overlay's description in a bundle, next to `config.json`.
pub const MOUNT_FILE: &str = "rootfs-mount.json";

/// An overlay root to mount: `data` (the overlay options) is relative to `layer_dir`.
#[derive(Debug, Serialize, Deserialize)]
pub struct OverlayMount {
    /// The container's layer directory (holding `upper/` and `work/`).
    pub layer_dir: PathBuf,
    /// Where the root goes (`<bundle>/rootfs`).
    pub rootfs: PathBuf,
    /// `lowerdir=...,upperdir=upper,workdir=work`.
    pub data: String,
}

/// Creates the overlay's directories for `lowers` (topmost first) and describes its mount in
/// `bundle/`[`MOUNT_FILE`], for the shim.
pub(super) fn prepare_overlay(layer_dir: &Path, bundle: &Path, lowers: &[PathBuf]) -> Result<OverlayMount> {
    let absolute = |p: &Path| std::path::absolute(p).ctx("resolve path", p);
    let layer_dir = absolute(layer_dir)?;
    let rootfs = absolute(&bundle.join("rootfs"))?;
    for d in [&rootfs, &layer_dir.join("upper"), &layer_dir.join("work")] {
        std::fs::create_dir_all(d).ctx("create container dir", d)?;
    }
    let mut relative = Vec::with_capacity(lowers.len());
    for l in lowers {
        relative.push(relative_to(&absolute(l)?, &layer_dir).display().to_string());
    }
    let overlay = OverlayMount {
        data: format!("lowerdir={},upperdir=upper,workdir=work", relative.join(":")),
        layer_dir,
        rootfs,
    };
    let path = bundle.join(MOUNT_FILE);
    let bytes = serde_json::to_vec(&overlay).expect("plain struct serializes");
    std::fs::write(&path, bytes).ctx("write rootfs mount", &path)?;
    Ok(overlay)
}

/// Reads the overlay described in `bundle`, `None` for a bundle without one (its root was
/// mounted by an agent of an earlier version).
pub fn read_overlay(bundle: &Path) -> Result<Option<OverlayMount>> {
    let path = bundle.join(MOUNT_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| crate::error::Error::Json { what: "rootfs mount", path, source }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).ctx("read rootfs mount", &path),
    }
}

/// Moves the calling process into a mount namespace of its own (a private copy of the
/// current one: nothing mounted later on the host reaches it, nothing mounted here leaves)
/// and mounts `overlay` there. The process must be single-threaded (the shim is).
pub fn mount_in_own_namespace(overlay: &OverlayMount) -> Result<()> {
    unshare(CloneFlags::CLONE_NEWNS).sys(|| "unshare the mount namespace".into())?;
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .sys(|| "make the shim's mounts private".into())?;
    let here = std::env::current_dir().ctx("read working directory", ".")?;
    nix::unistd::chdir(&overlay.layer_dir).sys(|| format!("change into {}", overlay.layer_dir.display()))?;
    let mounted = mount(
        Some("overlay"),
        &overlay.rootfs,
        Some("overlay"),
        MsFlags::empty(),
        Some(overlay.data.as_str()),
    )
    .sys(|| format!("mount overlay root at {}", overlay.rootfs.display()));
    nix::unistd::chdir(&here).sys(|| format!("change back into {}", here.display()))?;
    mounted
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
