//! `persistentVolumeClaim` (and generic `ephemeral`) volumes: follow the claim to its bound
//! PersistentVolume and use the node-local directory it names. skiff's local-path
//! provisioner (skiff-controllers `volume.rs`) creates `hostPath` volumes of type
//! `DirectoryOrCreate` under `/var/lib/skiff/storage`; hand-made `local` volumes work too.
//! Network and CSI volume sources are not supported on this node.

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::api::Api;

use super::error::SetUpError;
use super::hostpath;

/// Resolve claim `namespace/claim` to the host directory of its volume.
pub async fn host_path(client: &kube::Client, namespace: &str, claim: &str) -> Result<String, SetUpError> {
    let fail = |reason: String| SetUpError::Claim { namespace: namespace.to_string(), claim: claim.to_string(), reason };
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    let pvc = match claims.get_opt(claim).await {
        Ok(Some(p)) => p,
        Ok(None) => return Err(fail(format!("persistentvolumeclaim {claim:?} not found"))),
        Err(e) => return Err(fail(format!("failed to fetch PVC from API server: {e}"))),
    };
    let pv_name = check_claim(&pvc).map_err(|r| fail(r.to_string()))?;
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let pv = match volumes.get_opt(&pv_name).await {
        Ok(Some(pv)) => pv,
        Ok(None) => return Err(fail(format!("failed to fetch PV {pv_name} from API server: persistentvolume {pv_name:?} not found"))),
        Err(e) => return Err(fail(format!("failed to fetch PV {pv_name} from API server: {e}"))),
    };
    let (path, kind) = volume_path(&pv, &pvc).map_err(fail)?;
    match kind {
        Some(kind) => hostpath::check(&path, &kind)?,
        // `local` volumes are made by an administrator; they must exist.
        None => hostpath::check(&path, "Directory")?,
    }
    Ok(path)
}

/// The name of the volume a usable claim is bound to.
pub fn check_claim(pvc: &PersistentVolumeClaim) -> Result<String, &'static str> {
    if pvc.metadata.deletion_timestamp.is_some() {
        return Err("PVC is being deleted");
    }
    if pvc.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Bound") {
        return Err("PVC is not bound");
    }
    match pvc.spec.as_ref().and_then(|s| s.volume_name.clone()).filter(|v| !v.is_empty()) {
        Some(v) => Ok(v),
        None => Err("PVC has empty pvc.Spec.VolumeName"),
    }
}

/// The host path of a volume and its hostPath type (`None` for `local` volumes), after
/// checking that the volume is bound to this claim.
pub fn volume_path(pv: &PersistentVolume, pvc: &PersistentVolumeClaim) -> Result<(String, Option<String>), String> {
    let name = pv.metadata.name.clone().unwrap_or_default();
    let spec = pv.spec.as_ref().ok_or_else(|| format!("PV {name} has no spec"))?;
    let bound = spec.claim_ref.as_ref().is_some_and(|r| r.uid.is_none() || r.uid == pvc.metadata.uid);
    if !bound {
        return Err(format!("found PV object {name} but it has a nil or mismatched ClaimRef"));
    }
    if let Some(h) = spec.host_path.as_ref() {
        return Ok((h.path.clone(), Some(h.type_.clone().unwrap_or_default())));
    }
    if let Some(l) = spec.local.as_ref() {
        return Ok((l.path.clone(), None));
    }
    Err(format!("PV {name} has a volume source this node cannot mount (only hostPath and local are supported)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pvc(phase: &str, volume: &str) -> PersistentVolumeClaim {
        serde_json::from_value(json!({"metadata": {"name": "data", "uid": "c1"}, "spec": {"volumeName": volume}, "status": {"phase": phase}})).unwrap()
    }

    #[test]
    fn claim_states() {
        assert_eq!(check_claim(&pvc("Bound", "pv1")).unwrap(), "pv1");
        assert_eq!(check_claim(&pvc("Pending", "")).unwrap_err(), "PVC is not bound");
        assert_eq!(check_claim(&pvc("Bound", "")).unwrap_err(), "PVC has empty pvc.Spec.VolumeName");
    }

    #[test]
    fn volume_sources() {
        let hp: PersistentVolume = serde_json::from_value(json!({"metadata": {"name": "pv1"}, "spec": {
            "claimRef": {"name": "data", "uid": "c1"}, "hostPath": {"path": "/var/lib/skiff/storage/pv1", "type": "DirectoryOrCreate"}}})).unwrap();
        assert_eq!(volume_path(&hp, &pvc("Bound", "pv1")).unwrap(), ("/var/lib/skiff/storage/pv1".into(), Some("DirectoryOrCreate".into())));
        let local: PersistentVolume = serde_json::from_value(json!({"metadata": {"name": "pv2"}, "spec": {
            "claimRef": {"name": "data"}, "local": {"path": "/mnt/disk"}}})).unwrap();
        assert_eq!(volume_path(&local, &pvc("Bound", "pv2")).unwrap(), ("/mnt/disk".into(), None));
        let other: PersistentVolume = serde_json::from_value(json!({"metadata": {"name": "pv3"}, "spec": {
            "claimRef": {"name": "data", "uid": "someone-else"}, "local": {"path": "/mnt"}}})).unwrap();
        assert!(volume_path(&other, &pvc("Bound", "pv3")).unwrap_err().contains("mismatched ClaimRef"));
        let nfs: PersistentVolume = serde_json::from_value(json!({"metadata": {"name": "pv4"}, "spec": {
            "claimRef": {"name": "data"}, "nfs": {"server": "x", "path": "/"}}})).unwrap();
        assert!(volume_path(&nfs, &pvc("Bound", "pv4")).is_err());
    }
}
