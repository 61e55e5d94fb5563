//! Namespace lifecycle: when a namespace is being deleted, delete everything in it, and once
//! nothing is left remove the `kubernetes` finalizer through the `finalize` subresource, so
//! the API server removes the namespace.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, PostParams};

use crate::graph::{api_for, Graph, PassGate};

/// Run until aborted.
pub async fn run(client: kube::Client, graph: Graph) {
    let mut recent: HashMap<std::sync::Arc<str>, Instant> = HashMap::new();
    let mut gate = PassGate::default();
    loop {
        gate.wait(&graph).await;
        recent.retain(|_, t| t.elapsed() < Duration::from_secs(5));
        let terminating = graph.terminating_namespaces();
        gate.ran(!terminating.is_empty());
        for (ns, inside) in terminating {
            if inside.is_empty() {
                finalize(&client, &ns).await;
                continue;
            }
            for n in &inside {
                if n.deleting || recent.contains_key(&n.uid) {
                    continue;
                }
                recent.insert(n.uid.clone(), Instant::now());
                let _ = api_for(&client, n).delete(&n.name, &DeleteParams::background()).await;
            }
        }
    }
}

async fn finalize(client: &kube::Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    let Ok(Some(mut ns)) = api.get_opt(name).await else { return };
    let Some(spec) = ns.spec.as_mut() else { return };
    let before = spec.finalizers.clone().unwrap_or_default();
    let after: Vec<String> = before.iter().filter(|f| *f != "kubernetes").cloned().collect();
    if before == after {
        return;
    }
    spec.finalizers = Some(after);
    match api.replace_subresource("finalize", name, &PostParams::default(), &ns).await {
        Ok(_) => tracing::info!(namespace = %name, "namespace emptied and finalized"),
        Err(e) => tracing::debug!(namespace = %name, error = %e, "finalize failed; will retry"),
    }
}
