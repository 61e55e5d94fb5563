//! Static pods: pods the agent runs from files in `<data-dir>/manifests`, with or without
//! an API server, and the mirror pods that show them in the API.
//!
//! [`source`] reads the directory into pods; the pod manager gives them workers like any
//! other pod (their status goes to the mirror pod of the same name). [`mirror`] keeps one
//! mirror pod per static pod, as upstream's mirror client does: created with the
//! `kubernetes.io/config.mirror` annotation and the Node as owner, recreated when someone
//! deletes it (the static pod keeps running), deleted when the manifest goes away.

pub mod mirror;
pub mod source;

use k8s_openapi::api::core::v1::Pod;

/// Where a pod came from (`file` for static pods, as upstream).
pub const CONFIG_SOURCE: &str = "kubernetes.io/config.source";
/// The static pod's hash (its UID), copied to the mirror pod.
pub const CONFIG_HASH: &str = "kubernetes.io/config.hash";
/// Marks a mirror pod; the value is the hash of the static pod it mirrors.
pub const CONFIG_MIRROR: &str = "kubernetes.io/config.mirror";

fn annotation<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata.annotations.as_ref().and_then(|a| a.get(key)).map(String::as_str)
}

/// A mirror pod in the API (the agent never runs these; it runs the static pod).
pub fn is_mirror(pod: &Pod) -> bool {
    annotation(pod, CONFIG_MIRROR).is_some()
}

/// A static pod read from the manifests directory.
pub fn is_static(pod: &Pod) -> bool {
    annotation(pod, CONFIG_SOURCE) == Some("file") && !is_mirror(pod)
}

/// `namespace/name`, the key static and mirror pods share.
pub fn key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

/// The hash a mirror pod says it mirrors.
pub fn mirrored_hash(mirror: &Pod) -> Option<&str> {
    annotation(mirror, CONFIG_MIRROR)
}

/// The hash (UID) of a static pod.
pub fn hash(pod: &Pod) -> Option<&str> {
    annotation(pod, CONFIG_HASH)
}
