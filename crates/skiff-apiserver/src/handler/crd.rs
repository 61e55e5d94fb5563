//! CustomResourceDefinitions: when a CRD is written, its versions are served (and its status
//! says Established); when it is deleted, they stop being served and its objects are removed.

use std::sync::Arc;

use serde_json::{json, Value};
use skiff_api::meta;

use crate::resources::{Resources, Served};
use crate::Server;

fn is_crd(served: &Served) -> bool {
    served.info.group == "apiextensions.k8s.io" && served.info.kind == "CustomResourceDefinition"
}

/// Serve every stored CRD (at start-up).
pub async fn load_all(srv: &Server) -> anyhow::Result<()> {
    let crds = srv.resources.find("apiextensions.k8s.io", "v1", "customresourcedefinitions").expect("built in");
    let page = srv.objects.list(&crds.info, None, 0, None, None, &|_| true).await?;
    for crd in page.items {
        srv.resources.set_custom(meta::name(&crd), Resources::from_crd(&crd));
    }
    Ok(())
}

/// Keep serving in step with CRD writes made by any server sharing the store.
pub async fn watch_crds(srv: Arc<Server>) {
    use futures::StreamExt;
    let crds = srv.resources.find("apiextensions.k8s.io", "v1", "customresourcedefinitions").expect("built in");
    loop {
        let Ok(rev) = srv.objects.revision().await else { return };
        let Ok(mut stream) = srv.objects.store().watch(&crds.info.key_prefix(), rev).await else { return };
        while let Some(Ok(ev)) = stream.next().await {
            let Ok(obj) = crate::objects::decode(&ev.kv) else { continue };
            if ev.kind == skiff_store::EventKind::Delete {
                srv.resources.set_custom(meta::name(&obj), Vec::new());
            } else {
                srv.resources.set_custom(meta::name(&obj), Resources::from_crd(&obj));
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Called after a create or update succeeded.
pub async fn after_write(srv: &Server, served: &Served, obj: &Value) {
    if !is_crd(served) {
        return;
    }
    srv.resources.set_custom(meta::name(obj), Resources::from_crd(obj));
    // Mark the CRD Established/NamesAccepted, as upstream's controllers do within moments.
    let established = obj
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|c| c.iter().any(|c| c["type"] == "Established" && c["status"] == "True"));
    if !established {
        let now = meta::now_rfc3339();
        let mut next = obj.clone();
        next["status"] = json!({
            "conditions": [
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": now},
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": now},
            ],
            "acceptedNames": obj.pointer("/spec/names").cloned().unwrap_or(json!({})),
            "storedVersions": obj.pointer("/spec/versions").and_then(Value::as_array).map(|vs| vs.iter().filter(|v| v["storage"] == true).map(|v| v["name"].clone()).collect::<Vec<_>>()).unwrap_or_default(),
        });
        let rv: i64 = meta::resource_version(obj).parse().unwrap_or(0);
        let _ = srv.objects.update(&served.info, next, rv).await;
    }
}

/// Called after an object was removed from the store.
pub async fn after_delete(srv: &Server, served: &Served, obj: &Value) {
    if !is_crd(served) {
        return;
    }
    let name = meta::name(obj).to_string();
    if let Some(first) = Resources::from_crd(obj).into_iter().next() {
        // Remove every custom object of this CRD.
        let page = srv.objects.list(&first.info, None, 0, None, None, &|_| true).await;
        if let Ok(page) = page {
            for o in page.items {
                let _ = srv.objects.delete(&first.info, meta::namespace(&o), meta::name(&o), None).await;
            }
        }
    }
    srv.resources.set_custom(&name, Vec::new());
}
