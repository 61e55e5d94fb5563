//! Spreading client connections evenly over the ingress workers.
//!
//! Every worker accepts on the shared listening sockets, and whichever wakes first drains the
//! whole backlog: a burst of new connections (a load balancer or client opening its pool)
//! lands on one worker while the others idle, and with keep-alive it stays there. Seen with
//! wrk's 32 connections: 2 of them on one worker in one run, 13 in another, and requests/s
//! varying with the split.
//! So after each accept a worker compares its count of open connections with the least loaded
//! worker's, and hands the new connection over (as a plain socket, through a channel) when it
//! has more. Handing over costs one cross-thread wake-up per connection, not per request.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use tokio::sync::mpsc;

/// A connection accepted by one worker for another to serve.
pub(crate) struct Handoff {
    pub(crate) stream: std::net::TcpStream,
    pub(crate) peer: SocketAddr,
    pub(crate) tls: bool,
    /// Already counted for the receiving worker.
    pub(crate) open: Open,
}

/// Open connections per worker and each worker's inbox of handed-over connections.
pub(crate) struct Balancer {
    open: Box<[AtomicUsize]>,
    inboxes: Box<[mpsc::UnboundedSender<Handoff>]>,
}

/// Counts one open connection of a worker; dropping it (connection task ended) uncounts it.
pub(crate) struct Open {
    balancer: Arc<Balancer>,
    worker: usize,
}

impl Open {
    /// The worker this connection is counted for.
    pub(crate) fn worker(&self) -> usize {
        self.worker
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.balancer.open[self.worker].fetch_sub(1, Relaxed);
    }
}

impl Balancer {
    /// A balancer for `n` workers and their inboxes, in worker order.
    pub(crate) fn new(n: usize) -> (Arc<Self>, Vec<mpsc::UnboundedReceiver<Handoff>>) {
        let (txs, rxs): (Vec<_>, Vec<_>) = (0..n).map(|_| mpsc::unbounded_channel()).unzip();
        let balancer = Balancer {
            open: (0..n).map(|_| AtomicUsize::new(0)).collect(),
            inboxes: txs.into_boxed_slice(),
        };
        (Arc::new(balancer), rxs)
    }

    /// Decides which worker serves a connection that worker `me` accepted and counts it
    /// there: `me` unless another worker has fewer open connections.
    pub(crate) fn assign(self: &Arc<Self>, me: usize) -> Open {
        let mut target = me;
        let mut least = self.open[me].load(Relaxed);
        for (i, n) in self.open.iter().enumerate() {
            let n = n.load(Relaxed);
            if n < least {
                (target, least) = (i, n);
            }
        }
        self.count(target)
    }

    /// Counts a connection for `worker`.
    pub(crate) fn count(self: &Arc<Self>, worker: usize) -> Open {
        self.open[worker].fetch_add(1, Relaxed);
        Open {
            balancer: self.clone(),
            worker,
        }
    }

    /// Puts a connection in the inbox of the worker it is counted for. Fails (giving it back)
    /// when that worker has stopped.
    pub(crate) fn hand_over(&self, h: Handoff) -> Result<(), Handoff> {
        self.inboxes[h.open.worker]
            .send(h)
            .map_err(|mpsc::error::SendError(h)| h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_on_one_worker_is_split_evenly() {
        let (b, _rx) = Balancer::new(2);
        let mut kept: Vec<Open> = (0..32).map(|_| b.assign(0)).collect();
        let on_1 = kept.iter().filter(|o| o.worker() == 1).count();
        assert_eq!(on_1, 16);
        // Closing worker 1's connections makes it the target again.
        kept.retain(|o| o.worker() == 0);
        assert_eq!(b.assign(0).worker(), 1);
    }

    #[test]
    fn closed_connections_are_uncounted() {
        let (b, _rx) = Balancer::new(3);
        let open = b.assign(2);
        assert_eq!(open.worker(), 2);
        drop(open);
        assert!(b.open.iter().all(|n| n.load(Relaxed) == 0));
    }

    #[test]
    fn a_stopped_worker_gives_the_connection_back() {
        let (b, mut rxs) = Balancer::new(2);
        let _busy = b.assign(0);
        let open = b.assign(0);
        assert_eq!(open.worker(), 1);
        rxs.pop(); // worker 1 has stopped
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let peer = stream.local_addr().unwrap();
        let h = Handoff {
            stream,
            peer,
            tls: false,
            open,
        };
        let h = b.hand_over(h).expect_err("inbox closed");
        assert_eq!(h.open.worker(), 1);
        drop(h);
        assert_eq!(b.open[1].load(Relaxed), 0);
    }
}
