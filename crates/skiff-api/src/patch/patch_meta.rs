//! Patch metadata: which lists merge by which key, which are sets, which maps are atomic.
//!
//! Upstream reads these facts from Go struct tags (`patchStrategy`, `patchMergeKey`) for
//! strategic merge patch and from the OpenAPI extensions (`x-kubernetes-list-type`,
//! `x-kubernetes-list-map-keys`, `x-kubernetes-map-type`) for server-side apply. The schemas
//! that k8s-openapi ships carry neither, so skiff keeps a hand-written table of the facts for
//! every built-in kind (see `tables.rs`). A [`PatchMeta`] is a cursor into that type graph;
//! walking into a field it does not know yields the "deduced" behaviour upstream uses for
//! schemaless data: maps merge key by key and lists are replaced whole.

use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::schema_meta::SchemaNode;
use super::tables;

/// How strategic merge patch combines a field, from upstream's `patchStrategy` tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchStrategy {
    /// No tag: maps merge recursively, lists are replaced.
    Default,
    /// `patchStrategy:"merge"`: lists merge by merge key, or as a set for primitives.
    Merge,
    /// `patchStrategy:"merge,retainKeys"`: merge, and elements honour `$retainKeys`.
    MergeRetainKeys,
    /// `patchStrategy:"retainKeys"` on a struct field (e.g. a Deployment's `strategy`).
    RetainKeys,
    /// `patchStrategy:"replace"`: the patch value replaces the field whole.
    Replace,
}

impl PatchStrategy {
    /// Whether lists with this strategy merge instead of being replaced.
    pub fn merges_lists(self) -> bool {
        matches!(self, PatchStrategy::Merge | PatchStrategy::MergeRetainKeys)
    }
}

/// How server-side apply treats a list, from upstream's `x-kubernetes-list-type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListType {
    /// The list is one value, owned and replaced as a whole.
    Atomic,
    /// A list of distinct primitives; each value is owned separately.
    Set,
    /// A list of objects identified by these key fields; each element is owned separately.
    Map(Keys),
}

/// The key fields of an associative list (`x-kubernetes-list-map-keys`), either from the
/// built-in table or from a custom resource's schema.
#[derive(Debug, Clone)]
pub struct Keys(KeysInner);

#[derive(Debug, Clone)]
enum KeysInner {
    Fixed(&'static [&'static str]),
    Owned(Arc<[String]>),
}

impl Keys {
    pub(crate) const fn fixed(keys: &'static [&'static str]) -> Keys {
        Keys(KeysInner::Fixed(keys))
    }

    pub(crate) fn owned(keys: Vec<String>) -> Keys {
        Keys(KeysInner::Owned(keys.into()))
    }

    /// The key field names, in declaration order.
    pub fn names(&self) -> Vec<&str> {
        match &self.0 {
            KeysInner::Fixed(k) => k.to_vec(),
            KeysInner::Owned(k) => k.iter().map(String::as_str).collect(),
        }
    }
}

impl PartialEq for Keys {
    fn eq(&self, other: &Keys) -> bool {
        self.names() == other.names()
    }
}

impl Eq for Keys {}

/// A node of the hand-written type graph: the fields of one API struct that have facts
/// worth recording. Fields not listed behave as deduced.
#[derive(Debug)]
pub(crate) struct TypeDef {
    pub(crate) fields: &'static [FieldDef],
}

/// Facts about one field of a [`TypeDef`].
#[derive(Debug)]
pub(crate) struct FieldDef {
    pub(crate) name: &'static str,
    pub(crate) strategy: PatchStrategy,
    pub(crate) merge_key: Option<&'static str>,
    /// List type for apply; `None` means atomic (or not a list).
    pub(crate) list_type: Option<ListType>,
    /// `x-kubernetes-map-type: atomic` maps and `x-kubernetes-map-type: atomic` structs.
    pub(crate) atomic: bool,
    /// Type of the field's value, of the list elements, or of the map values.
    pub(crate) ty: Option<&'static TypeDef>,
}

impl FieldDef {
    /// A plain struct-valued field whose own fields are described by `ty`.
    pub(crate) const fn obj(name: &'static str, ty: &'static TypeDef) -> FieldDef {
        FieldDef {
            name,
            strategy: PatchStrategy::Default,
            merge_key: None,
            list_type: None,
            atomic: false,
            ty: Some(ty),
        }
    }

    /// A list of objects merged element-wise: strategic merge patch matches elements by the
    /// first of `keys` (the `patchMergeKey`), apply by all of them (`x-kubernetes-list-map-keys`).
    pub(crate) const fn keyed(
        name: &'static str,
        keys: &'static [&'static str],
        ty: Option<&'static TypeDef>,
    ) -> FieldDef {
        FieldDef {
            name,
            strategy: PatchStrategy::Merge,
            merge_key: Some(keys[0]),
            list_type: Some(ListType::Map(Keys::fixed(keys))),
            atomic: false,
            ty,
        }
    }

    /// A list that apply keys by `keys` but strategic merge patch replaces (no patch tags).
    pub(crate) const fn apply_keyed(
        name: &'static str,
        keys: &'static [&'static str],
        ty: Option<&'static TypeDef>,
    ) -> FieldDef {
        FieldDef {
            name,
            strategy: PatchStrategy::Default,
            merge_key: None,
            list_type: Some(ListType::Map(Keys::fixed(keys))),
            atomic: false,
            ty,
        }
    }

    /// A list of primitives merged as a set.
    pub(crate) const fn set(name: &'static str) -> FieldDef {
        FieldDef {
            name,
            strategy: PatchStrategy::Merge,
            merge_key: None,
            list_type: Some(ListType::Set),
            atomic: false,
            ty: None,
        }
    }

    /// A map or struct that apply treats as one value.
    pub(crate) const fn atomic(name: &'static str) -> FieldDef {
        FieldDef {
            name,
            strategy: PatchStrategy::Default,
            merge_key: None,
            list_type: None,
            atomic: true,
            ty: None,
        }
    }

    /// Sets the strategic merge strategy.
    pub(crate) const fn with_strategy(mut self, strategy: PatchStrategy) -> FieldDef {
        self.strategy = strategy;
        self
    }
}

/// Patch metadata for one position in an object: the type found there, if known.
///
/// `PatchMeta::deduced()` describes data without a schema (unknown fields, custom resources
/// without a structural schema): every map merges and every list is atomic. Cloning is cheap.
#[derive(Debug, Clone)]
pub struct PatchMeta {
    node: Node,
}

#[derive(Debug, Clone)]
enum Node {
    Deduced,
    Table(&'static TypeDef),
    Schema(Arc<SchemaNode>),
}

/// Patch metadata for one field of the current [`PatchMeta`] position.
#[derive(Debug, Clone)]
pub struct FieldMeta {
    /// Strategic merge patch strategy.
    pub strategy: PatchStrategy,
    /// Strategic merge key of a list of objects.
    pub merge_key: Option<&'static str>,
    /// Apply list type.
    pub list_type: ListType,
    /// Whether apply treats the value (map or struct) as one atomic value.
    pub atomic: bool,
    /// Metadata for the field's value, list elements or map values.
    pub meta: PatchMeta,
}

impl FieldMeta {
    /// Facts for a field nothing is known about.
    pub(crate) fn deduced() -> FieldMeta {
        FieldMeta {
            strategy: PatchStrategy::Default,
            merge_key: None,
            list_type: ListType::Atomic,
            atomic: false,
            meta: PatchMeta::deduced(),
        }
    }
}

impl PatchMeta {
    /// Metadata for schemaless data: maps merge, lists are atomic.
    pub fn deduced() -> PatchMeta {
        PatchMeta {
            node: Node::Deduced,
        }
    }

    pub(crate) const fn of(ty: &'static TypeDef) -> PatchMeta {
        PatchMeta {
            node: Node::Table(ty),
        }
    }

    pub(crate) fn schema(node: Arc<SchemaNode>) -> PatchMeta {
        PatchMeta {
            node: Node::Schema(node),
        }
    }

    /// Whether this position has a known type (as opposed to deduced).
    pub fn is_known(&self) -> bool {
        !matches!(self.node, Node::Deduced)
    }

    /// The fields with recorded facts at this position, in table order; the OpenAPI
    /// generator walks these to publish upstream's vendor extensions.
    pub fn known_fields(&self) -> Vec<(String, FieldMeta)> {
        match &self.node {
            Node::Deduced => Vec::new(),
            Node::Table(t) => t
                .fields
                .iter()
                .map(|f| (f.name.to_string(), self.field(f.name)))
                .collect(),
            Node::Schema(s) => s.known_fields(),
        }
    }

    /// Looks up the facts for field `name` of the object at this position.
    pub fn field(&self, name: &str) -> FieldMeta {
        match &self.node {
            Node::Deduced => FieldMeta::deduced(),
            Node::Schema(s) => s.field(name),
            Node::Table(t) => match t.fields.iter().find(|f| f.name == name) {
                None => FieldMeta::deduced(),
                Some(f) => FieldMeta {
                    strategy: f.strategy,
                    merge_key: f.merge_key,
                    list_type: f.list_type.clone().unwrap_or(ListType::Atomic),
                    atomic: f.atomic,
                    meta: match f.ty {
                        Some(ty) => PatchMeta::of(ty),
                        None => PatchMeta::deduced(),
                    },
                },
            },
        }
    }
}

impl FieldMeta {
    /// The OpenAPI vendor extensions upstream publishes for this field
    /// (`x-kubernetes-patch-strategy`, `x-kubernetes-patch-merge-key`,
    /// `x-kubernetes-list-type`, `x-kubernetes-list-map-keys`, `x-kubernetes-map-type`);
    /// kubectl reads them to build strategic merge patches.
    pub fn openapi_extensions(&self) -> Map<String, Value> {
        let mut m = Map::new();
        let strategy = match self.strategy {
            PatchStrategy::Default => None,
            PatchStrategy::Merge => Some("merge"),
            PatchStrategy::MergeRetainKeys => Some("merge,retainKeys"),
            PatchStrategy::RetainKeys => Some("retainKeys"),
            PatchStrategy::Replace => Some("replace"),
        };
        if let Some(s) = strategy {
            m.insert("x-kubernetes-patch-strategy".into(), json!(s));
        }
        if let Some(k) = self.merge_key {
            m.insert("x-kubernetes-patch-merge-key".into(), json!(k));
        }
        match &self.list_type {
            ListType::Set => {
                m.insert("x-kubernetes-list-type".into(), json!("set"));
            }
            ListType::Map(keys) => {
                m.insert("x-kubernetes-list-type".into(), json!("map"));
                m.insert("x-kubernetes-list-map-keys".into(), json!(keys.names()));
            }
            // Atomic is also what an unknown field reports, so it is not asserted here.
            ListType::Atomic => {}
        }
        if self.atomic {
            m.insert("x-kubernetes-map-type".into(), json!("atomic"));
        }
        m
    }
}

/// Patch metadata for a built-in kind, or `None` when the kind is not built in (custom
/// resources), in which case strategic merge patch is not supported (415 upstream).
pub fn patch_meta_for(api_version: &str, kind: &str) -> Option<PatchMeta> {
    tables::kind_type(api_version, kind).map(PatchMeta::of)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(keys: &'static [&'static str]) -> ListType {
        ListType::Map(Keys::fixed(keys))
    }

    fn path(meta: &PatchMeta, fields: &[&str]) -> FieldMeta {
        let (last, parents) = fields.split_last().unwrap();
        let mut m = meta.clone();
        for f in parents {
            m = m.field(f).meta;
        }
        m.field(last)
    }

    #[test]
    fn deployment_facts() {
        let d = patch_meta_for("apps/v1", "Deployment").unwrap();
        let c = path(&d, &["spec", "template", "spec", "containers"]);
        assert_eq!(c.strategy, PatchStrategy::Merge);
        assert_eq!(c.merge_key, Some("name"));
        assert_eq!(c.list_type, map(&["name"]));
        let ports = c.meta.field("ports");
        assert_eq!(ports.merge_key, Some("containerPort"));
        assert_eq!(ports.list_type, map(&["containerPort", "protocol"]));
        assert_eq!(c.meta.field("env").merge_key, Some("name"));
        assert_eq!(c.meta.field("volumeMounts").merge_key, Some("mountPath"));
        assert_eq!(c.meta.field("args").list_type, ListType::Atomic);
        let vols = path(&d, &["spec", "template", "spec", "volumes"]);
        assert_eq!(vols.strategy, PatchStrategy::MergeRetainKeys);
        let fin = path(&d, &["metadata", "finalizers"]);
        assert_eq!(
            (fin.strategy, fin.list_type),
            (PatchStrategy::Merge, ListType::Set)
        );
        assert_eq!(
            path(&d, &["metadata", "ownerReferences"]).merge_key,
            Some("uid")
        );
        assert_eq!(path(&d, &["status", "conditions"]).merge_key, Some("type"));
        assert!(path(&d, &["spec", "selector"]).atomic);
        assert_eq!(
            path(&d, &["spec", "strategy"]).strategy,
            PatchStrategy::RetainKeys
        );
    }

    #[test]
    fn openapi_extensions_for_kubectl() {
        let pod = patch_meta_for("v1", "Pod").unwrap();
        let spec = pod.field("spec").meta;
        let ext = spec.field("containers").openapi_extensions();
        assert_eq!(ext["x-kubernetes-patch-strategy"], "merge");
        assert_eq!(ext["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(ext["x-kubernetes-list-type"], "map");
        assert_eq!(
            ext["x-kubernetes-list-map-keys"],
            serde_json::json!(["name"])
        );
        let vols = spec.field("volumes").openapi_extensions();
        assert_eq!(vols["x-kubernetes-patch-strategy"], "merge,retainKeys");
        assert_eq!(
            spec.field("nodeSelector").openapi_extensions()["x-kubernetes-map-type"],
            "atomic"
        );
        assert!(spec.field("hostname").openapi_extensions().is_empty());
        let names: Vec<String> = spec.known_fields().into_iter().map(|(n, _)| n).collect();
        assert!(names.iter().any(|n| n == "topologySpreadConstraints"));
        assert!(PatchMeta::deduced().known_fields().is_empty());
    }

    #[test]
    fn other_kinds() {
        let svc = patch_meta_for("v1", "Service").unwrap();
        let ports = path(&svc, &["spec", "ports"]);
        assert_eq!(ports.merge_key, Some("port"));
        assert_eq!(ports.list_type, map(&["port", "protocol"]));
        let pod = patch_meta_for("v1", "Pod").unwrap();
        assert_eq!(path(&pod, &["spec", "hostAliases"]).merge_key, Some("ip"));
        assert_eq!(
            path(&pod, &["spec", "topologySpreadConstraints"]).merge_key,
            Some("topologyKey")
        );
        assert_eq!(
            path(&pod, &["spec", "imagePullSecrets"]).merge_key,
            Some("name")
        );
        assert_eq!(
            path(&pod, &["spec", "ephemeralContainers"]).merge_key,
            Some("name")
        );
        assert_eq!(
            path(&pod, &["spec", "tolerations"]).list_type,
            ListType::Atomic
        );
        let cj = patch_meta_for("batch/v1", "CronJob").unwrap();
        let c = path(
            &cj,
            &[
                "spec",
                "jobTemplate",
                "spec",
                "template",
                "spec",
                "initContainers",
            ],
        );
        assert_eq!(c.merge_key, Some("name"));
        assert!(patch_meta_for("v1", "ConfigMap").is_some());
        let job = patch_meta_for("batch/v1", "Job").unwrap();
        let conds = path(&job, &["status", "conditions"]);
        assert_eq!(
            (conds.merge_key, conds.list_type),
            (Some("type"), ListType::Atomic)
        );
        assert!(patch_meta_for("example.com/v1", "Widget").is_none());
        let unknown = path(&pod, &["spec", "madeUp", "deeper"]);
        assert_eq!(unknown.list_type, ListType::Atomic);
        assert!(!unknown.meta.is_known());
    }
}
