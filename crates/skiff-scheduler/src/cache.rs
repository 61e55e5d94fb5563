//! Informer caches of what the plugins read (nodes, pods, namespaces, claims, volumes,
//! storage classes, disruption budgets), and a change signal that wakes the scheduling loop.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Api;
use tokio::sync::Notify;

/// Caches kept current by watches.
#[derive(Clone)]
pub struct Cache {
    /// All nodes.
    pub nodes: Store<Node>,
    /// All pods.
    pub pods: Store<Pod>,
    /// All namespaces (affinity terms' namespaceSelector).
    pub namespaces: Store<Namespace>,
    /// All claims (VolumeBinding).
    pub claims: Store<PersistentVolumeClaim>,
    /// All volumes (VolumeBinding).
    pub volumes: Store<PersistentVolume>,
    /// All storage classes (VolumeBinding).
    pub classes: Store<StorageClass>,
    /// All disruption budgets (preemption).
    pub pdbs: Store<PodDisruptionBudget>,
    /// Fires on any change.
    pub changed: Arc<Notify>,
}

fn watch<K>(api: Api<K>, changed: &Arc<Notify>, tasks: &mut Vec<tokio::task::JoinHandle<()>>) -> Store<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
{
    let (store, writer) = reflector::store();
    let n = changed.clone();
    tasks.push(tokio::spawn(reflector::reflector(writer, watcher::watcher(api, watcher::Config::default())).default_backoff().for_each(
        move |_| {
            n.notify_one();
            async {}
        },
    )));
    store
}

impl Cache {
    /// Start the watches; returns at once (the stores fill in the background).
    pub fn start(client: kube::Client) -> (Self, Vec<tokio::task::JoinHandle<()>>) {
        let changed = Arc::new(Notify::new());
        let mut tasks = Vec::new();
        let c = &client;
        let cache = Self {
            nodes: watch(Api::all(c.clone()), &changed, &mut tasks),
            pods: watch(Api::all(c.clone()), &changed, &mut tasks),
            namespaces: watch(Api::all(c.clone()), &changed, &mut tasks),
            claims: watch(Api::all(c.clone()), &changed, &mut tasks),
            volumes: watch(Api::all(c.clone()), &changed, &mut tasks),
            classes: watch(Api::all(c.clone()), &changed, &mut tasks),
            pdbs: watch(Api::all(c.clone()), &changed, &mut tasks),
            changed,
        };
        (cache, tasks)
    }

    /// Whether every watch has listed once.
    pub async fn wait_synced(&self) {
        let _ = tokio::join!(
            self.nodes.wait_until_ready(),
            self.pods.wait_until_ready(),
            self.namespaces.wait_until_ready(),
            self.claims.wait_until_ready(),
            self.volumes.wait_until_ready(),
            self.classes.wait_until_ready(),
            self.pdbs.wait_until_ready()
        );
    }
}
