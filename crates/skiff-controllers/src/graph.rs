//! The object graph the garbage collector and namespace controller work from: every object
//! of every listable resource, metadata only (uid, owners, finalizers, deletion state), kept
//! current by one metadata watch per resource. Discovery is re-read periodically so CRDs
//! join the graph.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject, PartialObjectMeta};
use kube::discovery::{verbs, Discovery, Scope};
use kube::runtime::watcher::{self, Event};
use tokio::sync::Notify;

/// One owner reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// Owner uid.
    pub uid: String,
    /// Owner apiVersion.
    pub api_version: String,
    /// Owner kind.
    pub kind: String,
    /// Owner name.
    pub name: String,
}

/// What the graph knows of one object.
///
/// Kept small: the graph holds every object of the cluster, and its hash table holds the
/// nodes inline, so each byte here costs a byte per bucket. A heap profile at the end of the
/// full `skiff-bench` run (10,000 pods, ~30,000 ConfigMaps) had the table alone at 10.5 MB
/// with 144-byte nodes; owners and finalizers, which most objects lack, now sit behind one
/// pointer, and the strings are boxed slices (no spare capacity).
#[derive(Debug, Clone)]
pub struct Node {
    /// Which resource it is (shared by every object of the resource: one copy of its five
    /// strings per object was a third of the graph's memory).
    pub resource: Arc<ApiResource>,
    /// Namespace, for namespaced resources (one copy per namespace, shared).
    pub namespace: Option<Arc<str>>,
    /// Name.
    pub name: Box<str>,
    /// uid (the same allocation as the graph's key for it).
    pub uid: Arc<str>,
    /// resourceVersion last seen.
    pub resource_version: Box<str>,
    /// Owners and finalizers, when there are any.
    links: Option<Box<Links>>,
    /// deletionTimestamp is set.
    pub deleting: bool,
}

/// The parts of a [`Node`] most objects do not have.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Links {
    owners: Vec<Owner>,
    finalizers: Vec<String>,
}

impl Node {
    /// Owners.
    pub fn owners(&self) -> &[Owner] {
        self.links.as_deref().map_or(&[], |l| &l.owners)
    }

    /// Finalizers.
    pub fn finalizers(&self) -> &[String] {
        self.links.as_deref().map_or(&[], |l| &l.finalizers)
    }
}

#[derive(Default)]
struct State {
    /// By uid. Holding 10,000 pods the graph is one of the server's larger caches, so an
    /// object's uid is one string shared by key and node, and its namespace one per
    /// namespace (`names`), rather than three copies each.
    nodes: HashMap<Arc<str>, Node>,
    /// The namespace names the nodes share.
    names: HashSet<Arc<str>>,
    /// Resources (by `group/version/plural`) whose watch has completed its initial list.
    synced: HashSet<String>,
    /// Resources watched.
    watched: HashSet<String>,
}

/// Shared handle to the graph.
#[derive(Clone)]
pub struct Graph {
    state: Arc<Mutex<State>>,
    changed: Arc<Notify>,
    /// Count of changes seen, for pollers that must not take `changed`'s stored permit.
    changes: Arc<std::sync::atomic::AtomicU64>,
    /// Count of the changes that can give the collector or the namespace controller work
    /// ([`Graph::structural_changes`]).
    structural: Arc<std::sync::atomic::AtomicU64>,
    tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    /// Poked when a CustomResourceDefinition changes, so that a new kind is watched as soon as
    /// it is served instead of at the next periodic discovery.
    rediscover: Arc<Notify>,
}

/// The only built-in resource whose changes add or remove served resources.
const CRD_KEY: &str = "apiextensions.k8s.io/v1/customresourcedefinitions";

/// Resources the collector does not follow, as upstream's `DefaultIgnoredResources`: events
/// (core and events.k8s.io). They are the cluster's most numerous objects and churn the
/// most, and nothing owns them or is owned by them in practice: holding 10,000 pending pods
/// the graph had an entry for each of their 10,000 FailedScheduling events.
fn ignored(ar: &ApiResource) -> bool {
    ar.plural == "events" && (ar.group.is_empty() || ar.group == "events.k8s.io")
}

fn resource_key(ar: &ApiResource) -> String {
    format!("{}/{}/{}", ar.group, ar.version, ar.plural)
}

impl Graph {
    /// Start discovering and watching.
    pub fn start(client: kube::Client, rediscover_every: Duration) -> Self {
        let g = Graph {
            state: Default::default(),
            changed: Arc::new(Notify::new()),
            changes: Default::default(),
            structural: Default::default(),
            tasks: Default::default(),
            rediscover: Arc::new(Notify::new()),
        };
        let g2 = g.clone();
        let t = tokio::spawn(async move {
            loop {
                if let Err(e) = g2.discover(&client).await {
                    tracing::warn!(error = %e, "discovery failed");
                }
                // A full discovery is ~30 requests; CRD changes ask for one at once, and the
                // period only catches what they cannot announce (aggregated APIs).
                tokio::select! {
                    _ = tokio::time::sleep(rediscover_every) => {}
                    _ = g2.rediscover.notified() => {}
                }
            }
        });
        g.tasks.lock().unwrap().push(t);
        g
    }

    /// Stop all watches.
    pub fn stop(&self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }

    async fn discover(&self, client: &kube::Client) -> anyhow::Result<()> {
        let discovery = Discovery::new(client.clone()).run().await?;
        for group in discovery.groups() {
            for (ar, caps) in group.recommended_resources() {
                if !caps.supports_operation(verbs::LIST) || !caps.supports_operation(verbs::WATCH) || !caps.supports_operation(verbs::DELETE) {
                    continue;
                }
                if ignored(&ar) {
                    continue;
                }
                let key = resource_key(&ar);
                if !self.state.lock().unwrap().watched.insert(key.clone()) {
                    continue;
                }
                let namespaced = caps.scope == Scope::Namespaced;
                let g = self.clone();
                let client = client.clone();
                let t = tokio::spawn(async move { g.watch_resource(client, ar, namespaced).await });
                self.tasks.lock().unwrap().push(t);
            }
        }
        Ok(())
    }

    async fn watch_resource(self, client: kube::Client, ar: ApiResource, namespaced: bool) {
        let key = resource_key(&ar);
        let ar = Arc::new(ar);
        // Metadata-only requests: the graph needs uids, owners and finalizers, not bodies.
        let api: Api<PartialObjectMeta<DynamicObject>> = Api::all_with(client, &*ar);
        let mut stream = watcher::watcher(api, watcher::Config::default()).boxed();
        let mut relist: HashSet<Arc<str>> = HashSet::new();
        while let Some(ev) = stream.next().await {
            let ev = match ev {
                Ok(ev) => ev,
                Err(e) => {
                    tracing::debug!(resource = %key, error = %e, "watch error; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            let mut st = self.state.lock().unwrap();
            // Whether this event can make work: anything but an object changing without its
            // owners, finalizers or deletion state changing (a lease renewed, a status
            // written), which is most events of an idle cluster.
            let mut structural = true;
            match ev {
                Event::Init => {
                    st.synced.remove(&key);
                    relist.clear();
                }
                Event::InitApply(obj) => {
                    if let Some(n) = node(&ar, namespaced, &obj.metadata, &mut st.names) {
                        relist.insert(n.uid.clone());
                        st.nodes.insert(n.uid.clone(), n);
                    }
                }
                Event::InitDone => {
                    // Objects of this resource that vanished while we were not watching.
                    let gone: Vec<Arc<str>> = st
                        .nodes
                        .iter()
                        .filter(|(uid, n)| resource_key(&n.resource) == key && !relist.contains(*uid))
                        .map(|(uid, _)| uid.clone())
                        .collect();
                    for uid in gone {
                        st.nodes.remove(&uid);
                    }
                    st.synced.insert(key.clone());
                }
                Event::Apply(obj) => {
                    if let Some(n) = node(&ar, namespaced, &obj.metadata, &mut st.names) {
                        structural = match st.nodes.get(&n.uid) {
                            Some(old) => old.links != n.links || old.deleting != n.deleting,
                            // A new object can only end another's orphanhood, not start it.
                            None => !n.owners().is_empty() || n.deleting,
                        };
                        st.nodes.insert(n.uid.clone(), n);
                    }
                }
                Event::Delete(obj) => {
                    if let Some(uid) = &obj.metadata.uid {
                        st.nodes.remove(uid.as_str());
                    }
                }
            }
            drop(st);
            if structural {
                self.structural.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            if key == CRD_KEY {
                // Stored permit: a change during a discovery still triggers the next one.
                self.rediscover.notify_one();
            }
            self.changes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.changed.notify_waiters();
            self.changed.notify_one();
        }
    }

    /// How many changes the graph has seen; a poller compares it with its last reading.
    pub fn changes(&self) -> u64 {
        self.changes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How many changes that can give the collector or the namespace controller work the
    /// graph has seen: objects added with owners or being deleted, changed owners,
    /// finalizers or deletion state, removals, re-lists. Their passes walk the whole graph,
    /// so they skip the others: holding 10,000 pods, a pass after each of the leader leases'
    /// renewals was a third of an idle server's CPU.
    pub fn structural_changes(&self) -> u64 {
        self.structural.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Wait until something changes (or `max` passes).
    pub async fn wait_change(&self, max: Duration) {
        let _ = tokio::time::timeout(max, self.changed.notified()).await;
    }

    /// True when every watched resource has finished its initial list.
    pub fn synced(&self) -> bool {
        let st = self.state.lock().unwrap();
        !st.watched.is_empty() && st.watched.iter().all(|k| st.synced.contains(k))
    }

    /// Objects the garbage collector may have to act on, with their dependents: owners being
    /// deleted with `orphan`/`foregroundDeletion`, and dependents none of whose owners is in
    /// the graph. Computed under the lock without copying the whole graph (it can hold tens of
    /// thousands of objects and changes constantly).
    pub fn gc_candidates(&self) -> Vec<(Node, Vec<Node>)> {
        let st = self.state.lock().unwrap();
        let mut wanted: Vec<&Node> = Vec::new();
        for n in st.nodes.values() {
            let finalizing = n.deleting && n.finalizers().iter().any(|f| f == "orphan" || f == "foregroundDeletion");
            let orphaned = !n.deleting && !n.owners().is_empty() && n.owners().iter().all(|o| !st.nodes.contains_key(o.uid.as_str()));
            if finalizing || orphaned {
                wanted.push(n);
            }
        }
        let finalizing: std::collections::HashSet<&str> =
            wanted.iter().filter(|n| n.deleting).map(|n| &*n.uid).collect();
        let mut deps: HashMap<&str, Vec<Node>> = HashMap::new();
        if !finalizing.is_empty() {
            for n in st.nodes.values() {
                for o in n.owners() {
                    if finalizing.contains(o.uid.as_str()) {
                        deps.entry(o.uid.as_str()).or_default().push(n.clone());
                    }
                }
            }
        }
        wanted.into_iter().map(|n| (n.clone(), deps.remove(&*n.uid).unwrap_or_default())).collect()
    }

    /// Terminating namespaces and the objects still in each.
    pub fn terminating_namespaces(&self) -> Vec<(String, Vec<Node>)> {
        let st = self.state.lock().unwrap();
        let terminating: Vec<String> = st
            .nodes
            .values()
            .filter(|n| n.resource.kind == "Namespace" && n.resource.group.is_empty() && n.deleting)
            .map(|n| n.name.to_string())
            .collect();
        terminating
            .into_iter()
            .map(|ns| {
                let inside = st.nodes.values().filter(|n| n.namespace.as_deref() == Some(ns.as_str())).cloned().collect();
                (ns, inside)
            })
            .collect()
    }

    /// A copy of every node.
    pub fn snapshot(&self) -> Vec<Node> {
        self.state.lock().unwrap().nodes.values().cloned().collect()
    }

    /// The node with `uid`, if known.
    pub fn get(&self, uid: &str) -> Option<Node> {
        self.state.lock().unwrap().nodes.get(uid).cloned()
    }
}

fn node(
    ar: &Arc<ApiResource>,
    namespaced: bool,
    m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    names: &mut HashSet<Arc<str>>,
) -> Option<Node> {
    let namespace = match m.namespace.as_deref() {
        Some(ns) if namespaced => Some(intern(names, ns)),
        _ => None,
    };
    let owners: Vec<Owner> = m
        .owner_references
        .iter()
        .flatten()
        .map(|o| Owner { uid: o.uid.clone(), api_version: o.api_version.clone(), kind: o.kind.clone(), name: o.name.clone() })
        .collect();
    let finalizers = m.finalizers.clone().unwrap_or_default();
    let links = (!owners.is_empty() || !finalizers.is_empty()).then(|| Box::new(Links { owners, finalizers }));
    Some(Node {
        resource: ar.clone(),
        namespace,
        name: m.name.as_deref()?.into(),
        uid: Arc::from(m.uid.as_deref()?),
        resource_version: m.resource_version.as_deref().unwrap_or_default().into(),
        links,
        deleting: m.deletion_timestamp.is_some(),
    })
}

/// Whether a whole-graph pass (the collector's, the namespace controller's) is worth
/// running: after structural changes it has not seen ([`Graph::structural_changes`]), after a
/// pass that found work (its requests show up as changes, or not at all if they failed), and
/// at least every [`PassGate::BACKSTOP`].
#[derive(Debug)]
pub struct PassGate {
    seen: Option<u64>,
    last: std::time::Instant,
    had_work: bool,
}

impl Default for PassGate {
    fn default() -> Self {
        PassGate { seen: None, last: std::time::Instant::now(), had_work: false }
    }
}

impl PassGate {
    /// The longest a pass is skipped.
    pub const BACKSTOP: Duration = Duration::from_secs(60);

    /// Whether to pass now; if so, counts this as the last pass.
    pub fn open(&mut self, graph: &Graph) -> bool {
        let now = graph.structural_changes();
        if !pass_due(self.seen, now, self.had_work, self.last.elapsed()) {
            return false;
        }
        self.seen = Some(now);
        self.last = std::time::Instant::now();
        true
    }

    /// Waits until the graph has listed everything once and a pass is due ([`Self::open`]),
    /// looking after each change (30 ms later, so that a burst of changes makes one pass)
    /// and at least every 2 s.
    pub async fn wait(&mut self, graph: &Graph) {
        loop {
            graph.wait_change(Duration::from_secs(2)).await;
            tokio::time::sleep(Duration::from_millis(30)).await;
            if graph.synced() && self.open(graph) {
                return;
            }
        }
    }

    /// What the pass just run found: whether it had anything to act on.
    pub fn ran(&mut self, had_work: bool) {
        self.had_work = had_work;
    }
}

fn pass_due(seen: Option<u64>, now: u64, had_work: bool, since_last: Duration) -> bool {
    seen != Some(now) || had_work || since_last >= PassGate::BACKSTOP
}

/// The shared copy of `s` in `names`, added if new. (Names of deleted namespaces stay: a
/// few bytes each.)
fn intern(names: &mut HashSet<Arc<str>>, s: &str) -> Arc<str> {
    if let Some(found) = names.get(s) {
        return found.clone();
    }
    let shared: Arc<str> = Arc::from(s);
    names.insert(shared.clone());
    shared
}

/// An API handle for the node's resource in its namespace.
pub fn api_for(client: &kube::Client, n: &Node) -> Api<DynamicObject> {
    match &n.namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &*n.resource),
        None => Api::all_with(client.clone(), &*n.resource),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_stay_small_and_keep_owners_and_finalizers() {
        // The graph's table holds a node per object inline (see `Node`).
        assert!(std::mem::size_of::<Node>() <= 88, "Node is {} bytes", std::mem::size_of::<Node>());
        let ar = Arc::new(resource("", "configmaps"));
        let mut names = HashSet::new();
        let plain = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some("a".into()),
            namespace: Some("ns".into()),
            uid: Some("u1".into()),
            resource_version: Some("7".into()),
            ..Default::default()
        };
        let n = node(&ar, true, &plain, &mut names).unwrap();
        assert!(n.owners().is_empty() && n.finalizers().is_empty() && n.links.is_none());
        assert_eq!((&*n.name, &*n.resource_version, n.namespace.as_deref()), ("a", "7", Some("ns")));
        let owned = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            owner_references: Some(vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                api_version: "apps/v1".into(),
                kind: "ReplicaSet".into(),
                name: "rs".into(),
                uid: "u0".into(),
                ..Default::default()
            }]),
            finalizers: Some(vec!["foregroundDeletion".into()]),
            ..plain
        };
        let n = node(&ar, true, &owned, &mut names).unwrap();
        assert_eq!(n.owners().len(), 1);
        assert_eq!(n.owners()[0].uid, "u0");
        assert_eq!(n.finalizers(), ["foregroundDeletion".to_string()]);
    }

    fn resource(group: &str, plural: &str) -> ApiResource {
        ApiResource {
            group: group.into(),
            version: "v1".into(),
            api_version: if group.is_empty() { "v1".into() } else { format!("{group}/v1") },
            kind: String::new(),
            plural: plural.into(),
        }
    }

    #[test]
    fn events_are_not_followed_and_other_resources_are() {
        assert!(ignored(&resource("", "events")));
        assert!(ignored(&resource("events.k8s.io", "events")));
        assert!(!ignored(&resource("", "pods")));
        assert!(!ignored(&resource("example.com", "events")), "a custom resource named events is followed");
    }

    #[test]
    fn passes_run_after_structural_changes_work_or_the_backstop_only() {
        let short = Duration::from_secs(1);
        assert!(pass_due(None, 0, false, short), "the first pass always runs");
        assert!(!pass_due(Some(3), 3, false, short), "nothing new, nothing pending: skip");
        assert!(pass_due(Some(3), 4, false, short), "a structural change");
        assert!(pass_due(Some(3), 3, true, short), "the last pass had work: look again");
        assert!(pass_due(Some(3), 3, false, PassGate::BACKSTOP), "now and then anyway");
    }
}
