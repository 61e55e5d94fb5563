//! Turns `k8s-openapi`'s `schemars` schemas (and CRD schemas) into OpenAPI definitions.
//!
//! The definitions are generated per document from the kinds the document needs, so a
//! group-version document holds only what its resources reach and nothing stays resident between
//! requests: the schema text lives in `k8s-openapi`'s code, not on the heap.

use std::collections::HashMap;

use schemars::generate::SchemaSettings;
use schemars::SchemaGenerator;
use serde_json::{json, Map, Value};

use super::builtin::{self, Builtin};
use super::extensions;

/// Which OpenAPI dialect a document is written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flavor {
    /// Swagger 2.0 (`/openapi/v2`).
    V2,
    /// OpenAPI 3.0 (`/openapi/v3/...`).
    V3,
}

impl Flavor {
    /// Prefix of a reference to a schema definition.
    pub(crate) fn schema_prefix(self) -> &'static str {
        match self {
            Flavor::V2 => "#/definitions/",
            Flavor::V3 => "#/components/schemas/",
        }
    }

    /// A `$ref` to the named definition.
    pub(crate) fn schema_ref(self, name: &str) -> Value {
        json!({ "$ref": format!("{}{}", self.schema_prefix(), name) })
    }
}

/// Upstream's name for the definition of object metadata.
pub(crate) const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
/// Upstream's name for the definition of list metadata.
pub(crate) const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";
/// Upstream's name for the `Status` definition.
pub(crate) const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
/// Upstream's name for the `DeleteOptions` definition.
pub(crate) const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
/// Upstream's name for the `Patch` definition.
pub(crate) const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";
/// Upstream's name for the `WatchEvent` definition.
pub(crate) const WATCH_EVENT: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent";

/// A group/version/kind, as written into `x-kubernetes-group-version-kind`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Gvk {
    pub group: String,
    pub version: String,
    pub kind: String,
}

impl Gvk {
    pub(crate) fn new(group: &str, version: &str, kind: &str) -> Self {
        Gvk {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
        }
    }

    /// The extension value; key order follows upstream (group, kind, version).
    pub(crate) fn to_value(&self) -> Value {
        json!({ "group": self.group, "kind": self.kind, "version": self.version })
    }
}

/// A custom resource's schema to be turned into a definition.
pub(crate) struct CustomDef<'a> {
    /// Definition name chosen by the caller.
    pub name: &'a str,
    /// The CRD version's `openAPIV3Schema`.
    pub schema: &'a Value,
    /// The kind it describes.
    pub gvk: Gvk,
    /// Kind of its list, when the resource can be listed.
    pub list_kind: Option<String>,
}

/// Everything one document's definitions are generated from.
pub(crate) struct DefinitionSet<'a> {
    /// Built-in kinds whose schemas (and their references) are needed.
    pub builtins: Vec<&'static Builtin>,
    /// Built-in kinds whose list definitions are needed, with the list kind's GVK.
    pub builtin_lists: Vec<(&'static Builtin, Gvk)>,
    /// Custom resource schemas.
    pub customs: Vec<CustomDef<'a>>,
    /// Group-versions whose `DeleteOptions`/`WatchEvent` kinds the document should name.
    pub meta_group_versions: Vec<(String, String)>,
}

pub(crate) fn generator(flavor: Flavor) -> SchemaGenerator {
    let mut settings = SchemaSettings::draft07();
    settings.definitions_path = match flavor {
        Flavor::V2 => "#/definitions".into(),
        Flavor::V3 => "#/components/schemas".into(),
    };
    SchemaGenerator::new(settings)
}

/// Builds the definitions map for a document.
pub(crate) fn definitions(flavor: Flavor, set: &DefinitionSet<'_>) -> Map<String, Value> {
    let mut gen = generator(flavor);
    builtin::add_common(&mut gen);
    gen.subschema_for::<k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta>();
    if !set.customs.is_empty() {
        gen.subschema_for::<k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>();
    }
    for b in &set.builtins {
        (b.add)(&mut gen);
    }
    let mut defs = gen.take_definitions(false);

    // Every built-in kind present gets its GVK, whether it was asked for or only referenced
    // (a Scale reached from a deployments/scale operation is still a kind kubectl may look up).
    let gvks: HashMap<String, Gvk> = builtin::all()
        .iter()
        .map(|b| {
            (
                (b.name)().into_owned(),
                Gvk::new(b.group, b.version, b.kind),
            )
        })
        .collect();
    for (name, def) in defs.iter_mut() {
        let Value::Object(obj) = def else { continue };
        extensions::apply(name, obj);
        let top_level = gvks.get(name);
        extensions::fix_required(name, top_level.is_some(), obj);
        if let Some(gvk) = top_level {
            obj.insert(
                "x-kubernetes-group-version-kind".into(),
                Value::Array(vec![gvk.to_value()]),
            );
        }
        if flavor == Flavor::V2 {
            // The JSONSchemaPropsOr* unions; swagger 2.0 cannot say "one of", so they stay
            // untyped there, which every value satisfies.
            obj.shift_remove("oneOf");
        }
    }
    meta_kinds(&mut defs, &set.meta_group_versions);

    for (b, list_gvk) in &set.builtin_lists {
        let item = (b.name)();
        defs.insert(
            format!("{item}List"),
            list_definition(flavor, &item, list_gvk),
        );
    }
    for c in &set.customs {
        defs.insert(c.name.to_owned(), custom_definition(flavor, c));
        if let Some(list_kind) = &c.list_kind {
            let gvk = Gvk::new(&c.gvk.group, &c.gvk.version, list_kind);
            defs.insert(
                format!("{}List", c.name),
                list_definition(flavor, c.name, &gvk),
            );
        }
    }

    if flavor == Flavor::V3 {
        for def in defs.values_mut() {
            wrap_ref_siblings(def);
        }
    }
    defs
}

/// `DeleteOptions` and `WatchEvent` are kinds of every group-version (clients send and receive
/// them with each group's apiVersion), and `Status` is a core kind.
fn meta_kinds(defs: &mut Map<String, Value>, group_versions: &[(String, String)]) {
    for (name, kind) in [
        (DELETE_OPTIONS, "DeleteOptions"),
        (WATCH_EVENT, "WatchEvent"),
    ] {
        let Some(Value::Object(obj)) = defs.get_mut(name) else {
            continue;
        };
        let list: Vec<Value> = group_versions
            .iter()
            .map(|(g, v)| Gvk::new(g, v, kind).to_value())
            .collect();
        obj.insert("x-kubernetes-group-version-kind".into(), Value::Array(list));
    }
}

fn string_prop(description: &str) -> Value {
    json!({ "description": description, "type": "string" })
}

const API_VERSION_DOC: &str = "The versioned schema of this object, as group/version (or just the version for the core group).";
const KIND_DOC: &str = "The REST resource this object represents, in CamelCase. Cannot be updated.";

/// A property that refers to a definition and documents itself; v3 wrapping happens later.
fn described_ref(flavor: Flavor, name: &str, description: &str) -> Value {
    let mut v = flavor.schema_ref(name);
    v["description"] = json!(description);
    v
}

/// The definition of `<Kind>List`; `k8s-openapi` models lists generically, without a schema.
pub(crate) fn list_definition(flavor: Flavor, item: &str, gvk: &Gvk) -> Value {
    let item_kind = gvk.kind.strip_suffix("List").unwrap_or(&gvk.kind);
    json!({
        "description": format!("{} is a list of {} objects.", gvk.kind, item_kind),
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": string_prop(API_VERSION_DOC),
            "items": {
                "description": format!("The {item_kind} objects in the list."),
                "type": "array",
                "items": flavor.schema_ref(item),
            },
            "kind": string_prop(KIND_DOC),
            "metadata": described_ref(flavor, LIST_META, "Standard list metadata."),
        },
        "x-kubernetes-group-version-kind": [gvk.to_value()],
    })
}

/// A CRD's schema as a top-level definition: the standard `apiVersion`/`kind`/`metadata`
/// properties replace whatever the CRD declares for them, as the API server enforces them anyway.
fn custom_definition(flavor: Flavor, c: &CustomDef<'_>) -> Value {
    let mut schema = match c.schema {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    if flavor == Flavor::V2 {
        strip_for_v2(&mut schema);
    }
    schema
        .entry("type")
        .or_insert_with(|| Value::String("object".into()));
    let props = schema
        .entry("properties")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(props) = props {
        props.insert("apiVersion".into(), string_prop(API_VERSION_DOC));
        props.insert("kind".into(), string_prop(KIND_DOC));
        props.insert(
            "metadata".into(),
            described_ref(flavor, OBJECT_META, "Standard object's metadata."),
        );
    }
    schema.insert(
        "x-kubernetes-group-version-kind".into(),
        Value::Array(vec![c.gvk.to_value()]),
    );
    Value::Object(schema)
}

/// Swagger 2.0 has no `nullable`, `oneOf`, `anyOf` or `not`, and clients validating against v2
/// choke on them (and on `allOf`, which in a CRD only adds validations); int-or-string fields lose
/// their type so either form validates.
fn strip_for_v2(schema: &mut Map<String, Value>) {
    for key in [
        "nullable",
        "oneOf",
        "anyOf",
        "allOf",
        "not",
        "x-kubernetes-validations",
    ] {
        schema.shift_remove(key);
    }
    if schema.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
        schema.shift_remove("type");
    }
    for (key, child) in schema.iter_mut() {
        match (key.as_str(), child) {
            ("properties" | "patternProperties" | "definitions", Value::Object(m)) => {
                for sub in m.values_mut() {
                    if let Value::Object(s) = sub {
                        strip_for_v2(s);
                    }
                }
            }
            ("items" | "additionalProperties", Value::Object(s)) => strip_for_v2(s),
            _ => {}
        }
    }
}

/// OpenAPI 3.0 ignores keywords next to `$ref`; upstream moves the reference into a one-element
/// `allOf` so the property keeps its own description, and kubectl's templates expect that shape.
fn wrap_ref_siblings(value: &mut Value) {
    match value {
        Value::Object(obj) => {
            if obj.len() > 1 {
                if let Some(r) = obj.shift_remove("$ref") {
                    let mut wrapped = Map::with_capacity(obj.len() + 1);
                    wrapped.insert("allOf".into(), json!([{ "$ref": r }]));
                    wrapped.append(obj);
                    *obj = wrapped;
                    return;
                }
            }
            for child in obj.values_mut() {
                wrap_ref_siblings(child);
            }
        }
        Value::Array(list) => list.iter_mut().for_each(wrap_ref_siblings),
        _ => {}
    }
}
