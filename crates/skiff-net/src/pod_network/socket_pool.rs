//! A few netlink sockets of the node's network namespace, so that pods are wired in
//! parallel. With one shared socket behind a lock, a burst of 100 pods queued behind each
//! other's whole wiring (veth creation, then a thread entering the pod namespace to set
//! its address and routes): ~0.3 s of waiting per pod. The kernel still serialises the
//! link changes themselves (rtnl), but not the rest.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use super::nl::Netlink;
use super::Result;

#[derive(Debug)]
pub(crate) struct SocketPool {
    sockets: Vec<Mutex<Netlink>>,
    next: AtomicUsize,
}

impl SocketPool {
    /// `n` sockets (at least one) opened in the calling thread's network namespace; they
    /// stay bound to it whichever thread uses them later.
    pub(crate) fn open(n: usize) -> Result<Self> {
        let sockets = (0..n.max(1)).map(|_| Netlink::open().map(Mutex::new)).collect::<Result<_>>()?;
        Ok(Self { sockets, next: AtomicUsize::new(0) })
    }

    /// A free socket if there is one, otherwise waits for one (round-robin).
    pub(crate) fn get(&self) -> MutexGuard<'_, Netlink> {
        let n = self.sockets.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..n {
            if let Ok(guard) = self.sockets[(start + i) % n].try_lock() {
                return guard;
            }
        }
        // A panic while holding a socket cannot leave it worse than a failed request.
        self.sockets[start % n].lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hands_out_distinct_sockets_while_held() {
        let pool = SocketPool::open(2).unwrap();
        let a = pool.get();
        let b = pool.get();
        assert!(!std::ptr::eq(&*a, &*b), "two holders got the same socket");
        drop(a);
        // With one free and one held, the free one is found whatever the round-robin start.
        for _ in 0..3 {
            let c = pool.get();
            assert!(!std::ptr::eq(&*c, &*b));
        }
    }
}
