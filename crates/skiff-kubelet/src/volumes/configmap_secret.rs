//! `configMap` and `secret` volumes (also the projected sources of the same kinds): the
//! object's keys become files, written with the atomic writer so updates are atomic.
//!
//! Rules are upstream's `MakePayload`: without `items` every key is a file named after it
//! with `defaultMode`; with `items` only the listed keys, at their `path`, with their `mode`
//! or `defaultMode`. A missing object or key is an error unless the source is optional, in
//! which case it is an empty object.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, KeyToPath, Secret};
use kube::api::Api;

use super::atomic_writer::FileProjection;
use super::error::SetUpError;

/// Upstream's default `defaultMode` (0644) when the API server did not default it.
pub const DEFAULT_MODE: u32 = 0o644;

/// Files of a ConfigMap volume.
pub fn configmap_payload(items: &[KeyToPath], cm: &ConfigMap, default_mode: u32, optional: bool) -> Result<BTreeMap<String, FileProjection>, SetUpError> {
    let data = cm.data.as_ref();
    let binary = cm.binary_data.as_ref();
    let mut out = BTreeMap::new();
    if items.is_empty() {
        for (k, v) in data.into_iter().flatten() {
            out.insert(k.clone(), FileProjection { data: v.clone().into_bytes(), mode: default_mode });
        }
        for (k, v) in binary.into_iter().flatten() {
            out.insert(k.clone(), FileProjection { data: v.0.clone(), mode: default_mode });
        }
        return Ok(out);
    }
    for item in items {
        let bytes = match (data.and_then(|d| d.get(&item.key)), binary.and_then(|b| b.get(&item.key))) {
            (Some(s), _) => s.clone().into_bytes(),
            (None, Some(b)) => b.0.clone(),
            (None, None) if optional => continue,
            (None, None) => return Err(SetUpError::MissingConfigMapKey(item.key.clone())),
        };
        let mode = item.mode.map(|m| m as u32).unwrap_or(default_mode);
        out.insert(item.path.clone(), FileProjection { data: bytes, mode });
    }
    Ok(out)
}

/// Files of a Secret volume.
pub fn secret_payload(items: &[KeyToPath], secret: &Secret, default_mode: u32, optional: bool) -> Result<BTreeMap<String, FileProjection>, SetUpError> {
    let data = secret.data.as_ref();
    let mut out = BTreeMap::new();
    if items.is_empty() {
        for (k, v) in data.into_iter().flatten() {
            out.insert(k.clone(), FileProjection { data: v.0.clone(), mode: default_mode });
        }
        return Ok(out);
    }
    for item in items {
        let bytes = match data.and_then(|d| d.get(&item.key)) {
            Some(b) => b.0.clone(),
            None if optional => continue,
            None => return Err(SetUpError::MissingSecretKey(item.key.clone())),
        };
        let mode = item.mode.map(|m| m as u32).unwrap_or(default_mode);
        out.insert(item.path.clone(), FileProjection { data: bytes, mode });
    }
    Ok(out)
}

/// The ConfigMap `namespace/name`; an empty one when it is missing and `optional`.
pub async fn get_configmap(client: &kube::Client, namespace: &str, name: &str, optional: bool) -> Result<ConfigMap, SetUpError> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    match api.get_opt(name).await {
        Ok(Some(cm)) => Ok(cm),
        Ok(None) if optional => Ok(ConfigMap::default()),
        Ok(None) => Err(SetUpError::NotFound { kind: "configmap", name: name.to_string() }),
        Err(source) => Err(SetUpError::Api { what: format!("getting configmap {namespace}/{name}"), source }),
    }
}

/// The Secret `namespace/name`; an empty one when it is missing and `optional`.
pub async fn get_secret(client: &kube::Client, namespace: &str, name: &str, optional: bool) -> Result<Secret, SetUpError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    match api.get_opt(name).await {
        Ok(Some(s)) => Ok(s),
        Ok(None) if optional => Ok(Secret::default()),
        Ok(None) => Err(SetUpError::NotFound { kind: "secret", name: name.to_string() }),
        Err(source) => Err(SetUpError::Api { what: format!("getting secret {namespace}/{name}"), source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cm() -> ConfigMap {
        serde_json::from_value(json!({"data": {"a.conf": "A", "b": "B"}, "binaryData": {"bin": "AAEC"}})).unwrap()
    }

    fn items(v: serde_json::Value) -> Vec<KeyToPath> {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn configmap_keys_as_files() {
        let p = configmap_payload(&[], &cm(), 0o644, false).unwrap();
        assert_eq!(p.keys().collect::<Vec<_>>(), ["a.conf", "b", "bin"]);
        assert_eq!(p["bin"].data, vec![0, 1, 2]);
        assert!(p.values().all(|f| f.mode == 0o644));
    }

    #[test]
    fn configmap_items_paths_and_modes() {
        let it = items(json!([{"key": "a.conf", "path": "conf/app.conf", "mode": 0o400}, {"key": "bin", "path": "raw"}]));
        let p = configmap_payload(&it, &cm(), 0o640, false).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p["conf/app.conf"], FileProjection { data: b"A".to_vec(), mode: 0o400 });
        assert_eq!(p["raw"].mode, 0o640);
        let missing = items(json!([{"key": "nope", "path": "x"}]));
        assert_eq!(configmap_payload(&missing, &cm(), 0o644, false).unwrap_err().to_string(), "configmap references non-existent config key: nope");
        assert!(configmap_payload(&missing, &cm(), 0o644, true).unwrap().is_empty());
    }

    #[test]
    fn secret_items() {
        let s: Secret = serde_json::from_value(json!({"data": {"user": "YWRtaW4=", "pass": "cHc="}})).unwrap();
        let p = secret_payload(&[], &s, 0o600, false).unwrap();
        assert_eq!(p["user"].data, b"admin");
        assert_eq!(p["pass"].mode, 0o600);
        let it = items(json!([{"key": "pass", "path": "db/password"}]));
        let p = secret_payload(&it, &s, 0o644, false).unwrap();
        assert_eq!(p.keys().collect::<Vec<_>>(), ["db/password"]);
        let missing = items(json!([{"key": "x", "path": "x"}]));
        assert_eq!(secret_payload(&missing, &s, 0o644, false).unwrap_err().to_string(), "references non-existent secret key: x");
    }
}
