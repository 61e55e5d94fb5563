//! Cluster-wide caches the node's network services share (Services, EndpointSlices, Pods,
//! Namespaces, NetworkPolicies), each with a change signal.

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Resource;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

/// A reflector store plus a counter that moves on every change.
pub struct Cache<K: Resource + Clone + 'static>
where
    K::DynamicType: std::hash::Hash + Eq + Clone,
{
    /// The objects.
    pub store: Store<K>,
    /// Bumped on every change (after the store has it).
    pub changed: watch::Receiver<u64>,
}

/// Starts a watch of all `K` into a store; the task runs until the runtime stops.
pub fn cache<K>(client: kube::Client) -> Cache<K>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Default + std::hash::Hash + Eq + Clone,
{
    let api: Api<K> = Api::all(client);
    let (reader, writer) = reflector::store();
    let (tx, rx) = watch::channel(0u64);
    // managedFields are most of a stored object's memory and nothing here reads them.
    let objects = watcher(api, watcher::Config::default()).modify(|o| o.meta_mut().managed_fields = None);
    let stream = reflector::reflector(writer, objects).default_backoff();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(watcher::Event::InitApply(_)) | Ok(watcher::Event::Init) => {}
                Ok(_) => {
                    tx.send_modify(|n| *n += 1);
                }
                Err(e) => tracing::debug!(error = %e, "network cache watch error"),
            }
        }
    });
    Cache { store: reader, changed: rx }
}

/// The objects of a store as plain values. A copy: callers drop it before they wait for
/// the next change, so that only the store holds the objects while idle.
pub fn items<K: Resource + Clone>(store: &Store<K>) -> Vec<K>
where
    K::DynamicType: std::hash::Hash + Eq + Clone,
{
    store.state().iter().map(|o| o.as_ref().clone()).collect()
}

/// Waits for the next change of any of `signals` (after a short quiet period, so bursts of
/// updates produce one resync).
pub async fn next_change(signals: &mut [&mut watch::Receiver<u64>]) {
    let futures: Vec<_> = signals.iter_mut().map(|s| Box::pin(s.changed())).collect();
    let _ = futures::future::select_all(futures).await;
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    for s in signals.iter_mut() {
        s.borrow_and_update();
    }
}
