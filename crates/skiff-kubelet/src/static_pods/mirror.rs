//! Mirror pods: one per static pod, kept as upstream's kubelet keeps them.
//!
//! A mirror pod is the static pod's metadata and spec with the `kubernetes.io/config.mirror`
//! annotation and the Node as controlling owner. One that is being deleted (someone ran
//! `kubectl delete pod`), or that mirrors an older version of the manifest, is deleted for
//! good and made again; one without a static pod is deleted. Deleting a mirror pod never
//! touches the static pod's containers.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use tokio::sync::{mpsc, watch};

use super::{hash, is_mirror, key, mirrored_hash, CONFIG_MIRROR};
use crate::Shared;

/// What the pod watch saw of mirror pods on this node.
#[derive(Debug)]
pub enum Seen {
    /// The watch restarted: forget every mirror pod seen so far.
    Reset,
    /// A mirror pod was created or changed.
    Applied(Box<Pod>),
    /// A mirror pod is gone from the API.
    Deleted(Box<Pod>),
}

/// One step towards the wanted mirror pods.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create this mirror pod.
    Create(Box<Pod>),
    /// Delete mirror pod `namespace/name` with this UID, at once.
    Delete {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// UID (a precondition, so a newer mirror is never deleted by mistake).
        uid: String,
    },
}

/// The mirror pod of `static_pod` (without its owner reference, added when created).
pub fn mirror_of(static_pod: &Pod) -> Pod {
    let mut annotations = static_pod.metadata.annotations.clone().unwrap_or_default();
    annotations.insert(CONFIG_MIRROR.into(), hash(static_pod).unwrap_or_default().to_string());
    Pod {
        metadata: ObjectMeta {
            name: static_pod.metadata.name.clone(),
            namespace: static_pod.metadata.namespace.clone(),
            labels: static_pod.metadata.labels.clone(),
            annotations: Some(annotations),
            ..Default::default()
        },
        spec: static_pod.spec.clone(),
        status: None,
    }
}

/// What to do so that `mirrors` (by `namespace/name`) match `statics` (by UID).
pub fn plan(statics: &BTreeMap<String, Pod>, mirrors: &HashMap<String, Pod>) -> Vec<Action> {
    let wanted: HashMap<String, &Pod> = statics.values().map(|p| (key(p), p)).collect();
    let mut actions = Vec::new();
    for (k, m) in mirrors {
        let current = wanted
            .get(k)
            .is_some_and(|s| hash(s) == mirrored_hash(m) && m.metadata.deletion_timestamp.is_none());
        if current {
            continue;
        }
        actions.push(Action::Delete {
            namespace: m.metadata.namespace.clone().unwrap_or_default(),
            name: m.metadata.name.clone().unwrap_or_default(),
            uid: m.metadata.uid.clone().unwrap_or_default(),
        });
    }
    for (k, s) in &wanted {
        if !mirrors.contains_key(k) {
            actions.push(Action::Create(Box::new(mirror_of(s))));
        }
    }
    actions
}

/// Keeps the mirror pods matching the static pods until the task is dropped. `statics`
/// carries the static pods by UID, `seen` what the pod watch saw of mirror pods.
pub async fn run(shared: Arc<Shared>, mut statics: watch::Receiver<BTreeMap<String, Pod>>, mut seen: mpsc::UnboundedReceiver<Seen>) {
    let mut mirrors: HashMap<String, Pod> = HashMap::new();
    loop {
        let wanted = statics.borrow_and_update().clone();
        for action in plan(&wanted, &mirrors) {
            if let Err(e) = apply(&shared, &action).await {
                tracing::debug!(error = %e, ?action, "mirror pod change failed; retrying");
            }
        }
        tokio::select! {
            changed = statics.changed() => if changed.is_err() { return },
            event = seen.recv() => {
                let Some(event) = event else { return };
                let mut next = Some(event);
                // Take everything already queued before reconciling again.
                while let Some(e) = next {
                    match e {
                        Seen::Reset => mirrors.clear(),
                        Seen::Applied(p) if is_mirror(&p) => { mirrors.insert(key(&p), *p); }
                        Seen::Applied(_) => {}
                        Seen::Deleted(p) => {
                            if mirrors.get(&key(&p)).is_some_and(|m| m.metadata.uid == p.metadata.uid) {
                                mirrors.remove(&key(&p));
                            }
                        }
                    }
                    next = seen.try_recv().ok();
                }
            }
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}

async fn apply(shared: &Shared, action: &Action) -> Result<(), kube::Error> {
    match action {
        Action::Create(pod) => {
            let node_name = &shared.config.node_name;
            let node = Api::<Node>::all(shared.client.clone()).get(node_name).await?;
            let mut pod = (**pod).clone();
            pod.metadata.owner_references = Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "Node".into(),
                name: node_name.clone(),
                uid: node.metadata.uid.unwrap_or_default(),
                controller: Some(true),
                ..Default::default()
            }]);
            let ns = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
            match Api::<Pod>::namespaced(shared.client.clone(), &ns).create(&PostParams::default(), &pod).await {
                Ok(created) => {
                    tracing::info!(pod = %key(&created), "mirror pod created");
                    Ok(())
                }
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
                Err(e) => Err(e),
            }
        }
        Action::Delete { namespace, name, uid } => {
            let params = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions { uid: Some(uid.clone()), resource_version: None }),
                ..Default::default()
            };
            match Api::<Pod>::namespaced(shared.client.clone(), namespace).delete(name, &params).await {
                Ok(_) => {
                    tracing::info!(pod = %format!("{namespace}/{name}"), "mirror pod deleted");
                    Ok(())
                }
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
                Err(e) => Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn static_pod(image: &str) -> Pod {
        let yaml = format!("kind: Pod\nmetadata: {{name: web}}\nspec: {{containers: [{{name: c, image: {image}}}]}}\n");
        super::super::source::parse(&yaml, Path::new("/m/web.yaml"), "n1").unwrap().remove(0)
    }

    fn api_copy(mirror: &Pod, uid: &str) -> Pod {
        let mut m = mirror.clone();
        m.metadata.uid = Some(uid.into());
        m
    }

    #[test]
    fn mirror_pods_carry_the_hash_and_the_static_pods_identity() {
        let s = static_pod("busybox");
        let m = mirror_of(&s);
        assert_eq!(m.metadata.name.as_deref(), Some("web-n1"));
        assert!(m.metadata.uid.is_none());
        let ann = m.metadata.annotations.as_ref().unwrap();
        assert_eq!(ann[CONFIG_MIRROR], *s.metadata.uid.as_ref().unwrap());
        assert_eq!(ann[super::super::CONFIG_SOURCE], "file");
        assert!(is_mirror(&m) && !super::super::is_static(&m) && super::super::is_static(&s));
    }

    #[test]
    fn plans_create_recreate_and_delete() {
        let s = static_pod("busybox");
        let statics = BTreeMap::from([(s.metadata.uid.clone().unwrap(), s.clone())]);
        let mut mirrors = HashMap::new();
        assert!(matches!(plan(&statics, &mirrors)[..], [Action::Create(_)]));

        let m = api_copy(&mirror_of(&s), "m1");
        mirrors.insert(key(&m), m.clone());
        assert!(plan(&statics, &mirrors).is_empty(), "an up-to-date mirror is left alone");

        let mut deleting = m.clone();
        deleting.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()));
        mirrors.insert(key(&m), deleting);
        assert_eq!(
            plan(&statics, &mirrors),
            vec![Action::Delete { namespace: "default".into(), name: "web-n1".into(), uid: "m1".into() }]
        );

        let edited = static_pod("busybox:2");
        let statics2 = BTreeMap::from([(edited.metadata.uid.clone().unwrap(), edited)]);
        mirrors.insert(key(&m), m.clone());
        assert!(matches!(plan(&statics2, &mirrors)[..], [Action::Delete { .. }]), "an outdated mirror goes");

        assert!(matches!(plan(&BTreeMap::new(), &mirrors)[..], [Action::Delete { .. }]), "a mirror without a static pod goes");
    }
}
