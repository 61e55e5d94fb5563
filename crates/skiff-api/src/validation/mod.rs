//! Object validation with upstream's rules and wording, on `serde_json::Value` objects.
//!
//! [`validate`] checks an object on create and [`validate_update`] an update against the old
//! object; both return a list of [`FieldError`]s, which the API server turns into a 422
//! `Invalid` status with one cause per error ([`invalid_message`], [`FieldError::to_cause`]).
//!
//! Objects are expected to have been defaulted first (as upstream validates after
//! defaulting), but fields upstream always defaults (`protocol`, `restartPolicy`, ...) are
//! tolerated when absent. Server-populated metadata (`uid`, `creationTimestamp`, generated
//! `name`, a Job's generated selector, a Service's allocated `clusterIP`) should be filled in
//! before validating, as upstream's strategies do.

use std::fmt;

use serde_json::{Map, Value};

use crate::selector::go_quote;

mod cron;
mod kinds;
mod meta;
pub mod names;
mod pod;
mod seccomp;
mod service;
mod update;
mod workloads;

#[cfg(test)]
mod kubectl_tests;

pub use kinds::MAX_SECRET_SIZE;
pub use meta::{
    validate_label_selector, validate_labels, validate_object_meta, validate_object_meta_update,
    TOTAL_ANNOTATION_SIZE_LIMIT,
};
pub use names::NameValidator;
pub use pod::{validate_pod_spec, validate_pod_template};
pub use service::NODE_PORT_RANGE;

/// Upstream's field error types (`field.ErrorType`), which are also the `reason` of the
/// status causes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// `FieldValueInvalid`.
    Invalid,
    /// `FieldValueRequired`.
    Required,
    /// `FieldValueNotSupported`: not one of an enum's values.
    NotSupported,
    /// `FieldValueDuplicate`.
    Duplicate,
    /// `FieldValueTooLong`.
    TooLong,
    /// `FieldValueTooMany`.
    TooMany,
    /// `FieldValueForbidden`.
    Forbidden,
    /// `FieldValueNotFound`: a reference to something that does not exist (e.g. a volume).
    NotFound,
}

impl Reason {
    /// The machine-readable reason, as in `StatusCause.reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Invalid => "FieldValueInvalid",
            Reason::Required => "FieldValueRequired",
            Reason::NotSupported => "FieldValueNotSupported",
            Reason::Duplicate => "FieldValueDuplicate",
            Reason::TooLong => "FieldValueTooLong",
            Reason::TooMany => "FieldValueTooMany",
            Reason::Forbidden => "FieldValueForbidden",
            Reason::NotFound => "FieldValueNotFound",
        }
    }

    /// The human-readable type that starts an error body (`Invalid value`).
    fn title(self) -> &'static str {
        match self {
            Reason::Invalid => "Invalid value",
            Reason::Required => "Required value",
            Reason::NotSupported => "Unsupported value",
            Reason::Duplicate => "Duplicate value",
            Reason::TooLong => "Too long",
            Reason::TooMany => "Too many",
            Reason::Forbidden => "Forbidden",
            Reason::NotFound => "Not found",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One validation failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Path of the offending field, e.g. `spec.containers[0].name`; empty for the object.
    pub field: String,
    /// The error type.
    pub reason: Reason,
    /// Upstream's detail message (may be empty, e.g. for a bare `Required value`).
    pub message: String,
    /// The bad value as upstream prints it (strings quoted, numbers bare), when the error
    /// type shows a value.
    pub value: Option<String>,
}

impl FieldError {
    /// `field.Invalid`.
    pub fn invalid(
        field: impl Into<String>,
        value: impl BadValue,
        message: impl Into<String>,
    ) -> FieldError {
        FieldError {
            field: field.into(),
            reason: Reason::Invalid,
            message: message.into(),
            value: Some(value.render()),
        }
    }

    /// `field.Required`.
    pub fn required(field: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            reason: Reason::Required,
            message: message.into(),
            value: None,
        }
    }

    /// `field.NotSupported` with the list of supported values.
    pub fn not_supported(
        field: impl Into<String>,
        value: impl BadValue,
        supported: &[&str],
    ) -> FieldError {
        let message = if supported.is_empty() {
            String::new()
        } else {
            let quoted: Vec<String> = supported.iter().map(|s| go_quote(s)).collect();
            format!("supported values: {}", quoted.join(", "))
        };
        FieldError {
            field: field.into(),
            reason: Reason::NotSupported,
            message,
            value: Some(value.render()),
        }
    }

    /// `field.Duplicate`.
    pub fn duplicate(field: impl Into<String>, value: impl BadValue) -> FieldError {
        FieldError {
            field: field.into(),
            reason: Reason::Duplicate,
            message: String::new(),
            value: Some(value.render()),
        }
    }

    /// `field.TooLong` with a byte limit.
    pub fn too_long(field: impl Into<String>, max_bytes: usize) -> FieldError {
        FieldError {
            field: field.into(),
            reason: Reason::TooLong,
            message: format!("must have at most {max_bytes} bytes"),
            value: None,
        }
    }

    /// `field.TooMany`.
    pub fn too_many(field: impl Into<String>, actual: usize, max: usize) -> FieldError {
        FieldError {
            field: field.into(),
            reason: Reason::TooMany,
            message: format!("must have at most {max} items"),
            value: Some(actual.to_string()),
        }
    }

    /// `field.Forbidden`.
    pub fn forbidden(field: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            reason: Reason::Forbidden,
            message: message.into(),
            value: None,
        }
    }

    /// `field.NotFound`.
    pub fn not_found(field: impl Into<String>, value: impl BadValue) -> FieldError {
        FieldError {
            field: field.into(),
            reason: Reason::NotFound,
            message: String::new(),
            value: Some(value.render()),
        }
    }

    /// Upstream's `ErrorBody()`: the message without the field, used as the cause message.
    pub fn body(&self) -> String {
        let mut s = self.reason.title().to_string();
        let shows_value = !matches!(
            self.reason,
            Reason::Required | Reason::Forbidden | Reason::TooLong
        );
        if let (true, Some(v)) = (shows_value, &self.value) {
            s.push_str(": ");
            s.push_str(v);
        }
        if !self.message.is_empty() {
            s.push_str(": ");
            s.push_str(&self.message);
        }
        s
    }

    /// The `StatusCause` object for this error.
    pub fn to_cause(&self) -> Value {
        serde_json::json!({"reason": self.reason.as_str(), "message": self.body(), "field": self.field})
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.body())
    }
}

/// The `message` of a 422 Invalid status, e.g. `Deployment.apps "web" is invalid:
/// spec.replicas: Invalid value: -1: must be greater than or equal to 0`; several errors
/// are bracketed and comma-separated, duplicates dropped.
pub fn invalid_message(group: &str, kind: &str, name: &str, errs: &[FieldError]) -> String {
    let gk = if group.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}.{group}")
    };
    let msgs: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    if msgs.is_empty() {
        return format!("{gk} {} is invalid", go_quote(name));
    }
    format!(
        "{gk} {} is invalid: {}",
        go_quote(name),
        crate::selector::aggregate(&msgs)
    )
}

/// Values that can appear in an error, rendered the way upstream's `%v`/`%q`/`%#v` print
/// them.
pub trait BadValue {
    /// The rendering used in error bodies.
    fn render(&self) -> String;
}

impl BadValue for &str {
    fn render(&self) -> String {
        go_quote(self)
    }
}

impl BadValue for String {
    fn render(&self) -> String {
        go_quote(self)
    }
}

impl BadValue for &String {
    fn render(&self) -> String {
        go_quote(self)
    }
}

impl BadValue for i64 {
    fn render(&self) -> String {
        self.to_string()
    }
}

impl BadValue for &Value {
    fn render(&self) -> String {
        render_value(self)
    }
}

impl BadValue for Value {
    fn render(&self) -> String {
        render_value(self)
    }
}

/// A value already rendered the way upstream prints it (used for typed structs whose Go
/// `%#v` form users see, such as label selectors).
pub(crate) struct Rendered(pub String);

impl BadValue for Rendered {
    fn render(&self) -> String {
        self.0.clone()
    }
}

/// Go's `%#v` of a `map[string]string` taken from a JSON object (`nil` when absent).
fn go_string_map(v: Option<&Value>) -> String {
    match v.and_then(Value::as_object) {
        None => "map[string]string(nil)".into(),
        Some(m) => {
            let mut pairs: Vec<(&String, &str)> = m
                .iter()
                .map(|(k, v)| (k, v.as_str().unwrap_or_default()))
                .collect();
            pairs.sort();
            let inner: Vec<String> = pairs
                .iter()
                .map(|(k, v)| format!("{}:{}", go_quote(k), go_quote(v)))
                .collect();
            format!("map[string]string{{{}}}", inner.join(", "))
        }
    }
}

/// Go's `%#v` of a `[]string` taken from a JSON array (`nil` when absent).
fn go_string_slice(v: Option<&Value>) -> String {
    match v.and_then(Value::as_array) {
        None => "[]string(nil)".into(),
        Some(a) => {
            let inner: Vec<String> = a
                .iter()
                .map(|v| go_quote(v.as_str().unwrap_or_default()))
                .collect();
            format!("[]string{{{}}}", inner.join(", "))
        }
    }
}

/// Go's `%#v` of a `metav1.LabelSelector`, as upstream shows it in errors such as
/// `spec.selector: Invalid value: v1.LabelSelector{...}: field is immutable`.
pub(crate) fn render_label_selector(sel: &Value) -> Rendered {
    if sel.is_null() {
        return Rendered("null".into());
    }
    let exprs = match sel.get("matchExpressions").and_then(Value::as_array) {
        None => "[]v1.LabelSelectorRequirement(nil)".to_string(),
        Some(list) => {
            let items: Vec<String> = list
                .iter()
                .map(|e| {
                    format!(
                        "v1.LabelSelectorRequirement{{Key:{}, Operator:{}, Values:{}}}",
                        go_quote(str_or_empty(e, "key")),
                        go_quote(str_or_empty(e, "operator")),
                        go_string_slice(e.get("values"))
                    )
                })
                .collect();
            format!("[]v1.LabelSelectorRequirement{{{}}}", items.join(", "))
        }
    };
    Rendered(format!(
        "v1.LabelSelector{{MatchLabels:{}, MatchExpressions:{}}}",
        go_string_map(sel.get("matchLabels")),
        exprs
    ))
}

/// Renders JSON like Go prints the typed value: strings quoted, string maps and lists in
/// Go syntax (which is what users see in upstream's messages), other structures as JSON.
pub(crate) fn render_value(v: &Value) -> String {
    match v {
        Value::String(s) => go_quote(s),
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Object(m) if m.values().all(Value::is_string) => {
            let mut pairs: Vec<(&String, &str)> = m
                .iter()
                .map(|(k, v)| (k, v.as_str().unwrap_or_default()))
                .collect();
            pairs.sort();
            let inner: Vec<String> = pairs
                .iter()
                .map(|(k, v)| format!("{}:{}", go_quote(k), go_quote(v)))
                .collect();
            format!("map[string]string{{{}}}", inner.join(", "))
        }
        Value::Array(a) if a.iter().all(Value::is_string) => {
            let inner: Vec<String> = a
                .iter()
                .map(|v| go_quote(v.as_str().unwrap_or_default()))
                .collect();
            format!("[]string{{{}}}", inner.join(", "))
        }
        other => other.to_string(),
    }
}

/// `parent.child`, or `child` at the root.
pub(crate) fn child(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}.{name}")
    }
}

/// `parent[i]`.
pub(crate) fn index(parent: &str, i: usize) -> String {
    format!("{parent}[{i}]")
}

/// `parent[key]`, as upstream's `Path.Key`.
pub(crate) fn key(parent: &str, k: &str) -> String {
    format!("{parent}[{k}]")
}

pub(crate) fn get_str<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get(k).and_then(Value::as_str)
}

/// A string field, empty when absent (Go's zero value).
pub(crate) fn str_or_empty<'a>(v: &'a Value, k: &str) -> &'a str {
    get_str(v, k).unwrap_or_default()
}

pub(crate) fn get_arr<'a>(v: &'a Value, k: &str) -> &'a [Value] {
    v.get(k)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

pub(crate) fn get_obj<'a>(v: &'a Value, k: &str) -> Option<&'a Map<String, Value>> {
    v.get(k).and_then(Value::as_object)
}

pub(crate) fn get_i64(v: &Value, k: &str) -> Option<i64> {
    v.get(k).and_then(Value::as_i64)
}

/// Appends `Invalid` errors for each message of a string validator.
pub(crate) fn push_msgs(errs: &mut Vec<FieldError>, path: &str, value: &str, msgs: Vec<String>) {
    errs.extend(
        msgs.into_iter()
            .map(|m| FieldError::invalid(path, value, m)),
    );
}

/// `ValidateNonnegativeField`.
pub(crate) fn nonnegative(errs: &mut Vec<FieldError>, v: &Value, k: &str, path: &str) {
    if let Some(n) = get_i64(v, k).filter(|n| *n < 0) {
        errs.push(FieldError::invalid(
            child(path, k),
            n,
            "must be greater than or equal to 0",
        ));
    }
}

/// How a kind's objects are named and scoped.
struct KindInfo {
    namespaced: bool,
    name: NameValidator,
}

fn kind_info(group: &str, kind: &str) -> Option<KindInfo> {
    use names::{
        name_is_dns1035_label, name_is_dns_label, name_is_dns_subdomain, name_is_path_segment,
    };
    let (namespaced, name): (bool, NameValidator) = match (group, kind) {
        ("", "Namespace") => (false, name_is_dns_label),
        ("", "Service") => (true, name_is_dns1035_label),
        ("", "Node" | "PersistentVolume") => (false, name_is_dns_subdomain),
        (
            "",
            "Pod"
            | "ConfigMap"
            | "Secret"
            | "PersistentVolumeClaim"
            | "ServiceAccount"
            | "Endpoints"
            | "ReplicationController"
            | "LimitRange"
            | "ResourceQuota"
            | "Event"
            | "PodTemplate",
        ) => (true, name_is_dns_subdomain),
        (
            "apps",
            "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" | "ControllerRevision",
        ) => (true, name_is_dns_subdomain),
        ("batch", "Job" | "CronJob") => (true, name_is_dns_subdomain),
        ("networking.k8s.io", "Ingress" | "NetworkPolicy") => (true, name_is_dns_subdomain),
        ("networking.k8s.io", "IngressClass") => (false, name_is_dns_subdomain),
        ("autoscaling", "HorizontalPodAutoscaler") => (true, name_is_path_segment),
        ("rbac.authorization.k8s.io", "Role" | "RoleBinding") => (true, name_is_path_segment),
        ("rbac.authorization.k8s.io", "ClusterRole" | "ClusterRoleBinding") => {
            (false, name_is_path_segment)
        }
        ("storage.k8s.io", "StorageClass" | "CSIDriver" | "CSINode" | "VolumeAttachment") => {
            (false, name_is_dns_subdomain)
        }
        ("coordination.k8s.io", "Lease") => (true, name_is_dns_subdomain),
        ("policy", "PodDisruptionBudget") => (true, name_is_dns_subdomain),
        ("discovery.k8s.io", "EndpointSlice") => (true, name_is_dns_subdomain),
        ("events.k8s.io", "Event") => (true, name_is_dns_subdomain),
        ("scheduling.k8s.io", "PriorityClass") => (false, name_is_dns_subdomain),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => (false, name_is_dns_subdomain),
        _ => return None,
    };
    Some(KindInfo { namespaced, name })
}

/// Validates an object on create. Unknown kinds get metadata checks only (name as a DNS
/// subdomain, namespace format when present); use [`validate_object_meta`] directly when the
/// scope of a custom resource is known.
pub fn validate(group: &str, kind: &str, obj: &Value) -> Vec<FieldError> {
    let empty = Value::Object(Map::new());
    let meta = obj.get("metadata").unwrap_or(&empty);
    let mut errs = match kind_info(group, kind) {
        Some(info) => validate_object_meta(meta, info.namespaced, info.name),
        None => meta::validate_object_meta_any_scope(meta),
    };
    errs.extend(validate_kind(group, kind, obj));
    errs
}

/// Kind-specific checks, without metadata.
fn validate_kind(group: &str, kind: &str, obj: &Value) -> Vec<FieldError> {
    let empty = Value::Object(Map::new());
    let spec = obj.get("spec").unwrap_or(&empty);
    match (group, kind) {
        ("", "Pod") => validate_pod_spec(spec, "spec"),
        ("", "PodTemplate") => {
            validate_pod_template(obj.get("template").unwrap_or(&empty), "template")
        }
        ("", "Service") => service::validate_service(obj),
        ("", "ConfigMap") => kinds::validate_config_map(obj),
        ("", "Secret") => kinds::validate_secret(obj),
        ("", "Namespace") => kinds::validate_namespace(obj),
        ("", "Node") => kinds::validate_node(obj),
        ("", "PersistentVolumeClaim") => kinds::validate_pvc(obj),
        ("", "PersistentVolume") => kinds::validate_pv(obj),
        ("", "ReplicationController") => workloads::validate_replication_controller(obj),
        ("apps", "Deployment") => workloads::validate_deployment(obj),
        ("apps", "ReplicaSet") => workloads::validate_replica_set(obj),
        ("apps", "StatefulSet") => workloads::validate_stateful_set(obj),
        ("apps", "DaemonSet") => workloads::validate_daemon_set(obj),
        ("batch", "Job") => workloads::validate_job(obj),
        ("batch", "CronJob") => workloads::validate_cron_job(obj),
        ("networking.k8s.io", "Ingress") => service::validate_ingress(obj),
        ("autoscaling", "HorizontalPodAutoscaler") => kinds::validate_hpa(obj),
        ("storage.k8s.io", "StorageClass") => kinds::validate_storage_class(obj),
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            kinds::validate_role_binding(obj)
        }
        _ => Vec::new(),
    }
}

/// Validates an update: the new object as on create, metadata immutability, and the
/// kind's immutable fields (pod spec, workload selectors, job templates, service cluster
/// IPs, immutable ConfigMaps and Secrets, PVC specs, StorageClass parameters, ...).
pub fn validate_update(group: &str, kind: &str, old: &Value, new: &Value) -> Vec<FieldError> {
    let mut errs = validate(group, kind, new);
    let empty = Value::Object(Map::new());
    errs.extend(validate_object_meta_update(
        old.get("metadata").unwrap_or(&empty),
        new.get("metadata").unwrap_or(&empty),
    ));
    errs.extend(update::validate_kind_update(group, kind, old, new));
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bodies_and_messages() {
        let e = FieldError::invalid("spec.replicas", -1, "must be greater than or equal to 0");
        assert_eq!(
            e.to_string(),
            "spec.replicas: Invalid value: -1: must be greater than or equal to 0"
        );
        let r = FieldError::required("spec.containers", "");
        assert_eq!(r.body(), "Required value");
        let n = FieldError::not_supported(
            "spec.restartPolicy",
            "Sometimes",
            &["Always", "OnFailure", "Never"],
        );
        assert_eq!(
            n.body(),
            "Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\""
        );
        assert_eq!(
            FieldError::too_long("metadata.annotations", 262144).body(),
            "Too long: must have at most 262144 bytes"
        );
        assert_eq!(
            invalid_message("apps", "Deployment", "web", &[e.clone(), r.clone()]),
            "Deployment.apps \"web\" is invalid: [spec.replicas: Invalid value: -1: must be greater than or equal to 0, spec.containers: Required value]"
        );
        assert_eq!(
            invalid_message("", "Pod", "p", &[r]),
            "Pod \"p\" is invalid: spec.containers: Required value"
        );
        assert_eq!(e.to_cause()["reason"], "FieldValueInvalid");
        assert_eq!(
            render_value(&json!({"b": "2", "a": "1"})),
            "map[string]string{\"a\":\"1\", \"b\":\"2\"}"
        );
        assert_eq!(
            render_label_selector(&json!({"matchLabels": {"app": "web"}})).0,
            "v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"web\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}"
        );
        assert_eq!(
            render_label_selector(&json!({"matchExpressions": [{"key": "a", "operator": "Exists"}]})).0,
            "v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement{v1.LabelSelectorRequirement{Key:\"a\", Operator:\"Exists\", Values:[]string(nil)}}}"
        );
    }

    #[test]
    fn unknown_kind_checks_metadata_only() {
        let obj = json!({"metadata": {"name": "Bad_Name"}, "spec": {"anything": 1}});
        let errs = validate("example.com", "Widget", &obj);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].field, "metadata.name");
        assert!(validate(
            "example.com",
            "Widget",
            &json!({"metadata": {"name": "ok"}})
        )
        .is_empty());
    }
}
