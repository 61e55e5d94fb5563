//! Periodic trimming of the long-lived processes (`skiff server`, `skiff agent`).
//!
//! Start-up runs a lot of code once (certificates, bootstrap, registration, network and
//! store setup, image import) whose pages then stay in the process's resident set; the
//! allocator likewise keeps pages freed after a burst. A thread hands both back
//! ([`skiff_runtime::resident::trim`]): once shortly after start-up, then once a minute,
//! so what stays resident is what the process keeps using. Measured in docs/benchmarks.md.

use std::time::Duration;

/// First trim, after start-up's one-off work.
const FIRST: Duration = Duration::from_secs(10);
/// Later trims: rare enough that re-faulting the code still in use costs nothing measurable.
const EVERY: Duration = Duration::from_secs(60);

/// Starts the trim thread of this process.
pub fn start() {
    skiff_runtime::resident::spawn_periodic_trim(FIRST, EVERY);
}
