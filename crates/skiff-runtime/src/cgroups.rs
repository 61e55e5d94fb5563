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

/// v1 controllers the container runtime looks up for every container (libcgroups' list)
/// that the agent mounts when the kernel has them but the host did not mount them.
/// net_prio is left out on purpose: creating a net_prio cgroup takes the kernel's network
/// configuration lock (rtnl) to walk every interface, so each container start would queue
/// behind network namespace teardown, and Kubernetes never sets network priorities.
const MOUNTABLE_V1: [&str; 11] = [
    "cpu", "cpuacct", "cpuset", "devices", "hugetlb", "blkio", "memory", "pids", "perf_event", "net_cls", "freezer",
];

/// On a v1 host, mounts each of [`MOUNTABLE_V1`] that the kernel enables but nothing
/// mounted, at `/sys/fs/cgroup/<name>` (what Debian's cgroupfs-mount and systemd do).
/// Returns the controllers it mounted.
///
/// Why: libcontainer looks each controller up in `/proc/self/mountinfo` for every container,
/// twice at create and once at delete, and a controller that is not mounted costs a read of
/// the whole table, which grows by five lines per pod. On a host lacking four of them
/// (hugetlb, perf_event, net_cls, net_prio) that was most of the container processes' CPU
/// in a burst of 100 pods. A mounted controller is also one more resource pods can be limited
/// by (hugepages). Failures are logged, never fatal: containers run without these.
pub fn mount_missing_v1() -> Vec<&'static str> {
    if layout() != Layout::V1 {
        return Vec::new();
    }
    let (Ok(enabled), Ok(mounts)) = (std::fs::read_to_string("/proc/cgroups"), std::fs::read_to_string("/proc/self/mountinfo"))
    else {
        return Vec::new();
    };
    let mut done = Vec::new();
    for name in missing_v1(&enabled, &mounts) {
        let point = Path::new(CGROUP_ROOT).join(name);
        let flags = nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV | nix::mount::MsFlags::MS_NOEXEC;
        let res = std::fs::create_dir_all(&point)
            .map_err(|e| e.to_string())
            .and_then(|()| nix::mount::mount(Some("cgroup"), &point, Some("cgroup"), flags, Some(name)).map_err(|e| e.to_string()));
        match res {
            Ok(()) => done.push(name),
            Err(e) => tracing::info!(controller = name, error = %e, "cannot mount cgroup v1 controller; containers run without it"),
        }
    }
    done
}

/// The controllers of [`MOUNTABLE_V1`] that `/proc/cgroups` (`proc_cgroups`) lists as
/// enabled and no `cgroup` mount in `mountinfo` carries.
fn missing_v1(proc_cgroups: &str, mountinfo: &str) -> Vec<&'static str> {
    let mounted: Vec<&str> = mountinfo
        .lines()
        .filter_map(|l| l.split_once(" - ").map(|(_, fs)| fs.split(' ').collect::<Vec<_>>()))
        .filter(|fs| fs.first() == Some(&"cgroup"))
        .flat_map(|fs| fs.get(2).copied().unwrap_or("").split(','))
        .collect();
    MOUNTABLE_V1
        .into_iter()
        .filter(|name| {
            let enabled = proc_cgroups.lines().any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.len() == 4 && f[0] == *name && f[3] == "1"
            });
            enabled && !mounted.contains(name)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROC_CGROUPS: &str = "#subsys_name\thierarchy\tnum_cgroups\tenabled
cpu\t1\t1\t1
memory\t4\t135\t1
net_cls\t0\t1\t1
perf_event\t0\t1\t1
net_prio\t0\t1\t1
hugetlb\t0\t1\t0
pids\t8\t1\t1
";
    const MOUNTINFO: &str = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn finds_enabled_unmounted_controllers_but_never_net_prio() {
        // hugetlb is disabled, net_prio is never mounted by us, the rest are mounted.
        assert_eq!(missing_v1(PROC_CGROUPS, MOUNTINFO), vec!["perf_event", "net_cls"]);
    }

    #[test]
    fn a_comounted_hierarchy_counts_for_each_controller() {
        let info = format!("{MOUNTINFO}50 31 0:40 / /sys/fs/cgroup/net_cls,net_prio rw - cgroup cgroup rw,net_cls,net_prio\n");
        assert_eq!(missing_v1(PROC_CGROUPS, &info), vec!["perf_event"]);
    }

    /// On a v1 host (as root): afterwards nothing mountable is missing, and a second call
    /// mounts nothing again. The mounts stay, as the agent's do (node setup).
    #[test]
    fn mounts_what_the_host_left_out_once() {
        if layout() != Layout::V1 || !nix::unistd::Uid::effective().is_root() {
            return;
        }
        mount_missing_v1();
        let read = |p: &str| std::fs::read_to_string(p).unwrap();
        let left = missing_v1(&read("/proc/cgroups"), &read("/proc/self/mountinfo"));
        assert!(left.is_empty(), "still unmounted: {left:?}");
        assert_eq!(mount_missing_v1(), Vec::<&str>::new());
    }
}
