//! The built-in service load balancer (k3s's ServiceLB counterpart): a Service of type
//! LoadBalancer is published on every Ready node's InternalIP, which the service proxy on
//! each node already answers for (LoadBalancer addresses are programmed like ClusterIPs).
//! This controller only fills `status.loadBalancer.ingress` so clients see an address.

use std::collections::BTreeSet;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{Node, Service};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use serde_json::json;

/// The addresses LoadBalancer Services get: every Ready node's InternalIP, sorted.
pub fn ingress_addresses<'a>(nodes: impl IntoIterator<Item = &'a Node>) -> Vec<String> {
    let set: BTreeSet<String> = nodes
        .into_iter()
        .filter(|n| {
            n.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .filter_map(|n| {
            n.status.as_ref()?.addresses.as_ref()?.iter().find(|a| a.type_ == "InternalIP").map(|a| a.address.clone())
        })
        .collect();
    set.into_iter().collect()
}

fn current_ingress(svc: &Service) -> Vec<String> {
    svc.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .map(|list| list.iter().filter_map(|i| i.ip.clone()).collect())
        .unwrap_or_default()
}

async fn sync(client: &kube::Client, services: &Store<Service>, nodes: &Store<Node>) {
    let balanced: Vec<_> = services
        .state()
        .into_iter()
        .filter(|svc| {
            let spec = svc.spec.as_ref();
            spec.and_then(|s| s.type_.as_deref()) == Some("LoadBalancer") && spec.and_then(|s| s.load_balancer_class.as_deref()).is_none()
        })
        .collect();
    // Most clusters have few LoadBalancer Services and many node updates: only walk the
    // nodes (by reference: cloning thousands of Nodes per event was this loop's whole cost)
    // when there is something to publish.
    if balanced.is_empty() {
        return;
    }
    let node_list = nodes.state();
    let wanted = ingress_addresses(node_list.iter().map(|n| n.as_ref()));
    for svc in balanced {
        if current_ingress(&svc) == wanted {
            continue;
        }
        let ns = svc.metadata.namespace.clone().unwrap_or_default();
        let name = svc.metadata.name.clone().unwrap_or_default();
        let ingress: Vec<_> = wanted.iter().map(|ip| json!({"ip": ip, "ipMode": "VIP"})).collect();
        let patch = json!({"status": {"loadBalancer": {"ingress": ingress}}});
        let api: Api<Service> = Api::namespaced(client.clone(), &ns);
        if let Err(e) = api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            tracing::warn!(service = %format!("{ns}/{name}"), error = %e, "could not publish load balancer addresses");
        }
    }
}

/// Run until aborted.
pub async fn run(client: kube::Client) {
    let (services, services_w) = reflector::store();
    let (nodes, nodes_w) = reflector::store();
    let svc_stream = reflector::reflector(services_w, watcher(Api::<Service>::all(client.clone()), watcher::Config::default()))
        .default_backoff()
        .map(|_| ())
        .boxed();
    let node_stream = reflector::reflector(nodes_w, watcher(Api::<Node>::all(client.clone()), watcher::Config::default()))
        .default_backoff()
        .map(|_| ())
        .boxed();
    let mut events = futures::stream::select(svc_stream, node_stream);
    while events.next().await.is_some() {
        // Let a burst settle, then reconcile everything once for the whole burst (there are
        // few LoadBalancer Services; thousands of node events must not mean thousands of syncs).
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        while let Some(Some(())) = events.next().now_or_never() {}
        sync(&client, &services, &nodes).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ready_nodes_publish_their_internal_ip() {
        let node = |ip: &str, ready: &str| -> Node {
            serde_json::from_value(json!({"metadata": {"name": ip},
                "status": {"addresses": [{"type": "Hostname", "address": "h"}, {"type": "InternalIP", "address": ip}],
                           "conditions": [{"type": "Ready", "status": ready}]}}))
            .unwrap()
        };
        let nodes = [node("10.0.0.2", "True"), node("10.0.0.1", "True"), node("10.0.0.3", "Unknown")];
        assert_eq!(ingress_addresses(&nodes), vec!["10.0.0.1".to_string(), "10.0.0.2".to_string()]);
    }
}
