//! The table of built-in kinds whose schemas come from `k8s-openapi`.
//!
//! Each entry ties a group/version/kind to the `k8s-openapi` type that carries its schema, so the
//! documents can pull exactly the definitions a group-version needs (and nothing else) out of
//! `schemars`. Group, version and kind are read from the type's `Resource` constants rather than
//! typed by hand, so they cannot drift from the type.

use std::borrow::Cow;

use k8s_openapi::{ListableResource, Resource};
use schemars::{JsonSchema, Schema, SchemaGenerator};

use k8s_openapi::api::{
    admissionregistration, apiserverinternal, apps, authentication, authorization, autoscaling,
    batch, certificates, coordination, core, discovery, events, flowcontrol, networking, node,
    policy, rbac, resource, scheduling, storage, storagemigration,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions;
use k8s_openapi::apimachinery::pkg::apis::meta;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration;

/// One built-in kind and the way to generate its schema.
pub(crate) struct Builtin {
    /// API group, empty for the core group.
    pub group: &'static str,
    /// API version within the group.
    pub version: &'static str,
    /// Kind, as written in an object's `kind` field.
    pub kind: &'static str,
    /// Kind of the matching list type, for kinds that can be listed.
    pub list_kind: Option<&'static str>,
    /// Upstream definition name (the `schemars` schema name of the type).
    pub name: fn() -> Cow<'static, str>,
    /// Adds the type's schema (and everything it references) to a generator.
    pub add: fn(&mut SchemaGenerator) -> Schema,
}

fn add_schema<T: JsonSchema>(gen: &mut SchemaGenerator) -> Schema {
    gen.subschema_for::<T>()
}

const fn listable<T: ListableResource + JsonSchema>() -> Builtin {
    Builtin {
        group: T::GROUP,
        version: T::VERSION,
        kind: T::KIND,
        list_kind: Some(T::LIST_KIND),
        name: T::schema_name,
        add: add_schema::<T>,
    }
}

const fn single<T: Resource + JsonSchema>() -> Builtin {
    Builtin {
        group: T::GROUP,
        version: T::VERSION,
        kind: T::KIND,
        list_kind: None,
        name: T::schema_name,
        add: add_schema::<T>,
    }
}

/// Every kind that upstream v1.33 serves and `k8s-openapi` models.
static BUILTINS: &[Builtin] = &[
    // core/v1
    single::<core::v1::Binding>(),
    listable::<core::v1::ComponentStatus>(),
    listable::<core::v1::ConfigMap>(),
    listable::<core::v1::Endpoints>(),
    listable::<core::v1::Event>(),
    listable::<core::v1::LimitRange>(),
    listable::<core::v1::Namespace>(),
    listable::<core::v1::Node>(),
    listable::<core::v1::PersistentVolume>(),
    listable::<core::v1::PersistentVolumeClaim>(),
    listable::<core::v1::Pod>(),
    listable::<core::v1::PodTemplate>(),
    listable::<core::v1::ReplicationController>(),
    listable::<core::v1::ResourceQuota>(),
    listable::<core::v1::Secret>(),
    listable::<core::v1::Service>(),
    listable::<core::v1::ServiceAccount>(),
    // meta/v1 kinds that travel on every group-version
    single::<meta::v1::Status>(),
    single::<meta::v1::APIGroup>(),
    single::<meta::v1::APIGroupList>(),
    single::<meta::v1::APIResourceList>(),
    single::<meta::v1::APIVersions>(),
    // admissionregistration.k8s.io
    listable::<admissionregistration::v1::MutatingWebhookConfiguration>(),
    listable::<admissionregistration::v1::ValidatingAdmissionPolicy>(),
    listable::<admissionregistration::v1::ValidatingAdmissionPolicyBinding>(),
    listable::<admissionregistration::v1::ValidatingWebhookConfiguration>(),
    listable::<admissionregistration::v1alpha1::MutatingAdmissionPolicy>(),
    listable::<admissionregistration::v1alpha1::MutatingAdmissionPolicyBinding>(),
    listable::<admissionregistration::v1beta1::ValidatingAdmissionPolicy>(),
    listable::<admissionregistration::v1beta1::ValidatingAdmissionPolicyBinding>(),
    // apiextensions.k8s.io, apiregistration.k8s.io, internal.apiserver.k8s.io
    listable::<apiextensions::v1::CustomResourceDefinition>(),
    listable::<apiregistration::v1::APIService>(),
    listable::<apiserverinternal::v1alpha1::StorageVersion>(),
    // apps
    listable::<apps::v1::ControllerRevision>(),
    listable::<apps::v1::DaemonSet>(),
    listable::<apps::v1::Deployment>(),
    listable::<apps::v1::ReplicaSet>(),
    listable::<apps::v1::StatefulSet>(),
    // authentication.k8s.io, authorization.k8s.io
    single::<authentication::v1::SelfSubjectReview>(),
    single::<authentication::v1::TokenRequest>(),
    single::<authentication::v1::TokenReview>(),
    single::<authorization::v1::LocalSubjectAccessReview>(),
    single::<authorization::v1::SelfSubjectAccessReview>(),
    single::<authorization::v1::SelfSubjectRulesReview>(),
    single::<authorization::v1::SubjectAccessReview>(),
    // autoscaling
    listable::<autoscaling::v1::HorizontalPodAutoscaler>(),
    single::<autoscaling::v1::Scale>(),
    listable::<autoscaling::v2::HorizontalPodAutoscaler>(),
    // batch
    listable::<batch::v1::CronJob>(),
    listable::<batch::v1::Job>(),
    // certificates.k8s.io
    listable::<certificates::v1::CertificateSigningRequest>(),
    listable::<certificates::v1alpha1::ClusterTrustBundle>(),
    listable::<certificates::v1beta1::ClusterTrustBundle>(),
    // coordination.k8s.io
    listable::<coordination::v1::Lease>(),
    listable::<coordination::v1alpha2::LeaseCandidate>(),
    listable::<coordination::v1beta1::LeaseCandidate>(),
    // discovery.k8s.io, events.k8s.io
    listable::<discovery::v1::EndpointSlice>(),
    listable::<events::v1::Event>(),
    // flowcontrol.apiserver.k8s.io
    listable::<flowcontrol::v1::FlowSchema>(),
    listable::<flowcontrol::v1::PriorityLevelConfiguration>(),
    // networking.k8s.io
    listable::<networking::v1::IPAddress>(),
    listable::<networking::v1::Ingress>(),
    listable::<networking::v1::IngressClass>(),
    listable::<networking::v1::NetworkPolicy>(),
    listable::<networking::v1::ServiceCIDR>(),
    listable::<networking::v1beta1::IPAddress>(),
    listable::<networking::v1beta1::ServiceCIDR>(),
    // node.k8s.io, policy, rbac.authorization.k8s.io
    listable::<node::v1::RuntimeClass>(),
    single::<policy::v1::Eviction>(),
    listable::<policy::v1::PodDisruptionBudget>(),
    listable::<rbac::v1::ClusterRole>(),
    listable::<rbac::v1::ClusterRoleBinding>(),
    listable::<rbac::v1::Role>(),
    listable::<rbac::v1::RoleBinding>(),
    // resource.k8s.io
    listable::<resource::v1alpha3::DeviceClass>(),
    listable::<resource::v1alpha3::DeviceTaintRule>(),
    listable::<resource::v1alpha3::ResourceClaim>(),
    listable::<resource::v1alpha3::ResourceClaimTemplate>(),
    listable::<resource::v1alpha3::ResourceSlice>(),
    listable::<resource::v1beta1::DeviceClass>(),
    listable::<resource::v1beta1::ResourceClaim>(),
    listable::<resource::v1beta1::ResourceClaimTemplate>(),
    listable::<resource::v1beta1::ResourceSlice>(),
    listable::<resource::v1beta2::DeviceClass>(),
    listable::<resource::v1beta2::ResourceClaim>(),
    listable::<resource::v1beta2::ResourceClaimTemplate>(),
    listable::<resource::v1beta2::ResourceSlice>(),
    // scheduling.k8s.io, storage.k8s.io, storagemigration.k8s.io
    listable::<scheduling::v1::PriorityClass>(),
    listable::<storage::v1::CSIDriver>(),
    listable::<storage::v1::CSINode>(),
    listable::<storage::v1::CSIStorageCapacity>(),
    listable::<storage::v1::StorageClass>(),
    listable::<storage::v1::VolumeAttachment>(),
    listable::<storage::v1alpha1::VolumeAttributesClass>(),
    listable::<storage::v1beta1::VolumeAttributesClass>(),
    listable::<storagemigration::v1alpha1::StorageVersionMigration>(),
];

/// Meta types every document carries, whatever resources it describes: operations refer to them.
pub(crate) fn add_common(gen: &mut SchemaGenerator) {
    gen.subschema_for::<meta::v1::Status>();
    gen.subschema_for::<meta::v1::DeleteOptions>();
    gen.subschema_for::<meta::v1::Patch>();
    gen.subschema_for::<meta::v1::WatchEvent<()>>();
}

/// Finds the built-in entry for a group/version/kind.
pub(crate) fn find(group: &str, version: &str, kind: &str) -> Option<&'static Builtin> {
    BUILTINS
        .iter()
        .find(|b| b.group == group && b.version == version && b.kind == kind)
}

/// Finds the built-in entry whose schema has the given upstream definition name.
pub(crate) fn find_by_name(name: &str) -> Option<&'static Builtin> {
    BUILTINS.iter().find(|b| (b.name)() == name)
}

/// All built-in entries.
pub(crate) fn all() -> &'static [Builtin] {
    BUILTINS
}

/// Upstream's definition name for a built-in kind (`apps`, `v1`, `Deployment` gives
/// `io.k8s.api.apps.v1.Deployment`), or `None` when the kind is not built in (custom resources).
///
/// List kinds (`DeploymentList`) resolve too, to the name upstream gives their list definition.
pub fn builtin_definition_name(group: &str, version: &str, kind: &str) -> Option<String> {
    if let Some(b) = find(group, version, kind) {
        return Some((b.name)().into_owned());
    }
    let item = kind.strip_suffix("List")?;
    let b = find(group, version, item)?;
    b.list_kind?;
    Some(format!("{}List", (b.name)()))
}

/// Every built-in kind with a schema, as (group, version, kind).
pub fn builtin_kinds() -> impl Iterator<Item = (&'static str, &'static str, &'static str)> {
    BUILTINS.iter().map(|b| (b.group, b.version, b.kind))
}
