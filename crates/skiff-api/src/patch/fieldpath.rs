//! Field paths and field sets, the vocabulary of server-side apply ownership.
//!
//! A path names one field inside an object: `.spec.replicas`, a list element by its keys
//! (`[name="nginx"]`), a set member by value (`[="foo"]`) or an index. A [`FieldSet`] is what
//! a manager owns and round-trips through the `fieldsV1` encoding of `managedFields`
//! (`f:`/`k:`/`v:`/`i:` prefixes, `.` marking a node that is itself a member).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::{Map, Value};

use super::patch_meta::{ListType, PatchMeta};

/// One step of a [`Path`]. The derived order (fields, keys, values, indexes) is the order
/// in which upstream serializes `fieldsV1` children.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathElement {
    /// A struct field or map key.
    Field(String),
    /// An element of an associative list, as compact JSON of its key fields (sorted by name).
    Key(String),
    /// A member of a set list, as compact JSON.
    Value(String),
    /// An element of a list by position (only produced when reading foreign `fieldsV1`).
    Index(usize),
}

/// A path from the object root to one field.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Path(pub Vec<PathElement>);

impl Path {
    /// A path one step deeper.
    pub fn child(&self, e: PathElement) -> Path {
        let mut v = self.0.clone();
        v.push(e);
        Path(v)
    }

    /// Whether `self` is `other` or lies beneath it.
    pub fn starts_with(&self, other: &Path) -> bool {
        self.0.len() >= other.0.len() && self.0[..other.0.len()] == other.0[..]
    }
}

impl fmt::Display for Path {
    /// Upstream's rendering, as used in apply conflict messages: `.spec.ports[port=80,protocol="TCP"].name`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.0 {
            match e {
                PathElement::Field(n) => write!(f, ".{n}")?,
                PathElement::Key(k) => {
                    let parsed: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
                    let parts: Vec<String> =
                        parsed.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    write!(f, "[{}]", parts.join(","))?
                }
                PathElement::Value(v) => write!(f, "[={v}]")?,
                PathElement::Index(i) => write!(f, "[{i}]")?,
            }
        }
        Ok(())
    }
}

/// A set of paths, e.g. the fields one manager owns.
pub type FieldSet = BTreeSet<Path>;

/// Flattened view of an object: every owned-able path with its leaf value (`None` for list
/// elements and set members, which are present or not but have no value of their own).
pub type Leaves = BTreeMap<Path, Option<Value>>;

/// Key fields whose value defaults when omitted, so `{"containerPort": 80}` and
/// `{"containerPort": 80, "protocol": "TCP"}` name the same element, as upstream's schema
/// defaults make them.
fn key_default(field: &str) -> Option<Value> {
    (field == "protocol").then(|| Value::String("TCP".into()))
}

/// The `k:` identity of an associative list element, or `None` when a key field is missing.
pub fn element_key(elem: &Value, keys: &[&str]) -> Option<String> {
    let obj = elem.as_object()?;
    let mut names: Vec<&str> = keys.to_vec();
    names.sort_unstable();
    let mut out = Map::new();
    for k in names {
        let v = obj
            .get(k)
            .filter(|v| !v.is_null())
            .cloned()
            .or_else(|| key_default(k))?;
        out.insert(k.to_string(), v);
    }
    Some(Value::Object(out).to_string())
}

/// The identities of all elements of a keyed list, or `None` if any element has no valid
/// key or two share one; such lists are then handled as atomic.
pub fn list_keys(list: &[Value], keys: &[&str]) -> Option<Vec<String>> {
    let ids: Vec<String> = list
        .iter()
        .map(|e| element_key(e, keys))
        .collect::<Option<_>>()?;
    let unique: BTreeSet<&String> = ids.iter().collect();
    (unique.len() == ids.len()).then_some(ids)
}

/// Flattens `v` (an object root) into its leaves.
pub fn leaves(v: &Value, meta: &PatchMeta) -> Leaves {
    let mut out = Leaves::new();
    if let Value::Object(m) = v {
        walk_object(m, meta, &Path::default(), &mut out);
    }
    out
}

fn walk_object(m: &Map<String, Value>, meta: &PatchMeta, path: &Path, out: &mut Leaves) {
    for (k, v) in m {
        if v.is_null() {
            continue;
        }
        let fm = meta.field(k);
        let p = path.child(PathElement::Field(k.clone()));
        match v {
            Value::Object(child) if !fm.atomic && !child.is_empty() => {
                walk_object(child, &fm.meta, &p, out)
            }
            Value::Array(list) if !list.is_empty() => match &fm.list_type {
                ListType::Atomic => {
                    out.insert(p, Some(v.clone()));
                }
                ListType::Set => {
                    for e in list {
                        out.insert(p.child(PathElement::Value(e.to_string())), None);
                    }
                }
                ListType::Map(keys) => match list_keys(list, &keys.names()) {
                    Some(ids) => {
                        for (id, e) in ids.into_iter().zip(list) {
                            let ep = p.child(PathElement::Key(id));
                            out.insert(ep.clone(), None);
                            if let Value::Object(em) = e {
                                walk_object(em, &fm.meta, &ep, out);
                            }
                        }
                    }
                    None => {
                        out.insert(p, Some(v.clone()));
                    }
                },
            },
            _ => {
                out.insert(p, Some(v.clone()));
            }
        }
    }
}

/// Encodes a field set as upstream's `fieldsV1` JSON.
pub fn to_fields_v1(set: &FieldSet) -> Value {
    #[derive(Default)]
    struct Node {
        member: bool,
        children: BTreeMap<PathElement, Node>,
    }
    fn render(n: &Node) -> Value {
        let mut m = Map::new();
        if n.member && !n.children.is_empty() {
            m.insert(".".into(), Value::Object(Map::new()));
        }
        for (e, c) in &n.children {
            m.insert(encode_element(e), render(c));
        }
        Value::Object(m)
    }
    let mut root = Node::default();
    for p in set {
        let mut n = &mut root;
        for e in &p.0 {
            n = n.children.entry(e.clone()).or_default();
        }
        n.member = true;
    }
    render(&root)
}

fn encode_element(e: &PathElement) -> String {
    match e {
        PathElement::Field(n) => format!("f:{n}"),
        PathElement::Key(k) => format!("k:{k}"),
        PathElement::Value(v) => format!("v:{v}"),
        PathElement::Index(i) => format!("i:{i}"),
    }
}

/// Decodes `fieldsV1` JSON; malformed entries are skipped rather than failing the write.
pub fn from_fields_v1(v: &Value) -> FieldSet {
    fn walk(m: &Map<String, Value>, path: &Path, out: &mut FieldSet) {
        for (k, child) in m {
            if k == "." {
                out.insert(path.clone());
                continue;
            }
            let Some(e) = decode_element(k) else { continue };
            let p = path.child(e);
            match child.as_object() {
                Some(cm) if !cm.is_empty() => walk(cm, &p, out),
                _ => {
                    out.insert(p);
                }
            }
        }
    }
    let mut out = FieldSet::new();
    if let Some(m) = v.as_object() {
        walk(m, &Path::default(), &mut out);
    }
    out
}

fn decode_element(s: &str) -> Option<PathElement> {
    let (prefix, rest) = s.split_at_checked(2)?;
    match prefix {
        "f:" => Some(PathElement::Field(rest.to_string())),
        "k:" => {
            // Re-encode so keys written in another field order still compare equal.
            let parsed: Map<String, Value> = serde_json::from_str(rest).ok()?;
            let mut sorted: Vec<(String, Value)> = parsed.into_iter().collect();
            sorted.sort_by(|a, b| a.0.cmp(&b.0));
            Some(PathElement::Key(
                Value::Object(sorted.into_iter().collect()).to_string(),
            ))
        }
        "v:" => {
            let parsed: Value = serde_json::from_str(rest).ok()?;
            Some(PathElement::Value(parsed.to_string()))
        }
        "i:" => rest.parse().ok().map(PathElement::Index),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patch::patch_meta::patch_meta_for;
    use serde_json::json;

    #[test]
    fn leaves_of_a_deployment() {
        let d = json!({"spec": {"replicas": 2, "template": {"spec": {"containers": [
            {"name": "web", "image": "nginx", "ports": [{"containerPort": 80}]}
        ]}}}, "metadata": {"finalizers": ["x"], "labels": {}}});
        let meta = patch_meta_for("apps/v1", "Deployment").unwrap();
        let l = leaves(&d, &meta);
        let rendered: Vec<String> = l.keys().map(|p| p.to_string()).collect();
        assert_eq!(
            rendered,
            [
                ".metadata.finalizers[=\"x\"]",
                ".metadata.labels",
                ".spec.replicas",
                ".spec.template.spec.containers[name=\"web\"]",
                ".spec.template.spec.containers[name=\"web\"].image",
                ".spec.template.spec.containers[name=\"web\"].name",
                ".spec.template.spec.containers[name=\"web\"].ports[containerPort=80,protocol=\"TCP\"]",
                ".spec.template.spec.containers[name=\"web\"].ports[containerPort=80,protocol=\"TCP\"].containerPort",
            ]
        );
    }

    #[test]
    fn fields_v1_round_trip() {
        let d = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "web", "image": "nginx"}
        ]}}}, "data": {"k": "v"}});
        let set: FieldSet = leaves(&d, &patch_meta_for("apps/v1", "Deployment").unwrap())
            .into_keys()
            .collect();
        let encoded = to_fields_v1(&set);
        assert_eq!(
            encoded,
            json!({
                "f:data": {"f:k": {}},
                "f:spec": {"f:template": {"f:spec": {"f:containers": {
                    "k:{\"name\":\"web\"}": {".": {}, "f:image": {}, "f:name": {}}
                }}}}
            })
        );
        assert_eq!(
            serde_json::to_string(&encoded).unwrap(),
            r#"{"f:data":{"f:k":{}},"f:spec":{"f:template":{"f:spec":{"f:containers":{"k:{\"name\":\"web\"}":{".":{},"f:image":{},"f:name":{}}}}}}}"#
        );
        assert_eq!(from_fields_v1(&encoded), set);
    }

    #[test]
    fn keyed_lists_with_duplicates_are_atomic() {
        let pod = json!({"spec": {"containers": [{"name": "a"}, {"name": "a"}]}});
        let l = leaves(&pod, &patch_meta_for("v1", "Pod").unwrap());
        assert_eq!(l.len(), 1);
        assert_eq!(l.keys().next().unwrap().to_string(), ".spec.containers");
    }
}
