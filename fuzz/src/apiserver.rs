//! Fuzz harnesses for the API server's request parsing: the route of a path, query strings,
//! and request bodies (JSON, YAML, protobuf) as `http::decode_body` decodes them.
//!
//! Shared by the cargo-fuzz targets and `crates/skiff-apiserver/tests/fuzz_smoke.rs` (which
//! includes this file with `#[path]`); see `api.rs` for the conventions.

use skiff_apiserver::http::{HeaderMap, Method, Query, Request};

/// Every target in this file, by name (the name of its directory under `fuzz/regressions/`).
pub const TARGETS: &[(&str, fn(&[u8]))] = &[("route", route), ("body_decode", body_decode)];

/// Content types `decode_body` distinguishes, plus an unsupported one.
const CONTENT_TYPES: &[&str] = &[
    "application/json",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
    "",
    "application/json; charset=utf-8",
    "text/plain",
];

/// `route::parse` of the input as a path, and `Query::parse` of what follows a `?`.
pub fn route(data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    let (path, query) = match s.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (&*s, None),
    };
    let _ = skiff_apiserver::route::parse(path);
    let q = Query::parse(query);
    let _ = (q.get("labelSelector"), q.flag("watch"), q.non_empty("fieldSelector"));
}

/// `http::decode_body` with the content type picked by the first byte and the rest as body.
pub fn body_decode(data: &[u8]) {
    let Some((first, body)) = data.split_first() else { return };
    let ct = CONTENT_TYPES[*first as usize % CONTENT_TYPES.len()];
    let mut headers = HeaderMap::new();
    if let Ok(v) = ct.parse() {
        headers.insert("content-type", v);
    }
    let req = Request {
        method: Method::POST,
        path: "/api/v1/namespaces/default/configmaps".to_string(),
        query: Query::default(),
        headers,
        body: body.to_vec().into(),
        user: None,
        upgrade: Default::default(),
    };
    let _ = skiff_apiserver::http::decode_body(&req);
}
