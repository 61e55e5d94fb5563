//! Endpoints and EndpointSlice controller: for every Service with a selector, the pods it
//! selects become its Endpoints (ready addresses and notReadyAddresses, target ports resolved
//! by number or by name per pod) and one EndpointSlice (`kubernetes.io/service-name` label,
//! ready/serving/terminating conditions). A selector matching nothing gives empty endpoints.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service, ServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::ResourceExt;
use serde_json::{json, Value};

use crate::pods::is_ready;
use crate::runtime::{Error, Ctx};

const MANAGER: &str = "endpointslice-controller.k8s.io";

/// Run until aborted.
pub async fn run(client: kube::Client, pods: impl futures::Stream<Item = Arc<Pod>> + Send + 'static) {
    let ctx = Arc::new(Ctx { client: client.clone() });
    let controller = Controller::new(Api::<Service>::all(client.clone()), watcher::Config::default());
    let services = controller.store();
    controller
        .watches_shared_stream(pods, move |pod: Arc<Pod>| {
            let ns = pod.namespace();
            let labels = pod.labels().clone();
            services
                .state()
                .into_iter()
                .filter(|s| s.namespace() == ns)
                .filter(|s| {
                    s.spec.as_ref().and_then(|sp| sp.selector.as_ref()).is_some_and(|sel| !sel.is_empty() && sel.iter().all(|(k, v)| labels.get(k) == Some(v)))
                })
                .map(|s| ObjectRef::from_obj(s.as_ref()))
                .collect::<Vec<_>>()
        })
        .run(reconcile, crate::runtime::error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

/// The container port a service port targets on `pod` (numbers as is, names looked up).
fn target_port(sp: &ServicePort, pod: &Pod) -> Option<i32> {
    match sp.target_port.as_ref() {
        None => Some(sp.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => pod
            .spec
            .as_ref()?
            .containers
            .iter()
            .flat_map(|c| c.ports.iter().flatten())
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .map(|p| p.container_port),
    }
}

/// The pod's hostname when its subdomain is the Service `service` (upstream's rule for the
/// endpoint hostname).
fn pod_hostname_under(pod: &Pod, service: &str) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if spec.subdomain.as_deref() != Some(service) {
        return None;
    }
    spec.hostname.clone().filter(|h| !h.is_empty())
}

async fn reconcile(svc: Arc<Service>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ns = svc.namespace().unwrap_or_default();
    let name = svc.name_any();
    let spec = svc.spec.clone().unwrap_or_default();
    let Some(selector) = spec.selector.clone().filter(|s| !s.is_empty()) else {
        // Services without selectors have endpoints managed by their users.
        return Ok(Action::await_change());
    };
    if svc.metadata.deletion_timestamp.is_some() || spec.type_.as_deref() == Some("ExternalName") {
        return Ok(Action::await_change());
    }
    let sel: Vec<String> = selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let list = pods.list(&ListParams::default().labels(&sel.join(","))).await?;
    let publish_not_ready = spec.publish_not_ready_addresses.unwrap_or(false);
    let ports = spec.ports.clone().unwrap_or_default();

    // Endpoints: subsets grouped by the resolved port list.
    // Per resolved port list: (ready addresses, not-ready addresses, ports).
    type Subset = (Vec<Value>, Vec<Value>, Vec<Value>);
    let mut subsets: BTreeMap<String, Subset> = BTreeMap::new();
    let mut slice_endpoints = Vec::new();
    let mut slice_ports: Option<Vec<Value>> = None;
    for pod in &list.items {
        let Some(ip) = pod.status.as_ref().and_then(|s| s.pod_ip.clone()).filter(|ip| !ip.is_empty()) else { continue };
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("");
        if phase == "Succeeded" || phase == "Failed" {
            continue;
        }
        let terminating = pod.metadata.deletion_timestamp.is_some();
        let ready = (is_ready(pod) && !terminating) || publish_not_ready;
        let resolved: Vec<Value> = ports
            .iter()
            .filter_map(|sp| {
                let port = target_port(sp, pod)?;
                Some(json!({"name": sp.name.clone().unwrap_or_default(), "port": port, "protocol": sp.protocol.clone().unwrap_or_else(|| "TCP".into())}))
            })
            .collect();
        let mut addr = json!({
            "ip": ip,
            "nodeName": pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            "targetRef": {"kind": "Pod", "name": pod.name_any(), "namespace": ns, "uid": pod.uid()},
        });
        let mut endpoint = json!({
            "addresses": [ip],
            "conditions": {"ready": ready, "serving": is_ready(pod) || publish_not_ready, "terminating": terminating},
            "nodeName": pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            "targetRef": {"kind": "Pod", "name": pod.name_any(), "namespace": ns, "uid": pod.uid()},
        });
        // A pod whose subdomain is this Service is named by its hostname in DNS
        // (`<hostname>.<service>.<namespace>.svc`), as StatefulSet pods are.
        if let Some(hostname) = pod_hostname_under(pod, &name) {
            addr["hostname"] = json!(hostname);
            endpoint["hostname"] = json!(hostname);
        }
        slice_endpoints.push(endpoint);
        if slice_ports.is_none() {
            slice_ports = Some(resolved.clone());
        }
        if terminating && !publish_not_ready {
            continue;
        }
        let key = serde_json::to_string(&resolved).unwrap_or_default();
        let entry = subsets.entry(key).or_insert_with(|| (Vec::new(), Vec::new(), resolved.clone()));
        if ready {
            entry.0.push(addr);
        } else {
            entry.1.push(addr);
        }
    }
    let subsets: Vec<Value> = subsets
        .into_values()
        .map(|(ready, not_ready, ports)| {
            let mut s = json!({"ports": ports});
            if !ready.is_empty() {
                s["addresses"] = json!(ready);
            }
            if !not_ready.is_empty() {
                s["notReadyAddresses"] = json!(not_ready);
            }
            s
        })
        .collect();
    let owner = json!([{"apiVersion": "v1", "kind": "Service", "name": name, "uid": svc.uid(), "controller": true, "blockOwnerDeletion": true}]);
    let ep = json!({
        "apiVersion": "v1", "kind": "Endpoints",
        // Owned by the Service so the garbage collector removes it with the Service.
        "metadata": {"name": name, "namespace": ns, "labels": svc.labels(), "ownerReferences": owner},
        "subsets": subsets,
    });
    let ep_api: Api<Endpoints> = Api::namespaced(ctx.client.clone(), &ns);
    ep_api.patch(&name, &PatchParams::apply("endpoint-controller").force(), &Patch::Apply(&ep)).await?;

    let mut labels = svc.labels().clone();
    labels.insert("kubernetes.io/service-name".into(), name.clone());
    labels.insert("endpointslice.kubernetes.io/managed-by".into(), MANAGER.into());
    let slice_ports = slice_ports.unwrap_or_else(|| {
        ports
            .iter()
            .filter_map(|sp| match sp.target_port.as_ref() {
                Some(IntOrString::String(_)) => None,
                _ => Some(json!({"name": sp.name.clone().unwrap_or_default(), "port": target_port(sp, &Pod::default())?, "protocol": sp.protocol.clone().unwrap_or_else(|| "TCP".into())})),
            })
            .collect()
    });
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("{name}-skiff"), "namespace": ns, "labels": labels, "ownerReferences": owner},
        "addressType": "IPv4",
        "endpoints": slice_endpoints,
        "ports": slice_ports,
    });
    let es_api: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), &ns);
    es_api.patch(&format!("{name}-skiff"), &PatchParams::apply(MANAGER).force(), &Patch::Apply(&slice)).await?;
    Ok(Action::requeue(Duration::from_secs(60)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(hostname: Option<&str>, subdomain: Option<&str>) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"containers": [], "hostname": hostname, "subdomain": subdomain}})).unwrap()
    }

    #[test]
    fn endpoint_hostname_only_under_the_pods_subdomain() {
        assert_eq!(pod_hostname_under(&pod(Some("web-0"), Some("web")), "web").as_deref(), Some("web-0"));
        assert_eq!(pod_hostname_under(&pod(Some("web-0"), Some("other")), "web"), None);
        assert_eq!(pod_hostname_under(&pod(Some("web-0"), None), "web"), None);
        assert_eq!(pod_hostname_under(&pod(None, Some("web")), "web"), None);
    }
}
