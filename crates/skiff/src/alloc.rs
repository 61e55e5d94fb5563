//! The global allocator: mimalloc for the server, glibc's malloc for `skiff shim` and
//! `skiff agent`.
//!
//! mimalloc returns freed memory to the OS promptly in busy processes; with glibc's allocator
//! the pages freed after a large LIST stayed resident (hundreds of MB measured). But a shim
//! runs one per container and is idle after creating it: mimalloc held ~4 MiB of private
//! memory in each (an arena region touched while the container was created and never purged,
//! since purging happens only on later allocator calls), against a 3 MB goal per shim. The
//! node agent is idle most of its life too: with 100 pods, 15 s after starting them, it
//! held 83.6 MiB anonymous under mimalloc and 33.8 MiB under glibc (live heap ~19.5 MiB),
//! at no cost in the burst's CPU (`skiff-podbench`, docs/benchmarks.md).
//!
//! So the choice is made once, on the first allocation (before `main`, before any thread),
//! from the process's own command line, and never changes: every pointer is allocated and
//! freed by the same allocator. The check reads `/proc/self/cmdline` with raw system calls
//! into a stack buffer, so it allocates nothing.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU8, Ordering};

use nix::libc;

/// Not decided yet.
const UNDECIDED: u8 = 0;
/// glibc malloc (the process is `skiff shim ...` or `skiff agent ...`).
const SYSTEM: u8 = 1;
/// mimalloc (everything else).
const MIMALLOC: u8 = 2;

static MODE: AtomicU8 = AtomicU8::new(UNDECIDED);

/// Dispatches every call to the allocator chosen for this process.
pub struct Dispatch;

impl Dispatch {
    #[inline]
    fn mode() -> u8 {
        match MODE.load(Ordering::Relaxed) {
            UNDECIDED => decide(),
            m => m,
        }
    }
}

/// Picks the allocator. Racing first calls (only possible if a thread allocates before any
/// other allocation, which Rust's startup does not do) compute the same answer.
#[cold]
fn decide() -> u8 {
    let mode = if let Some(sub) = glibc_subcommand() {
        tune_glibc(sub);
        SYSTEM
    } else if asks_for_system() {
        // `SKIFF_MALLOC=system`: glibc malloc for the whole process, so that heap profilers
        // that hook malloc (heaptrack, valgrind) see every allocation.
        SYSTEM
    } else {
        MIMALLOC
    };
    set_huge_pages(mode == MIMALLOC);
    if mode == MIMALLOC {
        tune_mimalloc();
    }
    MODE.store(mode, Ordering::Relaxed);
    mode
}

/// Turns transparent huge pages off for this process (and what it starts) under mimalloc,
/// and back to the machine's policy otherwise.
///
/// Why: the kernel backed mimalloc's reserved region with 2 MiB pages, so an idle, empty
/// server held 29 MB anonymous for ~4 MB of live heap (18 MB of it `AnonHugePages`); with
/// huge pages off, 6.8 MB, and 99-107 MB instead of 103-115 MB holding 10,000 pods in
/// the same sitting (docs/benchmarks.md, API server, Session 14). The flag is inherited across fork and
/// exec, so the glibc processes (a shim, whose children are containers) clear it again:
/// workloads keep the machine's huge-page policy.
#[allow(unsafe_code)]
fn set_huge_pages(off: bool) {
    // SAFETY: prctl only sets this process's THP flag; it allocates nothing.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, off as libc::c_ulong, 0, 0, 0);
    }
}

/// mimalloc's `mi_option_purge_delay` (its `mi_option_e` enum, v2).
const MI_OPTION_PURGE_DELAY: libc::c_int = 15;

// mimalloc's own API, linked in with the `mimalloc` crate.
unsafe extern "C" {
    /// Sets an option; options live in a static table, so this allocates nothing.
    fn mi_option_set(option: libc::c_int, value: libc::c_long);
    /// Collects the calling thread's heap (and, forced, abandoned segments and the arenas'
    /// delayed purges).
    fn mi_collect(force: bool);
}

/// Freed pages are handed back to the OS after a second rather than mimalloc's 10 ms: with
/// 4 KiB pages (no huge pages) a busy server otherwise purged and re-faulted the same pages
/// all the time (mixed-load p99 48-51 ms against 42-43 ms with the delay). Idle workers
/// still return everything at the next trim (`request_collect`).
#[allow(unsafe_code)]
fn tune_mimalloc() {
    // SAFETY: a valid option index and value.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, 1000) };
}

/// The subcommands that run on glibc malloc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GlibcSubcommand {
    Shim,
    Agent,
}

/// Whether `argv[1]` is `shim` or `agent`, read from `/proc/self/cmdline` (NUL-separated
/// arguments). Without /proc, the answer is no: mimalloc works everywhere, it only costs
/// more memory.
fn glibc_subcommand() -> Option<GlibcSubcommand> {
    let mut buf = [0u8; 512];
    let n = read_proc_self(c"/proc/self/cmdline", &mut buf);
    (n > 0).then(|| argv1(&buf[..n])).flatten()
}

/// Whether the environment has `SKIFF_MALLOC=system`. libc's `getenv` reads the environment
/// block the loader set up and allocates nothing.
#[allow(unsafe_code)]
fn asks_for_system() -> bool {
    // SAFETY: a NUL-terminated name; the result is null or a NUL-terminated string that lives
    // as long as the environment, and nothing modifies the environment this early.
    unsafe {
        let v = libc::getenv(c"SKIFF_MALLOC".as_ptr());
        !v.is_null() && std::ffi::CStr::from_ptr(v).to_bytes() == b"system"
    }
}

/// Read the start of a /proc file into `buf` without allocating; 0 on any error.
#[allow(unsafe_code)]
fn read_proc_self(path: &std::ffi::CStr, buf: &mut [u8]) -> usize {
    // SAFETY: a NUL-terminated path, and a read into a buffer of the given size.
    let n = unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return 0;
        }
        let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
        libc::close(fd);
        n
    };
    n.max(0) as usize
}

/// `argv[1]` of a NUL-separated command line, when it is `shim` or `agent`.
fn argv1(cmdline: &[u8]) -> Option<GlibcSubcommand> {
    let mut args = cmdline.split(|&b| b == 0);
    args.next();
    match args.next()? {
        b"shim" => Some(GlibcSubcommand::Shim),
        b"agent" => Some(GlibcSubcommand::Agent),
        _ => None,
    }
}

/// glibc's defaults adapt the mmap threshold upwards after large frees, after which freed
/// blocks stay in the heap; fixed thresholds keep big transient buffers (spec parsing, the
/// seccomp compiler, API responses) in mmap and let the heap shrink. Few arenas: the shim is
/// single-threaded, the agent's runtime has two worker threads and a few blocking ones.
#[allow(unsafe_code)]
fn tune_glibc(sub: GlibcSubcommand) {
    let (arenas, threshold) = match sub {
        GlibcSubcommand::Shim => (1, 64 * 1024),
        GlibcSubcommand::Agent => (2, 128 * 1024),
    };
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets tunables; no allocation has happened yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, arenas);
        libc::mallopt(libc::M_MMAP_THRESHOLD, threshold);
        libc::mallopt(libc::M_TRIM_THRESHOLD, threshold);
    }
}

/// Bumped when the process asks its threads to hand back mimalloc's free pages.
static COLLECT_EPOCH: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

thread_local! {
    /// The epoch this thread last collected at.
    static COLLECTED_AT: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Asks every runtime thread to hand its free heap pages back to the OS the next time it
/// goes idle ([`collect_if_asked`]), and does so for the calling thread now.
///
/// Why: mimalloc frees a page back to the OS only on a later allocator call of the thread
/// that owns it; after a burst (10,000 pods created) the workers go idle with tens of MB of
/// freed pages still resident. Purging at every free instead (`MIMALLOC_PURGE_DELAY=0`)
/// cost 14% of the API server's mixed-load throughput and raised its p99 to 71 ms.
pub fn request_collect() {
    if Dispatch::mode() == MIMALLOC {
        COLLECT_EPOCH.fetch_add(1, Ordering::Relaxed);
        collect_if_asked();
    }
}

/// Runs on each runtime worker as it parks: collects once per [`request_collect`].
pub fn collect_if_asked() {
    let epoch = COLLECT_EPOCH.load(Ordering::Relaxed);
    if COLLECTED_AT.get() != epoch {
        COLLECTED_AT.set(epoch);
        // SAFETY: mimalloc is this process's allocator (epochs only move under it), and
        // collecting only releases memory no live allocation uses.
        #[allow(unsafe_code)]
        unsafe {
            mi_collect(true)
        };
    }
}

// SAFETY: every method forwards to one allocator, the same for the whole life of the process
// (`MODE` is set before the first allocation and never changes), so each pointer is freed or
// resized by the allocator that produced it.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Dispatch {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if Self::mode() == SYSTEM {
            unsafe { System.alloc(layout) }
        } else {
            unsafe { mimalloc::MiMalloc.alloc(layout) }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if Self::mode() == SYSTEM {
            unsafe { System.alloc_zeroed(layout) }
        } else {
            unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if Self::mode() == SYSTEM {
            unsafe { System.dealloc(ptr, layout) }
        } else {
            unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
        }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if Self::mode() == SYSTEM {
            unsafe { System.realloc(ptr, layout, new_size) }
        } else {
            unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rss_kb() -> u64 {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
        statm.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 4
    }

    #[test]
    fn a_requested_collect_hands_freed_pages_back() {
        // The test binary runs on the same allocator choice as `skiff server`: mimalloc.
        assert_eq!(Dispatch::mode(), MIMALLOC);
        // On a thread of its own, so that no other test's allocations share its heap.
        std::thread::spawn(|| {
            let blocks: Vec<Box<[u8; 256]>> = (0..200_000).map(|i| Box::new([i as u8; 256])).collect();
            let full = rss_kb();
            drop(blocks);
            let freed = rss_kb();
            request_collect();
            let collected = rss_kb();
            // 200,000 blocks of 256 bytes are ~49 MiB; mimalloc keeps the freed pages until
            // the thread calls it again, and a collect returns them.
            assert!(freed + 20_000 > full, "freeing alone kept the pages: {full} -> {freed} kB");
            assert!(collected + 30_000 < freed, "collect returned too little: {freed} -> {collected} kB");
        })
        .join()
        .unwrap();
    }

    fn thp_disabled() -> bool {
        // SAFETY: a query of this process's flag.
        #[allow(unsafe_code)]
        let r = unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) };
        r == 1
    }

    #[test]
    fn huge_pages_are_off_under_mimalloc_and_come_back_for_glibc_children() {
        assert_eq!(Dispatch::mode(), MIMALLOC);
        assert!(thp_disabled(), "the server's allocator runs without huge pages");
        let child = std::process::Command::new("grep").args(["THP_enabled", "/proc/self/status"]).output().unwrap().stdout;
        assert_eq!(String::from_utf8_lossy(&child).split_whitespace().last(), Some("0"), "inherited by children");
        // What a shim does (and so the containers it starts): the machine's policy again.
        set_huge_pages(false);
        let back = !thp_disabled();
        set_huge_pages(true);
        assert!(back, "cleared for a glibc process");
    }

    #[test]
    fn only_argv1_shim_or_agent_selects_the_system_allocator() {
        assert_eq!(argv1(b"/usr/bin/skiff\0shim\0create\0--id\0c1\0"), Some(GlibcSubcommand::Shim));
        assert_eq!(argv1(b"skiff\0shim\0"), Some(GlibcSubcommand::Shim));
        assert_eq!(argv1(b"skiff\0agent\0--server\0https://x\0"), Some(GlibcSubcommand::Agent));
        assert_eq!(argv1(b"skiff\0server\0--shim\0"), None, "the server (with or without its agent) keeps mimalloc");
        assert_eq!(argv1(b"skiff\0up\0"), None);
        assert_eq!(argv1(b"skiff\0shimx\0"), None);
        assert_eq!(argv1(b"skiff\0"), None);
        assert_eq!(argv1(b"shim\0"), None);
    }
}
