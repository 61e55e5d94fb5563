//! The `paths` section: the REST operations of each resource, in either OpenAPI dialect.
//!
//! kubectl reads three things from here: the PATCH operation of a kind (found by its
//! `x-kubernetes-group-version-kind`), whether that operation accepts
//! `application/strategic-merge-patch+json` (then `kubectl apply` computes a strategic merge
//! patch from the schema), and whether it lists the `fieldValidation` query parameter (then
//! kubectl leaves field validation to the server). Those parameters are written inline on each
//! operation because kubectl does not follow `#/components/parameters/` references when looking
//! for them.

use serde_json::{json, Map, Value};

use super::schema::{Flavor, Gvk, DELETE_OPTIONS, PATCH, STATUS, WATCH_EVENT};

/// One resource, resolved for path generation.
pub(crate) struct PathResource<'a> {
    pub group: &'a str,
    pub version: &'a str,
    pub kind: &'a str,
    pub plural: &'a str,
    pub namespaced: bool,
    pub verbs: &'a [String],
    pub subresources: &'a [String],
    /// Definition of the kind, `None` when no schema is known.
    pub definition: Option<&'a str>,
    /// Definition of the kind's list, `None` when the document has none.
    pub list_definition: Option<&'a str>,
    /// Whether strategic merge patch applies (built-in kinds only).
    pub strategic: bool,
}

impl PathResource<'_> {
    fn has(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == verb)
    }
}

/// Shared parameters: (key, location, type, description). Referenced from operations.
const SHARED: &[(&str, &str, &str, &str)] = &[
    ("namespace", "path", "string", "Namespace of the objects."),
    (
        "pretty",
        "query",
        "string",
        "If 'true', the output is indented.",
    ),
    (
        "allowWatchBookmarks",
        "query",
        "boolean",
        "Ask for BOOKMARK watch events; the server may send them at its discretion.",
    ),
    (
        "continue",
        "query",
        "string",
        "The continue token from a previous paged list response, to fetch the next page.",
    ),
    (
        "fieldSelector",
        "query",
        "string",
        "Restrict the returned objects by their fields. Defaults to everything.",
    ),
    (
        "labelSelector",
        "query",
        "string",
        "Restrict the returned objects by their labels. Defaults to everything.",
    ),
    (
        "limit",
        "query",
        "integer",
        "Maximum number of objects to return in one page of a list call.",
    ),
    (
        "resourceVersion",
        "query",
        "string",
        "Constrains which resource versions a request may be served from.",
    ),
    (
        "resourceVersionMatch",
        "query",
        "string",
        "How resourceVersion is applied to list calls: Exact or NotOlderThan.",
    ),
    (
        "sendInitialEvents",
        "query",
        "boolean",
        "With watch=true, start the watch with synthetic ADDED events for the current state.",
    ),
    (
        "timeoutSeconds",
        "query",
        "integer",
        "Timeout for the list/watch call, regardless of activity.",
    ),
    (
        "watch",
        "query",
        "boolean",
        "Watch for changes to the described resources and return them as a stream of events.",
    ),
    (
        "gracePeriodSeconds",
        "query",
        "integer",
        "Seconds before the object should be deleted; zero means delete immediately.",
    ),
    (
        "orphanDependents",
        "query",
        "boolean",
        "Deprecated: use propagationPolicy. Whether dependents should be orphaned.",
    ),
    (
        "propagationPolicy",
        "query",
        "string",
        "Whether and how garbage collection is performed: Orphan, Background or Foreground.",
    ),
    (
        "ignoreStoreReadErrorWithClusterBreakingPotential",
        "query",
        "boolean",
        "Delete a corrupt object that cannot be read from storage. Dangerous.",
    ),
    (
        "container",
        "query",
        "string",
        "The container to act on; defaults to the only container of the pod.",
    ),
];

const LIST_PARAMS: &[&str] = &[
    "allowWatchBookmarks",
    "continue",
    "fieldSelector",
    "labelSelector",
    "limit",
    "resourceVersion",
    "resourceVersionMatch",
    "sendInitialEvents",
    "timeoutSeconds",
    "watch",
];

const DRY_RUN_DOC: &str =
    "When present, changes are not persisted. Valid value: All (run every stage without storing).";
const FIELD_MANAGER_DOC: &str =
    "Name of the actor making the change, recorded in managedFields. Required for apply patches.";
const FIELD_VALIDATION_DOC: &str = "How to treat unknown or duplicate fields in the request body: Ignore drops them, Warn drops them with a warning header, Strict rejects the request.";
const FORCE_DOC: &str =
    "Force an apply request, taking ownership of conflicting fields from other managers.";

/// The `parameters` section shared by operations (`#/parameters` in v2,
/// `#/components/parameters` in v3).
pub(crate) fn shared_parameters(flavor: Flavor) -> Value {
    let mut out = Map::new();
    for (key, location, ty, doc) in SHARED {
        let mut p = param(flavor, key, location, ty, doc);
        if *location == "path" {
            p["required"] = Value::Bool(true);
        }
        out.insert((*key).into(), p);
    }
    Value::Object(out)
}

fn param(flavor: Flavor, name: &str, location: &str, ty: &str, doc: &str) -> Value {
    match flavor {
        Flavor::V2 => json!({
            "name": name, "in": location, "description": doc, "type": ty, "uniqueItems": true,
        }),
        Flavor::V3 => json!({
            "name": name, "in": location, "description": doc,
            "schema": { "type": ty, "uniqueItems": true },
        }),
    }
}

fn shared_ref(flavor: Flavor, key: &str) -> Value {
    match flavor {
        Flavor::V2 => json!({ "$ref": format!("#/parameters/{key}") }),
        Flavor::V3 => json!({ "$ref": format!("#/components/parameters/{key}") }),
    }
}

fn name_param(flavor: Flavor, kind: &str) -> Value {
    let mut p = param(
        flavor,
        "name",
        "path",
        "string",
        &format!("name of the {kind}"),
    );
    p["required"] = Value::Bool(true);
    p
}

/// Request body of an operation.
enum Body<'a> {
    /// The object itself (create, replace).
    Object(&'a Payload),
    /// A patch document; `true` when strategic merge patch is among the accepted types.
    Patch(bool),
    /// Delete options (delete, deletecollection).
    Delete,
}

/// What an operation's body or response holds.
enum Payload {
    /// An object described by the named definition.
    Ref(String),
    /// Plain text (logs, streams).
    Str,
    /// An object of a kind with no known schema.
    Generic,
}

impl Payload {
    fn to_value(&self, flavor: Flavor) -> Value {
        match self {
            Payload::Ref(name) => flavor.schema_ref(name),
            Payload::Str => json!({ "type": "string" }),
            Payload::Generic => json!({ "type": "object" }),
        }
    }
}

/// Builds one operation. `responses` are (code, description, schema).
struct Op<'a> {
    action: &'a str,
    description: String,
    id: String,
    params: Vec<Value>,
    body: Option<Body<'a>>,
    responses: Vec<(&'a str, &'a str, &'a Payload)>,
    gvk: Option<&'a Gvk>,
    streaming: bool,
}

const PATCH_TYPES: &[&str] = &[
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
];

fn patch_types(strategic: bool) -> impl Iterator<Item = &'static str> {
    PATCH_TYPES
        .iter()
        .copied()
        .filter(move |t| strategic || !t.starts_with("application/strategic"))
}

/// Document-level `consumes`, `produces` and `schemes` of the v2 document.
pub(crate) fn v2_globals() -> [(&'static str, Value); 3] {
    [
        ("consumes", json!(["*/*"])),
        ("produces", json!(produces(false))),
        ("schemes", json!(["https"])),
    ]
}

/// Media types of responses. Only what the server writes: JSON, YAML on request, and JSON event
/// streams for watches (protobuf and CBOR responses are not produced).
fn produces(streaming: bool) -> &'static [&'static str] {
    if streaming {
        &[
            "application/json",
            "application/yaml",
            "application/json;stream=watch",
        ]
    } else {
        &["application/json", "application/yaml"]
    }
}

impl Op<'_> {
    fn build(self, flavor: Flavor, tag: &str) -> Value {
        let mut op = Map::new();
        let mut params = self.params;
        match flavor {
            // Media types and schemes that every operation shares are declared once at the
            // document level (see `v2_globals`); only PATCH differs.
            Flavor::V2 => {
                if let Some(Body::Patch(strategic)) = &self.body {
                    let consumes: Vec<&str> = patch_types(*strategic).collect();
                    op.insert("consumes".into(), json!(consumes));
                }
                op.insert("description".into(), json!(self.description));
                op.insert("operationId".into(), json!(self.id));
                if let Some(body) = &self.body {
                    let schema = body_schema(flavor, body);
                    params.insert(
                        0,
                        json!({ "in": "body", "name": "body", "required": true, "schema": schema }),
                    );
                }
                if !params.is_empty() {
                    op.insert("parameters".into(), Value::Array(params));
                }
                if self.streaming {
                    op.insert("produces".into(), json!(produces(true)));
                }
                let mut responses = Map::new();
                for (code, desc, schema) in &self.responses {
                    responses.insert(
                        (*code).into(),
                        json!({ "description": desc, "schema": schema.to_value(flavor) }),
                    );
                }
                responses.insert("401".into(), json!({ "description": "Unauthorized" }));
                op.insert("responses".into(), Value::Object(responses));
                op.insert("tags".into(), json!([tag]));
            }
            Flavor::V3 => {
                op.insert("tags".into(), json!([tag]));
                op.insert("description".into(), json!(self.description));
                op.insert("operationId".into(), json!(self.id));
                if !params.is_empty() {
                    op.insert("parameters".into(), Value::Array(params));
                }
                if let Some(body) = &self.body {
                    let schema = body_schema(flavor, body);
                    let mut content = Map::new();
                    match body {
                        Body::Patch(strategic) => {
                            for t in patch_types(*strategic) {
                                content.insert(t.into(), json!({ "schema": schema }));
                            }
                        }
                        _ => {
                            content.insert("*/*".into(), json!({ "schema": schema }));
                        }
                    }
                    let required = !matches!(body, Body::Delete);
                    op.insert(
                        "requestBody".into(),
                        json!({ "content": content, "required": required }),
                    );
                }
                let mut responses = Map::new();
                for (code, desc, schema) in &self.responses {
                    let schema = schema.to_value(flavor);
                    let content: Map<String, Value> = produces(self.streaming)
                        .iter()
                        .map(|t| ((*t).to_owned(), json!({ "schema": schema })))
                        .collect();
                    responses.insert(
                        (*code).into(),
                        json!({ "description": desc, "content": content }),
                    );
                }
                responses.insert("401".into(), json!({ "description": "Unauthorized" }));
                op.insert("responses".into(), Value::Object(responses));
            }
        }
        op.insert("x-kubernetes-action".into(), json!(self.action));
        if let Some(gvk) = self.gvk {
            op.insert("x-kubernetes-group-version-kind".into(), gvk.to_value());
        }
        Value::Object(op)
    }
}

fn body_schema(flavor: Flavor, body: &Body<'_>) -> Value {
    match body {
        Body::Object(s) => s.to_value(flavor),
        Body::Patch(_) => flavor.schema_ref(PATCH),
        Body::Delete => flavor.schema_ref(DELETE_OPTIONS),
    }
}

/// `apps` gives `Apps`, `rbac.authorization.k8s.io` gives `RbacAuthorization`, core gives `Core`.
fn group_camel(group: &str) -> String {
    if group.is_empty() {
        return "Core".into();
    }
    let trimmed = group.strip_suffix(".k8s.io").unwrap_or(group);
    trimmed.split(['.', '-']).map(capitalize).collect()
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// Tag of a group-version's operations: `apps_v1`, `core_v1`, `rbacAuthorization_v1`.
pub(crate) fn tag(group: &str, version: &str) -> String {
    let camel = group_camel(group);
    let mut c = camel.chars();
    let lower: String = match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    };
    format!("{lower}_{version}")
}

/// URL prefix of a group-version: `/api/v1` or `/apis/<group>/<version>`.
pub(crate) fn prefix(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    }
}

/// Collects paths; each path item has its own parameters plus its operations.
pub(crate) struct PathsBuilder {
    flavor: Flavor,
    paths: Map<String, Value>,
}

impl PathsBuilder {
    pub(crate) fn new(flavor: Flavor) -> Self {
        PathsBuilder {
            flavor,
            paths: Map::new(),
        }
    }

    pub(crate) fn finish(self) -> Value {
        Value::Object(self.paths)
    }

    fn item(&mut self, path: String, params: Vec<Value>) -> &mut Map<String, Value> {
        let entry = self
            .paths
            .entry(path)
            .or_insert_with(|| json!({ "parameters": params }));
        match entry {
            Value::Object(m) => m,
            _ => unreachable!("path items are always objects"),
        }
    }

    fn add(&mut self, path: String, params: Vec<Value>, method: &str, op: Op<'_>, tag: &str) {
        // v2 readers (kubectl 1.27/1.28 checking for `fieldValidation`, the validation and
        // patch fallbacks, `explain --output=plaintext-openapiv2`) use only the definitions and
        // the PATCH operations; the rest would triple the document that every client of those
        // versions downloads.
        if self.flavor == Flavor::V2 && method != "patch" {
            return;
        }
        let value = op.build(self.flavor, tag);
        self.item(path, params).insert(method.into(), value);
    }

    /// Adds every operation of one resource.
    pub(crate) fn resource(&mut self, r: &PathResource<'_>) {
        let f = self.flavor;
        let tag = tag(r.group, r.version);
        let gv = format!("{}{}", group_camel(r.group), capitalize(r.version));
        let ns = if r.namespaced { "Namespaced" } else { "" };
        let prefix = prefix(r.group, r.version);
        let scope = if r.namespaced {
            "namespaces/{namespace}/"
        } else {
            ""
        };
        let collection = format!("{prefix}/{scope}{}", r.plural);
        let item = format!("{collection}/{{name}}");
        let gvk = Gvk::new(r.group, r.version, r.kind);
        let obj = match r.definition {
            Some(d) => Payload::Ref(d.to_owned()),
            None => Payload::Generic,
        };
        let list = match r.list_definition {
            Some(d) => Payload::Ref(d.to_owned()),
            None => Payload::Generic,
        };
        let status = Payload::Ref(STATUS.into());
        let event = Payload::Ref(WATCH_EVENT.into());
        let mut base = Vec::new();
        if r.namespaced {
            base.push(shared_ref(f, "namespace"));
        }
        base.push(shared_ref(f, "pretty"));
        let mut item_params = vec![name_param(f, r.kind)];
        item_params.extend(base.iter().cloned());
        let kind = r.kind;
        let id = |verb: &str, suffix: &str| format!("{verb}{gv}{ns}{kind}{suffix}");
        let list_params = || {
            LIST_PARAMS
                .iter()
                .map(|p| shared_ref(f, p))
                .collect::<Vec<_>>()
        };

        if r.has("list") {
            let op = Op {
                action: "list",
                description: format!("list or watch objects of kind {kind}"),
                id: id("list", ""),
                params: list_params(),
                body: None,
                responses: vec![("200", "OK", &list)],
                gvk: Some(&gvk),
                streaming: true,
            };
            self.add(collection.clone(), base.clone(), "get", op, &tag);
            if r.namespaced {
                let op = Op {
                    action: "list",
                    description: format!("list or watch objects of kind {kind}"),
                    id: format!("list{gv}{kind}ForAllNamespaces"),
                    params: Vec::new(),
                    body: None,
                    responses: vec![("200", "OK", &list)],
                    gvk: Some(&gvk),
                    streaming: true,
                };
                let mut p = list_params();
                p.push(shared_ref(f, "pretty"));
                self.add(format!("{prefix}/{}", r.plural), p, "get", op, &tag);
            }
        }
        if r.has("create") {
            let op = Op {
                action: "post",
                description: format!("create a {kind}"),
                id: id("create", ""),
                params: write_params(f, false),
                body: Some(Body::Object(&obj)),
                responses: vec![
                    ("200", "OK", &obj),
                    ("201", "Created", &obj),
                    ("202", "Accepted", &obj),
                ],
                gvk: Some(&gvk),
                streaming: false,
            };
            self.add(collection.clone(), base.clone(), "post", op, &tag);
        }
        if r.has("deletecollection") {
            let mut params = vec![shared_ref(f, "continue"), query(f, "dryRun", DRY_RUN_DOC)];
            for p in [
                "fieldSelector",
                "gracePeriodSeconds",
                "ignoreStoreReadErrorWithClusterBreakingPotential",
                "labelSelector",
                "limit",
                "orphanDependents",
                "propagationPolicy",
                "resourceVersion",
                "resourceVersionMatch",
                "sendInitialEvents",
                "timeoutSeconds",
            ] {
                params.push(shared_ref(f, p));
            }
            let op = Op {
                action: "deletecollection",
                description: format!("delete collection of {kind}"),
                id: id("deletecollection", ""),
                params,
                body: Some(Body::Delete),
                responses: vec![("200", "OK", &status)],
                gvk: Some(&gvk),
                streaming: false,
            };
            self.add(collection.clone(), base.clone(), "delete", op, &tag);
        }
        if r.has("get") {
            let op = Op {
                action: "get",
                description: format!("read the specified {kind}"),
                id: id("read", ""),
                params: Vec::new(),
                body: None,
                responses: vec![("200", "OK", &obj)],
                gvk: Some(&gvk),
                streaming: false,
            };
            self.add(item.clone(), item_params.clone(), "get", op, &tag);
        }
        if r.has("update") {
            self.add(
                item.clone(),
                item_params.clone(),
                "put",
                replace_op(f, &obj, &gvk, id("replace", ""), kind),
                &tag,
            );
        }
        if r.has("patch") {
            self.add(
                item.clone(),
                item_params.clone(),
                "patch",
                patch_op(f, &obj, &gvk, id("patch", ""), kind, r.strategic),
                &tag,
            );
        }
        if r.has("delete") {
            let mut params = vec![query(f, "dryRun", DRY_RUN_DOC)];
            for p in [
                "gracePeriodSeconds",
                "ignoreStoreReadErrorWithClusterBreakingPotential",
                "orphanDependents",
                "propagationPolicy",
            ] {
                params.push(shared_ref(f, p));
            }
            let op = Op {
                action: "delete",
                description: format!("delete a {kind}"),
                id: id("delete", ""),
                params,
                body: Some(Body::Delete),
                responses: vec![("200", "OK", &status), ("202", "Accepted", &status)],
                gvk: Some(&gvk),
                streaming: false,
            };
            self.add(item.clone(), item_params.clone(), "delete", op, &tag);
        }
        if r.has("watch") {
            let watch_prefix = format!("{prefix}/watch/{scope}{}", r.plural);
            let watch_op = |id: String, action: &'static str| {
                Op {
                action,
                description: format!("watch changes to {kind} objects (deprecated: use the 'watch' parameter with a list operation)"),
                id,
                params: Vec::new(),
                body: None,
                responses: vec![("200", "OK", &event)],
                gvk: Some(&gvk),
                streaming: true,
            }
            };
            let mut p = list_params();
            p.extend(base.iter().cloned());
            self.add(
                watch_prefix.clone(),
                p,
                "get",
                watch_op(id("watch", "List"), "watchlist"),
                &tag,
            );
            let mut p = list_params();
            p.extend(item_params.iter().cloned());
            self.add(
                format!("{watch_prefix}/{{name}}"),
                p,
                "get",
                watch_op(id("watch", ""), "watch"),
                &tag,
            );
            if r.namespaced {
                let mut p = list_params();
                p.push(shared_ref(f, "pretty"));
                let op = watch_op(format!("watch{gv}{kind}ListForAllNamespaces"), "watchlist");
                self.add(format!("{prefix}/watch/{}", r.plural), p, "get", op, &tag);
            }
        }
        for sub in r.subresources {
            self.subresource(r, sub, &item, &item_params, &obj, &gvk, &tag, &id);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn subresource(
        &mut self,
        r: &PathResource<'_>,
        sub: &str,
        item: &str,
        item_params: &[Value],
        obj: &Payload,
        gvk: &Gvk,
        tag: &str,
        id: &dyn Fn(&str, &str) -> String,
    ) {
        let f = self.flavor;
        let path = format!("{item}/{sub}");
        let suffix = match sub {
            "portforward" => "PortForward".to_owned(),
            "ephemeralcontainers" => "EphemeralContainers".to_owned(),
            other => capitalize(other),
        };
        let kind = r.kind;
        let params = item_params.to_vec();
        match sub {
            // Same kind as the parent, read and written through the subresource.
            "status" | "ephemeralcontainers" | "resize" | "approval" | "scale" => {
                let scale;
                let scale_gvk;
                let (obj, gvk, strategic) = if sub == "scale" {
                    scale = Payload::Ref("io.k8s.api.autoscaling.v1.Scale".into());
                    scale_gvk = Gvk::new("autoscaling", "v1", "Scale");
                    (&scale, &scale_gvk, r.strategic)
                } else {
                    (obj, gvk, r.strategic)
                };
                let read = Op {
                    action: "get",
                    description: format!("read {sub} of the specified {kind}"),
                    id: id("read", &suffix),
                    params: Vec::new(),
                    body: None,
                    responses: vec![("200", "OK", obj)],
                    gvk: Some(gvk),
                    streaming: false,
                };
                self.add(path.clone(), params.clone(), "get", read, tag);
                self.add(
                    path.clone(),
                    params.clone(),
                    "put",
                    replace_op(f, obj, gvk, id("replace", &suffix), kind),
                    tag,
                );
                self.add(
                    path,
                    params,
                    "patch",
                    patch_op(f, obj, gvk, id("patch", &suffix), kind, strategic),
                    tag,
                );
            }
            // Create-only subresources that take a different kind.
            "binding" | "eviction" | "token" => {
                let (def, sub_gvk) = match sub {
                    "binding" => ("io.k8s.api.core.v1.Binding", Gvk::new("", "v1", "Binding")),
                    "eviction" => (
                        "io.k8s.api.policy.v1.Eviction",
                        Gvk::new("policy", "v1", "Eviction"),
                    ),
                    _ => (
                        "io.k8s.api.authentication.v1.TokenRequest",
                        Gvk::new("authentication.k8s.io", "v1", "TokenRequest"),
                    ),
                };
                let body = Payload::Ref(def.into());
                let op = Op {
                    action: "post",
                    description: format!("create {sub} of a {kind}"),
                    id: id("create", &suffix),
                    params: write_params(f, false),
                    body: Some(Body::Object(&body)),
                    responses: vec![
                        ("200", "OK", &body),
                        ("201", "Created", &body),
                        ("202", "Accepted", &body),
                    ],
                    gvk: Some(&sub_gvk),
                    streaming: false,
                };
                self.add(path, params, "post", op, tag);
            }
            "finalize" => {
                let op = replace_op(f, obj, gvk, id("replace", &suffix), kind);
                self.add(path, params, "put", op, tag);
            }
            "log" => {
                let mut qp = vec![shared_ref(f, "container")];
                for (name, ty) in [
                    ("follow", "boolean"),
                    ("insecureSkipTLSVerifyBackend", "boolean"),
                    ("limitBytes", "integer"),
                    ("previous", "boolean"),
                    ("sinceSeconds", "integer"),
                    ("stream", "string"),
                    ("tailLines", "integer"),
                    ("timestamps", "boolean"),
                ] {
                    qp.push(param(f, name, "query", ty, &format!("log option {name}")));
                }
                let text = Payload::Str;
                let op = Op {
                    action: "get",
                    description: format!("read log of the specified {kind}"),
                    id: id("read", "Log"),
                    params: qp,
                    body: None,
                    responses: vec![("200", "OK", &text)],
                    gvk: Some(gvk),
                    streaming: false,
                };
                self.add(path, params, "get", op, tag);
            }
            "exec" | "attach" | "portforward" | "proxy" => {
                let options = Gvk::new(r.group, r.version, &format!("{kind}{suffix}Options"));
                let text = Payload::Str;
                for method in ["get", "post"] {
                    let op = Op {
                        action: "connect",
                        description: format!("connect {method} requests to {sub} of {kind}"),
                        id: id(&format!("connect{}", capitalize(method)), &suffix),
                        params: Vec::new(),
                        body: None,
                        responses: vec![("200", "OK", &text)],
                        gvk: Some(&options),
                        streaming: false,
                    };
                    self.add(path.clone(), params.clone(), method, op, tag);
                }
            }
            // Unknown subresources are served but not described.
            _ => {}
        }
    }
}

fn query(flavor: Flavor, name: &str, doc: &str) -> Value {
    param(flavor, name, "query", "string", doc)
}

/// Query parameters of writes; kubectl checks `fieldValidation` on PATCH to decide whether the
/// server validates fields itself.
fn write_params(flavor: Flavor, patch: bool) -> Vec<Value> {
    let mut p = vec![
        query(flavor, "dryRun", DRY_RUN_DOC),
        query(flavor, "fieldManager", FIELD_MANAGER_DOC),
        query(flavor, "fieldValidation", FIELD_VALIDATION_DOC),
    ];
    if patch {
        p.push(param(flavor, "force", "query", "boolean", FORCE_DOC));
    }
    p
}

fn replace_op<'a>(
    flavor: Flavor,
    obj: &'a Payload,
    gvk: &'a Gvk,
    id: String,
    kind: &str,
) -> Op<'a> {
    Op {
        action: "put",
        description: format!("replace the specified {kind}"),
        id,
        params: write_params(flavor, false),
        body: Some(Body::Object(obj)),
        responses: vec![("200", "OK", obj), ("201", "Created", obj)],
        gvk: Some(gvk),
        streaming: false,
    }
}

fn patch_op<'a>(
    flavor: Flavor,
    obj: &'a Payload,
    gvk: &'a Gvk,
    id: String,
    kind: &str,
    strategic: bool,
) -> Op<'a> {
    Op {
        action: "patch",
        description: format!("partially update the specified {kind}"),
        id,
        params: write_params(flavor, true),
        body: Some(Body::Patch(strategic)),
        responses: vec![("200", "OK", obj), ("201", "Created", obj)],
        gvk: Some(gvk),
        streaming: false,
    }
}
