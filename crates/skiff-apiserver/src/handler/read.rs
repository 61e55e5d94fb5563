//! get and list, with label/field selectors, consistent pagination, and the Table and
//! PartialObjectMetadata renderings kubectl asks for.

use serde_json::{json, Value};
use skiff_api::status::ApiError;

use crate::filter::Filter;
use crate::http::{self, Request, Response};
use skiff_store::KeyValue;

use crate::objects::{list_envelope, ListPage};
use crate::resources::Served;
use crate::Server;

/// How the client wants objects rendered (from the Accept header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rendering {
    /// Plain objects.
    Object,
    /// `meta.k8s.io/v1` Table.
    Table,
    /// `PartialObjectMetadata(List)`.
    Metadata,
}

/// Pick the rendering from the Accept header (first alternative the server supports).
pub fn rendering(req: &Request) -> Rendering {
    for alt in req.header("accept").split(',') {
        let a = alt.replace(' ', "");
        if a.contains("as=Table") && a.contains("g=meta.k8s.io") {
            return Rendering::Table;
        }
        if a.contains("as=PartialObjectMetadata") && a.contains("g=meta.k8s.io") {
            return Rendering::Metadata;
        }
        if a.starts_with("application/json") || a.starts_with("*/*") || a.starts_with("application/yaml") || a.starts_with("application/vnd.kubernetes.protobuf") {
            return Rendering::Object;
        }
    }
    Rendering::Object
}

/// Make sure `kind`/`apiVersion` say what the client asked for.
pub fn with_type(served: &Served, obj: Value) -> Value {
    let mut obj = crate::convert::to_served(served, obj);
    if let Some(m) = obj.as_object_mut() {
        m.insert("kind".into(), json!(served.info.kind));
        m.insert("apiVersion".into(), json!(served.info.api_version()));
    }
    obj
}

/// `PartialObjectMetadata` of an object.
pub fn partial_metadata(obj: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"].clone()})
}

/// GET one object.
pub async fn get(srv: &Server, req: &Request, served: &Served, ns: Option<&str>, name: &str) -> Result<Response, ApiError> {
    if rendering(req) == Rendering::Object {
        // As for lists: copy the stored JSON with its resourceVersion spliced in instead of
        // parsing it into a `Value` and writing it out again (a third of a pod GET's CPU).
        let kv = srv.objects.get_stored(&served.info, ns, name).await?;
        let mut out = Vec::with_capacity(kv.value.len() + 40);
        crate::raw_list::write_item(&mut out, served, &served.info.api_version(), &kv)?;
        return Ok(http::raw(200, "application/json", out));
    }
    let obj = with_type(served, srv.objects.get(&served.info, ns, name).await?);
    Ok(render_one(req, served, obj))
}

/// Render one object as the client asked.
pub fn render_one(req: &Request, served: &Served, obj: Value) -> Response {
    match rendering(req) {
        Rendering::Object => http::json(200, &obj),
        Rendering::Metadata => http::json(200, &partial_metadata(&obj)),
        Rendering::Table => {
            let rv = skiff_api::meta::resource_version(&obj).to_string();
            http::json(200, &crate::tables::render(served, &[obj], req, rv, None))
        }
    }
}

/// Parse the list's revision from `resourceVersion`/`resourceVersionMatch`.
fn list_revision(req: &Request) -> Result<Option<i64>, ApiError> {
    let rv = req.query.non_empty("resourceVersion");
    let matching = req.query.non_empty("resourceVersionMatch");
    match (rv, matching) {
        (None, Some(_)) => Err(ApiError::bad_request("resourceVersionMatch is forbidden unless resourceVersion is provided")),
        (None, None) | (Some("0"), _) => Ok(None),
        (Some(v), m) => {
            let n: i64 = v.parse().map_err(|_| ApiError::bad_request(format!("invalid resource version: {v}")))?;
            match m {
                Some("Exact") => Ok(Some(n)),
                // NotOlderThan (or unset): the latest state is never older than `n`.
                _ => Ok(None),
            }
        }
    }
}

/// LIST a collection.
pub async fn list(srv: &Server, req: &Request, served: &Served, ns: Option<&str>) -> Result<Response, ApiError> {
    let filter = Filter::from_query(&served.info, &req.query)?;
    let limit: usize = match req.query.non_empty("limit") {
        Some(l) => l.parse().map_err(|_| ApiError::bad_request(format!("invalid limit: {l}")))?,
        None => 0,
    };
    let at = list_revision(req)?;
    if filter.is_empty() && rendering(req) == Rendering::Object {
        // No selector to evaluate: copy the stored JSON instead of parsing and re-encoding it.
        return raw_list(srv, req, served, ns, limit, at, |kv| Ok(Some(kv))).await;
    }
    if rendering(req) == Rendering::Object && !crate::convert::shares_storage(served) {
        // Decode only what the selectors read, and copy the matching objects' stored JSON:
        // a label-selected list of a namespace's pods (every controller's reconcile) no
        // longer decodes every pod in it.
        let paths = filter.view_paths();
        return raw_list(srv, req, served, ns, limit, at, move |kv| {
            let view = skiff_api::selector::parse_view(&kv.value, &paths)
                .map_err(|e| ApiError::internal(format!("decoding {}: {e}", kv.key)))?;
            Ok(filter.matches(&view).then_some(kv))
        })
        .await;
    }
    let page = srv
        .objects
        .list(&served.info, ns, limit, req.query.non_empty("continue"), at, &|o| {
            if crate::convert::shares_storage(served) {
                filter.matches(&crate::convert::to_served(served, o.clone()))
            } else {
                filter.matches(o)
            }
        })
        .await?;
    Ok(render_list(req, served, page))
}

/// A plain JSON list copied from the stored bytes, `keep` choosing the items (and returning
/// them unchanged). An unpaged list longer than one batch is streamed as it is read.
#[allow(clippy::too_many_arguments)]
async fn raw_list(
    srv: &Server,
    req: &Request,
    served: &Served,
    ns: Option<&str>,
    limit: usize,
    at: Option<i64>,
    mut keep: impl FnMut(KeyValue) -> Result<Option<KeyValue>, ApiError> + Send + Sync + 'static,
) -> Result<Response, ApiError> {
    let continue_token = req.query.non_empty("continue");
    if limit > 0 || continue_token.is_some() {
        let page = srv.objects.list_with(&served.info, ns, limit, continue_token, at, &mut keep).await?;
        return Ok(http::raw(200, "application/json", crate::raw_list::render(served, &page)?));
    }
    let first = srv.objects.list_with(&served.info, ns, crate::raw_list::STREAM_BATCH, None, at, &mut keep).await?;
    if first.continue_token.is_none() {
        return Ok(http::raw(200, "application/json", crate::raw_list::render(served, &first)?));
    }
    let body = crate::raw_list::stream(srv.objects.clone(), served.clone(), ns.map(str::to_string), first, keep)?;
    Ok(http::with_body(200, "application/json", body))
}

/// Render a list page as the client asked.
pub fn render_list(req: &Request, served: &Served, mut page: ListPage) -> Response {
    match rendering(req) {
        Rendering::Object => {
            page.items = page.items.into_iter().map(|o| with_type(served, o)).collect();
            http::json(200, &list_envelope(&served.info, page))
        }
        Rendering::Metadata => {
            let items: Vec<Value> = page.items.iter().map(partial_metadata).collect();
            let mut meta = json!({"resourceVersion": page.revision.to_string()});
            if let Some(c) = &page.continue_token {
                meta["continue"] = json!(c);
            }
            http::json(200, &json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "items": items}))
        }
        Rendering::Table => {
            let items: Vec<Value> = page.items.into_iter().map(|o| with_type(served, o)).collect();
            http::json(200, &crate::tables::render(served, &items, req, page.revision.to_string(), page.continue_token))
        }
    }
}
