//! Reading container cgroups: stats, OOM kills, leftovers. Works on cgroup v1 (one
//! hierarchy per controller, including hybrid hosts) and on the unified v2 hierarchy.
//! Creating cgroups and applying limits is libcontainer's job; this module only reads and
//! removes.

use std::path::{Path, PathBuf};

use crate::runtime::types::ContainerStats;

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Which cgroup layout the host uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Unified v2 hierarchy at `/sys/fs/cgroup`.
    V2,
    /// Per-controller v1 hierarchies (pure v1 or hybrid).
    V1,
}

/// Detects the layout: v2 exposes `cgroup.controllers` at the root.
pub fn layout() -> Layout {
    if Path::new(CGROUP_ROOT).join("cgroup.controllers").exists() {
        Layout::V2
    } else {
        Layout::V1
    }
}

/// The directory of `cgroups_path` (such as `/skiff/c1`) for a controller (ignored on v2).
pub fn dir(cgroups_path: &str, controller: &str) -> PathBuf {
    let rel = cgroups_path.trim_start_matches('/');
    match layout() {
        Layout::V2 => Path::new(CGROUP_ROOT).join(rel),
        Layout::V1 => Path::new(CGROUP_ROOT).join(controller).join(rel),
    }
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn keyed(path: &Path, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// How many processes the kernel OOM-killed in this cgroup.
pub fn oom_kills(cgroups_path: &str) -> u64 {
    match layout() {
        Layout::V2 => keyed(&dir(cgroups_path, "").join("memory.events"), "oom_kill").unwrap_or(0),
        Layout::V1 => keyed(
            &dir(cgroups_path, "memory").join("memory.oom_control"),
            "oom_kill",
        )
        .unwrap_or(0),
    }
}

/// CPU, memory and pid usage of the cgroup; `None` if it does not exist.
pub fn stats(cgroups_path: &str) -> Option<ContainerStats> {
    match layout() {
        Layout::V2 => {
            let d = dir(cgroups_path, "");
            if !d.exists() {
                return None;
            }
            let usage = read_u64(&d.join("memory.current")).unwrap_or(0);
            let inactive = keyed(&d.join("memory.stat"), "inactive_file").unwrap_or(0);
            Some(ContainerStats {
                cpu_usage_ns: keyed(&d.join("cpu.stat"), "usage_usec").unwrap_or(0) * 1000,
                memory_usage_bytes: usage,
                memory_working_set_bytes: usage.saturating_sub(inactive),
                pids: read_u64(&d.join("pids.current")).unwrap_or(0),
            })
        }
        Layout::V1 => {
            let mem = dir(cgroups_path, "memory");
            if !mem.exists() {
                return None;
            }
            let usage = read_u64(&mem.join("memory.usage_in_bytes")).unwrap_or(0);
            let inactive = keyed(&mem.join("memory.stat"), "total_inactive_file").unwrap_or(0);
            Some(ContainerStats {
                cpu_usage_ns: read_u64(&dir(cgroups_path, "cpuacct").join("cpuacct.usage"))
                    .unwrap_or(0),
                memory_usage_bytes: usage,
                memory_working_set_bytes: usage.saturating_sub(inactive),
                pids: read_u64(&dir(cgroups_path, "pids").join("pids.current")).unwrap_or(0),
            })
        }
    }
}

/// Pids in the cgroup (from the pids controller on v1).
pub fn pids(cgroups_path: &str) -> Vec<i32> {
    let file = dir(cgroups_path, "pids").join("cgroup.procs");
    std::fs::read_to_string(file)
        .map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// Removes the (empty) cgroup directories of `cgroups_path` in every hierarchy, deepest
/// first; used to clean up after a shim that died before libcontainer could.
pub fn remove(cgroups_path: &str) {
    let rel = cgroups_path.trim_start_matches('/');
    let roots: Vec<PathBuf> = match layout() {
        Layout::V2 => vec![PathBuf::from(CGROUP_ROOT)],
        Layout::V1 => std::fs::read_dir(CGROUP_ROOT)
            .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default(),
    };
    for root in roots {
        let d = root.join(rel);
        if d.is_dir() {
            // cgroup directories are removed with rmdir even though they contain files.
            let _ = std::fs::remove_dir(&d);
        }
    }
}
