//! Field selectors: `metadata.name=foo,status.phase!=Running`, the per-resource table of
//! selectable fields and value lookup in JSON objects.

use std::fmt;

use serde_json::Value;

use super::SelectorError;

/// A field selector operator. Field selectors support only equality.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldOperator {
    /// `field=value`.
    Equals,
    /// `field==value`, same meaning as `=`.
    DoubleEquals,
    /// `field!=value`.
    NotEquals,
}

/// One `field op value` term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    /// Dotted field path as written by the client (before alias resolution).
    pub field: String,
    /// The operator.
    pub operator: FieldOperator,
    /// The unescaped value.
    pub value: String,
}

/// A parsed field selector; the default selects everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// Parses the `fieldSelector` query string. Terms are split on unescaped commas and
    /// sorted, as upstream does; whitespace is significant (it is not trimmed upstream
    /// either, so `a = b` names the field `a `).
    pub fn parse(s: &str) -> Result<FieldSelector, SelectorError> {
        let mut parts = split_terms(s);
        parts.sort();
        let mut requirements = Vec::new();
        for part in parts.iter().filter(|p| !p.is_empty()) {
            let cant = || {
                SelectorError::Field(format!(
                    "invalid selector: '{s}'; can't understand '{part}'"
                ))
            };
            let (field, operator, rhs) = split_term(part).ok_or_else(cant)?;
            let value = unescape_value(rhs)?;
            requirements.push(FieldRequirement {
                field: field.to_string(),
                operator,
                value,
            });
        }
        Ok(FieldSelector { requirements })
    }

    /// The selector that matches everything.
    pub fn everything() -> FieldSelector {
        FieldSelector::default()
    }

    /// Whether there are no terms.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The terms, sorted as parsed.
    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }

    /// Checks every field against what `group`/`resource` supports and resolves aliases
    /// (`spec.host` for pods, `regarding.*` for events.k8s.io), with upstream's per-kind
    /// error on the first unsupported field.
    pub fn validate_for(
        &self,
        group: &str,
        resource: &str,
    ) -> Result<FieldSelector, SelectorError> {
        let requirements = self
            .requirements
            .iter()
            .map(|r| {
                let field = normalize_field(group, resource, &r.field)?;
                Ok(FieldRequirement { field, ..r.clone() })
            })
            .collect::<Result<Vec<_>, SelectorError>>()?;
        Ok(FieldSelector { requirements })
    }

    /// Like [`FieldSelector::validate_for`] with a caller-supplied list of fields (custom
    /// resources with `selectableFields`); the error is the generic "not a known field
    /// selector" one.
    pub fn validate_fields(&self, supported: &[&str]) -> Result<(), SelectorError> {
        match self
            .requirements
            .iter()
            .find(|r| !supported.contains(&r.field.as_str()))
        {
            Some(r) => Err(SelectorError::FieldNotKnown(r.field.clone())),
            None => Ok(()),
        }
    }

    /// Whether `obj` satisfies every term. `getter` returns a field's value; `None` means
    /// unset and compares as the field's zero value (`""`, `false` or `0`), as upstream's
    /// typed field sets do.
    pub fn matches(&self, obj: &Value, getter: impl Fn(&Value, &str) -> Option<String>) -> bool {
        self.requirements.iter().all(|r| {
            let have = getter(obj, &r.field).unwrap_or_else(|| zero_value(&r.field).to_string());
            match r.operator {
                FieldOperator::Equals | FieldOperator::DoubleEquals => have == r.value,
                FieldOperator::NotEquals => have != r.value,
            }
        })
    }

    /// [`FieldSelector::matches`] with [`field_value`] as the getter.
    pub fn matches_object(&self, obj: &Value) -> bool {
        self.matches(obj, field_value)
    }

    /// [`FieldSelector::matches`] with [`field_value_for`] as the getter; use it on a
    /// selector returned by [`FieldSelector::validate_for`] (canonical field names).
    pub fn matches_object_for(&self, group: &str, resource: &str, obj: &Value) -> bool {
        self.matches(obj, |o, f| field_value_for(group, resource, o, f))
    }

    /// Adds the object paths matching this (canonical) selector reads to `paths`.
    pub fn add_view_paths_for(&self, group: &str, resource: &str, paths: &mut super::ViewPaths) {
        for r in &self.requirements {
            for p in field_paths_for(group, resource, &r.field) {
                paths.add(&p);
            }
        }
    }

    /// The value a term requires `field` to equal, if any (upstream `RequiresExactMatch`);
    /// lets callers use an index, e.g. pods by `spec.nodeName`.
    pub fn exact_match(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.field == field && r.operator != FieldOperator::NotEquals)
            .map(|r| r.value.as_str())
    }
}

impl fmt::Display for FieldSelector {
    /// Upstream's `Selector.String()`: `==` prints as `=`, values re-escaped.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .requirements
            .iter()
            .map(|r| {
                let op = if r.operator == FieldOperator::NotEquals {
                    "!="
                } else {
                    "="
                };
                format!("{}{op}{}", r.field, escape_value(&r.value))
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// Splits on commas not preceded by a backslash; escapes stay in the terms.
fn split_terms(s: &str) -> Vec<&str> {
    if s.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut in_slash = false;
    for (i, c) in s.char_indices() {
        if in_slash {
            in_slash = false;
        } else if c == '\\' {
            in_slash = true;
        } else if c == ',' {
            terms.push(&s[start..i]);
            start = i + 1;
        }
    }
    terms.push(&s[start..]);
    terms
}

/// Splits a term at the first operator; the left side has no escaping.
fn split_term(term: &str) -> Option<(&str, FieldOperator, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        for (op, kind) in [
            ("!=", FieldOperator::NotEquals),
            ("==", FieldOperator::DoubleEquals),
            ("=", FieldOperator::Equals),
        ] {
            if let Some(rhs) = rest.strip_prefix(op) {
                return Some((&term[..i], kind, rhs));
            }
        }
    }
    None
}

fn unescape_value(s: &str) -> Result<String, SelectorError> {
    let mut out = String::with_capacity(s.len());
    let mut in_slash = false;
    for c in s.chars() {
        if in_slash {
            if matches!(c, '\\' | ',' | '=') {
                out.push(c);
                in_slash = false;
                continue;
            }
            return Err(SelectorError::Field(format!(
                "invalid field selector: invalid escape sequence: \\{c}"
            )));
        }
        match c {
            '\\' => in_slash = true,
            // Upstream prints the rune with %v, i.e. as its number.
            ',' | '=' => {
                return Err(SelectorError::Field(format!(
                    "invalid field selector: unescaped character in value: {}",
                    c as u32
                )))
            }
            c => out.push(c),
        }
    }
    if in_slash {
        return Err(SelectorError::Field(
            "invalid field selector: invalid escape sequence: \\".into(),
        ));
    }
    Ok(out)
}

fn escape_value(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace(',', "\\,")
        .replace('=', "\\=")
}

/// Fields whose unset value is not the empty string (booleans and counters): upstream's
/// field sets always carry them, formatted from Go zero values.
fn zero_value(field: &str) -> &'static str {
    match field {
        "spec.hostNetwork" | "spec.unschedulable" => "false",
        "status.replicas" | "status.successful" => "0",
        _ => "",
    }
}

/// Resolves a dotted path such as `metadata.name`, `spec.nodeName` or
/// `involvedObject.kind` in a JSON object. Strings print as-is, booleans as `true`/`false`
/// and numbers in decimal; objects, arrays and missing fields give `None`.
///
/// This is the generic getter; [`field_value_for`] adds the per-resource quirks.
pub fn field_value(obj: &Value, field: &str) -> Option<String> {
    let mut cur = obj;
    for part in field.split('.') {
        cur = cur.get(part)?;
    }
    match cur {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The value upstream indexes for a canonical field (as returned by [`normalize_field`]) of
/// a `group`/`resource` object in its served JSON form: a Job's `status.successful` is
/// `status.succeeded`, a core Event's `source` falls back to `reportingComponent`, an
/// events.k8s.io Event keeps `involvedObject.*` under `regarding.*`, and a pod's
/// `status.podIPs` is accepted but never indexed.
pub fn field_value_for(group: &str, resource: &str, obj: &Value, field: &str) -> Option<String> {
    match (group, resource, field) {
        ("batch", "jobs", "status.successful") => field_value(obj, "status.succeeded"),
        ("", "events", "source") => field_value(obj, "source.component")
            .filter(|s| !s.is_empty())
            .or_else(|| field_value(obj, "reportingComponent")),
        ("events.k8s.io", "events", f) => match f.strip_prefix("involvedObject.") {
            Some(rest) => field_value(obj, &format!("regarding.{rest}")),
            None if f == "reportingComponent" => field_value(obj, "reportingController"),
            None => field_value(obj, f),
        },
        ("", "pods", "status.podIPs") => None,
        ("", "pods", "status.podIP") => obj
            .pointer("/status/podIPs/0/ip")
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| field_value(obj, "status.podIP")),
        _ => field_value(obj, field),
    }
}

/// The object paths [`field_value_for`] reads for a canonical field: what a sparse decode
/// ([`super::view::parse_view`]) must keep for the match to see the same value. Kept next to
/// `field_value_for` so the two change together (a test checks they agree).
pub fn field_paths_for(group: &str, resource: &str, field: &str) -> Vec<String> {
    match (group, resource, field) {
        ("batch", "jobs", "status.successful") => vec!["status.succeeded".into()],
        ("", "events", "source") => vec!["source.component".into(), "reportingComponent".into()],
        ("events.k8s.io", "events", f) => match f.strip_prefix("involvedObject.") {
            Some(rest) => vec![format!("regarding.{rest}")],
            None if f == "reportingComponent" => vec!["reportingController".into()],
            None => vec![f.to_string()],
        },
        ("", "pods", "status.podIPs") => vec![],
        ("", "pods", "status.podIP") => vec!["status.podIPs".into(), "status.podIP".into()],
        _ => vec![field.to_string()],
    }
}

/// How a resource rejects a field it does not support; upstream's wording differs.
#[derive(Clone, Copy)]
enum Reject {
    /// Kinds with their own conversion function: `field label not supported: <f>`.
    NotSupported,
    /// batch/v1 Job: `field label "<f>" not supported for Job`.
    ForJob,
    /// Kinds without one (every apps kind, ConfigMaps, custom resources, ...).
    NotKnown,
}

/// One resource's field-selector contract: accepted labels (metadata included) and aliases
/// the API server rewrites before matching.
struct FieldSpec {
    accepted: &'static [&'static str],
    aliases: &'static [(&'static str, &'static str)],
    reject: Reject,
}

const METADATA_ONLY: FieldSpec = FieldSpec {
    accepted: &["metadata.name", "metadata.namespace"],
    aliases: &[],
    reject: Reject::NotKnown,
};

fn field_spec(group: &str, resource: &str) -> FieldSpec {
    let (accepted, aliases, reject): (&'static [&'static str], &'static [(&str, &str)], Reject) =
        match (group, resource) {
            ("", "pods") => (
                &[
                    "metadata.name",
                    "metadata.namespace",
                    "spec.nodeName",
                    "spec.restartPolicy",
                    "spec.schedulerName",
                    "spec.serviceAccountName",
                    "spec.hostNetwork",
                    "status.phase",
                    "status.podIP",
                    "status.podIPs",
                    "status.nominatedNodeName",
                ],
                // Old v1 clients still send spec.host for the node a pod is bound to.
                &[("spec.host", "spec.nodeName")],
                Reject::NotSupported,
            ),
            ("", "events") => (
                &[
                    "metadata.name",
                    "metadata.namespace",
                    "involvedObject.kind",
                    "involvedObject.namespace",
                    "involvedObject.name",
                    "involvedObject.uid",
                    "involvedObject.apiVersion",
                    "involvedObject.resourceVersion",
                    "involvedObject.fieldPath",
                    "reason",
                    "reportingComponent",
                    "source",
                    "type",
                ],
                &[],
                Reject::NotSupported,
            ),
            // Same storage as core Events: the canonical labels are the core ones, spelled
            // the events.k8s.io way on the wire (and only that way).
            ("events.k8s.io", "events") => (
                &["metadata.name", "metadata.namespace", "reason", "type"],
                &[
                    ("regarding.kind", "involvedObject.kind"),
                    ("regarding.namespace", "involvedObject.namespace"),
                    ("regarding.name", "involvedObject.name"),
                    ("regarding.uid", "involvedObject.uid"),
                    ("regarding.apiVersion", "involvedObject.apiVersion"),
                    (
                        "regarding.resourceVersion",
                        "involvedObject.resourceVersion",
                    ),
                    ("regarding.fieldPath", "involvedObject.fieldPath"),
                    ("reportingController", "reportingComponent"),
                ],
                Reject::NotSupported,
            ),
            ("", "nodes") => (
                &["metadata.name", "spec.unschedulable"],
                &[],
                Reject::NotSupported,
            ),
            ("", "namespaces") => (
                &["metadata.name", "status.phase"],
                &[],
                Reject::NotSupported,
            ),
            ("", "secrets") => (
                &["metadata.name", "metadata.namespace", "type"],
                &[],
                Reject::NotSupported,
            ),
            ("", "services") => (
                &[
                    "metadata.name",
                    "metadata.namespace",
                    "spec.clusterIP",
                    "spec.type",
                ],
                &[],
                Reject::NotSupported,
            ),
            ("", "replicationcontrollers") => (
                &["metadata.name", "metadata.namespace", "status.replicas"],
                &[],
                Reject::NotSupported,
            ),
            ("batch", "jobs") => (
                &["metadata.name", "metadata.namespace", "status.successful"],
                &[],
                Reject::ForJob,
            ),
            ("certificates.k8s.io", "certificatesigningrequests") => (
                &["metadata.name", "spec.signerName"],
                &[],
                Reject::NotSupported,
            ),
            ("resource.k8s.io", "resourceslices") => (
                &["metadata.name", "spec.nodeName", "spec.driver"],
                &[],
                Reject::NotSupported,
            ),
            _ => return METADATA_ONLY,
        };
    FieldSpec {
        accepted,
        aliases,
        reject,
    }
}

/// Field labels upstream accepts for a resource (plural, lowercase), metadata included;
/// aliases such as a pod's `spec.host` are resolved by [`normalize_field`] instead. Kinds
/// without their own list (every apps kind, ConfigMaps, custom resources) accept only
/// `metadata.name` and `metadata.namespace`; cluster-scoped kinds with a list of their own
/// (nodes, namespaces, CSRs) do not accept `metadata.namespace`.
pub fn supported_fields(group: &str, resource: &str) -> &'static [&'static str] {
    field_spec(group, resource).accepted
}

/// Resolves aliases and checks support, returning the canonical field or the error
/// upstream's conversion function for that kind gives.
pub fn normalize_field(group: &str, resource: &str, field: &str) -> Result<String, SelectorError> {
    let spec = field_spec(group, resource);
    if let Some((_, to)) = spec.aliases.iter().find(|(from, _)| *from == field) {
        return Ok(to.to_string());
    }
    if spec.accepted.contains(&field) {
        return Ok(field.to_string());
    }
    let field = field.to_string();
    Err(match spec.reject {
        Reject::NotSupported => SelectorError::FieldNotSupported(field),
        Reject::ForJob => SelectorError::FieldNotSupportedFor { field, kind: "Job" },
        Reject::NotKnown => SelectorError::FieldNotKnown(field),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Matching on the sparse view gives the same answer as on the full object, for every
    /// field each kind accepts, with the value the object has and with another value.
    #[test]
    fn sparse_views_match_like_full_objects() {
        let pod = json!({"metadata": {"name": "p", "namespace": "ns", "labels": {"a": "b"}},
            "spec": {"nodeName": "n1", "restartPolicy": "Always", "schedulerName": "default-scheduler",
                     "serviceAccountName": "sa", "hostNetwork": true, "containers": [{"name": "c"}]},
            "status": {"phase": "Running", "podIP": "10.0.0.1", "podIPs": [{"ip": "10.0.0.2"}], "nominatedNodeName": "n2"}});
        let event = json!({"metadata": {"name": "e", "namespace": "ns"}, "reason": "R", "type": "Normal",
            "involvedObject": {"kind": "Pod", "namespace": "ns", "name": "p", "uid": "u", "apiVersion": "v1",
                               "resourceVersion": "5", "fieldPath": "spec"},
            "source": {"component": ""}, "reportingComponent": "kubelet"});
        let event2 = json!({"metadata": {"name": "e"}, "regarding": {"kind": "Pod", "name": "p"},
            "reportingController": "kubelet", "reason": "R", "type": "Warning"});
        let job = json!({"metadata": {"name": "j", "namespace": "ns"}, "status": {"succeeded": 2}});
        let node = json!({"metadata": {"name": "n"}, "spec": {"unschedulable": true}});
        let cases = [("", "pods", &pod), ("", "events", &event), ("events.k8s.io", "events", &event2),
            ("batch", "jobs", &job), ("", "nodes", &node), ("", "pods", &json!({"metadata": {"name": "bare"}}))];
        for (group, resource, obj) in cases {
            let bytes = serde_json::to_vec(obj).unwrap();
            // events.k8s.io matches on the canonical core names its aliases resolve to.
            let canonical: &[&str] = if group == "events.k8s.io" {
                &["involvedObject.kind", "involvedObject.name", "reportingComponent"]
            } else {
                &[]
            };
            for field in supported_fields(group, resource).iter().chain(canonical) {
                let have = field_value_for(group, resource, obj, field).unwrap_or_default();
                for value in [have.as_str(), "other"] {
                    for op in ["=", "!="] {
                        let sel = FieldSelector::parse(&format!("{field}{op}{value}")).unwrap();
                        let mut paths = super::super::ViewPaths::default();
                        sel.add_view_paths_for(group, resource, &mut paths);
                        let view = super::super::parse_view(&bytes, &paths).unwrap();
                        assert_eq!(
                            sel.matches_object_for(group, resource, &view),
                            sel.matches_object_for(group, resource, obj),
                            "{group}/{resource} {field}{op}{value}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn parse_and_print() {
        let s = FieldSelector::parse("status.phase!=Running,metadata.name==foo").unwrap();
        assert_eq!(s.to_string(), "metadata.name=foo,status.phase!=Running");
        assert_eq!(s.exact_match("metadata.name"), Some("foo"));
        assert_eq!(s.exact_match("status.phase"), None);
        assert!(FieldSelector::parse("").unwrap().is_empty());
        assert!(FieldSelector::parse(",").unwrap().is_empty());
        let e = FieldSelector::parse(r"a=b\,c").unwrap();
        assert_eq!(e.requirements()[0].value, "b,c");
        assert_eq!(e.to_string(), r"a=b\,c");
        assert_eq!(
            FieldSelector::parse("a=").unwrap().requirements()[0].value,
            ""
        );
    }

    #[test]
    fn parse_errors() {
        assert_eq!(
            FieldSelector::parse("foo").unwrap_err().to_string(),
            "invalid selector: 'foo'; can't understand 'foo'"
        );
        assert_eq!(
            FieldSelector::parse(r"a=b\x").unwrap_err().to_string(),
            r"invalid field selector: invalid escape sequence: \x"
        );
        assert_eq!(
            FieldSelector::parse("a=b=c").unwrap_err().to_string(),
            "invalid field selector: unescaped character in value: 61"
        );
        assert_eq!(
            FieldSelector::parse(r"a=b\").unwrap_err().to_string(),
            r"invalid field selector: invalid escape sequence: \"
        );
    }

    #[test]
    fn support_table() {
        let s = FieldSelector::parse("spec.host=n1,foo=bar").unwrap();
        assert_eq!(
            s.validate_for("", "pods").unwrap_err().to_string(),
            "field label not supported: foo"
        );
        let s = FieldSelector::parse("spec.host=n1")
            .unwrap()
            .validate_for("", "pods")
            .unwrap();
        assert_eq!(s.to_string(), "spec.nodeName=n1");
        assert!(normalize_field("apps", "deployments", "metadata.namespace").is_ok());
        assert_eq!(
            normalize_field("apps", "replicasets", "status.replicas").unwrap_err().to_string(),
            "\"status.replicas\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
        );
        assert!(normalize_field("", "replicationcontrollers", "status.replicas").is_ok());
        assert_eq!(
            normalize_field("batch", "jobs", "spec.x")
                .unwrap_err()
                .to_string(),
            "field label \"spec.x\" not supported for Job"
        );
        assert_eq!(
            normalize_field("", "nodes", "metadata.namespace")
                .unwrap_err()
                .to_string(),
            "field label not supported: metadata.namespace"
        );
        assert_eq!(
            normalize_field("events.k8s.io", "events", "regarding.kind").unwrap(),
            "involvedObject.kind"
        );
        assert!(normalize_field("events.k8s.io", "events", "involvedObject.kind").is_err());
        assert!(supported_fields("", "secrets").contains(&"type"));
        assert!(FieldSelector::parse("spec.x=1")
            .unwrap()
            .validate_fields(&["spec.x"])
            .is_ok());
    }

    #[test]
    fn matching_objects() {
        let pod = json!({
            "metadata": {"name": "p", "namespace": "default"},
            "spec": {"nodeName": "n1"},
            "status": {"phase": "Running", "podIP": "10.0.0.1", "podIPs": [{"ip": "10.0.0.2"}]}
        });
        let m = |s: &str| {
            FieldSelector::parse(s)
                .unwrap()
                .validate_for("", "pods")
                .unwrap()
                .matches_object_for("", "pods", &pod)
        };
        assert!(m("metadata.name=p,spec.nodeName=n1"));
        assert!(!m("status.phase!=Running"));
        assert!(m("spec.hostNetwork=false"));
        assert!(m("spec.schedulerName="));
        assert!(!m("metadata.namespace=kube-system"));
        assert!(m("status.podIP=10.0.0.2"));
        assert!(!m("status.podIPs=10.0.0.2"));
        assert!(FieldSelector::parse("status.replicas=0")
            .unwrap()
            .matches_object(&json!({"status": {}})));
        let job = json!({"status": {"succeeded": 2}});
        assert!(FieldSelector::parse("status.successful=2")
            .unwrap()
            .matches_object_for("batch", "jobs", &job));
        let ev = json!({"involvedObject": {"kind": "Pod"}, "source": {}, "reportingComponent": "kubelet"});
        assert!(
            FieldSelector::parse("source=kubelet,involvedObject.kind=Pod")
                .unwrap()
                .matches_object_for("", "events", &ev)
        );
        let ev2 = json!({"regarding": {"kind": "Pod"}, "reportingController": "kubelet"});
        let sel = FieldSelector::parse("regarding.kind=Pod,reportingController=kubelet").unwrap();
        let sel = sel.validate_for("events.k8s.io", "events").unwrap();
        assert!(sel.matches_object_for("events.k8s.io", "events", &ev2));
        let node = json!({"spec": {"unschedulable": true}});
        assert_eq!(
            field_value(&node, "spec.unschedulable").as_deref(),
            Some("true")
        );
        let custom = FieldSelector::parse("x=1").unwrap();
        assert!(custom.matches(&node, |_, _| Some("1".into())));
    }
}
