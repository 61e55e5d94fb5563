//! OpenAPI documents (`/openapi/v2`, `/openapi/v3`, per group-version), built by skiff-api's
//! openapi module from the resources served right now (built-ins and CRDs) and cached by
//! fingerprint, so a CRD change is visible at once and unchanged documents cost nothing.

use std::sync::{Arc, Mutex};

use serde_json::Value;
use skiff_api::openapi::{self, ApiResourceDoc, DocumentCache};

use crate::http::{self, Request, Response};
use crate::resources::Served;
use crate::Server;

/// Cached serialized documents.
#[derive(Default)]
pub struct OpenApiCache {
    docs: DocumentCache,
    v2_proto: Mutex<Option<(String, Arc<[u8]>)>>,
}

fn doc_inputs(served: &[Served]) -> (Vec<ApiResourceDoc>, Vec<(String, Value)>) {
    let mut docs = Vec::new();
    let mut schemas = Vec::new();
    for s in served {
        let i = &s.info;
        let definition = match &s.custom {
            Some(c) => {
                let name = openapi::custom_definition_name(&i.group, &i.version, &i.kind);
                if let Some(schema) = &c.schema {
                    schemas.push((name.clone(), schema.clone()));
                }
                Some(name)
            }
            None => None,
        };
        docs.push(ApiResourceDoc {
            group: i.group.clone(),
            version: i.version.clone(),
            kind: i.kind.clone(),
            plural: i.plural.clone(),
            namespaced: i.namespaced(),
            verbs: i.verbs.clone(),
            subresources: i.subresources.clone(),
            definition,
        });
    }
    (docs, schemas)
}

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `/openapi/v2`: protobuf when asked for (kubectl always asks), JSON otherwise.
pub fn v2(srv: &Server, req: &Request) -> Response {
    let (docs, schemas) = doc_inputs(&srv.resources.all());
    let hash = openapi::fingerprint(&docs, &schemas);
    if req.header("accept").contains(openapi::V2_PROTOBUF_MEDIA_TYPE) {
        let mut cached = srv.openapi.v2_proto.lock().unwrap();
        if let Some((h, bytes)) = cached.as_ref() {
            if *h == hash {
                return http::raw(200, openapi::V2_PROTOBUF_CONTENT_TYPE, bytes.to_vec());
            }
        }
        let bytes: Arc<[u8]> = openapi::v2_protobuf(&openapi::v2_document(&docs, &schemas)).into();
        *cached = Some((hash, bytes.clone()));
        return http::raw(200, openapi::V2_PROTOBUF_CONTENT_TYPE, bytes.to_vec());
    }
    match srv.openapi.docs.get_or_build("v2", &hash, || openapi::v2_document(&docs, &schemas)) {
        Ok(bytes) => http::raw(200, "application/json", bytes.to_vec()),
        Err(e) => http::error(&skiff_api::ApiError::internal(e.to_string())),
    }
}

/// `/openapi/v3`
pub fn v3_index(srv: &Server) -> Response {
    let mut gvs = Vec::new();
    for g in srv.resources.groups() {
        for v in srv.resources.versions(&g) {
            let (docs, schemas) = doc_inputs(&srv.resources.in_group_version(&g, &v));
            gvs.push((gv_path(&g, &v), openapi::fingerprint(&docs, &schemas)));
        }
    }
    http::json(200, &openapi::v3_index(&gvs))
}

/// `/openapi/v3/api/v1`, `/openapi/v3/apis/{group}/{version}`
pub fn v3(srv: &Server, group: &str, version: &str) -> Response {
    let served = srv.resources.in_group_version(group, version);
    if served.is_empty() {
        return http::error(&skiff_api::ApiError::new(404, "NotFound", "the server could not find the requested resource"));
    }
    let (docs, schemas) = doc_inputs(&served);
    let hash = openapi::fingerprint(&docs, &schemas);
    let path = gv_path(group, version);
    match srv.openapi.docs.get_or_build(&path, &hash, || openapi::v3_document(group, version, &docs, &schemas)) {
        Ok(bytes) => {
            let mut r = http::raw(200, "application/json", bytes.to_vec());
            r.headers_mut().insert("etag", format!("\"{hash}\"").parse().unwrap());
            r
        }
        Err(e) => http::error(&skiff_api::ApiError::internal(e.to_string())),
    }
}
