//! Persistent volumes: the PV binder and a dynamic local-path provisioner.
//!
//! - A default StorageClass `local-path` (provisioner `skiff.io/local-path`,
//!   WaitForFirstConsumer, reclaim Delete) is created at start when missing.
//! - A claim without `storageClassName` normally got the default class from the API server's
//!   admission; one created before any default existed gets it written in later (upstream's
//!   retroactive default StorageClass assignment) where the API server allows that update.
//! - A Pending claim binds to the smallest Available volume that fits its class, access
//!   modes, volume mode, selector and size. For WaitForFirstConsumer classes binding waits
//!   for a scheduled pod using the claim; then a `skiff.io/local-path` class provisions a
//!   hostPath volume `/var/lib/skiff/storage/<pv>` pinned to that pod's node.
//! - A claim nothing can satisfy stays Pending with an event (FailedBinding,
//!   ProvisioningFailed, or ExternalProvisioning for other provisioners, as upstream).
//! - A bound volume whose claim is gone is deleted (reclaim Delete) or Released (Retain).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Event, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::ResourceExt;
use serde_json::json;

use crate::disruption::selector_matches;
use crate::runtime::{Error, Ctx};

/// Name of the default StorageClass.
pub const DEFAULT_CLASS: &str = "local-path";
/// Provisioner name of the built-in local-path provisioner.
pub const PROVISIONER: &str = "skiff.io/local-path";
/// Directory under which provisioned volumes live on their node.
pub const STORAGE_DIR: &str = "/var/lib/skiff/storage";
const DEFAULT_ANNOTATION: &str = "storageclass.kubernetes.io/is-default-class";
const COMPONENT: &str = "persistentvolume-controller";

/// Run until aborted.
pub async fn run(client: kube::Client, pods: impl futures::Stream<Item = Arc<Pod>> + Send + 'static) {
    ensure_default_class(&client).await;
    let ctx = Arc::new(Ctx { client: client.clone() });
    let claims = Controller::new(Api::<PersistentVolumeClaim>::all(client.clone()), watcher::Config::default());
    let claim_store = claims.store();
    let claims = claims
        .watches_shared_stream(pods, |pod: Arc<Pod>| {
            let ns = pod.namespace().unwrap_or_default();
            claim_names(&pod).into_iter().map(|c| ObjectRef::new(&c).within(&ns)).collect::<Vec<_>>()
        })
        .watches(Api::<PersistentVolume>::all(client.clone()), watcher::Config::default(), move |pv: PersistentVolume| {
            match pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) {
                Some(r) => vec![ObjectRef::new(r.name.as_deref().unwrap_or_default()).within(r.namespace.as_deref().unwrap_or_default())],
                // A newly available volume may satisfy any waiting claim.
                None => claim_store
                    .state()
                    .into_iter()
                    .filter(|c| phase_of_claim(c) != "Bound")
                    .map(|c| ObjectRef::from_obj(c.as_ref()))
                    .collect(),
            }
        })
        .run(reconcile_claim, |_, e, _| {
            tracing::debug!(error = %e, "claim reconcile failed");
            Action::requeue(Duration::from_secs(1))
        }, ctx.clone())
        .for_each(|_| async {});
    let volumes = Controller::new(Api::<PersistentVolume>::all(client.clone()), watcher::Config::default())
        .watches(Api::<PersistentVolumeClaim>::all(client), watcher::Config::default(), |pvc: PersistentVolumeClaim| {
            pvc.spec.and_then(|s| s.volume_name).filter(|v| !v.is_empty()).map(|v| ObjectRef::new(&v))
        })
        .run(reconcile_volume, |_, e, _| {
            tracing::debug!(error = %e, "volume reconcile failed");
            Action::requeue(Duration::from_secs(1))
        }, ctx)
        .for_each(|_| async {});
    futures::join!(claims, volumes);
}

/// Create the default `local-path` StorageClass unless it exists; retried until the API
/// server answers, because the provisioner is useless without it.
async fn ensure_default_class(client: &kube::Client) {
    let classes: Api<StorageClass> = Api::all(client.clone());
    let class: StorageClass = serde_json::from_value(json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": DEFAULT_CLASS, "annotations": {DEFAULT_ANNOTATION: "true"}},
        "provisioner": PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer",
    }))
    .expect("static StorageClass");
    for _ in 0..60 {
        match classes.get_opt(DEFAULT_CLASS).await {
            Ok(Some(_)) => return,
            Ok(None) => match classes.create(&PostParams::default(), &class).await {
                Ok(_) => return,
                Err(kube::Error::Api(e)) if e.code == 409 => return,
                Err(e) => tracing::debug!(error = %e, "creating the default storage class failed"),
            },
            Err(e) => tracing::debug!(error = %e, "reading the default storage class failed"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    tracing::warn!("could not create the default storage class {DEFAULT_CLASS}");
}

/// Claims a pod mounts.
fn claim_names(pod: &Pod) -> Vec<String> {
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| v.persistent_volume_claim.as_ref().map(|c| c.claim_name.clone()))
        .collect()
}

fn phase_of_claim(c: &PersistentVolumeClaim) -> &str {
    c.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

fn phase_of_volume(v: &PersistentVolume) -> &str {
    v.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

/// The value of a quantity in base units (bytes for `10Gi`, `500M`, `1e9`; cores for `250m`,
/// `12000n`); None when unparsable.
pub fn quantity_bytes(q: &str) -> Option<f64> {
    let q = q.trim();
    let split = q.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+')).unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        s if s.starts_with(['e', 'E']) => 10f64.powi(s[1..].parse().ok()?),
        _ => return None,
    };
    Some(n * mult)
}

fn requested_bytes(pvc: &PersistentVolumeClaim) -> f64 {
    pvc.spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .and_then(|q| quantity_bytes(&q.0))
        .unwrap_or(0.0)
}

fn capacity_bytes(pv: &PersistentVolume) -> f64 {
    pv.spec.as_ref().and_then(|s| s.capacity.as_ref()).and_then(|c| c.get("storage")).and_then(|q| quantity_bytes(&q.0)).unwrap_or(0.0)
}

/// Whether the volume's node affinity admits `node` (only hostname terms are checked: those
/// are what local volumes carry; anything else is taken to fit).
fn volume_on_node(pv: &PersistentVolume, node: &str) -> bool {
    let Some(terms) = pv.spec.as_ref().and_then(|s| s.node_affinity.as_ref()).and_then(|a| a.required.as_ref()) else { return true };
    terms.node_selector_terms.iter().any(|t| {
        t.match_expressions.iter().flatten().all(|e| {
            e.key != "kubernetes.io/hostname" || (e.operator == "In" && e.values.iter().flatten().any(|v| v == node))
        })
    })
}

/// Whether volume `pv` can back claim `pvc` of class `class`, on `node` if one is chosen.
pub fn volume_fits(pv: &PersistentVolume, pvc: &PersistentVolumeClaim, class: &str, node: Option<&str>) -> bool {
    let (Some(vs), Some(cs)) = (pv.spec.as_ref(), pvc.spec.as_ref()) else { return false };
    if pv.metadata.deletion_timestamp.is_some() || !matches!(phase_of_volume(pv), "" | "Pending" | "Available") {
        return false;
    }
    if let Some(r) = vs.claim_ref.as_ref() {
        let same = r.name == pvc.metadata.name && r.namespace == pvc.metadata.namespace;
        if !same || r.uid.as_ref().is_some_and(|u| Some(u) != pvc.metadata.uid.as_ref()) {
            return false;
        }
    }
    if vs.storage_class_name.as_deref().unwrap_or("") != class {
        return false;
    }
    let pv_modes = vs.access_modes.clone().unwrap_or_default();
    if !cs.access_modes.iter().flatten().all(|m| pv_modes.contains(m)) {
        return false;
    }
    if vs.volume_mode.as_deref().unwrap_or("Filesystem") != cs.volume_mode.as_deref().unwrap_or("Filesystem") {
        return false;
    }
    if let Some(sel) = cs.selector.as_ref() {
        if !selector_matches(sel, pv.labels()) {
            return false;
        }
    }
    if node.is_some_and(|n| !volume_on_node(pv, n)) {
        return false;
    }
    capacity_bytes(pv) >= requested_bytes(pvc)
}

/// The smallest fitting volume; a volume pre-bound to this claim wins.
pub fn best_volume<'a>(pvs: &'a [PersistentVolume], pvc: &PersistentVolumeClaim, class: &str, node: Option<&str>) -> Option<&'a PersistentVolume> {
    let fits: Vec<&PersistentVolume> = pvs.iter().filter(|pv| volume_fits(pv, pvc, class, node)).collect();
    if let Some(pre) = fits.iter().find(|pv| pv.spec.as_ref().is_some_and(|s| s.claim_ref.is_some())) {
        return Some(pre);
    }
    fits.into_iter().min_by(|a, b| capacity_bytes(a).total_cmp(&capacity_bytes(b)))
}

/// Record an event on the claim, or bump the count of the same one (same reason and
/// message) so a claim retried every few seconds does not flood `kubectl describe`.
async fn event(client: &kube::Client, pvc: &PersistentVolumeClaim, type_: &str, reason: &str, message: &str) {
    let ns = pvc.namespace().unwrap_or_default();
    let api: Api<Event> = Api::namespaced(client.clone(), &ns);
    let now = k8s_openapi::jiff::Timestamp::now();
    let uid = pvc.uid().unwrap_or_default();
    if let Ok(list) = api.list(&ListParams::default().fields(&format!("involvedObject.name={}", pvc.name_any()))).await {
        if let Some(old) = list.items.iter().find(|e| e.involved_object.uid.as_deref() == Some(uid.as_str()) && e.reason.as_deref() == Some(reason) && e.message.as_deref() == Some(message)) {
            let count = old.count.unwrap_or(1) + 1;
            let patch = json!({"count": count, "lastTimestamp": now.to_string()});
            let _ = api.patch(&old.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await;
            return;
        }
    }
    let ev = json!({
        "apiVersion": "v1", "kind": "Event",
        // Named like client-go's recorder: <object>.<hex nanoseconds>.
        "metadata": {"name": format!("{}.{:x}", pvc.name_any(), now.as_nanosecond()), "namespace": ns},
        "involvedObject": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": pvc.name_any(), "namespace": ns, "uid": uid, "resourceVersion": pvc.resource_version()},
        "reason": reason, "message": message, "type": type_,
        "source": {"component": COMPONENT}, "reportingComponent": COMPONENT,
        "firstTimestamp": now.to_string(), "lastTimestamp": now.to_string(), "count": 1,
    });
    if let Ok(ev) = serde_json::from_value::<Event>(ev) {
        let _ = api.create(&PostParams::default(), &ev).await;
    }
}

async fn default_class(client: &kube::Client) -> Result<Option<StorageClass>, Error> {
    let classes = Api::<StorageClass>::all(client.clone()).list(&ListParams::default()).await?.items;
    // Several defaults: the newest wins, as upstream decides.
    Ok(classes
        .into_iter()
        .filter(|c| c.annotations().get(DEFAULT_ANNOTATION).is_some_and(|v| v == "true"))
        .max_by_key(|c| c.metadata.creation_timestamp.as_ref().map(|t| t.0.as_second()).unwrap_or(0)))
}

async fn reconcile_claim(pvc: Arc<PersistentVolumeClaim>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if pvc.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = pvc.namespace().unwrap_or_default();
    let name = pvc.name_any();
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    let spec = pvc.spec.clone().unwrap_or_default();
    let Some(class) = spec.storage_class_name.clone() else {
        if let Some(def) = default_class(&ctx.client).await? {
            let patch = json!({"spec": {"storageClassName": def.name_any()}});
            match claims.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => return Ok(Action::await_change()),
                // An API server that keeps the claim spec immutable: treat it as classless.
                Err(kube::Error::Api(e)) if e.code == 422 => {}
                Err(e) => return Err(e.into()),
            }
        }
        return bind_or_wait(&ctx, &pvc, "", None, None).await;
    };
    if phase_of_claim(&pvc) == "Bound" {
        return Ok(Action::await_change());
    }
    if class.is_empty() {
        return bind_or_wait(&ctx, &pvc, "", None, None).await;
    }
    let sc = Api::<StorageClass>::all(ctx.client.clone()).get_opt(&class).await?;
    let wait_for_consumer = sc.as_ref().is_some_and(|c| c.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer"));
    let node = if wait_for_consumer { scheduled_consumer(&ctx.client, &ns, &name).await? } else { None };
    if wait_for_consumer && node.is_none() && spec.volume_name.as_deref().unwrap_or("").is_empty() {
        event(&ctx.client, &pvc, "Normal", "WaitForFirstConsumer", "waiting for first consumer to be created before binding").await;
        return Ok(Action::await_change());
    }
    bind_or_wait(&ctx, &pvc, &class, sc.as_ref(), node.as_deref()).await
}

/// The node of a scheduled pod that mounts claim `name`.
async fn scheduled_consumer(client: &kube::Client, ns: &str, name: &str) -> Result<Option<String>, Error> {
    let pods = Api::<Pod>::namespaced(client.clone(), ns).list(&ListParams::default()).await?.items;
    Ok(pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && claim_names(p).iter().any(|c| c == name))
        .find_map(|p| p.spec.as_ref()?.node_name.clone().filter(|n| !n.is_empty())))
}

async fn bind_or_wait(ctx: &Ctx, pvc: &PersistentVolumeClaim, class: &str, sc: Option<&StorageClass>, node: Option<&str>) -> Result<Action, Error> {
    let pvs = Api::<PersistentVolume>::all(ctx.client.clone()).list(&ListParams::default()).await?.items;
    let wanted = pvc.spec.as_ref().and_then(|s| s.volume_name.clone()).filter(|v| !v.is_empty());
    let chosen = match &wanted {
        // Pre-bound by the user: only that volume will do.
        Some(v) => pvs.iter().find(|pv| pv.name_any() == *v && volume_fits(pv, pvc, class, None)),
        None => best_volume(&pvs, pvc, class, node),
    };
    if let Some(pv) = chosen {
        bind(ctx, pv, pvc).await?;
        return Ok(Action::await_change());
    }
    if wanted.is_some() {
        event(&ctx.client, pvc, "Warning", "FailedBinding", "volume is not available or does not fit this claim").await;
        return Ok(Action::requeue(Duration::from_secs(30)));
    }
    match sc {
        None if class.is_empty() => {
            event(&ctx.client, pvc, "Normal", "FailedBinding", "no persistent volumes available for this claim and no storage class is set").await;
        }
        None => {
            let msg = format!("storageclass.storage.k8s.io \"{class}\" not found");
            event(&ctx.client, pvc, "Warning", "ProvisioningFailed", &msg).await;
        }
        Some(sc) if sc.provisioner == PROVISIONER => match node {
            Some(node) => {
                let pv = provision(ctx, pvc, sc, node).await?;
                bind(ctx, &pv, pvc).await?;
                tracing::info!(pvc = %pvc.name_any(), pv = %pv.name_any(), node, "provisioned local-path volume");
                return Ok(Action::await_change());
            }
            None => {
                // Immediate binding mode: no node to put a local volume on.
                let msg = format!("failed to provision volume with StorageClass \"{class}\": configuration error, no node was specified");
                event(&ctx.client, pvc, "Warning", "ProvisioningFailed", &msg).await;
            }
        },
        Some(sc) => {
            let msg = format!(
                "Waiting for a volume to be created either by the external provisioner '{}' or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered.",
                sc.provisioner
            );
            event(&ctx.client, pvc, "Normal", "ExternalProvisioning", &msg).await;
        }
    }
    Ok(Action::requeue(Duration::from_secs(15)))
}

/// Create a hostPath volume for `pvc` on `node`, already claimed by it.
async fn provision(ctx: &Ctx, pvc: &PersistentVolumeClaim, sc: &StorageClass, node: &str) -> Result<PersistentVolume, Error> {
    let api: Api<PersistentVolume> = Api::all(ctx.client.clone());
    let name = format!("pvc-{}", pvc.uid().unwrap_or_default());
    if let Some(existing) = api.get_opt(&name).await? {
        return Ok(existing);
    }
    let spec = pvc.spec.clone().unwrap_or_default();
    let request = spec.resources.as_ref().and_then(|r| r.requests.as_ref()).and_then(|r| r.get("storage")).map(|q| q.0.clone()).unwrap_or_else(|| "1Gi".into());
    let pv: PersistentVolume = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": name, "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER}},
        "spec": {
            "capacity": {"storage": request},
            "accessModes": spec.access_modes.clone().unwrap_or_else(|| vec!["ReadWriteOnce".into()]),
            "volumeMode": spec.volume_mode.clone().unwrap_or_else(|| "Filesystem".into()),
            "storageClassName": sc.name_any(),
            "persistentVolumeReclaimPolicy": sc.reclaim_policy.clone().unwrap_or_else(|| "Delete".into()),
            "hostPath": {"path": format!("{STORAGE_DIR}/{name}"), "type": "DirectoryOrCreate"},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}
            ]}]}},
            "claimRef": {"kind": "PersistentVolumeClaim", "apiVersion": "v1", "namespace": pvc.namespace(), "name": pvc.name_any(), "uid": pvc.uid()},
        },
    }))
    .expect("static PersistentVolume");
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &pvc.namespace().unwrap_or_default());
    let note = json!({"metadata": {"annotations": {"volume.kubernetes.io/selected-node": node, "volume.kubernetes.io/storage-provisioner": PROVISIONER}}});
    claims.patch(&pvc.name_any(), &PatchParams::default(), &Patch::Merge(&note)).await?;
    match api.create(&PostParams::default(), &pv).await {
        Ok(pv) => Ok(pv),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(api.get(&name).await?),
        Err(e) => Err(e.into()),
    }
}

/// Bind both ways: the volume's claimRef first (with its resourceVersion as precondition, so
/// two claims cannot take one volume), then the claim's volumeName, then both statuses.
async fn bind(ctx: &Ctx, pv: &PersistentVolume, pvc: &PersistentVolumeClaim) -> Result<(), Error> {
    let ns = pvc.namespace().unwrap_or_default();
    let pvs: Api<PersistentVolume> = Api::all(ctx.client.clone());
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    let pv_name = pv.name_any();
    let claim_ref = json!({"kind": "PersistentVolumeClaim", "apiVersion": "v1", "namespace": ns, "name": pvc.name_any(), "uid": pvc.uid(), "resourceVersion": pvc.resource_version()});
    let already = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()).is_some_and(|r| r.uid == pvc.uid());
    if !already {
        let patch = json!({
            "metadata": {"resourceVersion": pv.resource_version(), "annotations": {"pv.kubernetes.io/bound-by-controller": "yes"}},
            "spec": {"claimRef": claim_ref},
        });
        pvs.patch(&pv_name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    }
    pvs.patch_status(&pv_name, &PatchParams::default(), &Patch::Merge(&json!({"status": {"phase": "Bound"}}))).await?;
    let mut annotations = BTreeMap::new();
    annotations.insert("pv.kubernetes.io/bind-completed", "yes");
    annotations.insert("pv.kubernetes.io/bound-by-controller", "yes");
    let patch = json!({"metadata": {"annotations": annotations}, "spec": {"volumeName": pv_name}});
    claims.patch(&pvc.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
    let vs = pv.spec.clone().unwrap_or_default();
    let status = json!({"status": {"phase": "Bound", "accessModes": vs.access_modes, "capacity": vs.capacity}});
    claims.patch_status(&pvc.name_any(), &PatchParams::default(), &Patch::Merge(&status)).await?;
    tracing::info!(pvc = %pvc.name_any(), pv = %pv_name, "bound claim");
    Ok(())
}

async fn reconcile_volume(pv: Arc<PersistentVolume>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if pv.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let api: Api<PersistentVolume> = Api::all(ctx.client.clone());
    let name = pv.name_any();
    let phase = phase_of_volume(&pv).to_string();
    let set_phase = |p: &'static str| {
        let api = api.clone();
        let name = name.clone();
        async move { api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&json!({"status": {"phase": p}}))).await.map(|_| ()) }
    };
    let Some(r) = pv.spec.as_ref().and_then(|s| s.claim_ref.clone()) else {
        if phase != "Available" {
            set_phase("Available").await?;
        }
        return Ok(Action::await_change());
    };
    let ns = r.namespace.clone().unwrap_or_default();
    let claim = Api::<PersistentVolumeClaim>::namespaced(ctx.client.clone(), &ns).get_opt(r.name.as_deref().unwrap_or_default()).await?;
    let ours = claim.as_ref().filter(|c| r.uid.is_none() || c.uid() == r.uid);
    match ours {
        Some(c) => {
            let claimed_back = c.spec.as_ref().and_then(|s| s.volume_name.as_deref()) == Some(name.as_str());
            if claimed_back && phase != "Bound" {
                set_phase("Bound").await?;
            } else if !claimed_back && r.uid.is_none() && phase != "Available" {
                // Pre-bound to a claim that has not picked it yet.
                set_phase("Available").await?;
            }
        }
        None if r.uid.is_none() => {
            if phase != "Available" {
                set_phase("Available").await?;
            }
        }
        None => {
            // The claim is gone: reclaim.
            match pv.spec.as_ref().and_then(|s| s.persistent_volume_reclaim_policy.as_deref()).unwrap_or("Retain") {
                "Delete" => {
                    tracing::info!(pv = %name, "claim deleted, deleting volume");
                    match api.delete(&name, &DeleteParams::background()).await {
                        Ok(_) => {}
                        Err(kube::Error::Api(e)) if e.code == 404 => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                _ if phase != "Released" => set_phase("Released").await?,
                _ => {}
            }
        }
    }
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pv(name: &str, class: &str, size: &str, modes: &[&str]) -> PersistentVolume {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"storageClassName": class, "capacity": {"storage": size}, "accessModes": modes},
            "status": {"phase": "Available"},
        }))
        .unwrap()
    }

    fn pvc(size: &str, modes: &[&str]) -> PersistentVolumeClaim {
        serde_json::from_value(json!({
            "metadata": {"name": "data", "namespace": "default", "uid": "u1"},
            "spec": {"accessModes": modes, "resources": {"requests": {"storage": size}}},
        }))
        .unwrap()
    }

    #[test]
    fn quantities_parse() {
        assert_eq!(quantity_bytes("1Gi"), Some(1024f64.powi(3)));
        assert_eq!(quantity_bytes("500M"), Some(5e8));
        assert_eq!(quantity_bytes("2e3"), Some(2000.0));
        assert_eq!(quantity_bytes("250m"), Some(0.25));
        assert_eq!(quantity_bytes("x"), None);
    }

    #[test]
    fn smallest_fitting_volume_wins() {
        let pvs = vec![
            pv("big", "manual", "10Gi", &["ReadWriteOnce"]),
            pv("small", "manual", "1Gi", &["ReadWriteOnce"]),
            pv("mid", "manual", "2Gi", &["ReadWriteOnce"]),
            pv("rox", "manual", "2Gi", &["ReadOnlyMany"]),
            pv("other", "fast", "2Gi", &["ReadWriteOnce"]),
        ];
        let claim = pvc("1500Mi", &["ReadWriteOnce"]);
        assert_eq!(best_volume(&pvs, &claim, "manual", None).map(|p| p.name_any()).as_deref(), Some("mid"));
        assert!(best_volume(&pvs, &pvc("20Gi", &["ReadWriteOnce"]), "manual", None).is_none());
        assert!(best_volume(&pvs, &claim, "", None).is_none(), "classless claims take classless volumes only");
    }

    #[test]
    fn claimed_and_node_pinned_volumes_are_respected() {
        let mut taken = pv("taken", "manual", "5Gi", &["ReadWriteOnce"]);
        taken.spec.as_mut().unwrap().claim_ref = Some(serde_json::from_value(json!({"namespace": "default", "name": "other"})).unwrap());
        let claim = pvc("1Gi", &["ReadWriteOnce"]);
        assert!(!volume_fits(&taken, &claim, "manual", None));
        let mut pinned = pv("pinned", "manual", "5Gi", &["ReadWriteOnce"]);
        pinned.spec.as_mut().unwrap().node_affinity = Some(serde_json::from_value(json!({"required": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["node-1"]}]}]}})).unwrap());
        assert!(volume_fits(&pinned, &claim, "manual", Some("node-1")));
        assert!(!volume_fits(&pinned, &claim, "manual", Some("node-2")));
    }
}
