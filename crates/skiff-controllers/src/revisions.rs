//! ControllerRevisions shared by the StatefulSet and DaemonSet controllers: one per pod
//! template, named `<owner>-<hash>`, holding the template as upstream's replace patch
//! (`{"spec":{"template":{..., "$patch":"replace"}}}`) so that `kubectl rollout history`
//! shows them and `kubectl rollout undo` can patch a template back.

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::replicaset::controller_ref;

/// The label revisions (and the owner's pods) carry.
pub const HASH_LABEL: &str = "controller-revision-hash";

/// The template a ControllerRevision records.
pub fn template_of(rev: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut t = rev.data.as_ref()?.0.get("spec")?.get("template")?.clone();
    t.as_object_mut()?.remove("$patch");
    serde_json::from_value(t).ok()
}

/// The revision data for a template.
pub fn data_for(template: &PodTemplateSpec) -> RawExtension {
    let mut t = serde_json::to_value(template).unwrap_or_default();
    if let Some(m) = t.as_object_mut() {
        m.insert("$patch".into(), json!("replace"));
    }
    RawExtension(json!({"spec": {"template": t}}))
}

/// Find or make the revision of `template` (hash `hash`), giving it the highest revision
/// number (a rollback re-numbers an old one, as upstream does), and delete unused revisions
/// beyond `history_limit`. `in_use` names revisions that pods or status still refer to.
/// Returns the owner's revisions, oldest first.
pub async fn sync<K: Resource<DynamicType = ()>>(
    owner: &K,
    template: &PodTemplateSpec,
    history_limit: i32,
    api: &Api<ControllerRevision>,
    selector: &str,
    hash: &str,
    in_use: &[String],
) -> Result<Vec<ControllerRevision>, kube::Error> {
    let uid = owner.meta().uid.clone().unwrap_or_default();
    let owner_name = owner.meta().name.clone().unwrap_or_default();
    let mut revs: Vec<ControllerRevision> = api
        .list(&ListParams::default().labels(selector))
        .await?
        .items
        .into_iter()
        .filter(|r| r.owner_references().iter().any(|o| o.controller == Some(true) && o.uid == uid))
        .collect();
    revs.sort_by_key(|r| r.revision);
    let name = format!("{owner_name}-{hash}");
    let max = revs.last().map(|r| r.revision).unwrap_or(0);
    match revs.iter().position(|r| r.name_any() == name) {
        Some(i) if revs[i].revision == max => {}
        Some(i) => {
            revs[i] = api.patch(&name, &PatchParams::default(), &Patch::Merge(&json!({"revision": max + 1}))).await?;
        }
        None => {
            let mut labels = template.metadata.as_ref().and_then(|m| m.labels.clone()).unwrap_or_default();
            labels.insert(HASH_LABEL.into(), hash.into());
            let rev = ControllerRevision {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: owner.meta().namespace.clone(),
                    labels: Some(labels),
                    owner_references: Some(vec![controller_ref(owner)]),
                    ..Default::default()
                },
                data: Some(data_for(template)),
                revision: max + 1,
            };
            match api.create(&PostParams::default(), &rev).await {
                Ok(r) => revs.push(r),
                Err(kube::Error::Api(e)) if e.code == 409 => revs.push(api.get(&name).await?),
                Err(e) => return Err(e),
            }
        }
    }
    revs.sort_by_key(|r| r.revision);
    let prunable: Vec<String> = revs.iter().map(|r| r.name_any()).filter(|n| *n != name && !in_use.contains(n)).collect();
    for n in prunable.iter().take(prunable.len().saturating_sub(history_limit.max(0) as usize)) {
        let _ = api.delete(n, &DeleteParams::default()).await;
        revs.retain(|r| r.name_any() != *n);
    }
    Ok(revs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_round_trip_through_revision_data() {
        let t: PodTemplateSpec = serde_json::from_value(json!({"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}})).unwrap();
        let data = data_for(&t);
        assert_eq!(data.0["spec"]["template"]["$patch"], "replace");
        let rev = ControllerRevision { data: Some(data), ..Default::default() };
        assert_eq!(template_of(&rev), Some(t));
    }
}
