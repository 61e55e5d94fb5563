//! Watches the pods bound to this node and keeps one [`PodWorker`] per pod, handing each
//! the latest version of its pod. After the first full list, runtime objects that belong
//! to no known pod (left by pods deleted while the agent was down) are removed.
//!
//! Static pods from the manifests directory get workers the same way, whether or not the
//! API server answers; mirror pods seen in the watch are never run, only handed to the
//! mirror keeper.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::watcher;
use kube::runtime::WatchStreamExt;
use tokio::sync::{mpsc, watch};

use super::containers::blocking;
use super::naming;
use super::PodWorker;
use crate::static_pods::{self, mirror, source::Source};
use crate::Shared;

/// Aborts a spawned task when dropped, so helpers end with the manager.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs the pod manager until the task is dropped.
pub async fn run(shared: Arc<Shared>) {
    let api: Api<Pod> = Api::all(shared.client.clone());
    let config = watcher::Config::default().fields(&format!("spec.nodeName={}", shared.config.node_name));
    // Workers never read managedFields: dropping them at once keeps each pod's copy small.
    let mut events = watcher(api, config).modify(|p| p.metadata.managed_fields = None).default_backoff().boxed();
    let mut workers: HashMap<String, watch::Sender<Option<Arc<Pod>>>> = HashMap::new();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<String>();
    let mut listing: Option<HashSet<String>> = None;

    // Static pods start before anything is heard from the API server (it may be down).
    let mut source = shared.config.manifests_dir.clone().map(|dir| Source::new(dir, shared.config.node_name.clone()));
    let mut statics: BTreeMap<String, Pod> = source.as_mut().map(Source::scan).unwrap_or_default();
    for pod in statics.values() {
        deliver(&shared, &mut workers, &done_tx, pod.clone());
    }
    let (statics_tx, statics_rx) = watch::channel(statics.clone());
    let (seen_tx, seen_rx) = mpsc::unbounded_channel();
    let _mirrors = AbortOnDrop(tokio::spawn(mirror::run(shared.clone(), statics_rx, seen_rx)));
    let mut mirror_uids: HashMap<String, String> = HashMap::new();
    let mut scan = tokio::time::interval(shared.config.manifests_interval);

    loop {
        tokio::select! {
            Some(uid) = done_rx.recv() => {
                workers.remove(&uid);
                // A static pod whose manifest came back while its old worker was stopping.
                if let Some(pod) = statics.get(&uid) {
                    deliver(&shared, &mut workers, &done_tx, pod.clone());
                }
            }
            _ = scan.tick(), if source.is_some() => {
                let Some(src) = source.as_mut() else { continue };
                let now = src.scan();
                if now == statics {
                    continue;
                }
                for (uid, old) in &statics {
                    if !now.contains_key(uid) {
                        tracing::info!(pod = %static_pods::key(old), "static pod manifest removed or changed; stopping the pod");
                        stop_static(&workers, old);
                    }
                }
                for (uid, pod) in &now {
                    if !statics.contains_key(uid) {
                        tracing::info!(pod = %static_pods::key(pod), "static pod manifest found");
                        deliver(&shared, &mut workers, &done_tx, pod.clone());
                    }
                }
                statics = now;
                let _ = statics_tx.send(statics.clone());
            }
            event = events.next() => {
                let Some(event) = event else { break };
                let event = match event {
                    Ok(e) => e,
                    Err(e) => {
                        tracing::warn!(error = %e, "pod watch failed; retrying");
                        continue;
                    }
                };
                // Mirror pods only show static pods; their worker runs from the file.
                match &event {
                    watcher::Event::Init => {
                        let _ = seen_tx.send(mirror::Seen::Reset);
                    }
                    watcher::Event::InitApply(pod) | watcher::Event::Apply(pod) if static_pods::is_mirror(pod) => {
                        let _ = seen_tx.send(mirror::Seen::Applied(Box::new(pod.clone())));
                        let k = static_pods::key(pod);
                        let uid = pod.metadata.uid.clone().unwrap_or_default();
                        if mirror_uids.insert(k.clone(), uid.clone()) != Some(uid) {
                            // A new mirror pod: its worker writes the status again.
                            if let Some(s) = statics.values().find(|s| static_pods::key(s) == k) {
                                if let Some(tx) = s.metadata.uid.as_ref().and_then(|u| workers.get(u)) {
                                    let _ = tx.send(Some(Arc::new(s.clone())));
                                }
                            }
                        }
                        continue;
                    }
                    watcher::Event::Delete(pod) if static_pods::is_mirror(pod) => {
                        let _ = seen_tx.send(mirror::Seen::Deleted(Box::new(pod.clone())));
                        continue;
                    }
                    _ => {}
                }
                match event {
                    watcher::Event::Init => listing = Some(HashSet::new()),
                    watcher::Event::InitApply(pod) => {
                        if let (Some(seen), Some(uid)) = (listing.as_mut(), pod.metadata.uid.clone()) {
                            seen.insert(uid);
                        }
                        deliver(&shared, &mut workers, &done_tx, pod);
                    }
                    watcher::Event::InitDone => {
                        let seen = listing.take().unwrap_or_default();
                        for (uid, tx) in &workers {
                            if !seen.contains(uid) && !statics.contains_key(uid) {
                                let _ = tx.send(None);
                            }
                        }
                        let known: HashSet<String> = workers.keys().cloned().chain(seen).chain(statics.keys().cloned()).collect();
                        tokio::spawn(remove_orphans(shared.clone(), known));
                    }
                    watcher::Event::Apply(pod) => deliver(&shared, &mut workers, &done_tx, pod),
                    watcher::Event::Delete(pod) => {
                        if let Some(tx) = pod.metadata.uid.as_ref().and_then(|uid| workers.get(uid)) {
                            let _ = tx.send(None);
                        }
                    }
                }
            }
        }
    }
}

/// Tells the worker of a static pod whose manifest went away to stop it, with the pod's
/// grace period, as a deletion would.
fn stop_static(workers: &HashMap<String, watch::Sender<Option<Arc<Pod>>>>, pod: &Pod) {
    let Some(tx) = pod.metadata.uid.as_ref().and_then(|uid| workers.get(uid)) else { return };
    let mut stopping = pod.clone();
    stopping.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()));
    stopping.metadata.deletion_grace_period_seconds =
        Some(pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds).unwrap_or(super::spec::DEFAULT_GRACE_SECONDS));
    let _ = tx.send(Some(Arc::new(stopping)));
}

fn deliver(shared: &Arc<Shared>, workers: &mut HashMap<String, watch::Sender<Option<Arc<Pod>>>>, done: &mpsc::UnboundedSender<String>, pod: Pod) {
    let Some(uid) = pod.metadata.uid.clone() else { return };
    // One copy shared by the channel and the worker.
    let pod = Arc::new(pod);
    if let Some(tx) = workers.get(&uid) {
        let _ = tx.send(Some(pod));
        return;
    }
    let (tx, rx) = watch::channel(Some(pod.clone()));
    workers.insert(uid, tx);
    let worker = PodWorker::new(shared.clone(), pod);
    tokio::spawn(worker.run(rx, done.clone()));
}

/// Removes containers and sandboxes whose pod UID is not among `known`.
async fn remove_orphans(shared: Arc<Shared>, known: HashSet<String>) {
    let rt = &shared.runtime;
    if let Ok(containers) = blocking(rt, |r| r.list_containers()).await {
        for c in containers {
            let Some(uid) = c.config.labels.get(naming::POD_UID) else { continue };
            if !known.contains(uid) {
                tracing::info!(container = %c.config.id, "removing container of a pod that no longer exists");
                let id = c.config.id.clone();
                let _ = blocking(rt, move |r| r.remove_container(&id)).await;
            }
        }
    }
    if let Ok(sandboxes) = blocking(rt, |r| r.list_sandboxes()).await {
        for s in sandboxes {
            let Some(uid) = s.config.labels.get(naming::POD_UID) else { continue };
            if !known.contains(uid) {
                tracing::info!(sandbox = %s.config.id, "removing sandbox of a pod that no longer exists");
                let id = s.config.id.clone();
                let _ = blocking(rt, move |r| r.remove_sandbox(&id)).await;
            }
        }
    }
}
