//! Events the agent reports about pods and its node (`kubectl describe` shows them).
//!
//! Written as core/v1 Events with `source.component: kubelet`, named `<object>.<hex nanos>`
//! as upstream's recorder names them. Failures to record are logged, never fatal.

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, PostParams};

/// Records events for one node's agent.
#[derive(Clone)]
pub struct Recorder {
    client: kube::Client,
    host: String,
}

/// Severity of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Something expected happened.
    Normal,
    /// Something went wrong.
    Warning,
}

impl Recorder {
    /// A recorder reporting as the kubelet of `host`.
    pub fn new(client: kube::Client, host: &str) -> Self {
        Self { client, host: host.to_string() }
    }

    /// Records an event about `pod`, optionally about one of its containers (`field_path`
    /// such as `spec.containers{web}`).
    pub fn pod(&self, pod: &Pod, field_path: Option<String>, kind: Kind, reason: &str, message: String) {
        let meta = &pod.metadata;
        let reference = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: meta.name.clone(),
            namespace: meta.namespace.clone(),
            uid: meta.uid.clone(),
            resource_version: meta.resource_version.clone(),
            field_path,
        };
        self.publish(reference, kind, reason, message);
    }

    /// Records an event about the node.
    pub fn node(&self, kind: Kind, reason: &str, message: String) {
        let reference = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(self.host.clone()),
            uid: Some(self.host.clone()),
            namespace: Some("default".into()),
            ..Default::default()
        };
        self.publish(reference, kind, reason, message);
    }

    fn publish(&self, reference: ObjectReference, kind: Kind, reason: &str, message: String) {
        let namespace = reference.namespace.clone().unwrap_or_else(|| "default".into());
        let now = chrono::Utc::now();
        let stamp = k8s_openapi::jiff::Timestamp::now();
        let name = format!(
            "{}.{:x}",
            reference.name.as_deref().unwrap_or("unknown"),
            now.timestamp_nanos_opt().unwrap_or_default()
        );
        let event = Event {
            metadata: ObjectMeta { name: Some(name), namespace: Some(namespace.clone()), ..Default::default() },
            involved_object: reference,
            reason: Some(reason.to_string()),
            message: Some(message),
            type_: Some(match kind {
                Kind::Normal => "Normal".into(),
                Kind::Warning => "Warning".into(),
            }),
            source: Some(EventSource { component: Some("kubelet".into()), host: Some(self.host.clone()) }),
            first_timestamp: Some(Time(stamp)),
            last_timestamp: Some(Time(stamp)),
            count: Some(1),
            reporting_component: Some("kubelet".into()),
            reporting_instance: Some(self.host.clone()),
            ..Default::default()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        tokio::spawn(async move {
            if let Err(e) = api.create(&PostParams::default(), &event).await {
                tracing::debug!(error = %e, "could not record event");
            }
        });
    }
}
