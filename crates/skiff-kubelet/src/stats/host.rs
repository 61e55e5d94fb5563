//! Readings of the machine itself: CPU time from `/proc/stat`, memory from `/proc/meminfo`,
//! process counts from `/proc/loadavg` and `/proc/sys/kernel/pid_max`, filesystems from
//! `statvfs`, and the agent's own process from `/proc/self`.
//!
//! Parsers take the file's text so they are testable with fixed input; the `read_*`
//! functions do the I/O.

use std::path::Path;

use super::StatsError;

/// `/proc/stat` counts in USER_HZ, which the kernel fixes at 100 on every architecture this
/// runs on (it converts from its internal HZ), so no sysconf call is needed.
pub const USER_HZ: u64 = 100;
const NANOS_PER_TICK: u64 = 1_000_000_000 / USER_HZ;

/// Node-wide CPU readings from `/proc/stat`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTimes {
    /// Cumulative busy CPU time of all cores, in nanoseconds.
    pub busy_ns: u64,
    /// Number of CPUs (`cpuN` lines).
    pub cores: u64,
    /// Boot time, in seconds since the epoch (`btime`).
    pub boot_time: i64,
}

/// Parse `/proc/stat`. Busy time is user + nice + system + irq + softirq + steal: idle and
/// iowait are time the CPU did no work, and guest time is already inside user/nice.
pub fn parse_proc_stat(text: &str) -> Result<CpuTimes, StatsError> {
    let bad = |detail: &str| StatsError::Parse { path: "/proc/stat".into(), detail: detail.into() };
    let mut out = CpuTimes::default();
    let mut seen_total = false;
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        match fields.next() {
            Some("cpu") => {
                let v: Vec<u64> = fields.map(|f| f.parse::<u64>()).collect::<Result<_, _>>().map_err(|_| bad("non-numeric cpu field"))?;
                if v.len() < 4 {
                    return Err(bad("cpu line has fewer than 4 fields"));
                }
                let get = |i: usize| v.get(i).copied().unwrap_or(0);
                // user nice system idle iowait irq softirq steal guest guest_nice
                let ticks = get(0) + get(1) + get(2) + get(5) + get(6) + get(7);
                out.busy_ns = ticks.saturating_mul(NANOS_PER_TICK);
                seen_total = true;
            }
            Some(c) if c.starts_with("cpu") && c[3..].chars().all(|d| d.is_ascii_digit()) => out.cores += 1,
            Some("btime") => out.boot_time = fields.next().and_then(|v| v.parse().ok()).ok_or_else(|| bad("bad btime"))?,
            _ => {}
        }
    }
    if !seen_total {
        return Err(bad("no cpu line"));
    }
    Ok(out)
}

/// Node memory from `/proc/meminfo`, in bytes, shaped as the kubelet reports the root cgroup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    /// `MemTotal`.
    pub total: u64,
    /// In use, page cache included: `MemTotal - MemFree`.
    pub usage: u64,
    /// What cannot be dropped cheaply: usage minus inactive file cache (the kubelet's
    /// working-set definition, which eviction and `kubectl top` use).
    pub working_set: u64,
    /// Anonymous memory (`AnonPages`).
    pub rss: u64,
}

impl Memory {
    /// What is left for new work, as the kubelet computes it: capacity minus working set.
    pub fn available(&self) -> u64 {
        self.total.saturating_sub(self.working_set)
    }
}

/// Parse `/proc/meminfo` (values in kB).
pub fn parse_meminfo(text: &str) -> Result<Memory, StatsError> {
    let field = |name: &str| -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
            .map(|kb| kb * 1024)
    };
    let missing = |name: &str| StatsError::Parse { path: "/proc/meminfo".into(), detail: format!("no {name}") };
    let total = field("MemTotal").ok_or_else(|| missing("MemTotal"))?;
    let free = field("MemFree").ok_or_else(|| missing("MemFree"))?;
    let inactive_file = field("Inactive(file)").unwrap_or(0);
    let usage = total.saturating_sub(free);
    Ok(Memory { total, usage, working_set: usage.saturating_sub(inactive_file), rss: field("AnonPages").unwrap_or(0) })
}

/// Number of tasks the kernel schedules (the 4th field of `/proc/loadavg`, after the slash):
/// what `sysinfo`'s process count, and so the kubelet's `rlimit.curproc`, reports.
pub fn parse_loadavg_tasks(text: &str) -> Option<u64> {
    text.split_whitespace().nth(3)?.split_once('/')?.1.parse().ok()
}

/// Space and inodes of one filesystem.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FsUsage {
    /// Total bytes.
    pub capacity: u64,
    /// Bytes available to unprivileged users.
    pub available: u64,
    /// Bytes in use.
    pub used: u64,
    /// Total inodes.
    pub inodes: u64,
    /// Free inodes.
    pub inodes_free: u64,
}

fn read(path: &str) -> Result<String, StatsError> {
    std::fs::read_to_string(path).map_err(|source| StatsError::Read { path: path.into(), source })
}

/// Read node CPU times.
pub fn read_cpu() -> Result<CpuTimes, StatsError> {
    parse_proc_stat(&read("/proc/stat")?)
}

/// Read node memory.
pub fn read_memory() -> Result<Memory, StatsError> {
    parse_meminfo(&read("/proc/meminfo")?)
}

/// `(pid_max, tasks now)`, for the summary's `rlimit`.
pub fn read_process_limits() -> Result<(u64, u64), StatsError> {
    let max = read("/proc/sys/kernel/pid_max")?;
    let max = max.trim().parse().map_err(|_| StatsError::Parse { path: "/proc/sys/kernel/pid_max".into(), detail: max.trim().into() })?;
    let load = read("/proc/loadavg")?;
    let cur = parse_loadavg_tasks(&load).ok_or_else(|| StatsError::Parse { path: "/proc/loadavg".into(), detail: load.trim().into() })?;
    Ok((max, cur))
}

/// `statvfs` of the filesystem holding `path` (its nearest existing ancestor, so a data
/// directory that is not created yet still reports its disk).
pub fn read_fs(path: &Path) -> Result<FsUsage, StatsError> {
    let mut probe = path.to_path_buf();
    while !probe.exists() && probe.pop() {}
    let s = nix::sys::statvfs::statvfs(&probe).map_err(|source| StatsError::Statvfs { path: probe.display().to_string(), source })?;
    let frag = s.fragment_size() as u64;
    let capacity = s.blocks() as u64 * frag;
    Ok(FsUsage {
        capacity,
        available: s.blocks_available() as u64 * frag,
        used: capacity.saturating_sub(s.blocks_free() as u64 * frag),
        inodes: s.files() as u64,
        inodes_free: s.files_free() as u64,
    })
}

/// The agent's own process, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SelfProcess {
    /// User + system CPU seconds.
    pub cpu_seconds: f64,
    /// Resident memory in bytes.
    pub rss_bytes: u64,
    /// Start time in seconds since the epoch.
    pub start_time: f64,
    /// Open file descriptors.
    pub open_fds: u64,
}

/// Parse `/proc/self/stat` (CPU ticks and start ticks after boot) and the `VmRSS` line of
/// `/proc/self/status`; `boot_time` comes from `/proc/stat`.
pub fn parse_self(stat: &str, status: &str, boot_time: i64) -> Option<SelfProcess> {
    // The command name (field 2) may contain spaces; the fields after its ')' are fixed.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3, so field N is at index N - 3.
    let num = |n: usize| f.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    let ticks = num(14)? + num(15)?;
    let start = num(22)?;
    let rss_kb = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|r| r.split_whitespace().next()?.parse::<u64>().ok())?;
    Some(SelfProcess {
        cpu_seconds: ticks as f64 / USER_HZ as f64,
        rss_bytes: rss_kb * 1024,
        start_time: boot_time as f64 + start as f64 / USER_HZ as f64,
        open_fds: 0,
    })
}

/// Read the agent's own process.
pub fn read_self(boot_time: i64) -> Result<SelfProcess, StatsError> {
    let stat = read("/proc/self/stat")?;
    let status = read("/proc/self/status")?;
    let mut p = parse_self(&stat, &status, boot_time)
        .ok_or_else(|| StatsError::Parse { path: "/proc/self/stat".into(), detail: "unexpected format".into() })?;
    p.open_fds = std::fs::read_dir("/proc/self/fd").map(|d| d.count() as u64).unwrap_or(0);
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_busy_time_excludes_idle_and_iowait() {
        let text = "cpu  100 10 50 1000 40 5 5 2 7 0\ncpu0 50 5 25 500 20 2 2 1 3 0\ncpu1 50 5 25 500 20 3 3 1 4 0\nintr 1 2\nbtime 1700000000\n";
        let c = parse_proc_stat(text).unwrap();
        // 100 + 10 + 50 + 5 + 5 + 2 ticks of 10 ms.
        assert_eq!(c.busy_ns, 172 * 10_000_000);
        assert_eq!(c.cores, 2);
        assert_eq!(c.boot_time, 1_700_000_000);
        assert!(parse_proc_stat("intr 1\n").is_err());
        assert!(parse_proc_stat("cpu a b c d\n").is_err());
    }

    #[test]
    fn meminfo_working_set_drops_inactive_file_cache() {
        let text = "MemTotal: 1000 kB\nMemFree: 200 kB\nMemAvailable: 700 kB\nInactive(file): 300 kB\nAnonPages: 250 kB\n";
        let m = parse_meminfo(text).unwrap();
        assert_eq!(m.total, 1000 * 1024);
        assert_eq!(m.usage, 800 * 1024);
        assert_eq!(m.working_set, 500 * 1024);
        assert_eq!(m.available(), 500 * 1024);
        assert_eq!(m.rss, 250 * 1024);
        assert!(parse_meminfo("MemFree: 1 kB\n").is_err());
    }

    #[test]
    fn loadavg_and_self_stat() {
        assert_eq!(parse_loadavg_tasks("0.10 0.20 0.30 3/412 9999\n"), Some(412));
        assert_eq!(parse_loadavg_tasks("garbage"), None);
        let stat = "42 (sk iff) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 8 0 500 1000 300";
        let p = parse_self(stat, "Name: x\nVmRSS:\t  2048 kB\n", 1000).unwrap();
        assert_eq!(p.cpu_seconds, 3.0);
        assert_eq!(p.rss_bytes, 2048 * 1024);
        assert_eq!(p.start_time, 1005.0);
    }
}
