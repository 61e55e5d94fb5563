//! Exit watches of one pod's running containers: a worker with nothing due sleeps on
//! these (each a descriptor from [`Runtime::exit_fd`], registered with the reactor)
//! instead of waking every second to ask the runtime whether its containers still run.
//! With 100 idle pods those per-second checks were most of the agent's idle CPU.

use std::collections::HashMap;
use std::os::fd::OwnedFd;

use futures::future::select_all;
use skiff_runtime::Runtime;
use tokio::io::unix::AsyncFd;

/// Watches by container id.
#[derive(Default)]
pub(super) struct ExitWatches {
    watches: HashMap<String, AsyncFd<OwnedFd>>,
}

impl ExitWatches {
    /// Watch exactly the containers `running` (dropping watches of others, opening ones for
    /// new ids); true when every one of them is watched, so the worker may sleep until an
    /// exit. False when the runtime gives no descriptor for one (then the caller polls).
    pub fn watch_only(&mut self, runtime: &dyn Runtime, running: &[&str]) -> bool {
        self.watches.retain(|id, _| running.contains(&id.as_str()));
        let mut all = true;
        for id in running {
            if self.watches.contains_key(*id) {
                continue;
            }
            match runtime.exit_fd(id).map(register) {
                Some(Ok(fd)) => {
                    self.watches.insert(id.to_string(), fd);
                }
                Some(Err(e)) => {
                    tracing::debug!(container = %id, error = %e, "cannot watch the container's exit");
                    all = false;
                }
                None => all = false,
            }
        }
        all
    }

    /// Resolves once any watched container has exited; never when none is watched.
    pub async fn any_exited(&self) {
        if self.watches.is_empty() {
            return std::future::pending().await;
        }
        let readable = self.watches.values().map(|fd| Box::pin(fd.readable()));
        // An error from the reactor also ends the wait: the caller then re-reads statuses.
        let _ = select_all(readable).await;
    }
}

/// Registers `fd` with the reactor. `AsyncFd::new` is deprecated because a wrapped type
/// could swap its descriptor while registered; an `OwnedFd` cannot, so it is sound here
/// (and the safe call keeps this crate free of `unsafe`).
#[allow(deprecated)]
fn register(fd: OwnedFd) -> std::io::Result<AsyncFd<OwnedFd>> {
    AsyncFd::new(fd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_runtime::runtime::FakeRuntime;
    use std::time::Duration;

    #[tokio::test]
    async fn no_watch_means_no_wake_and_no_descriptor_means_polling() {
        let mut w = ExitWatches::default();
        let fake = FakeRuntime::default();
        assert!(w.watch_only(&fake, &[]), "nothing to watch: all watched");
        assert!(!w.watch_only(&fake, &["c1"]), "the fake gives no descriptors");
        let waited = tokio::time::timeout(Duration::from_millis(50), w.any_exited()).await;
        assert!(waited.is_err(), "an empty set never resolves");
    }

    #[tokio::test]
    async fn a_watched_descriptor_wakes_when_readable() {
        // A socket pair stands in for a pidfd: readable once the other end closes.
        let (mine, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        mine.set_nonblocking(true).unwrap();
        let mut w = ExitWatches::default();
        w.watches.insert("c1".into(), register(OwnedFd::from(mine)).unwrap());
        let early = tokio::time::timeout(Duration::from_millis(50), w.any_exited()).await;
        assert!(early.is_err(), "nothing happened yet");
        drop(theirs);
        tokio::time::timeout(Duration::from_secs(5), w.any_exited()).await.expect("woken by the close");
        // Forgetting the container drops its watch.
        assert!(w.watch_only(&FakeRuntime::default(), &[]));
        assert!(w.watches.is_empty());
    }
}
