//! Informer caches of what the plugins read (nodes, pods, namespaces, claims, volumes,
//! storage classes, disruption budgets), and a change signal that wakes the scheduling loop.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Api;
use tokio::sync::Notify;

use crate::pod::Pod;

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
    /// Counts changes that could make an unschedulable pod schedulable: anything except a
    /// pod that waits for scheduling appearing or changing (that pod itself is retried when
    /// its own resourceVersion changes). Upstream's queue keeps unschedulable pods aside
    /// until such a cluster event in the same way.
    pub generation: Arc<AtomicU64>,
    /// Pods waiting for scheduling that appeared or changed since the loop last took them:
    /// while the generation stands still, only these need a look.
    pub arrived: Arc<Mutex<Vec<ObjectRef<Pod>>>>,
    /// Every pod waiting for scheduling (unbound and not being deleted), kept by the pod
    /// watch, so that a pass looks at these rather than walking every pod in the cluster
    /// (with 10,000 pods bound and bindings echoing back, that walk was most of an idle
    /// scheduler's CPU).
    pub waiting: Arc<Mutex<HashSet<PodKey>>>,
}

/// Where watch events are signalled.
struct Signals {
    changed: Arc<Notify>,
    generation: Arc<AtomicU64>,
}

fn watch<K>(api: Api<K>, signals: &Signals, tasks: &mut Vec<tokio::task::JoinHandle<()>>) -> Store<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
{
    watch_with(api, |_| {}, |_| false, signals, tasks)
}

/// Like `watch`, but `strip` drops what the plugins never read before an object is cached,
/// and `waiting_only` sees every event (after the cache applied it) and says whether it
/// concerns only a pod waiting for scheduling, which does not count as a cluster change.
fn watch_with<K>(
    api: Api<K>,
    strip: fn(&mut K),
    waiting_only: impl Fn(&watcher::Event<K>) -> bool + Send + 'static,
    signals: &Signals,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) -> Store<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
{
    let (store, writer) = reflector::store();
    let (changed, generation) = (signals.changed.clone(), signals.generation.clone());
    let objects = watcher::watcher(api, watcher::Config::default()).modify(strip);
    tasks.push(tokio::spawn(reflector::reflector(writer, objects).default_backoff().for_each(move |event| {
        if !matches!(&event, Ok(e) if waiting_only(e)) {
            generation.fetch_add(1, Ordering::Release);
        }
        changed.notify_one();
        async {}
    })));
    store
}

/// Whether `p` waits for scheduling: unbound and not being deleted.
fn waiting(p: &Pod) -> bool {
    p.spec.is_some() && p.node_name().is_empty() && p.metadata.deletion_timestamp.is_none()
}

/// The store key of `p`: namespace and name only. `ObjectRef::from_obj` also copies the uid
/// and resourceVersion (which lookups ignore) into every key the loop keeps: two strings for
/// each of the 10,000 pending pods in `waiting` and `arrived`.
pub fn key_of(p: &Pod) -> ObjectRef<Pod> {
    let r = ObjectRef::new(p.metadata.name.as_deref().unwrap_or(""));
    match p.metadata.namespace.as_deref() {
        Some(ns) => r.within(ns),
        None => r,
    }
}

/// `namespace/name` of `p`.
pub fn pod_key(p: &Pod) -> String {
    format!("{}/{}", p.metadata.namespace.as_deref().unwrap_or(""), p.metadata.name.as_deref().unwrap_or(""))
}

/// A pod's `namespace/name` in one string (neither may contain '/'): the key of the set of
/// pods waiting for scheduling, 16 bytes and one allocation where an `ObjectRef` takes 96
/// bytes and two (~1 MB of a server holding 10,000 pending pods).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PodKey(Box<str>);

impl PodKey {
    /// The key of `p`.
    pub fn of(p: &Pod) -> Self {
        PodKey(pod_key(p).into_boxed_str())
    }

    /// The pod store's key for the same pod ([`key_of`]).
    pub fn object_ref(&self) -> ObjectRef<Pod> {
        let (ns, name) = self.0.split_once('/').unwrap_or(("", &self.0));
        let r = ObjectRef::new(name);
        if ns.is_empty() {
            r
        } else {
            r.within(ns)
        }
    }
}

/// Whether `p` names the scheduler called `scheduler` (an empty name means the default one).
pub fn for_scheduler(p: &Pod, scheduler: &str) -> bool {
    p.spec.as_ref().and_then(|s| s.scheduler_name.as_deref()).filter(|s| !s.is_empty()).unwrap_or(crate::schedule::SCHEDULER_NAME) == scheduler
}

/// Keep `waiting` and `arrived` current from one pod event (with pods for `scheduler`);
/// true when the event is a pod that waits for scheduling appearing or changing: nothing
/// another pending pod could use (bindings, deletions and finished pods are other events).
fn track_pod_event(
    event: &watcher::Event<Pod>,
    scheduler: &str,
    arrived: &Mutex<Vec<ObjectRef<Pod>>>,
    waiting_pods: &Mutex<HashSet<PodKey>>,
) -> bool {
    match event {
        watcher::Event::Apply(p) | watcher::Event::InitApply(p) => {
            match (waiting(p), for_scheduler(p, scheduler)) {
                (true, true) => {
                    waiting_pods.lock().unwrap().insert(PodKey::of(p));
                    arrived.lock().unwrap().push(key_of(p));
                    true
                }
                // Another scheduler's pending pod: not ours to look at.
                (true, false) => true,
                (false, _) => {
                    waiting_pods.lock().unwrap().remove(&PodKey::of(p));
                    false
                }
            }
        }
        watcher::Event::Delete(p) => {
            waiting_pods.lock().unwrap().remove(&PodKey::of(p));
            false
        }
        // A re-list starts: its InitApply events name every pod again.
        watcher::Event::Init => {
            waiting_pods.lock().unwrap().clear();
            false
        }
        watcher::Event::InitDone => false,
    }
}

/// What the scheduler's [`Pod`] still carries that no plugin reads: managed fields and
/// annotations (the type itself leaves out every other field of the object as it is
/// decoded, and volumes other than claims).
pub fn strip_pod(pod: &mut Pod) {
    pod.metadata.managed_fields = None;
    pod.metadata.annotations = None;
}

impl Cache {
    /// Start the watches for the scheduler called `scheduler`; returns at once (the stores
    /// fill in the background).
    pub fn start(client: kube::Client, scheduler: &str) -> (Self, Vec<tokio::task::JoinHandle<()>>) {
        let s = Signals { changed: Arc::new(Notify::new()), generation: Arc::new(AtomicU64::new(0)) };
        let arrived = Arc::new(Mutex::new(Vec::new()));
        let waiting = Arc::new(Mutex::new(HashSet::new()));
        let mut tasks = Vec::new();
        let c = &client;
        let (a, w, name) = (arrived.clone(), waiting.clone(), scheduler.to_string());
        let cache = Self {
            nodes: watch(Api::all(c.clone()), &s, &mut tasks),
            pods: watch_with(Api::all(c.clone()), strip_pod, move |e| track_pod_event(e, &name, &a, &w), &s, &mut tasks),
            namespaces: watch(Api::all(c.clone()), &s, &mut tasks),
            claims: watch(Api::all(c.clone()), &s, &mut tasks),
            volumes: watch(Api::all(c.clone()), &s, &mut tasks),
            classes: watch(Api::all(c.clone()), &s, &mut tasks),
            pdbs: watch(Api::all(c.clone()), &s, &mut tasks),
            changed: s.changed,
            generation: s.generation,
            arrived,
            waiting,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stripped_pods_keep_what_plugins_read() {
        let mut pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "labels": {"app": "a"}, "annotations": {"x": "y"}, "managedFields": [{"manager": "m"}]},
            "spec": {
                "nodeSelector": {"disk": "ssd"},
                "tolerations": [{"key": "k", "operator": "Exists"}],
                "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "c"}}, {"name": "cfg", "configMap": {"name": "cm"}}],
                "initContainers": [{"name": "side", "image": "s", "restartPolicy": "Always", "env": [{"name": "A", "value": "1"}]}],
                "containers": [{"name": "app", "image": "nginx", "args": ["-x"], "env": [{"name": "A", "value": "1"}],
                    "ports": [{"containerPort": 80, "hostPort": 8080}], "resources": {"requests": {"cpu": "1", "memory": "64Mi", "nvidia.com/gpu": "1"}, "limits": {"cpu": "2"}}}]
            },
            "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False"}]}
        }))
        .unwrap();
        strip_pod(&mut pod);
        let v = serde_json::to_value(&pod).unwrap();
        assert_eq!(v["metadata"]["labels"]["app"], "a");
        assert!(v["metadata"]["annotations"].is_null() && v["metadata"]["managedFields"].is_null());
        assert_eq!(v["spec"]["nodeSelector"]["disk"], "ssd");
        assert_eq!(v["spec"]["tolerations"][0]["key"], "k");
        assert_eq!(v["spec"]["volumes"], serde_json::json!([{"name": "data", "persistentVolumeClaim": {"claimName": "c"}}]));
        let c = &v["spec"]["containers"][0];
        assert_eq!((c["name"].as_str(), c["image"].as_str()), (Some("app"), Some("nginx")));
        assert_eq!(c["ports"][0]["hostPort"], 8080);
        assert_eq!(c["resources"], serde_json::json!({"requests": {"milliCpu": 1000, "memory": 64 << 20}}));
        assert!(c["env"].is_null() && c["args"].is_null());
        assert_eq!(v["spec"]["initContainers"][0]["restartPolicy"], "Always");
        assert!(v["spec"]["initContainers"][0]["env"].is_null());
        assert_eq!(v["status"], serde_json::json!({"phase": "Pending"}));
    }

    #[test]
    fn pods_with_the_same_tolerations_share_one_list() {
        let decode = |tolerations: serde_json::Value| -> Pod {
            serde_json::from_value(serde_json::json!({"metadata": {"name": "p"}, "spec": {"containers": [], "tolerations": tolerations}})).unwrap()
        };
        let default = serde_json::json!([
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
        ]);
        let (a, b) = (decode(default.clone()), decode(default));
        let c = decode(serde_json::json!([{"key": "gpu", "operator": "Exists"}]));
        let list = |p: &Pod| p.spec.as_ref().unwrap().tolerations.clone().unwrap();
        assert!(Arc::ptr_eq(&list(&a), &list(&b)), "equal lists are one copy");
        assert!(!Arc::ptr_eq(&list(&a), &list(&c)));
        assert_eq!(list(&c)[0].key.as_deref(), Some("gpu"));
        assert_eq!(list(&a).len(), 2);
    }

    #[test]
    fn keys_find_the_cached_pod_without_copying_its_uid() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u-1", "resourceVersion": "7"}
        }))
        .unwrap();
        let key = key_of(&pod);
        assert_eq!(key, ObjectRef::from_obj(&pod), "the same store key");
        assert!(key.extra.uid.is_none() && key.extra.resource_version.is_none());
        let (store, mut writer) = reflector::store::<Pod>();
        writer.apply_watcher_event(&watcher::Event::Apply(pod));
        assert_eq!(store.get(&key).unwrap().metadata.uid.as_deref(), Some("u-1"));
    }

    #[test]
    fn a_waiting_key_finds_the_cached_pod() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u-1"}
        }))
        .unwrap();
        let key = PodKey::of(&pod);
        assert_eq!(key.object_ref(), key_of(&pod));
        let (store, mut writer) = reflector::store::<Pod>();
        writer.apply_watcher_event(&watcher::Event::Apply(pod));
        assert_eq!(store.get(&key.object_ref()).unwrap().metadata.uid.as_deref(), Some("u-1"));
        let other: Pod = serde_json::from_value(serde_json::json!({"metadata": {"name": "ns", "namespace": "p"}})).unwrap();
        assert_ne!(PodKey::of(&other), key, "namespace and name keep their places");
    }
}
