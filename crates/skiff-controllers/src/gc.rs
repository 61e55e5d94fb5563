//! Garbage collector: deletes objects whose owners are all gone (Background), deletes the
//! dependents of owners being deleted in the foreground before releasing them, and orphans
//! dependents of owners deleted with the Orphan policy, as kube-controller-manager's
//! garbage collector does. Level-triggered: every pass recomputes from the graph.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::{DeleteParams, Patch, PatchParams};
use kube::core::GroupVersionKind;
use serde_json::json;

use crate::graph::{api_for, Graph, Node, Owner, PassGate};

/// Run the collector until aborted.
pub async fn run(client: kube::Client, graph: Graph) {
    // Deletes recently sent, so a slow API does not get the same request every pass.
    let mut recent: HashMap<Arc<str>, Instant> = HashMap::new();
    let mut gate = PassGate::default();
    loop {
        gate.wait(&graph).await;
        recent.retain(|_, t| t.elapsed() < Duration::from_secs(5));
        let had_work = pass(&client, &graph, &mut recent).await;
        gate.ran(had_work);
    }
}

/// One pass over the graph's candidates; whether there were any.
async fn pass(client: &kube::Client, graph: &Graph, recent: &mut HashMap<Arc<str>, Instant>) -> bool {
    let candidates = graph.gc_candidates();
    let had_work = !candidates.is_empty();
    for (n, deps) in candidates {
        let deps: Vec<&Node> = deps.iter().collect();
        if n.deleting && n.finalizers().iter().any(|f| f == "orphan") {
            orphan(client, &n, &deps).await;
            continue;
        }
        if n.deleting && n.finalizers().iter().any(|f| f == "foregroundDeletion") {
            foreground(client, &n, &deps, recent).await;
            continue;
        }
        if n.owners().is_empty() || n.deleting || recent.contains_key(&n.uid) {
            continue;
        }
        if owners_gone(client, &n).await {
            tracing::info!(kind = %n.resource.kind, name = %n.name, namespace = ?n.namespace, "deleting object whose owners are gone");
            recent.insert(n.uid.clone(), Instant::now());
            let _ = api_for(client, &n).delete(&n.name, &DeleteParams::background()).await;
        }
    }
    had_work
}

/// Remove the owner reference to `owner` from each dependent, then the `orphan` finalizer.
async fn orphan(client: &kube::Client, owner: &Node, deps: &[&Node]) {
    for d in deps {
        let refs: Vec<serde_json::Value> = d
            .owners()
            .iter()
            .filter(|o| *o.uid != *owner.uid)
            .map(|o| json!({"apiVersion": o.api_version, "kind": o.kind, "name": o.name, "uid": o.uid}))
            .collect();
        let full = full_owner_refs(client, d, &owner.uid).await.unwrap_or(refs);
        let patch = json!({"metadata": {"ownerReferences": full, "resourceVersion": d.resource_version}});
        if let Err(e) = api_for(client, d).patch(&d.name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            tracing::debug!(name = %d.name, error = %e, "orphaning failed; will retry");
            return;
        }
    }
    remove_finalizer(client, owner, "orphan").await;
}

/// The dependent's current owner references minus `owner_uid`, keeping every field
/// (controller, blockOwnerDeletion) of the others.
async fn full_owner_refs(client: &kube::Client, d: &Node, owner_uid: &str) -> Option<Vec<serde_json::Value>> {
    let obj = api_for(client, d).get(&d.name).await.ok()?;
    let refs = obj.metadata.owner_references.unwrap_or_default();
    Some(
        refs.into_iter()
            .filter(|r| r.uid != owner_uid)
            .filter_map(|r| serde_json::to_value(r).ok())
            .collect(),
    )
}

/// Foreground: delete dependents (in the foreground too); release the owner once none remain.
async fn foreground(client: &kube::Client, owner: &Node, deps: &[&Node], recent: &mut HashMap<Arc<str>, Instant>) {
    if deps.is_empty() {
        remove_finalizer(client, owner, "foregroundDeletion").await;
        return;
    }
    for d in deps {
        if d.deleting || recent.contains_key(&d.uid) {
            continue;
        }
        recent.insert(d.uid.clone(), Instant::now());
        let _ = api_for(client, d).delete(&d.name, &DeleteParams::foreground()).await;
    }
}

async fn remove_finalizer(client: &kube::Client, n: &Node, finalizer: &str) {
    let remaining: Vec<&String> = n.finalizers().iter().filter(|f| *f != finalizer).collect();
    let patch = json!({"metadata": {"finalizers": remaining, "resourceVersion": n.resource_version}});
    if let Err(e) = api_for(client, n).patch(&n.name, &PatchParams::default(), &Patch::Merge(&patch)).await {
        tracing::debug!(name = %n.name, error = %e, "removing finalizer failed; will retry");
    }
}

/// Confirm with the API server (not just the graph) that none of the owners exists.
async fn owners_gone(client: &kube::Client, n: &Node) -> bool {
    for o in n.owners() {
        if owner_exists(client, n, o).await {
            return false;
        }
    }
    true
}

async fn owner_exists(client: &kube::Client, n: &Node, o: &Owner) -> bool {
    let (group, version) = match o.api_version.split_once('/') {
        Some((g, v)) => (g.to_string(), v.to_string()),
        None => (String::new(), o.api_version.clone()),
    };
    let gvk = GroupVersionKind::gvk(&group, &version, &o.kind);
    let Ok((ar, caps)) = kube::discovery::pinned_kind(client, &gvk).await else {
        // Unknown kind (e.g. its CRD is gone): the owner cannot exist.
        return false;
    };
    let api: kube::Api<kube::api::DynamicObject> = match (&caps.scope, &n.namespace) {
        (kube::discovery::Scope::Namespaced, Some(ns)) => kube::Api::namespaced_with(client.clone(), ns, &ar),
        _ => kube::Api::all_with(client.clone(), &ar),
    };
    match api.get_opt(&o.name).await {
        Ok(Some(obj)) => obj.metadata.uid.as_deref() == Some(o.uid.as_str()),
        Ok(None) => false,
        // When unsure, keep the dependent.
        Err(_) => true,
    }
}
