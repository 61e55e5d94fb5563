//! Shrinking an idle process's resident set to what it really uses.
//!
//! Every skiff process runs from the whole `skiff` binary. A shim creating a container
//! touches megabytes of its code and read-only data (spec handling, libcontainer, the seccomp
//! compiler), the node agent as much while it starts (TLS bootstrap, registration, network
//! setup, image import); those pages stay mapped for the process's lifetime although its
//! steady state uses a fraction of them: ~5.6 MiB of an idle shim's ~7 MiB RSS was such
//! pages. They are clean pages of files (the page cache keeps them, shared with the other
//! skiff processes), so unmapping them from this process costs nothing: whatever it
//! executes later faults back in from the page cache.
//!
//! Only mappings that cannot hold the process's own data qualify: not writable, backed by a
//! file that still exists, and with no anonymous (copied-on-write) or dirty pages, so
//! dropping them can never lose a byte (relocated read-only data, `.data` and `.bss` are
//! excluded by those rules). Besides the code, that covers read-only shared maps of data
//! files (the store's SQLite readers map the database): their pages stay in the page cache.

use std::fs;
use std::time::Duration;

/// One mapping of /proc/self/smaps with the fields the decision needs.
#[derive(Debug, Default, PartialEq)]
struct Mapping {
    start: usize,
    end: usize,
    perms: String,
    path: String,
    anonymous_kb: u64,
    private_dirty_kb: u64,
    shared_dirty_kb: u64,
}

impl Mapping {
    /// Whether dropping this mapping's pages from the process is lossless.
    fn droppable(&self) -> bool {
        let p = self.perms.as_bytes();
        p.len() == 4
            && p[0] == b'r'
            && p[1] != b'w'
            && (p[3] == b'p' || p[3] == b's')
            && self.path.starts_with('/')
            && !self.path.ends_with("(deleted)")
            && self.anonymous_kb == 0
            && self.private_dirty_kb == 0
            && self.shared_dirty_kb == 0
    }
}

/// Parses /proc/PID/smaps text.
fn parse(smaps: &str) -> Vec<Mapping> {
    let mut out: Vec<Mapping> = Vec::new();
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let Some(first) = fields.next() else { continue };
        if let Some((a, b)) = first.split_once('-') {
            if let (Ok(start), Ok(end)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) {
                let perms = fields.next().unwrap_or_default().to_string();
                // offset, device, inode, then the path (which may contain spaces).
                let path = fields.skip(3).collect::<Vec<_>>().join(" ");
                out.push(Mapping { start, end, perms, path, ..Default::default() });
                continue;
            }
        }
        let Some(m) = out.last_mut() else { continue };
        let kb = || fields.clone().next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(u64::MAX);
        match first {
            "Anonymous:" => m.anonymous_kb = kb(),
            "Private_Dirty:" => m.private_dirty_kb = kb(),
            "Shared_Dirty:" => m.shared_dirty_kb = kb(),
            _ => {}
        }
    }
    out
}

/// Drops the clean file-backed pages of this process's read-only private mappings; returns
/// how many bytes of mappings were advised. Errors are ignored: this only saves memory.
#[allow(unsafe_code)]
pub fn drop_clean_file_pages() -> usize {
    let Ok(text) = fs::read_to_string("/proc/self/smaps") else { return 0 };
    let mut dropped = 0;
    for m in parse(&text).iter().filter(|m| m.droppable()) {
        // SAFETY: the range is a whole mapping of this process, read-only and holding only
        // clean file pages (checked above), so MADV_DONTNEED only unmaps pages that the
        // kernel reloads from the file on the next access; no memory content changes.
        let rc = unsafe { nix::libc::madvise(m.start as *mut nix::libc::c_void, m.end - m.start, nix::libc::MADV_DONTNEED) };
        if rc == 0 {
            dropped += m.end - m.start;
        }
    }
    dropped
}

/// Drops clean file pages ([`drop_clean_file_pages`]) and returns glibc's free heap pages to
/// the OS (a no-op for memory of other allocators).
pub fn trim() {
    drop_clean_file_pages();
    release_free_heap();
}

#[allow(unsafe_code)]
fn release_free_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory of glibc's heap.
    unsafe {
        nix::libc::malloc_trim(0);
    }
}

/// CPU time (user and system) this process has used so far.
fn process_cpu() -> Duration {
    cpu_used(nix::libc::RUSAGE_SELF)
}

/// CPU time (user and system) used so far by `who` (`RUSAGE_SELF`, `RUSAGE_THREAD`).
#[allow(unsafe_code)]
fn cpu_used(who: nix::libc::c_int) -> Duration {
    let mut usage = std::mem::MaybeUninit::<nix::libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given; on failure it is left zeroed.
    let usage = unsafe {
        nix::libc::getrusage(who, usage.as_mut_ptr());
        usage.assume_init()
    };
    let tv = |t: nix::libc::timeval| Duration::new(t.tv_sec.max(0) as u64, (t.tv_usec.clamp(0, 999_999) * 1000) as u32);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// When the trim thread trims: every `every`, and also as soon as the process has gone
/// quiet after a burst of work, so that what a burst touched (the code that created 100
/// containers, the heap pages of a large list) is handed back within seconds of it
/// instead of up to a minute later.
#[derive(Debug, Clone, Copy)]
pub struct TrimPolicy {
    /// The first trim, after start-up's one-off work.
    pub first: Duration,
    /// The longest between two trims.
    pub every: Duration,
    /// How often the thread looks at the process's CPU use.
    pub check: Duration,
    /// CPU used since the last trim that counts as a burst.
    pub burst: Duration,
}

impl TrimPolicy {
    /// Whether to trim now: `since_trim` after the last one, `cpu_since_trim` used since
    /// then, `cpu_last_check` used over the last check interval.
    pub fn due(&self, since_trim: Duration, cpu_since_trim: Duration, cpu_last_check: Duration) -> bool {
        // Quiet: under 5% of a core over the last check. (2% was below the background work
        // of a server holding 10,000 pods, 1-3% in 5 s windows: the trim after creating them
        // waited for the periodic one.)
        // Steady work just under it trims every few seconds, each trim costing a few ms of
        // page faults: cheap next to the work itself.
        let quiet = cpu_last_check < self.check / 20;
        since_trim >= self.every || (quiet && cpu_since_trim >= self.burst)
    }
}

/// Trims this process ([`trim`]) as `policy` says, from a thread of its own, for the
/// process's lifetime. For long-lived processes whose start-up and bursts run code their
/// steady state never needs again; code still in use faults back in after each trim (a few
/// milliseconds of page faults per trim at most). `after_trim` runs after each trim, on the
/// trim thread (the process's own allocator work).
pub fn spawn_periodic_trim(policy: TrimPolicy, after_trim: impl Fn() + Send + 'static) {
    let spawned = std::thread::Builder::new()
        .name("skiff-trim".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            std::thread::sleep(policy.first);
            trim();
            after_trim();
            let (mut trimmed_at, mut cpu_at_trim) = (std::time::Instant::now(), process_cpu());
            let mut cpu_at_check = cpu_at_trim;
            loop {
                std::thread::sleep(policy.check);
                let cpu = process_cpu();
                let last_check = cpu.saturating_sub(cpu_at_check);
                cpu_at_check = cpu;
                if policy.due(trimmed_at.elapsed(), cpu.saturating_sub(cpu_at_trim), last_check) {
                    trim();
                    after_trim();
                    trimmed_at = std::time::Instant::now();
                    // The trim's own work is not a burst.
                    cpu_at_trim = process_cpu();
                    cpu_at_check = cpu_at_trim;
                }
            }
        });
    if let Err(e) = spawned {
        tracing::debug!(error = %e, "could not start the memory trim thread");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_after_a_burst_once_quiet_and_at_least_every_period() {
        let p = TrimPolicy {
            first: Duration::from_secs(10),
            every: Duration::from_secs(60),
            check: Duration::from_secs(5),
            burst: Duration::from_millis(500),
        };
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        assert!(!p.due(s(20), ms(100), ms(10)), "quiet, but nothing happened since the last trim");
        assert!(!p.due(s(20), ms(900), ms(400)), "a burst, still busy");
        assert!(p.due(s(20), ms(900), ms(40)), "a burst, now quiet");
        assert!(p.due(s(60), ms(0), ms(400)), "the period is up, whatever the load");
        assert!(p.due(s(20), ms(900), ms(200)), "quiet enough: 4% of a core");
        assert!(!p.due(s(20), ms(900), ms(300)), "6% of a core is not quiet");
    }

    #[test]
    fn process_cpu_grows_with_work() {
        // Spin for 50 ms of this thread's own CPU time (not wall time: on a loaded machine
        // the thread may run for only part of any wall-clock window).
        let thread_cpu = || cpu_used(nix::libc::RUSAGE_THREAD);
        let before = process_cpu();
        let start = thread_cpu();
        let mut x = 0u64;
        while thread_cpu() - start < Duration::from_millis(50) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        assert!(process_cpu() >= before + Duration::from_millis(45), "{:?}", process_cpu() - before);
    }

    const SAMPLE: &str = "\
55d0a0000000-55d0a0400000 r--p 00000000 fe:01 123 /usr/bin/skiff
Rss:                3000 kB
Anonymous:             0 kB
Private_Dirty:         0 kB
Shared_Dirty:          0 kB
55d0a0400000-55d0a1000000 r-xp 00400000 fe:01 123 /usr/bin/skiff
Anonymous:             0 kB
Private_Dirty:         0 kB
Shared_Dirty:          0 kB
55d0a1000000-55d0a1100000 r--p 01000000 fe:01 123 /usr/bin/skiff
Anonymous:          1100 kB
Private_Dirty:      1100 kB
Shared_Dirty:          0 kB
55d0a1100000-55d0a1200000 rw-p 01100000 fe:01 123 /usr/bin/skiff
Anonymous:            56 kB
Private_Dirty:        56 kB
Shared_Dirty:          0 kB
7f0000000000-7f0000100000 rw-p 00000000 00:00 0 
Anonymous:            28 kB
7f0000200000-7f0000300000 r-xp 00000000 fe:01 99 /usr/lib/x86_64-linux-gnu/libc.so.6
Anonymous:             0 kB
Private_Dirty:         0 kB
Shared_Dirty:          0 kB
7f0000400000-7f0000500000 r-xp 00000000 fe:01 77 /old/skiff (deleted)
Anonymous:             0 kB
Private_Dirty:         0 kB
Shared_Dirty:          0 kB
7ffd00000000-7ffd00001000 r-xp 00000000 00:00 0 [vdso]
Anonymous:             0 kB
7f0000600000-7f0000700000 r--s 00000000 fe:01 55 /var/lib/skiff/server/db/state.db
Anonymous:             0 kB
Private_Dirty:         0 kB
Shared_Dirty:          0 kB
7f0000800000-7f0000900000 rw-s 00000000 fe:01 56 /dev/shm/ring
Anonymous:             0 kB
Private_Dirty:         0 kB
Shared_Dirty:          0 kB
";

    #[test]
    fn only_clean_read_only_file_mappings_are_dropped() {
        let maps = parse(SAMPLE);
        assert_eq!(maps.len(), 10);
        let chosen: Vec<(usize, &str)> = maps.iter().filter(|m| m.droppable()).map(|m| (m.start, m.perms.as_str())).collect();
        assert_eq!(
            chosen,
            vec![(0x55d0a0000000, "r--p"), (0x55d0a0400000, "r-xp"), (0x7f0000200000, "r-xp"), (0x7f0000600000, "r--s")],
            "code, untouched read-only data and read-only shared maps of live files only; not relocated data, .data, heap, deleted files, the vdso or writable shared maps"
        );
        assert_eq!(maps[6].path, "/old/skiff (deleted)");
    }

    #[test]
    fn a_mapping_missing_its_counters_is_kept() {
        let maps = parse("400000-500000 r-xp 00000000 fe:01 1 /bin/x\nAnonymous: x kB\n");
        assert!(!maps[0].droppable(), "an unreadable counter must not count as zero");
    }

    #[test]
    fn dropping_pages_keeps_the_process_working_and_shrinks_its_resident_set() {
        fn rss_kb() -> u64 {
            let s = fs::read_to_string("/proc/self/status").unwrap();
            s.lines().find_map(|l| l.strip_prefix("VmRSS:")).unwrap().trim().trim_end_matches("kB").trim().parse().unwrap()
        }
        let before = rss_kb();
        let advised = drop_clean_file_pages();
        assert!(advised > 0, "a test binary has code mappings to drop");
        // Code and data are still usable after the drop (they fault back in).
        let v: Vec<u64> = (0..1000).map(|i| i * 3).collect();
        assert_eq!(v.iter().sum::<u64>(), 1_498_500);
        assert!(format!("{:?}", parse(SAMPLE)).contains("skiff"));
        let after = rss_kb();
        assert!(after < before, "RSS {before} kB -> {after} kB");
    }
}
