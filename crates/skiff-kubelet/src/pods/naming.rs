//! Ids and labels that tie runtime objects to pods, so that an agent restart can find
//! every sandbox and container it made from the runtime alone.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

/// Label: the pod's UID.
pub const POD_UID: &str = "skiff.pod.uid";
/// Label: the pod's name.
pub const POD_NAME: &str = "skiff.pod.name";
/// Label: the pod's namespace.
pub const POD_NAMESPACE: &str = "skiff.pod.namespace";
/// Label: the container's name in the pod spec.
pub const CONTAINER_NAME: &str = "skiff.container.name";
/// Label: which start of that container this is (0, 1, ...): the restart count.
pub const CONTAINER_ATTEMPT: &str = "skiff.container.attempt";

/// The sandbox id of a pod: its UID (path-safe, 36 characters).
pub fn sandbox_id(pod_uid: &str) -> String {
    pod_uid.to_string()
}

/// The runtime id of attempt `attempt` of container `name` of pod `pod_uid`: readable,
/// path-safe and at most 64 characters (long names are shortened with a hash).
pub fn container_id(pod_uid: &str, name: &str, attempt: u32) -> String {
    let uid = container_id_prefix(pod_uid);
    let name = if name.len() > 36 {
        let hash = Sha256::digest(name.as_bytes());
        let hex: String = hash.iter().take(4).map(|b| format!("{b:02x}")).collect();
        format!("{}{}", &name[..28], hex)
    } else {
        name.to_string()
    };
    format!("{uid}{name}-{attempt}")
}

/// What every container id of pod `pod_uid` starts with (other pods' ids may too, rarely:
/// callers still check the pod UID label).
pub fn container_id_prefix(pod_uid: &str) -> String {
    let uid: String = pod_uid.chars().filter(|c| c.is_ascii_alphanumeric()).take(12).collect();
    format!("{uid}-")
}

/// Labels of a pod's sandbox.
pub fn sandbox_labels(uid: &str, namespace: &str, name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (POD_UID.to_string(), uid.to_string()),
        (POD_NAME.to_string(), name.to_string()),
        (POD_NAMESPACE.to_string(), namespace.to_string()),
    ])
}

/// Labels of one container attempt.
pub fn container_labels(uid: &str, namespace: &str, pod: &str, container: &str, attempt: u32) -> BTreeMap<String, String> {
    let mut labels = sandbox_labels(uid, namespace, pod);
    labels.insert(CONTAINER_NAME.into(), container.into());
    labels.insert(CONTAINER_ATTEMPT.into(), attempt.to_string());
    labels
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ids_are_valid_runtime_ids() {
        let uid = "0b4c6e1a-1234-4bcd-8123-0123456789ab";
        let id = container_id(uid, "web", 3);
        assert_eq!(id, "0b4c6e1a1234-web-3");
        assert!(id.starts_with(&container_id_prefix(uid)));
        let long = "a".repeat(63);
        let id = container_id(uid, &long, 12345);
        assert!(id.len() <= 64, "{id}");
        assert!(skiff_runtime::error::validate_id(&id).is_ok());
        assert_ne!(container_id(uid, &format!("{}b", "a".repeat(40)), 0), container_id(uid, &format!("{}c", "a".repeat(40)), 0));
    }
}
