//! Label and field selectors from list/watch query parameters, turned into a predicate on
//! objects.

use serde_json::Value;
use skiff_api::status::ApiError;
use skiff_api::ResourceInfo;

use crate::http::Query;

/// A compiled `labelSelector` + `fieldSelector`.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    labels: Vec<(String, Op, Vec<String>)>,
    fields: Vec<(String, bool, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Eq,
    NotEq,
    In,
    NotIn,
    Exists,
    NotExists,
}

impl Filter {
    /// Build from the query; 400 for malformed selectors or unsupported fields.
    pub fn from_query(info: &ResourceInfo, q: &Query) -> Result<Self, ApiError> {
        let mut f = Filter::default();
        if let Some(ls) = q.non_empty("labelSelector") {
            f.labels = parse_labels(ls)?;
        }
        if let Some(fs) = q.non_empty("fieldSelector") {
            for term in fs.split(',').filter(|t| !t.trim().is_empty()) {
                let (k, neg, v) = if let Some((k, v)) = term.split_once("!=") {
                    (k, true, v)
                } else if let Some((k, v)) = term.split_once("==") {
                    (k, false, v)
                } else if let Some((k, v)) = term.split_once('=') {
                    (k, false, v)
                } else {
                    return Err(ApiError::bad_request(format!("invalid selector: '{fs}'; can't understand '{term}'")));
                };
                let k = k.trim().to_string();
                if !field_supported(info, &k) {
                    return Err(ApiError::bad_request(format!("field label not supported: {k}")));
                }
                f.fields.push((k, neg, v.trim().to_string()));
            }
        }
        Ok(f)
    }

    /// Both filters at once.
    pub fn and(mut self, other: Filter) -> Filter {
        self.labels.extend(other.labels);
        self.fields.extend(other.fields);
        self
    }

    /// True when the filter selects everything.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }

    /// True when `obj` matches.
    pub fn matches(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels").and_then(Value::as_object);
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        for (k, op, vals) in &self.labels {
            let ok = match op {
                Op::Eq => get(k) == Some(vals[0].as_str()),
                Op::NotEq => get(k) != Some(vals[0].as_str()),
                Op::In => get(k).is_some_and(|v| vals.iter().any(|x| x == v)),
                Op::NotIn => !get(k).is_some_and(|v| vals.iter().any(|x| x == v)),
                Op::Exists => get(k).is_some(),
                Op::NotExists => get(k).is_none(),
            };
            if !ok {
                return false;
            }
        }
        for (k, neg, v) in &self.fields {
            let actual = field_value(obj, k).unwrap_or_default();
            if (actual == *v) == *neg {
                return false;
            }
        }
        true
    }
}

fn field_supported(info: &ResourceInfo, field: &str) -> bool {
    if field == "metadata.name" || field == "metadata.namespace" {
        return true;
    }
    // Custom resources and kinds without their own fields: only metadata fields.
    let extra: &[&str] = match (info.group.as_str(), info.plural.as_str()) {
        ("", "pods") => &["spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName", "spec.hostNetwork", "status.phase", "status.podIP", "status.nominatedNodeName"],
        ("", "events") | ("events.k8s.io", "events") => &["involvedObject.kind", "involvedObject.namespace", "involvedObject.name", "involvedObject.uid", "involvedObject.apiVersion", "involvedObject.resourceVersion", "involvedObject.fieldPath", "reason", "reportingComponent", "source", "type", "regarding.kind", "regarding.name", "regarding.namespace", "regarding.uid"],
        ("", "secrets") => &["type"],
        ("", "namespaces") => &["status.phase"],
        ("", "nodes") => &["spec.unschedulable"],
        ("", "replicationcontrollers") | ("apps", "replicasets") => &["status.replicas"],
        ("batch", "jobs") => &["status.successful"],
        ("certificates.k8s.io", "certificatesigningrequests") => &["spec.signerName"],
        ("", "services") => &["spec.clusterIP", "spec.type"],
        _ => &[],
    };
    extra.contains(&field)
}

/// The string value of a dotted field path (booleans and numbers as text; absent as "").
pub fn field_value(obj: &Value, path: &str) -> Option<String> {
    let mut cur = obj;
    for part in path.split('.') {
        cur = cur.get(part)?;
    }
    Some(match cur {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Null => String::new(),
        other => other.to_string(),
    })
}

fn parse_labels(s: &str) -> Result<Vec<(String, Op, Vec<String>)>, ApiError> {
    let bad = |why: &str| ApiError::bad_request(format!("unable to parse requirement: {why}"));
    let mut out = Vec::new();
    // Split on commas outside parentheses.
    let mut terms = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                terms.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&s[start..]);
    for t in terms {
        let t = t.trim();
        if t.is_empty() {
            return Err(bad("found '', expected: identifier"));
        }
        let set = |rest: &str| -> Result<Vec<String>, ApiError> {
            let rest = rest.trim();
            let inner = rest.strip_prefix('(').and_then(|r| r.strip_suffix(')')).ok_or_else(|| bad("expected: '('"))?;
            Ok(inner.split(',').map(|v| v.trim().to_string()).collect())
        };
        if let Some(k) = t.strip_prefix('!') {
            out.push((k.trim().to_string(), Op::NotExists, vec![]));
        } else if let Some((k, v)) = t.split_once("!=") {
            out.push((k.trim().to_string(), Op::NotEq, vec![v.trim().to_string()]));
        } else if let Some((k, v)) = t.split_once("==") {
            out.push((k.trim().to_string(), Op::Eq, vec![v.trim().to_string()]));
        } else if let Some((k, v)) = t.split_once('=') {
            out.push((k.trim().to_string(), Op::Eq, vec![v.trim().to_string()]));
        } else if let Some((k, rest)) = t.split_once(" notin ") {
            out.push((k.trim().to_string(), Op::NotIn, set(rest)?));
        } else if let Some((k, rest)) = t.split_once(" in ") {
            out.push((k.trim().to_string(), Op::In, set(rest)?));
        } else if t.chars().all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c)) {
            out.push((t.to_string(), Op::Exists, vec![]));
        } else {
            return Err(bad(&format!("found '{t}', expected: in, notin, =, ==, !=, gt, lt")));
        }
    }
    Ok(out)
}
