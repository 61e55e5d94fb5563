//! One pod watch shared by every controller that reacts to pods (upstream's shared
//! informer). Eight controllers used to hold a watch each, so every pod event was encoded,
//! sent, decrypted and decoded eight times inside one process; now the feed decodes it once
//! and hands the same `Arc<Pod>` to each subscriber. No store is kept: reconciles still read
//! pods from the API, so the feed adds no memory per pod.

use std::sync::Arc;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::{watcher, WatchStreamExt};

/// Events a slow subscriber may fall behind by before the feed waits for it.
const BUFFER: usize = 1024;

/// A pod watch fanned out to subscribers; subscribe first, then [`PodFeed::run`].
pub struct PodFeed {
    sender: async_broadcast::Sender<Arc<Pod>>,
    // Keeps the channel open while no subscriber exists yet.
    _keep_open: async_broadcast::InactiveReceiver<Arc<Pod>>,
}

impl Default for PodFeed {
    fn default() -> Self {
        Self::new()
    }
}

impl PodFeed {
    /// A feed with no subscribers yet.
    pub fn new() -> Self {
        let (mut sender, receiver) = async_broadcast::broadcast(BUFFER);
        // Back-pressure instead of dropping: a controller that missed a pod event could
        // miss the reconcile it needed (these triggers have no store to resync from).
        sender.set_overflow(false);
        sender.set_await_active(false);
        Self {
            sender,
            _keep_open: receiver.deactivate(),
        }
    }

    /// Every pod applied or deleted from now on (and all pods again after a re-list).
    pub fn subscribe(&self) -> impl Stream<Item = Arc<Pod>> + Send + 'static {
        self.sender.new_receiver()
    }

    /// Watch pods and deliver each event to every subscriber, until aborted.
    pub async fn run(self, client: kube::Client) {
        let mut events = watcher(Api::<Pod>::all(client), watcher::Config::default())
            .default_backoff()
            .touched_objects()
            .boxed();
        while let Some(event) = events.next().await {
            match event {
                Ok(pod) => {
                    // Err only when every subscriber is gone; nothing to deliver to then.
                    let _ = self.sender.broadcast_direct(Arc::new(pod)).await;
                }
                Err(e) => tracing::debug!(error = %e, "shared pod watch failed; retrying"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            ..Default::default()
        })
    }

    /// Every subscriber sees every event in order, even one that falls behind by more than
    /// the buffer (the sender waits for it instead of dropping events).
    #[tokio::test]
    async fn every_subscriber_sees_every_event() {
        let feed = PodFeed::new();
        let fast = feed.subscribe();
        let slow = feed.subscribe();
        let n = BUFFER * 3;
        let sender = feed.sender.clone();
        let send = tokio::spawn(async move {
            for i in 0..n {
                sender
                    .broadcast_direct(pod(&format!("p{i}")))
                    .await
                    .unwrap();
            }
        });
        // Each controller polls its subscription from its own task; so do these two.
        let fast_names = fast
            .take(n)
            .map(|p| p.metadata.name.clone().unwrap())
            .collect::<Vec<String>>();
        let slow_names = slow
            .take(n)
            .then(|p| async move {
                tokio::task::yield_now().await;
                p.metadata.name.clone().unwrap()
            })
            .collect::<Vec<String>>();
        let (fast_names, slow_names) = tokio::join!(fast_names, slow_names);
        send.await.unwrap();
        let want: Vec<String> = (0..n).map(|i| format!("p{i}")).collect();
        assert_eq!(fast_names, want);
        assert_eq!(slow_names, want);
    }
}
