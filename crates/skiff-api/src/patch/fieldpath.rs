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
        walk_field(k, v, meta, path, out);
    }
}

/// The leaves of field `k` (value `v`) of an object at `path` whose fields `meta` describes.
fn walk_field(k: &str, v: &Value, meta: &PatchMeta, path: &Path, out: &mut Leaves) {
    if v.is_null() {
        return;
    }
    let fm = meta.field(k);
    let p = path.child(PathElement::Field(k.to_string()));
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
                    for (id, e) in ids.iter().zip(list) {
                        walk_element(id, e, &fm.meta, &p, out);
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

/// The leaves of the element `e` (identity `id`) of the associative list at `list`: the
/// element itself and its fields, which `meta` describes.
fn walk_element(id: &str, e: &Value, meta: &PatchMeta, list: &Path, out: &mut Leaves) {
    let ep = list.child(PathElement::Key(id.to_string()));
    out.insert(ep.clone(), None);
    if let Value::Object(em) = e {
        walk_object(em, meta, &ep, out);
    }
}

/// The paths a write changed: what [`leaves`] of `new` has and of `old` has not, what both
/// have with different values, and what only `old` has.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub added: FieldSet,
    pub modified: FieldSet,
    pub removed: FieldSet,
}

impl Changes {
    /// Adds what going from `old` to `new` changes.
    fn compare(&mut self, old: &Leaves, new: &Leaves) {
        for (p, v) in new {
            match old.get(p) {
                None => {
                    self.added.insert(p.clone());
                }
                Some(ov) if ov != v => {
                    self.modified.insert(p.clone());
                }
                _ => {}
            }
        }
        self.removed.extend(old.keys().filter(|p| !new.contains_key(*p)).cloned());
    }
}

/// What comparing `leaves(old)` with `leaves(new)` gives, without flattening both objects:
/// equal subtrees are skipped whole, so a status write compares the unchanged spec once
/// (a `==` that allocates nothing) instead of copying and flattening it twice. Only where
/// the two differ are their leaves listed and compared.
pub fn diff(old: &Value, new: &Value, meta: &PatchMeta) -> Changes {
    let mut out = Changes::default();
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => diff_object(o, n, meta, &Path::default(), &mut out),
        _ => out.compare(&leaves(old, meta), &leaves(new, meta)),
    }
    out
}

fn diff_object(old: &Map<String, Value>, new: &Map<String, Value>, meta: &PatchMeta, path: &Path, out: &mut Changes) {
    let only_old = old.keys().filter(|k| !new.contains_key(*k));
    for k in new.keys().chain(only_old) {
        let (ov, nv) = (old.get(k).filter(|v| !v.is_null()), new.get(k).filter(|v| !v.is_null()));
        if ov == nv {
            continue;
        }
        let fm = meta.field(k);
        match (ov, nv) {
            (Some(Value::Object(o)), Some(Value::Object(n))) if !fm.atomic && !o.is_empty() && !n.is_empty() => {
                diff_object(o, n, &fm.meta, &path.child(PathElement::Field(k.clone())), out);
                continue;
            }
            (Some(Value::Array(o)), Some(Value::Array(n))) if !o.is_empty() && !n.is_empty() => {
                if let ListType::Map(keys) = &fm.list_type {
                    let names = keys.names();
                    if let (Some(oids), Some(nids)) = (list_keys(o, &names), list_keys(n, &names)) {
                        let lp = path.child(PathElement::Field(k.clone()));
                        diff_keyed_list((&oids, o), (&nids, n), &fm.meta, &lp, out);
                        continue;
                    }
                }
            }
            _ => {}
        }
        // Different shapes, atomic values, sets: compare this field's leaves.
        let (mut ol, mut nl) = (Leaves::new(), Leaves::new());
        if let Some(v) = ov {
            walk_field(k, v, meta, path, &mut ol);
        }
        if let Some(v) = nv {
            walk_field(k, v, meta, path, &mut nl);
        }
        out.compare(&ol, &nl);
    }
}

/// [`diff_object`] for an associative list whose elements all have distinct keys on both sides.
fn diff_keyed_list(
    (oids, old): (&[String], &[Value]),
    (nids, new): (&[String], &[Value]),
    meta: &PatchMeta,
    path: &Path,
    out: &mut Changes,
) {
    let element = |id: &str, e: &Value| {
        let mut l = Leaves::new();
        walk_element(id, e, meta, path, &mut l);
        l
    };
    let old_by_id: std::collections::HashMap<&str, &Value> = oids.iter().map(String::as_str).zip(old).collect();
    for (id, n) in nids.iter().zip(new) {
        match (old_by_id.get(id.as_str()).copied(), n) {
            (Some(o), n) if o == n => {}
            (Some(Value::Object(om)), Value::Object(nm)) => {
                diff_object(om, nm, meta, &path.child(PathElement::Key(id.clone())), out);
            }
            (Some(o), n) => out.compare(&element(id, o), &element(id, n)),
            (None, n) => out.compare(&Leaves::new(), &element(id, n)),
        }
    }
    let new_ids: BTreeSet<&String> = nids.iter().collect();
    for (id, o) in oids.iter().zip(old) {
        if !new_ids.contains(id) {
            out.compare(&element(id, o), &Leaves::new());
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

    /// `diff` must say exactly what comparing the two objects' full leaves says.
    #[test]
    fn diff_agrees_with_comparing_all_leaves() {
        let base = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "labels": {"app": "a", "tier": "web"}, "finalizers": ["x", "y"],
                         "annotations": {}},
            "spec": {"containers": [
                {"name": "web", "image": "nginx:1", "ports": [{"containerPort": 80}],
                 "env": [{"name": "A", "value": "1"}], "args": ["--a", "--b"]},
                {"name": "side", "image": "busybox"}
            ], "nodeSelector": {"disk": "ssd"}, "restartPolicy": "Always"},
            "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False"}]}
        });
        let edits: Vec<fn(&mut Value)> = vec![
            |v| v["status"]["phase"] = json!("Running"),
            |v| if let Some(s) = v.pointer_mut("/status/conditions/0/status") { *s = json!("True") },
            |v| if let Some(Value::Array(c)) = v.pointer_mut("/status/conditions") { c.push(json!({"type": "Ready", "status": "True"})) },
            |v| if let Some(i) = v.pointer_mut("/spec/containers/0/image") { *i = json!("nginx:2") },
            |v| if let Some(Value::Array(c)) = v.pointer_mut("/spec/containers") { c.truncate(1) },
            |v| if let Some(a) = v.pointer_mut("/spec/containers/0/args") { *a = json!(["--c"]) },
            |v| if let Some(p) = v.pointer_mut("/spec/containers/0/ports") { *p = json!([{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 81}]) },
            |v| if let Some(n) = v.pointer_mut("/spec/containers/1/name") { *n = json!("web") },
            |v| v["metadata"]["finalizers"] = json!(["y", "z"]),
            |v| v["metadata"]["labels"] = json!({}),
            |v| v["metadata"]["annotations"] = json!({"k": "v"}),
            |v| v["metadata"]["labels"]["app"] = Value::Null,
            |v| v["spec"]["nodeSelector"] = Value::Null,
            |v| v["spec"]["containers"] = json!("not a list"),
            |v| v["status"] = json!({}),
            |v| { v.as_object_mut().unwrap().remove("spec"); },
        ];
        let meta = patch_meta_for("v1", "Pod").unwrap();
        let mut pairs = vec![(base.clone(), base.clone()), (json!({}), base.clone()), (base.clone(), json!({}))];
        for (i, edit) in edits.iter().enumerate() {
            let mut changed = base.clone();
            edit(&mut changed);
            pairs.push((base.clone(), changed.clone()));
            pairs.push((changed.clone(), base.clone()));
            // Two edits at once.
            let mut twice = changed;
            edits[(i + 3) % edits.len()](&mut twice);
            pairs.push((base.clone(), twice));
        }
        for (old, new) in pairs {
            let mut expected = Changes::default();
            expected.compare(&leaves(&old, &meta), &leaves(&new, &meta));
            assert_eq!(diff(&old, &new, &meta), expected, "old {old}\nnew {new}");
        }
    }

    #[test]
    fn keyed_lists_with_duplicates_are_atomic() {
        let pod = json!({"spec": {"containers": [{"name": "a"}, {"name": "a"}]}});
        let l = leaves(&pod, &patch_meta_for("v1", "Pod").unwrap());
        assert_eq!(l.len(), 1);
        assert_eq!(l.keys().next().unwrap().to_string(), ".spec.containers");
    }
}
