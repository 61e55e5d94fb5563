//! Periodic trimming of the long-lived processes (`skiff server`, `skiff agent`).
//!
//! Start-up runs a lot of code once (certificates, bootstrap, registration, network and
//! store setup, image import) whose pages then stay in the process's resident set; the
//! allocator likewise keeps pages freed after a burst. A thread hands both back
//! ([`skiff_runtime::resident::trim`]): once shortly after start-up, then within seconds
//! of each burst of work ending (100 pods started, a large list served), and at least once
//! a minute, so what stays resident is what the process keeps using. Measured in
//! docs/benchmarks.md.

use std::time::Duration;

use skiff_runtime::resident::TrimPolicy;

/// First trim after start-up's one-off work; later ones at least every minute and after
/// bursts (a fifth of a second of CPU, then 5 s under 5% of a core): rare enough that re-faulting the
/// code still in use costs nothing measurable. (The agent starts 100 pods in ~0.4 s of its
/// own CPU: at half a second that burst went untrimmed for up to a minute.)
const POLICY: TrimPolicy = TrimPolicy {
    first: Duration::from_secs(10),
    every: Duration::from_secs(60),
    check: Duration::from_secs(5),
    burst: Duration::from_millis(200),
};

/// Starts the trim thread of this process (from inside its runtime, whose workers are then
/// woken after each trim to collect their heaps).
pub fn start() {
    let runtime = tokio::runtime::Handle::try_current().ok();
    skiff_runtime::resident::spawn_periodic_trim(POLICY, move || collect_heaps(runtime.as_ref()));
}

/// Has every runtime worker hand back its allocator's free pages (`alloc::request_collect`;
/// a no-op under glibc's malloc, which the trim itself covers). Idle workers collect as they
/// park again, so each is given a task that holds it for a millisecond: while one worker
/// holds the first, another picks up the next.
fn collect_heaps(runtime: Option<&tokio::runtime::Handle>) {
    crate::alloc::request_collect();
    if let Some(h) = runtime {
        for _ in 0..h.metrics().num_workers() {
            h.spawn(async { std::thread::sleep(Duration::from_millis(1)) });
        }
    }
}
