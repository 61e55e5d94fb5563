//! First-start objects: the namespaces every cluster has, the `kubernetes` Service with
//! its Endpoints and EndpointSlice pointing at this API server, and the built-in
//! PriorityClasses (system-node-critical, system-cluster-critical). Existing objects are
//! left alone, except the `kubernetes` endpoints, which follow the advertised address and
//! port of every start (as upstream's endpoint reconciler keeps them).

use serde_json::{json, Value};

use crate::resources::Served;
use crate::Server;

async fn ensure(srv: &Server, served: &Served, ns: Option<&str>, mut obj: Value) -> anyhow::Result<()> {
    let name = skiff_api::meta::name(&obj).to_string();
    if srv.objects.try_get(&served.info, ns, &name).await?.is_some() {
        return Ok(());
    }
    match crate::handler::write::create_object(srv, served, &mut obj, ns, false, None).await {
        Ok(_) => {
            tracing::info!(kind = %served.info.kind, %name, "created");
            Ok(())
        }
        Err(e) if e.code == 409 => Ok(()),
        Err(e) => Err(anyhow::anyhow!("creating {} {name}: {e}", served.info.kind)),
    }
}

/// Brings the fields `owned` of the existing object to `obj`'s values (no write when they
/// already match), or creates `obj` when there is none.
async fn reconcile(srv: &Server, served: &Served, ns: Option<&str>, obj: Value, owned: &[&str]) -> anyhow::Result<()> {
    let name = skiff_api::meta::name(&obj).to_string();
    let updated = crate::handler::write::update_with(srv, served, ns, &name, None, false, None, |current| {
        let mut new = current.clone();
        for field in owned {
            new[*field] = obj[*field].clone();
        }
        Ok(new)
    })
    .await;
    match updated {
        Ok(_) => Ok(()),
        Err(e) if e.code == 404 => ensure(srv, served, ns, obj).await,
        Err(e) => Err(anyhow::anyhow!("updating {} {name}: {e}", served.info.kind)),
    }
}

/// Create the default namespaces and the `kubernetes` Service if missing.
pub async fn seed(srv: &Server) -> anyhow::Result<()> {
    let namespaces = srv.resources.find("", "v1", "namespaces").expect("built in");
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        ensure(srv, &namespaces, None, json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})).await?;
    }
    let services = srv.resources.find("", "v1", "services").expect("built in");
    let ip = srv.config.kubernetes_service_ip().to_string();
    ensure(
        srv,
        &services,
        Some("default"),
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"type": "ClusterIP", "clusterIP": ip, "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": srv.config.port}], "sessionAffinity": "None"},
        }),
    )
    .await?;
    let endpoints = srv.resources.find("", "v1", "endpoints").expect("built in");
    let addr = srv.config.advertise_address.to_string();
    reconcile(
        srv,
        &endpoints,
        Some("default"),
        json!({
            "apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
            "subsets": [{"addresses": [{"ip": addr}], "ports": [{"name": "https", "port": srv.config.port, "protocol": "TCP"}]}],
        }),
        &["subsets"],
    )
    .await?;
    // The service proxy and DNS read EndpointSlices: without this one, pods' connections to
    // the `kubernetes` Service were rejected as having no endpoints.
    let slices = srv.resources.find("discovery.k8s.io", "v1", "endpointslices").expect("built in");
    let family = if srv.config.advertise_address.is_ipv4() { "IPv4" } else { "IPv6" };
    reconcile(
        srv,
        &slices,
        Some("default"),
        json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"kubernetes.io/service-name": "kubernetes"}},
            "addressType": family,
            "endpoints": [{"addresses": [addr], "conditions": {"ready": true}}],
            "ports": [{"name": "https", "port": srv.config.port, "protocol": "TCP"}],
        }),
        &["addressType", "endpoints", "ports"],
    )
    .await?;
    let classes = srv.resources.find("scheduling.k8s.io", "v1", "priorityclasses").expect("built in");
    for (name, value, description) in crate::admission::priority::SYSTEM_CLASSES {
        let pc = json!({
            "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
            "metadata": {"name": name}, "value": value, "description": description, "preemptionPolicy": "PreemptLowerPriority",
        });
        ensure(srv, &classes, None, pc).await?;
    }
    Ok(())
}
