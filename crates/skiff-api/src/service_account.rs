//! The service account token volume that upstream's ServiceAccount admission plugin adds to
//! every pod: a projected `kube-api-access-<5 random>` volume with a bound token (3607 s),
//! the cluster CA (`kube-root-ca.crt`) and the namespace, mounted read-only at
//! `/var/run/secrets/kubernetes.io/serviceaccount` in every container that does not already
//! mount something there. Pure functions, so admission (in the API server) can call them.

use std::hash::{BuildHasher, Hasher};

use k8s_openapi::api::core::v1::{Pod, Volume, VolumeMount};
use serde_json::{json, Value};

/// Where clients (client-go's in-cluster config, kube-rs) look for the token.
pub const MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// Prefix of the volume's name.
pub const VOLUME_PREFIX: &str = "kube-api-access-";
/// Upstream's lifetime: one hour plus seven seconds, so the token can be told apart from
/// hand-made ones and extended ones get recognised.
pub const EXPIRATION_SECONDS: i64 = 3607;

/// The volume and the mount to add to `pod`, or `None` when the pod opts out
/// (`automountServiceAccountToken: false`), already has such a volume, or every container
/// already mounts something at [`MOUNT_PATH`].
///
/// The mount goes into each container (and init container) without a mount at
/// [`MOUNT_PATH`]. The service account's own `automountServiceAccountToken` is the caller's
/// to check (the pod's setting, when present, wins over it).
pub fn service_account_volume(pod: &Pod) -> Option<(Volume, VolumeMount)> {
    let v = serde_json::to_value(pod).ok()?;
    let (volume, mount) = plan(&v, None)?;
    Some((serde_json::from_value(volume).ok()?, serde_json::from_value(mount).ok()?))
}

/// Add the volume and mounts to a pod given as JSON (what skiff's admission works on).
/// `sa_automount` is the ServiceAccount's `automountServiceAccountToken`. Also defaults
/// `serviceAccountName` to `default` as upstream's plugin does. Returns whether the pod
/// changed.
pub fn inject_service_account_volume(pod: &mut Value, sa_automount: Option<bool>) -> bool {
    let mut changed = false;
    if let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) {
        let has_sa = spec.get("serviceAccountName").and_then(Value::as_str).is_some_and(|s| !s.is_empty());
        if !has_sa {
            spec.insert("serviceAccountName".into(), json!("default"));
            spec.insert("serviceAccount".into(), json!("default"));
            changed = true;
        }
    }
    let Some((volume, mount)) = plan(pod, sa_automount) else { return changed };
    let spec = pod["spec"].as_object_mut().expect("plan checked spec");
    for list in ["initContainers", "containers"] {
        for c in spec.get_mut(list).and_then(Value::as_array_mut).into_iter().flatten() {
            if mounts_token_path(c) {
                continue;
            }
            if let Some(mounts) = c.as_object_mut().and_then(|o| o.entry("volumeMounts").or_insert(json!([])).as_array_mut()) {
                mounts.push(mount.clone());
                changed = true;
            }
        }
    }
    let vols = spec.entry("volumes").or_insert(json!([]));
    if let Some(v) = vols.as_array_mut() {
        v.push(volume);
        changed = true;
    }
    changed
}

fn mounts_token_path(container: &Value) -> bool {
    container["volumeMounts"].as_array().into_iter().flatten().any(|m| m["mountPath"].as_str() == Some(MOUNT_PATH))
}

fn plan(pod: &Value, sa_automount: Option<bool>) -> Option<(Value, Value)> {
    let spec = pod.get("spec")?.as_object()?;
    let automount = spec.get("automountServiceAccountToken").and_then(Value::as_bool).or(sa_automount).unwrap_or(true);
    // Mirror pods (static pods) never get API credentials upstream.
    let mirror = pod.pointer("/metadata/annotations/kubernetes.io~1config.mirror").is_some();
    if !automount || mirror {
        return None;
    }
    let has_volume = spec.get("volumes").and_then(Value::as_array).into_iter().flatten().any(|v| v["name"].as_str().is_some_and(|n| n.starts_with(VOLUME_PREFIX)));
    let containers = ["initContainers", "containers"].into_iter().flat_map(|l| spec.get(l).and_then(Value::as_array).into_iter().flatten());
    let needs = containers.clone().any(|c| !mounts_token_path(c));
    if has_volume || !needs {
        return None;
    }
    let name = format!("{VOLUME_PREFIX}{}", random_suffix());
    let volume = json!({
        "name": name,
        "projected": {
            "defaultMode": 420,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": EXPIRATION_SECONDS, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ],
        },
    });
    let mount = json!({"name": name, "readOnly": true, "mountPath": MOUNT_PATH});
    Some((volume, mount))
}

/// Five characters from upstream's `utilrand` alphabet (no vowels, no look-alikes).
fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    // RandomState is seeded from the OS; mixing in the time varies it per call.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0));
    let mut n = h.finish();
    (0..5)
        .map(|_| {
            let c = ALPHABET[(n % ALPHABET.len() as u64) as usize] as char;
            n /= ALPHABET.len() as u64;
            c
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(extra: Value) -> Value {
        let mut p = json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": {
            "containers": [{"name": "a"}, {"name": "b", "volumeMounts": [{"name": "own", "mountPath": MOUNT_PATH}]}],
            "initContainers": [{"name": "i"}]}});
        if let (Some(s), Some(e)) = (p["spec"].as_object_mut(), extra.as_object()) {
            s.extend(e.clone());
        }
        p
    }

    #[test]
    fn injects_like_upstream() {
        let mut p = pod(json!({}));
        assert!(inject_service_account_volume(&mut p, None));
        assert_eq!(p["spec"]["serviceAccountName"], "default");
        let vols = p["spec"]["volumes"].as_array().unwrap().clone();
        assert_eq!(vols.len(), 1);
        let name = vols[0]["name"].as_str().unwrap().to_string();
        let name = name.as_str();
        assert!(name.starts_with(VOLUME_PREFIX) && name.len() == VOLUME_PREFIX.len() + 5, "{name}");
        assert_eq!(vols[0]["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"], 3607);
        assert_eq!(p["spec"]["containers"][0]["volumeMounts"][0], json!({"name": name, "readOnly": true, "mountPath": MOUNT_PATH}));
        assert_eq!(p["spec"]["containers"][1]["volumeMounts"].as_array().unwrap().len(), 1, "own mount kept, none added");
        assert_eq!(p["spec"]["initContainers"][0]["volumeMounts"][0]["name"], name);
        let again = p.clone();
        assert!(!inject_service_account_volume(&mut p, None), "idempotent");
        assert_eq!(p, again);
        // The typed form parses.
        let typed: Volume = serde_json::from_value(vols[0].clone()).unwrap();
        assert_eq!(typed.projected.unwrap().sources.unwrap().len(), 3);
    }

    #[test]
    fn opt_outs() {
        let mut p = pod(json!({"automountServiceAccountToken": false}));
        inject_service_account_volume(&mut p, Some(true));
        assert!(p["spec"].get("volumes").is_none(), "pod setting wins");
        let mut p = pod(json!({}));
        inject_service_account_volume(&mut p, Some(false));
        assert!(p["spec"].get("volumes").is_none(), "service account opt-out");
        let mut p = pod(json!({"automountServiceAccountToken": true}));
        inject_service_account_volume(&mut p, Some(false));
        assert!(p["spec"].get("volumes").is_some(), "pod opt-in wins over the service account");
        let typed: Pod = serde_json::from_value(pod(json!({}))).unwrap();
        let (v, m) = service_account_volume(&typed).unwrap();
        assert_eq!(v.name, m.name);
        assert_eq!(m.read_only, Some(true));
        assert_ne!(random_suffix(), random_suffix());
    }
}
