//! Plain JSON lists written straight from the stored bytes.
//!
//! Stored objects are JSON already, without `metadata.resourceVersion` (that is the store
//! revision). A list that needs no selector and no version conversion therefore does not have
//! to parse and re-serialize every item: each item is copied as is, with
//! `"resourceVersion":"<mod revision>"` spliced in as the first field of its top-level
//! `metadata`. Parsing 10,000 pods into `Value`s and writing them out again cost about 110 µs
//! of CPU per pod; the copy costs a scan of the first few hundred bytes of each item.
//!
//! Items whose top level does not look as expected (another `apiVersion` or `kind` than the one
//! served, escapes in those strings, no `metadata` object) are rendered the slow way, so the
//! output is always what `with_type` + `serde_json` would give, up to field order.

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::Value;
use skiff_api::status::ApiError;
use skiff_store::KeyValue;

use crate::http::Body;
use crate::objects::{decode, ListPage, Objects};
use crate::resources::Served;

/// Where the interesting parts of an object's top level are, as byte offsets into it.
#[derive(Debug, Default, PartialEq, Eq)]
struct TopLevel<'a> {
    api_version: Option<&'a [u8]>,
    kind: Option<&'a [u8]>,
    /// Offset just past the `{` that opens `metadata`, and whether that object is empty.
    metadata_body: Option<(usize, bool)>,
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\n' | b'\r' | b'\t') {
        i += 1;
    }
    i
}

/// End (index of the closing quote) of the string whose opening quote is at `i`, and
/// whether it contained an escape.
fn string_end(b: &[u8], i: usize) -> Option<(usize, bool)> {
    let mut j = i + 1;
    let mut escaped = false;
    while j < b.len() {
        match b[j] {
            b'\\' => {
                escaped = true;
                j += 2;
            }
            b'"' => return Some((j, escaped)),
            _ => j += 1,
        }
    }
    None
}

/// Index just past the value starting at `i` (any JSON value), or None if malformed.
fn value_end(b: &[u8], i: usize) -> Option<usize> {
    match *b.get(i)? {
        b'"' => string_end(b, i).map(|(e, _)| e + 1),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            while j < b.len() {
                match b[j] {
                    b'"' => {
                        j = string_end(b, j)?.0;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            None
        }
        _ => {
            // Number, true, false, null: up to the next delimiter.
            let mut j = i;
            while j < b.len() && !matches!(b[j], b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t') {
                j += 1;
            }
            Some(j)
        }
    }
}

/// Scan the top-level object for `apiVersion`, `kind` and `metadata`, stopping once all three
/// are found. None when `b` is not a JSON object.
fn top_level(b: &[u8]) -> Option<TopLevel<'_>> {
    let mut out = TopLevel::default();
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_ws(b, i + 1);
    if b.get(i) == Some(&b'}') {
        return Some(out);
    }
    loop {
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let (key_end, _) = string_end(b, i)?;
        let key = &b[i + 1..key_end];
        i = skip_ws(b, key_end + 1);
        if b.get(i) != Some(&b':') {
            return None;
        }
        i = skip_ws(b, i + 1);
        match (key, b.get(i)) {
            (b"apiVersion" | b"kind", Some(b'"')) => {
                let (end, escaped) = string_end(b, i)?;
                // An escaped string would need unescaping to compare; leave it to the slow path.
                let text: &[u8] = if escaped { b"\\" } else { &b[i + 1..end] };
                if key == b"kind" {
                    out.kind = Some(text);
                } else {
                    out.api_version = Some(text);
                }
            }
            (b"metadata", Some(b'{')) => {
                let empty = b.get(skip_ws(b, i + 1)) == Some(&b'}');
                out.metadata_body = Some((i + 1, empty));
            }
            _ => {}
        }
        if out.api_version.is_some() && out.kind.is_some() && out.metadata_body.is_some() {
            return Some(out);
        }
        i = skip_ws(b, value_end(b, i)?);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b'}') => return Some(out),
            _ => return None,
        }
    }
}

/// The `PartialObjectMetadata` JSON of a served object's JSON, cut from the bytes: its
/// `metadata` object copied as is. None when the top level has no `metadata` object.
pub fn partial_metadata_json(served_json: &[u8]) -> Option<Vec<u8>> {
    let (body, _) = top_level(served_json)?.metadata_body?;
    let end = value_end(served_json, body - 1)?;
    let head = br#"{"kind":"PartialObjectMetadata","apiVersion":"meta.k8s.io/v1","metadata":"#;
    let mut out = Vec::with_capacity(head.len() + end - body + 2);
    out.extend_from_slice(head);
    out.extend_from_slice(&served_json[body - 1..end]);
    out.push(b'}');
    Some(out)
}

/// Append one stored object to `out` as the served object, resourceVersion included.
pub fn write_item(out: &mut Vec<u8>, served: &Served, api_version: &str, kv: &KeyValue) -> Result<(), ApiError> {
    let b = &kv.value;
    if let Some(TopLevel { api_version: Some(av), kind: Some(k), metadata_body: Some((at, empty)) }) = top_level(b) {
        if av == api_version.as_bytes() && k == served.info.kind.as_bytes() {
            out.extend_from_slice(&b[..at]);
            out.extend_from_slice(b"\"resourceVersion\":\"");
            out.extend_from_slice(kv.mod_revision.to_string().as_bytes());
            out.extend_from_slice(if empty { b"\"" } else { b"\"," });
            out.extend_from_slice(&b[at..]);
            return Ok(());
        }
    }
    let obj = crate::handler::read::with_type(served, decode(kv)?);
    serde_json::to_writer(&mut *out, &obj).map_err(|e| ApiError::internal(e.to_string()))
}

/// Items read from the store per batch when an unpaged list is streamed.
pub const STREAM_BATCH: usize = 500;

/// `{"kind":..,"apiVersion":..,"metadata":{..},"items":[` for a list at `revision`.
fn write_head(
    out: &mut Vec<u8>,
    served: &Served,
    revision: i64,
    continue_token: Option<&str>,
    remaining: Option<i64>,
) -> Result<(), ApiError> {
    let mut meta = serde_json::Map::new();
    meta.insert("resourceVersion".into(), Value::String(revision.to_string()));
    if let Some(c) = continue_token {
        meta.insert("continue".into(), Value::String(c.to_string()));
    }
    if let Some(r) = remaining {
        meta.insert("remainingItemCount".into(), r.into());
    }
    let head = serde_json::json!({"kind": format!("{}List", served.info.kind), "apiVersion": served.info.api_version(), "metadata": meta});
    let head = serde_json::to_vec(&head).map_err(|e| ApiError::internal(e.to_string()))?;
    out.extend_from_slice(&head[..head.len() - 1]);
    out.extend_from_slice(b",\"items\":[");
    Ok(())
}

/// Append `items`, each preceded by a comma unless it is the list's very first.
fn write_items(out: &mut Vec<u8>, served: &Served, items: &[KeyValue], first: bool) -> Result<(), ApiError> {
    let api_version = served.info.api_version();
    for (n, kv) in items.iter().enumerate() {
        if n > 0 || !first {
            out.push(b',');
        }
        write_item(out, served, &api_version, kv)?;
    }
    Ok(())
}

/// Render a page of stored objects as the served `<Kind>List` JSON body.
pub fn render(served: &Served, page: &ListPage<KeyValue>) -> Result<Vec<u8>, ApiError> {
    let size: usize = page.items.iter().map(|kv| kv.value.len() + 40).sum();
    let mut out = Vec::with_capacity(size + 256);
    write_head(&mut out, served, page.revision, page.continue_token.as_deref(), page.remaining)?;
    write_items(&mut out, served, &page.items, true)?;
    out.extend_from_slice(b"]}");
    Ok(out)
}

/// The body of an unpaged list whose first `STREAM_BATCH` items are in `first` (read with
/// that limit, so its continue token marks where the rest starts): the rest is read at the
/// same revision and sent batch by batch. A full list of 10,000 pods used to hold the stored
/// values and the rendered body at once (2 x 38 MB); now it holds one batch. An error after
/// the first batch can no longer change the status, so it ends the body early and the client
/// sees a truncated response, as with upstream's encoder.
pub fn stream(
    objects: Objects,
    served: Served,
    ns: Option<String>,
    first: ListPage<KeyValue>,
    mut keep: impl FnMut(KeyValue) -> Result<Option<KeyValue>, ApiError> + Send + Sync + 'static,
) -> Result<Body, ApiError> {
    let mut head = Vec::new();
    // The whole list is one response: no continue token, nothing remaining.
    write_head(&mut head, &served, first.revision, None, None)?;
    write_items(&mut head, &served, &first.items, true)?;
    // A task reads and renders the rest; the channel's single slot keeps it at most one
    // batch ahead of the client, and a client that goes away ends it (send fails).
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
    tokio::spawn(async move {
        let (mut next, mut none_yet) = (first.continue_token, first.items.is_empty());
        if tx.send(Ok(Bytes::from(head))).await.is_err() {
            return;
        }
        while let Some(token) = next {
            let page = match objects.list_with(&served.info, ns.as_deref(), STREAM_BATCH, Some(&token), None, &mut keep).await {
                Ok(p) => p,
                Err(e) => {
                    let _ = tx.send(Err(std::io::Error::other(e.message))).await;
                    return;
                }
            };
            let mut out = Vec::with_capacity(page.items.iter().map(|kv| kv.value.len() + 40).sum());
            if let Err(e) = write_items(&mut out, &served, &page.items, none_yet) {
                let _ = tx.send(Err(std::io::Error::other(e.message))).await;
                return;
            }
            none_yet = none_yet && page.items.is_empty();
            next = page.continue_token;
            if tx.send(Ok(Bytes::from(out))).await.is_err() {
                return;
            }
        }
        let _ = tx.send(Ok(Bytes::from_static(b"]}"))).await;
    });
    let chunks = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c.map(Frame::data), rx)) });
    Ok(BodyExt::boxed(StreamBody::new(chunks)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_metadata_is_cut_from_the_bytes() {
        let obj = serde_json::json!({"spec": {"metadata": {"x": 1}}, "kind": "Pod", "apiVersion": "v1",
            "metadata": {"name": "a", "labels": {"k": "}{\"]"}, "resourceVersion": "7"}, "status": {}});
        let bytes = serde_json::to_vec(&obj).unwrap();
        let cut: Value = serde_json::from_slice(&partial_metadata_json(&bytes).unwrap()).unwrap();
        assert_eq!(cut, crate::handler::read::partial_metadata(&obj));
        assert_eq!(partial_metadata_json(br#"{"kind":"Pod","metadata":"oops"}"#), None);
        assert_eq!(partial_metadata_json(b"[1]"), None);
    }

    #[test]
    fn finds_top_level_fields_in_any_order_and_skips_nested_ones() {
        let b = br#"{"spec":{"metadata":{"x":1},"kind":"No"},"kind":"Pod", "metadata" : {"name":"a"},"apiVersion":"v1"}"#;
        let t = top_level(b).unwrap();
        assert_eq!(t.kind, Some(&b"Pod"[..]));
        assert_eq!(t.api_version, Some(&b"v1"[..]));
        let (at, empty) = t.metadata_body.unwrap();
        assert!(!empty);
        assert_eq!(&b[at..at + 7], br#""name":"#);
    }

    #[test]
    fn strings_with_braces_quotes_and_escapes_do_not_confuse_the_scan() {
        let b = br#"{"a":"}\"{,","b":[1,{"c":"]"}],"n":-1.5e3,"t":true,"metadata":{},"kind":"K","apiVersion":"x\/y"}"#;
        let t = top_level(b).unwrap();
        assert_eq!(t.metadata_body.map(|m| m.1), Some(true));
        assert_eq!(t.kind, Some(&b"K"[..]));
        // Escaped: reported as something that never equals a real apiVersion.
        assert_eq!(t.api_version, Some(&b"\\"[..]));
    }

    #[test]
    fn not_an_object_or_truncated_is_none() {
        assert!(top_level(b"[1,2]").is_none());
        assert!(top_level(br#"{"a":"#).is_none());
        assert!(top_level(br#"{"a":{"b":1}"#).is_none());
        assert_eq!(top_level(b" { } ").unwrap(), TopLevel::default());
    }

    fn kv(name: &str, rev: i64, obj: serde_json::Value) -> KeyValue {
        KeyValue { key: format!("/registry/x/default/{name}"), value: serde_json::to_vec(&obj).unwrap(), create_revision: 1, mod_revision: rev }
    }

    /// The spliced list must parse to exactly what decoding each item would give.
    fn assert_same_as_decoded(served: &Served, items: Vec<KeyValue>) {
        let page = ListPage { items, revision: 99, continue_token: Some("tok".into()), remaining: Some(3) };
        let fast: Value = serde_json::from_slice(&render(served, &page).unwrap()).unwrap();
        let slow = ListPage {
            items: page.items.iter().map(|kv| crate::handler::read::with_type(served, decode(kv).unwrap())).collect(),
            revision: 99,
            continue_token: Some("tok".into()),
            remaining: Some(3),
        };
        assert_eq!(fast, crate::objects::list_envelope(&served.info, slow));
    }

    #[test]
    fn spliced_list_equals_the_decoded_one() {
        let resources = crate::resources::Resources::new();
        let pods = resources.find("", "v1", "pods").unwrap();
        assert_same_as_decoded(&pods, vec![
            kv("a", 5, serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a", "labels": {"x": "}\""}}, "spec": {}})),
            kv("b", 6, serde_json::json!({"metadata": {}, "kind": "Pod", "apiVersion": "v1"})),
            // No kind stored: rendered the slow way, which adds it.
            kv("c", 7, serde_json::json!({"metadata": {"name": "c"}})),
        ]);
        assert_same_as_decoded(&pods, vec![]);
        // Stored as autoscaling/v1, served as v2: converted item by item.
        let hpa = resources.find("autoscaling", "v2", "horizontalpodautoscalers").unwrap();
        assert_same_as_decoded(&hpa, vec![
            kv("h", 8, serde_json::json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "h"},
                "spec": {"maxReplicas": 3, "targetCPUUtilizationPercentage": 50, "scaleTargetRef": {"kind": "Deployment", "name": "d"}}})),
            kv("i", 9, serde_json::json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "i"}, "spec": {"maxReplicas": 2}})),
        ]);
    }
}
