//! The part of a stored object a selector reads. A label-selected list of pods only needs
//! `metadata.labels` of each pod, yet decoding the whole object into a `Value` costs far more
//! than matching; [`parse_view`] decodes only the named paths and skips everything else
//! without allocating, so a list can test thousands of stored objects cheaply and copy the
//! matching ones verbatim.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};

/// A set of dotted paths (`metadata.labels`, `spec.nodeName`) as a tree; a path that ends
/// at a node keeps that node's whole value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ViewPaths {
    children: BTreeMap<String, ViewPaths>,
    /// Keep this node's whole value (set by a path ending here).
    whole: bool,
}

impl ViewPaths {
    /// Adds a dotted path; a prefix already kept whole absorbs it.
    pub fn add(&mut self, dotted: &str) {
        let mut node = self;
        for part in dotted.split('.') {
            if node.whole {
                return;
            }
            node = node.children.entry(part.to_string()).or_default();
        }
        node.whole = true;
        node.children.clear();
    }

    /// Builds a tree from several paths.
    pub fn of<'a>(paths: impl IntoIterator<Item = &'a str>) -> ViewPaths {
        let mut v = ViewPaths::default();
        for p in paths {
            v.add(p);
        }
        v
    }
}

/// Decodes only `paths` of the JSON object in `bytes`: the result has the same shape as the
/// full object restricted to those paths (absent paths stay absent), so predicates written
/// for full objects give the same answer on it.
pub fn parse_view(bytes: &[u8], paths: &ViewPaths) -> serde_json::Result<Value> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let v = Seed(paths).deserialize(&mut de)?;
    de.end()?;
    Ok(v)
}

struct Seed<'a>(&'a ViewPaths);

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        if self.0.whole {
            Value::deserialize(d)
        } else {
            d.deserialize_any(Sparse(self.0))
        }
    }
}

/// Visits one level: keeps the keys the tree names, skips the rest. A non-object where the
/// tree expects an object becomes null, which no path lookup can see into either.
struct Sparse<'a>(&'a ViewPaths);

impl<'de> Visitor<'de> for Sparse<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            match self.0.children.get(&key) {
                Some(child) => {
                    let v = map.next_value_seed(Seed(child))?;
                    out.insert(key, v);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Value::Object(out))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Value::Null)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_str<E>(self, _: &str) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keeps_only_the_named_paths() {
        let obj = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "a", "namespace": "ns", "labels": {"app": "x"}, "annotations": {"big": "y"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i"}]},
            "status": {"phase": "Running", "podIPs": [{"ip": "10.42.0.5"}]}
        });
        let bytes = serde_json::to_vec(&obj).unwrap();
        let paths = ViewPaths::of([
            "metadata.labels",
            "metadata.name",
            "spec.nodeName",
            "status.podIPs",
        ]);
        let view = parse_view(&bytes, &paths).unwrap();
        assert_eq!(
            view,
            json!({
                "metadata": {"name": "a", "labels": {"app": "x"}},
                "spec": {"nodeName": "n1"},
                "status": {"podIPs": [{"ip": "10.42.0.5"}]}
            })
        );
    }

    #[test]
    fn a_path_through_a_non_object_reads_as_absent() {
        let bytes = br#"{"spec": "oops", "metadata": {"labels": [1, 2]}}"#;
        let view = parse_view(
            bytes,
            &ViewPaths::of(["spec.nodeName", "metadata.labels.app"]),
        )
        .unwrap();
        assert_eq!(view, json!({"spec": null, "metadata": {"labels": null}}));
    }

    #[test]
    fn a_shorter_path_keeps_the_whole_subtree() {
        let paths = ViewPaths::of(["metadata.labels.app", "metadata"]);
        assert_eq!(paths, ViewPaths::of(["metadata"]));
        let bytes = br#"{"metadata": {"name": "a", "labels": {"app": "x"}}, "spec": {}}"#;
        assert_eq!(
            parse_view(bytes, &paths).unwrap(),
            json!({"metadata": {"name": "a", "labels": {"app": "x"}}})
        );
    }

    #[test]
    fn malformed_json_is_an_error() {
        assert!(parse_view(br#"{"metadata": {"#, &ViewPaths::of(["metadata.name"])).is_err());
        assert!(parse_view(br#"{"a": 1} trailing"#, &ViewPaths::of(["a"])).is_err());
    }
}
