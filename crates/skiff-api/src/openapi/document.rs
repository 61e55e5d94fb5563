//! Assembly of whole documents: the v3 index, per-group-version v3 documents and the v2 document.

use serde_json::{json, Map, Value};

use super::builtin::{self, Builtin};
use super::paths::{self, PathResource, PathsBuilder};
use super::schema::{self, CustomDef, DefinitionSet, Flavor, Gvk};
use super::{builtin_definition_name, ApiResourceDoc};

/// Where a resource's schema comes from.
enum Source<'a> {
    Builtin(&'static Builtin),
    Custom(&'a Value),
    Unknown,
}

/// A resource with its schema source and definition names worked out.
struct Resolved<'a> {
    doc: &'a ApiResourceDoc,
    source: Source<'a>,
    definition: Option<String>,
    list_definition: Option<String>,
}

fn resolve<'a>(doc: &'a ApiResourceDoc, customs: &'a [(String, Value)]) -> Resolved<'a> {
    let name = doc
        .definition
        .clone()
        .or_else(|| builtin_definition_name(&doc.group, &doc.version, &doc.kind));
    let source = match &name {
        // A schema the caller supplies wins, so a CRD may reuse any name it likes.
        Some(n) => match customs.iter().find(|(c, _)| c == n) {
            Some((_, schema)) => Source::Custom(schema),
            None => builtin::find_by_name(n).map_or(Source::Unknown, Source::Builtin),
        },
        None => Source::Unknown,
    };
    let listable = doc.verbs.iter().any(|v| v == "list");
    let list_definition = match (&source, &name) {
        (Source::Builtin(b), Some(n)) if listable && b.list_kind.is_some() => {
            Some(format!("{n}List"))
        }
        (Source::Custom(_), Some(n)) if listable => Some(format!("{n}List")),
        _ => None,
    };
    let definition = match source {
        Source::Unknown => None,
        _ => name,
    };
    Resolved {
        doc,
        source,
        definition,
        list_definition,
    }
}

/// Built-in kinds that a subresource's operations send or return.
fn subresource_kind(sub: &str) -> Option<&'static Builtin> {
    match sub {
        "scale" => builtin::find("autoscaling", "v1", "Scale"),
        "binding" => builtin::find("", "v1", "Binding"),
        "eviction" => builtin::find("policy", "v1", "Eviction"),
        "token" => builtin::find("authentication.k8s.io", "v1", "TokenRequest"),
        _ => None,
    }
}

/// Collects definitions and paths for a set of resolved resources.
fn build(
    flavor: Flavor,
    resolved: &[Resolved<'_>],
    meta_group_versions: Vec<(String, String)>,
) -> (Map<String, Value>, Value) {
    let mut set = DefinitionSet {
        builtins: Vec::new(),
        builtin_lists: Vec::new(),
        customs: Vec::new(),
        meta_group_versions,
    };
    let mut paths = PathsBuilder::new(flavor);
    for r in resolved {
        let d = r.doc;
        match r.source {
            Source::Builtin(b) => {
                set.builtins.push(b);
                if let (Some(list_kind), Some(_)) = (b.list_kind, &r.list_definition) {
                    set.builtin_lists
                        .push((b, Gvk::new(b.group, b.version, list_kind)));
                }
            }
            Source::Custom(schema) => set.customs.push(CustomDef {
                name: r.definition.as_deref().unwrap_or_default(),
                schema,
                gvk: Gvk::new(&d.group, &d.version, &d.kind),
                list_kind: r
                    .list_definition
                    .as_ref()
                    .map(|_| format!("{}List", d.kind)),
            }),
            Source::Unknown => {}
        }
        for sub in &d.subresources {
            if let Some(b) = subresource_kind(sub) {
                set.builtins.push(b);
            }
        }
        paths.resource(&PathResource {
            group: &d.group,
            version: &d.version,
            kind: &d.kind,
            plural: &d.plural,
            namespaced: d.namespaced,
            verbs: &d.verbs,
            subresources: &d.subresources,
            definition: r.definition.as_deref(),
            list_definition: r.list_definition.as_deref(),
            strategic: matches!(r.source, Source::Builtin(_)),
        });
    }
    (schema::definitions(flavor, &set), paths.finish())
}

fn bearer_scheme() -> Value {
    json!({
        "type": "apiKey",
        "name": "authorization",
        "in": "header",
        "description": "Bearer Token authentication",
    })
}

/// See [`super::v3_document`].
pub(crate) fn v3_document(
    group: &str,
    version: &str,
    resources: &[ApiResourceDoc],
    custom_schemas: &[(String, Value)],
) -> Value {
    let resolved: Vec<Resolved<'_>> = resources
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .map(|r| resolve(r, custom_schemas))
        .collect();
    let mut gvs = vec![(group.to_owned(), version.to_owned())];
    if !group.is_empty() {
        gvs.insert(0, (String::new(), "v1".to_owned()));
    }
    let (defs, paths) = build(Flavor::V3, &resolved, gvs);
    json!({
        "openapi": "3.0.0",
        "info": { "title": "Kubernetes", "version": "unversioned" },
        "paths": paths,
        "components": {
            "schemas": defs,
            "parameters": paths::shared_parameters(Flavor::V3),
            "securitySchemes": { "BearerToken": bearer_scheme() },
        },
        "security": [{ "BearerToken": [] }],
    })
}

/// See [`super::v2_document`].
pub(crate) fn v2_document(
    resources: &[ApiResourceDoc],
    custom_schemas: &[(String, Value)],
    version: &str,
) -> Value {
    let resolved: Vec<Resolved<'_>> = resources
        .iter()
        .map(|r| resolve(r, custom_schemas))
        .collect();
    let mut gvs: Vec<(String, String)> = vec![(String::new(), "v1".to_owned())];
    for r in resources {
        if !gvs.iter().any(|(g, v)| *g == r.group && *v == r.version) {
            gvs.push((r.group.clone(), r.version.clone()));
        }
    }
    let (defs, paths) = build(Flavor::V2, &resolved, gvs);
    let mut doc = json!({
        "swagger": "2.0",
        "info": { "title": "Kubernetes", "version": version },
        "paths": paths,
        "definitions": defs,
        "parameters": paths::shared_parameters(Flavor::V2),
        "securityDefinitions": { "BearerToken": bearer_scheme() },
        "security": [{ "BearerToken": [] }],
    });
    for (key, value) in paths::v2_globals() {
        doc[key] = value;
    }
    doc
}

/// See [`super::v3_index`].
pub(crate) fn v3_index(group_versions: &[(String, String)]) -> Value {
    let mut paths = Map::new();
    for (path, hash) in group_versions {
        let path = path.trim_matches('/');
        paths.insert(
            path.to_owned(),
            json!({ "serverRelativeURL": format!("/openapi/v3/{path}?hash={hash}") }),
        );
    }
    json!({ "paths": paths })
}
