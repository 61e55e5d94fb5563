//! The hand-written patch facts for built-in kinds (Kubernetes v1.33).
//!
//! Written from the API reference (the `patchStrategy`/`patchMergeKey` and
//! `listType`/`listMapKey` markers documented on each field), not generated. Only fields with
//! a non-default behaviour, and the struct fields leading to them, are listed: everything else
//! falls back to deduced behaviour (maps merge, lists are replaced), which is also upstream's
//! default for untagged fields.

use super::patch_meta::{FieldDef as F, ListType, PatchStrategy, TypeDef};

const NAME: &[&str] = &["name"];
const TYPE: &[&str] = &["type"];
const IP: &[&str] = &["ip"];

pub(crate) static OBJECT_META: TypeDef = TypeDef {
    fields: &[
        F::set("finalizers"),
        F::keyed("ownerReferences", &["uid"], None),
    ],
};

/// Conditions lists that merge by `type` (most `status.conditions`).
static CONDITIONS_STATUS: TypeDef = TypeDef {
    fields: &[F::keyed("conditions", TYPE, None)],
};

static RESOURCE_REQUIREMENTS: TypeDef = TypeDef {
    fields: &[F::apply_keyed("claims", NAME, None)],
};

/// `Container` and `EphemeralContainer` share the fields that matter here.
static CONTAINER: TypeDef = TypeDef {
    fields: &[
        F::keyed("ports", &["containerPort", "protocol"], None),
        F::keyed("env", NAME, None),
        F::keyed("volumeMounts", &["mountPath"], None),
        F::keyed("volumeDevices", &["devicePath"], None),
        F::obj("resources", &RESOURCE_REQUIREMENTS),
    ],
};

static POD_SPEC: TypeDef = TypeDef {
    fields: &[
        F::keyed("volumes", NAME, None).with_strategy(PatchStrategy::MergeRetainKeys),
        F::keyed("initContainers", NAME, Some(&CONTAINER)),
        F::keyed("containers", NAME, Some(&CONTAINER)),
        F::keyed("ephemeralContainers", NAME, Some(&CONTAINER)),
        F::keyed("imagePullSecrets", NAME, None),
        F::keyed("hostAliases", IP, None),
        F::keyed(
            "topologySpreadConstraints",
            &["topologyKey", "whenUnsatisfiable"],
            None,
        ),
        F::keyed("schedulingGates", NAME, None),
        F::keyed("resourceClaims", NAME, None).with_strategy(PatchStrategy::MergeRetainKeys),
        F::atomic("nodeSelector"),
        F::obj("resources", &RESOURCE_REQUIREMENTS),
    ],
};

static POD_STATUS: TypeDef = TypeDef {
    fields: &[
        F::keyed("conditions", TYPE, None),
        F::keyed("podIPs", IP, None),
        F::keyed("hostIPs", IP, None),
        F::keyed("resourceClaimStatuses", NAME, None).with_strategy(PatchStrategy::MergeRetainKeys),
    ],
};

static POD_TEMPLATE_SPEC: TypeDef = TypeDef {
    fields: &[F::obj("metadata", &OBJECT_META), F::obj("spec", &POD_SPEC)],
};

/// Any object with standard metadata and nothing else of note.
static PLAIN: TypeDef = TypeDef {
    fields: &[F::obj("metadata", &OBJECT_META)],
};

static POD: TypeDef = TypeDef {
    fields: &[
        F::obj("metadata", &OBJECT_META),
        F::obj("spec", &POD_SPEC),
        F::obj("status", &POD_STATUS),
    ],
};

static POD_TEMPLATE: TypeDef = TypeDef {
    fields: &[
        F::obj("metadata", &OBJECT_META),
        F::obj("template", &POD_TEMPLATE_SPEC),
    ],
};

/// Spec of workloads with a pod template and an atomic label selector.
static WORKLOAD_SPEC: TypeDef = TypeDef {
    fields: &[
        F::obj("template", &POD_TEMPLATE_SPEC),
        F::atomic("selector"),
    ],
};

static WORKLOAD: TypeDef = TypeDef {
    fields: &[
        F::obj("metadata", &OBJECT_META),
        F::obj("spec", &WORKLOAD_SPEC),
        F::obj("status", &CONDITIONS_STATUS),
    ],
};

static DEPLOYMENT_SPEC: TypeDef = TypeDef {
    fields: &[
        F::obj("template", &POD_TEMPLATE_SPEC),
        F::atomic("selector"),
        F {
            name: "strategy",
            strategy: PatchStrategy::RetainKeys,
            merge_key: None,
            list_type: None,
            atomic: false,
            ty: None,
        },
    ],
};

static DEPLOYMENT: TypeDef = TypeDef {
    fields: &[
        F::obj("metadata", &OBJECT_META),
        F::obj("spec", &DEPLOYMENT_SPEC),
        F::obj("status", &CONDITIONS_STATUS),
    ],
};

static RC_SPEC: TypeDef = TypeDef {
    fields: &[
        F::obj("template", &POD_TEMPLATE_SPEC),
        F::atomic("selector"),
    ],
};

static REPLICATION_CONTROLLER: TypeDef = TypeDef {
    fields: &[
        F::obj("metadata", &OBJECT_META),
        F::obj("spec", &RC_SPEC),
        F::obj("status", &CONDITIONS_STATUS),
    ],
};

/// Job conditions merge by type in strategic merge patch but are `listType=atomic` for apply.
static JOB_STATUS: TypeDef = TypeDef {
    fields: &[F {
        name: "conditions",
        strategy: PatchStrategy::Merge,
        merge_key: Some("type"),
        list_type: Some(ListType::Atomic),
        atomic: false,
        ty: None,
    }],
};

static JOB: TypeDef = TypeDef {
    fields: &[
        F::obj("metadata", &OBJECT_META),
        F::obj("spec", &WORKLOAD_SPEC),
        F::obj("status", &JOB_STATUS),
    ],
};

static JOB_TEMPLATE: TypeDef = TypeDef {
    fields: &[
        F::obj("metadata", &OBJECT_META),
        F::obj("spec", &WORKLOAD_SPEC),
    ],
};

static CRON_JOB_SPEC: TypeDef = TypeDef {
    fields: &[F::obj("jobTemplate", &JOB_TEMPLATE)],
};

static CRON_JOB: TypeDef = TypeDef {
    fields: &[
        F::obj("metadata", &OBJECT_META),
        F::obj("spec", &CRON_JOB_SPEC),
    ],
};

static SERVICE_SPEC: TypeDef = TypeDef {
    fields: &[
        F::keyed("ports", &["port", "protocol"], None),
        F::atomic("selector"),
    ],
};

static SERVICE: TypeDef = TypeDef {
    fields: &[
        F::obj("metadata", &OBJECT_META),
        F::obj("spec", &SERVICE_SPEC),
        F::obj("status", &CONDITIONS_STATUS),
    ],
};

static NODE_SPEC: TypeDef = TypeDef {
    fields: &[F::set("podCIDRs")],
};

static NODE_STATUS: TypeDef = TypeDef {
    fields: &[
        F::keyed("conditions", TYPE, None),
        F::keyed("addresses", TYPE, None),
    ],
};

static NODE: TypeDef = TypeDef {
    fields: &[
        F::obj("metadata", &OBJECT_META),
        F::obj("spec", &NODE_SPEC),
        F::obj("status", &NODE_STATUS),
    ],
};

/// Kinds whose only notable list is `status.conditions` keyed by type.
static WITH_CONDITIONS: TypeDef = TypeDef {
    fields: &[
        F::obj("metadata", &OBJECT_META),
        F::obj("status", &CONDITIONS_STATUS),
    ],
};

static PDB_SPEC: TypeDef = TypeDef {
    fields: &[F {
        name: "selector",
        strategy: PatchStrategy::Replace,
        merge_key: None,
        list_type: None,
        atomic: true,
        ty: None,
    }],
};

static PDB: TypeDef = TypeDef {
    fields: &[
        F::obj("metadata", &OBJECT_META),
        F::obj("spec", &PDB_SPEC),
        F::obj("status", &CONDITIONS_STATUS),
    ],
};

static SERVICE_ACCOUNT: TypeDef = TypeDef {
    fields: &[
        F::obj("metadata", &OBJECT_META),
        F::keyed("secrets", NAME, None),
    ],
};

static COMPONENT_STATUS: TypeDef = TypeDef {
    fields: &[
        F::obj("metadata", &OBJECT_META),
        F::keyed("conditions", TYPE, None),
    ],
};

static WEBHOOK: TypeDef = TypeDef {
    fields: &[F::apply_keyed("matchConditions", NAME, None)],
};

static WEBHOOK_CONFIGURATION: TypeDef = TypeDef {
    fields: &[
        F::obj("metadata", &OBJECT_META),
        F::keyed("webhooks", NAME, Some(&WEBHOOK)),
    ],
};

static CSI_NODE_SPEC: TypeDef = TypeDef {
    fields: &[F::keyed("drivers", NAME, None)],
};

static CSI_NODE: TypeDef = TypeDef {
    fields: &[
        F::obj("metadata", &OBJECT_META),
        F::obj("spec", &CSI_NODE_SPEC),
    ],
};

/// Status conditions that apply keys by type but strategic merge patch replaces.
static APPLY_CONDITIONS_STATUS: TypeDef = TypeDef {
    fields: &[F::apply_keyed("conditions", TYPE, None)],
};

static WITH_APPLY_CONDITIONS: TypeDef = TypeDef {
    fields: &[
        F::obj("metadata", &OBJECT_META),
        F::obj("status", &APPLY_CONDITIONS_STATUS),
    ],
};

/// A custom resource whose schema says nothing useful: only standard metadata is known.
pub(crate) static CUSTOM_RESOURCE: TypeDef = TypeDef {
    fields: &[F::obj("metadata", &OBJECT_META)],
};

/// Every built-in kind the API server serves, by apiVersion and kind.
static KINDS: &[(&str, &str, &TypeDef)] = &[
    ("v1", "Binding", &PLAIN),
    ("v1", "ComponentStatus", &COMPONENT_STATUS),
    ("v1", "ConfigMap", &PLAIN),
    ("v1", "Endpoints", &PLAIN),
    ("v1", "Event", &PLAIN),
    ("v1", "LimitRange", &PLAIN),
    ("v1", "Namespace", &WITH_CONDITIONS),
    ("v1", "Node", &NODE),
    ("v1", "PersistentVolume", &PLAIN),
    ("v1", "PersistentVolumeClaim", &WITH_CONDITIONS),
    ("v1", "Pod", &POD),
    ("v1", "PodTemplate", &POD_TEMPLATE),
    ("v1", "ReplicationController", &REPLICATION_CONTROLLER),
    ("v1", "ResourceQuota", &PLAIN),
    ("v1", "Secret", &PLAIN),
    ("v1", "Service", &SERVICE),
    ("v1", "ServiceAccount", &SERVICE_ACCOUNT),
    (
        "admissionregistration.k8s.io/v1",
        "MutatingWebhookConfiguration",
        &WEBHOOK_CONFIGURATION,
    ),
    (
        "admissionregistration.k8s.io/v1",
        "ValidatingWebhookConfiguration",
        &WEBHOOK_CONFIGURATION,
    ),
    (
        "admissionregistration.k8s.io/v1",
        "ValidatingAdmissionPolicy",
        &WITH_APPLY_CONDITIONS,
    ),
    (
        "admissionregistration.k8s.io/v1",
        "ValidatingAdmissionPolicyBinding",
        &PLAIN,
    ),
    (
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        &WITH_APPLY_CONDITIONS,
    ),
    ("apiregistration.k8s.io/v1", "APIService", &WITH_CONDITIONS),
    ("apps/v1", "ControllerRevision", &PLAIN),
    ("apps/v1", "DaemonSet", &WORKLOAD),
    ("apps/v1", "Deployment", &DEPLOYMENT),
    ("apps/v1", "ReplicaSet", &WORKLOAD),
    ("apps/v1", "StatefulSet", &WORKLOAD),
    ("authentication.k8s.io/v1", "TokenReview", &PLAIN),
    ("authentication.k8s.io/v1", "SelfSubjectReview", &PLAIN),
    (
        "authorization.k8s.io/v1",
        "LocalSubjectAccessReview",
        &PLAIN,
    ),
    ("authorization.k8s.io/v1", "SelfSubjectAccessReview", &PLAIN),
    ("authorization.k8s.io/v1", "SelfSubjectRulesReview", &PLAIN),
    ("authorization.k8s.io/v1", "SubjectAccessReview", &PLAIN),
    ("autoscaling/v1", "HorizontalPodAutoscaler", &PLAIN),
    ("autoscaling/v1", "Scale", &PLAIN),
    (
        "autoscaling/v2",
        "HorizontalPodAutoscaler",
        &WITH_CONDITIONS,
    ),
    ("batch/v1", "CronJob", &CRON_JOB),
    ("batch/v1", "Job", &JOB),
    (
        "certificates.k8s.io/v1",
        "CertificateSigningRequest",
        &WITH_APPLY_CONDITIONS,
    ),
    ("coordination.k8s.io/v1", "Lease", &PLAIN),
    ("discovery.k8s.io/v1", "EndpointSlice", &PLAIN),
    ("events.k8s.io/v1", "Event", &PLAIN),
    (
        "flowcontrol.apiserver.k8s.io/v1",
        "FlowSchema",
        &WITH_CONDITIONS,
    ),
    (
        "flowcontrol.apiserver.k8s.io/v1",
        "PriorityLevelConfiguration",
        &WITH_CONDITIONS,
    ),
    ("networking.k8s.io/v1", "IngressClass", &PLAIN),
    ("networking.k8s.io/v1", "Ingress", &PLAIN),
    ("networking.k8s.io/v1", "IPAddress", &PLAIN),
    ("networking.k8s.io/v1", "NetworkPolicy", &PLAIN),
    (
        "networking.k8s.io/v1",
        "ServiceCIDR",
        &WITH_APPLY_CONDITIONS,
    ),
    ("node.k8s.io/v1", "RuntimeClass", &PLAIN),
    ("policy/v1", "Eviction", &PLAIN),
    ("policy/v1", "PodDisruptionBudget", &PDB),
    ("rbac.authorization.k8s.io/v1", "ClusterRole", &PLAIN),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", &PLAIN),
    ("rbac.authorization.k8s.io/v1", "Role", &PLAIN),
    ("rbac.authorization.k8s.io/v1", "RoleBinding", &PLAIN),
    ("scheduling.k8s.io/v1", "PriorityClass", &PLAIN),
    ("storage.k8s.io/v1", "CSIDriver", &PLAIN),
    ("storage.k8s.io/v1", "CSINode", &CSI_NODE),
    ("storage.k8s.io/v1", "CSIStorageCapacity", &PLAIN),
    ("storage.k8s.io/v1", "StorageClass", &PLAIN),
    ("storage.k8s.io/v1", "VolumeAttachment", &PLAIN),
];

/// The type graph root for a built-in kind.
pub(crate) fn kind_type(api_version: &str, kind: &str) -> Option<&'static TypeDef> {
    KINDS
        .iter()
        .find(|(v, k, _)| *v == api_version && *k == kind)
        .map(|(_, _, t)| *t)
}
