//! Unit tests for the OpenAPI documents: structure, reference integrity and the lookups kubectl
//! performs on them.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::*;

fn res(
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
    namespaced: bool,
    subresources: &[&str],
) -> ApiResourceDoc {
    ApiResourceDoc {
        group: group.into(),
        version: version.into(),
        kind: kind.into(),
        plural: plural.into(),
        namespaced,
        verbs: [
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ]
        .map(String::from)
        .to_vec(),
        subresources: subresources.iter().map(|s| (*s).to_owned()).collect(),
        definition: None,
    }
}

fn apps_v1() -> Vec<ApiResourceDoc> {
    vec![
        res(
            "apps",
            "v1",
            "Deployment",
            "deployments",
            true,
            &["status", "scale"],
        ),
        res(
            "apps",
            "v1",
            "StatefulSet",
            "statefulsets",
            true,
            &["status", "scale"],
        ),
        res("apps", "v1", "DaemonSet", "daemonsets", true, &["status"]),
        res(
            "apps",
            "v1",
            "ReplicaSet",
            "replicasets",
            true,
            &["status", "scale"],
        ),
        res(
            "apps",
            "v1",
            "ControllerRevision",
            "controllerrevisions",
            true,
            &[],
        ),
    ]
}

fn core_v1() -> Vec<ApiResourceDoc> {
    vec![
        res(
            "",
            "v1",
            "Pod",
            "pods",
            true,
            &[
                "status",
                "log",
                "exec",
                "attach",
                "portforward",
                "binding",
                "eviction",
                "ephemeralcontainers",
                "resize",
                "proxy",
            ],
        ),
        res("", "v1", "Service", "services", true, &["status", "proxy"]),
        res("", "v1", "ConfigMap", "configmaps", true, &[]),
        res("", "v1", "Secret", "secrets", true, &[]),
        res(
            "",
            "v1",
            "Namespace",
            "namespaces",
            false,
            &["status", "finalize"],
        ),
        res("", "v1", "Node", "nodes", false, &["status", "proxy"]),
        res(
            "",
            "v1",
            "ServiceAccount",
            "serviceaccounts",
            true,
            &["token"],
        ),
        res(
            "",
            "v1",
            "PersistentVolumeClaim",
            "persistentvolumeclaims",
            true,
            &["status"],
        ),
        res("", "v1", "Event", "events", true, &[]),
    ]
}

fn widget_crd() -> (ApiResourceDoc, (String, Value)) {
    let mut r = res(
        "example.com",
        "v1",
        "Widget",
        "widgets",
        true,
        &["status", "scale"],
    );
    r.definition = Some("com.example.v1.Widget".into());
    let schema = json!({
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "properties": {
                    "size": { "type": "integer", "nullable": true },
                    "port": { "x-kubernetes-int-or-string": true, "anyOf": [{ "type": "integer" }, { "type": "string" }] },
                },
            },
            "metadata": { "type": "object" },
        },
    });
    (r, ("com.example.v1.Widget".into(), schema))
}

/// Every `$ref` in `doc`, as written.
fn refs(doc: &Value, out: &mut BTreeSet<String>) {
    match doc {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                out.insert(r.clone());
            }
            m.values().for_each(|v| refs(v, out));
        }
        Value::Array(l) => l.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

/// Resolves a local JSON pointer reference (`#/a/b`) in `doc`.
fn resolve<'a>(doc: &'a Value, reference: &str) -> Option<&'a Value> {
    let pointer = reference.strip_prefix('#')?;
    doc.pointer(pointer)
}

fn assert_refs_resolve(doc: &Value, prefixes: &[&str]) {
    let mut all = BTreeSet::new();
    refs(doc, &mut all);
    assert!(!all.is_empty(), "document has no references at all");
    for r in &all {
        assert!(
            prefixes.iter().any(|p| r.starts_with(p)),
            "reference {r} uses the wrong prefix"
        );
        assert!(resolve(doc, r).is_some(), "reference {r} does not resolve");
    }
}

fn schemas(doc: &Value) -> &serde_json::Map<String, Value> {
    doc["components"]["schemas"]
        .as_object()
        .expect("components.schemas")
}

/// kubectl's lookup: the PATCH operation whose GVK extension names the kind.
fn patch_op<'a>(doc: &'a Value, group: &str, version: &str, kind: &str) -> Option<&'a Value> {
    let want = json!({ "group": group, "kind": kind, "version": version });
    doc["paths"]
        .as_object()?
        .values()
        .filter_map(|item| item.get("patch"))
        .find(|op| op["x-kubernetes-group-version-kind"] == want)
}

/// kubectl's lookup: the schema whose GVK list names the kind.
fn kind_schema<'a>(
    defs: &'a serde_json::Map<String, Value>,
    g: &str,
    v: &str,
    k: &str,
) -> Option<&'a Value> {
    let want = json!({ "group": g, "kind": k, "version": v });
    defs.values().find(|s| {
        s["x-kubernetes-group-version-kind"]
            .as_array()
            .is_some_and(|l| l.contains(&want))
    })
}

#[test]
fn v3_refs_resolve_for_apps_core_and_crds() {
    let apps = v3_document("apps", "v1", &apps_v1(), &[]);
    assert_refs_resolve(
        &apps,
        &["#/components/schemas/", "#/components/parameters/"],
    );
    let core = v3_document("", "v1", &core_v1(), &[]);
    assert_refs_resolve(
        &core,
        &["#/components/schemas/", "#/components/parameters/"],
    );
    let (crd, schema) = widget_crd();
    let custom = v3_document("example.com", "v1", &[crd], &[schema]);
    assert_refs_resolve(
        &custom,
        &["#/components/schemas/", "#/components/parameters/"],
    );
    assert_eq!(apps["openapi"], "3.0.0");
}

#[test]
fn v2_refs_resolve_and_cover_everything() {
    let (crd, schema) = widget_crd();
    let mut all = core_v1();
    all.extend(apps_v1());
    all.push(crd);
    let doc = v2_document(&all, &[schema]);
    assert_eq!(doc["swagger"], "2.0");
    assert_refs_resolve(&doc, &["#/definitions/", "#/parameters/"]);
    let defs = doc["definitions"].as_object().unwrap();
    for (g, v, k) in [
        ("apps", "v1", "Deployment"),
        ("apps", "v1", "DeploymentList"),
        ("", "v1", "Pod"),
        ("", "v1", "Namespace"),
        ("example.com", "v1", "Widget"),
        ("example.com", "v1", "WidgetList"),
        ("autoscaling", "v1", "Scale"),
    ] {
        assert!(kind_schema(defs, g, v, k).is_some(), "v2 lacks {g}/{v} {k}");
    }
    // v2 has no nullable/anyOf, and int-or-string fields are left untyped.
    let port = &defs["com.example.v1.Widget"]["properties"]["spec"]["properties"]["port"];
    assert!(port.get("anyOf").is_none() && port.get("type").is_none());
    let size = &defs["com.example.v1.Widget"]["properties"]["spec"]["properties"]["size"];
    assert!(size.get("nullable").is_none());
    // v2 keeps description next to $ref, as upstream's v2 does.
    let meta = &defs["io.k8s.api.apps.v1.Deployment"]["properties"]["metadata"];
    assert_eq!(
        meta["$ref"],
        "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    );
}

#[test]
fn deployment_schema_is_found_by_gvk_and_documented() {
    let doc = v3_document("apps", "v1", &apps_v1(), &[]);
    let defs = schemas(&doc);
    let dep = &defs["io.k8s.api.apps.v1.Deployment"];
    assert_eq!(
        dep["x-kubernetes-group-version-kind"],
        json!([{ "group": "apps", "kind": "Deployment", "version": "v1" }])
    );
    assert!(kind_schema(defs, "apps", "v1", "Deployment").is_some());
    assert!(dep["description"].as_str().unwrap().contains("Deployment"));
    // References with siblings are wrapped in allOf so the description survives in 3.0.
    let meta = &dep["properties"]["metadata"];
    assert_eq!(
        meta["allOf"][0]["$ref"],
        "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    );
    assert!(meta["description"].is_string());
    assert!(meta.get("$ref").is_none());
    let list = &defs["io.k8s.api.apps.v1.DeploymentList"];
    assert_eq!(
        list["x-kubernetes-group-version-kind"][0]["kind"],
        "DeploymentList"
    );
    assert_eq!(
        list["properties"]["items"]["items"]["$ref"],
        "#/components/schemas/io.k8s.api.apps.v1.Deployment"
    );
}

#[test]
fn pod_spec_lists_carry_patch_extensions() {
    let doc = v3_document("apps", "v1", &apps_v1(), &[]);
    let defs = schemas(&doc);
    let containers = &defs["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
    assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
    assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
    assert_eq!(containers["x-kubernetes-list-type"], "map");
    assert_eq!(containers["x-kubernetes-list-map-keys"], json!(["name"]));
    let volumes = &defs["io.k8s.api.core.v1.PodSpec"]["properties"]["volumes"];
    assert_eq!(volumes["x-kubernetes-patch-strategy"], "merge,retainKeys");
    let c = &defs["io.k8s.api.core.v1.Container"]["properties"];
    assert_eq!(c["env"]["x-kubernetes-patch-merge-key"], "name");
    assert_eq!(c["ports"]["x-kubernetes-patch-merge-key"], "containerPort");
    assert_eq!(
        c["volumeMounts"]["x-kubernetes-patch-merge-key"],
        "mountPath"
    );
    let strategy = &defs["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["strategy"];
    assert_eq!(strategy["x-kubernetes-patch-strategy"], "retainKeys");
    let finalizers =
        &defs["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]["properties"]["finalizers"];
    assert_eq!(finalizers["x-kubernetes-patch-strategy"], "merge");
}

#[test]
fn every_extension_fact_names_an_existing_array_property() {
    // Generate all built-ins so a typo in the table (or a field k8s-openapi renamed) shows up.
    let all: Vec<ApiResourceDoc> = builtin::all()
        .iter()
        .map(|b| res(b.group, b.version, b.kind, "things", true, &[]))
        .collect();
    let doc = v2_document(&all, &[]);
    let defs = doc["definitions"].as_object().unwrap();
    let mut facts = 0;
    for def in defs.keys() {
        facts += extensions::for_definition(def).count();
    }
    let mut missing = Vec::new();
    for def in defs.keys() {
        for fact in extensions::for_definition(def) {
            let prop = &defs[def]["properties"][fact.property];
            if prop.is_null() {
                missing.push(format!("{def}.{}", fact.property));
            } else if fact.merge_key.is_some() {
                assert_eq!(
                    prop["type"], "array",
                    "{def}.{} is not a list",
                    fact.property
                );
                assert_eq!(
                    prop["x-kubernetes-patch-merge-key"],
                    fact.merge_key.unwrap()
                );
            }
        }
    }
    assert!(
        missing.is_empty(),
        "table names missing properties: {missing:?}"
    );
    assert!(facts >= 40, "only {facts} facts applied");
}

#[test]
fn patch_operation_lists_field_validation_and_patch_types() {
    let doc = v3_document("apps", "v1", &apps_v1(), &[]);
    let op = patch_op(&doc, "apps", "v1", "Deployment").expect("patch operation for Deployment");
    assert_eq!(op["x-kubernetes-action"], "patch");
    let params = op["parameters"].as_array().unwrap();
    // kubectl looks for an inline query parameter named fieldValidation.
    for name in ["fieldValidation", "fieldManager", "dryRun", "force"] {
        assert!(
            params
                .iter()
                .any(|p| p["name"] == name && p["in"] == "query"),
            "patch lacks {name}"
        );
    }
    let content = op["requestBody"]["content"].as_object().unwrap();
    for t in [
        "application/json-patch+json",
        "application/merge-patch+json",
        "application/strategic-merge-patch+json",
        "application/apply-patch+yaml",
    ] {
        assert!(content.contains_key(t), "patch lacks {t}");
    }
    // The scale subresource's PATCH belongs to autoscaling/v1 Scale, not to Deployment.
    let scale =
        &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]["patch"];
    assert_eq!(scale["x-kubernetes-group-version-kind"]["kind"], "Scale");
    assert!(schemas(&doc).contains_key("io.k8s.api.autoscaling.v1.Scale"));
}

#[test]
fn custom_resources_have_no_strategic_merge_patch() {
    let (crd, schema) = widget_crd();
    let doc = v3_document("example.com", "v1", &[crd], &[schema]);
    let op = patch_op(&doc, "example.com", "v1", "Widget").expect("patch operation for Widget");
    let content = op["requestBody"]["content"].as_object().unwrap();
    assert!(!content.contains_key("application/strategic-merge-patch+json"));
    assert!(content.contains_key("application/merge-patch+json"));
    assert!(op["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "fieldValidation"));
    let defs = schemas(&doc);
    let widget = kind_schema(defs, "example.com", "v1", "Widget").expect("widget schema");
    assert_eq!(
        widget["properties"]["metadata"]["allOf"][0]["$ref"],
        "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    );
    // v3 keeps what the CRD author wrote.
    assert_eq!(
        widget["properties"]["spec"]["properties"]["size"]["nullable"],
        true
    );
    assert!(kind_schema(defs, "example.com", "v1", "WidgetList").is_some());
}

#[test]
fn paths_follow_upstream_layout() {
    let doc = v3_document("", "v1", &core_v1(), &[]);
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/api/v1/namespaces/{namespace}/pods",
        "/api/v1/namespaces/{namespace}/pods/{name}",
        "/api/v1/namespaces/{namespace}/pods/{name}/status",
        "/api/v1/namespaces/{namespace}/pods/{name}/log",
        "/api/v1/namespaces/{namespace}/pods/{name}/eviction",
        "/api/v1/pods",
        "/api/v1/watch/namespaces/{namespace}/pods",
        "/api/v1/namespaces",
        "/api/v1/namespaces/{name}",
        "/api/v1/namespaces/{name}/finalize",
        "/api/v1/nodes/{name}/status",
        "/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
    ] {
        assert!(paths.contains_key(p), "missing path {p}");
    }
    let list = &paths["/api/v1/namespaces/{namespace}/pods"]["get"];
    assert_eq!(list["x-kubernetes-action"], "list");
    assert_eq!(
        list["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/io.k8s.api.core.v1.PodList"
    );
    let eviction = &paths["/api/v1/namespaces/{namespace}/pods/{name}/eviction"]["post"];
    assert_eq!(
        eviction["x-kubernetes-group-version-kind"]["group"],
        "policy"
    );
    // Operation ids are unique, as OpenAPI requires.
    let mut ids = BTreeSet::new();
    for item in paths.values() {
        for (method, op) in item.as_object().unwrap() {
            if method != "parameters" {
                let id = op["operationId"].as_str().unwrap().to_owned();
                assert!(ids.insert(id.clone()), "duplicate operationId {id}");
            }
        }
    }
}

#[test]
fn only_reachable_definitions_are_included() {
    let doc = v3_document("apps", "v1", &apps_v1(), &[]);
    let defs = schemas(&doc);
    assert!(defs.contains_key("io.k8s.api.core.v1.PodSpec"));
    assert!(!defs.contains_key("io.k8s.api.core.v1.Service"));
    assert!(!defs.contains_key("io.k8s.api.batch.v1.Job"));
    // Every definition is reachable from the paths (through references, transitively).
    let mut seen = BTreeSet::new();
    let mut queue: Vec<String> = {
        let mut s = BTreeSet::new();
        refs(&doc["paths"], &mut s);
        s.into_iter().collect()
    };
    while let Some(r) = queue.pop() {
        let Some(name) = r.strip_prefix("#/components/schemas/") else {
            continue;
        };
        if !seen.insert(name.to_owned()) {
            continue;
        }
        let mut next = BTreeSet::new();
        refs(&defs[name], &mut next);
        queue.extend(next);
    }
    let unreachable: Vec<&String> = defs.keys().filter(|k| !seen.contains(*k)).collect();
    assert!(
        unreachable.is_empty(),
        "unreachable definitions: {unreachable:?}"
    );
}

#[test]
fn builtin_names_resolve() {
    assert_eq!(
        builtin_definition_name("apps", "v1", "Deployment").as_deref(),
        Some("io.k8s.api.apps.v1.Deployment")
    );
    assert_eq!(
        builtin_definition_name("", "v1", "Pod").as_deref(),
        Some("io.k8s.api.core.v1.Pod")
    );
    assert_eq!(
        builtin_definition_name("apps", "v1", "DeploymentList").as_deref(),
        Some("io.k8s.api.apps.v1.DeploymentList")
    );
    assert_eq!(
        builtin_definition_name("apiextensions.k8s.io", "v1", "CustomResourceDefinition")
            .as_deref(),
        Some("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition")
    );
    assert_eq!(builtin_definition_name("example.com", "v1", "Widget"), None);
    assert_eq!(
        custom_definition_name("stable.example.com", "v1", "CronTab"),
        "com.example.stable.v1.CronTab"
    );
    assert_eq!(builtin_definition_name("", "v1", "StatusList"), None);
}

#[test]
fn index_points_at_documents_with_hashes() {
    let idx = v3_index(&[
        ("api/v1".into(), "AB12".into()),
        ("/apis/apps/v1".into(), "CD34".into()),
    ]);
    assert_eq!(
        idx["paths"]["api/v1"]["serverRelativeURL"],
        "/openapi/v3/api/v1?hash=AB12"
    );
    assert_eq!(
        idx["paths"]["apis/apps/v1"]["serverRelativeURL"],
        "/openapi/v3/apis/apps/v1?hash=CD34"
    );
}

#[test]
fn fingerprint_tracks_inputs_and_cache_reuses_bytes() {
    let apps = apps_v1();
    let a = fingerprint(&apps, &[]);
    assert_eq!(a, fingerprint(&apps, &[]));
    let mut changed = apps.clone();
    changed[0].subresources.pop();
    assert_ne!(a, fingerprint(&changed, &[]));
    let (crd, schema) = widget_crd();
    assert_ne!(
        fingerprint(std::slice::from_ref(&crd), &[]),
        fingerprint(&[crd], &[schema])
    );

    let cache = DocumentCache::new();
    let mut builds = 0;
    let first = cache
        .get_or_build("apis/apps/v1", &a, || {
            builds += 1;
            v3_document("apps", "v1", &apps, &[])
        })
        .unwrap();
    let second = cache
        .get_or_build("apis/apps/v1", &a, || {
            builds += 1;
            Value::Null
        })
        .unwrap();
    assert_eq!(builds, 1);
    assert!(std::sync::Arc::ptr_eq(&first, &second));
    let parsed: Value = serde_json::from_slice(&first).unwrap();
    assert_eq!(parsed["openapi"], "3.0.0");
    let rebuilt = cache
        .get_or_build("apis/apps/v1", "other", || json!({}))
        .unwrap();
    assert_eq!(&rebuilt[..], b"{}");
    assert_eq!(cache.size(), 2);
    cache.retain(&[]);
    assert_eq!(cache.size(), 0);
}

#[test]
fn resources_without_known_schema_still_get_operations() {
    let r = res("example.com", "v1", "Gadget", "gadgets", false, &[]);
    let doc = v3_document("example.com", "v1", &[r], &[]);
    assert_refs_resolve(&doc, &["#/components/schemas/", "#/components/parameters/"]);
    let op = patch_op(&doc, "example.com", "v1", "Gadget").expect("patch operation");
    assert_eq!(
        op["responses"]["200"]["content"]["application/json"]["schema"],
        json!({ "type": "object" })
    );
}

#[test]
fn metadata_and_reference_names_are_not_required() {
    let doc = v3_document("apps", "v1", &apps_v1(), &[]);
    let defs = schemas(&doc);
    assert!(defs["io.k8s.api.apps.v1.Deployment"]
        .get("required")
        .is_none());
    let sel = &defs["io.k8s.api.core.v1.ConfigMapKeySelector"]["required"];
    assert_eq!(sel, &json!(["key"]));
    let v2 = v2_document(&core_v1(), &[]);
    let defs = v2["definitions"].as_object().unwrap();
    assert!(defs["io.k8s.api.core.v1.Pod"].get("required").is_none());
}

/// A decoded protobuf field: a varint (value not needed by these tests) or the raw bytes of a
/// length-delimited value (fixed64 values are kept as bytes too).
#[derive(Debug)]
enum Field<'a> {
    Varint,
    Bytes(&'a [u8]),
}

fn decode(mut buf: &[u8]) -> Vec<(u64, Field<'_>)> {
    fn varint(buf: &mut &[u8]) -> u64 {
        let mut v = 0u64;
        let mut shift = 0;
        loop {
            let b = buf[0];
            *buf = &buf[1..];
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return v;
            }
            shift += 7;
        }
    }
    let mut out = Vec::new();
    while !buf.is_empty() {
        let key = varint(&mut buf);
        let field = match key & 7 {
            0 => {
                varint(&mut buf);
                Field::Varint
            }
            1 => {
                let (v, rest) = buf.split_at(8);
                buf = rest;
                Field::Bytes(v)
            }
            2 => {
                let len = varint(&mut buf) as usize;
                let (v, rest) = buf.split_at(len);
                buf = rest;
                Field::Bytes(v)
            }
            w => panic!("unexpected wire type {w}"),
        };
        out.push((key >> 3, field));
    }
    out
}

fn bytes_of<'a>(fields: &[(u64, Field<'a>)], n: u64) -> Vec<&'a [u8]> {
    fields
        .iter()
        .filter(|(f, _)| *f == n)
        .filter_map(|(_, v)| match v {
            Field::Bytes(b) => Some(*b),
            Field::Varint => None,
        })
        .collect()
}

fn string_of(fields: &[(u64, Field<'_>)], n: u64) -> Option<String> {
    bytes_of(fields, n)
        .first()
        .map(|b| String::from_utf8(b.to_vec()).unwrap())
}

/// `repeated Named*` entries of a message: (name, value bytes).
fn named(msg: &[u8], field: u64) -> Vec<(String, &[u8])> {
    bytes_of(&decode(msg), field)
        .into_iter()
        .map(|entry| {
            let e = decode(entry);
            (string_of(&e, 1).unwrap(), bytes_of(&e, 2)[0])
        })
        .collect()
}

/// Vendor extensions of a message, with their YAML (here JSON) parsed.
fn extensions_of(msg: &[u8], field: u64) -> Vec<(String, Value)> {
    named(msg, field)
        .into_iter()
        .map(|(k, any)| {
            let yaml = string_of(&decode(any), 2).unwrap();
            (k, serde_json::from_str(&yaml).unwrap())
        })
        .collect()
}

#[test]
fn v2_protobuf_carries_definitions_extensions_and_patch_parameters() {
    let doc = v2_document(&apps_v1(), &[]);
    let pb = v2_protobuf(&doc);
    let top = decode(&pb);
    assert_eq!(string_of(&top, 1).as_deref(), Some("2.0"));

    // definitions (9) -> NamedSchema entries
    let defs = named(bytes_of(&top, 9)[0], 1);
    assert_eq!(defs.len(), doc["definitions"].as_object().unwrap().len());
    let dep = defs
        .iter()
        .find(|(n, _)| n == "io.k8s.api.apps.v1.Deployment")
        .unwrap()
        .1;
    let gvk = extensions_of(dep, 31);
    assert_eq!(
        gvk,
        vec![(
            "x-kubernetes-group-version-kind".to_owned(),
            json!([{ "group": "apps", "kind": "Deployment", "version": "v1" }])
        )]
    );
    let dep_fields = decode(dep);
    assert_eq!(
        string_of(&dep_fields, 4).unwrap(),
        doc["definitions"]["io.k8s.api.apps.v1.Deployment"]["description"]
    );
    // properties (25) -> metadata has its $ref (1)
    let props = named(bytes_of(&dep_fields, 25)[0], 1);
    let meta = props.iter().find(|(n, _)| n == "metadata").unwrap().1;
    assert_eq!(
        string_of(&decode(meta), 1).as_deref(),
        Some("#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")
    );
    let pod_spec = defs
        .iter()
        .find(|(n, _)| n == "io.k8s.api.core.v1.PodSpec")
        .unwrap()
        .1;
    let props = named(bytes_of(&decode(pod_spec), 25)[0], 1);
    let containers = props.iter().find(|(n, _)| n == "containers").unwrap().1;
    let ext = extensions_of(containers, 31);
    assert!(ext.contains(&("x-kubernetes-patch-merge-key".to_owned(), json!("name"))));
    // type (22) is a TypeItem with "array"
    let c = decode(containers);
    assert_eq!(
        string_of(&decode(bytes_of(&c, 22)[0]), 1).as_deref(),
        Some("array")
    );

    // paths (8) -> the item path's PATCH (8) has the GVK and an inline fieldValidation query
    // parameter: parameters (8) -> ParametersItem.parameter (1) -> Parameter.non_body (2) ->
    // NonBodyParameter.query (3) -> name (4).
    let paths = named(bytes_of(&top, 8)[0], 2);
    let item = paths
        .iter()
        .find(|(n, _)| n == "/apis/apps/v1/namespaces/{namespace}/deployments/{name}")
        .unwrap()
        .1;
    let patch = bytes_of(&decode(item), 8)[0];
    let ext = extensions_of(patch, 13);
    assert!(ext.contains(&(
        "x-kubernetes-group-version-kind".to_owned(),
        json!({ "group": "apps", "kind": "Deployment", "version": "v1" })
    )));
    let query_names: Vec<String> = bytes_of(&decode(patch), 8)
        .into_iter()
        .filter_map(|pi| bytes_of(&decode(pi), 1).first().copied())
        .filter_map(|p| bytes_of(&decode(p), 2).first().copied())
        .filter_map(|nb| bytes_of(&decode(nb), 3).first().copied())
        .filter_map(|q| string_of(&decode(q), 4))
        .collect();
    assert!(
        query_names.contains(&"fieldValidation".to_owned()),
        "{query_names:?}"
    );
    let consumes: Vec<&[u8]> = bytes_of(&decode(patch), 7);
    assert!(consumes.contains(&&b"application/strategic-merge-patch+json"[..]));
}

#[test]
fn every_builtin_group_version_builds_with_resolving_refs() {
    let mut gvs: Vec<(&str, &str)> = builtin_kinds().map(|(g, v, _)| (g, v)).collect();
    gvs.sort();
    gvs.dedup();
    assert!(gvs.len() > 30, "only {} group-versions", gvs.len());
    let all: Vec<ApiResourceDoc> = builtin_kinds()
        .map(|(g, v, k)| {
            res(
                g,
                v,
                k,
                &format!("{}s", k.to_lowercase()),
                true,
                &["status"],
            )
        })
        .collect();
    for (g, v) in gvs {
        let doc = v3_document(g, v, &all, &[]);
        assert_refs_resolve(&doc, &["#/components/schemas/", "#/components/parameters/"]);
        for r in all.iter().filter(|r| r.group == g && r.version == v) {
            assert!(
                kind_schema(schemas(&doc), g, v, &r.kind).is_some(),
                "{g}/{v} {} has no schema",
                r.kind
            );
            assert!(
                patch_op(&doc, g, v, &r.kind).is_some(),
                "{g}/{v} {} has no patch",
                r.kind
            );
        }
    }
    let v2 = v2_document(&all, &[]);
    assert_refs_resolve(&v2, &["#/definitions/", "#/parameters/"]);
}
