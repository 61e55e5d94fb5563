//! Watches the pods bound to this node and keeps one [`PodWorker`] per pod, handing each
//! the latest version of its pod. After the first full list, runtime objects that belong
//! to no known pod (left by pods deleted while the agent was down) are removed.

use std::collections::{HashMap, HashSet};
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
use crate::Shared;

/// Runs the pod manager until the task is dropped.
pub async fn run(shared: Arc<Shared>) {
    let api: Api<Pod> = Api::all(shared.client.clone());
    let config = watcher::Config::default().fields(&format!("spec.nodeName={}", shared.config.node_name));
    let mut events = watcher(api, config).default_backoff().boxed();
    let mut workers: HashMap<String, watch::Sender<Option<Pod>>> = HashMap::new();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<String>();
    let mut listing: Option<HashSet<String>> = None;
    loop {
        tokio::select! {
            Some(uid) = done_rx.recv() => {
                workers.remove(&uid);
            }
            event = events.next() => {
                let Some(event) = event else { break };
                match event {
                    Ok(watcher::Event::Init) => listing = Some(HashSet::new()),
                    Ok(watcher::Event::InitApply(pod)) => {
                        if let (Some(seen), Some(uid)) = (listing.as_mut(), pod.metadata.uid.clone()) {
                            seen.insert(uid);
                        }
                        deliver(&shared, &mut workers, &done_tx, pod);
                    }
                    Ok(watcher::Event::InitDone) => {
                        let seen = listing.take().unwrap_or_default();
                        for (uid, tx) in &workers {
                            if !seen.contains(uid) {
                                let _ = tx.send(None);
                            }
                        }
                        let known: HashSet<String> = workers.keys().cloned().chain(seen).collect();
                        tokio::spawn(remove_orphans(shared.clone(), known));
                    }
                    Ok(watcher::Event::Apply(pod)) => deliver(&shared, &mut workers, &done_tx, pod),
                    Ok(watcher::Event::Delete(pod)) => {
                        if let Some(tx) = pod.metadata.uid.as_ref().and_then(|uid| workers.get(uid)) {
                            let _ = tx.send(None);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "pod watch failed; retrying"),
                }
            }
        }
    }
}

fn deliver(shared: &Arc<Shared>, workers: &mut HashMap<String, watch::Sender<Option<Pod>>>, done: &mpsc::UnboundedSender<String>, pod: Pod) {
    let Some(uid) = pod.metadata.uid.clone() else { return };
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
