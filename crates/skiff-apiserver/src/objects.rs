//! The object layer between HTTP handlers and the revisioned store: JSON encoding, the
//! store revision exposed as `metadata.resourceVersion`, consistent paged lists with upstream
//! continue tokens, and store errors mapped to API errors.

use std::sync::Arc;

use base64::Engine;
use serde_json::{json, Value};
use skiff_api::status::ApiError;
use skiff_api::ResourceInfo;
use skiff_store::{KeyValue, Revision, Store, StoreError};

/// Result type of this layer.
pub type ApiResult<T> = Result<T, ApiError>;

/// Typed access to objects in the store.
#[derive(Clone)]
pub struct Objects {
    store: Arc<dyn Store>,
    metrics: Arc<crate::metrics::Metrics>,
}

/// A page of a list: decoded objects, or (for lists rendered from the stored bytes) the
/// stored key-values themselves.
#[derive(Debug)]
pub struct ListPage<T = Value> {
    /// Matching objects, with resourceVersion set (for `Value`s).
    pub items: Vec<T>,
    /// Revision the list is consistent at.
    pub revision: Revision,
    /// Continue token when more remain.
    pub continue_token: Option<String>,
    /// Count of objects after this page (ignoring selectors), when known.
    pub remaining: Option<i64>,
}

impl<T> Default for ListPage<T> {
    fn default() -> Self {
        Self { items: Vec::new(), revision: 0, continue_token: None, remaining: None }
    }
}

/// Decode a stored value, setting its resourceVersion from the store revision.
pub fn decode(kv: &KeyValue) -> ApiResult<Value> {
    let mut v: Value = serde_json::from_slice(&kv.value)
        .map_err(|e| ApiError::internal(format!("decoding {}: {e}", kv.key)))?;
    skiff_api::meta::set_str(&mut v, "resourceVersion", &kv.mod_revision.to_string());
    Ok(v)
}

/// Serialize an object for storage; the resourceVersion is never stored (it is the revision).
pub fn encode(obj: &Value) -> Vec<u8> {
    let mut copy = obj.clone();
    if let Some(m) = copy.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
        m.remove("selfLink");
    }
    serde_json::to_vec(&copy).expect("json values serialize")
}

/// Map a store error on object `name` of `info` to the API error upstream gives.
pub fn store_error(info: &ResourceInfo, name: &str, e: StoreError) -> ApiError {
    match e {
        StoreError::AlreadyExists { .. } => ApiError::already_exists(&info.group, &info.plural, name),
        StoreError::NotFound { .. } => ApiError::not_found(&info.group, &info.plural, name),
        StoreError::Conflict { .. } => ApiError::conflict(
            &info.group,
            &info.plural,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        ),
        StoreError::Compacted { requested, .. } => {
            ApiError::gone(format!("too old resource version: {requested}"))
        }
        StoreError::FutureRevision { requested, current } => {
            let mut e = ApiError::timeout(format!(
                "Too large resource version: {requested}, current: {current}"
            ));
            e.retry_after = Some(1);
            e
        }
        StoreError::Backend(msg) => ApiError::internal(msg),
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    v: String,
    rv: Revision,
    start: String,
}

/// Encode a continue token: the list's revision and the key to continue after.
pub fn encode_continue(rv: Revision, last_key: &str) -> String {
    let t = ContinueToken { v: "meta.k8s.io/v1".into(), rv, start: format!("{last_key}\u{0}") };
    base64::engine::general_purpose::URL_SAFE.encode(serde_json::to_vec(&t).unwrap())
}

/// Decode a continue token into (revision, key to continue after).
pub fn decode_continue(token: &str) -> ApiResult<(Revision, String)> {
    let bad = || ApiError::bad_request("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)");
    let raw = base64::engine::general_purpose::URL_SAFE
        .decode(token)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token))
        .map_err(|_| bad())?;
    let t: ContinueToken = serde_json::from_slice(&raw).map_err(|_| bad())?;
    if t.v != "meta.k8s.io/v1" || t.rv <= 0 {
        return Err(bad());
    }
    Ok((t.rv, t.start.trim_end_matches('\u{0}').to_string()))
}

impl Objects {
    /// Wrap a store.
    pub fn new(store: Arc<dyn Store>, metrics: Arc<crate::metrics::Metrics>) -> Self {
        Self { store, metrics }
    }

    fn observe(&self, op: &str, start: std::time::Instant) {
        self.metrics.store_op(op, start.elapsed().as_secs_f64());
    }

    /// The underlying store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Get one object.
    pub async fn get(&self, info: &ResourceInfo, ns: Option<&str>, name: &str) -> ApiResult<Value> {
        decode(&self.get_stored(info, ns, name).await?)
    }

    /// Get one object as stored (JSON without its resourceVersion, which is `mod_revision`).
    pub async fn get_stored(&self, info: &ResourceInfo, ns: Option<&str>, name: &str) -> ApiResult<KeyValue> {
        let t = std::time::Instant::now();
        let got = self.store.get(&info.key(ns, name)).await;
        self.observe("get", t);
        got.map_err(|e| store_error(info, name, e))?
            .ok_or_else(|| ApiError::not_found(&info.group, &info.plural, name))
    }

    /// Get one object if it exists.
    pub async fn try_get(&self, info: &ResourceInfo, ns: Option<&str>, name: &str) -> ApiResult<Option<Value>> {
        match self.get(info, ns, name).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.code == 404 => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Create; returns the stored object with its resourceVersion.
    pub async fn create(&self, info: &ResourceInfo, mut obj: Value) -> ApiResult<Value> {
        let name = skiff_api::meta::name(&obj).to_string();
        let key = info.key(skiff_api::meta::namespace(&obj), &name);
        let t = std::time::Instant::now();
        let rev = self.store.create(&key, encode(&obj)).await;
        self.observe("create", t);
        let rev = rev.map_err(|e| store_error(info, &name, e))?;
        skiff_api::meta::set_str(&mut obj, "resourceVersion", &rev.to_string());
        Ok(obj)
    }

    /// Update if the stored revision is `expected`.
    pub async fn update(&self, info: &ResourceInfo, mut obj: Value, expected: Revision) -> ApiResult<Value> {
        let name = skiff_api::meta::name(&obj).to_string();
        let key = info.key(skiff_api::meta::namespace(&obj), &name);
        let t = std::time::Instant::now();
        let rev = self.store.update(&key, encode(&obj), expected).await;
        self.observe("update", t);
        let rev = rev.map_err(|e| store_error(info, &name, e))?;
        skiff_api::meta::set_str(&mut obj, "resourceVersion", &rev.to_string());
        Ok(obj)
    }

    /// Delete if the stored revision is `expected` (when given); returns the last state.
    pub async fn delete(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        expected: Option<Revision>,
    ) -> ApiResult<Value> {
        let t = std::time::Instant::now();
        let deleted = self.store.delete(&info.key(ns, name), expected).await;
        self.observe("delete", t);
        let (rev, kv) = deleted.map_err(|e| store_error(info, name, e))?;
        let mut obj = decode(&kv)?;
        skiff_api::meta::set_str(&mut obj, "resourceVersion", &rev.to_string());
        Ok(obj)
    }

    /// One page of a list. `filter` decides which objects match selectors; `limit` 0 = all.
    /// The page is consistent at one revision: the first page's, carried in the token.
    pub async fn list(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        limit: usize,
        continue_token: Option<&str>,
        at: Option<Revision>,
        filter: &(dyn Fn(&Value) -> bool + Sync),
    ) -> ApiResult<ListPage> {
        self.list_with(info, ns, limit, continue_token, at, &mut |kv| {
            let obj = decode(&kv)?;
            Ok(filter(&obj).then_some(obj))
        })
        .await
    }

    /// The paging loop behind `list`: `keep` turns a stored key-value into a page item, or
    /// None when it does not match (`|kv| Ok(Some(kv))` pages the stored values themselves).
    pub async fn list_with<T>(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        limit: usize,
        continue_token: Option<&str>,
        at: Option<Revision>,
        keep: &mut (dyn FnMut(KeyValue) -> ApiResult<Option<T>> + Send),
    ) -> ApiResult<ListPage<T>> {
        let prefix = info.list_prefix(ns);
        let (mut revision, mut start_after) = match continue_token {
            Some(t) => {
                let (rv, key) = decode_continue(t)?;
                (Some(rv), Some(key))
            }
            None => (at, None),
        };
        let mut page = ListPage::default();
        // Read in batches until `limit` matching objects are found or the range ends.
        let batch = if limit == 0 { 0 } else { limit.max(100) };
        loop {
            let t = std::time::Instant::now();
            let r = self.store.range(&prefix, start_after.as_deref(), batch, revision).await;
            self.observe("range", t);
            let r = r.map_err(|e| match e {
                    StoreError::Compacted { .. } if continue_token.is_some() => ApiError::gone(
                        "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
                    ),
                    e => store_error(info, "", e),
                })?;
            revision = Some(r.revision);
            page.revision = r.revision;
            let n = r.kvs.len();
            let last_key = r.kvs.last().map(|kv| kv.key.clone());
            for (i, kv) in r.kvs.into_iter().enumerate() {
                let key = (limit > 0).then(|| kv.key.clone());
                let Some(item) = keep(kv)? else { continue };
                page.items.push(item);
                if limit > 0 && page.items.len() == limit {
                    let more_here = i + 1 < n;
                    if more_here || r.more {
                        page.continue_token = Some(encode_continue(r.revision, &key.unwrap_or_default()));
                    }
                    return Ok(page);
                }
            }
            if !r.more || n == 0 {
                return Ok(page);
            }
            start_after = last_key;
        }
    }

    /// Current store revision.
    pub async fn revision(&self) -> ApiResult<Revision> {
        self.store.current_revision().await.map_err(|e| ApiError::internal(e.to_string()))
    }
}

/// An empty typed list envelope.
pub fn list_envelope(info: &ResourceInfo, page: ListPage) -> Value {
    let mut meta = json!({"resourceVersion": page.revision.to_string()});
    if let Some(c) = &page.continue_token {
        meta["continue"] = json!(c);
    }
    if let Some(r) = page.remaining {
        meta["remainingItemCount"] = json!(r);
    }
    // Built field by field: `json!` would deep-copy every item.
    let mut m = serde_json::Map::new();
    m.insert("kind".into(), Value::String(format!("{}List", info.kind)));
    m.insert("apiVersion".into(), Value::String(info.api_version()));
    m.insert("metadata".into(), meta);
    m.insert("items".into(), Value::Array(page.items));
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip_and_reject_garbage() {
        let t = encode_continue(42, "/registry/core/pods/default/a");
        assert_eq!(decode_continue(&t).unwrap(), (42, "/registry/core/pods/default/a".to_string()));
        assert_eq!(decode_continue("not-a-token").unwrap_err().code, 400);
    }
}
