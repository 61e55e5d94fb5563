//! Request and response plumbing shared by all handlers: the parsed request, query
//! parameters, body limits and decoding, and JSON/text/Status responses.

use bytes::Bytes;
pub use http::{HeaderMap, Method, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use serde_json::Value;
use skiff_api::status::ApiError;

use crate::auth::User;

/// Largest request body accepted, as upstream (3 MiB).
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// Reads a request body of at most [`MAX_BODY`] bytes: 413 beyond, 400 when it breaks off.
pub async fn read_body<B>(body: B) -> Result<Bytes, ApiError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match http_body_util::Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            Err(ApiError::too_large("the request body exceeds the 3 MiB limit"))
        }
        Err(e) => Err(ApiError::bad_request(format!("reading request body: {e}"))),
    }
}

/// Response body type: boxed so streaming (watch) and full bodies share one type.
pub type Body = BoxBody<Bytes, std::io::Error>;
/// A response.
pub type Response = http::Response<Body>;

/// A request with its body read.
#[derive(Debug)]
pub struct Request {
    /// HTTP method.
    pub method: Method,
    /// Path without the query.
    pub path: String,
    /// Decoded query parameters.
    pub query: Query,
    /// Headers.
    pub headers: HeaderMap,
    /// Body (at most [`MAX_BODY`]).
    pub body: Bytes,
    /// Authenticated user, if any.
    pub user: Option<User>,
    /// The connection's pending HTTP/1.1 upgrade (WebSocket, SPDY), taken by the streaming
    /// proxy (`handler::proxy`) once the kubelet has switched protocols.
    pub upgrade: std::sync::Mutex<Option<hyper::upgrade::OnUpgrade>>,
}

impl Request {
    /// The request of `parts` with its body read, made by `user`; a pending HTTP/1.1
    /// upgrade in the parts' extensions is kept for the streaming proxy.
    pub fn from_parts(mut parts: http::request::Parts, body: Bytes, user: Option<User>) -> Self {
        Self {
            query: Query::parse(parts.uri.query()),
            path: parts.uri.path().to_string(),
            upgrade: std::sync::Mutex::new(parts.extensions.remove::<hyper::upgrade::OnUpgrade>()),
            method: parts.method,
            headers: parts.headers,
            body,
            user,
        }
    }

    /// A header as a string ("" when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }
}

/// Query parameters in order.
#[derive(Debug, Default, Clone)]
pub struct Query(pub Vec<(String, String)>);

impl Query {
    /// Parse a raw query string, percent-decoding keys and values.
    pub fn parse(raw: Option<&str>) -> Self {
        let mut out = Vec::new();
        for pair in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            out.push((percent_decode(k), percent_decode(v)));
        }
        Self(out)
    }

    /// First value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// `key` parsed as a boolean (`true`/`1`).
    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1"))
    }

    /// Non-empty value of `key`.
    pub fn non_empty(&self, key: &str) -> Option<&str> {
        self.get(key).filter(|v| !v.is_empty())
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A full body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed()
}

/// A JSON response.
pub fn json(code: u16, v: &Value) -> Response {
    let body = serde_json::to_vec(v).expect("json values serialize");
    raw(code, "application/json", body)
}

/// A response with an explicit content type.
pub fn raw(code: u16, content_type: &str, body: impl Into<Bytes>) -> Response {
    with_body(code, content_type, full(body))
}

/// A response whose body is already a [`Body`] (streamed lists and watches).
pub fn with_body(code: u16, content_type: &str, body: Body) -> Response {
    http::Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", content_type)
        .header("cache-control", "no-cache, private")
        .body(body)
        .expect("valid response")
}

/// A plain-text response.
pub fn text(code: u16, body: impl Into<String>) -> Response {
    raw(code, "text/plain; charset=utf-8", body.into())
}

/// An error as an upstream `Status` body.
pub fn error(e: &ApiError) -> Response {
    let mut r = json(e.code, &e.to_status());
    if let Some(s) = e.retry_after {
        r.headers_mut().insert("retry-after", s.into());
    }
    r
}

/// Decode a request body as a JSON value from JSON, YAML or Kubernetes protobuf.
pub fn decode_body(req: &Request) -> Result<Value, ApiError> {
    let ct = req.header("content-type");
    let media = ct.split(';').next().unwrap_or("").trim();
    if req.body.is_empty() {
        return Err(ApiError::bad_request("the body of the request was empty"));
    }
    match media {
        "" | "application/json" | "*/*" => serde_json::from_slice(&req.body)
            .map_err(|e| ApiError::bad_request(format!("error decoding body as JSON: {e}"))),
        "application/yaml" | "application/x-yaml" | "text/yaml" => {
            let v: serde_yaml::Value = serde_yaml::from_slice(&req.body)
                .map_err(|e| ApiError::bad_request(format!("error decoding body as YAML: {e}")))?;
            serde_json::to_value(v).map_err(|e| ApiError::bad_request(format!("error converting YAML: {e}")))
        }
        "application/vnd.kubernetes.protobuf" => crate::protobuf_body::decode(&req.body),
        other => Err(ApiError::unsupported_media_type(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding() {
        let q = Query::parse(Some("labelSelector=app%3Dweb%2Ctier+in+%28a%29&watch=true&x"));
        assert_eq!(q.get("labelSelector"), Some("app=web,tier in (a)"));
        assert!(q.flag("watch"));
        assert_eq!(q.get("x"), Some(""));
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("a%zzb"), "a%zzb");
    }
}
