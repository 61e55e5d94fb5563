//! Running code inside another network namespace.
//!
//! `setns` changes the namespace of the calling *thread* only. Doing it on a thread we do not
//! own (a tokio worker, the caller's thread) would silently move unrelated work into the pod's
//! namespace, so we always spawn a short-lived thread, switch it, run the closure and let the
//! thread die with the namespace it entered. Netlink sockets opened there stay bound to that
//! namespace after the thread exits, which is how pod interfaces are configured.

use std::fs::File;
use std::path::Path;

use nix::sched::{setns, CloneFlags};

use super::error::{Error, Result};

/// Runs `f` on a new thread that has entered the network namespace at `netns` (a file such as
/// `/run/netns/<name>` or a bind mount of `/proc/<pid>/ns/net`), and returns its result.
///
/// The calling thread's namespace is never changed.
pub fn run_in_netns<T, F>(netns: &Path, f: F) -> Result<T>
where
    T: Send,
    F: FnOnce() -> Result<T> + Send,
{
    // Open before spawning so that a bad path is reported with context and without a thread.
    let file = File::open(netns).map_err(|source| Error::Netns {
        path: netns.to_path_buf(),
        op: "open",
        source,
    })?;
    std::thread::scope(|scope| {
        let handle = std::thread::Builder::new()
            .name("skiff-netns".into())
            .spawn_scoped(scope, move || {
                setns(&file, CloneFlags::CLONE_NEWNET).map_err(|errno| Error::Netns {
                    path: netns.to_path_buf(),
                    op: "setns",
                    source: std::io::Error::from(errno),
                })?;
                drop(file);
                f()
            })
            .map_err(|e| Error::Thread {
                what: format!("netns {}", netns.display()),
                detail: e.to_string(),
            })?;
        handle.join().map_err(|_| Error::Thread {
            what: format!("netns {}", netns.display()),
            detail: "panicked".into(),
        })?
    })
}
