//! The table of built-in resources the API server serves, as Kubernetes v1.33 does.
//!
//! Each entry says how a resource is addressed (group, version, plural), what it is (kind,
//! scope), how humans name it (short names, categories) and what may be done to it (verbs,
//! subresources). Custom resources are added at run time by the API server from CRDs using the
//! same [`ResourceInfo`] shape.

/// Whether objects live in a namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `/namespaces/{ns}/...`
    Namespaced,
    /// Cluster-wide.
    Cluster,
}

/// One servable resource at one group-version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceInfo {
    /// API group; empty for the core group.
    pub group: String,
    /// Version, e.g. `v1`.
    pub version: String,
    /// Kind, e.g. `Deployment`.
    pub kind: String,
    /// Lowercase plural used in URLs, e.g. `deployments`.
    pub plural: String,
    /// Lowercase singular, e.g. `deployment`.
    pub singular: String,
    /// Namespaced or cluster scoped.
    pub scope: Scope,
    /// Short names, e.g. `deploy`.
    pub short_names: Vec<String>,
    /// Categories, e.g. `all`.
    pub categories: Vec<String>,
    /// Verbs on the main resource.
    pub verbs: Vec<String>,
    /// Subresources, e.g. `status`, `scale`.
    pub subresources: Vec<String>,
    /// The version the object is stored in: all versions of one resource share storage.
    pub storage_version: String,
    /// True for custom resources served from a CRD.
    pub custom: bool,
}

impl ResourceInfo {
    /// `apps/v1` or `v1` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `deployments.apps` or `pods`.
    pub fn group_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// True when objects live in namespaces.
    pub fn namespaced(&self) -> bool {
        self.scope == Scope::Namespaced
    }

    /// True when the resource answers `verb`.
    pub fn has_verb(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == verb)
    }

    /// True when the resource has subresource `sub`.
    pub fn has_subresource(&self, sub: &str) -> bool {
        self.subresources.iter().any(|s| s == sub)
    }

    /// Store key prefix shared by every version of this resource: `/registry/apps/deployments/`.
    pub fn key_prefix(&self) -> String {
        // events.k8s.io Events are stored with core Events (one resource, two versions).
        let group = match (self.group.as_str(), self.plural.as_str()) {
            ("", _) | ("events.k8s.io", "events") => "core",
            (g, _) => g,
        };
        format!("/registry/{}/{}/", group, self.plural)
    }

    /// Store key of one object.
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        match (self.scope, namespace) {
            (Scope::Namespaced, Some(ns)) => format!("{}{}/{}", self.key_prefix(), ns, name),
            _ => format!("{}{}", self.key_prefix(), name),
        }
    }

    /// Store key prefix for listing (one namespace or all).
    pub fn list_prefix(&self, namespace: Option<&str>) -> String {
        match (self.scope, namespace) {
            (Scope::Namespaced, Some(ns)) => format!("{}{}/", self.key_prefix(), ns),
            _ => self.key_prefix(),
        }
    }
}

/// Verbs of an ordinary read-write resource.
pub const CRUD: &[&str] =
    &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];
/// Verbs of create-only review resources.
const CREATE_ONLY: &[&str] = &["create"];
/// Verbs of read-only resources.
const READ_ONLY: &[&str] = &["get", "list"];

struct Builtin {
    group: &'static str,
    versions: &'static [&'static str],
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    short: &'static [&'static str],
    categories: &'static [&'static str],
    verbs: &'static [&'static str],
    sub: &'static [&'static str],
}

const fn res(
    group: &'static str,
    versions: &'static [&'static str],
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
) -> Builtin {
    Builtin { group, versions, kind, plural, namespaced, short: &[], categories: &[], verbs: CRUD, sub: &[] }
}

impl Builtin {
    const fn short(mut self, s: &'static [&'static str]) -> Self {
        self.short = s;
        self
    }
    const fn cat(mut self, c: &'static [&'static str]) -> Self {
        self.categories = c;
        self
    }
    const fn verbs(mut self, v: &'static [&'static str]) -> Self {
        self.verbs = v;
        self
    }
    const fn sub(mut self, s: &'static [&'static str]) -> Self {
        self.sub = s;
        self
    }
}

const ALL: &[&str] = &["all"];
const API_EXT: &[&str] = &["api-extensions"];
const V1: &[&str] = &["v1"];

/// The built-in resources. The first version listed is the preferred (and storage) version.
const BUILTINS: &[Builtin] = &[
    // core
    res("", V1, "Binding", "bindings", true).verbs(CREATE_ONLY),
    res("", V1, "ComponentStatus", "componentstatuses", false).short(&["cs"]).verbs(READ_ONLY),
    res("", V1, "ConfigMap", "configmaps", true).short(&["cm"]),
    res("", V1, "Endpoints", "endpoints", true).short(&["ep"]),
    res("", V1, "Event", "events", true).short(&["ev"]),
    res("", V1, "LimitRange", "limitranges", true).short(&["limits"]),
    res("", V1, "Namespace", "namespaces", false)
        .short(&["ns"])
        .verbs(&["create", "delete", "get", "list", "patch", "update", "watch"])
        .sub(&["finalize", "status"]),
    res("", V1, "Node", "nodes", false).short(&["no"]).sub(&["proxy", "status"]),
    res("", V1, "PersistentVolumeClaim", "persistentvolumeclaims", true).short(&["pvc"]).sub(&["status"]),
    res("", V1, "PersistentVolume", "persistentvolumes", false).short(&["pv"]).sub(&["status"]),
    res("", V1, "Pod", "pods", true).short(&["po"]).cat(ALL).sub(&[
        "attach",
        "binding",
        "ephemeralcontainers",
        "eviction",
        "exec",
        "log",
        "portforward",
        "proxy",
        "resize",
        "status",
    ]),
    res("", V1, "PodTemplate", "podtemplates", true),
    res("", V1, "ReplicationController", "replicationcontrollers", true)
        .short(&["rc"])
        .cat(ALL)
        .sub(&["scale", "status"]),
    res("", V1, "ResourceQuota", "resourcequotas", true).short(&["quota"]).sub(&["status"]),
    res("", V1, "Secret", "secrets", true),
    res("", V1, "ServiceAccount", "serviceaccounts", true).short(&["sa"]).sub(&["token"]),
    res("", V1, "Service", "services", true)
        .short(&["svc"])
        .cat(ALL)
        .verbs(&["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"])
        .sub(&["proxy", "status"]),
    // admissionregistration.k8s.io
    res("admissionregistration.k8s.io", V1, "MutatingWebhookConfiguration", "mutatingwebhookconfigurations", false)
        .cat(API_EXT),
    res("admissionregistration.k8s.io", V1, "ValidatingAdmissionPolicy", "validatingadmissionpolicies", false)
        .cat(API_EXT)
        .sub(&["status"]),
    res(
        "admissionregistration.k8s.io",
        V1,
        "ValidatingAdmissionPolicyBinding",
        "validatingadmissionpolicybindings",
        false,
    )
    .cat(API_EXT),
    res("admissionregistration.k8s.io", V1, "ValidatingWebhookConfiguration", "validatingwebhookconfigurations", false)
        .cat(API_EXT),
    // apiextensions.k8s.io
    res("apiextensions.k8s.io", V1, "CustomResourceDefinition", "customresourcedefinitions", false)
        .short(&["crd", "crds"])
        .cat(API_EXT)
        .sub(&["status"]),
    // apps
    res("apps", V1, "ControllerRevision", "controllerrevisions", true),
    res("apps", V1, "DaemonSet", "daemonsets", true).short(&["ds"]).cat(ALL).sub(&["status"]),
    res("apps", V1, "Deployment", "deployments", true).short(&["deploy"]).cat(ALL).sub(&["scale", "status"]),
    res("apps", V1, "ReplicaSet", "replicasets", true).short(&["rs"]).cat(ALL).sub(&["scale", "status"]),
    res("apps", V1, "StatefulSet", "statefulsets", true).short(&["sts"]).cat(ALL).sub(&["scale", "status"]),
    // authentication / authorization reviews
    res("authentication.k8s.io", V1, "SelfSubjectReview", "selfsubjectreviews", false).verbs(CREATE_ONLY),
    res("authentication.k8s.io", V1, "TokenReview", "tokenreviews", false).verbs(CREATE_ONLY),
    res("authorization.k8s.io", V1, "LocalSubjectAccessReview", "localsubjectaccessreviews", true)
        .verbs(CREATE_ONLY),
    res("authorization.k8s.io", V1, "SelfSubjectAccessReview", "selfsubjectaccessreviews", false)
        .verbs(CREATE_ONLY),
    res("authorization.k8s.io", V1, "SelfSubjectRulesReview", "selfsubjectrulesreviews", false)
        .verbs(CREATE_ONLY),
    res("authorization.k8s.io", V1, "SubjectAccessReview", "subjectaccessreviews", false).verbs(CREATE_ONLY),
    // autoscaling
    res("autoscaling", &["v2", "v1"], "HorizontalPodAutoscaler", "horizontalpodautoscalers", true)
        .short(&["hpa"])
        .cat(ALL)
        .sub(&["status"]),
    // batch
    res("batch", V1, "CronJob", "cronjobs", true).short(&["cj"]).cat(ALL).sub(&["status"]),
    res("batch", V1, "Job", "jobs", true).cat(ALL).sub(&["status"]),
    // certificates
    res("certificates.k8s.io", V1, "CertificateSigningRequest", "certificatesigningrequests", false)
        .short(&["csr"])
        .sub(&["approval", "status"]),
    // coordination
    res("coordination.k8s.io", V1, "Lease", "leases", true),
    // discovery
    res("discovery.k8s.io", V1, "EndpointSlice", "endpointslices", true),
    // events
    res("events.k8s.io", V1, "Event", "events", true).short(&["ev"]),
    // flowcontrol (served so tools that list it find it)
    res("flowcontrol.apiserver.k8s.io", V1, "FlowSchema", "flowschemas", false).sub(&["status"]),
    res("flowcontrol.apiserver.k8s.io", V1, "PriorityLevelConfiguration", "prioritylevelconfigurations", false)
        .sub(&["status"]),
    // networking
    res("networking.k8s.io", V1, "IngressClass", "ingressclasses", false),
    res("networking.k8s.io", V1, "Ingress", "ingresses", true).short(&["ing"]).sub(&["status"]),
    res("networking.k8s.io", V1, "IPAddress", "ipaddresses", false).short(&["ip"]),
    res("networking.k8s.io", V1, "NetworkPolicy", "networkpolicies", true).short(&["netpol"]),
    res("networking.k8s.io", V1, "ServiceCIDR", "servicecidrs", false).sub(&["status"]),
    // node
    res("node.k8s.io", V1, "RuntimeClass", "runtimeclasses", false),
    // policy
    res("policy", V1, "PodDisruptionBudget", "poddisruptionbudgets", true).short(&["pdb"]).sub(&["status"]),
    // rbac
    res("rbac.authorization.k8s.io", V1, "ClusterRoleBinding", "clusterrolebindings", false),
    res("rbac.authorization.k8s.io", V1, "ClusterRole", "clusterroles", false),
    res("rbac.authorization.k8s.io", V1, "RoleBinding", "rolebindings", true),
    res("rbac.authorization.k8s.io", V1, "Role", "roles", true),
    // scheduling
    res("scheduling.k8s.io", V1, "PriorityClass", "priorityclasses", false).short(&["pc"]),
    // storage
    res("storage.k8s.io", V1, "CSIDriver", "csidrivers", false),
    res("storage.k8s.io", V1, "CSINode", "csinodes", false),
    res("storage.k8s.io", V1, "CSIStorageCapacity", "csistoragecapacities", true),
    res("storage.k8s.io", V1, "StorageClass", "storageclasses", false).short(&["sc"]),
    res("storage.k8s.io", V1, "VolumeAttachment", "volumeattachments", false).sub(&["status"]),
];

/// Every built-in resource at every served version, preferred version first within a group.
pub fn builtin_resources() -> Vec<ResourceInfo> {
    let mut out = Vec::new();
    for b in BUILTINS {
        for v in b.versions {
            out.push(ResourceInfo {
                group: b.group.to_string(),
                version: v.to_string(),
                kind: b.kind.to_string(),
                plural: b.plural.to_string(),
                singular: b.kind.to_lowercase(),
                scope: if b.namespaced { Scope::Namespaced } else { Scope::Cluster },
                short_names: b.short.iter().map(|s| s.to_string()).collect(),
                categories: b.categories.iter().map(|s| s.to_string()).collect(),
                verbs: b.verbs.iter().map(|s| s.to_string()).collect(),
                subresources: b.sub.iter().map(|s| s.to_string()).collect(),
                storage_version: b.versions[0].to_string(),
                custom: false,
            });
        }
    }
    out
}

/// Order in which upstream lists groups in discovery (core first, then these).
pub const GROUP_ORDER: &[&str] = &[
    "",
    "apiregistration.k8s.io",
    "apps",
    "events.k8s.io",
    "authentication.k8s.io",
    "authorization.k8s.io",
    "autoscaling",
    "batch",
    "certificates.k8s.io",
    "networking.k8s.io",
    "policy",
    "rbac.authorization.k8s.io",
    "storage.k8s.io",
    "admissionregistration.k8s.io",
    "apiextensions.k8s.io",
    "scheduling.k8s.io",
    "coordination.k8s.io",
    "node.k8s.io",
    "discovery.k8s.io",
    "flowcontrol.apiserver.k8s.io",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_have_unique_plurals_per_group_version() {
        let all = builtin_resources();
        let mut seen = std::collections::HashSet::new();
        for r in &all {
            assert!(seen.insert((r.group.clone(), r.version.clone(), r.plural.clone())), "{r:?}");
        }
        assert!(all.len() > 50);
    }

    #[test]
    fn keys_separate_namespaces() {
        let pods = builtin_resources().into_iter().find(|r| r.plural == "pods").unwrap();
        assert_eq!(pods.key(Some("default"), "web"), "/registry/core/pods/default/web");
        assert_eq!(pods.list_prefix(Some("default")), "/registry/core/pods/default/");
        assert_eq!(pods.list_prefix(None), "/registry/core/pods/");
        let hpa: Vec<_> = builtin_resources().into_iter().filter(|r| r.plural == "horizontalpodautoscalers").collect();
        assert_eq!(hpa.len(), 2);
        assert!(hpa.iter().all(|h| h.storage_version == "v2"));
    }
}
