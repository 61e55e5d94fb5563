//! Informer caches of nodes and pods, and a change signal that wakes the scheduling loop.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Api;
use tokio::sync::Notify;

/// Node and pod caches kept current by watches.
#[derive(Clone)]
pub struct Cache {
    /// All nodes.
    pub nodes: Store<Node>,
    /// All pods.
    pub pods: Store<Pod>,
    /// Fires on any change.
    pub changed: Arc<Notify>,
}

impl Cache {
    /// Start the watches; returns at once (the stores fill in the background).
    pub fn start(client: kube::Client) -> (Self, Vec<tokio::task::JoinHandle<()>>) {
        let changed = Arc::new(Notify::new());
        let (nodes, node_writer) = reflector::store();
        let (pods, pod_writer) = reflector::store();
        let n = changed.clone();
        let node_task = tokio::spawn(
            reflector::reflector(node_writer, watcher::watcher(Api::<Node>::all(client.clone()), watcher::Config::default()))
                .default_backoff()
                .for_each(move |_| {
                    n.notify_one();
                    async {}
                }),
        );
        let p = changed.clone();
        let pod_task = tokio::spawn(
            reflector::reflector(pod_writer, watcher::watcher(Api::<Pod>::all(client), watcher::Config::default()))
                .default_backoff()
                .for_each(move |_| {
                    p.notify_one();
                    async {}
                }),
        );
        (Self { nodes, pods, changed }, vec![node_task, pod_task])
    }
}
