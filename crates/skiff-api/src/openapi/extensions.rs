//! Patch and list extensions that `k8s-openapi`'s schemas do not carry.
//!
//! `k8s-openapi` generates its schemas without upstream's `x-kubernetes-patch-strategy`,
//! `x-kubernetes-patch-merge-key`, `x-kubernetes-list-type` and `x-kubernetes-list-map-keys`
//! annotations on properties. kubectl needs the patch ones to compute strategic merge patches from
//! OpenAPI (`kubectl apply`): without a merge key, a list such as `containers` is replaced whole
//! instead of merged by name. The facts below are the struct-field tags of the Kubernetes API
//! types (`patchStrategy`, `patchMergeKey`, `+listType`, `+listMapKey`), written out by hand for
//! every field that has a patch strategy upstream (pod templates, services, metadata, webhooks,
//! admission policies, condition lists of status types), with the list type of those fields.
//! Upstream declares list types on many more fields (mostly `atomic`); those matter only to
//! server-side apply, which does not read this document.

use serde_json::{json, Map, Value};

/// Extension facts for one property of one definition.
pub(crate) struct FieldExt {
    /// Upstream definition name.
    pub definition: &'static str,
    /// Property name within the definition.
    pub property: &'static str,
    /// `x-kubernetes-patch-strategy`, when the field has one.
    pub strategy: Option<&'static str>,
    /// `x-kubernetes-patch-merge-key`, when the field has one.
    pub merge_key: Option<&'static str>,
    /// `x-kubernetes-list-type`, when the field has one.
    pub list_type: Option<&'static str>,
    /// `x-kubernetes-list-map-keys`, for `map` lists.
    pub map_keys: &'static [&'static str],
}

/// A list merged by key: patch strategy `merge` with the key, and a `map` list keyed the same way.
const fn keyed(
    definition: &'static str,
    property: &'static str,
    key: &'static str,
    map_keys: &'static [&'static str],
) -> FieldExt {
    FieldExt {
        definition,
        property,
        strategy: Some("merge"),
        merge_key: Some(key),
        list_type: Some("map"),
        map_keys,
    }
}

/// A list merged by key for strategic merge patch only (no list type declared upstream).
const fn merge_only(
    definition: &'static str,
    property: &'static str,
    key: &'static str,
) -> FieldExt {
    FieldExt {
        definition,
        property,
        strategy: Some("merge"),
        merge_key: Some(key),
        list_type: None,
        map_keys: &[],
    }
}

/// A list merged by key with its list type declared `atomic` for server-side apply.
const fn merge_atomic(
    definition: &'static str,
    property: &'static str,
    key: &'static str,
) -> FieldExt {
    FieldExt {
        definition,
        property,
        strategy: Some("merge"),
        merge_key: Some(key),
        list_type: Some("atomic"),
        map_keys: &[],
    }
}

/// A field with a patch strategy but no merge key (sets of scalars, `retainKeys` structs).
const fn strategy_only(
    definition: &'static str,
    property: &'static str,
    strategy: &'static str,
    list_type: Option<&'static str>,
) -> FieldExt {
    FieldExt {
        definition,
        property,
        strategy: Some(strategy),
        merge_key: None,
        list_type,
        map_keys: &[],
    }
}

const NAME: &[&str] = &["name"];
const TYPE: &[&str] = &["type"];
const IP: &[&str] = &["ip"];

const VAP_V1: &str = "io.k8s.api.admissionregistration.v1.ValidatingAdmissionPolicySpec";
const VAP_V1BETA1: &str = "io.k8s.api.admissionregistration.v1beta1.ValidatingAdmissionPolicySpec";
const POD_SPEC: &str = "io.k8s.api.core.v1.PodSpec";
const CONTAINER: &str = "io.k8s.api.core.v1.Container";
const EPHEMERAL: &str = "io.k8s.api.core.v1.EphemeralContainer";

/// The hand-written table. Kept sorted by API group, then definition.
static FIELDS: &[FieldExt] = &[
    // metadata
    strategy_only(
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "finalizers",
        "merge",
        Some("set"),
    ),
    keyed(
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "ownerReferences",
        "uid",
        &["uid"],
    ),
    // pods
    keyed(POD_SPEC, "containers", "name", NAME),
    keyed(POD_SPEC, "initContainers", "name", NAME),
    keyed(POD_SPEC, "ephemeralContainers", "name", NAME),
    keyed(POD_SPEC, "imagePullSecrets", "name", NAME),
    keyed(POD_SPEC, "hostAliases", "ip", IP),
    keyed(POD_SPEC, "schedulingGates", "name", NAME),
    keyed(
        POD_SPEC,
        "topologySpreadConstraints",
        "topologyKey",
        &["topologyKey", "whenUnsatisfiable"],
    ),
    FieldExt {
        definition: POD_SPEC,
        property: "volumes",
        strategy: Some("merge,retainKeys"),
        merge_key: Some("name"),
        list_type: Some("map"),
        map_keys: NAME,
    },
    FieldExt {
        definition: POD_SPEC,
        property: "resourceClaims",
        strategy: Some("merge,retainKeys"),
        merge_key: Some("name"),
        list_type: Some("map"),
        map_keys: NAME,
    },
    keyed(
        CONTAINER,
        "ports",
        "containerPort",
        &["containerPort", "protocol"],
    ),
    keyed(CONTAINER, "env", "name", NAME),
    keyed(CONTAINER, "volumeMounts", "mountPath", &["mountPath"]),
    keyed(CONTAINER, "volumeDevices", "devicePath", &["devicePath"]),
    keyed(
        EPHEMERAL,
        "ports",
        "containerPort",
        &["containerPort", "protocol"],
    ),
    keyed(EPHEMERAL, "env", "name", NAME),
    keyed(EPHEMERAL, "volumeMounts", "mountPath", &["mountPath"]),
    keyed(EPHEMERAL, "volumeDevices", "devicePath", &["devicePath"]),
    merge_only(
        "io.k8s.api.core.v1.ContainerStatus",
        "volumeMounts",
        "mountPath",
    ),
    merge_only(
        "io.k8s.api.core.v1.ContainerStatus",
        "allocatedResourcesStatus",
        "name",
    ),
    keyed("io.k8s.api.core.v1.PodStatus", "conditions", "type", TYPE),
    keyed("io.k8s.api.core.v1.PodStatus", "podIPs", "ip", IP),
    merge_atomic("io.k8s.api.core.v1.PodStatus", "hostIPs", "ip"),
    FieldExt {
        definition: "io.k8s.api.core.v1.PodStatus",
        property: "resourceClaimStatuses",
        strategy: Some("merge,retainKeys"),
        merge_key: Some("name"),
        list_type: Some("map"),
        map_keys: NAME,
    },
    // other core kinds
    keyed(
        "io.k8s.api.core.v1.ServiceSpec",
        "ports",
        "port",
        &["port", "protocol"],
    ),
    keyed(
        "io.k8s.api.core.v1.ServiceStatus",
        "conditions",
        "type",
        TYPE,
    ),
    merge_only("io.k8s.api.core.v1.ServiceAccount", "secrets", "name"),
    strategy_only(
        "io.k8s.api.core.v1.NodeSpec",
        "podCIDRs",
        "merge",
        Some("set"),
    ),
    merge_only("io.k8s.api.core.v1.NodeStatus", "addresses", "type"),
    merge_only("io.k8s.api.core.v1.NodeStatus", "conditions", "type"),
    merge_only("io.k8s.api.core.v1.NamespaceStatus", "conditions", "type"),
    merge_only(
        "io.k8s.api.core.v1.PersistentVolumeClaimStatus",
        "conditions",
        "type",
    ),
    merge_only(
        "io.k8s.api.core.v1.ReplicationControllerStatus",
        "conditions",
        "type",
    ),
    merge_only("io.k8s.api.core.v1.ComponentStatus", "conditions", "type"),
    // apps
    strategy_only(
        "io.k8s.api.apps.v1.DeploymentSpec",
        "strategy",
        "retainKeys",
        None,
    ),
    merge_only("io.k8s.api.apps.v1.DeploymentStatus", "conditions", "type"),
    merge_only("io.k8s.api.apps.v1.ReplicaSetStatus", "conditions", "type"),
    merge_only("io.k8s.api.apps.v1.StatefulSetStatus", "conditions", "type"),
    merge_only("io.k8s.api.apps.v1.DaemonSetStatus", "conditions", "type"),
    // batch, autoscaling, policy
    merge_atomic("io.k8s.api.batch.v1.JobStatus", "conditions", "type"),
    strategy_only(
        "io.k8s.api.policy.v1.PodDisruptionBudgetSpec",
        "selector",
        "replace",
        None,
    ),
    keyed(
        "io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerStatus",
        "conditions",
        "type",
        TYPE,
    ),
    keyed(
        "io.k8s.api.policy.v1.PodDisruptionBudgetStatus",
        "conditions",
        "type",
        TYPE,
    ),
    // admission webhooks
    keyed(
        "io.k8s.api.admissionregistration.v1.MutatingWebhookConfiguration",
        "webhooks",
        "name",
        NAME,
    ),
    keyed(
        "io.k8s.api.admissionregistration.v1.ValidatingWebhookConfiguration",
        "webhooks",
        "name",
        NAME,
    ),
    merge_only(
        "io.k8s.api.admissionregistration.v1.MutatingWebhook",
        "matchConditions",
        "name",
    ),
    merge_only(
        "io.k8s.api.admissionregistration.v1.ValidatingWebhook",
        "matchConditions",
        "name",
    ),
    merge_only(VAP_V1, "matchConditions", "name"),
    merge_only(VAP_V1, "variables", "name"),
    merge_only(VAP_V1BETA1, "matchConditions", "name"),
    merge_only(VAP_V1BETA1, "variables", "name"),
    merge_only(
        "io.k8s.api.admissionregistration.v1alpha1.MutatingAdmissionPolicySpec",
        "matchConditions",
        "name",
    ),
    // CRDs themselves: validation rules merge by their rule text
    merge_only(
        "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps",
        "x-kubernetes-validations",
        "rule",
    ),
    // storage, resource claims
    merge_only("io.k8s.api.storage.v1.CSINodeSpec", "drivers", "name"),
    merge_only(
        "io.k8s.api.resource.v1alpha3.ResourceClaimStatus",
        "reservedFor",
        "uid",
    ),
    merge_only(
        "io.k8s.api.resource.v1beta1.ResourceClaimStatus",
        "reservedFor",
        "uid",
    ),
    merge_only(
        "io.k8s.api.resource.v1beta2.ResourceClaimStatus",
        "reservedFor",
        "uid",
    ),
    // condition lists of other status types
    merge_only(
        "io.k8s.api.flowcontrol.v1.FlowSchemaStatus",
        "conditions",
        "type",
    ),
    merge_only(
        "io.k8s.api.flowcontrol.v1.PriorityLevelConfigurationStatus",
        "conditions",
        "type",
    ),
    merge_only(
        "io.k8s.api.networking.v1.ServiceCIDRStatus",
        "conditions",
        "type",
    ),
    merge_only(
        "io.k8s.api.networking.v1beta1.ServiceCIDRStatus",
        "conditions",
        "type",
    ),
    merge_only(
        "io.k8s.api.storagemigration.v1alpha1.StorageVersionMigrationStatus",
        "conditions",
        "type",
    ),
    merge_only(
        "io.k8s.kube-aggregator.pkg.apis.apiregistration.v1.APIServiceStatus",
        "conditions",
        "type",
    ),
];

/// The facts for the properties of one definition.
pub(crate) fn for_definition(definition: &str) -> impl Iterator<Item = &'static FieldExt> + '_ {
    FIELDS.iter().filter(move |f| f.definition == definition)
}

/// Adds the table's extensions to the properties of one definition, leaving properties the
/// schema does not have alone (the table may name fields a given version lacks).
pub(crate) fn apply(definition: &str, schema: &mut Map<String, Value>) {
    let Some(Value::Object(props)) = schema.get_mut("properties") else {
        return;
    };
    for fact in for_definition(definition) {
        let Some(Value::Object(prop)) = props.get_mut(fact.property) else {
            continue;
        };
        if !fact.map_keys.is_empty() {
            prop.insert("x-kubernetes-list-map-keys".into(), json!(fact.map_keys));
        }
        if let Some(t) = fact.list_type {
            prop.insert("x-kubernetes-list-type".into(), json!(t));
        }
        if let Some(k) = fact.merge_key {
            prop.insert("x-kubernetes-patch-merge-key".into(), json!(k));
        }
        if let Some(s) = fact.strategy {
            prop.insert("x-kubernetes-patch-strategy".into(), json!(s));
        }
    }
}

/// Fields `k8s-openapi` lists as required because its Rust type is not optional, although the API
/// treats them as optional (the references default to the empty name).
static NOT_REQUIRED: &[(&str, &str)] = &[
    ("io.k8s.api.core.v1.ConfigMapKeySelector", "name"),
    ("io.k8s.api.core.v1.SecretKeySelector", "name"),
    ("io.k8s.api.core.v1.ConfigMapEnvSource", "name"),
    ("io.k8s.api.core.v1.SecretEnvSource", "name"),
    ("io.k8s.api.core.v1.LocalObjectReference", "name"),
    ("io.k8s.api.core.v1.ConfigMapVolumeSource", "name"),
    ("io.k8s.api.core.v1.ConfigMapProjection", "name"),
    ("io.k8s.api.core.v1.SecretProjection", "name"),
];

/// Corrects a definition's `required` list: `k8s-openapi` marks `metadata` of every top-level
/// kind required (its Rust field is not optional) and a few reference names, none of which the
/// API requires; `kubectl explain` would print them as required and v2 validation would reject
/// manifests without them.
pub(crate) fn fix_required(definition: &str, top_level: bool, schema: &mut Map<String, Value>) {
    let Some(Value::Array(required)) = schema.get_mut("required") else {
        return;
    };
    required.retain(|r| {
        let Some(field) = r.as_str() else { return true };
        let meta = top_level && field == "metadata";
        let listed = NOT_REQUIRED.contains(&(definition, field));
        !(meta || listed)
    });
    if required.is_empty() {
        schema.shift_remove("required");
    }
}
