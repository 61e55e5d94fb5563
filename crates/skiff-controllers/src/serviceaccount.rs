//! Per-namespace defaults, as upstream's serviceaccounts-controller and root-ca-cert-publisher
//! do: every active namespace has a `default` ServiceAccount and a `kube-root-ca.crt`
//! ConfigMap holding the cluster CA, recreated if deleted.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::ResourceExt;
use serde_json::json;
use crate::runtime::Error;

struct Ctx {
    client: kube::Client,
    ca_pem: Option<String>,
}

const ROOT_CA: &str = "kube-root-ca.crt";

/// Run until aborted; `ca_pem` is the cluster CA published in every namespace.
pub async fn run(client: kube::Client, ca_pem: Option<String>) {
    let ctx = Arc::new(Ctx { client: client.clone(), ca_pem });
    Controller::new(Api::<Namespace>::all(client.clone()), watcher::Config::default())
        .watches(Api::<ServiceAccount>::all(client.clone()), watcher::Config::default().fields("metadata.name=default"), |sa| {
            sa.namespace().map(|ns| ObjectRef::<Namespace>::new(&ns))
        })
        .watches(Api::<ConfigMap>::all(client), watcher::Config::default().fields(&format!("metadata.name={ROOT_CA}")), |cm| {
            cm.namespace().map(|ns| ObjectRef::<Namespace>::new(&ns))
        })
        .run(reconcile, crate::runtime::error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if ns.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let name = ns.name_any();
    let sas: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), &name);
    if sas.get_opt("default").await?.is_none() {
        let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": "default", "namespace": name}})).expect("valid");
        match sas.create(&PostParams::default(), &sa).await {
            Ok(_) | Err(kube::Error::Api(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    if let Some(ca) = &ctx.ca_pem {
        let cms: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &name);
        let current = cms.get_opt(ROOT_CA).await?;
        let up_to_date = current.as_ref().and_then(|c| c.data.as_ref()).and_then(|d| d.get("ca.crt")) == Some(ca);
        if !up_to_date {
            let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": ROOT_CA, "namespace": name, "annotations": {"kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."}}, "data": {"ca.crt": ca}});
            cms.patch(ROOT_CA, &PatchParams::apply("root-ca-cert-publisher").force(), &Patch::Apply(&cm)).await?;
        }
    }
    Ok(Action::requeue(Duration::from_secs(300)))
}

/// The CA certificate (PEM) of the first cluster in a kubeconfig file.
pub fn ca_from_kubeconfig(path: &std::path::Path) -> Option<String> {
    let kc = kube::config::Kubeconfig::read_from(path).ok()?;
    let data = kc.clusters.first()?.cluster.as_ref()?.certificate_authority_data.clone()?;
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD.decode(data).ok()?;
    String::from_utf8(bytes).ok()
}
